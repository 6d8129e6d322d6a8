//! Workload profiles: selectors that say which exec starts a profile, and allowlists (the
//! footprint) checked for every event of a process under the profile. A profile's optional
//! `startup:` block adds to `allow:` while its workload starts: from the exec that started it
//! until it first listens, or `startup_secs`, whichever comes first.

use std::net::IpAddr;

use monitor_common::EventKind;

use super::allow::{AllowLists, PathList};
use super::load::Sink;
use super::pattern::{canonical_ip, is_rule_name, line_of};
use super::schema::{Mode, ProfileDoc, Severity};
use super::selectors::Selectors;
use super::view::View;
use super::{EvalContext, ExecInfo, Finding, Phase};
use crate::sensor::event::{Access, Family, Protocol};

/// Start-up phase length when a profile with a `startup:` block gives no `startup_secs`.
pub(crate) const DEFAULT_STARTUP_SECS: u64 = 120;

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

    /// The start-up list of the same kind.
    fn startup_key(self) -> &'static str {
        match self {
            Self::Exec => "startup.exec",
            Self::Read => "startup.read",
            Self::Write => "startup.write",
            Self::Connect => "startup.connect",
            Self::Listen | Self::Accept => "startup.listen",
            Self::Unix => "startup.unix",
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

/// A compiled profile.
#[derive(Debug)]
pub(crate) struct Profile {
    pub name: String,
    pub severity: Severity,
    pub inherit: bool,
    sel: Selectors,
    allow: AllowLists,
    /// What start-up may do beyond `allow` (`None`: no `startup:` block).
    startup: Option<AllowLists>,
    /// Longest start-up phase.
    pub startup_secs: u64,
    baseline: bool,
    /// The file it was loaded from.
    pub source: std::path::PathBuf,
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
        let sel = Selectors::compile(&doc.selectors, sink);
        let allow = AllowLists::compile(&doc.allow.unwrap_or_default(), "allow", baseline, sink);
        let startup = doc
            .startup
            .as_ref()
            .map(|s| AllowLists::compile(s, "startup", false, sink));
        if let Some(secs) = &doc.startup_secs
            && **secs == 0
        {
            sink.error(
                line_of(secs),
                "startup_secs",
                "0 would end start-up before it begins: give the longest start-up in seconds, \
                 or remove the `startup:` block",
            );
        }
        Profile {
            name: doc.profile.to_string(),
            severity: doc.severity.unwrap_or(Severity::High),
            inherit: doc.inherit.unwrap_or(true),
            sel,
            allow,
            startup,
            startup_secs: doc.startup_secs.map_or(DEFAULT_STARTUP_SECS, |s| *s),
            baseline,
            source: sink.file.to_path_buf(),
        }
    }

    /// DNS names the agent must resolve for this profile.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.allow
            .hosts()
            .chain(self.startup.iter().flat_map(AllowLists::hosts))
    }

    /// The compiled `match:` selectors.
    pub fn selectors(&self) -> &Selectors {
        &self.sel
    }

    /// Whether an exec starts this profile: every given selector holds.
    pub fn matches(&self, x: &ExecInfo<'_>) -> bool {
        self.sel.matches(x)
    }

    /// Whether `allow`, or in the start-up phase also `startup`, allows it (`test`).
    fn allows(&self, phase: Phase, test: impl Fn(&AllowLists) -> bool) -> bool {
        test(&self.allow) || (phase == Phase::Startup && self.startup.as_ref().is_some_and(&test))
    }

    fn allows_path(&self, phase: Phase, list: fn(&AllowLists) -> &PathList, path: &str) -> bool {
        self.allows(phase, |l| list(l).is_match(path))
    }

    /// Whether an exec event's program is listed by its exact path (not through a glob) in the
    /// exec lists of this phase: the profile names it as normal for this workload.
    pub fn lists_exec(&self, v: &View<'_>, phase: Phase) -> bool {
        let Some(x) = v.exec else { return false };
        let listed = |p: &str| self.allows(phase, |l| l.exec.lists_exactly(p));
        v.exe.is_some_and(listed) || listed(&x.filename)
    }

    /// Checks one event of a process under this profile against its allowlists.
    pub fn check(&self, v: &View<'_>, ctx: &EvalContext<'_>, out: &mut Vec<Finding>) {
        let ok = !v.failed();
        let phase = ctx.phase;
        match v.ev.kind {
            EventKind::Exec => {
                let Some(x) = v.exec else { return };
                let allowed = ctx.entry_point
                    || v.exe
                        .is_some_and(|e| self.allows_path(phase, |l| &l.exec, e))
                    || self.allows_path(phase, |l| &l.exec, &x.filename);
                if !allowed {
                    out.push(self.violation(Category::Exec, v, v.exe.unwrap_or("?"), phase));
                }
            }
            EventKind::Fork | EventKind::Exit | EventKind::Memfd | EventKind::Dns => {}
            EventKind::Open if ok => {
                let Some(path) = v.path.as_deref() else {
                    return;
                };
                let (read, write) = match v.access() {
                    Some(Access::Read) | None => (true, v.created()),
                    Some(Access::Write) => (false, true),
                    Some(Access::ReadWrite) => (true, true),
                };
                if read && !self.allows_path(phase, |l| &l.read, path) {
                    out.push(self.violation(Category::Read, v, path, phase));
                }
                if write && !self.allows_path(phase, |l| &l.write, path) {
                    out.push(self.violation(Category::Write, v, path, phase));
                }
            }
            EventKind::Unlink | EventKind::Chmod | EventKind::Rename if ok => {
                for path in [v.path.as_deref(), v.new_path.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    if !self.allows_path(phase, |l| &l.write, path) {
                        out.push(self.violation(Category::Write, v, path, phase));
                    }
                }
            }
            EventKind::Open | EventKind::Unlink | EventKind::Chmod | EventKind::Rename => {}
            EventKind::Connect | EventKind::Send => self.check_connect(v, ctx, out),
            EventKind::Listen if ok => self.check_port(Category::Listen, v, phase, out),
            EventKind::Bind if ok && v.protocol() == Some(Protocol::Udp) => {
                if v.local_port().is_some_and(|p| p != 0) {
                    self.check_port(Category::Listen, v, phase, out);
                }
            }
            EventKind::Accept if ok => self.check_port(Category::Accept, v, phase, out),
            EventKind::Listen | EventKind::Bind | EventKind::Accept => {}
        }
    }

    fn check_connect(&self, v: &View<'_>, ctx: &EvalContext<'_>, out: &mut Vec<Finding>) {
        let phase = ctx.phase;
        if v.family() == Some(Family::Unix) {
            // A failed connect to a unix socket reached nothing.
            if let Some(path) = v.path.as_deref().filter(|_| !v.failed())
                && (self.allow.unix.is_some()
                    || self.startup.as_ref().is_some_and(|s| s.unix.is_some()))
                && !self.allows(phase, |l| l.unix.as_ref().is_some_and(|u| u.is_match(path)))
            {
                out.push(self.violation(Category::Unix, v, path, phase));
            }
            return;
        }
        // TCP is checked at connect, UDP at send: a UDP connect sends nothing (resolvers
        // connect to port 0 only to learn a source address).
        let udp = v.protocol() == Some(Protocol::Udp);
        if (v.ev.kind == EventKind::Send) != udp {
            return;
        }
        let Some(ip) = v.remote else { return };
        let port = v.remote_port();
        if !self.connect_allowed(ip, port, ctx) {
            out.push(self.violation(Category::Connect, v, &v.remote_object(), phase));
        }
    }

    /// See [`super::RuleSet::allows_dns_server`]; `ip` is canonical.
    pub fn allows_dns_server(
        &self,
        ip: IpAddr,
        hosts: &dyn super::HostAddrs,
        nameservers: &[IpAddr],
    ) -> bool {
        let port = Some(53);
        (self.baseline && nameservers.iter().any(|n| canonical_ip(*n) == ip))
            || [Some(&self.allow), self.startup.as_ref()]
                .into_iter()
                .flatten()
                .any(|l| l.connect(ip, port, &|h| hosts.addrs(h), &|_| false))
    }

    fn connect_allowed(&self, ip: IpAddr, port: Option<u16>, ctx: &EvalContext<'_>) -> bool {
        if self.baseline
            && port == Some(53)
            && ctx.nameservers.iter().any(|n| canonical_ip(*n) == ip)
        {
            return true;
        }
        let agent = |h: &str| ctx.hosts.addrs(h);
        let workload = |h: &str| ctx.resolved.resolved(ip, h);
        self.allows(ctx.phase, |l| l.connect(ip, port, &agent, &workload))
    }

    fn check_port(&self, cat: Category, v: &View<'_>, phase: Phase, out: &mut Vec<Finding>) {
        let Some(port) = v.local_port() else { return };
        if !self.allows(phase, |l| l.listen(port)) {
            out.push(self.violation(cat, v, &format!("port {port}"), phase));
        }
    }

    fn violation(&self, cat: Category, v: &View<'_>, object: &str, phase: Phase) -> Finding {
        let rule = cat.rule();
        let lists = match (phase, &self.startup) {
            (Phase::Startup, Some(_)) => {
                format!("{} and {}", cat.allow_key(), cat.startup_key())
            }
            _ => cat.allow_key().to_owned(),
        };
        Finding {
            rule: rule.to_owned(),
            severity: self.severity,
            mitre: cat.mitre().iter().map(|m| (*m).to_owned()).collect(),
            profile: Some(self.name.clone()),
            message: format!(
                "{} {}: outside profile {} {lists}",
                v.who(),
                v.action(),
                self.name,
            ),
            key: format!("{rule}|{}|{object}", self.name),
        }
    }
}

pub(crate) fn bad_name(name: &str) -> String {
    format!(
        "invalid name {name:?}: use lowercase letters, digits, `.`, `_` and `-`, starting with a \
         letter or digit"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use monitor_common::EventKind;

    use crate::rules::testutil::{
        NAMESERVER, check, ctx, exec, file_body, file_event, fired, load_ok, net, open,
        unix_connect,
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

    fn info<'a>(
        exe: Option<&'a str>,
        filename: &'a str,
        argv: &'a [String],
        uid: u32,
    ) -> ExecInfo<'a> {
        ExecInfo {
            exe,
            filename,
            argv,
            uid,
            parent_exe: None,
            container_id: None,
            pod_uid: None,
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
        assert!(fired(&r, &local(EventKind::Bind, Protocol::Tcp, 9999), &c).is_empty());
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
}
