//! Children the tests start: spawned with their output captured to files, waited for with a
//! deadline, killed on drop if still running.

use std::{
    env,
    ffi::OsString,
    fs::{self, File},
    os::unix::{ffi::OsStringExt as _, process::ExitStatusExt as _},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use crate::{agent::POLL, fs::TempDir};

/// What became of a child asked to stop.
pub(crate) enum Stopped {
    /// It had exited before.
    Already,
    /// It exited within the time given, with this status.
    Exited(ExitStatus),
    /// It did not: it was SIGKILLed.
    Killed,
}

/// SIGTERM, up to `timeout` for the child to exit, then SIGKILL; the child is reaped in every
/// case.
pub(crate) fn terminate(child: &mut Child, timeout: Duration) -> Stopped {
    if !matches!(child.try_wait(), Ok(None)) {
        return Stopped::Already;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Stopped::Exited(status),
            Ok(None) => thread::sleep(POLL),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Stopped::Killed
}

/// A child process started by a test. Dropping it kills and reaps it if it is still running.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    pid: u32,
    program: String,
    output: TempDir,
    status: Option<ExitStatus>,
}

/// A child that has exited, with what it wrote.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Proc {
    /// Spawns `cmd` with stdin from /dev/null and stdout and stderr captured to files.
    #[track_caller]
    pub fn spawn(cmd: &mut Command) -> Self {
        let program = format!("{:?}", cmd.get_program());
        let output = TempDir::new("child-output");
        let stdout = create(output.join("stdout"));
        let stderr = create(output.join("stderr"));
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot start {program}: {e} (command: {cmd:?})"),
        };
        Self {
            pid: child.id(),
            child,
            program,
            output,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit; past the deadline, kills it and panics.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    return status;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                Ok(None) => {
                    let _ = self.child.kill();
                    self.status = self.child.wait().ok();
                    panic!(
                        "{} (pid {}) did not exit within {timeout:?}; killed it.\nstderr:\n{}",
                        self.program,
                        self.pid,
                        self.read("stderr")
                    );
                }
                Err(e) => panic!("waiting for {} (pid {}): {e}", self.program, self.pid),
            }
        }
    }

    /// The child's status and output if it has exited, without waiting.
    pub fn exited(&mut self) -> Option<Finished> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        let status = self.status?;
        Some(Finished {
            status,
            stdout: self.read("stdout"),
            stderr: self.read("stderr"),
        })
    }

    /// What the child has written to its standard error so far.
    pub fn stderr_so_far(&self) -> String {
        self.read("stderr")
    }

    /// Waits for the child to exit and returns its status and output.
    #[track_caller]
    pub fn finish(&mut self, timeout: Duration) -> Finished {
        let status = self.wait(timeout);
        Finished {
            status,
            stdout: self.read("stdout"),
            stderr: self.read("stderr"),
        }
    }

    /// Waits for the child to exit, panics unless it succeeded, and returns its stdout.
    #[track_caller]
    pub fn finish_ok(&mut self, timeout: Duration) -> String {
        let done = self.finish(timeout);
        if !done.status.success() {
            panic!(
                "{} (pid {}) failed: {}\nstdout:\n{}\nstderr:\n{}",
                self.program,
                self.pid,
                describe(done.status),
                done.stdout,
                done.stderr
            );
        }
        done.stdout
    }

    fn read(&self, name: &str) -> String {
        fs::read(self.output.join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read the child's {name}: {e}>"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// "exit code 3" or "killed by signal 9".
pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    }
}

#[track_caller]
fn create(path: PathBuf) -> File {
    match File::create(&path) {
        Ok(file) => file,
        Err(e) => panic!("cannot create {}: {e}", path.display()),
    }
}

/// A command running `script` with python3 (`-I -S -c SCRIPT`); add the script's arguments with
/// `.arg()` (they arrive as `sys.argv[1:]`) rather than formatting data into the script text.
/// The interpreter is `MONITOR_TEST_PYTHON`, else the real binary behind `python3` (not a shim
/// script that would exec through a shell first).
pub fn python(script: &str) -> Command {
    let mut cmd = Command::new(python_bin());
    cmd.args(["-I", "-S", "-c", script]);
    cmd
}

fn python_bin() -> &'static OsString {
    static BIN: OnceLock<OsString> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = env::var_os("MONITOR_TEST_PYTHON").filter(|b| !b.is_empty()) {
            return bin;
        }
        Command::new("python3")
            .args([
                "-I",
                "-S",
                "-c",
                "import sys; sys.stdout.write(sys.executable)",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .ok()
            .filter(|out| out.status.success() && !out.stdout.is_empty())
            .map_or_else(
                || OsString::from("python3"),
                |out| OsString::from_vec(out.stdout),
            )
    })
}
