//! Cgroup v2 id -> cgroup path (and container identity).
//!
//! `bpf_get_current_cgroup_id()` returns the id of the task's cgroup in the v2 (unified)
//! hierarchy, also on hybrid hosts. That id is the kernfs node id, which is the inode number of
//! the cgroup's directory in the cgroup2 filesystem. [`CgroupResolver`] finds a cgroup by
//! walking that filesystem and comparing inode numbers, and caches what it finds.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procfs::ProcError;
use procfs::process::{MountInfo, Process};
use serde::Serialize;

use super::container::{self, ContainerIdentity};
use super::escape_bytes;

/// Default bound on the number of cached cgroups.
pub const DEFAULT_CACHE_CAPACITY: usize = 16 * 1024;
/// Default minimum time between two rescans of the cgroup tree.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// Why the cgroup resolver could not start.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read /proc/self/mountinfo to find the cgroup2 mount (is /proc mounted?)")]
    MountInfo {
        #[source]
        source: ProcError,
    },
    #[error(
        "no cgroup2 filesystem is mounted (none in /proc/self/mountinfo), so cgroup ids cannot \
         be mapped to containers; use a host with unified or hybrid cgroups, or mount one with \
         `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )]
    NoCgroup2Mount,
}

/// Counters of the resolver's work, for the stats line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CgroupStats {
    /// Cgroups currently cached.
    pub cached: usize,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups not in the cache.
    pub misses: u64,
    /// Walks of the cgroup tree.
    pub scans: u64,
    /// Misses that did not rescan because the last scan was too recent.
    pub rate_limited: u64,
    /// Misses answered by opening the cgroup by its id (no walk needed).
    pub by_handle: u64,
}

#[derive(Debug)]
struct Cached {
    path: String,
    /// Parsed on first use.
    identity: Option<ContainerIdentity>,
}

/// Maps cgroup v2 ids to paths relative to the cgroup2 root, with a bounded cache.
///
/// On a miss the whole tree is walked again (breadth first) and the cache is rebuilt from the
/// walk, which also drops cgroups that were removed. Walks are rate-limited (at most one per
/// [`DEFAULT_RESCAN_INTERVAL`] unless configured otherwise) so a flood of unknown ids cannot
/// cause a scan storm; a miss inside the interval answers "unknown". If the host has more
/// cgroups than the cache holds, the shallowest ones (and the one asked for) are kept.
///
/// On a real cgroup2 mount a miss is first answered exactly, without a walk: the cgroup id is
/// also its file handle (`FILEID_KERNFS`), so `open_by_handle_at` opens the cgroup's directory
/// and `/proc/self/fd` names it. That finds a cgroup created a moment ago, which a
/// rate-limited walk may not, and is cheap enough not to be rate-limited.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    /// The cgroup2 mount's root directory, for `open_by_handle_at`; `None` for a plain
    /// directory tree (tests) or when it cannot be opened.
    mount: Option<OwnedFd>,
    /// The host has no cgroup v1 hierarchy (see [`Self::unified`]).
    unified: bool,
    /// Device of `root`, to tell paths on the cgroup2 mount from others (0: unknown).
    root_dev: u64,
    cache: HashMap<u64, Cached>,
    capacity: usize,
    rescan_interval: Duration,
    last_scan: Option<Instant>,
    stats: CgroupStats,
}

