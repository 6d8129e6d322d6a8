//! `--format ocsf`: what the running agent writes validates against the official OCSF JSON
//! schema (from the `ocsf-json-schema` package on PyPI, validated with Python `jsonschema`):
//! process, file and network activity of a real process and the Detection Finding it raises.

use std::{
    io::Write as _,
    net::{Ipv4Addr, TcpListener},
    process::{Command, Stdio},
    time::Duration,
};

use monitor_tests::{
    ReservedPort, TempDir,
    deliver::{ForwardAgent, RULE, read_records, wait_until, write_rules},
    python, skip_or_fail,
};
use serde_json::Value;

/// Reads `[objects]` on stdin, validates each against the schema of its class and declared
/// profiles, prints `[[index, error]...]`. Exits 3 when a package is missing.
const VALIDATE: &str = r#"
import json, sys
try:
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
    import jsonschema
except ImportError as e:
    print(f"missing Python package: {e} (cargo xtask install-prereqs)", file=sys.stderr)
    sys.exit(3)
objects = json.load(sys.stdin)
schemas, errors = {}, []
for i, o in enumerate(objects):
    version = o["metadata"]["version"]
    profiles = tuple(o["metadata"].get("profiles", []))
    key = (version, o["class_uid"], profiles)
    if key not in schemas:
        s = OcsfJsonSchemaEmbedded(get_ocsf_schema(version))
        schemas[key] = s.get_class_schema(s.lookup_class_name_from_uid(o["class_uid"]), list(profiles))
    v = jsonschema.Draft202012Validator(schemas[key])
    for e in v.iter_errors(o):
        errors.append([i, f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]])
json.dump(errors, sys.stdout)
"#;

/// Pid of the acting process of an OCSF object, if it has one.
fn actor_pid(o: &Value) -> Option<u64> {
    o.pointer("/actor/process/pid")
        .or_else(|| o.pointer("/process/pid"))
        .and_then(Value::as_u64)
}

#[test]
fn ocsf_output_of_the_running_agent_validates_against_the_official_schema() {
    let dir = TempDir::new("ocsf-out");
    let watched = dir.join("watched");
    std::fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    let output = dir.join("ocsf.jsonl");
    let args = [
        "--format".to_owned(),
        "ocsf".to_owned(),
        "--events".to_owned(),
    ];
    let agent = match ForwardAgent::launch(&output, &rules, &args) {
        Ok(a) => a,
        Err(e) => {
            skip_or_fail(&format!("cannot run the agent: {e}"));
            return;
        }
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listener");
    let port = listener.local_addr().expect("addr").port();
    // Bound, not listening: a connection to it is refused.
    let refused = ReservedPort::new();
    // Every kind of activity the sensor reports, so each of its OCSF mappings is validated
    // every run: file create (and an alert), open, chmod, rename, unlink, memfd; TCP connect
    // (accepted and refused), bind, listen, accept; a UDP datagram; fork, exec and exit.
    let script = format!(
        "import os, socket, subprocess, sys\n\
         d = sys.argv[1]\n\
         open(d + '/alert-ocsf', 'w').close()\n\
         open(d + '/alert-ocsf').close()\n\
         os.chmod(d + '/alert-ocsf', 0o600)\n\
         os.rename(d + '/alert-ocsf', d + '/moved')\n\
         os.unlink(d + '/moved')\n\
         os.close(os.memfd_create('ocsf-test'))\n\
         s = socket.create_connection(('127.0.0.1', {port})); s.close()\n\
         try:\n    socket.create_connection(('127.0.0.1', {refused}))\n\
         except ConnectionRefusedError:\n    pass\n\
         srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n\
         c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()\n\
         a.close(); c.close(); srv.close()\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         u.sendto(b'x', ('127.0.0.1', {port})); u.close()\n\
         subprocess.run(['/bin/true'])\n",
        refused = refused.port()
    );
    let status = python(&script).arg(&watched).status().expect("python");
    assert!(status.success());
    drop(listener);
    wait_until(
        Duration::from_secs(60),
        "the Detection Finding of the test rule",
        || {
            read_records(&output)
                .iter()
                .any(|o| o["class_uid"] == 2004 && o["finding_info"]["title"] == RULE)
                .then_some(())
        },
        || agent.stderr(),
    );
    // Stopping flushes everything the agent saw.
    agent.stop();
    let records = read_records(&output);
    assert!(
        records.iter().all(|o| o.get("kind").is_none()),
        "a native record in OCSF output"
    );
    let finding = records
        .iter()
        .find(|o| o["class_uid"] == 2004 && o["finding_info"]["title"] == RULE)
        .expect("finding");
    let pid = actor_pid(finding).expect("the finding names its actor");
    // The test process's activity and its child's, plus a sample of the rest of the host's.
    let in_tree = |o: &Value| {
        actor_pid(o) == Some(pid)
            || o.pointer("/process/parent_process/pid")
                .and_then(Value::as_u64)
                == Some(pid)
    };
    let mut chosen: Vec<Value> = records.iter().filter(|o| in_tree(o)).cloned().collect();
    let seen: Vec<(u64, u64)> = chosen
        .iter()
        .filter_map(|o| Some((o["class_uid"].as_u64()?, o["activity_id"].as_u64()?)))
        .collect();
    let expected = [
        ((1007, 1), "process launch (fork, exec)"),
        ((1007, 2), "process terminate (exit)"),
        ((1001, 1), "file create (creat, memfd)"),
        ((1001, 14), "file open"),
        ((1001, 6), "file set attributes (chmod)"),
        ((1001, 5), "file rename"),
        ((1001, 4), "file delete (unlink)"),
        ((4001, 1), "network open (connect, accept)"),
        ((4001, 5), "network refuse (refused connect)"),
        ((4001, 7), "network listen"),
        ((4001, 99), "network other (bind)"),
        ((4001, 6), "network traffic (UDP send)"),
        ((2004, 1), "detection finding create"),
    ];
    for (pair, what) in expected {
        assert!(
            seen.contains(&pair),
            "no {what} {pair:?} for pid {pid}: {seen:?}"
        );
    }
    chosen.extend(records.iter().take(500).cloned());

    let mut child = match Command::new("python3")
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            skip_or_fail(&format!("cannot run python3: {e}"));
            return;
        }
    };
    let input = serde_json::to_vec(&chosen).expect("JSON");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write objects");
    let out = child.wait_with_output().expect("validator");
    if out.status.code() == Some(3) {
        skip_or_fail(&String::from_utf8_lossy(&out.stderr));
        return;
    }
    assert!(
        out.status.success(),
        "validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let errors: Vec<(usize, String)> = serde_json::from_slice(&out.stdout).expect("errors JSON");
    let shown: Vec<String> = errors
        .iter()
        .take(20)
        .map(|(i, e)| format!("{} (class {}): {e}", i, chosen[*i]["class_uid"]))
        .collect();
    assert!(
        errors.is_empty(),
        "{} of {} objects do not validate:\n{}",
        errors.len(),
        chosen.len(),
        shown.join("\n")
    );
}
