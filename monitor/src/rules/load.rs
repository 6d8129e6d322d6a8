//! Loading rule files: finding them, parsing YAML with positions, turning every problem into a
//! `FILE:LINE: key `KEY`: message` error, and handing well-formed documents to the compilers.
//!
//! Structural errors (unknown keys, wrong types) come from serde; after each one the offending
//! key is removed from the node tree and the document is deserialised again, so one file reports
//! all its bad keys, not just the first. Semantic errors (globs, CIDRs, ids, ...) are reported by
//! the compilers through a [`Sink`].

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use marked_yaml::{LoadError, LoaderOptions, Node};
use serde::de::DeserializeOwned;

use super::schema::{DetectionDoc, OverrideDoc, ProfileDoc};

/// Everything wrong with a set of rule files.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.errors))]
pub struct RulesError {
    pub errors: Vec<RuleFileError>,
}

fn render(errors: &[RuleFileError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// One problem in one rule file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleFileError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted path of the offending key (`allow.read[2]`); empty for file-level problems.
    pub key: String,
    pub message: String,
}

/// `FILE:LINE`, or `FILE` when the line is unknown: where messages about rules point.
pub(crate) fn place(file: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    }
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&place(&self.file, self.line))?;
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where the compilers report problems of the file being compiled.
pub(crate) struct Sink<'a> {
    pub file: &'a Path,
    pub errors: &'a mut Vec<RuleFileError>,
}

impl Sink<'_> {
    pub fn error(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(RuleFileError {
            file: self.file.to_path_buf(),
            line,
            key: key.to_owned(),
            message: message.into(),
        });
    }
}

/// One parsed document.
pub(crate) enum Doc {
    Profile(Box<ProfileDoc>),
    Detection(Box<DetectionDoc>),
    Override(Box<OverrideDoc>),
    /// A Sigma rule or filter: its text (for rsigma), its tree (for lines) and which block
    /// (`detection` or `filter`) holds its selections.
    Sigma(Box<SigmaDoc>),
}

pub(crate) struct SigmaDoc {
    pub text: String,
    pub map: marked_yaml::types::MarkedMappingNode,
    pub block: &'static str,
}

/// Deepest directory nesting followed.
const MAX_DEPTH: usize = 32;
/// Most structural errors reported per document.
const MAX_STRUCTURE_ERRORS: usize = 64;

/// Rule files under `paths`, each path's files sorted, duplicates dropped. A path may be a
/// directory (walked recursively for `*.yaml`/`*.yml`, skipping hidden entries such as
/// Kubernetes ConfigMap `..data` links) or a single file.
pub(crate) fn discover(paths: &[PathBuf], errors: &mut Vec<RuleFileError>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for path in paths {
        let mut found = Vec::new();
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, 0, &mut found, errors),
            Ok(_) => found.push(path.clone()),
            Err(e) => errors.push(io_error(path, &e)),
        }
        found.sort();
        out.extend(found.into_iter().filter(|f| seen.insert(f.clone())));
    }
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, errors: &mut Vec<RuleFileError>) {
    if depth > MAX_DEPTH {
        errors.push(RuleFileError {
            file: dir.to_path_buf(),
            line: None,
            key: String::new(),
            message: format!("directories nested deeper than {MAX_DEPTH} levels (a symlink loop?)"),
        });
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return errors.push(io_error(dir, &e)),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(io_error(dir, &e));
                continue;
            }
        };
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk(&path, depth + 1, out, errors),
            Ok(_) if is_yaml(&path) => out.push(path),
            Ok(_) => {}
            Err(e) => errors.push(io_error(&path, &e)),
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

fn io_error(path: &Path, e: &std::io::Error) -> RuleFileError {
    RuleFileError {
        file: path.to_path_buf(),
        line: None,
        key: String::new(),
        message: format!("cannot read: {e}"),
    }
}

/// Reads and parses one file; `None` when it is empty or had errors that leave no document.
pub(crate) fn read_doc(file: &Path, errors: &mut Vec<RuleFileError>) -> Option<Doc> {
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(io_error(file, &e));
            return None;
        }
    };
    parse_doc(&text, &mut Sink { file, errors })
}

