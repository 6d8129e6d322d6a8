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

use std::{
    cell::RefCell,
    env,
    ffi::CString,
    fmt::Write as _,
    fs::{self, File},
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsRawFd as _, RawFd},
        unix::{ffi::OsStrExt as _, process::CommandExt as _},
    },
    path::{Path, PathBuf},
    process::{self, Child, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard, Weak, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

use crate::{
    agent::{POLL, agent_binary},
    cgroup::random_hex,
    events::{EventLog, envelope_problems, field_mismatches},
    fs::TempDir,
    process::{Proc, describe},
    python, skip_or_fail, warn,
};

/// How long the agent may take to load its rules and attach its probes.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many recent alerts a timeout report shows.
const REPORT_ALERTS: usize = 25;

/// The repository's shipped rules (`<workspace>/rules`).
pub fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("/"))
        .join("rules")
}

/// What a setup closure returns: the rule paths and extra arguments to start the agent with, and
/// the fixture the tests share.
pub struct AgentSetup<F> {
    /// Each becomes `--rules PATH`, in order.
    pub rules: Vec<PathBuf>,
    /// Extra arguments for `monitor run`, e.g. `--watch-all`.
    pub args: Vec<String>,
    pub fixture: F,
}

/// The agent shared by the tests of one binary; declare it as a `static`.
pub struct SharedAgent<F> {
    state: Mutex<State<F>>,
}

enum State<F> {
    Idle,
    Running(Weak<Running<F>>),
    Unavailable(String),
}

impl<F: Send + Sync + 'static> SharedAgent<F> {
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State::Idle),
        }
    }

    /// Joins the running agent, or writes its rules with `setup` (given a directory that lives
    /// as long as the agent) and launches it. `None` after saying loudly why it cannot run;
    /// under `CI=true` that panics instead.
    #[track_caller]
    pub fn join(
        &'static self,
        setup: impl FnOnce(&Path) -> Result<AgentSetup<F>, String>,
    ) -> Option<RulesAgent<F>> {
        let since = SystemTime::now();
        let mut state = lock(&self.state);
        let running = match &*state {
            State::Unavailable(reason) => {
                let first = reason.lines().next().unwrap_or_default();
                let summary = format!(
                    "{first}\n(the agent could not start for an earlier test of this binary; \
                     its report is above)"
                );
                drop(state);
                skip_or_fail(&summary);
                return None;
            }
            State::Running(weak) => weak.upgrade(),
            State::Idle => None,
        };
        let running = match running {
            Some(running) => {
                if let Some(status) = running.process.exited() {
                    drop(state);
                    panic!(
                        "the agent shared by this test binary died ({status}); its stderr:\n{}",
                        running.process.stderr_excerpt()
                    );
                }
                running
            }
            None => match Running::launch(setup) {
                Ok(running) => {
                    let running = Arc::new(running);
                    *state = State::Running(Arc::downgrade(&running));
                    running
                }
                Err(reason) => {
                    *state = State::Unavailable(reason.clone());
                    drop(state);
                    skip_or_fail(&reason);
                    return None;
                }
            },
        };
        drop(state);
        let log = EventLog::from_end(&running.process.output);
        Some(RulesAgent {
            running,
            log: RefCell::new(log),
            since,
        })
    }
}

impl<F: Send + Sync + 'static> Default for SharedAgent<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// The running agent with the directory its rules were written to and the tests' fixture.
struct Running<F> {
    // Fields drop in order: the agent stops before its rules directory goes away.
    process: AgentProcess,
    fixture: F,
    _rules_dir: TempDir,
}

