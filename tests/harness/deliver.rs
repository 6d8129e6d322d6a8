//! Harness of the forwarding tests: an agent that can be SIGKILLed and restarted on the same
//! spool and output file, a detection that turns file creations into alerts on demand, and a
//! real rsyslog on loopback.

use std::{
    collections::HashMap,
    ffi::OsString,
    fs,
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    fs::TempDir,
    launch::{AgentProcess, Launch, preflight},
    process::{python, terminate},
};

/// Name of the test detection [`write_rules`] writes.
pub const RULE: &str = "test-forward";

/// Writes a rules directory with one detection: creating or opening `<dir>/alert-*` raises a
/// `high` alert of rule [`RULE`]. Returns the rules directory.
pub fn write_rules(base: &Path, watched: &Path) -> PathBuf {
    let rules = base.join("rules");
    fs::create_dir_all(&rules).expect("rules directory");
    let yaml = format!(
        "detection: {RULE}\ndescription: test alert for forwarding\nseverity: high\n\
         mitre: [T1552]\non: [open]\nwhen:\n  path: [\"{}/alert-*\"]\n",
        watched.display()
    );
    fs::write(rules.join("forward.yaml"), yaml).expect("rule file");
    rules
}

/// Creates `count` files `<dir>/alert-<tag>-<i>` from one Python process: one alert each.
pub fn raise_alerts(dir: &Path, tag: &str, count: usize) {
    let script = format!(
        "import sys\nfor i in range({count}):\n    open(sys.argv[1] + '/alert-{tag}-%d' % i, 'w').close()\n"
    );
    let status = python(&script)
        .arg(dir)
        .status()
        .expect("run python to raise alerts");
    assert!(status.success(), "raising alerts failed: {status}");
}

/// The agent of a forwarding test. Unlike the shared agents, each test owns its own and can
/// SIGKILL it and start another on the same spool and output file.
pub struct ForwardAgent {
    process: AgentProcess,
    output: PathBuf,
}

impl ForwardAgent {
    /// `monitor run --output file:OUTPUT --rules RULES --watch-all --alert-fold-secs 0 ARGS`.
    pub fn launch(output: &Path, rules: &Path, args: &[String]) -> Result<Self, String> {
        let bin = preflight()?;
        let mut run_args: Vec<OsString> = vec![
            "--rules".into(),
            rules.into(),
            "--watch-all".into(),
            "--alert-fold-secs".into(),
            "0".into(),
        ];
        run_args.extend(args.iter().map(OsString::from));
        let process = AgentProcess::launch(
            &bin,
            Launch {
                dir_label: "forward-agent",
                output_name: "unused",
                output_path: Some(output.to_owned()),
                args: run_args,
                keep_hint: "",
            },
        )?;
        Ok(Self {
            process,
            output: output.to_owned(),
        })
    }

    /// SIGKILL: a crash, no shutdown work.
    pub fn kill(mut self) {
        self.process.kill();
    }

    /// SIGHUP: reload the rules.
    pub fn hangup(&self) {
        self.process.signal(libc::SIGHUP);
    }

    /// SIGTERM and wait (what dropping does too).
    pub fn stop(mut self) {
        self.process.stop();
    }

    /// The start and end of the agent's stderr, for failure reports.
    pub fn stderr(&self) -> String {
        self.process.stderr_excerpt()
    }

    /// All of the agent's stderr, to search it.
    pub fn stderr_full(&self) -> String {
        self.process.stderr_full()
    }

    /// Every JSON record of the output file so far.
    pub fn records(&self) -> Vec<Value> {
        read_records(&self.output)
    }
}

/// The last `agent_stats` line among `records`.
pub fn last_stats(records: &[Value]) -> Option<&Value> {
    records.iter().rev().find(|r| r["kind"] == "agent_stats")
}

