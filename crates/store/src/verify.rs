//! Offline verification of a store's chains and checkpoints.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use uuid::Uuid;

use crate::{
    chain::{is_canonical, parse_hash, record_hash, Checkpoint, SignatureError, GENESIS},
    error::Result,
    sql::Param,
    AuditRecord, Store,
};

const PAGE: i64 = 1000;

/// What [`verify`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// One entry per replica chain found.
    pub replicas: Vec<ReplicaReport>,
    /// Every problem, per replica in chain order; empty when the log verifies.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// `true` when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem (in replica order, then chain order).
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

/// One replica's chain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplicaReport {
    /// Replica.
    pub replica_id: String,
    /// Records present.
    pub records: u64,
    /// First and last sequence numbers present.
    pub first_seq: Option<u64>,
    /// Last sequence number present.
    pub last_seq: Option<u64>,
    /// Checkpoints present (not counting the anchor).
    pub checkpoints: u64,
    /// The newest checkpoint with a valid signature.
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the newest valid checkpoint: chained but not yet covered by a signature,
    /// so a rewrite of them (together with their hashes) cannot be detected offline.
    pub unsealed: u64,
    /// The anchor left by pruning: records up to this seq were removed on purpose.
    pub anchor_seq: Option<u64>,
    /// Checkpoints kept outside the database (see [`verify_with_external`]) that matched.
    pub external_checkpoints: u64,
    /// Checkpoints kept outside the database that seal records behind the pruning anchor:
    /// they can no longer be checked (see `docs/audit.md`, Retention).
    pub external_pruned: u64,
    /// Positions missing between the first and the last record (only counted by
    /// [`crate::verify_lines`] with gaps allowed; otherwise each gap is a problem).
    pub gaps: u64,
}

/// One thing wrong, located.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Replica.
    pub replica_id: String,
    /// The record (or checkpoint) position where it shows.
    pub seq: u64,
    /// The record's request id, when a record is at that position.
    pub id: Option<Uuid>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ProblemKind {
    /// Records `expected..seq` are missing (deleted, or the chain's start was cut without a
    /// valid anchor).
    Missing {
        /// The first missing position.
        expected: u64,
    },
    /// The payload is not canonical JSON (edited by hand).
    NotCanonical,
    /// The payload is not a record.
    BadPayload {
        /// Decoder message.
        reason: String,
    },
    /// The record's `prev_hash` is not the previous record's hash: records were inserted,
    /// removed or reordered just before this one, or the previous record was edited and its
    /// own hash recomputed.
    PrevHashMismatch,
    /// The stored hash does not match the payload: the record was modified.
    HashMismatch,
    /// An indexed column disagrees with the hashed payload (edited to mislead queries).
    ColumnMismatch {
        /// The column.
        column: String,
    },
    /// A validly signed checkpoint seals a different hash than the record at its position:
    /// records after `after` and up to this one were rewritten with recomputed hashes.
    CheckpointMismatch {
        /// The previous checkpoint that still matched, if any.
        after: Option<u64>,
    },
    /// A checkpoint seals a record that is no longer in the log (deleted tail).
    CheckpointWithoutRecord,
    /// A checkpoint's signature does not verify (forged or altered).
    BadCheckpointSignature,
    /// A checkpoint is signed by a key that is not trusted.
    UntrustedCheckpointKey,
    /// A checkpoint kept outside the database seals a different hash than the record at its
    /// position: the record and everything after the last matching checkpoint was rewritten
    /// (with the database's own checkpoints re-made or removed).
    ExternalCheckpointMismatch,
    /// A checkpoint kept outside the database seals a record the database no longer holds:
    /// the log was cut back (its tail deleted together with the tail's checkpoints).
    ExternalCheckpointWithoutRecord {
        /// The last position the database still holds, if any.
        last_seq: Option<u64>,
    },
    /// A copy of the log ([`crate::verify_lines`]) none of whose records a trusted checkpoint
    /// covers: consistent, but not shown authentic.
    NotCovered {
        /// Records in the copy.
        records: u64,
    },
    /// Two different records at one position in a copy of the log (lines, 1-based).
    ConflictingCopies {
        /// The two lines.
        lines: (usize, usize),
    },
    /// The pruning anchor's signature does not verify.
    BadAnchorSignature,
    /// The pruning anchor is signed by a key that is not trusted.
    UntrustedAnchorKey,
}

