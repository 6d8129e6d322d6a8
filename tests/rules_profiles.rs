//! Workload profiles end to end, with a stand-in inference server: a small Python HTTP service
//! (`http.server`) written by the test, listening on a free loopback port, under a profile the
//! test writes (its interpreter, an argv marker, its code directory, its port). Served normally
//! it raises no alert at all; made to replay what the malicious litellm release did (from inside
//! its own process tree, through a `/run` endpoint that starts a child to do it), it raises the
//! profile violations and the shipped detections, with the server among the alert's ancestors.
//!
//! One agent serves the binary, with the shipped rules and one test profile per test (each its
//! own marker and port), so the tests run in parallel and each one's alerts are told apart by
//! their `profile`. No raw events: the agent records only profiled processes, as in production.
//!
//! Every behaviour ends with a sentinel, a read of a file the profile does not allow by the same
//! child, last: once its alert is out, every alert of what came before is out too, and the test
//! can check that nothing else was raised.

use std::{
    fs,
    net::{Ipv4Addr, TcpListener},
    path::Path,
    process::Command,
    time::Duration,
};

use monitor_tests::{
    Proc, TIMEOUT, TempDir, path_str, random_hex,
    rules::{
        AgentSetup, DirGuard, PythonInfo, RulesAgent, SharedAgent, ancestor_pids, expected_meta,
        find_tool, free_port, http_get, in_tree, one_per_line, shipped_rules, url_encode,
        wait_listening, write_file,
    },
    skip_or_fail,
};
use serde_json::{Value, json};

/// The stand-in server: a few OpenAI-like endpoints and `/run?arg=CASE&arg=SENTINEL&arg=...`,
/// which runs `cases.py` with those arguments as a child and answers with its pid and output.
/// It exits when the test binary that started it goes away.
const SERVER: &str = r#"
import http.server, json, os, subprocess, sys, threading, time, urllib.parse

MARKER, PORT = sys.argv[1], int(sys.argv[2])
HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, 'cases.py')
PARENT = os.getppid()


def exit_with_parent():
    while os.getppid() == PARENT:
        time.sleep(0.5)
    os._exit(0)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == '/health':
            self.reply(200, {'status': 'ok'})
        elif url.path == '/v1/models':
            self.reply(200, {'object': 'list', 'data': [{'id': 'stand-in', 'object': 'model'}]})
        elif url.path == '/v1/completions':
            with open(os.path.join(HERE, 'model.txt')) as f:
                weights = f.read().split()
            prompt = query.get('prompt', [''])[0]
            text = ' '.join(weights[len(prompt) % len(weights):])
            self.reply(200, {'object': 'text_completion', 'choices': [{'text': text}]})
        elif url.path == '/run':
            args = [sys.executable, '-E', '-s', CASES] + query.get('arg', [])
            child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
            out, err = child.communicate(timeout=60)
            self.reply(200, {'pid': child.pid, 'rc': child.returncode,
                             'out': out.decode(errors='replace'),
                             'err': err.decode(errors='replace')})
        else:
            self.reply(404, {'error': 'not found'})

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


threading.Thread(target=exit_with_parent, daemon=True).start()
http.server.ThreadingHTTPServer(('127.0.0.1', PORT), Handler).serve_forever()
"#;

/// What the server's `/run` children do: `cases.py CASE SENTINEL ARGS...`, then read SENTINEL.
/// Programs they start are reported as `spawned PID` lines.
const CASES: &str = r#"
import os, socket, subprocess, sys

case, sentinel, args = sys.argv[1], sys.argv[2], sys.argv[3:]


def spawn(argv, **kw):
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, **kw)
    child.wait()
    print('spawned', child.pid, flush=True)


def write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.close(fd)


if case == 'read':
    for path in args:
        with open(path, 'rb') as f:
            f.read()
elif case == 'write':
    for path in args:
        write(path, b'# monitor-test\n')
elif case == 'exec':
    spawn(args)
elif case == 'drop-exec':
    src, dst = args
    with open(src, 'rb') as f:
        write(dst, f.read())
    os.chmod(dst, 0o755)
    spawn([dst])
