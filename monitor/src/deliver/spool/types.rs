//! Public option, error, report and statistics types of the spool.

use std::path::PathBuf;

/// Default `--spool-dir`.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/monitor/spool";
/// Default bound on the spool's size on disk.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// Smallest `max_bytes` accepted.
pub const MIN_MAX_BYTES: u64 = 4096;
const MIN_SEGMENT_BYTES: u64 = 512;
const MAX_SEGMENT_BYTES: u64 = 64 << 20;

/// Size settings of a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Bound on the bytes of all segments; when an append would exceed it, the oldest whole
    /// segments are dropped.
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it would grow past this; it is the unit
    /// of deletion, so it is also the granularity of dropping when full.
    pub segment_bytes: u64,
}

impl SpoolOptions {
    /// `max_bytes` with segments of an eighth of it (between 512 bytes and 64 MiB).
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
        }
    }

    pub(super) fn validate(&self) -> Result<(), SpoolError> {
        if self.max_bytes < MIN_MAX_BYTES {
            return Err(SpoolError::Config(format!(
                "max_bytes {} is below the minimum of {MIN_MAX_BYTES}",
                self.max_bytes
            )));
        }
        if !(MIN_SEGMENT_BYTES..=self.max_bytes).contains(&self.segment_bytes) {
            return Err(SpoolError::Config(format!(
                "segment_bytes {} must be between {MIN_SEGMENT_BYTES} and max_bytes ({})",
                self.segment_bytes, self.max_bytes
            )));
        }
        Ok(())
    }
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

/// Why a spool operation failed. Disk errors (ENOSPC, EIO, ...) arrive as [`SpoolError::Io`].
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("invalid spool settings: {0}")]
    Config(String),
    #[error("invalid sink name {name:?}: {reason}")]
    SinkName { name: String, reason: &'static str },
    #[error("unknown sink `{0}`: it was not named when the spool was opened")]
    UnknownSink(String),
    #[error(
        "spool directory is in use: {path} is locked by another process; stop the other \
         monitor or give this one another --spool-dir"
    )]
    Locked { path: PathBuf },
    #[error("spool: cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a segment this version of the spool understands; move it out of the \
         spool directory"
    )]
    UnknownFormat { path: PathBuf },
    #[error(
        "segments {earlier} and {later} overlap in sequence numbers; the spool directory was \
         modified by hand: remove the newer segment"
    )]
    Overlap { earlier: PathBuf, later: PathBuf },
    #[error("a record of {len} bytes is larger than the {max} bytes a record may have")]
    RecordTooLarge { len: usize, max: usize },
    #[error("an append of {bytes} bytes does not fit in the spool (max_bytes {max_bytes})")]
    TooLarge { bytes: u64, max_bytes: u64 },
    #[error("record at offset {offset} of {path} is damaged ({what}); the disk corrupted it")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("sink `{sink}` acknowledged sequence {seq}, but only records before {next} exist")]
    AckBeyondEnd { sink: String, seq: u64, next: u64 },
    #[error("spool task on the blocking thread pool failed")]
    Blocking(#[source] tokio::task::JoinError),
}

impl SpoolError {
    /// The underlying I/O error, if this is one (e.g. to tell ENOSPC from EIO).
    #[cfg(test)]
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A damaged or torn tail found and truncated when the spool was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    /// Where the valid data ends (the file was truncated here).
    pub offset: u64,
    pub discarded_bytes: u64,
    pub reason: String,
}

/// What [`Spool::open`](super::Spool::open) found and repaired; the agent logs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Sequence number the next append gets.
    pub next_seq: u64,
    pub torn: Vec<TornTail>,
    /// Undelivered records dropped because the spool was over `max_bytes`.
    pub dropped_records: u64,
    /// Sinks without a cursor yet: they start with the next appended record.
    pub new_sinks: Vec<String>,
    /// Sinks whose cursor file was unreadable: they restart at the oldest retained record.
    pub reset_cursors: Vec<String>,
    /// Cursor files of sinks no longer configured, removed.
    pub forgotten_sinks: Vec<String>,
}

/// Result of a successful append: the records are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Sequence number of the first record appended.
    pub first_seq: u64,
    pub records: u64,
    /// Undelivered records dropped (oldest first) to make room.
    pub dropped_records: u64,
}

/// One spooled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub seq: u64,
    pub line: Vec<u8>,
}

/// Records read for a sink, starting at its first unacknowledged one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBatch {
    pub records: Vec<Spooled>,
    /// Records this sink never got because the bounded spool dropped them; its cursor moved
    /// past them.
    pub skipped: u64,
}

/// Point-in-time figures for one sink's cursor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CursorStats {
    pub name: String,
    /// First unacknowledged sequence number.
    pub next: u64,
    pub pending: u64,
    pub skipped: u64,
}

/// Point-in-time figures of the spool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    pub next_seq: u64,
    pub bytes: u64,
    pub segments: usize,
    /// Undelivered records dropped since open because the spool was full.
    pub dropped_records: u64,
    pub sinks: Vec<CursorStats>,
}
