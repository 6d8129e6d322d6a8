//! The kernels `vm-test` boots: Debian's cloud kernels, fetched from Debian's archive by their
//! meta package (`linux-image-cloud-amd64` of a suite names the current one) and cached.
//!
//! Fetching uses the host's `curl`, `xz` and `dpkg-deb` rather than crates: they are what a
//! Debian machine has, and a `.deb` is an `ar` archive holding a compressed tar whose
//! compression changed between suites (xz, then zstd); `dpkg-deb` knows them all.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::checked;

const MIRROR: &str = "http://deb.debian.org/debian";

/// The kernel command line's LSM list with BPF LSM active (the other entries are Debian's).
pub const LSM_WITH_BPF: &str = "lsm=lockdown,capability,landlock,yama,apparmor,bpf";
/// The same list without BPF LSM.
pub const LSM_WITHOUT_BPF: &str = "lsm=lockdown,capability,landlock,yama,apparmor";

/// A kernel `vm-test --kernel NAME` knows.
pub struct Kernel {
    /// The name given to `--kernel`.
    pub name: &'static str,
    /// The Debian suite whose cloud kernel this is.
    suite: &'static str,
    /// Boot with BPF LSM active.
    pub lsm: bool,
    /// Tests (libtest `--skip` filters) that assert what this kernel cannot do, and why.
    pub skip: &'static [&'static str],
}

/// The enforcement tests that need opens and execs judged in the kernel, which the programs
/// for kernels without `bpf_loop` do not do (monitor/src/sensor/features.rs).
const NEEDS_PATH_JUDGEMENT: &[&str] = &[
    "a_kill_detection_kills_a_read_the_profile_allows_and_spares_its_exceptions",
    "an_enforced_server_serves_and_each_attack_step_is_stopped_before_it_has_an_effect",
    "start_up_may_do_what_startup_allows_and_serving_may_not",
    "the_start_up_allowance_ends_at_the_listen_itself",
];

/// The test binary [`NEEDS_PATH_JUDGEMENT`] names tests of.
pub const SKIPS_IN: &str = "enforce";

/// Why [`NEEDS_PATH_JUDGEMENT`] is skipped.
pub const NO_BPF_LOOP: &str = "no bpf_loop: opens and execs are not judged in the kernel";

/// Every kernel, oldest first: bullseye's 5.10 (Amazon Linux 2's series), bookworm's 6.1,
/// trixie's 6.12; `-lsm` boots the same kernel with `bpf` in the LSM list.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "debian-5.10",
        suite: "bullseye",
        lsm: false,
        skip: NEEDS_PATH_JUDGEMENT,
    },
    Kernel {
        name: "debian-6.1",
        suite: "bookworm",
        lsm: false,
        skip: &[],
    },
    Kernel {
        name: "debian-6.1-lsm",
        suite: "bookworm",
        lsm: true,
        skip: &[],
    },
    Kernel {
        name: "debian-6.12",
        suite: "trixie",
        lsm: false,
        skip: &[],
    },
    Kernel {
        name: "debian-6.12-lsm",
        suite: "trixie",
        lsm: true,
        skip: &[],
    },
];

/// The kernel called `name`, or an error listing the names there are.
pub fn by_name(name: &str) -> Result<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name).with_context(|| {
        let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
        format!(
            "unknown kernel `{name}`; known: {} (`cargo xtask vm-test --list`)",
            names.join(", ")
        )
    })
}

/// A kernel image ready to boot.
pub struct Fetched {
    /// The `vmlinuz` to hand to QEMU's `-kernel`.
    pub vmlinuz: PathBuf,
    /// Its release string (`uname -r` in the guest).
    pub release: String,
}

