//! The rule files as written: serde types mirroring `docs/rules-format.md`, one per document
//! kind. Unknown keys are rejected everywhere; values that need checking beyond their type
//! (globs, CIDRs, ids) keep their position ([`Spanned`]) so errors can name the line.

use std::collections::BTreeMap;

use marked_yaml::Spanned;
use serde::{Deserialize, Serialize};

/// `profile:` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileDoc {
    pub profile: Spanned<String>,
    #[allow(
        dead_code,
        reason = "for readers of the rule file; accepted and checked, not used"
    )]
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "match")]
    pub selectors: Spanned<Selectors>,
    #[serde(default)]
    pub mode: Option<Spanned<Mode>>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub inherit: Option<bool>,
    #[serde(default)]
    pub baseline: Option<bool>,
    #[serde(default)]
    pub allow: Option<Allow>,
    /// Allowances that hold only while the workload starts (same keys as `allow`).
    #[serde(default)]
    pub startup: Option<Allow>,
    /// Longest start-up phase, seconds (default 120).
    #[serde(default)]
    pub startup_secs: Option<Spanned<u64>>,
}

/// A profile's `match:` selectors (all given must hold).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Selectors {
    #[serde(default)]
    pub exe: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub argv_contains: Option<Vec<String>>,
    #[serde(default)]
    pub program: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub parent_exe: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub container_id: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub pod_uid: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub uid: Option<Vec<u32>>,
    /// What the container runtime says (`rules/workload.rs`).
    #[serde(default)]
    pub image: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub container_name: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub namespace: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub pod_labels: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// A profile's `allow:` lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Allow {
    #[serde(default)]
    pub exec: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub read: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub write: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub connect: Option<Vec<Spanned<ConnectEntry>>>,
    #[serde(default)]
    pub listen: Option<Vec<ListenEntry>>,
    #[serde(default)]
    pub unix: Option<Vec<Spanned<String>>>,
}

/// One `allow.connect` entry: a host or a CIDR, optionally a port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectEntry {
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub cidr: Option<Spanned<String>>,
    #[serde(default)]
    pub port: Option<u16>,
}

/// One `allow.listen` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenEntry {
    pub port: u16,
}

/// `detection:` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetectionDoc {
    pub detection: Spanned<String>,
    pub description: String,
    pub severity: Severity,
    pub mitre: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub scope: Option<Scope>,
    #[serde(default, rename = "type")]
    pub kind: Option<DetectionType>,
    #[serde(default)]
    pub on: Option<Spanned<Vec<OnKind>>>,
    #[serde(default)]
    pub when: Option<Conditions>,
    #[serde(default)]
    pub except: Option<Vec<Conditions>>,
    #[serde(default)]
    pub threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub window_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub action: Option<Spanned<DetectionAction>>,
}

/// What a detection does besides alerting: `kill` has the kernel kill a process under an
/// enforce-mode profile at a matching open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DetectionAction {
    #[default]
    Alert,
    Kill,
}

/// A `when:` block or one `except:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Conditions {
    #[serde(default)]
    pub path: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub access: Option<Spanned<Vec<AccessSel>>>,
    #[serde(default)]
    pub created: Option<bool>,
    #[serde(default)]
    pub exe: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub comm: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub argv_contains: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub parent_exe: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub remote: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub remote_port: Option<Spanned<Vec<u16>>>,
    #[serde(default)]
    pub proc_other: Option<Spanned<Vec<ProcEntry>>>,
    #[serde(default)]
    pub exe_memfd: Option<bool>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub interactive_shell: Option<bool>,
    #[serde(default)]
    pub content: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub result: Option<ResultSel>,
    /// What the container runtime says (`rules/workload.rs`).
    #[serde(default)]
    pub image: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub container_name: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub namespace: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub pod_labels: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// `override:` document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideDoc {
    #[serde(rename = "override")]
    pub target: Spanned<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub action: Option<Spanned<DetectionAction>>,
    #[serde(default)]
    pub except: Option<Vec<Conditions>>,
}

/// Alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// Profile mode; only `alert` is implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Alert,
    Enforce,
}

/// Which processes a detection looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scope {
    #[default]
    All,
    Profiled,
    /// Processes under a profile or in a container: where the ground is meant to be
    /// immutable (drift rules such as `write_then_exec`).
    Contained,
    /// The others: host processes outside every profile (the host-wide part of a rule whose
    /// `contained` part is broader).
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DetectionType {
    Match,
    WriteThenExec,
    Burst,
}

/// Event kinds a detection can be `on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnKind {
    Exec,
    Fork,
    Exit,
    Open,
    Unlink,
    Rename,
    Chmod,
    Memfd,
    Connect,
    Send,
    Accept,
    Bind,
    Listen,
    Dns,
    Link,
    Symlink,
    Truncate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AccessSel {
    Read,
    Write,
    ReadWrite,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ResultSel {
    Success,
    Failure,
    #[default]
    Any,
}

/// Entries of another process's `/proc/<pid>/` that `proc_other` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ProcEntry {
    Environ,
    Mem,
    Maps,
    Smaps,
    Cmdline,
    Auxv,
    Stack,
    Syscall,
    Status,
    Pagemap,
    Mountinfo,
    Fd,
    Cwd,
    Root,
    Exe,
}

impl ProcEntry {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Environ => "environ",
            Self::Mem => "mem",
            Self::Maps => "maps",
            Self::Smaps => "smaps",
            Self::Cmdline => "cmdline",
            Self::Auxv => "auxv",
            Self::Stack => "stack",
            Self::Syscall => "syscall",
            Self::Status => "status",
            Self::Pagemap => "pagemap",
            Self::Mountinfo => "mountinfo",
            Self::Fd => "fd",
            Self::Cwd => "cwd",
            Self::Root => "root",
            Self::Exe => "exe",
        }
    }
}
