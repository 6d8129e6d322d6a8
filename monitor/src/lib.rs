//! The agent as a library: the binary (`main.rs`) parses the command line and calls into it;
//! the benchmarks use it like any crate. The stages, in the order an event takes them:
//! [`sensor`] (kernel programs, ring buffer, decode) -> [`process`] (process table,
//! containers: enrichment) -> [`policy`] (profiles, detections, enforcement; built on
//! [`rules`] and [`resolve`]) -> [`alert`] -> [`output`] (local files, formats, [`ocsf`]) and
//! [`deliver`] (network sinks with their spools). [`agent`] wires them; [`learn`] builds
//! profiles from what the agent saw.

pub mod agent;
pub mod alert;
pub mod cli;
pub mod clock;
pub mod deliver;
pub mod identity;
pub mod learn;
pub mod metrics;
pub mod ocsf;
pub mod output;
pub mod policy;
pub mod process;
pub mod record;
pub mod resolve;
pub mod rules;
pub mod sensor;
#[cfg(test)]
mod testutil;
