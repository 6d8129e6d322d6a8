//! The nameservers the C library resolver (and so every workload on the host) will query,
//! read from `/etc/resolv.conf`. DNS traffic to them is the baseline allowance.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Where the system resolver configuration lives.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Nameservers listed in `/etc/resolv.conf`, in file order.
///
/// Like the C library, a file that lists none (or is missing or unreadable) means the local
/// machine, `127.0.0.1`.
pub fn nameservers() -> Vec<IpAddr> {
    nameservers_from(Path::new(RESOLV_CONF))
}

/// [`nameservers`] for a given file.
fn nameservers_from(path: &Path) -> Vec<IpAddr> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "cannot read resolver config; assuming a local nameserver");
            String::new()
        }
    };
    let listed = parse_nameservers(&text);
    if listed.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    } else {
        listed
    }
}

/// The addresses of `nameserver` lines in resolv.conf text. Comments (`#`, `;`), other
/// keywords, an IPv6 zone suffix (`%eth0`) and malformed addresses are skipped or dropped.
fn parse_nameservers(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let addr = addr.split('%').next().unwrap_or_default();
        match addr.parse::<IpAddr>() {
            Ok(ip) if !out.contains(&ip) => out.push(ip),
            Ok(_) => {}
            Err(_) => tracing::debug!(line, "ignoring malformed nameserver line"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use super::{nameservers_from, parse_nameservers};

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parses_nameserver_lines_in_order() {
        let text = "\
# generated
search example.test
nameserver 192.0.2.53
options ndots:2 timeout:1
nameserver 2001:db8::53   # secondary
nameserver fe80::1%eth0
; nameserver 192.0.2.99
nameserver 192.0.2.53
nameserver not-an-ip
nameserver
";
        assert_eq!(
            parse_nameservers(text),
            ips(&["192.0.2.53", "2001:db8::53", "fe80::1"])
        );
    }

    #[test]
    fn missing_file_means_local_nameserver() {
        assert_eq!(
            nameservers_from(Path::new("/nonexistent/resolv.conf")),
            ips(&["127.0.0.1"])
        );
    }

    #[test]
    fn reads_the_system_file_without_panicking() {
        assert!(!super::nameservers().is_empty());
    }
}