/// A checkpoint whose signature was refused.
impl From<SignatureError> for ProblemKind {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::UnknownKey => ProblemKind::UntrustedCheckpointKey,
            SignatureError::Invalid => ProblemKind::BadCheckpointSignature,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replica {:?} seq {}", self.replica_id, self.seq)?;
        if let Some(id) = self.id {
            write!(f, " (request {id})")?;
        }
        f.write_str(": ")?;
        match &self.kind {
            ProblemKind::Missing { expected } => {
                write!(f, "records {expected}..{} are missing", self.seq)
            }
            ProblemKind::NotCanonical => f.write_str("payload is not canonical json"),
            ProblemKind::BadPayload { reason } => write!(f, "payload is not a record: {reason}"),
            ProblemKind::PrevHashMismatch => write!(
                f,
                "chain broken between seq {} and {}: records were inserted, removed or \
                 reordered here, or the previous record was changed and re-hashed",
                self.seq.saturating_sub(1),
                self.seq
            ),
            ProblemKind::HashMismatch => f.write_str("record was modified (hash mismatch)"),
            ProblemKind::ColumnMismatch { column } => {
                write!(f, "column {column} disagrees with the signed payload")
            }
            ProblemKind::CheckpointMismatch { after } => match after {
                Some(a) => write!(
                    f,
                    "checkpoint does not match: records {}..={} were rewritten",
                    a + 1,
                    self.seq
                ),
                None => write!(
                    f,
                    "checkpoint does not match: records up to {} were rewritten",
                    self.seq
                ),
            },
            ProblemKind::CheckpointWithoutRecord => {
                f.write_str("checkpoint seals a record that is missing")
            }
            ProblemKind::ExternalCheckpointMismatch => f.write_str(
                "an external checkpoint seals a different record here: the log was rewritten",
            ),
            ProblemKind::ExternalCheckpointWithoutRecord { last_seq } => match last_seq {
                Some(last) if *last >= self.seq => f.write_str(
                    "an external checkpoint seals this record, which is missing from the log",
                ),
                Some(last) => write!(
                    f,
                    "an external checkpoint seals this record, but the log ends at {last}: \
                     records {}..={} were deleted",
                    last + 1,
                    self.seq
                ),
                None => f.write_str(
                    "an external checkpoint seals this record, but the log holds none of this \
                     replica's records",
                ),
            },
            ProblemKind::NotCovered { records } => write!(
                f,
                "none of this replica's {records} record(s) is covered by a trusted checkpoint: \
                 the copy is consistent, which anyone can make it, not shown authentic \
                 (give --checkpoints, or --allow-unsealed to accept that)"
            ),
            ProblemKind::ConflictingCopies { lines: (a, b) } => {
                write!(
                    f,
                    "lines {a} and {b} hold different records at this position"
                )
            }
            ProblemKind::BadCheckpointSignature => f.write_str("checkpoint signature is invalid"),
            ProblemKind::UntrustedCheckpointKey => {
                f.write_str("checkpoint signed by an untrusted key")
            }
            ProblemKind::BadAnchorSignature => f.write_str("pruning anchor signature is invalid"),
            ProblemKind::UntrustedAnchorKey => {
                f.write_str("pruning anchor signed by an untrusted key")
            }
        }
    }
}

