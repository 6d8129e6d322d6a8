//! Container identity from the runtime, end to end: real Docker containers labelled the way
//! kubelet labels them (dockershim/cri-dockerd: `io.kubernetes.*` on each container, the pod's
//! labels on its sandbox), the real agent asking the real engine. Events and alerts must name
//! the container, image and pod exactly; profiles and detections select on them; a runtime
//! that does not answer leaves the names null and the events flowing.

use std::{
    fs,
    os::unix::net::UnixListener,
    process::Command,
    sync::{Arc, Mutex},
    thread,
};

use monitor_tests::{
    TIMEOUT, TempDir,
    deliver::{ForwardAgent, last_stats, wait_until},
    docker::{Container, busybox_image, docker_or_skip},
    path_str, random_uuid, skip_or_fail,
};
use serde_json::{Value, json};

/// Launches an agent recording every event, with rule documents (one file each) and extra
/// arguments.
fn launch(dir: &TempDir, rules: &[&str], extra: &[&str]) -> Option<ForwardAgent> {
    let rules_dir = dir.join("rules");
    fs::create_dir_all(&rules_dir).expect("rules dir");
    for (i, doc) in rules.iter().enumerate() {
        fs::write(rules_dir.join(format!("test-{i}.yaml")), doc).expect("rules");
    }
    let mut args = vec![
        "--events".to_owned(),
        "--spool-dir".to_owned(),
        path_str(dir.join("spool")),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    match ForwardAgent::launch(&dir.join("out.json"), &rules_dir, &args) {
        Ok(a) => Some(a),
        Err(e) => {
            skip_or_fail(&e);
            None
        }
    }
}

/// The first record `pred` accepts, within the test timeout.
fn wait_record(agent: &ForwardAgent, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(
        TIMEOUT,
        what,
        || agent.records().into_iter().find(|r| pred(r)),
        || agent.stderr(),
    )
}

fn exec_of(r: &Value, container: &str, argv0: &str) -> bool {
    r["kind"] == "exec" && r["container_id"] == container && r["argv"][0] == argv0
}

/// kubelet's labels for one pod: (name, namespace, uid).
fn pod_labels(pod: &(&str, &str, &str)) -> Vec<String> {
    vec![
        "--label".into(),
        format!("io.kubernetes.pod.name={}", pod.0),
        "--label".into(),
        format!("io.kubernetes.pod.namespace={}", pod.1),
        "--label".into(),
        format!("io.kubernetes.pod.uid={}", pod.2),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const QUIET_RULES: &str = "detection: nothing-here\ndescription: matches no test action\n\
    severity: low\nmitre: [T1552]\non: [open]\nwhen:\n  path: [\"/nonexistent-monitor-test\"]\n";

#[test]
fn containers_and_pods_are_named_exactly_and_host_processes_are_not() {
    if !docker_or_skip() {
        return;
    }
    let image = busybox_image();
    let dir = TempDir::new("runtime-identity");
    let Some(agent) = launch(&dir, &[QUIET_RULES], &[]) else {
        return;
    };
    let uid = random_uuid();
    let pod = ("litellm-0", "ai", uid.as_str());
    let mut sandbox_args = pod_labels(&pod);
    sandbox_args.extend(
        [
            "--label",
            "io.kubernetes.docker.type=podsandbox",
            "--label",
            "app=litellm",
            "--label",
            "tier=inference",
            "--label",
            "annotation.kubernetes.io/config.source=api",
            image,
            "sleep",
            "60",
        ]
        .map(String::from),
    );
    let sandbox = Container::run(&args(&sandbox_args));
    let mut app_args = pod_labels(&pod);
    app_args.extend([
        "--label".to_owned(),
        "io.kubernetes.container.name=server".to_owned(),
        "--label".to_owned(),
        format!("io.kubernetes.sandbox.id={}", sandbox.id()),
        image.to_owned(),
        "sh".to_owned(),
        "-c".to_owned(),
        "cat /proc/self/cgroup; exec sleep 60".to_owned(),
    ]);
    let app = Container::run(&args(&app_args));
    let host = Command::new("/bin/true").status().expect("run true");
    assert!(host.success());

    let ev = wait_record(&agent, "the app container's cat", |r| {
        exec_of(r, app.id(), "cat")
    });
    let image_id = app.inspect("{{.Image}}");
    assert_eq!(
        ev["container"],
        json!({"id": app.id(), "name": "server", "image": image, "image_id": image_id}),
        "{ev}"
    );
    assert_eq!(
        ev["pod"],
        json!({"uid": uid, "name": "litellm-0", "namespace": "ai",
               "labels": {"app": "litellm", "tier": "inference"}}),
        "{ev}"
    );
    // The very first event of the container's first process already carries the names: a new
    // container's events wait for the runtime's answer.
    let first = agent
        .records()
        .into_iter()
        .find(|r| r["container_id"] == app.id())
        .expect("the container's first event");
    assert_eq!(first["container"]["name"], "server", "{first}");

    let sb = wait_record(&agent, "the sandbox's sleep", |r| {
        exec_of(r, sandbox.id(), "sleep")
    });
    assert_eq!(
        sb["pod"]["labels"],
        json!({"app": "litellm", "tier": "inference"})
    );
    let name = sandbox.inspect("{{.Name}}");
    assert_eq!(
        sb["container"]["name"],
        name.trim_start_matches('/'),
        "{sb}"
    );

    let true_ev = wait_record(&agent, "the host's true", |r| {
        r["kind"] == "exec" && r["filename"] == "/bin/true" && r["container_id"].is_null()
    });
    assert_eq!(true_ev["container"], Value::Null);
    assert_eq!(true_ev["pod"], Value::Null);

    drop(app);
    drop(sandbox);
    agent.stop();
    let records = monitor_tests::deliver::read_records(&dir.join("out.json"));
    let stats = last_stats(&records).expect("agent_stats");
    let runtime = &stats["runtime"];
    assert!(runtime["lookups"].as_u64() >= Some(2), "{runtime}");
    assert_eq!(runtime["unparked"], 0, "{runtime}");
}

#[test]
fn profiles_and_detections_select_on_image_container_name_and_namespace() {
    if !docker_or_skip() {
        return;
    }
    let image = busybox_image();
    let dir = TempDir::new("runtime-select");
    let profile = format!(
        "profile: boxed\nmatch:\n  image: [\"{image}\"]\n  container_name: [worker]\n\
         allow:\n  exec: [\"/bin/sh\", \"/bin/sleep\"]\n  read: [\"/**\"]\n"
    );
    let detection = "detection: version-in-ai\ndescription: reads the kernel version in the ai \
                     namespace\nseverity: medium\nmitre: [T1082]\non: [open]\nwhen:\n  \
                     path: [/proc/version]\n  namespace: [\"a?\"]\n";
    let Some(agent) = launch(&dir, &[&profile, detection], &[]) else {
        return;
    };
    let uid = random_uuid();
    let mut worker_args = pod_labels(&("w-0", "ai", &uid));
    worker_args.extend(
        [
            "--label",
            "io.kubernetes.container.name=worker",
            image,
            "sh",
            "-c",
            "cat /proc/version; exec sleep 60",
        ]
        .map(String::from),
    );
    let worker = Container::run(&args(&worker_args));
    // Same image, another name: not the profile's.
    let other = Container::run(&[image, "sh", "-c", "cat /proc/version; exec sleep 60"]);

    let alert = wait_record(&agent, "the profile's exec alert", |r| {
        r["kind"] == "alert"
            && r["rule"] == "profile.exec"
            && r["event"]["container_id"] == worker.id()
            && r["event"]["argv"][0] == "cat"
    });
    assert_eq!(alert["profile"], "boxed");
    assert_eq!(alert["event"]["container"]["name"], "worker");
    assert_eq!(alert["event"]["pod"]["namespace"], "ai");
    let found = wait_record(&agent, "the namespace detection", |r| {
        r["kind"] == "alert" && r["rule"] == "version-in-ai"
    });
    assert_eq!(found["event"]["container_id"], worker.id(), "{found}");

    // The other container's cat ran (its exec event is there) and raised neither.
    wait_record(&agent, "the other container's cat", |r| {
        exec_of(r, other.id(), "cat")
    });
    wait_record(&agent, "the other container's sleep", |r| {
        exec_of(r, other.id(), "sleep")
    });
    let stray: Vec<Value> = agent
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "alert" && r["event"]["container_id"] == other.id())
        .collect();
    assert!(
        stray.is_empty(),
        "alerts for the other container: {stray:?}"
    );
}

/// A unix socket that accepts connections and never answers: a hung runtime.
struct HungRuntime {
    path: String,
    _held: Arc<Mutex<Vec<std::os::unix::net::UnixStream>>>,
}

impl HungRuntime {
    fn start(dir: &TempDir) -> Self {
        let path = dir.join("hung.sock");
        let listener = UnixListener::bind(&path).expect("bind the hung socket");
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&held);
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                keep.lock().expect("held").push(conn);
            }
        });
        Self {
            path: path_str(&path),
            _held: held,
        }
    }
}

