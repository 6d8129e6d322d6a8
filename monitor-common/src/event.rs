//! The event envelope and the per-family payloads.

use core::mem::size_of;

/// What an event record is. Numbered in ranges per family; numbers are never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    // Process family: 1..=99.
    Exec = 1,
    Fork = 2,
    Exit = 3,
    // File family: 100..=199.
    Open = 100,
    Unlink = 101,
    Rename = 102,
    Chmod = 103,
    Memfd = 104,
    /// A hard link: `link`, `linkat`.
    Link = 105,
    /// A symbolic link: `symlink`, `symlinkat`.
    Symlink = 106,
    /// `truncate`, `ftruncate`.
    Truncate = 107,
    // Network family: 200..=299.
    Connect = 200,
    Accept = 201,
    Bind = 202,
    Listen = 203,
    Send = 204,
    /// A DNS answer received by a watched process (cgroup `skb` ingress hook).
    Dns = 205,
}

impl EventKind {
    /// Decodes the raw kind tag written by the kernel.
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Fork,
            3 => Self::Exit,
            100 => Self::Open,
            101 => Self::Unlink,
            102 => Self::Rename,
            103 => Self::Chmod,
            104 => Self::Memfd,
            105 => Self::Link,
            106 => Self::Symlink,
            107 => Self::Truncate,
            200 => Self::Connect,
            201 => Self::Accept,
            202 => Self::Bind,
            203 => Self::Listen,
            204 => Self::Send,
            205 => Self::Dns,
            _ => return None,
        })
    }

    /// The kind of a `kind` string of the JSON contract.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.as_bytes() {
            b"exec" => Self::Exec,
            b"fork" => Self::Fork,
            b"exit" => Self::Exit,
            b"open" => Self::Open,
            b"unlink" => Self::Unlink,
            b"rename" => Self::Rename,
            b"chmod" => Self::Chmod,
            b"memfd" => Self::Memfd,
            b"link" => Self::Link,
            b"symlink" => Self::Symlink,
            b"truncate" => Self::Truncate,
            b"connect" => Self::Connect,
            b"accept" => Self::Accept,
            b"bind" => Self::Bind,
            b"listen" => Self::Listen,
            b"send" => Self::Send,
            b"dns" => Self::Dns,
            _ => return None,
        })
    }

    /// The `kind` string of the JSON contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Fork => "fork",
            Self::Exit => "exit",
            Self::Open => "open",
            Self::Unlink => "unlink",
            Self::Rename => "rename",
            Self::Chmod => "chmod",
            Self::Memfd => "memfd",
            Self::Link => "link",
            Self::Symlink => "symlink",
            Self::Truncate => "truncate",
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::Bind => "bind",
            Self::Listen => "listen",
            Self::Send => "send",
            Self::Dns => "dns",
        }
    }
}

/// A string in the event's data area: `len` bytes at `off` (relative to the data area start).
/// `len == 0` means absent or empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrRef {
    pub off: u16,
    pub len: u16,
}

/// Fixed header of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] as u32.
    pub kind: u32,
    /// Total bytes of the record: header + payload + used data area.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the event was built.
    pub ktime_ns: u64,
    /// Start time of the thread-group leader, boot-time ns (`task->group_leader->start_boottime`).
    pub start_time_ns: u64,
    /// cgroup v2 id of the task (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    /// Thread-group id (the user-visible pid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread-group id of `real_parent`.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    pub comm: [u8; 16],
}

/// Some path in this record was longer than the walk bound and is truncated at its root end.
pub const FLAG_PATH_TRUNCATED: u32 = 1 << 0;
/// argv was longer than [`crate::config::ARGV_MAX`] bytes.
pub const FLAG_ARGV_TRUNCATED: u32 = 1 << 1;
/// A kernel read failed while building the record; some fields may be empty.
pub const FLAG_READ_ERROR: u32 = 1 << 2;
/// The kernel killed the process (SIGKILL) before this exec's image or this open's file was
/// used: the process is under an enforce-mode profile and the step is outside it.
pub const FLAG_KILLED: u32 = 1 << 3;
/// The kernel refused this step with `EPERM` (BPF LSM, an enforce-mode profile): the exec
/// never replaced the image, the open returned no file; the process lives on.
pub const FLAG_DENIED: u32 = 1 << 4;

