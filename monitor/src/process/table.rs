//! The process table: one owner, keyed by (pid, start time).
//!
//! Fed by fork/exec/exit events and seeded from `/proc`. Events reach user space in per-CPU
//! order, not global order, so the table tolerates: events of unknown processes, an exit
//! before the exec or fork of the same process, and a fork after the child's exec (the fork
//! then does not overwrite the exec'd image).
//!
//! **Bounds.** The table holds at most `capacity` entries. Exited entries stay for an exit grace
//! period (late events of the process can still be enriched), then are removed. When the table
//! is full, an insert evicts the entry that exited first, and if none has exited, the entry
//! touched least recently (touched = created or updated by an event, used as a fork parent, or
//! returned by [`ProcessTable::lookup_or_load`]). Evictions are counted in [`TableStats`].

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use procfs::ProcError;
use procfs::process::Process;
use serde::Serialize;

use super::container::{self, ContainerIdentity};
use super::escape_bytes;

/// How long an exited process stays in the table.
pub const DEFAULT_EXIT_GRACE: Duration = Duration::from_secs(5);
/// How long a failed `/proc/<pid>` read is remembered before it is tried again.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(1);
/// Bound on remembered failed reads.
const NEGATIVE_CACHE_MAX: usize = 4096;

const NSEC_PER_SEC: u64 = 1_000_000_000;

/// Why the process table could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot list the processes in /proc (is procfs mounted at /proc?)")]
    ListProcesses {
        #[source]
        source: ProcError,
    },
}

/// What the table knows about one process.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Start time in clock ticks since boot (see [`start_key_from_ns`]).
    pub start_key: u64,
    pub ppid: u32,
    /// Executable path ([`escape_bytes`] form); `None` when unknown or unreadable (kernel
    /// threads).
    pub exe: Option<String>,
    /// Arguments, each in [`escape_bytes`] form.
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    /// Real user id.
    pub uid: u32,
    pub container: ContainerIdentity,
    pub exited: bool,
}

/// Counters for the stats line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub entries: usize,
    pub exited: usize,
    pub capacity: usize,
    /// Entries removed to make room.
    pub evictions: u64,
    /// Exited entries removed after their grace period.
    pub expired: u64,
    /// Processes that could not be read while seeding (other than vanished ones).
    pub seed_errors: u64,
    /// Exit events for processes the table did not know.
    pub unknown_exits: u64,
    /// Processes read from `/proc` by `lookup_or_load`.
    pub proc_loads: u64,
    /// Failed `/proc` reads by `lookup_or_load`.
    pub proc_load_failures: u64,
}

/// Normalises a kernel `start_boottime` (ns) to the clock ticks of `/proc/<pid>/stat` field 22,
/// with the kernel's own arithmetic (`ns / (1e9 / USER_HZ)`), so both give the same key.
pub fn start_key_from_ns(ns: u64) -> u64 {
    ns / (NSEC_PER_SEC / ticks_per_second()).max(1)
}

fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| match procfs::ticks_per_second() {
        0 => 100,
        t => t,
    })
}

type Key = (u32, u64);

/// Where an entry's image (exe, argv, cwd, uid, container) came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Exec,
    Proc,
    Forked,
    /// Image unknown: created by an exit or a fork whose parent was unknown.
    Partial,
}

#[derive(Debug)]
struct Entry {
    info: ProcessInfo,
    origin: Origin,
    /// Position in `lru`.
    touched: u64,
    /// Position in `exits` and when the exit was seen.
    exit: Option<(u64, Instant)>,
}

/// The process table. See the module documentation for bounds and ordering rules.
#[derive(Debug)]
pub struct ProcessTable {
    entries: HashMap<Key, Entry>,
    /// Start keys of each pid's entries, ascending (pids are reused).
    by_pid: HashMap<u32, Vec<u64>>,
    /// Touch order: sequence number -> entry; the first is the least recently touched.
    lru: BTreeMap<u64, Key>,
    /// Exit order: sequence number -> exited entry; the first exited first.
    exits: BTreeMap<u64, Key>,
    seq: u64,
    capacity: usize,
    exit_grace: Duration,
    /// Pids whose `/proc` read failed recently.
    negative: HashMap<u32, Instant>,
    stats: TableStats,
}

