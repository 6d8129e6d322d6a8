//! Workload profiles: selectors that say which exec starts a profile, and allowlists (the
//! footprint) checked for every event of a process under the profile.

use std::net::IpAddr;

use globset::{GlobSet, GlobSetBuilder};
use marked_yaml::Spanned;
use monitor_common::EventKind;

use super::load::Sink;
use super::pattern::{
    CidrTable, add_glob, add_static, build_set, canonical_ip, glob_set, is_dns_name, is_rule_name,
    line_of, parse_net,
};
use super::schema::{Mode, ProfileDoc, Severity};
use super::view::View;
use super::{EvalContext, ExecInfo, Finding};
use crate::sensor::event::{Access, Family, Protocol};

/// Reads every process may do when `baseline: true`.
const BASELINE_READ: &[&str] = &[
    "/etc/ld.so.cache",
    "/lib/**",
    "/lib64/**",
    "/usr/lib/**",
    "/usr/lib64/**",
    "/usr/local/lib/**",
    "/usr/share/locale/**",
    "/usr/share/zoneinfo/**",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/passwd",
    "/etc/group",
    "/dev/null",
    "/dev/urandom",
    "/dev/random",
    "/proc/self/**",
    "/sys/devices/system/cpu/**",
    "/sys/fs/cgroup/**",
];

/// Writes every process may do when `baseline: true`.
const BASELINE_WRITE: &[&str] = &["/dev/null"];

/// Which allowlist an event falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Category {
    Exec,
    Read,
    Write,
    Connect,
    Listen,
    Accept,
    Unix,
}

impl Category {
    pub fn rule(self) -> &'static str {
        match self {
            Self::Exec => "profile.exec",
            Self::Read => "profile.read",
            Self::Write => "profile.write",
            Self::Connect => "profile.connect",
            Self::Listen => "profile.listen",
            Self::Accept => "profile.accept",
            Self::Unix => "profile.unix",
        }
    }

    /// The allowlist the event broke, as written in the profile.
    fn allow_key(self) -> &'static str {
        match self {
            Self::Exec => "allow.exec",
            Self::Read => "allow.read",
            Self::Write => "allow.write",
            Self::Connect => "allow.connect",
            Self::Listen | Self::Accept => "allow.listen",
            Self::Unix => "allow.unix",
        }
    }

    pub fn mitre(self) -> &'static [&'static str] {
        match self {
            Self::Exec => &["T1059"],
            Self::Read => &["T1005"],
            Self::Write => &["T1105"],
            Self::Connect => &["T1071", "T1041"],
            Self::Listen | Self::Accept => &["T1571"],
            Self::Unix => &["T1559"],
        }
    }
}

/// `match:` selectors, compiled.
#[derive(Debug, Default)]
struct Selectors {
    exe: Option<GlobSet>,
    argv_contains: Vec<String>,
    parent_exe: Option<GlobSet>,
    container_id: Option<GlobSet>,
    pod_uid: Option<GlobSet>,
    uid: Option<Vec<u32>>,
}

/// A compiled profile.
#[derive(Debug)]
pub(crate) struct Profile {
    pub name: String,
    pub severity: Severity,
    pub inherit: bool,
    sel: Selectors,
    exec: GlobSet,
    read: GlobSet,
    write: GlobSet,
    nets: CidrTable,
    /// DNS names with an optional port; addresses come from [`super::HostAddrs`].
    hosts: Vec<(String, Option<u16>)>,
    listen: Vec<u16>,
    unix: Option<GlobSet>,
    baseline: bool,
}

