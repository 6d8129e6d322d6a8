//! Python virtualenvs holding real inference servers from PyPI, built once per machine and
//! shared by every test binary and every clone of the repository.

use std::{
    fs::{self, File},
    io,
    os::{fd::AsRawFd as _, unix::fs::PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use super::{DEBIAN_PYTHON, daemon::run_logged};
use crate::{TempDir, warn};

/// Where the venvs live: outside the repository, so a fresh clone reuses them.
const CACHE: &str = "/var/cache/monitor-tests";
/// Written last into a complete venv, holding its requirements.
const MARKER: &str = ".monitor-tests-complete";
/// How long to wait for another test binary that is building the same venv.
const LOCK_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long `pip install` may take (about 70 s here).
const PIP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long creating the venv or importing the package may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What goes into one venv.
struct Recipe {
    /// The directory's name under [`CACHE`].
    name: &'static str,
    requirements: &'static [&'static str],
    /// Python that must run without error for the venv to be usable.
    check: &'static str,
    /// For the note printed while it is built.
    size: &'static str,
}

const LITELLM: Recipe = Recipe {
    name: "venv-litellm-1.108.7",
    requirements: &["litellm[proxy]==1.108.7"],
    check: "import litellm.proxy.proxy_server, fastapi, uvicorn",
    size: "about 70 s and 750 MB",
};

const KUBERNETES_VALIDATE: Recipe = Recipe {
    name: "venv-kubernetes-validate-1.37.0",
    requirements: &["kubernetes-validate==1.37.0"],
    check: "import kubernetes_validate",
    size: "about 20 s and 60 MB",
};

/// A virtualenv made by Debian's `/usr/bin/python3 -m venv`, with its packages installed.
#[derive(Clone, Debug)]
pub struct Venv {
    root: PathBuf,
    site_packages: PathBuf,
}

impl Venv {
    /// The venv with `litellm[proxy]==1.108.7` (fastapi, uvicorn and the LiteLLM proxy), at
    /// `/var/cache/monitor-tests/venv-litellm-1.108.7/`, built on first use (about 70 s and
    /// 750 MB from PyPI). Test binaries running at once take turns through an exclusive `flock`
    /// on `/var/cache/monitor-tests/venv-litellm-1.108.7.lock`; a build happens in a sibling
    /// directory renamed into place once `pip install` and an import check succeeded. The
    /// error (e.g. no network: pip's output tail) is for [`crate::skip_or_fail`]; within one
    /// test binary the outcome is remembered.
    pub fn litellm() -> Result<Self, String> {
        static LITELLM_VENV: OnceLock<Result<Venv, String>> = OnceLock::new();
        LITELLM_VENV.get_or_init(|| ensure(&LITELLM)).clone()
    }

    /// The venv with `kubernetes-validate==1.37.0` (Kubernetes JSON schemas up to 1.37), at
    /// `/var/cache/monitor-tests/venv-kubernetes-validate-1.37.0/`, built on first use like
    /// [`Venv::litellm`].
    pub fn kubernetes_validate() -> Result<Self, String> {
        static VALIDATE_VENV: OnceLock<Result<Venv, String>> = OnceLock::new();
        VALIDATE_VENV
            .get_or_init(|| ensure(&KUBERNETES_VALIDATE))
            .clone()
    }

    /// The venv's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<venv>/bin/python`.
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// `<venv>/bin/<name>`: a console script (`litellm`, `uvicorn`, ...) or the interpreter.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }

    /// `<venv>/lib/python3.X/site-packages`, as found on disk.
    pub fn site_packages(&self) -> &Path {
        &self.site_packages
    }

    fn open(root: PathBuf) -> Result<Self, String> {
        let lib = root.join("lib");
        let entries =
            fs::read_dir(&lib).map_err(|e| format!("cannot list {}: {e}", lib.display()))?;
        let site_packages = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages"))
            .find(|p| p.is_dir())
            .ok_or_else(|| format!("no python3.*/site-packages under {}", lib.display()))?;
        Ok(Self {
            root,
            site_packages,
        })
    }
}

/// The venv of `recipe`, built first if it is missing or incomplete.
fn ensure(recipe: &Recipe) -> Result<Venv, String> {
    let cache = Path::new(CACHE);
    fs::create_dir_all(cache).map_err(|e| format!("cannot create {CACHE}: {e}"))?;
    let root = cache.join(recipe.name);
    let _lock = Lock::take(&cache.join(format!("{}.lock", recipe.name)))?;
    if !complete(&root, recipe) {
        build(recipe, cache, &root)?;
    }
    Venv::open(root)
}

fn complete(root: &Path, recipe: &Recipe) -> bool {
    root.join("bin/python").exists()
        && fs::read_to_string(root.join(MARKER)).is_ok_and(|m| m == marker(recipe))
}

fn marker(recipe: &Recipe) -> String {
    format!("{}\n", recipe.requirements.join("\n"))
}

/// Builds the venv in a sibling directory, then renames it to `root`. Runs under the lock.
fn build(recipe: &Recipe, cache: &Path, root: &Path) -> Result<(), String> {
    let label = format!("build-{}", recipe.name);
    // Under the lock nobody else builds this venv: whatever an earlier build left is stale.
    if let Ok(entries) = fs::read_dir(cache) {
        let stale = format!("monitor-test-{label}-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&stale) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    if root.exists() {
        fs::remove_dir_all(root)
            .map_err(|e| format!("cannot remove the incomplete {}: {e}", root.display()))?;
    }
    warn(&format!(
        "building {} with {} ({})",
        root.display(),
        recipe.requirements.join(" "),
        recipe.size
    ));
    let started = Instant::now();
    // Removed on drop unless it was renamed into place.
    let tmp = TempDir::new_in(cache, &label)
        .map_err(|e| format!("cannot create a build directory in {CACHE}: {e}"))?;
    let logs = TempDir::try_new("venv-logs")
        .map_err(|e| format!("cannot create a directory for pip's logs: {e}"))?;

    let mut venv = Command::new(DEBIAN_PYTHON);
    venv.args(["-m", "venv"]).arg(tmp.path());
    run_logged(
        "python3 -m venv",
        venv,
        &logs.join("venv.log"),
        STEP_TIMEOUT,
    )?;
    let python = tmp.join("bin/python");
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
    ])
    .args(recipe.requirements);
    run_logged("pip install", pip, &logs.join("pip.log"), PIP_TIMEOUT).map_err(|e| {
        format!(
            "cannot install {} from PyPI (no network?): {e}",
            recipe.requirements.join(" ")
        )
    })?;
    let mut check = Command::new(&python);
    check.args(["-c", recipe.check]);
    run_logged(
        "the import check",
        check,
        &logs.join("check.log"),
        STEP_TIMEOUT,
    )?;

    relocate(tmp.path(), root)?;
    // mkdtemp made it 0700; users other than root may run the servers too.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} readable: {e}", tmp.path().display()))?;
    fs::write(tmp.join(MARKER), marker(recipe))
        .map_err(|e| format!("cannot write the venv's marker: {e}"))?;
    fs::rename(tmp.path(), root).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            tmp.path().display(),
            root.display()
        )
    })?;
    warn(&format!(
        "built {} in {:.0?}",
        root.display(),
        started.elapsed()
    ));
    Ok(())
}

