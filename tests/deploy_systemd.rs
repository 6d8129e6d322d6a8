//! The systemd unit for plain hosts (deploy/systemd/monitor.service), checked offline: systemd
//! is not PID 1 on the test machines, but `systemd-analyze verify` and `systemd-analyze security
//! --offline` read a unit file on their own. A copy of the unit points ExecStart at the built
//! agent, which must exist for `verify`.

use std::{collections::BTreeSet, fs, path::Path, process::Command};

use monitor_tests::{
    TempDir, agent_binary,
    kube::{find, kubectl_or_skip, manifests, render},
    path_str, skip_or_fail,
};

/// Where the unit expects the agent.
const INSTALLED: &str = "/usr/local/bin/monitor";
/// Highest `systemd-analyze security` exposure accepted, in tenths (3.5: "OK").
const EXPOSURE_THRESHOLD: &str = "35";

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/monitor.service");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The unit with ExecStart on the built agent, in a temporary directory; `None` (after saying
/// why) when systemd-analyze or the agent is missing.
fn test_copy() -> Option<(TempDir, String)> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("no systemd-analyze: install systemd to check the unit");
        return None;
    }
    let bin = agent_binary();
    if !bin.is_file() {
        skip_or_fail(&format!(
            "the agent binary {} does not exist: build it (`cargo xtask build`)",
            bin.display()
        ));
        return None;
    }
    let text = unit_text();
    assert!(
        text.contains(INSTALLED),
        "the unit does not run {INSTALLED}"
    );
    let dir = TempDir::new("systemd");
    let unit = dir.join("monitor.service");
    fs::write(&unit, text.replace(INSTALLED, &path_str(&bin))).expect("write the unit");
    Some((dir, path_str(unit)))
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let Some((_dir, unit)) = test_copy() else {
        return;
    };
    let out = Command::new("systemd-analyze")
        .args(["verify", &unit])
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are only warnings: any output is a failure here.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn the_unit_is_hardened() {
    let Some((_dir, unit)) = test_copy() else {
        return;
    };
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--threshold={EXPOSURE_THRESHOLD}"))
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&out.stdout);
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("(no overall exposure line)");
    assert!(
        out.status.success(),
        "exposure above {EXPOSURE_THRESHOLD}/10 tenths: {overall}\n{report}"
    );
}

#[test]
fn the_unit_runs_the_agent_with_arguments_it_knows() {
    let bin = agent_binary();
    if !bin.is_file() {
        skip_or_fail(&format!(
            "the agent binary {} does not exist",
            bin.display()
        ));
        return;
    }
    let text = unit_text().replace("\\\n", " ");
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED));
    // clap refuses an unknown option before it gets to --help.
    let out = Command::new(&bin)
        .args(words)
        .arg("--help")
        .output()
        .expect("run the agent");
    assert!(
        out.status.success(),
        "the agent refuses the unit's arguments: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_unit_and_the_daemonset_grant_the_same_capabilities() {
    if !kubectl_or_skip() {
        return;
    }
    let text = unit_text();
    let unit: BTreeSet<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("a CapabilityBoundingSet line")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let objects = render(&manifests("base"));
    let ds = find(&objects, "DaemonSet", "monitor");
    let caps = &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"];
    assert_eq!(caps["drop"], serde_json::json!(["ALL"]));
    let pod: BTreeSet<String> = caps["add"]
        .as_array()
        .expect("capabilities.add")
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap_or_default()))
        .collect();
    assert_eq!(unit, pod);
}
