//! Builders of the OCSF objects events and findings share: class header, metadata, device,
//! processes, files, network endpoints and connections, and operation status.

use std::{io, net::IpAddr, sync::OnceLock};

use monitor_common::EventKind;
use serde_json::{Map, Value, json};

use super::{OCSF_VERSION, PRODUCT_NAME, VENDOR_NAME};
use crate::{
    alert::Ancestor,
    clock::WallTime,
    sensor::event::{Event, Family, Protocol},
};

/// Profiles every converted object declares (findings add `security_control`).
pub(super) const PROFILES: [&str; 3] = ["host", "container", "linux/linux_users"];

/// OCSF `file.type_id` Unknown.
pub(super) const FILE_UNKNOWN: u8 = 0;
/// OCSF `file.type_id` Regular File.
pub(super) const FILE_REGULAR: u8 = 1;
/// `type_id` Symbolic Link.
pub(super) const FILE_SYMLINK: u8 = 7;

/// The machine the agent runs on, reported as `device`.
pub(super) struct Host {
    /// `/proc/sys/kernel/hostname`, `unknown` when unreadable.
    pub hostname: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_release: Option<String>,
}

impl Host {
    /// This machine, read once.
    pub fn current() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(|| Host {
            hostname: read_proc("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into()),
            kernel_release: read_proc("/proc/sys/kernel/osrelease"),
        })
    }
}

fn read_proc(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// An OCSF event class.
pub(super) struct Class {
    pub uid: u32,
    pub name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
}

pub(super) const PROCESS_ACTIVITY: Class = Class {
    uid: 1007,
    name: "Process Activity",
    category_uid: 1,
    category_name: "System Activity",
};
pub(super) const FILE_ACTIVITY: Class = Class {
    uid: 1001,
    name: "File System Activity",
    category_uid: 1,
    category_name: "System Activity",
};
pub(super) const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
pub(super) const DNS_ACTIVITY: Class = Class {
    uid: 4003,
    name: "DNS Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
pub(super) const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};

/// A class's normalized activity: `activity_id` and its caption (used in `type_name`).
#[derive(Clone, Copy)]
pub(super) struct Activity {
    pub id: u32,
    pub caption: &'static str,
}

impl Activity {
    pub const fn new(id: u32, caption: &'static str) -> Self {
        Self { id, caption }
    }
}

/// The attributes every class object starts with: class, category, activity, type, time,
/// severity and metadata. `activity_name` is the caption unless the source names it (Other).
pub(super) fn header(
    class: &Class,
    activity: Activity,
    activity_name: &str,
    time: WallTime,
    severity: (u8, &str),
    metadata: Map<String, Value>,
) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("class_uid".into(), class.uid.into());
    o.insert("class_name".into(), class.name.into());
    o.insert("category_uid".into(), class.category_uid.into());
    o.insert("category_name".into(), class.category_name.into());
    o.insert("activity_id".into(), activity.id.into());
    o.insert("activity_name".into(), activity_name.into());
    o.insert(
        "type_uid".into(),
        (u64::from(class.uid) * 100 + u64::from(activity.id)).into(),
    );
    o.insert(
        "type_name".into(),
        format!("{}: {}", class.name, activity.caption).into(),
    );
    o.insert("time".into(), time.ms().into());
    // Native times are UTC.
    o.insert("timezone_offset".into(), 0.into());
    o.insert("severity_id".into(), severity.0.into());
    o.insert("severity".into(), severity.1.into());
    o.insert("metadata".into(), metadata.into());
    o
}

