//! The shipped detections (`rules/detections/`) end to end: for every detection, real processes
//! do what it describes and the agent raises exactly that alert (positive), and a similar but
//! benign action raises nothing (negative).
//!
//! One agent serves the whole binary: the shipped rules, `--watch-all` (detections apply to every
//! process), and a permissive test profile (`detections-test`: everything allowed, so only
//! detections fire) for the detections scoped to profiled servers. A child joins that profile by
//! carrying the fixture's marker in its argv. Home-directory paths are exercised in a fake home
//! under `/home` (the rules' `~/` covers `/home/*/`); system paths (/etc/cron.d, /etc/systemd...)
//! only by write attempts that fail, so nothing is created there.
//!
//! Negatives end with a sentinel: the same child, last, reads a `.env` file (a `credential-read`
//! alert). The agent handles each process's events in order, so once the sentinel's alert is
//! out, an alert for the benign action would have been too.

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::{Command, Stdio},
};

use monitor_tests::{
    Proc, TIMEOUT, TempDir, canonical, matches, path_str, python, random_hex,
    rules::{
        AgentSetup, DirGuard, NetNs, PythonInfo, RulesAgent, SharedAgent, expected_meta, find_tool,
        in_tree, note, one_per_line, shipped_detection_ids, shipped_rules, write_file,
    },
    skip_or_fail,
};
use serde_json::{Value, json};

/// The permissive profile's name.
const PROFILE: &str = "detections-test";

struct Fixture {
    /// Present in the argv of every process that takes [`PROFILE`].
    marker: String,
}

type Agent = RulesAgent<Fixture>;

static AGENT: SharedAgent<Fixture> = SharedAgent::new();

fn agent() -> Option<Agent> {
    AGENT.join(|dir| {
        let marker = format!("monitor-test-profiled-{}", random_hex(6));
        let py = PythonInfo::get();
        let profile = format!(
            "profile: {PROFILE}\n\
             description: rules_detections test processes; everything allowed, so only \
             detections fire\n\
             match:\n  exe: [\"{}\", \"{}\"]\n  argv_contains: [\"{marker}\"]\n\
             mode: alert\n\
             allow:\n  exec: [\"/**\"]\n  read: [\"/**\"]\n  write: [\"/**\"]\n\
             \x20 connect:\n    - {{ cidr: \"0.0.0.0/0\" }}\n    - {{ cidr: \"::/0\" }}\n",
            py.executable, py.resolved
        );
        fs::write(dir.join("detections-test.yaml"), profile)
            .map_err(|e| format!("cannot write the test profile: {e}"))?;
        Ok(AgentSetup {
            rules: vec![shipped_rules(), dir.to_path_buf()],
            args: vec!["--watch-all".to_owned()],
            fixture: Fixture { marker },
        })
    })
}

/// Performs the actions given as arguments, in order: `read PATH`, `try-read PATH` (may fail),
/// `write PATH` (create or append), `try-write PATH` (open for writing without creating: fails
/// unless the file exists, so it leaves nothing behind), `rename SRC DST`, `chmod PATH` (to 0755),
/// `spawn "PROG ARG..."` (prints `spawned PID PROG`), `forks N` (N children that exit at once).
/// Then reads the sentinel named by MONITOR_TEST_SENTINEL, if any.
const ACTIONS: &str = r#"
import os, subprocess, sys
args = sys.argv[1:]
while args:
    op, arg, args = args[0], args[1], args[2:]
    if op in ('read', 'try-read'):
        try:
            os.close(os.open(arg, os.O_RDONLY))
        except OSError:
            if op == 'read':
                raise
    elif op == 'write':
        fd = os.open(arg, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, b'monitor-test\n')
        os.close(fd)
    elif op == 'try-write':
        try:
            os.close(os.open(arg, os.O_WRONLY | os.O_APPEND))
        except OSError:
            pass
    elif op == 'rename':
        os.rename(arg, args[0])
        args = args[1:]
    elif op == 'chmod':
        os.chmod(arg, 0o755)
    elif op == 'spawn':
        argv = arg.split(' ')
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        p.wait()
        print('spawned', p.pid, argv[0], flush=True)
    elif op == 'forks':
        for _ in range(int(arg)):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
    else:
        sys.exit('unknown action ' + op)
sentinel = os.environ.get('MONITOR_TEST_SENTINEL')
if sentinel:
    os.close(os.open(sentinel, os.O_RDONLY))
"#;

/// A `.env` file whose reading is the negatives' sentinel.
struct Sentinel {
    _dir: TempDir,
    path: String,
}

impl Sentinel {
    fn new() -> Self {
        let dir = TempDir::new("sentinel");
        let path = path_str(write_file(dir.join(".env"), "SENTINEL=1\n"));
        Self { _dir: dir, path }
    }
}

/// `ACTIONS` outside any profile.
fn unprofiled(actions: &[&str]) -> Command {
    let mut cmd = python(ACTIONS);
    cmd.args(actions);
    cmd
}

/// `ACTIONS` under the permissive profile (the marker rides in the script text, an argv
/// element).
fn profiled(agent: &Agent, actions: &[&str]) -> Command {
    let mut cmd = python(&format!("# {}\n{ACTIONS}", agent.fixture().marker));
    cmd.args(actions);
    cmd
}

/// Runs a command to completion and returns it with its stdout.
#[track_caller]
fn run(agent: &Agent, cmd: &mut Command) -> (Proc, String) {
    let mut child = agent.spawn(cmd);
    let out = child.finish_ok(TIMEOUT);
    (child, out)
}

/// The `spawned PID PROG` lines of ACTIONS.
fn spawned(stdout: &str) -> Vec<(u32, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("spawned ")?.split(' ');
            let pid = words.next()?.parse().ok()?;
            Some((pid, words.next()?.to_owned()))
        })
        .collect()
}

