use std::net::IpAddr;

use monitor_common::EventKind;

use crate::rules::testutil::{check, ctx, exec, file_body, file_event, fired, load_ok, net, open};
use crate::rules::{EvalContext, ProfileId, RuleSet, Severity};
use crate::sensor::event::{Access, EventBody, Protocol};

fn det(id: &str, body: &str) -> String {
    format!("detection: {id}\ndescription: {id} happened\nseverity: medium\nmitre: [T1000]\n{body}")
}

fn one(body: &str) -> RuleSet {
    load_ok(&[("d.yaml", &det("d", body))])
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn credential_read_message_and_fields() {
    let r = load_ok(&[(
        "cred.yaml",
        "detection: credential-read\ndescription: Reads SSH keys, cloud credentials or tokens\nseverity: high\nmitre: [T1552.001, T1552.004]\non: [open]\nwhen:\n  path: [\"~/.ssh/id_*\"]\n  access: [read, read_write]\nexcept:\n  - exe: [\"/usr/bin/ssh\"]\n",
    )]);
    assert_eq!(r.detection_count(), 1);
    let f = check(
        &r,
        &open("/root/.ssh/id_rsa", Access::Read),
        &ctx(Some(ProfileId(0))),
    );
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, "credential-read");
    assert_eq!(f[0].severity, Severity::High);
    assert_eq!(f[0].mitre, vec!["T1552.001", "T1552.004"]);
    assert_eq!(
        f[0].profile, None,
        "ProfileId(0) does not exist in this rule set"
    );
    assert_eq!(
        f[0].message,
        "python3 (pid 812) read /root/.ssh/id_rsa: credential-read: Reads SSH keys, cloud credentials or tokens"
    );
    assert_eq!(f[0].key, "credential-read|/root/.ssh/id_rsa");
    assert!(
        fired(&r, &open("/root/.ssh/id_rsa", Access::Write), &ctx(None)).is_empty(),
        "access"
    );
    assert!(
        fired(
            &r,
            &open("/root/.ssh/known_hosts", Access::Read),
            &ctx(None)
        )
        .is_empty(),
        "path"
    );
    let mut ssh = open("/home/ann/.ssh/id_ed25519", Access::Read);
    ssh.exe = Some("/usr/bin/ssh".to_owned());
    assert!(fired(&r, &ssh, &ctx(None)).is_empty(), "except");
    ssh.exe = Some("/usr/bin/scp".to_owned());
    assert_eq!(fired(&r, &ssh, &ctx(None)), vec!["credential-read"]);
    let connect = net(
        EventKind::Connect,
        Protocol::Tcp,
        Some((ip("1.2.3.4"), 22)),
        None,
    );
    assert!(
        fired(&r, &connect, &ctx(None)).is_empty(),
        "on: [open] only"
    );
}

