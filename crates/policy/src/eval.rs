//! Evaluating a policy against one request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use authn::Identity;
use kube_request::RequestInfo;
use serde::Serialize;

use crate::cel::{Outcome, Scope};
use crate::policy::{
    Action, ApprovalRequirement, DefaultAction, GrantLimit, Matcher, Policy, Rule, RuleKind,
};

/// Everything a policy may look at for one request.
#[derive(Debug, Clone)]
pub struct RequestContext<'a> {
    /// The cluster the request is for (the `/clusters/{name}` route).
    pub cluster: &'a str,
    /// The Kubernetes request attributes.
    pub info: &'a RequestInfo,
    /// Who sent it.
    pub identity: &'a Identity,
    /// The HTTP method as on the wire (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Selected request headers, names lowercase (`content-type`,
    /// `user-agent`, any `impersonate-*` the client sent, ...). Which ones
    /// is the gateway's choice; never credentials.
    pub headers: BTreeMap<String, String>,
    /// The parsed request body of create, update and patch requests (see
    /// [`crate::parse_object`]); `None` otherwise.
    pub object: Option<&'a serde_json::Value>,
}

/// The final outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Forward the request.
    Allow,
    /// Refuse it: 403 with [`Decision::message`].
    Deny,
    /// Hold it until [`Decision::approvals`] are met.
    Approve,
}

/// Why the verdict is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Basis {
    /// Matching rules decided (the first one of the winning action is named).
    Rule {
        /// The rule.
        rule: Arc<str>,
    },
    /// No rule decided and the identity is in an agent group: denied.
    AgentDefault {
        /// The agent group the identity is in.
        group: String,
    },
    /// No rule decided: the policy's `default`.
    Default,
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedRule {
    /// Its name.
    pub name: Arc<str>,
    /// Its action.
    pub action: Action,
    /// Set when the rule matched only because its condition failed to
    /// evaluate (fail closed: `deny` and `approve` rules match on error).
    pub condition_error: Option<String>,
}

/// A condition that failed to evaluate, whether or not its rule then matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionError {
    /// The rule.
    pub rule: Arc<str>,
    /// What went wrong, without any value from the request.
    pub error: String,
}

/// The policy's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// Why.
    pub basis: Basis,
    /// For humans and the audit log. For a denial this is the `message` of
    /// the Kubernetes `Status` the gateway returns, naming the rule and the
    /// reason.
    pub message: String,
    /// What must be approved, one entry per matching `approve` rule; all of
    /// them must be met. Empty unless the verdict is `approve`.
    pub approvals: Vec<ApprovalRequirement>,
    /// Every rule that matched, in policy order.
    pub matched: Vec<MatchedRule>,
    /// Masking profiles of matching `mask` rules, in policy order, without
    /// duplicates.
    pub mask_profiles: Vec<String>,
    /// Conditions that could not be evaluated.
    pub condition_errors: Vec<ConditionError>,
}

// === impl Decision ===

impl Decision {
    /// How long to hold the request for approval: the longest hold of the
    /// requirements. `None` unless the verdict is `approve`.
    pub fn hold(&self) -> Option<Duration> {
        self.approvals.iter().map(|a| a.hold).max()
    }

    /// The grant limit that satisfies every requirement: the shortest
    /// duration and the scope kinds all of them allow. `None` unless the
    /// verdict is `approve`; `scopes` may come out empty, in which case only
    /// a one-off approval of this request is possible.
    pub fn grant_limit(&self) -> Option<GrantLimit> {
        let mut it = self.approvals.iter();
        let first = it.next()?.grant.clone();
        Some(it.fold(first, |acc, a| {
            GrantLimit {
                max_duration: acc.max_duration.min(a.grant.max_duration),
                scopes: acc
                    .scopes
                    .into_iter()
                    .filter(|s| a.grant.scopes.contains(s))
                    .collect(),
            }
        }))
    }

