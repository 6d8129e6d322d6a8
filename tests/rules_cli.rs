//! The rules command line: `monitor rules check` reports precise errors, the agent refuses to
//! start on invalid rules, and SIGHUP reloads (a bad new rule set keeps the old one running).

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use monitor_tests::{TempDir, agent_binary, skip_or_fail};
use serde_json::Value;

const PROFILE: &str = "profile: litellm-proxy
description: LiteLLM proxy serving the OpenAI-compatible API on :4000
match:
  exe: [\"/usr/bin/python3*\", \"/usr/local/bin/python3*\", \"/opt/venv/bin/python*\"]
  argv_contains: [\"litellm\"]
mode: alert
allow:
  exec: [\"/usr/bin/python3*\", \"/usr/local/bin/python3*\", \"/opt/venv/bin/python*\"]
  read: [\"/usr/lib/python3*/**\", \"/usr/local/lib/python3*/**\", \"/opt/venv/**\", \"/app/**\",
         \"/etc/ssl/**\", \"/etc/resolv.conf\", \"/etc/hosts\", \"/proc/self/**\"]
  write: [\"/tmp/litellm-*/**\", \"/var/log/litellm/**\"]
  connect:
    - { host: \"api.openai.com\", port: 443 }
    - { cidr: \"10.0.0.0/8\", port: 5432 }
  listen:
    - { port: 4000 }
";

fn check(paths: &[&Path]) -> (bool, String) {
    let out = Command::new(agent_binary())
        .args(["rules", "check"])
        .args(paths)
        .output()
        .expect("run monitor rules check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn binary_or_skip() -> bool {
    if agent_binary().is_file() {
        return true;
    }
    skip_or_fail(&format!(
        "agent binary {} not built",
        agent_binary().display()
    ));
    false
}

#[test]
fn the_issue_example_profile_checks_clean() {
    if !binary_or_skip() {
        return;
    }
    let dir = TempDir::new("rules-ok");
    fs::write(dir.join("litellm.yaml"), PROFILE).unwrap();
    let (ok, text) = check(&[dir.path()]);
    assert!(ok, "rules check failed on the issue's example:\n{text}");
}

#[test]
fn errors_name_file_line_and_key() {
    if !binary_or_skip() {
        return;
    }
    let dir = TempDir::new("rules-bad");
    let bad = PROFILE
        .replace("mode: alert", "mode: block")
        .replace("  listen:\n", "  listn:\n");
    let file = dir.join("bad.yaml");
    fs::write(&file, bad).unwrap();
    let (ok, text) = check(&[dir.path()]);
    assert!(!ok, "invalid rules passed the check:\n{text}");
    let name = file.display().to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{name}:")) && l.contains("mode")),
        "no error naming {name}, a line and key `mode`:\n{text}"
    );
    assert!(text.contains("listn"), "unknown key not reported:\n{text}");
    // Every error line carries FILE:LINE.
    let mode_line = text
        .lines()
        .find(|l| l.contains("`mode`"))
        .unwrap_or_default();
    assert!(
        mode_line.starts_with(&format!("{name}:6:")),
        "`mode` is on line 6 of the file: {mode_line}"
    );
}

#[test]
fn agent_refuses_to_start_on_invalid_rules() {
    if !binary_or_skip() {
        return;
    }
    let dir = TempDir::new("rules-refuse");
    fs::write(dir.join("bad.yaml"), "detection: x\nseverity: extreme\n").unwrap();
    let out = Command::new(agent_binary())
        .args(["run", "--rules"])
        .arg(dir.path())
        .args(["--output", "file:/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run monitor");
    assert!(!out.status.success(), "agent started with invalid rules");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml"),
        "error does not name the file:\n{err}"
    );
}

/// Reads the agent's output until `pred` holds for a line, with a deadline.
fn wait_line(path: &Path, deadline: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        let text = fs::read_to_string(path).unwrap_or_default();
        if let Some(v) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| pred(v))
        {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_reloads_and_a_bad_rule_set_keeps_the_old_one() {
    if !binary_or_skip() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("the agent needs root");
        return;
    }
    let dir = TempDir::new("rules-hup");
    let rules = dir.join("rules");
    fs::create_dir(&rules).unwrap();
    let marker = dir.join("marker");
    let rule = |id: &str| {
        format!(
            "detection: {id}\ndescription: test marker opened\nseverity: low\nmitre: [T1005]\n\
             on: [open]\nwhen:\n  path: [\"{}-*\"]\n",
            marker.display()
        )
    };
    fs::write(rules.join("a.yaml"), rule("marker-a")).unwrap();
    let out = dir.join("out.jsonl");
    let ready = dir.join("ready");
    let child = Command::new(agent_binary())
        .args([
            "run",
            "--no-control-socket",
            "--watch-all",
            "--alert-fold-secs",
            "0",
        ])
        .arg("--rules")
        .arg(&rules)
        .arg("--output")
        .arg(format!("file:{}", out.display()))
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("spawn agent");
    let agent = Running(child);
    let end = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(Instant::now() < end, "agent not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let touch = |n: u32| fs::write(format!("{}-{n}", marker.display()), b"x").unwrap();
    touch(1);
    let first = wait_line(&out, Duration::from_secs(10), |v| v["rule"] == "marker-a");
    assert!(first.is_some(), "no alert from the initial rule set");

    // A good new rule set replaces the old one.
    fs::write(rules.join("a.yaml"), rule("marker-b")).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGHUP) };
    let end = Instant::now() + Duration::from_secs(10);
    let mut n = 2;
    let reloaded = loop {
        touch(n);
        n += 1;
        if let Some(v) = wait_line(&out, Duration::from_millis(200), |v| {
            v["rule"] == "marker-b"
        }) {
            break Some(v);
        }
        if Instant::now() > end {
            break None;
        }
    };
    assert!(reloaded.is_some(), "SIGHUP did not load the new rule set");

    // A bad new rule set leaves the running one in place.
    fs::write(
        rules.join("a.yaml"),
        "detection: broken\nseverity: extreme\n",
    )
    .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGHUP) };
    let end = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(dir.join("stderr"))
        .unwrap_or_default()
        .contains("reload failed")
    {
        assert!(Instant::now() < end, "the failed reload was not logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    let target = format!("{}-{n}", marker.display());
    touch(n);
    let still = wait_line(&out, Duration::from_secs(10), |v| {
        v["rule"] == "marker-b" && v["event"]["path"] == target.as_str()
    });
    assert!(still.is_some(), "a bad rule set replaced the running one");
}
