//! Alerts to OCSF Detection Finding.

use monitor_common::EventKind;
use serde_json::{Map, Value, json};

use super::{
    OcsfError, activity,
    objects::{Activity, DETECTION_FINDING, Host, PROFILES, Parts, device, header, metadata},
    severity_id,
};
use crate::{
    alert::{Alert, limit::Repeats},
    clock::WallTime,
    rules::{Action, Phase},
};

const CREATE: Activity = Activity::new(1, "Create");

/// OCSF `observable.type_id` of the values a finding lifts into `observables`, by where they
/// sit in the finding.
const OBSERVABLES: [(&str, u8); 13] = [
    ("device.hostname", 1),
    ("actor.process.name", 9),
    ("actor.process.pid", 15),
    ("actor.process.file.path", 45),
    ("actor.process.user.uid", 31),
    ("actor.process.parent_process.file.path", 45),
    ("evidences.process.file.path", 45),
    ("evidences.process.cmd_line", 13),
    ("evidences.file.path", 45),
    ("evidences.query.hostname", 1),
    ("evidences.src_endpoint.ip", 2),
    ("evidences.dst_endpoint.ip", 2),
    ("evidences.dst_endpoint.port", 11),
];

const UPDATE: Activity = Activity::new(2, "Update");

/// What a finding and an update of it share: the alert's id, rule and severity.
struct Common<'a> {
    id: &'a str,
    rule: &'a str,
    severity: &'a str,
    profile: Option<&'a str>,
    /// The workload's phase (`startup`, `serving`): alerts of profiled processes carry it.
    phase: Option<&'static str>,
    /// What enforcement did or would have done (`blocked`, `killed`, `would_block`).
    action: Option<Action>,
    time: WallTime,
}

impl<'a> Common<'a> {
    fn of_alert(a: &'a Alert) -> Self {
        Self {
            id: &a.id,
            rule: &a.rule,
            severity: &a.severity,
            profile: a.profile.as_deref(),
            phase: a.phase.map(Phase::as_str),
            action: a.action,
            time: a.time,
        }
    }

    fn of_repeats(r: &'a Repeats) -> Self {
        Self {
            id: &r.alert_id,
            rule: &r.rule,
            severity: &r.severity,
            profile: r.profile.as_deref(),
            phase: None,
            action: None,
            time: r.time,
        }
    }

    /// Class header, metadata (the alert id as `correlation_uid`, so a finding and its updates
    /// correlate) and the attributes every finding of this agent has.
    fn header(&self, activity: Activity, uid: &str, event_code: &str) -> Map<String, Value> {
        let mut profiles = PROFILES.to_vec();
        profiles.push("security_control");
        let mut meta = metadata(&profiles, event_code, self.time);
        meta.insert("uid".into(), uid.into());
        meta.insert("correlation_uid".into(), self.id.into());
        let severity_id = severity_id(self.severity);
        let severity_caption = match severity_id {
            2 => "Low",
            3 => "Medium",
            4 => "High",
            5 => "Critical",
            _ => self.severity,
        };
        let mut o = header(
            &DETECTION_FINDING,
            activity,
            activity.caption,
            self.time,
            (severity_id, severity_caption),
            meta,
        );
        o.insert("is_alert".into(), true.into());
        // Enforcement denied the step (the syscall failed, or the process was killed before
        // it had an effect): denied, blocked. Otherwise the agent only reported it (alert
        // mode; `would_block` says enforce mode would have stopped it): observed, detected.
        let ((action_id, action), (disposition_id, disposition)) = match self.action {
            Some(Action::Blocked | Action::Killed) => ((2, "Denied"), (2, "Blocked")),
            _ => ((3, "Observed"), (15, "Detected")),
        };
        o.insert("action_id".into(), action_id.into());
        o.insert("action".into(), action.into());
        o.insert("disposition_id".into(), disposition_id.into());
        o.insert("disposition".into(), disposition.into());
        o
    }

    /// The workload profile, phase and the native action, into `unmapped` (OCSF has no
    /// attribute for them).
    fn unmap_profile(&self, unmapped: &mut Map<String, Value>) {
        let action = self.action.map(Action::as_str);
        for (key, value) in [
            ("profile", self.profile),
            ("phase", self.phase),
            ("action", action),
        ] {
            if let Some(value) = value {
                unmapped.insert(key.into(), value.into());
            }
        }
    }

    /// `finding_info` with the fields both activities carry.
    fn finding_info(&self) -> Value {
        let kind = if self.rule.starts_with("profile.") {
            "Profile Violation"
        } else {
            "Detection"
        };
        json!({
            "uid": self.id,
            "title": self.rule,
            "types": [kind],
            "analytic": { "name": self.rule, "uid": self.rule, "type_id": 1, "type": "Rule" },
        })
    }
}

