//! Memory of the stateful detections, owned by the caller of `check` (one per rules stage):
//! which files each workload wrote (`write_then_exec`) and how fast each workload creates
//! processes (`burst`). Both are bounded.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

/// Most written files remembered (over all workloads).
const WRITTEN_MAX: usize = 64 * 1024;
/// Most (detection, workload) burst windows kept.
const BURST_MAX: usize = 16 * 1024;

/// State the stateful detections carry from event to event.
#[derive(Debug)]
pub struct DetectionState {
    hasher: RandomState,
    /// Hashes of (workload, path) written: two generations, the older dropped when the newer
    /// fills, so recently seen entries survive (an approximate LRU at two hash maps' cost).
    /// The value is the name a file was written under when it got this one by a hard link or
    /// a rename (`write_then_exec` follows the file, not its name).
    written: HashMap<u64, Option<Box<str>>>,
    written_old: HashMap<u64, Option<Box<str>>>,
    bursts: HashMap<(usize, u64), Window>,
}

impl Default for DetectionState {
    fn default() -> Self {
        Self::new()
    }
}

impl DetectionState {
    pub fn new() -> Self {
        DetectionState {
            hasher: RandomState::new(),
            written: HashMap::new(),
            written_old: HashMap::new(),
            bursts: HashMap::new(),
        }
    }

    fn key(&self, workload: u64, path: &str) -> u64 {
        self.hasher.hash_one((workload, path))
    }

    /// Remembers that `workload` wrote `path`.
    pub(crate) fn record_write(&mut self, workload: u64, path: &str) {
        let k = self.key(workload, path);
        if !self.written.contains_key(&k) {
            let origin = self.written_old.remove(&k).flatten();
            self.insert(k, origin);
        }
    }

    /// A file got the name `to` (a hard link or a rename of `from`): when `workload` wrote
    /// `from`, it wrote `to` too, under the name it first wrote it as. Returns whether it did.
    pub(crate) fn record_alias(&mut self, workload: u64, from: &str, to: &str) -> bool {
        let Some(origin) = self.written(workload, from) else {
            return false;
        };
        let origin = origin.unwrap_or_else(|| from.into());
        let k = self.key(workload, to);
        self.written_old.remove(&k);
        self.insert(k, Some(origin));
        true
    }

    fn insert(&mut self, k: u64, origin: Option<Box<str>>) {
        self.written.insert(k, origin);
        if self.written.len() >= WRITTEN_MAX / 2 {
            self.written_old = std::mem::take(&mut self.written);
        }
    }

    /// Whether `workload` wrote `path` (and is still remembered): `Some(None)` when it wrote
    /// it under this name, `Some(Some(name))` when it wrote it as `name` and gave it this name
    /// by a link or rename.
    pub(crate) fn written(&mut self, workload: u64, path: &str) -> Option<Option<Box<str>>> {
        let k = self.key(workload, path);
        if let Some(origin) = self.written.get(&k) {
            return Some(origin.clone());
        }
        let origin = self.written_old.remove(&k)?;
        self.insert(k, origin.clone());
        Some(origin)
    }

    /// Whether `workload` wrote `path`, under any name.
    #[cfg(test)]
    pub(crate) fn was_written(&mut self, workload: u64, path: &str) -> bool {
        self.written(workload, path).is_some()
    }

    /// Counts one process creation of `workload` for burst detection `det`; returns the
    /// (estimated) count in the last `window_ms` when it exceeds `threshold`, at most once per
    /// window.
    pub(crate) fn burst_hit(
        &mut self,
        det: usize,
        workload: u64,
        now_ns: u64,
        window_ms: u64,
        threshold: u32,
    ) -> Option<u64> {
        let window = window_ms.saturating_mul(1_000_000).max(1);
        if self.bursts.len() >= BURST_MAX && !self.bursts.contains_key(&(det, workload)) {
            self.bursts
                .retain(|_, w| now_ns.saturating_sub(w.start) < 2 * w.len);
            if self.bursts.len() >= BURST_MAX {
                self.bursts.clear();
            }
        }
        self.bursts
            .entry((det, workload))
            .or_insert_with(|| Window::new(now_ns, window))
            .hit(now_ns, threshold)
    }