    /// Whether two decisions have the same effect: verdict, approval
    /// requirements (ignoring which rule set them) and mask profiles.
    pub fn same_effect(&self, other: &Decision) -> bool {
        fn key(d: &Decision) -> Vec<(Vec<String>, u32, Duration, GrantLimit)> {
            let mut v: Vec<_> = d
                .approvals
                .iter()
                .map(|a| (a.approvers.clone(), a.quorum, a.hold, a.grant.clone()))
                .collect();
            v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            v.dedup();
            v
        }
        self.verdict == other.verdict
            && self.mask_profiles == other.mask_profiles
            && key(self) == key(other)
    }
}

// === impl Policy (evaluation) ===

impl Policy {
    /// Decides one request. Every rule is considered; `deny` beats
    /// `approve` beats `allow`; when none of those match, members of an
    /// agent group are denied and everyone else gets the policy's `default`.
    pub fn evaluate(&self, ctx: &RequestContext<'_>) -> Decision {
        let mut scope: Option<Scope> = None;
        let mut matched = Vec::new();
        let mut condition_errors = Vec::new();
        let mut first_deny: Option<(&Rule, Option<String>)> = None;
        let mut approvals = Vec::new();
        let mut first_allow: Option<&Rule> = None;
        let mut mask_profiles: Vec<String> = Vec::new();

        let key = ctx
            .info
            .is_resource_request
            .then_some((ctx.info.resource.as_str(), ctx.info.subresource.as_str()));
        for rule in self.index.candidates(key).filter_map(|i| self.rules.get(i)) {
            if !rule.matcher.matches(ctx) {
                continue;
            }
            let mut error = None;
            if let Some(condition) = &rule.condition {
                let scope = scope.get_or_insert_with(|| Scope::new(ctx, self.vars));
                match scope.eval(&condition.program) {
                    Outcome::True => {}
                    Outcome::False => continue,
                    Outcome::Error(e) => {
                        condition_errors.push(ConditionError {
                            rule: rule.name.clone(),
                            error: e.clone(),
                        });
                        // Fail closed: a restricting rule whose condition
                        // cannot be evaluated applies; a permitting one
                        // does not.
                        match rule.kind {
                            RuleKind::Deny(_) | RuleKind::Approve(_) => error = Some(e),
                            RuleKind::Allow | RuleKind::Mask(_) => continue,
                        }
                    }
                }
            }
            matched.push(MatchedRule {
                name: rule.name.clone(),
                action: rule.kind.action(),
                condition_error: error.clone(),
            });
            match &rule.kind {
                RuleKind::Deny(_) => {
                    if first_deny.is_none() {
                        first_deny = Some((rule, error));
                    }
                }
                RuleKind::Approve(req) => approvals.push(req.clone()),
                RuleKind::Allow => {
                    first_allow.get_or_insert(rule);
                }
                RuleKind::Mask(profile) => {
                    if !mask_profiles.contains(profile) {
                        mask_profiles.push(profile.clone());
                    }
                }
            }
        }

        let (verdict, basis, message) = if let Some((rule, error)) = first_deny {
            let reason = match &rule.kind {
                RuleKind::Deny(m) => m.as_str(),
                _ => "",
            };
            let mut message = format!("denied by airlock policy rule \"{}\": {reason}", rule.name);
            if error.is_some() {
                message.push_str(" (its condition could not be evaluated, so it applies)");
            }
            approvals.clear();
            (
                Verdict::Deny,
                Basis::Rule {
                    rule: rule.name.clone(),
                },
                message,
            )
        } else if let Some(first) = approvals.first() {
            let mut message = format!(
                "approval required by airlock policy rule \"{}\"",
                first.rule
            );
            if let Some(reason) = &first.reason {
                message.push_str(": ");
                message.push_str(reason);
            }
            if approvals.len() > 1 {
                message.push_str(&format!(" (and {} more rules)", approvals.len() - 1));
            }
            let hold = approvals.iter().map(|a| a.hold).max().unwrap_or_default();
            message.push_str(&format!(
                "; held up to {} for approval",
                crate::duration::format(hold)
            ));
            (
                Verdict::Approve,
                Basis::Rule {
                    rule: first.rule.clone(),
                },
                message,
            )
        } else if let Some(rule) = first_allow {
            (
                Verdict::Allow,
                Basis::Rule {
                    rule: rule.name.clone(),
                },
                format!("allowed by airlock policy rule \"{}\"", rule.name),
            )
        } else if let Some(group) = self.agent_group_of(ctx.identity) {
            (
                Verdict::Deny,
                Basis::AgentDefault { group: group.to_string() },
                format!(
                    "denied by airlock policy: no rule allows this request, and members of agent group \"{group}\" are denied by default"
                ),
            )
        } else {
            match self.default {
                DefaultAction::Allow => (
                    Verdict::Allow,
                    Basis::Default,
                    "allowed by airlock policy default (no rule matched)".to_string(),
                ),
                DefaultAction::Deny => (
                    Verdict::Deny,
                    Basis::Default,
                    "denied by airlock policy: no rule allows this request".to_string(),
                ),
            }
        };
        Decision {
            verdict,
            basis,
            message,
            approvals,
            matched,
            mask_profiles,
            condition_errors,
        }
    }

