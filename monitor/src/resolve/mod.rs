//! Addresses of the host names that workload profiles allow connections to.
//!
//! A profile says "may connect to `api.openai.com`"; the sensor sees a connect to an IP
//! address. [`HostResolver`] closes the gap: it resolves every allowed name (hosts file, then
//! DNS A and AAAA, then getaddrinfo), re-resolves each when its record TTL runs out, and
//! answers [`HostResolver::addrs`] from memory without waiting, from any thread.
//!
//! Timing: the next resolution of a host is due after its TTL clamped to [5 s, 1 h]; answers
//! without a TTL (hosts file, getaddrinfo) are refreshed every 60 s; failures are retried
//! after 1 s, doubling up to 60 s, and keep the last known addresses. An address that drops
//! out of an answer stays acceptable for one more TTL of the answer that had it, so a connect
//! racing a DNS change is not reported.

mod config;
mod entry;
mod error;
mod lookup;
mod resolv_conf;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use hickory_resolver::TokioResolver;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

pub use config::ResolverOptions;
use entry::{HostEntry, Source};
pub use error::ResolveError;
pub use resolv_conf::nameservers;

/// Tracked hosts keyed by normalised name.
type Table = HashMap<String, HostEntry>;

/// State shared by every clone of a [`HostResolver`].
struct Shared {
    /// What is known about each tracked host.
    table: RwLock<Table>,
    /// DNS client; `None` when the system configuration is unusable.
    dns: Option<TokioResolver>,
    /// Settings the resolver was built with.
    options: ResolverOptions,
    /// Wakes [`HostResolver::run`] when the tracked set changes.
    changed: Notify,
    /// Failed resolutions since start (for the metrics).
    failures: std::sync::atomic::AtomicU64,
}

/// Keeps the current addresses of a set of host names. Cloning is cheap (one `Arc`); all
/// clones share the same table, so the background task, the rule reloader and the rules
/// engine can each hold one.
#[derive(Clone)]
pub struct HostResolver {
    shared: Arc<Shared>,
}

impl Default for HostResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for HostResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostResolver")
            .field("hosts", &self.table().len())
            .field("dns", &self.shared.dns.is_some())
            .finish_non_exhaustive()
    }
}

impl HostResolver {
    /// A resolver using the system configuration (`/etc/resolv.conf`, `/etc/hosts`). An
    /// unusable resolv.conf is logged and resolution falls back to getaddrinfo; this never fails.
    pub fn new() -> Self {
        Self::with_options(ResolverOptions::default())
    }

