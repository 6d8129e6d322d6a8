//! HTTP sinks over reqwest (HTTP/1.1, rustls): a JSON-array webhook, Splunk HEC and the
//! Elasticsearch bulk API. A batch is acknowledged by a 2xx status (and, for Elasticsearch, by
//! every bulk item succeeding or already existing). 408, 429, 5xx, connection failures, resets and
//! timeouts are transient; other statuses are permanent. Redirects are not followed (a POST would
//! turn into a GET) and proxies from the environment are not used.

use std::{collections::HashMap, future::Future, pin::Pin};

use reqwest::{
    StatusCode,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue},
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{
    record::{Outgoing, hostname, write_json_string},
    spec::{Format, HttpKind, HttpTarget, Secret, SinkSpec, SpecError},
    tls::{self, TlsConfig},
};
use crate::deliver::{Sink, SinkError};

/// Response bytes kept for error messages and bulk results; the rest is read and dropped.
const MAX_RESPONSE: usize = 8 << 20;
/// Response bytes quoted in an error message.
const QUOTED_RESPONSE: usize = 300;

/// POSTs alert batches to a webhook, Splunk HEC or Elasticsearch.
pub struct HttpSink {
    name: String,
    kind: HttpKind,
    client: reqwest::Client,
    endpoint: reqwest::Url,
    auth: Option<HeaderValue>,
    token: Option<Secret>,
    hostname: String,
    timeout: std::time::Duration,
    /// What is sent: native records or their OCSF form.
    format: Format,
}

