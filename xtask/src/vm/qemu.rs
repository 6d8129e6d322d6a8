//! Boots one guest and reads its serial console: the tests' output streams through (prefixed
//! with the kernel's name) and into a log file; the init script's `@@vm-test` markers say which
//! test binary ran and how it exited.

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::kernels::{Fetched, Kernel, LSM_WITH_BPF, LSM_WITHOUT_BPF, NO_BPF_LOOP, SKIPS_IN};

/// How each test binary ended in one guest.
#[derive(Default)]
pub struct Outcome {
    /// The guest's `uname -r` and active LSMs, from its first marker.
    banner: String,
    /// (test binary, exit status, libtest's last `test result:` line).
    ran: Vec<(String, i32, String)>,
    /// The init script reached its end.
    done: bool,
    /// Why the guest did not finish, if it did not.
    trouble: Option<String>,
}

impl Outcome {
    /// Every test binary ran and exited 0.
    pub fn passed(&self, tests: &[String]) -> bool {
        self.done
            && self.trouble.is_none()
            && tests
                .iter()
                .all(|t| self.ran.iter().any(|(n, rc, _)| n == t && *rc == 0))
    }

    /// One line: the kernel, then cargo's counts summed over the binaries, and what went wrong.
    pub fn summary(&self, kernel: &Kernel, tests: &[String]) -> String {
        let name = kernel.name;
        let (mut passed, mut failed, mut ignored) = (0, 0, 0);
        let tests_ran: Vec<_> = self
            .ran
            .iter()
            .filter(|(n, ..)| tests.contains(n))
            .collect();
        for (_, _, result) in &tests_ran {
            passed += count(result, " passed");
            failed += count(result, " failed");
            ignored += count(result, " ignored");
        }
        let verdict = if self.passed(tests) { "ok" } else { "FAILED" };
        let mut line = format!(
            "{name} ({}): test result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; {} of {} test binaries ran",
            self.banner,
            tests_ran.len(),
            tests.len()
        );
        for (test, rc, _) in &self.ran {
            if *rc != 0 {
                line.push_str(&format!("; {test} exited {rc}"));
            }
        }
        // The skipped tests are enforce's: said only when that binary was selected.
        if !kernel.skip.is_empty() && tests.iter().any(|t| t == SKIPS_IN) {
            line.push_str(&format!(
                "; {} tests not run ({NO_BPF_LOOP})",
                kernel.skip.len()
            ));
        }
        if let Some(trouble) = &self.trouble {
            line.push_str(&format!("; {trouble}"));
        }
        line
    }
}

/// The number before `word` in a libtest result line (`... 12 passed; 0 failed; ...`).
fn count(result: &str, word: &str) -> u64 {
    result
        .split(';')
        .find_map(|part| part.trim().strip_suffix(word))
        .and_then(|p| p.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Boots `kernel` with `initrd` and waits for it to power off (or `timeout_minutes`).
pub fn boot(
    kernel: &Kernel,
    fetched: &Fetched,
    initrd: &Path,
    log: &Path,
    timeout_minutes: u64,
) -> Result<Outcome> {
    // The LSM list is always given: Debian's default list has `bpf` on 6.1 and later, and a
    // name without `-lsm` stands for a kernel without BPF LSM.
    let lsm = if kernel.lsm {
        LSM_WITH_BPF
    } else {
        LSM_WITHOUT_BPF
    };
    let mut append = format!("console=ttyS0 quiet panic=-1 oops=panic {lsm}");
    if !kernel.skip.is_empty() {
        // Read by the init script: each becomes a `--skip` for the test binaries.
        append.push_str(&format!(" vmtest.skip={}", kernel.skip.join(",")));
    }
    eprintln!("xtask: booting {} ({})", kernel.name, fetched.release);
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-cpu", "max", "-smp", "2", "-m", "3072"])
        .args(["-nographic", "-no-reboot", "-nic", "none", "-kernel"])
        .arg(&fetched.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("could not start qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let stdout = child.stdout.take().context("no console from qemu")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_owned(),
                )
                .is_err()
            {
                break;
            }
        }
    });
    let mut file =
        fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let deadline = Instant::now() + Duration::from_secs(timeout_minutes * 60);
    let mut outcome = Outcome::default();
    let mut last_result = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let _ = writeln!(file, "{line}");
                println!("[{}] {line}", kernel.name);
                read_marker(&line, &mut outcome, &mut last_result);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                outcome.trouble = Some(format!(
                    "the guest ran over {timeout_minutes} minutes and was stopped"
                ));
                let _ = child.kill();
                break;
            }
        }
    }
    let status = child.wait().context("qemu did not finish")?;
    if !outcome.done && outcome.trouble.is_none() {
        outcome.trouble = Some(format!(
            "the guest stopped before the end of its run (qemu: {status}); see {}",
            log.display()
        ));
    }
    Ok(outcome)
}

fn read_marker(line: &str, outcome: &mut Outcome, last_result: &mut String) {
    if let Some(result) = line.trim_start().strip_prefix("test result: ") {
        *last_result = result.to_owned();
        return;
    }
    // The console may put terminal escapes before the first marker.
    let Some(marker) = line
        .find("@@vm-test ")
        .map(|at| &line[at + "@@vm-test ".len()..])
    else {
        return;
    };
    let mut words = marker.split(' ');
    match words.next() {
        Some("kernel") => outcome.banner = words.collect::<Vec<_>>().join(" "),
        Some("begin") => last_result.clear(),
        Some("end") => {
            let name = words.next().unwrap_or_default().to_owned();
            let rc = words.next().and_then(|r| r.parse().ok()).unwrap_or(-1);
            outcome.ran.push((name, rc, std::mem::take(last_result)));
        }
        Some("done") => outcome.done = true,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{super::kernels::KERNELS, *};

    #[test]
    fn markers_and_result_lines_make_the_summary() {
        let mut o = Outcome::default();
        let mut last = String::new();
        for line in [
            "\x1b[2J@@vm-test kernel 6.1.0-50-cloud-amd64 lsm=lockdown,capability,bpf",
            "@@vm-test begin sensor_file",
            "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 9.1s",
            "@@vm-test end sensor_file 0",
            "@@vm-test begin enforce",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "@@vm-test end enforce 101",
            "@@vm-test done",
        ] {
            read_marker(line, &mut o, &mut last);
        }
        let tests = vec!["sensor_file".to_owned(), "enforce".to_owned()];
        assert!(!o.passed(&tests));
        assert_eq!(
            o.summary(&KERNELS[1], &tests),
            "debian-6.1 (6.1.0-50-cloud-amd64 lsm=lockdown,capability,bpf): test result: FAILED. \
             15 passed; 2 failed; 1 ignored; 2 of 2 test binaries ran; enforce exited 101"
        );
        assert!(o.passed(&tests[..1]));
    }
}
