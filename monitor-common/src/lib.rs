//! Types shared by the kernel programs (`monitor-ebpf`) and the user-space agent (`monitor`).
//!
//! Everything here is `#[repr(C)]`, has no implicit padding, and its size is checked at compile
//! time, because the kernel writes these bytes and user space reads them back. Numbers in
//! [`EventKind`] are never reused: a retired kind keeps its number.
//!
//! An event record, as written to the ring buffer, is an [`EventHeader`], then the family's
//! fixed payload ([`ExecEvent`], [`ForkEvent`], [`ExitEvent`], [`FileEvent`], [`NetEvent`] or
//! [`DnsEvent`]), then a
//! variable-length data area holding the strings the payload points at with [`StrRef`]s. The
//! record is `header.size` bytes long.
#![no_std]

pub mod config;
pub mod enforce;
pub mod event;
pub mod syscalls;

pub use event::*;

#[cfg(feature = "user")]
mod user;
