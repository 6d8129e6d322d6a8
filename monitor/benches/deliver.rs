//! Delivery benchmark (run as root: `cargo xtask bench`): alerts per second the running agent
//! delivers through its durable spool to a local syslog receiver over TCP.
//!
//! Runs `monitor run --watch-all --output file:... --output syslog+tcp://127.0.0.1:PORT` with
//! one detection matching creations of marker files, and a receiver in this process that
//! parses RFC 6587 octet-counted frames and collects alert ids. Two phases, one run:
//!
//! - `drain`: the receiver is down while `DELIVER_ALERTS` alerts (default 20,000) are raised,
//!   so they pile up in the spool; then it comes up and the figure is alerts received per
//!   second from the first to the last: the spool-to-syslog rate alone (the time the sink's
//!   retry backoff took to reconnect is reported apart).
//! - `live`: the receiver is up and the same number of alerts is raised as fast as one process
//!   can create files; the figures are alerts per second from the first to the last received,
//!   and from the first file created to the last received (the whole pipeline).
//!
//! Every id must arrive; duplicates (at-least-once) are counted and reported.

#[allow(dead_code, reason = "this benchmark uses part of the shared set-up")]
mod common;

use std::{
    collections::HashSet,
    io::{BufRead as _, BufReader, Read as _},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// What the receiver has seen.
#[derive(Default)]
struct Received {
    ids: HashSet<String>,
    frames: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Reads octet-counted frames (`LEN SP MSG`) until EOF, recording each alert id.
fn serve(conn: TcpStream, seen: &Mutex<Received>) {
    let mut r = BufReader::with_capacity(1 << 16, conn);
    let mut len = Vec::new();
    let mut msg = Vec::new();
    loop {
        len.clear();
        if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
            return;
        }
        let Some(n) = std::str::from_utf8(&len[..len.len() - 1])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            eprintln!(
                "deliver bench: bad frame header {:?}",
                String::from_utf8_lossy(&len)
            );
            return;
        };
        msg.resize(n, 0);
        if r.read_exact(&mut msg).is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&msg);
        let id = text
            .find("\"id\":\"")
            .map(|i| &text[i + 6..])
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
        let now = Instant::now();
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        s.frames += 1;
        s.first.get_or_insert(now);
        s.last = Some(now);
        if let Some(id) = id {
            s.ids.insert(id);
        }
    }
}

/// Listens on `port` and serves every connection until the process ends.
fn start_receiver(port: u16, seen: Arc<Mutex<Received>>) -> Instant {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind receiver");
    let started = Instant::now();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || serve(conn, &seen));
        }
    });
    started
}

/// Creates `n` marker files `<dir>/marker-<tag>-<i>` from one child process.
fn raise(dir: &Path, tag: &str, n: usize) {
    let script = format!(
        "import sys\nfor i in range({n}):\n    open(sys.argv[1] + '/marker-{tag}-%d' % i, 'w').close()\n"
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(dir)
        .status()
        .expect("python3");
    assert!(status.success());
}

/// Alerts of phase `tag` in the output file.
fn written(out: &Path, tag: &str) -> usize {
    let Ok(f) = std::fs::File::open(out) else {
        return 0;
    };
    let needle = format!("/marker-{tag}-");
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with("{\"kind\":\"alert\"") && l.contains(&needle))
        .count()
}

fn wait(what: &str, timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < end,
            "deliver bench: timed out waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

fn main() {
    common::require_root("deliver");
    let n: usize = common::env_or("DELIVER_ALERTS", 20_000);
    let dir = common::scratch("deliver", "deliver-marker");
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = dir.join("out.jsonl");
    let args: Vec<std::ffi::OsString> = vec![
        "--output".into(),
        // No rotation: the phases count alerts in this one file.
        format!("file:{}?max_size=0", out.display()).into(),
        "--output".into(),
        format!("syslog+tcp://127.0.0.1:{port}").into(),
        "--spool-dir".into(),
        dir.join("spool").into(),
    ];
    let agent = common::Agent::start(&dir, &args, Stdio::null());
    let (slow, fast) = (Duration::from_millis(100), Duration::from_millis(2));

    let markers = dir.join("markers");
    let seen = Arc::new(Mutex::new(Received::default()));
    let count = |seen: &Mutex<Received>| seen.lock().unwrap_or_else(|e| e.into_inner()).ids.len();

    // Phase 1, drain: everything is spooled first, then delivered.
    raise(&markers, "drain", n);
    wait(
        "drain alerts written",
        Duration::from_secs(300),
        slow,
        || written(&out, "drain") >= n,
    );
    let up = start_receiver(port, Arc::clone(&seen));
    wait("drain delivery", Duration::from_secs(300), fast, || {
        count(&seen) >= n
    });
    let drain = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(first), Some(last)) = (s.first, s.last) else {
            unreachable!("every alert arrived")
        };
        (
            n as f64 / last.duration_since(first).as_secs_f64().max(1e-9),
            first.duration_since(up),
            s.frames - s.ids.len() as u64,
        )
    };

    // Phase 2, live: the receiver is up while alerts are raised.
    *seen.lock().unwrap_or_else(|e| e.into_inner()) = Received::default();
    let start = Instant::now();
    raise(&markers, "live", n);
    wait("live delivery", Duration::from_secs(300), fast, || {
        count(&seen) >= n
    });
    let live = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        let span = match (s.first, s.last) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let through = s
            .last
            .map_or(0.0, |t| t.duration_since(start).as_secs_f64());
        (
            n as f64 / span.max(1e-9),
            n as f64 / through.max(1e-9),
            s.frames - s.ids.len() as u64,
        )
    };
    let file_alerts = written(&out, "live");
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "delivery, drain ({n} alerts spooled while the syslog receiver was down): {:.0} alerts/s \
         first-to-last received (the sink's retry backoff took {:.1} s to reconnect); {} duplicates",
        drain.0,
        drain.1.as_secs_f64(),
        drain.2
    );
    println!(
        "delivery, live ({n} alerts raised as fast as one process creates files): {:.0} alerts/s \
         first-to-last received, {:.0} alerts/s end to end (from the first file created, so \
         it includes the kernel, rules and spool stages); {} duplicates; {file_alerts} in the \
         file output",
        live.0, live.1, live.2
    );
}
