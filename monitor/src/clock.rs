//! The clocks: the kernel stamps events with boot time (`CLOCK_BOOTTIME`, which counts
//! suspend); records carry wall-clock time (RFC 3339 UTC with nanoseconds), converted with an
//! offset sampled again before each batch.

/// Converts kernel boot-time nanoseconds to RFC 3339 wall-clock time. The offset between the
/// clocks changes when the wall clock is stepped or slewed (NTP), so the reader samples it
/// again before each batch: event times follow the wall clock as the agent's own lines do.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME - CLOCK_BOOTTIME, ns, at the last sample.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    pub fn new() -> Self {
        let mut c = Self { offset_ns: 0 };
        c.resample();
        c
    }

    /// Samples the offset again: the wall clock read between two boot-clock reads, against
    /// their midpoint (two vDSO calls each, tens of nanoseconds).
    pub fn resample(&mut self) {
        let before = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        let after = clock_ns(libc::CLOCK_BOOTTIME);
        self.offset_ns = real - (before + after) / 2;
    }

    /// Wall-clock ns since the epoch for a boot-time stamp.
    pub fn wall_ns(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 + self.offset_ns
    }

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339_ns(self.wall_ns(boot_ns))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Boot-time nanoseconds now: the clock of the kernel's event timestamps.
pub fn boot_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
}

/// The wall-clock time now, RFC 3339 with nanoseconds (for lines the agent itself writes).
pub fn now_rfc3339() -> String {
    rfc3339_ns(clock_ns(libc::CLOCK_REALTIME))
}

/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-25T21:00:00.123456789Z`.
pub fn rfc3339_ns(wall_ns: i128) -> String {
    let secs = wall_ns.div_euclid(1_000_000_000) as i64;
    let nanos = wall_ns.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000000000Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ns;

    #[test]
    fn formats_nanoseconds() {
        assert_eq!(
            rfc3339_ns(1_000_000_000 * 86_400 + 5),
            "1970-01-02T00:00:00.000000005Z"
        );
    }
}
