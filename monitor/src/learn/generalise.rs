//! From a footprint to allowlist entries, by rules a reviewer can predict (docs/learning.md):
//!
//! 1. What the baseline allows, and what an existing profile being merged into allows, is not
//!    learned again (the existing entries count it).
//! 2. A path a credential detection watches is listed exactly, with a comment saying so.
//! 3. Other paths are rewritten ([`super::paths`]): versioned runtimes, package trees, generated
//!    temporary names, other processes' `/proc` entries.
//! 4. A directory with more than N distinct names used collapses to `dir/**` (never a top-level
//!    directory, a home directory, nor anything under `/proc`, `/sys`, `/dev`, `/home`, the
//!    secrets mounts, `/var/lib` or `/usr/local`, nor a credentials directory such as `.ssh`,
//!    `.aws` or `.kube` anywhere); exact paths a glob covers fold into it.
//! 5. Every glob that could reach a credential path gets the credential pattern as a `!`
//!    exclusion in its list, so what the profile allows never includes a credential file it
//!    did not see read.
//! 6. Connects are named by the host the workload resolved, else by their address (loopback
//!    included, exact); DNS to the host's nameservers is the baseline's. Listens are ports;
//!    ports in the ephemeral range change every run and are reported, not learned.
//! 7. What was used only before the workload first listened goes to `startup:`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::credentials::{Credentials, exclusions};
use super::footprint::{Connect, Footprint, Seen};
use super::learned::{Entry, ListKey, Lists, Value};
use super::paths::{glob_escape, other_proc, package_root, untemp, unversion};
use crate::rules::{PathList, is_dns_name};

/// Directories that never collapse to `dir/**`.
const NEVER_COLLAPSE: &[&str] = &[
    "/var/run/secrets",
    "/run/secrets",
    "/var/lib",
    "/usr/local",
    "/usr/lib",
    "/usr/share",
];
/// Trees nothing below collapses in.
const NEVER_BELOW: &[&str] = &["/proc", "/sys", "/dev", "/home"];
/// Directories of credentials, wherever a home directory is (`/root`, `/home/*`, a service
/// account's `/var/lib/app`): nothing in or below them collapses, whatever the credential
/// detections say.
const CREDENTIAL_DIRS: &[&str] = &[
    ".ssh", ".aws", ".kube", ".gnupg", ".docker", ".azure", "gcloud",
];

/// How to generalise.
#[derive(Clone, Debug)]
pub struct Options {
    /// A directory with more distinct names used than this collapses to `dir/**`.
    pub collapse_above: usize,
    /// (detection id, path pattern as written) of the credential detections.
    pub credentials: Vec<(String, String)>,
    /// The host's nameservers (DNS to them is the baseline's).
    pub nameservers: Vec<IpAddr>,
    /// The ephemeral port range.
    pub ephemeral: (u16, u16),
    /// Whether the profile has the baseline (its allowances are not learned).
    pub baseline: bool,
    /// Seconds into start-up after which what was used goes to `allow` even if the workload
    /// had not listened yet (it may come after the listen next time); `None` when no workload
    /// instance started and listened while learning: then everything goes to `allow`.
    pub startup_cutoff: Option<f64>,
}

/// The part of a start-up, before its first listen, whose uses go to `allow` anyway: a quarter,
/// at least [`MIN_MARGIN`] seconds.
pub const MARGIN_SHARE: f64 = 0.25;
pub const MIN_MARGIN: f64 = 2.0;

/// The cutoff for a first listen `listen_secs` after the start.
pub fn startup_cutoff(listen_secs: f64) -> f64 {
    listen_secs - (listen_secs * MARGIN_SHARE).max(MIN_MARGIN)
}

/// Objects an existing profile already allows take no new entry: it counts them instead.
pub trait Attribute {
    /// Whether an existing `list` entry allows `path`; counts `seen` to it if so.
    fn path(&mut self, list: ListKey, path: &str, seen: &Seen) -> bool;
    fn connect(&mut self, c: &Connect) -> bool;
    fn listen(&mut self, port: u16, seen: &Seen) -> bool;
}

/// Nothing to merge into.
pub struct Fresh;

impl Attribute for Fresh {
    fn path(&mut self, _: ListKey, _: &str, _: &Seen) -> bool {
        false
    }
    fn connect(&mut self, _: &Connect) -> bool {
        false
    }
    fn listen(&mut self, _: u16, _: &Seen) -> bool {
        false
    }
}

/// The result, split by phase.
#[derive(Clone, Debug, Default)]
pub struct Generalised {
    pub allow: Lists,
    pub startup: Lists,
    /// Remarks for the file's header (what was not learned and why).
    pub notes: Vec<String>,
}

/// One observed path going through the rules.
struct Object {
    path: String,
    seen: Seen,
    created: bool,
}

/// Which list a path is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exec,
    Read,
    Write,
    Unix,
}

impl Kind {
    fn key(self) -> ListKey {
        match self {
            Kind::Exec => ListKey::Exec,
            Kind::Read => ListKey::Read,
            Kind::Write => ListKey::Write,
            Kind::Unix => ListKey::Unix,
        }
    }
}

