//! Matchers compiled once at load time: path globs (with `~/` expansion), CIDR tables, and the
//! `/proc/<own pid>/...` to `/proc/self/...` rewriting applied to event paths before matching.

use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use marked_yaml::Spanned;

use super::load::Sink;

/// Home directories a leading `~/` stands for.
const HOMES: [&str; 2] = ["/root/", "/home/*/"];

/// The patterns a written pattern stands for: `~/x` is `/root/x` and `/home/*/x`.
pub(crate) fn expand_home(pattern: &str) -> Vec<String> {
    match pattern.strip_prefix("~/") {
        Some(rest) => HOMES.iter().map(|h| format!("{h}{rest}")).collect(),
        None => vec![pattern.to_owned()],
    }
}

/// The characters that make a path pattern a glob (a backslash escapes the one after it).
pub(crate) const GLOB_CHARS: [char; 5] = ['*', '?', '[', '{', '\\'];

/// The literal start of a path pattern: everything before its first [`GLOB_CHARS`] character.
pub(crate) fn literal_start(pattern: &str) -> &str {
    pattern.find(GLOB_CHARS).map_or(pattern, |i| &pattern[..i])
}

/// A path glob as rules mean it: `*`, `?` and classes stay within a component, `**` crosses.
pub(crate) fn path_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// Line of a spanned value, if the loader recorded one.
pub(crate) fn line_of<T>(s: &Spanned<T>) -> Option<usize> {
    s.span().start().map(|m| m.line())
}

/// Adds a written pattern (after `~/` expansion) to `builder`; a bad glob is reported to `sink`
/// under `key` and skipped.
pub(crate) fn add_glob(
    builder: &mut GlobSetBuilder,
    pattern: &Spanned<String>,
    key: &str,
    sink: &mut Sink<'_>,
) {
    for p in expand_home(pattern) {
        match path_glob(&p) {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => {
                sink.error(
                    line_of(pattern),
                    key,
                    format!("invalid glob {:?}: {}", pattern.as_str(), e.kind()),
                );
                return;
            }
        }
    }
}

/// Compiles a list of written patterns into one set; errors go to `sink` keyed `key[i]`.
pub(crate) fn glob_set(patterns: &[Spanned<String>], key: &str, sink: &mut Sink<'_>) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        add_glob(&mut b, p, &format!("{key}[{i}]"), sink);
    }
    build_set(b, key, sink)
}

/// Builds a set whose individual globs all compiled. Combining them fails only past the regex
/// size limit; that is reported under `key` and the set matches nothing.
pub(crate) fn build_set(b: GlobSetBuilder, key: &str, sink: &mut Sink<'_>) -> GlobSet {
    b.build().unwrap_or_else(|e| {
        sink.error(
            None,
            key,
            format!("the patterns do not compile together ({e}): split or simplify them"),
        );
        GlobSet::empty()
    })
}

/// The form an event path is matched in: a process's own `/proc/<pid>/...`,
/// `/proc/<pid>/task/<tid>/...`, `/proc/thread-self/...` (and `/proc/self/task/<tid>/...`) become
/// `/proc/self/...`. Allocates only when it rewrites.
pub(crate) fn proc_self_path(path: &str, pid: u32, tid: u32) -> Cow<'_, str> {
    let Some(rest) = path.strip_prefix("/proc/") else {
        return Cow::Borrowed(path);
    };
    let (seg, tail) = split_segment(rest);
    let own = match seg {
        "self" | "thread-self" => true,
        _ => parse_pid(seg).is_some_and(|n| n == pid || n == tid),
    };
    if !own {
        return Cow::Borrowed(path);
    }
    let tail = strip_task(tail).unwrap_or(tail);
    if seg == "self" && tail.len() == rest.len() - seg.len() {
        return Cow::Borrowed(path);
    }
    Cow::Owned(format!("/proc/self{tail}"))
}

/// For `/proc/<N>/NAME...` or `/proc/<N>/task/<T>/NAME...` where N is not the event's own
/// process or thread: NAME.
pub(crate) fn proc_other_entry(path: &str, pid: u32, tid: u32) -> Option<&str> {
    let rest = path.strip_prefix("/proc/")?;
    let (seg, tail) = split_segment(rest);
    let n = parse_pid(seg)?;
    if n == pid || n == tid {
        return None;
    }
    let tail = strip_task(tail).unwrap_or(tail);
    let (name, _) = split_segment(tail.strip_prefix('/')?);
    (!name.is_empty()).then_some(name)
}

/// `("a", "/b/c")` from `"a/b/c"`.
fn split_segment(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => s.split_at(i),
        None => (s, ""),
    }
}