impl ProcessTable {
    /// An empty table holding at most `capacity` processes (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_pid: HashMap::new(),
            lru: BTreeMap::new(),
            exits: BTreeMap::new(),
            seq: 0,
            capacity: capacity.max(1),
            exit_grace: DEFAULT_EXIT_GRACE,
            negative: HashMap::new(),
            stats: TableStats::default(),
        }
    }

    /// Sets how long exited processes stay (default [`DEFAULT_EXIT_GRACE`]).
    #[allow(
        dead_code,
        reason = "tuning knob: tests set it, the agent uses the default"
    )]
    pub fn with_exit_grace(mut self, grace: Duration) -> Self {
        self.exit_grace = grace;
        self
    }

    /// Adds every process in `/proc`; returns how many were read. Processes that vanish during
    /// the scan are skipped; other failures are counted in `seed_errors`. Entries already made
    /// from events are kept, since they are newer than `/proc`.
    pub fn seed_from_proc(&mut self) -> Result<usize, ProcessError> {
        let processes = procfs::process::all_processes()
            .map_err(|source| ProcessError::ListProcesses { source })?;
        let mut found = 0;
        for process in processes {
            match process.and_then(|p| read_process(&p)) {
                Ok(info) => {
                    found += 1;
                    self.insert_loaded(info);
                }
                Err(ProcError::NotFound(_)) => {}
                Err(e) => {
                    self.stats.seed_errors += 1;
                    tracing::debug!(error = %e, "cannot read a process from /proc");
                }
            }
        }
        Ok(found)
    }

    /// A fork: the child starts as a copy of its parent's image. If the child is already
    /// known (its exec or exit arrived first), its image is kept.
    pub fn on_fork(&mut self, parent_pid: u32, child_pid: u32, child_start_key: u64) {
        self.expire(Instant::now());
        let parent = self.parent_key(parent_pid, child_start_key);
        if let Some(pk) = parent {
            self.touch(pk);
        }
        let key = (child_pid, child_start_key);
        // Only a new child or a placeholder takes the parent's image.
        let wants_image = self
            .entries
            .get(&key)
            .is_none_or(|e| e.origin == Origin::Partial);
        let inherited = parent
            .filter(|_| wants_image)
            .and_then(|pk| self.entries.get(&pk))
            .map(|p| p.info.clone());
        if let Some(child) = self.entries.get_mut(&key) {
            if child.info.ppid == 0 {
                child.info.ppid = parent_pid;
            }
            if let (Origin::Partial, Some(p)) = (child.origin, inherited) {
                inherit_image(&mut child.info, p);
                child.origin = Origin::Forked;
            }
            self.touch(key);
            return;
        }
        let mut info = empty_info(child_pid, child_start_key, parent_pid);
        let origin = match inherited {
            Some(p) => {
                inherit_image(&mut info, p);
                Origin::Forked
            }
            None => Origin::Partial,
        };
        self.insert(info, origin);
    }

    /// An exec: replaces the process image. An empty `exe` or `cwd` means the sensor did not
    /// capture it (`exe` becomes unknown, `cwd` keeps its previous value: exec does not change
    /// it). `container: None` keeps the inherited identity. An exit already seen for this
    /// process stays recorded.
    #[expect(
        clippy::too_many_arguments,
        reason = "the process stage passes the decoded exec event's fields one by one"
    )]
    pub fn on_exec(
        &mut self,
        pid: u32,
        start_key: u64,
        ppid: u32,
        exe: String,
        argv: Vec<String>,
        cwd: String,
        uid: u32,
        container: Option<ContainerIdentity>,
    ) {
        self.expire(Instant::now());
        let key = (pid, start_key);
        if !self.entries.contains_key(&key) {
            self.insert(empty_info(pid, start_key, ppid), Origin::Partial);
        }
        // The parent's identity, for processes whose own is unknown.
        let parent_container = self
            .parent_key(ppid, start_key)
            .and_then(|pk| self.entries.get(&pk))
            .map(|p| p.info.container.clone());
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let info = &mut entry.info;
        if ppid != 0 {
            info.ppid = ppid;
        }
        info.exe = (!exe.is_empty()).then_some(exe);
        info.argv = argv;
        if !cwd.is_empty() {
            info.cwd = Some(cwd);
        }
        info.uid = uid;
        match container {
            Some(c) => info.container = c,
            None if entry.origin == Origin::Partial => {
                info.container = parent_container.unwrap_or_default();
            }
            None => {}
        }
        entry.origin = Origin::Exec;
        self.touch(key);
    }

    /// An exit: the entry is marked exited and removed after the exit grace period (or
    /// earlier, when room is needed). An exit for an unknown process leaves an exited
    /// placeholder, so that its late fork or exec does not bring it back to life.
    pub fn on_exit(&mut self, pid: u32, start_key: u64) {
        let now = Instant::now();
        self.expire(now);
        let key = (pid, start_key);
        if !self.entries.contains_key(&key) {
            self.stats.unknown_exits += 1;
            self.insert(empty_info(pid, start_key, 0), Origin::Partial);
        }
        self.seq += 1;
        let seq = self.seq;
        if let Some(entry) = self.entries.get_mut(&key)
            && entry.exit.is_none()
        {
            entry.info.exited = true;
            entry.exit = Some((seq, now));
            self.exits.insert(seq, key);
        }
        self.touch(key);
    }

    /// Every live (not exited) process, in no particular order.
    pub fn live(&self) -> impl Iterator<Item = &ProcessInfo> {
        self.entries.values().map(|e| &e.info).filter(|p| !p.exited)
    }

    /// The newest process with this pid (the one started last), exited or not.
    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        let key = self.by_pid.get(&pid)?.last()?;
        self.get_exact(pid, *key)
    }

    /// The process with this pid and start key.
    pub fn get_exact(&self, pid: u32, start_key: u64) -> Option<&ProcessInfo> {
        self.entries.get(&(pid, start_key)).map(|e| &e.info)
    }

    /// Parent, grandparent, ... of `pid` (not `pid` itself), at most `max` of them. The walk
    /// follows `ppid` to the parent that started no later than the child (pids are reused),
    /// and stops at pid 0, at an unknown parent, or at a loop.
    pub fn ancestors(&self, pid: u32, max: usize) -> Vec<&ProcessInfo> {
        let mut out: Vec<&ProcessInfo> = Vec::new();
        let Some(mut current) = self.get(pid) else {
            return out;
        };
        while out.len() < max {
            let ppid = current.ppid;
            if ppid == 0 || ppid == current.pid {
                break;
            }
            let Some(parent) = self
                .parent_key(ppid, current.start_key)
                .and_then(|k| self.entries.get(&k))
                .map(|e| &e.info)
            else {
                break;
            };
            if parent.pid == pid || out.iter().any(|p| p.pid == parent.pid) {
                break;
            }
            out.push(parent);
            current = parent;
        }
        out
    }

    /// The newest entry for `pid`; if the pid is unknown (or only a placeholder), reads
    /// `/proc/<pid>` once. Failed reads are remembered for [`NEGATIVE_CACHE_TTL`] so events of
    /// a vanished process do not hit `/proc` each time.
    pub fn lookup_or_load(&mut self, pid: u32) -> Option<&ProcessInfo> {
        let now = Instant::now();
        self.expire(now);
        let newest = self
            .by_pid
            .get(&pid)
            .and_then(|keys| keys.last())
            .map(|&k| (pid, k));
        let known = newest.filter(|k| {
            self.entries
                .get(k)
                .is_some_and(|e| e.origin != Origin::Partial)
        });
        if let Some(key) = known {
            self.touch(key);
            return self.get_exact(key.0, key.1);
        }
        let recently_failed = self
            .negative
            .get(&pid)
            .is_some_and(|&t| now.duration_since(t) < NEGATIVE_CACHE_TTL);
        if !recently_failed {
            match Process::new(pid.cast_signed()).and_then(|p| read_process(&p)) {
                Ok(info) => {
                    self.stats.proc_loads += 1;
                    self.negative.remove(&pid);
                    self.insert_loaded(info);
                }
                Err(e) => {
                    self.stats.proc_load_failures += 1;
                    tracing::trace!(pid, error = %e, "process not readable in /proc");
                    self.remember_failure(pid, now);
                }
            }
        }
        self.get(pid)
    }

    /// Number of entries (exited ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table holds no entry.
    #[allow(dead_code, reason = "pairs with `len` (clippy::len_without_is_empty)")]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counters so far.
    #[allow(dead_code, reason = "for the agent's stats line, not wired yet")]
    pub fn stats(&self) -> TableStats {
        TableStats {
            entries: self.entries.len(),
            exited: self.exits.len(),
            capacity: self.capacity,
            ..self.stats
        }
    }

    /// Key of the newest entry for `ppid` that started no later than `child_start_key`.
    fn parent_key(&self, ppid: u32, child_start_key: u64) -> Option<Key> {
        let keys = self.by_pid.get(&ppid)?;
        let key = keys.iter().rev().find(|&&k| k <= child_start_key)?;
        Some((ppid, *key))
    }

    /// Adds an entry read from `/proc`, filling a placeholder for the same process.
    fn insert_loaded(&mut self, loaded: ProcessInfo) {
        let key = (loaded.pid, loaded.start_key);
        match self.entries.get_mut(&key) {
            Some(entry) if entry.origin == Origin::Partial => {
                let exited = entry.info.exited;
                entry.info = loaded;
                entry.info.exited = exited;
                entry.origin = Origin::Proc;
                self.touch(key);
            }
            Some(_) => {}
            None => self.insert(loaded, Origin::Proc),
        }
    }

    fn insert(&mut self, info: ProcessInfo, origin: Origin) {
        while self.entries.len() >= self.capacity {
            // Popping first guarantees progress even if the maps ever disagreed.
            let Some((_, victim)) = self.exits.pop_first().or_else(|| self.lru.pop_first()) else {
                break;
            };
            if self.entries.contains_key(&victim) {
                self.remove(victim);
                self.stats.evictions += 1;
            }
        }
        let key = (info.pid, info.start_key);
        self.seq += 1;
        self.lru.insert(self.seq, key);
        let keys = self.by_pid.entry(key.0).or_default();
        let at = keys.partition_point(|&k| k < key.1);
        keys.insert(at, key.1);
        let entry = Entry {
            info,
            origin,
            touched: self.seq,
            exit: None,
        };
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: Key) {
        let Some(entry) = self.entries.remove(&key) else {
            return;
        };
        self.lru.remove(&entry.touched);
        if let Some((seq, _)) = entry.exit {
            self.exits.remove(&seq);
        }
        if let Some(keys) = self.by_pid.get_mut(&key.0) {
            keys.retain(|&k| k != key.1);
            if keys.is_empty() {
                self.by_pid.remove(&key.0);
            }
        }
    }

    fn touch(&mut self, key: Key) {
        self.seq += 1;
        if let Some(entry) = self.entries.get_mut(&key) {
            self.lru.remove(&entry.touched);
            entry.touched = self.seq;
            self.lru.insert(self.seq, key);
        }
    }

    /// Removes exited entries whose grace period is over (oldest exits first).
    fn expire(&mut self, now: Instant) {
        while let Some((&seq, &key)) = self.exits.first_key_value() {
            match self.entries.get(&key).and_then(|e| e.exit) {
                Some((_, at)) if now.duration_since(at) < self.exit_grace => break,
                Some(_) => {
                    self.remove(key);
                    self.stats.expired += 1;
                }
                // Not reachable while the maps agree; never loop on a stale slot.
                None => {
                    self.exits.remove(&seq);
                }
            }
        }
    }

    fn remember_failure(&mut self, pid: u32, now: Instant) {
        if self.negative.len() >= NEGATIVE_CACHE_MAX {
            self.negative
                .retain(|_, &mut t| now.duration_since(t) < NEGATIVE_CACHE_TTL);
            if self.negative.len() >= NEGATIVE_CACHE_MAX {
                self.negative.clear();
            }
        }
        self.negative.insert(pid, now);
    }
}