#[test]
fn each_when_key() {
    let c = ctx(None);
    let r = one("on: [open]\nwhen:\n  created: true\n  path: [\"/tmp/**\"]\n");
    let mut b = file_body("/tmp/x/y");
    b.created = Some(true);
    assert_eq!(
        fired(&r, &file_event(EventKind::Open, b.clone()), &c),
        vec!["d"]
    );
    b.created = Some(false);
    assert!(fired(&r, &file_event(EventKind::Open, b), &c).is_empty());

    let r = one("on: [exec]\nwhen:\n  exe: [\"/tmp/**\"]\n  argv_contains: [\"-e\", \"--eval\"]\n");
    assert_eq!(
        fired(&r, &exec("/tmp/x/perl", &["perl", "-e", "1"]), &c),
        vec!["d"]
    );
    assert!(fired(&r, &exec("/tmp/x/perl", &["perl", "s.pl"]), &c).is_empty());
    assert!(fired(&r, &exec("/usr/bin/perl", &["perl", "-e"]), &c).is_empty());

    let r = one("on: [exec]\nwhen:\n  path: [\"/dev/shm/*\"]\n");
    assert_eq!(
        fired(&r, &exec("/dev/shm/x", &["x"]), &c),
        vec!["d"],
        "exec path is the file run"
    );

    let r = one("on: [open]\nwhen:\n  comm: [nc, python3]\n  parent_exe: [\"/usr/bin/ba*\"]\n");
    assert_eq!(fired(&r, &open("/etc/x", Access::Read), &c), vec!["d"]);
    let other_parent = EvalContext {
        parent_exe: Some("/usr/sbin/cron"),
        ..c
    };
    assert!(fired(&r, &open("/etc/x", Access::Read), &other_parent).is_empty());
    let no_parent = EvalContext {
        parent_exe: None,
        ..c
    };
    assert!(fired(&r, &open("/etc/x", Access::Read), &no_parent).is_empty());

    let r = one(
        "on: [connect, send]\nwhen:\n  remote: [\"169.254.169.254\", \"fd00::/8\"]\n  remote_port: [80, 443]\n",
    );
    let conn = |a: &str, p| net(EventKind::Connect, Protocol::Tcp, Some((ip(a), p)), None);
    assert_eq!(fired(&r, &conn("169.254.169.254", 80), &c), vec!["d"]);
    assert_eq!(fired(&r, &conn("fd00::1", 443), &c), vec!["d"]);
    assert!(fired(&r, &conn("169.254.169.254", 22), &c).is_empty());
    assert!(fired(&r, &conn("8.8.8.8", 80), &c).is_empty());
    let f = check(&r, &conn("169.254.169.254", 80), &c);
    assert_eq!(
        f[0].message,
        "python3 (pid 812) connected to 169.254.169.254:80/tcp: d: d happened"
    );
    assert_eq!(f[0].key, "d|169.254.169.254:80");

    let r = one("on: [open]\nwhen:\n  proc_other: [environ, mem]\n");
    assert_eq!(
        fired(&r, &open("/proc/1/environ", Access::Read), &c),
        vec!["d"]
    );
    assert!(
        fired(&r, &open("/proc/812/environ", Access::Read), &c).is_empty(),
        "own process"
    );
    assert!(fired(&r, &open("/proc/1/maps", Access::Read), &c).is_empty());

    let r = one("on: [exec]\nwhen:\n  exe_memfd: true\n");
    assert_eq!(
        fired(&r, &exec("/memfd:payload (deleted)", &["x"]), &c),
        vec!["d"]
    );
    assert!(fired(&r, &exec("/usr/bin/true", &["true"]), &c).is_empty());

    let r = one("on: [open]\nwhen:\n  path: [\"/etc/shadow\"]\n  result: failure\n");
    let mut denied = file_body("/etc/shadow");
    denied.access = Some(Access::Read);
    denied.result = -13;
    let f = check(&r, &file_event(EventKind::Open, denied), &c);
    assert_eq!(
        f[0].message,
        "python3 (pid 812) read /etc/shadow (failed: errno 13): d: d happened"
    );
    assert!(
        fired(&r, &open("/etc/shadow", Access::Read), &c).is_empty(),
        "success"
    );
    let r = one("on: [open]\nwhen:\n  path: [\"/etc/shadow\"]\n  result: success\n");
    assert_eq!(fired(&r, &open("/etc/shadow", Access::Read), &c), vec!["d"]);
}

#[test]
fn rename_destination_counts_as_path() {
    let r = one("on: [rename]\nwhen:\n  path: [\"/etc/cron.d/*\"]\n");
    let mut b = file_body("/tmp/job");
    b.new_path = Some("/etc/cron.d/job".to_owned());
    let f = check(&r, &file_event(EventKind::Rename, b), &ctx(None));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].key, "d|/tmp/job -> /etc/cron.d/job");
}

#[test]
fn scope_profiled_and_disabled() {
    let r = one("scope: profiled\non: [open]\nenabled: true\n");
    assert!(fired(&r, &open("/x", Access::Read), &ctx(None)).is_empty());
    assert_eq!(
        fired(&r, &open("/x", Access::Read), &ctx(Some(ProfileId(0)))),
        vec!["d"]
    );
    let r = one("on: [open]\nenabled: false\n");
    assert_eq!(r.detection_count(), 0);
    assert!(fired(&r, &open("/x", Access::Read), &ctx(None)).is_empty());
}

