//! A path list in the form the kernel enforces it (see `monitor_common::enforce`): exact
//! paths, directory trees, directories where the kernel leaves the decision to user space
//! (a pattern there did not compile), and file names excluded from trees. What does not
//! compile is named, never silently dropped.
//!
//! - `/usr/bin/python3` is an exact path; `/app/**` is the tree under `/app` (and, for reads and
//!   writes, `/app` itself, as `monitor run` has it);
//! - `!**/.env` excludes the name `.env` from trees: only an exact entry allows such a file;
//! - any other glob (`/tmp/tmp*`, `/opt/venv/lib/python3*/site-packages/**`, `**/x`) makes the
//!   directory before its first wildcard alert-only (`/tmp/`, `/opt/venv/lib/`, `/`): nothing
//!   there is killed, user space still alerts;
//! - `/proc/self/**` makes `/proc/` alert-only (the kernel sees `/proc/<pid>/`);
//! - any other exclusion is not enforced by the kernel (what it takes out of a tree is alerted,
//!   not killed).
//!
//! Exact paths and tree roots that are symlinks also get their resolved form, since the kernel
//! judges the path it resolved.

use std::collections::HashSet;

use super::path_list::{PathList, is_glob};
use super::pattern::literal_start;

/// A pattern the kernel cannot enforce as written, and what that means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uncompiled {
    pub line: Option<usize>,
    pub key: String,
    pub pattern: String,
    pub effect: String,
}

/// A path list as the kernel enforces it.
#[derive(Clone, Debug, Default)]
pub struct KernelPaths {
    pub exact: HashSet<String>,
    /// Directories (no trailing `/`; `/` for the root) whose trees are allowed.
    pub trees: HashSet<String>,
    /// Directories whose trees are alert-only.
    pub open: HashSet<String>,
    /// File names excluded from trees.
    pub excluded: HashSet<String>,
}

/// The literal directory before the first wildcard of `pattern` (`/` at least).
fn literal_dir(pattern: &str) -> String {
    let dir = literal_start(pattern)
        .rsplit_once('/')
        .map_or("", |(d, _)| d);
    if dir.is_empty() {
        "/".to_owned()
    } else {
        dir.to_owned()
    }
}

/// The interpreter of script `path` (its `#!` line), when it names one by absolute path
/// (`#!/usr/bin/env python3` does not: env would be what runs).
fn interpreter(path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n')?];
    let first = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
    (first.starts_with('/') && !first.ends_with("/env")).then(|| first.to_owned())
}

/// `path` and, when it is a symlink (or under one), its resolved form.
pub(crate) fn with_resolved(path: &str) -> Vec<String> {
    let mut out = vec![path.to_owned()];
    if let Ok(real) = std::fs::canonicalize(path)
        && let Some(real) = real.to_str()
        && real != path
    {
        out.push(real.to_owned());
    }
    out
}

impl KernelPaths {
    /// Compiles `list`; `dir_too`: `dir/**` also allows `dir` (reads and writes); `exec`: an
    /// exact entry that is a script also allows its interpreter (the kernel judges the image
    /// that runs). Patterns the kernel cannot enforce as written go to `uncompiled`.
    pub(crate) fn compile(
        list: &PathList,
        dir_too: bool,
        exec: bool,
        uncompiled: &mut Vec<Uncompiled>,
    ) -> Self {
        let mut k = KernelPaths::default();
        for src in &list.sources {
            let p = src.pattern.as_str();
            let mut note = |effect: String| {
                uncompiled.push(Uncompiled {
                    line: src.line,
                    key: src.key.clone(),
                    pattern: format!("{}{p}", if src.negated { "!" } else { "" }),
                    effect,
                });
            };
            if src.negated {
                match p
                    .strip_prefix("**/")
                    .filter(|n| !is_glob(n) && !n.contains('/'))
                {
                    Some(name) => {
                        k.excluded.insert(name.to_owned());
                    }
                    None => note(
                        "not enforced in the kernel: what it takes out of the list is alerted, \
                         not stopped"
                            .to_owned(),
                    ),
                }
                continue;
            }
            if !is_glob(p) {
                k.exact.extend(with_resolved(p));
                if let Some(interp) = interpreter(p).filter(|_| exec) {
                    note(format!(
                        "a script: the kernel sees its interpreter {interp} run, which this list \
                         then allows for any script"
                    ));
                    k.exact.extend(with_resolved(&interp));
                }
                continue;
            }
            if p == "/proc/self/**" {
                k.open.insert("/proc".to_owned());
                note("the kernel sees /proc/<pid>/: everything under /proc/ is alert-only".into());
                continue;
            }
            match p.strip_suffix("/**").filter(|d| !is_glob(d)) {
                Some(dir) => {
                    let dir = if dir.is_empty() { "/" } else { dir };
                    for d in with_resolved(dir) {
                        if dir_too {
                            k.exact.insert(d.clone());
                        }
                        k.trees.insert(d);
                    }
                }
                None => {
                    let dir = literal_dir(p);
                    note(format!(
                        "a wildcard the kernel cannot match: everything under {} is alert-only",
                        if dir == "/" {
                            "/".to_owned()
                        } else {
                            format!("{dir}/")
                        }
                    ));
                    k.open.insert(dir);
                }
            }
        }
        k
    }

