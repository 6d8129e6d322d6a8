//! The kernel struct member offsets the kernel programs read, resolved from the running
//! kernel's BTF at load time.
//!
//! The programs index the `OFFSETS` global with the slot constants of
//! [`monitor_common::config::off`]; this module fills that array. [`FIELDS`] is the single
//! list saying which member each slot means and how wide the programs expect it to be, so a
//! layout the programs would misread fails here, at load, with the struct and member named.

use monitor_common::config::off;

use super::btf::{Btf, BtfError};

/// What the kernel programs expect of a member besides its offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A plain (non-bitfield) member of exactly this many bytes. Pointers are 8: the
    /// programs read them as 64-bit values.
    Bytes(u32),
    /// A struct or union embedded in place; the programs only add its offset.
    Embedded,
}

/// Pointer width as the kernel programs read it.
const PTR: Expect = Expect::Bytes(8);

/// Every slot the programs use: (slot, struct, member path, expectation).
pub const FIELDS: &[(usize, &str, &str, Expect)] = &[
    (off::TASK_REAL_PARENT, "task_struct", "real_parent", PTR),
    (off::TASK_TGID, "task_struct", "tgid", Expect::Bytes(4)),
    (off::TASK_PID, "task_struct", "pid", Expect::Bytes(4)),
    (off::TASK_MM, "task_struct", "mm", PTR),
    (off::TASK_FS, "task_struct", "fs", PTR),
    (off::TASK_FILES, "task_struct", "files", PTR),
    (off::TASK_REAL_CRED, "task_struct", "real_cred", PTR),
    (off::TASK_SIGNAL, "task_struct", "signal", PTR),
    (
        off::TASK_EXIT_CODE,
        "task_struct",
        "exit_code",
        Expect::Bytes(4),
    ),
    (
        off::TASK_START_BOOTTIME,
        "task_struct",
        "start_boottime",
        Expect::Bytes(8),
    ),
    (off::TASK_GROUP_LEADER, "task_struct", "group_leader", PTR),
    (
        off::MM_ARG_START,
        "mm_struct",
        "arg_start",
        Expect::Bytes(8),
    ),
    (off::MM_ARG_END, "mm_struct", "arg_end", Expect::Bytes(8)),
    (off::MM_EXE_FILE, "mm_struct", "exe_file", PTR),
    (off::FS_PWD, "fs_struct", "pwd", Expect::Embedded),
    (off::FS_ROOT, "fs_struct", "root", Expect::Embedded),
    (off::FILES_FDT, "files_struct", "fdt", PTR),
    (off::FDT_FD, "fdtable", "fd", PTR),
    (off::FDT_MAX_FDS, "fdtable", "max_fds", Expect::Bytes(4)),
    (off::FILE_F_PATH, "file", "f_path", Expect::Embedded),
    (off::FILE_F_FLAGS, "file", "f_flags", Expect::Bytes(4)),
    (off::FILE_F_MODE, "file", "f_mode", Expect::Bytes(4)),
    (off::FILE_PRIVATE_DATA, "file", "private_data", PTR),
    (off::FILE_F_INODE, "file", "f_inode", PTR),
    (off::INODE_I_INO, "inode", "i_ino", Expect::Bytes(8)),
    (off::INODE_I_SB, "inode", "i_sb", PTR),
    (
        off::SUPER_BLOCK_S_MAGIC,
        "super_block",
        "s_magic",
        Expect::Bytes(8),
    ),
    (off::PATH_MNT, "path", "mnt", PTR),
    (off::PATH_DENTRY, "path", "dentry", PTR),
    (off::DENTRY_D_PARENT, "dentry", "d_parent", PTR),
    (off::DENTRY_D_NAME, "dentry", "d_name", Expect::Embedded),
    (off::QSTR_NAME, "qstr", "name", PTR),
    // `len` shares a union with `hash_len`; which half it is depends on byte order.
    (off::QSTR_LEN, "qstr", "len", Expect::Bytes(4)),
    (off::VFSMOUNT_MNT_ROOT, "vfsmount", "mnt_root", PTR),
    (off::MOUNT_MNT, "mount", "mnt", Expect::Embedded),
    (off::MOUNT_MNT_PARENT, "mount", "mnt_parent", PTR),
    (off::MOUNT_MNT_MOUNTPOINT, "mount", "mnt_mountpoint", PTR),
    (off::CRED_UID, "cred", "uid", Expect::Bytes(4)),
    (off::CRED_GID, "cred", "gid", Expect::Bytes(4)),
    (off::CRED_EUID, "cred", "euid", Expect::Bytes(4)),
    (off::CRED_EGID, "cred", "egid", Expect::Bytes(4)),
    (off::SIGNAL_LIVE, "signal_struct", "live", Expect::Bytes(4)),
    (off::BPRM_FILENAME, "linux_binprm", "filename", PTR),
    (off::BPRM_FILE, "linux_binprm", "file", PTR),
    // `char buf[BINPRM_BUF_SIZE]` (256 since Linux 5.0): the BPF LSM exec check reads its
    // first two bytes (`#!`: a script, whose interpreter is checked next).
    (off::BPRM_BUF, "linux_binprm", "buf", Expect::Bytes(256)),
    (off::SOCKET_SK, "socket", "sk", PTR),
    (
        off::SOCK_FAMILY,
        "sock",
        "__sk_common.skc_family",
        Expect::Bytes(2),
    ),
    (
        off::SOCK_DADDR,
        "sock",
        "__sk_common.skc_daddr",
        Expect::Bytes(4),
    ),
    (
        off::SOCK_RCV_SADDR,
        "sock",
        "__sk_common.skc_rcv_saddr",
        Expect::Bytes(4),
    ),
    (
        off::SOCK_DPORT,
        "sock",
        "__sk_common.skc_dport",
        Expect::Bytes(2),
    ),
    (
        off::SOCK_NUM,
        "sock",
        "__sk_common.skc_num",
        Expect::Bytes(2),
    ),
    (
        off::SOCK_V6_DADDR,
        "sock",
        "__sk_common.skc_v6_daddr",
        Expect::Bytes(16),
    ),
    (
        off::SOCK_V6_RCV_SADDR,
        "sock",
        "__sk_common.skc_v6_rcv_saddr",
        Expect::Bytes(16),
    ),
    // Plain u16 members since Linux 5.6; 8-bit bitfields before, which the programs cannot read.
    (off::SOCK_PROTOCOL, "sock", "sk_protocol", Expect::Bytes(2)),
    (off::SOCK_TYPE, "sock", "sk_type", Expect::Bytes(2)),
];

