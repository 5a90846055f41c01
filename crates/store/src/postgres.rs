//! The PostgreSQL backend.
//!
//! Readers share a small `deadpool-postgres` pool. The appender has a dedicated connection
//! that holds a session advisory lock on its replica's chain, so a second process started
//! with the same replica id fails fast with [`StoreError::ReplicaLocked`] instead of forking
//! the chain. A batch is one statement (`INSERT ... SELECT FROM UNNEST(...)`, one round
//! trip), wrapped in a transaction only when a checkpoint rides along. With the default
//! `synchronous_commit = on`, the commit returns after the WAL is flushed.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{types::ToSql, Client, Config, Statement};

use crate::{
    chain::Checkpoint,
    error::{pg, Result},
    pg_tls::{self, MakeRustls},
    sql::{self, Param, RecordRow},
    sqlite::int,
    Head, OpenOptions, StoreError, Timestamp,
};

const INSERT_RECORDS: &str = "INSERT INTO audit_records (replica_id, seq, id, kind, \
    received_at, user_name, session_id, kubectl_session, cluster, namespace, verb, resource, \
    name, command, decision, status, payload, prev_hash, hash) \
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], \
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
    $13::text[], $14::text[], $15::text[], $16::int[], $17::text[], $18::text[], $19::text[])";

/// The advisory lock key of a replica's chain, per schema (tests and tenants share a
/// database with different `search_path`s).
const REPLICA_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':airlock-audit:' || $1))";
const REPLICA_UNLOCK: &str =
    "SELECT pg_advisory_unlock(hashtext(current_schema() || ':airlock-audit:' || $1))";

/// An open PostgreSQL audit store.
#[derive(Clone)]
pub struct PostgresStore {
    config: Config,
    tls: MakeRustls,
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the config: it may hold a password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// The connection settings and TLS connector of a `postgres://` URL (libpq's `sslmode`).
fn config(url: &str, options: &OpenOptions) -> Result<(Config, MakeRustls)> {
    let (mut config, tls) = pg_tls::config(url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    Ok((config, tls))
}

fn pool(config: &Config, tls: &MakeRustls, options: &OpenOptions) -> Result<Pool> {
    let manager = Manager::from_config(
        config.clone(),
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let timeout = Some(options.connect_timeout);
    Pool::builder(manager)
        .max_size(options.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .build()
        .map_err(|e| StoreError::InvalidUrl(format!("postgres pool: {e}")))
}

/// A connection pool for a `postgres://` URL, with the store's TLS handling (`sslmode`,
/// `sslrootcert`) and timeouts, for other state that lives beside the audit log (approvals).
/// Connects lazily: the first `get` reaches the server.
pub fn postgres_pool(url: &str, options: &OpenOptions) -> Result<Pool> {
    let (config, tls) = config(url, options)?;
    pool(&config, &tls, options)
}

// === impl PostgresStore ===

impl PostgresStore {
    /// Connects, checks the server is reachable, and migrates.
    pub async fn open(url: &str, options: OpenOptions) -> Result<Self> {
        let (config, tls) = config(url, &options)?;
        let pool = pool(&config, &tls, &options)?;
        let store = Self { config, tls, pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Pool(Box::new(e)))
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        // Already current: touch no DDL, so a gateway role with only SELECT and INSERT
        // (no CREATE on the schema) can open a store an administrator migrated.
        let current = client
            .query_opt(
                "SELECT value FROM audit_meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .ok()
            .flatten()
            .and_then(|r| r.try_get::<_, String>(0).ok());
        if current.as_deref() == Some(sql::MIGRATIONS.len().to_string().as_str()) {
            return Ok(());
        }
        let tx = client.transaction().await.map_err(pg("begin migration"))?;
        // Replicas starting together must not both run the DDL.
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':airlock-audit-migrate'))",
        )
        .await
        .map_err(pg("lock schema for migration"))?;
        tx.batch_execute(sql::META_DDL)
            .await
            .map_err(pg("create meta table"))?;
        let version: Option<String> = tx
            .query_opt(
                "SELECT value FROM audit_meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .map_err(pg("read schema version"))?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg("read schema version"))?;
        let version = crate::parse_version(version)?;
        for m in &sql::MIGRATIONS[version..] {
            tx.batch_execute(m).await.map_err(pg("migrate schema"))?;
        }
        tx.execute(
            "INSERT INTO audit_meta (key, value) VALUES ('schema_version', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&sql::MIGRATIONS.len().to_string()],
        )
        .await
        .map_err(pg("write schema version"))?;
        tx.commit().await.map_err(pg("commit migration"))
    }

    pub(crate) async fn writer(
        &self,
        replica_id: &str,
        statement_timeout: Duration,
    ) -> Result<PgWriter> {
        let mut w = PgWriter {
            config: self.config.clone(),
            tls: self.tls.clone(),
            replica_id: replica_id.to_owned(),
            statement_timeout,
            conn: None,
        };
        w.connect().await?;
        Ok(w)
    }

    pub(crate) async fn select_rows(
        &self,
        where_sql: String,
        params: Vec<Param>,
        tail: String,
    ) -> Result<Vec<RecordRow>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM audit_records {where_sql} {tail}",
            sql::RECORD_COLUMNS
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| match p {
                Param::Text(s) => s as &(dyn ToSql + Sync),
                Param::Int(i) => i as &(dyn ToSql + Sync),
            })
            .collect();
        let rows = client
            .query(&sql, &refs)
            .await
            .map_err(pg("query records"))?;
        rows.iter().map(record_row).collect()
    }

    pub(crate) async fn replicas(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query(sql::SELECT_REPLICAS, &[])
            .await
            .map_err(pg("query replicas"))?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(pg("read replicas")))
            .collect()
    }

