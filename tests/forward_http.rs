//! Alert forwarding to HTTP receivers the tests start: the Splunk HEC and Elasticsearch bulk
//! request shapes as those products document them, and failure injection (connection
//! refused, 500/503/429, slow answers, a reset in the middle of a request body). Nothing is
//! lost, order is kept per sink, and duplicates come only from batches the agent could not see
//! acknowledged (at-least-once).

use std::{collections::HashMap, time::Duration};

use monitor_tests::{
    TempDir, TmpfsMount,
    deliver::{ForwardAgent, RULE, alert_ids, raise_alerts, wait_until, write_rules},
    http::{HttpReceiver, Reply, Request},
    rules::free_port,
    skip_or_fail,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);
const TOKEN: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn launch(dir: &TempDir, output: &str) -> Option<ForwardAgent> {
    let watched = dir.join("watched");
    std::fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    let args = vec![
        "--output".to_owned(),
        output.to_owned(),
        "--spool-dir".to_owned(),
        dir.join("spool").display().to_string(),
    ];
    match ForwardAgent::launch(&dir.join("alerts.jsonl"), &rules, &args) {
        Ok(a) => Some(a),
        Err(e) => {
            skip_or_fail(&format!("cannot run the agent: {e}"));
            None
        }
    }
}

/// The alerts of the test rule in the agent's file output, by id, and their ids in order.
fn written(agent: &ForwardAgent) -> (HashMap<String, Value>, Vec<String>) {
    let records = agent.records();
    let ids = alert_ids(&records);
    let by_id = records
        .into_iter()
        .filter(|r| r["kind"] == "alert" && r["rule"] == RULE)
        .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r)))
        .collect();
    (by_id, ids)
}

/// Checks the at-least-once contract on the ids the receiver stored, request by request:
/// every written id arrived; in order of first arrival they are in the order written; an id
/// arrived twice only if an earlier copy was in a request the agent could not see answered.
fn assert_delivery(
    requests: &[Request],
    ids_of: impl Fn(&Request) -> Vec<String>,
    written: &[String],
) {
    let mut first_seen: Vec<String> = Vec::new();
    let mut unacknowledged: Vec<String> = Vec::new();
    for r in requests.iter().filter(|r| !r.body.is_empty()) {
        for id in ids_of(r) {
            if first_seen.contains(&id) {
                assert!(
                    unacknowledged.contains(&id),
                    "{id} delivered twice although its first delivery was acknowledged"
                );
            } else {
                first_seen.push(id.clone());
            }
            if !r.acknowledged() {
                unacknowledged.push(id);
            }
        }
    }
    let stored: Vec<&String> = first_seen
        .iter()
        .filter(|id| written.contains(id))
        .collect();
    let missing: Vec<&String> = written
        .iter()
        .filter(|id| !first_seen.contains(id))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(
        stored.len(),
        first_seen.len(),
        "the receiver got alerts the agent never wrote"
    );
    let in_order: Vec<&String> = written.iter().collect();
    assert_eq!(stored, in_order, "alerts arrived out of order");
}

fn acknowledged_ids(
    requests: &[Request],
    ids_of: &impl Fn(&Request) -> Vec<String>,
) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.acknowledged())
        .flat_map(ids_of)
        .collect()
}

fn hec_ids(r: &Request) -> Vec<String> {
    hec_events(r)
        .iter()
        .filter_map(|e| e["event"]["id"].as_str().map(str::to_owned))
        .collect()
}

/// The event objects of a HEC body (concatenated JSON objects).
fn hec_events(r: &Request) -> Vec<Value> {
    serde_json::Deserializer::from_slice(&r.body)
        .into_iter::<Value>()
        .map(|v| v.expect("HEC body: a sequence of JSON objects"))
        .collect()
}

