use std::collections::HashMap;
use std::net::IpAddr;

use super::{Enforcement, INHERIT, KernelOp};
use crate::rules::{Phase, ProfileId, RuleSet, testutil::load};

const ENFORCED: &str = "profile: web\nmatch:\n  uid: [0]\nmode: enforce\nbaseline: false\n\
allow:\n  connect:\n    - { cidr: 10.0.0.0/8, port: 443 }\n    - { host: \"::1\" }\n    - { host: api.example.com, port: 443 }\n  listen:\n    - { port: 8080 }\n\
startup:\n  connect:\n    - { host: 192.0.2.7, port: 80 }\n";
const ALERTING: &str = "profile: other\nmatch:\n  uid: [1]\nbaseline: false\n";

fn rules(extra: &str) -> RuleSet {
    load(&[("a.yaml", ENFORCED), ("b.yaml", extra)]).expect("rules load")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn mapped(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn agent() -> HashMap<String, Vec<IpAddr>> {
    HashMap::from([("api.example.com".to_owned(), vec![ip("203.0.113.5")])])
}

fn nets(ops: &[KernelOp], slot: u32) -> Vec<([u8; 16], u8, u16)> {
    let mut v: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            KernelOp::Net {
                slot: s,
                addr,
                prefix,
                port,
            } if *s == slot => Some((*addr, *prefix, *port)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn each_enforce_profile_gets_a_table_per_phase_and_alert_profiles_none() {
    let mut e = Enforcement::new(true, 7);
    e.load(&rules(ALERTING), &[], &agent());
    let ops = e.take_ops();
    let serving = e.slot(ProfileId(0), Phase::Serving);
    let startup = e.slot(ProfileId(0), Phase::Startup);
    assert_eq!(e.policy_slot.len(), 2, "the alert-mode profile has no slot");
    let mut want = vec![
        (mapped("10.0.0.0"), 104, 443),
        (mapped("::1"), 128, 0),
        (mapped("203.0.113.5"), 128, 443),
    ];
    want.sort();
    assert_eq!(nets(&ops, serving), want);
    want.push((mapped("192.0.2.7"), 128, 80));
    want.sort();
    assert_eq!(nets(&ops, startup), want, "start-up adds its own entries");
    assert!(ops.contains(&KernelOp::Listen {
        slot: serving,
        port: 8080
    }));
}

#[test]
fn processes_move_between_slots_and_a_reload_fills_new_slots_before_retiring_old_ones() {
    let mut e = Enforcement::new(true, 7);
    let set = rules(ALERTING);
    e.load(&set, &[], &agent());
    e.take_ops();
    let starting = e.slot(ProfileId(0), Phase::Startup);
    let policy = e.current[&(ProfileId(0), Phase::Startup)];
    e.assign(100, Some(ProfileId(0)), Phase::Startup, true);
    e.assign(100, Some(ProfileId(0)), Phase::Startup, true);
    e.assign(200, Some(ProfileId(1)), Phase::Serving, true);
    assert_eq!(
        e.take_ops(),
        vec![KernelOp::Process {
            pid: 100,
            policy: Some(policy | INHERIT)
        }],
        "once, and nothing for an alert-mode profile"
    );
    e.forked(100, 101);
    e.assign(101, Some(ProfileId(0)), Phase::Startup, true);
    assert!(
        e.take_ops().is_empty(),
        "the kernel gave the child its slot"
    );

    e.load(&set, &[], &agent());
    e.assign(100, Some(ProfileId(0)), Phase::Startup, true);
    e.retire();
    let ops = e.take_ops();
    let new_start = e.slot(ProfileId(0), Phase::Startup);
    assert_ne!(new_start, starting, "a fresh slot");
    assert_eq!(
        e.current[&(ProfileId(0), Phase::Startup)],
        policy,
        "the same policy"
    );
    let switched = ops
        .iter()
        .position(|op| {
            *op == KernelOp::Policy {
                policy,
                slot: Some(new_start),
            }
        })
        .expect("the policy moves to the new slot");
    let filled = ops
        .iter()
        .rposition(|op| matches!(op, KernelOp::Net { slot, .. } if *slot == new_start))
        .expect("new slot filled");
    assert!(filled < switched, "filled before the policy points at it");
    assert!(
        !ops.iter()
            .any(|op| matches!(op, KernelOp::Process { .. } | KernelOp::Retire { .. })),
        "processes keep their policy; old slots wait for a tick: {ops:?}"
    );
    e.tick();
    let KernelOp::Retire { slots } = &e.take_ops()[0] else {
        panic!("retired at the tick");
    };
    assert!(slots.contains(&starting) && !slots.contains(&new_start));
}

#[test]
fn answers_for_allowed_hosts_are_allowed_for_the_slot() {
    let mut e = Enforcement::new(true, 7);
    e.load(&rules(ALERTING), &[], &HashMap::new());
    e.assign(7, Some(ProfileId(0)), Phase::Serving, false);
    e.take_ops();
    let slot = e.slot(ProfileId(0), Phase::Serving);
    e.dns_answer(7, &["API.example.com"], &[ip("198.51.100.9")]);
    e.dns_answer(7, &["evil.example"], &[ip("198.51.100.10")]);
    e.dns_answer(8, &["api.example.com"], &[ip("198.51.100.11")]);
    e.dns_answer(7, &["api.example.com"], &[ip("198.51.100.9")]);
    assert_eq!(
        e.take_ops(),
        vec![KernelOp::Net {
            slot,
            addr: mapped("198.51.100.9"),
            prefix: 128,
            port: 443
        }],
        "only the allowed name, only an enforced process, once"
    );
}

#[test]
fn off_means_no_tables_and_no_processes() {
    let mut e = Enforcement::new(false, 7);
    e.load(&rules(ALERTING), &[], &agent());
    e.assign(100, Some(ProfileId(0)), Phase::Serving, true);
    assert!(e.take_ops().is_empty());
}

#[test]
fn an_exit_removes_the_kernel_entry_even_if_written_after_the_exit() {
    let mut e = Enforcement::new(true, 7);
    e.load(&rules(ALERTING), &[], &agent());
    e.assign(300, Some(ProfileId(0)), Phase::Serving, true);
    e.take_ops();
    e.exited(300);
    assert_eq!(
        e.take_ops(),
        vec![KernelOp::Process {
            pid: 300,
            policy: None
        }]
    );
    e.exited(301);
    assert!(
        e.take_ops().is_empty(),
        "nothing for a process never enforced"
    );
}
