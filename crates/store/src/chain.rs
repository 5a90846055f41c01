//! Canonical encoding, record hashes and signed checkpoints.
//!
//! # Canonical encoding
//!
//! A record is hashed over its *payload*: the record serialized with serde to a JSON value,
//! the `hash` member removed, then written canonically:
//!
//! - objects: members sorted by the UTF-8 bytes of their keys, no duplicate keys;
//! - no whitespace anywhere;
//! - strings: `"`, `\` and control characters escaped (`\b \f \n \r \t`, else `\u00xx` in
//!   lower-case hex); everything else, including non-ASCII and `/`, written as is;
//! - numbers: integers only, in shortest decimal form. A floating-point number is an
//!   [`crate::StoreError::Encode`] error: the record model has none, and float formatting
//!   is where canonical JSON schemes usually disagree;
//! - `true`, `false`, `null` as is. Empty optional fields are left out by the model, so
//!   `null` normally does not appear.
//!
//! This is RFC 8785 (JCS) restricted to integers, except that keys sort by UTF-8 bytes
//! rather than UTF-16 code units (the orders differ only for keys outside the Basic
//! Multilingual Plane; the model's keys are ASCII). The payload is stored verbatim in the
//! `payload` column, and a verifier hashes the stored bytes after checking that re-encoding
//! them canonically gives the same bytes. It therefore never needs this crate's Rust types:
//! a record written by a newer version with more fields still verifies.
//!
//! # Record hash
//!
//! ```text
//! hash(seq) = SHA-256( "airlock-audit-record-v1\n" || prev_hash || payload )
//! ```
//!
//! where `prev_hash` is the 32 raw bytes of the previous record's hash in the same replica's
//! chain (32 zero bytes before the first record, or the anchor's hash after pruning). The
//! payload also holds `replica_id`, `seq` and `prev_hash` (hex), so a record cannot be moved
//! to another position or chain without changing its hash.
//!
//! # Checkpoints
//!
//! A checkpoint signs the head of one replica's chain with Ed25519:
//!
//! ```text
//! message   = "airlock-audit-checkpoint-v1\n" || canonical({"hash","replica_id","seq","time"})
//! signature = Ed25519(signing key, message)
//! ```
//!
//! The hash chain alone proves nothing against someone who can write the database: SHA-256
//! is unkeyed, so they can recompute every later hash. The signatures are what make the log
//! tamper-evident: any change to a record at or before a checkpoint breaks that checkpoint.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{error::Result, AuditRecord, StoreError, Timestamp};

/// Domain separation prefix of record hashes.
pub const RECORD_DOMAIN: &[u8] = b"airlock-audit-record-v1\n";
/// Domain separation prefix of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &[u8] = b"airlock-audit-checkpoint-v1\n";
/// The `prev_hash` of a chain's first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Writes `value` canonically (see the module docs).
pub fn canonical_json(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if !(n.is_i64() || n.is_u64()) {
                return Err(StoreError::Encode(format!(
                    "floating-point number {n} has no canonical form"
                )));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json is built with `preserve_order` in this workspace, so the map keeps
            // insertion order: sort explicitly.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out)?;
                out.push(b':');
                write_canonical(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) -> Result<()> {
    // serde_json's escaping is exactly the one described in the module docs.
    serde_json::to_writer(&mut *out, s).map_err(|e| StoreError::Encode(e.to_string()))
}

/// `true` when `bytes` are JSON already in canonical form.
pub fn is_canonical(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => canonical_json(&v).is_ok_and(|c| c == bytes),
        Err(_) => false,
    }
}

/// The hashed payload of `record`: its canonical JSON without `hash`.
pub fn record_payload(record: &AuditRecord) -> Result<Vec<u8>> {
    if !record.hash.is_empty() {
        return slow_record_payload(record);
    }
    // Fast path: the record model declares its fields in canonical (sorted) order and sorts
    // the keys of `extra`, and serde_json escapes strings exactly as the canonical form does,
    // so serde's own output is canonical. This skips building a `Value` tree (which copied
    // every body) and re-encoding it: about a third of building a record.
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, record).map_err(|e| StoreError::Encode(e.to_string()))?;
    debug_assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&slow_record_payload(record)?),
        "the record model's serde output is no longer canonical: keep fields sorted"
    );
    Ok(out)
}

