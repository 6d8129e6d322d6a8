//! File sensors end to end: the path the kernel actually opened (relative to cwd or a dirfd,
//! through symlinks, across mounts), access mode, creation, failures, and unlink, rename, chmod
//! and memfd_create. The children are python scripts with fixed text; paths come as arguments.

use std::{ffi::OsStr, fs, os::unix::ffi::OsStrExt as _, os::unix::fs::symlink, process::Command};

use monitor_tests::{Agent, TIMEOUT, TempDir, TmpfsMount, path_str, python};
use serde_json::{Value, json};

/// Waits for the open event of `pid` for `path` and asserts its exact fields.
#[track_caller]
fn assert_open(agent: &Agent, pid: u32, path: &str, access: &str, created: bool, result: i64) {
    let open = agent.wait_for(TIMEOUT, |ev| {
        ev["kind"] == "open" && ev["pid"] == pid && ev["path"] == path
    });
    agent.assert_event(
        &open,
        &json!({
            "kind": "open",
            "pid": pid,
            "path": path,
            "access": access,
            "created": created,
            "result": result,
        }),
    );
}

/// Runs `cmd` to completion and asserts its read-only opens of `paths` (absolute, as reported),
/// each of an existing file that succeeded.
#[track_caller]
fn assert_reads(agent: &Agent, cmd: &mut Command, paths: &[String]) {
    let mut child = agent.spawn(cmd);
    child.finish_ok(TIMEOUT);
    for path in paths {
        assert_open(agent, child.pid(), path, "read", false, 0);
    }
}

/// A fresh directory with `sub/file.txt` in it, and that file's path.
#[track_caller]
fn dir_with_sub_file(label: &str) -> (TempDir, String) {
    let dir = TempDir::new(label);
    make_dir(dir.join("sub"));
    write_file(dir.join("sub/file.txt"), "x");
    let path = path_str(dir.join("sub/file.txt"));
    (dir, path)
}

#[track_caller]
fn write_file(path: impl AsRef<std::path::Path>, contents: &str) {
    let path = path.as_ref();
    if let Err(e) = fs::write(path, contents) {
        panic!("cannot write {}: {e}", path.display());
    }
}

#[track_caller]
fn make_dir(path: impl AsRef<std::path::Path>) {
    let path = path.as_ref();
    if let Err(e) = fs::create_dir_all(path) {
        panic!("cannot create {}: {e}", path.display());
    }
}

const CHDIR_THEN_OPEN_RELATIVE: &str = "
import os, sys
os.chdir(sys.argv[1])
os.close(os.open(sys.argv[2], os.O_RDONLY))
";

#[test]
fn relative_open_after_chdir_reports_the_absolute_path() {
    let Some(agent) = Agent::start() else { return };
    let (dir, path) = dir_with_sub_file("open-relative");
    // Started in /, so only the chdir makes the relative path land in `dir`.
    assert_reads(
        &agent,
        python(CHDIR_THEN_OPEN_RELATIVE)
            .arg(dir.path())
            .arg("sub/file.txt")
            .current_dir("/"),
        &[path],
    );
}

const OPEN_RELATIVE_TO_DIRFD: &str = "
import os, sys
dfd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open('file.txt', os.O_RDONLY, dir_fd=dfd))
";

#[test]
fn open_relative_to_a_dirfd_reports_the_absolute_path() {
    let Some(agent) = Agent::start() else { return };
    let (dir, path) = dir_with_sub_file("open-dirfd");
    assert_reads(
        &agent,
        python(OPEN_RELATIVE_TO_DIRFD)
            .arg(dir.join("sub"))
            .current_dir("/"),
        &[path],
    );
}

const OPEN_EACH_READ_ONLY: &str = "
import os, sys
for path in sys.argv[1:]:
    os.close(os.open(path, os.O_RDONLY))
";

