//! Rules engine benchmark (`cargo bench -p monitor --bench rules`): events per second through
//! `RuleSet::check` on one thread, with one profile of 1,000 allowlist entries (read, write,
//! exec, connect) plus the shipped detections (`rules/` of the repository; a generated set of
//! 20 when it is absent), over a realistic mix of opens (allowed and not), execs, connects,
//! DNS sends, forks and other file operations.
//!
//! A second line reports the same for only the events that produce no finding (the path most
//! events take in production, where nothing is allocated).
//!
//! A third line reports the same mix with Sigma rules loaded beside them: the shipped
//! `rules/sigma/`, or the directories in `BENCH_SIGMA` (colon-separated; e.g. SigmaHQ's
//! `rules/linux/process_creation:rules/linux/file_event:rules/linux/network_connection`).
//!
//! Environment: `BENCH_EVENTS` (events checked per round, default 2,000,000), `BENCH_ROUNDS`
//! (default 5; the best round is reported), `BENCH_GENERATED=1` (use the generated detections
//! even when `rules/` exists), `BENCH_SIGMA` (above).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use monitor::clock::WallTime;
use monitor::rules::{DetectionState, EvalContext, ExecInfo, Kin, Phase, ResolvedNames, RuleSet};
use monitor::sensor::event::{
    Access, Event, EventBody, ExecBody, Family, FileBody, FileOp, ForkBody, NetBody, NetOp,
    Protocol,
};
use monitor_common::EventKind;

const MARKER: &str = "bench-workload-marker";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One profile with `n` allowlist entries: 40% read, 20% write, 20% exec, 20% connect.
fn profile_yaml(n: usize) -> String {
    let mut s = format!("profile: bench\nmatch:\n  argv_contains: [\"{MARKER}\"]\nallow:\n");
    let (reads, writes, execs) = (n * 2 / 5, n / 5, n / 5);
    let connects = n - reads - writes - execs;
    s.push_str("  read:\n");
    for i in 0..reads {
        let p = match i % 5 {
            0 => format!("/opt/app{i}/**"),
            1 => format!("/srv/data/set{i}/*.json"),
            2 => format!("/etc/app/conf{i}.yaml"),
            3 => format!("~/.cache/app{i}/**"),
            _ => format!("/usr/share/app{i}/**/*.py"),
        };
        let _ = writeln!(s, "    - \"{p}\"");
    }
    s.push_str("  write:\n");
    for i in 0..writes {
        let p = match i % 3 {
            0 => format!("/var/log/app{i}/*.log"),
            1 => format!("/tmp/app{i}-*"),
            _ => format!("/srv/out/{i}/**"),
        };
        let _ = writeln!(s, "    - \"{p}\"");
    }
    s.push_str("  exec:\n");
    for i in 0..execs {
        let p = match i % 2 {
            0 => format!("/usr/bin/tool{i}"),
            _ => format!("/opt/app{i}/bin/*"),
        };
        let _ = writeln!(s, "    - \"{p}\"");
    }
    s.push_str("  connect:\n");
    for i in 0..connects {
        let e = match i % 3 {
            0 => format!("{{ host: \"svc{i}.example.com\", port: 443 }}"),
            1 => format!(
                "{{ cidr: \"10.{}.{}.0/24\", port: 5432 }}",
                i / 256,
                i % 256
            ),
            _ => format!("{{ host: \"192.0.2.{}\" }}", i % 250),
        };
        let _ = writeln!(s, "    - {e}");
    }
    s.push_str("  listen:\n    - { port: 4000 }\n");
    s
}

