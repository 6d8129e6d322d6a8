//! Where records go: local outputs (stdout, files with rotation) in native or OCSF form, and
//! the delivery spools that feed the network sinks (`forward.rs`, `crate::deliver`).
//! `stage.rs` is the thread that does the writing.

mod file;
pub mod format;
pub mod forward;
pub mod lane;
pub mod stage;
mod stdout;
pub mod target;

pub use crate::record::{Class, json_line};
pub use format::Format;
pub use stage::{Local, Out, Stage};
pub use target::OutputSpec;

use std::path::PathBuf;

/// Why an output could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "unknown output `{0}`: expected `stdout`, `file:PATH` or a network sink (syslog+udp://, \
         syslog+tcp://, syslog+tls://, http(s)://, splunk+https://, elasticsearch+https://)"
    )]
    UnknownSpec(String),
    #[error("output `file:` needs a path, e.g. `file:/var/log/monitor/events.jsonl`")]
    EmptyPath,
    #[error("output `{spec}`: unknown option `{key}`; known options: {known}")]
    UnknownOption {
        spec: String,
        key: String,
        known: &'static str,
    },
    #[error("output `{spec}`: bad value `{value}` for `{key}`: expected {expected}")]
    BadOption {
        spec: String,
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("cannot open output file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A local place records are written to, one per line.
pub trait LocalSink: Send {
    /// Human-readable name for logs.
    fn name(&self) -> String;
    /// Lines accepted but still buffered (lost if the sink is never flushed again).
    fn unwritten_lines(&self) -> u64 {
        0
    }
    /// Writes one record (without newline; the sink ends the line). `Err`: the line was not
    /// written (it is counted as lost).
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()>;
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Opens the local outputs among `specs` (errors now, at start-up, not at the first record);
/// stdout when `specs` is empty. `format`: for outputs that do not set their own; `events`:
/// whether raw events are written to them.
pub fn open_local(
    specs: &[OutputSpec],
    format: Format,
    events: bool,
) -> Result<Vec<Local>, OutputError> {
    let default = [OutputSpec::Stdout { format: None }];
    let specs = if specs.is_empty() {
        &default[..]
    } else {
        specs
    };
    let mut out = Vec::new();
    for spec in specs {
        let sink: Box<dyn LocalSink> = match spec {
            OutputSpec::Stdout { .. } => Box::new(stdout::StdoutSink::new()),
            OutputSpec::File { path, rotation, .. } => {
                Box::new(file::FileSink::open(path, *rotation)?)
            }
            OutputSpec::Network(_) => continue,
        };
        out.push(Local::new(sink, spec.format().unwrap_or(format), events));
    }
    Ok(out)
}

/// Writes `line` and its newline through `out` whole or not at all: room for both is made
/// first, so when the device refuses the flush (a full disk) nothing of the line is buffered
/// and no torn line is left; what the buffer holds is written once there is room. (A line
/// longer than the buffer goes straight to the device and can be cut by it.)
fn write_whole<W: std::io::Write>(
    out: &mut std::io::BufWriter<W>,
    line: &[u8],
) -> std::io::Result<()> {
    use std::io::Write as _;
    if out.capacity() - out.buffer().len() < line.len() + 1 {
        out.flush()?;
    }
    out.write_all(line)?;
    out.write_all(b"\n")
}

/// Lines in a writer's buffer.
fn buffered_lines<W: std::io::Write>(out: &std::io::BufWriter<W>) -> u64 {
    out.buffer().iter().filter(|&&b| b == b'\n').count() as u64
}