#[test]
fn open_through_symlinks_reports_the_target() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("open-symlink");
    make_dir(dir.join("real"));
    write_file(dir.join("real/a.txt"), "a");
    write_file(dir.join("real/b.txt"), "b");
    // A symlinked file (relative link) and a file under a symlinked directory (absolute link).
    symlink("real/a.txt", dir.join("link-a.txt")).expect("creating link-a.txt");
    symlink(dir.join("real"), dir.join("linkdir")).expect("creating linkdir");
    assert_reads(
        &agent,
        python(OPEN_EACH_READ_ONLY)
            .arg(dir.join("link-a.txt"))
            .arg(dir.join("linkdir/b.txt")),
        &[
            path_str(dir.join("real/a.txt")),
            path_str(dir.join("real/b.txt")),
        ],
    );
}

#[test]
fn open_inside_a_tmpfs_reports_the_path_through_the_mount_point() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("open-tmpfs");
    make_dir(dir.join("mnt"));
    let mount = match TmpfsMount::new(&dir.join("mnt")) {
        Ok(mount) => mount,
        Err(e) => panic!("cannot mount a tmpfs on {}: {e}", dir.join("mnt").display()),
    };
    make_dir(mount.path().join("inside"));
    write_file(mount.path().join("inside/data.txt"), "d");
    // The cwd is inside the tmpfs, and the path is relative: the whole path crosses the mount.
    assert_reads(
        &agent,
        python(CHDIR_THEN_OPEN_RELATIVE)
            .arg(mount.path().join("inside"))
            .arg("data.txt"),
        &[path_str(dir.join("mnt/inside/data.txt"))],
    );
}

const CREATE_REOPEN_READ_WRITE: &str = "
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b'one')
os.close(fd)
os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
os.close(os.open(path, os.O_RDWR))
";

#[test]
fn open_reports_creation_and_access_mode() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("open-create");
    let path = path_str(dir.join("new.txt"));
    let mut child = agent.spawn(python(CREATE_REOPEN_READ_WRITE).arg(&path));
    child.finish_ok(TIMEOUT);
    let pid = child.pid();

    let base = json!({"kind": "open", "pid": pid, "path": path, "result": 0});
    let with = |access: &str, created: bool| {
        let mut pattern = base.clone();
        pattern["access"] = json!(access);
        pattern["created"] = json!(created);
        pattern
    };
    let found = agent.wait_for_all(
        TIMEOUT,
        &[
            with("write", true),
            with("write", false),
            with("read_write", false),
        ],
    );
    for open in &found {
        agent.assert_event(open, &base);
    }
    // Exactly three opens of the file, in the order the script made them.
    let seen: Vec<(String, bool)> = agent
        .events_for_pid(pid)
        .iter()
        .filter(|ev| ev["kind"] == "open" && ev["path"] == path.as_str())
        .map(|ev| {
            (
                ev["access"].as_str().unwrap_or("?").to_owned(),
                ev["created"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("write".to_owned(), true),
            ("write".to_owned(), false),
            ("read_write".to_owned(), false)
        ],
        "open events of {path}"
    );
}

const FAILED_OPENS: &str = "
import os, sys
os.chdir(sys.argv[1])
for path, flags in (('missing/nope.txt', os.O_RDONLY),
                    ('missing/new.txt', os.O_CREAT | os.O_WRONLY)):
    try:
        os.close(os.open(path, flags, 0o644))
    except FileNotFoundError:
        pass
    else:
        sys.exit('opening ' + path + ' succeeded')
";

#[test]
fn failed_open_reports_errno_and_the_absolute_requested_path() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("open-missing");
    let mut child = agent.spawn(python(FAILED_OPENS).arg(dir.path()).current_dir("/"));
    child.finish_ok(TIMEOUT);
    let pid = child.pid();
    let enoent = -i64::from(libc::ENOENT);
    let missing = path_str(dir.join("missing/nope.txt"));
    assert_open(&agent, pid, &missing, "read", false, enoent);
    let not_created = path_str(dir.join("missing/new.txt"));
    assert_open(&agent, pid, &not_created, "write", false, enoent);
}

