//! The Kubernetes deployment (deploy/kubernetes) as the tests run it: rendered with
//! `kubectl kustomize`, validated against the supported Kubernetes versions' schemas, and the
//! DaemonSet's pod spec run as a `docker run` of the built image (`MONITOR_IMAGE`), which must
//! get ready, report host and container processes, and raise and deliver an alert for a
//! container under a profile.
//!
//! Test-only additions to the manifest, made by a kustomization on top of the base and nothing
//! else: the image tag under test, a profile in the rules ConfigMap, and three arguments
//! (`--events`, a file output in the spool's hostPath, and a loopback webhook).

use std::{
    fs,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use monitor_tests::{
    TempDir, agent_binary, canonical,
    docker::{Container, busybox_image, docker_or_skip, docker_output},
    http::HttpReceiver,
    kube::{
        Layer, agent_image, agent_version, find, http_status, kubectl_or_skip, manifests,
        pod::{PodRun, translate},
        render, render_yaml,
        validate::Validator,
    },
    random_hex, skip_or_fail,
};
use serde_json::{Value, json};

/// How long the agent in its container may take to get ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long an event or an alert may take.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a ConfigMap change may take to reach the agent (`--watch-rules` polls).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// deploy/kubernetes/components: each mounts one runtime's socket where the agent looks.
const RUNTIME_COMPONENTS: [&str; 3] = ["runtime-containerd", "runtime-crio", "runtime-docker"];

/// The base with one component.
fn component_layer(component: &str) -> Layer {
    let path = manifests(&format!("components/{component}"));
    Layer::with_components(&manifests("base"), &[path], "", &[])
}

#[test]
fn manifests_validate_against_the_supported_kubernetes_versions() {
    if !kubectl_or_skip() {
        return;
    }
    let validator = match Validator::get() {
        Ok(v) => v,
        Err(e) => {
            skip_or_fail(&format!("kubernetes-validate is not available: {e}"));
            return;
        }
    };
    // The base runs the image `cargo xtask image` builds for this version.
    let objects = render(&manifests("base"));
    let ds = find(&objects, "DaemonSet", "monitor");
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("monitor:{}", agent_version()).as_str(),
        "the base's image tag (deploy/kubernetes/base/kustomization.yaml) is not the agent's version"
    );
    let versions = validator.supported_versions();
    eprintln!("validating against Kubernetes {}", versions.join(", "));
    let dir = TempDir::new("rendered");
    // The base, the example, and the base with each runtime component.
    let components: Vec<(String, Layer)> = RUNTIME_COMPONENTS
        .iter()
        .map(|c| (format!("base+{c}"), component_layer(c)))
        .collect();
    let mut rendered = vec![
        ("base".to_owned(), manifests("base")),
        ("overlays/example".to_owned(), manifests("overlays/example")),
    ];
    rendered.extend(
        components
            .iter()
            .map(|(n, l)| (n.clone(), l.path().to_path_buf())),
    );
    for (overlay, path) in &rendered {
        let file = dir.join(format!("{}.yaml", overlay.replace(['/', '+'], "-")));
        fs::write(&file, render_yaml(path)).expect("write the rendered manifest");
        for version in &versions {
            let outcome = validator.run(version, &file);
            assert!(
                outcome.success,
                "{overlay} is not valid for Kubernetes {version}:\n{}",
                outcome.output
            );
        }
    }
    // The validator bites: a field the schema does not have fails strict validation.
    let broken = render_yaml(&manifests("base")).replace(
        "      hostPID: true",
        "      hostPID: true\n      hostPIDs: true",
    );
    let file = dir.join("broken.yaml");
    fs::write(&file, broken).expect("write the broken manifest");
    let newest = versions.last().expect("a version");
    let outcome = validator.run(newest, &file);
    assert!(
        !outcome.success,
        "an unknown pod field passed validation: {}",
        outcome.output
    );
}

