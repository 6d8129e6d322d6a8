//! Enforcement in the agent: whether the sensor loads it, applying the policy stage's changes
//! to the kernel maps, and a marker that tells the next start that an enforcing agent died
//! (its programs detached with it, so enforcement was lifted until now).

use std::path::{Path, PathBuf};

use crate::{
    alert::boot_id,
    policy::Policy,
    rules::RuleSet,
    sensor::{Sensor, load::EnforceHooks},
};

/// Whether the sensor loads the enforcement hooks: required when profiles enforce, else
/// loaded where the host allows so a reload can add enforce-mode profiles; never with
/// `--no-enforce`.
pub fn hooks(no_enforce: bool, rules: &RuleSet) -> EnforceHooks {
    if no_enforce {
        EnforceHooks::Off
    } else if rules.enforce_profiles().next().is_some() {
        EnforceHooks::Required
    } else {
        EnforceHooks::IfAvailable
    }
}

/// Applies the policy stage's pending changes to the kernel's enforcement maps.
pub fn apply(policy: &mut Policy, sensor: &mut Sensor) {
    let ops = policy.take_kernel_ops();
    if ops.is_empty() {
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
            crate::sensor::reader::now_rfc3339(),
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
