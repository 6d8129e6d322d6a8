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
use crate::clock::{Clock, boot_ns};

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
    tx: mpsc::Sender<Vec<Event>>,
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
            // The batch as one message: the pipeline is woken once for it, not per event.
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                return Ok(());
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

/// Most records decoded before handing them on, as one message (items must not live across
/// awaits).
pub const BATCH: usize = 256;
/// How often the ring buffer is polled when the kernel has not woken us.
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

fn drain(ring: &mut RingBuf<MapData>, clock: &Clock, stats: &ReaderStats) -> Vec<Event> {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(item) = ring.next() {
        stats.received.fetch_add(1, Ordering::Relaxed);
        match decode::decode(&item) {
            Ok(mut ev) => {
                ev.time = clock.wall(ev.ktime_ns);
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
