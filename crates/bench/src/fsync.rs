//! How long the disk under the audit log takes to make a write durable: the floor of one
//! audited request at one connection, where group commit has nothing to group.
//!
//! Overwrites 4 KiB blocks of a preallocated file and calls `fdatasync` after each (what a
//! SQLite WAL commit does once the WAL is reused), then appends 4 KiB blocks with
//! `fdatasync` after each (a WAL that grows). Prints one Markdown row per pattern.

use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::FileExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Args;

#[derive(Args)]
pub struct FsyncArgs {
    /// Directory to write the probe file in (the audit log's directory).
    #[arg(long)]
    dir: PathBuf,
    /// Durable writes per pattern.
    #[arg(long, default_value_t = 1000)]
    count: usize,
}

/// The Markdown header of the table `run` prints rows of.
pub const MARKDOWN_HEADER: &str =
    "| pattern | writes | median | mean | p90 | p99 |\n| --- | ---: | ---: | ---: | ---: | ---: |";

pub fn run(args: FsyncArgs) -> anyhow::Result<()> {
    let path = args.dir.join(".airlock-bench-fsync");
    let result = probe(&path, args.count);
    let _ = std::fs::remove_file(&path);
    for (name, mut lat) in result? {
        lat.sort_unstable();
        let n = lat.len().max(1);
        let mean = lat.iter().sum::<Duration>() / n as u32;
        let pick = |q: f64| {
            lat.get(((n as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or_default()
        };
        println!(
            "| {name} | {} | {} µs | {} µs | {} µs | {} µs |",
            lat.len(),
            pick(0.5).as_micros(),
            mean.as_micros(),
            pick(0.9).as_micros(),
            pick(0.99).as_micros()
        );
    }
    Ok(())
}

fn probe(path: &PathBuf, count: usize) -> anyhow::Result<Vec<(&'static str, Vec<Duration>)>> {
    const BLOCK: usize = 4096;
    const BLOCKS: usize = 256;
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    f.write_all(&vec![0u8; BLOCK * BLOCKS])?;
    f.sync_all()?;
    let block = vec![0x5au8; BLOCK];
    let mut overwrite = Vec::with_capacity(count);
    for i in 0..count {
        f.write_all_at(&block, ((i % BLOCKS) * BLOCK) as u64)?;
        let t = Instant::now();
        f.sync_data()?;
        overwrite.push(t.elapsed());
    }
    let mut append = Vec::with_capacity(count);
    for i in 0..count {
        f.write_all_at(&block, ((BLOCKS + i) * BLOCK) as u64)?;
        let t = Instant::now();
        f.sync_data()?;
        append.push(t.elapsed());
    }
    Ok(vec![
        ("overwrite 4 KiB + fdatasync", overwrite),
        ("append 4 KiB + fdatasync", append),
    ])
}
