//! Where the full ring buffer's drops fell: by the dropped record's family, and by process
//! (the kernel keeps `DROPS_BY_PROCESS`, thread group and family -> count, written only on a
//! drop), so a flood is attributed to the process that caused it and a process's lost records
//! are known exactly.

use std::collections::{BTreeMap, HashMap as StdHashMap};

use aya::maps::{HashMap, MapData};

/// Records the full ring buffer dropped, by family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DropsByFamily {
    /// exec, fork, exit.
    pub process: u64,
    /// open, unlink, rename, chmod, memfd, link, symlink, truncate.
    pub file: u64,
    /// connect, accept, bind, listen, send, DNS answers.
    pub network: u64,
}

impl DropsByFamily {
    fn total(&self) -> u64 {
        self.process + self.file + self.network
    }
}

/// One process's dropped records (a record is counted against the process its header names: a
/// fork's against the parent, a DNS answer's against the process that asked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessDrops {
    pub pid: u32,
    #[serde(flatten)]
    pub drops: DropsByFamily,
}

/// How many processes `agent_stats` lists (those with the most drops).
pub const LISTED: usize = 16;

/// The processes with the most drops since the agent started, most first (then by pid), at
/// most [`LISTED`]. The kernel keeps `DROPS_BY_PROCESS_MAX` (process, family) pairs, least
/// recently dropping out first; a pid reused keeps its predecessor's count (pids are not
/// forgotten at exit), so the list tells who lost records, and exactly only while the map
/// is not full.
pub fn by_process(map: &HashMap<MapData, u64, u64>) -> Vec<ProcessDrops> {
    // Keyed first: a walk that loses its place (the LRU evicted the key it stood on) starts
    // over, and must not count an entry twice.
    let entries: StdHashMap<u64, u64> = map.iter().filter_map(Result::ok).collect();
    top(entries.into_iter(), LISTED)
}

/// Groups `(tgid << 2 | family, count)` entries by process and keeps the `n` with most drops.
fn top(entries: impl Iterator<Item = (u64, u64)>, n: usize) -> Vec<ProcessDrops> {
    let mut by_pid: BTreeMap<u32, DropsByFamily> = BTreeMap::new();
    for (key, count) in entries {
        let d = by_pid.entry((key >> 2) as u32).or_default();
        match key & 3 {
            0 => d.process += count,
            1 => d.file += count,
            _ => d.network += count,
        }
    }
    let mut list: Vec<ProcessDrops> = by_pid
        .into_iter()
        .map(|(pid, drops)| ProcessDrops { pid, drops })
        .collect();
    list.sort_by(|a, b| {
        b.drops
            .total()
            .cmp(&a.drops.total())
            .then(a.pid.cmp(&b.pid))
    });
    list.truncate(n);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_grouped_by_process_and_the_largest_listed_first() {
        let entries = [
            (7 << 2 | 1, 5),
            (7 << 2, 1),
            (3 << 2 | 2, 6),
            (9 << 2 | 1, 2),
        ];
        let list = top(entries.into_iter(), 2);
        assert_eq!(
            list,
            vec![
                ProcessDrops {
                    pid: 3,
                    drops: DropsByFamily {
                        network: 6,
                        ..Default::default()
                    }
                },
                ProcessDrops {
                    pid: 7,
                    drops: DropsByFamily {
                        process: 1,
                        file: 5,
                        network: 0
                    }
                },
            ]
        );
    }
}
