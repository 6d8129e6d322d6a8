use std::path::PathBuf;

use monitor_common::enforce::{ACCESS_READ, ACCESS_WRITE};

use super::*;
use crate::rules::testutil::{TempDir, check, ctx, load_errs, load_ok, open};
use crate::rules::{Phase, ProfileId};
use crate::sensor::event::Access;

const RW: u32 = ACCESS_READ | ACCESS_WRITE;

fn ask() -> KillAsk {
    KillAsk {
        file: PathBuf::from("d.yaml"),
        line: Some(3),
    }
}

fn kill(paths: &[&str], excepts: &[(&[&str], &[&str])]) -> Kill {
    let paths: Vec<(String, Option<usize>)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| ((*p).to_owned(), Some(10 + i)))
        .collect();
    let own = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Kill::compile(&KillSource {
        id: "d",
        source: std::path::Path::new("d.yaml"),
        ask: &ask(),
        access: ACCESS_READ,
        paths: &paths,
        excepts: excepts.iter().map(|(e, p)| (own(e), own(p))).collect(),
    })
}

#[test]
fn access_lists_the_kernel_can_test() {
    use Access::{Read, ReadWrite, Write};
    assert_eq!(access_mask(None), Ok(RW));
    assert_eq!(access_mask(Some(&[Read, ReadWrite])), Ok(ACCESS_READ));
    assert_eq!(access_mask(Some(&[ReadWrite, Write])), Ok(ACCESS_WRITE));
    assert_eq!(access_mask(Some(&[Read, Write, ReadWrite])), Ok(RW));
    for bad in [&[Read][..], &[ReadWrite], &[Read, Write], &[Write]] {
        assert!(access_mask(Some(bad)).is_err(), "{bad:?}");
    }
}

#[test]
fn exact_paths_trees_and_names_compile_and_excepted_names_are_spared() {
    let k = kill(
        &["/srv/secret.key", "/srv/vault/**", "**/.env"],
        &[(&[], &["**/.env.example"])],
    );
    let d = &k.deny;
    assert!(k.warnings.is_empty(), "{:?}", k.warnings);
    assert!(d.covers("/srv/secret.key", ACCESS_READ));
    assert!(!d.covers("/srv/secret.key", ACCESS_WRITE), "reads only");
    assert!(d.covers("/srv/vault/a/b", ACCESS_READ | ACCESS_WRITE));
    assert!(
        !d.covers("/srv/vault", ACCESS_READ),
        "the tree, not the directory"
    );
    assert!(!d.covers("/srv/vaults/x", ACCESS_READ));
    assert!(d.covers("/app/.env", ACCESS_READ));
    assert!(!d.covers("/srv/vault/.env.example", ACCESS_READ), "spared");
    assert!(!d.covers("/app/.env.local", ACCESS_READ));
}

#[test]
fn wildcards_within_components_stand_for_the_paths_that_exist_and_say_so() {
    let t = TempDir::new("kill-expand");
    for f in [
        "a/.ssh/id_rsa",
        "a/.ssh/id_rsa.pub",
        "b/.ssh/id_ed25519",
        "b/.ssh/known",
    ] {
        t.write(f, "x");
    }
    std::fs::create_dir_all(t.join("a/.cache/tok")).expect("dir");
    let root = t.path().display().to_string();
    let k = kill(
        &[
            &format!("{root}/*/.ssh/id_*"),
            &format!("{root}/*/.cache/**"),
        ],
        &[(&[], &[&format!("{root}/*/.ssh/*.pub")])],
    );
    let mut exact: Vec<&String> = k.deny.exact.keys().collect();
    exact.sort();
    assert_eq!(
        exact,
        [
            &format!("{root}/a/.ssh/id_rsa"),
            &format!("{root}/b/.ssh/id_ed25519")
        ],
        "the public key is excepted"
    );
    assert_eq!(
        k.deny.trees.keys().collect::<Vec<_>>(),
        [&format!("{root}/a/.cache")]
    );
    assert_eq!(k.warnings.len(), 1, "{:?}", k.warnings);
    assert!(
        k.warnings[0].starts_with("d.yaml:3: key `action`: detection d: 2 patterns")
            && k.warnings[0].contains("the 4 paths that exist now")
            && k.warnings[0].contains("alert-only until the next reload"),
        "{}",
        k.warnings[0]
    );
}

#[test]
fn what_cannot_compile_or_an_except_may_reach_is_named_alert_only() {
    let k = kill(
        &[
            "/run/secrets/**/token",
            "**/.env.*",
            "/srv/vault/**",
            "**/cred",
        ],
        &[(&[], &["/etc/c*d", "/srv/*/x/**"])],
    );
    let w = k.warnings.join("\n");
    for named in [
        "d.yaml:10: key `when.path[0]`: detection d: \"/run/secrets/**/token\": a `**` the \
         kernel cannot match: alert-only",
        "d.yaml:11: key `when.path[1]`: detection d: \"**/.env.*\": a wildcard the kernel \
         cannot match: alert-only",
        "d.yaml:3: detection d: except[0] \"/srv/*/x/**\" may spare files under /srv/vault: \
         that tree is alert-only",
        "d.yaml:3: detection d: except[0] \"/etc/c*d\" may spare files named cred: that name \
         is alert-only",
    ] {
        assert!(w.contains(named), "{named} not in:\n{w}");
    }
    assert_eq!(k.deny, KernelDeny::default());
}

