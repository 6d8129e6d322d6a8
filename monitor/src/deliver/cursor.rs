//! Per-sink acknowledged cursors, one small file each.
//!
//! `cursor-<hex of the sink name>.ack` holds one line, `v1 next=<seq> crc=<8 hex digits>`,
//! where `next` is the first sequence number the sink has not acknowledged and the CRC-32
//! covers the text before ` crc=`. It is replaced atomically: written to a `.tmp` file,
//! fsync'ed, renamed over the old one, then the directory is fsync'ed.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Longest sink name accepted (its hex form must fit in a file name).
pub(super) const MAX_SINK_NAME: usize = 100;

/// File name of the cursor of sink `name`.
pub(super) fn file_name(name: &str) -> String {
    let mut s = String::with_capacity(11 + 2 * name.len());
    s.push_str("cursor-");
    for b in name.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(".ack");
    s
}

/// The sink name encoded in a cursor file name, if it is one.
pub(super) fn parse_file_name(file: &str) -> Option<String> {
    let hex = file.strip_prefix("cursor-")?.strip_suffix(".ack")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn body(next: u64) -> String {
    format!("v1 next={next}")
}

/// Reads a cursor file: `Ok(None)` when it does not exist, `Err` with `InvalidData` when it
/// cannot be parsed or its checksum does not match.
pub(super) fn load(path: &Path) -> io::Result<Option<u64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| invalid("no final newline"))?;
    let (head, crc) = line
        .rsplit_once(" crc=")
        .ok_or_else(|| invalid("no checksum"))?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| invalid("bad checksum field"))?;
    if crc32fast::hash(head.as_bytes()) != crc {
        return Err(invalid("checksum mismatch"));
    }
    let next = head
        .strip_prefix("v1 next=")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| invalid("unknown version or bad next field"))?;
    Ok(Some(next))
}

/// Atomically replaces the cursor file at `path` with `next`; `dir_file` is the handle of the
/// directory holding it, fsync'ed after the rename.
pub(super) fn store(dir_file: &File, path: &Path, next: u64) -> io::Result<()> {
    let head = body(next);
    let line = format!("{head} crc={:08x}\n", crc32fast::hash(head.as_bytes()));
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        dir_file.sync_all()
    })();
    if result.is_err() {
        // Best effort: a stale .tmp is also removed the next time the spool is opened.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::{file_name, load, parse_file_name, store};

    #[test]
    fn names_round_trip() {
        let n = "syslog:tcp://siem.example:6514";
        assert_eq!(parse_file_name(&file_name(n)).as_deref(), Some(n));
        assert_eq!(parse_file_name("cursor-6.ack"), None);
        assert_eq!(parse_file_name("cursor-zz.ack"), None);
    }

    #[test]
    fn store_load_and_reject_damage() {
        let dir = crate::testutil::TempDir::new("cursor");
        let dir_file = std::fs::File::open(dir.path()).unwrap();
        let path = dir.path().join(file_name("a"));
        assert_eq!(load(&path).unwrap(), None);
        store(&dir_file, &path, 17).unwrap();
        assert_eq!(load(&path).unwrap(), Some(17));
        store(&dir_file, &path, 18).unwrap();
        assert_eq!(load(&path).unwrap(), Some(18));
        std::fs::write(&path, "v1 next=19 crc=00000000\n").unwrap();
        assert_eq!(
            load(&path).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );
    }
}
