//! What `monitor learn` asks a pipeline for, and what it gets back: the selectors (or a loaded
//! profile's name), and at the end the outcome with what generalising it needs to know of the
//! agent's host (credential patterns, nameservers).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use marked_yaml::{Span, Spanned};
use serde::{Deserialize, Serialize};

use super::learned::Scalar;
use super::session::{LearnSpec, Outcome};
use crate::rules::load::Sink;
use crate::rules::{RuleSet, Selectors, is_rule_name, schema};

/// The selectors of a profile's `match:`, as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorArgs {
    #[serde(default)]
    pub exe: Vec<String>,
    #[serde(default)]
    pub program: Vec<String>,
    #[serde(default)]
    pub argv_contains: Vec<String>,
    #[serde(default)]
    pub parent_exe: Vec<String>,
    #[serde(default)]
    pub container_id: Vec<String>,
    #[serde(default)]
    pub pod_uid: Vec<String>,
    #[serde(default)]
    pub uid: Vec<u32>,
    #[serde(default)]
    pub image: Vec<String>,
    #[serde(default)]
    pub container_name: Vec<String>,
    #[serde(default)]
    pub namespace: Vec<String>,
}

impl SelectorArgs {
    pub fn is_empty(&self) -> bool {
        *self == SelectorArgs::default()
    }

    /// `match:` as the learned profile writes it.
    pub fn written(&self) -> Vec<(String, Vec<Scalar>)> {
        let lists = [
            ("exe", &self.exe),
            ("program", &self.program),
            ("argv_contains", &self.argv_contains),
            ("parent_exe", &self.parent_exe),
            ("container_id", &self.container_id),
            ("pod_uid", &self.pod_uid),
            ("image", &self.image),
            ("container_name", &self.container_name),
            ("namespace", &self.namespace),
        ];
        let mut out: Vec<(String, Vec<Scalar>)> = lists
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), v.iter().cloned().map(Scalar::Str).collect()))
            .collect();
        if !self.uid.is_empty() {
            out.push((
                "uid".to_owned(),
                self.uid
                    .iter()
                    .map(|u| Scalar::Num(u64::from(*u)))
                    .collect(),
            ));
        }
        out
    }

    /// Compiles them as a profile's `match:` would be; errors name the option.
    pub(crate) fn compile(&self) -> Result<Selectors, String> {
        let spanned = |l: &[String]| -> Option<Vec<Spanned<String>>> {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|s| Spanned::new(Span::new_blank(), s.clone()))
                    .collect()
            })
        };
        let doc = schema::Selectors {
            exe: spanned(&self.exe),
            argv_contains: (!self.argv_contains.is_empty()).then(|| self.argv_contains.clone()),
            program: spanned(&self.program),
            parent_exe: spanned(&self.parent_exe),
            container_id: spanned(&self.container_id),
            pod_uid: spanned(&self.pod_uid),
            uid: (!self.uid.is_empty()).then(|| self.uid.clone()),
            image: spanned(&self.image),
            container_name: spanned(&self.container_name),
            namespace: spanned(&self.namespace),
            pod_labels: None,
        };
        let mut errors = Vec::new();
        let sel = Selectors::compile(
            &Spanned::new(Span::new_blank(), doc),
            &mut Sink {
                file: Path::new("command line"),
                errors: &mut errors,
            },
        );
        if errors.is_empty() {
            Ok(sel)
        } else {
            Err(errors
                .iter()
                .map(|e| {
                    let option = e
                        .key
                        .strip_prefix("match.")
                        .map(|k| format!("--{}", k.replace('_', "-")))
                        .unwrap_or_else(|| e.key.clone());
                    format!("{option}: {}", e.message)
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

/// A request to learn.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LearnRequest {
    /// Name of the profile to write (default: the refined profile's, else `learned`).
    pub name: Option<String>,
    /// Learn with a loaded profile's selectors, refining it.
    pub profile: Option<String>,
    pub selectors: SelectorArgs,
}

impl LearnRequest {
    /// The profile name asked for is one a rule file accepts (checked before learning, not
    /// when the profile is written).
    pub fn check_name(&self) -> Result<(), String> {
        match &self.name {
            Some(n) if !is_rule_name(n) => Err(format!(
                "--name {n:?}: a profile name is lower-case letters, digits, `.`, `_` and `-`, \
                 starting with a letter or digit"
            )),
            _ => Ok(()),
        }
    }

    /// The session spec, and the file of the profile refined (`profile`).
    pub fn spec(&self, rules: &RuleSet) -> Result<(LearnSpec, Option<PathBuf>), String> {
        self.check_name()?;
        match &self.profile {
            Some(name) => {
                if !self.selectors.is_empty() {
                    return Err(
                        "give either --profile or selectors (--exe, --program, ...), not both"
                            .to_owned(),
                    );
                }
                let (selectors, file) = rules.profile_selectors(name).ok_or_else(|| {
                    format!(
                        "no profile `{name}` among the loaded rules (loaded: {})",
                        rules.profile_names().join(", ")
                    )
                })?;
                let spec = LearnSpec {
                    name: self.name.clone().unwrap_or_else(|| name.clone()),
                    selectors,
                };
                Ok((spec, Some(file)))
            }
            None => {
                if self.selectors.is_empty() {
                    return Err("say what to learn: --profile NAME, or selectors such as \
                                --program litellm, --exe '/opt/venv/bin/python*', --container-id ID"
                        .to_owned());
                }
                let spec = LearnSpec {
                    name: self.name.clone().unwrap_or_else(|| "learned".to_owned()),
                    selectors: self.selectors.compile()?,
                };
                Ok((spec, None))
            }
        }
    }
}

/// A finished session with what its host says about it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Finished {
    pub outcome: Outcome,
    /// (detection id, path pattern) of the credential detections the pipeline had loaded.
    pub credentials: Vec<(String, String)>,
    /// The host's nameservers.
    pub nameservers: Vec<IpAddr>,
    /// The file of the profile refined (`--profile`).
    pub profile_file: Option<PathBuf>,
    /// Why the agent ended the session unasked (it stopped), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}