elif case == 'memfd-exec':
    fd = os.memfd_create('monitor-test', 0)
    with open(args[0], 'rb') as f:
        os.write(fd, f.read())
    spawn(['monitor-test-memfd'], executable='/proc/self/fd/%d' % fd, pass_fds=[fd])
elif case == 'environ':
    with open('/proc/%d/environ' % os.getppid(), 'rb') as f:
        f.read()
elif case == 'connect':
    s = socket.socket()
    s.connect(('127.0.0.1', int(args[0])))
    s.close()
elif case == 'listen':
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(1)
    print('port', s.getsockname()[1], flush=True)
    s.close()
elif case == 'burst':
    for _ in range(int(args[0])):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
else:
    sys.exit('unknown case ' + case)

with open(sentinel, 'rb') as f:
    f.read()
"#;

/// A separate process of the quiet profile that reads a file its profile does not allow, over
/// and over (bounded), until the test has seen the alert and kills it.
const SENTINEL_LOOP: &str = "
import sys, time
for _ in range(600):
    with open(sys.argv[1], 'rb') as f:
        f.read()
    time.sleep(0.05)
";

/// Every test's case: a profile of its own (`rules-test-<name>`), marker and port.
const CASE_NAMES: &[&str] = &[
    "quiet",
    "credential",
    "startup-hook",
    "systemd-unit",
    "drop-exec",
    "memfd-exec",
    "environ",
    "connect",
    "listen",
    "tar",
    "openssl",
    "curl",
    "burst",
];

struct Case {
    name: &'static str,
    profile: String,
    marker: String,
    port: u16,
}

struct Fixture {
    python: PythonInfo,
    server: String,
    cases: Vec<Case>,
}

impl Fixture {
    #[track_caller]
    fn case(&self, name: &str) -> &Case {
        match self.cases.iter().find(|c| c.name == name) {
            Some(case) => case,
            None => panic!("no case {name} in CASE_NAMES"),
        }
    }
}

type Agent = RulesAgent<Fixture>;

static AGENT: SharedAgent<Fixture> = SharedAgent::new();

/// The profile a user would write for the stand-in after watching it with `--events`: its
/// interpreter and standard library, its code, CA certificates, and its port.
fn profile_yaml(case: &Case, py: &PythonInfo, app: &str) -> String {
    format!(
        "# The stand-in inference server of tests/rules_profiles.rs, case `{name}`.\n\
         profile: {profile}\n\
         description: stand-in inference server ({name})\n\
         match:\n  exe: [\"{exe}\", \"{resolved}\"]\n  argv_contains: [\"{marker}\"]\n\
         mode: alert\n\
         severity: high\n\
         allow:\n\
         \x20 exec: [\"{exe}\", \"{resolved}\"]\n\
         \x20 read: [\"{prefix}/**\", \"{app}\", \"{app}/**\", \"/etc/ssl/**\",\n\
         \x20        # glibc's setlocale reads it whenever a locale is set (not in the baseline)\n\
         \x20        \"/etc/locale.alias\"]\n\
         \x20 listen:\n    - {{ port: {port} }}\n",
        name = case.name,
        profile = case.profile,
        exe = py.executable,
        resolved = py.resolved,
        marker = case.marker,
        prefix = py.prefix,
        port = case.port,
    )
}

