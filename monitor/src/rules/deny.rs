//! What `action: kill` denies: where a detection asked for it, and its compiled form (the
//! kernel's deny entries, the executables excepted per profile). `kill.rs` compiles it.

use std::collections::HashMap;
use std::path::PathBuf;

use super::load::place;

/// Where a detection asked for `action: kill` (its file and line), kept until the rule set is
/// complete (an override may ask, or take it back).
#[derive(Clone, Debug)]
pub(crate) struct KillAsk {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl KillAsk {
    pub fn place(&self) -> String {
        place(&self.file, self.line)
    }
}

/// What the kernel denies, each entry with the accesses it denies
/// (`monitor_common::enforce::ACCESS_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelDeny {
    pub exact: HashMap<String, u32>,
    /// Directories (no trailing `/`) whose trees are denied.
    pub trees: HashMap<String, u32>,
    /// File names denied anywhere.
    pub names: HashMap<String, u32>,
    /// File names spared from denied trees and names.
    pub spared: HashMap<String, u32>,
}

pub(super) fn or_in(map: &mut HashMap<String, u32>, key: &str, bits: u32) {
    *map.entry(key.to_owned()).or_default() |= bits;
}

impl KernelDeny {
    pub(super) fn extend(&mut self, other: &KernelDeny) {
        for (mine, theirs) in [
            (&mut self.exact, &other.exact),
            (&mut self.trees, &other.trees),
            (&mut self.names, &other.names),
            (&mut self.spared, &other.spared),
        ] {
            for (k, bits) in theirs {
                or_in(mine, k, *bits);
            }
        }
    }

    /// Whether the kernel denies `path` for any access in `need` (as it judges it).
    pub fn covers(&self, path: &str, need: u32) -> bool {
        let name = path.rsplit('/').next().unwrap_or("");
        let mut wide = self.names.get(name).copied().unwrap_or(0);
        // Every directory above the path: `/`, then each prefix before a `/`.
        for (i, _) in path.match_indices('/') {
            let dir = if i == 0 { "/" } else { &path[..i] };
            wide |= self.trees.get(dir).copied().unwrap_or(0);
        }
        let denied = self.exact.get(path).copied().unwrap_or(0)
            | (wide & !self.spared.get(name).copied().unwrap_or(0));
        need & denied != 0
    }
}

/// A detection's `except` block that names executables: it applies per profile.
#[derive(Clone, Debug)]
pub(super) struct ExeExcept {
    pub index: usize,
    pub exe: Vec<String>,
    /// `None`: every path.
    pub paths: Option<Vec<String>>,
}

/// A detection's `action: kill`, compiled.
#[derive(Clone, Debug, Default)]
pub(crate) struct Kill {
    /// The accesses denied (`ACCESS_*`).
    pub(super) access: u32,
    pub deny: KernelDeny,
    pub(super) exe_excepts: Vec<ExeExcept>,
    /// What stays alert-only, one line each.
    pub warnings: Vec<String>,
}
