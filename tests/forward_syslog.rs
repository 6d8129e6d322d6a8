//! Alert forwarding to a real rsyslog (the Debian package), started by each test on loopback
//! with a configuration the test writes: alerts arrive framed and complete over TCP, UDP and
//! TLS (verified against the configured CA), pile up in the spool while rsyslog is down, and
//! survive a SIGKILL of the agent.

use std::{
    collections::{BTreeSet, HashMap},
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};

use monitor_tests::{
    ReservedPort, TempDir,
    deliver::{Pki, RULE, Rsyslog, alert_ids, last_stats, launch_in, raise_alerts, wait_until},
    rules::free_port,
    skip_or_fail,
};
use serde_json::Value;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP port");
    socket.local_addr().expect("local address").port()
}

/// The kernel's UDP counters (`/proc/net/snmp`), for a failure report: `RcvbufErrors` counts
/// datagrams dropped because a receiver's buffer was full.
fn udp_counters() -> String {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    match (udp.next(), udp.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "unavailable".to_owned(),
    }
}

/// A test directory, rsyslog's directory and rsyslog, or `None` after saying why not.
fn setup(label: &str) -> Option<(TempDir, TempDir, Rsyslog)> {
    let dir = TempDir::new(label);
    let syslog_dir = TempDir::new_in(dir.path(), "rsyslog").expect("rsyslog dir");
    match Rsyslog::start(&syslog_dir, free_port(), free_udp_port()) {
        Ok(r) => Some((dir, syslog_dir, r)),
        Err(e) => {
            skip_or_fail(&format!("cannot run rsyslog: {e}"));
            None
        }
    }
}

#[test]
fn alerts_arrive_framed_and_complete_over_tcp_and_udp() {
    let Some((dir, _syslog_dir, syslog)) = setup("fwd-syslog") else {
        return;
    };
    let outputs = [
        "--output".to_owned(),
        format!("syslog+tcp://127.0.0.1:{}?facility=local3", syslog.tcp_port),
        "--output".to_owned(),
        format!("syslog+udp://127.0.0.1:{}", syslog.udp_port),
    ];
    let Some(agent) = launch_in(&dir, &outputs) else {
        return;
    };
    raise_alerts(&dir.join("watched"), "a", 40);
    let written = wait_until(
        DELIVERY_TIMEOUT,
        "40 alerts in the agent's file output",
        || {
            let records = agent.records();
            let alerts: Vec<Value> = records
                .into_iter()
                .filter(|r| r["kind"] == "alert" && r["rule"] == RULE)
                .collect();
            (alerts.len() >= 40).then_some(alerts)
        },
        || agent.stderr(),
    );
    assert_eq!(written.len(), 40, "exactly one alert per file");
    for input in ["imtcp", "imudp"] {
        let got = wait_until(
            DELIVERY_TIMEOUT,
            &format!("every alert through {input}"),
            || {
                let lines: Vec<_> = syslog
                    .received()
                    .into_iter()
                    .filter(|l| l.input == input)
                    .collect();
                let ids: BTreeSet<&str> =
                    lines.iter().filter_map(|l| l.msg["id"].as_str()).collect();
                written
                    .iter()
                    .all(|a| ids.contains(a["id"].as_str().unwrap_or_default()))
                    .then_some(lines)
            },
            || {
                format!(
                    "received: {:#?}\nagent: {}\nkernel UDP counters: {}",
                    syslog.received(),
                    agent.stderr(),
                    udp_counters()
                )
            },
        );
        let by_id: HashMap<&str, _> = got
            .iter()
            .filter_map(|l| l.msg["id"].as_str().map(|id| (id, l)))
            .collect();
        for alert in &written {
            let line = by_id[alert["id"].as_str().expect("id")];
            // Complete: the MSG is the alert, byte for byte as JSON.
            assert_eq!(&line.msg, alert, "{input}: MSG differs from the alert");
            assert_eq!(line.app_name, "monitor", "{input}: {line:?}");
            assert_eq!(line.msgid, "alert", "{input}: {line:?}");
            // `high` is syslog error (3).
            assert_eq!(line.severity, 3, "{input}: {line:?}");
            let facility = if input == "imtcp" { 19 } else { 16 };
            assert_eq!(line.facility, facility, "{input}: {line:?}");
        }
        assert!(
            got.iter().all(|l| !l.msg.is_null()),
            "{input}: a message that is not complete JSON (bad framing?): {got:#?}"
        );
    }
    agent.stop();
}