fn agent() -> Option<Agent> {
    AGENT.join(|dir| {
        let python = PythonInfo::get();
        let app = dir.join("app");
        let profiles = dir.join("profiles");
        for d in [&app, &profiles] {
            fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let write = |path: &Path, text: &str| {
            fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(&app.join("server.py"), SERVER)?;
        write(&app.join("cases.py"), CASES)?;
        write(
            &app.join("model.txt"),
            "the quick brown fox jumps over the lazy dog\n",
        )?;
        let tag = random_hex(4);
        let cases: Vec<Case> = CASE_NAMES
            .iter()
            .map(|&name| Case {
                name,
                profile: format!("rules-test-{name}"),
                marker: format!("monitor-test-server:{name}@{tag}"),
                port: free_port(),
            })
            .collect();
        let app_str = path_str(&app);
        for case in &cases {
            write(
                &profiles.join(format!("{}.yaml", case.name)),
                &profile_yaml(case, &python, &app_str),
            )?;
        }
        Ok(AgentSetup {
            rules: vec![shipped_rules(), dir.to_path_buf()],
            args: Vec::new(),
            fixture: Fixture {
                server: path_str(app.join("server.py")),
                python,
                cases,
            },
        })
    })
}

/// The stand-in server of `case`, started and listening.
#[track_caller]
fn start_server(agent: &Agent, case: &Case) -> Proc {
    let fx = agent.fixture();
    let mut server = agent.spawn(
        Command::new(&fx.python.executable)
            .args(["-E", "-s", &fx.server, &case.marker])
            .arg(case.port.to_string()),
    );
    if let Err(e) = wait_listening(case.port, TIMEOUT) {
        let done = server.finish(Duration::from_millis(1));
        panic!(
            "the stand-in server did not start: {e}\nstatus: {:?}\nstderr:\n{}",
            done.status, done.stderr
        );
    }
    server
}

/// `GET target` on the server; panics unless it answers `status` with JSON.
#[track_caller]
fn get(case: &Case, target: &str, status: u16) -> Value {
    let (code, body) = match http_get(case.port, target, TIMEOUT) {
        Ok(answer) => answer,
        Err(e) => panic!("GET {target} on port {}: {e}", case.port),
    };
    assert_eq!(code, status, "GET {target}: {body}");
    match serde_json::from_str(&body) {
        Ok(value) => value,
        Err(e) => panic!("GET {target} answered {body:?}, not JSON: {e}"),
    }
}

/// One behaviour replayed inside the server's process tree.
struct Replay {
    server: Proc,
    /// The `/run` child that did it.
    runner: u32,
    /// Pids of programs the runner started.
    spawned: Vec<u32>,
    stdout: String,
    /// Every alert of the case's profile, up to and including the sentinel's.
    alerts: Vec<Value>,
    _scratch: TempDir,
}

/// Starts the server of `case`, has it run `cases.py <behaviour> SENTINEL args...`, waits for the
/// sentinel's alert and collects the profile's alerts.
#[track_caller]
fn replay(agent: &Agent, case: &Case, behaviour: &str, args: &[&str]) -> Replay {
    let scratch = TempDir::new(&format!("replay-{}", case.name));
    let sentinel = path_str(write_file(scratch.join("sentinel.txt"), "sentinel\n"));
    let server = start_server(agent, case);
    let query: String = [behaviour, sentinel.as_str()]
        .iter()
        .chain(args)
        .map(|a| format!("arg={}", url_encode(a)))
        .collect::<Vec<_>>()
        .join("&");
    let answer = get(case, &format!("/run?{query}"), 200);
    assert_eq!(
        answer["rc"], 0,
        "the server's child failed to {behaviour}: {}",
        answer["err"]
    );
    let Some(runner) = answer["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
        panic!("no pid in {answer}");
    };
    let stdout = answer["out"].as_str().unwrap_or_default().to_owned();
    let spawned = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("spawned ")?.trim().parse().ok())
        .collect();
    agent.wait_alert(
        TIMEOUT,
        &format!("the sentinel (profile.read of {sentinel} by pid {runner})"),
        |a| {
            a["rule"] == "profile.read"
                && a["event"]["pid"] == runner
                && a["event"]["path"] == sentinel.as_str()
        },
    );
    let alerts = agent.alerts(|a| a["profile"] == case.profile.as_str());
    for alert in &alerts {
        assert!(
            ancestor_pids(alert).contains(&u64::from(server.pid())),
            "the server (pid {}) should be among the alert's ancestors: {alert}",
            server.pid()
        );
    }
    Replay {
        server,
        runner,
        spawned,
        stdout,
        alerts,
        _scratch: scratch,
    }
}

impl Replay {
    /// Finds the `rule` alert whose event has the fields of `event` and asserts its severity,
    /// MITRE ids, profile and event fields.
    #[track_caller]
    fn expect(&self, agent: &Agent, case: &Case, rule: &str, event: Value) -> Value {
        let found = self
            .alerts
            .iter()
            .find(|a| a["rule"] == rule && monitor_tests::matches(&a["event"], &event));
        let Some(alert) = found else {
            panic!(
                "no {rule} alert for {event} among the {} alerts of profile {}:\n{}",
                self.alerts.len(),
                case.profile,
                self.listing()
            );
        };
        let mut expected = expected_meta(rule);
        expected["profile"] = json!(case.profile);
        expected["event"] = event;
        agent.assert_alert(alert, &expected);
        alert.clone()
    }

    /// Asserts that the profile raised nothing but `expected` (rule, pid) pairs and the sentinel.
    #[track_caller]
    fn expect_only(&self, expected: &[(&str, u32)]) {
        let unexpected: Vec<&Value> = self
            .alerts
            .iter()
            .filter(|a| {
                let pid = a["event"]["pid"].as_u64();
                let sentinel = a["rule"] == "profile.read"
                    && pid == Some(u64::from(self.runner))
                    && a["event"]["path"]
                        .as_str()
                        .is_some_and(|p| p.ends_with("/sentinel.txt"));
                !sentinel
                    && !expected
                        .iter()
                        .any(|(rule, p)| a["rule"] == *rule && pid == Some(u64::from(*p)))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "unexpected alerts (the server's footprint should be allowed):\n{}\nall alerts:\n{}",
            one_per_line(&unexpected),
            self.listing()
        );
    }

    fn listing(&self) -> String {
        self.alerts
            .iter()
            .map(|a| {
                format!(
                    "  {} pid={} {} {}\n",
                    a["rule"], a["event"]["pid"], a["event"]["kind"], a["message"]
                )
            })
            .collect()
    }

    /// The one program the runner started.
    #[track_caller]
    fn child(&self) -> u32 {
        match self.spawned.as_slice() {
            [pid] => *pid,
            other => panic!(
                "expected one spawned program, got {other:?}: {}",
                self.stdout
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn serving_requests_raises_no_alert() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("quiet");
    let server = start_server(&agent, case);
    assert_eq!(get(case, "/health", 200)["status"], "ok");
    assert_eq!(get(case, "/v1/models", 200)["data"][0]["id"], "stand-in");
    for prompt in ["hello", "a%20longer%20prompt", "x"] {
        let answer = get(case, &format!("/v1/completions?prompt={prompt}"), 200);
        assert!(answer["choices"][0]["text"].is_string(), "{answer}");
    }
    get(case, "/nowhere", 404);

    // The sentinel: a separate process of the same profile reads a file it does not allow. It
    // starts after every request was answered, so its alert comes after anything the server did.
    let scratch = TempDir::new("quiet-sentinel");
    let sentinel = path_str(write_file(scratch.join("sentinel.txt"), "sentinel\n"));
    let fx = agent.fixture();
    let marker_process = agent.spawn(Command::new(&fx.python.executable).args([
        "-E",
        "-s",
        "-c",
        SENTINEL_LOOP,
        &sentinel,
        &case.marker,
    ]));
    let alert = agent.wait_alert(TIMEOUT, "the sentinel's profile.read", |a| {
        a["rule"] == "profile.read"
            && a["event"]["pid"] == marker_process.pid()
            && a["event"]["path"] == sentinel.as_str()
    });
    let mut expected = expected_meta("profile.read");
    expected["profile"] = json!(case.profile);
    expected["event"] = json!({"kind": "open", "pid": marker_process.pid(), "path": sentinel,
                               "access": "read", "result": 0});
    agent.assert_alert(&alert, &expected);
    drop(marker_process);

    // And the server is under the profile: a violation from its process tree is caught.
    let run_sentinel = format!("/run?arg=read&arg={}", url_encode(&sentinel));
    let answer = get(case, &run_sentinel, 200);
    let runner = answer["pid"].as_u64().unwrap_or_default();
    let caught = agent.wait_alert(TIMEOUT, "a profile.read from the server's tree", |a| {
        a["rule"] == "profile.read" && a["event"]["pid"] == runner && in_tree(a, server.pid())
    });
    assert_eq!(caught["profile"], case.profile.as_str(), "{caught}");

    let others: Vec<Value> = agent.alerts(|a| {
        let quiet_profile = a["profile"] == case.profile.as_str();
        (quiet_profile || in_tree(a, server.pid())) && a["event"]["path"] != sentinel.as_str()
    });
    assert!(
        others.is_empty(),
        "the stand-in server raised alerts while serving normally:\n{}",
        one_per_line(&others)
    );
}

#[test]
fn reading_credentials_raises_credential_read_and_profile_read() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("credential");
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let files: Vec<String> = [
        ".ssh/id_rsa",
        ".aws/credentials",
        ".kube/config",
        "app/.env",
    ]
    .iter()
    .map(|rel| path_str(home.write(rel, "fake secret\n")))
    .collect();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let run = replay(&agent, case, "read", &args);
    for path in &files {
        let event = json!({"kind": "open", "pid": run.runner, "path": path, "access": "read",
                           "result": 0});
        run.expect(&agent, case, "credential-read", event.clone());
        run.expect(&agent, case, "profile.read", event);
    }
    run.expect_only(&[
        ("credential-read", run.runner),
        ("profile.read", run.runner),
    ]);
}

#[test]
fn writing_a_pth_file_raises_interpreter_startup_hook_and_profile_write() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("startup-hook");
    let dir = TempDir::new("site");
    let site = dir.join("venv/lib/python3.11/site-packages");
    fs::create_dir_all(&site).expect("creating site-packages");
    let pth = path_str(site.join("monitor_test_hook.pth"));
    let run = replay(&agent, case, "write", &[&pth]);
    let event = json!({"kind": "open", "pid": run.runner, "path": pth, "access": "write",
                       "created": true, "result": 0});
    run.expect(&agent, case, "interpreter-startup-hook", event.clone());
    run.expect(&agent, case, "profile.write", event.clone());
    // The shipped Sigma rule on .pth files in site-packages applies to profiled processes.
    let sigma = "sigma:fb96c26c-9f85-4ae7-af0d-ed1ed1f1f5ce";
    run.expect(&agent, case, sigma, event);
    run.expect_only(&[
        ("interpreter-startup-hook", run.runner),
        ("profile.write", run.runner),
        (sigma, run.runner),
    ]);
}

#[test]
fn writing_a_systemd_user_unit_raises_persistence_systemd_and_profile_write() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("systemd-unit");
    let Some(home) = DirGuard::fake_home() else {
        return;
    };
    let units = home.join(".config/systemd/user");
    fs::create_dir_all(&units).expect("creating the user unit directory");
    let unit = path_str(units.join("monitor-test-backdoor.service"));
    let run = replay(&agent, case, "write", &[&unit]);
    let event = json!({"kind": "open", "pid": run.runner, "path": unit, "access": "write",
                       "created": true});
    run.expect(&agent, case, "persistence.systemd", event.clone());
    run.expect(&agent, case, "profile.write", event);
    run.expect_only(&[
        ("persistence.systemd", run.runner),
        ("profile.write", run.runner),
    ]);
}

#[test]
fn executing_a_file_it_wrote_in_tmp_raises_write_then_exec() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("drop-exec");
    let dir = DirGuard::new_in(Path::new("/tmp"), "drop").expect("creating a directory in /tmp");
    let payload = path_str(dir.join("payload"));
    let truth = monitor_tests::canonical("/bin/true");
    let run = replay(&agent, case, "drop-exec", &[&truth, &payload]);
    let child = run.child();
    let exec = json!({"kind": "exec", "pid": child, "filename": payload, "exe": payload});
    run.expect(&agent, case, "write-then-exec", exec.clone());
    run.expect(&agent, case, "profile.exec", exec);
    run.expect(
        &agent,
        case,
        "profile.write",
        json!({"kind": "open", "pid": run.runner, "path": payload, "access": "write"}),
    );
    // Reading /usr/bin/true is outside the profile too.
    run.expect_only(&[
        ("write-then-exec", child),
        ("profile.exec", child),
        ("profile.write", run.runner),
        ("profile.read", run.runner),
    ]);
}

#[test]
fn executing_a_memfd_raises_fileless_exec() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("memfd-exec");
    let truth = monitor_tests::canonical("/bin/true");
    let run = replay(&agent, case, "memfd-exec", &[&truth]);
    let child = run.child();
    let exec = json!({"kind": "exec", "pid": child, "argv": ["monitor-test-memfd"]});
    run.expect(&agent, case, "fileless-exec", exec.clone());
    run.expect(&agent, case, "profile.exec", exec);
    run.expect_only(&[
        ("fileless-exec", child),
        ("profile.exec", child),
        ("profile.read", run.runner),
    ]);
}