/// An alert as a Detection Finding. An alert the agent raises about itself (such as a delivery
/// spool overflow) has no triggering `event`: its finding has no actor, evidences or resources.
///
/// # Errors
///
/// As [`activity::decode`] for the triggering event.
pub(super) fn convert(alert: &Alert, host: &Host) -> Result<Value, OcsfError> {
    let common = Common::of_alert(alert);
    let message = alert.message.as_str();
    let parts = alert
        .event
        .as_ref()
        .map(|event| activity::decode(event, host, &alert.ancestors))
        .transpose()?;

    let mut o = common.header(CREATE, common.id, "alert");
    o.insert("message".into(), message.into());
    let attacks = attacks(&alert.mitre);
    let mut info = common.finding_info();
    info["desc"] = message.into();
    for key in ["created_time", "first_seen_time", "last_seen_time"] {
        info[key] = common.time.ms().into();
    }
    if !attacks.is_empty() {
        info["attacks"] = attacks.clone().into();
        o.insert("attacks".into(), attacks.into());
    }
    if let Some(sigma) = &alert.sigma {
        // The Sigma rule is the analytic: its title names the finding, its id is the uid a
        // SIEM correlates on, its first reference is where to read about it.
        info["title"] = sigma.title.as_str().into();
        info["analytic"] = json!({
            "name": sigma.title, "uid": sigma.id, "type_id": 1, "type": "Rule",
            "category": "Sigma",
        });
        info["types"] = json!(["Detection", "Sigma"]);
        if let Some(url) = sigma.references.first() {
            info["src_url"] = url.as_str().into();
        }
    }
    o.insert("finding_info".into(), info);
    o.insert("device".into(), device(host));
    let mut unmapped = Map::new();
    if let Some(parts) = parts {
        o.insert("actor".into(), parts.actor.clone());
        o.insert("resources".into(), resources(&parts).into());
        unmapped.clone_from(&parts.unmapped);
        o.insert("evidences".into(), evidences(parts).into());
    }
    common.unmap_profile(&mut unmapped);
    if let Some(sigma) = &alert.sigma {
        unmapped.insert("sigma".into(), json!(sigma));
    }
    // Fields of agent-raised alerts without an OCSF attribute (`dropped`, `spool_dir`, ...).
    for (key, value) in &alert.about {
        if !value.is_null() {
            unmapped.insert(key.clone(), value.clone());
        }
    }
    if !unmapped.is_empty() {
        o.insert("unmapped".into(), unmapped.into());
    }
    let mut finding = Value::Object(o);
    finding["observables"] = observables(&finding).into();
    Ok(finding)
}

/// An `alert_repeats` record (identical alerts folded into an earlier one) as a Detection
/// Finding Update of that alert's finding: `finding_info.uid` and `metadata.correlation_uid`
/// are the folded alert's id and `count` says how many were folded.
pub(super) fn convert_repeats(r: &Repeats, host: &Host) -> Value {
    let common = Common::of_repeats(r);
    let count = r.count;
    let mut o = common.header(UPDATE, &r.id, "alert_repeats");
    o.insert(
        "message".into(),
        format!("{count} more alerts identical to {} folded", common.id).into(),
    );
    o.insert("count".into(), count.into());
    let mut info = common.finding_info();
    info["last_seen_time"] = common.time.ms().into();
    o.insert("finding_info".into(), info);
    o.insert("device".into(), device(host));
    let mut unmapped = Map::new();
    unmapped.insert("key".into(), r.key.as_str().into());
    common.unmap_profile(&mut unmapped);
    o.insert("unmapped".into(), unmapped.into());
    let mut finding = Value::Object(o);
    finding["observables"] = observables(&finding).into();
    finding
}

/// ATT&CK technique ids as `attack` objects: `T1059` is a technique, `T1552.001` a
/// sub-technique of `T1552`.
fn attacks(ids: &[String]) -> Vec<Value> {
    let url = |id: &str| {
        format!(
            "https://attack.mitre.org/techniques/{}/",
            id.replace('.', "/")
        )
    };
    ids.iter()
        .map(|id| match id.split_once('.') {
            Some((technique, _)) => json!({
                "technique": { "uid": technique, "src_url": url(technique) },
                "sub_technique": { "uid": id, "src_url": url(id) },
            }),
            None => json!({ "technique": { "uid": id, "src_url": url(id) } }),
        })
        .collect()
}