impl CgroupResolver {
    /// A resolver for this host's cgroup2 mount, found in `/proc/self/mountinfo`.
    pub fn new() -> Result<Self, CgroupError> {
        let mounts = Process::myself()
            .and_then(|me| me.mountinfo())
            .map_err(|source| CgroupError::MountInfo { source })?;
        let root = cgroup2_mount_point(mounts.iter()).ok_or(CgroupError::NoCgroup2Mount)?;
        let mut resolver = Self::with_root(root);
        resolver.mount = open_dir(&resolver.root);
        // The root cgroup, opened by its handle, tells whether handles work here at all
        // (they need CAP_DAC_READ_SEARCH, a seccomp profile that allows open_by_handle_at,
        // and Linux >= 5.5 for cgroup handles).
        let root_id = fs::metadata(&resolver.root).map(|m| m.ino()).ok();
        if root_id.and_then(|id| resolver.path_by_handle(id)).is_none() {
            tracing::info!(
                root = %resolver.root.display(),
                "cgroups cannot be opened by id here: new cgroups are found by rate-limited walks"
            );
            resolver.mount = None;
        }
        // /proc/self/cgroup lists every hierarchy of the host, not only those mounted here.
        resolver.unified = fs::read_to_string("/proc/self/cgroup")
            .is_ok_and(|text| text.lines().all(|l| l.starts_with("0::")));
        Ok(resolver)
    }

    /// Whether the host has no cgroup v1 hierarchy (only the `0::` line in /proc/self/cgroup):
    /// then the unified cgroup is the only place a container can be named, and its answer is
    /// final.
    pub fn unified(&self) -> bool {
        self.unified
    }

    /// A resolver for the cgroup2 filesystem mounted at `root` (any directory tree works, which
    /// tests use).
    pub fn with_root(root: PathBuf) -> Self {
        Self {
            root_dev: fs::metadata(&root).map_or(0, |m| m.dev()),
            root,
            mount: None,
            unified: false,
            cache: HashMap::new(),
            capacity: DEFAULT_CACHE_CAPACITY,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            last_scan: None,
            stats: CgroupStats::default(),
        }
    }

