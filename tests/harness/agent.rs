//! Starting, sharing and stopping the agent under test, and waiting for its events.
//!
//! One agent process serves every test of a test binary that runs while it is up: the first
//! [`Agent::start`] launches it, later ones join it, and the last handle dropped stops it. Each
//! handle reads the events file from where it stood when the handle was made, so a test sees only
//! events that happened after it started, and tests filter by the pids of the children they spawn.
//! Sharing keeps the 2-core machines from loading the probes once per test and running several
//! agents that each see every event of the host.

use std::{
    cell::RefCell,
    ffi::OsString,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex, Weak},
    thread,
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

use crate::{
    events::{EventLog, envelope_problems, field_mismatches, matches},
    launch::{AgentProcess, Launch, lock, preflight},
    process::{Proc, describe},
    skip_or_fail,
};

/// The usual deadline for an event or a child.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Polling period of every deadline-bound wait.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// An agent shared by the tests of one binary, launched by the first that needs it: `T` holds
/// the [`AgentProcess`] and whatever must live as long as it.
pub(crate) struct SharedSlot<T> {
    state: Mutex<Slot<T>>,
}

enum Slot<T> {
    Idle,
    Running(Weak<T>),
    /// It could not start; later tests report the first line of the same reason without trying
    /// again.
    Unavailable(String),
}

impl<T> SharedSlot<T> {
    pub(crate) const fn new() -> Self {
        Self {
            state: Mutex::new(Slot::Idle),
        }
    }
}

impl<T: AsRef<AgentProcess>> SharedSlot<T> {
    /// Joins the running agent, or launches one with `launch`. `None` after saying loudly why it
    /// cannot run (under `CI=true` that panics instead); panics if the shared agent died.
    #[track_caller]
    pub(crate) fn join(&self, launch: impl FnOnce() -> Result<T, String>) -> Option<Arc<T>> {
        let mut state = lock(&self.state);
        let running = match &*state {
            Slot::Unavailable(reason) => {
                let first_line = reason.lines().next().unwrap_or_default();
                let summary = format!(
                    "{first_line}\n(the agent could not start for an earlier test of this binary; \
                     its report, with the agent's stderr, is above)"
                );
                drop(state);
                skip_or_fail(&summary);
                return None;
            }
            Slot::Running(weak) => weak.upgrade(),
            Slot::Idle => None,
        };
        let running = match running {
            Some(running) => {
                let process = (*running).as_ref();
                if let Some(status) = process.exited() {
                    drop(state);
                    panic!(
                        "the agent shared by this test binary died ({}); its stderr:\n{}",
                        describe(status),
                        process.stderr_excerpt()
                    );
                }
                running
            }
            None => match launch() {
                Ok(running) => {
                    let running = Arc::new(running);
                    *state = Slot::Running(Arc::downgrade(&running));
                    running
                }
                Err(reason) => {
                    *state = Slot::Unavailable(reason.clone());
                    drop(state);
                    skip_or_fail(&reason);
                    return None;
                }
            },
        };
        Some(running)
    }
}

impl AsRef<AgentProcess> for AgentProcess {
    fn as_ref(&self) -> &AgentProcess {
        self
    }
}

static SHARED: SharedSlot<AgentProcess> = SharedSlot::new();

/// A test's handle on the running agent: its own view of the events file and the pids it tracks.
pub struct Agent {
    process: Arc<AgentProcess>,
    log: RefCell<EventLog>,
    since: SystemTime,
}

impl Agent {
    /// Starts the agent, or joins the one this test binary already runs, once every probe is
    /// attached. When it cannot run (not root, no binary, it exits or never gets ready) this says
    /// so loudly, including the agent's stderr, and returns `None` so the test can return early;
    /// under `CI=true` it panics instead.
    #[track_caller]
    pub fn start() -> Option<Self> {
        let since = SystemTime::now();
        let process = SHARED.join(|| {
            let bin = preflight()?;
            AgentProcess::launch(
                &bin,
                Launch {
                    dir_label: "agent",
                    output_name: "events.jsonl",
                    output_path: None,
                    args: vec![OsString::from("--events")],
                    keep_hint: "",
                },
            )
        })?;
        let log = EventLog::from_end(process.output());
        Some(Self {
            process,
            log: RefCell::new(log),
            since,
        })
    }

    /// Starts `cmd` (the agent is ready by construction) and tracks its pid and descendants.
    #[track_caller]
    pub fn spawn(&self, cmd: &mut Command) -> Proc {
        let child = Proc::spawn(cmd);
        self.track(child.pid());
        child
    }

    /// Adds a pid whose events a timeout report should show.
    pub fn track(&self, pid: u32) {
        self.log.borrow_mut().track(pid);
    }

