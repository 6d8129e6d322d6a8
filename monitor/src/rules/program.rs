//! The program an exec runs, for the `program` selector: for an interpreter (Python, Node.js,
//! Ruby, Perl, PHP, a shell) the script it was given (a console script such as
//! `/opt/venv/bin/litellm` is a script) or the module of `python -m MODULE`; for anything else
//! the executable itself. Code given inline (`python -c`, `node -e`, `sh -c`) or read from
//! standard input has no program, so `python3 -c "import litellm"` or `pip install litellm`
//! (whose program is `.../bin/pip`) never looks like the LiteLLM server.
//!
//! Arguments are parsed the way each interpreter parses its own options (combined short flags,
//! options that take a value, `--`), so an option's value is never taken for the script.

use std::borrow::Cow;

/// What an exec runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program<'a> {
    /// `python -m MODULE`: the module name.
    Module(&'a str),
    /// A script an interpreter runs, or an executable; an absolute, lexically normalised path.
    Path(Cow<'a, str>),
}

impl Program<'_> {
    /// What a selector pattern without `/` is matched against: the module name, or the path's
    /// last component.
    pub fn short_name(&self) -> &str {
        match self {
            Program::Module(m) => m,
            Program::Path(p) => p.rsplit('/').next().unwrap_or(p),
        }
    }

    /// The module name or the full path.
    pub fn as_str(&self) -> &str {
        match self {
            Program::Module(m) => m,
            Program::Path(p) => p,
        }
    }
}

/// Interpreter families, by how they parse their options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Python,
    Node,
    Ruby,
    Perl,
    Php,
    Shell,
}

/// The interpreter family of an executable, by its file name.
fn family(path: &str) -> Option<Family> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let versioned = |prefix: &str| {
        base.strip_prefix(prefix)
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    };
    if versioned("python") || versioned("pypy") {
        Some(Family::Python)
    } else if base == "node" || base == "nodejs" {
        Some(Family::Node)
    } else if versioned("ruby") {
        Some(Family::Ruby)
    } else if versioned("perl") {
        Some(Family::Perl)
    } else if versioned("php") {
        Some(Family::Php)
    } else if matches!(
        base,
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "mksh"
    ) {
        Some(Family::Shell)
    } else {
        None
    }
}

/// How one interpreter reads an option.
enum Opt {
    /// A flag: no value.
    Flag,
    /// Takes a value (attached to a short option, or the next argument).
    Value,
    /// Code follows inline or on standard input: there is no program.
    Inline,
    /// `-m MODULE`.
    Module,
}

/// Short option `c` of `family`.
fn short(family: Family, c: char) -> Opt {
    match (family, c) {
        (Family::Python, 'c') | (Family::Node, 'e' | 'p') => Opt::Inline,
        (Family::Python, 'm') => Opt::Module,
        (Family::Python, 'W' | 'X') | (Family::Node, 'r' | 'C') => Opt::Value,
        (Family::Ruby | Family::Perl, 'e' | 'E') | (Family::Php, 'r' | 'R' | 'B' | 'E') => {
            Opt::Inline
        }
        (Family::Ruby, 'r' | 'I' | 'C') | (Family::Php, 'c' | 'd' | 'z' | 't') => Opt::Value,
        (Family::Shell, 'c' | 's') => Opt::Inline,
        (Family::Shell, 'o' | 'O') => Opt::Value,
        _ => Opt::Flag,
    }
}

/// Long option `name` (without `--` and `=value`) of `family`.
fn long(family: Family, name: &str) -> Opt {
    match (family, name) {
        (Family::Python, "check-hash-based-pycs") => Opt::Value,
        (Family::Node, "eval" | "print") => Opt::Inline,
        (
            Family::Node,
            "require"
            | "import"
            | "loader"
            | "experimental-loader"
            | "conditions"
            | "input-type"
            | "title"
            | "env-file",
        ) => Opt::Value,
        (Family::Shell, "rcfile" | "init-file") => Opt::Value,
        _ => Opt::Flag,
    }
}

/// The script argument (or module) of an interpreter's argv, `argv[0]` excluded.
fn script_arg(family: Family, args: &[String]) -> Option<Result<&str, &str>> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            return it.next().map(|s| Ok(s.as_str()));
        }
        if arg == "-" {
            return None;
        }
        if let Some(name) = arg.strip_prefix("--") {
            let (name, attached) = match name.split_once('=') {
                Some((n, _)) => (n, true),
                None => (name, false),
            };
            match long(family, name) {
                Opt::Inline => return None,
                Opt::Value if !attached => {
                    it.next();
                }
                Opt::Flag | Opt::Value | Opt::Module => {}
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix('-').or_else(|| {
            // Shells also take `+o OPTION`.
            (family == Family::Shell)
                .then(|| arg.strip_prefix('+'))
                .flatten()
        }) else {
            return Some(Ok(arg.as_str()));
        };
        for (i, c) in flags.char_indices() {
            let rest = &flags[i + c.len_utf8()..];
            match short(family, c) {
                Opt::Flag => continue,
                Opt::Inline => return None,
                Opt::Module => {
                    let module = if rest.is_empty() {
                        it.next()?.as_str()
                    } else {
                        rest
                    };
                    return Some(Err(module));
                }
                Opt::Value => {
                    if rest.is_empty() {
                        it.next();
                    }
                    break;
                }
            }
        }
    }
    None
}

