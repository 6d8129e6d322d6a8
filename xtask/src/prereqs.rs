//! `cargo xtask install-prereqs`: installs what building and testing need, and only that.
//!
//! Each step checks first and acts only when something is missing, so a run on a ready machine
//! is quick and prints a single line.

use std::{
    env, fs, io,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{checked, find_in_path, is_root};

/// Debian packages the tests need (bpftool to inspect loaded programs, ip for network
/// namespaces, python3 for small test servers, rsyslog with its TLS driver and openssl for the
/// syslog forwarding tests, docker.io for the image and container tests, busybox-static for
/// the containers' root file systems, prometheus to scrape the agent, ncat and perl for the
/// Sigma rules' reverse shells). Extend here.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "bpftool",
    "iproute2",
    "python3",
    "rsyslog",
    "rsyslog-openssl",
    "openssl",
    "docker.io",
    "busybox-static",
    "prometheus",
    "ncat",
    "perl",
    "qemu-system-x86",
    "curl",
    "xz-utils",
];

/// PyPI packages the tests need: the official OCSF schemas, and a JSON Schema validator for the
/// agent-level test of OCSF output (tests/output_ocsf.rs).
pub const PYTHON_PACKAGES: &[(&str, &str)] =
    &[("ocsf-json-schema", "1.2.0"), ("jsonschema", "4.26.0")];

/// The bpf-linker series that works with aya 0.14 and the nightly's LLVM.
const BPF_LINKER_VERSION_REQ: &str = "^0.13";
const BPF_LINKER_VERSION_PREFIX: &str = "bpf-linker 0.13.";

pub fn install() -> Result<()> {
    let mut acted = ensure_rustup_components()?;
    acted |= ensure_bpf_linker()?;
    acted |= ensure_debian_packages()?;
    acted |= ensure_python_packages()?;
    acted |= crate::docker::ensure_daemon()?;
    if !acted {
        eprintln!("xtask: prerequisites present");
    }
    Ok(())
}

/// Runs an installing command with its stdout sent to stderr, keeping xtask's stdout for the
/// agent (`cargo xtask run -- run --events | jq`).
fn install_step(cmd: &mut Command) -> Result<()> {
    checked(cmd.stdout(io::stderr()))
}

/// Captures stdout of a command that must succeed.
fn stdout_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed non-UTF-8 output"))
}

/// Rustup components, as (toolchain, component): the nightly builds `core` for the BPF target
/// from rust-src; `xtask test` runs clippy and rustfmt on the toolchain xtask itself runs on
/// (`None`: the one rustup picks here, which cargo passes down in RUSTUP_TOOLCHAIN).
const RUSTUP_COMPONENTS: &[(Option<&str>, &[&str])] = &[
    (Some("nightly"), &["rust-src"]),
    (None, &["clippy", "rustfmt"]),
];

/// (a) Adds the rustup components that are missing.
fn ensure_rustup_components() -> Result<bool> {
    let mut acted = false;
    for &(toolchain, components) in RUSTUP_COMPONENTS {
        let toolchain_args = toolchain.map(|t| ["--toolchain", t]);
        let installed = stdout_of(
            Command::new("rustup")
                .args(["component", "list", "--installed"])
                .args(toolchain_args.iter().flatten()),
        )
        .with_context(|| {
            format!(
                "listing the {} toolchain's components (is it installed? `rustup toolchain list`)",
                toolchain.unwrap_or("current")
            )
        })?;
        // Installed components are listed as `rust-src` or `clippy-x86_64-unknown-linux-gnu`.
        let has = |c: &str| {
            installed
                .lines()
                .map(str::trim)
                .any(|l| l == c || l.strip_prefix(c).is_some_and(|rest| rest.starts_with('-')))
        };
        for &component in components.iter().filter(|c| !has(c)) {
            eprintln!(
                "xtask: adding {component} to the {} toolchain",
                toolchain.unwrap_or("current")
            );
            install_step(
                Command::new("rustup")
                    .args(["component", "add", component])
                    .args(toolchain_args.iter().flatten()),
            )?;
            acted = true;
        }
    }
    Ok(acted)
}

/// (b) bpf-linker 0.13, built against the nightly toolchain's own libLLVM.
fn ensure_bpf_linker() -> Result<bool> {
    let present = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).starts_with(BPF_LINKER_VERSION_PREFIX)
        });
    if present {
        return Ok(false);
    }
    let llvm = NightlyLlvm::find()?;
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION_REQ} against the nightly's LLVM {} ({}); this takes a minute",
        llvm.major,
        llvm.lib.display()
    );
    let prefix = llvm.link_prefix()?;
    // --force: a broken install (its libLLVM gone after a nightly update) must be replaced.
    install_step(
        Command::new("cargo")
            .args([
                "install",
                "--force",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION_REQ,
            ])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{}", llvm.major))
            .env("LLVM_PREFIX", &prefix),
    )?;
    Ok(true)
}

