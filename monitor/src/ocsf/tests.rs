//! Conversion tests. Every converted object is validated against the official OCSF JSON schema
//! of its class and declared profiles, generated at test time by the `ocsf-json-schema` Python
//! package (it ships the schema.ocsf.io exports of OCSF 1.0-1.8 and turns them into JSON Schema
//! 2020-12). Without the package the validation says so loudly, and fails under `CI=true`.

use std::{
    collections::BTreeSet,
    io::Write as _,
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use super::{OCSF_VERSION, OcsfError, native_to_ocsf, severity_id};
use crate::{alert::Alert, sensor::Event};

/// The native event `native` read as the agent's typed event, converted (the samples are the
/// JSON the agent writes; reading them back is what the delivery spool does too).
fn event_to_ocsf(native: &Value) -> Result<Value, OcsfError> {
    let ev: Event = serde_json::from_value(native.clone())?;
    super::event_to_ocsf(&ev)
}

/// The native alert `native`, typed, converted.
fn alert_to_ocsf(native: &Value) -> Result<Value, OcsfError> {
    let alert: Alert = serde_json::from_value(native.clone())?;
    super::alert_to_ocsf(&alert)
}

/// Any native record, typed, converted.
fn to_ocsf(native: &Value) -> Result<Option<Value>, OcsfError> {
    native_to_ocsf(native)
}

/// Every event kind the agent writes.
const KINDS: [&str; 17] = [
    "exec", "fork", "exit", "open", "unlink", "rename", "chmod", "memfd", "connect", "send",
    "accept", "bind", "listen", "dns", "link", "symlink", "truncate",
];

/// How to install the schema package the validation needs.
const PIP_INSTALL: &str = "python3 -m pip install ocsf-json-schema==1.2.0";

/// Prints the JSON Schema of each requested `[class_uid, [profiles]]`, in order. Exits 3 when
/// the package (or the OCSF version) is not available.
const SCHEMA_SCRIPT: &str = r#"
import json, sys
try:
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions
except ImportError as e:
    print(f"the Python package ocsf-json-schema is not installed ({e})", file=sys.stderr)
    sys.exit(3)
req = json.load(sys.stdin)
versions = get_packaged_versions()
if req["version"] not in versions:
    print(f"ocsf-json-schema does not ship OCSF {req['version']} (it has {sorted(versions)})", file=sys.stderr)
    sys.exit(3)
schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(req["version"]))
out = [schema.get_class_schema(schema.lookup_class_name_from_uid(uid), profiles)
       for uid, profiles in req["classes"]]
json.dump(out, sys.stdout)
"#;

const TIME: &str = "2026-05-01T12:00:00.123456789Z";
const TIME_MS: i64 = 1_777_636_800_123;
const CONTAINER: &str = "4f1c2a7d9e0b3c5a6d8f1e2b4c6a8d0f2e4b6c8a0d2f4e6b8c0a2d4f6e8b0c2a";
const POD: &str = "0b6f3d52-8c1e-4f7a-9d2b-3e5c7a9b1d4f";

/// A native event: the common fields plus `body`.
fn event(kind: &str, body: Value) -> Value {
    let mut ev = json!({
        "kind": kind, "time": TIME, "pid": 4242, "tid": 4243, "ppid": 4000, "uid": 1000,
        "gid": 1000, "comm": "python3", "exe": "/usr/bin/python3.12", "cgroup_id": 9876,
        "container_id": null, "pod_uid": null,
    });
    for (k, v) in body.as_object().expect("body is an object") {
        ev[k] = v.clone();
    }
    ev
}

/// The same event inside a Kubernetes container.
fn in_pod(mut ev: Value) -> Value {
    ev["container_id"] = CONTAINER.into();
    ev["pod_uid"] = POD.into();
    ev["container"] = json!({"id": CONTAINER, "name": "server",
        "image": "ghcr.io/berriai/litellm:main", "image_id": "sha256:0123"});
    ev["pod"] = json!({"uid": POD, "name": "litellm-0", "namespace": "ai",
        "labels": {"app": "litellm"}});
    ev
}

fn net(kind: &str, result: i64, local: (&str, u16), remote: Option<(&str, u16)>) -> Value {
    let family = if local.0.contains(':') {
        "inet6"
    } else {
        "inet"
    };
    event(
        kind,
        json!({
            "family": family, "protocol": "tcp", "local_addr": local.0, "local_port": local.1,
            "remote_addr": remote.map(|r| r.0), "remote_port": remote.map(|r| r.1), "path": null,
            "result": result, "fd": 7,
        }),
    )
}

