//! Spool tests on real files.

use std::{
    fs::OpenOptions,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::super::{Spool, SpoolError, SpoolOptions};
use super::{TempDir, lines, open_spool};
use crate::testutil::Reap;

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

fn open(dir: &Path, sinks: &[&str]) -> Spool {
    open_spool(dir, SpoolOptions::new(1 << 20), &names(sinks))
        .expect("open spool")
        .0
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-"))
        })
        .collect();
    v.sort();
    v
}

fn seqs_and_lines(spool: &Spool, sink: &str) -> (Vec<u64>, Vec<Vec<u8>>) {
    let batch = spool.read(sink, 10_000, usize::MAX).unwrap();
    batch.records.into_iter().map(|r| (r.seq, r.line)).unzip()
}

#[test]
fn append_read_ack_round_trip() {
    let dir = TempDir::new("roundtrip");
    let spool = open(dir.path(), &["a"]);
    let input = lines(0, 3);
    for (i, l) in input.iter().enumerate() {
        let out = spool.append(l).unwrap();
        assert_eq!(
            (out.first_seq, out.records, out.dropped_records),
            (i as u64, 1, 0)
        );
    }
    let (seqs, got) = seqs_and_lines(&spool, "a");
    assert_eq!(seqs, vec![0, 1, 2]);
    assert_eq!(got, input);
    // Reading again without acknowledging gives the same records.
    assert_eq!(seqs_and_lines(&spool, "a").0, vec![0, 1, 2]);
    spool.ack("a", 1).unwrap();
    assert_eq!(spool.pending("a").unwrap(), 1);
    assert_eq!(
        seqs_and_lines(&spool, "a"),
        (vec![2], vec![input[2].clone()])
    );
    // Acknowledging an older position is a no-op; beyond the end is an error.
    spool.ack("a", 0).unwrap();
    assert_eq!(spool.pending("a").unwrap(), 1);
    assert!(matches!(
        spool.ack("a", 3),
        Err(SpoolError::AckBeyondEnd {
            seq: 3,
            next: 3,
            ..
        })
    ));
    assert!(matches!(
        spool.read("b", 1, 1),
        Err(SpoolError::UnknownSink(_))
    ));
    // Batch limits: records and bytes (at least one record).
    let more = spool.append_batch(&lines(3, 5)).unwrap();
    assert_eq!((more.first_seq, more.records), (3, 5));
    assert_eq!(spool.read("a", 2, usize::MAX).unwrap().records.len(), 2);
    assert_eq!(spool.read("a", 100, 1).unwrap().records.len(), 1);
}

#[test]
fn restart_resumes_from_the_cursor_and_keeps_sequence_numbers() {
    let dir = TempDir::new("restart");
    let input = lines(0, 5);
    {
        let spool = open(dir.path(), &["a", "b"]);
        spool.append_batch(&input).unwrap();
        assert_eq!(spool.read("a", 100, usize::MAX).unwrap().records.len(), 5);
        // A second agent on the same directory is refused.
        let second = Spool::open(dir.path(), SpoolOptions::new(1 << 20), &names(&["a"]));
        assert!(matches!(second, Err(SpoolError::Locked { .. })));
    }
    {
        let (spool, report) =
            open_spool(dir.path(), SpoolOptions::new(1 << 20), &names(&["a", "b"])).unwrap();
        assert_eq!(report.next_seq, 5);
        assert!(report.torn.is_empty() && report.new_sinks.is_empty());
        assert_eq!(
            seqs_and_lines(&spool, "a"),
            ((0..5).collect(), input.clone())
        );
        spool.ack("a", 2).unwrap();
        spool.ack("b", 4).unwrap();
    }
    {
        let spool = open(dir.path(), &["a", "b"]);
        assert_eq!(seqs_and_lines(&spool, "a").0, vec![3, 4]);
        assert!(seqs_and_lines(&spool, "b").0.is_empty());
        assert_eq!(spool.append(b"x\n").unwrap().first_seq, 5);
        spool.ack("a", 5).unwrap();
        spool.ack("b", 5).unwrap();
    }
    // Everything acknowledged, sink b removed, sink c added: numbering still continues and
    // the new sink starts with the next record.
    let (spool, report) =
        open_spool(dir.path(), SpoolOptions::new(1 << 20), &names(&["a", "c"])).unwrap();
    assert_eq!(report.next_seq, 6);
    assert_eq!(report.new_sinks, names(&["c"]));
    assert_eq!(report.forgotten_sinks, names(&["b"]));
    assert!(seqs_and_lines(&spool, "c").0.is_empty());
    assert_eq!(spool.append(b"y\n").unwrap().first_seq, 6);
    assert_eq!(seqs_and_lines(&spool, "c").0, vec![6]);
}

