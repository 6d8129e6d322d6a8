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
use std::time::{Duration, Instant};

use procfs::ProcError;
use procfs::process::Process;
use serde::Serialize;

use super::container::ContainerIdentity;
pub use super::info::ProcessInfo;
use super::procfs::read_process;
pub use super::procfs::{start_key_from_ns, ticks_per_second};
use crate::identity::Workload;

/// How long an exited process stays in the table.
pub const DEFAULT_EXIT_GRACE: Duration = Duration::from_secs(5);
/// How long a failed `/proc/<pid>` read is remembered before it is tried again.
pub const NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(1);
/// Bound on remembered failed reads.
const NEGATIVE_CACHE_MAX: usize = 4096;

/// Why the process table could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot list the processes in /proc (is procfs mounted at /proc?)")]
    ListProcesses {
        #[source]
        source: ProcError,
    },
}

/// The image an exec sets, as the sensor captured it. An empty `exe` or `cwd` means it was
/// not captured (`exe` becomes unknown, `cwd` keeps its previous value: exec does not change it).
pub struct ExecImage {
    pub exe: String,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub cwd: String,
    pub uid: u32,
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

    /// An exec: replaces the process image. `container: None` keeps the inherited identity.
    /// An exit already seen for this process stays recorded.
    pub fn on_exec(
        &mut self,
        pid: u32,
        start_key: u64,
        ppid: u32,
        image: ExecImage,
        container: Option<ContainerIdentity>,
    ) {
        let ExecImage {
            exe,
            argv,
            argv_truncated,
            cwd,
            uid,
        } = image;
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
        info.argv_truncated = argv_truncated;
        if !cwd.is_empty() {
            info.cwd = Some(cwd);
        }
        info.uid = uid;
        match container {
            Some(c) => {
                // Another container: what the runtime said about the old one no longer holds.
                if c.container_id != info.container.container_id {
                    info.workload = Workload::default();
                }
                info.container = c;
            }
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

    /// What the runtime said about container `id`, for every process in it.
    pub fn set_workload(&mut self, id: &str, workload: &Workload) {
        for e in self.entries.values_mut() {
            if e.info.container.container_id.as_deref() == Some(id) {
                e.info.workload = workload.clone();
            }
        }
    }

    /// What the runtime said about the container of one process (at its exec).
    pub fn set_process_workload(&mut self, pid: u32, start_key: u64, workload: &Workload) {
        if let Some(e) = self.entries.get_mut(&(pid, start_key))
            && e.info.workload != *workload
        {
            e.info.workload = workload.clone();
        }
    }

    /// Ids of the containers the live processes run in (each once).
    pub fn container_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .live()
            .filter_map(|p| p.container.container_id.clone())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
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
}

fn empty_info(pid: u32, start_key: u64, ppid: u32) -> ProcessInfo {
    ProcessInfo {
        pid,
        start_key,
        ppid,
        exe: None,
        argv: Vec::new(),
        argv_truncated: false,
        cwd: None,
        uid: 0,
        container: ContainerIdentity::default(),
        workload: Workload::default(),
        exited: false,
    }
}

/// Copies the parent's image (what fork duplicates) into `child`.
fn inherit_image(child: &mut ProcessInfo, parent: ProcessInfo) {
    child.exe = parent.exe;
    child.argv = parent.argv;
    child.argv_truncated = parent.argv_truncated;
    child.cwd = parent.cwd;
    child.uid = parent.uid;
    child.container = parent.container;
    child.workload = parent.workload;
}

mod bounds;
#[cfg(test)]
mod tests;