/// Waits for the `rule` alert whose event has the fields of `event`, and asserts the rule's
/// severity and MITRE ids, the profile and the event's fields.
#[track_caller]
fn expect_alert(agent: &Agent, rule: &str, profile: Option<&str>, event: Value) -> Value {
    let alert = agent.wait_alert(TIMEOUT, &format!("a {rule} alert for {event}"), |a| {
        a["rule"] == rule && matches(&a["event"], &event)
    });
    let mut expected = expected_meta(rule);
    expected["profile"] = json!(profile);
    expected["event"] = event;
    agent.assert_alert(&alert, &expected);
    alert
}

/// Waits for the sentinel read by `pid`, then asserts that no alert of `rules` concerns `pid`
/// or its descendants (the sentinel's own alert aside).
#[track_caller]
fn expect_none(agent: &Agent, pid: u32, sentinel: &Sentinel, rules: &[&str]) {
    agent.wait_alert(
        TIMEOUT,
        &format!(
            "the sentinel alert (credential-read of {}) of pid {pid}",
            sentinel.path
        ),
        |a| {
            a["rule"] == "credential-read"
                && a["event"]["path"] == sentinel.path.as_str()
                && in_tree(a, pid)
        },
    );
    let unexpected = agent.alerts(|a| {
        rules.iter().any(|r| a["rule"] == *r)
            && in_tree(a, pid)
            && a["event"]["path"] != sentinel.path.as_str()
    });
    assert!(
        unexpected.is_empty(),
        "benign actions of pid {pid} raised {rules:?} alerts:\n{}",
        one_per_line(&unexpected)
    );
}

/// Runs `ACTIONS` with the sentinel, then [`expect_none`].
#[track_caller]
fn run_benign(agent: &Agent, mut cmd: Command, rules: &[&str]) {
    let sentinel = Sentinel::new();
    cmd.env("MONITOR_TEST_SENTINEL", &sentinel.path);
    let (child, _) = run(agent, &mut cmd);
    expect_none(agent, child.pid(), &sentinel, rules);
}

/// A unique path under a system directory that must not exist (write attempts on it fail).
#[track_caller]
fn absent(dir: &str, name: &str) -> String {
    let path = format!("{dir}/monitor-test-{}-{name}", random_hex(4));
    assert!(!Path::new(&path).exists(), "{path} exists");
    path
}

// ---------------------------------------------------------------------------------------------
// The rule files themselves.

#[test]
fn every_shipped_detection_is_covered_here() {
    let ids: BTreeSet<String> = shipped_detection_ids().into_iter().collect();
    let covered: BTreeSet<String> = COVERED.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        ids, covered,
        "the shipped detections and the ones this file tests differ: add tests (and \
         rules::expected_meta entries) for new detections"
    );
    for id in &ids {
        assert!(
            expected_meta(id)["severity"].is_string(),
            "no expected severity/MITRE for {id}"
        );
    }
}

/// Every detection this file (or, where named, another) has a positive and a negative test for.
const COVERED: &[&str] = &[
    // tests/detections_host.rs
    "credential-read.system",
    "history-tamper",
    "history-tamper.truncate",
    "interactive-shell.interpreter",
    "credential-read",
    "credential-read.history",
    "credential-read.wallet",
    "interpreter-startup-hook",
    "interpreter-startup-hook.code",
    "persistence.systemd",
    "persistence.cron",
    "persistence.shell-rc",
    "persistence.ld-preload",
    "persistence.ssh-authorized-keys",
    "persistence.init-scripts",
    "write-then-exec",
    "write-then-exec.tmp",
    "fileless-exec",
    "proc-access",
    "cloud-metadata",
    "process-burst",
    "tool-spawn.recon",
    "tool-spawn.archive",
    "tool-spawn.encryption",
    "tool-spawn.transfer",
];

