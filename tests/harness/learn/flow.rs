//! The learning tests' flow for one real server from PyPI, run inside a network namespace with
//! the test's DNS server:
//!
//! 1. `monitor learn --program NAME` through the running agent while the server starts and
//!    serves a first round of requests, then stops;
//! 2. the learned profile passes `monitor rules check`, goes into the agent's rules (SIGHUP);
//! 3. the server starts again in the same directory and serves a second round of different
//!    requests of the same kinds: no alert at all from its process tree;
//! 4. a `.pth` payload planted in its site-packages replays the litellm 1.82 attack at the
//!    next start: every step is alerted, from the server's tree.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;

use super::{ATTACK_RULES, Learn, Planted, Sentinel, assert_rules_valid};
use crate::{
    TIMEOUT, TempDir,
    inference::READY_TIMEOUT,
    rules::{AgentSetup, RulesAgent, SharedAgent, in_tree, one_per_line, shipped_rules},
};

/// The agent a flow runs beside: the shipped detections and a directory of profiles the flow
/// adds learned ones to, with a sentinel rule.
pub struct FlowAgent {
    profiles: PathBuf,
    sentinel: Sentinel,
}

impl FlowAgent {
    /// Joins (or starts) the test binary's shared agent `shared`.
    pub fn join(shared: &'static SharedAgent<FlowAgent>) -> Option<RulesAgent<FlowAgent>> {
        shared.join(|dir| {
            let profiles = dir.join("profiles");
            std::fs::create_dir_all(&profiles)
                .map_err(|e| format!("cannot create {}: {e}", profiles.display()))?;
            let sentinel = Sentinel::write(dir, &profiles)?;
            Ok(AgentSetup {
                rules: vec![shipped_rules().join("detections"), profiles.clone()],
                args: Vec::new(),
                fixture: FlowAgent { profiles, sentinel },
            })
        })
    }
}

/// A real server the flow drives.
pub trait Server: Sized {
    /// The `--program` it is learned by (the console script's name).
    const PROGRAM: &'static str;
    /// One round of requests of every kind it serves; `round` varies their content.
    fn exercise(&self, round: u32) -> Result<(), String>;
    /// Waits for what it does in the background after start-up (deadline-bound).
    fn settle(&self) -> Result<(), String> {
        Ok(())
    }
    fn pid(&self) -> u32;
    fn stop(&mut self) -> Result<(), String>;
}

/// What the flow learned, for the test's own assertions.
pub struct Served {
    /// The learned profile's text.
    pub profile: String,
    pub profile_path: PathBuf,
    /// What `monitor learn` said on stderr.
    pub learn_stderr: String,
}

/// How long `monitor learn` may take to write its profile after SIGINT.
const FINISH: Duration = Duration::from_secs(30);

/// Alerts of `pid`'s tree, or of `profile`, read so far.
fn alerts_of<F>(agent: &RulesAgent<F>, pid: u32, profile: &str) -> Vec<Value> {
    agent.alerts(|a| in_tree(a, pid) || a["profile"] == profile)
}

fn summary(alerts: &[Value]) -> String {
    let lines: Vec<String> = alerts
        .iter()
        .map(|a| format!("{} [{}] {}", a["rule"], a["phase"], a["message"]))
        .collect();
    one_per_line(&lines)
}

/// How `monitor learn` learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Through the running agent's control socket.
    Agent,
    /// With a sensor of its own (`--standalone`), the agent running beside it.
    Standalone,
}

/// How the flow starts the server: in directory `dir`, with extra environment, waiting until
/// it serves.
pub type Start<'a, S> = &'a dyn Fn(&Path, &[(&str, &str)]) -> Result<S, String>;