/// A representative detection set for when the repository's `rules/` is absent.
fn generated_detections(dir: &Path) {
    let dets: [(&str, &str); 20] = [
        (
            "cred-ssh",
            "on: [open]\nwhen:\n  path: [\"~/.ssh/id_*\", \"~/.ssh/*.pem\"]\n  access: [read, read_write]\n",
        ),
        (
            "cred-cloud",
            "on: [open]\nwhen:\n  path: [\"~/.aws/credentials\", \"~/.config/gcloud/**\", \"~/.azure/**\"]\n",
        ),
        (
            "cred-kube",
            "on: [open]\nwhen:\n  path: [\"~/.kube/config\", \"/var/run/secrets/kubernetes.io/**\"]\n",
        ),
        (
            "cred-env",
            "on: [open]\nwhen:\n  path: [\"**/.env\", \"**/.env.*\"]\n  access: [read]\n",
        ),
        (
            "shadow",
            "on: [open]\nwhen:\n  path: [\"/etc/shadow\", \"/etc/gshadow\"]\n",
        ),
        (
            "history",
            "on: [open]\nwhen:\n  path: [\"~/.bash_history\", \"~/.zsh_history\", \"~/.psql_history\"]\nexcept:\n  - comm: [bash, zsh]\n",
        ),
        (
            "wallet",
            "on: [open]\nwhen:\n  path: [\"~/.bitcoin/**\", \"~/.ethereum/keystore/**\"]\n",
        ),
        (
            "proc-mem",
            "on: [open]\nwhen:\n  proc_other: [environ, mem, maps]\n",
        ),
        (
            "cron",
            "on: [open, rename]\nwhen:\n  path: [\"/etc/cron*/**\", \"/var/spool/cron/**\"]\n  access: [write, read_write]\n",
        ),
        (
            "systemd",
            "on: [open, rename]\nwhen:\n  path: [\"/etc/systemd/system/**\", \"~/.config/systemd/**\"]\n  access: [write]\n",
        ),
        (
            "shell-rc",
            "on: [open]\nwhen:\n  path: [\"~/.bashrc\", \"~/.profile\", \"/etc/profile.d/**\"]\n  access: [write, read_write]\n",
        ),
        (
            "authorized-keys",
            "on: [open, rename]\nwhen:\n  path: [\"~/.ssh/authorized_keys*\"]\n  access: [write, read_write]\n",
        ),
        (
            "ld-preload",
            "on: [open]\nwhen:\n  path: [\"/etc/ld.so.preload\"]\n  access: [write, read_write]\n",
        ),
        (
            "pth-hook",
            "on: [open]\nwhen:\n  path: [\"**/site-packages/*.pth\", \"**/sitecustomize.py\"]\n  created: true\n",
        ),
        (
            "metadata",
            "on: [connect, send]\nwhen:\n  remote: [\"169.254.169.254\", \"fd00:ec2::254\"]\n",
        ),
        (
            "recon",
            "on: [exec]\nwhen:\n  exe: [\"/usr/bin/whoami\", \"/usr/bin/id\", \"/usr/bin/uname\", \"/usr/bin/hostname\"]\n",
        ),
        (
            "transfer",
            "on: [exec]\nwhen:\n  exe: [\"/usr/bin/curl\", \"/usr/bin/wget\", \"/usr/bin/nc*\", \"/usr/bin/scp\"]\n",
        ),
        ("fileless", "on: [exec]\nwhen:\n  exe_memfd: true\n"),
        (
            "write-exec",
            "type: write_then_exec\nwhen:\n  path: [\"/tmp/**\", \"/dev/shm/**\", \"/var/tmp/**\"]\n",
        ),
        (
            "burst",
            "type: burst\nscope: profiled\non: [fork]\nthreshold: 100\nwindow_ms: 1000\n",
        ),
    ];
    for (id, body) in dets {
        let text = format!(
            "detection: {id}\ndescription: generated {id}\nseverity: high\nmitre: [T1005]\n{body}"
        );
        std::fs::write(dir.join(format!("{id}.yaml")), text).expect("write detection");
    }
}

/// The bench workload resolved no names itself (hosts come from the agent's resolver).
struct NoneResolved;

impl ResolvedNames for NoneResolved {
    fn resolved(&self, _ip: IpAddr, _host: &str) -> bool {
        false
    }
}

fn base(body: EventBody, i: usize) -> Event {
    Event {
        time: WallTime::default(),
        pid: 4242,
        tid: 4242,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        comm: "python3".to_owned(),
        exe: Some("/usr/bin/python3.11".to_owned()),
        cgroup_id: 1,
        container_id: None,
        pod_uid: None,
        container: None,
        pod: None,
        profile: None,
        phase: None,
        killed: false,
        denied: false,
        escaped: Vec::new(),
        body,
        ktime_ns: i as u64 * 2_000,
        start_time_ns: 0,
    }
}

