//! Makes cargo rebuild the kernel object when bpf-linker changes.
fn main() {
    let linker = which::which("bpf-linker").expect("bpf-linker not found: run `cargo xtask build`");
    println!("cargo:rerun-if-changed={}", linker.display());
}
