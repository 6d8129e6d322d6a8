//! Whether two path globs can match a common path, decided exactly (not by sampling): a learned
//! glob that could reach a path a credential detection watches gets an exclusion for it.
//!
//! Written here rather than taken from a crate: globset and the regex crates compile patterns
//! to matchers of strings; none decides whether two patterns intersect. The patterns are small
//! (a few segments of a few tokens), so a memoised walk over both at once is enough.
//!
//! Semantics are globset's with `literal_separator`: `*`, `?` and classes stay within a
//! segment; a segment that is exactly `**` spans any number of segments (taken as zero or
//! more, which can only make the answer "yes" more often: the safe side); `{a,b}` alternates;
//! `\x` is a literal `x`; `~/` stands for `/root/` and `/home/*/`.

use std::collections::HashMap;

use crate::rules::expand_home;

/// Most alternatives one pattern's braces expand to; beyond, the pattern is assumed to meet
/// everything (the safe answer).
const MAX_ALTERNATIVES: usize = 64;

/// One token of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// A set of bytes (a literal is a set of one; `?` is every byte but `/`).
    Set(Box<[bool; 256]>),
    Star,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    /// A whole-segment `**`.
    Any,
    Toks(Vec<Tok>),
}

fn set_of(bytes: impl IntoIterator<Item = u8>) -> Tok {
    let mut s = Box::new([false; 256]);
    for b in bytes {
        s[usize::from(b)] = true;
    }
    Tok::Set(s)
}

fn any_byte() -> Tok {
    set_of((0..=255u8).filter(|&b| b != b'/'))
}

/// `[...]` starting after the `[` at `bytes[i]`; returns the token and the index after `]`.
fn class(bytes: &[u8], mut i: usize) -> (Tok, usize) {
    let negated = matches!(bytes.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut members = [false; 256];
    let mut first = true;
    while i < bytes.len() && (bytes[i] != b']' || first) {
        first = false;
        let lo = bytes[i];
        if bytes.get(i + 1) == Some(&b'-') && i + 2 < bytes.len() && bytes[i + 2] != b']' {
            for b in lo..=bytes[i + 2] {
                members[usize::from(b)] = true;
            }
            i += 3;
        } else {
            members[usize::from(lo)] = true;
            i += 1;
        }
    }
    let set = (0..=255u8).filter(|&b| b != b'/' && members[usize::from(b)] != negated);
    (set_of(set), i + 1)
}

fn segment(s: &str) -> Seg {
    if s == "**" {
        return Seg::Any;
    }
    let b = s.as_bytes();
    let (mut toks, mut i) = (Vec::new(), 0);
    while i < b.len() {
        match b[i] {
            b'*' => {
                while b.get(i) == Some(&b'*') {
                    i += 1;
                }
                toks.push(Tok::Star);
            }
            b'?' => {
                toks.push(any_byte());
                i += 1;
            }
            b'[' => {
                let (t, next) = class(b, i + 1);
                toks.push(t);
                i = next;
            }
            b'\\' if i + 1 < b.len() => {
                toks.push(set_of([b[i + 1]]));
                i += 2;
            }
            c => {
                toks.push(set_of([c]));
                i += 1;
            }
        }
    }
    Seg::Toks(toks)
}

/// `{a,b}` alternatives of `p`, innermost braces first; `None` past [`MAX_ALTERNATIVES`].
fn alternatives(p: &str) -> Option<Vec<String>> {
    let Some(close) = p.find('}') else {
        return Some(vec![p.to_owned()]);
    };
    let Some(open) = p[..close].rfind('{') else {
        return Some(vec![p.to_owned()]);
    };
    let (head, body, tail) = (&p[..open], &p[open + 1..close], &p[close + 1..]);
    let mut out = Vec::new();
    for alt in body.split(',') {
        for expanded in alternatives(&format!("{head}{alt}{tail}"))? {
            out.push(expanded);
            if out.len() > MAX_ALTERNATIVES {
                return None;
            }
        }
    }
    Some(out)
}

/// A pattern, parsed: one segment list per alternative (after `~/` and brace expansion).
#[derive(Clone, Debug)]
pub struct PathGlob {
    alts: Option<Vec<Vec<Seg>>>,
}

impl PathGlob {
    pub fn parse(pattern: &str) -> Self {
        let mut alts = Some(Vec::new());
        for home in expand_home(pattern) {
            match (alternatives(&home), alts.as_mut()) {
                (Some(list), Some(all)) => {
                    all.extend(list.iter().map(|a| a.split('/').map(segment).collect()));
                }
                _ => alts = None,
            }
        }
        Self { alts }
    }

    /// Whether some path matches both.
    pub fn intersects(&self, other: &PathGlob) -> bool {
        let (Some(a), Some(b)) = (&self.alts, &other.alts) else {
            return true;
        };
        a.iter()
            .any(|x| b.iter().any(|y| Walk::new(x, y).paths(0, 0)))
    }
}

/// Whether patterns `a` and `b` can match a common path.
#[cfg(test)]
pub fn intersects(a: &str, b: &str) -> bool {
    PathGlob::parse(a).intersects(&PathGlob::parse(b))
}

/// A walk over two segment lists at once, memoised.
struct Walk<'a> {
    a: &'a [Seg],
    b: &'a [Seg],
    memo: HashMap<(usize, usize), bool>,
}

