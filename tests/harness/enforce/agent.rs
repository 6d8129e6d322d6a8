//! An agent of the test's own (the harness's [`AgentProcess`]): started with its rules, spool
//! and extra arguments, stopped, reloaded or killed by the test, its alerts read from its
//! output file.

use std::{ffi::OsString, fs, path::Path, thread, time::Duration, time::Instant};

use serde_json::Value;

use crate::{
    TIMEOUT, agent_binary,
    launch::{AgentProcess, Launch},
};

pub struct OwnAgent(AgentProcess);

impl OwnAgent {
    /// `monitor run --rules RULES --spool-dir SPOOL ARGS`, once it is ready. `Err`: why it
    /// did not get there (for an agent that exited, its status and stderr).
    pub fn start(rules: &Path, args: &[&str], spool: &Path) -> Result<Self, String> {
        let mut run_args: Vec<OsString> = ["--stats-interval", "0", "--alert-fold-secs", "0"]
            .map(OsString::from)
            .to_vec();
        run_args.extend([
            "--rules".into(),
            rules.into(),
            "--spool-dir".into(),
            spool.into(),
        ]);
        run_args.extend(args.iter().map(OsString::from));
        AgentProcess::launch(
            &agent_binary(),
            Launch {
                dir_label: "enforce-agent",
                output_name: "output.jsonl",
                output_path: None,
                args: run_args,
                keep_hint: "",
            },
        )
        .map(Self)
    }

    /// Every record written so far (alerts, events, `agent_stats`).
    pub fn records(&self) -> Vec<Value> {
        fs::read_to_string(self.0.output())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Every alert written so far.
    pub fn alerts(&self) -> Vec<Value> {
        self.records()
            .into_iter()
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

    /// All it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.0.stderr_full()
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        self.0.signal(signal);
    }

    /// SIGTERM (SIGKILL past a bound), and all it wrote on stderr.
    pub fn stop(mut self) -> String {
        self.0.stop();
        self.0.stderr_full()
    }

    /// [`Self::stop`], and every record it wrote (its last `agent_stats` among them).
    pub fn stop_with_records(mut self) -> (String, Vec<Value>) {
        self.0.stop();
        (self.0.stderr_full(), self.records())
    }

    /// SIGKILL: no clean exit.
    pub fn kill(mut self) {
        self.0.kill();
    }
}
