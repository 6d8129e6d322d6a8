//! `monitor learn`: asks the running agent to learn (one sensor, detection goes on), else runs
//! a pipeline of its own, or replays a recording; then generalises what was seen and writes the
//! profile. Everything that can be checked before learning is: the output file is writable, the
//! selectors compile, the profile merged into is valid.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use super::build::{Input, build};
use super::merge::Existing;
use super::render::render;
use super::{Finished, LearnRequest, SelectorArgs};
use crate::agent::control::{AgentLine, ClientLine, MAX_ANSWER, Request, read_line};
use crate::agent::{Options, run_pipeline, runtime};
use crate::cli::{Cli, Command, LearnArgs, default_rules};
use crate::rules::RuleSet;

/// `90s`, `10m`, `1h`, `500ms`, or plain seconds.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 10m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?}: units are ms, s, m, h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("invalid duration {s:?}: it must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Fails unless `out` can be written: its directory exists and takes a new file, and an
/// existing file is writable.
fn check_writable(out: &Path) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let probe = dir.join(format!(".monitor-learn-{}.probe", std::process::id()));
    fs::File::create(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .with_context(|| format!("--out {}: cannot write in {}", out.display(), dir.display()))?;
    if out.exists() {
        fs::OpenOptions::new()
            .append(true)
            .open(out)
            .with_context(|| format!("--out {}: the file is not writable", out.display()))?;
    }
    Ok(())
}

/// Writes `text` to `out` through a temporary file in the same directory (never half a file).
fn write_atomically(out: &Path, text: &str) -> anyhow::Result<()> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile.yaml".to_owned());
    let tmp = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, out)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing {}", out.display()))
    })
}

fn rule_paths(args: &LearnArgs) -> Vec<PathBuf> {
    if args.rules.is_empty() {
        default_rules()
    } else {
        args.rules.clone()
    }
}

/// The selectors given as options.
fn selectors(args: &LearnArgs) -> SelectorArgs {
    SelectorArgs {
        exe: args.exe.clone(),
        program: args.program.clone(),
        argv_contains: args.argv_contains.clone(),
        parent_exe: args.parent_exe.clone(),
        container_id: args.container_id.clone(),
        pod_uid: args.pod_uid.clone(),
        uid: args.uid.clone(),
    }
}

pub fn run(args: LearnArgs) -> anyhow::Result<()> {
    check_writable(&args.out)?;
    let request = LearnRequest {
        name: args.name.clone(),
        profile: args.profile.clone(),
        selectors: selectors(&args),
    };
    if request.profile.is_none() {
        // Bad selectors are reported now, not by the agent after a connection.
        request
            .spec(&RuleSet::default())
            .map_err(anyhow::Error::msg)?;
    }
    let merge = match &args.merge {
        Some(path) => Some(Existing::read(path).map_err(|e| {
            anyhow::anyhow!("--merge {}: the profile is invalid:\n{e}", path.display())
        })?),
        None => None,
    };
    let finished = match &args.from_events {
        Some(recording) => {
            let rules = RuleSet::load(&rule_paths(&args)).context("the rules are invalid")?;
            super::replay::replay(recording, &request, &rules)?
        }
        None => runtime()?.block_on(live(&args, request))?,
    };
    write_profile(&args, finished, merge)
}

/// Learns from live processes: through the agent when one answers, else standalone.
async fn live(args: &LearnArgs, request: LearnRequest) -> anyhow::Result<Finished> {
    if !args.standalone {
        match UnixStream::connect(&args.control_socket).await {
            Ok(stream) => {
                eprintln!(
                    "monitor: learning through the running agent ({})",
                    args.control_socket.display()
                );
                return through_agent(stream, args, request).await;
            }
            Err(e) => tracing::debug!(error = %e, "no agent on the control socket"),
        }
    }
    eprintln!(
        "monitor: no agent answers on {}: learning with a sensor of its own",
        args.control_socket.display()
    );
    standalone(args, request).await
}

/// Waits for the window to end: the duration, SIGINT or SIGTERM.
async fn window(duration: Option<Duration>) -> anyhow::Result<&'static str> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let sleep = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    Ok(tokio::select! {
        _ = sleep => "the duration ended",
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    })
}

fn ready(args: &LearnArgs, processes: usize) -> anyhow::Result<()> {
    eprintln!(
        "monitor: learning{} ({} running process(es) matched so far); stop with Ctrl-C",
        args.duration
            .map(|d| format!(" for {} s", d.as_secs()))
            .unwrap_or_default(),
        processes
    );
    if let Some(path) = &args.ready_file {
        fs::write(path, b"learning\n")
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    Ok(())
}

async fn through_agent(
    stream: UnixStream,
    args: &LearnArgs,
    request: LearnRequest,
) -> anyhow::Result<Finished> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = serde_json::to_vec(&ClientLine::Learn(Box::new(request)))?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let answer = |line: Option<String>| -> anyhow::Result<AgentLine> {
        let line = line.context("the agent closed the control connection")?;
        serde_json::from_str(&line).context("the agent sent a line this version cannot read")
    };
    let started = match answer(read_line(&mut r, MAX_ANSWER).await?)? {
        AgentLine::Started(s) => s,
        AgentLine::Error(e) => bail!("the agent refused to learn: {e}"),
        AgentLine::Finished(_) => bail!("the agent answered out of turn"),
    };
    ready(args, started.processes)?;
    let why = window(args.duration).await?;
    eprintln!("monitor: {why}: collecting what was learned");
    let mut line = serde_json::to_vec(&ClientLine::Finish(true))?;
    line.push(b'\n');
    w.write_all(&line).await?;
    match answer(read_line(&mut r, MAX_ANSWER).await?)? {
        AgentLine::Finished(f) => Ok(*f),
        AgentLine::Error(e) => bail!("the agent could not finish learning: {e}"),
        AgentLine::Started(_) => bail!("the agent answered out of turn"),
    }
}

