//! A profile's allowlists, compiled: the `allow:` block (with the baseline) and the `startup:`
//! block have the same keys and the same form.
//!
//! Path lists hold exact paths, globs and exclusions: an entry starting with `!` takes what it
//! matches out of the list's wildcard entries (the baseline's included), while paths listed
//! exactly stay allowed. Learned profiles use exclusions to keep their globs off credential
//! files (`!**/.env`).

use std::net::IpAddr;

use marked_yaml::Spanned;

use super::kernel_paths::{KernelPaths, Uncompiled};
use super::load::Sink;
pub(crate) use super::path_list::{BASELINE_READ, BASELINE_WRITE, PathList, is_glob};
use super::pattern::{CidrTable, canonical_ip, is_dns_name, line_of, parse_net};
use super::schema::Allow;

/// One block of allowlists (`allow:` or `startup:`), compiled.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllowLists {
    pub exec: PathList,
    pub read: PathList,
    pub write: PathList,
    nets: CidrTable,
    /// DNS names with an optional port.
    hosts: Vec<(String, Option<u16>)>,
    listen: Vec<u16>,
    /// `None`: unix-socket connects are not checked.
    pub unix: Option<PathList>,
}

fn items(l: &Option<Vec<Spanned<String>>>) -> &[Spanned<String>] {
    l.as_deref().unwrap_or(&[])
}

impl AllowLists {
    /// Compiles a block written under `block` (`allow` or `startup`); with `baseline`, the
    /// baseline's reads and writes are part of it.
    pub fn compile(allow: &Allow, block: &str, baseline: bool, sink: &mut Sink<'_>) -> Self {
        let (base_read, base_write): (&[&str], &[&str]) = if baseline {
            (BASELINE_READ, BASELINE_WRITE)
        } else {
            (&[], &[])
        };
        let read = PathList::compile(
            items(&allow.read),
            &format!("{block}.read"),
            base_read,
            true,
            sink,
        );
        let write = PathList::compile(
            items(&allow.write),
            &format!("{block}.write"),
            base_write,
            true,
            sink,
        );
        let exec = PathList::compile(
            items(&allow.exec),
            &format!("{block}.exec"),
            &[],
            false,
            sink,
        );
        let unix = allow
            .unix
            .as_ref()
            .map(|l| PathList::compile(l, &format!("{block}.unix"), &[], false, sink));
        let mut nets = CidrTable::default();
        let mut hosts = Vec::new();
        for (i, entry) in allow.connect.iter().flatten().enumerate() {
            let key = format!("{block}.connect[{i}]");
            match (&entry.host, &entry.cidr) {
                (Some(h), None) => {
                    if let Ok(ip) = h.parse::<IpAddr>() {
                        nets.push(canonical_ip(ip).into(), entry.port);
                    } else if is_dns_name(h) {
                        hosts.push((h.trim_end_matches('.').to_ascii_lowercase(), entry.port));
                    } else {
                        sink.error(
                            line_of(h),
                            &format!("{key}.host"),
                            format!(
                                "invalid host {:?}: expected a DNS name or an IP address",
                                h.as_str()
                            ),
                        );
                    }
                }
                (None, Some(c)) => match parse_net(c) {
                    Ok(net) => nets.push(net, entry.port),
                    Err(e) => sink.error(line_of(c), &format!("{key}.cidr"), e),
                },
                (Some(_), Some(_)) | (None, None) => sink.error(
                    line_of(entry),
                    &key,
                    "give exactly one of `host` or `cidr` (and optionally `port`)",
                ),
            }
        }
        let listen = allow.listen.iter().flatten().map(|l| l.port).collect();
        Self {
            exec,
            read,
            write,
            nets,
            hosts,
            listen,
            unix,
        }
    }

    /// The DNS names of `connect` entries.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|(h, _)| h.as_str())
    }

    /// Whether a connect or send to `ip` (canonical) port `port` is allowed: by a CIDR entry,
    /// or by a host entry whose name the agent resolved to `ip` or the workload itself
    /// resolved to `ip` (`resolved(name)`).
    pub fn connect(
        &self,
        ip: IpAddr,
        port: Option<u16>,
        agent_addrs: &dyn Fn(&str) -> Vec<IpAddr>,
        resolved: &dyn Fn(&str) -> bool,
    ) -> bool {
        self.nets.contains(ip, port)
            || self.hosts.iter().any(|(h, p)| {
                (p.is_none() || *p == port)
                    && (resolved(h) || agent_addrs(h).into_iter().any(|a| canonical_ip(a) == ip))
            })
    }

    pub fn listen(&self, port: u16) -> bool {
        self.listen.contains(&port)
    }

    /// This block's path lists as the kernel enforces them.
    pub fn kernel_files(&self, uncompiled: &mut Vec<Uncompiled>) -> KernelFiles {
        KernelFiles {
            exec: KernelPaths::compile(&self.exec, false, true, uncompiled),
            read: KernelPaths::compile(&self.read, true, false, uncompiled),
            write: KernelPaths::compile(&self.write, true, false, uncompiled),
        }
    }

    /// Adds what the kernel enforces of this block's network lists to `out`.
    pub fn kernel_net(&self, out: &mut KernelNet) {
        out.nets.extend(self.nets.mapped_entries());
        out.hosts.extend(self.hosts.iter().cloned());
        out.listen.extend(&self.listen);
    }
}

/// A profile's path lists in the form the kernel enforces them.
#[derive(Clone, Debug, Default)]
pub struct KernelFiles {
    pub exec: KernelPaths,
    pub read: KernelPaths,
    pub write: KernelPaths,
}

impl KernelFiles {
    pub fn extend(&mut self, other: &KernelFiles) {
        self.exec.extend(&other.exec);
        self.read.extend(&other.read);
        self.write.extend(&other.write);
    }
}

/// A profile's network allowlists in the form the kernel enforces them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelNet {
    /// (network address, IPv6 or IPv4-mapped; prefix length over 128 bits; port, `None` for
    /// any).
    pub nets: Vec<([u8; 16], u8, Option<u16>)>,
    /// Host names (lower case) with their port: their addresses are added as the agent and
    /// the workload resolve them.
    pub hosts: Vec<(String, Option<u16>)>,
    /// Ports it may bind.
    pub listen: Vec<u16>,
}
