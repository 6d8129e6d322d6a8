//! Container runtime identity: asks the runtime about each container id the cgroups name, so
//! events and alerts say which container, image and pod they come from
//! ([`crate::identity`]).
//!
//! - [`docker`]: the Docker Engine API client (kubelet's dockershim/cri-dockerd labels name
//!   the pod).
//! - [`cache`]: the bounded cache the process stage reads, and the events it holds back while
//!   a new container's answer is on its way.
//!
//! Lookups never block the event pipeline: they run in their own task ([`spawn`]), one
//! request per new container id. Events of a container whose answer is pending wait beside
//! the pipeline (bounded in number; a lookup answers within [`LOOKUP_TIMEOUT`]), so that the
//! exec that starts a container's workload is judged with its image and pod known; events of
//! other processes go on meanwhile. A runtime that does not answer gets one warning and is
//! retried with back-off; meanwhile identity fields stay null and every miss is counted.
//!
//! The runtimes are chosen by which sockets are present (`--runtime-socket` overrides): the
//! Docker Engine API on `docker.sock`, the CRI (containerd, CRI-O) on the others. With more
//! than one, each is asked in turn until one knows the container.

pub mod cache;
pub mod cri;
pub mod docker;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::identity::{ContainerMeta, PodMeta};

pub use cache::{Identities, Lookup};
pub use cri::Cri;
pub use docker::Docker;

/// Longest wait for one answer of the runtime.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests waiting for the lookup task; beyond, a new container is a miss (counted).
const QUEUE: usize = 1024;
/// Docker Engine API sockets, in the order they are looked for.
pub const DOCKER_SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/docker.sock"];
/// CRI sockets of containerd and CRI-O.
const CRI_SOCKETS: [&str; 3] = [
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/run/crio/crio.sock",
];
/// Back-off after a failed lookup: first and longest pause.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the runtime said about a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub container: ContainerMeta,
    pub pod: Option<PodMeta>,
}

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot reach the runtime: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer: {0}")]
    Answer(String),
}

/// One question to the lookup task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    /// The container's cgroup names a Kubernetes pod: a CRI that does not know the id yet may
    /// be starting its pod sandbox (the sandbox's first process runs before the runtime
    /// registers the sandbox), so it is asked again for a moment.
    pub in_pod: bool,
}

/// One answer of the lookup task.
#[derive(Debug)]
pub struct Answer {
    pub id: String,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    Found(Found),
    /// The runtime does not know the id (another runtime's container, or gone already).
    Unknown,
    /// The runtime did not answer (or is backing off).
    Failed,
}

/// Lookup figures (in `agent_stats.runtime` and the metrics).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RuntimeStats {
    /// Containers asked about.
    pub lookups: u64,
    /// Lookups that gave no identity (unknown id, runtime not answering, queue full).
    pub misses: u64,
    /// Events that could not wait for their container's answer (the bound was reached) and
    /// went on without identity.
    pub unparked: u64,
    /// Containers in the cache.
    pub cached: usize,
}

/// A full container id: 64 lowercase hex digits (what goes into a runtime request path).
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One runtime's API client.
#[derive(Clone, Debug)]
pub enum Client {
    Docker(Docker),
    Cri(Cri),
}

impl Client {
    /// The client a socket speaks: the Docker Engine API on a `docker.sock`, else the CRI.
    pub fn for_socket(path: &Path) -> Self {
        if path.file_name().is_some_and(|n| n == "docker.sock") {
            Self::Docker(Docker::new(path.to_owned()))
        } else {
            Self::Cri(Cri::new(path.to_owned()))
        }
    }

    pub fn socket(&self) -> &Path {
        match self {
            Self::Docker(d) => d.socket(),
            Self::Cri(c) => c.socket(),
        }
    }

    /// The API, for log lines.
    pub fn api(&self) -> &'static str {
        match self {
            Self::Docker(_) => "Docker Engine API",
            Self::Cri(_) => "CRI",
        }
    }

    pub async fn lookup(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Option<Found>, LookupError> {
        match self {
            Self::Docker(d) => d.lookup(&req.id, timeout).await,
            Self::Cri(c) => c.lookup(&req.id, req.in_pod, timeout).await,
        }
    }
}

/// `--runtime-socket` (repeatable): the sockets given, none with `none`, or (none given)
/// every known socket that exists.
pub fn choose(flags: &[PathBuf]) -> Vec<Client> {
    if flags.iter().any(|p| p == Path::new("none")) {
        return Vec::new();
    }
    if !flags.is_empty() {
        return flags.iter().map(|p| Client::for_socket(p)).collect();
    }
    let docker = DOCKER_SOCKETS.iter().find(|s| Path::new(s).exists());
    docker
        .into_iter()
        .chain(CRI_SOCKETS.iter().filter(|s| Path::new(s).exists()))
        .map(|s| Client::for_socket(Path::new(s)))
        .collect()
}

