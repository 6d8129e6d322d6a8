//! An agent of the test's own: started with its rules and extra arguments, stopped, reloaded
//! or killed by the test, its alerts read from its output file.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Finished, Proc, TIMEOUT, TempDir, agent_binary};

/// How long the agent may take to load and attach.
const START: Duration = Duration::from_secs(60);

pub struct OwnAgent {
    proc: Proc,
    pub dir: TempDir,
    output: PathBuf,
}

impl OwnAgent {
    /// `monitor run --rules RULES ARGS` with its output, ready file and spool in a directory of
    /// its own; waits until it is ready. `Err`: it exited first, with its stderr.
    pub fn start(rules: &Path, args: &[&str], spool: &Path) -> Result<Self, Finished> {
        let dir = TempDir::new("enforce-agent");
        let output = dir.join("output.jsonl");
        let ready = dir.join("ready");
        let mut proc = Proc::spawn(
            Command::new(agent_binary())
                .args(["run", "--stats-interval", "0", "--alert-fold-secs", "0"])
                .args(["--no-control-socket", "--rules"])
                .arg(rules)
                .arg("--output")
                .arg(format!("file:{}", output.display()))
                .arg("--ready-file")
                .arg(&ready)
                .arg("--spool-dir")
                .arg(spool)
                .args(args),
        );
        let deadline = Instant::now() + START;
        while !ready.exists() {
            if !proc_running(proc.pid()) || Instant::now() > deadline {
                return Err(proc.finish(TIMEOUT));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { proc, dir, output })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Every alert written so far.
    pub fn alerts(&self) -> Vec<Value> {
        fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "alert")
            .collect()
    }

    /// Waits until `n` alerts of `profile` are out; returns them.
    #[track_caller]
    pub fn wait_alerts(&self, profile: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let got: Vec<Value> = self
                .alerts()
                .into_iter()
                .filter(|a| a["profile"] == profile)
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                assert!(
                    got.len() >= n,
                    "{} of {n} alerts of {profile}: {got:#?}",
                    got.len()
                );
                return got;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.proc.pid() as libc::pid_t, signal) };
    }

    /// SIGTERM, and what it wrote on the way out.
    pub fn stop(mut self) -> Finished {
        self.signal(libc::SIGTERM);
        self.proc.finish(TIMEOUT)
    }

    /// SIGKILL: no clean exit.
    pub fn kill(mut self) -> Finished {
        self.signal(libc::SIGKILL);
        self.proc.finish(TIMEOUT)
    }
}

fn proc_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
