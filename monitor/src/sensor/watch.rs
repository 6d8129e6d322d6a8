//! The kernel's watch bitmap, memory-mapped: one bit per pid saying whether that process's file
//! and network activity is recorded. The kernel sets children's bits at fork and clears bits at
//! exit; user space sets bits for processes a profile selects. Both sides use atomic bit
//! operations on the same memory, so neither can lose the other's update.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use monitor_common::config::WATCH_WORDS;

/// Memory-mapped `WATCHED` array.
pub struct WatchBitmap {
    words: NonNull<AtomicU64>,
    len: usize,
    /// Keeps the map fd open for as long as the mapping lives.
    _map: MapData,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Send for WatchBitmap {}

impl WatchBitmap {
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

    fn word(&self, pid: u32) -> Option<&AtomicU64> {
        let i = (pid >> 6) as usize;
        // SAFETY: `i < len` checked; the mapping lives as long as `self`.
        (i < self.len).then(|| unsafe { &*self.words.as_ptr().add(i) })
    }

    /// Starts or stops recording `pid`'s activity.
    pub fn set(&self, pid: u32, on: bool) {
        if let Some(w) = self.word(pid) {
            let bit = 1u64 << (pid & 63);
            if on {
                w.fetch_or(bit, Ordering::Relaxed);
            } else {
                w.fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for WatchBitmap {
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
