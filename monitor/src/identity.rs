//! Who a workload is to a responder: the container (name, image) and the Kubernetes pod
//! (name, namespace, labels) a process runs in, as its container runtime names them. Events
//! and alerts carry them beside the ids read from cgroups (`container_id`, `pod_uid`);
//! profiles and detections select on them. Filled by `process::runtime`.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

/// `container` of an event: the id from the cgroup, the rest from the runtime (null when the
/// runtime could not say).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub id: String,
    /// The container's name: the Kubernetes container name (`io.kubernetes.container.name`)
    /// when kubelet made it, else the runtime's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The image as the container was created from it (`registry/repo:tag`).
    #[serde(default)]
    pub image: Option<String>,
    /// The image's content id (`sha256:...`).
    #[serde(default)]
    pub image_id: Option<String>,
}

/// `pod` of an event: the UID from the cgroup (or the runtime's labels), the rest from the
/// runtime's `io.kubernetes.*` labels and the pod sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMeta {
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// The pod's labels; `None` when the runtime did not say (an empty map when it said none).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// The container and pod of a process, shared (events of one container point at one copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    pub container: Option<Arc<ContainerMeta>>,
    pub pod: Option<Arc<PodMeta>>,
}

impl Workload {
    /// What the runtime said nothing about: the ids only.
    pub fn ids_only(container_id: Option<&str>, pod_uid: Option<&str>) -> Self {
        Self {
            container: container_id.map(|id| {
                Arc::new(ContainerMeta {
                    id: id.to_owned(),
                    ..ContainerMeta::default()
                })
            }),
            pod: pod_uid.map(|uid| {
                Arc::new(PodMeta {
                    uid: Some(uid.to_owned()),
                    ..PodMeta::default()
                })
            }),
        }
    }

    /// Whether the runtime named the container (not only its id).
    pub fn is_known(&self) -> bool {
        self.container
            .as_ref()
            .is_some_and(|c| c.name.is_some() || c.image.is_some())
    }
}
