//! Network activity, from the `sys_exit` dispatcher: connect, accept/accept4, bind, listen and
//! UDP sendto/sendmsg/sendmmsg destinations. Addresses come from the user's sockaddr when the
//! syscall names one (connect, bind, sendto) and from the socket itself otherwise.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::{
    AF_INET, AF_INET6, AF_UNIX, EventKind, NET_BLOCKED, NET_EPHEMERAL, NET_LOCAL_KNOWN,
    NET_REMOTE_KNOWN, NetEvent,
    config::off,
    syscalls::{ACCEPT, ACCEPT4, BIND, CONNECT, LISTEN, SENDMMSG, SENDMSG, SENDTO},
};

use crate::{
    emit::Record,
    kernel::{current_task, fd_file, read, read_ptr, read_user},
    maps::{count_err, offset},
    regs::Syscall,
};

const IPPROTO_UDP: u16 = 17;
const ENOTSOCK: i64 = -88;
const EINPROGRESS: i64 = -115;
/// `sizeof(sun_path)`.
const UNIX_PATH_MAX: usize = 108;
/// Set when a unix path is in the abstract namespace (first byte NUL).
const NET_UNIX_ABSTRACT: u16 = 1 << 8;
const EBADF: i64 = -9;
const EPERM: i64 = -1;
/// `MSG_FASTOPEN`: a TCP `sendto` that connects.
const MSG_FASTOPEN: u64 = 0x2000_0000;

/// Handler for the network syscalls (slot `NET`).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_net(ctx: RawTracePointContext) -> i32 {
    count_err(try_net(&ctx));
    0
}

/// The `struct sock *` behind socket fd `fd`.
#[inline(always)]
fn sock_of(task: *const u8, fd: i64) -> Result<*const u8, i64> {
    let file = fd_file(task, fd)?;
    let socket = read_ptr(file, off::FILE_PRIVATE_DATA)?;
    read_ptr(socket, off::SOCKET_SK)
}

/// An IPv4 address in the first four bytes of a 16-byte address field.
#[inline(always)]
fn v4(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Fills family/type/protocol and both ends from the socket's own state.
#[inline(always)]
fn from_sock(p: *mut NetEvent, sk: *const u8, local: bool, remote: bool) {
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).family = read(sk, offset(off::SOCK_FAMILY)).unwrap_or(0);
        (*p).sock_type = read(sk, offset(off::SOCK_TYPE)).unwrap_or(0);
        (*p).protocol = read(sk, offset(off::SOCK_PROTOCOL)).unwrap_or(0);
        let v6 = (*p).family == AF_INET6;
        if local {
            (*p).local_port = read(sk, offset(off::SOCK_NUM)).unwrap_or(0);
            if v6 {
                (*p).local_addr = read(sk, offset(off::SOCK_V6_RCV_SADDR)).unwrap_or([0; 16]);
            } else {
                let a: [u8; 4] = read(sk, offset(off::SOCK_RCV_SADDR)).unwrap_or([0; 4]);
                (*p).local_addr = v4(a);
            }
            (*p).net_flags |= NET_LOCAL_KNOWN;
        }
        if remote {
            let port: u16 = read(sk, offset(off::SOCK_DPORT)).unwrap_or(0);
            (*p).remote_port = u16::from_be(port);
            if v6 {
                (*p).remote_addr = read(sk, offset(off::SOCK_V6_DADDR)).unwrap_or([0; 16]);
            } else {
                let a: [u8; 4] = read(sk, offset(off::SOCK_DADDR)).unwrap_or([0; 4]);
                (*p).remote_addr = v4(a);
            }
            (*p).net_flags |= NET_REMOTE_KNOWN;
        }
    }
}

/// Reads a user sockaddr into the remote (or local) end. Returns false if unreadable.
#[inline(always)]
fn from_sockaddr(rec: &mut Record, p: *mut NetEvent, addr: u64, len: u64, remote: bool) -> bool {
    if addr == 0 || len < 2 {
        return false;
    }
    let sa = addr as *const u8;
    let Ok(family) = read_user::<u16>(sa) else {
        return false;
    };
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).family = family;
        match family {
            AF_INET | AF_INET6 => {
                let port = u16::from_be(read_user::<u16>(sa.wrapping_add(2)).unwrap_or(0));
                let a = if family == AF_INET {
                    v4(read_user(sa.wrapping_add(4)).unwrap_or([0; 4]))
                } else {
                    read_user(sa.wrapping_add(8)).unwrap_or([0; 16])
                };
                if remote {
                    (*p).remote_port = port;
                    (*p).remote_addr = a;
                    (*p).net_flags |= NET_REMOTE_KNOWN;
                } else {
                    (*p).local_port = port;
                    (*p).local_addr = a;
                    (*p).net_flags |= NET_LOCAL_KNOWN;
                }
            }
            AF_UNIX => {
                // sun_path, bounded by addrlen and its 108 bytes: never more than the caller
                // passed. An abstract name starts with NUL (user space renders it as `@`).
                let n = (len as usize - 2).min(UNIX_PATH_MAX);
                let first: u8 = read_user(sa.wrapping_add(2)).unwrap_or(0);
                if first == 0 {
                    (*p).net_flags |= NET_UNIX_ABSTRACT;
                }
                (*p).path = rec.data.push_user_bytes(sa.wrapping_add(2), n, 128);
            }
            _ => {}
        }
    }
    true
}

