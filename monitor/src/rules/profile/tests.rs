//! Profiles: selectors, allowlists, the baseline and inheritance, checked on events.

use std::collections::HashMap;
use std::net::IpAddr;

use monitor_common::EventKind;

use crate::rules::testutil::{
    NAMESERVER, check, ctx, exec, file_body, file_event, fired, load_ok, net, open, unix_connect,
};
use crate::rules::{EvalContext, ExecInfo, ProfileId, RuleSet, Severity};
use crate::sensor::event::{Access, Protocol};

const WEB: &str = r#"
profile: web
match:
  exe: ["/usr/bin/python3*"]
  argv_contains: ["litellm"]
severity: critical
allow:
  exec: ["/usr/bin/git", "/bin/sh"]
  read: ["/app/**", "~/.cache/**"]
  write: ["/tmp/*", "/var/log/app/**"]
  connect:
    - { host: "api.openai.com", port: 443 }
    - { host: "203.0.113.9" }
    - { cidr: "10.0.0.0/8", port: 5432 }
  listen:
    - { port: 4000 }
  unix: ["/run/docker.sock"]
"#;

const BARE: &str = "profile: bare\nbaseline: false\nseverity: low\nmatch:\n  uid: [1000]\n";

fn rules() -> RuleSet {
    load_ok(&[("a-web.yaml", WEB), ("b-bare.yaml", BARE)])
}

const WEB_ID: Option<ProfileId> = Some(ProfileId(0));
const BARE_ID: Option<ProfileId> = Some(ProfileId(1));

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn info<'a>(exe: Option<&'a str>, filename: &'a str, argv: &'a [String], uid: u32) -> ExecInfo<'a> {
    ExecInfo {
        exe,
        filename,
        argv,
        uid,
        parent_exe: None,
        container_id: None,
        pod_uid: None,
        container: None,
        pod: None,
        cwd: None,
    }
}

#[test]
fn selectors_pick_the_first_matching_profile() {
    let r = rules();
    let argv: Vec<String> = ["python3", "-m", "litellm", "--port", "4000"]
        .map(String::from)
        .to_vec();
    let other: Vec<String> = ["python3", "app.py"].map(String::from).to_vec();
    assert_eq!(
        r.match_profile(&info(Some("/usr/bin/python3.11"), "python3", &argv, 0)),
        WEB_ID
    );
    assert_eq!(
        r.match_profile(&info(None, "/usr/bin/python3", &argv, 0)),
        WEB_ID,
        "filename"
    );
    assert_eq!(
        r.match_profile(&info(Some("/usr/bin/python3.11"), "python3", &other, 0)),
        None
    );
    assert_eq!(
        r.match_profile(&info(Some("/usr/bin/perl"), "perl", &argv, 1000)),
        BARE_ID
    );
    assert_eq!(r.profile_name(ProfileId(0)), "web");
    assert!(r.profile_inherits(ProfileId(0)));
    assert_eq!(r.hosts(), vec!["api.openai.com".to_owned()]);

    let sel = load_ok(&[(
        "s.yaml",
        "profile: s\ninherit: false\nmatch:\n  container_id: [\"abc*\"]\n  parent_exe: [\"/usr/bin/containerd-shim*\"]\n  pod_uid: [\"p-1\"]\n",
    )]);
    let mut x = info(Some("/bin/app"), "/bin/app", &other, 0);
    assert_eq!(sel.match_profile(&x), None);
    x.container_id = Some("abcdef");
    x.parent_exe = Some("/usr/bin/containerd-shim-runc-v2");
    x.pod_uid = Some("p-1");
    assert_eq!(sel.match_profile(&x), Some(ProfileId(0)));
    x.pod_uid = Some("p-2");
    assert_eq!(sel.match_profile(&x), None);
    assert!(!sel.profile_inherits(ProfileId(0)));
}