/// Payload of [`EventKind::Exec`] (raw tracepoint `sched_process_exec`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecEvent {
    /// `bprm->filename`: the filename passed to execve (plain string).
    pub filename: StrRef,
    /// The executable actually loaded, `bprm->file->f_path` (dentry path, see [`StrRef`] docs in
    /// the user decoder: components leaf first, each followed by `/`).
    pub exe: StrRef,
    /// The current working directory `task->fs->pwd` (dentry path).
    pub cwd: StrRef,
    /// argv, NUL-separated as in `mm->arg_start..arg_end`.
    pub argv: StrRef,
    pub euid: u32,
    pub egid: u32,
    /// Pid before exec (differs from `header.pid` when a non-leader thread called execve).
    pub old_pid: u32,
    pub _pad: u32,
}

/// Payload of [`EventKind::Fork`] (raw tracepoint `sched_process_fork`), new processes only
/// (threads are not reported). The header describes the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkEvent {
    pub child_pid: u32,
    pub _pad: u32,
    /// Child start time, boot-time ns.
    pub child_start_time_ns: u64,
}

/// Payload of [`EventKind::Exit`] (raw tracepoint `sched_process_exit`), sent when the last
/// thread of a thread group exits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitEvent {
    /// `task->exit_code`: a wait(2) status (`code << 8 | signal`).
    pub exit_code: u32,
    pub _pad: u32,
}

/// Payload of every file-family kind (`sys_exit` dispatcher).
///
/// Paths come in two shapes. `path` is a dentry path when [`FILE_PATH_RESOLVED`] is set (the
/// object the kernel actually used, walked through the dentry/mount chain), otherwise the user's
/// string; when that string is relative, `path_base` holds the dentry path of the directory it
/// is relative to (the dirfd's file or the cwd). `path2`/`path2_base` are the same for the new
/// name of a rename, link or symlink. A symlink's `path` is its target as written (no base:
/// a relative target is relative to the link, not to the caller).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileEvent {
    pub path: StrRef,
    pub path_base: StrRef,
    pub path2: StrRef,
    pub path2_base: StrRef,
    /// Open flags (`file->f_flags` on success, the requested flags on failure); rename/unlink
    /// flags; memfd flags.
    pub flags: u32,
    /// `file->f_mode` on a successful open, chmod mode for chmod.
    pub mode: u32,
    /// Syscall return value: fd or 0 on success, negative errno on failure.
    pub result: i64,
    /// `FILE_*` bits.
    pub file_flags: u32,
    /// The syscall number that produced this event.
    pub syscall: u32,
    /// Identical opens (same process, file and access) suppressed in the kernel since the last
    /// one reported, within the dedupe window.
    pub repeats: u32,
    /// With [`FILE_PATH_PSEUDO`]: the file system's magic (`PIPEFS_MAGIC`, `SOCKFS_MAGIC`, ...)
    /// and the inode number of the nameless object opened.
    pub fs_magic: u32,
    pub ino: u64,
    /// The length `truncate` and `ftruncate` asked for.
    pub length: u64,
}

/// `path` is a dentry path resolved by the kernel.
pub const FILE_PATH_RESOLVED: u32 = 1 << 0;
/// `path2` is a dentry path resolved by the kernel.
pub const FILE_PATH2_RESOLVED: u32 = 1 << 1;
/// The open reached a nameless kernel object (a pipe or socket reopened through
/// `/proc/PID/fd/N` or `/dev/fd/N`): `path` is empty, `fs_magic` and `ino` name it.
pub const FILE_PATH_PSEUDO: u32 = 1 << 2;

/// `FMODE_CREATED`: the open created the file.
pub const FMODE_CREATED: u32 = 0x10_0000;
/// `FMODE_READ`, `FMODE_WRITE`.
pub const FMODE_READ: u32 = 0x1;
pub const FMODE_WRITE: u32 = 0x2;
/// `__FMODE_EXEC`, in a file's `f_flags` (not `f_mode`): the kernel opened it to execute it
/// (exec, the ELF interpreter); user space cannot pass it to open.
pub const FFLAGS_EXEC: u32 = 0x20;

/// Payload of every network-family kind (`sys_exit` dispatcher).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetEvent {
    /// `AF_INET` (2), `AF_INET6` (10) or `AF_UNIX` (1); 0 when unknown.
    pub family: u16,
    /// `sk->sk_type`: `SOCK_STREAM` (1), `SOCK_DGRAM` (2), ...
    pub sock_type: u16,
    /// `sk->sk_protocol`: `IPPROTO_TCP` (6), `IPPROTO_UDP` (17), 0 for unix.
    pub protocol: u16,
    /// Host byte order.
    pub local_port: u16,
    /// Host byte order.
    pub remote_port: u16,
    /// `NET_*` bits saying which addresses are known.
    pub net_flags: u16,
    /// The syscall number that produced this event.
    pub syscall: u32,
    /// Network byte order; IPv4 in the first 4 bytes.
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Syscall return value.
    pub result: i64,
    /// Unix socket path (`@` prefix for the abstract namespace is added by user space: the
    /// first byte is NUL then).
    pub path: StrRef,
    /// The socket fd (or the new fd for accept).
    pub fd: i32,
}

