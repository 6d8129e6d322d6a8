//! DNS answers received by watched processes, so user space knows which host name each address
//! a workload connects to came from (learned profiles name hosts; allowlists by name hold for
//! the addresses the workload itself resolved).
//!
//! Two kinds of cgroup hooks, attached to the cgroup v2 root:
//! - `cgroup/connect4|6` and `cgroup/sendmsg4|6` run in the process that connects or sends.
//!   When the destination port is 53 and the process is watched, they remember the socket (by
//!   its cookie) with a header describing the process and the nameserver's address. They
//!   refuse only what [`crate::enforce::connect`] refuses.
//! - `cgroup_skb/ingress` runs for every packet a local socket receives (in softirq context,
//!   where `current` is unrelated). For UDP or TCP packets from port 53 to a remembered socket
//!   whose source is the nameserver queried, it copies the DNS payload (at most
//!   [`DNS_CAPTURE_MAX`] bytes) into a record with the remembered header. It never drops a
//!   packet (it returns 1).

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{
        bpf_get_current_pid_tgid, bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_skb_load_bytes,
    },
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::{LruHashMap, PerCpuArray},
    programs::{SkBuffContext, SockAddrContext},
};
use monitor_common::{
    AF_INET, AF_INET6, DATA_OFFSET, DnsEvent, EventHeader, EventKind, PAYLOAD_OFFSET, StrRef,
    config::{DNS_CAPTURE_MAX, DNS_SOCKETS_MAX, counter},
};

use crate::{
    emit::{fill_header, output},
    enforce::{Destination, destination},
    kernel::current_task,
    maps::{count, is_watched},
};

const DNS_PORT: u16 = 53;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `ETH_P_IP` and `ETH_P_IPV6` as `__sk_buff.protocol` holds them (network byte order).
const ETH_P_IP_BE: u32 = 0x0800u16.to_be() as u32;
const ETH_P_IPV6_BE: u32 = 0x86DDu16.to_be() as u32;

/// What is remembered of a socket that sent a DNS query.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsOwner {
    /// The querying process, as its records describe it.
    pub header: EventHeader,
    /// The nameserver queried, network byte order (IPv4 in the first 4 bytes, also for an
    /// IPv4-mapped IPv6 destination: such answers arrive as IPv4 packets).
    pub server: [u8; 16],
    /// Which hook saw the query ([`Hook`]). Also keeps the four programs' bodies distinct:
    /// bpf-linker merges identical functions, and a program whose body became a jump to
    /// another one cannot be loaded on its own.
    pub hook: u32,
    pub _pad: u32,
}

/// The sock_addr hooks, as recorded in [`DnsOwner::hook`].
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Hook {
    Connect4 = 1,
    Connect6 = 2,
    Sendmsg4 = 3,
    Sendmsg6 = 4,
}

/// Sockets that sent a DNS query, by socket cookie (LRU: closed sockets just fall out).
#[map(name = "DNS_SOCKETS")]
pub static DNS_SOCKETS: LruHashMap<u64, DnsOwner> =
    LruHashMap::with_max_entries(DNS_SOCKETS_MAX, 0);

/// Scratch record for one answer, one per CPU. Not the shared `SCRATCH`: this program runs in
/// softirq context and can interrupt a tracepoint program that is using that one.
#[repr(C)]
pub struct DnsScratch {
    pub buf: [u8; DATA_OFFSET + DNS_CAPTURE_MAX],
}

#[map(name = "DNS_SCRATCH")]
pub static DNS_SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

/// `connect(2)` on an IPv4 socket (`struct bpf_sock_addr`: `user_ip4`, `user_port` in network
/// byte order).
#[cgroup_sock_addr(connect4)]
pub fn dns_connect4(ctx: SockAddrContext) -> i32 {
    let dest = destination(&ctx, false);
    remember(&ctx, Hook::Connect4, &dest);
    crate::enforce::connect(&ctx, &dest)
}

/// `connect(2)` on an IPv6 socket (`user_ip6[4]`, `user_port`).
#[cgroup_sock_addr(connect6)]
pub fn dns_connect6(ctx: SockAddrContext) -> i32 {
    let dest = destination(&ctx, true);
    remember(&ctx, Hook::Connect6, &dest);
    crate::enforce::connect(&ctx, &dest)
}

/// `sendto(2)`/`sendmsg(2)` with a destination on an unconnected IPv4 UDP socket.
#[cgroup_sock_addr(sendmsg4)]
pub fn dns_sendmsg4(ctx: SockAddrContext) -> i32 {
    let dest = destination(&ctx, false);
    remember(&ctx, Hook::Sendmsg4, &dest);
    crate::enforce::connect(&ctx, &dest)
}

/// `sendto(2)`/`sendmsg(2)` with a destination on an unconnected IPv6 UDP socket.
#[cgroup_sock_addr(sendmsg6)]
pub fn dns_sendmsg6(ctx: SockAddrContext) -> i32 {
    let dest = destination(&ctx, true);
    remember(&ctx, Hook::Sendmsg6, &dest);
    crate::enforce::connect(&ctx, &dest)
}

