//! Which kernels the agent runs on: it probes the kernel at start, says which build of its
//! programs it loaded, and refuses a kernel it cannot run on with a message naming what is
//! missing. Run here and, through `cargo xtask vm-test`, on each kernel under QEMU.

use std::{
    fs,
    process::{Command, Stdio},
};

use monitor_tests::{
    TempDir, enforce::OwnAgent, kernel_version, preflight, rules::shipped_rules, skip_or_fail,
};

/// The agent's binary, or `None` (said loudly; a failure under CI) when it cannot run here.
fn binary_or_skip() -> Option<std::path::PathBuf> {
    preflight().map_err(|why| skip_or_fail(&why)).ok()
}

#[test]
fn a_kernel_without_btf_is_refused_with_what_is_missing() {
    let Some(bin) = binary_or_skip() else {
        return;
    };
    let dir = TempDir::new("no-btf");
    let missing = dir.join("vmlinux");
    let out = Command::new(bin)
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
    if binary_or_skip().is_none() {
        return;
    }
    let spool = TempDir::new("features");
    let agent = OwnAgent::start(&shipped_rules(), &[], spool.path())
        .unwrap_or_else(|why| panic!("the agent did not get ready: {why}"));
    let err = agent.stop();
    let line = err
        .lines()
        .find(|l| l.contains("kernel features probed"))
        .unwrap_or_else(|| panic!("no `kernel features probed` line:\n{err}"));
    // How long loading took (verification, mostly; each program's time with
    // RUST_LOG=monitor::sensor=debug): shown with --nocapture.
    for loaded in err
        .lines()
        .filter(|l| l.contains("loaded") || l.contains("relocated"))
    {
        eprintln!("{loaded}");
    }
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
    // How opens and execs outside an enforce-mode profile are stopped follows from both.
    let enforcement = err
        .lines()
        .find(|l| l.contains("enforcement in the kernel"))
        .unwrap_or_else(|| panic!("no `enforcement in the kernel` line:\n{err}"));
    let stopped = match (has_loop, lsm_active) {
        (true, true) => "refused (EPERM, BPF LSM)",
        (true, false) => "killed (SIGKILL at the syscall's return)",
        (false, _) => "alerted only",
    };
    assert!(
        enforcement.contains(&format!("opens_and_execs=\"{stopped}\"")),
        "expected opens and execs {stopped}: {enforcement}"
    );
}