/// The LLVM shared library that ships inside the nightly toolchain.
struct NightlyLlvm {
    major: u32,
    /// `<sysroot>/lib/libLLVM.so.<major>.<minor>-rust-<version>`.
    lib: PathBuf,
}

impl NightlyLlvm {
    fn find() -> Result<Self> {
        let vv = stdout_of(Command::new("rustc").args(["+nightly", "-vV"]))?;
        let version = vv
            .lines()
            .find_map(|l| l.strip_prefix("LLVM version:"))
            .map(str::trim)
            .context("`rustc +nightly -vV` printed no `LLVM version:` line")?;
        let mut parts = version.split('.');
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
            bail!("cannot parse the nightly's LLVM version {version:?}");
        };
        let major: u32 = major
            .parse()
            .with_context(|| format!("cannot parse the nightly's LLVM version {version:?}"))?;
        let sysroot = stdout_of(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
        let lib_dir = Path::new(sysroot.trim()).join("lib");
        let wanted = format!("libLLVM.so.{major}.{minor}-rust-");
        let mut names: Vec<String> = fs::read_dir(&lib_dir)
            .with_context(|| format!("listing {}", lib_dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&wanted))
            .collect();
        names.sort();
        let Some(name) = names.pop() else {
            bail!(
                "no {wanted}* in {}: the nightly toolchain ships no libLLVM to build bpf-linker against",
                lib_dir.display()
            );
        };
        Ok(Self {
            major,
            lib: lib_dir.join(name),
        })
    }

    /// Makes `<prefix>/lib` hold `libLLVM.so` and the versioned name, both pointing at the
    /// nightly's library, and returns `<prefix>` for bpf-linker's `LLVM_PREFIX`.
    ///
    /// The prefix lives in CARGO_HOME, beside the installed binary, not in the work tree: the
    /// built bpf-linker records `<prefix>/lib` as its RUNPATH and loads libLLVM from there on
    /// every run, so the directory must outlive `cargo clean` and the clone it was built from.
    fn link_prefix(&self) -> Result<PathBuf> {
        let prefix = cargo_home()?.join("bpf-linker-llvm");
        let lib_dir = prefix.join("lib");
        fs::create_dir_all(&lib_dir).with_context(|| format!("creating {}", lib_dir.display()))?;
        let versioned = self
            .lib
            .file_name()
            .context("libLLVM path has no file name")?;
        for name in [Path::new("libLLVM.so"), Path::new(versioned)] {
            let link = lib_dir.join(name);
            match fs::remove_file(&link) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing {}", link.display()));
                }
                _ => {}
            }
            symlink(&self.lib, &link).with_context(|| format!("creating {}", link.display()))?;
        }
        Ok(prefix)
    }
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// (c) Debian packages the tests need, installed through apt only when one is missing.
fn ensure_debian_packages() -> Result<bool> {
    if find_in_path("dpkg-query").is_none() {
        eprintln!(
            "xtask: warning: no dpkg-query (not Debian?); make sure these are installed: {}",
            DEBIAN_PACKAGES.join(" ")
        );
        return Ok(true);
    }
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    install_step(apt()?.arg("update"))?;
    install_step(
        apt()?
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    Ok(true)
}

/// `dpkg-query` reports the package as installed (status `... ok installed`).
fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .trim_end()
                    .ends_with(" installed")
        })
}

/// `apt-get`, through `sudo` when not root.
fn apt() -> Result<Command> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else if find_in_path("sudo").is_some() {
        let mut sudo = Command::new("sudo");
        sudo.args(["--preserve-env=DEBIAN_FRONTEND", "apt-get"]);
        sudo
    } else {
        bail!(
            "installing Debian packages needs root and there is no sudo: run this as root, or install {} yourself",
            DEBIAN_PACKAGES.join(" ")
        );
    };
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    Ok(cmd)
}

/// (d) Installs the PyPI packages the tests need, when `pip show` does not find them at the
/// pinned version.
fn ensure_python_packages() -> Result<bool> {
    let mut acted = false;
    for (name, version) in PYTHON_PACKAGES {
        let shown = Command::new("python3")
            .args(["-m", "pip", "show", name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("Version: {version}")))
            .unwrap_or(false);
        if shown {
            continue;
        }
        eprintln!("xtask: installing Python package {name}=={version}");
        install_step(
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet"])
                .arg(format!("{name}=={version}")),
        )?;
        acted = true;
    }
    Ok(acted)
}