    /// Sets the minimum time between rescans (`Duration::ZERO` rescans on every miss).
    #[allow(
        dead_code,
        reason = "tuning knob: tests set it, the agent uses the default"
    )]
    pub fn with_rescan_interval(mut self, interval: Duration) -> Self {
        self.rescan_interval = interval;
        self
    }

    /// Sets the cache bound (at least 1).
    #[allow(
        dead_code,
        reason = "tuning knob: tests set it, the agent uses the default"
    )]
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The path of cgroup `id` relative to the cgroup2 root, in the form `/proc/<pid>/cgroup`
    /// uses (`/` for the root, `/system.slice/foo.service` below it); `None` if unknown.
    #[allow(
        dead_code,
        reason = "the stage needs only `identity`; paths are for reporting"
    )]
    pub fn path(&mut self, id: u64) -> Option<String> {
        self.lookup(id).map(|c| c.path.clone())
    }

    /// The id of the cgroup at `path` as /proc/<pid>/cgroup writes it (`/` for the root), if
    /// it exists.
    ///
    /// `None` also for a path outside the mount: a process in another cgroup namespace shows
    /// `/../..`-style paths relative to that namespace's root.
    pub fn id_of(&self, path: &str) -> Option<u64> {
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        let meta = fs::metadata(self.root.join(rel)).ok()?;
        (meta.dev() == self.root_dev).then(|| meta.ino())
    }

    /// The cgroup2 mount point (or the tree given to [`Self::with_root`]).
    #[cfg(test)]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Treats the host as unified (or not), whatever is mounted.
    #[cfg(test)]
    pub fn set_unified(&mut self, unified: bool) {
        self.unified = unified;
    }

    /// The container identity of cgroup `id`; empty if the cgroup is unknown or no container.
    #[cfg(test)]
    pub fn identity(&mut self, id: u64) -> ContainerIdentity {
        self.known_identity(id).unwrap_or_default()
    }

    /// The container identity of cgroup `id` (empty: no container); `None` if the cgroup is
    /// unknown.
    pub fn known_identity(&mut self, id: u64) -> Option<ContainerIdentity> {
        let cached = self.lookup(id)?;
        Some(
            cached
                .identity
                .get_or_insert_with(|| container::from_cgroup_path(&cached.path))
                .clone(),
        )
    }

    /// Counters so far.
    #[allow(dead_code, reason = "for the agent's stats line, not wired yet")]
    pub fn stats(&self) -> CgroupStats {
        CgroupStats {
            cached: self.cache.len(),
            ..self.stats
        }
    }

    fn lookup(&mut self, id: u64) -> Option<&mut Cached> {
        if self.cache.contains_key(&id) {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
            if self.mount.is_some() {
                // Exact: a cgroup the handle does not open is gone (or outside this mount),
                // and a walk would not find it either.
                let path = self.path_by_handle(id)?;
                self.stats.by_handle += 1;
                if self.cache.len() >= self.capacity {
                    // Entries are not purged by walks any more: start over rather than keep
                    // cgroups that may be long gone. Misses cost three syscalls each.
                    self.cache.clear();
                }
                let cached = Cached {
                    path,
                    identity: None,
                };
                return Some(self.cache.entry(id).or_insert(cached));
            }
            let now = Instant::now();
            let allowed = self
                .last_scan
                .is_none_or(|last| now.duration_since(last) >= self.rescan_interval);
            if !allowed {
                self.stats.rate_limited += 1;
                return None;
            }
            self.last_scan = Some(now);
            self.rescan(id);
        }
        self.cache.get_mut(&id)
    }

    /// The path of cgroup `id` found by opening it by its file handle, in the form the walk
    /// gives; `None` when there is no mount to open it on, or no such cgroup (any more).
    fn path_by_handle(&self, id: u64) -> Option<String> {
        /// `FILEID_KERNFS`: a kernfs node id as an exportfs file handle.
        const FILEID_KERNFS: libc::c_int = 0xfe;
        /// `struct file_handle` with room for the 8-byte kernfs id.
        #[repr(C)]
        struct KernfsHandle {
            handle_bytes: libc::c_uint,
            handle_type: libc::c_int,
            id: [u8; 8],
        }
        let mount = self.mount.as_ref()?;
        let mut handle = KernfsHandle {
            handle_bytes: 8,
            handle_type: FILEID_KERNFS,
            id: id.to_ne_bytes(),
        };
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        // SAFETY: `handle` is a file_handle header followed by `handle_bytes` bytes of handle,
        // valid for the call; the result is checked before it is owned.
        let fd =
            unsafe { libc::open_by_handle_at(mount.as_raw_fd(), (&raw mut handle).cast(), flags) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a descriptor the call just opened, owned by nothing else.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let target = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
        // What was opened is the cgroup asked for (its inode number is the id), and it still
        // exists (a removed directory has no links).
        let meta = fs::File::from(dir).metadata().ok()?;
        if meta.ino() != id || meta.nlink() == 0 {
            return None;
        }
        relative_path(&self.root, &target)
    }

    /// Walks the tree and rebuilds the cache, always keeping `wanted` if it is found.
    fn rescan(&mut self, wanted: u64) {
        self.stats.scans += 1;
        let mut old = std::mem::take(&mut self.cache);
        let mut keep = |cache: &mut HashMap<u64, Cached>, ino: u64, path: String| {
            if cache.len() >= self.capacity && ino != wanted {
                return;
            }
            // Carry a parsed identity over when the cgroup is unchanged.
            let identity = old
                .remove(&ino)
                .filter(|c| c.path == path)
                .and_then(|c| c.identity);
            cache.insert(ino, Cached { path, identity });
        };
        let mut cache = HashMap::new();
        if let Ok(meta) = fs::metadata(&self.root) {
            keep(&mut cache, meta.ino(), String::from("/"));
        }
        let mut queue = VecDeque::from([(self.root.clone(), String::new())]);
        while let Some((dir, rel)) = queue.pop_front() {
            // Cgroups come and go during the walk; a vanished directory is simply skipped.
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                let child = format!("{rel}/{}", escape_bytes(entry.file_name().as_bytes()));
                keep(&mut cache, meta.ino(), child.clone());
                queue.push_back((entry.path(), child));
            }
        }
        if cache.len() > self.capacity {
            // Only possible when `wanted` was added past the bound: make room for it.
            let extra = cache.keys().copied().find(|&k| k != wanted);
            if let Some(k) = extra {
                cache.remove(&k);
            }
        }
        tracing::trace!(root = %self.root.display(), cgroups = cache.len(), "cgroup tree scanned");
        self.cache = cache;
    }
}

