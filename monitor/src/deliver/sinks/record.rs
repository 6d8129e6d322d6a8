//! One spooled record as the network sinks send it: read back from its spool line once, as the
//! typed [`Record`], and put in the sink's format (the native line as stored, or OCSF mapped
//! from the typed record). Severity, time and id come from the record, never from parsing the
//! formatted body. A line that is not a record (another program's, a torn write) is still
//! sent, as a JSON string, rather than dropped or allowed to corrupt a request body.

use std::{borrow::Cow, time::SystemTime};

use chrono::{DateTime, Utc};

use crate::{
    ocsf::{Format, to_ocsf_line},
    record::{Class, Record},
};

/// One record to send.
pub struct Outgoing<'a> {
    /// The spool line (the native record).
    line: &'a [u8],
    record: Option<Record>,
    /// The body in the sink's format; `None` when the record has no form in it.
    body: Option<Cow<'a, [u8]>>,
}

impl<'a> Outgoing<'a> {
    /// Reads `line` back and puts it in `format`.
    pub fn read(line: &'a [u8], format: Format) -> Self {
        let record = serde_json::from_slice::<Record>(line).ok();
        let body = match (&record, format) {
            (Some(r), Format::Ocsf) => to_ocsf_line(r, line).map(Cow::Owned),
            _ => Some(Cow::Borrowed(line)),
        };
        Self { line, record, body }
    }

    /// Whether there is something to send (a record without an OCSF form is not sent to an
    /// OCSF sink).
    pub fn has_body(&self) -> bool {
        self.body.is_some()
    }

    /// Whether this is an alert (`alert`, `alert_repeats`, or a line that is not a record)
    /// rather than a forwarded event.
    pub fn is_alert(&self) -> bool {
        self.record
            .as_ref()
            .is_none_or(|r| r.class() != Class::Event)
    }

    /// The body as sent (the native line, or its OCSF form).
    pub fn body(&self) -> &[u8] {
        self.body.as_deref().unwrap_or(self.line)
    }

    /// Syslog severity (RFC 5424 table 2) for the alert's severity; notice (5) when the record
    /// has none the table knows.
    pub fn syslog_severity(&self) -> u8 {
        let severity = self.record.as_ref().and_then(Record::severity);
        match severity.map(str::to_ascii_lowercase).as_deref() {
            Some("critical") => 2,
            Some("high") => 3,
            Some("medium") => 4,
            Some("low") => 5,
            _ => 5,
        }
    }

    /// The record's time.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.record.as_ref()?.time().map(|t| t.utc())
    }

    /// The record's time, or now when it has none.
    pub fn time_or_now(&self) -> DateTime<Utc> {
        self.time()
            .unwrap_or_else(|| DateTime::<Utc>::from(SystemTime::now()))
    }

    /// The record's stable id (alerts and repeat reports).
    pub fn id(&self) -> Option<&str> {
        self.record.as_ref()?.id()
    }

    /// Appends the record as a JSON value: its body, or (not a record) the line as a string.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if self.record.is_some() {
            out.extend_from_slice(self.body());
        } else {
            write_json_string(out, &String::from_utf8_lossy(self.line));
        }
    }

    /// Appends the record as a JSON object: its body, or `{"message": <line as a string>}`.
    pub fn write_object(&self, out: &mut Vec<u8>) {
        if self.record.is_some() {
            out.extend_from_slice(self.body());
        } else {
            out.extend_from_slice(b"{\"message\":");
            write_json_string(out, &String::from_utf8_lossy(self.line));
            out.push(b'}');
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// This machine's host name (from the kernel), or `None` when it cannot be read.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{Format, Outgoing};

    fn alert(severity: &str) -> String {
        format!(
            r#"{{"kind":"alert","id":"abc","time":"2024-06-10T12:00:00.123456789Z","rule":"r","severity":"{severity}","mitre":[],"profile":null,"message":"m","event":null,"ancestors":[]}}"#
        )
    }

    #[test]
    fn severity_comes_from_the_typed_record_in_either_format() {
        for format in [Format::Native, Format::Ocsf] {
            let sev = |s: &str| Outgoing::read(alert(s).as_bytes(), format).syslog_severity();
            assert_eq!(sev("critical"), 2);
            assert_eq!(sev("high"), 3);
            assert_eq!(sev("medium"), 4);
            assert_eq!(sev("low"), 5);
            assert_eq!(sev("weird"), 5);
        }
        assert_eq!(
            Outgoing::read(b"not json", Format::Native).syslog_severity(),
            5
        );
    }

    #[test]
    fn time_and_id_come_from_the_record() {
        let line = alert("high");
        for format in [Format::Native, Format::Ocsf] {
            let r = Outgoing::read(line.as_bytes(), format);
            assert_eq!(r.id(), Some("abc"));
            let t = r.time().expect("time");
            assert_eq!(t.timestamp(), 1_718_020_800);
            assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);
        }
        let ocsf = Outgoing::read(line.as_bytes(), Format::Ocsf);
        let body: serde_json::Value = serde_json::from_slice(ocsf.body()).expect("JSON");
        assert_eq!(body["class_uid"], 2004);
        assert!(Outgoing::read(b"{}", Format::Native).id().is_none());
    }

    #[test]
    fn alerts_are_told_from_events() {
        let event = br#"{"kind":"fork","child_pid":2,"time":"2024-06-10T12:00:00Z","pid":1,"tid":1,"ppid":0,"uid":0}"#;
        assert!(!Outgoing::read(event, Format::Native).is_alert());
        assert!(Outgoing::read(alert("low").as_bytes(), Format::Native).is_alert());
        assert!(Outgoing::read(b"not json", Format::Native).is_alert());
    }

    #[test]
    fn non_record_lines_embed_as_strings() {
        let r = Outgoing::read(b"plain \"text\"", Format::Ocsf);
        let mut out = Vec::new();
        r.write_json(&mut out);
        assert_eq!(out, br#""plain \"text\"""#);
        out.clear();
        r.write_object(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["message"], "plain \"text\"");
    }
}
