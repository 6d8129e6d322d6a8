//! `--format ocsf`: what the running agent writes validates against the official OCSF JSON
//! schema (from the `ocsf-json-schema` package on PyPI, validated with Python `jsonschema`):
//! process, file, network and DNS activity of a real process and the Detection Finding it
//! raises.

use std::{
    io::Write as _,
    net::{Ipv4Addr, TcpListener},
    process::{Command, Stdio},
    time::Duration,
};

use monitor_tests::{
    ReservedPort, TempDir,
    deliver::{ForwardAgent, RULE, read_records, wait_until, write_rules},
    python, random_hex, skip_or_fail,
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

/// A loopback address of this test's own (never 127.0.0.53, a local resolver's).
fn loopback() -> String {
    let r = random_hex(4);
    let b = |i: usize| u8::from_str_radix(&r[i..i + 2], 16).unwrap_or(1).max(1);
    format!("127.{}.{}.{}", b(0), b(2), (b(0) ^ b(2)).max(2))
}

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
    // (accepted and refused), bind, listen, accept; a UDP datagram; a DNS answer (from a
    // nameserver of the test's own on SERVER:53, asked over a connected UDP socket); fork,
    // exec and exit.
    let (server, name) = (
        loopback(),
        format!("ocsf.{}.monitor-test.example", random_hex(6)),
    );
    let script = format!(
        "import os, socket, struct, subprocess, sys\n\
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
         qname = b''.join(bytes([len(p)]) + p.encode() for p in '{name}'.split('.')) + bytes(1)\n\
         ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ns.bind(('{server}', 53))\n\
         r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.connect(('{server}', 53))\n\
         r.send(struct.pack('>6H', 0x4242, 0x0100, 1, 0, 0, 0) + qname + struct.pack('>2H', 1, 1))\n\
         query, peer = ns.recvfrom(512)\n\
         ns.sendto(query[:2] + struct.pack('>5H', 0x8180, 1, 1, 0, 0) + query[12:] + qname\n\
         + struct.pack('>HHIH', 1, 1, 300, 4) + socket.inet_aton('192.0.2.10'), peer)\n\
         assert r.recv(512)[:2] == query[:2]; r.close(); ns.close()\n\
         subprocess.run(['/bin/true'])\n",
        refused = refused.port()
    );
    let mut child = python(&script).arg(&watched).spawn().expect("python");
    let child_pid = u64::from(child.id());
    assert!(child.wait().expect("wait for python").success());
    drop(listener);
    let is_finding = |o: &Value| o["class_uid"] == 2004 && o["finding_info"]["title"] == RULE;
    let is_answer = |o: &Value| o["class_uid"] == 4003 && o["query"]["hostname"] == name.as_str();
    wait_until(
        Duration::from_secs(60),
        "the Detection Finding of the test rule and the DNS answer",
        || {
            let records = read_records(&output);
            (records.iter().any(is_finding) && records.iter().any(is_answer)).then_some(())
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
    let finding = records.iter().find(|o| is_finding(o)).expect("finding");
    let pid = actor_pid(finding).expect("the finding names its actor");
    assert_eq!(pid, child_pid, "the finding's actor is the test process");
    let answer = records.iter().find(|o| is_answer(o)).expect("DNS answer");
    assert_eq!(actor_pid(answer), Some(pid), "{answer}");
    assert_eq!(answer["activity_id"], 2, "{answer}");
    assert_eq!(answer["query"]["type"], "A", "{answer}");
    assert_eq!(answer["rcode_id"], 0, "{answer}");
    assert_eq!(answer["answers"][0]["rdata"], "192.0.2.10", "{answer}");
    assert_eq!(answer["src_endpoint"]["ip"], server.as_str(), "{answer}");
    assert_eq!(answer["src_endpoint"]["port"], 53, "{answer}");
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
        ((4003, 2), "DNS response"),
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
