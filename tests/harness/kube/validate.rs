//! Validation of rendered manifests against the Kubernetes JSON schemas with
//! `kubernetes-validate` (PyPI), in strict mode (unknown fields are errors), for every
//! Kubernetes version the pinned release knows that upstream still supports.

use std::{path::Path, process::Command};

use crate::inference::Venv;

/// How many minor versions Kubernetes supports upstream at a time (the three newest: see
/// https://kubernetes.io/releases/). kubernetes-validate 1.37.0 knows up to 1.37; on
/// 2026-12-02 the supported minors are 1.35, 1.36 and 1.37 (1.34 reached its end of life in
/// October 2026, 1.38 is not released).
const SUPPORTED_MINORS: usize = 3;

/// The validator, from its cached venv.
pub struct Validator {
    venv: Venv,
}

/// What one run said.
pub struct Outcome {
    pub success: bool,
    pub output: String,
}

impl Validator {
    /// The venv (built on first use); the error is for [`crate::skip_or_fail`].
    pub fn get() -> Result<Self, String> {
        Ok(Self {
            venv: Venv::kubernetes_validate()?,
        })
    }

    /// Every Kubernetes version whose strict schemas the package ships, oldest first, as
    /// `1.37.0`.
    #[track_caller]
    pub fn known_versions(&self) -> Vec<String> {
        let schemas = self
            .venv
            .site_packages()
            .join("kubernetes_validate/kubernetes-json-schema");
        let entries = std::fs::read_dir(&schemas)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", schemas.display()));
        let mut versions: Vec<(Vec<u32>, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let version = name.strip_prefix('v')?.strip_suffix("-local-strict")?;
                let key = version
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
                    .ok()?;
                Some((key, version.to_owned()))
            })
            .collect();
        versions.sort();
        versions.into_iter().map(|(_, v)| v).collect()
    }

    /// The newest release of each of the [`SUPPORTED_MINORS`] newest minors it knows.
    #[track_caller]
    pub fn supported_versions(&self) -> Vec<String> {
        let mut newest: Vec<String> = Vec::new();
        for version in self.known_versions().into_iter().rev() {
            let minor = |v: &str| v.rsplit_once('.').map(|(m, _)| m.to_owned());
            if newest.iter().any(|n| minor(n) == minor(&version)) {
                continue;
            }
            if newest.len() == SUPPORTED_MINORS {
                break;
            }
            newest.push(version);
        }
        newest.reverse();
        assert_eq!(
            newest.len(),
            SUPPORTED_MINORS,
            "kubernetes-validate knows too few versions"
        );
        newest
    }

    /// `kubernetes-validate --strict -k VERSION FILE`.
    #[track_caller]
    pub fn run(&self, version: &str, file: &Path) -> Outcome {
        let out = Command::new(self.venv.bin("kubernetes-validate"))
            .args(["--strict", "--quiet", "-k", version])
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run kubernetes-validate: {e}"));
        Outcome {
            success: out.status.success(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
