//! What the kernel enforces of the enforce-mode profiles (see `crate::policy` for how it gets
//! there, and `kernel_paths` for the path lists' kernel form).

use std::net::IpAddr;

use super::deny::KernelDeny;
use super::load::place;
use super::{KernelFiles, KernelNet, Phase, ProfileId, RuleSet, schema};

impl RuleSet {
    /// Whether profile `id` has `mode: enforce`.
    pub fn profile_enforces(&self, id: ProfileId) -> bool {
        self.profiles
            .get(id.0)
            .is_some_and(|p| p.mode == schema::Mode::Enforce)
    }

    /// Whether any profile has `mode: enforce`.
    pub fn has_enforce_profiles(&self) -> bool {
        self.enforce_profiles().next().is_some()
    }

    /// The profiles with `mode: enforce`.
    pub fn enforce_profiles(&self) -> impl Iterator<Item = ProfileId> + '_ {
        (0..self.profiles.len())
            .map(ProfileId)
            .filter(|id| self.profile_enforces(*id))
    }

    /// What the kernel enforces of profile `id`'s path lists in `phase`.
    pub fn kernel_files(&self, id: ProfileId, phase: Phase) -> Option<&KernelFiles> {
        self.profiles.get(id.0).map(|p| p.kernel_files(phase))
    }

    /// Gives each profile its share of the detections with `action: kill`.
    pub(super) fn place_kills(&mut self) {
        let kills: Vec<_> = self
            .detections
            .iter()
            .filter(|d| d.enabled)
            .filter_map(|d| d.compiled_kill.as_ref().map(|k| (d.id.as_str(), k)))
            .collect();
        for p in &mut self.profiles {
            let exec = &p.kernel_files(Phase::Startup).exec;
            let prefix = format!("{}: profile {}", p.source.display(), p.name);
            let mut w = Vec::new();
            let parts: Vec<(String, KernelDeny)> = kills
                .iter()
                .map(|(id, k)| {
                    let here = format!("{prefix}: detection {id}");
                    (id.to_string(), k.for_profile(exec, &here, &mut w))
                })
                .collect();
            w.extend(spared_across(&parts, &prefix));
            p.deny = merge(parts.into_iter().map(|(_, d)| d));
            p.kill_warnings = w;
        }
    }

    /// What the detections with `action: kill` deny in profile `id`.
    pub fn kernel_deny(&self, id: ProfileId) -> Option<&KernelDeny> {
        self.profiles.get(id.0).map(|p| &p.deny)
    }

    /// What the kernel cannot enforce as written in the enforce-mode profiles, one line each
    /// (`FILE:LINE: key `KEY`: profile NAME: PATTERN: effect`), then what stays alert-only of
    /// the detections with `action: kill`.
    pub fn enforcement_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let enforcing = self.has_enforce_profiles();
        for d in self.detections.iter().filter(|d| d.enabled) {
            match (&d.compiled_kill, &d.kill) {
                (Some(k), _) if enforcing => out.extend(k.warnings.iter().cloned()),
                (Some(_), Some(ask)) => out.push(format!(
                    "{}: key `action`: detection {}: no profile has `mode: enforce`, so it \
                     kills nothing (it alerts)",
                    ask.place(),
                    d.id
                )),
                _ => {}
            }
        }
        for p in self
            .profiles
            .iter()
            .filter(|p| p.mode == schema::Mode::Enforce)
        {
            for u in &p.uncompiled {
                let place = place(&p.source, u.line);
                out.push(format!(
                    "{place}: key `{}`: profile {}: {:?}: {}",
                    u.key, p.name, u.pattern, u.effect
                ));
            }
            out.extend(p.kill_warnings.iter().cloned());
        }
        out
    }

    /// What the kernel enforces of profile `id`'s network lists in `phase`.
    pub fn kernel_net(&self, id: ProfileId, phase: Phase, nameservers: &[IpAddr]) -> KernelNet {
        self.profiles
            .get(id.0)
            .map(|p| p.kernel_net(phase, nameservers))
            .unwrap_or_default()
    }
}

/// One profile's share of the kill detections, together.
fn merge(parts: impl Iterator<Item = KernelDeny>) -> KernelDeny {
    let mut out = KernelDeny::default();
    for p in parts {
        out.extend(&p);
    }
    out
}

/// Names one detection spares that another's trees or names would deny (the kernel spares a
/// name for the whole profile): each named, since that other detection then does not kill it.
fn spared_across(parts: &[(String, KernelDeny)], prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (a, da) in parts {
        for (name, bits) in &da.spared {
            for (b, db) in parts.iter().filter(|(b, _)| b != a) {
                let wide = db
                    .trees
                    .values()
                    .chain(db.names.values())
                    .fold(0, |m, x| m | x);
                if wide & bits != 0 && !db.spared.contains_key(name) {
                    out.push(format!(
                        "{prefix}: detection {a} spares files named {name}, which detection {b} \
                         does not: the kernel spares them for both, {b} only alerts on them"
                    ));
                }
            }
        }
    }
    out
}
