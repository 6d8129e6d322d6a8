//! The agent's control socket as `monitor learn` meets it: an agent that stops while a client
//! learns through it hands over what was learned (the profile is written, not lost), and the
//! agent refuses a control socket in a directory other users may write to.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command};

use monitor_tests::{
    Proc, TIMEOUT, TempDir, agent_binary,
    learn::{Learn, Workload, assert_rules_valid, stop, wait_file, wait_rounds},
    path_str,
    rules::shipped_rules,
};

/// `monitor run` with the shipped detections and a control socket at `socket`.
fn agent(socket: &Path, ready: &Path) -> Proc {
    Proc::spawn(
        Command::new(agent_binary())
            .args(["run", "--stats-interval", "0"])
            .arg("--rules")
            .arg(shipped_rules().join("detections"))
            .arg("--control-socket")
            .arg(socket)
            .arg("--ready-file")
            .arg(ready),
    )
}

#[test]
fn an_agent_that_stops_while_learning_hands_over_what_was_learned() {
    let dir = TempDir::new("learn-stop");
    let socket = dir.join("control.sock");
    let ready = dir.join("ready");
    let mut agent = agent(&socket, &ready);
    wait_file(&ready);
    let w = Workload::new("learn-stop");
    let learn = Learn::start(
        &[
            "--control-socket",
            &path_str(&socket),
            "--program",
            &w.program,
        ],
        "p.yaml",
        TIMEOUT,
    );
    let (proc, stop_file) = w.start(None);
    wait_rounds(&proc);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.pid() as libc::pid_t, libc::SIGTERM) };
    let stopped = agent.finish(TIMEOUT);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let out = learn.out.clone();
    let done = learn.wait(TIMEOUT);
    stop(proc, &stop_file);
    assert!(done.success, "{}", done.stderr);
    assert!(
        done.stderr
            .contains("the agent stopped before the window ended: writing what was learned"),
        "{}",
        done.stderr
    );
    assert!(
        done.profile.contains(&format!("- {:?}", path_str(&w.read))),
        "{}",
        done.profile
    );
    assert_rules_valid(&out);
    assert!(!socket.exists(), "the agent removes its socket");
}

#[test]
fn a_control_socket_where_others_may_write_is_refused() {
    let dir = TempDir::new("control-dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.join("control.sock");
    let mut agent = agent(&socket, &dir.join("ready"));
    let done = agent.finish(TIMEOUT);
    assert!(!done.status.success());
    assert!(
        done.stderr.contains(&format!(
            "the control socket's directory {} may be written by other users",
            dir.path().display()
        )),
        "{}",
        done.stderr
    );
    assert!(!socket.exists() && !dir.join("ready").exists());
}
