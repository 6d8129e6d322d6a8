//! `monitor learn` and its companions as a user meets them, with real processes: errors before
//! learning, a window ended by SIGINT that still writes what was learned, processes already
//! running picked up, learning through the agent while it keeps detecting and reloads its
//! rules, `--merge` that never removes silently, `rules diff`, learning from a recording, and
//! a profile's start-up phase on alerts.

use std::{fs, path::PathBuf, process::Command};

use monitor_tests::{
    FileGuard, Proc, TIMEOUT, TempDir, agent_binary,
    learn::{Learn, Sentinel, Workload, assert_rules_valid, monitor, stop, wait_file, wait_rounds},
    path_str, random_hex,
    rules::{AgentSetup, RulesAgent, SharedAgent, in_tree, shipped_rules},
};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unwritable_out_or_bad_selectors_fail_before_learning() {
    let out = monitor(&[
        "learn",
        "--standalone",
        "--program",
        "x",
        "--out",
        "/nonexistent-monitor-dir/p.yaml",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(
            "--out /nonexistent-monitor-dir/p.yaml: cannot write in /nonexistent-monitor-dir"
        ),
        "{err}"
    );
    assert!(!err.contains("learning"), "it learned anyway: {err}");
    let dir = TempDir::new("learn-bad");
    let target = path_str(dir.join("p.yaml"));
    let fails = |args: &[&str], expected: &str| {
        let mut all = vec!["learn", "--standalone", "--out", &target];
        all.extend_from_slice(args);
        let out = monitor(&all);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    };
    fails(&["--program", "a["], "--program[0]: invalid glob \"a[\"");
    fails(&[], "say what to learn");
    fails(
        &["--program", "x", "--duration", "soon"],
        "invalid duration \"soon\"",
    );
    fails(
        &["--program", "x", "--duration", "99999999999999999999999h"],
        "invalid duration \"99999999999999999999999h\"",
    );
    fails(
        &["--program", "x", "--name", "Proxy One"],
        "--name \"Proxy One\": a profile name is lower-case letters",
    );
    assert!(!dir.join("p.yaml").exists());
}

#[test]
fn no_process_matched_is_an_error_and_nothing_is_written() {
    let program = format!("nothing-runs-{}", random_hex(6));
    let learn = Learn::start(
        &["--standalone", "--program", &program, "--duration", "1s"],
        "p.yaml",
        TIMEOUT,
    );
    let out = learn.out.clone();
    let done = learn.wait(TIMEOUT);
    assert!(!done.success, "{}", done.stderr);
    assert!(
        done.stderr
            .contains("no process matched during the 1 s of learning"),
        "{}",
        done.stderr
    );
    assert!(!out.exists(), "a profile was written");
}

#[test]
fn sigint_writes_what_was_learned_from_a_process_already_running() {
    let w = Workload::new("learn-running");
    let (proc, stop_file) = w.start(None);
    let learn = Learn::start(
        &["--standalone", "--program", &w.program, "--name", "running"],
        "running.yaml",
        TIMEOUT,
    );
    // Learning follows the process from now on: let it read a few times.
    wait_rounds(&proc);
    let out = learn.out.clone();
    let done = learn.finish(TIMEOUT);
    stop(proc, &stop_file);
    assert!(done.success, "{}", done.stderr);
    assert!(
        done.stderr.contains("1 running process(es) matched so far"),
        "{}",
        done.stderr
    );
    let p = done.profile;
    assert!(p.contains(&format!("program: [{:?}]", w.program)), "{p}");
    assert!(p.contains(&format!("- {:?}", path_str(&w.read))), "{p}");
    assert!(!p.contains("startup:"), "already running: it serves\n{p}");
    assert_rules_valid(&out);
}

// ---- Through the agent ------------------------------------------------------------------

struct Fixture {
    profiles: PathBuf,
    sentinel: Sentinel,
    /// A script under the `phased` profile, and the file that profile lets it read only while
    /// starting.
    phased: Workload,
    phased_file: PathBuf,
}

static AGENT: SharedAgent<Fixture> = SharedAgent::new();

fn agent() -> Option<RulesAgent<Fixture>> {
    AGENT.join(|dir| {
        let profiles = dir.join("profiles");
        fs::create_dir_all(&profiles).map_err(|e| e.to_string())?;
        let sentinel = Sentinel::write(dir, &profiles)?;
        let phased = Workload::new("phased");
        let phased_file = phased.dir.join("startup-only.txt");
        fs::write(&phased_file, "x").map_err(|e| e.to_string())?;
        fs::write(
            profiles.join("phased.yaml"),
            format!(
                "profile: phased\nmatch:\n  program: [{:?}]\nallow:\n  read: [{:?}]\n  listen:\n    - {{ port: 1 }}\nstartup:\n  read: [{:?}]\nstartup_secs: 60\n",
                phased.program,
                path_str(&phased.read),
                path_str(&phased_file),
            ),
        )
        .map_err(|e| e.to_string())?;
        Ok(AgentSetup {
            rules: vec![shipped_rules().join("detections"), profiles.clone()],
            args: Vec::new(),
            fixture: Fixture {
                profiles,
                sentinel,
                phased,
                phased_file,
            },
        })
    })
}

#[test]
fn a_startup_read_is_allowed_before_the_first_listen_and_alerted_after() {
    let Some(agent) = agent() else { return };
    let fx = agent.fixture();
    let (proc, stop_file) = fx.phased.start(Some(&fx.phased_file));
    let pid = proc.pid();
    stop(proc, &stop_file);
    fx.sentinel.settle(&agent);
    let file = path_str(&fx.phased_file);
    let alerts = agent.alerts(|a| in_tree(a, pid));
    let reads: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "profile.read" && a["event"]["path"] == file.as_str())
        .collect();
    let brief: Vec<String> = alerts
        .iter()
        .map(|a| format!("{} {} {}", a["rule"], a["phase"], a["event"]["path"]))
        .collect();
    assert_eq!(reads.len(), 1, "only the read after the listen: {brief:#?}");
    let a = reads[0];
    assert_eq!(a["phase"], "serving");
    assert_eq!(a["profile"], "phased");
    assert_eq!(a["event"]["profile"], "phased");
    assert_eq!(a["event"]["phase"], "serving");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .ends_with("outside profile phased allow.read"),
        "{a}"
    );
    // Its listen on an ephemeral port happened while starting: that alert says so.
    let listen = alerts
        .iter()
        .find(|a| a["rule"] == "profile.listen")
        .expect("a profile.listen alert");
    assert_eq!(listen["phase"], "startup");
    assert!(
        listen["message"]
            .as_str()
            .unwrap()
            .ends_with("outside profile phased allow.listen and startup.listen"),
        "{listen}"
    );
}

