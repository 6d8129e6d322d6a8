//! A compiled path list (exact paths, globs and `!` exclusions) and the baseline every profile
//! starts from: what profiles, start-up blocks and the kernel's compiled form share.

use std::collections::HashSet;

use marked_yaml::Spanned;

use super::load::Sink;
use super::path_index::{PathIndex, PathIndexBuilder};
use super::pattern::{GLOB_CHARS, expand_home, line_of, path_glob};

/// Reads every process may do when `baseline: true`.
pub(crate) const BASELINE_READ: &[&str] = &[
    "/etc/ld.so.cache",
    "/lib/**",
    "/lib64/**",
    "/usr/lib/**",
    "/usr/lib64/**",
    "/usr/local/lib/**",
    "/usr/share/locale/**",
    "/usr/share/zoneinfo/**",
    "/etc/localtime",
    "/etc/locale.alias",
    "/usr/share/locale/locale.alias",
    "/proc/filesystems",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/passwd",
    "/etc/group",
    "/dev/null",
    "/dev/urandom",
    "/dev/random",
    "/proc/self/**",
    "/sys/devices/system/cpu/**",
    "/sys/fs/cgroup/**",
];

/// Writes every process may do when `baseline: true`.
pub(crate) const BASELINE_WRITE: &[&str] = &["/dev/null"];

/// Whether a pattern has glob syntax (else it names one path exactly). A backslash escapes
/// the character after it (`/app/data\[1\].json`), so it makes a glob too.
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(GLOB_CHARS)
}

/// A compiled path list.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathList {
    exact: HashSet<String>,
    globs: PathIndex,
    exclude: PathIndex,
    /// Every pattern as compiled (`~/` expanded), for the kernel's form of the list.
    pub sources: Vec<Source>,
}

/// One pattern of a path list, where it was written.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub pattern: String,
    pub negated: bool,
    /// `None` for the baseline's.
    pub line: Option<usize>,
    pub key: String,
}

impl PathList {
    /// Compiles `patterns` (errors keyed `key[i]`), plus built-in `base` patterns. With
    /// `dir_too`, `dir/**` also allows `dir` itself (opening a directory to list it).
    pub fn compile(
        patterns: &[Spanned<String>],
        key: &str,
        base: &[&str],
        dir_too: bool,
        sink: &mut Sink<'_>,
    ) -> Self {
        let mut exact = HashSet::new();
        let mut sources = Vec::new();
        let (mut globs, mut exclude) = (PathIndexBuilder::default(), PathIndexBuilder::default());
        for (i, written) in patterns.iter().enumerate() {
            let (negated, p) = match written.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, written.as_str()),
            };
            let key = format!("{key}[{i}]");
            if let Err(e) = path_glob(p) {
                sink.error(
                    line_of(written),
                    &key,
                    format!("invalid glob {:?}: {}", written.as_str(), e.kind()),
                );
                continue;
            }
            if !p.starts_with('/') && !p.starts_with("~/") && !p.starts_with("**") {
                sink.error(
                    line_of(written),
                    &key,
                    format!(
                        "{:?} is not an absolute path: paths are matched as the kernel resolved \
                         them, e.g. \"/app/**\", \"~/.cache/**\" or \"**/.env\"",
                        written.as_str()
                    ),
                );
                continue;
            }
            let mut expanded = expand_home(p);
            if dir_too
                && !negated
                && let Some(dir) = p.strip_suffix("/**").filter(|d| !d.is_empty())
            {
                expanded.extend(expand_home(dir));
            }
            for one in expanded {
                sources.push(Source {
                    pattern: one.clone(),
                    negated,
                    line: line_of(written),
                    key: key.clone(),
                });
                let target = if negated {
                    &mut exclude
                } else if !is_glob(&one) {
                    exact.insert(one);
                    continue;
                } else {
                    &mut globs
                };
                match path_glob(&one) {
                    Ok(g) => target.add(g, 0),
                    Err(e) => {
                        sink.error(
                            line_of(written),
                            &key,
                            format!("invalid glob {:?}: {}", written.as_str(), e.kind()),
                        );
                        break;
                    }
                }
            }
        }
        for p in base {
            sources.push(Source {
                pattern: (*p).to_owned(),
                negated: false,
                line: None,
                key: "baseline".to_owned(),
            });
            if is_glob(p) {
                if let Ok(g) = path_glob(p) {
                    globs.add(g, 0);
                }
            } else {
                exact.insert((*p).to_owned());
            }
        }
        Self {
            exact,
            globs: build_index(globs, key, sink),
            exclude: build_index(exclude, key, sink),
            sources,
        }
    }

    /// The baseline's reads (or writes) alone.
    pub fn baseline(write: bool) -> Self {
        let mut errors = Vec::new();
        let mut sink = Sink {
            file: std::path::Path::new("<baseline>"),
            errors: &mut errors,
        };
        let base = if write { BASELINE_WRITE } else { BASELINE_READ };
        Self::compile(&[], "baseline", base, false, &mut sink)
    }

    /// Whether `path` is listed exactly (not through a glob).
    pub fn lists_exactly(&self, path: &str) -> bool {
        self.exact.contains(path)
    }

    /// Whether `path` is allowed: listed exactly, or matched by a glob and no exclusion.
    pub fn is_match(&self, path: &str) -> bool {
        self.exact.contains(path) || (self.globs.is_match(path) && !self.exclude.is_match(path))
    }
}

/// Builds an index whose individual globs all compiled; see [`super::pattern::build_set`].
pub(crate) fn build_index(b: PathIndexBuilder, key: &str, sink: &mut Sink<'_>) -> PathIndex {
    b.build().unwrap_or_else(|e| {
        sink.error(
            None,
            key,
            format!("the patterns do not compile together ({e}): split or simplify them"),
        );
        PathIndex::default()
    })
}
