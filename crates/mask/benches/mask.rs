//! Masking throughput and memory: `cargo bench -p mask` (release profile).
//!
//! Over a generated `kind: List` of Secrets and ConfigMaps (20 MB by default, `MASK_BENCH_MB`
//! to change), single-threaded (so MB/s is per core), compares:
//!
//! * passthrough: copying the body chunk by chunk (the floor);
//! * serde_json: parse into `Value` and serialize again (what a naive filter would do);
//! * airlock: the streaming masker, 64 KiB chunks, output forwarded (cleared) after each.
//!
//! Peak memory growth is measured with a counting global allocator (`peak_alloc`), relative
//! to the memory in use before each run (the input body itself is not counted).
//! Then the text masker: throughput over log text and over clean exec output, and the latency
//! it adds to an interactive byte (one `push` + `flush` per keystroke-sized chunk).

use std::time::{Duration, Instant};

use base64::Engine as _;
use mask::{BodyKind, MaskConfig, MaskContext, Masker};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const CHUNK: usize = 64 * 1024;
const RUNS: usize = 5;

/// Deterministic pseudo-random bytes (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() % 95 + 32) as u8).collect()
    }
    fn word(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'a' + (self.next() % 26) as u8))
            .collect()
    }
}

fn generate(target: usize) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut body = Vec::with_capacity(target + 4096);
    body.extend_from_slice(
        br#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":""},"items":["#,
    );
    let mut i = 0usize;
    while body.len() < target {
        if i > 0 {
            body.push(b',');
        }
        let ns = format!("team-{}", i % 17);
        if i & 1 == 0 {
            let mut data = String::new();
            for k in 0..4 {
                let len = 16 + (rng.next() % 240) as usize;
                let value = b64.encode(rng.bytes(len));
                if k > 0 {
                    data.push(',');
                }
                data.push_str(&format!("\"{}.{k}\":\"{value}\"", rng.word(6)));
            }
            body.extend_from_slice(
                format!(
                    concat!(
                        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"secret-{i}","namespace":"{ns}","#,
                        r#""uid":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","resourceVersion":"{i}","#,
                        r#""creationTimestamp":"2026-01-01T00:00:00Z","labels":{{"app":"{app}"}}}},"#,
                        r#""data":{{{data}}},"type":"Opaque"}}"#
                    ),
                    i = i,
                    ns = ns,
                    app = rng.word(8),
                    data = data
                )
                .as_bytes(),
            );
        } else {
            let mut conf = String::new();
            for _ in 0..20 {
                conf.push_str(&format!(
                    "{}.{} = {}\\n",
                    rng.word(5),
                    rng.word(7),
                    rng.word(12)
                ));
            }
            if i % 10 == 1 {
                conf.push_str("db.password = s3cr3t-value\\n");
            }
            body.extend_from_slice(
                format!(
                    concat!(
                        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"config-{i}","namespace":"{ns}","#,
                        r#""annotations":{{"owner":"{owner}"}}}},"#,
                        r#""data":{{"app.properties":"{conf}","mode":"{mode}","replicas":"3"}}}}"#
                    ),
                    i = i,
                    ns = ns,
                    owner = rng.word(10),
                    conf = conf,
                    mode = rng.word(4)
                )
                .as_bytes(),
            );
        }
        i += 1;
    }
    body.extend_from_slice(b"]}");
    body
}

struct Result {
    name: &'static str,
    best: Duration,
    median: Duration,
    /// Best on-CPU time of this thread (other processes share the machine; wall time
    /// counts their time too, CPU time does not).
    cpu_best: Duration,
    /// Median on-CPU time.
    cpu_median: Duration,
    peak_growth: usize,
}

/// Time this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

type BenchResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn measure(
    name: &'static str,
    bytes: usize,
    mut f: impl FnMut() -> BenchResult<()>,
) -> BenchResult<Result> {
    // Warm up once, then time RUNS runs, tracking the allocator's peak above the baseline.
    f()?;
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut peak_growth = 0;
    for _ in 0..RUNS {
        let base = ALLOC.current_usage();
        ALLOC.reset_peak_usage();
        let cpu_start = thread_cpu();
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
        if let (Some(a), Some(b)) = (cpu_start, thread_cpu()) {
            cpu.push(b.saturating_sub(a));
        }
        peak_growth = peak_growth.max(ALLOC.peak_usage().saturating_sub(base));
    }
    times.sort();
    cpu.sort();
    let _ = bytes;
    // The scheduler's clock is coarse for very short runs: fall back to wall time.
    let cpu_at =
        |i: usize, wall: Duration| cpu.get(i).copied().filter(|d| !d.is_zero()).unwrap_or(wall);
    Ok(Result {
        name,
        best: times[0],
        median: times[times.len() / 2],
        cpu_best: cpu_at(0, times[0]),
        cpu_median: cpu_at(cpu.len() / 2, times[times.len() / 2]),
        peak_growth,
    })
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us with no such flag and
    // a tiny body, so the bench stays compiled and exercised in CI without taking long.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mb: usize = std::env::var("MASK_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 20 });
    let body = generate(mb * 1_000_000);
    let items = body.windows(7).filter(|w| w == b"\"kind\":").count() - 1;
    println!(
        "body: {:.1} MB, {items} objects (Secrets and ConfigMaps), chunks of {} KiB, best/median of {RUNS}",
        body.len() as f64 / 1e6,
        CHUNK / 1024
    );

    let masker = Masker::new(MaskConfig::new(b"bench-key".to_vec()))?;
    let ctx = MaskContext::default();

    // MASK_BENCH_ONLY=airlock|text runs one part (for profiling).
    let only = std::env::var("MASK_BENCH_ONLY").unwrap_or_default();
    let mut results = Vec::new();
    if only.is_empty() {
        results.push(measure("passthrough (memcpy)", body.len(), || {
            let mut out = Vec::with_capacity(CHUNK);
            let mut total = 0;
            for c in body.chunks(CHUNK) {
                out.clear();
                out.extend_from_slice(c);
                total += out.len();
            }
            std::hint::black_box(total);
            Ok(())
        })?);
        results.push(measure("serde_json parse+serialize", body.len(), || {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let out = serde_json::to_vec(&v)?;
            std::hint::black_box(out.len());
            Ok(())
        })?);
    }
    let mut peak_buffered = 0;
    if only.is_empty() || only == "airlock" {
        results.push(measure("airlock masker (streamed)", body.len(), || {
            let mut stream = masker.stream(BodyKind::Json, &ctx)?;
            let mut out = Vec::with_capacity(2 * CHUNK);
            let mut total = 0;
            for c in body.chunks(CHUNK) {
                out.clear();
                stream.push(c, &mut out)?;
                total += out.len();
            }
            out.clear();
            stream.finish(&mut out)?;
            peak_buffered = stream.peak_buffered();
            std::hint::black_box(total + out.len());
            Ok(())
        })?);
    }

    println!();
    println!("| json body | MB/s per core (CPU time), median | best | MB/s wall, median | best | peak memory growth |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &results {
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} MiB |",
            r.name,
            mbps(body.len(), r.cpu_median),
            mbps(body.len(), r.cpu_best),
            mbps(body.len(), r.median),
            mbps(body.len(), r.best),
            r.peak_growth as f64 / (1024.0 * 1024.0)
        );
    }
    // Same-run ratio: the machine's load moves both numbers together.
    let serde = results.iter().find(|r| r.name.starts_with("serde_json"));
    let airlock = results.iter().find(|r| r.name.starts_with("airlock"));
    if let (Some(s), Some(a)) = (serde, airlock) {
        println!(
            "airlock masker / serde_json, CPU time, same run: {:.2}x (medians), {:.2}x (best)",
            s.cpu_median.as_secs_f64() / a.cpu_median.as_secs_f64(),
            s.cpu_best.as_secs_f64() / a.cpu_best.as_secs_f64()
        );
    }
    println!("masker peak_buffered(): {peak_buffered} bytes (largest single item)");
    if only == "airlock" {
        return Ok(());
    }

    // Text: log throughput.
    let mut rng = Rng(42);
    let mut log = Vec::with_capacity(body.len());
    let mut n = 0;
    while log.len() < body.len() {
        n += 1;
        let line = match n % 50 {
            0 => format!(
                "2026-01-01T00:00:{:02}Z connecting with password={}\n",
                n % 60,
                rng.word(12)
            ),
            7 => format!(
                "2026-01-01T00:00:{:02}Z GET https://api.example.com/v1/items?page={n} 200\n",
                n % 60
            ),
            _ => format!(
                "2026-01-01T00:00:{:02}Z INFO worker-{} processed {} records in {}ms {}\n",
                n % 60,
                n % 8,
                rng.next() % 1000,
                rng.next() % 100,
                rng.word(20)
            ),
        };
        log.extend_from_slice(line.as_bytes());
    }
    let text = measure("text masker (logs)", log.len(), || {
        let mut stream = masker.stream(BodyKind::Text, &ctx)?;
        let mut out = Vec::with_capacity(2 * CHUNK);
        for c in log.chunks(CHUNK) {
            out.clear();
            stream.push(c, &mut out)?;
        }
        stream.finish(&mut out)?;
        std::hint::black_box(out.len());
        Ok(())
    })?;
    println!();
    println!(
        "| text masker (logs, {:.1} MB) | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} MiB |",
        log.len() as f64 / 1e6,
        mbps(log.len(), text.cpu_median),
        mbps(log.len(), text.cpu_best),
        mbps(log.len(), text.median),
        mbps(log.len(), text.best),
        text.peak_growth as f64 / (1024.0 * 1024.0)
    );

    // Clean exec output (the tunnel throughput test's `yes`-like stdout), 32 KiB at a time:
    // the keyword prefilter is nearly all of the cost.
    let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    let yes: Vec<u8> = line.iter().copied().cycle().take(log.len()).collect();
    // Ten passes: one pass takes only a few scheduler ticks of CPU time.
    const PASSES: usize = 10;
    let clean = measure(
        "text masker (clean exec output)",
        PASSES * yes.len(),
        || {
            let mut stream = masker.stream(BodyKind::Text, &ctx)?;
            let mut out = Vec::with_capacity(2 * CHUNK);
            for c in (0..PASSES).flat_map(|_| yes.chunks(32 * 1024)) {
                out.clear();
                stream.push(c, &mut out)?;
            }
            stream.finish(&mut out)?;
            std::hint::black_box(out.len());
            Ok(())
        },
    )?;
    let total = PASSES * yes.len();
    println!(
        "| text masker (clean exec output, {:.1} MB, 32 KiB pushes) | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} MiB |",
        total as f64 / 1e6,
        mbps(total, clean.cpu_median),
        mbps(total, clean.cpu_best),
        mbps(total, clean.median),
        mbps(total, clean.best),
        clean.peak_growth as f64 / (1024.0 * 1024.0)
    );

    // Interactive latency: a shell session typed and echoed a few bytes at a time.
    let session: &[u8] = b"$ ls -la /var/log\r\ntotal 48\r\ndrwxr-xr-x  2 root root 4096 Jan  1 00:00 .\r\n$ cat config.yaml | grep -v '#'\r\nmode: fast\r\nreplicas: 3\r\n$ echo done\r\ndone\r\n";
    let mut stream = masker.stream(BodyKind::Text, &ctx)?;
    let mut out = Vec::new();
    let mut lat = Vec::new();
    let rounds = if quick { 100 } else { 5_000 };
    for _ in 0..rounds {
        for piece in session.chunks(3) {
            out.clear();
            let start = Instant::now();
            stream.push(piece, &mut out)?;
            stream.flush(&mut out)?;
            lat.push(start.elapsed());
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    println!();
    println!(
        "interactive text: {} pushes of 1-3 bytes: p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
    Ok(())
}
