//! The approvals table, in SQLite (one gateway) or PostgreSQL (replicas sharing it).
//!
//! Each approval is one row: a JSON document plus the columns the lookups need (hash,
//! requester, state). Every operation of [`crate::Approvals`] runs in one [`Tx`]:
//!
//! - SQLite: the connection's mutex is held for the whole operation, and each write is one
//!   statement. Schema versions are tracked with `PRAGMA user_version`.
//! - PostgreSQL: one transaction. Rows about to be changed are read `FOR UPDATE`, and
//!   [`Store::begin`] can take a transaction-scoped advisory lock (the requester, for
//!   `admit`), so two replicas never use one single-use grant twice or open two approvals
//!   for the same call. A transaction that is dropped unfinished takes its connection out
//!   of the pool, which closes it, and the server rolls it back.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Approval, ApprovalsError, State};

const SQLITE_SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS approvals (
    id       TEXT PRIMARY KEY,
    hash     TEXT NOT NULL,
    user     TEXT NOT NULL,
    state    TEXT NOT NULL,
    created  INTEGER NOT NULL,
    doc      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_hash ON approvals (hash, state);
CREATE INDEX IF NOT EXISTS approvals_user_state ON approvals (user, state);
CREATE INDEX IF NOT EXISTS approvals_created ON approvals (created);
";

const PG_SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS airlock_approvals (
    id        TEXT PRIMARY KEY,
    hash      TEXT NOT NULL,
    user_name TEXT NOT NULL,
    state     TEXT NOT NULL,
    created   BIGINT NOT NULL,
    doc       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS airlock_approvals_hash ON airlock_approvals (hash, state);
CREATE INDEX IF NOT EXISTS airlock_approvals_user_state ON airlock_approvals (user_name, state);
CREATE INDEX IF NOT EXISTS airlock_approvals_created ON airlock_approvals (created);
";

/// Advisory lock keys are per schema, like the audit store's.
const PG_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':airlock-approvals:' || $1))";

pub(crate) enum Store {
    Sqlite(tokio::sync::Mutex<Connection>),
    Postgres(deadpool_postgres::Pool),
}

/// One operation's hold on the store (see the module docs).
pub(crate) enum Tx<'a> {
    Sqlite(tokio::sync::MutexGuard<'a, Connection>),
    Postgres(Box<PgTx>),
}

pub(crate) struct PgTx(Option<deadpool_postgres::Object>);

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            // Unfinished: close the connection rather than pool it mid-transaction.
            drop(deadpool_postgres::Object::take(obj));
        }
    }
}

fn pg(what: &'static str) -> impl Fn(tokio_postgres::Error) -> ApprovalsError {
    move |source| ApprovalsError::Postgres { what, source }
}

// === impl Store ===

