//! Process sensors end to end: exec (filename, argv, cwd, exe, lineage), fork and exit events of
//! real processes, filtered by the pids the tests start.

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt as _, fs::symlink, process::ExitStatusExt as _},
    path::Path,
    process::{self, Command},
};

use monitor_tests::{
    Agent, TIMEOUT, TempDir, canonical, cgroup_id, cgroup2_root, own_cgroup2_path,
    path_looks_containerised, path_str,
};
use serde_json::{Value, json};

/// The uid the tests run as (the agent needs root, so 0 in practice).
fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The cgroup id the test's children inherit, when it can be known.
fn own_cgroup_id() -> Option<u64> {
    let root = cgroup2_root()?;
    let path = own_cgroup2_path()?;
    cgroup_id(&root.join(path.trim_start_matches('/'))).ok()
}

/// Adds the identity fields the test's own children carry: their cgroup id and, unless the test
/// itself runs inside a container, no container or pod.
fn with_own_identity(mut expected: Value) -> Value {
    if let Some(id) = own_cgroup_id() {
        expected["cgroup_id"] = json!(id);
    }
    if own_cgroup2_path().is_some_and(|p| !path_looks_containerised(&p)) {
        expected["container_id"] = Value::Null;
        expected["pod_uid"] = Value::Null;
    }
    expected
}

#[test]
fn exec_reports_filename_argv_cwd_exe_lineage_and_exit_code() {
    let Some(agent) = Agent::start() else { return };
    let cwd = TempDir::new("exec-cwd");
    let mut child = agent.spawn(
        Command::new("/bin/sh")
            .args(["-c", "exit 3", "ignored-arg"])
            .current_dir(cwd.path()),
    );
    let pid = child.pid();
    assert_eq!(child.wait(TIMEOUT).code(), Some(3));

    let exec = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "exec" && ev["pid"] == pid);
    agent.assert_event(
        &exec,
        &with_own_identity(json!({
            "kind": "exec",
            "pid": pid,
            "tid": pid,
            "ppid": process::id(),
            "uid": uid(),
            "comm": "sh",
            "exe": canonical("/bin/sh"),
            "filename": "/bin/sh",
            "argv": ["/bin/sh", "-c", "exit 3", "ignored-arg"],
            "cwd": path_str(cwd.path()),
        })),
    );

    let exit = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "exit" && ev["pid"] == pid);
    agent.assert_event(
        &exit,
        &with_own_identity(json!({
            "kind": "exit",
            "pid": pid,
            "ppid": process::id(),
            "uid": uid(),
            "comm": "sh",
            "exe": canonical("/bin/sh"),
            "exit_code": 3,
            "signal": null,
        })),
    );

    // The test process forked the child.
    let fork = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "fork" && ev["child_pid"] == pid);
    agent.assert_event(
        &fork,
        &json!({"kind": "fork", "pid": process::id(), "child_pid": pid, "uid": uid()}),
    );
}

#[test]
fn fork_and_exec_of_a_grandchild_are_tied_to_its_parent() {
    let Some(agent) = Agent::start() else { return };
    // `/bin/true` is not the last command, so the shell forks, execs it in the child and waits.
    let mut shell = agent.spawn(Command::new("/bin/sh").args(["-c", "/bin/true one two; exit 5"]));
    let shell_pid = shell.pid();
    assert_eq!(shell.wait(TIMEOUT).code(), Some(5));

    let exec = agent.wait_for(TIMEOUT, |ev| {
        ev["kind"] == "exec" && ev["ppid"] == shell_pid && ev["filename"] == "/bin/true"
    });
    let Some(grandchild) = exec["pid"].as_u64() else {
        panic!("exec event without a pid: {exec}");
    };
    assert_ne!(grandchild, u64::from(shell_pid));
    agent.assert_event(
        &exec,
        &json!({
            "kind": "exec",
            "tid": grandchild,
            "ppid": shell_pid,
            "comm": "true",
            "exe": canonical("/bin/true"),
            "filename": "/bin/true",
            "argv": ["/bin/true", "one", "two"],
        }),
    );

    let fork = agent.wait_for(TIMEOUT, |ev| {
        ev["kind"] == "fork" && ev["child_pid"] == grandchild
    });
    agent.assert_event(
        &fork,
        &json!({"kind": "fork", "pid": shell_pid, "tid": shell_pid, "comm": "sh"}),
    );

    let exits = agent.wait_for_all(
        TIMEOUT,
        &[
            json!({"kind": "exit", "pid": grandchild}),
            json!({"kind": "exit", "pid": shell_pid}),
        ],
    );
    agent.assert_event(
        &exits[0],
        &json!({"ppid": shell_pid, "exit_code": 0, "signal": null}),
    );
    agent.assert_event(
        &exits[1],
        &json!({"ppid": process::id(), "exit_code": 5, "signal": null}),
    );
}

