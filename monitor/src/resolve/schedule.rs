//! Refresh timing: when to ask again after an answer or a failure. Pure functions, so the
//! policy is tested without a clock.

use std::time::Duration;

/// Shortest refresh interval: records with a smaller TTL are not re-queried faster than this.
pub const MIN_TTL: Duration = Duration::from_secs(5);
/// Longest refresh interval: even a day-long TTL is re-checked hourly.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Refresh interval for answers that carry no TTL (the hosts file, getaddrinfo).
pub const UNTIMED_TTL: Duration = Duration::from_secs(60);
/// First retry delay after a failed resolution.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Largest retry delay while failures continue.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A record TTL bounded to `[MIN_TTL, MAX_TTL]`.
pub fn clamp_ttl(ttl: Duration) -> Duration {
    ttl.clamp(MIN_TTL, MAX_TTL)
}

/// Delay before the next resolution of a host.
///
/// `failures` is the length of the current failure streak: 0 after a successful answer
/// (the delay is then the answer's TTL, clamped), otherwise the delay doubles from
/// [`BACKOFF_START`] with each consecutive failure, up to [`BACKOFF_MAX`]; `ttl` is then ignored.
pub fn next_refresh(ttl: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return clamp_ttl(ttl);
    }
    // 2^(failures - 1), saturating well before overflow: 2^6 s already exceeds the cap.
    let doublings = (failures - 1).min(16);
    BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BACKOFF_MAX, MAX_TTL, MIN_TTL, next_refresh};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn success_refreshes_at_the_ttl() {
        assert_eq!(next_refresh(secs(30), 0), secs(30));
        assert_eq!(next_refresh(secs(300), 0), secs(300));
    }

    #[test]
    fn ttl_is_clamped_to_bounds() {
        assert_eq!(next_refresh(Duration::ZERO, 0), MIN_TTL);
        assert_eq!(next_refresh(secs(1), 0), MIN_TTL);
        assert_eq!(next_refresh(secs(86_400), 0), MAX_TTL);
        assert_eq!(next_refresh(MIN_TTL, 0), MIN_TTL);
        assert_eq!(next_refresh(MAX_TTL, 0), MAX_TTL);
    }

    #[test]
    fn failures_back_off_exponentially_to_the_cap() {
        let delays: Vec<Duration> = (1..=8).map(|n| next_refresh(secs(300), n)).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 60, 60].map(secs),
            "backoff ignores the TTL and doubles from 1 s up to 60 s"
        );
    }

    #[test]
    fn long_failure_streaks_do_not_overflow() {
        assert_eq!(next_refresh(secs(300), u32::MAX), BACKOFF_MAX);
    }
}
