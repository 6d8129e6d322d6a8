//! Output formats: the agent's native JSON lines, or OCSF objects converted from them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{ocsf, record::Record};

pub use crate::ocsf::Format;

/// Records that could not be converted to OCSF (written in native form instead).
pub static OCSF_ERRORS: AtomicU64 = AtomicU64::new(0);

/// A record in OCSF form, without a newline: `None` when it has no OCSF class (`agent_stats`).
/// A record that cannot be converted (an event without a value its class requires) is kept in
/// its native form `native`, logged and counted in [`OCSF_ERRORS`], rather than lost.
pub fn ocsf_line(record: &Record, native: &[u8]) -> Option<Vec<u8>> {
    match ocsf::to_ocsf(record) {
        Ok(Some(v)) => serde_json::to_vec(&v).ok(),
        Ok(None) => None,
        Err(error) => {
            let n = OCSF_ERRORS.fetch_add(1, Ordering::Relaxed);
            if n < 10 || n.is_power_of_two() {
                tracing::warn!(%error, total = n + 1, "record not convertible to OCSF; written in native form");
            }
            Some(native.to_vec())
        }
    }
}

/// A record rendered lazily in each format, each at most once (several outputs may share a
/// format).
pub struct Rendered<'a> {
    record: &'a Record,
    /// The native line, without its newline.
    native: &'a [u8],
    ocsf: Option<Option<Vec<u8>>>,
}

impl<'a> Rendered<'a> {
    pub fn new(record: &'a Record, native: &'a [u8]) -> Self {
        Self {
            record,
            native,
            ocsf: None,
        }
    }

    /// The record in `format`, without a newline; `None` when it has no form in it.
    pub fn get(&mut self, format: Format) -> Option<&[u8]> {
        match format {
            Format::Native => Some(self.native),
            Format::Ocsf => self
                .ocsf
                .get_or_insert_with(|| ocsf_line(self.record, self.native))
                .as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Format, Rendered};
    use crate::record::Record;

    fn record(line: &[u8]) -> Record {
        serde_json::from_slice(line).expect("a record")
    }

    #[test]
    fn renders_each_format_once() {
        let line = br#"{"kind":"agent_stats","time":"2026-01-01T00:00:00Z"}"#;
        let stats = record(line);
        let mut r = Rendered::new(&stats, line);
        assert_eq!(r.get(Format::Native), Some(&line[..]));
        assert_eq!(r.get(Format::Ocsf), None, "stats have no OCSF form");

        let line = br#"{"kind":"alert_repeats","id":"b","time":"2026-01-01T00:00:00Z","rule":"r","severity":"low","profile":null,"key":"k","alert_id":"a","count":2}"#;
        let repeats = record(line);
        let mut r = Rendered::new(&repeats, line);
        let ocsf: serde_json::Value =
            serde_json::from_slice(r.get(Format::Ocsf).expect("converted")).expect("JSON");
        assert_eq!(ocsf["class_uid"], 2004);
        assert_eq!(ocsf["count"], 2);
    }
}
