//! Learning sessions inside the policy stage: which processes each session follows (those its
//! selectors match at exec, processes already running that match when it starts, and all their
//! descendants), the workload instances they form and the phase each is in, the names each
//! instance resolved, and the footprint their events add up to.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ended::Ended;
pub use super::ended::InstanceSummary;
use super::footprint::{Destination, FileUse, Footprint};
use crate::process::table::{ProcessTable, start_key_from_ns, ticks_per_second};
use crate::rules::{ExecInfo, Selectors, canonical_ip, proc_self_path, program_of};
use crate::sensor::event::{Access, Event, EventBody, Family, FileOp, NetOp, Protocol};

/// Most (instance, address) names a session remembers.
const MAX_NAMES: usize = 65_536;

/// What a session learns about and how it names the result.
#[derive(Clone, Debug)]
pub struct LearnSpec {
    /// Name of the profile to write.
    pub name: String,
    pub(crate) selectors: Selectors,
}

/// How a session went, beside its footprint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    /// Wall-clock start and end, RFC 3339.
    pub started: String,
    pub ended: String,
    pub secs: f64,
    /// Processes followed (matched or descended from one that matched).
    pub processes: u64,
    /// Events of those processes.
    pub events: u64,
    /// One per workload instance: seconds from its start to its first listen (`None`: it did not
    /// listen while learning), and whether it was already running when learning began.
    pub instances: Vec<InstanceSummary>,
    /// Names of DNS answers not remembered (bound reached).
    pub names_dropped: u64,
    /// Instances in all, `instances` included (more when ended ones were only counted).
    #[serde(default)]
    pub instances_total: u64,
}

/// A finished session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub summary: Summary,
    pub footprint: Footprint,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    start_key: u64,
    instance: u64,
}

#[derive(Clone, Debug)]
struct Instance {
    root_pid: u32,
    /// The executable of the process that started it.
    root_exe: Option<String>,
    started_ns: u64,
    listened_ns: Option<u64>,
    preexisting: bool,
    /// Processes of the instance alive now; at 0 the instance ends.
    members: u32,
}

impl Instance {
    fn summary(&self) -> InstanceSummary {
        InstanceSummary {
            root_pid: self.root_pid,
            root_exe: self.root_exe.clone(),
            first_listen_secs: self
                .listened_ns
                .map(|l| l.saturating_sub(self.started_ns) as f64 / 1e9),
            preexisting: self.preexisting,
        }
    }
}

/// One learning session.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    spec: LearnSpec,
    started_ns: u64,
    started_wall: String,
    members: HashMap<u32, Member>,
    instances: HashMap<u64, Instance>,
    ended: Ended,
    /// Per instance, the names its DNS answers gave addresses.
    names: HashMap<u64, HashMap<IpAddr, String>>,
    names_len: usize,
    names_dropped: u64,
    footprint: Footprint,
    processes: u64,
    events: u64,
}

impl Session {
    /// A session starting at boot-time `now_ns`; processes already running that its selectors
    /// match are followed from now on, with their descendants.
    pub fn start(
        id: u64,
        spec: LearnSpec,
        table: &ProcessTable,
        now_ns: u64,
        wall: String,
    ) -> Self {
        let mut s = Session {
            id,
            spec,
            started_ns: now_ns,
            started_wall: wall,
            members: HashMap::new(),
            instances: HashMap::new(),
            ended: Ended::default(),
            names: HashMap::new(),
            names_len: 0,
            names_dropped: 0,
            footprint: Footprint::default(),
            processes: 0,
            events: 0,
        };
        let mut live: Vec<_> = table.live().collect();
        live.sort_by_key(|p| (p.start_key, p.pid));
        for p in live {
            let parent = s.members.get(&p.ppid).map(|m| m.instance);
            let parent_exe = table.get(p.ppid).and_then(|pp| pp.exe.as_deref());
            let info = p.exec_info(parent_exe);
            let instance = match parent {
                Some(i) => i,
                None if s.spec.selectors.matches(&info) => {
                    let key = instance_key(p.pid, p.start_key);
                    let started_ns = p.start_key * (1_000_000_000 / ticks_per_second());
                    s.instances.insert(
                        key,
                        Instance {
                            root_pid: p.pid,
                            root_exe: p.exe.clone(),
                            started_ns: started_ns.min(now_ns),
                            listened_ns: None,
                            preexisting: true,
                            members: 0,
                        },
                    );
                    key
                }
                None => continue,
            };
            s.join(p.pid, p.start_key, instance);
        }
        s
    }

    fn join(&mut self, pid: u32, start_key: u64, instance: u64) {
        self.processes += 1;
        if let Some(i) = self.instances.get_mut(&instance) {
            i.members += 1;
        }
        let old = self.members.insert(
            pid,
            Member {
                start_key,
                instance,
            },
        );
        // A pid reused without its exit seen: the old process is gone.
        if let Some(old) = old {
            self.leave(old.instance);
        }
    }

