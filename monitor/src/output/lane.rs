//! The output stage's side of a delivery spool: appends records (fsync'ed) before any output
//! sees them, keeps what could not be appended (disk full, I/O error) in a bounded in-memory
//! backlog retried on every batch and tick, and counts everything it could not keep.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::Serialize;

use crate::deliver::{Spool, SpoolError};

/// Most records waiting in memory for the spool to accept them again.
pub const BACKLOG_MAX: usize = 100_000;
/// Most bytes per fsync'ed append.
const APPEND_MAX_BYTES: usize = 1 << 20;
/// Bytes counted per record on top of its payload (more than the spool's frame header), so a
/// batch of tiny records cannot exceed what the spool accepts in one append.
const FRAME_ALLOWANCE: usize = 32;

/// Counters of one lane, shared with the stats line.
#[derive(Debug, Default)]
pub struct LaneCounters {
    /// Records durably appended.
    pub appended: AtomicU64,
    /// Undelivered records the bounded spool dropped (oldest first) to make room.
    pub dropped_full: AtomicU64,
    /// Failed appends (each retried later).
    pub append_errors: AtomicU64,
    /// Records lost without reaching the spool: the backlog overflowed, or a record is larger
    /// than the spool can ever hold.
    pub lost: AtomicU64,
    /// Records in the backlog now.
    pub backlog: AtomicU64,
}

/// A snapshot of [`LaneCounters`] for `agent_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LaneStats {
    pub appended: u64,
    pub dropped_full: u64,
    pub append_errors: u64,
    pub lost: u64,
    pub backlog: u64,
}

impl LaneCounters {
    pub fn snapshot(&self) -> LaneStats {
        LaneStats {
            appended: self.appended.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            append_errors: self.append_errors.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            backlog: self.backlog.load(Ordering::Relaxed),
        }
    }
}

/// How many of the leading `lines` go in one append: at least one, then as many as fit in
/// `max` bytes, counting [`FRAME_ALLOWANCE`] per record.
fn fitting<'a>(lines: impl Iterator<Item = &'a [u8]>, max: usize) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for line in lines {
        let size = line.len() + FRAME_ALLOWANCE;
        if n > 0 && bytes + size > max {
            break;
        }
        bytes += size;
        n += 1;
    }
    n
}

/// Appends to one spool from the output thread.
pub struct Lane {
    appender: Appender,
    max_append: usize,
    backlog: VecDeque<Vec<u8>>,
    /// `counters.lost` when [`Lane::take_lost`] last reported it.
    lost_reported: u64,
}

/// The spool and what is reported about appending to it.
struct Appender {
    /// `alerts` or `events`, for logs.
    what: &'static str,
    spool: Spool,
    failing: bool,
    counters: Arc<LaneCounters>,
}

impl Lane {
    pub fn new(
        what: &'static str,
        spool: Spool,
        max_bytes: u64,
        counters: Arc<LaneCounters>,
    ) -> Self {
        let max_append = usize::try_from(max_bytes / 8)
            .unwrap_or(usize::MAX)
            .clamp(256, APPEND_MAX_BYTES);
        Self {
            appender: Appender {
                what,
                spool,
                failing: false,
                counters,
            },
            max_append,
            backlog: VecDeque::new(),
            lost_reported: 0,
        }
    }

    /// Appends `lines` (after anything still in the backlog) and returns how many undelivered
    /// records the bounded spool dropped to make room for them.
    pub fn append(&mut self, lines: &[&[u8]]) -> u64 {
        if !self.backlog.is_empty() {
            self.keep(lines.iter().map(|l| l.to_vec()));
            return self.retry();
        }
        // The common case: no copy, batches straight from the caller.
        let mut dropped = 0;
        let mut rest = lines;
        while !rest.is_empty() {
            let n = fitting(rest.iter().copied(), self.max_append);
            match self.appender.append_batch(&rest[..n]) {
                Ok(d) => dropped += d,
                Err(()) => {
                    self.keep(rest.iter().map(|l| l.to_vec()));
                    break;
                }
            }
            rest = &rest[n..];
        }
        dropped
    }