#[test]
fn learning_through_the_agent_keeps_detection_going_across_a_reload() {
    let Some(agent) = agent() else { return };
    let fx = agent.fixture();
    let w = Workload::new("learn-agent");
    let socket = path_str(agent.control_socket());
    let learn = Learn::start(
        &["--control-socket", &socket, "--program", &w.program],
        "agent.yaml",
        TIMEOUT,
    );
    let (first, first_stop) = w.start(None);
    // Detection goes on meanwhile: the phased profile's process reads what it may not.
    let (phased, phased_stop) = fx.phased.start(Some(&fx.phased_file));
    let phased_pid = phased.pid();
    stop(phased, &phased_stop);
    agent.wait_alert(TIMEOUT, "the phased profile's read while learning", |a| {
        a["rule"] == "profile.read" && in_tree(a, phased_pid)
    });
    // A reload while learning: the session goes on, and follows what starts after it.
    let _extra = FileGuard::write(
        fx.profiles.join("extra.yaml"),
        "profile: extra\nmatch:\n  uid: [4242424]\n",
    );
    agent.reload(TIMEOUT);
    let (second, second_stop) = w.start(None);
    stop(first, &first_stop);
    stop(second, &second_stop);
    let done = learn.finish(TIMEOUT);
    assert!(done.success, "{}", done.stderr);
    assert!(
        done.stderr.contains("through the running agent"),
        "{}",
        done.stderr
    );
    assert!(
        done.profile.contains(&format!("- {:?}", path_str(&w.read))),
        "{}",
        done.profile
    );
    assert!(
        done.profile
            .contains("2 process(es) in 2 workload instance(s)"),
        "one instance before the reload, one after:\n{}",
        done.profile
    );
    assert!(
        done.profile.contains("Not learned: listened on port(s)"),
        "an ephemeral port is reported, not learned:\n{}",
        done.profile
    );
}

// ---- Merge, diff, recordings -------------------------------------------------------------

#[test]
fn merge_keeps_every_existing_entry_and_marks_the_unseen_ones() {
    let w = Workload::new("learn-merge");
    let dir = TempDir::new("merge");
    let existing = dir.join("existing.yaml");
    fs::write(
        &existing,
        format!(
            "profile: merged\nmatch:\n  program: [{:?}]\nallow:\n  read: [{:?}, \"/opt/never-read/**\"]\n",
            w.program,
            path_str(&w.read),
        ),
    )
    .unwrap();
    let learn = Learn::start(
        &[
            "--standalone",
            "--program",
            &w.program,
            "--merge",
            &path_str(&existing),
        ],
        "merged.yaml",
        TIMEOUT,
    );
    let (proc, stop_file) = w.start(None);
    wait_rounds(&proc);
    stop(proc, &stop_file);
    let out = learn.out.clone();
    let done = learn.finish(TIMEOUT);
    assert!(done.success, "{}", done.stderr);
    let p = &done.profile;
    assert!(p.contains("profile: \"merged\""), "{p}");
    let data = format!("{:?}", path_str(&w.read));
    let kept = p
        .lines()
        .find(|l| l.contains(&data))
        .expect("the existing entry stays");
    assert!(
        kept.contains("kept from") && kept.contains("first at"),
        "{kept}"
    );
    assert_eq!(p.matches(&data).count(), 1, "no second entry for it\n{p}");
    let unseen = p
        .lines()
        .find(|l| l.contains("/opt/never-read/**"))
        .expect("never removed");
    assert!(unseen.contains("NOT SEEN"), "{unseen}");
    assert!(
        done.stderr.contains("allow.read: \"/opt/never-read/**\""),
        "removal is never silent:\n{}",
        done.stderr
    );
    let script = format!("{:?}", path_str(&w.script));
    assert!(
        p.contains(&script),
        "its start-up's new reads are added\n{p}"
    );
    assert_rules_valid(&out);

    // The diff of the two: the existing profile had no listen.
    let diff = monitor(&["rules", "diff", &path_str(&existing), &path_str(&out)]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains("profile merged:"), "{text}");
    let same = monitor(&["rules", "diff", &path_str(&out), &path_str(&out)]);
    assert_eq!(same.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&same.stdout).trim(),
        "no differences"
    );
}

