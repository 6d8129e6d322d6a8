//! Learning benchmark (`cargo bench -p monitor --bench learn`): `monitor learn --from-events`
//! over a recorded workload of 100,000 events shaped like an inference server's start and
//! serving (one Python server importing 5,000 modules from its venv, temp files, DNS answers
//! and connects to providers, a child running `uname`, listens, reads of its config), timed
//! whole, with the peak resident memory of the learning process. No root needed: nothing is
//! loaded in the kernel.
//!
//! Environment: `BENCH_EVENTS` (default 100,000), `BENCH_ROUNDS` (default 5; the median is
//! reported), `MONITOR_BIN`.

#[allow(dead_code, reason = "this benchmark uses part of the shared set-up")]
mod common;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{env_or, monitor_bin};

const PID: u32 = 4242;
const VENV: &str = "/opt/venv/lib/python3.11/site-packages";

/// One JSON line of a recorded event.
fn line(out: &mut String, t_ns: u64, pid: u32, kind: &str, body: &str) {
    let secs = 1_764_660_000 + t_ns / 1_000_000_000;
    let nanos = t_ns % 1_000_000_000;
    let time = chrono_like(secs, nanos);
    let _ = writeln!(
        out,
        r#"{{"kind":"{kind}","time":"{time}","pid":{pid},"tid":{pid},"ppid":1,"uid":0,"gid":0,"comm":"python3","exe":"/usr/bin/python3.11","cgroup_id":1,"container_id":null,"pod_uid":null,{body}}}"#
    );
}

/// RFC 3339 for 2025-12-02 plus `secs` (the date part is fixed: only ordering matters).
fn chrono_like(secs: u64, nanos: u64) -> String {
    let s = secs % 86_400;
    format!(
        "2025-12-02T{:02}:{:02}:{:02}.{nanos:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn open(path: &str, access: &str, created: bool) -> String {
    format!(
        r#""path":"{path}","access":"{access}","created":{created},"flags":0,"result":3,"fd":3"#
    )
}

/// The recording: `n` events, about 1 ms apart.
fn recording(n: usize) -> String {
    let mut out = String::with_capacity(n * 320);
    let mut t = 0u64;
    let mut count = 0usize;
    let mut push = |out: &mut String, pid: u32, kind: &str, body: String| {
        t += 1_000_000;
        line(out, t, pid, kind, &body);
    };
    push(
        &mut out,
        PID,
        "exec",
        r#""filename":"/opt/venv/bin/litellm","argv":["/opt/venv/bin/python3","/opt/venv/bin/litellm","--config","/app/config.yaml"],"cwd":"/app","euid":0,"egid":0"#.to_owned(),
    );
    count += 1;
    let mut i = 0usize;
    while count < n {
        let (kind, body, pid) = match i % 20 {
            0..=14 => (
                "open",
                open(
                    &format!("{VENV}/pkg{}/mod{}.py", i % 500, i % 5000 / 500),
                    "read",
                    false,
                ),
                PID,
            ),
            15 => (
                "open",
                open(
                    &format!("/tmp/tmp{:08x}", i * 2_654_435_761 % 0xffff_ffff),
                    "read_write",
                    true,
                ),
                PID,
            ),
            16 => (
                "dns",
                format!(
                    r#""family":"inet","protocol":"udp","remote_addr":"10.96.0.10","remote_port":53,"query":"provider{}.example","query_type":"A","rcode":"NOERROR","answers":["192.0.2.{}"],"cnames":[],"ttl":60"#,
                    i % 4,
                    i % 4 + 1
                ),
                PID,
            ),
            17 => (
                "connect",
                format!(
                    r#""family":"inet","protocol":"tcp","local_addr":"10.0.0.5","local_port":40000,"remote_addr":"192.0.2.{}","remote_port":443,"path":null,"result":0,"fd":7"#,
                    i % 4 + 1
                ),
                PID,
            ),
            18 => ("open", open("/app/config.yaml", "read", false), PID),
            _ => (
                "open",
                open(&format!("/app/static/f{}.js", i % 40), "read", false),
                PID,
            ),
        };
        push(&mut out, pid, kind, body);
        count += 1;
        if i == 2_000 {
            push(
                &mut out,
                PID,
                "listen",
                r#""family":"inet","protocol":"tcp","local_addr":"0.0.0.0","local_port":4000,"remote_addr":null,"remote_port":null,"path":null,"result":0,"fd":5"#.to_owned(),
            );
            count += 1;
        }
        i += 1;
    }
    out
}

/// Runs the command; returns wall seconds and peak RSS (KiB) of the child.
fn timed(cmd: &mut Command) -> (f64, i64) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run monitor learn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(r, pid, "wait4 failed");
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        panic!("monitor learn failed ({status}): {err}");
    }
    // Reaped by wait4 above: this only closes the handle.
    let _ = child.try_wait();
    (secs, usage.ru_maxrss)
}

fn main() {
    let n: usize = env_or("BENCH_EVENTS", 100_000);
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let dir = std::env::temp_dir().join(format!("monitor-bench-learn-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    let rec = dir.join("recording.jsonl");
    let text = recording(n);
    fs::File::create(&rec)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write the recording");
    let out = dir.join("learned.yaml");
    let mut runs = Vec::new();
    for _ in 0..rounds {
        let _ = fs::remove_file(&out);
        runs.push(timed(
            Command::new(monitor_bin())
                .arg("learn")
                .arg("--from-events")
                .arg(&rec)
                .args(["--program", "litellm", "--out"])
                .arg(&out)
                .arg("--rules")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")),
        ));
    }
    let mut secs: Vec<f64> = runs.iter().map(|r| r.0).collect();
    secs.sort_by(f64::total_cmp);
    let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let profile = fs::read_to_string(&out).unwrap_or_default();
    let entries = profile
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    let median = secs[secs.len() / 2];
    println!(
        "learn --from-events: {n} events ({:.1} MB) in {:.3} s median of {rounds} \
         ({:.0} events/s), peak RSS {:.1} MiB, {entries} entries learned",
        text.len() as f64 / 1e6,
        median,
        n as f64 / median,
        peak as f64 / 1024.0
    );
    let _ = fs::remove_dir_all(&dir);
}
