//! The read path: a sink's records from its cursor onwards, read outside the state lock.

use std::fs::File;

use super::super::record::{Next, RecordReader, SEGMENT_HEADER_LEN};
use super::files::{self, io_err};
use super::{ReadBatch, ReadPos, Segment, Spool, SpoolError, Spooled, lock};

impl Spool {
    /// Reads up to `max_records` records (and about `max_bytes` of payload; at least one
    /// record) for `sink`, starting at its first unacknowledged record. Reading again without
    /// acknowledging returns the same records. An empty batch means the sink is caught up.
    pub fn read(
        &self,
        sink: &str,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch, SpoolError> {
        let i = self.sink_index(sink)?;
        let mut pos = lock(&self.inner.sinks[i].read_pos);
        let mut batch = ReadBatch::default();
        // A segment may be dropped for space between planning and opening it: plan again.
        for _ in 0..8 {
            let (from, plan) = {
                let mut st = lock(&self.inner.state);
                let Some(k) = st.segments.iter().position(|s| s.end > st.cursors[i].next) else {
                    return Ok(batch);
                };
                let seg_first = st.segments[k].first;
                let c = &mut st.cursors[i];
                if seg_first > c.next {
                    batch.skipped += seg_first - c.next;
                    c.skipped += seg_first - c.next;
                    c.next = seg_first;
                }
                let from = c.next;
                let plan: Vec<Segment> = st.segments.iter().skip(k).copied().collect();
                (from, plan)
            };
            if self.read_segments(
                &plan,
                from,
                &mut pos,
                max_records.max(1),
                max_bytes,
                &mut batch,
            )? {
                return Ok(batch);
            }
        }
        Ok(batch)
    }

    /// Reads records from consecutive segments; false when a segment vanished (dropped).
    fn read_segments(
        &self,
        plan: &[Segment],
        mut from: u64,
        pos: &mut ReadPos,
        max_records: usize,
        max_bytes: usize,
        batch: &mut ReadBatch,
    ) -> Result<bool, SpoolError> {
        let mut payload_bytes = 0usize;
        for seg in plan {
            if seg.first > from || batch.records.len() >= max_records {
                break;
            }
            let path = files::segment_path(&self.inner.dir, seg.first);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(!batch.records.is_empty());
                }
                Err(e) => return Err(io_err("open segment", &path)(e)),
            };
            let known = pos.segment == seg.first && pos.next_seq == from && pos.offset != 0;
            let (start, mut seq) = if known {
                (pos.offset, from)
            } else {
                (SEGMENT_HEADER_LEN, seg.first)
            };
            let read_err = io_err("read segment", &path);
            let mut reader = RecordReader::new(&file, start, seg.bytes).map_err(read_err)?;
            while seq < seg.end && batch.records.len() < max_records {
                let wanted = seq >= from;
                if wanted && !batch.records.is_empty() && payload_bytes >= max_bytes {
                    break;
                }
                let next = reader
                    .next(seq, wanted)
                    .map_err(io_err("read segment", &path))?;
                match next {
                    Next::Record { payload } if wanted => {
                        payload_bytes += payload.len();
                        batch.records.push(Spooled { seq, line: payload });
                    }
                    Next::Record { .. } => {}
                    Next::End => break,
                    Next::Bad(bad) => {
                        return Err(SpoolError::Corrupt {
                            path,
                            offset: reader.offset(),
                            what: bad.to_string(),
                        });
                    }
                }
                seq += 1;
            }
            *pos = ReadPos {
                segment: seg.first,
                next_seq: seq,
                offset: reader.offset(),
            };
            from = seq;
            if seq < seg.end {
                break;
            }
        }
        Ok(true)
    }
}
