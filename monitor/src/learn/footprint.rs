//! What a learning session saw: every executable run, file read or written, address connected
//! to, port listened on and unix socket connected to by the learned processes, each with how
//! often, how soon after its workload started, by which executables, and in which phase
//! (before the workload first listened, or after). Serialisable: a running agent sends it to
//! `monitor learn` over the control socket.
//!
//! Bounded: at most [`MAX_ENTRIES`] distinct objects and [`MAX_BYTES`] of their names (paths
//! can be 4 KiB each); further ones are counted in [`Footprint::dropped`] and reported, never
//! silently lost.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Most distinct objects (paths, addresses, ports) one session remembers.
pub const MAX_ENTRIES: usize = 200_000;
/// Most bytes of object names one session remembers (with [`ENTRY_OVERHEAD`] per object).
pub const MAX_BYTES: usize = 64 << 20;
/// What one remembered object costs beside its name (map node, counters, executables).
const ENTRY_OVERHEAD: usize = 256;
/// Most distinct executables named per object (the rest are counted).
const MAX_EXES: usize = 3;

/// How one object was seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub count: u64,
    /// Seconds after its workload instance started, of the earliest sighting.
    pub first_secs: f64,
    /// Seen before its instance first listened.
    pub startup: bool,
    /// Seen after its instance first listened (or in an instance already running when the
    /// session began).
    pub serving: bool,
    /// Seconds after its instance started, of the latest sighting before it first listened.
    #[serde(default)]
    pub last_startup_secs: f64,
    /// Executables of the processes that did it, with counts (at most three).
    pub exes: BTreeMap<String, u64>,
    /// Sightings by further executables.
    pub other_exes: u64,
}

impl Seen {
    pub fn add(&mut self, secs: f64, serving: bool, exe: &str) {
        self.first_secs = if self.count == 0 {
            secs
        } else {
            self.first_secs.min(secs)
        };
        self.count += 1;
        if serving {
            self.serving = true;
        } else {
            self.startup = true;
            self.last_startup_secs = self.last_startup_secs.max(secs);
        }
        if let Some(n) = self.exes.get_mut(exe) {
            *n += 1;
        } else if self.exes.len() < MAX_EXES {
            self.exes.insert(exe.to_owned(), 1);
        } else {
            self.other_exes += 1;
        }
    }

    /// Combines two sightings (of objects generalised into one entry).
    pub fn merge(&mut self, other: &Seen) {
        if other.count == 0 {
            return;
        }
        self.first_secs = if self.count == 0 {
            other.first_secs
        } else {
            self.first_secs.min(other.first_secs)
        };
        self.count += other.count;
        self.startup |= other.startup;
        self.serving |= other.serving;
        self.last_startup_secs = self.last_startup_secs.max(other.last_startup_secs);
        for (exe, n) in &other.exes {
            if let Some(m) = self.exes.get_mut(exe) {
                *m += n;
            } else if self.exes.len() < MAX_EXES {
                self.exes.insert(exe.clone(), *n);
            } else {
                self.other_exes += n;
            }
        }
        self.other_exes += other.other_exes;
    }
}

/// How one file path was used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSeen {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub read: Option<Seen>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub write: Option<Seen>,
    /// The workload created it (an open that created the file).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub created: bool,
}

/// One destination connected or sent to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connect {
    /// The name the workload resolved the address from, when it did.
    pub host: Option<String>,
    pub addr: IpAddr,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub seen: Seen,
}

/// Everything a session saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Executables run (a script's path when an interpreter ran it), by path.
    pub exec: BTreeMap<String, Seen>,
    /// Files, by absolute path (a process's own `/proc/<pid>` as `/proc/self`).
    pub files: BTreeMap<String, FileSeen>,
    /// Destinations, keyed `protocol|host|addr|port`.
    pub connect: BTreeMap<String, Connect>,
    /// Ports listened on (TCP) or bound (UDP).
    pub listen: BTreeMap<u16, Seen>,
    /// Unix socket paths connected to.
    pub unix: BTreeMap<String, Seen>,
    /// Objects not remembered because [`MAX_ENTRIES`] was reached.
    pub dropped: u64,
    /// Distinct objects remembered.
    pub entries: usize,
    /// What they cost, as counted against [`MAX_BYTES`].
    #[serde(default)]
    pub bytes: usize,
}

impl Footprint {
    /// Room for one more distinct object? Counts the drop when not.
    fn room(&mut self, known: bool, name_len: usize) -> bool {
        if known {
            return true;
        }
        let cost = name_len + ENTRY_OVERHEAD;
        if self.entries >= MAX_ENTRIES || self.bytes + cost > MAX_BYTES {
            self.dropped += 1;
            return false;
        }
        self.entries += 1;
        self.bytes += cost;
        true
    }

