//! Raw ring-buffer records to [`Event`]s. The envelope is decoded here; each family decodes
//! its own payload (`process`, `file`, `net`).
//!
//! Everything that crosses the kernel boundary is validated: record size against the header,
//! string references against the data area. A malformed record is an error, never a panic.

mod dns;
mod file;
mod net;
mod process;
pub mod strings;

use monitor_common::{
    DATA_OFFSET, EventHeader, EventKind, FLAG_DENIED, FLAG_KILLED, MAX_RECORD, PAYLOAD_OFFSET,
    StrRef,
};

use super::event::{Event, EventBody, FileOp, NetOp};
use crate::clock::WallTime;
use crate::sensor::text::{escape_always, text};

/// Why a record could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than the fixed part")]
    TooShort(usize),
    #[error("record of {got} bytes but its header says {claimed}")]
    SizeMismatch { got: usize, claimed: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("string reference {off}+{len} outside the {size}-byte data area")]
    BadStrRef { off: usize, len: usize, size: usize },
}

/// A validated record: header, payload bytes, data area.
pub struct RawRecord<'a> {
    pub header: EventHeader,
    pub kind: EventKind,
    payload: &'a [u8],
    data: &'a [u8],
    /// Fields decoded so far in the escaped form.
    escaped: std::cell::RefCell<Vec<&'static str>>,
}

impl<'a> RawRecord<'a> {
    /// Validates the envelope of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() < DATA_OFFSET {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        let header = read_pod::<EventHeader>(bytes, 0);
        let claimed = header.size as usize;
        if claimed < DATA_OFFSET || claimed > bytes.len() || claimed > MAX_RECORD {
            return Err(DecodeError::SizeMismatch {
                got: bytes.len(),
                claimed,
            });
        }
        let kind = EventKind::from_u32(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
        Ok(Self {
            header,
            kind,
            payload: &bytes[PAYLOAD_OFFSET..DATA_OFFSET],
            data: &bytes[DATA_OFFSET..claimed],
            escaped: Default::default(),
        })
    }

    /// The payload as `T` (must be one of the `monitor_common` payload types).
    pub fn payload<T: aya::Pod>(&self) -> T {
        read_pod::<T>(self.payload, 0)
    }

    /// The bytes a [`StrRef`] points at; `None` when empty.
    pub fn bytes(&self, s: StrRef) -> Result<Option<&'a [u8]>, DecodeError> {
        let (off, len) = (s.off as usize, s.len as usize);
        if len == 0 {
            return Ok(None);
        }
        self.data
            .get(off..off + len)
            .map(Some)
            .ok_or(DecodeError::BadStrRef {
                off,
                len,
                size: self.data.len(),
            })
    }

    /// Names `field` in the event's `escaped` list.
    pub fn mark(&self, field: &'static str) {
        let mut e = self.escaped.borrow_mut();
        if !e.contains(&field) {
            e.push(field);
        }
    }

    /// `bytes` as text ([`escape_bytes`]); `field` is named in the event's `escaped` list when
    /// they are not valid UTF-8.
    pub fn text(&self, field: &'static str, bytes: &[u8]) -> String {
        self.marked(field, text(bytes))
    }

    /// The text of a `(text, escaped)` pair, naming `field` when it is escaped.
    fn marked(&self, field: &'static str, (s, escaped): (String, bool)) -> String {
        if escaped {
            self.mark(field);
        }
        s
    }

    /// A plain string, as [`Self::text`].
    pub fn string(&self, field: &'static str, s: StrRef) -> Result<Option<String>, DecodeError> {
        Ok(self.bytes(s)?.map(|b| self.text(field, b)))
    }

    /// A dentry path (see [`strings::dentry_path`]), as [`Self::text`].
    pub fn dentry_path(
        &self,
        field: &'static str,
        s: StrRef,
    ) -> Result<Option<String>, DecodeError> {
        Ok(self
            .bytes(s)?
            .map(|raw| self.marked(field, strings::dentry_path(raw, false))))
    }

    /// A user path, made absolute against its dentry-path base when relative; either in the
    /// escaped form makes both so (a path is one field).
    pub fn user_path(
        &self,
        field: &'static str,
        path: StrRef,
        base: StrRef,
    ) -> Result<Option<String>, DecodeError> {
        let Some(p) = self.bytes(path)? else {
            return Ok(None);
        };
        // The base matters only to a relative path.
        let base_raw = self.bytes(base)?.filter(|_| !p.starts_with(b"/"));
        let (mut path, mut escaped) = text(p);
        let base = base_raw.map(|b| strings::dentry_path(b, escaped));
        if !escaped && base.as_ref().is_some_and(|(_, e)| *e) {
            path = escape_always(p);
            escaped = true;
        }
        let path = self.marked(field, (path, escaped));
        let base = base.map(|(b, _)| b);
        Ok(Some(strings::absolute(base.as_deref(), &path)))
    }
}

