//! Tamper-evident audit store: one hash chain per gateway replica, Ed25519-signed
//! checkpoints, SQLite or PostgreSQL behind one API.
//!
//! # How the gateway uses it
//!
//! ```no_run
//! # async fn demo() -> Result<(), store::StoreError> {
//! use store::{AppenderConfig, AuditRecord, RecordKind, Store, Timestamp};
//!
//! let store = Store::open("sqlite:///var/lib/airlock/audit.db").await?;
//! let key = store::load_or_generate_signing_key("/var/lib/airlock/audit.key".as_ref())?;
//! let audit = store.appender(AppenderConfig::new("replica-a", key)).await?;
//!
//! // Write-ahead: nothing is forwarded unless this returns Ok.
//! let id = uuid::Uuid::new_v4();
//! let receipt = audit.append(AuditRecord::new(id, RecordKind::Request, Timestamp::now())).await?;
//! // ... forward with Audit-ID: {id}, then:
//! audit.append(AuditRecord::new(id, RecordKind::Outcome, Timestamp::now())).await?;
//! # let _ = receipt; Ok(()) }
//! ```
//!
//! # Why one chain per replica
//!
//! A single global chain would make every append wait for the previous append's hash, i.e.
//! a global lock across all replicas on the hot path. Instead each replica (`replica_id`)
//! owns a chain: its writer task is the only thing that assigns its sequence numbers and
//! hashes, so appends need no coordination with other replicas, and several replicas can
//! share one PostgreSQL database. Ordering *between* replicas is given by timestamps, not by
//! the chains; each chain is complete and ordered on its own, which is what tamper evidence
//! needs. See `docs/audit.md`.
//!
//! # Module map
//!
//! - [`record`]: the record model; [`chain`]: canonical encoding, hashes, checkpoints;
//! - [`Appender`] (`writer`): group commit; [`verify()`]: offline verification;
//! - [`keys`]: signing-key files; `sqlite`/`postgres`: the backends;
//! - [`sessions`]: agent sessions and exec recordings, as `airlock replay` and the web UI show them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
mod error;
pub mod keys;
mod pg_tls;
mod postgres;
pub mod record;
pub mod sessions;
mod sql;
mod sqlite;
mod time;
mod verify;
mod verify_lines;
mod writer;

use std::{collections::VecDeque, path::PathBuf, time::Duration};

use ed25519_dalek::VerifyingKey;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

pub use crate::postgres::postgres_pool;
pub use crate::{
    chain::Checkpoint,
    error::{Result, StoreError},
    keys::{load_or_generate_signing_key, load_signing_key, load_verifying_key},
    postgres::PostgresStore,
    record::{
        Approval, AuditRecord, Body, BodyEncoding, Decision, Filter, Identity, Outcome, RecordKind,
        RecordSummary, RuleMatch,
    },
    sqlite::SqliteStore,
    time::Timestamp,
    verify::{
        parse_checkpoint_log, verify, verify_with_external, Problem, ProblemKind, ReplicaReport,
        VerifyReport,
    },
    verify_lines::{verify_lines, Gaps, Unsealed},
    writer::{Appender, AppenderConfig, AppenderStats, Durability, Receipt},
};
pub use ed25519_dalek::{SigningKey, VerifyingKey as PublicKey};

use crate::sql::{Param, RecordRow};

/// Connection settings that are not part of the URL.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// PostgreSQL: reader pool size.
    pub pool_size: usize,
    /// PostgreSQL: connect and pool-wait timeout (an unreachable database fails this fast).
    pub connect_timeout: Duration,
    /// SQLite: how long to wait for another connection's write lock.
    pub busy_timeout: Duration,
    /// SQLite: cap the database at this many pages (`PRAGMA max_page_count`, 4 KiB pages),
    /// a quota after which appends fail as on a full disk.
    pub sqlite_max_pages: Option<u64>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            sqlite_max_pages: None,
        }
    }
}

/// An open audit store, SQLite or PostgreSQL, chosen by URL.
#[derive(Clone, Debug)]
pub enum Store {
    /// `sqlite:///absolute/path.db` or `sqlite://relative/path.db`.
    Sqlite(SqliteStore),
    /// `postgres://` or `postgresql://` (libpq URL; `?options=-csearch_path%3Dschema` picks
    /// a schema; `sslmode` and `sslrootcert` as in libpq, see `pg_tls`).
    Postgres(PostgresStore),
}

/// What [`Store::prune`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Per replica: the checkpoint kept as anchor and the records removed.
    pub replicas: Vec<(String, u64, u64)>,
}

// === impl Store ===

