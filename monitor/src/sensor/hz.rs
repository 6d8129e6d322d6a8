//! The kernel's tick rate (CONFIG_HZ), so time windows can be handed to the kernel programs in
//! jiffies (`bpf_jiffies64` is far cheaper than `bpf_ktime_get_*_ns` on the hot path).

use std::{
    io::Read as _,
    time::{Duration, Instant},
};

/// Common CONFIG_HZ values; a measurement is rounded to the nearest.
const KNOWN_HZ: [u64; 5] = [100, 250, 300, 500, 1000];
/// Used when neither the kernel config nor a measurement is available.
const FALLBACK_HZ: u64 = 250;

/// CONFIG_HZ from /proc/config.gz, else measured from /proc/timer_list, else 250.
pub fn kernel_hz() -> u64 {
    if let Some(hz) = from_config() {
        return hz;
    }
    if let Some(hz) = measure() {
        return hz;
    }
    tracing::warn!(
        "could not tell the kernel's HZ; assuming {FALLBACK_HZ} (dedupe windows may be off)"
    );
    FALLBACK_HZ
}

/// Converts a window to jiffies, rounding up (a non-zero window never becomes zero).
pub fn duration_to_jiffies(d: Duration, hz: u64) -> u64 {
    let ns = d.as_nanos();
    if ns == 0 {
        return 0;
    }
    (ns * hz as u128)
        .div_ceil(1_000_000_000)
        .try_into()
        .unwrap_or(u64::MAX)
}

fn from_config() -> Option<u64> {
    let file = std::fs::File::open("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .ok()?;
    parse_config_hz(&text)
}

/// `CONFIG_HZ=250` from a kernel config.
pub fn parse_config_hz(config: &str) -> Option<u64> {
    config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ=")?.trim().parse().ok())
}

fn timer_list_jiffies() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/timer_list").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("jiffies:")?.trim().parse().ok())
}

/// Counts jiffies over ~100 ms and rounds to a known HZ.
fn measure() -> Option<u64> {
    let (j0, t0) = (timer_list_jiffies()?, Instant::now());
    std::thread::sleep(Duration::from_millis(100));
    let (j1, t1) = (timer_list_jiffies()?, Instant::now());
    let rate = (j1.checked_sub(j0)? as f64) / (t1 - t0).as_secs_f64();
    KNOWN_HZ
        .into_iter()
        .min_by_key(|hz| (*hz as f64 - rate).abs() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{duration_to_jiffies, parse_config_hz};

    #[test]
    fn converts_windows() {
        assert_eq!(duration_to_jiffies(Duration::from_secs(1), 250), 250);
        assert_eq!(duration_to_jiffies(Duration::from_millis(1), 250), 1);
        assert_eq!(duration_to_jiffies(Duration::ZERO, 1000), 0);
    }

    #[test]
    fn parses_config() {
        assert_eq!(
            parse_config_hz("# x\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n"),
            Some(250)
        );
        assert_eq!(parse_config_hz("CONFIG_NO_HZ=y\n"), None);
    }
}
