//! The policy stage: assigns processes to workload profiles (at exec, by inheritance at fork,
//! and for processes already running at start), tracks each workload instance's phase
//! (`instances`) and the names it resolved (`dns`), tells the kernel which processes to
//! record, evaluates every event against the rule set, marks events of profiled processes with
//! their profile and phase, and turns findings into alerts.

mod dns;
mod enforce;
mod instances;
mod stats;

pub use enforce::KernelOp;
pub use stats::PolicyStats;

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hasher as _},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use monitor_common::EventKind;

use crate::{
    alert::{
        Alert, Ancestor, alert_id, boot_id,
        limit::{Candidate, RateLimiter, Repeats},
    },
    clock::WallTime,
    process::table::{ProcessInfo, ProcessTable, start_key_from_ns, ticks_per_second},
    resolve::HostResolver,
    rules::{DetectionState, EvalContext, ExecInfo, HostAddrs, Kin, Phase, ProfileId, RuleSet},
    sensor::{Event, EventBody, watch::WatchMap},
};

use dns::DnsSeen;
use enforce::Enforcement;
use instances::Instances;

use crate::learn::{LearnSpec, Outcome, Sessions};

/// Most ancestors listed in an alert.
const MAX_ANCESTORS: usize = 16;

impl HostAddrs for HostResolver {
    fn addrs(&self, host: &str) -> Vec<IpAddr> {
        HostResolver::addrs(self, host)
    }
}

/// A process's workload assignment.
#[derive(Clone, Copy, Debug)]
struct Assigned {
    /// With the pid, identifies the process (pids are reused).
    start_key: u64,
    profile: Option<ProfileId>,
    /// Opaque workload key for stateful detections.
    workload: u64,
}

pub struct Policy {
    rules: Arc<RuleSet>,
    state: DetectionState,
    procs: HashMap<u32, Assigned>,
    instances: Instances,
    dns: DnsSeen,
    learning: Sessions,
    /// Processes of instances that just started serving (see [`Policy::take_serving_now`]).
    serving_now: std::collections::HashSet<u32>,
    resolver: HostResolver,
    nameservers: Vec<IpAddr>,
    /// Every process is recorded (`--events` or `--watch-all`): evaluate everything.
    record_everything: bool,
    limiter: RateLimiter,
    boot_id: String,
    stats: PolicyStats,
    enforce: Enforcement,
}

fn workload_key(parts: impl std::hash::Hash) -> u64 {
    let mut h = DefaultHasher::new();
    std::hash::Hash::hash(&parts, &mut h);
    h.finish()
}

impl Policy {
    /// With `enforce` (the seed of the kernel's path hashes), enforce-mode profiles are
    /// enforced in the kernel (see [`Policy::take_kernel_ops`]); without, they only alert.
    pub fn new(
        rules: Arc<RuleSet>,
        resolver: HostResolver,
        record_everything: bool,
        fold_window: Duration,
        enforce: Option<u64>,
    ) -> Self {
        Self {
            rules,
            state: DetectionState::new(),
            procs: HashMap::new(),
            instances: Instances::default(),
            dns: DnsSeen::default(),
            learning: Sessions::default(),
            serving_now: std::collections::HashSet::new(),
            resolver,
            nameservers: crate::resolve::nameservers(),
            record_everything,
            limiter: RateLimiter::new(fold_window),
            boot_id: boot_id(),
            stats: PolicyStats::default(),
            enforce: Enforcement::new(enforce.is_some(), enforce.unwrap_or(0)),
        }
    }