fn empty_info(pid: u32, start_key: u64, ppid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        start_key,
        ppid,
        exe: None,
        argv: Vec::new(),
        cwd: None,
        uid: 0,
        container: ContainerIdentity::default(),
        exited: false,
    }
}

/// Copies the parent's image (what fork duplicates) into `child`.
fn inherit_image(child: &mut ProcessInfo, parent: ProcessInfo) {
    child.exe = parent.exe;
    child.argv = parent.argv;
    child.cwd = parent.cwd;
    child.uid = parent.uid;
    child.container = parent.container;
}

/// Reads one process from `/proc`. `NotFound` means the process is gone.
fn read_process(p: &Process) -> Result<ProcessInfo, ProcError> {
    let stat = p.stat()?;
    let uid = match p.status() {
        Ok(status) => status.ruid,
        Err(ProcError::NotFound(path)) => return Err(ProcError::NotFound(path)),
        // hidepid or an odd kernel: the owner of /proc/<pid> is the effective uid.
        Err(_) => p.uid()?,
    };
    let argv = match read_relative(p, "cmdline") {
        Ok(raw) => split_cmdline(&raw),
        Err(e) if is_gone(&e) => return Err(ProcError::NotFound(None)),
        Err(_) => Vec::new(),
    };
    let container = read_relative(p, "cgroup")
        .map(|raw| container::from_proc_cgroup(&String::from_utf8_lossy(&raw)))
        .unwrap_or_default();
    let link = |path: std::path::PathBuf| escape_bytes(path.as_os_str().as_bytes());
    Ok(ProcessInfo {
        pid: stat.pid.cast_unsigned(),
        start_key: stat.starttime,
        ppid: stat.ppid.cast_unsigned(),
        exe: p.exe().ok().map(link),
        argv,
        cwd: p.cwd().ok().map(link),
        uid,
        container,
        exited: false,
    })
}

