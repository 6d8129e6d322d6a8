//! The on-disk spool: every alert is appended and fsync'ed here before any sink sees it, and
//! each sink reads from its own persisted cursor, so a crash or SIGKILL loses nothing that
//! `append` returned for (at-least-once delivery).
//!
//! Layout of the directory (see `record.rs` and `cursor.rs` for the file formats): segment
//! files `seg-<first seq>.log`, one `cursor-<hex sink name>.ack` per sink, and `lock`, which
//! an agent holds exclusively while it has the spool open.
//!
//! Concurrency: a [`Spool`] is a cheap clonable handle. One writer mutex serialises appends
//! (held across the write and fsync); one state mutex guards the index of segments and the
//! cursors and is only ever held for bookkeeping, never across disk I/O, so sink tasks
//! reading segment files and persisting cursors do not stall the writer, and the reverse.
//! The state lock is always the innermost; the writer and the per-sink locks are never held
//! together.
//! All methods block on disk I/O; the `*_async` variants run them on tokio's blocking pool.
//!
//! `open.rs` holds start-up and recovery, `read.rs` the read path, `types.rs` the public
//! option, error and report types.

mod files;
mod open;
mod read;
mod types;

use std::{
    collections::VecDeque,
    fs::File,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::watch;

#[cfg(test)]
pub use types::DEFAULT_MAX_BYTES;
pub use types::{
    AppendOutcome, CursorStats, DEFAULT_SPOOL_DIR, OpenReport, ReadBatch, SpoolError, SpoolOptions,
    SpoolStats, Spooled, TornTail,
};

use super::{
    cursor,
    record::{self, MAX_RECORD_LEN, SEGMENT_HEADER_LEN, frame_len},
};
use files::io_err;

/// Handle to an open spool; clones share it.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    dir_file: File,
    options: SpoolOptions,
    writer: Mutex<Writer>,
    state: Mutex<State>,
    sinks: Vec<SinkSlot>,
    /// Sequence number after the last durable record.
    committed: watch::Sender<u64>,
    /// Holds the directory lock while open.
    _lock: File,
}

struct Writer {
    file: File,
    /// First sequence number of the active segment.
    first: u64,
    /// Durable length of the active segment.
    len: u64,
    next_seq: u64,
    /// A failed write may have left bytes past `len`: truncate before writing again.
    dirty: bool,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    first: u64,
    end: u64,
    bytes: u64,
}

struct CursorState {
    /// First unacknowledged sequence number (in memory).
    next: u64,
    /// The value last persisted.
    persisted: u64,
    skipped: u64,
}

struct State {
    /// Never empty; the last one is the active segment.
    segments: VecDeque<Segment>,
    total_bytes: u64,
    committed_next: u64,
    dropped_total: u64,
    cursors: Vec<CursorState>,
}

impl State {
    /// Records of `seg` some sink has not acknowledged yet.
    fn undelivered(&self, seg: &Segment) -> u64 {
        match self.cursors.iter().map(|c| c.next).min() {
            Some(min) => seg.end.saturating_sub(seg.first.max(min)),
            None => 0,
        }
    }

    /// Removes from the index the closed segments every sink has persisted past.
    fn collect_garbage(&mut self) -> Vec<u64> {
        let Some(min) = self.cursors.iter().map(|c| c.persisted).min() else {
            return self.pop_sealed_while(|_| true);
        };
        self.pop_sealed_while(|s| s.end <= min)
    }

    fn pop_sealed_while(&mut self, mut pred: impl FnMut(&Segment) -> bool) -> Vec<u64> {
        let mut gone = Vec::new();
        while self.segments.len() > 1 && self.segments.front().is_some_and(&mut pred) {
            if let Some(s) = self.segments.pop_front() {
                self.total_bytes -= s.bytes;
                gone.push(s.first);
            }
        }
        gone
    }
}

struct SinkSlot {
    name: String,
    cursor_path: PathBuf,
    /// Where the last read stopped, to continue without rescanning the segment.
    read_pos: Mutex<ReadPos>,
    /// Serialises persisting this sink's cursor.
    persist: Mutex<()>,
}

