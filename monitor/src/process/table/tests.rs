//! Process table tests: synthetic event sequences, and real processes read from `/proc`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use monitor_common::config::ARGV_MAX;

use super::{ExecImage, ProcessInfo, ProcessTable};
use crate::process::container::{ContainerIdentity, RUNTIME_DOCKER};
use crate::process::escape_bytes;
use crate::process::procfs::{split_cmdline, start_key_from_ns, ticks_per_second};
use crate::testutil::Reap;

/// Synthetic pids above any real pid_max, so no test touches a real process by accident.
const P: u32 = 1 << 23;

fn docker(id: char) -> ContainerIdentity {
    ContainerIdentity {
        container_id: Some(id.to_string().repeat(64)),
        pod_uid: None,
        runtime: Some(RUNTIME_DOCKER),
    }
}

fn exec(t: &mut ProcessTable, pid: u32, key: u64, ppid: u32, exe: &str) {
    t.on_exec(
        pid,
        key,
        ppid,
        image(exe, &[exe, "--flag"], "/srv", 1000),
        None,
    );
}

/// An exec's image; `""` for an exe or cwd the sensor did not capture.
fn image(exe: &str, argv: &[&str], cwd: &str, uid: u32) -> ExecImage {
    ExecImage {
        exe: exe.to_owned(),
        argv: argv.iter().map(|&a| a.to_owned()).collect(),
        argv_truncated: false,
        cwd: cwd.to_owned(),
        uid,
    }
}

fn exe_of(t: &ProcessTable, pid: u32) -> Option<&str> {
    t.get(pid).and_then(|p| p.exe.as_deref())
}

#[test]
fn start_key_matches_proc_ticks() {
    let tps = ticks_per_second();
    assert_eq!(
        tps, 100,
        "USER_HZ is 100 on every Linux architecture the monitor supports"
    );
    assert_eq!(start_key_from_ns(1_234_567_890_123), 123_456);
    assert_eq!(start_key_from_ns(9_999_999), 0);
    assert_eq!(start_key_from_ns(10_000_000), 1);
    let me = procfs::process::Process::myself().unwrap().stat().unwrap();
    let ns = me.starttime * (1_000_000_000 / tps) + 9_999_999;
    assert_eq!(start_key_from_ns(ns), me.starttime);
}

#[test]
fn seeding_finds_this_process() {
    let mut t = ProcessTable::new(1 << 16);
    let found = t.seed_from_proc().unwrap();
    assert!(found > 1, "only {found} processes seeded");
    let me = t.get(std::process::id()).expect("own process seeded");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(me.exe, Some(escape_bytes(exe.as_os_str().as_bytes())));
    assert_eq!(me.ppid, std::os::unix::process::parent_id());
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(me.cwd, Some(escape_bytes(cwd.as_os_str().as_bytes())));
    // SAFETY: getuid has no preconditions and cannot fail.
    assert_eq!(me.uid, unsafe { libc::getuid() });
    let start = procfs::process::Process::myself()
        .unwrap()
        .stat()
        .unwrap()
        .starttime;
    assert_eq!(me.start_key, start);
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(me.argv, args);
    assert!(!me.exited);
    // pid 1 is there; kernel threads have no exe.
    assert!(t.get(1).is_some());
    if let Some(kthreadd) = t.get(2).filter(|p| p.ppid == 0) {
        assert_eq!(kthreadd.exe, None);
    }
    assert_eq!(t.stats().entries, t.len());
}

/// spawn() returns once the child's exec has released the old memory map, which is before
/// the kernel has set up the new argv: waits (with a deadline) for it to appear.
fn wait_for_argv(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()) {
        assert!(Instant::now() < deadline, "argv of {pid} never appeared");
        std::thread::yield_now();
    }
}

