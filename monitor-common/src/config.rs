//! Knobs shared by both sides: limits that bound every copy across the kernel boundary, map
//! indices and the names of the kernel programs and maps (so loader and programs cannot drift).

/// Bytes of argv copied at exec (NUL-separated, as the kernel stores them). Longer argv is
/// truncated and flagged with [`crate::FLAG_ARGV_TRUNCATED`].
pub const ARGV_MAX: usize = 4096;
/// Most path components one dentry walk follows before it gives up and flags truncation.
pub const PATH_MAX_COMPONENTS: usize = 48;
/// Longest single name read from a dentry (NAME_MAX + 1 for the separator).
pub const NAME_MAX: usize = 256;
/// Longest user-supplied string copied (a path argument, a memfd name).
pub const USER_STR_MAX: usize = 4096;
/// Size of the per-event data area that holds strings. Power of two: the kernel masks offsets.
pub const DATA_SIZE: usize = 16384;
/// Mask applied to data-area offsets in the kernel so the verifier can prove bounds.
pub const DATA_MASK: usize = DATA_SIZE - 1;
/// Slack after the data area so a write of up to `USER_STR_MAX` at any masked offset stays in
/// bounds of the scratch buffer.
pub const DATA_SLACK: usize = USER_STR_MAX;

/// Most bytes of a DNS answer copied from a packet (a classic UDP answer is at most 512; EDNS
/// answers usually stay under 1232). Power of two: the kernel masks the copy length.
pub const DNS_CAPTURE_MAX: usize = 2048;
/// Sockets remembered as having sent a DNS query (LRU): their answers are reported.
pub const DNS_SOCKETS_MAX: u32 = 16384;

/// Words of the `WATCHED` array: [`watch::BITS`] bits per possible pid (PID_MAX_LIMIT = 4M on
/// 64-bit), [`watch::PER_WORD`] pids per word.
pub const WATCH_WORDS: u32 = (4 * 1024 * 1024) / watch::PER_WORD;

/// Layout of one pid's field in the `WATCHED` array. Bit 0 says whether the process's file and
/// network activity is recorded. Bits 1..=3 count the execs of that pid the kernel has seen and
/// user space has not yet decided about (saturating at [`watch::EXECS_MAX`], which then sticks
/// until exit). User space decides about a process from its fork and exec events, which it reads
/// later than they happen: a decision to stop watching is applied only when no exec has happened
/// since (count 0, or 1 for the exec being decided), in one compare-and-swap, so a stale
/// decision can never unwatch a newer image before its own exec is decided.
pub mod watch {
    /// Bits per pid.
    pub const BITS: u32 = 4;
    /// Pids per 64-bit word.
    pub const PER_WORD: u32 = 64 / BITS;
    /// The field's "recorded" bit.
    pub const WATCHED: u64 = 1;
    /// Shift of the undecided-exec count inside the field.
    pub const EXECS_SHIFT: u32 = 1;
    /// The count's largest value: from there on it sticks (too many undecided execs to tell).
    pub const EXECS_MAX: u64 = 7;
    /// The whole field.
    pub const FIELD: u64 = (1 << BITS) - 1;

    /// The word index of `pid` and the shift of its field in that word.
    #[inline(always)]
    pub const fn slot(pid: u32) -> (u32, u32) {
        (pid / PER_WORD, (pid % PER_WORD) * BITS)
    }

