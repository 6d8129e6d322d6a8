//! The Sigma field names of each supported log source category, and the events of the agent as
//! rsigma [`Event`]s under those names (docs/sigma.md has the table). Fields are computed when a
//! rule asks for them: a rule set that never names `ParentCommandLine` never joins the parent's
//! argv.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;

use rsigma_eval::event::{Event as SigmaEventTrait, EventValue};
use serde_json::{Map, Value};

use crate::rules::view::View;
use crate::sensor::event::{EventBody, FileOp, NetOp};

/// The Sigma log source categories the agent produces (product `linux`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    ProcessCreation,
    FileEvent,
    NetworkConnection,
}

pub const CATEGORIES: [Category; 3] = [
    Category::ProcessCreation,
    Category::FileEvent,
    Category::NetworkConnection,
];

impl Category {
    pub fn parse(s: &str) -> Option<Self> {
        CATEGORIES.into_iter().find(|c| c.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ProcessCreation => "process_creation",
            Self::FileEvent => "file_event",
            Self::NetworkConnection => "network_connection",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The fields an event of this category has.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Self::ProcessCreation => &[
                "Image",
                "CommandLine",
                "ParentImage",
                "ParentCommandLine",
                "CurrentDirectory",
                "User",
                "LogonId",
                "ProcessId",
                "ParentProcessId",
            ],
            Self::FileEvent => &["TargetFilename", "Image", "User", "ProcessId"],
            Self::NetworkConnection => &[
                "DestinationIp",
                "DestinationPort",
                "DestinationHostname",
                "SourceIp",
                "SourcePort",
                "Initiated",
                "Protocol",
                "Image",
                "User",
                "ProcessId",
            ],
        }
    }

    /// The category of an event, when it has one: an exec; a file created, truncated or
    /// renamed to a new name; a connection made or accepted (or a datagram sent to an address).
    pub fn of(v: &View<'_>) -> Option<Self> {
        match &v.ev.body {
            EventBody::Exec(_) => Some(Self::ProcessCreation),
            EventBody::File(_) if v.failed() => None,
            EventBody::File(_) => target_filename(v).map(|_| Self::FileEvent),
            EventBody::Net(n) if v.failed() || n.remote_addr.is_none() => None,
            EventBody::Net(n) => matches!(n.op, NetOp::Connect | NetOp::Accept | NetOp::Send)
                .then_some(Self::NetworkConnection),
            _ => None,
        }
    }
}

/// The file an event creates: a new or truncated file, or the new name of a rename, hard link
/// or symlink.
fn target_filename<'v>(v: &'v View<'_>) -> Option<&'v str> {
    match v.file?.op {
        FileOp::Open | FileOp::Truncate if v.created() || v.truncates() => v.path.as_deref(),
        FileOp::Rename | FileOp::Link | FileOp::Symlink => v.new_path.as_deref(),
        _ => None,
    }
}

/// One end of a connection: address and port, each when known.
type End = (Option<IpAddr>, Option<u16>);

/// What a Sigma event needs beyond the event: the parent from the process table, names.
#[derive(Clone, Copy, Default)]
pub struct Extra<'a> {
    pub parent_exe: Option<&'a str>,
    pub parent_argv: Option<&'a [String]>,
    /// The user name of the event's uid.
    pub user: Option<&'a str>,
    /// The name the process resolved to the remote address, when the agent saw the answer.
    pub hostname: Option<&'a str>,
}

/// One event of the agent seen as a Sigma event of `category`.
pub struct SigmaEvent<'a> {
    category: Category,
    v: &'a View<'a>,
    extra: Extra<'a>,
    command_line: OnceCell<String>,
    parent_command_line: OnceCell<Option<String>>,
    login_uid: OnceCell<Option<i64>>,
}

impl<'a> SigmaEvent<'a> {
    pub fn new(category: Category, v: &'a View<'a>, extra: Extra<'a>) -> Self {
        Self {
            category,
            v,
            extra,
            command_line: OnceCell::new(),
            parent_command_line: OnceCell::new(),
            login_uid: OnceCell::new(),
        }
    }