fn try_net(ctx: &RawTracePointContext) -> Result<(), i64> {
    let sc = Syscall::from_ctx(ctx)?;
    if sc.ret == ENOTSOCK || sc.ret == EBADF {
        return Ok(());
    }
    let task = current_task();
    let fd = sc.arg(0) as i32 as i64;
    let (kind, sk_fd) = match sc.nr {
        CONNECT => (EventKind::Connect, fd),
        ACCEPT | ACCEPT4 => {
            if sc.ret < 0 {
                // A failed accept (EAGAIN on a non-blocking listener) is noise: skip.
                return Ok(());
            }
            (EventKind::Accept, sc.ret)
        }
        BIND => (EventKind::Bind, fd),
        LISTEN => (EventKind::Listen, fd),
        SENDTO | SENDMSG | SENDMMSG => (EventKind::Send, fd),
        _ => return Ok(()),
    };
    if sc.nr == LISTEN && sc.ret == 0 {
        crate::enforce::listened((aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32);
    }
    let sk = sock_of(task, sk_fd)?;
    // Only a refused syscall can have been refused by a hook: one map lookup less per event.
    let blocked = sc.ret == EPERM && crate::enforce::take_denied();
    let mut kind = kind;
    if kind == EventKind::Send {
        let proto: u16 = read(sk, offset(off::SOCK_PROTOCOL)).unwrap_or(0);
        if proto != IPPROTO_UDP {
            // A TCP Fast Open send connects (and may carry data in the SYN): reported as the
            // connect it is. Other TCP sends are not reported.
            if sc.nr != SENDTO || sc.arg(3) & MSG_FASTOPEN == 0 {
                return Ok(());
            }
            kind = EventKind::Connect;
        }
    }
    let Some(mut rec) = Record::new(kind, task) else {
        return Ok(());
    };
    let p = rec.payload::<NetEvent>();
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).result = sc.ret;
        (*p).syscall = sc.nr as u32;
        (*p).fd = sk_fd as i32;
        if blocked {
            (*p).net_flags |= NET_BLOCKED;
        }
    }
    if kind == EventKind::Connect && sc.nr == SENDTO {
        from_sock(p, sk, true, false);
        from_sockaddr(&mut rec, p, sc.arg(4), sc.arg(5), true);
        rec.send();
        return Ok(());
    }
    match sc.nr {
        CONNECT => {
            // A connected (or connecting) inet socket holds its peer: trust the kernel's copy,
            // not user memory another thread could have changed since. A refused or failed
            // connect reports the requested address.
            let connected = sc.ret == 0 || sc.ret == EINPROGRESS;
            from_sock(p, sk, true, false);
            // SAFETY: `p` points into this CPU's scratch record.
            let family = unsafe { (*p).family };
            if connected && (family == AF_INET || family == AF_INET6) {
                from_sock(p, sk, false, true);
            } else {
                from_sockaddr(&mut rec, p, sc.arg(1), sc.arg(2), true);
            }
        }
        ACCEPT | ACCEPT4 | LISTEN => from_sock(p, sk, true, sc.nr != LISTEN),
        BIND => {
            from_sock(p, sk, false, false);
            // SAFETY: `p` points into this CPU's scratch record.
            let family = unsafe { (*p).family };
            if sc.ret == 0 && (family == AF_INET || family == AF_INET6) {
                // Bound: the socket holds the address the kernel actually used.
                from_sock(p, sk, true, false);
            } else {
                from_sockaddr(&mut rec, p, sc.arg(1), sc.arg(2), false);
            }
            // An ephemeral bind (port 0) gets its port from the socket, and says it was one.
            let asked: u16 = read_user(sc.arg(1) as *const u8).map_or(1, |family: u16| {
                if family == AF_INET || family == AF_INET6 {
                    read_user::<u16>((sc.arg(1) as *const u8).wrapping_add(2)).unwrap_or(1)
                } else {
                    1
                }
            });
            // SAFETY: as above.
            unsafe {
                if asked == 0 {
                    (*p).net_flags |= NET_EPHEMERAL;
                }
                if sc.ret == 0 && (*p).local_port == 0 {
                    (*p).local_port = read(sk, offset(off::SOCK_NUM)).unwrap_or(0);
                }
            }
        }
        _ => {
            from_sock(p, sk, true, false);
            let (name, namelen) = match sc.nr {
                SENDTO => (sc.arg(4), sc.arg(5)),
                _ => {
                    // struct msghdr { void *msg_name; int msg_namelen; ... }; for sendmmsg the
                    // first struct mmsghdr starts with a msghdr.
                    let m = sc.arg(1) as *const u8;
                    let name: u64 = read_user(m).unwrap_or(0);
                    let len: u32 = read_user(m.wrapping_add(8)).unwrap_or(0);
                    (name, len as u64)
                }
            };
            if !from_sockaddr(&mut rec, p, name, namelen, true) {
                from_sock(p, sk, false, true);
            }
        }
    }
    rec.send();
    Ok(())
}
