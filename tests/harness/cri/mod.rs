//! A real containerd with its CRI plugin, started by the test on its own socket, root and
//! state (not the machine's), and pods run through the CRI the way kubelet runs them: a pod
//! sandbox (host network, a cgroup parent in kubelet's cgroupfs layout under a directory
//! unique to the test) and containers in it, from images imported out of the local Docker
//! engine (nothing is pulled). Dropping it removes the pods, stops containerd by its pid and
//! removes the cgroups and directories it made.

mod proto;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use self::proto::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, CreateContainerResponse, Empty,
    IdRequest, ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, RunPodSandboxRequest, RunPodSandboxResponse,
};
use crate::{
    Proc, TempDir,
    docker::{busybox_image, docker, pause_image},
    path_str, random_hex, skip_or_fail,
};

/// How long containerd may take to serve its socket.
const START: Duration = Duration::from_secs(30);
/// NamespaceMode NODE: the host's network namespace (no CNI needed).
///
/// `restrict_oom_score_adj`: the CRI gives sandboxes an OOM score below the caller's, which
/// needs CAP_SYS_RESOURCE, and these machines' bounding set lacks it (as for docker's
/// `--privileged`).
const NODE: i32 = 2;

/// A containerd serving the CRI; see the module doc.
pub struct Containerd {
    dir: TempDir,
    socket: PathBuf,
    daemon: Option<Proc>,
    rt: tokio::runtime::Runtime,
    channel: Channel,
    /// `/<unique>`: the cgroup directory every pod's cgroups go under.
    cgroup_top: String,
    pods: Mutex<Vec<String>>,
}

/// A pod as kubelet describes it.
pub struct PodSpec<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
}

