//! RFC 5424 syslog over UDP (RFC 5426, one datagram per message), TCP and TLS (RFC 6587
//! octet-counting framing, RFC 5425). Connections open on first use and after any failure, so a
//! receiver that is down at start-up is retried rather than fatal.
//!
//! Message: `<PRI>1 TIMESTAMP HOSTNAME monitor PROCID alert - MSG`, where PRI is facility * 8 +
//! the severity mapped from the alert, TIMESTAMP the alert's `time` and MSG the alert JSON.
//! Forwarded events get MSGID `event` and severity informational (6).
//!
//! Syslog has no application-level acknowledgement: a TCP/TLS batch counts as delivered once it
//! is written and flushed to the socket (a batch that fails part-way is resent whole, so a
//! receiver may see duplicates), and UDP once each datagram is handed to the kernel. Before
//! reusing an idle connection the sink checks whether the receiver closed it, so a restarted
//! receiver does not silently swallow the next batch.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::{TcpStream, UdpSocket},
    time::timeout,
};
use tokio_rustls::TlsConnector;

use super::{
    record::{Outgoing, hostname},
    spec::{Facility, Format, SyslogTarget, SyslogTransport},
    tls,
};
use crate::deliver::{Sink, SinkError};

/// Largest UDP payload over IPv4; longer messages are truncated (RFC 5426 allows it).
pub const MAX_DATAGRAM: usize = 65_507;

/// A byte stream to a syslog receiver (plain TCP or TLS).
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

enum Conn {
    Udp(UdpSocket),
    Stream(Box<dyn Stream>),
}

/// Sends alerts to a syslog receiver.
pub struct SyslogSink {
    name: String,
    target: SyslogTarget,
    timeout: Duration,
    hostname: String,
    procid: String,
    conn: Option<Conn>,
    /// What is sent: native records or their OCSF form.
    format: Format,
}

impl SyslogSink {
    /// A sink for `target`; nothing is connected until the first batch.
    pub fn new(name: &str, target: &SyslogTarget, timeout: Duration, format: Format) -> Self {
        Self {
            name: name.to_owned(),
            format,
            target: target.clone(),
            timeout,
            hostname: hostname().map_or_else(|| "-".to_owned(), |h| header_field(&h, 255)),
            procid: std::process::id().to_string(),
            conn: None,
        }
    }

    async fn send_batch(&mut self, batch: &[Vec<u8>]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let conn = match self.conn.take() {
            Some(Conn::Stream(mut s)) => (!peer_closed(s.as_mut())).then_some(Conn::Stream(s)),
            other => other,
        };
        let conn = match conn {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let messages = batch
            .iter()
            .map(|line| Outgoing::read(line, self.format))
            .filter(Outgoing::has_body)
            .map(|record| {
                format_message(&record, self.target.facility, &self.hostname, &self.procid)
            });
        // On failure the connection is dropped here and the next batch reconnects.
        self.conn = Some(match conn {
            Conn::Stream(s) => self.write_stream(s, messages).await?,
            Conn::Udp(socket) => self.write_datagrams(socket, messages).await?,
        });
        Ok(())
    }

    async fn write_stream(
        &self,
        mut stream: Box<dyn Stream>,
        messages: impl Iterator<Item = Vec<u8>>,
    ) -> Result<Conn, SinkError> {
        let mut buf = Vec::new();
        for msg in messages {
            frame(&msg, &mut buf);
        }
        let write = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        match timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(Conn::Stream(stream)),
            Ok(Err(e)) => Err(self.io_error("write failed", e)),
            Err(_) => Err(self.timed_out("write")),
        }
    }

    async fn write_datagrams(
        &self,
        socket: UdpSocket,
        messages: impl Iterator<Item = Vec<u8>>,
    ) -> Result<Conn, SinkError> {
        let mut truncated = 0_usize;
        for mut msg in messages {
            if msg.len() > MAX_DATAGRAM {
                msg.truncate(MAX_DATAGRAM);
                truncated += 1;
            }
            match timeout(self.timeout, socket.send(&msg)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(self.io_error("send failed", e)),
                Err(_) => return Err(self.timed_out("send")),
            }
        }
        if truncated > 0 {
            tracing::warn!(
                sink = %self.name,
                truncated,
                "alerts longer than one UDP datagram ({MAX_DATAGRAM} bytes) were truncated; \
                 use syslog+tcp or syslog+tls to send them whole"
            );
        }
        Ok(Conn::Udp(socket))
    }