#[test]
fn lookup_or_load_reads_a_new_process_with_raw_argv() {
    let mut t = ProcessTable::new(1024);
    let child = Command::new("sleep")
        .arg0(OsStr::from_bytes(b"sl\xffeep\\"))
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let child = Reap(child);
    let pid = child.0.id();
    wait_for_argv(pid);
    assert!(t.get(pid).is_none());
    let p = t
        .lookup_or_load(pid)
        .expect("child readable in /proc")
        .clone();
    assert_eq!(p.pid, pid);
    assert_eq!(p.ppid, std::process::id());
    assert_eq!(p.argv, vec!["sl\\xffeep\\\\".to_owned(), "30".to_owned()]);
    assert!(!p.argv_truncated);
    let ancestor = serde_json::to_value(crate::alert::Ancestor::from(&p)).unwrap();
    assert_eq!(
        ancestor.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["argv", "exe", "pid"],
        "no argv_truncated key unless it is true"
    );
    assert!(
        p.exe.as_deref().is_some_and(|e| e.ends_with("sleep")),
        "{:?}",
        p.exe
    );
    assert_eq!(t.stats().proc_loads, 1);
    // Second lookup is served from the table.
    assert!(t.lookup_or_load(pid).is_some());
    assert_eq!(t.stats().proc_loads, 1);
}

