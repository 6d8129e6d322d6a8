//! Webhook, Splunk HEC and Elasticsearch bulk sinks against a real local HTTP server, including
//! injected failures.

use std::net::SocketAddr;

use serde_json::Value;

use super::{
    TOKEN, alert, assert_no_secret, chain, permanent,
    pki::{Ca, TempDir, server_config},
    receivers::{Behavior, HttpReceiver, free_port},
    transient,
};
use crate::deliver::{
    Sink,
    sinks::{Format, connect, parse},
};

const HEC_OK: &str = r#"{"text":"Success","code":0}"#;
const BULK_OK: &str = r#"{"took":3,"errors":false,"items":[]}"#;

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn ok(body: &str) -> Behavior {
    Behavior::Reply(200, body.to_owned())
}

async fn sink_for(spec: &str) -> Box<dyn Sink> {
    let spec = parse(spec).expect("spec");
    assert_no_secret(&format!("{spec:?}"));
    let sink = connect(&spec, Format::Native).await.expect("sink");
    assert_no_secret(sink.name());
    sink
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[tokio::test]
async fn webhook_posts_a_json_array_with_bearer_token() {
    let dir = TempDir::new("webhook");
    let token = dir.write("token", TOKEN.as_bytes());
    let mut rx = HttpReceiver::start(any_port(), None, ok("ok")).await;
    let mut sink = sink_for(&format!(
        "http://{}/hooks/abc?team=sec&token_file={}",
        rx.addr,
        token.display()
    ))
    .await;
    let prefix = format!("http://{}/…#", rx.addr);
    assert!(sink.name().starts_with(&prefix), "{}", sink.name());
    assert!(!sink.name().contains("abc"), "{}", sink.name());
    let batch = vec![alert("w1", "high"), alert("w2", "low")];
    sink.send(&batch).await.expect("acknowledged");

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hooks/abc?team=sec");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let expected: Vec<Value> = batch.iter().map(|l| json(l)).collect();
    assert_eq!(json(&req.body), Value::Array(expected));
}

#[tokio::test]
async fn splunk_hec_gets_event_objects_with_the_splunk_token() {
    let dir = TempDir::new("hec");
    let token = dir.write("token", TOKEN.as_bytes());
    let mut rx = HttpReceiver::start(any_port(), None, ok(HEC_OK)).await;
    let mut sink = sink_for(&format!(
        "splunk+http://{}?token_file={}",
        rx.addr,
        token.display()
    ))
    .await;
    let batch = vec![alert("s1", "critical"), alert("s2", "medium")];
    sink.send(&batch).await.expect("acknowledged");

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/services/collector/event");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Splunk {TOKEN}").as_str())
    );
    let events: Vec<Value> = serde_json::Deserializer::from_slice(&req.body)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .expect("concatenated JSON objects");
    assert_eq!(events.len(), 2);
    for (event, line) in events.iter().zip(&batch) {
        assert_eq!(event["event"], json(line));
        assert_eq!(event["time"].as_f64(), Some(1_718_020_800.123));
        assert_eq!(event["sourcetype"], "monitor:alert");
        assert_eq!(event["source"], "monitor");
        assert!(event["host"].as_str().is_some_and(|h| !h.is_empty()));
    }
}

