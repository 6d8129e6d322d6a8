//! A profile's `match:` selectors, compiled: which exec starts a workload. Learning sessions
//! (`monitor learn`) select processes with the same selectors.

use globset::{GlobSet, GlobSetBuilder};
use marked_yaml::Spanned;

use super::ExecInfo;
use super::load::Sink;
use super::pattern::{build_set, glob_set, line_of, path_glob};
use super::program::{Program, program};
use super::schema;
use super::workload::{WorkloadSel, Written};

/// `match:` selectors, compiled. Every given selector must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selectors {
    exe: Option<GlobSet>,
    argv_contains: Vec<String>,
    program: Option<ProgramMatcher>,
    parent_exe: Option<GlobSet>,
    container_id: Option<GlobSet>,
    pod_uid: Option<GlobSet>,
    uid: Option<Vec<u32>>,
    workload: WorkloadSel,
}

/// `program:` patterns: those with a `/` match the program's full path, the others its short
/// name (a module name, or a path's last component).
#[derive(Clone, Debug)]
struct ProgramMatcher {
    full: GlobSet,
    short: GlobSet,
}

impl ProgramMatcher {
    fn compile(patterns: &[Spanned<String>], sink: &mut Sink<'_>) -> Self {
        let (mut full, mut short) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for (i, p) in patterns.iter().enumerate() {
            let builder = if p.contains('/') {
                &mut full
            } else {
                &mut short
            };
            match path_glob(p) {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => sink.error(
                    line_of(p),
                    &format!("match.program[{i}]"),
                    format!("invalid glob {:?}: {}", p.as_str(), e.kind()),
                ),
            }
        }
        Self {
            full: build_set(full, "match.program", sink),
            short: build_set(short, "match.program", sink),
        }
    }

    fn is_match(&self, p: &Program<'_>) -> bool {
        self.short.is_match(p.short_name())
            || (matches!(p, Program::Path(_)) && self.full.is_match(p.as_str()))
    }
}

