//! Syslog over UDP, TCP and TLS against real listeners.

use std::net::SocketAddr;

use super::{
    alert, permanent,
    pki::{Ca, TempDir, server_config},
    receivers::{Syslog5424, SyslogReceiver, free_port},
    transient,
};
use crate::deliver::sinks::{Format, connect, parse};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Checks the RFC 5424 header of `raw` and returns it parsed.
fn check_message(raw: &[u8], pri: u16, line: &[u8]) -> Syslog5424 {
    let m = Syslog5424::parse(raw).expect("RFC 5424 message");
    assert_eq!(m.pri, pri, "PRI of {m:?}");
    assert_eq!(m.version, "1");
    assert_eq!(m.timestamp, "2024-06-10T12:00:00.123456Z");
    assert_eq!(m.app_name, "monitor");
    assert_eq!(m.procid, std::process::id().to_string());
    assert_eq!(m.msgid, "alert");
    assert_eq!(m.structured_data, "-");
    assert_eq!(m.msg, line);
    m
}

#[tokio::test]
async fn tcp_sends_octet_counted_rfc5424_frames_in_order() {
    let mut rx = SyslogReceiver::stream(any_port(), None).await;
    let spec = parse(&format!("syslog+tcp://127.0.0.1:{}", rx.addr.port())).expect("spec");
    let mut sink = connect(&spec, Format::Native).await.expect("sink");
    assert_eq!(
        sink.name(),
        format!("syslog+tcp://127.0.0.1:{}", rx.addr.port())
    );
    let batch = vec![
        alert("a1", "critical"),
        alert("a2", "high"),
        alert("a3", "medium"),
        alert("a4", "low"),
    ];
    sink.send(&batch).await.expect("delivered");
    // local0 (16) * 8 + crit 2, err 3, warning 4, notice 5.
    for (line, pri) in batch.iter().zip([130, 131, 132, 133]) {
        let m = check_message(&rx.next().await, pri, line);
        assert!(!m.hostname.contains(' ') && !m.hostname.is_empty());
    }
    sink.send(&[alert("a5", "low")])
        .await
        .expect("same connection");
    check_message(&rx.next().await, 133, &alert("a5", "low"));

    // A forwarded event: MSGID `event`, informational (local0 * 8 + 6).
    let event = br#"{"kind":"open","path":"/x","flags":0,"result":3,"time":"2024-06-10T12:00:00.123456789Z","pid":7,"tid":7,"ppid":1,"uid":0}"#.to_vec();
    sink.send(std::slice::from_ref(&event))
        .await
        .expect("delivered");
    let m = Syslog5424::parse(&rx.next().await).expect("RFC 5424 message");
    assert_eq!((m.pri, m.msgid.as_str()), (134, "event"));
    assert_eq!(m.msg, event);
}

#[tokio::test]
async fn tcp_reconnects_when_the_receiver_comes_back() {
    let addr = free_port().await;
    let spec = parse(&format!("syslog+tcp://{addr}?timeout=2s")).expect("spec");
    // A receiver that is down at start is not a start-up error, only a transient one.
    let mut sink = connect(&spec, Format::Native).await.expect("sink");
    let message = transient(sink.send(&[alert("r1", "high")]).await);
    assert!(
        message.contains(&format!("syslog+tcp://{addr}")),
        "{message}"
    );
    assert!(message.contains("cannot connect"), "{message}");

    let mut rx = SyslogReceiver::stream(addr, None).await;
    sink.send(&[alert("r1", "high")])
        .await
        .expect("delivered after recovery");
    check_message(&rx.next().await, 131, &alert("r1", "high"));

    // The receiver restarts: the idle connection is closed under the sink.
    rx.stop().await;
    // Let the runtime's I/O driver see the close.
    tokio::task::yield_now().await;
    transient(sink.send(&[alert("r2", "high")]).await);
    let mut rx = SyslogReceiver::stream(addr, None).await;
    sink.send(&[alert("r2", "high")])
        .await
        .expect("delivered to the new receiver");
    check_message(&rx.next().await, 131, &alert("r2", "high"));
}

