//! Learning into an existing profile (`monitor learn --merge FILE`, and `--profile NAME`, which
//! refines the loaded profile's file): what its entries allow counts to them, what they do not
//! allow becomes new entries after them, and nothing is removed: an entry not seen while
//! learning stays, marked in its comment and reported.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use marked_yaml::{Span, Spanned};

use super::footprint::{Connect, Seen};
use super::generalise::{Attribute, Generalised};
use super::globs::PathGlob;
use super::learned::{Entry, LIST_KEYS, LearnedProfile, ListKey, Lists, Origin, Scalar, Value};
use crate::rules::load::{Doc, RuleFileError, Sink};
use crate::rules::schema::{Allow, ProfileDoc};
use crate::rules::{PathList, RulesError, canonical_ip, is_glob, parse_net};

/// An existing profile with what was learned merged in.
pub struct Merged {
    pub allow: Lists,
    pub startup: Lists,
    /// Existing entries not seen while learning (kept, marked).
    pub unseen: Vec<String>,
    /// Learned exclusions that take paths out of existing globs.
    pub narrowed: Vec<String>,
}

/// One entry of the existing profile, with what it matches.
#[derive(Debug)]
struct Known {
    entry: Entry,
    matcher: Matcher,
}

#[derive(Debug)]
enum Matcher {
    Path(Box<PathList>),
    Host(String, Option<u16>),
    Net(ipnet::IpNet, Option<u16>),
    Port(u16),
    None,
}

/// The lists of one block, with each list compiled whole (exclusions included) too.
#[derive(Debug, Default)]
struct Block {
    lists: Vec<(ListKey, Vec<Known>, Option<PathList>)>,
}

/// An existing profile to learn into.
#[derive(Debug)]
pub struct Existing {
    pub path: PathBuf,
    pub profile: LearnedProfile,
    allow: Block,
    startup: Block,
    /// The start-up cutoff learned (then startup entries count start-up objects).
    startup_cutoff: Option<f64>,
}

fn spanned(s: &str) -> Spanned<String> {
    Spanned::new(Span::new_blank(), s.to_owned())
}

fn strings(l: &Option<Vec<Spanned<String>>>) -> Vec<String> {
    l.iter().flatten().map(|s| s.to_string()).collect()
}

impl Existing {
    /// Reads and checks `path`: one profile document, valid as a rule file.
    pub fn read(path: &Path) -> Result<Self, RulesError> {
        Self::read_all(path).and_then(|mut v| match v.len() {
            1 => Ok(v.remove(0)),
            n => Err(RulesError {
                errors: vec![RuleFileError {
                    file: path.to_path_buf(),
                    line: None,
                    key: String::new(),
                    message: format!("expected one profile, found {n}"),
                }],
            }),
        })
    }

    /// Every profile in `path` (a file, or a directory of rule files), each valid.
    pub fn read_all(path: &Path) -> Result<Vec<Self>, RulesError> {
        crate::rules::RuleSet::load(&[path.to_path_buf()])?;
        let mut errors = Vec::new();
        let files = crate::rules::load::discover(&[path.to_path_buf()], &mut errors);
        let mut out = Vec::new();
        for file in files {
            if let Some(Doc::Profile(d)) = crate::rules::load::read_doc(&file, &mut errors) {
                out.push(Self::from_doc(&file, *d));
            }
        }
        if !errors.is_empty() {
            return Err(RulesError { errors });
        }
        if out.is_empty() {
            return Err(RulesError {
                errors: vec![RuleFileError {
                    file: path.to_path_buf(),
                    line: None,
                    key: String::new(),
                    message: "no profile here: learning and diffs work on `profile:` documents"
                        .to_owned(),
                }],
            });
        }
        Ok(out)
    }

