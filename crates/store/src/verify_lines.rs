//! Offline verification of records outside any database: the JSON lines that
//! `airlock audit export --format jsonl` writes and that the streaming sinks deliver to a SIEM.
//!
//! Each line is one record with its chain fields (`replica_id`, `seq`, `prev_hash`, `hash`).
//! The record's hash covers the canonical encoding of everything but `hash` itself, chained on
//! `prev_hash`, so each line can be checked on its own, whatever order or key order the copy
//! was stored in; consecutive positions must also link. The lines alone only prove they are
//! consistent (someone who rewrites them can recompute every hash): checkpoints signed by a
//! trusted key (the gateway logs them, see [`crate::parse_checkpoint_log`]) make them
//! authentic. A checkpoint at a position the copy holds must seal that record's hash; with the
//! links before it, that authenticates every record back to the previous gap.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    chain::{canonical_json, parse_hash, record_hash, Checkpoint},
    verify::{Problem, ProblemKind, ReplicaReport, VerifyReport},
};

/// How [`verify_lines`] treats positions missing from the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gaps {
    /// A missing position is a problem: the copy should hold every record from its first to
    /// its last (a sink's delivery, an unfiltered export).
    Refuse,
    /// Missing positions are expected (a filtered export); they are only counted.
    Allow,
}

/// One parsed line.
struct Line {
    number: usize,
    seq: u64,
    id: Option<Uuid>,
    prev_hash: String,
    hash: String,
    /// The canonical payload the hash must cover.
    payload: Vec<u8>,
}

/// Whether a copy with no record under a trusted checkpoint passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsealed {
    /// A replica none of whose records a trusted checkpoint covers is a problem
    /// ([`ProblemKind::NotCovered`]): it is consistent, which anyone can make it, but not shown
    /// authentic. Records after the last covered one are counted, as `verify` counts them.
    Refuse,
    /// Consistency is enough (no checkpoints at hand).
    Allow,
}

/// Verifies JSON-lines records against the `trusted` keys and the `external` checkpoints.
///
/// Blank lines are skipped; a line that is not a record (or has a key twice) is a problem
/// (replica `""`, its line number as position). A record delivered twice (at least once
/// delivery) counts once; two different records at one position are a problem. A record is
/// covered when a trusted checkpoint seals it, or a covered record follows it and links to it.
pub fn verify_lines(
    text: &str,
    trusted: &[VerifyingKey],
    external: &[Checkpoint],
    gaps: Gaps,
    unsealed: Unsealed,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut chains: BTreeMap<String, BTreeMap<u64, Line>> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let (replica, line) = match parse(raw, number) {
            Ok(parsed) => parsed,
            Err(reason) => {
                report.problems.push(Problem {
                    replica_id: String::new(),
                    seq: number as u64,
                    id: None,
                    kind: ProblemKind::BadPayload {
                        reason: format!("line {number}: {reason}"),
                    },
                });
                continue;
            }
        };
        let chain = chains.entry(replica.clone()).or_default();
        match chain.get(&line.seq) {
            None => {
                chain.insert(line.seq, line);
            }
            Some(kept) if kept.hash == line.hash && kept.payload == line.payload => {}
            Some(kept) => report.problems.push(Problem {
                replica_id: replica,
                seq: line.seq,
                id: line.id,
                kind: ProblemKind::ConflictingCopies {
                    lines: (kept.number, line.number),
                },
            }),
        }
    }
    for cp in external {
        chains.entry(cp.replica_id.clone()).or_default();
    }
    for (replica, chain) in chains {
        let theirs: Vec<&Checkpoint> = external
            .iter()
            .filter(|c| c.replica_id == replica)
            .collect();
        let (summary, mut problems) = verify_chain(&replica, &chain, trusted, &theirs, gaps);
        if unsealed == Unsealed::Refuse
            && summary.records > 0
            && summary.unsealed == summary.records
        {
            problems.push(Problem {
                replica_id: replica.clone(),
                seq: summary.first_seq.unwrap_or_default(),
                id: None,
                kind: ProblemKind::NotCovered {
                    records: summary.records,
                },
            });
        }
        report.replicas.push(summary);
        report.problems.extend(problems);
    }
    report
}

fn parse(raw: &str, number: usize) -> Result<(String, Line), String> {
    let mut value: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    // serde_json keeps the last of a repeated key, while another reader (a SIEM) may show
    // the first.
    kube_request::unique_keys(raw.as_bytes())?;
    let obj = value.as_object_mut().ok_or("not a JSON object")?;
    let hash = match obj.remove("hash") {
        Some(Value::String(h)) => h,
        _ => return Err("no hash".into()),
    };
    let text = |obj: &serde_json::Map<String, Value>, key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(format!("no {key}"))
    };
    let replica = text(obj, "replica_id")?;
    let prev_hash = text(obj, "prev_hash")?;
    let seq = obj.get("seq").and_then(Value::as_u64).ok_or("no seq")?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let payload = canonical_json(&value).map_err(|e| e.to_string())?;
    Ok((
        replica,
        Line {
            number,
            seq,
            id,
            prev_hash,
            hash,
            payload,
        },
    ))
}

