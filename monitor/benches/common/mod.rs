//! What the agent-driving benchmarks share: root check, a scratch directory with a detection
//! on marker files, and the agent process (`monitor run --watch-all` with that rule), stopped
//! with SIGTERM on drop.

use std::{
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// `MONITOR_BIN`, else the release build of this workspace.
pub fn monitor_bin() -> PathBuf {
    std::env::var_os("MONITOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/monitor"))
}

/// Exits with a message unless running as root (the agent loads eBPF programs).
pub fn require_root(bench: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{bench} benchmark: must run as root (it loads eBPF programs)");
        std::process::exit(2);
    }
}

/// An environment variable parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh `$TMP/monitor-<label>-<pid>` with `rules/marker.yaml`: a `low` detection named
/// `rule` on opens of `markers/marker-*` in it.
pub fn scratch(label: &str, rule: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("monitor-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
    let markers = dir.join("markers");
    std::fs::create_dir_all(&markers).expect("markers dir");
    std::fs::write(
        dir.join("rules/marker.yaml"),
        format!(
            "detection: {rule}\ndescription: benchmark marker opened\nseverity: low\n\
             mitre: [T1005]\non: [open]\nwhen:\n  path: [\"{}/marker-*\"]\n",
            markers.display()
        ),
    )
    .expect("rule file");
    dir
}

/// A `monitor` process that has written its ready file; SIGKILLed on drop unless stopped.
pub struct Monitor {
    pub child: Child,
    pub dir: PathBuf,
}

impl Monitor {
    /// `monitor ARGS --ready-file DIR/ready`, once ready. `Err`: why it exited before.
    pub fn try_start<S: AsRef<OsStr>>(
        args: &[S],
        dir: &Path,
        stderr: Stdio,
    ) -> Result<Self, String> {
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let mut child = Command::new(monitor_bin())
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn monitor");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "monitor exited before it was ready ({status}); see {}",
                    dir.display()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("monitor not ready in 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
        })
    }

    /// As `try_start`, stderr to `DIR/stderr`; panics when it does not start.
    pub fn start<S: AsRef<OsStr>>(args: &[S], dir: &Path) -> Self {
        let stderr = std::fs::File::create(dir.join("stderr")).expect("stderr file");
        Self::try_start(args, dir, stderr.into()).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Stops it with SIGTERM and waits: it flushes its outputs and writes final statistics.
    pub fn stop(mut self) {
        // SAFETY: plain kill(2) on our own child, not yet reaped (so its pid is still ours).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // `Child::kill` signals only a child not yet reaped (never a reused pid).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--output file:DIR/out.jsonl?max_size=0`: one file, never rotated, so a benchmark counts
/// every line written.
pub fn file_output(dir: &Path) -> [OsString; 2] {
    [
        "--output".into(),
        format!("file:{}?max_size=0", dir.join("out.jsonl").display()).into(),
    ]
}

/// The agent's output in `DIR/out.jsonl` (see [`file_output`]).
pub fn output(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default()
}

/// The last `agent_stats` record in an output (its final statistics, after a stop).
pub fn final_stats(out: &str) -> serde_json::Value {
    out.lines()
        .rev()
        .find(|l| l.contains("\"agent_stats\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default()
}

/// The running agent (`monitor run --watch-all` with a scratch directory's rules); stopped
/// with SIGTERM on drop.
pub struct Agent(Option<Monitor>);

impl Agent {
    /// `monitor run --watch-all --alert-fold-secs 0 --stats-interval 0 --rules DIR/rules
    /// --ready-file DIR/ready ARGS`, once it is ready.
    pub fn start(dir: &Path, args: &[OsString], stderr: Stdio) -> Self {
        let mut all: Vec<OsString> = [
            "run",
            "--no-control-socket",
            "--watch-all",
            "--alert-fold-secs",
            "0",
            "--stats-interval",
            "0",
            "--rules",
        ]
        .map(OsString::from)
        .to_vec();
        all.push(dir.join("rules").into());
        all.extend_from_slice(args);
        Self(Some(
            Monitor::try_start(&all, dir, stderr).unwrap_or_else(|why| panic!("{why}")),
        ))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(monitor) = self.0.take() {
            monitor.stop();
        }
    }
}
