//! Learning requests inside the pipeline: a session starts at once; a finish waits a moment
//! ([`SETTLE`]) so events the kernel recorded before it are still counted, then hands the
//! outcome back. The kernel's watch-on-exec switch follows whether profiles or sessions need it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::control::{Request, Started};
use crate::learn::Finished;
use crate::policy::Policy;
use crate::process::stage::Enricher;
use crate::sensor::{
    Sensor,
    reader::{boot_ns, now_rfc3339},
};

/// How long a finish waits for the events already recorded to reach the pipeline (the reader
/// polls the ring buffer every 10 ms).
pub const SETTLE: Duration = Duration::from_millis(150);

struct Pending {
    due: Instant,
    session: u64,
    /// `None`: cancelled (nothing is sent back).
    reply: Option<oneshot::Sender<Option<Finished>>>,
}

/// The pipeline's learning bookkeeping.
#[derive(Default)]
pub struct Learning {
    /// The profile file each session refines.
    files: HashMap<u64, Option<PathBuf>>,
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
            Request::Start { request, reply } => {
                let started = match request.spec(policy.rules()) {
                    Ok((spec, file)) => {
                        let name = spec.name.clone();
                        let (session, processes) = policy.start_learning(
                            spec,
                            enricher.table(),
                            sensor.watched(),
                            boot_ns(),
                            now_rfc3339(),
                        );
                        self.files.insert(session, file);
                        switch(policy, sensor);
                        tracing::info!(session, name, processes, "learning started");
                        Ok(Started { session, processes })
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(started);
            }
            Request::Finish { session, reply } => self.pending.push(Pending {
                due: Instant::now() + SETTLE,
                session,
                reply: Some(reply),
            }),
            Request::Cancel { session } => self.pending.push(Pending {
                due: Instant::now(),
                session,
                reply: None,
            }),
            Request::Shutdown => return false,
        }
        true
    }

    /// When the next finish is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.due).min()
    }

    /// Finishes the sessions whose time has come.
    pub fn finish_due(&mut self, policy: &mut Policy, sensor: &mut Sensor) {
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| p.due <= now);
        self.pending = rest;
        for p in due {
            let outcome =
                policy.finish_learning(p.session, sensor.watched(), boot_ns(), now_rfc3339());
            let file = self.files.remove(&p.session).flatten();
            switch(policy, sensor);
            let Some(reply) = p.reply else {
                tracing::info!(session = p.session, "learning cancelled");
                continue;
            };
            let done = outcome.map(|outcome| {
                tracing::info!(
                    session = p.session,
                    processes = outcome.summary.processes,
                    events = outcome.summary.events,
                    "learning finished"
                );
                Finished {
                    outcome,
                    credentials: policy.rules().credential_patterns(),
                    nameservers: crate::resolve::nameservers(),
                    profile_file: file,
                }
            });
            let _ = reply.send(done);
        }
    }
}

/// Sets the kernel's watch-on-exec switch to what the policy stage needs now.
pub fn switch(policy: &Policy, sensor: &mut Sensor) {
    if let Err(e) = sensor.set_watch_on_exec(policy.wants_watch_on_exec()) {
        tracing::warn!(error = %e, "could not switch watching new processes");
    }
}