/// One native event of every kind, some in several variants.
fn native_events() -> Vec<(&'static str, Value)> {
    vec![
        (
            "exec",
            in_pod(event(
                "exec",
                json!({
                    "filename": "/usr/bin/python3", "argv": ["python3", "-c", "print('hi there')"],
                    "cwd": "/srv/app", "euid": 0, "egid": 0, "argv_truncated": true,
                }),
            )),
        ),
        ("fork", event("fork", json!({ "child_pid": 4300 }))),
        (
            "exit",
            event("exit", json!({ "exit_code": 137, "signal": 9 })),
        ),
        (
            "open read",
            event(
                "open",
                json!({ "path": "/root/.ssh/id_ed25519", "access": "read", "created": false,
                        "flags": 0, "result": 0, "fd": 5, "repeats": 3 }),
            ),
        ),
        (
            "open create",
            in_pod(event(
                "open",
                json!({ "path": "/tmp/payload", "access": "write", "created": true,
                        "flags": 577, "result": 0, "fd": 6, "path_truncated": true }),
            )),
        ),
        (
            "open failed",
            event(
                "open",
                json!({ "path": "/etc/shadow", "access": "read", "created": false, "flags": 0,
                        "result": -13 }),
            ),
        ),
        (
            "unlink",
            event(
                "unlink",
                json!({ "path": "/tmp/payload", "flags": 0, "result": 0 }),
            ),
        ),
        (
            "rename",
            event(
                "rename",
                json!({ "path": "/tmp/a", "new_path": "/usr/local/bin/a", "flags": 0, "result": 0 }),
            ),
        ),
        (
            "link",
            event(
                "link",
                json!({ "path": "/tmp/payload", "new_path": "/home/u/.local/bin/tool", "flags": 0,
                        "result": 0 }),
            ),
        ),
        (
            "symlink",
            event(
                "symlink",
                json!({ "path": "../payload", "new_path": "/tmp/x/run", "flags": 0, "result": 0 }),
            ),
        ),
        (
            "truncate",
            event(
                "truncate",
                json!({ "path": "/root/.bash_history", "length": 0, "flags": 0, "result": 0 }),
            ),
        ),
        (
            "chmod",
            event(
                "chmod",
                json!({ "path": "/tmp/payload", "mode": 493, "flags": 0, "result": 0 }),
            ),
        ),
        (
            "memfd",
            event(
                "memfd",
                json!({ "name": "jit", "flags": 1, "result": 0, "fd": 9 }),
            ),
        ),
        (
            "connect",
            net(
                "connect",
                0,
                ("10.0.0.5", 51000),
                Some(("93.184.216.34", 443)),
            ),
        ),
        (
            "connect refused",
            net(
                "connect",
                -111,
                ("127.0.0.1", 51001),
                Some(("127.0.0.1", 9)),
            ),
        ),
        (
            "connect in progress v6",
            in_pod(net(
                "connect",
                -115,
                ("2001:db8::5", 51002),
                Some(("2001:db8::1", 443)),
            )),
        ),
        (
            "connect v4-mapped",
            net(
                "connect",
                0,
                ("::ffff:10.0.0.5", 51003),
                Some(("::ffff:10.0.0.9", 5432)),
            ),
        ),
        (
            "connect no address",
            net("connect", -101, ("0.0.0.0", 0), None),
        ),
        (
            "connect unix",
            event(
                "connect",
                json!({ "family": "unix", "protocol": "tcp", "local_addr": null,
                        "local_port": null, "remote_addr": null, "remote_port": null,
                        "path": "/run/docker.sock", "result": 0, "fd": 4 }),
            ),
        ),
        ("send", {
            let mut ev = net("send", 64, ("10.0.0.5", 40000), Some(("10.0.0.2", 53)));
            ev["protocol"] = "udp".into();
            ev
        }),
        (
            "accept",
            net("accept", 8, ("0.0.0.0", 4000), Some(("10.0.0.7", 60000))),
        ),
        ("bind", net("bind", 0, ("0.0.0.0", 4000), None)),
        ("listen", net("listen", 0, ("::", 4000), None)),
        ("connect profiled", {
            let mut ev = net("connect", 0, ("10.0.0.5", 51004), Some(("10.0.0.9", 443)));
            ev["profile"] = "litellm-proxy".into();
            ev["phase"] = "startup".into();
            ev
        }),
        (
            "dns",
            in_pod(dns(
                ("inet", "udp", "10.0.0.2"),
                json!({
                    "query": "api.openai.com", "query_type": "A", "rcode": "NOERROR",
                    "answers": ["162.159.140.245", "172.66.0.243"],
                    "cnames": ["api.openai.com.cdn.cloudflare.net"], "ttl": 60,
                }),
            )),
        ),
        (
            "dns nxdomain",
            dns(
                ("inet6", "tcp", "2001:db8::53"),
                json!({
                    "query": "missing.example.com", "query_type": "AAAA", "rcode": "NXDOMAIN",
                    "answers": [], "cnames": [], "ttl": null, "truncated": true,
                }),
            ),
        ),
        (
            "dns malformed",
            dns(
                ("inet", "udp", "127.0.0.53"),
                json!({
                    "query": null, "query_type": null, "rcode": null, "answers": [],
                    "cnames": [], "ttl": null, "malformed": true,
                }),
            ),
        ),
    ]
}

/// A native `dns` event: an answer from the nameserver `(family, protocol, address)` port 53.
fn dns(server: (&str, &str, &str), body: Value) -> Value {
    let mut ev = event(
        "dns",
        json!({
            "family": server.0, "protocol": server.1, "remote_addr": server.2,
            "remote_port": 53,
        }),
    );
    for (k, v) in body.as_object().expect("body is an object") {
        ev[k] = v.clone();
    }
    ev
}

/// A native alert on `ev`.
fn alert(ev: Value, rule: &str, severity: &str, mitre: &[&str]) -> Value {
    json!({
        "kind": "alert",
        "id": "3f2a9c0d4b5e6f708192a3b4c5d6e7f8",
        "time": TIME,
        "rule": rule,
        "severity": severity,
        "mitre": mitre,
        "profile": "litellm-proxy",
        "message": "Reads SSH keys, cloud credentials or tokens",
        "event": ev,
        "ancestors": [
            { "pid": 4000, "exe": "/usr/bin/bash", "argv": ["bash", "-c", "python3 x.py"] },
            { "pid": 1, "exe": "/sbin/init", "argv": ["/sbin/init"] },
        ],
    })
}

