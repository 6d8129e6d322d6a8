//! Container identity through the CRI: a real containerd with its CRI plugin, a pod run the
//! way kubelet runs one (sandbox, then a container, kubelet's labels), the real agent asking
//! containerd over gRPC. The container's events must name the container, image and pod
//! exactly, as the Docker tests do.

use std::fs;

use monitor_tests::{
    TIMEOUT, TempDir,
    cri::{Containerd, PodSpec},
    deliver::{ForwardAgent, wait_until},
    docker::{busybox_image, docker_or_skip},
    path_str, random_uuid, skip_or_fail,
};
use serde_json::{Value, json};

#[test]
fn cri_pods_and_containers_are_named_exactly() {
    if !docker_or_skip() {
        return;
    }
    let Some(containerd) = Containerd::start() else {
        return;
    };
    let dir = TempDir::new("runtime-cri");
    let rules = dir.join("rules");
    fs::create_dir_all(&rules).expect("rules dir");
    fs::write(
        rules.join("test.yaml"),
        "profile: proxy\nmatch:\n  namespace: [inference]\n  pod_labels: {app: litellm}\n\
         \x20 container_name: [proxy]\nallow:\n  exec: [\"/bin/sh\", \"/bin/sleep\"]\n  read: [\"/**\"]\n",
    )
    .expect("rules");
    let args = vec![
        "--events".to_owned(),
        "--spool-dir".to_owned(),
        path_str(dir.join("spool")),
        "--runtime-socket".to_owned(),
        path_str(containerd.socket()),
    ];
    let agent = match ForwardAgent::launch(&dir.join("out.json"), &rules, &args) {
        Ok(a) => a,
        Err(e) => {
            skip_or_fail(&e);
            return;
        }
    };
    let uid = random_uuid();
    let pod = containerd.run_pod(&PodSpec {
        name: "litellm-0",
        namespace: "inference",
        uid: &uid,
        labels: &[("app", "litellm")],
    });
    let id = containerd.run_container(
        &pod,
        "proxy",
        &["/bin/sh", "-c", "cat /proc/self/cgroup; exec sleep 60"],
    );
    let ev: Value = wait_until(
        TIMEOUT,
        "the proxy container's cat",
        || {
            agent.records().into_iter().find(|r| {
                r["kind"] == "exec" && r["container_id"] == id.as_str() && r["argv"][0] == "cat"
            })
        },
        || agent.stderr(),
    );
    let image = format!("docker.io/library/{}", busybox_image());
    assert_eq!(ev["container"]["id"], id.as_str(), "{ev}");
    assert_eq!(ev["container"]["name"], "proxy", "{ev}");
    assert_eq!(ev["container"]["image"], image.as_str(), "{ev}");
    assert!(
        ev["container"]["image_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:") || i.contains("@sha256:")),
        "{ev}"
    );
    assert_eq!(
        ev["pod"],
        json!({"uid": uid, "name": "litellm-0", "namespace": "inference",
               "labels": {"app": "litellm"}}),
        "{ev}"
    );
    assert_eq!(
        ev["pod_uid"],
        uid.as_str(),
        "the cgroup names the pod too: {ev}"
    );
    // The pod's profile selected the container's workload: cat is not in its exec list.
    let alert: Value = wait_until(
        TIMEOUT,
        "the profile's exec alert",
        || {
            agent.records().into_iter().find(|r| {
                r["kind"] == "alert"
                    && r["rule"] == "profile.exec"
                    && r["event"]["container_id"] == id.as_str()
                    && r["event"]["argv"][0] == "cat"
            })
        },
        || agent.stderr(),
    );
    assert_eq!(alert["profile"], "proxy");
    // The sandbox's own process (its pause) is named by its pod.
    let sandbox: Value = wait_until(
        TIMEOUT,
        "the sandbox's sleep",
        || {
            agent
                .records()
                .into_iter()
                .find(|r| r["kind"] == "exec" && r["container_id"] == pod.0.as_str())
        },
        || agent.stderr(),
    );
    assert_eq!(sandbox["pod"]["name"], "litellm-0", "{sandbox}");
    assert_eq!(sandbox["container"]["name"], Value::Null, "{sandbox}");
    drop(agent);
    drop(containerd);
}