#[test]
fn exec_allowlist_and_entry_point() {
    let r = rules();
    let c = ctx(WEB_ID);
    assert!(fired(&r, &exec("/usr/bin/git", &["git", "pull"]), &c).is_empty());
    let f = check(&r, &exec("/usr/bin/curl", &["curl", "x"]), &c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, "profile.exec");
    assert_eq!(
        f[0].message,
        "curl (pid 812) executed /usr/bin/curl: outside profile web allow.exec"
    );
    assert_eq!(f[0].mitre, vec!["T1059"]);
    assert_eq!(f[0].severity, Severity::Critical);
    assert_eq!(f[0].profile.as_deref(), Some("web"));
    let entry = exec("/usr/bin/python3.11", &["python3", "-m", "litellm"]);
    let starting = EvalContext {
        entry_point: true,
        ..ctx(WEB_ID)
    };
    assert!(
        fired(&r, &entry, &starting).is_empty(),
        "the profile's own entry point"
    );
    assert_eq!(
        fired(&r, &entry, &c),
        vec!["profile.exec"],
        "the entry point run again from inside the workload is checked"
    );
    assert!(
        fired(&r, &exec("/usr/bin/curl", &["curl"]), &ctx(None)).is_empty(),
        "unprofiled"
    );
}

#[test]
fn reads_against_allowlist_baseline_and_proc_self() {
    let r = rules();
    let c = ctx(WEB_ID);
    for ok in [
        "/app/main.py",
        "/app/a/b/c.json",
        "/root/.cache/pip/x",
        "/home/bob/.cache/hf/model",
        "/etc/ld.so.cache",
        "/usr/lib/python3.11/os.py",
        "/proc/812/maps",
        "/proc/812/task/813/status",
        "/proc/self/fd/3",
        "/etc/resolv.conf",
    ] {
        assert!(fired(&r, &open(ok, Access::Read), &c).is_empty(), "{ok}");
    }
    let mut pipe = open("pipe:[4242]", Access::Read);
    if let crate::sensor::event::EventBody::File(f) = &mut pipe.body {
        f.pseudo = true;
    }
    assert!(
        fired(&r, &pipe, &c).is_empty(),
        "a pipe reopened via /proc is no file"
    );
    let f = check(&r, &open("/root/.ssh/id_rsa", Access::Read), &c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, "profile.read");
    assert_eq!(
        f[0].message,
        "python3 (pid 812) read /root/.ssh/id_rsa: outside profile web allow.read"
    );
    assert_eq!(f[0].mitre, vec!["T1005"]);
    assert_eq!(f[0].key, "profile.read|web|/root/.ssh/id_rsa");
    assert_eq!(
        fired(&r, &open("/proc/1/environ", Access::Read), &c),
        vec!["profile.read"]
    );
    let mut failed = open("/root/.ssh/id_rsa", Access::Read);
    if let crate::sensor::event::EventBody::File(b) = &mut failed.body {
        b.result = -13;
    }
    assert!(
        fired(&r, &failed, &c).is_empty(),
        "a failed open read nothing"
    );
    // Without the baseline, library reads are outside the footprint.
    assert_eq!(
        fired(&r, &open("/etc/ld.so.cache", Access::Read), &ctx(BARE_ID)),
        vec!["profile.read"]
    );
}

#[test]
fn writes_creates_renames_unlinks_chmods() {
    let r = rules();
    let c = ctx(WEB_ID);
    assert!(fired(&r, &open("/tmp/x", Access::Write), &c).is_empty());
    assert!(
        fired(&r, &open("/dev/null", Access::Write), &c).is_empty(),
        "baseline"
    );
    assert_eq!(
        fired(&r, &open("/tmp/a/b", Access::Write), &c),
        vec!["profile.write"]
    );
    let mut created = file_body("/app/new.txt");
    created.access = Some(Access::Read);
    created.created = Some(true);
    let f = check(&r, &file_event(EventKind::Open, created), &c);
    assert_eq!(
        f.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(),
        vec!["profile.write"]
    );
    assert_eq!(
        f[0].message,
        "python3 (pid 812) created /app/new.txt: outside profile web allow.write"
    );
    assert_eq!(f[0].mitre, vec!["T1105"]);
    assert_eq!(
        fired(&r, &open("/tmp/x", Access::ReadWrite), &c),
        vec!["profile.read"]
    );
    assert_eq!(
        fired(&r, &open("/etc/x", Access::ReadWrite), &c),
        vec!["profile.read", "profile.write"]
    );
    let mut rename = file_body("/tmp/a");
    rename.new_path = Some("/etc/cron.d/x".to_owned());
    let f = check(&r, &file_event(EventKind::Rename, rename), &c);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].key, "profile.write|web|/etc/cron.d/x");
    assert_eq!(
        f[0].message,
        "python3 (pid 812) renamed /tmp/a to /etc/cron.d/x: outside profile web allow.write"
    );
    assert_eq!(
        fired(
            &r,
            &file_event(EventKind::Unlink, file_body("/etc/passwd")),
            &c
        ),
        vec!["profile.write"]
    );
    assert!(fired(&r, &file_event(EventKind::Chmod, file_body("/tmp/x")), &c).is_empty());
    let mut failed = file_body("/etc/passwd");
    failed.result = -1;
    assert!(fired(&r, &file_event(EventKind::Unlink, failed), &c).is_empty());
}

