//! The SQLite backend.
//!
//! One database file in WAL mode with `synchronous = FULL` (or NORMAL for a batch that
//! [`crate::Durability`] lets skip the sync): a synced commit returns only after the
//! WAL has been fsynced. rusqlite is blocking: the appender's connection is used only on the
//! appender's own thread, and readers (who share another connection) run on the blocking
//! pool (`spawn_blocking`). WAL lets readers (queries, `verify`) run while the writer commits.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    chain::Checkpoint,
    error::{sqlite, Result},
    sql::{self, Param, RecordRow},
    Head, OpenOptions, StoreError, Timestamp,
};

const INSERT_RECORD: &str = "INSERT INTO audit_records (replica_id, seq, id, kind, received_at, \
    user_name, session_id, kubectl_session, cluster, namespace, verb, resource, name, command, \
    decision, status, payload, prev_hash, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)";

/// `$N` placeholders to SQLite's `?N`.
fn q(sql: &str) -> String {
    sql.replace('$', "?")
}

/// An open SQLite audit store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    path: PathBuf,
    options: OpenOptions,
    reader: Arc<Mutex<Connection>>,
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: PathBuf, options: OpenOptions) -> Result<Self> {
        let (p, o) = (path.clone(), options.clone());
        let reader = blocking(move || {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            let mut conn = connect(&p, &o)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await?;
        Ok(Self {
            path,
            options,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.reader.clone();
        blocking(move || {
            // A panic while holding the lock cannot leave the connection in a state worse
            // than an aborted transaction, which SQLite rolls back: keep using it.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
    }

    pub(crate) async fn writer(&self) -> Result<SqliteWriter> {
        let (p, o) = (self.path.clone(), self.options.clone());
        let conn = blocking(move || {
            let conn = connect(&p, &o)?;
            if let Some(pages) = o.sqlite_max_pages {
                conn.pragma_update(None, "max_page_count", pages)
                    .map_err(sqlite("set max_page_count"))?;
            }
            // The WAL is copied back into the database by a checkpointer thread of its own
            // (below), not inline in the commit that crosses the threshold: the writer's
            // commits, which requests wait for, only append to the WAL.
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(sqlite("set wal_autocheckpoint"))?;
            let checkpointer = connect(&p, &o)?;
            Ok((conn, checkpointer))
        })
        .await?;
        let (conn, checkpointer) = conn;
        let conn = Arc::new(Mutex::new(conn));
        spawn_checkpointer(checkpointer, Arc::downgrade(&conn));
        Ok(SqliteWriter { conn, synced: true })
    }

    pub(crate) async fn select_rows(
        &self,
        where_sql: String,
        params: Vec<Param>,
        tail: String,
    ) -> Result<Vec<RecordRow>> {
        self.read(move |conn| {
            let sql = q(&format!(
                "SELECT {} FROM audit_records {where_sql} {tail}",
                sql::RECORD_COLUMNS
            ));
            let mut stmt = conn.prepare_cached(&sql).map_err(sqlite("prepare query"))?;
            let values = params.into_iter().map(|p| match p {
                Param::Text(s) => rusqlite::types::Value::Text(s),
                Param::Int(i) => rusqlite::types::Value::Integer(i),
            });
            let rows = stmt
                .query_map(params_from_iter(values), record_row)
                .map_err(sqlite("query records"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sqlite("read records"))
        })
        .await
    }

    pub(crate) async fn replicas(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(sql::SELECT_REPLICAS)
                .map_err(sqlite("prepare query"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sqlite("query replicas"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sqlite("read replicas"))
        })
        .await
    }

    pub(crate) async fn checkpoints(&self, replica: &str) -> Result<Vec<Checkpoint>> {
        let replica = replica.to_owned();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&q(sql::SELECT_CHECKPOINTS))
                .map_err(sqlite("prepare query"))?;
            let rows = stmt
                .query_map([replica], checkpoint_row)
                .map_err(sqlite("query checkpoints"))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(sqlite("read checkpoints"))
        })
        .await
    }

    pub(crate) async fn anchor(&self, replica: &str) -> Result<Option<Checkpoint>> {
        let replica = replica.to_owned();
        self.read(move |conn| {
            conn.query_row(&q(sql::SELECT_ANCHOR), [replica], checkpoint_row)
                .optional()
                .map_err(sqlite("read anchor"))
        })
        .await
    }

    pub(crate) async fn prune(&self, anchor: Checkpoint) -> Result<u64> {
        self.read(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sqlite("begin prune"))?;
            let seq = int(anchor.seq);
            let removed = tx
                .execute(&q(sql::PRUNE_RECORDS), params![anchor.replica_id, seq])
                .map_err(sqlite("prune records"))?;
            tx.execute(&q(sql::PRUNE_CHECKPOINTS), params![anchor.replica_id, seq])
                .map_err(sqlite("prune checkpoints"))?;
            tx.execute(
                &q(sql::UPSERT_ANCHOR),
                params![
                    anchor.replica_id,
                    seq,
                    anchor.hash,
                    anchor.time.unix_nanos(),
                    anchor.public_key,
                    anchor.signature,
                    Timestamp::now().unix_nanos()
                ],
            )
            .map_err(sqlite("write anchor"))?;
            tx.commit().map_err(sqlite("commit prune"))?;
            Ok(removed as u64)
        })
        .await
    }
}

/// The appender's connection. Its methods block: they run on the writer's own thread.
pub(crate) struct SqliteWriter {
    conn: Arc<Mutex<Connection>>,
    /// The connection's `synchronous` setting: true for FULL.
    synced: bool,
}

// === impl SqliteWriter ===

impl SqliteWriter {
    pub(crate) async fn head(&mut self, replica: &str) -> Result<Head> {
        let conn = self.conn.clone();
        let replica = replica.to_owned();
        inline(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let last: Option<(i64, String)> = conn
                .query_row(&q(sql::SELECT_HEAD), [&replica], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(sqlite("read chain head"))?;
            let anchor = conn
                .query_row(&q(sql::SELECT_ANCHOR), [&replica], checkpoint_row)
                .optional()
                .map_err(sqlite("read anchor"))?;
            let checkpoint_seq: Option<i64> = conn
                .query_row(
                    "SELECT max(seq) FROM audit_checkpoints WHERE replica_id = ?1",
                    [&replica],
                    |r| r.get(0),
                )
                .map_err(sqlite("read last checkpoint"))?;
            Head::from_parts(last, anchor, checkpoint_seq)
        })
        .await
    }

    pub(crate) async fn commit(
        &mut self,
        rows: Vec<RecordRow>,
        checkpoint: Option<Checkpoint>,
        fsync: bool,
    ) -> Result<()> {
        let conn = self.conn.clone();
        let synced = &mut self.synced;
        inline(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            // Every statement here is prepared once and cached: at one request in flight each
            // request is two commits, and `BEGIN` and `COMMIT` need not be parsed again for
            // each (a small saving, about 1 % of the audited request's CPU; SQLite re-prepares
            // a `PRAGMA` on each run anyway).
            // WAL mode: FULL syncs the WAL at this commit (and with it every earlier commit,
            // in order); NORMAL leaves the commit in the OS until the next sync.
            if *synced != fsync {
                let set = if fsync {
                    "PRAGMA synchronous = FULL"
                } else {
                    "PRAGMA synchronous = NORMAL"
                };
                run_cached(&conn, set, "set synchronous")?;
                *synced = fsync;
            }
            if !conn.is_autocommit() {
                // A batch before this one left its transaction open (its ROLLBACK failed, or
                // it unwound): end it, or every later BEGIN would fail.
                conn.execute_batch("ROLLBACK")
                    .map_err(sqlite("roll back a leftover batch"))?;
            }
            run_cached(&conn, "BEGIN IMMEDIATE", "begin batch")?;
            let written = insert_batch(&conn, &rows, checkpoint.as_ref())
                // synchronous = FULL: COMMIT returns after the WAL is on disk.
                .and_then(|()| run_cached(&conn, "COMMIT", "commit batch"));
            if written.is_err() && !conn.is_autocommit() {
                // Leave no half batch open for the next one to commit.
                let _ = conn.execute_batch("ROLLBACK");
            }
            written
        })
        .await
    }
}

