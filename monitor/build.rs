//! Builds the kernel programs (`monitor-ebpf`) for the BPF target with the nightly toolchain and
//! bpf-linker, and places the object in OUT_DIR for `include_bytes_aligned!`.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    aya_build::build_ebpf(
        [Package {
            name: "monitor-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf"),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
