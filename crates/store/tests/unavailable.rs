//! Backend-specific failure and tooling tests: the store unavailable or full must fail an
//! append promptly (the gateway then answers 503 and forwards nothing), and a copy of the
//! database verifies offline.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use common::{config, key, psql, request, sqlite_cli, Harness};
use store::{Body, OpenOptions, ProblemKind, Store, StoreError};

/// Everything here must fail well within this.
const PROMPT: Duration = Duration::from_secs(3);

fn chain_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_open_in_unusable_directory_fails() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x")?;
    let started = Instant::now();
    let err = Store::open(&format!("sqlite://{}/audit.db", file.display()))
        .await
        .err()
        .context("opened a database under a regular file")?;
    assert!(started.elapsed() < PROMPT);
    eprintln!("{}", chain_text(&err));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_fails_append_promptly() -> anyhow::Result<()> {
    let h = Harness::sqlite()?;
    // A 64-page (256 KiB) quota stands in for a full disk: SQLite answers SQLITE_FULL
    // exactly as when the filesystem is out of space.
    let options = OpenOptions {
        sqlite_max_pages: Some(64),
        ..OpenOptions::default()
    };
    let store = Store::open_with(&h.url, options).await?;
    let appender = store.appender(config("r1")).await?;
    let mut committed = 0;
    let mut failure = None;
    for i in 0..200 {
        let mut r = request(i);
        r.request_body = Some(Body::capture(&vec![b'y'; 16 * 1024], usize::MAX, 0));
        let started = Instant::now();
        match appender.append(r).await {
            Ok(_) => committed += 1,
            Err(e) => {
                assert!(started.elapsed() < PROMPT, "failed, but slowly");
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.context("quota never hit")?;
    let text = chain_text(&err);
    eprintln!("after {committed} records: {text}");
    assert!(matches!(err, StoreError::WriteFailed(_)));
    assert!(text.contains("full"), "{text}");
    // The failed batch left nothing behind: what was committed still verifies.
    let report = store.verify(&[key().verifying_key()]).await?;
    ensure!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.replicas[0].records, committed);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_copy_verifies_offline_and_cli_tampering_is_found() -> anyhow::Result<()> {
    let h = Harness::sqlite()?;
    let store = h.open().await?;
    let appender = store.appender(config("r1")).await?;
    let mut ids = Vec::new();
    for i in 0..8 {
        let r = request(i);
        ids.push(r.id);
        appender.append(r).await?;
    }
    appender.close().await?;
    let common::Backend::Sqlite { path, .. } = &h.backend else {
        unreachable!()
    };
    // An offline copy: the database file and its WAL, as a backup would take them.
    let copy_dir = tempfile::tempdir()?;
    let copy = copy_dir.path().join("copy.db");
    std::fs::copy(path, &copy)?;
    let wal = path.with_extension("db-wal");
    if wal.exists() {
        std::fs::copy(&wal, copy.with_extension("db-wal"))?;
    }
    let offline = Store::open(&format!("sqlite://{}", copy.display())).await?;
    ensure!(offline.verify(&[key().verifying_key()]).await?.is_ok());

    // Tamper with the copy through the sqlite3 command-line tool.
    sqlite_cli(
        &copy,
        "UPDATE audit_records SET payload = replace(payload, '\"user\":\"agent-2\"', '\"user\":\"agent-0\"') WHERE seq = 3;",
    )?;
    let report = offline.verify(&[key().verifying_key()]).await?;
    let p = report.first_problem().context("cli edit went unnoticed")?;
    assert_eq!(
        (p.seq, p.id, p.kind.clone()),
        (3, Some(ids[2]), ProblemKind::HashMismatch)
    );
    // The original is untouched.
    ensure!(store.verify(&[key().verifying_key()]).await?.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wrong_port_fails_promptly() -> anyhow::Result<()> {
    let started = Instant::now();
    let err = Store::open("postgres://postgres@127.0.0.1:1/test")
        .await
        .err()
        .context("connected to port 1")?;
    eprintln!("{}", chain_text(&err));
    assert!(started.elapsed() < PROMPT);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_revoked_insert_fails_append_promptly() -> anyhow::Result<()> {
    let h = Harness::postgres().await?;
    let common::Backend::Postgres { schema } = &h.backend else {
        unreachable!()
    };
    h.open().await?; // migrate as the owner
    let role = format!("{schema}_gw");
    let grant = format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {schema} TO {role};"
    );
    tokio::task::spawn_blocking(move || psql(&grant)).await??;
    let result = async {
        let url =
            format!("postgres://{role}@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}");
        let store = Store::open(&url).await?;
        let appender = store.appender(config("r1")).await?;
        appender.append(request(0)).await?;
        let revoke = format!("REVOKE INSERT ON {schema}.audit_records FROM {role};");
        tokio::task::spawn_blocking(move || psql(&revoke)).await??;
        let started = Instant::now();
        let err = appender
            .append(request(1))
            .await
            .err()
            .context("append succeeded without INSERT privilege")?;
        assert!(started.elapsed() < PROMPT);
        let text = chain_text(&err);
        eprintln!("{text}");
        assert!(text.contains("permission denied"), "{text}");
        anyhow::Ok(())
    }
    .await;
    let drop_role = format!("DROP OWNED BY {role}; DROP ROLE {role};");
    tokio::task::spawn_blocking(move || psql(&drop_role)).await??;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recovers_when_the_table_comes_back() -> anyhow::Result<()> {
    let h = Harness::postgres().await?;
    let store = h.open().await?;
    let appender = store.appender(config("r1")).await?;
    appender.append(request(0)).await?;
    h.raw("ALTER TABLE audit_records RENAME TO audit_records_gone;")
        .await?;
    let started = Instant::now();
    let err = appender
        .append(request(1))
        .await
        .err()
        .context("append into a missing table")?;
    assert!(started.elapsed() < PROMPT);
    eprintln!("{}", chain_text(&err));
    h.raw("ALTER TABLE audit_records_gone RENAME TO audit_records;")
        .await?;
    assert_eq!(appender.append(request(2)).await?.seq, 2);
    appender.close().await?;
    let report = store.verify(&[key().verifying_key()]).await?;
    ensure!(report.is_ok(), "{:?}", report.problems);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_second_writer_for_a_replica_is_refused() -> anyhow::Result<()> {
    let h = Harness::postgres().await?;
    let store = h.open().await?;
    let first = store.appender(config("r1")).await?;
    let err = store
        .appender(config("r1"))
        .await
        .err()
        .context("two writers for one chain")?;
    assert!(
        matches!(err, StoreError::ReplicaLocked(ref r) if r == "r1"),
        "{err}"
    );
    // Another replica is fine.
    store.appender(config("r2")).await?.close().await?;
    first.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_urls_are_refused() -> anyhow::Result<()> {
    for url in ["mysql://x", "sqlite://", "file:///tmp/x"] {
        assert!(Store::open(url).await.is_err(), "{url}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_locked_table_times_out_then_recovers() -> anyhow::Result<()> {
    let h = Harness::postgres().await?;
    let common::Backend::Postgres { schema } = &h.backend else {
        unreachable!()
    };
    let store = h.open().await?;
    let mut cfg = config("r1");
    cfg.append_timeout = Duration::from_millis(500);
    let appender = store.appender(cfg).await?;
    appender.append(request(0)).await?;

    // Someone holds an exclusive lock on the table.
    let (locker, conn) =
        tokio_postgres::connect(&Harness::pg_url(schema), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE audit_records IN ACCESS EXCLUSIVE MODE;")
        .await?;
    let started = Instant::now();
    let err = appender
        .append(request(1))
        .await
        .err()
        .context("append through a lock")?;
    assert!(started.elapsed() < PROMPT);
    // Whichever fires first: the append timeout, or the writer's statement timeout
    // (both 500 ms here).
    assert!(
        matches!(err, StoreError::Timeout(_) | StoreError::WriteFailed(_)),
        "{err}"
    );

    // The writer's statement timeout fails the stuck batch; once the lock is gone the
    // writer resynchronises and carries on.
    locker.batch_execute("ROLLBACK").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let receipt = loop {
        match appender.append(request(2)).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => eprintln!("retrying: {e}"),
            Err(e) => return Err(e.into()),
        }
    };
    appender.close().await?;
    let report = store.verify(&[key().verifying_key()]).await?;
    ensure!(report.is_ok(), "{:?}", report.problems);
    // Record 1 may or may not have been committed after its caller gave up.
    assert!(receipt.seq == 2 || receipt.seq == 3, "{receipt:?}");
    Ok(())
}

/// Under appends that never pause, the WAL is started over (RESTART after the background
/// PASSIVE checkpoint falls behind) instead of growing with everything ever written, and
/// records committed without a sync (outcomes, `Durability::WriteAhead`) are read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_restarted_under_steady_appends() -> anyhow::Result<()> {
    let h = Harness::sqlite()?;
    let store = Store::open(&h.url).await?;
    let appender = store.appender(config("r1")).await?;
    let db = h.url.trim_start_matches("sqlite://").to_owned();
    let wal = std::path::PathBuf::from(format!("{db}-wal"));
    let body = vec![b'w'; 48 * 1024];
    let mut written = 0usize;
    let mut max_wal = 0u64;
    let mut n = 0usize;
    // Long enough for several checkpointer passes; 8 appenders keep the writer busy.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline || written < 96 * 1024 * 1024 {
        let mut batch = Vec::new();
        for _ in 0..8 {
            let mut r = request(n);
            if n % 2 == 1 {
                r.kind = store::RecordKind::Outcome;
            }
            r.response_body = Some(Body::capture(&body, usize::MAX, 0));
            n += 1;
            let a = appender.clone();
            batch.push(tokio::spawn(async move { a.append(r).await }));
        }
        for t in batch {
            t.await??;
            written += body.len();
        }
        max_wal = max_wal.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        if written > 400 * 1024 * 1024 {
            break;
        }
    }
    eprintln!(
        "{n} records, {} MiB written, WAL at most {} MiB",
        written >> 20,
        max_wal >> 20
    );
    // Never restarted, the WAL would hold every byte written (and more: index pages, frame
    // headers); restarted about once a second, it holds a couple of seconds of appends.
    ensure!(
        (max_wal as usize) < written,
        "the WAL grew to {max_wal} bytes for {written} bytes written: it is never restarted"
    );
    appender.close().await?;
    let report = store.verify(&[key().verifying_key()]).await?;
    ensure!(report.is_ok(), "{:?}", report.first_problem());
    let stored: u64 = report.replicas.iter().map(|r| r.records).sum();
    ensure!(stored == n as u64, "{stored} of {n} records stored");
    Ok(())
}
