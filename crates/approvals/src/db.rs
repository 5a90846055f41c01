//! The approvals table. Each approval is one row: a JSON document plus the columns the lookups
//! need (hash, requester, state). Schema versions are tracked with `PRAGMA user_version`.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Approval, ApprovalsError, State};

const SCHEMA_V1: &str = "
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

pub(crate) struct Db {
    conn: Connection,
}

pub(crate) fn is_constraint(e: &ApprovalsError) -> bool {
    matches!(
        e,
        ApprovalsError::Db(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db, ApprovalsError> {
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
        Db::migrate(conn).map_err(|e| match e {
            ApprovalsError::Db(source) => open_err(source),
            e => e,
        })
    }

    pub(crate) fn memory() -> Result<Db, ApprovalsError> {
        Db::migrate(Connection::open_in_memory()?)
    }

    fn migrate(conn: Connection) -> Result<Db, ApprovalsError> {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 1 {
            conn.execute_batch(SCHEMA_V1)?;
            conn.pragma_update(None, "user_version", 1)?;
        }
        Ok(Db { conn })
    }

    pub(crate) fn insert(&mut self, a: &Approval) -> Result<(), ApprovalsError> {
        self.conn.execute(
            "INSERT INTO approvals (id, hash, user, state, created, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![a.id, a.hash, a.requester.user, a.state.as_str(), a.created, serde_json::to_string(a)?],
        )?;
        Ok(())
    }

    pub(crate) fn save(&mut self, a: &Approval) -> Result<(), ApprovalsError> {
        self.conn.execute(
            "UPDATE approvals SET state = ?2, doc = ?3 WHERE id = ?1",
            params![a.id, a.state.as_str(), serde_json::to_string(a)?],
        )?;
        Ok(())
    }

    pub(crate) fn get(&mut self, id: &str) -> Result<Option<Approval>, ApprovalsError> {
        let doc: Option<String> = self
            .conn
            .query_row("SELECT doc FROM approvals WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(match doc {
            Some(d) => Some(serde_json::from_str(&d)?),
            None => None,
        })
    }

    fn query(
        &mut self,
        sql: &str,
        p: impl rusqlite::Params,
    ) -> Result<Vec<Approval>, ApprovalsError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let docs = stmt
            .query_map(p, |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        docs.iter()
            .map(|d| serde_json::from_str(d).map_err(Into::into))
            .collect()
    }

    /// Approved approvals of `user`: the grants that may cover a new call.
    pub(crate) fn grants_for(&mut self, user: &str) -> Result<Vec<Approval>, ApprovalsError> {
        self.query(
            "SELECT doc FROM approvals WHERE user = ?1 AND state = 'approved' ORDER BY created",
            [user],
        )
    }

    pub(crate) fn by_hash(
        &mut self,
        hash: &str,
        state: State,
    ) -> Result<Vec<Approval>, ApprovalsError> {
        self.query(
            "SELECT doc FROM approvals WHERE hash = ?1 AND state = ?2 ORDER BY created DESC",
            params![hash, state.as_str()],
        )
    }

    /// Newest first; `states` empty: all.
    pub(crate) fn list(
        &mut self,
        states: &[&str],
        limit: usize,
    ) -> Result<Vec<Approval>, ApprovalsError> {
        let limit = limit as i64;
        if states.is_empty() {
            return self.query(
                "SELECT doc FROM approvals ORDER BY created DESC, id LIMIT ?1",
                [limit],
            );
        }
        let mut out = Vec::new();
        for s in states {
            out.extend(self.query(
                "SELECT doc FROM approvals WHERE state = ?1 ORDER BY created DESC, id LIMIT ?2",
                params![s, limit],
            )?);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}