#[test]
fn splunk_hec_gets_every_alert_in_order_through_refusals_errors_slowness_and_resets() {
    let dir = TempDir::new("fwd-hec");
    let token = dir.join("hec.token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
    let port = free_port();
    // Nothing listens yet: connections are refused.
    let output = format!(
        "splunk+http://127.0.0.1:{port}?token_file={}&timeout=1s",
        token.display()
    );
    let Some(agent) = launch(&dir, &output) else {
        return;
    };
    let watched = dir.join("watched");
    raise_alerts(&watched, "refused", 10);
    wait_until(
        TIMEOUT,
        "10 alerts written while the receiver is down",
        || (written(&agent).1.len() >= 10).then_some(()),
        || agent.stderr(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let script = vec![
        Reply::Status(500),
        Reply::Slow(Duration::from_secs(3)),
        Reply::ResetMidBody,
        Reply::Status(503),
    ];
    let receiver =
        match HttpReceiver::start(port, script, |_| r#"{"text":"Success","code":0}"#.into()) {
            Ok(r) => r,
            Err(e) => panic!("cannot listen on {port}: {e}"),
        };
    raise_alerts(&watched, "flaky", 10);
    raise_alerts(&watched, "late", 10);
    let (by_id, ids) = wait_until(
        TIMEOUT,
        "30 alerts written",
        || {
            let w = written(&agent);
            (w.1.len() >= 30).then_some(w)
        },
        || agent.stderr(),
    );
    assert_eq!(ids.len(), 30);
    wait_until(
        TIMEOUT,
        "every alert acknowledged by the HEC receiver",
        || {
            let acked = acknowledged_ids(&receiver.requests(), &hec_ids);
            ids.iter().all(|id| acked.contains(id)).then_some(())
        },
        || {
            format!(
                "requests: {:#?}\nagent: {}",
                receiver
                    .requests()
                    .iter()
                    .map(|r| (&r.reply, hec_ids(r).len()))
                    .collect::<Vec<_>>(),
                agent.stderr()
            )
        },
    );
    let requests = receiver.requests();
    for (i, injected) in ["500", "slow", "reset", "503"].iter().enumerate() {
        assert!(requests.len() > i, "the {injected} reply was never used");
    }
    // Request shape (Splunk HTTP Event Collector, /services/collector/event).
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/services/collector/event");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Splunk {TOKEN}").as_str())
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    for r in requests.iter().filter(|r| r.acknowledged()) {
        for e in hec_events(r) {
            let alert = &by_id[e["event"]["id"].as_str().expect("event.id")];
            assert_eq!(&e["event"], alert, "the HEC event is the alert");
            assert_eq!(e["source"], "monitor");
            assert_eq!(e["sourcetype"], "monitor:alert");
            assert!(e["host"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
            let t = alert["time"].as_str().expect("time");
            let sent = e["time"].as_f64().expect("HEC time is epoch seconds");
            // HEC takes seconds with millisecond decimals: the alert time cut to milliseconds.
            assert_eq!(
                (sent * 1000.0).round() as i64,
                epoch_ms(t),
                "time {sent} vs alert {t}"
            );
        }
    }
    assert_delivery(&requests, hec_ids, &ids);
    // The token never shows up in the agent's logs.
    assert!(
        !agent.stderr().contains(TOKEN),
        "token in the agent's stderr"
    );
    agent.stop();
}

/// Epoch milliseconds (truncated) of an RFC 3339 time, by `date`.
fn epoch_ms(t: &str) -> i64 {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", t, "+%s %N"])
        .output()
        .expect("date");
    let text = String::from_utf8_lossy(&out.stdout);
    let (secs, nanos) = text.trim().split_once(' ').expect("date output");
    secs.parse::<i64>().expect("seconds") * 1000
        + nanos.parse::<i64>().expect("nanoseconds") / 1_000_000
}

/// The `_id`s of the `create` actions of a bulk body.
fn bulk_ids(r: &Request) -> Vec<String> {
    bulk_pairs(r)
        .iter()
        .map(|(action, _)| action["create"]["_id"].as_str().expect("_id").to_owned())
        .collect()
}

/// (action, document) pairs of a bulk body.
fn bulk_pairs(r: &Request) -> Vec<(Value, Value)> {
    let text = std::str::from_utf8(&r.body).expect("UTF-8 body");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    lines
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or(Value::Null)))
        .collect()
}

fn bulk_ok(body: &[u8]) -> String {
    let n = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        / 2;
    let item = r#"{"create":{"_index":"monitor-alerts","status":201,"result":"created"}}"#;
    format!(
        r#"{{"took":1,"errors":false,"items":[{}]}}"#,
        vec![item; n].join(",")
    )
}

#[test]
fn elasticsearch_bulk_gets_ocsf_findings_keyed_by_alert_id() {
    let dir = TempDir::new("fwd-es");
    let receiver =
        match HttpReceiver::start(0, vec![Reply::Status(429), Reply::ResetMidBody], bulk_ok) {
            Ok(r) => r,
            Err(e) => panic!("cannot listen: {e}"),
        };
    let output = format!(
        "elasticsearch+http://127.0.0.1:{}/monitor-alerts?format=ocsf&timeout=2s",
        receiver.port
    );
    let Some(agent) = launch(&dir, &output) else {
        return;
    };
    raise_alerts(&dir.join("watched"), "es", 25);
    let (by_id, ids) = wait_until(
        TIMEOUT,
        "25 alerts written",
        || {
            let w = written(&agent);
            (w.1.len() >= 25).then_some(w)
        },
        || agent.stderr(),
    );
    wait_until(
        TIMEOUT,
        "every alert acknowledged by the bulk receiver",
        || {
            let acked = acknowledged_ids(&receiver.requests(), &bulk_ids);
            ids.iter().all(|id| acked.contains(id)).then_some(())
        },
        || agent.stderr(),
    );
    let requests = receiver.requests();
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/monitor-alerts/_bulk");
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
        if !r.body.is_empty() {
            assert!(r.body.ends_with(b"\n"), "a bulk body ends with a newline");
        }
    }
    for r in requests.iter().filter(|r| r.acknowledged()) {
        for (action, doc) in bulk_pairs(r) {
            let id = action["create"]["_id"].as_str().expect("_id");
            let alert = &by_id[id];
            // The document is the alert as an OCSF Detection Finding.
            assert_eq!(doc["class_uid"], 2004, "{doc}");
            assert_eq!(doc["finding_info"]["uid"], alert["id"]);
            assert_eq!(doc["finding_info"]["title"], RULE);
            assert_eq!(doc["metadata"]["uid"], alert["id"]);
            assert_eq!(doc["severity_id"], 4);
            assert_eq!(doc["evidences"][0]["file"]["path"], alert["event"]["path"]);
        }
    }
    assert_delivery(&requests, bulk_ids, &ids);
    agent.stop();
}