#[test]
fn reading_another_process_environ_raises_proc_access() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("environ");
    let run = replay(&agent, case, "environ", &[]);
    // The runner reads its parent's, the server's, environment.
    let path = format!("/proc/{}/environ", run.server.pid());
    let event = json!({"kind": "open", "pid": run.runner, "path": path, "access": "read"});
    run.expect(&agent, case, "proc-access", event.clone());
    run.expect(&agent, case, "profile.read", event);
    run.expect_only(&[("proc-access", run.runner), ("profile.read", run.runner)]);
}

#[test]
fn connecting_to_a_port_outside_the_profile_raises_profile_connect() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("connect");
    // Something the test owns to connect to, on loopback.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a listener");
    let port = listener.local_addr().expect("its address").port();
    let run = replay(&agent, case, "connect", &[&port.to_string()]);
    run.expect(
        &agent,
        case,
        "profile.connect",
        json!({"kind": "connect", "pid": run.runner, "protocol": "tcp",
               "remote_addr": "127.0.0.1", "remote_port": port, "result": 0}),
    );
    run.expect_only(&[("profile.connect", run.runner)]);
}

#[test]
fn listening_on_a_port_outside_the_profile_raises_profile_listen() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("listen");
    let run = replay(&agent, case, "listen", &[]);
    let port: u16 = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("port ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {:?}", run.stdout));
    run.expect(
        &agent,
        case,
        "profile.listen",
        json!({"kind": "listen", "pid": run.runner, "protocol": "tcp", "local_port": port}),
    );
    run.expect_only(&[("profile.listen", run.runner)]);
}

