//! Detections: compiled `when`/`except` conditions and the per-detection settings. The
//! stateful kinds (`write_then_exec`, `burst`) keep their memory in [`super::state`].

use marked_yaml::Spanned;
use monitor_common::EventKind;

use super::cond::Cond;
use super::deny::{Kill, KillAsk};
use super::load::Sink;
use super::pattern::{is_mitre_id, is_rule_name, line_of};
use super::profile::bad_name;
use super::schema::{
    Conditions, DetectionAction, DetectionDoc, DetectionType, OnKind, OverrideDoc, Scope, Severity,
};
use super::view::View;
use super::{EvalContext, Finding};

/// Bit of an event kind in a detection's `on` mask.
pub(crate) fn kind_bit(k: EventKind) -> u32 {
    1 << kind_index(k)
}

/// Dense index of an event kind, `0..KINDS`.
pub(crate) fn kind_index(k: EventKind) -> usize {
    match k {
        EventKind::Exec => 0,
        EventKind::Fork => 1,
        EventKind::Exit => 2,
        EventKind::Open => 3,
        EventKind::Unlink => 4,
        EventKind::Rename => 5,
        EventKind::Chmod => 6,
        EventKind::Memfd => 7,
        EventKind::Connect => 8,
        EventKind::Accept => 9,
        EventKind::Bind => 10,
        EventKind::Listen => 11,
        EventKind::Send => 12,
        EventKind::Dns => 13,
        EventKind::Link => 14,
        EventKind::Symlink => 15,
        EventKind::Truncate => 16,
    }
}

/// Number of event kinds.
pub(crate) const KINDS: usize = 17;