    fn str(s: &str) -> EventValue<'_> {
        EventValue::Str(Cow::Borrowed(s))
    }

    /// Local and remote end of a connection, as (source, destination): the remote end is the
    /// destination of a connection this host made, the source of one it accepted.
    fn ends(&self) -> Option<(End, End)> {
        let n = self.v.net?;
        let local = (n.local_addr, n.local_port);
        let remote = (self.v.remote, n.remote_port);
        Some(if n.op == NetOp::Accept {
            (remote, local)
        } else {
            (local, remote)
        })
    }

    fn process_field(&self, name: &str) -> Option<EventValue<'_>> {
        let x = self.v.exec?;
        Some(match name {
            "CommandLine" => Self::str(self.command_line.get_or_init(|| x.argv.join(" "))),
            "ParentImage" => Self::str(self.extra.parent_exe?),
            "ParentCommandLine" => Self::str(
                self.parent_command_line
                    .get_or_init(|| self.extra.parent_argv.map(|a| a.join(" ")))
                    .as_deref()?,
            ),
            "CurrentDirectory" => Self::str(x.cwd.as_deref()?),
            "LogonId" => EventValue::Int((*self.login_uid.get_or_init(|| login_uid(self.v)))?),
            "ParentProcessId" => EventValue::Int(i64::from(self.v.ev.ppid)),
            _ => return None,
        })
    }

    fn network_field(&self, name: &str) -> Option<EventValue<'_>> {
        let n = self.v.net?;
        let ((sip, sport), (dip, dport)) = self.ends()?;
        let ip = |a: Option<IpAddr>| a.map(|a| EventValue::Str(Cow::Owned(a.to_string())));
        let port = |p: Option<u16>| p.map(|p| EventValue::Int(i64::from(p)));
        match name {
            "DestinationIp" => ip(dip),
            "DestinationPort" => port(dport),
            "SourceIp" => ip(sip),
            "SourcePort" => port(sport),
            "DestinationHostname" => match n.op {
                NetOp::Accept => None,
                _ => self.extra.hostname.map(Self::str),
            },
            "Initiated" => Some(Self::str(if n.op == NetOp::Accept {
                "false"
            } else {
                "true"
            })),
            "Protocol" => n.protocol.map(|p| Self::str(p.as_str())),
            _ => None,
        }
    }
}

/// `/proc/PID/loginuid` (Sysmon for Linux's `LogonId`): the audit login uid, `-1` unset.
fn login_uid(v: &View<'_>) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/{}/loginuid", v.ev.pid)).ok()?;
    let n: u32 = text.trim().parse().ok()?;
    Some(if n == u32::MAX { -1 } else { i64::from(n) })
}

impl SigmaEventTrait for SigmaEvent<'_> {
    fn get_field(&self, name: &str) -> Option<EventValue<'_>> {
        match (name, self.category) {
            ("Image", _) => self.v.exe.map(Self::str),
            ("User", _) => self.extra.user.map(Self::str),
            ("ProcessId", _) => Some(EventValue::Int(i64::from(self.v.ev.pid))),
            ("TargetFilename", Category::FileEvent) => target_filename(self.v).map(Self::str),
            (_, Category::ProcessCreation) => self.process_field(name),
            (_, Category::NetworkConnection) => self.network_field(name),
            _ => None,
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut hit = false;
        self.visit_string_values(&mut |s| hit = hit || pred(s));
        hit
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        self.visit_string_values(&mut |s| out.push(Cow::Owned(s.to_owned())));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        for name in self.category.fields() {
            if let Some(v) = self.get_field(name)
                && let Some(s) = v.as_str()
            {
                visit(&s);
            }
        }
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        for name in self.category.fields() {
            if let Some(v) = self.get_field(name) {
                let value = match v {
                    EventValue::Int(n) => Value::from(n),
                    other => other.as_str().map_or(Value::Null, |s| Value::from(&*s)),
                };
                map.insert((*name).to_owned(), value);
            }
        }
        Value::Object(map)
    }
}
