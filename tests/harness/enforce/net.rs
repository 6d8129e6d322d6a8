//! The stand-in's provider, and receivers that count what a payload sends out.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

/// A TCP provider on 127.0.0.1: answers `prompt N` with `answer N`.
pub struct Provider {
    pub port: u16,
}

impl Provider {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("provider bind");
        let port = listener.local_addr().expect("addr").port();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut line = String::new();
                    let mut r = BufReader::new(&conn);
                    if r.read_line(&mut line).is_ok() {
                        let n = line.trim().strip_prefix("prompt ").unwrap_or("?");
                        let _ = (&conn).write_all(format!("answer {n}\n").as_bytes());
                    }
                });
            }
        });
        Self { port }
    }
}

/// Exfiltration receivers: TCP on 127.0.0.1 and on ::1, UDP on 127.0.0.1 (a resolver the
/// profile does not allow). They count every byte that arrives.
pub struct Receivers {
    pub tcp4: u16,
    pub tcp6: u16,
    pub udp: u16,
    bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Receivers {
    pub fn start() -> Self {
        let bytes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tcp = |addr: &str| {
            let l = TcpListener::bind(addr).expect("receiver bind");
            let port = l.local_addr().expect("addr").port();
            let bytes = bytes.clone();
            thread::spawn(move || {
                for mut conn in l.incoming().flatten() {
                    let mut buf = Vec::new();
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = conn.read_to_end(&mut buf);
                    bytes.fetch_add(buf.len(), Ordering::SeqCst);
                }
            });
            port
        };
        let (tcp4, tcp6) = (tcp("127.0.0.1:0"), tcp("[::1]:0"));
        let u = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let udp = u.local_addr().expect("addr").port();
        u.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let (b, s) = (bytes.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = u.recv(&mut buf) {
                    b.fetch_add(n, Ordering::SeqCst);
                }
            }
        });
        Self {
            tcp4,
            tcp6,
            udp,
            bytes,
            stop,
        }
    }

    /// Bytes received so far, after a moment for in-flight data.
    pub fn bytes(&self) -> usize {
        thread::sleep(Duration::from_millis(300));
        self.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
