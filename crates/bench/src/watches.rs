//! Memory per open watch: hold N watches open through the gateway and read its resident set
//! size (VmRSS) before and after.
//!
//! Sequence: warm up (open and close a few watches, so one-time costs such as the first
//! upstream connection and TLS session caches are in the baseline), wait for the RSS to settle,
//! read it; open N watches; wait until the client has every response and the gateway's
//! `airlock_open_watches` gauge reads N; wait for the RSS to settle, read it; close every watch,
//! wait for the gauge to read 0, read the RSS once more (to show whether memory is handed back).
//!
//! Two client shapes:
//! - `h1`: one HTTP/1.1 connection per watch, as N separate kubectl processes (one connection
//!   each) would look, and the heavier case for the gateway (a TLS session per watch).
//! - `h2`: N streams multiplexed over N / streams-per-connection HTTP/2 connections, as one
//!   client-go program holding many watches would look.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use http_body_util::BodyExt;
use hyper::client::conn::http2;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use crate::target::{ConnTask, ReqBody, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    H1,
    H2,
}

#[derive(clap::Args)]
pub struct WatchArgs {
    /// The gateway: NAME=URL[;ca=FILE][;token-file=FILE].
    #[arg(long)]
    target: String,
    /// Path and query of each watch. The default selects one pod, so each watch gets one ADDED
    /// event and then stays idle.
    #[arg(
        long,
        default_value = "/api/v1/namespaces/shop/pods?watch=true&fieldSelector=metadata.name%3Dweb-6b7f9c5d4-x2k9p&timeoutSeconds=1800"
    )]
    path: String,
    /// Spread the watches over this many clusters of the gateway, `/clusters/PREFIX0/...` to
    /// `/clusters/PREFIX{N-1}/...`, round robin; 0 sends them all to the default cluster. A
    /// workaround while the gateway sends every request to a cluster over one HTTP/2
    /// connection, which caps open watches at the server's stream limit (see
    /// docs/benchmarks.md).
    #[arg(long, default_value_t = 0)]
    clusters: usize,
    /// Cluster name prefix for `--clusters`.
    #[arg(long, default_value = "sim-")]
    cluster_prefix: String,
    /// Watches to hold open.
    #[arg(long, default_value_t = 5000)]
    count: usize,
    #[arg(long, value_enum, default_value = "h1")]
    mode: Mode,
    /// HTTP/2 streams per connection in h2 mode (Airlock allows 1000).
    #[arg(long, default_value_t = 500)]
    streams_per_connection: usize,
    /// PID of the gateway process whose VmRSS is measured.
    #[arg(long)]
    pid: u32,
    /// The gateway's admin URL (for `/metrics`), e.g. http://127.0.0.1:9443.
    #[arg(long)]
    admin: String,
    /// PID of the upstream (the simulated API server), reported for information.
    #[arg(long)]
    upstream_pid: Option<u32>,
    /// Watches opened and closed before the baseline is read.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Watches being opened at once (TCP + TLS + request).
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// Give up if the watches are not all open after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Goal: KiB of gateway memory per open watch.
    #[arg(long, default_value_t = 64.0)]
    max_kib_per_watch: f64,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    mode: Mode,
    path: String,
    clusters: usize,
    watches: usize,
    connections: usize,
    opened: usize,
    failed: usize,
    first_error: Option<String>,
    ended_early: usize,
    gauge: f64,
    establish_seconds: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    rss_after_close_kib: u64,
    kib_per_watch: f64,
    upstream_rss_before_kib: Option<u64>,
    upstream_rss_after_kib: Option<u64>,
    upstream_kib_per_watch: Option<f64>,
}

/// Counters shared by every watch task.
#[derive(Default)]
struct Progress {
    opened: AtomicUsize,
    first_event: AtomicUsize,
    failed: AtomicUsize,
    ended_early: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

/// A set of open watches; dropping it (after `close`) ends them.
struct Batch {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    conns: Vec<ConnTask>,
    progress: Arc<Progress>,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let target = Arc::new(Target::parse(&args.target)?);
    let admin = Target::parse(&format!("admin={}", args.admin))?;
    if args.count == 0 || args.streams_per_connection == 0 || args.parallel == 0 {
        bail!("count, streams-per-connection and parallel must be at least 1");
    }
    let timeout = Duration::from_secs(args.timeout);

