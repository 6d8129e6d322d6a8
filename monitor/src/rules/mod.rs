//! Rules: workload profiles (allowlists of what a workload may exec, read, write, connect to,
//! listen on), detections (suspicious behaviour for every process), and overrides of shipped
//! detections. Loaded from YAML files (`docs/rules-format.md`), checked and compiled once into
//! matchers, then evaluated per event by [`RuleSet::check`].

mod allow;
mod cond;
mod content;
mod deny;
mod detection;
mod enforce;
mod kernel_paths;
mod kill;
pub(crate) mod load;
mod path_index;
mod path_list;
mod pattern;
mod prefilter;
mod profile;
mod program;
pub(crate) mod schema;
mod selectors;
mod shell;
pub(crate) mod sigma;
#[cfg(test)]
mod startup_tests;
mod state;
#[cfg(test)]
pub(crate) mod testutil;
mod view;
mod workload;
mod write_exec;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use detection::{DetKind, Detection, KINDS, kind_index};
use load::{Doc, Sink};
use pattern::line_of;
use profile::Profile;
use view::View;

pub use crate::sensor::event::Phase;
pub use allow::{KernelFiles, KernelNet};
pub(crate) use allow::{PathList, is_glob};
pub use deny::KernelDeny;
pub use load::RulesError;
pub use pattern::canonical_ip;
pub(crate) use pattern::{expand_home, parse_net, path_glob, proc_self_path};
pub(crate) use pattern::{is_dns_name, is_rule_name};
pub(crate) use profile::MAX_STARTUP_SECS;
pub use schema::Severity;
pub(crate) use selectors::Selectors;
pub use state::DetectionState;

use crate::sensor::event::Event;

/// A profile, by its index in load order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileId(pub usize);

/// What profile selectors look at when a process execs.
#[derive(Clone, Copy, Debug)]
pub struct ExecInfo<'a> {
    /// Resolved executable.
    pub exe: Option<&'a str>,
    /// The filename given to execve.
    pub filename: &'a str,
    pub argv: &'a [String],
    pub uid: u32,
    pub parent_exe: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub pod_uid: Option<&'a str>,
    /// The container as the runtime names it (image, name), when known.
    pub container: Option<&'a crate::identity::ContainerMeta>,
    /// The pod (namespace, labels), when known.
    pub pod: Option<&'a crate::identity::PodMeta>,
    /// Working directory, for script paths given relative to it (the `program` selector).
    pub cwd: Option<&'a str>,
}

/// Addresses of the DNS names profiles allow connecting to (see [`RuleSet::hosts`]); resolved
/// and refreshed by the agent.
pub trait HostAddrs {
    fn addrs(&self, host: &str) -> Vec<IpAddr>;
}

impl HostAddrs for HashMap<String, Vec<IpAddr>> {
    fn addrs(&self, host: &str) -> Vec<IpAddr> {
        self.get(host).cloned().unwrap_or_default()
    }
}

/// Whether the workload resolved a name to an address (it received the DNS answer); see
/// `policy::dns`.
pub trait ResolvedNames {
    /// Whether the event's workload received a DNS answer giving `ip` for `host`.
    fn resolved(&self, ip: IpAddr, host: &str) -> bool;

    /// The name the event's workload last resolved to `ip`, when it received such an answer.
    fn name_of(&self, _ip: IpAddr) -> Option<&str> {
        None
    }
}