/// Parses one document; which kind it is comes from its top-level key.
pub(crate) fn parse_doc(text: &str, sink: &mut Sink<'_>) -> Option<Doc> {
    if let Some(line) = second_document(text) {
        sink.error(
            Some(line),
            "",
            "a file holds one document, but a second one starts here: move it to its own file",
        );
    }
    let opts = LoaderOptions::default().error_on_duplicate_keys(true);
    let mut node = match marked_yaml::parse_yaml_with_options(0, text, opts) {
        Ok(n) => n,
        Err(e) => {
            load_error(e, sink);
            return None;
        }
    };
    let map = node.as_mapping()?;
    if let Some(block) = super::sigma::kind_of(map) {
        let Node::Mapping(map) = node else {
            return None;
        };
        return Some(Doc::Sigma(Box::new(SigmaDoc {
            text: text.to_owned(),
            map,
            block,
        })));
    }
    let first = map.keys().next()?;
    let kinds: Vec<(&str, Option<usize>)> = map
        .keys()
        .filter(|k| matches!(k.as_str(), "profile" | "detection" | "override"))
        .map(|k| (k.as_str(), k.span().start().map(|m| m.line())))
        .collect();
    match kinds.as_slice() {
        [] => {
            sink.error(
                first.span().start().map(|m| m.line()),
                first.as_str(),
                "not a rule document: the file must have a top-level `profile:`, `detection:` or \
                 `override:` key, or be a Sigma rule (`logsource:` and a `detection:` mapping)",
            );
            None
        }
        [(kind, _)] => match *kind {
            "profile" => deserialize(&mut node, sink).map(|d| Doc::Profile(Box::new(d))),
            "detection" => deserialize(&mut node, sink).map(|d| Doc::Detection(Box::new(d))),
            _ => deserialize(&mut node, sink).map(|d| Doc::Override(Box::new(d))),
        },
        [(a, _), (b, line), ..] => {
            sink.error(
                *line,
                b,
                format!("a file holds one document: `{a}:` and `{b}:` cannot be combined; split them into two files"),
            );
            None
        }
    }
}

/// Line of a `---` that starts a second YAML document (the parser would silently drop it).
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (i, line) in text.lines().enumerate() {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']));
        if marker && content {
            return Some(i + 1);
        }
        let trimmed = line.trim_start();
        content |= !marker && !trimmed.is_empty() && !trimmed.starts_with('#');
    }
    None
}

fn load_error(e: LoadError, sink: &mut Sink<'_>) {
    let (line, key, message) = match e {
        LoadError::TopLevelMustBeMapping(m) => (
            Some(m.line()),
            String::new(),
            "the document must be a mapping with a `profile:`, `detection:` or `override:` key"
                .to_owned(),
        ),
        LoadError::TopLevelMustBeSequence(m) => (
            Some(m.line()),
            String::new(),
            "unexpected sequence".to_owned(),
        ),
        LoadError::UnexpectedAnchor(m) => (
            Some(m.line()),
            String::new(),
            "YAML anchors and aliases are not supported".to_owned(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => (
            Some(m.line()),
            String::new(),
            "mapping keys must be plain strings".to_owned(),
        ),
        LoadError::UnexpectedTag(m) => (
            Some(m.line()),
            String::new(),
            "YAML tags are not supported".to_owned(),
        ),
        LoadError::ScanError(m, e) => (
            Some(m.line()),
            String::new(),
            format!("invalid YAML: {}", e.info()),
        ),
        LoadError::DuplicateKey(d) => (
            d.key.span().start().map(|m| m.line()),
            d.key.as_str().to_owned(),
            format!(
                "duplicate key (first given on line {})",
                d.prev_key.span().start().map_or(0, |m| m.line())
            ),
        ),
    };
    sink.error(line, &key, message);
}

/// Deserialises `node` as `T`, reporting every structural error: after each, the offending key
/// (for a list entry, the whole list) is dropped and deserialisation retried. Returns the value
/// when one could be built and only unknown keys had to be dropped, so the semantic checks run
/// on the rest without tripping over keys that were there but malformed.
fn deserialize<T: DeserializeOwned>(node: &mut Node, sink: &mut Sink<'_>) -> Option<T> {
    let mut removed: Vec<String> = Vec::new();
    let mut dropped_known = false;
    for _ in 0..MAX_STRUCTURE_ERRORS {
        let err = match marked_yaml::from_node::<T>(node) {
            Ok(v) => return (!dropped_known).then_some(v),
            Err(e) => e,
        };
        let path = err.path().map(str::to_owned);
        let line = err.start_mark().map(|m| m.line());
        let value = path.as_deref().and_then(|p| scalar_at(node, p));
        let unknown = matches!(&*err, marked_yaml::Error::UnknownFieldError(..));
        let (key, message, removable) = describe(err.into_inner(), path, value);
        if removed.contains(&key) {
            // A required key we dropped after reporting it: nothing new to say.
            return None;
        }
        sink.error(line, &key, message);
        let gone = removable.then(|| remove_at(node, &key)).flatten()?;
        dropped_known |= !unknown;
        removed.push(gone);
    }
    None
}

/// The key, the message and whether dropping the key lets deserialisation go on.
fn describe(
    err: marked_yaml::Error,
    path: Option<String>,
    value: Option<String>,
) -> (String, String, bool) {
    use marked_yaml::Error;
    let key = path.unwrap_or_default();
    let shown = value.map(|v| format!(" {v:?}")).unwrap_or_default();
    match err {
        Error::UnknownFieldError(field, expected, _) => {
            let key = if key.is_empty() { field } else { key };
            (
                key,
                format!("unknown key (expected one of: {})", expected.join(", ")),
                true,
            )
        }
        Error::NotBoolean(_) => (
            key,
            format!("invalid value{shown}: expected true or false"),
            true,
        ),
        Error::IntegerParseFailure(e, _) => (key, format!("invalid number{shown}: {e}"), true),
        Error::FloatParseFailure(e, _) => (key, format!("invalid number{shown}: {e}"), true),
        Error::Other(msg, _) => {
            if let Some(field) = missing_field(&msg) {
                let key = if key.is_empty() {
                    field.to_owned()
                } else {
                    format!("{key}.{field}")
                };
                (key, "required key is missing".to_owned(), false)
            } else {
                (key, tidy_serde_message(&msg), true)
            }
        }
    }
}

fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.strip_suffix('`')
}

/// serde's "unknown variant `x`, expected one of `a`, `b`" as "unknown value `x` (expected one
/// of: a, b)".
fn tidy_serde_message(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown variant ") else {
        return msg.to_owned();
    };
    let Some((value, expected)) = rest.split_once(", expected ") else {
        return msg.to_owned();
    };
    let expected = expected
        .trim_start_matches("one of ")
        .replace(" or ", ", ")
        .replace('`', "");
    format!("unknown value {value} (expected one of: {expected})")
}

