//! `harness`: serve the mock endpoints, run scenarios, play transcripts, fuzz and load
//! live servers. The commands live in `cli/`.

mod cli;

fn main() -> anyhow::Result<()> {
    cli::main()
}