    fn agent_group_of<'i>(&self, identity: &'i Identity) -> Option<&'i str> {
        if self.agent_groups.is_empty() {
            return None;
        }
        identity
            .groups
            .iter()
            .map(String::as_str)
            .find(|g| self.agent_groups.matches(g))
    }
}

/// Request attributes an access review leaves open ([`Matcher::matches_with`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Open {
    pub verb: bool,
    pub group: bool,
    /// The resource or the subresource.
    pub resource: bool,
    pub namespace: bool,
    pub name: bool,
    /// The headers the call will carry.
    pub headers: bool,
}

// === impl Matcher ===

impl Matcher {
    /// The attribute checks, cheapest and most selective first.
    pub(crate) fn matches(&self, ctx: &RequestContext<'_>) -> bool {
        self.matches_with(ctx, &Open::default())
    }

    /// Whether the rule places no constraint on the attributes `open` names, so that
    /// matching the question's literal values (`*`, `""`) means matching every value.
    pub(crate) fn ignores(&self, open: &Open) -> bool {
        (!open.verb || self.verbs.is_unconstrained())
            && (!open.group || self.api_groups.is_unconstrained())
            && (!open.resource
                || self.resources.is_empty()
                || self.resources.iter().any(|r| r.everything))
            && (!open.namespace || self.namespaces.is_unconstrained())
            && (!open.name || self.names.is_unconstrained())
            && (!open.headers || self.headers.is_empty())
    }

    /// Whether the rule matches some request with `ctx`'s attributes, where the attributes
    /// `open` names may take any value (an access review's `*`, or no namespace or name).
    pub(crate) fn matches_with(&self, ctx: &RequestContext<'_>, open: &Open) -> bool {
        let info = ctx.info;
        if !open.verb && !self.verbs.matches(&info.verb) {
            return false;
        }
        if !self.resources.is_empty() {
            if !info.is_resource_request
                || !(open.resource
                    || self
                        .resources
                        .iter()
                        .any(|r| r.matches(&info.resource, &info.subresource)))
            {
                return false;
            }
        } else if !self.paths.is_empty()
            && (info.is_resource_request || !self.paths.matches(&info.path))
        {
            return false;
        }
        (open.group || self.api_groups.matches(&info.api_group))
            && (open.namespace || self.namespaces.matches(&info.namespace))
            && (open.name || self.names.matches(&info.name))
            && self.clusters.matches(ctx.cluster)
            && self.users.matches(&ctx.identity.user)
            && self
                .groups
                .matches_any(ctx.identity.groups.iter().map(String::as_str))
            && (open.headers
                || self.headers.is_empty()
                || ctx.headers.keys().any(|h| self.headers.matches(h)))
            && (self.client_ids.is_unconstrained()
                || ctx
                    .identity
                    .client_id
                    .as_deref()
                    .is_some_and(|c| self.client_ids.matches(c)))
    }
}