    /// A resolver with explicit settings (nameservers, timeouts, hosts file).
    pub fn with_options(options: ResolverOptions) -> Self {
        let dns = config::build_dns(&options);
        Self {
            shared: Arc::new(Shared {
                table: RwLock::new(Table::new()),
                dns,
                options,
                changed: Notify::new(),
                failures: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the set of tracked names. Names already tracked keep their addresses and
    /// schedule; new ones are resolved by [`run`](Self::run) right away (or by the next
    /// [`resolve_now`](Self::resolve_now)); names no longer listed are forgotten. IP literals
    /// need no tracking and are skipped; case and a trailing dot do not matter.
    pub fn set_hosts(&self, hosts: Vec<String>) {
        let wanted: HashSet<String> = hosts
            .iter()
            .filter(|host| ip_literal(host).is_none())
            .filter_map(|host| normalize(host))
            .collect();
        let now = Instant::now();
        {
            let mut table = self.table_mut();
            table.retain(|name, _| wanted.contains(name));
            for name in wanted {
                table.entry(name).or_insert_with(|| HostEntry::new(now));
            }
        }
        self.shared.changed.notify_one();
    }

    /// The addresses `host` currently has: those of the latest answer plus any still in
    /// their grace period. Empty for a name not tracked or not resolved yet. An IP literal
    /// (`192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`) is its own address. Never blocks on
    /// the network.
    pub fn addrs(&self, host: &str) -> Vec<IpAddr> {
        if let Some(ip) = ip_literal(host) {
            return vec![ip];
        }
        let Some(name) = normalize(host) else {
            return Vec::new();
        };
        self.table()
            .get(&name)
            .map(|entry| entry.addrs(Instant::now()))
            .unwrap_or_default()
    }

    /// Resolves every tracked host once, concurrently, and returns when all are done
    /// (each bounded by the lookup deadline). Failures are logged and scheduled for retry.
    pub async fn resolve_now(&self) {
        let names: Vec<String> = self.table().keys().cloned().collect();
        let mut tasks = JoinSet::new();
        for name in names {
            let this = self.clone();
            tasks.spawn(async move { this.refresh(&name).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(error) = done {
                tracing::error!(%error, "host resolution task failed");
            }
        }
    }

    /// Background task: resolves each tracked host when it is due and reschedules it, until
    /// `shutdown` becomes `true` or its sender is dropped. Hosts are resolved concurrently;
    /// one slow name does not delay the others.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let (due, next) = self.due_hosts(Instant::now(), &in_flight);
            for name in due {
                let this = self.clone();
                let task_name = name.clone();
                let handle = tasks.spawn(async move { this.refresh(&task_name).await });
                in_flight.insert(handle.id(), name);
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(done) = tasks.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(error) => {
                            tracing::error!(%error, "host resolution task failed");
                            error.id()
                        }
                    };
                    in_flight.remove(&id);
                }
                () = self.shared.changed.notified() => {}
                () = sleep_until(next) => {}
            }
        }
        tasks.shutdown().await;
    }

    /// Hosts due at `now` and not already being resolved, and the earliest time another
    /// becomes due.
    fn due_hosts(
        &self,
        now: Instant,
        in_flight: &HashMap<tokio::task::Id, String>,
    ) -> (Vec<String>, Option<Instant>) {
        let busy: HashSet<&str> = in_flight.values().map(String::as_str).collect();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (name, entry) in self.table().iter() {
            if busy.contains(name.as_str()) {
                continue;
            }
            let at = entry.next_refresh();
            if at <= now {
                due.push(name.clone());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (due, next)
    }

    /// Resolves one host and records the outcome.
    async fn refresh(&self, host: &str) {
        let result =
            lookup::resolve_host(self.shared.dns.as_ref(), &self.shared.options, host).await;
        self.record(host, result, Instant::now());
    }

    /// Stores the outcome of resolving `host` at `now` and logs what changed: the first
    /// failure of a streak as a warning, repeats at debug level, the recovery once.
    fn record(&self, host: &str, result: Result<entry::Answer, ResolveError>, now: Instant) {
        let event = {
            let mut table = self.table_mut();
            // The host may have been dropped from the set while it was being resolved.
            let Some(entry) = table.get_mut(host) else {
                return;
            };
            match result {
                Ok(answer) => {
                    let source = answer.source;
                    let ended_streak = entry.record_answer(answer, now);
                    Event::Resolved {
                        source,
                        addrs: entry.addrs(now),
                        ended_streak,
                    }
                }
                Err(error) => {
                    self.shared
                        .failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Event::Failed {
                        streak: entry.record_failure(now),
                        error,
                    }
                }
            }
        };
        event.log(host);
    }

    /// Failed resolutions since start.
    pub fn failures(&self) -> u64 {
        self.shared
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Read access to the table; a panic elsewhere while holding the lock does not disable it.
    fn table(&self) -> RwLockReadGuard<'_, Table> {
        self.shared
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the table.
    fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.shared
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The outcome of one resolution, logged after the table lock is released.
enum Event {
    /// The host has addresses.
    Resolved {
        /// Where the answer came from.
        source: Source,
        /// Addresses now accepted.
        addrs: Vec<IpAddr>,
        /// Length of the failure streak this success ended.
        ended_streak: u32,
    },
    /// The resolution failed.
    Failed {
        /// Consecutive failures, this one included.
        streak: u32,
        /// What went wrong.
        error: ResolveError,
    },
}

impl Event {
    /// Logs the event for `host`, at most one warning per failure streak.
    fn log(self, host: &str) {
        match self {
            Self::Resolved {
                source,
                addrs,
                ended_streak: 0,
            } => tracing::debug!(host, ?source, ?addrs, "resolved allowed host"),
            Self::Resolved {
                source,
                addrs,
                ended_streak,
            } => tracing::info!(
                host,
                ?source,
                ?addrs,
                failures = ended_streak,
                "allowed host resolves again"
            ),
            Self::Failed { streak: 1, error } => tracing::warn!(
                host,
                %error,
                "cannot resolve allowed host; keeping its last known addresses and retrying \
                 with backoff (further failures are logged at debug level)"
            ),
            Self::Failed { streak, error } => {
                tracing::debug!(host, %error, failures = streak, "allowed host still unresolved");
            }
        }
    }
}

/// Sleeps until `at`, or forever when nothing is scheduled.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// `host` as an IP address, if it is one (IPv6 possibly in brackets).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// The table key for `host`: trimmed, lower case, without a trailing dot; `None` if empty.
fn normalize(host: &str) -> Option<String> {
    let host = host.trim();
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}
