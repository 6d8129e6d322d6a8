//! Reading kernel memory: typed reads at BTF-resolved offsets, the current task's fd table,
//! and the dentry/mount walk that turns a `struct path` into the path the kernel used.

#[cfg(not(feature = "bounded-loops"))]
use aya_ebpf::helpers::generated::bpf_loop;
use aya_ebpf::helpers::generated::{
    bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
    bpf_probe_read_user_str,
};
use core::ffi::c_void;
use monitor_common::{
    DATA_OFFSET, EventHeader, StrRef,
    config::{DATA_MASK, DATA_SIZE, NAME_MAX, PATH_MAX_COMPONENTS, USER_STR_MAX, off},
};

use crate::maps::offset;

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
pub fn read<T: Copy>(base: *const u8, off: usize) -> Result<T, i64> {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel never faults; it fails on a bad address.
    let r = unsafe {
        bpf_probe_read_kernel(
            v.as_mut_ptr() as *mut c_void,
            core::mem::size_of::<T>() as u32,
            base.wrapping_add(off) as *const c_void,
        )
    };
    if r < 0 {
        return Err(r);
    }
    // SAFETY: fully written by the successful read above.
    Ok(unsafe { v.assume_init() })
}

/// Reads a kernel pointer at `base + offset(slot)`.
#[inline(always)]
pub fn read_ptr(base: *const u8, slot: usize) -> Result<*const u8, i64> {
    read::<*const u8>(base, offset(slot))
}

/// Reads a `T` from user memory.
#[inline(always)]
pub fn read_user<T: Copy>(addr: *const u8) -> Result<T, i64> {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_user never faults.
    let r = unsafe {
        bpf_probe_read_user(
            v.as_mut_ptr() as *mut c_void,
            core::mem::size_of::<T>() as u32,
            addr as *const c_void,
        )
    };
    if r < 0 {
        return Err(r);
    }
    // SAFETY: fully written by the successful read above.
    Ok(unsafe { v.assume_init() })
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_current_task() as *const u8 }
}

/// The `struct file *` at index `fd` of the current task's fd table.
#[inline(always)]
pub fn fd_file(task: *const u8, fd: i64) -> Result<*const u8, i64> {
    if fd < 0 {
        return Err(-9);
    }
    let files = read_ptr(task, off::TASK_FILES)?;
    let fdt = read_ptr(files, off::FILES_FDT)?;
    let max: u32 = read(fdt, offset(off::FDT_MAX_FDS))?;
    if fd as u64 >= max as u64 {
        return Err(-9);
    }
    let arr = read_ptr(fdt, off::FDT_FD)?;
    let file = read::<*const u8>(arr, (fd as usize) * 8)?;
    if file.is_null() {
        return Err(-9);
    }
    Ok(file)
}

/// The `struct file *` of an fd the current syscall just installed (open's result): it is
/// below `max_fds` by construction, so the bound is not re-read.
///
/// The `loop` build (Linux 5.17+) walks `task->files->fdt->fd` with direct loads from the
/// BTF-typed current task (`bpf_get_current_task_btf`, the verifier checks each against the
/// kernel's BTF, offsets being constants of the read-only globals) and reads only the slot
/// itself with `bpf_probe_read_kernel`: two helper calls where the `bounded` build makes five.
#[inline(always)]
pub fn new_fd_file(fd: i64) -> Result<*const u8, i64> {
    if fd < 0 {
        return Err(-9);
    }
    #[cfg(not(feature = "bounded-loops"))]
    let arr = {
        // SAFETY: helper without preconditions; the loads are from BTF-typed pointers (the
        // verifier turns them into fault-safe loads: a null or stale pointer reads 0).
        unsafe {
            let task = aya_ebpf::helpers::generated::bpf_get_current_task_btf() as *const u8;
            let load = |base: *const u8, slot: usize| {
                core::ptr::read_volatile(base.add(offset(slot)) as *const *const u8)
            };
            load(
                load(load(task, off::TASK_FILES), off::FILES_FDT),
                off::FDT_FD,
            )
        }
    };
    #[cfg(feature = "bounded-loops")]
    let arr = {
        let files = read_ptr(current_task(), off::TASK_FILES)?;
        let fdt = read_ptr(files, off::FILES_FDT)?;
        read_ptr(fdt, off::FDT_FD)?
    };
    let file = read::<*const u8>(arr, ((fd as usize) & 0xff_ffff) * 8)?;
    if file.is_null() {
        return Err(-9);
    }
    Ok(file)
}

/// A growing data area of an event record. Offsets are masked so the verifier can bound every
/// write; a string that does not fit is left out (length 0) rather than written out of place.
pub struct Data {
    pub base: *mut u8,
    pub used: usize,
}

/// Outcome of a path walk.
pub struct Walked {
    pub s: StrRef,
    pub truncated: bool,
    /// A nameless pseudo file (pipe, socket): nothing written.
    pub pseudo: bool,
}

