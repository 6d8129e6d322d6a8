//! `monitor`: an eBPF behaviour monitor. This file is wiring only: parse the command line,
//! set up logging, hand over to the command (the agent is the library, `lib.rs`).

use clap::Parser;
use monitor::{agent, cli, learn};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: `kubectl logs`, journald and files get
        // plain lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Run(args) => agent::run(args),
        cli::Command::Learn(args) => learn::command::run(args),
        cli::Command::Rules(cli::RulesCommand::Check { paths }) => agent::rules_check(&paths),
        cli::Command::Rules(cli::RulesCommand::Diff { old, new }) => {
            return learn::diff::run(&old, &new);
        }
        cli::Command::Floor { ready_file, tp_btf } => agent::floor(ready_file, tp_btf),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
