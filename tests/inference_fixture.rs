//! The inference-server fixture end to end: real LiteLLM and uvicorn from the cached venv, in a
//! network namespace of the test's own, resolving names through the test's DNS server and
//! forwarding to the fake provider. No agent runs here: this proves the fixture that footprint
//! tests build on.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    thread,
};

use monitor_tests::{
    inference::{
        DnsServer, FAKE_REPLY_PREFIX, FakeProvider, FastApiApp, LiteLlm, NetNs, ProviderStats,
        READY_TIMEOUT, RecordType, Transport, Venv,
    },
    skip_or_fail,
};

/// Where the fake provider listens inside the namespace.
const PROVIDER_PORT: u16 = 8900;
const PROVIDER_HOST: &str = "provider.monitor-test";
const V6_HOST: &str = "v6.monitor-test";

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCALHOST6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The names the workloads may ask for: the provider, LiteLLM's model cost map (answered with
/// loopback, where nothing listens on 443, so the download is refused) and an IPv6-only name.
fn dns_table() -> [(&'static str, &'static str); 3] {
    [
        (PROVIDER_HOST, "127.0.0.1"),
        ("raw.githubusercontent.com", "127.0.0.1"),
        (V6_HOST, "::1"),
    ]
}

/// The LiteLLM venv, or `None` after saying loudly why there is none (a failure under CI).
fn venv_or_skip() -> Option<Venv> {
    match Venv::litellm() {
        Ok(venv) => Some(venv),
        Err(e) => {
            skip_or_fail(&format!("cannot build the LiteLLM venv: {e}"));
            None
        }
    }
}

/// A namespace for the test, or `None` after saying loudly why there is none.
fn netns_or_skip(label: &str) -> Option<NetNs> {
    match NetNs::new(label) {
        Ok(ns) => Some(ns),
        Err(e) => {
            skip_or_fail(&format!("cannot create a network namespace: {e}"));
            None
        }
    }
}

/// The command line of a process, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn litellm_answers_from_the_fake_provider() {
    let Some(venv) = venv_or_skip() else { return };
    // Declared first, dropped last: every server below is stopped before the namespace goes.
    let Some(ns) = netns_or_skip("litellm") else {
        return;
    };
    let mut dns = DnsServer::start(&ns, &dns_table()).expect("DNS server");
    assert_eq!(
        ns.resolve(PROVIDER_HOST),
        Ok(vec![LOCALHOST]),
        "getent inside the namespace"
    );
    assert!(
        dns.queries()
            .iter()
            .any(|q| q.name == PROVIDER_HOST && q.qtype == "A" && q.answers == [LOCALHOST]),
        "the name was not resolved through the test's DNS server: {:?}",
        dns.queries()
    );
    let mut provider = FakeProvider::start(&ns, PROVIDER_PORT).expect("fake provider");
    let queries_before = dns.queries().len();
    let mut litellm =
        LiteLlm::start(&venv, &ns, &provider.api_base(PROVIDER_HOST)).expect("start LiteLLM");
    if let Err(e) = litellm.wait_ready(READY_TIMEOUT) {
        panic!("LiteLLM did not come up: {e}");
    }
    assert!(
        cmdline(litellm.pid()).contains(&format!(
            "bin/litellm --config {}",
            litellm.config_path().display()
        )),
        "pid {} is not LiteLLM: {}",
        litellm.pid(),
        cmdline(litellm.pid())
    );

    let before = provider.stats().expect("provider stats");
    let text = "hello from monitor-tests";
    let answer = litellm.chat(LiteLlm::CHAT_MODEL, text).expect("chat");
    assert_eq!(answer, format!("{FAKE_REPLY_PREFIX}{text}"));
    let embedding = litellm
        .embeddings(LiteLlm::EMBEDDING_MODEL, text)
        .expect("embeddings");
    assert_eq!(embedding.len(), 8, "embedding {embedding:?}");
    let after = provider.stats().expect("provider stats");
    let served = |stats: &ProviderStats, path: &str| stats.by_path.get(path).copied().unwrap_or(0);
    for path in ["/v1/chat/completions", "/v1/embeddings"] {
        assert_eq!(
            served(&after, path),
            served(&before, path) + 1,
            "{path} requests at the provider: before {before:?}, after {after:?}"
        );
    }
    assert_eq!(
        after.models[before.models.len()..],
        ["fake-chat", "fake-embed"],
        "upstream model names"
    );
    let mut models = litellm.models().expect("models");
    models.sort();
    assert_eq!(
        models,
        [
            LiteLlm::CHAT_MODEL,
            LiteLlm::CHAT_MINI_MODEL,
            LiteLlm::EMBEDDING_MODEL
        ]
    );
    // LiteLLM found the provider and its cost map's host through the test's DNS server too.
    let asked: Vec<String> = dns.queries()[queries_before..]
        .iter()
        .map(|q| q.name.clone())
        .collect();
    for name in [PROVIDER_HOST, "raw.githubusercontent.com"] {
        assert!(
            asked.iter().any(|n| n == name),
            "LiteLLM did not ask for {name}; it asked for {asked:?}"
        );
    }

    litellm.stop().expect("stop LiteLLM");
    provider.stop().expect("stop the provider");
    dns.stop().expect("stop the DNS server");
    assert_eq!(ns.pids(), Ok(vec![]), "processes left in {}", ns.name());
}