#[test]
fn rules_diff_lists_added_and_removed_entries_per_list_and_phase() {
    let dir = TempDir::new("diff");
    let old = dir.join("old.yaml");
    let new = dir.join("new.yaml");
    fs::write(&old, "profile: svc\nmatch:\n  program: [\"svc\"]\nallow:\n  read: [\"/app/**\", \"/etc/svc.conf\"]\n  listen:\n    - { port: 8000 }\n").unwrap();
    fs::write(&new, "profile: svc\nmatch:\n  program: [\"svc\"]\nallow:\n  read: [\"/app/**\", \"/opt/venv/**\"]\n  listen:\n    - { port: 8000 }\nstartup:\n  connect:\n    - { host: \"models.example\", port: 443 }\nstartup_secs: 60\n").unwrap();
    let out = monitor(&["rules", "diff", &path_str(&old), &path_str(&new)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let body: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(
        body,
        [
            "profile svc:",
            "  allow.read:",
            "    - \"/etc/svc.conf\"",
            "    + \"/opt/venv/**\"",
            "  startup.connect:",
            "    + { host: \"models.example\", port: 443 }",
            "  startup_secs:",
            "    + 60",
        ],
        "{text}"
    );
    let bad = dir.join("bad.yaml");
    fs::write(&bad, "profile: svc\nmatch: {}\n").unwrap();
    let out = monitor(&["rules", "diff", &path_str(&old), &path_str(&bad)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.yaml:2: key `match`: no selector"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn learning_from_a_recording_of_monitor_run_events() {
    let w = Workload::new("learn-recorded");
    let dir = TempDir::new("recording");
    let events = dir.join("events.jsonl");
    let ready = dir.join("ready");
    let mut agent = Proc::spawn(
        Command::new(agent_binary())
            .args([
                "run",
                "--events",
                "--no-control-socket",
                "--stats-interval",
                "0",
            ])
            .arg("--rules")
            .arg(shipped_rules().join("detections"))
            .arg("--output")
            .arg(format!("file:{}", events.display()))
            .arg("--ready-file")
            .arg(&ready),
    );
    wait_file(&ready);
    let (proc, stop_file) = w.start(None);
    wait_rounds(&proc);
    stop(proc, &stop_file);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.pid() as libc::pid_t, libc::SIGTERM) };
    assert!(agent.wait(TIMEOUT).success());
    let out = dir.join("recorded.yaml");
    let learned = monitor(&[
        "learn",
        "--from-events",
        &path_str(&events),
        "--program",
        &w.program,
        "--out",
        &path_str(&out),
    ]);
    assert!(learned.status.success(), "{}", stderr(&learned));
    let p = fs::read_to_string(&out).unwrap();
    assert!(p.contains(&format!("- {:?}", path_str(&w.read))), "{p}");
    assert_rules_valid(&out);
    // A recording cut off mid-line (the recorder was killed) still learns; the torn line is
    // skipped and named.
    let torn = dir.join("torn.jsonl");
    let mut text = fs::read_to_string(&events).unwrap();
    let lines = text.lines().count();
    text.push_str("{\"kind\":\"open\",\"pi");
    fs::write(&torn, text).unwrap();
    let learned = monitor(&[
        "learn",
        "--from-events",
        &path_str(&torn),
        "--program",
        &w.program,
        "--out",
        &path_str(&out),
    ]);
    assert!(learned.status.success(), "{}", stderr(&learned));
    let why = stderr(&learned);
    assert!(
        why.contains("1 line(s) of")
            && why.contains(&format!("torn.jsonl:{}: not a JSON line", lines + 1)),
        "{why}"
    );
    let broken = dir.join("broken.jsonl");
    fs::write(&broken, "{\"kind\":\"open\"}\nnot json\n").unwrap();
    let failed = monitor(&[
        "learn",
        "--from-events",
        &path_str(&broken),
        "--program",
        &w.program,
        "--out",
        &path_str(&out),
    ]);
    assert!(!failed.status.success());
    let why = stderr(&failed);
    assert!(
        why.contains("broken.jsonl:1: not an event") && why.contains("no events in the recording"),
        "{why}"
    );
}
