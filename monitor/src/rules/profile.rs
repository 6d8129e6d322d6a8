//! Workload profiles: selectors that say which exec starts a profile, and allowlists (the
//! footprint) checked for every event of a process under the profile. A profile's optional
//! `startup:` block adds to `allow:` while its workload starts: from the exec that started it
//! until it first listens, or `startup_secs`, whichever comes first.

use std::net::IpAddr;

use monitor_common::EventKind;

use super::allow::{AllowLists, KernelFiles, KernelNet, PathList};
use super::deny::KernelDeny;
use super::kernel_paths::Uncompiled;
use super::load::Sink;
use super::pattern::{canonical_ip, is_rule_name, line_of};
use super::schema::{Mode, ProfileDoc, Severity};
use super::selectors::Selectors;
use super::view::View;
use super::{EvalContext, ExecInfo, Finding, Phase};
use crate::sensor::event::{Access, Family, Protocol};

/// Start-up phase length when a profile with a `startup:` block gives no `startup_secs`.
pub(crate) const DEFAULT_STARTUP_SECS: u64 = 120;
/// Longest start-up phase a profile may declare (a day).
pub(crate) const MAX_STARTUP_SECS: u64 = 86_400;

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
    /// `enforce`: the kernel stops what it can decide of a step outside the profile.
    pub mode: Mode,
    /// The path lists as the kernel enforces them: serving, then starting (with `startup:`).
    kernel: [KernelFiles; 2],
    /// Patterns the kernel cannot enforce as written.
    pub uncompiled: Vec<Uncompiled>,
    /// What the detections with `action: kill` deny here, and what stays alert-only of them.
    pub deny: KernelDeny,
    pub kill_warnings: Vec<String>,
}

impl Profile {
    pub fn compile(doc: ProfileDoc, sink: &mut Sink<'_>) -> Profile {
        if !is_rule_name(&doc.profile) {
            sink.error(line_of(&doc.profile), "profile", bad_name(&doc.profile));
        }
        let baseline = doc.baseline.unwrap_or(true);
        let sel = Selectors::compile(&doc.selectors, sink);
        let allow = AllowLists::compile(&doc.allow.unwrap_or_default(), "allow", baseline, sink);
        let startup = doc
            .startup
            .as_ref()
            .map(|s| AllowLists::compile(s, "startup", false, sink));
        if let Some(secs) = &doc.startup_secs {
            if **secs == 0 {
                sink.error(
                    line_of(secs),
                    "startup_secs",
                    "0 would end start-up before it begins: give the longest start-up in \
                     seconds, or remove the `startup:` block",
                );
            } else if **secs > MAX_STARTUP_SECS {
                sink.error(
                    line_of(secs),
                    "startup_secs",
                    format!(
                        "{} is more than a day ({MAX_STARTUP_SECS}): a start-up that long is the \
                     workload's normal running, which belongs in `allow:`",
                        **secs
                    ),
                );
            }
        }
        let mut uncompiled = Vec::new();
        let serving = allow.kernel_files(&mut uncompiled);
        let mut starting = serving.clone();
        if let Some(s) = &startup {
            starting.extend(&s.kernel_files(&mut uncompiled));
        }
        uncompiled.dedup();
        Profile {
            kernel: [serving, starting],
            uncompiled,
            deny: KernelDeny::default(),
            kill_warnings: Vec::new(),
            name: doc.profile.to_string(),
            severity: doc.severity.unwrap_or(Severity::High),
            inherit: doc.inherit.unwrap_or(true),
            sel,
            allow,
            startup,
            startup_secs: doc.startup_secs.map_or(DEFAULT_STARTUP_SECS, |s| *s),
            baseline,
            source: sink.file.to_path_buf(),
            mode: doc.mode.map_or(Mode::Alert, |m| *m),
        }
    }

