//! The `harness` command line: argument parsing and one module per command.

pub mod fuzz;
pub mod load;
pub mod play;
pub mod run;
pub mod serve;
pub mod table;

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness_core::profile::PROFILE_NAMES;
use harness_core::Profile;

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Fuzz and conformance harness for Exchange-style mail protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the mock IMAP and POP3 endpoints until Ctrl-C.
    Serve(Box<serve::ServeArgs>),
    /// Run scenario cases (corpus/scenarios/*.toml) against the embedded lab and print
    /// the matrix of outcomes; exits non-zero if a case breaks its expectation.
    Run(run::RunArgs),
    /// Play transcript scripts (corpus/sessions/**) in-process against the mocks, or
    /// over sockets against a target such as the lab or a live server.
    Play(play::PlayArgs),
    /// Fuzz a live server over loopback: mutated transcript client lines, watching for
    /// resets, hangs, malformed replies and a crash of --watch-pid; findings are saved as
    /// reproducer transcripts. Exits 1 if there is a finding.
    Fuzz(fuzz::FuzzArgs),
    /// List the built-in server profiles.
    Profiles,
    /// Closed-loop load against an IMAP or POP3 server: sessions per second, latency
    /// percentiles and errors by kind.
    Load(load::LoadArgs),
}

/// Parses the command line and runs the command.
pub fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Play(args) => play::run(args),
        Command::Run(args) => run::run(args),
        Command::Load(args) => load::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Profiles => {
            for name in PROFILE_NAMES {
                if let Some(p) = Profile::by_name(name) {
                    println!("{:<12} {}", p.name, p.description);
                }
            }
            Ok(())
        }
    }
}
