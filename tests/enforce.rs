//! `mode: enforce`: a stand-in inference server under an enforce-mode profile serves normally,
//! and every step of a payload that leaves its footprint is stopped before it has an effect
//! (the receivers get 0 bytes, the dropped binary never runs, the credential read never
//! returns data, the bind fails; the exec and the read fail with EPERM where BPF LSM is active,
//! else their process is killed); the same in alert mode stops nothing and says `would_block`;
//! `--no-enforce`, a reload during traffic, an agent killed with SIGKILL; and bad input.
//! Real kernel hooks, real processes and sockets on loopback.

use std::{fs, os::unix::process::ExitStatusExt, thread, time::Duration};

use monitor_tests::{
    TIMEOUT, TempDir, agent_binary,
    enforce::{OwnAgent, Receivers, Site, StandIn, Stop, exists},
    path_str, random_hex,
};
use serde_json::Value;

/// An agent with `profile` as its rules (and `args`).
fn agent_for(site: &Site, profile: &str, args: &[&str]) -> OwnAgent {
    let rules = site.dir.join("rules");
    fs::create_dir_all(&rules).expect("rules dir");
    fs::write(rules.join("standin.yaml"), profile).expect("profile");
    OwnAgent::start(&rules, args, &site.dir.join("spool"))
        .unwrap_or_else(|e| panic!("the agent did not start: {e}"))
}

/// One stand-in under profile `name` (`mode`), with its agent and exfiltration receivers. Bind
/// `site` when destructuring (`site: _site`): dropping it removes the stand-in's files.
struct Run {
    // Drop order: the server stops before the agent, the site's files go last.
    s: StandIn,
    rx: Receivers,
    agent: OwnAgent,
    marker: String,
    site: Site,
}

/// Starts the agent (with `args`) and then the stand-in; `startup`: the profile has a
/// `startup:` block.
fn run(name: &str, mode: &str, args: &[&str], startup: bool) -> Run {
    let site = Site::new(name);
    let marker = format!("{name}-{}", random_hex(4));
    let profile = if startup {
        fs::write(site.startup_file(), "warm-up data\n").expect("startup file");
        site.profile_with_startup(name, &marker, mode)
    } else {
        site.profile(name, &marker, mode)
    };
    let agent = agent_for(&site, &profile, args);
    let rx = Receivers::start();
    let s = site.start(&marker);
    Run {
        s,
        rx,
        agent,
        marker,
        site,
    }
}

/// The payload's steps against `s`: (exfil TCP v4, v6, Fast Open, UDP, drop, credential,
/// bind) outputs.
struct Steps {
    exfil4: String,
    exfil6: String,
    tfo: String,
    udp: String,
    drop: String,
    cred: String,
    bind: String,
}

fn attack(s: &StandIn, site: &Site, rx: &Receivers) -> Steps {
    let marker = path_str(site.tmp("marker"));
    let after = path_str(site.tmp("after"));
    Steps {
        exfil4: s.attack("exfil4", &[&rx.tcp4.to_string()]),
        exfil6: s.attack("exfil6", &[&rx.tcp6.to_string()]),
        tfo: s.attack("tfo", &[&rx.tcp4.to_string()]),
        udp: s.attack("udp", &[&rx.udp.to_string()]),
        drop: s.attack("drop", &[&path_str(site.app.join("tmp")), &marker]),
        cred: s.attack("cred", &[&path_str(&site.key), &after]),
        bind: s.attack("bind", &["1"]),
    }
}

