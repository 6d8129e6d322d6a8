//! Tests of the network sinks against real receivers on 127.0.0.1.

mod http;
mod pki;
mod receivers;
mod spec;
mod syslog;

use crate::deliver::SinkError;

/// The token used by every test; it must never show up in errors or Debug output.
const TOKEN: &str = "tok-3f9a-SECRET-value";

/// A native alert line with this id and severity.
fn alert(id: &str, severity: &str) -> Vec<u8> {
    serde_json::json!({
        "kind": "alert",
        "id": id,
        "time": "2024-06-10T12:00:00.123456789Z",
        "rule": "test-rule",
        "severity": severity,
        "message": "something happened",
    })
    .to_string()
    .into_bytes()
}

/// The error and its causes, as the engine logs them.
fn chain(e: &SinkError) -> String {
    let text = crate::deliver::error_chain(e);
    assert_no_secret(&text);
    assert_no_secret(&format!("{e:?}"));
    text
}

/// The text of a transient error; fails the test on success or a permanent error.
fn transient(result: Result<(), SinkError>) -> String {
    match result {
        Err(e @ SinkError::Transient { .. }) => chain(&e),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

/// The text of a permanent error; fails the test otherwise.
fn permanent(result: Result<(), SinkError>) -> String {
    match result {
        Err(e @ SinkError::Permanent { .. }) => chain(&e),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(TOKEN), "the token leaked: {text}");
}
