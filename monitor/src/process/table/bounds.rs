//! The table's bounds: the indexes beside the entries (pid -> start keys, touch order, exit
//! order), kept in step on every insert and removal, and the eviction and expiry that use
//! them (see the bounds in the parent module's documentation).

use std::time::Instant;

use super::{
    Entry, Key, NEGATIVE_CACHE_MAX, NEGATIVE_CACHE_TTL, Origin, ProcessInfo, ProcessTable,
};

impl ProcessTable {
    /// Key of the newest entry for `ppid` that started no later than `child_start_key`.
    pub(super) fn parent_key(&self, ppid: u32, child_start_key: u64) -> Option<Key> {
        let keys = self.by_pid.get(&ppid)?;
        let key = keys.iter().rev().find(|&&k| k <= child_start_key)?;
        Some((ppid, *key))
    }

    /// Adds an entry read from `/proc`, filling a placeholder for the same process.
    pub(super) fn insert_loaded(&mut self, loaded: ProcessInfo) {
        let key = (loaded.pid, loaded.start_key);
        match self.entries.get_mut(&key) {
            Some(entry) if entry.origin == Origin::Partial => {
                let exited = entry.info.exited;
                entry.info = loaded;
                entry.info.exited = exited;
                entry.origin = Origin::Proc;
                self.touch(key);
            }
            Some(_) => {}
            None => self.insert(loaded, Origin::Proc),
        }
    }

    pub(super) fn insert(&mut self, info: ProcessInfo, origin: Origin) {
        while self.entries.len() >= self.capacity {
            // Popping first guarantees progress even if the maps ever disagreed.
            let Some((_, victim)) = self.exits.pop_first().or_else(|| self.lru.pop_first()) else {
                break;
            };
            if self.entries.contains_key(&victim) {
                self.remove(victim);
                self.stats.evictions += 1;
            }
        }
        let key = (info.pid, info.start_key);
        self.seq += 1;
        self.lru.insert(self.seq, key);
        let keys = self.by_pid.entry(key.0).or_default();
        let at = keys.partition_point(|&k| k < key.1);
        keys.insert(at, key.1);
        let entry = Entry {
            info,
            origin,
            touched: self.seq,
            exit: None,
        };
        self.entries.insert(key, entry);
    }

    pub(super) fn remove(&mut self, key: Key) {
        let Some(entry) = self.entries.remove(&key) else {
            return;
        };
        self.lru.remove(&entry.touched);
        if let Some((seq, _)) = entry.exit {
            self.exits.remove(&seq);
        }
        if let Some(keys) = self.by_pid.get_mut(&key.0) {
            keys.retain(|&k| k != key.1);
            if keys.is_empty() {
                self.by_pid.remove(&key.0);
            }
        }
    }

    pub(super) fn touch(&mut self, key: Key) {
        self.seq += 1;
        if let Some(entry) = self.entries.get_mut(&key) {
            self.lru.remove(&entry.touched);
            entry.touched = self.seq;
            self.lru.insert(self.seq, key);
        }
    }

    /// Removes exited entries whose grace period is over (oldest exits first).
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((&seq, &key)) = self.exits.first_key_value() {
            match self.entries.get(&key).and_then(|e| e.exit) {
                Some((_, at)) if now.duration_since(at) < self.exit_grace => break,
                Some(_) => {
                    self.remove(key);
                    self.stats.expired += 1;
                }
                // Not reachable while the maps agree; never loop on a stale slot.
                None => {
                    self.exits.remove(&seq);
                }
            }
        }
    }

    pub(super) fn remember_failure(&mut self, pid: u32, now: Instant) {
        if self.negative.len() >= NEGATIVE_CACHE_MAX {
            self.negative
                .retain(|_, &mut t| now.duration_since(t) < NEGATIVE_CACHE_TTL);
            if self.negative.len() >= NEGATIVE_CACHE_MAX {
                self.negative.clear();
            }
        }
        self.negative.insert(pid, now);
    }
}
