//! Events to OCSF Process Activity, File System Activity, Network Activity and (in `dns.rs`)
//! DNS Activity. The [`Parts`] are also what a finding carries as evidence of its triggering
//! event. The input is the typed [`Event`]: every kind has its mapping, checked by the compiler.

use monitor_common::EventKind;
use serde_json::{Map, Value, json};

use super::{
    OcsfError,
    dns::dns_parts,
    objects::{
        Activity, FILE_ACTIVITY, FILE_REGULAR, FILE_SYMLINK, FILE_UNKNOWN, Host, NETWORK_ACTIVITY,
        PROCESS_ACTIVITY, PROFILES, Parts, actor, cmd_line, connection_info, device, endpoint,
        file, header, metadata, own_process, set_status,
    },
};
use crate::{
    alert::Ancestor,
    sensor::event::{
        Event, EventBody, ExecBody, ExitBody, Family, FileBody, FileOp, ForkBody, NetBody, NetOp,
    },
};

const LAUNCH: Activity = Activity::new(1, "Launch");
const TERMINATE: Activity = Activity::new(2, "Terminate");

const FILE_CREATE: Activity = Activity::new(1, "Create");
const FILE_UPDATE: Activity = Activity::new(3, "Update");
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

/// An event in OCSF terms; `lineage` (an alert's `ancestors`) enriches the acting process.
///
/// # Errors
///
/// [`OcsfError::MissingField`] when the event lacks a value its class requires (a file
/// event's path).
pub(super) fn decode(ev: &Event, host: &Host, lineage: &[Ancestor]) -> Result<Parts, OcsfError> {
    let own = own_process(ev, lineage);
    let mut unmapped = Map::new();
    unmapped.insert("cgroup_id".into(), ev.cgroup_id.into());
    if ev.container_id.is_none()
        && let Some(pod) = &ev.pod_uid
    {
        unmapped.insert("pod_uid".into(), pod.as_str().into());
    }
    // OCSF's container has no pod name, namespace or labels: `unmapped.pod` carries them.
    if let Some(pod) = &ev.pod
        && (pod.name.is_some() || pod.namespace.is_some() || pod.labels.is_some())
    {
        let mut p = Map::new();
        p.insert("name".into(), pod.name.clone().into());
        p.insert("namespace".into(), pod.namespace.clone().into());
        let labels: Map<String, Value> = pod
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().into()))
            .collect();
        p.insert("labels".into(), labels.into());
        unmapped.insert("pod".into(), p.into());
    }
    // The workload profile the process is under and its phase (`startup`, `serving`).
    if let Some(profile) = &ev.profile {
        unmapped.insert("profile".into(), profile.as_str().into());
    }
    if let Some(phase) = ev.phase {
        unmapped.insert("phase".into(), phase.as_str().into());
    }
    Ok(match &ev.body {
        EventBody::Exec(x) => exec_parts(ev, x, own, unmapped),
        EventBody::Fork(f) => fork_parts(f, own, unmapped),
        EventBody::Exit(x) => exit_parts(x, own, unmapped),
        EventBody::File(f) => file_parts(f, own, unmapped)?,
        EventBody::Net(n) => net_parts(n, host, own, unmapped),
        EventBody::Dns(d) => dns_parts(ev, d, host, own, unmapped),
    })
}

