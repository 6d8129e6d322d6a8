//! Tests of the spool and the engine on real files and real tokio tasks, and their helpers.

mod engine;
mod spool;

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use super::{Sink, SinkError, Spool, SpoolError, SpoolOptions, spool::OpenReport};

/// `Spool::open`, retried while the directory is locked: a process another test forks holds
/// a copy of the lock's file descriptor until it execs, so a spool just dropped by this test
/// can look locked for a moment. (The agent itself forks nothing.)
pub(super) fn open_spool(
    dir: &Path,
    options: SpoolOptions,
    sinks: &[String],
) -> Result<(Spool, OpenReport), SpoolError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Spool::open(dir, options, sinks) {
            Err(SpoolError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

pub(super) use crate::testutil::TempDir;

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub(super) async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One call of [`FakeSink::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AttemptLog {
    pub(super) batch: Vec<Vec<u8>>,
    pub(super) ok: bool,
}

#[derive(Default)]
struct FakeState {
    attempts: Vec<AttemptLog>,
    /// Fail this many next attempts.
    fail_next: u32,
    /// Sends in progress (between entry and return).
    in_flight: u32,
}

/// Shared control of a [`FakeSink`] from the test.
#[derive(Clone)]
pub(super) struct FakeControl {
    state: Arc<Mutex<FakeState>>,
    /// When set, each send waits for one permit first (a slow or stuck receiver).
    gate: Option<Arc<Semaphore>>,
}

impl FakeControl {
    pub(super) fn fail_next(&self, n: u32) {
        self.state.lock().unwrap().fail_next = n;
    }

    /// Lets `n` more sends through the gate.
    pub(super) fn open_gate(&self, n: usize) {
        if let Some(g) = &self.gate {
            g.add_permits(n);
        }
    }

    pub(super) fn attempts(&self) -> Vec<AttemptLog> {
        self.state.lock().unwrap().attempts.clone()
    }

    pub(super) fn in_flight(&self) -> u32 {
        self.state.lock().unwrap().in_flight
    }

    /// Lines of the accepted batches, in order.
    pub(super) fn delivered(&self) -> Vec<Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.attempts
            .iter()
            .filter(|a| a.ok)
            .flat_map(|a| a.batch.iter().cloned())
            .collect()
    }
}

/// An in-memory sink that fails on command (after "receiving" the batch, so failures also
/// produce duplicates, as a lost acknowledgement would) and can be throttled by a gate.
pub(super) struct FakeSink {
    name: String,
    max_batch: usize,
    control: FakeControl,
}

impl FakeSink {
    pub(super) fn new(name: &str, max_batch: usize, gated: bool) -> (Self, FakeControl) {
        let control = FakeControl {
            state: Arc::new(Mutex::new(FakeState::default())),
            gate: gated.then(|| Arc::new(Semaphore::new(0))),
        };
        let sink = Self {
            name: name.to_owned(),
            max_batch,
            control: control.clone(),
        };
        (sink, control)
    }
}

impl Sink for FakeSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn send<'a>(
        &'a mut self,
        batch: &'a [Vec<u8>],
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        let control = self.control.clone();
        Box::pin(async move {
            control.state.lock().unwrap().in_flight += 1;
            if let Some(gate) = &control.gate {
                gate.acquire().await.expect("gate closed").forget();
            }
            let mut st = control.state.lock().unwrap();
            st.in_flight -= 1;
            let fail = st.fail_next > 0;
            if fail {
                st.fail_next -= 1;
            }
            st.attempts.push(AttemptLog {
                batch: batch.to_vec(),
                ok: !fail,
            });
            if fail {
                Err(SinkError::transient_from(
                    "fake receiver refused the batch",
                    std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                ))
            } else {
                Ok(())
            }
        })
    }
}

/// `n` distinct alert-like lines starting at `from`.
pub(super) fn lines(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("{{\"kind\":\"alert\",\"n\":{i}}}\n").into_bytes())
        .collect()
}
