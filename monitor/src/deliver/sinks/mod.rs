//! Network sinks for the delivery engine: syslog (UDP, TCP, TLS), HTTP webhooks, Splunk HEC and
//! Elasticsearch bulk. [`parse`] turns an `--output` spec into a checked [`SinkSpec`] at
//! start-up (reading tokens and TLS files then); [`connect`] builds the [`Sink`], which opens
//! its connection on first use and again after every failure.

mod error;
mod http;
mod options;
mod record;
pub mod spec;
mod syslog;
mod tls;

#[cfg(test)]
mod tests;

pub use spec::{Format, SinkSpec, SpecError, is_network_spec, parse};

use crate::deliver::Sink;

/// Builds the sink for `spec`. No connection is made here: a receiver that is down at start-up
/// shows up as transient errors from [`Sink::send`], not as a start-up failure.
/// `format`: what the sink sends (the spool holds native records).
pub async fn connect(spec: &SinkSpec, format: Format) -> Result<Box<dyn Sink>, SpecError> {
    Ok(match &spec.target {
        spec::Target::Syslog(target) => Box::new(syslog::SyslogSink::new(
            spec.name(),
            target,
            spec.timeout,
            format,
        )),
        spec::Target::Http(target) => Box::new(http::HttpSink::new(spec, target, format)?),
    })
}