/// JSON records of a JSON-lines file. Unlike the sensor tests' strict event log, a line that is
/// not JSON is skipped: these tests SIGKILL the agent, which may leave a torn line behind.
pub fn read_records(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Ids of the alerts of rule [`RULE`] among `records`, in order.
pub fn alert_ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["kind"] == "alert" && r["rule"] == RULE)
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` and `report()` after
/// `timeout`.
#[track_caller]
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    report: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                report()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// One message as the test's rsyslog template writes it.
#[derive(Debug, Clone)]
pub struct SyslogLine {
    pub input: String,
    pub severity: u8,
    pub facility: u8,
    pub app_name: String,
    pub msgid: String,
    /// MSG, parsed as JSON (`Value::Null` when it is not JSON: truncated or badly framed).
    pub msg: Value,
    pub raw_msg: String,
}

/// A real rsyslogd on loopback (TCP and UDP inputs) writing every message it receives to a
/// file, one line each: `INPUT SEVERITY FACILITY APP-NAME MSGID MSG`. Stopped on drop.
pub struct Rsyslog {
    dir: PathBuf,
    pub tcp_port: u16,
    pub udp_port: u16,
    child: Option<Child>,
}

/// A throwaway CA and a server certificate for 127.0.0.1, made with the `openssl` command.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn create(dir: &Path) -> Result<Self, String> {
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .map_err(|e| format!("cannot run openssl: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let subject_ca = "/CN=monitor test CA";
        run(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", subject_ca,
        ])?;
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ])?;
        fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| format!("ext.cnf: {e}"))?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ])?;
        Ok(Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        })
    }
}

/// Where Debian installs rsyslogd.
pub fn rsyslogd_binary() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

impl Rsyslog {
    /// Writes the configuration into `dir` (kept by the caller, so a restarted rsyslog appends
    /// to the same file) and starts rsyslogd on the given loopback ports.
    pub fn start(dir: &TempDir, tcp_port: u16, udp_port: u16) -> Result<Self, String> {
        // UDP has no flow control: a burst of 40 alerts of 2-3 KB can overflow the default
        // 208 KB receive buffer while rsyslogd waits for a core (RcvbufErrors in
        // /proc/net/snmp), and the datagrams are gone. 4 MB holds every burst the tests send.
        let inputs = format!(
            r#"module(load="imtcp")
module(load="imudp")
input(type="imtcp" port="{tcp_port}" address="127.0.0.1" ruleset="received" supportOctetCountedFraming="on")
input(type="imudp" port="{udp_port}" address="127.0.0.1" ruleset="received" rcvbufSize="4m")
"#
        );
        Self::launch(dir, "", &inputs, tcp_port, udp_port)
    }

    /// rsyslogd with one TLS input (OpenSSL driver, `rsyslog-openssl`) on `tcp_port`, serving
    /// the certificate of `pki`.
    pub fn start_tls(dir: &TempDir, tcp_port: u16, pki: &Pki) -> Result<Self, String> {
        let global = format!(
            r#" DefaultNetstreamDriver="ossl" DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}""#,
            pki.ca.display(),
            pki.cert.display(),
            pki.key.display()
        );
        let inputs = format!(
            r#"module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" StreamDriver.Authmode="anon")
input(type="imtcp" port="{tcp_port}" address="127.0.0.1" ruleset="received")
"#
        );
        Self::launch(dir, &global, &inputs, tcp_port, 0)
    }

    fn launch(
        dir: &TempDir,
        global: &str,
        inputs: &str,
        tcp_port: u16,
        udp_port: u16,
    ) -> Result<Self, String> {
        let bin = rsyslogd_binary().ok_or(
            "rsyslogd is not installed (Debian package rsyslog; `cargo xtask install-prereqs`)",
        )?;
        let work = dir.join("work");
        fs::create_dir_all(&work).map_err(|e| format!("rsyslog work dir: {e}"))?;
        let out = dir.join("received.log");
        let conf = dir.join("rsyslog.conf");
        let text = format!(
            r#"global(workDirectory="{work}" maxMessageSize="256k"{global})
template(name="fields" type="string" string="%inputname% %syslogseverity% %syslogfacility% %app-name% %msgid% %msg%\n")
ruleset(name="received") {{ action(type="omfile" file="{out}" template="fields" flushOnTXEnd="on" asyncWriting="off") }}
{inputs}"#,
            work = work.display(),
            out = out.display(),
        );
        fs::write(&conf, text).map_err(|e| format!("writing {}: {e}", conf.display()))?;
        let stderr = fs::File::create(dir.join("rsyslogd.stderr"))
            .map_err(|e| format!("rsyslogd stderr file: {e}"))?;
        let child = Command::new(bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start rsyslogd: {e}"))?;
        let mut me = Self {
            dir: dir.path().to_owned(),
            tcp_port,
            udp_port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, tcp_port)).is_ok()
                && (udp_port == 0 || udp_bound(udp_port))
        };
        while !ready() {
            if let Some(c) = me.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!(
                    "rsyslogd exited ({status}): {}",
                    fs::read_to_string(dir.join("rsyslogd.stderr")).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                me.stop();
                return Err(format!(
                    "rsyslogd did not listen within 20 s: {}",
                    fs::read_to_string(dir.join("rsyslogd.stderr")).unwrap_or_default()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
        // imudp failing to get its buffer is only logged: say so now rather than time out
        // waiting for dropped datagrams later.
        let logged = fs::read_to_string(dir.join("rsyslogd.stderr")).unwrap_or_default();
        if udp_port != 0 && logged.contains("rcvbuf") {
            me.stop();
            return Err(format!(
                "rsyslogd's UDP input on 127.0.0.1:{udp_port} is not usable: {logged}"
            ));
        }
        Ok(me)
    }

    /// SIGTERM and wait (SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Every message received so far, across restarts.
    pub fn received(&self) -> Vec<SyslogLine> {
        let text = fs::read_to_string(self.dir.join("received.log")).unwrap_or_default();
        text.lines().filter_map(parse_line).collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a UDP socket is bound to 127.0.0.1:`port` (`/proc/net/udp`).
fn udp_bound(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/udp").is_ok_and(|table| {
        table
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
    })
}

fn parse_line(line: &str) -> Option<SyslogLine> {
    let mut parts = line.splitn(6, ' ');
    let input = parts.next()?.to_owned();
    let severity = parts.next()?.parse().ok()?;
    let facility = parts.next()?.parse().ok()?;
    let app_name = parts.next()?.to_owned();
    let msgid = parts.next()?.to_owned();
    let raw_msg = parts.next().unwrap_or("").trim_start().to_owned();
    Some(SyslogLine {
        input,
        severity,
        facility,
        app_name,
        msgid,
        msg: serde_json::from_str(&raw_msg).unwrap_or(Value::Null),
        raw_msg,
    })
}

/// Launches a [`ForwardAgent`] for a test directory: rules on `DIR/watched` (created),
/// output `DIR/alerts.jsonl`, `--spool-dir DIR/spool` and `--stats-interval 1` unless `args`
/// give their own. `None` after saying loudly why it cannot run (a failure under `CI=true`).
#[track_caller]
pub fn launch_in(dir: &TempDir, args: &[String]) -> Option<ForwardAgent> {
    let watched = dir.join("watched");
    fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    let mut all = args.to_vec();
    if !args.iter().any(|a| a == "--spool-dir") {
        all.extend([
            "--spool-dir".to_owned(),
            dir.join("spool").display().to_string(),
        ]);
    }
    if !args.iter().any(|a| a == "--stats-interval") {
        all.extend(["--stats-interval".to_owned(), "1".to_owned()]);
    }
    match ForwardAgent::launch(&dir.join("alerts.jsonl"), &rules, &all) {
        Ok(a) => Some(a),
        Err(e) => {
            crate::skip_or_fail(&format!("cannot run the agent: {e}"));
            None
        }
    }
}

/// The alerts of the test rule in the agent's file output, by id, and their ids in order.
pub fn written(agent: &ForwardAgent) -> (HashMap<String, Value>, Vec<String>) {
    let records = agent.records();
    let ids = alert_ids(&records);
    let by_id = records
        .into_iter()
        .filter(|r| r["kind"] == "alert" && r["rule"] == RULE)
        .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r)))
        .collect();
    (by_id, ids)
}
