//! The metrics, encoded at scrape time from the counters and the last snapshot
//! (prometheus-client's `Collector`: nothing is copied into a registry between scrapes).
//! Counter names get `_total` from the encoder, info metrics `_info`.

use std::sync::{Arc, atomic::Ordering};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::{KINDS, Metrics, lock};

/// Registers the collector and encodes once.
pub(super) fn render(m: &Arc<Metrics>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(Arc::clone(m))));
    let mut out = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug, reported in the text.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        out = format!("# encoding the metrics failed: {e}\n");
    }
    out
}

#[derive(Debug)]
struct Collect(Arc<Metrics>);

/// A per-sink metric: name, help, type, and its figure.
type SinkMetric = (
    &'static str,
    &'static str,
    MetricType,
    fn(&super::SinkFigures) -> u64,
);

/// A counter or gauge without labels.
fn one(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    ty: MetricType,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, ty)?;
    match ty {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(m),
    }
}

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let m = &self.0;
        {
            let mut fam = enc.encode_descriptor(
                "monitor_events",
                "Events that reached the analysis stage, by kind",
                None,
                Counter,
            )?;
            for (k, n) in KINDS.iter().zip(&m.events) {
                let labels = [("kind", k.as_str())];
                let e = fam.encode_family(&labels)?;
                ConstCounter::new(n.load(Ordering::Relaxed)).encode(e)?;
            }
        }
        {
            let alerts = lock(&m.alerts).clone();
            let mut fam = enc.encode_descriptor(
                "monitor_alerts",
                "Alerts raised, by rule and severity (folded repeats not included)",
                None,
                Counter,
            )?;
            for ((rule, severity), n) in &alerts {
                let labels = [("rule", rule.as_str()), ("severity", severity)];
                let e = fam.encode_family(&labels)?;
                ConstCounter::new(*n).encode(e)?;
            }
        }
        let s = lock(&m.snapshot).clone();
        let k = &s.kernel;
        let plain: [(&str, &str, MetricType, u64); 17] = [
            (
                "monitor_kernel_events_emitted",
                "Records the kernel programs sent",
                Counter,
                k.emitted,
            ),
            (
                "monitor_kernel_ringbuf_drops",
                "Records lost because the ring buffer was full",
                Counter,
                k.ringbuf_drops,
            ),
            (
                "monitor_kernel_read_errors",
                "Records lost to failed kernel reads",
                Counter,
                k.read_errors,
            ),
            (
                "monitor_events_received",
                "Records read from the ring buffer",
                Counter,
                s.received,
            ),
            (
                "monitor_decode_errors",
                "Records that could not be decoded",
                Counter,
                s.decode_errors,
            ),
            (
                "monitor_processes_tracked",
                "Processes in the process table",
                Gauge,
                s.table.entries as u64,
            ),
            (
                "monitor_process_table_capacity",
                "Bound of the process table",
                Gauge,
                s.table.capacity as u64,
            ),
            (
                "monitor_processes_evicted",
                "Processes removed from the full process table",
                Counter,
                s.table.evictions,
            ),
            (
                "monitor_alerts_folded",
                "Identical alerts folded into a first one",
                Counter,
                s.policy.alerts_folded,
            ),
            (
                "monitor_processes_profiled",
                "Processes under a workload profile",
                Gauge,
                s.policy.profiled_processes as u64,
            ),
            (
                "monitor_enforce_killed",
                "Processes the kernel killed (enforce mode)",
                Counter,
                k.enforce_killed,
            ),
            (
                "monitor_enforce_blocked",
                "Connects, sends, binds (and with BPF LSM opens and execs) the kernel refused (enforce mode)",
                Counter,
                k.enforce_blocked,
            ),
            (
                "monitor_ocsf_errors",
                "Records not convertible to OCSF",
                Counter,
                s.ocsf_errors,
            ),
            (
                "monitor_rules_profiles",
                "Workload profiles loaded",
                Gauge,
                s.profiles,
            ),
            (
                "monitor_rules_detections",
                "Detections loaded",
                Gauge,
                s.detections,
            ),
            (
                "monitor_rules_loaded",
                "Profiles and detections loaded",
                Gauge,
                s.profiles + s.detections,
            ),
            (
                "monitor_resolver_failures",
                "Failed resolutions of host names profiles allow",
                Counter,
                m.resolver
                    .as_ref()
                    .map_or(0, crate::resolve::HostResolver::failures),
            ),
        ];
        for (name, help, ty, v) in plain {
            one(&mut enc, name, help, ty, v)?;
        }
        if let Some(r) = s.reload {
            one(
                &mut enc,
                "monitor_rules_last_reload_success",
                "1 when the last rules reload succeeded, 0 when it was refused (the previous rules stay)",
                Gauge,
                u64::from(r.ok),
            )?;
            let e = enc.encode_descriptor(
                "monitor_rules_last_reload_timestamp_seconds",
                "When the last rules reload was tried (Unix time)",
                None,
                Gauge,
            )?;
            ConstGauge::new(r.unix_secs).encode(e)?;
        }
        let rt = s.runtime.unwrap_or_default();
        one(
            &mut enc,
            "monitor_runtime_lookups",
            "Containers asked about to the container runtime",
            Counter,
            rt.lookups,
        )?;
        one(
            &mut enc,
            "monitor_runtime_misses",
            "Runtime lookups that gave no name (unknown, not answering, queue full)",
            Counter,
            rt.misses,
        )?;
        one(
            &mut enc,
            "monitor_runtime_unparked",
            "Events that could not wait for their container's name",
            Counter,
            rt.unparked,
        )?;
        let sinks: [SinkMetric; 4] = [
            (
                "monitor_sink_delivered",
                "Records a network sink acknowledged",
                Counter,
                |f| f.delivered,
            ),
            (
                "monitor_sink_failed",
                "Records a network sink never got (the full spool dropped them)",
                Counter,
                |f| f.skipped,
            ),
            (
                "monitor_sink_retries",
                "Failed send attempts of a network sink (each is retried)",
                Counter,
                |f| f.failed,
            ),
            (
                "monitor_sink_pending",
                "Records spooled and not yet acknowledged",
                Gauge,
                |f| f.pending,
            ),
        ];
        for (name, help, ty, get) in sinks {
            let mut fam = enc.encode_descriptor(name, help, None, ty)?;
            for f in &s.sinks {
                let labels = [("sink", f.sink.as_str()), ("stream", f.stream)];
                let e = fam.encode_family(&labels)?;
                match ty {
                    MetricType::Counter => ConstCounter::new(get(f)).encode(e)?,
                    _ => ConstGauge::new(i64::try_from(get(f)).unwrap_or(i64::MAX)).encode(e)?,
                }
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "monitor_spool_bytes",
                "Bytes on disk in a spool",
                None,
                Gauge,
            )?;
            for sp in &s.spools {
                let labels = [("stream", sp.stream)];
                let e = fam.encode_family(&labels)?;
                ConstGauge::new(i64::try_from(sp.bytes).unwrap_or(i64::MAX)).encode(e)?;
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "monitor_spool_dropped",
                "Records a full spool (or its writer) dropped",
                None,
                Counter,
            )?;
            for sp in &s.spools {
                let labels = [("stream", sp.stream)];
                let e = fam.encode_family(&labels)?;
                ConstCounter::new(sp.dropped).encode(e)?;
            }
        }
        {
            let e = enc.encode_descriptor(
                "monitor_build",
                "The agent's version",
                None,
                MetricType::Info,
            )?;
            prometheus_client::metrics::info::Info::new([("version", env!("CARGO_PKG_VERSION"))])
                .encode(e)?;
        }
        {
            let e = enc.encode_descriptor(
                "monitor_kernel",
                "The running kernel's release",
                None,
                MetricType::Info,
            )?;
            prometheus_client::metrics::info::Info::new([("release", m.kernel_release.as_str())])
                .encode(e)?;
        }
        Ok(())
    }
}