#[test]
fn torn_tail_is_discarded_and_reported() {
    let dir = TempDir::new("torn");
    let input = lines(0, 5);
    {
        let spool = open(dir.path(), &["a"]);
        for l in &input {
            spool.append(l).unwrap();
        }
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Cut the last record in the middle of its payload.
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (spool, report) =
        open_spool(dir.path(), SpoolOptions::new(1 << 20), &names(&["a"])).unwrap();
    assert_eq!(report.torn.len(), 1, "{report:?}");
    let torn = &report.torn[0];
    let last_frame = 16 + input[4].len() as u64;
    assert_eq!(torn.offset, len - last_frame);
    assert_eq!(torn.discarded_bytes, last_frame - 5);
    assert_eq!(report.next_seq, 4);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len - last_frame);
    assert_eq!(
        seqs_and_lines(&spool, "a"),
        ((0..4).collect(), input[..4].to_vec())
    );
    // The torn record was never acknowledged to the caller: its number is reused.
    assert_eq!(spool.append(b"again\n").unwrap().first_seq, 4);
}

#[test]
fn damaged_record_is_never_misread() {
    let dir = TempDir::new("damaged");
    let input = lines(0, 4);
    {
        let spool = open(dir.path(), &["a"]);
        spool.append_batch(&input).unwrap();
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Flip one payload byte of record 2: records 2 and 3 are cut, 0 and 1 stay.
    let at = 8 + 2 * (16 + input[0].len()) + 16 + 3;
    bytes[at] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let (spool, report) =
        open_spool(dir.path(), SpoolOptions::new(1 << 20), &names(&["a"])).unwrap();
    assert_eq!(report.torn.len(), 1);
    assert_eq!(report.torn[0].reason, "checksum mismatch");
    assert_eq!(
        seqs_and_lines(&spool, "a"),
        (vec![0, 1], input[..2].to_vec())
    );
}

#[test]
fn bounded_size_drops_oldest_and_counts() {
    let dir = TempDir::new("bounded");
    let options = SpoolOptions {
        max_bytes: 4096,
        segment_bytes: 1024,
    };
    let (spool, _) = open_spool(dir.path(), options, &names(&["slow", "fast"])).unwrap();
    let input = lines(0, 300);
    let mut dropped = 0;
    for l in &input {
        dropped += spool.append(l).unwrap().dropped_records;
        // "fast" keeps up, so only "slow" holds data back.
        let b = spool.read("fast", 100, usize::MAX).unwrap();
        if let Some(last) = b.records.last() {
            spool.ack("fast", last.seq).unwrap();
        }
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(on_disk <= options.max_bytes, "{on_disk} bytes on disk");
    }
    assert!(dropped > 0);
    assert_eq!(spool.stats().dropped_records, dropped);
    let batch = spool.read("slow", 10_000, usize::MAX).unwrap();
    assert_eq!(batch.skipped, dropped);
    let seqs: Vec<u64> = batch.records.iter().map(|r| r.seq).collect();
    // What is left is the newest records, contiguous, ending with the last one appended.
    assert_eq!(seqs.last(), Some(&299));
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(batch.skipped + seqs.len() as u64, 300);
    for r in &batch.records {
        assert_eq!(r.line, input[r.seq as usize]);
    }
    assert_eq!(spool.stats().sinks[0].skipped, dropped);
    // The sink that kept up lost nothing.
    assert_eq!(spool.stats().sinks[1].skipped, 0);
    // An append larger than the whole spool is refused, not truncated.
    assert!(matches!(
        spool.append(&vec![b'x'; 5000]),
        Err(SpoolError::TooLarge { .. })
    ));
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = TempDir::new("gc");
    let options = SpoolOptions {
        max_bytes: 1 << 20,
        segment_bytes: 1024,
    };
    let (spool, _) = open_spool(dir.path(), options, &names(&["a", "b"])).unwrap();
    spool.append_batch(&lines(0, 100)).unwrap();
    for i in 0..100 {
        spool.append(&lines(100 + i, 1)[0]).unwrap();
    }
    let before = segment_files(dir.path()).len();
    assert!(before > 3, "{before} segments");
    spool.ack("a", 199).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        before,
        "b still needs them"
    );
    let (seqs, _) = seqs_and_lines(&spool, "b");
    assert_eq!(seqs, (0..200).collect::<Vec<u64>>());
    spool.ack("b", 150).unwrap();
    let mid = segment_files(dir.path()).len();
    assert!(mid < before && mid > 1);
    assert_eq!(
        seqs_and_lines(&spool, "b").0,
        (151..200).collect::<Vec<u64>>()
    );
    spool.ack("b", 199).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the active segment stays"
    );
    assert_eq!(spool.stats().segments, 1);
}