    /// Waits until an event satisfies `pred` and returns it (the first such event since this
    /// handle was made). Past the deadline, or if the agent dies, panics with the events of the
    /// tracked pids and the agent's stderr.
    #[track_caller]
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(
            timeout,
            "an event satisfying the test's predicate",
            |events| events.iter().find(|e| pred(e)).cloned(),
        )
    }

    /// Waits until an event has every field of `pattern` (a subset match, see [`matches`]).
    #[track_caller]
    pub fn wait_for_match(&self, timeout: Duration, pattern: &Value) -> Value {
        self.wait_until(timeout, &format!("an event with {pattern}"), |events| {
            events.iter().find(|e| matches(e, pattern)).cloned()
        })
    }

    /// Waits until each pattern has a matching event (the first for each; two patterns may match
    /// the same event, so make them distinct); returns them in the patterns' order.
    #[track_caller]
    pub fn wait_for_all(&self, timeout: Duration, patterns: &[Value]) -> Vec<Value> {
        let mut found: Vec<Option<Value>> = vec![None; patterns.len()];
        let what = patterns
            .iter()
            .map(|p| format!("\n  {p}"))
            .collect::<String>();
        self.wait_until(
            timeout,
            &format!("an event for each of these patterns:{what}"),
            |events| {
                for (slot, pattern) in found.iter_mut().zip(patterns) {
                    if slot.is_none() {
                        *slot = events.iter().find(|e| matches(e, pattern)).cloned();
                    }
                }
                found.iter().cloned().collect::<Option<Vec<Value>>>()
            },
        )
    }

    /// Every event read so far whose `pid` (or, for a fork, `child_pid`) is `pid`, in file order.
    #[track_caller]
    pub fn events_for_pid(&self, pid: u32) -> Vec<Value> {
        read_matching(&self.log, |e| e["pid"] == pid || e["child_pid"] == pid)
    }

    /// Asserts that `event` carries the contract's envelope (every field, `time` in RFC 3339 with
    /// nanoseconds and close to now) and exactly the values of every field in `expected`.
    #[track_caller]
    pub fn assert_event(&self, event: &Value, expected: &Value) {
        let mut problems = envelope_problems(event, self.since);
        problems.extend(field_mismatches(event, expected));
        if !problems.is_empty() {
            panic!(
                "the event does not match:\n  - {}\nevent:    {event}\nexpected: {expected}",
                problems.join("\n  - ")
            );
        }
    }

    /// Where the agent writes its events.
    pub fn events_path(&self) -> PathBuf {
        self.process.output().to_path_buf()
    }

    /// Polls the events file until `check` finds what it looks for in all events read so far.
    #[track_caller]
    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        check: impl FnMut(&[Value]) -> Option<T>,
    ) -> T {
        wait_until(
            &self.process,
            &self.log,
            timeout,
            what,
            EventLog::report,
            check,
        )
    }
}

/// Every line read so far (after reading what is new) that satisfies `pred`, in file order.
#[track_caller]
pub(crate) fn read_matching(log: &RefCell<EventLog>, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut log = log.borrow_mut();
    if let Err(problem) = log.poll() {
        drop(log);
        panic!("{problem}");
    }
    log.events().iter().filter(|e| pred(e)).cloned().collect()
}

/// Polls `log` until `check` finds what it looks for in all lines read so far. Past the deadline,
/// or if the agent dies, panics with `report` of the log and the agent's stderr.
#[track_caller]
pub(crate) fn wait_until<T>(
    process: &AgentProcess,
    log: &RefCell<EventLog>,
    timeout: Duration,
    what: &str,
    report: impl Fn(&EventLog) -> String,
    mut check: impl FnMut(&[Value]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let mut log = log.borrow_mut();
            let polled = log.poll();
            if let Some(found) = check(log.events()) {
                return found;
            }
            if let Err(problem) = polled {
                let report = report(&log);
                drop(log);
                panic!("{problem}\n{report}");
            }
        }
        if let Some(status) = process.exited() {
            // It may have written the line on its way out.
            let mut log = log.borrow_mut();
            let _ = log.poll();
            if let Some(found) = check(log.events()) {
                return found;
            }
            let report = report(&log);
            drop(log);
            panic!(
                "the agent died ({}) while the test waited for {what}\n{report}\n\
                 agent stderr:\n{}",
                describe(status),
                process.stderr_excerpt()
            );
        }
        if Instant::now() >= deadline {
            let report = report(&log.borrow());
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{report}\n\
                 agent stderr:\n{}\n{}",
                process.stderr_excerpt(),
                process.keep_hint()
            );
        }
        thread::sleep(POLL);
    }
}
