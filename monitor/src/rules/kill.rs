//! `action: kill` on a detection: the kernel kills a process under an enforce-mode profile at
//! an open the detection matches, whatever the profile allows (never anything else: a process
//! under no enforce-mode profile is only alerted on).
//!
//! The detection must look at opens alone (`on: [open]`), with conditions the kernel judges:
//! `path`, `access` in a form it can test (`[read, read_write]`, `[write, read_write]`, all
//! three, or none) and `result` other than `failure` (the kernel judges successful opens);
//! its `except` blocks may name `path` and `exe`. Anything else is an error at load.
//!
//! Each `when.path` pattern (after `~/` expansion) becomes, in the kernel's form (see
//! `monitor_common::enforce`):
//! - an exact path, a directory tree (`dir/**`) or a file name anywhere (`**/NAME`);
//! - a pattern whose wildcards stand for single components (`/home/*/.ssh/id_*`, also
//!   `/home/*/.aws/sso/cache/**`): the paths that exist when the rules load (a file created
//!   later is alert-only until the next reload, which is said at load);
//! - anything else (`/run/secrets/**/token`, `**/.env.*`): alert-only, named at load.
//!
//! `except` blocks: a file name (`**/NAME`) is spared in the kernel; another path pattern takes
//! the exact paths it matches out, and makes alert-only the trees and names it could reach into
//! (named). A block with `exe` applies per enforce-mode profile: when the profile could run such
//! an executable, the block's paths are treated the same way for that profile (a block without
//! `path` then leaves the whole kill alert-only there); when it cannot, the block never applies.

use std::collections::HashMap;

use globset::GlobMatcher;
use monitor_common::EventKind;
use monitor_common::enforce::{ACCESS_READ, ACCESS_WRITE};

use super::deny::{ExeExcept, KernelDeny, Kill, KillAsk, or_in};
use super::detection::{DetKind, Detection, kind_bit};
use super::kernel_paths::{KernelPaths, with_resolved};
use super::load::{Sink, place};
use super::path_list::is_glob;
use super::pattern::{expand_home, path_glob};
use super::schema::ResultSel;
use crate::sensor::event::Access;

/// Most paths one pattern is expanded to at load; beyond, it stays alert-only.
const MAX_EXPANDED: usize = 4096;

/// A detection's parts that `action: kill` compiles.
pub(crate) struct KillSource<'a> {
    pub id: &'a str,
    /// The detection's file (its `when.path` lines are there).
    pub source: &'a std::path::Path,
    pub ask: &'a KillAsk,
    /// The accesses denied.
    pub access: u32,
    /// `when.path` as written, with lines.
    pub paths: &'a [(String, Option<usize>)],
    /// Each `except` block's `exe` and `path` patterns as written (empty: key absent).
    pub excepts: Vec<(Vec<String>, Vec<String>)>,
}

impl Kill {
    pub fn compile(src: &KillSource<'_>) -> Kill {
        let mut k = Kill {
            access: src.access,
            ..Kill::default()
        };
        let mut expanded = 0;
        let mut found = 0;
        for (i, (pattern, line)) in src.paths.iter().enumerate() {
            let place = place(src.source, *line);
            for p in expand_home(pattern) {
                match compile_pattern(&p, src.access, &mut k.deny) {
                    Compiled::Exactly => {}
                    Compiled::Expanded(n) => {
                        expanded += 1;
                        found += n;
                    }
                    Compiled::No(why) => k.warnings.push(format!(
                        "{place}: key `when.path[{i}]`: detection {}: {pattern:?}: {why}: \
                         alert-only",
                        src.id
                    )),
                }
            }
        }
        if expanded > 0 {
            k.warnings.push(format!(
                "{}: key `action`: detection {}: {expanded} patterns with wildcards stand for \
                 the {found} paths that exist now: a file or directory created later is \
                 alert-only until the next reload",
                src.ask.place(),
                src.id
            ));
        }
        for (index, (exe, paths)) in src.excepts.iter().enumerate() {
            if exe.is_empty() {
                let what = format!("{}: detection {}: except[{index}]", src.ask.place(), src.id);
                spare(&mut k.deny, paths, src.access, &what, &mut k.warnings);
            } else {
                k.exe_excepts.push(ExeExcept {
                    index,
                    exe: exe.clone(),
                    paths: (!paths.is_empty()).then(|| paths.clone()),
                });
            }
        }
        k
    }

