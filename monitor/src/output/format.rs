//! Output formats: the agent's native JSON lines, or OCSF objects converted from them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ocsf;

pub use crate::ocsf::Format;

/// Records that could not be converted to OCSF (written in native form instead).
pub static OCSF_ERRORS: AtomicU64 = AtomicU64::new(0);

/// One native line (without its newline) in OCSF form: `None` when the record has no OCSF
/// class (`agent_stats`). A record that cannot be converted (which would be an agent bug) is
/// kept in native form, logged and counted in [`OCSF_ERRORS`], rather than lost.
pub fn to_ocsf_line(native: &[u8]) -> Option<Vec<u8>> {
    let converted = serde_json::from_slice(native)
        .map_err(|e| e.to_string())
        .and_then(|v| ocsf::to_ocsf(&v).map_err(|e| e.to_string()));
    match converted {
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
    /// The native line, without its newline.
    native: &'a [u8],
    ocsf: Option<Option<Vec<u8>>>,
}

impl<'a> Rendered<'a> {
    pub fn new(native: &'a [u8]) -> Self {
        Self { native, ocsf: None }
    }

    /// The record in `format`, without a newline; `None` when it has no form in it.
    pub fn get(&mut self, format: Format) -> Option<&[u8]> {
        match format {
            Format::Native => Some(self.native),
            Format::Ocsf => self
                .ocsf
                .get_or_insert_with(|| to_ocsf_line(self.native))
                .as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Format, Rendered};

    #[test]
    fn renders_each_format_once() {
        let line = br#"{"kind":"agent_stats","time":"2026-01-01T00:00:00Z"}"#;
        let mut r = Rendered::new(line);
        assert_eq!(r.get(Format::Native), Some(&line[..]));
        assert_eq!(r.get(Format::Ocsf), None, "stats have no OCSF form");

        let repeats = br#"{"kind":"alert_repeats","id":"b","time":"2026-01-01T00:00:00Z","rule":"r","severity":"low","profile":null,"key":"k","alert_id":"a","count":2}"#;
        let mut r = Rendered::new(repeats);
        let ocsf: serde_json::Value =
            serde_json::from_slice(r.get(Format::Ocsf).expect("converted")).expect("JSON");
        assert_eq!(ocsf["class_uid"], 2004);
        assert_eq!(ocsf["count"], 2);
    }

    #[test]
    fn unconvertible_records_stay_native() {
        let line = br#"{"kind":"mystery"}"#;
        assert_eq!(Rendered::new(line).get(Format::Ocsf), Some(&line[..]));
    }
}
