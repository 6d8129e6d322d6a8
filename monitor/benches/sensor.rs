//! Sensor benchmark (run as root: `cargo xtask bench`, or `cargo bench -p monitor --bench sensor`).
//!
//! Reports, all measured in this one run so the machine's noise cancels in the ratios:
//! 1. an open/close loop's cost per iteration bare, with empty programs on the sensor's hooks
//!    (the floor), with the agent running but not recording this process (`monitor run`),
//!    with the agent recording everything (`monitor run --events`, repeated opens folded in
//!    the kernel) and recording every single open (`--dedupe-window-ms 0`); configurations are
//!    interleaved over several rounds and the median per configuration is used;
//! 2. the event rate the pipeline sustains with zero loss: the loop flat out under
//!    `monitor run --events`, counting kernel drops from the agent's final statistics.
//!
//! Environment: `MONITOR_BIN` (default `target/release/monitor`), `BENCH_ITERS` (loop
//! iterations per sample, default 200000), `BENCH_ROUNDS` (default 5).

#[allow(dead_code, reason = "this benchmark uses part of the shared set-up")]
mod common;

use std::{
    ffi::CString,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running agent (or floor), stopped with SIGTERM on drop.
struct Running {
    child: Child,
    dir: PathBuf,
}

impl Running {
    fn start(args: &[&str], tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("monitor-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ready = dir.join("ready");
        let mut cmd = Command::new(common::monitor_bin());
        cmd.args(args).arg("--ready-file").arg(&ready);
        if args[0] == "run" {
            cmd.arg("--no-control-socket")
                .arg("--output")
                .arg(format!("file:{}", dir.join("out.jsonl").display()));
        }
        let stderr = std::fs::File::create(dir.join("stderr")).expect("stderr file");
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn monitor");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
                panic!("monitor {args:?} exited early ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "monitor {args:?} not ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, dir }
    }

    /// Stops the agent and returns its output lines.
    fn stop(mut self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        std::fs::read_to_string(self.dir.join("out.jsonl")).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child; harmless if already gone.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ns per open+close of `path`.
fn open_close_loop(path: &CString, iters: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: valid C string; the fd is closed at once.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Config {
    Bare,
    Floor,
    Unwatched,
    Recorded,
    RecordedNoDedupe,
}

fn sample(config: Config, path: &CString, iters: usize) -> f64 {
    let running = match config {
        Config::Bare => None,
        Config::Floor => Some(Running::start(&["floor"], "floor")),
        Config::Unwatched => Some(Running::start(&["run"], "unwatched")),
        Config::Recorded => Some(Running::start(
            &["run", "--events", "--dedupe-window-ms", "1000"],
            "recorded",
        )),
        Config::RecordedNoDedupe => Some(Running::start(
            &["run", "--events", "--dedupe-window-ms", "0"],
            "recorded-all",
        )),
    };
    open_close_loop(path, iters / 10); // warm up
    let ns = open_close_loop(path, iters);
    drop(running);
    ns
}

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore libtest-style arguments.
    common::require_root("sensor");
    let iters = common::env_or("BENCH_ITERS", 200_000usize);
    let rounds = common::env_or("BENCH_ROUNDS", 5usize);
    let path = CString::new("/etc/hostname").expect("c string");
    let configs = [
        Config::Bare,
        Config::Floor,
        Config::Unwatched,
        Config::Recorded,
        Config::RecordedNoDedupe,
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for round in 0..rounds {
        for (i, c) in configs.iter().enumerate() {
            let ns = sample(*c, &path, iters);
            eprintln!("round {round} {c:?}: {ns:.1} ns/iter");
            samples[i].push(ns);
        }
    }
    let med: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let bare = med[0];
    println!("open/close loop, {iters} iterations x {rounds} rounds (median ns/iteration):");
    for (c, m) in configs.iter().zip(&med) {
        println!(
            "  {:<10} {:>8.1} ns  x{:.3} vs bare",
            format!("{c:?}"),
            m,
            m / bare
        );
    }
    let floor_cost = med[1] - bare;
    let ratio = |m: f64| {
        if floor_cost > 0.0 {
            (m - bare) / floor_cost
        } else {
            f64::NAN
        }
    };
    println!(
        "  unwatched overhead = {:.2}x the floor's (target <= 1.5x); recorded overhead = {:.1}% \
         (target < 30%); recorded without open dedupe = {:.1}%",
        ratio(med[2]),
        (med[3] / bare - 1.0) * 100.0,
        (med[4] / bare - 1.0) * 100.0
    );

    // Sustained event rate with zero loss.
    // Every open is an event here (no dedupe), to load the pipeline.
    let agent = Running::start(
        &[
            "run",
            "--events",
            "--stats-interval",
            "0",
            "--dedupe-window-ms",
            "0",
        ],
        "rate",
    );
    let n = iters * 2;
    let start = Instant::now();
    open_close_loop(&path, n);
    let gen_secs = start.elapsed().as_secs_f64();
    let out = agent.stop();
    let stats = out
        .lines()
        .rev()
        .find(|l| l.contains("\"agent_stats\""))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_default();
    let drops = stats["kernel"]["ringbuf_drops"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let received = stats["received"].as_u64().unwrap_or(0);
    // Every open of this loop must be in the output.
    let me = format!("\"pid\":{},", std::process::id());
    let mine = out
        .lines()
        .filter(|l| l.starts_with("{\"kind\":\"open\"") && l.contains(&me))
        .filter(|l| l.contains("\"path\":\"/etc/hostname\""))
        .count();
    let verdict = if drops == 0 && mine >= n {
        "zero loss"
    } else {
        "LOSS"
    };
    println!(
        "pipeline: {n} opens in {gen_secs:.2} s = {:.0} events/s offered; {mine} of them \
         written ({received} records received in all); kernel drops {drops} ({verdict})",
        n as f64 / gen_secs,
    );
}
