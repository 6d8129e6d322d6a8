//! A detection's `when` and `except` blocks, compiled: each key given becomes a matcher
//! (globs, CIDR tables, lists), checked against an event's view; absent keys hold.

use globset::GlobSet;
use marked_yaml::Spanned;
use monitor_common::EventKind;

use super::EvalContext;
use super::load::Sink;
use super::pattern::{CidrTable, glob_set, line_of, parse_net, proc_other_entry};
use super::schema::{AccessSel, Conditions, ResultSel};
use super::view::View;
use super::workload::{WorkloadSel, Written};
use crate::sensor::event::Access;

/// A `when` block or an `except` block, compiled; absent keys hold.
#[derive(Debug, Default)]
pub(crate) struct Cond {
    pub(super) path: Option<GlobSet>,
    pub(super) access: Option<Vec<Access>>,
    created: Option<bool>,
    exe: Option<GlobSet>,
    comm: Option<Vec<String>>,
    argv_contains: Option<Vec<String>>,
    parent_exe: Option<GlobSet>,
    remote: Option<CidrTable>,
    remote_port: Option<Vec<u16>>,
    proc_other: Option<Vec<&'static str>>,
    exe_memfd: Option<bool>,
    truncate: Option<bool>,
    interactive_shell: Option<bool>,
    /// Substrings of the file's content (read when every other key holds).
    content: Option<Vec<String>>,
    /// `image`, `container_name`, `namespace`, `pod_labels`.
    workload: WorkloadSel,
    pub(super) result: ResultSel,
    /// `path` and `exe` as written (for `action: kill`).
    pub(super) src_path: Vec<String>,
    pub(super) src_exe: Vec<String>,
}

impl Cond {
    pub fn compile(c: &Conditions, key: &str, sink: &mut Sink<'_>) -> Cond {
        fn check_empty<T>(l: &Option<Spanned<Vec<T>>>, key: &str, name: &str, sink: &mut Sink<'_>) {
            if let Some(l) = l
                && l.is_empty()
            {
                sink.error(
                    line_of(l),
                    &format!("{key}.{name}"),
                    "empty list: it would match nothing; remove the key or add entries",
                );
            }
        }
        check_empty(&c.path, key, "path", sink);
        check_empty(&c.access, key, "access", sink);
        check_empty(&c.exe, key, "exe", sink);
        check_empty(&c.comm, key, "comm", sink);
        check_empty(&c.argv_contains, key, "argv_contains", sink);
        check_empty(&c.parent_exe, key, "parent_exe", sink);
        check_empty(&c.remote, key, "remote", sink);
        check_empty(&c.remote_port, key, "remote_port", sink);
        check_empty(&c.proc_other, key, "proc_other", sink);
        check_empty(&c.content, key, "content", sink);
        let mut globs = |l: &Option<Spanned<Vec<Spanned<String>>>>, name: &str| {
            l.as_ref()
                .map(|l| glob_set(l, &format!("{key}.{name}"), sink))
        };
        let path = globs(&c.path, "path");
        let exe = globs(&c.exe, "exe");
        let parent_exe = globs(&c.parent_exe, "parent_exe");
        let remote = c.remote.as_ref().map(|l| {
            let mut t = CidrTable::default();
            for (i, r) in l.iter().enumerate() {
                match parse_net(r) {
                    Ok(net) => t.push(net, None),
                    Err(e) => sink.error(line_of(r), &format!("{key}.remote[{i}]"), e),
                }
            }
            t
        });
        Cond {
            path,
            access: c.access.as_ref().map(|l| {
                l.iter()
                    .map(|a| match a {
                        AccessSel::Read => Access::Read,
                        AccessSel::Write => Access::Write,
                        AccessSel::ReadWrite => Access::ReadWrite,
                    })
                    .collect()
            }),
            created: c.created,
            exe,
            comm: c.comm.as_ref().map(|l| l.to_vec()),
            argv_contains: c.argv_contains.as_ref().map(|l| l.to_vec()),
            parent_exe,
            remote,
            remote_port: c.remote_port.as_ref().map(|l| l.to_vec()),
            proc_other: c
                .proc_other
                .as_ref()
                .map(|l| l.iter().map(|p| p.as_str()).collect()),
            exe_memfd: c.exe_memfd,
            truncate: c.truncate,
            interactive_shell: c.interactive_shell,
            content: c.content.as_ref().map(|l| l.to_vec()),
            workload: WorkloadSel::compile(&Written::of_conditions(c), key, sink),
            result: c.result.unwrap_or_default(),
            src_path: written(&c.path),
            src_exe: written(&c.exe),
        }
    }