    fn from_doc(path: &Path, doc: ProfileDoc) -> Self {
        let sel = &*doc.selectors;
        let mut selectors = Vec::new();
        let lists = [
            ("exe", strings(&sel.exe)),
            ("program", strings(&sel.program)),
            (
                "argv_contains",
                sel.argv_contains.clone().unwrap_or_default(),
            ),
            ("parent_exe", strings(&sel.parent_exe)),
            ("container_id", strings(&sel.container_id)),
            ("pod_uid", strings(&sel.pod_uid)),
        ];
        for (key, values) in lists {
            if !values.is_empty() {
                selectors.push((
                    key.to_owned(),
                    values.into_iter().map(Scalar::Str).collect(),
                ));
            }
        }
        if let Some(uids) = &sel.uid {
            selectors.push((
                "uid".to_owned(),
                uids.iter().map(|u| Scalar::Num(u64::from(*u))).collect(),
            ));
        }
        let profile = LearnedProfile {
            name: doc.profile.to_string(),
            description: doc.description.clone(),
            selectors,
            mode: doc
                .mode
                .as_ref()
                .map(|m| format!("{:?}", **m).to_lowercase()),
            severity: doc.severity.map(|s| s.as_str().to_owned()),
            inherit: doc.inherit,
            baseline: doc.baseline,
            startup_secs: doc.startup_secs.as_ref().map(|s| **s),
            ..LearnedProfile::default()
        };
        Self {
            path: path.to_path_buf(),
            profile,
            allow: block(doc.allow.as_ref()),
            startup: block(doc.startup.as_ref()),
            startup_cutoff: None,
        }
    }

    /// The written entries of each list: `allow.read`, `startup.connect`, ... (lists given in
    /// the file only).
    pub fn written(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for (name, block) in [("allow", &self.allow), ("startup", &self.startup)] {
            for (key, known, _) in &block.lists {
                if !known.is_empty() {
                    out.push((
                        format!("{name}.{key}"),
                        known.iter().map(|k| k.entry.value.to_string()).collect(),
                    ));
                }
            }
        }
        out
    }

    /// Whether the profile has the baseline.
    pub fn baseline(&self) -> bool {
        self.profile.baseline.unwrap_or(true)
    }

    /// Whether start-up objects may count to `startup:` entries.
    pub fn set_startup_cutoff(&mut self, cutoff: Option<f64>) {
        self.startup_cutoff = cutoff;
    }

    /// The blocks an object may count to: `allow`, and `startup` for start-up objects.
    fn blocks(&mut self, seen: &Seen) -> Vec<&mut Block> {
        let startup_only = self
            .startup_cutoff
            .is_some_and(|c| seen.startup && !seen.serving && seen.last_startup_secs <= c);
        let mut v = vec![&mut self.allow];
        if startup_only {
            v.push(&mut self.startup);
        }
        v
    }

    /// The existing entries, with what was counted to them, then `learned`'s.
    pub fn merge(self, learned: Generalised) -> Merged {
        let (mut unseen, mut narrowed) = (Vec::new(), Vec::new());
        let mut out = [Lists::default(), Lists::default()];
        for (i, (block, new)) in [(self.allow, learned.allow), (self.startup, learned.startup)]
            .into_iter()
            .enumerate()
        {
            let name = if i == 0 { "allow" } else { "startup" };
            for (key, known, _) in block.lists {
                let list = out[i].get_mut(key);
                for k in known {
                    let mut e = k.entry;
                    if e.seen.count == 0 && !matches!(e.value, Value::Exclude(_)) {
                        e.origin = Origin::Unseen;
                        unseen.push(format!("{name}.{key}: {}", e.value));
                    }
                    list.push(e);
                }
            }
            for key in LIST_KEYS {
                for e in new.get(key) {
                    let list = out[i].get_mut(key);
                    if list.iter().any(|k| k.value == e.value) {
                        continue;
                    }
                    let mut e = e.clone();
                    // An exclusion applies to the whole list: a kept glob loses those paths.
                    if let Value::Exclude(x) = &e.value {
                        let x = PathGlob::parse(x);
                        let hit: Vec<String> = list
                            .iter()
                            .filter(|k| k.origin != Origin::Learned)
                            .filter_map(|k| match &k.value {
                                Value::Path(p)
                                    if is_glob(p) && PathGlob::parse(p).intersects(&x) =>
                                {
                                    Some(k.value.to_string())
                                }
                                _ => None,
                            })
                            .collect();
                        if !hit.is_empty() {
                            narrowed.push(format!(
                                "{name}.{key}: {} narrows {}",
                                e.value,
                                hit.join(", ")
                            ));
                            let narrows = format!("narrows the kept {}", hit.join(", "));
                            e = match e.note.take() {
                                Some(n) => e.with_note(format!("{n}; {narrows}")),
                                None => e.with_note(narrows),
                            };
                        }
                    }
                    list.push(e);
                }
            }
        }
        let [allow, startup] = out;
        Merged {
            allow,
            startup,
            unseen,
            narrowed,
        }
    }
}