/// What `check` needs to know about the event's process beyond the event.
#[derive(Clone, Copy)]
pub struct EvalContext<'a> {
    /// The process's workload profile (after inheritance); for an exec event, the profile
    /// the process has after this exec. An exec its profile's own `match` selectors hold for
    /// (the profile's entry point) is never an `allow.exec` violation.
    pub profile: Option<ProfileId>,
    /// Opaque workload key (the profile instance, else the process tree) for the stateful
    /// detections.
    pub workload: u64,
    /// Whom `write_then_exec` counts as the same workload.
    pub kin: Kin<'a>,
    pub parent_exe: Option<&'a str>,
    pub hosts: &'a dyn HostAddrs,
    /// Names the workload itself resolved (DNS answers it received).
    pub resolved: &'a dyn ResolvedNames,
    /// The workload's phase; `startup:` lists hold only in [`Phase::Startup`].
    pub phase: Phase,
    /// For an exec: it started a new instance of the profile (its selectors matched, outside an
    /// instance of the same profile). Only the entry point is not checked against `allow.exec`;
    /// a re-exec of the entry point inside the workload is.
    pub entry_point: bool,
    /// Nameservers of /etc/resolv.conf, for the baseline DNS allowance.
    pub nameservers: &'a [IpAddr],
    /// The parent's argv (Sigma's `ParentCommandLine`).
    pub parent_argv: Option<&'a [String]>,
    /// The agent watches every process (`--watch-all`, `--events`): the Sigma rules apply to
    /// processes without a profile too.
    pub host_wide: bool,
}

/// Whom `write_then_exec` counts as the process's workload: its profile instance, else its
/// container, else the process and its parent (a writer and a runner are then one workload when
/// they are the same process, siblings, or parent and child). Hashed only where it is used.
#[derive(Clone, Copy, Debug)]
pub enum Kin<'a> {
    Workload(u64),
    Container(&'a str),
    Process { pid: u32, ppid: u32 },
}

impl Kin<'_> {
    /// The keys under which a write is remembered and an exec looked up (one or two).
    pub(crate) fn keys(self) -> impl Iterator<Item = u64> {
        fn key(parts: impl std::hash::Hash) -> u64 {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            BuildHasherDefault::<DefaultHasher>::default().hash_one(parts)
        }
        let (a, b) = match self {
            Kin::Workload(w) => (w, None),
            Kin::Container(c) => (key(("container", c)), None),
            Kin::Process { pid, ppid } => (key(("process", pid)), Some(key(("process", ppid)))),
        };
        std::iter::once(a).chain(b)
    }
}

/// One rule that fired on one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Detection id, or `profile.exec`, `profile.read`, ...
    pub rule: String,
    pub severity: Severity,
    pub mitre: Vec<String>,
    /// Profile of the process, when it has one.
    pub profile: Option<String>,
    /// What happened and which allowlist or detection it broke.
    pub message: String,
    /// Findings with the same key are the same finding for rate limiting.
    pub key: String,
    /// A profile violation the kernel stops in enforce mode (see [`Action`]).
    #[serde(skip)]
    pub enforceable: bool,
    /// The Sigma rule that fired (`rule` is `sigma:<id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma: Option<std::sync::Arc<sigma::SigmaInfo>>,
}

/// What enforcement did about a profile violation, or would have done in alert mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Alert mode (or `--no-enforce`): enforce mode would have stopped it.
    WouldBlock,
    /// The kernel refused the syscall (`EPERM`): it had no effect.
    Blocked,
    /// The kernel killed the process before the step had an effect.
    Killed,
}

impl Action {
    /// The JSON word: `would_block`, `blocked`, `killed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WouldBlock => "would_block",
            Self::Blocked => "blocked",
            Self::Killed => "killed",
        }
    }
}

/// Loaded and compiled rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    profiles: Vec<Profile>,
    detections: Vec<Detection>,
    /// Enabled `match` detections per event kind.
    by_kind: [Vec<usize>; KINDS],
    /// Enabled `write_then_exec` detections.
    wte: Vec<usize>,
    /// Enabled `burst` detections per event kind.
    bursts: [Vec<usize>; KINDS],
    /// The `when.path` of the `match` detections, per kind.
    prefilter: prefilter::PathPrefilter,
    sigma: sigma::SigmaRules,
}

