//! Native events to OCSF Process Activity, File System Activity, Network Activity and (in
//! `dns.rs`) DNS Activity. The decoded [`Parts`] are also what a finding carries as evidence of
//! its triggering event.

use serde_json::{Map, Value, json};

use super::{
    OcsfError,
    dns::dns_parts,
    native::Native,
    objects::{
        Activity, Ancestor, Class, FILE_ACTIVITY, FILE_REGULAR, FILE_UNKNOWN, Host,
        NETWORK_ACTIVITY, PROCESS_ACTIVITY, PROFILES, actor, cmd_line, connection_info, device,
        endpoint, file, header, metadata, own_process, set_status,
    },
};

/// A native event kind with an OCSF mapping, by family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Process(ProcessKind),
    File(FileKind),
    Net(NetKind),
    /// A DNS answer received.
    Dns,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProcessKind {
    Exec,
    Fork,
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FileKind {
    Open,
    Unlink,
    Rename,
    Chmod,
    Memfd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NetKind {
    Connect,
    Send,
    Accept,
    Bind,
    Listen,
}

impl Kind {
    /// Every mapped kind.
    pub const ALL: [Kind; 14] = [
        Kind::Process(ProcessKind::Exec),
        Kind::Process(ProcessKind::Fork),
        Kind::Process(ProcessKind::Exit),
        Kind::File(FileKind::Open),
        Kind::File(FileKind::Unlink),
        Kind::File(FileKind::Rename),
        Kind::File(FileKind::Chmod),
        Kind::File(FileKind::Memfd),
        Kind::Net(NetKind::Connect),
        Kind::Net(NetKind::Send),
        Kind::Net(NetKind::Accept),
        Kind::Net(NetKind::Bind),
        Kind::Net(NetKind::Listen),
        Kind::Dns,
    ];

    /// The native `kind` string.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Process(ProcessKind::Exec) => "exec",
            Kind::Process(ProcessKind::Fork) => "fork",
            Kind::Process(ProcessKind::Exit) => "exit",
            Kind::File(FileKind::Open) => "open",
            Kind::File(FileKind::Unlink) => "unlink",
            Kind::File(FileKind::Rename) => "rename",
            Kind::File(FileKind::Chmod) => "chmod",
            Kind::File(FileKind::Memfd) => "memfd",
            Kind::Net(NetKind::Connect) => "connect",
            Kind::Net(NetKind::Send) => "send",
            Kind::Net(NetKind::Accept) => "accept",
            Kind::Net(NetKind::Bind) => "bind",
            Kind::Net(NetKind::Listen) => "listen",
            Kind::Dns => "dns",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The mapped kinds' names, comma-separated (for error messages).
pub(super) fn kind_names() -> String {
    Kind::ALL.map(Kind::name).join(", ")
}

const LAUNCH: Activity = Activity::new(1, "Launch");
const TERMINATE: Activity = Activity::new(2, "Terminate");

const FILE_CREATE: Activity = Activity::new(1, "Create");
const FILE_DELETE: Activity = Activity::new(4, "Delete");
const FILE_RENAME: Activity = Activity::new(5, "Rename");
const FILE_SET_ATTRIBUTES: Activity = Activity::new(6, "Set Attributes");
const FILE_OPEN: Activity = Activity::new(14, "Open");

const NET_OPEN: Activity = Activity::new(1, "Open");
const NET_FAIL: Activity = Activity::new(4, "Fail");
const NET_REFUSE: Activity = Activity::new(5, "Refuse");
const NET_TRAFFIC: Activity = Activity::new(6, "Traffic");
const NET_LISTEN: Activity = Activity::new(7, "Listen");
const NET_OTHER: Activity = Activity::new(99, "Other");

/// `-EINPROGRESS`: a non-blocking connect under way.
const EINPROGRESS: i64 = -115;
/// `-ECONNREFUSED`.
const ECONNREFUSED: i64 = -111;

/// One event in OCSF terms: the class, activity and objects of its class object.
pub(super) struct Parts {
    pub kind: Kind,
    pub class: &'static Class,
    pub activity: Activity,
    /// `activity_name`: the caption, or the source's word for an Other activity.
    pub activity_name: &'static str,
    /// The process acted on (process activities only).
    pub process: Option<Value>,
    /// `actor`: the acting process.
    pub actor: Value,
    pub file: Option<Value>,
    /// The rename destination.
    pub file_result: Option<Value>,
    /// The DNS question (DNS activities only).
    pub query: Option<Value>,
    pub src_endpoint: Option<Value>,
    pub dst_endpoint: Option<Value>,
    pub connection_info: Option<Value>,
    /// Further attributes of the class object (status, launch type, exit code, ...).
    pub attrs: Map<String, Value>,
    /// Native fields OCSF has no attribute for.
    pub unmapped: Map<String, Value>,
}

/// Decodes a native event; `lineage` (an alert's `ancestors`) enriches the acting process.
pub(super) fn decode(ev: &Native, host: &Host, lineage: &[Ancestor]) -> Result<Parts, OcsfError> {
    let kind = Kind::parse(ev.kind()).ok_or_else(|| OcsfError::UnknownKind {
        kind: ev.kind().into(),
    })?;
    let own = own_process(ev, lineage)?;
    let mut unmapped = Map::new();
    if let Some(cgroup_id) = ev.opt_u64("cgroup_id")? {
        unmapped.insert("cgroup_id".into(), cgroup_id.into());
    }
    if ev.opt_str("container_id")?.is_none()
        && let Some(pod) = ev.opt_str("pod_uid")?
    {
        unmapped.insert("pod_uid".into(), pod.into());
    }
    // The workload profile the process is under and its phase (`startup`, `serving`).
    for key in ["profile", "phase"] {
        if let Some(value) = ev.opt_str(key)? {
            unmapped.insert(key.into(), value.into());
        }
    }
    match kind {
        Kind::Process(kind) => process_parts(ev, kind, own, unmapped),
        Kind::File(kind) => file_parts(ev, kind, own, unmapped),
        Kind::Net(kind) => net_parts(ev, kind, host, own, unmapped),
        Kind::Dns => dns_parts(ev, host, own, unmapped),
    }
}

/// Converts a native event into its OCSF class object.
pub(super) fn convert(native: &Value, host: &Host) -> Result<Value, OcsfError> {
    let ev = Native::new(native)?;
    let parts = decode(&ev, host, &[])?;
    let time = ev.time()?;
    let mut o = header(
        parts.class,
        parts.activity,
        parts.activity_name,
        &time,
        (1, "Informational"),
        metadata(&PROFILES, ev.kind(), &time),
    );
    o.insert("device".into(), device(host));
    o.insert("actor".into(), parts.actor);
    let objects = [
        ("process", parts.process),
        ("file", parts.file),
        ("file_result", parts.file_result),
        ("query", parts.query),
        ("src_endpoint", parts.src_endpoint),
        ("dst_endpoint", parts.dst_endpoint),
        ("connection_info", parts.connection_info),
    ];
    for (key, value) in objects {
        if let Some(value) = value {
            o.insert(key.into(), value);
        }
    }
    o.extend(parts.attrs);
    if !parts.unmapped.is_empty() {
        o.insert("unmapped".into(), parts.unmapped.into());
    }
    Ok(o.into())
}

/// `exec`: Launch (Exec) of the new image by the same pid; `fork`: Launch (Fork) of the child
/// by the forking process; `exit`: Terminate of the process by itself.
fn process_parts(
    ev: &Native,
    kind: ProcessKind,
    own: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Result<Parts, OcsfError> {
    let mut attrs = Map::new();
    set_status(&mut attrs, 0);
    let (activity, process, acting) = match kind {
        ProcessKind::Exec => {
            let mut image = own.clone();
            let argv = ev.str_list("argv")?;
            if !argv.is_empty() {
                image.insert("cmd_line".into(), cmd_line(&argv).into());
            }
            if let Some(cwd) = ev.opt_str("cwd")? {
                image.insert("working_directory".into(), cwd.into());
            }
            for key in ["euid", "egid"] {
                if let Some(id) = ev.opt_u64(key)? {
                    image.insert(key.into(), id.into());
                }
            }
            if let Some(filename) = ev.opt_str("filename")? {
                if !image.contains_key("file") {
                    image.insert("file".into(), file(filename, FILE_REGULAR));
                } else if ev.opt_str("exe")? != Some(filename) {
                    unmapped.insert("filename".into(), filename.into());
                }
            }
            if ev.opt_bool("argv_truncated")? == Some(true) {
                unmapped.insert("argv_truncated".into(), true.into());
            }
            attrs.insert("launch_type_id".into(), 3.into());
            attrs.insert("launch_type".into(), "Exec".into());
            // Before the exec the pid ran an image the event does not name.
            let mut before = own;
            before.remove("name");
            before.remove("file");
            (LAUNCH, image, before)
        }
        ProcessKind::Fork => {
            let mut child = Map::new();
            child.insert("pid".into(), ev.u64("child_pid")?.into());
            for key in ["name", "file", "user", "group", "container"] {
                if let Some(v) = own.get(key) {
                    child.insert(key.into(), v.clone());
                }
            }
            child.insert("parent_process".into(), own.clone().into());
            attrs.insert("launch_type_id".into(), 2.into());
            attrs.insert("launch_type".into(), "Fork".into());
            (LAUNCH, child, own)
        }
        ProcessKind::Exit => {
            if let Some(code) = ev.opt_i64("exit_code")? {
                attrs.insert("exit_code".into(), code.into());
            }
            if let Some(signal) = ev.opt_i64("signal")? {
                unmapped.insert("signal".into(), signal.into());
                attrs.insert(
                    "status_detail".into(),
                    format!("killed by signal {signal}").into(),
                );
            }
            (TERMINATE, own.clone(), own)
        }
    };
    Ok(Parts {
        kind: Kind::Process(kind),
        class: &PROCESS_ACTIVITY,
        activity,
        activity_name: activity.caption,
        process: Some(process.into()),
        actor: actor(acting),
        file: None,
        file_result: None,
        query: None,
        src_endpoint: None,
        dst_endpoint: None,
        connection_info: None,
        attrs,
        unmapped,
    })
}

/// `open`: Create when it created the file, else Open (open flags as `access_mask`); `unlink`:
/// Delete; `rename`: Rename (`file_result` is the destination); `chmod`: Set Attributes (mode
/// in `unmapped.mode`); `memfd`: Create of the anonymous `memfd:NAME` file.
fn file_parts(
    ev: &Native,
    kind: FileKind,
    own: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Result<Parts, OcsfError> {
    let mut attrs = Map::new();
    set_status(&mut attrs, ev.opt_i64("result")?.unwrap_or(0));
    let flags = ev.opt_u64("flags")?;
    let mut file_result = None;
    let (activity, target) = match kind {
        FileKind::Open => {
            if let Some(flags) = flags {
                attrs.insert("access_mask".into(), flags.into());
            }
            if let Some(access) = ev.opt_str("access")? {
                unmapped.insert("access".into(), access.into());
            }
            let created = ev.opt_bool("created")? == Some(true);
            let activity = if created { FILE_CREATE } else { FILE_OPEN };
            let type_id = if created { FILE_REGULAR } else { FILE_UNKNOWN };
            (activity, file(ev.str("path")?, type_id))
        }
        FileKind::Unlink => (FILE_DELETE, file(ev.str("path")?, FILE_UNKNOWN)),
        FileKind::Rename => {
            file_result = Some(file(ev.str("new_path")?, FILE_UNKNOWN));
            (FILE_RENAME, file(ev.str("path")?, FILE_UNKNOWN))
        }
        FileKind::Chmod => {
            if let Some(mode) = ev.opt_u64("mode")? {
                unmapped.insert("mode".into(), format!("{mode:04o}").into());
            }
            (FILE_SET_ATTRIBUTES, file(ev.str("path")?, FILE_UNKNOWN))
        }
        FileKind::Memfd => {
            let name = format!("memfd:{}", ev.opt_str("name")?.unwrap_or_default());
            let memfd = json!({ "name": name, "type_id": FILE_REGULAR, "type": "Regular File" });
            (FILE_CREATE, memfd)
        }
    };
    if kind != FileKind::Open
        && let Some(flags) = flags
    {
        unmapped.insert("flags".into(), flags.into());
    }
    if let Some(fd) = ev.opt_i64("fd")? {
        unmapped.insert("fd".into(), fd.into());
    }
    if let Some(repeats) = ev.opt_u64("repeats")?.filter(|&r| r > 0) {
        unmapped.insert("repeats".into(), repeats.into());
    }
    if ev.opt_bool("path_truncated")? == Some(true) {
        unmapped.insert("path_truncated".into(), true.into());
    }
    Ok(Parts {
        kind: Kind::File(kind),
        class: &FILE_ACTIVITY,
        activity,
        activity_name: activity.caption,
        process: None,
        actor: actor(own),
        file: Some(target),
        file_result,
        query: None,
        src_endpoint: None,
        dst_endpoint: None,
        connection_info: None,
        attrs,
        unmapped,
    })
}

/// `connect`: Open (Refuse or Fail when refused or failed), local to remote; `send`: Traffic;
/// `accept`: Open, remote to local; `listen`: Listen on the local endpoint; `bind`: Other.
/// The local endpoint always carries the host name; a unix socket's path is the name of the
/// server-side endpoint.
fn net_parts(
    ev: &Native,
    kind: NetKind,
    host: &Host,
    own: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Result<Parts, OcsfError> {
    let result = ev.opt_i64("result")?.unwrap_or(0);
    let family = ev.opt_str("family")?;
    let unix = family == Some("unix");
    let local_ip = ev.opt_ip("local_addr")?;
    let remote_ip = ev.opt_ip("remote_addr")?;
    let path = ev.opt_str("path")?;
    let outbound = matches!(kind, NetKind::Connect | NetKind::Send);
    let (local_name, remote_name) = if !unix {
        (None, None)
    } else if outbound {
        (None, path)
    } else {
        (path, None)
    };
    let host_name = Some(host.hostname.as_str());
    let local = endpoint(local_ip, ev.opt_port("local_port")?, host_name, local_name);
    let remote_host = if unix { host_name } else { None };
    let remote = endpoint(
        remote_ip,
        ev.opt_port("remote_port")?,
        remote_host,
        remote_name,
    );

    let mut attrs = Map::new();
    set_status(&mut attrs, result);
    let (activity, activity_name, src, dst, direction) = match kind {
        NetKind::Connect => {
            let activity = match result {
                r if r >= 0 || r == EINPROGRESS => NET_OPEN,
                ECONNREFUSED => NET_REFUSE,
                _ => NET_FAIL,
            };
            (activity, activity.caption, local, remote, (2, "Outbound"))
        }
        NetKind::Send => (NET_TRAFFIC, "Traffic", local, remote, (2, "Outbound")),
        NetKind::Accept => {
            let activity = if result >= 0 { NET_OPEN } else { NET_FAIL };
            (activity, activity.caption, remote, local, (1, "Inbound"))
        }
        NetKind::Listen => (NET_LISTEN, "Listen", None, local, (0, "Unknown")),
        NetKind::Bind => (NET_OTHER, "Bind", local, None, (0, "Unknown")),
    };
    if result == EINPROGRESS {
        attrs.insert("status_id".into(), 99.into());
        attrs.insert("status".into(), "In Progress".into());
    }
    attrs.insert(
        "is_src_dst_assignment_known".into(),
        (kind != NetKind::Bind).into(),
    );

    let mut conn = connection_info(ev, direction, local_ip.or(remote_ip), &mut unmapped)?;
    if unix || remote_ip.is_some_and(|ip| ip.is_loopback()) {
        conn.insert("boundary_id".into(), 1.into());
        conn.insert("boundary".into(), "Localhost".into());
    }
    if let Some(family) = family {
        unmapped.insert("family".into(), family.into());
    }
    if let Some(fd) = ev.opt_i64("fd")? {
        unmapped.insert("fd".into(), fd.into());
    }
    Ok(Parts {
        kind: Kind::Net(kind),
        class: &NETWORK_ACTIVITY,
        activity,
        activity_name,
        process: None,
        actor: actor(own),
        file: None,
        file_result: None,
        query: None,
        src_endpoint: src,
        dst_endpoint: dst,
        connection_info: Some(conn.into()),
        attrs,
        unmapped,
    })
}
