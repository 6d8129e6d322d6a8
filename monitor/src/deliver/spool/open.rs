//! Opening a spool: taking the directory lock, recovering segments after a crash, loading
//! or creating cursors, and applying the size bound and garbage collection.

use std::{
    collections::VecDeque,
    fs::{DirBuilder, File, OpenOptions},
    os::unix::fs::DirBuilderExt,
    path::Path,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use super::super::{cursor, record::SEGMENT_HEADER_LEN};
use super::files::{self, io_err};
use super::{
    CursorState, Inner, OpenReport, ReadPos, Segment, SinkSlot, Spool, SpoolError, SpoolOptions,
    State, Writer,
};

impl Spool {
    /// Opens (creating if needed) the spool in `dir` for the given sinks: takes the directory
    /// lock, verifies every segment (truncating torn or damaged tails), loads the cursors,
    /// removes fully acknowledged segments and enforces `max_bytes`.
    pub fn open(
        dir: &Path,
        options: SpoolOptions,
        sink_names: &[String],
    ) -> Result<(Self, OpenReport), SpoolError> {
        options.validate()?;
        validate_names(sink_names)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        let lock_file = files::take_lock(dir)?;
        let dir_file = File::open(dir).map_err(io_err("open directory", dir))?;
        let listing = files::list(dir)?;
        let mut report = OpenReport::default();

        let mut segments = recover_segments(dir, &listing.segments, &mut report)?;

        let loaded = load_cursors(dir, sink_names, &mut report)?;
        let max_cursor = loaded.iter().flatten().copied().max().unwrap_or(0);
        let next_seq = segments.back().map_or(0, |s| s.end).max(max_cursor);
        if segments.back().is_none_or(|s| s.end < next_seq) {
            if let Some(s) = segments.back().copied()
                && s.end == s.first
            {
                files::remove_segment(dir, s.first)?;
                segments.pop_back();
            }
            files::create_segment(dir, &dir_file, next_seq)?;
            segments.push_back(Segment {
                first: next_seq,
                end: next_seq,
                bytes: SEGMENT_HEADER_LEN,
            });
        }
        let oldest = segments.front().map_or(next_seq, |s| s.first);

        let mut cursors = Vec::with_capacity(sink_names.len());
        for (name, loaded) in sink_names.iter().zip(loaded) {
            let next = match loaded {
                Some(n) => n,
                None => {
                    let start = if report.reset_cursors.contains(name) {
                        oldest
                    } else {
                        report.new_sinks.push(name.clone());
                        next_seq
                    };
                    let path = dir.join(cursor::file_name(name));
                    cursor::store(&dir_file, &path, start)
                        .map_err(io_err("write cursor", &path))?;
                    start
                }
            };
            cursors.push(CursorState {
                next,
                persisted: next,
                skipped: 0,
            });
        }
        for name in listing.cursors {
            if !sink_names.contains(&name) {
                let path = dir.join(cursor::file_name(&name));
                std::fs::remove_file(&path).map_err(io_err("remove stale cursor", &path))?;
                report.forgotten_sinks.push(name);
            }
        }

        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        let mut state = State {
            segments,
            total_bytes,
            committed_next: next_seq,
            dropped_total: 0,
            cursors,
        };
        while state.total_bytes > options.max_bytes && state.segments.len() > 1 {
            if let Some(s) = state.segments.pop_front() {
                report.dropped_records += state.undelivered(&s);
                state.total_bytes -= s.bytes;
                files::remove_segment(dir, s.first)?;
            }
        }
        state.dropped_total = report.dropped_records;
        for first in state.collect_garbage() {
            files::remove_segment(dir, first)?;
        }

        let active = state.segments.back().copied().unwrap_or(Segment {
            first: next_seq,
            end: next_seq,
            bytes: SEGMENT_HEADER_LEN,
        });
        let active_path = files::segment_path(dir, active.first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&active_path)
            .map_err(io_err("open segment", &active_path))?;
        report.next_seq = next_seq;
        let sinks = sink_names
            .iter()
            .map(|name| SinkSlot {
                name: name.clone(),
                cursor_path: dir.join(cursor::file_name(name)),
                read_pos: Mutex::new(ReadPos::default()),
                persist: Mutex::new(()),
            })
            .collect();
        let inner = Inner {
            dir: dir.to_owned(),
            dir_file,
            options,
            writer: Mutex::new(Writer {
                file,
                first: active.first,
                len: active.bytes,
                next_seq,
                dirty: false,
                buf: Vec::new(),
            }),
            state: Mutex::new(state),
            sinks,
            committed: watch::Sender::new(next_seq),
            _lock: lock_file,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            report,
        ))
    }
}

/// Verifies every segment (truncating damaged tails) and drops empty closed ones.
fn recover_segments(
    dir: &Path,
    firsts: &[u64],
    report: &mut OpenReport,
) -> Result<VecDeque<Segment>, SpoolError> {
    let mut segments: VecDeque<Segment> = VecDeque::new();
    let last = firsts.last().copied();
    for &first in firsts {
        if let Some(prev) = segments.back()
            && first < prev.end
        {
            return Err(SpoolError::Overlap {
                earlier: files::segment_path(dir, prev.first),
                later: files::segment_path(dir, first),
            });
        }
        let (extent, torn) = files::recover_segment(dir, first)?;
        report.torn.extend(torn);
        if extent.end == first && Some(first) != last {
            files::remove_segment(dir, first)?;
            continue;
        }
        segments.push_back(Segment {
            first,
            end: extent.end,
            bytes: extent.bytes,
        });
    }
    Ok(segments)
}

/// Each sink's persisted cursor: `None` when it has none or it is unreadable (then listed in
/// `report.reset_cursors`).
fn load_cursors(
    dir: &Path,
    sink_names: &[String],
    report: &mut OpenReport,
) -> Result<Vec<Option<u64>>, SpoolError> {
    let mut loaded = Vec::with_capacity(sink_names.len());
    for name in sink_names {
        let path = dir.join(cursor::file_name(name));
        match cursor::load(&path) {
            Ok(next) => loaded.push(next),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                report.reset_cursors.push(name.clone());
                loaded.push(None);
            }
            Err(e) => return Err(io_err("read cursor", &path)(e)),
        }
    }
    Ok(loaded)
}

fn validate_names(names: &[String]) -> Result<(), SpoolError> {
    for (i, name) in names.iter().enumerate() {
        let reason = if name.is_empty() {
            "empty"
        } else if name.len() > cursor::MAX_SINK_NAME {
            "longer than 100 bytes"
        } else if names[..i].contains(name) {
            "given twice"
        } else {
            continue;
        };
        return Err(SpoolError::SinkName {
            name: name.clone(),
            reason,
        });
    }
    Ok(())
}
