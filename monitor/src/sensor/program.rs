//! A program of the loaded object, as its type, verified by the kernel; how long each took is
//! logged at debug level (on old kernels the bounded build's verification is most of a start).

use aya::{
    Ebpf,
    programs::{CgroupSkb, CgroupSockAddr, ProgramError, RawTracePoint},
};

use super::error::SensorError;

/// Program `name` of `ebpf` as the program type `P`, loaded (verified), its time logged.
pub(super) fn loaded<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut P, SensorError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    P: Load,
{
    let prog: &mut P = ebpf
        .program_mut(name)
        .ok_or(SensorError::MissingProgram { name })?
        .try_into()
        .map_err(|source| SensorError::Program { name, source })?;
    let started = std::time::Instant::now();
    prog.load_program()
        .map_err(|source| SensorError::Program { name, source })?;
    tracing::debug!(
        program = name,
        ms = started.elapsed().as_millis(),
        "program loaded"
    );
    Ok(prog)
}

/// The program types' `load` (aya gives each its own inherent method).
pub(super) trait Load {
    fn load_program(&mut self) -> Result<(), ProgramError>;
}

impl Load for CgroupSockAddr {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

impl Load for CgroupSkb {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

impl Load for RawTracePoint {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}
