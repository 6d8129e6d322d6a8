//! `--metrics-addr` and `--watch-rules` end to end: a real Prometheus (Debian's) scrapes the
//! agent and its query API returns the alert counter; the endpoints answer as kubelet's probes
//! expect (a read-only spool makes the agent unready, an invalid reload does not); the rules
//! follow a ConfigMap-style symlink swap; a port in use stops the start; log lines carry no
//! colour codes when stderr is a file. Loopback only.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use monitor_tests::{
    Proc, ReservedPort, TIMEOUT, TempDir,
    deliver::{ForwardAgent, RULE, raise_alerts, wait_until, write_rules},
    path_str,
    rules::{http_get, url_encode},
    skip_or_fail,
};
use serde_json::Value;

const HTTP: Duration = Duration::from_secs(5);

/// An agent with `--metrics-addr 127.0.0.1:PORT` and `extra`; its metrics port.
fn launch(dir: &TempDir, rules: &Path, extra: &[String]) -> Option<(ForwardAgent, u16)> {
    let port = ReservedPort::new().release();
    let mut args = vec![
        "--metrics-addr".to_owned(),
        format!("127.0.0.1:{port}"),
        "--spool-dir".to_owned(),
        path_str(dir.join("spool")),
    ];
    args.extend_from_slice(extra);
    match ForwardAgent::launch(&dir.join("out.json"), rules, &args) {
        Ok(a) => Some((a, port)),
        Err(e) => {
            skip_or_fail(&e);
            None
        }
    }
}

/// `GET path` on the agent: status and body.
fn get(port: u16, path: &str) -> (u16, String) {
    http_get(port, path, HTTP).unwrap_or_else(|e| panic!("GET {path} on :{port}: {e}"))
}

/// The value of one sample line `name{labels} value` of the metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn wait_sample(port: u16, series: &str, want: f64) {
    wait_until(
        TIMEOUT,
        &format!("{series} == {want}"),
        || (sample(&get(port, "/metrics").1, series) == Some(want)).then_some(()),
        || get(port, "/metrics").1,
    );
}

#[test]
fn prometheus_scrapes_the_alert_counter() {
    let Some(prometheus) = ["/usr/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        skip_or_fail("no /usr/bin/prometheus (Debian's prometheus): the scrape is not tested");
        return;
    };
    let dir = TempDir::new("metrics-prometheus");
    let watched = dir.join("watched");
    fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    let Some((agent, port)) = launch(&dir, &rules, &[]) else {
        return;
    };
    let web = ReservedPort::new().release();
    let config = dir.join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: monitor\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ),
    )
    .expect("prometheus config");
    let _prom = Proc::spawn(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .arg("--log.level=warn"),
    );
    raise_alerts(&watched, "prom", 3);
    let query = format!("monitor_alerts_total{{rule=\"{RULE}\",severity=\"high\"}}");
    let target = format!("/api/v1/query?query={}", url_encode(&query));
    let value = wait_until(
        TIMEOUT * 2,
        "Prometheus to return the scraped alert counter",
        || {
            let (code, body) = http_get(web, &target, HTTP).ok()?;
            let v: Value = serde_json::from_str(&body).ok()?;
            let value = v["data"]["result"][0]["value"][1].as_str()?.to_owned();
            (code == 200 && value == "3").then_some(value)
        },
        || {
            let up = http_get(web, "/api/v1/targets", HTTP).map(|r| r.1);
            format!("targets: {up:?}\nagent: {}", agent.stderr())
        },
    );
    assert_eq!(value, "3");
    // The same counter on the agent's own page.
    let (code, text) = get(port, "/metrics");
    assert_eq!(code, 200);
    let series = format!("monitor_alerts_total{{rule=\"{RULE}\",severity=\"high\"}}");
    assert_eq!(sample(&text, &series), Some(3.0), "{text}");
}

#[test]
fn endpoints_answer_as_probes_expect_and_count_exactly() {
    let dir = TempDir::new("metrics-endpoints");
    let watched = dir.join("watched");
    fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    // A network sink makes the spool part of readiness (nothing listens on its port).
    let spool = dir.join("spool");
    let sink = ReservedPort::new();
    let extra = vec![
        "--output".to_owned(),
        format!("http://127.0.0.1:{}/hook", sink.port()),
    ];
    let Some((agent, port)) = launch(&dir, &rules, &extra) else {
        return;
    };
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(port, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(get(port, "/nope").0, 404);

    raise_alerts(&watched, "exact", 2);
    let series = format!("monitor_alerts_total{{rule=\"{RULE}\",severity=\"high\"}}");
    wait_sample(port, &series, 2.0);
    let text = get(port, "/metrics").1;
    assert_eq!(
        sample(&text, "monitor_rules_detections"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "monitor_rules_profiles"), Some(0.0), "{text}");
    assert!(
        sample(&text, "monitor_events_total{kind=\"open\"}").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(text.contains("monitor_build_info{version=\""), "{text}");
    assert!(text.contains("monitor_kernel_info{release=\""), "{text}");
    assert!(text.contains("monitor_sink_pending{sink=\""), "{text}");

    // A spool where no file can be created (immutable, which binds root too): not ready,
    // and says why.
    let (code, body) = {
        let _immutable = Immutable::set(&spool);
        get(port, "/readyz")
    };
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("spool directory") && body.contains("not writable"),
        "{body}"
    );
    assert_eq!(get(port, "/readyz").0, 200);

    // An invalid reload: the old rules stay, ready stays, the metrics say it failed.
    fs::write(rules.join("broken.yaml"), "detection: [not valid\n").expect("broken rule");
    agent.hangup();
    wait_sample(port, "monitor_rules_last_reload_success", 0.0);
    assert_eq!(get(port, "/readyz").0, 200);
    raise_alerts(&watched, "after", 1);
    wait_sample(port, &series, 3.0);

    let stderr = agent.stderr_full();
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a log file:\n{stderr}"
    );
    assert!(stderr.contains("rules reload failed"), "{stderr}");
    drop(agent);
    drop(sink);
}