/// Asks the runtimes in turn until one knows the id; `Ok(None)` when every one that answered
/// does not (an error only when none answered).
async fn lookup_any(
    clients: &mut [(Client, Health)],
    req: &Request,
    now: Instant,
) -> Result<Option<Found>, ()> {
    let mut answered = false;
    for (client, health) in clients.iter_mut() {
        if health.backing_off(now) {
            continue;
        }
        match client.lookup(req, LOOKUP_TIMEOUT).await {
            Ok(Some(found)) => {
                health.answered(client);
                return Ok(Some(found));
            }
            Ok(None) => {
                health.answered(client);
                answered = true;
            }
            Err(e) => health.failed(client, &e, Instant::now()),
        }
    }
    if answered { Ok(None) } else { Err(()) }
}

/// Answers for `ids` now, within `budget` in all (containers running at start): a runtime
/// that fails once is not asked again here (it gets one warning); what is not answered in
/// time is left to the lookup task.
pub async fn ask_now(clients: &[Client], ids: Vec<String>, budget: Duration) -> Vec<Answer> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut failed = vec![false; clients.len()];
    let mut answers = Vec::new();
    'ids: for id in ids {
        let mut outcome = Outcome::Unknown;
        // Running already: a sandbox is registered by now.
        let req = Request { id, in_pod: false };
        for (client, failed) in clients.iter().zip(failed.iter_mut()) {
            if *failed {
                continue;
            }
            let lookup = client.lookup(&req, LOOKUP_TIMEOUT);
            match tokio::time::timeout_at(deadline, lookup).await {
                Ok(Ok(Some(found))) => {
                    outcome = Outcome::Found(found);
                    break;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(socket = %client.socket().display(), error = %e,
                        "no answer from the container runtime at start");
                    *failed = true;
                }
                Err(_) => break 'ids,
            }
        }
        answers.push(Answer {
            id: req.id,
            outcome,
        });
    }
    answers
}

/// Starts the lookup task: container ids in, answers out.
pub fn spawn(clients: Vec<Client>) -> (mpsc::Sender<Request>, mpsc::Receiver<Answer>) {
    let (req_tx, req_rx) = mpsc::channel(QUEUE);
    let (ans_tx, ans_rx) = mpsc::channel(QUEUE);
    tokio::spawn(work(clients, req_rx, ans_tx));
    (req_tx, ans_rx)
}

/// Answers requests in order until the requests or the answers channel closes.
async fn work(clients: Vec<Client>, mut rx: mpsc::Receiver<Request>, tx: mpsc::Sender<Answer>) {
    let mut clients: Vec<(Client, Health)> = clients
        .into_iter()
        .map(|c| (c, Health::default()))
        .collect();
    while let Some(req) = rx.recv().await {
        let outcome = match lookup_any(&mut clients, &req, Instant::now()).await {
            Ok(Some(found)) => Outcome::Found(found),
            Ok(None) => Outcome::Unknown,
            Err(()) => Outcome::Failed,
        };
        if tx
            .send(Answer {
                id: req.id,
                outcome,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}

/// The runtime's health as lookups found it: one warning when it stops answering, one note
/// when it answers again, back-off in between.
#[derive(Debug, Default)]
struct Health {
    down_until: Option<Instant>,
    backoff: Option<Duration>,
}

impl Health {
    fn backing_off(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|t| now < t)
    }

    fn answered(&mut self, client: &Client) {
        if self.backoff.take().is_some() {
            tracing::info!(socket = %client.socket().display(), "the container runtime answers again");
        }
        self.down_until = None;
    }

    fn failed(&mut self, client: &Client, e: &LookupError, now: Instant) {
        let next = match self.backoff {
            None => {
                tracing::warn!(
                    socket = %client.socket().display(),
                    api = client.api(),
                    error = %e,
                    "the container runtime does not answer: container names, images and pods \
                     are null until it does; retrying with back-off"
                );
                BACKOFF_MIN
            }
            Some(b) => (b * 2).min(BACKOFF_MAX),
        };
        self.backoff = Some(next);
        self.down_until = Some(now + next);
    }

    /// How long a miss is believed: until the runtime is asked again.
    #[cfg(test)]
    fn pause(&self) -> Option<Duration> {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Client, Health, LookupError, is_container_id};

    #[test]
    fn container_ids_are_64_lowercase_hex() {
        assert!(is_container_id(&"a".repeat(64)));
        assert!(!is_container_id(&"A".repeat(64)));
        assert!(!is_container_id(&"a".repeat(63)));
        assert!(!is_container_id(&format!("{}/", "a".repeat(63))));
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_ends_at_the_first_answer() {
        let d = Client::for_socket(std::path::Path::new("/nonexistent/docker.sock"));
        let mut h = Health::default();
        let now = Instant::now();
        let e = LookupError::Timeout(Duration::from_secs(2));
        h.failed(&d, &e, now);
        assert!(h.backing_off(now));
        assert!(!h.backing_off(now + Duration::from_secs(1)));
        for _ in 0..10 {
            h.failed(&d, &e, now);
        }
        assert_eq!(h.pause(), Some(Duration::from_secs(60)));
        h.answered(&d);
        assert!(!h.backing_off(now));
        assert_eq!(h.pause(), None);
    }
}
