//! The delivery engine: one tokio task per sink. Each task reads a batch at its cursor in the
//! spool, sends it until the sink accepts it (retrying the same batch with exponential
//! backoff and full jitter), acknowledges it in the spool, and moves on. Tasks share nothing
//! but the spool, so a slow or failing sink holds back only itself.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use super::{DeliverError, Sink, SinkError, Spool, SpoolError, error_chain};

/// Tuning of the delivery tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Backoff after the first failure; doubles per consecutive failure.
    pub backoff_initial: Duration,
    /// Longest backoff (also used right away after a permanent error).
    pub backoff_max: Duration,
    /// On shutdown, how long an in-flight send may still take before it is abandoned.
    pub shutdown_grace: Duration,
    /// Soft bound on the payload bytes of one batch (a single larger record still goes alone).
    pub batch_max_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            batch_max_bytes: 1 << 20,
        }
    }
}

/// Figures of one sink for the agent's stats line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    pub name: String,
    /// Records the receiver acknowledged.
    pub delivered: u64,
    pub batches: u64,
    /// Failed send attempts.
    pub retries: u64,
    /// Records the bounded spool dropped before this sink got them.
    pub skipped: u64,
    /// Records appended and not yet acknowledged.
    pub pending: u64,
    /// Whether the last attempt failed.
    pub failing: bool,
    /// The last failure, with its causes (sink errors carry no secrets).
    pub last_error: Option<String>,
}

/// Running delivery tasks.
pub struct Engine {
    spool: Spool,
    tasks: Vec<(String, JoinHandle<()>)>,
    stats: Vec<Arc<Mutex<SinkStats>>>,
}

impl Engine {
    /// Spawns one task per sink on the current tokio runtime. Every sink's name must be one
    /// the spool was opened with. Tasks stop once `shutdown` becomes true (or its sender is
    /// dropped), after letting an in-flight send finish within `shutdown_grace`.
    pub fn start(
        spool: &Spool,
        sinks: Vec<Box<dyn Sink>>,
        shutdown: watch::Receiver<bool>,
        config: EngineConfig,
    ) -> Result<Self, DeliverError> {
        let mut names: Vec<String> = Vec::with_capacity(sinks.len());
        for sink in &sinks {
            let name = sink.name().to_owned();
            if names.contains(&name) {
                return Err(DeliverError::DuplicateSink(name));
            }
            if !spool.sink_names().any(|n| n == name) {
                return Err(DeliverError::UnregisteredSink(name));
            }
            names.push(name);
        }
        let mut engine = Self {
            spool: spool.clone(),
            tasks: Vec::with_capacity(sinks.len()),
            stats: Vec::with_capacity(sinks.len()),
        };
        for (sink, name) in sinks.into_iter().zip(names) {
            let stats = Arc::new(Mutex::new(SinkStats {
                name: name.clone(),
                ..SinkStats::default()
            }));
            let task = Task {
                backoff: Backoff::new(&config, &name),
                sink,
                name: name.clone(),
                spool: spool.clone(),
                shutdown: shutdown.clone(),
                config: config.clone(),
                stats: Arc::clone(&stats),
                failed_attempts: 0,
                read_failing: false,
                ack_failing: false,
            };
            engine.tasks.push((name, tokio::spawn(task.run())));
            engine.stats.push(stats);
        }
        Ok(engine)
    }