impl Data {
    #[inline(always)]
    fn room(&self, want: usize) -> bool {
        self.used + want <= DATA_SIZE
    }

    #[inline(always)]
    fn at(&self, pos: usize) -> *mut u8 {
        self.base.wrapping_add(pos & DATA_MASK)
    }

    /// Copies a NUL-terminated user string (without the NUL).
    #[inline(always)]
    pub fn push_user_str(&mut self, src: *const u8) -> StrRef {
        if src.is_null() || !self.room(USER_STR_MAX) {
            return StrRef::default();
        }
        let start = self.used;
        // SAFETY: destination has USER_STR_MAX bytes of room (slack after the data area).
        let n = unsafe {
            bpf_probe_read_user_str(
                self.at(start) as *mut c_void,
                USER_STR_MAX as u32,
                src as *const c_void,
            )
        };
        self.finish_str(start, n)
    }

    /// Copies a NUL-terminated kernel string (without the NUL).
    #[inline(always)]
    pub fn push_kernel_str(&mut self, src: *const u8) -> StrRef {
        if src.is_null() || !self.room(USER_STR_MAX) {
            return StrRef::default();
        }
        let start = self.used;
        // SAFETY: as above.
        let n = unsafe {
            bpf_probe_read_kernel_str(
                self.at(start) as *mut c_void,
                USER_STR_MAX as u32,
                src as *const c_void,
            )
        };
        self.finish_str(start, n)
    }

    #[inline(always)]
    fn finish_str(&mut self, start: usize, n: i64) -> StrRef {
        if n <= 1 {
            return StrRef::default();
        }
        let len = (n as usize - 1) & (USER_STR_MAX - 1);
        self.used = start + len;
        StrRef {
            off: start as u16,
            len: len as u16,
        }
    }

    /// Copies `len` bytes of user memory (argv), at most `max` (a power of two, <= slack).
    #[inline(always)]
    pub fn push_user_bytes(&mut self, src: *const u8, len: usize, max: usize) -> StrRef {
        if src.is_null() || len == 0 || !self.room(max) {
            return StrRef::default();
        }
        let len = if len > max { max } else { len };
        let len = len & (USER_STR_MAX * 2 - 1);
        if len > USER_STR_MAX {
            return StrRef::default();
        }
        let start = self.used;
        // SAFETY: destination has `max` <= slack bytes of room.
        let r = unsafe {
            bpf_probe_read_user(
                self.at(start) as *mut c_void,
                len as u32,
                src as *const c_void,
            )
        };
        if r < 0 {
            return StrRef::default();
        }
        self.used = start + len;
        StrRef {
            off: start as u16,
            len: len as u16,
        }
    }

    /// Passes `used` through map memory (the record header's size field, as [`Self::push_path`]
    /// does): the verifier then holds it as a bounded unknown, so paths through a program
    /// that differ only in how much they wrote meet, and what follows is checked once.
    #[inline(always)]
    pub fn settle(&mut self) {
        let cursor = self.base.wrapping_sub(DATA_OFFSET) as *mut EventHeader;
        // SAFETY: `base` is the data area of the scratch record, after its header.
        let used = unsafe {
            core::ptr::write_volatile(&mut (*cursor).size, self.used as u32);
            core::ptr::read_volatile(&(*cursor).size)
        };
        self.used = (used as usize & (DATA_SIZE * 2 - 1)).min(DATA_SIZE);
    }

    /// Writes the path of `struct path *p` (kernel pointer) by walking dentries up to the root,
    /// crossing mount points. Encoding: components leaf first, each followed by `/`; a walk that
    /// reached the root ends with one more `/` (so `/` alone is the root itself). A walk without
    /// the final `/` was truncated at `PATH_MAX_COMPONENTS`.
    ///
    /// The walk runs under `bpf_loop`, so the verifier checks one step once instead of every
    /// unrolled iteration on every path through the caller.
    #[inline(always)]
    pub fn push_path(&mut self, p: *const u8) -> Walked {
        let start = self.used;
        let mut out = Walked {
            s: StrRef::default(),
            truncated: false,
            pseudo: false,
        };
        let Ok(vfsmnt) = read_ptr(p, off::PATH_MNT) else {
            return out;
        };
        let Ok(dentry) = read_ptr(p, off::PATH_DENTRY) else {
            return out;
        };
        // The running length lives in the scratch record (map memory), not on the stack: the
        // verifier treats map loads as unknown scalars, so the callback's states converge at
        // once instead of being re-verified for every possible length.
        let cursor = self.base.wrapping_sub(DATA_OFFSET) as *mut EventHeader;
        // SAFETY: `base` is the data area of the scratch record, after its header.
        unsafe { (*cursor).size = self.used as u32 };
        let mut st = WalkState {
            base: self.base,
            vfsmnt: vfsmnt as u64,
            dentry: dentry as u64,
            mount: vfsmnt.wrapping_sub(offset(off::MOUNT_MNT)) as u64,
            state: WALKING,
        };
        // SAFETY: `walk_step` has the callback signature bpf_loop expects; `st` outlives the call.
        #[cfg(not(feature = "bounded-loops"))]
        unsafe {
            bpf_loop(
                PATH_MAX_COMPONENTS as u32,
                walk_step as *mut c_void,
                &mut st as *mut WalkState as *mut c_void,
                0,
            );
        }
        // Kernels without bpf_loop (before 5.17): the same steps as a bounded loop, which
        // the verifier follows iteration by iteration.
        #[cfg(feature = "bounded-loops")]
        for i in 0..PATH_MAX_COMPONENTS as u64 {
            if walk_step(i, &mut st as *mut WalkState as *mut c_void) != 0 {
                break;
            }
        }
        // SAFETY: as above.
        self.used = (unsafe { (*cursor).size } as usize) & (DATA_SIZE * 2 - 1);
        if self.used > DATA_SIZE {
            self.used = DATA_SIZE;
        }
        if st.state == DONE && self.room(1) {
            // SAFETY: room checked.
            unsafe { *self.at(self.used) = b'/' };
            self.used += 1;
        } else {
            out.pseudo = st.state == PSEUDO;
            out.truncated = st.state != DONE && !out.pseudo;
        }
        let len = self.used.saturating_sub(start);
        out.s = StrRef {
            off: start as u16,
            len: len as u16,
        };
        out
    }
}

