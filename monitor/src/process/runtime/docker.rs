//! Docker Engine API client: `GET /containers/{id}/json` over the engine's unix socket
//! (HTTP/1.1 with hyper). Containers that kubelet made through dockershim (or cri-dockerd)
//! carry the pod in `io.kubernetes.*` labels; the pod's own labels sit on its sandbox
//! container, named by `io.kubernetes.sandbox.id`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::{Found, LookupError, is_container_id};
use crate::identity::{ContainerMeta, PodMeta};

/// Largest inspect answer read (a container with very many labels or mounts stays far below).
const MAX_BODY: usize = 1 << 20;
/// Engine API version asked for: Docker 1.13 and later serve it.
const API: &str = "v1.25";

/// kubelet's labels on a container (dockershim, cri-dockerd).
const POD_NAME: &str = "io.kubernetes.pod.name";
const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const POD_UID: &str = "io.kubernetes.pod.uid";
const CONTAINER_NAME: &str = "io.kubernetes.container.name";
const SANDBOX_ID: &str = "io.kubernetes.sandbox.id";
/// `podsandbox` on a pod's sandbox container, whose other labels are the pod's labels.
const DOCKER_TYPE: &str = "io.kubernetes.docker.type";

/// The part of `GET /containers/{id}/json` used here.
#[derive(Debug, Deserialize)]
pub(super) struct Inspect {
    #[serde(rename = "Name", default)]
    name: String,
    /// The image's content id.
    #[serde(rename = "Image", default)]
    image_id: String,
    #[serde(rename = "Config", default)]
    config: Option<Config>,
}

#[derive(Debug, Default, Deserialize)]
struct Config {
    /// The image as given at creation.
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

impl Inspect {
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.config.as_ref()?.labels.as_ref()
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels()?.get(key).map(String::as_str)
    }

    /// The sandbox this container belongs to, when kubelet made it (a valid id only: labels
    /// are whatever the container's creator wrote).
    pub(super) fn sandbox_id(&self) -> Option<&str> {
        self.label(SANDBOX_ID).filter(|id| is_container_id(id))
    }

    fn is_sandbox(&self) -> bool {
        self.label(DOCKER_TYPE) == Some("podsandbox")
    }

