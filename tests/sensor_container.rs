//! Container and pod identity end to end: the test builds the cgroup v2 layouts container
//! runtimes create, moves a child into the leaf and checks the identity on the child's events.

use std::process::Command;

use monitor_tests::{
    Agent, CgroupTree, TIMEOUT, cgroup_id, cgroup2_root, random_hex, random_uuid, skip_or_fail,
};
use serde_json::{Value, json};

/// Moves itself into the cgroup directory given as `$1`, then execs cat: that exec happens inside
/// the container's cgroup. cat prints the cgroup it runs in, which the test checks first. The
/// script text is fixed; the directory is an argument.
const ENTER_CGROUP_THEN_EXEC: &str =
    "echo $$ > \"$1/cgroup.procs\" && exec /bin/cat /proc/self/cgroup";

/// Runs a child inside `<cgroup v2 root>/monitor-test-.../<components>` and asserts the identity
/// on the exec and exit events of its `cat`.
fn assert_identity(components: &[&str], container_id: &str, pod_uid: Option<&str>) {
    let Some(agent) = Agent::start() else { return };
    let Some(root) = cgroup2_root() else {
        skip_or_fail(
            "no cgroup v2 hierarchy is mounted (no cgroup2 entry in /proc/self/mountinfo)",
        );
        return;
    };
    let tree = match CgroupTree::create(&root, components) {
        Ok(tree) => tree,
        Err(e) => {
            skip_or_fail(&format!(
                "cannot create test cgroups under {} ({e}), so container identity is not tested",
                root.display()
            ));
            return;
        }
    };
    let scope_id = match cgroup_id(tree.leaf()) {
        Ok(id) => id,
        Err(e) => panic!("cannot stat {}: {e}", tree.leaf().display()),
    };

    let mut child = agent.spawn(
        Command::new("/bin/sh")
            .args(["-c", ENTER_CGROUP_THEN_EXEC, "sh"])
            .arg(tree.leaf()),
    );
    let printed = child.finish_ok(TIMEOUT);
    let pid = child.pid();
    let relative = tree.leaf().strip_prefix(&root).unwrap_or(tree.leaf());
    assert!(
        printed.contains(&format!("0::/{}\n", relative.display())),
        "the child did not run in {} but in:\n{printed}",
        tree.leaf().display()
    );

    let identity = json!({
        "pid": pid,
        "cgroup_id": scope_id,
        "container_id": container_id,
        "pod_uid": pod_uid.map_or(Value::Null, |p| json!(p)),
    });
    let exec = agent.wait_for(TIMEOUT, |ev| {
        ev["kind"] == "exec" && ev["pid"] == pid && ev["filename"] == "/bin/cat"
    });
    let mut expected = identity.clone();
    expected["argv"] = json!(["/bin/cat", "/proc/self/cgroup"]);
    agent.assert_event(&exec, &expected);

    let exit = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "exit" && ev["pid"] == pid);
    let mut expected = identity;
    expected["exit_code"] = json!(0);
    agent.assert_event(&exit, &expected);
    // `tree` is dropped here, after the child exited: the cgroups are removed bottom-up.
}

/// [`assert_identity`] for a pod's container as the kubelet's systemd cgroup driver lays it out:
/// `kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid>.slice/<runtime>-<id>.scope`
/// (guaranteed pods have no QoS slice).
fn assert_pod_identity(qos: Option<&str>, runtime: &str) {
    let container_id = random_hex(32);
    let pod_uid = random_uuid();
    let qos_slice = qos.map(|qos| format!("kubepods-{qos}.slice"));
    let pod_prefix = qos.map_or_else(|| "kubepods".to_owned(), |qos| format!("kubepods-{qos}"));
    let pod_slice = format!("{pod_prefix}-pod{}.slice", pod_uid.replace('-', "_"));
    let scope = format!("{runtime}-{container_id}.scope");
    let mut components = vec!["kubepods.slice"];
    components.extend(qos_slice.as_deref());
    components.extend([pod_slice.as_str(), scope.as_str()]);
    assert_identity(&components, &container_id, Some(&pod_uid));
}

#[test]
fn containerd_pod_in_a_besteffort_slice_is_identified() {
    assert_pod_identity(Some("besteffort"), "cri-containerd");
}

#[test]
fn crio_pod_in_a_burstable_slice_is_identified() {
    assert_pod_identity(Some("burstable"), "crio");
}

#[test]
fn guaranteed_pod_without_a_qos_slice_is_identified() {
    assert_pod_identity(None, "cri-containerd");
}

#[test]
fn docker_container_outside_kubernetes_has_no_pod() {
    let container_id = random_hex(32);
    let scope = format!("docker-{container_id}.scope");
    assert_identity(&["system.slice", &scope], &container_id, None);
}
