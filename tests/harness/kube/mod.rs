//! The Kubernetes manifests under deploy/kubernetes as the tests use them: rendered by
//! `kubectl kustomize` (a test may add a kustomization of its own on top, written into a
//! temporary directory), read as JSON values, validated with `kubernetes-validate`
//! ([`validate`]) and turned into a `docker run` of the built image ([`pod`]).

pub mod pod;
pub mod validate;
mod volumes;

use std::{
    path::{Component, Path, PathBuf},
    process::Command,
};

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::{TempDir, skip_or_fail};

/// kubectl with kustomize built in (preinstalled on the project's machines).
const KUBECTL: &str = "kubectl";

/// `deploy/kubernetes/<relative>` in this repository.
pub fn manifests(relative: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("/"));
    workspace.join("deploy/kubernetes").join(relative)
}

/// The agent's image: `MONITOR_IMAGE` (`cargo xtask test` builds it and sets it), else
/// `monitor:VERSION` ([`agent_version`], what `cargo xtask image` builds).
pub fn agent_image() -> String {
    if let Some(image) = std::env::var_os("MONITOR_IMAGE").filter(|i| !i.is_empty()) {
        return image.to_string_lossy().into_owned();
    }
    format!("monitor:{}", agent_version())
}

/// The `[package]` version of monitor/Cargo.toml.
#[track_caller]
pub fn agent_version() -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("monitor/Cargo.toml has a version");
    version.trim_matches('"').to_owned()
}

/// Whether `kubectl kustomize` can run; otherwise says so loudly (failing under CI).
#[track_caller]
pub fn kubectl_or_skip() -> bool {
    match Command::new(KUBECTL).args(["version", "--client"]).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            skip_or_fail(&format!(
                "`kubectl version --client` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            false
        }
        Err(e) => {
            skip_or_fail(&format!(
                "no kubectl ({e}): the manifests cannot be rendered (kubectl 1.32 with \
                 kustomize is preinstalled on the project's machines; do not install Debian's \
                 kubernetes-client)"
            ));
            false
        }
    }
}

/// The YAML `kubectl kustomize DIR` prints.
#[track_caller]
pub fn render_yaml(dir: &Path) -> String {
    let out = Command::new(KUBECTL)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8(out.stdout).expect("kubectl kustomize printed non-UTF-8")
}

/// The objects `kubectl kustomize DIR` renders, as JSON values.
#[track_caller]
pub fn render(dir: &Path) -> Vec<Value> {
    yaml_documents(&render_yaml(dir))
}

/// A kustomization written into a temporary directory on top of `base` (a directory under
/// deploy/kubernetes): `body` is the kustomization without `resources`, `files` are written
/// beside it. Kustomize takes only relative resource paths, so `base` is named relative to it.
pub struct Layer {
    dir: TempDir,
}

impl Layer {
    #[track_caller]
    pub fn new(base: &Path, body: &str, files: &[(&str, &str)]) -> Self {
        Self::with_components(base, &[], body, files)
    }

    /// A layer that also takes kustomize components (directories under deploy/kubernetes).
    #[track_caller]
    pub fn with_components(
        base: &Path,
        components: &[PathBuf],
        body: &str,
        files: &[(&str, &str)],
    ) -> Self {
        let dir = TempDir::new("kustomize");
        let relative = relative_to(dir.path(), base);
        let mut text = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n  - {}\n",
            relative.display()
        );
        if !components.is_empty() {
            text.push_str("components:\n");
            for c in components {
                text.push_str(&format!("  - {}\n", relative_to(dir.path(), c).display()));
            }
        }
        text.push_str(body);
        std::fs::write(dir.join("kustomization.yaml"), text).expect("write the kustomization");
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).expect("write a kustomization file");
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `to` as a path relative to the directory `from` (both absolute).
fn relative_to(from: &Path, to: &Path) -> PathBuf {
    let to = std::fs::canonicalize(to).unwrap_or_else(|_| to.to_path_buf());
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to_parts[common..] {
        out.push(part.as_os_str());
    }
    out
}

/// The one object of `kind` named `name` among `objects`.
#[track_caller]
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name} among the rendered objects, found {}",
        found.len()
    );
    found[0]
}

/// The one object of `kind` among `objects`.
#[track_caller]
pub fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// Every document of a YAML stream, as JSON values.
#[track_caller]
pub fn yaml_documents(text: &str) -> Vec<Value> {
    let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("bad YAML: {e}"));
    docs.iter()
        .filter(|d| !d.is_null())
        .map(|d| to_json(d))
        .collect()
}

#[track_caller]
fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => panic!("unsupported YAML key {other:?}"),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        other => panic!("unsupported YAML value {other:?}"),
    }
}

/// The status code of `GET http://127.0.0.1:PORT/PATH` (HTTP/1.0), or why there is none.
pub fn http_status(port: u16, path: &str) -> Result<u16, String> {
    use std::{
        io::{Read as _, Write as _},
        net::{Ipv4Addr, TcpStream},
        time::Duration,
    };
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP status line in {reply:?}"))
}

/// Decodes standard base64 (a Secret's `data`).
#[track_caller]
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {text:?}"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{base64_decode, relative_to, yaml_documents};
    use serde_json::json;
    use std::path::{Path, PathBuf};

    #[test]
    fn base64_round_trips_what_kustomize_writes() {
        assert_eq!(base64_decode("aGVsbG8="), b"hello");
        assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
        assert_eq!(base64_decode("aGk="), b"hi");
    }

    #[test]
    fn yaml_becomes_typed_json() {
        let docs = yaml_documents("a: 1\nb: [x, true]\nc: \"9464\"\n---\nd: null\n");
        assert_eq!(docs[0], json!({"a": 1, "b": ["x", true], "c": "9464"}));
        assert_eq!(docs[1], json!({"d": null}));
    }

    #[test]
    fn relative_paths_climb_to_the_common_root() {
        assert_eq!(
            relative_to(Path::new("/tmp/x"), Path::new("/nonexistent/deploy/base")),
            PathBuf::from("../../nonexistent/deploy/base")
        );
    }
}