    /// A process of `instance` ended; the instance ends with its last one.
    fn leave(&mut self, instance: u64) {
        let Some(i) = self.instances.get_mut(&instance) else {
            return;
        };
        i.members = i.members.saturating_sub(1);
        if i.members == 0
            && let Some(i) = self.instances.remove(&instance)
        {
            self.ended.add(i.summary());
            let gone = self.names.remove(&instance).map_or(0, |n| n.len());
            self.names_len -= gone;
        }
    }

    /// Whether the session follows `pid`.
    pub fn follows(&self, pid: u32) -> bool {
        self.members.contains_key(&pid)
    }

    /// Pids followed now.
    pub fn members(&self) -> impl Iterator<Item = u32> + '_ {
        self.members.keys().copied()
    }

    /// Updates membership from a lifecycle event and records what a followed process did.
    /// `exec` describes the event's exec (for the selectors).
    pub fn observe(&mut self, ev: &Event, exec: Option<&ExecInfo<'_>>) {
        let key = start_key_from_ns(ev.start_time_ns);
        match &ev.body {
            EventBody::Exec(x) => {
                let matched = exec.is_some_and(|i| self.spec.selectors.matches(i));
                let member = self.member(ev.pid, key);
                match member {
                    Some(m) => {
                        // An exec keeps the pid, its start key and its instance. Even one the
                        // selectors match (a re-exec, a worker) is checked against
                        // `allow.exec` at run time: only an instance's entry point is not.
                        self.events += 1;
                        let Some((secs, serving)) = self.when(m.instance, ev.ktime_ns) else {
                            return;
                        };
                        let target = exec_target(ev, x.filename.as_str(), x.cwd.as_deref());
                        // Run by the parent: the exec'ing process is the new image now.
                        let by = exec.and_then(|i| i.parent_exe).unwrap_or(ev.comm.as_str());
                        self.footprint.exec(&target, secs, serving, by);
                    }
                    None if matched => {
                        let instance = instance_key(ev.pid, key);
                        self.instances.insert(
                            instance,
                            Instance {
                                root_pid: ev.pid,
                                root_exe: exe_of(ev).map(str::to_owned),
                                started_ns: ev.ktime_ns,
                                listened_ns: None,
                                preexisting: false,
                                members: 0,
                            },
                        );
                        self.join(ev.pid, key, instance);
                        self.events += 1;
                    }
                    None => {}
                }
            }
            EventBody::Fork(f) => {
                if let Some(m) = self.member(ev.pid, key) {
                    self.events += 1;
                    self.join(
                        f.child_pid,
                        start_key_from_ns(f.child_start_time_ns),
                        m.instance,
                    );
                }
            }
            EventBody::Exit(_) => {
                if let Some(m) = self.member(ev.pid, key) {
                    self.events += 1;
                    self.members.remove(&ev.pid);
                    self.leave(m.instance);
                }
            }
            EventBody::File(_) | EventBody::Net(_) | EventBody::Dns(_) => {
                if let Some(m) = self.member(ev.pid, key) {
                    self.events += 1;
                    self.record(ev, m.instance);
                }
            }
        }
    }

    fn member(&self, pid: u32, start_key: u64) -> Option<Member> {
        self.members
            .get(&pid)
            .copied()
            .filter(|m| m.start_key == start_key)
    }

    /// Seconds since the instance started, and whether it was serving.
    fn when(&self, instance: u64, now_ns: u64) -> Option<(f64, bool)> {
        let i = self.instances.get(&instance)?;
        let secs = now_ns.saturating_sub(i.started_ns) as f64 / 1e9;
        let serving = i.preexisting || i.listened_ns.is_some_and(|l| l <= now_ns);
        Some((secs, serving))
    }

    fn record(&mut self, ev: &Event, instance: u64) {
        let Some((secs, serving)) = self.when(instance, ev.ktime_ns) else {
            return;
        };
        let exe = exe_of(ev).unwrap_or(ev.comm.as_str());
        match &ev.body {
            EventBody::File(f) if f.result >= 0 && !f.pseudo => {
                let path = |p: &Option<String>| {
                    p.as_deref()
                        .map(|p| proc_self_path(p, ev.pid, ev.tid).into_owned())
                };
                let use_ = match f.op {
                    FileOp::Open => {
                        let created = f.created == Some(true);
                        let (read, write) = match f.access {
                            Some(Access::Read) | None => (true, created),
                            Some(Access::Write) => (false, true),
                            Some(Access::ReadWrite) => (true, true),
                        };
                        FileUse {
                            read,
                            write,
                            created,
                        }
                    }
                    FileOp::Unlink | FileOp::Rename | FileOp::Chmod | FileOp::Truncate => FileUse {
                        write: true,
                        ..FileUse::default()
                    },
                    // A link makes a new name (a write) for a file it only names (a read);
                    // a symlink's target is a string, not a file it uses.
                    FileOp::Link | FileOp::Symlink => {
                        let write = FileUse {
                            write: true,
                            ..FileUse::default()
                        };
                        if let Some(p) = path(&f.new_path) {
                            self.footprint.file(&p, write, secs, serving, exe);
                        }
                        if f.op == FileOp::Symlink {
                            return;
                        }
                        FileUse {
                            read: true,
                            ..FileUse::default()
                        }
                    }
                    // A memfd has no path to allow.
                    FileOp::Memfd => return,
                };
                let new_path = (!matches!(f.op, FileOp::Link)).then(|| path(&f.new_path));
                for p in [path(&f.path), new_path.flatten()].into_iter().flatten() {
                    self.footprint.file(&p, use_, secs, serving, exe);
                }
            }
            EventBody::Net(n) => match n.op {
                NetOp::Connect | NetOp::Send => {
                    if n.family == Some(Family::Unix) {
                        if let Some(p) = n.path.as_ref().filter(|_| n.result >= 0) {
                            self.footprint.unix(p, secs, serving, exe);
                        }
                        return;
                    }
                    // As profiles check them: TCP at connect, UDP at send.
                    let udp = n.protocol == Some(Protocol::Udp);
                    if (n.op == NetOp::Send) != udp {
                        return;
                    }
                    let (Some(addr), Some(port)) = (n.remote_addr, n.remote_port) else {
                        return;
                    };
                    let addr = canonical_ip(addr);
                    // Loopback stays an address, and DNS goes to a nameserver, not a name.
                    let host = (!addr.is_loopback() && port != 53)
                        .then(|| self.names.get(&instance)?.get(&addr).cloned())
                        .flatten();
                    let protocol = match n.protocol {
                        Some(Protocol::Udp) => "udp",
                        _ => "tcp",
                    };
                    let to = Destination {
                        host: host.as_deref(),
                        addr,
                        port,
                        protocol,
                    };
                    self.footprint.connect(to, secs, serving, exe);
                }
                NetOp::Listen if n.result >= 0 => {
                    if let Some(port) = n.local_port {
                        self.footprint.listen(port, secs, serving, exe);
                    }
                    if let Some(inst) = self.instances.get_mut(&instance)
                        && inst.listened_ns.is_none()
                    {
                        inst.listened_ns = Some(ev.ktime_ns);
                    }
                }
                NetOp::Bind if n.result >= 0 && n.protocol == Some(Protocol::Udp) => {
                    if let Some(port) = n.local_port.filter(|&p| p != 0) {
                        self.footprint.listen(port, secs, serving, exe);
                    }
                }
                _ => {}
            },
            EventBody::Dns(d) => {
                let Some(query) = &d.query else { return };
                let names = self.names.entry(instance).or_default();
                for &ip in &d.answers {
                    let ip = canonical_ip(ip);
                    if let Some(name) = names.get_mut(&ip) {
                        name.clone_from(query);
                    } else if self.names_len >= MAX_NAMES {
                        self.names_dropped += 1;
                    } else {
                        names.insert(ip, query.clone());
                        self.names_len += 1;
                    }
                }
            }
            EventBody::File(_) | EventBody::Exec(_) | EventBody::Fork(_) | EventBody::Exit(_) => {}
        }
    }

    /// Ends the session at boot-time `now_ns`.
    pub fn finish(self, now_ns: u64, wall: String) -> Outcome {
        let instances_total = self.ended.total + self.instances.len() as u64;
        let mut instances = self.ended.kept;
        instances.extend(self.instances.values().map(Instance::summary));
        instances.sort_by_key(|i| i.root_pid);
        Outcome {
            summary: Summary {
                name: self.spec.name,
                started: self.started_wall,
                ended: wall,
                secs: now_ns.saturating_sub(self.started_ns) as f64 / 1e9,
                processes: self.processes,
                events: self.events,
                instances,
                names_dropped: self.names_dropped,
                instances_total,
            },
            footprint: self.footprint,
        }
    }
}

fn instance_key(pid: u32, start_key: u64) -> u64 {
    (u64::from(pid) << 40) ^ start_key
}

fn exe_of(ev: &Event) -> Option<&str> {
    match &ev.body {
        EventBody::Exec(x) => x.exe.as_deref().or(ev.exe.as_deref()),
        _ => ev.exe.as_deref(),
    }
}

/// What an exec is allowed by: the script an interpreter was given by an absolute path (the
/// `allow.exec` check also looks at the filename given to execve), else the executable.
fn exec_target(ev: &Event, filename: &str, cwd: Option<&str>) -> String {
    let exe = exe_of(ev);
    if filename.starts_with('/') && Some(filename) != exe {
        let argv = match &ev.body {
            EventBody::Exec(x) => x.argv.as_slice(),
            _ => &[],
        };
        // A script the kernel ran through its `#!` line: the program is the filename.
        if program_of(exe, filename, argv, cwd).is_some_and(|p| p == filename) {
            return filename.to_owned();
        }
    }
    exe.unwrap_or(filename).to_owned()
}
