//! `monitor run`: builds the pipeline sensor -> process enrichment -> policy (profiles,
//! detections, learning sessions, alerts) -> output stage (delivery spools, then local outputs;
//! network sinks deliver from the spools) and runs it until SIGINT or SIGTERM, then drains,
//! writes final statistics, gives the network sinks a moment to deliver and detaches the
//! probes. SIGHUP reloads the rules; a bad new rule set leaves the old one running (learning
//! sessions go on either way). Learning requests come from the control socket (`control`), or
//! from `monitor learn` in the same process when no agent runs.

mod commands;
pub mod control;
mod enforcing;
mod learning;

pub use commands::{floor, rules_check};

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;
use tokio::{signal::unix::SignalKind, sync::mpsc};

use control::Request;
use learning::Learning;

use crate::{
    cli::{RunArgs, default_rules},
    clock::WallTime,
    output::{
        self, Out, OutputSpec, Stage,
        forward::{self, ForwardStats},
    },
    policy::{Policy, PolicyStats},
    process::stage::Enricher,
    record::Record,
    resolve::HostResolver,
    rules::RuleSet,
    sensor::{Event, Sensor, SensorConfig, load::KernelCounters, reader},
};

/// Capacity of the channels between stages (events).
const CHANNEL: usize = 8192;
/// How long start-up waits for the first DNS answers of profile hosts.
const FIRST_RESOLVE: Duration = Duration::from_secs(3);
/// How long a stopping agent gives learning clients to receive their outcomes.
const CLIENT_GRACE: Duration = Duration::from_secs(2);

/// The async runtime every pipeline runs on.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `monitor run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let control = (!args.no_control_socket).then(|| args.control_socket.clone());
    runtime()?.block_on(run_pipeline(
        args,
        Options {
            requests: None,
            control,
            signals: true,
            quiet: false,
        },
    ))
}

/// How a pipeline runs besides its arguments.
pub struct Options {
    /// Learning requests (and, in process, shutdown).
    pub requests: Option<mpsc::Receiver<Request>>,
    /// Serve learning requests on this unix socket, once everything is attached.
    pub control: Option<PathBuf>,
    /// Stop on SIGINT/SIGTERM (else only on [`Request::Shutdown`]).
    pub signals: bool,
    /// Write no records at all (`monitor learn` on its own).
    pub quiet: bool,
}

/// The next request, or never when there is no channel.
async fn next_request(rx: &mut Option<mpsc::Receiver<Request>>) -> Option<Request> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

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
    policy: PolicyStats,
    /// Local records not convertible to OCSF (written in native form).
    ocsf_errors: u64,
    /// Network outputs: spools and sinks.
    delivery: Option<ForwardStats>,
}

fn rule_paths(args: &RunArgs) -> Vec<PathBuf> {
    if args.rules.is_empty() {
        default_rules()
    } else {
        args.rules.clone()
    }
}

