//! A fake OpenAI-compatible provider inside a [`NetNs`] (`provider.py`, standard library only):
//! the upstream an inference proxy forwards to.

use std::collections::BTreeMap;

use super::{DEBIAN_PYTHON, NetNs, SCRIPT_READY_TIMEOUT, STOP_TIMEOUT, daemon::Daemon, write};
use crate::TempDir;

const SCRIPT: &str = include_str!("provider.py");

/// What every chat answer of the fake provider starts with (then the last message's text).
pub const FAKE_REPLY_PREFIX: &str = "fake-provider says: ";

/// Serves, on 127.0.0.1:`port` inside a namespace, `POST /v1/chat/completions` (non-streaming,
/// answering [`FAKE_REPLY_PREFIX`] + the last message), `POST /v1/embeddings` (eight numbers per
/// input), `GET /v1/models` (`fake-chat`, `fake-chat-mini`, `fake-embed`; any model name is
/// accepted) and `GET /stats` ([`FakeProvider::stats`]). Stopped on drop; holds the namespace.
pub struct FakeProvider {
    daemon: Daemon,
    ns: NetNs,
    port: u16,
    _dir: TempDir,
}

/// The requests the provider served (not counting `/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderStats {
    pub requests: u64,
    pub by_path: BTreeMap<String, u64>,
    /// The `model` of every chat and embeddings request, in order.
    pub models: Vec<String>,
}

impl FakeProvider {
    /// Starts the provider and waits until it listens, on every address of the namespace (its
    /// loopback and any address added with [`NetNs::add_address`]).
    pub fn start(ns: &NetNs, port: u16) -> Result<Self, String> {
        let dir = TempDir::try_new("provider")
            .map_err(|e| format!("cannot create the fake provider's directory: {e}"))?;
        let script = write(dir.path(), "provider.py", SCRIPT)?;
        let mut cmd = ns.command(DEBIAN_PYTHON);
        cmd.args(["-I", "-S"])
            .arg(&script)
            .args(["0.0.0.0", &port.to_string()]);
        let daemon = Daemon::spawn("the fake provider", cmd, &dir.join("provider.log"))?;
        daemon.wait_for_line("ready", SCRIPT_READY_TIMEOUT)?;
        Ok(Self {
            daemon,
            ns: ns.clone(),
            port,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The OpenAI base URL of the provider under a host name: `http://HOST:PORT/v1`.
    pub fn api_base(&self, host: &str) -> String {
        format!("http://{host}:{}/v1", self.port)
    }

    /// What the provider served so far.
    pub fn stats(&self) -> Result<ProviderStats, String> {
        let stats = self.ns.get(self.port, "/stats", &[])?.ok_json()?;
        let by_path = stats["by_path"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .map(|(path, n)| (path.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let models = stats["models"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ProviderStats {
            requests: stats["requests"]
                .as_u64()
                .ok_or_else(|| format!("no request count in {stats}"))?,
            by_path,
            models,
        })
    }

    /// The provider's request log (one line per request).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Stops the provider (SIGTERM to its pid, then SIGKILL); an error if it had died before.
    pub fn stop(&mut self) -> Result<(), String> {
        self.daemon.stop(STOP_TIMEOUT)
    }
}
