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
//! The generator of part 2 runs pinned to one core (the last), the agent free on all.
//!
//! Environment: `MONITOR_BIN` (default `target/release/monitor`), `BENCH_ITERS` (loop
//! iterations per sample, default 200000), `BENCH_ROUNDS` (default 5), `BENCH_PERF=FILE`
//! (`perf record` the agent during part 2 into FILE and print where its time goes).

#[allow(dead_code, reason = "this benchmark uses part of the shared set-up")]
mod common;

use std::{
    ffi::{CString, OsString},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running agent (or floor) in its own scratch directory, removed when it stops.
struct Running(Option<common::Monitor>);

impl Running {
    fn start(args: &[&str], tag: &str) -> Self {
        Self::try_start(args, tag).unwrap_or_else(|why| panic!("{why}"))
    }

    /// `Err`: why the command exited before it was ready.
    fn try_start(args: &[&str], tag: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("monitor-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        if args[0] == "run" {
            all.push("--no-control-socket".into());
            all.extend(common::file_output(&dir));
        }
        let stderr = std::fs::File::create(dir.join("stderr")).expect("stderr file");
        match common::Monitor::try_start(&all, &dir, stderr.into()) {
            Ok(monitor) => Ok(Self(Some(monitor))),
            Err(why) => {
                let err = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                Err(format!("monitor {args:?}: {why}: {err}"))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, |m| m.child.id())
    }

    /// Stops the agent and returns its output lines.
    fn stop(mut self) -> String {
        let Some(monitor) = self.0.take() else {
            return String::new();
        };
        let dir = monitor.dir.clone();
        monitor.stop();
        let out = common::output(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(monitor) = self.0.take() {
            let dir = monitor.dir.clone();
            drop(monitor);
            let _ = std::fs::remove_dir_all(dir);
        }
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
    /// The floor with `sys_exit` as a `tp_btf` program (where the kernel loads one).
    FloorTpBtf,
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
        Config::FloorTpBtf => Some(Running::start(&["floor", "--tp-btf"], "floor-tp-btf")),
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
    let mut configs = vec![
        Config::Bare,
        Config::Floor,
        Config::Unwatched,
        Config::Recorded,
        Config::RecordedNoDedupe,
    ];
    // tp_btf loads where the kernel allows BTF-typed tracing programs (not everywhere).
    match Running::try_start(&["floor", "--tp-btf"], "probe-tp-btf") {
        Ok(probe) => {
            drop(probe);
            configs.push(Config::FloorTpBtf);
        }
        Err(why) => println!("tp_btf floor: not loadable on this kernel ({})", why.trim()),
    }
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
    // The load generator gets one core (the last), as the agent's host would give a workload.
    let cpu = pin_to_last_cpu();
    let perf = std::env::var_os("BENCH_PERF").map(|out| Profiler::start(agent.pid(), out));
    let start = Instant::now();
    open_close_loop(&path, n);
    let gen_secs = start.elapsed().as_secs_f64();
    let report = perf.map(Profiler::finish);
    unpin();
    let out = agent.stop();
    let stats = common::final_stats(&out);
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
        "pipeline: {n} opens in {gen_secs:.2} s = {:.0} events/s offered (generator on CPU \
         {cpu}); {mine} of them written ({received} records received in all); kernel drops \
         {drops} ({verdict})",
        n as f64 / gen_secs,
    );
    if let Some(report) = report {
        println!("agent profile during the pipeline run (perf, self time):\n{report}");
    }
}

/// Pins this thread to the last CPU; returns it.
fn pin_to_last_cpu() -> usize {
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    let cpu = cpus - 1;
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    cpu
}

/// Lets this thread run on every CPU again.
fn unpin() {
    // SAFETY: as in `pin_to_last_cpu`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// `perf record` of the agent (`BENCH_PERF=FILE`), for where the pipeline's time goes.
struct Profiler {
    child: Child,
    out: std::ffi::OsString,
}

impl Profiler {
    fn start(pid: u32, out: std::ffi::OsString) -> Self {
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "999",
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf (apt-get install linux-perf)");
        // perf needs a moment to attach.
        std::thread::sleep(Duration::from_millis(500));
        Self { child, out }
    }

    /// Stops recording; `perf report`'s shares by thread (`monitor`: the analysis stage,
    /// `output`: the output stage, `tokio-rt-worker`: the ring buffer's reader), then the top
    /// by shared object and symbol (self time).
    fn finish(mut self) -> String {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let report = |sort: &str, limit: &str, lines: usize| {
            let out = Command::new("perf")
                .args(["report", "--stdio", "--no-children", "-g", "none"])
                .args(["--percent-limit", limit, "--sort", sort, "-i"])
                .arg(&self.out)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .take(lines)
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "by thread:\n{}\nby symbol:\n{}",
            report("comm", "0.5", 8),
            report("dso,sym", "1.5", 30)
        )
    }
}
