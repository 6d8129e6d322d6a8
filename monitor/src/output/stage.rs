//! The output stage, on its own thread (all of its work is blocking I/O): for each batch of
//! records from the pipeline it first appends alerts (and, when forwarded, events) to the
//! delivery spools, fsync'ed, then writes every record to the local outputs in their formats.
//! So an alert a local output shows is already durable for the network sinks, and a SIGKILL
//! cannot leave one in the file that the SIEM will never get.
//!
//! When the bounded alert spool drops undelivered alerts to make room, the stage raises a
//! dedicated alert (`rule: agent.spool-overflow`) saying how many, at most every
//! [`OVERFLOW_REPORT_EVERY`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Format, LocalSink, format::Rendered, forward::Lanes, lane::Lane};
use crate::{
    alert::Alert,
    clock::WallTime,
    record::{Class, Record},
};

/// Most records handled per batch (one spool append, one flush of each output); a message
/// that would pass it is handled in the batch after.
const BATCH: usize = 4096;
/// Most records in one message to the output stage.
const MESSAGE: usize = 256;
/// Capacity of the channel to the output stage, in messages of at most [`MESSAGE`] records:
/// 8,192 records queued at most.
pub const CHANNEL: usize = 32;
/// Least time between two spool-overflow alerts.
pub const OVERFLOW_REPORT_EVERY: Duration = Duration::from_secs(10);
/// Rule name of the spool-overflow alert.
pub const OVERFLOW_RULE: &str = "agent.spool-overflow";

/// Lines a local output could not write (a full disk, a failing device): lost there, counted
/// in `agent_stats` (`local_lines_lost`). A line another output wrote counts for each that
/// did not.
pub static LOCAL_LINES_LOST: AtomicU64 = AtomicU64::new(0);

/// A message to the output stage.
pub enum Out {
    /// Records, typed, in order: the stage formats each for each output. The analysis stage
    /// sends a batch of events' records together, in messages of at most [`MESSAGE`] (see
    /// [`Out::records`]), so this thread is woken per batch, not per record.
    Records(Vec<Record>),
    /// Sent about once a second: retry unwritable spools, report spool overflow.
    Tick,
}

impl Out {
    /// `records` as messages of at most [`MESSAGE`] records each, in order (none when there
    /// are none): the channel's bound in messages then bounds the records queued, even for a
    /// release of many parked events at once.
    pub fn records(records: Vec<Record>) -> impl Iterator<Item = Out> {
        let mut rest = records.into_iter();
        std::iter::from_fn(move || {
            let chunk: Vec<Record> = rest.by_ref().take(MESSAGE).collect();
            (!chunk.is_empty()).then_some(Out::Records(chunk))
        })
    }

    /// Records in the message.
    fn len(&self) -> usize {
        match self {
            Self::Records(r) => r.len(),
            Self::Tick => 0,
        }
    }
}

/// A local output and what it gets.
pub struct Local {
    pub sink: Box<dyn LocalSink>,
    pub format: Format,
    /// Whether raw events are written to it (`--events`).
    pub events: bool,
    failing: bool,
}

impl Local {
    pub fn new(sink: Box<dyn LocalSink>, format: Format, events: bool) -> Self {
        Self {
            sink,
            format,
            events,
            failing: false,
        }
    }

    /// Logs the first failure of a streak (and the recovery); `write`: a write (not a flush),
    /// whose failure lost its line (counted), whose success ends the streak.
    fn report(&mut self, r: std::io::Result<()>, write: bool) {
        if write && r.is_err() {
            LOCAL_LINES_LOST.fetch_add(1, Ordering::Relaxed);
        }
        match r {
            Ok(()) if write && self.failing => {
                self.failing = false;
                tracing::info!(output = %self.sink.name(), "output writing again");
            }
            Ok(()) => {}
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::error!(
                    output = %self.sink.name(),
                    %error,
                    "output failing: lines are lost (counted in agent_stats local_lines_lost)"
                );
            }
            Err(_) => {}
        }
    }
}

/// Counts drops and decides when to report them.
struct Overflow {
    spool_dir: String,
    boot_id: String,
    pending: u64,
    total: u64,
    last: Option<Instant>,
}

impl Overflow {
    fn add(&mut self, dropped: u64) {
        self.pending += dropped;
        self.total += dropped;
    }