/// Generalises a footprint into entries; objects `existing` allows are counted there instead.
pub fn generalise(fp: &Footprint, existing: &mut dyn Attribute, opts: &Options) -> Generalised {
    let creds = Credentials::new(&opts.credentials);
    let mut out = Generalised::default();
    let base_read = PathList::baseline(false);
    let base_write = PathList::baseline(true);
    let mut skipped_baseline = 0usize;

    let mut lists: BTreeMap<ListKey, Vec<Entry>> = BTreeMap::new();
    let plain = |m: &BTreeMap<String, Seen>| -> Vec<Object> {
        m.iter()
            .map(|(p, s)| Object {
                path: p.clone(),
                seen: s.clone(),
                created: false,
            })
            .collect()
    };
    let mut objects = |kind: Kind| -> Vec<Object> {
        match kind {
            Kind::Exec => plain(&fp.exec),
            Kind::Unix => plain(&fp.unix),
            Kind::Read | Kind::Write => fp
                .files
                .iter()
                .filter_map(|(p, f)| {
                    let seen = if kind == Kind::Read {
                        &f.read
                    } else {
                        &f.write
                    };
                    let base = if kind == Kind::Read {
                        &base_read
                    } else {
                        &base_write
                    };
                    let seen = seen.as_ref()?;
                    if opts.baseline && base.is_match(p) {
                        skipped_baseline += 1;
                        return None;
                    }
                    Some(Object {
                        path: p.clone(),
                        seen: seen.clone(),
                        created: f.created,
                    })
                })
                .collect(),
        }
    };
    for kind in [Kind::Exec, Kind::Read, Kind::Write, Kind::Unix] {
        let mut objs = objects(kind);
        objs.retain(|o| !existing.path(kind.key(), &o.path, &o.seen));
        lists.insert(kind.key(), path_entries(objs, kind, &creds, opts));
    }
    if skipped_baseline > 0 {
        out.notes.push(format!(
            "{skipped_baseline} file(s) the baseline allows (system libraries, locale and time \
             zone data, name service files, /proc/self) are not listed"
        ));
    }
    lists.insert(ListKey::Connect, connect_entries(fp, existing, opts));
    let (listen, ephemeral) = listen_entries(fp, existing, opts);
    if !ephemeral.is_empty() {
        out.notes.push(format!(
            "not learned: listened on port(s) {} in the ephemeral range {}-{}; they change \
             every run: pin them (e.g. an environment variable) and add them to allow.listen",
            ephemeral
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            opts.ephemeral.0,
            opts.ephemeral.1
        ));
    }
    lists.insert(ListKey::Listen, listen);
    for (key, entries) in lists {
        for e in entries {
            // Exclusions are placed with their globs below.
            if matches!(e.value, Value::Exclude(_)) {
                continue;
            }
            // Listen ports stay in `allow`: the accepts on them come while serving.
            let startup = opts
                .startup_cutoff
                .is_some_and(|cutoff| e.startup_only(cutoff));
            let target = if startup && key != ListKey::Listen {
                &mut out.startup
            } else {
                &mut out.allow
            };
            target.get_mut(key).push(e);
        }
    }
    for key in [ListKey::Exec, ListKey::Read, ListKey::Write, ListKey::Unix] {
        for lists in [&mut out.allow, &mut out.startup] {
            let excl = exclusions(lists.get(key), &creds);
            lists.get_mut(key).extend(excl);
        }
    }
    out
}

/// Entries of one path list.
fn path_entries(
    objs: Vec<Object>,
    kind: Kind,
    creds: &Credentials<'_>,
    opts: &Options,
) -> Vec<Entry> {
    let mut exact: Vec<Entry> = Vec::new();
    let mut general: BTreeMap<String, Entry> = BTreeMap::new();
    for o in objs {
        if kind != Kind::Exec
            && let Some(id) = creds.watcher(&o.path)
        {
            exact.push(
                Entry::new(Value::Path(glob_escape(&o.path)), o.seen, 1).with_note(format!(
                    "credential path ({id} watches it): seen while learning, listed exactly"
                )),
            );
            continue;
        }
        let pattern = rewrite(&o.path, kind, o.created);
        match general.get_mut(&pattern) {
            Some(e) => {
                e.seen.merge(&o.seen);
                e.objects += 1;
            }
            None => {
                general.insert(pattern.clone(), Entry::new(Value::Path(pattern), o.seen, 1));
            }
        }
    }
    if matches!(kind, Kind::Read | Kind::Write) {
        collapse(&mut general, opts.collapse_above);
    }
    fold_covered(&mut general);
    let mut entries: Vec<Entry> = general.into_values().collect();
    entries.extend(exact);
    entries
}

