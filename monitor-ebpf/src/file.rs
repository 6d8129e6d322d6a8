//! File activity, from the `sys_exit` dispatcher: opens (with the path the kernel actually
//! opened, walked from the new fd), unlink, rename, chmod, memfd_create, link, symlink and
//! truncate.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
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

/// Writes the user path argument; when relative, also the directory it is relative to
/// (`dirfd`'s file, or the cwd for `AT_FDCWD`). Returns (path, base).
#[inline(always)]
fn user_path(
    data: &mut Data,
    rec_trunc: &mut bool,
    task: *const u8,
    dirfd: i32,
    p: u64,
) -> (StrRef, StrRef) {
    let path = data.push_user_str(p as *const u8);
    let first: u8 = read_user(p as *const u8).unwrap_or(b'/');
    if first == b'/' || path.len == 0 {
        return (path, StrRef::default());
    }
    let base_path = if dirfd == AT_FDCWD {
        read_ptr(task, off::TASK_FS).map(|fs| fs.wrapping_add(offset(off::FS_PWD)))
    } else {
        fd_file(task, dirfd as i64).map(|f| f.wrapping_add(offset(off::FILE_F_PATH)))
    };
    match base_path {
        Ok(bp) => {
            let w = data.push_path(bp);
            *rec_trunc |= w.truncated;
            (path, w.s)
        }
        Err(_) => (path, StrRef::default()),
    }
}

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
            let (path, base) = user_path(&mut rec.data, &mut trunc, task, dirfd, path_arg);
            (*p).path = path;
            (*p).path_base = base;
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
    let Some(mut rec) = Record::new(kind, task) else {
        return Ok(());
    };
    let p = rec.payload::<FileEvent>();
    let mut trunc = false;
    let d = &mut rec.data;
    // SAFETY: `p` points into this CPU's scratch record.
    unsafe {
        (*p).result = sc.ret;
        (*p).syscall = sc.nr as u32;
        match sc.nr {
            UNLINK => {
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(0));
            }
            UNLINKAT => {
                let dfd = sc.arg(0) as i32;
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, dfd, sc.arg(1));
                (*p).flags = sc.arg(2) as u32;
            }
            RENAME => {
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(0));
                ((*p).path2, (*p).path2_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(1));
            }
            RENAMEAT | RENAMEAT2 => {
                let (odfd, ndfd) = (sc.arg(0) as i32, sc.arg(2) as i32);
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, odfd, sc.arg(1));
                ((*p).path2, (*p).path2_base) = user_path(d, &mut trunc, task, ndfd, sc.arg(3));
                if sc.nr == RENAMEAT2 {
                    (*p).flags = sc.arg(4) as u32;
                }
            }
            CHMOD => {
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(0));
                (*p).mode = sc.arg(1) as u32;
            }
            FCHMOD => {
                if let Ok(file) = fd_file(task, sc.arg(0) as i32 as i64) {
                    let w = d.push_path(file.wrapping_add(offset(off::FILE_F_PATH)));
                    trunc |= w.truncated;
                    (*p).path = w.s;
                    (*p).file_flags = FILE_PATH_RESOLVED;
                }
                (*p).mode = sc.arg(1) as u32;
            }
            FCHMODAT | FCHMODAT2 => {
                let dfd = sc.arg(0) as i32;
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, dfd, sc.arg(1));
                (*p).mode = sc.arg(2) as u32;
            }
            LINK => {
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(0));
                ((*p).path2, (*p).path2_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(1));
            }
            LINKAT => {
                let (odfd, ndfd) = (sc.arg(0) as i32, sc.arg(2) as i32);
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, odfd, sc.arg(1));
                ((*p).path2, (*p).path2_base) = user_path(d, &mut trunc, task, ndfd, sc.arg(3));
                (*p).flags = sc.arg(4) as u32;
            }
            // The target is a string stored in the link, relative to the link's directory.
            SYMLINK => {
                (*p).path = d.push_user_str(sc.arg(0) as *const u8);
                ((*p).path2, (*p).path2_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(1));
            }
            SYMLINKAT => {
                (*p).path = d.push_user_str(sc.arg(0) as *const u8);
                let ndfd = sc.arg(1) as i32;
                ((*p).path2, (*p).path2_base) = user_path(d, &mut trunc, task, ndfd, sc.arg(2));
            }
            TRUNCATE => {
                ((*p).path, (*p).path_base) = user_path(d, &mut trunc, task, AT_FDCWD, sc.arg(0));
                (*p).length = sc.arg(1);
            }
            FTRUNCATE => {
                if let Ok(file) = fd_file(task, sc.arg(0) as i32 as i64) {
                    let w = d.push_path(file.wrapping_add(offset(off::FILE_F_PATH)));
                    trunc |= w.truncated;
                    (*p).path = w.s;
                    (*p).file_flags = FILE_PATH_RESOLVED;
                }
                (*p).length = sc.arg(1);
            }
            _ => {
                (*p).path = d.push_user_str(sc.arg(0) as *const u8);
                (*p).flags = sc.arg(1) as u32;
            }
        }
    }
    rec.note_truncation(trunc);
    rec.send();
    Ok(())
}