    /// Current figures of every sink, in the order the sinks were given.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.stats
            .iter()
            .map(|s| {
                let mut s = s.lock().unwrap_or_else(PoisonError::into_inner).clone();
                s.pending = self.spool.pending(&s.name).unwrap_or(0);
                s
            })
            .collect()
    }

    /// Waits for every task to stop (after shutdown was signalled).
    pub async fn join(self) -> Result<(), DeliverError> {
        let mut first_error = None;
        for (sink, handle) in self.tasks {
            if let Err(source) = handle.await {
                first_error.get_or_insert(DeliverError::TaskFailed { sink, source });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Resolves once shutdown is requested (true) or its sender is gone.
async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    // Err means the sender was dropped: treat as a request to stop.
    let _ = rx.wait_for(|stop| *stop).await;
}

struct Task {
    sink: Box<dyn Sink>,
    name: String,
    spool: Spool,
    shutdown: watch::Receiver<bool>,
    config: EngineConfig,
    stats: Arc<Mutex<SinkStats>>,
    backoff: Backoff,
    /// Consecutive failed sends (0 when the last one succeeded).
    failed_attempts: u64,
    /// Reading the spool failed last time.
    read_failing: bool,
    /// Persisting the cursor failed last time.
    ack_failing: bool,
}

/// How one send attempt ended.
enum Attempt {
    Done(Result<(), SinkError>),
    /// Shutdown came during the send, which then ended within the grace period.
    DoneStopping(Result<(), SinkError>),
    /// Shutdown came during the send, which did not end within the grace period.
    Abandoned,
}

impl Task {
    async fn run(mut self) {
        let mut committed = self.spool.subscribe();
        let max_batch = self.sink.max_batch().max(1);
        loop {
            if *self.shutdown.borrow() || self.shutdown.has_changed().is_err() {
                return;
            }
            // Mark the current value seen before reading, so an append racing with the read
            // still wakes the wait below.
            committed.borrow_and_update();
            let read = self
                .spool
                .read_async(&self.name, max_batch, self.config.batch_max_bytes)
                .await;
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    if !std::mem::replace(&mut self.read_failing, true) {
                        tracing::error!(
                            sink = %self.name,
                            error = %error_chain(&e),
                            "delivery: reading the spool failed; retrying with backoff"
                        );
                    }
                    self.update(|s| s.last_error = Some(error_chain(&e)));
                    if !self.pause().await {
                        return;
                    }
                    continue;
                }
            };
            if std::mem::replace(&mut self.read_failing, false) {
                tracing::info!(sink = %self.name, "delivery: spool readable again");
                self.backoff.reset();
            }
            if batch.skipped > 0 {
                self.update(|s| s.skipped += batch.skipped);
                tracing::warn!(
                    sink = %self.name,
                    records = batch.skipped,
                    "spool was full: records dropped before this sink received them"
                );
            }
            let Some(last) = batch.records.last().map(|r| r.seq) else {
                tokio::select! {
                    changed = committed.changed() => if changed.is_err() { return },
                    () = stop_requested(&mut self.shutdown) => return,
                }
                continue;
            };
            let lines: Vec<Vec<u8>> = batch.records.into_iter().map(|r| r.line).collect();
            if !self.deliver(&lines, last).await {
                return;
            }
        }
    }

    /// Sends `lines` until the sink accepts them, then acknowledges up to `last`. False when
    /// the task must stop.
    async fn deliver(&mut self, lines: &[Vec<u8>], last: u64) -> bool {
        loop {
            let (result, stopping) = match self.attempt(lines).await {
                Attempt::Done(r) => (r, false),
                Attempt::DoneStopping(r) => (r, true),
                Attempt::Abandoned => return false,
            };
            match result {
                Ok(()) => {
                    self.sent(lines.len() as u64);
                    let acked = self.spool.ack_async(&self.name, last).await;
                    self.acked(acked);
                    return !stopping;
                }
                Err(e) => {
                    self.send_failed(&e);
                    if stopping || !self.pause().await {
                        return false;
                    }
                }
            }
        }
    }

    async fn attempt(&mut self, lines: &[Vec<u8>]) -> Attempt {
        let mut send = self.sink.send(lines);
        tokio::select! {
            biased;
            r = &mut send => return Attempt::Done(r),
            () = stop_requested(&mut self.shutdown) => {}
        }
        match tokio::time::timeout(self.config.shutdown_grace, send).await {
            Ok(r) => Attempt::DoneStopping(r),
            Err(_elapsed) => {
                tracing::warn!(
                    sink = %self.name,
                    records = lines.len(),
                    "shutdown: abandoned a batch still in flight; it is sent again next start"
                );
                Attempt::Abandoned
            }
        }
    }

    /// Sleeps the next backoff delay; false if shutdown came first.
    async fn pause(&mut self) -> bool {
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = stop_requested(&mut self.shutdown) => false,
        }
    }

    fn update(&self, f: impl FnOnce(&mut SinkStats)) {
        f(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn sent(&mut self, records: u64) {
        self.update(|s| {
            s.delivered += records;
            s.batches += 1;
            s.failing = false;
        });
        let streak = std::mem::take(&mut self.failed_attempts);
        if streak > 0 {
            tracing::info!(sink = %self.name, failed_attempts = streak, "delivery recovered");
        }
        self.backoff.reset();
    }

    fn send_failed(&mut self, e: &SinkError) {
        let chain = error_chain(e);
        if e.is_permanent() {
            self.backoff.escalate();
        }
        // Logged once per failure streak; the stats carry the latest error.
        if self.failed_attempts == 0 {
            if e.is_permanent() {
                tracing::error!(
                    sink = %self.name,
                    error = %chain,
                    "delivery failing; retrying at the longest backoff"
                );
            } else {
                tracing::warn!(
                    sink = %self.name,
                    error = %chain,
                    "delivery failing; retrying with backoff"
                );
            }
        }
        self.failed_attempts += 1;
        self.update(|s| {
            s.retries += 1;
            s.failing = true;
            s.last_error = Some(chain);
        });
    }

    /// Notes the result of persisting the cursor after a delivered batch. On failure the
    /// records were still delivered and the in-memory cursor moved on; only the persisted
    /// cursor lags, so a crash before the next successful ack duplicates, never loses.
    fn acked(&mut self, result: Result<(), SpoolError>) {
        match result {
            Ok(()) => {
                if std::mem::replace(&mut self.ack_failing, false) {
                    tracing::info!(sink = %self.name, "delivery: cursor persisted again");
                }
            }
            Err(e) => {
                let chain = error_chain(&e);
                if !std::mem::replace(&mut self.ack_failing, true) {
                    tracing::error!(
                        sink = %self.name,
                        error = %chain,
                        "delivery: persisting the cursor failed; a restart may resend records"
                    );
                }
                self.update(|s| s.last_error = Some(chain));
            }
        }
    }
}

/// Exponential backoff with full jitter: the n-th consecutive delay is uniform in
/// `[0, min(max, initial * 2^n)]`.
struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    fn new(config: &EngineConfig, name: &str) -> Self {
        Self {
            initial: config.backoff_initial,
            max: config.backoff_max,
            attempt: 0,
            rng: RandomState::new().hash_one(name),
        }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Jumps to the longest delay.
    fn escalate(&mut self) {
        self.attempt = 32;
    }

    fn next_delay(&mut self) -> Duration {
        let cap = self
            .initial
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1).min(32);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.random() % cap_nanos.saturating_add(1))
    }

    /// splitmix64: enough for jitter, which only has to decorrelate retries.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Backoff, EngineConfig};

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let config = EngineConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            ..EngineConfig::default()
        };
        let mut b = Backoff::new(&config, "t");
        let mut caps = Vec::new();
        for n in 0..12u32 {
            let cap = Duration::from_millis(100)
                .saturating_mul(2u32.pow(n))
                .min(Duration::from_secs(30));
            assert!(b.next_delay() <= cap);
            caps.push(cap);
        }
        assert_eq!(caps.last(), Some(&Duration::from_secs(30)));
        // Jitter: many draws at the cap are not all equal.
        b.escalate();
        let draws: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(draws.iter().any(|d| *d != draws[0]));
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(30)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
