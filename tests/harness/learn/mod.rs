//! Learning tests' harness: `monitor learn` run as a user does (started with selectors and an
//! output file, ready once its ready file appears, stopped with SIGINT or at the end of its
//! `--duration`, its profile read back), a sentinel that tells when every earlier alert is out
//! (`sentinel`), a small Python workload (`workload`), the litellm 1.82 payload replayed from a planted `.pth` (`attack`), and the
//! whole learn / serve again / attack flow for a real server (`flow`).

mod attack;
mod flow;
mod sentinel;
mod workload;

pub use attack::{ATTACK_RULES, PAYLOAD, Planted};
pub use flow::{FlowAgent, Served, Server, Start, Via, learn_serve_attack};
pub use sentinel::Sentinel;
pub use workload::{Workload, stop, wait_file, wait_rounds};

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{agent::POLL, agent_binary, fs::TempDir};

/// A running `monitor learn`.
pub struct Learn {
    child: Option<Child>,
    dir: TempDir,
    /// Where it writes the profile.
    pub out: PathBuf,
}

/// How a `monitor learn` run ended.
#[derive(Debug)]
pub struct Learned {
    pub success: bool,
    pub stderr: String,
    /// The profile it wrote (empty when it wrote none).
    pub profile: String,
    /// Its directory, where the profile file stays while this lives.
    pub dir: TempDir,
}

impl Learn {
    /// Starts `monitor learn ARGS --out <dir>/OUT_NAME --ready-file <dir>/ready` and waits until
    /// learning has started; panics with its stderr when it exits or is not ready in `timeout`.
    #[track_caller]
    pub fn start<S: AsRef<OsStr>>(args: &[S], out_name: &str, timeout: Duration) -> Self {
        let dir = TempDir::new("learn");
        let out = dir.join(out_name);
        let ready = dir.join("ready");
        let stderr = fs::File::create(dir.join("stderr")).expect("stderr file");
        let child = Command::new(agent_binary())
            .arg("learn")
            .args(args)
            .arg("--out")
            .arg(&out)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start monitor learn");
        let mut learn = Self {
            child: Some(child),
            dir,
            out,
        };
        let deadline = Instant::now() + timeout;
        while !ready.exists() {
            let exited = learn
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "monitor learn did not start learning ({exited:?}); its stderr:\n{}",
                    learn.stderr()
                );
            }
            thread::sleep(POLL);
        }
        learn
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Ends learning with SIGINT and waits (up to `timeout`) for the profile to be written.
    #[track_caller]
    pub fn finish(self, timeout: Duration) -> Learned {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
        }
        self.wait(timeout)
    }

    /// Waits for it to exit by itself (its `--duration`).
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Learned {
        let mut child = self.child.take().expect("not waited yet");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for monitor learn") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "monitor learn did not exit within {timeout:?}; its stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(POLL);
        };
        let stderr = self.stderr();
        let profile = fs::read_to_string(&self.out).unwrap_or_default();
        Learned {
            success: status.success(),
            stderr,
            profile,
            dir: std::mem::replace(&mut self.dir, TempDir::new("learn-done")),
        }
    }
}

impl Drop for Learn {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `monitor ARGS` to completion.
pub fn monitor<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(agent_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run monitor")
}

/// `monitor rules check PATH`: panics with its output unless the rules are valid.
#[track_caller]
pub fn assert_rules_valid(path: &Path) {
    let out = monitor(&[OsStr::new("rules"), OsStr::new("check"), path.as_os_str()]);
    assert!(
        out.status.success(),
        "monitor rules check {} failed:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