#[test]
fn shipped_rules_pass_the_checker() {
    let bin = monitor_tests::agent_binary();
    if !bin.is_file() {
        skip_or_fail(&format!(
            "the agent binary {} does not exist: build it with `cargo build --release -p monitor`",
            bin.display()
        ));
        return;
    }
    let out = Command::new(&bin)
        .args(["rules", "check"])
        .arg(shipped_rules())
        .stdin(Stdio::null())
        .output()
        .expect("running monitor rules check");
    assert!(
        out.status.success(),
        "`monitor rules check rules/` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// credential-read, credential-read.history, credential-read.wallet

/// Home-relative credential files, one or more per family of the rule.
const CREDENTIALS: &[&str] = &[
    ".ssh/id_ed25519",
    ".ssh/deploy.pem",
    ".aws/credentials",
    ".aws/config",
    ".config/gcloud/application_default_credentials.json",
    ".azure/msal_token_cache.json",
    ".kube/config",
    ".docker/config.json",
    ".git-credentials",
    ".config/git/credentials",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials.toml",
    ".gem/credentials",
    "project/.env",
    "project/.env.production",
];

#[test]
fn credential_read_alerts_for_each_kind_of_credential_file() {
    let Some(agent) = agent() else { return };
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let paths: Vec<String> = CREDENTIALS
        .iter()
        .map(|rel| path_str(home.write(rel, "fake credential\n")))
        .collect();
    let mut actions: Vec<&str> = paths.iter().flat_map(|p| ["read", p.as_str()]).collect();
    // Kubernetes service account tokens: read when present, attempted (a failed open still
    // counts) when not. Nothing is created outside the fake home.
    let tokens = [
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/kubernetes.io/serviceaccount/token",
    ];
    for token in tokens {
        actions.extend(["try-read", token]);
    }
    let (child, _) = run(&agent, &mut unprofiled(&actions));
    let pid = child.pid();
    for path in &paths {
        expect_alert(
            &agent,
            "credential-read",
            None,
            json!({"kind": "open", "pid": pid, "path": path, "access": "read", "result": 0}),
        );
    }
    // A failed open reports the path as requested; a successful one the resolved path (the
    // token is a symlink into a timestamped directory).
    for prefix in ["/var/run/secrets/", "/run/secrets/"] {
        let alert = agent.wait_alert(
            TIMEOUT,
            &format!("a credential-read alert for {prefix}..."),
            |a| {
                a["rule"] == "credential-read"
                    && a["event"]["pid"] == pid
                    && a["event"]["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(prefix) && p.ends_with("/token"))
            },
        );
        agent.assert_alert(&alert, &expected_meta("credential-read"));
    }
}

#[test]
fn credential_read_ignores_public_keys_known_hosts_templates_and_writes() {
    let Some(agent) = agent() else { return };
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let mut actions = Vec::new();
    for rel in [
        ".ssh/known_hosts",
        ".ssh/config",
        ".ssh/id_ed25519.pub",
        "project/.env.example",
        ".aws/notes.txt",
        "notes.txt",
    ] {
        actions.push("read".to_owned());
        actions.push(path_str(home.write(rel, "benign\n")));
    }
    // Writing a credential file is not reading it.
    actions.push("write".to_owned());
    actions.push(path_str(home.join(".aws/credentials")));
    fs::create_dir_all(home.join(".aws")).expect("creating .aws");
    let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
    run_benign(&agent, unprofiled(&actions), &["credential-read"]);
}

#[test]
fn an_alert_says_which_ancestors_command_line_was_cut() {
    let Some(agent) = agent() else { return };
    let sentinel = Sentinel::new();
    // The parent's command line (its script, with a long comment) is over the 4096-byte bound.
    let mut cmd = python(&format!("# {}\n{ACTIONS}", "x".repeat(8192)));
    cmd.args(["spawn", &format!("/bin/cat {}", sentinel.path)]);
    let (parent, out) = run(&agent, &mut cmd);
    let [(cat, _)] = spawned(&out)[..] else {
        panic!("one spawned line expected: {out}")
    };
    let alert = expect_alert(
        &agent,
        "credential-read",
        None,
        json!({"kind": "open", "pid": cat, "path": sentinel.path, "access": "read", "result": 0}),
    );
    let ancestors = alert["ancestors"].as_array().expect("ancestors");
    assert_eq!(ancestors[0]["pid"], parent.pid(), "{alert}");
    assert_eq!(ancestors[0]["argv_truncated"], true, "{alert}");
    // The kernel's 4096 bytes, NUL-separated: the last argument is cut, so it has no NUL.
    let argv: Vec<&str> = ancestors[0]["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(argv.iter().map(|a| a.len() + 1).sum::<usize>() - 1, 4096);
    assert!(argv.last().is_some_and(|a| a.starts_with("# xxx")));
    // This test's own process has a short command line: no flag at all.
    assert_eq!(ancestors[1]["pid"], std::process::id(), "{alert}");
    assert_eq!(ancestors[1].get("argv_truncated"), None, "{alert}");
}

#[test]
fn credential_read_by_the_owning_tool_is_excepted() {
    let Some(agent) = agent() else { return };
    let Some(keygen) = find_tool(&["/usr/bin/ssh-keygen"]) else {
        skip_or_fail(
            "/usr/bin/ssh-keygen is not installed: the ssh tools' exception is not tested",
        );
        return;
    };
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let key = path_str(home.write(".ssh/id_ed25519", "not a real key\n"));
    // ssh-keygen opens the key (and fails to parse it); the exception covers the ssh tools.
    let spawn = format!("{keygen} -l -f {key}");
    run_benign(&agent, unprofiled(&["spawn", &spawn]), &["credential-read"]);
}

/// Writes `contents` to each of `home_files` in a fake home, reads them all from one child and
/// expects a `rule` alert for each read.
#[track_caller]
fn reads_in_home_alert(agent: &Agent, rule: &str, home_files: &[&str], contents: &str) {
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let paths: Vec<String> = home_files
        .iter()
        .map(|rel| path_str(home.write(rel, contents)))
        .collect();
    let actions: Vec<&str> = paths.iter().flat_map(|p| ["read", p.as_str()]).collect();
    let (child, _) = run(agent, &mut unprofiled(&actions));
    for path in &paths {
        expect_alert(
            agent,
            rule,
            None,
            json!({"kind": "open", "pid": child.pid(), "path": path, "access": "read"}),
        );
    }
}

#[test]
fn credential_read_history_alerts_for_shell_and_database_histories() {
    let Some(agent) = agent() else { return };
    reads_in_home_alert(
        &agent,
        "credential-read.history",
        &[".bash_history", ".psql_history", ".python_history"],
        "export TOKEN=fake\n",
    );
}

#[test]
fn credential_read_history_ignores_bash_reading_its_own_history() {
    let Some(agent) = agent() else { return };
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let history = path_str(home.write(".bash_history", "ls\n"));
    let other = path_str(home.write(".bash_history_notes", "ls\n"));
    let bash = canonical("/bin/bash");
    let spawn = format!("{bash} -c history${{IFS}}-r${{IFS}}{history}");
    run_benign(
        &agent,
        unprofiled(&["spawn", &spawn, "read", &other]),
        &["credential-read.history"],
    );
}

#[test]
fn credential_read_wallet_alerts_for_wallets_and_keystores() {
    let Some(agent) = agent() else { return };
    reads_in_home_alert(
        &agent,
        "credential-read.wallet",
        &[
            ".bitcoin/wallet.dat",
            ".electrum/wallets/default_wallet",
            ".ethereum/keystore/UTC--2026-03-24T00-00-00Z--0000",
            ".config/Exodus/exodus.wallet/seed.seco",
        ],
        "fake wallet\n",
    );
}

#[test]
fn credential_read_wallet_ignores_node_configuration_and_logs() {
    let Some(agent) = agent() else { return };
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let conf = path_str(home.write(".bitcoin/bitcoin.conf", "server=1\n"));
    let log = path_str(home.write(".bitcoin/debug.log", "started\n"));
    run_benign(
        &agent,
        unprofiled(&["read", &conf, "read", &log]),
        &["credential-read.wallet"],
    );
}

// ---------------------------------------------------------------------------------------------
// interpreter-startup-hook

#[test]
fn interpreter_startup_hook_alerts_for_pth_and_customize_writes() {
    let Some(agent) = agent() else { return };
    let dir = TempDir::new("startup-hook");
    let site = dir.join("venv/lib/python3.11/site-packages");
    let dist = dir.join("usr/lib/python3/dist-packages");
    fs::create_dir_all(&site).expect("creating site-packages");
    fs::create_dir_all(&dist).expect("creating dist-packages");
    let created = path_str(site.join("monitor_test_hook.pth"));
    let staged = path_str(write_file(site.join("staged.tmp"), "import os\n"));
    let renamed = path_str(site.join("monitor_test_renamed.pth"));
    let dist_pth = path_str(dist.join("monitor_test.pth"));
    let sitecustomize = path_str(site.join("sitecustomize.py"));
    let usercustomize = path_str(dir.join("usercustomize.py"));
    let (child, _) = run(
        &agent,
        &mut profiled(
            &agent,
            &[
                "write",
                &created,
                "rename",
                &staged,
                &renamed,
                "chmod",
                &renamed,
                "write",
                &dist_pth,
                "write",
                &sitecustomize,
                "write",
                &usercustomize,
            ],
        ),
    );
    let pid = child.pid();
    for path in [&created, &dist_pth, &sitecustomize, &usercustomize] {
        expect_alert(
            &agent,
            "interpreter-startup-hook",
            Some(PROFILE),
            json!({"kind": "open", "pid": pid, "path": path, "access": "write", "created": true}),
        );
    }
    expect_alert(
        &agent,
        "interpreter-startup-hook",
        Some(PROFILE),
        json!({"kind": "rename", "pid": pid, "path": staged, "new_path": renamed}),
    );
    expect_alert(
        &agent,
        "interpreter-startup-hook",
        Some(PROFILE),
        json!({"kind": "chmod", "pid": pid, "path": renamed}),
    );
}

#[test]
fn interpreter_startup_hook_ignores_reading_pth_and_writing_modules() {
    let Some(agent) = agent() else { return };
    let dir = TempDir::new("startup-hook-benign");
    let site = dir.join("venv/lib/python3.11/site-packages");
    let existing = path_str(write_file(
        site.join("distutils-precedence.pth"),
        "import os\n",
    ));
    let module = path_str(site.join("monitor_test_module.py"));
    let elsewhere = path_str(dir.join("notes.pth"));
    run_benign(
        &agent,
        profiled(
            &agent,
            &["read", &existing, "write", &module, "write", &elsewhere],
        ),
        &["interpreter-startup-hook"],
    );
}

/// What the LiteLLM payload's `.pth` ran (decoding to `pass`).
const PAYLOAD_PTH: &str = "import os, subprocess, sys; subprocess.Popen([sys.executable, \"-c\", \
                           \"import base64; exec(base64.b64decode('cGFzcw=='))\"])\n";

#[test]
fn a_startup_hook_with_code_alerts_host_wide_when_written_and_when_loaded() {
    let Some(agent) = agent() else { return };
    let dir = TempDir::new("startup-hook-code");
    let site = dir.join("venv/lib/python3.11/site-packages");
    fs::create_dir_all(&site).expect("creating site-packages");
    // Renamed into place (content complete), by a host process outside every profile.
    let staged = path_str(write_file(site.join("staged.tmp"), PAYLOAD_PTH));
    let hook = path_str(site.join("litellm_init.pth"));
    let (writer, _) = run(&agent, &mut unprofiled(&["rename", &staged, &hook]));
    expect_alert(
        &agent,
        "interpreter-startup-hook.code",
        None,
        json!({"kind": "rename", "pid": writer.pid(), "path": staged, "new_path": hook}),
    );
    // Loaded: an interpreter reading it (here the hook came before the agent, say).
    let (loader, _) = run(&agent, &mut unprofiled(&["read", &hook]));
    expect_alert(
        &agent,
        "interpreter-startup-hook.code",
        None,
        json!({"kind": "open", "pid": loader.pid(), "path": hook, "access": "read"}),
    );
}

#[test]
fn startup_hooks_packages_ship_are_quiet_host_wide() {
    let Some(agent) = agent() else { return };
    let dir = TempDir::new("startup-hook-shipped");
    let site = dir.join("venv/lib/python3.11/site-packages");
    // What setuptools, virtualenv and an editable install write.
    let hooks = [
        (
            "distutils-precedence.pth",
            "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; enabled = \
          os.environ.get(var, 'local') == 'local'; enabled and \
          __import__('_distutils_hack').add_shim(); \n",
        ),
        ("_virtualenv.pth", "import _virtualenv"),
        (
            "__editable__.app-1.0.pth",
            "import __editable___app_1_0_finder; \
          __editable___app_1_0_finder.install()\n",
        ),
    ];
    // Each renamed into place, then loaded.
    let mut args: Vec<String> = Vec::new();
    for (name, text) in hooks {
        let staged = path_str(write_file(site.join(format!("{name}.tmp")), text));
        let hook = path_str(site.join(name));
        args.extend([
            "rename".to_owned(),
            staged,
            hook.clone(),
            "read".to_owned(),
            hook,
        ]);
    }
    let flat: Vec<&str> = args.iter().map(String::as_str).collect();
    run_benign(
        &agent,
        unprofiled(&flat),
        &["interpreter-startup-hook", "interpreter-startup-hook.code"],
    );
}

// ---------------------------------------------------------------------------------------------
// persistence.*

/// Writes `home_files` in a fake home and attempts writes on `system` paths (which fail); expects
/// a `rule` alert for each.
#[track_caller]
fn persistence_positive(agent: &Agent, rule: &str, home_files: &[&str], system: &[String]) {
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let mut actions = Vec::new();
    let mut written = Vec::new();
    for rel in home_files {
        let path = path_str(home.join(rel));
        if let Some(parent) = Path::new(&path).parent() {
            fs::create_dir_all(parent).expect("creating the fake home's directories");
        }
        actions.extend(["write".to_owned(), path.clone()]);
        written.push(path);
    }
    for path in system {
        actions.extend(["try-write".to_owned(), path.clone()]);
    }
    let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
    let (child, _) = run(agent, &mut unprofiled(&actions));
    let pid = child.pid();
    for path in &written {
        expect_alert(
            agent,
            rule,
            None,
            json!({"kind": "open", "pid": pid, "path": path, "access": "write", "result": 0}),
        );
    }
    for path in system {
        let alert = expect_alert(
            agent,
            rule,
            None,
            json!({"kind": "open", "pid": pid, "path": path, "access": "write", "created": false}),
        );
        assert!(
            alert["event"]["result"].as_i64().is_some_and(|r| r < 0),
            "the attempt on {path} should have failed: {alert}"
        );
    }
}

/// In a fake home, reads `existing` (a path and its contents) and writes `written`, then expects
/// no `rule` alert.
#[track_caller]
fn read_and_write_in_home_benign(
    agent: &Agent,
    rule: &str,
    (existing, contents): (&str, &str),
    written: &str,
) {
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let read = path_str(home.write(existing, contents));
    let written = path_str(home.join(written));
    run_benign(
        agent,
        unprofiled(&["read", &read, "write", &written]),
        &[rule],
    );
}

#[test]
fn persistence_systemd_alerts_for_user_and_system_units() {
    let Some(agent) = agent() else { return };
    persistence_positive(
        &agent,
        "persistence.systemd",
        &[
            ".config/systemd/user/monitor-test.service",
            ".config/systemd/user/monitor-test.timer",
        ],
        &[absent("/etc/systemd/system", "unit.service")],
    );
}

#[test]
fn persistence_systemd_ignores_reading_units_and_other_config() {
    let Some(agent) = agent() else { return };
    read_and_write_in_home_benign(
        &agent,
        "persistence.systemd",
        (".config/systemd/user/app.service", "[Service]\n"),
        ".config/systemd-notes.txt",
    );
}

#[test]
fn persistence_cron_alerts_for_cron_tables() {
    let Some(agent) = agent() else { return };
    persistence_positive(
        &agent,
        "persistence.cron",
        &[],
        &[
            absent("/etc/cron.d", "job"),
            absent("/var/spool/cron/crontabs", "root"),
        ],
    );
}

#[test]
fn persistence_cron_ignores_reading_cron_tables() {
    let Some(agent) = agent() else { return };
    let job = absent("/etc/cron.d", "job");
    run_benign(
        &agent,
        unprofiled(&["try-read", &job, "try-read", "/etc/crontab"]),
        &["persistence.cron"],
    );
}

#[test]
fn persistence_shell_rc_alerts_for_shell_startup_files() {
    let Some(agent) = agent() else { return };
    persistence_positive(
        &agent,
        "persistence.shell-rc",
        &[".bashrc", ".profile", ".zshrc"],
        &[absent("/etc/profile.d", "env.sh")],
    );
}

#[test]
fn persistence_shell_rc_ignores_reading_rc_files_and_backups() {
    let Some(agent) = agent() else { return };
    read_and_write_in_home_benign(
        &agent,
        "persistence.shell-rc",
        (".bashrc", "alias ll='ls -l'\n"),
        ".bashrc.monitor-test-backup",
    );
}

#[test]
fn persistence_ld_preload_alerts_for_a_write_attempt() {
    let Some(agent) = agent() else { return };
    if Path::new("/etc/ld.so.preload").exists() {
        skip_or_fail(
            "/etc/ld.so.preload exists on this machine: the test only attempts writes that fail",
        );
        return;
    }
    persistence_positive(
        &agent,
        "persistence.ld-preload",
        &[],
        &["/etc/ld.so.preload".to_owned()],
    );
}

#[test]
fn persistence_ld_preload_ignores_the_loader_reading_it() {
    let Some(agent) = agent() else { return };
    // Every dynamically linked exec makes the loader look for it; so does a plain read.
    let truth = canonical("/bin/true");
    run_benign(
        &agent,
        unprofiled(&["try-read", "/etc/ld.so.preload", "spawn", &truth]),
        &["persistence.ld-preload"],
    );
}

#[test]
fn persistence_ssh_authorized_keys_alerts_for_a_key_added() {
    let Some(agent) = agent() else { return };
    persistence_positive(
        &agent,
        "persistence.ssh-authorized-keys",
        &[".ssh/authorized_keys"],
        &[],
    );
}

#[test]
fn persistence_ssh_authorized_keys_ignores_reading_it_and_known_hosts_writes() {
    let Some(agent) = agent() else { return };
    read_and_write_in_home_benign(
        &agent,
        "persistence.ssh-authorized-keys",
        (".ssh/authorized_keys", "ssh-ed25519 AAAA test\n"),
        ".ssh/known_hosts",
    );
}

#[test]
fn persistence_init_scripts_alerts_for_init_scripts_and_autostart() {
    let Some(agent) = agent() else { return };
    persistence_positive(
        &agent,
        "persistence.init-scripts",
        &[".config/autostart/monitor-test.desktop"],
        &[absent("/etc/init.d", "service")],
    );
}

#[test]
fn persistence_init_scripts_ignores_reading_init_scripts() {
    let Some(agent) = agent() else { return };
    let script = absent("/etc/init.d", "service");
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let desktop = path_str(home.write(".config/autostart/app.desktop", "[Desktop Entry]\n"));
    run_benign(
        &agent,
        unprofiled(&["try-read", &script, "read", &desktop]),
        &["persistence.init-scripts"],
    );
}

// ---------------------------------------------------------------------------------------------
// write-then-exec, fileless-exec

/// Copies `sys.argv[1]` to `sys.argv[2]`, makes it executable and executes it in place (as a
/// binary, or with this interpreter when it ends in `.py`).
const DROP_AND_EXEC: &str = "
import os, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src, 'rb') as f:
    data = f.read()
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
os.write(fd, data)
os.close(fd)
os.chmod(dst, 0o755)
if dst.endswith('.py'):
    os.execv(sys.executable, [sys.executable, dst])
os.execv(dst, [dst])
";

#[test]
fn write_then_exec_alerts_for_a_dropped_binary_and_script_in_tmp() {
    let Some(agent) = agent() else { return };
    let dir = DirGuard::new_in(Path::new("/tmp"), "drop").expect("creating a directory in /tmp");
    let payload = path_str(dir.join("payload"));
    let (binary, _) = run(
        &agent,
        python(DROP_AND_EXEC)
            .arg(canonical("/bin/true"))
            .arg(&payload),
    );
    // A host process outside every profile: the host-wide drop-location rule.
    expect_alert(
        &agent,
        "write-then-exec.tmp",
        None,
        json!({"kind": "exec", "pid": binary.pid(), "filename": payload}),
    );

    let source = path_str(write_file(dir.join("source.py"), "pass\n"));
    let script = path_str(dir.join("payload.py"));
    // Under a profile: the drift rule (the profile's marker rides as an extra argument).
    let marker = &agent.fixture().marker;
    let (interpreted, _) = run(
        &agent,
        python(DROP_AND_EXEC).arg(&source).arg(&script).arg(marker),
    );
    let alert = expect_alert(
        &agent,
        "write-then-exec",
        Some(PROFILE),
        json!({"kind": "exec", "pid": interpreted.pid()}),
    );
    assert!(
        alert["event"]["argv"]
            .as_array()
            .is_some_and(|argv| argv.iter().any(|a| a == script.as_str())),
        "the exec should run {script}: {alert}"
    );
}

#[test]
fn write_then_exec_alerts_when_one_shell_fetches_marks_and_runs_a_file() {
    let Some(agent) = agent() else { return };
    let dir = DirGuard::new_in(Path::new("/tmp"), "shell").expect("creating a directory in /tmp");
    let payload = path_str(dir.join("x"));
    // `cp` stands in for `curl -o`: the writer, the chmod and the runner are children of one
    // shell (or the shell runs the last command itself: then the runner is the writer's parent).
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("cp /bin/true \"$1\" && chmod +x \"$1\" && \"$1\"")
        .arg("sh")
        .arg(&payload);
    let (shell, _) = run(&agent, &mut cmd);
    let alert = expect_alert(
        &agent,
        "write-then-exec.tmp",
        None,
        json!({"kind": "exec", "filename": payload}),
    );
    assert!(in_tree(&alert, shell.pid()), "{alert}");
}

#[test]
fn write_then_exec_ignores_a_file_written_and_run_by_unrelated_host_processes() {
    let Some(agent) = agent() else { return };
    let dir = DirGuard::new_in(Path::new("/tmp"), "apart").expect("creating a directory in /tmp");
    let payload = path_str(dir.join("x"));
    let staged = path_str(dir.join("staged"));
    fs::copy("/bin/true", &staged).expect("copying /bin/true");
    // One host process puts the file in place and exits...
    run(
        &agent,
        &mut unprofiled(&["rename", &staged, &payload, "chmod", &payload]),
    );
    // ...and another, whose runner has a different parent, runs it (`; cat` keeps the shell
    // from exec'ing the file itself).
    let sentinel = Sentinel::new();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("\"$1\"; cat \"$2\" > /dev/null")
        .arg("sh")
        .arg(&payload)
        .arg(&sentinel.path);
    let (runner, _) = run(&agent, &mut cmd);
    expect_none(
        &agent,
        runner.pid(),
        &sentinel,
        &["write-then-exec", "write-then-exec.tmp"],
    );
}

#[test]
fn write_then_exec_ignores_files_outside_scratch_and_home_directories() {
    let Some(agent) = agent() else { return };
    let dir = match DirGuard::new_in(Path::new("/run"), "drop") {
        Ok(dir) => dir,
        Err(e) => {
            skip_or_fail(&format!("cannot create a directory under /run: {e}"));
            return;
        }
    };
    let payload = path_str(dir.join("payload"));
    let staged = path_str(write_file(dir.join("staged"), ""));
    fs::copy("/bin/true", &staged).expect("copying /bin/true");
    // The child writes the file (rename into place) and runs it.
    let spawn = payload.clone();
    let mut cmd = unprofiled(&[
        "rename", &staged, &payload, "chmod", &payload, "spawn", &spawn,
    ]);
    let sentinel = Sentinel::new();
    cmd.env("MONITOR_TEST_SENTINEL", &sentinel.path);
    let (child, _) = run(&agent, &mut cmd);
    expect_none(
        &agent,
        child.pid(),
        &sentinel,
        &["write-then-exec", "write-then-exec.tmp"],
    );
}

const MEMFD_EXEC: &str = "
import os, sys
fd = os.memfd_create('monitor-test', 0)
with open(sys.argv[1], 'rb') as f:
    os.write(fd, f.read())
os.execv('/proc/self/fd/%d' % fd, ['monitor-test-memfd'])
";

#[test]
fn fileless_exec_alerts_for_a_memfd_exec() {
    let Some(agent) = agent() else { return };
    let (child, _) = run(&agent, python(MEMFD_EXEC).arg(canonical("/bin/true")));
    let alert = expect_alert(
        &agent,
        "fileless-exec",
        None,
        json!({"kind": "exec", "pid": child.pid(), "argv": ["monitor-test-memfd"]}),
    );
    assert!(
        alert["event"]["exe"]
            .as_str()
            .is_some_and(|exe| exe.contains("memfd:monitor-test")),
        "the exe should be the memfd: {alert}"
    );
}

#[test]
fn fileless_exec_ignores_an_exec_from_disk_after_memfd_create() {
    let Some(agent) = agent() else { return };
    let truth = canonical("/bin/true");
    let mut cmd = python(
        "import os, subprocess, sys\n\
         os.memfd_create('monitor-test-unused', 0)\n\
         subprocess.run([sys.argv[1]], check=True)\n\
         os.close(os.open(os.environ['MONITOR_TEST_SENTINEL'], os.O_RDONLY))\n",
    );
    cmd.arg(&truth);
    run_benign(&agent, cmd, &["fileless-exec"]);
}

// ---------------------------------------------------------------------------------------------
// proc-access

/// A process to look at: sleeps until killed (on drop).
fn target(agent: &Agent) -> Proc {
    agent.spawn(&mut python("import time\ntime.sleep(120)"))
}

#[test]
fn proc_access_alerts_for_another_process_environ_mem_and_maps() {
    let Some(agent) = agent() else { return };
    let other = target(&agent);
    let paths: Vec<String> = ["environ", "maps", "mem"]
        .iter()
        .map(|entry| format!("/proc/{}/{entry}", other.pid()))
        .collect();
    let actions: Vec<&str> = paths
        .iter()
        .flat_map(|p| ["try-read", p.as_str()])
        .collect();
    let (child, _) = run(&agent, &mut unprofiled(&actions));
    for path in &paths {
        expect_alert(
            &agent,
            "proc-access",
            None,
            json!({"kind": "open", "pid": child.pid(), "path": path, "access": "read"}),
        );
    }
}

#[test]
fn proc_access_ignores_own_entries_and_other_processes_status() {
    let Some(agent) = agent() else { return };
    let other = target(&agent);
    let status = format!("/proc/{}/status", other.pid());
    let cmdline = format!("/proc/{}/cmdline", other.pid());
    let own = "import os\nos.close(os.open('/proc/%d/environ' % os.getpid(), os.O_RDONLY))\n";
    let script = format!("{own}{ACTIONS}");
    let mut cmd = python(&script);
    // procps `ps` reads every process's environ: excepted.
    let ps = format!("/usr/bin/ps -p {}", other.pid());
    if Path::new("/usr/bin/ps").exists() {
        cmd.args(["spawn", &ps]);
    }
    cmd.args([
        "read",
        "/proc/self/environ",
        "read",
        "/proc/thread-self/maps",
        "read",
        &status,
        "read",
        &cmdline,
    ]);
    run_benign(&agent, cmd, &["proc-access"]);
}

// ---------------------------------------------------------------------------------------------
// cloud-metadata (inside a test-owned network namespace: nothing leaves the host)

/// For each `tcp|udp,HOST,PORT` argument, a TCP connect attempt or a UDP datagram; then the
/// sentinel when MONITOR_TEST_SENTINEL is set.
const NET: &str = "
import os, socket, sys
for spec in sys.argv[1:]:
    proto, host, port = spec.split(',')
    fam = socket.AF_INET6 if ':' in host else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM
    s = socket.socket(fam, kind)
    s.settimeout(2)
    try:
        if proto == 'tcp':
            s.connect((host, int(port)))
        else:
            s.sendto(b'monitor-test', (host, int(port)))
    except OSError:
        pass
    s.close()
sentinel = os.environ.get('MONITOR_TEST_SENTINEL')
if sentinel:
    os.close(os.open(sentinel, os.O_RDONLY))
";

const METADATA_ADDRS: &[&str] = &[
    "169.254.169.254/32",
    "169.254.170.2/32",
    "169.254.169.253/32",
    "fd00:ec2::254/128",
];

#[test]
fn cloud_metadata_alerts_for_connects_and_sends_to_metadata_endpoints() {
    let Some(agent) = agent() else { return };
    let Some(ns) = NetNs::with_addresses(METADATA_ADDRS) else {
        return;
    };
    let mut cmd = python(NET);
    cmd.args([
        "tcp,169.254.169.254,80",
        "udp,169.254.169.254,8053",
        "tcp,169.254.170.2,80",
        "tcp,fd00:ec2::254,80",
    ]);
    let (child, _) = run(&agent, ns.enter(&mut cmd));
    let pid = child.pid();
    for (kind, protocol, addr, port) in [
        ("connect", "tcp", "169.254.169.254", 80),
        ("send", "udp", "169.254.169.254", 8053),
        ("connect", "tcp", "169.254.170.2", 80),
        ("connect", "tcp", "fd00:ec2::254", 80),
    ] {
        expect_alert(
            &agent,
            "cloud-metadata",
            None,
            json!({"kind": kind, "pid": pid, "protocol": protocol, "remote_addr": addr,
                   "remote_port": port}),
        );
    }
}

#[test]
fn cloud_metadata_ignores_loopback_and_the_link_local_resolver() {
    let Some(agent) = agent() else { return };
    let Some(ns) = NetNs::with_addresses(METADATA_ADDRS) else {
        return;
    };
    let mut cmd = python(NET);
    cmd.args([
        "tcp,127.0.0.1,80",
        "udp,127.0.0.1,8053",
        "udp,169.254.169.253,53",
        "tcp,169.254.169.253,80",
    ]);
    ns.enter(&mut cmd);
    run_benign(&agent, cmd, &["cloud-metadata"]);
}

// ---------------------------------------------------------------------------------------------
// tool-spawn.* (profiled servers only)

/// Runs each available tool from a profiled child; expects a `rule` alert for each exec.
/// `required` tools must exist (else the test says loudly that it could not run).
#[track_caller]
fn tools_positive(agent: &Agent, rule: &str, tools: &[(&[&str], &str)], required: &[&str]) {
    let mut actions: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for (candidates, args) in tools {
        match find_tool(candidates) {
            Some(path) => {
                actions.extend([
                    "spawn".to_owned(),
                    format!("{path} {args}").trim().to_owned(),
                ]);
            }
            None => missing.push(candidates[0]),
        }
    }
    if let Some(req) = required.iter().find(|r| missing.contains(r)) {
        skip_or_fail(&format!(
            "{req} is not installed: {rule} is not tested with it (missing: {missing:?})"
        ));
        return;
    }
    if !missing.is_empty() {
        note(&format!("{rule}: not installed, not tested: {missing:?}"));
    }
    let gnupg = TempDir::new("gnupg");
    let actions: Vec<&str> = actions.iter().map(String::as_str).collect();
    let mut cmd = profiled(agent, &actions);
    cmd.env("GNUPGHOME", gnupg.path());
    let (child, out) = run(agent, &mut cmd);
    let runs = spawned(&out);
    assert_eq!(runs.len(), actions.len() / 2, "spawned lines: {out}");
    for (pid, path) in runs {
        let alert = expect_alert(
            agent,
            rule,
            Some(PROFILE),
            json!({"kind": "exec", "pid": pid, "exe": path}),
        );
        assert!(
            in_tree(&alert, child.pid()),
            "the alert's ancestors should include the profiled parent {}: {alert}",
            child.pid()
        );
    }
}

#[test]
fn tool_spawn_recon_alerts_for_discovery_commands_of_a_profiled_server() {
    let Some(agent) = agent() else { return };
    tools_positive(
        &agent,
        "tool-spawn.recon",
        &[
            (&["/usr/bin/whoami"], ""),
            (&["/usr/bin/id"], ""),
            (&["/usr/bin/uname"], "-a"),
            (&["/usr/bin/hostname"], ""),
            (&["/usr/bin/ip", "/usr/sbin/ip"], "-V"),
            (&["/usr/bin/ps"], "-p 1"),
            (&["/usr/bin/ss"], "-V"),
            (&["/usr/bin/netstat"], "--version"),
            (&["/usr/sbin/ifconfig", "/sbin/ifconfig"], "lo"),
            (&["/usr/bin/env"], ""),
            (&["/usr/bin/printenv"], "HOME"),
        ],
        &[
            "/usr/bin/whoami",
            "/usr/bin/id",
            "/usr/bin/uname",
            "/usr/bin/env",
        ],
    );
}

#[test]
fn tool_spawn_archive_alerts_for_archivers_of_a_profiled_server() {
    let Some(agent) = agent() else { return };
    tools_positive(
        &agent,
        "tool-spawn.archive",
        &[
            (&["/usr/bin/tar"], "--version"),
            (&["/usr/bin/gzip"], "--version"),
            (&["/usr/bin/xz"], "--version"),
            (&["/usr/bin/zip"], "-v"),
            (&["/usr/bin/7z"], "i"),
            (&["/usr/bin/bzip2"], "--help"),
            (&["/usr/bin/zstd"], "--version"),
        ],
        &["/usr/bin/tar"],
    );
}

#[test]
fn tool_spawn_encryption_alerts_for_openssl_and_gpg_of_a_profiled_server() {
    let Some(agent) = agent() else { return };
    tools_positive(
        &agent,
        "tool-spawn.encryption",
        &[
            (&["/usr/bin/openssl"], "version"),
            (&["/usr/bin/gpg"], "--version"),
        ],
        &["/usr/bin/openssl"],
    );
}

#[test]
fn tool_spawn_transfer_alerts_for_download_tools_of_a_profiled_server() {
    let Some(agent) = agent() else { return };
    tools_positive(
        &agent,
        "tool-spawn.transfer",
        &[
            (&["/usr/bin/curl"], "--version"),
            (&["/usr/bin/wget"], "--version"),
            (&["/usr/bin/nc", "/bin/nc"], "-h"),
            (&["/usr/bin/ncat"], "--version"),
            (&["/usr/bin/socat"], "-V"),
            (&["/usr/bin/scp"], ""),
            (&["/usr/bin/rsync"], "--version"),
        ],
        &["/usr/bin/curl"],
    );
}

const TOOL_RULES: &[&str] = &[
    "tool-spawn.recon",
    "tool-spawn.archive",
    "tool-spawn.encryption",
    "tool-spawn.transfer",
];

/// The tools every tool-spawn negative runs outside a profile.
fn common_tools() -> Vec<String> {
    [
        "/usr/bin/whoami",
        "/usr/bin/tar --version",
        "/usr/bin/openssl version",
        "/usr/bin/curl --version",
    ]
    .iter()
    .filter(|t| t.split(' ').next().is_some_and(|p| Path::new(p).exists()))
    .map(|t| (*t).to_owned())
    .collect()
}

#[test]
fn tool_spawn_ignores_the_same_tools_outside_a_profile() {
    let Some(agent) = agent() else { return };
    let tools = common_tools();
    let actions: Vec<&str> = tools.iter().flat_map(|t| ["spawn", t.as_str()]).collect();
    run_benign(&agent, unprofiled(&actions), TOOL_RULES);
}

#[test]
fn tool_spawn_ignores_other_programs_and_the_excepted_uses_of_a_profiled_server() {
    let Some(agent) = agent() else { return };
    let py = PythonInfo::get();
    let truth = canonical("/bin/true");
    let uname_p = "/usr/bin/uname -p".to_owned();
    // `env` as a launcher of an interpreter, as in a `#!/usr/bin/env python3` line.
    let env_launch = format!("/usr/bin/env {} -I -S -c pass", py.executable);
    let actions = [
        "spawn",
        truth.as_str(),
        "spawn",
        &uname_p,
        "spawn",
        &env_launch,
    ];
    run_benign(&agent, profiled(&agent, &actions), TOOL_RULES);
}

// ---------------------------------------------------------------------------------------------
// process-burst (profiled workloads only)

#[test]
fn process_burst_alerts_when_a_profiled_workload_forks_200_processes() {
    let Some(agent) = agent() else { return };
    let (child, _) = run(&agent, &mut profiled(&agent, &["forks", "200"]));
    expect_alert(
        &agent,
        "process-burst",
        Some(PROFILE),
        json!({"kind": "fork", "pid": child.pid()}),
    );
}

#[test]
fn process_burst_ignores_a_few_forks_and_unprofiled_bursts() {
    let Some(agent) = agent() else { return };
    run_benign(
        &agent,
        profiled(&agent, &["forks", "20"]),
        &["process-burst"],
    );
    run_benign(&agent, unprofiled(&["forks", "200"]), &["process-burst"]);
}
