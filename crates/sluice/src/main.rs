//! `sluice`: one binary for the Sluice log and (in later issues) its broker and engine.
//!
//! Subcommands work on an embedded data directory (`--data-dir`, default `./sluice-data`).
//! Writers (`topic create`, `produce`, ...) take the directory's exclusive lock; readers
//! (`topic list/describe`, `consume`) open it read-only and can run beside a writer.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible durable log and stream processor in one binary"
)]
struct Cli {
    /// Data directory of the embedded log.
    #[arg(
        long,
        global = true,
        env = "SLUICE_DATA_DIR",
        default_value = "./sluice-data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(cmd::topic::TopicCommand),
    /// Append lines from stdin as records.
    Produce(cmd::produce::ProduceArgs),
    /// Print records.
    Consume(cmd::consume::ConsumeArgs),
    /// Measure performance against the machine's own limits.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Run the quick-start demo: create a topic, produce, consume, describe.
    Demo(cmd::demo::DemoArgs),
    /// Tools for tests (crash drills).
    #[command(subcommand, hide = true)]
    Debug(cmd::debug::DebugCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Topic(c) => cmd::topic::run(&cli.data_dir, c),
        Command::Produce(a) => cmd::produce::run(&cli.data_dir, a),
        Command::Consume(a) => cmd::consume::run(&cli.data_dir, a),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Demo(a) => cmd::demo::run(&cli.data_dir, a),
        Command::Debug(c) => cmd::debug::run(&cli.data_dir, c),
    };
    if let Err(e) = result {
        if cmd::is_broken_pipe(&e) {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