fn read_relative(p: &Process, name: &str) -> io::Result<Vec<u8>> {
    let mut file = p.open_relative(name).map_err(|e| match e {
        ProcError::NotFound(_) => io::Error::from(io::ErrorKind::NotFound),
        ProcError::Io(e, _) => e,
        other => io::Error::other(other.to_string()),
    })?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw)?;
    Ok(raw)
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// `/proc/<pid>/cmdline` is NUL-terminated arguments; empty arguments in the middle are real.
fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(escape_bytes).collect()
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    use super::{ProcessInfo, ProcessTable, split_cmdline, start_key_from_ns, ticks_per_second};
    use crate::process::container::{ContainerIdentity, RUNTIME_DOCKER};
    use crate::process::escape_bytes;

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
            exe.to_owned(),
            vec![exe.to_owned(), "--flag".to_owned()],
            "/srv".to_owned(),
            1000,
            None,
        );
    }

    fn exe_of(t: &ProcessTable, pid: u32) -> Option<&str> {
        t.get(pid).and_then(|p| p.exe.as_deref())
    }

    /// Kills and reaps a spawned child even if the test fails.
    struct Reap(Child);

    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
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
        // spawn() returns once the child's exec has released the old memory map, which is before
        // the kernel has set up the new argv: wait (with a deadline) for it to appear.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()) {
            assert!(Instant::now() < deadline, "argv of {pid} never appeared");
            std::thread::yield_now();
        }
        assert!(t.get(pid).is_none());
        let p = t
            .lookup_or_load(pid)
            .expect("child readable in /proc")
            .clone();
        assert_eq!(p.pid, pid);
        assert_eq!(p.ppid, std::process::id());
        assert_eq!(p.argv, vec!["sl\\xffeep\\\\".to_owned(), "30".to_owned()]);
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
            "/bin/bash".into(),
            vec!["bash".into()],
            "/home".into(),
            1000,
            Some(docker('a')),
        );
        t.on_fork(P, P + 1, 20);
        let child = t.get(P + 1).unwrap();
        assert_eq!(child.exe.as_deref(), Some("/bin/bash"));
        assert_eq!(child.ppid, P);
        assert_eq!(child.cwd.as_deref(), Some("/home"));
        assert_eq!(child.uid, 1000);
        assert_eq!(child.container, docker('a'));

        t.on_exec(
            P + 1,
            20,
            P,
            "/usr/bin/curl".into(),
            vec!["curl".into(), "x".into()],
            String::new(),
            1001,
            None,
        );
        let child = t.get(P + 1).unwrap();
        assert_eq!(child.exe.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(child.argv, ["curl", "x"]);
        // Empty cwd keeps the inherited one; None keeps the inherited container.
        assert_eq!(child.cwd.as_deref(), Some("/home"));
        assert_eq!(child.uid, 1001);
        assert_eq!(child.container, docker('a'));
        // A new identity from the exec event wins.
        t.on_exec(
            P + 1,
            20,
            P,
            "/x".into(),
            Vec::new(),
            String::new(),
            0,
            Some(docker('b')),
        );
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
        t.on_exec(
            P,
            10,
            1,
            "/pause".into(),
            Vec::new(),
            "/".into(),
            0,
            Some(docker('c')),
        );
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
}
