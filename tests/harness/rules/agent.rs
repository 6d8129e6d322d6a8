//! The agent of the rules tests: launched with rule paths and extra arguments, shared by the
//! tests of one binary, read back as alerts.

use std::{
    cell::RefCell,
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde_json::Value;

use super::{alert_problems, alert_report, is_alert};
use crate::{
    agent::{SharedSlot, read_matching, wait_until},
    events::{EventLog, field_mismatches},
    fs::TempDir,
    launch::{AgentProcess, Launch, preflight},
    process::Proc,
};

/// What a setup closure returns: the rule paths and extra arguments to start the agent with, and
/// the fixture the tests share.
pub struct AgentSetup<F> {
    /// Each becomes `--rules PATH`, in order.
    pub rules: Vec<PathBuf>,
    /// Extra arguments for `monitor run`, e.g. `--watch-all`.
    pub args: Vec<String>,
    pub fixture: F,
}

/// The agent shared by the tests of one binary; declare it as a `static`.
pub struct SharedAgent<F> {
    slot: SharedSlot<Running<F>>,
}

impl<F: Send + Sync + 'static> SharedAgent<F> {
    pub const fn new() -> Self {
        Self {
            slot: SharedSlot::new(),
        }
    }

    /// Joins the running agent, or writes its rules with `setup` (given a directory that lives
    /// as long as the agent) and launches it. `None` after saying loudly why it cannot run;
    /// under `CI=true` that panics instead.
    #[track_caller]
    pub fn join(
        &'static self,
        setup: impl FnOnce(&Path) -> Result<AgentSetup<F>, String>,
    ) -> Option<RulesAgent<F>> {
        let since = SystemTime::now();
        let running = self.slot.join(|| Running::launch(setup))?;
        let log = EventLog::from_end(running.process.output());
        Some(RulesAgent {
            running,
            log: RefCell::new(log),
            since,
        })
    }
}

impl<F: Send + Sync + 'static> Default for SharedAgent<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// The running agent with the directory its rules were written to and the tests' fixture.
struct Running<F> {
    // Fields drop in order: the agent stops before its rules directory goes away.
    process: AgentProcess,
    fixture: F,
    _rules_dir: TempDir,
}

impl<F> AsRef<AgentProcess> for Running<F> {
    fn as_ref(&self) -> &AgentProcess {
        &self.process
    }
}

impl<F> Running<F> {
    fn launch(setup: impl FnOnce(&Path) -> Result<AgentSetup<F>, String>) -> Result<Self, String> {
        let bin = preflight()?;
        let rules_dir = TempDir::try_new("rules")
            .map_err(|e| format!("cannot create the test rules directory: {e}"))?;
        let AgentSetup {
            rules,
            args,
            fixture,
        } = setup(rules_dir.path())?;
        let mut run_args: Vec<OsString> = vec!["--alert-fold-secs".into(), "0".into()];
        if env::var_os("MONITOR_TEST_EVENTS").is_some_and(|v| !v.is_empty() && v != "0") {
            run_args.push("--events".into());
        }
        for path in rules {
            run_args.push("--rules".into());
            run_args.push(path.into());
        }
        run_args.extend(args.into_iter().map(OsString::from));
        let process = AgentProcess::launch(
            &bin,
            Launch {
                dir_label: "rules-agent",
                output_name: "output.jsonl",
                output_path: None,
                args: run_args,
                keep_hint: ", and MONITOR_TEST_EVENTS=1 to record raw events there too",
            },
        )?;
        Ok(Self {
            process,
            fixture,
            _rules_dir: rules_dir,
        })
    }
}

/// A test's handle on the shared agent: its own view of the output from when it joined.
pub struct RulesAgent<F: 'static> {
    running: Arc<Running<F>>,
    log: RefCell<EventLog>,
    since: SystemTime,
}

impl<F> RulesAgent<F> {
    /// What the setup closure returned.
    pub fn fixture(&self) -> &F {
        &self.running.fixture
    }

    /// Starts `cmd` (the agent is ready by construction).
    #[track_caller]
    pub fn spawn(&self, cmd: &mut Command) -> Proc {
        let child = Proc::spawn(cmd);
        self.log.borrow_mut().track(child.pid());
        child
    }

    /// Waits until an alert satisfies `pred` and returns it (the first since this handle was
    /// made). Past the deadline, or if the agent dies, panics with the recent alerts and the
    /// agent's stderr.
    #[track_caller]
    pub fn wait_alert(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(
            &self.running.process,
            &self.log,
            timeout,
            what,
            |log| alert_report(log.events()),
            |lines| lines.iter().find(|v| is_alert(v) && pred(v)).cloned(),
        )
    }

    /// Every alert read so far (after reading what is new) that satisfies `pred`, in order.
    #[track_caller]
    pub fn alerts(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        read_matching(&self.log, |v| is_alert(v) && pred(v))
    }

    /// Asserts the alert contract (an id, a time, a message, lineage, the triggering event with
    /// its envelope) and exactly the values of `expected`: top-level fields compared as a whole,
    /// except `event`, whose own fields are compared one by one.
    #[track_caller]
    pub fn assert_alert(&self, alert: &Value, expected: &Value) {
        let mut problems = alert_problems(alert, self.since);
        let mut top = expected.clone();
        if let Some(fields) = top.as_object_mut()
            && let Some(event) = fields.remove("event")
        {
            problems.extend(
                field_mismatches(&alert["event"], &event)
                    .into_iter()
                    .map(|p| format!("event: {p}")),
            );
        }
        problems.extend(field_mismatches(alert, &top));
        if !problems.is_empty() {
            panic!(
                "the alert does not match:\n  - {}\nalert:    {alert}\nexpected: {expected}",
                problems.join("\n  - ")
            );
        }
    }

    /// The agent's control socket, for `monitor learn --control-socket`.
    pub fn control_socket(&self) -> PathBuf {
        self.running.process.control_socket()
    }

    /// Reloads the rules (SIGHUP) and waits until the agent says it did; panics with its stderr
    /// when it does not within `timeout` (e.g. the new rules are invalid).
    #[track_caller]
    pub fn reload(&self, timeout: Duration) {
        let done = |s: &str| s.matches("rules reloaded").count();
        let before = done(&self.running.process.stderr_full());
        self.running.process.signal(libc::SIGHUP);
        let deadline = std::time::Instant::now() + timeout;
        while done(&self.running.process.stderr_full()) == before {
            if std::time::Instant::now() >= deadline {
                panic!(
                    "the agent did not reload its rules within {timeout:?}; its stderr:\n{}",
                    self.running.process.stderr_excerpt()
                );
            }
            std::thread::sleep(crate::agent::POLL);
        }
    }

    /// Where the agent writes (alerts, and events with `MONITOR_TEST_EVENTS=1`).
    pub fn output_path(&self) -> PathBuf {
        self.running.process.output().to_path_buf()
    }
}
