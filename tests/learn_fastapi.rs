//! `monitor learn` on a second real server from PyPI: a small FastAPI app under the real
//! uvicorn (from the cached LiteLLM venv), in a network namespace of the test's own. Learned by
//! `monitor learn --standalone` (a sensor of its own, beside the agent), the profile raises
//! nothing when the app starts again and serves other requests of the same kinds, and every
//! step of the `.pth` payload replayed inside it is alerted. See `monitor_tests::learn::flow`.

use std::path::Path;

use monitor_tests::{
    inference::{DnsServer, FastApiApp, NetNs, READY_TIMEOUT, Venv},
    learn::{FlowAgent, Server, Via, learn_serve_attack},
    random_hex,
    rules::{SharedAgent, note},
    skip_or_fail,
};

static AGENT: SharedAgent<FlowAgent> = SharedAgent::new();

struct App(FastApiApp);

impl Server for App {
    const PROGRAM: &'static str = "uvicorn";

    fn exercise(&self, round: u32) -> Result<(), String> {
        let words = self
            .0
            .completion(&format!("round {round}: once upon"), 3 + round)?;
        if words.split_whitespace().count() != (3 + round) as usize {
            return Err(format!("unexpected completion {words:?}"));
        }
        let models = self.0.models()?;
        if models != [FastApiApp::MODEL] {
            return Err(format!("unexpected models {models:?}"));
        }
        self.0.get("/health")?.ok_json().map(drop)
    }

    fn pid(&self) -> u32 {
        self.0.pid()
    }

    fn stop(&mut self) -> Result<(), String> {
        self.0.stop()
    }
}

#[test]
fn a_learned_fastapi_profile_is_quiet_on_the_same_work_and_alerts_on_the_attack() {
    let Some(agent) = FlowAgent::join(&AGENT) else {
        return;
    };
    let venv = match Venv::litellm() {
        Ok(v) => v,
        Err(e) => return skip_or_fail(&format!("cannot build the venv: {e}")),
    };
    let ns = match NetNs::new("learn-fastapi") {
        Ok(ns) => ns,
        Err(e) => return skip_or_fail(&format!("cannot create a network namespace: {e}")),
    };
    let _dns = DnsServer::start(&ns, &[]).expect("DNS server");
    let start = |dir: &Path, env: &[(&str, &str)]| -> Result<App, String> {
        let app = FastApiApp::start_in(&venv, &ns, Some(dir), env)?;
        app.wait_ready(READY_TIMEOUT)
            .map_err(|e| format!("{e}\n{}", app.log()))?;
        Ok(App(app))
    };
    let name = format!("fastapi-learned-{}", random_hex(4));
    let served = learn_serve_attack(&agent, &start, venv.site_packages(), &name, Via::Standalone);
    let p = &served.profile;
    for expected in [
        "program: [\"uvicorn\"]",
        "{ port: 8000 }",
        "/lib/python3*/site-packages/**\"",
        "/model.txt\"",
    ] {
        assert!(
            p.contains(expected),
            "the learned profile lacks {expected}:\n{p}"
        );
    }
    let entries = p
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    note(&format!("learned FastAPI profile: {entries} entries"));
    if std::env::var_os("MONITOR_TEST_KEEP").is_some() {
        note(&format!("the learned profile:\n{p}"));
    }
}