impl Containerd {
    /// Starts one; `None` (after saying so, failing under CI) when containerd is missing.
    pub fn start() -> Option<Self> {
        if !Path::new("/usr/bin/containerd").is_file() {
            skip_or_fail("no /usr/bin/containerd (Debian's containerd): the CRI is not tested");
            return None;
        }
        let dir = TempDir::new("containerd");
        let socket = dir.join("containerd.sock");
        let pause = format!("docker.io/library/{}", pause_image());
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{pause}\"\n\
             \x20 restrict_oom_score_adj = true\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\"\n",
            root = path_str(dir.join("root")),
            state = path_str(dir.join("state")),
            sock = path_str(&socket),
        );
        fs::write(dir.join("config.toml"), config).expect("containerd config");
        let daemon = Proc::spawn(
            Command::new("/usr/bin/containerd")
                .arg("--config")
                .arg(dir.join("config.toml")),
        );
        let deadline = Instant::now() + START;
        while UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "containerd did not serve {} within {START:?}: {}",
                socket.display(),
                daemon.stderr_so_far()
            );
            thread::sleep(Duration::from_millis(100));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the CRI client");
        let path = socket.clone();
        let channel = {
            let _guard = rt.enter();
            Endpoint::from_static("http://cri.invalid").connect_with_connector_lazy(
                tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    }
                }),
            )
        };
        let me = Self {
            dir,
            socket,
            daemon: Some(daemon),
            rt,
            channel,
            cgroup_top: format!("monitor-test-cri-{}", random_hex(6)),
            pods: Mutex::new(Vec::new()),
        };
        me.import_images();
        Some(me)
    }

    /// The CRI socket, for the agent's `--runtime-socket`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Imports the busybox and pause images from the Docker engine into containerd's
    /// Kubernetes namespace (`docker save` | `ctr images import`).
    fn import_images(&self) {
        let tar = path_str(self.dir.join("images.tar"));
        docker(&["save", "-o", &tar, busybox_image(), pause_image()]);
        let out = Command::new("/usr/bin/ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import", &tar])
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr images import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a pod sandbox the way kubelet does (host network, cgroupfs parent
    /// `/<unique>/kubepods/besteffort/pod<uid>`); returns its id and its config.
    pub fn run_pod(&self, spec: &PodSpec<'_>) -> (String, PodSandboxConfig) {
        let mut labels: BTreeMap<String, String> = spec
            .labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.insert("io.kubernetes.pod.name".into(), spec.name.into());
        labels.insert("io.kubernetes.pod.namespace".into(), spec.namespace.into());
        labels.insert("io.kubernetes.pod.uid".into(), spec.uid.into());
        let logs = self.dir.join(format!("logs-{}", spec.uid));
        fs::create_dir_all(&logs).expect("pod log directory");
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.into(),
                uid: spec.uid.into(),
                namespace: spec.namespace.into(),
                attempt: 0,
            }),
            // kubelet sets none for a host-network pod (runc refuses it without a UTS namespace).
            hostname: String::new(),
            log_directory: path_str(&logs),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/kubepods/besteffort/pod{}", self.cgroup_top, spec.uid),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                }),
            }),
        };
        let resp: RunPodSandboxResponse = self.call(
            "RunPodSandbox",
            RunPodSandboxRequest {
                config: Some(config.clone()),
            },
        );
        crate::launch::lock(&self.pods).push(resp.pod_sandbox_id.clone());
        (resp.pod_sandbox_id, config)
    }

    /// Creates and starts a container of the busybox image in the pod; returns its id.
    pub fn run_container(
        &self,
        pod: &(String, PodSandboxConfig),
        name: &str,
        command: &[&str],
    ) -> String {
        let meta = pod.1.metadata.clone().unwrap_or_default();
        let labels = BTreeMap::from([
            ("io.kubernetes.container.name".to_owned(), name.to_owned()),
            ("io.kubernetes.pod.name".to_owned(), meta.name),
            ("io.kubernetes.pod.namespace".to_owned(), meta.namespace),
            ("io.kubernetes.pod.uid".to_owned(), meta.uid),
        ]);
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: format!("docker.io/library/{}", busybox_image()),
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            labels,
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(host_network()),
                }),
            }),
        };
        let created: CreateContainerResponse = self.call(
            "CreateContainer",
            CreateContainerRequest {
                pod_sandbox_id: pod.0.clone(),
                config: Some(config),
                sandbox_config: Some(pod.1.clone()),
            },
        );
        let _: Empty = self.call(
            "StartContainer",
            IdRequest {
                id: created.container_id.clone(),
            },
        );
        created.container_id
    }

    /// One unary call of `runtime.v1.RuntimeService`, which must succeed.
    #[track_caller]
    fn call<Req, Resp>(&self, method: &str, req: Req) -> Resp
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.try_call(method, req)
            .unwrap_or_else(|e| panic!("CRI {method} failed: {e}"))
    }

    fn try_call<Req, Resp>(&self, method: &str, req: Req) -> Result<Resp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = format!("/runtime.v1.RuntimeService/{method}");
        let path = http::uri::PathAndQuery::try_from(path).map_err(|e| e.to_string())?;
        let channel = self.channel.clone();
        self.rt.block_on(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| e.to_string())?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(tonic::Request::new(req), path, codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    }

    /// Removes the cgroup directories runc made under the unique parent, in every hierarchy.
    fn remove_cgroups(&self) {
        let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for h in hierarchies.flatten() {
            let top = h.path().join(&self.cgroup_top);
            if top.is_dir() {
                remove_tree(&top);
            }
        }
    }
}

/// The host's network namespace, as for a `hostNetwork: true` pod.
fn host_network() -> NamespaceOption {
    NamespaceOption {
        network: NODE,
        pid: 1,
        ipc: 0,
    }
}

/// rmdir of a cgroup tree, deepest first (cgroup directories hold only control files).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        crate::warn(&format!("could not remove cgroup {}: {e}", dir.display()));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut *crate::launch::lock(&self.pods));
        for id in pods {
            for method in ["StopPodSandbox", "RemovePodSandbox"] {
                if let Err(e) =
                    self.try_call::<IdRequest, Empty>(method, IdRequest { id: id.clone() })
                {
                    crate::warn(&format!("CRI {method} {id}: {e}"));
                }
            }
        }
        if let Some(mut daemon) = self.daemon.take() {
            // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
            unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGTERM) };
            daemon.wait(Duration::from_secs(20));
        }
        self.remove_cgroups();
    }
}
