//! Real receivers on 127.0.0.1 for the sink tests: a syslog listener (UDP datagrams or
//! octet-counted TCP/TLS frames, strictly parsed) and a small HTTP/1.1 server that records
//! requests and can be scripted to fail.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use rustls::ServerConfig;
use tokio::{
    io::{
        AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
        BufReader,
    },
    net::{TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

/// How long a test waits for something a receiver should see.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An address on 127.0.0.1 where nothing listens (until a test starts something there).
pub async fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

/// One RFC 5424 message, split into its header fields and MSG.
#[derive(Debug)]
pub struct Syslog5424 {
    pub pri: u16,
    pub version: String,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    pub structured_data: String,
    pub msg: Vec<u8>,
}

impl Syslog5424 {
    /// Parses `<PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP MSG`.
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        let rest = raw.strip_prefix(b"<").ok_or("no `<` before PRI")?;
        let close = rest
            .iter()
            .position(|&b| b == b'>')
            .ok_or("no `>` after PRI")?;
        let pri_text = std::str::from_utf8(&rest[..close]).map_err(|e| e.to_string())?;
        if pri_text.is_empty()
            || pri_text.len() > 3
            || !pri_text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("bad PRI `{pri_text}`"));
        }
        let pri: u16 = pri_text.parse().map_err(|_| "bad PRI")?;
        let mut fields = rest[close + 1..].splitn(8, |&b| b == b' ');
        let mut next = |what: &str| -> Result<String, String> {
            let f = fields.next().ok_or(format!("missing {what}"))?;
            if f.is_empty() {
                return Err(format!("empty {what}"));
            }
            String::from_utf8(f.to_vec()).map_err(|e| e.to_string())
        };
        Ok(Self {
            pri,
            version: next("VERSION")?,
            timestamp: next("TIMESTAMP")?,
            hostname: next("HOSTNAME")?,
            app_name: next("APP-NAME")?,
            procid: next("PROCID")?,
            msgid: next("MSGID")?,
            structured_data: next("STRUCTURED-DATA")?,
            msg: fields.next().ok_or("missing MSG")?.to_vec(),
        })
    }
}

/// A syslog receiver handing every message (or framing error) to the test.
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    messages: mpsc::UnboundedReceiver<Result<Vec<u8>, String>>,
    task: JoinHandle<()>,
    conns: Tasks,
    sni: Arc<Mutex<Vec<String>>>,
}

/// Connection tasks, so a stop can close every connection.
type Tasks = Arc<Mutex<Vec<JoinHandle<()>>>>;

impl SyslogReceiver {
    /// Receives UDP datagrams, one message each.
    pub async fn udp() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let addr = socket.local_addr().expect("addr");
        let (tx, messages) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = vec![0_u8; 70_000];
            while let Ok(n) = socket.recv(&mut buf).await {
                if tx.send(Ok(buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        });
        Self {
            addr,
            messages,
            task,
            conns: Tasks::default(),
            sni: Arc::default(),
        }
    }

    /// Accepts TCP (or, with `tls`, TLS) connections on `addr` and reads octet-counted frames.
    pub async fn stream(addr: SocketAddr, tls: Option<Arc<ServerConfig>>) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind TCP");
        let addr = listener.local_addr().expect("addr");
        let (tx, messages) = mpsc::unbounded_channel();
        let acceptor = tls.map(TlsAcceptor::from);
        let conns = Tasks::default();
        let sni: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tasks, names) = (Arc::clone(&conns), Arc::clone(&sni));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let acceptor = acceptor.clone();
                let names = Arc::clone(&names);
                let conn = tokio::spawn(async move {
                    let Some(acceptor) = acceptor else {
                        return read_frames(tcp, tx).await;
                    };
                    // Handshake failures are the client's to report.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let name = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                        names.lock().expect("sni lock").push(name);
                        read_frames(tls, tx).await;
                    }
                });
                tasks.lock().expect("tasks lock").push(conn);
            }
        });
        Self {
            addr,
            messages,
            task,
            conns,
            sni,
        }
    }

    /// The server names (SNI) clients asked for, one per TLS connection.
    pub fn server_names(&self) -> Vec<String> {
        self.sni.lock().expect("sni lock").clone()
    }

    /// The next message, failing the test on a framing error or after [`DEADLINE`].
    pub async fn next(&mut self) -> Vec<u8> {
        match tokio::time::timeout(DEADLINE, self.messages.recv()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => panic!("receiver saw a malformed frame: {e}"),
            Ok(None) => panic!("receiver stopped"),
            Err(_) => panic!("no message within {DEADLINE:?}"),
        }
    }

    /// Stops listening and closes every open connection, returning once all are closed.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        let conns = std::mem::take(&mut *self.conns.lock().expect("tasks lock"));
        for conn in conns {
            conn.abort();
            let _ = conn.await;
        }
    }
}

