//! Memory of the stateful detections, owned by the caller of `check` (one per rules stage):
//! which files each workload wrote (`write_then_exec`) and how fast each workload creates
//! processes (`burst`). Both are bounded.

use std::collections::{HashMap, HashSet};
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
    /// fills, so recently seen entries survive (an approximate LRU at two hash sets' cost).
    written: HashSet<u64>,
    written_old: HashSet<u64>,
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
            written: HashSet::new(),
            written_old: HashSet::new(),
            bursts: HashMap::new(),
        }
    }

    fn key(&self, workload: u64, path: &str) -> u64 {
        self.hasher.hash_one((workload, path))
    }

    /// Remembers that `workload` wrote `path`.
    pub(crate) fn record_write(&mut self, workload: u64, path: &str) {
        let k = self.key(workload, path);
        if self.written.insert(k) && self.written.len() >= WRITTEN_MAX / 2 {
            self.written_old = std::mem::take(&mut self.written);
        }
    }

    /// Whether `workload` wrote `path` (and is still remembered).
    pub(crate) fn was_written(&mut self, workload: u64, path: &str) -> bool {
        let k = self.key(workload, path);
        if self.written.contains(&k) {
            return true;
        }
        if self.written_old.remove(&k) {
            self.written.insert(k);
            return true;
        }
        false
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