// Every slot must fit the array the programs read.
const _: () = {
    let mut i = 0;
    while i < FIELDS.len() {
        assert!(FIELDS[i].0 < off::COUNT);
        i += 1;
    }
};

/// Resolves every slot of the `OFFSETS` array from `btf`. Slots no field uses stay
/// `u32::MAX` ("not present"). Fails on the first member that is missing, not byte-aligned,
/// or not the size the programs read; the error names the struct and member.
pub fn resolve(btf: &Btf) -> Result<[u32; off::COUNT], BtfError> {
    let mut offsets = [u32::MAX; off::COUNT];
    for &(slot, struct_name, member, expect) in FIELDS {
        offsets[slot] = offset_checked(btf, struct_name, member, expect)?;
    }
    Ok(offsets)
}

/// The byte offset of `struct_name.member`, after checking it against `expect`.
pub fn offset_checked(
    btf: &Btf,
    struct_name: &str,
    member: &str,
    expect: Expect,
) -> Result<u32, BtfError> {
    let Expect::Bytes(want) = expect else {
        return btf.member_offset(struct_name, member);
    };
    let found = btf.member(struct_name, member)?;
    let shape = match found.bitfield_bits {
        Some(bits) => Some(format!("a {bits}-bit bitfield")),
        None if found.size != want => Some(format!("{} bytes", found.size)),
        None => None,
    };
    match shape {
        None => Ok(found.offset),
        Some(found) => Err(BtfError::UnexpectedLayout {
            struct_name: struct_name.to_owned(),
            member: member.to_owned(),
            expected: format!("a plain {want}-byte member"),
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use monitor_common::config::off;

    use super::super::btf::tests::{Builder, kernel_btf};
    use super::super::btf::{Btf, BtfError};
    use super::{Expect, FIELDS, offset_checked, resolve};

    /// `BTF_KIND_STRUCT`, for the synthetic blobs.
    const STRUCT: u32 = 4;

    #[test]
    fn slots_are_unique_and_contiguous() {
        let slots: HashSet<usize> = FIELDS.iter().map(|field| field.0).collect();
        assert_eq!(slots.len(), FIELDS.len(), "a slot is listed twice");
        assert!(
            (0..FIELDS.len()).all(|slot| slots.contains(&slot)),
            "a slot is missing"
        );
    }

    /// A `struct sock` whose `sk_protocol` is declared by `member`.
    fn sock_with(member: (&str, u32, u32), kind_flag: bool, int_size: u32) -> Btf {
        let mut b = Builder::new();
        let int = b.int("proto_int", int_size, int_size * 8);
        let (name, _, offset) = member;
        b.composite(STRUCT, "sock", 64, kind_flag, &[(name, int, offset)]);
        Btf::from_bytes(b.build()).unwrap()
    }

    #[test]
    fn plain_u16_protocol_is_accepted() {
        let btf = sock_with(("sk_protocol", 0, 8 * 34), false, 2);
        assert_eq!(
            offset_checked(&btf, "sock", "sk_protocol", Expect::Bytes(2)).unwrap(),
            34
        );
    }

    #[test]
    fn bitfield_protocol_is_rejected() {
        // Before 5.6: `unsigned int sk_protocol : 8` at a byte-aligned bit offset.
        let btf = sock_with(("sk_protocol", 0, (8 << 24) | (8 * 33)), true, 4);
        let err = offset_checked(&btf, "sock", "sk_protocol", Expect::Bytes(2)).unwrap_err();
        assert!(matches!(err, BtfError::UnexpectedLayout { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("`sk_protocol` of struct `sock`"), "{text}");
        assert!(text.contains("8-bit bitfield"), "{text}");
        assert!(text.contains("5.6"), "{text}");
    }

    #[test]
    fn wrong_width_is_rejected() {
        let btf = sock_with(("sk_protocol", 0, 8 * 32), false, 4);
        let err = offset_checked(&btf, "sock", "sk_protocol", Expect::Bytes(2)).unwrap_err();
        assert!(err.to_string().contains("is 4 bytes"), "{err}");
        assert_eq!(
            offset_checked(&btf, "sock", "sk_protocol", Expect::Embedded).unwrap(),
            32
        );
    }

    #[test]
    fn missing_struct_is_named() {
        let mut b = Builder::new();
        b.int("int", 4, 32);
        let btf = Btf::from_bytes(b.build()).unwrap();
        let err = resolve(&btf).unwrap_err();
        assert!(
            err.to_string().contains("struct `task_struct` not found"),
            "{err}"
        );
    }

    #[test]
    fn resolves_every_slot_on_this_kernel() {
        let Some(btf) = kernel_btf() else { return };
        let offsets = resolve(&btf).expect("this kernel's layout is supported");
        let used: HashSet<usize> = FIELDS.iter().map(|field| field.0).collect();
        for (slot, &offset) in offsets.iter().enumerate() {
            assert_eq!(offset == u32::MAX, !used.contains(&slot), "slot {slot}");
        }
        for &(slot, struct_name, member, _) in FIELDS {
            assert_eq!(
                offsets[slot],
                btf.member_offset(struct_name, member).unwrap()
            );
        }
        assert_eq!(offsets[off::PATH_MNT], 0);
        assert_eq!(offsets[off::PATH_DENTRY], 8);
        assert_eq!(offsets[off::QSTR_NAME], 8);
        #[cfg(target_endian = "little")]
        assert_eq!(offsets[off::QSTR_LEN], 4);
        assert_eq!(offsets[off::SOCK_DADDR], 0);
        assert_eq!(offsets[off::SOCK_RCV_SADDR], 4);
        assert_eq!(offsets[off::SOCK_DPORT], 12);
        assert_eq!(offsets[off::SOCK_NUM], 14);
        assert_eq!(offsets[off::SOCK_TYPE], offsets[off::SOCK_PROTOCOL] + 2);
        assert_eq!(btf.member_size("sock", "sk_protocol").unwrap(), 2);
    }
}