    /// Entries held (written files, burst windows).
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        (
            self.written.len() + self.written_old.len(),
            self.bursts.len(),
        )
    }
}

/// A sliding window approximated by two fixed buckets: the count in the current bucket plus
/// the previous bucket's count weighted by how much of it the sliding window still covers.
#[derive(Debug)]
struct Window {
    len: u64,
    /// Start of the current bucket.
    start: u64,
    cur: u64,
    prev: u64,
    /// No new alert before this time.
    quiet_until: u64,
}

impl Window {
    fn new(now: u64, len: u64) -> Self {
        Window {
            len,
            start: now - now % len,
            cur: 0,
            prev: 0,
            quiet_until: 0,
        }
    }

    fn hit(&mut self, now: u64, threshold: u32) -> Option<u64> {
        let bucket = now - now % self.len;
        if bucket > self.start {
            self.prev = if bucket - self.start == self.len {
                self.cur
            } else {
                0
            };
            self.cur = 0;
            self.start = bucket;
        }
        // Events out of order (an older bucket) count in the current one.
        self.cur += 1;
        let elapsed = now.saturating_sub(self.start).min(self.len);
        let carried =
            (u128::from(self.prev) * u128::from(self.len - elapsed)).div_ceil(u128::from(self.len));
        let carried = u64::try_from(carried).unwrap_or(u64::MAX);
        let count = self.cur.saturating_add(carried);
        if count > u64::from(threshold) && now >= self.quiet_until {
            self.quiet_until = now.saturating_add(self.len);
            return Some(count);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::EventKind;

    use super::{BURST_MAX, DetectionState, WRITTEN_MAX};
    use crate::rules::testutil::{ctx, exec, file_body, file_event, fork, load_ok, open};
    use crate::rules::{EvalContext, RuleSet};
    use crate::sensor::event::{Access, Event, EventBody};

    const WTE: &str = "detection: write-exec\ndescription: Runs a file its workload dropped\nseverity: high\nmitre: [T1105]\ntype: write_then_exec\nwhen:\n  path: [\"/tmp/**\", \"/dev/shm/**\"]\n";

    const BURST: &str = "detection: fork-burst\ndescription: Many processes at once\nseverity: medium\nmitre: [T1499]\ntype: burst\non: [fork]\nthreshold: 3\nwindow_ms: 1000\n";

    fn rules() -> RuleSet {
        load_ok(&[("wte.yaml", WTE), ("burst.yaml", BURST)])
    }

    fn in_workload(w: u64) -> EvalContext<'static> {
        EvalContext {
            workload: w,
            kin: crate::rules::Kin::Workload(w),
            ..ctx(None)
        }
    }

    fn rules_of(r: &RuleSet, st: &mut DetectionState, ev: &Event, w: u64) -> Vec<String> {
        r.check(ev, &in_workload(w), st)
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    #[test]
    fn exec_of_a_file_the_workload_wrote() {
        let r = rules();
        let mut st = DetectionState::new();
        assert!(rules_of(&r, &mut st, &open("/tmp/payload", Access::Write), 1).is_empty());
        assert!(
            rules_of(&r, &mut st, &exec("/tmp/payload", &["payload"]), 2).is_empty(),
            "other workload"
        );
        let f = r.check(
            &exec("/tmp/payload", &["payload"]),
            &in_workload(1),
            &mut st,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "write-exec");
        assert_eq!(
            f[0].message,
            "payload (pid 812) executed /tmp/payload, a file written earlier by the same workload: write-exec: Runs a file its workload dropped"
        );
        assert_eq!(f[0].key, "write-exec|/tmp/payload");
        assert!(
            rules_of(&r, &mut st, &exec("/tmp/other", &["other"]), 1).is_empty(),
            "not written"
        );
    }

    #[test]
    fn only_counted_writes_are_remembered() {
        let r = rules();
        let mut st = DetectionState::new();
        rules_of(&r, &mut st, &open("/usr/local/bin/tool", Access::Write), 1);
        assert!(
            rules_of(&r, &mut st, &exec("/usr/local/bin/tool", &["tool"]), 1).is_empty(),
            "path filter"
        );
        rules_of(&r, &mut st, &open("/tmp/read-only", Access::Read), 1);
        assert!(
            rules_of(&r, &mut st, &exec("/tmp/read-only", &["x"]), 1).is_empty(),
            "a read"
        );
        let mut failed = file_body("/tmp/denied");
        failed.access = Some(Access::Write);
        failed.result = -13;
        rules_of(&r, &mut st, &file_event(EventKind::Open, failed), 1);
        assert!(
            rules_of(&r, &mut st, &exec("/tmp/denied", &["x"]), 1).is_empty(),
            "failed write"
        );
        let mut renamed = file_body("/var/tmp/stage");
        renamed.new_path = Some("/dev/shm/x".to_owned());
        rules_of(&r, &mut st, &file_event(EventKind::Rename, renamed), 1);
        assert_eq!(
            rules_of(&r, &mut st, &exec("/dev/shm/x", &["x"]), 1),
            vec!["write-exec"]
        );
        rules_of(
            &r,
            &mut st,
            &file_event(EventKind::Chmod, file_body("/tmp/chmodded")),
            1,
        );
        assert_eq!(
            rules_of(&r, &mut st, &exec("/tmp/chmodded", &["x"]), 1),
            vec!["write-exec"]
        );
        let mut created = file_body("/tmp/created");
        created.access = Some(Access::Read);
        created.created = Some(true);
        rules_of(&r, &mut st, &file_event(EventKind::Open, created), 1);
        assert_eq!(
            rules_of(&r, &mut st, &exec("/tmp/created", &["x"]), 1),
            vec!["write-exec"]
        );
    }

    #[test]
    fn interpreter_script_arguments() {
        let r = rules();
        let mut st = DetectionState::new();
        rules_of(&r, &mut st, &open("/tmp/s.py", Access::Write), 1);
        let f = r.check(
            &exec(
                "/usr/bin/python3.11",
                &["python3", "-u", "/tmp/s.py", "arg"],
            ),
            &in_workload(1),
            &mut st,
        );
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.contains(
                "executed /tmp/s.py, a file written earlier by the same workload (as script)"
            ),
            "{}",
            f[0].message
        );
        rules_of(&r, &mut st, &open("/tmp/run.sh", Access::Write), 1);
        let mut relative = exec("/usr/bin/bash", &["bash", "--", "./run.sh"]);
        if let EventBody::Exec(x) = &mut relative.body {
            x.cwd = Some("/tmp".to_owned());
        }
        assert_eq!(rules_of(&r, &mut st, &relative, 1), vec!["write-exec"]);
        assert!(
            rules_of(&r, &mut st, &exec("/usr/bin/git", &["git", "/tmp/s.py"]), 1).is_empty(),
            "not an interpreter"
        );
    }

    fn renamed(kind: EventKind, from: &str, to: &str) -> Event {
        let mut b = file_body(from);
        b.new_path = Some(to.to_owned());
        file_event(kind, b)
    }

    #[test]
    fn a_written_file_is_followed_through_links_and_renames() {
        let r = rules();
        let mut st = DetectionState::new();
        rules_of(&r, &mut st, &open("/tmp/drop", Access::Write), 1);
        // Linked out of the rule's paths, then renamed again: the second name still counts,
        // and the message names where it was written.
        rules_of(
            &r,
            &mut st,
            &renamed(EventKind::Link, "/tmp/drop", "/home/u/a"),
            1,
        );
        rules_of(
            &r,
            &mut st,
            &renamed(EventKind::Rename, "/home/u/a", "/home/u/b"),
            1,
        );
        let f = r.check(&exec("/home/u/b", &["b"]), &in_workload(1), &mut st);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .contains("executed /home/u/b, a file the same workload wrote earlier as /tmp/drop and linked or renamed"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].key, "write-exec|/home/u/b");
        // A symlink is a new file pointing at a name: not followed; another workload's link
        // of the same file is not this workload's write.
        rules_of(
            &r,
            &mut st,
            &renamed(EventKind::Symlink, "/tmp/drop", "/home/u/s"),
            1,
        );
        assert!(rules_of(&r, &mut st, &exec("/home/u/s", &["s"]), 1).is_empty());
        rules_of(
            &r,
            &mut st,
            &renamed(EventKind::Link, "/tmp/drop", "/home/u/c"),
            2,
        );
        assert!(rules_of(&r, &mut st, &exec("/home/u/c", &["c"]), 2).is_empty());
        // A link of a file nobody wrote, and a failed link: nothing.
        rules_of(
            &r,
            &mut st,
            &renamed(EventKind::Link, "/tmp/clean", "/home/u/d"),
            1,
        );
        assert!(rules_of(&r, &mut st, &exec("/home/u/d", &["d"]), 1).is_empty());
        let mut failed = file_body("/tmp/drop");
        failed.new_path = Some("/home/u/e".to_owned());
        failed.result = -17;
        rules_of(&r, &mut st, &file_event(EventKind::Link, failed), 1);
        assert!(rules_of(&r, &mut st, &exec("/home/u/e", &["e"]), 1).is_empty());
        // A truncate is a write.
        rules_of(
            &r,
            &mut st,
            &file_event(EventKind::Truncate, file_body("/tmp/t")),
            1,
        );
        assert_eq!(
            rules_of(&r, &mut st, &exec("/tmp/t", &["t"]), 1),
            vec!["write-exec"]
        );
    }