    pub(crate) async fn checkpoints(&self, replica: &str) -> Result<Vec<Checkpoint>> {
        let client = self.client().await?;
        let rows = client
            .query(sql::SELECT_CHECKPOINTS, &[&replica])
            .await
            .map_err(pg("query checkpoints"))?;
        rows.iter().map(checkpoint_row).collect()
    }

    pub(crate) async fn anchor(&self, replica: &str) -> Result<Option<Checkpoint>> {
        let client = self.client().await?;
        let row = client
            .query_opt(sql::SELECT_ANCHOR, &[&replica])
            .await
            .map_err(pg("read anchor"))?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    pub(crate) async fn prune(&self, anchor: Checkpoint) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg("begin prune"))?;
        let seq = int(anchor.seq);
        let removed = tx
            .execute(sql::PRUNE_RECORDS, &[&anchor.replica_id, &seq])
            .await
            .map_err(pg("prune records"))?;
        tx.execute(sql::PRUNE_CHECKPOINTS, &[&anchor.replica_id, &seq])
            .await
            .map_err(pg("prune checkpoints"))?;
        tx.execute(
            sql::UPSERT_ANCHOR,
            &[
                &anchor.replica_id,
                &seq,
                &anchor.hash,
                &anchor.time.unix_nanos(),
                &anchor.public_key,
                &anchor.signature,
                &Timestamp::now().unix_nanos(),
            ],
        )
        .await
        .map_err(pg("write anchor"))?;
        tx.commit().await.map_err(pg("commit prune"))?;
        Ok(removed)
    }
}

/// The appender's dedicated connection, reconnected after a failure.
pub(crate) struct PgWriter {
    config: Config,
    tls: MakeRustls,
    replica_id: String,
    /// Bounds every statement, so a locked table fails the batch instead of wedging the
    /// writer (appends time out anyway; this lets the writer recover).
    statement_timeout: Duration,
    conn: Option<WriterConn>,
}

struct WriterConn {
    client: Client,
    insert_records: Statement,
    insert_checkpoint: Statement,
    /// The session's `synchronous_commit` (true: on, the server default).
    synchronous_commit: bool,
}

// === impl PgWriter ===