impl<F> Running<F> {
    fn launch(setup: impl FnOnce(&Path) -> Result<AgentSetup<F>, String>) -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(
                "not running as root: the agent needs root to load its eBPF programs \
                        (run the tests as root, e.g. `sudo -E cargo xtask test`)"
                    .to_owned(),
            );
        }
        let bin = agent_binary();
        if !bin.is_file() {
            return Err(format!(
                "the agent binary {} does not exist: build it with `cargo build --release -p \
                 monitor` (or `cargo xtask test`), or point MONITOR_BIN at it",
                bin.display()
            ));
        }
        let rules_dir = TempDir::try_new("rules")
            .map_err(|e| format!("cannot create the test rules directory: {e}"))?;
        let AgentSetup {
            rules,
            args,
            fixture,
        } = setup(rules_dir.path())?;
        let process = AgentProcess::launch(&bin, &rules, &args)?;
        Ok(Self {
            process,
            fixture,
            _rules_dir: rules_dir,
        })
    }
}

/// A test's handle on the shared agent: its own view of the output from when it joined.
pub struct RulesAgent<F: 'static> {
    running: Arc<Running<F>>,
    log: RefCell<EventLog>,
    since: SystemTime,
}

impl<F> RulesAgent<F> {
    /// What the setup closure returned.
    pub fn fixture(&self) -> &F {
        &self.running.fixture
    }

    /// Starts `cmd` (the agent is ready by construction).
    #[track_caller]
    pub fn spawn(&self, cmd: &mut Command) -> Proc {
        let child = Proc::spawn(cmd);
        self.log.borrow_mut().track(child.pid());
        child
    }

    /// Waits until an alert satisfies `pred` and returns it (the first since this handle was
    /// made). Past the deadline, or if the agent dies, panics with the recent alerts and the
    /// agent's stderr.
    #[track_caller]
    pub fn wait_alert(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_until(timeout, what, |lines| {
            lines.iter().find(|v| is_alert(v) && pred(v)).cloned()
        })
    }

    /// Every alert read so far (after reading what is new) that satisfies `pred`, in order.
    #[track_caller]
    pub fn alerts(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut log = self.log.borrow_mut();
        if let Err(problem) = log.poll() {
            drop(log);
            panic!("{problem}");
        }
        log.events()
            .iter()
            .filter(|v| is_alert(v) && pred(v))
            .cloned()
            .collect()
    }

    /// Asserts the alert contract (an id, a time, a message, lineage, the triggering event with
    /// its envelope) and exactly the values of `expected`: top-level fields compared as a whole,
    /// except `event`, whose own fields are compared one by one.
    #[track_caller]
    pub fn assert_alert(&self, alert: &Value, expected: &Value) {
        let mut problems = alert_problems(alert, self.since);
        let mut top = expected.clone();
        if let Some(fields) = top.as_object_mut()
            && let Some(event) = fields.remove("event")
        {
            problems.extend(
                field_mismatches(&alert["event"], &event)
                    .into_iter()
                    .map(|p| format!("event: {p}")),
            );
        }
        problems.extend(field_mismatches(alert, &top));
        if !problems.is_empty() {
            panic!(
                "the alert does not match:\n  - {}\nalert:    {alert}\nexpected: {expected}",
                problems.join("\n  - ")
            );
        }
    }

    /// Where the agent writes (alerts, and events with `MONITOR_TEST_EVENTS=1`).
    pub fn output_path(&self) -> PathBuf {
        self.running.process.output.clone()
    }