#[test]
fn argv_read_from_proc_is_bounded_like_the_kernels() {
    // A process started with a huge command line (a CI runner's `bash -c SCRIPT`, say) is
    // every descendant's ancestor: its argv is cut at ARGV_MAX bytes, as an exec's is.
    let long = "x".repeat(3 * ARGV_MAX);
    // `sh -c 'read x' sh LONG after`: blocks on its stdin (a pipe) until killed.
    let child = Command::new("sh")
        .args(["-c", "read x", "sh", &long, "after"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let child = Reap(child);
    let pid = child.0.id();
    wait_for_argv(pid);
    let mut t = ProcessTable::new(16);
    let p = t.lookup_or_load(pid).expect("child readable in /proc");
    let head: usize = ["sh", "-c", "read x", "sh"]
        .iter()
        .map(|a| a.len() + 1)
        .sum();
    // The long argument is cut mid-way; "after" is gone.
    assert_eq!(p.argv[..4], ["sh", "-c", "read x", "sh"]);
    assert_eq!(p.argv[4..], ["x".repeat(ARGV_MAX - head)]);
    assert!(p.argv_truncated);
    // As an alert's ancestor, it says so.
    let ancestor = serde_json::to_value(crate::alert::Ancestor::from(p)).unwrap();
    assert_eq!(ancestor["argv_truncated"], true);
}

#[test]
fn failed_loads_are_negatively_cached() {
    let mut t = ProcessTable::new(16);
    for _ in 0..100 {
        assert!(t.lookup_or_load(P).is_none());
    }
    assert_eq!(t.stats().proc_load_failures, 1);
    assert!(t.is_empty());
}

#[test]
fn fork_inherits_and_exec_replaces() {
    let mut t = ProcessTable::new(16);
    t.on_exec(
        P,
        10,
        1,
        ExecImage {
            argv_truncated: true,
            ..image("/bin/bash", &["bash"], "/home", 1000)
        },
        Some(docker('a')),
    );
    t.on_fork(P, P + 1, 20);
    let child = t.get(P + 1).unwrap();
    assert_eq!(child.exe.as_deref(), Some("/bin/bash"));
    assert!(child.argv_truncated);
    assert_eq!(child.ppid, P);
    assert_eq!(child.cwd.as_deref(), Some("/home"));
    assert_eq!(child.uid, 1000);
    assert_eq!(child.container, docker('a'));

    t.on_exec(
        P + 1,
        20,
        P,
        image("/usr/bin/curl", &["curl", "x"], "", 1001),
        None,
    );
    let child = t.get(P + 1).unwrap();
    assert_eq!(child.exe.as_deref(), Some("/usr/bin/curl"));
    assert_eq!(child.argv, ["curl", "x"]);
    assert!(!child.argv_truncated);
    // Empty cwd keeps the inherited one; None keeps the inherited container.
    assert_eq!(child.cwd.as_deref(), Some("/home"));
    assert_eq!(child.uid, 1001);
    assert_eq!(child.container, docker('a'));
    // A new identity from the exec event wins.
    t.on_exec(P + 1, 20, P, image("/x", &[], "", 0), Some(docker('b')));
    assert_eq!(t.get(P + 1).unwrap().container, docker('b'));

    t.on_exit(P + 1, 20);
    assert!(t.get(P + 1).unwrap().exited);
    assert!(!t.get(P).unwrap().exited);
}

#[test]
fn fork_after_exec_does_not_clobber() {
    let mut t = ProcessTable::new(16);
    exec(&mut t, P, 10, 1, "/bin/sh");
    exec(&mut t, P + 1, 20, P, "/usr/bin/python3");
    t.on_fork(P, P + 1, 20);
    assert_eq!(exe_of(&t, P + 1), Some("/usr/bin/python3"));
    assert_eq!(t.len(), 2);
}

#[test]
fn exec_of_unknown_process_inherits_parent_container() {
    let mut t = ProcessTable::new(16);
    t.on_exec(P, 10, 1, image("/pause", &[], "/", 0), Some(docker('c')));
    exec(&mut t, P + 1, 20, P, "/app");
    assert_eq!(t.get(P + 1).unwrap().container, docker('c'));
    // Unknown parent: no identity, no panic.
    exec(&mut t, P + 3, 20, P + 2, "/other");
    assert!(t.get(P + 3).unwrap().container.is_empty());
}

#[test]
fn exit_before_exec_and_fork_stays_exited() {
    let mut t = ProcessTable::new(16);
    exec(&mut t, P, 10, 1, "/bin/sh");
    t.on_exit(P + 1, 20);
    assert_eq!(t.stats().unknown_exits, 1);
    exec(&mut t, P + 1, 20, P, "/bin/true");
    t.on_fork(P, P + 1, 20);
    let child = t.get(P + 1).unwrap();
    assert!(child.exited);
    assert_eq!(child.exe.as_deref(), Some("/bin/true"));
    assert_eq!(child.ppid, P);
    // Exit then fork (no exec): the placeholder is filled from the parent.
    t.on_exit(P + 2, 30);
    t.on_fork(P, P + 2, 30);
    let child = t.get(P + 2).unwrap();
    assert!(child.exited);
    assert_eq!(child.exe.as_deref(), Some("/bin/sh"));
}

#[test]
fn events_for_unknown_processes_are_tolerated() {
    let mut t = ProcessTable::new(16);
    t.on_exit(P, 1);
    t.on_exit(P, 1);
    t.on_fork(P + 5, P + 6, 7);
    let orphan = t.get(P + 6).unwrap();
    assert_eq!(orphan.ppid, P + 5);
    assert_eq!(orphan.exe, None);
    // Its exec fills it in.
    exec(&mut t, P + 6, 7, P + 5, "/bin/ls");
    assert_eq!(exe_of(&t, P + 6), Some("/bin/ls"));
    assert_eq!(t.stats().unknown_exits, 1);
}

#[test]
fn pid_reuse_keeps_both_until_grace_ends() {
    let mut t = ProcessTable::new(16);
    exec(&mut t, P, 10, 1, "/old");
    t.on_exit(P, 10);
    exec(&mut t, P, 500, 1, "/new");
    assert_eq!(exe_of(&t, P), Some("/new"));
    assert_eq!(
        t.get_exact(P, 10).and_then(|p| p.exe.as_deref()),
        Some("/old")
    );
    // A late exit of the old process does not touch the new one.
    t.on_exit(P, 10);
    assert!(!t.get(P).unwrap().exited);
    // Late out-of-order exec of the old one does not become "newest".
    exec(&mut t, P, 10, 1, "/old2");
    assert_eq!(exe_of(&t, P), Some("/new"));
}

#[test]
fn exited_entries_expire_after_grace() {
    let mut t = ProcessTable::new(16).with_exit_grace(Duration::ZERO);
    exec(&mut t, P, 10, 1, "/a");
    exec(&mut t, P + 1, 10, 1, "/b");
    t.on_exit(P, 10);
    assert!(t.get(P).is_some(), "kept until the next event");
    t.on_fork(P + 1, P + 2, 11);
    assert!(t.get(P).is_none());
    assert_eq!(t.stats().expired, 1);
    assert_eq!(t.stats().evictions, 0);

    let mut t = ProcessTable::new(16).with_exit_grace(Duration::from_secs(3600));
    exec(&mut t, P, 10, 1, "/a");
    t.on_exit(P, 10);
    t.on_fork(1, P + 2, 11);
    assert!(t.get(P).is_some_and(|p| p.exited));
    assert_eq!(t.stats().exited, 1);
}

#[test]
fn eviction_prefers_exited_then_least_recently_touched() {
    let mut t = ProcessTable::new(3);
    exec(&mut t, P, 1, 1, "/a");
    exec(&mut t, P + 1, 1, 1, "/b");
    exec(&mut t, P + 2, 1, 1, "/c");
    t.on_exit(P + 1, 1);
    // Full: the exited one goes, though /a is older.
    exec(&mut t, P + 3, 1, 1, "/d");
    assert!(t.get(P + 1).is_none());
    assert!(t.get(P).is_some());
    assert_eq!(t.stats().evictions, 1);
    // No exited entry: the least recently touched goes. Using /a as a fork parent touches it.
    t.on_fork(P, P + 4, 2);
    assert!(t.get(P).is_some());
    assert!(t.get(P + 2).is_none(), "/c was touched least recently");
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().evictions, 2);
    // lookup_or_load touches too.
    assert!(t.lookup_or_load(P + 3).is_some());
    exec(&mut t, P + 5, 1, 1, "/e");
    assert!(t.get(P + 3).is_some());
    assert!(t.get(P).is_none());
}

#[test]
fn table_never_exceeds_capacity() {
    let mut t = ProcessTable::new(100);
    for i in 0..10_000u32 {
        t.on_fork(P + i, P + i + 1, u64::from(i) + 1);
        if i % 3 == 0 {
            t.on_exit(P + i / 2, u64::from(i / 2));
        }
        assert!(t.len() <= 100);
    }
    let stats = t.stats();
    assert_eq!(stats.entries, 100);
    assert!(stats.evictions > 9_000, "{stats:?}");
    // Internal indexes shrink with the entries.
    assert_eq!(t.lru.len(), t.len());
    assert!(t.by_pid.values().map(Vec::len).sum::<usize>() == t.len());
    assert!(t.exits.len() <= t.len());
}

#[test]
fn ancestors_walk_is_bounded() {
    let mut t = ProcessTable::new(64);
    exec(&mut t, 1, 0, 0, "/sbin/init");
    exec(&mut t, P, 10, 1, "/usr/sbin/sshd");
    t.on_fork(P, P + 1, 20);
    exec(&mut t, P + 1, 20, P, "/bin/bash");
    t.on_fork(P + 1, P + 2, 30);
    exec(&mut t, P + 2, 30, P + 1, "/usr/bin/python3");
    let names = |v: Vec<&ProcessInfo>| -> Vec<u32> { v.iter().map(|p| p.pid).collect() };
    assert_eq!(names(t.ancestors(P + 2, 10)), [P + 1, P, 1]);
    assert_eq!(names(t.ancestors(P + 2, 2)), [P + 1, P]);
    assert_eq!(names(t.ancestors(P + 2, 0)), Vec::<u32>::new());
    assert!(t.ancestors(P + 99, 10).is_empty());
    // A loop (two entries naming each other as parent) ends.
    exec(&mut t, P + 10, 5, P + 11, "/x");
    exec(&mut t, P + 11, 5, P + 10, "/y");
    assert_eq!(names(t.ancestors(P + 10, 10)), [P + 11]);
    // A parent started after the child is a reused pid, not the parent.
    exec(&mut t, P + 20, 100, 1, "/late");
    exec(&mut t, P + 21, 50, P + 20, "/child");
    assert!(t.ancestors(P + 21, 10).is_empty());
}

#[test]
fn cmdline_splitting_keeps_empty_arguments() {
    assert_eq!(split_cmdline(b"ls\0-l\0\0x\0"), ["ls", "-l", "", "x"]);
    assert_eq!(split_cmdline(b"no-terminator"), ["no-terminator"]);
    assert!(split_cmdline(b"").is_empty());
    assert_eq!(split_cmdline(b"a\xff\0"), ["a\\xff"]);
}
