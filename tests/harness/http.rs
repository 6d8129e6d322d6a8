//! A scripted HTTP/1.1 receiver on loopback for the HTTP sink tests: records every request
//! (method, path, headers, body) and answers the n-th request with the n-th scripted reply
//! (then 200 with a configurable body), so a test can inject 500s, slow answers and
//! connections reset in the middle of a request body.

use serde_json::Value;

use std::{
    collections::VecDeque,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// How the receiver answers one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 200 with the default body.
    Ok,
    /// This status with a short body.
    Status(u16),
    /// Waits this long, then answers 200 (the sender may have given up by then).
    Slow(Duration),
    /// Reads half of the body, then resets the connection (RST).
    ResetMidBody,
}

/// One request as received, with the reply it got.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// Empty when the connection was reset before the body was read.
    pub body: Vec<u8>,
    pub reply: Reply,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the sender was told it succeeded (a 2xx it could still read).
    pub fn acknowledged(&self) -> bool {
        matches!(self.reply, Reply::Ok)
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<Request>,
}

/// The receiver; stops listening when dropped.
pub struct HttpReceiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpReceiver {
    /// Listens on 127.0.0.1:`port` (0: any free port). `ok_body(request body)` builds the body
    /// of 200 answers (Elasticsearch wants a bulk response).
    pub fn start(
        port: u16,
        script: Vec<Reply>,
        ok_body: fn(&[u8]) -> String,
    ) -> std::io::Result<Self> {
        Self::start_on(
            TcpListener::bind((Ipv4Addr::LOCALHOST, port))?,
            script,
            ok_body,
        )
    }

    /// Serves on `listener` (a [`crate::ReservedPort`] that starts listening, say).
    pub fn start_on(
        listener: TcpListener,
        script: Vec<Reply>,
        ok_body: fn(&[u8]) -> String,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            requests: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let st = Arc::clone(&st);
                        thread::spawn(move || serve(conn, &st, ok_body));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            port,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clone()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, ok_body: fn(&[u8]) -> String) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let reply = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.script.pop_front().unwrap_or(Reply::Ok)
        };
        let mut request = Request {
            method,
            path,
            headers,
            body: Vec::new(),
            reply: reply.clone(),
        };
        if reply == Reply::ResetMidBody {
            let mut half = vec![0; len / 2];
            let _ = reader.read_exact(&mut half);
            // SO_LINGER 0: close sends RST instead of FIN.
            let sock = reader.get_ref();
            let _ = set_linger_zero(sock);
            let _ = sock.shutdown(Shutdown::Both);
            record(state, request);
            return;
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        request.body = body;
        let (status, text) = match &reply {
            Reply::Ok | Reply::Slow(_) => (200, ok_body(&request.body)),
            Reply::Status(s) => (*s, format!("{{\"text\":\"injected {s}\",\"code\":8}}")),
            Reply::ResetMidBody => unreachable!("handled above"),
        };
        // Recorded on arrival, so requests are in the order they came in.
        record(state, request);
        if let Reply::Slow(d) = reply {
            thread::sleep(d);
        }
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn record(state: &Mutex<State>, request: Request) {
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .push(request);
}

fn set_linger_zero(sock: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Checks the at-least-once contract on the ids the receiver stored, request by request:
/// every written id arrived; in order of first arrival they are in the order written; an id
/// arrived twice only if an earlier copy was in a request the agent could not see answered.
pub fn assert_delivery(
    requests: &[Request],
    ids_of: impl Fn(&Request) -> Vec<String>,
    written: &[String],
) {
    let mut first_seen: Vec<String> = Vec::new();
    let mut unacknowledged: Vec<String> = Vec::new();
    for r in requests.iter().filter(|r| !r.body.is_empty()) {
        for id in ids_of(r) {
            if first_seen.contains(&id) {
                assert!(
                    unacknowledged.contains(&id),
                    "{id} delivered twice although its first delivery was acknowledged"
                );
            } else {
                first_seen.push(id.clone());
            }
            if !r.acknowledged() {
                unacknowledged.push(id);
            }
        }
    }
    let stored: Vec<&String> = first_seen
        .iter()
        .filter(|id| written.contains(id))
        .collect();
    let missing: Vec<&String> = written
        .iter()
        .filter(|id| !first_seen.contains(id))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(
        stored.len(),
        first_seen.len(),
        "the receiver got alerts the agent never wrote"
    );
    let in_order: Vec<&String> = written.iter().collect();
    assert_eq!(stored, in_order, "alerts arrived out of order");
}

/// Ids of the records in the requests the sender saw acknowledged, in order.
pub fn acknowledged_ids(
    requests: &[Request],
    ids_of: &impl Fn(&Request) -> Vec<String>,
) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.acknowledged())
        .flat_map(ids_of)
        .collect()
}

/// The alert ids of a webhook body (a JSON array of alerts).
pub fn webhook_ids(r: &Request) -> Vec<String> {
    let alerts: Vec<Value> = serde_json::from_slice(&r.body).expect("webhook body: a JSON array");
    alerts
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect()
}
