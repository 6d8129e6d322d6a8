use super::{
    ContainerIdentity, RUNTIME_CONTAINERD, RUNTIME_CRIO, RUNTIME_DOCKER, RUNTIME_PODMAN,
    from_cgroup_path, from_proc_cgroup,
};

const ID: &str = "4d6d7f0a3c2b1e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f";
const ID2: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const POD: &str = "0f4c8e22-1b6a-4d1a-9f37-1c5d2b1e7a11";
const POD_: &str = "0f4c8e22_1b6a_4d1a_9f37_1c5d2b1e7a11";

fn container(id: &str, pod: Option<&str>, runtime: &'static str) -> ContainerIdentity {
    ContainerIdentity {
        container_id: Some(id.to_owned()),
        pod_uid: pod.map(str::to_owned),
        runtime: Some(runtime),
    }
}

fn pod_only(pod: &str) -> ContainerIdentity {
    ContainerIdentity {
        pod_uid: Some(pod.to_owned()),
        ..ContainerIdentity::default()
    }
}

#[test]
fn docker_cgroupfs_and_systemd() {
    let want = container(ID, None, RUNTIME_DOCKER);
    assert_eq!(from_cgroup_path(&format!("/docker/{ID}")), want);
    assert_eq!(
        from_cgroup_path(&format!("/system.slice/docker-{ID}.scope")),
        want
    );
    // systemd running inside the container (cgroup v2, nested cgroups).
    assert_eq!(
        from_cgroup_path(&format!("/system.slice/docker-{ID}.scope/init.scope")),
        want
    );
    // dockershim (Kubernetes < 1.24) with the systemd driver.
    let path = format!(
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/\
         docker-{ID}.scope"
    );
    assert_eq!(
        from_cgroup_path(&path),
        container(ID, Some(POD), RUNTIME_DOCKER)
    );
    // Docker in docker: the innermost container.
    assert_eq!(
        from_cgroup_path(&format!("/docker/{ID2}/docker/{ID}")),
        want
    );
}

#[test]
fn containerd_systemd_driver() {
    let path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice/\
         cri-containerd-{ID}.scope"
    );
    assert_eq!(
        from_cgroup_path(&path),
        container(ID, Some(POD), RUNTIME_CONTAINERD)
    );
    let guaranteed = format!("/kubepods.slice/kubepods-pod{POD_}.slice/cri-containerd-{ID}.scope");
    assert_eq!(
        from_cgroup_path(&guaranteed),
        container(ID, Some(POD), RUNTIME_CONTAINERD)
    );
}

#[test]
fn containerd_cgroupfs_driver() {
    for qos in ["besteffort/", "burstable/", ""] {
        let path = format!("/kubepods/{qos}pod{POD}/{ID}");
        assert_eq!(
            from_cgroup_path(&path),
            container(ID, Some(POD), RUNTIME_CONTAINERD),
            "{path}"
        );
    }
}

#[test]
fn containerd_colon_form_and_nerdctl() {
    let path = format!(
        "/system.slice/containerd.service/kubepods-besteffort-pod{POD_}.slice:cri-containerd:{ID}"
    );
    assert_eq!(
        from_cgroup_path(&path),
        container(ID, Some(POD), RUNTIME_CONTAINERD)
    );
    assert_eq!(
        from_cgroup_path(&format!("/system.slice/nerdctl-{ID}.scope")),
        container(ID, None, RUNTIME_CONTAINERD)
    );
}

#[test]
fn crio_scopes_and_conmon() {
    let pod_slice =
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice");
    let want = container(ID, Some(POD), RUNTIME_CRIO);
    assert_eq!(
        from_cgroup_path(&format!("{pod_slice}/crio-{ID}.scope")),
        want
    );
    // crun on cgroup v2 moves the payload into a `container` sub-cgroup.
    assert_eq!(
        from_cgroup_path(&format!("{pod_slice}/crio-{ID}.scope/container")),
        want
    );
    // conmon belongs to the pod, not to the container it monitors.
    assert_eq!(
        from_cgroup_path(&format!("{pod_slice}/crio-conmon-{ID}.scope")),
        pod_only(POD)
    );
    // cgroupfs driver.
    assert_eq!(
        from_cgroup_path(&format!("/kubepods/besteffort/pod{POD}/crio-{ID}")),
        want
    );
    assert_eq!(
        from_cgroup_path(&format!("/kubepods/besteffort/pod{POD}/crio-conmon-{ID}")),
        pod_only(POD)
    );
}

