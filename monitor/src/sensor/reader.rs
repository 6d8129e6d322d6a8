//! Draining the kernel ring buffer: decode each record, stamp wall-clock time, hand it to the
//! next stage over a bounded channel. Back-pressure, not loss: when the pipeline is slow the
//! reader waits and the kernel ring buffer absorbs the burst (and counts what it must drop).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::{Event, decode};

/// Converts kernel boot-time nanoseconds to RFC 3339 wall-clock time. The offset between the
/// clocks changes when the wall clock is stepped or slewed (NTP), so the reader samples it
/// again before each batch: event times follow the wall clock as the agent's own lines do.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, ns, at the last sample.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    pub fn new() -> Self {
        let mut c = Self { offset_ns: 0 };
        c.resample();
        c
    }

    /// Samples the offset again: the wall clock read between two boot-clock reads, against
    /// their midpoint (two vDSO calls each, tens of nanoseconds).
    pub fn resample(&mut self) {
        let before = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        let after = clock_ns(libc::CLOCK_BOOTTIME);
        self.offset_ns = real - (before + after) / 2;
    }

    /// Wall-clock ns since the epoch for a boot-time stamp.
    pub fn wall_ns(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 + self.offset_ns
    }

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339_ns(self.wall_ns(boot_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Boot-time nanoseconds now: the clock of the kernel's event timestamps.
pub fn boot_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
}

/// The wall-clock time now, RFC 3339 with nanoseconds (for lines the agent itself writes).
pub fn now_rfc3339() -> String {
    rfc3339_ns(clock_ns(libc::CLOCK_REALTIME))
}

/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-25T21:00:00.123456789Z`.
pub fn rfc3339_ns(wall_ns: i128) -> String {
    let secs = wall_ns.div_euclid(1_000_000_000) as i64;
    let nanos = wall_ns.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000000000Z".to_owned())
}

/// User-space counters of the reader.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub received: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Kernel time before the reader last found the ring buffer empty: every record written
    /// before it has been handed on.
    pub drained_ns: AtomicU64,
}

/// Reads records until the channel's receiver is gone.
pub async fn run(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Event>,
    stats: Arc<ReaderStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut clock = Clock::new();
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long as
    // the `AsyncFd` owns the ring buffer.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    // The kernel wakes us only when a batch has accumulated (see `emit.rs`); the timer picks
    // up the rest promptly.
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            g = fd.readable_mut() => g?.clear_ready(),
            _ = tick.tick() => {}
            r = stop.changed() => stopping = r.is_err() || *stop.borrow(),
        }
        let started = boot_ns();
        loop {
            clock.resample();
            let batch = drain(fd.get_mut(), &clock, &stats);
            let more = batch.len() >= BATCH;
            for ev in batch {
                if tx.send(ev).await.is_err() {
                    return Ok(());
                }
            }
            if !more {
                break;
            }
        }
        stats.drained_ns.fetch_max(started, Ordering::Release);
        if stopping {
            // Everything the kernel had written before the stop was drained above.
            return Ok(());
        }
    }
}

/// Most records decoded before handing them on (items must not live across awaits).
const BATCH: usize = 256;
/// How often the ring buffer is polled when the kernel has not woken us.
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

fn drain(ring: &mut RingBuf<MapData>, clock: &Clock, stats: &ReaderStats) -> Vec<Event> {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(item) = ring.next() {
        stats.received.fetch_add(1, Ordering::Relaxed);
        match decode::decode(&item) {
            Ok(mut ev) => {
                ev.time = clock.rfc3339(ev.ktime_ns);
                batch.push(ev);
            }
            Err(e) => {
                stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "dropping malformed kernel record");
            }
        }
        if batch.len() >= BATCH {
            break;
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ns;

    #[test]
    fn formats_nanoseconds() {
        assert_eq!(
            rfc3339_ns(1_000_000_000 * 86_400 + 5),
            "1970-01-02T00:00:00.000000005Z"
        );
    }
}
