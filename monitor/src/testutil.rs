//! Helpers shared by the unit tests of every module.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh directory under the system temp dir, removed on drop (so also when a test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `monitor-TAG-PID-N`, emptied if a crashed run left it behind.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "monitor-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to `name` (directories created) and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A spawned child, killed and reaped on drop (so also when a test fails first).
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A unit test that cannot run on this host (`why`): under `CI=true` it fails; otherwise it
/// says so on the real standard error, which libtest does not capture (`eprintln!` of a
/// passing test is hidden, and a skip passes), and the caller returns.
#[track_caller]
pub fn skip_or_fail(why: &str) {
    use std::io::Write as _;
    let current = std::thread::current();
    let test = current.name().unwrap_or("<unnamed test>");
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        panic!("{test} cannot run under CI=true: {why}");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED (not a pass; CI=true makes it a failure): {test}: {why}"
    );
}
