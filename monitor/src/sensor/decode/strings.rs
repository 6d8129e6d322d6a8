//! Path strings from the kernel: dentry-walk encoding and lexical absolutisation.

use crate::sensor::text::escape_always;

/// Decodes a kernel dentry walk: components leaf first, each followed by `/`; a walk that
/// reached the root ends with an extra `/` (so `/` alone is the root). A walk that stopped at
/// the component bound lacks it and is rendered with a leading `...` (not absolute, so it can
/// never match an absolute pattern by accident). The components are as they are when the walk
/// is valid UTF-8 and `escape` is false (`/` never occurs inside a multi-byte character, so
/// one check covers them all), else each in the escaped form; the flag says which.
pub fn dentry_path(raw: &[u8], escape: bool) -> (String, bool) {
    if raw == b"/" {
        return ("/".to_owned(), false);
    }
    let (body, complete) = match raw.strip_suffix(b"//") {
        Some(b) => (b, true),
        None => (raw.strip_suffix(b"/").unwrap_or(raw), false),
    };
    let mut out = String::with_capacity(raw.len() + 4);
    if !complete {
        out.push_str("...");
    }
    if body.iter().all(|&b| b == b'/') {
        out.push('/');
        return (out, false);
    }
    match std::str::from_utf8(body) {
        Ok(text) if !escape => {
            for comp in text.split('/').rev().filter(|c| !c.is_empty()) {
                out.push('/');
                out.push_str(comp);
            }
            (out, false)
        }
        _ => {
            for comp in body.split(|&b| b == b'/').rev().filter(|c| !c.is_empty()) {
                out.push('/');
                out.push_str(&escape_always(comp));
            }
            (out, true)
        }
    }
}

/// Joins `path` to `base` when relative, then removes `.`, `..` and repeated `/` lexically.
/// Without a base a relative path stays relative (the kernel could not tell the base).
pub fn absolute(base: Option<&str>, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        match base {
            Some(b) => format!("{b}/{path}"),
            None => return path.to_owned(),
        }
    };
    normalize(&joined)
}

/// Lexical normalisation of an absolute path.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let (prefix, rest) = match path.strip_prefix("...") {
        Some(r) => ("...", r),
        None => ("", path),
    };
    for comp in rest.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return format!("{prefix}/");
    }
    let mut out = String::from(prefix);
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{absolute, dentry_path};

    #[test]
    fn dentry_paths() {
        let path = |raw: &[u8]| dentry_path(raw, false);
        assert_eq!(path(b"/"), ("/".to_owned(), false));
        assert_eq!(path(b"passwd/etc//"), ("/etc/passwd".to_owned(), false));
        assert_eq!(path(b"c/b/a/"), (".../a/b/c".to_owned(), false));
        assert_eq!(path(b"caf\xe9/tmp//"), ("/tmp/caf\\xe9".to_owned(), true));
        assert_eq!(path(b"a\\b/tmp//"), ("/tmp/a\\b".to_owned(), false));
        assert_eq!(
            dentry_path(b"a\\b/tmp//", true),
            ("/tmp/a\\\\b".to_owned(), true)
        );
    }

    #[test]
    fn absolute_paths() {
        assert_eq!(absolute(Some("/home/u"), "a/../b/./c"), "/home/u/b/c");
        assert_eq!(absolute(Some("/"), "x"), "/x");
        assert_eq!(absolute(None, "/etc//passwd"), "/etc/passwd");
        assert_eq!(absolute(None, "rel"), "rel");
        assert_eq!(absolute(Some("/a"), "../../.."), "/");
    }
}
