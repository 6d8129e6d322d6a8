//! A DaemonSet's pod spec as a `docker run` of the built image: the manifest is what the tests
//! run, so it cannot drift from what works.
//!
//! Every field of the pod spec, the container and its security context is either translated
//! or named in a list of fields that only matter to the scheduler or the API server
//! ([`SCHEDULING_ONLY`]); anything else fails the translation, naming the field. How fields map:
//!
//! - Every pod gets a private cgroup namespace (`--cgroupns private`), as on cgroup v2 nodes.
//! - `hostPID: true` -> `--pid host`; `hostNetwork: true` -> `--network host` (required: the
//!   test's traffic stays on loopback); `status.podIP` in env is 127.0.0.1 (the pod's address
//!   on a host-network pod is the node's; on this test node the loopback one).
//! - `command`/`args` -> `--entrypoint` and the command, `$(VAR)` expanded from `env` as the
//!   kubelet does.
//! - capabilities -> `--cap-drop`/`--cap-add`; `privileged: true` fails (Docker cannot run it
//!   here, and the manifest must not need it); seccomp and AppArmor profiles ->
//!   `--security-opt`; `readOnlyRootFilesystem` -> `--read-only`; `runAsUser`/`runAsGroup` ->
//!   `--user`; resources -> `--cpus`, `--memory`, `--memory-reservation`, `--cpu-shares`.
//! - volumes: a `hostPath` mounted read-only is the host's own path; one mounted writable is
//!   redirected into the test's directory (the test never writes the host's /var/lib);
//!   `configMap` and `secret` data are written in the kubelet's atomic-writer layout (`..data`
//!   symlink swapped on update, see [`PodRun::update_config_map`]); `emptyDir` -> a tmpfs (Memory)
//!   or a fresh directory.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::base64_decode;
use crate::TempDir;

/// Pod and container fields that only the scheduler, the API server or the kubelet's
/// bookkeeping use: nothing to run.
const SCHEDULING_ONLY: &[&str] = &[
    "priorityClassName",
    "tolerations",
    "serviceAccountName",
    "terminationGracePeriodSeconds",
    "dnsPolicy",
    "nodeSelector",
];

/// An HTTP probe: path and port on the pod's address.
#[derive(Clone, Debug)]
pub struct HttpProbe {
    pub path: String,
    pub port: u16,
}

/// The pod as a `docker run`: its arguments and the directories its volumes live in.
#[derive(Debug)]
pub struct PodRun {
    /// After `docker run -d`: options, image, command.
    pub args: Vec<String>,
    pub image: String,
    pub readiness: Option<HttpProbe>,
    pub liveness: Option<HttpProbe>,
    pub startup: Option<HttpProbe>,
    /// ConfigMap and Secret volumes by object name: where their files are.
    data_dirs: BTreeMap<String, PathBuf>,
    /// Writable hostPaths: host path -> the test's directory standing in for it.
    redirected: BTreeMap<String, PathBuf>,
    _root: TempDir,
}

impl PodRun {
    /// Where a writable hostPath's files are on this machine.
    #[track_caller]
    pub fn host_dir(&self, host_path: &str) -> &Path {
        self.redirected
            .get(host_path)
            .unwrap_or_else(|| panic!("no writable hostPath {host_path} in the pod"))
    }

    /// Replaces the files of the mounted ConfigMap `name` as the kubelet does on an update: a
    /// new timestamped directory, then `..data` swapped to it in one rename.
    #[track_caller]
    pub fn update_config_map(&self, name: &str, files: &[(String, Vec<u8>)]) {
        let dir = self
            .data_dirs
            .get(name)
            .unwrap_or_else(|| panic!("no ConfigMap volume {name} in the pod"));
        atomic_write(dir, files, 0o644);
    }
}

