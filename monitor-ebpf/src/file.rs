//! File activity, from the `sys_exit` dispatcher: opens (with the path the kernel actually
//! opened, walked from the new fd), unlink, rename, chmod, memfd_create, link, symlink and
//! truncate.

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{
    macros::{map, raw_tracepoint},
    maps::PerCpuArray,
    programs::RawTracePointContext,
};
use monitor_common::{
    EventKind, FILE_PATH_PSEUDO, FILE_PATH_RESOLVED, FLAG_DENIED, FMODE_CREATED, FMODE_READ,
    FMODE_WRITE, FileEvent, OpenKey, OpenSeen, StrRef,
    config::{counter, off},
    syscalls::{
        AT_FDCWD, CHMOD, CREAT, FCHMOD, FCHMODAT, FCHMODAT2, FTRUNCATE, LINK, LINKAT, MEMFD_CREATE,
        OPEN, OPENAT, OPENAT2, RENAME, RENAMEAT, RENAMEAT2, SYMLINK, SYMLINKAT, TRUNCATE, UNLINK,
        UNLINKAT,
    },
};

use crate::{
    emit::Record,
    kernel::{Data, current_task, fd_file, new_fd_file, read, read_ptr, read_user},
    maps::{
        OPENS_RESET, OPENS_SEEN, count, count_err, dedupe_window_jiffies, enforcing, offset,
        reset_gen,
    },
    regs::Syscall,
};

const O_WRONLY: u32 = 0o1;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_EXCL: u32 = 0o200;
const EPERM: i64 = -1;

/// Open, openat, openat2 and creat. Runs inline in the `sys_exit` dispatcher (no tail call):
/// opens are the hottest path of a recorded process.
#[inline(always)]
pub fn try_open(sc: Syscall, tgid: u32) -> Result<(), i64> {
    // The dedupe decision comes first and reads as little as possible: most repeated opens
    // end here.
    let file = if sc.ret >= 0 {
        new_fd_file(sc.ret).ok()
    } else {
        None
    };
    let repeats = match file {
        Some(f) => match dedupe(f, tgid) {
            Some(r) => r,
            None => return Ok(()),
        },
        None => 0,
    };
    let task = current_task();
    let (dirfd, path_arg, flags) = match sc.nr {
        OPEN => (AT_FDCWD, sc.arg(0), sc.arg(1) as u32),
        CREAT => (AT_FDCWD, sc.arg(0), O_CREAT | O_WRONLY | O_TRUNC),
        OPENAT => (sc.arg(0) as i32, sc.arg(1), sc.arg(2) as u32),
        OPENAT2 => {
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            let how: u64 = read_user(sc.arg(2) as *const u8).unwrap_or(0);
            (sc.arg(0) as i32, sc.arg(1), how as u32)
        }
        _ => return Ok(()),
    };
    let Some(mut rec) = Record::new(EventKind::Open, task) else {
        return Ok(());
    };
    // Only a refused open can have been refused by the BPF LSM hook.
    if sc.ret == EPERM && crate::enforce::take_denied() {
        rec.set_flag(FLAG_DENIED);
    }
    let p = rec.payload::<FileEvent>();
    let mut trunc = false;
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).result = sc.ret;
        (*p).syscall = sc.nr as u32;
        (*p).flags = flags;
        let mut resolved = false;
        (*p).repeats = repeats;
        if let Some(file) = file {
            let w = rec
                .data
                .push_path(file.wrapping_add(offset(off::FILE_F_PATH)));
            trunc |= w.truncated;
            (*p).path = w.s;
            // The file's flags, with the open-time ones the kernel does not keep there
            // (O_CREAT, O_EXCL, O_TRUNC: what the open asked for).
            (*p).flags = read(file, offset(off::FILE_F_FLAGS)).unwrap_or(flags)
                | (flags & (O_CREAT | O_EXCL | O_TRUNC));
            let fmode: u32 = read(file, offset(off::FILE_F_MODE)).unwrap_or(0);
            (*p).mode = fmode;
            (*p).file_flags = FILE_PATH_RESOLVED;
            resolved = true;
            crate::enforce::judge_path(&rec, w.s, !w.truncated, crate::enforce::need_of(fmode));
            if w.pseudo
                && let Ok(inode) = read_ptr(file, off::FILE_F_INODE)
            {
                (*p).file_flags |= FILE_PATH_PSEUDO;
                (*p).ino = read(inode, offset(off::INODE_I_INO)).unwrap_or(0);
                (*p).fs_magic = read_ptr(inode, off::INODE_I_SB)
                    .and_then(|sb| read::<u64>(sb, offset(off::SUPER_BLOCK_S_MAGIC)))
                    .unwrap_or(0) as u32;
            }
        }
        if !resolved {
            let mut src = PathSrc::at(dirfd, path_arg);
            let (path, base, _, walk_trunc) = write_src(&mut rec.data, task, &mut src);
            (*p).path = path;
            (*p).path_base = base;
            trunc |= walk_trunc;
        }
    }
    rec.note_truncation(trunc);
    rec.send();
    Ok(())
}

