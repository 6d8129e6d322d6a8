//! File-family payloads: open, unlink, rename, chmod, memfd, link, symlink, truncate.

use monitor_common::{
    FILE_PATH_PSEUDO, FILE_PATH_RESOLVED, FLAG_PATH_TRUNCATED, FMODE_CREATED, FMODE_READ,
    FMODE_WRITE, FileEvent, StrRef,
};

use super::{DecodeError, RawRecord};
use crate::sensor::event::{Access, FileBody, FileOp};

const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;

pub fn decode(rec: &RawRecord<'_>, op: FileOp) -> Result<FileBody, DecodeError> {
    let p: FileEvent = rec.payload();
    let ok = p.result >= 0;
    let path = |field: &'static str,
                s: StrRef,
                base: StrRef,
                resolved: bool|
     -> Result<Option<String>, DecodeError> {
        if resolved {
            rec.dentry_path(field, s)
        } else {
            rec.user_path(field, s, base)
        }
    };
    let mut body = FileBody {
        op,
        path: None,
        new_path: None,
        access: None,
        created: None,
        mode: None,
        name: None,
        length: None,
        flags: p.flags,
        result: if ok { 0 } else { p.result },
        fd: None,
        repeats: p.repeats,
        path_truncated: rec.header.flags & FLAG_PATH_TRUNCATED != 0,
        pseudo: false,
    };
    match op {
        FileOp::Open => {
            let resolved = p.file_flags & FILE_PATH_RESOLVED != 0;
            body.path = path("path", p.path, p.path_base, resolved)?;
            if p.file_flags & FILE_PATH_PSEUDO != 0 {
                body.path = Some(pseudo_name(p.fs_magic, p.ino));
                body.pseudo = true;
            }
            if ok {
                body.fd = Some(p.result);
            }
            let (access, created) = if resolved {
                (access_from_fmode(p.mode), p.mode & FMODE_CREATED != 0)
            } else {
                (access_from_flags(p.flags), false)
            };
            body.access = Some(access);
            body.created = Some(created);
        }
        FileOp::Unlink => body.path = path("path", p.path, p.path_base, false)?,
        FileOp::Rename | FileOp::Link => {
            body.path = path("path", p.path, p.path_base, false)?;
            body.new_path = path("new_path", p.path2, p.path2_base, false)?;
        }
        FileOp::Symlink => {
            body.path = rec.string("path", p.path)?;
            body.new_path = path("new_path", p.path2, p.path2_base, false)?;
        }
        FileOp::Truncate => {
            let resolved = p.file_flags & FILE_PATH_RESOLVED != 0;
            body.path = path("path", p.path, p.path_base, resolved)?;
            body.length = Some(p.length);
        }
        FileOp::Chmod => {
            body.path = path(
                "path",
                p.path,
                p.path_base,
                p.file_flags & FILE_PATH_RESOLVED != 0,
            )?;
            body.mode = Some(p.mode & 0o7777);
        }
        FileOp::Memfd => {
            body.name = rec.string("name", p.path)?;
            if ok {
                body.fd = Some(p.result);
            }
        }
    }
    Ok(body)
}

/// Access of a successful open from `file->f_mode`.
pub fn access_from_fmode(fmode: u32) -> Access {
    match (fmode & FMODE_READ != 0, fmode & FMODE_WRITE != 0) {
        (true, true) => Access::ReadWrite,
        (false, true) => Access::Write,
        _ => Access::Read,
    }
}

/// Access of a requested open from its flags.
pub fn access_from_flags(flags: u32) -> Access {
    match flags & O_ACCMODE {
        O_WRONLY => Access::Write,
        O_RDWR => Access::ReadWrite,
        _ => Access::Read,
    }
}

/// A nameless kernel object as `/proc/PID/fd` shows it (another file system's as its magic
/// number and inode).
fn pseudo_name(fs_magic: u32, ino: u64) -> String {
    /// `PIPEFS_MAGIC`, `SOCKFS_MAGIC` (include/uapi/linux/magic.h).
    const PIPEFS: u32 = 0x5049_5045;
    const SOCKFS: u32 = 0x534f_434b;
    match fs_magic {
        PIPEFS => format!("pipe:[{ino}]"),
        SOCKFS => format!("socket:[{ino}]"),
        m => format!("pseudo:[{m:#x}:{ino}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::{access_from_flags, access_from_fmode};
    use crate::sensor::event::Access;

    #[test]
    fn access_modes() {
        assert_eq!(access_from_fmode(0x1), Access::Read);
        assert_eq!(access_from_fmode(0x2 | 0x10_0000), Access::Write);
        assert_eq!(access_from_fmode(0x3), Access::ReadWrite);
        assert_eq!(access_from_flags(0o100 | 0o1), Access::Write);
        assert_eq!(access_from_flags(0o2), Access::ReadWrite);
        assert_eq!(access_from_flags(0), Access::Read);
    }
}
