//! Building and sending event records: the per-CPU scratch record, the common header, and the
//! variable-size ring-buffer output (only the used part of the data area is copied).

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::generated::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
};
use core::ffi::c_void;
use monitor_common::{
    DATA_OFFSET, EventHeader, EventKind, FLAG_PATH_TRUNCATED, PAYLOAD_OFFSET,
    config::{DATA_SIZE, counter, off},
};

use crate::{
    kernel::{Data, read, read_ptr},
    maps::{EVENTS, SCRATCH, count, offset},
};

/// Fills `hdr` for the current task (`task` is `current`): kind, time, ids, credentials,
/// cgroup, parent, process start time, comm. `size` and `flags` start at 0.
///
/// # Safety
/// `hdr` must point to writable memory for an `EventHeader` (a map value or the stack).
#[inline(always)]
pub unsafe fn fill_header(hdr: *mut EventHeader, kind: EventKind, task: *const u8) {
    // SAFETY: helpers without preconditions; `hdr` is writable (caller's contract).
    unsafe {
        let pid_tgid = bpf_get_current_pid_tgid();
        let uid_gid = bpf_get_current_uid_gid();
        (*hdr).kind = kind as u32;
        (*hdr).size = 0;
        (*hdr).ktime_ns = bpf_ktime_get_boot_ns();
        (*hdr).pid = (pid_tgid >> 32) as u32;
        (*hdr).tid = pid_tgid as u32;
        (*hdr).uid = uid_gid as u32;
        (*hdr).gid = (uid_gid >> 32) as u32;
        (*hdr).flags = 0;
        (*hdr).cgroup_id = bpf_get_current_cgroup_id();
        (*hdr).ppid = read_ptr(task, off::TASK_REAL_PARENT)
            .and_then(|p| read::<u32>(p, offset(off::TASK_TGID)))
            .unwrap_or(0);
        (*hdr).start_time_ns = read_ptr(task, off::TASK_GROUP_LEADER)
            .and_then(|l| read::<u64>(l, offset(off::TASK_START_BOOTTIME)))
            .unwrap_or(0);
        let comm = (*hdr).comm.as_mut_ptr();
        if bpf_get_current_comm(comm as *mut c_void, 16) < 0 {
            // Two 8-byte stores (`comm` sits at offset 56 of the header): a plain `[0; 16]`
            // assignment can become a call to `memset`, which BPF programs do not have.
            let words = comm as *mut u64;
            core::ptr::write_volatile(words, 0);
            core::ptr::write_volatile(words.add(1), 0);
        }
    }
}

/// Sends `size` bytes at `base` (a complete record) to the ring buffer, waking the reader only
/// once a batch has accumulated (it also polls on a short timer, so a lone event waits at most
/// one poll period). Counts the record as emitted or dropped.
///
/// # Safety
/// `base..base + size` must be readable.
#[inline(always)]
pub unsafe fn output(base: *const u8, size: usize) {
    if crate::maps::stopped() {
        count(counter::AFTER_STOP);
        return;
    }
    // SAFETY: the caller's contract.
    let record = unsafe { core::slice::from_raw_parts(base, size) };
    let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<[u8]>(record, flags as u64).is_err() {
        count(counter::RINGBUF_DROP);
        // SAFETY: every record starts with its header, whose first field is the kind.
        let family = unsafe { core::ptr::read(base as *const u32) } / 100;
        if family <= counter::RINGBUF_DROP_NET - counter::RINGBUF_DROP_PROCESS {
            count(counter::RINGBUF_DROP_PROCESS + family);
            // SAFETY: as above: the header's pid field.
            let tgid = unsafe {
                core::ptr::read_unaligned(
                    base.add(core::mem::offset_of!(EventHeader, pid)) as *const u32
                )
            };
            crate::maps::count_process_drop(family, tgid);
        }
    } else {
        count(counter::EMITTED);
    }
}

/// Unread bytes in the ring buffer above which a record wakes the reader.
const WAKEUP_BYTES: u64 = 256 * 1024;

/// An event under construction in the per-CPU scratch record.
pub struct Record {
    pub base: *mut u8,
    pub data: Data,
}

impl Record {
    /// Takes this CPU's scratch record and fills the header for the current task.
    #[inline(always)]
    pub fn new(kind: EventKind, task: *const u8) -> Option<Self> {
        let base = SCRATCH.get_ptr_mut(0)? as *mut u8;
        Some(Self::new_at(base, kind, task))
    }

    /// A record in the scratch space at `base` (a [`crate::maps::Scratch`]), header filled.
    #[inline(always)]
    pub fn new_at(base: *mut u8, kind: EventKind, task: *const u8) -> Self {
        // SAFETY: the header and payload live in the scratch record.
        unsafe {
            fill_header(base as *mut EventHeader, kind, task);
            // Clear the payload area: payloads are partly filled on error paths.
            let payload =
                base.add(PAYLOAD_OFFSET) as *mut [u64; (DATA_OFFSET - PAYLOAD_OFFSET) / 8];
            *payload = [0; (DATA_OFFSET - PAYLOAD_OFFSET) / 8];
        }
        Self {
            base,
            data: Data {
                base: base.wrapping_add(DATA_OFFSET),
                used: 0,
            },
        }
    }

    /// The scratch space at `base` with no header filled: a data area for a path that is
    /// judged, not sent (by the BPF LSM hooks, which the `bounded-loops` build has not).
    #[cfg(not(feature = "bounded-loops"))]
    #[inline(always)]
    pub fn bare_at(base: *mut u8) -> Self {
        Self {
            base,
            data: Data {
                base: base.wrapping_add(DATA_OFFSET),
                used: 0,
            },
        }
    }

    /// The payload, typed.
    #[inline(always)]
    pub fn payload<T>(&self) -> *mut T {
        self.base.wrapping_add(PAYLOAD_OFFSET) as *mut T
    }

    #[inline(always)]
    pub fn set_flag(&self, flag: u32) {
        // SAFETY: header lives in the scratch record.
        unsafe { (*(self.base as *mut EventHeader)).flags |= flag };
    }

    #[inline(always)]
    pub fn note_truncation(&self, truncated: bool) {
        if truncated {
            self.set_flag(FLAG_PATH_TRUNCATED);
            count(counter::PATH_TRUNCATED);
        }
    }

    /// Sends header + payload + the used part of the data area. Counts a drop when the ring
    /// buffer is full.
    #[inline(always)]
    pub fn send(self) {
        let mut used = self.data.used;
        if used > DATA_SIZE {
            used = DATA_SIZE;
        }
        let size = DATA_OFFSET + used;
        // SAFETY: header lives in the scratch record; `size` is at most the record size.
        unsafe {
            (*(self.base as *mut EventHeader)).size = size as u32;
            output(self.base, size);
        }
    }
}