fn verify_chain(
    replica: &str,
    chain: &BTreeMap<u64, Line>,
    trusted: &[VerifyingKey],
    external: &[&Checkpoint],
    gaps: Gaps,
) -> (ReplicaReport, Vec<Problem>) {
    let mut problems = Vec::new();
    let problem = |seq: u64, id: Option<Uuid>, kind: ProblemKind| Problem {
        replica_id: replica.to_owned(),
        seq,
        id,
        kind,
    };
    let mut summary = ReplicaReport {
        replica_id: replica.to_owned(),
        records: chain.len() as u64,
        first_seq: chain.keys().next().copied(),
        last_seq: chain.keys().next_back().copied(),
        ..ReplicaReport::default()
    };
    let mut previous: Option<&Line> = None;
    for line in chain.values() {
        let stored = parse_hash(&line.hash);
        let prev = parse_hash(&line.prev_hash);
        let found = match (stored, prev) {
            (Some(stored), Some(prev)) if record_hash(&prev, &line.payload) != stored => {
                Some(ProblemKind::HashMismatch)
            }
            (Some(_), Some(_)) => match previous {
                Some(p) if p.seq + 1 == line.seq && p.hash != line.prev_hash => {
                    Some(ProblemKind::PrevHashMismatch)
                }
                Some(p) if p.seq + 1 != line.seq => {
                    summary.gaps += line.seq - p.seq - 1;
                    (gaps == Gaps::Refuse).then_some(ProblemKind::Missing {
                        expected: p.seq + 1,
                    })
                }
                _ => None,
            },
            _ => Some(ProblemKind::BadPayload {
                reason: format!(
                    "line {}: hash or prev_hash is not 64 hex digits",
                    line.number
                ),
            }),
        };
        if let Some(kind) = found {
            problems.push(problem(line.seq, line.id, kind));
        }
        previous = Some(line);
    }
    // Trusted checkpoints that seal a record of the copy.
    let mut matched = Vec::new();
    for cp in external {
        if let Err(e) = cp.verify(trusted) {
            problems.push(problem(cp.seq, None, e.into()));
            continue;
        }
        match chain.get(&cp.seq) {
            Some(line) if line.hash == cp.hash => matched.push(cp.seq),
            Some(line) => problems.push(problem(
                cp.seq,
                line.id,
                ProblemKind::ExternalCheckpointMismatch,
            )),
            // Inside the copy's range, with gaps refused: the record should be here.
            None if gaps == Gaps::Refuse
                && summary.first_seq.is_some_and(|f| f <= cp.seq)
                && summary.last_seq.is_some_and(|l| cp.seq <= l) =>
            {
                problems.push(problem(
                    cp.seq,
                    None,
                    ProblemKind::ExternalCheckpointWithoutRecord {
                        last_seq: summary.last_seq,
                    },
                ))
            }
            // Outside the copy (older or newer than it), or in a gap of a filtered export.
            None => {}
        }
    }
    summary.external_checkpoints = matched.len() as u64;
    summary.last_checkpoint_seq = matched.iter().max().copied();
    // Covered: sealed by a matched checkpoint, or linked to from a covered record after it.
    let mut covered = std::collections::BTreeSet::new();
    for mut seq in matched {
        while covered.insert(seq) {
            let next = &chain[&seq];
            match seq.checked_sub(1).and_then(|s| chain.get(&s)) {
                Some(before) if before.hash == next.prev_hash => seq -= 1,
                _ => break,
            }
        }
    }
    summary.unsealed = summary.records - covered.len() as u64;
    problems.sort_by_key(|p| p.seq);
    (summary, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditRecord, RecordKind, SigningKey, Timestamp};

    /// [`verify_lines`] as the tests mostly want it: a copy must be covered.
    fn verify_lines(
        text: &str,
        trusted: &[VerifyingKey],
        external: &[Checkpoint],
        gaps: Gaps,
    ) -> VerifyReport {
        super::verify_lines(text, trusted, external, gaps, Unsealed::Refuse)
    }

    /// `n` chained records of replica `r`, as export lines, and a checkpoint of the last.
    fn lines(n: u64) -> (Vec<String>, Checkpoint, SigningKey) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut prev = crate::chain::GENESIS;
        let mut out = Vec::new();
        for seq in 1..=n {
            let mut r = AuditRecord::new(Uuid::new_v4(), RecordKind::Request, Timestamp::now());
            r.replica_id = "r".into();
            r.seq = seq;
            r.prev_hash = hex::encode(prev);
            r.command = Some(format!("kubectl get pod p{seq}"));
            let payload = crate::chain::record_payload(&r).unwrap();
            prev = record_hash(&prev, &payload);
            r.hash = hex::encode(prev);
            let v = serde_json::to_value(&r).unwrap();
            out.push(String::from_utf8(canonical_json(&v).unwrap()).unwrap());
        }
        let cp = Checkpoint::sign(&key, "r", n, &hex::encode(prev), Timestamp::now()).unwrap();
        (out, cp, key)
    }

    fn kinds(report: &VerifyReport) -> Vec<(u64, ProblemKind)> {
        report
            .problems
            .iter()
            .map(|p| (p.seq, p.kind.clone()))
            .collect()
    }

    #[test]
    fn an_untouched_copy_verifies_in_any_order_and_with_repeats() {
        let (mut l, cp, key) = lines(5);
        l.reverse();
        l.push(l[2].clone());
        let report = verify_lines(&l.join("\n"), &[key.verifying_key()], &[cp], Gaps::Refuse);
        assert!(report.is_ok(), "{:?}", kinds(&report));
        let r = &report.replicas[0];
        assert_eq!((r.records, r.external_checkpoints, r.unsealed), (5, 1, 0));
    }

    #[test]
    fn edits_deletions_and_rewrites_are_located() {
        let (l, cp, key) = lines(5);
        let trusted = [key.verifying_key()];
        // An edited record.
        let mut edited = l.clone();
        edited[2] = edited[2].replace("kubectl get pod p3", "kubectl get pod px");
        let report = verify_lines(
            &edited.join("\n"),
            &trusted,
            std::slice::from_ref(&cp),
            Gaps::Refuse,
        );
        assert_eq!(kinds(&report), [(3, ProblemKind::HashMismatch)]);
        // A deleted record: a gap, unless gaps are allowed.
        let mut cut = l.clone();
        cut.remove(1);
        let report = verify_lines(
            &cut.join("\n"),
            &trusted,
            std::slice::from_ref(&cp),
            Gaps::Refuse,
        );
        assert_eq!(kinds(&report), [(3, ProblemKind::Missing { expected: 2 })]);
        let report = verify_lines(
            &cut.join("\n"),
            &trusted,
            std::slice::from_ref(&cp),
            Gaps::Allow,
        );
        assert!(report.is_ok());
        assert_eq!(report.replicas[0].gaps, 1);
        // Rewritten and re-hashed from scratch: consistent, but the checkpoint does not match.
        let (other, _, _) = lines(5);
        let report = verify_lines(
            &other.join("\n"),
            &trusted,
            std::slice::from_ref(&cp),
            Gaps::Refuse,
        );
        assert_eq!(
            kinds(&report),
            [
                (5, ProblemKind::ExternalCheckpointMismatch),
                (1, ProblemKind::NotCovered { records: 5 })
            ]
        );
        // Without trusted checkpoints a rewrite is only internally consistent: refused unless
        // consistency is all that is asked.
        let report = verify_lines(&other.join("\n"), &trusted, &[], Gaps::Refuse);
        assert_eq!(
            kinds(&report),
            [(1, ProblemKind::NotCovered { records: 5 })]
        );
        let report = super::verify_lines(
            &other.join("\n"),
            &trusted,
            &[],
            Gaps::Refuse,
            Unsealed::Allow,
        );
        assert!(report.is_ok());
        // Cut just before the checkpoint and rewritten: nothing is covered.
        let report = verify_lines(
            &other[..4].join("\n"),
            &trusted,
            std::slice::from_ref(&cp),
            Gaps::Refuse,
        );
        assert_eq!(
            kinds(&report),
            [(1, ProblemKind::NotCovered { records: 4 })]
        );
        // A gap stops the coverage: records before it are not shown authentic.
        let mut holed = l.clone();
        holed.remove(2);
        let report = verify_lines(
            &holed.join("\n"),
            &trusted,
            std::slice::from_ref(&cp),
            Gaps::Allow,
        );
        assert!(report.is_ok());
        assert_eq!(
            report.replicas[0].unsealed, 2,
            "records 1 and 2 are before the gap"
        );
        // A key twice: serde would keep the last, a SIEM may show the first.
        let twice = l[0].replacen('{', "{\"command\":\"kubectl delete ns prod\",", 1);
        let report = verify_lines(&twice, &trusted, &[], Gaps::Refuse);
        assert!(
            matches!(&report.problems[0].kind, ProblemKind::BadPayload { reason } if reason.contains("appears twice")),
            "{:?}",
            kinds(&report)
        );
        // Two different records at one position; garbage.
        let text = format!("{}\n{}\nnot json\n", l.join("\n"), other[4]);
        let report = verify_lines(&text, &trusted, &[], Gaps::Refuse);
        let k = kinds(&report);
        assert!(
            k.contains(&(5, ProblemKind::ConflictingCopies { lines: (5, 6) })),
            "{k:?}"
        );
        assert!(
            k.iter()
                .any(|(seq, kind)| *seq == 7 && matches!(kind, ProblemKind::BadPayload { .. })),
            "{k:?}"
        );
        // A checkpoint signed by someone else.
        let stranger = SigningKey::from_bytes(&[4; 32]);
        let forged = Checkpoint::sign(&stranger, "r", 5, &cp.hash, cp.time).unwrap();
        let report = verify_lines(&l.join("\n"), &trusted, &[forged], Gaps::Refuse);
        assert_eq!(
            kinds(&report),
            [
                (5, ProblemKind::UntrustedCheckpointKey),
                (1, ProblemKind::NotCovered { records: 5 })
            ]
        );
    }
}
