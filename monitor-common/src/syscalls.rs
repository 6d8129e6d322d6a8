//! x86_64 syscall numbers the sensor dispatches on (arch/x86/entry/syscalls/syscall_64.tbl).
//! These are ABI and never change for an architecture.

pub const OPEN: u64 = 2;
pub const CREAT: u64 = 85;
pub const OPENAT: u64 = 257;
pub const OPENAT2: u64 = 437;
pub const UNLINK: u64 = 87;
pub const UNLINKAT: u64 = 263;
pub const RENAME: u64 = 82;
pub const RENAMEAT: u64 = 264;
pub const RENAMEAT2: u64 = 316;
pub const CHMOD: u64 = 90;
pub const FCHMOD: u64 = 91;
pub const FCHMODAT: u64 = 268;
pub const FCHMODAT2: u64 = 452;
pub const MEMFD_CREATE: u64 = 319;
pub const TRUNCATE: u64 = 76;
pub const FTRUNCATE: u64 = 77;
pub const LINK: u64 = 86;
pub const SYMLINK: u64 = 88;
pub const LINKAT: u64 = 265;
pub const SYMLINKAT: u64 = 266;
pub const CONNECT: u64 = 42;
pub const ACCEPT: u64 = 43;
pub const SENDTO: u64 = 44;
pub const SENDMSG: u64 = 46;
pub const BIND: u64 = 49;
pub const LISTEN: u64 = 50;
pub const ACCEPT4: u64 = 288;
pub const SENDMMSG: u64 = 307;

/// `AT_FDCWD` as it arrives in a register (an `int` sign-extended or not).
pub const AT_FDCWD: i32 = -100;

/// Which handler of the `sys_exit` dispatcher takes a syscall, if any.
#[inline(always)]
pub const fn handler_for(nr: u64) -> Option<u32> {
    use crate::config::handler;
    match nr {
        OPEN | CREAT | OPENAT | OPENAT2 => Some(handler::FILE_OPEN),
        UNLINK | UNLINKAT | RENAME | RENAMEAT | RENAMEAT2 | CHMOD | FCHMOD | FCHMODAT
        | FCHMODAT2 | MEMFD_CREATE | LINK | LINKAT | SYMLINK | SYMLINKAT | TRUNCATE | FTRUNCATE => {
            Some(handler::FILE_OTHER)
        }
        CONNECT | ACCEPT | ACCEPT4 | SENDTO | SENDMSG | SENDMMSG | BIND | LISTEN => {
            Some(handler::NET)
        }
        _ => None,
    }
}