impl Profile {
    pub fn compile(doc: ProfileDoc, sink: &mut Sink<'_>) -> Profile {
        if !is_rule_name(&doc.profile) {
            sink.error(line_of(&doc.profile), "profile", bad_name(&doc.profile));
        }
        if let Some(mode) = &doc.mode
            && **mode == Mode::Enforce
        {
            sink.error(
                line_of(mode),
                "mode",
                "mode `enforce` is not supported yet; use `alert`",
            );
        }
        let baseline = doc.baseline.unwrap_or(true);
        let sel = compile_selectors(&doc.selectors, sink);
        let allow = doc.allow.unwrap_or_default();
        let list = |l: &Option<Vec<Spanned<String>>>| l.as_deref().unwrap_or(&[]).to_vec();
        let with_baseline =
            |key: &str, l: &Option<Vec<Spanned<String>>>, base: &[&str], sink: &mut Sink<'_>| {
                let mut b = GlobSetBuilder::new();
                for (i, p) in list(l).iter().enumerate() {
                    add_glob(&mut b, p, &format!("{key}[{i}]"), sink);
                }
                if baseline {
                    add_static(&mut b, base);
                }
                build_set(b)
            };
        let read = with_baseline("allow.read", &allow.read, BASELINE_READ, sink);
        let write = with_baseline("allow.write", &allow.write, BASELINE_WRITE, sink);
        let exec = glob_set(&list(&allow.exec), "allow.exec", sink);
        let unix = allow.unix.as_ref().map(|l| glob_set(l, "allow.unix", sink));
        let mut nets = CidrTable::default();
        let mut hosts = Vec::new();
        for (i, entry) in allow.connect.iter().flatten().enumerate() {
            let key = format!("allow.connect[{i}]");
            match (&entry.host, &entry.cidr) {
                (Some(h), None) => {
                    if let Ok(ip) = h.parse::<IpAddr>() {
                        nets.push(canonical_ip(ip).into(), entry.port);
                    } else if is_dns_name(h) {
                        hosts.push((h.trim_end_matches('.').to_ascii_lowercase(), entry.port));
                    } else {
                        sink.error(
                            line_of(h),
                            &format!("{key}.host"),
                            format!(
                                "invalid host {:?}: expected a DNS name or an IP address",
                                h.as_str()
                            ),
                        );
                    }
                }
                (None, Some(c)) => match parse_net(c) {
                    Ok(net) => nets.push(net, entry.port),
                    Err(e) => sink.error(line_of(c), &format!("{key}.cidr"), e),
                },
                (Some(_), Some(_)) | (None, None) => sink.error(
                    line_of(entry),
                    &key,
                    "give exactly one of `host` or `cidr` (and optionally `port`)",
                ),
            }
        }
        let listen = allow.listen.iter().flatten().map(|l| l.port).collect();
        Profile {
            name: doc.profile.to_string(),
            severity: doc.severity.unwrap_or(Severity::High),
            inherit: doc.inherit.unwrap_or(true),
            sel,
            exec,
            read,
            write,
            nets,
            hosts,
            listen,
            unix,
            baseline,
        }
    }

    /// DNS names the agent must resolve for this profile.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|(h, _)| h.as_str())
    }

    /// Whether an exec starts this profile: every given selector holds.
    pub fn matches(&self, x: &ExecInfo<'_>) -> bool {
        let s = &self.sel;
        let opt = |set: &Option<GlobSet>, v: Option<&str>| {
            set.as_ref()
                .is_none_or(|set| v.is_some_and(|v| set.is_match(v)))
        };
        s.exe
            .as_ref()
            .is_none_or(|set| x.exe.is_some_and(|e| set.is_match(e)) || set.is_match(x.filename))
            && s.argv_contains
                .iter()
                .all(|needle| x.argv.iter().any(|a| a.contains(needle.as_str())))
            && s.uid.as_ref().is_none_or(|u| u.contains(&x.uid))
            && opt(&s.parent_exe, x.parent_exe)
            && opt(&s.container_id, x.container_id)
            && opt(&s.pod_uid, x.pod_uid)
    }

    /// Checks one event of a process under this profile against its allowlists.
    pub fn check(&self, v: &View<'_>, ctx: &EvalContext<'_>, out: &mut Vec<Finding>) {
        let ok = !v.failed();
        match v.ev.kind {
            EventKind::Exec => {
                let Some(x) = v.exec else { return };
                let allowed = v.exe.is_some_and(|e| self.exec.is_match(e))
                    || self.exec.is_match(&x.filename)
                    // The profile's own entry point: an exec its selectors match.
                    || self.matches(&ExecInfo {
                        exe: v.exe,
                        filename: &x.filename,
                        argv: &x.argv,
                        uid: v.ev.uid,
                        parent_exe: ctx.parent_exe,
                        container_id: v.ev.container_id.as_deref(),
                        pod_uid: v.ev.pod_uid.as_deref(),
                    });
                if !allowed {
                    out.push(self.violation(Category::Exec, v, v.exe.unwrap_or("?")));
                }
            }
            EventKind::Fork | EventKind::Exit | EventKind::Memfd => {}
            EventKind::Open if ok => {
                let Some(path) = v.path.as_deref() else {
                    return;
                };
                let (read, write) = match v.access() {
                    Some(Access::Read) | None => (true, v.created()),
                    Some(Access::Write) => (false, true),
                    Some(Access::ReadWrite) => (true, true),
                };
                if read && !self.read.is_match(path) {
                    out.push(self.violation(Category::Read, v, path));
                }
                if write && !self.write.is_match(path) {
                    out.push(self.violation(Category::Write, v, path));
                }
            }
            EventKind::Unlink | EventKind::Chmod | EventKind::Rename if ok => {
                for path in [v.path.as_deref(), v.new_path.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    if !self.write.is_match(path) {
                        out.push(self.violation(Category::Write, v, path));
                    }
                }
            }
            EventKind::Open | EventKind::Unlink | EventKind::Chmod | EventKind::Rename => {}
            EventKind::Connect | EventKind::Send => self.check_connect(v, ctx, out),
            EventKind::Listen if ok => self.check_port(Category::Listen, v, out),
            EventKind::Bind if ok && v.protocol() == Some(Protocol::Udp) => {
                if v.local_port().is_some_and(|p| p != 0) {
                    self.check_port(Category::Listen, v, out);
                }
            }
            EventKind::Accept if ok => self.check_port(Category::Accept, v, out),
            EventKind::Listen | EventKind::Bind | EventKind::Accept => {}
        }
    }

    fn check_connect(&self, v: &View<'_>, ctx: &EvalContext<'_>, out: &mut Vec<Finding>) {
        if v.family() == Some(Family::Unix) {
            if let (Some(unix), Some(path)) = (&self.unix, v.path.as_deref())
                && !unix.is_match(path)
            {
                out.push(self.violation(Category::Unix, v, path));
            }
            return;
        }
        // Sends on connected TCP sockets were checked at connect.
        if v.ev.kind == EventKind::Send && v.protocol() != Some(Protocol::Udp) {
            return;
        }
        let Some(ip) = v.remote else { return };
        let port = v.remote_port();
        if !self.connect_allowed(ip, port, ctx) {
            out.push(self.violation(Category::Connect, v, &v.remote_object()));
        }
    }

    fn connect_allowed(&self, ip: IpAddr, port: Option<u16>, ctx: &EvalContext<'_>) -> bool {
        if self.baseline
            && port == Some(53)
            && ctx.nameservers.iter().any(|n| canonical_ip(*n) == ip)
        {
            return true;
        }
        self.nets.contains(ip, port)
            || self.hosts.iter().any(|(h, p)| {
                (p.is_none() || *p == port)
                    && ctx
                        .hosts
                        .addrs(h)
                        .into_iter()
                        .any(|a| canonical_ip(a) == ip)
            })
    }

    fn check_port(&self, cat: Category, v: &View<'_>, out: &mut Vec<Finding>) {
        let Some(port) = v.local_port() else { return };
        if !self.listen.contains(&port) {
            out.push(self.violation(cat, v, &format!("port {port}")));
        }
    }

    fn violation(&self, cat: Category, v: &View<'_>, object: &str) -> Finding {
        let rule = cat.rule();
        Finding {
            rule: rule.to_owned(),
            severity: self.severity,
            mitre: cat.mitre().iter().map(|m| (*m).to_owned()).collect(),
            profile: Some(self.name.clone()),
            message: format!(
                "{} {}: outside profile {} {}",
                v.who(),
                v.action(),
                self.name,
                cat.allow_key()
            ),
            key: format!("{rule}|{}|{object}", self.name),
        }
    }
}

