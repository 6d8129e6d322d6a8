//! The monitor's kernel programs. One probe family per module; this file only declares them.
//!
//! Hooks (all but the LSM ones load on kernels without kprobes, fentry or BPF LSM):
//! - raw tracepoints `sched_process_exec`, `sched_process_fork`, `sched_process_exit`
//!   ([`process`]);
//! - raw tracepoint `sys_exit` ([`syscall`]), a dispatcher that tail-calls the file ([`file`])
//!   and network ([`net`]) handlers for the syscalls they cover, for watched processes only;
//! - cgroup `sock_addr` (connect4/6, sendmsg4/6) and `cgroup_skb/ingress` hooks on the cgroup v2
//!   root ([`dns`]): DNS answers received by watched processes, and enforcement of
//!   enforce-mode profiles' network allowlists ([`enforce`], with `bind4/6`);
//! - BPF LSM `file_open` and `bprm_check_security` ([`lsm`]), loaded only where the kernel has
//!   BPF LSM active: opens and execs outside an enforce-mode profile fail with `EPERM`.
#![no_std]
#![no_main]
// Atomic operations on the shared watch array (`maps::set_watched`, `maps::exec_seen`).
#![feature(core_intrinsics)]
#![allow(
    internal_features,
    reason = "core_intrinsics: BPF has no AtomicU64::fetch_or"
)]

mod dns;
mod emit;
mod enforce;
mod file;
mod floor;
mod kernel;
#[cfg(not(feature = "bounded-loops"))]
mod lsm;
mod maps;
mod net;
mod process;
mod regs;
mod syscall;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
