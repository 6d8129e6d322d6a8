//! The agent's control socket: `monitor learn` asks a running agent to learn, so learning uses
//! the agent's sensor and the agent keeps detecting meanwhile. One JSON object per line:
//!
//! ```text
//! learn -> agent   {"learn": {"name": ..., "profile": ..., "selectors": {...}}}
//! agent -> learn   {"started": {"session": N, "processes": N, "profile_file": ...}}
//!                  or {"error": "..."}
//! learn -> agent   {"finish": true}          (end of the window, SIGINT or SIGTERM)
//! agent -> learn   {"finished": {...}}        (outcome, credential patterns, nameservers)
//! ```
//!
//! When the agent stops during a session it sends `finished` unasked, with `stopped` saying
//! why, so what was learned is not lost. A client that goes away without `finish` cancels
//! its session.
//!
//! Only root (or the agent's own user) may talk to the agent: the socket is mode 0600, its
//! directory is created 0700 if missing and refused if others may write to it, and every
//! connection's peer credentials are checked.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::learn::{Finished, LearnRequest};

/// Where a learning session's outcome goes.
pub type Done = oneshot::Sender<Option<Finished>>;

/// Where the agent listens by default, and where `monitor learn` looks for it.
pub const DEFAULT_SOCKET: &str = "/run/monitor/control.sock";
/// Longest request line the agent accepts.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Longest answer line a client accepts (a footprint of the session's maximum size fits).
pub const MAX_ANSWER: usize = 1 << 30;

/// A request to the pipeline, from the socket or from `monitor learn` in the same process.
pub enum Request {
    /// Start a session: `reply` says whether it started, `done` gets its outcome.
    Start {
        request: Box<LearnRequest>,
        reply: oneshot::Sender<Result<Started, String>>,
        done: Done,
    },
    /// Finish a session (its outcome goes to its `done`).
    Finish {
        session: u64,
    },
    Cancel {
        session: u64,
    },
    /// Stop the pipeline (in-process callers).
    Shutdown,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub session: u64,
    /// Processes followed from the start (already running and matching).
    pub processes: usize,
    /// The file of the profile refined (`--profile`), absolute.
    #[serde(default)]
    pub profile_file: Option<PathBuf>,
}

/// Lines the client sends.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientLine {
    Learn(Box<LearnRequest>),
    Finish(bool),
}

/// Lines the agent sends.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentLine {
    Started(Started),
    Finished(Box<Finished>),
    Error(String),
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "another agent answers on the control socket {0}: stop it, or give this one its own \
         `--control-socket PATH`"
    )]
    InUse(PathBuf),
    #[error(
        "the control socket's directory {0} may be written by other users or is not the \
         agent's: use a directory only root can write to"
    )]
    UnsafeDir(PathBuf),
    #[error("cannot create the control socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The served socket: dropping it stops accepting and removes the socket file.
pub struct Socket {
    path: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Socket {
    /// Stops accepting and gives the connected clients up to `grace` to receive their
    /// outcomes.
    pub async fn close(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, &mut self.task).await;
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` (replacing a stale socket file) and serves it while the [`Socket`] lives.
pub async fn listen(path: &Path, tx: mpsc::Sender<Request>) -> Result<Socket, ControlError> {
    if UnixStream::connect(path).await.is_ok() {
        return Err(ControlError::InUse(path.to_path_buf()));
    }
    let bind = |source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(bind)?;
    let meta = std::fs::metadata(dir).map_err(bind)?;
    if meta.mode() & 0o022 != 0 || meta.uid() != own_uid() {
        return Err(ControlError::UnsafeDir(dir.to_path_buf()));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(bind(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(bind)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind)?;
    let served = path.to_path_buf();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut clients = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) if peer_allowed(&stream) => {
                        clients.spawn(serve(stream, tx.clone()));
                    }
                    Ok(_) => tracing::warn!(socket = %served.display(),
                        "control connection from another user refused"),
                    Err(e) => {
                        tracing::warn!(socket = %served.display(), error = %e,
                            "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = clients.join_next(), if !clients.is_empty() => {}
                _ = stopped.changed() => break,
            }
        }
        // The pipeline has sent every session's outcome: let the clients write them.
        drop(tx);
        while clients.join_next().await.is_some() {}
    });
    Ok(Socket {
        path: path.to_path_buf(),
        stop,
        task,
    })
}

fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Whether the peer is root or the agent's own user.
fn peer_allowed(stream: &UnixStream) -> bool {
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == 0 || c.uid() == own_uid())
}

async fn send(
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    line: &AgentLine,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
    bytes.push(b'\n');
    stream.write_all(&bytes).await
}

/// Reads one line of at most `max` bytes; `None` at end of stream.
pub async fn read_line(
    r: &mut (impl tokio::io::AsyncBufRead + Unpin),
    max: usize,
) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = tokio::io::AsyncReadExt::take(&mut *r, max as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && n >= max {
        return Err(io::Error::other(format!("a line longer than {max} bytes")));
    }
    String::from_utf8(buf)
        .map(|s| Some(s.trim_end().to_owned()))
        .map_err(io::Error::other)
}

/// One client: a learn request, then a finish (or the end of the connection, which cancels).
/// The outcome is sent when the client finishes, or unasked when the agent stops first.
async fn serve(stream: UnixStream, tx: mpsc::Sender<Request>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let request = match read_line(&mut r, MAX_REQUEST).await {
        Ok(Some(line)) => match serde_json::from_str::<ClientLine>(&line) {
            Ok(ClientLine::Learn(req)) => req,
            Ok(ClientLine::Finish(_)) => {
                let _ = send(
                    &mut w,
                    &AgentLine::Error("no learning session to finish".into()),
                )
                .await;
                return;
            }
            Err(e) => {
                let _ = send(&mut w, &AgentLine::Error(format!("bad request: {e}"))).await;
                return;
            }
        },
        _ => return,
    };
    let (reply, rx) = oneshot::channel();
    let (done, mut outcome) = oneshot::channel();
    if tx
        .send(Request::Start {
            request,
            reply,
            done,
        })
        .await
        .is_err()
    {
        return;
    }
    let started = match rx.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let _ = send(&mut w, &AgentLine::Error(e)).await;
            return;
        }
        Err(_) => return,
    };
    let session = started.session;
    if send(&mut w, &AgentLine::Started(started)).await.is_err() {
        let _ = tx.send(Request::Cancel { session }).await;
        return;
    }
    let finished = tokio::select! {
        line = read_line(&mut r, MAX_REQUEST) => {
            let finish = matches!(
                line,
                Ok(Some(l)) if matches!(serde_json::from_str(&l), Ok(ClientLine::Finish(true)))
            );
            if !finish {
                tracing::info!(session, "learning client went away: session cancelled");
                let _ = tx.send(Request::Cancel { session }).await;
                return;
            }
            let _ = tx.send(Request::Finish { session }).await;
            // The pipeline sends the outcome or drops the sender; dropping `tx` lets it stop.
            drop(tx);
            outcome.await
        }
        // The agent finished the session by itself (it is stopping).
        done = &mut outcome => done,
    };
    let line = match finished {
        Ok(Some(done)) => AgentLine::Finished(Box::new(done)),
        _ => AgentLine::Error(format!("learning session {session} is gone")),
    };
    if let Err(e) = send(&mut w, &line).await {
        tracing::warn!(session, error = %e, "could not send the learned footprint to its client");
    }
}
