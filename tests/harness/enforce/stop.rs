//! How the kernel stops an open or exec outside an enforce-mode profile on this kernel, and
//! what the tests then see.

/// Killed at the syscall's return (tracepoints, `bpf_send_signal`), or refused before the
/// step has an effect (BPF LSM, `EPERM`; the process lives on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Kill,
    Refuse,
}

impl Stop {
    /// The agent refuses where BPF LSM is active (`bpf` in the kernel's LSM list), else kills.
    pub fn here() -> Self {
        let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
        if lsm.trim().split(',').any(|l| l == "bpf") {
            Stop::Refuse
        } else {
            Stop::Kill
        }
    }

    /// The alert's `action`.
    pub fn action(self) -> &'static str {
        match self {
            Stop::Kill => "killed",
            Stop::Refuse => "blocked",
        }
    }

    /// The event field that says the kernel stopped the step.
    pub fn event_flag(self) -> &'static str {
        match self {
            Stop::Kill => "killed",
            Stop::Refuse => "denied",
        }
    }

    /// What the stand-in's `cred` step (read a file, then write another) replies when the
    /// read is stopped.
    pub fn cred(self) -> &'static str {
        match self {
            Stop::Kill => "-9 ",
            Stop::Refuse => "0 err 1",
        }
    }

    /// What the stand-in's `drop` step (run a dropped binary) replies when the exec is
    /// stopped.
    pub fn drop(self) -> &'static str {
        match self {
            Stop::Kill => "0 exit -9",
            Stop::Refuse => "0 err 1",
        }
    }
}
