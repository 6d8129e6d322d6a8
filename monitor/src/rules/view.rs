//! One event as the matchers see it, computed once per `check`: paths in matching form
//! (`/proc/self` rewritten), the executable, the canonical remote address. Descriptions for
//! finding messages are formatted from it only when something fired.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;

use monitor_common::EventKind;

use super::pattern::{canonical_ip, proc_self_path};
use crate::sensor::event::{
    Access, DnsBody, Event, EventBody, ExecBody, Family, FileBody, FileOp, NetBody, NetOp, Protocol,
};

pub(crate) struct View<'a> {
    pub ev: &'a Event,
    /// File path (open/unlink/rename source/chmod) or unix socket path, in matching form.
    pub path: Option<Cow<'a, str>>,
    /// Rename destination, in matching form.
    pub new_path: Option<Cow<'a, str>>,
    /// The process's executable; for exec the new image (resolved, else the filename).
    pub exe: Option<&'a str>,
    pub exec: Option<&'a ExecBody>,
    pub file: Option<&'a FileBody>,
    pub net: Option<&'a NetBody>,
    pub dns: Option<&'a DnsBody>,
    /// Remote address, IPv4-mapped IPv6 folded to IPv4.
    pub remote: Option<IpAddr>,
    /// 0 or positive on success, -errno on failure; exec/fork/exit count as success.
    pub result: i64,
}

impl<'a> View<'a> {
    pub fn new(ev: &'a Event) -> Self {
        let fix = |p: &'a Option<String>| p.as_deref().map(|p| proc_self_path(p, ev.pid, ev.tid));
        let mut v = View {
            ev,
            path: None,
            new_path: None,
            exe: ev.exe.as_deref(),
            exec: None,
            file: None,
            net: None,
            dns: None,
            remote: None,
            result: 0,
        };
        match &ev.body {
            EventBody::Exec(x) => {
                v.exe = x
                    .exe
                    .as_deref()
                    .or(ev.exe.as_deref())
                    .or(Some(x.filename.as_str()));
                v.exec = Some(x);
            }
            EventBody::Fork(_) | EventBody::Exit(_) => {}
            EventBody::File(f) => {
                v.path = fix(&f.path);
                v.new_path = fix(&f.new_path);
                v.result = f.result;
                v.file = Some(f);
            }
            EventBody::Net(n) => {
                v.path = fix(&n.path);
                v.remote = n.remote_addr.map(canonical_ip);
                v.result = n.result;
                v.net = Some(n);
            }
            EventBody::Dns(d) => {
                v.remote = d.remote_addr.map(canonical_ip);
                v.dns = Some(d);
            }
        }
        v
    }

    /// The syscall failed (a non-blocking connect under way has not, nor has an exec or open
    /// the kernel refused under an enforce-mode profile: the attempt is the step judged).
    pub fn failed(&self) -> bool {
        self.result < 0 && !self.in_progress() && !self.ev.denied
    }

    /// A non-blocking connect under way.
    pub fn in_progress(&self) -> bool {
        self.net.is_some_and(|n| n.in_progress)
    }

    /// Paths the `path` condition looks at: file path and rename destination; for exec the
    /// filename and the resolved executable; for unix sockets the socket path.
    pub fn paths(&self) -> [Option<&str>; 2] {
        match self.exec {
            Some(x) => [Some(x.filename.as_str()), self.exe],
            None => [self.path.as_deref(), self.new_path.as_deref()],
        }
    }

    /// An open's access; a truncate writes.
    pub fn access(&self) -> Option<Access> {
        let f = self.file?;
        match f.op {
            FileOp::Truncate => Some(Access::Write),
            _ => f.access,
        }
    }

    pub fn created(&self) -> bool {
        self.file.and_then(|f| f.created).unwrap_or(false)
    }

    /// An open for writing with `O_TRUNC`, or a truncate to length 0: whatever the file held
    /// is gone.
    pub fn truncates(&self) -> bool {
        const O_TRUNC: u32 = 0o1000;
        let Some(f) = self.file else { return false };
        match f.op {
            FileOp::Truncate => f.length == Some(0),
            _ => {
                f.flags & O_TRUNC != 0
                    && matches!(self.access(), Some(Access::Write | Access::ReadWrite))
            }
        }
    }

    pub fn remote_port(&self) -> Option<u16> {
        match self.dns {
            Some(d) => d.remote_port,
            None => self.net.and_then(|n| n.remote_port),
        }
    }

    /// The kernel refused it (a network step of a process under an enforce-mode profile).
    pub fn blocked(&self) -> bool {
        self.net.is_some_and(|n| n.blocked)
    }

    /// A bind that asked for port 0 (the kernel chose the port).
    pub fn ephemeral(&self) -> bool {
        self.net.is_some_and(|n| n.ephemeral)
    }

    pub fn local_port(&self) -> Option<u16> {
        self.net.and_then(|n| n.local_port)
    }

    pub fn family(&self) -> Option<Family> {
        match self.dns {
            Some(d) => d.family,
            None => self.net.and_then(|n| n.family),
        }
    }

    pub fn protocol(&self) -> Option<Protocol> {
        match self.dns {
            Some(d) => d.protocol,
            None => self.net.and_then(|n| n.protocol),
        }
    }

