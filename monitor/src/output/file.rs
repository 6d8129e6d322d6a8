//! `--output file:PATH`: appends JSON lines, rotating by size: before a line would take the
//! file past `max_bytes`, `PATH.N-1` becomes `PATH.N` (the oldest beyond `max_files` is
//! removed), ..., `PATH` becomes `PATH.1`, and a new `PATH` is started. A line is never split
//! across files, and never lost to a failed rotation: it goes to the current file, the error
//! is reported, and rotation is tried again once another `max_bytes` were written.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use super::{LocalSink, OutputError, target::Rotation};

pub struct FileSink {
    path: PathBuf,
    rotation: Rotation,
    out: BufWriter<File>,
    /// Bytes in the current file (written or buffered).
    len: u64,
}

/// Opens `path` for appending. A file whose last line was cut short (the agent was killed in
/// the middle of a write) gets its line ended first, so the next record starts a line of its
/// own instead of being glued to the torn one.
fn open(path: &Path) -> std::io::Result<(BufWriter<File>, u64)> {
    let opened = |read| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .read(read)
            .open(path)
    };
    // Something that cannot be read back (a pipe, a socket) is appended to without the check.
    let file = opened(true).or_else(|_| opened(false))?;
    let mut len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut last = [0u8; 1];
    if len > 0 && out.get_ref().read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n' {
        out.write_all(b"\n")?;
        len += 1;
    }
    Ok((out, len))
}

impl FileSink {
    pub fn open(path: &Path, rotation: Rotation) -> Result<Self, OutputError> {
        let (out, len) = open(path).map_err(|source| OutputError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            rotation,
            out,
            len,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if !self.path.exists() {
            // Moved away by someone else: start a new file where it was; keep the rotated ones.
            return self.reopen();
        }
        let keep = self.rotation.max_files;
        match std::fs::remove_file(self.rotated(keep)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for n in (1..keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.reopen()?;
        tracing::info!(path = %self.path.display(), "output file rotated");
        Ok(())
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let (out, len) = open(&self.path)?;
        self.out = out;
        self.len = len;
        Ok(())
    }
}

impl LocalSink for FileSink {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let n = line.len() as u64 + 1;
        let max = self.rotation.max_bytes;
        if max > 0
            && self.len > 0
            && self.len + n > max
            && let Err(error) = self.rotate()
        {
            // Keep writing to the file in hand; try again after another `max` bytes.
            tracing::error!(path = %self.path.display(), %error, "output file not rotated");
            self.len = 0;
        }
        super::write_whole(&mut self.out, line)?;
        self.len += n;
        Ok(())
    }

    fn unwritten_lines(&self) -> u64 {
        super::buffered_lines(&self.out)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::{FileSink, Rotation};
    use crate::output::LocalSink as _;
    use crate::testutil::TempDir;

    #[test]
    fn rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = TempDir::new("rotate");
        let path = dir.write("out.jsonl", "old\n");
        let rotation = Rotation {
            max_bytes: 10,
            max_files: 2,
        };
        let mut sink = FileSink::open(&path, rotation).expect("open");
        // "old\n" (4) + "12345\n" (6) = 10 fits; every later line starts a new file.
        for line in ["12345", "abcdefgh", "x", "yy", "z"] {
            sink.write_line(line.as_bytes()).expect("write");
        }
        sink.flush().expect("flush");
        let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&path), "x\nyy\nz\n");
        assert_eq!(read(&dir.join("out.jsonl.1")), "abcdefgh\n");
        assert_eq!(read(&dir.join("out.jsonl.2")), "old\n12345\n");
        assert!(!dir.join("out.jsonl.3").exists(), "bounded to max_files");
        // A line longer than max_bytes still goes out whole, alone in its file.
        sink.write_line(b"0123456789abcdef").expect("write");
        sink.flush().expect("flush");
        assert_eq!(read(&path), "0123456789abcdef\n");
        assert_eq!(read(&dir.join("out.jsonl.1")), "x\nyy\nz\n");
        assert_eq!(read(&dir.join("out.jsonl.2")), "abcdefgh\n");
    }

    #[test]
    fn a_failed_rotation_loses_no_line() {
        let dir = TempDir::new("rotate-fail");
        std::fs::create_dir(dir.join("out.jsonl.1")).expect("a directory in the way");
        let path = dir.join("out.jsonl");
        let rotation = Rotation {
            max_bytes: 6,
            max_files: 1,
        };
        let mut sink = FileSink::open(&path, rotation).expect("open");
        sink.write_line(b"abc").expect("first line fits");
        // The rotation error is logged; the line is written (an error would count it lost).
        sink.write_line(b"def")
            .expect("written despite the failed rotation");
        // Not retried on every line: the next one goes straight to the file.
        sink.write_line(b"g").expect("no new attempt yet");
        sink.flush().expect("flush");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "abc\ndef\ng\n"
        );
    }

    #[test]
    fn a_full_device_refuses_whole_lines_once_the_buffer_is_full() {
        let mut sink = FileSink::open(std::path::Path::new("/dev/full"), Rotation::default())
            .expect("open /dev/full");
        let line = [b'x'; 999];
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..200 {
            match sink.write_line(&line) {
                Ok(()) => ok += 1,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
                    refused += 1;
                }
            }
        }
        assert_eq!(ok, 64 * 1024 / 1000, "what the buffer holds");
        assert_eq!(refused, 200 - ok, "then every line is refused, whole");
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_record() {
        let dir = TempDir::new("torn");
        let path = dir.write("out.jsonl", b"{\"kind\":\"alert\"}\n{\"kind\":\"al");
        let mut sink = FileSink::open(&path, Rotation::default()).expect("open");
        sink.write_line(b"{\"kind\":\"exit\"}").expect("write");
        sink.flush().expect("flush");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"kind\":\"alert\"}\n{\"kind\":\"al\n{\"kind\":\"exit\"}\n"
        );
        // A file that ends a line is left as it is.
        let mut again = FileSink::open(&path, Rotation::default()).expect("reopen");
        again.write_line(b"x").expect("write");
        again.flush().expect("flush");
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .ends_with("}\nx\n")
        );
    }
}