fn actions(alerts: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("?").to_owned(),
                a["action"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn expected(action: &str, kill: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("profile.connect", action),
        ("profile.connect", action),
        ("profile.connect", action),
        ("profile.connect", action),
        ("profile.exec", kill),
        ("profile.read", kill),
        ("profile.listen", action),
    ]
    .iter()
    .map(|(r, a)| ((*r).to_owned(), (*a).to_owned()))
    .collect();
    v.sort();
    v
}

#[test]
fn an_enforced_server_serves_and_each_attack_step_is_stopped_before_it_has_an_effect() {
    let Run {
        site, agent, rx, s, ..
    } = run("standin-enforced", "enforce", &[], false);
    for n in 1..=5 {
        s.infer(n);
    }
    let steps = attack(&s, &site, &rx);
    // The network syscalls fail with EPERM (errno 1); the exec and the read too with BPF LSM,
    // else the children are killed there (SIGKILL, -9).
    let stop = Stop::of(&agent);
    assert_eq!(steps.exfil4, "0 err 1");
    assert_eq!(steps.exfil6, "0 err 1");
    assert_eq!(steps.tfo, "0 err 1", "TCP Fast Open is a connect too");
    assert_eq!(steps.udp, "0 err 1");
    assert_eq!(
        steps.drop,
        stop.drop(),
        "the dropped binary was stopped at exec"
    );
    assert_eq!(
        steps.cred,
        stop.cred(),
        "the payload was stopped at the credential read"
    );
    assert_eq!(steps.bind, "0 err 1");
    assert_eq!(rx.bytes(), 0, "nothing reached the receivers");
    assert!(!exists(&site.tmp("marker")), "the dropped binary never ran");
    assert!(!exists(&site.tmp("after")), "nothing ran after the read");
    s.infer(6);
    let alerts = agent.wait_alerts("standin-enforced", 7);
    assert_eq!(
        actions(&alerts),
        expected("blocked", stop.action()),
        "{alerts:#?}"
    );
    for a in &alerts {
        assert_ne!(
            a["event"]["pid"],
            s.pid(),
            "the server itself did nothing wrong: {a}"
        );
    }
    let read = alerts
        .iter()
        .find(|a| a["rule"] == "profile.read")
        .expect("read");
    assert_eq!(read["event"]["path"], path_str(&site.key));
    assert_eq!(read["event"][stop.event_flag()], true, "{read}");
    let exec = alerts
        .iter()
        .find(|a| a["rule"] == "profile.exec")
        .expect("exec");
    assert_eq!(
        exec["event"]["exe"],
        path_str(site.app.join("tmp/dropped")),
        "{exec}"
    );
    let connect = alerts
        .iter()
        .find(|a| a["rule"] == "profile.connect")
        .expect("connect");
    assert_eq!(connect["event"]["blocked"], true);
    drop(s);
    agent.stop();
}

#[test]
fn the_start_up_allowance_ends_at_the_listen_itself() {
    // The stand-in reads startup.txt again right after it listens: microseconds later, long
    // before the agent can have seen the listen. The kernel switched it to serving at the
    // listen, so the read kills it.
    let site = Site::new("standin-relisten");
    let marker = format!("standin-relisten-{}", random_hex(4));
    fs::write(site.startup_file(), "warm-up data\n").expect("startup file");
    fs::write(site.dir.join("reread-after-listen"), "").expect("flag");
    let agent = agent_for(
        &site,
        &site.profile_with_startup("standin-relisten", &marker, "enforce"),
        &[],
    );
    let mut server = site.spawn(&marker);
    let status = server.wait(TIMEOUT);
    let stop = Stop::of(&agent);
    // Refused, the read raises PermissionError and the server exits with status 1.
    let (signal, code) = match stop {
        Stop::Kill => (Some(9), None),
        Stop::Refuse => (None, Some(1)),
    };
    assert_eq!(
        (status.signal(), status.code()),
        (signal, code),
        "stopped at the read after the listen"
    );
    assert!(!exists(&site.app.join("logs/ready")));
    let alerts = agent.wait_alerts("standin-relisten", 1);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        (&a["rule"], &a["action"], &a["phase"], &a["event"]["path"]),
        (
            &Value::from("profile.read"),
            &Value::from(stop.action()),
            &Value::from("serving"),
            &Value::from(path_str(site.startup_file()))
        ),
        "{alerts:#?}"
    );
    agent.stop();
}