#[test]
fn an_except_on_an_executable_applies_where_the_profile_may_run_it() {
    let k = kill(
        &["/srv/key", "/srv/other"],
        &[
            (&["/usr/bin/ssh"], &["/srv/key"]),
            (&["/usr/lib/git/*"], &[]),
        ],
    );
    let exec = |exact: &[&str], trees: &[&str]| KernelPaths {
        exact: exact.iter().map(|s| (*s).to_owned()).collect(),
        trees: trees.iter().map(|s| (*s).to_owned()).collect(),
        ..KernelPaths::default()
    };
    let mut w = Vec::new();
    let python = k.for_profile(&exec(&["/usr/bin/python3"], &[]), "p", &mut w);
    assert_eq!(python, k.deny, "neither executable can run there");
    assert!(w.is_empty(), "{w:?}");
    let ssh = k.for_profile(&exec(&["/usr/bin/ssh"], &[]), "p", &mut w);
    assert!(!ssh.covers("/srv/key", ACCESS_READ) && ssh.covers("/srv/other", ACCESS_READ));
    let git = k.for_profile(&exec(&[], &["/usr/lib"]), "p", &mut w);
    assert_eq!(git, KernelDeny::default());
    assert_eq!(
        w.last().map(String::as_str),
        Some("p: except[1] (an executable the profile may run): the whole kill is alert-only")
    );
}

const DET: &str = "detection: d\ndescription: x\nseverity: high\nmitre: [T1552.001]\n";

#[test]
fn a_kill_the_kernel_cannot_judge_is_an_error_naming_the_file_line_and_key() {
    let errs = |body: &str| load_errs(&[("d.yaml", &format!("{DET}{body}"))]);
    let open = "on: [open]\nwhen:\n  path: [\"/srv/key\"]\n";
    assert_eq!(
        errs("action: kill\non: [exec]\nwhen:\n  path: [\"/srv/x\"]\n"),
        [
            "d.yaml:5: key `action`: `action: kill` needs a detection on opens alone (`on: \
          [open]`): the kernel kills at the open of a matching file"
        ]
    );
    assert_eq!(
        errs(&format!("action: kill\n{open}  exe: [\"/usr/bin/cat\"]\n")),
        [
            "d.yaml:5: key `action`: `when.exe` cannot be judged in the kernel, which kills on \
          path, access and result alone: remove it or use `action: alert`"
        ]
    );
    assert_eq!(
        errs(&format!("action: kill\n{open}  access: [read]\n")),
        [
            "d.yaml:5: key `action`: `when.access`: the kernel tests whether an open reads or \
          writes: use [read, read_write], [write, read_write], all three, or no `access`"
        ]
    );
    assert_eq!(
        errs(&format!("action: kill\n{open}except:\n  - comm: [sshd]\n")),
        [
            "d.yaml:5: key `action`: `except[0].comm` cannot be judged in the kernel: an \
          exception to a kill may name `path` and `exe`"
        ]
    );
    assert_eq!(
        load_errs(&[
            ("d.yaml", &format!("{DET}on: [connect]\n")),
            ("o.yaml", "override: d\naction: kill\n"),
        ])[0],
        "o.yaml:2: key `action`: `action: kill` needs a detection on opens alone (`on: \
         [open]`): the kernel kills at the open of a matching file"
    );
}

#[test]
fn an_enforce_mode_profile_kills_what_a_kill_detection_matches_and_says_what_stays_alert_only() {
    let profile = |mode: &str| {
        format!(
            "profile: p\nmatch:\n  exe: [\"/usr/bin/python3\"]\nmode: {mode}\nallow:\n  exec: \
             [\"/usr/bin/python3\"]\n  read: [\"/srv/**\"]\n"
        )
    };
    let det = format!(
        "{DET}on: [open]\nwhen:\n  path: [\"/srv/key\", \"**/.env.*\"]\n  access: [read, \
         read_write]\n"
    );
    for (mode, enforceable) in [("enforce", true), ("alert", true)] {
        let set = load_ok(&[
            ("d.yaml", &det),
            ("o.yaml", "override: d\naction: kill\n"),
            ("p.yaml", &profile(mode)),
        ]);
        let deny = set.kernel_deny(ProfileId(0)).expect("profile");
        assert!(deny.covers("/srv/key", ACCESS_READ));
        let f = check(
            &set,
            &open("/srv/key", Access::Read),
            &ctx(Some(ProfileId(0))),
        );
        assert_eq!((f.len(), f[0].enforceable), (1, enforceable), "{f:?}");
        let w = check(
            &set,
            &open("/srv/key", Access::Write),
            &ctx(Some(ProfileId(0))),
        );
        assert!(
            w.iter().all(|f| f.rule != "d"),
            "writes are not the detection's"
        );
        let unprofiled = check(&set, &open("/srv/key", Access::Read), &ctx(None));
        assert!(!unprofiled[0].enforceable, "only processes under a profile");
        let warnings = set.enforcement_warnings().join("\n");
        assert_eq!(
            warnings.contains("d.yaml:7: key `when.path[1]`: detection d: \"**/.env.*\""),
            mode == "enforce",
            "{warnings}"
        );
    }
    let set = load_ok(&[("d.yaml", &det), ("o.yaml", "override: d\naction: kill\n")]);
    let w = set.enforcement_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].ends_with(
            "/o.yaml:2: key `action`: detection d: no profile has `mode: enforce`, so it \
             kills nothing (it alerts)"
        ),
        "{w:?}"
    );
    assert!(set.kernel_files(ProfileId(0), Phase::Serving).is_none());
}
