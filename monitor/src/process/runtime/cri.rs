//! CRI client (containerd, CRI-O): the runtime API kubelet itself speaks, over gRPC on the
//! runtime's unix socket (tonic). Two read-only calls: `ListContainers` filtered by id (the
//! container: name, image, kubelet's `io.kubernetes.*` labels, its pod sandbox) and
//! `PodSandboxStatus` (the pod: name, namespace, UID, labels). An id that names a pod sandbox
//! itself (its pause process) gets the pod and no container name.
//!
//! The messages are the subset of `runtime.v1` (k8s.io/cri-api) these calls use, declared
//! with prost's derive and the field numbers of the published proto. Why not the `k8s-cri`
//! crate: it compiles the whole proto at build time and so needs `protoc` installed to build
//! the agent, for two calls; unknown fields of the answers are skipped by prost.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Found, LookupError, is_container_id};
use crate::identity::{ContainerMeta, PodMeta};

/// kubelet's labels on a CRI container.
const CONTAINER_NAME: &str = "io.kubernetes.container.name";

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ContainerFilter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerFilter {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<Container>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<ImageSpec>,
    #[prost(string, tag = "5")]
    pub image_ref: String,
    #[prost(btree_map = "string, string", tag = "8")]
    pub labels: BTreeMap<String, String>,
    #[prost(string, tag = "10")]
    pub image_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
    #[prost(string, tag = "18")]
    pub user_specified_image: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(btree_map = "string, string", tag = "7")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
}

/// Pause between asking again about an unknown id in a pod.
const SANDBOX_RETRY: Duration = Duration::from_millis(100);

const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";
const POD_SANDBOX_STATUS: &str = "/runtime.v1.RuntimeService/PodSandboxStatus";

/// A client of one CRI runtime.
#[derive(Clone, Debug)]
pub struct Cri {
    socket: PathBuf,
    channel: Channel,
}

impl Cri {
    /// A client that connects on first use (and again after a failure).
    pub fn new(socket: PathBuf) -> Self {
        let path = socket.clone();
        // The URI is a placeholder: the connector dials the unix socket.
        let channel = Endpoint::from_static("http://cri.invalid").connect_with_connector_lazy(
            tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }),
        );
        Self { socket, channel }
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The container (or pod sandbox) and its pod; `Ok(None)` when the runtime does not know
    /// the id. `in_pod`: an unknown id is asked again until `timeout` (a starting sandbox).
    pub async fn lookup(
        &self,
        id: &str,
        in_pod: bool,
        timeout: Duration,
    ) -> Result<Option<Found>, LookupError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self.lookup_once(id, timeout).await?;
            let again = tokio::time::Instant::now() + SANDBOX_RETRY;
            if found.is_some() || !in_pod || again >= deadline {
                return Ok(found);
            }
            tokio::time::sleep_until(again).await;
        }
    }

    async fn lookup_once(&self, id: &str, timeout: Duration) -> Result<Option<Found>, LookupError> {
        if !is_container_id(id) {
            return Ok(None);
        }
        let call = async {
            let list: ListContainersResponse = self
                .unary(
                    LIST_CONTAINERS,
                    ListContainersRequest {
                        filter: Some(ContainerFilter { id: id.to_owned() }),
                    },
                )
                .await?
                .ok_or_else(|| LookupError::Answer("ListContainers: no answer".into()))?;
            let container = list.containers.into_iter().find(|c| c.id == id);
            let sandbox_id = match &container {
                Some(c) => c.pod_sandbox_id.clone(),
                None => id.to_owned(),
            };
            let pod = match is_container_id(&sandbox_id) {
                true => self.pod(&sandbox_id).await?,
                false => None,
            };
            Ok::<_, LookupError>(match (container, pod) {
                (Some(c), pod) => Some(found(id, &c, pod)),
                (None, Some(pod)) => Some(Found {
                    container: ContainerMeta {
                        id: id.to_owned(),
                        ..ContainerMeta::default()
                    },
                    pod: Some(pod),
                }),
                (None, None) => None,
            })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| LookupError::Timeout(timeout))?
    }

    /// The pod of a sandbox id; `None` when it is not one.
    async fn pod(&self, sandbox_id: &str) -> Result<Option<PodMeta>, LookupError> {
        let status: Option<PodSandboxStatusResponse> = self
            .unary(
                POD_SANDBOX_STATUS,
                PodSandboxStatusRequest {
                    pod_sandbox_id: sandbox_id.to_owned(),
                },
            )
            .await?;
        Ok(status.and_then(|s| s.status).map(pod_meta))
    }

    /// One unary call; `None` when the runtime answers NotFound.
    async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        req: Req,
    ) -> Result<Option<Resp>, LookupError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| LookupError::Connect(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = http::uri::PathAndQuery::from_static(path);
        match grpc.unary(tonic::Request::new(req), path, codec).await {
            Ok(resp) => Ok(Some(resp.into_inner())),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                Err(LookupError::Connect(s.message().to_owned()))
            }
            Err(s) => Err(LookupError::Answer(format!(
                "{:?}: {}",
                s.code(),
                s.message()
            ))),
        }
    }
}