/// Remembers the socket when the destination is port 53 and the process is watched.
#[inline(always)]
fn remember(ctx: &SockAddrContext, hook: Hook, dest: &Destination) {
    if dest.port != DNS_PORT {
        return;
    }
    // SAFETY: helper without preconditions.
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    if !is_watched(tgid) {
        return;
    }
    // An IPv4 (or IPv4-mapped) nameserver's answers arrive as IPv4 packets: its address goes
    // in the first four bytes, as the ingress hook reads it.
    let w = dest.words;
    let words = if w[0] == 0 && w[1] == 0 && w[2] == 0xffffu32.to_be() {
        [w[3], 0, 0, 0]
    } else {
        w
    };
    // SAFETY: `[u32; 4]` and `[u8; 16]` have the same size; the words hold network-order bytes.
    let server: [u8; 16] = unsafe { core::mem::transmute(words) };
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let mut owner = DnsOwner {
        header: EventHeader {
            kind: 0,
            size: 0,
            ktime_ns: 0,
            start_time_ns: 0,
            cgroup_id: 0,
            pid: 0,
            tid: 0,
            ppid: 0,
            uid: 0,
            gid: 0,
            flags: 0,
            comm: [0; 16],
        },
        server,
        hook: hook as u32,
        _pad: 0,
    };
    // SAFETY: `owner.header` is on the stack.
    unsafe { fill_header(&mut owner.header, EventKind::Dns, current_task()) };
    let _ = DNS_SOCKETS.insert(cookie, owner, 0);
}

/// `cgroup_skb/ingress`: every packet delivered to a local socket, network header first.
#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_ingress(&ctx);
    1
}

fn try_ingress(ctx: &SkBuffContext) -> Result<(), i64> {
    // SAFETY: `__sk_buff` fields readable by cgroup_skb programs.
    let proto = unsafe { (*ctx.skb.skb).protocol };
    let mut src = [0u8; 16];
    let (family, l4_proto, l4) = if proto == ETH_P_IP_BE {
        let version_ihl: u8 = ctx.load(0)?;
        let p: u8 = ctx.load(9)?;
        let a: [u8; 4] = ctx.load(12)?;
        src[..4].copy_from_slice(&a);
        (AF_INET, p, usize::from(version_ihl & 0x0f) * 4)
    } else if proto == ETH_P_IPV6_BE {
        let p: u8 = ctx.load(6)?;
        src = ctx.load(8)?;
        (AF_INET6, p, 40)
    } else {
        return Ok(());
    };
    if l4_proto != IPPROTO_UDP && l4_proto != IPPROTO_TCP {
        return Ok(());
    }
    let sport: u16 = ctx.load(l4)?;
    if u16::from_be(sport) != DNS_PORT {
        return Ok(());
    }
    let payload = if l4_proto == IPPROTO_UDP {
        l4 + 8
    } else {
        let doff: u8 = ctx.load(l4 + 12)?;
        l4 + usize::from(doff >> 4) * 4
    };
    let total = ctx.len() as usize;
    if total <= payload {
        // A TCP segment without data (handshake, ACK).
        return Ok(());
    }
    let payload_len = total - payload;
    // SAFETY: helper on the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: a map value read while this program runs (RCU).
    let Some(owner) = (unsafe { DNS_SOCKETS.get(cookie) }) else {
        return Ok(());
    };
    if owner.server != src {
        count(counter::DNS_UNMATCHED);
        return Ok(());
    }
    let Some(scratch) = DNS_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let base = scratch as *mut u8;
    let n = capture_len(payload_len);
    // SAFETY: `base` is this CPU's scratch record, large enough for the header, the payload
    // slot and `DNS_CAPTURE_MAX` data bytes.
    unsafe {
        let hdr = base as *mut EventHeader;
        *hdr = owner.header;
        (*hdr).ktime_ns = bpf_ktime_get_boot_ns();
        let p = base.add(PAYLOAD_OFFSET) as *mut [u64; (DATA_OFFSET - PAYLOAD_OFFSET) / 8];
        *p = [0; (DATA_OFFSET - PAYLOAD_OFFSET) / 8];
        let ev = base.add(PAYLOAD_OFFSET) as *mut DnsEvent;
        (*ev).family = family;
        (*ev).protocol = u16::from(l4_proto);
        (*ev).server_port = DNS_PORT;
        (*ev).payload_len = payload_len as u32;
        (*ev).server_addr = src;
        (*ev).cookie = cookie;
        let loaded = bpf_skb_load_bytes(
            ctx.as_ptr(),
            payload as u32,
            base.add(DATA_OFFSET) as *mut c_void,
            n,
        );
        let copied = if loaded == 0 { n as usize } else { 0 };
        (*ev).data = StrRef {
            off: 0,
            len: copied as u16,
        };
        let size = DATA_OFFSET + copied;
        (*hdr).size = size as u32;
        output(base, size);
    }
    Ok(())
}

const _: () = assert!(DNS_CAPTURE_MAX.is_power_of_two());

/// How many payload bytes to copy: `min(payload_len, DNS_CAPTURE_MAX)` for `payload_len >= 1`,
/// in a form every verifier from 5.10 on bounds to `1..=DNS_CAPTURE_MAX` on the very register
/// passed to `bpf_skb_load_bytes`. A comparison is not enough there: LLVM may spill the value
/// before the comparison and pass the reloaded copy, and verifiers before 6.x do not carry the
/// comparison's bounds to the spilled copy. The volatile read keeps LLVM from folding the mask
/// (it knows the range; the verifier does not), and mask-then-add bounds the result itself.
#[inline(always)]
fn capture_len(payload_len: usize) -> u32 {
    let n = payload_len.min(DNS_CAPTURE_MAX) as u32;
    // SAFETY: a read of a local.
    let opaque = unsafe { core::ptr::read_volatile(&n) };
    (opaque.wrapping_sub(1) & (DNS_CAPTURE_MAX as u32 - 1)) + 1
}