async fn standalone(args: &LearnArgs, request: LearnRequest) -> anyhow::Result<Finished> {
    let Command::Run(mut run) = Cli::parse_from(["monitor", "run"]).command else {
        unreachable!("`monitor run` parses as the run command")
    };
    run.rules = rule_paths(args);
    run.no_control_socket = true;
    run.stats_interval = 0;
    let (tx, rx) = mpsc::channel(4);
    let pipeline = tokio::spawn(run_pipeline(
        run,
        Options {
            requests: Some(rx),
            control: None,
            signals: false,
            quiet: true,
        },
    ));
    let failed = |pipeline: tokio::task::JoinHandle<anyhow::Result<()>>| async move {
        match pipeline.await {
            Ok(Err(e)) => e.context("the sensor could not run"),
            Ok(Ok(())) => anyhow::anyhow!("the sensor stopped early"),
            Err(e) => anyhow::anyhow!("the sensor task failed: {e}"),
        }
    };
    let (reply, rx) = oneshot::channel();
    if tx
        .send(Request::Start {
            request: Box::new(request),
            reply,
        })
        .await
        .is_err()
    {
        return Err(failed(pipeline).await);
    }
    let started = match rx.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => bail!("{e}"),
        Err(_) => return Err(failed(pipeline).await),
    };
    ready(args, started.processes)?;
    let why = window(args.duration).await?;
    eprintln!("monitor: {why}: collecting what was learned");
    let (reply, rx) = oneshot::channel();
    tx.send(Request::Finish {
        session: started.session,
        reply,
    })
    .await
    .map_err(|_| anyhow::anyhow!("the sensor stopped before learning finished"))?;
    let finished = rx.await.ok().flatten();
    let _ = tx.send(Request::Shutdown).await;
    match pipeline.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the sensor stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the sensor task failed"),
    }
    finished.context("the learning session was lost")
}

fn write_profile(args: &LearnArgs, f: Finished, merge: Option<Existing>) -> anyhow::Result<()> {
    let s = &f.outcome.summary;
    if s.processes == 0 {
        bail!(
            "no process matched during the {:.0} s of learning, so there is nothing to write \
             (is the workload running, and do the selectors match it? they are a profile's \
             `match:` keys: e.g. --program litellm, --exe '/opt/venv/bin/python*')",
            s.secs
        );
    }
    // --merge wins; else --profile refines the profile's own file.
    let existing = match (merge, &f.profile_file) {
        (Some(e), _) => Some(e),
        (None, Some(file)) => Some(Existing::read(file).map_err(|e| {
            anyhow::anyhow!("the profile's file {} is invalid:\n{e}", file.display())
        })?),
        (None, None) => None,
    };
    let selectors = existing.is_none().then(|| selectors(args).written());
    let built = build(Input {
        outcome: &f.outcome,
        name: args
            .name
            .clone()
            .or_else(|| args.profile.clone())
            .unwrap_or_else(|| s.name.clone()),
        selectors: selectors.unwrap_or_default(),
        existing,
        collapse_above: args.collapse_above,
        credentials: f.credentials,
        nameservers: f.nameservers,
    });
    let text = render(&built.profile, built.merged_from.as_deref().unwrap_or(""));
    write_atomically(&args.out, &text)?;
    let p = &built.profile;
    eprintln!(
        "monitor: wrote profile `{}` to {}: {} entries ({} allow, {} startup) from {} \
         process(es), {} events",
        p.name,
        args.out.display(),
        p.allow.len() + p.startup.len(),
        p.allow.len(),
        p.startup.len(),
        s.processes,
        s.events
    );
    if !built.unseen.is_empty() {
        eprintln!(
            "monitor: {} entr{} of {} not seen while learning (kept, marked NOT SEEN):",
            built.unseen.len(),
            if built.unseen.len() == 1 { "y" } else { "ies" },
            built.merged_from.as_deref().unwrap_or("the profile")
        );
        for u in &built.unseen {
            eprintln!("  {u}");
        }
    }
    if f.outcome.footprint.dropped > 0 {
        eprintln!(
            "monitor: warning: {} objects were not learned (bound of distinct objects reached)",
            f.outcome.footprint.dropped
        );
    }
    Ok(())
}
