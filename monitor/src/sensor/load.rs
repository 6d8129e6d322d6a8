//! Loading and attaching the kernel programs.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::RawTracePoint,
};
use monitor_common::config::{counter, handler, names, switch};

use super::cgroup_hooks::{attach_dns, load_enforcement};
pub use super::error::SensorError;
use super::program::loaded;
use super::{
    btf::Btf,
    drops::{DropsByFamily, ProcessDrops, by_process},
    error::{map_error, take_map, typed_map},
    features::{self, KernelFeatures, Variant},
    hz, offsets,
    watch::WatchMap,
};

/// The compiled kernel programs (built by `build.rs` through aya-build), for kernels with
/// `bpf_loop`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));
/// The same programs built with bounded loops, for kernels without `bpf_loop`.
static OBJECT_BOUNDED: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bounded/monitor"));

/// Where the kernel publishes its own BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What to load and how.
#[derive(Clone, Debug)]
pub struct SensorConfig {
    /// Record file and network activity of every process (`--events`).
    pub record_all: bool,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Kernel BTF file.
    pub btf_path: PathBuf,
    /// Watch every exec'ing process until user space decides (workload profiles are loaded, or
    /// a learning session runs); changed later with [`Sensor::set_watch_on_exec`].
    pub watch_on_exec: bool,
    /// The cgroup v2 root the DNS hooks attach to; `None`: no DNS answers are reported.
    pub cgroup_root: Option<PathBuf>,
    /// Identical opens (same process, file, access) within this window are folded into the
    /// first one reported, in the kernel; `Duration::ZERO` reports every open.
    pub dedupe_window: std::time::Duration,
    /// Whether the enforcement hooks (cgroup connect, send and bind) and maps are loaded.
    pub enforce: EnforceHooks,
    /// Seed of the kernel's path hashes (enforcement), random per start.
    pub hash_seed: u64,
}

/// Whether the sensor loads enforcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnforceHooks {
    Off,
    /// Where the host allows (a cgroup v2 root, hooks that attach); else without, said in a
    /// warning.
    IfAvailable,
    /// Enforce-mode profiles are loaded: without the hooks the sensor does not start.
    Required,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            record_all: false,
            ring_buffer_bytes: 16 * 1024 * 1024,
            btf_path: PathBuf::from(KERNEL_BTF),
            watch_on_exec: false,
            cgroup_root: None,
            dedupe_window: std::time::Duration::from_secs(1),
            enforce: EnforceHooks::Off,
            hash_seed: 0,
        }
    }
}

/// The loaded, attached sensor. Dropping it detaches every program.
pub struct Sensor {
    ebpf: Ebpf,
    /// The ring buffer, taken out for the reader.
    pub events: Option<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    watched: WatchMap,
    switches: Array<MapData, u32>,
    /// Ring buffer drops per process and family.
    drops_by_process: HashMap<MapData, u64, u64>,
    /// Per thread group, the generation of its last open-dedupe reset.
    opens_reset: HashMap<MapData, u32, u32>,
    reset_gen: u32,
    /// `switch::ENFORCING` is set.
    enforcing: bool,
    /// Kept open: the kernel empties a program array when its last user-space fd closes.
    _handlers: ProgramArray<MapData>,
    /// The enforcement maps, when enforcing.
    pub enforcer: Option<super::enforce::Enforcer>,
    /// What the kernel offers, probed at load.
    pub features: KernelFeatures,
    /// The BPF LSM hooks judge opens and execs of enforced processes (`EPERM`); else the
    /// tracepoints do (`SIGKILL`), where the programs judge paths at all.
    pub lsm_enforces: bool,
}

/// Tail-called handlers of the `sys_exit` dispatcher: (slot, program name).
const HANDLERS: [(u32, &str); 2] = [
    (handler::FILE_OTHER, names::PROG_FILE_OTHER),
    (handler::NET, names::PROG_NET),
];

/// Attached programs: (program name, raw tracepoint).
const ATTACHED: [(&str, &str); 4] = [
    (names::PROG_EXEC, "sched_process_exec"),
    (names::PROG_FORK, "sched_process_fork"),
    (names::PROG_EXIT, "sched_process_exit"),
    (names::PROG_SYS_EXIT, "sys_exit"),
];

