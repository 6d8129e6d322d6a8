//! Alert latency benchmark (run as root: `cargo xtask bench`): time from a kernel event to its
//! alert line in the agent's output file.
//!
//! Runs `monitor run --watch-all` with one detection matching opens of marker files, opens
//! `LATENCY_SAMPLES` distinct markers (default 500) at a steady pace, tails the output and
//! computes, per alert, the wall-clock time at which its line was read minus the kernel
//! timestamp of the triggering event (`event.time`). Prints the median and 99th percentile.

#[allow(dead_code, reason = "this benchmark uses part of the shared set-up")]
mod common;

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Seek as _},
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Parses `2026-11-25T21:00:00.123456789Z` into ns since the epoch.
fn parse_time(s: &str) -> Option<i128> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.timestamp() as i128 * 1_000_000_000 + t.timestamp_subsec_nanos() as i128)
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn main() {
    common::require_root("alert latency");
    let samples: usize = common::env_or("LATENCY_SAMPLES", 500);
    let dir = common::scratch("latency", "latency-marker");
    let markers = dir.join("markers");
    let out = dir.join("out.jsonl");
    let agent = common::Agent::start(
        &dir,
        &["--output".into(), format!("file:{}", out.display()).into()],
        Stdio::inherit(),
    );

    // Reader thread: tails the output, stamps each alert line with the time it was read.
    let (tx, rx) = std::sync::mpsc::channel::<(String, i128)>();
    let out_path = out.clone();
    let reader = std::thread::spawn(move || {
        let mut file = loop {
            if let Ok(f) = std::fs::File::open(&out_path) {
                break f;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let mut pos = 0u64;
        let mut got = 0usize;
        let end = Instant::now() + Duration::from_secs(120);
        let mut buf = String::new();
        while got < samples && Instant::now() < end {
            let _ = file.seek(std::io::SeekFrom::Start(pos));
            let mut r = BufReader::new(&file);
            loop {
                buf.clear();
                match r.read_line(&mut buf) {
                    Ok(n) if n > 0 && buf.ends_with('\n') => {
                        pos += n as u64;
                        let now = wall_ns();
                        let v = serde_json::from_str::<serde_json::Value>(&buf).unwrap_or_default();
                        let t = v["event"]["time"].as_str().and_then(parse_time);
                        if let (true, Some(t)) = (v["kind"] == "alert", t) {
                            let path = v["event"]["path"].as_str().unwrap_or("").to_owned();
                            let _ = tx.send((path, now - t));
                            got += 1;
                        }
                    }
                    _ => break,
                }
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    });

    for i in 0..samples {
        let p = markers.join(format!("marker-{i}"));
        let _ = std::fs::File::create(&p);
        std::thread::sleep(Duration::from_millis(4));
    }
    let _ = reader.join();
    let mut lat: HashMap<String, i128> = HashMap::new();
    for (path, l) in rx.try_iter() {
        lat.entry(path).or_insert(l);
    }
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    let mut v: Vec<f64> = lat.values().map(|ns| *ns as f64 / 1e6).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        println!("alert latency: no alerts received (of {samples})");
        std::process::exit(1);
    }
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "alert latency over {} alerts (of {samples} events): median {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 100 ms)",
        v.len(),
        pct(0.5),
        pct(0.99),
        v[v.len() - 1]
    );
}