/// Runs a statement that returns no rows, from the connection's statement cache.
fn run_cached(conn: &Connection, sql: &str, context: &'static str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(drop)
        .map_err(sqlite(context))
}

/// Inserts a batch's records and checkpoint; the caller holds the transaction.
fn insert_batch(
    conn: &Connection,
    rows: &[RecordRow],
    checkpoint: Option<&Checkpoint>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(INSERT_RECORD)
        .map_err(sqlite("prepare insert"))?;
    for r in rows {
        stmt.execute(params![
            r.replica_id,
            r.seq,
            r.id,
            r.kind,
            r.received_at,
            r.user_name,
            r.session_id,
            r.kubectl_session,
            r.cluster,
            r.namespace,
            r.verb,
            r.resource,
            r.name,
            r.command,
            r.decision,
            r.status,
            r.payload,
            r.prev_hash,
            r.hash
        ])
        .map_err(sqlite("insert record"))?;
    }
    if let Some(cp) = checkpoint {
        conn.prepare_cached(&q(sql::INSERT_CHECKPOINT))
            .and_then(|mut stmt| {
                stmt.execute(params![
                    cp.replica_id,
                    int(cp.seq),
                    cp.hash,
                    cp.time.unix_nanos(),
                    cp.public_key,
                    cp.signature
                ])
            })
            .map_err(sqlite("insert checkpoint"))?;
    }
    Ok(())
}

