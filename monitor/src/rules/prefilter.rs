//! The `when.path` of every `match` detection, per event kind, in one [`PathIndex`]: an event's
//! paths are matched once, and only the detections whose paths matched (and those without a
//! `path` key) are evaluated in full.

use super::detection::{Detection, KINDS};
use super::path_index::{PathIndex, PathIndexBuilder};
use super::pattern::{expand_home, path_glob};
use super::view::View;

#[derive(Debug, Default)]
pub(crate) struct PathPrefilter {
    /// `None` where the shared index did not build: nothing is filtered there.
    by_kind: [Option<PathIndex>; KINDS],
}

impl PathPrefilter {
    /// `by_kind[k]`: the detections (indices into `detections`) that look at kind `k`.
    pub fn build(detections: &[Detection], by_kind: &[Vec<usize>; KINDS]) -> Self {
        let mut out = Self::default();
        for (k, list) in by_kind.iter().enumerate() {
            let mut b = PathIndexBuilder::default();
            for &i in list {
                let d = &detections[i];
                if d.when.path.is_none() {
                    continue;
                }
                let globs = d.path_patterns.iter().flat_map(|(p, _)| expand_home(p));
                for g in globs.filter_map(|p| path_glob(&p).ok()) {
                    b.add(g, i as u32);
                }
            }
            // The loader compiled each detection's set already; should the shared one fail
            // (past globset's size limit), every detection of the kind is evaluated in full.
            out.by_kind[k] = b.build().ok();
        }
        out
    }

    /// Whether detection `i`, given the event's `hits` from [`Self::hits`], can fire: it has
    /// no `when.path`, or its `when.path` matched.
    pub fn may_fire(d: &Detection, i: usize, hits: Option<&[u32]>) -> bool {
        d.when.path.is_none() || hits.is_none_or(|h| h.contains(&(i as u32)))
    }

    /// The detections of kind `k` whose `when.path` matches one of the event's paths (`None`:
    /// not known, every detection may).
    pub fn hits(&self, k: usize, v: &View<'_>) -> Option<Vec<u32>> {
        let index = self.by_kind[k].as_ref()?;
        let mut out = Vec::new();
        for p in v.paths().into_iter().flatten() {
            index.matches_into(p, &mut out);
        }
        Some(out)
    }
}
