//! The query options of an `--output` spec (`?ca=...&timeout=...`), checked against the kind of
//! output, and the token they name, read once at start-up.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use url::Url;

use super::error::SpecError;
use crate::ocsf::Format;
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The query options of a spec.
#[derive(Default)]
pub struct Options {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub format: Option<Format>,
    /// Whether the sink also gets every event (not only alerts).
    pub events: Option<bool>,
    pub timeout: Option<Duration>,
    pub facility: Option<Facility>,
    /// Webhook query parameters that are not options, in order.
    pub passthrough: Vec<(String, String)>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
}

impl Options {
    /// Reads the options from `url`'s query; with `passthrough`, unknown keys are kept for the
    /// target URL instead of refused. `shown` is the redacted spec for error messages.
    pub fn from_url(url: &Url, shown: &str, passthrough: bool) -> Result<Self, SpecError> {
        let mut opts = Self::default();
        for (key, value) in url.query_pairs() {
            let bad = |key: &'static str, expected: &'static str| SpecError::BadValue {
                spec: shown.to_owned(),
                key,
                value: value.clone().into_owned(),
                expected,
            };
            let dup = || SpecError::DuplicateOption {
                spec: shown.to_owned(),
                key: key.clone().into_owned(),
            };
            let path = |key: &'static str| {
                (!value.is_empty())
                    .then(|| PathBuf::from(value.as_ref()))
                    .ok_or_else(|| bad(key, "a file path"))
            };
            match key.as_ref() {
                "ca" => set_once(&mut opts.ca, path("ca")?, dup)?,
                "cert" => set_once(&mut opts.cert, path("cert")?, dup)?,
                "key" => set_once(&mut opts.key, path("key")?, dup)?,
                "token_file" => set_once(&mut opts.token_file, path("token_file")?, dup)?,
                "token_env" if !value.is_empty() => {
                    set_once(&mut opts.token_env, value.clone().into_owned(), dup)?;
                }
                "token_env" => return Err(bad("token_env", "an environment variable name")),
                "format" => {
                    let format =
                        Format::parse(&value).ok_or_else(|| bad("format", "`native` or `ocsf`"))?;
                    set_once(&mut opts.format, format, dup)?;
                }
                "events" => {
                    let events = match value.as_ref() {
                        "true" | "yes" | "1" => true,
                        "false" | "no" | "0" => false,
                        _ => return Err(bad("events", "`true` or `false`")),
                    };
                    set_once(&mut opts.events, events, dup)?;
                }
                "timeout" => {
                    let t = parse_timeout(&value).ok_or_else(|| {
                        bad("timeout", "a duration such as 10s or 500ms, up to 10m")
                    })?;
                    set_once(&mut opts.timeout, t, dup)?;
                }
                "facility" => {
                    let f = Facility::parse(&value).ok_or_else(|| {
                        bad("facility", "a syslog facility such as local0 or 0..=23")
                    })?;
                    set_once(&mut opts.facility, f, dup)?;
                }
                _ if passthrough => opts
                    .passthrough
                    .push((key.into_owned(), value.into_owned())),
                _ => {
                    return Err(SpecError::UnknownOption {
                        spec: shown.to_owned(),
                        key: key.into_owned(),
                    });
                }
            }
        }
        Ok(opts)
    }

    /// Refuses options that mean nothing for this kind of output.
    pub fn check_applicable(&self, syslog: bool, tls: bool, shown: &str) -> Result<(), SpecError> {
        let refuse = |key: &'static str, why: &'static str| {
            Err(SpecError::NotApplicable {
                spec: shown.to_owned(),
                key,
                why,
            })
        };
        let certs = "only TLS outputs (syslog+tls, https, splunk+https, elasticsearch+https) use certificates";
        if !tls {
            for (key, set) in [
                ("ca", self.ca.is_some()),
                ("cert", self.cert.is_some()),
                ("key", self.key.is_some()),
            ] {
                if set {
                    return refuse(key, certs);
                }
            }
        }
        if syslog {
            let why = "syslog has no token authentication; use syslog+tls with cert= and key=";
            if self.token_file.is_some() {
                return refuse("token_file", why);
            }
            if self.token_env.is_some() {
                return refuse("token_env", why);
            }
        } else if self.facility.is_some() {
            return refuse("facility", "only syslog outputs have a facility");
        }
        if self.token_file.is_some() && self.token_env.is_some() {
            return Err(SpecError::TokenConflict {
                spec: shown.to_owned(),
            });
        }
        Ok(())
    }

    /// Reads the token named by `token_file=` or `token_env=`, if any.
    pub fn read_token(&self, shown: &str) -> Result<Option<Secret>, SpecError> {
        let (raw, origin) = if let Some(path) = &self.token_file {
            let raw = std::fs::read_to_string(path).map_err(|source| SpecError::TokenFile {
                spec: shown.to_owned(),
                path: path.clone(),
                source,
            })?;
            warn_if_shared(path);
            (raw, format!("token file {}", path.display()))
        } else if let Some(var) = &self.token_env {
            let raw = std::env::var_os(var).ok_or_else(|| SpecError::TokenEnvMissing {
                spec: shown.to_owned(),
                var: var.clone(),
            })?;
            let origin = format!("environment variable {var}");
            let raw = raw.into_string().map_err(|_| SpecError::TokenInvalid {
                spec: shown.to_owned(),
                origin: origin.clone(),
            })?;
            (raw, origin)
        } else {
            return Ok(None);
        };
        let token = raw.trim();
        if token.is_empty() {
            return Err(SpecError::TokenEmpty {
                spec: shown.to_owned(),
                origin,
            });
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SpecError::TokenInvalid {
                spec: shown.to_owned(),
                origin,
            });
        }
        Ok(Some(Secret::new(token.to_owned())))
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    dup: impl FnOnce() -> SpecError,
) -> Result<(), SpecError> {
    if slot.is_some() {
        return Err(dup());
    }
    *slot = Some(value);
    Ok(())
}

/// `10`, `10s`, `500ms` or `2m`, more than zero and at most ten minutes.
fn parse_timeout(s: &str) -> Option<Duration> {
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    (!d.is_zero() && d <= MAX_TIMEOUT).then_some(d)
}

/// Warns (once, at start-up) when a token file can be read by other users.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "token file is readable by other users; restrict it with chmod 600"
        );
    }
}

/// A credential read at start-up. Its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(super) fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A syslog facility code (0..=23); local0 unless `facility=` says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(u8);

impl Facility {
    pub const LOCAL0: Self = Self(16);
    const NAMES: [&'static str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];

    /// The numeric facility code.
    pub fn code(self) -> u8 {
        self.0
    }

    /// A facility name (`local0`, `daemon`, ...) or code.
    pub(super) fn parse(s: &str) -> Option<Self> {
        if let Ok(n) = s.parse::<u8>() {
            return (n < 24).then_some(Self(n));
        }
        let pos = Self::NAMES.iter().position(|n| n.eq_ignore_ascii_case(s))?;
        u8::try_from(pos).ok().map(Self)
    }
}