impl Selectors {
    /// Compiles `match:`; problems go to `sink` keyed `match.KEY`.
    pub fn compile(sel: &Spanned<schema::Selectors>, sink: &mut Sink<'_>) -> Self {
        let line = line_of(sel);
        let lists = [
            ("match.exe", sel.exe.as_ref().map(Vec::is_empty)),
            (
                "match.argv_contains",
                sel.argv_contains.as_ref().map(Vec::is_empty),
            ),
            ("match.program", sel.program.as_ref().map(Vec::is_empty)),
            (
                "match.parent_exe",
                sel.parent_exe.as_ref().map(Vec::is_empty),
            ),
            (
                "match.container_id",
                sel.container_id.as_ref().map(Vec::is_empty),
            ),
            ("match.pod_uid", sel.pod_uid.as_ref().map(Vec::is_empty)),
            ("match.uid", sel.uid.as_ref().map(Vec::is_empty)),
        ];
        for (key, empty) in lists {
            if empty == Some(true) {
                sink.error(
                    line,
                    key,
                    "empty list: it would match nothing; remove the key or add entries",
                );
            }
        }
        if lists.iter().all(|(_, given)| given.is_none())
            && Written::of_match(sel)
                .given()
                .iter()
                .all(|(_, given)| given.is_none())
        {
            sink.error(
                line,
                "match",
                "no selector: give at least one of exe, argv_contains, program, parent_exe, \
                 container_id, pod_uid, uid, image, container_name, namespace, pod_labels",
            );
        }
        let set = |l: &Option<Vec<Spanned<String>>>, key: &str, sink: &mut Sink<'_>| {
            l.as_ref().map(|l| glob_set(l, key, sink))
        };
        Selectors {
            exe: set(&sel.exe, "match.exe", sink),
            argv_contains: sel.argv_contains.clone().unwrap_or_default(),
            program: sel
                .program
                .as_ref()
                .map(|l| ProgramMatcher::compile(l, sink)),
            parent_exe: set(&sel.parent_exe, "match.parent_exe", sink),
            container_id: set(&sel.container_id, "match.container_id", sink),
            pod_uid: set(&sel.pod_uid, "match.pod_uid", sink),
            uid: sel.uid.clone(),
            workload: WorkloadSel::compile(&Written::of_match(sel), "match", sink),
        }
    }

    /// Whether every given selector holds for this exec.
    pub fn matches(&self, x: &ExecInfo<'_>) -> bool {
        let opt = |set: &Option<GlobSet>, v: Option<&str>| {
            set.as_ref()
                .is_none_or(|set| v.is_some_and(|v| set.is_match(v)))
        };
        self.exe
            .as_ref()
            .is_none_or(|set| x.exe.is_some_and(|e| set.is_match(e)) || set.is_match(x.filename))
            && self
                .argv_contains
                .iter()
                .all(|needle| x.argv.iter().any(|a| a.contains(needle.as_str())))
            && self.uid.as_ref().is_none_or(|u| u.contains(&x.uid))
            && opt(&self.parent_exe, x.parent_exe)
            && opt(&self.container_id, x.container_id)
            && opt(&self.pod_uid, x.pod_uid)
            && self.workload.matches(x.container, x.pod)
            && self.program.as_ref().is_none_or(|m| {
                program(x.exe, x.filename, x.argv, x.cwd).is_some_and(|p| m.is_match(&p))
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testutil::{load_errs, load_ok};
    use crate::rules::{ExecInfo, ProfileId};

    const PROXY: &str = r#"
profile: proxy
match:
  exe: ["/usr/bin/python3*"]
  program: ["litellm", "litellm.proxy.*", "/srv/*/serve.py"]
"#;

    fn matched(argv: &[&str], cwd: &str) -> Option<ProfileId> {
        let rules = load_ok(&[("p.yaml", PROXY)]);
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        rules.match_profile(&ExecInfo {
            exe: Some("/usr/bin/python3.11"),
            filename: &argv[0],
            argv: &argv,
            uid: 0,
            parent_exe: None,
            container_id: None,
            pod_uid: None,
            container: None,
            pod: None,
            cwd: Some(cwd),
        })
    }

    #[test]
    fn program_selects_the_server_and_not_tools_that_mention_it() {
        let yes = Some(ProfileId(0));
        assert_eq!(
            matched(&["/opt/venv/bin/python3", "/opt/venv/bin/litellm"], "/"),
            yes
        );
        assert_eq!(
            matched(&["python3", "bin/litellm", "--port", "4000"], "/opt/venv"),
            yes
        );
        assert_eq!(
            matched(&["python3", "-m", "litellm.proxy.proxy_cli"], "/app"),
            yes
        );
        assert_eq!(matched(&["python3", "serve.py"], "/srv/api"), yes);
        assert_eq!(matched(&["python3", "-c", "import litellm"], "/app"), None);
        assert_eq!(
            matched(
                &[
                    "/opt/venv/bin/python",
                    "/opt/venv/bin/pip",
                    "install",
                    "litellm"
                ],
                "/"
            ),
            None
        );
        assert_eq!(matched(&["python3", "/tmp/litellm/x.py"], "/"), None);
        assert_eq!(
            matched(&["python3", "serve.py"], "/srv/api/deep"),
            None,
            "`*` stays in a segment"
        );
    }

    #[test]
    fn empty_or_bad_program_lists_are_errors() {
        let errs = load_errs(&[("p.yaml", "profile: p\nmatch:\n  program: []\n")]);
        assert_eq!(
            errs,
            vec![
                "p.yaml:3: key `match.program`: empty list: it would match nothing; remove the key or add entries"
            ]
        );
        let errs = load_errs(&[("p.yaml", "profile: p\nmatch:\n  program: [\"a[\"]\n")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("p.yaml:3: key `match.program[0]`: invalid glob \"a[\""),
            "{errs:?}"
        );
    }

    const SERVER: &str = r#"
profile: server
match:
  image: ["*/berriai/litellm:*"]
  namespace: ["ai-*"]
  pod_labels: {app: litellm, tier: "infer*"}
"#;

    fn in_container(image: &str, ns: &str, labels: &[(&str, &str)]) -> Option<ProfileId> {
        use crate::identity::{ContainerMeta, PodMeta};
        let rules = load_ok(&[("p.yaml", SERVER)]);
        let argv = vec!["litellm".to_owned()];
        let container = ContainerMeta {
            id: "a".repeat(64),
            image: Some(image.to_owned()),
            ..ContainerMeta::default()
        };
        let pod = PodMeta {
            namespace: Some(ns.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..PodMeta::default()
        };
        rules.match_profile(&ExecInfo {
            exe: Some("/usr/bin/python3"),
            filename: "/usr/local/bin/litellm",
            argv: &argv,
            uid: 0,
            parent_exe: None,
            container_id: Some(&container.id),
            pod_uid: None,
            container: Some(&container),
            pod: Some(&pod),
            cwd: None,
        })
    }

    #[test]
    fn runtime_selectors_need_the_image_namespace_and_every_label() {
        let yes = Some(ProfileId(0));
        let labels = [("app", "litellm"), ("tier", "inference"), ("x", "y")];
        let image = "ghcr.io/berriai/litellm:main-stable";
        assert_eq!(in_container(image, "ai-prod", &labels), yes);
        assert_eq!(
            in_container("ghcr.io/other/litellm:1", "ai-prod", &labels),
            None
        );
        assert_eq!(in_container(image, "default", &labels), None);
        assert_eq!(in_container(image, "ai-prod", &labels[..1]), None);
        assert_eq!(
            in_container(image, "ai-prod", &[("app", "litellm"), ("tier", "db")]),
            None
        );
    }

    #[test]
    fn runtime_selectors_alone_select_and_empty_ones_are_errors() {
        load_ok(&[("p.yaml", "profile: p\nmatch:\n  container_name: [server]\n")]);
        let errs = load_errs(&[("p.yaml", "profile: p\nmatch:\n  pod_labels: {}\n")]);
        assert_eq!(
            errs,
            vec![
                "p.yaml:3: key `match.pod_labels`: empty: it would match nothing; remove the key or add entries"
            ]
        );
    }
}
