//! DNS answers end to end: a python child, in a network namespace of the test's own, runs a
//! tiny nameserver on a loopback address (port 53) and queries it over UDP (connected, and
//! unconnected `sendto`), TCP and IPv6, the way resolvers do; the agent reports each answer
//! as a `dns` event of the querying process, with the exact name, type, response code,
//! aliases, addresses and TTL. A packet from another address than the one queried is not
//! reported.

use std::process::Command;

use monitor_tests::{Agent, TIMEOUT, inference::NetNs, python, random_hex};
use serde_json::{Value, json};

/// `dns.py MODE SERVER NAME QTYPE`: serves one answer for NAME from SERVER:53 and queries it.
/// MODE: `udp` (connected socket), `sendto` (unconnected), `tcp`, `spoof` (a stray answer from
/// another loopback address arrives first, then the real one). Answers: `cname.NAME` as the
/// alias of NAME, then two addresses of the alias (TTL 300 and 60); `missing.*` is NXDOMAIN.
const DNS: &str = r#"
import socket, struct, sys, threading
mode, server, name, qtype = sys.argv[1:5]
v6 = ':' in server
fam = socket.AF_INET6 if v6 else socket.AF_INET
QTYPES = {'A': 1, 'AAAA': 28}

def encode(n):
    return b''.join(bytes([len(p)]) + p.encode() for p in n.split('.')) + b'\0'

def question(qid):
    return struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0) + encode(name) + struct.pack('>HH', QTYPES[qtype], 1)

def answer(query):
    qid = struct.unpack('>H', query[:2])[0]
    q = query[12:]
    if name.startswith('missing.'):
        return struct.pack('>HHHHHH', qid, 0x8183, 1, 0, 0, 0) + q
    alias = 'cname.' + name
    rtype = QTYPES[qtype]
    addrs = ['192.0.2.10', '192.0.2.11'] if rtype == 1 else ['2001:db8::10', '2001:db8::11']
    packed = [socket.inet_pton(socket.AF_INET if rtype == 1 else socket.AF_INET6, a) for a in addrs]
    rrs = encode(name) + struct.pack('>HHIH', 5, 1, 600, len(encode(alias))) + encode(alias)
    for ttl, raw in zip([300, 60], packed):
        rrs += encode(alias) + struct.pack('>HHIH', rtype, 1, ttl, len(raw)) + raw
    return struct.pack('>HHHHHH', qid, 0x8180, 1, 3, 0, 0) + q + rrs

if mode == 'tcp':
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((server, 53))
    srv.listen(1)
    def serve():
        conn, _ = srv.accept()
        n = struct.unpack('>H', conn.recv(2))[0]
        query = b''
        while len(query) < n:
            query += conn.recv(n - len(query))
        a = answer(query)
        conn.sendall(struct.pack('>H', len(a)) + a)
        conn.close()
    t = threading.Thread(target=serve)
    t.start()
    cli = socket.socket(fam, socket.SOCK_STREAM)
    cli.connect((server, 53))
    q = question(0x4242)
    cli.sendall(struct.pack('>H', len(q)) + q)
    n = struct.unpack('>H', cli.recv(2))[0]
    got = b''
    while len(got) < n:
        got += cli.recv(n - len(got))
    t.join()
else:
    srv = socket.socket(fam, socket.SOCK_DGRAM)
    srv.bind((server, 53))
    cli = socket.socket(fam, socket.SOCK_DGRAM)
    q = question(0x4242)
    if mode == 'udp':
        cli.connect((server, 53))
        cli.send(q)
    else:
        cli.sendto(q, (server, 53))
    query, peer = srv.recvfrom(512)
    if mode == 'spoof':
        stray = socket.socket(fam, socket.SOCK_DGRAM)
        stray.bind((sys.argv[5], 53))
        stray.sendto(answer(query), peer)
        cli.recvfrom(512)
    srv.sendto(answer(query), peer)
    got, _ = cli.recvfrom(512)
assert struct.unpack('>H', got[:2])[0] == 0x4242
print('ok', flush=True)
"#;

/// The nameserver's address inside the test's namespace, and another one for stray answers.
const SERVER: &str = "127.0.10.1";
const STRAY: &str = "127.0.10.2";

