//! The real LiteLLM proxy (`litellm --config config.yaml --port 4000`) inside a [`NetNs`],
//! forwarding to an OpenAI-compatible provider such as [`super::FakeProvider`].

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    NetNs, Venv,
    server::{HttpServer, Workdir},
    write,
};
use crate::random_hex;

/// LiteLLM started from a venv, in its own directory (`config.yaml`, `litellm.log`, its working
/// directory), with a random master key. [`LiteLlm::start`] does not wait: call
/// [`LiteLlm::wait_ready`]. Stopped on drop (SIGTERM to [`LiteLlm::pid`], a bounded wait,
/// SIGKILL); holds the namespace.
///
/// Seen at start-up (1.108.7): it resolves `raw.githubusercontent.com` and connects to port 443
/// for its model cost map; refused, it falls back to the copy it ships and retries twice more in
/// the background (about 3 and 8 s later, each a fresh lookup and connect). It resolves the
/// provider's host name, asks the provider `GET /v1/models` (two or three times here) and listens
/// on `0.0.0.0:4000`.
pub struct LiteLlm {
    server: HttpServer,
    master_key: String,
}

impl LiteLlm {
    /// The port it listens on, on every address of the namespace.
    pub const PORT: u16 = 4000;
    /// A chat model, `openai/fake-chat` at the provider.
    pub const CHAT_MODEL: &'static str = "monitor-chat";
    /// A second chat model, `openai/fake-chat-mini` at the provider.
    pub const CHAT_MINI_MODEL: &'static str = "monitor-chat-mini";
    /// An embeddings model, `openai/fake-embed` at the provider.
    pub const EMBEDDING_MODEL: &'static str = "monitor-embed";

    /// Writes `config.yaml` (three models, all at `api_base`, e.g.
    /// `http://provider.monitor-test:8900/v1`, with a fake API key) into a new directory and
    /// starts `ip netns exec NS env LITELLM_MASTER_KEY=... <venv>/bin/litellm --config
    /// <dir>/config.yaml --port 4000` there.
    pub fn start(venv: &Venv, ns: &NetNs, api_base: &str) -> Result<Self, String> {
        Self::start_in(venv, ns, api_base, None, &[])
    }

    /// [`LiteLlm::start`] in directory `dir` (kept across restarts, like a deployment's
    /// `/app`; default: a new one of its own), with extra environment variables.
    pub fn start_in(
        venv: &Venv,
        ns: &NetNs,
        api_base: &str,
        dir: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let dir = Workdir::new(dir, "litellm")?;
        let config = write(dir.path(), "config.yaml", &config_yaml(api_base))?;
        let master_key = format!("sk-monitor-test-{}", random_hex(12));
        let mut cmd = ns.command("env");
        cmd.arg(format!("LITELLM_MASTER_KEY={master_key}"))
            .args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(venv.bin("litellm"))
            .arg("--config")
            .arg(&config)
            .args(["--port", &Self::PORT.to_string()]);
        let server = HttpServer::spawn(
            "LiteLLM",
            ns,
            cmd,
            dir,
            "litellm.log",
            Self::PORT,
            "/health/liveliness",
        )?;
        Ok(Self { server, master_key })
    }

    /// Waits until `GET /health/liveliness` answers 200 (about 10 s here; give it
    /// [`super::READY_TIMEOUT`]); fails early with the log's tail if LiteLLM exits.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        self.server.wait_ready(timeout)
    }

    /// A chat completion (`POST /v1/chat/completions`, one user message): the answer's text.
    pub fn chat(&self, model: &str, text: &str) -> Result<String, String> {
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": text}],
        });
        let reply = self.post("/v1/chat/completions", &body)?.ok_json()?;
        reply["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no message content in {reply}"))
    }

    /// Embeddings of one input (`POST /v1/embeddings`): the vector.
    pub fn embeddings(&self, model: &str, input: &str) -> Result<Vec<f64>, String> {
        let body = json!({"model": model, "input": input});
        let reply = self.post("/v1/embeddings", &body)?.ok_json()?;
        reply["data"][0]["embedding"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_f64).collect())
            .ok_or_else(|| format!("no embedding in {reply}"))
    }

    /// The model names it serves (`GET /v1/models`).
    pub fn models(&self) -> Result<Vec<String>, String> {
        let reply = self.get("/v1/models")?.ok_json()?;
        reply["data"]
            .as_array()
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .ok_or_else(|| format!("no model list in {reply}"))
    }

    /// `GET path` with the master key.
    pub fn get(&self, path: &str) -> Result<super::HttpReply, String> {
        self.server.get(path, &[("Authorization", &self.bearer())])
    }

    /// `POST path` with a JSON body and the master key.
    pub fn post(&self, path: &str, body: &Value) -> Result<super::HttpReply, String> {
        self.server
            .post_json(path, &[("Authorization", &self.bearer())], body)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.master_key)
    }

    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    /// The pid of the LiteLLM process (`ip netns exec` and `env` exec it).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Its working directory, holding `config.yaml` and `litellm.log`.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("config.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.server.log_path()
    }

    /// Everything it wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    pub fn running(&self) -> bool {
        self.server.running()
    }

    /// SIGTERM to its pid, up to [`super::STOP_TIMEOUT`] to exit, then SIGKILL; an error if it
    /// had died before or had to be killed.
    pub fn stop(&mut self) -> Result<(), String> {
        self.server.stop()
    }

    /// Keeps its directory after the test (config and log), and says where it is.
    pub fn keep_dir(&mut self) {
        self.server.keep_dir();
    }
}

fn config_yaml(api_base: &str) -> String {
    let model = |name: &str, upstream: &str| {
        format!(
            "  - model_name: {name}\n    litellm_params:\n      model: openai/{upstream}\n      \
             api_base: {api_base}\n      api_key: sk-fake-provider-key\n"
        )
    };
    format!(
        "model_list:\n{}{}{}",
        model(LiteLlm::CHAT_MODEL, "fake-chat"),
        model(LiteLlm::CHAT_MINI_MODEL, "fake-chat-mini"),
        model(LiteLlm::EMBEDDING_MODEL, "fake-embed"),
    )
}
