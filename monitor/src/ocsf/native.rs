//! Typed, error-reporting access to a native JSON record: every failure names the record's kind
//! and the field.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::OcsfError;

/// One native record (or a nested part of one, such as an alert's `event`).
#[derive(Clone, Copy)]
pub(super) struct Native<'a> {
    kind: &'a str,
    /// The top-level record's kind, named in errors (an alert's for its `event`).
    err_kind: &'a str,
    /// Prefix of field names in errors: `""`, `"event."`, `"ancestors[]."`.
    prefix: &'static str,
    map: &'a Map<String, Value>,
}

/// A parsed `time` field.
pub(super) struct Time<'a> {
    /// Milliseconds since the Unix epoch.
    pub ms: i64,
    /// Offset from UTC in minutes.
    pub offset_min: i32,
    /// The native string, kept as `metadata.original_time`.
    pub original: &'a str,
}

/// The JSON type name of `v`, for error messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Native<'a> {
    /// A top-level record: must be an object with a string `kind`.
    pub fn new(v: &'a Value) -> Result<Self, OcsfError> {
        Self::nested(v, None, "")
    }

    /// A record with its own `kind`; a nested one (an alert's `event`) names its parent's kind
    /// in errors and qualifies field names with `prefix`.
    fn nested(
        v: &'a Value,
        parent: Option<&'a str>,
        prefix: &'static str,
    ) -> Result<Self, OcsfError> {
        let Value::Object(map) = v else {
            return Err(OcsfError::NotAnObject {
                found: type_name(v),
            });
        };
        let unknown = "(no kind)";
        let mut rec = Self {
            kind: unknown,
            err_kind: parent.unwrap_or(unknown),
            prefix,
            map,
        };
        rec.kind = rec.str("kind")?;
        if parent.is_none() {
            rec.err_kind = rec.kind;
        }
        Ok(rec)
    }

    /// The record's native `kind`.
    pub fn kind(&self) -> &'a str {
        self.kind
    }

    fn field(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn missing(&self, field: &str) -> OcsfError {
        OcsfError::MissingField {
            kind: self.err_kind.to_owned(),
            field: self.field(field),
        }
    }

    fn bad(&self, field: &str, expected: &'static str, found: impl Into<String>) -> OcsfError {
        OcsfError::BadField {
            kind: self.err_kind.to_owned(),
            field: self.field(field),
            expected,
            found: found.into(),
        }
    }

    /// The field's value; `None` when absent or null.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// An optional string field.
    pub fn opt_str(&self, field: &str) -> Result<Option<&'a str>, OcsfError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(field, "a string", type_name(v))),
        }
    }

    /// A required string field.
    pub fn str(&self, field: &str) -> Result<&'a str, OcsfError> {
        self.opt_str(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional integer field.
    pub fn opt_i64(&self, field: &str) -> Result<Option<i64>, OcsfError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.bad(field, "an integer", v.to_string())),
        }
    }

    /// An optional unsigned integer field (ids, counts, sizes).
    pub fn opt_u64(&self, field: &str) -> Result<Option<u64>, OcsfError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.bad(field, "a non-negative integer", v.to_string())),
        }
    }

    /// A required unsigned integer field.
    pub fn u64(&self, field: &str) -> Result<u64, OcsfError> {
        self.opt_u64(field)?.ok_or_else(|| self.missing(field))
    }

    /// An optional boolean field.
    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, OcsfError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(field, "a boolean", type_name(v))),
        }
    }

    /// An optional port number.
    pub fn opt_port(&self, field: &str) -> Result<Option<u16>, OcsfError> {
        match self.opt_u64(field)? {
            None => Ok(None),
            Some(p) => u16::try_from(p)
                .map(Some)
                .map_err(|_| self.bad(field, "a port number (0-65535)", p.to_string())),
        }
    }

    /// An optional IP address, IPv4-mapped IPv6 addresses canonicalised to IPv4.
    pub fn opt_ip(&self, field: &str) -> Result<Option<IpAddr>, OcsfError> {
        match self.opt_str(field)? {
            None => Ok(None),
            Some(s) => s
                .parse::<IpAddr>()
                .map(|ip| Some(ip.to_canonical()))
                .map_err(|_| self.bad(field, "an IP address", format!("{s:?}"))),
        }
    }

    /// A list of strings; absent or null is empty.
    pub fn str_list(&self, field: &str) -> Result<Vec<&'a str>, OcsfError> {
        self.list(field)?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.bad(field, "a list of strings", v.to_string()))
            })
            .collect()
    }

    /// A list of IP addresses, as written (an IPv4-mapped IPv6 address stays IPv6); absent or
    /// null is empty.
    pub fn ip_list(&self, field: &str) -> Result<Vec<IpAddr>, OcsfError> {
        self.str_list(field)?
            .into_iter()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| self.bad(field, "a list of IP addresses", format!("{s:?}")))
            })
            .collect()
    }

    /// A list of values; absent or null is empty.
    fn list(&self, field: &str) -> Result<&'a [Value], OcsfError> {
        match self.get(field) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(v) => Err(self.bad(field, "an array", type_name(v))),
        }
    }

    /// A required nested record with its own `kind` (an alert's `event`).
    pub fn record(&self, field: &'static str, prefix: &'static str) -> Result<Self, OcsfError> {
        let v = self.get(field).ok_or_else(|| self.missing(field))?;
        if !v.is_object() {
            return Err(self.bad(field, "an object", type_name(v)));
        }
        Self::nested(v, Some(self.err_kind), prefix)
    }

    /// An optional nested record with its own `kind`; `None` when absent or null.
    pub fn opt_record(
        &self,
        field: &'static str,
        prefix: &'static str,
    ) -> Result<Option<Self>, OcsfError> {
        match self.get(field) {
            None => Ok(None),
            Some(_) => self.record(field, prefix).map(Some),
        }
    }

    /// The non-null fields not named in `known`, in the record's order.
    pub fn extra<'k>(&self, known: &'k [&str]) -> impl Iterator<Item = (&'a str, &'a Value)> + 'k
    where
        'a: 'k,
    {
        self.map
            .iter()
            .filter(move |(k, v)| !v.is_null() && !known.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The objects of a list field (an alert's `ancestors`); they have no `kind` of their own.
    pub fn items(&self, field: &str, prefix: &'static str) -> Result<Vec<Self>, OcsfError> {
        self.list(field)?
            .iter()
            .map(|v| match v {
                Value::Object(map) => Ok(Self {
                    kind: self.kind,
                    err_kind: self.err_kind,
                    prefix,
                    map,
                }),
                other => Err(self.bad(field, "a list of objects", type_name(other))),
            })
            .collect()
    }

    /// The required RFC 3339 `time` field.
    pub fn time(&self) -> Result<Time<'a>, OcsfError> {
        let original = self.str("time")?;
        let t = chrono::DateTime::parse_from_rfc3339(original).map_err(|source| {
            OcsfError::BadTime {
                kind: self.err_kind.to_owned(),
                field: self.field("time"),
                value: original.to_owned(),
                source,
            }
        })?;
        Ok(Time {
            ms: t.timestamp_millis(),
            offset_min: t.offset().local_minus_utc() / 60,
            original,
        })
    }
}
