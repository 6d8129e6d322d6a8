//! A session's outcome to the profile to write: generalised entries, merged into an existing
//! profile when there is one, the start-up time, and a header saying how it was learned.

use std::net::IpAddr;

use super::generalise::{Fresh, Options, ephemeral_range, generalise, startup_cutoff};
use super::learned::{LearnedProfile, Scalar};
use super::merge::Existing;
use super::paths::{glob_escape, unversion};
use super::session::Outcome;

/// The shortest start-up phase a learned profile gets, seconds.
pub const MIN_STARTUP_SECS: u64 = 30;
/// A learned start-up phase is this many times the longest start-up seen.
pub const STARTUP_FACTOR: f64 = 3.0;

/// What the profile is built from besides the outcome.
pub struct Input<'a> {
    pub outcome: &'a Outcome,
    pub name: String,
    /// `match:` of a new profile (ignored when merging: the existing profile's stays).
    pub selectors: Vec<(String, Vec<Scalar>)>,
    pub existing: Option<Existing>,
    pub collapse_above: usize,
    pub credentials: Vec<(String, String)>,
    pub nameservers: Vec<IpAddr>,
}

/// The profile, and what a reviewer should hear about on the terminal.
pub struct Built {
    pub profile: LearnedProfile,
    /// Entries of the existing profile not seen while learning (kept, marked).
    pub unseen: Vec<String>,
    /// Learned exclusions that take paths out of the existing profile's globs.
    pub narrowed: Vec<String>,
    /// Where the merged profile came from.
    pub merged_from: Option<String>,
}

/// Seconds from an instance's exec to its first listen, over the instances that started while
/// learning.
fn startups(o: &Outcome) -> impl Iterator<Item = f64> + '_ {
    o.summary
        .instances
        .iter()
        .filter(|i| !i.preexisting)
        .filter_map(|i| i.first_listen_secs)
}

pub fn build(input: Input<'_>) -> Built {
    let o = input.outcome;
    let startup = startups(o).reduce(f64::max);
    let shortest = startups(o).reduce(f64::min);
    let mut existing = input.existing;
    let baseline = existing.as_ref().is_none_or(Existing::baseline);
    if let Some(e) = &mut existing {
        e.set_startup_cutoff(shortest.map(startup_cutoff));
    }
    let opts = Options {
        collapse_above: input.collapse_above,
        credentials: input.credentials,
        nameservers: input.nameservers,
        ephemeral: ephemeral_range(),
        baseline,
        startup_cutoff: shortest.map(startup_cutoff),
    };
    let generalised = match &mut existing {
        Some(e) => generalise(&o.footprint, e, &opts),
        None => generalise(&o.footprint, &mut Fresh, &opts),
    };
    let notes = generalised.notes.clone();
    let mut narrowed = Vec::new();
    let (mut profile, allow, startup_lists, unseen, merged_from) = match existing {
        Some(e) => {
            let from = e.path.display().to_string();
            let base = e.profile.clone();
            let m = e.merge(generalised);
            narrowed = m.narrowed;
            (base, m.allow, m.startup, m.unseen, Some(from))
        }
        None => (
            LearnedProfile {
                name: input.name.clone(),
                selectors: with_exe(input.selectors, o),
                mode: Some("alert".to_owned()),
                check_unix: true,
                ..LearnedProfile::default()
            },
            generalised.allow,
            generalised.startup,
            Vec::new(),
            None,
        ),
    };
    if profile.name.is_empty() {
        profile.name = input.name;
    }
    profile.allow = allow;
    profile.startup = startup_lists;
    if let Some(l) = startup {
        let learned = ((l * STARTUP_FACTOR).ceil() as u64)
            .clamp(MIN_STARTUP_SECS, crate::rules::MAX_STARTUP_SECS);
        let kept = profile.startup_secs.filter(|&s| s > learned);
        profile.startup_secs = Some(kept.unwrap_or(learned));
        profile.startup_note = Some(match kept {
            Some(_) => {
                format!("kept: longer than {learned} s (3 x the longest start-up seen, {l:.1} s)")
            }
            None => format!(
                "{STARTUP_FACTOR} x the longest start-up seen ({l:.1} s from exec to first listen), at least {MIN_STARTUP_SECS}"
            ),
        });
    }
    profile.header = header(
        o,
        &profile,
        &notes,
        startup.is_some(),
        merged_from.as_deref(),
        &unseen,
        input.collapse_above,
    );
    Built {
        profile,
        unseen,
        narrowed,
        merged_from,
    }
}