impl Sensor {
    /// Loads and attaches everything. The process-lifecycle hooks attach before `sys_exit` so
    /// no watched process can be missed between them.
    pub fn load(config: &SensorConfig) -> Result<Self, SensorError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(SensorError::NotRoot);
        }
        let size = config.ring_buffer_bytes;
        if size < 4096 || !size.is_power_of_two() {
            return Err(SensorError::RingBufferSize(size));
        }
        let started = std::time::Instant::now();
        raise_memlock_limit();
        let btf = Btf::from_file(Path::new(&config.btf_path))?;
        let features = features::probe()?;
        let variant = features.variant();
        tracing::info!(
            programs = variant.name(),
            bpf_loop = features.bpf_loop,
            bpf_lsm = features.bpf_lsm,
            "kernel features probed"
        );
        let object = match variant {
            Variant::Loop => OBJECT,
            Variant::Bounded => OBJECT_BOUNDED,
        };
        let offsets = offsets::resolve(&btf)?;
        let record_all: u8 = config.record_all.into();
        let agent_tgid: u32 = std::process::id();
        let dedupe_jiffies = hz::duration_to_jiffies(config.dedupe_window, hz::kernel_hz());
        let mut ebpf = EbpfLoader::new()
            .override_global(names::OFFSETS, &offsets, true)
            .override_global(names::RECORD_ALL, &record_all, true)
            .override_global(names::AGENT_TGID, &agent_tgid, true)
            .override_global(names::DEDUPE_WINDOW_JIFFIES, &dedupe_jiffies, true)
            .override_global(names::HASH_SEED, &config.hash_seed, true)
            .map_max_entries(names::EVENTS, size)
            .load(object)
            .map_err(SensorError::Load)?;
        tracing::debug!(
            ms = started.elapsed().as_millis(),
            "object relocated against the kernel's BTF, maps created"
        );

        let mut handlers: ProgramArray<_> = typed_map(&mut ebpf, names::SYSCALL_HANDLERS)?;
        for (slot, name) in HANDLERS {
            let prog = loaded::<RawTracePoint>(&mut ebpf, name)?;
            let fd = prog
                .fd()
                .map_err(|source| SensorError::Program { name, source })?;
            handlers
                .set(slot, fd, 0)
                .map_err(map_error(names::SYSCALL_HANDLERS))?;
        }

        let opens_reset: HashMap<_, u32, u32> = typed_map(&mut ebpf, names::OPENS_RESET)?;
        let drops_by_process = typed_map(&mut ebpf, names::DROPS_BY_PROCESS)?;
        let mut switches: Array<_, u32> = typed_map(&mut ebpf, names::SWITCHES)?;
        switches
            .set(switch::WATCH_ON_EXEC, u32::from(config.watch_on_exec), 0)
            .map_err(map_error(names::SWITCHES))?;

        attach_all(&mut ebpf, &ATTACHED)?;
        let enforcer = if config.enforce != EnforceHooks::Off {
            match load_enforcement(&mut ebpf, config.cgroup_root.as_deref()) {
                Ok(e) => Some(e),
                Err(e) if config.enforce == EnforceHooks::Required => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        error = %crate::deliver::error_chain(&e),
                        "cgroup hooks not attached: DNS answers are not reported, and a reload \
                         cannot add `mode: enforce` profiles"
                    );
                    None
                }
            }
        } else {
            // DNS answers help profiles that name hosts; without them the agent's own
            // resolution still does, so a kernel or cgroup setup that refuses the hooks is
            // not fatal.
            if let Some(root) = &config.cgroup_root
                && let Err(e) = attach_dns(&mut ebpf, root)
            {
                tracing::warn!(
                    error = %crate::deliver::error_chain(&e),
                    "DNS hooks not attached: DNS answers are not reported"
                );
            }
            None
        };
        let lsm_enforces = enforcer.is_some()
            && features.bpf_lsm
            && variant == Variant::Loop
            && match super::lsm::attach(&mut ebpf, &config.btf_path, &mut switches) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(
                        error = %crate::deliver::error_chain(&e),
                        "BPF LSM hooks not attached: opens and execs outside `mode: enforce` \
                         profiles are killed at the syscall's return instead of refused"
                    );
                    false
                }
            };

        tracing::info!(
            ms = started.elapsed().as_millis(),
            "kernel programs loaded and attached"
        );
        let events: RingBuf<_> = typed_map(&mut ebpf, names::EVENTS)?;
        let counters: PerCpuArray<_, u64> = typed_map(&mut ebpf, names::COUNTERS)?;
        let watched = match take_map(&mut ebpf, names::WATCHED)? {
            aya::maps::Map::Array(data) => WatchMap::new(data).map_err(SensorError::MapWatch)?,
            _ => {
                return Err(SensorError::MissingMap {
                    name: names::WATCHED,
                });
            }
        };
        Ok(Self {
            ebpf,
            events: Some(events),
            counters,
            watched,
            switches,
            opens_reset,
            drops_by_process,
            reset_gen: 0,
            enforcing: false,
            _handlers: handlers,
            enforcer,
            features,
            lsm_enforces,
        })
    }

    /// Forgets the opens of `pids` folded in the kernel's dedupe window, so their next opens
    /// are reported at once: a new reset generation, recorded for each pid and then published
    /// (the kernel compares generations on a repeat, no map walk).
    pub fn forget_opens(
        &mut self,
        pids: &std::collections::HashSet<u32>,
    ) -> Result<(), SensorError> {
        self.reset_gen = self.reset_gen.wrapping_add(1);
        for &pid in pids {
            self.opens_reset
                .insert(pid, self.reset_gen, 0)
                .map_err(map_error(names::OPENS_RESET))?;
        }
        self.switches
            .set(switch::RESET_GEN, self.reset_gen, 0)
            .map_err(map_error(names::SWITCHES))
    }

    /// Tells the kernel programs that processes may be under enforcement from now on (the open
    /// dedupe then looks up each process's slot); set before the first process is put under
    /// enforcement, never cleared.
    pub fn mark_enforcing(&mut self) -> Result<(), SensorError> {
        if self.enforcing {
            return Ok(());
        }
        self.switches
            .set(switch::ENFORCING, 1, 0)
            .map_err(map_error(names::SWITCHES))?;
        self.enforcing = true;
        Ok(())
    }

    /// Starts or stops watching every exec'ing process until user space decides about it.
    pub fn set_watch_on_exec(&mut self, on: bool) -> Result<(), SensorError> {
        self.switches
            .set(switch::WATCH_ON_EXEC, u32::from(on), 0)
            .map_err(map_error(names::SWITCHES))
    }

    /// Stops the programs sending records (they count them in `after_stop`): the reader's
    /// last drain then reads everything sent, and `emitted` = records received + ring buffer
    /// drops.
    pub fn stop_emitting(&mut self) -> Result<(), SensorError> {
        self.switches
            .set(switch::STOPPED, 1, 0)
            .map_err(map_error(names::SWITCHES))
    }

    /// Kernel counters summed over CPUs.
    pub fn counters(&self) -> KernelCounters {
        let sum = |i: u32| -> u64 {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            emitted: sum(counter::EMITTED),
            ringbuf_drops: sum(counter::RINGBUF_DROP),
            ringbuf_drops_by_family: DropsByFamily {
                process: sum(counter::RINGBUF_DROP_PROCESS),
                file: sum(counter::RINGBUF_DROP_FILE),
                network: sum(counter::RINGBUF_DROP_NET),
            },
            ringbuf_drops_by_process: Vec::new(),
            path_truncated: sum(counter::PATH_TRUNCATED),
            tail_call_failed: sum(counter::TAIL_CALL_FAILED),
            opens_deduped: sum(counter::DEDUPED),
            compat_syscalls_skipped: sum(counter::COMPAT_SKIPPED),
            read_errors: sum(counter::READ_ERROR),
            dns_unmatched: sum(counter::DNS_UNMATCHED),
            enforce_blocked: sum(counter::ENFORCE_BLOCKED),
            enforce_lost: sum(counter::ENFORCE_LOST),
            enforce_killed: sum(counter::ENFORCE_KILLED),
            enforce_undecided: sum(counter::ENFORCE_UNDECIDED),
            after_stop: sum(counter::AFTER_STOP),
        }
    }

    /// [`Self::counters`] with the processes that lost the most records (a walk of the
    /// kernel's map: for `agent_stats`, not for every metrics scrape).
    pub fn counters_by_process(&self) -> KernelCounters {
        let mut c = self.counters();
        if c.ringbuf_drops > 0 {
            c.ringbuf_drops_by_process = by_process(&self.drops_by_process);
        }
        c
    }

    /// The watch array: which processes' file and network activity is recorded.
    pub fn watched(&self) -> &WatchMap {
        &self.watched
    }

    /// Number of programs loaded (for logs).
    pub fn program_count(&self) -> usize {
        self.ebpf.programs().count()
    }
}

