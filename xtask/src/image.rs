//! `cargo xtask image`: the agent's container image, `monitor:VERSION`, built with the local
//! Docker engine from files on this machine (there is no registry: nothing is pulled).
//!
//! The root file system holds exactly what the agent needs to run: the release binary
//! (stripped), the shared libraries `ldd` names and the dynamic loader, the shipped rules at
//! /etc/monitor/rules, an empty spool directory /var/lib/monitor, the control socket's
//! directory /run/monitor, and /etc/passwd and /etc/group naming root. It is archived
//! reproducibly (sorted names, owner 0, mtime 0) and `docker import`ed with the entry point,
//! default command and labels; an archive whose digest the tagged image already carries (label
//! [`DIGEST_LABEL`]) is not imported again, so a rebuild without changes keeps the image.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{checked, docker, tasks::Workspace};

/// The image's repository name; the tag is the agent's version.
pub const REPOSITORY: &str = "monitor";
/// Label holding the SHA-256 of the imported root file system archive.
const DIGEST_LABEL: &str = "dev.monitor.rootfs.sha256";
/// Where the agent lives in the image.
const BINARY: &str = "usr/bin/monitor";

/// A built image.
pub struct Image {
    /// `monitor:VERSION`.
    pub tag: String,
    /// Size as the engine reports it (the root file system, uncompressed).
    pub size: u64,
}

/// Builds the agent and its image; prints the tag and the size.
pub fn build(ws: &Workspace) -> Result<Image> {
    docker::ensure_daemon()?;
    let bin = ws.build(true)?;
    build_from(ws, &bin)
}

/// Builds the image around an already built release binary `bin`.
pub fn build_from(ws: &Workspace, bin: &Path) -> Result<Image> {
    docker::ensure_daemon()?;
    let version = agent_version(&ws.root().join("monitor/Cargo.toml"))?;
    let tag = format!("{REPOSITORY}:{version}");
    let work = ScratchDir::new("monitor-image")?;
    let rootfs = work.path().join("rootfs");
    populate(&rootfs, bin, &ws.root().join("rules"))?;
    let tar = work.path().join("rootfs.tar");
    checked(
        Command::new("tar")
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .args(["--mtime=@0", "--format=gnu", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    )?;
    let digest = sha256(&tar)?;
    if labelled_digest(&tag).as_deref() == Some(digest.as_str()) {
        eprintln!("xtask: {tag} is up to date (root file system sha256 {digest})");
    } else {
        import(&tar, &tag, &version, &digest)?;
    }
    let size = inspect(&tag, "{{.Size}}")?
        .parse()
        .context("docker image inspect printed no size")?;
    eprintln!(
        "xtask: image {tag}: {:.1} MB ({size} bytes)",
        size as f64 / 1e6
    );
    Ok(Image { tag, size })
}

/// `version = "..."` of the `[package]` table of `manifest`.
fn agent_version(manifest: &Path) -> Result<String> {
    let text =
        fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("version")
            && let Some(value) = value.trim_start().strip_prefix('=')
        {
            return Ok(value.trim().trim_matches('"').to_owned());
        }
    }
    bail!("{} has no [package] version", manifest.display())
}

/// Fills `rootfs` with the binary, its libraries, the rules and the directories the agent uses.
fn populate(rootfs: &Path, bin: &Path, rules: &Path) -> Result<()> {
    let binary = rootfs.join(BINARY);
    mkdir(binary.parent().context("binary path has no parent")?, 0o755)?;
    // Symbols only help a debugger; the agent's errors are messages. -20% (17 MB -> 13.7 MB).
    checked(
        Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&binary)
            .arg(bin),
    )?;
    for lib in shared_libraries(bin)? {
        let relative = lib.strip_prefix("/").unwrap_or(&lib);
        let dest = rootfs.join(relative);
        mkdir(dest.parent().context("library path has no parent")?, 0o755)?;
        // fs::copy follows symlinks: the image gets the file under the name the loader asks for.
        fs::copy(&lib, &dest)
            .with_context(|| format!("copying {} into the image", lib.display()))?;
    }
    copy_rules(rules, &rootfs.join("etc/monitor/rules"))?;
    // The spool (a hostPath or volume in deployments) and the control socket's directory:
    // the agent refuses a socket directory others may write to.
    mkdir(&rootfs.join("var/lib/monitor"), 0o700)?;
    mkdir(&rootfs.join("run/monitor"), 0o700)?;
    let etc = rootfs.join("etc");
    fs::write(etc.join("passwd"), "root:x:0:0:root:/:/usr/bin/monitor\n")
        .context("writing /etc/passwd")?;
    fs::write(etc.join("group"), "root:x:0:\n").context("writing /etc/group")?;
    Ok(())
}

