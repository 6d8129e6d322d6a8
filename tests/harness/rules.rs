//! Harness for the rules tests: an agent started with rule sets and extra arguments
//! (`monitor run --rules PATH... [--watch-all]`), shared by the tests of one binary, and what
//! those tests need around it: alerts read back and checked field by field, a fake home directory
//! under `/home` (the shipped detections name real home paths), test-owned network namespaces,
//! free loopback ports and a tiny HTTP client.
//!
//! [`SharedAgent::join`] works like [`crate::Agent::start`]: the first test of a binary launches
//! the agent (after writing its rule files with a setup closure), later ones join it, the last
//! handle dropped stops it, and a machine that cannot run it makes every test say so loudly (a
//! failure under `CI=true`). A setup closure also returns a fixture (ports, markers, paths) the
//! tests read back with [`RulesAgent::fixture`].
//!
//! Environment, on top of the harness's: `MONITOR_TEST_EVENTS=1` also passes `--events`, so a
//! kept agent directory (`MONITOR_TEST_KEEP=1`) shows every raw event next to the alerts.

mod agent;
mod host;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde_json::Value;

use crate::{
    events::{envelope_problems, last_few, parse_time},
    warn,
};

pub use agent::{AgentSetup, RulesAgent, SharedAgent};
pub use host::{
    DirGuard, NetNs, PythonInfo, find_tool, free_port, http_get, url_encode, wait_listening,
    write_file,
};

/// How many recent alerts a timeout report shows.
const REPORT_ALERTS: usize = 25;

/// The repository's shipped rules (`<workspace>/rules`).
pub fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("/"))
        .join("rules")
}

/// Whether a line is an alert.
pub fn is_alert(line: &Value) -> bool {
    line["kind"] == "alert"
}

/// The pids of an alert's `ancestors`, nearest first.
pub fn ancestor_pids(alert: &Value) -> Vec<u64> {
    alert["ancestors"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["pid"].as_u64()).collect())
        .unwrap_or_default()
}

/// Whether the alert's process is `pid` or one of its descendants.
pub fn in_tree(alert: &Value, pid: u32) -> bool {
    let pid = u64::from(pid);
    alert["event"]["pid"].as_u64() == Some(pid) || ancestor_pids(alert).contains(&pid)
}

/// What is wrong with an alert's shape (the `kind: "alert"` contract).
pub(crate) fn alert_problems(alert: &Value, since: SystemTime) -> Vec<String> {
    let mut problems = Vec::new();
    if alert["kind"] != "alert" {
        problems.push(format!("`kind` should be \"alert\", is {}", alert["kind"]));
    }
    match alert["id"].as_str() {
        Some(id) if !id.is_empty() => {}
        _ => problems.push(format!(
            "`id` should be a non-empty string, is {}",
            alert["id"]
        )),
    }
    if alert["time"].as_str().and_then(parse_time).is_none() {
        problems.push(format!(
            "`time` should be RFC 3339 UTC with nanoseconds, is {}",
            alert["time"]
        ));
    }
    for key in ["rule", "severity", "message"] {
        if alert[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!(
                "`{key}` should be a non-empty string, is {}",
                alert[key]
            ));
        }
    }
    if !alert["mitre"]
        .as_array()
        .is_some_and(|ids| ids.iter().all(Value::is_string))
    {
        problems.push(format!(
            "`mitre` should be a list of strings, is {}",
            alert["mitre"]
        ));
    }
    if !(alert["profile"].is_null() || alert["profile"].is_string()) {
        problems.push(format!(
            "`profile` should be a string or null, is {}",
            alert["profile"]
        ));
    }
    match alert["ancestors"].as_array() {
        Some(list) => {
            for a in list {
                if a["pid"].as_u64().is_none() || !a["argv"].is_array() {
                    problems.push(format!("ancestor {a} lacks a `pid` or an `argv` list"));
                }
            }
        }
        None => problems.push(format!(
            "`ancestors` should be a list, is {}",
            alert["ancestors"]
        )),
    }
    problems.extend(
        envelope_problems(&alert["event"], since)
            .into_iter()
            .map(|p| format!("event: {p}")),
    );
    problems
}