/// The server runs `tool args` (skipped loudly when the tool is missing): `profile.exec` and
/// the `rule` detection for the tool's exec.
fn tool_case(case_name: &str, tool: &str, args: &[&str], rule: &str) {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case(case_name);
    let Some(path) = find_tool(&[tool]) else {
        skip_or_fail(&format!("{tool} is not installed: {rule} is not tested"));
        return;
    };
    let mut argv = vec![path.as_str()];
    argv.extend(args);
    let run = replay(&agent, case, "exec", &argv);
    let child = run.child();
    let exec = json!({"kind": "exec", "pid": child, "exe": path});
    run.expect(&agent, case, rule, exec.clone());
    run.expect(&agent, case, "profile.exec", exec);
    // The tool's own reads (curl: /etc/ldap/ldap.conf, tar: /proc/filesystems) are outside the
    // profile as well.
    run.expect_only(&[
        (rule, child),
        ("profile.exec", child),
        ("profile.read", child),
    ]);
}

#[test]
fn running_tar_raises_tool_spawn_archive() {
    tool_case("tar", "/usr/bin/tar", &["--version"], "tool-spawn.archive");
}

#[test]
fn running_openssl_raises_tool_spawn_encryption() {
    tool_case(
        "openssl",
        "/usr/bin/openssl",
        &["version"],
        "tool-spawn.encryption",
    );
}