#[test]
fn alerts_pile_up_in_the_spool_and_survive_sigkill_until_rsyslog_returns() {
    let Some((dir, syslog_dir, mut syslog)) = setup("fwd-spool") else {
        return;
    };
    let output = vec![
        "--output".to_owned(),
        format!("syslog+tcp://127.0.0.1:{}", syslog.tcp_port),
    ];
    let Some(agent) = launch_in(&dir, &output) else {
        return;
    };
    let watched = dir.join("watched");
    raise_alerts(&watched, "before", 15);
    wait_until(
        DELIVERY_TIMEOUT,
        "the first 15 alerts at rsyslog",
        || (syslog.received().len() >= 15).then_some(()),
        || agent.stderr(),
    );

    // rsyslog goes away: new alerts are spooled, not lost. The test keeps its port (bound, not
    // listening: connections are refused) for the restart.
    syslog.stop();
    let held = ReservedPort::take(syslog.tcp_port).expect("keep rsyslog's port");
    raise_alerts(&watched, "down", 20);
    let pending = wait_until(
        DELIVERY_TIMEOUT,
        "20 alerts pending in the spool (agent_stats)",
        || {
            let records = agent.records();
            let stats = last_stats(&records)?;
            let sink = &stats["delivery"]["alerts"]["sinks"][0];
            let pending = sink["pending"].as_u64()?;
            // The sink may not have tried (and failed) yet when the 20 are appended.
            let tried = sink["failing"] == true && sink["retries"].as_u64() > Some(0);
            (pending >= 20 && tried && alert_ids(&records).len() >= 35).then(|| sink.clone())
        },
        || agent.stderr(),
    );
    assert_eq!(pending["failing"], true, "{pending}");
    assert!(pending["retries"].as_u64() > Some(0), "{pending}");

    // A crash: nothing flushed, nothing drained.
    agent.kill();
    let Some(agent) = launch_in(&dir, &output) else {
        return;
    };
    raise_alerts(&watched, "restarted", 10);
    wait_until(
        DELIVERY_TIMEOUT,
        "the restarted agent's alerts in the file output",
        || (alert_ids(&agent.records()).len() >= 45).then_some(()),
        || agent.stderr(),
    );

    // rsyslog comes back on the same port, appending to the same file: every alert the agent
    // ever wrote to its file output arrives.
    drop(syslog);
    let tcp_port = held.release();
    let syslog = match Rsyslog::start(&syslog_dir, tcp_port, free_udp_port()) {
        Ok(r) => r,
        Err(e) => panic!("cannot restart rsyslog: {e}"),
    };
    let written = alert_ids(&agent.records());
    assert_eq!(written.len(), 45, "15 + 20 + 10 alerts in the file output");
    let received_ids = || -> Vec<String> {
        syslog
            .received()
            .iter()
            .filter_map(|l| l.msg["id"].as_str().map(str::to_owned))
            .collect()
    };
    wait_until(
        DELIVERY_TIMEOUT,
        "every alert the agent wrote, at rsyslog",
        || {
            let got: BTreeSet<String> = received_ids().into_iter().collect();
            written.iter().all(|id| got.contains(id)).then_some(())
        },
        || {
            let got: BTreeSet<String> = received_ids().into_iter().collect();
            let missing: Vec<&String> = written.iter().filter(|id| !got.contains(*id)).collect();
            format!(
                "missing {} ids: {missing:?}\nagent: {}",
                missing.len(),
                agent.stderr()
            )
        },
    );
    let received = received_ids();
    let unique: BTreeSet<&String> = received.iter().collect();
    assert!(
        unique.iter().all(|id| written.contains(id)),
        "rsyslog got an alert the agent never wrote"
    );
    // At-least-once: a batch in flight at the SIGKILL or at the outage may come twice, but
    // never more than the 20 that were pending.
    assert!(
        received.len() - unique.len() <= 20,
        "{} duplicates of {} alerts",
        received.len() - unique.len(),
        unique.len()
    );
    agent.stop();
}

