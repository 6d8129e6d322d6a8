//! Path globs indexed by the directory their literal start names, so that a path is tried only
//! against the globs that can match it.
//!
//! Why not one `globset::GlobSet`: it runs every strategy over every glob, and globs that end in
//! an extension (`/srv/app7/**/*.py`) sit in one list per extension that it tries one regex at
//! a time, so a profile of a thousand entries costs a thousand-entry scan per path. A glob can
//! only match a path that starts with the glob's literal part (up to its first `*`, `?`, `[`,
//! `{` or `\`); here each glob lives in a small `GlobSet` keyed by that literal part cut after
//! its last `/`, and a path looks up its own directory prefixes, a handful of hash probes.
//! Matching stays globset's, so the meaning of every pattern is unchanged.

use std::collections::HashMap;

use globset::{Candidate, Glob, GlobSet, GlobSetBuilder};

use super::pattern::literal_start;

/// Globs with ids, indexed by literal directory prefix.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathIndex {
    /// Globs with no literal directory (`**/.env`): tried for every path.
    anywhere: Option<Bucket>,
    /// Keyed by a directory prefix ending in `/`.
    dirs: HashMap<Box<str>, Bucket, foldhash::fast::FixedState>,
    /// `probe[n]`: some key in `dirs` is `n` bytes long (a path is probed only there).
    probe: Vec<bool>,
}

#[derive(Clone, Debug)]
struct Bucket {
    set: GlobSet,
    /// The id of each glob of `set`, by its index there.
    ids: Vec<u32>,
}

/// Collects globs for a [`PathIndex`].
#[derive(Default)]
pub(crate) struct PathIndexBuilder {
    groups: HashMap<String, (GlobSetBuilder, Vec<u32>)>,
}

/// The directory prefix (ending in `/`) every path a glob matches starts with; empty when it
/// has none.
fn dir_key(pattern: &str) -> &str {
    let literal = literal_start(pattern);
    literal.rfind('/').map_or("", |i| &literal[..=i])
}

impl PathIndexBuilder {
    /// Adds `glob` under `id` (ids need not be distinct).
    pub fn add(&mut self, glob: Glob, id: u32) {
        let key = dir_key(glob.glob()).to_owned();
        let (b, ids) = self
            .groups
            .entry(key)
            .or_insert_with(|| (GlobSetBuilder::new(), Vec::new()));
        b.add(glob);
        ids.push(id);
    }

    /// Fails only where globset would fail on the same globs (a regex past its size limit).
    pub fn build(self) -> Result<PathIndex, globset::Error> {
        let mut index = PathIndex::default();
        for (key, (b, ids)) in self.groups {
            let bucket = Bucket {
                set: b.build()?,
                ids,
            };
            if key.is_empty() {
                index.anywhere = Some(bucket);
                continue;
            }
            if index.probe.len() <= key.len() {
                index.probe.resize(key.len() + 1, false);
            }
            index.probe[key.len()] = true;
            index.dirs.insert(key.into_boxed_str(), bucket);
        }
        Ok(index)
    }
}

impl PathIndex {
    /// The buckets whose globs can match `path`.
    fn buckets<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Bucket> + 'a {
        let limit = self.probe.len().min(path.len() + 1);
        let dirs = path.as_bytes()[..limit.saturating_sub(1)]
            .iter()
            .enumerate()
            .filter(move |&(i, &b)| b == b'/' && self.probe[i + 1])
            .filter_map(move |(i, _)| self.dirs.get(&path[..=i]));
        self.anywhere.iter().chain(dirs)
    }

    /// Whether some glob matches `path`.
    pub fn is_match(&self, path: &str) -> bool {
        let mut cand = None;
        self.buckets(path).any(|b| {
            b.set
                .is_match_candidate(cand.get_or_insert_with(|| Candidate::new(path)))
        })
    }

    /// Pushes the id of every glob that matches `path` to `out` (an id may repeat).
    pub fn matches_into(&self, path: &str, out: &mut Vec<u32>) {
        let mut cand = None;
        let mut hits = Vec::new();
        for b in self.buckets(path) {
            b.set.matches_candidate_into(
                cand.get_or_insert_with(|| Candidate::new(path)),
                &mut hits,
            );
            out.extend(hits.iter().map(|&i| b.ids[i]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::pattern::path_glob;

    fn index(patterns: &[&str]) -> PathIndex {
        let mut b = PathIndexBuilder::default();
        for (i, p) in patterns.iter().enumerate() {
            b.add(path_glob(p).unwrap(), i as u32);
        }
        b.build().unwrap()
    }

    #[test]
    fn a_glob_is_keyed_by_the_directory_of_its_literal_start() {
        assert_eq!(dir_key("/opt/app/**"), "/opt/app/");
        assert_eq!(dir_key("/opt/app*/x"), "/opt/");
        assert_eq!(dir_key("/home/*/.ssh/id_*"), "/home/");
        assert_eq!(dir_key("/a/\\[1\\].json"), "/a/");
        assert_eq!(dir_key("/a/{b,c}/d"), "/a/");
        assert_eq!(dir_key("**/.env"), "");
        assert_eq!(dir_key("/etc/passwd"), "/etc/");
        assert_eq!(dir_key("/**"), "/");
    }

    /// Every pattern means what a `GlobSet` of the same globs means, on paths at, under, beside
    /// and above each pattern's directory.
    #[test]
    fn it_matches_what_one_globset_matches() {
        let patterns = [
            "/opt/app/**",
            "/opt/app*/bin/*",
            "/srv/**/*.py",
            "/srv/data/*.json",
            "/home/*/.ssh/id_*",
            "**/.env",
            "**/site-packages/*.pth",
            "/**",
            "/etc/passwd",
            "/a/\\[1\\].json",
            "/a/{b,c}/d",
        ];
        let paths = [
            "/opt/app",
            "/opt/app/",
            "/opt/app/x/y",
            "/opt/app2/bin/tool",
            "/opt/app2/bin/sub/tool",
            "/srv/x.py",
            "/srv/a/b/c.py",
            "/srv/data/a.json",
            "/srv/data/sub/a.json",
            "/home/u/.ssh/id_rsa",
            "/home/u/v/.ssh/id_rsa",
            "/app/.env",
            "/.env",
            "/usr/lib/python3/site-packages/x.pth",
            "/etc/passwd",
            "/etc/passwdx",
            "/a/[1].json",
            "/a/1.json",
            "/a/c/d",
            "/a/e/d",
            "relative/.env",
            "",
        ];
        for n in 0..patterns.len() {
            let some = &patterns[n..];
            let idx = index(some);
            let mut b = GlobSetBuilder::new();
            for p in some {
                b.add(path_glob(p).unwrap());
            }
            let set = b.build().unwrap();
            for p in paths {
                assert_eq!(idx.is_match(p), set.is_match(p), "{p} against {some:?}");
                let mut got = Vec::new();
                idx.matches_into(p, &mut got);
                got.sort_unstable();
                let want: Vec<u32> = set.matches(p).into_iter().map(|i| i as u32).collect();
                assert_eq!(got, want, "{p} against {some:?}");
            }
        }
    }

    #[test]
    fn an_empty_index_matches_nothing() {
        let idx = PathIndexBuilder::default().build().unwrap();
        assert!(!idx.is_match("/etc/passwd"));
        assert!(!idx.is_match(""));
    }
}
