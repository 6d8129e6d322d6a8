//! The `sys_exit` dispatcher and the x86_64 syscall register layout its handlers share.
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
    kernel::read,
    maps::{SYSCALL_HANDLERS, count, count_err, is_watched},
};

/// `struct pt_regs` offsets on x86_64 (arch ABI, stable).
const REGS_DI: usize = 112;
const REGS_SI: usize = 104;
const REGS_DX: usize = 96;
const REGS_R10: usize = 56;
const REGS_R8: usize = 72;
const REGS_R9: usize = 64;
const REGS_ORIG_AX: usize = 120;
/// `__USER_CS` (in `regs->cs`, two words after `orig_ax`): a 64-bit syscall. Anything else (`__USER32_CS`, 0x23) is an ia32 compat syscall
/// whose numbers and argument registers differ: not decoded (counted).
const USER_CS: u64 = 0x33;
/// Set in the syscall number of x32 syscalls; their numbers are the 64-bit ones otherwise.
const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// A syscall that just returned: number, result and arguments.
pub struct Syscall {
    pub nr: u64,
    pub ret: i64,
    regs: *const u8,
}

impl Syscall {
    /// Reads the syscall from raw tracepoint `sys_exit` arguments:
    /// `TP_PROTO(struct pt_regs *regs, long ret)`.
    #[inline(always)]
    pub fn from_ctx(ctx: &RawTracePointContext) -> Result<Self, i64> {
        let regs: *const u8 = ctx.arg(0);
        let ret: i64 = ctx.arg(1);
        let nr: u64 = read::<u64>(regs, REGS_ORIG_AX)? & !X32_SYSCALL_BIT;
        Ok(Self { nr, ret, regs })
    }

    /// A syscall whose number the caller already read.
    #[inline(always)]
    pub fn with_nr(ctx: &RawTracePointContext, nr: u64) -> Self {
        Self {
            nr,
            ret: ctx.arg(1),
            regs: ctx.arg(0),
        }
    }

    /// Syscall argument `i` (0-based) as passed in registers.
    #[inline(always)]
    pub fn arg(&self, i: usize) -> u64 {
        let off = match i {
            0 => REGS_DI,
            1 => REGS_SI,
            2 => REGS_DX,
            3 => REGS_R10,
            4 => REGS_R8,
            _ => REGS_R9,
        };
        read(self.regs, off).unwrap_or(0)
    }
}

/// Raw tracepoint `sys_exit`: `TP_PROTO(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    // orig_ax, ip and cs are adjacent: one read serves the dispatch and the ABI check.
    let Ok([raw_nr, _ip, cs]) = read::<[u64; 3]>(regs, REGS_ORIG_AX) else {
        return 0;
    };
    let nr = raw_nr & !X32_SYSCALL_BIT;
    let Some(slot) = handler_for(nr) else {
        return 0;
    };
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_watched(tgid) {
        return 0;
    }
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
                count_err(crate::file::try_open(Syscall::with_nr(&ctx, nr)));
                return 0;
            }
            handler::FILE_OTHER => SYSCALL_HANDLERS.tail_call(&ctx, handler::FILE_OTHER),
            _ => SYSCALL_HANDLERS.tail_call(&ctx, handler::NET),
        }
    }
    count(counter::TAIL_CALL_FAILED);
    0
}