    // Warm-up: the first watch opens the gateway's upstream connection, fills session caches
    // and grows the runtime's pools. None of that is per-watch cost.
    if args.warmup > 0 {
        eprintln!("warm-up: {} watches", args.warmup);
        let batch = open(&target, &args, args.warmup, 64).await?;
        wait_open(&batch, args.warmup, timeout).await?;
        wait_gauge(&admin, |g| g >= args.warmup as f64, timeout).await?;
        batch.close().await;
        wait_gauge(&admin, |g| g == 0.0, timeout).await?;
    }
    let before = settled_rss(args.pid).await?;
    let upstream_before = match args.upstream_pid {
        Some(p) => Some(settled_rss(p).await?),
        None => None,
    };
    eprintln!("gateway VmRSS before: {before} KiB");

    let started = Instant::now();
    let batch = open(&target, &args, args.count, args.parallel).await?;
    let connections = match args.mode {
        Mode::H1 => args.count,
        Mode::H2 => batch.conns.len(),
    };
    let opened = wait_open(&batch, args.count, timeout).await;
    let gauge = match &opened {
        Ok(()) => wait_gauge(&admin, |g| g >= args.count as f64, timeout).await?,
        Err(_) => read_gauge(&admin).await?,
    };
    let establish_seconds = started.elapsed().as_secs_f64();
    let after = settled_rss(args.pid).await?;
    let upstream_after = match args.upstream_pid {
        Some(p) => Some(settled_rss(p).await?),
        None => None,
    };
    let p = batch.progress.clone();
    let n_opened = p.opened.load(Ordering::SeqCst);
    eprintln!(
        "{n_opened} watches open in {establish_seconds:.1}s (gauge {gauge}); gateway VmRSS after: {after} KiB"
    );

    batch.close().await;
    wait_gauge(&admin, |g| g == 0.0, timeout).await?;
    let after_close = settled_rss(args.pid).await?;

    let per = |a: u64, b: u64| (a as f64 - b as f64) / n_opened.max(1) as f64;
    let first_error = p.first_error.lock().ok().and_then(|e| e.clone());
    let report = Report {
        mode: args.mode,
        path: args.path.clone(),
        clusters: args.clusters,
        watches: args.count,
        connections,
        opened: n_opened,
        failed: p.failed.load(Ordering::SeqCst),
        first_error,
        ended_early: p.ended_early.load(Ordering::SeqCst),
        gauge,
        establish_seconds,
        rss_before_kib: before,
        rss_after_kib: after,
        rss_after_close_kib: after_close,
        kib_per_watch: per(after, before),
        upstream_rss_before_kib: upstream_before,
        upstream_rss_after_kib: upstream_after,
        upstream_kib_per_watch: upstream_before.zip(upstream_after).map(|(b, a)| per(a, b)),
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{}", markdown_row(&report, args.max_kib_per_watch));
    opened
}

/// The Markdown table header matching [`markdown_row`].
pub const MARKDOWN_HEADER: &str = "| client | watches open | connections | VmRSS before | VmRSS with watches | per watch | goal ≤ 64 KiB | VmRSS after closing | sim per watch |\n| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |";

fn markdown_row(r: &Report, max: f64) -> String {
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let client = match r.mode {
        Mode::H1 => "HTTP/1.1, one connection per watch",
        Mode::H2 => "HTTP/2, many streams per connection",
    };
    format!(
        "| {client} | {} of {} | {} | {} | {} | {:.1} KiB | {} | {} | {} |",
        r.opened,
        r.watches,
        r.connections,
        mib(r.rss_before_kib),
        mib(r.rss_after_kib),
        r.kib_per_watch,
        if r.opened == r.watches && r.kib_per_watch <= max {
            "met"
        } else if r.opened < r.watches {
            "not measured: watches failed"
        } else {
            "not met"
        },
        mib(r.rss_after_close_kib),
        r.upstream_kib_per_watch
            .map_or("—".into(), |k| format!("{k:.1} KiB")),
    )
}

/// Opens `count` watches, `parallel` at a time, and returns once every open has been started.
async fn open(
    target: &Arc<Target>,
    args: &WatchArgs,
    count: usize,
    parallel: usize,
) -> anyhow::Result<Batch> {
    let (shutdown, rx) = watch::channel(false);
    let progress = Arc::new(Progress::default());
    let mut conns = Vec::new();
    let mut senders: Vec<http2::SendRequest<ReqBody>> = Vec::new();
    if args.mode == Mode::H2 {
        for _ in 0..count.div_ceil(args.streams_per_connection) {
            let (send, conn) = target.connect_h2().await?;
            senders.push(send);
            conns.push(conn);
        }
    }
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let h2 = senders.get(i / args.streams_per_connection).cloned();
        let target = target.clone();
        let path = match args.clusters {
            0 => args.path.clone(),
            n => format!("/clusters/{}{}{}", args.cluster_prefix, i % n, args.path),
        };
        let progress = progress.clone();
        let gate = gate.clone();
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = one_watch(&target, &path, h2, &gate, &progress, rx).await {
                progress.failed.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut first) = progress.first_error.lock() {
                    first.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }));
    }
    Ok(Batch {
        tasks,
        shutdown,
        conns,
        progress,
    })
}

