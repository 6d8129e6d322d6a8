//! cgroup v2: finding the hierarchy, the id of a cgroup, and test cgroups that are emptied and
//! removed on drop.

use std::{
    fmt::Write as _,
    fs::{self, File},
    io::{self, Read as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process,
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use crate::{agent::POLL, warn};

/// How long a test cgroup may stay busy after its processes were killed.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the cgroup v2 hierarchy is mounted (the first `cgroup2` entry of /proc/self/mountinfo),
/// e.g. /sys/fs/cgroup/unified on a hybrid host.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mount_point = mount.split(' ').nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup v2 path relative to the hierarchy's root (the `0::` line of
/// /proc/self/cgroup), e.g. "/" or "/user.slice/session-1.scope".
pub fn own_cgroup2_path() -> Option<String> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// The id of the cgroup at `dir`: the inode number of its directory, which is what
/// `bpf_get_current_cgroup_id` returns for a task in it.
pub fn cgroup_id(dir: &Path) -> io::Result<u64> {
    fs::metadata(dir).map(|m| m.ino())
}

/// Whether a cgroup path has a component carrying a 64-hex container id, so processes in it
/// belong to a container.
pub fn path_looks_containerised(path: &str) -> bool {
    path.split('/').any(|component| {
        component
            .split(|c: char| !c.is_ascii_hexdigit())
            .any(|run| run.len() == 64)
    })
}

/// `bytes` random bytes from /dev/urandom as lowercase hex.
#[track_caller]
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Err(e) = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)) {
        panic!("cannot read /dev/urandom: {e}");
    }
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A random version-4 style UUID, lowercase with dashes, like a Kubernetes pod UID.
#[track_caller]
pub fn random_uuid() -> String {
    let hex = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A chain of nested cgroups created under a fresh `monitor-test-<pid>-<n>` directory of the v2
/// root. On drop, from the deepest up: kills what is still inside (only processes the test put
/// there), waits until the cgroup is empty and removes it.
#[derive(Debug)]
pub struct CgroupTree {
    created: Vec<PathBuf>,
}

impl CgroupTree {
    /// Creates `<root>/monitor-test-<pid>-<n>/<components...>`.
    pub fn create(root: &Path, components: &[&str]) -> io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let top = format!(
            "monitor-test-{}-{}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut tree = Self {
            created: Vec::new(),
        };
        let mut dir = root.join(top);
        fs::create_dir(&dir)?;
        tree.created.push(dir.clone());
        for component in components {
            dir.push(component);
            fs::create_dir(&dir)?;
            tree.created.push(dir.clone());
        }
        Ok(tree)
    }

    /// The deepest cgroup.
    pub fn leaf(&self) -> &Path {
        self.created
            .last()
            .map_or(Path::new("/nonexistent"), PathBuf::as_path)
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            if let Err(e) = empty_and_remove(dir) {
                warn(&format!(
                    "WARNING: could not remove the test cgroup {}: {e}",
                    dir.display()
                ));
            }
        }
    }
}

fn empty_and_remove(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                kill_members(dir);
                thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Kills the processes left in a test cgroup: `cgroup.kill` where the kernel has it, else each
/// pid listed in `cgroup.procs`.
fn kill_members(dir: &Path) {
    let members = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    if members.trim().is_empty() || fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for pid in members
        .lines()
        .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
    {
        // SAFETY: kill has no memory-safety preconditions; the pid is one of the processes the
        // test moved into its own cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::{path_looks_containerised, random_uuid, unescape_mountinfo};

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/tail\04"), r"/tail\04");
    }

    #[test]
    fn recognises_container_cgroups() {
        let id = "a".repeat(64);
        assert!(path_looks_containerised(&format!(
            "/kubepods.slice/cri-containerd-{id}.scope"
        )));
        assert!(path_looks_containerised(&format!("/docker/{id}")));
        assert!(!path_looks_containerised("/user.slice/session-1.scope"));
        assert!(!path_looks_containerised("/"));
    }

    #[test]
    fn uuids_have_the_kubernetes_shape() {
        let uuid = random_uuid();
        let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
    }
}
