//! Output formats: the native JSON line of a record, or its OCSF form, each rendered once.

use crate::{ocsf::to_ocsf_line, record::Record};

pub use crate::ocsf::Format;

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
                .get_or_insert_with(|| to_ocsf_line(self.record, self.native))
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
