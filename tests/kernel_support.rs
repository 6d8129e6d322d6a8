//! Which kernels the agent runs on: it probes the kernel at start, says which build of its
//! programs it loaded, and refuses a kernel it cannot run on with a message naming what is
//! missing. Run here and, through `cargo xtask vm-test`, on each kernel under QEMU.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor_tests::{TempDir, agent_binary, skip_or_fail};

/// Verifying every program takes a while under QEMU's software emulation.
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn root_with_binary_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip_or_fail("needs root to load eBPF programs");
        return false;
    }
    if !agent_binary().is_file() {
        skip_or_fail(&format!(
            "agent binary {} not built",
            agent_binary().display()
        ));
        return false;
    }
    true
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn a_kernel_without_btf_is_refused_with_what_is_missing() {
    if !root_with_binary_or_skip() {
        return;
    }
    let dir = TempDir::new("no-btf");
    let missing = dir.join("vmlinux");
    let out = Command::new(agent_binary())
        .args(["run", "--output", "file:/dev/null", "--btf"])
        .arg(&missing)
        .stdin(Stdio::null())
        .output()
        .expect("run monitor");
    assert!(!out.status.success(), "the agent started without BTF");
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "kernel BTF not found at {}: this kernel was built without CONFIG_DEBUG_INFO_BTF",
        missing.display()
    );
    assert!(
        err.contains(&expected),
        "stderr does not say `{expected}`:\n{err}"
    );
}

#[test]
fn the_agent_says_which_programs_this_kernel_gets() {
    if !root_with_binary_or_skip() {
        return;
    }
    let dir = TempDir::new("features");
    let ready = dir.join("ready");
    let stderr = fs::File::create(dir.join("stderr")).expect("stderr file");
    let mut agent = Command::new(agent_binary())
        .args(["run", "--output", "file:/dev/null", "--ready-file"])
        .arg(&ready)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start monitor");
    let deadline = Instant::now() + START_TIMEOUT;
    while !ready.exists() && Instant::now() < deadline && agent.try_wait().ok().flatten().is_none()
    {
        thread::sleep(Duration::from_millis(50));
    }
    let started = ready.exists();
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let err = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert!(started, "the agent did not get ready:\n{err}");
    let line = err
        .lines()
        .find(|l| l.contains("kernel features probed"))
        .unwrap_or_else(|| panic!("no `kernel features probed` line:\n{err}"));
    let has_loop = line.contains("bpf_loop=true");
    let programs = if has_loop {
        "programs=\"loop\""
    } else {
        "programs=\"bounded\""
    };
    assert!(
        line.contains(programs),
        "bpf_loop and the programs disagree: {line}"
    );
    // bpf_loop is in every kernel from 5.17 (some distributions backport it to older ones).
    if kernel_version() >= (5, 17) {
        assert!(has_loop, "Linux >= 5.17 without bpf_loop: {line}");
    }
    let lsm_active = fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|l| l.trim().split(',').any(|m| m == "bpf"));
    assert!(
        line.contains(&format!("bpf_lsm={lsm_active}")),
        "BPF LSM is {}active, the agent says otherwise: {line}",
        if lsm_active { "" } else { "not " }
    );
}
