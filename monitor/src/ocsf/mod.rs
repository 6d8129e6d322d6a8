//! OCSF export: converts the agent's native JSON records (events and alerts, as the agent writes
//! them) into [OCSF](https://schema.ocsf.io) 1.x objects for SIEMs and data lakes.
//!
//! | native `kind` | OCSF class | activity |
//! | --- | --- | --- |
//! | `exec` | Process Activity (1007) | Launch, launch type Exec |
//! | `fork` | Process Activity (1007) | Launch of the child, launch type Fork |
//! | `exit` | Process Activity (1007) | Terminate |
//! | `open` | File System Activity (1001) | Create when it created the file, else Open |
//! | `unlink` / `rename` / `chmod` | File System Activity (1001) | Delete / Rename / Set Attributes |
//! | `memfd` | File System Activity (1001) | Create (of `memfd:NAME`) |
//! | `connect` | Network Activity (4001) | Open; Refuse or Fail when it failed |
//! | `accept` / `listen` / `send` | Network Activity (4001) | Open / Listen / Traffic |
//! | `bind` | Network Activity (4001) | Other (`activity_name: "Bind"`) |
//! | `dns` | DNS Activity (4003) | Response (query, answers, rcode; from the nameserver) |
//! | `alert` | Detection Finding (2004) | Create |
//! | `alert_repeats` | Detection Finding (2004) | Update of the folded alert's finding, with `count` |
//! | `agent_stats` | none: not exported in OCSF |
//!
//! Every object names its profiles in `metadata.profiles` (`host`, `container`,
//! `linux/linux_users`, and `security_control` for findings) and validates against the official
//! OCSF [`OCSF_VERSION`] JSON schema of its class with those profiles (see the tests). Native
//! fields with no OCSF attribute (cgroup id, fds, dedupe counts, the workload `profile` and
//! `phase`, ...) go to `unmapped`.

mod activity;
mod dns;
mod finding;
mod objects;

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use self::objects::Host;
use crate::{
    alert::{Alert, limit::Repeats},
    record::Record,
    sensor::Event,
};

/// The OCSF schema version the converted objects follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.8.0";

/// `metadata.product.name` of every converted object.
pub const PRODUCT_NAME: &str = "monitor";

/// `metadata.product.vendor_name` of every converted object.
pub const VENDOR_NAME: &str = "monitor project";

/// Why a record could not be converted. The mapping works on typed records, so only what the
/// types allow but OCSF requires remains, and native lines read back that are not records.
#[derive(Debug, thiserror::Error)]
pub enum OcsfError {
    /// A value the OCSF class requires is absent from the record.
    #[error("`{kind}` record lacks `{field}`, which OCSF requires")]
    MissingField {
        /// The record's kind.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A stored native line is not a record the agent writes.
    #[error("not a native record: {0}")]
    NotARecord(#[from] serde_json::Error),
}

/// An alert as an OCSF Detection Finding (class 2004).
///
/// `finding_info` carries the alert id (`uid`), rule (`title`, `analytic.name`), message (`desc`)
/// and the ATT&CK techniques (`attacks[].technique.uid`, with `sub_technique.uid` for ids like
/// `T1552.001`), also repeated in the top-level `attacks`. The triggering event becomes
/// `evidences` (process, actor, file or connection and endpoints, container), the target and
/// container become `resources`, and the lineage becomes `actor.process.parent_process` and
/// `ancestry`. `metadata.uid` and `metadata.correlation_uid` are the alert id.
///
/// # Errors
///
/// [`OcsfError::MissingField`] when the triggering event lacks what its class requires.
pub fn alert_to_ocsf(alert: &Alert) -> Result<Value, OcsfError> {
    finding::convert(alert, Host::current())
}

/// An `alert_repeats` record as a Detection Finding Update (activity 2) of the folded alert's
/// finding, with `count` folded alerts.
#[must_use]
pub fn repeats_to_ocsf(repeats: &Repeats) -> Value {
    finding::convert_repeats(repeats, Host::current())
}

/// An event as an OCSF Process Activity (1007), File System Activity (1001), Network Activity
/// (4001) or DNS Activity (4003) object.
///
/// The acting process is `actor.process` (pid, thread as `ptid`, `comm` as `name`, `exe` as
/// `file.path`, `user.uid`, parent pid, container); the host is `device` (hostname from
/// `/proc/sys/kernel/hostname`).
///
/// # Errors
///
/// [`OcsfError::MissingField`] when the event lacks what its class requires (a file event's
/// path).
pub fn event_to_ocsf(event: &Event) -> Result<Value, OcsfError> {
    activity::convert(event, Host::current())
}

/// Any record, converted: alerts and `alert_repeats` to Detection Findings, events to their
/// activity classes. `Ok(None)` for the agent's own `agent_stats`, which have no OCSF class.
///
/// # Errors
///
/// As [`alert_to_ocsf`] and [`event_to_ocsf`].
pub fn to_ocsf(record: &Record) -> Result<Option<Value>, OcsfError> {
    match record {
        Record::Alert(a) => alert_to_ocsf(a).map(Some),
        Record::Repeats(r) => Ok(Some(repeats_to_ocsf(r))),
        Record::Event(e) => event_to_ocsf(e).map(Some),
        Record::Stats(_) => Ok(None),
    }
}

/// A stored native line (a JSON value) read back as a record and converted.
///
/// # Errors
///
/// [`OcsfError::NotARecord`] when it is not a record the agent writes, else as [`to_ocsf`].
pub fn native_to_ocsf(native: &Value) -> Result<Option<Value>, OcsfError> {
    to_ocsf(&Record::from_value(native.clone())?)
}

/// Records that could not be converted to OCSF (written in native form instead).
pub static OCSF_ERRORS: AtomicU64 = AtomicU64::new(0);

/// A record in OCSF form, without a newline: `None` when it has no OCSF class (`agent_stats`).
/// A record that cannot be converted (an event without a value its class requires) is kept in
/// its native form `native`, logged and counted in [`OCSF_ERRORS`], rather than lost.
pub fn to_ocsf_line(record: &Record, native: &[u8]) -> Option<Vec<u8>> {
    match to_ocsf(record) {
        Ok(Some(v)) => serde_json::to_vec(&v).ok(),
        Ok(None) => None,
        Err(error) => {
            let n = OCSF_ERRORS.fetch_add(1, Ordering::Relaxed);
            if n < 10 || n.is_power_of_two() {
                tracing::warn!(%error, total = n + 1, "record not convertible to OCSF; written in native form");
            }
            Some(native.to_vec())
        }
    }
}

/// OCSF `severity_id` for a native alert severity: `low` 2, `medium` 3, `high` 4, `critical` 5;
/// anything else is 99 (Other, with the native word kept in `severity`) so that no alert is
/// dropped for an unexpected severity.
#[must_use]
pub fn severity_id(native: &str) -> u8 {
    match native.to_ascii_lowercase().as_str() {
        "low" => 2,
        "medium" => 3,
        "high" => 4,
        "critical" => 5,
        _ => 99,
    }
}

#[cfg(test)]
mod tests;

/// The shape of the records an output gets (`--format`, `?format=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The agent's own JSON lines (`kind: exec|open|...|alert|alert_repeats|agent_stats`).
    #[default]
    Native,
    /// OCSF 1.8.0: events as Process/File System/Network Activity, alerts as Detection
    /// Findings; `agent_stats` lines are not written.
    Ocsf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(Self::Native),
            "ocsf" => Some(Self::Ocsf),
            _ => None,
        }
    }
}