    /// What the process did, for messages: `read /etc/shadow`, `connected to 1.2.3.4:443/tcp`.
    pub fn action(&self) -> String {
        let ev = self.ev;
        let local = self.local_port().unwrap_or(0);
        let proto = match self.protocol() {
            Some(_) if self.family() == Some(Family::Unix) => "",
            Some(Protocol::Tcp) => "/tcp",
            Some(Protocol::Udp) => "/udp",
            None => "",
        };
        let mut s = match &ev.body {
            EventBody::Exec(_) => format!("executed {}", self.exe.unwrap_or("?")),
            EventBody::Fork(x) => format!("forked child pid {}", x.child_pid),
            EventBody::Exit(x) => format!("exited with status {}", x.exit_code),
            EventBody::File(f) => {
                let path = f.path.as_deref().unwrap_or("?");
                match f.op {
                    FileOp::Open => {
                        let verb = match (self.access(), self.created()) {
                            (_, true) => "created",
                            (Some(Access::Write), false) => "wrote",
                            (Some(Access::ReadWrite), false) => "opened read-write",
                            (Some(Access::Read) | None, false) => "read",
                        };
                        format!("{verb} {path}")
                    }
                    FileOp::Unlink => format!("unlinked {path}"),
                    FileOp::Rename => {
                        format!("renamed {path} to {}", f.new_path.as_deref().unwrap_or("?"))
                    }
                    FileOp::Chmod => format!("chmod {:o} {path}", f.mode.unwrap_or(0)),
                    FileOp::Memfd => {
                        format!("created memfd {}", f.name.as_deref().unwrap_or("(unnamed)"))
                    }
                    FileOp::Link => {
                        format!("linked {path} as {}", f.new_path.as_deref().unwrap_or("?"))
                    }
                    FileOp::Symlink => format!(
                        "made symlink {} to {path}",
                        f.new_path.as_deref().unwrap_or("?")
                    ),
                    FileOp::Truncate => {
                        format!("truncated {path} to {} bytes", f.length.unwrap_or(0))
                    }
                }
            }
            EventBody::Net(n) => match n.op {
                NetOp::Connect => format!("connected to {}{proto}", self.remote_object()),
                NetOp::Send => format!("sent to {}{proto}", self.remote_object()),
                NetOp::Accept => {
                    format!("accepted {} on port {local}{proto}", self.remote_object())
                }
                NetOp::Bind => format!("bound port {local}{proto}"),
                NetOp::Listen => format!("listened on port {local}{proto}"),
            },
            EventBody::Dns(d) => {
                let answers: Vec<String> = d.answers.iter().map(ToString::to_string).collect();
                format!(
                    "received a DNS answer for {} from {}{proto}: [{}]",
                    d.query.as_deref().unwrap_or("?"),
                    self.remote_object(),
                    answers.join(", ")
                )
            }
        };
        if self.failed() {
            let _ = write!(s, " (failed: errno {})", -self.result);
        } else if self.in_progress() {
            s.push_str(" (in progress: a non-blocking connect)");
        }
        s
    }

    /// `1.2.3.4:443`, `[::1]:53` or `unix:/run/x.sock`.
    pub fn remote_object(&self) -> String {
        if let Some(p) = self.net.and_then(|n| n.path.as_deref()) {
            return format!("unix:{p}");
        }
        let port = self.remote_port().unwrap_or(0);
        match self.remote {
            Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
            Some(a) => format!("{a}:{port}"),
            None => "?".to_owned(),
        }
    }

    /// The thing acted upon, for rate-limiting keys.
    pub fn object(&self) -> String {
        let f = self.file;
        match self.ev.kind() {
            EventKind::Exec => self.exe.unwrap_or("?").to_owned(),
            EventKind::Fork | EventKind::Exit => self.ev.comm.clone(),
            EventKind::Open | EventKind::Unlink | EventKind::Chmod | EventKind::Truncate => {
                f.and_then(|f| f.path.clone()).unwrap_or_default()
            }
            EventKind::Rename | EventKind::Link | EventKind::Symlink => format!(
                "{} -> {}",
                f.and_then(|f| f.path.as_deref()).unwrap_or("?"),
                f.and_then(|f| f.new_path.as_deref()).unwrap_or("?")
            ),
            EventKind::Memfd => f.and_then(|f| f.name.clone()).unwrap_or_default(),
            EventKind::Connect | EventKind::Send => self.remote_object(),
            EventKind::Accept | EventKind::Bind | EventKind::Listen => {
                format!("port {}", self.local_port().unwrap_or(0))
            }
            EventKind::Dns => self.dns.and_then(|d| d.query.clone()).unwrap_or_default(),
        }
    }

    /// `python3 (pid 812)`.
    pub fn who(&self) -> String {
        format!("{} (pid {})", self.ev.comm, self.ev.pid)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use monitor_common::EventKind;

    use super::View;
    use crate::rules::testutil::net;
    use crate::sensor::event::{EventBody, Protocol};

    #[test]
    fn a_non_blocking_connect_under_way_is_not_called_failed() {
        let to = Some((IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 443));
        let mut ev = net(EventKind::Connect, Protocol::Tcp, to, None);
        let EventBody::Net(n) = &mut ev.body else {
            unreachable!()
        };
        n.result = -115;
        n.in_progress = true;
        let v = View::new(&ev);
        assert!(!v.failed());
        assert_eq!(
            v.action(),
            "connected to 10.0.0.1:443/tcp (in progress: a non-blocking connect)"
        );
        let EventBody::Net(n) = &mut ev.body else {
            unreachable!()
        };
        n.in_progress = false;
        n.result = -111;
        assert!(View::new(&ev).action().ends_with("(failed: errno 111)"));
    }
}
