//! Reading the agent's JSON lines incrementally, tracking the pids a test cares about, matching
//! events and checking the envelope every event carries.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

/// How many events of the tracked pids a timeout report shows.
const REPORT_TAIL: usize = 20;

/// Slack allowed between an event's `time` and the test's own clock.
const CLOCK_SLACK: Duration = Duration::from_secs(5);

/// The events appended to one file since a point in time, read incrementally.
#[derive(Debug)]
pub(crate) struct EventLog {
    path: PathBuf,
    file: Option<File>,
    /// Bytes of the file consumed so far.
    offset: u64,
    /// The log started in the middle of a line: drop everything up to the first newline.
    skip_partial: bool,
    /// The last, incomplete line.
    pending: Vec<u8>,
    events: Vec<Value>,
    /// Pids the test started, plus their descendants as the fork and exec events reveal them.
    tracked: BTreeSet<u64>,
}

impl EventLog {
    /// A log of what is appended to `path` from now on.
    pub(crate) fn from_end(path: &Path) -> Self {
        let (offset, skip_partial) = match File::open(path) {
            Ok(file) => {
                let len = file.metadata().map_or(0, |m| m.len());
                let mut last = [0u8; 1];
                let mid_line =
                    len > 0 && file.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n';
                (len, mid_line)
            }
            Err(_) => (0, false),
        };
        Self {
            path: path.to_path_buf(),
            file: None,
            offset,
            skip_partial,
            pending: Vec::new(),
            events: Vec::new(),
            tracked: BTreeSet::new(),
        }
    }

    pub(crate) fn events(&self) -> &[Value] {
        &self.events
    }

    pub(crate) fn track(&mut self, pid: u32) {
        self.tracked.insert(u64::from(pid));
    }

    /// Reads what was appended since the last call. A complete line that is not a JSON object
    /// breaks the contract and is returned as an error.
    pub(crate) fn poll(&mut self) -> Result<(), String> {
        self.read_new()
            .map_err(|e| format!("reading the agent's events {}: {e}", self.path.display()))?;
        let pending = std::mem::take(&mut self.pending);
        let mut consumed = 0;
        let mut result = Ok(());
        while let Some(len) = pending[consumed..].iter().position(|&b| b == b'\n') {
            let line = &pending[consumed..consumed + len];
            consumed += len + 1;
            if std::mem::take(&mut self.skip_partial) || line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(event) if event.is_object() => self.ingest(event),
                Ok(_) | Err(_) => {
                    result = Err(format!(
                        "the agent wrote a line that is not a JSON object (the contract is one \
                         object per line) to {}:\n{}",
                        self.path.display(),
                        String::from_utf8_lossy(line)
                    ));
                    break;
                }
            }
        }
        self.pending = pending[consumed..].to_vec();
        result
    }

    fn read_new(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let read = file.read_to_end(&mut self.pending)?;
        self.offset += read as u64;
        Ok(())
    }

    fn ingest(&mut self, event: Value) {
        let parent = event["pid"].as_u64();
        match event["kind"].as_str() {
            Some("fork") if parent.is_some_and(|p| self.tracked.contains(&p)) => {
                if let Some(child) = event["child_pid"].as_u64() {
                    self.tracked.insert(child);
                }
            }
            Some("exec")
                if event["ppid"]
                    .as_u64()
                    .is_some_and(|p| self.tracked.contains(&p)) =>
            {
                if let Some(pid) = parent {
                    self.tracked.insert(pid);
                }
            }
            _ => {}
        }
        self.events.push(event);
    }

    /// Whether the event is about a tracked process (its own, or the fork that made it).
    fn concerns_tracked(&self, event: &Value) -> bool {
        ["pid", "child_pid"].iter().any(|key| {
            event[key]
                .as_u64()
                .is_some_and(|pid| self.tracked.contains(&pid))
        })
    }

    /// What a failed wait shows: the tracked pids and their last events.
    pub(crate) fn report(&self) -> String {
        let related: Vec<&Value> = self
            .events
            .iter()
            .filter(|e| self.concerns_tracked(e))
            .collect();
        let mut out = format!(
            "tracked pids (children started by the test and their descendants): {:?}\n\
             events read from {}: {} in all, {} about the tracked pids",
            self.tracked,
            self.path.display(),
            self.events.len(),
            related.len()
        );
        for event in last_few(&mut out, &related, REPORT_TAIL) {
            let _ = write!(out, "\n  {event}");
        }
        if !self.pending.is_empty() {
            let _ = write!(
                out,
                "\nunfinished last line ({} bytes): {}",
                self.pending.len(),
                String::from_utf8_lossy(&self.pending[..self.pending.len().min(300)])
            );
        }
        out
    }
}

