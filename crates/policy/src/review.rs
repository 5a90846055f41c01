//! What the policy says about an access review: `kubectl auth can-i`.
//!
//! kubectl asks the cluster a `SelfSubjectAccessReview`, which kube-apiserver answers from RBAC
//! alone. The gateway forwards it, then lays this module's answer over the cluster's, so that
//! an agent planning its next call learns that Airlock denies or holds it. The review names
//! attributes only, never an object, so a rule whose condition reads the object cannot be
//! decided here: such a rule is reported as "depends on the object", never as a denial.

use std::collections::BTreeMap;

use authn::Identity;
use kube_request::RequestInfo;
use serde_json::Value;

use crate::{Action, Basis, Policy, RequestContext, Verdict};

/// The policy's reading of one access review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewAnswer {
    /// A rule (or the agent default) refuses every such call, whatever its body.
    Denied(String),
    /// Such a call is held for approval, whatever its body.
    Held(String),
    /// A rule that denies or holds depends on the object sent; the attributes alone allow it.
    DependsOnObject(String),
    /// The policy allows such calls.
    Allowed,
}

/// The attributes of a `SelfSubjectAccessReview` (or any `*SubjectAccessReview`) `spec`:
/// `resourceAttributes` or `nonResourceAttributes`. `None` when neither is there.
pub fn review_attributes(spec: &Value) -> Option<(RequestInfo, &'static str)> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let verb = text(r, "verb");
        let group = text(r, "group");
        let resource = text(r, "resource");
        if verb.is_empty() || resource.is_empty() {
            return None;
        }
        let info = RequestInfo {
            is_resource_request: true,
            path: String::new(),
            api_prefix: if group.is_empty() { "api" } else { "apis" }.to_owned(),
            api_group: group,
            api_version: text(r, "version"),
            namespace: text(r, "namespace"),
            subresource: text(r, "subresource"),
            name: text(r, "name"),
            parts: Vec::new(),
            field_selector: String::new(),
            label_selector: String::new(),
            resource,
            verb,
        };
        let method = method_of(&info.verb);
        return Some((info, method));
    }
    let n = spec
        .get("nonResourceAttributes")
        .filter(|v| v.is_object())?;
    let (path, verb) = (text(n, "path"), text(n, "verb"));
    if path.is_empty() || verb.is_empty() {
        return None;
    }
    let method = method_of(&verb);
    let info = RequestInfo {
        is_resource_request: false,
        path,
        verb,
        api_prefix: String::new(),
        api_group: String::new(),
        api_version: String::new(),
        namespace: String::new(),
        resource: String::new(),
        subresource: String::new(),
        name: String::new(),
        parts: Vec::new(),
        field_selector: String::new(),
        label_selector: String::new(),
    };
    Some((info, method))
}

/// The HTTP method kube-apiserver maps to a verb; empty for verbs no request carries
/// (`use`, `bind`, `escalate`, `impersonate`, ...).
fn method_of(verb: &str) -> &'static str {
    match verb {
        "get" | "list" | "watch" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => "",
    }
}

// === impl Policy (reviews) ===

impl Policy {
    /// Decides a call with the attributes `info`, as an access review asks, without a body or
    /// headers. See [`ReviewAnswer`].
    pub fn review(
        &self,
        cluster: &str,
        identity: &Identity,
        info: &RequestInfo,
        method: &str,
    ) -> ReviewAnswer {
        let d = self.evaluate(&RequestContext {
            cluster,
            info,
            identity,
            method,
            headers: BTreeMap::new(),
            object: None,
        });
        // A rule that matched only because its condition could not be evaluated without the
        // object (fail closed) says nothing about the attributes.
        let decided = |action: Action| {
            d.matched
                .iter()
                .find(|m| m.action == action && m.condition_error.is_none())
        };
        let undecided = || {
            d.matched
                .iter()
                .find(|m| m.condition_error.is_some())
                .map(|m| m.name.to_string())
        };
        match d.verdict {
            Verdict::Deny => match (&d.basis, decided(Action::Deny)) {
                (Basis::AgentDefault { .. } | Basis::Default, _) | (_, Some(_)) => {
                    ReviewAnswer::Denied(d.message)
                }
                (Basis::Rule { rule }, None) => match decided(Action::Approve) {
                    Some(_) => ReviewAnswer::Held(held_message(&d.message)),
                    None => ReviewAnswer::DependsOnObject(rule.to_string()),
                },
            },
            Verdict::Approve => match decided(Action::Approve) {
                Some(_) => ReviewAnswer::Held(held_message(&d.message)),
                None => ReviewAnswer::DependsOnObject(undecided().unwrap_or_default()),
            },
            Verdict::Allow => ReviewAnswer::Allowed,
        }
    }
}

