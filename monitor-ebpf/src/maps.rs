//! Maps and load-time globals shared by every program.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, ProgramArray, RingBuf},
};
use monitor_common::{
    MAX_RECORD,
    config::{self, counter, handler, off},
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

/// Thread groups whose file and network activity is recorded (value unused). Children of a
/// watched process are watched from fork on; user space adds and removes entries.
#[map(name = "WATCHED")]
pub static WATCHED: HashMap<u32, u8> = HashMap::with_max_entries(65536, 0);

/// Handlers of the `sys_exit` dispatcher, indexed by [`handler`] constants.
#[map(name = "SYSCALL_HANDLERS")]
pub static SYSCALL_HANDLERS: ProgramArray = ProgramArray::with_max_entries(handler::COUNT, 0);

/// Kernel struct member offsets, filled from the running kernel's BTF at load time.
#[unsafe(no_mangle)]
static OFFSETS: [u32; off::COUNT] = [u32::MAX; off::COUNT];

/// Non-zero: record file and network activity of every process, not only watched ones.
#[unsafe(no_mangle)]
static RECORD_ALL: u8 = 0;

/// The agent's own thread-group id: its activity is never recorded (no feedback loops).
#[unsafe(no_mangle)]
static AGENT_TGID: u32 = 0;

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
    record_all() || WATCHED.get_ptr(tgid).is_some()
}

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, programs do not nest on a CPU.
        unsafe { *c += 1 };
    }
}
