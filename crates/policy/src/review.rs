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

use crate::eval::Open;
use crate::policy::{Rule, RuleKind};
use crate::{ApprovalRequirement, Policy, RequestContext, Verdict};

/// The policy's reading of one access review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewAnswer {
    /// A rule (or the agent default) refuses every such call, whatever its body.
    Denied(String),
    /// Every such call is held for approval (or denied), whatever its body.
    Held(String),
    /// The named rule denies or holds some such calls and not others: it reads the object
    /// or headers a call sends, or a namespace, name or `*` the question leaves open.
    Depends(String),
    /// The named `allow` rule allows only some such calls (it has a condition, or names a
    /// namespace, name or header); nothing else allows the rest.
    PartlyAllowed(String),
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
            api_prefix: if group.is_empty() { "api" } else { "apis" }.to_owned(),
            api_group: group,
            api_version: text(r, "version"),
            namespace: text(r, "namespace"),
            subresource: text(r, "subresource"),
            name: text(r, "name"),
            resource,
            verb,
            ..RequestInfo::default()
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
        ..RequestInfo::default()
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
    /// Decides a call with the attributes `info`, as an access review asks: without a body or
    /// headers, and for every value of what the question leaves open (`*` for the verb, group
    /// or resource; no namespace or name). Conditions are not evaluated: a rule with one
    /// depends on the call. Rules on headers are left out: they judge what a client sends
    /// (impersonation headers), not the call. See [`ReviewAnswer`].
    pub fn review(
        &self,
        cluster: &str,
        identity: &Identity,
        info: &RequestInfo,
        method: &str,
    ) -> ReviewAnswer {
        let ctx = RequestContext {
            cluster,
            info,
            identity,
            method,
            headers: BTreeMap::new(),
            object: None,
        };
        let open = Open {
            verb: info.verb == "*",
            group: info.api_group == "*",
            resource: info.resource == "*" || info.subresource == "*",
            namespace: info.namespace.is_empty(),
            name: info.name.is_empty(),
            headers: true,
        };
        // For each action: the first rule that applies to every such call, and the first
        // that applies to some.
        let mut every: [Option<&Rule>; 3] = [None; 3];
        let mut some: [Option<&Rule>; 3] = [None; 3];
        for rule in &self.rules {
            let slot = match rule.kind {
                RuleKind::Deny(_) => 0,
                RuleKind::Approve(_) => 1,
                RuleKind::Allow => 2,
                RuleKind::Mask(_) => continue,
            };
            if !rule.matcher.matches_with(&ctx, &open) {
                continue;
            }
            // A rule on headers judges what a client sends (impersonation headers), not the
            // call: a deny or approve one is left out, an allow one allows only some calls.
            let on_headers = !rule.matcher.headers.is_empty();
            if on_headers && slot != 2 {
                continue;
            }
            let all = rule.condition.is_none()
                && rule.matcher.matches(&ctx)
                && rule.matcher.ignores(&open);
            let which = if all { &mut every } else { &mut some };
            which[slot].get_or_insert(rule);
        }
        let depends = |r: &Rule| ReviewAnswer::Depends(r.name.to_string());
        if let Some(r) = every[0] {
            let reason = match &r.kind {
                RuleKind::Deny(m) => m.as_str(),
                _ => "",
            };
            return ReviewAnswer::Denied(format!(
                "denied by airlock policy rule \"{}\": {reason}",
                r.name
            ));
        }
        if let Some(r) = every[1] {
            let mut message = format!("approval required by airlock policy rule \"{}\"", r.name);
            if let RuleKind::Approve(ApprovalRequirement {
                reason: Some(reason),
                ..
            }) = &r.kind
            {
                message.push_str(": ");
                message.push_str(reason);
            }
            return ReviewAnswer::Held(message);
        }
        if let Some(r) = some[0].or(some[1]) {
            return depends(r);
        }
        if every[2].is_some() {
            return ReviewAnswer::Allowed;
        }
        if let Some(r) = some[2] {
            return ReviewAnswer::PartlyAllowed(r.name.to_string());
        }
        let d = self.evaluate(&ctx);
        match d.verdict {
            Verdict::Allow => ReviewAnswer::Allowed,
            _ => ReviewAnswer::Denied(d.message),
        }
    }
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
            (attrs("get", "apps", "deployments", "", "shop"), "allowed"),
            (attrs("create", "", "pods", "exec", "shop"), "allowed"),
            (
                attrs("create", "", "serviceaccounts", "token", "shop"),
                "denied",
            ),
            (
                attrs("create", "", "serviceaccounts", "token", ""),
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
            // Held whatever the role grants (a role granting `escalate` is denied instead).
            (
                attrs("create", "rbac.authorization.k8s.io", "roles", "", "shop"),
                "held",
            ),
            // Rules whose conditions read the object hold some such calls.
            (
                attrs("create", "apps", "deployments", "", "shop"),
                "depends",
            ),
            (
                attrs("patch", "apps", "deployments", "scale", "shop"),
                "depends",
            ),
            // Every namespace (`-A`): exec is held in the protected ones.
            (attrs("create", "", "pods", "exec", ""), "depends"),
            // `*`: some resources or verbs are always denied, others are not.
            (attrs("create", "", "*", "", "shop"), "depends"),
            (
                attrs("*", "", "serviceaccounts", "token", "shop"),
                "depends",
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
                ReviewAnswer::Depends(_) => "depends",
                ReviewAnswer::PartlyAllowed(_) => "partly",
                ReviewAnswer::Allowed => "allowed",
            };
            assert_eq!(got, want, "{spec}");
        }
    }

    #[test]
    fn rules_with_conditions_depend_on_the_call() {
        let p = Policy::from_yaml(
            "agent_groups: [ai-agents]\nrules:\n  - name: no-big\n    match: {resources: [deployments]}\n    condition: object.spec.replicas > 10\n    action: deny\n    message: too big\n  - name: reads\n    match: {verbs: [get, list]}\n    action: allow\n  - name: small-ok\n    match: {resources: [configmaps]}\n    condition: lookup(object, 'data') == null\n    action: allow\n",
        )
        .unwrap();
        assert_eq!(
            answer(&p, attrs("create", "apps", "deployments", "", "shop")),
            ReviewAnswer::Depends("no-big".into())
        );
        assert_eq!(
            answer(&p, attrs("get", "", "pods", "", "shop")),
            ReviewAnswer::Allowed
        );
        // Only a conditional allow: the agent default denies the calls it does not allow,
        // so the answer is neither yes nor no.
        assert_eq!(
            answer(&p, attrs("create", "", "configmaps", "", "shop")),
            ReviewAnswer::PartlyAllowed("small-ok".into())
        );
        // Nothing allows it at all.
        assert!(matches!(
            answer(&p, attrs("delete", "", "pods", "", "shop")),
            ReviewAnswer::Denied(m) if m.contains("no rule allows")
        ));
    }

    #[test]
    fn literal_matches_of_open_attributes_are_not_every_call() {
        // `namespaces: [""]` matches the literal "" of `-A`, and `?` the literal `*`: neither
        // covers every namespace or resource.
        let p = Policy::from_yaml(
            "agent_groups: [ai-agents]\nrules:\n  - name: cluster-scoped-writes\n    match: {namespaces: [''], verbs: [create, delete]}\n    action: deny\n    message: no\n  - name: no-named-gets\n    match: {names: [''], verbs: [get]}\n    action: deny\n    message: no\n  - name: one-letter\n    match: {resources: ['?'], verbs: [patch]}\n    action: deny\n    message: no\n  - name: list-cluster\n    match: {namespaces: [''], verbs: [list]}\n    action: allow\n  - name: kubectl-writes\n    match: {headers: [kubectl-command], verbs: [update]}\n    action: allow\n  - name: rest\n    match: {verbs: [create, delete, get, patch]}\n    action: allow\n",
        )
        .unwrap();
        let depends = |r: &str| ReviewAnswer::Depends(r.into());
        assert_eq!(
            answer(&p, attrs("create", "", "configmaps", "", "")),
            depends("cluster-scoped-writes")
        );
        assert_eq!(
            answer(&p, attrs("get", "", "pods", "", "shop")),
            depends("no-named-gets")
        );
        assert_eq!(
            answer(&p, attrs("patch", "", "*", "", "shop")),
            depends("one-letter")
        );
        assert_eq!(
            answer(&p, attrs("list", "", "pods", "", "")),
            ReviewAnswer::PartlyAllowed("list-cluster".into())
        );
        // An allow rule on a header allows the calls that carry it.
        assert_eq!(
            answer(&p, attrs("update", "", "configmaps", "", "shop")),
            ReviewAnswer::PartlyAllowed("kubectl-writes".into())
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
