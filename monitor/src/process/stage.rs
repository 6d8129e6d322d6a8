//! The process stage: keeps the process table current from fork/exec/exit events and enriches
//! every event with the process's resolved executable and its container/pod identity.

use super::{
    cgroup::CgroupResolver,
    container::{self, ContainerIdentity},
    table::{ProcessTable, start_key_from_ns},
};
use crate::sensor::{Event, EventBody};

/// Owner of the process table and the cgroup resolver.
pub struct Enricher {
    table: ProcessTable,
    cgroups: Option<CgroupResolver>,
    /// Identities learned from /proc/<pid>/cgroup at exec, by cgroup v2 id: exact even when the
    /// cgroup is brand new and a tree rescan would be rate-limited.
    learned: std::collections::HashMap<u64, ContainerIdentity>,
    duplicate_exits: u64,
}

/// Most cgroup identities remembered from /proc reads.
const LEARNED_MAX: usize = 16 * 1024;

impl Enricher {
    pub fn new(capacity: usize) -> Self {
        let cgroups = match CgroupResolver::new() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "no cgroup v2 hierarchy: container identity from /proc only");
                None
            }
        };
        Self {
            table: ProcessTable::new(capacity),
            cgroups,
            learned: Default::default(),
            duplicate_exits: 0,
        }
    }

    /// Seeds the table from /proc; returns the number of processes found.
    pub fn seed(&mut self) -> usize {
        match self.table.seed_from_proc() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "seeding the process table from /proc failed");
                0
            }
        }
    }

    /// The process table (for lineage and profile matching).
    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Container identity of an exec'ing process: its /proc/<pid>/cgroup (exact, all
    /// hierarchies, v1 included), else the cgroup v2 tree.
    fn exec_identity(&mut self, cgroup_id: u64, pid: u32) -> Option<ContainerIdentity> {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            let id = container::from_proc_cgroup(&text);
            if self.learned.len() >= LEARNED_MAX {
                self.learned.clear();
            }
            self.learned.insert(cgroup_id, id.clone());
            return Some(id);
        }
        self.cgroup_identity(cgroup_id)
    }

    /// Identity of a cgroup v2 id: learned at exec, else resolved from the cgroup tree.
    fn cgroup_identity(&mut self, cgroup_id: u64) -> Option<ContainerIdentity> {
        if let Some(id) = self.learned.get(&cgroup_id) {
            return Some(id.clone());
        }
        let id = self.cgroups.as_mut()?.identity(cgroup_id);
        (id.container_id.is_some() || id.pod_uid.is_some()).then_some(id)
    }

    /// Updates the table from lifecycle events and fills `exe`, `container_id`, `pod_uid`.
    /// Returns false for an event to drop: a second exit of the same process (two last threads
    /// exiting at once can both see the thread group dead).
    pub fn enrich(&mut self, ev: &mut Event) -> bool {
        let key = start_key_from_ns(ev.start_time_ns);
        if let EventBody::Exit(_) = ev.body
            && self.table.get_exact(ev.pid, key).is_some_and(|p| p.exited)
        {
            self.duplicate_exits += 1;
            return false;
        }
        match &ev.body {
            EventBody::Exec(x) => {
                let identity = self.exec_identity(ev.cgroup_id, ev.pid);
                self.table.on_exec(
                    ev.pid,
                    key,
                    ev.ppid,
                    x.exe.clone().unwrap_or_default(),
                    x.argv.clone(),
                    x.cwd.clone().unwrap_or_default(),
                    ev.uid,
                    identity,
                );
            }
            EventBody::Fork(f) => {
                self.table.on_fork(
                    ev.pid,
                    f.child_pid,
                    start_key_from_ns(f.child_start_time_ns),
                );
            }
            EventBody::Exit(_) => self.table.on_exit(ev.pid, key),
            EventBody::File(_) | EventBody::Net(_) => {}
        }
        // The exact process (pid and start time) first: pids are reused.
        let found = match self.table.get_exact(ev.pid, key) {
            Some(p) => Some(p),
            None => self.table.lookup_or_load(ev.pid),
        };
        let (exe, mut container) = match found {
            Some(p) => (p.exe.clone(), Some(p.container.clone())),
            None => (None, None),
        };
        if let EventBody::Exec(x) = &ev.body {
            ev.exe = x.exe.clone();
        } else {
            ev.exe = exe;
        }
        if let Some(id) = self.cgroup_identity(ev.cgroup_id) {
            container = Some(id);
        }
        if let Some(c) = container {
            ev.container_id = c.container_id;
            ev.pod_uid = c.pod_uid;
        }
        true
    }

    /// Second exit events of one process that were dropped.
    pub fn duplicate_exits(&self) -> u64 {
        self.duplicate_exits
    }
}