/// Verifies every replica chain in `store` against the `trusted` checkpoint keys.
///
/// Works on any copy of the database (it only reads). Checks, per replica:
/// the pruning anchor's signature; that positions run without gaps from the anchor (or 1);
/// that each payload is canonical, hashes to the stored hash and follows the previous hash;
/// that indexed columns match the payload; that every checkpoint's signature verifies with a
/// trusted key and seals exactly the hash of the record at its position.
pub async fn verify(store: &Store, trusted: &[VerifyingKey]) -> Result<VerifyReport> {
    verify_with_external(store, trusted, &[]).await
}

/// [`verify`], and also against checkpoints kept outside the database (the gateway logs each
/// one; [`parse_checkpoint_log`] reads them back).
///
/// The database's own checkpoints cannot expose someone who deletes the log's tail together
/// with the tail's checkpoints, or rewrites the records after the last checkpoint: what is
/// left still verifies. A copy held elsewhere can: each external checkpoint must have a
/// trusted signature, and the record at its position must exist (unless pruned behind the
/// anchor) and carry exactly the hash it seals.
pub async fn verify_with_external(
    store: &Store,
    trusted: &[VerifyingKey],
    external: &[Checkpoint],
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut replicas = store.replicas().await?;
    for cp in external {
        if !replicas.contains(&cp.replica_id) {
            replicas.push(cp.replica_id.clone());
        }
    }
    for replica in replicas {
        let theirs: Vec<&Checkpoint> = external
            .iter()
            .filter(|c| c.replica_id == replica)
            .collect();
        let (summary, problems) = verify_replica(store, &replica, trusted, &theirs).await?;
        report.replicas.push(summary);
        report.problems.extend(problems);
    }
    Ok(report)
}

