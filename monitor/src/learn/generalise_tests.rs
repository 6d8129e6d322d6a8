//! The generalisation rules one by one, and the credential property: no learned entry allows a
//! path a credential detection watches unless that exact path was read while learning.

use std::path::PathBuf;
use std::sync::OnceLock;

use marked_yaml::{Span, Spanned};
use proptest::prelude::*;

use super::footprint::{Destination, FileUse, Footprint};
use super::generalise::{Fresh, Generalised, Options, generalise};
use super::learned::{Entry, Value};
use super::paths::glob_escape;
use crate::rules::load::Sink;
use crate::rules::{PathList, RuleSet};

/// The shipped credential detections' patterns.
fn shipped_credentials() -> Vec<(String, String)> {
    static SHIPPED: OnceLock<Vec<(String, String)>> = OnceLock::new();
    SHIPPED
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules/detections");
            let rules = RuleSet::load(&[dir]).expect("shipped detections load");
            let c = rules.credential_patterns();
            assert!(c.len() > 40, "{c:?}");
            c
        })
        .clone()
}

#[test]
fn rules_without_credential_detections_fall_back_to_the_shipped_ones() {
    let mut built_in = RuleSet::default().credential_patterns_or_shipped();
    let mut shipped = shipped_credentials();
    built_in.sort();
    shipped.sort();
    assert_eq!(built_in, shipped);
}

fn options(phases: bool) -> Options {
    Options {
        collapse_above: 4,
        credentials: shipped_credentials(),
        nameservers: vec!["10.0.0.2".parse().unwrap()],
        ephemeral: (32768, 60999),
        baseline: true,
        startup_cutoff: phases.then_some(f64::MAX),
    }
}

const READ: FileUse = FileUse {
    read: true,
    write: false,
    created: false,
};
const WRITE: FileUse = FileUse {
    read: false,
    write: true,
    created: false,
};

fn values(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.value.to_string()).collect()
}

fn run(fp: &Footprint) -> Generalised {
    generalise(fp, &mut Fresh, &options(true))
}

fn run_without_phases(fp: &Footprint) -> Generalised {
    generalise(fp, &mut Fresh, &options(false))
}

