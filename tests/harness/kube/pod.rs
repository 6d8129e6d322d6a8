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
    path::{Path, PathBuf},
};

use serde_json::Value;

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
        super::volumes::atomic_write(dir, files, 0o644);
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

pub(super) struct Translation {
    pub(super) errors: Vec<String>,
    pub(super) args: Vec<String>,
    pub(super) data_dirs: BTreeMap<String, PathBuf>,
    pub(super) redirected: BTreeMap<String, PathBuf>,
    pub(super) root: PathBuf,
}

impl Translation {
    pub(super) fn fail(&mut self, field: &str, why: &str) {
        self.errors.push(format!("{field}: {why}"));
    }

    /// Fails on every key of `obj` outside `known`.
    pub(super) fn only(&mut self, obj: &Value, at: &str, known: &[&str]) {
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
pub(super) fn quantity(v: &Value) -> Option<f64> {
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