impl Store {
    /// Opens the store at `url` with default options, creating and migrating the schema.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, OpenOptions::default()).await
    }

    /// Opens the store at `url`, creating and migrating the schema.
    pub async fn open_with(url: &str, options: OpenOptions) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PostgresStore::open(url, options).await?));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::InvalidUrl(
                    "sqlite url has no path (sqlite:///abs/audit.db or sqlite://rel/audit.db)"
                        .into(),
                ));
            }
            return Ok(Self::Sqlite(
                SqliteStore::open(PathBuf::from(path), options).await?,
            ));
        }
        Err(StoreError::UnsupportedUrl {
            url: url.split(':').next().unwrap_or_default().to_owned() + ":...",
        })
    }

    /// Starts the writer for one replica's chain, resuming it where it stopped.
    pub async fn appender(&self, config: AppenderConfig) -> Result<Appender> {
        Appender::start(self, config).await
    }

    /// Every record of request `id` (request, approvals, stream events, outcome), in chain
    /// order.
    pub async fn get(&self, id: Uuid) -> Result<Vec<AuditRecord>> {
        let rows = self
            .select_rows(
                "WHERE id = $1".to_owned(),
                vec![Param::Text(id.to_string())],
                "ORDER BY replica_id, seq".to_owned(),
            )
            .await?;
        rows.iter().map(RecordRow::to_record).collect()
    }

    /// Summaries of the records matching `filter`, newest first.
    pub async fn list(&self, filter: &Filter) -> Result<Vec<RecordSummary>> {
        let mut params = Vec::new();
        let where_sql = sql::where_clause(filter, &mut params);
        let mut tail = "ORDER BY received_at DESC, replica_id, seq DESC".to_owned();
        if let Some(limit) = filter.limit {
            params.push(Param::Int(i64::from(limit)));
            tail += &format!(" LIMIT ${}", params.len());
        }
        let rows = self.select_rows(where_sql, params, tail).await?;
        rows.iter().map(RecordRow::summary).collect()
    }

    /// Iterates over the full records matching `filter` (its `limit` ignored), by replica
    /// then chain order, reading a page at a time.
    pub fn export(&self, filter: Filter) -> Export {
        Export {
            store: self.clone(),
            filter,
            after: None,
            buffer: VecDeque::new(),
            done: false,
        }
    }

    /// Like [`Store::export`], starting after position `seq` of replica `replica_id` (in the
    /// export's replica-then-chain order). With `filter.replica_id` set to the same replica
    /// this is a cursor over one chain: what a sink that ships records uses to resume.
    pub fn export_after(&self, filter: Filter, replica_id: &str, seq: u64) -> Export {
        Export {
            store: self.clone(),
            filter,
            after: Some((
                replica_id.to_owned(),
                i64::try_from(seq).unwrap_or(i64::MAX),
            )),
            buffer: VecDeque::new(),
            done: false,
        }
    }

    /// Writes the records matching `filter` as JSON lines (each line the canonical JSON of
    /// the record, `hash` included). Returns the number of records written.
    pub async fn export_jsonl<W: AsyncWrite + Unpin>(
        &self,
        filter: Filter,
        mut out: W,
    ) -> Result<u64> {
        let mut export = self.export(filter);
        let mut n = 0;
        let io = |source| StoreError::Io {
            path: PathBuf::from("<export>"),
            source,
        };
        while let Some(record) = export.next().await? {
            let value =
                serde_json::to_value(&record).map_err(|e| StoreError::Encode(e.to_string()))?;
            let mut line = chain::canonical_json(&value)?;
            line.push(b'\n');
            out.write_all(&line).await.map_err(io)?;
            n += 1;
        }
        out.flush().await.map_err(io)?;
        Ok(n)
    }

    /// See [`verify()`].
    pub async fn verify(&self, trusted: &[VerifyingKey]) -> Result<VerifyReport> {
        verify(self, trusted).await
    }

    /// Retention: for every replica, removes all records up to the newest checkpoint made
    /// before `before`, and keeps that checkpoint as the replica's signed anchor, so the
    /// remaining log still verifies from the anchor on.
    pub async fn prune(&self, before: Timestamp) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        for replica in self.replicas().await? {
            let cut = self
                .checkpoints(&replica)
                .await?
                .into_iter()
                .filter(|cp| cp.time < before)
                .max_by_key(|cp| cp.seq);
            if let Some(cp) = cut {
                let seq = cp.seq;
                let removed = self.prune_to(cp).await?;
                report.replicas.push((replica, seq, removed));
            }
        }
        Ok(report)
    }

    /// Removes replica `replica_id`'s records up to and including its checkpoint at
    /// `checkpoint_seq`, which becomes the anchor. Returns the number of records removed.
    pub async fn prune_through(&self, replica_id: &str, checkpoint_seq: u64) -> Result<u64> {
        let cp = self
            .checkpoints(replica_id)
            .await?
            .into_iter()
            .find(|cp| cp.seq == checkpoint_seq)
            .ok_or_else(|| StoreError::NoSuchCheckpoint {
                replica_id: replica_id.to_owned(),
                seq: checkpoint_seq,
            })?;
        self.prune_to(cp).await
    }

    async fn prune_to(&self, cp: Checkpoint) -> Result<u64> {
        match self {
            Self::Sqlite(s) => s.prune(cp).await,
            Self::Postgres(s) => s.prune(cp).await,
        }
    }

    /// Replica ids with records, checkpoints or anchors.
    pub async fn replicas(&self) -> Result<Vec<String>> {
        match self {
            Self::Sqlite(s) => s.replicas().await,
            Self::Postgres(s) => s.replicas().await,
        }
    }

    /// A replica's checkpoints, oldest first (not including its anchor).
    pub async fn checkpoints(&self, replica_id: &str) -> Result<Vec<Checkpoint>> {
        match self {
            Self::Sqlite(s) => s.checkpoints(replica_id).await,
            Self::Postgres(s) => s.checkpoints(replica_id).await,
        }
    }

    /// A replica's pruning anchor, if it was ever pruned.
    pub async fn anchor(&self, replica_id: &str) -> Result<Option<Checkpoint>> {
        match self {
            Self::Sqlite(s) => s.anchor(replica_id).await,
            Self::Postgres(s) => s.anchor(replica_id).await,
        }
    }

    pub(crate) async fn select_rows(
        &self,
        where_sql: String,
        params: Vec<Param>,
        tail: String,
    ) -> Result<Vec<RecordRow>> {
        match self {
            Self::Sqlite(s) => s.select_rows(where_sql, params, tail).await,
            Self::Postgres(s) => s.select_rows(where_sql, params, tail).await,
        }
    }
}

