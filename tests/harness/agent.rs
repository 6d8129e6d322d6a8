//! Starting, sharing and stopping the agent under test, and waiting for its events.
//!
//! One agent process serves every test of a test binary that runs while it is up: the first
//! [`Agent::start`] launches it, later ones join it, and the last handle dropped stops it. Each
//! handle reads the events file from where it stood when the handle was made, so a test sees only
//! events that happened after it started, and tests filter by the pids of the children they spawn.
//! Sharing keeps the 2-core machines from loading the probes once per test and running several
//! agents that each see every event of the host.

use std::{
    cell::RefCell,
    env,
    fs::{self, File},
    io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{self, Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, MutexGuard, Weak, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

use crate::{
    events::{EventLog, envelope_problems, field_mismatches, matches},
    fs::TempDir,
    process::{Proc, describe},
    skip_or_fail, warn,
};

/// The usual deadline for an event or a child.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Polling period of every deadline-bound wait.
pub(crate) const POLL: Duration = Duration::from_millis(20);
/// How long the agent may take to attach its probes.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the start and of the end of the agent's stderr a report shows (the first error
/// line comes first; a verifier log can run to megabytes).
const STDERR_HEAD: usize = 1500;
const STDERR_TAIL: usize = 2500;

/// The agent process shared by the tests of this binary.
enum Shared {
    Idle,
    Running(Weak<AgentProcess>),
    /// It could not start; later tests report the first line of the same reason without trying
    /// again.
    Unavailable(String),
}

static SHARED: Mutex<Shared> = Mutex::new(Shared::Idle);

/// A test's handle on the running agent: its own view of the events file and the pids it tracks.
pub struct Agent {
    process: Arc<AgentProcess>,
    log: RefCell<EventLog>,
    since: SystemTime,
}

impl Agent {
    /// Starts the agent, or joins the one this test binary already runs, once every probe is
    /// attached. When it cannot run (not root, no binary, it exits or never gets ready) this says
    /// so loudly, including the agent's stderr, and returns `None` so the test can return early;
    /// under `CI=true` it panics instead.
    #[track_caller]
    pub fn start() -> Option<Self> {
        let since = SystemTime::now();
        let mut shared = lock(&SHARED);
        let process = match &*shared {
            Shared::Unavailable(reason) => {
                let first_line = reason.lines().next().unwrap_or_default();
                let summary = format!(
                    "{first_line}\n(the agent could not start for an earlier test of this binary; \
                     its report, with the agent's stderr, is above)"
                );
                drop(shared);
                skip_or_fail(&summary);
                return None;
            }
            Shared::Running(weak) => weak.upgrade(),
            Shared::Idle => None,
        };
        let process = match process {
            Some(process) => {
                if let Some(status) = process.exited() {
                    drop(shared);
                    panic!(
                        "the agent shared by this test binary died ({}); its stderr:\n{}",
                        describe(status),
                        process.stderr_excerpt()
                    );
                }
                process
            }
            None => match AgentProcess::launch() {
                Ok(process) => {
                    let process = Arc::new(process);
                    *shared = Shared::Running(Arc::downgrade(&process));
                    process
                }
                Err(reason) => {
                    *shared = Shared::Unavailable(reason.clone());
                    drop(shared);
                    skip_or_fail(&reason);
                    return None;
                }
            },
        };
        drop(shared);
        let log = EventLog::from_end(&process.events);
        Some(Self {
            process,
            log: RefCell::new(log),
            since,
        })
    }

    /// Starts `cmd` (the agent is ready by construction) and tracks its pid and descendants.
    #[track_caller]
    pub fn spawn(&self, cmd: &mut Command) -> Proc {
        let child = Proc::spawn(cmd);
        self.track(child.pid());
        child
    }

    /// Adds a pid whose events a timeout report should show.
    pub fn track(&self, pid: u32) {
        self.log.borrow_mut().track(pid);
    }

    /// Waits until an event satisfies `pred` and returns it (the first such event since this
    /// handle was made). Past the deadline, or if the agent dies, panics with the events of the
    /// tracked pids and the agent's stderr.
    #[track_caller]
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(
            timeout,
            "an event satisfying the test's predicate",
            |events| events.iter().find(|e| pred(e)).cloned(),
        )
    }

    /// Waits until an event has every field of `pattern` (a subset match, see [`matches`]).
    #[track_caller]
    pub fn wait_for_match(&self, timeout: Duration, pattern: &Value) -> Value {
        self.wait_until(timeout, &format!("an event with {pattern}"), |events| {
            events.iter().find(|e| matches(e, pattern)).cloned()
        })
    }

    /// Waits until each pattern has a matching event (the first for each; two patterns may match
    /// the same event, so make them distinct); returns them in the patterns' order.
    #[track_caller]
    pub fn wait_for_all(&self, timeout: Duration, patterns: &[Value]) -> Vec<Value> {
        let mut found: Vec<Option<Value>> = vec![None; patterns.len()];
        let what = patterns
            .iter()
            .map(|p| format!("\n  {p}"))
            .collect::<String>();
        self.wait_until(
            timeout,
            &format!("an event for each of these patterns:{what}"),
            |events| {
                for (slot, pattern) in found.iter_mut().zip(patterns) {
                    if slot.is_none() {
                        *slot = events.iter().find(|e| matches(e, pattern)).cloned();
                    }
                }
                found.iter().cloned().collect::<Option<Vec<Value>>>()
            },
        )
    }

    /// Every event read so far whose `pid` (or, for a fork, `child_pid`) is `pid`, in file order.
    #[track_caller]
    pub fn events_for_pid(&self, pid: u32) -> Vec<Value> {
        let mut log = self.log.borrow_mut();
        if let Err(problem) = log.poll() {
            drop(log);
            panic!("{problem}");
        }
        log.events()
            .iter()
            .filter(|e| e["pid"] == pid || e["child_pid"] == pid)
            .cloned()
            .collect()
    }

    /// Asserts that `event` carries the contract's envelope (every field, `time` in RFC 3339 with
    /// nanoseconds and close to now) and exactly the values of every field in `expected`.
    #[track_caller]
    pub fn assert_event(&self, event: &Value, expected: &Value) {
        let mut problems = envelope_problems(event, self.since);
        problems.extend(field_mismatches(event, expected));
        if !problems.is_empty() {
            panic!(
                "the event does not match:\n  - {}\nevent:    {event}\nexpected: {expected}",
                problems.join("\n  - ")
            );
        }
    }

    /// Where the agent writes its events.
    pub fn events_path(&self) -> PathBuf {
        self.process.events.clone()
    }

    /// Polls the events file until `check` finds what it looks for in all events read so far.
    #[track_caller]
    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut log = self.log.borrow_mut();
                let polled = log.poll();
                if let Some(found) = check(log.events()) {
                    return found;
                }
                if let Err(problem) = polled {
                    let report = log.report();
                    drop(log);
                    panic!("{problem}\n{report}");
                }
            }
            if let Some(status) = self.process.exited() {
                // It may have written the event on its way out.
                let mut log = self.log.borrow_mut();
                let _ = log.poll();
                if let Some(found) = check(log.events()) {
                    return found;
                }
                let report = log.report();
                drop(log);
                panic!(
                    "the agent died ({}) while the test waited for {what}\n{report}\n\
                     agent stderr:\n{}",
                    describe(status),
                    self.process.stderr_excerpt()
                );
            }
            if Instant::now() >= deadline {
                let report = self.log.borrow().report();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{report}\n\
                     agent stderr:\n{}\n(set MONITOR_TEST_KEEP=1 to keep the agent's \
                     directory {})",
                    self.process.stderr_excerpt(),
                    self.process.dir.path().display()
                );
            }
            thread::sleep(POLL);
        }
    }
}

