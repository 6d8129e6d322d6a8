//! What is known about one tracked host: its current addresses, the addresses of earlier
//! answers still inside their grace period, and when to ask again. Every method takes the
//! current time, so the bookkeeping is tested with synthetic instants.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::schedule::{clamp_ttl, next_refresh};

/// Where an answer came from; decides nothing, but makes logs explain themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The hosts file (for example `/etc/hosts`).
    HostsFile,
    /// A DNS query through the configured nameservers.
    Dns,
    /// The C library resolver (getaddrinfo), used when DNS gave nothing.
    System,
}

/// One successful resolution.
///
/// A family is `None` when its query failed (timeout, server error) while the other family
/// answered: the previous addresses of that family are then kept rather than dropped.
/// `Some(vec![])` means the name authoritatively has no address of that family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// IPv4 addresses (A records).
    pub v4: Option<Vec<IpAddr>>,
    /// IPv6 addresses (AAAA records).
    pub v6: Option<Vec<IpAddr>>,
    /// How long the answer may be cached (unclamped).
    pub ttl: Duration,
    /// Where it came from.
    pub source: Source,
}

/// State of one tracked host.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// Addresses of the latest answer (plus those of a family whose query failed).
    current: Vec<IpAddr>,
    /// Addresses dropped by a newer answer, each kept until its deadline.
    lingering: Vec<(IpAddr, Instant)>,
    /// Clamped TTL of the latest answer; also the grace period of its addresses.
    ttl: Duration,
    /// When the host is next due for resolution.
    next_refresh: Instant,
    /// Consecutive failed resolutions since the last success.
    failures: u32,
    /// Source of the latest answer, `None` before the first success.
    source: Option<Source>,
}

impl HostEntry {
    /// A host nothing is known about yet, due for resolution at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            current: Vec::new(),
            lingering: Vec::new(),
            ttl: Duration::ZERO,
            next_refresh: now,
            failures: 0,
            source: None,
        }
    }

    /// Addresses to accept at `now`: the current ones and those still in their grace period.
    pub fn addrs(&self, now: Instant) -> Vec<IpAddr> {
        let mut out = self.current.clone();
        for &(addr, until) in &self.lingering {
            if until > now && !out.contains(&addr) {
                out.push(addr);
            }
        }
        out
    }

    /// When the host is next due.
    pub fn next_refresh(&self) -> Instant {
        self.next_refresh
    }

    /// Length of the current failure streak.
    #[cfg(test)]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Source of the latest successful answer.
    #[cfg(test)]
    pub fn source(&self) -> Option<Source> {
        self.source
    }

    /// Records a successful answer received at `now`; returns the length of the failure
    /// streak it ends (0 if there was none).
    ///
    /// Addresses the previous answer had and this one lacks stay acceptable for one more
    /// TTL of the previous answer, so a connection racing a DNS change is not flagged.
    pub fn record_answer(&mut self, answer: Answer, now: Instant) -> u32 {
        let mut fresh = Vec::new();
        for (family, is_v4) in [(answer.v4, true), (answer.v6, false)] {
            match family {
                Some(addrs) => fresh.extend(addrs),
                // That family's query failed: keep what we had for it.
                None => fresh.extend(self.current.iter().filter(|a| a.is_ipv4() == is_v4)),
            }
        }
        dedup_in_order(&mut fresh);

        let grace_until = now + self.ttl;
        self.lingering
            .retain(|&(addr, until)| until > now && !fresh.contains(&addr));
        for &addr in &self.current {
            if fresh.contains(&addr) {
                continue;
            }
            match self.lingering.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, until)) => *until = (*until).max(grace_until),
                None => self.lingering.push((addr, grace_until)),
            }
        }

        self.current = fresh;
        self.ttl = clamp_ttl(answer.ttl);
        self.next_refresh = now + next_refresh(answer.ttl, 0);
        self.source = Some(answer.source);
        std::mem::take(&mut self.failures)
    }

    /// Records a failed resolution at `now`; returns the new streak length.
    ///
    /// Known addresses are kept: failing to resolve a name says nothing about where it points.
    pub fn record_failure(&mut self, now: Instant) -> u32 {
        self.failures = self.failures.saturating_add(1);
        self.next_refresh = now + next_refresh(Duration::ZERO, self.failures);
        self.failures
    }
}

