//! Rate limiting of identical alerts: the first of a kind within a window goes out; repeats are
//! counted and reported as one `alert_repeats` line when the window closes.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::clock::WallTime;

/// What an `alert_repeats` line says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "alert_repeats")]
pub struct Repeats {
    /// Stable id of this report (derived from `alert_id`), for receivers to de-duplicate.
    pub id: String,
    pub time: WallTime,
    pub rule: String,
    /// The folded alerts' severity.
    pub severity: String,
    pub profile: Option<String>,
    /// The rule's notion of "same thing" (path, remote address, ...).
    pub key: String,
    /// The alert these repeat.
    pub alert_id: String,
    /// How many identical alerts were folded into it.
    pub count: u64,
}

struct Window {
    opened: Instant,
    alert_id: String,
    rule: String,
    severity: String,
    profile: Option<String>,
    suppressed: u64,
}

/// The alert offered to [`RateLimiter::admit`].
pub struct Candidate<'a> {
    pub rule: &'a str,
    pub pid: u32,
    /// The rule's notion of "same thing" (path, remote address, ...).
    pub key: &'a str,
    pub id: &'a str,
    pub profile: Option<&'a str>,
    pub severity: &'a str,
}

/// Folds identical alerts (same rule, process and key) within `window`.
pub struct RateLimiter {
    window: Duration,
    max_keys: usize,
    open: HashMap<(String, u32, String), Window>,
    /// Alerts folded since start.
    pub suppressed_total: u64,
}

impl RateLimiter {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            max_keys: 65_536,
            open: HashMap::new(),
            suppressed_total: 0,
        }
    }

    /// Whether this alert should go out (true) or is folded into an earlier one (false).
    pub fn admit(&mut self, now: Instant, c: &Candidate) -> bool {
        if self.window.is_zero() {
            return true;
        }
        let k = (c.rule.to_owned(), c.pid, c.key.to_owned());
        if let Some(w) = self.open.get_mut(&k)
            && now.duration_since(w.opened) < self.window
        {
            w.suppressed += 1;
            self.suppressed_total += 1;
            return false;
        }
        if self.open.len() >= self.max_keys {
            // Bounded memory: a key evicted early only means a later repeat is reported again.
            self.open.retain(|_, w| w.suppressed > 0);
        }
        self.open.insert(
            k,
            Window {
                opened: now,
                alert_id: c.id.to_owned(),
                rule: c.rule.to_owned(),
                severity: c.severity.to_owned(),
                profile: c.profile.map(str::to_owned),
                suppressed: 0,
            },
        );
        true
    }

    /// Closes windows older than the window length; returns the repeat counts to report.
    pub fn expire(&mut self, now: Instant, time: WallTime) -> Vec<Repeats> {
        let mut out = Vec::new();
        self.open.retain(|(_, _, key), w| {
            if now.duration_since(w.opened) < self.window {
                return true;
            }
            if w.suppressed > 0 {
                out.push(Repeats {
                    id: repeats_id(&w.alert_id),
                    time,
                    rule: w.rule.clone(),
                    severity: w.severity.clone(),
                    profile: w.profile.clone(),
                    key: key.clone(),
                    alert_id: w.alert_id.clone(),
                    count: w.suppressed,
                });
            }
            false
        });
        out
    }

    /// Reports every open window with repeats (at shutdown).
    pub fn flush(&mut self, time: WallTime) -> Vec<Repeats> {
        let far = Instant::now() + self.window + Duration::from_secs(1);
        self.expire(far, time)
    }
}

/// Id of the repeats report of `alert_id` (one report per folding window, and a window belongs
/// to the alert that opened it).
fn repeats_id(alert_id: &str) -> String {
    super::stable_id(&[b"alert_repeats", alert_id.as_bytes()])
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Candidate, RateLimiter};
    use crate::clock::WallTime;

    fn c<'a>(rule: &'a str, pid: u32, key: &'a str, id: &'a str) -> Candidate<'a> {
        Candidate {
            rule,
            pid,
            key,
            id,
            profile: None,
            severity: "high",
        }
    }

    #[test]
    fn folds_repeats_and_reports_them() {
        let mut l = RateLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(l.admit(t0, &c("r", 1, "/x", "id1")));
        assert!(!l.admit(t0, &c("r", 1, "/x", "id2")));
        assert!(!l.admit(t0, &c("r", 1, "/x", "id3")));
        assert!(l.admit(t0, &c("r", 1, "/y", "id4")));
        assert!(l.admit(t0, &c("r", 2, "/x", "id5")));
        assert!(l.expire(t0, WallTime::default()).is_empty());
        let rep = l.expire(t0 + Duration::from_secs(11), WallTime::default());
        assert_eq!(rep.len(), 1);
        assert_eq!((rep[0].alert_id.as_str(), rep[0].count), ("id1", 2));
        assert_eq!(rep[0].severity, "high");
        assert_eq!(rep[0].id.len(), 32);
        assert_ne!(rep[0].id, "id1");
        assert!(l.admit(t0 + Duration::from_secs(12), &c("r", 1, "/x", "id6")));
        assert_eq!(l.suppressed_total, 2);
    }

    #[test]
    fn zero_window_admits_everything() {
        let mut l = RateLimiter::new(Duration::ZERO);
        let t0 = Instant::now();
        assert!(l.admit(t0, &c("r", 1, "k", "a")));
        assert!(l.admit(t0, &c("r", 1, "k", "b")));
    }
}