/// Translates the pod template of `daemonset` (one of `objects`, which also hold the ConfigMaps
/// and Secrets it mounts). The error names every field that is not understood.
pub fn translate(daemonset: &Value, objects: &[Value]) -> Result<PodRun, String> {
    let spec = &daemonset["spec"]["template"]["spec"];
    let root = TempDir::try_new("pod").map_err(|e| format!("temporary directory: {e}"))?;
    let mut t = Translation {
        errors: Vec::new(),
        args: vec![
            "--label".into(),
            "monitor-test=deploy".into(),
            // As containerd runs pods on cgroup v2 nodes: the agent must not rely on seeing the
            // node's cgroup paths in /proc/PID/cgroup.
            "--cgroupns".into(),
            "private".into(),
        ],
        data_dirs: BTreeMap::new(),
        redirected: BTreeMap::new(),
        root: root.path().to_path_buf(),
    };
    t.pod(spec);
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let mut run = None;
    match containers.as_slice() {
        [container] => run = t.container(container, spec, objects),
        _ => t.fail("spec.containers", "exactly one container is translated"),
    }
    if !t.errors.is_empty() {
        return Err(format!(
            "the pod spec cannot be run as it is written:\n  - {}",
            t.errors.join("\n  - ")
        ));
    }
    let (mut args, image, probes, data_dirs, redirected) = match run {
        Some(parts) => parts,
        None => return Err("no container".into()),
    };
    let mut all = t.args;
    all.append(&mut args);
    let [startup, liveness, readiness] = probes;
    Ok(PodRun {
        args: all,
        image,
        readiness,
        liveness,
        startup,
        data_dirs,
        redirected,
        _root: root,
    })
}

type Parts = (
    Vec<String>,
    String,
    [Option<HttpProbe>; 3],
    BTreeMap<String, PathBuf>,
    BTreeMap<String, PathBuf>,
);

struct Translation {
    errors: Vec<String>,
    args: Vec<String>,
    data_dirs: BTreeMap<String, PathBuf>,
    redirected: BTreeMap<String, PathBuf>,
    root: PathBuf,
}

impl Translation {
    fn fail(&mut self, field: &str, why: &str) {
        self.errors.push(format!("{field}: {why}"));
    }