#[test]
fn the_example_overlay_translates_to_docker_run() {
    if !kubectl_or_skip() {
        return;
    }
    let objects = render(&manifests("overlays/example"));
    let ds = find(&objects, "DaemonSet", "monitor");
    let run = translate(ds, &objects).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.image, "registry.example.com/security/monitor:0.1.0");
    let args = run.args.join(" ");
    for expected in [
        "--pid host",
        "--network host",
        "--read-only",
        "--cap-drop ALL",
        "--cap-add SYS_ADMIN",
        "--cap-add SYS_PTRACE",
        "--cap-add DAC_READ_SEARCH",
        "--user 0:0",
        "--memory 1073741824",
        "--metrics-addr=127.0.0.1:9464",
        // The runtime-containerd component: containerd's socket directory where the agent
        // looks for it.
        "--volume /run/containerd:/run/containerd:ro",
    ] {
        assert!(args.contains(expected), "no `{expected}` in: {args}");
    }
    // The Splunk output's token file is a key of the Secret, where the Secret is mounted.
    let spec = run
        .args
        .iter()
        .find(|a| a.starts_with("--output=splunk+https://"))
        .expect("a Splunk HEC output");
    let token_file = spec
        .split_once("token_file=")
        .and_then(|(_, rest)| rest.split('&').next())
        .expect("token_file=");
    let key = token_file
        .strip_prefix("/etc/monitor/secrets/")
        .expect("the token file is in the Secret's mount");
    let secret = objects
        .iter()
        .find(|o| o["kind"] == "Secret")
        .expect("a Secret");
    assert!(secret["data"][key].is_string(), "the Secret has no {key}");
    let mount = run
        .args
        .iter()
        .find(|a| a.ends_with(":/etc/monitor/secrets:ro"))
        .expect("the Secret's mount");
    let host_file = format!(
        "{}/{key}",
        mount.trim_end_matches(":/etc/monitor/secrets:ro")
    );
    let token = fs::read_to_string(&host_file).expect("the materialised token");
    assert_eq!(token, "00000000-0000-0000-0000-000000000000");

    // The agent knows every argument (clap refuses an unknown option before --help).
    let bin = agent_binary();
    if !bin.is_file() {
        skip_or_fail(&format!(
            "the agent binary {} does not exist",
            bin.display()
        ));
        return;
    }
    let at = run
        .args
        .iter()
        .position(|a| *a == run.image)
        .expect("image");
    let out = Command::new(&bin)
        .args(&run.args[at + 1..])
        .arg("--help")
        .output()
        .expect("run the agent");
    assert!(
        out.status.success(),
        "the agent refuses the DaemonSet's arguments {:?}: {}",
        &run.args[at + 1..],
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pod_spec_fields_the_translation_does_not_know_fail_it() {
    if !kubectl_or_skip() {
        return;
    }
    let objects = render(&manifests("base"));
    let mut ds = find(&objects, "DaemonSet", "monitor").clone();
    let spec = &mut ds["spec"]["template"]["spec"];
    spec["shareProcessNamespace"] = json!(true);
    spec["containers"][0]["securityContext"]["privileged"] = json!(true);
    spec["containers"][0]["volumeMounts"][0]["subPath"] = json!("x");
    spec["containers"][0]["stdin"] = json!(true);
    let err = translate(&ds, &objects).expect_err("the translation accepted unknown fields");
    for field in [
        "spec.template.spec.shareProcessNamespace",
        "privileged: true",
        "volumeMounts[0].subPath",
        "containers[0].stdin",
    ] {
        assert!(
            err.contains(field),
            "the error does not name {field}: {err}"
        );
    }
}

/// The profile the test adds to the rules ConfigMap: the container's shell (found by its image,
/// which the runtime names, and a token in its argv) and what it runs, in enforce mode: busybox's applets may run (the kernel sees
/// them all as /bin/busybox), and read nothing beyond the baseline.
fn profile(token: &str) -> String {
    let image = busybox_image();
    format!(
        "profile: e2e-busybox-{token}\n\
         description: the deploy test's container workload\n\
         match:\n  image: [\"{image}\"]\n  argv_contains: [\"monitor-e2e-{token}\"]\n\
         mode: enforce\n\
         allow:\n  exec: [\"/bin/sh\", \"/bin/sleep\", \"/bin/cat\", \"/bin/busybox\"]\n"
    )
}

/// The test's kustomization on top of the base.
fn test_layer(image: &str, token: &str, webhook_port: u16) -> Layer {
    let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let add = |arg: &str| {
        format!(
            "      - op: add\n        path: /spec/template/spec/containers/0/args/-\n        \
             value: {arg}\n"
        )
    };
    let body = format!(
        "images:\n  - name: monitor\n    newName: {name}\n    newTag: \"{tag}\"\n\
         configMapGenerator:\n  - name: monitor-rules\n    namespace: monitor\n    \
         behavior: merge\n    files: [e2e-busybox.yaml]\n    options:\n      \
         disableNameSuffixHash: true\n\
         patches:\n  - target: {{kind: DaemonSet, name: monitor}}\n    patch: |-\n{}{}{}",
        add("--events"),
        add("--output=file:/var/lib/monitor/events.jsonl"),
        add(&format!(
            "--output=http://127.0.0.1:{webhook_port}/alerts?events=false"
        )),
    );
    // Docker names the containers here (the runtime-docker component).
    Layer::with_components(
        &manifests("base"),
        &[manifests("components/runtime-docker")],
        &body,
        &[("e2e-busybox.yaml", &profile(token))],
    )
}

/// The agent's container; its log is printed when the test fails.
struct AgentContainer {
    container: Container,
    run: PodRun,
}

impl AgentContainer {
    /// The agent's own log (its stderr; stdout carries the records).
    fn log(&self) -> String {
        let out = docker_output(&["logs", self.container.id()]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn running(&self) -> bool {
        self.container.inspect("{{.State.Running}}") == "true"
    }

    /// Every JSON line of the events file so far.
    fn lines(&self) -> Vec<Value> {
        let file = self.run.host_dir("/var/lib/monitor").join("events.jsonl");
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    #[track_caller]
    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(found) = self.lines().into_iter().find(|e| pred(e)) {
                return found;
            }
            assert!(self.running(), "the agent's container stopped");
            assert!(
                Instant::now() < deadline,
                "no {what} within {EVENT_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentContainer {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("the agent container's log (last lines):\n{tail}");
        }
    }
}

#[test]
fn the_daemonset_runs_in_docker_and_alerts_on_a_container_workload() {
    if !kubectl_or_skip() || !docker_or_skip() {
        return;
    }
    let image = agent_image();
    if !docker_output(&["image", "inspect", &image])
        .status
        .success()
    {
        skip_or_fail(&format!(
            "the agent's image {image} is not built: run `cargo xtask image` (`cargo xtask \
             test` builds it and sets MONITOR_IMAGE)"
        ));
        return;
    }
    let webhook = HttpReceiver::start(0, Vec::new(), |_| "{}".to_owned()).expect("webhook");
    let token = random_hex(6);
    let layer = test_layer(&image, &token, webhook.port);
    let objects = render(layer.path());
    let ds = find(&objects, "DaemonSet", "monitor");
    let run = translate(ds, &objects).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.image, image);
    let readiness = run.readiness.clone().expect("a readiness probe");
    let liveness = run.liveness.clone().expect("a liveness probe");
    if let Ok(code) = http_status(readiness.port, &readiness.path) {
        panic!(
            "something already answers on 127.0.0.1:{} ({code}): the agent's metrics port is \
             taken",
            readiness.port
        );
    }
    // The workload starts before the agent (as on a node where the agent is upgraded): the agent
    // finds its shell through /proc. It reads /etc/hostname once /dev/shm/go exists.
    let marker = format!("monitor-e2e-{token}");
    let workload = Container::run(&[
        "--label",
        "monitor-test=deploy",
        busybox_image(),
        "/bin/sh",
        "-c",
        "while [ ! -e /dev/shm/go ]; do /bin/sleep 0.1; done; /bin/cat /etc/hostname; \
         exec /bin/sleep 600",
        &marker,
    ]);
    let init = workload.pid();

    let args: Vec<&str> = run.args.iter().map(String::as_str).collect();
    let agent = AgentContainer {
        container: Container::run(&args),
        run,
    };

    // Ready (probes attached, rules loaded, spool writable), and alive.
    let deadline = Instant::now() + READY_TIMEOUT;
    while http_status(readiness.port, &readiness.path) != Ok(200) {
        assert!(agent.running(), "the agent's container exited");
        assert!(
            Instant::now() < deadline,
            "{} did not answer 200 within {READY_TIMEOUT:?}",
            readiness.path
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_status(liveness.port, &liveness.path), Ok(200));
    // Prometheus scrapes where the annotations say.
    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    let scrape_port: u16 = annotations["prometheus.io/port"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .expect("a prometheus.io/port annotation");
    let scrape_path = annotations["prometheus.io/path"]
        .as_str()
        .expect("a prometheus.io/path annotation");
    assert_eq!(http_status(scrape_port, scrape_path), Ok(200));
    // CAP_DAC_READ_SEARCH: cgroups are opened by id, not found by rate-limited walks.
    let logs = agent.log();
    assert!(
        !logs.contains("cannot be opened by id"),
        "the agent cannot open cgroups by id:\n{logs}"
    );

    // A host process: the node's pid and executable, no container.
    let host_marker = format!("monitor-e2e-host-{token}");
    let status = Command::new("/bin/true")
        .arg(&host_marker)
        .status()
        .expect("run /bin/true");
    assert!(status.success());
    let host = agent.wait_for("exec event of the host process", |e| {
        e["kind"] == "exec" && e["argv"][1] == host_marker.as_str()
    });
    assert_eq!(host["exe"], canonical("/bin/true").as_str(), "{host}");
    assert_eq!(host["container_id"], Value::Null, "{host}");

    // The container's read outside its enforce-mode profile: the kernel kills cat (no
    // capability needed: bpf_send_signal), the alert names the container, the pre-existing
    // shell's executable (read from /proc: CAP_SYS_PTRACE), and reaches the webhook.
    workload.exec(&["/bin/sh", "-c", ": > /dev/shm/go"]);
    let exec = agent.wait_for("exec event of the container's cat", |e| {
        e["kind"] == "exec" && e["ppid"] == init && e["filename"] == "/bin/cat"
    });
    assert_eq!(exec["container_id"], workload.id(), "{exec}");
    assert_eq!(exec["profile"], format!("e2e-busybox-{token}"), "{exec}");
    let alert = agent.wait_for("profile.read alert for /etc/hostname", |e| {
        e["kind"] == "alert" && e["rule"] == "profile.read" && e["event"]["path"] == "/etc/hostname"
    });
    assert_eq!(alert["profile"], format!("e2e-busybox-{token}"), "{alert}");
    assert_eq!(alert["action"], "killed", "{alert}");
    assert_eq!(alert["event"]["container_id"], workload.id(), "{alert}");
    // The runtime's names, through the runtime-docker component's socket.
    let name = workload.inspect("{{.Name}}");
    assert_eq!(
        alert["event"]["container"],
        json!({
            "id": workload.id(),
            "name": name.trim_start_matches('/'),
            "image": busybox_image(),
            "image_id": workload.inspect("{{.Image}}"),
        }),
        "{alert}"
    );
    assert_eq!(alert["event"]["pid"], exec["pid"], "{alert}");
    assert_eq!(alert["ancestors"][0]["pid"], init, "{alert}");
    assert_eq!(alert["ancestors"][0]["exe"], "/bin/busybox", "{alert}");
    let id = alert["id"].as_str().expect("alert id").to_owned();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let delivered = webhook.requests().iter().any(|r| {
            serde_json::from_slice::<Vec<Value>>(&r.body)
                .is_ok_and(|alerts| alerts.iter().any(|a| a["id"] == id.as_str()))
        });
        if delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alert {id} never reached the webhook"
        );
        thread::sleep(Duration::from_millis(50));
    }
    drop(workload);

    rules_reload_from_the_config_map(&agent, &token);
    drop(agent);
}

/// Rules changed in the ConfigMap reach the running agent (`--watch-rules` through the
/// kubelet's symlink swap): a set with an invalid file is refused, the old rules stay and the
/// agent stays ready; the corrected set is loaded and its new profile alerts.
fn rules_reload_from_the_config_map(agent: &AgentContainer, token: &str) {
    let readiness = agent.run.readiness.clone().expect("a readiness probe");
    let second = random_hex(6);
    let kept = ("e2e-busybox.yaml".to_owned(), profile(token).into_bytes());
    let added = ("e2e-reload.yaml".to_owned(), profile(&second).into_bytes());
    let broken = ("e2e-broken.yaml".to_owned(), b"profile: [\n".to_vec());
    agent
        .run
        .update_config_map("monitor-rules", &[kept.clone(), added.clone(), broken]);
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    while !agent.log().contains("e2e-broken.yaml") {
        assert!(agent.running(), "the agent's container stopped");
        assert!(
            Instant::now() < deadline,
            "the agent never reported the invalid rule file e2e-broken.yaml"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        http_status(readiness.port, &readiness.path),
        Ok(200),
        "not ready after an invalid rules update"
    );
    // The refused set's new profile is not in force.
    let marker = format!("monitor-e2e-{second}");
    let early = Container::run(&[
        "--label",
        "monitor-test=deploy",
        busybox_image(),
        "/bin/sh",
        "-c",
        "/bin/cat /etc/hostname; exec /bin/sleep 600",
        &marker,
    ]);
    let init = early.pid();
    let exec = agent.wait_for("exec event of the second container's cat", |e| {
        e["kind"] == "exec" && e["ppid"] == init && e["filename"] == "/bin/cat"
    });
    assert!(
        exec["profile"].is_null(),
        "a refused profile applies: {exec}"
    );
    drop(early);

    // Corrected: the new profile alerts (containers are started until the reload landed).
    agent.run.update_config_map("monitor-rules", &[kept, added]);
    let profile_name = format!("e2e-busybox-{second}");
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let attempt = Container::run(&[
            "--label",
            "monitor-test=deploy",
            busybox_image(),
            "/bin/sh",
            "-c",
            "/bin/cat /etc/hostname; exec /bin/sleep 600",
            &marker,
        ]);
        let init = attempt.pid();
        let exec = agent.wait_for("exec event of the reload container's cat", |e| {
            e["kind"] == "exec" && e["ppid"] == init && e["filename"] == "/bin/cat"
        });
        if exec["profile"] == profile_name.as_str() {
            agent.wait_for("the new profile's alert", |e| {
                e["kind"] == "alert"
                    && e["profile"] == profile_name.as_str()
                    && e["event"]["pid"] == exec["pid"]
            });
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the corrected rules were not loaded within {RELOAD_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}