/// `path` made absolute against `cwd` and normalised lexically (`.`, `..`, repeated `/`).
fn absolute<'a>(path: &'a str, cwd: Option<&str>) -> Option<Cow<'a, str>> {
    let joined: Cow<'a, str> = if path.starts_with('/') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("{}/{path}", cwd?))
    };
    let clean = !joined.contains("//")
        && !joined.contains("/./")
        && !joined.contains("/../")
        && !joined.ends_with("/.")
        && !joined.ends_with("/..");
    if clean {
        return Some(joined);
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    Some(Cow::Owned(format!("/{}", parts.join("/"))))
}

/// The program of an exec: `exe` (the resolved executable), `filename` (given to execve),
/// `argv` and the working directory (for relative script paths). `None` for inline code,
/// standard input, or an interpreter without arguments.
pub fn program<'a>(
    exe: Option<&'a str>,
    filename: &'a str,
    argv: &'a [String],
    cwd: Option<&str>,
) -> Option<Program<'a>> {
    // The executable the kernel loaded decides when it is known: argv[0] is whatever the caller
    // chose (`execve("/usr/bin/curl", ["python3", "litellm"])` is curl).
    let interpreter = match exe.filter(|e| !e.is_empty()) {
        Some(e) => family(e),
        None => family(filename).or_else(|| argv.first().and_then(|a| family(a))),
    };
    match interpreter {
        Some(f) => match script_arg(f, argv.get(1..).unwrap_or_default())? {
            Ok(script) => absolute(script, cwd).map(Program::Path),
            Err(module) => Some(Program::Module(module)),
        },
        None => {
            let path = exe.filter(|e| !e.is_empty()).unwrap_or(filename);
            absolute(path, cwd).map(Program::Path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Program, program};

    fn prog(exe: &str, argv: &[&str]) -> Option<String> {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        program(Some(exe), &argv[0], &argv, Some("/srv/app")).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn python_scripts_modules_and_inline_code() {
        let py = "/usr/bin/python3.11";
        // A console script, as the kernel rewrites a shebang: interpreter, script, arguments.
        assert_eq!(
            prog(
                py,
                &[
                    "/opt/venv/bin/python3",
                    "./venv/bin/litellm",
                    "--port",
                    "4000"
                ]
            )
            .as_deref(),
            Some("/srv/app/venv/bin/litellm")
        );
        assert_eq!(
            prog(py, &["python3", "-m", "vllm.entrypoints.openai.api_server"]).as_deref(),
            Some("vllm.entrypoints.openai.api_server")
        );
        assert_eq!(
            prog(py, &["python3", "-mlitellm"]).as_deref(),
            Some("litellm")
        );
        assert_eq!(
            prog(py, &["python3", "-um", "uvicorn"]).as_deref(),
            Some("uvicorn")
        );
        assert_eq!(
            prog(
                py,
                &["python3", "-W", "ignore", "-X", "utf8", "-B", "serve.py"]
            )
            .as_deref(),
            Some("/srv/app/serve.py")
        );
        assert_eq!(
            prog(
                py,
                &[
                    "python3",
                    "-Wignore",
                    "--check-hash-based-pycs",
                    "never",
                    "s.py"
                ]
            )
            .as_deref(),
            Some("/srv/app/s.py")
        );
        assert_eq!(prog(py, &["python3", "-c", "import litellm"]), None);
        assert_eq!(prog(py, &["python3", "-Ic", "import litellm"]), None);
        assert_eq!(prog(py, &["python3", "-"]), None);
        assert_eq!(prog(py, &["python3"]), None);
        assert_eq!(
            prog(py, &["python3", "--", "-weird.py"]).as_deref(),
            Some("/srv/app/-weird.py")
        );
        assert_eq!(
            prog(
                py,
                &[
                    "/opt/venv/bin/python",
                    "/opt/venv/bin/pip",
                    "install",
                    "litellm"
                ]
            )
            .as_deref(),
            Some("/opt/venv/bin/pip")
        );
    }

    #[test]
    fn other_interpreters_and_binaries() {
        assert_eq!(
            prog(
                "/usr/bin/node",
                &["node", "--require", "otel.js", "server.js"]
            )
            .as_deref(),
            Some("/srv/app/server.js")
        );
        assert_eq!(prog("/usr/bin/node", &["node", "-e", "x()"]), None);
        assert_eq!(
            prog("/usr/bin/bash", &["bash", "-o", "pipefail", "../run.sh"]).as_deref(),
            Some("/srv/run.sh")
        );
        assert_eq!(prog("/usr/bin/dash", &["sh", "-c", "echo"]), None);
        assert_eq!(prog("/usr/bin/perl", &["perl", "-e", "1"]), None);
        assert_eq!(
            prog(
                "/usr/local/bin/text-generation-launcher",
                &["text-generation-launcher"]
            )
            .as_deref(),
            Some("/usr/local/bin/text-generation-launcher")
        );
        assert_eq!(
            prog("/usr/bin/curl", &["python3", "litellm"]).as_deref(),
            Some("/usr/bin/curl"),
            "argv[0] does not make an interpreter"
        );
    }

    #[test]
    fn short_names_are_modules_or_last_components() {
        assert_eq!(Program::Module("a.b").short_name(), "a.b");
        assert_eq!(
            Program::Path("/x/bin/litellm".into()).short_name(),
            "litellm"
        );
    }
}
