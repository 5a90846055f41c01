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
    /// The pruning anchor's signature does not verify.
    BadAnchorSignature,
    /// The pruning anchor is signed by a key that is not trusted.
    UntrustedAnchorKey,
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
    let mut report = VerifyReport::default();
    for replica in store.replicas().await? {
        let (summary, problems) = verify_replica(store, &replica, trusted).await?;
        report.replicas.push(summary);
        report.problems.extend(problems);
    }
    Ok(report)
}

async fn verify_replica(
    store: &Store,
    replica: &str,
    trusted: &[VerifyingKey],
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
                let kind = match e {
                    SignatureError::UnknownKey => ProblemKind::UntrustedCheckpointKey,
                    SignatureError::Invalid => ProblemKind::BadCheckpointSignature,
                };
                problems.push(problem(cp.seq, None, kind));
            }
        }
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
