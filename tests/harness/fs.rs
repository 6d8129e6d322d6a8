//! Temporary directories and tmpfs mounts that always clean up.

use std::{
    env,
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use crate::warn;

/// A fresh directory under the system temp dir, removed with everything in it on drop. Its path
/// is canonical (symlinks resolved), so it can be compared with the paths the kernel reports.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates `<tmp>/monitor-test-<label>-XXXXXX`. Panics when that is impossible: every test
    /// needs one.
    #[track_caller]
    pub fn new(label: &str) -> Self {
        match Self::try_new(label) {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        }
    }

    pub fn try_new(label: &str) -> io::Result<Self> {
        Self::new_in(&env::temp_dir(), label)
    }

    /// Creates `<parent>/monitor-test-<label>-XXXXXX`.
    pub fn new_in(parent: &Path, label: &str) -> io::Result<Self> {
        let template = parent.join(format!("monitor-test-{label}-XXXXXX"));
        let mut template = CString::new(template.as_os_str().as_bytes())
            .map_err(io::Error::other)?
            .into_bytes_with_nul();
        // SAFETY: `template` is a writable, NUL-terminated buffer ending in "XXXXXX", which
        // mkdtemp overwrites in place; it outlives the call.
        let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if made.is_null() {
            return Err(io::Error::last_os_error());
        }
        template.pop(); // the NUL
        let created = PathBuf::from(std::ffi::OsStr::from_bytes(&template));
        // Owned from here on, so an error below still removes it.
        let mut dir = Self {
            path: created,
            keep: false,
        };
        dir.path = fs::canonicalize(&dir.path)?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative)
    }

    /// Leaves the directory in place on drop and says where it is.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

/// A file written for one test in a directory that outlives it (a shared agent's rules),
/// removed on drop, also when the test fails.
#[derive(Debug)]
pub struct FileGuard(PathBuf);

impl FileGuard {
    #[track_caller]
    pub fn write(path: PathBuf, contents: &str) -> Self {
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            warn(&format!("kept {}", self.path.display()));
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn(&format!(
                "WARNING: could not remove {}: {e}",
                self.path.display()
            ));
        }
    }
}

/// A tmpfs mounted on an existing directory, unmounted on drop (lazily if it is still busy).
/// Declare it after the [`TempDir`] holding its mount point, so it is dropped first.
#[derive(Debug)]
pub struct TmpfsMount {
    target: PathBuf,
}

impl TmpfsMount {
    pub fn new(target: &Path) -> io::Result<Self> {
        let c_target = c_path(target)?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV;
        // SAFETY: every pointer is a NUL-terminated string that lives across the call.
        let rc = unsafe {
            libc::mount(
                c"monitor-test".as_ptr(),
                c_target.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                c"size=4m,mode=0755".as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            target: target.to_path_buf(),
        })
    }

    /// Fills the file system with one file, to the last byte; the file to remove for room.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.target.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler file");
        let chunk = vec![0u8; 64 * 1024];
        while f.write(&chunk).is_ok_and(|n| n > 0) {}
        // The last partial page too.
        while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
        path
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let Ok(c_target) = c_path(&self.target) else {
            return;
        };
        // SAFETY: `c_target` is a NUL-terminated path that lives across the calls.
        let unmounted = unsafe { libc::umount2(c_target.as_ptr(), 0) } == 0
            || unsafe { libc::umount2(c_target.as_ptr(), libc::MNT_DETACH) } == 0;
        if !unmounted {
            warn(&format!(
                "WARNING: could not unmount the tmpfs on {}: {}",
                self.target.display(),
                io::Error::last_os_error()
            ));
        }
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}
