//! The BPF LSM hooks of enforcement (`file_open`, `bprm_check_security`): where the kernel
//! has BPF LSM active, an open or exec outside an enforce-mode profile fails with `EPERM`
//! before it has an effect, instead of the process being killed at the syscall's return.

use std::path::Path;

use aya::{Ebpf, Endianness, programs::Lsm};
use monitor_common::config::{names, switch};

use super::error::{SensorError, map_error};

/// (program name, LSM hook).
const HOOKS: [(&str, &str); 2] = [
    (names::PROG_LSM_FILE_OPEN, "file_open"),
    (names::PROG_LSM_BPRM_CHECK, "bprm_check_security"),
];

/// Loads and attaches the LSM programs against the kernel's BTF at `btf_path` (BPF LSM
/// programs attach to BTF functions, whose ids come from there), then tells the tracepoints
/// to leave opens and execs to them.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    btf_path: &Path,
    switches: &mut aya::maps::Array<aya::maps::MapData, u32>,
) -> Result<(), SensorError> {
    let btf = aya::Btf::parse_file(btf_path, Endianness::default()).map_err(|source| {
        SensorError::KernelBtf {
            path: btf_path.to_path_buf(),
            source,
        }
    })?;
    for (i, (name, hook)) in HOOKS.into_iter().enumerate() {
        if let Err(e) = load_attach(ebpf, name, hook, &btf) {
            // Both or neither: a lone hook would refuse while the log says processes are
            // killed. Unloading detaches.
            for (attached, _) in &HOOKS[..=i] {
                if let Some(Ok(prog)) = ebpf.program_mut(attached).map(<&mut Lsm>::try_from) {
                    let _ = prog.unload();
                }
            }
            return Err(e);
        }
    }
    switches
        .set(switch::LSM, 1, 0)
        .map_err(map_error(names::SWITCHES))
}

fn load_attach(
    ebpf: &mut Ebpf,
    name: &'static str,
    hook: &'static str,
    btf: &aya::Btf,
) -> Result<(), SensorError> {
    let prog: &mut Lsm = ebpf
        .program_mut(name)
        .ok_or(SensorError::MissingProgram { name })?
        .try_into()
        .map_err(|source| SensorError::Program { name, source })?;
    prog.load(hook, btf)
        .map_err(|source| SensorError::Program { name, source })?;
    prog.attach()
        .map_err(|source| SensorError::AttachLsm { name, hook, source })?;
    Ok(())
}
