//! Macro benchmark (run as root: `cargo bench -p monitor --bench build`): a real C project
//! from Debian's sources, GNU awk 5.2.1 (bookworm's `gawk` source package, its upstream
//! tarball), configured and built with `./configure && make -j2` from a fresh tree (the
//! support library, the program and its extensions: the manual is left out, its source is not
//! in the tarball Debian ships):
//! - with no agent;
//! - with the agent recording every process host-wide (`monitor run --watch-all --events`,
//!   every record written as JSON to a file), repeated opens folded in the kernel (1 s);
//! - the same with folding off (`--dedupe-window-ms 0`).
//!
//! Configurations are interleaved over rounds; per configuration the median wall time and the
//! median CPU time of the build (user + system of every process it waited for,
//! `RUSAGE_CHILDREN`), their ratios to no agent, and the agent's own CPU time during the build
//! (from /proc), records written and kernel drops (its final `agent_stats`).
//!
//! The tarball is fetched once from deb.debian.org (curl), checked against the SHA-256 in
//! bookworm's Sources index, and cached in `$MONITOR_BENCH_CACHE` (default
//! `~/.cache/monitor-bench`); `BENCH_SOURCE` names a local copy instead.
//! Environment: `MONITOR_BIN` (default `target/release/monitor`), `BENCH_ROUNDS` (default 3),
//! `BENCH_JOBS` (make's `-j`, default 2).

#[allow(dead_code, reason = "this benchmark uses part of the shared set-up")]
mod common;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

const URL: &str = "http://deb.debian.org/debian/pool/main/g/gawk/gawk_5.2.1.orig.tar.xz";
const SHA256: &str = "2337a0283b180ec1b9c727973a34781c6478b3ae9bcbdcca0a4dc49861d75a65";
const TREE: &str = "gawk-5.2.1";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Config {
    NoAgent,
    Recorded,
    Unfolded,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::NoAgent => "no agent",
            Config::Recorded => "agent, --watch-all --events (folded)",
            Config::Unfolded => "agent, --watch-all --events, folding off",
        }
    }

    fn args(self) -> Option<&'static [&'static str]> {
        match self {
            Config::NoAgent => None,
            Config::Recorded => Some(&["--events", "--dedupe-window-ms", "1000"]),
            Config::Unfolded => Some(&["--events", "--dedupe-window-ms", "0"]),
        }
    }
}

/// One build's figures.
#[derive(Clone, Copy, Default)]
struct Sample {
    wall: f64,
    cpu: f64,
    agent_cpu: f64,
    records: u64,
    drops: u64,
}

/// The source tarball: `BENCH_SOURCE`, or the cached download (fetched and checked once).
fn source() -> PathBuf {
    if let Some(p) = std::env::var_os("BENCH_SOURCE") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("MONITOR_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/monitor-bench")
        });
    std::fs::create_dir_all(&cache).expect("cache dir");
    let file = cache.join("gawk_5.2.1.orig.tar.xz");
    if sha256(&file).as_deref() == Some(SHA256) {
        return file;
    }
    let partial = cache.join("gawk_5.2.1.orig.tar.xz.part");
    let ok = Command::new("curl")
        .args(["-fsSL", "--retry", "3", "-o"])
        .arg(&partial)
        .arg(URL)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "could not download {URL}");
    let got = sha256(&partial);
    assert_eq!(got.as_deref(), Some(SHA256), "{URL}: checksum mismatch");
    std::fs::rename(&partial, &file).expect("cache the tarball");
    file
}

fn sha256(file: &Path) -> Option<String> {
    let out = Command::new("sha256sum").arg(file).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status
        .success()
        .then(|| text.split_whitespace().next().map(str::to_owned))
        .flatten()
}

/// CPU seconds (user + system) of the waited-for children of this process so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage writes the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// CPU seconds (user + system) process `pid` has used so far, from /proc.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `state`.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after `state`.
    (ticks(11) + ticks(12)) / hz
}

