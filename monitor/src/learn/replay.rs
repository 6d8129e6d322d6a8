//! `monitor learn --from-events FILE`: learning from a recording of `monitor run --events`
//! (JSON lines) instead of live processes, e.g. a staging run recorded and learned elsewhere.
//! Lines that are not events (alerts, statistics) are skipped; lines that do not parse (a
//! line torn by a crash, another program's output) are skipped, counted and named on stderr;
//! a recording without a single event is an error.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{Finished, LearnRequest, Session};
use crate::process::table::ProcessTable;
use crate::rules::{ExecInfo, RuleSet};
use crate::sensor::event::{Event, EventBody};

/// The recording's kinds that are not events.
const NOT_EVENTS: &[&str] = &["alert", "alert_repeats", "agent_stats", "agent_error"];

/// One recorded event. Times come from `time` (the kernel's boot-time stamps are not
/// recorded); process start times are unknown, so all start keys are 0.
fn event(v: Value) -> anyhow::Result<Option<Event>> {
    let kind = v.get("kind").and_then(Value::as_str).context("no `kind`")?;
    if NOT_EVENTS.contains(&kind) {
        return Ok(None);
    }
    let mut ev: Event = serde_json::from_value(v)?;
    ev.ktime_ns = u64::try_from(ev.time.ns())
        .with_context(|| format!("`time` {} is before 1970", ev.time))?;
    // What the policy stage added is not the recording's to say.
    ev.profile = None;
    ev.phase = None;
    ev.killed = false;
    Ok(Some(ev))
}

/// Replays `path` into one session.
pub fn replay(path: &Path, request: &LearnRequest, rules: &RuleSet) -> anyhow::Result<Finished> {
    let (spec, profile_file) = request.spec(rules).map_err(anyhow::Error::msg)?;
    let file = File::open(path).with_context(|| format!("--from-events {}", path.display()))?;
    let mut session: Option<Session> = None;
    let table = ProcessTable::new(1);
    let mut exes: HashMap<u32, String> = HashMap::new();
    let (mut first, mut last) = (None::<(u64, String)>, (0u64, String::new()));
    let mut skipped = Skipped::default();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                skipped.note(&at, "not UTF-8");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("{at}: reading")),
        };
        if line.trim().is_empty() {
            continue;
        }
        let ev = serde_json::from_str::<Value>(&line)
            .context("not a JSON line")
            .and_then(|v| event(v).context("not an event"));
        let mut ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => continue,
            Err(e) => {
                skipped.note(&at, &format!("{e:#}"));
                continue;
            }
        };
        if first.is_none() {
            first = Some((ev.ktime_ns, ev.time.to_string()));
        }
        last = (ev.ktime_ns, ev.time.to_string());
        let (start_ns, start_wall) = first.clone().unwrap_or_default();
        let s = session
            .get_or_insert_with(|| Session::start(0, spec.clone(), &table, start_ns, start_wall));
        if let EventBody::Exec(x) = &mut ev.body {
            x.exe = ev.exe.clone();
            if let Some(exe) = &ev.exe {
                exes.insert(ev.pid, exe.clone());
            }
        }
        match &ev.body {
            EventBody::Exec(x) => {
                let info = ExecInfo {
                    exe: x.exe.as_deref(),
                    filename: &x.filename,
                    argv: &x.argv,
                    uid: ev.uid,
                    parent_exe: exes.get(&ev.ppid).map(String::as_str),
                    container_id: ev.container_id.as_deref(),
                    pod_uid: ev.pod_uid.as_deref(),
                    container: ev.container.as_deref(),
                    pod: ev.pod.as_deref(),
                    cwd: x.cwd.as_deref(),
                };
                s.observe(&ev, Some(&info));
            }
            _ => s.observe(&ev, None),
        }
    }
    skipped.report(path);
    let Some(s) = session else {
        bail!("{}: no events in the recording", path.display());
    };
    Ok(Finished {
        outcome: s.finish(last.0, last.1),
        credentials: rules.credential_patterns_or_shipped(),
        nameservers: crate::resolve::nameservers(),
        profile_file,
        stopped: None,
    })
}

/// Lines skipped because they do not parse.
#[derive(Default)]
struct Skipped {
    count: usize,
    first: Vec<String>,
}

impl Skipped {
    /// How many skipped lines are named on stderr.
    const NAMED: usize = 5;

    fn note(&mut self, at: &str, why: &str) {
        self.count += 1;
        if self.first.len() < Self::NAMED {
            self.first.push(format!("{at}: {why}"));
        }
    }

    fn report(&self, path: &Path) {
        if self.count == 0 {
            return;
        }
        eprintln!(
            "monitor: warning: {} line(s) of {} skipped (not events):",
            self.count,
            path.display()
        );
        for l in &self.first {
            eprintln!("  {l}");
        }
        if self.count > self.first.len() {
            eprintln!("  ...");
        }
    }
}