/// [`record_payload`] by way of a `Value` tree and [`canonical_json`].
fn slow_record_payload(record: &AuditRecord) -> Result<Vec<u8>> {
    let mut value = serde_json::to_value(record).map_err(|e| StoreError::Encode(e.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.remove("hash");
    }
    canonical_json(&value)
}

/// Serializes a map of JSON values with every object's keys sorted by their UTF-8 bytes (the
/// workspace's serde_json keeps insertion order), refusing floating-point numbers, as
/// [`canonical_json`] does.
pub(crate) fn serialize_sorted<S: serde::Serializer>(
    map: &std::collections::BTreeMap<String, Value>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(map.len()))?;
    for (k, v) in map {
        m.serialize_entry(k, &Sorted(v))?;
    }
    m.end()
}

struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut m = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    m.serialize_entry(k, &Sorted(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            Value::Number(n) if !(n.is_i64() || n.is_u64()) => Err(S::Error::custom(format!(
                "floating-point number {n} has no canonical form"
            ))),
            v => v.serialize(s),
        }
    }
}

/// `SHA-256(RECORD_DOMAIN || prev || payload)`.
pub fn record_hash(prev: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(RECORD_DOMAIN);
    h.update(prev);
    h.update(payload);
    h.finalize().into()
}

/// Parses a 64-digit hex hash.
pub fn parse_hash(hex_hash: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out).ok()?;
    Some(out)
}

/// A signed statement "replica R's chain had hash H at position S at time T".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Replica.
    pub replica_id: String,
    /// Chain position of the record it seals.
    pub seq: u64,
    /// Hex hash of that record.
    pub hash: String,
    /// When it was made.
    pub time: Timestamp,
    /// Hex Ed25519 public key of the signer (which trusted key to check against).
    pub public_key: String,
    /// Hex Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

/// Why a checkpoint signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// Signed by a key that is not among the trusted keys.
    UnknownKey,
    /// The signature does not match.
    Invalid,
}

// === impl Checkpoint ===

impl Checkpoint {
    /// Signs the chain head `(replica_id, seq, hash)` at `time`.
    pub fn sign(
        key: &SigningKey,
        replica_id: &str,
        seq: u64,
        hash: &str,
        time: Timestamp,
    ) -> Result<Self> {
        let message = Self::message(replica_id, seq, hash, time)?;
        let signature = key.sign(&message);
        Ok(Self {
            replica_id: replica_id.to_owned(),
            seq,
            hash: hash.to_owned(),
            time,
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(signature.to_bytes()),
        })
    }

    /// The signed bytes.
    pub fn message(replica_id: &str, seq: u64, hash: &str, time: Timestamp) -> Result<Vec<u8>> {
        let mut map = serde_json::Map::new();
        map.insert("hash".into(), Value::String(hash.to_owned()));
        map.insert("replica_id".into(), Value::String(replica_id.to_owned()));
        map.insert("seq".into(), Value::from(seq));
        map.insert("time".into(), Value::String(time.to_rfc3339()));
        let body = Value::Object(map);
        let mut message = CHECKPOINT_DOMAIN.to_vec();
        message.extend(canonical_json(&body)?);
        Ok(message)
    }

    /// Checks the signature against the trusted keys.
    pub fn verify(&self, trusted: &[VerifyingKey]) -> Result<(), SignatureError> {
        let key = trusted
            .iter()
            .find(|k| hex::encode(k.as_bytes()) == self.public_key)
            .ok_or(SignatureError::UnknownKey)?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut sig).map_err(|_| SignatureError::Invalid)?;
        let message = Self::message(&self.replica_id, self.seq, &self.hash, self.time)
            .map_err(|_| SignatureError::Invalid)?;
        key.verify_strict(&message, &Signature::from_bytes(&sig))
            .map_err(|_| SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every field of the record model set: serde's output must be the canonical encoding.
    #[test]
    fn fast_payload_is_canonical() {
        use crate::{Approval, Body, Decision, Identity, Outcome, RecordKind, RuleMatch};
        let t = Timestamp::from_system_time(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_700_000_000_123_456_789),
        );
        let mut r = AuditRecord::new(uuid::Uuid::nil(), RecordKind::Outcome, t);
        r.replica_id = "r".into();
        r.seq = 7;
        r.prev_hash = "00".repeat(32);
        (r.decided_at, r.forwarded_at, r.completed_at) = (Some(t), Some(t), Some(t));
        r.identity = Identity {
            client_id: Some("c".into()),
            groups: vec!["g1".into(), "g0".into()],
            session_id: Some("s".into()),
            source_addr: Some("127.0.0.1:1".into()),
            uid: Some("u".into()),
            user: "alice".into(),
            user_agent: Some("kubectl/v1.33 \"quoted\"\n".into()),
        };
        for f in [
            &mut r.cluster,
            &mut r.method,
            &mut r.path,
            &mut r.verb,
            &mut r.api_group,
            &mut r.resource,
            &mut r.subresource,
            &mut r.namespace,
            &mut r.name,
            &mut r.command,
            &mut r.intent,
            &mut r.kubectl_command,
            &mut r.kubectl_session,
        ] {
            *f = Some("x\u{7}é/".into());
        }
        r.request_body = Some(Body::capture(b"{\"a\":1}", 100, 10));
        r.response_body = Some(Body::capture(&[0xff; 40], 10, 4));
        r.decision = Some(Decision {
            action: "deny".into(),
            reason: Some("r".into()),
            rules: vec![RuleMatch {
                action: "deny".into(),
                name: "n".into(),
            }],
        });
        r.approvals = vec![Approval {
            approver: "bob".into(),
            at: t,
            comment: Some("ok".into()),
            decision: "approved".into(),
        }];
        r.outcome = Some(Outcome {
            bytes_in: 1,
            bytes_out: 2,
            error: Some("e".into()),
            latency_us: 3,
            status: 200,
            upstream_audit_id: Some("a".into()),
        });
        r.extra.insert(
            "events".into(),
            json!([{"z": 1, "a": {"y": [1, {"q": 2, "b": 3}], "x": "s"}}]),
        );
        r.extra.insert("a".into(), json!({"b": -1, "a": u64::MAX}));
        assert_eq!(
            String::from_utf8(record_payload(&r).unwrap()).unwrap(),
            String::from_utf8(slow_record_payload(&r).unwrap()).unwrap()
        );
        // Floats are refused on both paths.
        r.extra.insert("f".into(), json!({"v": 1.5}));
        assert!(record_payload(&r).is_err());
    }