/// Starts the agent recording host-wide into `dir/out.jsonl`.
fn start_agent(dir: &Path, args: &[&str]) -> common::Monitor {
    let mut all: Vec<OsString> = ["run", "--no-control-socket", "--watch-all"]
        .iter()
        .chain(args)
        .map(OsString::from)
        .collect();
    all.extend(common::file_output(dir));
    common::Monitor::start(&all, dir)
}

/// Stops the agent; (records written, kernel drops) from its final statistics.
fn stop_agent(agent: common::Monitor) -> (u64, u64) {
    let dir = agent.dir.clone();
    agent.stop();
    let out = common::output(&dir);
    let drops = common::final_stats(&out)["kernel"]["ringbuf_drops"]
        .as_u64()
        .unwrap_or(0);
    (out.lines().count() as u64, drops)
}

/// Runs `cmd` in `dir`, its output to `log`; panics on failure.
fn run(dir: &Path, cmd: &mut Command, log: &Path) {
    let log_file = std::fs::File::create(log).expect("log file");
    let status = cmd
        .current_dir(dir)
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .status()
        .expect("run a build step");
    assert!(status.success(), "{cmd:?} failed: see {}", log.display());
}

fn sample(config: Config, tarball: &Path, jobs: u32, work: &Path) -> Sample {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).expect("work dir");
    run(
        work,
        Command::new("tar").arg("-xJf").arg(tarball),
        &work.join("tar.log"),
    );
    let tree = work.join(TREE);
    let agent = config.args().map(|a| start_agent(work, a));
    let agent_before = agent.as_ref().map_or(0.0, |a| process_cpu(a.child.id()));
    let cpu_before = children_cpu();
    let start = Instant::now();
    run(
        &tree,
        Command::new("/bin/sh").args([
            "-c",
            &format!(
                "./configure -q > /dev/null && make -s -j{jobs} -C support > /dev/null && \
                 make -s -j{jobs} gawk > /dev/null && make -s -j{jobs} -C extension > /dev/null"
            ),
        ]),
        &work.join("build.log"),
    );
    let wall = start.elapsed().as_secs_f64();
    let cpu = children_cpu() - cpu_before;
    let agent_cpu = agent
        .as_ref()
        .map_or(0.0, |a| process_cpu(a.child.id()) - agent_before);
    let (records, drops) = agent.map_or((0, 0), stop_agent);
    let _ = std::fs::remove_dir_all(work);
    Sample {
        wall,
        cpu,
        agent_cpu,
        records,
        drops,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    common::require_root("build");
    let rounds: usize = common::env_or("BENCH_ROUNDS", 3);
    let jobs: u32 = common::env_or("BENCH_JOBS", 2);
    let tarball = source();
    let work = std::env::temp_dir().join(format!("monitor-bench-build-{}", std::process::id()));
    let configs = [Config::NoAgent, Config::Recorded, Config::Unfolded];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    // A warm-up build fills the page cache with the compiler and the tree.
    sample(Config::NoAgent, &tarball, jobs, &work);
    for round in 0..rounds {
        for (i, &c) in configs.iter().enumerate() {
            let s = sample(c, &tarball, jobs, &work);
            eprintln!(
                "round {round}: {}: wall {:.2} s, cpu {:.2} s, agent cpu {:.2} s, {} records, {} drops",
                c.name(),
                s.wall,
                s.cpu,
                s.agent_cpu,
                s.records,
                s.drops
            );
            samples[i].push(s);
        }
    }
    let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
    let (base_wall, base_cpu) = (med(0, |s| s.wall), med(0, |s| s.cpu));
    println!(
        "gawk 5.2.1 (Debian bookworm source): ./configure && make -j{jobs}, {rounds} rounds, medians"
    );
    for (i, c) in configs.iter().enumerate() {
        let (wall, cpu) = (med(i, |s| s.wall), med(i, |s| s.cpu));
        println!(
            "{:<45} wall {wall:7.2} s x{:.3}   build cpu {cpu:7.2} s x{:.3}   agent cpu {:6.2} s   records {:>9}   drops {}",
            c.name(),
            wall / base_wall,
            cpu / base_cpu,
            med(i, |s| s.agent_cpu),
            med(i, |s| s.records as f64) as u64,
            samples[i].iter().map(|s| s.drops).max().unwrap_or(0),
        );
    }
}
