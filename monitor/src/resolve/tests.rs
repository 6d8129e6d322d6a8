//! Behaviour of [`HostResolver`] against loopback only: `localhost`, IP literals, a private
//! hosts file, a silent nameserver and a small fake DNS server on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Message, OpCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::entry::Source;
use super::{HostResolver, ResolverOptions};

/// Longest any test waits for something that should take milliseconds to a few seconds.
const DEADLINE: Duration = Duration::from_secs(15);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Options that never leave the machine: the given nameservers, short timeouts, no hosts
/// file and no getaddrinfo unless a test opts in.
fn hermetic(nameservers: Vec<SocketAddr>) -> ResolverOptions {
    ResolverOptions {
        dns_timeout: Some(Duration::from_secs(2)),
        dns_attempts: Some(1),
        nameservers: Some(nameservers),
        hosts_file: None,
        system_fallback: false,
        lookup_deadline: Duration::from_secs(5),
    }
}

/// `resolve_now`, failing the test if it does not finish in time.
async fn resolve_bounded(resolver: &HostResolver) {
    tokio::time::timeout(DEADLINE, resolver.resolve_now())
        .await
        .expect("resolve_now must finish within the deadline");
}

/// Polls `check` until it holds or the deadline passes.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A hosts file in the temp directory, removed on drop.
struct TempHosts(PathBuf);

impl TempHosts {
    fn new(contents: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("monitor-resolve-hosts-{}-{n}", std::process::id()));
        let file = Self(path);
        file.write(contents);
        file
    }

    fn write(&self, contents: &str) {
        std::fs::write(&self.0, contents).unwrap();
    }
}

impl Drop for TempHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What the fake DNS server answers, and how many queries it saw.
#[derive(Default)]
struct Zone {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    ttl: u32,
    queries: u32,
}

/// A UDP DNS server on 127.0.0.1 answering every A/AAAA query from a shared [`Zone`].
struct FakeDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: JoinHandle<()>,
}

impl FakeDns {
    async fn start(zone: Zone) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(zone));
        let task = tokio::spawn(serve(socket, Arc::clone(&zone)));
        Self { addr, zone, task }
    }

    fn set(&self, v4: &[Ipv4Addr], v6: &[Ipv6Addr], ttl: u32) {
        let mut zone = self.zone.lock().unwrap();
        zone.v4 = v4.to_vec();
        zone.v6 = v6.to_vec();
        zone.ttl = ttl;
    }

    fn queries(&self) -> u32 {
        self.zone.lock().unwrap().queries
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(request) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let mut response = Message::response(request.metadata.id, OpCode::Query);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_queries(request.queries.clone());
        {
            let mut zone = zone.lock().unwrap();
            zone.queries += 1;
            for query in &request.queries {
                let name = query.name().clone();
                let rdatas: Vec<RData> = match query.query_type() {
                    RecordType::A => zone.v4.iter().map(|a| RData::A(A(*a))).collect(),
                    RecordType::AAAA => zone.v6.iter().map(|a| RData::AAAA(AAAA(*a))).collect(),
                    _ => Vec::new(),
                };
                for rdata in rdatas {
                    response.add_answer(Record::from_rdata(name.clone(), zone.ttl, rdata));
                }
            }
        }
        let bytes = response.to_vec().unwrap();
        let _ = socket.send_to(&bytes, from).await;
    }
}

#[test]
fn handle_is_cheap_to_share_across_threads() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<HostResolver>();
}

#[tokio::test]
async fn ip_literals_return_themselves() {
    let resolver = HostResolver::with_options(hermetic(Vec::new()));
    assert_eq!(resolver.addrs("192.0.2.7"), vec![ip("192.0.2.7")]);
    assert_eq!(resolver.addrs("2001:db8::7"), vec![ip("2001:db8::7")]);
    assert_eq!(resolver.addrs("[2001:db8::7]"), vec![ip("2001:db8::7")]);
    // Not tracked, not resolved: literals need neither.
    resolver.set_hosts(vec!["192.0.2.7".into()]);
    assert!(resolver.table().is_empty());
}

#[tokio::test]
async fn unknown_host_has_no_addresses() {
    let resolver = HostResolver::with_options(hermetic(Vec::new()));
    assert!(resolver.addrs("api.example.com").is_empty());
    resolver.set_hosts(vec!["api.example.com".into()]);
    // Tracked but not resolved yet.
    assert!(resolver.addrs("api.example.com").is_empty());
}

#[tokio::test]
async fn localhost_resolves_with_system_config() {
    let resolver = HostResolver::new();
    resolver.set_hosts(vec!["localhost".into()]);
    resolve_bounded(&resolver).await;
    let addrs = resolver.addrs("localhost");
    assert!(!addrs.is_empty(), "localhost has no addresses");
    assert!(addrs.iter().all(IpAddr::is_loopback), "{addrs:?}");
    // Case and a trailing dot name the same host.
    assert_eq!(resolver.addrs("LocalHost."), addrs);
}

