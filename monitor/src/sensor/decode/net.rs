//! Network-family payloads: connect, accept, bind, listen, send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use monitor_common::{
    AF_INET, AF_INET6, AF_UNIX, NET_BLOCKED, NET_EPHEMERAL, NET_LOCAL_KNOWN, NET_REMOTE_KNOWN,
    NetEvent,
};

use super::{DecodeError, RawRecord};

/// `connect(2)` on a non-blocking socket that has started.
const EINPROGRESS: i64 = 115;
use crate::sensor::event::{Family, NetBody, NetOp, Protocol};

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const SOCK_STREAM: u16 = 1;
const SOCK_DGRAM: u16 = 2;
/// Set by the kernel when a unix path is in the abstract namespace.
const NET_UNIX_ABSTRACT: u16 = 1 << 8;

pub fn decode(rec: &RawRecord<'_>, op: NetOp) -> Result<NetBody, DecodeError> {
    let p: NetEvent = rec.payload();
    let family = match p.family {
        AF_INET => Some(Family::Inet),
        AF_INET6 => Some(Family::Inet6),
        AF_UNIX => Some(Family::Unix),
        _ => None,
    };
    let protocol = match (family, p.protocol, p.sock_type) {
        (Some(Family::Unix) | None, _, _) => None,
        (_, IPPROTO_TCP, _) | (_, 0, SOCK_STREAM) => Some(Protocol::Tcp),
        (_, IPPROTO_UDP, _) | (_, 0, SOCK_DGRAM) => Some(Protocol::Udp),
        _ => None,
    };
    let addr = |raw: [u8; 16]| -> Option<IpAddr> {
        match family {
            Some(Family::Inet) => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
            Some(Family::Inet6) => Some(IpAddr::V6(Ipv6Addr::from(raw))),
            _ => None,
        }
    };
    let inet = matches!(family, Some(Family::Inet | Family::Inet6));
    let local = inet && p.net_flags & NET_LOCAL_KNOWN != 0;
    let remote = inet && p.net_flags & NET_REMOTE_KNOWN != 0;
    // sun_path as the caller passed it (bounded by addrlen): a filesystem path ends at its
    // first NUL; an abstract name is everything after the leading NUL.
    let path = rec.bytes(p.path)?.map(|raw| {
        if p.net_flags & NET_UNIX_ABSTRACT != 0 {
            format!("@{}", rec.text("path", raw.get(1..).unwrap_or_default()))
        } else {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            rec.text("path", &raw[..end])
        }
    });
    Ok(NetBody {
        op,
        family,
        protocol,
        local_addr: if local { addr(p.local_addr) } else { None },
        local_port: local.then_some(p.local_port),
        remote_addr: if remote { addr(p.remote_addr) } else { None },
        remote_port: remote.then_some(p.remote_port),
        path,
        result: if p.result >= 0 { 0 } else { p.result },
        fd: p.fd as i64,
        blocked: p.net_flags & NET_BLOCKED != 0,
        ephemeral: p.net_flags & NET_EPHEMERAL != 0,
        in_progress: op == NetOp::Connect && p.result == -EINPROGRESS,
    })
}