    /// The undecided-exec count in `field` (already shifted down).
    #[inline(always)]
    pub const fn execs(field: u64) -> u64 {
        (field >> EXECS_SHIFT) & EXECS_MAX
    }
}

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Ring buffer full: a record was dropped in the kernel.
    pub const RINGBUF_DROP: u32 = 0;
    /// An event was emitted to the ring buffer.
    pub const EMITTED: u32 = 1;
    /// A handler gave up on an event because a kernel read failed (the event is lost).
    pub const READ_ERROR: u32 = 2;
    /// A path walk hit `PATH_MAX_COMPONENTS` and was truncated.
    pub const PATH_TRUNCATED: u32 = 3;
    /// A tail call failed (program array entry missing).
    pub const TAIL_CALL_FAILED: u32 = 4;
    /// An open identical to one reported within the dedupe window was folded into it.
    pub const DEDUPED: u32 = 5;
    /// A 32-bit (ia32 compat) file or network syscall of a watched process was not decoded.
    pub const COMPAT_SKIPPED: u32 = 6;
    /// A DNS answer arrived on a socket that queried, but from another address than the one
    /// queried: not reported (a spoofed or stray packet).
    pub const DNS_UNMATCHED: u32 = 7;
    /// A child of a process under enforcement could not be put under enforcement (the
    /// `ENFORCED` table was full): it runs unenforced, and user space reports it.
    pub const ENFORCE_LOST: u32 = 8;
    /// A connect, send or bind the kernel refused, or (BPF LSM) an open or exec.
    pub const ENFORCE_BLOCKED: u32 = 9;
    /// A process the kernel killed (exec or open outside an enforce-mode profile).
    pub const ENFORCE_KILLED: u32 = 10;
    /// An exec or open of an enforced process whose path the kernel could not judge (its walk
    /// was truncated): not killed, left to user space.
    pub const ENFORCE_UNDECIDED: u32 = 11;
    /// A record not sent because the agent is stopping (it no longer reads them).
    pub const AFTER_STOP: u32 = 12;
    /// [`RINGBUF_DROP`] split by the dropped record's family: process (exec, fork, exit), file,
    /// network (with DNS answers); `RINGBUF_DROP_PROCESS + kind / 100`.
    pub const RINGBUF_DROP_PROCESS: u32 = 13;
    pub const RINGBUF_DROP_FILE: u32 = 14;
    pub const RINGBUF_DROP_NET: u32 = 15;
    /// Thread groups the kernel keeps ring buffer drops of (`DROPS_BY_PROCESS`, LRU: the
    /// processes that dropped longest ago fall out; the family counters above stay exact).
    pub const DROPS_BY_PROCESS_MAX: u32 = 4096;
    /// Number of counters.
    pub const COUNT: u32 = 16;
}