#[tokio::test]
async fn elasticsearch_gets_create_actions_keyed_by_alert_id() {
    let dir = TempDir::new("es");
    let token = dir.write("token", TOKEN.as_bytes());
    let mut rx = HttpReceiver::start(any_port(), None, ok(BULK_OK)).await;
    let mut sink = sink_for(&format!(
        "elasticsearch+http://{}/monitor-alerts?token_file={}",
        rx.addr,
        token.display()
    ))
    .await;
    assert_eq!(sink.max_batch(), 500);
    let batch = vec![
        alert("e1", "high"),
        alert("e2", "low"),
        b"not json".to_vec(),
    ];
    sink.send(&batch).await.expect("acknowledged");

    let req = rx.next().await;
    assert_eq!(req.path, "/monitor-alerts/_bulk");
    assert_eq!(req.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("ApiKey {TOKEN}").as_str())
    );
    assert!(req.body.ends_with(b"\n"));
    let lines: Vec<Value> = req
        .body
        .trim_ascii_end()
        .split(|&b| b == b'\n')
        .map(json)
        .collect();
    assert_eq!(lines.len(), 6, "an action and a document per alert");
    assert_eq!(lines[0], serde_json::json!({"create": {"_id": "e1"}}));
    assert_eq!(lines[1], json(&batch[0]));
    assert_eq!(lines[2], serde_json::json!({"create": {"_id": "e2"}}));
    assert_eq!(lines[3], json(&batch[1]));
    // A line without an id gets a content hash, so resends stay idempotent.
    assert_eq!(lines[4]["create"]["_id"].as_str().map(str::len), Some(32));
    assert_eq!(lines[5], serde_json::json!({"message": "not json"}));
}

#[tokio::test]
async fn elasticsearch_item_failures_fail_the_batch_except_conflicts() {
    let rx = HttpReceiver::start(any_port(), None, ok(BULK_OK)).await;
    let item = |status: u16, kind: &str| {
        serde_json::json!({"create": {"_id": "x", "status": status,
            "error": {"type": kind, "reason": "details"}}})
    };
    let bulk = |items: Vec<Value>| {
        ok(&serde_json::json!({"took": 1, "errors": true, "items": items}).to_string())
    };
    rx.script([
        bulk(vec![
            item(201, ""),
            item(409, "version_conflict_engine_exception"),
        ]),
        bulk(vec![
            item(201, ""),
            item(429, "es_rejected_execution_exception"),
        ]),
        bulk(vec![item(400, "mapper_parsing_exception"), item(409, "")]),
        ok("<html>proxy</html>"),
    ]);
    let mut sink = sink_for(&format!("elasticsearch+http://{}/alerts", rx.addr)).await;
    let batch = vec![alert("e1", "high"), alert("e2", "high")];

    sink.send(&batch).await.expect("409 means already stored");
    let message = transient(sink.send(&batch).await);
    assert!(message.contains("1 of 2 documents rejected"), "{message}");
    assert!(
        message.contains("es_rejected_execution_exception"),
        "{message}"
    );
    let message = permanent(sink.send(&batch).await);
    assert!(message.contains("mapper_parsing_exception"), "{message}");
    let message = transient(sink.send(&batch).await);
    assert!(message.contains("unreadable bulk response"), "{message}");
    sink.send(&batch).await.expect("acknowledged");
}

#[tokio::test]
async fn failures_are_transient_and_delivery_resumes() {
    let dir = TempDir::new("failures");
    let token = dir.write("token", TOKEN.as_bytes());
    let addr = free_port().await;
    let mut sink = sink_for(&format!(
        "splunk+http://{addr}?token_file={}&timeout=500ms",
        token.display()
    ))
    .await;
    let batch: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            serde_json::json!({"id": format!("f{i}"), "severity": "high", "pad": "y".repeat(20_000)})
                .to_string()
                .into_bytes()
        })
        .collect();

    // Nothing listening.
    let message = transient(sink.send(&batch).await);
    assert!(
        message.contains(&format!("splunk+http://{addr}")),
        "{message}"
    );

    let mut rx = HttpReceiver::start(addr, None, ok(HEC_OK)).await;
    rx.script([
        Behavior::Reply(500, r#"{"text":"Internal server error"}"#.to_owned()),
        Behavior::Reply(503, r#"{"text":"Server is busy","code":9}"#.to_owned()),
        Behavior::Stall,
        Behavior::ResetMidBody,
    ]);
    let message = transient(sink.send(&batch).await);
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("Internal server error"), "{message}");
    let message = transient(sink.send(&batch).await);
    assert!(message.contains("503"), "{message}");
    let message = transient(sink.send(&batch).await);
    assert!(message.contains("timed out"), "{message}");
    transient(sink.send(&batch).await);

    sink.send(&batch).await.expect("delivered after recovery");
    // Requests read in full: the 500, the 503, the stalled one and the final one.
    for _ in 0..3 {
        rx.next().await;
    }
    let last = rx.next().await;
    let events = serde_json::Deserializer::from_slice(&last.body).into_iter::<Value>();
    assert_eq!(events.count(), batch.len());
    rx.stop();
}

