//! The delivery spool as the running agent uses it: bounded (the oldest alerts dropped,
//! counted and reported in a dedicated alert), surviving a full disk without losing an alert,
//! a separate spool for forwarded events, and sinks that do not hold each other back.

use std::time::Duration;

use monitor_tests::{
    ReservedPort, TempDir, TmpfsMount,
    deliver::{alert_ids, last_stats, launch_in, raise_alerts, wait_until, written},
    http::{HttpReceiver, acknowledged_ids, assert_delivery, webhook_ids},
    skip_or_fail,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes of one test alert as this host writes it. Its ancestors' command lines make it vary
/// (each up to 4 KiB): a CI runner's `bash -c SCRIPT` can triple it.
fn alert_size() -> Option<usize> {
    let dir = TempDir::new("fwd-size");
    let agent = launch_in(&dir, &[])?;
    raise_alerts(&dir.join("watched"), "size", 1);
    let size = wait_until(
        TIMEOUT,
        "one alert",
        || {
            let (by_id, _) = written(&agent);
            by_id.values().next().map(|a| a.to_string().len())
        },
        || agent.stderr(),
    );
    agent.stop();
    Some(size)
}

#[test]
fn a_full_spool_drops_the_oldest_alerts_and_says_so_in_an_alert() {
    let Some(size) = alert_size() else {
        return;
    };
    // Room for about six alerts: the 40 raised below overflow it, and none is too large for it.
    let spool_max = (6 * (size + 256)).max(16 * 1024);
    let dir = TempDir::new("fwd-full");
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let args = [
        "--output".to_owned(),
        format!("http://127.0.0.1:{port}/hook"),
        "--spool-max-bytes".to_owned(),
        spool_max.to_string(),
    ];
    let Some(agent) = launch_in(&dir, &args) else {
        return;
    };
    let watched = dir.join("watched");
    // Nothing listens on `port` (bound, not listening): everything stays in the small spool,
    // which overflows.
    raise_alerts(&watched, "flood", 40);
    let overflow_total = |records: &[Value]| -> u64 {
        records
            .iter()
            .filter(|r| r["rule"] == "agent.spool-overflow")
            .filter_map(|r| r["dropped"].as_u64())
            .sum()
    };
    // Settled: the overflow alerts account for every drop the spool counted.
    let records = wait_until(
        TIMEOUT,
        "overflow alerts covering every dropped alert",
        || {
            let records = agent.records();
            // Stats written after the last overflow alert (whose own append may drop more).
            // Two of them: the first may have been counted while that append was still
            // syncing, and written after it with the count from before.
            let last_overflow = records
                .iter()
                .rposition(|r| r["rule"] == "agent.spool-overflow")?;
            let stats_after = records[last_overflow..]
                .iter()
                .filter(|r| r["kind"] == "agent_stats")
                .count();
            let lane = &last_stats(&records)?["delivery"]["alerts"]["lane"];
            let dropped = lane["dropped_full"].as_u64()?;
            let too_large = lane["lost"].as_u64()?;
            let reported = overflow_total(&records);
            (stats_after >= 2
                && alert_ids(&records).len() == 40
                && dropped > 0
                && reported == dropped + too_large)
                .then_some(records)
        },
        || agent.stderr(),
    );
    let overflow = records
        .iter()
        .find(|r| r["rule"] == "agent.spool-overflow")
        .expect("an overflow alert");
    assert_eq!(overflow["kind"], "alert");
    assert_eq!(overflow["severity"], "high");
    assert_eq!(overflow["event"], Value::Null);
    assert_eq!(
        overflow["spool_dir"],
        dir.join("spool").display().to_string()
    );
    assert!(
        overflow["message"]
            .as_str()
            .is_some_and(|m| m.contains("undelivered alerts were dropped")),
        "{overflow}"
    );
    assert!(
        agent.stderr_full().contains("delivery spool full"),
        "the drops are logged too"
    );

    // The receiver comes up: what the spool kept arrives, the overflow alerts included.
    let all_alerts: Vec<String> = records
        .iter()
        .filter(|r| r["kind"] == "alert")
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    let dropped = overflow_total(&records) as usize;
    let listener = reserved.listen().expect("listen on the reserved port");
    let receiver = HttpReceiver::start_on(listener, Vec::new(), |_| "{}".into()).expect("serve");
    let expected = all_alerts.len() - dropped;
    let received = wait_until(
        TIMEOUT,
        "the alerts the spool kept",
        || {
            let ids = acknowledged_ids(&receiver.requests(), &webhook_ids);
            (ids.len() >= expected).then_some(ids)
        },
        || agent.stderr(),
    );
    // What arrives: only alerts the agent wrote, in the order written, at least as many as the
    // spool kept (more when records the sink had already read before the spool dropped them
    // from disk still went out: they count as dropped), and the newest one among them.
    assert!(received.len() >= expected, "kept = written - dropped");
    let mut positions = received.iter().map(|id| {
        all_alerts
            .iter()
            .position(|w| w == id)
            .unwrap_or_else(|| panic!("{id} was never written"))
    });
    let mut last = positions.next().expect("something arrived");
    for p in positions {
        assert!(
            p > last,
            "out of order: {received:?}\nwritten {all_alerts:?}"
        );
        last = p;
    }
    assert_eq!(
        received.last(),
        all_alerts.last(),
        "the newest alert is kept"
    );
    assert!(
        received.len() <= expected + 100,
        "beyond the spool's bound by more than one batch"
    );
    agent.stop();
}

#[test]
fn a_sink_with_events_true_gets_events_through_their_own_spool() {
    let dir = TempDir::new("fwd-events");
    let receiver = HttpReceiver::start(0, Vec::new(), |_| "{}".into()).expect("listen");
    let output = format!("http://127.0.0.1:{}/all?events=true", receiver.port);
    let Some(agent) = launch_in(&dir, &["--output".to_owned(), output]) else {
        return;
    };
    raise_alerts(&dir.join("watched"), "ev", 3);
    let (_, ids) = wait_until(
        TIMEOUT,
        "3 alerts written",
        || {
            let w = written(&agent);
            (w.1.len() >= 3).then_some(w)
        },
        || agent.stderr(),
    );
    // The alerts' own triggering opens arrive as events, next to the alerts.
    let paths: Vec<String> = (0..3)
        .map(|i| format!("{}/alert-ev-{i}", dir.join("watched").display()))
        .collect();
    wait_until(
        TIMEOUT,
        "the alerts and their open events at the webhook",
        || {
            let records: Vec<Value> = receiver
                .requests()
                .iter()
                .filter(|r| r.acknowledged())
                .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap_or_default())
                .collect();
            let opened = |p: &String| {
                records
                    .iter()
                    .any(|e| e["kind"] == "open" && e["path"] == p.as_str())
            };
            let alerted = |id: &String| records.iter().any(|a| a["id"] == id.as_str());
            (paths.iter().all(opened) && ids.iter().all(alerted)).then_some(())
        },
        || agent.stderr(),
    );
    assert!(
        dir.join("spool/events").is_dir(),
        "events have their own spool"
    );
    // Without --events, the local file output gets alerts only.
    assert!(
        agent
            .records()
            .iter()
            .all(|r| r["kind"] == "alert" || r["kind"] == "agent_stats"),
        "events in the file output"
    );
    agent.stop();
}

