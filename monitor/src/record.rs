//! What the agent writes, typed: an event, an alert, a report of folded alerts, or the agent's
//! statistics. Records travel as these types from the pipeline to every output and sink, which
//! format them (native JSON, OCSF, syslog, HEC, Elasticsearch); what is stored as bytes (the
//! delivery spool, an `--events` recording) reads back into them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    alert::{Alert, limit::Repeats},
    clock::WallTime,
    sensor::Event,
};

/// One record, typed.
#[derive(Clone, Debug)]
pub enum Record {
    /// A raw event (`--events`, or forwarded events).
    Event(Box<Event>),
    /// `kind: "alert"`.
    Alert(Box<Alert>),
    /// `kind: "alert_repeats"`: identical alerts folded into an earlier one.
    Repeats(Repeats),
    /// `kind: "agent_stats"`: the agent's counters, for local outputs only. Kept as the JSON
    /// object it is written as (it gathers every stage's counters; no output reads it back).
    Stats(Value),
}

/// What a record is, for routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A raw event (`exec`, `open`, ...).
    Event,
    /// `alert` and `alert_repeats`: spooled and forwarded to every network sink.
    Alert,
    /// `agent_stats`: local outputs only.
    Stats,
}

impl Record {
    pub fn class(&self) -> Class {
        match self {
            Self::Event(_) => Class::Event,
            Self::Alert(_) | Self::Repeats(_) => Class::Alert,
            Self::Stats(_) => Class::Stats,
        }
    }

    /// The record's time (statistics: when they were taken, if they say).
    pub fn time(&self) -> Option<WallTime> {
        match self {
            Self::Event(e) => Some(e.time),
            Self::Alert(a) => Some(a.time),
            Self::Repeats(r) => Some(r.time),
            Self::Stats(v) => v
                .get("time")
                .and_then(Value::as_str)
                .and_then(WallTime::parse),
        }
    }

    /// The record's stable id (alerts and repeat reports).
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Alert(a) => Some(&a.id),
            Self::Repeats(r) => Some(&r.id),
            Self::Event(_) | Self::Stats(_) => None,
        }
    }

    /// The alert's severity word (`low`, `medium`, `high`, `critical`).
    pub fn severity(&self) -> Option<&str> {
        match self {
            Self::Alert(a) => Some(&a.severity),
            Self::Repeats(r) => Some(&r.severity),
            Self::Event(_) | Self::Stats(_) => None,
        }
    }

    /// The native JSON line, without its newline.
    pub fn native(&self) -> Vec<u8> {
        json_line(self)
    }

    /// A record read back from its native JSON form (`kind` says which).
    ///
    /// # Errors
    ///
    /// When the JSON is not a record the agent writes (unknown `kind`, missing or mistyped
    /// fields).
    pub fn from_value(v: Value) -> Result<Self, serde_json::Error> {
        let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
        Ok(match kind {
            "alert" => Self::Alert(Box::new(serde_json::from_value(v)?)),
            "alert_repeats" => Self::Repeats(serde_json::from_value(v)?),
            "agent_stats" => Self::Stats(v),
            _ => Self::Event(Box::new(serde_json::from_value(v)?)),
        })
    }
}

impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Event(e) => e.serialize(s),
            Self::Alert(a) => a.serialize(s),
            Self::Repeats(r) => r.serialize(s),
            Self::Stats(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl From<Event> for Record {
    fn from(e: Event) -> Self {
        Self::Event(Box::new(e))
    }
}

impl From<Alert> for Record {
    fn from(a: Alert) -> Self {
        Self::Alert(Box::new(a))
    }
}

impl From<Repeats> for Record {
    fn from(r: Repeats) -> Self {
        Self::Repeats(r)
    }
}

/// Serialises a value as one JSON record (no newline: outputs end their lines).
pub fn json_line<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Sized for a typical event line: growing from empty cost several reallocations a record.
    let mut line = Vec::with_capacity(512);
    serde_json::to_writer(&mut line, v)
        .map(|()| line)
        .unwrap_or_else(|e| {
            let msg = serde_json::to_string(&format!("serialisation failed: {e}"))
                .unwrap_or_else(|_| "\"serialisation failed\"".to_owned());
            format!("{{\"kind\":\"agent_error\",\"error\":{msg}}}").into_bytes()
        })
}

#[cfg(test)]
mod tests {
    use super::Record;

    /// A stored alert reads back as the same record, and writes the same line again (nothing
    /// of the envelope leaks into an agent alert's own fields).
    #[test]
    fn an_alert_line_round_trips() {
        let line = r#"{"kind":"alert","id":"a","time":"2026-01-01T00:00:00.000000001Z","rule":"agent.spool-overflow","severity":"high","mitre":["T1562"],"profile":null,"message":"m","event":null,"ancestors":[],"dropped":3,"spool_dir":"/s"}"#;
        let record: Record = serde_json::from_str(line).expect("a record");
        let Record::Alert(a) = &record else {
            panic!("not an alert: {record:?}")
        };
        assert_eq!(a.about.keys().collect::<Vec<_>>(), ["dropped", "spool_dir"]);
        assert_eq!(String::from_utf8(record.native()).expect("UTF-8"), line);
    }
}