    #[test]
    fn canonical_cases() {
        let cases: &[(Value, &str)] = &[
            (
                json!({"b": 1, "a": [true, null, "x"]}),
                r#"{"a":[true,null,"x"],"b":1}"#,
            ),
            (json!({"B": 1, "a": 2, "_": 3}), r#"{"B":1,"_":3,"a":2}"#),
            (
                json!({"s": "line\n\"q\" \\ / é \u{1}"}),
                r#"{"s":"line\n\"q\" \\ / é \u0001"}"#,
            ),
            (
                json!({"n": -5, "m": 18446744073709551615u64}),
                r#"{"m":18446744073709551615,"n":-5}"#,
            ),
            (json!({"o": {"z": {}, "y": []}}), r#"{"o":{"y":[],"z":{}}}"#),
        ];
        for (value, expect) in cases {
            let got = canonical_json(value).unwrap();
            assert_eq!(std::str::from_utf8(&got).unwrap(), *expect);
            assert!(is_canonical(&got));
        }
        assert!(canonical_json(&json!({"f": 1.5})).is_err());
        assert!(!is_canonical(br#"{"b":1,"a":2}"#));
        assert!(!is_canonical(br#"{"a": 2}"#));
    }

    #[test]
    fn record_hash_is_stable() {
        // Guards the on-disk format: changing the encoding or the hash breaks every
        // existing log, so this vector must only change with a new domain string.
        let mut r = AuditRecord::new(
            uuid::Uuid::nil(),
            crate::RecordKind::Request,
            Timestamp::from_unix_nanos(0),
        );
        r.replica_id = "r1".into();
        r.seq = 1;
        r.prev_hash = hex::encode(GENESIS);
        r.hash = "ignored".into();
        let payload = record_payload(&r).unwrap();
        assert_eq!(
            std::str::from_utf8(&payload).unwrap(),
            r#"{"id":"00000000-0000-0000-0000-000000000000","identity":{"user":""},"kind":"request","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","received_at":"1970-01-01T00:00:00.000000000Z","replica_id":"r1","seq":1}"#
        );
        let h = hex::encode(record_hash(&GENESIS, &payload));
        let mut expect = Sha256::new();
        expect.update(b"airlock-audit-record-v1\n");
        expect.update([0u8; 32]);
        expect.update(&payload);
        assert_eq!(h, hex::encode(expect.finalize()));
    }

    #[test]
    fn checkpoint_sign_verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let cp = Checkpoint::sign(
            &key,
            "r1",
            10,
            &"ab".repeat(32),
            Timestamp::from_unix_nanos(5),
        )
        .unwrap();
        assert_eq!(
            cp.verify(&[other.verifying_key(), key.verifying_key()]),
            Ok(())
        );
        assert_eq!(
            cp.verify(&[other.verifying_key()]),
            Err(SignatureError::UnknownKey)
        );
        let mut forged = cp.clone();
        forged.seq = 11;
        assert_eq!(
            forged.verify(&[key.verifying_key()]),
            Err(SignatureError::Invalid)
        );
    }
}
