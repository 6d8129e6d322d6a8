//! Errors reading BTF or looking a member up in it.

use std::{io, path::PathBuf};

/// What went wrong reading BTF or looking a member up in it.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "kernel BTF not found at {}: this kernel was built without CONFIG_DEBUG_INFO_BTF; \
         the monitor needs it (or pass `--btf PATH` with a BTF file for this kernel)",
        path.display()
    )]
    NotFound { path: PathBuf },
    #[error("reading kernel BTF at {} failed", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("BTF data is malformed ({0}); the BTF file must be the kernel's vmlinux BTF")]
    Malformed(String),
    #[error("BTF data uses {0}, which this monitor does not understand; update the monitor")]
    Unsupported(String),
    #[error(
        "BTF type {type_id} has unknown kind {kind}: this kernel's BTF is newer than the \
         monitor understands; update the monitor"
    )]
    UnknownKind { type_id: u32, kind: u32 },
    #[error(
        "struct `{name}` not found in this kernel's BTF; the monitor does not support this \
         kernel (it needs Linux >= 5.6)"
    )]
    StructNotFound { name: String },
    #[error(
        "struct `{struct_name}` has no member `{member}` in this kernel's BTF; the monitor \
         does not support this kernel's layout (it needs Linux >= 5.6)"
    )]
    MemberNotFound { struct_name: String, member: String },
    #[error(
        "member `{member}` of struct `{struct_name}` is a bitfield at bit offset {bit_offset}, \
         not on a byte boundary; the monitor cannot read it by byte offset"
    )]
    NotByteAligned {
        struct_name: String,
        member: String,
        bit_offset: u64,
    },
    #[error(
        "`{member}` in struct `{struct_name}` is {found}, not a struct or union, so the member \
         path cannot go into it (paths do not follow pointers)"
    )]
    NotAStruct {
        struct_name: String,
        member: String,
        found: &'static str,
    },
    #[error(
        "member `{member}` of struct `{struct_name}` is {found} in this kernel's BTF, expected \
         {expected}; the monitor does not support this kernel's layout (it needs Linux >= 5.6)"
    )]
    UnexpectedLayout {
        struct_name: String,
        member: String,
        expected: String,
        found: String,
    },
}

pub(super) fn malformed(reason: impl Into<String>) -> BtfError {
    BtfError::Malformed(reason.into())
}