    #[test]
    fn written_memory_is_bounded() {
        let mut st = DetectionState::new();
        for i in 0..(WRITTEN_MAX * 2) {
            st.record_write(7, &format!("/tmp/f{i}"));
        }
        assert!(st.len().0 <= WRITTEN_MAX, "{}", st.len().0);
        assert!(
            st.was_written(7, &format!("/tmp/f{}", WRITTEN_MAX * 2 - 1)),
            "recent kept"
        );
        assert!(!st.was_written(7, "/tmp/f0"), "oldest dropped");
    }

    fn fork_at(ms: u64) -> Event {
        fork(ms * 1_000_000)
    }

    #[test]
    fn burst_fires_above_threshold_once_per_window() {
        let r = rules();
        let mut st = DetectionState::new();
        for t in [10, 11, 12] {
            assert!(rules_of(&r, &mut st, &fork_at(t), 1).is_empty());
        }
        let f = r.check(&fork_at(13), &in_workload(1), &mut st);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "fork-burst");
        assert_eq!(
            f[0].message,
            "python3 (pid 812) forked child pid 900, 4 process creations in its workload within 1000 ms (threshold 3): fork-burst: Many processes at once"
        );
        assert_eq!(f[0].key, "fork-burst|workload 1");
        assert!(
            rules_of(&r, &mut st, &fork_at(14), 1).is_empty(),
            "quiet for a window"
        );
        for t in [5000, 5001, 5002] {
            assert!(rules_of(&r, &mut st, &fork_at(t), 1).is_empty());
        }
        assert_eq!(
            rules_of(&r, &mut st, &fork_at(5003), 1),
            vec!["fork-burst"],
            "fires again later"
        );
    }

    #[test]
    fn burst_slides_across_buckets_and_separates_workloads() {
        let r = rules();
        let mut st = DetectionState::new();
        for i in 0..10 {
            assert!(
                rules_of(&r, &mut st, &fork_at(i * 600), 1).is_empty(),
                "2 per second"
            );
        }
        let mut st = DetectionState::new();
        for t in [990, 995, 998] {
            rules_of(&r, &mut st, &fork_at(t), 1);
        }
        assert_eq!(
            rules_of(&r, &mut st, &fork_at(1010), 1),
            vec!["fork-burst"],
            "window straddles buckets"
        );
        let mut st = DetectionState::new();
        for t in [1, 2, 3] {
            rules_of(&r, &mut st, &fork_at(t), 1);
            rules_of(&r, &mut st, &fork_at(t), 2);
        }
        assert!(
            rules_of(&r, &mut st, &open("/tmp/x", Access::Read), 1).is_empty(),
            "not a fork"
        );
        assert!(
            rules_of(&r, &mut st, &exec("/bin/true", &["true"]), 3).is_empty(),
            "not on exec"
        );
    }

    #[test]
    fn burst_memory_is_bounded() {
        let mut st = DetectionState::new();
        for w in 0..(BURST_MAX as u64 * 2) {
            st.burst_hit(0, w, w, 1000, 10);
        }
        assert!(st.len().1 <= BURST_MAX);
    }
}