    pub fn exec(&mut self, path: &str, secs: f64, serving: bool, exe: &str) {
        if self.room(self.exec.contains_key(path), path.len()) {
            self.exec
                .entry(path.to_owned())
                .or_default()
                .add(secs, serving, exe);
        }
    }

    /// A successful open or other file operation: `read` and/or `write`, `created`.
    pub fn file(&mut self, path: &str, use_: FileUse, secs: f64, serving: bool, exe: &str) {
        if !self.room(self.files.contains_key(path), path.len()) {
            return;
        }
        let f = self.files.entry(path.to_owned()).or_default();
        if use_.read {
            f.read
                .get_or_insert_with(Seen::default)
                .add(secs, serving, exe);
        }
        if use_.write {
            f.write
                .get_or_insert_with(Seen::default)
                .add(secs, serving, exe);
        }
        f.created |= use_.created;
    }

    pub fn connect(&mut self, to: Destination<'_>, secs: f64, serving: bool, exe: &str) {
        let key = format!(
            "{}|{}|{}|{}",
            to.protocol,
            to.host.unwrap_or(""),
            to.addr,
            to.port
        );
        if !self.room(self.connect.contains_key(&key), key.len()) {
            return;
        }
        self.connect
            .entry(key)
            .or_insert_with(|| Connect {
                host: to.host.map(str::to_owned),
                addr: to.addr,
                port: to.port,
                protocol: to.protocol.to_owned(),
                seen: Seen::default(),
            })
            .seen
            .add(secs, serving, exe);
    }

    pub fn listen(&mut self, port: u16, secs: f64, serving: bool, exe: &str) {
        if self.room(self.listen.contains_key(&port), 2) {
            self.listen.entry(port).or_default().add(secs, serving, exe);
        }
    }

    pub fn unix(&mut self, path: &str, secs: f64, serving: bool, exe: &str) {
        if self.room(self.unix.contains_key(path), path.len()) {
            self.unix
                .entry(path.to_owned())
                .or_default()
                .add(secs, serving, exe);
        }
    }
}

/// How a file was used by one event.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileUse {
    pub read: bool,
    pub write: bool,
    pub created: bool,
}

/// Where one connect or send went.
#[derive(Clone, Copy, Debug)]
pub struct Destination<'a> {
    pub host: Option<&'a str>,
    pub addr: IpAddr,
    pub port: u16,
    pub protocol: &'a str,
}

#[cfg(test)]
mod tests {
    use super::{Destination, FileUse, Footprint, MAX_BYTES, MAX_ENTRIES, Seen};

    #[test]
    fn sightings_keep_count_earliest_time_phases_and_a_few_executables() {
        let mut s = Seen::default();
        s.add(3.0, false, "/usr/bin/python3.11");
        s.add(1.5, true, "/usr/bin/python3.11");
        for exe in ["/a", "/b", "/c"] {
            s.add(9.0, true, exe);
        }
        assert_eq!(s.count, 5);
        assert_eq!(s.first_secs, 1.5);
        assert!(s.startup && s.serving);
        assert_eq!(s.exes.len(), 3);
        assert_eq!(s.exes["/usr/bin/python3.11"], 2);
        assert_eq!(s.other_exes, 1);
        let mut t = Seen::default();
        t.add(0.5, false, "/d");
        t.merge(&s);
        assert_eq!((t.count, t.first_secs, t.other_exes), (6, 0.5, 3));
    }

    #[test]
    fn the_footprint_is_bounded_and_counts_what_it_drops() {
        let mut f = Footprint::default();
        let read = FileUse {
            read: true,
            ..FileUse::default()
        };
        for i in 0..MAX_ENTRIES + 3 {
            f.file(&format!("/f/{i}"), read, 0.0, false, "/x");
        }
        f.file("/f/0", read, 1.0, true, "/x");
        f.connect(
            Destination {
                host: Some("a.example"),
                addr: "192.0.2.1".parse().unwrap(),
                port: 443,
                protocol: "tcp",
            },
            0.0,
            false,
            "/x",
        );
        assert_eq!(f.files.len(), MAX_ENTRIES);
        assert_eq!(f.dropped, 4);
        let first = f.files["/f/0"].read.as_ref().unwrap();
        assert_eq!(first.count, 2, "a known object still counts");
        let back: Footprint = serde_json::from_slice(&serde_json::to_vec(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn long_names_are_bounded_by_bytes() {
        let mut f = Footprint::default();
        let read = FileUse {
            read: true,
            ..FileUse::default()
        };
        let long = "d/".repeat(2000);
        for i in 0..20_000 {
            f.file(&format!("/{long}{i}"), read, 0.0, false, "/x");
        }
        assert!(f.bytes <= MAX_BYTES, "{}", f.bytes);
        assert_eq!(f.files.len() as u64 + f.dropped, 20_000);
        assert!(f.dropped > 0 && f.files.len() > 10_000, "{}", f.files.len());
    }
}
