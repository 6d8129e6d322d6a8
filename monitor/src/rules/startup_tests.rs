//! Profiles with a `startup:` block, `!` exclusions in path lists, and connects allowed by the
//! names the workload itself resolved.

use std::net::IpAddr;

use monitor_common::EventKind;

use super::testutil::{check, ctx, exec, fired, load_errs, load_ok, net, open};
use super::{EvalContext, Phase, ProfileId, ResolvedNames};
use crate::sensor::event::{Access, Protocol};

const SERVER: &str = r#"
profile: server
match:
  program: ["server.py"]
allow:
  read: ["/app/**", "!**/.env", "/app/.env.ok", "~/.cache/**", "!~/.cache/secret*"]
  write: ["/tmp/**"]
  connect:
    - { host: "provider.example", port: 443 }
  listen:
    - { port: 8000 }
startup:
  exec: ["/usr/bin/uname"]
  read: ["/etc/timezone"]
  connect:
    - { host: "raw.githubusercontent.com", port: 443 }
startup_secs: 30
"#;

const ID: Option<ProfileId> = Some(ProfileId(0));

fn in_phase(phase: Phase) -> EvalContext<'static> {
    EvalContext { phase, ..ctx(ID) }
}

#[test]
fn startup_lists_hold_only_while_starting() {
    let r = load_ok(&[("s.yaml", SERVER)]);
    let uname = exec("/usr/bin/uname", &["uname", "-p"]);
    let tz = open("/etc/timezone", Access::Read);
    let (starting, serving) = (in_phase(Phase::Startup), in_phase(Phase::Serving));
    assert!(fired(&r, &uname, &starting).is_empty());
    assert!(fired(&r, &tz, &starting).is_empty());
    let f = check(&r, &uname, &serving);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0].message,
        "uname (pid 812) executed /usr/bin/uname: outside profile server allow.exec"
    );
    assert_eq!(fired(&r, &tz, &serving), vec!["profile.read"]);
    // `allow` holds in both phases; a violation while starting names both lists.
    assert!(fired(&r, &open("/app/main.py", Access::Read), &serving).is_empty());
    let f = check(&r, &open("/etc/shadow", Access::Read), &starting);
    assert_eq!(
        f[0].message,
        "python3 (pid 812) read /etc/shadow: outside profile server allow.read and startup.read"
    );
    assert_eq!(r.profile_startup(ProfileId(0)).as_secs(), 30);
    assert_eq!(
        r.hosts(),
        vec![
            "provider.example".to_owned(),
            "raw.githubusercontent.com".to_owned()
        ]
    );
}

#[test]
fn exclusions_take_paths_out_of_globs_but_not_out_of_exact_entries() {
    let r = load_ok(&[("s.yaml", SERVER)]);
    let c = in_phase(Phase::Serving);
    let read = |p: &str| fired(&r, &open(p, Access::Read), &c);
    assert!(read("/app/config.yaml").is_empty());
    assert!(read("/app").is_empty(), "dir/** allows dir");
    assert_eq!(read("/app/.env"), vec!["profile.read"]);
    assert_eq!(read("/app/sub/.env"), vec!["profile.read"]);
    assert!(read("/app/.env.ok").is_empty(), "listed exactly");
    assert!(read("/root/.cache/models/a.bin").is_empty());
    assert_eq!(read("/home/u/.cache/secret-token"), vec!["profile.read"]);
    // Exclusions also take paths out of the baseline's globs.
    assert_eq!(read("/usr/lib/app/.env"), vec!["profile.read"]);
    assert!(read("/usr/lib/x86_64-linux-gnu/libc.so.6").is_empty());
}

