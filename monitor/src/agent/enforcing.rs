//! Enforcement in the agent: whether the sensor loads it, applying the policy stage's changes
//! to the kernel maps, and a marker that tells the next start that an enforcing agent died
//! (its programs detached with it, so enforcement was lifted until now).

use std::path::{Path, PathBuf};

use crate::{
    alert::boot_id,
    policy::Policy,
    rules::RuleSet,
    sensor::{Sensor, enforce::KernelOp, features::Variant, load::EnforceHooks},
};

/// Whether the sensor loads the enforcement hooks: required when profiles enforce, else
/// loaded where the host allows so a reload can add enforce-mode profiles; never with
/// `--no-enforce`.
pub fn hooks(no_enforce: bool, rules: &RuleSet) -> EnforceHooks {
    if no_enforce {
        EnforceHooks::Off
    } else if rules.has_enforce_profiles() {
        EnforceHooks::Required
    } else {
        EnforceHooks::IfAvailable
    }
}

/// A random seed for the kernel's path hashes.
pub fn seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: writes at most 8 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        // No entropy source: time and pid are still unknown to a workload started before.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_ne_bytes(b)
}

/// Logs what the kernel cannot enforce as written in the enforce-mode profiles.
pub fn warn_uncompiled(rules: &RuleSet, sensor: &Sensor) {
    for w in rules.enforcement_warnings() {
        tracing::warn!("not enforced in the kernel as written: {w}");
    }
    if sensor.enforcer.is_some() {
        let files_and_execs = if sensor.lsm_enforces {
            "refused (EPERM, BPF LSM)"
        } else if sensor.features.variant() == Variant::Loop {
            "killed (SIGKILL at the syscall's return)"
        } else {
            "alerted only"
        };
        tracing::info!(
            opens_and_execs = files_and_execs,
            connects_sends_binds = "refused (EPERM, cgroup hooks)",
            "enforcement in the kernel"
        );
    }
    if rules.has_enforce_profiles() && sensor.features.variant() == Variant::Bounded {
        tracing::warn!(
            "this kernel has no bpf_loop helper (Linux 5.17): `mode: enforce` profiles refuse \
             connects, sends and binds in the kernel, but opens and execs outside them are \
             alerted, not stopped"
        );
    }
}

/// Applies the policy stage's pending changes to the kernel's enforcement maps.
pub fn apply(policy: &mut Policy, sensor: &mut Sensor) {
    let ops = policy.take_kernel_ops();
    if ops.is_empty() {
        return;
    }
    let puts_under = ops.iter().any(|op| {
        matches!(
            op,
            KernelOp::Process {
                policy: Some(_),
                ..
            }
        )
    });
    if puts_under
        && sensor.enforcer.is_some()
        && let Err(e) = sensor.mark_enforcing()
    {
        // Without the switch the open fold would not tell an enforced process's opens from
        // the ones it made before: nothing is put under enforcement rather than half of it.
        tracing::error!(
            error = %crate::deliver::error_chain(&e),
            "could not tell the kernel programs that processes are enforced: the kernel's \
             enforcement maps are left as they were"
        );
        return;
    }
    if let Some(enforcer) = sensor.enforcer.as_mut()
        && let Err(e) = enforcer.apply(ops)
    {
        tracing::error!(
            error = %crate::deliver::error_chain(&e),
            "could not update the kernel's enforcement maps"
        );
    }
}

/// A file that exists while the agent enforces.
pub struct Marker {
    path: PathBuf,
}

impl Marker {
    /// Says (as an error) when the previous agent enforced and did not stop cleanly, then
    /// writes a marker of this one in `dir`.
    pub fn start(dir: &Path) -> Self {
        let path = dir.join("enforcing");
        if let Ok(previous) = std::fs::read_to_string(&path) {
            let same_boot = previous
                .lines()
                .any(|l| l == format!("boot_id={}", boot_id()));
            if same_boot {
                tracing::error!(
                    marker = %path.display(),
                    previous = %previous.lines().collect::<Vec<_>>().join(" "),
                    "the previous agent was enforcing and did not stop cleanly: its kernel \
                     programs went with it, so nothing was enforced from its end until now"
                );
            }
        }
        let text = format!(
            "pid={}\nstarted={}\nboot_id={}\n",
            std::process::id(),
            crate::clock::now_rfc3339(),
            boot_id()
        );
        if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text)) {
            tracing::warn!(marker = %path.display(), error = %e, "cannot write the enforcement marker");
        }
        Self { path }
    }

    /// A clean stop: enforcement ends with the agent, as intended.
    pub fn clear(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
