//! The host-wide detections of what Sigma's Linux categories cannot express (its file_event is
//! creation only): reading /etc/shadow and other system credential stores, deleting or
//! emptying a history file, an interpreter starting an interactive shell. Each with a real
//! process doing it (positive) and one doing the ordinary thing next to it (negative).
//!
//! The shared agent of the Sigma tests (the shipped rules, `--watch-all`); home paths are
//! exercised in a fake home under `/home` (the rules' `~/`).

use std::process::Command;

use monitor_tests::{
    TIMEOUT, path_str,
    rules::{DirGuard, write_file},
    sigma::{Case, agent, expect_no_alert, expect_rule, run},
};

/// A fake home with a history file, and a case directory for the sentinel.
fn home(label: &str) -> (DirGuard, Case) {
    let home = DirGuard::fake_home().expect("a fake home under /home (CI=true)");
    home.write(".bash_history", "ls\nwhoami\n");
    home.write(".zsh_history", ": 1700000000:0;ls\n");
    home.write(".psql_history", "select 1;\n");
    home.write(".mysql_history", "select 1;\n");
    home.write("notes.txt", "notes\n");
    (home, Case::new(label))
}

#[test]
fn reading_etc_shadow_is_a_system_credential_read() {
    let agent = agent();
    let case = Case::new("shadow");
    let pid = run(&agent, &["cat", "/etc/shadow"], case.dir.path());
    let alert = expect_rule(&agent, "credential-read.system", pid);
    assert_eq!(alert["event"]["path"], "/etc/shadow", "{alert}");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["mitre"], serde_json::json!(["T1003.008"]));
    // passwd reads it to report the account's status: its own file.
    let pid = run(&agent, &["passwd", "-S", "root"], case.dir.path());
    expect_no_alert(&agent, &case, "credential-read.system", pid);
}

#[test]
fn deleting_moving_or_emptying_a_history_file_is_tampering() {
    let agent = agent();
    let (home, case) = home("history");
    let dir = home.path();
    let bash = path_str(home.join(".bash_history"));
    let zsh = path_str(home.join(".zsh_history"));
    let pid = run(&agent, &["rm", &bash], dir);
    let alert = expect_rule(&agent, "history-tamper", pid);
    assert_eq!(alert["event"]["kind"], "unlink", "{alert}");
    assert_eq!(alert["event"]["path"], bash.as_str(), "{alert}");
    let pid = run(&agent, &["mv", &zsh, &path_str(home.join("z"))], dir);
    expect_rule(&agent, "history-tamper", pid);
    // Emptied in place, by the shell's own redirection or by truncate(1).
    let psql = path_str(home.join(".psql_history"));
    let pid = run(&agent, &["bash", "-c", &format!(": > {psql}")], dir);
    let alert = expect_rule(&agent, "history-tamper.truncate", pid);
    assert_eq!(alert["event"]["path"], psql.as_str(), "{alert}");
    let mysql = path_str(home.join(".mysql_history"));
    let pid = run(&agent, &["truncate", "-s", "0", &mysql], dir);
    expect_rule(&agent, "history-tamper.truncate", pid);

    // An interactive bash that appends its history, then one that trims it (a temporary file
    // renamed over it), and rm of another file: none of it is tampering.
    let bash = path_str(home.write(".bash_history", "a\nb\nc\nd\n"));
    let session = |size: &str| {
        let input = path_str(write_file(home.join("input"), "echo one\nexit\n"));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("exec bash -i < {input}")])
            .current_dir(dir)
            .env("HOME", dir)
            .env("HISTFILE", &bash)
            .env("HISTFILESIZE", size);
        let mut child = agent.spawn(&mut cmd);
        child.finish(TIMEOUT);
        child.pid()
    };
    for pid in [session("500"), session("2")] {
        expect_no_alert(&agent, &case, "history-tamper", pid);
        expect_no_alert(&agent, &case, "history-tamper.truncate", pid);
    }
    let saved = std::fs::read_to_string(&bash).expect("history");
    assert!(
        saved.contains("echo one"),
        "the sessions saved their history: {saved:?}"
    );
    let pid = run(&agent, &["rm", &path_str(home.join("notes.txt"))], dir);
    expect_no_alert(&agent, &case, "history-tamper", pid);
}

