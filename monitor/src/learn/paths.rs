//! The path rules of learning, each a pure function a reviewer can predict (docs/learning.md
//! lists them with examples):
//! - a versioned runtime directory or file (`python3.11`, `node18`, `cuda-12.4`) keeps its
//!   name and major version: `python3*`, `node*`, `cuda-12*`;
//! - a package tree (`site-packages`, `dist-packages`, `node_modules`) is one `ROOT/**` entry
//!   for reads; writes inside it are allowed only as bytecode caches
//!   (`ROOT/**/__pycache__/*`);
//! - under `/tmp`, `/var/tmp` and `/dev/shm`, a generated name becomes `*` in its segment,
//!   keeping a known prefix (`tmp`, `pymp-`, `sem.`) or a prefix up to the last `-`, `_` or `.`;
//! - another process's `/proc/<pid>/...` becomes `/proc/[0-9]*/...`.

/// `path` as a glob that matches exactly it: `* ? [ ] { } \` escaped with a backslash. Every
/// observed path is escaped before the rules below rewrite it, so a file a workload names
/// `/app/*` or `/app/data[1].json` can never widen a profile, nor fail to match itself.
pub fn glob_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runtimes whose directories and executables carry their version in the name.
const RUNTIMES: &[&str] = &[
    "python", "pypy", "node", "nodejs", "ruby", "perl", "php", "java", "jdk", "jre", "openjdk",
    "go", "gcc", "llvm", "clang", "lua", "cuda", "cudnn", "nccl", "tensorrt", "rocm",
];

/// Directories whose whole subtree is one package installation.
const PACKAGE_TREES: &[&str] = &["site-packages", "dist-packages", "node_modules"];

/// Where programs put scratch files with generated names.
pub const TEMP_ROOTS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];

/// Prefixes of names that tools generate (mkstemp's `tmp`, multiprocessing's `pymp-`,
/// POSIX semaphores' `sem.`), longest first.
const KNOWN_PREFIXES: &[&str] = &["torch_", "pymp-", "tmp.", "sem.", ".tmp", "tmp", "wrk"];

/// Shortest generated part of a name.
const GENERATED_MIN: usize = 6;

/// `python3.11` -> `python3*`, `node18` -> `node*`, `cuda-12.4` -> `cuda-12*`; `None` when
/// the segment is not a versioned runtime name (`python3` stays: it names a major version).
pub fn versioned(seg: &str) -> Option<String> {
    let name = RUNTIMES
        .iter()
        .filter(|r| seg.starts_with(**r))
        .max_by_key(|r| r.len())?;
    let rest = &seg[name.len()..];
    let (sep, version) = match rest.strip_prefix(['-', '_']) {
        Some(v) => (&rest[..1], v),
        None => ("", rest),
    };
    let well_formed = !version.is_empty()
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return None;
    }
    match version.split_once('.') {
        Some((major, _)) => Some(format!("{name}{sep}{major}*")),
        None if version.len() >= 2 => Some(format!("{name}{sep}*")),
        None => None,
    }
}

/// Applies [`versioned`] to every segment.
pub fn unversion(path: &str) -> String {
    path.split('/')
        .map(|s| versioned(s).unwrap_or_else(|| s.to_owned()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The package tree `path` lies in: the path up to and including the first `site-packages`,
/// `dist-packages` or `node_modules` segment, when something lies below it.
pub fn package_root(path: &str) -> Option<&str> {
    let mut end = 0;
    for seg in path.split('/') {
        end += seg.len();
        if PACKAGE_TREES.contains(&seg) {
            return (end < path.len()).then(|| &path[..end]);
        }
        end += 1;
    }
    None
}

/// Whether `path` lies under a temporary directory.
#[cfg(test)]
pub fn in_temp(path: &str) -> bool {
    TEMP_ROOTS.iter().any(|r| {
        path.strip_prefix(r)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    })
}

/// `name` with its generated part replaced by `*`, or `None` when it does not look generated.
/// `created`: the workload created this file, which makes a name of random letters count too.
pub fn generated(name: &str, created: bool) -> Option<String> {
    let alnum = |s: &str| {
        s.len() >= GENERATED_MIN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    // A short extension stays: `tmpab12cd.json` -> `tmp*.json`.
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e))
            if !s.is_empty()
                && (1..=5).contains(&e.len())
                && e.bytes().all(|b| b.is_ascii_alphabetic()) =>
        {
            (s, &name[s.len()..])
        }
        _ => (name, ""),
    };
    if let Some(prefix) = KNOWN_PREFIXES.iter().find(|p| stem.starts_with(**p)) {
        let rest = &stem[prefix.len()..];
        if rest.len() >= GENERATED_MIN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Some(format!("{prefix}*{ext}"));
        }
    }
    // `_` belongs to the generated alphabet (Python's tempfile), so it does not end a prefix.
    let cut = stem.rfind(['-', '.']).map_or(0, |i| i + 1);
    let (prefix, random) = stem.split_at(cut);
    let mixed = random.bytes().any(|b| b.is_ascii_digit())
        || (random.bytes().any(|b| b.is_ascii_lowercase())
            && random.bytes().any(|b| b.is_ascii_uppercase()));
    (alnum(random) && (mixed || created)).then(|| format!("{prefix}*{ext}"))
}