/// `"/x"` from `"/task/<tid>/x"`.
fn strip_task(tail: &str) -> Option<&str> {
    let rest = tail.strip_prefix("/task/")?;
    let (tid, after) = split_segment(rest);
    parse_pid(tid).map(|_| after)
}

fn parse_pid(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Canonical form of an address for matching: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Parses `a.b.c.d/n`, `x::/n`, or a bare address (a /32 or /128).
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        IpNet::from_str(s)
            .map(|n| n.trunc())
            .map_err(|_| format!("invalid CIDR {s:?}: expected ADDRESS/PREFIX, e.g. 10.0.0.0/8"))
    } else {
        IpAddr::from_str(s)
            .map(|ip| IpNet::from(canonical_ip(ip)))
            .map_err(|_| format!("invalid IP address or CIDR {s:?}"))
    }
}

/// Networks, each with an optional port; IPv4 and IPv6 kept apart as integer ranges.
#[derive(Clone, Debug, Default)]
pub(crate) struct CidrTable {
    v4: Vec<(u32, u32, Option<u16>)>,
    v6: Vec<(u128, u128, Option<u16>)>,
}

impl CidrTable {
    pub fn push(&mut self, net: IpNet, port: Option<u16>) {
        match net {
            IpNet::V4(n) => self
                .v4
                .push((u32::from(n.network()), u32::from(n.netmask()), port)),
            IpNet::V6(n) => self
                .v6
                .push((u128::from(n.network()), u128::from(n.netmask()), port)),
        }
    }

    /// Every entry as (network address, IPv6 or IPv4-mapped; prefix length over those 128
    /// bits; port), the form the kernel's allowlist takes.
    pub fn mapped_entries(&self) -> impl Iterator<Item = ([u8; 16], u8, Option<u16>)> + '_ {
        let v4 = self.v4.iter().map(|&(net, mask, port)| {
            let addr = std::net::Ipv4Addr::from(net).to_ipv6_mapped().octets();
            (addr, 96 + mask.count_ones() as u8, port)
        });
        let v6 = self
            .v6
            .iter()
            .map(|&(net, mask, port)| (net.to_be_bytes(), mask.count_ones() as u8, port));
        v4.chain(v6)
    }

    /// Whether `ip` (canonical) lies in an entry whose port is absent or equals `port`.
    pub fn contains(&self, ip: IpAddr, port: Option<u16>) -> bool {
        let port_ok = |p: &Option<u16>| p.is_none() || *p == port;
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .any(|(net, mask, p)| a & mask == *net && port_ok(p))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .any(|(net, mask, p)| a & mask == *net && port_ok(p))
            }
        }
    }
}

