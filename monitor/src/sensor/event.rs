//! Decoded events: what the kernel saw, in user-space types, plus the enrichment later stages
//! add (resolved executable, container identity). Serialises to the JSON contract.

use std::net::IpAddr;

use monitor_common::EventKind;
use serde::{Deserialize, Serialize};

/// Where a workload is in its life: starting (from the exec that started its profile until it
/// first listens, or the profile's `startup_secs`), or serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Startup,
    Serving,
}

/// One event, decoded.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    #[serde(serialize_with = "ser_kind")]
    pub kind: EventKind,
    /// RFC 3339 wall-clock time with nanoseconds (filled by the reader).
    pub time: String,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    /// Resolved executable of the process (from the process table).
    pub exe: Option<String>,
    pub cgroup_id: u64,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// The workload profile the process is under (set by the policy stage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Its workload's phase: `startup` or `serving` (with `profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The kernel killed the process before this exec's image or this open's file was used
    /// (an enforce-mode profile).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub killed: bool,
    /// The fields whose kernel bytes were not valid UTF-8, so they are in the escaped form
    /// (`crate::sensor::text::escape_always`); every other string is exact.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub escaped: Vec<String>,
    #[serde(flatten)]
    pub body: EventBody,
    /// Kernel boot-time timestamp, ns.
    #[serde(skip)]
    pub ktime_ns: u64,
    /// Start time of the process (boot-time ns): with `pid`, the process key.
    #[serde(skip)]
    pub start_time_ns: u64,
}

fn ser_kind<S: serde::Serializer>(k: &EventKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

/// The family-specific part of an event.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum EventBody {
    Exec(ExecBody),
    Fork(ForkBody),
    Exit(ExitBody),
    File(FileBody),
    Net(NetBody),
    Dns(DnsBody),
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
    /// Absolute path (open/unlink/rename source/chmod); absent for memfd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Rename destination.
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

/// Transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetBody {
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
    /// The kernel refused this step (a network step under an enforce-mode profile).
    pub fn blocked(&self) -> bool {
        matches!(&self.body, EventBody::Net(n) if n.blocked)
    }
}