#[test]
fn connects_hosts_cidrs_ports_and_dns() {
    let r = rules();
    let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
    hosts.insert(
        "api.openai.com".to_owned(),
        vec![ip("104.18.7.192"), ip("2606:4700::6812:7c0")],
    );
    let c = EvalContext {
        hosts: &hosts,
        ..ctx(WEB_ID)
    };
    let connect = |addr: &str, port: u16| {
        net(
            EventKind::Connect,
            Protocol::Tcp,
            Some((ip(addr), port)),
            None,
        )
    };
    for (a, p) in [
        ("104.18.7.192", 443),
        ("2606:4700::6812:7c0", 443),
        ("203.0.113.9", 8080),
        ("10.2.3.4", 5432),
        ("::ffff:10.2.3.4", 5432),
    ] {
        assert!(fired(&r, &connect(a, p), &c).is_empty(), "{a}:{p}");
    }
    let f = check(&r, &connect("104.18.7.192", 80), &c);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].message,
        "python3 (pid 812) connected to 104.18.7.192:80/tcp: outside profile web allow.connect"
    );
    assert_eq!(f[0].mitre, vec!["T1071", "T1041"]);
    assert_eq!(f[0].key, "profile.connect|web|104.18.7.192:80");
    assert_eq!(
        fired(&r, &connect("10.2.3.4", 22), &c),
        vec!["profile.connect"]
    );
    assert_eq!(
        fired(&r, &connect("104.18.7.192", 443), &ctx(WEB_ID)),
        vec!["profile.connect"],
        "unresolved"
    );
    let mut failed = connect("8.8.8.8", 443);
    if let crate::sensor::event::EventBody::Net(n) = &mut failed.body {
        n.result = -111;
    }
    assert_eq!(
        fired(&r, &failed, &c),
        vec!["profile.connect"],
        "attempts count"
    );
    let dns = |addr: IpAddr, proto| net(EventKind::Send, proto, Some((addr, 53)), None);
    assert!(fired(&r, &dns(NAMESERVER, Protocol::Udp), &c).is_empty());
    assert!(
        fired(
            &r,
            &net(
                EventKind::Connect,
                Protocol::Tcp,
                Some((NAMESERVER, 53)),
                None
            ),
            &c
        )
        .is_empty()
    );
    assert_eq!(
        fired(&r, &dns(ip("1.1.1.1"), Protocol::Udp), &c),
        vec!["profile.connect"]
    );
    assert!(
        fired(&r, &dns(ip("1.1.1.1"), Protocol::Tcp), &c).is_empty(),
        "TCP sends: checked at connect"
    );
    assert_eq!(
        fired(&r, &dns(NAMESERVER, Protocol::Udp), &ctx(BARE_ID)),
        vec!["profile.connect"],
        "no baseline"
    );
}

