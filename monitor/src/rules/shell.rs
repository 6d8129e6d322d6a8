//! What a shell's argv says about how it runs (the `interactive_shell` key of detections).

/// A shell's argv that reads commands from its terminal: `-i`, or no `-c` and no script
/// (`bash`, `sh -l`, `/bin/bash -p`; not `sh -c CMD` nor `bash script.sh`). Option words the
/// shells take an argument after (`-o opt`, `-O opt`, `+O opt`) do not make a script.
pub(super) fn interactive(argv: &[String]) -> bool {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-i" | "--interactive" | "-s" => return true,
            "-c" => return false,
            // What follows is a script, if anything.
            "--" => return args.next().is_none(),
            "-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file" => {
                args.next();
            }
            // Clustered single-letter options: `-ic`, `-li`.
            s if s.starts_with('-') && !s.starts_with("--") && s.len() > 1 => {
                if s.contains('i') {
                    return true;
                }
                if s.contains('c') {
                    return false;
                }
            }
            s if s.starts_with("--") || s.starts_with('+') => {}
            // A script (or a command name for `sh -c`, handled above).
            _ => return false,
        }
    }
    true
}
