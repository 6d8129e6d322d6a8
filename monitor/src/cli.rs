//! Command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    agent::control::DEFAULT_SOCKET,
    deliver::DEFAULT_SPOOL_DIR,
    output::{Format, OutputSpec, target::size_arg},
};

#[derive(Debug, Parser)]
#[command(
    name = "monitor",
    version,
    about = "eBPF behaviour monitor for AI inference servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the probes and watch the host.
    Run(RunArgs),
    /// Learn a workload's footprint and write it as a profile (through the running agent when
    /// there is one, else with a sensor of its own).
    Learn(LearnArgs),
    /// Work with rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Benchmark support: attach empty programs to the sensor's hooks and wait for a signal.
    #[command(hide = true)]
    Floor {
        /// Created once the empty programs are attached.
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Attach `sys_exit` as a BTF-typed tracepoint (`tp_btf`) instead of a raw one.
        #[arg(long)]
        tp_btf: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files (profiles, detections, overrides, Sigma rules and filters); prints every error with its file,
    /// line and key; exits non-zero when there is any.
    Check {
        /// Files or directories (every `*.yaml` below them).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Compare two versions of a profile: entries added and removed, list by list and phase by
    /// phase; exits 1 when they differ, 0 when they do not, 2 on errors.
    Diff {
        /// The profile as it was (a file with one profile, or a directory of rule files).
        #[arg(value_name = "OLD")]
        old: PathBuf,
        /// The profile as it is now.
        #[arg(value_name = "NEW")]
        new: PathBuf,
    },
}

/// What `monitor learn` follows: a loaded profile's selectors, or selectors given here (the
/// keys of a profile's `match:`; all given must hold; repeat an option for alternatives).
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Learn for this loaded profile (its selectors) and refine its file: what it allows is
    /// counted to its entries, what it does not allow is added (see --merge).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Resolved executable or the filename given to execve (glob).
    #[arg(long, value_name = "GLOB")]
    pub exe: Vec<String>,
    /// What an interpreter runs: a script (glob; without `/`: its file name) or `-m` module.
    #[arg(long, value_name = "GLOB")]
    pub program: Vec<String>,
    /// A substring of some argv element.
    #[arg(long, value_name = "TEXT")]
    pub argv_contains: Vec<String>,
    /// The parent's executable (glob).
    #[arg(long, value_name = "GLOB")]
    pub parent_exe: Vec<String>,
    /// Container id (glob).
    #[arg(long, value_name = "GLOB")]
    pub container_id: Vec<String>,
    /// Kubernetes pod uid (glob).
    #[arg(long, value_name = "GLOB")]
    pub pod_uid: Vec<String>,
    /// User id.
    #[arg(long, value_name = "UID")]
    pub uid: Vec<u32>,
    /// The container's image as the runtime names it (glob; `*` crosses `/`).
    #[arg(long, value_name = "GLOB")]
    pub image: Vec<String>,
    /// The container's name (Kubernetes container name under kubelet; glob).
    #[arg(long, value_name = "GLOB")]
    pub container_name: Vec<String>,
    /// The pod's Kubernetes namespace (glob).
    #[arg(long, value_name = "GLOB")]
    pub namespace: Vec<String>,
    /// Where to write the profile (checked before learning starts; written atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The profile's name (default: the --profile's, else `learned`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How long to learn, e.g. `90s`, `10m`, `1h` (default: until SIGINT or SIGTERM, which
    /// also end a window early; what was learned is written either way).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub duration: Option<std::time::Duration>,
    /// Learn into this existing profile: its entries stay first (those not seen are marked,
    /// never removed), what they do not cover is added.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// A directory with more distinct names used than this becomes `dir/**`.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub collapse_above: usize,
    /// The running agent's control socket.
    #[arg(long, default_value = crate::agent::control::DEFAULT_SOCKET, value_name = "PATH")]
    pub control_socket: PathBuf,
    /// Do not use a running agent: load a sensor of its own (no detection meanwhile).
    #[arg(long)]
    pub standalone: bool,
    /// Learn from a recording instead (`monitor run --events` JSON lines) instead of live.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["standalone", "duration"])]
    pub from_events: Option<PathBuf>,
    /// Rule files for --profile and for the credential detections learning keeps its globs
    /// off (standalone and --from-events; the agent uses its own). Default: the shipped rules.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Created once learning has started (scripts and tests wait for it).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Write every raw event (process, file, network), not only alerts, to every output
    /// (network sinks too, through their own spool, unless they set `?events=false`). Records
    /// file and network activity of every process, as `--watch-all` does.
    #[arg(long)]
    pub events: bool,
    /// Where to write. Repeatable. Local: `stdout` (default), `file:PATH` (appends; rotates by
    /// size: `?max_size=100M&max_files=5` are the defaults). Network sinks, which get alerts
    /// (and events with `--events` or `?events=true`) through the durable spool:
    /// `syslog+udp|tcp|tls://HOST:PORT`, `http(s)://URL` (webhook),
    /// `splunk+https://HOST:PORT?token_file=PATH` (HEC), `elasticsearch+https://HOST:PORT/INDEX`
    /// (bulk). Any output takes `?format=native|ocsf`; TLS ones `ca=`, `cert=`, `key=`.
    #[arg(long = "output", value_name = "SPEC")]
    pub outputs: Vec<OutputSpec>,
    /// Record format of outputs that do not set `?format=`: the agent's native JSON or OCSF
    /// 1.8.0 objects (alerts as Detection Findings, events as activities).
    #[arg(long, value_enum, default_value_t = Format::Native)]
    pub format: Format,
    /// Durable spool of the network outputs: every alert is written and synced here before
    /// any output gets it, and removed once every network sink acknowledged it; delivery
    /// resumes from it after a restart. Forwarded events go to its `events/` subdirectory.
    #[arg(long, default_value = DEFAULT_SPOOL_DIR, value_name = "DIR")]
    pub spool_dir: PathBuf,
    /// Bound on the alert spool's size on disk (bytes, or K, M, G); when full, the oldest
    /// undelivered alerts are dropped, counted, logged and reported in an alert.
    #[arg(long, default_value = "256M", value_parser = size_arg, value_name = "SIZE")]
    pub spool_max_bytes: u64,
    /// Bound on the forwarded-event spool's size on disk (bytes, or K, M, G).
    #[arg(long, default_value = "256M", value_parser = size_arg, value_name = "SIZE")]
    pub event_spool_max_bytes: u64,
    /// At shutdown, how long network sinks may take to deliver what is pending before the
    /// agent exits (the rest stays in the spool for the next start).
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub drain_timeout_secs: u64,
    /// Serve Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness
    /// (`/readyz`: probes attached, rules loaded, spool writable) on this address, e.g.
    /// `0.0.0.0:9464`. Bound at start: an address in use stops the agent.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Reload the rules when the files under `--rules` change (checked every 2 s; follows
    /// Kubernetes ConfigMap updates, which swap a symlink). SIGHUP reloads too.
    #[arg(long)]
    pub watch_rules: bool,
    /// Created once every probe is attached and the pipeline is running.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Rule files or directories (every `*.yaml` below them, recursively). Repeatable.
    /// Default: the shipped rules (/etc/monitor/rules, else the repository's `rules/`).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Record file and network activity of every process on the host (detections then apply
    /// host-wide), not only of processes under a workload profile (`--events` implies it).
    #[arg(long)]
    pub watch_all: bool,
    /// Identical alerts (same rule, process and target) within this many seconds are folded
    /// into the first and reported as an `alert_repeats` count; 0 disables folding.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub alert_fold_secs: u64,
    /// Kernel ring buffer size in bytes (power of two).
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_name = "BYTES")]
    pub ring_buffer_size: u32,
    /// Seconds between `agent_stats` lines (drop counters, throughput); 0 disables them
    /// (a final one is still written at shutdown).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub stats_interval: u64,
    /// Fold identical opens (same process, file and access mode) within this many ms into the
    /// first one reported; the next report after the window carries `repeats`. 0 reports every
    /// open. Default: 0 with `--events` (a line per action), else 1000.
    #[arg(long, value_name = "MS")]
    pub dedupe_window_ms: Option<u64>,
    /// Turn every `mode: enforce` profile into alert mode: nothing is blocked or killed, and
    /// their alerts say `action: would_block`.
    #[arg(long)]
    pub no_enforce: bool,
    /// The cgroup v2 mount the network hooks attach to (default: the one in /proc/self/mounts).
    #[arg(long, value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,
    /// Kernel BTF file (default /sys/kernel/btf/vmlinux), for kernels that do not publish it.
    #[arg(long, value_name = "PATH")]
    pub btf: Option<PathBuf>,
    /// A container runtime's API socket, asked for container names, images and pods:
    /// the Docker Engine API on a `docker.sock`, the CRI (containerd, CRI-O) on any other.
    /// Repeatable (asked in turn). Default: every one of /var/run/docker.sock (or
    /// /run/docker.sock), /run/containerd/containerd.sock, /var/run/crio/crio.sock that
    /// exists; `none` asks no runtime.
    #[arg(long, value_name = "PATH")]
    pub runtime_socket: Vec<PathBuf>,
    /// Most processes kept in the process table.
    #[arg(long, default_value_t = 65536, value_name = "N")]
    pub process_table_size: usize,
    /// Where `monitor learn` reaches this agent (a unix socket, root only).
    #[arg(long, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    pub control_socket: PathBuf,
    /// Open no control socket (`monitor learn` then runs a sensor of its own).
    #[arg(long)]
    pub no_control_socket: bool,
}

/// The shipped rules: /etc/monitor/rules when installed, else the repository's `rules/`.
pub fn default_rules() -> Vec<PathBuf> {
    let installed = PathBuf::from("/etc/monitor/rules");
    if installed.is_dir() {
        return vec![installed];
    }
    vec![PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rules"
    ))]
}

/// `90s`, `10m`, `1h`, `500ms`, or plain seconds.
pub fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 10m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?}: units are ms, s, m, h")),
    };
    match std::time::Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "invalid duration {s:?}: it must be positive and finite"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command};
    use crate::deliver::DEFAULT_MAX_BYTES;

    #[test]
    fn spool_size_defaults_match_the_spool_and_take_suffixes() {
        let Command::Run(args) = Cli::parse_from(["monitor", "run"]).command else {
            panic!("run")
        };
        assert_eq!(args.spool_max_bytes, DEFAULT_MAX_BYTES);
        assert_eq!(args.event_spool_max_bytes, DEFAULT_MAX_BYTES);
        let Command::Run(args) =
            Cli::parse_from(["monitor", "run", "--spool-max-bytes", "64K"]).command
        else {
            panic!("run")
        };
        assert_eq!(args.spool_max_bytes, 64 << 10);
    }
}