#[test]
fn open_of_a_non_utf8_name_is_escaped() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("open-bytes");
    let file = dir.path().join(OsStr::from_bytes(b"caf\xe9.txt"));
    write_file(&file, "x");
    let mut child = agent.spawn(python(OPEN_EACH_READ_ONLY).arg(&file));
    child.finish_ok(TIMEOUT);
    let path = format!(r"{}/caf\xe9.txt", path_str(dir.path()));
    assert_open(&agent, child.pid(), &path, "read", false, 0);
    let open = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "open" && ev["path"] == path);
    assert_eq!(
        open["escaped"],
        json!(["path"]),
        "the event says the path is escaped"
    );
}

#[test]
fn an_event_time_lies_between_wall_clock_reads_taken_around_the_action() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("open-time");
    let file = dir.join("t.txt");
    write_file(&file, "x");
    let path = path_str(&file);
    let before = std::time::SystemTime::now();
    let mut child = agent.spawn(python(OPEN_EACH_READ_ONLY).arg(&file));
    child.finish_ok(TIMEOUT);
    let after = std::time::SystemTime::now();
    let pid = child.pid();
    let open = agent.wait_for(TIMEOUT, |ev| {
        ev["kind"] == "open" && ev["pid"] == pid && ev["path"] == path
    });
    let time = open["time"].as_str().and_then(monitor_tests::parse_time);
    let time = time.unwrap_or_else(|| panic!("no time: {open}"));
    assert!(
        before <= time && time <= after,
        "{time:?} is not between {before:?} and {after:?} (CLOCK_REALTIME)"
    );
}

/// Reopens a pipe's read end through `/proc/self/fd/N` and `/dev/fd/N`. Prints the pipe's inode.
const REOPEN_PIPE: &str = "
import os
r, w = os.pipe()
os.write(w, b'x')
for p in ('/proc/self/fd/%d' % r, '/dev/fd/%d' % r):
    os.close(os.open(p, os.O_RDONLY))
print(os.fstat(r).st_ino, flush=True)
";

#[test]
fn an_open_of_a_pipe_through_proc_fd_says_which_pipe() {
    let Some(agent) = Agent::start() else { return };
    let mut child = agent.spawn(&mut python(REOPEN_PIPE));
    let out = child.finish_ok(TIMEOUT);
    let path = format!("pipe:[{}]", out.trim());
    let pid = child.pid();
    agent.wait_for_match(TIMEOUT, &json!({"kind": "exit", "pid": pid}));
    let opens: Vec<Value> = agent
        .events_for_pid(pid)
        .into_iter()
        .filter(|e| e["kind"] == "open" && e["path"] == path.as_str())
        .collect();
    assert_eq!(opens.len(), 2, "/proc/self/fd/N and /dev/fd/N: {opens:#?}");
    for open in &opens {
        agent.assert_event(
            open,
            &json!({"kind": "open", "path": path, "access": "read", "result": 0, "pseudo": true}),
        );
        assert!(open.get("path_truncated").is_none(), "{open}");
    }
}

#[test]
fn a_valid_utf8_name_with_a_backslash_is_exact_after_json_decoding() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("open-backslash");
    let file = dir.path().join(r"C:\dir\x41 é.txt");
    write_file(&file, "x");
    let mut child = agent.spawn(python(OPEN_EACH_READ_ONLY).arg(&file));
    child.finish_ok(TIMEOUT);
    let path = path_str(&file);
    assert_open(&agent, child.pid(), &path, "read", false, 0);
    let open = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "open" && ev["path"] == path);
    assert!(open.get("escaped").is_none(), "{open}");
}

const RENAME_CHMOD_UNLINK_ABSOLUTE: &str = "
import os, sys
d = sys.argv[1]
os.rename(os.path.join(d, 'old.txt'), os.path.join(d, 'new.txt'))
os.chmod(os.path.join(d, 'new.txt'), 0o640)
os.unlink(os.path.join(d, 'new.txt'))
";