/// `/`-separated path of `target` below `root`, each name escaped as the walk does (`/` for
/// the root itself); `None` if `target` is not below `root` or was removed (" (deleted)").
fn relative_path(root: &Path, target: &Path) -> Option<String> {
    if target.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return None;
    }
    let rel = target.strip_prefix(root).ok()?;
    let mut path = String::new();
    for name in rel.iter() {
        path.push('/');
        path.push_str(&escape_bytes(name.as_bytes()));
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(path)
}

/// A directory opened read-only (close-on-exec), or `None`.
fn open_dir(path: &Path) -> Option<OwnedFd> {
    fs::File::open(path).ok().map(OwnedFd::from)
}

/// This host's cgroup2 mount point (the hierarchy's root), from `/proc/self/mountinfo`.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = Process::myself().and_then(|me| me.mountinfo()).ok()?;
    cgroup2_mount_point(mounts.iter())
}

/// The mount point of the cgroup2 filesystem: the first `cgroup2` mount of the hierarchy's
/// root (bind mounts of sub-trees are skipped, their inode walk would miss cgroups).
fn cgroup2_mount_point<'a>(mounts: impl Iterator<Item = &'a MountInfo>) -> Option<PathBuf> {
    let mut fallback = None;
    for m in mounts.filter(|m| m.fs_type == "cgroup2") {
        if m.root == "/" {
            return Some(m.mount_point.clone());
        }
        fallback.get_or_insert_with(|| m.mount_point.clone());
    }
    fallback
}

