//! The process stage: keeps the process table current from fork/exec/exit events and enriches
//! every event with the process's resolved executable and its container/pod identity: ids
//! from cgroups ([`Enricher::enrich`]), names, image and pod from the container runtime
//! ([`Enricher::identify`], which may hold a new container's events back until the runtime
//! answered; see [`super::runtime`]).

use std::{sync::Arc, time::Instant};

use super::{
    cgroup::CgroupResolver,
    container::{self, ContainerIdentity},
    runtime::{Answer, Identities, Lookup, RuntimeStats},
    table::{ExecImage, ProcessTable, start_key_from_ns},
};
use crate::{
    identity::{PodMeta, Workload},
    sensor::{Event, EventBody},
};

/// Owner of the process table, the cgroup resolver and the runtime identity cache.
pub struct Enricher {
    table: ProcessTable,
    cgroups: Option<CgroupResolver>,
    /// `None` without a container runtime to ask.
    identities: Option<Identities>,
    duplicate_exits: u64,
}

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
            identities: None,
            duplicate_exits: 0,
        }
    }

    /// Names containers through the runtime behind this cache.
    pub fn set_identities(&mut self, identities: Identities) {
        self.identities = Some(identities);
    }

    /// Adds the container, image and pod to an enriched event. Returns `None` when the event
    /// waits for its container's answer (it comes back from [`Self::identity_answered`]).
    pub fn identify(&mut self, mut ev: Event) -> Option<Event> {
        let Some(id) = ev.container_id.clone() else {
            attach(&mut ev, &Workload::default());
            return Some(ev);
        };
        let Some(identities) = self.identities.as_mut() else {
            attach(&mut ev, &Workload::ids_only(Some(&id), None));
            return Some(ev);
        };
        match identities.get(&id, ev.pod_uid.is_some(), Instant::now()) {
            Lookup::Known(w) => {
                if matches!(ev.body, EventBody::Exec(_)) {
                    let key = start_key_from_ns(ev.start_time_ns);
                    self.table.set_process_workload(ev.pid, key, &w);
                }
                attach(&mut ev, &w);
                Some(ev)
            }
            Lookup::Pending => {
                let mut back = identities.park(&id, ev)?;
                attach(&mut back, &Workload::ids_only(Some(&id), None));
                Some(back)
            }
        }
    }

    /// Takes the runtime's answer about a container: its processes in the table learn it,
    /// and the events that waited for it come back, identified, in their order.
    pub fn identity_answered(&mut self, answer: Answer) -> Vec<Event> {
        let Some(identities) = self.identities.as_mut() else {
            return Vec::new();
        };
        let id = answer.id.clone();
        let (workload, mut waiting) = identities.answer(answer, Instant::now());
        self.table.set_workload(&id, &workload);
        for ev in &mut waiting {
            attach(ev, &workload);
        }
        waiting
    }

    /// An answer got before the pipeline runs (containers already running at start).
    pub fn prefill(&mut self, answer: Answer) {
        if let Some(identities) = self.identities.as_mut() {
            identities.count_lookup();
        }
        self.identity_answered(answer);
    }

    /// Whether events wait for the runtime.
    pub fn has_parked(&self) -> bool {
        self.identities.as_ref().is_some_and(Identities::has_parked)
    }

    /// Every event still waiting (a stop), without the runtime's names.
    pub fn release_parked(&mut self) -> Vec<Event> {
        let Some(identities) = self.identities.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (workload, waiting) in identities.release_all(Instant::now()) {
            for mut ev in waiting {
                attach(&mut ev, &workload);
                out.push(ev);
            }
        }
        out
    }

    /// The runtime lookups' figures; `None` without a runtime.
    pub fn runtime_stats(&self) -> Option<RuntimeStats> {
        self.identities.as_ref().map(Identities::stats)
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

    /// Processes in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Container identity of an exec'ing process: its /proc/<pid>/cgroup (all hierarchies, v1
    /// included) while the process is still in the cgroup it exec'd in, else the cgroup v2 id
    /// of the event. /proc is read when the event is processed, later than the exec: a process
    /// that moved in between (a shell that puts itself into a container's cgroup, then execs)
    /// shows its new cgroup there, which must not be credited to the old one.
    ///
    /// On a unified host the event's cgroup, when the tree knows it, is the whole answer (the
    /// only line /proc could show for it is the same path): no read per exec.
    fn exec_identity(&mut self, cgroup_id: u64, pid: u32) -> Option<ContainerIdentity> {
        if self.cgroups.as_ref().is_some_and(CgroupResolver::unified)
            && let Some(identity) = self.cgroup_identity(cgroup_id)
        {
            return Some(identity);
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            let unified = text.lines().find_map(|l| l.strip_prefix("0::"));
            let same_cgroup = match (unified, self.cgroups.as_ref()) {
                // A path that does not exist under the mount (a private cgroup namespace
                // writes `/../..` paths) cannot be checked: /proc is all there is.
                (Some(path), Some(cgroups)) => cgroups.id_of(path).is_none_or(|id| id == cgroup_id),
                // Nothing to check against (no cgroup2 mount or no unified line).
                _ => true,
            };
            if same_cgroup {
                return Some(container::from_proc_cgroup(&text));
            }
        }
        self.cgroup_identity(cgroup_id)
    }

    /// Identity of a cgroup v2 id from the cgroup tree, when it is final: the cgroup names a
    /// container or pod, or it names none on a unified host. `None` leaves the identity to the
    /// process table: the cgroup is unknown, or on a hybrid host only the v1 lines of
    /// /proc/<pid>/cgroup, read at exec, may name the container.
    fn cgroup_identity(&mut self, cgroup_id: u64) -> Option<ContainerIdentity> {
        let cgroups = self.cgroups.as_mut()?;
        let id = cgroups.known_identity(cgroup_id)?;
        (!id.is_empty() || cgroups.unified()).then_some(id)
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
            // Refused by the kernel (BPF LSM): the process still runs its old image.
            EventBody::Exec(_) if ev.denied => {}
            EventBody::Exec(x) => {
                let identity = self.exec_identity(ev.cgroup_id, ev.pid);
                let image = ExecImage {
                    exe: x.exe.clone().unwrap_or_default(),
                    argv: x.argv.clone(),
                    argv_truncated: x.argv_truncated,
                    cwd: x.cwd.clone().unwrap_or_default(),
                    uid: ev.uid,
                };
                self.table.on_exec(ev.pid, key, ev.ppid, image, identity);
            }
            EventBody::Fork(f) => {
                self.table.on_fork(
                    ev.pid,
                    f.child_pid,
                    start_key_from_ns(f.child_start_time_ns),
                );
            }
            EventBody::Exit(_) => self.table.on_exit(ev.pid, key),
            EventBody::File(_) | EventBody::Net(_) | EventBody::Dns(_) => {}
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

/// Sets `container` and `pod` from the runtime's answer and the event's own ids: the pod UID
/// from the cgroup wins; a pod known only by its cgroup is a pod with a UID alone.
fn attach(ev: &mut Event, w: &Workload) {
    ev.container = w.container.clone();
    ev.pod = match (&w.pod, ev.pod_uid.as_deref()) {
        (Some(p), Some(uid)) if p.uid.as_deref() != Some(uid) => Some(Arc::new(PodMeta {
            uid: Some(uid.to_owned()),
            ..PodMeta::clone(p)
        })),
        (Some(p), _) => Some(Arc::clone(p)),
        (None, Some(uid)) => Workload::ids_only(None, Some(uid)).pod,
        (None, None) => None,
    };
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::MetadataExt as _, process::Command};

    use super::Enricher;
    use crate::{
        process::cgroup::tests::{DirGuard, ID, POD, pod_cgroup, unavailable},
        rules::testutil::{exec, open},
        sensor::event::{Access, Event},
        testutil::Reap,
    };

    /// A `sleep` moved into a fresh pod container's cgroup, next to a fresh cgroup that names
    /// no container (not the test's own: CI may itself run in a container's cgroup).
    struct Moved {
        enricher: Enricher,
        outside_id: u64,
        leaf_id: u64,
        /// Dropped (killed and reaped) before `_guard`, so the cgroups are empty when removed.
        child: Reap,
        _guard: DirGuard,
    }

    impl Moved {
        fn new() -> Option<Self> {
            let enricher = Enricher::new(64);
            let Some(root) = enricher.cgroups.as_ref().map(|c| c.root().to_owned()) else {
                unavailable("no cgroup2 mount");
                return None;
            };
            let (mut guard, top, leaf) = pod_cgroup(&root)?;
            let (plain, outside) =
                DirGuard::create(&root, &format!("{top}/plain")).expect("a plain cgroup");
            guard.extend(plain);
            let outside_id = fs::metadata(&outside).expect("plain cgroup").ino();
            let leaf_id = fs::metadata(&leaf).expect("leaf").ino();
            let child = Reap(Command::new("sleep").arg("30").spawn().expect("sleep"));
            let moved = Self {
                enricher,
                outside_id,
                leaf_id,
                child,
                _guard: guard,
            };
            fs::write(leaf.join("cgroup.procs"), moved.child.0.id().to_string())
                .expect("move the child into the container's cgroup");
            Some(moved)
        }

        /// `ev` as the child's, in cgroup `cgroup_id`, enriched.
        fn enrich(&mut self, mut ev: Event, cgroup_id: u64) -> Event {
            ev.pid = self.child.0.id();
            ev.cgroup_id = cgroup_id;
            self.enricher.enrich(&mut ev);
            ev
        }
    }

    /// A shell that puts itself into a container's cgroup and then execs: its first exec
    /// happened in the cgroup it came from, and /proc, read later, shows the container's.
    #[test]
    fn an_exec_is_not_credited_to_a_cgroup_the_process_left_since() {
        let Some(mut m) = Moved::new() else { return };
        let outside = m.outside_id;
        let ev = m.enrich(exec("/bin/sh", &["sh"]), outside);
        assert_eq!(
            ev.container_id, None,
            "credited with the cgroup it moved to"
        );
        let mut later = open("/etc/hostname", Access::Read);
        later.cgroup_id = outside;
        m.enricher.enrich(&mut later);
        assert_eq!(
            later.container_id, None,
            "another process of the old cgroup"
        );
        let in_leaf = m.enrich(exec("/bin/sleep", &["sleep", "30"]), m.leaf_id);
        assert_eq!(in_leaf.container_id.as_deref(), Some(ID));
        assert_eq!(in_leaf.pod_uid.as_deref(), Some(POD));
    }

    /// A process of a container that is then seen in a cgroup that names none: on a unified
    /// host that is the whole truth; on a hybrid one the identity read at exec (v1 lines
    /// included) stands.
    #[test]
    fn leaving_a_containers_cgroup_leaves_its_identity_on_a_unified_host() {
        for unified in [true, false] {
            let Some(mut m) = Moved::new() else { return };
            if let Some(c) = m.enricher.cgroups.as_mut() {
                c.set_unified(unified);
            }
            let in_leaf = m.enrich(exec("/bin/sleep", &["sleep", "30"]), m.leaf_id);
            assert_eq!(in_leaf.container_id.as_deref(), Some(ID));
            let outside_id = m.outside_id;
            let outside = m.enrich(open("/etc/hostname", Access::Read), outside_id);
            let expected = if unified { None } else { Some(ID) };
            assert_eq!(
                outside.container_id.as_deref(),
                expected,
                "unified: {unified}"
            );
        }
    }
}
