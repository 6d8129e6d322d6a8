//! Builds the kernel programs (`monitor-ebpf`) for the BPF target with the nightly toolchain and
//! bpf-linker, twice: `OUT_DIR/monitor` for kernels with `bpf_loop` (5.17 and later) and
//! `OUT_DIR/bounded/monitor` with the `bounded-loops` feature for older ones. Both are placed for
//! `include_bytes_aligned!`; the agent probes the kernel and loads one.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = std::env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?;
    build(&[])?;
    // aya-build writes to $OUT_DIR (its output and its own target directory): point it at a
    // subdirectory for the second variant, so the two builds neither collide nor rebuild
    // each other.
    let bounded = std::path::Path::new(&out_dir).join("bounded");
    std::fs::create_dir_all(&bounded)?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var("OUT_DIR", &bounded) };
    let built = build(&["bounded-loops"]);
    // SAFETY: as above.
    unsafe { std::env::set_var("OUT_DIR", &out_dir) };
    built
}

fn build(features: &[&str]) -> anyhow::Result<()> {
    aya_build::build_ebpf(
        [Package {
            name: "monitor-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf"),
            features,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
