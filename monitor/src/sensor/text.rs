//! Kernel and `/proc` bytes as text: exact where they are valid UTF-8, escaped (reversibly)
//! where they are not.

/// Renders arbitrary bytes as a `String` without losing information: valid UTF-8 as it is,
/// exact after JSON decoding; anything else in its escaped form ([`escape_always`]).
///
/// Control characters are valid UTF-8 and are kept; sinks that print to terminals must escape
/// them for display themselves.
pub fn escape_bytes(bytes: &[u8]) -> String {
    text(bytes).0
}

/// [`escape_bytes`], and whether the text is in the escaped form: one pass over the bytes.
pub fn text(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (escape_always(bytes), true),
    }
}

/// The escaped form: each byte that is not part of valid UTF-8 becomes `\xNN` (two lowercase
/// hex digits), and a literal backslash becomes `\\`, so the form is reversible: `\x` always
/// starts an escaped byte, never the literal text `\x` from the input (that one is `\\x`).
/// Events name the fields in this form (`escaped`).
pub fn escape_always(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            out.push('\\');
            out.push('x');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape_always, escape_bytes, text};

    /// Inverse of `escape_bytes`, to prove the encoding is reversible.
    fn unescape(s: &str) -> Vec<u8> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                if bytes[i + 1] == b'\\' {
                    out.push(b'\\');
                    i += 2;
                } else {
                    assert_eq!(bytes[i + 1], b'x', "unknown escape in {s:?}");
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                }
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn valid_utf8_is_unchanged() {
        assert_eq!(escape_bytes(b"/usr/bin/python3"), "/usr/bin/python3");
        assert_eq!(escape_bytes("café ☕ 日本".as_bytes()), "café ☕ 日本");
        assert_eq!(escape_bytes(b""), "");
        assert_eq!(escape_bytes(b"tab\there\n"), "tab\there\n");
    }

    #[test]
    fn invalid_bytes_become_hex_escapes() {
        assert_eq!(escape_bytes(b"\xff"), "\\xff");
        assert_eq!(escape_bytes(b"a\x80b"), "a\\x80b");
        // A truncated multi-byte sequence: each of its bytes is escaped.
        assert_eq!(escape_bytes(b"x\xe2\x82"), "x\\xe2\\x82");
        // Overlong encoding of '/' must not turn into '/'.
        assert_eq!(escape_bytes(b"\xc0\xaf"), "\\xc0\\xaf");
        // Valid UTF-8 after an invalid byte is kept.
        assert_eq!(escape_bytes("\u{fe}é".as_bytes()), "þé");
        assert_eq!(escape_bytes(b"\xfe\xc3\xa9"), "\\xfeé");
    }

    #[test]
    fn backslash_is_kept_in_valid_text_and_doubled_in_escaped_text() {
        assert_eq!(escape_bytes(b"\\"), "\\");
        assert_eq!(escape_bytes(b"C:\\dir"), "C:\\dir");
        assert!(!text(b"C:\\dir").1 && text(b"C:\\\xff").1);
        assert_eq!(escape_bytes(b"C:\\\xff"), "C:\\\\\\xff");
        // In the escaped form, the literal text `\xff` and the byte 0xff render differently.
        assert_eq!(escape_always(b"\\xff"), "\\\\xff");
        assert_ne!(escape_always(b"\\xff"), escape_always(b"\xff"));
    }

    #[test]
    fn escaping_round_trips() {
        let samples: [&[u8]; 7] = [
            b"",
            b"plain",
            b"\\",
            b"\\x41",
            b"\xff\xfe\\\x00end",
            "ünï\\cødé".as_bytes(),
            b"\xe2\x82\xac\xe2\x82",
        ];
        for s in samples {
            assert_eq!(unescape(&escape_always(s)), s, "round trip of {s:?}");
            let (out, escaped) = text(s);
            assert_eq!(out, escape_bytes(s));
            match escaped {
                true => assert_eq!(unescape(&out), s, "round trip of {s:?}"),
                false => assert_eq!(out.as_bytes(), s, "exact: {s:?}"),
            }
        }
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(unescape(&escape_bytes(&all)), all);
    }
}
