//! Network outputs: parses their specs (a bad spec, token or certificate is a start-up error),
//! opens the delivery spools (alerts in `--spool-dir`, forwarded events in its `events/`
//! subdirectory, each with its own bound so an event flood cannot push alerts out) and starts
//! one delivery engine per spool.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::watch;

use super::{
    Format,
    lane::{Lane, LaneCounters, LaneStats},
    target::NetworkSpec,
};
use crate::deliver::{
    Engine, EngineConfig, Sink, SinkStats, Spool, SpoolOptions, SpoolStats, sinks,
};

/// Settings of the network outputs from the command line.
pub struct Config {
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub event_spool_max_bytes: u64,
    /// `--format`, for sinks without `format=`.
    pub format: Format,
    /// `--events`, for sinks without `events=`.
    pub events: bool,
}

/// A spool, its engine and the counters of the lane that appends to it.
struct Delivery {
    spool: Spool,
    engine: Engine,
    counters: Arc<LaneCounters>,
}

/// The running network outputs.
pub struct Forwarding {
    spool_dir: PathBuf,
    alerts: Delivery,
    events: Option<Delivery>,
    stop: watch::Sender<bool>,
}

/// What [`start`] hands to the output stage.
pub struct Lanes {
    pub alerts: Lane,
    pub events: Option<Lane>,
    /// Alerts the spool dropped when opened (it was over a smaller bound).
    pub dropped_at_open: u64,
}

/// Figures of one spool for `agent_stats`.
#[derive(Serialize)]
pub struct DeliveryStats {
    pub spool: SpoolStats,
    pub lane: LaneStats,
    pub sinks: Vec<SinkStats>,
}

/// Figures of the network outputs for `agent_stats`.
#[derive(Serialize)]
pub struct ForwardStats {
    pub spool_dir: String,
    pub alerts: DeliveryStats,
    pub events: Option<DeliveryStats>,
}

/// One network sink: its spec, name and what it gets.
struct Planned {
    spec: sinks::SinkSpec,
    format: Format,
    events: bool,
}

/// Parses every network spec, opens the spools and starts delivering. `None` when there is no
/// network output (then no spool is opened).
pub async fn start(
    specs: &[&NetworkSpec],
    config: &Config,
) -> anyhow::Result<Option<(Forwarding, Lanes)>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let mut planned: Vec<Planned> = Vec::new();
    for raw in specs {
        let spec = sinks::parse(raw.as_str())?;
        if planned.iter().any(|p| p.spec.name() == spec.name()) {
            anyhow::bail!(
                "output `{}` is given twice: each network sink may appear once",
                spec.name()
            );
        }
        planned.push(Planned {
            format: spec.format.unwrap_or(config.format),
            events: spec.events.unwrap_or(config.events),
            spec,
        });
    }
    let (stop, stop_rx) = watch::channel(false);
    let (alerts, alerts_lane, dropped_at_open) = open_delivery(
        "alerts",
        config.spool_dir.clone(),
        config.spool_max_bytes,
        &planned.iter().collect::<Vec<_>>(),
        &stop_rx,
    )
    .await?;
    let event_sinks: Vec<&Planned> = planned.iter().filter(|p| p.events).collect();
    let (events, events_lane) = if event_sinks.is_empty() {
        (None, None)
    } else {
        let (d, lane, _logged) = open_delivery(
            "events",
            config.spool_dir.join("events"),
            config.event_spool_max_bytes,
            &event_sinks,
            &stop_rx,
        )
        .await?;
        (Some(d), Some(lane))
    };
    for p in &planned {
        tracing::info!(
            sink = p.spec.name(),
            format = ?p.format,
            events = p.events,
            "network output"
        );
    }
    let forwarding = Forwarding {
        spool_dir: config.spool_dir.clone(),
        alerts,
        events,
        stop,
    };
    let lanes = Lanes {
        alerts: alerts_lane,
        events: events_lane,
        dropped_at_open,
    };
    Ok(Some((forwarding, lanes)))
}

async fn open_delivery(
    what: &'static str,
    dir: PathBuf,
    max_bytes: u64,
    planned: &[&Planned],
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(Delivery, Lane, u64)> {
    let names: Vec<String> = planned.iter().map(|p| p.spec.name().to_owned()).collect();
    let (spool, report) = Spool::open(&dir, SpoolOptions::new(max_bytes), &names)
        .with_context(|| format!("opening the {what} delivery spool in {}", dir.display()))?;
    for torn in &report.torn {
        tracing::warn!(
            segment = %torn.segment.display(),
            offset = torn.offset,
            discarded_bytes = torn.discarded_bytes,
            reason = %torn.reason,
            "delivery spool: damaged tail cut off (a crash during a write)"
        );
    }
    for sink in &report.forgotten_sinks {
        tracing::warn!(what, sink = %sink, "a sink of an earlier run is no longer configured; its cursor was removed");
    }
    for sink in &report.reset_cursors {
        tracing::warn!(what, sink = %sink, "the cursor of this sink was unreadable; it starts at the oldest spooled record");
    }
    if report.dropped_records > 0 {
        tracing::warn!(
            what,
            dropped = report.dropped_records,
            "delivery spool over its bound at start (smaller --spool-max-bytes): oldest records dropped"
        );
    }
    let pending: u64 = names.iter().map(|n| spool.pending(n).unwrap_or(0)).sum();
    tracing::info!(
        what,
        dir = %dir.display(),
        next_seq = report.next_seq,
        pending,
        "delivery spool open"
    );
    let mut built: Vec<Box<dyn Sink>> = Vec::with_capacity(planned.len());
    for p in planned {
        built.push(sinks::connect(&p.spec, p.format).await?);
    }
    let engine = Engine::start(&spool, built, stop.clone(), EngineConfig::default())?;
    let counters = Arc::new(LaneCounters::default());
    let lane = Lane::new(what, spool.clone(), max_bytes, Arc::clone(&counters));
    let delivery = Delivery {
        spool,
        engine,
        counters,
    };
    Ok((delivery, lane, report.dropped_records))
}

impl Delivery {
    fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            spool: self.spool.stats(),
            lane: self.counters.snapshot(),
            sinks: self.engine.stats(),
        }
    }

    fn pending(&self) -> u64 {
        self.engine.stats().iter().map(|s| s.pending).sum()
    }
}

impl Forwarding {
    pub fn stats(&self) -> ForwardStats {
        ForwardStats {
            spool_dir: self.spool_dir.display().to_string(),
            alerts: self.alerts.stats(),
            events: self.events.as_ref().map(Delivery::stats),
        }
    }

    /// Whether some network sink forwards events.
    pub fn wants_events(&self) -> bool {
        self.events.is_some()
    }

    /// Gives the sinks up to `timeout` to deliver what is pending, then stops them (what is
    /// left stays in the spool for the next start).
    pub async fn stop(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pending = self.alerts.pending() + self.events.as_ref().map_or(0, Delivery::pending);
            if pending == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    pending,
                    "stopping with undelivered records; they stay in the spool and are sent at \
                     the next start"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.stop.send(true);
        for (what, d) in [("alerts", Some(self.alerts)), ("events", self.events)] {
            if let Some(d) = d
                && let Err(e) = d.engine.join().await
            {
                tracing::error!(what, error = %crate::deliver::error_chain(&e), "delivery task failed");
            }
        }
    }
}
