//! Sigma rules (product `linux`; categories process_creation, file_event, network_connection)
//! and Sigma filters, evaluated natively with the rsigma project's parser and evaluator.
//!
//! - [`validate`]: what the agent can evaluate, checked with file, line and key before rsigma
//!   parses a document (a rule that would silently match nothing is an error).
//! - [`fields`]: the agent's events under Sigma's field names (docs/sigma.md).
//!
//! One rsigma engine per category; an event is evaluated by the engine of its category only.
//! Alerts are named `sigma:<id>`, with the title as message, the level as severity and the
//! `attack.tNNNN` tags as MITRE techniques.

mod anchor;
pub(crate) mod fields;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use marked_yaml::types::MarkedMappingNode;
use rsigma_eval::Engine;
use rsigma_parser::{FilterRule, FilterRuleTarget, Level, parse_sigma_yaml};
use serde::{Deserialize, Serialize};

use super::load::Sink;
use super::view::View;
use super::{EvalContext, Finding, Severity};
use fields::{CATEGORIES, Category, Extra, SigmaEvent};

/// What an alert of a Sigma rule says about the rule (its `sigma` object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigmaInfo {
    pub id: String,
    pub title: String,
    pub level: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub references: Vec<String>,
    /// The rule's authors: the Detection Rule License asks that alerts of a rule keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// A loaded Sigma rule's alert fields.
#[derive(Debug)]
struct Compiled {
    info: Arc<SigmaInfo>,
    rule: String,
    severity: Severity,
    mitre: Vec<String>,
}

/// A filter waiting for every rule to be loaded.
struct PendingFilter {
    filter: FilterRule,
    category: Category,
    file: std::path::PathBuf,
    line: Option<usize>,
}

/// The loaded Sigma rules.
#[derive(Default)]
pub(crate) struct SigmaRules {
    engines: [Engine; CATEGORIES.len()],
    by_id: HashMap<String, Compiled>,
    /// Titles, for filters that name rules by title.
    titles: HashMap<String, String>,
    pending: Vec<PendingFilter>,
    users: OnceLock<HashMap<u32, String>>,
}

impl fmt::Debug for SigmaRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigmaRules")
            .field("rules", &self.by_id.len())
            .finish_non_exhaustive()
    }
}

/// Whether a YAML document is Sigma: a `logsource` beside a `detection` or `filter` mapping.
pub(crate) fn kind_of(map: &MarkedMappingNode) -> Option<&'static str> {
    map.get_node("logsource")?;
    if map.get_mapping("detection").is_some() {
        Some("detection")
    } else if map.get_mapping("filter").is_some() {
        Some("filter")
    } else {
        None
    }
}

impl SigmaRules {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Adds one Sigma document (`block` says which: `detection` or `filter`), reporting every
    /// problem to `sink`.
    pub fn add(&mut self, text: &str, map: &MarkedMappingNode, block: &str, sink: &mut Sink<'_>) {
        let Some(category) = validate::check(map, block, sink) else {
            return;
        };
        let doc_line = map.span().start().map(|m| m.line());
        let collection = match parse_sigma_yaml(text) {
            Ok(c) => c,
            Err(e) => return sink.error(doc_line, block, format!("invalid Sigma: {e}")),
        };
        for e in &collection.errors {
            let (line, key) = if e.contains("ondition") {
                let k = map
                    .get_mapping(block)
                    .and_then(|d| validate::key_line(d, "condition"));
                (k, format!("{block}.condition"))
            } else {
                (doc_line, String::new())
            };
            sink.error(line, &key, format!("invalid Sigma: {}", one_line(e)));
        }
        if let Some(mut filter) = collection.filters.into_iter().next() {
            filter.detection.named.values_mut().for_each(anchor::fix);
            let line = validate::key_line(map, "filter");
            self.pending.push(PendingFilter {
                filter,
                category,
                file: sink.file.to_path_buf(),
                line,
            });
            return;
        }
        let Some(mut rule) = collection.rules.into_iter().next() else {
            return;
        };
        rule.detection.named.values_mut().for_each(anchor::fix);
        let id = rule.id.clone().unwrap_or_default();
        let id_line = validate::key_line(map, "id");
        if self.by_id.contains_key(&id) {
            return sink.error(id_line, "id", format!("duplicate Sigma rule id `{id}`"));
        }
        if let Err(e) = self.engines[category.index()].add_rule(&rule) {
            return sink.error(doc_line, block, format!("cannot compile: {e}"));
        }
        let level = rule.level.unwrap_or(Level::Medium);
        let info = SigmaInfo {
            id: id.clone(),
            title: rule.title.clone(),
            level: level.as_str().to_owned(),
            status: rule.status.map(|s| format!("{s:?}").to_lowercase()),
            references: rule.references.clone(),
            author: rule.author.clone(),
        };
        self.titles.insert(rule.title.clone(), id.clone());
        self.by_id.insert(
            id.clone(),
            Compiled {
                info: Arc::new(info),
                rule: format!("sigma:{id}"),
                severity: severity(level),
                mitre: mitre(&rule.tags),
            },
        );
    }

