//! `build`, `run`, `test` and `bench`: thin wrappers over cargo that work from any directory in
//! the repository. xtask's own messages go to stderr, so `cargo xtask run` leaves the agent's
//! stdout (its JSON events) clean.

use std::{
    env,
    ffi::OsString,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{checked, find_in_path, image, is_root, prereqs, vm};

/// The kernel `cargo xtask test` also runs the sensor and enforcement tests on, under QEMU.
const CI_KERNEL: &str = "debian-5.10";

/// The crate of kernel programs: built for the BPF target by monitor/build.rs, not for the host.
const KERNEL_CRATE: &str = "monitor-ebpf";

pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace root: the parent of this crate's directory.
    pub fn locate() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask's manifest directory has no parent")?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.root);
        cmd
    }

    /// Cargo's target directory; a relative CARGO_TARGET_DIR is relative to the root, where
    /// every cargo command here runs.
    pub fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => self.root.join(dir),
            None => self.root.join("target"),
        }
    }

    /// Builds the agent and its kernel programs (monitor/build.rs) and returns the binary's
    /// absolute path.
    pub fn build(&self, release: bool) -> Result<PathBuf> {
        let mut cmd = self.cargo();
        cmd.args(["build", "-p", "monitor"]);
        if release {
            cmd.arg("--release");
        }
        checked(&mut cmd)?;
        let profile = if release { "release" } else { "debug" };
        let bin = self.target_dir().join(profile).join("monitor");
        ensure!(bin.is_file(), "the build left no {}", bin.display());
        eprintln!("xtask: built {}", bin.display());
        Ok(bin)
    }

    /// Builds, then replaces this process with the agent (through `sudo -E` when not root), so
    /// signals reach the agent and its exit code is ours. Returns only on failure.
    pub fn run(&self, args: &[OsString]) -> Result<()> {
        prereqs::install()?;
        let bin = self.build(true)?;
        let mut cmd = if is_root() {
            Command::new(&bin)
        } else if let Some(sudo) = find_in_path("sudo") {
            eprintln!("xtask: not root: running the agent through sudo");
            let mut cmd = Command::new(sudo);
            cmd.arg("-E").arg(&bin);
            cmd
        } else {
            bail!(
                "the agent needs root to load its eBPF programs and there is no sudo: \
                 run `cargo xtask run` as root"
            );
        };
        let err = cmd.args(args).exec();
        Err(err).with_context(|| format!("could not run {}", bin.display()))
    }

    /// Builds the agent and its image (`cargo xtask image`), then runs every test, clippy and
    /// rustfmt; runs them all and fails if any failed. The test binaries get the agent's path in
    /// `MONITOR_BIN` and the image's tag in `MONITOR_IMAGE`.
    ///
    /// The kernel crate is left out of the workspace-wide test and clippy runs and linted on its
    /// own, as aya's project template does: it is a `no_std`, `no_main` binary for the BPF
    /// target, so a host test binary of it cannot link, and checked together with `monitor`
    /// it would see `monitor-common` with the `user` feature (std) unified in. On the host it
    /// needs `-C panic=abort` ("unwinding panics are not supported without std").
    pub fn test(&self, extra: &[OsString]) -> Result<()> {
        prereqs::install()?;
        let bin = self.build(true)?;
        let image = image::build_from(self, &bin)?;

        let mut test = self.cargo();
        test.args(["test", "--workspace", "--exclude", KERNEL_CRATE])
            .args(["--release", "--no-fail-fast"])
            .env("MONITOR_BIN", &bin)
            .env("MONITOR_IMAGE", &image.tag);
        if !extra.is_empty() {
            test.arg("--").args(extra);
        }
        let mut clippy = self.cargo();
        clippy
            .args(["clippy", "--workspace", "--exclude", KERNEL_CRATE])
            .args(["--all-targets", "--release", "--", "-D", "warnings"]);
        // The kernel crate is checked as what it is: nightly, BPF target, core only.
        let mut clippy_kernel = self.cargo();
        clippy_kernel
            .args(["+nightly", "clippy", "-p", KERNEL_CRATE, "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--", "-D", "warnings"]);
        let mut fmt = self.cargo();
        fmt.args(["fmt", "--all", "--check"]);

        let steps = [
            ("cargo test", test),
            ("clippy", clippy),
            ("clippy (kernel programs)", clippy_kernel),
            ("rustfmt", fmt),
        ];
        let mut failed = Vec::new();
        for (name, mut cmd) in steps {
            eprintln!("xtask: running {name}");
            if let Err(e) = checked(&mut cmd) {
                eprintln!("xtask: {name} failed: {e:#}");
                failed.push(name);
            }
        }
        // One kernel besides the host's: the oldest, the only one that runs the programs built
        // for kernels without bpf_loop. `MONITOR_CI_KERNEL` picks another (`--list`), or `none`.
        let kernel = env::var("MONITOR_CI_KERNEL").unwrap_or_else(|_| CI_KERNEL.to_owned());
        if kernel != "none" {
            eprintln!("xtask: running vm-test --kernel {kernel}");
            let opts = vm::Options {
                kernels: vec![kernel],
                tests: Vec::new(),
                extra: extra.to_vec(),
                timeout_minutes: 20,
                bench: None,
            };
            if let Err(e) = vm::run(self, &opts) {
                eprintln!("xtask: vm-test failed: {e:#}");
                failed.push("vm-test");
            }
        }
        if !failed.is_empty() {
            bail!(
                "xtask test FAILED: {} (see the output above)",
                failed.join(", ")
            );
        }
        println!(
            "xtask test: OK (cargo test, clippy -D warnings, rustfmt --check, vm-test all passed)"
        );
        Ok(())
    }

    /// Builds the named integration test binaries of `monitor-tests` (release) and returns each
    /// name with its executable, from cargo's JSON messages.
    pub fn test_binaries(&self, names: &[String]) -> Result<Vec<(String, PathBuf)>> {
        self.built_targets(["test", "-p", "monitor-tests"], "test", names)
    }

    /// Builds the named benchmarks of `monitor` (release) and returns each with its executable.
    pub fn bench_binaries(&self, names: &[String]) -> Result<Vec<(String, PathBuf)>> {
        self.built_targets(["bench", "-p", "monitor"], "bench", names)
    }

    /// `cargo <command> --release --no-run --<kind> NAME...`, and the executables cargo reports.
    fn built_targets(
        &self,
        command: [&str; 3],
        kind: &str,
        names: &[String],
    ) -> Result<Vec<(String, PathBuf)>> {
        let mut cmd = self.cargo();
        cmd.args(command)
            .arg("--no-run")
            .args(["--message-format", "json-render-diagnostics"]);
        // `cargo bench` has no --release: it builds with the bench profile (release's).
        if kind == "test" {
            cmd.arg("--release");
        }
        for name in names {
            cmd.arg(format!("--{kind}")).arg(name);
        }
        let out = cmd
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("could not run cargo test --no-run")?;
        ensure!(out.status.success(), "building the {kind} binaries failed");
        let mut found = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let kind_is_test = msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == kind));
            if let (true, Some(name), Some(exe)) = (
                kind_is_test,
                msg["target"]["name"].as_str(),
                msg["executable"].as_str(),
            ) {
                found.push((name.to_owned(), PathBuf::from(exe)));
            }
        }
        for name in names {
            ensure!(
                found.iter().any(|(n, _)| n == name),
                "no {kind} target `{name}` (`cargo {} --no-run` built none)",
                command.join(" ")
            );
        }
        found.sort_by_key(|(n, _)| names.iter().position(|m| m == n));
        Ok(found)
    }

    /// Builds the agent, then runs the benchmarks (`monitor/benches/*.rs`, run as root: they
    /// load the real probes). `extra` goes to the bench binaries.
    pub fn bench(&self, extra: &[String]) -> Result<()> {
        self.build(true)?;
        checked(
            self.cargo()
                .args(["bench", "-p", "monitor"])
                .env("MONITOR_BIN", self.root.join("target/release/monitor"))
                .arg("--")
                .args(extra),
        )
    }
}