/// A network namespace of the test's own: its port 53 and its loopback addresses are free.
#[track_caller]
fn namespace(label: &str) -> NetNs {
    NetNs::new(label).unwrap_or_else(|e| panic!("a network namespace for the test: {e}"))
}

/// A query name of this test's own.
fn name(label: &str) -> String {
    format!("{label}.{}.monitor-test.example", random_hex(6))
}

/// Runs the script inside `ns` and returns the `dns` event of its pid, checked against `exact`.
#[track_caller]
fn answer_of(agent: &Agent, ns: &NetNs, args: &[&str], exact: Value) -> Value {
    let script = python(DNS);
    let mut cmd: Command = ns.command(script.get_program());
    cmd.args(script.get_args()).args(args);
    let mut child = agent.spawn(&mut cmd);
    assert_eq!(child.finish_ok(TIMEOUT).trim(), "ok");
    let event = agent.wait_for_match(TIMEOUT, &json!({"kind": "dns", "pid": child.pid()}));
    agent.assert_event(&event, &exact);
    event
}

/// What every answer of [`DNS`] for `name` holds.
fn expected(family: &str, protocol: &str, server: &str, name: &str, qtype: &str) -> Value {
    let (answers, alias) = if qtype == "A" {
        (json!(["192.0.2.10", "192.0.2.11"]), format!("cname.{name}"))
    } else {
        (
            json!(["2001:db8::10", "2001:db8::11"]),
            format!("cname.{name}"),
        )
    };
    json!({
        "family": family,
        "protocol": protocol,
        "remote_addr": server,
        "remote_port": 53,
        "query": name,
        "query_type": qtype,
        "rcode": "NOERROR",
        "answers": answers,
        "cnames": [alias],
        "ttl": 60,
    })
}

#[test]
fn udp_answers_to_a_connected_socket_are_reported_with_the_querier() {
    let Some(agent) = Agent::start() else { return };
    let (ns, n) = (namespace("dns-udp"), name("udp"));
    answer_of(
        &agent,
        &ns,
        &["udp", SERVER, &n, "A"],
        expected("inet", "udp", SERVER, &n, "A"),
    );
}

#[test]
fn udp_answers_to_an_unconnected_socket_are_reported() {
    let Some(agent) = Agent::start() else { return };
    let (ns, n) = (namespace("dns-sendto"), name("sendto"));
    answer_of(
        &agent,
        &ns,
        &["sendto", SERVER, &n, "AAAA"],
        expected("inet", "udp", SERVER, &n, "AAAA"),
    );
}

#[test]
fn tcp_answers_are_reported() {
    let Some(agent) = Agent::start() else { return };
    let (ns, n) = (namespace("dns-tcp"), name("tcp"));
    answer_of(
        &agent,
        &ns,
        &["tcp", SERVER, &n, "A"],
        expected("inet", "tcp", SERVER, &n, "A"),
    );
}

#[test]
fn ipv6_answers_are_reported() {
    let Some(agent) = Agent::start() else { return };
    let (ns, n) = (namespace("dns-v6"), name("v6"));
    assert!(ns.ipv6_loopback(), "a new namespace has ::1");
    answer_of(
        &agent,
        &ns,
        &["udp", "::1", &n, "AAAA"],
        expected("inet6", "udp", "::1", &n, "AAAA"),
    );
}

#[test]
fn a_missing_name_is_reported_as_nxdomain_without_answers() {
    let Some(agent) = Agent::start() else { return };
    let (ns, n) = (namespace("dns-missing"), name("missing"));
    answer_of(
        &agent,
        &ns,
        &["udp", SERVER, &n, "A"],
        json!({
            "query": n,
            "query_type": "A",
            "rcode": "NXDOMAIN",
            "answers": [],
            "cnames": [],
            "ttl": null,
        }),
    );
}

#[test]
fn an_answer_from_another_address_than_the_one_queried_is_not_reported() {
    let Some(agent) = Agent::start() else { return };
    let (ns, n) = (namespace("dns-spoof"), name("spoof"));
    let real = answer_of(
        &agent,
        &ns,
        &["spoof", SERVER, &n, "A", STRAY],
        expected("inet", "udp", SERVER, &n, "A"),
    );
    // The stray answer arrived first: had it been reported, it would be the first event.
    assert_eq!(real["remote_addr"], json!(SERVER), "{real}");
}
