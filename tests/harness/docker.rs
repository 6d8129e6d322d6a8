//! Real Docker containers for the tests: the local engine (Debian's docker.io, which
//! `cargo xtask` starts), a tiny busybox image built from the host's busybox-static (nothing is
//! pulled: there is no registry), and a guard that removes its container by id when dropped.

use std::{
    fs,
    os::unix::{fs::symlink, net::UnixStream},
    path::Path,
    process::{Command, Output, Stdio},
    sync::Mutex,
};

use crate::{TempDir, skip_or_fail};

/// The engine's API socket.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// The test image: busybox-static and its applets, nothing else.
pub const BUSYBOX_IMAGE: &str = "monitor-test-busybox:1";
/// The host's static busybox (Debian's busybox-static).
const BUSYBOX: &str = "/usr/bin/busybox";
/// Applets the test containers use, linked in /bin.
const APPLETS: [&str; 12] = [
    "sh", "sleep", "cat", "ls", "echo", "true", "wget", "nc", "touch", "rm", "id", "env",
];

/// Whether the engine answers; otherwise says so loudly (failing under CI) and returns false.
#[track_caller]
pub fn docker_or_skip() -> bool {
    if UnixStream::connect(DOCKER_SOCKET).is_ok() {
        return true;
    }
    skip_or_fail(&format!(
        "no Docker engine answers on {DOCKER_SOCKET}: install docker.io and start dockerd \
         (`cargo xtask install-prereqs` does both)"
    ));
    false
}

/// Runs `docker ARGS`, panicking with its stderr unless it succeeds; returns its stdout.
#[track_caller]
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `docker ARGS` and returns what it did, whatever it did.
pub fn docker_output(args: &[&str]) -> Output {
    match Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run docker: {e}"),
    }
}

/// Builds [`BUSYBOX_IMAGE`] unless the engine has it (tests in one binary share it; the image
/// stays for later runs: it is the cache). Returns its name.
pub fn busybox_image() -> &'static str {
    static BUILT: Mutex<bool> = Mutex::new(false);
    import_busybox(&BUILT, BUSYBOX_IMAGE, &["ENV PATH=/bin"])
}

/// A pod sandbox image for the CRI: the same root file system, sleeping as its command (what a
/// `pause` image does).
pub fn pause_image() -> &'static str {
    static BUILT: Mutex<bool> = Mutex::new(false);
    import_busybox(
        &BUILT,
        PAUSE_IMAGE,
        &["ENV PATH=/bin", r#"CMD ["/bin/sleep", "86400"]"#],
    )
}

/// The pod sandbox image (see [`pause_image`]).
pub const PAUSE_IMAGE: &str = "monitor-test-pause:1";

fn import_busybox(built: &Mutex<bool>, name: &'static str, changes: &[&str]) -> &'static str {
    let mut built = crate::launch::lock(built);
    if *built || docker_output(&["image", "inspect", name]).status.success() {
        *built = true;
        return name;
    }
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: install busybox-static"
    );
    let root = TempDir::new("busybox-rootfs");
    let bin = root.join("bin");
    fs::create_dir_all(&bin).expect("rootfs /bin");
    fs::create_dir_all(root.join("tmp")).expect("rootfs /tmp");
    fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    for applet in APPLETS {
        symlink("busybox", bin.join(applet)).expect("applet link");
    }
    // Rootfs and tar file side by side, so the archive does not contain itself.
    let tar_dir = TempDir::new("busybox-tar");
    let tar = tar_dir.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success(), "tar of the busybox rootfs failed");
    let mut args = vec!["import".to_owned()];
    for c in changes {
        args.push("--change".to_owned());
        args.push((*c).to_owned());
    }
    args.push(crate::path_str(&tar));
    args.push(name.to_owned());
    let status = Command::new("docker")
        .args(&args)
        .stdout(Stdio::null())
        .status()
        .expect("docker import");
    assert!(
        status.success(),
        "docker import of the busybox rootfs failed"
    );
    *built = true;
    name
}

/// A running container, removed (`docker rm -f ID`) when dropped, even when the test panicked.
pub struct Container {
    id: String,
}

impl Container {
    /// `docker run -d ARGS` (options, image, command): the container's full id.
    #[track_caller]
    pub fn run(args: &[&str]) -> Self {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        let id = docker(&all);
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "docker run printed no container id: {id:?}"
        );
        Self { id }
    }

    /// `docker create ARGS`: a container that exists but does not run (a pod sandbox stand-in).
    #[track_caller]
    pub fn create(args: &[&str]) -> Self {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        Self { id: docker(&all) }
    }

    /// The full 64-hex id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `docker exec ID CMD...`, which must succeed; its stdout.
    #[track_caller]
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut all = vec!["exec", self.id.as_str()];
        all.extend_from_slice(cmd);
        docker(&all)
    }

    /// `docker inspect -f FORMAT ID`.
    #[track_caller]
    pub fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.id])
    }

    /// The host pid of the container's init process (0 once it stopped).
    #[track_caller]
    pub fn pid(&self) -> u32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse()
            .unwrap_or_else(|_| panic!("docker inspect printed no pid: {pid:?}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = docker_output(&["rm", "-f", "-v", &self.id]);
        if !out.status.success() {
            crate::warn(&format!(
                "could not remove container {}: {}",
                self.id,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
}