    /// Tries the backlog again; returns the records the spool dropped to make room.
    pub fn retry(&mut self) -> u64 {
        let mut dropped = 0;
        while !self.backlog.is_empty() {
            let n = fitting(self.backlog.iter().map(Vec::as_slice), self.max_append);
            let batch: Vec<&[u8]> = self.backlog.iter().take(n).map(Vec::as_slice).collect();
            match self.appender.append_batch(&batch) {
                Ok(d) => {
                    dropped += d;
                    self.backlog.drain(..n);
                }
                Err(()) => break,
            }
        }
        self.appender
            .counters
            .backlog
            .store(self.backlog.len() as u64, Ordering::Relaxed);
        dropped
    }

    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Records lost without reaching the spool (backlog overflow, oversized) since the last
    /// call, for the overflow alert.
    pub fn take_lost(&mut self) -> u64 {
        let lost = self.appender.counters.lost.load(Ordering::Relaxed);
        lost - std::mem::replace(&mut self.lost_reported, lost)
    }

    fn keep(&mut self, lines: impl Iterator<Item = Vec<u8>>) {
        let counters = &self.appender.counters;
        for line in lines {
            if self.backlog.len() >= BACKLOG_MAX {
                self.backlog.pop_front();
                let lost = counters.lost.fetch_add(1, Ordering::Relaxed) + 1;
                if lost.is_power_of_two() {
                    tracing::error!(
                        what = self.appender.what,
                        lost,
                        "delivery spool unwritable and backlog full: records lost"
                    );
                }
            }
            self.backlog.push_back(line);
        }
        counters
            .backlog
            .store(self.backlog.len() as u64, Ordering::Relaxed);
    }
}

impl Appender {
    /// One fsync'ed append. A record that can never fit is dropped (counted) so it cannot
    /// block the ones after it.
    fn append_batch(&mut self, batch: &[&[u8]]) -> Result<u64, ()> {
        match self.spool.append_batch(batch) {
            Ok(outcome) => {
                if self.failing {
                    self.failing = false;
                    tracing::info!(what = self.what, "delivery spool writable again");
                }
                self.counters
                    .appended
                    .fetch_add(outcome.records, Ordering::Relaxed);
                if outcome.dropped_records > 0 {
                    self.counters
                        .dropped_full
                        .fetch_add(outcome.dropped_records, Ordering::Relaxed);
                    tracing::warn!(
                        what = self.what,
                        dropped = outcome.dropped_records,
                        "delivery spool full: oldest undelivered records dropped \
                         (raise --spool-max-bytes or fix the failing sink)"
                    );
                }
                Ok(outcome.dropped_records)
            }
            Err(SpoolError::RecordTooLarge { .. } | SpoolError::TooLarge { .. })
                if batch.len() == 1 =>
            {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    what = self.what,
                    bytes = batch[0].len(),
                    "record larger than the delivery spool can hold: not forwarded"
                );
                Ok(0)
            }
            Err(e) => {
                self.counters.append_errors.fetch_add(1, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        what = self.what,
                        error = %crate::deliver::error_chain(&e),
                        "cannot write to the delivery spool; keeping records in memory and retrying"
                    );
                }
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FRAME_ALLOWANCE, fitting};

    #[test]
    fn batches_count_a_frame_allowance_per_record_and_take_at_least_one() {
        let lines: Vec<&[u8]> = vec![b"aaaa", b"bbbb", b"cccc"];
        let one = 4 + FRAME_ALLOWANCE;
        assert_eq!(fitting(lines.iter().copied(), 2 * one), 2);
        assert_eq!(fitting(lines.iter().copied(), 2 * one - 1), 1);
        assert_eq!(
            fitting(lines.iter().copied(), 1),
            1,
            "an oversized record goes alone"
        );
        assert_eq!(fitting(std::iter::empty(), 100), 0);
    }
}