/// Points what the build wrote with its own path (the console scripts' `#!` lines, the
/// activation scripts, `pyvenv.cfg`) at `root`, where it is about to be renamed.
fn relocate(tmp: &Path, root: &Path) -> Result<(), String> {
    let (from, to) = (tmp.to_string_lossy(), root.to_string_lossy());
    let bin = tmp.join("bin");
    let entries = fs::read_dir(&bin).map_err(|e| format!("cannot list {}: {e}", bin.display()))?;
    let files = entries
        .flatten()
        .map(|e| e.path())
        .chain([tmp.join("pyvenv.cfg")]);
    for path in files {
        if path.is_symlink() || !path.is_file() {
            continue;
        }
        // Binary files (and anything else that is not UTF-8) hold no path to fix.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        if text.contains(from.as_ref()) {
            fs::write(&path, text.replace(from.as_ref(), &to))
                .map_err(|e| format!("cannot rewrite {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// An exclusive `flock` on a lock file, released on drop (when the file is closed).
struct Lock {
    _file: File,
}

impl Lock {
    fn take(path: &Path) -> Result<Self, String> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        let mut said = false;
        loop {
            // SAFETY: flock on a descriptor `file` owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Self { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} stayed locked for {LOCK_TIMEOUT:?}: another test binary is still \
                     building the venv",
                    path.display()
                ));
            }
            if !said {
                warn(&format!(
                    "waiting for {} (another test binary is building the venv)",
                    path.display()
                ));
                said = true;
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}