    /// Whether the kernel lets a process use `path` (as the kernel resolved it).
    pub fn allows(&self, path: &str) -> bool {
        if self.exact.contains(path) {
            return true;
        }
        let name = path.rsplit('/').next().unwrap_or("");
        if self.excluded.contains(name) {
            return false;
        }
        // The directories `path` is under: `/`, then each prefix ending before one of its `/`.
        let listed = |dir: &str| self.trees.contains(dir) || self.open.contains(dir);
        listed("/")
            || path
                .match_indices('/')
                .any(|(i, _)| i > 0 && listed(&path[..i]))
    }

    /// Adds `other` (the start-up lists to the serving ones).
    pub fn extend(&mut self, other: &KernelPaths) {
        self.exact.extend(other.exact.iter().cloned());
        self.trees.extend(other.trees.iter().cloned());
        self.open.extend(other.open.iter().cloned());
        self.excluded.extend(other.excluded.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::enforce::{name_hash, path_hash};

    use crate::rules::{Phase, ProfileId, testutil::load_ok};
    use crate::testutil::TempDir;

    /// The kernel hashes its path walk's encoding (components leaf first, each followed by
    /// `/`, then `/`) read backwards: `path_hash` must give the same without building it.
    #[test]
    fn path_hash_is_the_hash_of_the_walk_encoding_read_backwards() {
        let fnv = |bytes: &[u8]| {
            bytes
                .iter()
                .fold(99u64, |h, b| monitor_common::enforce::hash_byte(h, *b))
        };
        for path in ["/", "/a", "/usr/bin/python3.11", "/tmp/x y/ü"] {
            let mut walk = String::new();
            for c in path.split('/').filter(|c| !c.is_empty()).rev() {
                walk.push_str(c);
                walk.push('/');
            }
            walk.push('/');
            let backwards: Vec<u8> = walk.bytes().rev().collect();
            assert_eq!(path_hash(99, path), fnv(&backwards), "{path}");
        }
        assert_eq!(name_hash(99, ".env"), fnv(b"vne."));
    }

    #[test]
    fn lists_compile_to_exact_paths_trees_names_and_alert_only_directories() {
        let dir = TempDir::new("kernel-paths");
        let script = dir.write("run.sh", "#!/bin/sh\necho hi\n");
        let set = load_ok(&[(
            "p.yaml",
            &format!(
                "profile: p\nmatch:\n  uid: [7]\nmode: enforce\nbaseline: false\nallow:\n  \
                 exec: [\"/usr/bin/uname\", {script:?}]\n  read: [\"/app/**\", \"!**/.env\", \
                 \"/tmp/tmp*\", \"!/app/secret/*\"]\n"
            ),
        )]);
        let files = set
            .kernel_files(ProfileId(0), Phase::Serving)
            .expect("profile");
        let read = &files.read;
        assert!(read.allows("/app") && read.allows("/app/a/b.txt"));
        assert!(!read.allows("/app/.env"), "excluded by name");
        assert!(!read.allows("/application/x"), "a tree is a directory");
        assert!(read.allows("/tmp/whatever"), "alert-only under /tmp/");
        assert!(!read.allows("/root/.ssh/id_rsa"));
        let exec = &files.exec;
        assert!(exec.allows("/usr/bin/uname") && !exec.allows("/usr/bin/id"));
        assert!(
            exec.allows(&std::fs::canonicalize("/bin/sh").unwrap().to_string_lossy()),
            "the script's interpreter, resolved"
        );
        let warnings = set.enforcement_warnings().join("\n");
        for named in ["\"/tmp/tmp*\"", "\"!/app/secret/*\"", "a script"] {
            assert!(warnings.contains(named), "{named} not named:\n{warnings}");
        }
    }
}