impl<'a> Walk<'a> {
    fn new(a: &'a [Seg], b: &'a [Seg]) -> Self {
        Self {
            a,
            b,
            memo: HashMap::new(),
        }
    }

    /// Whether `a[i..]` and `b[j..]` match a common sequence of segments.
    fn paths(&mut self, i: usize, j: usize) -> bool {
        if let Some(&r) = self.memo.get(&(i, j)) {
            return r;
        }
        let (a, b) = (self.a, self.b);
        let r = match (a.get(i), b.get(j)) {
            (None, None) => true,
            // `**` matches nothing, or one more segment of the other side.
            (Some(Seg::Any), _) => self.paths(i + 1, j) || (j < b.len() && self.paths(i, j + 1)),
            (_, Some(Seg::Any)) => self.paths(i, j + 1) || (i < a.len() && self.paths(i + 1, j)),
            (Some(Seg::Toks(x)), Some(Seg::Toks(y))) => {
                segments_meet(x, y) && self.paths(i + 1, j + 1)
            }
            (None, Some(_)) | (Some(_), None) => false,
        };
        self.memo.insert((i, j), r);
        r
    }
}

/// Whether two segment patterns match a common string.
fn segments_meet(a: &[Tok], b: &[Tok]) -> bool {
    let mut memo = vec![None; (a.len() + 1) * (b.len() + 1)];
    tokens(a, b, 0, 0, &mut memo)
}

fn tokens(a: &[Tok], b: &[Tok], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
    let slot = i * (b.len() + 1) + j;
    if let Some(r) = memo[slot] {
        return r;
    }
    let r = match (a.get(i), b.get(j)) {
        (None, None) => true,
        // A star matches nothing, or one more character of the other side (whatever that
        // side's token produces, a star can produce too).
        (Some(Tok::Star), _) => {
            tokens(a, b, i + 1, j, memo) || (j < b.len() && tokens(a, b, i, j + 1, memo))
        }
        (_, Some(Tok::Star)) => {
            tokens(a, b, i, j + 1, memo) || (i < a.len() && tokens(a, b, i + 1, j, memo))
        }
        (Some(Tok::Set(x)), Some(Tok::Set(y))) => {
            x.iter().zip(y.iter()).any(|(p, q)| *p && *q) && tokens(a, b, i + 1, j + 1, memo)
        }
        (None, Some(_)) | (Some(_), None) => false,
    };
    memo[slot] = Some(r);
    r
}

#[cfg(test)]
mod tests {
    use super::intersects;

    #[test]
    fn literal_and_wildcard_segments() {
        assert!(intersects("/app/.env", "**/.env"));
        assert!(intersects("/app/**", "**/.env"));
        assert!(intersects(
            "/opt/venv/lib/python3*/site-packages/**",
            "**/.env.*"
        ));
        assert!(!intersects(
            "/opt/venv/lib/python3*/site-packages/*.py",
            "**/.env"
        ));
        assert!(intersects("/root/.cache/**", "~/.cache/**"));
        assert!(intersects("/home/*/.ssh/*", "~/.ssh/id_*"));
        assert!(!intersects("/home/*/.cache/**", "~/.ssh/id_*"));
        assert!(!intersects("/tmp/*", "~/.ssh/id_*"));
        assert!(intersects("/tmp/*", "/tmp/x"));
        assert!(
            !intersects("/tmp/*", "/tmp/x/y"),
            "`*` stays in its segment"
        );
        assert!(intersects("/etc/ssh/ssh_host_*_key", "/etc/ssh/*"));
        assert!(!intersects("/etc/ssh/*.pub", "/etc/ssh/ssh_host_*_key"));
    }

    #[test]
    fn stars_classes_and_braces_inside_segments() {
        assert!(intersects("/x/a*b", "/x/*ab"));
        assert!(!intersects("/x/a*", "/x/b*"));
        assert!(intersects("/x/*.pem", "/x/id_*"));
        assert!(!intersects("/x/[0-9]*", "/x/[a-z]*"));
        assert!(intersects("/x/[!a-z]*", "/x/1"));
        assert!(!intersects("/x/[!a-z]", "/x/q"));
        assert!(intersects("/x/?", "/x/[ab]"));
        assert!(!intersects("/x/??", "/x/?"));
        assert!(intersects("/x/{a,b}/c", "/x/b/*"));
        assert!(!intersects("/x/{a,b}/c", "/x/d/*"));
        assert!(intersects("/x/\\*", "/x/[*]"));
        assert!(!intersects("/x/\\*", "/x/a"));
    }

    #[test]
    fn double_stars_span_segments_on_either_side() {
        assert!(intersects(
            "/run/secrets/kubernetes.io/serviceaccount/**/token",
            "/run/**"
        ));
        assert!(intersects("/a/**/z", "/a/b/**"));
        assert!(intersects("**/x", "**/x"));
        assert!(!intersects("/a/**/z", "/b/**"));
        assert!(!intersects("/a/**/*.py", "**/.env"));
        assert!(intersects("/a/**/*", "**/.env"));
    }
}
