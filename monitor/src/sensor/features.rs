//! What the running kernel offers, probed once at start (as libbpf and `bpftool feature probe`
//! do: load a minimal program or map and read the verifier's answer), and which build of the
//! kernel programs that selects.
//!
//! | kernel | programs | recorded | enforced in the kernel |
//! |---|---|---|---|
//! | < 5.8, or no BTF | none: the agent refuses to start, naming what is missing | | |
//! | 5.8 – 5.16 (no `bpf_loop`) | `bounded`: path walks as bounded loops | everything | connect, send, bind (cgroup hooks, EPERM); file and exec paths are not judged in the kernel (alerts only) |
//! | 5.17 and later (`bpf_loop`) | `loop`: path walks under `bpf_loop` | everything | connect, send, bind (EPERM); open and exec outside the profile: SIGKILL |
//! | 5.17 and later, BPF LSM active | `loop` + LSM `file_open`, `bprm_check_security` | everything | connect, send, bind, open, exec: EPERM before the step has an effect |
//!
//! The README's kernel table holds what was measured on each kernel under QEMU.

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported},
};

use super::error::SensorError;

/// The probed features the sensor's choices depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    /// The `bpf_loop` helper (5.17; backported by some distributions), with the BTF-typed
    /// helpers the `loop` build also calls: path walks and in-kernel path judgement run under
    /// it.
    pub bpf_loop: bool,
    /// BPF LSM is active (`bpf` in /sys/kernel/security/lsm).
    pub bpf_lsm: bool,
}

/// Which build of the kernel programs to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Path walks under `bpf_loop`; paths judged in the kernel.
    Loop,
    /// Path walks as bounded loops; paths not judged in the kernel.
    Bounded,
}

impl Variant {
    /// The name logs and the README use.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Loop => "loop",
            Variant::Bounded => "bounded",
        }
    }
}

impl KernelFeatures {
    /// The build of the kernel programs this kernel gets.
    pub fn variant(self) -> Variant {
        if self.bpf_loop {
            Variant::Loop
        } else {
            Variant::Bounded
        }
    }
}

/// Helpers every build of the programs calls: (helper, name, first Linux release).
const REQUIRED_HELPERS: [(BpfHelper, &str, &str); 4] = [
    (
        BpfHelper::BPF_FUNC_probe_read_kernel,
        "bpf_probe_read_kernel",
        "5.5",
    ),
    (BpfHelper::BPF_FUNC_send_signal, "bpf_send_signal", "5.3"),
    (
        BpfHelper::BPF_FUNC_get_current_task,
        "bpf_get_current_task",
        "4.8",
    ),
    (
        BpfHelper::BPF_FUNC_ringbuf_output,
        "bpf_ringbuf_output",
        "5.8",
    ),
];

/// Probes the running kernel; an error names the first thing missing that the sensor cannot do
/// without.
pub fn probe() -> Result<KernelFeatures, SensorError> {
    let missing = |what: String| SensorError::KernelTooOld {
        what,
        release: kernel_release(),
    };
    let probe_error = |what: &str, e: &dyn std::fmt::Display| SensorError::KernelProbe {
        what: what.to_owned(),
        reason: e.to_string(),
    };
    if !is_program_supported(ProgramType::RawTracePoint)
        .map_err(|e| probe_error("raw tracepoint programs", &e))?
    {
        return Err(missing("raw tracepoint programs (Linux 4.17)".to_owned()));
    }
    if !is_map_supported(MapType::RingBuf).map_err(|e| probe_error("the BPF ring buffer", &e))? {
        return Err(missing("the BPF ring buffer map (Linux 5.8)".to_owned()));
    }
    for (helper, name, since) in REQUIRED_HELPERS {
        if !is_helper_supported(ProgramType::RawTracePoint, helper)
            .map_err(|e| probe_error(name, &e))?
        {
            return Err(missing(format!(
                "the {name} helper in raw tracepoint programs (Linux {since})"
            )));
        }
    }
    // The `loop` build also reads registers and the fd table through BTF-typed pointers
    // (`bpf_task_pt_regs`, 5.15; `bpf_get_current_task_btf`, 5.11): a kernel with `bpf_loop`
    // backported but not those gets the `bounded` build.
    let mut bpf_loop = true;
    for (helper, name) in [
        (BpfHelper::BPF_FUNC_loop, "bpf_loop"),
        (BpfHelper::BPF_FUNC_task_pt_regs, "bpf_task_pt_regs"),
        (
            BpfHelper::BPF_FUNC_get_current_task_btf,
            "bpf_get_current_task_btf",
        ),
    ] {
        bpf_loop &= is_helper_supported(ProgramType::RawTracePoint, helper)
            .map_err(|e| probe_error(name, &e))?;
    }
    Ok(KernelFeatures {
        bpf_loop,
        bpf_lsm: lsm_active("bpf"),
    })
}

/// Whether `name` is in the kernel's active LSM list (securityfs; false when unreadable).
fn lsm_active(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|list| list.trim().split(',').any(|l| l == name))
}

/// `uname -r`, for messages.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_without_bpf_loop_get_the_bounded_programs() {
        let f = KernelFeatures {
            bpf_loop: false,
            bpf_lsm: true,
        };
        assert_eq!(f.variant(), Variant::Bounded);
        assert_eq!(
            KernelFeatures {
                bpf_loop: true,
                ..f
            }
            .variant()
            .name(),
            "loop"
        );
    }
}