/// Kernel-side counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounters {
    pub emitted: u64,
    pub ringbuf_drops: u64,
    /// `ringbuf_drops` by the dropped record's family.
    pub ringbuf_drops_by_family: DropsByFamily,
    /// The processes with the most drops (at most [`super::drops::LISTED`]).
    pub ringbuf_drops_by_process: Vec<ProcessDrops>,
    pub path_truncated: u64,
    pub tail_call_failed: u64,
    /// Repeated opens folded in the kernel (not lost: see `repeats` on the next report).
    pub opens_deduped: u64,
    /// File/network syscalls made through the 32-bit compat ABI by watched processes: not
    /// decoded.
    pub compat_syscalls_skipped: u64,
    /// Events a kernel handler gave up on because a kernel read failed (lost, counted).
    pub read_errors: u64,
    /// DNS answers to a socket that queried, from another address than the one it queried
    /// (spoofed or stray): not reported.
    pub dns_unmatched: u64,
    /// Connects, sends, binds (and with BPF LSM opens and execs) the kernel refused.
    pub enforce_blocked: u64,
    /// Children of enforced processes that could not be put under enforcement (the table was
    /// full): they ran unenforced.
    pub enforce_lost: u64,
    /// Processes the kernel killed (exec or open outside an enforce-mode profile).
    pub enforce_killed: u64,
    /// Execs and opens of enforced processes whose path walk was cut short: not judged in
    /// the kernel, left to user space.
    pub enforce_undecided: u64,
    /// Records not sent because the agent was stopping (after its last `agent_stats` but one).
    pub after_stop: u64,
}