    /// The pod's labels as a sandbox carries them: everything but kubelet's own
    /// (`io.kubernetes.*`) and the pod's annotations (`annotation.*`).
    fn pod_labels(&self) -> BTreeMap<String, String> {
        self.labels()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !k.starts_with("io.kubernetes.") && !k.starts_with("annotation."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// What the answers say: the container, and its pod when kubelet made it. `sandbox` is
    /// the inspect of [`Self::sandbox_id`], when it could be read.
    pub(super) fn found(&self, id: &str, sandbox: Option<&Inspect>) -> Found {
        let k8s = self.label(POD_NAME).is_some() || self.label(POD_UID).is_some();
        let name = self
            .label(CONTAINER_NAME)
            .map(str::to_owned)
            .or_else(|| Some(self.name.trim_start_matches('/').to_owned()))
            .filter(|n| !n.is_empty());
        let container = ContainerMeta {
            id: id.to_owned(),
            name,
            image: self
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .filter(|i| !i.is_empty()),
            image_id: Some(self.image_id.clone()).filter(|i| !i.is_empty()),
        };
        let pod = k8s.then(|| {
            let labels = if self.is_sandbox() {
                Some(self.pod_labels())
            } else {
                sandbox.map(Inspect::pod_labels)
            };
            PodMeta {
                uid: self.label(POD_UID).map(str::to_owned),
                name: self.label(POD_NAME).map(str::to_owned),
                namespace: self.label(POD_NAMESPACE).map(str::to_owned),
                labels,
            }
        });
        Found { container, pod }
    }
}

/// A client of one Docker engine.
#[derive(Clone, Debug)]
pub struct Docker {
    socket: PathBuf,
}

impl Docker {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// The container and its pod; `Ok(None)` when the engine does not know the id.
    pub async fn lookup(&self, id: &str, timeout: Duration) -> Result<Option<Found>, LookupError> {
        let Some(inspect) = self.inspect(id, timeout).await? else {
            return Ok(None);
        };
        let sandbox = match inspect.sandbox_id() {
            Some(sid) if sid != id => self.inspect(sid, timeout).await.ok().flatten(),
            _ => None,
        };
        Ok(Some(inspect.found(id, sandbox.as_ref())))
    }

    /// `GET /containers/{id}/json`; `None` on 404. `id` must be a container id (hex): it goes
    /// into the request path.
    pub(super) async fn inspect(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<Inspect>, LookupError> {
        if !is_container_id(id) {
            return Ok(None);
        }
        let body = tokio::time::timeout(timeout, self.get(&format!("/{API}/containers/{id}/json")))
            .await
            .map_err(|_| LookupError::Timeout(timeout))??;
        let Some(body) = body else { return Ok(None) };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| LookupError::Answer(format!("container {id}: {e}")))
    }

    /// One GET on a fresh connection: the body of a 200, `None` for a 404.
    async fn get(&self, path: &str) -> Result<Option<Bytes>, LookupError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| LookupError::Connect(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| LookupError::Connect(e.to_string()))?;
        // The connection is driven beside the request and ends with it (one request each).
        let driver = tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| LookupError::Answer(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| LookupError::Connect(e.to_string()));
        let result = match resp {
            Ok(resp) if resp.status() == http::StatusCode::NOT_FOUND => Ok(None),
            Ok(resp) if resp.status().is_success() => Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| Some(b.to_bytes()))
                .map_err(|e| LookupError::Answer(format!("reading the answer: {e}"))),
            Ok(resp) => Err(LookupError::Answer(format!("HTTP {}", resp.status()))),
            Err(e) => Err(e),
        };
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::Inspect;

    const APP: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const SANDBOX: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn inspect(json: serde_json::Value) -> Inspect {
        serde_json::from_value(json).expect("inspect")
    }

    #[test]
    fn a_plain_container_has_its_name_and_image_and_no_pod() {
        let i = inspect(serde_json::json!({
            "Id": APP, "Name": "/web", "Image": "sha256:abc",
            "Config": {"Image": "nginx:1.27", "Labels": {"maintainer": "x"}},
            "State": {"Pid": 42}
        }));
        let f = i.found(APP, None);
        assert_eq!(f.container.id, APP);
        assert_eq!(f.container.name.as_deref(), Some("web"));
        assert_eq!(f.container.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(f.container.image_id.as_deref(), Some("sha256:abc"));
        assert!(f.pod.is_none());
    }

    #[test]
    fn kubelet_labels_name_the_pod_and_the_sandbox_gives_its_labels() {
        let app = inspect(serde_json::json!({
            "Name": "/k8s_server_litellm-0_ai_uid_0", "Image": "sha256:img",
            "Config": {"Image": "litellm:1", "Labels": {
                "io.kubernetes.container.name": "server",
                "io.kubernetes.pod.name": "litellm-0",
                "io.kubernetes.pod.namespace": "ai",
                "io.kubernetes.pod.uid": "0f0e0d0c-0b0a-0908-0706-050403020100",
                "io.kubernetes.sandbox.id": SANDBOX,
            }}
        }));
        assert_eq!(app.sandbox_id(), Some(SANDBOX));
        let sandbox = inspect(serde_json::json!({
            "Name": "/k8s_POD_litellm-0_ai_uid_0", "Image": "sha256:pause",
            "Config": {"Image": "pause:3.9", "Labels": {
                "app": "litellm", "tier": "inference",
                "annotation.kubernetes.io/config.seen": "x",
                "io.kubernetes.docker.type": "podsandbox",
                "io.kubernetes.pod.name": "litellm-0",
            }}
        }));
        let f = app.found(APP, Some(&sandbox));
        assert_eq!(f.container.name.as_deref(), Some("server"));
        let pod = f.pod.expect("a pod");
        assert_eq!(pod.name.as_deref(), Some("litellm-0"));
        assert_eq!(pod.namespace.as_deref(), Some("ai"));
        assert_eq!(
            pod.uid.as_deref(),
            Some("0f0e0d0c-0b0a-0908-0706-050403020100")
        );
        let labels = pod.labels.expect("labels");
        assert_eq!(labels.len(), 2, "{labels:?}");
        assert_eq!(labels["app"], "litellm");
        // The sandbox itself: its own labels are the pod's.
        let own = sandbox.found(SANDBOX, None).pod.expect("pod");
        assert_eq!(own.labels.expect("labels")["tier"], "inference");
    }

    #[test]
    fn a_sandbox_id_that_is_not_an_id_is_ignored() {
        let app = inspect(serde_json::json!({
            "Config": {"Labels": {"io.kubernetes.sandbox.id": "../../info?x="}}
        }));
        assert_eq!(app.sandbox_id(), None);
        let f = app.found(APP, None);
        assert_eq!(f.container.name, None);
        assert_eq!(f.container.image, None);
    }
}
