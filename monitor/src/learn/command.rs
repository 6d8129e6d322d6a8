//! `monitor learn`: asks the running agent to learn (one sensor, detection goes on), else runs
//! a pipeline of its own, or replays a recording; then generalises what was seen and writes the
//! profile. Everything that can be checked before learning is: the output file is writable, the
//! selectors compile, the profile merged into is valid.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use super::build::{Input, build};
use super::merge::Existing;
use super::output::{check_writable, salvage, write_atomically};
use super::render::render;
use super::{Finished, LearnRequest, SelectorArgs};
use crate::agent::control::{AgentLine, ClientLine, MAX_ANSWER, Request, read_line};
use crate::agent::{Options, run_pipeline, runtime};
use crate::cli::{Cli, Command, LearnArgs, default_rules};
use crate::rules::RuleSet;

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
        image: args.image.clone(),
        container_name: args.container_name.clone(),
        namespace: args.namespace.clone(),
    }
}

pub fn run(args: LearnArgs) -> anyhow::Result<()> {
    check_writable(&args.out)?;
    let request = LearnRequest {
        name: args.name.clone(),
        profile: args.profile.clone(),
        selectors: selectors(&args),
    };
    request.check_name().map_err(anyhow::Error::msg)?;
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
    let (finished, existing) = match &args.from_events {
        Some(recording) => {
            let rules = RuleSet::load(&rule_paths(&args)).context("the rules are invalid")?;
            let finished = super::replay::replay(recording, &request, &rules)?;
            let existing = refined(merge, finished.profile_file.as_deref())?;
            (finished, existing)
        }
        None => runtime()?.block_on(live(&args, request, merge))?,
    };
    write_profile(&args, finished, existing)
}

/// The profile the learned one is merged into: `--merge`, else the file of the profile
/// `--profile` refines (read as soon as it is known, so a broken file stops learning early).
fn refined(merge: Option<Existing>, file: Option<&Path>) -> anyhow::Result<Option<Existing>> {
    match (merge, file) {
        (Some(e), _) => Ok(Some(e)),
        (None, Some(file)) => Ok(Some(Existing::read(file).map_err(|e| {
            anyhow::anyhow!("the profile's file {} is invalid:\n{e}", file.display())
        })?)),
        (None, None) => Ok(None),
    }
}

/// Learns from live processes: through the agent when one answers, else standalone.
async fn live(
    args: &LearnArgs,
    request: LearnRequest,
    merge: Option<Existing>,
) -> anyhow::Result<(Finished, Option<Existing>)> {
    if !args.standalone {
        match UnixStream::connect(&args.control_socket).await {
            Ok(stream) => {
                eprintln!(
                    "monitor: learning through the running agent ({})",
                    args.control_socket.display()
                );
                return through_agent(stream, args, request, merge).await;
            }
            Err(e) => tracing::debug!(error = %e, "no agent on the control socket"),
        }
    }
    eprintln!(
        "monitor: no agent answers on {}: learning with a sensor of its own",
        args.control_socket.display()
    );
    standalone(args, request, merge).await
}

/// The signals that end the window, made before anyone is told learning runs (a signal sent
/// right after the ready file appears is not lost).
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the window to end: the duration, SIGINT or SIGTERM.
    async fn window(&mut self, duration: Option<Duration>) -> &'static str {
        let sleep = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => "the duration ended",
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
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
    merge: Option<Existing>,
) -> anyhow::Result<(Finished, Option<Existing>)> {
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
    // Closing the connection on error cancels the session.
    let existing = refined(merge, started.profile_file.as_deref())?;
    let mut stop = Stop::new()?;
    ready(args, started.processes)?;
    let early = tokio::select! {
        why = stop.window(args.duration) => {
            eprintln!("monitor: {why}: collecting what was learned");
            None
        }
        // The agent ends the session by itself only when it stops.
        line = read_line(&mut r, MAX_ANSWER) => Some(line),
    };
    let line = match early {
        Some(line) => line,
        None => {
            let mut line = serde_json::to_vec(&ClientLine::Finish(true))?;
            line.push(b'\n');
            w.write_all(&line).await?;
            read_line(&mut r, MAX_ANSWER).await
        }
    };
    match answer(line?)? {
        AgentLine::Finished(f) => {
            if let Some(why) = &f.stopped {
                eprintln!("monitor: {why} before the window ended: writing what was learned");
            }
            Ok((*f, existing))
        }
        AgentLine::Error(e) => bail!("the agent could not finish learning: {e}"),
        AgentLine::Started(_) => bail!("the agent answered out of turn"),
    }
}

async fn standalone(
    args: &LearnArgs,
    request: LearnRequest,
    merge: Option<Existing>,
) -> anyhow::Result<(Finished, Option<Existing>)> {
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
    let (done, outcome) = oneshot::channel();
    if tx
        .send(Request::Start {
            request: Box::new(request),
            reply,
            done,
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
    let existing = match refined(merge, started.profile_file.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            let _ = tx.send(Request::Shutdown).await;
            let _ = pipeline.await;
            return Err(e);
        }
    };
    let mut stop = Stop::new()?;
    ready(args, started.processes)?;
    let why = stop.window(args.duration).await;
    eprintln!("monitor: {why}: collecting what was learned");
    tx.send(Request::Finish {
        session: started.session,
    })
    .await
    .map_err(|_| anyhow::anyhow!("the sensor stopped before learning finished"))?;
    let finished = outcome.await.ok().flatten();
    let _ = tx.send(Request::Shutdown).await;
    match pipeline.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the sensor stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "the sensor task failed"),
    }
    Ok((finished.context("the learning session was lost")?, existing))
}

fn write_profile(args: &LearnArgs, f: Finished, existing: Option<Existing>) -> anyhow::Result<()> {
    let s = &f.outcome.summary;
    if s.processes == 0 {
        bail!(
            "no process matched during the {:.0} s of learning, so there is nothing to write \
             (is the workload running, and do the selectors match it? they are a profile's \
             `match:` keys: e.g. --program litellm, --exe '/opt/venv/bin/python*')",
            s.secs
        );
    }
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
    if let Err(e) = write_atomically(&args.out, &text) {
        // What was learned is not lost with the output file.
        return Err(match salvage(&args.out, &text) {
            Ok(kept) => e.context(format!("the profile was kept in {}", kept.display())),
            Err(e2) => e.context(format!("and it could not be kept elsewhere either: {e2:#}")),
        });
    }
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
    if !built.narrowed.is_empty() {
        eprintln!(
            "monitor: learned exclusions narrow globs of {} (paths they allowed now alert):",
            built.merged_from.as_deref().unwrap_or("the profile")
        );
        for n in &built.narrowed {
            eprintln!("  {n}");
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
