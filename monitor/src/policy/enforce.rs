//! Kernel enforcement of enforce-mode profiles, as the policy stage sees it: the tables the
//! kernel enforces with (one *slot* per profile and phase), the *policy* of each profile and
//! phase (stable across reloads: what processes point at and children inherit) and which
//! process is under which policy. Decisions come out as [`KernelOp`]s in the order they must
//! be applied, so a reload never leaves a moment where a process meets a half-filled or empty
//! table: a new rule set gets fresh slots, filled first; each policy then points at its new
//! slot (one map update); the old slots go a tick later, once no program can still be reading
//! them.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use monitor_common::enforce::{
    ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, DENY_SHIFT, DENY_TREE_SHIFT, EXACT_SHIFT,
    EXCLUDED_SHIFT, KIND_NAME, KIND_PATH, OPEN_SHIFT, PathKey, TREE_SHIFT, name_hash, path_hash,
};

use crate::rules::{
    Action, HostAddrs, KernelDeny, KernelFiles, KernelNet, Phase, ProfileId, RuleSet, canonical_ip,
};
pub use crate::sensor::enforce::KernelOp;

pub use monitor_common::enforce::INHERIT;

/// What the policy stage knows of enforcement.
#[derive(Debug, Default)]
pub struct Enforcement {
    /// Enforcement is on: enforce-mode profiles are enforced (not `--no-enforce`).
    pub active: bool,
    /// Seed of the kernel's path hashes.
    seed: u64,
    next_slot: u32,
    /// Policies by profile name and phase, kept across reloads.
    policies: HashMap<(String, Phase), u32>,
    /// Policies of the current rule set, by profile and phase...
    current: HashMap<(ProfileId, Phase), u32>,
    /// ...and the slot of each.
    policy_slot: HashMap<u32, u32>,
    /// Host names of each slot's `connect` entries, with their ports.
    hosts: HashMap<u32, Vec<(String, Option<u16>)>>,
    /// (slot, address, port) entries added for host names, so each is added once.
    host_addrs: HashSet<(u32, IpAddr, u16)>,
    /// Slots of the previous rule set, retired once no policy points at them...
    retiring: Vec<u32>,
    /// ...and, to be sure no program still reads them, one tick later.
    retire_next_tick: Vec<u32>,
    /// Each process's policy as the kernel has it.
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
        self.retiring.extend(self.policy_slot.values().copied());
        self.hosts.clear();
        self.host_addrs.clear();
        self.current.clear();
        if !self.active {
            self.policy_slot.clear();
            return;
        }
        let mut live = HashMap::new();
        for id in rules.enforce_profiles() {
            let name = rules.profile_name(id);
            let (startup, serving) = (
                self.policy(name, Phase::Startup),
                self.policy(name, Phase::Serving),
            );
            self.ops.push(KernelOp::Serving { startup, serving });
            for (phase, policy) in [(Phase::Startup, startup), (Phase::Serving, serving)] {
                let slot = self.next_slot;
                // Slots stay below the inherit bit; a wrap after 2^31 reloads reuses numbers
                // long retired.
                self.next_slot = (self.next_slot % (INHERIT - 1)) + 1;
                self.current.insert((id, phase), policy);
                live.insert(policy, slot);
                let net = rules.kernel_net(id, phase, nameservers);
                self.fill(slot, net, agent);
                if let Some(files) = rules.kernel_files(id, phase) {
                    self.fill_paths(slot, files, rules.kernel_deny(id));
                }
            }
        }
        // Every table is full: the policies move to them, and policies of profiles that went
        // (or no longer enforce) enforce nothing.
        for (&policy, &slot) in &live {
            self.ops.push(KernelOp::Policy {
                policy,
                slot: Some(slot),
            });
        }
        for (&policy, _) in self
            .policy_slot
            .iter()
            .filter(|(p, _)| !live.contains_key(p))
        {
            self.ops.push(KernelOp::Policy { policy, slot: None });
        }
        self.policy_slot = live;
    }

    /// The policy of profile `name` in `phase`: the same number across reloads.
    fn policy(&mut self, name: &str, phase: Phase) -> u32 {
        let next = self.policies.len() as u32 + 1;
        *self
            .policies
            .entry((name.to_owned(), phase))
            .or_insert(next)
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

    fn fill_paths(&mut self, slot: u32, files: &KernelFiles, deny: Option<&KernelDeny>) {
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
        if let Some(d) = deny {
            for (p, access) in &d.exact {
                add(KIND_PATH, path_hash(seed, p), access << DENY_SHIFT);
            }
            for (p, access) in &d.trees {
                add(KIND_PATH, path_hash(seed, p), access << DENY_TREE_SHIFT);
            }
            for (n, access) in &d.names {
                add(KIND_NAME, name_hash(seed, n), access << DENY_SHIFT);
            }
            for (n, access) in &d.spared {
                add(KIND_NAME, name_hash(seed, n), access << DENY_TREE_SHIFT);
            }
        }
        self.ops.extend(
            bits.into_iter()
                .map(|(key, bits)| KernelOp::Path { key, bits }),
        );
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
        let Some(&slot) = self
            .kernel
            .get(&pid)
            .and_then(|p| self.policy_slot.get(&(p & !INHERIT)))
        else {
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

    /// The policy process `pid` should be under: its profile's, for its workload's phase,
    /// when the profile enforces.
    fn policy_for(&self, profile: Option<ProfileId>, phase: Phase, inherit: bool) -> Option<u32> {
        let policy = *self.current.get(&(profile?, phase))?;
        Some(if inherit { policy | INHERIT } else { policy })
    }

    /// Puts process `pid` under the policy of `profile` in `phase` (or under none).
    pub fn assign(&mut self, pid: u32, profile: Option<ProfileId>, phase: Phase, inherit: bool) {
        let want = self.policy_for(profile, phase, inherit);
        if self.kernel.get(&pid).copied() == want {
            return;
        }
        match want {
            Some(s) => self.kernel.insert(pid, s),
            None => self.kernel.remove(&pid),
        };
        self.ops.push(KernelOp::Process { pid, policy: want });
    }

    /// A fork: the kernel gave `child` its parent's slot when that inherits.
    pub fn forked(&mut self, parent: u32, child: u32) {
        match self.kernel.get(&parent) {
            Some(&s) if s & INHERIT != 0 => self.kernel.insert(child, s),
            _ => self.kernel.remove(&child),
        };
    }

    /// Process `pid` ended.
    pub fn exited(&mut self, pid: u32) {
        // The kernel forgets a process at its exit; but an entry written after that (the
        // process exited before its exec was handled here) would outlive it and apply to the
        // next process with its pid: removed explicitly (a no-op when already gone).
        if self.kernel.remove(&pid).is_some() {
            self.ops.push(KernelOp::Process { pid, policy: None });
        }
    }

    /// The previous rule set's slots are no longer pointed at: they go at the next tick.
    pub fn retire(&mut self) {
        self.retire_next_tick.append(&mut self.retiring);
    }

    /// A tick: slots retired before it go.
    pub fn tick(&mut self) {
        if !self.retire_next_tick.is_empty() {
            let slots = std::mem::take(&mut self.retire_next_tick);
            self.ops.push(KernelOp::Retire { slots });
        }
    }

    /// The slot of `profile` in `phase`, in the current rule set.
    #[cfg(test)]
    fn slot(&self, profile: ProfileId, phase: Phase) -> u32 {
        self.policy_slot[&self.current[&(profile, phase)]]
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

impl super::Policy {
    /// Whether the kernel enforces profile `id`.
    fn enforces(&self, id: ProfileId) -> bool {
        self.enforce.active && self.rules.profile_enforces(id)
    }

    /// What enforcement did about a finding on `ev` of a process under `profile` (`enforceable`:
    /// one the kernel stops in enforce mode), or would have done in alert mode.
    pub(super) fn action(
        &self,
        enforceable: bool,
        profile: Option<ProfileId>,
        ev: &crate::sensor::Event,
    ) -> Option<Action> {
        match (enforceable, profile) {
            (true, Some(id)) if self.enforces(id) => {
                if ev.killed {
                    Some(Action::Killed)
                } else {
                    ev.blocked().then_some(Action::Blocked)
                }
            }
            (true, Some(_)) => Some(Action::WouldBlock),
            _ => None,
        }
    }

    /// Puts `pid` under its assignment's enforcement (if any) for its workload's phase at
    /// `now_ns`. Never the agent itself or PID 1.
    pub(super) fn enforce_assigned(&mut self, pid: u32, a: super::Assigned, now_ns: u64) {
        let own = pid <= 1 || pid == std::process::id();
        let profile = a.profile.filter(|_| !own);
        let phase = self.instances.phase(a.workload, now_ns);
        let inherit = profile.is_some_and(|p| self.rules.profile_inherits(p));
        self.enforce.assign(pid, profile, phase, inherit);
    }

    /// Each second: enforced workloads whose start-up timed out move to their serving
    /// tables, new addresses of the profiles' hosts are added, retired tables go.
    pub(super) fn enforcement_tick(&mut self) {
        if !self.enforce.active {
            return;
        }
        let now_ns = crate::clock::boot_ns();
        let enforced: Vec<(u32, super::Assigned)> = self
            .procs
            .iter()
            .filter(|(_, a)| a.profile.is_some_and(|p| self.rules.profile_enforces(p)))
            .map(|(pid, a)| (*pid, *a))
            .collect();
        for (pid, a) in enforced {
            self.enforce_assigned(pid, a, now_ns);
        }
        self.enforce.refresh_hosts(&self.resolver);
        self.enforce.tick();
    }
}

#[cfg(test)]
#[path = "enforce_tests.rs"]
mod tests;