fn native_alerts() -> Vec<(&'static str, Value)> {
    let events = native_events();
    let pick = |name: &str| {
        events
            .iter()
            .find(|(n, _)| *n == name)
            .expect(name)
            .1
            .clone()
    };
    vec![
        (
            "alert open",
            alert(
                pick("open read"),
                "credential-read",
                "high",
                &["T1552.001", "T1552.004"],
            ),
        ),
        (
            "alert exec",
            alert(pick("exec"), "profile.exec", "critical", &["T1059"]),
        ),
        (
            "alert connect",
            alert(pick("connect"), "profile.connect", "medium", &[]),
        ),
        (
            "alert accept",
            alert(pick("accept"), "profile.accept", "low", &["T1190"]),
        ),
        (
            "alert listen",
            alert(pick("listen"), "profile.listen", "low", &[]),
        ),
        (
            "alert rename",
            alert(pick("rename"), "write-exec", "high", &["T1105"]),
        ),
        (
            "alert fork",
            alert(pick("fork"), "fork-burst", "medium", &["T1499"]),
        ),
        (
            "alert memfd",
            alert(pick("memfd"), "fileless", "urgent", &["T1620"]),
        ),
        ("alert connect blocked", {
            let mut ev = pick("connect");
            ev["result"] = (-1).into();
            ev["blocked"] = true.into();
            let mut a = alert(ev, "profile.connect", "high", &["T1041"]);
            a["action"] = "blocked".into();
            a
        }),
        ("alert connect would_block", {
            let mut a = alert(pick("connect"), "profile.connect", "high", &["T1041"]);
            a["action"] = "would_block".into();
            a
        }),
        ("alert sigma", {
            let mut a = alert(
                pick("exec"),
                "sigma:f4bbd493-b796-416e-bbf2-121235348529",
                "high",
                &["T1059.004"],
            );
            a["sigma"] = json!({
                "id": "f4bbd493-b796-416e-bbf2-121235348529",
                "title": "Linux Base64 Encoded Pipe to Shell",
                "level": "high",
                "status": "test",
                "references": ["https://github.com/arget13/DDexec"],
                "author": "pH-T (Nextron Systems)",
            });
            a
        }),
        ("alert dns", {
            let mut ev = pick("dns");
            ev["profile"] = "litellm-proxy".into();
            ev["phase"] = "serving".into();
            let mut a = alert(ev, "dns-tunnel", "medium", &["T1071.004"]);
            a["phase"] = "serving".into();
            a
        }),
    ]
}

/// Every native sample converted, labelled.
fn converted() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, native) in native_events() {
        let o = event_to_ocsf(&native).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name.to_owned(), o));
    }
    for (name, native) in native_alerts() {
        let o = alert_to_ocsf(&native).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name.to_owned(), o));
    }
    for (name, native) in [("repeats", repeats()), ("agent alert", agent_alert())] {
        let o = to_ocsf(&native)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .expect("has a class");
        out.push((name.to_owned(), o));
    }
    out
}

/// A native `alert_repeats` record of the first sample alert.
fn repeats() -> Value {
    json!({
        "kind": "alert_repeats", "id": "77aa9c0d4b5e6f708192a3b4c5d6e7f8", "time": TIME,
        "rule": "credential-read", "severity": "high", "profile": "litellm-proxy",
        "key": "/root/.ssh/id_ed25519", "alert_id": "3f2a9c0d4b5e6f708192a3b4c5d6e7f8",
        "count": 41,
    })
}

/// An alert the agent raises about itself: no triggering event, extra fields.
fn agent_alert() -> Value {
    json!({
        "kind": "alert", "id": "0c0c9c0d4b5e6f708192a3b4c5d6e7f8", "time": TIME,
        "rule": "monitor.spool-overflow", "severity": "high", "mitre": ["T1562"],
        "profile": null, "message": "the delivery spool was full: 12 alerts dropped",
        "event": null, "ancestors": [], "dropped": 12, "spool_dir": "/var/lib/monitor/spool",
    })
}

/// The class uid and declared profiles of a converted object.
fn class_and_profiles(o: &Value) -> (u64, Vec<String>) {
    let class = o["class_uid"].as_u64().expect("class_uid");
    let profiles = o["metadata"]["profiles"]
        .as_array()
        .expect("metadata.profiles")
        .iter()
        .map(|p| p.as_str().expect("profile name").to_owned())
        .collect();
    (class, profiles)
}