/// Runs the flow; `site_packages` is where the attack plants its `.pth`.
#[track_caller]
pub fn learn_serve_attack<S: Server>(
    agent: &RulesAgent<FlowAgent>,
    start: Start<'_, S>,
    site_packages: &Path,
    name: &str,
    via: Via,
) -> Served {
    let FlowAgent { profiles, sentinel } = agent.fixture();
    let app = TempDir::new(&format!("{name}-app"));

    // 1. Learn over a start, a round of requests and a stop.
    let mut args = vec![
        "--program".to_owned(),
        S::PROGRAM.to_owned(),
        "--name".to_owned(),
        name.to_owned(),
    ];
    match via {
        Via::Agent => {
            args.push("--control-socket".to_owned());
            args.push(crate::path_str(agent.control_socket()));
        }
        Via::Standalone => {
            args.push("--standalone".to_owned());
            args.push("--rules".to_owned());
            args.push(crate::path_str(shipped_rules().join("detections")));
        }
    }
    let learn = Learn::start(&args, &format!("{name}.yaml"), TIMEOUT);
    let mut server = start(app.path(), &[]).expect("start the server to learn");
    server.exercise(1).expect("first round of requests");
    server.settle().expect("the server's background work");
    server.stop().expect("stop the server");
    let learned = learn.finish(FINISH);
    assert!(
        learned.success && !learned.profile.is_empty(),
        "monitor learn failed:\n{}",
        learned.stderr
    );
    let how = match via {
        Via::Agent => "through the running agent",
        Via::Standalone => "with a sensor of its own",
    };
    assert!(learned.stderr.contains(how), "{}", learned.stderr);
    let staged = TempDir::new("learned");
    let staged_path = staged.join(format!("{name}.yaml"));
    std::fs::write(&staged_path, &learned.profile).expect("stage the profile");
    assert_rules_valid(&staged_path);

    // 2. Into the agent's rules.
    let profile_path = profiles.join(format!("{name}.yaml"));
    std::fs::write(&profile_path, &learned.profile).expect("install the profile");
    agent.reload(TIMEOUT);

    // 3. The same work again: not one alert.
    let mut again = start(app.path(), &[]).expect("start the server again");
    let pid = again.pid();
    again.exercise(2).expect("second round of requests");
    again.settle().expect("the server's background work");
    again.stop().expect("stop the server");
    sentinel.settle(agent);
    let quiet = alerts_of(agent, pid, name);
    assert!(
        quiet.is_empty(),
        "the learned profile raised alerts on the same work (profile {}):\n{}\nthe profile:\n{}",
        profile_path.display(),
        summary(&quiet),
        learned.profile
    );

    // 4. The attack.
    let exfil = 9;
    let planted = Planted::plant(site_packages, exfil).expect("plant the payload");
    let mut attacked = start(app.path(), &planted.env()).expect("start the attacked server");
    let pid = attacked.pid();
    let unit = crate::path_str(planted.unit());
    agent.wait_alert(READY_TIMEOUT, "persistence.systemd from the payload", |a| {
        a["rule"] == "persistence.systemd" && a["event"]["path"] == unit.as_str()
    });
    attacked.stop().expect("stop the attacked server");
    sentinel.settle(agent);
    let raised = alerts_of(agent, pid, name);
    let missing: Vec<&str> = ATTACK_RULES
        .iter()
        .copied()
        .filter(|r| !raised.iter().any(|a| a["rule"] == *r && in_tree(a, pid)))
        .collect();
    assert!(
        missing.is_empty(),
        "the attack went without {missing:?}; raised:\n{}",
        summary(&raised)
    );
    // Every alert of the attacked tree names the learned profile: its process was judged by it.
    let unnamed: Vec<&Value> = raised
        .iter()
        .filter(|a| in_tree(a, pid))
        .filter(|a| {
            a["event"]["profile"] != name
                || (a["rule"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("profile."))
                    && a["profile"] != name)
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "alerts of the attacked server without profile {name}:\n{}",
        summary(&unnamed.into_iter().cloned().collect::<Vec<_>>())
    );
    Served {
        profile: learned.profile,
        profile_path,
        learn_stderr: learned.stderr,
    }
}