impl Kernel {
    /// The kernel image, from the cache under `cache` or fetched into it: a suite's kernel is
    /// looked up once and kept until the cache directory is removed.
    pub fn fetch(&self, cache: &Path) -> Result<Fetched> {
        let dir = cache.join(self.suite);
        if let Some(found) = unpacked(&dir)? {
            return Ok(found);
        }
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let index = packages_index(self.suite, &dir)?;
        let package = current_cloud_kernel(&index).with_context(|| {
            format!(
                "Debian {}'s package index names no cloud kernel",
                self.suite
            )
        })?;
        let filename = field_of(&index, &package, "Filename")
            .with_context(|| format!("Debian {} has no file for {package}", self.suite))?;
        let deb = dir.join(format!("{package}.deb"));
        eprintln!("xtask: fetching {package} ({})", self.suite);
        download(&format!("{MIRROR}/{filename}"), &deb)?;
        let tree = dir.join("unpacked");
        let _ = fs::remove_dir_all(&tree);
        checked(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
        let _ = fs::remove_file(&deb);
        unpacked(&dir)?.with_context(|| {
            format!(
                "{package} holds no /boot/vmlinuz-* (unpacked in {})",
                tree.display()
            )
        })
    }
}

/// The `vmlinuz-*` in `dir/unpacked/boot`, if a fetch completed there.
fn unpacked(dir: &Path) -> Result<Option<Fetched>> {
    let boot = dir.join("unpacked/boot");
    let Ok(entries) = fs::read_dir(&boot) else {
        return Ok(None);
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", boot.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            return Ok(Some(Fetched {
                vmlinuz: entry.path(),
                release: release.to_owned(),
            }));
        }
    }
    Ok(None)
}

/// The suite's `main` package index for amd64, decompressed.
fn packages_index(suite: &str, dir: &Path) -> Result<String> {
    let xz = dir.join("Packages.xz");
    download(
        &format!("{MIRROR}/dists/{suite}/main/binary-amd64/Packages.xz"),
        &xz,
    )?;
    let out = Command::new("xz")
        .arg("-dc")
        .arg(&xz)
        .output()
        .context("could not run xz (apt-get install xz-utils)")?;
    let _ = fs::remove_file(&xz);
    if !out.status.success() {
        bail!("xz could not decompress Debian {suite}'s package index");
    }
    String::from_utf8(out.stdout)
        .with_context(|| format!("Debian {suite}'s package index is not UTF-8"))
}

/// The kernel package the suite's `linux-image-cloud-amd64` depends on.
fn current_cloud_kernel(index: &str) -> Option<String> {
    let depends = field_of(index, "linux-image-cloud-amd64", "Depends")?;
    depends
        .split(',')
        .map(|d| d.trim().split(' ').next().unwrap_or_default())
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-cloud-amd64"))
        .map(str::to_owned)
}

/// Field `key` of the last stanza for `package` in a Debian package index.
fn field_of(index: &str, package: &str, key: &str) -> Option<String> {
    let mut found = None;
    for stanza in index.split("\n\n") {
        let mut lines = stanza.lines();
        if lines.next() != Some(&format!("Package: {package}")) {
            continue;
        }
        let prefix = format!("{key}: ");
        found = stanza
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
            .or(found);
    }
    found
}

/// Downloads `url` to `dest` (through a temporary name, so an interrupted download is not
/// mistaken for a complete one).
fn download(url: &str, dest: &Path) -> Result<()> {
    let part = dest.with_extension("part");
    checked(
        Command::new("curl")
            .args([
                "--fail",
                "--silent",
                "--show-error",
                "--location",
                "--retry",
                "3",
            ])
            .args(["--max-time", "600", "--output"])
            .arg(&part)
            .arg(url),
    )
    .with_context(|| format!("could not download {url}"))?;
    fs::rename(&part, dest)
        .with_context(|| format!("cannot rename {} to {}", part.display(), dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64 (6.1.176+1)\n\
        Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)\n\n\
        Package: linux-image-6.1.0-50-cloud-amd64\nVersion: 6.1.176-1\n\
        Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb\n";

    #[test]
    fn the_meta_package_names_the_kernel_and_its_file() {
        let package = current_cloud_kernel(INDEX).unwrap();
        assert_eq!(package, "linux-image-6.1.0-50-cloud-amd64");
        assert_eq!(
            field_of(INDEX, &package, "Filename").as_deref(),
            Some(
                "pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb"
            )
        );
    }

    #[test]
    fn every_name_is_known_once() {
        for k in KERNELS {
            assert_eq!(by_name(k.name).unwrap().name, k.name);
            assert_eq!(k.lsm, k.name.ends_with("-lsm"));
        }
        assert!(by_name("debian-4.19").is_err());
    }
}
