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
//! The runtime is chosen by which socket is present (`--runtime-socket` overrides). Only the
//! Docker Engine API is spoken: on nodes where only containerd or CRI-O run, the agent says so
//! once and reports container and pod ids from cgroups without names (the CRI's gRPC API is
//! not implemented yet).

pub mod cache;
pub mod docker;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::identity::{ContainerMeta, PodMeta};

pub use cache::{Identities, Lookup};
pub use docker::Docker;

/// Longest wait for one answer of the runtime.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests waiting for the lookup task; beyond, a new container is a miss (counted).
const QUEUE: usize = 1024;
/// Docker Engine API sockets, in the order they are looked for.
pub const DOCKER_SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/docker.sock"];
/// CRI sockets of containerd and CRI-O: recognised, not spoken (yet).
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

/// `--runtime-socket`: a path, `none`, or unset (auto).
pub fn choose(flag: Option<&Path>) -> Option<Docker> {
    match flag {
        Some(p) if p == Path::new("none") => None,
        Some(p) => Some(Docker::new(p.to_owned())),
        None => {
            if let Some(s) = DOCKER_SOCKETS.iter().find(|s| Path::new(s).exists()) {
                return Some(Docker::new(PathBuf::from(s)));
            }
            if let Some(s) = CRI_SOCKETS.iter().find(|s| Path::new(s).exists()) {
                tracing::warn!(
                    socket = s,
                    "only a CRI runtime socket is present: container names, images and pods are \
                     not looked up (the CRI API is not implemented); ids from cgroups only"
                );
            }
            None
        }
    }
}

/// Starts the lookup task: container ids in, answers out.
pub fn spawn(docker: Docker) -> (mpsc::Sender<String>, mpsc::Receiver<Answer>) {
    let (req_tx, req_rx) = mpsc::channel(QUEUE);
    let (ans_tx, ans_rx) = mpsc::channel(QUEUE);
    tokio::spawn(work(docker, req_rx, ans_tx));
    (req_tx, ans_rx)
}

/// Answers requests in order until the requests or the answers channel closes.
async fn work(docker: Docker, mut rx: mpsc::Receiver<String>, tx: mpsc::Sender<Answer>) {
    let mut health = Health::default();
    while let Some(id) = rx.recv().await {
        let outcome = if health.backing_off(Instant::now()) {
            Outcome::Failed
        } else {
            match docker.lookup(&id, LOOKUP_TIMEOUT).await {
                Ok(Some(found)) => {
                    health.answered(&docker);
                    Outcome::Found(found)
                }
                Ok(None) => {
                    health.answered(&docker);
                    Outcome::Unknown
                }
                Err(e) => {
                    health.failed(&docker, &e, Instant::now());
                    Outcome::Failed
                }
            }
        };
        if tx.send(Answer { id, outcome }).await.is_err() {
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

    fn answered(&mut self, docker: &Docker) {
        if self.backoff.take().is_some() {
            tracing::info!(socket = %docker.socket().display(), "the container runtime answers again");
        }
        self.down_until = None;
    }

    fn failed(&mut self, docker: &Docker, e: &LookupError, now: Instant) {
        let next = match self.backoff {
            None => {
                tracing::warn!(
                    socket = %docker.socket().display(),
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

    use super::{Docker, Health, LookupError, is_container_id};

    #[test]
    fn container_ids_are_64_lowercase_hex() {
        assert!(is_container_id(&"a".repeat(64)));
        assert!(!is_container_id(&"A".repeat(64)));
        assert!(!is_container_id(&"a".repeat(63)));
        assert!(!is_container_id(&format!("{}/", "a".repeat(63))));
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_ends_at_the_first_answer() {
        let d = Docker::new("/nonexistent".into());
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
