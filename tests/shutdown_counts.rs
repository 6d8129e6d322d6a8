//! Stopping under load loses nothing silently: the last `agent_stats` accounts for every
//! record the kernel sent (`kernel.emitted` = `received`), and counts what the programs no
//! longer sent once the agent was stopping (`kernel.after_stop`) and what the full ring buffer
//! dropped (`kernel.ringbuf_drops`). A real agent stopped with SIGTERM while a process opens a
//! file in a loop.

use std::{thread, time::Duration};

use monitor_tests::{
    Proc, TempDir,
    deliver::{last_stats, launch_in, read_records},
    python,
};

const FLOOD: &str = "import os\nwhile True:\n    os.close(os.open('/etc/hostname', os.O_RDONLY))\n";

#[test]
fn the_last_stats_account_for_every_record_sent_while_opens_continue() {
    let dir = TempDir::new("shutdown-counts");
    let Some(agent) = launch_in(&dir, &["--events".to_owned()]) else {
        return;
    };
    // Dropped (killed by its PID) at the end of the test, also when it fails.
    let _flood = Proc::spawn(&mut python(FLOOD));
    thread::sleep(Duration::from_millis(500));
    agent.stop();
    let records = read_records(&dir.join("alerts.jsonl"));
    let stats = last_stats(&records).expect("a last agent_stats line");
    assert_eq!(stats["reason"], "shutdown", "{stats}");
    let k = &stats["kernel"];
    assert!(
        k["emitted"].as_u64().unwrap_or(0) > 1000,
        "a flood: {stats}"
    );
    assert_eq!(
        k["emitted"], stats["received"],
        "every record sent was read: {stats}"
    );
    assert_eq!(stats["decode_errors"], 0, "{stats}");
    assert!(k["after_stop"].is_u64(), "{stats}");
}
