//! The identity cache the process stage reads for every event of a container, and the events
//! held back while a new container's answer is on its way.
//!
//! Bounds: at most `capacity` containers (the oldest answered ones go first) and at most
//! `max_parked` events held back in all; an event beyond that goes on without identity and is
//! counted (`unparked`). Misses are remembered for a while ([`MISS_TTL`]), so a container the
//! runtime does not know is not asked about for each of its events.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{Answer, Outcome, RuntimeStats};
use crate::{
    identity::{ContainerMeta, Workload},
    sensor::Event,
};

/// How long a container the runtime did not know (or did not answer about) stays unknown
/// before it is asked about again.
pub const MISS_TTL: Duration = Duration::from_secs(30);

/// The answer for one container id, as far as it came.
#[derive(Debug)]
enum Entry {
    /// Asked; these events wait for the answer, in arrival order.
    Pending(Vec<Event>),
    /// Answered (a miss: `until` says when to ask again).
    Done {
        workload: Workload,
        until: Option<Instant>,
    },
}

/// What the cache knows about a container now.
#[derive(Debug)]
pub enum Lookup {
    Known(Workload),
    /// Its answer is on its way: hold the event back ([`Identities::park`]).
    Pending,
}

/// Container id -> workload, fed by the lookup task.
#[derive(Debug)]
pub struct Identities {
    requests: mpsc::Sender<String>,
    entries: HashMap<String, Entry>,
    /// Ids in insertion order, for eviction.
    order: VecDeque<String>,
    capacity: usize,
    parked: usize,
    max_parked: usize,
    stats: RuntimeStats,
}

impl Identities {
    pub fn new(requests: mpsc::Sender<String>, capacity: usize, max_parked: usize) -> Self {
        Self {
            requests,
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            parked: 0,
            max_parked,
            stats: RuntimeStats::default(),
        }
    }

    /// The workload of container `id`; asks the runtime when it is new (or its miss expired).
    pub fn get(&mut self, id: &str, now: Instant) -> Lookup {
        match self.entries.get(id) {
            Some(Entry::Pending(_)) => return Lookup::Pending,
            Some(Entry::Done { workload, until }) if until.is_none_or(|t| now < t) => {
                return Lookup::Known(workload.clone());
            }
            _ => {}
        }
        self.stats.lookups += 1;
        if self.requests.try_send(id.to_owned()).is_err() {
            // The lookup task is behind (or gone): a miss, asked again later.
            self.stats.misses += 1;
            let workload = miss(id);
            self.insert(
                id,
                Entry::Done {
                    workload: workload.clone(),
                    until: Some(now + MISS_TTL),
                },
            );
            return Lookup::Known(workload);
        }
        self.insert(id, Entry::Pending(Vec::new()));
        Lookup::Pending
    }

    /// Holds `ev` back until container `id` is answered; gives it back (`Some`) when the
    /// bound is reached (or the id is not pending), for the caller to go on without identity.
    pub fn park(&mut self, id: &str, ev: Event) -> Option<Event> {
        match self.entries.get_mut(id) {
            Some(Entry::Pending(waiting)) if self.parked < self.max_parked => {
                waiting.push(ev);
                self.parked += 1;
                None
            }
            _ => {
                self.stats.unparked += 1;
                Some(ev)
            }
        }
    }

    /// Takes an answer: the container's workload, and the events that waited for it.
    pub fn answer(&mut self, answer: Answer, now: Instant) -> (Workload, Vec<Event>) {
        let (workload, until) = match answer.outcome {
            Outcome::Found(f) => (
                Workload {
                    container: Some(Arc::new(f.container)),
                    pod: f.pod.map(Arc::new),
                },
                None,
            ),
            Outcome::Unknown | Outcome::Failed => {
                self.stats.misses += 1;
                (miss(&answer.id), Some(now + MISS_TTL))
            }
        };
        let waiting = match self.entries.get_mut(&answer.id) {
            Some(entry) => {
                let old = std::mem::replace(
                    entry,
                    Entry::Done {
                        workload: workload.clone(),
                        until,
                    },
                );
                match old {
                    Entry::Pending(waiting) => waiting,
                    Entry::Done { .. } => Vec::new(),
                }
            }
            None => {
                self.insert(
                    &answer.id,
                    Entry::Done {
                        workload: workload.clone(),
                        until,
                    },
                );
                Vec::new()
            }
        };
        self.parked -= waiting.len();
        (workload, waiting)
    }

    /// A lookup made outside [`Self::get`] (at start).
    pub fn count_lookup(&mut self) {
        self.stats.lookups += 1;
    }

    /// Whether events wait for answers.
    pub fn has_parked(&self) -> bool {
        self.parked > 0
    }

