//! Network sensors end to end on loopback: bind, listen, connect (including a refused one),
//! accept, UDP send, over IPv4, IPv6 and unix sockets. The children are python scripts with fixed
//! text that print the ports they used, so the tests can assert exact addresses and ports.

use monitor_tests::{Agent, Proc, TIMEOUT, TempDir, ipv6_loopback_or_skip, path_str, python};
use serde_json::{Value, json};

/// A TCP script whose argv is `FAMILY HOST`: `body` runs with `fam`, `host` and `port`, a port
/// found free with a throwaway socket (so the script's own bind or connect names the port).
macro_rules! with_free_tcp_port {
    ($body:literal) => {
        concat!(
            "
import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == 'inet6' else socket.AF_INET
host = sys.argv[2]
probe = socket.socket(fam, socket.SOCK_STREAM)
probe.bind((host, 0))
port = probe.getsockname()[1]
probe.close()
",
            $body
        )
    };
}

/// Binds a listener on a free port (found with a throwaway socket, so the bind itself names the
/// port), connects a second socket to it and accepts. Prints: port client_port accepted_peer_port.
const TCP_LOOPBACK: &str = with_free_tcp_port!(
    "srv = socket.socket(fam, socket.SOCK_STREAM)
srv.bind((host, port))
srv.listen(4)
cli = socket.socket(fam, socket.SOCK_STREAM)
cli.connect((host, port))
conn, peer = srv.accept()
print(port, cli.getsockname()[1], peer[1], flush=True)
conn.close()
cli.close()
srv.close()
"
);

/// Connects to a port nobody listens on (found free with a throwaway socket). Prints the port.
const TCP_REFUSED: &str = with_free_tcp_port!(
    "cli = socket.socket(fam, socket.SOCK_STREAM)
try:
    cli.connect((host, port))
except ConnectionRefusedError:
    print(port, flush=True)
else:
    sys.exit('connecting to a closed port succeeded')
"
);

/// A non-blocking connect to a listener: it returns EINPROGRESS, then completes. Prints: port
/// client_port.
const TCP_NONBLOCKING: &str = with_free_tcp_port!(
    "import select
srv = socket.socket(fam, socket.SOCK_STREAM)
srv.bind((host, port))
srv.listen(4)
cli = socket.socket(fam, socket.SOCK_STREAM)
cli.setblocking(False)
assert cli.connect_ex((host, port)) == 115
select.select([], [cli], [], 5)
assert cli.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
print(port, cli.getsockname()[1], flush=True)
cli.close()
srv.close()
"
);

/// Sends a datagram to a bound UDP socket with sendto or sendmsg. Prints: port.
const UDP_SEND: &str = "
import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == 'inet6' else socket.AF_INET
host = sys.argv[2]
rx = socket.socket(fam, socket.SOCK_DGRAM)
rx.bind((host, 0))
port = rx.getsockname()[1]
tx = socket.socket(fam, socket.SOCK_DGRAM)
if sys.argv[3] == 'sendmsg':
    tx.sendmsg([b'ping'], [], 0, (host, port))
else:
    tx.sendto(b'ping', (host, port))
rx.recvfrom(16)
print(port, flush=True)
";

/// A unix stream listener, a client connected to it, and a connect to a path that does not exist.
const UNIX_STREAM: &str = "
import socket, sys
path, absent = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
cli.connect(path)
conn, _ = srv.accept()
lost = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    lost.connect(absent)
except FileNotFoundError:
    pass
else:
    sys.exit('connecting to a missing socket succeeded')
";

/// The whitespace-separated numbers a script printed.
#[track_caller]
fn ports(stdout: &str) -> Vec<u16> {
    stdout
        .split_whitespace()
        .map(|w| match w.parse() {
            Ok(port) => port,
            Err(e) => panic!("the script printed {stdout:?}, not ports: {e}"),
        })
        .collect()
}

/// Runs a script to completion and returns the child and the ports it printed.
#[track_caller]
fn run(agent: &Agent, script: &str, args: &[&str]) -> (Proc, Vec<u16>) {
    let mut child = agent.spawn(python(script).args(args));
    let out = child.finish_ok(TIMEOUT);
    (child, ports(&out))
}

/// Waits for the `kind` event of `pid` that has `fields` (a subset), then asserts `exact`.
#[track_caller]
fn expect(agent: &Agent, pid: u32, kind: &str, fields: Value, exact: Value) -> Value {
    let mut pattern = fields;
    pattern["kind"] = json!(kind);
    pattern["pid"] = json!(pid);
    let event = agent.wait_for_match(TIMEOUT, &pattern);
    agent.assert_event(&event, &exact);
    event
}

/// [`expect`] for the `kind` event of `pid` to `(family, host, port)`: exactly those, the
/// protocol and the result.
#[track_caller]
fn expect_to(
    agent: &Agent,
    pid: u32,
    kind: &str,
    protocol: &str,
    (family, host, port): (&str, &str, u16),
    result: i32,
) {
    expect(
        agent,
        pid,
        kind,
        json!({"remote_port": port}),
        json!({
            "family": family,
            "protocol": protocol,
            "remote_addr": host,
            "remote_port": port,
            "result": result,
        }),
    );
}