impl PgWriter {
    async fn connect(&mut self) -> Result<&mut WriterConn> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let (client, connection) = self
                .config
                .connect(self.tls.clone())
                .await
                .map_err(pg("connect"))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "audit store connection closed");
                }
            });
            let locked: bool = client
                .query_one(REPLICA_LOCK, &[&self.replica_id])
                .await
                .map_err(pg("lock replica chain"))?
                .try_get(0)
                .map_err(pg("lock replica chain"))?;
            if !locked {
                return Err(StoreError::ReplicaLocked(self.replica_id.clone()));
            }
            client
                .batch_execute(&format!(
                    "SET statement_timeout = {}",
                    self.statement_timeout.as_millis().max(1)
                ))
                .await
                .map_err(pg("set statement timeout"))?;
            let insert_records = client
                .prepare(INSERT_RECORDS)
                .await
                .map_err(pg("prepare insert"))?;
            let insert_checkpoint = client
                .prepare(sql::INSERT_CHECKPOINT)
                .await
                .map_err(pg("prepare insert"))?;
            self.conn = Some(WriterConn {
                client,
                insert_records,
                insert_checkpoint,
                synchronous_commit: true,
            });
        }
        self.conn.as_mut().ok_or(StoreError::WriterStopped)
    }

    pub(crate) async fn head(&mut self, replica: &str) -> Result<Head> {
        let conn = self.connect().await?;
        let c = &conn.client;
        let last = c
            .query_opt(sql::SELECT_HEAD, &[&replica])
            .await
            .map_err(pg("read chain head"))?
            .map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()
            .map_err(pg("read chain head"))?;
        let anchor = c
            .query_opt(sql::SELECT_ANCHOR, &[&replica])
            .await
            .map_err(pg("read anchor"))?
            .as_ref()
            .map(checkpoint_row)
            .transpose()?;
        let checkpoint_seq: Option<i64> = c
            .query_one(
                "SELECT max(seq) FROM audit_checkpoints WHERE replica_id = $1",
                &[&replica],
            )
            .await
            .map_err(pg("read last checkpoint"))?
            .try_get(0)
            .map_err(pg("read last checkpoint"))?;
        Head::from_parts(last, anchor, checkpoint_seq)
    }

    /// Gives up the chain's lock now, rather than when the server notices the connection
    /// closed: a successor (a restart, `close` then `appender`) can start at once.
    pub(crate) async fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn
                .client
                .query_one(REPLICA_UNLOCK, &[&self.replica_id])
                .await;
        }
    }

    pub(crate) async fn commit(
        &mut self,
        rows: Vec<RecordRow>,
        checkpoint: Option<Checkpoint>,
        fsync: bool,
    ) -> Result<()> {
        let conn = self.connect().await?;
        if conn.synchronous_commit != fsync {
            // off: COMMIT returns before the server flushes its WAL. The rows are in the
            // server and survive the gateway crashing; a server crash within its
            // wal_writer_delay could lose them (see `Durability`).
            let sql = if fsync {
                "SET synchronous_commit = on"
            } else {
                "SET synchronous_commit = off"
            };
            conn.client
                .batch_execute(sql)
                .await
                .map_err(pg("set synchronous_commit"))?;
            conn.synchronous_commit = fsync;
        }
        let cols = Columns::from(rows);
        let params = cols.params();
        let result = match &checkpoint {
            None => conn
                .client
                .execute(&conn.insert_records, &params)
                .await
                .map(drop),
            Some(cp) => {
                let insert_records = conn.insert_records.clone();
                let insert_checkpoint = conn.insert_checkpoint.clone();
                let tx = conn.client.transaction().await.map_err(pg("begin batch"))?;
                tx.execute(&insert_records, &params)
                    .await
                    .map_err(pg("insert records"))?;
                tx.execute(
                    &insert_checkpoint,
                    &[
                        &cp.replica_id,
                        &int(cp.seq),
                        &cp.hash,
                        &cp.time.unix_nanos(),
                        &cp.public_key,
                        &cp.signature,
                    ],
                )
                .await
                .map_err(pg("insert checkpoint"))?;
                tx.commit().await
            }
        };
        result.map_err(pg("commit batch"))
    }
}

