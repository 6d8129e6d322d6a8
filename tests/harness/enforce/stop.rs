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
    /// What `agent` said at start (`enforcement in the kernel opens_and_execs=...`): refused
    /// where BPF LSM is active and its hooks attached, else killed.
    pub fn of(agent: &super::OwnAgent) -> Self {
        let said = agent.stderr();
        let line = said
            .lines()
            .find(|l| l.contains("enforcement in the kernel"))
            .unwrap_or_else(|| panic!("no `enforcement in the kernel` line:\n{said}"));
        if line.contains("opens_and_execs=\"refused") {
            Stop::Refuse
        } else if line.contains("opens_and_execs=\"killed") {
            Stop::Kill
        } else {
            panic!("this kernel does not stop opens and execs: {line}")
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
