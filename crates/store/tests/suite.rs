//! The behaviour suite, run against both backends: every test below is instantiated once
//! for SQLite and once for PostgreSQL by `suite!`.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use common::{config, key, lit, request, Harness};
use store::{
    chain::{record_hash, record_payload, GENESIS},
    AuditRecord, Body, Checkpoint, Filter, Outcome, ProblemKind, RecordKind, SigningKey, Store,
    Timestamp,
};
use uuid::Uuid;

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Harness::sqlite()?).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Harness::postgres().await?).await
                }
            )*
        }
    };
}

suite!(
    append_get_list_export,
    group_commit_under_concurrency,
    tamper_edit_payload,
    tamper_edit_indexed_column,
    tamper_edit_and_rehash_one_record,
    tamper_delete,
    tamper_insert_at_end,
    tamper_insert_in_middle,
    tamper_reorder,
    tamper_rewrite_chain_is_caught_by_checkpoint,
    tamper_truncate_tail_is_caught_by_checkpoint,
    tamper_rewrite_and_checkpoints_is_caught_outside,
    forged_checkpoint,
    checkpoint_every_n_and_interval,
    prune_keeps_a_verifiable_anchor,
    restart_resumes_the_chain,
    replicas_share_one_store,
    large_bodies_keep_prefix_and_digest,
);

/// Appends `n` requests one after the other (so seq = i + 1) with replica `r1`.
async fn fill(store: &Store, n: usize) -> anyhow::Result<Vec<AuditRecord>> {
    let appender = store.appender(config("r1")).await?;
    let mut out = Vec::new();
    for i in 0..n {
        let r = request(i);
        appender.append(r.clone()).await?;
        out.push(r);
    }
    appender.close().await?;
    Ok(out)
}

fn trusted() -> Vec<store::PublicKey> {
    vec![key().verifying_key()]
}

/// Each problem as (position, kind).
fn kinds(report: &store::VerifyReport) -> Vec<(u64, ProblemKind)> {
    report
        .problems
        .iter()
        .map(|p| (p.seq, p.kind.clone()))
        .collect()
}

/// Verifies and returns the first problem, asserting there is one.
async fn first_problem(store: &Store) -> anyhow::Result<store::Problem> {
    let report = store.verify(&trusted()).await?;
    let p = report
        .first_problem()
        .cloned()
        .context("tampering went unnoticed")?;
    eprintln!("detected: {p}");
    Ok(p)
}

