//! The sensor stage: load the kernel programs, attach them, read and decode their records.
//!
//! `load` resolves kernel struct offsets from the running kernel's BTF, loads the object with
//! them as globals and attaches the hooks; `reader` drains the ring buffer into decoded
//! [`Event`]s; `decode` turns raw records into events, one file per probe family.

pub mod btf;
mod cgroup_hooks;
pub mod decode;
pub mod drops;
pub mod enforce;
pub mod error;
pub mod event;
pub mod features;
pub mod hz;
pub mod load;
mod lsm;
pub mod offsets;
mod program;
pub mod reader;
pub mod text;
pub mod watch;

pub use event::{Event, EventBody};
pub use load::{Sensor, SensorConfig};