    /// Resolves the host (again, so DNS changes are followed) and connects.
    async fn connect(&self) -> Result<Conn, SinkError> {
        let target = &self.target;
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        let addrs: Vec<SocketAddr> = match timeout(self.timeout, lookup).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(self.io_error("cannot resolve host", e)),
            Err(_) => return Err(self.timed_out("name lookup")),
        };
        let Some(&first) = addrs.first() else {
            return Err(SinkError::transient(format!(
                "{}: host has no address",
                self.name
            )));
        };
        if let SyslogTransport::Udp = target.transport {
            let local: SocketAddr = if first.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0_u16; 8], 0).into()
            };
            let socket = UdpSocket::bind(local)
                .await
                .map_err(|e| self.io_error("cannot open UDP socket", e))?;
            socket
                .connect(first)
                .await
                .map_err(|e| self.io_error("cannot connect UDP socket", e))?;
            return Ok(Conn::Udp(socket));
        }
        let tcp = self.connect_tcp(&addrs).await?;
        match &target.transport {
            SyslogTransport::Tls(config) => {
                let server_name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|e| {
                        let message = format!("{}: not a valid TLS server name", self.name);
                        SinkError::permanent_from(message, e)
                    })?;
                let handshake =
                    TlsConnector::from(config.client_config()).connect(server_name, tcp);
                match timeout(self.timeout, handshake).await {
                    Ok(Ok(stream)) => Ok(Conn::Stream(Box::new(stream))),
                    Ok(Err(e)) => Err(self.io_error("TLS handshake failed", e)),
                    Err(_) => Err(self.timed_out("TLS handshake")),
                }
            }
            SyslogTransport::Tcp | SyslogTransport::Udp => Ok(Conn::Stream(Box::new(tcp))),
        }
    }

    async fn connect_tcp(&self, addrs: &[SocketAddr]) -> Result<TcpStream, SinkError> {
        let mut last = None;
        for addr in addrs {
            match timeout(self.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // Alerts are batched already; send each batch at once.
                    stream.set_nodelay(true).ok();
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(self.io_error("cannot connect", e)),
                Err(_) => last = Some(self.timed_out("connect")),
            }
        }
        Err(last
            .unwrap_or_else(|| SinkError::transient(format!("{}: host has no address", self.name))))
    }

    /// A failure of `what`, permanent when the TLS peer or our certificate was not trusted.
    fn io_error(&self, what: &str, err: std::io::Error) -> SinkError {
        if tls::find_rustls_error(&err).is_some_and(tls::is_trust_failure) {
            let message = format!("{}: {what} (check ca=, cert= and key=)", self.name);
            SinkError::permanent_from(message, err)
        } else {
            SinkError::transient_from(format!("{}: {what}", self.name), err)
        }
    }

    fn timed_out(&self, what: &str) -> SinkError {
        SinkError::transient(format!(
            "{}: {what} timed out after {:?}",
            self.name, self.timeout
        ))
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(
        &'a mut self,
        batch: &'a [Vec<u8>],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(self.send_batch(batch))
    }
}

/// Whether the receiver closed (or reset) an idle connection, checked without waiting, so a
/// batch is not written into a connection that is already gone. Bytes a receiver sends are
/// discarded; syslog receivers do not talk back.
fn peer_closed(stream: &mut dyn Stream) -> bool {
    let mut scratch = [0_u8; 512];
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for _ in 0..64 {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *stream).poll_read(&mut cx, &mut buf) {
            Poll::Pending => return false,
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return true,
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return true,
        }
    }
    false
}

/// Formats one RFC 5424 message for `record`.
pub fn format_message(
    record: &Outgoing<'_>,
    facility: Facility,
    hostname: &str,
    procid: &str,
) -> Vec<u8> {
    // Forwarded events are informational (6) and carry MSGID `event`.
    let (severity, msgid) = if record.is_alert() {
        (record.syslog_severity(), "alert")
    } else {
        (6, "event")
    };
    let pri = u16::from(facility.code()) * 8 + u16::from(severity);
    let time = timestamp(record.time_or_now());
    let mut msg = format!("<{pri}>1 {time} {hostname} monitor {procid} {msgid} - ").into_bytes();
    msg.extend_from_slice(record.body());
    msg
}

/// RFC 5424 TIMESTAMP: UTC, at most microsecond precision.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A header field: printable ASCII without spaces, at most `max` bytes, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let field: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// Appends `msg` with RFC 6587 octet-counting framing: `LEN SP MSG`.
pub fn frame(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}