async fn append_get_list_export(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let appender = store.appender(config("r1")).await?;
    let req = request(0);
    let id = req.id;
    let r1 = appender.append(req.clone()).await?;
    assert_eq!((r1.seq, r1.id, r1.replica_id.as_str()), (1, id, "r1"));

    let mut out = AuditRecord::new(id, RecordKind::Outcome, req.received_at);
    out.identity = req.identity.clone();
    out.completed_at = Some(Timestamp::now());
    out.outcome = Some(Outcome {
        status: 200,
        upstream_audit_id: Some(id.to_string()),
        latency_us: 1234,
        bytes_in: 80,
        bytes_out: 512,
        error: None,
    });
    let r2 = appender.append(out.clone()).await?;
    assert_eq!(r2.seq, 2);
    for i in 1..6 {
        appender.append(request(i)).await?;
    }

    // get: both records of the request, chain fields filled in, content as given.
    let got = store.get(id).await?;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, RecordKind::Request);
    assert_eq!(got[0].prev_hash, hex::encode(GENESIS));
    assert_eq!(got[0].hash, r1.hash);
    assert_eq!(got[1].prev_hash, r1.hash);
    let mut expect = req.clone();
    expect.replica_id = "r1".into();
    expect.seq = 1;
    expect.prev_hash = hex::encode(GENESIS);
    expect.hash = r1.hash.clone();
    assert_eq!(got[0], expect);
    assert_eq!(got[1].outcome, out.outcome);
    assert!(store.get(Uuid::new_v4()).await?.is_empty());

    // list: table of filters -> expected count.
    let all = store.list(&Filter::default()).await?;
    assert_eq!(all.len(), 7);
    assert!(
        all.windows(2).all(|w| w[0].received_at >= w[1].received_at),
        "newest first"
    );
    let cases: Vec<(Filter, usize)> = vec![
        (
            Filter {
                user: Some("agent-0".into()),
                ..Filter::default()
            },
            3,
        ),
        (
            Filter {
                namespace: Some("kube-system".into()),
                ..Filter::default()
            },
            3,
        ),
        (
            Filter {
                cluster: Some("prod".into()),
                ..Filter::default()
            },
            6,
        ),
        (
            Filter {
                decision: Some("deny".into()),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                session: Some("sess-1".into()),
                ..Filter::default()
            },
            3,
        ),
        (
            Filter {
                session: Some("kubectl-2".into()),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                kind: Some(RecordKind::Outcome),
                ..Filter::default()
            },
            1,
        ),
        (
            Filter {
                since: Some(Timestamp::now()),
                ..Filter::default()
            },
            0,
        ),
        (
            Filter {
                until: Some(Timestamp::now()),
                ..Filter::default()
            },
            7,
        ),
        (
            Filter {
                limit: Some(2),
                ..Filter::default()
            },
            2,
        ),
        (
            Filter {
                user: Some("agent-0".into()),
                namespace: Some("default".into()),
                ..Filter::default()
            },
            1,
        ),
    ];
    for (filter, n) in cases {
        let got = store.list(&filter).await?;
        assert_eq!(got.len(), n, "{filter:?}");
    }
    let outcome = store
        .list(&Filter {
            kind: Some(RecordKind::Outcome),
            ..Filter::default()
        })
        .await?;
    assert_eq!(outcome[0].status, Some(200));
    assert_eq!(outcome[0].id, id);

    // export: every record once, as canonical JSON lines that carry their hash.
    let mut buf = Vec::new();
    let n = store.export_jsonl(Filter::default(), &mut buf).await?;
    assert_eq!(n, 7);
    let lines: Vec<AuditRecord> = buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    for r in &lines {
        let mut unhashed = r.clone();
        unhashed.hash.clear();
        let prev = store::chain::parse_hash(&r.prev_hash).context("prev hash")?;
        assert_eq!(
            hex::encode(record_hash(&prev, &record_payload(&unhashed)?)),
            r.hash
        );
    }
    let mut export = store.export(Filter {
        user: Some("agent-1".into()),
        ..Filter::default()
    });
    let mut seen = 0;
    while let Some(r) = export.next().await? {
        assert_eq!(r.identity.user, "agent-1");
        seen += 1;
    }
    assert_eq!(seen, 2);

    appender.close().await?;
    let report = store.verify(&trusted()).await?;
    ensure!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.replicas[0].records, 7);
    assert_eq!(report.replicas[0].unsealed, 0, "close() seals the chain");
    Ok(())
}

async fn group_commit_under_concurrency(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let mut cfg = config("r1");
    cfg.checkpoint_every = 100;
    let appender = store.appender(cfg).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let a = appender.clone();
            tokio::spawn(async move { a.append(request(i)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await??.seq);
    }
    let elapsed = started.elapsed();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    let stats = appender.stats();
    eprintln!("1000 concurrent appends in {elapsed:?}: {stats:?}");
    assert_eq!(stats.records, 1000);
    assert!(
        stats.transactions < 200,
        "group commit should batch: {stats:?}"
    );
    // Checkpoints land at batch boundaries: at least one per batch that crossed 100.
    assert!(stats.checkpoints >= 1, "{stats:?}");
    appender.close().await?;
    let report = store.verify(&trusted()).await?;
    ensure!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.replicas[0].records, 1000);
    Ok(())
}

