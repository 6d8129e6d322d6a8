//! What the rules tests need around the agent: directories in places the shipped rules name,
//! test-owned network namespaces, free loopback ports, a tiny HTTP client, the interpreter.

use std::{
    fmt::Write as _,
    fs::{self, File},
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsRawFd as _, RawFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{
    TempDir, agent::POLL, cgroup::random_hex, process::describe, python, skip_or_fail, warn,
};

/// A fresh directory `<parent>/monitor-test-<label>-XXXXXX`, removed with its contents on drop
/// (a [`TempDir`] elsewhere than the system temp dir). For places the shipped rules name and
/// [`TempDir::new`] cannot reach: a fake home directory under `/home` (the rules' `~/` covers
/// `/home/*/`), a directory under `/run` that no rule names.
#[derive(Debug)]
pub struct DirGuard(TempDir);

impl DirGuard {
    pub fn new_in(parent: &Path, label: &str) -> io::Result<Self> {
        TempDir::new_in(parent, label).map(Self)
    }

    /// A fake home directory under `/home`; `None` after saying loudly why there is none.
    #[track_caller]
    pub fn fake_home() -> Option<Self> {
        match Self::new_in(Path::new("/home"), "home") {
            Ok(dir) => Some(dir),
            Err(e) => {
                skip_or_fail(&format!(
                    "cannot create a fake home directory under /home ({e}); the detections \
                     of home-directory paths are not tested"
                ));
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.0.join(relative)
    }

    /// Writes `contents` to `relative`, creating the directories on the way.
    #[track_caller]
    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        write_file(self.join(relative), contents)
    }
}

/// Writes a file, creating its parent directories; returns its path.
#[track_caller]
pub fn write_file(path: impl AsRef<Path>, contents: &str) -> PathBuf {
    let path = path.as_ref();
    if let Some(parent) = path.parent()
        && let Err(e) = fs::create_dir_all(parent)
    {
        panic!("cannot create {}: {e}", parent.display());
    }
    if let Err(e) = fs::write(path, contents) {
        panic!("cannot write {}: {e}", path.display());
    }
    path.to_path_buf()
}

/// A network namespace the test owns (`ip netns add monitor-test-...`), with loopback up and the
/// given addresses on it, deleted on drop. Children entered into it ([`NetNs::enter`]) reach
/// those addresses without any packet leaving the namespace.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    handle: File,
}

impl NetNs {
    /// `None` after saying loudly why the namespace cannot be made.
    #[track_caller]
    pub fn with_addresses(addrs: &[&str]) -> Option<Self> {
        let name = format!("monitor-test-{}", random_hex(4));
        if let Err(e) = ip(&["netns", "add", &name]) {
            skip_or_fail(&format!("cannot create a network namespace: {e}"));
            return None;
        }
        // From here on, dropping `ns` deletes it.
        let handle = match File::open(Path::new("/run/netns").join(&name)) {
            Ok(file) => file,
            Err(e) => {
                let _ = ip(&["netns", "del", &name]);
                skip_or_fail(&format!("cannot open /run/netns/{name}: {e}"));
                return None;
            }
        };
        let ns = Self { name, handle };
        let mut steps = vec![vec!["-n", &ns.name, "link", "set", "lo", "up"]];
        for addr in addrs {
            steps.push(vec!["-n", &ns.name, "addr", "add", addr, "dev", "lo"]);
        }
        for step in steps {
            if let Err(e) = ip(&step) {
                skip_or_fail(&format!("cannot set up network namespace {}: {e}", ns.name));
                return None;
            }
        }
        Some(ns)
    }

    /// Makes `cmd` start inside the namespace.
    pub fn enter<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        let fd: RawFd = self.handle.as_raw_fd();
        // SAFETY: setns is async-signal-safe; `fd` stays open until the spawn returns because
        // `self` outlives the borrow of `cmd` in the caller's spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            warn(&format!(
                "WARNING: could not delete network namespace {}: {e}",
                self.name
            ));
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            describe(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A loopback TCP port nothing listens on right now (the kernel picked it for a throwaway
/// socket; the caller binds it soon after).
#[track_caller]
pub fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot find a free loopback port: {e}"),
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
#[track_caller]
pub fn wait_listening(port: u16, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("nothing listens on {addr} after {timeout:?}: {e}"));
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// `GET target` over HTTP/1.0 on 127.0.0.1:`port`; returns the status code and body.
pub fn http_get(port: u16, target: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query-string value.
pub fn url_encode(value: &str) -> String {
    value.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// The Python interpreter the harness runs ([`python`]): the path it is started by, the binary
/// behind it, and its installation prefix (its standard library lives there).
#[derive(Clone, Debug)]
pub struct PythonInfo {
    pub executable: String,
    pub resolved: String,
    pub prefix: String,
}

impl PythonInfo {
    #[track_caller]
    pub fn get() -> Self {
        let out = python(
            "import os, sys\n\
             print(sys.executable); print(os.path.realpath(sys.executable)); \
             print(os.path.realpath(sys.base_prefix))",
        )
        .stdin(Stdio::null())
        .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => panic!(
                "python failed ({}): {}",
                describe(out.status),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("cannot run python: {e}"),
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines().map(str::to_owned);
        match (lines.next(), lines.next(), lines.next()) {
            (Some(executable), Some(resolved), Some(prefix)) => Self {
                executable,
                resolved,
                prefix,
            },
            _ => panic!("unexpected output from python: {text:?}"),
        }
    }
}

/// The first of `candidates` that exists, resolved; `None` when the tool is missing.
pub fn find_tool(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find_map(|c| fs::canonicalize(c).ok())
        .and_then(|p| p.to_str().map(str::to_owned))
}