    /// Fails on every key of `obj` outside `known`.
    fn only(&mut self, obj: &Value, at: &str, known: &[&str]) {
        if let Some(map) = obj.as_object() {
            for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
                self.fail(&format!("{at}.{key}"), "not translated to docker run");
            }
        } else if !obj.is_null() {
            self.fail(at, "expected an object");
        }
    }

    fn pod(&mut self, spec: &Value) {
        let mut known = vec![
            "hostPID",
            "hostNetwork",
            "automountServiceAccountToken",
            "containers",
            "volumes",
        ];
        known.extend(SCHEDULING_ONLY);
        self.only(spec, "spec.template.spec", &known);
        if spec["hostPID"] == true {
            self.args.extend(["--pid".into(), "host".into()]);
        }
        if spec["hostNetwork"] == true {
            self.args.extend(["--network".into(), "host".into()]);
        } else {
            self.fail(
                "spec.template.spec.hostNetwork",
                "only host networking is translated (the test reaches the pod on loopback)",
            );
        }
        if spec["automountServiceAccountToken"] != false {
            self.fail(
                "spec.template.spec.automountServiceAccountToken",
                "must be false: there is no API server token to mount",
            );
        }
        if let Some(grace) = spec["terminationGracePeriodSeconds"].as_u64() {
            self.args
                .extend(["--stop-timeout".into(), grace.to_string()]);
        }
        let arch = &spec["nodeSelector"]["kubernetes.io/arch"];
        if !arch.is_null() && arch != "amd64" {
            self.fail("nodeSelector", "this test node is amd64");
        }
    }

    fn container(&mut self, c: &Value, spec: &Value, objects: &[Value]) -> Option<Parts> {
        let at = "spec.template.spec.containers[0]";
        self.only(
            c,
            at,
            &[
                "name",
                "image",
                "imagePullPolicy",
                "command",
                "args",
                "env",
                "ports",
                "startupProbe",
                "livenessProbe",
                "readinessProbe",
                "resources",
                "securityContext",
                "volumeMounts",
            ],
        );
        let image = c["image"].as_str().unwrap_or_default().to_owned();
        if c["imagePullPolicy"] == "Always" {
            self.fail(
                &format!("{at}.imagePullPolicy"),
                "there is no registry here",
            );
        }
        let env = self.env(&c["env"], at);
        let mut args = Vec::new();
        for (name, value) in &env {
            args.extend(["--env".into(), format!("{name}={value}")]);
        }
        let ports = self.ports(&c["ports"], at);
        let probes = ["startupProbe", "livenessProbe", "readinessProbe"]
            .map(|p| self.probe(&c[p], &format!("{at}.{p}"), &ports));
        self.resources(&c["resources"], at, &mut args);
        self.security(&c["securityContext"], at, &mut args);
        self.volumes(spec, &c["volumeMounts"], objects, &mut args);
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| expand(s.as_str().unwrap_or_default(), &env))
                        .collect()
                })
                .unwrap_or_default()
        };
        let command = strings(&c["command"]);
        if let Some((entry, rest)) = command.split_first() {
            args.extend(["--entrypoint".into(), entry.clone()]);
            args.push(image.clone());
            args.extend(rest.iter().cloned());
        } else {
            args.push(image.clone());
        }
        args.extend(strings(&c["args"]));
        Some((
            args,
            image,
            probes,
            std::mem::take(&mut self.data_dirs),
            std::mem::take(&mut self.redirected),
        ))
    }

    fn env(&mut self, env: &Value, at: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (i, e) in env.as_array().into_iter().flatten().enumerate() {
            let here = format!("{at}.env[{i}]");
            self.only(e, &here, &["name", "value", "valueFrom"]);
            let name = e["name"].as_str().unwrap_or_default().to_owned();
            let value = if let Some(v) = e["value"].as_str() {
                expand(v, &out)
            } else {
                let from = &e["valueFrom"];
                self.only(from, &format!("{here}.valueFrom"), &["fieldRef"]);
                self.only(
                    &from["fieldRef"],
                    &format!("{here}.valueFrom.fieldRef"),
                    &["fieldPath", "apiVersion"],
                );
                match from["fieldRef"]["fieldPath"].as_str() {
                    Some("status.podIP" | "status.hostIP") => "127.0.0.1".to_owned(),
                    Some("spec.nodeName") => "localhost".to_owned(),
                    other => {
                        self.fail(&here, &format!("fieldRef {other:?} is not translated"));
                        continue;
                    }
                }
            };
            out.push((name, value));
        }
        out
    }

    fn ports(&mut self, ports: &Value, at: &str) -> Vec<(String, u16)> {
        let mut out = Vec::new();
        for (i, p) in ports.as_array().into_iter().flatten().enumerate() {
            let here = format!("{at}.ports[{i}]");
            self.only(p, &here, &["name", "containerPort", "protocol", "hostPort"]);
            let port = p["containerPort"].as_u64().unwrap_or(0) as u16;
            if p["hostPort"].as_u64().is_some_and(|h| h != u64::from(port)) {
                self.fail(&here, "with host networking hostPort is containerPort");
            }
            out.push((p["name"].as_str().unwrap_or_default().to_owned(), port));
        }
        out
    }

    fn probe(&mut self, probe: &Value, at: &str, ports: &[(String, u16)]) -> Option<HttpProbe> {
        if probe.is_null() {
            return None;
        }
        self.only(
            probe,
            at,
            &[
                "httpGet",
                "periodSeconds",
                "timeoutSeconds",
                "failureThreshold",
                "successThreshold",
                "initialDelaySeconds",
            ],
        );
        let get = &probe["httpGet"];
        self.only(get, &format!("{at}.httpGet"), &["path", "port", "scheme"]);
        if !get["scheme"].is_null() && get["scheme"] != "HTTP" {
            self.fail(at, "only plain HTTP probes are translated");
        }
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().map(|n| n as u16),
            Value::String(name) => ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p),
            _ => None,
        };
        let Some(port) = port else {
            self.fail(at, "its port names no container port");
            return None;
        };
        Some(HttpProbe {
            path: get["path"].as_str().unwrap_or("/").to_owned(),
            port,
        })
    }

    fn resources(&mut self, res: &Value, at: &str, args: &mut Vec<String>) {
        let at = format!("{at}.resources");
        self.only(res, &at, &["requests", "limits"]);
        self.only(&res["requests"], &at, &["cpu", "memory"]);
        self.only(&res["limits"], &at, &["cpu", "memory"]);
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.extend([name.to_owned(), v]);
            }
        };
        let cpu = |v: &Value| quantity(v).map(|q| q / 1000.0);
        flag("--cpus", cpu(&res["limits"]["cpu"]).map(|c| c.to_string()));
        // The kubelet's mapping of a CPU request to CFS shares.
        flag(
            "--cpu-shares",
            cpu(&res["requests"]["cpu"]).map(|c| ((c * 1024.0) as u64).max(2).to_string()),
        );
        let bytes = |v: &Value| quantity(v).map(|q| ((q / 1000.0) as u64).to_string());
        flag("--memory", bytes(&res["limits"]["memory"]));
        flag("--memory-reservation", bytes(&res["requests"]["memory"]));
    }

    fn security(&mut self, sc: &Value, at: &str, args: &mut Vec<String>) {
        let at = format!("{at}.securityContext");
        self.only(
            sc,
            &at,
            &[
                "privileged",
                "runAsUser",
                "runAsGroup",
                "runAsNonRoot",
                "readOnlyRootFilesystem",
                "allowPrivilegeEscalation",
                "capabilities",
                "seccompProfile",
                "appArmorProfile",
            ],
        );
        if sc["privileged"] == true {
            self.fail(&at, "privileged: true is not translated (and fails here)");
        }
        if let Some(uid) = sc["runAsUser"].as_u64() {
            let gid = sc["runAsGroup"].as_u64().unwrap_or(uid);
            args.extend(["--user".into(), format!("{uid}:{gid}")]);
            if uid == 0 && sc["runAsNonRoot"] == true {
                self.fail(&at, "runAsNonRoot contradicts runAsUser 0");
            }
        }
        if sc["readOnlyRootFilesystem"] == true {
            args.push("--read-only".into());
        }
        if sc["allowPrivilegeEscalation"] == false {
            args.extend(["--security-opt".into(), "no-new-privileges".into()]);
        }
        let caps = &sc["capabilities"];
        self.only(caps, &format!("{at}.capabilities"), &["add", "drop"]);
        for (key, flag) in [("drop", "--cap-drop"), ("add", "--cap-add")] {
            for cap in caps[key].as_array().into_iter().flatten() {
                args.extend([flag.into(), cap.as_str().unwrap_or_default().to_owned()]);
            }
        }
        for (key, option) in [
            ("seccompProfile", "seccomp"),
            ("appArmorProfile", "apparmor"),
        ] {
            let profile = &sc[key];
            self.only(profile, &format!("{at}.{key}"), &["type"]);
            match profile["type"].as_str() {
                // Docker's default profile is the runtime default.
                None | Some("RuntimeDefault") => {}
                Some("Unconfined") => {
                    args.extend(["--security-opt".into(), format!("{option}=unconfined")]);
                }
                Some(other) => self.fail(&format!("{at}.{key}"), &format!("{other} profile")),
            }
        }
    }

    fn volumes(&mut self, spec: &Value, mounts: &Value, objects: &[Value], args: &mut Vec<String>) {
        let volumes: BTreeMap<&str, (usize, &Value)> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, v)| (v["name"].as_str().unwrap_or_default(), (i, v)))
            .collect();
        for (i, m) in mounts.as_array().into_iter().flatten().enumerate() {
            let at = format!("spec.template.spec.containers[0].volumeMounts[{i}]");
            self.only(m, &at, &["name", "mountPath", "readOnly"]);
            let target = m["mountPath"].as_str().unwrap_or_default();
            let read_only = m["readOnly"] == true;
            let name = m["name"].as_str().unwrap_or_default();
            let Some(&(vi, volume)) = volumes.get(name) else {
                self.fail(&at, &format!("no volume {name}"));
                continue;
            };
            let at = format!("spec.template.spec.volumes[{vi}]");
            self.only(
                volume,
                &at,
                &["name", "hostPath", "configMap", "secret", "emptyDir"],
            );
            let ro = if read_only { ":ro" } else { "" };
            if let Some(host) = volume.get("hostPath") {
                if let Some(source) = self.host_path(host, &at, read_only) {
                    args.extend(["--volume".into(), format!("{source}:{target}{ro}")]);
                }
            } else if let Some(cm) = volume.get("configMap") {
                self.only(cm, &at, &["name", "optional", "defaultMode"]);
                let dir = self.data_volume(objects, "ConfigMap", &cm["name"], cm, 0o644);
                args.extend(["--volume".into(), format!("{dir}:{target}{ro}")]);
            } else if let Some(secret) = volume.get("secret") {
                self.only(secret, &at, &["secretName", "optional", "defaultMode"]);
                let dir = self.data_volume(objects, "Secret", &secret["secretName"], secret, 0o644);
                args.extend(["--volume".into(), format!("{dir}:{target}{ro}")]);
            } else if let Some(empty) = volume.get("emptyDir") {
                self.only(empty, &at, &["medium", "sizeLimit"]);
                if empty["medium"] == "Memory" {
                    let mut opts = format!("{target}:mode=0777");
                    if let Some(bytes) = quantity(&empty["sizeLimit"]) {
                        opts.push_str(&format!(",size={}", (bytes / 1000.0) as u64));
                    }
                    args.extend(["--tmpfs".into(), opts]);
                } else {
                    let dir = self.root.join(format!("emptydir-{name}"));
                    make_dir(&dir, 0o777);
                    args.extend(["--volume".into(), format!("{}:{target}", dir.display())]);
                }
            } else {
                self.fail(&at, "no volume source that is translated");
            }
        }
    }

    /// The source of a hostPath mount: the host's own path when mounted read-only, else a
    /// directory of the test standing in for it.
    fn host_path(&mut self, host: &Value, at: &str, read_only: bool) -> Option<String> {
        self.only(host, &format!("{at}.hostPath"), &["path", "type"]);
        let path = host["path"].as_str().unwrap_or_default().to_owned();
        let kind = host["type"].as_str().unwrap_or("");
        if read_only {
            let exists = Path::new(&path).exists();
            match kind {
                "Directory" if !Path::new(&path).is_dir() => {
                    self.fail(at, &format!("{path} is not a directory on this host"));
                }
                "" | "Directory" | "DirectoryOrCreate" if exists => {}
                _ => self.fail(at, &format!("hostPath type {kind:?} at {path}")),
            }
            return Some(path);
        }
        if !matches!(kind, "DirectoryOrCreate" | "Directory") {
            self.fail(at, &format!("writable hostPath of type {kind:?}"));
            return None;
        }
        let stand_in = self.root.join(format!("host{}", path.replace('/', "_")));
        make_dir(&stand_in, 0o755);
        self.redirected.insert(path, stand_in.clone());
        Some(stand_in.display().to_string())
    }

    /// Writes a ConfigMap's or Secret's data into a directory as the kubelet lays it out.
    fn data_volume(
        &mut self,
        objects: &[Value],
        kind: &str,
        name: &Value,
        source: &Value,
        default_mode: u32,
    ) -> String {
        let name = name.as_str().unwrap_or_default();
        let dir = self.root.join(format!("{}-{name}", kind.to_lowercase()));
        make_dir(&dir, 0o755);
        let object = objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name);
        let mut files = Vec::new();
        match object {
            Some(o) => {
                for (key, value) in o["data"].as_object().into_iter().flatten() {
                    let text = value.as_str().unwrap_or_default();
                    let bytes = match kind {
                        "Secret" => base64_decode(text),
                        _ => text.as_bytes().to_vec(),
                    };
                    files.push((key.clone(), bytes));
                }
            }
            None if source["optional"] == true => {}
            None => self.fail(kind, &format!("{name} is mounted but not rendered")),
        }
        let mode = source["defaultMode"]
            .as_u64()
            .map_or(default_mode, |m| m as u32);
        atomic_write(&dir, &files, mode);
        self.data_dirs.insert(name.to_owned(), dir.clone());
        dir.display().to_string()
    }
}