#[test]
fn running_curl_raises_tool_spawn_transfer() {
    tool_case(
        "curl",
        "/usr/bin/curl",
        &["--version"],
        "tool-spawn.transfer",
    );
}

#[test]
fn forking_200_children_raises_process_burst() {
    let Some(agent) = agent() else { return };
    let case = agent.fixture().case("burst");
    let run = replay(&agent, case, "burst", &["200"]);
    run.expect(
        &agent,
        case,
        "process-burst",
        json!({"kind": "fork", "pid": run.runner}),
    );
    run.expect_only(&[("process-burst", run.runner)]);
}

/// A server process matched by a profile at its own exec: reads SENTINEL over and over (bounded)
/// until the file GO appears, then starts a plain interpreter that reads CHILD_SENTINEL, and
/// exits. A process is recorded from when the agent has handled its exec, so the probe's own
/// start may be seen only in part; its child inherits the recording at fork and is seen whole.
/// Arguments: SENTINEL GO CHILD_SENTINEL, then whatever makes the profile match.
const PROBE: &str = r#"
import os, subprocess, sys, time
sentinel, go, child_sentinel = sys.argv[1:4]
for _ in range(600):
    with open(sentinel, 'rb') as f:
        f.read()
    if os.path.exists(go):
        read = 'import sys\nwith open(sys.argv[1], "rb") as f:\n    f.read()\n'
        subprocess.run([sys.executable, '-c', read, child_sentinel], check=True)
        break
    time.sleep(0.05)