/// A paged iterator over records; see [`Store::export`].
#[derive(Debug)]
pub struct Export {
    store: Store,
    filter: Filter,
    after: Option<(String, i64)>,
    buffer: VecDeque<RecordRow>,
    done: bool,
}

impl Export {
    const PAGE: i64 = 500;

    /// The next record, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<AuditRecord>> {
        if self.buffer.is_empty() && !self.done {
            let mut params = Vec::new();
            let mut where_sql = sql::where_clause(&self.filter, &mut params);
            if let Some((replica, seq)) = &self.after {
                params.push(Param::Text(replica.clone()));
                let r = params.len();
                params.push(Param::Int(*seq));
                let s = params.len();
                where_sql = sql::and(
                    &where_sql,
                    &format!("(replica_id > ${r} OR (replica_id = ${r} AND seq > ${s}))"),
                );
            }
            params.push(Param::Int(Self::PAGE));
            let tail = format!("ORDER BY replica_id, seq LIMIT ${}", params.len());
            let rows = self.store.select_rows(where_sql, params, tail).await?;
            self.done = (rows.len() as i64) < Self::PAGE;
            if let Some(last) = rows.last() {
                self.after = Some((last.replica_id.clone(), last.seq));
            }
            self.buffer.extend(rows);
        }
        self.buffer.pop_front().map(|r| r.to_record()).transpose()
    }
}

/// The writer's view of its chain.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    /// Last committed position (0 when empty).
    pub seq: u64,
    /// Its hash (or the anchor's, or genesis).
    pub hash: [u8; 32],
    /// Last checkpointed position.
    pub checkpoint_seq: u64,
}

impl Head {
    pub(crate) fn from_parts(
        last: Option<(i64, String)>,
        anchor: Option<Checkpoint>,
        checkpoint_seq: Option<i64>,
    ) -> Result<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("chain head: bad {what} hash"));
        let anchor_seq = anchor.as_ref().map_or(0, |a| a.seq);
        let (seq, hash) = match (last, anchor) {
            (Some((seq, hash)), _) => (
                u64::try_from(seq).unwrap_or(0),
                chain::parse_hash(&hash).ok_or_else(|| corrupt("record"))?,
            ),
            (None, Some(a)) => (
                a.seq,
                chain::parse_hash(&a.hash).ok_or_else(|| corrupt("anchor"))?,
            ),
            (None, None) => (0, chain::GENESIS),
        };
        let checkpoint_seq = checkpoint_seq
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0)
            .max(anchor_seq);
        Ok(Self {
            seq,
            hash,
            checkpoint_seq,
        })
    }
}

pub(crate) fn parse_version(stored: Option<String>) -> Result<usize> {
    let version = match stored {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| StoreError::Corrupt(format!("schema version {v:?}")))?,
    };
    if version > sql::MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "schema version {version} is newer than this airlock supports ({})",
            sql::MIGRATIONS.len()
        )));
    }
    Ok(version)
}