/// Indices into the `SWITCHES` array: settings user space changes while the programs run.
pub mod switch {
    /// Non-zero: every exec'ing process is watched from its first instruction until user space
    /// has decided (a profile or a learning session may select it).
    pub const WATCH_ON_EXEC: u32 = 0;
    /// Generation of the last open-dedupe reset (`OPENS_RESET`): a repeat compares it with
    /// the generation its entry was last checked at, so the common case costs one array read.
    pub const RESET_GEN: u32 = 1;
    /// Non-zero: the agent is stopping; records are counted (`AFTER_STOP`), not sent, so its
    /// last drain of the ring buffer reads everything that was sent.
    pub const STOPPED: u32 = 2;
    /// Non-zero: the BPF LSM hooks judge opens and execs of enforced processes (and refuse
    /// with `EPERM`), so the tracepoints do not judge them again.
    pub const LSM: u32 = 3;
    /// Non-zero once user space has put a process under enforcement (never cleared): until
    /// then no process has a slot, and the open dedupe does not look for one.
    pub const ENFORCING: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// Slots of the `SYSCALL_HANDLERS` program array used by the `sys_exit` dispatcher.
pub mod handler {
    /// Handled inline by the dispatcher (no program in the array).
    pub const FILE_OPEN: u32 = 0;
    pub const FILE_OTHER: u32 = 1;
    pub const NET: u32 = 2;
    pub const COUNT: u32 = 4;
}

/// Kernel struct member offsets resolved from the running kernel's BTF at load time.
///
/// Index into the `OFFSETS` global array with these constants. A value of `u32::MAX` means
/// "not present in this kernel"; programs treat it as a failed read.
pub mod off {
    pub const TASK_REAL_PARENT: usize = 0;
    pub const TASK_TGID: usize = 1;
    pub const TASK_PID: usize = 2;
    pub const TASK_MM: usize = 3;
    pub const TASK_FS: usize = 4;
    pub const TASK_FILES: usize = 5;
    pub const TASK_REAL_CRED: usize = 6;
    pub const TASK_SIGNAL: usize = 7;
    pub const TASK_EXIT_CODE: usize = 8;
    pub const TASK_START_BOOTTIME: usize = 9;
    pub const TASK_GROUP_LEADER: usize = 10;
    pub const MM_ARG_START: usize = 11;
    pub const MM_ARG_END: usize = 12;
    pub const MM_EXE_FILE: usize = 13;
    pub const FS_PWD: usize = 14;
    pub const FILES_FDT: usize = 15;
    pub const FDT_FD: usize = 16;
    pub const FDT_MAX_FDS: usize = 17;
    pub const FILE_F_PATH: usize = 18;
    pub const FILE_F_FLAGS: usize = 19;
    pub const FILE_F_MODE: usize = 20;
    pub const FILE_PRIVATE_DATA: usize = 21;
    pub const PATH_MNT: usize = 22;
    pub const PATH_DENTRY: usize = 23;
    pub const DENTRY_D_PARENT: usize = 24;
    pub const DENTRY_D_NAME: usize = 25;
    pub const QSTR_NAME: usize = 26;
    pub const QSTR_LEN: usize = 27;
    pub const VFSMOUNT_MNT_ROOT: usize = 28;
    pub const MOUNT_MNT: usize = 29;
    pub const MOUNT_MNT_PARENT: usize = 30;
    pub const MOUNT_MNT_MOUNTPOINT: usize = 31;
    pub const CRED_UID: usize = 32;
    pub const CRED_GID: usize = 33;
    pub const CRED_EUID: usize = 34;
    pub const CRED_EGID: usize = 35;
    pub const SIGNAL_LIVE: usize = 36;
    pub const BPRM_FILENAME: usize = 37;
    pub const BPRM_FILE: usize = 38;
    pub const SOCKET_SK: usize = 39;
    pub const SOCK_FAMILY: usize = 40;
    pub const SOCK_DADDR: usize = 41;
    pub const SOCK_RCV_SADDR: usize = 42;
    pub const SOCK_DPORT: usize = 43;
    pub const SOCK_NUM: usize = 44;
    pub const SOCK_V6_DADDR: usize = 45;
    pub const SOCK_V6_RCV_SADDR: usize = 46;
    pub const SOCK_PROTOCOL: usize = 47;
    pub const SOCK_TYPE: usize = 48;
    pub const FS_ROOT: usize = 49;
    pub const FILE_F_INODE: usize = 50;
    pub const INODE_I_INO: usize = 51;
    pub const INODE_I_SB: usize = 52;
    pub const SUPER_BLOCK_S_MAGIC: usize = 53;
    pub const BPRM_BUF: usize = 54;
    /// Number of offset slots (array length; spare slots stay `u32::MAX`).
    pub const COUNT: usize = 64;
}

/// Program and map names, shared so the loader cannot drift from the object file.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const WATCHED: &str = "WATCHED";
    pub const SYSCALL_HANDLERS: &str = "SYSCALL_HANDLERS";
    pub const OFFSETS: &str = "OFFSETS";
    pub const RECORD_ALL: &str = "RECORD_ALL";
    pub const AGENT_TGID: &str = "AGENT_TGID";
    pub const DEDUPE_WINDOW_JIFFIES: &str = "DEDUPE_WINDOW_JIFFIES";
    pub const PROG_SYS_EXIT: &str = "sys_exit";
    pub const PROG_FILE_OTHER: &str = "sys_exit_file";
    pub const PROG_NET: &str = "sys_exit_net";
    pub const PROG_EXEC: &str = "sched_process_exec";
    pub const PROG_FORK: &str = "sched_process_fork";
    pub const PROG_EXIT: &str = "sched_process_exit";
    pub const DNS_SOCKETS: &str = "DNS_SOCKETS";
    pub const OPENS_SEEN: &str = "OPENS_SEEN";
    pub const DROPS_BY_PROCESS: &str = "DROPS_BY_PROCESS";
    pub const PROG_DNS_CONNECT4: &str = "dns_connect4";
    pub const PROG_DNS_CONNECT6: &str = "dns_connect6";
    pub const PROG_DNS_SENDMSG4: &str = "dns_sendmsg4";
    pub const PROG_DNS_SENDMSG6: &str = "dns_sendmsg6";
    pub const PROG_DNS_INGRESS: &str = "dns_ingress";
    /// Array of runtime switches the agent flips while running, indexed by [`super::switch`].
    pub const SWITCHES: &str = "SWITCHES";
    pub const OPENS_RESET: &str = "OPENS_RESET";
    pub const ENFORCED: &str = "ENFORCED";
    pub const NET_ALLOW: &str = "NET_ALLOW";
    pub const LISTEN_ALLOW: &str = "LISTEN_ALLOW";
    pub const NET_DENIED: &str = "NET_DENIED";
    pub const PROG_BIND4: &str = "enforce_bind4";
    pub const PROG_BIND6: &str = "enforce_bind6";
    pub const PROG_LSM_FILE_OPEN: &str = "lsm_file_open";
    pub const PROG_LSM_BPRM_CHECK: &str = "lsm_bprm_check";
    pub const PATH_RULES: &str = "PATH_RULES";
    pub const POLICY_SLOT: &str = "POLICY_SLOT";
    pub const SERVING_POLICY: &str = "SERVING_POLICY";
    pub const HASH_SEED: &str = "HASH_SEED";
}
