//! Where `monitor learn` writes, safely for a root process in a directory others may write to:
//! scratch files are created new (`O_EXCL`, which never follows a symlink) under random names,
//! and the profile replaces `--out` by a rename, so there is never half a file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Something nobody could have predicted for a file name: pid, time and an attempt counter
/// (files are still created with `O_EXCL`).
fn unique(attempt: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}.{nanos:x}.{attempt}", std::process::id())
}

fn file_name(out: &Path) -> String {
    out.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile.yaml".to_owned())
}

/// Creates a new file (mode 0600, never through a symlink) at the first free `name(attempt)`.
fn create_new(name: impl Fn(u32) -> PathBuf) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for attempt in 0..16 {
        let path = name(attempt);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free file name")))
}

/// Creates a new hidden scratch file next to `out`.
fn create_scratch(out: &Path, tag: &str) -> io::Result<(PathBuf, File)> {
    let name = file_name(out);
    create_new(|attempt| out.with_file_name(format!(".{name}.{tag}.{}", unique(attempt))))
}

/// Fails unless `out` can be written: its directory takes a new file, and an existing `out`
/// is writable.
pub fn check_writable(out: &Path) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (probe, _) = create_scratch(out, "probe")
        .with_context(|| format!("--out {}: cannot write in {}", out.display(), dir.display()))?;
    let _ = fs::remove_file(&probe);
    if out.exists() {
        OpenOptions::new()
            .append(true)
            .open(out)
            .with_context(|| format!("--out {}: the file is not writable", out.display()))?;
    }
    Ok(())
}

/// Writes `text` to `out` through a new scratch file in the same directory, renamed over it.
pub fn write_atomically(out: &Path, text: &str) -> anyhow::Result<()> {
    let write = || -> io::Result<()> {
        let (tmp, mut f) = create_scratch(out, "tmp")?;
        let done = f
            .write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| fs::rename(&tmp, out));
        if done.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        done
    };
    write().with_context(|| format!("writing {}", out.display()))
}

/// Keeps a profile that could not be written to `out`: a new file in the temporary directory
/// (mode 0600, never through a symlink). Returns its path.
pub fn salvage(out: &Path, text: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir();
    let name = file_name(out);
    let (path, mut f) =
        create_new(|attempt| dir.join(format!("monitor-learn-{}-{name}", unique(attempt))))
            .with_context(|| format!("creating a file in {}", dir.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::{check_writable, salvage, write_atomically};
    use crate::testutil::TempDir;

    #[test]
    fn writes_replace_the_file_whole_and_never_follow_a_prepared_link() {
        let dir = TempDir::new("learn-out");
        let out = dir.join("p.yaml");
        check_writable(&out).expect("writable");
        write_atomically(&out, "one\n").expect("write");
        write_atomically(&out, "two\n").expect("write again");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "two\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != "p.yaml")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // A link where a predictable scratch name would be is never written through.
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        symlink(&victim, dir.join(".p.yaml.tmp")).unwrap();
        write_atomically(&out, "three\n").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(check_writable(&dir.join("missing/p.yaml")).is_err());
        let kept = salvage(&out, "four\n").expect("salvage");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "four\n");
        assert!(kept.starts_with(std::env::temp_dir()), "{}", kept.display());
        std::fs::remove_file(kept).unwrap();
    }
}
