//! Append throughput with durability on: records per second for SQLite and PostgreSQL with
//! 1 and 64 concurrent writers.
//!
//! ```text
//! cargo bench -p store --bench append                  # both backends, 5 s per case
//! cargo bench -p store --bench append -- --seconds 10 --backend sqlite
//! AIRLOCK_BENCH_PG=postgres://postgres@127.0.0.1:5432/test cargo bench -p store --bench append
//! ```
//!
//! PostgreSQL runs in a fresh schema that is dropped afterwards; it is skipped (with a
//! message) when the server cannot be reached. SQLite runs in a temporary directory, so
//! the numbers are those of the filesystem behind `$TMPDIR`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use store::{
    AppenderConfig, AuditRecord, Body, Decision, Identity, OpenOptions, RecordKind, SigningKey,
    Store, Timestamp,
};
use tokio_postgres::NoTls;
use uuid::Uuid;

fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new(Uuid::new_v4(), RecordKind::Request, Timestamp::now());
    r.identity = Identity {
        user: format!("agent-{}", i % 8),
        groups: vec!["agents".into()],
        session_id: Some(format!("sess-{}", i % 16)),
        source_addr: Some("10.0.0.7:51234".into()),
        user_agent: Some("kubectl/v1.33.0 (linux/amd64)".into()),
        ..Identity::default()
    };
    r.cluster = Some("prod".into());
    r.verb = Some("patch".into());
    r.resource = Some("deployments".into());
    r.api_group = Some("apps".into());
    r.namespace = Some("payments".into());
    r.name = Some(format!("api-{i}"));
    r.command = Some(format!(
        "kubectl patch deployment api-{i} -n payments --type merge -p ..."
    ));
    r.intent = Some("scale the api for the evening peak".into());
    // A typical small write: ~300 bytes of masked JSON.
    r.request_body = Some(Body::capture(
        br#"{"spec":{"replicas":6,"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-26T12:00:00Z"}}}},"metadata":{"labels":{"app":"api","tier":"backend"}}}"#,
        64 * 1024,
        4096,
    ));
    r.decision = Some(Decision {
        action: "allow".into(),
        ..Decision::default()
    });
    r
}

struct Args {
    seconds: u64,
    backend: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        backend: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => a.seconds = it.next().and_then(|s| s.parse().ok()).unwrap_or(5),
            "--backend" => a.backend = it.next(),
            _ => {} // `cargo bench` passes --bench
        }
    }
    a
}

async fn run_case(
    store: &Store,
    replica: &str,
    writers: usize,
    seconds: u64,
) -> anyhow::Result<()> {
    let mut config = AppenderConfig::new(replica, SigningKey::from_bytes(&[3; 32]));
    config.append_timeout = Duration::from_secs(30);
    let appender = store.appender(config).await?;
    // Warm up (connections, page cache).
    for i in 0..50 {
        appender.append(record(i)).await?;
    }
    let base = appender.stats();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let a = appender.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = w * 1_000_000;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    a.append(record(i)).await?;
                    lat.push(t.elapsed());
                    i += 1;
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed();
    let stats = appender.stats();
    appender.close().await?;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let records = stats.records - base.records;
    let txs = (stats.transactions - base.transactions).max(1);
    println!(
        "| {:<10} | {:>7} | {:>10.0} | {:>9.1} | {:>9.2} | {:>9.2} |",
        match store {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        },
        writers,
        records as f64 / elapsed.as_secs_f64(),
        records as f64 / txs as f64,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

fn header() {
    println!("| backend    | writers | records/s  | rec/tx    | p50 ms    | p99 ms    |");
    println!("| ---------- | ------- | ---------- | --------- | --------- | --------- |");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let want = |b: &str| args.backend.as_deref().is_none_or(|x| x == b);
    header();
    if want("sqlite") {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&format!(
            "sqlite://{}",
            dir.path().join("audit.db").display()
        ))
        .await?;
        for (n, writers) in [1, 64].into_iter().enumerate() {
            run_case(&store, &format!("bench-{n}"), writers, args.seconds).await?;
        }
    }
    if want("postgres") {
        let base = std::env::var("AIRLOCK_BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("airlock_store_bench_{}", std::process::id());
        match tokio_postgres::connect(&base, NoTls).await {
            Err(e) => eprintln!("postgres skipped: {e}"),
            Ok((client, conn)) => {
                let client = Arc::new(client);
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                let result = async {
                    let store = Store::open_with(&url, OpenOptions::default()).await?;
                    for (n, writers) in [1, 64].into_iter().enumerate() {
                        run_case(&store, &format!("bench-{n}"), writers, args.seconds).await?;
                    }
                    anyhow::Ok(())
                }
                .await;
                client
                    .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                    .await?;
                result?;
            }
        }
    }
    Ok(())
}