#[tokio::test]
async fn localhost_resolves_from_another_thread() {
    let resolver = HostResolver::new();
    resolver.set_hosts(vec!["localhost".into()]);
    resolve_bounded(&resolver).await;
    let reader = resolver.clone();
    let addrs = std::thread::spawn(move || reader.addrs("localhost"))
        .join()
        .unwrap();
    assert!(!addrs.is_empty());
}

#[tokio::test]
async fn hosts_file_names_resolve_without_dns_and_refresh_at_60s() {
    let hosts = TempHosts::new("# test\n127.0.0.7 model-api.test model-api\n::1 model-api.test\n");
    let options = ResolverOptions {
        hosts_file: Some(hosts.0.clone()),
        ..hermetic(Vec::new())
    };
    let resolver = HostResolver::with_options(options);
    resolver.set_hosts(vec!["model-api.test".into(), "model-api".into()]);
    let before = Instant::now();
    resolve_bounded(&resolver).await;
    assert_eq!(
        resolver.addrs("model-api.test"),
        vec![ip("127.0.0.7"), ip("::1")]
    );
    assert_eq!(resolver.addrs("model-api"), vec![ip("127.0.0.7")]);
    let table = resolver.table();
    let entry = &table["model-api.test"];
    assert_eq!(entry.source(), Some(Source::HostsFile));
    let delay = entry.next_refresh() - before;
    assert!(
        delay >= Duration::from_secs(60) && delay < Duration::from_secs(61),
        "{delay:?}"
    );
}

#[tokio::test]
async fn changed_address_keeps_the_old_one_for_a_grace_period() {
    let hosts = TempHosts::new("127.0.0.7 model-api.test\n");
    let options = ResolverOptions {
        hosts_file: Some(hosts.0.clone()),
        ..hermetic(Vec::new())
    };
    let resolver = HostResolver::with_options(options);
    resolver.set_hosts(vec!["model-api.test".into()]);
    resolve_bounded(&resolver).await;

    hosts.write("127.0.0.8 model-api.test\n");
    resolve_bounded(&resolver).await;
    assert_eq!(
        resolver.addrs("model-api.test"),
        vec![ip("127.0.0.8"), ip("127.0.0.7")],
        "the previous address stays acceptable for one more TTL"
    );
}

#[tokio::test]
async fn dropped_names_are_forgotten() {
    let hosts = TempHosts::new("127.0.0.7 a.test\n127.0.0.8 b.test\n");
    let options = ResolverOptions {
        hosts_file: Some(hosts.0.clone()),
        ..hermetic(Vec::new())
    };
    let resolver = HostResolver::with_options(options);
    resolver.set_hosts(vec!["a.test".into(), "b.test".into()]);
    resolve_bounded(&resolver).await;
    assert_eq!(resolver.addrs("a.test"), vec![ip("127.0.0.7")]);

    resolver.set_hosts(vec!["b.test".into()]);
    assert!(resolver.addrs("a.test").is_empty());
    assert_eq!(
        resolver.addrs("b.test"),
        vec![ip("127.0.0.8")],
        "kept names keep addresses"
    );
}

#[tokio::test]
async fn invalid_name_yields_nothing_and_does_not_hang() {
    // The system configuration, with short DNS timeouts; `.invalid` is answered negatively
    // without any query (RFC 6761), and the getaddrinfo fallback is skipped for it.
    let resolver = HostResolver::with_options(ResolverOptions {
        dns_timeout: Some(Duration::from_secs(2)),
        dns_attempts: Some(1),
        lookup_deadline: Duration::from_secs(5),
        ..ResolverOptions::default()
    });
    resolver.set_hosts(vec!["no-such-model-api.invalid".into()]);
    resolve_bounded(&resolver).await;
    assert!(resolver.addrs("no-such-model-api.invalid").is_empty());
    let table = resolver.table();
    let entry = &table["no-such-model-api.invalid"];
    assert_eq!(entry.failures(), 1);
    assert!(entry.next_refresh() <= Instant::now() + Duration::from_secs(1));
}

#[tokio::test]
async fn silent_nameserver_fails_within_the_timeout() {
    // Bound but never read: queries to it go unanswered.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = HostResolver::with_options(hermetic(vec![silent.local_addr().unwrap()]));
    resolver.set_hosts(vec!["unanswered.test".into()]);
    let started = Instant::now();
    resolve_bounded(&resolver).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(resolver.addrs("unanswered.test").is_empty());
    assert_eq!(resolver.table()["unanswered.test"].failures(), 1);

    // A second failure backs off further (1 s, then 2 s).
    resolve_bounded(&resolver).await;
    let table = resolver.table();
    let entry = &table["unanswered.test"];
    assert_eq!(entry.failures(), 2);
    let delay = entry.next_refresh() - Instant::now();
    assert!(
        delay > Duration::from_secs(1) && delay <= Duration::from_secs(2),
        "{delay:?}"
    );
}

