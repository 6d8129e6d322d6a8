//! Kernel enforcement of enforce-mode profiles, as the policy stage sees it: the tables the
//! kernel enforces with (one *slot* per profile and phase) and which process is under which
//! slot. Decisions come out as [`KernelOp`]s in the order they must be applied, so a reload
//! never leaves a moment where a process points at a half-filled table: a new rule set gets
//! fresh slots, filled first; processes move to them; the old slots go last.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use monitor_common::enforce::{
    ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, EXACT_SHIFT, EXCLUDED_SHIFT, KIND_NAME, KIND_PATH,
    OPEN_SHIFT, PathKey, TREE_SHIFT, name_hash, path_hash,
};

use crate::rules::{HostAddrs, KernelFiles, KernelNet, Phase, ProfileId, RuleSet, canonical_ip};

pub use monitor_common::enforce::INHERIT;

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
    /// Process `pid` is under `slot` (with [`INHERIT`] when its children inherit), or under none.
    Process { pid: u32, slot: Option<u32> },
    /// The entries of these slots are no longer used.
    Retire { slots: Vec<u32> },
}

/// What the policy stage knows of enforcement.
#[derive(Debug, Default)]
pub struct Enforcement {
    /// Enforcement is on: enforce-mode profiles are enforced (not `--no-enforce`).
    pub active: bool,
    /// Seed of the kernel's path hashes.
    seed: u64,
    next_slot: u32,
    slots: HashMap<(ProfileId, Phase), u32>,
    /// Host names of each slot's `connect` entries, with their ports.
    hosts: HashMap<u32, Vec<(String, Option<u16>)>>,
    /// (slot, address, port) entries added for host names, so each is added once.
    host_addrs: HashSet<(u32, IpAddr, u16)>,
    /// Slots of the previous rule set, retired once processes have moved.
    retiring: Vec<u32>,
    /// Each process's slot as the kernel has it.
    kernel: HashMap<u32, u32>,
    ops: Vec<KernelOp>,
}

impl Enforcement {
    pub fn new(active: bool, seed: u64) -> Self {
        Self {
            active,
            seed,
            next_slot: 1,
            ..Self::default()
        }
    }

    /// Compiles the enforce-mode profiles of `rules` into fresh slots (nothing when
    /// enforcement is off). Call [`Enforcement::retire`] once processes are reassigned.
    pub fn load(&mut self, rules: &RuleSet, nameservers: &[IpAddr], agent: &dyn HostAddrs) {
        self.retiring.extend(self.slots.drain().map(|(_, s)| s));
        self.hosts.clear();
        self.host_addrs.clear();
        if !self.active {
            return;
        }
        for id in rules.enforce_profiles() {
            for phase in [Phase::Startup, Phase::Serving] {
                let slot = self.next_slot;
                // Slots stay below the inherit bit; a wrap after 2^31 reloads reuses numbers
                // long retired.
                self.next_slot = (self.next_slot % (INHERIT - 1)) + 1;
                self.slots.insert((id, phase), slot);
                let net = rules.kernel_net(id, phase, nameservers);
                self.fill(slot, net, agent);
                if let Some(files) = rules.kernel_files(id, phase) {
                    self.fill_paths(slot, files);
                }
            }
        }
    }

    fn fill(&mut self, slot: u32, net: KernelNet, agent: &dyn HostAddrs) {
        for (addr, prefix, port) in net.nets {
            self.ops.push(KernelOp::Net {
                slot,
                addr,
                prefix,
                port: port.unwrap_or(0),
            });
        }
        for port in net.listen {
            self.ops.push(KernelOp::Listen { slot, port });
        }
        self.hosts.insert(slot, net.hosts);
        self.resolve_hosts(slot, agent);
    }

    fn fill_paths(&mut self, slot: u32, files: &KernelFiles) {
        let mut bits: HashMap<PathKey, u32> = HashMap::new();
        let seed = self.seed;
        let mut add = |kind: u32, hash: u64, bit: u32| {
            *bits.entry(PathKey { slot, kind, hash }).or_default() |= bit;
        };
        for (list, access) in [
            (&files.exec, ACCESS_EXEC),
            (&files.read, ACCESS_READ),
            (&files.write, ACCESS_WRITE),
        ] {
            for p in &list.exact {
                add(KIND_PATH, path_hash(seed, p), access << EXACT_SHIFT);
            }
            for d in &list.trees {
                add(KIND_PATH, path_hash(seed, d), access << TREE_SHIFT);
            }
            for d in &list.open {
                add(KIND_PATH, path_hash(seed, d), access << OPEN_SHIFT);
            }
            for n in &list.excluded {
                add(KIND_NAME, name_hash(seed, n), access << EXCLUDED_SHIFT);
            }
        }
        self.ops
            .extend(bits.into_iter().map(|(key, bits)| KernelOp::Path { key, bits }));
    }