/// A container as the CRI lists it, with its pod.
fn found(id: &str, c: &Container, pod: Option<PodMeta>) -> Found {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let image = c
        .image
        .as_ref()
        .and_then(|i| non_empty(&i.user_specified_image).or_else(|| non_empty(&i.image)));
    let name = c
        .labels
        .get(CONTAINER_NAME)
        .cloned()
        .or_else(|| c.metadata.as_ref().and_then(|m| non_empty(&m.name)));
    Found {
        container: ContainerMeta {
            id: id.to_owned(),
            name,
            image,
            image_id: non_empty(&c.image_ref).or_else(|| non_empty(&c.image_id)),
        },
        pod,
    }
}

/// A pod as its sandbox's status gives it: the pod's labels are the sandbox's, less kubelet's
/// own (`io.kubernetes.*`).
fn pod_meta(s: PodSandboxStatus) -> PodMeta {
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let m = s.metadata.unwrap_or_default();
    PodMeta {
        uid: non_empty(m.uid),
        name: non_empty(m.name),
        namespace: non_empty(m.namespace),
        labels: Some(
            s.labels
                .into_iter()
                .filter(|(k, _)| !k.starts_with("io.kubernetes."))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message as _;

    use super::{
        Container, ContainerMetadata, ImageSpec, PodSandboxMetadata, PodSandboxStatus, found,
        pod_meta,
    };

    #[test]
    fn a_cri_container_and_its_sandbox_name_the_pod() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let c = Container {
            id: "c".repeat(64),
            pod_sandbox_id: "s".repeat(64),
            metadata: Some(ContainerMetadata {
                name: "meta-name".into(),
            }),
            image: Some(ImageSpec {
                image: "sha256:abcd".into(),
                user_specified_image: "ghcr.io/berriai/litellm:main".into(),
            }),
            image_ref: "ghcr.io/berriai/litellm@sha256:abcd".into(),
            labels: labels(&[("io.kubernetes.container.name", "proxy")]),
            image_id: String::new(),
        };
        // What goes over the wire comes back the same (field numbers are the proto's).
        let again = Container::decode(c.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(again, c);
        let pod = pod_meta(PodSandboxStatus {
            id: "s".repeat(64),
            metadata: Some(PodSandboxMetadata {
                name: "litellm-0".into(),
                uid: "0f0e0d0c-0b0a-0908-0706-050403020100".into(),
                namespace: "ai".into(),
            }),
            labels: labels(&[("app", "litellm"), ("io.kubernetes.pod.name", "litellm-0")]),
        });
        let f = found(&c.id, &c, Some(pod));
        assert_eq!(f.container.name.as_deref(), Some("proxy"));
        assert_eq!(
            f.container.image.as_deref(),
            Some("ghcr.io/berriai/litellm:main")
        );
        assert_eq!(
            f.container.image_id.as_deref(),
            Some("ghcr.io/berriai/litellm@sha256:abcd")
        );
        let pod = f.pod.expect("pod");
        assert_eq!(pod.namespace.as_deref(), Some("ai"));
        assert_eq!(pod.labels.expect("labels"), labels(&[("app", "litellm")]));
    }
}
