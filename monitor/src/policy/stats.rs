//! The policy stage's counters, and its per-process assignments kept in step with the process
//! table: the table owns each process's lifetime (it is bounded, and evicts); the policy drops
//! an assignment once the table no longer knows the process and it is gone.

use serde::Serialize;

use super::Policy;
use crate::process::table::ProcessTable;

/// Counters of the policy stage.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PolicyStats {
    pub alerts: u64,
    pub alerts_folded: u64,
    pub profiled_processes: usize,
    /// Processes with an assignment (a profile, or none and a workload key).
    pub processes: usize,
    /// Assignments dropped because the process was gone and the process table no longer knew
    /// it (its exit event was lost).
    pub processes_forgotten: u64,
    /// File/network events of processes no profile applies to, recorded because every exec
    /// is watched until it is matched (or a learning session follows them): not evaluated
    /// against a profile.
    pub unprofiled_events_skipped: u64,
    /// (workload, address) names remembered from DNS answers.
    pub dns_names: usize,
    /// Of those, dropped to stay within bounds (before their time).
    pub dns_names_evicted: u64,
    /// Workload instances forgotten to stay within bounds (they count as serving).
    pub instances_dropped: u64,
    /// Processes under kernel enforcement (enforce-mode profiles).
    pub enforced_processes: usize,
}

impl Policy {
    pub fn stats(&self) -> PolicyStats {
        PolicyStats {
            alerts_folded: self.limiter.suppressed_total,
            profiled_processes: self.procs.values().filter(|a| a.profile.is_some()).count(),
            processes: self.procs.len(),
            enforced_processes: self.enforce.enforced(),
            dns_names: self.dns.len(),
            dns_names_evicted: self.dns.evicted,
            instances_dropped: self.instances.dropped,
            ..self.stats
        }
    }

    /// A process that exited (or that the table forgot): its assignment and enforcement go.
    pub(super) fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
        self.enforce.exited(pid);
    }

    /// Forgets the assignments of processes that are gone while the table no longer has
    /// them (their exit event was lost). A live process the full table evicted keeps its
    /// assignment (and its enforcement): this map is bounded by the table and the live
    /// processes.
    pub(super) fn forget_gone(&mut self, table: &ProcessTable) {
        let gone: Vec<u32> = self
            .procs
            .keys()
            .copied()
            .filter(|pid| {
                table.get(*pid).is_none() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
            .collect();
        for pid in gone {
            self.forget(pid);
            self.stats.processes_forgotten += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::policy::Assigned;
    use crate::resolve::HostResolver;
    use crate::rules::RuleSet;

    #[test]
    fn assignments_of_processes_the_table_forgot_are_dropped_and_counted() {
        let mut table = ProcessTable::new(64);
        let me = std::process::id();
        table.lookup_or_load(me).expect("this process is in /proc");
        let mut policy = Policy::new(
            Arc::new(RuleSet::default()),
            HostResolver::new(),
            true,
            Duration::ZERO,
            None,
        );
        let a = Assigned {
            start_key: 1,
            profile: None,
            workload: 7,
        };
        // Pids above the kernel's maximum (4,194,304) never exist: their exits were "lost".
        // PID 1 is alive but not in the table (evicted, say): it keeps its assignment.
        for pid in [me, 1, 4_999_990, 4_999_991] {
            policy.procs.insert(pid, a);
        }
        assert_eq!(policy.stats().processes, 4);
        policy.tick(crate::clock::WallTime::default(), &table);
        let s = policy.stats();
        assert_eq!((s.processes, s.processes_forgotten), (2, 2));
        assert!(policy.procs.contains_key(&me) && policy.procs.contains_key(&1));
    }
}