struct Resolved(&'static str, IpAddr);

impl ResolvedNames for Resolved {
    fn resolved(&self, ip: IpAddr, host: &str) -> bool {
        host == self.0 && ip == self.1
    }
}

#[test]
fn a_host_entry_allows_the_addresses_the_workload_resolved_it_to() {
    let r = load_ok(&[("s.yaml", SERVER)]);
    let addr: IpAddr = "198.51.100.7".parse().unwrap();
    let connect = |port| net(EventKind::Connect, Protocol::Tcp, Some((addr, port)), None);
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    let c = in_phase(Phase::Serving);
    assert_eq!(fired(&r, &connect(443), &c), vec!["profile.connect"]);
    let resolved = Resolved("provider.example", addr);
    let c = EvalContext {
        resolved: &resolved,
        ..in_phase(Phase::Serving)
    };
    assert!(fired(&r, &connect(443), &c).is_empty());
    assert!(
        fired(
            &r,
            &net(EventKind::Connect, Protocol::Tcp, Some((mapped, 443)), None),
            &c
        )
        .is_empty(),
        "IPv4-mapped"
    );
    assert_eq!(fired(&r, &connect(80), &c), vec!["profile.connect"], "port");
    let other = Resolved("evil.example", addr);
    let c = EvalContext {
        resolved: &other,
        ..in_phase(Phase::Serving)
    };
    assert_eq!(fired(&r, &connect(443), &c), vec!["profile.connect"]);
}

#[test]
fn startup_errors_name_their_keys() {
    let errs = load_errs(&[(
        "s.yaml",
        "profile: s\nmatch:\n  uid: [0]\nstartup:\n  read: [\"etc/x\"]\n  reed: []\nstartup_secs: 0\n",
    )]);
    assert_eq!(
        errs,
        vec![
            "s.yaml:5: key `startup.read[0]`: \"etc/x\" is not an absolute path: paths are matched as the kernel resolved them, e.g. \"/app/**\", \"~/.cache/**\" or \"**/.env\"",
            "s.yaml:6: key `startup.reed`: unknown key (expected one of: exec, read, write, connect, listen, unix)",
            "s.yaml:7: key `startup_secs`: 0 would end start-up before it begins: give the longest start-up in seconds, or remove the `startup:` block",
        ]
    );
    let errs = load_errs(&[(
        "s.yaml",
        "profile: s\nmatch:\n  uid: [0]\nstartup_secs: 18446744073709551615\n",
    )]);
    assert_eq!(
        errs,
        vec![
            "s.yaml:4: key `startup_secs`: 18446744073709551615 is more than a day (86400): a start-up that long is the workload's normal running, which belongs in `allow:`",
        ]
    );
}

#[test]
fn tool_spawn_detections_leave_listed_programs_to_the_profile() {
    const RECON: &str = "detection: recon\ndescription: A server ran a recon tool\nseverity: medium\nmitre: [T1082]\nscope: profiled\non: [exec]\nwhen:\n  exe: [\"/usr/bin/uname\", \"/usr/bin/id\"]\n";
    let r = load_ok(&[("s.yaml", SERVER), ("d.yaml", RECON)]);
    let uname = exec("/usr/bin/uname", &["uname", "-p"]);
    assert!(
        fired(&r, &uname, &in_phase(Phase::Startup)).is_empty(),
        "startup.exec lists it"
    );
    assert_eq!(
        fired(&r, &uname, &in_phase(Phase::Serving)),
        vec!["profile.exec", "recon"],
        "not listed while serving"
    );
    assert_eq!(
        fired(&r, &exec("/usr/bin/id", &["id"]), &in_phase(Phase::Startup)),
        vec!["profile.exec", "recon"]
    );
    // A glob allows it, but does not name it: the detection still fires.
    let globbed = SERVER.replace("exec: [\"/usr/bin/uname\"]", "exec: [\"/usr/bin/*\"]");
    let r = load_ok(&[("s.yaml", &globbed), ("d.yaml", RECON)]);
    assert_eq!(fired(&r, &uname, &in_phase(Phase::Startup)), vec!["recon"]);
}
