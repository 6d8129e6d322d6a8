//! Link, symlink and truncate end to end, and the fd and flag variants of chmod, rename and
//! unlink: each syscall variant (link, linkat, symlink, symlinkat, truncate, ftruncate, fchmod,
//! renameat2, unlinkat) made directly through `syscall(2)`, so the test pins the syscall and not
//! whatever the C library prefers, with the exact fields of its event.

use std::fs;

use monitor_tests::{Agent, TIMEOUT, TempDir, kernel_version, path_str, python};
use serde_json::json;

/// `call(nr, *args, fail=errno)`: one syscall by number; exits if its errno is not the one
/// expected (0 unless `fail` is given).
const CALL: &str = "
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
AT_FDCWD, AT_SYMLINK_FOLLOW, AT_REMOVEDIR, RENAME_NOREPLACE = -100, 0x400, 0x200, 1
AT_SYMLINK_NOFOLLOW = 0x100

def call(nr, *args, fail=None):
    args = [a.encode() if isinstance(a, str) else a for a in args]
    args = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    r = libc.syscall(ctypes.c_long(nr), *args)
    err = ctypes.get_errno() if r < 0 else 0
    if err != (fail or 0):
        sys.exit('syscall %d: errno %d, expected %s' % (nr, err, fail))
";

/// Makes each syscall under test by number, relative paths resolved against `sys.argv[1]`
/// (the cwd) or a directory fd on its `sub/`.
const LINKS_AND_TRUNCATES: &str = "
os.chdir(sys.argv[1])
call(86, 'f.txt', 'hard.txt')                                    # link
dfd = os.open('sub', os.O_RDONLY | os.O_DIRECTORY)
call(265, dfd, 'g.txt', AT_FDCWD, 'sub/hard-g.txt', AT_SYMLINK_FOLLOW)  # linkat
call(88, '../f.txt', 'sub/rel-link')                             # symlink
call(266, '/etc/hostname', dfd, 'abs-link')                      # symlinkat
call(76, 'f.txt', 1)                                             # truncate
fd = os.open('sub/g.txt', os.O_WRONLY)
call(77, fd, 0)                                                  # ftruncate
call(86, 'absent.txt', 'never.txt', fail=2)                      # link, ENOENT
";

#[test]
fn link_symlink_and_truncate_report_their_paths_and_lengths() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("links");
    fs::create_dir(dir.join("sub")).expect("creating sub");
    fs::write(dir.join("f.txt"), "ff").expect("writing f.txt");
    fs::write(dir.join("sub/g.txt"), "gg").expect("writing sub/g.txt");
    let script = format!("{CALL}{LINKS_AND_TRUNCATES}");
    let mut child = agent.spawn(python(&script).arg(dir.path()).current_dir("/"));
    child.finish_ok(TIMEOUT);
    let pid = child.pid();
    let p = |rel: &str| path_str(dir.join(rel));

    let found = agent.wait_for_all(
        TIMEOUT,
        &[
            json!({"kind": "link", "pid": pid, "new_path": p("hard.txt")}),
            json!({"kind": "link", "pid": pid, "new_path": p("sub/hard-g.txt")}),
            json!({"kind": "symlink", "pid": pid, "new_path": p("sub/rel-link")}),
            json!({"kind": "symlink", "pid": pid, "new_path": p("sub/abs-link")}),
            json!({"kind": "truncate", "pid": pid, "path": p("f.txt")}),
            json!({"kind": "truncate", "pid": pid, "path": p("sub/g.txt")}),
            json!({"kind": "link", "pid": pid, "new_path": p("never.txt")}),
        ],
    );
    let expected = [
        json!({"path": p("f.txt"), "flags": 0, "result": 0}),
        json!({"path": p("sub/g.txt"), "flags": 0x400, "result": 0}),
        // A symlink's target is what the caller wrote, not resolved.
        json!({"path": "../f.txt", "result": 0}),
        json!({"path": "/etc/hostname", "result": 0}),
        json!({"length": 1, "result": 0}),
        json!({"length": 0, "result": 0}),
        json!({"path": p("absent.txt"), "result": -libc::ENOENT}),
    ];
    for (event, fields) in found.iter().zip(&expected) {
        agent.assert_event(event, fields);
    }
    // What the kernel did matches what the events say.
    assert_eq!(fs::read(dir.join("f.txt")).expect("f.txt"), b"f");
    assert_eq!(fs::read(dir.join("sub/g.txt")).expect("g.txt"), b"");
    assert_eq!(
        fs::read_link(dir.join("sub/rel-link")).expect("rel-link"),
        std::path::Path::new("../f.txt")
    );
}

