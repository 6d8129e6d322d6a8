//! Learning requests inside the pipeline. A session starts at once. A finish waits until the
//! events the kernel recorded before it have been handled: the reader has found the ring
//! buffer empty after the request and the pipeline's queue is empty (at most [`MAX_SETTLE`]).
//! Each session's outcome goes back through the channel given when it started, also when the
//! pipeline stops first (the agent shutting down). The kernel's watch-on-exec switch follows
//! whether profiles or sessions need it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use super::control::{Done, Request, Started};
use crate::clock::{boot_ns, now_rfc3339};
use crate::learn::Finished;
use crate::policy::Policy;
use crate::process::stage::Enricher;
use crate::sensor::Sensor;

/// Longest a finish waits for the pipeline to catch up with the kernel.
pub const MAX_SETTLE: Duration = Duration::from_secs(1);
/// How often a pending finish checks whether the pipeline has caught up.
const CHECK: Duration = Duration::from_millis(5);
/// Events stamped this long before a finish may still be on their way into the ring buffer.
const IN_FLIGHT_NS: u64 = 5_000_000;
/// Most learning sessions at once (each holds a footprint).
pub const MAX_SESSIONS: usize = 8;

struct Live {
    /// The profile file the session refines.
    file: Option<PathBuf>,
    done: Done,
}

struct Pending {
    session: u64,
    /// Kernel time of the request: events before it are counted.
    since_ns: u64,
    deadline: Instant,
}

/// What the pipeline can say about how far it has got.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Kernel time at which the reader last found the ring buffer empty.
    pub drained_ns: u64,
    /// Whether every event read has been handled.
    pub queue_empty: bool,
}

/// The pipeline's learning bookkeeping.
#[derive(Default)]
pub struct Learning {
    live: HashMap<u64, Live>,
    pending: Vec<Pending>,
}

impl Learning {
    /// Handles one request; returns false for [`Request::Shutdown`].
    pub fn handle(
        &mut self,
        req: Request,
        policy: &mut Policy,
        enricher: &Enricher,
        sensor: &mut Sensor,
    ) -> bool {
        match req {
            Request::Start {
                request,
                reply,
                done,
            } => {
                let started = if self.live.len() >= MAX_SESSIONS {
                    Err(format!(
                        "{MAX_SESSIONS} learning sessions are running already: finish one first"
                    ))
                } else {
                    request.spec(policy.rules()).map(|(spec, file)| {
                        let name = spec.name.clone();
                        let (session, processes) = policy.start_learning(
                            spec,
                            enricher.table(),
                            sensor.watched(),
                            boot_ns(),
                            now_rfc3339(),
                        );
                        self.live.insert(
                            session,
                            Live {
                                file: file.clone(),
                                done,
                            },
                        );
                        switch(policy, sensor);
                        tracing::info!(session, name, processes, "learning started");
                        Started {
                            session,
                            processes,
                            profile_file: file,
                        }
                    })
                };
                let _ = reply.send(started);
            }
            Request::Finish { session } => self.pending.push(Pending {
                session,
                since_ns: boot_ns(),
                deadline: Instant::now() + MAX_SETTLE,
            }),
            Request::Cancel { session } => {
                self.pending.retain(|p| p.session != session);
                if self.live.remove(&session).is_some() {
                    policy.finish_learning(session, sensor.watched(), boot_ns(), now_rfc3339());
                    switch(policy, sensor);
                    tracing::info!(session, "learning cancelled");
                }
            }
            Request::Shutdown => return false,
        }
        true
    }

    /// When to look at the pending finishes again.
    pub fn next_check(&self) -> Option<Instant> {
        let first = self.pending.iter().map(|p| p.deadline).min()?;
        Some(first.min(Instant::now() + CHECK))
    }

    /// Finishes the sessions whose events have all been handled, or whose wait is over.
    pub fn finish_due(&mut self, progress: Progress, policy: &mut Policy, sensor: &mut Sensor) {
        let now = Instant::now();
        let caught_up = |p: &Pending| {
            progress.queue_empty && progress.drained_ns >= p.since_ns.saturating_add(IN_FLIGHT_NS)
        };
        let (due, rest): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..)
            .partition(|p| caught_up(p) || p.deadline <= now);
        self.pending = rest;
        for p in due {
            if !caught_up(&p) {
                tracing::warn!(
                    session = p.session,
                    "learning finished before the pipeline caught up with the kernel"
                );
            }
            self.finish(p.session, None, policy, sensor);
        }
    }

    /// Finishes every session (the pipeline is stopping; its events have been drained).
    pub fn finish_all(&mut self, policy: &mut Policy, sensor: &mut Sensor) {
        self.pending.clear();
        let sessions: Vec<u64> = self.live.keys().copied().collect();
        for session in sessions {
            self.finish(session, Some("the agent stopped"), policy, sensor);
        }
    }

    fn finish(
        &mut self,
        session: u64,
        stopped: Option<&str>,
        policy: &mut Policy,
        sensor: &mut Sensor,
    ) {
        let Some(live) = self.live.remove(&session) else {
            return;
        };
        let outcome = policy.finish_learning(session, sensor.watched(), boot_ns(), now_rfc3339());
        switch(policy, sensor);
        let done = outcome.map(|outcome| {
            tracing::info!(
                session,
                processes = outcome.summary.processes,
                events = outcome.summary.events,
                "learning finished"
            );
            Finished {
                outcome,
                credentials: policy.rules().credential_patterns_or_shipped(),
                nameservers: crate::resolve::nameservers(),
                profile_file: live.file,
                stopped: stopped.map(str::to_owned),
            }
        });
        let _ = live.done.send(done);
    }
}

/// Sets the kernel's watch-on-exec switch to what the policy stage needs now.
pub fn switch(policy: &Policy, sensor: &mut Sensor) {
    if let Err(e) = sensor.set_watch_on_exec(policy.wants_watch_on_exec()) {
        tracing::warn!(error = %e, "could not switch watching new processes");
    }
}