#[cfg(test)]
pub(super) mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use procfs::process::MountInfo;

    use super::{CgroupError, CgroupResolver, cgroup2_mount_point};
    use crate::process::container::{ContainerIdentity, RUNTIME_CONTAINERD};

    pub(in crate::process) const ID: &str =
        "4d6d7f0a3c2b1e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f";
    pub(in crate::process) const POD: &str = "0f4c8e22-1b6a-4d1a-9f37-1c5d2b1e7a11";
    const POD_: &str = "0f4c8e22_1b6a_4d1a_9f37_1c5d2b1e7a11";

    /// Directories created by a test, removed bottom-up (with `remove_dir`: cgroup directories
    /// hold kernel files that cannot be deleted one by one) even when the test fails.
    pub(in crate::process) struct DirGuard {
        created: Vec<PathBuf>,
    }

    impl DirGuard {
        /// Creates `base/rel`, one level at a time, recording each new directory.
        pub(in crate::process) fn create(
            base: &Path,
            rel: &str,
        ) -> std::io::Result<(Self, PathBuf)> {
            let mut guard = Self {
                created: Vec::new(),
            };
            let mut dir = base.to_path_buf();
            for comp in rel.split('/').filter(|c| !c.is_empty()) {
                dir.push(comp);
                if !dir.is_dir() {
                    fs::create_dir(&dir)?;
                    guard.created.push(dir.clone());
                }
            }
            Ok((guard, dir))
        }

        pub(in crate::process) fn extend(&mut self, mut other: Self) {
            self.created.append(&mut other.created);
        }
    }

    impl Drop for DirGuard {
        fn drop(&mut self) {
            for dir in self.created.iter().rev() {
                // A cgroup may count a just-reaped task for a moment (EBUSY).
                let mut tries = 0;
                let result = loop {
                    match fs::remove_dir(dir) {
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        other => break other,
                    }
                };
                if let Err(e) = result {
                    eprintln!("cleanup: cannot remove {}: {e}", dir.display());
                }
            }
        }
    }

    pub(in crate::process) fn unique_name() -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "monitor-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A pod container's cgroup under a fresh `monitor-test-*` directory below the cgroup2
    /// `root`: its guard, that directory's name and the leaf. `None` after
    /// [`unavailable`] says why not.
    pub(in crate::process) fn pod_cgroup(root: &Path) -> Option<(DirGuard, String, PathBuf)> {
        let top = unique_name();
        match DirGuard::create(root, &format!("{top}/{}", pod_container_rel())) {
            Ok((guard, leaf)) => Some((guard, top, leaf)),
            Err(e) => {
                unavailable(&format!(
                    "cannot create a cgroup under {}: {e}",
                    root.display()
                ));
                None
            }
        }
    }

    pub(in crate::process) fn pod_container_rel() -> String {
        format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_}.slice/\
             cri-containerd-{ID}.scope"
        )
    }

    /// Skips loudly, or fails under CI, when the host cannot run a real-cgroup test.
    pub(in crate::process) fn unavailable(why: &str) {
        crate::testutil::skip_or_fail(&format!("real cgroup test cannot run: {why}"));
    }

    fn mount(line: &str) -> MountInfo {
        MountInfo::from_line(line).unwrap()
    }

    #[test]
    fn finds_cgroup2_mount_in_hybrid_and_unified_layouts() {
        let hybrid = [
            mount("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755"),
            mount("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"),
            mount("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw"),
        ];
        assert_eq!(
            cgroup2_mount_point(hybrid.iter()),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = [
            mount("25 23 0:22 /sub /mnt/sub rw - cgroup2 cgroup2 rw"),
            mount("26 23 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"),
        ];
        assert_eq!(
            cgroup2_mount_point(unified.iter()),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let v1_only = [mount(
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
        )];
        assert_eq!(cgroup2_mount_point(v1_only.iter()), None);
    }

    #[test]
    fn missing_mount_error_says_what_to_do() {
        let msg = CgroupError::NoCgroup2Mount.to_string();
        assert!(msg.contains("no cgroup2"), "{msg}");
        assert!(msg.contains("mount -t cgroup2"), "{msg}");
    }

    /// A fresh directory under the temp dir holding `rels`; returns its guard and path.
    fn plain_tree(rels: &[&str]) -> (DirGuard, PathBuf) {
        let top = unique_name();
        let tmp = std::env::temp_dir();
        let (mut guard, base) = DirGuard::create(&tmp, &top).unwrap();
        for rel in rels {
            let (g, _) = DirGuard::create(&base, rel).unwrap();
            guard.extend(g);
        }
        (guard, base)
    }

    #[test]
    fn resolves_directories_of_a_plain_tree() {
        let rel = pod_container_rel();
        let (mut guard, base) = plain_tree(&[&rel]);
        let mut r = CgroupResolver::with_root(base.clone()).with_rescan_interval(Duration::ZERO);

        let root_ino = fs::metadata(&base).unwrap().ino();
        assert_eq!(r.path(root_ino).as_deref(), Some("/"));
        let ino = fs::metadata(base.join(&rel)).unwrap().ino();
        assert_eq!(r.path(ino), Some(format!("/{rel}")));
        let want = ContainerIdentity {
            container_id: Some(ID.to_owned()),
            pod_uid: Some(POD.to_owned()),
            runtime: Some(RUNTIME_CONTAINERD),
        };
        assert_eq!(r.identity(ino), want);
        assert_eq!(r.identity(root_ino), ContainerIdentity::default());
        assert_eq!(r.stats().scans, 1);
        // A directory created after the first scan is found by the rescan a miss triggers.
        let (g, late) = DirGuard::create(&base, "system.slice/late.service").unwrap();
        guard.extend(g);
        let late_ino = fs::metadata(&late).unwrap().ino();
        assert_eq!(
            r.path(late_ino).as_deref(),
            Some("/system.slice/late.service")
        );
        assert_eq!(r.stats().scans, 2);
        // The identity parsed before the rescan is still served.
        assert_eq!(r.identity(ino), want);
    }

    #[test]
    fn rescans_are_rate_limited() {
        let (_guard, base) = plain_tree(&["a/b"]);
        let mut r =
            CgroupResolver::with_root(base.clone()).with_rescan_interval(Duration::from_secs(3600));
        let unknown = u64::MAX - 7;
        for _ in 0..1000 {
            assert_eq!(r.path(unknown), None);
        }
        let stats = r.stats();
        assert_eq!(stats.scans, 1);
        assert_eq!(stats.misses, 1000);
        assert_eq!(stats.rate_limited, 999);
        // Ids found by the one scan are still answered from the cache.
        let b = fs::metadata(base.join("a/b")).unwrap().ino();
        assert_eq!(r.path(b).as_deref(), Some("/a/b"));
        assert_eq!(r.stats().hits, 1);
        assert_eq!(r.stats().scans, 1);
    }

    #[test]
    fn cache_is_bounded_but_keeps_the_wanted_cgroup() {
        let rels: Vec<String> = (0..20).map(|i| format!("d{i}/e")).collect();
        let rels: Vec<&str> = rels.iter().map(String::as_str).collect();
        let (_guard, base) = plain_tree(&rels);
        let deep = fs::metadata(base.join("d19/e")).unwrap().ino();
        let mut r = CgroupResolver::with_root(base.clone())
            .with_rescan_interval(Duration::ZERO)
            .with_capacity(5);
        assert_eq!(r.path(deep).as_deref(), Some("/d19/e"));
        assert_eq!(r.stats().cached, 5);
    }

    #[test]
    fn real_cgroup2_ids_resolve_to_path_and_identity() {
        let mut r = match CgroupResolver::new() {
            Ok(r) => r.with_rescan_interval(Duration::ZERO),
            Err(e) => return unavailable(&e.to_string()),
        };
        let root = r.root.clone();
        let Some((_guard, top, leaf)) = pod_cgroup(&root) else {
            return;
        };
        let rel = format!("{top}/{}", pod_container_rel());
        let ino = fs::metadata(&leaf).unwrap().ino();
        assert_eq!(r.path(ino), Some(format!("/{rel}")));
        let identity = r.identity(ino);
        assert_eq!(identity.container_id.as_deref(), Some(ID));
        assert_eq!(identity.pod_uid.as_deref(), Some(POD));
        assert_eq!(identity.runtime, Some(RUNTIME_CONTAINERD));
        // The cgroup2 root is id 1, the root cgroup.
        assert_eq!(r.path(1).as_deref(), Some("/"));
        // /proc/<pid>/cgroup paths map back to ids, unless they lie outside the mount (the
        // `/../..` form of another cgroup namespace).
        assert_eq!(r.id_of(&format!("/{rel}")), Some(ino));
        assert_eq!(r.id_of("/"), Some(1));
        assert_eq!(r.id_of("/../.."), None);
        let top_ino = fs::metadata(root.join(&top)).unwrap().ino();
        assert_eq!(r.path(top_ino), Some(format!("/{top}")));
        assert!(r.identity(top_ino).is_empty());
    }

    #[test]
    fn a_cgroup_made_after_a_scan_is_found_by_its_handle_without_a_rescan() {
        let mut r = match CgroupResolver::new() {
            Ok(r) => r.with_rescan_interval(Duration::from_secs(3600)),
            Err(e) => return unavailable(&e.to_string()),
        };
        if r.mount.is_none() {
            return unavailable("open_by_handle_at is refused here");
        }
        let root = r.root.clone();
        // An id no handle opens is unknown, without a walk.
        assert_eq!(r.path(u64::MAX), None);
        let Some((guard, top, leaf)) = pod_cgroup(&root) else {
            return;
        };
        let rel = format!("{top}/{}", pod_container_rel());
        let ino = fs::metadata(&leaf).unwrap().ino();
        let identity = r.identity(ino);
        assert_eq!(identity.container_id.as_deref(), Some(ID));
        assert_eq!(identity.pod_uid.as_deref(), Some(POD));
        assert_eq!(r.path(ino), Some(format!("/{rel}")));
        let stats = r.stats();
        assert_eq!((stats.scans, stats.by_handle), (0, 1), "{stats:?}");
        // Gone: no handle opens it, and nothing else is made up.
        let top_ino = fs::metadata(root.join(&top)).unwrap().ino();
        drop(guard);
        assert_eq!(r.path(top_ino), None);
    }
}