    /// What this kill denies in a profile that may run what `exec` allows; what its `exe`
    /// excepts take out there goes to `warnings` (prefixed `prefix`).
    pub fn for_profile(
        &self,
        exec: &KernelPaths,
        prefix: &str,
        warnings: &mut Vec<String>,
    ) -> KernelDeny {
        let mut deny = self.deny.clone();
        for e in &self.exe_excepts {
            if !may_run(&e.exe, exec) {
                continue;
            }
            let what = format!(
                "{prefix}: except[{}] (an executable the profile may run)",
                e.index
            );
            match &e.paths {
                None => {
                    warnings.push(format!("{what}: the whole kill is alert-only"));
                    return KernelDeny::default();
                }
                Some(paths) => spare(&mut deny, paths, self.access, &what, warnings),
            }
        }
        deny
    }
}

enum Compiled {
    Exactly,
    Expanded(usize),
    No(&'static str),
}

fn compile_pattern(p: &str, access: u32, deny: &mut KernelDeny) -> Compiled {
    if let Some(name) = p.strip_prefix("**/") {
        if !is_glob(name) && !name.contains('/') {
            or_in(&mut deny.names, name, access);
            return Compiled::Exactly;
        }
        return Compiled::No("a wildcard the kernel cannot match");
    }
    let (base, tree) = match p.strip_suffix("/**") {
        Some(b) => (b, true),
        None => (p, false),
    };
    if base.contains("**") {
        return Compiled::No("a `**` the kernel cannot match");
    }
    let add = |deny: &mut KernelDeny, path: &str| {
        for q in with_resolved(path) {
            or_in(
                if tree {
                    &mut deny.trees
                } else {
                    &mut deny.exact
                },
                &q,
                access,
            );
        }
    };
    if !is_glob(base) {
        add(deny, if base.is_empty() { "/" } else { base });
        return Compiled::Exactly;
    }
    match existing(base, tree) {
        Some(paths) => {
            for path in &paths {
                add(deny, path);
            }
            Compiled::Expanded(paths.len())
        }
        None => Compiled::No("more matches than the kernel's table takes"),
    }
}

/// The existing paths `pattern` (wildcards within components only) matches; directories
/// only when `dirs`. `None` past [`MAX_EXPANDED`].
fn existing(pattern: &str, dirs: bool) -> Option<Vec<String>> {
    let mut at = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if is_glob(comp) {
            let m = matcher(comp)?;
            for dir in &at {
                let Ok(rd) = std::fs::read_dir(if dir.is_empty() { "/" } else { dir }) else {
                    continue;
                };
                for e in rd.flatten() {
                    if let Some(name) = e.file_name().to_str()
                        && m.is_match(name)
                    {
                        next.push(format!("{dir}/{name}"));
                    }
                }
            }
        } else {
            next.extend(at.iter().map(|d| format!("{d}/{comp}")));
        }
        if next.len() > MAX_EXPANDED {
            return None;
        }
        at = next;
    }
    at.retain(|p| match dirs {
        true => std::fs::metadata(p).is_ok_and(|m| m.is_dir()),
        false => std::fs::symlink_metadata(p).is_ok(),
    });
    at.sort();
    Some(at)
}

/// A matcher of a path glob ([`path_glob`]); `None` for a bad one (reported at load).
fn matcher(glob: &str) -> Option<GlobMatcher> {
    path_glob(glob).ok().map(|g| g.compile_matcher())
}

/// Takes out of `deny` what except patterns `paths` spare (for `access`): a name spared, exact
/// paths matched dropped, trees and names the pattern could reach into dropped and named.
fn spare(deny: &mut KernelDeny, paths: &[String], access: u32, what: &str, w: &mut Vec<String>) {
    for written in paths {
        for p in expand_home(written) {
            if let Some(name) = p
                .strip_prefix("**/")
                .filter(|n| !is_glob(n) && !n.contains('/'))
            {
                or_in(&mut deny.spared, name, access);
                let file = format!("/{name}");
                deny.exact.retain(|e, _| !e.ends_with(&file));
                continue;
            }
            let Some(whole) = matcher(&p) else {
                continue;
            };
            deny.exact.retain(|e, _| !whole.is_match(e));
            take_out(
                &mut deny.trees,
                |t| reaches_under(&p, t),
                w,
                |t| {
                    format!("{what} {written:?} may spare files under {t}: that tree is alert-only")
                },
            );
            let last = matcher(p.rsplit('/').next().unwrap_or(""));
            take_out(
                &mut deny.names,
                |n| last.as_ref().is_some_and(|m| m.is_match(n)),
                w,
                |n| {
                    format!("{what} {written:?} may spare files named {n}: that name is alert-only")
                },
            );
        }
    }
}