/// A batch as one array per column, for `UNNEST`.
#[derive(Default)]
struct Columns {
    replica_id: Vec<String>,
    seq: Vec<i64>,
    id: Vec<String>,
    kind: Vec<String>,
    received_at: Vec<i64>,
    user_name: Vec<String>,
    session_id: Vec<Option<String>>,
    kubectl_session: Vec<Option<String>>,
    cluster: Vec<Option<String>>,
    namespace: Vec<Option<String>>,
    verb: Vec<Option<String>>,
    resource: Vec<Option<String>>,
    name: Vec<Option<String>>,
    command: Vec<Option<String>>,
    decision: Vec<Option<String>>,
    status: Vec<Option<i32>>,
    payload: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

impl From<Vec<RecordRow>> for Columns {
    fn from(rows: Vec<RecordRow>) -> Self {
        let mut c = Self::default();
        for r in rows {
            c.replica_id.push(r.replica_id);
            c.seq.push(r.seq);
            c.id.push(r.id);
            c.kind.push(r.kind);
            c.received_at.push(r.received_at);
            c.user_name.push(r.user_name);
            c.session_id.push(r.session_id);
            c.kubectl_session.push(r.kubectl_session);
            c.cluster.push(r.cluster);
            c.namespace.push(r.namespace);
            c.verb.push(r.verb);
            c.resource.push(r.resource);
            c.name.push(r.name);
            c.command.push(r.command);
            c.decision.push(r.decision);
            c.status.push(r.status);
            c.payload.push(r.payload);
            c.prev_hash.push(r.prev_hash);
            c.hash.push(r.hash);
        }
        c
    }
}

impl Columns {
    fn params(&self) -> [&(dyn ToSql + Sync); 19] {
        [
            &self.replica_id,
            &self.seq,
            &self.id,
            &self.kind,
            &self.received_at,
            &self.user_name,
            &self.session_id,
            &self.kubectl_session,
            &self.cluster,
            &self.namespace,
            &self.verb,
            &self.resource,
            &self.name,
            &self.command,
            &self.decision,
            &self.status,
            &self.payload,
            &self.prev_hash,
            &self.hash,
        ]
    }
}

fn record_row(r: &tokio_postgres::Row) -> Result<RecordRow> {
    let row = || -> Result<RecordRow, tokio_postgres::Error> {
        Ok(RecordRow {
            replica_id: r.try_get(0)?,
            seq: r.try_get(1)?,
            id: r.try_get(2)?,
            kind: r.try_get(3)?,
            received_at: r.try_get(4)?,
            user_name: r.try_get(5)?,
            session_id: r.try_get(6)?,
            kubectl_session: r.try_get(7)?,
            cluster: r.try_get(8)?,
            namespace: r.try_get(9)?,
            verb: r.try_get(10)?,
            resource: r.try_get(11)?,
            name: r.try_get(12)?,
            command: r.try_get(13)?,
            decision: r.try_get(14)?,
            status: r.try_get(15)?,
            payload: r.try_get(16)?,
            prev_hash: r.try_get(17)?,
            hash: r.try_get(18)?,
        })
    };
    row().map_err(pg("decode record row"))
}

fn checkpoint_row(r: &tokio_postgres::Row) -> Result<Checkpoint> {
    let row = || -> Result<Checkpoint, tokio_postgres::Error> {
        Ok(Checkpoint {
            replica_id: r.try_get(0)?,
            seq: u64::try_from(r.try_get::<_, i64>(1)?).unwrap_or(0),
            hash: r.try_get(2)?,
            time: Timestamp::from_unix_nanos(r.try_get(3)?),
            public_key: r.try_get(4)?,
            signature: r.try_get(5)?,
        })
    };
    row().map_err(pg("decode checkpoint row"))
}