/// Reads `LEN SP MSG` frames (RFC 6587 octet counting) until the stream ends.
async fn read_frames(
    stream: impl AsyncRead + Unpin,
    tx: mpsc::UnboundedSender<Result<Vec<u8>, String>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut len_text = Vec::new();
        match reader.read_until(b' ', &mut len_text).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let valid = len_text.len() >= 2
            && len_text[0] != b'0'
            && len_text[..len_text.len() - 1]
                .iter()
                .all(u8::is_ascii_digit)
            && len_text.ends_with(b" ");
        let len = std::str::from_utf8(&len_text[..len_text.len() - 1])
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        let (true, Some(len)) = (valid, len) else {
            let _ = tx.send(Err(format!(
                "bad octet count {:?}",
                String::from_utf8_lossy(&len_text)
            )));
            return;
        };
        let mut msg = vec![0_u8; len];
        if reader.read_exact(&mut msg).await.is_err() {
            let _ = tx.send(Err(format!("stream ended inside a {len}-byte frame")));
            return;
        }
        if tx.send(Ok(msg)).is_err() {
            return;
        }
    }
}

/// One request the HTTP receiver read.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the HTTP receiver does with the next request.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// Answer with this status and body.
    Reply(u16, String),
    /// Answer with this status, echoing the request's Authorization header in the body.
    EchoAuth(u16),
    /// Never answer; hold the connection until the client gives up.
    Stall,
    /// Read half the body, then reset the connection (RST).
    ResetMidBody,
}

/// A tiny HTTP/1.1 server: records each complete request and answers per its script, falling
/// back to `fallback` once the script runs out.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Request>,
    script: Arc<Mutex<VecDeque<Behavior>>>,
    task: JoinHandle<()>,
}

impl HttpReceiver {
    pub async fn start(
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        fallback: Behavior,
    ) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind HTTP");
        let addr = listener.local_addr().expect("addr");
        let (tx, requests) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let acceptor = tls.map(TlsAcceptor::from);
        let shared = Arc::clone(&script);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = Connection {
                    tx: tx.clone(),
                    script: Arc::clone(&shared),
                    fallback: fallback.clone(),
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => conn.serve_tcp(tcp).await,
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                conn.serve(tls).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            script,
            task,
        }
    }

    /// Queues behaviours for the next requests, in order.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.script.lock().expect("script lock").extend(behaviors);
    }

    /// The next request read in full, failing the test after [`DEADLINE`].
    pub async fn next(&mut self) -> Request {
        match tokio::time::timeout(DEADLINE, self.requests.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("receiver stopped"),
            Err(_) => panic!("no request within {DEADLINE:?}"),
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

struct Connection {
    tx: mpsc::UnboundedSender<Request>,
    script: Arc<Mutex<VecDeque<Behavior>>>,
    fallback: Behavior,
}

impl Connection {
    async fn serve_tcp(self, mut tcp: TcpStream) {
        if self.serve(&mut tcp).await {
            // SO_LINGER 0: closing now sends RST instead of FIN.
            tcp.set_zero_linger().expect("SO_LINGER");
        }
    }

    /// Serves requests until the stream ends; true when the script asked for a reset.
    async fn serve(&self, stream: impl AsyncRead + AsyncWrite + Unpin) -> bool {
        let mut stream = BufReader::new(stream);
        loop {
            let Some((method, path, headers)) = read_head(&mut stream).await else {
                return false;
            };
            let len = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let behavior = self
                .script
                .lock()
                .expect("script lock")
                .pop_front()
                .unwrap_or_else(|| self.fallback.clone());
            if let Behavior::ResetMidBody = behavior {
                let mut half = vec![0_u8; len / 2];
                let _ = stream.read_exact(&mut half).await;
                return true;
            }
            let mut body = vec![0_u8; len];
            if stream.read_exact(&mut body).await.is_err() {
                return false;
            }
            let request = Request {
                method,
                path,
                headers,
                body,
            };
            let (status, reply) = match behavior {
                Behavior::Reply(status, reply) => (status, reply),
                Behavior::EchoAuth(status) => {
                    let auth = request.header("authorization").unwrap_or("").to_owned();
                    (status, format!("{{\"text\":\"bad credentials {auth}\"}}"))
                }
                Behavior::Stall => {
                    let _ = self.tx.send(request);
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest).await;
                    return false;
                }
                Behavior::ResetMidBody => unreachable!("handled above"),
            };
            let _ = self.tx.send(request);
            let response = format!(
                "HTTP/1.1 {status} Test\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{reply}",
                reply.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() || stream.flush().await.is_err()
            {
                return false;
            }
        }
    }
}

/// Reads a request line and headers; `None` at end of stream or on malformed input.
async fn read_head(
    stream: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> Option<(String, String, Vec<(String, String)>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some((method, path, headers));
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}
