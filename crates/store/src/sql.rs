//! The schema, shared by both backends, and the row type that maps records to it.
//!
//! SQL text is written once with `$N` placeholders; the SQLite backend rewrites them to
//! `?N`. Column types are chosen to mean the same in both engines (`BIGINT` has integer
//! affinity in SQLite).

use uuid::Uuid;

use crate::{error::Result, AuditRecord, Filter, RecordKind, RecordSummary, StoreError, Timestamp};

/// Schema migrations, applied in order; the index + 1 is the schema version.
///
/// `audit_records.payload` is the canonical JSON the hash covers (TEXT, never `jsonb`:
/// PostgreSQL would re-order and re-space it). Every other record column is an index derived
/// from the payload, checked against it by `verify`.
pub(crate) const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE audit_records (
    replica_id      TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    id              TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    user_name       TEXT    NOT NULL,
    session_id      TEXT,
    kubectl_session TEXT,
    cluster         TEXT,
    namespace       TEXT,
    verb            TEXT,
    resource        TEXT,
    name            TEXT,
    command         TEXT,
    decision        TEXT,
    status          INTEGER,
    payload         TEXT    NOT NULL,
    prev_hash       TEXT    NOT NULL,
    hash            TEXT    NOT NULL,
    PRIMARY KEY (replica_id, seq)
);
CREATE INDEX audit_records_id ON audit_records (id);
CREATE INDEX audit_records_received_at ON audit_records (received_at);
CREATE INDEX audit_records_user ON audit_records (user_name, received_at);
CREATE INDEX audit_records_namespace ON audit_records (namespace, received_at);
CREATE TABLE audit_checkpoints (
    replica_id  TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    hash        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    public_key  TEXT   NOT NULL,
    signature   TEXT   NOT NULL,
    PRIMARY KEY (replica_id, seq)
);
CREATE TABLE audit_anchors (
    replica_id  TEXT   NOT NULL PRIMARY KEY,
    seq         BIGINT NOT NULL,
    hash        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    public_key  TEXT   NOT NULL,
    signature   TEXT   NOT NULL,
    pruned_at   BIGINT NOT NULL
);
"#];

/// Bookkeeping table, created before migrations run.
pub(crate) const META_DDL: &str =
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)";

pub(crate) const RECORD_COLUMNS: &str = "replica_id, seq, id, kind, received_at, user_name, \
    session_id, kubectl_session, cluster, namespace, verb, resource, name, command, decision, \
    status, payload, prev_hash, hash";

pub(crate) const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints \
    (replica_id, seq, hash, created_at, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6)";

pub(crate) const SELECT_HEAD: &str =
    "SELECT seq, hash FROM audit_records WHERE replica_id = $1 ORDER BY seq DESC LIMIT 1";
pub(crate) const SELECT_ANCHOR: &str = "SELECT replica_id, seq, hash, created_at, public_key, \
    signature FROM audit_anchors WHERE replica_id = $1";
pub(crate) const SELECT_CHECKPOINTS: &str = "SELECT replica_id, seq, hash, created_at, \
    public_key, signature FROM audit_checkpoints WHERE replica_id = $1 ORDER BY seq";
pub(crate) const SELECT_REPLICAS: &str = "SELECT replica_id FROM audit_records \
    UNION SELECT replica_id FROM audit_checkpoints UNION SELECT replica_id FROM audit_anchors \
    ORDER BY replica_id";
pub(crate) const PRUNE_RECORDS: &str =
    "DELETE FROM audit_records WHERE replica_id = $1 AND seq <= $2";
pub(crate) const PRUNE_CHECKPOINTS: &str =
    "DELETE FROM audit_checkpoints WHERE replica_id = $1 AND seq <= $2";
pub(crate) const UPSERT_ANCHOR: &str = "INSERT INTO audit_anchors \
    (replica_id, seq, hash, created_at, public_key, signature, pruned_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (replica_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
    created_at = excluded.created_at, public_key = excluded.public_key, \
    signature = excluded.signature, pruned_at = excluded.pruned_at";

/// One `audit_records` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordRow {
    pub replica_id: String,
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub received_at: i64,
    pub user_name: String,
    pub session_id: Option<String>,
    pub kubectl_session: Option<String>,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub name: Option<String>,
    pub command: Option<String>,
    pub decision: Option<String>,
    pub status: Option<i32>,
    pub payload: String,
    pub prev_hash: String,
    pub hash: String,
}

// === impl RecordRow ===