fn tcp_bind_and_listen(agent: &Agent, family: &str, host: &str) {
    let (child, p) = run(agent, TCP_LOOPBACK, &[family, host]);
    let (pid, port) = (child.pid(), p[0]);
    let local =
        json!({"family": family, "protocol": "tcp", "local_addr": host, "local_port": port});
    let mut exact = local.clone();
    exact["remote_addr"] = Value::Null;
    exact["remote_port"] = Value::Null;
    exact["result"] = json!(0);
    expect(agent, pid, "bind", local.clone(), exact.clone());
    expect(agent, pid, "listen", local, exact);
}

fn tcp_connect_and_accept(agent: &Agent, family: &str, host: &str) {
    let (child, p) = run(agent, TCP_LOOPBACK, &[family, host]);
    let (pid, port, client_port) = (child.pid(), p[0], p[1]);
    assert_eq!(p[1], p[2], "the accepted peer is the connecting socket");
    expect(
        agent,
        pid,
        "connect",
        json!({"remote_port": port}),
        json!({
            "family": family,
            "protocol": "tcp",
            "local_addr": host,
            "local_port": client_port,
            "remote_addr": host,
            "remote_port": port,
            "result": 0,
        }),
    );
    expect(
        agent,
        pid,
        "accept",
        json!({}),
        json!({
            "family": family,
            "protocol": "tcp",
            "local_addr": host,
            "local_port": port,
            "remote_addr": host,
            "remote_port": client_port,
            "result": 0,
        }),
    );
}

fn tcp_refused(agent: &Agent, family: &str, host: &str) {
    let (child, p) = run(agent, TCP_REFUSED, &[family, host]);
    let to = (family, host, p[0]);
    expect_to(
        agent,
        child.pid(),
        "connect",
        "tcp",
        to,
        -libc::ECONNREFUSED,
    );
}

fn udp_send(agent: &Agent, family: &str, host: &str, call: &str) {
    let (child, p) = run(agent, UDP_SEND, &[family, host, call]);
    // The receiver bound port 0: the event has the port the kernel chose, and says so.
    expect(
        agent,
        child.pid(),
        "bind",
        json!({"local_port": p[0]}),
        json!({"protocol": "udp", "local_port": p[0], "ephemeral": true, "result": 0}),
    );
    expect_to(agent, child.pid(), "send", "udp", (family, host, p[0]), 0);
}

#[test]
fn tcp_v4_bind_and_listen_report_the_exact_local_port() {
    let Some(agent) = Agent::start() else { return };
    tcp_bind_and_listen(&agent, "inet", "127.0.0.1");
}

#[test]
fn tcp_v4_connect_and_accept_report_both_ends() {
    let Some(agent) = Agent::start() else { return };
    tcp_connect_and_accept(&agent, "inet", "127.0.0.1");
}

#[test]
fn tcp_v4_non_blocking_connect_is_reported_in_progress() {
    let Some(agent) = Agent::start() else { return };
    let (child, p) = run(&agent, TCP_NONBLOCKING, &["inet", "127.0.0.1"]);
    expect(
        &agent,
        child.pid(),
        "connect",
        json!({"remote_port": p[0]}),
        json!({
            "protocol": "tcp",
            "local_port": p[1],
            "remote_addr": "127.0.0.1",
            "remote_port": p[0],
            "result": -115,
            "in_progress": true,
        }),
    );
}

#[test]
fn tcp_v4_refused_connect_reports_econnrefused() {
    let Some(agent) = Agent::start() else { return };
    tcp_refused(&agent, "inet", "127.0.0.1");
}

#[test]
fn udp_v4_sendto_reports_the_destination() {
    let Some(agent) = Agent::start() else { return };
    udp_send(&agent, "inet", "127.0.0.1", "sendto");
}

#[test]
fn tcp_v6_bind_listen_connect_accept_and_refused() {
    let Some(agent) = Agent::start() else { return };
    if !ipv6_loopback_or_skip() {
        return;
    }
    tcp_bind_and_listen(&agent, "inet6", "::1");
    tcp_connect_and_accept(&agent, "inet6", "::1");
    tcp_refused(&agent, "inet6", "::1");
}

#[test]
fn udp_v6_sendmsg_reports_the_destination() {
    let Some(agent) = Agent::start() else { return };
    if !ipv6_loopback_or_skip() {
        return;
    }
    udp_send(&agent, "inet6", "::1", "sendmsg");
}

#[test]
fn unix_socket_bind_and_connect_report_the_path() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("unix");
    let (path, absent) = (
        path_str(dir.join("s.sock")),
        path_str(dir.join("absent.sock")),
    );
    let mut child = agent.spawn(python(UNIX_STREAM).args([&path, &absent]));
    child.finish_ok(TIMEOUT);
    let pid = child.pid();

    let unix = json!({"family": "unix", "protocol": null});
    let mut ok = unix.clone();
    ok["path"] = json!(path);
    ok["result"] = json!(0);
    let bind = expect(&agent, pid, "bind", json!({"path": path}), ok.clone());
    let connect = expect(&agent, pid, "connect", json!({"path": path}), ok);
    let mut refused = unix;
    refused["path"] = json!(absent);
    refused["result"] = json!(-libc::ENOENT);
    let lost = expect(&agent, pid, "connect", json!({"path": absent}), refused);

    // Unix sockets carry a path instead of addresses and ports: those are null or absent.
    for event in [&bind, &connect, &lost] {
        for key in ["local_addr", "local_port", "remote_addr", "remote_port"] {
            assert!(
                event.get(key).is_none_or(Value::is_null),
                "`{key}` of a unix socket event should be null or absent: {event}"
            );
        }
    }
}