    /// Applies the filters once every rule is loaded (each must name loaded rules), then builds
    /// the cross-rule index.
    pub fn apply_filters(&mut self, errors: &mut Vec<super::load::RuleFileError>) {
        for p in std::mem::take(&mut self.pending) {
            let mut sink = Sink {
                file: &p.file,
                errors,
            };
            if let FilterRuleTarget::Specific(names) = &p.filter.rules {
                for name in names {
                    if !self.by_id.contains_key(name) && !self.titles.contains_key(name) {
                        sink.error(
                            p.line,
                            "filter.rules",
                            format!(
                                "names `{name}`, which is no loaded Sigma rule (by id or title)"
                            ),
                        );
                    }
                }
            }
            if let Err(e) = self.engines[p.category.index()].apply_filter(&p.filter) {
                sink.error(p.line, "filter", format!("cannot apply: {e}"));
            }
        }
        // One Aho-Corasick automaton (daachorse) over every rule's substrings per category: an
        // event is evaluated only by the rules whose literals it contains (and the rules no
        // literal can rule out). Built once here, since each later change rebuilds it whole.
        // Measured with `cargo bench -p monitor --bench rules` and SigmaHQ's Linux rules: it
        // made the Sigma engine several times cheaper per event.
        for engine in &mut self.engines {
            engine.set_cross_rule_ac(true);
        }
    }

    /// The findings of the Sigma rules on one event: only for a profiled process, or for every
    /// process when the agent watches the whole host.
    pub fn check(
        &self,
        v: &View<'_>,
        ctx: &EvalContext<'_>,
        profile: Option<&str>,
    ) -> Vec<Finding> {
        if self.by_id.is_empty() || !(ctx.host_wide || ctx.profile.is_some()) {
            return Vec::new();
        }
        let Some(category) = Category::of(v) else {
            return Vec::new();
        };
        let engine = &self.engines[category.index()];
        if engine.rule_count() == 0 {
            return Vec::new();
        }
        let extra = Extra {
            parent_exe: ctx.parent_exe,
            parent_argv: ctx.parent_argv,
            user: self.user(v.ev.uid),
            hostname: v.remote.and_then(|ip| ctx.resolved.name_of(ip)),
        };
        let event = SigmaEvent::new(category, v, extra);
        let mut out = Vec::new();
        for m in engine.evaluate(&event) {
            let Some(c) = m
                .header
                .rule_id
                .as_deref()
                .and_then(|id| self.by_id.get(id))
            else {
                continue;
            };
            out.push(Finding {
                rule: c.rule.clone(),
                severity: c.severity,
                mitre: c.mitre.clone(),
                profile: profile.map(str::to_owned),
                message: format!("{} {}: {}: {}", v.who(), v.action(), c.rule, c.info.title),
                key: format!("{}|{}", c.rule, v.object()),
                enforceable: false,
                sigma: Some(c.info.clone()),
            });
        }
        out
    }

    /// The host's user name of `uid` (/etc/passwd, read once).
    fn user(&self, uid: u32) -> Option<&str> {
        self.users
            .get_or_init(|| {
                let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
                text.lines()
                    .filter_map(|l| {
                        let mut f = l.split(':');
                        let name = f.next()?;
                        let uid = f.nth(1)?.parse().ok()?;
                        Some((uid, name.to_owned()))
                    })
                    .collect()
            })
            .get(&uid)
            .map(String::as_str)
    }
}

/// A parser message on one line: pest's multi-line pointer drawing folded to its first line
/// and its `= expected ...` note.
fn one_line(message: &str) -> String {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default().trim().to_owned();
    match lines
        .filter_map(|l| l.trim().strip_prefix("= "))
        .next_back()
    {
        Some(note) => format!("{first} ({note})"),
        None => first,
    }
}

/// Sigma's level as a severity (`informational` is `low`: the agent has no lower one).
fn severity(level: Level) -> Severity {
    match level {
        Level::Informational | Level::Low => Severity::Low,
        Level::Medium => Severity::Medium,
        Level::High => Severity::High,
        Level::Critical => Severity::Critical,
    }
}

/// MITRE technique ids from `attack.t1059.004`-style tags (tactics and groups are not ids).
fn mitre(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.strip_prefix("attack.t"))
        .filter(|id| {
            let main = id.split('.').next().unwrap_or_default();
            main.len() == 4 && main.bytes().all(|b| b.is_ascii_digit())
        })
        .map(|id| format!("T{}", id.to_uppercase()))
        .collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