impl Store {
    pub(crate) fn open_sqlite(path: &Path) -> Result<Store, ApprovalsError> {
        let open_err = |source| ApprovalsError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // WAL with full sync: a decision acknowledged to an approver is on disk.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        Store::migrate_sqlite(conn).map_err(|e| match e {
            ApprovalsError::Db(source) => open_err(source),
            e => e,
        })
    }

    pub(crate) fn memory() -> Result<Store, ApprovalsError> {
        Store::migrate_sqlite(Connection::open_in_memory()?)
    }

    fn migrate_sqlite(conn: Connection) -> Result<Store, ApprovalsError> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 1 {
            conn.execute_batch(SQLITE_SCHEMA_V1)?;
            conn.pragma_update(None, "user_version", 1)?;
        }
        Ok(Store::Sqlite(tokio::sync::Mutex::new(conn)))
    }

    /// Creates the table if needed; replicas starting together serialize on a lock.
    pub(crate) async fn open_postgres(
        pool: deadpool_postgres::Pool,
    ) -> Result<Store, ApprovalsError> {
        let tx = Store::pg_begin(&pool).await?;
        let Tx::Postgres(t) = &tx else {
            unreachable!("pg_begin gives a PostgreSQL transaction")
        };
        let c = t.client();
        c.execute(PG_LOCK, &[&"migrate"])
            .await
            .map_err(pg("lock schema for migration"))?;
        c.batch_execute(PG_SCHEMA_V1)
            .await
            .map_err(pg("create the approvals table"))?;
        tx.commit().await?;
        Ok(Store::Postgres(pool))
    }

    async fn pg_begin(pool: &deadpool_postgres::Pool) -> Result<Tx<'static>, ApprovalsError> {
        let obj = pool
            .get()
            .await
            .map_err(|e| ApprovalsError::Pool(e.to_string()))?;
        // Held by the guard before BEGIN is sent: a caller cancelled mid-BEGIN must not put
        // a connection with an open transaction back into the pool. A lock held by a replica
        // that went silent is waited for 10 s at most.
        let tx = PgTx(Some(obj));
        tx.client()
            .batch_execute("BEGIN; SET LOCAL lock_timeout = '10s'")
            .await
            .map_err(pg("begin"))?;
        Ok(Tx::Postgres(Box::new(tx)))
    }

    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }

    /// Starts an operation; `lock`, when given, serializes it with every other operation
    /// that names the same key, on every replica.
    pub(crate) async fn begin(&self, lock: Option<&str>) -> Result<Tx<'_>, ApprovalsError> {
        match self {
            Store::Sqlite(m) => Ok(Tx::Sqlite(m.lock().await)),
            Store::Postgres(pool) => {
                let tx = Store::pg_begin(pool).await?;
                if let (Some(key), Tx::Postgres(t)) = (lock, &tx) {
                    let c = t.client();
                    c.execute(PG_LOCK, &[&key]).await.map_err(pg("lock"))?;
                }
                Ok(tx)
            }
        }
    }
}

// === impl Tx ===

