//! Learning a workload's footprint (`monitor learn`): sessions in the policy stage follow the
//! processes their selectors match and record what those do (`session`, `footprint`), asked for
//! by `request`s (over the agent's control socket or in process) or fed from a recording
//! (`replay`); the outcome is generalised by rules a reviewer can predict (`paths`,
//! `generalise`), kept off credential files (`credentials`, `globs`), merged into an existing
//! profile (`merge`), assembled (`build`) and written as commented YAML (`render`); `diff`
//! compares two versions. `command` is `monitor learn` itself.

pub mod build;
pub mod command;
mod credentials;
pub mod diff;
mod ended;
pub mod footprint;
pub mod generalise;
#[cfg(test)]
mod generalise_tests;
pub mod globs;
pub mod learned;
pub mod merge;
mod output;
pub mod paths;
pub mod render;
pub mod replay;
pub mod request;
pub mod session;

pub use request::{Finished, LearnRequest, SelectorArgs};
pub use session::{LearnSpec, Outcome, Session};

use crate::process::table::ProcessTable;
use crate::rules::ExecInfo;
use crate::sensor::Event;

/// The learning sessions of one policy stage.
#[derive(Debug, Default)]
pub struct Sessions {
    active: Vec<Session>,
    next_id: u64,
}

impl Sessions {
    /// Starts a session; returns its id and the pids it follows from the start.
    pub fn start(
        &mut self,
        spec: LearnSpec,
        table: &ProcessTable,
        now_ns: u64,
        wall: String,
    ) -> (u64, Vec<u32>) {
        self.next_id += 1;
        let s = Session::start(self.next_id, spec, table, now_ns, wall);
        let pids = s.members().collect();
        self.active.push(s);
        (self.next_id, pids)
    }

    /// Ends session `id`; returns its outcome and the pids it still followed.
    pub fn finish(&mut self, id: u64, now_ns: u64, wall: String) -> Option<(Outcome, Vec<u32>)> {
        let i = self.active.iter().position(|s| s.id == id)?;
        let s = self.active.swap_remove(i);
        let pids = s.members().collect();
        Some((s.finish(now_ns, wall), pids))
    }

    pub fn is_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Whether any session follows `pid` (its activity must be recorded).
    pub fn follows(&self, pid: u32) -> bool {
        self.active.iter().any(|s| s.follows(pid))
    }

    /// Feeds one event to every session.
    pub fn observe(&mut self, ev: &Event, exec: Option<&ExecInfo<'_>>) {
        for s in &mut self.active {
            s.observe(ev, exec);
        }
    }
}