/// The last alerts, for a failed wait.
pub(crate) fn alert_report(lines: &[Value]) -> String {
    let alerts: Vec<&Value> = lines.iter().filter(|v| is_alert(v)).collect();
    let mut out = format!(
        "lines read since the test joined: {}, alerts among them: {}",
        lines.len(),
        alerts.len()
    );
    for alert in last_few(&mut out, &alerts, REPORT_ALERTS) {
        let _ = write!(
            out,
            "\n  {} profile={} pid={} kind={} path={} ancestors={:?}",
            alert["rule"],
            alert["profile"],
            alert["event"]["pid"],
            alert["event"]["kind"],
            alert["event"]["path"],
            ancestor_pids(alert)
        );
    }
    out
}

/// Each item on its own indented line, for a failed assertion's message.
pub fn one_per_line<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|item| format!("  {item}\n")).collect()
}

/// Prints a note that a passing test must not hide (e.g. which optional tools were missing).
pub fn note(message: &str) {
    warn(message);
}

/// The ids of the shipped detections (`detection:` lines of `rules/detections/**/*.yaml`).
#[track_caller]
pub fn shipped_detection_ids() -> Vec<String> {
    fn walk(dir: &Path, ids: &mut Vec<String>) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, ids);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                ids.extend(text.lines().filter_map(|l| {
                    l.strip_prefix("detection:")
                        .map(|id| id.trim().trim_matches('"').to_owned())
                }));
            }
        }
    }
    let mut ids = Vec::new();
    walk(&shipped_rules().join("detections"), &mut ids);
    ids.sort();
    ids
}

/// What the shipped rules (and the agent, for profile violations) say about each of their
/// alerts: `rule`, `severity` and `mitre`, as a JSON object to extend with `profile` and
/// `event`. Unknown rules get an object without `severity`.
pub fn expected_meta(rule: &str) -> Value {
    let (severity, mitre): (&str, &[&str]) = match rule {
        "credential-read" => ("high", &["T1552.001", "T1552.004"]),
        "credential-read.history" => ("medium", &["T1552.003"]),
        "credential-read.wallet" => ("high", &["T1005", "T1552.001"]),
        "interpreter-startup-hook" => ("high", &["T1546.018"]),
        "persistence.systemd" => ("high", &["T1543.002", "T1053.006"]),
        "persistence.cron" => ("high", &["T1053.003"]),
        "persistence.shell-rc" => ("medium", &["T1546.004"]),
        "persistence.ld-preload" => ("critical", &["T1574.006"]),
        "persistence.ssh-authorized-keys" => ("high", &["T1098.004"]),
        "persistence.init-scripts" => ("high", &["T1037.004", "T1547.013"]),
        "write-then-exec" | "write-then-exec.tmp" => ("high", &["T1105", "T1059"]),
        "interpreter-startup-hook.code" => ("high", &["T1546.018", "T1059.006"]),
        "credential-read.system" => ("high", &["T1003.008"]),
        "history-tamper" | "history-tamper.truncate" => ("high", &["T1070.003"]),
        "interactive-shell.interpreter" => ("high", &["T1059.004", "T1059.006"]),
        "fileless-exec" => ("high", &["T1620"]),
        "proc-access" => ("high", &["T1003.007"]),
        "cloud-metadata" => ("high", &["T1552.005"]),
        "process-burst" => ("high", &["T1499"]),
        "tool-spawn.recon" => ("medium", &["T1033", "T1082", "T1016", "T1049", "T1057"]),
        "tool-spawn.archive" => ("medium", &["T1560.001"]),
        "tool-spawn.encryption" => ("high", &["T1560.001"]),
        "tool-spawn.transfer" => ("high", &["T1105", "T1048"]),
        // Profile violations: the severity is the profile's (`high` by default, as in the test
        // profiles); the spec leaves their ATT&CK ids to the agent, these are the ones it uses.
        "profile.exec" => ("high", &["T1059"]),
        "profile.read" => ("high", &["T1005"]),
        "profile.write" => ("high", &["T1105"]),
        "profile.connect" => ("high", &["T1071", "T1041"]),
        "profile.listen" | "profile.accept" => ("high", &["T1571"]),
        "profile.unix" => ("high", &["T1559"]),
        _ => return serde_json::json!({ "rule": rule }),
    };
    serde_json::json!({ "rule": rule, "severity": severity, "mitre": mitre })
}
