//! `monitor learn` on the real LiteLLM proxy from PyPI (cached venv), in a network namespace
//! of the test's own with its DNS server and a fake OpenAI-compatible provider: learned over a
//! start and a round of requests through the running agent, the profile raises nothing when
//! LiteLLM starts again and serves different requests of the same kinds, and every step of the
//! litellm 1.82 `.pth` payload replayed inside it is alerted. See `monitor_tests::learn::flow`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use monitor_tests::{
    inference::{DnsServer, FakeProvider, LiteLlm, NetNs, READY_TIMEOUT, Venv},
    learn::{FlowAgent, Server, Via, learn_serve_attack},
    random_hex,
    rules::{SharedAgent, note},
    skip_or_fail,
};

const PROVIDER_PORT: u16 = 8900;
const PROVIDER_HOST: &str = "provider.monitor-test";
const COST_MAP_HOST: &str = "raw.githubusercontent.com";
/// Addresses of the namespace that its DNS server gives these names: not loopback, so the
/// learned profile names them (loopback stays an address). Nothing listens on the second.
const PROVIDER_ADDR: &str = "198.18.0.1";
const COST_MAP_ADDR: &str = "198.18.0.2";

static AGENT: SharedAgent<FlowAgent> = SharedAgent::new();

/// LiteLLM, with the DNS server it asks (to wait for its background cost-map lookups).
struct Proxy<'a> {
    litellm: LiteLlm,
    dns: &'a DnsServer,
    /// Cost-map lookups the DNS server had seen before this start.
    lookups_before: usize,
}

fn cost_map_lookups(dns: &DnsServer) -> usize {
    dns.queries()
        .iter()
        .filter(|q| q.name == COST_MAP_HOST && q.qtype == "A")
        .count()
}

impl Server for Proxy<'_> {
    const PROGRAM: &'static str = "litellm";

    fn exercise(&self, round: u32) -> Result<(), String> {
        let l = &self.litellm;
        l.chat(LiteLlm::CHAT_MODEL, &format!("round {round}: say hello"))?;
        l.chat(
            LiteLlm::CHAT_MINI_MODEL,
            &format!("round {round}: count to {}", round + 2),
        )?;
        l.embeddings(
            LiteLlm::EMBEDDING_MODEL,
            &format!("round {round} text to embed"),
        )?;
        let models = l.models()?;
        if models.len() != 3 {
            return Err(format!("expected three models, got {models:?}"));
        }
        Ok(())
    }

    /// LiteLLM fetches its model cost map three times (refused here), the last ones in the
    /// background after it listens: wait for the third lookup.
    fn settle(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while cost_map_lookups(self.dns) < self.lookups_before + 3 {
            if Instant::now() >= deadline {
                return Err(format!(
                    "LiteLLM looked its cost map up {} times, not 3",
                    cost_map_lookups(self.dns) - self.lookups_before
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.litellm.pid()
    }

    fn stop(&mut self) -> Result<(), String> {
        self.litellm.stop()
    }
}

#[test]
fn a_learned_litellm_profile_is_quiet_on_the_same_work_and_alerts_on_the_attack() {
    let Some(agent) = FlowAgent::join(&AGENT) else {
        return;
    };
    let venv = match Venv::litellm() {
        Ok(v) => v,
        Err(e) => return skip_or_fail(&format!("cannot build the LiteLLM venv: {e}")),
    };
    let ns = match NetNs::new("learn-litellm") {
        Ok(ns) => ns,
        Err(e) => return skip_or_fail(&format!("cannot create a network namespace: {e}")),
    };
    for addr in [PROVIDER_ADDR, COST_MAP_ADDR] {
        ns.add_address(&format!("{addr}/32"))
            .expect("an address in the namespace");
    }
    let dns = DnsServer::start(
        &ns,
        &[
            (PROVIDER_HOST, PROVIDER_ADDR),
            (COST_MAP_HOST, COST_MAP_ADDR),
        ],
    )
    .expect("DNS server");
    let provider = FakeProvider::start(&ns, PROVIDER_PORT).expect("fake provider");
    let api_base = provider.api_base(PROVIDER_HOST);
    let start = |dir: &Path, env: &[(&str, &str)]| -> Result<Proxy<'_>, String> {
        let lookups_before = cost_map_lookups(&dns);
        let litellm = LiteLlm::start_in(&venv, &ns, &api_base, Some(dir), env)?;
        litellm
            .wait_ready(READY_TIMEOUT)
            .map_err(|e| format!("{e}\n{}", litellm.log()))?;
        Ok(Proxy {
            litellm,
            dns: &dns,
            lookups_before,
        })
    };
    let name = format!("litellm-learned-{}", random_hex(4));
    let served = learn_serve_attack(&agent, &start, venv.site_packages(), &name, Via::Agent);
    let p = &served.profile;
    for expected in [
        "program: [\"litellm\"]".to_owned(),
        format!("{{ host: \"{PROVIDER_HOST}\", port: {PROVIDER_PORT} }}"),
        format!("{{ host: \"{COST_MAP_HOST}\", port: 443 }}"),
        "{ port: 4000 }".to_owned(),
        "/lib/python3*/site-packages/**\"".to_owned(),
    ] {
        assert!(
            p.contains(&expected),
            "the learned profile lacks {expected}:\n{p}"
        );
    }
    for forbidden in ["\"/**\"", "\"/etc/**\"", "\"/root/**\"", "\"/home/**\""] {
        assert!(
            !p.contains(forbidden),
            "the learned profile has {forbidden}:\n{p}"
        );
    }
    let entries = p
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .count();
    note(&format!("learned LiteLLM profile: {entries} entries"));
    if std::env::var_os("MONITOR_TEST_KEEP").is_some() {
        note(&format!("the learned profile:\n{p}"));
    }
}
