//! Small-GET latency and throughput, several targets in one run.
//!
//! Closed loop: each worker owns one keep-alive HTTP/1.1 connection and sends the next request
//! as soon as the previous response body has been read. A measurement is `warmup` (connections
//! open, caches warm, nothing recorded) followed by `duration` (every request that *starts* in
//! the window is recorded; throughput = recorded requests / window).
//!
//! Targets are interleaved so that one machine state serves all of them: each round runs every
//! (concurrency, target) pair once, and the order rotates from round to round, so slow drift
//! (thermal, a neighbour's build) spreads over all targets instead of landing on one.
//! Reported figures are the median over rounds of each per-round figure.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use http_body_util::BodyExt;
use serde::Serialize;

use crate::{
    stats::{median, percentile},
    target::Target,
};

#[derive(clap::Args)]
pub struct LatencyArgs {
    /// A target: NAME=URL[;ca=FILE][;token-file=FILE] or NAME=kubeconfig:FILE. Repeat.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Path and query of the GET.
    #[arg(
        long,
        default_value = "/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p"
    )]
    path: String,
    /// Concurrent connections (one worker each), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Rounds; each round measures every (concurrency, target) pair once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Recorded window of one measurement, in seconds.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Unrecorded warm-up before each window, in seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// The target others are compared with for added latency. Default: the first target.
    #[arg(long)]
    baseline: Option<String>,
    /// The target others are compared with for throughput. Default: none.
    #[arg(long)]
    peer: Option<String>,
    /// The target under test; its verdicts against the two goals below are printed.
    #[arg(long)]
    subject: Option<String>,
    /// Goal: the subject's added median latency over the baseline, in µs.
    #[arg(long, default_value_t = 150.0)]
    max_added_us: f64,
    /// Goal: the subject's throughput divided by the peer's.
    #[arg(long, default_value_t = 1.5)]
    min_rps_ratio: f64,
    /// A server process whose CPU time per request is reported: NAME=PID. Repeat. CPU time is
    /// what a loaded machine distorts least: latency includes waiting for a CPU, CPU time does
    /// not.
    #[arg(long = "cpu")]
    cpu: Vec<String>,
    /// Before each measurement, send a DELETE to this plain-HTTP URL. The simulator records
    /// every request it receives in memory; its introspection endpoint `/requests` forgets them,
    /// so the log does not grow through the run.
    #[arg(long)]
    clear_url: Option<String>,
    /// Write the full results (every round) here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One measurement: one target, one concurrency, one round.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub round: usize,
    pub target: String,
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    pub median_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub rps: f64,
    pub response_bytes: usize,
    /// CPU time (user + system) of each `--cpu` process per completed request (warm-up
    /// included), in µs.
    pub cpu_us_per_request: BTreeMap<String, f64>,
}

/// Median over rounds for one target and concurrency, with the comparisons.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    pub concurrency: usize,
    pub rounds: usize,
    pub requests: usize,
    pub errors: usize,
    pub median_us: f64,
    pub p99_us: f64,
    pub rps: f64,
    /// Median over rounds of each process's CPU µs per request.
    pub cpu_us_per_request: BTreeMap<String, f64>,
    /// Median over rounds of (this target's median - the baseline's median) in the same round.
    pub added_median_us: Option<f64>,
    /// Median over rounds of (this target's req/s / the peer's req/s) in the same round.
    pub rps_vs_peer: Option<f64>,
}

#[derive(Serialize)]
struct Report<'a> {
    path: &'a str,
    rounds: usize,
    warmup_s: f64,
    duration_s: f64,
    baseline: &'a str,
    peer: Option<&'a str>,
    samples: &'a [Sample],
    summary: &'a [Summary],
}