/// Reads a plain-old-data `T` at `off` (unaligned). Callers checked the length.
fn read_pod<T: aya::Pod>(bytes: &[u8], off: usize) -> T {
    assert!(bytes.len() >= off + size_of::<T>());
    // SAFETY: bounds asserted above; `T: Pod` accepts any bit pattern; unaligned read.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(off) as *const T) }
}

/// Decodes one record. `time` is filled by the caller (it knows the clock offset).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let rec = RawRecord::parse(bytes)?;
    let h = &rec.header;
    let file = |op| file::decode(&rec, op).map(EventBody::File);
    let net = |op| net::decode(&rec, op).map(EventBody::Net);
    let body = match rec.kind {
        EventKind::Exec => EventBody::Exec(process::exec(&rec)?),
        EventKind::Fork => EventBody::Fork(process::fork(&rec)),
        EventKind::Exit => EventBody::Exit(process::exit(&rec)),
        EventKind::Open => file(FileOp::Open)?,
        EventKind::Unlink => file(FileOp::Unlink)?,
        EventKind::Rename => file(FileOp::Rename)?,
        EventKind::Chmod => file(FileOp::Chmod)?,
        EventKind::Memfd => file(FileOp::Memfd)?,
        EventKind::Link => file(FileOp::Link)?,
        EventKind::Symlink => file(FileOp::Symlink)?,
        EventKind::Truncate => file(FileOp::Truncate)?,
        EventKind::Connect => net(NetOp::Connect)?,
        EventKind::Accept => net(NetOp::Accept)?,
        EventKind::Bind => net(NetOp::Bind)?,
        EventKind::Listen => net(NetOp::Listen)?,
        EventKind::Send => net(NetOp::Send)?,
        EventKind::Dns => EventBody::Dns(dns::decode(&rec)?),
    };
    let comm_len = h.comm.iter().position(|&b| b == 0).unwrap_or(h.comm.len());
    Ok(Event {
        time: WallTime::default(),
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        comm: rec.text("comm", &h.comm[..comm_len]),
        exe: None,
        cgroup_id: h.cgroup_id,
        container_id: None,
        pod_uid: None,
        container: None,
        pod: None,
        profile: None,
        phase: None,
        killed: h.flags & FLAG_KILLED != 0,
        denied: h.flags & FLAG_DENIED != 0,
        escaped: rec.escaped.take().into_iter().map(str::to_owned).collect(),
        body,
        ktime_ns: h.ktime_ns,
        start_time_ns: h.start_time_ns,
    })
}

#[cfg(test)]
mod tests {
    use monitor_common::{
        AF_INET6, DATA_OFFSET, EventHeader, EventKind, ExecEvent, FILE_PATH_RESOLVED,
        FMODE_CREATED, FileEvent, NET_LOCAL_KNOWN, NET_REMOTE_KNOWN, NetEvent, PAYLOAD_OFFSET,
        StrRef,
    };

    use super::{DecodeError, decode};
    use crate::sensor::event::{Access, EventBody, Family, Protocol};