async fn tamper_edit_payload(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let records = fill(&store, 12).await?;
    ensure!(store.verify(&trusted()).await?.is_ok());
    h.raw("UPDATE audit_records SET payload = replace(payload, 'delete pod', 'get pod') WHERE seq = 4;")
        .await?;
    let p = first_problem(&store).await?;
    assert_eq!(
        (p.replica_id.as_str(), p.seq, p.id),
        ("r1", 4, Some(records[3].id))
    );
    assert_eq!(p.kind, ProblemKind::HashMismatch);
    // The edit breaks the record itself, and its checkpoint (seq 5) still matches the
    // stored hashes: exactly one problem.
    assert_eq!(store.verify(&trusted()).await?.problems.len(), 1);
    Ok(())
}

async fn tamper_edit_indexed_column(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let records = fill(&store, 8).await?;
    // Hide a record from `list --namespace default` without touching the hashed payload.
    h.raw("UPDATE audit_records SET namespace = 'elsewhere' WHERE seq = 3;")
        .await?;
    let p = first_problem(&store).await?;
    assert_eq!((p.seq, p.id), (3, Some(records[2].id)));
    assert_eq!(
        p.kind,
        ProblemKind::ColumnMismatch {
            column: "namespace".into()
        }
    );
    Ok(())
}

async fn tamper_edit_and_rehash_one_record(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let records = fill(&store, 12).await?;
    // Edit record 3 and give it a correct hash of its own: the next record still points at
    // the old hash.
    let mut r = store.get(records[2].id).await?.remove(0);
    r.command = Some("kubectl get pod pod-2 -n default".into());
    r.hash.clear();
    let prev = store::chain::parse_hash(&r.prev_hash).context("hash")?;
    let payload = record_payload(&r)?;
    h.raw(&format!(
        "UPDATE audit_records SET payload = {}, hash = {}, command = {} WHERE seq = 3;",
        lit(std::str::from_utf8(&payload)?),
        lit(&hex::encode(record_hash(&prev, &payload))),
        lit(r.command.as_deref().unwrap_or_default()),
    ))
    .await?;
    let p = first_problem(&store).await?;
    assert_eq!((p.seq, p.id), (4, Some(records[3].id)));
    assert_eq!(p.kind, ProblemKind::PrevHashMismatch);
    assert!(p.to_string().contains("between seq 3 and 4"), "{p}");
    Ok(())
}

async fn tamper_delete(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let records = fill(&store, 12).await?;
    h.raw("DELETE FROM audit_records WHERE seq = 7;").await?;
    let p = first_problem(&store).await?;
    // Located at the record after the hole, naming the missing position.
    assert_eq!((p.seq, p.id), (8, Some(records[7].id)));
    assert_eq!(p.kind, ProblemKind::Missing { expected: 7 });
    Ok(())
}

const COLUMNS: &str = "replica_id, seq, id, kind, received_at, user_name, session_id, \
    kubectl_session, cluster, namespace, verb, resource, name, command, decision, status, \
    payload, prev_hash, hash";

async fn tamper_insert_at_end(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let records = fill(&store, 10).await?;
    // Replay record 3 as a new record 11.
    h.raw(&format!(
        "INSERT INTO audit_records ({COLUMNS}) SELECT replica_id, 11, id, kind, received_at, \
         user_name, session_id, kubectl_session, cluster, namespace, verb, resource, name, \
         command, decision, status, payload, prev_hash, hash FROM audit_records WHERE seq = 3;"
    ))
    .await?;
    let p = first_problem(&store).await?;
    assert_eq!((p.seq, p.id), (11, Some(records[2].id)));
    assert_eq!(p.kind, ProblemKind::PrevHashMismatch);
    Ok(())
}