/// The fields of `struct file` the open path's dedupe needs: two reads (`f_mode`, then
/// `f_path`'s mount and dentry, adjacent in `struct path` on every kernel). Measured with
/// bpf_stats on the open/close loop, this costs less than one read of the file's first 128
/// bytes: the larger copy, and picking fields out of it at offsets known only at load time
/// (the compiler copied the buffer byte by byte), cost more than the helper call saved.
struct FileHead {
    fmode: u32,
    mnt: u64,
    dentry: u64,
}

impl FileHead {
    #[inline(always)]
    fn read(file: *const u8) -> Self {
        let fmode = read(file, offset(off::FILE_F_MODE)).unwrap_or(0);
        let p = offset(off::FILE_F_PATH);
        let (pm, pd) = (offset(off::PATH_MNT), offset(off::PATH_DENTRY));
        if pm == 0 && pd == 8 {
            let [mnt, dentry] = read::<[u64; 2]>(file, p).unwrap_or([0; 2]);
            return Self { fmode, mnt, dentry };
        }
        Self {
            fmode,
            mnt: read(file, p + pm).unwrap_or(0),
            dentry: read(file, p + pd).unwrap_or(0),
        }
    }
}

/// In-kernel dedupe of repeated opens: `None` when this open repeats one reported within the
/// window (it is counted instead), else the number of repeats folded since the last report.
/// Opens that created the file are always reported.
#[inline(always)]
fn dedupe(file: *const u8, tgid: u32) -> Option<u32> {
    let window = dedupe_window_jiffies();
    if window == 0 {
        return Some(0);
    }
    let head = FileHead::read(file);
    let fmode = head.fmode;
    if fmode & FMODE_CREATED != 0 {
        return Some(0);
    }
    // The slot is part of the key: an open repeated under a new slot is judged again. No
    // process has one before user space first puts one under enforcement.
    let slot = if enforcing() {
        crate::enforce::slot_of(tgid).unwrap_or(0)
    } else {
        0
    };
    let key = OpenKey {
        tgid,
        fmode_slot: (fmode & (FMODE_READ | FMODE_WRITE)) | (slot << 2),
        dentry: head.dentry,
        mnt: head.mnt,
    };
    // SAFETY: helper without preconditions.
    // Jiffies are plenty for a window of a second and much cheaper than ktime here.
    let now = unsafe { aya_ebpf::helpers::generated::bpf_jiffies64() };
    let generation = reset_gen();
    if let Some(seen) = OPENS_SEEN.get_ptr_mut(key) {
        // SAFETY: map value pointer from a successful lookup.
        unsafe {
            // A reset of this thread group since the entry was last checked forgets it.
            let reset = (*seen).reset_gen != generation
                && OPENS_RESET
                    .get(tgid)
                    .is_some_and(|r| r.wrapping_sub((*seen).reset_gen) as i32 > 0);
            (*seen).reset_gen = generation;
            if !reset && now.wrapping_sub((*seen).reported_jiffies) < window {
                (*seen).repeats = (*seen).repeats.saturating_add(1);
                count(counter::DEDUPED);
                return None;
            }
            let repeats = (*seen).repeats;
            (*seen).reported_jiffies = now;
            (*seen).repeats = 0;
            return Some(repeats);
        }
    }
    let _ = OPENS_SEEN.insert(
        key,
        OpenSeen {
            reported_jiffies: now,
            repeats: 0,
            reset_gen: generation,
        },
        0,
    );
    Some(0)
}