#[tokio::test]
async fn client_errors_are_permanent_and_never_echo_the_token() {
    let dir = TempDir::new("statuses");
    let token = dir.write("token", TOKEN.as_bytes());
    let rx = HttpReceiver::start(any_port(), None, ok(HEC_OK)).await;
    rx.script([
        Behavior::EchoAuth(403),
        Behavior::Reply(400, r#"{"text":"Invalid data format","code":6}"#.to_owned()),
        Behavior::Reply(429, String::new()),
        Behavior::Reply(302, String::new()),
    ]);
    let mut sink = sink_for(&format!(
        "splunk+http://{}?token_file={}",
        rx.addr,
        token.display()
    ))
    .await;
    let batch = vec![alert("p1", "high")];

    let result = sink.send(&batch).await;
    assert_no_secret(&format!("{result:?}"));
    let message = permanent(result);
    assert!(
        message.contains("403") && message.contains("check the token"),
        "{message}"
    );
    assert!(
        message.contains("Splunk ***"),
        "the echoed token is masked: {message}"
    );
    let message = permanent(sink.send(&batch).await);
    assert!(message.contains("Invalid data format"), "{message}");
    transient(sink.send(&batch).await);
    let message = permanent(sink.send(&batch).await);
    assert!(message.contains("redirects are not followed"), "{message}");
}

#[tokio::test]
async fn webhook_errors_hide_the_url() {
    let addr = free_port().await;
    let mut sink = sink_for(&format!("http://{addr}/services/SECRETPATH?sig=SECRETSIG")).await;
    let message = transient(sink.send(&[alert("h1", "low")]).await);
    assert!(!message.contains("SECRET"), "{message}");
    assert!(message.contains(&format!("http://{addr}/…")), "{message}");
}

#[tokio::test]
async fn https_verifies_the_receiver_and_presents_the_client_certificate() {
    let dir = TempDir::new("https");
    let ca = Ca::new("https test CA");
    let other_ca = Ca::new("some other CA");
    let client = ca.client();
    let token = dir.write("token", TOKEN.as_bytes());
    let ca_pem = dir.write("ca.pem", ca.pem().as_bytes());
    let other_pem = dir.write("other.pem", other_ca.pem().as_bytes());
    let cert = dir.write("client.pem", client.cert_pem.as_bytes());
    let key = dir.write("client.key", client.key_pem.as_bytes());
    let config = server_config(&ca.server(), Some(&ca));
    let mut rx = HttpReceiver::start(any_port(), Some(config), ok(HEC_OK)).await;
    let base = format!(
        "splunk+https://localhost:{}?token_file={}",
        rx.addr.port(),
        token.display()
    );

    let mut sink = sink_for(&format!(
        "{base}&ca={}&cert={}&key={}",
        ca_pem.display(),
        cert.display(),
        key.display()
    ))
    .await;
    sink.send(&[alert("x1", "high")])
        .await
        .expect("delivered over TLS");
    let req = rx.next().await;
    assert_eq!(req.path, "/services/collector/event");

    let mut sink = sink_for(&format!("{base}&ca={}", other_pem.display())).await;
    let message = permanent(sink.send(&[alert("x2", "high")]).await);
    assert!(message.contains("invalid peer certificate"), "{message}");

    let mut sink = sink_for(&format!("{base}&ca={}", ca_pem.display())).await;
    let message = match sink.send(&[alert("x3", "high")]).await {
        Ok(()) => panic!("the receiver requires a client certificate"),
        Err(e) => chain(&e),
    };
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}
