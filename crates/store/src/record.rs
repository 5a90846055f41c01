//! The audit record model.
//!
//! One request produces several records that share its [`AuditRecord::id`]: a
//! [`RecordKind::Request`] record written *before* anything is forwarded (write-ahead), zero
//! or more [`RecordKind::Approval`] and [`RecordKind::StreamEvent`] records, and a
//! [`RecordKind::Outcome`] record once the response is complete. The store never merges them;
//! each is one link of its replica's hash chain.
//!
//! Every optional field is left out of the JSON when empty, so the stored payload stays small
//! and a new optional field does not change the encoding of records that do not use it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Timestamp;

/// One link of the audit chain.
///
/// The fields of this struct and of every struct inside it are declared in the byte order of
/// their JSON names, so that serde writes them in canonical order (see [`crate::chain`]).
/// Keep it that way when adding one: a test compares the fast encoding with the canonical one.
///
/// The gateway fills everything except the chain fields (`replica_id`, `seq`, `prev_hash`,
/// `hash`); [`crate::Appender::append`] overwrites those.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// API group (`""` is the core group, left out here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// Human approvals given or refused for this request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// The target cluster's name in Airlock's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The kubectl-equivalent command line Airlock derived from the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// When the response (or stream) ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// When policy (and approval, if any) decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// What policy decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Anything else (stream event details, future fields). Keys are sorted in the encoding.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "crate::chain::serialize_sorted"
    )]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// When the request was sent upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_at: Option<Timestamp>,
    /// Hex SHA-256 hash of this record (see [`crate::chain`]). Set by the appender; not part of
    /// the hashed payload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// The request id: the gateway's request id, sent upstream as `Audit-ID`.
    pub id: Uuid,
    /// Who sent the request.
    #[serde(default)]
    pub identity: Identity,
    /// The agent's stated intent (`X-Airlock-Intent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// What this record describes.
    pub kind: RecordKind,
    /// kubectl's own `Kubectl-Command` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl_command: Option<String>,
    /// kubectl's `Kubectl-Session` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl_session: Option<String>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What the cluster answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Request path and query, as received (after canonical-path checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Hex SHA-256 hash of the previous record of this replica (64 zeros for the first).
    /// Set by the appender.
    #[serde(default)]
    pub prev_hash: String,
    /// When the gateway received the request.
    pub received_at: Timestamp,
    /// The gateway replica whose chain holds this record. Set by the appender.
    #[serde(default)]
    pub replica_id: String,
    /// The request body, already masked by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<Body>,
    /// Resource (`pods`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The response body, already masked by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<Body>,
    /// Position in the replica's chain, from 1. Set by the appender.
    #[serde(default)]
    pub seq: u64,
    /// Subresource (`exec`, `log`, `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Kubernetes verb (`get`, `list`, `create`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
}

impl AuditRecord {
    /// A record with only the required fields set.
    pub fn new(id: Uuid, kind: RecordKind, received_at: Timestamp) -> Self {
        Self {
            id,
            kind,
            received_at,
            ..Self::default()
        }
    }
}

/// What a record describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Write-ahead record of a request, written before it is forwarded (or refused).
    #[default]
    Request,
    /// The response status and sizes, after the response ended.
    Outcome,
    /// A human approved or refused the request.
    Approval,
    /// Something happened on an exec/attach/port-forward stream.
    StreamEvent,
}

impl RecordKind {
    /// The name stored in the `kind` column (same as the JSON name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Outcome => "outcome",
            Self::Approval => "approval",
            Self::StreamEvent => "stream_event",
        }
    }

    /// Inverse of [`RecordKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "request" => Self::Request,
            "outcome" => Self::Outcome,
            "approval" => Self::Approval,
            "stream_event" => Self::StreamEvent,
            _ => return None,
        })
    }
}

/// Who sent the request, as authenticated by Airlock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// OAuth client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// IdP session id (`sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Client socket address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_addr: Option<String>,
    /// Stable subject id (`sub`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// User name.
    #[serde(default)]
    pub user: String,
    /// `User-Agent` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// A captured (already masked) HTTP body.
///
/// Small bodies are kept whole; larger ones keep a prefix, and always the size and SHA-256 of
/// the whole masked body, so an exported log can still be matched against a copy of the body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The body, or its first bytes when `truncated`.
    pub data: String,
    /// How `data` is encoded.
    pub encoding: BodyEncoding,
    /// Hex SHA-256 of the whole body.
    pub sha256: String,
    /// Length of the whole body in bytes.
    pub size: u64,
    /// `true` when `data` holds only a prefix.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// How [`Body::data`] is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// The bytes are UTF-8 text, stored as is.
    #[default]
    Utf8,
    /// Binary, standard base64 with padding.
    Base64,
}

// === impl Body ===

impl Body {
    /// Captures `bytes`: whole when at most `max_inline` bytes long, else the first
    /// `prefix` bytes (cut back to a UTF-8 character boundary for text).
    pub fn capture(bytes: &[u8], max_inline: usize, prefix: usize) -> Self {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let size = bytes.len() as u64;
        let (kept, truncated) = if bytes.len() <= max_inline {
            (bytes, false)
        } else {
            (&bytes[..prefix.min(bytes.len())], true)
        };
        let (encoding, data) = match std::str::from_utf8(kept) {
            Ok(s) => (BodyEncoding::Utf8, s.to_owned()),
            // A prefix may end inside a character: keep the whole characters.
            Err(e) if truncated && e.error_len().is_none() => (
                BodyEncoding::Utf8,
                String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned(),
            ),
            Err(_) => (
                BodyEncoding::Base64,
                base64::engine::general_purpose::STANDARD.encode(kept),
            ),
        };
        Self {
            size,
            sha256,
            truncated,
            encoding,
            data,
        }
    }

