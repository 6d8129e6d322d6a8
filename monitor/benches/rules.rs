//! Rules engine benchmark (placeholder until written).
fn main() {}