fn compile_selectors(sel: &Spanned<super::schema::Selectors>, sink: &mut Sink<'_>) -> Selectors {
    let mut non_empty = |l: Option<usize>, key: &str, empty: bool| {
        if empty {
            sink.error(
                l,
                key,
                "empty list: it would match nothing; remove the key or add entries",
            );
        }
    };
    let line = line_of(sel);
    non_empty(
        line,
        "match.exe",
        sel.exe.as_ref().is_some_and(Vec::is_empty),
    );
    non_empty(
        line,
        "match.argv_contains",
        sel.argv_contains.as_ref().is_some_and(Vec::is_empty),
    );
    non_empty(
        line,
        "match.parent_exe",
        sel.parent_exe.as_ref().is_some_and(Vec::is_empty),
    );
    non_empty(
        line,
        "match.container_id",
        sel.container_id.as_ref().is_some_and(Vec::is_empty),
    );
    non_empty(
        line,
        "match.pod_uid",
        sel.pod_uid.as_ref().is_some_and(Vec::is_empty),
    );
    non_empty(
        line,
        "match.uid",
        sel.uid.as_ref().is_some_and(Vec::is_empty),
    );
    let any = sel.exe.is_some()
        || sel.argv_contains.is_some()
        || sel.parent_exe.is_some()
        || sel.container_id.is_some()
        || sel.pod_uid.is_some()
        || sel.uid.is_some();
    if !any {
        sink.error(
            line,
            "match",
            "no selector: give at least one of exe, argv_contains, parent_exe, container_id, \
             pod_uid, uid",
        );
    }
    let set = |l: &Option<Vec<Spanned<String>>>, key: &str, sink: &mut Sink<'_>| {
        l.as_ref().map(|l| glob_set(l, key, sink))
    };
    Selectors {
        exe: set(&sel.exe, "match.exe", sink),
        argv_contains: sel.argv_contains.clone().unwrap_or_default(),
        parent_exe: set(&sel.parent_exe, "match.parent_exe", sink),
        container_id: set(&sel.container_id, "match.container_id", sink),
        pod_uid: set(&sel.pod_uid, "match.pod_uid", sink),
        uid: sel.uid.clone(),
    }
}

pub(crate) fn bad_name(name: &str) -> String {
    format!(
        "invalid name {name:?}: use lowercase letters, digits, `.`, `_` and `-`, starting with a \
         letter or digit"
    )
}