    /// Shortens an inline body whose data is longer than `max_inline` bytes to a `prefix`,
    /// keeping the size and digest of the whole body.
    pub fn limit(&mut self, max_inline: usize, prefix: usize) {
        if self.data.len() <= max_inline {
            // Base64 is never shorter than its bytes: fits either way.
            return;
        }
        let raw = match self.encoding {
            BodyEncoding::Utf8 => self.data.as_bytes().to_vec(),
            BodyEncoding::Base64 => {
                match base64::engine::general_purpose::STANDARD.decode(&self.data) {
                    Ok(raw) => raw,
                    // Not ours to repair; the record stays as the caller made it.
                    Err(_) => return,
                }
            }
        };
        if raw.len() <= max_inline {
            return;
        }
        let short = Self::capture(&raw, 0, prefix);
        self.truncated = true;
        self.encoding = short.encoding;
        self.data = short.data;
    }

    /// The kept bytes (whole body unless `truncated`).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self.encoding {
            BodyEncoding::Utf8 => Some(self.data.as_bytes().to_vec()),
            BodyEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(&self.data)
                .ok(),
        }
    }
}

/// What policy decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The resulting action (`allow`, `deny`, `require_approval`, ...).
    pub action: String,
    /// Human-readable reason, if policy gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rules that matched, in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleMatch>,
}

/// One matched policy rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    /// The rule's action.
    pub action: String,
    /// Rule name.
    pub name: String,
}

/// One human decision on a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who decided.
    pub approver: String,
    /// When.
    pub at: Timestamp,
    /// Free-text comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `approved` or `denied`.
    pub decision: String,
}

/// What the cluster answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Request body bytes received from the client.
    #[serde(default)]
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    #[serde(default)]
    pub bytes_out: u64,
    /// Gateway-side error, if the request failed in Airlock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time from receiving the request to the end of the response, in microseconds.
    #[serde(default)]
    pub latency_us: u64,
    /// HTTP status sent to the client.
    pub status: u16,
    /// The `Audit-ID` the API server answered with (normally equal to the record id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_audit_id: Option<String>,
}

/// One line of [`crate::Store::list`]: the indexed columns of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummary {
    /// Replica.
    pub replica_id: String,
    /// Chain position.
    pub seq: u64,
    /// Request id.
    pub id: Uuid,
    /// Record kind.
    pub kind: RecordKind,
    /// When the request was received.
    pub received_at: Timestamp,
    /// User name.
    pub user: String,
    /// Cluster.
    pub cluster: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Verb.
    pub verb: Option<String>,
    /// Resource (with `/subresource`).
    pub resource: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// kubectl-equivalent command.
    pub command: Option<String>,
    /// Policy action.
    pub decision: Option<String>,
    /// Response status (outcome records).
    pub status: Option<u16>,
}

/// Which records [`crate::Store::list`] and [`crate::Store::export`] return. Unset fields
/// match everything; set fields must all match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exact user name.
    pub user: Option<String>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
    /// Cluster name.
    pub cluster: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Policy action (`allow`, `deny`, ...).
    pub decision: Option<String>,
    /// Session: matches the IdP session id or kubectl's `Kubectl-Session`.
    pub session: Option<String>,
    /// Record kind.
    pub kind: Option<RecordKind>,
    /// Replica.
    pub replica_id: Option<String>,
    /// At most this many records (list only; newest first).
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_capture() {
        struct Case {
            input: &'static [u8],
            max: usize,
            prefix: usize,
            truncated: bool,
            encoding: BodyEncoding,
            data: &'static str,
        }
        let cases = [
            Case {
                input: b"{\"a\":1}",
                max: 64,
                prefix: 4,
                truncated: false,
                encoding: BodyEncoding::Utf8,
                data: "{\"a\":1}",
            },
            Case {
                input: b"0123456789",
                max: 4,
                prefix: 3,
                truncated: true,
                encoding: BodyEncoding::Utf8,
                data: "012",
            },
            // The prefix would split "é" (2 bytes): cut before it.
            Case {
                input: "abé".as_bytes(),
                max: 1,
                prefix: 3,
                truncated: true,
                encoding: BodyEncoding::Utf8,
                data: "ab",
            },
            Case {
                input: &[0xff, 0x00, 0x01],
                max: 64,
                prefix: 1,
                truncated: false,
                encoding: BodyEncoding::Base64,
                data: "/wAB",
            },
        ];
        for c in cases {
            let b = Body::capture(c.input, c.max, c.prefix);
            assert_eq!(b.size, c.input.len() as u64);
            assert_eq!(b.sha256, hex::encode(Sha256::digest(c.input)));
            assert_eq!(
                (b.truncated, b.encoding, b.data.as_str()),
                (c.truncated, c.encoding, c.data)
            );
        }
    }

    #[test]
    fn body_limit_keeps_digest() {
        let mut b = Body::capture(&[7u8; 100], 1000, 10);
        let digest = b.sha256.clone();
        b.limit(50, 6);
        assert!(b.truncated);
        assert_eq!(b.bytes().unwrap(), vec![7u8; 6]);
        assert_eq!((b.size, b.sha256), (100, digest));
    }
}
