//! `monitor run`: builds the pipeline sensor -> process enrichment -> policy (profiles,
//! detections, learning sessions, alerts) -> output stage (delivery spools, then local outputs;
//! network sinks deliver from the spools) and runs it until SIGINT or SIGTERM, then drains,
//! writes final statistics, gives the network sinks a moment to deliver and detaches the
//! probes. SIGHUP reloads the rules; a bad new rule set leaves the old one running (learning
//! sessions go on either way). Learning requests come from the control socket (`control`), or
//! from `monitor learn` in the same process when no agent runs.

mod analysis;
mod commands;
pub mod control;
mod enforcing;
mod learning;
mod memory;
mod rule_files;

pub use commands::{floor, rules_check};

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::sync::mpsc;

use analysis::Analysis;
use control::Request;

use crate::{
    cli::{RunArgs, default_rules},
    metrics::{self, Metrics},
    output::{self, Out, OutputSpec, Stage, forward},
    policy::Policy,
    process::{runtime, stage::Enricher},
    resolve::HostResolver,
    rules::RuleSet,
    sensor::{Sensor, SensorConfig, reader},
};

/// Events the sensor stage may queue for the analysis stage (sent in batches of up to
/// `reader::BATCH`).
const CHANNEL: usize = 8192;
/// How long start-up waits for the first DNS answers of profile hosts.
const FIRST_RESOLVE: Duration = Duration::from_secs(3);
/// Containers whose runtime names are cached, and events that may wait for a new container's.
const IDENTITY_CACHE: usize = 4096;
const IDENTITY_PARKED: usize = 65536;
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

/// The container runtime, when there is one to ask: the containers of processes already
/// running are named first (bounded by [`FIRST_RESOLVE`]: profiles that select on images or
/// pods then apply to them from the start), then the lookup task answers for new ones.
async fn start_runtime(
    flags: &[PathBuf],
    enricher: &mut Enricher,
) -> Option<mpsc::Receiver<runtime::Answer>> {
    let clients = runtime::choose(flags);
    if clients.is_empty() {
        tracing::info!(
            "no container runtime socket: containers are known by their cgroup ids only"
        );
        return None;
    }
    for c in &clients {
        tracing::info!(socket = %c.socket().display(), api = c.api(), "naming containers through the runtime");
    }
    let (requests, answers) = runtime::spawn(clients.clone());
    enricher.set_identities(runtime::Identities::new(
        requests,
        IDENTITY_CACHE,
        IDENTITY_PARKED,
    ));
    let ids = enricher.table().container_ids();
    for answer in runtime::ask_now(&clients, ids, FIRST_RESOLVE).await {
        enricher.prefill(answer);
    }
    Some(answers)
}

fn rule_paths(args: &RunArgs) -> Vec<PathBuf> {
    if args.rules.is_empty() {
        default_rules()
    } else {
        args.rules.clone()
    }
}

/// Runs the pipeline until a signal (with `opts.signals`) or a shutdown request. The stages:
/// the sensor (its reader task) sends events to the analysis stage (enrichment and policy,
/// `analysis.rs`), which sends typed records to the output stage (its own thread), which
/// spools alerts for the network sinks (their delivery tasks) and writes the local outputs.
pub async fn run_pipeline(args: RunArgs, opts: Options) -> anyhow::Result<()> {
    let Options {
        mut requests,
        control,
        signals,
        quiet,
    } = opts;
    // The metrics port first: one in use stops the start before anything is loaded, and
    // /healthz answers while the rest starts.
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let resolver = HostResolver::new();
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let listener = metrics::server::bind(addr)?;
            let m = Arc::new(Metrics::new(Some(resolver.clone())));
            tokio::spawn(metrics::server::serve(
                listener,
                m.clone(),
                shutdown_rx.clone(),
            ));
            tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
            Some(m)
        }
        None => None,
    };
    let paths = rule_paths(&args);
    let rules = Arc::new(RuleSet::load(&paths).context("the rules are invalid; not starting")?);
    if let Some(m) = &metrics {
        m.ready.set_rules();
    }

    // Output stage, and the network sinks behind their spools.
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

    // Host names of the profiles, resolved on their own task.
    resolver.set_hosts(rules.hosts());
    let _ = tokio::time::timeout(FIRST_RESOLVE, resolver.resolve_now()).await;
    let resolver_task = tokio::spawn(resolver.clone().run(shutdown_rx));

    // Analysis stage: the process table seeded, the policy over it, the probes attached.
    let mut enricher = Enricher::new(args.process_table_size);
    let mut sensor = Sensor::load(&config)?;
    let seeded = enricher.seed();
    let identities = start_runtime(&args.runtime_socket, &mut enricher).await;
    let fold = Duration::from_secs(args.alert_fold_secs);
    enforcing::warn_uncompiled(&rules, &sensor);
    let seed = sensor.enforcer.is_some().then_some(config.hash_seed);
    let mut policy = Policy::new(rules, resolver, record_everything, fold, seed);
    policy.seed(enricher.table(), sensor.watched());
    enforcing::apply(&mut policy, &mut sensor);
    learning::switch(&policy, &mut sensor);
    tracing::info!(
        programs = sensor.program_count(),
        processes = seeded,
        profiled = policy.stats().profiled_processes,
        detections = policy.rules().detection_count(),
        sigma = policy.rules().sigma_count(),
        "probes attached"
    );
    if let Some(m) = &metrics {
        if forwarding.is_some() {
            m.ready.set_spool(args.spool_dir.clone());
        }
        m.ready.set_probes();
    }

    // Sensor stage: the ring buffer's reader.
    let ring = sensor.events.take().context("ring buffer already taken")?;
    let reader_stats = Arc::new(reader::ReaderStats::default());
    let (ev_tx, ev_rx) = mpsc::channel(CHANNEL / reader::BATCH);
    let (out_tx, out_rx) = mpsc::channel::<Out>(crate::output::stage::CHANNEL);
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
        .spawn(move || stage.run(out_rx))
        .context("starting the output thread")?;

    let socket = match control {
        Some(path) => {
            let (tx, rx) = mpsc::channel(16);
            requests = Some(rx);
            Some(control::listen(&path, tx).await?)
        }
        None => None,
    };
    let mut analysis = Analysis::new(
        enricher,
        policy,
        sensor,
        args.spool_dir.clone(),
        args.no_enforce,
        want_events,
    );
    analysis.metrics = metrics;
    // Ready only now: the analysis stage exists, and with it the enforcement marker, so an
    // agent killed the moment it said ready still tells the next start it was enforcing.
    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    let io = analysis::Io {
        events: ev_rx,
        out: out_tx,
        requests,
        reader_stats,
        reader_stop: reader_stop_tx,
        reader,
        shutdown: shutdown_tx,
        signals,
        rule_paths: paths,
        stats_interval: args.stats_interval,
        forwarding: forwarding.as_ref(),
        identities,
        watch_rules: args.watch_rules,
    };
    let analysis = analysis.run(io).await?;
    if let Some(socket) = socket {
        socket.close(CLIENT_GRACE).await;
    }
    // The output stage ends once the analysis stage has dropped its sender (with `io`).
    let lines = tokio::task::spawn_blocking(move || writer.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let Analysis { sensor, marker, .. } = analysis;
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
