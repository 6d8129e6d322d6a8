//! Real inference servers from PyPI, run inside a network namespace the test creates, so tests
//! can learn and check what such a workload does (what it runs, opens, resolves, connects to and
//! listens on) without any packet leaving the machine.
//!
//! - [`Venv::litellm`]: a virtualenv with `litellm[proxy]` (fastapi and uvicorn come with it),
//!   built once per machine with Debian's `/usr/bin/python3` and cached under
//!   `/var/cache/monitor-tests`.
//! - [`NetNs::new`]: a namespace with loopback up (IPv4 and, where the host has it, IPv6), whose
//!   processes resolve names through `127.0.0.1` and a minimal hosts file
//!   (`/etc/netns/<name>/`). [`NetNs::command`] starts a program inside; [`NetNs::get`] and
//!   [`NetNs::post_json`] talk HTTP to loopback servers inside from a thread of the test.
//! - [`DnsServer`]: answers A and AAAA records from a table the test gives, NXDOMAIN otherwise,
//!   on 127.0.0.1:53 inside the namespace, over UDP and TCP; it logs every query
//!   ([`DnsServer::queries`]).
//! - [`FakeProvider`]: an OpenAI-compatible upstream (chat completions, embeddings, models) that
//!   counts the requests it served ([`FakeProvider::stats`]).
//! - [`LiteLlm`]: the real LiteLLM proxy, configured with models served by the fake provider.
//! - [`FastApiApp`]: a small FastAPI app served by the real uvicorn.
//!
//! Every server is started by `ip netns exec`, which execs the program: the pid a runner reports
//! is the server's own. Servers get `SIGKILL` if the test binary dies (parent-death signal from a
//! keeper thread), and are stopped on drop (`SIGTERM`, a bounded wait, then `SIGKILL`) by the pid
//! the fixture started, never by name. Each holds its namespace, which is deleted (with its
//! `/etc/netns` directory) when the last holder is dropped; declare the [`NetNs`] first anyway.
//!
//! ```ignore
//! let venv = match Venv::litellm() { Ok(v) => v, Err(e) => return skip_or_fail(&e) };
//! let ns = NetNs::new("litellm")?;
//! let _dns = DnsServer::start(&ns, &[("provider.monitor-test", "127.0.0.1")])?;
//! let provider = FakeProvider::start(&ns, 8900)?;
//! let litellm = LiteLlm::start(&venv, &ns, &provider.api_base("provider.monitor-test"))?;
//! litellm.wait_ready(READY_TIMEOUT)?;
//! let answer = litellm.chat(LiteLlm::CHAT_MODEL, "hello")?;
//! ```

mod client;
mod daemon;
mod dns;
mod fastapi;
mod litellm;
mod netns;
mod provider;
mod server;
mod venv;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::process::describe;

pub use client::HttpReply;
pub use dns::{DnsQuery, DnsReply, DnsServer, RecordType, Transport};
pub use fastapi::FastApiApp;
pub use litellm::LiteLlm;
pub use netns::NetNs;
pub use provider::{FAKE_REPLY_PREFIX, FakeProvider, ProviderStats};
pub use venv::Venv;

/// Debian's interpreter: venvs are built with it, and the fixture's own scripts (DNS server,
/// fake provider) run on it. Not the pyenv `python3` on PATH.
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// How long a real inference server may take to answer its health check (LiteLLM takes about
/// 10 s on the 2-core test machines).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a server may take to exit after SIGTERM before it is SIGKILLed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the fixture's own small servers may take to come up.
const SCRIPT_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of a log shown in an error.
const TAIL_LINES: usize = 40;
/// Characters of one log line shown in an error.
const LINE_CHARS: usize = 400;

/// Runs `ip ARGS`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip {}`: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            describe(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The last `lines` lines of a file, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = String::new();
            if start > 0 {
                out.push_str(&format!(
                    "[... {start} earlier lines of {}]\n",
                    path.display()
                ));
            }
            for line in &all[start..] {
                // pip lists every version it knows on one line.
                if line.chars().count() > LINE_CHARS {
                    let cut: String = line.chars().take(LINE_CHARS).collect();
                    out.push_str(&format!("{cut} [...]\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            if out.trim().is_empty() {
                "<empty>".to_owned()
            } else {
                out
            }
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Writes `contents` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    fs::write(&path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
