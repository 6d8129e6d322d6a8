//! On-disk framing of spool segment files.
//!
//! A segment file `seg-<first seq, 20 digits>.log` starts with the 8-byte magic
//! [`SEGMENT_MAGIC`], followed by records laid end to end. Each record is a 16-byte
//! little-endian header then the payload:
//!
//! ```text
//! offset 0   u32  payload length in bytes (at most MAX_RECORD_LEN)
//! offset 4   u32  CRC-32 (IEEE) of: length (4 bytes LE) ++ sequence (8 bytes LE) ++ payload
//! offset 8   u64  sequence number
//! offset 16  ...  payload (one alert JSON line, as given to append)
//! ```
//!
//! Sequence numbers inside a segment are consecutive, starting at the number in the file
//! name. A record whose header or payload is cut short, whose checksum does not match, or
//! whose sequence number is not the expected one ends the valid part of the file.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

/// First bytes of every segment file (format version 1).
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"MONSPL1\n";
/// Length of the segment file header.
pub(super) const SEGMENT_HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;
/// Length of a record header.
pub(super) const RECORD_HEADER_LEN: u64 = 16;
/// Largest payload accepted; a larger length in a header is treated as corruption.
pub const MAX_RECORD_LEN: usize = 16 << 20;

/// Bytes a payload of `payload_len` bytes takes on disk.
pub(super) fn frame_len(payload_len: usize) -> u64 {
    RECORD_HEADER_LEN + payload_len as u64
}

fn checksum(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends the framed record to `out`. The caller has checked `payload.len() <= MAX_RECORD_LEN`.
pub(super) fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(len, seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// File name of the segment whose first record has sequence number `first`.
pub(super) fn segment_file_name(first: u64) -> String {
    format!("seg-{first:020}.log")
}

/// The first sequence number encoded in a segment file name, if it is one.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a record could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BadRecord {
    /// The file (or the committed part of it) ends inside the header or the payload.
    Truncated,
    /// The header announces a payload larger than [`MAX_RECORD_LEN`].
    TooLong(u32),
    /// The checksum does not match the bytes.
    Checksum,
    /// The record carries another sequence number than the one expected at this place.
    Sequence { found: u64, expected: u64 },
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("record cut short"),
            Self::TooLong(n) => write!(f, "record length {n} exceeds the maximum"),
            Self::Checksum => f.write_str("checksum mismatch"),
            Self::Sequence { found, expected } => {
                write!(f, "sequence number {found} where {expected} was expected")
            }
        }
    }
}

/// What the next read found.
#[derive(Debug)]
pub(super) enum Next {
    /// A valid record; `payload` is empty when it was skipped rather than read.
    Record { payload: Vec<u8> },
    /// The end of the readable range, exactly at a record boundary.
    End,
    /// An unusable record starting at the reader's current offset.
    Bad(BadRecord),
}

/// Reads records sequentially from a segment file, up to a byte limit.
pub(super) struct RecordReader<R> {
    inner: BufReader<R>,
    offset: u64,
    limit: u64,
}

