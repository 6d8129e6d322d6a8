//! Decoded events: what the kernel saw, in user-space types, plus the enrichment later stages
//! add (resolved executable, container identity). Serialises to the JSON contract.

use std::{net::IpAddr, sync::Arc};

use monitor_common::EventKind;
use serde::{Deserialize, Serialize};

use crate::{
    clock::WallTime,
    identity::{ContainerMeta, PodMeta},
};

/// Where a workload is in its life: starting (from the exec that started its profile until it
/// first listens, or the profile's `startup_secs`), or serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Startup,
    Serving,
}

impl Phase {
    /// The JSON word: `startup`, `serving`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Serving => "serving",
        }
    }
}

/// One event, decoded. In JSON, the body's fields come first, after `kind`, then the
/// process's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// What happened, with its kind (`kind` in JSON): one enum, so the two cannot disagree.
    #[serde(flatten)]
    pub body: EventBody,
    /// Wall-clock time (filled by the reader).
    pub time: WallTime,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub comm: String,
    /// Resolved executable of the process (from the process table).
    #[serde(default)]
    pub exe: Option<String>,
    #[serde(default)]
    pub cgroup_id: u64,
    #[serde(default)]
    pub container_id: Option<String>,
    #[serde(default)]
    pub pod_uid: Option<String>,
    /// The container as its runtime names it (`crate::process::runtime`); `null` outside
    /// containers.
    #[serde(default)]
    pub container: Option<Arc<ContainerMeta>>,
    /// The Kubernetes pod; `null` outside pods.
    #[serde(default)]
    pub pod: Option<Arc<PodMeta>>,
    /// The workload profile the process is under (set by the policy stage).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub profile: Option<String>,
    /// Its workload's phase: `startup` or `serving` (with `profile`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phase: Option<Phase>,
    /// The kernel killed the process before this exec's image or this open's file was used
    /// (an enforce-mode profile).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub killed: bool,
    /// The kernel refused this exec or open with `EPERM` (BPF LSM, an enforce-mode profile):
    /// the exec never replaced the image, the open returned no file; the process lives on.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub denied: bool,
    /// The fields whose kernel bytes were not valid UTF-8, so they are in the escaped form
    /// (`crate::sensor::text::escape_always`); every other string is exact.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub escaped: Vec<String>,
    /// Kernel boot-time timestamp, ns.
    #[serde(skip)]
    pub ktime_ns: u64,
    /// Start time of the process (boot-time ns): with `pid`, the process key.
    #[serde(skip)]
    pub start_time_ns: u64,
}

impl Event {
    /// The event's kind (from its body).
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
}

/// A file syscall: the kind of a [`FileBody`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FileOp {
    #[default]
    Open,
    Unlink,
    Rename,
    Chmod,
    Memfd,
    Link,
    Symlink,
    Truncate,
}

/// A socket syscall: the kind of a [`NetBody`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NetOp {
    #[default]
    Connect,
    Accept,
    Bind,
    Listen,
    Send,
}

/// The family-specific part of an event; file and network bodies say which syscall.
#[derive(Clone, Debug)]
pub enum EventBody {
    Exec(ExecBody),
    Fork(ForkBody),
    Exit(ExitBody),
    File(FileBody),
    Net(NetBody),
    Dns(DnsBody),
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Exec(_) => EventKind::Exec,
            Self::Fork(_) => EventKind::Fork,
            Self::Exit(_) => EventKind::Exit,
            Self::File(f) => f.op.kind(),
            Self::Net(n) => n.op.kind(),
            Self::Dns(_) => EventKind::Dns,
        }
    }
}

impl FileOp {
    pub fn kind(self) -> EventKind {
        match self {
            Self::Open => EventKind::Open,
            Self::Unlink => EventKind::Unlink,
            Self::Rename => EventKind::Rename,
            Self::Chmod => EventKind::Chmod,
            Self::Memfd => EventKind::Memfd,
            Self::Link => EventKind::Link,
            Self::Symlink => EventKind::Symlink,
            Self::Truncate => EventKind::Truncate,
        }
    }

    /// The file syscall of a kind; `None` for other families.
    pub fn of(kind: EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::Open => Self::Open,
            EventKind::Unlink => Self::Unlink,
            EventKind::Rename => Self::Rename,
            EventKind::Chmod => Self::Chmod,
            EventKind::Memfd => Self::Memfd,
            EventKind::Link => Self::Link,
            EventKind::Symlink => Self::Symlink,
            EventKind::Truncate => Self::Truncate,
            _ => return None,
        })
    }
}

impl NetOp {
    pub fn kind(self) -> EventKind {
        match self {
            Self::Connect => EventKind::Connect,
            Self::Accept => EventKind::Accept,
            Self::Bind => EventKind::Bind,
            Self::Listen => EventKind::Listen,
            Self::Send => EventKind::Send,
        }
    }

    /// The socket syscall of a kind; `None` for other families.
    pub fn of(kind: EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::Connect => Self::Connect,
            EventKind::Accept => Self::Accept,
            EventKind::Bind => Self::Bind,
            EventKind::Listen => Self::Listen,
            EventKind::Send => Self::Send,
            _ => return None,
        })
    }
}