/// An approval decision's message without the hold's fine print.
fn held_message(message: &str) -> String {
    message
        .split("; held up to")
        .next()
        .unwrap_or(message)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent() -> Identity {
        Identity {
            user: "agent-1".into(),
            uid: None,
            groups: vec!["ai-agents".into()],
            client_id: None,
            session_id: None,
            issuer: None,
            expires_at: None,
        }
    }

    fn answer(policy: &Policy, spec: Value) -> ReviewAnswer {
        let (info, method) = review_attributes(&spec).expect("attributes");
        policy.review("prod", &agent(), &info, method)
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, ns: &str) -> Value {
        json!({"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
            "subresource": sub, "namespace": ns}})
    }

    #[test]
    fn the_baseline_read_from_attributes() {
        let p =
            Policy::from_yaml("agent_groups: [ai-agents]\npresets: [ai-agent-baseline]\n").unwrap();
        let cases = [
            (attrs("list", "", "pods", "", "shop"), "allowed"),
            (
                attrs("create", "apps", "deployments", "", "shop"),
                "allowed",
            ),
            (
                attrs("create", "", "serviceaccounts", "token", "shop"),
                "denied",
            ),
            (attrs("create", "", "pods", "proxy", "shop"), "denied"),
            (
                attrs("bind", "rbac.authorization.k8s.io", "clusterroles", "", ""),
                "denied",
            ),
            (
                attrs(
                    "create",
                    "certificates.k8s.io",
                    "certificatesigningrequests",
                    "",
                    "",
                ),
                "denied",
            ),
            (attrs("delete", "", "namespaces", "", ""), "held"),
            (attrs("create", "", "secrets", "", "shop"), "held"),
            (attrs("create", "", "pods", "exec", "kube-system"), "held"),
            (attrs("create", "", "pods", "exec", "shop"), "allowed"),
            // Conditions on the object: undecidable from attributes, so the calls that carry
            // no escalating object are allowed.
            (
                attrs("create", "rbac.authorization.k8s.io", "roles", "", "shop"),
                "held",
            ),
            (
                attrs("patch", "apps", "deployments", "scale", "shop"),
                "allowed",
            ),
            // Nothing allows it: the agent default.
            (
                attrs("use", "policy", "podsecuritypolicies", "", ""),
                "denied",
            ),
            (
                json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
                "allowed",
            ),
            (
                json!({"nonResourceAttributes": {"path": "/logs", "verb": "post"}}),
                "denied",
            ),
        ];
        for (spec, want) in cases {
            let got = match answer(&p, spec.clone()) {
                ReviewAnswer::Denied(_) => "denied",
                ReviewAnswer::Held(_) => "held",
                ReviewAnswer::DependsOnObject(_) => "depends",
                ReviewAnswer::Allowed => "allowed",
            };
            assert_eq!(got, want, "{spec}");
        }
    }

    #[test]
    fn a_rule_that_cannot_decide_without_the_object_is_not_a_denial() {
        let p = Policy::from_yaml(
            "agent_groups: [ai-agents]\nrules:\n  - name: no-big\n    match: {resources: [deployments]}\n    condition: object.spec.replicas > 10\n    action: deny\n    message: too big\n  - name: ok\n    match: {verbs: ['*']}\n    action: allow\n",
        )
        .unwrap();
        assert_eq!(
            answer(&p, attrs("create", "apps", "deployments", "", "shop")),
            ReviewAnswer::DependsOnObject("no-big".into())
        );
        assert_eq!(
            answer(&p, attrs("get", "", "pods", "", "shop")),
            ReviewAnswer::Allowed
        );
    }

    #[test]
    fn reviews_without_attributes_are_not_read() {
        for spec in [
            json!({}),
            json!({"resourceAttributes": {"verb": "get"}}),
            json!({"resourceAttributes": "x"}),
            json!({"nonResourceAttributes": {"path": "/x"}}),
        ] {
            assert!(review_attributes(&spec).is_none(), "{spec}");
        }
    }
}