/// Whether `s` is a plausible DNS name (letters, digits, `-`, `_`, dots; labels of 1..=63).
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether `s` is a rule name: `[a-z0-9][a-z0-9._-]*`.
pub(crate) fn is_rule_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Whether `s` is an ATT&CK technique id: `T1234` or `T1234.567`.
pub(crate) fn is_mitre_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('T') else {
        return false;
    };
    let (main, sub) = match rest.split_once('.') {
        Some((m, s)) => (m, Some(s)),
        None => (rest, None),
    };
    let digits = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_digit());
    digits(main, 4) && sub.is_none_or(|s| digits(s, 3))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use marked_yaml::{Span, Spanned};

    use super::{
        CidrTable, canonical_ip, expand_home, glob_set, is_dns_name, is_mitre_id, is_rule_name,
        parse_net, proc_other_entry, proc_self_path,
    };
    use crate::rules::load::Sink;

    fn set(patterns: &[&str]) -> globset::GlobSet {
        let mut errors = Vec::new();
        let items: Vec<Spanned<String>> = patterns
            .iter()
            .map(|p| Spanned::new(Span::new_blank(), (*p).to_owned()))
            .collect();
        let s = glob_set(
            &items,
            "k",
            &mut Sink {
                file: Path::new("t.yaml"),
                errors: &mut errors,
            },
        );
        assert!(errors.is_empty(), "{errors:?}");
        s
    }

    #[test]
    fn star_stays_in_a_segment_and_double_star_crosses() {
        let s = set(&["/etc/*.conf"]);
        assert!(s.is_match("/etc/host.conf"));
        assert!(!s.is_match("/etc/ssl/openssl.conf"));
        let s = set(&["/etc/**/*.conf"]);
        assert!(s.is_match("/etc/ssl/openssl.conf"));
        assert!(s.is_match("/etc/host.conf"));
        let s = set(&["/var/lib/app/**"]);
        assert!(s.is_match("/var/lib/app/a/b/c"));
        assert!(!s.is_match("/var/lib/application"));
        let s = set(&["/tmp/?.sh", "/dev/[ab]x"]);
        assert!(s.is_match("/tmp/a.sh") && !s.is_match("/tmp/ab.sh"));
        assert!(s.is_match("/dev/ax") && !s.is_match("/dev/cx"));
    }

    #[test]
    fn home_expansion_covers_root_and_every_home() {
        assert_eq!(
            expand_home("~/.ssh/**"),
            vec!["/root/.ssh/**", "/home/*/.ssh/**"]
        );
        assert_eq!(expand_home("/etc/~/x"), vec!["/etc/~/x"]);
        let s = set(&["~/.aws/credentials"]);
        assert!(s.is_match("/root/.aws/credentials"));
        assert!(s.is_match("/home/alice/.aws/credentials"));
        assert!(!s.is_match("/home/alice/x/.aws/credentials"));
        assert!(!s.is_match("/srv/.aws/credentials"));
    }

    #[test]
    fn own_proc_paths_become_proc_self() {
        let r = |p: &str| proc_self_path(p, 812, 815).into_owned();
        assert_eq!(r("/proc/812/maps"), "/proc/self/maps");
        assert_eq!(r("/proc/812/task/815/comm"), "/proc/self/comm");
        assert_eq!(r("/proc/812/task/820/stat"), "/proc/self/stat");
        assert_eq!(r("/proc/815/status"), "/proc/self/status");
        assert_eq!(
            r("/proc/thread-self/attr/current"),
            "/proc/self/attr/current"
        );
        assert_eq!(r("/proc/self/task/815/status"), "/proc/self/status");
        assert_eq!(r("/proc/812"), "/proc/self");
        assert_eq!(r("/proc/self/fd/3"), "/proc/self/fd/3");
        assert!(matches!(
            proc_self_path("/proc/self/fd/3", 812, 815),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(r("/proc/9999/environ"), "/proc/9999/environ");
        assert_eq!(r("/proc/8120/maps"), "/proc/8120/maps");
        assert_eq!(r("/proc/cpuinfo"), "/proc/cpuinfo");
        assert_eq!(r("/etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn other_process_proc_entries() {
        assert_eq!(
            proc_other_entry("/proc/1/environ", 812, 812),
            Some("environ")
        );
        assert_eq!(
            proc_other_entry("/proc/1/task/7/mem", 812, 812),
            Some("mem")
        );
        assert_eq!(proc_other_entry("/proc/812/environ", 812, 812), None);
        assert_eq!(proc_other_entry("/proc/self/environ", 812, 812), None);
        assert_eq!(proc_other_entry("/proc/1", 812, 812), None);
        assert_eq!(proc_other_entry("/proc/meminfo", 812, 812), None);
    }

    #[test]
    fn cidr_tables_match_v4_v6_mapped_and_ports() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let mut t = CidrTable::default();
        t.push(parse_net("10.0.0.0/8").expect("net"), Some(5432));
        t.push(parse_net("192.168.1.7").expect("host"), None);
        t.push(parse_net("2001:db8::/32").expect("v6"), Some(443));
        assert!(t.contains(ip("10.1.2.3"), Some(5432)));
        assert!(!t.contains(ip("10.1.2.3"), Some(5433)));
        assert!(!t.contains(ip("11.1.2.3"), Some(5432)));
        assert!(t.contains(ip("192.168.1.7"), Some(1)));
        assert!(!t.contains(ip("192.168.1.8"), Some(1)));
        assert!(t.contains(ip("2001:db8::1"), Some(443)));
        assert!(!t.contains(ip("2001:db9::1"), Some(443)));
        assert!(t.contains(canonical_ip(ip("::ffff:10.0.0.1")), Some(5432)));
        assert_eq!(
            parse_net("10.1.2.3/8").expect("truncated").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_net("::1").expect("v6 host").to_string(), "::1/128");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }

    #[test]
    fn names_ids_and_hosts() {
        assert!(is_rule_name("litellm-proxy") && is_rule_name("a.b_c-1") && is_rule_name("9x"));
        assert!(
            !is_rule_name("")
                && !is_rule_name("-x")
                && !is_rule_name("Upper")
                && !is_rule_name("a b")
        );
        assert!(is_mitre_id("T1059") && is_mitre_id("T1552.001"));
        assert!(
            !is_mitre_id("T105")
                && !is_mitre_id("T1552.01")
                && !is_mitre_id("TA0001")
                && !is_mitre_id("t1059")
        );
        assert!(
            is_dns_name("api.openai.com") && is_dns_name("localhost") && is_dns_name("x.example.")
        );
        assert!(
            !is_dns_name("bad host")
                && !is_dns_name("-a.com")
                && !is_dns_name("a..b")
                && !is_dns_name("")
        );
    }
}