"#;

/// The shipped profiles take the servers they are written for (by `program`: the console
/// script an interpreter runs), and a plain interpreter start under each raises nothing: scripts
/// named `bin/litellm`, `bin/vllm` and `bin/uvicorn` are a LiteLLM proxy, a vLLM server and a
/// uvicorn server. The probe and its child read files no profile allows; those reads, and the
/// reads of the test's own scripts (a deployment's live under the venv), must be the only
/// alerts.
#[test]
fn shipped_profiles_take_their_servers_and_allow_a_plain_interpreter_start() {
    let Some(agent) = agent() else { return };
    let python = "/usr/bin/python3";
    if !Path::new(python).exists() {
        skip_or_fail("/usr/bin/python3 is not installed: the shipped profiles are not tested");
        return;
    }
    // Outside every allow list of the shipped profiles (python-asgi and vllm read /tmp).
    let dir = match DirGuard::new_in(Path::new("/run"), "probe") {
        Ok(dir) => dir,
        Err(e) => {
            skip_or_fail(&format!("cannot create a directory under /run: {e}"));
            return;
        }
    };
    let sentinel = path_str(dir.write("sentinel.txt", "sentinel\n"));
    let scripts = TempDir::new("shipped-bin");
    let script = |name: &str| {
        let path = write_file(
            scripts.join(format!("bin/{name}")),
            &format!("#!{python}\n{PROBE}"),
        );
        let mut perms = fs::metadata(&path).expect("stat the script").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(&path, perms).expect("chmod the script");
        path
    };
    let scripts_dir = path_str(scripts.path());

    let stdlib = match Command::new(python)
        .args([
            "-I",
            "-c",
            "import sysconfig; print(sysconfig.get_path('stdlib'))",
        ])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        other => panic!("cannot ask {python} for its standard library: {other:?}"),
    };
    let mut problems = String::new();
    for (profile, program, matching) in [
        ("litellm-proxy", "litellm", &["--port", "4000"][..]),
        ("vllm-openai", "vllm", &["serve", "stand-in"][..]),
        ("python-asgi", "uvicorn", &["app:app"][..]),
    ] {
        let go = path_str(dir.join(format!("go-{profile}")));
        let child_sentinel = path_str(dir.write(&format!("child-{profile}.txt"), "child\n"));
        let mut cmd = Command::new(script(program));
        cmd.args([&sentinel, &go, &child_sentinel])
            .args(matching)
            .current_dir(&stdlib);
        let mut probe = agent.spawn(&mut cmd);
        let pid = probe.pid();
        let alert = agent.wait_alert(TIMEOUT, &format!("the {profile} probe's read"), |a| {
            a["rule"] == "profile.read"
                && a["event"]["pid"] == pid
                && a["event"]["path"] == sentinel.as_str()
        });
        assert_eq!(alert["profile"], profile, "{alert}");
        write_file(&go, "");
        let alert = agent.wait_alert(TIMEOUT, &format!("the {profile} child's read"), |a| {
            a["rule"] == "profile.read"
                && a["event"]["path"] == child_sentinel.as_str()
                && in_tree(a, pid)
        });
        assert_eq!(alert["profile"], profile, "{alert}");
        probe.finish_ok(TIMEOUT);
        let child = alert["event"]["pid"].clone();
        let others = agent.alerts(|a| {
            (a["event"]["pid"] == pid || a["event"]["pid"] == child)
                && a["event"]["path"] != sentinel.as_str()
                && a["event"]["path"] != child_sentinel.as_str()
                && !a["event"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&scripts_dir))
        });
        problems.extend(
            others
                .iter()
                .map(|a| format!("  {profile}: {}\n", a["message"])),
        );
    }
    assert!(
        problems.is_empty(),
        "a plain interpreter start under the shipped profiles raised:\n{problems}"
    );
}