/// `path` with every generated segment below its temporary directory replaced (see
/// [`generated`]); `created` applies to the last segment.
pub fn untemp(path: &str, created: bool) -> String {
    let Some(root) = TEMP_ROOTS.iter().find(|r| {
        path.strip_prefix(**r)
            .is_some_and(|rest| rest.starts_with('/'))
    }) else {
        return path.to_owned();
    };
    let rest = &path[root.len() + 1..];
    let segs: Vec<&str> = rest.split('/').collect();
    let last = segs.len() - 1;
    let out: Vec<String> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| generated(s, created && i == last).unwrap_or_else(|| (*s).to_owned()))
        .collect();
    format!("{root}/{}", out.join("/"))
}

/// Another process's `/proc/<pid>/...` as `/proc/[0-9]*/...` (a process's own is
/// `/proc/self/...` already).
pub fn other_proc(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/proc/")?;
    let (pid, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(if tail.is_empty() {
        "/proc/[0-9]*".to_owned()
    } else {
        format!("/proc/[0-9]*/{tail}")
    })
}

#[cfg(test)]
mod tests {
    use super::{
        generated, glob_escape, in_temp, other_proc, package_root, untemp, unversion, versioned,
    };

    #[test]
    fn observed_paths_are_escaped_before_any_rule() {
        assert_eq!(glob_escape("/app/*"), "/app/\\*");
        assert_eq!(
            glob_escape("/a/d[1]{x}?.json"),
            "/a/d\\[1\\]\\{x\\}\\?.json"
        );
        assert_eq!(glob_escape("/a\\\\b"), "/a\\\\\\\\b");
        assert_eq!(
            untemp(&glob_escape("/tmp/tmp*ab12cd"), true),
            "/tmp/tmp\\*ab12cd"
        );
        let g = globset::GlobBuilder::new(&glob_escape("/app/d[1].json"))
            .literal_separator(true)
            .build()
            .unwrap()
            .compile_matcher();
        assert!(g.is_match("/app/d[1].json") && !g.is_match("/app/d1.json"));
    }

    #[test]
    fn versioned_runtimes_keep_their_major_version() {
        assert_eq!(versioned("python3.11").as_deref(), Some("python3*"));
        assert_eq!(versioned("pypy3.10").as_deref(), Some("pypy3*"));
        assert_eq!(versioned("node18").as_deref(), Some("node*"));
        assert_eq!(versioned("cuda-12.4").as_deref(), Some("cuda-12*"));
        assert_eq!(versioned("python3"), None, "a major version alone stays");
        assert_eq!(versioned("python3.11-config"), None);
        assert_eq!(versioned("lib64"), None);
        assert_eq!(versioned("pythonista"), None);
        assert_eq!(
            unversion("/opt/venv/lib/python3.11/site-packages"),
            "/opt/venv/lib/python3*/site-packages"
        );
        assert_eq!(unversion("/usr/bin/python3.11"), "/usr/bin/python3*");
    }

    #[test]
    fn package_trees_end_at_their_first_package_directory() {
        assert_eq!(
            package_root("/opt/venv/lib/python3*/site-packages/litellm/__init__.py"),
            Some("/opt/venv/lib/python3*/site-packages")
        );
        assert_eq!(
            package_root("/app/node_modules/a/node_modules/b/index.js"),
            Some("/app/node_modules")
        );
        assert_eq!(
            package_root("/usr/lib/python3/dist-packages"),
            None,
            "the root itself"
        );
        assert_eq!(package_root("/app/main.py"), None);
    }

    #[test]
    fn generated_temporary_names_become_stars() {
        assert_eq!(generated("tmpab_cd1x", false).as_deref(), Some("tmp*"));
        assert_eq!(
            generated("tmpk2x9q0za.json", false).as_deref(),
            Some("tmp*.json")
        );
        assert_eq!(
            generated("sem.mp-a1b2c3d4", false).as_deref(),
            Some("sem.*")
        );
        assert_eq!(generated("pymp-x8y7z6w5", false).as_deref(), Some("pymp-*"));
        assert_eq!(
            generated("listener-ab12cd", false).as_deref(),
            Some("listener-*")
        );
        assert_eq!(generated("x7k2m9qa", false).as_deref(), Some("*"));
        assert_eq!(
            generated("fucljrcw", true).as_deref(),
            Some("*"),
            "created by the workload"
        );
        assert_eq!(
            generated("fucljrcw", false),
            None,
            "letters only, not created"
        );
        assert_eq!(generated("litellm_cache.json", false), None);
        assert_eq!(generated("prometheus_multiproc", false), None);
        assert_eq!(generated("a1", false), None, "too short");
        assert_eq!(
            untemp("/tmp/pymp-x8y7z6w5/listener-ab12cd", false),
            "/tmp/pymp-*/listener-*"
        );
        assert_eq!(untemp("/dev/shm/sem.Ab12Cd", false), "/dev/shm/sem.*");
        assert_eq!(untemp("/tmp/fucljrcw", true), "/tmp/*");
        assert_eq!(
            untemp("/tmp/_x8k2m0q", true),
            "/tmp/*",
            "`_` is generated too"
        );
        assert_eq!(
            untemp("/app/x7k2m9qa", true),
            "/app/x7k2m9qa",
            "not a temp dir"
        );
        assert!(in_temp("/tmp/x") && !in_temp("/tmp") && !in_temp("/tmpfoo/x"));
    }

    #[test]
    fn other_processes_proc_entries() {
        assert_eq!(
            other_proc("/proc/812/stat").as_deref(),
            Some("/proc/[0-9]*/stat")
        );
        assert_eq!(other_proc("/proc/812").as_deref(), Some("/proc/[0-9]*"));
        assert_eq!(other_proc("/proc/self/stat"), None);
        assert_eq!(other_proc("/proc/meminfo"), None);
    }
}