/// Handler for the unlink, rename, chmod, memfd_create, link, symlink and truncate families
/// (slot `FILE_OTHER`).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_file(ctx: RawTracePointContext) -> i32 {
    count_err(try_file(&ctx));
    0
}

/// Where one path of a file syscall comes from: a user string taken as given (`STR`: a
/// symlink's target, a memfd's name), a user path relative to the directory `fd` or the cwd
/// when not absolute (`AT`), an open file walked by the kernel (`FD`: fchmod, ftruncate).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathSrc {
    kind: u64,
    fd: i64,
    ptr: u64,
    /// The user string once written (`AT`): read back from here, so the written string's
    /// bounds do not tell the verifier's states apart before the walk.
    named: StrRef,
}

const SRC_NONE: u64 = 0;
const SRC_STR: u64 = 1;
const SRC_AT: u64 = 2;
const SRC_FD: u64 = 3;

impl PathSrc {
    const NONE: Self = Self::new(SRC_NONE, 0, 0);

    const fn new(kind: u64, fd: i64, ptr: u64) -> Self {
        Self {
            kind,
            fd,
            ptr,
            named: StrRef { off: 0, len: 0 },
        }
    }

    fn str(ptr: u64) -> Self {
        Self::new(SRC_STR, 0, ptr)
    }

    fn at(dirfd: i32, ptr: u64) -> Self {
        Self::new(SRC_AT, dirfd as i64, ptr)
    }

    fn fd(fd: i32) -> Self {
        Self::new(SRC_FD, fd as i64, 0)
    }
}

/// The two paths of the file syscall being handled, on this CPU. Every syscall's arguments go
/// through here, and [`write_src`] reads them back at each decision: loads from map memory are
/// unknown to the verifier, so the states of all the syscalls meet before each of the two
/// dentry walks and each walk is checked once, not once per syscall and path (the bounded
/// build unrolls each walk: on 5.10 under emulation this handler's verification took 31 s
/// with a walk per syscall).
#[map(name = "FILE_SRCS")]
static FILE_SRCS: PerCpuArray<[PathSrc; 2]> = PerCpuArray::with_max_entries(1, 0);

/// A path written into the record: (path, the directory it is relative to, resolved by the
/// kernel, the walk was truncated).
type Written = (StrRef, StrRef, bool, bool);

/// Writes the path `src` describes: its string, and the dentry walk of its directory or file.
/// Every field is read from `src` when needed (see [`FILE_SRCS`]).
#[inline(always)]
fn write_src(data: &mut Data, task: *const u8, src: *mut PathSrc) -> Written {
    let none = StrRef::default();
    // SAFETY: `src` points to a live `PathSrc` (map value or stack).
    let kind = unsafe { read_volatile(&(*src).kind) };
    let (fd, ptr) = unsafe { (read_volatile(&(*src).fd), read_volatile(&(*src).ptr)) };
    let walk = match kind {
        SRC_STR => return (data.push_user_str(ptr as *const u8), none, false, false),
        SRC_AT => {
            let path = data.push_user_str(ptr as *const u8);
            let first: u8 = read_user(ptr as *const u8).unwrap_or(b'/');
            if first == b'/' || path.len == 0 {
                return (path, none, false, false);
            }
            // SAFETY: as above.
            unsafe { write_volatile(&mut (*src).named, path) };
            if fd as i32 == AT_FDCWD {
                read_ptr(task, off::TASK_FS).map(|fs| fs.wrapping_add(offset(off::FS_PWD)))
            } else {
                fd_file(task, fd).map(|f| f.wrapping_add(offset(off::FILE_F_PATH)))
            }
        }
        SRC_FD => fd_file(task, fd).map(|f| f.wrapping_add(offset(off::FILE_F_PATH))),
        _ => return (none, none, false, false),
    };
    // SAFETY: as above.
    let named = unsafe { read_volatile(&(*src).named) };
    let Ok(walk) = walk else {
        return (named, none, false, false);
    };
    data.settle();
    let w = data.push_path(walk);
    // SAFETY: as above.
    if unsafe { read_volatile(&(*src).kind) } == SRC_AT {
        (named, w.s, false, w.truncated)
    } else {
        (w.s, none, true, w.truncated)
    }
}

