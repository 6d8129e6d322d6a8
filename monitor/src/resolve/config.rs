//! Resolver settings and construction of the DNS client from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

/// Where the static host table lives on Unix.
const HOSTS_FILE: &str = "/etc/hosts";

/// How [`HostResolver`](super::HostResolver) finds addresses. The default reads the system
/// configuration; tests point it at loopback and shorten the timeouts.
#[derive(Debug, Clone)]
pub struct ResolverOptions {
    /// Time to wait for one DNS response; `None` keeps the `timeout` of `/etc/resolv.conf`.
    pub dns_timeout: Option<Duration>,
    /// Tries per DNS query (at least 1); `None` keeps the `attempts` of `/etc/resolv.conf`.
    pub dns_attempts: Option<usize>,
    /// Nameservers to query (UDP) instead of those in `/etc/resolv.conf`.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// Static host table consulted first, re-read on every resolution; `None` skips it.
    pub hosts_file: Option<PathBuf>,
    /// Ask getaddrinfo when DNS has no answer (names from NSS modules, a broken resolv.conf).
    pub system_fallback: bool,
    /// Upper bound on one host's whole resolution (DNS plus fallback).
    pub lookup_deadline: Duration,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        Self {
            dns_timeout: None,
            dns_attempts: None,
            nameservers: None,
            hosts_file: Some(PathBuf::from(HOSTS_FILE)),
            system_fallback: true,
            lookup_deadline: Duration::from_secs(30),
        }
    }
}

/// Builds the DNS client, or `None` when no usable configuration exists (for example a
/// resolv.conf without nameservers); resolution then relies on the hosts file and getaddrinfo.
pub fn build_dns(options: &ResolverOptions) -> Option<TokioResolver> {
    let mut builder = match &options.nameservers {
        Some(servers) => {
            let servers = servers.iter().map(|addr| udp_server(*addr)).collect();
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        }
        None => match TokioResolver::builder_tokio() {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot use /etc/resolv.conf for DNS; allowed hosts are resolved through \
                     the hosts file and getaddrinfo only, without TTLs"
                );
                return None;
            }
        },
    };
    let opts = builder.options_mut();
    if let Some(timeout) = options.dns_timeout {
        opts.timeout = timeout;
    }
    if opts.timeout.is_zero() {
        opts.timeout = Duration::from_secs(5);
    }
    if let Some(attempts) = options.dns_attempts {
        // hickory counts retries after the first try.
        opts.attempts = attempts.saturating_sub(1);
    }
    // This module keeps the answers and asks again exactly when their TTL runs out; a second
    // cache underneath would only hand back the answer being refreshed.
    opts.cache_size = 0;
    // The hosts file is read by this module on every resolution, so edits are seen; hickory
    // would read it once.
    opts.use_hosts_file = ResolveHosts::Never;
    match builder.build() {
        Ok(resolver) => Some(resolver),
        Err(error) => {
            tracing::warn!(%error, "cannot build the DNS client; falling back to getaddrinfo");
            None
        }
    }
}

/// A UDP-only nameserver at `addr` (any port).
fn udp_server(addr: SocketAddr) -> NameServerConfig {
    let mut server = NameServerConfig::udp(addr.ip());
    for connection in &mut server.connections {
        connection.port = addr.port();
    }
    server
}