/// The shipped credential detections, built in for [`RuleSet::credential_patterns_or_shipped`].
const SHIPPED_CREDENTIAL_DETECTIONS: [(&str, &str); 4] = [
    (
        "credential-read.yaml",
        include_str!("../../../rules/detections/credential-read.yaml"),
    ),
    (
        "credential-read-history.yaml",
        include_str!("../../../rules/detections/credential-read-history.yaml"),
    ),
    (
        "credential-read-wallet.yaml",
        include_str!("../../../rules/detections/credential-read-wallet.yaml"),
    ),
    (
        "credential-read-system.yaml",
        include_str!("../../../rules/detections/credential-read-system.yaml"),
    ),
];

impl RuleSet {
    /// Loads every `*.yaml`/`*.yml` under each path (a directory, recursively, or a file).
    /// Reports every problem found, each with its file, line and key.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, RulesError> {
        let mut errors = Vec::new();
        let files = load::discover(paths, &mut errors);
        let mut profiles = Vec::new();
        let mut detections: Vec<Detection> = Vec::new();
        let mut names: HashMap<String, String> = HashMap::new();
        let mut ids: HashMap<String, (usize, String)> = HashMap::new();
        let mut overrides = Vec::new();
        let mut sigma = sigma::SigmaRules::default();
        for file in &files {
            let Some(doc) = load::read_doc(file, &mut errors) else {
                continue;
            };
            let mut sink = Sink {
                file,
                errors: &mut errors,
            };
            let here = |line: Option<usize>| load::place(file, line);
            match doc {
                Doc::Profile(d) => {
                    let line = line_of(&d.profile);
                    if let Some(first) = names.get(d.profile.as_str()) {
                        let msg = format!(
                            "duplicate profile `{}` (first defined at {first})",
                            *d.profile
                        );
                        sink.error(line, "profile", msg);
                    } else {
                        names.insert(d.profile.to_string(), here(line));
                    }
                    profiles.push(Profile::compile(*d, &mut sink));
                }
                Doc::Detection(d) => {
                    let line = line_of(&d.detection);
                    if let Some((_, first)) = ids.get(d.detection.as_str()) {
                        let msg = format!(
                            "duplicate detection id `{}` (first defined at {first})",
                            *d.detection
                        );
                        sink.error(line, "detection", msg);
                    } else {
                        ids.insert(d.detection.to_string(), (detections.len(), here(line)));
                    }
                    detections.push(Detection::compile(*d, &mut sink));
                }
                Doc::Override(o) => overrides.push((file, o)),
                Doc::Sigma(s) => sigma.add(&s.text, &s.map, s.block, &mut sink),
            }
        }
        sigma.apply_filters(&mut errors);
        for (file, o) in overrides {
            let mut sink = Sink {
                file,
                errors: &mut errors,
            };
            match ids.get(o.target.as_str()) {
                Some((i, _)) => detections[*i].apply_override(&o, &mut sink),
                None => sink.error(
                    line_of(&o.target),
                    "override",
                    format!(
                        "unknown detection `{}`: an override must name a detection defined in \
                         the loaded rule files",
                        *o.target
                    ),
                ),
            }
        }
        for d in &mut detections {
            if let Some(ask) = d.kill.clone() {
                d.compile_kill(&mut Sink {
                    file: &ask.file,
                    errors: &mut errors,
                });
            }
        }
        if !errors.is_empty() {
            // Files in load order, each file's errors by line.
            let order: HashMap<&PathBuf, usize> =
                files.iter().enumerate().map(|(i, f)| (f, i)).collect();
            errors.sort_by_key(|e| (order.get(&e.file).copied().unwrap_or(0), e.line));
            return Err(RulesError { errors });
        }
        Ok(RuleSet::new(profiles, detections, sigma))
    }

    fn new(
        profiles: Vec<Profile>,
        detections: Vec<Detection>,
        sigma: sigma::SigmaRules,
    ) -> RuleSet {
        let mut set = RuleSet {
            profiles,
            sigma,
            ..RuleSet::default()
        };
        for (i, d) in detections.iter().enumerate().filter(|(_, d)| d.enabled) {
            match d.kind {
                DetKind::WriteThenExec => set.wte.push(i),
                DetKind::Match | DetKind::Burst { .. } => {
                    let lists = if d.kind == DetKind::Match {
                        &mut set.by_kind
                    } else {
                        &mut set.bursts
                    };
                    for (k, list) in lists.iter_mut().enumerate() {
                        if d.on & (1 << k) != 0 {
                            list.push(i);
                        }
                    }
                }
            }
        }
        set.prefilter = prefilter::PathPrefilter::build(&detections, &set.by_kind);
        set.detections = detections;
        set.place_kills();
        set
    }

    /// The first profile (in load order) whose selectors all hold for this exec.
    pub fn match_profile(&self, exec: &ExecInfo<'_>) -> Option<ProfileId> {
        self.profiles
            .iter()
            .position(|p| p.matches(exec))
            .map(ProfileId)
    }

    pub fn profile_name(&self, id: ProfileId) -> &str {
        self.profiles.get(id.0).map_or("", |p| p.name.as_str())
    }

    /// The longest start-up phase of the profile's workloads (`startup_secs`).
    pub fn profile_startup(&self, id: ProfileId) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.profiles
                .get(id.0)
                .map_or(profile::DEFAULT_STARTUP_SECS, |p| p.startup_secs),
        )
    }

    /// A profile's selectors and the file it came from, by name.
    pub(crate) fn profile_selectors(&self, name: &str) -> Option<(Selectors, PathBuf)> {
        self.profiles
            .iter()
            .find(|p| p.name == name)
            // Absolute: the file is read by `monitor learn`, whose directory may differ.
            .map(|p| {
                let file = std::fs::canonicalize(&p.source).unwrap_or_else(|_| p.source.clone());
                (p.selectors().clone(), file)
            })
    }

    /// Whether profile `id` lets its workloads ask nameserver `server` (port 53): the
    /// baseline's nameservers, or a `connect` entry (in either block), by address or by a host
    /// name the agent resolved.
    pub fn allows_dns_server(
        &self,
        id: ProfileId,
        server: IpAddr,
        hosts: &dyn HostAddrs,
        nameservers: &[IpAddr],
    ) -> bool {
        self.profiles
            .get(id.0)
            .is_some_and(|p| p.allows_dns_server(canonical_ip(server), hosts, nameservers))
    }

    /// The loaded profiles' names.
    pub fn profile_names(&self) -> Vec<String> {
        self.profiles.iter().map(|p| p.name.clone()).collect()
    }

    /// Whether descendants of a process under this profile inherit it.
    pub fn profile_inherits(&self, id: ProfileId) -> bool {
        self.profiles.get(id.0).is_some_and(|p| p.inherit)
    }

    pub fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    pub fn has_profiles(&self) -> bool {
        !self.profiles.is_empty()
    }

    /// Every DNS name in the profiles' `allow.connect` (sorted, deduplicated): the agent
    /// resolves them and answers [`HostAddrs::addrs`].
    pub fn hosts(&self) -> Vec<String> {
        let set: HashSet<&str> = self.profiles.iter().flat_map(Profile::hosts).collect();
        let mut v: Vec<String> = set.into_iter().map(str::to_owned).collect();
        v.sort();
        v
    }

    /// The path patterns of the credential detections (`credential-read` and its
    /// `credential-read.*` family), as written, with their detection's id: what a learned
    /// profile must not reach with a glob.
    pub fn credential_patterns(&self) -> Vec<(String, String)> {
        self.detections
            .iter()
            .filter(|d| d.id == "credential-read" || d.id.starts_with("credential-read."))
            .flat_map(|d| {
                d.path_patterns
                    .iter()
                    .map(|(p, _)| (d.id.clone(), p.clone()))
            })
            .collect()
    }

    /// [`Self::credential_patterns`], or, when the rules loaded have no credential detection,
    /// those of the detections shipped with the agent (built in): learning never generalises
    /// over a credential file because a custom rule set left them out.
    pub fn credential_patterns_or_shipped(&self) -> Vec<(String, String)> {
        let own = self.credential_patterns();
        if !own.is_empty() {
            return own;
        }
        let mut errors = Vec::new();
        let mut out = Vec::new();
        for (file, text) in SHIPPED_CREDENTIAL_DETECTIONS {
            let file = Path::new(file);
            let mut sink = Sink {
                file,
                errors: &mut errors,
            };
            if let Some(Doc::Detection(d)) = load::parse_doc(text, &mut sink) {
                let d = Detection::compile(*d, &mut sink);
                out.extend(d.path_patterns.into_iter().map(|(p, _)| (d.id.clone(), p)));
            }
        }
        debug_assert!(
            errors.is_empty(),
            "shipped credential detections: {errors:?}"
        );
        out
    }

    /// Number of enabled detections.
    pub fn detection_count(&self) -> usize {
        self.detections.iter().filter(|d| d.enabled).count()
    }

    /// Number of Sigma rules.
    pub fn sigma_count(&self) -> usize {
        self.sigma.len()
    }

    /// Checks one event: the process's profile allowlists, then every detection on its kind.
    /// Allocates only when something fires.
    pub fn check(
        &self,
        ev: &Event,
        ctx: &EvalContext<'_>,
        state: &mut DetectionState,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        let v = View::new(ev);
        let profile = ctx.profile.and_then(|p| self.profiles.get(p.0));
        if let Some(p) = profile {
            p.check(&v, ctx, &mut out);
        }
        let pname = profile.map(|p| p.name.as_str());
        // A program the profile names in `allow.exec` (or `startup.exec` while starting) by
        // its exact path is normal for this workload: the detections that exist only for
        // profiled processes (tool spawns) leave it to the profile.
        let listed = profile.is_some_and(|p| p.lists_exec(&v, ctx.phase));
        let k = kind_index(ev.kind());
        let hits = self.prefilter.hits(k, &v);
        for &i in &self.by_kind[k] {
            let d = &self.detections[i];
            if !prefilter::PathPrefilter::may_fire(d, i, hits.as_deref())
                || (listed && d.scope == schema::Scope::Profiled)
            {
                continue;
            }
            if d.fires(&v, ctx, None) {
                let mut f = d.finding(&v, pname, None, v.object());
                f.enforceable = d.compiled_kill.is_some() && profile.is_some_and(|p| p.kills(&v));
                out.push(f);
            }
        }
        if !self.wte.is_empty() {
            self.write_then_exec(&v, ctx, state, pname, &mut out);
        }
        for &i in &self.bursts[k] {
            let d = &self.detections[i];
            let DetKind::Burst {
                threshold,
                window_ms,
            } = d.kind
            else {
                continue;
            };
            if d.fires(&v, ctx, None)
                && let Some(n) = state.burst_hit(i, ctx.workload, ev.ktime_ns, window_ms, threshold)
            {
                let what = format!(
                    "{}, {n} process creations in its workload within {window_ms} ms \
                     (threshold {threshold})",
                    v.action()
                );
                out.push(d.finding(&v, pname, Some(what), format!("workload {}", ctx.workload)));
            }
        }
        out.extend(self.sigma.check(&v, ctx, pname));
        if let Some(p) =
            profile.filter(|_| (ev.killed || ev.denied) && !out.iter().any(|f| f.enforceable))
        {
            out.push(p.kernel_only(&v, ctx.phase));
        }
        out
    }
}

/// What an exec runs (see [`program::program`]), as a module name or an absolute path.
pub(crate) fn program_of(
    exe: Option<&str>,
    filename: &str,
    argv: &[String],
    cwd: Option<&str>,
) -> Option<String> {
    program::program(exe, filename, argv, cwd).map(|p| p.as_str().to_owned())
}
