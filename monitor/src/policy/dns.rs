//! Names each workload resolved: the DNS answers its processes received (`dns` events), so an
//! address the workload connects to can be named (`monitor learn`) and allowed when the
//! workload itself resolved it from a name its profile allows, whatever the agent's own
//! resolver says (round-robin and geo DNS give every client different addresses).
//!
//! Entries live for the answer's TTL, but at least [`MIN_KEEP`]: clients and their connection
//! pools keep using addresses well past short TTLs. The table is bounded; when full, the
//! entries closest to expiry go first.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::rules::{ResolvedNames, canonical_ip as canonical};
use crate::sensor::event::DnsBody;

/// Shortest time an answer is remembered, ns.
pub const MIN_KEEP_NS: u64 = 600 * 1_000_000_000;
/// Most (workload, address) entries.
pub const MAX_ENTRIES: usize = 65_536;
/// Most names remembered for one (workload, address).
const MAX_NAMES: usize = 8;

/// Names of one address, for one workload.
#[derive(Debug)]
struct Entry {
    /// Query names (lower case), latest last.
    names: Vec<String>,
    /// Boot-time ns after which the entry is gone.
    expires_ns: u64,
}

/// The DNS answers seen, by workload and address.
#[derive(Debug, Default)]
pub struct DnsSeen {
    entries: HashMap<(u64, IpAddr), Entry>,
    /// (expiry, key), to drop the oldest first when full.
    by_expiry: BTreeSet<(u64, u64, IpAddr)>,
    /// Entries dropped to stay within bounds (not by expiry).
    pub evicted: u64,
}

impl DnsSeen {
    /// Records what `workload` learned from one answer received at `now_ns`.
    pub fn record(&mut self, workload: u64, answer: &DnsBody, now_ns: u64) {
        let Some(query) = answer.query.as_deref() else {
            return;
        };
        let keep = u64::from(answer.ttl.unwrap_or(0))
            .saturating_mul(1_000_000_000)
            .max(MIN_KEEP_NS);
        let expires_ns = now_ns.saturating_add(keep);
        for &ip in &answer.answers {
            let key = (workload, canonical(ip));
            if !self.entries.contains_key(&key) && self.entries.len() >= MAX_ENTRIES {
                self.expire(now_ns);
                if self.entries.len() >= MAX_ENTRIES
                    && let Some(&(exp, w, a)) = self.by_expiry.iter().next()
                {
                    self.by_expiry.remove(&(exp, w, a));
                    self.entries.remove(&(w, a));
                    self.evicted += 1;
                }
            }
            let entry = self.entries.entry(key).or_insert_with(|| Entry {
                names: Vec::new(),
                expires_ns,
            });
            self.by_expiry.remove(&(entry.expires_ns, key.0, key.1));
            entry.expires_ns = entry.expires_ns.max(expires_ns);
            self.by_expiry.insert((entry.expires_ns, key.0, key.1));
            entry.names.retain(|n| n != query);
            if entry.names.len() >= MAX_NAMES {
                entry.names.remove(0);
            }
            entry.names.push(query.to_owned());
        }
    }

    /// Drops entries expired at `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(&(exp, w, a)) = self.by_expiry.iter().next() {
            if exp > now_ns {
                break;
            }
            self.by_expiry.remove(&(exp, w, a));
            self.entries.remove(&(w, a));
        }
    }

    /// The names `workload` resolved to `ip`, latest last.
    pub fn names(&self, workload: u64, ip: IpAddr, now_ns: u64) -> &[String] {
        self.entries
            .get(&(workload, canonical(ip)))
            .filter(|e| e.expires_ns > now_ns)
            .map_or(&[], |e| e.names.as_slice())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A view for one workload at boot-time `now_ns`, for the rules.
    pub fn of(&self, workload: u64, now_ns: u64) -> WorkloadNames<'_> {
        WorkloadNames {
            seen: self,
            workload,
            now_ns,
        }
    }
}

/// The names one workload resolved.
pub struct WorkloadNames<'a> {
    seen: &'a DnsSeen,
    workload: u64,
    now_ns: u64,
}

impl ResolvedNames for WorkloadNames<'_> {
    fn resolved(&self, ip: IpAddr, host: &str) -> bool {
        self.seen
            .names(self.workload, ip, self.now_ns)
            .iter()
            .any(|n| n == host)
    }

    fn name_of(&self, ip: IpAddr) -> Option<&str> {
        self.seen
            .names(self.workload, ip, self.now_ns)
            .last()
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{DnsSeen, MAX_ENTRIES, MIN_KEEP_NS};
    use crate::rules::ResolvedNames as _;
    use crate::sensor::event::DnsBody;

    fn answer(query: &str, ips: &[&str], ttl: u32) -> DnsBody {
        DnsBody {
            query: Some(query.to_owned()),
            answers: ips.iter().map(|s| s.parse().expect("ip")).collect(),
            ttl: Some(ttl),
            ..DnsBody::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn names_are_per_workload_and_address_and_expire() {
        let mut seen = DnsSeen::default();
        seen.record(
            1,
            &answer("api.example.com", &["192.0.2.1", "::ffff:192.0.2.2"], 30),
            0,
        );
        seen.record(1, &answer("cdn.example.net", &["192.0.2.1"], 30), 5);
        assert_eq!(
            seen.names(1, ip("192.0.2.1"), 0),
            ["api.example.com", "cdn.example.net"]
        );
        assert_eq!(
            seen.names(1, ip("192.0.2.2"), 0),
            ["api.example.com"],
            "v4-mapped folded"
        );
        assert!(
            seen.names(2, ip("192.0.2.1"), 0).is_empty(),
            "other workload"
        );
        assert!(
            seen.of(1, 0)
                .resolved(ip("::ffff:192.0.2.1"), "api.example.com")
        );
        assert!(!seen.of(1, 0).resolved(ip("192.0.2.9"), "api.example.com"));
        seen.expire(MIN_KEEP_NS - 1);
        assert_eq!(seen.len(), 2, "kept at least MIN_KEEP past a short TTL");
        assert!(
            seen.names(1, ip("192.0.2.2"), MIN_KEEP_NS + 1).is_empty(),
            "expired entries are not answered before they are dropped"
        );
        seen.expire(MIN_KEEP_NS + 5);
        assert_eq!(seen.len(), 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut seen = DnsSeen::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            seen.record(i, &answer("a.example", &["192.0.2.1"], 60), i);
        }
        assert_eq!(seen.len(), MAX_ENTRIES);
        assert_eq!(seen.evicted, 10);
        assert!(
            seen.names(0, ip("192.0.2.1"), 0).is_empty(),
            "oldest went first"
        );
    }
}