fn file(kind: EventKind, path: &str, access: Option<Access>, i: usize) -> Event {
    let body = FileBody {
        op: FileOp::of(kind).expect("a file kind"),
        path: Some(path.to_owned()),
        new_path: (kind == EventKind::Rename).then(|| format!("{path}.new")),
        access,
        created: Some(false),
        mode: None,
        name: None,
        length: None,
        flags: 0,
        result: 3,
        fd: Some(3),
        repeats: 0,
        path_truncated: false,
        pseudo: false,
    };
    base(EventBody::File(body), i)
}

fn net(kind: EventKind, proto: Protocol, ip: IpAddr, port: u16, i: usize) -> Event {
    let body = NetBody {
        op: NetOp::of(kind).expect("a network kind"),
        family: Some(Family::Inet),
        protocol: Some(proto),
        local_addr: None,
        local_port: Some(40000),
        remote_addr: Some(ip),
        remote_port: Some(port),
        path: None,
        result: 0,
        fd: 7,
        blocked: false,
        ephemeral: false,
        in_progress: false,
    };
    base(EventBody::Net(body), i)
}

fn exec(path: &str, i: usize) -> Event {
    let body = ExecBody {
        filename: path.to_owned(),
        argv: vec![path.to_owned(), "--flag".to_owned(), "value".to_owned()],
        cwd: Some("/app".to_owned()),
        euid: 1000,
        egid: 1000,
        argv_truncated: false,
        exe: Some(path.to_owned()),
    };
    base(EventBody::Exec(body), i)
}

/// The event mix: per 20 events, 8 allowed reads, 2 disallowed reads, 2 writes (1 allowed),
/// 1 exec, 3 connects, 1 DNS send, 1 fork, 1 rename/unlink/chmod, 1 own-/proc read.
fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let j = i / 20;
            match i % 20 {
                0..=3 => file(
                    EventKind::Open,
                    &format!("/opt/app{}/lib/mod{j}.py", (j % 80) * 5),
                    Some(Access::Read),
                    i,
                ),
                4 => file(
                    EventKind::Open,
                    &format!("/home/user/.cache/app{}/blob{j}", (j % 80) * 5 + 3),
                    Some(Access::Read),
                    i,
                ),
                5 => file(
                    EventKind::Open,
                    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
                    Some(Access::Read),
                    i,
                ),
                6 => file(
                    EventKind::Open,
                    &format!("/usr/share/app{}/pkg/sub/m{j}.py", (j % 80) * 5 + 4),
                    Some(Access::Read),
                    i,
                ),
                7 => file(EventKind::Open, "/etc/resolv.conf", Some(Access::Read), i),
                8 => file(
                    EventKind::Open,
                    &format!("/home/user/docs/report{j}.txt"),
                    Some(Access::Read),
                    i,
                ),
                9 => file(EventKind::Open, "/root/.ssh/id_rsa", Some(Access::Read), i),
                10 => file(
                    EventKind::Open,
                    &format!("/var/log/app{}/run.log", (j % 60) * 3),
                    Some(Access::Write),
                    i,
                ),
                11 => file(
                    EventKind::Open,
                    &format!("/tmp/scratch{j}"),
                    Some(Access::Write),
                    i,
                ),
                12 => exec(
                    if j % 2 == 0 {
                        "/usr/bin/tool0"
                    } else {
                        "/usr/bin/curl"
                    },
                    i,
                ),
                13 => net(
                    EventKind::Connect,
                    Protocol::Tcp,
                    IpAddr::V4(Ipv4Addr::new(10, 0, (j % 50) as u8, 9)),
                    5432,
                    i,
                ),
                14 => net(
                    EventKind::Connect,
                    Protocol::Tcp,
                    IpAddr::V4(Ipv4Addr::new(104, 18, 0, (j % 8) as u8)),
                    443,
                    i,
                ),
                15 => net(
                    EventKind::Connect,
                    Protocol::Tcp,
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                    443,
                    i,
                ),
                16 => net(
                    EventKind::Send,
                    Protocol::Udp,
                    IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
                    53,
                    i,
                ),
                17 => base(
                    EventBody::Fork(ForkBody {
                        child_pid: 5000,
                        child_start_time_ns: 0,
                    }),
                    i,
                ),
                18 => file(
                    [EventKind::Rename, EventKind::Unlink, EventKind::Chmod][j % 3],
                    &format!("/srv/out/{}/part{j}", (j % 60) * 3 + 2),
                    None,
                    i,
                ),
                _ => file(
                    EventKind::Open,
                    "/proc/4242/task/4243/stat",
                    Some(Access::Read),
                    i,
                ),
            }
        })
        .collect()
}

