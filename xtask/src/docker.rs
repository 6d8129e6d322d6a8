//! The local Docker engine: the image (`cargo xtask image`) is built with it and the container
//! tests run on it. Debian's docker.io installs `dockerd` but, without systemd, nothing starts
//! it: xtask starts it in the background when its socket does not answer.

use std::{
    fs,
    os::unix::net::UnixStream,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::find_in_path;

/// The engine's API socket.
pub const SOCKET: &str = "/var/run/docker.sock";
/// Where a dockerd started by xtask writes its log.
const LOG: &str = "/var/log/monitor-xtask-dockerd.log";
/// How long a starting dockerd may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether the engine accepts connections on its socket.
pub fn answering() -> bool {
    UnixStream::connect(SOCKET).is_ok()
}

/// Starts dockerd when its socket does not answer; returns whether it acted.
pub fn ensure_daemon() -> Result<bool> {
    if answering() {
        return Ok(false);
    }
    let Some(dockerd) = find_in_path("dockerd") else {
        bail!("no dockerd on PATH: install Debian's docker.io (`apt-get install docker.io`)");
    };
    eprintln!(
        "xtask: starting {} in the background (log: {LOG})",
        dockerd.display()
    );
    let log = fs::File::create(LOG).with_context(|| format!("creating {LOG}"))?;
    let err = log
        .try_clone()
        .context("duplicating the dockerd log handle")?;
    // A daemon of the machine, not of this command: its own session, so it outlives xtask and
    // the test run (the images it keeps are the cache a later run reuses).
    let mut cmd = Command::new(&dockerd);
    cmd.stdin(Stdio::null()).stdout(log).stderr(err);
    {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setsid is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", dockerd.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !answering() {
        if let Some(status) = child.try_wait().context("waiting for dockerd")? {
            bail!(
                "dockerd exited ({status}) before answering on {SOCKET}; see {LOG}:\n{}",
                tail(Path::new(LOG))
            );
        }
        if Instant::now() > deadline {
            bail!(
                "dockerd did not answer on {SOCKET} within {}s; see {LOG}",
                START_TIMEOUT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(true)
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