#[test]
fn podman_scopes_and_conmon() {
    let user = "/user.slice/user-1000.slice/user@1000.service/user.slice";
    let want = container(ID, None, RUNTIME_PODMAN);
    assert_eq!(from_cgroup_path(&format!("{user}/libpod-{ID}.scope")), want);
    assert_eq!(
        from_cgroup_path(&format!("/machine.slice/libpod-{ID}.scope/container")),
        want
    );
    assert_eq!(
        from_cgroup_path(&format!("/libpod_parent/libpod-{ID}")),
        want
    );
    assert!(from_cgroup_path(&format!("{user}/libpod-conmon-{ID}.scope")).is_empty());
    assert!(from_cgroup_path(&format!("/machine.slice/libpod-conmon-{ID}.scope")).is_empty());
}

#[test]
fn pod_without_container() {
    let path =
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_}.slice");
    assert_eq!(from_cgroup_path(&path), pod_only(POD));
    assert_eq!(
        from_cgroup_path(&format!("/kubepods/pod{POD}")),
        pod_only(POD)
    );
    // QoS slices alone are no pod.
    assert!(from_cgroup_path("/kubepods.slice/kubepods-burstable.slice").is_empty());
    assert!(from_cgroup_path("/kubepods/besteffort").is_empty());
}

#[test]
fn host_paths_are_no_container() {
    for path in [
        "/",
        "",
        "/process_api/b3fd66a0858e6536c18cb42168d1e631",
        "/user.slice/user-1000.slice/session-3.scope",
        "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome.scope",
        "/system.slice/docker.service",
        "/system.slice/containerd.service",
        "/init.scope",
        // A 64-hex name that no runtime placed there.
        &format!("/actions_job/{ID}"),
        &format!("/{ID}"),
        // `pod<uid>` outside kubepods is some other tool's naming.
        &format!("/system.slice/pod{POD}"),
    ] {
        assert_eq!(
            from_cgroup_path(path),
            ContainerIdentity::default(),
            "{path:?}"
        );
    }
}

#[test]
fn malformed_ids_are_rejected() {
    let upper = ID.to_uppercase();
    let short = &ID[..63];
    let long = format!("{ID}0");
    let not_hex = format!("{}g", &ID[..63]);
    for bad in [upper.as_str(), short, long.as_str(), not_hex.as_str()] {
        for path in [
            format!("/docker/{bad}"),
            format!("/system.slice/docker-{bad}.scope"),
            format!("/kubepods/besteffort/pod{POD}/{bad}"),
            format!("/machine.slice/libpod-{bad}.scope"),
        ] {
            assert_eq!(from_cgroup_path(&path).container_id, None, "{path}");
        }
    }
    for bad_pod in [
        "0f4c8e22-1b6a-4d1a-9f37-1c5d2b1e7a1",   // 35 chars
        "0f4c8e22-1b6a-4d1a-9f37-1c5d2b1e7a111", // 37 chars
        "0F4C8E22-1B6A-4D1A-9F37-1C5D2B1E7A11",  // upper case
        "0f4c8e221b6a-4d1a-9f37-1c5d2b1e7a11-",  // dashes misplaced
        "5f8b5c6d1a2e3f4a5b6c7d8e9f0a1b2c",      // static-pod config hash
    ] {
        assert_eq!(
            from_cgroup_path(&format!("/kubepods/pod{bad_pod}")),
            ContainerIdentity::default()
        );
        let underscored = bad_pod.replace('-', "_");
        assert_eq!(
            from_cgroup_path(&format!("/kubepods.slice/kubepods-pod{underscored}.slice")),
            ContainerIdentity::default()
        );
    }
}