impl RecordRow {
    /// The row for a chained record (`replica_id`, `seq`, `prev_hash` set) and its payload.
    pub fn new(record: &AuditRecord, payload: String, hash: String) -> Result<Self> {
        Ok(Self {
            replica_id: record.replica_id.clone(),
            seq: i64::try_from(record.seq)
                .map_err(|_| StoreError::Encode("sequence number overflow".into()))?,
            id: record.id.to_string(),
            kind: record.kind.as_str().to_owned(),
            received_at: record.received_at.unix_nanos(),
            user_name: record.identity.user.clone(),
            session_id: record.identity.session_id.clone(),
            kubectl_session: record.kubectl_session.clone(),
            cluster: record.cluster.clone(),
            namespace: record.namespace.clone(),
            verb: record.verb.clone(),
            resource: match (&record.resource, &record.subresource) {
                (Some(r), Some(s)) => Some(format!("{r}/{s}")),
                (r, _) => r.clone(),
            },
            name: record.name.clone(),
            command: record.command.clone(),
            decision: record.decision.as_ref().map(|d| d.action.clone()),
            status: record.outcome.as_ref().map(|o| i32::from(o.status)),
            payload,
            prev_hash: record.prev_hash.clone(),
            hash,
        })
    }

    /// The record, decoded from the payload, with `hash` from the row.
    pub fn to_record(&self) -> Result<AuditRecord> {
        let mut record: AuditRecord = serde_json::from_str(&self.payload).map_err(|e| {
            StoreError::Corrupt(format!(
                "record {}/{}: payload is not a record: {e}",
                self.replica_id, self.seq
            ))
        })?;
        record.hash = self.hash.clone();
        Ok(record)
    }

    /// The first indexed column that disagrees with what the payload says, if any.
    pub fn column_mismatch(&self, record: &AuditRecord) -> Option<&'static str> {
        let Ok(expect) = Self::new(record, self.payload.clone(), self.hash.clone()) else {
            return Some("seq");
        };
        let checks: [(&'static str, bool); 17] = [
            ("replica_id", expect.replica_id == self.replica_id),
            ("seq", expect.seq == self.seq),
            ("id", expect.id == self.id),
            ("kind", expect.kind == self.kind),
            ("received_at", expect.received_at == self.received_at),
            ("user_name", expect.user_name == self.user_name),
            ("session_id", expect.session_id == self.session_id),
            (
                "kubectl_session",
                expect.kubectl_session == self.kubectl_session,
            ),
            ("cluster", expect.cluster == self.cluster),
            ("namespace", expect.namespace == self.namespace),
            ("verb", expect.verb == self.verb),
            ("resource", expect.resource == self.resource),
            ("name", expect.name == self.name),
            ("command", expect.command == self.command),
            ("decision", expect.decision == self.decision),
            ("status", expect.status == self.status),
            ("prev_hash", expect.prev_hash == self.prev_hash),
        ];
        checks.into_iter().find(|(_, ok)| !ok).map(|(name, _)| name)
    }

    /// The summary, from the indexed columns only.
    pub fn summary(&self) -> Result<RecordSummary> {
        Ok(RecordSummary {
            replica_id: self.replica_id.clone(),
            seq: u64::try_from(self.seq).unwrap_or(0),
            id: Uuid::parse_str(&self.id)
                .map_err(|e| StoreError::Corrupt(format!("record id {:?}: {e}", self.id)))?,
            kind: RecordKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("record kind {:?}", self.kind)))?,
            received_at: Timestamp::from_unix_nanos(self.received_at),
            user: self.user_name.clone(),
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            verb: self.verb.clone(),
            resource: self.resource.clone(),
            name: self.name.clone(),
            command: self.command.clone(),
            decision: self.decision.clone(),
            status: self.status.and_then(|s| u16::try_from(s).ok()),
        })
    }
}

/// A bound query parameter.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// `WHERE ...` (or the empty string) for `filter`, with `$N` placeholders numbered from
/// `params.len() + 1`.
pub(crate) fn where_clause(filter: &Filter, params: &mut Vec<Param>) -> String {
    let mut conds: Vec<String> = Vec::new();
    let mut add = |cond: &str, p: Param, params: &mut Vec<Param>| {
        params.push(p);
        conds.push(cond.replace('#', &format!("${}", params.len())));
    };
    if let Some(v) = &filter.user {
        add("user_name = #", Param::Text(v.clone()), params);
    }
    if let Some(v) = filter.since {
        add("received_at >= #", Param::Int(v.unix_nanos()), params);
    }
    if let Some(v) = filter.until {
        add("received_at < #", Param::Int(v.unix_nanos()), params);
    }
    if let Some(v) = &filter.cluster {
        add("cluster = #", Param::Text(v.clone()), params);
    }
    if let Some(v) = &filter.namespace {
        add("namespace = #", Param::Text(v.clone()), params);
    }
    if let Some(v) = &filter.decision {
        add("decision = #", Param::Text(v.clone()), params);
    }
    if let Some(v) = &filter.session {
        add(
            "(session_id = # OR kubectl_session = #)",
            Param::Text(v.clone()),
            params,
        );
    }
    if let Some(v) = filter.kind {
        add("kind = #", Param::Text(v.as_str().to_owned()), params);
    }
    if let Some(v) = &filter.replica_id {
        add("replica_id = #", Param::Text(v.clone()), params);
    }
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

/// Appends `cond` to a where clause (or starts one).
pub(crate) fn and(where_sql: &str, cond: &str) -> String {
    if where_sql.is_empty() {
        format!("WHERE {cond}")
    } else {
        format!("{where_sql} AND {cond}")
    }
}
