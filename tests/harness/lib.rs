//! Harness for the privileged integration tests: runs the real agent (`monitor run --events`),
//! lets tests start real processes once every probe is attached, and reads the agent's JSON lines
//! back to assert on the events of those processes.
//!
//! - [`Agent::start`] starts the agent (or joins the one already running in this test binary) and
//!   returns `None` when the machine cannot run it, after saying so loudly; under `CI=true` that
//!   is a failure instead.
//! - [`Agent::spawn`] starts a child after the agent is ready and tracks its pid and descendants;
//!   [`python`] builds a `python3 -c SCRIPT` command for children that act precisely.
//! - [`Agent::wait_for`] and friends poll the events file with a deadline; [`Agent::assert_event`]
//!   checks the envelope every event carries and the exact fields a test expects.
//! - [`TempDir`], [`TmpfsMount`] and [`CgroupTree`] clean up after themselves, even when the test
//!   panicked.
//!
//! Environment: `MONITOR_BIN` (agent binary; default `<workspace>/target/release/monitor`),
//! `MONITOR_TEST_PYTHON` (python interpreter), `MONITOR_TEST_KEEP=1` (keep the agent's directory
//! with its events and stderr), `CI=true` (a test that cannot run fails).

mod agent;
mod cgroup;
pub mod cri;
pub mod deliver;
pub mod docker;
pub mod enforce;
mod events;
mod fs;
pub mod http;
pub mod inference;
pub mod kube;
mod launch;
pub mod learn;
mod port;
mod process;
pub mod rules;
pub mod sigma;

use std::{
    env,
    io::{self, Write as _},
    net::TcpListener,
    path::Path,
    thread,
};

pub use agent::{Agent, TIMEOUT};
pub use cgroup::{
    CgroupTree, cgroup_id, cgroup2_root, own_cgroup2_path, path_looks_containerised, random_hex,
    random_uuid,
};
pub use events::{matches, parse_time};
pub use fs::{FileGuard, TempDir, TmpfsMount};
pub use launch::{agent_binary, preflight};
pub use port::ReservedPort;
pub use process::{Finished, Proc, python};

/// The running kernel's (major, minor).
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether a test that cannot run must fail (`CI=true`) rather than skip.
pub fn under_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Says loudly on stderr that the current test cannot run and why. Under `CI=true` this panics
/// (a test that cannot load its probes fails); otherwise it returns and the caller should return
/// early, which the test runner shows as a pass: hence the banner.
#[track_caller]
pub fn skip_or_fail(reason: &str) {
    let current = thread::current();
    let test = current.name().unwrap_or("<unnamed test>");
    let ci = under_ci();
    let verdict = if ci {
        "FAILED: CI=true, and a test that cannot run is a failure"
    } else {
        "SKIPPED: NOT TESTED on this machine (set CI=true to make this a failure)"
    };
    let banner = "!".repeat(78);
    let body: String = reason.lines().map(|l| format!("!! {l}\n")).collect();
    // Straight to file descriptor 2: libtest captures `eprintln!` of passing tests, and a skip
    // passes.
    let _ = writeln!(
        io::stderr().lock(),
        "\n{banner}\n!! {test}: {verdict}\n{body}{banner}"
    );
    if ci {
        panic!("{test} cannot run: {reason}");
    }
}

/// Prints a warning that a passing test must not hide (libtest captures `eprintln!`).
pub(crate) fn warn(message: &str) {
    let _ = writeln!(io::stderr().lock(), "monitor-tests: {message}");
}

/// True when a TCP socket can bind `[::1]`; otherwise says so loudly (failing under CI) and
/// returns false.
#[track_caller]
pub fn ipv6_loopback_or_skip() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            skip_or_fail(&format!(
                "this machine has no IPv6 on the loopback interface (binding [::1]:0: {e}); \
                 the IPv6 sensors are not tested"
            ));
            false
        }
    }
}

/// The path as a `String`, for comparing with event fields. Test paths are ASCII; panics otherwise.
#[track_caller]
pub fn path_str(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    match path.to_str() {
        Some(s) => s.to_owned(),
        None => panic!("test path {} is not UTF-8", path.display()),
    }
}

/// The fully resolved form of `path` (symlinks followed), as a `String`: what the agent reports as
/// `exe`, e.g. `/usr/bin/dash` for `/bin/sh`.
#[track_caller]
pub fn canonical(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    match std::fs::canonicalize(path) {
        Ok(resolved) => path_str(resolved),
        Err(e) => panic!("cannot resolve {}: {e}", path.display()),
    }
}