#[test]
fn start_up_may_do_what_startup_allows_and_serving_may_not() {
    let Run { site, agent, s, .. } = run("standin-startup", "enforce", &[], true);
    let startup = site.startup_file();
    // It read startup.txt half a second after its exec, enforced by then, before it listened.
    s.infer(1);
    let after = site.tmp("after-serving");
    let stop = Stop::of(&agent);
    assert_eq!(
        s.attack("cred", &[&path_str(&startup), &path_str(&after)]),
        stop.cred(),
        "serving: the start-up allowance is over"
    );
    assert!(!exists(&after));
    let alerts = agent.wait_alerts("standin-startup", 1);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(
        (
            &alerts[0]["rule"],
            &alerts[0]["action"],
            &alerts[0]["phase"]
        ),
        (
            &Value::from("profile.read"),
            &Value::from(stop.action()),
            &Value::from("serving")
        ),
        "{alerts:#?}"
    );
    drop(s);
    agent.stop();
}

#[test]
fn in_alert_mode_nothing_is_stopped_and_alerts_say_would_block() {
    let Run {
        site, agent, rx, s, ..
    } = run("standin-alerting", "alert", &[], false);
    s.infer(1);
    let steps = attack(&s, &site, &rx);
    assert_eq!(
        (
            steps.exfil4.as_str(),
            steps.exfil6.as_str(),
            steps.tfo.as_str(),
            steps.udp.as_str()
        ),
        ("0 ok", "0 ok", "0 ok", "0 ok")
    );
    assert_eq!(
        (steps.drop.as_str(), steps.cred.as_str()),
        ("0 exit 0", "0 ok")
    );
    assert_eq!(steps.bind, "0 ok");
    assert!(rx.bytes() > 0, "the stolen bytes arrived");
    assert!(exists(&site.tmp("marker")) && exists(&site.tmp("after")));
    let alerts = agent.wait_alerts("standin-alerting", 7);
    assert_eq!(
        actions(&alerts),
        expected("would_block", "would_block"),
        "{alerts:#?}"
    );
    drop(s);
    agent.stop();
}

#[test]
fn no_enforce_turns_enforce_profiles_into_alert_mode() {
    // `_site` keeps the stand-in's files for the test's length.
    let Run {
        agent,
        rx,
        s,
        site: _site,
        ..
    } = run("standin-off", "enforce", &["--no-enforce"], false);
    s.infer(1);
    assert_eq!(s.attack("exfil4", &[&rx.tcp4.to_string()]), "0 ok");
    assert!(rx.bytes() > 0);
    let alerts = agent.wait_alerts("standin-off", 1);
    assert_eq!(alerts[0]["action"], "would_block", "{alerts:#?}");
    drop(s);
    agent.stop();
}

#[test]
fn a_reload_during_traffic_never_opens_or_closes_the_footprint() {
    let Run {
        agent,
        rx,
        s,
        site: _site,
        ..
    } = run("standin-reload", "enforce", &[], false);
    thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            for n in 1..=40 {
                s.infer(n);
                assert_eq!(
                    s.attack("exfil4", &[&rx.tcp4.to_string()]),
                    "0 err 1",
                    "round {n}"
                );
            }
        });
        for _ in 0..5 {
            agent.signal(libc::SIGHUP);
            thread::sleep(Duration::from_millis(150));
        }
        traffic.join().expect("traffic");
    });
    assert_eq!(rx.bytes(), 0);
    drop(s);
    let done = agent.stop();
    assert!(done.contains("rules reloaded"), "{done}");
}

#[test]
fn an_agent_killed_with_sigkill_lifts_enforcement_and_the_next_start_says_so() {
    let Run {
        site,
        agent,
        rx,
        s,
        marker,
    } = run("standin-kill", "enforce", &[], false);
    assert_eq!(s.attack("exfil4", &[&rx.tcp4.to_string()]), "0 err 1");
    agent.kill();
    assert_eq!(
        s.attack("exfil4", &[&rx.tcp4.to_string()]),
        "0 ok",
        "the programs went with the agent"
    );
    assert!(rx.bytes() > 0);
    let again = agent_for(
        &site,
        &site.profile("standin-kill", &marker, "enforce"),
        &[],
    );
    let said = again.stop();
    assert!(
        said.contains("the previous agent was enforcing and did not stop cleanly"),
        "{said}"
    );
}