/// The alert ids of a webhook body (a JSON array of alerts).
fn webhook_ids(r: &Request) -> Vec<String> {
    let alerts: Vec<Value> = serde_json::from_slice(&r.body).expect("webhook body: a JSON array");
    alerts
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_full_spool_drops_the_oldest_alerts_and_says_so_in_an_alert() {
    let dir = TempDir::new("fwd-full");
    let port = free_port();
    let watched = dir.join("watched");
    std::fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    let args: Vec<String> = [
        "--output",
        &format!("http://127.0.0.1:{port}/hook?timeout=1s"),
        "--spool-dir",
        &dir.join("spool").display().to_string(),
        "--spool-max-bytes",
        "16K",
        "--stats-interval",
        "1",
    ]
    .map(str::to_owned)
    .to_vec();
    let agent = match ForwardAgent::launch(&dir.join("alerts.jsonl"), &rules, &args) {
        Ok(a) => a,
        Err(e) => {
            skip_or_fail(&format!("cannot run the agent: {e}"));
            return;
        }
    };
    // Nobody listens on `port`: everything stays in the 16 KiB spool, which overflows.
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
            let last_stats = records.iter().rposition(|r| r["kind"] == "agent_stats")?;
            let last_overflow = records
                .iter()
                .rposition(|r| r["rule"] == "agent.spool-overflow")?;
            let stats = &records[last_stats];
            let dropped = stats["delivery"]["alerts"]["lane"]["dropped_full"].as_u64()?;
            let reported = overflow_total(&records);
            (last_stats > last_overflow
                && alert_ids(&records).len() == 40
                && dropped > 0
                && reported == dropped)
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
    let receiver = HttpReceiver::start(port, Vec::new(), |_| "{}".into()).expect("listen");
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
    // The batch a failing sink already holds in memory is still delivered even when the spool
    // drops it from disk (it is counted as dropped): at most one batch (100 for a webhook)
    // more than kept, and the oldest ones.
    let in_flight = received.len() - expected;
    assert!(
        in_flight <= 100,
        "kept = written - dropped (+ the in-flight batch): received {received:?}\n\
         written {all_alerts:?}"
    );
    let mut kept = all_alerts[..in_flight].to_vec();
    kept.extend_from_slice(&all_alerts[dropped..]);
    assert_eq!(received, kept, "the newest alerts are kept, in order");
    agent.stop();
}

#[test]
fn bad_sink_specs_are_clear_start_up_errors() {
    let dir = TempDir::new("fwd-bad");
    let rules = write_rules(dir.path(), &dir.join("watched"));
    let bad_ca = dir.join("bad-ca.pem");
    std::fs::write(&bad_ca, "not a certificate\n").expect("bad CA file");
    let cases = [
        (
            "gopher://h:70",
            vec!["unknown scheme `gopher`", "syslog+udp"],
        ),
        (
            "splunk+https://127.0.0.1:8088?token_file=/nonexistent/hec.token",
            vec![
                "cannot read token file /nonexistent/hec.token",
                "No such file",
            ],
        ),
        (
            &format!("syslog+tls://127.0.0.1:6514?ca={}", bad_ca.display()),
            vec!["bad TLS settings"],
        ),
        (
            "elasticsearch+http://127.0.0.1:9200",
            vec!["bad Elasticsearch index", "must end in /INDEX"],
        ),
        (
            "https://user:hunter2secret@hooks.example/T0/B0/path-token",
            vec!["credentials in the URL"],
        ),
        (
            "file:/tmp/x.jsonl?format=xml",
            vec!["bad value `xml` for `format`"],
        ),
    ];
    for (spec, expected) in &cases {
        let out = std::process::Command::new(monitor_tests::agent_binary())
            .args(["run", "--rules"])
            .arg(&rules)
            .args(["--output", spec, "--spool-dir"])
            .arg(dir.join("spool"))
            .output()
            .expect("run the agent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec}: started anyway");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{spec}: no `{needle}` in:\n{stderr}"
            );
        }
        for secret in ["hunter2secret", "path-token"] {
            assert!(
                !stderr.contains(secret),
                "{spec}: secret in the error:\n{stderr}"
            );
        }
    }
}

