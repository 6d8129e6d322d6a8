//! A learned profile before it is written: the same keys as a profile document, each allowlist
//! entry with what it stands for (how often and how soon it was seen, by which executables) so
//! the YAML can say so in a comment.

use std::fmt;

use super::footprint::Seen;

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A path or glob.
    Path(String),
    /// `!GLOB`: taken out of the list's globs.
    Exclude(String),
    /// `{ host | cidr, port }`.
    Connect {
        host: Option<String>,
        cidr: Option<String>,
        port: Option<u16>,
    },
    Listen(u16),
}

impl fmt::Display for Value {
    /// The entry as it is written in YAML.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"));
        match self {
            Value::Path(p) => f.write_str(&q(p)),
            Value::Exclude(p) => f.write_str(&q(&format!("!{p}"))),
            Value::Connect { host, cidr, port } => {
                let mut parts = Vec::new();
                if let Some(h) = host {
                    parts.push(format!("host: {}", q(h)));
                }
                if let Some(c) = cidr {
                    parts.push(format!("cidr: {}", q(c)));
                }
                if let Some(p) = port {
                    parts.push(format!("port: {p}"));
                }
                write!(f, "{{ {} }}", parts.join(", "))
            }
            Value::Listen(p) => write!(f, "{{ port: {p} }}"),
        }
    }
}

/// Where an entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Learned now.
    Learned,
    /// From the profile merged into, and seen again while learning.
    Kept,
    /// From the profile merged into, not seen while learning (kept: removal is never silent).
    Unseen,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub value: Value,
    pub seen: Seen,
    /// Distinct objects (paths, destinations) the entry stands for.
    pub objects: usize,
    /// Why the entry has this form, when a rule says more than the numbers do.
    pub note: Option<String>,
    pub origin: Origin,
}

impl Entry {
    pub fn new(value: Value, seen: Seen, objects: usize) -> Self {
        Self {
            value,
            seen,
            objects,
            note: None,
            origin: Origin::Learned,
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Whether only the start-up phase used it, and never after `cutoff` seconds into it.
    pub fn startup_only(&self, cutoff: f64) -> bool {
        self.seen.startup && !self.seen.serving && self.seen.last_startup_secs <= cutoff
    }
}

/// The lists of one block (`allow:` or `startup:`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lists {
    pub exec: Vec<Entry>,
    pub read: Vec<Entry>,
    pub write: Vec<Entry>,
    pub connect: Vec<Entry>,
    pub listen: Vec<Entry>,
    pub unix: Vec<Entry>,
}

/// The key of one list of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListKey {
    Exec,
    Read,
    Write,
    Connect,
    Listen,
    Unix,
}

impl ListKey {
    /// As written in a profile.
    pub fn as_str(self) -> &'static str {
        match self {
            ListKey::Exec => "exec",
            ListKey::Read => "read",
            ListKey::Write => "write",
            ListKey::Connect => "connect",
            ListKey::Listen => "listen",
            ListKey::Unix => "unix",
        }
    }
}

impl fmt::Display for ListKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The list keys, in the order they are written.
pub const LIST_KEYS: [ListKey; 6] = [
    ListKey::Exec,
    ListKey::Read,
    ListKey::Write,
    ListKey::Connect,
    ListKey::Listen,
    ListKey::Unix,
];

impl Lists {
    pub fn get(&self, key: ListKey) -> &[Entry] {
        match key {
            ListKey::Exec => &self.exec,
            ListKey::Read => &self.read,
            ListKey::Write => &self.write,
            ListKey::Connect => &self.connect,
            ListKey::Listen => &self.listen,
            ListKey::Unix => &self.unix,
        }
    }

    pub fn get_mut(&mut self, key: ListKey) -> &mut Vec<Entry> {
        match key {
            ListKey::Exec => &mut self.exec,
            ListKey::Read => &mut self.read,
            ListKey::Write => &mut self.write,
            ListKey::Connect => &mut self.connect,
            ListKey::Listen => &mut self.listen,
            ListKey::Unix => &mut self.unix,
        }
    }

    pub fn is_empty(&self) -> bool {
        LIST_KEYS.iter().all(|&k| self.get(k).is_empty())
    }

    /// Entries over all lists.
    pub fn len(&self) -> usize {
        LIST_KEYS.iter().map(|&k| self.get(k).len()).sum()
    }
}

/// A scalar in a `match:` list.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(u64),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => {
                f.write_str(&serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")))
            }
            Scalar::Num(n) => write!(f, "{n}"),
        }
    }
}

/// A profile to write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LearnedProfile {
    pub name: String,
    pub description: Option<String>,
    /// `match:` keys in order, each with its list.
    pub selectors: Vec<(String, Vec<Scalar>)>,
    pub mode: Option<String>,
    pub severity: Option<String>,
    pub inherit: Option<bool>,
    pub baseline: Option<bool>,
    pub startup_secs: Option<u64>,
    pub allow: Lists,
    pub startup: Lists,
    /// Comment lines for the top of the file.
    pub header: Vec<String>,
    /// Comment lines after `startup_secs`.
    pub startup_note: Option<String>,
    /// Write `allow.unix: []` when the list is empty: unix sockets are then checked too (a
    /// profile without the key leaves them unchecked).
    pub check_unix: bool,
}