#[derive(Default)]
struct ReadPos {
    segment: u64,
    next_seq: u64,
    /// 0 when unknown.
    offset: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; should something, the guarded data is only
    // ever changed in complete steps and stays usable, so carry on instead of cascading.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spool {
    /// Appends one alert line; see [`Spool::append_batch`].
    #[cfg(test)]
    pub fn append(&self, line: &[u8]) -> Result<AppendOutcome, SpoolError> {
        self.append_batch(std::slice::from_ref(&line))
    }

    /// Appends the lines as consecutive records with one write and one fdatasync; when this
    /// returns Ok they are durable and sink tasks are woken. On error nothing was appended
    /// (a partial write is cut off before the next append). To make room, the oldest segments
    /// are dropped first; the count of undelivered records lost is returned (and added to
    /// `SpoolStats::dropped_records`, which also counts drops made by an append that then
    /// failed).
    pub fn append_batch<L: AsRef<[u8]>>(&self, lines: &[L]) -> Result<AppendOutcome, SpoolError> {
        let inner = &*self.inner;
        let opts = inner.options;
        let mut w = lock(&inner.writer);
        if w.dirty {
            let path = files::segment_path(&inner.dir, w.first);
            w.file
                .set_len(w.len)
                .and_then(|()| w.file.sync_data())
                .map_err(io_err("cut a failed write from", &path))?;
            w.dirty = false;
        }
        let mut bytes = 0u64;
        for line in lines {
            let len = line.as_ref().len();
            if len > MAX_RECORD_LEN {
                return Err(SpoolError::RecordTooLarge {
                    len,
                    max: MAX_RECORD_LEN,
                });
            }
            bytes += frame_len(len);
        }
        if bytes + SEGMENT_HEADER_LEN > opts.max_bytes {
            return Err(SpoolError::TooLarge {
                bytes,
                max_bytes: opts.max_bytes,
            });
        }
        let first_seq = w.next_seq;
        if lines.is_empty() {
            return Ok(AppendOutcome {
                first_seq,
                records: 0,
                dropped_records: 0,
            });
        }
        if w.len > SEGMENT_HEADER_LEN && w.len + bytes > opts.segment_bytes {
            self.rotate(&mut w)?;
        }
        let mut dropped = 0;
        loop {
            let mut st = lock(&inner.state);
            if st.total_bytes + bytes <= opts.max_bytes {
                break;
            }
            if st.segments.len() > 1 {
                if let Some(s) = st.segments.pop_front() {
                    let lost = st.undelivered(&s);
                    dropped += lost;
                    st.dropped_total += lost;
                    st.total_bytes -= s.bytes;
                    drop(st);
                    files::remove_segment(&inner.dir, s.first)?;
                }
                continue;
            }
            drop(st);
            self.rotate(&mut w)?;
        }

        let w = &mut *w;
        w.buf.clear();
        for (i, line) in lines.iter().enumerate() {
            record::encode(first_seq + i as u64, line.as_ref(), &mut w.buf);
        }
        let path = files::segment_path(&inner.dir, w.first);
        if let Err(e) = w.file.write_all_at(&w.buf, w.len) {
            w.dirty = true;
            return Err(io_err("write to", &path)(e));
        }
        if let Err(e) = w.file.sync_data() {
            w.dirty = true;
            return Err(io_err("fsync", &path)(e));
        }
        w.len += bytes;
        w.next_seq += lines.len() as u64;
        if w.buf.capacity() > 1 << 20 {
            w.buf = Vec::new();
        }
        {
            let mut st = lock(&inner.state);
            if let Some(active) = st.segments.back_mut() {
                active.end = w.next_seq;
                active.bytes = w.len;
            }
            st.total_bytes += bytes;
            st.committed_next = w.next_seq;
        }
        inner.committed.send_replace(w.next_seq);
        Ok(AppendOutcome {
            first_seq,
            records: lines.len() as u64,
            dropped_records: dropped,
        })
    }

    /// Closes the active segment and starts a new one at the writer's next sequence number.
    fn rotate(&self, w: &mut Writer) -> Result<(), SpoolError> {
        let inner = &*self.inner;
        let file = files::create_segment(&inner.dir, &inner.dir_file, w.next_seq)?;
        *w = Writer {
            file,
            first: w.next_seq,
            len: SEGMENT_HEADER_LEN,
            next_seq: w.next_seq,
            dirty: false,
            buf: std::mem::take(&mut w.buf),
        };
        let mut st = lock(&inner.state);
        st.segments.push_back(Segment {
            first: w.first,
            end: w.first,
            bytes: SEGMENT_HEADER_LEN,
        });
        st.total_bytes += SEGMENT_HEADER_LEN;
        Ok(())
    }

