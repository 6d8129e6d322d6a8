//! The alert stage: turns rule findings into alert records with stable ids, lineage and
//! rate limiting of identical repeats (counted and reported, never silent).

pub mod limit;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{
    clock::WallTime,
    process::table::ProcessInfo,
    rules::{Action, Phase},
    sensor::Event,
};

/// One alert line (the `kind: "alert"` contract).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "alert")]
pub struct Alert {
    /// Stable across restarts and sinks: derived from the boot, the triggering event and the
    /// rule, so a re-sent alert keeps its id and receivers can de-duplicate.
    pub id: String,
    pub time: WallTime,
    pub rule: String,
    pub severity: String,
    #[serde(default)]
    pub mitre: Vec<String>,
    #[serde(default)]
    pub profile: Option<String>,
    /// The workload's phase (`startup` or `serving`) when the process has a profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    pub message: String,
    /// What enforcement did (`blocked`, `killed`), or would have done in alert mode
    /// (`would_block`); absent when enforcement does not cover the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The triggering event; `None` for an alert the agent raises about itself.
    #[serde(default)]
    pub event: Option<Event>,
    #[serde(default)]
    pub ancestors: Vec<Ancestor>,
    /// The Sigma rule of a `sigma:<id>` alert: id, title, level, status, references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<std::sync::Arc<crate::rules::sigma::SigmaInfo>>,
    /// Fields of an alert the agent raises about itself (`dropped`, `spool_dir`, ...).
    #[serde(flatten, deserialize_with = "own_fields")]
    pub about: serde_json::Map<String, serde_json::Value>,
}

/// The fields left over when an alert is read back, but its `kind` tag: serde hands the tag to
/// a flattened map too.
fn own_fields<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    let mut fields = serde_json::Map::deserialize(d)?;
    fields.remove("kind");
    Ok(fields)
}

/// A process in the triggering process's lineage, nearest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(default)]
    pub exe: Option<String>,
    #[serde(default)]
    pub argv: Vec<String>,
    /// Present (`true`) only when `argv` is the start of a longer command line.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub argv_truncated: bool,
}

impl From<&ProcessInfo> for Ancestor {
    fn from(p: &ProcessInfo) -> Self {
        Self {
            pid: p.pid,
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            argv_truncated: p.argv_truncated,
        }
    }
}

/// `/proc/sys/kernel/random/boot_id`: kernel timestamps restart at each boot, so ids include it.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The alert id: 32 hex digits of SHA-256 over boot id, event identity and rule.
pub fn alert_id(boot_id: &str, ev: &Event, rule: &str, key: &str) -> String {
    stable_id(&[
        boot_id.as_bytes(),
        &ev.ktime_ns.to_le_bytes(),
        &ev.tid.to_le_bytes(),
        ev.kind().as_str().as_bytes(),
        rule.as_bytes(),
        key.as_bytes(),
    ])
}

/// 32 hex digits of SHA-256 over `parts`, each prefixed with its length (so no two different
/// lists of parts hash the same input): the id of every record the agent derives one for.
pub fn stable_id(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::alert_id;
    use crate::clock::WallTime;
    use crate::sensor::{Event, EventBody, event::ForkBody};

    fn event(ktime_ns: u64) -> Event {
        Event {
            time: WallTime::default(),
            pid: 1,
            tid: 1,
            ppid: 0,
            uid: 0,
            gid: 0,
            comm: "x".into(),
            exe: None,
            cgroup_id: 1,
            container_id: None,
            pod_uid: None,
            container: None,
            pod: None,
            profile: None,
            phase: None,
            killed: false,
            denied: false,
            escaped: Vec::new(),
            body: EventBody::Fork(ForkBody {
                child_pid: 2,
                child_start_time_ns: 0,
            }),
            ktime_ns,
            start_time_ns: 0,
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = alert_id("boot", &event(5), "r", "k");
        assert_eq!(a, alert_id("boot", &event(5), "r", "k"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, alert_id("boot", &event(6), "r", "k"));
        assert_ne!(a, alert_id("boot2", &event(5), "r", "k"));
        assert_ne!(a, alert_id("boot", &event(5), "r2", "k"));
    }
}