#[test]
fn an_interpreter_starting_an_interactive_shell() {
    let agent = agent();
    let case = Case::new("pty-shell");
    let dir = case.dir.path();
    // The terminal's user types `exit`.
    let input = write_file(case.dir.join("input"), "exit\n");
    let pid = run(
        &agent,
        &[
            "python3",
            "-c",
            "import os, pty, sys; os.dup2(os.open(sys.argv[1], os.O_RDONLY), 0); \
             pty.spawn('/bin/bash')",
            &path_str(input),
        ],
        dir,
    );
    let alert = expect_rule(&agent, "interactive-shell.interpreter", pid);
    assert_eq!(alert["event"]["exe"], "/usr/bin/bash", "{alert}");
    let pid = run(&agent, &["perl", "-e", "system('/bin/sh', '-i')"], dir);
    expect_rule(&agent, "interactive-shell.interpreter", pid);
    // Shells with a command or a script, as programs run them every day.
    let script = path_str(write_file(case.dir.join("s.sh"), "true\n"));
    let pid = run(
        &agent,
        &[
            "python3",
            "-c",
            "import subprocess, sys; subprocess.run('true', shell=True); \
             subprocess.run(['bash', sys.argv[1]])",
            &script,
        ],
        dir,
    );
    expect_no_alert(&agent, &case, "interactive-shell.interpreter", pid);
}

#[test]
fn truncating_a_history_file_to_nothing_is_tampering() {
    let agent = agent();
    let (home, case) = home("history-truncate");
    let dir = home.path();
    // truncate(2) itself, no open: the sensor's `truncate` event.
    let zsh = path_str(home.join(".zsh_history"));
    let pid = run(
        &agent,
        &[
            "python3",
            "-c",
            "import os, sys; os.truncate(sys.argv[1], 0)",
            &zsh,
        ],
        dir,
    );
    let alert = expect_rule(&agent, "history-tamper.truncate", pid);
    assert_eq!(alert["event"]["kind"], "truncate", "{alert}");
    assert_eq!(alert["event"]["path"], zsh.as_str(), "{alert}");
    assert_eq!(alert["event"]["length"], 0, "{alert}");
    // Another file truncated: nothing.
    let notes = path_str(home.join("notes.txt"));
    let pid = run(
        &agent,
        &[
            "python3",
            "-c",
            "import os, sys; os.truncate(sys.argv[1], 0)",
            &notes,
        ],
        dir,
    );
    expect_no_alert(&agent, &case, "history-tamper.truncate", pid);
}

/// Writes a copy of /bin/true at `$1`, gives it the name `$2` by `$3` (`ln` or `mv`) and runs
/// it under that name.
const DROP_RENAME_RUN: &str =
    "cp /bin/true \"$1\" && chmod +x \"$1\" && $3 \"$1\" \"$2\" && \"$2\"";

#[test]
fn write_then_exec_follows_a_dropped_file_to_its_new_name() {
    let agent = agent();
    let case = Case::new("wte-link");
    // Dropped in /tmp (the host-wide drop locations), run from a home directory on the same
    // file system: the name run matches none of the rule's paths, the file does.
    let home = DirGuard::fake_home().expect("a fake home under /home (CI=true)");
    for (how, name) in [("ln", "linked"), ("mv", "moved")] {
        let dropped = case.path(&format!("drop-{name}"));
        let run_as = path_str(home.join(name));
        let pid = run(
            &agent,
            &["sh", "-c", DROP_RENAME_RUN, "sh", &dropped, &run_as, how],
            case.dir.path(),
        );
        let alert = expect_rule(&agent, "write-then-exec.tmp", pid);
        assert_eq!(alert["event"]["kind"], "exec", "{alert}");
        assert_eq!(alert["event"]["filename"], run_as.as_str(), "{alert}");
        let message = alert["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("wrote earlier as {dropped}")),
            "{how}: {alert}"
        );
    }
    // A hard link to a file nobody in the family wrote, run from the home: nothing.
    let sentinel = path_str(home.join("true-link"));
    let pid = run(
        &agent,
        &[
            "sh",
            "-c",
            "ln /usr/bin/true \"$1\" && \"$1\"",
            "sh",
            &sentinel,
        ],
        case.dir.path(),
    );
    expect_no_alert(&agent, &case, "write-then-exec.tmp", pid);
}