/// An event as its OCSF class object.
///
/// # Errors
///
/// As [`decode`].
pub(super) fn convert(ev: &Event, host: &Host) -> Result<Value, OcsfError> {
    let parts = decode(ev, host, &[])?;
    let mut o = header(
        parts.class,
        parts.activity,
        parts.activity_name,
        ev.time,
        (1, "Informational"),
        metadata(&PROFILES, ev.kind().as_str(), ev.time),
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

/// Parts of a process activity.
fn process(
    kind: EventKind,
    activity: Activity,
    process: Map<String, Value>,
    acting: Map<String, Value>,
    attrs: Map<String, Value>,
    unmapped: Map<String, Value>,
) -> Parts {
    Parts {
        kind,
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
    }
}

/// `exec`: Launch (Exec) of the new image by the same pid.
fn exec_parts(
    ev: &Event,
    x: &ExecBody,
    own: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Parts {
    let mut attrs = Map::new();
    set_status(&mut attrs, 0);
    let mut image = own.clone();
    if !x.argv.is_empty() {
        image.insert("cmd_line".into(), cmd_line(&x.argv).into());
    }
    if let Some(cwd) = &x.cwd {
        image.insert("working_directory".into(), cwd.as_str().into());
    }
    image.insert("euid".into(), x.euid.into());
    image.insert("egid".into(), x.egid.into());
    if !image.contains_key("file") {
        image.insert("file".into(), file(&x.filename, FILE_REGULAR));
    } else if ev.exe.as_deref() != Some(x.filename.as_str()) {
        unmapped.insert("filename".into(), x.filename.as_str().into());
    }
    if x.argv_truncated {
        unmapped.insert("argv_truncated".into(), true.into());
    }
    attrs.insert("launch_type_id".into(), 3.into());
    attrs.insert("launch_type".into(), "Exec".into());
    // Before the exec the pid ran an image the event does not name.
    let mut before = own;
    before.remove("name");
    before.remove("file");
    process(EventKind::Exec, LAUNCH, image, before, attrs, unmapped)
}

/// `fork`: Launch (Fork) of the child by the forking process.
fn fork_parts(f: &ForkBody, own: Map<String, Value>, unmapped: Map<String, Value>) -> Parts {
    let mut attrs = Map::new();
    set_status(&mut attrs, 0);
    let mut child = Map::new();
    child.insert("pid".into(), f.child_pid.into());
    for key in ["name", "file", "user", "group", "container"] {
        if let Some(v) = own.get(key) {
            child.insert(key.into(), v.clone());
        }
    }
    child.insert("parent_process".into(), own.clone().into());
    attrs.insert("launch_type_id".into(), 2.into());
    attrs.insert("launch_type".into(), "Fork".into());
    process(EventKind::Fork, LAUNCH, child, own, attrs, unmapped)
}

/// `exit`: Terminate of the process by itself.
fn exit_parts(x: &ExitBody, own: Map<String, Value>, mut unmapped: Map<String, Value>) -> Parts {
    let mut attrs = Map::new();
    set_status(&mut attrs, 0);
    attrs.insert("exit_code".into(), x.exit_code.into());
    if let Some(signal) = x.signal {
        unmapped.insert("signal".into(), signal.into());
        attrs.insert(
            "status_detail".into(),
            format!("killed by signal {signal}").into(),
        );
    }
    process(
        EventKind::Exit,
        TERMINATE,
        own.clone(),
        own,
        attrs,
        unmapped,
    )
}

/// `open`: Create when it created the file, else Open (open flags as `access_mask`); `unlink`:
/// Delete; `rename`: Rename (`file_result` is the destination); `chmod`: Set Attributes (mode
/// in `unmapped.mode`); `memfd`: Create of the anonymous `memfd:NAME` file; `link` and
/// `symlink`: Create of the new name (the linked file or the symlink's target in
/// `unmapped.target`); `truncate`: Update (`unmapped.length`).
fn file_parts(
    f: &FileBody,
    own: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Result<Parts, OcsfError> {
    let kind = f.op.kind();
    let path = |field: &'static str, p: &Option<String>| {
        p.clone().ok_or(OcsfError::MissingField {
            kind: kind.as_str(),
            field,
        })
    };
    let mut attrs = Map::new();
    set_status(&mut attrs, f.result);
    let mut file_result = None;
    let (activity, target) = match f.op {
        FileOp::Open => {
            attrs.insert("access_mask".into(), f.flags.into());
            if let Some(access) = f.access {
                unmapped.insert("access".into(), access.as_str().into());
            }
            let created = f.created == Some(true);
            let activity = if created { FILE_CREATE } else { FILE_OPEN };
            let type_id = if created { FILE_REGULAR } else { FILE_UNKNOWN };
            (activity, file(&path("path", &f.path)?, type_id))
        }
        FileOp::Unlink => (FILE_DELETE, file(&path("path", &f.path)?, FILE_UNKNOWN)),
        FileOp::Rename => {
            file_result = Some(file(&path("new_path", &f.new_path)?, FILE_UNKNOWN));
            (FILE_RENAME, file(&path("path", &f.path)?, FILE_UNKNOWN))
        }
        FileOp::Chmod => {
            if let Some(mode) = f.mode {
                unmapped.insert("mode".into(), format!("{mode:04o}").into());
            }
            (
                FILE_SET_ATTRIBUTES,
                file(&path("path", &f.path)?, FILE_UNKNOWN),
            )
        }
        FileOp::Link | FileOp::Symlink => {
            if let Some(target) = &f.path {
                unmapped.insert("target".into(), target.as_str().into());
            }
            let type_id = if f.op == FileOp::Symlink {
                FILE_SYMLINK
            } else {
                FILE_UNKNOWN
            };
            (FILE_CREATE, file(&path("new_path", &f.new_path)?, type_id))
        }
        FileOp::Truncate => {
            if let Some(length) = f.length {
                unmapped.insert("length".into(), length.into());
            }
            (FILE_UPDATE, file(&path("path", &f.path)?, FILE_UNKNOWN))
        }
        FileOp::Memfd => {
            let name = format!("memfd:{}", f.name.as_deref().unwrap_or_default());
            let memfd = json!({ "name": name, "type_id": FILE_REGULAR, "type": "Regular File" });
            (FILE_CREATE, memfd)
        }
    };
    if f.op != FileOp::Open {
        unmapped.insert("flags".into(), f.flags.into());
    }
    if let Some(fd) = f.fd {
        unmapped.insert("fd".into(), fd.into());
    }
    if f.repeats > 0 {
        unmapped.insert("repeats".into(), f.repeats.into());
    }
    if f.path_truncated {
        unmapped.insert("path_truncated".into(), true.into());
    }
    Ok(Parts {
        kind,
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
    n: &NetBody,
    host: &Host,
    own: Map<String, Value>,
    mut unmapped: Map<String, Value>,
) -> Parts {
    let result = n.result;
    let unix = n.family == Some(Family::Unix);
    let (local_ip, remote_ip) = (
        n.local_addr.map(|ip| ip.to_canonical()),
        n.remote_addr.map(|ip| ip.to_canonical()),
    );
    let path = n.path.as_deref();
    let outbound = matches!(n.op, NetOp::Connect | NetOp::Send);
    let (local_name, remote_name) = if !unix {
        (None, None)
    } else if outbound {
        (None, path)
    } else {
        (path, None)
    };
    let host_name = Some(host.hostname.as_str());
    let local = endpoint(local_ip, n.local_port, host_name, local_name);
    let remote_host = if unix { host_name } else { None };
    let remote = endpoint(remote_ip, n.remote_port, remote_host, remote_name);

    let mut attrs = Map::new();
    set_status(&mut attrs, result);
    let (activity, activity_name, src, dst, direction) = match n.op {
        NetOp::Connect => {
            let activity = match result {
                r if r >= 0 || r == EINPROGRESS => NET_OPEN,
                ECONNREFUSED => NET_REFUSE,
                _ => NET_FAIL,
            };
            (activity, activity.caption, local, remote, (2, "Outbound"))
        }
        NetOp::Send => (NET_TRAFFIC, "Traffic", local, remote, (2, "Outbound")),
        NetOp::Accept => {
            let activity = if result >= 0 { NET_OPEN } else { NET_FAIL };
            (activity, activity.caption, remote, local, (1, "Inbound"))
        }
        NetOp::Listen => (NET_LISTEN, "Listen", None, local, (0, "Unknown")),
        NetOp::Bind => (NET_OTHER, "Bind", local, None, (0, "Unknown")),
    };
    if result == EINPROGRESS {
        attrs.insert("status_id".into(), 99.into());
        attrs.insert("status".into(), "In Progress".into());
    }
    attrs.insert(
        "is_src_dst_assignment_known".into(),
        (n.op != NetOp::Bind).into(),
    );

    let mut conn = connection_info(
        n.family,
        n.protocol,
        direction,
        local_ip.or(remote_ip),
        &mut unmapped,
    );
    if unix || remote_ip.is_some_and(|ip| ip.is_loopback()) {
        conn.insert("boundary_id".into(), 1.into());
        conn.insert("boundary".into(), "Localhost".into());
    }
    if let Some(family) = n.family {
        unmapped.insert("family".into(), family.as_str().into());
    }
    unmapped.insert("fd".into(), n.fd.into());
    Parts {
        kind: n.op.kind(),
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
    }
}