    /// Builds a record the way the kernel does: header, payload, data area.
    pub(super) fn record<P: Copy>(kind: EventKind, payload: P, data: &[u8]) -> Vec<u8> {
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"python3");
        let header = EventHeader {
            kind: kind as u32,
            size: (DATA_OFFSET + data.len()) as u32,
            ktime_ns: 5,
            start_time_ns: 7,
            cgroup_id: 42,
            pid: 100,
            tid: 101,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            flags: 0,
            comm,
        };
        let mut buf = vec![0u8; DATA_OFFSET];
        // SAFETY: both are plain-old-data with no padding (sizes asserted in monitor-common).
        unsafe {
            std::ptr::write_unaligned(buf.as_mut_ptr() as *mut EventHeader, header);
            std::ptr::write_unaligned(buf.as_mut_ptr().add(PAYLOAD_OFFSET) as *mut P, payload);
        }
        buf.extend_from_slice(data);
        buf
    }

    #[test]
    fn exec_round_trip() {
        let data = b"/usr/bin/python3python3/bin/usr//a/srv//python3\0-c\0caf\xe9\0";
        let p = ExecEvent {
            filename: StrRef { off: 0, len: 16 },
            exe: StrRef { off: 16, len: 17 },
            cwd: StrRef { off: 33, len: 7 },
            argv: StrRef { off: 40, len: 16 },
            euid: 0,
            egid: 0,
            old_pid: 100,
            _pad: 0,
        };
        let ev = decode(&record(EventKind::Exec, p, data)).unwrap();
        assert_eq!(
            (ev.pid, ev.tid, ev.ppid, ev.uid, ev.cgroup_id),
            (100, 101, 1, 1000, 42)
        );
        assert_eq!(ev.comm, "python3");
        let EventBody::Exec(x) = ev.body else {
            panic!("not exec")
        };
        assert_eq!(x.filename, "/usr/bin/python3");
        assert_eq!(x.exe.as_deref(), Some("/usr/bin/python3"));
        assert_eq!(x.cwd.as_deref(), Some("/srv/a"));
        assert_eq!(x.argv, vec!["python3", "-c", "caf\\xe9"]);
    }

    #[test]
    fn open_resolved_and_failed() {
        let data = b"x.txt/tmp//";
        let p = FileEvent {
            path: StrRef {
                off: 0,
                len: data.len() as u16,
            },
            flags: 0o101,
            mode: 0x2 | FMODE_CREATED,
            result: 3,
            file_flags: FILE_PATH_RESOLVED,
            ..FileEvent::default()
        };
        let ev = decode(&record(EventKind::Open, p, data)).unwrap();
        let EventBody::File(f) = ev.body else {
            panic!("not file")
        };
        assert_eq!(f.path.as_deref(), Some("/tmp/x.txt"));
        assert_eq!(
            (f.access, f.created, f.result, f.fd),
            (Some(Access::Write), Some(true), 0, Some(3))
        );

        let data = b"../missingb/a//";
        let p = FileEvent {
            path: StrRef { off: 0, len: 10 },
            path_base: StrRef { off: 10, len: 5 },
            result: -2,
            ..FileEvent::default()
        };
        let ev = decode(&record(EventKind::Open, p, data)).unwrap();
        let EventBody::File(f) = ev.body else {
            panic!("not file")
        };
        assert_eq!(f.path.as_deref(), Some("/a/missing"));
        assert_eq!(
            (f.access, f.created, f.result),
            (Some(Access::Read), Some(false), -2)
        );
    }

    #[test]
    fn a_relative_path_and_its_base_are_one_field_escaped_together() {
        let open = |data: &[u8], len: u16| {
            let p = FileEvent {
                path: StrRef { off: 0, len },
                path_base: StrRef {
                    off: len,
                    len: data.len() as u16 - len,
                },
                result: -2,
                ..FileEvent::default()
            };
            let ev = decode(&record(EventKind::Open, p, data)).unwrap();
            let EventBody::File(f) = ev.body else {
                panic!("not file")
            };
            (f.path.unwrap_or_default(), ev.escaped)
        };
        let none: Vec<String> = Vec::new();
        // Valid: exact, backslashes and all.
        assert_eq!(open(b"a\\bd\\c//", 3), ("/d\\c/a\\b".to_owned(), none));
        // An invalid byte in the base: the path's backslash is doubled too.
        assert_eq!(
            open(b"a\\bd\xe9//", 3),
            ("/d\\xe9/a\\\\b".to_owned(), vec!["path".to_owned()])
        );
        // An invalid byte in the path: the base's backslash is doubled too.
        assert_eq!(
            open(b"a\xe9d\\c//", 2),
            ("/d\\\\c/a\\xe9".to_owned(), vec!["path".to_owned()])
        );
    }

    #[test]
    fn net_inet6() {
        let mut one = [0u8; 16];
        one[15] = 1;
        let p = NetEvent {
            family: AF_INET6,
            sock_type: 1,
            protocol: 6,
            local_port: 40000,
            remote_port: 8080,
            net_flags: NET_LOCAL_KNOWN | NET_REMOTE_KNOWN,
            syscall: 42,
            local_addr: one,
            remote_addr: one,
            result: -111,
            path: StrRef::default(),
            fd: 3,
        };
        let ev = decode(&record(EventKind::Connect, p, b"")).unwrap();
        let line = String::from_utf8(crate::output::json_line(&ev)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "connect");
        assert_eq!(v["family"], "inet6");
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["remote_addr"], "::1");
        assert_eq!(v["remote_port"], 8080);
        assert_eq!(v["result"], -111);
        let EventBody::Net(n) = ev.body else {
            panic!("not net")
        };
        assert_eq!(
            (n.family, n.protocol),
            (Some(Family::Inet6), Some(Protocol::Tcp))
        );
    }

    #[test]
    fn rejects_malformed_records() {
        assert_eq!(decode(&[0u8; 10]).unwrap_err(), DecodeError::TooShort(10));
        let mut r = record(EventKind::Fork, [0u8; 16], b"");
        r[0] = 99;
        assert_eq!(decode(&r).unwrap_err(), DecodeError::UnknownKind(99));
        let p = FileEvent {
            path: StrRef { off: 0, len: 50 },
            ..FileEvent::default()
        };
        assert!(matches!(
            decode(&record(EventKind::Unlink, p, b"abc")),
            Err(DecodeError::BadStrRef { .. })
        ));
        let mut r = record(EventKind::Fork, [0u8; 16], b"");
        r[4] = 0xff;
        assert!(matches!(decode(&r), Err(DecodeError::SizeMismatch { .. })));
    }
}