async fn tamper_insert_in_middle(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    fill(&store, 12).await?;
    // Shift 6.. up by one (in two steps: the primary key is checked per row), then put a
    // fabricated record at 6.
    let forged = Uuid::new_v4();
    h.raw(&format!(
        "UPDATE audit_records SET seq = seq + 100000 WHERE seq >= 6;
         UPDATE audit_records SET seq = seq - 99999 WHERE seq >= 100000;
         INSERT INTO audit_records ({COLUMNS}) SELECT replica_id, 6, {}, kind, received_at, \
         user_name, session_id, kubectl_session, cluster, namespace, verb, resource, name, \
         command, decision, status, payload, prev_hash, hash FROM audit_records WHERE seq = 5;",
        lit(&forged.to_string())
    ))
    .await?;
    let p = first_problem(&store).await?;
    assert_eq!((p.seq, p.id), (6, Some(forged)));
    assert_eq!(p.kind, ProblemKind::PrevHashMismatch);
    Ok(())
}

async fn tamper_reorder(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let records = fill(&store, 12).await?;
    h.raw(
        "UPDATE audit_records SET seq = -1 WHERE seq = 8;
         UPDATE audit_records SET seq = 8 WHERE seq = 9;
         UPDATE audit_records SET seq = 9 WHERE seq = -1;",
    )
    .await?;
    let p = first_problem(&store).await?;
    // Position 8 now holds the record that was 9th.
    assert_eq!((p.seq, p.id), (8, Some(records[8].id)));
    assert_eq!(p.kind, ProblemKind::PrevHashMismatch);
    Ok(())
}

/// What an attacker who understands the format does: edits record 7 and recomputes every
/// hash after it. The chain is then internally consistent; only signed checkpoints can tell.
async fn rewrite_from_seven(h: &Harness, store: &Store) -> anyhow::Result<()> {
    let mut records = Vec::new();
    let mut export = store.export(Filter::default());
    while let Some(r) = export.next().await? {
        records.push(r);
    }
    let mut prev = store::chain::parse_hash(&records[6].prev_hash).context("hash")?;
    let mut sql = String::new();
    for r in records.iter_mut().skip(6) {
        if r.seq == 7 {
            r.name = Some("innocent".into());
            r.command = Some("kubectl get pod innocent".into());
        }
        r.prev_hash = hex::encode(prev);
        r.hash.clear();
        let payload = record_payload(r)?;
        prev = record_hash(&prev, &payload);
        sql += &format!(
            "UPDATE audit_records SET payload = {}, prev_hash = {}, hash = {}, name = {}, command = {} WHERE seq = {};\n",
            lit(std::str::from_utf8(&payload)?),
            lit(&r.prev_hash),
            lit(&hex::encode(prev)),
            lit(r.name.as_deref().unwrap_or_default()),
            lit(r.command.as_deref().unwrap_or_default()),
            r.seq
        );
    }
    h.raw(&sql).await?;
    Ok(())
}

async fn tamper_rewrite_chain_is_caught_by_checkpoint(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    fill(&store, 12).await?;
    rewrite_from_seven(&h, &store).await?;
    let report = store.verify(&trusted()).await?;
    let p = report.first_problem().context("rewrite went unnoticed")?;
    eprintln!("detected: {p}");
    assert_eq!(p.seq, 10);
    assert_eq!(p.kind, ProblemKind::CheckpointMismatch { after: Some(5) });
    // The final checkpoint (12, from close()) no longer matches either.
    let kinds = kinds(&report);
    assert_eq!(
        kinds[1],
        (12, ProblemKind::CheckpointMismatch { after: Some(5) })
    );
    assert_eq!(kinds.len(), 2);
    Ok(())
}

async fn tamper_truncate_tail_is_caught_by_checkpoint(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    fill(&store, 12).await?;
    // close() sealed 12; deleting 11 and 12 leaves a checkpoint without its record.
    h.raw("DELETE FROM audit_records WHERE seq > 10;").await?;
    let p = first_problem(&store).await?;
    assert_eq!((p.seq, p.id), (12, None));
    assert_eq!(p.kind, ProblemKind::CheckpointWithoutRecord);
    Ok(())
}

