//! The small commands: `monitor rules check` and the benchmark floor.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio::signal::unix::SignalKind;

use crate::rules::RuleSet;

/// `monitor rules check PATH...`.
pub fn rules_check(paths: &[PathBuf]) -> anyhow::Result<()> {
    let rules = match RuleSet::load(paths) {
        Ok(r) => r,
        Err(e) => {
            // One `FILE:LINE: key `KEY`: message` per line, nothing in front.
            eprintln!("{e}");
            anyhow::bail!("{} error(s) in the rules", e.errors.len());
        }
    };
    // What the kernel cannot enforce as written: warnings, not errors (user space still
    // alerts on it).
    for w in rules.enforcement_warnings() {
        eprintln!("warning: {w}");
    }
    println!(
        "rules OK: {} profiles, {} detections, {} Sigma rules",
        rules.profile_count(),
        rules.detection_count(),
        rules.sigma_count()
    );
    Ok(())
}

/// `monitor floor`: empty programs on the same hooks, until SIGINT/SIGTERM (benchmark floor).
pub fn floor(ready_file: Option<PathBuf>, tp_btf: bool) -> anyhow::Result<()> {
    let btf = std::path::Path::new(crate::sensor::load::KERNEL_BTF);
    let _floor = crate::sensor::load::Floor::load(tp_btf, btf)?;
    if let Some(path) = &ready_file {
        std::fs::write(path, b"ready\n")
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
        let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        Ok(())
    })
}
