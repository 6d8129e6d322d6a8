//! Selectors on what the container runtime says about a process (`crate::identity`): `image`,
//! `container_name`, `namespace` and `pod_labels`, shared by profiles' `match:` and
//! detections' `when:`/`except:`. Patterns are globs over the whole value: `*` and `?` cross
//! `/` here (an image is `registry/repo:tag`, not a path). A process whose runtime did not
//! answer has no image, name, namespace or labels: these selectors do not hold for it.

use std::collections::BTreeMap;

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use marked_yaml::Spanned;

use super::load::Sink;
use super::pattern::{build_set, line_of};
use super::schema;
use crate::identity::{ContainerMeta, PodMeta};

/// The keys as written.
pub(crate) struct Written<'a> {
    pub image: &'a Option<Vec<Spanned<String>>>,
    pub container_name: &'a Option<Vec<Spanned<String>>>,
    pub namespace: &'a Option<Vec<Spanned<String>>>,
    pub pod_labels: &'a Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

impl<'a> Written<'a> {
    /// The keys of a profile's `match:`.
    pub fn of_match(s: &'a schema::Selectors) -> Self {
        Self {
            image: &s.image,
            container_name: &s.container_name,
            namespace: &s.namespace,
            pod_labels: &s.pod_labels,
        }
    }

    /// The keys of a detection's `when:` or `except:` block.
    pub fn of_conditions(c: &'a schema::Conditions) -> Self {
        Self {
            image: &c.image,
            container_name: &c.container_name,
            namespace: &c.namespace,
            pod_labels: &c.pod_labels,
        }
    }

    /// Which keys are given, by name (for "no selector" and empty-list checks).
    pub fn given(&self) -> [(&'static str, Option<bool>); 4] {
        [
            ("image", self.image.as_ref().map(Vec::is_empty)),
            (
                "container_name",
                self.container_name.as_ref().map(Vec::is_empty),
            ),
            ("namespace", self.namespace.as_ref().map(Vec::is_empty)),
            ("pod_labels", self.pod_labels.as_ref().map(|m| m.is_empty())),
        ]
    }
}

/// The selectors, compiled; absent ones hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct WorkloadSel {
    image: Option<GlobSet>,
    container_name: Option<GlobSet>,
    namespace: Option<GlobSet>,
    /// Every label must be present with a value its glob matches.
    pod_labels: Vec<(String, GlobMatcher)>,
}

impl WorkloadSel {
    /// Compiles the keys under `prefix` (`match`, `when`, `except[0]`); errors go to `sink`.
    pub fn compile(w: &Written<'_>, prefix: &str, sink: &mut Sink<'_>) -> Self {
        let line = w.pod_labels.as_ref().and_then(line_of);
        for (name, empty) in w.given() {
            if empty == Some(true) {
                let line = match name {
                    "pod_labels" => line,
                    _ => None,
                };
                sink.error(
                    line,
                    &format!("{prefix}.{name}"),
                    "empty: it would match nothing; remove the key or add entries",
                );
            }
        }
        let mut set = |l: &Option<Vec<Spanned<String>>>, name: &str| {
            l.as_ref()
                .map(|l| name_set(l, &format!("{prefix}.{name}"), sink))
        };
        let image = set(w.image, "image");
        let container_name = set(w.container_name, "container_name");
        let namespace = set(w.namespace, "namespace");
        let mut pod_labels = Vec::new();
        for (k, v) in w.pod_labels.iter().flat_map(|m| m.iter()) {
            match name_glob(v) {
                Ok(g) => pod_labels.push((k.clone(), g.compile_matcher())),
                Err(e) => sink.error(
                    line_of(v),
                    &format!("{prefix}.pod_labels.{k}"),
                    format!("invalid glob {:?}: {}", v.as_str(), e.kind()),
                ),
            }
        }
        Self {
            image,
            container_name,
            namespace,
            pod_labels,
        }
    }

    pub fn has_image(&self) -> bool {
        self.image.is_some()
    }

    pub fn has_container_name(&self) -> bool {
        self.container_name.is_some()
    }

    pub fn has_namespace(&self) -> bool {
        self.namespace.is_some()
    }

    pub fn has_pod_labels(&self) -> bool {
        !self.pod_labels.is_empty()
    }

    /// Whether every given key holds for this container and pod.
    pub fn matches(&self, container: Option<&ContainerMeta>, pod: Option<&PodMeta>) -> bool {
        let holds = |set: &Option<GlobSet>, v: Option<&str>| {
            set.as_ref()
                .is_none_or(|set| v.is_some_and(|v| set.is_match(v)))
        };
        holds(&self.image, container.and_then(|c| c.image.as_deref()))
            && holds(
                &self.container_name,
                container.and_then(|c| c.name.as_deref()),
            )
            && holds(&self.namespace, pod.and_then(|p| p.namespace.as_deref()))
            && self.pod_labels.iter().all(|(k, g)| {
                pod.and_then(|p| p.labels.as_ref())
                    .and_then(|l| l.get(k))
                    .is_some_and(|v| g.is_match(v))
            })
    }
}

/// A glob over a whole name: `*` crosses `/`.
fn name_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(false).build()
}

fn name_set(patterns: &[Spanned<String>], key: &str, sink: &mut Sink<'_>) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        match name_glob(p) {
            Ok(g) => {
                b.add(g);
            }
            Err(e) => sink.error(
                line_of(p),
                &format!("{key}[{i}]"),
                format!("invalid glob {:?}: {}", p.as_str(), e.kind()),
            ),
        }
    }
    build_set(b, key, sink)
}
