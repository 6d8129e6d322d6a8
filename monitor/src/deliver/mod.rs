//! Guaranteed delivery of alerts to remote sinks (SIEMs).
//!
//! The agent appends every alert line to the [`Spool`], which writes and fsyncs it before
//! anything else sees it. The [`Engine`] runs one tokio task per [`Sink`]: it reads from that
//! sink's cursor in the spool, sends batches in order, and acknowledges them in the spool
//! (persisted) only once the receiver has, so after a crash delivery resumes at the first
//! unacknowledged record of each sink (at-least-once; a batch in flight at the crash may be
//! sent twice). Sinks fail and retry independently of each other and of the appender.
//!
//! Concrete sinks live in `sinks/`; `crate::output::forward` wires them to `--output`.

// Only for tests and bench targets (cargo builds bench targets with `cfg(test)`), so none of
// it ends up in the agent.
#[cfg(test)]
pub mod bench;
mod cursor;
mod engine;
mod record;
pub mod sinks;
mod spool;
#[cfg(test)]
mod tests;

use std::{future::Future, pin::Pin};

pub use engine::{Engine, EngineConfig, SinkStats};
// The CLI spells the default bound as `256M`; its test checks that it is this one.
#[cfg(test)]
pub use spool::DEFAULT_MAX_BYTES;
pub use spool::{DEFAULT_SPOOL_DIR, Spool, SpoolError, SpoolOptions, SpoolStats};

/// Boxed error kept as the cause of a [`SinkError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A destination for alerts, driven by one engine task.
pub trait Sink: Send + 'static {
    /// Name safe to log (never contains secrets such as tokens). It is also the key of the
    /// sink's cursor in the spool, so it must stay the same across restarts.
    fn name(&self) -> &str;

    /// Sends `batch` (alert JSON lines, in order) and returns Ok only once the receiver has
    /// acknowledged all of it (TCP write flushed for syslog, HTTP 2xx for HTTP sinks). A
    /// failed batch is sent again, whole, so receivers may see duplicates of it.
    fn send<'a>(
        &'a mut self,
        batch: &'a [Vec<u8>],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

    /// Most records per batch (1 is fine for stream sinks that frame each record).
    fn max_batch(&self) -> usize {
        100
    }
}

/// Why a sink could not deliver a batch. Messages must be safe to log (no secrets).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Likely to pass on retry: connection refused or reset, timeout, HTTP 429 or 5xx.
    #[error("{message}")]
    Transient {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Will not pass without operator action: credentials rejected, HTTP 4xx, bad certificate.
    /// The engine still retries (at the longest backoff) rather than drop alerts.
    #[error("{message} (needs operator action)")]
    Permanent {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl SinkError {
    /// A transient failure without an underlying error.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            source: None,
        }
    }

    /// A transient failure caused by `source`.
    pub fn transient_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Transient {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A permanent failure without an underlying error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
            source: None,
        }
    }

    /// A permanent failure caused by `source`.
    pub fn permanent_from(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Permanent {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent { .. })
    }
}

/// Why delivery could not be started or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("delivery spool failed")]
    Spool(#[from] SpoolError),
    #[error("sink `{0}` has no cursor in the spool: open the spool with the names of all sinks")]
    UnregisteredSink(String),
    #[error("two sinks are named `{0}`: sink names must be unique")]
    DuplicateSink(String),
    #[error("delivery task of sink `{sink}` panicked or was cancelled")]
    TaskFailed {
        sink: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// `error: cause: cause ...`, for logs and stats.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