#[test]
fn findings_name_the_profile() {
    let r = load_ok(&[
        (
            "a.yaml",
            "profile: svc\nmatch:\n  uid: [0]\nallow:\n  read: [\"/**\"]\n",
        ),
        ("d.yaml", &det("d", "on: [open]\n")),
    ]);
    let f = check(&r, &open("/x", Access::Read), &ctx(Some(ProfileId(0))));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].profile.as_deref(), Some("svc"));
    let p = load_ok(&[("p.yaml", "profile: svc\nmatch:\n  uid: [0]\n")]);
    let f = check(&p, &open("/x", Access::Read), &ctx(Some(ProfileId(0))));
    assert_eq!(
        f[0].severity,
        Severity::High,
        "profile severity defaults to high"
    );
}

#[test]
fn overrides_disable_reseverity_and_add_exceptions() {
    let d = det("d", "on: [open]\nwhen:\n  path: [\"/etc/**\"]\n");
    let c = ctx(None);
    let r = load_ok(&[("d.yaml", &d), ("o.yaml", "override: d\nenabled: false\n")]);
    assert!(fired(&r, &open("/etc/x", Access::Read), &c).is_empty());
    let r = load_ok(&[
        (
            "0-o.yaml",
            "override: d\nseverity: critical\nexcept:\n  - path: [\"/etc/hosts\"]\n",
        ),
        ("d.yaml", &d),
    ]);
    let f = check(&r, &open("/etc/x", Access::Read), &c);
    assert_eq!(f[0].severity, Severity::Critical);
    assert!(fired(&r, &open("/etc/hosts", Access::Read), &c).is_empty());
    let r = load_ok(&[
        ("d.yaml", &d),
        ("o.yaml", "override: d\nenabled: false\n"),
        ("p.yaml", "override: d\nenabled: true\n"),
    ]);
    assert_eq!(
        fired(&r, &open("/etc/x", Access::Read), &c),
        vec!["d"],
        "applied in load order"
    );
}

#[test]
fn except_blocks_need_all_their_keys() {
    let r = one(
        "on: [open]\nexcept:\n  - exe: [\"/usr/bin/python3*\"]\n    path: [\"/etc/hosts\"]\n  - comm: [sshd]\n",
    );
    let c = ctx(None);
    assert!(fired(&r, &open("/etc/hosts", Access::Read), &c).is_empty());
    assert_eq!(fired(&r, &open("/etc/passwd", Access::Read), &c), vec!["d"]);
    let mut e = open("/etc/passwd", Access::Read);
    e.comm = "sshd".to_owned();
    assert!(fired(&r, &e, &c).is_empty());
    if let EventBody::File(b) = &mut e.body {
        b.access = Some(Access::Write);
    }
    assert!(fired(&r, &e, &c).is_empty());
}

#[test]
fn truncate_and_interactive_shell() {
    let c = ctx(None);
    let r = one("on: [open]\nwhen:\n  path: [\"~/.bash_history\"]\n  truncate: true\n");
    let mut trunc = file_body("/root/.bash_history");
    trunc.access = Some(Access::Write);
    trunc.flags = 0o1000 | 0o1;
    assert_eq!(
        fired(&r, &file_event(EventKind::Open, trunc.clone()), &c),
        vec!["d"]
    );
    let mut append = trunc.clone();
    append.flags = 0o2000 | 0o1;
    assert!(fired(&r, &file_event(EventKind::Open, append), &c).is_empty());
    let mut read = trunc;
    read.access = Some(Access::Read);
    read.flags = 0o1000;
    assert!(
        fired(&r, &file_event(EventKind::Open, read), &c).is_empty(),
        "O_TRUNC on a read-only open truncates nothing"
    );

    let r = one("on: [exec]\nwhen:\n  interactive_shell: true\n");
    for argv in [
        &["bash"][..],
        &["/bin/sh", "-i"],
        &["bash", "-li"],
        &["sh", "-s"],
        &["bash", "-o", "vi"],
        &["bash", "--norc"],
        &["bash", "--"],
    ] {
        assert_eq!(
            fired(&r, &exec("/usr/bin/bash", argv), &c),
            vec!["d"],
            "{argv:?}"
        );
    }
    for argv in [
        &["sh", "-c", "ls"][..],
        &["bash", "-ec", "ls"],
        &["bash", "script.sh"],
        &["bash", "-x", "script.sh"],
        &["bash", "--", "script.sh"],
        &["bash", "-o", "vi", "script.sh"],
    ] {
        assert!(
            fired(&r, &exec("/usr/bin/bash", argv), &c).is_empty(),
            "{argv:?}"
        );
    }
}