#[test]
fn alerts_arrive_over_tls_verified_against_the_configured_ca() {
    let dir = TempDir::new("fwd-syslog-tls");
    let pki_dir = TempDir::new_in(dir.path(), "pki").expect("pki dir");
    let pki = match Pki::create(pki_dir.path()) {
        Ok(p) => p,
        Err(e) => {
            skip_or_fail(&format!("cannot make test certificates: {e}"));
            return;
        }
    };
    let syslog_dir = TempDir::new_in(dir.path(), "rsyslog").expect("rsyslog dir");
    let syslog = match Rsyslog::start_tls(&syslog_dir, free_port(), &pki) {
        Ok(r) => r,
        Err(e) => {
            skip_or_fail(&format!(
                "cannot run rsyslog with TLS (Debian package rsyslog-openssl): {e}"
            ));
            return;
        }
    };
    let output = vec![
        "--output".to_owned(),
        format!(
            "syslog+tls://127.0.0.1:{}?ca={}",
            syslog.tcp_port,
            pki.ca.display()
        ),
    ];
    let Some(agent) = launch_in(&dir, &output) else {
        return;
    };
    raise_alerts(&dir.join("watched"), "tls", 10);
    let written = wait_until(
        DELIVERY_TIMEOUT,
        "10 alerts in the file output",
        || {
            let ids = alert_ids(&agent.records());
            (ids.len() >= 10).then_some(ids)
        },
        || agent.stderr(),
    );
    wait_until(
        DELIVERY_TIMEOUT,
        "every alert at rsyslog over TLS",
        || {
            let got: BTreeSet<String> = syslog
                .received()
                .iter()
                .filter(|l| l.app_name == "monitor" && l.msgid == "alert")
                .filter_map(|l| l.msg["id"].as_str().map(str::to_owned))
                .collect();
            written.iter().all(|id| got.contains(id)).then_some(())
        },
        || {
            format!(
                "received: {:#?}\nagent: {}",
                syslog.received(),
                agent.stderr()
            )
        },
    );
    agent.stop();

    // Another CA: the agent refuses the receiver and delivers nothing to it.
    let other_dir = TempDir::new_in(dir.path(), "other-pki").expect("dir");
    let other = Pki::create(other_dir.path()).expect("second CA");
    let spool = dir.join("spool-untrusted");
    let output = vec![
        "--output".to_owned(),
        format!(
            "syslog+tls://127.0.0.1:{}?ca={}",
            syslog.tcp_port,
            other.ca.display()
        ),
        "--spool-dir".to_owned(),
        spool.display().to_string(),
    ];
    let before = syslog.received().len();
    let Some(agent) = launch_in(&dir, &output) else {
        return;
    };
    raise_alerts(&dir.join("watched"), "untrusted", 3);
    let sink = wait_until(
        DELIVERY_TIMEOUT,
        "the TLS sink failing on the untrusted certificate",
        || {
            let records = agent.records();
            let stats = last_stats(&records)?;
            let sink = stats["delivery"]["alerts"]["sinks"][0].clone();
            (sink["failing"] == true && sink["pending"].as_u64() >= Some(3)).then_some(sink)
        },
        || agent.stderr(),
    );
    assert!(
        sink["last_error"]
            .as_str()
            .is_some_and(|e| e.to_ascii_lowercase().contains("certificate")),
        "{sink}"
    );
    assert_eq!(
        syslog.received().len(),
        before,
        "nothing sent to an untrusted receiver"
    );
    agent.stop();
}
