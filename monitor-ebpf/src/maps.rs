//! Maps and load-time globals shared by every program.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use core::intrinsics::{AtomicOrdering, atomic_xadd};
#[cfg(not(feature = "bounded-loops"))]
use core::intrinsics::{atomic_and, atomic_or};

use monitor_common::{
    MAX_RECORD, OpenKey, OpenSeen,
    config::{self, WATCH_WORDS, counter, handler, off, switch, watch},
};

/// Scratch space for one event record, one per CPU (programs do not nest on a CPU).
#[repr(C)]
pub struct Scratch {
    pub buf: [u8; MAX_RECORD + config::DATA_SLACK],
}

/// Every event record goes here. Size set by user space at load (`--ring-buffer-size`).
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters, indexed by [`counter`] constants; summed by user space.
#[map(name = "COUNTERS")]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU scratch record.
#[map(name = "SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Per thread group, whether its file and network activity is recorded, and how many of its
/// execs user space has yet to decide about (layout: [`watch`]). An array (inlined lookup, no hashing) because every syscall of every
/// process checks it; memory-mappable so user space sets bits with atomics too. Children of a
/// watched process are watched from fork on.
#[map(name = "WATCHED")]
pub static WATCHED: Array<u64> = Array::with_max_entries(WATCH_WORDS, BPF_F_MMAPABLE);

/// Recently reported opens, for in-kernel dedupe of repeats (LRU: old entries just fall out).
#[map(name = "OPENS_SEEN")]
pub static OPENS_SEEN: LruHashMap<OpenKey, OpenSeen> = LruHashMap::with_max_entries(65536, 0);

/// Ring buffer drops per thread group and family: key `tgid << 2 | family` (0 process, 1
/// file, 2 network), the count as value. Written only when a record is dropped.
#[map(name = "DROPS_BY_PROCESS")]
pub static DROPS_BY_PROCESS: LruHashMap<u64, u64> =
    LruHashMap::with_max_entries(counter::DROPS_BY_PROCESS_MAX, 0);

/// Counts a dropped record of `family` for thread group `tgid` (the record's own: the DNS
/// hook runs in whatever context the packet arrives in, and may not ask for the current one
/// before Linux 6.10).
#[inline(always)]
pub fn count_process_drop(family: u32, tgid: u32) {
    let key = (u64::from(tgid) << 2) | u64::from(family & 3);
    // Two tries: an insert racing another CPU's finds the entry on the second lookup.
    for _ in 0..2 {
        if let Some(n) = DROPS_BY_PROCESS.get_ptr_mut(key) {
            // SAFETY: map value pointer from a successful lookup, shared between CPUs.
            unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(n, 1) };
            return;
        }
        if DROPS_BY_PROCESS.insert(key, 1, BPF_NOEXIST).is_ok() {
            return;
        }
    }
}

/// `BPF_NOEXIST`.
const BPF_NOEXIST: u64 = 1;

/// Per thread group, the generation of its last dedupe reset: opens reported before it are
/// reported again on their next repeat (user space resets a workload when it starts serving,
/// so the serving phase sees every file it uses). Written by user space only.
#[map(name = "OPENS_RESET")]
pub static OPENS_RESET: LruHashMap<u32, u32> = LruHashMap::with_max_entries(4096, 0);

/// The current dedupe reset generation.
#[inline(always)]
pub fn reset_gen() -> u32 {
    SWITCHES.get(switch::RESET_GEN).copied().unwrap_or(0)
}

/// Handlers of the `sys_exit` dispatcher, indexed by [`handler`] constants.
#[map(name = "SYSCALL_HANDLERS")]
pub static SYSCALL_HANDLERS: ProgramArray = ProgramArray::with_max_entries(handler::COUNT, 0);

/// Kernel struct member offsets, filled from the running kernel's BTF at load time.
#[unsafe(no_mangle)]
static OFFSETS: [u32; off::COUNT] = [u32::MAX; off::COUNT];

/// Non-zero: record file and network activity of every process, not only watched ones.
#[unsafe(no_mangle)]
static RECORD_ALL: u8 = 0;

/// Switches user space flips while the programs run, indexed by [`switch`] constants.
#[map(name = "SWITCHES")]
pub static SWITCHES: Array<u32> = Array::with_max_entries(switch::COUNT, 0);

/// Every exec'ing process is watched from its first instruction until user space has matched
/// it against the workload profiles and learning sessions and cleared it if none applies (so a
/// profiled server's start-up, before user space sees its exec, is recorded too).
#[inline(always)]
pub fn watch_on_exec() -> bool {
    SWITCHES.get(switch::WATCH_ON_EXEC).is_some_and(|v| *v != 0)
}

/// Whether the agent is stopping (`switch::STOPPED`).
#[inline(always)]
pub fn stopped() -> bool {
    SWITCHES.get(switch::STOPPED).is_some_and(|v| *v != 0)
}

/// Whether the BPF LSM hooks judge opens and execs (`switch::LSM`).
#[inline(always)]
pub fn lsm_enforces() -> bool {
    SWITCHES.get(switch::LSM).is_some_and(|v| *v != 0)
}

/// Whether user space has put any process under enforcement (`switch::ENFORCING`).
#[inline(always)]
pub fn enforcing() -> bool {
    SWITCHES.get(switch::ENFORCING).is_some_and(|v| *v != 0)
}

/// The agent's own thread-group id: its activity is never recorded (no feedback loops).
#[unsafe(no_mangle)]
static AGENT_TGID: u32 = 0;

/// Identical opens within this window (jiffies) are folded into the first; 0 disables dedupe.
#[unsafe(no_mangle)]
static DEDUPE_WINDOW_JIFFIES: u64 = 0;