/// The rewrite above, with the database's checkpoints after 5 deleted as well: what is left
/// verifies on its own; the checkpoints kept outside the database do not match it.
async fn tamper_rewrite_and_checkpoints_is_caught_outside(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    fill(&store, 12).await?;
    let kept = store.checkpoints("r1").await?;
    assert_eq!(kept.iter().map(|c| c.seq).collect::<Vec<_>>(), [5, 10, 12]);
    rewrite_from_seven(&h, &store).await?;
    h.raw("DELETE FROM audit_checkpoints WHERE seq > 5;")
        .await?;
    assert!(store.verify(&trusted()).await?.is_ok());

    let report = store::verify_with_external(&store, &trusted(), &kept).await?;
    assert_eq!(
        kinds(&report),
        [
            (10, ProblemKind::ExternalCheckpointMismatch),
            (12, ProblemKind::ExternalCheckpointMismatch)
        ]
    );
    assert_eq!(
        report.replicas[0].external_checkpoints, 1,
        "seq 5 still matches"
    );

    // A kept checkpoint is only as good as its signature.
    let stranger = store::SigningKey::from_bytes(&[9; 32]);
    let forged = Checkpoint::sign(&stranger, "r1", 12, &kept[2].hash, kept[2].time)?;
    let report = store::verify_with_external(&store, &trusted(), &[forged]).await?;
    assert_eq!(kinds(&report), [(12, ProblemKind::UntrustedCheckpointKey)]);
    Ok(())
}

async fn forged_checkpoint(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    fill(&store, 10).await?;
    // Move checkpoint 5's claim to another hash: its signature no longer verifies.
    h.raw("UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_records WHERE seq = 4), seq = 4 WHERE seq = 5;")
        .await?;
    let p = first_problem(&store).await?;
    assert_eq!(
        (p.seq, p.kind.clone()),
        (4, ProblemKind::BadCheckpointSignature)
    );

    // A checkpoint signed by a key nobody trusts.
    let intruder = SigningKey::from_bytes(&[66; 32]);
    let head = store
        .get(store.list(&Filter::default()).await?[0].id)
        .await?;
    let cp = store::Checkpoint::sign(&intruder, "r1", 10, &head[0].hash, Timestamp::now())?;
    h.raw(&format!(
        "UPDATE audit_checkpoints SET public_key = {}, signature = {}, created_at = {} WHERE seq = 10;",
        lit(&cp.public_key),
        lit(&cp.signature),
        cp.time.unix_nanos()
    ))
    .await?;
    let report = store.verify(&trusted()).await?;
    let kinds = kinds(&report);
    assert_eq!(
        kinds,
        vec![
            (4, ProblemKind::BadCheckpointSignature),
            (10, ProblemKind::UntrustedCheckpointKey)
        ]
    );
    // Trusting the intruder's key too turns the second into a valid checkpoint.
    let both = vec![key().verifying_key(), intruder.verifying_key()];
    assert_eq!(store.verify(&both).await?.problems.len(), 1);
    Ok(())
}

async fn checkpoint_every_n_and_interval(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let appender = store.appender(config("r1")).await?;
    for i in 0..12 {
        appender.append(request(i)).await?;
    }
    let seqs: Vec<u64> = store
        .checkpoints("r1")
        .await?
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, vec![5, 10]);
    assert_eq!(appender.checkpoint().await?.map(|c| c.seq), Some(12));
    assert_eq!(appender.checkpoint().await?, None, "nothing new to seal");
    appender.close().await?;

    // Time-based: a record, then silence; the writer seals it after the interval.
    let mut cfg = config("r2");
    cfg.checkpoint_every = 1000;
    cfg.checkpoint_interval = Duration::from_millis(200);
    let appender = store.appender(cfg).await?;
    appender.append(request(0)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if store.checkpoints("r2").await?.iter().any(|c| c.seq == 1) {
            break;
        }
        ensure!(Instant::now() < deadline, "no time-based checkpoint");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for cp in store.checkpoints("r1").await? {
        assert_eq!(cp.verify(&trusted()), Ok(()));
    }
    drop(appender);
    Ok(())
}

