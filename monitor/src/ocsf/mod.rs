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
mod native;
mod objects;

use serde_json::Value;

use self::objects::Host;

/// The OCSF schema version the converted objects follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.8.0";

/// `metadata.product.name` of every converted object.
pub const PRODUCT_NAME: &str = "monitor";

/// `metadata.product.vendor_name` of every converted object.
pub const VENDOR_NAME: &str = "monitor project";

/// Why a native record could not be converted. Each variant names the native `kind` and, where
/// it applies, the offending field (dotted for nested records: `event.path`, `ancestors[].pid`).
#[derive(Debug, thiserror::Error)]
pub enum OcsfError {
    /// The record is not a JSON object.
    #[error("native record must be a JSON object, found {found}")]
    NotAnObject {
        /// JSON type of what was given.
        found: &'static str,
    },
    /// A field the conversion needs is absent or null.
    #[error("native `{kind}` record lacks the required field `{field}`")]
    MissingField {
        /// Native `kind` of the record.
        kind: String,
        /// The missing field.
        field: String,
    },
    /// A field has the wrong JSON type or an impossible value.
    #[error("native `{kind}` record: field `{field}` must be {expected}, found {found}")]
    BadField {
        /// Native `kind` of the record.
        kind: String,
        /// The offending field.
        field: String,
        /// What the field should hold.
        expected: &'static str,
        /// What it holds.
        found: String,
    },
    /// `time` is not an RFC 3339 timestamp.
    #[error("native `{kind}` record: `{field}` {value:?} is not an RFC 3339 timestamp")]
    BadTime {
        /// Native `kind` of the record.
        kind: String,
        /// The time field (`time` or `event.time`).
        field: String,
        /// The unparsable value.
        value: String,
        /// What the parser said.
        #[source]
        source: chrono::ParseError,
    },
    /// The record's kind has no OCSF event mapping.
    #[error(
        "native record kind `{kind}` has no OCSF event mapping (expected one of: {}); alerts go \
         through `alert_to_ocsf`",
        activity::kind_names()
    )]
    UnknownKind {
        /// The unmapped kind.
        kind: String,
    },
    /// `alert_to_ocsf` was given something other than an alert.
    #[error(
        "expected a native alert (`kind: \"alert\"`), found kind `{kind}`; events go through `event_to_ocsf`"
    )]
    NotAnAlert {
        /// The kind that was given.
        kind: String,
    },
}

/// Converts a native alert (`kind: "alert"`) into an OCSF Detection Finding (class 2004).
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
/// [`OcsfError::NotAnAlert`] for other kinds, [`OcsfError::UnknownKind`] when the triggering
/// event's kind has no mapping, and the field errors when a field it needs is missing or
/// malformed.
pub fn alert_to_ocsf(native: &Value) -> Result<Value, OcsfError> {
    finding::convert(native, Host::current())
}

/// Converts a native `alert_repeats` record into a Detection Finding Update (activity 2) of the
/// folded alert's finding, with `count` folded alerts.
///
/// # Errors
///
/// The field errors when a field it needs (`alert_id`, `id`, `rule`, `severity`, `time`,
/// `key`, `count`) is missing or malformed.
pub fn repeats_to_ocsf(native: &Value) -> Result<Value, OcsfError> {
    finding::convert_repeats(native, Host::current())
}

/// Any native record the agent writes, converted: alerts and `alert_repeats` to Detection
/// Findings, events to their activity classes. `Ok(None)` for the agent's own `agent_stats`
/// lines, which have no OCSF class.
///
/// # Errors
///
/// As [`alert_to_ocsf`], [`repeats_to_ocsf`] and [`event_to_ocsf`].
pub fn to_ocsf(native: &Value) -> Result<Option<Value>, OcsfError> {
    match native.get("kind").and_then(Value::as_str) {
        Some("alert") => alert_to_ocsf(native).map(Some),
        Some("alert_repeats") => repeats_to_ocsf(native).map(Some),
        Some("agent_stats") => Ok(None),
        _ => event_to_ocsf(native).map(Some),
    }
}

/// Converts a native event (`exec`, `fork`, `exit`, file, network and `dns` kinds) into an OCSF
/// Process Activity (1007), File System Activity (1001), Network Activity (4001) or DNS
/// Activity (4003) object.
///
/// The acting process is `actor.process` (pid, thread as `ptid`, `comm` as `name`, `exe` as
/// `file.path`, `user.uid`, parent pid, container); the host is `device` (hostname from
/// `/proc/sys/kernel/hostname`). Other kinds (`alert`, `agent_stats`, ...) are
/// [`OcsfError::UnknownKind`].
///
/// # Errors
///
/// [`OcsfError::UnknownKind`] for kinds without a mapping, and the field errors when a field it
/// needs is missing or malformed.
pub fn event_to_ocsf(native: &Value) -> Result<Value, OcsfError> {
    activity::convert(native, Host::current())
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
