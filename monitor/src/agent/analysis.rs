//! The analysis stage: for each decoded event, process enrichment (the process table) then the
//! policy (profiles, detections, learning sessions, alerts, enforcement), in one task. The two
//! share that task because the policy reads the process table synchronously for every event
//! (lineage, parents' executables); a channel between them would copy the table's answers or
//! lock it per event. The stage owns the sensor handle, which enforcement and watching write to.
//!
//! It reads events from the sensor stage's channel and sends typed records to the output stage;
//! ticks fold repeated alerts and take statistics; SIGHUP reloads the rules; control requests
//! start and finish learning sessions. On stop it has the kernel stop sending, drains what the
//! sensor stage still reads, and writes the last statistics.

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use serde::Serialize;
use tokio::{
    signal::unix::{Signal, SignalKind},
    sync::{mpsc, watch},
    task::JoinHandle,
};

mod reload;

use super::{
    control::Request,
    enforcing,
    learning::{self, Learning},
    rule_files::RuleFiles,
};
use crate::{
    clock::WallTime,
    metrics::{Metrics, Snapshot},
    output::{
        Out,
        forward::{ForwardStats, Forwarding},
    },
    policy::{Policy, PolicyStats},
    process::{
        runtime::{self, Answer, RuntimeStats},
        stage::Enricher,
    },
    record::Record,
    sensor::{Event, Sensor, load::KernelCounters, reader::ReaderStats},
};

/// The stage's state.
pub struct Analysis {
    pub enricher: Enricher,
    pub policy: Policy,
    pub sensor: Sensor,
    pub learning: Learning,
    /// The marker that says enforcement is on (cleared at a clean stop).
    pub marker: Option<enforcing::Marker>,
    /// Whether enforcement is loaded (a reload may add enforce-mode profiles).
    pub enforce: bool,
    pub no_enforce: bool,
    pub spool_dir: PathBuf,
    /// Whether raw events are written (`--events`, or a sink that forwards them).
    pub want_events: bool,
    /// `--metrics-addr`: what is counted and published there.
    pub metrics: Option<Arc<Metrics>>,
    /// Records handed to the output stage.
    written: u64,
    last_drops: u64,
}

/// What the stage reads from and writes to.
pub struct Io<'a> {
    /// Batches of decoded events, in order.
    pub events: mpsc::Receiver<Vec<Event>>,
    pub out: mpsc::Sender<Out>,
    pub requests: Option<mpsc::Receiver<Request>>,
    pub reader_stats: Arc<ReaderStats>,
    /// Stops the sensor stage's reader (after its last drain).
    pub reader_stop: watch::Sender<bool>,
    pub reader: JoinHandle<std::io::Result<()>>,
    /// Stops the tasks besides (the host name resolver).
    pub shutdown: watch::Sender<bool>,
    /// Stop on SIGINT/SIGTERM (else only on [`Request::Shutdown`]).
    pub signals: bool,
    /// Reloaded on SIGHUP.
    pub rule_paths: Vec<PathBuf>,
    /// `--stats-interval` seconds (0: only at shutdown).
    pub stats_interval: u64,
    /// The network outputs, for their figures in the statistics.
    pub forwarding: Option<&'a Forwarding>,
    /// The container runtime's answers (with a runtime to ask).
    pub identities: Option<mpsc::Receiver<Answer>>,
    /// `--watch-rules`: reload when the rule files change.
    pub watch_rules: bool,
}

/// One `agent_stats` line.
#[derive(Serialize)]
struct Stats<'a> {
    kind: &'static str,
    time: String,
    reason: &'a str,
    kernel: KernelCounters,
    received: u64,
    decode_errors: u64,
    lines_written: u64,
    processes: usize,
    /// The process table: size, bound, evictions, expiries, seeding errors.
    process_table: crate::process::table::TableStats,
    /// Second exit events of one process, dropped.
    duplicate_exits: u64,
    /// Container runtime lookups (absent without a runtime).
    runtime: Option<RuntimeStats>,
    policy: PolicyStats,
    /// Local records not convertible to OCSF (written in native form).
    ocsf_errors: u64,
    /// Lines local outputs could not write (a full disk): lost there.
    local_lines_lost: u64,
    /// Network outputs: spools and sinks.
    delivery: Option<ForwardStats>,
    /// The agent's resident memory now and at its peak (bytes; absent when /proc is not
    /// readable).
    memory: Option<super::memory::Memory>,
}