    /// What the kernel enforces of the network lists in `phase` (`allow:`, with `startup:`
    /// while starting; the baseline's nameservers on port 53).
    pub fn kernel_net(&self, phase: Phase, nameservers: &[IpAddr]) -> KernelNet {
        let mut out = KernelNet::default();
        self.allow.kernel_net(&mut out);
        if phase == Phase::Startup
            && let Some(s) = &self.startup
        {
            s.kernel_net(&mut out);
        }
        if self.baseline {
            for n in nameservers {
                let v6 = match canonical_ip(*n) {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                out.nets.push((v6.octets(), 128, Some(53)));
            }
        }
        out
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
        self.check_lists(v, ctx, out);
    }

    /// The kernel killed the process (or refused the step) for what neither these lists nor a detection with
    /// `action: kill` explain (the kernel's form of the lists is narrower, e.g. where a
    /// pattern named by `monitor rules check` differs): never a silent kill.
    pub fn kernel_only(&self, v: &View<'_>, phase: Phase) -> Finding {
        let (cat, object) = match v.ev.kind() {
            EventKind::Exec => (Category::Exec, v.exe.unwrap_or("?").to_owned()),
            _ => {
                let write = matches!(v.access(), Some(Access::Write | Access::ReadWrite));
                let cat = if write || v.created() {
                    Category::Write
                } else {
                    Category::Read
                };
                (cat, v.path.as_deref().unwrap_or("?").to_owned())
            }
        };
        let mut f = self.violation(cat, v, &object, phase);
        f.message = format!(
            "{} {}: {} by the kernel: outside profile {} {} as the kernel enforces it (see \
             `monitor rules check`)",
            v.who(),
            v.action(),
            if v.ev.denied { "refused" } else { "killed" },
            self.name,
            cat.allow_key()
        );
        f.enforceable = true;
        f
    }

    fn check_lists(&self, v: &View<'_>, ctx: &EvalContext<'_>, out: &mut Vec<Finding>) {
        let ok = !v.failed();
        let phase = ctx.phase;
        match v.ev.kind() {
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
                // A pipe or socket reopened through /proc/PID/fd is no file to allow.
                let Some(path) = v
                    .path
                    .as_deref()
                    .filter(|_| !v.file.is_some_and(|f| f.pseudo))
                else {
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
            EventKind::Unlink | EventKind::Chmod | EventKind::Rename | EventKind::Truncate
                if ok =>
            {
                for path in [v.path.as_deref(), v.new_path.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    if !self.allows_path(phase, |l| &l.write, path) {
                        out.push(self.violation(Category::Write, v, path, phase));
                    }
                }
            }
            // A new name is a write; a hard link's file is named (read), a symlink's target is
            // only a string.
            EventKind::Link | EventKind::Symlink if ok => {
                if let Some(path) = v.new_path.as_deref()
                    && !self.allows_path(phase, |l| &l.write, path)
                {
                    out.push(self.violation(Category::Write, v, path, phase));
                }
                if v.ev.kind() == EventKind::Link
                    && let Some(path) = v.path.as_deref()
                    && !self.allows_path(phase, |l| &l.read, path)
                {
                    out.push(self.violation(Category::Read, v, path, phase));
                }
            }
            EventKind::Open
            | EventKind::Unlink
            | EventKind::Chmod
            | EventKind::Rename
            | EventKind::Truncate
            | EventKind::Link
            | EventKind::Symlink => {}
            EventKind::Connect | EventKind::Send => self.check_connect(v, ctx, out),
            EventKind::Listen if ok => self.check_port(Category::Listen, v, phase, out),
            // A bind to a port outside the list: enforce mode refuses it (a TCP server then never
            // listens), so it is the violation, for TCP as for UDP. An ephemeral bind is not.
            EventKind::Bind if ok || v.blocked() => {
                if !v.ephemeral() && v.local_port().is_some_and(|p| p != 0) {
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
        if (v.ev.kind() == EventKind::Send) != udp {
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

    /// Whether the kernel stops this violation under enforce mode: connects and sends to an
    /// address (not a unix socket), binds, and execs and opens outside the kernel's form of
    /// the lists (see [`super::kernel_paths`]).
    fn kernel_stops(&self, cat: Category, v: &View<'_>, object: &str, phase: Phase) -> bool {
        let files = &self.kernel[usize::from(phase == Phase::Startup)];
        let open = v.ev.kind() == EventKind::Open;
        match cat {
            Category::Connect => true,
            // A TCP listen on a port outside the list is stopped at its bind; a listen without
            // a bind (an ephemeral port) is not.
            Category::Listen => v.ev.kind() == EventKind::Bind || v.local_port().is_some(),
            Category::Exec => !files.exec.allows(object),
            Category::Read => open && !files.read.allows(object),
            Category::Write => open && !files.write.allows(object),
            Category::Accept | Category::Unix => false,
        }
    }

    /// Whether the kernel kills this open here for a detection with `action: kill`.
    pub fn kills(&self, v: &View<'_>) -> bool {
        use monitor_common::enforce::{ACCESS_READ, ACCESS_WRITE};
        let need = match v.access() {
            Some(Access::Read) => ACCESS_READ,
            Some(Access::Write) => ACCESS_WRITE,
            Some(Access::ReadWrite) => ACCESS_READ | ACCESS_WRITE,
            None => 0,
        } | if v.created() { ACCESS_WRITE } else { 0 };
        v.ev.kind() == EventKind::Open && v.paths()[0].is_some_and(|p| self.deny.covers(p, need))
    }

    /// The path lists as the kernel enforces them in `phase`.
    pub fn kernel_files(&self, phase: Phase) -> &KernelFiles {
        &self.kernel[usize::from(phase == Phase::Startup)]
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
            enforceable: self.kernel_stops(cat, v, object, phase),
            sigma: None,
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
mod tests;