/// Removes repeated addresses, keeping the first occurrence of each.
fn dedup_in_order(addrs: &mut Vec<IpAddr>) {
    let mut seen = Vec::with_capacity(addrs.len());
    addrs.retain(|a| {
        if seen.contains(a) {
            false
        } else {
            seen.push(*a);
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use super::{Answer, HostEntry, Source};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn answer(v4: &[&str], v6: &[&str], ttl: u64) -> Answer {
        Answer {
            v4: Some(v4.iter().map(|s| ip(s)).collect()),
            v6: Some(v6.iter().map(|s| ip(s)).collect()),
            ttl: Duration::from_secs(ttl),
            source: Source::Dns,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn new_entry_is_due_and_empty() {
        let t0 = Instant::now();
        let e = HostEntry::new(t0);
        assert!(e.addrs(t0).is_empty());
        assert_eq!(e.next_refresh(), t0);
        assert_eq!(e.source(), None);
    }

    #[test]
    fn answer_sets_addresses_and_schedules_at_ttl() {
        let t0 = Instant::now();
        let mut e = HostEntry::new(t0);
        e.record_answer(answer(&["192.0.2.1"], &["2001:db8::1"], 30), t0);
        assert_eq!(e.addrs(t0), vec![ip("192.0.2.1"), ip("2001:db8::1")]);
        assert_eq!(e.next_refresh(), t0 + secs(30));
        assert_eq!(e.source(), Some(Source::Dns));
    }

    #[test]
    fn short_ttl_is_clamped_when_scheduling() {
        let t0 = Instant::now();
        let mut e = HostEntry::new(t0);
        e.record_answer(answer(&["192.0.2.1"], &[], 0), t0);
        assert_eq!(e.next_refresh(), t0 + secs(5));
    }

    #[test]
    fn vanished_addresses_linger_for_one_previous_ttl() {
        let t0 = Instant::now();
        let mut e = HostEntry::new(t0);
        e.record_answer(answer(&["192.0.2.1"], &[], 30), t0);

        let t1 = t0 + secs(30);
        e.record_answer(answer(&["192.0.2.2"], &[], 60), t1);
        assert_eq!(e.addrs(t1), vec![ip("192.0.2.2"), ip("192.0.2.1")]);
        // The old address is accepted until one previous TTL (30 s) has passed...
        assert!(e.addrs(t1 + secs(29)).contains(&ip("192.0.2.1")));
        // ...and not after.
        assert_eq!(e.addrs(t1 + secs(30)), vec![ip("192.0.2.2")]);
    }

    #[test]
    fn returning_address_stops_lingering() {
        let t0 = Instant::now();
        let mut e = HostEntry::new(t0);
        e.record_answer(answer(&["192.0.2.1"], &[], 30), t0);
        e.record_answer(answer(&["192.0.2.2"], &[], 30), t0 + secs(30));
        e.record_answer(answer(&["192.0.2.1"], &[], 30), t0 + secs(60));
        // 192.0.2.2 now lingers; 192.0.2.1 is current, listed once.
        assert_eq!(
            e.addrs(t0 + secs(60)),
            vec![ip("192.0.2.1"), ip("192.0.2.2")]
        );
        assert_eq!(e.addrs(t0 + secs(90)), vec![ip("192.0.2.1")]);
    }

    #[test]
    fn failed_family_keeps_previous_addresses() {
        let t0 = Instant::now();
        let mut e = HostEntry::new(t0);
        e.record_answer(answer(&["192.0.2.1"], &["2001:db8::1"], 30), t0);
        let partial = Answer {
            v6: None,
            ..answer(&["192.0.2.9"], &[], 30)
        };
        let t1 = t0 + secs(30);
        e.record_answer(partial, t1);
        // The AAAA query failed, so its address is still current (not merely lingering).
        assert_eq!(
            e.addrs(t1 + secs(3600)),
            vec![ip("192.0.2.9"), ip("2001:db8::1")]
        );
    }

    #[test]
    fn failures_keep_addresses_and_back_off() {
        let t0 = Instant::now();
        let mut e = HostEntry::new(t0);
        e.record_answer(answer(&["192.0.2.1"], &[], 30), t0);
        let t1 = t0 + secs(30);
        assert_eq!(e.record_failure(t1), 1);
        assert_eq!(e.next_refresh(), t1 + secs(1));
        assert_eq!(e.record_failure(t1), 2);
        assert_eq!(e.next_refresh(), t1 + secs(2));
        assert_eq!(e.addrs(t1 + secs(600)), vec![ip("192.0.2.1")]);
        // Success ends the streak and reports its length.
        assert_eq!(e.record_answer(answer(&["192.0.2.1"], &[], 30), t1), 2);
        assert_eq!(e.failures(), 0);
    }

    #[test]
    fn duplicate_addresses_are_listed_once() {
        let t0 = Instant::now();
        let mut e = HostEntry::new(t0);
        e.record_answer(answer(&["192.0.2.1", "192.0.2.1"], &[], 30), t0);
        assert_eq!(e.addrs(t0), vec![ip("192.0.2.1")]);
    }
}