#[tokio::test]
async fn udp_sends_one_datagram_per_message_and_truncates_huge_ones() {
    let mut rx = SyslogReceiver::udp().await;
    let spec = parse(&format!("syslog+udp://{}?facility=user", rx.addr)).expect("spec");
    let mut sink = connect(&spec, Format::Native).await.expect("sink");
    let batch = vec![alert("u1", "high"), alert("u2", "critical")];
    sink.send(&batch).await.expect("sent");
    // user (1) * 8 + 3 and + 2.
    check_message(&rx.next().await, 11, &batch[0]);
    check_message(&rx.next().await, 10, &batch[1]);

    let huge = serde_json::json!({ "id": "u3", "severity": "low", "pad": "x".repeat(70_000) })
        .to_string()
        .into_bytes();
    sink.send(std::slice::from_ref(&huge))
        .await
        .expect("sent truncated");
    let datagram = rx.next().await;
    assert_eq!(datagram.len(), 65_507);
    let m = Syslog5424::parse(&datagram).expect("header intact");
    assert_eq!(m.pri, 13);
    assert!(huge.starts_with(&m.msg));
}

#[tokio::test]
async fn tls_verifies_the_receiver_against_the_configured_ca() {
    let dir = TempDir::new("syslog-tls");
    let ca = Ca::new("syslog test CA");
    let other_ca = Ca::new("some other CA");
    let server = ca.server();
    let ca_pem = dir.write("ca.pem", ca.pem().as_bytes());
    let other_pem = dir.write("other.pem", other_ca.pem().as_bytes());
    let mut rx = SyslogReceiver::stream(any_port(), Some(server_config(&server, None))).await;
    let port = rx.addr.port();

    let spec = parse(&format!(
        "syslog+tls://localhost:{port}?ca={}",
        ca_pem.display()
    ))
    .expect("spec");
    let mut sink = connect(&spec, Format::Native).await.expect("sink");
    let batch = vec![alert("t1", "critical"), alert("t2", "medium")];
    sink.send(&batch).await.expect("delivered over TLS");
    check_message(&rx.next().await, 130, &batch[0]);
    check_message(&rx.next().await, 132, &batch[1]);
    assert_eq!(rx.server_names(), ["localhost"]);

    let spec = parse(&format!(
        "syslog+tls://localhost:{port}?ca={}",
        other_pem.display()
    ))
    .expect("spec");
    let mut sink = connect(&spec, Format::Native).await.expect("sink");
    let message = permanent(sink.send(&batch).await);
    assert!(message.contains("invalid peer certificate"), "{message}");
    assert!(message.contains("check ca="), "{message}");
}

#[tokio::test]
async fn tls_presents_the_client_certificate() {
    let dir = TempDir::new("syslog-mtls");
    let ca = Ca::new("syslog test CA");
    let server = ca.server();
    let client = ca.client();
    let ca_pem = dir.write("ca.pem", ca.pem().as_bytes());
    let cert = dir.write("client.pem", client.cert_pem.as_bytes());
    let key = dir.write("client.key", client.key_pem.as_bytes());
    let config = server_config(&server, Some(&ca));
    let mut rx = SyslogReceiver::stream(any_port(), Some(config)).await;

    let spec = parse(&format!(
        "syslog+tls://127.0.0.1:{}?ca={}&cert={}&key={}",
        rx.addr.port(),
        ca_pem.display(),
        cert.display(),
        key.display()
    ))
    .expect("spec");
    let mut sink = connect(&spec, Format::Native).await.expect("sink");
    sink.send(&[alert("m1", "high")]).await.expect("delivered");
    check_message(&rx.next().await, 131, &alert("m1", "high"));
}
