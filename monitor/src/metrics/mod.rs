//! `--metrics-addr`: Prometheus metrics, liveness and readiness over HTTP, for the kubelet's
//! probes and a Prometheus scrape.
//!
//! - [`Metrics`]: what is counted. Events by kind and alerts by rule and severity are counted
//!   where they happen (an atomic add per event); everything else is a typed [`Snapshot`] of
//!   the stages' own counters that the analysis stage publishes every second and after a
//!   reload, read at scrape time by the collector ([`collect`]).
//! - [`Readiness`]: probes attached, rules loaded, spool writable (checked at each request).
//! - [`server`]: the HTTP/1.1 endpoints `/metrics`, `/healthz`, `/readyz` (hyper).

mod collect;
pub mod server;

use std::{
    collections::BTreeMap,
    fs,
    path::PathBuf,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use monitor_common::EventKind;

use crate::{
    output::forward::ForwardStats, policy::PolicyStats, process::runtime::RuntimeStats,
    process::table::TableStats, resolve::HostResolver, sensor::load::KernelCounters,
};

/// Every event kind, in the order of the per-kind counters.
const KINDS: [EventKind; 17] = [
    EventKind::Exec,
    EventKind::Fork,
    EventKind::Exit,
    EventKind::Open,
    EventKind::Unlink,
    EventKind::Rename,
    EventKind::Chmod,
    EventKind::Memfd,
    EventKind::Connect,
    EventKind::Accept,
    EventKind::Bind,
    EventKind::Listen,
    EventKind::Send,
    EventKind::Dns,
    EventKind::Link,
    EventKind::Symlink,
    EventKind::Truncate,
];

fn kind_index(k: EventKind) -> usize {
    match k {
        EventKind::Exec => 0,
        EventKind::Fork => 1,
        EventKind::Exit => 2,
        EventKind::Open => 3,
        EventKind::Unlink => 4,
        EventKind::Rename => 5,
        EventKind::Chmod => 6,
        EventKind::Memfd => 7,
        EventKind::Connect => 8,
        EventKind::Accept => 9,
        EventKind::Bind => 10,
        EventKind::Listen => 11,
        EventKind::Send => 12,
        EventKind::Dns => 13,
        EventKind::Link => 14,
        EventKind::Symlink => 15,
        EventKind::Truncate => 16,
    }
}

/// One network sink's figures (alerts or forwarded events).
#[derive(Clone, Debug, Default)]
pub struct SinkFigures {
    pub sink: String,
    /// `alerts` or `events`.
    pub stream: &'static str,
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
    pub skipped: u64,
    pub failing: bool,
}

/// One spool's figures.
#[derive(Clone, Debug, Default)]
pub struct SpoolFigures {
    pub stream: &'static str,
    pub bytes: u64,
    pub dropped: u64,
}

/// The result of the last rules reload.
#[derive(Clone, Copy, Debug)]
pub struct Reload {
    pub ok: bool,
    /// Seconds since the Unix epoch.
    pub unix_secs: f64,
}

/// The stages' counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub kernel: KernelCounters,
    pub received: u64,
    pub decode_errors: u64,
    pub table: TableStats,
    pub policy: PolicyStats,
    pub runtime: Option<RuntimeStats>,
    pub sinks: Vec<SinkFigures>,
    pub spools: Vec<SpoolFigures>,
    pub ocsf_errors: u64,
    /// Profiles and detections loaded.
    pub profiles: u64,
    pub detections: u64,
    pub reload: Option<Reload>,
}

impl Snapshot {
    /// The network outputs' figures, flattened per sink and spool.
    pub fn set_forwarding(&mut self, f: Option<&ForwardStats>) {
        self.sinks.clear();
        self.spools.clear();
        let Some(f) = f else { return };
        let lanes = [("alerts", Some(&f.alerts)), ("events", f.events.as_ref())];
        for (stream, d) in lanes {
            let Some(d) = d else { continue };
            self.spools.push(SpoolFigures {
                stream,
                bytes: d.spool.bytes,
                dropped: d.spool.dropped_records + d.lane.dropped_full + d.lane.lost,
            });
            for s in &d.sinks {
                self.sinks.push(SinkFigures {
                    sink: s.name.clone(),
                    stream,
                    delivered: s.delivered,
                    failed: s.retries,
                    pending: s.pending,
                    skipped: s.skipped,
                    failing: s.failing,
                });
            }
        }
    }
}

/// Whether the agent can do its work (`/readyz`).
#[derive(Debug, Default)]
pub struct Readiness {
    probes: AtomicBool,
    rules: AtomicBool,
    /// The spool directory, when network outputs write there.
    spool: Mutex<Option<PathBuf>>,
}

impl Readiness {
    pub fn set_probes(&self) {
        self.probes.store(true, Ordering::Release);
    }

    pub fn set_rules(&self) {
        self.rules.store(true, Ordering::Release);
    }

    pub fn set_spool(&self, dir: PathBuf) {
        *lock(&self.spool) = Some(dir);
    }

    /// `Ok` when ready, else why not (one line).
    pub fn check(&self) -> Result<(), String> {
        if !self.probes.load(Ordering::Acquire) {
            return Err("probes not attached yet".into());
        }
        if !self.rules.load(Ordering::Acquire) {
            return Err("rules not loaded yet".into());
        }
        let spool = lock(&self.spool).clone();
        if let Some(dir) = spool {
            // A file created and removed: what the spool itself needs of the directory.
            let probe = dir.join(format!(".readyz-{}", std::process::id()));
            fs::write(&probe, b"")
                .and_then(|()| fs::remove_file(&probe))
                .map_err(|e| format!("spool directory {} not writable: {e}", dir.display()))?;
        }
        Ok(())
    }
}

/// What the endpoints serve. Shared by the analysis stage (which counts and publishes) and
/// the server (which reads).
#[derive(Debug)]
pub struct Metrics {
    events: [AtomicU64; KINDS.len()],
    /// (rule, severity) -> alerts.
    alerts: Mutex<BTreeMap<(String, &'static str), u64>>,
    snapshot: Mutex<Snapshot>,
    pub ready: Readiness,
    resolver: Option<HostResolver>,
    kernel_release: String,
}

impl Metrics {
    pub fn new(resolver: Option<HostResolver>) -> Self {
        let kernel_release = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            alerts: Mutex::new(BTreeMap::new()),
            snapshot: Mutex::new(Snapshot::default()),
            ready: Readiness::default(),
            resolver,
            kernel_release,
        }
    }

    /// One event of this kind reached the analysis stage.
    pub fn event(&self, kind: EventKind) {
        self.events[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// One alert (not counting folded repeats).
    pub fn alert(&self, rule: &str, severity: &'static str) {
        let mut alerts = lock(&self.alerts);
        match alerts.get_mut(&(rule.to_owned(), severity)) {
            Some(n) => *n += 1,
            None => {
                alerts.insert((rule.to_owned(), severity), 1);
            }
        }
    }

    /// Replaces the published counters, keeping the last reload's result unless `s` has one.
    pub fn publish(&self, mut s: Snapshot) {
        let mut current = lock(&self.snapshot);
        if s.reload.is_none() {
            s.reload = current.reload;
        }
        *current = s;
    }

    /// Records a rules reload's result.
    pub fn reloaded(&self, ok: bool) {
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        lock(&self.snapshot).reload = Some(Reload { ok, unix_secs });
    }

    /// The Prometheus text (OpenMetrics) of everything.
    pub fn render(self: &std::sync::Arc<Self>) -> String {
        collect::render(self)
    }
}

/// A poisoned lock still holds valid counters: a panicking holder only added to them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
