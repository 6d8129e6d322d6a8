//! Long-running children of the fixture: each writes stdout and stderr to one log file, dies with
//! the test binary, and is stopped by the pid it was started with.

use std::{
    fs::{self, File},
    io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{self, Child, Command, ExitStatus, Stdio},
    sync::{Mutex, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::{TAIL_LINES, tail};
use crate::{
    agent::POLL,
    launch::lock,
    process::{Stopped, describe, terminate},
    warn,
};

/// A child started for the fixture. Dropping it stops it (SIGTERM, a bounded wait, SIGKILL).
pub(crate) struct Daemon {
    child: Mutex<Child>,
    pid: u32,
    what: String,
    log: PathBuf,
    /// Dropping this lets the spawning thread end. That thread must outlive the child: the
    /// parent-death signal fires when the thread that forked it exits, so it is not tied to the
    /// test thread that started the child, yet the child still dies with the test binary.
    keeper_stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Starts `cmd` (described as `what` in errors) with stdin from /dev/null and stdout and
    /// stderr appended to `log`.
    pub(crate) fn spawn(what: &str, mut cmd: Command, log: &Path) -> Result<Self, String> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot duplicate {}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let described = format!("{cmd:?}");
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = thread::Builder::new()
            .name(format!("monitor-test-keeper-{what}"))
            .spawn(move || {
                let spawned = cmd.spawn();
                let running = spawned.is_ok();
                if let Err(mpsc::SendError(Ok(mut child))) = spawned_tx.send(spawned) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                if running {
                    // Returns once the sender is dropped, after the child was stopped.
                    let _ = stop_rx.recv();
                }
            })
            .map_err(|e| format!("cannot start a keeper thread for {what}: {e}"))?;
        let child = match spawned_rx.recv() {
            Ok(Ok(child)) => child,
            Ok(Err(e)) => return Err(format!("cannot start {what} ({described}): {e}")),
            Err(_) => return Err(format!("the keeper thread of {what} died")),
        };
        Ok(Self {
            pid: child.id(),
            child: Mutex::new(child),
            what: what.to_owned(),
            log: log.to_path_buf(),
            keeper_stop: Some(stop_tx),
            keeper: Some(keeper),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the child wrote so far.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The end of the child's log, for an error message.
    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log, TAIL_LINES)
    }

    /// The child's exit status, once it has exited.
    pub(crate) fn exited(&self) -> Option<ExitStatus> {
        lock(&self.child).try_wait().ok().flatten()
    }

    /// An error saying that the child exited, with its status and log tail.
    pub(crate) fn died(&self, status: ExitStatus, doing: &str) -> String {
        format!(
            "{} (pid {}) exited ({}) {doing}; its log {}:\n{}",
            self.what,
            self.pid,
            describe(status),
            self.log.display(),
            self.log_tail()
        )
    }

    /// Polls `ready` every `period` until it returns `Ok(true)`; fails when the child exits, when
    /// `ready` fails, or at the deadline, with the child's log tail.
    pub(crate) fn wait_until(
        &self,
        doing: &str,
        timeout: Duration,
        period: Duration,
        mut ready: impl FnMut() -> Result<bool, String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match ready() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last = e,
            }
            if let Some(status) = self.exited() {
                return Err(self.died(status, &format!("while {doing}")));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} (pid {}) was not done {doing} within {timeout:?}{}; its log {}:\n{}",
                    self.what,
                    self.pid,
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(" (last error: {last})")
                    },
                    self.log.display(),
                    self.log_tail()
                ));
            }
            thread::sleep(period);
        }
    }

    /// Waits until the child printed `line` on a line of its own.
    pub(crate) fn wait_for_line(&self, line: &str, timeout: Duration) -> Result<(), String> {
        self.wait_until(&format!("printing {line:?}"), timeout, POLL, || {
            Ok(self.log().lines().any(|l| l.trim() == line))
        })
    }

    /// SIGTERM to the pid started, up to `timeout` for it to exit, then SIGKILL. An error when it
    /// had exited before, or had to be killed.
    pub(crate) fn stop(&mut self, timeout: Duration) -> Result<(), String> {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let result = match child.try_wait() {
            Ok(Some(status)) => Err(self.died(status, "before it was stopped")),
            _ => match terminate(child, timeout) {
                Stopped::Exited(_) => Ok(()),
                Stopped::Already => Err(format!(
                    "{} (pid {}) had exited before it was stopped",
                    self.what, self.pid
                )),
                Stopped::Killed => Err(format!(
                    "{} (pid {}) did not exit within {timeout:?} of SIGTERM: SIGKILLed; its \
                     log:\n{}",
                    self.what,
                    self.pid,
                    self.log_tail()
                )),
            },
        };
        self.release_keeper();
        result
    }

    fn release_keeper(&mut self) {
        self.keeper_stop.take();
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None))
            && let Stopped::Killed = terminate(child, super::STOP_TIMEOUT)
        {
            warn(&format!(
                "WARNING: {} (pid {}) ignored SIGTERM; SIGKILLed it",
                self.what, self.pid
            ));
        }
        self.release_keeper();
    }
}

/// Makes `cmd`'s process get SIGKILL when the thread that forks it exits (`ip netns exec` execs
/// the server, which keeps the setting: `ip` is not set-user-ID).
fn die_with_parent(cmd: &mut Command) {
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
}

/// Runs `cmd` to completion with a deadline (it dies with the test binary), its output in `log`;
/// the error carries the log's tail.
pub(crate) fn run_logged(
    what: &str,
    cmd: Command,
    log: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let mut daemon = Daemon::spawn(what, cmd, log)?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = daemon.exited() {
            daemon.release_keeper();
            return if status.success() {
                Ok(())
            } else {
                // Not `died`: the log's directory is about to go.
                Err(format!(
                    "{what} failed ({}); the end of its output:\n{}",
                    describe(status),
                    daemon.log_tail()
                ))
            };
        }
        if Instant::now() >= deadline {
            let _ = daemon.stop(Duration::from_secs(5));
            return Err(format!(
                "{what} did not finish within {timeout:?}; killed it; the end of its \
                 output:\n{}",
                daemon.log_tail()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}
