//! Enforcement through BPF LSM hooks, where the kernel has BPF LSM active (user space loads
//! these programs only then, and only in the build with `bpf_loop`).
//!
//! An open or an exec of a process under an enforce-mode profile that its slot does not allow
//! fails with `EPERM` before it has an effect: `file_open` runs before the new file is
//! installed in the fd table, `bprm_check_security` before the old image is replaced. The
//! process lives on and sees the error, instead of being killed at the syscall's return (the
//! tracepoints' way, [`crate::enforce::judge_path`], which judges nothing while these hooks
//! do). The same judgement (`PATH_RULES`) as the tracepoints: one set of maps, one verdict.
//!
//! A refused open is reported by the `sys_exit` open handler (flagged denied); a refused exec
//! never reaches `sched_process_exec`, so its record (flagged denied) is sent from here.
//!
//! Unlike tracepoints, LSM programs can be preempted (on kernels built with full preemption):
//! another task's program may run on the same CPU meanwhile. So these hooks have a scratch
//! space of their own (never the tracepoints'), taken with a per-CPU busy flag: a hook that
//! finds it taken judges nothing (counted as undecided; user space still alerts).

use core::intrinsics::{AtomicOrdering, atomic_xchg};

use aya_ebpf::{
    helpers::generated::bpf_get_current_pid_tgid,
    macros::{lsm, map},
    maps::PerCpuArray,
    programs::LsmContext,
};
use monitor_common::{
    EventKind, ExecEvent, FFLAGS_EXEC, FLAG_DENIED,
    config::{counter, off},
    enforce::ACCESS_EXEC,
};

use crate::{
    emit::Record,
    enforce::{deny, need_of, slot_of, verdict},
    kernel::{current_task, read, read_ptr},
    maps::{Scratch, count, offset},
};

/// The LSM hooks' scratch record, one per CPU.
#[map(name = "LSM_SCRATCH")]
static LSM_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU, whether an LSM hook holds `LSM_SCRATCH` (1) or not (0).
#[map(name = "LSM_BUSY")]
static LSM_BUSY: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's `LSM_SCRATCH`, held until dropped.
struct Held {
    busy: *mut u64,
    base: *mut u8,
}

impl Held {
    #[inline(always)]
    fn take() -> Option<Self> {
        let busy = LSM_BUSY.get_ptr_mut(0)?;
        // SAFETY: a per-CPU map value; the exchange is atomic against a hook that preempted
        // this one on the same CPU.
        if unsafe { atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(busy, 1) } != 0 {
            count(counter::ENFORCE_UNDECIDED);
            return None;
        }
        // Dropped (the flag cleared) if the scratch lookup fails.
        let mut held = Self {
            busy,
            base: core::ptr::null_mut(),
        };
        held.base = LSM_SCRATCH.get_ptr_mut(0)? as *mut u8;
        Some(held)
    }
}

impl Drop for Held {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: the flag this hook set in `take`; only its holder clears it, so a plain
        // store does (BPF has no atomic store).
        unsafe { core::ptr::write_volatile(self.busy, 0) };
    }
}

/// `-EPERM`: what a refusing LSM hook returns.
const EPERM: i32 = -1;

/// `file_open(struct file *file)`, then the verdict of earlier LSM programs.
#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(1);
    if earlier != 0 {
        return earlier;
    }
    file_open(ctx.arg(0))
}

#[inline(always)]
fn file_open(file: *const u8) -> i32 {
    // SAFETY: helper without preconditions.
    let id = unsafe { bpf_get_current_pid_tgid() };
    let Some(slot) = slot_of((id >> 32) as u32) else {
        return 0;
    };
    // The kernel's own opens for an exec (the binary, the ELF interpreter, a script's
    // interpreter): the exec check judges what runs, as the tracepoints do, and a binary
    // `allow.exec` names need not be in `allow.read`.
    let fflags: u32 = read(file, offset(off::FILE_F_FLAGS)).unwrap_or(0);
    if fflags & FFLAGS_EXEC != 0 {
        return 0;
    }
    let fmode: u32 = read(file, offset(off::FILE_F_MODE)).unwrap_or(0);
    let need = need_of(fmode);
    let Some(held) = Held::take() else {
        return 0;
    };
    let mut scratch = Record::bare_at(held.base);
    let w = scratch
        .data
        .push_path(file.wrapping_add(offset(off::FILE_F_PATH)));
    if verdict(scratch.data.base, w.s, !w.truncated, slot, need) != Some(false) {
        return 0;
    }
    deny(id);
    EPERM
}

/// `bprm_check_security(struct linux_binprm *bprm)`, then the verdict of earlier LSM
/// programs. Runs once per binary format round: for a script first (its `#!` line names the
/// interpreter), then for the interpreter.
#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(1);
    if earlier != 0 {
        return earlier;
    }
    bprm_check(ctx.arg(0))
}

#[inline(always)]
fn bprm_check(bprm: *const u8) -> i32 {
    // SAFETY: helper without preconditions.
    let id = unsafe { bpf_get_current_pid_tgid() };
    let Some(slot) = slot_of((id >> 32) as u32) else {
        return 0;
    };
    // A script: the next round checks its interpreter, which is what runs (and what the
    // tracepoint judges where there is no BPF LSM).
    if read::<[u8; 2]>(bprm, offset(off::BPRM_BUF)).is_ok_and(|h| h == *b"#!") {
        return 0;
    }
    let Ok(file) = read_ptr(bprm, off::BPRM_FILE) else {
        return 0;
    };
    let task = current_task();
    let Some(held) = Held::take() else {
        return 0;
    };
    let mut rec = Record::new_at(held.base, EventKind::Exec, task);
    let w = rec
        .data
        .push_path(file.wrapping_add(offset(off::FILE_F_PATH)));
    if verdict(rec.data.base, w.s, !w.truncated, slot, ACCESS_EXEC) != Some(false) {
        return 0;
    }
    let p = rec.payload::<ExecEvent>();
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).exe = w.s;
        (*p).old_pid = (id >> 32) as u32;
        if let Ok(name) = read_ptr(bprm, off::BPRM_FILENAME) {
            (*p).filename = rec.data.push_kernel_str(name);
        }
        if let Ok(cred) = read_ptr(task, off::TASK_REAL_CRED) {
            (*p).euid = read::<u32>(cred, offset(off::CRED_EUID)).unwrap_or(u32::MAX);
            (*p).egid = read::<u32>(cred, offset(off::CRED_EGID)).unwrap_or(u32::MAX);
        }
        if let Ok(fs) = read_ptr(task, off::TASK_FS) {
            let cwd = rec.data.push_path(fs.wrapping_add(offset(off::FS_PWD)));
            (*p).cwd = cwd.s;
            rec.note_truncation(cwd.truncated);
        }
    }
    rec.set_flag(FLAG_DENIED);
    rec.send();
    // Counted, not marked: the record above is the report (no `sys_exit` handler reads a
    // mark for execve).
    count(counter::ENFORCE_BLOCKED);
    EPERM
}
