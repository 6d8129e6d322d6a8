//! The raw layout of BTF: header and record sizes, kind numbers, the common part of a type
//! record and the walk over the type section.

use super::error::{BtfError, malformed};

/// `BTF_MAGIC` as stored by a little-endian producer.
pub(super) const MAGIC: u16 = 0xeb9f;
/// `BTF_MAGIC` as read back from a big-endian producer.
pub(super) const MAGIC_SWAPPED: u16 = 0x9feb;
/// The only BTF version there is.
pub(super) const VERSION: u8 = 1;
/// Length of `struct btf_header` in version 1; newer headers may be longer.
pub(super) const HEADER_LEN: usize = 24;
/// Length of `struct btf_type`, the part every type record starts with.
pub(super) const TYPE_LEN: usize = 12;
/// Length of `struct btf_member`.
pub(super) const MEMBER_LEN: usize = 12;
/// Bound on typedef/qualifier chains and anonymous-member nesting, so malformed (cyclic) data
/// ends in an error instead of a hang. Real kernels need fewer than ten.
pub(super) const MAX_DEPTH: usize = 32;

/// Kind numbers (`BTF_KIND_*`), bits 24..=28 of a type's `info` word (bit 31 is kind_flag).
pub(super) mod kind {
    pub const VOID: u32 = 0;
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// The common part of one type record, plus where its kind-specific data starts. The
/// default is `void`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Type {
    pub(super) name_off: u32,
    pub(super) info: u32,
    /// `size` for INT, ENUM, STRUCT, UNION, FLOAT, DATASEC, ENUM64; `type` for the others.
    pub(super) size_or_type: u32,
    /// Position in the data of the bytes that follow the common part.
    pub(super) extra: usize,
}

impl Type {
    pub(super) fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }

    pub(super) fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }

    pub(super) fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }

    pub(super) fn is_composite(&self) -> bool {
        matches!(self.kind(), kind::STRUCT | kind::UNION)
    }

    /// Length of the kind-specific data after the common part, `None` for an unknown kind.
    pub(super) fn extra_len(&self) -> Option<usize> {
        let vlen = self.vlen();
        let len = match self.kind() {
            kind::INT | kind::VAR | kind::DECL_TAG => 4,
            kind::ARRAY => 12,
            kind::STRUCT | kind::UNION => vlen * MEMBER_LEN,
            kind::ENUM | kind::FUNC_PROTO => vlen * 8,
            kind::DATASEC | kind::ENUM64 => vlen * 12,
            // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: no data.
            kind::PTR..=kind::ENUM64 => 0,
            _ => return None,
        };
        Some(len)
    }
}

/// One `struct btf_member`.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawMember {
    pub(super) name_off: u32,
    pub(super) type_id: u32,
    pub(super) offset: u32,
}

/// Walks the type section, recording where each record starts.
pub(super) fn parse_types(
    data: &[u8],
    range: std::ops::Range<usize>,
) -> Result<Vec<Type>, BtfError> {
    let section = data
        .get(..range.end)
        .ok_or_else(|| malformed("type section too long"))?;
    let mut types = vec![Type::default()];
    let mut pos = range.start;
    while pos < range.end {
        let type_id = u32::try_from(types.len()).map_err(|_| malformed("too many types"))?;
        let truncated = || malformed(format!("type {type_id} runs past its section"));
        let word = |at: usize| read_u32(section, at).ok_or_else(truncated);
        let ty = Type {
            name_off: word(pos)?,
            info: word(pos + 4)?,
            size_or_type: word(pos + 8)?,
            extra: pos + TYPE_LEN,
        };
        let extra_len = ty.extra_len().ok_or(BtfError::UnknownKind {
            type_id,
            kind: ty.kind(),
        })?;
        pos = ty.extra + extra_len;
        if pos > range.end {
            return Err(truncated());
        }
        types.push(ty);
    }
    Ok(types)
}

/// The byte range of a section given its offset and length after the header.
pub(super) fn section(
    hdr_len: usize,
    offset: u32,
    len: u32,
    total: usize,
    what: &str,
) -> Result<std::ops::Range<usize>, BtfError> {
    let start = hdr_len.checked_add(offset as usize);
    let end = start.and_then(|s| s.checked_add(len as usize));
    match (start, end) {
        (Some(start), Some(end)) if end <= total => Ok(start..end),
        _ => Err(malformed(format!(
            "{what} section ({offset}+{len}) lies beyond the data"
        ))),
    }
}

pub(super) fn read_u16(data: &[u8], pos: usize) -> Option<u16> {
    let bytes = data.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

pub(super) fn read_u32(data: &[u8], pos: usize) -> Option<u32> {
    let bytes = data.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// A readable name for a kind number, with its article, for error messages.
pub(super) fn kind_name(kind: u32) -> &'static str {
    match kind {
        kind::VOID => "void",
        kind::INT => "an integer",
        kind::PTR => "a pointer",
        kind::ARRAY => "an array",
        kind::STRUCT => "a struct",
        kind::UNION => "a union",
        kind::ENUM | kind::ENUM64 => "an enum",
        kind::FWD => "a forward declaration",
        kind::TYPEDEF => "a typedef",
        kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => "a qualified type",
        kind::FUNC | kind::FUNC_PROTO => "a function",
        kind::VAR => "a variable",
        kind::DATASEC => "a data section",
        kind::FLOAT => "a float",
        kind::DECL_TAG => "a declaration tag",
        _ => "a type of unknown kind",
    }
}
