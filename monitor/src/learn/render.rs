//! A learned profile as YAML: the profile format (docs/rules-format.md), every entry on its own
//! line with a comment saying how often it was seen, how soon after its workload started and by
//! which executables. Strings are written as JSON strings, which YAML reads unchanged.

use std::fmt::Write as _;

use super::footprint::Seen;
use super::learned::{Entry, LIST_KEYS, LearnedProfile, ListKey, Lists, Origin, Value};

/// Comments start in this column when the entry is shorter.
const COMMENT_COLUMN: usize = 48;

/// `s` safe inside a `#` comment: what could end the line (a control character, U+0085,
/// U+2028, U+2029) becomes a `\u{..}` escape. Comments carry paths and names the workload
/// chose; a newline there would otherwise add a line of its own to the profile.
pub fn comment_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// `12 times, 3 paths, first at 0.4 s, by /usr/bin/python3.11`.
pub fn describe(seen: &Seen, objects: usize) -> String {
    let mut s = if seen.count == 1 {
        "once".to_owned()
    } else {
        format!("{} times", seen.count)
    };
    if objects > 1 {
        let _ = write!(s, ", {objects} distinct");
    }
    let _ = write!(s, ", first at {:.1} s", seen.first_secs);
    if !seen.exes.is_empty() {
        let mut exes: Vec<&str> = seen.exes.keys().map(String::as_str).collect();
        exes.sort_unstable();
        let _ = write!(s, ", by {}", exes.join(", "));
        if seen.other_exes > 0 {
            let _ = write!(s, " (+{} more)", seen.other_exes);
        }
    }
    s
}

fn comment(e: &Entry, merged_from: &str) -> String {
    let stats = match e.origin {
        Origin::Learned => {
            if matches!(e.value, Value::Exclude(_)) {
                String::new()
            } else {
                describe(&e.seen, e.objects)
            }
        }
        Origin::Kept if e.seen.count > 0 => {
            format!("kept from {merged_from}; {}", describe(&e.seen, e.objects))
        }
        Origin::Kept | Origin::Unseen => {
            format!(
                "kept from {merged_from}: NOT SEEN while learning (remove it if it is not needed)"
            )
        }
    };
    match (&e.note, stats.is_empty()) {
        (Some(n), true) => n.clone(),
        (Some(n), false) => format!("{stats}; {n}"),
        (None, _) => stats,
    }
}

fn write_lists(out: &mut String, block: &str, lists: &Lists, merged_from: &str, check_unix: bool) {
    let empty_unix = check_unix && lists.unix.is_empty();
    if lists.is_empty() && !empty_unix {
        return;
    }
    let _ = writeln!(out, "{block}:");
    for key in LIST_KEYS {
        let entries = lists.get(key);
        if entries.is_empty() {
            if key == ListKey::Unix && empty_unix {
                let line = "  unix: []";
                let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
                let _ = writeln!(
                    out,
                    "{line}{:pad$}# none used while learning: a connect to any unix socket is an alert",
                    ""
                );
            }
            continue;
        }
        let _ = writeln!(out, "  {key}:");
        for e in entries {
            let line = format!("    - {}", e.value);
            let note = comment_safe(&comment(e, merged_from));
            if note.is_empty() {
                let _ = writeln!(out, "{line}");
            } else {
                let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
                let _ = writeln!(out, "{line}{:pad$}# {note}", "");
            }
        }
    }
}

