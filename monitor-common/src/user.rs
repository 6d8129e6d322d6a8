//! User-space only: `aya::Pod` impls so the agent can read these types out of maps and records.

use crate::{DnsEvent, EventHeader, ExecEvent, ExitEvent, FileEvent, ForkEvent, NetEvent, StrRef};

// SAFETY: all of these are `#[repr(C)]`, contain only integers and byte arrays, and have no
// padding (sizes asserted in `event.rs`), so every bit pattern is valid.
unsafe impl aya::Pod for StrRef {}
unsafe impl aya::Pod for EventHeader {}
unsafe impl aya::Pod for ExecEvent {}
unsafe impl aya::Pod for ForkEvent {}
unsafe impl aya::Pod for ExitEvent {}
unsafe impl aya::Pod for FileEvent {}
unsafe impl aya::Pod for NetEvent {}
unsafe impl aya::Pod for DnsEvent {}
unsafe impl aya::Pod for crate::enforce::NetKey {}
unsafe impl aya::Pod for crate::enforce::PathKey {}
