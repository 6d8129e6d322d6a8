//! Throughput of the delivery path (fsync'ed append, read, send, persisted ack) into an
//! in-memory sink, for benchmarks and quick checks on a given disk. A real sink's numbers
//! are bounded by this figure.

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};

use super::{DeliverError, Engine, EngineConfig, Sink, SinkError, Spool, SpoolOptions};

/// Result of [`append_and_deliver`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchReport {
    pub records: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// From the first append until the sink had received the last record.
    pub elapsed: Duration,
}

impl BenchReport {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A sink that accepts everything and counts records.
struct CountingSink {
    count: Arc<AtomicU64>,
    notify: Arc<Notify>,
}

impl Sink for CountingSink {
    fn name(&self) -> &str {
        "bench-counting"
    }

    fn send<'a>(
        &'a mut self,
        batch: &'a [Vec<u8>],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        self.count.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.notify.notify_one();
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Appends `records` lines of `line_len` bytes, `append_batch` per fsync'ed append, to a new
/// spool in `dir` (which should be empty) and waits until a counting sink received all.
/// Needs a tokio runtime (multi-threaded for a representative figure).
pub async fn append_and_deliver(
    dir: &Path,
    records: u64,
    line_len: usize,
    append_batch: usize,
) -> Result<BenchReport, DeliverError> {
    let sink = CountingSink {
        count: Arc::new(AtomicU64::new(0)),
        notify: Arc::new(Notify::new()),
    };
    let (count, notify) = (Arc::clone(&sink.count), Arc::clone(&sink.notify));
    // Big enough that nothing is dropped: every record must arrive.
    let max_bytes = (records * (line_len as u64 + 16) * 2).max(1 << 20);
    let (spool, _report) =
        Spool::open(dir, SpoolOptions::new(max_bytes), &[sink.name().to_owned()])?;
    let (stop, stop_rx) = watch::channel(false);
    let engine = Engine::start(
        &spool,
        vec![Box::new(sink)],
        stop_rx,
        EngineConfig::default(),
    )?;

    let mut line = vec![b'x'; line_len.max(1)];
    if let Some(last) = line.last_mut() {
        *last = b'\n';
    }
    let append_batch = append_batch.max(1) as u64;
    let start = Instant::now();
    let mut appended = 0u64;
    while appended < records {
        let n = append_batch.min(records - appended);
        spool.append_async(vec![line.clone(); n as usize]).await?;
        appended += n;
    }
    // `notify_one` stores a permit when nobody waits, so no wake-up is lost.
    while count.load(Ordering::Relaxed) < records {
        notify.notified().await;
    }
    let elapsed = start.elapsed();
    let _ = stop.send(true);
    engine.join().await?;
    Ok(BenchReport {
        records,
        bytes: records * line.len() as u64,
        elapsed,
    })
}