#[test]
fn versions_packages_and_bytecode_caches() {
    let mut fp = Footprint::default();
    let sp = "/opt/venv/lib/python3.11/site-packages";
    for m in ["litellm/__init__.py", "litellm/proxy/x.py", "httpx/_api.py"] {
        fp.file(&format!("{sp}/{m}"), READ, 0.1, true, "/usr/bin/python3.11");
    }
    fp.file(
        &format!("{sp}/litellm/__pycache__/x.cpython-311.pyc"),
        WRITE,
        0.2,
        false,
        "/p",
    );
    fp.file(&format!("{sp}/evil.pth"), WRITE, 0.2, true, "/p");
    fp.exec("/usr/bin/python3.11", 1.0, true, "/p");
    fp.listen(4000, 9.0, true, "/p");
    let g = run(&fp);
    assert_eq!(
        values(&g.allow.read),
        [
            r#""/opt/venv/lib/python3*/site-packages/**""#,
            r#""!**/.env""#,
            r#""!**/.env.*""#
        ]
    );
    assert_eq!(
        values(&g.startup.write),
        [
            r#""/opt/venv/lib/python3*/site-packages/**/__pycache__/*""#,
            r#""!**/.env""#,
            r#""!**/.env.*""#
        ],
        "`__pycache__/*` could reach a `.env` too"
    );
    assert_eq!(
        values(&g.allow.write),
        [r#""/opt/venv/lib/python3*/site-packages/evil.pth""#],
        "only bytecode caches are generalised in a package tree"
    );
    assert_eq!(values(&g.allow.exec), [r#""/usr/bin/python3*""#]);
    let site = &g.allow.read[0];
    assert_eq!((site.objects, site.seen.count), (3, 3));
}

#[test]
fn temporary_names_proc_and_the_baseline() {
    let mut fp = Footprint::default();
    let created = FileUse {
        read: true,
        write: true,
        created: true,
    };
    fp.file("/tmp/fucljrcw", created, 0.5, false, "/p");
    fp.file("/tmp/fucljrcw", WRITE, 0.5, false, "/p");
    fp.file("/dev/shm/sem.mp-a1b2c3d4", created, 0.5, false, "/p");
    fp.file("/proc/4242/stat", READ, 0.5, false, "/p");
    fp.file("/proc/self/status", READ, 0.5, false, "/p");
    fp.file(
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        READ,
        0.5,
        false,
        "/p",
    );
    let g = run_without_phases(&fp);
    assert!(g.startup.is_empty(), "no listen seen: no start-up phase");
    assert_eq!(
        values(&g.allow.read),
        [
            r#""/dev/shm/sem.*""#,
            r#""/proc/[0-9]*/stat""#,
            r#""/tmp/*""#,
            r#""!**/.env""#,
            r#""!**/.env.*""#
        ]
    );
    assert_eq!(
        values(&g.allow.write)[..2],
        [r#""/dev/shm/sem.*""#, r#""/tmp/*""#]
    );
    assert!(
        g.notes[0].starts_with("2 file(s) the baseline allows"),
        "{:?}",
        g.notes
    );
}

#[test]
fn busy_directories_collapse_but_never_into_credentials_or_forbidden_roots() {
    let mut fp = Footprint::default();
    for i in 0..6 {
        fp.file(&format!("/app/templates/t{i}.html"), READ, 1.0, true, "/p");
        fp.file(&format!("/etc/conf{i}"), READ, 1.0, true, "/p");
        fp.file(&format!("/home/u/f{i}"), READ, 1.0, true, "/p");
        // Not credential files by any detection, but a credentials directory all the same.
        fp.file(&format!("/root/.ssh/known_hosts{i}"), READ, 1.0, true, "/p");
        fp.file(&format!("/srv/app/.kube/cache/c{i}"), READ, 1.0, true, "/p");
    }
    fp.file("/app/.env", READ, 0.3, false, "/p");
    fp.file("/root/.aws/credentials", READ, 0.3, true, "/p");
    let g = run(&fp);
    let read = values(&g.allow.read);
    assert!(
        read.contains(&r#""/app/templates/**""#.to_owned()),
        "{read:?}"
    );
    assert!(!read.iter().any(|r| r == r#""/etc/**""#), "{read:?}");
    assert!(read.contains(&r#""/etc/conf0""#.to_owned()), "{read:?}");
    assert!(
        !read
            .iter()
            .any(|r| r.contains(".ssh/**") || r.contains(".kube/**")),
        "{read:?}"
    );
    assert!(
        read.contains(&r#""/root/.ssh/known_hosts0""#.to_owned()),
        "{read:?}"
    );
    assert!(
        !read.iter().any(|r| r.starts_with(r#""/home/u/**"#)),
        "{read:?}"
    );
    assert!(
        read.contains(&r#""/root/.aws/credentials""#.to_owned()),
        "{read:?}"
    );
    let cred = g
        .allow
        .read
        .iter()
        .find(|e| e.value == Value::Path("/root/.aws/credentials".into()));
    assert!(
        cred.unwrap()
            .note
            .as_deref()
            .unwrap()
            .starts_with("credential path (credential-read")
    );
    let env = g
        .startup
        .read
        .iter()
        .find(|e| e.value == Value::Path("/app/.env".into()));
    assert!(
        env.is_some(),
        "a credential path read only at start-up: {:?}",
        g.startup.read
    );
    assert!(
        read.contains(&r#""!**/.env""#.to_owned()),
        "the templates glob reaches .env files"
    );
}

#[test]
fn connects_listens_and_phases() {
    let mut fp = Footprint::default();
    let to = |host, addr: &str, port| Destination {
        host,
        addr: addr.parse().unwrap(),
        port,
        protocol: "tcp",
    };
    fp.connect(
        to(Some("raw.githubusercontent.com"), "185.199.108.133", 443),
        0.4,
        false,
        "/p",
    );
    fp.connect(
        to(Some("api.openai.com"), "104.18.7.192", 443),
        12.0,
        true,
        "/p",
    );
    fp.connect(
        to(Some("api.openai.com"), "104.18.6.192", 443),
        0.4,
        false,
        "/p",
    );
    fp.connect(to(None, "127.0.0.1", 4000), 0.2, false, "/p");
    fp.connect(to(None, "10.0.0.2", 53), 0.1, false, "/p");
    fp.listen(4000, 9.0, false, "/p");
    fp.listen(45123, 9.0, false, "/p");
    let g = run(&fp);
    assert_eq!(
        values(&g.allow.connect),
        [r#"{ host: "api.openai.com", port: 443 }"#]
    );
    assert_eq!(
        values(&g.startup.connect),
        [
            r#"{ cidr: "127.0.0.1", port: 4000 }"#,
            r#"{ host: "raw.githubusercontent.com", port: 443 }"#
        ]
    );
    assert_eq!(
        values(&g.allow.listen),
        ["{ port: 4000 }"],
        "accepts come while serving"
    );
    assert!(g.notes.iter().any(|n| n.contains("45123")), "{:?}", g.notes);
    let openai = &g.allow.connect[0];
    assert_eq!((openai.objects, openai.seen.count), (2, 2));
}

/// One list as the agent compiles it (each block's lists on their own), without the
/// baseline.
fn compiled(list: &[Entry], key: &str) -> PathList {
    let items: Vec<Spanned<String>> = list
        .iter()
        .filter_map(|e| match &e.value {
            Value::Path(p) => Some(p.clone()),
            Value::Exclude(p) => Some(format!("!{p}")),
            _ => None,
        })
        .map(|p| Spanned::new(Span::new_blank(), p))
        .collect();
    let mut errors = Vec::new();
    let mut sink = Sink {
        file: std::path::Path::new("learned"),
        errors: &mut errors,
    };
    let list = PathList::compile(&items, key, &[], true, &mut sink);
    assert!(errors.is_empty(), "{errors:?}");
    list
}

/// Paths credential detections watch, made from their patterns.
fn credential_path() -> impl Strategy<Value = String> {
    let homes = prop::sample::select(vec!["/root", "/home/alice", "/home/bob"]);
    let dirs = prop::sample::select(vec![
        "/app",
        "/srv/api",
        "/opt/venv/lib/python3.11/site-packages/x",
        "/tmp/t",
    ]);
    prop_oneof![
        (
            homes.clone(),
            prop::sample::select(vec![
                ".ssh/id_rsa",
                ".ssh/id_ed25519",
                ".aws/credentials",
                ".kube/config",
                ".docker/config.json",
                ".git-credentials",
                ".config/gcloud/credentials.db"
            ])
        )
            .prop_map(|(h, f)| format!("{h}/{f}")),
        (
            dirs,
            prop::sample::select(vec![".env", ".env.production", ".env.local"])
        )
            .prop_map(|(d, f)| format!("{d}/{f}")),
        Just("/var/run/secrets/kubernetes.io/serviceaccount/..data/token".to_owned()),
    ]
}

/// Ordinary paths around the credential ones; names may hold glob characters and line
/// breaks (a workload names its files).
fn ordinary_path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "/app",
            "/srv/api",
            "/root/.cache/x",
            "/home/alice/.config/app",
            "/opt/venv/lib/python3.11/site-packages/x",
            "/tmp",
            "/var/run/secrets/kubernetes.io/serviceaccount/..data",
        ]),
        "[a-z*?{}\\[\\]\\\\\n]{1,6}(\\.[a-z]{1,3})?",
    )
        .prop_map(|(d, f)| format!("{d}/{f}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_learned_entry_reaches_a_credential_path_that_was_not_read(
        ordinary in prop::collection::vec((ordinary_path(), any::<bool>(), any::<bool>()), 0..40),
        used_creds in prop::collection::vec((credential_path(), any::<bool>()), 0..4),
        probes in prop::collection::vec(credential_path(), 1..20),
    ) {
        let mut fp = Footprint::default();
        // Some at start-up only, some while serving; some written, some read.
        for (p, write, serving) in &ordinary {
            let secs = if *serving { 20.0 } else { 0.5 };
            fp.file(p, if *write { WRITE } else { READ }, secs, *serving, "/usr/bin/python3.11");
        }
        for (p, write) in &used_creds {
            fp.file(p, if *write { WRITE } else { READ }, 1.0, true, "/usr/bin/python3.11");
        }
        let g = run(&fp);
        let used = |c: &String, key: &str| {
            used_creds.iter().any(|(p, w)| p == c && *w == (key == "write"))
        };
        for (block, lists) in [("allow", &g.allow), ("startup", &g.startup)] {
            for (key, list) in [("read", &lists.read), ("write", &lists.write)] {
                let allowed = compiled(list, key);
                for (p, ..) in &ordinary {
                    if list.iter().any(|e| e.value == Value::Path(glob_escape(p))) {
                        prop_assert!(allowed.is_match(p), "{p:?} is listed but does not match itself");
                    }
                }
                for c in probes.iter().chain(used_creds.iter().map(|(p, _)| p)) {
                    if allowed.is_match(c) {
                        prop_assert!(used(c, key), "{block}.{key} allows {c}, never used so; {:?}", values(list));
                    }
                }
            }
        }
    }
}

#[test]
fn what_start_up_used_close_to_its_first_listen_stays_in_allow() {
    use super::generalise::startup_cutoff;
    assert_eq!(startup_cutoff(12.0), 9.0, "a quarter");
    assert_eq!(startup_cutoff(4.0), 2.0, "at least 2 s");
    let mut fp = Footprint::default();
    fp.file("/etc/early", READ, 1.0, false, "/p");
    fp.file("/etc/late", READ, 9.5, false, "/p");
    let opts = Options {
        startup_cutoff: Some(startup_cutoff(12.0)),
        ..options(true)
    };
    let g = generalise(&fp, &mut Fresh, &opts);
    assert_eq!(values(&g.startup.read), [r#""/etc/early""#]);
    assert_eq!(values(&g.allow.read), [r#""/etc/late""#]);
}
