//! Parsing of `--output` specs for the network sinks:
//!
//! | spec | sink |
//! | --- | --- |
//! | `syslog+udp://HOST[:514]`, `syslog+tcp://HOST[:514]`, `syslog+tls://HOST[:6514]` | RFC 5424 syslog |
//! | `http://...`, `https://...` | JSON array batches POSTed to a webhook |
//! | `splunk+https://HOST[:8088][/PATH]?token_file=PATH` (`splunk+http` too) | Splunk HEC |
//! | `elasticsearch+https://HOST[:9200][/PREFIX]/INDEX` (`elasticsearch+http` too) | bulk API |
//!
//! Query options: `ca=PATH` (PEM CA bundle replacing the built-in roots), `cert=PATH&key=PATH`
//! (client certificate), `format=native|ocsf`, `events=true|false` (also forward every event),
//! `token_file=PATH` / `token_env=VAR`, `timeout=10s` (also `500ms`, `1m`) and, for syslog, `facility=local0` (a name or 0..=23). A webhook passes
//! any other query parameter through to its URL; elsewhere an unknown option is an error.
//!
//! Tokens are read here, once, and kept in [`Secret`]. Nothing that could hold a secret (tokens,
//! URL paths and queries, which webhooks often use as credentials) goes into names or errors.

use std::{fmt, time::Duration};

use sha2::{Digest as _, Sha256};
use url::Url;

pub use super::error::SpecError;
pub use super::options::{Facility, Secret};
use super::{options::Options, tls::TlsConfig};

/// Request and connect timeout when the spec sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::ocsf::Format;

/// How syslog messages travel.
#[derive(Clone, Debug)]
pub enum SyslogTransport {
    Udp,
    Tcp,
    Tls(TlsConfig),
}

/// Where and how to send syslog.
#[derive(Clone, Debug)]
pub struct SyslogTarget {
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub transport: SyslogTransport,
    pub facility: Facility,
}

/// Which HTTP receiver protocol to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpKind {
    /// JSON array of alerts; `Authorization: Bearer` when a token is given.
    Webhook,
    /// Splunk HTTP Event Collector; `Authorization: Splunk`.
    Splunk,
    /// Elasticsearch `_bulk`; `Authorization: ApiKey` when a token is given.
    Elasticsearch,
}

/// Where and how to POST batches.
#[derive(Clone)]
pub struct HttpTarget {
    pub kind: HttpKind,
    /// The full URL every batch is POSTed to. May hold credentials (webhooks): never log it.
    pub endpoint: Url,
    pub token: Option<Secret>,
    pub tls: Option<TlsConfig>,
}

impl fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTarget")
            .field("kind", &self.kind)
            .field("endpoint", &redact(self.endpoint.as_str()))
            .field("token", &self.token)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The receiver an output spec names.
#[derive(Clone, Debug)]
pub enum Target {
    Syslog(SyslogTarget),
    Http(HttpTarget),
}

/// A parsed, checked `--output` spec for a network sink.
#[derive(Clone, Debug)]
pub struct SinkSpec {
    pub target: Target,
    /// `format=`; `None`: the agent's `--format`.
    pub format: Option<Format>,
    /// `events=`; `None`: whether the agent runs with `--events`.
    pub events: Option<bool>,
    /// Connect, write and request timeout.
    pub timeout: Duration,
    name: String,
}

impl SinkSpec {
    /// A name safe to log: scheme, host, port (and index), never paths, queries or tokens.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    SyslogUdp,
    SyslogTcp,
    SyslogTls,
    Webhook,
    Splunk,
    Elasticsearch,
}

/// Whether `spec` is URL-shaped (`SCHEME://...`) and so belongs to this module; `stdout`, `-`
/// and `file:PATH` do not.
pub fn is_network_spec(spec: &str) -> bool {
    spec.split_once("://")
        .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.eq_ignore_ascii_case("file"))
}

