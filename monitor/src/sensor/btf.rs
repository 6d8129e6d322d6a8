//! A small reader for raw BTF, enough to find kernel struct member offsets at load time.
//!
//! The kernel publishes its own type information at `/sys/kernel/btf/vmlinux`. The format is
//! a header, a section of type records and a section of NUL-terminated names, all
//! little-endian on the machines we run on. Every type record is a 12-byte common part
//! followed by kind-specific data whose length follows from the kind and `vlen`, so the reader
//! walks the records once, remembers where each starts, and indexes structs and unions by name.
//! Type ids are positions in that walk, starting at 1 (id 0 is `void`).
//!
//! Only what the monitor needs is interpreted: struct/union members, the qualifier and typedef
//! chains in front of them, and type sizes. Every other kind is skipped by its length.

mod error;
mod raw;

use std::collections::HashMap;
use std::io;
use std::path::Path;

pub use error::BtfError;
use error::malformed;
use raw::{
    HEADER_LEN, MAGIC, MAGIC_SWAPPED, MAX_DEPTH, MEMBER_LEN, RawMember, Type, VERSION, kind,
    kind_name, parse_types, read_u16, read_u32, section,
};

/// A member found by [`Btf::member`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Byte offset from the start of the outermost struct.
    pub offset: u32,
    /// Size in bytes of the member's type, after typedefs and qualifiers. For a bitfield this
    /// is the size of its declared integer type, not of the bits it occupies.
    pub size: u32,
    /// Width in bits if the member is a (byte-aligned) bitfield.
    pub bitfield_bits: Option<u32>,
}

/// Where a member was found: offset in bits from the struct being searched, its type, and its
/// bitfield width (0 when it is not a bitfield).
#[derive(Clone, Copy, Debug)]
struct Found {
    bit_offset: u64,
    type_id: u32,
    bitfield_bits: u32,
}

/// Parsed BTF: the raw bytes plus an index of type records and of struct/union names.
#[derive(Debug)]
pub struct Btf {
    data: Vec<u8>,
    /// Byte range of the string section within `data`.
    strings: std::ops::Range<usize>,
    /// Type records by id; index 0 is `void`.
    types: Vec<Type>,
    /// Struct and union names to the id of their definition.
    composites: HashMap<String, u32>,
    /// Size of a kernel pointer (from `long unsigned int`, else the host's).
    pointer_size: u32,
}

