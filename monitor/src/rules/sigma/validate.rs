//! What the agent can evaluate of a Sigma document, checked on the YAML tree (with lines)
//! before rsigma parses it: product `linux`, a supported category, no `service`, fields of that
//! category, supported modifiers. A rule that would silently match nothing is an error.

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use super::fields::Category;
use crate::rules::load::Sink;

/// Modifiers the agent evaluates (rsigma implements them; the Windows encodings and
/// placeholders are refused: nothing on Linux produces what they match).
pub const MODIFIERS: [&str; 19] = [
    "contains",
    "startswith",
    "endswith",
    "all",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "cased",
    "exists",
    "base64",
    "base64offset",
    "gt",
    "gte",
    "lt",
    "lte",
    "neq",
    "fieldref",
];

/// Keys of a `detection` (or a filter's `filter`) block that are not selections.
const NOT_SELECTIONS: [&str; 2] = ["condition", "rules"];

fn line(n: &MarkedScalarNode) -> Option<usize> {
    n.span().start().map(|m| m.line())
}

fn node_line(n: &Node) -> Option<usize> {
    n.span().start().map(|m| m.line())
}

/// The line of `key` in `map`.
pub fn key_line(map: &MarkedMappingNode, key: &str) -> Option<usize> {
    map.keys().find(|k| k.as_str() == key).and_then(line)
}

/// Checks one Sigma rule or filter document; returns its category when it is usable.
/// `block` is `detection` for a rule, `filter` for a filter.
pub fn check(map: &MarkedMappingNode, block: &str, sink: &mut Sink<'_>) -> Option<Category> {
    let category = logsource(map, sink);
    if block == "detection" && map.get_scalar("id").is_none() {
        sink.error(
            key_line(map, "title"),
            "id",
            "a Sigma rule needs an `id`: its alerts are named `sigma:<id>`",
        );
    }
    let Some(detection) = map.get_mapping(block) else {
        sink.error(
            key_line(map, block),
            block,
            "must be a mapping of selections",
        );
        return None;
    };
    if detection.get_node("condition").is_none() && block == "detection" {
        sink.error(key_line(map, block), block, "has no `condition`");
    }
    if detection.get_node("timeframe").is_some() {
        sink.error(
            key_line(detection, "timeframe"),
            &format!("{block}.timeframe"),
            "`timeframe` (aggregations) is not supported: write a correlation-free rule",
        );
    }
    let before = sink.errors.len();
    if let Some(cat) = category {
        for (name, sel) in detection.iter() {
            if NOT_SELECTIONS.contains(&name.as_str()) || name.as_str() == "timeframe" {
                continue;
            }
            selection(sel, &format!("{block}.{}", name.as_str()), cat, sink);
        }
    }
    (sink.errors.len() == before).then_some(category?)
}

/// `logsource`: product linux, a supported category, no service.
fn logsource(map: &MarkedMappingNode, sink: &mut Sink<'_>) -> Option<Category> {
    let Some(ls) = map.get_mapping("logsource") else {
        sink.error(key_line(map, "logsource"), "logsource", "must be a mapping");
        return None;
    };
    let at = |k: &str| key_line(ls, k);
    let here = ls.span().start().map(|m| m.line());
    match ls.get_scalar("product").map(MarkedScalarNode::as_str) {
        Some("linux") => {}
        Some(other) => sink.error(
            at("product"),
            "logsource.product",
            format!("unsupported product `{other}`: the agent evaluates `linux` rules"),
        ),
        None => sink.error(here, "logsource.product", "missing: must be `linux`"),
    }
    if ls.get_node("service").is_some() {
        sink.error(
            at("service"),
            "logsource.service",
            "log source services (auditd, syslog, ...) are not events of the agent: only the \
             categories process_creation, file_event and network_connection are",
        );
        return None;
    }
    let names: Vec<&str> = super::fields::CATEGORIES.iter().map(|c| c.name()).collect();
    match ls.get_scalar("category").map(MarkedScalarNode::as_str) {
        Some(c) => Category::parse(c).or_else(|| {
            sink.error(
                at("category"),
                "logsource.category",
                format!(
                    "unsupported category `{c}` (supported: {})",
                    names.join(", ")
                ),
            );
            None
        }),
        None => {
            sink.error(
                here,
                "logsource.category",
                format!("missing (supported: {})", names.join(", ")),
            );
            None
        }
    }
}

/// One selection: a mapping of fields, a list of such mappings, or keywords (strings).
fn selection(sel: &Node, key: &str, cat: Category, sink: &mut Sink<'_>) {
    match sel {
        Node::Mapping(m) => fields(m, key, cat, sink),
        Node::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Node::Mapping(m) => fields(m, &format!("{key}[{i}]"), cat, sink),
                    Node::Scalar(_) => {}
                    Node::Sequence(_) => sink.error(
                        node_line(item),
                        &format!("{key}[{i}]"),
                        "a list inside a list: a selection lists field mappings or keywords",
                    ),
                }
            }
        }
        Node::Scalar(_) => {}
    }
}

fn fields(m: &MarkedMappingNode, key: &str, cat: Category, sink: &mut Sink<'_>) {
    for name in m.keys() {
        let mut parts = name.as_str().split('|');
        let field = parts.next().unwrap_or_default();
        let at = format!("{key}.{}", name.as_str());
        if !cat.fields().contains(&field) {
            sink.error(
                line(name),
                &at,
                format!(
                    "field `{field}` is not in {} events (fields: {})",
                    cat.name(),
                    cat.fields().join(", ")
                ),
            );
        }
        for modifier in parts {
            if !MODIFIERS.contains(&modifier) {
                sink.error(
                    line(name),
                    &at,
                    format!(
                        "unsupported modifier `{modifier}` (supported: {})",
                        MODIFIERS.join(", ")
                    ),
                );
            }
        }
    }
}
