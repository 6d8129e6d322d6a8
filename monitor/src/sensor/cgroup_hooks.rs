//! The sensor's cgroup v2 hooks: the DNS hooks (which also judge an enforced process's
//! connects and sends) and the bind hooks of enforcement, attached to the cgroup v2 root.

use std::path::Path;

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, ProgramError},
};
use monitor_common::config::names;

use super::enforce::Enforcer;
use super::error::{SensorError, typed_map};
use super::program::loaded;

/// The DNS hooks: (program name, sock_addr or skb) on the cgroup v2 root.
const DNS_SOCK_ADDR: [&str; 4] = [
    names::PROG_DNS_CONNECT4,
    names::PROG_DNS_CONNECT6,
    names::PROG_DNS_SENDMSG4,
    names::PROG_DNS_SENDMSG6,
];

/// Attaches the enforcement hooks (the DNS hooks, which also judge connects and sends, and
/// the bind hooks) to the cgroup v2 root `root` and takes the maps user space fills.
pub(super) fn load_enforcement(
    ebpf: &mut Ebpf,
    root: Option<&Path>,
) -> Result<Enforcer, SensorError> {
    let root = match root {
        Some(root) if is_cgroup2(root) => root,
        other => {
            return Err(SensorError::NoCgroupForEnforce(
                other.map(Path::to_path_buf),
            ));
        }
    };
    attach_dns(ebpf, root)
        .and_then(|()| attach_sock_addr(ebpf, root, &ENFORCE_SOCK_ADDR))
        .map_err(|e| SensorError::EnforceHooks(Box::new(e)))?;
    Ok(Enforcer::new(
        typed_map(ebpf, names::ENFORCED)?,
        typed_map(ebpf, names::POLICY_SLOT)?,
        typed_map(ebpf, names::SERVING_POLICY)?,
        typed_map(ebpf, names::NET_ALLOW)?,
        typed_map(ebpf, names::LISTEN_ALLOW)?,
        typed_map(ebpf, names::PATH_RULES)?,
    ))
}

/// The bind hooks of enforcement (the connect and send hooks are the DNS ones).
const ENFORCE_SOCK_ADDR: [&str; 2] = [names::PROG_BIND4, names::PROG_BIND6];

/// Whether `path` is the root of a cgroup v2 filesystem (it has `cgroup.controllers`).
fn is_cgroup2(path: &Path) -> bool {
    path.join("cgroup.controllers").is_file()
}

fn open_cgroup(root: &Path) -> Result<std::fs::File, SensorError> {
    std::fs::File::open(root).map_err(|source| SensorError::CgroupRoot {
        path: root.to_path_buf(),
        source,
    })
}

/// Loads and attaches `sock_addr` programs to the cgroup v2 root `root`, beside any other
/// programs attached there: aya attaches through `bpf_link_create` (Linux >= 5.7), whose cgroup
/// links always coexist and take no attach flags, so the mode passed is the flag-less `Single`.
fn attach_sock_addr(
    ebpf: &mut Ebpf,
    root: &Path,
    progs: &[&'static str],
) -> Result<(), SensorError> {
    let cgroup = open_cgroup(root)?;
    for &name in progs {
        let prog: &mut CgroupSockAddr = loaded(ebpf, name)?;
        prog.attach(&cgroup, CgroupAttachMode::Single)
            .map_err(attach_error(name, root))?;
    }
    Ok(())
}

fn attach_error(name: &'static str, root: &Path) -> impl Fn(ProgramError) -> SensorError {
    let path = root.to_path_buf();
    move |source| SensorError::AttachCgroup {
        name,
        path: path.clone(),
        source,
    }
}

/// Loads and attaches the DNS hooks (which also enforce connects and sends) to the cgroup v2
/// root `root`.
pub(super) fn attach_dns(ebpf: &mut Ebpf, root: &Path) -> Result<(), SensorError> {
    attach_sock_addr(ebpf, root, &DNS_SOCK_ADDR)?;
    let cgroup = open_cgroup(root)?;
    let name = names::PROG_DNS_INGRESS;
    let prog: &mut CgroupSkb = loaded(ebpf, name)?;
    prog.attach(
        &cgroup,
        CgroupSkbAttachType::Ingress,
        CgroupAttachMode::Single,
    )
    .map_err(attach_error(name, root))?;
    Ok(())
}
