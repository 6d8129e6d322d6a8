//! What the process table knows about one process, whether it learned it from events or read
//! it from `/proc`.

use super::container::ContainerIdentity;

/// What the table knows about one process.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Start time in clock ticks since boot (see
    /// [`start_key_from_ns`](super::procfs::start_key_from_ns)).
    pub start_key: u64,
    pub ppid: u32,
    /// Executable path ([`escape_bytes`](super::escape_bytes) form); `None` when unknown or
    /// unreadable (kernel threads).
    pub exe: Option<String>,
    /// Arguments, each in [`escape_bytes`](super::escape_bytes) form.
    pub argv: Vec<String>,
    /// The command line was longer than `ARGV_MAX` bytes and `argv` holds its start.
    pub argv_truncated: bool,
    pub cwd: Option<String>,
    /// Real user id.
    pub uid: u32,
    pub container: ContainerIdentity,
    /// The container and pod as the runtime names them, once it answered.
    pub workload: crate::identity::Workload,
    pub exited: bool,
}

impl ProcessInfo {
    /// The process as its exec would have looked to profile selectors (processes already running
    /// when the agent or a learning session starts); `parent_exe` is its parent's executable.
    pub fn exec_info<'a>(&'a self, parent_exe: Option<&'a str>) -> crate::rules::ExecInfo<'a> {
        crate::rules::ExecInfo {
            exe: self.exe.as_deref(),
            filename: self.argv.first().map_or("", String::as_str),
            argv: &self.argv,
            uid: self.uid,
            parent_exe,
            container_id: self.container.container_id.as_deref(),
            pod_uid: self.container.pod_uid.as_deref(),
            container: self.workload.container.as_deref(),
            pod: self.workload.pod.as_deref(),
            cwd: self.cwd.as_deref(),
        }
    }
}