/// Loads (verifies) and attaches each (program, raw tracepoint) pair, in order.
fn attach_all(ebpf: &mut Ebpf, progs: &[(&'static str, &'static str)]) -> Result<(), SensorError> {
    for &(name, tracepoint) in progs {
        let prog = loaded::<RawTracePoint>(ebpf, name)?;
        prog.attach(tracepoint)
            .map_err(|source| SensorError::Attach {
                name,
                tracepoint,
                source,
            })?;
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it. Harmless elsewhere.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an initialised rlimit.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; continuing");
    }
}

/// Empty programs on the sensor's hooks (benchmark floor). Dropping it detaches them.
pub struct Floor {
    _ebpf: Ebpf,
}

/// Floor programs: (program name, raw tracepoint).
const FLOOR: [(&str, &str); 4] = [
    ("floor_exec", "sched_process_exec"),
    ("floor_fork", "sched_process_fork"),
    ("floor_exit", "sched_process_exit"),
    ("floor_sys_exit", "sys_exit"),
];

impl Floor {
    /// Loads the object and attaches only the empty floor programs; `tp_btf`: `sys_exit` in its
    /// BTF-typed form (against the kernel BTF at `btf_path`).
    pub fn load(tp_btf: bool, btf_path: &Path) -> Result<Self, SensorError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(SensorError::NotRoot);
        }
        raise_memlock_limit();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::EVENTS, 4096)
            .load(OBJECT)
            .map_err(SensorError::Load)?;
        if !tp_btf {
            attach_all(&mut ebpf, &FLOOR)?;
            return Ok(Self { _ebpf: ebpf });
        }
        attach_all(&mut ebpf, &FLOOR[..3])?;
        let btf = aya::Btf::parse_file(btf_path, aya::Endianness::default()).map_err(|source| {
            SensorError::KernelBtf {
                path: btf_path.to_path_buf(),
                source,
            }
        })?;
        let name = "floor_btf_sys_exit";
        let prog: &mut aya::programs::BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(SensorError::MissingProgram { name })?
            .try_into()
            .map_err(|source| SensorError::Program { name, source })?;
        prog.load("sys_exit", &btf)
            .map_err(|source| SensorError::Program { name, source })?;
        prog.attach()
            .map_err(|source| SensorError::Program { name, source })?;
        Ok(Self { _ebpf: ebpf })
    }
}