#[inline(always)]
pub fn dedupe_window_jiffies() -> u64 {
    // SAFETY: as in `offset`.
    unsafe { core::ptr::read_volatile(&DEDUPE_WINDOW_JIFFIES) }
}

/// Offset of a kernel struct member, as resolved at load time.
#[inline(always)]
pub fn offset(slot: usize) -> usize {
    // SAFETY: reading a global the loader wrote before load; volatile so the compiler does not
    // constant-fold the initialiser.
    unsafe { core::ptr::read_volatile(&OFFSETS[slot]) as usize }
}

#[inline(always)]
pub fn record_all() -> bool {
    // SAFETY: as in `offset`.
    unsafe { core::ptr::read_volatile(&RECORD_ALL) != 0 }
}

#[inline(always)]
pub fn agent_tgid() -> u32 {
    // SAFETY: as in `offset`.
    unsafe { core::ptr::read_volatile(&AGENT_TGID) }
}

/// Whether file/network activity of thread group `tgid` is recorded.
#[inline(always)]
pub fn is_watched(tgid: u32) -> bool {
    if tgid == agent_tgid() {
        return false;
    }
    if record_all() {
        return true;
    }
    let (word, shift) = watch::slot(tgid);
    match WATCHED.get(word) {
        Some(w) => (*w >> shift) & watch::WATCHED != 0,
        None => false,
    }
}

/// `BPF_F_MMAPABLE`.
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// Marks `tgid` as watched (a child of a watched process, at fork).
#[inline(always)]
pub fn set_watched(tgid: u32) {
    let (word, shift) = watch::slot(tgid);
    if let Some(w) = WATCHED.get_ptr_mut(word) {
        // SAFETY: map value pointer from a successful lookup, 8-byte aligned; shared with
        // other CPUs and user space, hence atomic read-modify-write (BPF_ATOMIC).
        unsafe { set_bits(w, watch::WATCHED << shift) };
    }
}

/// Sets `bits` in `*w` atomically (BPF_ATOMIC `or`, Linux 5.12).
///
/// SAFETY: `w` is a valid, 8-byte aligned map value pointer.
#[cfg(not(feature = "bounded-loops"))]
#[inline(always)]
unsafe fn set_bits(w: *mut u64, bits: u64) {
    // SAFETY: as the caller promises.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(w, bits) };
}

/// Kernels before 5.12 have only atomic add (BPF_XADD): add the bits not set yet. Only this
/// thread group's own fork and exec set its bits (never both at once) and user space only
/// clears them, so bits read as clear stay clear until the add.
///
/// SAFETY: as above.
#[cfg(feature = "bounded-loops")]
#[inline(always)]
unsafe fn set_bits(w: *mut u64, bits: u64) {
    // SAFETY: as the caller promises.
    unsafe {
        let missing = bits & !core::ptr::read_volatile(w);
        if missing != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(w, missing);
        }
    }
}

/// Clears `mask` in `*w` atomically (BPF_ATOMIC `and`, Linux 5.12).
///
/// SAFETY: as for `set_bits`.
#[cfg(not(feature = "bounded-loops"))]
#[inline(always)]
unsafe fn clear_bits(w: *mut u64, mask: u64) {
    // SAFETY: as the caller promises.
    unsafe { atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(w, !mask) };
}

/// Kernels before 5.12: subtract the bits that are set (atomic add of their negation). Exact
/// unless user space clears one of them between the read and the add (it decides about an
/// exec of a process at the moment that process exits): then the field borrows from the next
/// pid's. The `loop` build, for 5.17 and later, has no such window.
///
/// SAFETY: as for `set_bits`.
#[cfg(feature = "bounded-loops")]
#[inline(always)]
unsafe fn clear_bits(w: *mut u64, mask: u64) {
    // SAFETY: as the caller promises.
    unsafe {
        let set = mask & core::ptr::read_volatile(w);
        if set != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(w, set.wrapping_neg());
        }
    }
}

/// At exec: counts one more exec user space has to decide about (unless the count is stuck at
/// its maximum), then marks `tgid` as watched when `watch` (watch-on-exec). The count goes up
/// first, so user space, which clears the watched bit only when the count says nothing newer
/// happened, cannot clear it for this image.
#[inline(always)]
pub fn exec_seen(tgid: u32, watch: bool) {
    let (word, shift) = watch::slot(tgid);
    let Some(w) = WATCHED.get_ptr_mut(word) else {
        return;
    };
    // SAFETY: as in `set_watched`. Only this thread group's exec raises its count (execs of one
    // thread group are serialised), and user space only lowers it, never from the maximum: the
    // count read here can only have gone down since, so the add cannot carry into the next
    // pid's field.
    unsafe {
        let field = (core::ptr::read_volatile(w) >> shift) & watch::FIELD;
        if watch::execs(field) < watch::EXECS_MAX {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                w,
                1 << (shift + watch::EXECS_SHIFT),
            );
        }
        if watch {
            set_bits(w, watch::WATCHED << shift);
        }
    }
}

/// At exit: clears `tgid`'s field (not watched, no execs pending) for the next owner of the pid.
#[inline(always)]
pub fn forget_watched(tgid: u32) {
    let (word, shift) = watch::slot(tgid);
    if let Some(w) = WATCHED.get_ptr_mut(word) {
        // SAFETY: as in `set_watched`.
        unsafe { clear_bits(w, watch::FIELD << shift) };
    }
}

/// Counts a handler that gave up on a failed kernel read (the event is lost: counted, never
/// silent).
#[inline(always)]
pub fn count_err<T>(r: Result<T, i64>) {
    if r.is_err() {
        count(counter::READ_ERROR);
    }
}

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, programs do not nest on a CPU.
        unsafe { *c += 1 };
    }
}
