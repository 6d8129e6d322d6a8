//! Kernel enforcement of enforce-mode profiles: the shapes of the maps user space fills and
//! the programs read.
//!
//! A process under an enforce-mode profile is in `ENFORCED` with the *slot* of its profile's
//! compiled allowlists (one slot per profile and phase; slots of a new rule set are fresh
//! numbers, so a reload fills its tables before any process points at them). Slot 0 is never
//! used.

/// Set in a process's `ENFORCED` value when its children inherit its enforcement (the
/// profile's `inherit`): the kernel copies the value at fork only then. The rest is the slot.
pub const INHERIT: u32 = 1 << 31;

/// Most processes under enforcement at once.
pub const ENFORCED_MAX: u32 = 65_536;
/// Most (slot, port, network) entries in `NET_ALLOW`.
pub const NET_ALLOW_MAX: u32 = 65_536;
/// Most (slot, port) entries in `LISTEN_ALLOW`.
pub const LISTEN_ALLOW_MAX: u32 = 16_384;

/// Bits of the `NET_ALLOW` key before the address: the slot (32) and the port (16). A network
/// of prefix `n` (over the IPv6 or IPv4-mapped address) has prefix length
/// `NET_KEY_FIXED_BITS + n`; port 0 stands for any port.
pub const NET_KEY_FIXED_BITS: u32 = 48;

/// Data of a `NET_ALLOW` (LPM trie) key, every field in network byte order so the trie's
/// bit order is slot, port, address.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetKey {
    pub slot_be: u32,
    pub port_be: u16,
    /// IPv6, or IPv4 as `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
}

impl NetKey {
    pub const fn new(slot: u32, port: u16, addr: [u8; 16]) -> Self {
        Self {
            slot_be: slot.to_be(),
            port_be: port.to_be(),
            addr,
        }
    }
}

/// Key of `LISTEN_ALLOW`: a slot and a port the profile may bind.
#[inline(always)]
pub const fn listen_key(slot: u32, port: u16) -> u64 {
    ((slot as u64) << 16) | port as u64
}

const _: () = assert!(size_of::<NetKey>() == 22);