/// The agent process, its directory (events, ready file, stderr) and the thread that spawned it.
struct AgentProcess {
    child: Mutex<Child>,
    dir: TempDir,
    events: PathBuf,
    stderr: PathBuf,
    /// Dropping this lets the spawning thread end. That thread must outlive the agent: the
    /// agent's parent-death signal fires when the thread that forked it exits, so it is not tied
    /// to whichever test thread happened to start it, yet still dies if the test binary does.
    keeper_stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl AgentProcess {
    /// Launches `monitor run` and waits for its ready file. The error says why it cannot run.
    fn launch() -> Result<Self, String> {
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
        let dir = TempDir::try_new("agent")
            .map_err(|e| format!("cannot create the agent's directory: {e}"))?;
        let events = dir.join("events.jsonl");
        let ready = dir.join("ready");
        let stderr = dir.join("agent.stderr");
        let open = |path: &Path| {
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--events")
            .arg("--output")
            .arg(format!("file:{}", events.display()))
            .arg("--ready-file")
            .arg(&ready)
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
                // The test binary died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::other("the test binary exited"));
                }
                Ok(())
            });
        }

        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = thread::Builder::new()
            .name("monitor-agent-keeper".to_owned())
            .spawn(move || {
                let spawned = cmd.spawn();
                let running = spawned.is_ok();
                if let Err(mpsc::SendError(Ok(mut child))) = spawned_tx.send(spawned) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                if running {
                    // Returns once the sender is dropped, after the agent was stopped.
                    let _ = stop_rx.recv();
                }
            })
            .map_err(|e| format!("cannot start the agent's keeper thread: {e}"))?;
        let child = match spawned_rx.recv() {
            Ok(Ok(child)) => child,
            Ok(Err(e)) => return Err(format!("cannot start {}: {e}", bin.display())),
            Err(_) => return Err("the agent's keeper thread died".to_owned()),
        };
        let agent = Self {
            child: Mutex::new(child),
            dir,
            events,
            stderr,
            keeper_stop: Some(stop_tx),
            keeper: Some(keeper),
        };
        agent.wait_ready(&bin, &ready)?;
        Ok(agent)
    }

    fn wait_ready(&self, bin: &Path, ready: &Path) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if ready.exists() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "the agent ({}) exited before it was ready ({}): {}\nits stderr:\n{}",
                    bin.display(),
                    describe(status),
                    self.stderr_first_line(),
                    self.stderr_excerpt()
                ));
            }
            if started.elapsed() >= READY_TIMEOUT {
                return Err(format!(
                    "the agent ({}) did not create its ready file within {READY_TIMEOUT:?}: \
                     {}\nits stderr:\n{}",
                    bin.display(),
                    self.stderr_first_line(),
                    self.stderr_excerpt()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// The agent's exit status, once it has exited.
    fn exited(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// The first line of the agent's stderr, cut short: usually the error that stopped it.
    fn stderr_first_line(&self) -> String {
        let bytes = fs::read(&self.stderr).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        match text.lines().find(|l| !l.trim().is_empty()) {
            Some(line) if line.chars().count() > 300 => {
                format!("{}...", line.chars().take(300).collect::<String>())
            }
            Some(line) => line.to_owned(),
            None => "(it wrote nothing on stderr)".to_owned(),
        }
    }

    /// The start and the end of the agent's stderr.
    fn stderr_excerpt(&self) -> String {
        let bytes = match fs::read(&self.stderr) {
            Ok(bytes) => bytes,
            Err(e) => return format!("<cannot read {}: {e}>", self.stderr.display()),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return "<empty>".to_owned();
        }
        if bytes.len() <= STDERR_HEAD + STDERR_TAIL {
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        let tail = bytes.len() - STDERR_TAIL;
        format!(
            "{}\n[... {} bytes left out; set MONITOR_TEST_KEEP=1 to keep all of {} ...]\n{}",
            String::from_utf8_lossy(&bytes[..STDERR_HEAD]),
            tail - STDERR_HEAD,
            self.stderr.display(),
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
                Ok(Some(status)) => {
                    if !status.success() {
                        warn(&format!(
                            "WARNING: the agent exited with {} after SIGTERM",
                            describe(status)
                        ));
                    }
                    return;
                }
                Ok(None) => thread::sleep(POLL),
                Err(_) => break,
            }
        }
        warn(&format!(
            "WARNING: the agent did not exit within {STOP_TIMEOUT:?} of SIGTERM; \
             killing it"
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

/// `MONITOR_BIN`, else `<target dir>/release/monitor` (the target dir is `CARGO_TARGET_DIR`,
/// relative to the workspace root, or `<workspace>/target`).
pub fn agent_binary() -> PathBuf {
    if let Some(bin) = env::var_os("MONITOR_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("/"));
    let target = env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| workspace.join("target"), |d| workspace.join(d));
    target.join("release").join("monitor")
}

/// Locks, going on if another test panicked while holding the lock.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