#[test]
fn a_full_disk_delays_forwarding_but_loses_nothing() {
    let dir = TempDir::new("fwd-enospc");
    let mount_point = dir.join("spoolfs");
    std::fs::create_dir_all(&mount_point).expect("mount point");
    let tmpfs = match TmpfsMount::new(&mount_point) {
        Ok(m) => m,
        Err(e) => {
            skip_or_fail(&format!("cannot mount a tmpfs for the spool: {e}"));
            return;
        }
    };
    let receiver = HttpReceiver::start(0, Vec::new(), |_| "{}".into()).expect("listen");
    let args = [
        "--output".to_owned(),
        format!("http://127.0.0.1:{}/hook", receiver.port),
        "--spool-dir".to_owned(),
        tmpfs.path().join("spool").display().to_string(),
    ];
    let Some(agent) = launch_in(&dir, &args) else {
        return;
    };
    let watched = dir.join("watched");
    raise_alerts(&watched, "roomy", 5);
    wait_until(
        TIMEOUT,
        "the first alerts at the webhook",
        || (acknowledged_ids(&receiver.requests(), &webhook_ids).len() >= 5).then_some(()),
        || agent.stderr(),
    );

    // The spool's disk is full: alerts still reach the local output, and wait in memory.
    let filler = tmpfs.fill();
    raise_alerts(&watched, "full", 10);
    let stats = wait_until(
        TIMEOUT,
        "failed spool appends in agent_stats",
        || {
            let records = agent.records();
            let stats = last_stats(&records)?;
            let lane = &stats["delivery"]["alerts"]["lane"];
            (alert_ids(&records).len() >= 15 && lane["append_errors"].as_u64() > Some(0))
                .then(|| lane.clone())
        },
        || agent.stderr(),
    );
    assert_eq!(stats["lost"], 0, "{stats}");
    assert!(
        agent
            .stderr_full()
            .contains("cannot write to the delivery spool"),
        "the failure is logged"
    );

    // Room again: the backlog is spooled and delivered, in order, nothing lost.
    std::fs::remove_file(&filler).expect("remove filler");
    let written = alert_ids(&agent.records());
    assert_eq!(written.len(), 15);
    wait_until(
        TIMEOUT,
        "every alert at the webhook",
        || {
            let acked = acknowledged_ids(&receiver.requests(), &webhook_ids);
            written.iter().all(|id| acked.contains(id)).then_some(())
        },
        || agent.stderr(),
    );
    assert_delivery(&receiver.requests(), webhook_ids, &written);
    agent.stop();
}