#[test]
fn listen_bind_accept_and_unix() {
    let r = rules();
    let c = ctx(WEB_ID);
    let local = |kind, proto, port| net(kind, proto, None, Some(port));
    assert!(fired(&r, &local(EventKind::Listen, Protocol::Tcp, 4000), &c).is_empty());
    let f = check(&r, &local(EventKind::Listen, Protocol::Tcp, 8080), &c);
    assert_eq!(f[0].rule, "profile.listen");
    assert_eq!(
        f[0].message,
        "python3 (pid 812) listened on port 8080/tcp: outside profile web allow.listen"
    );
    assert_eq!(f[0].mitre, vec!["T1571"]);
    assert_eq!(
        fired(&r, &local(EventKind::Bind, Protocol::Udp, 9999), &c),
        vec!["profile.listen"]
    );
    assert!(fired(&r, &local(EventKind::Bind, Protocol::Udp, 0), &c).is_empty());
    // A TCP bind outside the list too: enforce mode refuses it before the listen.
    assert_eq!(
        fired(&r, &local(EventKind::Bind, Protocol::Tcp, 9999), &c),
        vec!["profile.listen"]
    );
    assert!(fired(&r, &local(EventKind::Bind, Protocol::Tcp, 0), &c).is_empty());
    let accept = |port| {
        net(
            EventKind::Accept,
            Protocol::Tcp,
            Some((ip("192.0.2.1"), 50000)),
            Some(port),
        )
    };
    assert!(fired(&r, &accept(4000), &c).is_empty());
    let f = check(&r, &accept(22), &c);
    assert_eq!(f[0].rule, "profile.accept");
    assert_eq!(
        f[0].message,
        "python3 (pid 812) accepted 192.0.2.1:50000 on port 22/tcp: outside profile web allow.listen"
    );
    assert!(fired(&r, &unix_connect("/run/docker.sock"), &c).is_empty());
    let f = check(&r, &unix_connect("/run/containerd.sock"), &c);
    assert_eq!(f[0].rule, "profile.unix");
    assert_eq!(f[0].mitre, vec!["T1559"]);
    assert_eq!(
        f[0].message,
        "python3 (pid 812) connected to unix:/run/containerd.sock: outside profile web allow.unix"
    );
    assert!(
        fired(&r, &unix_connect("/run/containerd.sock"), &ctx(BARE_ID)).is_empty(),
        "no unix list"
    );
    assert_eq!(
        fired(&r, &accept(22), &ctx(BARE_ID)),
        vec!["profile.accept"]
    );
    let f = check(&r, &accept(22), &ctx(BARE_ID));
    assert_eq!(f[0].severity, Severity::Low);
}

#[test]
fn a_kill_is_never_silent() {
    let r = rules();
    let c = ctx(WEB_ID);
    // The lists allow git; the kernel killed it anyway (its form of the lists is narrower).
    let mut ev = exec("/usr/bin/git", &["git", "pull"]);
    assert!(fired(&r, &ev, &c).is_empty());
    ev.killed = true;
    let f = check(&r, &ev, &c);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule, "profile.exec");
    assert!(f[0].enforceable);
    assert!(
        f[0].message.ends_with(
            "killed by the kernel: outside profile web allow.exec as the kernel enforces it \
             (see `monitor rules check`)"
        ),
        "{}",
        f[0].message
    );
    // A killed step the lists do not allow is reported once, as usual.
    let mut curl = exec("/usr/bin/curl", &["curl"]);
    curl.killed = true;
    let f = check(&r, &curl, &c);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].message.ends_with("outside profile web allow.exec"),
        "{}",
        f[0].message
    );
}

/// An open refused with EPERM (BPF LSM): the attempt is the step judged, not a failed open.
fn refused_open(path: &str) -> crate::sensor::Event {
    let mut b = crate::rules::testutil::file_body(path);
    b.access = Some(Access::Read);
    b.result = -1;
    b.fd = None;
    let mut ev = crate::rules::testutil::file_event(EventKind::Open, b);
    ev.denied = true;
    ev
}

#[test]
fn an_open_the_kernel_refused_is_judged_and_never_silent() {
    let r = rules();
    let c = ctx(WEB_ID);
    let mut ev = refused_open("/root/.ssh/id_rsa");
    ev.denied = false;
    assert!(fired(&r, &ev, &c).is_empty(), "a failed open is no step");
    ev.denied = true;
    assert_eq!(fired(&r, &ev, &c), vec!["profile.read"]);
    assert!(ev.blocked(), "the alert says blocked");
    // Refused although the lists allow it (the kernel's form of them is narrower): said.
    let f = check(&r, &refused_open("/app/model.bin"), &c);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].message.ends_with(
            "refused by the kernel: outside profile web allow.read as the kernel enforces it \
             (see `monitor rules check`)"
        ),
        "{}",
        f[0].message
    );
}