fn on_kind(k: OnKind) -> EventKind {
    match k {
        OnKind::Exec => EventKind::Exec,
        OnKind::Fork => EventKind::Fork,
        OnKind::Exit => EventKind::Exit,
        OnKind::Open => EventKind::Open,
        OnKind::Unlink => EventKind::Unlink,
        OnKind::Rename => EventKind::Rename,
        OnKind::Chmod => EventKind::Chmod,
        OnKind::Memfd => EventKind::Memfd,
        OnKind::Connect => EventKind::Connect,
        OnKind::Send => EventKind::Send,
        OnKind::Dns => EventKind::Dns,
        OnKind::Accept => EventKind::Accept,
        OnKind::Bind => EventKind::Bind,
        OnKind::Listen => EventKind::Listen,
        OnKind::Link => EventKind::Link,
        OnKind::Symlink => EventKind::Symlink,
        OnKind::Truncate => EventKind::Truncate,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DetKind {
    Match,
    WriteThenExec,
    Burst { threshold: u32, window_ms: u64 },
}

/// A compiled detection.
#[derive(Debug)]
pub(crate) struct Detection {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub mitre: Vec<String>,
    pub enabled: bool,
    pub scope: Scope,
    pub kind: DetKind,
    /// Event kinds looked at, as [`kind_bit`]s.
    pub on: u32,
    pub when: Cond,
    pub except: Vec<Cond>,
    /// `when.path` as written, with lines (for `monitor learn`, which keeps its globs off
    /// these paths, and for `action: kill`).
    pub path_patterns: Vec<(String, Option<usize>)>,
    /// The file it was loaded from.
    pub source: std::path::PathBuf,
    /// `action: kill` asked for, where...
    pub kill: Option<KillAsk>,
    /// ...and compiled (once the rule set is complete).
    pub compiled_kill: Option<Kill>,
}

impl Detection {
    pub fn compile(doc: DetectionDoc, sink: &mut Sink<'_>) -> Detection {
        let id_line = line_of(&doc.detection);
        if !is_rule_name(&doc.detection) {
            sink.error(id_line, "detection", bad_name(&doc.detection));
        }
        if doc.mitre.is_empty() {
            sink.error(
                line_of(&doc.mitre),
                "mitre",
                "empty list: give at least one ATT&CK technique id, e.g. [T1552.001]",
            );
        }
        for (i, m) in doc.mitre.iter().enumerate() {
            if !is_mitre_id(m) {
                sink.error(
                    line_of(m),
                    &format!("mitre[{i}]"),
                    format!(
                        "invalid ATT&CK technique id {:?}: expected T1234 or T1234.567",
                        m.as_str()
                    ),
                );
            }
        }
        let kind = compile_kind(&doc, sink);
        let on = match (&doc.on, kind) {
            (Some(on), _) => on.iter().fold(0, |m, k| m | kind_bit(on_kind(*k))),
            (None, DetKind::WriteThenExec) => kind_bit(EventKind::Exec),
            (None, DetKind::Match | DetKind::Burst { .. }) => {
                sink.error(
                    id_line,
                    "on",
                    "required key is missing: the event kinds to look at, e.g. `on: [open]`",
                );
                0
            }
        };
        if let Some(l) = &doc.on {
            let allowed = match kind {
                DetKind::Match => u32::MAX,
                DetKind::WriteThenExec => kind_bit(EventKind::Exec),
                DetKind::Burst { .. } => kind_bit(EventKind::Exec) | kind_bit(EventKind::Fork),
            };
            if l.is_empty() {
                sink.error(
                    line_of(l),
                    "on",
                    "empty list: give the event kinds to look at",
                );
            } else if on & !allowed != 0 {
                let msg = match kind {
                    DetKind::WriteThenExec => {
                        "`write_then_exec` looks at exec events: use `on: [exec]` or leave `on` out"
                    }
                    _ => "`burst` counts process creations: use `on: [fork]` or `on: [exec]`",
                };
                sink.error(line_of(l), "on", msg);
            }
        }
        let when = doc
            .when
            .as_ref()
            .map(|w| Cond::compile(w, "when", sink))
            .unwrap_or_default();
        let except = compile_excepts(doc.except.as_deref().unwrap_or(&[]), sink);
        Detection {
            id: doc.detection.to_string(),
            description: doc.description,
            severity: doc.severity,
            mitre: doc.mitre.iter().map(|m| m.to_string()).collect(),
            enabled: doc.enabled.unwrap_or(true),
            scope: doc.scope.unwrap_or_default(),
            kind,
            on,
            when,
            except,
            path_patterns: doc
                .when
                .as_ref()
                .and_then(|w| w.path.as_ref())
                .map(|l| l.iter().map(|p| (p.to_string(), line_of(p))).collect())
                .unwrap_or_default(),
            kill: kill_ask(doc.action.as_ref(), sink),
            compiled_kill: None,
            source: sink.file.to_path_buf(),
        }
    }

    /// Applies an `override:` document.
    pub fn apply_override(&mut self, o: &OverrideDoc, sink: &mut Sink<'_>) {
        if let Some(e) = o.enabled {
            self.enabled = e;
        }
        if let Some(s) = o.severity {
            self.severity = s;
        }
        if o.action.is_some() {
            self.kill = kill_ask(o.action.as_ref(), sink);
        }
        self.except
            .extend(compile_excepts(o.except.as_deref().unwrap_or(&[]), sink));
    }

    /// Whether the detection fires on this event: scope, `when`, and no `except` block.
    pub fn fires(&self, v: &View<'_>, ctx: &EvalContext<'_>, target: Option<&str>) -> bool {
        let contained = ctx.profile.is_some() || v.ev.container_id.is_some();
        let in_scope = match self.scope {
            Scope::All => true,
            Scope::Profiled => ctx.profile.is_some(),
            Scope::Contained => contained,
            Scope::Host => !contained,
        };
        in_scope
            && self.when.matches(v, ctx, target)
            && !self.except.iter().any(|e| e.matches(v, ctx, target))
    }

    /// A finding for this detection; `what` replaces the event's own action text.
    pub fn finding(
        &self,
        v: &View<'_>,
        profile: Option<&str>,
        what: Option<String>,
        object: String,
    ) -> Finding {
        let what = what.unwrap_or_else(|| v.action());
        Finding {
            rule: self.id.clone(),
            severity: self.severity,
            mitre: self.mitre.clone(),
            profile: profile.map(str::to_owned),
            message: format!("{} {what}: {}: {}", v.who(), self.id, self.description),
            key: format!("{}|{object}", self.id),
            enforceable: false,
            sigma: None,
        }
    }
}

/// Where `action: kill` was asked for (`action: alert` takes it back).
fn kill_ask(action: Option<&Spanned<DetectionAction>>, sink: &Sink<'_>) -> Option<KillAsk> {
    action
        .filter(|a| ***a == DetectionAction::Kill)
        .map(|a| KillAsk {
            file: sink.file.to_path_buf(),
            line: line_of(a),
        })
}

fn compile_excepts(blocks: &[Conditions], sink: &mut Sink<'_>) -> Vec<Cond> {
    blocks
        .iter()
        .enumerate()
        .map(|(i, c)| Cond::compile(c, &format!("except[{i}]"), sink))
        .collect()
}

fn compile_kind(doc: &DetectionDoc, sink: &mut Sink<'_>) -> DetKind {
    let id_line = line_of(&doc.detection);
    match doc.kind.unwrap_or(DetectionType::Match) {
        DetectionType::Burst => {
            let threshold = doc.threshold.as_ref().map(|t| **t);
            let window = doc.window_ms.as_ref().map(|w| **w);
            if threshold.is_none() {
                sink.error(
                    id_line,
                    "threshold",
                    "required key is missing for `type: burst`",
                );
            }
            match &doc.window_ms {
                None => sink.error(
                    id_line,
                    "window_ms",
                    "required key is missing for `type: burst`",
                ),
                Some(w) if **w == 0 => sink.error(line_of(w), "window_ms", "must be at least 1"),
                Some(_) => {}
            }
            DetKind::Burst {
                threshold: threshold.unwrap_or(u32::MAX),
                window_ms: window.unwrap_or(1).max(1),
            }
        }
        k @ (DetectionType::Match | DetectionType::WriteThenExec) => {
            for (key, line) in [
                ("threshold", doc.threshold.as_ref().and_then(line_of)),
                ("window_ms", doc.window_ms.as_ref().and_then(line_of)),
            ] {
                if line.is_some() {
                    sink.error(line, key, "only used by `type: burst`");
                }
            }
            if k == DetectionType::Match {
                DetKind::Match
            } else {
                DetKind::WriteThenExec
            }
        }
    }
}

#[cfg(test)]
#[path = "detection_tests.rs"]
mod tests;
