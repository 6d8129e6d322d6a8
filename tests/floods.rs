//! Floods the agent must survive with every loss counted: an open flood into a ring buffer
//! made small on purpose (every open of the flooding process missing from the output is a
//! dropped file record the kernel counted against it, exactly), a fork bomb (11,111 processes,
//! about 1,100 alive at once) and 100,000 short-lived processes (the agent keeps up or counts
//! what it lost, its process table stays within its bound, its memory under 256 MiB); and a
//! full disk under a file output (the lines it refuses are counted, whole, and it writes again
//! once there is room). Real processes, real kernel hooks, a real tmpfs; behaviour is asserted,
//! the figures are printed.

use std::{fs, os::unix::process::CommandExt, time::Duration};

use monitor_tests::{
    Proc, TempDir, enforce::OwnAgent, path_str, preflight, python, random_hex, skip_or_fail,
};
use serde_json::Value;

/// One flood at a time: an agent watches every process exec'd until it has matched it, so a
/// second test's processes would add to the first one's exact counts.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The agent's documented bound on resident memory under these floods (README, Limits).
const RSS_BOUND: u64 = 256 * 1024 * 1024;

/// A profile selecting processes with `marker` in their argv: Python may run and read the
/// system, nothing else (so every open of a file of the test is an alert).
fn profile(marker: &str) -> String {
    format!(
        "profile: flood\nmatch:\n  argv_contains: [\"{marker}\"]\nallow:\n  exec: \
         [\"/usr/bin/python3.11\", \"/usr/bin/python3\", \"/usr/bin/dash\"]\n  read: [\"/usr/**\", \"/etc/**\", \
         \"/proc/**\", \"/sys/**\", \"/dev/**\"]\n"
    )
}

/// An agent with the flood profile and `args`, or `None` when it cannot run here (said loudly;
/// a failure under CI).
fn agent(dir: &TempDir, marker: &str, args: &[&str]) -> Option<OwnAgent> {
    if let Err(why) = preflight() {
        skip_or_fail(&why);
        return None;
    }
    let rules = dir.join("rules");
    fs::create_dir_all(&rules).expect("rules dir");
    fs::write(rules.join("flood.yaml"), profile(marker)).expect("profile");
    Some(
        OwnAgent::start(&rules, args, &dir.join("spool"))
            .unwrap_or_else(|e| panic!("the agent did not start: {e}")),
    )
}

