//! The kernel's enforcement maps, written from the policy stage's [`KernelOp`]s.

use std::collections::HashMap as StdHashMap;

use aya::maps::{HashMap, LpmTrie, MapData, lpm_trie::Key};
use monitor_common::{
    config::names,
    enforce::{NET_KEY_FIXED_BITS, NetKey, PathKey, listen_key},
};

use super::error::{SensorError, map_error};

/// One change to the kernel's enforcement maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOp {
    /// `slot` may connect or send to `addr`/`prefix` (IPv6 or IPv4-mapped), `port` 0 for any.
    Net {
        slot: u32,
        addr: [u8; 16],
        prefix: u8,
        port: u16,
    },
    /// `slot` may bind `port`.
    Listen { slot: u32, port: u16 },
    /// The access bits of a path (or file name) for a slot (see `monitor_common::enforce`).
    Path { key: PathKey, bits: u32 },
    /// Process `pid` is under `policy` (with `INHERIT` when its children inherit), or none.
    Process { pid: u32, policy: Option<u32> },
    /// `policy` enforces with `slot` from now on (or nothing: its profile is gone).
    Policy { policy: u32, slot: Option<u32> },
    /// A process under start-up policy `startup` that listened (or whose parent had) is under
    /// `serving`: the kernel switches it at the listen, before user space hears of it.
    Serving { startup: u32, serving: u32 },
    /// The entries of these slots are no longer used.
    Retire { slots: Vec<u32> },
}

/// The maps enforcement reads, and what user space put in them per slot (to retire a slot).
pub struct Enforcer {
    enforced: HashMap<MapData, u32, u32>,
    policy_slot: HashMap<MapData, u32, u32>,
    serving_policy: HashMap<MapData, u32, u32>,
    net: LpmTrie<MapData, NetKey, u32>,
    listen: HashMap<MapData, u64, u32>,
    paths: HashMap<MapData, PathKey, u32>,
    path_keys: StdHashMap<u32, Vec<PathKey>>,
    net_keys: StdHashMap<u32, Vec<Key<NetKey>>>,
    listen_keys: StdHashMap<u32, Vec<u64>>,
    /// Entries that did not fit (the map was full): the kernel refuses what they allow.
    pub lost_entries: u64,
}

impl Enforcer {
    pub(super) fn new(
        enforced: HashMap<MapData, u32, u32>,
        policy_slot: HashMap<MapData, u32, u32>,
        serving_policy: HashMap<MapData, u32, u32>,
        net: LpmTrie<MapData, NetKey, u32>,
        listen: HashMap<MapData, u64, u32>,
        paths: HashMap<MapData, PathKey, u32>,
    ) -> Self {
        Self {
            enforced,
            policy_slot,
            serving_policy,
            net,
            listen,
            paths,
            path_keys: StdHashMap::new(),
            net_keys: StdHashMap::new(),
            listen_keys: StdHashMap::new(),
            lost_entries: 0,
        }
    }

    /// Applies `ops` in order. A table entry that does not fit is counted (and logged once per
    /// batch); a process that cannot be put under enforcement is an error: it would run
    /// unenforced.
    pub fn apply(&mut self, ops: Vec<KernelOp>) -> Result<(), SensorError> {
        let mut lost = 0;
        for op in ops {
            match op {
                KernelOp::Net {
                    slot,
                    addr,
                    prefix,
                    port,
                } => {
                    let key = Key::new(
                        NET_KEY_FIXED_BITS + u32::from(prefix),
                        NetKey::new(slot, port, addr),
                    );
                    if self.net.insert(&key, 1, 0).is_ok() {
                        self.net_keys.entry(slot).or_default().push(key);
                    } else {
                        lost += 1;
                    }
                }
                KernelOp::Listen { slot, port } => {
                    let key = listen_key(slot, port);
                    if self.listen.insert(key, 1, 0).is_ok() {
                        self.listen_keys.entry(slot).or_default().push(key);
                    } else {
                        lost += 1;
                    }
                }
                KernelOp::Path { key, bits } => {
                    if self.paths.insert(key, bits, 0).is_ok() {
                        self.path_keys.entry(key.slot).or_default().push(key);
                    } else {
                        lost += 1;
                    }
                }
                KernelOp::Policy { policy, slot } => match slot {
                    Some(s) => self
                        .policy_slot
                        .insert(policy, s, 0)
                        .map_err(map_error(names::POLICY_SLOT))?,
                    None => {
                        let _ = self.policy_slot.remove(&policy);
                    }
                },
                KernelOp::Serving { startup, serving } => self
                    .serving_policy
                    .insert(startup, serving, 0)
                    .map_err(map_error(names::SERVING_POLICY))?,
                KernelOp::Process { pid, policy } => match policy {
                    Some(p) => self
                        .enforced
                        .insert(pid, p, 0)
                        .map_err(map_error(names::ENFORCED))?,
                    // Gone already when the process exited meanwhile.
                    None => {
                        let _ = self.enforced.remove(&pid);
                    }
                },
                KernelOp::Retire { slots } => {
                    for slot in slots {
                        for key in self.net_keys.remove(&slot).unwrap_or_default() {
                            let _ = self.net.remove(&key);
                        }
                        for key in self.listen_keys.remove(&slot).unwrap_or_default() {
                            let _ = self.listen.remove(&key);
                        }
                        for key in self.path_keys.remove(&slot).unwrap_or_default() {
                            let _ = self.paths.remove(&key);
                        }
                    }
                }
            }
        }
        if lost > 0 {
            self.lost_entries += lost;
            tracing::error!(
                lost,
                "enforcement allowlist entries did not fit in the kernel maps: what they allow is refused"
            );
        }
        Ok(())
    }
}