#[test]
fn proc_cgroup_v1_docker() {
    let text = format!(
        "12:pids:/docker/{ID}\n11:hugetlb:/docker/{ID}\n10:net_cls,net_prio:/docker/{ID}\n\
         4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n"
    );
    assert_eq!(from_proc_cgroup(&text), container(ID, None, RUNTIME_DOCKER));
}

#[test]
fn proc_cgroup_v2_kubernetes() {
    let text = format!(
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/\
         cri-containerd-{ID}.scope\n"
    );
    assert_eq!(
        from_proc_cgroup(&text),
        container(ID, Some(POD), RUNTIME_CONTAINERD)
    );
}

#[test]
fn proc_cgroup_hybrid_picks_first_identity() {
    // Hybrid host: v1 controllers at the root (e.g. a sandbox cgroup), identity only in the
    // systemd and unified hierarchies.
    let text = format!(
        "9:name=systemd:/system.slice/docker-{ID}.scope\n\
         8:pids:/\n\
         4:memory:/process_api/e46be316e8ad065d52171703227727ee\n\
         0::/system.slice/docker-{ID}.scope\n"
    );
    assert_eq!(from_proc_cgroup(&text), container(ID, None, RUNTIME_DOCKER));
    let text = format!(
        "4:memory:/process_api/e46be316e8ad065d52171703227727ee\n\
         1:cpu:/\n\
         0::/kubepods/burstable/pod{POD}/{ID2}\n"
    );
    assert_eq!(
        from_proc_cgroup(&text),
        container(ID2, Some(POD), RUNTIME_CONTAINERD)
    );
    // The first line that yields an identity wins, even if a later one differs.
    let text = format!("3:cpu:/docker/{ID}\n0::/docker/{ID2}\n");
    assert_eq!(from_proc_cgroup(&text).container_id.as_deref(), Some(ID));
}

#[test]
fn proc_cgroup_host_and_malformed() {
    let host = "9:name=systemd:/\n8:pids:/\n\
                4:memory:/process_api/e46be316e8ad065d52171703227727ee\n0::/\n";
    assert!(from_proc_cgroup(host).is_empty());
    assert!(from_proc_cgroup("").is_empty());
    assert!(from_proc_cgroup(&format!("garbage\n/docker/{ID}\n")).is_empty());
    // A path containing ':' (the systemd fallback form) survives line splitting.
    let text = format!("0::/system.slice/containerd.service/kubepods-pod{POD_}.slice:crio:{ID}\n");
    assert_eq!(
        from_proc_cgroup(&text),
        container(ID, Some(POD), RUNTIME_CRIO)
    );
}

#[test]
fn paths_outside_the_cgroup_namespace() {
    let path = format!("/../../kubepods/besteffort/pod{POD}/{ID}");
    assert_eq!(
        from_cgroup_path(&path),
        container(ID, Some(POD), RUNTIME_CONTAINERD)
    );
}

#[test]
fn a_sibling_container_seen_from_a_private_cgroup_namespace() {
    // docker's cgroupfs driver, read from another container: `/docker/` is above the root.
    let seen = from_cgroup_path(&format!("/../{ID}"));
    assert_eq!(seen.container_id.as_deref(), Some(ID));
    assert_eq!(seen.runtime, None);
    assert_eq!(seen.pod_uid, None);
    // A pod of another QoS class, read from a pod: `kubepods/` is above the root.
    assert_eq!(
        from_cgroup_path(&format!("/../../../burstable/pod{POD}/{ID}")),
        container(ID, Some(POD), RUNTIME_CONTAINERD)
    );
    // Below the root (no `..`), a bare id still needs its runtime's directory above it.
    assert!(from_cgroup_path(&format!("/{ID}")).is_empty());
    assert!(from_cgroup_path(&format!("/x/{ID}")).is_empty());
    // The reader's own cgroup and its parent name nothing.
    assert!(from_cgroup_path("/").is_empty());
    assert!(from_cgroup_path("/..").is_empty());
    // An id deeper than right below the `..`s needs a runtime name too.
    assert!(from_cgroup_path(&format!("/../x/{ID}")).is_empty());
}