/// The last `agent_stats` record, which must be the one written at shutdown.
fn shutdown_stats(records: &[Value]) -> &Value {
    let stats = records
        .iter()
        .rev()
        .find(|r| r["kind"] == "agent_stats")
        .expect("a last agent_stats line");
    assert_eq!(stats["reason"], "shutdown", "{stats}");
    assert_eq!(
        stats["kernel"]["emitted"], stats["received"],
        "every record the kernel sent was read: {stats}"
    );
    assert_eq!(stats["decode_errors"], 0, "{stats}");
    stats
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

const OPENS: u64 = 20_000;

/// `sh -c OPEN_FLOOD MARKER PATH N`: opens PATH N times (a redirection of the `:` builtin: no
/// fork; the shell's own start-up opens are few, where Python's are dozens).
const OPEN_FLOOD: &str = "i=0; while [ \"$i\" -lt \"$2\" ]; do : < \"$1\"; i=$((i + 1)); done";

/// The file-family event kinds.
const FILE_KINDS: [&str; 8] = [
    "open", "unlink", "rename", "chmod", "memfd", "link", "symlink", "truncate",
];

/// File events of process `pid` in the output.
fn file_events_of(records: &[Value], pid: u32) -> u64 {
    records
        .iter()
        .filter(|r| r["pid"] == pid && FILE_KINDS.iter().any(|k| r["kind"] == *k))
        .count() as u64
}

/// The file records the kernel dropped for `pid`, from `agent_stats.kernel
/// .ringbuf_drops_by_process` (the processes with most drops, at most 16: a process absent from
/// a shorter list dropped nothing; the flooding process is the first).
fn file_drops_of(stats: &Value, pid: u32) -> u64 {
    let list = stats["kernel"]["ringbuf_drops_by_process"]
        .as_array()
        .unwrap_or_else(|| panic!("no ringbuf_drops_by_process: {stats}"));
    match list.iter().find(|p| p["pid"] == pid) {
        Some(p) => count(&p["file"]),
        None => {
            assert!(
                list.len() < 16,
                "process {pid} is not listed and the list is full: its drops are unknown: {stats}"
            );
            0
        }
    }
}

#[test]
fn an_open_flood_into_a_small_ring_buffer_counts_every_open_it_loses() {
    let _serial = serial();
    let dir = TempDir::new("flood-opens");
    let marker = format!("flood-{}", random_hex(4));
    let target = dir.join("target.txt");
    fs::write(&target, "x\n").expect("target");
    let flood = |n: u64| {
        let mut p = Proc::spawn(std::process::Command::new("/bin/sh").args([
            "-c",
            OPEN_FLOOD,
            &marker,
            path_str(&target).as_str(),
            &n.to_string(),
        ]));
        p.finish_ok(Duration::from_secs(120));
        p.pid()
    };
    // Every event is written (`--events`, no folding), so each file record of a process is in
    // the output or counted against it as dropped. First the same shell without the loop,
    // under a ring buffer of the default size (it drops nothing, or the list names it): its
    // start-up opens, which the flood's shell makes too.
    let events = ["--events", "--dedupe-window-ms", "0"];
    let Some(baseline) = agent(&dir, &marker, &events) else {
        return;
    };
    let quiet = flood(0);
    let (_, records) = baseline.stop_with_records();
    let stats = shutdown_stats(&records);
    let start_up = file_events_of(&records, quiet) + file_drops_of(stats, quiet);
    // Then the flood into 16 KiB, which holds a few dozen records: the reader cannot keep up,
    // the kernel drops.
    let Some(small) = agent(
        &dir,
        &marker,
        &[&events[..], &["--ring-buffer-size", "16384"]].concat(),
    ) else {
        return;
    };
    let loud = flood(OPENS);
    let (_, records) = small.stop_with_records();
    let stats = shutdown_stats(&records);
    let seen = records
        .iter()
        .filter(|r| r["kind"] == "open" && r["pid"] == loud && r["path"] == *path_str(&target))
        .count() as u64;
    let (written, dropped) = (file_events_of(&records, loud), file_drops_of(stats, loud));
    let k = &stats["kernel"];
    eprintln!(
        "open flood: {OPENS} opens after {start_up} start-up ones, {written} file events \
         written ({seen} of the flood's file), {dropped} counted as dropped for the process; \
         {} file records dropped in all",
        count(&k["ringbuf_drops_by_family"]["file"])
    );
    assert!(dropped > 0, "the small ring buffer overflowed: {stats}");
    assert!(seen > 0, "some opens got through: {stats}");
    assert!(start_up > 0, "the shell opens its libraries: {stats}");
    // Exact: every file record of the flood's process is in the output or counted as its drop.
    assert_eq!(
        written + dropped,
        OPENS + start_up,
        "every open is in the output or counted as dropped: {stats}"
    );
    assert!(
        count(&k["ringbuf_drops_by_family"]["file"]) >= dropped,
        "the process's drops are among the family's: {stats}"
    );
    assert!(
        count(&k["ringbuf_drops"]) >= count(&k["ringbuf_drops_by_family"]["file"]),
        "the families add up to at most the total: {stats}"
    );
}

const PROCESSES: u64 = 100_000;

/// Forks `sys.argv[1]` children that exit at once, one after the other; prints the seconds.
const PROCESS_FLOOD: &str = "import os, sys, time\nt = time.monotonic()\n\
                             for _ in range(int(sys.argv[1])):\n    pid = os.fork()\n    \
                             if pid == 0:\n        os._exit(0)\n    os.waitpid(pid, 0)\n\
                             print(round(time.monotonic() - t, 2))\n";

#[test]
fn a_hundred_thousand_short_lived_processes_are_survived_within_bounds() {
    let _serial = serial();
    let dir = TempDir::new("flood-processes");
    let marker = format!("flood-{}", random_hex(4));
    let Some(agent) = agent(&dir, &marker, &[]) else {
        return;
    };
    let mut flood = Proc::spawn(python(PROCESS_FLOOD).args([&PROCESSES.to_string(), &marker]));
    let secs = flood.finish_ok(Duration::from_secs(600));
    let (_, records) = agent.stop_with_records();
    survived_within_bounds(
        "process flood",
        PROCESSES,
        secs.trim().parse().unwrap_or(f64::NAN),
        shutdown_stats(&records),
    );
}

/// Prints a process flood's figures and asserts what every one must leave: a fork and an exit
/// record per process, each sent or counted as dropped (other processes on the machine only
/// add to both sides), the process table within its bound, resident memory under the bound.
fn survived_within_bounds(what: &str, processes: u64, secs: f64, stats: &Value) {
    let k = &stats["kernel"];
    let table = &stats["process_table"];
    let memory = &stats["memory"];
    eprintln!(
        "{what}: {processes} processes in {secs:.1} s; {} records sent, {} dropped ({} process \
         records); table {} entries of {} ({} evicted, {} expired); peak RSS {} MiB",
        count(&k["emitted"]),
        count(&k["ringbuf_drops"]),
        count(&k["ringbuf_drops_by_family"]["process"]),
        count(&table["entries"]),
        count(&table["capacity"]),
        count(&table["evictions"]),
        count(&table["expired"]),
        count(&memory["peak_rss_bytes"]) / (1024 * 1024)
    );
    assert!(
        count(&k["emitted"]) + count(&k["ringbuf_drops_by_family"]["process"]) >= 2 * processes,
        "every fork and exit was sent or counted: {stats}"
    );
    assert!(
        count(&table["entries"]) <= count(&table["capacity"]),
        "the process table stays within its bound: {stats}"
    );
    assert!(
        count(&memory["peak_rss_bytes"]) < RSS_BOUND,
        "resident memory stays under {RSS_BOUND} bytes: {stats}"
    );
}

/// `sh -c FORK_BOMB MARKER`: a fork bomb that ends: every process forks ten children (each a
/// subshell, no exec), down four generations, and waits for them: 11,111 processes, about
/// 1,100 alive at once, all created within seconds.
const FORK_BOMB: &str = "f() { if [ \"$1\" -gt 0 ]; then for i in 0 1 2 3 4 5 6 7 8 9; do \
                         f $(($1 - 1)) & done; wait; fi; }; f 4";

/// The fork bomb's process group (its first shell's pid), killed on drop: the test failed before
/// the bomb ended. The group outlives its first shell while any subshell lives, so its id is not
/// reused meanwhile (and pids are handed out in sequence up to `pid_max`, millions).
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the process group this test created.
        unsafe { libc::kill(-(self.0 as i32), libc::SIGKILL) };
    }
}

