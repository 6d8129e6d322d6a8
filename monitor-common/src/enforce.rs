//! Kernel enforcement of enforce-mode profiles: the shapes of the maps user space fills and
//! the programs read.
//!
//! A process under an enforce-mode profile is in `ENFORCED` with the *policy* of its profile
//! and phase (a number that stays the same across reloads, so children forked during a reload
//! inherit something that stays valid), and `POLICY_SLOT` gives each policy the *slot* of its
//! compiled allowlists. A reload fills fresh slots, then points the policies at them (one map
//! update each), and drops the old slots a moment later. Slot and policy 0 are never used.

/// Set in a process's `ENFORCED` value when its children inherit its enforcement (the
/// profile's `inherit`): the kernel copies the value at fork only then. The rest is the policy.
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

/// Most entries in `PATH_RULES`.
pub const PATH_RULES_MAX: u32 = 65_536;

/// Key of `PATH_RULES`: a slot, what the hash is of ([`KIND_PATH`] or [`KIND_NAME`]) and the
/// hash ([`path_hash`], [`name_hash`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathKey {
    pub slot: u32,
    pub kind: u32,
    pub hash: u64,
}

/// The hash is of a whole path (a file, or a directory whose tree is meant).
pub const KIND_PATH: u32 = 0;
/// The hash is of a file name alone (an exclusion `!**/NAME`).
pub const KIND_NAME: u32 = 1;

/// Accesses, as bits: run (exec), read, write.
pub const ACCESS_EXEC: u32 = 1;
pub const ACCESS_READ: u32 = 2;
pub const ACCESS_WRITE: u32 = 4;

/// Value bits of `PATH_RULES`, each an access mask shifted: the path itself is allowed...
pub const EXACT_SHIFT: u32 = 0;
/// ...everything under the directory is allowed (`dir/**`)...
pub const TREE_SHIFT: u32 = 3;
/// ...everything under the directory is alert-only: a pattern there could not be compiled
/// for the kernel, so user space judges (nothing there is killed)...
pub const OPEN_SHIFT: u32 = 6;
/// ...a file of this name is excluded from trees (`!**/NAME`): only an exact entry allows it.
pub const EXCLUDED_SHIFT: u32 = 9;
/// ...the path itself (`KIND_PATH`), or every file of this name (`KIND_NAME`), is denied by a
/// detection with `action: kill`, allowed or not...
pub const DENY_SHIFT: u32 = 12;
/// ...everything under the directory is denied (`KIND_PATH`); a file of this name is spared
/// from denied trees and names (`KIND_NAME`: the detection's `except` names it).
pub const DENY_TREE_SHIFT: u32 = 15;

/// One FNV-1a step. Paths are hashed in the order the kernel reads its path walk back (see
/// [`path_hash`]); the seed is random per agent start, so hashes cannot be precomputed.
#[inline(always)]
pub const fn hash_byte(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The hash of absolute path `path` as the kernel computes it: its walk writes components
/// leaf first, each followed by `/`, and a final `/` for the root (`/a/bc` is `bc/a//`); the
/// kernel reads that backwards (`//a/cb`), so the hash is over `/`, then for each component
/// `/` and its bytes reversed. A directory's tree is looked up with the hash of the directory
/// (taken just before the `/` that follows it).
pub fn path_hash(seed: u64, path: &str) -> u64 {
    let mut h = hash_byte(seed, b'/');
    for c in path.split('/').filter(|c| !c.is_empty()) {
        h = hash_byte(h, b'/');
        for b in c.bytes().rev() {
            h = hash_byte(h, b);
        }
    }
    h
}

/// The hash of a file name alone, bytes reversed (the kernel reads it backwards).
pub fn name_hash(seed: u64, name: &str) -> u64 {
    name.bytes().rev().fold(seed, hash_byte)
}

const _: () = assert!(size_of::<PathKey>() == 16);
