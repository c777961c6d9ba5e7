//! `sluice`: one binary for the Sluice log and (in later issues) its broker and engine.
//!
//! Subcommands work on an embedded data directory (`--data-dir`, default `./sluice-data`).
//! Writers (`topic create`, `produce`, ...) take the directory's exclusive lock; readers
//! (`topic list/describe`, `consume`) open it read-only and can run beside a writer.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cmd;

/// mimalloc is the process allocator (speed). Request decoding never reserves memory by
/// a length a client claims: the broker checks every array claim against the frame's bytes
/// before `kafka-protocol` decodes it (`crates/broker/src/request_bounds.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Raise the soft open-files limit to the hard one (every segment of every partition and
/// every client connection holds a descriptor; distributions often start processes with a
/// soft limit of 1024). Returns the limit in force.
fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return lim.maximum;
        }
    }
    lim.current
}

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
    /// Talk to a running broker (`sluice serve` or any Kafka cluster) instead of the
    /// embedded data directory: `topic`, `produce`, `consume` and `group`.
    #[arg(
        long,
        global = true,
        env = "SLUICE_BOOTSTRAP",
        value_name = "HOST:PORT"
    )]
    bootstrap: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(cmd::topic::TopicCommand),
    /// Consumer groups (needs --bootstrap).
    #[command(subcommand)]
    Group(cmd::group::GroupCommand),
    /// Transactions: list, describe, exactly-once copy (needs --bootstrap).
    #[command(subcommand)]
    Txn(cmd::txn::TxnCommand),
    /// Append lines from stdin as records.
    Produce(cmd::produce::ProduceArgs),
    /// Print records.
    Consume(cmd::consume::ConsumeArgs),
    /// Measure performance against the machine's own limits.
    #[command(subcommand)]
    Bench(sluice_bench::BenchCommand),
    /// Run the Kafka-protocol broker on the data directory.
    Serve(cmd::serve::ServeArgs),
    /// Run the quick-start demo: create a topic, produce, consume, describe.
    Demo(cmd::demo::DemoArgs),
    /// Run a stream-processing pipeline (PIPELINE.toml): windows over a file or topic.
    Run(cmd::run::RunArgs),
    /// Tools for tests (crash drills).
    #[command(subcommand, hide = true)]
    Debug(cmd::debug::DebugCommand),
}

fn main() {
    let cli = Cli::parse();
    let _open_files = raise_open_files_limit();
    let result = match cli.command {
        Command::Topic(c) => match &cli.bootstrap {
            Some(b) => cmd::remote::topic(b, c),
            None => cmd::topic::run(&cli.data_dir, c),
        },
        Command::Produce(a) => match &cli.bootstrap {
            Some(b) => cmd::remote::produce(b, a),
            None => cmd::produce::run(&cli.data_dir, a),
        },
        Command::Consume(a) => match &cli.bootstrap {
            Some(b) => cmd::remote::consume(b, a),
            None => cmd::consume::run(&cli.data_dir, a),
        },
        Command::Group(c) => match &cli.bootstrap {
            Some(b) => cmd::remote::group(b, c),
            None => Err(anyhow::anyhow!(
                "group commands need --bootstrap HOST:PORT (a running `sluice serve` or Kafka cluster)"
            )),
        },
        Command::Txn(c) => match &cli.bootstrap {
            Some(b) => cmd::txn::run(b, c),
            None => Err(anyhow::anyhow!(
                "txn commands need --bootstrap HOST:PORT (a running `sluice serve` or Kafka cluster)"
            )),
        },
        Command::Bench(c) => sluice_bench::run(c),
        Command::Demo(a) => cmd::demo::run(&cli.data_dir, a),
        Command::Serve(a) => cmd::serve::run(&cli.data_dir, a),
        Command::Run(a) => cmd::run::run(&cli.data_dir, a),
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