#[test]
fn exit_by_signal_reports_the_signal() {
    let Some(agent) = Agent::start() else { return };
    let mut child = agent.spawn(Command::new("/bin/sh").args(["-c", "kill -KILL $$"]));
    let pid = child.pid();
    assert_eq!(child.wait(TIMEOUT).signal(), Some(libc::SIGKILL));

    let exit = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "exit" && ev["pid"] == pid);
    // The contract leaves `exit_code` of a killed process open; only the signal is checked.
    agent.assert_event(
        &exit,
        &json!({"kind": "exit", "pid": pid, "signal": libc::SIGKILL}),
    );
}

/// Runs `cmd` to a successful end and returns its exec event.
#[track_caller]
fn exec_of(agent: &Agent, cmd: &mut Command) -> Value {
    let mut child = agent.spawn(cmd);
    let pid = child.pid();
    assert!(child.wait(TIMEOUT).success());
    agent.wait_for(TIMEOUT, |ev| ev["kind"] == "exec" && ev["pid"] == pid)
}

#[test]
fn exec_escapes_non_utf8_and_backslashes_in_argv() {
    let Some(agent) = Agent::start() else { return };
    let exec = exec_of(
        &agent,
        Command::new("/bin/sh").args([
            OsStr::new("-c"),
            OsStr::new("exit 0"),
            OsStr::new("sh"),
            OsStr::from_bytes(b"caf\xe9"),
            OsStr::new(r"back\slash"),
            OsStr::new(r"\xe9 typed out"),
        ]),
    );
    // The byte 0xe9 becomes the four characters `\xe9`; a literal backslash becomes two, so the
    // typed-out `\xe9` stays distinguishable from the escaped byte.
    agent.assert_event(
        &exec,
        &json!({
            "kind": "exec",
            "filename": "/bin/sh",
            "argv": ["/bin/sh", "-c", "exit 0", "sh", r"caf\xe9", r"back\\slash", r"\\xe9 typed out"],
            "escaped": ["argv"],
        }),
    );
}

#[test]
fn exec_argv_that_is_valid_utf8_is_exact() {
    let Some(agent) = Agent::start() else { return };
    let exec = exec_of(
        &agent,
        Command::new("/bin/sh").args(["-c", "exit 0", "sh", r"back\slash", r"\xe9 typed out"]),
    );
    agent.assert_event(
        &exec,
        &json!({
            "kind": "exec",
            "argv": ["/bin/sh", "-c", "exit 0", "sh", r"back\slash", r"\xe9 typed out"],
        }),
    );
    assert!(exec.get("escaped").is_none(), "{exec}");
}

#[test]
fn exec_through_a_non_utf8_symlink_escapes_filename_and_resolves_exe() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("exec-link");
    let link = dir.path().join(OsStr::from_bytes(b"caf\xe9-sh"));
    symlink(Path::new("/bin/sh"), &link).expect("creating the symlink");
    let exec = exec_of(&agent, Command::new(&link).args(["-c", "exit 0"]));
    let escaped = format!(r"{}/caf\xe9-sh", path_str(dir.path()));
    agent.assert_event(
        &exec,
        &json!({
            "kind": "exec",
            "filename": escaped,
            "argv": [escaped, "-c", "exit 0"],
            "exe": canonical("/bin/sh"),
            "escaped": ["argv", "filename", "comm"],
        }),
    );
}