    #[track_caller]
    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let process = &self.running.process;
        loop {
            {
                let mut log = self.log.borrow_mut();
                let polled = log.poll();
                if let Some(found) = check(log.events()) {
                    return found;
                }
                if let Err(problem) = polled {
                    let report = alert_report(log.events());
                    drop(log);
                    panic!("{problem}\n{report}");
                }
            }
            if let Some(status) = process.exited() {
                let mut log = self.log.borrow_mut();
                let _ = log.poll();
                if let Some(found) = check(log.events()) {
                    return found;
                }
                let report = alert_report(log.events());
                drop(log);
                panic!(
                    "the agent died ({status}) while the test waited for {what}\n{report}\n\
                     agent stderr:\n{}",
                    process.stderr_excerpt()
                );
            }
            if Instant::now() >= deadline {
                let report = alert_report(self.log.borrow().events());
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{report}\nagent stderr:\n{}\n\
                     (set MONITOR_TEST_KEEP=1 to keep the agent's directory {}, and \
                     MONITOR_TEST_EVENTS=1 to record raw events there too)",
                    process.stderr_excerpt(),
                    process.dir.path().display()
                );
            }
            thread::sleep(POLL);
        }
    }
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
fn alert_problems(alert: &Value, since: SystemTime) -> Vec<String> {
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
    if alert["time"]
        .as_str()
        .and_then(crate::events::parse_time)
        .is_none()
    {
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
fn alert_report(lines: &[Value]) -> String {
    let alerts: Vec<&Value> = lines.iter().filter(|v| is_alert(v)).collect();
    let mut out = format!(
        "lines read since the test joined: {}, alerts among them: {}",
        lines.len(),
        alerts.len()
    );
    let skip = alerts.len().saturating_sub(REPORT_ALERTS);
    if skip > 0 {
        let _ = write!(out, "; the last {REPORT_ALERTS}:");
    } else if !alerts.is_empty() {
        out.push(':');
    }
    for alert in &alerts[skip..] {
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

/// The agent process, its directory (output, ready file, stderr) and the thread that spawned it
/// (the agent's parent-death signal is tied to that thread, which outlives every test).
struct AgentProcess {
    child: Mutex<Child>,
    dir: TempDir,
    output: PathBuf,
    stderr: PathBuf,
    keeper_stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl AgentProcess {
    fn launch(bin: &Path, rules: &[PathBuf], args: &[String]) -> Result<Self, String> {
        let dir = TempDir::try_new("rules-agent")
            .map_err(|e| format!("cannot create the agent's directory: {e}"))?;
        let output = dir.join("output.jsonl");
        let ready = dir.join("ready");
        let stderr = dir.join("agent.stderr");
        let open = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--output")
            .arg(format!("file:{}", output.display()))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--alert-fold-secs")
            .arg("0");
        if env::var_os("MONITOR_TEST_EVENTS").is_some_and(|v| !v.is_empty() && v != "0") {
            cmd.arg("--events");
        }
        for path in rules {
            cmd.arg("--rules").arg(path);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(open(&dir.join("agent.stdout"))?)
            .stderr(open(&stderr)?);
        let parent = process::id();
        // SAFETY: the closure runs in the forked child before exec and only makes two
        // async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                let signal = libc::SIGKILL as libc::c_ulong;
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("the test binary exited"));
                }
                Ok(())
            });
        }
        let described = format!("{cmd:?}");
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = thread::Builder::new()
            .name("monitor-rules-agent-keeper".to_owned())
            .spawn(move || {
                let spawned = cmd.spawn();
                let running = spawned.is_ok();
                if let Err(mpsc::SendError(Ok(mut child))) = spawned_tx.send(spawned) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                if running {
                    let _ = stop_rx.recv();
                }
            })
            .map_err(|e| format!("cannot start the agent's keeper thread: {e}"))?;
        let child = match spawned_rx.recv() {
            Ok(Ok(child)) => child,
            Ok(Err(e)) => return Err(format!("cannot start {described}: {e}")),
            Err(_) => return Err("the agent's keeper thread died".to_owned()),
        };
        let agent = Self {
            child: Mutex::new(child),
            dir,
            output,
            stderr,
            keeper_stop: Some(stop_tx),
            keeper: Some(keeper),
        };
        agent.wait_ready(&ready, &described)?;
        Ok(agent)
    }

    fn wait_ready(&self, ready: &Path, described: &str) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if ready.exists() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "the agent exited before it was ready ({status}); command: {described}\n\
                     its stderr:\n{}",
                    self.stderr_excerpt()
                ));
            }
            if started.elapsed() >= READY_TIMEOUT {
                return Err(format!(
                    "the agent did not create its ready file within {READY_TIMEOUT:?}; \
                     command: {described}\nits stderr:\n{}",
                    self.stderr_excerpt()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// The agent's exit status, described, once it has exited.
    fn exited(&self) -> Option<String> {
        lock(&self.child).try_wait().ok().flatten().map(describe)
    }

    /// The start and the end of the agent's stderr.
    fn stderr_excerpt(&self) -> String {
        const HEAD: usize = 1500;
        const TAIL: usize = 2500;
        let bytes = match fs::read(&self.stderr) {
            Ok(bytes) => bytes,
            Err(e) => return format!("<cannot read {}: {e}>", self.stderr.display()),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return "<empty>".to_owned();
        }
        if bytes.len() <= HEAD + TAIL {
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        let tail = bytes.len() - TAIL;
        format!(
            "{}\n[... {} bytes left out ...]\n{}",
            String::from_utf8_lossy(&bytes[..HEAD]),
            tail - HEAD,
            String::from_utf8_lossy(&bytes[tail..])
        )
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    fn stop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => thread::sleep(POLL),
                Err(_) => break,
            }
        }
        warn(&format!(
            "WARNING: the agent did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it"
        ));
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.stop();
        drop(self.keeper_stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        if env::var_os("MONITOR_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0") {
            self.dir.keep();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh directory `<parent>/monitor-test-<label>-XXXXXX`, removed with its contents on drop.
/// For places the shipped rules name and [`TempDir`] cannot reach: a fake home directory under
/// `/home` (the rules' `~/` covers `/home/*/`), a directory under `/run` that no rule names.
#[derive(Debug)]
pub struct DirGuard {
    path: PathBuf,
}

impl DirGuard {
    pub fn new_in(parent: &Path, label: &str) -> io::Result<Self> {
        let template = parent.join(format!("monitor-test-{label}-XXXXXX"));
        let mut template = CString::new(template.as_os_str().as_bytes())
            .map_err(io::Error::other)?
            .into_bytes_with_nul();
        // SAFETY: a writable, NUL-terminated buffer ending in "XXXXXX" that outlives the call.
        let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(io::Error::last_os_error());
        }
        template.pop();
        let mut dir = Self {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(&template)),
        };
        dir.path = fs::canonicalize(&dir.path)?;
        Ok(dir)
    }

    /// A fake home directory under `/home`; `None` after saying loudly why there is none.
    #[track_caller]
    pub fn fake_home() -> Option<Self> {
        match Self::new_in(Path::new("/home"), "home") {
            Ok(dir) => Some(dir),
            Err(e) => {
                skip_or_fail(&format!(
                    "cannot create a fake home directory under /home ({e}); the detections \
                     of home-directory paths are not tested"
                ));
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// Writes `contents` to `relative`, creating the directories on the way.
    #[track_caller]
    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        write_file(self.join(relative), contents)
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn(&format!(
                "WARNING: could not remove {}: {e}",
                self.path.display()
            ));
        }
    }
}

/// Writes a file, creating its parent directories; returns its path.
#[track_caller]
pub fn write_file(path: impl AsRef<Path>, contents: &str) -> PathBuf {
    let path = path.as_ref();
    if let Some(parent) = path.parent()
        && let Err(e) = fs::create_dir_all(parent)
    {
        panic!("cannot create {}: {e}", parent.display());
    }
    if let Err(e) = fs::write(path, contents) {
        panic!("cannot write {}: {e}", path.display());
    }
    path.to_path_buf()
}

/// A network namespace the test owns (`ip netns add monitor-test-...`), with loopback up and the
/// given addresses on it, deleted on drop. Children entered into it ([`NetNs::enter`]) reach
/// those addresses without any packet leaving the namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    handle: File,
}

impl NetNs {
    /// `None` after saying loudly why the namespace cannot be made.
    #[track_caller]
    pub fn with_addresses(addrs: &[&str]) -> Option<Self> {
        let name = format!("monitor-test-{}", random_hex(4));
        if let Err(e) = ip(&["netns", "add", &name]) {
            skip_or_fail(&format!("cannot create a network namespace: {e}"));
            return None;
        }
        // From here on, dropping `ns` deletes it.
        let handle = match File::open(Path::new("/run/netns").join(&name)) {
            Ok(file) => file,
            Err(e) => {
                let _ = ip(&["netns", "del", &name]);
                skip_or_fail(&format!("cannot open /run/netns/{name}: {e}"));
                return None;
            }
        };
        let ns = Self { name, handle };
        let mut steps = vec![vec!["-n", &ns.name, "link", "set", "lo", "up"]];
        for addr in addrs {
            steps.push(vec!["-n", &ns.name, "addr", "add", addr, "dev", "lo"]);
        }
        for step in steps {
            if let Err(e) = ip(&step) {
                skip_or_fail(&format!("cannot set up network namespace {}: {e}", ns.name));
                return None;
            }
        }
        Some(ns)
    }

    /// Makes `cmd` start inside the namespace.
    pub fn enter<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let fd: RawFd = self.handle.as_raw_fd();
        // SAFETY: setns is async-signal-safe; `fd` stays open until the spawn returns because
        // `self` outlives the borrow of `cmd` in the caller's spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            warn(&format!(
                "WARNING: could not delete network namespace {}: {e}",
                self.name
            ));
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            describe(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A loopback TCP port nothing listens on right now (the kernel picked it for a throwaway
/// socket; the caller binds it soon after).
#[track_caller]
pub fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot find a free loopback port: {e}"),
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
#[track_caller]
pub fn wait_listening(port: u16, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("nothing listens on {addr} after {timeout:?}: {e}"));
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// `GET target` over HTTP/1.0 on 127.0.0.1:`port`; returns the status code and body.
pub fn http_get(port: u16, target: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query-string value.
pub fn url_encode(value: &str) -> String {
    value.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// The Python interpreter the harness runs ([`python`]): the path it is started by, the binary
/// behind it, and its installation prefix (its standard library lives there).
#[derive(Clone, Debug)]
pub struct PythonInfo {
    pub executable: String,
    pub resolved: String,
    pub prefix: String,
}

impl PythonInfo {
    #[track_caller]
    pub fn get() -> Self {
        let out = python(
            "import os, sys\n\
             print(sys.executable); print(os.path.realpath(sys.executable)); \
             print(os.path.realpath(sys.base_prefix))",
        )
        .stdin(Stdio::null())
        .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => panic!(
                "python failed ({}): {}",
                describe(out.status),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("cannot run python: {e}"),
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines().map(str::to_owned);
        match (lines.next(), lines.next(), lines.next()) {
            (Some(executable), Some(resolved), Some(prefix)) => Self {
                executable,
                resolved,
                prefix,
            },
            _ => panic!("unexpected output from python: {text:?}"),
        }
    }
}

/// The first of `candidates` that exists, resolved; `None` when the tool is missing.
pub fn find_tool(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find_map(|c| fs::canonicalize(c).ok())
        .and_then(|p| p.to_str().map(str::to_owned))
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

/// What the shipped rules say about each of their alerts: `rule`, `severity` and `mitre`, as a
/// JSON object to extend with `profile` and `event`. Detections that are not shipped get an
/// object without `severity`.
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
        "write-then-exec" => ("high", &["T1105", "T1059"]),
        "fileless-exec" => ("high", &["T1620"]),
        "proc-access" => ("high", &["T1003.007"]),
        "cloud-metadata" => ("high", &["T1552.005"]),
        "process-burst" => ("high", &["T1499"]),
        "tool-spawn.recon" => ("medium", &["T1033", "T1082", "T1016", "T1049", "T1057"]),
        "tool-spawn.archive" => ("medium", &["T1560.001"]),
        "tool-spawn.encryption" => ("high", &["T1560.001"]),
        "tool-spawn.transfer" => ("high", &["T1105", "T1048"]),
        _ => return serde_json::json!({ "rule": rule }),
    };
    serde_json::json!({ "rule": rule, "severity": severity, "mitre": mitre })
}