/// Removes the entries of `map` that `hit` selects, each named in `w` by `say`.
fn take_out(
    map: &mut HashMap<String, u32>,
    hit: impl Fn(&str) -> bool,
    w: &mut Vec<String>,
    say: impl Fn(&str) -> String,
) {
    map.retain(|k, _| {
        let gone = hit(k);
        if gone {
            w.push(say(k));
        }
        !gone
    });
}

/// Whether glob `p` may match a path under directory `dir`.
fn reaches_under(p: &str, dir: &str) -> bool {
    let mut pc = p.split('/').filter(|c| !c.is_empty());
    for d in dir.split('/').filter(|c| !c.is_empty()) {
        match pc.next() {
            None => return false,
            Some(c) if c.contains("**") => return true,
            Some(c) if !matcher(c).is_some_and(|m| m.is_match(d)) => return false,
            Some(_) => {}
        }
    }
    pc.next().is_some()
}

/// Whether a profile whose exec list compiles to `exec` may run an executable matching one of
/// `exe` (patterns as written): an exact entry matches, or a tree or alert-only directory the
/// pattern may reach into.
fn may_run(exe: &[String], exec: &KernelPaths) -> bool {
    exe.iter().flat_map(|e| expand_home(e)).any(|e| {
        let Some(m) = matcher(&e) else {
            return true;
        };
        exec.exact.iter().any(|x| m.is_match(x))
            || exec
                .trees
                .iter()
                .chain(exec.open.iter())
                .any(|d| d == "/" || reaches_under(&e, d))
    })
}

impl Detection {
    /// Checks and compiles `action: kill` once overrides are applied; `sink` is the file that
    /// asked for it.
    pub fn compile_kill(&mut self, sink: &mut Sink<'_>) {
        let Some(ask) = self.kill.clone() else {
            return;
        };
        let before = sink.errors.len();
        let mut bad = |msg: String| sink.error(ask.line, "action", msg);
        if self.kind != DetKind::Match || self.on != kind_bit(EventKind::Open) {
            bad(
                "`action: kill` needs a detection on opens alone (`on: [open]`): the \
                 kernel kills at the open of a matching file"
                    .to_owned(),
            );
        }
        if self.when.path.is_none() {
            bad("`action: kill` needs `when.path`: the files whose open kills".to_owned());
        }
        for k in self.when.keys() {
            if !["path", "access", "result"].contains(&k) {
                bad(format!(
                    "`when.{k}` cannot be judged in the kernel, which kills on path, access \
                     and result alone: remove it or use `action: alert`"
                ));
            }
        }
        if self.when.result == ResultSel::Failure {
            bad("`when.result: failure`: the kernel judges the opens that succeed".to_owned());
        }
        let access = access_mask(self.when.access.as_deref()).unwrap_or_else(|e| {
            bad(format!("`when.access`: {e}"));
            0
        });
        for (i, e) in self.except.iter().enumerate() {
            for k in e.keys() {
                if k != "path" && k != "exe" {
                    bad(format!(
                        "`except[{i}].{k}` cannot be judged in the kernel: an exception to a \
                         kill may name `path` and `exe`"
                    ));
                }
            }
        }
        if sink.errors.len() > before {
            return;
        }
        let k = Kill::compile(&KillSource {
            id: &self.id,
            source: &self.source,
            ask: &ask,
            access,
            paths: &self.path_patterns,
            excepts: self
                .except
                .iter()
                .map(|e| (e.src_exe.clone(), e.src_path.clone()))
                .collect(),
        });
        self.compiled_kill = Some(k);
    }
}

/// The accesses an `access:` list denies, or why the kernel cannot judge it: it tests whether
/// an open's accesses meet a mask, so a list must take every open that has the access.
pub(crate) fn access_mask(list: Option<&[Access]>) -> Result<u32, &'static str> {
    let Some(list) = list else {
        return Ok(ACCESS_READ | ACCESS_WRITE);
    };
    let has = list.iter().fold(0u8, |m, a| {
        m | match a {
            Access::Read => 1,
            Access::Write => 2,
            Access::ReadWrite => 4,
        }
    });
    match has {
        5 => Ok(ACCESS_READ),
        6 => Ok(ACCESS_WRITE),
        7 => Ok(ACCESS_READ | ACCESS_WRITE),
        _ => Err(
            "the kernel tests whether an open reads or writes: use [read, read_write], \
             [write, read_write], all three, or no `access`",
        ),
    }
}

#[cfg(test)]
#[path = "kill_tests.rs"]
mod tests;
