//! One resolution of one host: the hosts file first (as the C library does with
//! `hosts: files dns`), then DNS for A and AAAA with their TTLs, then getaddrinfo.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_resolver::net::NetError;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, TokioResolver};

use super::config::ResolverOptions;
use super::entry::{Answer, Source};
use super::error::ResolveError;
use super::schedule::UNTIMED_TTL;

/// Resolves `host` (already normalised: lower case, no trailing dot, not an IP literal),
/// bounded by the options' lookup deadline.
pub async fn resolve_host(
    dns: Option<&TokioResolver>,
    options: &ResolverOptions,
    host: &str,
) -> Result<Answer, ResolveError> {
    let name = Name::from_str(host).map_err(|source| ResolveError::InvalidName {
        host: host.to_owned(),
        source,
    })?;
    let deadline = options.lookup_deadline;
    tokio::time::timeout(deadline, resolve_name(dns, options, host, name))
        .await
        .unwrap_or_else(|_| {
            Err(ResolveError::Timeout {
                host: host.to_owned(),
                deadline,
            })
        })
}

/// The resolution chain without the deadline.
async fn resolve_name(
    dns: Option<&TokioResolver>,
    options: &ResolverOptions,
    host: &str,
    name: Name,
) -> Result<Answer, ResolveError> {
    if let Some(path) = &options.hosts_file
        && let Some(answer) = from_hosts_file(path, &name).await
    {
        return Ok(answer);
    }
    let dns_error = match dns {
        Some(resolver) => match from_dns(resolver, host, name).await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        },
        None => ResolveError::NoDns {
            host: host.to_owned(),
        },
    };
    // RFC 6761 6.4: `.invalid` names get an immediate negative answer, no further queries.
    if !options.system_fallback || is_invalid_tld(host) {
        return Err(dns_error);
    }
    from_system(host)
        .await
        .map_err(|source| ResolveError::System {
            host: host.to_owned(),
            dns: Box::new(dns_error),
            source,
        })
}

/// Addresses for `name` in the hosts file at `path`, if it lists any. A missing or
/// unreadable file counts as listing nothing.
async fn from_hosts_file(path: &Path, name: &Name) -> Option<Answer> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "cannot read hosts file; skipping it");
            return None;
        }
    };
    let mut hosts = Hosts::default();
    if let Err(error) = hosts.read_hosts_conf(bytes.as_slice()) {
        tracing::debug!(path = %path.display(), %error, "cannot parse hosts file; skipping it");
        return None;
    }
    let family = |record_type| -> Vec<IpAddr> {
        hosts
            .lookup_static_host(&Query::query(name.clone(), record_type))
            .map(|lookup| {
                lookup
                    .answers()
                    .iter()
                    .filter_map(|r| r.data.ip_addr())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (v4, v6) = (family(RecordType::A), family(RecordType::AAAA));
    if v4.is_empty() && v6.is_empty() {
        return None;
    }
    Some(Answer {
        v4: Some(v4),
        v6: Some(v6),
        ttl: UNTIMED_TTL,
        source: Source::HostsFile,
    })
}

/// Outcome of the query for one address family.
enum Family {
    /// Addresses and the time they may be cached.
    Found(Vec<IpAddr>, Duration),
    /// The server said there are none (NXDOMAIN or no data).
    Empty,
    /// No usable response.
    Failed(NetError),
}

impl Family {
    /// Classifies a lookup result observed at `now`.
    fn classify(result: Result<hickory_resolver::lookup::Lookup, NetError>, now: Instant) -> Self {
        match result {
            Ok(lookup) => {
                let addrs: Vec<IpAddr> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| r.data.ip_addr())
                    .collect();
                if addrs.is_empty() {
                    Self::Empty
                } else {
                    Self::Found(addrs, lookup.valid_until().saturating_duration_since(now))
                }
            }
            Err(error) if error.is_no_records_found() => Self::Empty,
            Err(error) => Self::Failed(error),
        }
    }

    /// TTL of a positive answer.
    fn ttl(&self) -> Option<Duration> {
        match self {
            Self::Found(_, ttl) => Some(*ttl),
            Self::Empty | Self::Failed(_) => None,
        }
    }

    /// The family's addresses as far as known: `None` when its query failed.
    fn into_known(self) -> Option<Vec<IpAddr>> {
        match self {
            Self::Found(addrs, _) => Some(addrs),
            Self::Empty => Some(Vec::new()),
            Self::Failed(_) => None,
        }
    }
}

/// A and AAAA queries in parallel; succeeds if either family has addresses.
async fn from_dns(
    resolver: &TokioResolver,
    host: &str,
    name: Name,
) -> Result<Answer, ResolveError> {
    let (a, aaaa) = tokio::join!(
        resolver.lookup(name.clone(), RecordType::A),
        resolver.lookup(name, RecordType::AAAA),
    );
    let now = Instant::now();
    let (v4, v6) = (Family::classify(a, now), Family::classify(aaaa, now));
    let ttl = match (v4.ttl(), v6.ttl()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (one, other) => one.or(other),
    };
    match (ttl, v4, v6) {
        (Some(ttl), v4, v6) => Ok(Answer {
            v4: v4.into_known(),
            v6: v6.into_known(),
            ttl,
            source: Source::Dns,
        }),
        (None, Family::Failed(source), _) | (None, _, Family::Failed(source)) => {
            Err(ResolveError::Dns {
                host: host.to_owned(),
                source,
            })
        }
        (None, _, _) => Err(ResolveError::NoRecords {
            host: host.to_owned(),
        }),
    }
}

/// getaddrinfo through tokio's blocking pool.
async fn from_system(host: &str) -> std::io::Result<Answer> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for addr in tokio::net::lookup_host((host, 0)).await? {
        let list = if addr.is_ipv4() { &mut v4 } else { &mut v6 };
        if !list.contains(&addr.ip()) {
            list.push(addr.ip());
        }
    }
    if v4.is_empty() && v6.is_empty() {
        return Err(std::io::Error::other("getaddrinfo returned no addresses"));
    }
    Ok(Answer {
        v4: Some(v4),
        v6: Some(v6),
        ttl: UNTIMED_TTL,
        source: Source::System,
    })
}

/// Whether `host` is under the reserved `.invalid` top-level domain.
fn is_invalid_tld(host: &str) -> bool {
    host == "invalid" || host.ends_with(".invalid")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{from_system, is_invalid_tld};
    use crate::resolve::entry::Source;

    #[tokio::test]
    async fn getaddrinfo_resolves_localhost() {
        let answer = tokio::time::timeout(Duration::from_secs(10), from_system("localhost"))
            .await
            .expect("getaddrinfo(localhost) must not hang")
            .expect("localhost resolves through the C library");
        let addrs: Vec<_> = answer.v4.iter().chain(&answer.v6).flatten().collect();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        assert_eq!(answer.source, Source::System);
        assert_eq!(answer.ttl, Duration::from_secs(60));
    }

    #[test]
    fn recognises_the_invalid_tld() {
        assert!(is_invalid_tld("invalid"));
        assert!(is_invalid_tld("model-api.invalid"));
        assert!(!is_invalid_tld("invalid.example.com"));
        assert!(!is_invalid_tld("notinvalid"));
    }
}
