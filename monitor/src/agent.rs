//! `monitor run`: builds the pipeline sensor -> process enrichment -> output and runs it until
//! SIGINT or SIGTERM, then drains, writes final statistics and detaches the probes.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;
use tokio::{signal::unix::SignalKind, sync::mpsc};

use crate::{
    cli::RunArgs,
    output,
    process::stage::Enricher,
    sensor::{Sensor, SensorConfig, load::KernelCounters, reader},
};

/// Capacity of the channels between stages (events).
const CHANNEL: usize = 8192;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(args))
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
}

async fn run_async(args: RunArgs) -> anyhow::Result<()> {
    let sinks = output::open(&args.outputs)?;
    let config = SensorConfig {
        record_all: args.events,
        ring_buffer_bytes: args.ring_buffer_size,
        dedupe_window: Duration::from_millis(args.dedupe_window_ms),
        ..SensorConfig::default()
    };
    let mut enricher = Enricher::new(args.process_table_size);
    let mut sensor = Sensor::load(&config)?;
    let seeded = enricher.seed();
    tracing::info!(
        programs = sensor.program_count(),
        processes = seeded,
        "probes attached"
    );

    let ring = sensor.events.take().context("ring buffer already taken")?;
    let reader_stats = Arc::new(reader::ReaderStats::default());
    let (ev_tx, mut ev_rx) = mpsc::channel(CHANNEL);
    let (line_tx, line_rx) = mpsc::channel::<Vec<u8>>(CHANNEL);
    let reader = tokio::spawn(reader::run(ring, ev_tx, reader_stats.clone()));
    let writer = tokio::spawn(output::run(sinks, line_rx));

    if let Some(path) = &args.ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let period = Duration::from_secs(args.stats_interval.max(1));
    let mut stats_tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut last_drops = 0u64;
    let mut written = 0u64;

    let stats_line = |reason: &str, sensor: &Sensor, processes: usize, written: u64| {
        let s = Stats {
            kind: "agent_stats",
            time: reader::rfc3339_ns(reader::Clock::new().wall_ns(boot_ns())),
            reason,
            kernel: sensor.counters(),
            received: reader_stats.received.load(Ordering::Relaxed),
            decode_errors: reader_stats.decode_errors.load(Ordering::Relaxed),
            lines_written: written,
            processes,
        };
        output::json_line(&s)
    };

    loop {
        tokio::select! {
            ev = ev_rx.recv() => {
                let Some(mut ev) = ev else { break };
                enricher.enrich(&mut ev);
                if args.events {
                    written += 1;
                    if line_tx.send(output::json_line(&ev)).await.is_err() {
                        anyhow::bail!("output stage stopped");
                    }
                }
            }
            _ = stats_tick.tick(), if args.stats_interval > 0 => {
                let c = sensor.counters();
                if c.ringbuf_drops > last_drops {
                    tracing::warn!(dropped = c.ringbuf_drops - last_drops, total = c.ringbuf_drops,
                        "kernel ring buffer full: events dropped (raise --ring-buffer-size)");
                    last_drops = c.ringbuf_drops;
                }
                let _ = line_tx.send(stats_line("interval", &sensor, enricher.len(), written)).await;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    tracing::info!("shutting down");
    reader.abort();
    // Drain what was already read.
    while let Ok(mut ev) = ev_rx.try_recv() {
        enricher.enrich(&mut ev);
        if args.events {
            written += 1;
            let _ = line_tx.send(output::json_line(&ev)).await;
        }
    }
    let c = sensor.counters();
    if c.ringbuf_drops > 0 {
        tracing::warn!(
            total = c.ringbuf_drops,
            "kernel ring buffer drops during this run"
        );
    }
    let _ = line_tx
        .send(stats_line("shutdown", &sensor, enricher.len(), written))
        .await;
    drop(line_tx);
    let lines = writer.await.unwrap_or(0);
    drop(sensor);
    tracing::info!(lines, "stopped");
    Ok(())
}

/// `monitor floor`: empty programs on the same hooks, until SIGINT/SIGTERM (benchmark floor).
pub fn floor(ready_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let _floor = crate::sensor::load::Floor::load()?;
    if let Some(path) = &ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
        let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        Ok(())
    })
}

fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