impl Analysis {
    pub fn new(
        enricher: Enricher,
        policy: Policy,
        sensor: Sensor,
        spool_dir: PathBuf,
        no_enforce: bool,
        want_events: bool,
    ) -> Self {
        let enforce = sensor.enforcer.is_some();
        let marker = (enforce && policy.rules().has_enforce_profiles())
            .then(|| enforcing::Marker::start(&spool_dir));
        Self {
            enricher,
            policy,
            sensor,
            learning: Learning::default(),
            marker,
            enforce,
            no_enforce,
            spool_dir,
            want_events,
            metrics: None,
            written: 0,
            last_drops: 0,
        }
    }

    /// Runs until a signal or a shutdown request, then drains and writes the last statistics.
    /// Returns the stage, for the caller to detach the probes after the output stage is done.
    pub async fn run(mut self, mut io: Io<'_>) -> anyhow::Result<Self> {
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let period = Duration::from_secs(io.stats_interval.max(1));
        let mut stats_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut fold_tick = tokio::time::interval(Duration::from_secs(1));
        let mut rules_tick = tokio::time::interval(RULES_POLL);
        let mut rule_files = RuleFiles::read(&io.rule_paths);
        loop {
            tokio::select! {
                batch = io.events.recv() => {
                    let Some(batch) = batch else { break };
                    let records = self.on_events(batch);
                    self.send(&io.out, records).await?;
                }
                _ = fold_tick.tick() => {
                    let records = self.on_tick();
                    self.send(&io.out, records).await?;
                    to_output(&io.out, Out::Tick).await?;
                    self.publish(&io);
                }
                _ = rules_tick.tick(), if io.watch_rules => {
                    let now = RuleFiles::read(&io.rule_paths);
                    if now != rule_files {
                        tracing::info!("rule files changed: reloading");
                        rule_files = now;
                        self.reload(&io.rule_paths);
                        self.publish(&io);
                    }
                }
                _ = stats_tick.tick(), if io.stats_interval > 0 => {
                    self.warn_drops();
                    let stats = self.stats("interval", &io);
                    to_output(&io.out, stats).await?;
                }
                answer = next_of(&mut io.identities) => {
                    let Some(answer) = answer else {
                        io.identities = None;
                        continue;
                    };
                    let records = self.on_identity(answer);
                    self.send(&io.out, records).await?;
                }
                req = next_request(&mut io.requests) => {
                    let Some(req) = req else {
                        io.requests = None;
                        continue;
                    };
                    if !self.learning.handle(req, &mut self.policy, &self.enricher, &mut self.sensor) {
                        break;
                    }
                }
                _ = sleep_until(self.learning.next_check()) => {
                    let progress = learning::Progress {
                        drained_ns: io.reader_stats.drained_ns.load(Ordering::Acquire),
                        queue_empty: io.events.is_empty(),
                    };
                    self.learning.finish_due(progress, &mut self.policy, &mut self.sensor);
                }
                _ = sighup.recv() => {
                    self.reload(&io.rule_paths);
                    self.publish(&io);
                }
                _ = sigint.recv(), if io.signals => break,
                _ = sigterm.recv(), if io.signals => break,
            }
        }
        self.stop(io).await
    }

    /// Enrichment, then the policy: the event's records (the event when wanted, its alerts).
    /// An event of a container the runtime has not named yet waits for the answer.
    fn on_event(&mut self, mut ev: Event) -> Vec<Record> {
        if let Some(m) = &self.metrics {
            m.event(ev.kind());
        }
        if !self.enricher.enrich(&mut ev) {
            return Vec::new();
        }
        match self.enricher.identify(ev) {
            Some(ev) => self.judge(ev),
            None => Vec::new(),
        }
    }

