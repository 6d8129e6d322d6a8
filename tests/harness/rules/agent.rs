//! The agent of the rules tests: launched with rule paths and extra arguments, shared by the
//! tests of one binary, read back as alerts.

use std::{
    cell::RefCell,
    env,
    fs::{self, File},
    io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{self, Child, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard, Weak, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

use super::{alert_problems, alert_report, is_alert};
use crate::{
    agent::{POLL, agent_binary},
    events::{EventLog, field_mismatches},
    fs::TempDir,
    process::{Proc, describe},
    skip_or_fail, warn,
};

/// How long the agent may take to load its rules and attach its probes.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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
