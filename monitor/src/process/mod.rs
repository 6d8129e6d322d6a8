//! Process stage: who did it, and where.
//!
//! - [`table`]: the process table, one owner keyed by (pid, start time), fed by fork/exec/exit
//!   events and seeded from `/proc`.
//! - [`container`]: container and Kubernetes pod identity parsed from cgroup paths.
//! - [`cgroup`]: maps the cgroup v2 id the kernel reports to its path (and so its identity).
//! - [`stage`]: the pipeline stage that owns the table and the resolver and enriches events.
//!
//! Strings that come from the kernel or from `/proc` (argv, paths) are arbitrary bytes; they are
//! turned into `String`s with [`escape_bytes`] (`crate::sensor::text`), never with a lossy
//! conversion, so that an attacker cannot hide bytes behind U+FFFD.

pub mod cgroup;
pub mod container;
mod info;
mod procfs;
pub mod runtime;
pub mod stage;
pub mod table;

pub use crate::sensor::text::escape_bytes;