impl<R: Read + Seek> RecordReader<R> {
    /// Starts at `offset` (a record boundary); never reads at or past `limit`.
    pub(super) fn new(mut inner: R, offset: u64, limit: u64) -> io::Result<Self> {
        inner.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            offset,
            limit,
        })
    }

    /// Offset of the next record (the end of the last good one).
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the record expected to carry `expected_seq`. With `verify` false the payload is
    /// skipped without checking the checksum (used to find a position in data already
    /// verified). On `Bad` the offset is left at the start of the bad record.
    pub(super) fn next(&mut self, expected_seq: u64, verify: bool) -> io::Result<Next> {
        let remaining = self.limit.saturating_sub(self.offset);
        if remaining == 0 {
            return Ok(Next::End);
        }
        if remaining < RECORD_HEADER_LEN {
            return Ok(Next::Bad(BadRecord::Truncated));
        }
        let mut header = [0u8; RECORD_HEADER_LEN as usize];
        if let Some(bad) = read_full(&mut self.inner, &mut header)? {
            return Ok(Next::Bad(bad));
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        let rewind = -(RECORD_HEADER_LEN as i64);
        if len as usize > MAX_RECORD_LEN {
            self.inner.seek_relative(rewind)?;
            return Ok(Next::Bad(BadRecord::TooLong(len)));
        }
        if remaining < frame_len(len as usize) {
            self.inner.seek_relative(rewind)?;
            return Ok(Next::Bad(BadRecord::Truncated));
        }
        if !verify {
            if seq != expected_seq {
                self.inner.seek_relative(rewind)?;
                return Ok(Next::Bad(BadRecord::Sequence {
                    found: seq,
                    expected: expected_seq,
                }));
            }
            self.inner.seek_relative(i64::from(len))?;
            self.offset += frame_len(len as usize);
            return Ok(Next::Record {
                payload: Vec::new(),
            });
        }
        let mut payload = vec![0u8; len as usize];
        if let Some(bad) = read_full(&mut self.inner, &mut payload)? {
            return Ok(Next::Bad(bad));
        }
        let back = rewind - i64::from(len);
        if checksum(len, seq, &payload) != crc {
            self.inner.seek_relative(back)?;
            return Ok(Next::Bad(BadRecord::Checksum));
        }
        if seq != expected_seq {
            self.inner.seek_relative(back)?;
            return Ok(Next::Bad(BadRecord::Sequence {
                found: seq,
                expected: expected_seq,
            }));
        }
        self.offset += frame_len(len as usize);
        Ok(Next::Record { payload })
    }
}

/// `read_exact` that reports a short file as [`BadRecord::Truncated`] instead of an error.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<Option<BadRecord>> {
    match r.read_exact(buf) {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(BadRecord::Truncated)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::{
        BadRecord, Next, RecordReader, SEGMENT_HEADER_LEN, encode, parse_segment_name,
        segment_file_name,
    };

    fn file_with(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = super::SEGMENT_MAGIC.to_vec();
        for (seq, p) in records {
            encode(*seq, p, &mut out);
        }
        out
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(42), "seg-00000000000000000042.log");
        assert_eq!(
            parse_segment_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_name("seg-42.log"), None);
        assert_eq!(parse_segment_name("seg-0000000000000000004x.log"), None);
    }

    #[test]
    fn reads_back_and_detects_damage() {
        let bytes = file_with(&[(7, b"a\n"), (8, b"bc\n")]);
        let len = bytes.len() as u64;
        let mut r = RecordReader::new(Cursor::new(bytes.clone()), SEGMENT_HEADER_LEN, len).unwrap();
        assert!(matches!(r.next(7, true).unwrap(), Next::Record { payload } if payload == b"a\n"));
        assert!(matches!(r.next(8, true).unwrap(), Next::Record { payload } if payload == b"bc\n"));
        assert!(matches!(r.next(9, true).unwrap(), Next::End));

        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut r = RecordReader::new(Cursor::new(flipped), SEGMENT_HEADER_LEN, len).unwrap();
        r.next(7, true).unwrap();
        let at = r.offset();
        assert!(matches!(
            r.next(8, true).unwrap(),
            Next::Bad(BadRecord::Checksum)
        ));
        assert_eq!(r.offset(), at);

        let mut r =
            RecordReader::new(Cursor::new(bytes[..bytes.len() - 1].to_vec()), 8, len).unwrap();
        r.next(7, true).unwrap();
        assert!(matches!(
            r.next(8, true).unwrap(),
            Next::Bad(BadRecord::Truncated)
        ));

        let mut r = RecordReader::new(Cursor::new(bytes), SEGMENT_HEADER_LEN, len).unwrap();
        assert!(matches!(
            r.next(6, true).unwrap(),
            Next::Bad(BadRecord::Sequence {
                found: 7,
                expected: 6
            })
        ));
    }
}
