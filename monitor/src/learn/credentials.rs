//! Keeping learned profiles off credential files: the credential detections' path patterns,
//! matched exactly against observed paths (a credential path read while learning is listed
//! exactly) and intersected with every learned glob (a glob that could reach one gets the
//! pattern as a `!` exclusion in its list).

use globset::{GlobSet, GlobSetBuilder};

use super::footprint::Seen;
use super::globs::PathGlob;
use super::learned::{Entry, Value};
use crate::rules::{expand_home, is_glob, path_glob};

/// The credential patterns, compiled for exact matching and parsed for intersection.
pub(super) struct Credentials<'a> {
    pub(super) written: &'a [(String, String)],
    set: GlobSet,
    /// For each glob of `set`, the index of its written pattern.
    owner: Vec<usize>,
    pub(super) parsed: Vec<PathGlob>,
}

impl<'a> Credentials<'a> {
    pub(super) fn new(written: &'a [(String, String)]) -> Self {
        let mut b = GlobSetBuilder::new();
        let mut owner = Vec::new();
        for (i, (_, p)) in written.iter().enumerate() {
            for one in expand_home(p) {
                if let Ok(g) = path_glob(&one) {
                    b.add(g);
                    owner.push(i);
                }
            }
        }
        let set = b.build().unwrap_or_else(|_| GlobSet::empty());
        Self {
            written,
            set,
            owner,
            parsed: written.iter().map(|(_, p)| PathGlob::parse(p)).collect(),
        }
    }

    /// The detection watching `path`, if any.
    pub(super) fn watcher(&self, path: &str) -> Option<&str> {
        let first = *self.set.matches(path).first()?;
        let (id, _) = &self.written[*self.owner.get(first)?];
        Some(id)
    }
}

/// `!PATTERN` entries for every credential pattern a glob of `list` could reach.
pub(super) fn exclusions(list: &[Entry], creds: &Credentials<'_>) -> Vec<Entry> {
    let globs: Vec<PathGlob> = list
        .iter()
        .filter_map(|e| match &e.value {
            Value::Path(p) if is_glob(p) => Some(PathGlob::parse(p)),
            _ => None,
        })
        .collect();
    let mut out: Vec<Entry> = Vec::new();
    for (i, (id, pattern)) in creds.written.iter().enumerate() {
        if globs.iter().any(|g| g.intersects(&creds.parsed[i]))
            && !out
                .iter()
                .any(|e| e.value == Value::Exclude(pattern.clone()))
        {
            out.push(
                Entry::new(Value::Exclude(pattern.clone()), Seen::default(), 0)
                    .with_note(format!("{id} watches it: the globs above never reach it")),
            );
        }
    }
    out
}
