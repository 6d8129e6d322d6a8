//! `cargo xtask vm-test`: the privileged integration tests on other kernels, each booted under
//! QEMU (software emulation: KVM is not assumed) from Debian's kernel packages, with the tests
//! in an initramfs and no network but the guest's own loopback.

mod initramfs;
mod kernels;
mod qemu;

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{prereqs, tasks::Workspace};

pub use kernels::KERNELS;

/// The test binaries run in the guest when `--test` is not given: the sensor's (the kernel
/// programs' exact fields: paths, argv, network), enforcement's (in-kernel denial) and the
/// kernel probe's (which programs the kernel gets, refusals).
pub const DEFAULT_TESTS: &[&str] = &[
    "sensor_process",
    "sensor_file",
    "sensor_file_links",
    "sensor_net",
    "sensor_dns",
    "enforce",
    "kernel_support",
];

/// How many times the tests' deadlines for the agent's start and stop are stretched in a guest
/// (`MONITOR_TEST_TIME_SCALE`): the guest is emulated, and its speed follows the host's load
/// (an agent's start took 15 s to over 60 s on the same 5.10 guest and commit).
const GUEST_TIME_SCALE: u32 = 4;

/// What one `vm-test` run does.
pub struct Options {
    pub kernels: Vec<String>,
    pub tests: Vec<String>,
    pub extra: Vec<OsString>,
    /// Give up on a guest after this many minutes.
    pub timeout_minutes: u64,
    /// Bench targets to run in each guest after the tests (`Some(empty)`: the sensor one).
    pub bench: Option<Vec<String>>,
}

/// Where fetched kernels are kept, outside the workspace so a fresh clone on the same machine
/// reuses them: `$MONITOR_VM_CACHE`, else `$XDG_CACHE_HOME/monitor-vm`, else `~/.cache/monitor-vm`.
fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = env::var_os("MONITOR_VM_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("monitor-vm"));
    }
    let home = env::var_os("HOME").context("HOME is not set; set MONITOR_VM_CACHE")?;
    Ok(PathBuf::from(home).join(".cache/monitor-vm"))
}

/// Prints the kernel names, one per line.
pub fn list() {
    for k in KERNELS {
        println!("{}", k.name);
    }
}

/// Builds, boots each kernel with the tests and prints one summary line per kernel; fails if
/// any test failed (or did not run) on any kernel.
pub fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    ensure!(
        !opts.kernels.is_empty(),
        "name at least one --kernel (see --list)"
    );
    let kernels = opts
        .kernels
        .iter()
        .map(|n| kernels::by_name(n))
        .collect::<Result<Vec<_>>>()?;
    let tests: Vec<String> = if opts.tests.is_empty() {
        DEFAULT_TESTS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        opts.tests.clone()
    };
    prereqs::install()?;
    let agent = ws.build(true)?;
    let binaries = ws.test_binaries(&tests)?;
    let benches = match &opts.bench {
        Some(names) if names.is_empty() => ws.bench_binaries(&["sensor".to_owned()])?,
        Some(names) => ws.bench_binaries(names)?,
        None => Vec::new(),
    };
    let work = ws.target_dir().join("vm");
    let initrd = work.join("initramfs.cpio");
    stage(ws, &agent, &binaries, &benches, &opts.extra, &work, &initrd)?;

    let cache = cache_dir()?;
    let mut failed = Vec::new();
    let mut summaries = Vec::new();
    for kernel in kernels {
        let fetched = kernel.fetch(&cache)?;
        let log = work.join(format!("{}.log", kernel.name));
        let outcome = qemu::boot(kernel, &fetched, &initrd, &log, opts.timeout_minutes)?;
        let line = outcome.summary(kernel, &tests);
        println!("{line}");
        if !outcome.passed(&tests) {
            failed.push(kernel.name);
        }
        summaries.push(line);
    }
    println!("vm-test summary:");
    for line in &summaries {
        println!("  {line}");
    }
    if !failed.is_empty() {
        bail!(
            "vm-test FAILED on {} (guest consoles in {})",
            failed.join(", "),
            work.display()
        );
    }
    Ok(())
}

/// Builds the guest's initramfs: agent, test binaries, the workspace files the tests read, the
/// host programs they run, the run list and the environment.
fn stage(
    ws: &Workspace,
    agent: &Path,
    binaries: &[(String, PathBuf)],
    benches: &[(String, PathBuf)],
    extra: &[OsString],
    work: &Path,
    initrd: &Path,
) -> Result<()> {
    let mut root = initramfs::Staging::new(&work.join("root"))?;
    root.add_elf(agent)?;
    let tests_dir = ws.root().join("tests");
    let mut run_list = String::new();
    let benches_dir = ws.root().join("monitor");
    let runs = binaries
        .iter()
        .map(|b| (b, "test", &tests_dir))
        .chain(benches.iter().map(|b| (b, "bench", &benches_dir)));
    for ((name, bin), kind, dir) in runs {
        root.add_elf(bin)?;
        run_list.push_str(&format!("{name}\t{}\t{}\t{kind}\n", utf8(bin)?, utf8(dir)?));
    }
    // The agent finds its shipped rules as `<workspace>/monitor/../rules`.
    root.add(&ws.root().join("monitor"))?;
    for dir in ["rules", "tests", "deploy"] {
        let path = ws.root().join(dir);
        if path.is_dir() {
            root.add_tree(&path, &["target"])?;
        }
    }
    let python = root.add_host_programs()?;
    for etc in [
        "/etc/passwd",
        "/etc/group",
        "/etc/hosts",
        "/etc/nsswitch.conf",
    ] {
        if Path::new(etc).exists() {
            root.add(Path::new(etc))?;
        }
    }
    // The sensor's debug lines say how long each program took to load (verify): what a slow
    // start in an emulated guest is made of, in any report that shows the agent's stderr.
    let env = format!(
        "export CI=true MONITOR_BIN={} MONITOR_TEST_PYTHON={} RUST_BACKTRACE=1 \
         MONITOR_TEST_TIME_SCALE={GUEST_TIME_SCALE} RUST_LOG=info,monitor::sensor=debug BENCH_ITERS=50000 BENCH_ROUNDS=3\n",
        shell_word(utf8(agent)?)?,
        shell_word(utf8(&python)?)?
    );
    root.write("/vm/env", &env, 0o644)?;
    root.write("/vm/tests", &run_list, 0o644)?;
    let mut args = String::new();
    for a in extra {
        let a = a.to_str().context("test arguments must be UTF-8")?;
        ensure!(!a.contains('\n'), "a test argument holds a newline");
        args.push_str(a);
        args.push('\n');
    }
    root.write("/vm/args", &args, 0o644)?;
    root.pack(initrd)
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// `s` quoted for the init script's shell (single quotes; paths with one are refused).
fn shell_word(s: &str) -> Result<String> {
    ensure!(!s.contains('\''), "{s} holds a single quote");
    Ok(format!("'{s}'"))
}