    /// Records that `sink` has delivered every record up to and including `upto`: persists
    /// its cursor (atomically) and deletes segments every sink is done with. Acknowledging
    /// an older position is a no-op. If persisting fails the in-memory cursor still moves
    /// (records are not sent twice by this process) and the error is returned; after a crash
    /// those records are sent again.
    pub fn ack(&self, sink: &str, upto: u64) -> Result<(), SpoolError> {
        let i = self.sink_index(sink)?;
        {
            let mut st = lock(&self.inner.state);
            if upto >= st.committed_next {
                return Err(SpoolError::AckBeyondEnd {
                    sink: sink.to_owned(),
                    seq: upto,
                    next: st.committed_next,
                });
            }
            let c = &mut st.cursors[i];
            c.next = c.next.max(upto + 1);
        }
        let slot = &self.inner.sinks[i];
        let _persisting = lock(&slot.persist);
        let next = {
            let st = lock(&self.inner.state);
            let c = &st.cursors[i];
            if c.next == c.persisted {
                return Ok(());
            }
            c.next
        };
        cursor::store(&self.inner.dir_file, &slot.cursor_path, next)
            .map_err(io_err("write cursor", &slot.cursor_path))?;
        let gone = {
            let mut st = lock(&self.inner.state);
            st.cursors[i].persisted = next;
            st.collect_garbage()
        };
        for first in gone {
            if let Err(e) = files::remove_segment(&self.inner.dir, first) {
                // Left on disk but out of the index; the next open finds it fully
                // acknowledged and removes it. Not the ack's failure.
                tracing::warn!(error = %e, "spool: could not remove a delivered segment");
            }
        }
        Ok(())
    }

    /// Records appended but not yet acknowledged by `sink`.
    pub fn pending(&self, sink: &str) -> Result<u64, SpoolError> {
        let i = self.sink_index(sink)?;
        let st = lock(&self.inner.state);
        Ok(st.committed_next.saturating_sub(st.cursors[i].next))
    }

    /// Current figures for the stats line.
    pub fn stats(&self) -> SpoolStats {
        let st = lock(&self.inner.state);
        SpoolStats {
            next_seq: st.committed_next,
            bytes: st.total_bytes,
            segments: st.segments.len(),
            dropped_records: st.dropped_total,
            sinks: self
                .inner
                .sinks
                .iter()
                .zip(&st.cursors)
                .map(|(s, c)| CursorStats {
                    name: s.name.clone(),
                    next: c.next,
                    pending: st.committed_next.saturating_sub(c.next),
                    skipped: c.skipped,
                })
                .collect(),
        }
    }

    /// Watches the sequence number after the last durable record; it changes on every append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    /// The sink names the spool was opened with.
    pub fn sink_names(&self) -> impl Iterator<Item = &str> {
        self.inner.sinks.iter().map(|s| s.name.as_str())
    }

    /// [`Spool::append_batch`] on the blocking thread pool.
    #[cfg(test)]
    pub async fn append_async(&self, lines: Vec<Vec<u8>>) -> Result<AppendOutcome, SpoolError> {
        let spool = self.clone();
        blocking(move || spool.append_batch(&lines)).await
    }

    /// [`Spool::read`] on the blocking thread pool.
    pub async fn read_async(
        &self,
        sink: &str,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, SpoolError> {
        let (spool, sink) = (self.clone(), sink.to_owned());
        blocking(move || spool.read(&sink, max_records, max_bytes)).await
    }

    /// [`Spool::ack`] on the blocking thread pool.
    pub async fn ack_async(&self, sink: &str, upto: u64) -> Result<(), SpoolError> {
        let (spool, sink) = (self.clone(), sink.to_owned());
        blocking(move || spool.ack(&sink, upto)).await
    }

    fn sink_index(&self, sink: &str) -> Result<usize, SpoolError> {
        self.inner
            .sinks
            .iter()
            .position(|s| s.name == sink)
            .ok_or_else(|| SpoolError::UnknownSink(sink.to_owned()))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(SpoolError::Blocking)?
}
