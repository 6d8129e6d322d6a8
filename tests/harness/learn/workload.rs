//! A workload for learning tests: a small Python server of its own (its file name is its
//! `--program`) that listens, then reads a data file in a loop until told to stop, and waits
//! on it that watch what it did rather than the clock.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{Proc, TIMEOUT, fs::TempDir, random_hex};

/// A workload: `workload-<tag>.py READ_PATH PORT_FILE STOP_FILE [AFTER]`: listens on a free
/// port (written to PORT_FILE), then reads READ_PATH every 50 ms until STOP_FILE exists; with
/// AFTER, it first reads AFTER once before listening (its start-up) and once more 0.3 s after
/// (within the kernel's 1 s window for folding repeated opens: the agent makes the kernel
/// forget the start-up's opens when the workload starts serving).
const WORKLOAD: &str = r#"
import os, socket, sys, time
read_path, port_file, stop_file = sys.argv[1:4]
after = sys.argv[4] if len(sys.argv) > 4 else None
if after:
    open(after).read()
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(1)
with open(port_file + '.tmp', 'w') as f:
    f.write(str(s.getsockname()[1]))
os.rename(port_file + '.tmp', port_file)
if after:
    time.sleep(0.3)
    open(after).read()
deadline = time.time() + 60
while not os.path.exists(stop_file) and time.time() < deadline:
    open(read_path).read()
    time.sleep(0.05)
"#;

/// A workload script of its own (its file name is its `--program`), with the files it uses.
pub struct Workload {
    pub dir: TempDir,
    pub script: PathBuf,
    pub program: String,
    pub read: PathBuf,
}

impl Workload {
    /// Outside the temporary directories, whose generated names learning turns into `*`: the
    /// tests compare exact paths.
    pub fn new(label: &str) -> Self {
        let parent = Path::new("/run/monitor-tests");
        fs::create_dir_all(parent).unwrap();
        let dir = TempDir::new_in(parent, label).expect("a workload directory");
        let program = format!("workload-{}.py", random_hex(4));
        let script = dir.join(&program);
        fs::write(&script, WORKLOAD).unwrap();
        let read = dir.join("data.txt");
        fs::write(&read, "data\n").unwrap();
        Self {
            dir,
            script,
            program,
            read,
        }
    }

    /// Starts it (waiting until it listens); `after` is read at start-up and again after.
    pub fn start(&self, after: Option<&Path>) -> (Proc, PathBuf) {
        let port = self.dir.join(format!("port-{}", random_hex(4)));
        let stop = self.dir.join(format!("stop-{}", random_hex(4)));
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&self.script).arg(&self.read).arg(&port).arg(&stop);
        if let Some(a) = after {
            cmd.arg(a);
        }
        let proc = Proc::spawn(&mut cmd);
        wait_file(&port);
        (proc, stop)
    }
}

#[track_caller]
pub fn wait_file(path: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Read system calls of `pid` so far (`/proc/PID/io`).
fn reads(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("syscr:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until the workload has gone round its read loop a few more times (each round opens
/// and reads the data file), instead of sleeping and hoping.
#[track_caller]
pub fn wait_rounds(proc: &Proc) {
    let start = reads(proc.pid());
    let deadline = Instant::now() + TIMEOUT;
    // A round reads twice (the data, then end of file).
    while reads(proc.pid()) < start + 6 {
        assert!(Instant::now() < deadline, "the workload stopped reading");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a workload and waits for it.
pub fn stop(mut proc: Proc, stop_file: &Path) {
    fs::write(stop_file, "").unwrap();
    proc.finish_ok(TIMEOUT);
}
