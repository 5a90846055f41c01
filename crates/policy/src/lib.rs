//! Airlock's authorization policy: (identity, request attributes, object) ->
//! [`Decision`].
//!
//! Pure: no I/O (but [`Policy::load_file`], a convenience that reads a file
//! and calls [`Policy::from_yaml`]) and no async. The gateway calls
//! [`Policy::evaluate`] in its authorize stage, then acts on the
//! [`Verdict`]: forward, refuse with [`Decision::message`], or hold for the
//! [`Decision::approvals`]. Approvals, holding and reloading live in the
//! gateway; the language is documented in `docs/policy.md`.
//!
//! # Invariants
//!
//! - CEL conditions are compiled once, at load; a condition that does not
//!   compile, or calls an unknown function, is a load error naming the rule.
//! - Evaluation never fails. A condition that errors at run time makes its
//!   rule match if the rule denies or asks for approval, and not match if it
//!   allows or masks (fail closed); the error is kept in the decision.
//! - `deny` beats `approve` beats `allow`, whatever the rule order.
//! - Error text in decisions never holds values from the request body.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cel;
mod duration;
mod error;
mod eval;
mod glob;
mod k8s;
mod policy;
mod presets;
mod raw;
mod review;
mod whatif;

pub use error::PolicyError;
pub use eval::{Basis, ConditionError, Decision, MatchedRule, RequestContext, Verdict};
pub use policy::{
    Action, ApprovalRequirement, DefaultAction, GrantLimit, GrantScope, Policy, DEFAULT_HOLD,
    DEFAULT_MAX_GRANT,
};
pub use presets::NAMES as PRESETS;
pub use review::{review_attributes, ReviewAnswer};
pub use whatif::{what_if, WhatIfChange, WhatIfReport};

const BOOL_WORDS: &str = "yes/no/on/off values";
const NUMBER_FORMS: &str = "numbers written 00 or 0_0";

/// A YAML 1.1 integer that YAML 1.2 (serde_yaml) reads as a string: leading zeros (octal)
/// or underscores. `replicas: 00` is 0 to the cluster.
fn yaml_1_1_number(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    t.chars().any(|c| c.is_ascii_digit())
        && t.chars().all(|c| c.is_ascii_digit() || c == '_')
        && (t.contains('_') || (t.len() > 1 && t.starts_with('0')))
}

/// What in a YAML value go-yaml v2 (kube-apiserver) reads differently from serde_yaml.
fn yaml_1_1_only(v: &serde_yaml::Value) -> Option<&'static str> {
    use serde_yaml::Value;
    const BOOLS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    match v {
        Value::Tagged(_) => Some("tags"),
        // A quoted "yes" is a string to both; serde_yaml does not say which this was, so
        // both are refused.
        Value::String(s) if BOOLS.contains(&s.as_str()) => Some(BOOL_WORDS),
        Value::String(s) if yaml_1_1_number(s) => Some(NUMBER_FORMS),
        Value::Sequence(items) => items.iter().find_map(yaml_1_1_only),
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            if k.as_str() == Some("<<") {
                Some("merge keys (<<)")
            } else {
                yaml_1_1_only(k).or_else(|| yaml_1_1_only(v))
            }
        }),
        _ => None,
    }
}

/// Parses a request body into the object policy conditions see, by its
/// `Content-Type`: JSON (`application/json`, `application/merge-patch+json`,
/// `application/strategic-merge-patch+json`, `application/json-patch+json`)
/// or YAML (`application/apply-patch+yaml`, `application/yaml`, used by
/// server-side apply). An empty body is `None`.
///
/// `application/vnd.kubernetes.protobuf` is read with `kube_request::protobuf` in strict mode:
/// the kinds kubectl's typed writes send, and only fields it knows. Anything else is an
/// error: the policy cannot see into it, so the gateway should refuse the write rather than
/// let conditions run against `null`.
pub fn parse_object(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<serde_json::Value>, PolicyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media == "application/vnd.kubernetes.protobuf" {
        // kubectl 1.32+ sends typed writes (`kubectl create deployment|job|role|...`) as
        // protobuf. Read strictly: a field the table does not know (a probe, an emptyDir
        // volume) makes the body unreadable rather than invisible to the rules.
        // A kind it does not know is only unreadable (refused where the guardrails read the
        // object); a known kind that does not decode strictly is refused everywhere: it could
        // be a body shaped to look harmless, and rules guarded by `object != null` would skip it.
        return match kube_request::protobuf::decode(body, kube_request::protobuf::Mode::Strict) {
            Ok(v) => Ok(Some(v)),
            Err(e @ kube_request::protobuf::ProtobufError::UnknownKind(_)) => {
                Err(PolicyError::Body(e.to_string()))
            }
            Err(e) => Err(PolicyError::Ambiguous(format!(
                "a protobuf body Airlock cannot read exactly: {e}"
            ))),
        };
    }
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| PolicyError::Body(format!("not valid JSON: {e}")))?;
        // serde_json keeps the last of a repeated key; kube-apiserver's decoder merges both
        // into the same struct, so `securityContext` twice would hide `privileged`.
        kube_request::unique_keys(body).map_err(|e| {
            PolicyError::Ambiguous(format!(
                "a JSON body with a repeated key cannot be inspected by policy: {e}"
            ))
        })?;
        if media == "application/json-patch+json" && k8s::patch_moves_values(&value) {
            // The value `move`/`copy` writes comes from the stored object or from earlier
            // operations, so the patch alone does not show what the object will hold (a
            // `true` copied into `securityContext.privileged`).
            return Err(PolicyError::Ambiguous(
                "a JSON patch with move or copy operations cannot be inspected by policy; \
                 write the values with add or replace"
                    .into(),
            ));
        }
        return Ok(Some(value));
    }
    if media == "application/yaml" || media.ends_with("+yaml") {
        // JSON is YAML, and what kubectl sends (server-side apply included): read it as JSON.
        if let Ok(value) = serde_json::from_slice(body) {
            return Ok(Some(value));
        }
        let value: serde_yaml::Value = serde_yaml::from_slice(body)
            .map_err(|e| PolicyError::Body(format!("not valid YAML: {e}")))?;
        // kube-apiserver decodes YAML with go-yaml v2 (YAML 1.1): `<<` merge keys are merged
        // in order and recursively, tags on mappings are ignored, and `yes`/`on`/`y` are
        // `true`. serde_yaml (YAML 1.2) reads all three differently, so a body using them
        // would mean one thing to the guardrails and another to the cluster.
        if let Some(why) = yaml_1_1_only(&value) {
            let message = format!(
                "{why} in a YAML body are read differently by the cluster; \
                 send JSON, or YAML without them"
            );
            // `yes` is also an ordinary string (a ConfigMap value): refused where the
            // guardrails read the object, like an unreadable body. Merge keys and tags change
            // the object's shape: refused everywhere.
            return Err(if why == BOOL_WORDS || why == NUMBER_FORMS {
                PolicyError::Body(message)
            } else {
                PolicyError::Ambiguous(message)
            });
        }
        return serde_json::to_value(value)
            .map(Some)
            .map_err(|e| PolicyError::Body(format!("YAML that is not JSON: {e}")));
    }
    Err(PolicyError::Body(format!(
        "content type {media:?} cannot be inspected by policy"
    )))
}