    /// Changes to the kernel's enforcement maps, in the order they must be applied.
    pub fn take_kernel_ops(&mut self) -> Vec<KernelOp> {
        self.enforce.take_ops()
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Replaces the rule set (SIGHUP) and re-assigns every running process.
    pub fn replace_rules(&mut self, rules: Arc<RuleSet>, table: &ProcessTable, watch: &WatchMap) {
        self.rules = rules;
        self.state = DetectionState::new();
        self.procs.clear();
        self.resolver.set_hosts(self.rules.hosts());
        self.seed(table, watch);
    }

    /// The processes whose workload started serving since the last call: the kernel should
    /// forget the opens it is folding for them.
    pub fn take_serving_now(&mut self) -> std::collections::HashSet<u32> {
        std::mem::take(&mut self.serving_now)
    }

    /// Whether every exec'ing process must be watched until this stage has decided about it:
    /// profiles are loaded or learning sessions run (and not everything is recorded anyway).
    pub fn wants_watch_on_exec(&self) -> bool {
        !self.record_everything && (self.rules.has_profiles() || self.learning.is_active())
    }

    /// Starts a learning session at boot-time `now_ns`; its processes are recorded from now on.
    /// Returns its id and how many running processes it follows already.
    pub fn start_learning(
        &mut self,
        spec: LearnSpec,
        table: &ProcessTable,
        watch: &WatchMap,
        now_ns: u64,
        wall: String,
    ) -> (u64, usize) {
        let (id, pids) = self.learning.start(spec, table, now_ns, wall);
        for &pid in &pids {
            watch.watch(pid);
        }
        (id, pids.len())
    }

    /// Ends learning session `id`; the processes it followed are no longer recorded unless a
    /// profile or another session wants them.
    pub fn finish_learning(
        &mut self,
        id: u64,
        watch: &WatchMap,
        now_ns: u64,
        wall: String,
    ) -> Option<Outcome> {
        let (outcome, pids) = self.learning.finish(id, now_ns, wall)?;
        if !self.record_everything {
            for pid in pids {
                let profiled = self.procs.get(&pid).is_some_and(|a| a.profile.is_some());
                if !profiled && !self.learning.follows(pid) {
                    watch.unwatch_settled(pid);
                }
            }
        }
        Some(outcome)
    }

    /// Assigns profiles to processes already running (parents before children).
    pub fn seed(&mut self, table: &ProcessTable, watch: &WatchMap) {
        self.enforce
            .load(&self.rules, &self.nameservers, &self.resolver);
        let now_ns = crate::clock::boot_ns();
        let mut live: Vec<&ProcessInfo> = table.live().collect();
        live.sort_by_key(|p| (p.start_key, p.pid));
        for p in live {
            let parent = self.procs.get(&p.ppid).copied();
            let info = exec_info(p, table);
            let own = self.rules.match_profile(&info);
            let (assigned, entry) = self.decide(p.pid, p.start_key, own, parent);
            if let (Some(id), true) = (own, entry) {
                // Kept across a reload: a workload that serves does not start over.
                let started_ns = p.start_key * (1_000_000_000 / ticks_per_second());
                self.instances.start_if_new(
                    assigned.workload,
                    started_ns,
                    self.rules.profile_startup(id),
                );
            }
            self.procs.insert(p.pid, assigned);
            self.enforce_assigned(p.pid, assigned, now_ns);
            if assigned.profile.is_some() || self.learning.follows(p.pid) {
                watch.watch(p.pid);
            } else {
                watch.unwatch_settled(p.pid);
            }
        }
        // Processes the new rules no longer enforce on (their profile went, or is in alert
        // mode now) leave their slots before the slots go.
        let gone: Vec<u32> = self
            .enforce
            .pids()
            .filter(|p| !self.procs.contains_key(p))
            .collect();
        for pid in gone {
            self.enforce.assign(pid, None, Phase::Serving, false);
        }
        self.enforce.retire();
    }

    /// The assignment rule: a process's own match wins; else it inherits its parent's profile
    /// (when that profile lets descendants inherit); else none. A match inside an instance of
    /// the same profile (a re-exec, a worker) stays in that instance. Returns whether the
    /// process starts a new instance (its exec is the profile's entry point).
    fn decide(
        &self,
        pid: u32,
        start_key: u64,
        own: Option<ProfileId>,
        parent: Option<Assigned>,
    ) -> (Assigned, bool) {
        match (own, parent) {
            (Some(p), Some(pa)) if pa.profile == Some(p) => (Assigned { start_key, ..pa }, false),
            (Some(p), _) => (
                Assigned {
                    start_key,
                    profile: Some(p),
                    workload: workload_key((pid, start_key)),
                },
                true,
            ),
            (None, parent) => (self.inherit(pid, start_key, parent), false),
        }
    }

    fn inherit(&self, pid: u32, start_key: u64, parent: Option<Assigned>) -> Assigned {
        match parent {
            Some(pa) if pa.profile.is_some_and(|p| self.rules.profile_inherits(p)) => {
                Assigned { start_key, ..pa }
            }
            parent => Assigned {
                start_key,
                profile: None,
                workload: parent.map_or(workload_key(pid), |pa| pa.workload),
            },
        }
    }

    /// Updates assignments from lifecycle events, evaluates the event, marks it with its
    /// profile and phase, returns its alerts.
    pub fn handle(&mut self, ev: &mut Event, table: &ProcessTable, watch: &WatchMap) -> Vec<Alert> {
        let mut entry_point = false;
        match &ev.body {
            EventBody::Fork(f) => {
                self.learning.observe(ev, None);
                let parent = self.procs.get(&ev.pid).copied();
                let key = start_key_from_ns(f.child_start_time_ns);
                let a = self.inherit(f.child_pid, key, parent);
                self.procs.insert(f.child_pid, a);
                self.enforce.forked(ev.pid, f.child_pid);
                self.enforce_assigned(f.child_pid, a, ev.ktime_ns);
                if !self.record_everything {
                    if a.profile.is_some() || self.learning.follows(f.child_pid) {
                        watch.watch(f.child_pid);
                    } else {
                        // Not if the child has exec'd meanwhile: its exec decides.
                        watch.unwatch_settled(f.child_pid);
                    }
                }
            }
            // An exec the kernel refused (BPF LSM) never happened: the process keeps its image,
            // its assignment and what the kernel watches of it.
            EventBody::Exec(_) if ev.denied => {}
            EventBody::Exec(x) => {
                let key = start_key_from_ns(ev.start_time_ns);
                // Before exec the process had its parent's (or its own earlier) assignment.
                let parent = self
                    .procs
                    .get(&ev.pid)
                    .copied()
                    .or_else(|| self.procs.get(&ev.ppid).copied());
                let info = ExecInfo {
                    exe: x.exe.as_deref(),
                    filename: &x.filename,
                    argv: &x.argv,
                    uid: ev.uid,
                    parent_exe: table.get(ev.ppid).and_then(|p| p.exe.as_deref()),
                    container_id: ev.container_id.as_deref(),
                    pod_uid: ev.pod_uid.as_deref(),
                    container: ev.container.as_deref(),
                    pod: ev.pod.as_deref(),
                    cwd: x.cwd.as_deref(),
                };
                self.learning.observe(ev, Some(&info));
                // An exec the kernel killed never ran its image: it starts nothing and stays
                // under the profile it had.
                let (own, (a, entry)) = match parent {
                    Some(pa) if ev.killed => (
                        None,
                        (
                            Assigned {
                                start_key: key,
                                ..pa
                            },
                            false,
                        ),
                    ),
                    _ => {
                        let own = self.rules.match_profile(&info);
                        (own, self.decide(ev.pid, key, own, parent))
                    }
                };
                if let (Some(id), true) = (own, entry) {
                    self.instances
                        .start(a.workload, ev.ktime_ns, self.rules.profile_startup(id));
                }
                entry_point = entry;
                self.procs.insert(ev.pid, a);
                self.enforce_assigned(ev.pid, a, ev.ktime_ns);
                if !self.record_everything {
                    let learned = self.learning.follows(ev.pid);
                    watch.exec_decided(ev.pid, a.profile.is_some() || learned);
                }
            }
            EventBody::Exit(_) | EventBody::File(_) | EventBody::Net(_) | EventBody::Dns(_) => {
                self.learning.observe(ev, None);
            }
        }
        // An entry left by an earlier process with the same pid does not count.
        let assigned = self
            .procs
            .get(&ev.pid)
            .copied()
            .filter(|a| a.start_key == start_key_from_ns(ev.start_time_ns));
        let profile = assigned.and_then(|a| a.profile);
        let workload = assigned.map_or(0, |a| a.workload);
        // A profiled workload's answers count only from a nameserver its profile lets it ask:
        // one that answers from anywhere else could name any address after an allowed host.
        if let EventBody::Dns(answer) = &ev.body
            && profile.is_none_or(|id| {
                answer.remote_addr.is_some_and(|server| {
                    self.rules
                        .allows_dns_server(id, server, &self.resolver, &self.nameservers)
                })
            })
        {
            self.dns.expire(ev.ktime_ns);
            self.dns.record(workload, answer, ev.ktime_ns);
            let mut names: Vec<&str> = answer.cnames.iter().map(String::as_str).collect();
            names.extend(answer.query.as_deref());
            self.enforce.dns_answer(ev.pid, &names, &answer.answers);
        }
        let file_or_net = !matches!(
            ev.kind(),
            EventKind::Exec | EventKind::Fork | EventKind::Exit
        );
        if file_or_net && profile.is_none() && !self.record_everything {
            self.stats.unprofiled_events_skipped += 1;
            return Vec::new();
        }
        let phase = self.instances.phase(workload, ev.ktime_ns);
        if let Some(id) = profile {
            ev.profile = Some(self.rules.profile_name(id).to_owned());
            ev.phase = Some(phase);
        }
        let parent = table.get(ev.ppid);
        let parent_exe = parent.and_then(|p| p.exe.as_deref());
        let resolved = self.dns.of(workload, ev.ktime_ns);
        let kin = match (profile, ev.container_id.as_deref()) {
            (Some(_), _) => Kin::Workload(workload),
            (None, Some(c)) => Kin::Container(c),
            (None, None) => Kin::Process {
                pid: ev.pid,
                ppid: ev.ppid,
            },
        };
        let ctx = EvalContext {
            profile,
            workload,
            kin,
            parent_exe,
            hosts: &self.resolver,
            resolved: &resolved,
            phase,
            entry_point,
            nameservers: &self.nameservers,
            parent_argv: parent.map(|p| p.argv.as_slice()),
            host_wide: self.record_everything,
        };
        let findings = self.rules.check(ev, &ctx, &mut self.state);
        match &ev.body {
            EventBody::Exit(_) => {
                self.forget(ev.pid);
            }
            // The instance serves from now on: opens its processes made while starting must not
            // hide the same opens made now (the kernel folds repeats).
            EventBody::Net(n)
                if ev.kind() == EventKind::Listen
                    && n.result >= 0
                    && profile.is_some()
                    && self.instances.listened(workload) =>
            {
                let members: Vec<(u32, Assigned)> = self
                    .procs
                    .iter()
                    .filter(|(_, a)| a.workload == workload)
                    .map(|(pid, a)| (*pid, *a))
                    .collect();
                for &(pid, a) in &members {
                    self.enforce_assigned(pid, a, ev.ktime_ns);
                }
                self.serving_now.extend(members.iter().map(|(pid, _)| *pid));
            }
            _ => {}
        }
        let now = Instant::now();
        let mut alerts = Vec::new();
        for f in findings {
            let id = alert_id(&self.boot_id, ev, &f.rule, &f.key);
            if !self.limiter.admit(
                now,
                &Candidate {
                    rule: &f.rule,
                    pid: ev.pid,
                    key: &f.key,
                    id: &id,
                    profile: f.profile.as_deref(),
                    severity: f.severity.as_str(),
                },
            ) {
                continue;
            }
            self.stats.alerts += 1;
            let mut ancestors: Vec<Ancestor> = Vec::new();
            ancestors.extend(
                table
                    .ancestors(ev.pid, MAX_ANCESTORS)
                    .into_iter()
                    .map(Ancestor::from),
            );
            let action = self.action(f.enforceable, profile, ev);
            alerts.push(Alert {
                action,
                id,
                time: ev.time,
                rule: f.rule,
                severity: f.severity.as_str().to_owned(),
                mitre: f.mitre,
                profile: f.profile,
                phase: profile.map(|_| phase),
                message: f.message,
                event: Some(ev.clone()),
                ancestors,
                sigma: f.sigma,
                about: serde_json::Map::new(),
            });
        }
        alerts
    }

    /// Forgets processes the process table no longer knows (their exit event was lost);
    /// closes rate-limit windows (returns the repeat counts to report); moves enforced
    /// workloads whose start-up has timed out to their serving tables; adds new addresses of
    /// enforced profiles' hosts.
    pub fn tick(&mut self, time: WallTime, table: &ProcessTable) -> Vec<Repeats> {
        self.forget_gone(table);
        self.enforcement_tick();
        self.limiter.expire(Instant::now(), time)
    }

    /// Reports all pending repeat counts (shutdown).
    pub fn flush(&mut self, time: WallTime) -> Vec<Repeats> {
        self.limiter.flush(time)
    }
}

/// What profile matching needs to know about a process.
fn exec_info<'a>(p: &'a ProcessInfo, table: &'a ProcessTable) -> ExecInfo<'a> {
    p.exec_info(table.get(p.ppid).and_then(|pp| pp.exe.as_deref()))
}
