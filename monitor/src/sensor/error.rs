//! Why the sensor could not start or change, and the map lookups that name the map in their
//! errors.

use std::path::PathBuf;

use aya::{Ebpf, EbpfError, maps::MapError, programs::ProgramError};

use super::btf::BtfError;

/// Why the sensor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("the monitor must run as root (it loads eBPF programs); try `sudo monitor ...`")]
    NotRoot,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("loading the kernel programs failed")]
    Load(#[source] EbpfError),
    #[error(
        "this kernel ({release}) lacks {what}, which the monitor needs; it supports Linux 5.8 \
         and later with BTF (see the README's kernel table)"
    )]
    KernelTooOld { what: String, release: String },
    #[error("could not probe the kernel for {what}: {reason}")]
    KernelProbe { what: String, reason: String },
    #[error("kernel program `{name}` is missing from the object file (build mismatch)")]
    MissingProgram { name: &'static str },
    #[error("kernel map `{name}` is missing from the object file (build mismatch)")]
    MissingMap { name: &'static str },
    #[error(
        "could not load kernel program `{name}` (the verifier refused it, or the hook type is unsupported)"
    )]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("could not attach kernel program `{name}` to raw tracepoint `{tracepoint}`")]
    Attach {
        name: &'static str,
        tracepoint: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("kernel map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("could not open the cgroup v2 root {path} to attach the DNS hooks")]
    CgroupRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not attach kernel program `{name}` to the cgroup v2 root {path}")]
    AttachCgroup {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: ProgramError,
    },
    #[error("could not read the kernel BTF {path} (for BTF-typed programs)")]
    KernelBtf {
        path: PathBuf,
        #[source]
        source: aya::BtfError,
    },
    #[error("could not attach kernel program `{name}` to LSM hook `{hook}`")]
    AttachLsm {
        name: &'static str,
        hook: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("could not memory-map the kernel watch array")]
    MapWatch(#[source] std::io::Error),
    #[error("ring buffer size {0} must be a power of two and at least 4096 bytes")]
    RingBufferSize(u32),
    #[error(
        "profiles with `mode: enforce` need a cgroup v2 filesystem to attach the network hooks \
         to, and none is mounted{}; mount one, or run with --no-enforce to have those profiles \
         alert only",
        .0.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default()
    )]
    NoCgroupForEnforce(Option<PathBuf>),
    #[error("enforcement needs the network hooks, and they could not be attached")]
    EnforceHooks(#[source] Box<SensorError>),
}

pub(super) fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, SensorError> {
    ebpf.take_map(name).ok_or(SensorError::MissingMap { name })
}

/// Takes map `name` from `ebpf` as the map type `T`.
pub(super) fn typed_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, SensorError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    T::try_from(take_map(ebpf, name)?).map_err(map_error(name))
}

/// Names map `name` in its errors.
pub(super) fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> SensorError {
    move |source| SensorError::Map { name, source }
}