/// One step of a serde path: `allow.connect[0].port`.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut idx) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(rest) = idx.strip_prefix('[') {
            let Some((n, after)) = rest.split_once(']') else {
                break;
            };
            if let Ok(n) = n.parse() {
                out.push(Seg::Index(n));
            }
            idx = after;
        }
    }
    out
}

fn node_at<'n>(mut node: &'n Node, segs: &[Seg<'_>]) -> Option<&'n Node> {
    for s in segs {
        node = match s {
            Seg::Key(k) => node.as_mapping()?.get_node(k)?,
            Seg::Index(i) => node.as_sequence()?.get_node(*i)?,
        };
    }
    Some(node)
}

fn scalar_at(node: &Node, path: &str) -> Option<String> {
    node_at(node, &segments(path))?
        .as_scalar()
        .map(|s| s.as_str().to_owned())
}

/// Drops the mapping entry `path` names, or for a list entry the list's key; returns the path
/// of what was dropped.
fn remove_at(node: &mut Node, path: &str) -> Option<String> {
    let mut segs = segments(path);
    while matches!(segs.last(), Some(Seg::Index(_))) {
        segs.pop();
    }
    let Some((Seg::Key(last), parent)) = segs.split_last() else {
        return None;
    };
    let mut cur = node;
    for s in parent {
        cur = match s {
            Seg::Key(k) => cur.as_mapping_mut()?.get_mut(*k)?,
            Seg::Index(i) => cur.as_sequence_mut()?.get_mut(*i)?,
        };
    }
    cur.as_mapping_mut()?.remove(*last)?;
    let mut out = String::new();
    for s in &segs {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::rules::testutil::{TempDir, load_errs, load_ok};
    use crate::rules::{ExecInfo, RuleSet};

    /// The profile example of docs/rules-format.md, verbatim: the first YAML block there.
    fn documented_profile() -> String {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/rules-format.md"
        ))
        .expect("docs/rules-format.md");
        let start = doc.find("```yaml\nprofile:").expect("a profile example") + 8;
        let len = doc[start..].find("```").expect("its end");
        doc[start..start + len].to_owned()
    }

    const DETECTION: &str = "\
detection: credential-read
description: Reads SSH keys
severity: high
mitre: [T1552.004]
on: [open]
when:
  path: [\"~/.ssh/**\"]
";

    #[test]
    fn litellm_example_loads_without_errors() {
        let rules = load_ok(&[("litellm.yaml", &documented_profile())]);
        assert!(rules.has_profiles());
        assert_eq!(rules.profile_count(), 1);
        assert_eq!(
            rules.hosts(),
            vec![
                "api.openai.com".to_owned(),
                "raw.githubusercontent.com".to_owned()
            ]
        );
        assert_eq!(rules.detection_count(), 0);
    }

    #[test]
    fn shipped_rules_load_when_present() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules");
        if dir.is_dir() {
            let rules = RuleSet::load(&[dir]).unwrap_or_else(|e| panic!("shipped rules:\n{e}"));
            assert!(rules.detection_count() > 0);
        }
    }

    #[test]
    fn override_example_applies_to_a_loaded_detection() {
        let ov = "override: credential-read\nenabled: false          # optional\nseverity: medium        # optional\nexcept:                 # optional, appended to the detection's exceptions\n  - exe: [\"/usr/bin/ssh\"]\n";
        let rules = load_ok(&[("d.yaml", DETECTION), ("local/o.yaml", ov)]);
        assert_eq!(rules.detection_count(), 0, "the override disabled it");
    }

    #[test]
    fn empty_rule_set_and_empty_files_are_fine() {
        let dir = TempDir::new("rules-test");
        let rules = RuleSet::load(&[dir.path().to_path_buf()]).expect("empty dir loads");
        assert!(!rules.has_profiles());
        assert_eq!(rules.detection_count(), 0);
        assert!(RuleSet::load(&[]).is_ok());
        load_ok(&[("empty.yaml", ""), ("comment.yaml", "# nothing here yet\n")]);
    }

    #[test]
    fn discovery_is_recursive_sorted_and_skips_other_files() {
        let p = |name: &str, argv: &str| {
            format!("profile: {name}\nmatch:\n  argv_contains: [{argv}]\n")
        };
        let dir = TempDir::new("rules-test");
        dir.write("b/second.yml", p("second", "serve"));
        dir.write("a/first.yaml", p("first", "serve"));
        dir.write("README.md", "not yaml: [");
        dir.write(".hidden/x.yaml", "not: [valid");
        dir.write("..data/y.yaml", "not: [valid");
        let single = dir.write("single.txt", p("single", "other"));
        let rules = RuleSet::load(&[dir.path().to_path_buf(), single]).expect("loads");
        assert_eq!(rules.profile_count(), 3);
        let argv = ["x".to_owned(), "serve".to_owned()];
        let info = ExecInfo {
            exe: None,
            filename: "/bin/x",
            argv: &argv,
            uid: 0,
            parent_exe: None,
            container_id: None,
            pod_uid: None,
            container: None,
            pod: None,
            cwd: None,
        };
        let id = rules.match_profile(&info).expect("matches");
        assert_eq!(rules.profile_name(id), "first", "sorted load order decides");
    }

    #[test]
    fn io_errors_name_the_file() {
        let missing = PathBuf::from("/nonexistent/rules-dir");
        let e = RuleSet::load(&[missing]).expect_err("missing path");
        assert_eq!(e.errors.len(), 1);
        let s = e.to_string();
        assert!(
            s.starts_with("/nonexistent/rules-dir: cannot read: "),
            "{s}"
        );
    }

    fn errs(text: &str) -> Vec<String> {
        load_errs(&[("x.yaml", text)])
    }

    #[test]
    fn unknown_keys_are_all_reported_with_expected_keys() {
        let e = errs(
            "profile: p\nmatch:\n  uid: [0]\nallow:\n  read: [\"/a\"]\n  allowed: [\"/b\"]\n  writ: [\"/c\"]\ncolour: red\n",
        );
        assert_eq!(
            e,
            vec![
                "x.yaml:6: key `allow.allowed`: unknown key (expected one of: exec, read, write, connect, listen, unix)",
                "x.yaml:7: key `allow.writ`: unknown key (expected one of: exec, read, write, connect, listen, unix)",
                "x.yaml:8: key `colour`: unknown key (expected one of: profile, description, match, mode, severity, inherit, baseline, allow, startup, startup_secs)",
            ]
        );
    }

    #[test]
    fn bad_globs_name_the_list_entry() {
        let e = errs(
            "profile: p\nmatch:\n  uid: [0]\nallow:\n  read:\n    - /a\n    - /b\n    - \"[\"\n",
        );
        assert_eq!(
            e,
            vec![
                "x.yaml:8: key `allow.read[2]`: invalid glob \"[\": unclosed character class; missing ']'"
            ]
        );
    }

    #[test]
    fn modes_are_alert_or_enforce() {
        assert_eq!(
            errs("profile: p\nmatch:\n  uid: [0]\nmode: enforce\n"),
            Vec::<String>::new()
        );
        let e = errs("profile: p\nmatch:\n  uid: [0]\nmode: block\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("x.yaml:4"), "{e:?}");
    }

    #[test]
    fn bad_cidr_host_and_connect_entries() {
        let e = errs(
            "profile: p\nmatch:\n  uid: [0]\nallow:\n  connect:\n    - { cidr: \"10.0.0.0/33\" }\n    - { host: \"bad host!\" }\n    - { host: a.example, cidr: 10.0.0.0/8 }\n    - { port: 80 }\n",
        );
        assert_eq!(
            e,
            vec![
                "x.yaml:6: key `allow.connect[0].cidr`: invalid CIDR \"10.0.0.0/33\": expected ADDRESS/PREFIX, e.g. 10.0.0.0/8",
                "x.yaml:7: key `allow.connect[1].host`: invalid host \"bad host!\": expected a DNS name or an IP address",
                "x.yaml:8: key `allow.connect[2]`: give exactly one of `host` or `cidr` (and optionally `port`)",
                "x.yaml:9: key `allow.connect[3]`: give exactly one of `host` or `cidr` (and optionally `port`)",
            ]
        );
    }

    #[test]
    fn detection_value_errors() {
        let e =
            errs("detection: d\ndescription: x\nseverity: urgent\nmitre: [T1059]\non: [open]\n");
        assert_eq!(
            e,
            vec![
                "x.yaml:3: key `severity`: unknown value `urgent` (expected one of: low, medium, high, critical)"
            ]
        );
        let e = errs(
            "detection: d\ndescription: x\nseverity: low\nmitre: [T1059, TA0001, t1059]\non: [open]\nwhen:\n  remote: [\"300.1.1.1\"]\n",
        );
        assert_eq!(
            e,
            vec![
                "x.yaml:4: key `mitre[1]`: invalid ATT&CK technique id \"TA0001\": expected T1234 or T1234.567",
                "x.yaml:4: key `mitre[2]`: invalid ATT&CK technique id \"t1059\": expected T1234 or T1234.567",
                "x.yaml:7: key `when.remote[0]`: invalid IP address or CIDR \"300.1.1.1\"",
            ]
        );
        let e = errs("detection: Bad_Id\ndescription: x\nseverity: low\nmitre: []\non: [open]\n");
        assert_eq!(
            e,
            vec![
                "x.yaml:1: key `detection`: invalid name \"Bad_Id\": use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit",
                "x.yaml:4: key `mitre`: empty list: give at least one ATT&CK technique id, e.g. [T1552.001]",
            ]
        );
    }

    #[test]
    fn missing_and_mistyped_keys() {
        let e = errs("detection: d\nseverity: low\nmitre: [T1059]\non: [open]\n");
        assert_eq!(
            e,
            vec!["x.yaml:1: key `description`: required key is missing"]
        );
        let e = errs("detection: d\ndescription: x\nseverity: low\nmitre: [T1059]\n");
        assert_eq!(
            e,
            vec![
                "x.yaml:1: key `on`: required key is missing: the event kinds to look at, e.g. `on: [open]`"
            ]
        );
        let e = errs(
            "detection: d\ndescription: x\nseverity: low\nmitre: [T1059]\non: [opne]\nenabled: maybe\n",
        );
        assert_eq!(
            e,
            vec![
                "x.yaml:5: key `on[0]`: unknown value `opne` (expected one of: exec, fork, exit, open, unlink, rename, chmod, memfd, connect, send, accept, bind, listen, dns, link, symlink, truncate)",
                "x.yaml:6: key `enabled`: invalid value \"maybe\": expected true or false",
            ]
        );
        let e = errs(
            "profile: p\nmatch:\n  uid: [root]\ninherit: maybe\nallow:\n  listen:\n    - { port: 70000 }\n",
        );
        assert_eq!(
            e,
            vec![
                "x.yaml:3: key `match.uid[0]`: invalid number \"root\": invalid digit found in string",
                "x.yaml:4: key `inherit`: invalid value \"maybe\": expected true or false",
                "x.yaml:7: key `allow.listen[0].port`: invalid number \"70000\": number too large to fit in target type",
            ]
        );
        let e = errs("profile: p\nmatch: {}\n");
        assert_eq!(
            e,
            vec![
                "x.yaml:2: key `match`: no selector: give at least one of exe, argv_contains, program, parent_exe, container_id, pod_uid, uid, image, container_name, namespace, pod_labels"
            ]
        );
    }

    #[test]
    fn burst_and_kind_specific_keys() {
        let e = errs(
            "detection: b\ndescription: x\nseverity: low\nmitre: [T1059]\ntype: burst\non: [open]\n",
        );
        assert_eq!(
            e,
            vec![
                "x.yaml:1: key `threshold`: required key is missing for `type: burst`",
                "x.yaml:1: key `window_ms`: required key is missing for `type: burst`",
                "x.yaml:6: key `on`: `burst` counts process creations: use `on: [fork]` or `on: [exec]`",
            ]
        );
        let e = errs(
            "detection: m\ndescription: x\nseverity: low\nmitre: [T1059]\non: [exec]\nthreshold: 3\n",
        );
        assert_eq!(
            e,
            vec!["x.yaml:6: key `threshold`: only used by `type: burst`"]
        );
    }

    #[test]
    fn duplicate_ids_and_unknown_override_targets() {
        let e = load_errs(&[
            ("a.yaml", DETECTION),
            ("b.yaml", DETECTION),
            (
                "c.yaml",
                "# local tweaks\noverride: no-such-detection\nenabled: false\n",
            ),
        ]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("b.yaml:1: key `detection`: duplicate detection id `credential-read` (first defined at ")
                && e[0].ends_with("a.yaml:1)"),
            "{}",
            e[0]
        );
        assert_eq!(
            e[1],
            "c.yaml:2: key `override`: unknown detection `no-such-detection`: an override must name a detection defined in the loaded rule files"
        );
        let p = "profile: p\nmatch:\n  uid: [0]\n";
        let e = load_errs(&[("a.yaml", p), ("b.yaml", p)]);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("b.yaml:1: key `profile`: duplicate profile `p`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn yaml_level_errors() {
        assert_eq!(
            errs("profile: p\nmatch:\n  uid: [0\n"),
            vec!["x.yaml:4: invalid YAML: while parsing a flow sequence, expected ',' or ']'"]
        );
        assert_eq!(
            errs("profile: p\nmatch:\n  uid: [0]\n  uid: [1]\n"),
            vec!["x.yaml:4: key `uid`: duplicate key (first given on line 3)"]
        );
        assert_eq!(
            errs("description: x\nseverity: low\n"),
            vec![
                "x.yaml:1: key `description`: not a rule document: the file must have a top-level `profile:`, `detection:` or `override:` key, or be a Sigma rule (`logsource:` and a `detection:` mapping)"
            ]
        );
        assert_eq!(
            errs("profile: p\ndetection: d\n"),
            vec![
                "x.yaml:2: key `detection`: a file holds one document: `profile:` and `detection:` cannot be combined; split them into two files"
            ]
        );
        assert_eq!(
            errs("---\nprofile: a\nmatch: {uid: [0]}\n---\nprofile: b\nmatch: {uid: [1]}\n"),
            vec![
                "x.yaml:4: a file holds one document, but a second one starts here: move it to its own file"
            ]
        );
        assert!(errs("# c\n---\nprofile: a\nmatch: {uid: [0]}\n").is_empty());
        assert_eq!(
            errs("- a\n"),
            vec![
                "x.yaml:1: the document must be a mapping with a `profile:`, `detection:` or `override:` key"
            ]
        );
    }

    #[test]
    fn errors_across_files_are_all_collected() {
        let e = load_errs(&[
            (
                "a.yaml",
                "profile: p\nmatch:\n  uid: [0]\nstartup_secs: 0\n",
            ),
            ("b.yaml", "profile: q\nmatch:\n  exe: [\"[\"]\n"),
        ]);
        assert_eq!(
            e,
            vec![
                "a.yaml:4: key `startup_secs`: 0 would end start-up before it begins: give the longest start-up in seconds, or remove the `startup:` block",
                "b.yaml:3: key `match.exe[0]`: invalid glob \"[\": unclosed character class; missing ']'",
            ]
        );
    }
}
