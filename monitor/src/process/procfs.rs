//! Reading processes from `/proc`, and the start-time key shared with the kernel's events.

use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use monitor_common::config::ARGV_MAX;
use procfs::ProcError;
use procfs::process::Process;

use super::container;
use super::escape_bytes;
use super::info::ProcessInfo;

const NSEC_PER_SEC: u64 = 1_000_000_000;
/// `/proc/<pid>/cgroup` is a line per hierarchy; far larger than any real one.
const CGROUP_MAX: usize = 64 * 1024;

/// Normalises a kernel `start_boottime` (ns) to the clock ticks of `/proc/<pid>/stat` field 22,
/// with the kernel's own arithmetic (`ns / (1e9 / USER_HZ)`), so both give the same key.
pub fn start_key_from_ns(ns: u64) -> u64 {
    ns / (NSEC_PER_SEC / ticks_per_second()).max(1)
}

pub fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| match procfs::ticks_per_second() {
        0 => 100,
        t => t,
    })
}

/// Reads one process from `/proc`. `NotFound` means the process is gone.
pub(super) fn read_process(p: &Process) -> Result<ProcessInfo, ProcError> {
    let stat = p.stat()?;
    let uid = match p.status() {
        Ok(status) => status.ruid,
        Err(ProcError::NotFound(path)) => return Err(ProcError::NotFound(path)),
        // hidepid or an odd kernel: the owner of /proc/<pid> is the effective uid.
        Err(_) => p.uid()?,
    };
    // The same bound the kernel applies to an exec's argv: one process with a huge command
    // line must not bloat the alert of every descendant that lists it as an ancestor.
    let (argv, argv_truncated) = match read_relative(p, "cmdline", ARGV_MAX + 1) {
        Ok(raw) if raw.len() > ARGV_MAX => (split_cmdline(&raw[..ARGV_MAX]), true),
        Ok(raw) => (split_cmdline(&raw), false),
        Err(e) if is_gone(&e) => return Err(ProcError::NotFound(None)),
        Err(_) => (Vec::new(), false),
    };
    let container = read_relative(p, "cgroup", CGROUP_MAX)
        .map(|raw| container::from_proc_cgroup(&String::from_utf8_lossy(&raw)))
        .unwrap_or_default();
    let link = |path: std::path::PathBuf| escape_bytes(path.as_os_str().as_bytes());
    Ok(ProcessInfo {
        pid: stat.pid.cast_unsigned(),
        start_key: stat.starttime,
        ppid: stat.ppid.cast_unsigned(),
        exe: p.exe().ok().map(link),
        argv,
        argv_truncated,
        cwd: p.cwd().ok().map(link),
        uid,
        container,
        workload: crate::identity::Workload::default(),
        exited: false,
    })
}

/// At most `limit` bytes of `/proc/<pid>/NAME`.
fn read_relative(p: &Process, name: &str, limit: usize) -> io::Result<Vec<u8>> {
    let file = p.open_relative(name).map_err(|e| match e {
        ProcError::NotFound(_) => io::Error::from(io::ErrorKind::NotFound),
        ProcError::Io(e, _) => e,
        other => io::Error::other(other.to_string()),
    })?;
    let mut raw = Vec::new();
    file.take(limit as u64).read_to_end(&mut raw)?;
    Ok(raw)
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// `/proc/<pid>/cmdline` is NUL-terminated arguments; empty arguments in the middle are real.
pub(crate) fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(escape_bytes).collect()
}
