//! Process lifecycle: exec, fork (new processes, not threads) and exit of the last thread.
//! These are always reported (the agent's process table depends on them), whatever is watched.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use monitor_common::{
    EventKind, ExecEvent, ExitEvent, FLAG_ARGV_TRUNCATED, ForkEvent,
    config::{ARGV_MAX, off},
    enforce::ACCESS_EXEC,
};

use crate::{
    emit::Record,
    kernel::{current_task, read, read_ptr},
    maps::{
        agent_tgid, count_err, exec_seen, forget_watched, is_watched, offset, set_watched,
        watch_on_exec,
    },
};

/// Raw tracepoint `sched_process_exec`:
/// `TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`.
/// Runs in the new image, after the point of no return; `current` is `p`.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    count_err(try_exec(&ctx));
    0
}

fn try_exec(ctx: &RawTracePointContext) -> Result<(), i64> {
    let task = current_task();
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid != agent_tgid() {
        exec_seen(tgid, watch_on_exec());
    }
    let old_pid: u64 = ctx.arg(1);
    let bprm: *const u8 = ctx.arg(2);
    let Some(mut rec) = Record::new(EventKind::Exec, task) else {
        return Ok(());
    };
    let p = rec.payload::<ExecEvent>();
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).old_pid = old_pid as u32;
        if let Ok(cred) = read_ptr(task, off::TASK_REAL_CRED) {
            (*p).euid = read::<u32>(cred, offset(off::CRED_EUID)).unwrap_or(u32::MAX);
            (*p).egid = read::<u32>(cred, offset(off::CRED_EGID)).unwrap_or(u32::MAX);
        }
        if let Ok(name) = read_ptr(bprm, off::BPRM_FILENAME) {
            (*p).filename = rec.data.push_kernel_str(name);
        }
        if let Ok(file) = read_ptr(bprm, off::BPRM_FILE) {
            let w = rec
                .data
                .push_path(file.wrapping_add(offset(off::FILE_F_PATH)));
            (*p).exe = w.s;
            rec.note_truncation(w.truncated);
            crate::enforce::judge_path(&rec, w.s, !w.truncated, ACCESS_EXEC);
        }
        if let Ok(fs) = read_ptr(task, off::TASK_FS) {
            let w = rec.data.push_path(fs.wrapping_add(offset(off::FS_PWD)));
            (*p).cwd = w.s;
            rec.note_truncation(w.truncated);
        }
        if let Ok(mm) = read_ptr(task, off::TASK_MM) {
            let start: u64 = read(mm, offset(off::MM_ARG_START)).unwrap_or(0);
            let end: u64 = read(mm, offset(off::MM_ARG_END)).unwrap_or(0);
            if end > start {
                let len = (end - start) as usize;
                if len > ARGV_MAX {
                    rec.set_flag(FLAG_ARGV_TRUNCATED);
                }
                (*p).argv = rec.data.push_user_bytes(start as *const u8, len, ARGV_MAX);
            }
        }
    }
    rec.send();
    Ok(())
}

/// Raw tracepoint `sched_process_fork`:
/// `TP_PROTO(struct task_struct *parent, struct task_struct *child)`. `current` is the parent.
/// New threads (child pid != child tgid) are ignored.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    count_err(try_fork(&ctx));
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let child: *const u8 = ctx.arg(1);
    let child_pid: u32 = read(child, offset(off::TASK_PID))?;
    let child_tgid: u32 = read(child, offset(off::TASK_TGID))?;
    if child_pid != child_tgid {
        return Ok(());
    }
    let task = current_task();
    let parent_tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if parent_tgid == agent_tgid() {
        return Ok(());
    }
    if is_watched(parent_tgid) {
        set_watched(child_tgid);
    }
    crate::enforce::inherit(parent_tgid, child_tgid);
    let Some(rec) = Record::new(EventKind::Fork, task) else {
        return Ok(());
    };
    let p = rec.payload::<ForkEvent>();
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).child_pid = child_tgid;
        (*p).child_start_time_ns = read(child, offset(off::TASK_START_BOOTTIME)).unwrap_or(0);
    }
    rec.send();
    Ok(())
}

/// Raw tracepoint `sched_process_exit`: `TP_PROTO(struct task_struct *p, ...)`; `current` is
/// the exiting thread. Reported once per process: when `signal->live` has dropped to zero,
/// i.e. for the last thread of the group.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    count_err(try_exit());
    0
}

fn try_exit() -> Result<(), i64> {
    let task = current_task();
    let signal = read_ptr(task, off::TASK_SIGNAL)?;
    let live: i32 = read(signal, offset(off::SIGNAL_LIVE))?;
    if live != 0 {
        return Ok(());
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    forget_watched(tgid);
    crate::enforce::forget(tgid);
    if tgid == agent_tgid() {
        return Ok(());
    }
    let Some(rec) = Record::new(EventKind::Exit, task) else {
        return Ok(());
    };
    let p = rec.payload::<ExitEvent>();
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).exit_code = read(task, offset(off::TASK_EXIT_CODE)).unwrap_or(0);
    }
    rec.send();
    Ok(())
}
