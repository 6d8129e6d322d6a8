//! Loopback ports that stay the test's own while nothing listens on them.
//!
//! A port found free by binding and closing a throwaway socket can be taken by anyone until the
//! test binds it again, and the forwarding tests leave a port dead for seconds (a sink that must
//! see "connection refused", a receiver that comes up later). [`ReservedPort`] keeps a socket
//! bound to the port without listening: the kernel answers connections with a reset (refused),
//! and no other socket can bind the port until the test listens on it or releases it.

use std::{
    io,
    mem::size_of,
    net::{Ipv4Addr, TcpListener},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// A TCP socket bound to 127.0.0.1 on a port the kernel chose, not listening.
pub struct ReservedPort {
    socket: OwnedFd,
    port: u16,
}

impl ReservedPort {
    #[track_caller]
    pub fn new() -> Self {
        match Self::take(0) {
            Ok(p) => p,
            Err(e) => panic!("cannot reserve a loopback TCP port: {e}"),
        }
    }

    /// Binds `port` itself (0: one the kernel chooses), with `SO_REUSEADDR` so the connections
    /// a stopped server left in TIME_WAIT do not stand in the way, to keep it while its server
    /// is down.
    pub fn take(port: u16) -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let on: libc::c_int = 1;
        // SAFETY: setsockopt(2) reads `on` (an int) for the given size.
        if unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes for the duration of the call.
        if unsafe { libc::bind(socket.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut bound = addr;
        let mut bound_len = len;
        // SAFETY: `bound` is writable for `bound_len` bytes, which getsockname updates.
        if unsafe {
            libc::getsockname(
                socket.as_raw_fd(),
                (&raw mut bound).cast(),
                &raw mut bound_len,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            socket,
            port: u16::from_be(bound.sin_port),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts listening on the reserved port: there is no moment when another socket could
    /// take it.
    pub fn listen(self) -> io::Result<TcpListener> {
        // SAFETY: listen(2) on a socket this value owns.
        if unsafe { libc::listen(self.socket.as_raw_fd(), 128) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpListener::from(self.socket))
    }

    /// Gives the port up, for a program of its own (rsyslogd) to bind it next: the window
    /// in which another socket could take it is the program's start-up, not the whole test.
    pub fn release(self) -> u16 {
        self.port
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}