    /// The keys given, by name.
    pub(super) fn keys(&self) -> Vec<&'static str> {
        [
            ("path", self.path.is_some()),
            ("access", self.access.is_some()),
            ("created", self.created.is_some()),
            ("exe", self.exe.is_some()),
            ("comm", self.comm.is_some()),
            ("argv_contains", self.argv_contains.is_some()),
            ("parent_exe", self.parent_exe.is_some()),
            ("remote", self.remote.is_some()),
            ("remote_port", self.remote_port.is_some()),
            ("proc_other", self.proc_other.is_some()),
            ("exe_memfd", self.exe_memfd.is_some()),
            ("truncate", self.truncate.is_some()),
            ("interactive_shell", self.interactive_shell.is_some()),
            ("content", self.content.is_some()),
            ("image", self.workload.has_image()),
            ("container_name", self.workload.has_container_name()),
            ("namespace", self.workload.has_namespace()),
            ("pod_labels", self.workload.has_pod_labels()),
            ("result", self.result != ResultSel::Any),
        ]
        .into_iter()
        .filter_map(|(k, given)| given.then_some(k))
        .collect()
    }

    /// Whether `path` passes the `path` key (absent: every path does).
    pub fn path_matches(&self, path: &str) -> bool {
        self.path.as_ref().is_none_or(|s| s.is_match(path))
    }

    /// Whether every given key holds. With `target`, the `path` key is checked against it
    /// instead of the event's paths (`write_then_exec`: the file exec'd).
    pub fn matches(&self, v: &View<'_>, ctx: &EvalContext<'_>, target: Option<&str>) -> bool {
        let ev = v.ev;
        let result_ok = match self.result {
            ResultSel::Any => true,
            ResultSel::Success => !v.failed(),
            ResultSel::Failure => v.failed(),
        };
        result_ok
            && self
                .workload
                .matches(ev.container.as_deref(), ev.pod.as_deref())
            && self
                .access
                .as_ref()
                .is_none_or(|l| v.access().is_some_and(|a| l.contains(&a)))
            && self
                .created
                .is_none_or(|c| ev.kind() == EventKind::Open && v.created() == c)
            && self
                .remote_port
                .as_ref()
                .is_none_or(|l| v.remote_port().is_some_and(|p| l.contains(&p)))
            && self.comm.as_ref().is_none_or(|l| l.contains(&ev.comm))
            && self
                .exe_memfd
                .is_none_or(|m| v.exec.is_some() && is_memfd(v.exe) == m)
            && self
                .truncate
                .is_none_or(|t| ev.kind() == EventKind::Open && v.truncates() == t)
            && self
                .interactive_shell
                .is_none_or(|i| v.exec.is_some_and(|x| super::shell::interactive(&x.argv) == i))
            && self
                .remote
                .as_ref()
                .is_none_or(|t| v.remote.is_some_and(|ip| t.contains(ip, None)))
            && self.proc_other.as_ref().is_none_or(|names| {
                v.paths().into_iter().flatten().any(|p| {
                    proc_other_entry(p, ev.pid, ev.tid).is_some_and(|n| names.contains(&n))
                })
            })
            && self.path.as_ref().is_none_or(|set| match target {
                Some(t) => set.is_match(t),
                None => v.paths().into_iter().flatten().any(|p| set.is_match(p)),
            })
            && self
                .exe
                .as_ref()
                .is_none_or(|set| v.exe.is_some_and(|e| set.is_match(e)))
            && self
                .parent_exe
                .as_ref()
                .is_none_or(|set| ctx.parent_exe.is_some_and(|e| set.is_match(e)))
            && self.argv_contains.as_ref().is_none_or(|needles| {
                v.exec.is_some_and(|x| {
                    needles
                        .iter()
                        .any(|n| x.argv.iter().any(|a| a.contains(n.as_str())))
                })
            })
            // Last: it reads the file.
            && self.content.as_ref().is_none_or(|needles| {
                let path = target.or_else(|| v.new_path.as_deref().or(v.path.as_deref()));
                path.is_some_and(|p| super::content::contains_any(ev.pid, p, needles))
            })
    }
}

/// Patterns as written.
fn written(l: &Option<Spanned<Vec<Spanned<String>>>>) -> Vec<String> {
    l.as_ref()
        .map(|l| l.iter().map(|p| p.to_string()).collect())
        .unwrap_or_default()
}

/// An executable backed by a memfd: the kernel names it `/memfd:NAME (deleted)`.
fn is_memfd(exe: Option<&str>) -> bool {
    exe.is_some_and(|e| e.starts_with("/memfd:") || e.starts_with("memfd:"))
}