/// Processes the fork bomb creates (the shell itself excluded).
const BOMB_FORKS: u64 = 10 + 100 + 1_000 + 10_000;

#[test]
fn a_fork_bomb_of_ten_thousand_processes_is_survived_with_every_loss_counted() {
    let _serial = serial();
    let dir = TempDir::new("flood-fork-bomb");
    let marker = format!("flood-{}", random_hex(4));
    let Some(agent) = agent(&dir, &marker, &[]) else {
        return;
    };
    // Its own process group, so a failure (a timeout) stops every subshell, not only the first.
    let mut bomb = Proc::spawn(
        std::process::Command::new("/bin/sh")
            .args(["-c", FORK_BOMB, &marker])
            .process_group(0),
    );
    let group = Group(bomb.pid());
    let start = std::time::Instant::now();
    bomb.finish_ok(Duration::from_secs(300));
    let secs = start.elapsed().as_secs_f64();
    // Every process of the group has exited (each waits for its children): nothing to stop.
    std::mem::forget(group);
    let (_, records) = agent.stop_with_records();
    survived_within_bounds("fork bomb", BOMB_FORKS, secs, shutdown_stats(&records));
}

/// Opens every file named in its argv after the first (the marker, first: argv is recorded up
/// to 4 KiB), in order.
const READER: &str = "import sys\nfor p in sys.argv[2:]:\n    open(p).read()\n";