/// Checkpoints the WAL once a second for as long as the writer exists, and once more when it
/// is gone. A checkpoint also fsyncs the WAL first, which makes commits made without a sync
/// (see [`crate::Durability`]) durable within about a second.
///
/// PASSIVE first: it never waits for, nor blocks, the writer. Under steady writes it never
/// catches up with the end of the WAL, though (the writer appends while it copies), and
/// SQLite only starts the WAL over once a checkpoint has caught up, so the file would grow
/// without bound. When the WAL holds more than [`RESTART_FRAMES`], a RESTART checkpoint
/// follows on the writer's connection:
/// it holds the writer back only while it copies what the PASSIVE pass left (about a
/// second's worth), and the next commit then writes from the start of the WAL again.
fn spawn_checkpointer(conn: Connection, writer: std::sync::Weak<Mutex<Connection>>) {
    let run = move || loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let alive = writer.upgrade();
        match checkpoint(&conn, "PASSIVE") {
            Ok((_, log, _)) if log > RESTART_FRAMES => {
                // Another PASSIVE pass first copies what arrived during the last one, so that
                // the writer waits only for the little that arrives meanwhile.
                let _ = checkpoint(&conn, "PASSIVE");
                // On the writer's own connection, holding it: a RESTART from here would wait
                // for the write lock, which a busy writer takes again the moment it lets go.
                if let Some(w) = &alive {
                    let w = w.lock().unwrap_or_else(|p| p.into_inner());
                    match checkpoint(&w, "RESTART") {
                        Ok((0, _, _)) => {}
                        Ok(_) => tracing::debug!("sqlite wal restart busy; retrying"),
                        Err(e) => {
                            tracing::debug!(error = %e, "sqlite wal restart failed; retrying")
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "sqlite wal checkpoint failed; retrying"),
        }
        if alive.is_none() {
            return;
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(run)
    {
        tracing::warn!(error = %e, "cannot start the sqlite checkpointer; the WAL will grow");
    }
}

/// WAL frames (pages) above which the WAL is restarted (16 MiB).
const RESTART_FRAMES: i64 = 4096;

/// Runs `PRAGMA wal_checkpoint(MODE)`: (busy, frames in the WAL, frames checkpointed).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

fn connect(path: &Path, options: &OpenOptions) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sqlite("open database"))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(sqlite("set busy timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sqlite("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::InvalidUrl(format!(
            "sqlite database {} cannot use WAL (journal mode stays {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite("set synchronous"))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite("begin migration"))?;
    tx.execute(sql::META_DDL, [])
        .map_err(sqlite("create meta table"))?;
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM audit_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite("read schema version"))?;
    let version = crate::parse_version(version)?;
    for m in &sql::MIGRATIONS[version..] {
        tx.execute_batch(m).map_err(sqlite("migrate schema"))?;
    }
    tx.execute(
        "INSERT INTO audit_meta (key, value) VALUES ('schema_version', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [sql::MIGRATIONS.len().to_string()],
    )
    .map_err(sqlite("write schema version"))?;
    tx.commit().map_err(sqlite("commit migration"))
}

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        replica_id: r.get(0)?,
        seq: r.get(1)?,
        id: r.get(2)?,
        kind: r.get(3)?,
        received_at: r.get(4)?,
        user_name: r.get(5)?,
        session_id: r.get(6)?,
        kubectl_session: r.get(7)?,
        cluster: r.get(8)?,
        namespace: r.get(9)?,
        verb: r.get(10)?,
        resource: r.get(11)?,
        name: r.get(12)?,
        command: r.get(13)?,
        decision: r.get(14)?,
        status: r.get(15)?,
        payload: r.get(16)?,
        prev_hash: r.get(17)?,
        hash: r.get(18)?,
    })
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        replica_id: r.get(0)?,
        seq: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        hash: r.get(2)?,
        time: Timestamp::from_unix_nanos(r.get(3)?),
        public_key: r.get(4)?,
        signature: r.get(5)?,
    })
}

pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Runs `f` right here. Only for the appender's writer, which has a thread of its own
/// (`writer::Appender::start`): blocking it blocks nobody else.
async fn inline<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    f()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::Join)?
}
