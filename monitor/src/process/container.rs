//! Container and Kubernetes pod identity, read from cgroup paths.
//!
//! Container runtimes put each container in its own cgroup and name it after the container id;
//! the kubelet puts each pod in a cgroup named after the pod UID. The names depend on the cgroup
//! driver (systemd or cgroupfs), not on the cgroup version, so the same rules serve v1 and v2:
//!
//! | runtime, driver          | cgroup path (last components)                                    |
//! |--------------------------|------------------------------------------------------------------|
//! | docker, cgroupfs         | `/docker/<id>`                                                   |
//! | docker, systemd          | `/system.slice/docker-<id>.scope`                                |
//! | containerd CRI, systemd  | `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/cri-containerd-<id>.scope` |
//! | containerd CRI, cgroupfs | `/kubepods/<qos>/pod<uid>/<id>`                                  |
//! | containerd, systemd (v1 fallback) | `.../kubepods-<qos>-pod<uid_>.slice:cri-containerd:<id>` |
//! | nerdctl, systemd         | `/system.slice/nerdctl-<id>.scope`                               |
//! | cri-o, systemd           | `.../kubepods-<qos>-pod<uid_>.slice/crio-<id>.scope[/container]` |
//! | cri-o, cgroupfs          | `/kubepods/<qos>/pod<uid>/crio-<id>`                             |
//! | podman, systemd          | `/user.slice/.../libpod-<id>.scope[/container]`                  |
//! | podman, cgroupfs         | `/libpod_parent/libpod-<id>`                                     |
//!
//! `<id>` must be 64 lowercase hex digits and `<uid>` a 36-character lowercase UUID; `<uid_>`
//! is the UUID with `_` for `-` (systemd uses `-` as its hierarchy separator). The monitor
//! processes of cri-o and podman (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`) are not
//! the container and are not reported as it.
//!
//! A bare 64-hex directory directly below a kubepods `pod<uid>` directory is reported as
//! containerd: that is the cgroupfs layout containerd uses, but dockershim (Kubernetes < 1.24
//! with docker) used the same layout, so on such old clusters the runtime label is a guess.
//! Static pods get a 32-hex config hash instead of a UUID as their UID; those pod UIDs are not
//! reported.

use serde::Serialize;

/// Runtime label for Docker (moby).
pub const RUNTIME_DOCKER: &str = "docker";
/// Runtime label for containerd (Kubernetes CRI or nerdctl).
pub const RUNTIME_CONTAINERD: &str = "containerd";
/// Runtime label for CRI-O.
pub const RUNTIME_CRIO: &str = "cri-o";
/// Runtime label for Podman (libpod).
pub const RUNTIME_PODMAN: &str = "podman";

/// The container and pod a process runs in, as far as its cgroup path tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContainerIdentity {
    /// Full 64-hex container id.
    pub container_id: Option<String>,
    /// Kubernetes pod UID, in its usual dashed form.
    pub pod_uid: Option<String>,
    /// Which runtime named the container cgroup (one of the `RUNTIME_*` labels).
    pub runtime: Option<&'static str>,
}

impl ContainerIdentity {
    /// True when neither a container nor a pod was recognised (a host process).
    pub fn is_empty(&self) -> bool {
        self.container_id.is_none() && self.pod_uid.is_none()
    }
}

/// Systemd scope (or cgroupfs directory) prefixes that name a container cgroup.
const SCOPE_PREFIXES: [(&str, &str); 5] = [
    ("docker-", RUNTIME_DOCKER),
    ("cri-containerd-", RUNTIME_CONTAINERD),
    ("nerdctl-", RUNTIME_CONTAINERD),
    ("crio-", RUNTIME_CRIO),
    ("libpod-", RUNTIME_PODMAN),
];

/// Runtime names in the `slice:runtime:id` form the systemd cgroup driver falls back to.
const COLON_RUNTIMES: [(&str, &str); 4] = [
    ("cri-containerd", RUNTIME_CONTAINERD),
    ("crio", RUNTIME_CRIO),
    ("docker", RUNTIME_DOCKER),
    ("libpod", RUNTIME_PODMAN),
];

