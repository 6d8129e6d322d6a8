//! Empty programs on the sensor's hooks, for the benchmark's cost floor: what attaching
//! anything at all to these tracepoints costs. Never attached by `monitor run`.

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext},
};

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

/// The BTF-typed (`tp_btf`) form of the `sys_exit` hook, doing nothing (`monitor floor
/// --tp-btf`): whether it costs less than the raw tracepoint.
#[btf_tracepoint(function = "sys_exit")]
pub fn floor_btf_sys_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}
