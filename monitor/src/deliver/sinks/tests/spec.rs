//! `--output` spec parsing: accepted forms, defaults, and the start-up errors.

use std::time::Duration;

use super::pki::{Ca, TempDir};
use crate::deliver::sinks::{
    is_network_spec, parse,
    spec::{Facility, Format, HttpKind, HttpTarget, SyslogTarget, SyslogTransport, Target},
};

use super::TOKEN;

fn syslog(spec: &str) -> SyslogTarget {
    match parse(spec).expect("valid spec").target {
        Target::Syslog(t) => t,
        Target::Http(_) => panic!("{spec} parsed as HTTP"),
    }
}

fn http(spec: &str) -> HttpTarget {
    match parse(spec).expect("valid spec").target {
        Target::Http(t) => t,
        Target::Syslog(_) => panic!("{spec} parsed as syslog"),
    }
}

fn error(spec: &str) -> String {
    match parse(spec) {
        Ok(s) => panic!("{spec} was accepted: {s:?}"),
        Err(e) => crate::deliver::error_chain(&e),
    }
}

#[test]
fn syslog_specs_take_default_ports_and_facility() {
    let udp = syslog("syslog+udp://logs.example");
    assert_eq!((udp.host.as_str(), udp.port), ("logs.example", 514));
    assert!(matches!(udp.transport, SyslogTransport::Udp));
    assert_eq!(udp.facility, Facility::LOCAL0);

    let tcp = syslog("syslog+tcp://10.0.0.5:1514?facility=local3");
    assert_eq!((tcp.host.as_str(), tcp.port), ("10.0.0.5", 1514));
    assert!(matches!(tcp.transport, SyslogTransport::Tcp));
    assert_eq!(tcp.facility.code(), 19);

    let tls = syslog("syslog+tls://[::1]");
    assert_eq!((tls.host.as_str(), tls.port), ("::1", 6514));
    assert!(matches!(tls.transport, SyslogTransport::Tls(_)));

    let spec = parse("syslog+tcp://h:1?format=ocsf&timeout=250ms").expect("valid");
    assert_eq!(spec.format, Some(Format::Ocsf));
    assert_eq!(spec.events, None);
    let with_events = parse("syslog+udp://h:1?events=true").expect("valid");
    assert_eq!((with_events.format, with_events.events), (None, Some(true)));
    assert!(parse("syslog+udp://h:1?events=maybe").is_err());
    assert_eq!(spec.timeout, Duration::from_millis(250));
    assert_eq!(spec.name(), "syslog+tcp://h:1");
    assert_eq!(
        parse("syslog+tcp://h:1").expect("valid").timeout,
        Duration::from_secs(10)
    );
}

#[test]
fn http_specs_build_their_endpoints() {
    let dir = TempDir::new("spec");
    let token = dir.write("token", format!("{TOKEN}\n").as_bytes());
    let t = token.display();

    let splunk = http(&format!("splunk+https://splunk.example?token_file={t}"));
    assert_eq!(splunk.kind, HttpKind::Splunk);
    assert_eq!(
        splunk.endpoint.as_str(),
        "https://splunk.example:8088/services/collector/event"
    );
    assert_eq!(splunk.token.as_ref().map(|s| s.expose()), Some(TOKEN));

    let es = http("elasticsearch+http://es:9201/proxy/monitor-alerts");
    assert_eq!(es.kind, HttpKind::Elasticsearch);
    assert_eq!(
        es.endpoint.as_str(),
        "http://es:9201/proxy/monitor-alerts/_bulk"
    );
    assert!(es.token.is_none());
    let name = parse("elasticsearch+https://es/alerts").expect("valid");
    assert_eq!(name.name(), "elasticsearch+https://es:9200/alerts");

    let hook = http("https://hooks.example/services/T0/B0/XYZ?ca_hint=1&timeout=5s");
    assert_eq!(hook.kind, HttpKind::Webhook);
    assert_eq!(
        hook.endpoint.as_str(),
        "https://hooks.example/services/T0/B0/XYZ?ca_hint=1"
    );
}

