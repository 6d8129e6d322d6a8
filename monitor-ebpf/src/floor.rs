//! Empty programs on the sensor's hooks, for the benchmark's cost floor: what attaching
//! anything at all to these tracepoints costs. Never attached by `monitor run`.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

/// Raw tracepoint `sys_exit`, doing nothing.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn floor_sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Raw tracepoint `sched_process_exec`, doing nothing.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn floor_exec(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Raw tracepoint `sched_process_fork`, doing nothing.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn floor_fork(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Raw tracepoint `sched_process_exit`, doing nothing.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn floor_exit(_ctx: RawTracePointContext) -> i32 {
    0
}