/// The last `limit` of `items`, after ending the report line `out` with `; the last N:` when
/// some are left out, or `:` when there are any to show.
pub(crate) fn last_few<'a, T>(out: &mut String, items: &'a [T], limit: usize) -> &'a [T] {
    let skip = items.len().saturating_sub(limit);
    if skip > 0 {
        let _ = write!(out, "; the last {limit}:");
    } else if !items.is_empty() {
        out.push(':');
    }
    &items[skip..]
}

/// True when every key of the object `pattern` is in `event` with an equal value (a subset
/// match); a pattern that is not an object must equal the event.
pub fn matches(event: &Value, pattern: &Value) -> bool {
    match pattern.as_object() {
        Some(fields) => fields.iter().all(|(k, v)| event.get(k) == Some(v)),
        None => event == pattern,
    }
}

/// One line per field of `expected` that `event` lacks or holds with another value.
pub(crate) fn field_mismatches(event: &Value, expected: &Value) -> Vec<String> {
    let Some(fields) = expected.as_object() else {
        return vec![format!(
            "expected fields must be a JSON object, not {expected}"
        )];
    };
    fields
        .iter()
        .filter_map(|(key, want)| match event.get(key) {
            None => Some(format!("`{key}` is missing; expected {want}")),
            Some(got) if got != want => Some(format!("`{key}` is {got}; expected {want}")),
            Some(_) => None,
        })
        .collect()
}

/// Checks the fields every event carries (the contract's envelope) and that its `time` lies
/// within [`CLOCK_SLACK`] of `[since, now]`.
pub(crate) fn envelope_problems(event: &Value, since: SystemTime) -> Vec<String> {
    let mut problems = Vec::new();
    for key in ["kind", "comm", "exe"] {
        if !event[key].is_string() {
            problems.push(format!("`{key}` should be a string, is {}", event[key]));
        }
    }
    for key in ["pid", "tid", "ppid", "uid", "cgroup_id"] {
        if event[key].as_u64().is_none() {
            problems.push(format!(
                "`{key}` should be a non-negative integer, is {}",
                event[key]
            ));
        }
    }
    for key in ["container_id", "pod_uid"] {
        match event.get(key) {
            Some(Value::Null | Value::String(_)) => {}
            Some(other) => problems.push(format!("`{key}` should be a string or null, is {other}")),
            None => problems.push(format!("`{key}` is missing (null when there is none)")),
        }
    }
    match event["time"].as_str().map(|t| (t, parse_time(t))) {
        None => problems.push(format!("`time` should be a string, is {}", event["time"])),
        Some((text, None)) => problems.push(format!(
            "`time` {text:?} is not RFC 3339 UTC with nanoseconds \
             (like \"2026-11-25T21:00:00.123456789Z\")"
        )),
        Some((text, Some(time))) => {
            let now = SystemTime::now();
            if time + CLOCK_SLACK < since || time > now + CLOCK_SLACK {
                problems.push(format!(
                    "`time` {text} is not between the test's start ({}) and now ({}), \
                     give or take {CLOCK_SLACK:?}",
                    unix_secs(since),
                    unix_secs(now)
                ));
            }
        }
    }
    problems
}

fn unix_secs(time: SystemTime) -> String {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09} s since the epoch", d.as_secs(), d.subsec_nanos()),
        Err(_) => "before the epoch".to_owned(),
    }
}

/// Parses exactly `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (RFC 3339, UTC, nine fraction digits).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 30 {
        return None;
    }
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (29, b'Z'),
    ];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        b[from..to].iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, nanos) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 29)?);
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid || year < 1970 {
        return None;
    }
    let days = days_since_epoch(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (year >= 1970), counted plainly: whole years, then
/// whole months of the last year.
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let years: u64 = (1970..year)
        .map(|y| if is_leap(y) { 366 } else { 365 })
        .sum();
    let months: u64 = (1..month).map(|m| days_in_month(year, m)).sum();
    years + months + day - 1
}

#[cfg(test)]
mod tests {
    use std::{
        fs::OpenOptions,
        io::Write as _,
        path::Path,
        time::{Duration, SystemTime, UNIX_EPOCH},
    };

    use serde_json::json;

    use super::{EventLog, envelope_problems, field_mismatches, matches, parse_time};
    use crate::fs::TempDir;

