//! Alert forwarding to HTTP receivers the tests start: the Splunk HEC and Elasticsearch bulk
//! request shapes as those products document them, and failure injection (connection
//! refused, 500/503/429, slow answers, a reset in the middle of a request body). Nothing is
//! lost, order is kept per sink, and duplicates come only from batches the agent could not see
//! acknowledged (at-least-once). Bad specs are start-up errors that never show secrets.

use std::time::Duration;

use monitor_tests::{
    ReservedPort, TempDir,
    deliver::{RULE, launch_in, raise_alerts, wait_until, write_rules, written},
    http::{HttpReceiver, Reply, Request, acknowledged_ids, assert_delivery},
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);
const TOKEN: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

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
    // Bound, not listening yet: connections are refused.
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let output = format!(
        "splunk+http://127.0.0.1:{port}?token_file={}&timeout=3s",
        token.display()
    );
    let Some(agent) = launch_in(&dir, &["--output".to_owned(), output]) else {
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
        // Twice the timeout: the agent gives up on it for sure. The timeout itself leaves
        // room for a stalled VM, so an answered request is never retried as unanswered.
        Reply::Slow(Duration::from_secs(6)),
        Reply::ResetMidBody,
        Reply::Status(503),
    ];
    let listener = reserved.listen().expect("listen on the reserved port");
    let receiver = HttpReceiver::start_on(listener, script, |_| {
        r#"{"text":"Success","code":0}"#.into()
    })
    .expect("serve");
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
        "elasticsearch+http://127.0.0.1:{}/monitor-alerts?format=ocsf",
        receiver.port
    );
    let Some(agent) = launch_in(&dir, &["--output".to_owned(), output]) else {
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