    /// Adds the addresses the agent resolves the hosts of `slot` to.
    fn resolve_hosts(&mut self, slot: u32, agent: &dyn HostAddrs) {
        let Some(hosts) = self.hosts.get(&slot) else {
            return;
        };
        let mut found = Vec::new();
        for (host, port) in hosts {
            for ip in agent.addrs(host) {
                found.push((ip, port.unwrap_or(0)));
            }
        }
        for (ip, port) in found {
            self.allow_host_addr(slot, ip, port);
        }
    }

    fn allow_host_addr(&mut self, slot: u32, ip: IpAddr, port: u16) {
        let ip = canonical_ip(ip);
        if !self.host_addrs.insert((slot, ip, port)) {
            return;
        }
        let addr = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        self.ops.push(KernelOp::Net {
            slot,
            addr,
            prefix: 128,
            port,
        });
    }

    /// Re-resolves every slot's hosts (addresses change): new ones are added, none removed
    /// until the next reload.
    pub fn refresh_hosts(&mut self, agent: &dyn HostAddrs) {
        let slots: Vec<u32> = self.hosts.keys().copied().collect();
        for slot in slots {
            self.resolve_hosts(slot, agent);
        }
    }

    /// A DNS answer a process under `slot` received (from a nameserver its profile allows):
    /// the addresses it gives for a host of the slot's `connect` entries are allowed.
    pub fn dns_answer(&mut self, pid: u32, names: &[&str], answers: &[IpAddr]) {
        let Some(slot) = self.kernel.get(&pid).map(|s| s & !INHERIT) else {
            return;
        };
        let Some(hosts) = self.hosts.get(&slot) else {
            return;
        };
        let ports: Vec<u16> = hosts
            .iter()
            .filter(|(h, _)| names.iter().any(|n| n.eq_ignore_ascii_case(h)))
            .map(|(_, p)| p.unwrap_or(0))
            .collect();
        for port in ports {
            for ip in answers {
                self.allow_host_addr(slot, *ip, port);
            }
        }
    }

    /// The slot process `pid` should be under: its profile's, for its workload's phase, when
    /// the profile enforces.
    fn slot_for(&self, profile: Option<ProfileId>, phase: Phase, inherit: bool) -> Option<u32> {
        let slot = *self.slots.get(&(profile?, phase))?;
        Some(if inherit { slot | INHERIT } else { slot })
    }

    /// Puts process `pid` under the slot of `profile` in `phase` (or under none).
    pub fn assign(&mut self, pid: u32, profile: Option<ProfileId>, phase: Phase, inherit: bool) {
        let want = self.slot_for(profile, phase, inherit);
        if self.kernel.get(&pid).copied() == want {
            return;
        }
        match want {
            Some(s) => self.kernel.insert(pid, s),
            None => self.kernel.remove(&pid),
        };
        self.ops.push(KernelOp::Process { pid, slot: want });
    }

    /// A fork: the kernel gave `child` its parent's slot when that inherits.
    pub fn forked(&mut self, parent: u32, child: u32) {
        match self.kernel.get(&parent) {
            Some(&s) if s & INHERIT != 0 => self.kernel.insert(child, s),
            _ => self.kernel.remove(&child),
        };
    }

    /// Process `pid` ended: the kernel has forgotten it.
    pub fn exited(&mut self, pid: u32) {
        self.kernel.remove(&pid);
    }

    /// The previous rule set's slots go, now that no process points at them.
    pub fn retire(&mut self) {
        if !self.retiring.is_empty() {
            let slots = std::mem::take(&mut self.retiring);
            self.ops.push(KernelOp::Retire { slots });
        }
    }

    /// The processes under enforcement.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.kernel.keys().copied()
    }

    /// Processes under enforcement now.
    pub fn enforced(&self) -> usize {
        self.kernel.len()
    }

    pub fn take_ops(&mut self) -> Vec<KernelOp> {
        std::mem::take(&mut self.ops)
    }
}

#[cfg(test)]
#[path = "enforce_tests.rs"]
mod tests;