/// The JSON form of a body: tagged with `kind` (serde's internally tagged enum, one variant per
/// kind), borrowed for writing.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TaggedRef<'a> {
    Exec(&'a ExecBody),
    Fork(&'a ForkBody),
    Exit(&'a ExitBody),
    Open(&'a FileBody),
    Unlink(&'a FileBody),
    Rename(&'a FileBody),
    Chmod(&'a FileBody),
    Memfd(&'a FileBody),
    Link(&'a FileBody),
    Symlink(&'a FileBody),
    Truncate(&'a FileBody),
    Connect(&'a NetBody),
    Accept(&'a NetBody),
    Bind(&'a NetBody),
    Listen(&'a NetBody),
    Send(&'a NetBody),
    Dns(&'a DnsBody),
}

/// The same, owned, for reading (a recording, the spool).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Tagged {
    Exec(ExecBody),
    Fork(ForkBody),
    Exit(ExitBody),
    Open(FileBody),
    Unlink(FileBody),
    Rename(FileBody),
    Chmod(FileBody),
    Memfd(FileBody),
    Link(FileBody),
    Symlink(FileBody),
    Truncate(FileBody),
    Connect(NetBody),
    Accept(NetBody),
    Bind(NetBody),
    Listen(NetBody),
    Send(NetBody),
    Dns(DnsBody),
}

impl Serialize for EventBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tagged = match self {
            Self::Exec(b) => TaggedRef::Exec(b),
            Self::Fork(b) => TaggedRef::Fork(b),
            Self::Exit(b) => TaggedRef::Exit(b),
            Self::File(f) => match f.op {
                FileOp::Open => TaggedRef::Open(f),
                FileOp::Unlink => TaggedRef::Unlink(f),
                FileOp::Rename => TaggedRef::Rename(f),
                FileOp::Chmod => TaggedRef::Chmod(f),
                FileOp::Memfd => TaggedRef::Memfd(f),
                FileOp::Link => TaggedRef::Link(f),
                FileOp::Symlink => TaggedRef::Symlink(f),
                FileOp::Truncate => TaggedRef::Truncate(f),
            },
            Self::Net(n) => match n.op {
                NetOp::Connect => TaggedRef::Connect(n),
                NetOp::Accept => TaggedRef::Accept(n),
                NetOp::Bind => TaggedRef::Bind(n),
                NetOp::Listen => TaggedRef::Listen(n),
                NetOp::Send => TaggedRef::Send(n),
            },
            Self::Dns(b) => TaggedRef::Dns(b),
        };
        tagged.serialize(s)
    }
}

impl<'de> Deserialize<'de> for EventBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let file = |op, b: FileBody| Self::File(FileBody { op, ..b });
        let net = |op, b: NetBody| Self::Net(NetBody { op, ..b });
        Ok(match Tagged::deserialize(d)? {
            Tagged::Exec(b) => Self::Exec(b),
            Tagged::Fork(b) => Self::Fork(b),
            Tagged::Exit(b) => Self::Exit(b),
            Tagged::Open(b) => file(FileOp::Open, b),
            Tagged::Unlink(b) => file(FileOp::Unlink, b),
            Tagged::Rename(b) => file(FileOp::Rename, b),
            Tagged::Chmod(b) => file(FileOp::Chmod, b),
            Tagged::Memfd(b) => file(FileOp::Memfd, b),
            Tagged::Link(b) => file(FileOp::Link, b),
            Tagged::Symlink(b) => file(FileOp::Symlink, b),
            Tagged::Truncate(b) => file(FileOp::Truncate, b),
            Tagged::Connect(b) => net(NetOp::Connect, b),
            Tagged::Accept(b) => net(NetOp::Accept, b),
            Tagged::Bind(b) => net(NetOp::Bind, b),
            Tagged::Listen(b) => net(NetOp::Listen, b),
            Tagged::Send(b) => net(NetOp::Send, b),
            Tagged::Dns(b) => Self::Dns(b),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecBody {
    /// The filename given to execve.
    pub filename: String,
    /// argv, escaped.
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub euid: u32,
    pub egid: u32,
    /// argv exceeded the copy bound and was cut.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub argv_truncated: bool,
    /// The executable the kernel loaded (also reported as the event's `exe`).
    #[serde(skip)]
    pub exe: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForkBody {
    pub child_pid: u32,
    #[serde(skip)]
    pub child_start_time_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExitBody {
    /// The process's exit status (`exit(3)` gives 3); 128 + signal when killed by a signal.
    pub exit_code: i32,
    /// The signal that killed the process, if any.
    pub signal: Option<i32>,
}

/// Access mode of an open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileBody {
    /// Which file syscall (the event's `kind`).
    #[serde(skip)]
    pub op: FileOp,
    /// Absolute path (open, unlink, rename and link source, chmod, truncate); a symlink's
    /// target as written (relative to the link's directory when relative); absent for memfd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The new name of a rename, link or symlink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    /// chmod mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// memfd name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The length a truncate asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub length: Option<u64>,
    /// Raw flags of the syscall (open flags, rename flags, memfd flags).
    pub flags: u32,
    /// 0 on success, else -errno.
    pub result: i64,
    /// The new file descriptor (open, memfd) on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i64>,
    /// Identical opens folded into this one's predecessor in the kernel dedupe window.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub repeats: u32,
    /// Some path was longer than the kernel walk bound and starts with `...`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub path_truncated: bool,
    /// `path` names a nameless kernel object, not a file of the file system: `pipe:[INODE]`,
    /// `socket:[INODE]` (as `/proc/PID/fd` shows them), opened through `/proc/PID/fd/N` or
    /// `/dev/fd/N`. Profiles and learning leave such paths alone.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub pseudo: bool,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Inet,
    Inet6,
    Unix,
}

impl Family {
    /// The JSON word: `inet`, `inet6`, `unix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inet => "inet",
            Self::Inet6 => "inet6",
            Self::Unix => "unix",
        }
    }
}

/// Transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The JSON word: `tcp`, `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl Access {
    /// The JSON word: `read`, `write`, `read_write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::ReadWrite => "read_write",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetBody {
    /// Which socket syscall (the event's `kind`).
    #[serde(skip)]
    pub op: NetOp,
    pub family: Option<Family>,
    pub protocol: Option<Protocol>,
    pub local_addr: Option<IpAddr>,
    pub local_port: Option<u16>,
    pub remote_addr: Option<IpAddr>,
    pub remote_port: Option<u16>,
    /// Unix socket path (`@name` for the abstract namespace).
    pub path: Option<String>,
    /// 0 on success, else -errno.
    pub result: i64,
    /// The socket fd (for accept, the new connection's fd).
    pub fd: i64,
    /// The kernel refused it (`EPERM`): the process is under an enforce-mode profile and the
    /// destination or port is outside it.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub blocked: bool,
    /// A bind that asked for port 0: `local_port` is the one the kernel chose.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub ephemeral: bool,
    /// A non-blocking connect under way (`result` is -115, `EINPROGRESS`): not a failure.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub in_progress: bool,
}

/// A DNS answer a watched process received (`kind: "dns"`). The nameserver is the remote end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DnsBody {
    pub family: Option<Family>,
    pub protocol: Option<Protocol>,
    /// The nameserver.
    pub remote_addr: Option<IpAddr>,
    pub remote_port: Option<u16>,
    /// The name asked about: ASCII (IDNA) form, lower case, without the final dot.
    pub query: Option<String>,
    /// The record type asked for (`A`, `AAAA`, ...).
    pub query_type: Option<String>,
    /// Response code mnemonic: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ...
    pub rcode: Option<String>,
    /// Addresses the answer gives (A and AAAA records), in order.
    pub answers: Vec<IpAddr>,
    /// Canonical names the query name is an alias of (CNAME targets), in order.
    pub cnames: Vec<String>,
    /// Smallest TTL of the address records, seconds.
    pub ttl: Option<u32>,
    /// The message was longer than the kernel copies (`DNS_CAPTURE_MAX`); what was parsed is its
    /// start.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub truncated: bool,
    /// The payload is not a DNS response that parses (cut short, a later TCP segment, not DNS).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub malformed: bool,
}

impl Event {
    /// The kernel refused this step with `EPERM` (a network step, or with BPF LSM an exec or
    /// open, under an enforce-mode profile).
    pub fn blocked(&self) -> bool {
        self.denied || matches!(&self.body, EventBody::Net(n) if n.blocked)
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::EventKind;

    use super::Event;
    use crate::rules::testutil::{exec, file_body, file_event, net, unix_connect};
    use crate::sensor::event::Protocol;

    /// Every kind writes `kind` first and reads back as the same kind and body.
    #[test]
    fn events_round_trip_through_json_with_their_kind() {
        let mut events = vec![
            exec("/usr/bin/python3", &["python3"]),
            unix_connect("/run/x"),
        ];
        for kind in [
            EventKind::Open,
            EventKind::Unlink,
            EventKind::Rename,
            EventKind::Chmod,
            EventKind::Memfd,
        ] {
            events.push(file_event(kind, file_body("/tmp/a")));
        }
        for kind in [
            EventKind::Connect,
            EventKind::Accept,
            EventKind::Bind,
            EventKind::Listen,
            EventKind::Send,
        ] {
            events.push(net(kind, Protocol::Tcp, None, Some(80)));
        }
        for ev in events {
            let line = serde_json::to_string(&ev).expect("serialise");
            let kind = format!(r#"{{"kind":"{}","#, ev.kind().as_str());
            assert!(line.starts_with(&kind), "{line}");
            let back: Event = serde_json::from_str(&line).expect("deserialise");
            assert_eq!(back.kind(), ev.kind());
            assert_eq!(serde_json::to_string(&back).expect("again"), line);
        }
        let bad =
            r#"{"kind":"teleport","time":"2026-01-01T00:00:00Z","pid":1,"tid":1,"ppid":0,"uid":0}"#;
        assert!(serde_json::from_str::<Event>(bad).is_err());
    }
}