#[test]
fn a_runtime_that_does_not_answer_leaves_names_null_and_events_flowing() {
    if !docker_or_skip() {
        return;
    }
    let image = busybox_image();
    let dir = TempDir::new("runtime-hung");
    let hung = HungRuntime::start(&dir);
    let Some(agent) = launch(&dir, &[QUIET_RULES], &["--runtime-socket", &hung.path]) else {
        return;
    };
    let a = Container::run(&[image, "sh", "-c", "cat /proc/self/cgroup; exec sleep 60"]);
    // A host process right after: it must not wait for the container's answer.
    let host = Command::new("/bin/true").status().expect("run true");
    assert!(host.success());
    wait_record(&agent, "the host's true", |r| {
        r["kind"] == "exec" && r["filename"] == "/bin/true" && r["container_id"].is_null()
    });
    let ev = wait_record(&agent, "the container's cat", |r| exec_of(r, a.id(), "cat"));
    assert_eq!(
        ev["container"],
        json!({"id": a.id(), "name": null, "image": null, "image_id": null})
    );
    // A second container while the runtime backs off: no new warning, no wait.
    let b = Container::run(&[image, "sh", "-c", "cat /proc/self/cgroup; exec sleep 60"]);
    let ev = wait_record(&agent, "the second container's cat", |r| {
        exec_of(r, b.id(), "cat")
    });
    assert_eq!(ev["container"]["name"], Value::Null);
    let warnings = agent
        .stderr_full()
        .matches("the container runtime does not answer")
        .count();
    assert_eq!(warnings, 1, "{}", agent.stderr_full());
    drop((a, b));
    agent.stop();
    let records = monitor_tests::deliver::read_records(&dir.join("out.json"));
    let stats = last_stats(&records).expect("agent_stats");
    assert!(
        stats["runtime"]["misses"].as_u64() >= Some(2),
        "{}",
        stats["runtime"]
    );
}
