//! Helpers for the rules tests: temporary rule files and synthetic events.

use std::net::{IpAddr, Ipv4Addr};

use monitor_common::EventKind;

use super::{
    DetectionState, EvalContext, Finding, HostAddrs, Kin, Phase, ProfileId, ResolvedNames, RuleSet,
    RulesError,
};

use crate::clock::WallTime;
use crate::sensor::event::{
    Access, Event, EventBody, ExecBody, Family, FileBody, FileOp, ForkBody, NetBody, NetOp,
    Protocol,
};
pub use crate::testutil::TempDir;

fn event(body: EventBody) -> Event {
    Event {
        time: WallTime::default(),
        pid: 812,
        tid: 812,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: "python3".to_owned(),
        exe: Some("/usr/bin/python3.11".to_owned()),
        cgroup_id: 0,
        container_id: None,
        pod_uid: None,
        container: None,
        pod: None,
        profile: None,
        phase: None,
        killed: false,
        denied: false,
        escaped: Vec::new(),
        body,
        ktime_ns: 0,
        start_time_ns: 0,
    }
}

pub fn file_body(path: &str) -> FileBody {
    FileBody {
        op: FileOp::Open,
        path: Some(path.to_owned()),
        new_path: None,
        access: None,
        created: None,
        mode: None,
        name: None,
        length: None,
        flags: 0,
        result: 3,
        fd: Some(3),
        repeats: 0,
        path_truncated: false,
        pseudo: false,
    }
}

pub fn open(path: &str, access: Access) -> Event {
    let mut b = file_body(path);
    b.access = Some(access);
    event(EventBody::File(b))
}

pub fn file_event(kind: EventKind, body: FileBody) -> Event {
    let op = FileOp::of(kind).expect("a file kind");
    event(EventBody::File(FileBody { op, ..body }))
}

pub fn exec(exe: &str, argv: &[&str]) -> Event {
    let mut e = event(EventBody::Exec(ExecBody {
        filename: exe.to_owned(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        cwd: Some("/app".to_owned()),
        euid: 0,
        egid: 0,
        argv_truncated: false,
        exe: Some(exe.to_owned()),
    }));
    e.exe = Some(exe.to_owned());
    e.comm = exe
        .rsplit('/')
        .next()
        .unwrap_or(exe)
        .chars()
        .take(15)
        .collect();
    e
}

pub fn fork(at_ns: u64) -> Event {
    let mut e = event(EventBody::Fork(ForkBody {
        child_pid: 900,
        child_start_time_ns: at_ns,
    }));
    e.ktime_ns = at_ns;
    e
}

pub fn net(
    kind: EventKind,
    proto: Protocol,
    remote: Option<(IpAddr, u16)>,
    local_port: Option<u16>,
) -> Event {
    let family = match remote.map(|(ip, _)| ip) {
        Some(IpAddr::V6(_)) => Family::Inet6,
        _ => Family::Inet,
    };
    event(EventBody::Net(NetBody {
        op: NetOp::of(kind).expect("a network kind"),
        family: Some(family),
        protocol: Some(proto),
        local_addr: None,
        local_port,
        remote_addr: remote.map(|r| r.0),
        remote_port: remote.map(|r| r.1),
        path: None,
        result: 0,
        fd: 5,
        blocked: false,
        ephemeral: false,
        in_progress: false,
    }))
}

pub fn unix_connect(path: &str) -> Event {
    event(EventBody::Net(NetBody {
        op: NetOp::Connect,
        family: Some(Family::Unix),
        protocol: None,
        local_addr: None,
        local_port: None,
        remote_addr: None,
        remote_port: None,
        path: Some(path.to_owned()),
        result: 0,
        fd: 5,
        blocked: false,
        ephemeral: false,
        in_progress: false,
    }))
}

/// Loads `files` (name, text) from a fresh temporary directory.
pub fn load(files: &[(&str, &str)]) -> Result<RuleSet, RulesError> {
    let dir = TempDir::new("rules-test");
    for (name, text) in files {
        dir.write(name, text);
    }
    RuleSet::load(&[dir.path().to_path_buf()])
}

/// Loads `files`, panicking with the rendered errors on failure.
pub fn load_ok(files: &[(&str, &str)]) -> RuleSet {
    load(files).unwrap_or_else(|e| panic!("rules failed to load:\n{e}"))
}

/// The rendered errors of loading `files`, with file names relative to the rules directory.
pub fn load_errs(files: &[(&str, &str)]) -> Vec<String> {
    let dir = TempDir::new("rules-test");
    for (name, text) in files {
        dir.write(name, text);
    }
    let prefix = format!("{}/", dir.path().display());
    match RuleSet::load(&[dir.path().to_path_buf()]) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .errors
            .iter()
            .map(|x| x.to_string().replace(&prefix, ""))
            .collect(),
    }
}

/// No names resolved.
pub struct NoHosts;

impl HostAddrs for NoHosts {
    fn addrs(&self, _host: &str) -> Vec<IpAddr> {
        Vec::new()
    }
}

impl ResolvedNames for NoHosts {
    fn resolved(&self, _ip: IpAddr, _host: &str) -> bool {
        false
    }
}

/// The nameserver of the test contexts.
pub const NAMESERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));

/// A context with no resolved hosts, [`NAMESERVER`], workload 1.
pub fn ctx(profile: Option<ProfileId>) -> EvalContext<'static> {
    static HOSTS: NoHosts = NoHosts;
    EvalContext {
        profile,
        workload: 1,
        kin: Kin::Workload(1),
        parent_exe: Some("/usr/bin/bash"),
        hosts: &HOSTS,
        resolved: &NoHosts,
        phase: Phase::Serving,
        entry_point: false,
        nameservers: &[NAMESERVER],
        parent_argv: None,
        host_wide: false,
    }
}

/// Runs `check` with a fresh state.
pub fn check(rules: &RuleSet, ev: &Event, ctx: &EvalContext<'_>) -> Vec<Finding> {
    rules.check(ev, ctx, &mut DetectionState::new())
}

/// The rule ids of `check`'s findings.
pub fn fired(rules: &RuleSet, ev: &Event, ctx: &EvalContext<'_>) -> Vec<String> {
    check(rules, ev, ctx).into_iter().map(|f| f.rule).collect()
}