/// Identity from one cgroup path such as `/system.slice/docker-<id>.scope`.
///
/// The path may be absolute, relative, or start with `/..` components (as `/proc/<pid>/cgroup`
/// shows for processes outside the reader's cgroup namespace). When containers are nested
/// (docker in docker), the innermost container is reported.
pub fn from_cgroup_path(path: &str) -> ContainerIdentity {
    let mut identity = ContainerIdentity::default();
    let mut in_kubepods = false;
    let mut prev_is_pod = false;
    let mut prev_is_docker = false;
    for comp in path
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
    {
        if comp == "kubepods" || comp.starts_with("kubepods.") || comp.starts_with("kubepods-") {
            in_kubepods = true;
        }
        // Pod: systemd slice name (possibly before a `:runtime:id` suffix) or cgroupfs `pod<uid>`.
        let slice = comp.split(':').next().unwrap_or(comp);
        let pod = systemd_pod_uid(slice).or_else(|| {
            in_kubepods
                .then(|| comp.strip_prefix("pod").filter(|u| is_pod_uid(u)))
                .flatten()
                .map(str::to_owned)
        });
        let is_pod = pod.is_some();
        if let Some(uid) = pod {
            identity.pod_uid = Some(uid);
        }
        let container = scope_container(comp)
            .or_else(|| colon_container(comp))
            .or_else(|| {
                let runtime = if prev_is_docker {
                    RUNTIME_DOCKER
                } else if prev_is_pod {
                    RUNTIME_CONTAINERD
                } else {
                    return None;
                };
                is_container_id(comp).then_some((comp, runtime))
            });
        if let Some((id, runtime)) = container {
            identity.container_id = Some(id.to_owned());
            identity.runtime = Some(runtime);
        }
        prev_is_pod = is_pod;
        prev_is_docker = comp == "docker";
    }
    identity
}

/// Identity from the text of `/proc/<pid>/cgroup`.
///
/// Lines are `hierarchy-id:controllers:path`: cgroup v1 lines like `4:memory:/docker/<id>`,
/// the v2 line `0::/system.slice/...`, or both on hybrid hosts. The first line that yields a
/// container or a pod wins; malformed lines are skipped.
pub fn from_proc_cgroup(content: &str) -> ContainerIdentity {
    content
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _hierarchy = fields.next()?;
            let _controllers = fields.next()?;
            fields.next()
        })
        .map(from_cgroup_path)
        .find(|identity| !identity.is_empty())
        .unwrap_or_default()
}

/// `docker-<id>.scope`, `crio-<id>`, ... (the `.scope` suffix is optional: cgroupfs drivers
/// use the bare name). Conmon scopes are rejected.
fn scope_container(comp: &str) -> Option<(&str, &'static str)> {
    let name = comp.strip_suffix(".scope").unwrap_or(comp);
    SCOPE_PREFIXES.iter().find_map(|&(prefix, runtime)| {
        let rest = name.strip_prefix(prefix)?;
        // `crio-conmon-<id>` / `libpod-conmon-<id>` hold the monitor process, not the container.
        if rest.starts_with("conmon-") {
            return None;
        }
        is_container_id(rest).then_some((rest, runtime))
    })
}

/// `kubepods-besteffort-pod<uid_>.slice:cri-containerd:<id>`: the name runc gives a container
/// cgroup when the systemd driver cannot create a scope for it.
fn colon_container(comp: &str) -> Option<(&str, &'static str)> {
    let mut parts = comp.split(':');
    let (_slice, name, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_container_id(id) {
        return None;
    }
    let &(_, runtime) = COLON_RUNTIMES.iter().find(|(n, _)| *n == name)?;
    Some((id, runtime))
}

/// Pod UID from a systemd kubepods slice: `kubepods-pod<uid_>.slice`,
/// `kubepods-burstable-pod<uid_>.slice`, `kubepods-besteffort-pod<uid_>.slice`.
fn systemd_pod_uid(comp: &str) -> Option<String> {
    let name = comp.strip_prefix("kubepods-")?.strip_suffix(".slice")?;
    let (_, uid) = name.rsplit_once("pod")?;
    let uid = uid.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// 64 lowercase hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

/// A lowercase UUID: 8-4-4-4-12 hex digits.
fn is_pod_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => is_lower_hex(b),
        })
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

#[cfg(test)]
mod tests {
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
        let guaranteed =
            format!("/kubepods.slice/kubepods-pod{POD_}.slice/cri-containerd-{ID}.scope");
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
        let pod_slice = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice"
        );
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
        let text =
            format!("0::/system.slice/containerd.service/kubepods-pod{POD_}.slice:crio:{ID}\n");
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
}
