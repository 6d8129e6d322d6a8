//! The few alert fields the network sinks read (severity, time, id), and JSON embedding of a raw
//! alert line. Works on native alerts and on OCSF-shaped ones; a line that is not JSON is carried
//! as a JSON string rather than dropped or allowed to corrupt a request body.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One alert line, parsed once.
pub struct AlertLine<'a> {
    raw: &'a [u8],
    value: Option<Value>,
}

impl<'a> AlertLine<'a> {
    pub fn parse(raw: &'a [u8]) -> Self {
        Self {
            raw,
            value: serde_json::from_slice(raw).ok(),
        }
    }

    /// Whether this is an alert (native `alert`/`alert_repeats`, an OCSF Detection Finding, or
    /// anything else unrecognised) rather than a forwarded event.
    pub fn is_alert(&self) -> bool {
        let Some(value) = &self.value else {
            return true;
        };
        if let Some(kind) = value.get("kind").and_then(Value::as_str) {
            return kind.starts_with("alert");
        }
        // OCSF: Detection Finding; anything unrecognised counts as an alert.
        value
            .get("class_uid")
            .and_then(Value::as_u64)
            .is_none_or(|class| class == 2004)
    }

    /// The raw line as given.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Syslog severity (RFC 5424 table 2) for the alert's `severity` (native names or OCSF
    /// labels, any case) or else OCSF `severity_id`; notice (5) when neither is usable.
    pub fn syslog_severity(&self) -> u8 {
        let Some(value) = &self.value else { return 5 };
        if let Some(name) = value.get("severity").and_then(Value::as_str) {
            match name.to_ascii_lowercase().as_str() {
                "fatal" | "critical" => return 2,
                "high" => return 3,
                "medium" => return 4,
                "low" => return 5,
                "informational" | "info" => return 6,
                _ => {}
            }
        }
        match value.get("severity_id").and_then(Value::as_u64) {
            Some(5 | 6) => 2,
            Some(4) => 3,
            Some(3) => 4,
            Some(1) => 6,
            _ => 5,
        }
    }

    /// The alert's `time`: an RFC 3339 string (native) or epoch milliseconds (OCSF).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        match self.value.as_ref()?.get("time")? {
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Value::Number(n) => DateTime::from_timestamp_millis(n.as_i64()?),
            _ => None,
        }
    }

    /// The alert's `time`, or now when it has none.
    pub fn time_or_now(&self) -> DateTime<Utc> {
        self.time()
            .unwrap_or_else(|| DateTime::<Utc>::from(SystemTime::now()))
    }

    /// The alert's stable id: `id` (native) or `metadata.uid` / `finding_info.uid` (OCSF).
    pub fn id(&self) -> Option<String> {
        let value = self.value.as_ref()?;
        [
            value.get("id"),
            value.pointer("/metadata/uid"),
            value.pointer("/finding_info/uid"),
        ]
        .into_iter()
        .flatten()
        .find_map(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    /// Appends the alert as a JSON value: the line itself when it is JSON, else a JSON string.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        if self.value.is_some() {
            out.extend_from_slice(self.raw);
        } else {
            write_json_string(out, &String::from_utf8_lossy(self.raw));
        }
    }

    /// Appends the alert as a JSON object: the line itself when it is one, else
    /// `{"message": <line as a string>}`.
    pub fn write_object(&self, out: &mut Vec<u8>) {
        if matches!(self.value, Some(Value::Object(_))) {
            out.extend_from_slice(self.raw);
        } else {
            out.extend_from_slice(b"{\"message\":");
            write_json_string(out, &String::from_utf8_lossy(self.raw));
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
    use super::AlertLine;

    #[test]
    fn severity_maps_native_and_ocsf_values() {
        let sev = |line: &str| AlertLine::parse(line.as_bytes()).syslog_severity();
        assert_eq!(sev(r#"{"severity":"critical"}"#), 2);
        assert_eq!(sev(r#"{"severity":"high"}"#), 3);
        assert_eq!(sev(r#"{"severity":"medium"}"#), 4);
        assert_eq!(sev(r#"{"severity":"low"}"#), 5);
        assert_eq!(sev(r#"{"severity":"High","severity_id":4}"#), 3);
        assert_eq!(sev(r#"{"severity_id":5}"#), 2);
        assert_eq!(sev(r#"{"severity":"weird"}"#), 5);
        assert_eq!(sev("not json"), 5);
    }

    #[test]
    fn time_and_id_come_from_native_or_ocsf_fields() {
        let native = AlertLine::parse(br#"{"id":"abc","time":"2024-06-10T12:00:00.123456789Z"}"#);
        assert_eq!(native.id().as_deref(), Some("abc"));
        let t = native.time().expect("time");
        assert_eq!(t.timestamp(), 1_718_020_800);
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);

        let ocsf = AlertLine::parse(br#"{"time":1718020800123,"metadata":{"uid":"u1"}}"#);
        assert_eq!(ocsf.id().as_deref(), Some("u1"));
        assert_eq!(
            ocsf.time().expect("time").timestamp_millis(),
            1_718_020_800_123
        );

        assert!(AlertLine::parse(b"{}").id().is_none());
    }

    #[test]
    fn alerts_are_told_from_events() {
        let alert = |line: &str| AlertLine::parse(line.as_bytes()).is_alert();
        assert!(alert(r#"{"kind":"alert"}"#));
        assert!(alert(r#"{"kind":"alert_repeats"}"#));
        assert!(alert(r#"{"class_uid":2004,"finding_info":{}}"#));
        assert!(!alert(r#"{"kind":"open"}"#));
        assert!(!alert(r#"{"class_uid":1001}"#));
        assert!(alert(r#"{"id":"x"}"#));
        assert!(alert("not json"));
    }

    #[test]
    fn non_json_lines_embed_as_strings() {
        let r = AlertLine::parse(b"plain \"text\"");
        let mut out = Vec::new();
        r.write_json(&mut out);
        assert_eq!(out, br#""plain \"text\"""#);
        out.clear();
        r.write_object(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["message"], "plain \"text\"");
    }
}
