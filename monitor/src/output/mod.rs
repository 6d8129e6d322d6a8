//! The output stage: JSON lines to every configured sink, in order, flushed whenever the
//! pipeline runs dry so readers see events promptly.

mod file;
mod stdout;

use std::{io::Write, path::PathBuf, str::FromStr};

use tokio::sync::mpsc;

/// One `--output` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputSpec {
    Stdout,
    File(PathBuf),
}

/// Why an output could not be set up or written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("unknown output `{0}`: expected `stdout` or `file:PATH`")]
    UnknownSpec(String),
    #[error("output `file:` needs a path, e.g. `file:/var/log/monitor/events.jsonl`")]
    EmptyPath,
    #[error("cannot open output file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing to output {name} failed")]
    Write {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl FromStr for OutputSpec {
    type Err = OutputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "stdout" || s == "-" {
            return Ok(Self::Stdout);
        }
        match s.strip_prefix("file:") {
            Some("") => Err(OutputError::EmptyPath),
            Some(p) => Ok(Self::File(PathBuf::from(p))),
            None => Err(OutputError::UnknownSpec(s.to_owned())),
        }
    }
}

/// A place lines are written to.
pub trait Sink: Send {
    /// Human-readable name for logs.
    fn name(&self) -> String;
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Opens every sink (errors now, at start-up, not at the first event).
pub fn open(specs: &[OutputSpec]) -> Result<Vec<Box<dyn Sink>>, OutputError> {
    let specs: Vec<OutputSpec> = if specs.is_empty() {
        vec![OutputSpec::Stdout]
    } else {
        specs.to_vec()
    };
    specs
        .iter()
        .map(|s| -> Result<Box<dyn Sink>, OutputError> {
            Ok(match s {
                OutputSpec::Stdout => Box::new(stdout::StdoutSink::new()),
                OutputSpec::File(p) => Box::new(file::FileSink::open(p)?),
            })
        })
        .collect()
}

/// Writes every line received to every sink until the channel closes, then flushes.
/// A failing sink is reported (once per failure streak) and does not stop the others.
pub async fn run(mut sinks: Vec<Box<dyn Sink>>, mut rx: mpsc::Receiver<Vec<u8>>) -> u64 {
    let mut written = 0u64;
    let mut failing = vec![false; sinks.len()];
    while let Some(first) = rx.recv().await {
        let mut line = Some(first);
        while let Some(l) = line.take() {
            for (i, sink) in sinks.iter_mut().enumerate() {
                let r = sink.write_line(&l);
                report(&mut failing[i], sink.as_mut(), r);
            }
            written += 1;
            line = rx.try_recv().ok();
        }
        for (i, sink) in sinks.iter_mut().enumerate() {
            let r = sink.flush();
            report(&mut failing[i], sink.as_mut(), r);
        }
    }
    for sink in &mut sinks {
        let _ = sink.flush();
    }
    written
}

fn report(failing: &mut bool, sink: &mut dyn Sink, r: std::io::Result<()>) {
    match r {
        Ok(()) => *failing = false,
        Err(source) if !*failing => {
            *failing = true;
            let e = OutputError::Write {
                name: sink.name(),
                source,
            };
            tracing::error!(error = %e, cause = %std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default(), "output failing");
        }
        Err(_) => {}
    }
}

/// Serialises a value as one JSON line (with the newline).
pub fn json_line<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = serde_json::to_vec(v).unwrap_or_else(|e| {
        format!("{{\"kind\":\"agent_error\",\"error\":\"serialisation failed: {e}\"}}").into_bytes()
    });
    buf.push(b'\n');
    buf
}

/// Writes the line to a writer (shared by the simple sinks).
fn write_all(w: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
    w.write_all(line)
}

#[cfg(test)]
mod tests {
    use super::OutputSpec;

    #[test]
    fn parses_specs() {
        assert_eq!("stdout".parse::<OutputSpec>().unwrap(), OutputSpec::Stdout);
        assert_eq!(
            "file:/tmp/x.jsonl".parse::<OutputSpec>().unwrap(),
            OutputSpec::File("/tmp/x.jsonl".into())
        );
        assert!("file:".parse::<OutputSpec>().is_err());
        assert!("syslog://x".parse::<OutputSpec>().is_err());
    }
}
