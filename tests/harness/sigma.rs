//! The harness of the Sigma and host-wide detection tests: one agent per test binary with the
//! shipped rules (and a filter document on the sentinel's rule) and `--watch-all`; a working
//! directory per case; a positive waits for `sigma:<id>` and checks what the alert says of the rule
//! against the rule's file; a negative runs a sentinel after the near miss and finds no alert of
//! the rule.

use std::{
    fs,
    net::TcpListener,
    path::Path,
    process::{Command, Stdio},
    thread,
};

use serde_json::Value;

use crate::{
    Proc, TIMEOUT, TempDir, path_str,
    rules::{AgentSetup, RulesAgent, SharedAgent, in_tree, shipped_rules, write_file},
};

pub type Agent = RulesAgent<()>;

static AGENT: SharedAgent<()> = SharedAgent::new();

/// "Print History File Contents": the negatives' sentinel.
pub const HISTORY_RECON: &str = "d7821ff1-4527-4e33-9f84-d0d57fa2fb66";

/// A filter document on the sentinel's rule: `cat` of a history file under a directory named
/// `sigma-filtered` is known and fine.
const FILTER: &str = "title: Our history audit job
description: the monitor tests check that a filter suppresses the rule it names
logsource:
    product: linux
    category: process_creation
filter:
    rules:
        - d7821ff1-4527-4e33-9f84-d0d57fa2fb66
    selection:
        CommandLine|contains: /sigma-filtered/
    condition: not selection
";

pub fn agent() -> Agent {
    AGENT
        .join(|dir| {
            fs::write(dir.join("filter.yml"), FILTER)
                .map_err(|e| format!("cannot write the filter: {e}"))?;
            Ok(AgentSetup {
                rules: vec![shipped_rules(), dir.to_path_buf()],
                args: vec!["--watch-all".to_owned()],
                fixture: (),
            })
        })
        .expect("the agent runs (CI=true)")
}

/// A case's working directory, with a history file and a harmless text file.
pub struct Case {
    pub dir: TempDir,
}

impl Case {
    pub fn new(label: &str) -> Self {
        let dir = TempDir::new(&format!("sigma-{label}"));
        write_file(dir.join(".bash_history"), "ls\n");
        write_file(dir.join("notes.txt"), "nginx\n");
        Self { dir }
    }

    pub fn path(&self, name: &str) -> String {
        path_str(self.dir.join(name))
    }
}

/// Runs `argv` to completion (its status does not matter: a refused connection is fine) and
/// returns its pid.
#[track_caller]
pub fn run(agent: &Agent, argv: &[&str], cwd: &Path) -> u32 {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .env("HOME", cwd);
    let mut child: Proc = agent.spawn(&mut cmd);
    child.finish(TIMEOUT);
    child.pid()
}

/// Waits for the `sigma:<id>` alert of `pid` (or a descendant) and checks what it says of the
/// rule: the title, level and authors of the rule file.
#[track_caller]
pub fn expect_sigma(agent: &Agent, id: &str, pid: u32) -> Value {
    let rule = format!("sigma:{id}");
    let alert = agent.wait_alert(TIMEOUT, &format!("{rule} of pid {pid}"), |a| {
        a["rule"] == rule.as_str() && in_tree(a, pid)
    });
    let (title, level, author) = rule_meta(id);
    assert_eq!(alert["sigma"]["id"], id, "{alert}");
    assert_eq!(alert["sigma"]["title"], title.as_str(), "{alert}");
    assert_eq!(alert["sigma"]["level"], level.as_str(), "{alert}");
    assert_eq!(alert["sigma"]["author"], author.as_str(), "{alert}");
    let severity = if level == "informational" {
        "low"
    } else {
        &level
    };
    assert_eq!(alert["severity"], severity, "{alert}");
    let message = alert["message"].as_str().unwrap_or_default();
    assert!(message.ends_with(&format!("{rule}: {title}")), "{message}");
    alert
}

/// Waits for the sentinel of `case` run after the near miss `pid`, then asserts no
/// `sigma:<id>` alert concerns `pid` or its descendants.
#[track_caller]
pub fn expect_none(agent: &Agent, case: &Case, id: &str, pid: u32) {
    expect_no_alert(agent, case, &format!("sigma:{id}"), pid);
}

/// [`expect_none`] for any rule (`credential-read.system`, `sigma:<id>`, ...).
#[track_caller]
pub fn expect_no_alert(agent: &Agent, case: &Case, rule: &str, pid: u32) {
    sentinel(agent, case);
    let unexpected = agent.alerts(|a| a["rule"] == rule && in_tree(a, pid));
    assert!(unexpected.is_empty(), "near miss alerted: {unexpected:#?}");
}

/// Runs the sentinel in `case` and waits for its alert: every event of a process that ended
/// before it has been judged by then.
#[track_caller]
pub fn sentinel(agent: &Agent, case: &Case) {
    let pid = run(
        agent,
        &["cat", &case.path(".bash_history")],
        case.dir.path(),
    );
    expect_sigma(agent, HISTORY_RECON, pid);
}

/// Waits for the `rule` alert of `pid` (or a descendant).
#[track_caller]
pub fn expect_rule(agent: &Agent, rule: &str, pid: u32) -> Value {
    agent.wait_alert(TIMEOUT, &format!("{rule} of pid {pid}"), |a| {
        a["rule"] == rule && in_tree(a, pid)
    })
}

/// The title, level and author of the shipped rule `id`, read from its file.
pub fn rule_meta(id: &str) -> (String, String, String) {
    let dir = shipped_rules().join("sigma");
    for sub in ["process_creation", "file_event", "network_connection"] {
        for entry in fs::read_dir(dir.join(sub)).expect("rules/sigma") {
            let text = fs::read_to_string(entry.expect("entry").path()).expect("rule");
            if text.lines().any(|l| l == format!("id: {id}")) {
                let get = |key: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                        .map(|v| v.trim_matches('\'').to_owned())
                        .unwrap_or_default()
                };
                return (get("title"), get("level"), get("author"));
            }
        }
    }
    panic!("no shipped Sigma rule {id}");
}

/// A positive and a near miss of one process_creation rule, each run in `case`'s directory.
#[track_caller]
pub fn exec_rule(id: &str, label: &str, positive: &[&str], near_miss: &[&str]) {
    let agent = agent();
    let case = Case::new(label);
    let fill = |argv: &[&str]| -> Vec<String> {
        argv.iter()
            .map(|a| a.replace("DIR", &path_str(case.dir.path())))
            .collect()
    };
    let (pos, neg) = (fill(positive), fill(near_miss));
    let pos: Vec<&str> = pos.iter().map(String::as_str).collect();
    let neg: Vec<&str> = neg.iter().map(String::as_str).collect();
    let pid = run(&agent, &pos, case.dir.path());
    expect_sigma(&agent, id, pid);
    let pid = run(&agent, &neg, case.dir.path());
    expect_none(&agent, &case, id, pid);
}

/// A loopback listener that accepts and closes connections until dropped (the test's end).
pub fn listener(addr: &str) -> u16 {
    let l = TcpListener::bind((addr, 0)).expect("listener");
    let port = l.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in l.incoming() {
            drop(conn);
        }
    });
    port
}