    fn append(path: &Path, text: &str) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("opening the events file");
        file.write_all(text.as_bytes()).expect("appending");
    }

    fn kinds(log: &EventLog) -> Vec<&str> {
        log.events()
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or("?"))
            .collect()
    }

    #[test]
    fn reads_lines_incrementally_and_holds_back_a_partial_one() {
        let dir = TempDir::new("unit-log");
        let path = dir.join("events.jsonl");
        let mut log = EventLog::from_end(&path);
        assert_eq!(log.poll(), Ok(()), "no file yet");
        append(&path, "{\"kind\":\"a\",\"pid\":1}\n{\"kind\":\"b\",");
        assert_eq!(log.poll(), Ok(()));
        assert_eq!(kinds(&log), ["a"]);
        append(&path, "\"pid\":2}\n\n");
        assert_eq!(log.poll(), Ok(()));
        assert_eq!(kinds(&log), ["a", "b"]);
    }

    #[test]
    fn starts_at_the_end_and_skips_a_line_in_progress() {
        let dir = TempDir::new("unit-log");
        let path = dir.join("events.jsonl");
        append(&path, "{\"kind\":\"old\"}\n{\"kind\":\"ha");
        let mut log = EventLog::from_end(&path);
        append(&path, "lf\"}\n{\"kind\":\"new\"}\n");
        assert_eq!(log.poll(), Ok(()));
        assert_eq!(kinds(&log), ["new"]);

        let mut at_line_start = EventLog::from_end(&path);
        append(&path, "{\"kind\":\"next\"}\n");
        assert_eq!(at_line_start.poll(), Ok(()));
        assert_eq!(kinds(&at_line_start), ["next"]);
    }

    #[test]
    fn a_line_that_is_not_a_json_object_is_an_error() {
        let dir = TempDir::new("unit-log");
        let path = dir.join("events.jsonl");
        let mut log = EventLog::from_end(&path);
        append(&path, "[1, 2]\n");
        assert!(log.poll().is_err());
    }

    #[test]
    fn tracks_descendants_through_fork_and_exec() {
        let dir = TempDir::new("unit-log");
        let path = dir.join("events.jsonl");
        let mut log = EventLog::from_end(&path);
        log.track(10);
        append(
            &path,
            "{\"kind\":\"fork\",\"pid\":10,\"child_pid\":11}\n\
             {\"kind\":\"exec\",\"pid\":12,\"ppid\":11}\n\
             {\"kind\":\"exec\",\"pid\":99,\"ppid\":1}\n",
        );
        assert_eq!(log.poll(), Ok(()));
        assert_eq!(
            log.tracked.iter().copied().collect::<Vec<_>>(),
            [10, 11, 12]
        );
        let report = log.report();
        assert!(
            report.contains("3 in all, 2 about the tracked pids"),
            "{report}"
        );
    }

    #[test]
    fn checks_the_envelope_and_exact_fields() {
        let now = SystemTime::now();
        let since = now.duration_since(UNIX_EPOCH).expect("after the epoch");
        let secs = since.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        // Today's civil date, counted forward from the epoch.
        let mut year = 1970;
        let mut day = days;
        while day >= if super::is_leap(year) { 366 } else { 365 } {
            day -= if super::is_leap(year) { 366 } else { 365 };
            year += 1;
        }
        let mut month = 1;
        while day >= super::days_in_month(year, month) {
            day -= super::days_in_month(year, month);
            month += 1;
        }
        let time = format!(
            "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            day + 1,
            rest / 3_600,
            rest % 3_600 / 60,
            rest % 60,
            since.subsec_nanos()
        );
        let event = json!({
            "kind": "exit", "time": time, "pid": 5, "tid": 5, "ppid": 1, "uid": 0,
            "comm": "sh", "exe": "/usr/bin/dash", "cgroup_id": 1,
            "container_id": null, "pod_uid": null, "exit_code": 3, "signal": null,
        });
        assert_eq!(envelope_problems(&event, now), Vec::<String>::new());
        assert!(field_mismatches(&event, &json!({"exit_code": 3, "signal": null})).is_empty());
        assert_eq!(
            field_mismatches(&event, &json!({"exit_code": 4, "absent": 1})).len(),
            2
        );

        let mut stale = event.clone();
        stale["time"] = json!("2001-01-01T00:00:00.000000000Z");
        stale["pod_uid"] = json!(7);
        assert_eq!(envelope_problems(&stale, now).len(), 2);
    }

    #[test]
    fn parses_the_contract_time_format() {
        let t = parse_time("2026-11-25T21:00:00.123456789Z");
        // 2026-11-25 is day 20_782 after the epoch.
        let want = UNIX_EPOCH
            + Duration::from_secs(20_782 * 86_400 + 21 * 3_600)
            + Duration::from_nanos(123_456_789);
        assert_eq!(t, Some(want));
        assert_eq!(
            parse_time("2024-02-29T00:00:00.000000000Z"),
            Some(UNIX_EPOCH + Duration::from_secs(19_782 * 86_400))
        );
    }

    #[test]
    fn rejects_other_time_formats() {
        for bad in [
            "2026-11-25T21:00:00Z",
            "2026-11-25T21:00:00.123456Z",
            "2026-11-25T21:00:00.123456789+00:00",
            "2026-11-25 21:00:00.123456789Z",
            "2026-13-25T21:00:00.123456789Z",
            "2026-02-29T21:00:00.123456789Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn matches_is_a_subset_match() {
        let event = json!({"kind": "open", "pid": 7, "path": "/a", "result": -2});
        assert!(matches(&event, &json!({"kind": "open", "result": -2})));
        assert!(!matches(&event, &json!({"kind": "open", "result": 0})));
        assert!(!matches(&event, &json!({"missing": null})));
    }
}