/// The YAML document. `merged_from` names the profile merged into (for comments).
pub fn render(p: &LearnedProfile, merged_from: &str) -> String {
    let mut out = String::new();
    for line in &p.header {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {}", comment_safe(line));
        }
    }
    let _ = writeln!(out, "profile: {}", q(&p.name));
    if let Some(d) = &p.description {
        let _ = writeln!(out, "description: {}", q(d));
    }
    let _ = writeln!(out, "match:");
    for (key, values) in &p.selectors {
        let items: Vec<String> = values.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  {key}: [{}]", items.join(", "));
    }
    let scalars = [
        ("mode", p.mode.as_deref().map(str::to_owned)),
        ("severity", p.severity.as_deref().map(str::to_owned)),
        ("inherit", p.inherit.map(|b| b.to_string())),
        ("baseline", p.baseline.map(|b| b.to_string())),
    ];
    for (key, value) in scalars {
        if let Some(v) = value {
            let _ = writeln!(out, "{key}: {v}");
        }
    }
    if let Some(secs) = p.startup_secs {
        let line = format!("startup_secs: {secs}");
        match &p.startup_note {
            Some(n) => {
                let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
                let _ = writeln!(out, "{line}{:pad$}# {}", "", comment_safe(n));
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    write_lists(&mut out, "allow", &p.allow, merged_from, p.check_unix);
    write_lists(&mut out, "startup", &p.startup, merged_from, false);
    out
}

#[cfg(test)]
mod tests {
    use super::{describe, render};
    use crate::learn::footprint::Seen;
    use crate::learn::learned::{Entry, LearnedProfile, Lists, Origin, Scalar, Value};

    fn seen(count: u64, first: f64, exe: &str) -> Seen {
        let mut s = Seen::default();
        for _ in 0..count {
            s.add(first, true, exe);
        }
        s
    }

    #[test]
    fn names_the_workload_chose_cannot_add_lines() {
        let mut s = Seen::default();
        s.add(1.0, true, "/tmp/x\n    - \"/root/.ssh/id_rsa\"\u{2028}y");
        let mut allow = Lists::default();
        allow
            .exec
            .push(Entry::new(Value::Path("/usr/bin/uname".into()), s, 1));
        let p = LearnedProfile {
            name: "svc".into(),
            selectors: vec![("program".into(), vec![Scalar::Str("x\ny".into())])],
            header: vec!["a\rb".into()],
            allow,
            ..LearnedProfile::default()
        };
        let text = render(&p, "");
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(
            text.contains("by /tmp/x\\u{a}    - \"/root/.ssh/id_rsa\"\\u{2028}y"),
            "{text}"
        );
        assert!(!text.contains("\n    - \"/root"), "{text}");
    }

    #[test]
    fn entries_say_how_often_how_soon_and_by_what() {
        assert_eq!(
            describe(&seen(1, 11.24, "/usr/bin/python3.11"), 1),
            "once, first at 11.2 s, by /usr/bin/python3.11"
        );
        assert_eq!(
            describe(&seen(12, 0.4, "/usr/bin/python3.11"), 3),
            "12 times, 3 distinct, first at 0.4 s, by /usr/bin/python3.11"
        );
    }

    #[test]
    fn a_profile_document_with_comments() {
        let mut allow = Lists::default();
        allow.exec.push(Entry::new(
            Value::Path("/usr/bin/uname".into()),
            seen(1, 11.2, "/usr/bin/python3.11"),
            1,
        ));
        allow.read.push(
            Entry::new(Value::Exclude("**/.env".into()), Seen::default(), 0)
                .with_note("credential-read watches it"),
        );
        let mut kept = Entry::new(Value::Path("/app/**".into()), Seen::default(), 0);
        kept.origin = Origin::Unseen;
        allow.read.push(kept);
        allow.connect.push(Entry::new(
            Value::Connect {
                host: Some("api.openai.com".into()),
                cidr: None,
                port: Some(443),
            },
            seen(2, 12.0, "/usr/bin/python3.11"),
            1,
        ));
        let p = LearnedProfile {
            name: "svc".into(),
            selectors: vec![
                ("program".into(), vec![Scalar::Str("litellm".into())]),
                ("uid".into(), vec![Scalar::Num(0)]),
            ],
            mode: Some("alert".into()),
            startup_secs: Some(36),
            startup_note: Some("3 x 11.9 s".into()),
            header: vec!["Learned".into(), String::new()],
            allow,
            ..LearnedProfile::default()
        };
        let text = render(&p, "old.yaml");
        assert_eq!(
            text,
            r#"# Learned
#
profile: "svc"
match:
  program: ["litellm"]
  uid: [0]
mode: alert
startup_secs: 36                                # 3 x 11.9 s
allow:
  exec:
    - "/usr/bin/uname"                          # once, first at 11.2 s, by /usr/bin/python3.11
  read:
    - "!**/.env"                                # credential-read watches it
    - "/app/**"                                 # kept from old.yaml: NOT SEEN while learning (remove it if it is not needed)
  connect:
    - { host: "api.openai.com", port: 443 }     # 2 times, first at 12.0 s, by /usr/bin/python3.11
"#
        );
    }
}