/// The triggering event as evidence: the process, actor, file or connection, container and, in
/// `data`, the native kind with the event's class-level attributes (status, exit code, ...). A
/// rename's destination is a second evidence.
fn evidences(parts: Parts) -> Vec<Value> {
    let kind = parts.kind.as_str();
    let mut e = Map::new();
    e.insert("name".into(), kind.into());
    let process = parts
        .process
        .clone()
        .or_else(|| parts.actor.get("process").cloned());
    if let Some(container) = process.as_ref().and_then(|p| p.get("container")) {
        e.insert("container".into(), container.clone());
    }
    // The actor is worth repeating only when the process is another one (the launched child).
    let actor = parts.process.is_some().then_some(parts.actor);
    let objects = [
        ("process", process),
        ("actor", actor),
        ("file", parts.file),
        ("query", parts.query),
        ("src_endpoint", parts.src_endpoint),
        ("dst_endpoint", parts.dst_endpoint),
        ("connection_info", parts.connection_info),
    ];
    for (key, value) in objects {
        if let Some(value) = value {
            e.insert(key.into(), value);
        }
    }
    let mut data = Map::new();
    data.insert("kind".into(), kind.into());
    data.insert(
        "type_uid".into(),
        (u64::from(parts.class.uid) * 100 + u64::from(parts.activity.id)).into(),
    );
    data.insert(
        "type_name".into(),
        format!("{}: {}", parts.class.name, parts.activity.caption).into(),
    );
    data.extend(parts.attrs);
    e.insert("data".into(), data.into());
    let mut out = vec![Value::from(e)];
    if let Some(dest) = parts.file_result {
        out.push(json!({ "name": "rename destination", "file": dest }));
    }
    out
}

/// `resources`: what the event acted on (file, remote or listening endpoint, launched or
/// exiting process, name resolved, else the nameserver) and the container and pod it happened
/// in.
fn resources(parts: &Parts) -> Vec<Value> {
    let mut out = Vec::new();
    let endpoint = match parts.kind {
        EventKind::Connect | EventKind::Send | EventKind::Listen => parts.dst_endpoint.as_ref(),
        EventKind::Accept | EventKind::Bind | EventKind::Dns => parts.src_endpoint.as_ref(),
        EventKind::Exec
        | EventKind::Fork
        | EventKind::Exit
        | EventKind::Open
        | EventKind::Unlink
        | EventKind::Rename
        | EventKind::Chmod
        | EventKind::Memfd
        | EventKind::Link
        | EventKind::Symlink
        | EventKind::Truncate => None,
    };
    if let Some(f) = &parts.file {
        let name = f.get("path").or_else(|| f.get("name")).cloned();
        out.push(json!({ "type": "File", "name": name, "role_id": 1, "role": "Target" }));
    } else if let Some(p) = &parts.process {
        let name = p
            .pointer("/file/path")
            .or_else(|| p.get("name"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("pid {}", p["pid"]), str::to_owned);
        let uid = p["pid"].to_string();
        out.push(
            json!({ "type": "Process", "name": name, "uid": uid, "role_id": 1, "role": "Target" }),
        );
    } else if let Some(name) = parts.query.as_ref().and_then(|q| q.get("hostname")) {
        out.push(json!({
            "type": "Domain Name", "name": name, "hostname": name, "role_id": 1, "role": "Target",
        }));
    } else if let Some(ep) = endpoint {
        let mut r = json!({ "type": "Network Endpoint", "role_id": 1, "role": "Target" });
        let ip = ep.get("ip").and_then(Value::as_str);
        let port = ep.get("port").and_then(Value::as_u64);
        let name = match (ip, port) {
            (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{port}"),
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            (Some(ip), None) => ip.to_owned(),
            (None, _) => ep
                .get("name")
                .or_else(|| ep.get("hostname"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        r["name"] = name.into();
        for key in ["ip", "hostname"] {
            if let Some(v) = ep.get(key) {
                r[key] = v.clone();
            }
        }
        out.push(r);
    }
    let container = parts.actor.pointer("/process/container");
    if let Some(uid) = container.and_then(|c| c.get("uid")) {
        out.push(json!({ "type": "Container", "uid": uid, "role_id": 4, "role": "Related" }));
    }
    let pod = container
        .and_then(|c| c.get("pod_uuid"))
        .or_else(|| parts.unmapped.get("pod_uid"));
    if let Some(pod) = pod {
        out.push(json!({ "type": "Kubernetes Pod", "uid": pod, "role_id": 4, "role": "Related" }));
    }
    out
}

/// `observables`: the finding's host, process, file and address values, each once.
fn observables(finding: &Value) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (name, type_id) in OBSERVABLES {
        let pointer = format!(
            "/{}",
            name.replace("evidences.", "evidences.0.").replace('.', "/")
        );
        let value = match finding.pointer(&pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        if seen.contains(&(type_id, value.clone())) {
            continue;
        }
        seen.push((type_id, value.clone()));
        out.push(json!({ "name": name, "type_id": type_id, "value": value }));
    }
    out
}