#[tokio::test]
async fn dns_answers_are_scheduled_at_their_ttl() {
    let dns = FakeDns::start(Zone::default()).await;
    dns.set(
        &[Ipv4Addr::new(192, 0, 2, 10)],
        &["2001:db8::10".parse().unwrap()],
        42,
    );
    let resolver = HostResolver::with_options(hermetic(vec![dns.addr]));
    resolver.set_hosts(vec!["api.model.test".into()]);
    let before = Instant::now();
    resolve_bounded(&resolver).await;
    assert_eq!(
        resolver.addrs("api.model.test"),
        vec![ip("192.0.2.10"), ip("2001:db8::10")]
    );
    let table = resolver.table();
    let entry = &table["api.model.test"];
    assert_eq!(entry.source(), Some(Source::Dns));
    let delay = entry.next_refresh() - before;
    assert!(
        delay > Duration::from_secs(40) && delay <= Duration::from_secs(43),
        "refresh should follow the 42 s TTL, got {delay:?}"
    );
}

#[tokio::test]
async fn dns_change_is_seen_on_refresh_with_grace_for_the_old_address() {
    let dns = FakeDns::start(Zone::default()).await;
    dns.set(&[Ipv4Addr::new(192, 0, 2, 10)], &[], 30);
    let resolver = HostResolver::with_options(hermetic(vec![dns.addr]));
    resolver.set_hosts(vec!["api.model.test".into()]);
    resolve_bounded(&resolver).await;
    assert_eq!(resolver.addrs("api.model.test"), vec![ip("192.0.2.10")]);
    let queries = dns.queries();

    dns.set(&[Ipv4Addr::new(192, 0, 2, 11)], &[], 30);
    resolve_bounded(&resolver).await;
    assert!(
        dns.queries() > queries,
        "each resolution asks the server again"
    );
    assert_eq!(
        resolver.addrs("api.model.test"),
        vec![ip("192.0.2.11"), ip("192.0.2.10")]
    );
}

#[tokio::test]
async fn run_resolves_new_hosts_and_stops_on_shutdown() {
    let dns = FakeDns::start(Zone::default()).await;
    dns.set(&[Ipv4Addr::new(192, 0, 2, 20)], &[], 300);
    let resolver = HostResolver::with_options(hermetic(vec![dns.addr]));
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(resolver.clone().run(shutdown));

    // Hosts added while the task idles are picked up without waiting for a timer.
    resolver.set_hosts(vec!["api.model.test".into()]);
    wait_for("the background task to resolve the host", || {
        !resolver.addrs("api.model.test").is_empty()
    })
    .await;
    assert_eq!(resolver.addrs("api.model.test"), vec![ip("192.0.2.20")]);

    stop.send(true).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("run must stop on shutdown")
        .unwrap();
}

#[tokio::test]
async fn run_stops_when_the_shutdown_sender_is_dropped() {
    let resolver = HostResolver::with_options(hermetic(Vec::new()));
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(resolver.run(shutdown));
    drop(stop);
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("run must stop when the sender is gone")
        .unwrap();
}

#[tokio::test]
async fn run_retries_failed_hosts_with_backoff() {
    // No records at first: the first resolution fails.
    let dns = FakeDns::start(Zone::default()).await;
    let resolver = HostResolver::with_options(hermetic(vec![dns.addr]));
    resolver.set_hosts(vec!["late.model.test".into()]);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(resolver.clone().run(shutdown));

    wait_for("the first (failing) resolution", || {
        resolver.table()["late.model.test"].failures() >= 1
    })
    .await;
    dns.set(&[Ipv4Addr::new(192, 0, 2, 30)], &[], 300);
    // Retried after the 1 s backoff, without anyone calling resolve_now.
    wait_for("the retry to pick up the new record", || {
        !resolver.addrs("late.model.test").is_empty()
    })
    .await;
    assert_eq!(resolver.table()["late.model.test"].failures(), 0);

    stop.send(true).unwrap();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn run_refreshes_when_the_ttl_expires() {
    // A 1 s TTL is clamped to the 5 s minimum.
    let dns = FakeDns::start(Zone::default()).await;
    dns.set(&[Ipv4Addr::new(192, 0, 2, 40)], &[], 1);
    let resolver = HostResolver::with_options(hermetic(vec![dns.addr]));
    resolver.set_hosts(vec!["short.model.test".into()]);
    resolve_bounded(&resolver).await;
    let first = Instant::now();
    dns.set(&[Ipv4Addr::new(192, 0, 2, 41)], &[], 1);

    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(resolver.clone().run(shutdown));
    wait_for("the TTL-driven refresh", || {
        resolver
            .addrs("short.model.test")
            .contains(&ip("192.0.2.41"))
    })
    .await;
    let waited = first.elapsed();
    assert!(
        waited >= Duration::from_millis(4900),
        "refreshed after {waited:?}, before the clamped TTL"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
}
