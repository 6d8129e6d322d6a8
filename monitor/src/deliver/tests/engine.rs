//! Engine tests: real tokio tasks, real spool files, fake sinks.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::super::{Engine, EngineConfig, Sink, Spool, SpoolOptions, bench};
use super::{FakeSink, TempDir, eventually, lines, open_spool};

const DEADLINE: Duration = Duration::from_secs(20);

fn fast_config() -> EngineConfig {
    EngineConfig {
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(5),
        batch_max_bytes: 1 << 20,
    }
}

fn open(dir: &std::path::Path, sinks: &[&str]) -> Spool {
    let names: Vec<String> = sinks.iter().map(|s| (*s).to_owned()).collect();
    open_spool(dir, SpoolOptions::new(8 << 20), &names)
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_kept_and_nothing_lost_under_failures() {
    let dir = TempDir::new("engine-retry");
    let spool = open(dir.path(), &["siem"]);
    let (sink, control) = FakeSink::new("siem", 7, false);
    control.fail_next(3);
    let (stop, stop_rx) = watch::channel(false);
    let engine = Engine::start(&spool, vec![Box::new(sink)], stop_rx, fast_config()).unwrap();
    let input = lines(0, 250);
    for chunk in input.chunks(10) {
        spool.append_async(chunk.to_vec()).await.unwrap();
    }
    assert!(eventually(DEADLINE, || control.delivered().len() >= input.len()).await);
    assert!(eventually(DEADLINE, || spool.pending("siem").unwrap() == 0).await);
    // Accepted batches, in order, are exactly the appended lines: nothing lost, no gap, no
    // duplicate.
    assert_eq!(control.delivered(), input);
    // Every failed attempt is retried with the very same batch: the only duplicates a
    // receiver can see are of a failed batch.
    let attempts = control.attempts();
    assert_eq!(attempts.iter().filter(|a| !a.ok).count(), 3);
    for pair in attempts.windows(2) {
        if !pair[0].ok {
            assert_eq!(pair[0].batch, pair[1].batch);
        }
    }
    assert!(attempts.iter().all(|a| a.batch.len() <= 7));
    let stats = engine.stats();
    assert_eq!(stats[0].delivered, 250);
    assert_eq!(stats[0].retries, 3);
    assert_eq!(stats[0].pending, 0);
    assert!(!stats[0].failing);
    let last_error = stats[0].last_error.clone().unwrap();
    assert!(
        last_error.contains("fake receiver refused the batch"),
        "{last_error}"
    );
    stop.send(true).unwrap();
    engine.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_does_not_hold_back_another() {
    let dir = TempDir::new("engine-two");
    let spool = open(dir.path(), &["fast", "slow"]);
    let (fast, fast_ctl) = FakeSink::new("fast", 100, false);
    let (slow, slow_ctl) = FakeSink::new("slow", 10, true);
    let (stop, stop_rx) = watch::channel(false);
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(fast), Box::new(slow)];
    let engine = Engine::start(&spool, sinks, stop_rx, fast_config()).unwrap();
    let input = lines(0, 100);
    for l in &input {
        spool.append_async(vec![l.clone()]).await.unwrap();
    }
    assert!(eventually(DEADLINE, || fast_ctl.delivered().len() == 100).await);
    // The slow sink is stuck in its first send; it holds its own records only.
    assert!(slow_ctl.delivered().is_empty());
    assert_eq!(slow_ctl.in_flight(), 1);
    assert_eq!(spool.pending("slow").unwrap(), 100);
    assert!(eventually(DEADLINE, || spool.pending("fast").unwrap() == 0).await);
    // Let the slow one go; it catches up, in order.
    slow_ctl.open_gate(1000);
    assert!(eventually(DEADLINE, || slow_ctl.delivered().len() == 100).await);
    assert_eq!(slow_ctl.delivered(), input);
    assert_eq!(fast_ctl.delivered(), input);
    stop.send(true).unwrap();
    engine.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_in_flight_batch() {
    let dir = TempDir::new("engine-shutdown");
    let spool = open(dir.path(), &["siem"]);
    let (sink, control) = FakeSink::new("siem", 100, true);
    let (stop, stop_rx) = watch::channel(false);
    let engine = Engine::start(&spool, vec![Box::new(sink)], stop_rx, fast_config()).unwrap();
    spool.append_async(lines(0, 10)).await.unwrap();
    assert!(eventually(DEADLINE, || control.in_flight() == 1).await);
    stop.send(true).unwrap();
    // The receiver answers after shutdown was requested, within the grace period.
    control.open_gate(1);
    engine.join().await.unwrap();
    assert_eq!(control.delivered(), lines(0, 10));
    assert_eq!(
        spool.pending("siem").unwrap(),
        0,
        "the finished batch was acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_stuck_batch_after_the_deadline_and_resends_it_later() {
    let dir = TempDir::new("engine-stuck");
    let input = lines(0, 10);
    {
        let spool = open(dir.path(), &["siem"]);
        let (sink, control) = FakeSink::new("siem", 100, true);
        let (stop, stop_rx) = watch::channel(false);
        let config = EngineConfig {
            shutdown_grace: Duration::from_millis(100),
            ..fast_config()
        };
        let engine = Engine::start(&spool, vec![Box::new(sink)], stop_rx, config).unwrap();
        spool.append_async(input.clone()).await.unwrap();
        assert!(eventually(DEADLINE, || control.in_flight() == 1).await);
        let asked = Instant::now();
        stop.send(true).unwrap();
        engine.join().await.unwrap();
        assert!(asked.elapsed() < DEADLINE);
        assert_eq!(spool.pending("siem").unwrap(), 10);
    }
    // Next start: the unacknowledged batch is delivered.
    let spool = open(dir.path(), &["siem"]);
    let (sink, control) = FakeSink::new("siem", 100, false);
    let (stop, stop_rx) = watch::channel(false);
    let engine = Engine::start(&spool, vec![Box::new(sink)], stop_rx, fast_config()).unwrap();
    assert!(eventually(DEADLINE, || control.delivered().len() == 10).await);
    assert_eq!(control.delivered(), input);
    drop(stop);
    engine.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_redelivers_only_unacknowledged_records() {
    let dir = TempDir::new("engine-restart");
    let first = lines(0, 30);
    {
        let spool = open(dir.path(), &["siem"]);
        let (sink, control) = FakeSink::new("siem", 8, false);
        let (stop, stop_rx) = watch::channel(false);
        let engine = Engine::start(&spool, vec![Box::new(sink)], stop_rx, fast_config()).unwrap();
        spool.append_async(first.clone()).await.unwrap();
        assert!(eventually(DEADLINE, || spool.pending("siem").unwrap() == 0).await);
        assert_eq!(control.delivered(), first);
        stop.send(true).unwrap();
        engine.join().await.unwrap();
        // Appended while no engine runs (e.g. the sink was down at shutdown).
        spool.append_batch(&lines(30, 5)).unwrap();
    }
    let spool = open(dir.path(), &["siem"]);
    let (sink, control) = FakeSink::new("siem", 8, false);
    let (stop, stop_rx) = watch::channel(false);
    let engine = Engine::start(&spool, vec![Box::new(sink)], stop_rx, fast_config()).unwrap();
    assert!(eventually(DEADLINE, || control.delivered().len() == 5).await);
    assert_eq!(control.delivered(), lines(30, 5));
    stop.send(true).unwrap();
    engine.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_rejects_unknown_and_duplicate_sinks() {
    let dir = TempDir::new("engine-names");
    let spool = open(dir.path(), &["a"]);
    let (_stop, stop_rx) = watch::channel(false);
    let (b, _) = FakeSink::new("b", 1, false);
    let r = Engine::start(&spool, vec![Box::new(b)], stop_rx.clone(), fast_config());
    assert!(matches!(r, Err(super::super::DeliverError::UnregisteredSink(n)) if n == "b"));
    let (a1, _) = FakeSink::new("a", 1, false);
    let (a2, _) = FakeSink::new("a", 1, false);
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(a1), Box::new(a2)];
    let r = Engine::start(&spool, sinks, stop_rx, fast_config());
    assert!(matches!(r, Err(super::super::DeliverError::DuplicateSink(n)) if n == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke() {
    let dir = TempDir::new("bench");
    let report = bench::append_and_deliver(dir.path(), 2000, 300, 20)
        .await
        .unwrap();
    assert_eq!(report.records, 2000);
    assert!(report.records_per_sec() > 0.0);
}

/// The number in a line made by [`lines`].
fn number(line: &[u8]) -> u64 {
    let s = std::str::from_utf8(line).unwrap();
    let start = s.find("\"n\":").unwrap() + 4;
    s[start..].trim_end_matches(['}', '\n']).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_under_a_stalled_sink_skips_oldest_and_counts() {
    let dir = TempDir::new("engine-bounded");
    let options = SpoolOptions {
        max_bytes: 8192,
        segment_bytes: 1024,
    };
    let (spool, _) = open_spool(dir.path(), options, &["slow".to_owned()]).unwrap();
    let (sink, control) = FakeSink::new("slow", 10, true);
    let (stop, stop_rx) = watch::channel(false);
    let engine = Engine::start(&spool, vec![Box::new(sink)], stop_rx, fast_config()).unwrap();
    let mut dropped = 0;
    for l in lines(0, 400) {
        dropped += spool.append_async(vec![l]).await.unwrap().dropped_records;
    }
    assert!(dropped > 0);
    // The appender never waited for the stuck sink.
    assert_eq!(control.in_flight(), 1);
    control.open_gate(10_000);
    assert!(eventually(DEADLINE, || spool.pending("slow").unwrap() == 0).await);
    let got: Vec<u64> = control.delivered().iter().map(|l| number(l)).collect();
    let stats = engine.stats();
    // In order, no duplicates, ends with the newest; what is missing was counted. The batch
    // already in the sink's hands when its segment was dropped is still delivered, so the
    // sink skips at most what the spool reported dropped.
    assert!(got.windows(2).all(|w| w[1] > w[0]));
    assert_eq!(got.last(), Some(&399));
    assert_eq!(got.len() as u64 + stats[0].skipped, 400);
    assert!(stats[0].skipped > 0 && stats[0].skipped <= dropped);
    stop.send(true).unwrap();
    engine.join().await.unwrap();
}