impl Tx<'_> {
    pub(crate) async fn commit(self) -> Result<(), ApprovalsError> {
        if let Tx::Postgres(mut t) = self {
            if let Some(c) = t.0.take() {
                c.batch_execute("COMMIT").await.map_err(pg("commit"))?;
            }
        }
        Ok(())
    }

    /// Inserts `a`; `false` when its id is taken.
    pub(crate) async fn insert(&mut self, a: &Approval) -> Result<bool, ApprovalsError> {
        let doc = serde_json::to_string(a)?;
        let n = match self {
            Tx::Sqlite(c) => c.execute(
                "INSERT OR IGNORE INTO approvals (id, hash, user, state, created, doc) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    a.id,
                    a.hash,
                    a.requester.user,
                    a.state.as_str(),
                    a.created,
                    doc
                ],
            )? as u64,
            Tx::Postgres(t) => t
                .client()
                .execute(
                    "INSERT INTO airlock_approvals (id, hash, user_name, state, created, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                    &[
                        &a.id,
                        &a.hash,
                        &a.requester.user,
                        &a.state.as_str(),
                        &a.created,
                        &doc,
                    ],
                )
                .await
                .map_err(pg("insert an approval"))?,
        };
        Ok(n == 1)
    }

    pub(crate) async fn save(&mut self, a: &Approval) -> Result<(), ApprovalsError> {
        let doc = serde_json::to_string(a)?;
        match self {
            Tx::Sqlite(c) => {
                c.execute(
                    "UPDATE approvals SET state = ?2, doc = ?3 WHERE id = ?1",
                    params![a.id, a.state.as_str(), doc],
                )?;
            }
            Tx::Postgres(t) => {
                t.client()
                    .execute(
                        "UPDATE airlock_approvals SET state = $2, doc = $3 WHERE id = $1",
                        &[&a.id, &a.state.as_str(), &doc],
                    )
                    .await
                    .map_err(pg("update an approval"))?;
            }
        }
        Ok(())
    }

    /// One approval; PostgreSQL locks its row until the transaction ends.
    pub(crate) async fn get(&mut self, id: &str) -> Result<Option<Approval>, ApprovalsError> {
        let doc: Option<String> = match self {
            Tx::Sqlite(c) => c
                .query_row("SELECT doc FROM approvals WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?,
            Tx::Postgres(t) => t
                .client()
                .query_opt(
                    "SELECT doc FROM airlock_approvals WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(pg("read an approval"))?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(pg("read an approval"))?,
        };
        Ok(match doc {
            Some(d) => Some(serde_json::from_str(&d)?),
            None => None,
        })
    }

    /// Approved approvals of `user`: the grants that may cover a new call (locked on
    /// PostgreSQL).
    pub(crate) async fn grants_for(&mut self, user: &str) -> Result<Vec<Approval>, ApprovalsError> {
        match self {
            Tx::Sqlite(_) => self.sqlite_query(
                "SELECT doc FROM approvals WHERE user = ?1 AND state = 'approved' \
                     ORDER BY created",
                params![user],
            ),
            Tx::Postgres(_) => {
                self.pg_query(
                    "SELECT doc FROM airlock_approvals WHERE user_name = $1 \
                     AND state = 'approved' ORDER BY created FOR UPDATE",
                    &[&user],
                )
                .await
            }
        }
    }

    pub(crate) async fn by_hash(
        &mut self,
        hash: &str,
        state: State,
    ) -> Result<Vec<Approval>, ApprovalsError> {
        match self {
            Tx::Sqlite(_) => self.sqlite_query(
                "SELECT doc FROM approvals WHERE hash = ?1 AND state = ?2 ORDER BY created DESC",
                params![hash, state.as_str()],
            ),
            Tx::Postgres(_) => {
                self.pg_query(
                    "SELECT doc FROM airlock_approvals WHERE hash = $1 AND state = $2 \
                     ORDER BY created DESC",
                    &[&hash, &state.as_str()],
                )
                .await
            }
        }
    }

    /// Newest first; `states` empty: all.
    pub(crate) async fn list(
        &mut self,
        states: &[&str],
        limit: usize,
    ) -> Result<Vec<Approval>, ApprovalsError> {
        let limit = limit as i64;
        let mut out = Vec::new();
        let all = states.is_empty();
        for s in if all { &[""][..] } else { states } {
            out.extend(match self {
                Tx::Sqlite(_) if all => self.sqlite_query(
                    "SELECT doc FROM approvals ORDER BY created DESC, id LIMIT ?1",
                    params![limit],
                )?,
                Tx::Sqlite(_) => self.sqlite_query(
                    "SELECT doc FROM approvals WHERE state = ?1 \
                     ORDER BY created DESC, id LIMIT ?2",
                    params![s, limit],
                )?,
                Tx::Postgres(_) if all => {
                    self.pg_query(
                        "SELECT doc FROM airlock_approvals ORDER BY created DESC, id LIMIT $1",
                        &[&limit],
                    )
                    .await?
                }
                Tx::Postgres(_) => {
                    self.pg_query(
                        "SELECT doc FROM airlock_approvals WHERE state = $1 \
                         ORDER BY created DESC, id LIMIT $2",
                        &[s, &limit],
                    )
                    .await?
                }
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn sqlite_query(
        &mut self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<Approval>, ApprovalsError> {
        let Tx::Sqlite(c) = self else {
            unreachable!("called on the SQLite arm")
        };
        let mut stmt = c.prepare_cached(sql)?;
        let docs = stmt
            .query_map(p, |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        parse(&docs)
    }

    async fn pg_query(
        &mut self,
        sql: &str,
        p: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Approval>, ApprovalsError> {
        let Tx::Postgres(t) = self else {
            unreachable!("called on the PostgreSQL arm")
        };
        let rows = t
            .client()
            .query(sql, p)
            .await
            .map_err(pg("read approvals"))?;
        let docs = rows
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(pg("read approvals"))?;
        parse(&docs)
    }
}

impl PgTx {
    fn client(&self) -> &deadpool_postgres::Object {
        self.0
            .as_ref()
            .expect("a PgTx holds its connection until commit or drop")
    }
}

fn parse(docs: &[String]) -> Result<Vec<Approval>, ApprovalsError> {
    docs.iter()
        .map(|d| serde_json::from_str(d).map_err(Into::into))
        .collect()
}