/// The rules of [`super::paths`] for one list, on the path escaped as a glob.
fn rewrite(path: &str, kind: Kind, created: bool) -> String {
    let path = glob_escape(path);
    let p = other_proc(&path).unwrap_or(path);
    let p = unversion(&p);
    match kind {
        Kind::Exec => p,
        Kind::Unix => untemp(&p, created),
        Kind::Read => match package_root(&p) {
            Some(root) => format!("{root}/**"),
            None => untemp(&p, created),
        },
        Kind::Write => match package_root(&p) {
            Some(root) if p.contains("/__pycache__/") => format!("{root}/**/__pycache__/*"),
            _ => untemp(&p, created),
        },
    }
}

fn depth(dir: &str) -> usize {
    dir.matches('/').count()
}

fn collapsible(dir: &str) -> bool {
    depth(dir) >= 2
        && !NEVER_COLLAPSE.contains(&dir)
        && !NEVER_BELOW
            .iter()
            .any(|r| dir == *r || dir.strip_prefix(r).is_some_and(|x| x.starts_with('/')))
        && !dir.split('/').any(|seg| CREDENTIAL_DIRS.contains(&seg))
}

/// Collapses directories with more than `above` distinct names used, deepest first.
fn collapse(entries: &mut BTreeMap<String, Entry>, above: usize) {
    let mut dirs: BTreeSet<(usize, String)> = BTreeSet::new();
    for p in entries.keys() {
        let mut d = p.as_str();
        while let Some(i) = d.rfind('/') {
            d = &d[..i];
            if d.is_empty() {
                break;
            }
            dirs.insert((usize::MAX - depth(d), d.to_owned()));
        }
    }
    for (_, dir) in dirs {
        if !collapsible(&dir) {
            continue;
        }
        let prefix = format!("{dir}/");
        let under: Vec<String> = entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        let names: BTreeSet<&str> = under
            .iter()
            .map(|k| k[prefix.len()..].split('/').next().unwrap_or(""))
            .collect();
        if names.len() <= above {
            continue;
        }
        let mut merged = Entry::new(Value::Path(format!("{dir}/**")), Seen::default(), 0);
        for k in &under {
            if let Some(e) = entries.remove(k) {
                merged.seen.merge(&e.seen);
                merged.objects += e.objects;
            }
        }
        merged = merged.with_note(format!(
            "{} distinct names used in {dir} (more than {above})",
            names.len()
        ));
        if let Some(e) = entries.remove(&format!("{dir}/**")) {
            merged.seen.merge(&e.seen);
            merged.objects += e.objects;
        }
        entries.insert(format!("{dir}/**"), merged);
    }
}

/// Folds exact paths (and narrower globs) into a `dir/**` entry that covers them.
fn fold_covered(entries: &mut BTreeMap<String, Entry>) {
    // Entries are in their rewritten form, so a root with a `*` of its own still prefixes the
    // paths it covers.
    let roots: Vec<String> = entries
        .keys()
        .filter_map(|k| k.strip_suffix("/**").map(str::to_owned))
        .collect();
    for root in roots {
        let prefix = format!("{root}/");
        let covered: Vec<String> = entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .chain(entries.contains_key(&root).then(|| root.clone()))
            .filter(|k| *k != format!("{root}/**"))
            .collect();
        for k in covered {
            if let Some(e) = entries.remove(&k)
                && let Some(dst) = entries.get_mut(&format!("{root}/**"))
            {
                dst.seen.merge(&e.seen);
                dst.objects += e.objects;
            }
        }
    }
}

fn connect_entries(fp: &Footprint, existing: &mut dyn Attribute, opts: &Options) -> Vec<Entry> {
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    for c in fp.connect.values() {
        if opts.baseline && c.port == 53 && opts.nameservers.contains(&c.addr) {
            continue;
        }
        if existing.connect(c) {
            continue;
        }
        // A resolved name goes in as a host only if it is one (it came off the wire).
        let host = c.host.as_ref().filter(|h| is_dns_name(h));
        let value = match host {
            Some(h) => Value::Connect {
                host: Some(h.clone()),
                cidr: None,
                port: Some(c.port),
            },
            None => Value::Connect {
                host: None,
                cidr: Some(c.addr.to_string()),
                port: Some(c.port),
            },
        };
        let key = value.to_string();
        match out.get_mut(&key) {
            Some(e) => {
                e.seen.merge(&c.seen);
                e.objects += 1;
            }
            None => {
                let note = match host {
                    Some(_) => format!("{} {}", c.protocol, c.addr),
                    None => c.protocol.clone(),
                };
                out.insert(key, Entry::new(value, c.seen.clone(), 1).with_note(note));
            }
        }
    }
    out.into_values().collect()
}

fn listen_entries(
    fp: &Footprint,
    existing: &mut dyn Attribute,
    opts: &Options,
) -> (Vec<Entry>, Vec<u16>) {
    let (mut out, mut ephemeral) = (Vec::new(), Vec::new());
    for (&port, seen) in &fp.listen {
        if existing.listen(port, seen) {
            continue;
        }
        if (opts.ephemeral.0..=opts.ephemeral.1).contains(&port) {
            ephemeral.push(port);
            continue;
        }
        out.push(Entry::new(Value::Listen(port), seen.clone(), 1));
    }
    (out, ephemeral)
}

/// The host's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), else Linux's
/// default.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}
