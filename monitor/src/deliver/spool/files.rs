//! File operations of the spool directory: the lock, the listing, creating, recovering and
//! removing segment files.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{self, Read, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::super::{
    cursor,
    record::{
        Next, RecordReader, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, parse_segment_name,
        segment_file_name,
    },
};
use super::{SpoolError, TornTail};

/// Name of the lock file that keeps two agents off one spool.
const LOCK_FILE: &str = "lock";

/// Builds the `map_err` closure for an I/O failure on `path`.
pub(super) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_owned();
    move |source| SpoolError::Io {
        action,
        path,
        source,
    }
}

/// Takes the exclusive lock on the spool directory (held while the returned file is open).
pub(super) fn take_lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("open lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(SpoolError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

/// What the spool directory holds.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// First sequence numbers of the segment files, ascending.
    pub(super) segments: Vec<u64>,
    /// Sink names of the cursor files.
    pub(super) cursors: Vec<String>,
}

/// Lists segment and cursor files; removes leftover `.tmp` files of interrupted writes.
pub(super) fn list(dir: &Path) -> Result<Listing, SpoolError> {
    let mut listing = Listing::default();
    let entries = std::fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(first) = parse_segment_name(&name) {
            listing.segments.push(first);
        } else if let Some(sink) = cursor::parse_file_name(&name) {
            listing.cursors.push(sink);
        } else if name.ends_with(".tmp") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_err("remove leftover", &path))?;
        }
    }
    listing.segments.sort_unstable();
    Ok(listing)
}

/// Path of the segment starting at `first`.
pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(segment_file_name(first))
}

/// Creates an empty segment starting at `first`: file header written and fsync'ed, then the
/// directory fsync'ed so the new name survives a crash. Removes the file again on failure.
pub(super) fn create_segment(dir: &Path, dir_file: &File, first: u64) -> Result<File, SpoolError> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("create segment", &path))?;
    let result = file
        .write_all(SEGMENT_MAGIC)
        .and_then(|()| file.sync_data())
        .map_err(io_err("write segment header", &path))
        .and_then(|()| dir_file.sync_all().map_err(io_err("fsync directory", dir)));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

/// Removes a segment file; one already gone is not an error.
pub(super) fn remove_segment(dir: &Path, first: u64) -> Result<(), SpoolError> {
    let path = segment_path(dir, first);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove segment", &path)(e)),
        _ => Ok(()),
    }
}

/// A segment's valid extent after recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    /// One past the last valid record's sequence number (`first` when empty).
    pub(super) end: u64,
    /// Bytes of the valid part, file header included.
    pub(super) bytes: u64,
}

/// Verifies every record of the segment starting at `first`; a damaged or torn tail is
/// truncated away (and fsync'ed) and described in the returned [`TornTail`].
pub(super) fn recover_segment(
    dir: &Path,
    first: u64,
) -> Result<(Extent, Option<TornTail>), SpoolError> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err("open segment", &path))?;
    let len = file
        .metadata()
        .map_err(io_err("stat segment", &path))?
        .len();
    let mut magic = [0u8; SEGMENT_HEADER_LEN as usize];
    let header_ok = len >= SEGMENT_HEADER_LEN && {
        file.read_exact(&mut magic)
            .map_err(io_err("read segment", &path))?;
        if &magic != SEGMENT_MAGIC && magic.iter().any(|&b| b != 0) {
            return Err(SpoolError::UnknownFormat { path });
        }
        &magic == SEGMENT_MAGIC
    };
    if !header_ok {
        // Created but never completed (crash before the header was durable): start it afresh.
        file.set_len(0)
            .and_then(|()| file.write_all_at(SEGMENT_MAGIC, 0))
            .and_then(|()| file.sync_data())
            .map_err(io_err("rewrite segment header", &path))?;
        let torn = TornTail {
            segment: path,
            offset: 0,
            discarded_bytes: len,
            reason: "incomplete segment header".to_owned(),
        };
        let extent = Extent {
            end: first,
            bytes: SEGMENT_HEADER_LEN,
        };
        return Ok((extent, Some(torn)));
    }
    let mut reader =
        RecordReader::new(&file, SEGMENT_HEADER_LEN, len).map_err(io_err("read segment", &path))?;
    let mut end = first;
    let bad = loop {
        match reader
            .next(end, true)
            .map_err(io_err("read segment", &path))?
        {
            Next::Record { .. } => end += 1,
            Next::End => break None,
            Next::Bad(bad) => break Some(bad),
        }
    };
    let valid = reader.offset();
    drop(reader);
    let torn = match bad {
        None => None,
        Some(bad) => {
            file.set_len(valid)
                .and_then(|()| file.sync_data())
                .map_err(io_err("truncate damaged tail of", &path))?;
            Some(TornTail {
                segment: path,
                offset: valid,
                discarded_bytes: len - valid,
                reason: bad.to_string(),
            })
        }
    };
    Ok((Extent { end, bytes: valid }, torn))
}