/// Mounts a tiny tmpfs for the test and unmounts it on drop.
struct TinyFs {
    dir: TempDir,
}

impl TinyFs {
    fn mount(bytes: u64) -> Result<Self, String> {
        let dir = TempDir::new("tmpfs");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self { dir })
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn disk_full_is_an_error_not_a_panic() {
    let fs = match TinyFs::mount(64 * 1024) {
        Ok(fs) => fs,
        Err(e) => {
            crate::testutil::skip_or_fail(&format!("cannot mount a tmpfs (needs root): {e}"));
            return;
        }
    };
    let dir = fs.dir.path().join("spool");
    let filler = fs.dir.path().join("filler");
    // The bound is larger than the file system, so the disk fills before the spool drops.
    let (spool, _) = open_spool(&dir, SpoolOptions::new(1 << 20), &names(&["a"])).unwrap();
    std::fs::write(&filler, vec![0u8; 40 * 1024]).unwrap();
    let line = vec![b'z'; 700];
    let mut ok = 0u64;
    let err = loop {
        match spool.append(&line) {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 1000, "the tmpfs never filled");
    };
    let io = err.io_error().expect("an I/O error");
    assert_eq!(io.raw_os_error(), Some(libc::ENOSPC), "{err}");
    // Still full: still an error, still no panic.
    assert!(spool.append(&line).is_err());
    // Space comes back: appending works again, right after the last good record.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(spool.append(&line).unwrap().first_seq, ok);
    drop(spool);
    let (spool, report) = open_spool(&dir, SpoolOptions::new(1 << 20), &names(&["a"])).unwrap();
    assert!(report.torn.is_empty(), "{report:?}");
    let (seqs, got) = seqs_and_lines(&spool, "a");
    assert_eq!(seqs, (0..=ok).collect::<Vec<u64>>());
    assert!(got.iter().all(|l| *l == line));
    drop(spool);
    drop(fs);
}

/// Environment variable that turns [`crash_child`] on and names its spool directory.
const CRASH_DIR_ENV: &str = "MONITOR_DELIVER_CRASH_DIR";

/// Child half of [`sigkill_loses_nothing_appended`]: appends (and now and then acknowledges)
/// until killed, printing each sequence number once `append` or `ack` returned.
#[test]
#[ignore = "run by sigkill_loses_nothing_appended in a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let options = SpoolOptions {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
    };
    let (spool, _) = open_spool(Path::new(&dir), options, &names(&["a"])).unwrap();
    let mut out = std::io::stdout().lock();
    // Bounded, in case the parent dies without killing us.
    for i in 0..200_000usize {
        let seq = spool.append(&lines(i, 1)[0]).unwrap().first_seq;
        writeln!(out, "durable {seq}").unwrap();
        if i % 7 == 6 {
            spool.ack("a", seq - 3).unwrap();
            writeln!(out, "acked {}", seq - 3).unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_loses_nothing_appended() {
    let dir = TempDir::new("sigkill");
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let mut child = Reap(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("{module}::crash_child")])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CRASH_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let (mut durable, mut acked) = (None::<u64>, None::<u64>);
    for line in stdout.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("durable ") {
            durable = Some(n.parse().unwrap());
        } else if let Some(n) = line.strip_prefix("acked ") {
            acked = Some(n.parse().unwrap());
        }
        if durable.is_some_and(|d| d >= 500) {
            break;
        }
    }
    // SIGKILL in the middle of the append loop (the pipe stays open until it is dead, so
    // the child never sees a write error first).
    drop(child);
    drop(stdout);
    let durable = durable.expect("the child reported no append");
    let acked = acked.expect("the child reported no ack");
    let (spool, report) = open_spool(dir.path(), SpoolOptions::new(1 << 20), &names(&["a"]))
        .expect("reopen after SIGKILL");
    let batch = spool.read("a", usize::MAX, usize::MAX).unwrap();
    let seqs: Vec<u64> = batch.records.iter().map(|r| r.seq).collect();
    // Resumes after the last persisted acknowledgement (or later, if the child acknowledged
    // more before it died) and holds every record append returned for, intact.
    let first = *seqs.first().expect("records after the cursor");
    assert!(first > acked, "cursor went back: {first} <= {acked}");
    assert!(*seqs.last().unwrap() >= durable, "{report:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    for r in &batch.records {
        assert_eq!(r.line, lines(r.seq as usize, 1)[0]);
    }
    assert_eq!(batch.skipped, 0);
}
