//! Why an `--output` spec was refused at start-up.

use std::path::PathBuf;

use super::tls::TlsError;

/// Option names, for the unknown-option error.
pub const KNOWN: &str = "ca, cert, key, format, events, token_file, token_env, timeout, facility";

const SCHEME_LIST: &str = "syslog+udp, syslog+tcp, syslog+tls, http, https, splunk+http, \
                           splunk+https, elasticsearch+http, elasticsearch+https";

/// Why an output spec was refused at start-up. `spec` is always the redacted form.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("output `{spec}`: unknown scheme `{scheme}`; expected one of {SCHEME_LIST}")]
    UnknownScheme { spec: String, scheme: String },
    #[error("output `{spec}` is not a valid URL")]
    BadUrl {
        spec: String,
        #[source]
        source: url::ParseError,
    },
    #[error("output `{spec}` names no host")]
    MissingHost { spec: String },
    #[error("output `{spec}`: {what} takes no path")]
    UnexpectedPath { spec: String, what: &'static str },
    #[error(
        "output `{spec}`: credentials in the URL show up in `ps` and logs; \
         use token_file=PATH or token_env=VAR"
    )]
    CredentialsInUrl { spec: String },
    #[error("output `{spec}`: unknown option `{key}`; known options: {}", KNOWN)]
    UnknownOption { spec: String, key: String },
    #[error("output `{spec}`: option `{key}` is given twice")]
    DuplicateOption { spec: String, key: String },
    #[error("output `{spec}`: option `{key}` does not apply: {why}")]
    NotApplicable {
        spec: String,
        key: &'static str,
        why: &'static str,
    },
    #[error("output `{spec}`: bad value `{value}` for `{key}`: expected {expected}")]
    BadValue {
        spec: String,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("output `{spec}`: `cert=` and `key=` must be given together")]
    CertWithoutKey { spec: String },
    #[error("output `{spec}` needs a token: add token_file=PATH or token_env=VAR")]
    TokenRequired { spec: String },
    #[error("output `{spec}`: give token_file= or token_env=, not both")]
    TokenConflict { spec: String },
    #[error("output `{spec}`: cannot read token file {path}")]
    TokenFile {
        spec: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("output `{spec}`: the token from {origin} is empty")]
    TokenEmpty { spec: String, origin: String },
    #[error("output `{spec}`: environment variable {var} is not set")]
    TokenEnvMissing { spec: String, var: String },
    #[error(
        "output `{spec}`: the token from {origin} holds spaces, control or non-ASCII characters"
    )]
    TokenInvalid { spec: String, origin: String },
    #[error("output `{spec}`: bad Elasticsearch index `{index}`: {why}")]
    BadIndex {
        spec: String,
        index: String,
        why: &'static str,
    },
    #[error("output `{spec}`: `{host}` is not a valid TLS server name")]
    ServerName {
        spec: String,
        host: String,
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("output `{spec}`: bad TLS settings")]
    Tls {
        spec: String,
        #[source]
        source: Box<TlsError>,
    },
    #[error("output `{spec}`: cannot set up the HTTP client")]
    HttpClient {
        spec: String,
        #[source]
        source: reqwest::Error,
    },
}