pub async fn run(args: LatencyArgs) -> anyhow::Result<()> {
    let targets: Vec<Arc<Target>> = args
        .targets
        .iter()
        .map(|s| Target::parse(s).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let baseline = args.baseline.clone().unwrap_or_else(|| names[0].to_owned());
    for n in [Some(&baseline), args.peer.as_ref(), args.subject.as_ref()]
        .into_iter()
        .flatten()
    {
        if !names.contains(&n.as_str()) {
            bail!("{n:?} is not one of the targets {names:?}");
        }
    }
    if args.concurrency.contains(&0) || args.rounds == 0 {
        bail!("concurrency and rounds must be at least 1");
    }
    let warmup = Duration::from_secs_f64(args.warmup);
    let window = Duration::from_secs_f64(args.duration);

    // Fail fast, before minutes of measuring, if a target is unreachable or refuses us.
    for t in &targets {
        let bytes = probe(t, &args.path).await?;
        eprintln!("{}: {} -> 200, {bytes} bytes", t.name, args.path);
    }

    let cpu: Vec<(String, u32)> = args
        .cpu
        .iter()
        .map(|c| {
            let (name, pid) = c
                .split_once('=')
                .ok_or_else(|| anyhow!("--cpu {c:?}: expected NAME=PID"))?;
            let pid = pid
                .parse()
                .with_context(|| format!("--cpu {c:?}: bad PID"))?;
            cpu_ticks(pid)?;
            Ok((name.to_owned(), pid))
        })
        .collect::<anyhow::Result<_>>()?;
    let clear = args.clear_url.as_deref().map(clear_target).transpose()?;

    let mut samples = Vec::new();
    let pairs: Vec<(usize, usize)> = args
        .concurrency
        .iter()
        .flat_map(|&c| (0..targets.len()).map(move |t| (c, t)))
        .collect();
    for round in 0..args.rounds {
        for i in 0..pairs.len() {
            // Rotate the order each round.
            let (c, t) = pairs[(i + round) % pairs.len()];
            let target = &targets[t];
            if let Some((clear, path)) = &clear {
                send_delete(clear, path).await?;
            }
            let s = measure(target, &args.path, c, warmup, window, round + 1, &cpu).await?;
            eprintln!(
                "round {}/{} {:>14} c={:<3} {:>8.0} req/s  median {:>7.1} µs  p99 {:>8.1} µs{}",
                round + 1,
                args.rounds,
                s.target,
                c,
                s.rps,
                s.median_us,
                s.p99_us,
                if s.errors > 0 {
                    format!("  {} errors", s.errors)
                } else {
                    String::new()
                }
            );
            samples.push(s);
        }
    }

    let summary = summarize(
        &samples,
        &names,
        &args.concurrency,
        &baseline,
        args.peer.as_deref(),
    );
    if let Some(path) = &args.json {
        let report = Report {
            path: &args.path,
            rounds: args.rounds,
            warmup_s: args.warmup,
            duration_s: args.duration,
            baseline: &baseline,
            peer: args.peer.as_deref(),
            samples: &samples,
            summary: &summary,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let cpu_names: Vec<&str> = cpu.iter().map(|(n, _)| n.as_str()).collect();
    print!("{}", markdown(&summary, &args, &baseline, &cpu_names));
    Ok(())
}

/// Splits `http://host:port/path` into a target and its path.
fn clear_target(url: &str) -> anyhow::Result<(Target, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("bad --clear-url {url:?}"))?;
    let base = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    Ok((
        Target::parse(&format!("clear={base}"))?,
        uri.path().to_owned(),
    ))
}

async fn send_delete(target: &Target, path: &str) -> anyhow::Result<()> {
    let (mut send, _conn) = target.connect_h1().await?;
    let resp = send
        .send_request(target.request(http::Method::DELETE, path, false)?)
        .await?;
    if !resp.status().is_success() {
        bail!(
            "DELETE {path} on {} answered {}",
            target.name,
            resp.status()
        );
    }
    resp.into_body().collect().await?;
    Ok(())
}

/// One request on a fresh connection: checks the target answers 200 before the real runs.
async fn probe(target: &Target, path: &str) -> anyhow::Result<usize> {
    let (mut send, _conn) = target.connect_h1().await?;
    let resp = send.send_request(target.get(path, false)?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{}: GET {path} answered {status}: {}",
            target.name,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(body.len())
}

/// Per-worker results: latencies in nanoseconds of requests started inside the window.
struct WorkerResult {
    latencies: Vec<u64>,
    /// Every completed request, warm-up included.
    completed: usize,
    errors: usize,
    response_bytes: usize,
}

async fn measure(
    target: &Arc<Target>,
    path: &str,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
    round: usize,
    cpu: &[(String, u32)],
) -> anyhow::Result<Sample> {
    // Open every connection first so the handshakes are outside the timed window.
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(target.connect_h1().await?);
    }
    let cpu_before = cpu
        .iter()
        .map(|(_, pid)| cpu_ticks(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + window;
    let mut workers = Vec::with_capacity(concurrency);
    for (send, conn) in conns {
        let target = target.clone();
        let path = path.to_owned();
        workers.push(tokio::spawn(async move {
            worker(target, path, send, conn, window_start, end).await
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut response_bytes = 0;
    let mut completed = 0;
    for w in workers {
        let r = w.await.map_err(|e| anyhow!("worker panicked: {e}"))??;
        completed += r.completed;
        latencies.extend(r.latencies);
        errors += r.errors;
        response_bytes = response_bytes.max(r.response_bytes);
    }
    let mut cpu_us_per_request = BTreeMap::new();
    for ((name, pid), before) in cpu.iter().zip(cpu_before) {
        let ticks = cpu_ticks(*pid)?.saturating_sub(before);
        let us = ticks as f64 * 1e6 / CLOCK_TICKS_PER_SECOND;
        cpu_us_per_request.insert(name.clone(), us / completed.max(1) as f64);
    }
    latencies.sort_unstable();
    let us = |ns: Option<u64>| ns.map_or(f64::NAN, |n| n as f64 / 1000.0);
    let mean = if latencies.is_empty() {
        f64::NAN
    } else {
        latencies.iter().sum::<u64>() as f64 / latencies.len() as f64 / 1000.0
    };
    Ok(Sample {
        round,
        target: target.name.clone(),
        concurrency,
        requests: latencies.len(),
        errors,
        median_us: us(percentile(&latencies, 50.0)),
        p99_us: us(percentile(&latencies, 99.0)),
        mean_us: mean,
        rps: latencies.len() as f64 / window.as_secs_f64(),
        response_bytes,
        cpu_us_per_request,
    })
}

async fn worker(
    target: Arc<Target>,
    path: String,
    mut send: hyper::client::conn::http1::SendRequest<crate::target::ReqBody>,
    mut conn: crate::target::ConnTask,
    window_start: Instant,
    end: Instant,
) -> anyhow::Result<WorkerResult> {
    let mut r = WorkerResult {
        latencies: Vec::with_capacity(64 * 1024),
        completed: 0,
        errors: 0,
        response_bytes: 0,
    };
    loop {
        let req = target.get(&path, false)?;
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let ok = async {
            send.ready().await?;
            let resp = send.send_request(req).await?;
            let ok = resp.status().is_success();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>((ok, body.len()))
        }
        .await;
        let elapsed = t0.elapsed();
        match ok {
            Ok((true, len)) => {
                r.completed += 1;
                r.response_bytes = len;
                if t0 >= window_start {
                    r.latencies.push(elapsed.as_nanos() as u64);
                }
            }
            Ok((false, _)) => r.errors += 1,
            Err(_) => {
                // The connection broke: count it and carry on with a new one.
                r.errors += 1;
                (send, conn) = target.connect_h1().await?;
            }
        }
    }
    drop(conn);
    Ok(r)
}

/// `USER_HZ`: the unit of utime and stime in `/proc/PID/stat`; 100 on every Linux ABI in use.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU time of a process (all its threads, exited ones included), in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat (is the process running?)"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("/proc/{pid}/stat: unexpected format"))
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name, field 2, is in parentheses and may hold spaces: count after it.
    // utime and stime are fields 14 and 15, so the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn summarize(
    samples: &[Sample],
    names: &[&str],
    concurrency: &[usize],
    baseline: &str,
    peer: Option<&str>,
) -> Vec<Summary> {
    let find = |round: usize, target: &str, c: usize| {
        samples
            .iter()
            .find(|s| s.round == round && s.target == target && s.concurrency == c)
    };
    let mut out = Vec::new();
    for &c in concurrency {
        for &name in names {
            let mine: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.target == name && s.concurrency == c)
                .collect();
            let pick =
                |f: fn(&Sample) -> f64| median(&mine.iter().map(|s| f(s)).collect::<Vec<_>>());
            let paired = |other: &str, f: fn(&Sample, &Sample) -> f64| {
                let v: Vec<f64> = mine
                    .iter()
                    .filter_map(|s| find(s.round, other, c).map(|o| f(s, o)))
                    .collect();
                median(&v)
            };
            out.push(Summary {
                target: name.to_owned(),
                concurrency: c,
                rounds: mine.len(),
                requests: mine.iter().map(|s| s.requests).sum(),
                errors: mine.iter().map(|s| s.errors).sum(),
                median_us: pick(|s| s.median_us).unwrap_or(f64::NAN),
                p99_us: pick(|s| s.p99_us).unwrap_or(f64::NAN),
                rps: pick(|s| s.rps).unwrap_or(f64::NAN),
                cpu_us_per_request: cpu_medians(&mine),
                added_median_us: (name != baseline)
                    .then(|| paired(baseline, |s, o| s.median_us - o.median_us))
                    .flatten(),
                rps_vs_peer: peer
                    .filter(|p| *p != name)
                    .and_then(|p| paired(p, |s, o| s.rps / o.rps)),
            });
        }
    }
    out
}

fn cpu_medians(samples: &[&Sample]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for name in samples.iter().flat_map(|s| s.cpu_us_per_request.keys()) {
        if out.contains_key(name) {
            continue;
        }
        let v: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.cpu_us_per_request.get(name).copied())
            .collect();
        if let Some(m) = median(&v) {
            out.insert(name.clone(), m);
        }
    }
    out
}

fn markdown(summary: &[Summary], args: &LatencyArgs, baseline: &str, cpu: &[&str]) -> String {
    use std::fmt::Write;
    let peer = args.peer.as_deref().unwrap_or("peer");
    let mut s = String::new();
    let _ = write!(
        s,
        "| connections | target | median | p99 | throughput | added median vs {baseline} | throughput vs {peer} | errors |"
    );
    for name in cpu {
        let _ = write!(s, " CPU/request: {name} |");
    }
    let _ = write!(
        s,
        "\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for _ in cpu {
        let _ = write!(s, " ---: |");
    }
    let _ = writeln!(s);
    for r in summary {
        let _ = write!(
            s,
            "| {} | {} | {:.0} µs | {:.0} µs | {:.0} req/s | {} | {} | {} |",
            r.concurrency,
            r.target,
            r.median_us,
            r.p99_us,
            r.rps,
            r.added_median_us
                .map_or("—".into(), |v| format!("{v:+.0} µs")),
            r.rps_vs_peer.map_or("—".into(), |v| format!("{v:.2}×")),
            r.errors,
        );
        for name in cpu {
            let v = r.cpu_us_per_request.get(*name).copied().unwrap_or(f64::NAN);
            let _ = write!(s, " {v:.0} µs |");
        }
        let _ = writeln!(s);
    }
    if let Some(subject) = &args.subject {
        let _ = writeln!(s);
        for r in summary.iter().filter(|r| &r.target == subject) {
            if let Some(added) = r.added_median_us {
                let _ = writeln!(
                    s,
                    "- {} connection(s): {subject} adds {added:.0} µs to the median over {baseline} (goal ≤ {:.0} µs: **{}**)",
                    r.concurrency,
                    args.max_added_us,
                    verdict(added <= args.max_added_us)
                );
            }
            if let Some(ratio) = r.rps_vs_peer {
                let _ = writeln!(
                    s,
                    "- {} connection(s): {subject} serves {ratio:.2}× the throughput of {peer} (goal ≥ {:.1}×: **{}**)",
                    r.concurrency,
                    args.min_rps_ratio,
                    verdict(ratio >= args.min_rps_ratio)
                );
            }
        }
    }
    s
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "not met"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: usize, target: &str, median_us: f64, rps: f64) -> Sample {
        Sample {
            round,
            target: target.into(),
            concurrency: 1,
            requests: 10,
            errors: 0,
            median_us,
            p99_us: median_us * 2.0,
            mean_us: median_us,
            rps,
            response_bytes: 1,
            cpu_us_per_request: BTreeMap::new(),
        }
    }

    #[test]
    fn comparisons_are_paired_by_round() {
        let samples = [
            sample(1, "direct", 100.0, 1000.0),
            sample(1, "airlock", 180.0, 800.0),
            sample(1, "proxy", 400.0, 400.0),
            sample(2, "direct", 300.0, 900.0),
            sample(2, "airlock", 350.0, 900.0),
            sample(2, "proxy", 500.0, 300.0),
            sample(3, "direct", 110.0, 1000.0),
            sample(3, "airlock", 200.0, 1000.0),
            sample(3, "proxy", 450.0, 500.0),
        ];
        let s = summarize(
            &samples,
            &["direct", "airlock", "proxy"],
            &[1],
            "direct",
            Some("proxy"),
        );
        let airlock = &s[1];
        assert_eq!(airlock.median_us, 200.0);
        // Per-round differences 80, 50, 90: median 80 (not 200 - 110).
        assert_eq!(airlock.added_median_us, Some(80.0));
        // Per-round ratios 2, 3, 2.
        assert_eq!(airlock.rps_vs_peer, Some(2.0));
        assert_eq!(s[0].added_median_us, None);
        assert_eq!(s[2].rps_vs_peer, None);
    }

    #[test]
    fn proc_stat_cpu_fields() {
        let cases = [
            (
                "1234 (airlock) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0",
                Some(300),
            ),
            (
                "1234 (tokio rt) worker) R 1 2 3 4 5 6 7 8 9 10 7 3 0",
                Some(10),
            ),
            ("garbage", None),
        ];
        for (stat, want) in cases {
            assert_eq!(parse_cpu_ticks(stat), want, "{stat}");
        }
        assert!(cpu_ticks(std::process::id()).is_ok());
    }
}
