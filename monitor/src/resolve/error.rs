//! Why a host could not be resolved.

use std::time::Duration;

use hickory_resolver::net::NetError;
use hickory_resolver::proto::ProtoError;

/// A failed resolution of one host. The resolver logs these and retries; they never stop it.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name is not a syntactically valid DNS name; fix the profile that lists it.
    #[error("`{host}` is not a valid host name (check the profile that lists it): {source}")]
    InvalidName {
        /// The name as configured.
        host: String,
        /// The parser's complaint.
        #[source]
        source: ProtoError,
    },
    /// The name does not exist, or has neither A nor AAAA records.
    #[error("`{host}` has no A or AAAA records (the name may not exist)")]
    NoRecords {
        /// The name looked up.
        host: String,
    },
    /// No DNS client could be configured (see the warning logged at start).
    #[error(
        "cannot query DNS for `{host}`: no usable nameserver configuration in /etc/resolv.conf"
    )]
    NoDns {
        /// The name looked up.
        host: String,
    },
    /// DNS queries failed (timeout, unreachable or failing server).
    #[error("DNS lookup of `{host}` failed: {source}")]
    Dns {
        /// The name looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: NetError,
    },
    /// The C library resolver (getaddrinfo) failed after DNS gave nothing.
    #[error("system resolver could not resolve `{host}` ({source}); before that: {dns}")]
    System {
        /// The name looked up.
        host: String,
        /// What DNS said first, for context.
        dns: Box<ResolveError>,
        /// getaddrinfo's error.
        #[source]
        source: std::io::Error,
    },
    /// No answer arrived within the lookup deadline.
    #[error("lookup of `{host}` did not finish within {deadline:?}; is a nameserver reachable?")]
    Timeout {
        /// The name looked up.
        host: String,
        /// The deadline that passed.
        deadline: Duration,
    },
}
