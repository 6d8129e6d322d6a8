//! Workload instances and their phase. An instance is one process that started a profile (by
//! matching its selectors) with all its descendants; it is starting from that exec until one of
//! its processes first listens, or until its profile's start-up time has passed, and serving
//! after that.

use std::collections::HashMap;
use std::time::Duration;

use crate::rules::Phase;

/// Most instances tracked; an instance no longer tracked is serving.
pub const MAX_INSTANCES: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Instance {
    /// Boot-time ns of the exec that started it.
    started_ns: u64,
    /// Longest start-up.
    startup: Duration,
    /// One of its processes listened.
    listened: bool,
}

/// Instances by workload key.
#[derive(Debug, Default)]
pub struct Instances {
    map: HashMap<u64, Instance>,
    /// Instances forgotten to stay within bounds.
    pub dropped: u64,
}

impl Instances {
    /// A new instance `key`, started at `started_ns` with at most `startup` of start-up.
    pub fn start(&mut self, key: u64, started_ns: u64, startup: Duration) {
        if self.map.len() >= MAX_INSTANCES && !self.map.contains_key(&key) {
            // Instances past their start-up serve whether remembered or not: forget them
            // first, then (a flood of starts) everything.
            let before = self.map.len();
            self.map.retain(|_, i| {
                !i.listened
                    && started_ns.saturating_sub(i.started_ns) <= i.startup.as_nanos() as u64
            });
            if self.map.len() >= MAX_INSTANCES {
                self.map.clear();
            }
            self.dropped += (before - self.map.len()) as u64;
        }
        self.map.insert(
            key,
            Instance {
                started_ns,
                startup,
                listened: false,
            },
        );
    }

    /// [`Instances::start`] unless `key` is known already (its phase goes on).
    pub fn start_if_new(&mut self, key: u64, started_ns: u64, startup: Duration) {
        if !self.map.contains_key(&key) {
            self.start(key, started_ns, startup);
        }
    }

    /// The phase of instance `key` at `now_ns`.
    pub fn phase(&self, key: u64, now_ns: u64) -> Phase {
        match self.map.get(&key) {
            Some(i)
                if !i.listened
                    && now_ns.saturating_sub(i.started_ns) <= i.startup.as_nanos() as u64 =>
            {
                Phase::Startup
            }
            _ => Phase::Serving,
        }
    }

    /// One of the instance's processes listened: it serves from now on. Returns whether this
    /// was its first listen.
    pub fn listened(&mut self, key: u64) -> bool {
        match self.map.get_mut(&key) {
            Some(i) if !i.listened => {
                i.listened = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Instances, MAX_INSTANCES};
    use crate::rules::Phase;

    const S: u64 = 1_000_000_000;

    #[test]
    fn starting_until_the_first_listen_or_the_time_limit() {
        let mut i = Instances::default();
        i.start(1, 10 * S, Duration::from_secs(30));
        i.start(2, 10 * S, Duration::from_secs(30));
        assert_eq!(i.phase(1, 20 * S), Phase::Startup);
        i.listened(1);
        assert_eq!(i.phase(1, 20 * S), Phase::Serving, "listened");
        assert_eq!(i.phase(2, 40 * S), Phase::Startup, "at the limit");
        assert_eq!(i.phase(2, 41 * S), Phase::Serving, "past the limit");
        assert_eq!(i.phase(3, 0), Phase::Serving, "unknown");
    }

    #[test]
    fn bounded() {
        let mut i = Instances::default();
        for k in 0..(MAX_INSTANCES as u64 + 5) {
            i.start(k, k * S, Duration::from_secs(1));
        }
        assert!(i.map.len() <= MAX_INSTANCES);
        assert!(i.dropped > 0);
        let last = MAX_INSTANCES as u64 + 4;
        assert_eq!(
            i.phase(last, last * S),
            Phase::Startup,
            "the newest is kept"
        );
    }
}