async fn one_watch(
    target: &Target,
    path: &str,
    h2: Option<http2::SendRequest<ReqBody>>,
    gate: &Semaphore,
    progress: &Progress,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let permit = gate.acquire().await?;
    // For h1 the connection lives as long as this task: `_conn` aborts it when dropped.
    let (resp, _h1) = match h2 {
        Some(mut send) => {
            send.ready().await?;
            (send.send_request(target.get(path, true)?).await?, None)
        }
        None => {
            let (mut send, conn) = target.connect_h1().await?;
            let resp = send.send_request(target.get(path, false)?).await?;
            (resp, Some((send, conn)))
        }
    };
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        bail!(
            "watch answered {status}: {}",
            String::from_utf8_lossy(&text[..text.len().min(300)])
        );
    }
    progress.opened.fetch_add(1, Ordering::SeqCst);
    drop(permit);
    let mut first = true;
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(_)) => {
                    if first {
                        first = false;
                        progress.first_event.fetch_add(1, Ordering::SeqCst);
                    }
                }
                _ => {
                    progress.ended_early.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
            },
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

// === impl Batch ===

impl Batch {
    /// Ends every watch and closes every connection.
    async fn close(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        drop(self.conns);
    }
}

/// Waits until `count` watches have answered (or failed). Errors if any failed or time ran out.
async fn wait_open(batch: &Batch, count: usize, timeout: Duration) -> anyhow::Result<()> {
    let p = &batch.progress;
    let deadline = Instant::now() + timeout;
    let mut last_report = Instant::now();
    loop {
        let opened = p.opened.load(Ordering::SeqCst);
        let failed = p.failed.load(Ordering::SeqCst);
        if opened + failed >= count {
            if failed > 0 {
                let e = p.first_error.lock().ok().and_then(|e| e.clone());
                bail!(
                    "{failed} of {count} watches failed; first error: {}",
                    e.unwrap_or_default()
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {opened} of {count} watches open after {}s ({failed} failed)",
                timeout.as_secs()
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {opened}/{count} open, {failed} failed");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the gateway's `airlock_open_watches` gauge until `done` holds; returns its value.
async fn wait_gauge(
    admin: &Target,
    done: impl Fn(f64) -> bool,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        let g = read_gauge(admin).await?;
        if done(g) {
            return Ok(g);
        }
        if Instant::now() > deadline {
            bail!("airlock_open_watches is {g} after {}s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_gauge(admin: &Target) -> anyhow::Result<f64> {
    let (mut send, _conn) = admin.connect_h1().await?;
    let resp = send.send_request(admin.get("/metrics", false)?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    parse_gauge(&text, "airlock_open_watches")
        .ok_or_else(|| anyhow!("no airlock_open_watches in the admin /metrics"))
}

fn parse_gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, rest) = l.split_once(' ')?;
        (n == name).then(|| rest.split_whitespace().next()?.parse().ok())?
    })
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (is the process running?)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// Reads VmRSS until three readings 200 ms apart agree within 128 KiB (at most 10 s): the
/// gateway is idle by then, so the number is not caught mid-burst.
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = rss_kib(pid)?;
    let mut stable = 0;
    while stable < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss_kib(pid)?;
        stable = if now.abs_diff(last) <= 128 {
            stable + 1
        } else {
            0
        };
        last = now;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_lines() {
        let text = "# HELP airlock_open_watches Watches streaming now.\n# TYPE airlock_open_watches gauge\nairlock_open_watches 5000\nairlock_open_watches_other 1\n# EOF\n";
        assert_eq!(parse_gauge(text, "airlock_open_watches"), Some(5000.0));
        assert_eq!(parse_gauge(text, "airlock_open"), None);
        assert_eq!(parse_gauge("", "x"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