    /// Every event still waiting, for a stop that cannot wait longer: their containers count
    /// as misses.
    pub fn release_all(&mut self, now: Instant) -> Vec<(Workload, Vec<Event>)> {
        let pending: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Pending(_)))
            .map(|(id, _)| id.clone())
            .collect();
        pending
            .into_iter()
            .map(|id| {
                self.answer(
                    Answer {
                        id,
                        outcome: Outcome::Failed,
                    },
                    now,
                )
            })
            .collect()
    }

    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            cached: self.entries.len(),
            ..self.stats
        }
    }

    fn insert(&mut self, id: &str, entry: Entry) {
        if self.entries.insert(id.to_owned(), entry).is_none() {
            self.order.push_back(id.to_owned());
        }
        self.evict();
    }

    /// Drops the oldest answered entries beyond the capacity (pending ones wait for their
    /// answer: their events must go on).
    fn evict(&mut self) {
        let mut turns = self.order.len();
        while self.entries.len() > self.capacity && turns > 0 {
            turns -= 1;
            let Some(id) = self.order.pop_front() else {
                break;
            };
            match self.entries.get(&id) {
                Some(Entry::Pending(_)) => self.order.push_back(id),
                _ => {
                    self.entries.remove(&id);
                }
            }
        }
    }
}

/// What a miss leaves: the id only.
fn miss(id: &str) -> Workload {
    Workload {
        container: Some(Arc::new(ContainerMeta {
            id: id.to_owned(),
            ..ContainerMeta::default()
        })),
        pod: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::sync::mpsc;

    use super::{Identities, Lookup, MISS_TTL};
    use crate::{
        identity::ContainerMeta,
        process::runtime::{Answer, Found, Outcome},
        rules::testutil::exec,
    };

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn found(c: char) -> Answer {
        Answer {
            id: id(c),
            outcome: Outcome::Found(Found {
                container: ContainerMeta {
                    id: id(c),
                    name: Some(format!("n{c}")),
                    image: Some("img:1".into()),
                    image_id: Some("sha256:1".into()),
                },
                pod: None,
            }),
        }
    }

    #[test]
    fn a_new_container_is_asked_once_and_its_events_wait_in_order() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut ids = Identities::new(tx, 16, 16);
        let now = Instant::now();
        assert!(matches!(ids.get(&id('a'), now), Lookup::Pending));
        assert!(matches!(ids.get(&id('a'), now), Lookup::Pending));
        assert_eq!(rx.try_recv().ok(), Some(id('a')));
        assert!(rx.try_recv().is_err(), "asked twice");
        for n in 0..3 {
            let mut ev = exec("/bin/sh", &["sh"]);
            ev.pid = n;
            assert!(ids.park(&id('a'), ev).is_none(), "parked");
        }
        assert!(ids.has_parked());
        let (w, waiting) = ids.answer(found('a'), now);
        assert_eq!(
            w.container.as_ref().and_then(|c| c.name.as_deref()),
            Some("na")
        );
        let pids: Vec<u32> = waiting.iter().map(|e| e.pid).collect();
        assert_eq!(pids, [0, 1, 2]);
        assert!(!ids.has_parked());
        assert!(matches!(ids.get(&id('a'), now), Lookup::Known(w) if w.is_known()));
        let s = ids.stats();
        assert_eq!((s.lookups, s.misses, s.unparked), (1, 0, 0));
    }

    #[test]
    fn misses_are_remembered_for_a_while_then_asked_again() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut ids = Identities::new(tx, 16, 16);
        let now = Instant::now();
        ids.get(&id('b'), now);
        let (w, _) = ids.answer(
            Answer {
                id: id('b'),
                outcome: Outcome::Unknown,
            },
            now,
        );
        assert!(!w.is_known());
        assert_eq!(w.container.expect("id").id, id('b'));
        assert!(matches!(
            ids.get(&id('b'), now + Duration::from_secs(1)),
            Lookup::Known(_)
        ));
        assert!(matches!(ids.get(&id('b'), now + MISS_TTL), Lookup::Pending));
        assert_eq!(rx.try_recv().ok(), Some(id('b')));
        assert_eq!(rx.try_recv().ok(), Some(id('b')));
        assert_eq!(ids.stats().misses, 1);
    }

    #[test]
    fn bounds_hold_events_and_containers() {
        let (tx, _rx) = mpsc::channel(64);
        let mut ids = Identities::new(tx, 2, 1);
        let now = Instant::now();
        ids.get(&id('a'), now);
        assert!(ids.park(&id('a'), exec("/bin/a", &["a"])).is_none());
        assert!(ids.park(&id('a'), exec("/bin/a", &["a"])).is_some());
        assert_eq!(ids.stats().unparked, 1);
        for c in ['b', 'c', 'd'] {
            ids.get(&id(c), now);
            ids.answer(found(c), now);
        }
        // The pending one stays; answered ones went oldest first.
        let s = ids.stats();
        assert_eq!(s.cached, 2, "{s:?}");
        assert!(matches!(ids.get(&id('a'), now), Lookup::Pending));
        assert!(matches!(ids.get(&id('d'), now), Lookup::Known(_)));
    }

    #[test]
    fn a_full_queue_is_a_miss_not_a_wait() {
        let (tx, _rx) = mpsc::channel(1);
        let mut ids = Identities::new(tx, 16, 16);
        let now = Instant::now();
        assert!(matches!(ids.get(&id('a'), now), Lookup::Pending));
        assert!(matches!(ids.get(&id('b'), now), Lookup::Known(_)));
        assert_eq!(ids.stats().misses, 1);
        let released = ids.release_all(now);
        assert_eq!(released.len(), 1);
        assert!(!ids.has_parked());
    }
}