/// The files `ldd` says `bin` loads, the dynamic loader included. Fails on a library `ldd`
/// cannot find: the image would not start.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    ensure!(
        out.status.success(),
        "ldd {} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8(out.stdout).context("ldd printed non-UTF-8")?;
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2
        // (0x...)`, or `linux-vdso.so.1 (0x...)` (in the kernel, no file).
        let target = line.split_once("=>").map_or(line, |(_, t)| t).trim();
        ensure!(
            !target.starts_with("not found"),
            "ldd: {line}: the image would not start"
        );
        let path = target.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    ensure!(
        libs.iter()
            .any(|l| l.to_string_lossy().contains("ld-linux")),
        "ldd named no dynamic loader for {}:\n{text}",
        bin.display()
    );
    Ok(libs)
}

/// Copies the shipped rule files (`*.yaml`, and the README that explains them) below `from`.
fn copy_rules(from: &Path, to: &Path) -> Result<()> {
    mkdir(to, 0o755)?;
    let entries = fs::read_dir(from).with_context(|| format!("listing {}", from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_rules(&path, &dest)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "md") {
            fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// `docker import` of the archive with the image's configuration.
fn import(tar: &Path, tag: &str, version: &str, digest: &str) -> Result<()> {
    let changes = [
        format!(r#"ENTRYPOINT ["/{BINARY}"]"#),
        r#"CMD ["run"]"#.to_owned(),
        "USER 0:0".to_owned(),
        "WORKDIR /".to_owned(),
        "LABEL org.opencontainers.image.title=monitor".to_owned(),
        format!("LABEL org.opencontainers.image.version={version}"),
        r#"LABEL org.opencontainers.image.description="eBPF host behaviour monitor agent""#
            .to_owned(),
        r#"LABEL org.opencontainers.image.licenses="MIT OR Apache-2.0""#.to_owned(),
        format!("LABEL {DIGEST_LABEL}={digest}"),
    ];
    let mut cmd = Command::new("docker");
    cmd.arg("import");
    for change in &changes {
        cmd.arg("--change").arg(change);
    }
    cmd.arg(tar).arg(tag).stdout(Stdio::null());
    checked(&mut cmd).with_context(|| format!("importing the root file system as {tag}"))?;
    eprintln!("xtask: imported {tag} (root file system sha256 {digest})");
    Ok(())
}

/// The digest label of the image `tag`, when the engine has it.
fn labelled_digest(tag: &str) -> Option<String> {
    inspect(
        tag,
        &format!("{{{{index .Config.Labels \"{DIGEST_LABEL}\"}}}}"),
    )
    .ok()
    .filter(|d| d.len() == 64)
}

/// `docker image inspect -f FORMAT TAG`.
fn inspect(tag: &str, format: &str) -> Result<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", format, tag])
        .stdin(Stdio::null())
        .output()
        .context("running docker image inspect")?;
    ensure!(
        out.status.success(),
        "docker image inspect {tag}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .context("running sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Creates `dir` with `mode`, and its missing parents with 0755.
fn mkdir(dir: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = dir.parent()
        && !parent.exists()
    {
        mkdir(parent, 0o755)?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    // The umask may have narrowed it.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}

/// A directory under the system temp dir, removed with its contents on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(label: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("{label}-{}-{nanos}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