fn main() {
    let total = env_usize("BENCH_EVENTS", 2_000_000);
    let rounds = env_usize("BENCH_ROUNDS", 5).max(1);
    let dir = std::env::temp_dir().join(format!("monitor-rules-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("bench-profile.yaml"), profile_yaml(1000)).expect("write profile");
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let mut paths = Vec::new();
    let force_generated = std::env::var_os("BENCH_GENERATED").is_some_and(|v| v == "1");
    let source = if shipped.join("detections").is_dir() && !force_generated {
        paths.push(shipped.join("detections"));
        "shipped"
    } else {
        generated_detections(&dir);
        "generated"
    };
    paths.push(dir.clone());
    let loaded = RuleSet::load(&paths);
    let sigma_dirs: Vec<PathBuf> = match std::env::var("BENCH_SIGMA") {
        Ok(v) if !v.is_empty() => v.split(':').map(PathBuf::from).collect(),
        _ => vec![shipped.join("sigma")],
    };
    let with_sigma = RuleSet::load(&[paths.clone(), sigma_dirs.clone()].concat());
    let _ = std::fs::remove_dir_all(&dir);
    let rules = loaded.unwrap_or_else(|e| panic!("rules failed to load:\n{e}"));
    let with_sigma = with_sigma.unwrap_or_else(|e| panic!("Sigma rules failed to load:\n{e}"));
    let argv = vec!["python3".to_owned(), MARKER.to_owned()];
    let profile = rules.match_profile(&ExecInfo {
        exe: Some("/usr/bin/python3.11"),
        filename: "/usr/bin/python3",
        argv: &argv,
        uid: 1000,
        parent_exe: None,
        container_id: None,
        pod_uid: None,
        container: None,
        pod: None,
        cwd: None,
    });
    assert!(profile.is_some(), "the bench profile matches");
    let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for (i, h) in rules.hosts().into_iter().enumerate() {
        hosts.insert(
            h,
            vec![IpAddr::V4(Ipv4Addr::new(104, 18, 0, (i % 8) as u8))],
        );
    }
    let nameservers = [IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))];
    let ctx = EvalContext {
        profile,
        workload: 1,
        kin: Kin::Workload(1),
        parent_exe: Some("/usr/bin/bash"),
        hosts: &hosts,
        resolved: &NoneResolved,
        phase: Phase::Serving,
        entry_point: false,
        nameservers: &nameservers,
        parent_argv: None,
        host_wide: true,
    };
    let evs = events(20_000);
    let quiet: Vec<Event> = {
        let mut state = DetectionState::new();
        evs.iter()
            .filter(|ev| rules.check(ev, &ctx, &mut state).is_empty())
            .cloned()
            .collect()
    };
    let run_with = |rules: &RuleSet, evs: &[Event]| {
        let (mut best, mut findings, mut alerting) = (0.0f64, 0usize, 0usize);
        for _ in 0..rounds {
            let mut state = DetectionState::new();
            (findings, alerting) = (0, 0);
            let start = Instant::now();
            for ev in evs.iter().cycle().take(total) {
                let f = black_box(rules.check(black_box(ev), &ctx, &mut state));
                findings += f.len();
                alerting += usize::from(!f.is_empty());
            }
            best = best.max(total as f64 / start.elapsed().as_secs_f64());
        }
        (best, findings, alerting)
    };
    let run = |evs: &[Event]| run_with(&rules, evs);
    let (rate, findings, alerting) = run(&evs);
    println!(
        "rules: 1000 profile entries, {} detections ({source}): {rate:.0} events/s \
         (best of {rounds} rounds of {total} events; {:.1}% of events had findings, \
         {findings} findings per round)",
        rules.detection_count(),
        100.0 * alerting as f64 / total as f64,
    );
    let (rate, _, _) = run(&quiet);
    println!(
        "rules: no-finding events only ({} of {} distinct events): {rate:.0} events/s",
        quiet.len(),
        evs.len()
    );
    let (rate, findings, alerting) = run_with(&with_sigma, &evs);
    println!(
        "rules: the same with {} Sigma rules ({}): {rate:.0} events/s ({:.1}% of events had \
         findings, {findings} findings per round)",
        with_sigma.sigma_count(),
        sigma_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        100.0 * alerting as f64 / total as f64,
    );
}