    /// A batch of the sensor stage's events, in order: one turn of the stage's loop per batch,
    /// not per event, and its records handed on together.
    fn on_events(&mut self, batch: Vec<Event>) -> Vec<Record> {
        let mut records = Vec::with_capacity(if self.want_events { batch.len() } else { 0 });
        for ev in batch {
            records.extend(self.on_event(ev));
        }
        records
    }

    /// The runtime named a container: the events that waited for it go on, in order.
    fn on_identity(&mut self, answer: Answer) -> Vec<Record> {
        let waiting = self.enricher.identity_answered(answer);
        waiting.into_iter().flat_map(|ev| self.judge(ev)).collect()
    }

    /// The policy: the event's records (the event when wanted, its alerts).
    fn judge(&mut self, mut ev: Event) -> Vec<Record> {
        let alerts = self
            .policy
            .handle(&mut ev, self.enricher.table(), self.sensor.watched());
        enforcing::apply(&mut self.policy, &mut self.sensor);
        let serving = self.policy.take_serving_now();
        if !serving.is_empty()
            && let Err(e) = self.sensor.forget_opens(&serving)
        {
            tracing::warn!(error = %e, "could not reset the open dedupe of serving workloads");
        }
        if let Some(m) = &self.metrics {
            for a in &alerts {
                m.alert(&a.rule, severity_word(&a.severity));
            }
        }
        let mut records = Vec::with_capacity(alerts.len() + 1);
        if self.want_events {
            records.push(Record::from(ev));
        }
        records.extend(alerts.into_iter().map(Record::from));
        records
    }

    /// Once a second: folded alerts whose window closed, and enforcement's delayed work.
    fn on_tick(&mut self) -> Vec<Record> {
        let repeats = self.policy.tick(WallTime::now(), self.enricher.table());
        enforcing::apply(&mut self.policy, &mut self.sensor);
        repeats.into_iter().map(Record::from).collect()
    }

