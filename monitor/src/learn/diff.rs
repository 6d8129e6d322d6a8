//! `monitor rules diff OLD NEW`: what changed between two versions of a profile, list by list
//! and phase by phase (`allow.read`, `startup.connect`, ...), plus its selectors and settings.
//! The review step of a dependency upgrade: re-learn in staging, diff against production's
//! profile, read the added lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;

use super::merge::Existing;

/// Every comparable line of a profile, by key.
fn lines(p: &Existing) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (key, values) in &p.profile.selectors {
        out.insert(
            format!("match.{key}"),
            values.iter().map(ToString::to_string).collect(),
        );
    }
    let scalars = [
        ("mode", p.profile.mode.clone()),
        ("severity", p.profile.severity.clone()),
        ("inherit", p.profile.inherit.map(|b| b.to_string())),
        ("baseline", p.profile.baseline.map(|b| b.to_string())),
        (
            "startup_secs",
            p.profile.startup_secs.map(|s| s.to_string()),
        ),
    ];
    for (key, value) in scalars {
        if let Some(v) = value {
            out.insert(key.to_owned(), vec![v]);
        }
    }
    out.extend(p.written());
    out
}

/// The differences, one line each (empty when equal).
pub fn differences(old: &[Existing], new: &[Existing]) -> Vec<String> {
    let by_name = |v: &[Existing]| -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        v.iter()
            .map(|p| (p.profile.name.clone(), lines(p)))
            .collect()
    };
    let (old, new) = (by_name(old), by_name(new));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (a, b) = match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) => (a, b),
            (None, Some(_)) => {
                out.push(format!("+ profile {name} (only in NEW)"));
                continue;
            }
            (Some(_), None) => {
                out.push(format!("- profile {name} (only in OLD)"));
                continue;
            }
            (None, None) => continue,
        };
        let mut section = Vec::new();
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let empty = Vec::new();
            let (x, y) = (a.get(key).unwrap_or(&empty), b.get(key).unwrap_or(&empty));
            let removed: Vec<&String> = x.iter().filter(|v| !y.contains(v)).collect();
            let added: Vec<&String> = y.iter().filter(|v| !x.contains(v)).collect();
            if removed.is_empty() && added.is_empty() {
                continue;
            }
            section.push(format!("  {key}:"));
            section.extend(removed.iter().map(|v| format!("    - {v}")));
            section.extend(added.iter().map(|v| format!("    + {v}")));
        }
        if !section.is_empty() {
            out.push(format!("profile {name}:"));
            out.extend(section);
        }
    }
    out
}

/// Exit status 0: the same; 1: they differ; 2: an input is not valid.
pub fn run(old: &Path, new: &Path) -> ExitCode {
    let read = |p: &Path| {
        Existing::read_all(p).map_err(|e| {
            eprintln!("{e}");
            eprintln!("monitor: error: {} is not a valid profile", p.display());
        })
    };
    let (Ok(a), Ok(b)) = (read(old), read(new)) else {
        return ExitCode::from(2);
    };
    let diff = differences(&a, &b);
    if diff.is_empty() {
        println!("no differences");
        return ExitCode::SUCCESS;
    }
    println!("--- {}\n+++ {}", old.display(), new.display());
    for line in diff {
        println!("{line}");
    }
    ExitCode::from(1)
}