/// Reads checkpoints out of the gateway's log: JSON lines (`--log-json`, the checkpoint's
/// fields under `fields`), text lines (`... audit checkpoint replica_id=... seq=...`, colours
/// and all), or bare [`Checkpoint`] JSON objects. Other lines are skipped.
pub fn parse_checkpoint_log(text: &str) -> Vec<Checkpoint> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                let fields = match v.get("fields") {
                    Some(f) if v["target"] == "audit_checkpoint" => f.clone(),
                    Some(_) => return None,
                    None => v,
                };
                serde_json::from_value(fields).ok()
            } else if line.contains("audit checkpoint") {
                let plain = strip_ansi(line);
                let field = |name: &str| {
                    let key = format!("{name}=");
                    plain
                        .split_whitespace()
                        .find_map(|t| t.strip_prefix(key.as_str()))
                        .map(|v| v.trim_matches('"').to_owned())
                };
                Some(Checkpoint {
                    replica_id: field("replica_id")?,
                    seq: field("seq")?.parse().ok()?,
                    hash: field("hash")?,
                    time: field("time")?.parse().ok()?,
                    public_key: field("public_key")?,
                    signature: field("signature")?,
                })
            } else {
                None
            }
        })
        .collect()
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn verify_replica(
    store: &Store,
    replica: &str,
    trusted: &[VerifyingKey],
    external: &[&Checkpoint],
) -> Result<(ReplicaReport, Vec<Problem>)> {
    let mut problems = Vec::new();
    let problem = |seq: u64, id: Option<Uuid>, kind: ProblemKind| Problem {
        replica_id: replica.to_owned(),
        seq,
        id,
        kind,
    };
    let mut summary = ReplicaReport {
        replica_id: replica.to_owned(),
        ..ReplicaReport::default()
    };

    let mut expected_seq = 1;
    let mut prev = GENESIS;
    if let Some(anchor) = store.anchor(replica).await? {
        match anchor.verify(trusted) {
            Ok(()) => {}
            Err(SignatureError::UnknownKey) => {
                problems.push(problem(anchor.seq, None, ProblemKind::UntrustedAnchorKey))
            }
            Err(SignatureError::Invalid) => {
                problems.push(problem(anchor.seq, None, ProblemKind::BadAnchorSignature))
            }
        }
        expected_seq = anchor.seq + 1;
        prev = parse_hash(&anchor.hash).unwrap_or(GENESIS);
        summary.anchor_seq = Some(anchor.seq);
    }
    let anchor_seq = expected_seq - 1;

    // Checkpoints with a valid signature, by position; the others are reported now.
    let mut sealed: BTreeMap<u64, Checkpoint> = BTreeMap::new();
    for cp in store.checkpoints(replica).await? {
        summary.checkpoints += 1;
        match cp.verify(trusted) {
            Ok(()) => {
                sealed.insert(cp.seq, cp);
            }
            Err(e) => {
                problems.push(problem(cp.seq, None, e.into()));
            }
        }
    }
    // External checkpoints with a valid signature, by position (one per position: the same
    // checkpoint is usually both logged and stored).
    let mut outside: BTreeMap<u64, &Checkpoint> = BTreeMap::new();
    for cp in external {
        match cp.verify(trusted) {
            Ok(()) => {
                outside.insert(cp.seq, cp);
            }
            Err(e) => {
                problems.push(problem(cp.seq, None, e.into()));
            }
        }
    }
    if let Some(anchor) = summary.anchor_seq {
        // Pruned on purpose: only the anchor's own position can still be compared.
        if let Some(cp) = outside.get(&anchor) {
            let anchored = store.anchor(replica).await?.map(|a| a.hash);
            if anchored.as_deref() != Some(cp.hash.as_str()) {
                problems.push(problem(
                    anchor,
                    None,
                    ProblemKind::ExternalCheckpointMismatch,
                ));
            } else {
                summary.external_checkpoints += 1;
            }
        }
        // What the log says was sealed behind the anchor cannot be checked any more: a prune
        // and someone with database access deleting the same records (and promoting a
        // checkpoint to anchor) look alike here. Counted, so the report shows it.
        summary.external_pruned = outside.range(..anchor).count() as u64;
        outside.retain(|seq, _| *seq > anchor);
    }
    let mut last_good_checkpoint: Option<u64> = None;
    let mut checkpoint_problems = Vec::new();

    let mut after = i64::try_from(anchor_seq).unwrap_or(i64::MAX);
    loop {
        let params = vec![
            Param::Text(replica.to_owned()),
            Param::Int(after),
            Param::Int(PAGE),
        ];
        let rows = store
            .select_rows(
                "WHERE replica_id = $1 AND seq > $2".to_owned(),
                params,
                "ORDER BY seq LIMIT $3".to_owned(),
            )
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in &rows {
            let seq = u64::try_from(row.seq).unwrap_or(0);
            let id = Uuid::parse_str(&row.id).ok();
            summary.records += 1;
            summary.first_seq.get_or_insert(seq);
            summary.last_seq = Some(seq);

            let stored_hash = parse_hash(&row.hash);
            let found = if seq != expected_seq {
                Some(ProblemKind::Missing {
                    expected: expected_seq,
                })
            } else if parse_hash(&row.prev_hash) != Some(prev) {
                Some(ProblemKind::PrevHashMismatch)
            } else if !is_canonical(row.payload.as_bytes()) {
                Some(ProblemKind::NotCanonical)
            } else if stored_hash != Some(record_hash(&prev, row.payload.as_bytes())) {
                Some(ProblemKind::HashMismatch)
            } else {
                match serde_json::from_str::<AuditRecord>(&row.payload) {
                    Err(e) => Some(ProblemKind::BadPayload {
                        reason: e.to_string(),
                    }),
                    Ok(record) => {
                        row.column_mismatch(&record)
                            .map(|c| ProblemKind::ColumnMismatch {
                                column: c.to_owned(),
                            })
                    }
                }
            };
            if let Some(kind) = found {
                problems.push(problem(seq, id, kind));
            }
            if let Some(cp) = outside.remove(&seq) {
                if row.hash == cp.hash {
                    summary.external_checkpoints += 1;
                } else {
                    checkpoint_problems.push(problem(
                        seq,
                        id,
                        ProblemKind::ExternalCheckpointMismatch,
                    ));
                }
            }
            if let Some(cp) = sealed.remove(&seq) {
                if Some(&row.hash) == Some(&cp.hash) && stored_hash.is_some() {
                    last_good_checkpoint = Some(seq);
                } else {
                    checkpoint_problems.push(problem(
                        seq,
                        id,
                        ProblemKind::CheckpointMismatch {
                            after: last_good_checkpoint,
                        },
                    ));
                }
            }
            // Carry on from what is stored, so one bad record is reported once rather than
            // breaking every record after it.
            prev = stored_hash.unwrap_or(GENESIS);
            expected_seq = seq + 1;
        }
        if rows.len() < PAGE as usize {
            break;
        }
    }
    for (seq, _) in sealed {
        if seq > anchor_seq {
            checkpoint_problems.push(problem(seq, None, ProblemKind::CheckpointWithoutRecord));
        }
    }
    for seq in outside.into_keys() {
        checkpoint_problems.push(problem(
            seq,
            None,
            ProblemKind::ExternalCheckpointWithoutRecord {
                last_seq: summary.last_seq,
            },
        ));
    }
    problems.extend(checkpoint_problems);
    problems.sort_by_key(|p| p.seq);
    summary.last_checkpoint_seq = last_good_checkpoint;
    summary.unsealed = match (summary.last_seq, last_good_checkpoint) {
        (Some(last), Some(cp)) => last.saturating_sub(cp),
        (Some(_), None) => summary.records,
        _ => 0,
    };
    Ok((summary, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_read_back_from_text_and_json_logs() {
        // As the gateway writes them (text with colours, `--log-json`), a bare checkpoint,
        // and lines that are not checkpoints.
        let text = "\u{1b}[2m2026-11-27T04:43:48.673178Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2maudit_checkpoint\u{1b}[0m\u{1b}[2m:\u{1b}[0m audit checkpoint \u{1b}[3mreplica_id\u{1b}[0m\u{1b}[2m=\u{1b}[0mdemo \u{1b}[3mseq\u{1b}[0m\u{1b}[2m=\u{1b}[0m6 \u{1b}[3mhash\u{1b}[0m\u{1b}[2m=\u{1b}[0maa11 \u{1b}[3mtime\u{1b}[0m\u{1b}[2m=\u{1b}[0m2026-11-27T04:43:48.670661648Z \u{1b}[3mpublic_key\u{1b}[0m\u{1b}[2m=\u{1b}[0mbb22 \u{1b}[3msignature\u{1b}[0m\u{1b}[2m=\u{1b}[0mcc33";
        let json = r#"{"timestamp":"2026-11-27T04:44:06.039530Z","level":"INFO","fields":{"message":"audit checkpoint","replica_id":"r2","seq":2,"hash":"dd44","time":"2026-11-27T04:44:06.034649298Z","public_key":"ee55","signature":"ff66"},"target":"audit_checkpoint"}"#;
        let other = r#"{"timestamp":"2026-11-27T04:44:06Z","level":"INFO","fields":{"message":"request","seq":3},"target":"gateway"}"#;
        let bare = r#"{"replica_id":"r3","seq":9,"hash":"1234","time":1764218646034649298,"public_key":"ab","signature":"cd"}"#;
        let log = format!("{text}\nplain line\n{json}\n{other}\n\n{bare}\n");
        let cps = parse_checkpoint_log(&log);
        let got: Vec<(&str, u64, &str, &str, &str)> = cps
            .iter()
            .map(|c| {
                (
                    c.replica_id.as_str(),
                    c.seq,
                    c.hash.as_str(),
                    c.public_key.as_str(),
                    c.signature.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("demo", 6, "aa11", "bb22", "cc33"),
                ("r2", 2, "dd44", "ee55", "ff66"),
                ("r3", 9, "1234", "ab", "cd"),
            ]
        );
        assert_eq!(cps[0].time.to_rfc3339(), "2026-11-27T04:43:48.670661648Z");
    }
}
