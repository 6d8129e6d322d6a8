//! What the real servers ([`super::LiteLlm`], [`super::FastApiApp`]) share: a program from the
//! venv started inside a namespace with a directory of its own as working directory, a health
//! check to wait for, HTTP requests, and a stop by pid.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use super::{HttpReply, NetNs, STOP_TIMEOUT, daemon::Daemon};
use crate::TempDir;

/// How often a health check is tried while a server starts.
const READY_POLL: Duration = Duration::from_millis(100);

/// A server's working directory: its own, or one a test keeps across restarts (a deployment's
/// `/app` stays where it is when the server restarts).
pub(crate) enum Workdir {
    Own(TempDir),
    Shared(PathBuf),
}

impl Workdir {
    /// `dir`, or a new directory of the server's own labelled `label`.
    pub(crate) fn new(dir: Option<&Path>, label: &str) -> Result<Self, String> {
        match dir {
            Some(d) => Ok(Workdir::Shared(d.to_path_buf())),
            None => TempDir::try_new(label)
                .map(Workdir::Own)
                .map_err(|e| format!("cannot create the {label} directory: {e}")),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Workdir::Own(d) => d.path(),
            Workdir::Shared(p) => p,
        }
    }
}

pub(crate) struct HttpServer {
    // Field order is drop order: the server stops before its directory goes.
    daemon: Daemon,
    ns: NetNs,
    port: u16,
    health: &'static str,
    dir: Workdir,
}

impl HttpServer {
    /// Starts `cmd` (built with [`NetNs::command`]) with `dir` as working directory, its
    /// output in `dir/<log>`.
    pub(crate) fn spawn(
        what: &str,
        ns: &NetNs,
        mut cmd: Command,
        dir: Workdir,
        log: &str,
        port: u16,
        health: &'static str,
    ) -> Result<Self, String> {
        cmd.current_dir(dir.path());
        let daemon = Daemon::spawn(what, cmd, &dir.path().join(log))?;
        Ok(Self {
            daemon,
            ns: ns.clone(),
            port,
            health,
            dir,
        })
    }

    /// Polls the health check until it answers 200; fails early, with the log's tail, if the
    /// server exits.
    pub(crate) fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let doing = format!("answering GET {} with 200", self.health);
        self.daemon.wait_until(&doing, timeout, READY_POLL, || {
            match self.ns.get(self.port, self.health, &[]) {
                Ok(reply) if reply.status == 200 => Ok(true),
                Ok(reply) => Err(format!("HTTP {}: {}", reply.status, reply.body)),
                // Not listening yet.
                Err(e) => Err(e),
            }
        })
    }

    pub(crate) fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<HttpReply, String> {
        self.ns.get(self.port, path, headers)
    }

    pub(crate) fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<HttpReply, String> {
        self.ns.post_json(self.port, path, headers, body)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.daemon.log_path().to_path_buf()
    }

    pub(crate) fn log(&self) -> String {
        self.daemon.log()
    }

    /// Whether the server is still running.
    pub(crate) fn running(&self) -> bool {
        self.daemon.exited().is_none()
    }

    pub(crate) fn stop(&mut self) -> Result<(), String> {
        self.daemon.stop(STOP_TIMEOUT)
    }

    /// Keeps the directory (config, log, code) after the test, and says where it is.
    pub(crate) fn keep_dir(&mut self) {
        if let Workdir::Own(d) = &mut self.dir {
            d.keep();
        }
    }
}