    /// The stop: the programs stop sending (and count what they no longer send); once those
    /// running now are done, the reader drains the ring buffer one last time, so the last
    /// `agent_stats` accounts for every record (emitted = received + drops).
    async fn stop(mut self, mut io: Io<'_>) -> anyhow::Result<Self> {
        tracing::info!("shutting down");
        if let Err(e) = self.sensor.stop_emitting() {
            tracing::warn!(error = %e, "cannot stop the kernel programs' output; the last counts may differ");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A watch send fails only when its task has already ended: nothing to stop then.
        let _ = io.reader_stop.send(true);
        let _ = io.shutdown.send(true);
        while let Some(batch) = io.events.recv().await {
            let records = self.on_events(batch);
            self.send(&io.out, records).await?;
        }
        // Events waiting for the runtime: its answers (each comes within the lookup timeout),
        // then whatever still waits goes on without names.
        let deadline = tokio::time::Instant::now() + runtime::LOOKUP_TIMEOUT * 2;
        while self.enricher.has_parked() {
            let Some(rx) = io.identities.as_mut() else {
                break;
            };
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(answer)) => {
                    let records = self.on_identity(answer);
                    self.send(&io.out, records).await?;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let released = self.enricher.release_parked();
        let records: Vec<Record> = released.into_iter().flat_map(|ev| self.judge(ev)).collect();
        self.send(&io.out, records).await?;
        // Sessions still running end with everything recorded: their clients get the outcome.
        self.learning.finish_all(&mut self.policy, &mut self.sensor);
        let repeats: Vec<Record> = self
            .policy
            .flush(WallTime::now())
            .into_iter()
            .map(Record::from)
            .collect();
        self.send(&io.out, repeats).await?;
        match (&mut io.reader).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the ring buffer reader failed"),
            Err(e) => tracing::error!(error = %e, "the ring buffer reader task ended abnormally"),
        }
        let c = self.sensor.counters();
        if c.ringbuf_drops > 0 {
            tracing::warn!(
                total = c.ringbuf_drops,
                "kernel ring buffer drops during this run"
            );
        }
        let stats = self.stats("shutdown", &io);
        to_output(&io.out, stats).await?;
        Ok(self)
    }

    /// Hands records to the output stage, counting them (see [`Out::records`]).
    async fn send(&mut self, out: &mpsc::Sender<Out>, records: Vec<Record>) -> anyhow::Result<()> {
        self.written += records.len() as u64;
        for message in Out::records(records) {
            to_output(out, message).await?;
        }
        Ok(())
    }

    /// The stages' counters, for `--metrics-addr`.
    fn publish(&self, io: &Io<'_>) {
        let Some(m) = &self.metrics else { return };
        let rules = self.policy.rules();
        let mut s = Snapshot {
            kernel: self.sensor.counters(),
            received: io.reader_stats.received.load(Ordering::Relaxed),
            decode_errors: io.reader_stats.decode_errors.load(Ordering::Relaxed),
            table: self.enricher.table().stats(),
            policy: self.policy.stats(),
            runtime: self.enricher.runtime_stats(),
            ocsf_errors: crate::ocsf::OCSF_ERRORS.load(Ordering::Relaxed),
            profiles: rules.profile_count() as u64,
            detections: rules.detection_count() as u64,
            ..Snapshot::default()
        };
        s.set_forwarding(io.forwarding.map(Forwarding::stats).as_ref());
        m.publish(s);
    }

    fn warn_drops(&mut self) {
        let c = self.sensor.counters();
        if c.ringbuf_drops > self.last_drops {
            tracing::warn!(
                dropped = c.ringbuf_drops - self.last_drops,
                total = c.ringbuf_drops,
                "kernel ring buffer full: events dropped (raise --ring-buffer-size)"
            );
            self.last_drops = c.ringbuf_drops;
        }
    }

    /// The `agent_stats` record: every stage's counters.
    fn stats(&self, reason: &str, io: &Io<'_>) -> Out {
        let stats = serde_json::to_value(Stats {
            kind: "agent_stats",
            time: crate::clock::now_rfc3339(),
            reason,
            kernel: self.sensor.counters_by_process(),
            received: io.reader_stats.received.load(Ordering::Relaxed),
            decode_errors: io.reader_stats.decode_errors.load(Ordering::Relaxed),
            lines_written: self.written,
            processes: self.enricher.len(),
            process_table: self.enricher.table().stats(),
            duplicate_exits: self.enricher.duplicate_exits(),
            runtime: self.enricher.runtime_stats(),
            policy: self.policy.stats(),
            ocsf_errors: crate::ocsf::OCSF_ERRORS.load(Ordering::Relaxed),
            local_lines_lost: crate::output::stage::LOCAL_LINES_LOST.load(Ordering::Relaxed),
            delivery: io.forwarding.map(Forwarding::stats),
            memory: super::memory::Memory::of_self(),
        });
        // Serialising plain counters cannot fail; should it, the line says so.
        let stats = stats.unwrap_or_else(
            |e| serde_json::json!({ "kind": "agent_stats", "error": e.to_string() }),
        );
        Out::Records(vec![Record::Stats(stats)])
    }
}

/// How often `--watch-rules` looks at the rule files.
const RULES_POLL: Duration = Duration::from_secs(2);

/// A severity's word as a `'static` label.
fn severity_word(s: &str) -> &'static str {
    match s {
        "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "critical" => "critical",
        _ => "other",
    }
}

fn signal(kind: SignalKind) -> anyhow::Result<Signal> {
    Ok(tokio::signal::unix::signal(kind)?)
}

/// Hands `out` to the output stage. The stage having stopped is an error: what it no longer
/// takes would be lost silently.
async fn to_output(tx: &mpsc::Sender<Out>, out: Out) -> anyhow::Result<()> {
    tx.send(out)
        .await
        .map_err(|_| anyhow::anyhow!("the output stage stopped: records can no longer be written"))
}

/// The next request, or never when there is no channel.
async fn next_request(rx: &mut Option<mpsc::Receiver<Request>>) -> Option<Request> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The next item of an optional channel, or never when there is none.
async fn next_of<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `due`, or forever.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