#[test]
fn a_sink_with_events_true_gets_events_through_their_own_spool() {
    let dir = TempDir::new("fwd-events");
    let receiver = HttpReceiver::start(0, Vec::new(), |_| "{}".into()).expect("listen");
    let output = format!("http://127.0.0.1:{}/all?events=true", receiver.port);
    let Some(agent) = launch(&dir, &output) else {
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

/// Fills the filesystem of `dir` with one file until it is full; returns the file.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler file");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The last partial page too.
    while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    path
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
    let watched = dir.join("watched");
    std::fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    let args: Vec<String> = [
        "--output",
        &format!("http://127.0.0.1:{}/hook", receiver.port),
        "--spool-dir",
        &tmpfs.path().join("spool").display().to_string(),
        "--stats-interval",
        "1",
    ]
    .map(str::to_owned)
    .to_vec();
    let agent = match ForwardAgent::launch(&dir.join("alerts.jsonl"), &rules, &args) {
        Ok(a) => a,
        Err(e) => {
            skip_or_fail(&format!("cannot run the agent: {e}"));
            return;
        }
    };
    raise_alerts(&watched, "roomy", 5);
    wait_until(
        TIMEOUT,
        "the first alerts at the webhook",
        || (acknowledged_ids(&receiver.requests(), &webhook_ids).len() >= 5).then_some(()),
        || agent.stderr(),
    );

    // The spool's disk is full: alerts still reach the local output, and wait in memory.
    let filler = fill(tmpfs.path());
    raise_alerts(&watched, "full", 10);
    let stats = wait_until(
        TIMEOUT,
        "failed spool appends in agent_stats",
        || {
            let records = agent.records();
            let stats = records.iter().rev().find(|r| r["kind"] == "agent_stats")?;
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