/// The fd form of chmod (the path walked by the kernel from the file), renameat2 with a flag,
/// unlinkat of a directory, a chmod of a bad fd, and fchmodat2 with its flag (ENOSYS before
/// 6.6: `sys.argv[2]` says whether the kernel has it).
const FD_AND_FLAG_VARIANTS: &str = "
os.chdir(sys.argv[1])
fd = os.open('sub/g.txt', os.O_RDONLY)
call(91, fd, 0o604)                                              # fchmod
dfd = os.open('sub', os.O_RDONLY | os.O_DIRECTORY)
call(316, dfd, 'g.txt', AT_FDCWD, 'moved.txt', RENAME_NOREPLACE) # renameat2
call(263, dfd, 'gone', AT_REMOVEDIR)                             # unlinkat
call(91, 999, 0o600, fail=9)                                     # fchmod, EBADF
ENOSYS = 0 if int(sys.argv[2]) else 38
call(452, AT_FDCWD, 'moved.txt', 0o640, AT_SYMLINK_NOFOLLOW, fail=ENOSYS) # fchmodat2
";

#[test]
fn fchmod_renameat2_and_unlinkat_report_their_paths_and_flags() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("fd-variants");
    fs::create_dir_all(dir.join("sub/gone")).expect("creating sub/gone");
    fs::write(dir.join("sub/g.txt"), "gg").expect("writing sub/g.txt");
    let script = format!("{CALL}{FD_AND_FLAG_VARIANTS}");
    let has_fchmodat2 = kernel_version() >= (6, 6);
    let mut child = agent.spawn(
        python(&script)
            .arg(dir.path())
            .arg(if has_fchmodat2 { "1" } else { "0" })
            .current_dir("/"),
    );
    child.finish_ok(TIMEOUT);
    let pid = child.pid();
    let p = |rel: &str| path_str(dir.join(rel));

    let found = agent.wait_for_all(
        TIMEOUT,
        &[
            json!({"kind": "chmod", "pid": pid, "path": p("sub/g.txt")}),
            json!({"kind": "rename", "pid": pid, "path": p("sub/g.txt")}),
            json!({"kind": "unlink", "pid": pid, "path": p("sub/gone")}),
            json!({"kind": "chmod", "pid": pid, "result": -libc::EBADF}),
            json!({"kind": "chmod", "pid": pid, "path": p("moved.txt")}),
        ],
    );
    let fchmodat2_result = if has_fchmodat2 { 0 } else { -libc::ENOSYS };
    let expected = [
        json!({"path": p("sub/g.txt"), "mode": 0o604, "flags": 0, "result": 0}),
        json!({"path": p("sub/g.txt"), "new_path": p("moved.txt"), "flags": 1, "result": 0}),
        json!({"path": p("sub/gone"), "flags": 0x200, "result": 0}),
        json!({"mode": 0o600}),
        json!({"mode": 0o640, "flags": 0x100, "result": fchmodat2_result}),
    ];
    for (event, fields) in found.iter().zip(&expected) {
        agent.assert_event(event, fields);
    }
    assert!(
        found[3].get("path").is_none_or(|v| v.is_null()),
        "a chmod of a bad fd names no file: {}",
        found[3]
    );
    assert!(dir.join("moved.txt").is_file() && !dir.join("sub/gone").exists());
}
