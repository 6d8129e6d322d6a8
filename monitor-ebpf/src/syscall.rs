//! The `sys_exit` dispatcher (the register layout its handlers share is in [`crate::regs`]).
//!
//! One raw tracepoint on `sys_exit` (the cheapest hook that sees every syscall result) looks at
//! the syscall number, and only for the file and network syscalls of a watched process does it
//! tail-call a handler. Arguments are read back from the saved user registers, which the
//! kernel does not modify during the syscall, so no `sys_enter` hook is needed.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::{
    config::{counter, handler},
    syscalls::handler_for,
};

use crate::{
    maps::{SYSCALL_HANDLERS, count, count_err, is_watched, record_all},
    regs::{Syscall, USER_CS, X32_SYSCALL_BIT, nr_ip_cs},
};

/// Raw tracepoint `sys_exit`: `TP_PROTO(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    // Unless everything is recorded, most processes are not watched, and their watch bit (one
    // helper call and an array read) is cheaper than their registers (two helper calls in the
    // `loop` build, a `bpf_probe_read_kernel` in the `bounded` one): it is checked first.
    // Recording everything, only the agent is not watched: registers first. (`record_all` is
    // a load-time constant: the verifier prunes the other order.)
    let early = if record_all() {
        None
    } else {
        let Some(tgid) = watched_tgid() else {
            return 0;
        };
        Some(tgid)
    };
    let Ok([raw_nr, _ip, cs]) = nr_ip_cs(&ctx) else {
        return 0;
    };
    let nr = raw_nr & !X32_SYSCALL_BIT;
    let Some(slot) = handler_for(nr) else {
        return 0;
    };
    let Some(tgid) = early.or_else(watched_tgid) else {
        return 0;
    };
    if cs != USER_CS {
        count(counter::COMPAT_SKIPPED);
        return 0;
    }
    // Opens run inline (hottest path); the rest tail-calls, with constant indices so the JIT
    // turns each tail call into a direct jump.
    // SAFETY: on success control does not come back; on failure we count it.
    unsafe {
        match slot {
            handler::FILE_OPEN => {
                count_err(crate::file::try_open(Syscall::with_nr(&ctx, nr), tgid));
                return 0;
            }
            handler::FILE_OTHER => SYSCALL_HANDLERS.tail_call(&ctx, handler::FILE_OTHER),
            _ => SYSCALL_HANDLERS.tail_call(&ctx, handler::NET),
        }
    }
    count(counter::TAIL_CALL_FAILED);
    0
}

/// The current thread group, when its file and network activity is recorded.
#[inline(always)]
fn watched_tgid() -> Option<u32> {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    is_watched(tgid).then_some(tgid)
}
