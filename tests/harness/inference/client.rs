//! A tiny HTTP/1.0 client for servers on the loopback interface of a [`NetNs`], run from a
//! thread of the test binary that joined the namespace (no extra process shows up next to the
//! workload's).

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::Value;

use super::NetNs;

/// How long one request may take (LiteLLM forwards to the provider before it answers).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP response: status code and body.
#[derive(Clone, Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

impl HttpReply {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("the body is not JSON ({e}): {}", self.body))
    }

    /// The body as JSON when the status is 200, else an error with the status and body.
    pub fn ok_json(&self) -> Result<Value, String> {
        if self.status == 200 {
            self.json()
        } else {
            Err(format!("HTTP {}: {}", self.status, self.body))
        }
    }
}

impl NetNs {
    /// `GET path` on 127.0.0.1:`port` inside the namespace, with extra `headers`.
    pub fn get(
        &self,
        port: u16,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpReply, String> {
        self.http(port, "GET", path, headers, None)
    }

    /// `POST path` with a JSON body on 127.0.0.1:`port` inside the namespace.
    pub fn post_json(
        &self,
        port: u16,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<HttpReply, String> {
        self.http(port, "POST", path, headers, Some(body.to_string()))
    }

    fn http(
        &self,
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<HttpReply, String> {
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &body {
            request.push_str("Content-Type: application/json\r\n");
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("Connection: close\r\n\r\n");
        request.push_str(body.as_deref().unwrap_or_default());
        let raw = self
            .run(|| exchange(port, request.as_bytes()))?
            .map_err(|e| {
                format!(
                    "{method} {path} on 127.0.0.1:{port} in {}: {e}",
                    self.name()
                )
            })?;
        parse(&raw).map_err(|e| format!("{method} {path} on 127.0.0.1:{port}: {e}"))
    }
}

fn exchange(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

fn parse(raw: &[u8]) -> Result<HttpReply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim() == "chunked"
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(HttpReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}
