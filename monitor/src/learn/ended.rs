//! The workload instances a learning session saw end: their summaries say how long start-up
//! took and which executables started the workload, which is what a profile is built from.
//! Bounded, keeping what the profile needs.

use serde::{Deserialize, Serialize};

/// One ended (or, at the end, still running) instance of the learned workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub root_pid: u32,
    #[serde(default)]
    pub root_exe: Option<String>,
    pub first_listen_secs: Option<f64>,
    pub preexisting: bool,
}

/// Summaries of ended instances a session keeps; past it, only those that add a longer
/// start-up or a new executable (up to twice as many), the rest are counted.
pub(super) const MAX_ENDED: usize = 1024;

/// Summaries of the instances that ended, bounded ([`MAX_ENDED`]).
#[derive(Debug, Default)]
pub(super) struct Ended {
    pub(super) kept: Vec<InstanceSummary>,
    pub(super) total: u64,
}

impl Ended {
    pub(super) fn add(&mut self, s: InstanceSummary) {
        self.total += 1;
        if self.kept.len() >= MAX_ENDED {
            // What a profile is built from: the longest start-up and every executable.
            let listen = |i: &InstanceSummary| i.first_listen_secs.filter(|_| !i.preexisting);
            let longer =
                listen(&s).is_some_and(|l| self.kept.iter().filter_map(listen).all(|k| l > k));
            let new_exe = !self.kept.iter().any(|k| k.root_exe == s.root_exe);
            if !(longer || new_exe) || self.kept.len() >= 2 * MAX_ENDED {
                return;
            }
        }
        self.kept.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::{Ended, InstanceSummary, MAX_ENDED};

    fn ended(pid: u32, exe: &str, listen: Option<f64>) -> InstanceSummary {
        InstanceSummary {
            root_pid: pid,
            root_exe: Some(exe.to_owned()),
            first_listen_secs: listen,
            preexisting: false,
        }
    }

    #[test]
    fn ended_instances_are_bounded_but_keep_what_the_profile_is_built_from() {
        let mut e = Ended::default();
        for pid in 0..10_000 {
            e.add(ended(pid, "/usr/bin/tool", Some(1.0)));
        }
        assert_eq!((e.kept.len(), e.total), (MAX_ENDED, 10_000));
        e.add(ended(1, "/usr/bin/other", None));
        e.add(ended(2, "/usr/bin/tool", Some(9.5)));
        e.add(ended(3, "/usr/bin/tool", Some(2.0)));
        assert_eq!((e.kept.len(), e.total), (MAX_ENDED + 2, 10_003));
        assert!(e.kept.iter().any(|i| i.first_listen_secs == Some(9.5)));
        for pid in 0..10_000 {
            e.add(ended(pid, &format!("/tmp/x{pid}"), None));
        }
        assert_eq!(e.kept.len(), 2 * MAX_ENDED);
    }
}
