//! The guest's root file system: an initramfs holding the agent, the test binaries, the files
//! the tests read from the workspace, the host programs the tests run (with their shared
//! libraries, found by `ldd`) and a static busybox for the init script. Every file sits at the
//! same absolute path as on the host, so the binaries' compiled-in paths hold in the guest.
//!
//! The archive is written by busybox's `cpio -o -H newc` (busybox-static is a prerequisite
//! already) from a staging directory under the target directory.

use std::{
    collections::BTreeSet,
    fs,
    io::Write as _,
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Component, Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};

/// Host programs the privileged tests run, looked up under /usr/bin and /usr/sbin.
const HOST_PROGRAMS: &[&str] = &[
    "sh", "dash", "bash", "true", "false", "cat", "sleep", "env", "ls", "ln", "rm", "mkdir", "id",
    "kill", "ip", "python3", "uname", "touch",
];

/// Parts of Python's standard library no test imports: left out to keep the archive small.
const PYTHON_SKIP: &[&str] = &[
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "config-3.11-x86_64-linux-gnu",
    "site-packages",
    "dist-packages",
];

/// The guest's init script (busybox sh).
const INIT: &str = include_str!("init.sh");

/// Files to put in the guest, at their host paths.
pub struct Staging {
    dir: PathBuf,
    added: BTreeSet<PathBuf>,
}

impl Staging {
    /// An empty staging directory `dir` (removed first) with the host's merged-/usr links.
    pub fn new(dir: &Path) -> Result<Self> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        for sub in [
            "proc", "sys", "dev", "tmp", "run", "root", "etc", "vm/bin", "usr/bin",
        ] {
            mkdir(&dir.join(sub))?;
        }
        let mut staging = Self {
            dir: dir.to_path_buf(),
            added: BTreeSet::new(),
        };
        for top in ["/bin", "/sbin", "/lib", "/lib64"] {
            if fs::symlink_metadata(top).is_ok_and(|m| m.file_type().is_symlink()) {
                staging.add(Path::new(top))?;
            }
        }
        Ok(staging)
    }

    /// Adds `path` (a file, or a symbolic link and what it points to), at the same path.
    pub fn add(&mut self, path: &Path) -> Result<()> {
        ensure!(
            path.is_absolute(),
            "{} is not an absolute path",
            path.display()
        );
        if !self.added.insert(path.to_path_buf()) {
            return Ok(());
        }
        if let Some(parent) = path.parent()
            && parent != Path::new("/")
        {
            self.add_dir_chain(parent)?;
        }
        let dest = self.dest(path);
        let meta = fs::symlink_metadata(path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path)
                .with_context(|| format!("cannot read link {}", path.display()))?;
            symlink(&target, &dest).with_context(|| format!("cannot link {}", dest.display()))?;
            let resolved = path.parent().unwrap_or(Path::new("/")).join(&target);
            return self.add(&normalize(&resolved));
        }
        if meta.is_dir() {
            return mkdir(&dest);
        }
        fs::copy(path, &dest)
            .with_context(|| format!("cannot copy {} to {}", path.display(), dest.display()))?;
        // Keep the modification time: Python checks its cached bytecode against the source's,
        // and would otherwise rewrite every `.pyc` (writes an enforce-mode profile forbids).
        let modified = meta
            .modified()
            .with_context(|| format!("no modification time on {}", path.display()))?;
        fs::File::options()
            .write(true)
            .open(&dest)
            .and_then(|f| f.set_modified(modified))
            .with_context(|| format!("cannot set the time of {}", dest.display()))
    }

    /// Adds an executable or shared object and every library `ldd` says it loads.
    pub fn add_elf(&mut self, path: &Path) -> Result<()> {
        self.add(path)?;
        for lib in libraries(path)? {
            self.add(&lib)?;
        }
        Ok(())
    }

    /// Adds the tree under `root`, without the directories named in `skip`; shared objects
    /// in it bring their libraries.
    pub fn add_tree(&mut self, root: &Path, skip: &[&str]) -> Result<()> {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            self.add(&dir)?;
            let entries =
                fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .with_context(|| format!("cannot stat {}", path.display()))?;
                if kind.is_dir() {
                    if !skip.iter().any(|s| entry.file_name() == *s) {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "so") {
                    self.add_elf(&path)?;
                } else {
                    self.add(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Adds the host programs the tests run, Debian's Python with its standard library (the
    /// interpreter the guest's tests use), and busybox for the init script.
    pub fn add_host_programs(&mut self) -> Result<PathBuf> {
        for name in HOST_PROGRAMS {
            let path = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.exists())
                .with_context(|| format!("the host has no `{name}`, which the tests run"))?;
            self.add_elf(&path)?;
        }
        let python =
            fs::canonicalize("/usr/bin/python3").context("the host has no /usr/bin/python3")?;
        let version = python
            .file_name()
            .and_then(|n| n.to_str())
            .context("odd python3 name")?
            .to_owned();
        self.add_tree(&Path::new("/usr/lib").join(&version), PYTHON_SKIP)?;
        let busybox = Path::new("/bin/busybox");
        ensure!(
            libraries(busybox)?.is_empty(),
            "/bin/busybox is not static (apt-get install busybox-static)"
        );
        fs::copy(busybox, self.dir.join("vm/busybox")).context("cannot copy /bin/busybox")?;
        Ok(python)
    }

    /// Writes `text` as the guest file `path` (mode `mode`).
    pub fn write(&mut self, path: &str, text: &str, mode: u32) -> Result<()> {
        let dest = self.dir.join(path.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            mkdir(parent)?;
        }
        fs::write(&dest, text).with_context(|| format!("cannot write {}", dest.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", dest.display()))
    }

    /// Writes the init script and packs everything into the newc archive `out`.
    pub fn pack(mut self, out: &Path) -> Result<()> {
        self.write("/init", INIT, 0o755)?;
        let list = Command::new("find")
            .arg(".")
            .current_dir(&self.dir)
            .output()
            .context("could not run find")?;
        ensure!(
            list.status.success(),
            "find failed in {}",
            self.dir.display()
        );
        let file =
            fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut cpio = Command::new("/bin/busybox")
            .args(["cpio", "-o", "-H", "newc"])
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .context("could not run busybox cpio")?;
        cpio.stdin
            .take()
            .context("no stdin for cpio")?
            .write_all(&list.stdout)
            .context("cannot feed cpio")?;
        let status = cpio.wait().context("cpio did not finish")?;
        ensure!(status.success(), "busybox cpio failed ({status})");
        Ok(())
    }

    fn dest(&self, path: &Path) -> PathBuf {
        self.dir.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Adds each directory from `/` down to `dir` (symbolic links among them as links).
    fn add_dir_chain(&mut self, dir: &Path) -> Result<()> {
        let mut at = PathBuf::from("/");
        for part in dir.components().skip(1) {
            at.push(part);
            let meta = fs::symlink_metadata(&at);
            if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
                self.add(&at.clone())?;
            } else {
                mkdir(&self.dest(&at))?;
            }
        }
        Ok(())
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

/// The shared libraries `ldd` resolves for `path` (none for a static binary).
fn libraries(path: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(path)
        .output()
        .context("could not run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable": nothing to add.
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("{}: ldd cannot find a library: {line}", path.display());
        }
        let file = match line.split_once(" => ") {
            Some((_, rest)) => rest.split(' ').next().unwrap_or_default(),
            None => line.split(' ').next().unwrap_or_default(),
        };
        if file.starts_with('/') {
            libs.push(PathBuf::from(file));
        }
    }
    Ok(libs)
}
