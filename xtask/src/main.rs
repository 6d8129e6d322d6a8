//! `cargo xtask`: the project's build, run and test entry points.
//!
//! Every command first installs what is missing (`install-prereqs`), so a fresh Debian machine
//! with only rustup's stable and nightly toolchains can build, run and test the monitor.

mod docker;
mod image;
mod prereqs;
mod tasks;
mod vm;

use std::{ffi::OsString, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test the monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (rust-src, bpf-linker, Debian packages).
    InstallPrereqs,
    /// Build the agent (kernel programs included) into target/release/monitor.
    Build {
        /// Build the debug profile instead (target/debug/monitor).
        #[arg(long)]
        debug: bool,
    },
    /// Build, then run target/release/monitor as root with ARGS.
    Run {
        /// Arguments for the monitor, e.g. `-- run --events`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build the agent's container image `monitor:VERSION` with the local Docker engine (nothing
    /// is pulled) and print its size.
    Image,
    /// Build the agent and its image, then run all tests, clippy and rustfmt, and the sensor
    /// and enforcement tests on one other kernel under QEMU (`vm-test`); fails if any fails.
    Test {
        /// Extra arguments for the test binaries (after cargo test's `--`), e.g. a name filter.
        #[arg(last = true)]
        extra: Vec<OsString>,
    },
    /// Boot other kernels under QEMU (Debian's packages, fetched and cached) and run the
    /// privileged integration tests inside each as root; one summary line per kernel.
    VmTest {
        /// A kernel to boot (repeatable); `--list` prints the names.
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
        /// Print the kernel names, one per line, and exit.
        #[arg(long)]
        list: bool,
        /// A test binary of tests/ to run in the guest (repeatable; default: the sensor and
        /// enforcement tests).
        #[arg(long = "test", value_name = "NAME")]
        tests: Vec<String>,
        /// Stop a guest that runs longer than this.
        #[arg(long, default_value_t = 40)]
        timeout_minutes: u64,
        /// Also run benchmarks in each guest, after the tests; ratios within one guest only.
        /// Bare `--bench` runs the sensor benchmark (the open/close loop's floor and the
        /// agent's ratios); `--bench enforce` (or several names) runs those bench targets.
        #[arg(long, value_name = "NAME", num_args = 0..)]
        bench: Option<Vec<String>>,
        /// Extra arguments for the test binaries, e.g. a name filter.
        #[arg(last = true)]
        extra: Vec<OsString>,
    },
    /// Build, then run the benchmarks (as root; they load the real probes).
    Bench {
        /// Extra arguments for the bench binaries.
        #[arg(last = true)]
        extra: Vec<String>,
    },
}

fn main() -> ExitCode {
    // Print the error chain ourselves: anyhow's `Termination` would append a backtrace under
    // RUST_BACKTRACE=1, burying the message under frames of xtask's own main.
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let ws = tasks::Workspace::locate()?;
    match cli.command {
        Command::InstallPrereqs => prereqs::install(),
        Command::Build { debug } => {
            prereqs::install()?;
            ws.build(!debug)?;
            Ok(())
        }
        Command::Image => {
            prereqs::install()?;
            let image = image::build(&ws)?;
            println!("{} {}", image.tag, image.size);
            Ok(())
        }
        Command::Run { args } => ws.run(&args),
        Command::Test { extra } => ws.test(&extra),
        Command::VmTest { list: true, .. } => {
            vm::list();
            Ok(())
        }
        Command::VmTest {
            kernels,
            tests,
            timeout_minutes,
            bench,
            extra,
            ..
        } => vm::run(
            &ws,
            &vm::Options {
                kernels,
                tests,
                extra,
                timeout_minutes,
                bench,
            },
        ),
        Command::Bench { extra } => {
            prereqs::install()?;
            ws.bench(&extra)
        }
    }
}

/// Runs `cmd` with inherited stdio (its output streams through) and fails unless it exits 0.
fn checked(cmd: &mut std::process::Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("could not start {cmd:?}: {e}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// Whether this process runs with effective uid 0.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// The first executable file called `name` on PATH.
fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command};

    fn bench_of(args: &[&str]) -> Option<Vec<String>> {
        match Cli::try_parse_from(args).expect("parses").command {
            Command::VmTest { bench, .. } => bench,
            _ => panic!("not vm-test"),
        }
    }

    #[test]
    fn vm_test_bench_alone_or_with_names() {
        let base = ["xtask", "vm-test", "--kernel", "debian-6.12"];
        assert_eq!(bench_of(&base), None);
        assert_eq!(bench_of(&[&base[..], &["--bench"]].concat()), Some(vec![]));
        assert_eq!(
            bench_of(&["xtask", "vm-test", "--bench", "--kernel", "debian-5.10"]),
            Some(vec![])
        );
        assert_eq!(
            bench_of(&[&base[..], &["--bench", "enforce", "sensor"]].concat()),
            Some(vec!["enforce".to_owned(), "sensor".to_owned()])
        );
    }
}
