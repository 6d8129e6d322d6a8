//! SIGHUP in the analysis stage: the rules reloaded, or the old ones kept with the reason.

use std::{path::PathBuf, sync::Arc};

use super::Analysis;
use crate::{
    agent::{enforcing, learning},
    rules::RuleSet,
};

impl Analysis {
    /// SIGHUP: the new rules, or the old ones kept with the reason.
    pub(super) fn reload(&mut self, paths: &[PathBuf]) {
        match RuleSet::load(paths) {
            Ok(new) if !self.no_enforce && !self.enforce && new.has_enforce_profiles() => {
                self.reloaded(false);
                tracing::error!(
                    "rules reload refused; keeping the previous rules: they have `mode: enforce` \
                     profiles and enforcement is not loaded (it was not available at start)"
                );
            }
            Ok(new) => {
                enforcing::warn_uncompiled(&new, &self.sensor);
                if self.marker.is_none() && self.enforce && new.has_enforce_profiles() {
                    self.marker = Some(enforcing::Marker::start(&self.spool_dir));
                }
                self.policy.replace_rules(
                    Arc::new(new),
                    self.enricher.table(),
                    self.sensor.watched(),
                );
                enforcing::apply(&mut self.policy, &mut self.sensor);
                learning::switch(&self.policy, &mut self.sensor);
                tracing::info!(
                    detections = self.policy.rules().detection_count(),
                    "rules reloaded"
                );
                self.reloaded(true);
            }
            Err(e) => {
                self.reloaded(false);
                tracing::error!("rules reload failed; keeping the previous rules:\n{e}");
            }
        }
    }

    pub(super) fn reloaded(&self, ok: bool) {
        if let Some(m) = &self.metrics {
            m.reloaded(ok);
        }
    }
}
