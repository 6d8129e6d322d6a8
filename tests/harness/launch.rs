//! Launching and stopping one `monitor run` process: the one implementation behind both the
//! plain [`crate::Agent`] and the rules tests' [`crate::rules::SharedAgent`], which differ only
//! in the arguments they pass and the names of their files.

use std::{
    env,
    ffi::OsString,
    fs::{self, File},
    io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{self, Child, Command, ExitStatus, Stdio},
    sync::{Mutex, MutexGuard, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crate::{
    agent::POLL,
    fs::TempDir,
    process::{Stopped, describe, terminate},
    warn,
};

/// How long the agent may take to load its rules and attach its probes, on this host (see
/// [`time_scale`]).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent may take to exit after SIGTERM before it is killed, on this host.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Names how many times slower than a host the machine under test runs.
const TIME_SCALE_VAR: &str = "MONITOR_TEST_TIME_SCALE";
/// How much of the start and of the end of the agent's stderr a report shows (the first error
/// line comes first; a verifier log can run to megabytes).
const STDERR_HEAD: usize = 1500;
const STDERR_TAIL: usize = 2500;

/// What differs between the agents the tests launch.
pub(crate) struct Launch {
    /// Label of the agent's temporary directory (`monitor-test-<label>-XXXXXX`).
    pub(crate) dir_label: &'static str,
    /// Name of the output file in that directory (`--output file:PATH`).
    pub(crate) output_name: &'static str,
    /// An output file elsewhere instead (kept across launches, e.g. to restart an agent).
    pub(crate) output_path: Option<PathBuf>,
    /// Arguments for `monitor run` after `--output` and `--ready-file`.
    pub(crate) args: Vec<OsString>,
    /// Added to the hint of a timeout report, after the one about `MONITOR_TEST_KEEP`.
    pub(crate) keep_hint: &'static str,
}

/// How many times slower than a host the machine under test runs: `MONITOR_TEST_TIME_SCALE`, a
/// whole number from 1 (unset: 1). `cargo xtask vm-test` sets it in its guests, which are
/// emulated without KVM; the agent's start and stop deadlines are multiplied by it. A bad value
/// is refused by [`preflight`], before any agent starts; here it counts as 1.
pub fn time_scale() -> u32 {
    parse_time_scale().unwrap_or(1)
}

fn parse_time_scale() -> Result<u32, String> {
    let bad = |v: &dyn std::fmt::Debug| {
        format!("{TIME_SCALE_VAR}={v:?}: expected a whole number from 1 to 100")
    };
    match env::var(TIME_SCALE_VAR) {
        Err(env::VarError::NotPresent) => Ok(1),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n @ 1..=100) => Ok(n),
            _ => Err(bad(&v)),
        },
        Err(env::VarError::NotUnicode(v)) => Err(bad(&v)),
    }
}

/// Checks that the agent can run at all (root, a built binary) and returns its binary.
pub fn preflight() -> Result<PathBuf, String> {
    // A misconfiguration, not a missing capability: never a skip.
    if let Err(e) = parse_time_scale() {
        panic!("{e}");
    }
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
    Ok(bin)
}

/// The agent process, its directory (output, ready file, stderr) and the thread that spawned it.
pub(crate) struct AgentProcess {
    child: Mutex<Child>,
    dir: TempDir,
    output: PathBuf,
    stderr: PathBuf,
    keep_hint: &'static str,
    /// Dropping this lets the spawning thread end. That thread must outlive the agent: the
    /// agent's parent-death signal fires when the thread that forked it exits, so it is not tied
    /// to whichever test thread happened to start it, yet still dies if the test binary does.
    keeper_stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl AgentProcess {
    /// Launches `bin run --output file:<dir>/<output> --ready-file <dir>/ready ARGS...` and waits
    /// for its ready file. The error says why it cannot run.
    pub(crate) fn launch(bin: &Path, launch: Launch) -> Result<Self, String> {
        let dir = TempDir::try_new(launch.dir_label)
            .map_err(|e| format!("cannot create the agent's directory: {e}"))?;
        let output = launch
            .output_path
            .clone()
            .unwrap_or_else(|| dir.join(launch.output_name));
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
            .arg("--control-socket")
            .arg(dir.join("control.sock"))
            .args(&launch.args)
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
        let described = format!("{cmd:?}");

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
            Ok(Err(e)) => return Err(format!("cannot start {described}: {e}")),
            Err(_) => return Err("the agent's keeper thread died".to_owned()),
        };
        let agent = Self {
            child: Mutex::new(child),
            dir,
            output,
            stderr,
            keep_hint: launch.keep_hint,
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
                    "the agent exited before it was ready ({}): {}\ncommand: {described}\n\
                     its stderr:\n{}",
                    describe(status),
                    self.stderr_first_line(),
                    self.stderr_excerpt()
                ));
            }
            let timeout = READY_TIMEOUT * time_scale();
            if started.elapsed() >= timeout {
                return Err(format!(
                    "the agent did not create its ready file within {timeout:?}: {}\n\
                     command: {described}\nits stderr:\n{}",
                    self.stderr_first_line(),
                    self.stderr_excerpt()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// The agent's control socket (`monitor learn --control-socket`).
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Where the agent writes its output.
    pub(crate) fn output(&self) -> &Path {
        &self.output
    }

    /// What to do to look closer after a timeout: where the agent's directory is.
    pub(crate) fn keep_hint(&self) -> String {
        format!(
            "(set MONITOR_TEST_KEEP=1 to keep the agent's directory {}{})",
            self.dir.path().display(),
            self.keep_hint
        )
    }

    /// The agent's exit status, once it has exited.
    pub(crate) fn exited(&self) -> Option<ExitStatus> {
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

    /// All of the agent's stderr.
    pub(crate) fn stderr_full(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// The start and the end of the agent's stderr.
    pub(crate) fn stderr_excerpt(&self) -> String {
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

    /// Sends `signal` to the agent.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        let pid = lock(&self.child).id();
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }

    /// SIGKILL, as a crash would: no shutdown work at all.
    pub(crate) fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let timeout = STOP_TIMEOUT * time_scale();
        match terminate(child, timeout) {
            Stopped::Exited(status) if !status.success() => warn(&format!(
                "WARNING: the agent exited with {} after SIGTERM",
                describe(status)
            )),
            Stopped::Killed => warn(&format!(
                "WARNING: the agent did not exit within {timeout:?} of SIGTERM; killed it"
            )),
            Stopped::Already | Stopped::Exited(_) => {}
        }
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
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