/// Parses and checks an output spec, reading its token and TLS files now.
pub fn parse(spec: &str) -> Result<SinkSpec, SpecError> {
    let shown = redact(spec);
    let scheme_str = spec.split_once("://").map_or("", |(s, _)| s);
    let lower = scheme_str.to_ascii_lowercase();
    let (scheme, tls) = match lower.as_str() {
        "syslog+udp" => (Scheme::SyslogUdp, false),
        "syslog+tcp" => (Scheme::SyslogTcp, false),
        "syslog+tls" => (Scheme::SyslogTls, true),
        "http" | "https" => (Scheme::Webhook, lower == "https"),
        "splunk+http" | "splunk+https" => (Scheme::Splunk, lower.ends_with('s')),
        "elasticsearch+http" | "elasticsearch+https" => {
            (Scheme::Elasticsearch, lower.ends_with('s'))
        }
        _ => {
            return Err(SpecError::UnknownScheme {
                spec: shown,
                scheme: scheme_str.to_owned(),
            });
        }
    };
    let mut url = Url::parse(spec).map_err(|source| SpecError::BadUrl {
        spec: shown.clone(),
        source,
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SpecError::CredentialsInUrl { spec: shown });
    }
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => return Err(SpecError::MissingHost { spec: shown }),
    };
    let opts = Options::from_url(&url, &shown, scheme == Scheme::Webhook)?;
    let syslog = matches!(
        scheme,
        Scheme::SyslogUdp | Scheme::SyslogTcp | Scheme::SyslogTls
    );
    opts.check_applicable(syslog, tls, &shown)?;
    let port = url.port_or_known_default().unwrap_or(match scheme {
        Scheme::SyslogTls => 6514,
        Scheme::SyslogUdp | Scheme::SyslogTcp => 514,
        Scheme::Splunk => 8088,
        Scheme::Elasticsearch => 9200,
        Scheme::Webhook if tls => 443,
        Scheme::Webhook => 80,
    });
    let tls_config = if tls {
        let client = match (&opts.cert, &opts.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => return Err(SpecError::CertWithoutKey { spec: shown }),
        };
        Some(
            TlsConfig::load(opts.ca.as_deref(), client).map_err(|source| SpecError::Tls {
                spec: shown.clone(),
                source: Box::new(source),
            })?,
        )
    } else {
        None
    };
    let token = opts.read_token(&shown)?;
    let http_scheme = if tls { "https" } else { "http" };
    let path = url.path().trim_end_matches('/').to_owned();
    let (target, name) = match scheme {
        Scheme::SyslogUdp | Scheme::SyslogTcp | Scheme::SyslogTls => {
            if !path.is_empty() {
                return Err(SpecError::UnexpectedPath {
                    spec: shown,
                    what: "syslog",
                });
            }
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if tls {
                // Checked now so a bad name is a start-up error, not a failure at each send.
                rustls::pki_types::ServerName::try_from(host).map_err(|source| {
                    SpecError::ServerName {
                        spec: shown.clone(),
                        host: host.to_owned(),
                        source,
                    }
                })?;
            }
            let transport = match tls_config {
                Some(t) => SyslogTransport::Tls(t),
                None if scheme == Scheme::SyslogUdp => SyslogTransport::Udp,
                None => SyslogTransport::Tcp,
            };
            let target = SyslogTarget {
                host: host.to_owned(),
                port,
                transport,
                facility: opts.facility.unwrap_or(Facility::LOCAL0),
            };
            let name = format!("{lower}://{}:{port}", url.host_str().unwrap_or(host));
            (Target::Syslog(target), name)
        }
        Scheme::Webhook => {
            let query = (!opts.passthrough.is_empty()).then(|| {
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&opts.passthrough)
                    .finish()
            });
            url.set_query(query.as_deref());
            url.set_fragment(None);
            // Several webhooks on one host differ only in the (secret) path and query: a short
            // digest of the URL tells them apart without showing it.
            let name = if path.is_empty() && url.query().is_none() {
                format!("{lower}://{host}:{port}")
            } else {
                let digest = Sha256::digest(url.as_str().as_bytes());
                format!(
                    "{lower}://{host}:{port}/…#{:02x}{:02x}{:02x}{:02x}",
                    digest[0], digest[1], digest[2], digest[3]
                )
            };
            (http_target(HttpKind::Webhook, url, token, tls_config), name)
        }
        Scheme::Splunk => {
            if token.is_none() {
                return Err(SpecError::TokenRequired { spec: shown });
            }
            let path = if path.is_empty() {
                "/services/collector/event"
            } else {
                &path
            };
            let endpoint = endpoint(http_scheme, &host, port, path, &shown)?;
            let name = format!("{lower}://{host}:{port}");
            (
                http_target(HttpKind::Splunk, endpoint, token, tls_config),
                name,
            )
        }
        Scheme::Elasticsearch => {
            let (prefix, index) = path.rsplit_once('/').unwrap_or(("", ""));
            check_index(index, &shown)?;
            let bulk = format!("{prefix}/{index}/_bulk");
            let endpoint = endpoint(http_scheme, &host, port, &bulk, &shown)?;
            let name = format!("{lower}://{host}:{port}/{index}");
            let target = http_target(HttpKind::Elasticsearch, endpoint, token, tls_config);
            (target, name)
        }
    };
    Ok(SinkSpec {
        target,
        format: opts.format,
        events: opts.events,
        timeout: opts.timeout.unwrap_or(DEFAULT_TIMEOUT),
        name,
    })
}

fn http_target(
    kind: HttpKind,
    endpoint: Url,
    token: Option<Secret>,
    tls: Option<TlsConfig>,
) -> Target {
    Target::Http(HttpTarget {
        kind,
        endpoint,
        token,
        tls,
    })
}

fn endpoint(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    shown: &str,
) -> Result<Url, SpecError> {
    Url::parse(&format!("{scheme}://{host}:{port}{path}")).map_err(|source| SpecError::BadUrl {
        spec: shown.to_owned(),
        source,
    })
}

/// Elasticsearch index name rules (lowercase, no separators or wildcards, not `.`/`..`).
fn check_index(index: &str, shown: &str) -> Result<(), SpecError> {
    let why = if index.is_empty() {
        Some("the URL must end in /INDEX, e.g. elasticsearch+https://es:9200/monitor-alerts")
    } else if index == "." || index == ".." || index.starts_with(['-', '_', '+']) {
        Some("it must not be `.`/`..` or start with -, _ or +")
    } else if index
        .bytes()
        .any(|b| b.is_ascii_uppercase() || b" \\/*?\"<>|,#:%".contains(&b) || b.is_ascii_control())
    {
        Some("use lowercase letters, digits, -, _, + and . only")
    } else if index.len() > 255 {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(SpecError::BadIndex {
            spec: shown.to_owned(),
            index: index.to_owned(),
            why,
        }),
    }
}

/// The loggable form of a spec or URL: `scheme://host[:port]`, with any user info dropped and
/// any path, query or fragment shown as `/…`, `?…` or `#…`.
pub fn redact(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        // Not a URL: show only what comes before anything path-, query- or credential-like.
        let end = spec.find(['/', '?', '#', '@']).unwrap_or(spec.len());
        let mut shown: String = spec[..end].chars().take(32).collect();
        if shown.len() < spec.len() {
            shown.push('…');
        }
        return shown;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let more = match rest.as_bytes().get(end) {
        Some(b'/') => "/…",
        Some(b'?') => "?…",
        Some(_) => "#…",
        None => "",
    };
    format!("{scheme}://{authority}{more}")
}
