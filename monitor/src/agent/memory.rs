//! The agent's own resident memory, for `agent_stats` (procfs: /proc/self/status).

/// Resident memory now and at its peak, in bytes.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Memory {
    /// `VmRSS`.
    pub rss_bytes: u64,
    /// `VmHWM`: the largest resident size since start.
    pub peak_rss_bytes: u64,
}

impl Memory {
    /// This process's, or `None` when /proc cannot be read.
    pub fn of_self() -> Option<Self> {
        let status = procfs::process::Process::myself().ok()?.status().ok()?;
        Some(Self {
            rss_bytes: status.vmrss? * 1024,
            peak_rss_bytes: status.vmhwm? * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_resident_memory_below_its_peak() {
        let m = super::Memory::of_self().expect("/proc/self/status");
        assert!(m.rss_bytes > 0 && m.rss_bytes <= m.peak_rss_bytes, "{m:?}");
    }
}