async fn prune_keeps_a_verifiable_anchor(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let appender = store.appender(config("r1")).await?;
    for i in 0..12 {
        appender.append(request(i)).await?;
    }
    // Checkpoints at 5 and 10; prune everything sealed before now.
    let report = store.prune(Timestamp::now()).await?;
    assert_eq!(report.replicas, vec![("r1".to_owned(), 10, 10)]);
    assert_eq!(store.anchor("r1").await?.map(|a| a.seq), Some(10));
    assert!(store.checkpoints("r1").await?.is_empty());
    let v = store.verify(&trusted()).await?;
    ensure!(v.is_ok(), "{:?}", v.problems);
    assert_eq!(
        (v.replicas[0].first_seq, v.replicas[0].anchor_seq),
        (Some(11), Some(10))
    );

    // The chain carries on from the anchor, and survives an appender restart.
    appender.append(request(12)).await?;
    appender.close().await?;
    let appender = store.appender(config("r1")).await?;
    assert_eq!(appender.append(request(13)).await?.seq, 14);
    appender.close().await?;
    let v = store.verify(&trusted()).await?;
    ensure!(v.is_ok(), "{:?}", v.problems);

    // Without the anchor, the cut is indistinguishable from deletion.
    h.raw("DELETE FROM audit_anchors;").await?;
    let p = first_problem(&store).await?;
    assert_eq!((p.seq, p.kind), (11, ProblemKind::Missing { expected: 1 }));
    Ok(())
}

async fn restart_resumes_the_chain(h: Harness) -> anyhow::Result<()> {
    {
        let store = h.open().await?;
        fill(&store, 3).await?;
    }
    let store = h.open().await?;
    let appender = store.appender(config("r1")).await?;
    let r = appender.append(request(3)).await?;
    assert_eq!(r.seq, 4);
    drop(appender);
    // Dropping every handle without close() still lets the writer seal the chain.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.checkpoints("r1").await?.iter().any(|c| c.seq == 4) {
        ensure!(Instant::now() < deadline, "no checkpoint after drop");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let v = store.verify(&trusted()).await?;
    ensure!(v.is_ok(), "{:?}", v.problems);
    Ok(())
}

async fn replicas_share_one_store(h: Harness) -> anyhow::Result<()> {
    let store_a = h.open().await?;
    let store_b = h.open().await?;
    let a = store_a.appender(config("replica-a")).await?;
    let b = store_b.appender(config("replica-b")).await?;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                if i % 2 == 1 {
                    b.append(request(i)).await
                } else {
                    a.append(request(i)).await
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    a.close().await?;
    b.close().await?;
    let v = store_a.verify(&trusted()).await?;
    ensure!(v.is_ok(), "{:?}", v.problems);
    let counts: Vec<_> = v
        .replicas
        .iter()
        .map(|r| (r.replica_id.as_str(), r.records))
        .collect();
    assert_eq!(counts, vec![("replica-a", 100), ("replica-b", 100)]);
    Ok(())
}

async fn large_bodies_keep_prefix_and_digest(h: Harness) -> anyhow::Result<()> {
    let store = h.open().await?;
    let mut cfg = config("r1");
    cfg.max_inline_body = 1024;
    cfg.body_prefix = 100;
    let appender = store.appender(cfg).await?;
    let big = vec![b'x'; 10_000];
    let mut r = request(0);
    r.response_body = Some(Body::capture(&big, usize::MAX, 0));
    appender.append(r.clone()).await?;
    let got = store.get(r.id).await?;
    let body = got[0].response_body.as_ref().context("body")?;
    assert!(body.truncated);
    assert_eq!(body.size, 10_000);
    assert_eq!(body.data.len(), 100);
    assert_eq!(
        Some(&body.sha256),
        r.response_body.as_ref().map(|b| &b.sha256)
    );
    assert_eq!(
        got[0].request_body, r.request_body,
        "small bodies stay whole"
    );
    Ok(())
}