#[test]
fn a_dead_sink_holds_back_only_itself() {
    let dir = TempDir::new("fwd-indep");
    let receiver = HttpReceiver::start(0, Vec::new(), |_| "{}".into()).expect("listen");
    // Bound, never listening: every connection is refused, and the port stays dead.
    let reserved = ReservedPort::new();
    let dead = reserved.port();
    let args = [
        "--output".to_owned(),
        format!("http://127.0.0.1:{dead}/dead"),
        "--output".to_owned(),
        format!("http://127.0.0.1:{}/alive", receiver.port),
    ];
    let Some(agent) = launch_in(&dir, &args) else {
        return;
    };
    raise_alerts(&dir.join("watched"), "indep", 20);
    let (_, ids) = wait_until(
        TIMEOUT,
        "20 alerts written",
        || {
            let w = written(&agent);
            (w.1.len() >= 20).then_some(w)
        },
        || agent.stderr(),
    );
    // The live sink is not waiting for the dead one, which is still failing below.
    wait_until(
        TIMEOUT,
        "every alert at the live webhook",
        || {
            let acked = acknowledged_ids(&receiver.requests(), &webhook_ids);
            ids.iter().all(|id| acked.contains(id)).then_some(())
        },
        || agent.stderr(),
    );
    assert_delivery(&receiver.requests(), webhook_ids, &ids);
    let sinks = wait_until(
        TIMEOUT,
        "stats showing the dead sink failing with everything pending",
        || {
            let records = agent.records();
            let stats = last_stats(&records)?;
            let sinks = stats["delivery"]["alerts"]["sinks"].as_array()?.clone();
            let named = |port: u16| {
                sinks.iter().find(|s| {
                    s["name"]
                        .as_str()
                        .is_some_and(|n| n.contains(&format!(":{port}/")))
                })
            };
            // Stats are written every second: one written before the live sink's last
            // acknowledgement still shows it pending, so wait for one written after it.
            let alive = named(receiver.port)?;
            let settled = named(dead)?["pending"].as_u64() >= Some(20)
                && alive["delivered"].as_u64() >= Some(20)
                && alive["pending"] == 0;
            settled.then_some(sinks)
        },
        || agent.stderr(),
    );
    for sink in &sinks {
        let alive = sink["name"]
            .as_str()
            .is_some_and(|n| n.contains(&format!(":{}/", receiver.port)));
        assert_eq!(sink["failing"], !alive, "{sink}");
        if alive {
            assert_eq!(sink["pending"], 0, "{sink}");
            assert_eq!(sink["delivered"].as_u64(), Some(ids.len() as u64), "{sink}");
        } else {
            assert!(
                sink["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("refused")),
                "{sink}"
            );
        }
    }
    agent.stop();
}