impl Btf {
    /// Reads and parses a BTF file, normally `/sys/kernel/btf/vmlinux`.
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => BtfError::NotFound {
                path: path.to_owned(),
            },
            _ => BtfError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        Btf::from_bytes(data)
    }

    /// Parses BTF from its raw bytes, checking that every record lies inside its section.
    pub fn from_bytes(data: Vec<u8>) -> Result<Btf, BtfError> {
        let magic = read_u16(&data, 0).ok_or_else(|| malformed("shorter than its header"))?;
        match magic {
            MAGIC => {}
            MAGIC_SWAPPED => return Err(BtfError::Unsupported("big-endian byte order".into())),
            other => return Err(malformed(format!("bad magic {other:#06x}, not BTF"))),
        }
        let version = data.get(2).copied().unwrap_or_default();
        if version != VERSION {
            return Err(BtfError::Unsupported(format!("version {version}")));
        }
        let word = |pos| read_u32(&data, pos).ok_or_else(|| malformed("shorter than its header"));
        let hdr_len = word(4)? as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(malformed(format!("header length {hdr_len} out of range")));
        }
        let type_range = section(hdr_len, word(8)?, word(12)?, data.len(), "type")?;
        let strings = section(hdr_len, word(16)?, word(20)?, data.len(), "string")?;
        let types = parse_types(&data, type_range)?;
        let mut btf = Btf {
            data,
            strings,
            types,
            composites: HashMap::new(),
            pointer_size: size_of::<usize>() as u32,
        };
        btf.index()?;
        Ok(btf)
    }

    /// Byte offset of a member of `struct_name`, following a dot-separated `member_path`
    /// through nested (non-pointer) structs and unions, e.g. `("sock",
    /// "__sk_common.skc_daddr")`. Members of anonymous structs and unions are found as if
    /// they were direct members, as in C.
    pub fn member_offset(&self, struct_name: &str, member_path: &str) -> Result<u32, BtfError> {
        self.locate(struct_name, member_path)
            .map(|(offset, _)| offset)
    }

    /// Size in bytes of the type of a member (see [`Btf::member_offset`] for the path),
    /// after typedefs and qualifiers; for a bitfield, the size of its declared type.
    #[cfg(test)]
    pub fn member_size(&self, struct_name: &str, member_path: &str) -> Result<u32, BtfError> {
        self.member(struct_name, member_path).map(|m| m.size)
    }

    /// Offset, size and bitfield width of a member (see [`Btf::member_offset`] for the path).
    pub fn member(&self, struct_name: &str, member_path: &str) -> Result<Member, BtfError> {
        let (offset, found) = self.locate(struct_name, member_path)?;
        let size = self.type_size(found.type_id)?.map_err(|kind| {
            let kind = kind_name(kind);
            malformed(format!(
                "`{struct_name}.{member_path}` is {kind}, which has no size"
            ))
        })?;
        let bitfield_bits = (found.bitfield_bits != 0).then_some(found.bitfield_bits);
        Ok(Member {
            offset,
            size,
            bitfield_bits,
        })
    }

    /// Builds the struct/union name index and finds the pointer size.
    fn index(&mut self) -> Result<(), BtfError> {
        let mut composites: HashMap<String, u32> = HashMap::new();
        let mut pointer_size = self.pointer_size;
        for (id, ty) in self.types.iter().enumerate().skip(1) {
            let wanted = ty.is_composite() || ty.kind() == kind::INT;
            if !wanted || ty.name_off == 0 {
                continue;
            }
            let name = self.name(ty.name_off)?;
            if ty.kind() == kind::INT {
                if name == "long unsigned int" {
                    pointer_size = ty.size_or_type;
                }
                continue;
            }
            let id = id as u32;
            // The first definition wins; a zero-size record (an empty or placeholder struct)
            // only stands until a sized one of the same name appears.
            let slot = composites.entry(name.to_owned()).or_insert(id);
            if self.types[*slot as usize].size_or_type == 0 && ty.size_or_type != 0 {
                *slot = id;
            }
        }
        self.composites = composites;
        self.pointer_size = pointer_size;
        Ok(())
    }

    /// Resolves a member path to its byte offset and the innermost member.
    fn locate(&self, struct_name: &str, path: &str) -> Result<(u32, Found), BtfError> {
        let mut id = *self
            .composites
            .get(struct_name)
            .ok_or_else(|| BtfError::StructNotFound {
                name: struct_name.to_owned(),
            })?;
        let not_found = || BtfError::MemberNotFound {
            struct_name: struct_name.to_owned(),
            member: path.to_owned(),
        };
        let parts: Vec<&str> = path.split('.').collect();
        // `split` yields at least one part; an empty one (as in `a..b`) never matches a name.
        let mut found = self.find(id, parts[0], 0)?.ok_or_else(not_found)?;
        let mut bit_offset = found.bit_offset;
        for (i, part) in parts.iter().enumerate().skip(1) {
            id = self.descend(struct_name, &parts[..i], found)?;
            found = self.find(id, part, 0)?.ok_or_else(not_found)?;
            bit_offset += found.bit_offset;
        }
        if !bit_offset.is_multiple_of(8) {
            return Err(BtfError::NotByteAligned {
                struct_name: struct_name.to_owned(),
                member: path.to_owned(),
                bit_offset,
            });
        }
        let offset = u32::try_from(bit_offset / 8)
            .map_err(|_| malformed(format!("offset of `{struct_name}.{path}` overflows")))?;
        Ok((offset, found))
    }

    /// The struct or union a path continues into from member `found` (reached by `prefix`).
    fn descend(&self, struct_name: &str, prefix: &[&str], found: Found) -> Result<u32, BtfError> {
        let inner = self.resolve(found.type_id)?;
        let ty = self.ty(inner)?;
        if found.bitfield_bits == 0 && ty.is_composite() {
            return Ok(inner);
        }
        Err(BtfError::NotAStruct {
            struct_name: struct_name.to_owned(),
            member: prefix.join("."),
            found: match found.bitfield_bits {
                0 => kind_name(ty.kind()),
                _ => "a bitfield",
            },
        })
    }

    /// Finds member `name` of struct/union `id`: first among its named members, then inside
    /// its anonymous struct/union members, recursively.
    fn find(&self, id: u32, name: &str, depth: usize) -> Result<Option<Found>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(malformed(format!(
                "anonymous members nested deeper than {MAX_DEPTH}"
            )));
        }
        let ty = self.ty(id)?;
        for i in 0..ty.vlen() {
            let member = self.member_at(&ty, i)?;
            if !name.is_empty() && member.name_off != 0 && self.name(member.name_off)? == name {
                return self.found(&ty, member).map(Some);
            }
        }
        for i in 0..ty.vlen() {
            let member = self.member_at(&ty, i)?;
            if member.name_off != 0 && !self.name(member.name_off)?.is_empty() {
                continue;
            }
            let inner = self.resolve(member.type_id)?;
            if !self.ty(inner)?.is_composite() {
                continue;
            }
            if let Some(found) = self.find(inner, name, depth + 1)? {
                let outer = self.found(&ty, member)?;
                let bit_offset = outer.bit_offset + found.bit_offset;
                return Ok(Some(Found {
                    bit_offset,
                    ..found
                }));
            }
        }
        Ok(None)
    }

    /// Decodes a member's bit offset and bitfield width. With the struct's kind_flag set, the
    /// offset word holds the bitfield width in its top 8 bits and the bit offset in the low
    /// 24; without it, the offset is in bits and a bitfield shows as an INT narrower than its
    /// size (the older encoding).
    fn found(&self, parent: &Type, member: RawMember) -> Result<Found, BtfError> {
        let type_id = member.type_id;
        if parent.kind_flag() {
            let bit_offset = u64::from(member.offset & 0x00ff_ffff);
            return Ok(Found {
                bit_offset,
                type_id,
                bitfield_bits: member.offset >> 24,
            });
        }
        let mut found = Found {
            bit_offset: u64::from(member.offset),
            type_id,
            bitfield_bits: 0,
        };
        let ty = self.ty(self.resolve(type_id)?)?;
        if ty.kind() == kind::INT {
            let encoding = self.u32_at(ty.extra)?;
            let bits = encoding & 0xff;
            let shift = (encoding >> 16) & 0xff;
            if shift != 0 || u64::from(bits) != u64::from(ty.size_or_type) * 8 {
                found.bit_offset += u64::from(shift);
                found.bitfield_bits = bits;
            }
        }
        Ok(found)
    }

    /// Follows typedefs and qualifiers (const, volatile, restrict, type tags) to the type
    /// they name.
    fn resolve(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_DEPTH {
            let ty = self.ty(id)?;
            match ty.kind() {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = ty.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(malformed(format!(
            "typedef/qualifier chain longer than {MAX_DEPTH} at type {id}"
        )))
    }

    /// Size of a type in bytes, or `Err(kind)` for a kind that has no size (void, function,
    /// forward declaration, ...).
    fn type_size(&self, id: u32) -> Result<Result<u32, u32>, BtfError> {
        let mut count: u64 = 1;
        let mut id = id;
        for _ in 0..MAX_DEPTH {
            let ty = self.ty(self.resolve(id)?)?;
            let size = match ty.kind() {
                kind::INT | kind::ENUM | kind::ENUM64 | kind::FLOAT => ty.size_or_type,
                _ if ty.is_composite() => ty.size_or_type,
                kind::PTR => self.pointer_size,
                kind::ARRAY => {
                    id = self.u32_at(ty.extra)?;
                    count = count.saturating_mul(u64::from(self.u32_at(ty.extra + 8)?));
                    continue;
                }
                other => return Ok(Err(other)),
            };
            let total = count.saturating_mul(u64::from(size));
            return u32::try_from(total)
                .map(Ok)
                .map_err(|_| malformed(format!("size of type {id} overflows")));
        }
        Err(malformed(format!(
            "arrays nested deeper than {MAX_DEPTH} at type {id}"
        )))
    }

    fn ty(&self, id: u32) -> Result<Type, BtfError> {
        self.types
            .get(id as usize)
            .copied()
            .ok_or_else(|| malformed(format!("reference to type {id}, beyond the last type")))
    }

    fn member_at(&self, parent: &Type, index: usize) -> Result<RawMember, BtfError> {
        let pos = parent.extra + index * MEMBER_LEN;
        Ok(RawMember {
            name_off: self.u32_at(pos)?,
            type_id: self.u32_at(pos + 4)?,
            offset: self.u32_at(pos + 8)?,
        })
    }

    fn u32_at(&self, pos: usize) -> Result<u32, BtfError> {
        read_u32(&self.data, pos).ok_or_else(|| malformed(format!("read past the end at {pos}")))
    }

    /// The NUL-terminated name at `offset` in the string section.
    fn name(&self, offset: u32) -> Result<&str, BtfError> {
        let start = self.strings.start.saturating_add(offset as usize);
        let bytes = self
            .data
            .get(start..self.strings.end)
            .ok_or_else(|| malformed(format!("name offset {offset} outside the string section")))?;
        let len = bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| malformed(format!("name at offset {offset} is not NUL-terminated")))?;
        std::str::from_utf8(&bytes[..len])
            .map_err(|_| malformed(format!("name at offset {offset} is not UTF-8")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::{Btf, BtfError, Member, kind};

    /// Builds raw little-endian BTF blobs by hand, one type record at a time.
    pub(crate) struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Builder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        /// Adds a name to the string section; the empty name is offset 0.
        pub(crate) fn str(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let offset = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            offset
        }

        /// Adds one type record with its kind-specific words; returns its id.
        pub(crate) fn add(
            &mut self,
            name: &str,
            kind: u32,
            kind_flag: bool,
            vlen: u32,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            let name_off = self.str(name);
            for word in [name_off, info, size_or_type].iter().chain(extra) {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        pub(crate) fn int(&mut self, name: &str, size: u32, bits: u32) -> u32 {
            self.add(name, kind::INT, false, 0, size, &[bits])
        }

        /// Adds a struct or union; members are (name, type id, offset word).
        pub(crate) fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            kind_flag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut extra = Vec::new();
            for &(member, type_id, offset) in members {
                extra.extend([self.str(member), type_id, offset]);
            }
            self.add(name, kind, kind_flag, members.len() as u32, size, &extra)
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            self.build_with_header(24)
        }

        fn build_with_header(&self, hdr_len: u32) -> Vec<u8> {
            let type_len = self.types.len() as u32;
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9f_u16.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let words = [hdr_len, 0, type_len, type_len, self.strings.len() as u32];
            for word in words {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.resize(hdr_len as usize, 0);
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A blob with every kind before the structs that matter, so a kind skipped by the wrong
    /// length would derail everything after it.
    fn sample() -> Builder {
        let mut b = Builder::new();
        let int = b.int("int", 4, 32);
        let uchar = b.int("unsigned char", 1, 8);
        let ulong = b.int("long unsigned int", 8, 64);
        let (a, bb) = (b.str("A"), b.str("B"));
        b.add("e", kind::ENUM, false, 2, 4, &[a, 0, bb, 1]);
        let c = b.str("C");
        b.add("e64", kind::ENUM64, false, 2, 8, &[c, 1, 2, c, 3, 4]);
        let arg = b.str("arg");
        let proto = b.add("", kind::FUNC_PROTO, false, 2, int, &[arg, int, 0, uchar]);
        let func = b.add("f", kind::FUNC, false, 1, proto, &[]);
        let var = b.add("v", kind::VAR, false, 0, int, &[1]);
        b.add(".data", kind::DATASEC, false, 1, 4, &[var, 0, 4]);
        b.add("double", kind::FLOAT, false, 0, 8, &[]);
        b.add("tag", kind::DECL_TAG, false, 0, func, &[u32::MAX]);
        let user_int = b.add("user", kind::TYPE_TAG, false, 0, int, &[]);
        let array = b.add("", kind::ARRAY, false, 0, 0, &[int, int, 3]);
        b.add("outer", kind::FWD, false, 0, 0, &[]);
        b.composite(kind::STRUCT, "outer", 0, false, &[]);
        let u32_t = b.add("u32_t", kind::TYPEDEF, false, 0, int, &[]);
        let inner = b.composite(
            kind::STRUCT,
            "inner",
            8,
            false,
            &[("a", int, 0), ("b", u32_t, 32)],
        );
        let const_inner = b.add("", kind::CONST, false, 0, inner, &[]);
        let inner_t = b.add("inner_t", kind::TYPEDEF, false, 0, const_inner, &[]);
        let halves = [("hi", int, 0), ("lo", u32_t, 32)];
        let anon_struct = b.composite(kind::STRUCT, "", 8, false, &halves);
        let whole = [("whole", ulong, 0), ("", anon_struct, 0)];
        let anon_union = b.composite(kind::UNION, "", 8, false, &whole);
        let ptr = b.add("", kind::PTR, false, 0, inner, &[]);
        let vol = b.add("", kind::VOLATILE, false, 0, user_int, &[]);
        let members = [
            ("x", int, 0),
            ("", anon_union, 64),
            ("named_inner", inner_t, 128),
            ("flags", uchar, (3 << 24) | 195),
            ("proto", uchar, (8 << 24) | 200),
            ("arr", array, 224),
            ("p", ptr, 320),
            ("vol", vol, 352),
        ];
        b.composite(kind::STRUCT, "outer", 48, true, &members);
        let bits3 = b.int("bits3", 4, 3);
        b.composite(
            kind::STRUCT,
            "old",
            4,
            false,
            &[("f", bits3, 0), ("g", bits3, 3)],
        );
        b.composite(kind::STRUCT, "outer", 8, false, &[]);
        b
    }

    fn parse(b: &Builder) -> Btf {
        Btf::from_bytes(b.build()).expect("the sample BTF parses")
    }

    #[test]
    fn skips_every_kind_and_indexes_all_types() {
        let btf = parse(&sample());
        assert_eq!(btf.types.len(), 28, "void plus 27 records");
        assert_eq!(btf.pointer_size, 8);
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = parse(&sample());
        assert_eq!(btf.member_offset("outer", "x").unwrap(), 0);
        // `whole` is in an anonymous union, `hi`/`lo` in an anonymous struct inside it.
        assert_eq!(btf.member_offset("outer", "whole").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "hi").unwrap(), 8);
        assert_eq!(btf.member_offset("outer", "lo").unwrap(), 12);
        assert_eq!(btf.member_size("outer", "lo").unwrap(), 4);
        assert_eq!(btf.member_size("outer", "whole").unwrap(), 8);
    }

    #[test]
    fn nested_paths_follow_typedefs_and_qualifiers() {
        let btf = parse(&sample());
        assert_eq!(btf.member_offset("outer", "named_inner").unwrap(), 16);
        assert_eq!(btf.member_offset("outer", "named_inner.b").unwrap(), 20);
        assert_eq!(btf.member_size("outer", "named_inner").unwrap(), 8);
        assert_eq!(btf.member_size("outer", "named_inner.b").unwrap(), 4);
        assert_eq!(
            btf.member_size("outer", "vol").unwrap(),
            4,
            "volatile -> type tag -> int"
        );
    }

    #[test]
    fn sizes_of_arrays_and_pointers() {
        let btf = parse(&sample());
        assert_eq!(
            btf.member("outer", "arr").unwrap(),
            Member {
                offset: 28,
                size: 12,
                bitfield_bits: None
            }
        );
        assert_eq!(
            btf.member("outer", "p").unwrap(),
            Member {
                offset: 40,
                size: 8,
                bitfield_bits: None
            }
        );
    }

    #[test]
    fn kind_flag_bitfields() {
        let btf = parse(&sample());
        let proto = btf.member("outer", "proto").unwrap();
        assert_eq!(
            proto,
            Member {
                offset: 25,
                size: 1,
                bitfield_bits: Some(8)
            }
        );
        let err = btf.member_offset("outer", "flags").unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::NotByteAligned {
                    bit_offset: 195,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("`flags` of struct `outer`"),
            "{err}"
        );
    }

    #[test]
    fn old_style_int_bitfields() {
        let btf = parse(&sample());
        assert_eq!(btf.member("old", "f").unwrap().bitfield_bits, Some(3));
        let err = btf.member_offset("old", "g").unwrap_err();
        assert!(
            matches!(err, BtfError::NotByteAligned { bit_offset: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn first_sized_definition_wins() {
        // The forward declaration, the zero-size record and the later 8-byte `outer` have
        // no member `x`: finding it proves the 48-byte definition was chosen.
        let btf = parse(&sample());
        assert_eq!(btf.member_size("outer", "x").unwrap(), 4);
        assert_eq!(btf.types[btf.composites["outer"] as usize].size_or_type, 48);
    }

    #[test]
    fn lookup_errors_name_struct_and_member() {
        let btf = parse(&sample());
        let err = btf.member_offset("nope", "x").unwrap_err();
        assert!(matches!(err, BtfError::StructNotFound { .. }), "{err}");
        assert!(err.to_string().contains("struct `nope` not found"), "{err}");
        let err = btf.member_offset("outer", "named_inner.zz").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("struct `outer` has no member `named_inner.zz`"),
            "{text}"
        );
        let err = btf.member_offset("outer", "p.a").unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::NotAStruct {
                    found: "a pointer",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("`p` in struct `outer`"), "{err}");
        let err = btf.member_offset("outer", "proto.a").unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::NotAStruct {
                    found: "a bitfield",
                    ..
                }
            ),
            "{err}"
        );
        for path in ["", ".x", "named_inner..b", "named_inner."] {
            let err = btf.member_offset("outer", path).unwrap_err();
            assert!(
                matches!(err, BtfError::MemberNotFound { .. }),
                "{path:?}: {err}"
            );
        }
    }

    #[test]
    fn longer_header_is_accepted() {
        let btf = Btf::from_bytes(sample().build_with_header(32)).unwrap();
        assert_eq!(btf.member_offset("outer", "lo").unwrap(), 12);
    }

    #[test]
    fn rejects_bad_headers() {
        let good = sample().build();
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(Btf::from_bytes(bad), Err(BtfError::Malformed(_))));
        let mut swapped = good.clone();
        swapped[..2].copy_from_slice(&0xeb9f_u16.to_be_bytes());
        assert!(matches!(
            Btf::from_bytes(swapped),
            Err(BtfError::Unsupported(_))
        ));
        let mut version = good.clone();
        version[2] = 2;
        assert!(matches!(
            Btf::from_bytes(version),
            Err(BtfError::Unsupported(_))
        ));
        let mut short_header = good.clone();
        short_header[4] = 20;
        assert!(matches!(
            Btf::from_bytes(short_header),
            Err(BtfError::Malformed(_))
        ));
        let mut long_strings = good;
        long_strings[20] = long_strings[20].wrapping_add(1);
        assert!(matches!(
            Btf::from_bytes(long_strings),
            Err(BtfError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_data_is_an_error_not_a_panic() {
        let good = sample().build();
        for len in 0..good.len() {
            assert!(
                Btf::from_bytes(good[..len].to_vec()).is_err(),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn unknown_kind_is_reported() {
        let mut b = Builder::new();
        b.int("int", 4, 32);
        b.add("future", 25, false, 0, 0, &[]);
        let err = Btf::from_bytes(b.build()).unwrap_err();
        assert!(
            matches!(
                err,
                BtfError::UnknownKind {
                    type_id: 2,
                    kind: 25
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("update the monitor"), "{err}");
    }

    #[test]
    fn bad_references_are_errors() {
        let mut b = Builder::new();
        b.composite(kind::STRUCT, "s", 4, false, &[("dangling", 99, 0)]);
        let btf = Btf::from_bytes(b.build()).unwrap();
        for err in [
            btf.member_offset("s", "dangling"),
            btf.member_size("s", "dangling"),
        ] {
            let err = err.unwrap_err();
            assert!(matches!(err, BtfError::Malformed(_)), "{err}");
        }
        let mut b = Builder::new();
        b.add("", kind::STRUCT, false, 0, 4, &[]);
        let mut blob = b.build();
        blob[24..28].copy_from_slice(&1000_u32.to_le_bytes());
        let err = Btf::from_bytes(blob).unwrap_err();
        assert!(matches!(err, BtfError::Malformed(_)), "{err}");
    }

    #[test]
    fn missing_file_says_what_to_do() {
        let err = Btf::from_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(matches!(err, BtfError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    /// The running kernel's BTF. Missing BTF is announced loudly and fails under `CI=true`.
    pub(crate) fn kernel_btf() -> Option<Btf> {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            let message = format!(
                "{} is missing: this kernel has no BTF, so the tests against real kernel \
                 layouts did NOT run",
                path.display()
            );
            crate::testutil::skip_or_fail(&message);
            return None;
        }
        Some(Btf::from_file(path).expect("the running kernel's BTF parses"))
    }

    #[test]
    fn kernel_layouts_that_never_change() {
        let Some(btf) = kernel_btf() else { return };
        assert_eq!(btf.member_offset("path", "mnt").unwrap(), 0);
        assert_eq!(btf.member_offset("path", "dentry").unwrap(), 8);
        assert_eq!(btf.member_offset("qstr", "name").unwrap(), 8);
        assert_eq!(btf.member_size("qstr", "len").unwrap(), 4);
        assert_eq!(btf.member_size("sock", "sk_protocol").unwrap(), 2);
        assert_eq!(btf.member("sock", "sk_type").unwrap().bitfield_bits, None);
        // sock_common starts with union { addrpair; struct { daddr; rcv_saddr } }, then the
        // hash, then union { portpair; struct { dport; num } }.
        let at = |member| btf.member_offset("sock", member).unwrap();
        assert_eq!(at("__sk_common.skc_daddr"), 0);
        assert_eq!(at("__sk_common.skc_rcv_saddr"), 4);
        assert_eq!(at("__sk_common.skc_dport"), 12);
        assert_eq!(at("__sk_common.skc_num"), 14);
        // Reached through anonymous unions/structs on recent kernels.
        let d_name = btf.member_offset("dentry", "d_name").unwrap();
        assert_eq!(
            btf.member_offset("dentry", "d_name.name").unwrap(),
            d_name + 8
        );
        assert!(btf.member_offset("file", "f_path").is_ok());
        let arg_start = btf.member_offset("mm_struct", "arg_start").unwrap();
        assert_eq!(
            btf.member_offset("mm_struct", "arg_end").unwrap(),
            arg_start + 8
        );
        assert!(btf.member_offset("task_struct", "real_parent").is_ok());
        assert_eq!(btf.pointer_size, 8);
    }

    #[test]
    fn every_kernel_struct_member_is_readable() {
        // Walks every struct and union of the running kernel, so a mis-parsed record anywhere
        // shows up as an error or a member that cannot be found.
        let Some(btf) = kernel_btf() else { return };
        assert!(
            btf.composites.len() > 1000,
            "only {} structs",
            btf.composites.len()
        );
        for (name, &id) in &btf.composites {
            let ty = btf.ty(id).unwrap();
            for i in 0..ty.vlen() {
                let member = btf.member_at(&ty, i).unwrap();
                let member_name = btf.name(member.name_off).unwrap();
                if member_name.is_empty() {
                    continue;
                }
                match btf.member(name, member_name) {
                    Ok(_) | Err(BtfError::NotByteAligned { .. }) => {}
                    Err(err) => panic!("{name}.{member_name}: {err}"),
                }
            }
        }
    }
}
