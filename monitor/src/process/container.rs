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
    // Outside the reader's cgroup namespace (an agent in a pod or container with a private
    // cgroup namespace reads `/../<id>` for a sibling container): the components that named
    // the runtime (`docker/`, `kubepods/`) may be cut off, so a pod directory counts without
    // `kubepods` above it, and a bare container id right below the `..`s is a container.
    let outside = path.trim_start_matches('/').starts_with("..");
    let mut in_kubepods = outside;
    let mut prev_is_pod = false;
    let mut prev_is_docker = false;
    let mut prev_is_up = outside;
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
            .map(|(id, runtime)| (id, Some(runtime)))
            .or_else(|| {
                let runtime = if prev_is_docker {
                    Some(RUNTIME_DOCKER)
                } else if prev_is_pod {
                    Some(RUNTIME_CONTAINERD)
                } else if prev_is_up {
                    // The runtime's name was above the namespace's root.
                    None
                } else {
                    return None;
                };
                is_container_id(comp).then_some((comp, runtime))
            });
        if let Some((id, runtime)) = container {
            identity.container_id = Some(id.to_owned());
            identity.runtime = runtime;
        }
        prev_is_pod = is_pod;
        prev_is_docker = comp == "docker";
        prev_is_up = false;
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
#[path = "container_tests.rs"]
mod tests;
