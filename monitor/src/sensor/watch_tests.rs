//! The watch protocol against the real kernel programs: user space decides about a process
//! from fork and exec events it reads after the fact; a late decision must not unwatch an image
//! the kernel started watching since. (A late fork decision once unwatched a profiled Python
//! process between its first and second open: the second never reached the rules.)

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    sensor::load::{Sensor, SensorConfig},
    testutil::{Reap, skip_or_fail},
};

/// Polls `pid`'s field until `want` (the kernel updates it from its tracepoints).
#[track_caller]
fn wait_field(sensor: &Sensor, pid: u32, want: (bool, u64)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = sensor.watched().field(pid);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid}: (watched, undecided execs) is {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn late_decisions_never_unwatch_an_image_exec_d_since() {
    let config = SensorConfig {
        watch_on_exec: true,
        ..SensorConfig::default()
    };
    let sensor = match Sensor::load(&config) {
        Ok(s) => s,
        Err(e) => return skip_or_fail(&format!("cannot load the probes: {e}")),
    };
    let watch = sensor.watched();
    // A shell that execs `sleep` once it reads a line: two images, one pid.
    let mut child = Reap(
        Command::new("/bin/sh")
            .args(["-c", "read line; exec /bin/sleep 30"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh"),
    );
    let pid = child.0.id();
    // The kernel watched the shell at its exec (watch-on-exec), one exec undecided.
    wait_field(&sensor, pid, (true, 1));
    // The fork decision, read late: "not profiled". It must not unwatch the shell.
    watch.unwatch_settled(pid);
    assert_eq!(
        watch.field(pid),
        (true, 1),
        "a late fork decision unwatched"
    );

    // The shell execs `sleep` before user space has decided about the shell.
    let mut stdin = child.0.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("write to sh");
    wait_field(&sensor, pid, (true, 2));
    // The shell's exec decided "not profiled": `sleep` still waits for its own decision.
    watch.exec_decided(pid, false);
    assert_eq!(
        watch.field(pid),
        (true, 1),
        "a late exec decision unwatched"
    );
    // `sleep`'s exec decided "not profiled": now it is unwatched.
    watch.exec_decided(pid, false);
    assert_eq!(watch.field(pid), (false, 0));
    // Decided and settled: later decisions apply at once.
    watch.watch(pid);
    assert_eq!(watch.field(pid), (true, 0));
    watch.unwatch_settled(pid);
    assert_eq!(watch.field(pid), (false, 0));
    watch.watch(pid);

    // At exit the kernel clears the field for the next process with this pid.
    drop(child);
    wait_field(&sensor, pid, (false, 0));
}