    /// The alert when drops are pending and the last report is old enough (or `force`).
    fn due(&mut self, now: Instant, force: bool) -> Option<Alert> {
        if self.pending == 0 {
            return None;
        }
        if !force
            && self
                .last
                .is_some_and(|t| now.duration_since(t) < OVERFLOW_REPORT_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        let dropped = std::mem::take(&mut self.pending);
        let time = WallTime::now();
        let id = crate::alert::stable_id(&[
            self.boot_id.as_bytes(),
            OVERFLOW_RULE.as_bytes(),
            time.to_string().as_bytes(),
            &self.total.to_le_bytes(),
        ]);
        let mut about = serde_json::Map::new();
        // Undelivered alerts dropped since the previous overflow alert, and since start.
        about.insert("dropped".into(), dropped.into());
        about.insert("dropped_total".into(), self.total.into());
        about.insert("spool_dir".into(), self.spool_dir.as_str().into());
        Some(Alert {
            id,
            time,
            rule: OVERFLOW_RULE.to_owned(),
            severity: "high".to_owned(),
            // Impair Defenses: flooding alerts to push older ones out is a way to hide.
            mitre: vec!["T1562".to_owned()],
            profile: None,
            phase: None,
            sigma: None,
            message: format!(
                "the delivery spool in {} was full: {dropped} undelivered alerts were dropped, \
                 oldest first ({} since start); a network sink is failing or --spool-max-bytes \
                 is too small",
                self.spool_dir, self.total
            ),
            action: None,
            event: None,
            ancestors: Vec::new(),
            about,
        })
    }
}

/// The output stage's state.
pub struct Stage {
    locals: Vec<Local>,
    /// The alert spool's lane and the count of alerts it dropped, for the overflow alert.
    alerts: Option<(Lane, Overflow)>,
    events: Option<Lane>,
}

impl Stage {
    /// `lanes`: the spool lanes when network sinks are configured, their spool in `spool_dir`.
    pub fn new(locals: Vec<Local>, lanes: Option<Lanes>, spool_dir: &Path) -> Self {
        let Some(lanes) = lanes else {
            return Self {
                locals,
                alerts: None,
                events: None,
            };
        };
        let mut overflow = Overflow {
            spool_dir: spool_dir.display().to_string(),
            boot_id: crate::alert::boot_id(),
            pending: 0,
            total: 0,
            last: None,
        };
        overflow.add(lanes.dropped_at_open);
        Self {
            locals,
            alerts: Some((lanes.alerts, overflow)),
            events: lanes.events,
        }
    }

    /// Runs until the channel closes; returns the records written to local outputs.
    pub fn run(mut self, mut rx: mpsc::Receiver<Out>) -> u64 {
        let mut written = 0;
        let mut batch = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut records = first.len();
            batch.push(first);
            while records < BATCH {
                match rx.try_recv() {
                    Ok(m) => {
                        records += m.len();
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            written += self.handle(&mut batch, false);
        }
        written += self.handle(&mut batch, true);
        for local in &mut self.locals {
            let r = local.sink.flush();
            if r.is_err() {
                // The last chance: what is still buffered is lost.
                LOCAL_LINES_LOST.fetch_add(local.sink.unwritten_lines(), Ordering::Relaxed);
            }
            local.report(r, false);
        }
        if let Some((lane, _)) = &self.alerts
            && lane.backlog_len() > 0
        {
            tracing::error!(
                records = lane.backlog_len(),
                "stopping with alerts the delivery spool could not take; they are in the local \
                 outputs only"
            );
        }
        written
    }

    /// Spools, then writes one batch; `last`: the channel is closed, report what is pending.
    fn handle(&mut self, batch: &mut Vec<Out>, last: bool) -> u64 {
        let mut records: Vec<(Record, Vec<u8>)> =
            Vec::with_capacity(batch.iter().map(Out::len).sum());
        let mut tick = last;
        for m in batch.drain(..) {
            match m {
                Out::Records(sent) => {
                    records.extend(sent.into_iter().map(|r| {
                        let native = r.native();
                        (r, native)
                    }));
                }
                Out::Tick => tick = true,
            }
        }
        if let Some((lane, overflow)) = &mut self.alerts {
            let dropped = if tick { lane.retry() } else { 0 };
            let dropped = dropped + lane.append(&lines_of(&records, Class::Alert));
            overflow.add(dropped + lane.take_lost());
        }
        if let Some(lane) = &mut self.events {
            if tick {
                lane.retry();
            }
            lane.append(&lines_of(&records, Class::Event));
        }
        if tick
            && let Some((lane, overflow)) = &mut self.alerts
            && let Some(alert) = overflow.due(Instant::now(), last)
        {
            let record = Record::from(alert);
            let native = record.native();
            let dropped = lane.append(&[native.as_slice()]);
            overflow.add(dropped + lane.take_lost());
            records.push((record, native));
        }
        let mut written = 0;
        for (record, native) in &records {
            let mut rendered = Rendered::new(record, native);
            for local in &mut self.locals {
                if record.class() == Class::Event && !local.events {
                    continue;
                }
                let Some(out) = rendered.get(local.format) else {
                    continue;
                };
                let r = local.sink.write_line(out);
                local.report(r, true);
            }
            written += 1;
        }
        for local in &mut self.locals {
            let r = local.sink.flush();
            local.report(r, false);
        }
        written
    }
}

/// The native lines of the records of one class, in order.
fn lines_of(records: &[(Record, Vec<u8>)], want: Class) -> Vec<&[u8]> {
    records
        .iter()
        .filter(|(r, _)| r.class() == want)
        .map(|(_, l)| l.as_slice())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{MESSAGE, Out};
    use crate::record::Record;

    /// Records go in order, in messages of at most `MESSAGE`, none left out, no empty message.
    #[test]
    fn records_are_cut_into_bounded_messages_in_order() {
        for n in [0, 1, MESSAGE, MESSAGE + 1, 3 * MESSAGE + 7] {
            let records: Vec<Record> = (0..n)
                .map(|i| Record::Stats(serde_json::json!({ "kind": "agent_stats", "i": i })))
                .collect();
            let messages: Vec<Out> = Out::records(records).collect();
            assert_eq!(messages.len(), n.div_ceil(MESSAGE), "{n} records");
            let mut next = 0;
            for m in messages {
                let Out::Records(batch) = m else {
                    panic!("only records")
                };
                assert!(!batch.is_empty() && batch.len() <= MESSAGE);
                for r in batch {
                    let Record::Stats(v) = r else {
                        panic!("a stats record")
                    };
                    assert_eq!(v["i"], next);
                    next += 1;
                }
            }
            assert_eq!(next, n);
        }
    }
}