fn try_file(ctx: &RawTracePointContext) -> Result<(), i64> {
    let sc = Syscall::from_ctx(ctx)?;
    let task = current_task();
    let kind = match sc.nr {
        UNLINK | UNLINKAT => EventKind::Unlink,
        RENAME | RENAMEAT | RENAMEAT2 => EventKind::Rename,
        CHMOD | FCHMOD | FCHMODAT | FCHMODAT2 => EventKind::Chmod,
        MEMFD_CREATE => EventKind::Memfd,
        LINK | LINKAT => EventKind::Link,
        SYMLINK | SYMLINKAT => EventKind::Symlink,
        TRUNCATE | FTRUNCATE => EventKind::Truncate,
        _ => return Ok(()),
    };
    let Some(srcs) = FILE_SRCS.get_ptr_mut(0) else {
        return Ok(());
    };
    let Some(mut rec) = Record::new(kind, task) else {
        return Ok(());
    };
    let p = rec.payload::<FileEvent>();
    let arg = |i| sc.arg(i);
    let fd = |i| sc.arg(i) as i32;
    let cwd = AT_FDCWD;
    // (first path, second path, flags, mode, length)
    let (first, second, flags, mode, length) = match sc.nr {
        UNLINK => (PathSrc::at(cwd, arg(0)), PathSrc::NONE, 0, 0, 0),
        UNLINKAT => (PathSrc::at(fd(0), arg(1)), PathSrc::NONE, arg(2), 0, 0),
        RENAME | LINK => (PathSrc::at(cwd, arg(0)), PathSrc::at(cwd, arg(1)), 0, 0, 0),
        RENAMEAT => (
            PathSrc::at(fd(0), arg(1)),
            PathSrc::at(fd(2), arg(3)),
            0,
            0,
            0,
        ),
        RENAMEAT2 | LINKAT => {
            let new = PathSrc::at(fd(2), arg(3));
            (PathSrc::at(fd(0), arg(1)), new, arg(4), 0, 0)
        }
        CHMOD => (PathSrc::at(cwd, arg(0)), PathSrc::NONE, 0, arg(1), 0),
        FCHMOD => (PathSrc::fd(fd(0)), PathSrc::NONE, 0, arg(1), 0),
        FCHMODAT => (PathSrc::at(fd(0), arg(1)), PathSrc::NONE, 0, arg(2), 0),
        // fchmodat2 (6.6) has the flags fchmodat never had (AT_SYMLINK_NOFOLLOW).
        FCHMODAT2 => (PathSrc::at(fd(0), arg(1)), PathSrc::NONE, arg(3), arg(2), 0),
        // The target is a string stored in the link, relative to the link's directory.
        SYMLINK => (PathSrc::str(arg(0)), PathSrc::at(cwd, arg(1)), 0, 0, 0),
        SYMLINKAT => (PathSrc::str(arg(0)), PathSrc::at(fd(1), arg(2)), 0, 0, 0),
        TRUNCATE => (PathSrc::at(cwd, arg(0)), PathSrc::NONE, 0, 0, arg(1)),
        FTRUNCATE => (PathSrc::fd(fd(0)), PathSrc::NONE, 0, 0, arg(1)),
        _ => (PathSrc::str(arg(0)), PathSrc::NONE, arg(1), 0, 0),
    };
    // SAFETY: `p` points into this CPU's scratch record, `srcs` into this CPU's FILE_SRCS.
    unsafe {
        (*p).result = sc.ret;
        (*p).syscall = sc.nr as u32;
        (*p).flags = flags as u32;
        (*p).mode = mode as u32;
        (*p).length = length;
        write_volatile(srcs, [first, second]);
    }
    let srcs = srcs as *mut PathSrc;
    let (path, base, resolved, trunc) = write_src(&mut rec.data, task, srcs);
    // SAFETY: as above.
    unsafe {
        ((*p).path, (*p).path_base) = (path, base);
        if resolved {
            (*p).file_flags = FILE_PATH_RESOLVED;
        }
    }
    rec.note_truncation(trunc);
    rec.data.settle();
    let (path2, base2, _, trunc) = write_src(&mut rec.data, task, srcs.wrapping_add(1));
    // SAFETY: as above.
    unsafe { ((*p).path2, (*p).path2_base) = (path2, base2) };
    rec.note_truncation(trunc);
    rec.send();
    Ok(())
}