/// `$(VAR)` replaced by the value of an earlier env entry, `$$` by `$`, as the kubelet does.
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some((_, value)) = env.iter().rev().find(|(n, _)| n == &inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A Kubernetes quantity in thousandths (`100m` -> 100, `1` -> 1000, `128Mi` -> 128 Mi x 1000).
fn quantity(v: &Value) -> Option<f64> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let suffixes: [(&str, f64); 7] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("m", 1e-3),
    ];
    for (suffix, factor) in suffixes {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|n| n * factor * 1000.0);
        }
    }
    text.parse::<f64>().ok().map(|n| n * 1000.0)
}

fn make_dir(dir: &Path, mode: u32) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dir.display()));
}

/// The kubelet's atomic writer: files in `..<timestamp>/`, `..data` pointing at it (swapped by
/// a rename), and each key a symlink `KEY -> ..data/KEY`.
#[track_caller]
fn atomic_write(dir: &Path, files: &[(String, Vec<u8>)], mode: u32) {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let version = format!("..{stamp}");
    let version_dir = dir.join(&version);
    make_dir(&version_dir, 0o755);
    for (key, bytes) in files {
        let file = version_dir.join(key);
        fs::write(&file, bytes).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let old = fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(&version, &tmp).expect("..data_tmp symlink");
    fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (key, _) in files {
        let link = dir.join(key);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(key), &link).expect("key symlink");
        }
    }
    if let Some(old) = old {
        let _ = fs::remove_dir_all(dir.join(old));
    }
}

#[cfg(test)]
mod tests {
    use super::{expand, quantity};
    use serde_json::json;

    #[test]
    fn env_references_expand_as_the_kubelet_does() {
        let env = vec![("POD_IP".to_owned(), "127.0.0.1".to_owned())];
        assert_eq!(expand("--a=$(POD_IP):9464", &env), "--a=127.0.0.1:9464");
        assert_eq!(expand("$$(POD_IP) $(NOPE)", &env), "$(POD_IP) $(NOPE)");
    }

    #[test]
    fn quantities_are_read_in_thousandths() {
        assert_eq!(quantity(&json!("100m")), Some(100.0));
        assert_eq!(quantity(&json!("1")), Some(1000.0));
        assert_eq!(quantity(&json!("1Mi")), Some(1024.0 * 1024.0 * 1000.0));
    }
}