/// Runs the pipeline until a signal (with `opts.signals`) or a shutdown request.
pub async fn run_pipeline(args: RunArgs, opts: Options) -> anyhow::Result<()> {
    let Options {
        mut requests,
        control,
        signals,
        quiet,
    } = opts;
    let paths = rule_paths(&args);
    let rules = Arc::new(RuleSet::load(&paths).context("the rules are invalid; not starting")?);
    let network: Vec<_> = args
        .outputs
        .iter()
        .filter_map(|o| match o {
            OutputSpec::Network(n) => Some(n),
            _ => None,
        })
        .collect();
    let forward_config = forward::Config {
        spool_dir: args.spool_dir.clone(),
        spool_max_bytes: args.spool_max_bytes,
        event_spool_max_bytes: args.event_spool_max_bytes,
        format: args.format,
        events: args.events,
    };
    let (forwarding, lanes) = forward::start(&network, &forward_config).await?.unzip();
    let locals = if quiet {
        Vec::new()
    } else {
        output::open_local(&args.outputs, args.format, args.events)?
    };
    let want_events = args.events || forwarding.as_ref().is_some_and(|f| f.wants_events());
    let record_everything = want_events || args.watch_all;
    let config = sensor_config(&args, &rules, want_events);

    let resolver = HostResolver::new();
    resolver.set_hosts(rules.hosts());
    let _ = tokio::time::timeout(FIRST_RESOLVE, resolver.resolve_now()).await;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let resolver_task = tokio::spawn(resolver.clone().run(shutdown_rx));

    let mut enricher = Enricher::new(args.process_table_size);
    let mut sensor = Sensor::load(&config)?;
    let seeded = enricher.seed();
    let fold = Duration::from_secs(args.alert_fold_secs);
    let enforce = sensor.enforcer.is_some();
    enforcing::warn_uncompiled(&rules);
    let seed = enforce.then_some(config.hash_seed);
    let mut policy = Policy::new(rules, resolver, record_everything, fold, seed);
    policy.seed(enricher.table(), sensor.watched());
    enforcing::apply(&mut policy, &mut sensor);
    let mut marker = (enforce && policy.rules().has_enforce_profiles())
        .then(|| enforcing::Marker::start(&args.spool_dir));
    let mut learning = Learning::default();
    learning::switch(&policy, &mut sensor);
    tracing::info!(
        programs = sensor.program_count(),
        processes = seeded,
        profiled = policy.stats().profiled_processes,
        detections = policy.rules().detection_count(),
        "probes attached"
    );

    let ring = sensor.events.take().context("ring buffer already taken")?;
    let reader_stats = Arc::new(reader::ReaderStats::default());
    let (ev_tx, mut ev_rx) = mpsc::channel(CHANNEL);
    let (line_tx, line_rx) = mpsc::channel::<Out>(CHANNEL);
    let (reader_stop_tx, reader_stop_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(reader::run(
        ring,
        ev_tx,
        reader_stats.clone(),
        reader_stop_rx,
    ));
    let stage = Stage::new(locals, lanes, &args.spool_dir);
    let writer = std::thread::Builder::new()
        .name("output".into())
        .spawn(move || stage.run(line_rx))
        .context("starting the output thread")?;

    let socket = match control {
        Some(path) => {
            let (tx, rx) = mpsc::channel(16);
            requests = Some(rx);
            Some(control::listen(&path, tx).await?)
        }
        None => None,
    };
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(SignalKind::hangup())?;
    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut stats_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut fold_tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_drops = 0u64;
    let mut written = 0u64;

    let stats_line =
        |reason: &str, sensor: &Sensor, enricher: &Enricher, written: u64, policy: PolicyStats| {
            let stats = serde_json::to_value(Stats {
                kind: "agent_stats",
                time: crate::clock::now_rfc3339(),
                reason,
                kernel: sensor.counters(),
                received: reader_stats.received.load(Ordering::Relaxed),
                decode_errors: reader_stats.decode_errors.load(Ordering::Relaxed),
                lines_written: written,
                processes: enricher.len(),
                process_table: enricher.table().stats(),
                duplicate_exits: enricher.duplicate_exits(),
                policy,
                ocsf_errors: crate::ocsf::OCSF_ERRORS.load(Ordering::Relaxed),
                delivery: forwarding.as_ref().map(forward::Forwarding::stats),
            });
            // Serialising plain counters cannot fail; should it, the line says so.
            let stats = stats.unwrap_or_else(
                |e| serde_json::json!({ "kind": "agent_stats", "error": e.to_string() }),
            );
            Out::Record(Record::Stats(stats))
        };

    let handle = |ev: Event, enricher: &mut Enricher, policy: &mut Policy, sensor: &mut Sensor| {
        let mut ev = ev;
        if !enricher.enrich(&mut ev) {
            return Vec::new();
        }
        let alerts = policy.handle(&mut ev, enricher.table(), sensor.watched());
        enforcing::apply(policy, sensor);
        let serving = policy.take_serving_now();
        if !serving.is_empty()
            && let Err(e) = sensor.forget_opens(&serving)
        {
            tracing::warn!(error = %e, "could not reset the open dedupe of serving workloads");
        }
        let mut records = Vec::with_capacity(alerts.len() + 1);
        if want_events {
            records.push(Out::Record(Record::from(ev)));
        }
        records.extend(alerts.into_iter().map(|a| Out::Record(Record::from(a))));
        records
    };

    loop {
        tokio::select! {
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { break };
                for line in handle(ev, &mut enricher, &mut policy, &mut sensor) {
                    written += 1;
                    to_output(&line_tx, line).await?;
                }
            }
            _ = fold_tick.tick() => {
                let repeats = policy.tick(WallTime::now(), enricher.table());
                enforcing::apply(&mut policy, &mut sensor);
                for r in repeats {
                    written += 1;
                    to_output(&line_tx, Out::Record(Record::from(r))).await?;
                }
                to_output(&line_tx, Out::Tick).await?;
            }
            _ = stats_tick.tick(), if args.stats_interval > 0 => {
                let c = sensor.counters();
                if c.ringbuf_drops > last_drops {
                    tracing::warn!(dropped = c.ringbuf_drops - last_drops, total = c.ringbuf_drops,
                        "kernel ring buffer full: events dropped (raise --ring-buffer-size)");
                    last_drops = c.ringbuf_drops;
                }
                let line = stats_line("interval", &sensor, &enricher, written, policy.stats());
                to_output(&line_tx, line).await?;
            }
            req = next_request(&mut requests) => {
                let Some(req) = req else {
                    requests = None;
                    continue;
                };
                if !learning.handle(req, &mut policy, &enricher, &mut sensor) {
                    break;
                }
            }
            _ = sleep_until(learning.next_check()) => {
                let progress = learning::Progress {
                    drained_ns: reader_stats.drained_ns.load(Ordering::Acquire),
                    queue_empty: ev_rx.is_empty(),
                };
                learning.finish_due(progress, &mut policy, &mut sensor);
            }
            _ = sighup.recv() => match RuleSet::load(&paths) {
                Ok(new) if !args.no_enforce && sensor.enforcer.is_none()
                    && new.has_enforce_profiles() => tracing::error!(
                    "rules reload refused; keeping the previous rules: they have `mode: enforce` \
                     profiles and enforcement is not loaded (it was not available at start)"
                ),
                Ok(new) => {
                    enforcing::warn_uncompiled(&new);
                    if marker.is_none() && enforce && new.has_enforce_profiles() {
                        marker = Some(enforcing::Marker::start(&args.spool_dir));
                    }
                    policy.replace_rules(Arc::new(new), enricher.table(), sensor.watched());
                    enforcing::apply(&mut policy, &mut sensor);
                    learning::switch(&policy, &mut sensor);
                    tracing::info!(detections = policy.rules().detection_count(), "rules reloaded");
                }
                Err(e) => tracing::error!("rules reload failed; keeping the previous rules:\n{e}"),
            },
            _ = sigint.recv(), if signals => break,
            _ = sigterm.recv(), if signals => break,
        }
    }
    tracing::info!("shutting down");
    // The programs stop sending (and count what they no longer send); once those running now
    // are done, the reader drains the ring buffer one last time: the last `agent_stats` then
    // accounts for every record (emitted = received + drops).
    if let Err(e) = sensor.stop_emitting() {
        tracing::warn!(error = %e, "cannot stop the kernel programs' output; the last counts may differ");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A watch send fails only when its task has already ended: nothing to stop then.
    let _ = reader_stop_tx.send(true);
    let _ = shutdown_tx.send(true);
    while let Some(ev) = ev_rx.recv().await {
        for line in handle(ev, &mut enricher, &mut policy, &mut sensor) {
            written += 1;
            to_output(&line_tx, line).await?;
        }
    }
    // Sessions still running end with everything recorded: their clients get the outcome.
    learning.finish_all(&mut policy, &mut sensor);
    if let Some(socket) = socket {
        socket.close(CLIENT_GRACE).await;
    }
    for r in policy.flush(WallTime::now()) {
        to_output(&line_tx, Out::Record(Record::from(r))).await?;
    }
    let _ = reader.await;
    let c = sensor.counters();
    if c.ringbuf_drops > 0 {
        tracing::warn!(
            total = c.ringbuf_drops,
            "kernel ring buffer drops during this run"
        );
    }
    to_output(
        &line_tx,
        stats_line("shutdown", &sensor, &enricher, written, policy.stats()),
    )
    .await?;
    drop(line_tx);
    let lines = tokio::task::spawn_blocking(move || writer.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    drop(sensor);
    if let Some(marker) = marker {
        marker.clear();
    }
    if let Some(f) = forwarding {
        f.stop(Duration::from_secs(args.drain_timeout_secs)).await;
    }
    let _ = resolver_task.await;
    tracing::info!(lines, "stopped");
    Ok(())
}

/// The sensor's settings: what is recorded (`--watch-all`, or events wanted by an output:
/// everything), the kernel's open folding, the cgroup root of the network hooks, enforcement.
fn sensor_config(args: &RunArgs, rules: &RuleSet, want_events: bool) -> SensorConfig {
    let record_everything = want_events || args.watch_all;
    let config = SensorConfig {
        record_all: record_everything,
        watch_on_exec: rules.has_profiles() && !record_everything,
        ring_buffer_bytes: args.ring_buffer_size,
        // `--events` promises a line per action: no folding unless asked for.
        dedupe_window: Duration::from_millis(args.dedupe_window_ms.unwrap_or(if want_events {
            0
        } else {
            1000
        })),
        cgroup_root: args
            .cgroup_root
            .clone()
            .or_else(crate::process::cgroup::cgroup2_root),
        enforce: enforcing::hooks(args.no_enforce, rules),
        hash_seed: enforcing::seed(),
        ..SensorConfig::default()
    };
    if config.cgroup_root.is_none() {
        tracing::warn!("no cgroup2 filesystem is mounted: DNS answers are not reported");
    }
    match &args.btf {
        Some(path) => SensorConfig {
            btf_path: path.clone(),
            ..config
        },
        None => config,
    }
}

/// Hands `out` to the output stage. The stage having stopped is an error: what it no longer
/// takes would be lost silently.
async fn to_output(tx: &mpsc::Sender<Out>, out: Out) -> anyhow::Result<()> {
    tx.send(out)
        .await
        .map_err(|_| anyhow::anyhow!("the output stage stopped: records can no longer be written"))
}

/// Sleeps until `due`, or forever.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