/// Payload of [`EventKind::Dns`]: one DNS message (UDP datagram or TCP segment payload) that a
/// nameserver sent to a socket of a watched process, captured at ingress. The header is the one
/// of the process that sent the query on that socket, taken when it did (the answer arrives in
/// softirq context, where `current` is unrelated), with `ktime_ns` of the answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DnsEvent {
    /// `AF_INET` or `AF_INET6`: the packet's network protocol.
    pub family: u16,
    /// `IPPROTO_UDP` (17) or `IPPROTO_TCP` (6).
    pub protocol: u16,
    /// The nameserver's port, host byte order (53).
    pub server_port: u16,
    pub _pad: u16,
    /// Bytes of transport payload in the packet; `data` holds the first
    /// [`crate::config::DNS_CAPTURE_MAX`] of them.
    pub payload_len: u32,
    /// The payload bytes (a TCP segment starts with the message's 2-byte length when it is the
    /// first of the message).
    pub data: StrRef,
    /// The nameserver's address, network byte order; IPv4 in the first 4 bytes.
    pub server_addr: [u8; 16],
    /// The socket's cookie (`bpf_get_socket_cookie`): one per socket while it lives.
    pub cookie: u64,
}

/// Key of the kernel's open dedupe table (`OPENS_SEEN`): one process opening one file with one
/// access mode. When a workload starts serving, user space resets its processes
/// (`OPENS_RESET`), so their next open of a file is reported (and judged in the new phase) even
/// within the window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenKey {
    pub tgid: u32,
    /// The read/write bits of `f_mode` (bits 0-1) and, above them, the enforcement slot the
    /// process was under (0: none): under a new slot (a reload, the end of start-up) every
    /// open is new, so enforcement judges it again. (Packed: a larger key overflows the
    /// `sys_exit` stack; slots 2^30 apart share a key, which only folds a report.)
    pub fmode_slot: u32,
    pub dentry: u64,
    pub mnt: u64,
}

/// Value of the open dedupe table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenSeen {
    /// When the open was last reported (jiffies).
    pub reported_jiffies: u64,
    /// Opens folded into it since.
    pub repeats: u32,
    /// The reset generation (`switch::RESET_GEN`) it was last checked at.
    pub reset_gen: u32,
}

pub const NET_LOCAL_KNOWN: u16 = 1 << 0;
pub const NET_REMOTE_KNOWN: u16 = 1 << 1;
/// The kernel refused the connect, send or bind: the process is under an enforce-mode
/// profile and the destination (or port) is outside it.
pub const NET_BLOCKED: u16 = 1 << 2;
/// A bind asked for port 0: the kernel chose the port (`local_port` is the one it chose).
pub const NET_EPHEMERAL: u16 = 1 << 3;

pub const AF_UNIX: u16 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

// Layout is checked, not hoped for: every shared type has a fixed size with no implicit padding.
const _: () = assert!(size_of::<StrRef>() == 4);
const _: () = assert!(size_of::<EventHeader>() == 72);
const _: () = assert!(size_of::<ExecEvent>() == 32);
const _: () = assert!(size_of::<ForkEvent>() == 16);
const _: () = assert!(size_of::<ExitEvent>() == 8);
const _: () = assert!(size_of::<FileEvent>() == 64);
const _: () = assert!(size_of::<NetEvent>() == 64);
const _: () = assert!(size_of::<DnsEvent>() == 40);
const _: () = assert!(size_of::<OpenKey>() == 24);
const _: () = assert!(size_of::<OpenSeen>() == 16);

/// Byte offset of the payload in a record.
pub const PAYLOAD_OFFSET: usize = size_of::<EventHeader>();
/// Byte offset of the data area in a record; payloads are padded to this size.
pub const DATA_OFFSET: usize = PAYLOAD_OFFSET + MAX_PAYLOAD;
/// Largest payload.
pub const MAX_PAYLOAD: usize = 64;
const _: () = assert!(size_of::<ExecEvent>() <= MAX_PAYLOAD);
const _: () = assert!(size_of::<FileEvent>() <= MAX_PAYLOAD);
const _: () = assert!(size_of::<NetEvent>() <= MAX_PAYLOAD);
const _: () = assert!(size_of::<DnsEvent>() <= MAX_PAYLOAD);

/// Largest record the kernel can emit.
pub const MAX_RECORD: usize = DATA_OFFSET + crate::config::DATA_SIZE;