/// Reads `names` (files in `dir`, created here) under the flood profile: one alert each.
fn read_files(dir: &TempDir, marker: &str, names: &[String]) {
    let paths: Vec<String> = names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            fs::write(&p, "x\n").expect("file");
            path_str(&p)
        })
        .collect();
    Proc::spawn(python(READER).arg(marker).args(&paths)).finish_ok(Duration::from_secs(60));
}

fn alerts_in(text: &str) -> usize {
    text.lines()
        .filter(|l| l.contains("\"kind\":\"alert\""))
        .count()
}

#[test]
fn a_full_disk_under_the_file_output_counts_the_lines_it_loses_and_recovers() {
    let _serial = serial();
    let dir = TempDir::new("flood-disk");
    let mount = dir.join("outfs");
    fs::create_dir_all(&mount).expect("mount point");
    let tmpfs = match monitor_tests::TmpfsMount::new(&mount) {
        Ok(m) => m,
        Err(e) => {
            skip_or_fail(&format!("cannot mount a tmpfs for the output: {e}"));
            return;
        }
    };
    let marker = format!("flood-{}", random_hex(4));
    // A second file output on a 4 MiB tmpfs; the agent's usual one has room and keeps all.
    let small = tmpfs.path().join("out.jsonl");
    let output = format!("file:{}", path_str(&small));
    let Some(agent) = agent(&dir, &marker, &["--output", &output]) else {
        return;
    };
    // Until the alert on the file `name` of the test is out.
    let wait_alert = |name: &str| {
        let path = path_str(dir.join(name));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !agent
            .alerts()
            .iter()
            .any(|a| a["event"]["path"] == *path.as_str())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no alert on {path}: {:#?}",
                agent.alerts().last()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    read_files(&dir, &marker, &["before".to_owned()]);
    wait_alert("before");

    // The disk is full: 300 alerts (about 2 KB each) overflow the output's 64 KiB buffer.
    let filler = tmpfs.fill();
    let full: Vec<String> = (0..300).map(|i| format!("full-{i}")).collect();
    read_files(&dir, &marker, &full);
    wait_alert("full-299");

    // Room again: the next alert is written there, after what the buffer kept.
    fs::remove_file(&filler).expect("remove filler");
    read_files(&dir, &marker, &["after".to_owned()]);
    wait_alert("after");
    let (_, records) = agent.stop_with_records();
    let stats = shutdown_stats(&records);
    let lost = count(&stats["local_lines_lost"]);
    let kept = fs::read_to_string(&small).expect("the small output");
    // Every line the output with room got (alerts, the final agent_stats) is on the full disk's
    // output or counted as lost there.
    let all = records.len() as u64;
    let kept_lines = kept.lines().count() as u64;
    eprintln!(
        "full disk: {all} lines ({} alerts), {kept_lines} on the full disk's output ({} alerts), \
         {lost} lost",
        records.iter().filter(|r| r["kind"] == "alert").count(),
        alerts_in(&kept)
    );
    assert!(lost > 0, "the full disk lost lines: {stats}");
    assert_eq!(
        kept_lines + lost,
        all,
        "every line is on the full disk's output or counted as lost: {stats}"
    );
    assert!(
        kept.lines().any(|l| l.contains("/after")),
        "written again once there was room"
    );
    assert!(
        kept.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "no torn line"
    );
}
