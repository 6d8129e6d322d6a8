//! The x86_64 syscall register layout: a syscall that just returned, its number, result and
//! arguments, read back from the saved user registers (the kernel does not modify them during
//! the syscall, so no `sys_enter` hook is needed).

use aya_ebpf::programs::RawTracePointContext;

use crate::kernel::read;

/// `struct pt_regs` offsets on x86_64 (arch ABI, stable).
const REGS_DI: usize = 112;
const REGS_SI: usize = 104;
const REGS_DX: usize = 96;
const REGS_R10: usize = 56;
const REGS_R8: usize = 72;
const REGS_R9: usize = 64;
pub const REGS_ORIG_AX: usize = 120;
/// `__USER_CS` (in `regs->cs`, two words after `orig_ax`): a 64-bit syscall. Anything else (`__USER32_CS`, 0x23) is an ia32 compat syscall
/// whose numbers and argument registers differ: not decoded (counted).
pub const USER_CS: u64 = 0x33;
/// Set in the syscall number of x32 syscalls; their numbers are the 64-bit ones otherwise.
pub const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// `orig_ax`, `ip` and `cs` of the current syscall (adjacent words): the dispatcher's
/// number and ABI check. With `bpf_task_pt_regs` (Linux 5.15; the `loop` build needs 5.17)
/// the registers are a BTF-typed pointer the program loads from directly, a few instructions;
/// else one `bpf_probe_read_kernel` from the tracepoint's `regs` argument.
#[inline(always)]
pub fn nr_ip_cs(ctx: &RawTracePointContext) -> Result<[u64; 3], i64> {
    #[cfg(not(feature = "bounded-loops"))]
    {
        let _ = ctx;
        // SAFETY: helpers without preconditions; `bpf_task_pt_regs` of the current task is
        // never null, and the verifier checks each load against `struct pt_regs`'s BTF.
        unsafe {
            use aya_ebpf::helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs};
            let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u64;
            let at = |off: usize| core::ptr::read_volatile(regs.byte_add(off));
            Ok([
                at(REGS_ORIG_AX),
                at(REGS_ORIG_AX + 8),
                at(REGS_ORIG_AX + 16),
            ])
        }
    }
    #[cfg(feature = "bounded-loops")]
    read::<[u64; 3]>(ctx.arg(0), REGS_ORIG_AX)
}

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