#[test]
fn rename_chmod_unlink_report_their_paths() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("rename");
    write_file(dir.join("old.txt"), "x");
    let mut child = agent.spawn(python(RENAME_CHMOD_UNLINK_ABSOLUTE).arg(dir.path()));
    child.finish_ok(TIMEOUT);
    let pid = child.pid();
    let (old, new) = (path_str(dir.join("old.txt")), path_str(dir.join("new.txt")));

    let found = agent.wait_for_all(
        TIMEOUT,
        &[
            json!({"kind": "rename", "pid": pid}),
            json!({"kind": "chmod", "pid": pid}),
            json!({"kind": "unlink", "pid": pid}),
        ],
    );
    agent.assert_event(
        &found[0],
        &json!({"kind": "rename", "path": old, "new_path": new, "result": 0}),
    );
    agent.assert_event(
        &found[1],
        &json!({"kind": "chmod", "path": new, "mode": 0o640, "result": 0}),
    );
    agent.assert_event(
        &found[2],
        &json!({"kind": "unlink", "path": new, "result": 0}),
    );
}

const RENAME_CHMOD_UNLINK_RELATIVE: &str = "
import os, sys
os.chdir(sys.argv[1])
os.rename('a.txt', 'b.txt')
os.chmod('b.txt', 0o600)
os.unlink('b.txt')
try:
    os.unlink('absent.txt')
except FileNotFoundError:
    pass
dfd = os.open('sub', os.O_RDONLY | os.O_DIRECTORY)
os.rename('c.txt', 'd.txt', src_dir_fd=dfd, dst_dir_fd=dfd)
os.unlink('d.txt', dir_fd=dfd)
";

#[test]
fn rename_chmod_unlink_relative_to_cwd_or_dirfd_report_absolute_paths() {
    let Some(agent) = Agent::start() else { return };
    let dir = TempDir::new("rename-relative");
    write_file(dir.join("a.txt"), "a");
    make_dir(dir.join("sub"));
    write_file(dir.join("sub/c.txt"), "c");
    let mut child = agent.spawn(
        python(RENAME_CHMOD_UNLINK_RELATIVE)
            .arg(dir.path())
            .current_dir("/"),
    );
    child.finish_ok(TIMEOUT);
    let pid = child.pid();
    let p = |rel: &str| path_str(dir.join(rel));

    let found = agent.wait_for_all(
        TIMEOUT,
        &[
            json!({"kind": "rename", "pid": pid, "path": p("a.txt")}),
            json!({"kind": "chmod", "pid": pid, "path": p("b.txt")}),
            json!({"kind": "unlink", "pid": pid, "path": p("b.txt")}),
            json!({"kind": "unlink", "pid": pid, "path": p("absent.txt")}),
            json!({"kind": "rename", "pid": pid, "path": p("sub/c.txt")}),
            json!({"kind": "unlink", "pid": pid, "path": p("sub/d.txt")}),
        ],
    );
    let expected = [
        json!({"new_path": p("b.txt"), "result": 0}),
        json!({"mode": 0o600, "result": 0}),
        json!({"result": 0}),
        json!({"result": -libc::ENOENT}),
        json!({"new_path": p("sub/d.txt"), "result": 0}),
        json!({"result": 0}),
    ];
    for (event, fields) in found.iter().zip(&expected) {
        agent.assert_event(event, fields);
    }
}

const MEMFD: &str = "
import os, sys
os.close(os.memfd_create(sys.argv[1], os.MFD_CLOEXEC))
";

#[test]
fn memfd_create_reports_its_name() {
    let Some(agent) = Agent::start() else { return };
    let name = format!("monitor-test-memfd-{}", std::process::id());
    let mut child = agent.spawn(python(MEMFD).arg(&name));
    child.finish_ok(TIMEOUT);
    let pid = child.pid();
    let memfd = agent.wait_for(TIMEOUT, |ev| ev["kind"] == "memfd" && ev["pid"] == pid);
    agent.assert_event(&memfd, &json!({"kind": "memfd", "name": name, "result": 0}));
}