/// `metadata`: schema version, product, profiles (with the Linux extension that
/// `linux/linux_users` comes from), the native kind as `event_code` and the native time.
pub(super) fn metadata(profiles: &[&str], event_code: &str, time: WallTime) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("version".into(), OCSF_VERSION.into());
    m.insert(
        "product".into(),
        json!({
            "name": PRODUCT_NAME,
            "vendor_name": VENDOR_NAME,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    );
    m.insert("profiles".into(), json!(profiles));
    m.insert(
        "extensions".into(),
        json!([{ "name": "linux", "uid": "1", "version": OCSF_VERSION }]),
    );
    m.insert("event_code".into(), event_code.into());
    m.insert("original_time".into(), time.to_string().into());
    m
}

/// `device`: the monitored host, a Linux machine of unknown form factor.
pub(super) fn device(host: &Host) -> Value {
    let mut os = json!({ "name": "Linux", "type_id": 200, "type": "Linux" });
    if let Some(release) = &host.kernel_release {
        os["kernel_release"] = release.as_str().into();
    }
    json!({ "hostname": host.hostname, "type_id": 0, "type": "Unknown", "os": os })
}

/// `actor` of an activity done by `process`.
pub(super) fn actor(process: Map<String, Value>) -> Value {
    let mut a = Map::new();
    a.insert("process".into(), process.into());
    a.into()
}

/// The last component of a path (the path itself when it has none, like `/`).
pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// A `file` object; `type_id` is [`FILE_UNKNOWN`], [`FILE_REGULAR`] or [`FILE_SYMLINK`].
pub(super) fn file(path: &str, type_id: u8) -> Value {
    let mut f = json!({
        "name": basename(path),
        "path": path,
        "type_id": type_id,
        "type": match type_id {
            FILE_REGULAR => "Regular File",
            FILE_SYMLINK => "Symbolic Link",
            _ => "Unknown",
        },
    });
    if let Some((dir, _)) = path.rsplit_once('/') {
        f["parent_folder"] = (if dir.is_empty() { "/" } else { dir }).into();
    }
    f
}

/// argv as one command line, each argument quoted POSIX-shell style when it needs it, so the
/// line splits back into the same arguments.
pub(super) fn cmd_line(argv: &[impl AsRef<str>]) -> String {
    let quote = |a: &str| {
        let plain = !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
        if plain {
            a.to_owned()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    argv.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A process of the lineage an alert carries (`ancestors`, nearest first), as a `process`
/// object (`name` is the executable's basename: `comm` is not recorded).
fn ancestor_process(a: &Ancestor) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("pid".into(), a.pid.into());
    if let Some(exe) = &a.exe {
        p.insert("name".into(), basename(exe).into());
        p.insert("file".into(), file(exe, FILE_REGULAR));
    }
    if !a.argv.is_empty() {
        p.insert("cmd_line".into(), cmd_line(&a.argv).into());
    }
    p
}

/// A process of the lineage as a `process_entity` for `ancestry`.
fn ancestor_entity(a: &Ancestor) -> Value {
    let mut e = ancestor_process(a);
    if let Some(exe) = &a.exe {
        e.remove("file");
        e.insert("path".into(), exe.as_str().into());
    }
    e.into()
}

/// The process the event happened in: pid, thread (`ptid`), `comm` as `name`, `exe` as `file`,
/// user and group, parent (with details and `ancestry` when `lineage` is known) and container.
pub(super) fn own_process(ev: &Event, lineage: &[Ancestor]) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("pid".into(), ev.pid.into());
    p.insert("ptid".into(), ev.tid.into());
    if !ev.comm.is_empty() {
        p.insert("name".into(), ev.comm.as_str().into());
    }
    if let Some(exe) = &ev.exe {
        p.insert("file".into(), file(exe, FILE_REGULAR));
    }
    p.insert("user".into(), json!({ "uid": ev.uid.to_string() }));
    p.insert("group".into(), json!({ "uid": ev.gid.to_string() }));
    let ppid = Some(ev.ppid).filter(|&ppid| ppid != 0);
    match (lineage.first(), ppid) {
        (Some(parent), Some(ppid)) if parent.pid == ppid => {
            p.insert("parent_process".into(), ancestor_process(parent).into());
        }
        (_, Some(ppid)) => {
            p.insert("parent_process".into(), json!({ "pid": ppid }));
        }
        (_, None) => {}
    }
    if !lineage.is_empty() {
        let ancestry: Vec<Value> = lineage.iter().map(ancestor_entity).collect();
        p.insert("ancestry".into(), ancestry.into());
    }
    if let Some(c) = container(ev) {
        p.insert("container".into(), c);
    }
    p
}

/// `container`: the container id, and the Kubernetes pod when known. `None` outside containers
/// (a pod without a container id stays in `unmapped.pod_uid`).
pub(super) fn container(ev: &Event) -> Option<Value> {
    let id = ev.container_id.as_deref()?;
    let mut c = json!({ "uid": id });
    if let Some(meta) = &ev.container {
        if let Some(name) = &meta.name {
            c["name"] = name.as_str().into();
        }
        let mut image = Map::new();
        if let Some(i) = &meta.image {
            image.insert("name".into(), i.as_str().into());
        }
        if let Some(i) = &meta.image_id {
            image.insert("uid".into(), i.as_str().into());
        }
        if !image.is_empty() {
            c["image"] = image.into();
        }
    }
    if let Some(pod) = &ev.pod_uid {
        c["pod_uuid"] = pod.as_str().into();
        c["orchestrator"] = "Kubernetes".into();
    }
    Some(c)
}

/// Sets `status_id`/`status` from a syscall result (0 or more: success, else `-errno`), with
/// the errno number as `status_code` and its text as `status_detail`.
pub(super) fn set_status(o: &mut Map<String, Value>, result: i64) {
    if result >= 0 {
        o.insert("status_id".into(), 1.into());
        o.insert("status".into(), "Success".into());
        return;
    }
    let errno = result.unsigned_abs();
    o.insert("status_id".into(), 2.into());
    o.insert("status".into(), "Failure".into());
    o.insert("status_code".into(), errno.to_string().into());
    if let Ok(raw) = i32::try_from(errno) {
        let detail = io::Error::from_raw_os_error(raw).to_string();
        o.insert("status_detail".into(), detail.into());
    }
}

/// A `network_endpoint`; `None` without an address, host name or name to identify it.
pub(super) fn endpoint(
    ip: Option<IpAddr>,
    port: Option<u16>,
    hostname: Option<&str>,
    name: Option<&str>,
) -> Option<Value> {
    let mut e = Map::new();
    if let Some(ip) = ip {
        e.insert("ip".into(), ip.to_string().into());
    }
    if let Some(hostname) = hostname {
        e.insert("hostname".into(), hostname.into());
    }
    if let Some(name) = name {
        e.insert("name".into(), name.into());
    }
    if e.is_empty() {
        return None;
    }
    if let Some(port) = port {
        e.insert("port".into(), port.into());
    }
    Some(e.into())
}

/// `connection_info`: direction, transport protocol (TCP/UDP over IP; a unix socket's type goes
/// to `unmapped.protocol`) and IP version, from an address of the socket or else its family.
pub(super) fn connection_info(
    family: Option<Family>,
    protocol: Option<Protocol>,
    direction: (u8, &str),
    ip: Option<IpAddr>,
    unmapped: &mut Map<String, Value>,
) -> Map<String, Value> {
    let mut conn = Map::new();
    conn.insert("direction_id".into(), direction.0.into());
    conn.insert("direction".into(), direction.1.into());
    match protocol {
        Some(p) if family != Some(Family::Unix) => {
            let number = match p {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
            };
            conn.insert("protocol_name".into(), p.as_str().into());
            conn.insert("protocol_num".into(), number.into());
        }
        Some(p) => {
            unmapped.insert("protocol".into(), p.as_str().into());
        }
        None => {}
    }
    let version = match (ip, family) {
        (Some(IpAddr::V4(_)), _) | (None, Some(Family::Inet)) => Some(4),
        (Some(IpAddr::V6(_)), _) | (None, Some(Family::Inet6)) => Some(6),
        _ => None,
    };
    if let Some(v) = version {
        conn.insert("protocol_ver_id".into(), v.into());
    }
    conn
}

/// One event in OCSF terms: the class, activity and objects of its class object.
pub(super) struct Parts {
    pub kind: EventKind,
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
