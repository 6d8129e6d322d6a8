//! A network namespace the test owns, with its own resolver configuration.

use std::{
    fs::{self, File},
    net::{IpAddr, Ipv6Addr, TcpListener},
    os::fd::AsRawFd as _,
    panic,
    path::{Path, PathBuf},
    process::{self, Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use super::ip;
use crate::{agent::POLL, process::describe, random_hex, warn};

/// Where `ip netns exec` finds the files it bind-mounts over `/etc/<file>` for a namespace.
const ETC_NETNS: &str = "/etc/netns";

/// A network namespace `monitor-test-<label>-<random>` with loopback up, whose processes (when
/// started through [`NetNs::command`]) see `/etc/resolv.conf` = `nameserver 127.0.0.1` and an
/// `/etc/hosts` that names only `localhost`: every other name goes to the [`super::DnsServer`]
/// the test runs inside.
///
/// Cloning is cheap and shares the namespace; the last clone dropped deletes it and its
/// `/etc/netns/<name>` directory, after SIGKILLing any process still inside (by pid, as listed
/// by `ip netns pids`, with a warning: the fixture's servers are stopped before).
#[derive(Clone, Debug)]
pub struct NetNs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    /// `/run/netns/<name>`, open for `setns`.
    handle: Option<File>,
    etc: PathBuf,
    ipv6: bool,
}

impl NetNs {
    /// Creates the namespace and its resolver files. `label` (letters, digits, `-`) names it
    /// for whoever lists namespaces. The error says what failed (not root, no `ip`, ...).
    pub fn new(label: &str) -> Result<Self, String> {
        if label.is_empty()
            || label.len() > 32
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "bad namespace label {label:?}: up to 32 letters, digits and dashes"
            ));
        }
        let name = format!("monitor-test-{label}-{}", random_hex(3));
        ip(&["netns", "add", &name]).map_err(|e| format!("cannot create a namespace: {e}"))?;
        // From here on, dropping `inner` deletes what was made.
        let mut inner = Inner {
            etc: Path::new(ETC_NETNS).join(&name),
            name,
            handle: None,
            ipv6: false,
        };
        let run_path = Path::new("/run/netns").join(&inner.name);
        inner.handle = Some(
            File::open(&run_path)
                .map_err(|e| format!("cannot open {}: {e}", run_path.display()))?,
        );
        ip(&["-n", &inner.name, "link", "set", "lo", "up"])?;
        fs::create_dir_all(&inner.etc)
            .map_err(|e| format!("cannot create {}: {e}", inner.etc.display()))?;
        for (file, contents) in [
            (
                "resolv.conf",
                "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n",
            ),
            ("hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        ] {
            let path = inner.etc.join(file);
            fs::write(&path, contents)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let ns = Self {
            inner: Arc::new(inner),
        };
        let ipv6 = ns.run(|| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok())?;
        Ok(ns.with_ipv6(ipv6))
    }

    fn with_ipv6(mut self, ipv6: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.ipv6 = ipv6;
        }
        self
    }

    /// Adds `addr` (e.g. `198.18.0.1/32`) to the namespace's loopback device: a host the
    /// namespace's servers can listen on and its DNS server can name, which is not loopback.
    pub fn add_address(&self, addr: &str) -> Result<(), String> {
        ip(&["-n", self.name(), "addr", "add", addr, "dev", "lo"]).map(drop)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `/etc/netns/<name>`: the resolver files its processes see.
    pub fn etc_dir(&self) -> &Path {
        &self.inner.etc
    }

    /// Whether a TCP socket can bind `[::1]` inside (false where the host has no IPv6).
    pub fn ipv6_loopback(&self) -> bool {
        self.inner.ipv6
    }

    /// `ip netns exec <name> <program>`: add arguments, environment and working directory as
    /// usual. `ip` execs the program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name()]).arg(program);
        cmd
    }

    /// Runs `f` on a thread of the test binary that has joined the namespace (sockets it opens
    /// are inside; files and name resolution are the host's), and returns its result. A panic
    /// in `f` is raised again here.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let fd = match &self.inner.handle {
            Some(handle) => handle.as_raw_fd(),
            None => return Err(format!("namespace {} is not open", self.name())),
        };
        thread::scope(|scope| {
            let joined = thread::Builder::new()
                .name(format!("in-{}", self.name()))
                .spawn_scoped(scope, move || {
                    // SAFETY: setns on the calling thread with a namespace fd `self` keeps open
                    // for the whole scope; only this thread changes namespace.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                        return Err(format!(
                            "cannot enter namespace: {}",
                            std::io::Error::last_os_error()
                        ));
                    }
                    Ok(f())
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?
                .join();
            match joined {
                Ok(result) => result,
                Err(payload) => panic::resume_unwind(payload),
            }
        })
    }

    /// Resolves `name` inside the namespace as its programs do (`getent ahosts`: glibc, through
    /// `/etc/hosts` then the DNS server on 127.0.0.1). `Ok(vec![])` when the name does not exist.
    pub fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let out = self
            .command("getent")
            .args(["ahosts", name])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run getent in {}: {e}", self.name()))?;
        match out.status.code() {
            Some(0) => {}
            // "One or more supplied key could not be found in the database."
            Some(2) => return Ok(Vec::new()),
            _ => {
                return Err(format!(
                    "getent ahosts {name} in {} failed ({}): {}",
                    self.name(),
                    describe(out.status),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let mut addrs = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let first = line.split_whitespace().next().unwrap_or_default();
            let addr: IpAddr = first
                .parse()
                .map_err(|e| format!("getent printed {line:?}: {e}"))?;
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        Ok(addrs)
    }

    /// The pids of the processes inside the namespace (`ip netns pids`).
    pub fn pids(&self) -> Result<Vec<u32>, String> {
        pids_in(self.name())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        kill_leftovers(&self.name);
        self.handle.take();
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            warn(&format!(
                "WARNING: could not delete namespace {}: {e}",
                self.name
            ));
        }
        if let Err(e) = fs::remove_dir_all(&self.etc)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn(&format!(
                "WARNING: could not remove {}: {e}",
                self.etc.display()
            ));
        }
    }
}

/// SIGKILLs what is still inside the namespace (the fixture's servers were stopped before, so
/// this is what they left behind), by the pids `ip netns pids` lists, and waits for them to go.
fn kill_leftovers(name: &str) {
    let own = process::id();
    let pids: Vec<u32> = pids_in(name)
        .unwrap_or_default()
        .into_iter()
        .filter(|&p| p != own)
        .collect();
    if pids.is_empty() {
        return;
    }
    warn(&format!(
        "WARNING: processes {pids:?} were still inside namespace {name}; SIGKILLing them"
    ));
    for &pid in &pids {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids_in(name).is_ok_and(|left| !left.is_empty()) {
        thread::sleep(POLL);
    }
}

fn pids_in(name: &str) -> Result<Vec<u32>, String> {
    Ok(ip(&["netns", "pids", name])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}