const WALKING: u64 = 0;
const DONE: u64 = 1;
const FAILED: u64 = 2;
/// The file is a nameless pseudo dentry (a pipe or socket): there is no name to write.
const PSEUDO: u64 = 3;

/// State of a dentry walk, shared with the `bpf_loop` callback through the stack.
#[repr(C)]
struct WalkState {
    base: *mut u8,
    vfsmnt: u64,
    dentry: u64,
    mount: u64,
    state: u64,
}

/// One step of the dentry walk: either hop from a mount root to its mount point, or write the
/// current dentry's name and move to its parent. Returns 1 to stop the loop.
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `WalkState` passed by `push_path`.
    let st = unsafe { &mut *(ctx as *mut WalkState) };
    let stop = |st: &mut WalkState, state: u64| {
        st.state = state;
        1
    };
    let vfsmnt = st.vfsmnt as *const u8;
    let dentry = st.dentry as *const u8;
    let mount = st.mount as *const u8;
    let Ok(mnt_root) = read_ptr(vfsmnt, off::VFSMOUNT_MNT_ROOT) else {
        return stop(st, FAILED);
    };
    let Ok(parent) = read_ptr(dentry, off::DENTRY_D_PARENT) else {
        return stop(st, FAILED);
    };
    if dentry == mnt_root {
        let Ok(mnt_parent) = read_ptr(mount, off::MOUNT_MNT_PARENT) else {
            return stop(st, FAILED);
        };
        if mnt_parent == mount {
            return stop(st, DONE);
        }
        let Ok(mp) = read_ptr(mount, off::MOUNT_MNT_MOUNTPOINT) else {
            return stop(st, FAILED);
        };
        st.dentry = mp as u64;
        st.mount = mnt_parent as u64;
        st.vfsmnt = mnt_parent.wrapping_add(offset(off::MOUNT_MNT)) as u64;
        return 0;
    }
    // A dentry that is its own parent but not the mount's root is a pseudo file (memfd,
    // anonymous inode: `d_alloc_pseudo`) or a detached tree: its name is written, then the
    // walk ends, giving `/memfd:NAME` for a memfd.
    let last = dentry == parent;
    let cursor = st.base.wrapping_sub(DATA_OFFSET) as *mut EventHeader;
    // SAFETY: `base` is the data area of the scratch record, after its header.
    let pos = unsafe { (*cursor).size } as usize;
    if pos + NAME_MAX > DATA_SIZE {
        return stop(st, FAILED);
    }
    let name_off = offset(off::DENTRY_D_NAME) + offset(off::QSTR_NAME);
    let Ok(name) = read::<*const u8>(dentry, name_off) else {
        return stop(st, FAILED);
    };
    let dst = st.base.wrapping_add(pos & DATA_MASK);
    // SAFETY: NAME_MAX bytes of room at `dst` (data area plus slack).
    let n = unsafe {
        bpf_probe_read_kernel_str(dst as *mut c_void, NAME_MAX as u32, name as *const c_void)
    };
    if n <= 1 {
        return stop(st, if last { PSEUDO } else { FAILED });
    }
    let n = (n as usize) & (NAME_MAX * 2 - 1);
    // Replace the NUL by the separator.
    // SAFETY: within the masked data area plus slack.
    unsafe { *st.base.wrapping_add((pos + n - 1) & DATA_MASK) = b'/' };
    // SAFETY: as above.
    unsafe { (*cursor).size = (pos + n) as u32 };
    if last {
        return stop(st, DONE);
    }
    st.dentry = parent as u64;
    0
}
