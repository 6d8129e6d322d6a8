//! The `write_then_exec` detections: which files each workload wrote, and whether an exec runs
//! one of them (as the binary, or as an interpreter's script argument).

use monitor_common::EventKind;

use super::view::View;
use super::{DetectionState, EvalContext, Finding, RuleSet};
use crate::sensor::event::Access;

impl RuleSet {
    /// `write_then_exec`: remembers written files per workload; on exec, looks the exec'd
    /// binary and an interpreter's script argument up.
    pub(super) fn write_then_exec(
        &self,
        v: &View<'_>,
        ctx: &EvalContext<'_>,
        state: &mut DetectionState,
        pname: Option<&str>,
        out: &mut Vec<Finding>,
    ) {
        let Some(file) = v.file else {
            if v.ev.kind() == EventKind::Exec {
                for target in exec_targets(v).iter().flatten() {
                    self.exec_of_written(v, ctx, state, pname, target, out);
                }
            }
            return;
        };
        if v.failed() {
            return;
        }
        // A written file given a new name (a hard link, a rename) stays written: the rule
        // follows the file.
        if let (EventKind::Rename | EventKind::Link, Some(from), Some(to)) =
            (v.ev.kind(), file.path.as_deref(), file.new_path.as_deref())
        {
            for k in ctx.kin.keys() {
                state.record_alias(k, from, to);
            }
        }
        let written = match v.ev.kind() {
            EventKind::Open => {
                let w = matches!(file.access, Some(Access::Write | Access::ReadWrite));
                (w || v.created()).then_some(file.path.as_deref()).flatten()
            }
            EventKind::Rename => file.new_path.as_deref(),
            EventKind::Chmod | EventKind::Truncate => file.path.as_deref(),
            EventKind::Exec
            | EventKind::Fork
            | EventKind::Exit
            | EventKind::Unlink
            | EventKind::Memfd
            | EventKind::Link
            | EventKind::Symlink
            | EventKind::Connect
            | EventKind::Accept
            | EventKind::Bind
            | EventKind::Listen
            | EventKind::Send
            | EventKind::Dns => None,
        };
        if let Some(path) = written
            && self
                .wte
                .iter()
                .any(|&i| self.detections[i].when.path_matches(path))
        {
            for k in ctx.kin.keys() {
                state.record_write(k, path);
            }
        }
    }

    fn exec_of_written(
        &self,
        v: &View<'_>,
        ctx: &EvalContext<'_>,
        state: &mut DetectionState,
        pname: Option<&str>,
        target: &str,
        out: &mut Vec<Finding>,
    ) {
        let Some(origin) = ctx.kin.keys().find_map(|k| state.written(k, target)) else {
            return;
        };
        // Either name of the file can make a detection fire: the one run, or the one it was
        // written under before a link or rename.
        let names = [Some(target), origin.as_deref()];
        for &i in &self.wte {
            let d = &self.detections[i];
            if out.iter().any(|f| f.rule == d.id) {
                continue;
            }
            if names.iter().flatten().any(|&p| d.fires(v, ctx, Some(p))) {
                let how = if v.exe == Some(target) {
                    ""
                } else {
                    " (as script)"
                };
                let what = match origin.as_deref() {
                    Some(o) => format!(
                        "executed {target}{how}, a file the same workload wrote earlier as {o} \
                         and linked or renamed"
                    ),
                    None => {
                        format!(
                            "executed {target}, a file written earlier by the same workload{how}"
                        )
                    }
                };
                out.push(d.finding(v, pname, Some(what), target.to_owned()));
            }
        }
    }
}

/// Interpreters whose first non-option argument is the script they run.
fn is_interpreter(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.starts_with("python") || matches!(base, "sh" | "bash" | "dash" | "perl" | "node" | "ruby")
}

/// Files an exec runs: the binary (resolved, and as given, made absolute with the cwd) and,
/// for an interpreter, its script argument.
fn exec_targets<'a>(v: &View<'a>) -> [Option<std::borrow::Cow<'a, str>>; 3] {
    use std::borrow::Cow;
    let Some(x) = v.exec else {
        return [None, None, None];
    };
    let absolute = |p: &'a str| -> Option<Cow<'a, str>> {
        if p.starts_with('/') {
            Some(Cow::Borrowed(p))
        } else {
            let cwd = x.cwd.as_deref()?;
            Some(Cow::Owned(format!(
                "{}/{}",
                cwd.trim_end_matches('/'),
                p.trim_start_matches("./")
            )))
        }
    };
    let filename = absolute(&x.filename).filter(|f| Some(f.as_ref()) != v.exe);
    let script = if v.exe.is_some_and(is_interpreter) || is_interpreter(&x.filename) {
        let mut args = x.argv.iter().skip(1);
        let mut found = None;
        while let Some(a) = args.next() {
            if a == "--" {
                found = args.next();
                break;
            }
            if !a.starts_with('-') {
                found = Some(a);
                break;
            }
        }
        found.and_then(|a| absolute(a))
    } else {
        None
    };
    [v.exe.map(Cow::Borrowed), filename, script]
}