/// The selectors given, plus `exe`: the executables that started the workload's instances
/// (versions generalised), unless `exe` was given. A learned profile then never takes another
/// program that happens to carry the same name (`program: ["litellm"]` alone also matches a
/// binary called `litellm`).
fn with_exe(mut selectors: Vec<(String, Vec<Scalar>)>, o: &Outcome) -> Vec<(String, Vec<Scalar>)> {
    if selectors.iter().any(|(k, _)| k == "exe") {
        return selectors;
    }
    let mut exes: Vec<String> = o
        .summary
        .instances
        .iter()
        .filter_map(|i| i.root_exe.as_deref())
        .map(|e| unversion(&glob_escape(e)))
        .collect();
    exes.sort();
    exes.dedup();
    if !exes.is_empty() {
        selectors.insert(
            0,
            (
                "exe".to_owned(),
                exes.into_iter().map(Scalar::Str).collect(),
            ),
        );
    }
    selectors
}

fn header(
    o: &Outcome,
    p: &LearnedProfile,
    notes: &[String],
    phases: bool,
    merged_from: Option<&str>,
    unseen: &[String],
    collapse_above: usize,
) -> Vec<String> {
    let s = &o.summary;
    let instances = s.instances_total.max(s.instances.len() as u64);
    let mut h = vec![
        format!(
            "Learned by `monitor learn` from {} to {} ({:.0} s): {} process(es) in {} workload \
             instance(s), {} events.",
            s.started, s.ended, s.secs, s.processes, instances, s.events
        ),
        format!(
            "{} entries: {} in allow, {} in startup. Review before use; `monitor rules diff OLD \
             NEW` shows what changed between two versions.",
            p.allow.len() + p.startup.len(),
            p.allow.len(),
            p.startup.len()
        ),
    ];
    if let Some(from) = merged_from {
        h.push(format!(
            "Merged into {from}: its entries come first; {} of them were not seen while learning \
             and are marked NOT SEEN (kept: nothing is removed without you).",
            unseen.len()
        ));
    }
    if !phases {
        h.push(
            "No workload instance started and listened while learning: there is no start-up \
             phase, everything is in allow."
                .to_owned(),
        );
    }
    if o.footprint.dropped > 0 {
        h.push(format!(
            "{} objects were not learned: the session's bound of distinct objects was reached.",
            o.footprint.dropped
        ));
    }
    for n in notes {
        h.push(format!("{}{}", n[..1].to_uppercase(), &n[1..]));
    }
    h.push(String::new());
    h.push(format!(
        "Rules (docs/learning.md): versioned runtimes keep their major version (python3.11 -> \
         python3*); package trees are one ROOT/** entry; a directory with more than \
         {collapse_above} names used is dir/**; generated temporary names are *; credential \
         paths are listed exactly and kept out of every glob by `!` exclusions. Each entry \
         says how often it was seen, how soon after its workload started, and by which \
         executables."
    ));
    wrap(h, 96)
}

/// Wraps long header lines for a readable file.
fn wrap(lines: Vec<String>, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let mut cur = String::new();
        for word in line.split(' ') {
            if !cur.is_empty() && cur.len() + 1 + word.len() > width {
                out.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Input, build};
    use crate::learn::footprint::FileUse;
    use crate::learn::merge::Existing;
    use crate::learn::session::Outcome;
    use crate::testutil::TempDir;

    #[test]
    fn a_learned_exclusion_that_narrows_a_kept_glob_is_reported() {
        let dir = TempDir::new("learn-merge");
        let file = dir.join("p.yaml");
        let existing = "profile: p\nmatch:\n  uid: [0]\nallow:\n  read: [\"/app/**\"]\n";
        std::fs::write(&file, existing).unwrap();
        let mut outcome = Outcome::default();
        let read = FileUse {
            read: true,
            ..FileUse::default()
        };
        for i in 0..10 {
            outcome
                .footprint
                .file(&format!("/srv/data/f{i}"), read, 1.0, true, "/p");
        }
        let built = build(Input {
            outcome: &outcome,
            name: "p".into(),
            selectors: Vec::new(),
            existing: Some(Existing::read(&file).expect("valid")),
            collapse_above: 8,
            credentials: vec![("credential-read".into(), "**/.env".into())],
            nameservers: Vec::new(),
        });
        assert_eq!(
            built.narrowed,
            ["allow.read: \"!**/.env\" narrows \"/app/**\""],
            "{:?}",
            built.profile.allow
        );
    }
}
