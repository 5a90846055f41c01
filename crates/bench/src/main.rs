//! `airlock-bench`: the load generator behind `scripts/bench` and `docs/benchmarks.md`.
//!
//! - `latency`: small GETs over keep-alive HTTP/1.1 connections against several targets,
//!   interleaved round by round; medians, p99, throughput and the comparisons between targets.
//! - `watches`: hold many watches open through the gateway and measure its memory per watch.
//!
//! hyper 1 client connections over tokio-rustls (ring provider), no pooling layer: each worker
//! owns its connection, so what is measured is the server, not a client pool.
#![forbid(unsafe_code)]

mod fsync;
mod latency;
mod stats;
mod target;
mod watches;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "airlock-bench",
    about = "Load generator for Airlock's benchmark"
)]
struct Cli {
    /// Runtime worker threads. Default: one per CPU. The load generator shares the CPUs with the
    /// servers it measures; see docs/benchmarks.md.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Small-GET latency and throughput against several targets, interleaved.
    Latency(latency::LatencyArgs),
    /// Gateway memory per open watch.
    Watches(watches::WatchArgs),
    /// Print the Markdown header row of the `watches` table.
    WatchesHeader,
    /// Latency of a durable 4 KiB write (fdatasync) on a directory's disk.
    Fsync(fsync::FsyncArgs),
    /// Print the Markdown header row of the `fsync` table.
    FsyncHeader,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build()?;
    match cli.command {
        Command::Latency(args) => rt.block_on(latency::run(args)),
        Command::Watches(args) => rt.block_on(watches::run(args)),
        Command::Fsync(args) => fsync::run(args),
        Command::FsyncHeader => {
            println!("{}", fsync::MARKDOWN_HEADER);
            Ok(())
        }
        Command::WatchesHeader => {
            println!("{}", watches::MARKDOWN_HEADER);
            Ok(())
        }
    }
}
