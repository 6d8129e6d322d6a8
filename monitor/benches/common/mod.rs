//! What the agent-driving benchmarks share: root check, a scratch directory with a detection
//! on marker files, and the agent process (`monitor run --watch-all` with that rule), stopped
//! with SIGTERM on drop.

use std::{
    ffi::OsString,
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

/// The running agent; SIGTERM and wait on drop.
pub struct Agent(Child);

impl Agent {
    /// `monitor run --watch-all --alert-fold-secs 0 --stats-interval 0 --rules DIR/rules
    /// --ready-file DIR/ready ARGS`, once it is ready.
    pub fn start(dir: &Path, args: &[OsString], stderr: Stdio) -> Self {
        let ready = dir.join("ready");
        let child = Command::new(monitor_bin())
            .args([
                "run",
                "--no-control-socket",
                "--watch-all",
                "--alert-fold-secs",
                "0",
                "--stats-interval",
                "0",
            ])
            .arg("--rules")
            .arg(dir.join("rules"))
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn monitor");
        let agent = Self(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "monitor not ready in 60 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}