fn block(allow: Option<&Allow>) -> Block {
    let Some(a) = allow else {
        return Block::default();
    };
    let mut errors = Vec::new();
    let mut sink = Sink {
        file: Path::new("<existing>"),
        errors: &mut errors,
    };
    let mut lists = Vec::new();
    let paths = [
        (ListKey::Exec, &a.exec, false),
        (ListKey::Read, &a.read, true),
        (ListKey::Write, &a.write, true),
        (ListKey::Unix, &a.unix, false),
    ];
    for (key, l, dir_too) in paths {
        let written = strings(l);
        let whole: Vec<Spanned<String>> = written.iter().map(|p| spanned(p)).collect();
        let compiled = PathList::compile(&whole, key.as_str(), &[], dir_too, &mut sink);
        let known = written
            .iter()
            .map(|p| match p.strip_prefix('!') {
                Some(x) => Known {
                    entry: kept(Value::Exclude(x.to_owned())),
                    matcher: Matcher::None,
                },
                None => Known {
                    entry: kept(Value::Path(p.clone())),
                    matcher: Matcher::Path(Box::new(PathList::compile(
                        &[spanned(p)],
                        key.as_str(),
                        &[],
                        dir_too,
                        &mut sink,
                    ))),
                },
            })
            .collect();
        lists.push((key, known, Some(compiled)));
    }
    let connect = a
        .connect
        .iter()
        .flatten()
        .map(|c| {
            let value = Value::Connect {
                host: c.host.as_ref().map(|h| h.to_string()),
                cidr: c.cidr.as_ref().map(|h| h.to_string()),
                port: c.port,
            };
            let matcher = match (&c.host, &c.cidr) {
                (Some(h), _) => match h.parse::<IpAddr>() {
                    Ok(ip) => Matcher::Net(canonical_ip(ip).into(), c.port),
                    Err(_) => Matcher::Host(h.trim_end_matches('.').to_ascii_lowercase(), c.port),
                },
                (None, Some(n)) => parse_net(n).map_or(Matcher::None, |n| Matcher::Net(n, c.port)),
                (None, None) => Matcher::None,
            };
            Known {
                entry: kept(value),
                matcher,
            }
        })
        .collect();
    lists.push((ListKey::Connect, connect, None));
    let listen = a
        .listen
        .iter()
        .flatten()
        .map(|l| Known {
            entry: kept(Value::Listen(l.port)),
            matcher: Matcher::Port(l.port),
        })
        .collect();
    lists.push((ListKey::Listen, listen, None));
    Block { lists }
}

fn kept(value: Value) -> Entry {
    let mut e = Entry::new(value, Seen::default(), 0);
    e.origin = Origin::Kept;
    e
}

fn count_to(known: &mut [Known], seen: &Seen, hit: impl Fn(&Matcher) -> bool) -> bool {
    match known.iter_mut().find(|k| hit(&k.matcher)) {
        Some(k) => {
            k.entry.seen.merge(seen);
            k.entry.objects += 1;
            true
        }
        None => false,
    }
}

impl Attribute for Existing {
    fn path(&mut self, list: ListKey, path: &str, seen: &Seen) -> bool {
        for block in self.blocks(seen) {
            for (key, known, whole) in &mut block.lists {
                if *key != list || !whole.as_ref().is_some_and(|w| w.is_match(path)) {
                    continue;
                }
                if count_to(
                    known,
                    seen,
                    |m| matches!(m, Matcher::Path(p) if p.is_match(path)),
                ) {
                    return true;
                }
            }
        }
        false
    }

    fn connect(&mut self, c: &Connect) -> bool {
        let port = Some(c.port);
        for block in self.blocks(&c.seen) {
            for (key, known, _) in &mut block.lists {
                if *key == ListKey::Connect
                    && count_to(known, &c.seen, |m| match m {
                        Matcher::Host(h, p) => {
                            c.host.as_deref() == Some(h.as_str()) && (p.is_none() || *p == port)
                        }
                        Matcher::Net(n, p) => n.contains(&c.addr) && (p.is_none() || *p == port),
                        _ => false,
                    })
                {
                    return true;
                }
            }
        }
        false
    }

    fn listen(&mut self, port: u16, seen: &Seen) -> bool {
        for block in self.blocks(seen) {
            for (key, known, _) in &mut block.lists {
                if *key == ListKey::Listen
                    && count_to(known, seen, |m| matches!(m, Matcher::Port(p) if *p == port))
                {
                    return true;
                }
            }
        }
        false
    }
}
