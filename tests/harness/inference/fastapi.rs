//! A small FastAPI app (`app.py`) served by the venv's real uvicorn inside a [`NetNs`].

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    HttpReply, NetNs, Venv,
    server::{HttpServer, Workdir},
    write,
};

const APP: &str = include_str!("app.py");

/// The words of the app's "model" file; every completion is made of them.
const WEIGHTS: &str = "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima";

/// `uvicorn app:app --host 127.0.0.1 --port 8000` in a directory of its own holding `app.py`,
/// its "weights" `model.txt` (read on every completion) and `uvicorn.log`. Serves `GET
/// /health`, `GET /v1/models` ([`FastApiApp::MODEL`]) and `POST /v1/completions`. Call
/// [`FastApiApp::wait_ready`] after [`FastApiApp::start`]. Stopped on drop; holds the namespace.
pub struct FastApiApp {
    server: HttpServer,
}

impl FastApiApp {
    pub const PORT: u16 = 8000;
    /// The one model it serves.
    pub const MODEL: &'static str = "monitor-tiny";

    /// Writes the app and starts uvicorn inside `ns` (it does not wait).
    pub fn start(venv: &Venv, ns: &NetNs) -> Result<Self, String> {
        Self::start_in(venv, ns, None, &[])
    }

    /// [`FastApiApp::start`] in directory `dir` (kept across restarts; default: a new one of
    /// its own), with extra environment variables.
    pub fn start_in(
        venv: &Venv,
        ns: &NetNs,
        dir: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let dir = Workdir::new(dir, "fastapi")?;
        write(dir.path(), "app.py", APP)?;
        write(dir.path(), "model.txt", &format!("{WEIGHTS}\n"))?;
        let mut cmd = ns.command("env");
        cmd.args(env.iter().map(|(k, v)| format!("{k}={v}")))
            .arg(venv.bin("uvicorn"))
            .args(["app:app", "--host", "127.0.0.1", "--port"])
            .arg(Self::PORT.to_string());
        let server = HttpServer::spawn(
            "uvicorn",
            ns,
            cmd,
            dir,
            "uvicorn.log",
            Self::PORT,
            "/health",
        )?;
        Ok(Self { server })
    }

    /// Waits until `GET /health` answers 200; fails early with the log's tail if uvicorn exits.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        self.server.wait_ready(timeout)
    }

    /// `POST /v1/completions`: the completion's text, `max_tokens` words of the model file.
    pub fn completion(&self, prompt: &str, max_tokens: u32) -> Result<String, String> {
        let body = json!({"model": Self::MODEL, "prompt": prompt, "max_tokens": max_tokens});
        let reply = self.post("/v1/completions", &body)?.ok_json()?;
        reply["choices"][0]["text"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no completion text in {reply}"))
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

    /// The words a completion may be made of.
    pub fn vocabulary() -> Vec<&'static str> {
        WEIGHTS.split_whitespace().collect()
    }

    pub fn get(&self, path: &str) -> Result<HttpReply, String> {
        self.server.get(path, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<HttpReply, String> {
        self.server.post_json(path, &[], body)
    }

    /// The pid of uvicorn (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Its working directory, holding `app.py`, `model.txt` and `uvicorn.log`.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    /// The model file every completion reads.
    pub fn model_path(&self) -> PathBuf {
        self.dir().join("model.txt")
    }

    pub fn log_path(&self) -> PathBuf {
        self.server.log_path()
    }

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

    /// Keeps its directory after the test, and says where it is.
    pub fn keep_dir(&mut self) {
        self.server.keep_dir();
    }
}