impl HttpSink {
    /// Builds the client for `target`; nothing is connected until the first batch.
    pub fn new(spec: &SinkSpec, target: &HttpTarget, format: Format) -> Result<Self, SpecError> {
        let client_error = |source| SpecError::HttpClient {
            spec: spec.name().to_owned(),
            source,
        };
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(spec.timeout)
            .timeout(spec.timeout)
            .user_agent(concat!("monitor/", env!("CARGO_PKG_VERSION")));
        // reqwest wants a TLS set-up even for http:// (the default one needs a process-wide
        // crypto provider, which this crate does not install), so always hand it ours.
        let tls = match &target.tls {
            Some(tls) => tls.clone(),
            None => TlsConfig::load(None, None).map_err(|source| SpecError::Tls {
                spec: spec.name().to_owned(),
                source: Box::new(source),
            })?,
        };
        builder = builder.tls_backend_preconfigured(tls.http_client_config());
        let client = builder.build().map_err(client_error)?;
        let scheme = match target.kind {
            HttpKind::Webhook => "Bearer",
            HttpKind::Splunk => "Splunk",
            HttpKind::Elasticsearch => "ApiKey",
        };
        let auth = match &target.token {
            Some(token) => {
                // The token was checked to be visible ASCII, so this cannot fail.
                let mut value = HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
                    .map_err(|_| SpecError::TokenInvalid {
                        spec: spec.name().to_owned(),
                        origin: "the token".to_owned(),
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            name: spec.name().to_owned(),
            kind: target.kind,
            client,
            endpoint: target.endpoint.clone(),
            auth,
            token: target.token.clone(),
            hostname: hostname().unwrap_or_else(|| "unknown".to_owned()),
            timeout: spec.timeout,
            format,
        })
    }

    async fn send_batch(&mut self, batch: &[Vec<u8>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let records: Vec<Outgoing<'_>> = batch
            .iter()
            .map(|line| Outgoing::read(line, self.format))
            .filter(Outgoing::has_body)
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        let (body, content_type) = match self.kind {
            HttpKind::Webhook => (webhook_body(&records), "application/json"),
            HttpKind::Splunk => (hec_body(&records, &self.hostname), "application/json"),
            HttpKind::Elasticsearch => (bulk_body(&records), "application/x-ndjson"),
        };
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, content_type)
            .body(body);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let mut response = request.send().await.map_err(|e| self.request_error(e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.request_error(e))? {
            let room = MAX_RESPONSE.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if !status.is_success() {
            return Err(self.status_error(status, &body));
        }
        match self.kind {
            HttpKind::Elasticsearch => check_bulk_response(&body, batch.len())
                .map_err(|e| e.with_context(&self.name, self.token.as_ref())),
            HttpKind::Webhook | HttpKind::Splunk => Ok(()),
        }
    }

    /// A failed exchange: refused, reset, timed out or a TLS failure (permanent when the peer
    /// or our certificate was not trusted).
    fn request_error(&self, err: reqwest::Error) -> SinkError {
        // The URL may carry a webhook's credentials: never print it. Errors carry no headers.
        let err = err.without_url();
        let mut message = format!("{}: request failed", self.name);
        if err.is_timeout() {
            message.push_str(&format!(
                " (no complete response within {:?}: the receiver is slow or stuck, or timeout= \
                 is too short)",
                self.timeout
            ));
        }
        if tls::find_rustls_error(&err).is_some_and(tls::is_trust_failure) {
            message.push_str(" (check ca=, cert= and key=)");
            SinkError::permanent_from(message, err)
        } else {
            SinkError::transient_from(message, err)
        }
    }

    fn status_error(&self, status: StatusCode, body: &[u8]) -> SinkError {
        let hint = match status.as_u16() {
            401 | 403 => " (check the token)",
            413 => " (request too large)",
            300..=399 => " (redirects are not followed: point the output at the final URL)",
            _ => "",
        };
        let message = format!(
            "{}: receiver answered {status}{hint}: {}",
            self.name,
            quote(body)
        );
        let message = redact(&message, self.token.as_ref());
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
            || status.is_informational()
        {
            SinkError::transient(message)
        } else {
            SinkError::permanent(message)
        }
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(
        &'a mut self,
        batch: &'a [Vec<u8>],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(self.send_batch(batch))
    }

    fn max_batch(&self) -> usize {
        match self.kind {
            HttpKind::Elasticsearch => 500,
            HttpKind::Webhook | HttpKind::Splunk => 100,
        }
    }
}

/// A webhook body: the alerts as one JSON array.
pub fn webhook_body(records: &[Outgoing<'_>]) -> Vec<u8> {
    let mut out = vec![b'['];
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        record.write_json(&mut out);
    }
    out.push(b']');
    out
}

/// A Splunk HEC body: one event object per record, newline-separated; sourcetype
/// `monitor:alert` for alerts, `monitor:event` for forwarded events.
pub fn hec_body(records: &[Outgoing<'_>], host: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        let t = record.time_or_now();
        let time = format!("{}.{:03}", t.timestamp(), t.timestamp_subsec_millis());
        out.extend_from_slice(format!("{{\"time\":{time},\"host\":").as_bytes());
        write_json_string(&mut out, host);
        out.extend_from_slice(if record.is_alert() {
            b",\"source\":\"monitor\",\"sourcetype\":\"monitor:alert\",\"event\":"
        } else {
            b",\"source\":\"monitor\",\"sourcetype\":\"monitor:event\",\"event\":"
        });
        record.write_json(&mut out);
        out.extend_from_slice(b"}\n");
    }
    out
}

/// An Elasticsearch bulk body: a `create` action per alert, keyed by the alert id (or, lacking
/// one, by a hash of the line) so a resent batch cannot duplicate documents.
pub fn bulk_body(records: &[Outgoing<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        let id = record.id().map_or_else(
            || {
                Sha256::digest(record.body())[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            },
            str::to_owned,
        );
        out.extend_from_slice(b"{\"create\":{\"_id\":");
        write_json_string(&mut out, &id);
        out.extend_from_slice(b"}}\n");
        record.write_object(&mut out);
        out.push(b'\n');
    }
    out
}

#[derive(Deserialize)]
struct BulkResponse {
    errors: bool,
    #[serde(default)]
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Why a bulk response with a 2xx status still did not acknowledge the batch.
#[derive(Debug, PartialEq, Eq)]
pub struct BulkFailure {
    pub transient: bool,
    pub detail: String,
}

impl BulkFailure {
    fn with_context(self, name: &str, token: Option<&Secret>) -> SinkError {
        let message = redact(&format!("{name}: {}", self.detail), token);
        if self.transient {
            SinkError::transient(message)
        } else {
            SinkError::permanent(message)
        }
    }
}

/// Checks a `_bulk` response: items that were created or already existed (409) are
/// acknowledged; any other item failure fails the batch, transiently when it is 429 or 5xx (or
/// the response is unreadable), permanently when every failure is another 4xx (such as a mapping
/// error, which resending will not fix).
pub fn check_bulk_response(body: &[u8], sent: usize) -> Result<(), BulkFailure> {
    let response: BulkResponse = serde_json::from_slice(body).map_err(|e| BulkFailure {
        transient: true,
        detail: format!("unreadable bulk response ({e}): {}", quote(body)),
    })?;
    if !response.errors {
        return Ok(());
    }
    let failed: Vec<&BulkItem> = response
        .items
        .iter()
        .flat_map(HashMap::values)
        .filter(|item| !(200..300).contains(&item.status) && item.status != 409)
        .collect();
    let Some(first) = failed.first() else {
        return Ok(());
    };
    let transient = failed
        .iter()
        .any(|item| item.status == 429 || item.status >= 500 || item.status < 400);
    let reason = first.error.as_ref().map_or_else(String::new, |e| {
        let kind = e
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        let reason = e
            .get("reason")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        format!(" {kind}: {reason}")
    });
    Err(BulkFailure {
        transient,
        detail: format!(
            "{} of {sent} documents rejected; first: status {}{}",
            failed.len(),
            first.status,
            reason.chars().take(QUOTED_RESPONSE).collect::<String>()
        ),
    })
}

/// The start of a response body, printable, for an error message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_RESPONSE)]);
    let mut quoted: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > QUOTED_RESPONSE {
        quoted.push('…');
    }
    if quoted.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        quoted
    }
}

/// Removes the token from a message, in case a receiver echoed it back.
fn redact(message: &str, token: Option<&Secret>) -> String {
    match token {
        Some(token) => message.replace(token.expose(), "***"),
        None => message.to_owned(),
    }
}
