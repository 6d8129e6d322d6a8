//! Enforcement benchmark (run as root: `cargo bench -p monitor --bench enforce`).
//!
//! This process is the workload: a profile selects it by its executable, allows exactly what
//! its loops do, and is loaded in alert mode or in enforce mode. Three loops (open/close of a
//! file, a new UDP socket connected to a local receiver and one datagram sent, fork + exec of
//! /usr/bin/true) are timed with no
//! agent, under the alert-mode profile and under the enforce-mode profile; configurations are
//! interleaved over rounds and the median per configuration is used, so the ratios come from
//! one run.
//!
//! Environment: `MONITOR_BIN` (default `target/release/monitor`), `BENCH_ITERS` (open and
//! connect iterations per sample, default 100000; exec uses 1/100 of it), `BENCH_ROUNDS`
//! (default 5).

#[allow(dead_code, reason = "this benchmark uses part of the shared set-up")]
mod common;

use std::{
    ffi::{CString, OsString},
    net::UdpSocket,
    process::Command,
    time::Instant,
};

#[derive(Clone, Copy, Debug)]
enum Config {
    NoAgent,
    Alert,
    Enforce,
}

/// The agent with this process's profile in `mode`; stopped with SIGTERM on drop, its scratch
/// directory removed unless `BENCH_KEEP` is set.
struct Agent(Option<common::Monitor>);

impl Agent {
    fn start(mode: &str, port: u16) -> Self {
        let dir =
            std::env::temp_dir().join(format!("monitor-bench-enforce-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules")).expect("rules dir");
        let me = std::env::current_exe().expect("own exe");
        let my_dir = me.parent().expect("exe dir").to_path_buf();
        let monitor = std::fs::canonicalize(common::monitor_bin()).expect("monitor binary");
        std::fs::write(
            dir.join("rules/bench.yaml"),
            format!(
                "profile: bench\nmatch:\n  exe: [{me:?}]\nmode: {mode}\nallow:\n  exec: \
                 [\"/usr/bin/true\", {monitor:?}]\n  read: [\"/etc/**\", \"/usr/**\", \
                 \"/proc/**\", \"/sys/**\", \"/tmp/**\", \"/dev/**\", \"{dir}/**\"]\n  write: \
                 [\"/tmp/**\", \"/dev/**\"]\n  connect:\n    - {{ host: 127.0.0.1, port: {port} }}\n  \
                 listen:\n    - {{ port: {port} }}\n",
                dir = my_dir.display()
            ),
        )
        .expect("profile");
        let mut args: Vec<OsString> = ["run", "--no-control-socket", "--stats-interval", "0"]
            .map(OsString::from)
            .into();
        args.extend(["--rules".into(), dir.join("rules").into()]);
        args.extend(common::file_output(&dir));
        args.extend(["--spool-dir".into(), dir.join("spool").into()]);
        Self(Some(common::Monitor::start(&args, &dir)))
    }

    /// Alerts written (the profile allows the loops: there should be none).
    fn alerts(&self) -> usize {
        self.0.as_ref().map_or(0, |m| {
            common::output(&m.dir)
                .lines()
                .filter(|l| l.contains("\"kind\":\"alert\""))
                .count()
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            let dir = m.dir.clone();
            m.stop();
            if std::env::var_os("BENCH_KEEP").is_none() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

fn per_iter(iters: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

fn open_close(path: &CString) {
    // SAFETY: valid C string; the fd is closed at once.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

fn exec_true() {
    let status = Command::new("/usr/bin/true").status().expect("run true");
    assert!(status.success(), "/usr/bin/true was stopped: {status}");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    common::require_root("enforce");
    let iters = common::env_or("BENCH_ITERS", 100_000usize);
    let rounds = common::env_or("BENCH_ROUNDS", 5usize);
    let path = CString::new("/etc/hostname").expect("c string");
    // A UDP receiver; each iteration connects a new UDP socket to it (the cgroup connect hook)
    // and sends one datagram. UDP leaves no TIME_WAIT behind, so the loop's cost stays flat.
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("receiver");
    let port = receiver.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        while receiver.recv(&mut buf).is_ok() {}
    });
    let connect = || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
        s.connect(("127.0.0.1", port)).expect("allowed connect");
        s.send(b"x").expect("send");
    };
    let configs = [Config::NoAgent, Config::Alert, Config::Enforce];
    let loops = ["open/close", "udp connect+send", "fork+exec"];
    let mut samples = vec![vec![Vec::new(); configs.len()]; loops.len()];
    for round in 0..rounds {
        for (ci, c) in configs.iter().enumerate() {
            let agent = match c {
                Config::NoAgent => None,
                Config::Alert => Some(Agent::start("alert", port)),
                Config::Enforce => Some(Agent::start("enforce", port)),
            };
            per_iter(iters / 10, || open_close(&path));
            let ns = [
                per_iter(iters, || open_close(&path)),
                per_iter(iters, connect),
                per_iter((iters / 100).max(10), exec_true),
            ];
            if let Some(a) = &agent {
                assert_eq!(a.alerts(), 0, "{c:?}: the profile should allow the loops");
            }
            drop(agent);
            eprintln!("round {round} {c:?}: {ns:.0?} ns");
            for (li, v) in ns.iter().enumerate() {
                samples[li][ci].push(*v);
            }
        }
    }
    println!("enforcement cost, {iters} iterations (exec: /100) x {rounds} rounds, medians:");
    for (li, name) in loops.iter().enumerate() {
        let m: Vec<f64> = samples[li].iter_mut().map(|s| median(s)).collect();
        println!(
            "  {name:<14} none {:>9.0} ns  alert x{:.3}  enforce x{:.3}  (enforce/alert x{:.3})",
            m[0],
            m[1] / m[0],
            m[2] / m[0],
            m[2] / m[1]
        );
    }
}
