//! The `content` key of detections: whether a file holds one of some substrings. The agent
//! reads the file when every other key of the block holds (a Python startup hook just written
//! or about to be loaded), through `/proc/PID/root` so a container's file is the container's.
//!
//! Bounded and safe to point anywhere: only regular files (checked on the open descriptor,
//! opened non-blocking so a FIFO swapped in cannot stall the pipeline), at most
//! [`MAX_READ`] bytes; what is read is matched, never logged. Small files are cached by
//! (path, inode, size, modification time), so an interpreter start reading every `.pth` of a
//! site-packages directory costs a `stat` each, not a read.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Most bytes read of a file (a startup hook is a few lines; a payload inlined in one is
/// within this).
pub const MAX_READ: u64 = 64 * 1024;
/// Files up to this size are cached...
const CACHE_FILE_MAX: usize = 8 * 1024;
/// ...in at most this many entries (the cache is emptied when full).
const CACHE_ENTRIES: usize = 256;

type Key = (String, u64, u64, i64, i64);

fn cache() -> &'static Mutex<HashMap<Key, Arc<str>>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Arc<str>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether the file `path` as process `pid` sees it holds one of `needles`. A file that
/// cannot be read (gone, not a regular file) holds none.
pub fn contains_any(pid: u32, path: &str, needles: &[String]) -> bool {
    content(pid, path).is_some_and(|text| needles.iter().any(|n| text.contains(n.as_str())))
}

fn content(pid: u32, path: &str) -> Option<Arc<str>> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let in_root = PathBuf::from(format!("/proc/{pid}/root{path}"));
    let file = open(&in_root).or_else(|| open(path.as_ref()))?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let key = (
        path.to_owned(),
        meta.dev(),
        meta.ino(),
        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        meta.size() as i64,
    );
    if let Some(hit) = cache().lock().ok()?.get(&key) {
        return Some(hit.clone());
    }
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes).ok()?;
    let text: Arc<str> = String::from_utf8_lossy(&bytes).into();
    if bytes.len() <= CACHE_FILE_MAX
        && let Ok(mut c) = cache().lock()
    {
        if c.len() >= CACHE_ENTRIES {
            c.clear();
        }
        c.insert(key, text.clone());
    }
    Some(text)
}

fn open(path: &std::path::Path) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::contains_any;

    #[test]
    fn reads_regular_files_only_and_sees_rewrites() {
        let dir = std::env::temp_dir().join(format!("monitor-content-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let pth = dir.join("x.pth");
        let p = pth.to_str().expect("utf-8");
        let me = std::process::id();
        let needles = vec!["b64decode".to_owned()];
        std::fs::write(&pth, "/opt/lib\n").expect("write");
        assert!(!contains_any(me, p, &needles));
        std::fs::write(&pth, "import base64; exec(base64.b64decode('eA=='))\n").expect("write");
        assert!(contains_any(me, p, &needles), "a rewrite is read again");
        assert!(
            !contains_any(me, "/dev/zero", &needles),
            "not a regular file"
        );
        assert!(!contains_any(me, "relative.pth", &needles));
        assert!(!contains_any(me, &format!("{p}.missing"), &needles));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
