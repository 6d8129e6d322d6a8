//! `--output` values: `stdout`, `file:PATH` and the network sinks (`SCHEME://...`, parsed and
//! checked by `deliver::sinks` at start-up, when token and certificate files are read).
//!
//! Local outputs take options after the last `?`: `format=native|ocsf` and, for files,
//! `max_size=SIZE` (bytes, or with a K, M or G suffix; 0 never rotates) and `max_files=N`
//! (rotated files kept as `PATH.1` .. `PATH.N`). A file path that itself contains `?` must be
//! followed by `?` and its options (possibly none): `file:/tmp/a?b.jsonl?`.

use std::{fmt, path::PathBuf, str::FromStr};

use super::{Format, OutputError};
use crate::deliver::sinks;

/// One `--output` value.
#[derive(Clone, PartialEq, Eq)]
pub enum OutputSpec {
    Stdout {
        format: Option<Format>,
    },
    File {
        path: PathBuf,
        format: Option<Format>,
        rotation: Rotation,
    },
    /// A network sink (`syslog+tcp://...`, `https://...`, ...), parsed at start-up.
    Network(NetworkSpec),
}

/// A network output spec as given. Its `Debug` shows the redacted form: the path and query of
/// a URL can hold credentials (webhook tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkSpec(String);

impl NetworkSpec {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NetworkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sinks::spec::redact(&self.0))
    }
}

impl fmt::Debug for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout { format } => f.debug_struct("Stdout").field("format", format).finish(),
            Self::File {
                path,
                format,
                rotation,
            } => f
                .debug_struct("File")
                .field("path", path)
                .field("format", format)
                .field("rotation", rotation)
                .finish(),
            Self::Network(n) => f.debug_tuple("Network").field(n).finish(),
        }
    }
}

/// Size-based rotation of a file output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a line would take the file past this size; 0: never rotate.
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` is the newest).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 100 << 20,
            max_files: 5,
        }
    }
}

/// Most rotated files a file output may keep.
const MAX_FILES: u32 = 1000;

impl OutputSpec {
    /// The format this output was given, if any (else the agent's `--format`).
    pub fn format(&self) -> Option<Format> {
        match self {
            Self::Stdout { format } | Self::File { format, .. } => *format,
            Self::Network(_) => None,
        }
    }
}

impl FromStr for OutputSpec {
    type Err = OutputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // URL-like values (also mistyped ones such as `https:/host/...`) are parsed at start-up
        // by the network sinks, whose errors never repeat paths or queries: clap would echo
        // the whole value, secrets included, if it were refused here.
        if sinks::is_network_spec(s) || (s.contains(":/") && !s.starts_with("file:")) {
            return Ok(Self::Network(NetworkSpec(s.to_owned())));
        }
        let (target, query) = s.rsplit_once('?').unwrap_or((s, ""));
        let mut format = None;
        let mut rotation = Rotation::default();
        let file = target.strip_prefix("file:");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |expected: &'static str| OutputError::BadOption {
                spec: s.to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
                expected,
            };
            match key {
                "format" => {
                    format = Some(Format::parse(value).ok_or_else(|| bad("`native` or `ocsf`"))?);
                }
                "max_size" if file.is_some() => {
                    rotation.max_bytes =
                        parse_size(value).ok_or_else(|| bad("a size such as 100M, 1G or 0"))?;
                }
                "max_files" if file.is_some() => {
                    rotation.max_files = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_FILES).contains(n))
                        .ok_or_else(|| bad("a number of files from 1 to 1000"))?;
                }
                _ => {
                    return Err(OutputError::UnknownOption {
                        spec: s.to_owned(),
                        key: key.to_owned(),
                        known: if file.is_some() {
                            "format, max_size, max_files"
                        } else {
                            "format"
                        },
                    });
                }
            }
        }
        if target == "stdout" || target == "-" {
            return Ok(Self::Stdout { format });
        }
        match file {
            Some("") => Err(OutputError::EmptyPath),
            Some(p) => Ok(Self::File {
                path: PathBuf::from(p),
                format,
                rotation,
            }),
            None => Err(OutputError::UnknownSpec(
                s.split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )),
        }
    }
}

/// `4096`, `64K`, `100M`, `2G` (powers of 1024; a trailing `B` or `iB` is accepted).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim_end_matches("iB").trim_end_matches('B');
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// clap value parser for byte sizes (`--spool-max-bytes 64M`).
pub fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).ok_or_else(|| format!("`{s}` is not a size such as 4096, 64K, 256M or 1G"))
}

#[cfg(test)]
mod tests {
    use super::{OutputSpec, Rotation};
    use crate::output::Format;

    fn parse(s: &str) -> OutputSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<OutputSpec>().expect_err(s).to_string()
    }

    #[test]
    fn parses_local_specs() {
        assert_eq!(parse("stdout"), OutputSpec::Stdout { format: None });
        assert_eq!(parse("-"), OutputSpec::Stdout { format: None });
        assert_eq!(
            parse("stdout?format=ocsf"),
            OutputSpec::Stdout {
                format: Some(Format::Ocsf)
            }
        );
        assert_eq!(
            parse("file:/tmp/x.jsonl"),
            OutputSpec::File {
                path: "/tmp/x.jsonl".into(),
                format: None,
                rotation: Rotation::default(),
            }
        );
        assert_eq!(
            parse("file:/tmp/x.jsonl?format=native&max_size=10M&max_files=3"),
            OutputSpec::File {
                path: "/tmp/x.jsonl".into(),
                format: Some(Format::Native),
                rotation: Rotation {
                    max_bytes: 10 << 20,
                    max_files: 3
                },
            }
        );
        assert_eq!(
            parse("file:/tmp/a?b.jsonl?"),
            OutputSpec::File {
                path: "/tmp/a?b.jsonl".into(),
                format: None,
                rotation: Rotation::default(),
            }
        );
        let OutputSpec::File { rotation, .. } = parse("file:/x?max_size=0") else {
            panic!("a file")
        };
        assert_eq!(rotation.max_bytes, 0);
    }

    #[test]
    fn network_specs_are_kept_for_start_up_and_redacted_in_debug() {
        let spec = parse("https://hooks.example/T0/B0/secret?x=1");
        let OutputSpec::Network(n) = &spec else {
            panic!("network")
        };
        assert_eq!(n.as_str(), "https://hooks.example/T0/B0/secret?x=1");
        let shown = format!("{spec:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("https://hooks.example"), "{shown}");
    }

    #[test]
    fn bad_specs_name_the_problem() {
        assert_eq!(
            err("file:"),
            "output `file:` needs a path, e.g. `file:/var/log/monitor/events.jsonl`"
        );
        assert!(err("syslog").contains("unknown output `syslog`"));
        assert!(err("hooks.example/T0/secret").contains("unknown output `hooks.example`"));
        assert!(matches!(
            parse("https:/hooks/secret"),
            OutputSpec::Network(_)
        ));
        assert_eq!(
            err("file:/x?max_files=0"),
            "output `file:/x?max_files=0`: bad value `0` for `max_files`: expected a number of \
             files from 1 to 1000"
        );
        assert_eq!(
            err("stdout?max_size=1M"),
            "output `stdout?max_size=1M`: unknown option `max_size`; known options: format"
        );
        assert_eq!(
            err("file:/x?format=xml"),
            "output `file:/x?format=xml`: bad value `xml` for `format`: expected `native` or `ocsf`"
        );
        assert!(err("file:/x?max_size=12Q").contains("a size such as 100M"));
    }
}
