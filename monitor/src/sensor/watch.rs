//! The kernel's watch array, memory-mapped: per pid, whether that process's file and network
//! activity is recorded, and how many of its execs user space has yet to decide about (layout:
//! `monitor_common::config::watch`). The kernel watches children of watched processes at fork
//! and exec'ing processes (watch-on-exec), and clears the field at exit; user space watches the
//! processes a profile selects and unwatches the others. Both sides use atomic operations on the
//! same memory, so neither can lose the other's update, and user space unwatches only when no
//! exec it has not decided about happened since.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use monitor_common::config::{WATCH_WORDS, watch};

/// Memory-mapped `WATCHED` array.
pub struct WatchMap {
    words: NonNull<AtomicU64>,
    len: usize,
    /// Keeps the map fd open for as long as the mapping lives.
    _map: MapData,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Send for WatchMap {}

impl WatchMap {
    /// Maps the array (created with `BPF_F_MMAPABLE` by the kernel object).
    pub fn new(map: MapData) -> std::io::Result<Self> {
        let len = WATCH_WORDS as usize;
        let bytes = len * size_of::<u64>();
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: mapping a BPF array map fd, shared, of exactly its value area's size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let words =
            NonNull::new(ptr as *mut AtomicU64).ok_or_else(std::io::Error::last_os_error)?;
        Ok(Self {
            words,
            len,
            _map: map,
        })
    }

    fn word(&self, pid: u32) -> Option<(&AtomicU64, u32)> {
        let (i, shift) = watch::slot(pid);
        let i = i as usize;
        // SAFETY: `i < len` checked; the mapping lives as long as `self`.
        (i < self.len).then(|| (unsafe { &*self.words.as_ptr().add(i) }, shift))
    }

    /// Records `pid`'s activity from now on.
    pub fn watch(&self, pid: u32) {
        if let Some((w, shift)) = self.word(pid) {
            w.fetch_or(watch::WATCHED << shift, Ordering::Relaxed);
        }
    }

    /// Stops recording `pid`, unless it has exec'd since the event this decision comes from (the
    /// decision about the new image comes with its exec event). For forks, and for processes
    /// judged from the process table.
    pub fn unwatch_settled(&self, pid: u32) {
        self.update(pid, unwatched);
    }

    /// Applies the decision about one exec of `pid`: that exec is decided (the count goes down,
    /// unless stuck at its maximum); the process is watched if `on`, and unwatched only when
    /// no later exec is waiting for its own decision.
    pub fn exec_decided(&self, pid: u32, on: bool) {
        self.update(pid, |field| Some(exec_decided(field, on)));
    }

    /// `pid`'s field: whether it is watched, and how many of its execs are undecided.
    #[cfg(test)]
    pub(crate) fn field(&self, pid: u32) -> (bool, u64) {
        let (w, shift) = self.word(pid).expect("pid in range");
        let field = (w.load(Ordering::Relaxed) >> shift) & watch::FIELD;
        (field & watch::WATCHED != 0, watch::execs(field))
    }

    /// Replaces `pid`'s field with what `f` makes of it (None: leave it), atomically against
    /// the kernel's updates of the same word.
    fn update(&self, pid: u32, f: impl Fn(u64) -> Option<u64>) {
        let Some((w, shift)) = self.word(pid) else {
            return;
        };
        let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let field = (word >> shift) & watch::FIELD;
            f(field).map(|new| (word & !(watch::FIELD << shift)) | (new << shift))
        });
    }
}

/// A field unwatched, or None when an exec happened since that has yet to be decided.
fn unwatched(field: u64) -> Option<u64> {
    (watch::execs(field) == 0).then_some(field & !watch::WATCHED)
}

/// A field after the decision about one of its execs.
fn exec_decided(field: u64, on: bool) -> u64 {
    let execs = match watch::execs(field) {
        n @ 1..watch::EXECS_MAX => n - 1,
        n => n,
    };
    let watched = if on {
        watch::WATCHED
    } else if execs != 0 {
        // A later exec is waiting: whatever the kernel set for it stands.
        field & watch::WATCHED
    } else {
        0
    };
    watched | execs << watch::EXECS_SHIFT
}

impl Drop for WatchMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe {
            libc::munmap(
                self.words.as_ptr() as *mut libc::c_void,
                self.len * size_of::<u64>(),
            )
        };
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod kernel_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn field(watched: bool, execs: u64) -> u64 {
        u64::from(watched) | execs << watch::EXECS_SHIFT
    }

    #[test]
    fn a_fork_decision_does_not_unwatch_a_child_that_has_exec_d_since() {
        assert_eq!(unwatched(field(true, 0)), Some(field(false, 0)));
        assert_eq!(unwatched(field(true, 1)), None);
        assert_eq!(unwatched(field(true, watch::EXECS_MAX)), None);
    }

    #[test]
    fn an_exec_decision_unwatches_only_when_no_later_exec_waits() {
        // The exec being decided is the last one.
        assert_eq!(exec_decided(field(true, 1), false), field(false, 0));
        assert_eq!(exec_decided(field(false, 1), true), field(true, 0));
        // A later exec (watched by the kernel) waits for its own decision.
        assert_eq!(exec_decided(field(true, 2), false), field(true, 1));
        assert_eq!(exec_decided(field(true, 1), false), field(false, 0));
        // Stuck at the maximum: it never unwatches again, and stays stuck.
        let stuck = field(true, watch::EXECS_MAX);
        assert_eq!(exec_decided(stuck, false), stuck);
        assert_eq!(exec_decided(field(false, watch::EXECS_MAX), true), stuck);
        // No exec counted (it happened before the probes): the decision applies.
        assert_eq!(exec_decided(field(true, 0), false), field(false, 0));
    }

    #[test]
    fn fields_of_neighbouring_pids_stay_apart() {
        let (w0, s0) = watch::slot(16);
        let (w1, s1) = watch::slot(31);
        assert_eq!((w0, s0), (1, 0));
        assert_eq!((w1, s1), (1, 60));
        assert_eq!(
            WATCH_WORDS as u64 * u64::from(watch::PER_WORD),
            4 * 1024 * 1024
        );
    }
}