/// The official schemas for `requests`, or why they are unavailable.
fn official_schemas(requests: &[(u64, Vec<String>)]) -> Result<Vec<Value>, String> {
    let mut child = Command::new("python3")
        .args(["-c", SCHEMA_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let request = json!({ "version": OCSF_VERSION, "classes": requests });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(request.to_string().as_bytes())
        .expect("write the schema request to python3");
    let out = child.wait_with_output().expect("wait for python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(serde_json::from_slice(&out.stdout).expect("schema script prints JSON")),
        Some(3) => Err(stderr.trim().to_owned()),
        _ => panic!("the OCSF schema script failed ({}): {stderr}", out.status),
    }
}

/// The official schemas, or `None` after a loud notice; under `CI=true` a missing package fails.
fn schemas_or_notice(requests: &[(u64, Vec<String>)]) -> Option<Vec<Value>> {
    match official_schemas(requests) {
        Ok(schemas) => Some(schemas),
        Err(why) => {
            crate::testutil::skip_or_fail(&format!(
                "OCSF schema validation not run: {why}; install it with: {PIP_INSTALL}"
            ));
            None
        }
    }
}

/// Validates every object against the official schema of its class and declared profiles.
/// Returns the errors per object label; `None` when the schemas are unavailable.
fn schema_errors(objects: &[(String, Value)]) -> Option<Vec<(String, Vec<String>)>> {
    let requests: Vec<(u64, Vec<String>)> = objects
        .iter()
        .map(|(_, o)| class_and_profiles(o))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let schemas = schemas_or_notice(&requests)?;
    let validators: Vec<_> = requests
        .iter()
        .zip(&schemas)
        .map(|((class, profiles), schema)| {
            // Guard against a vacuous schema: it must pin this class and forbid unknown keys.
            assert_eq!(schema["properties"]["class_uid"]["const"], json!(class));
            assert_eq!(schema["additionalProperties"], json!(false));
            let v = jsonschema::validator_for(schema)
                .unwrap_or_else(|e| panic!("schema of class {class} {profiles:?}: {e}"));
            ((*class, profiles.clone()), v)
        })
        .collect();
    let mut out = Vec::new();
    for (label, o) in objects {
        let key = class_and_profiles(o);
        let (_, validator) = validators
            .iter()
            .find(|(k, _)| *k == key)
            .expect("requested");
        let errors = validator
            .iter_errors(o)
            .map(|e| format!("{} (at `{}`)", e, e.instance_path()))
            .collect();
        out.push((label.clone(), errors));
    }
    Some(out)
}

#[test]
fn every_kind_and_alerts_validate_against_the_official_schema() {
    let objects = converted();
    let kinds: BTreeSet<String> = native_events()
        .iter()
        .map(|(_, ev)| ev["kind"].as_str().expect("kind").to_owned())
        .collect();
    let mapped: BTreeSet<String> = KINDS.iter().map(|k| (*k).to_owned()).collect();
    assert_eq!(kinds, mapped, "a sample of every mapped kind");
    for (label, o) in &objects {
        let class = o["class_uid"].as_u64().expect("class_uid");
        let activity = o["activity_id"].as_u64().expect("activity_id");
        assert_eq!(
            o["type_uid"],
            json!(class * 100 + activity),
            "{label}: type_uid"
        );
        assert_eq!(o["metadata"]["version"], OCSF_VERSION, "{label}");
        assert_eq!(o["time"], TIME_MS, "{label}: time");
    }
    let Some(results) = schema_errors(&objects) else {
        return;
    };
    let failures: Vec<String> = results
        .into_iter()
        .filter(|(_, errors)| !errors.is_empty())
        .map(|(label, errors)| format!("{label}:\n  {}", errors.join("\n  ")))
        .collect();
    assert!(
        failures.is_empty(),
        "objects that do not validate against OCSF {OCSF_VERSION}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_schema_check_rejects_invalid_objects() {
    let ev = event_to_ocsf(&native_events()[3].1).expect("open converts");
    let mut missing_required = ev.clone();
    missing_required["file"]
        .as_object_mut()
        .expect("file")
        .remove("type_id");
    let mut unknown_key = ev.clone();
    unknown_key["actor"]["process"]["colour"] = "red".into();
    let mut undeclared_profile = alert_to_ocsf(&native_alerts()[0].1).expect("alert converts");
    undeclared_profile["metadata"]["profiles"] = json!(["host", "container", "linux/linux_users"]);
    let objects = vec![
        ("missing file.type_id".to_owned(), missing_required),
        ("unknown attribute".to_owned(), unknown_key),
        (
            "attacks without security_control".to_owned(),
            undeclared_profile,
        ),
    ];
    let Some(results) = schema_errors(&objects) else {
        return;
    };
    for (label, errors) in results {
        assert!(!errors.is_empty(), "{label}: the schema should reject it");
    }
}

#[test]
fn severity_mapping() {
    for (word, id) in [
        ("low", 2),
        ("medium", 3),
        ("high", 4),
        ("critical", 5),
        ("High", 4),
        ("urgent", 99),
        ("", 99),
    ] {
        assert_eq!(severity_id(word), id, "{word:?}");
    }
    let ev = native_events()[3].1.clone();
    for (word, id, caption) in [
        ("low", 2, "Low"),
        ("medium", 3, "Medium"),
        ("high", 4, "High"),
        ("critical", 5, "Critical"),
        ("urgent", 99, "urgent"),
    ] {
        let f = alert_to_ocsf(&alert(ev.clone(), "r", word, &[])).expect("converts");
        assert_eq!(f["severity_id"], id, "{word}");
        assert_eq!(f["severity"], caption, "{word}");
    }
    let plain = event_to_ocsf(&ev).expect("converts");
    assert_eq!(plain["severity_id"], 1, "events are informational");
}

#[test]
fn records_that_are_not_the_agent_s_are_clear_errors() {
    let not_a_record = |r: Result<Value, OcsfError>, what: &str| match r {
        Err(OcsfError::NotARecord(e)) => e.to_string(),
        other => panic!("{what}: expected NotARecord, got {other:?}"),
    };
    let stats = json!({ "kind": "agent_stats", "time": TIME });
    not_a_record(event_to_ocsf(&stats), "agent_stats as an event");

    let a = native_alerts()[0].1.clone();
    not_a_record(event_to_ocsf(&a), "an alert as an event");
    not_a_record(alert_to_ocsf(&native_events()[0].1), "an event as an alert");

    let mut bad_inner = a.clone();
    bad_inner["event"]["kind"] = "ptrace".into();
    let msg = not_a_record(alert_to_ocsf(&bad_inner), "unknown triggering kind");
    assert!(msg.contains("ptrace"), "{msg}");

    // What the types allow and OCSF requires: a file event's path.
    let mut no_path = a.clone();
    no_path["event"]
        .as_object_mut()
        .expect("event")
        .remove("path");
    let e = alert_to_ocsf(&no_path).expect_err("open without path");
    assert!(
        matches!(
            e,
            OcsfError::MissingField {
                kind: "open",
                field: "path"
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "`open` record lacks `path`, which OCSF requires"
    );

    let mut bad_port = sample("connect");
    bad_port["remote_port"] = 70000.into();
    let msg = not_a_record(event_to_ocsf(&bad_port), "port out of range");
    assert!(msg.contains("70000"), "{msg}");

    let mut bad_time = native_events()[1].1.clone();
    bad_time["time"] = "yesterday".into();
    let msg = not_a_record(event_to_ocsf(&bad_time), "bad time");
    assert!(msg.contains("not an RFC 3339 time"), "{msg}");

    not_a_record(event_to_ocsf(&json!([1])), "an array");
    not_a_record(event_to_ocsf(&json!({ "time": TIME })), "no kind");
}

/// The native sample event `name`.
fn sample(name: &str) -> Value {
    native_events()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect(name)
        .1
}

fn converted_event(name: &str) -> Value {
    event_to_ocsf(&sample(name)).expect(name)
}

#[test]
fn process_activity_mapping() {
    let exec = converted_event("exec");
    assert_eq!(exec["class_uid"], 1007);
    assert_eq!(
        (exec["activity_id"].clone(), exec["launch_type_id"].clone()),
        (json!(1), json!(3))
    );
    let p = &exec["process"];
    assert_eq!(p["pid"], 4242);
    assert_eq!(p["file"]["path"], "/usr/bin/python3.12");
    assert_eq!(p["file"]["name"], "python3.12");
    assert_eq!(p["cmd_line"], r"python3 -c 'print('\''hi there'\'')'");
    assert_eq!(p["working_directory"], "/srv/app");
    assert_eq!(p["user"]["uid"], "1000");
    assert_eq!(p["euid"], 0);
    assert_eq!(p["parent_process"]["pid"], 4000);
    assert_eq!(p["container"]["uid"], CONTAINER);
    assert_eq!(p["container"]["pod_uuid"], POD);
    assert_eq!(p["container"]["name"], "server");
    assert_eq!(
        p["container"]["image"],
        json!({"name": "ghcr.io/berriai/litellm:main", "uid": "sha256:0123"})
    );
    assert_eq!(
        exec["unmapped"]["pod"],
        json!({"name": "litellm-0", "namespace": "ai", "labels": {"app": "litellm"}})
    );
    assert_eq!(exec["actor"]["process"]["pid"], 4242);
    assert!(
        exec["actor"]["process"].get("file").is_none(),
        "pre-exec image unknown"
    );
    assert_eq!(exec["unmapped"]["filename"], "/usr/bin/python3");
    assert_eq!(exec["unmapped"]["argv_truncated"], true);
    assert_eq!(exec["unmapped"]["cgroup_id"], 9876);
    assert!(exec["device"]["hostname"].is_string());

    let fork = converted_event("fork");
    assert_eq!(
        (fork["activity_id"].clone(), fork["launch_type_id"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(fork["process"]["pid"], 4300);
    assert_eq!(fork["process"]["parent_process"]["pid"], 4242);
    assert_eq!(fork["actor"]["process"]["pid"], 4242);

    let exit = converted_event("exit");
    assert_eq!(exit["activity_id"], 2);
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["unmapped"]["signal"], 9);
    assert_eq!(exit["process"]["pid"], exit["actor"]["process"]["pid"]);
}

#[test]
fn file_activity_mapping() {
    let cases = [
        ("open read", 14),
        ("open create", 1),
        ("open failed", 14),
        ("unlink", 4),
        ("rename", 5),
        ("chmod", 6),
        ("memfd", 1),
        ("link", 1),
        ("symlink", 1),
        ("truncate", 3),
    ];
    for (name, activity) in cases {
        let o = converted_event(name);
        assert_eq!(o["class_uid"], 1001, "{name}");
        assert_eq!(o["activity_id"], activity, "{name}");
        assert_eq!(o["actor"]["process"]["pid"], 4242, "{name}");
    }
    let read = converted_event("open read");
    assert_eq!(read["file"]["path"], "/root/.ssh/id_ed25519");
    assert_eq!(read["file"]["name"], "id_ed25519");
    assert_eq!(read["file"]["parent_folder"], "/root/.ssh");
    assert_eq!(read["access_mask"], 0);
    assert_eq!(read["unmapped"]["access"], "read");
    assert_eq!(read["unmapped"]["repeats"], 3);
    assert_eq!(read["status_id"], 1);
    let failed = converted_event("open failed");
    assert_eq!(failed["status_id"], 2);
    assert_eq!(failed["status_code"], "13");
    assert!(
        failed["status_detail"]
            .as_str()
            .expect("detail")
            .contains("ermission denied")
    );
    let rename = converted_event("rename");
    assert_eq!(rename["file"]["path"], "/tmp/a");
    assert_eq!(rename["file_result"]["path"], "/usr/local/bin/a");
    assert_eq!(converted_event("chmod")["unmapped"]["mode"], "0755");
    let memfd = converted_event("memfd");
    assert_eq!(memfd["file"]["name"], "memfd:jit");
    assert!(memfd["file"].get("path").is_none());
    let link = converted_event("link");
    assert_eq!(link["file"]["path"], "/home/u/.local/bin/tool");
    assert_eq!(link["unmapped"]["target"], "/tmp/payload");
    let symlink = converted_event("symlink");
    assert_eq!(
        (
            symlink["file"]["path"].clone(),
            symlink["file"]["type_id"].clone()
        ),
        (json!("/tmp/x/run"), json!(7))
    );
    assert_eq!(symlink["unmapped"]["target"], "../payload");
    let truncate = converted_event("truncate");
    assert_eq!(truncate["file"]["path"], "/root/.bash_history");
    assert_eq!(truncate["unmapped"]["length"], 0);
}

#[test]
fn network_activity_mapping() {
    let connect = converted_event("connect");
    assert_eq!(connect["class_uid"], 4001);
    assert_eq!(connect["activity_id"], 1);
    assert_eq!(connect["src_endpoint"]["ip"], "10.0.0.5");
    assert_eq!(connect["src_endpoint"]["port"], 51000);
    assert_eq!(connect["dst_endpoint"]["ip"], "93.184.216.34");
    assert_eq!(connect["dst_endpoint"]["port"], 443);
    assert_eq!(connect["connection_info"]["direction_id"], 2);
    assert_eq!(connect["connection_info"]["protocol_num"], 6);
    assert_eq!(connect["connection_info"]["protocol_ver_id"], 4);

    let refused = converted_event("connect refused");
    assert_eq!(
        (refused["activity_id"].clone(), refused["status_id"].clone()),
        (json!(5), json!(2))
    );
    assert_eq!(refused["connection_info"]["boundary_id"], 1);
    let pending = converted_event("connect in progress v6");
    assert_eq!(
        (pending["activity_id"].clone(), pending["status_id"].clone()),
        (json!(1), json!(99))
    );
    assert_eq!(pending["connection_info"]["protocol_ver_id"], 6);
    let mapped = converted_event("connect v4-mapped");
    assert_eq!(mapped["dst_endpoint"]["ip"], "10.0.0.9");
    assert_eq!(mapped["connection_info"]["protocol_ver_id"], 4);
    let failed = converted_event("connect no address");
    assert_eq!(failed["activity_id"], 4);
    assert!(failed.get("dst_endpoint").is_none());
    let unix = converted_event("connect unix");
    assert_eq!(unix["dst_endpoint"]["name"], "/run/docker.sock");
    assert!(unix["connection_info"].get("protocol_name").is_none());
    assert_eq!(unix["unmapped"]["family"], "unix");

    let send = converted_event("send");
    assert_eq!(send["activity_id"], 6);
    assert_eq!(send["connection_info"]["protocol_name"], "udp");
    let accept = converted_event("accept");
    assert_eq!(accept["activity_id"], 1);
    assert_eq!(accept["src_endpoint"]["ip"], "10.0.0.7");
    assert_eq!(accept["dst_endpoint"]["port"], 4000);
    assert_eq!(accept["connection_info"]["direction_id"], 1);
    let listen = converted_event("listen");
    assert_eq!(listen["activity_id"], 7);
    assert_eq!(listen["dst_endpoint"]["ip"], "::");
    let bind = converted_event("bind");
    assert_eq!(
        (bind["activity_id"].clone(), bind["activity_name"].clone()),
        (json!(99), json!("Bind"))
    );
    assert_eq!(bind["is_src_dst_assignment_known"], false);
}

#[test]
fn dns_activity_mapping() {
    let dns = converted_event("dns");
    assert_eq!(
        (dns["class_uid"].clone(), dns["category_uid"].clone()),
        (json!(4003), json!(4))
    );
    assert_eq!(
        (dns["activity_id"].clone(), dns["activity_name"].clone()),
        (json!(2), json!("Response"))
    );
    assert_eq!(dns["type_uid"], 400_302);
    assert_eq!(
        dns["query"],
        json!({ "hostname": "api.openai.com", "type": "A", "class": "IN" })
    );
    assert_eq!(
        dns["answers"],
        json!([
            { "rdata": "api.openai.com.cdn.cloudflare.net", "type": "CNAME", "class": "IN" },
            { "rdata": "162.159.140.245", "type": "A", "class": "IN", "ttl": 60 },
            { "rdata": "172.66.0.243", "type": "A", "class": "IN", "ttl": 60 },
        ])
    );
    assert_eq!(
        (dns["rcode_id"].clone(), dns["rcode"].clone()),
        (json!(0), json!("NoError"))
    );
    assert_eq!(dns["status_id"], 1);
    assert_eq!(dns["response_time"], TIME_MS);
    assert_eq!(dns["src_endpoint"], json!({ "ip": "10.0.0.2", "port": 53 }));
    assert!(dns["dst_endpoint"]["hostname"].is_string());
    assert!(dns["dst_endpoint"].get("ip").is_none());
    let conn = &dns["connection_info"];
    assert_eq!(
        (conn["direction_id"].clone(), conn["direction"].clone()),
        (json!(1), json!("Inbound"))
    );
    assert_eq!(
        (conn["protocol_name"].clone(), conn["protocol_num"].clone()),
        (json!("udp"), json!(17))
    );
    assert_eq!(conn["protocol_ver_id"], 4);
    assert!(conn.get("boundary_id").is_none());
    assert_eq!(dns["actor"]["process"]["pid"], 4242);
    assert_eq!(dns["actor"]["process"]["container"]["uid"], CONTAINER);
    assert_eq!(dns["unmapped"]["family"], "inet");
    assert!(dns["unmapped"].get("malformed").is_none());

    let nx = converted_event("dns nxdomain");
    assert_eq!(
        nx["query"],
        json!({ "hostname": "missing.example.com", "type": "AAAA", "class": "IN" })
    );
    assert_eq!(
        (nx["rcode_id"].clone(), nx["rcode"].clone()),
        (json!(3), json!("NXDomain"))
    );
    assert_eq!(nx["answers"], json!([]));
    assert_eq!(
        (nx["status_id"].clone(), nx["status_code"].clone()),
        (json!(2), json!("NXDOMAIN"))
    );
    assert_eq!(nx["src_endpoint"]["ip"], "2001:db8::53");
    assert_eq!(nx["connection_info"]["protocol_num"], 6);
    assert_eq!(nx["connection_info"]["protocol_ver_id"], 6);
    assert_eq!(nx["unmapped"]["truncated"], true);

    let bad = converted_event("dns malformed");
    assert_eq!(bad["class_uid"], 4003);
    assert_eq!(bad["activity_id"], 2);
    for absent in ["query", "answers", "rcode_id", "rcode"] {
        assert!(bad.get(absent).is_none(), "{absent}: {bad}");
    }
    assert_eq!(bad["status_id"], 0);
    assert_eq!(bad["unmapped"]["malformed"], true);
    assert_eq!(bad["src_endpoint"]["ip"], "127.0.0.53");
    assert_eq!(bad["connection_info"]["boundary_id"], 1);

    let mut other = sample("dns nxdomain");
    other["rcode"] = "RCODE4000".into();
    other["answers"] = json!(["::ffff:192.0.2.1"]);
    other["ttl"] = 5.into();
    let o = event_to_ocsf(&other).expect("converts");
    assert_eq!(
        (o["rcode_id"].clone(), o["rcode"].clone()),
        (json!(25), json!("Reserved"))
    );
    assert_eq!(o["unmapped"]["rcode"], "RCODE4000");
    assert_eq!(
        o["answers"],
        json!([{ "rdata": "::ffff:192.0.2.1", "type": "AAAA", "class": "IN", "ttl": 5 }])
    );
    other["answers"] = json!(["not an address"]);
    let e = event_to_ocsf(&other).expect_err("bad answer");
    assert!(matches!(e, OcsfError::NotARecord(_)), "{e}");
}

#[test]
fn dns_alerts_carry_the_answer_as_evidence() {
    let (_, native) = native_alerts()
        .into_iter()
        .find(|(n, _)| *n == "alert dns")
        .expect("sample");
    let f = alert_to_ocsf(&native).expect("converts");
    assert_eq!(f["class_uid"], 2004);
    let evidence = &f["evidences"][0];
    assert_eq!(evidence["name"], "dns");
    assert_eq!(evidence["query"]["hostname"], "api.openai.com");
    assert_eq!(evidence["src_endpoint"]["ip"], "10.0.0.2");
    assert_eq!(evidence["data"]["type_uid"], 400_302);
    assert_eq!(evidence["data"]["rcode_id"], 0);
    assert_eq!(evidence["data"]["answers"][1]["rdata"], "162.159.140.245");
    assert_eq!(
        f["resources"][0],
        json!({ "type": "Domain Name", "name": "api.openai.com", "hostname": "api.openai.com",
                "role_id": 1, "role": "Target" })
    );
    let observed: Vec<(&str, &str)> = f["observables"]
        .as_array()
        .expect("observables")
        .iter()
        .map(|o| {
            let name = o["name"].as_str().expect("name");
            (name, o["value"].as_str().expect("value"))
        })
        .collect();
    assert!(
        observed.contains(&("evidences.query.hostname", "api.openai.com")),
        "{observed:?}"
    );
}

#[test]
fn profile_and_phase_are_carried_in_unmapped() {
    let ev = converted_event("connect profiled");
    assert_eq!(ev["unmapped"]["profile"], "litellm-proxy");
    assert_eq!(ev["unmapped"]["phase"], "startup");
    let plain = converted_event("connect");
    assert!(plain["unmapped"].get("profile").is_none());
    assert!(plain["unmapped"].get("phase").is_none());

    let (_, native) = native_alerts()
        .into_iter()
        .find(|(n, _)| *n == "alert dns")
        .expect("sample");
    let f = alert_to_ocsf(&native).expect("converts");
    assert_eq!(f["unmapped"]["profile"], "litellm-proxy");
    assert_eq!(f["unmapped"]["phase"], "serving");

    // A process without a profile: `profile: null`, no `phase`.
    let mut unprofiled = alert(sample("connect"), "profile.connect", "low", &[]);
    unprofiled["profile"] = Value::Null;
    let f = alert_to_ocsf(&unprofiled).expect("converts");
    assert!(f["unmapped"].get("profile").is_none(), "{f}");
    assert!(f["unmapped"].get("phase").is_none(), "{f}");

    let u = to_ocsf(&repeats()).expect("converts").expect("has a class");
    assert_eq!(u["unmapped"]["profile"], "litellm-proxy");
}

#[test]
fn enforcement_actions_map_to_action_and_disposition() {
    let by_name = |name: &str| {
        let (_, native) = native_alerts()
            .into_iter()
            .find(|(n, _)| *n == name)
            .expect("sample");
        alert_to_ocsf(&native).expect("converts")
    };
    let blocked = by_name("alert connect blocked");
    assert_eq!(
        (&blocked["action_id"], &blocked["disposition_id"]),
        (&json!(2), &json!(2)),
        "denied, blocked"
    );
    assert_eq!(blocked["unmapped"]["action"], "blocked");
    let would = by_name("alert connect would_block");
    assert_eq!(
        (&would["action_id"], &would["disposition_id"]),
        (&json!(3), &json!(15)),
        "observed, detected"
    );
    assert_eq!(would["unmapped"]["action"], "would_block");
    let plain = by_name("alert dns");
    assert!(plain["unmapped"].get("action").is_none(), "{plain}");
}

#[test]
fn detection_finding_mapping() {
    let f = alert_to_ocsf(&native_alerts()[0].1).expect("converts");
    assert_eq!(
        (f["class_uid"].clone(), f["category_uid"].clone()),
        (json!(2004), json!(2))
    );
    assert_eq!(f["activity_id"], 1);
    assert_eq!(f["time"], TIME_MS);
    let info = &f["finding_info"];
    assert_eq!(info["uid"], "3f2a9c0d4b5e6f708192a3b4c5d6e7f8");
    assert_eq!(info["title"], "credential-read");
    assert_eq!(info["desc"], "Reads SSH keys, cloud credentials or tokens");
    assert_eq!(info["analytic"]["name"], "credential-read");
    assert_eq!(info["types"], json!(["Detection"]));
    assert_eq!(info["attacks"][0]["technique"]["uid"], "T1552");
    assert_eq!(info["attacks"][0]["sub_technique"]["uid"], "T1552.001");
    assert_eq!(info["attacks"][1]["sub_technique"]["uid"], "T1552.004");
    assert_eq!(f["attacks"], info["attacks"]);
    assert_eq!(f["metadata"]["uid"], info["uid"]);
    assert_eq!(f["metadata"]["product"]["name"], "monitor");
    assert_eq!(f["severity_id"], 4);
    let evidence = &f["evidences"][0];
    assert_eq!(evidence["file"]["path"], "/root/.ssh/id_ed25519");
    assert_eq!(evidence["process"]["pid"], 4242);
    assert_eq!(evidence["data"]["kind"], "open");
    let actor = &f["actor"]["process"];
    assert_eq!(actor["parent_process"]["pid"], 4000);
    assert_eq!(actor["parent_process"]["file"]["path"], "/usr/bin/bash");
    assert_eq!(
        actor["parent_process"]["cmd_line"],
        "bash -c 'python3 x.py'"
    );
    assert_eq!(actor["ancestry"][1]["path"], "/sbin/init");
    assert_eq!(f["resources"][0]["name"], "/root/.ssh/id_ed25519");
    assert_eq!(f["unmapped"]["profile"], "litellm-proxy");
    let observed: Vec<&str> = f["observables"]
        .as_array()
        .expect("observables")
        .iter()
        .map(|o| o["value"].as_str().expect("value"))
        .collect();
    assert!(observed.contains(&"/root/.ssh/id_ed25519"), "{observed:?}");

    let exec = alert_to_ocsf(&native_alerts()[1].1).expect("converts");
    assert_eq!(exec["finding_info"]["types"], json!(["Profile Violation"]));
    assert_eq!(
        exec["finding_info"]["attacks"][0]["technique"]["uid"],
        "T1059"
    );
    assert!(
        exec["finding_info"]["attacks"][0]
            .get("sub_technique")
            .is_none()
    );
    let kinds: Vec<&str> = exec["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["Process", "Container", "Kubernetes Pod"]);
    assert_eq!(exec["evidences"][0]["container"]["uid"], CONTAINER);

    let connect = alert_to_ocsf(&native_alerts()[2].1).expect("converts");
    assert!(
        connect.get("attacks").is_none(),
        "no techniques, no attacks"
    );
    assert_eq!(connect["resources"][0]["name"], "93.184.216.34:443");
    let rename = alert_to_ocsf(&native_alerts()[5].1).expect("converts");
    assert_eq!(rename["evidences"][1]["file"]["path"], "/usr/local/bin/a");
}

#[test]
fn repeats_and_agent_alerts_map_to_findings() {
    let update = to_ocsf(&repeats()).expect("converts").expect("has a class");
    assert_eq!(
        (update["class_uid"].clone(), update["activity_id"].clone()),
        (json!(2004), json!(2))
    );
    assert_eq!(update["type_uid"], 200_402);
    assert_eq!(update["count"], 41);
    assert_eq!(
        update["finding_info"]["uid"],
        "3f2a9c0d4b5e6f708192a3b4c5d6e7f8"
    );
    assert_eq!(
        update["metadata"]["correlation_uid"],
        "3f2a9c0d4b5e6f708192a3b4c5d6e7f8"
    );
    assert_eq!(
        update["metadata"]["uid"],
        "77aa9c0d4b5e6f708192a3b4c5d6e7f8"
    );
    assert_eq!(update["severity_id"], 4);
    assert_eq!(update["unmapped"]["key"], "/root/.ssh/id_ed25519");

    let own = to_ocsf(&agent_alert())
        .expect("converts")
        .expect("has a class");
    assert_eq!(own["activity_id"], 1);
    assert!(own.get("actor").is_none() && own.get("evidences").is_none());
    assert_eq!(own["unmapped"]["dropped"], 12);
    assert_eq!(own["unmapped"]["spool_dir"], "/var/lib/monitor/spool");
    assert!(own["unmapped"].get("kind").is_none(), "{}", own["unmapped"]);
    assert_eq!(
        own["finding_info"]["attacks"][0]["technique"]["uid"],
        "T1562"
    );

    let stats = json!({ "kind": "agent_stats", "time": TIME });
    assert!(to_ocsf(&stats).expect("no error").is_none());
    let mut bad = repeats();
    bad.as_object_mut().expect("object").remove("count");
    let e = to_ocsf(&bad).expect_err("no count");
    assert!(e.to_string().contains("count"), "{e}");
}

#[test]
fn command_lines_split_back_into_argv() {
    use super::objects::cmd_line;
    assert_eq!(cmd_line(&["ls", "-la", "/tmp"]), "ls -la /tmp");
    assert_eq!(cmd_line(&["sh", "-c", "a b"]), "sh -c 'a b'");
    assert_eq!(cmd_line(&["echo", ""]), "echo ''");
    assert_eq!(cmd_line(&["x", "it's"]), r"x 'it'\''s'");
}

#[path = "sigma_tests.rs"]
mod sigma;
