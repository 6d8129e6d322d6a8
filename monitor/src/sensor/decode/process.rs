//! Process-family payloads: exec, fork, exit.

use monitor_common::{ExecEvent, ExitEvent, FLAG_ARGV_TRUNCATED, ForkEvent};

use super::{DecodeError, RawRecord};
use crate::{
    sensor::event::{ExecBody, ExitBody, ForkBody},
    sensor::text::escape_always,
};

pub fn exec(rec: &RawRecord<'_>) -> Result<ExecBody, DecodeError> {
    let p: ExecEvent = rec.payload();
    let argv = rec
        .bytes(p.argv)?
        .map(|raw| {
            let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
            let args = raw.split(|&b| b == 0);
            // One field: when an argument is escaped, all are (so each reads back the same way).
            let valid: Option<Vec<&str>> =
                args.clone().map(|a| std::str::from_utf8(a).ok()).collect();
            match valid {
                Some(args) => args.into_iter().map(str::to_owned).collect(),
                None => {
                    rec.mark("argv");
                    args.map(escape_always).collect()
                }
            }
        })
        .unwrap_or_default();
    Ok(ExecBody {
        filename: rec.string("filename", p.filename)?.unwrap_or_default(),
        argv,
        cwd: rec.dentry_path("cwd", p.cwd)?,
        euid: p.euid,
        egid: p.egid,
        argv_truncated: rec.header.flags & FLAG_ARGV_TRUNCATED != 0,
        exe: rec.dentry_path("exe", p.exe)?,
    })
}

pub fn fork(rec: &RawRecord<'_>) -> ForkBody {
    let p: ForkEvent = rec.payload();
    ForkBody {
        child_pid: p.child_pid,
        child_start_time_ns: p.child_start_time_ns,
    }
}

/// Splits a wait(2) status: `(code << 8)` for a normal exit, the signal number (low 7 bits)
/// for a kill.
pub fn exit(rec: &RawRecord<'_>) -> ExitBody {
    let p: ExitEvent = rec.payload();
    exit_body(p.exit_code)
}

pub fn exit_body(status: u32) -> ExitBody {
    let sig = (status & 0x7f) as i32;
    if sig == 0 {
        ExitBody {
            exit_code: ((status >> 8) & 0xff) as i32,
            signal: None,
        }
    } else {
        ExitBody {
            exit_code: 128 + sig,
            signal: Some(sig),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exit_body;

    #[test]
    fn wait_status() {
        let b = exit_body(3 << 8);
        assert_eq!((b.exit_code, b.signal), (3, None));
        let b = exit_body(9);
        assert_eq!((b.exit_code, b.signal), (137, Some(9)));
        let b = exit_body(0x80 | 11);
        assert_eq!((b.exit_code, b.signal), (139, Some(11)));
    }
}
