//! Enforcement tests' harness: a stand-in inference server (`standin.py`, Debian's
//! `/usr/bin/python3`) with its app directory and the profile that describes its footprint,
//! the provider it talks to, receivers that count what a payload manages to send out, and an
//! agent of the test's own (enforcement tests stop, reload and kill it).

mod agent;
mod net;
mod stop;

pub use agent::OwnAgent;
pub use net::{Provider, Receivers};
pub use stop::Stop;

use std::{
    fs,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{Proc, ReservedPort, TIMEOUT, TempDir, path_str};

const SCRIPT: &str = include_str!("standin.py");
/// The interpreter: Debian's, so the profile's exec and read lists are the system's.
pub const PYTHON: &str = "/usr/bin/python3";

/// The stand-in's files: its app directory (script, model, logs, a writable `tmp/`) and a home
/// with an SSH key it has no business reading.
pub struct Site {
    pub dir: TempDir,
    pub app: PathBuf,
    pub key: PathBuf,
    pub port: u16,
    pub provider: Provider,
}

impl Site {
    pub fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let app = dir.join("app");
        for d in ["logs", "tmp"] {
            fs::create_dir_all(app.join(d)).expect("app directories");
        }
        fs::write(app.join("standin.py"), SCRIPT).expect("script");
        fs::write(app.join("model.txt"), "model-v1\n").expect("model");
        let key = dir.join("home/.ssh/id_rsa");
        fs::create_dir_all(key.parent().expect("parent")).expect("home");
        fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").expect("key");
        let port = ReservedPort::new().release();
        Self {
            app,
            key,
            port,
            provider: Provider::start(),
            dir,
        }
    }

    /// [`Site::profile`] with a `startup:` block that allows reading `startup.txt`.
    pub fn profile_with_startup(&self, name: &str, marker: &str, mode: &str) -> String {
        let startup = path_str(self.startup_file());
        format!(
            "{}startup:\n  read: [\"{startup}\"]\n",
            self.profile(name, marker, mode)
        )
    }

    /// The profile of the stand-in started with `marker` in its argv, in `mode`. The programs
    /// it may run (`/usr/bin/uname` at each inference) are not in its `read` list: running a
    /// binary is not reading it (the payload's `drop` step reads `/usr/bin/touch`, listed).
    pub fn profile(&self, name: &str, marker: &str, mode: &str) -> String {
        let app = path_str(&self.app);
        format!(
            "profile: {name}\nmatch:\n  argv_contains: [\"{marker}\"]\nmode: {mode}\n\
             allow:\n  exec: [\"/usr/bin/python3.11\", \"/usr/bin/python3\", \"/usr/bin/uname\"]\n\
             \x20 read: [\"/usr/lib/**\", \"/usr/local/**\", \"/usr/share/**\", \"/usr/bin/touch\", \"/etc/**\", \"/proc/**\", \"/sys/**\", \"/dev/**\", \"{app}/**\"]\n\
             \x20 write: [\"{app}/logs/**\", \"{app}/tmp/**\"]\n\
             \x20 connect:\n    - {{ host: 127.0.0.1, port: {} }}\n\
             \x20 listen:\n    - {{ port: {} }}\n",
            self.provider.port, self.port
        )
    }

    /// Starts the stand-in with `marker` in its argv (the profile's selector); waits until it
    /// serves.
    pub fn start(&self, marker: &str) -> StandIn {
        let ready = self.app.join("logs/ready");
        let _ = fs::remove_file(&ready);
        let mut proc = self.spawn(marker);
        let deadline = Instant::now() + TIMEOUT;
        while !ready.exists() {
            // Say why: killed (by enforcement?), failed, or still starting.
            if let Some(f) = proc.exited() {
                panic!(
                    "the stand-in exited before it was ready: {:?}\nstderr:\n{}",
                    f.status, f.stderr
                );
            }
            assert!(
                Instant::now() < deadline,
                "the stand-in (pid {}) was not ready within {TIMEOUT:?}\nstderr:\n{}",
                proc.pid(),
                proc.stderr_so_far()
            );
            thread::sleep(Duration::from_millis(20));
        }
        StandIn {
            proc,
            port: self.port,
        }
    }

    /// Starts the stand-in with `marker` in its argv, without waiting for anything.
    pub fn spawn(&self, marker: &str) -> Proc {
        Proc::spawn(
            Command::new(PYTHON)
                .args(["-I", "-S", "-B"])
                .arg(self.app.join("standin.py"))
                .arg(marker)
                .arg(&self.app)
                .arg(self.port.to_string())
                .arg(self.provider.port.to_string()),
        )
    }

    /// The file the stand-in reads while it starts, when it exists (beside the app: outside
    /// the profile's `allow:` lists).
    pub fn startup_file(&self) -> PathBuf {
        self.dir.join("startup.txt")
    }

    /// A file under the app's writable `tmp/`.
    pub fn tmp(&self, name: &str) -> PathBuf {
        self.app.join("tmp").join(name)
    }
}

/// A running stand-in server.
pub struct StandIn {
    pub proc: Proc,
    port: u16,
}

impl StandIn {
    /// `GET path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the stand-in");
        s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("reply");
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }

    /// A normal request; panics unless it is answered in full.
    pub fn infer(&self, n: u32) -> String {
        let (status, body) = self.get(&format!("/infer?n={n}"));
        assert_eq!(status, 200, "normal request {n} failed: {body}");
        assert_eq!(body, format!("model-v1 answer {n} Linux"), "request {n}");
        body
    }

    /// Runs payload `step` with `args` in a child of the server: its exit status and output.
    pub fn attack(&self, step: &str, args: &[&str]) -> String {
        let mut q = format!("/attack?step={step}");
        for a in args {
            q.push_str("&arg=");
            q.push_str(&urlencode(a));
        }
        let (status, body) = self.get(&q);
        assert_eq!(status, 200, "attack {step}: {body}");
        body
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether `path` exists.
pub fn exists(path: &Path) -> bool {
    path.exists()
}