#[test]
fn fastapi_app_serves_completions_under_uvicorn() {
    let Some(venv) = venv_or_skip() else { return };
    let Some(ns) = netns_or_skip("fastapi") else {
        return;
    };
    let mut app = FastApiApp::start(&venv, &ns).expect("start uvicorn");
    if let Err(e) = app.wait_ready(READY_TIMEOUT) {
        panic!("the FastAPI app did not come up: {e}");
    }
    assert!(
        cmdline(app.pid()).contains("bin/uvicorn app:app"),
        "pid {} is not uvicorn: {}",
        app.pid(),
        cmdline(app.pid())
    );
    assert_eq!(app.models(), Ok(vec![FastApiApp::MODEL.to_owned()]));
    let text = app.completion("tell me a story", 5).expect("completion");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 5, "completion {text:?}");
    let vocabulary = FastApiApp::vocabulary();
    assert!(
        words.iter().all(|w| vocabulary.contains(w)),
        "completion {text:?} is not made of the model file's words"
    );
    let wrong = app
        .post(
            "/v1/completions",
            &serde_json::json!({"model": "other", "prompt": "x"}),
        )
        .expect("request");
    assert_eq!(wrong.status, 404, "{}", wrong.body);
    assert!(app.log().contains("POST /v1/completions"), "{}", app.log());

    app.stop().expect("stop uvicorn");
    assert_eq!(ns.pids(), Ok(vec![]), "processes left in {}", ns.name());
}

#[test]
fn dns_server_answers_over_udp_and_tcp() {
    let Some(ns) = netns_or_skip("dns") else {
        return;
    };
    let dns = DnsServer::start(&ns, &dns_table()).expect("DNS server");
    for transport in [Transport::Udp, Transport::Tcp] {
        let reply = dns
            .lookup(PROVIDER_HOST, RecordType::A, transport)
            .expect("lookup");
        // QR, AA, RD, RA; NOERROR.
        assert_eq!(reply.flags, 0x8580, "{transport:?}: {reply:?}");
        assert_eq!(reply.answers, [(LOCALHOST, 60)], "{transport:?}");
        let nodata = dns
            .lookup(PROVIDER_HOST, RecordType::Aaaa, transport)
            .expect("lookup");
        assert_eq!((nodata.rcode, nodata.answers.len()), (0, 0), "{nodata:?}");
        let missing = dns
            .lookup("nothing.monitor-test", RecordType::A, transport)
            .expect("lookup");
        assert_eq!(missing.rcode, 3, "NXDOMAIN expected: {missing:?}");
    }
    // Several questions at once, each answered with its own id.
    thread::scope(|scope| {
        let lookups: Vec<_> = (0..16)
            .map(|i| {
                let dns = &dns;
                scope.spawn(move || {
                    let transport = [Transport::Udp, Transport::Tcp][i % 2];
                    dns.lookup(V6_HOST, RecordType::Aaaa, transport)
                })
            })
            .collect();
        for lookup in lookups {
            let reply = lookup.join().expect("lookup thread").expect("lookup");
            assert_eq!(reply.answers, [(LOCALHOST6, 60)], "{reply:?}");
        }
    });
    let asked = dns.queries();
    assert!(
        asked.iter().any(|q| q.transport == Transport::Tcp)
            && asked.iter().filter(|q| q.name == V6_HOST).count() >= 16,
        "{asked:?}"
    );
    assert_eq!(ns.resolve("nothing.monitor-test"), Ok(vec![]));
    if ns.ipv6_loopback() {
        assert_eq!(ns.resolve(V6_HOST), Ok(vec![LOCALHOST6]));
    } else {
        skip_or_fail(&format!(
            "namespace {} has no IPv6 loopback: IPv6 names are not tested",
            ns.name()
        ));
    }
}