#[test]
fn a_kill_detection_kills_a_read_the_profile_allows_and_spares_its_exceptions() {
    let site = Site::new("standin-killdet");
    let marker = format!("standin-killdet-{}", random_hex(4));
    let app = path_str(&site.app);
    for f in ["secrets/token", "config/.env", "config/.env.example"] {
        let p = site.app.join(f);
        fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        fs::write(&p, "sk-live-0123\n").expect("secret");
    }
    let rules = site.dir.join("rules");
    fs::create_dir_all(&rules).expect("rules dir");
    fs::write(
        rules.join("secrets.yaml"),
        format!(
            "detection: secrets-read\ndescription: A process opened an app secret\n\
             severity: high\nmitre: [T1552.001]\non: [open]\naction: kill\nwhen:\n  \
             access: [read, read_write]\n  path: [\"{app}/secrets/**\", \"**/.env\", \
             \"**/.env.*\"]\nexcept:\n  - path: [\"**/.env.example\"]\n"
        ),
    )
    .expect("detection");
    // The profile reads everything under the app, secrets included.
    let agent = agent_for(
        &site,
        &site.profile("standin-killdet", &marker, "enforce"),
        &[],
    );
    let s = site.start(&marker);
    s.infer(1);
    let read = |file: &str, after: &str| {
        s.attack(
            "cred",
            &[&format!("{app}/{file}"), &path_str(site.tmp(after))],
        )
    };
    let stop = Stop::of(&agent);
    assert_eq!(read("secrets/token", "after-token"), stop.cred(), "a tree");
    assert_eq!(
        read("config/.env", "after-env"),
        stop.cred(),
        "a name anywhere"
    );
    assert_eq!(
        read("config/.env.example", "after-example"),
        "0 ok",
        "excepted"
    );
    assert_eq!(read("model.txt", "after-model"), "0 ok");
    assert!(!exists(&site.tmp("after-token")) && !exists(&site.tmp("after-env")));
    s.infer(2);
    let alerts = agent.wait_alerts("standin-killdet", 2);
    let got: Vec<(&str, &str, &str)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap_or("?"),
                a["action"].as_str().unwrap_or("-"),
                a["event"]["path"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "secrets-read",
                stop.action(),
                format!("{app}/secrets/token").as_str()
            ),
            (
                "secrets-read",
                stop.action(),
                format!("{app}/config/.env").as_str()
            ),
        ],
        "{alerts:#?}"
    );
    drop(s);
    let said = agent.stop();
    assert!(
        said.contains("\"**/.env.*\": a wildcard the kernel cannot match: alert-only"),
        "the pattern that stays alert-only is named at load: {said}"
    );
}

#[test]
fn bad_input_is_named_or_refused() {
    let dir = TempDir::new("enforce-bad");
    let rules = dir.join("p.yaml");
    fs::write(
        &rules,
        "profile: p\nmatch:\n  uid: [4242]\nmode: enforce\nallow:\n  read:\n    - \"/opt/venv/lib/python3*/site-packages/**\"\n",
    )
    .expect("rules");
    let out = std::process::Command::new(agent_binary())
        .args(["rules", "check"])
        .arg(&rules)
        .output()
        .expect("rules check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:7: key `allow.read[0]`: profile p: \"/opt/venv/lib/python3*/site-packages/**\": a wildcard the kernel cannot match: everything under /opt/venv/lib/ is alert-only",
            rules.display()
        )),
        "{stderr}"
    );
    // No cgroup v2 where the hooks would attach: a clear refusal, not a silent downgrade.
    let empty = dir.join("not-a-cgroup");
    fs::create_dir_all(&empty).expect("dir");
    let refused = OwnAgent::start(
        &rules,
        &["--cgroup-root", &path_str(&empty)],
        &dir.join("spool"),
    );
    let Err(e) = refused else {
        panic!("the agent started without a cgroup v2 mount");
    };
    assert!(
        e.contains("the agent exited before it was ready") && !e.contains("(exit code 0)"),
        "{e}"
    );
    assert!(
        e.contains("need a cgroup v2 filesystem") && e.contains("--no-enforce"),
        "{e}"
    );
}