#[test]
fn names_and_debug_never_show_tokens_or_webhook_paths() {
    let dir = TempDir::new("spec");
    let token = dir.write("token", TOKEN.as_bytes());
    let spec = parse(&format!(
        "https://hooks.example/services/T0/B0/XYZ?sig=abc&token_file={}",
        token.display()
    ))
    .expect("valid");
    assert!(
        spec.name()
            .strip_prefix("https://hooks.example:443/…#")
            .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        "{}",
        spec.name()
    );
    let other = parse("https://hooks.example/services/T0/B0/OTHER").expect("valid");
    assert_ne!(
        spec.name(),
        other.name(),
        "two webhooks on one host are two sinks"
    );
    let debug = format!("{spec:?}");
    for secret in [TOKEN, "XYZ", "sig=abc"] {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
    assert!(debug.contains("***"), "{debug}");

    // An existing variable (PATH, usually) stands in for the token: no set_var in tests.
    let (var, value) = std::env::vars()
        .find(|(k, v)| {
            v.len() >= 8
                && v.bytes().all(|b| b.is_ascii_graphic())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .expect("the test process has a usable environment variable");
    let spec = parse(&format!("splunk+http://127.0.0.1:8088?token_env={var}")).expect("valid");
    let debug = format!("{spec:?}");
    assert!(!debug.contains(&value), "{debug}");
    let Target::Http(target) = &spec.target else {
        panic!("not HTTP")
    };
    let secret = target.token.as_ref().expect("token");
    assert_eq!(secret.expose(), value);
    assert_eq!(format!("{secret} {secret:?}"), "*** ***");
}

#[test]
fn spec_errors_say_what_is_wrong() {
    let dir = TempDir::new("spec");
    let empty = dir.write("empty", b"\n");
    let not_pem = dir.write("not-pem", b"hello");
    let missing = dir.path().join("missing");
    let cases: Vec<(String, &str)> = vec![
        ("kafka://broker:9092".into(), "unknown scheme `kafka`"),
        ("syslog+tcp://".into(), "names no host"),
        ("syslog+tcp://h:99999".into(), "not a valid URL"),
        ("syslog+tcp://h/path".into(), "syslog takes no path"),
        ("https://user:pw@h/".into(), "credentials in the URL"),
        ("syslog+tcp://h?bogus=1".into(), "unknown option `bogus`"),
        ("syslog+tcp://h?format=xml".into(), "`native` or `ocsf`"),
        (
            "syslog+tcp://h?format=ocsf&format=native".into(),
            "given twice",
        ),
        (
            "syslog+tcp://h?timeout=0".into(),
            "bad value `0` for `timeout`",
        ),
        (
            "syslog+tcp://h?timeout=5h".into(),
            "bad value `5h` for `timeout`",
        ),
        (
            "syslog+udp://h?facility=local9".into(),
            "bad value `local9` for `facility`",
        ),
        ("http://h/?ca=/x.pem".into(), "option `ca` does not apply"),
        ("syslog+tcp://h?token_env=X".into(), "syslog has no token"),
        (
            "https://h/?facility=user".into(),
            "only syslog outputs have a facility",
        ),
        (
            "https://h/?cert=/c.pem".into(),
            "`cert=` and `key=` must be given together",
        ),
        ("splunk+https://h".into(), "needs a token"),
        (
            format!(
                "splunk+https://h?token_file={}&token_env=X",
                empty.display()
            ),
            "not both",
        ),
        (
            format!("splunk+https://h?token_file={}", missing.display()),
            "cannot read token file",
        ),
        (
            format!("splunk+https://h?token_file={}", empty.display()),
            "is empty",
        ),
        (
            "splunk+https://h?token_env=MONITOR_TEST_UNSET_VARIABLE".into(),
            "MONITOR_TEST_UNSET_VARIABLE is not set",
        ),
        (
            format!("syslog+tls://h?ca={}", missing.display()),
            "cannot read CA bundle",
        ),
        (
            format!("syslog+tls://h?ca={}", not_pem.display()),
            "holds no PEM certificate",
        ),
        (
            "syslog+tls://bad!host".into(),
            "not a valid TLS server name",
        ),
        ("elasticsearch+https://es:9200".into(), "must end in /INDEX"),
        ("elasticsearch+https://es:9200/Alerts".into(), "lowercase"),
    ];
    for (spec, expected) in cases {
        let text = error(&spec);
        assert!(
            text.contains(expected),
            "{spec}: `{text}` lacks `{expected}`"
        );
    }
}

#[test]
fn client_certificate_files_are_checked_at_start() {
    let dir = TempDir::new("spec");
    let ca = Ca::new("spec CA");
    let client = ca.client();
    let other = ca.client();
    let ca_pem = dir.write("ca.pem", ca.pem().as_bytes());
    let cert = dir.write("client.pem", client.cert_pem.as_bytes());
    let key = dir.write("client.key", client.key_pem.as_bytes());
    let other_key = dir.write("other.key", other.key_pem.as_bytes());
    let (ca_pem, cert, key, other_key) = (
        ca_pem.display(),
        cert.display(),
        key.display(),
        other_key.display(),
    );

    parse(&format!("syslog+tls://h?ca={ca_pem}&cert={cert}&key={key}")).expect("valid pair");
    let text = error(&format!("syslog+tls://h?cert={cert}&key={other_key}"));
    assert!(text.contains("cannot be used together"), "{text}");
    let text = error(&format!("syslog+tls://h?cert={cert}&key={cert}"));
    assert!(text.contains("holds no PEM private key"), "{text}");
}

#[test]
fn token_never_appears_in_errors() {
    let dir = TempDir::new("spec");
    let bad = dir.write("token", format!("{TOKEN} with space").as_bytes());
    let text = error(&format!("splunk+https://h?token_file={}", bad.display()));
    assert!(text.contains("spaces, control or non-ASCII"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[test]
fn network_specs_are_told_apart_from_local_outputs() {
    for spec in ["syslog+udp://h", "https://h/x", "kafka://b"] {
        assert!(is_network_spec(spec), "{spec}");
    }
    for spec in ["stdout", "-", "file:/var/log/x", "file:///var/log/x"] {
        assert!(!is_network_spec(spec), "{spec}");
    }
}
