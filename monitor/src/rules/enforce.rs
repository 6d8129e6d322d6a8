//! What the kernel enforces of the enforce-mode profiles (see `crate::policy` for how it gets
//! there, and `kernel_paths` for the path lists' kernel form).

use std::net::IpAddr;

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

    /// What the kernel cannot enforce as written in the enforce-mode profiles, one line each
    /// (`FILE:LINE: key `KEY`: profile NAME: PATTERN: effect`).
    pub fn enforcement_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self
            .profiles
            .iter()
            .filter(|p| p.mode == schema::Mode::Enforce)
        {
            for u in &p.uncompiled {
                let place = match u.line {
                    Some(l) => format!("{}:{l}", p.source.display()),
                    None => p.source.display().to_string(),
                };
                out.push(format!(
                    "{place}: key `{}`: profile {}: {:?}: {}",
                    u.key, p.name, u.pattern, u.effect
                ));
            }
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