/// `chattr +i` on a directory, undone on drop (even when the test panicked).
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Self {
        let status = Command::new("chattr").arg("+i").arg(dir).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chattr +i {} failed",
            dir.display()
        );
        Self(dir.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A ConfigMap volume as kubelet writes it: `..<timestamp>/` with the files, `..data` pointing
/// at it, and each file name a link through `..data`.
struct ConfigMapDir {
    root: PathBuf,
    version: usize,
}

impl ConfigMapDir {
    fn new(root: PathBuf, file: &str, content: &str) -> Self {
        fs::create_dir_all(&root).expect("configmap dir");
        let mut me = Self { root, version: 0 };
        me.update(file, content);
        symlink(format!("..data/{file}"), me.root.join(file)).expect("file link");
        me
    }

    /// A new version, swapped in atomically (rename of a fresh `..data` link).
    fn update(&mut self, file: &str, content: &str) {
        self.version += 1;
        let v = format!("..2026_12_02_{:02}", self.version);
        fs::create_dir(self.root.join(&v)).expect("version dir");
        fs::write(self.root.join(&v).join(file), content).expect("version file");
        let tmp = self.root.join("..data_tmp");
        symlink(&v, &tmp).expect("new link");
        fs::rename(&tmp, self.root.join("..data")).expect("swap ..data");
    }
}

fn detection(name: &str, watched: &Path, prefix: &str) -> String {
    format!(
        "detection: {name}\ndescription: test\nseverity: medium\nmitre: [T1552]\non: [open]\n\
         when:\n  path: [\"{}/{prefix}*\"]\n",
        watched.display()
    )
}

#[test]
fn watched_rules_follow_a_configmap_swap_and_keep_the_old_ones_when_invalid() {
    let dir = TempDir::new("metrics-watch");
    let watched = dir.join("watched");
    fs::create_dir_all(&watched).expect("watched dir");
    let mut cm = ConfigMapDir::new(
        dir.join("rules.d"),
        "local.yaml",
        &detection("first-rule", &watched, "first-"),
    );
    let Some((agent, port)) = launch(&dir, &cm.root, &["--watch-rules".to_owned()]) else {
        return;
    };
    cm.update("local.yaml", &detection("second-rule", &watched, "second-"));
    // Each try opens a new file; the reload is seen within a poll or two.
    let mut n = 0;
    wait_until(
        TIMEOUT,
        "the swapped-in detection to fire",
        || {
            n += 1;
            fs::write(watched.join(format!("second-{n}")), "").ok()?;
            let found = agent
                .records()
                .into_iter()
                .any(|r| r["kind"] == "alert" && r["rule"] == "second-rule");
            found.then_some(())
        },
        || agent.stderr(),
    );
    wait_sample(port, "monitor_rules_last_reload_success", 1.0);
    cm.update("local.yaml", "detection: [not valid\n");
    wait_sample(port, "monitor_rules_last_reload_success", 0.0);
    assert_eq!(get(port, "/readyz").0, 200);
    fs::write(watched.join("second-after-bad"), "").expect("open after the bad update");
    wait_until(
        TIMEOUT,
        "the kept detection to fire after the refused update",
        || {
            agent
                .records()
                .into_iter()
                .any(|r| {
                    r["kind"] == "alert"
                        && r["rule"] == "second-rule"
                        && r["event"]["path"]
                            .as_str()
                            .is_some_and(|p| p.ends_with("second-after-bad"))
                })
                .then_some(())
        },
        || agent.stderr(),
    );
}

#[test]
fn a_metrics_port_in_use_stops_the_start_with_its_address() {
    let dir = TempDir::new("metrics-in-use");
    let watched = dir.join("watched");
    fs::create_dir_all(&watched).expect("watched dir");
    let rules = write_rules(dir.path(), &watched);
    let taken = ReservedPort::new();
    let port = taken.port();
    let _listener = taken.listen().expect("listen on the reserved port");
    let bin = monitor_tests::agent_binary();
    let out = Command::new(&bin)
        .args(["run", "--no-control-socket", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--rules")
        .arg(&rules)
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .output()
        .expect("run the agent");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for --metrics-addr"
        )),
        "{stderr}"
    );
}
