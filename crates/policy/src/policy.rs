//! The validated policy, and loading it from YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::Value as Yaml;

use crate::glob::{Glob, GlobSet};
use crate::raw::{RawApproval, RawPolicy, RawPreset, RawPresetRef, RawRule};
use crate::{cel, duration, presets, PolicyError};

/// How long an approval request is held open, waiting for approvers, when a
/// rule does not say.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(50);
/// The longest a grant may last when a rule does not say.
pub const DEFAULT_MAX_GRANT: Duration = Duration::from_secs(3600);

/// What happens to a request that no `deny`, `approve` or `allow` rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Forward it.
    Allow,
    /// Refuse it (the default).
    Deny,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the request through (unless a `deny` or `approve` rule matches too).
    Allow,
    /// Refuse the request, with the rule's message.
    Deny,
    /// Hold the request until approvers approve it (unless a `deny` rule matches too).
    Approve,
    /// Attach a masking profile to the response; does not decide anything.
    Mask,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Approve => "approve",
            Action::Mask => "mask",
        })
    }
}

/// What an approval may be turned into: how far a grant given by approvers
/// may reach beyond the request that asked for it. The approval workflow
/// (gateway, store) offers approvers only the kinds a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantScope {
    /// This one request only.
    Request,
    /// The same verb on the same object (resource, namespace, name), by the
    /// same user, until the grant expires.
    Resource,
    /// The same verb and resource anywhere in the same namespace, by the
    /// same user, until the grant expires.
    Namespace,
    /// Every request of the same session that this rule would hold, until
    /// the grant expires.
    Session,
}

impl GrantScope {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "request" => Self::Request,
            "resource" => Self::Resource,
            "namespace" => Self::Namespace,
            "session" => Self::Session,
            _ => return None,
        })
    }
}

/// How far a grant may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantLimit {
    /// The longest a grant may last.
    pub max_duration: Duration,
    /// The scope kinds approvers may choose from; never empty.
    pub scopes: Vec<GrantScope>,
}

impl Default for GrantLimit {
    fn default() -> Self {
        Self {
            max_duration: DEFAULT_MAX_GRANT,
            scopes: vec![GrantScope::Request],
        }
    }
}

/// What an `approve` rule requires before the request may go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalRequirement {
    /// The rule that asks for approval.
    pub rule: Arc<str>,
    /// Why, for approvers and for the agent (the rule's `message`).
    pub reason: Option<String>,
    /// Groups whose members may approve (globs).
    pub approvers: Vec<String>,
    /// How many distinct approvers must approve.
    pub quorum: u32,
    /// How long to hold the request waiting for approval before refusing it.
    pub hold: Duration,
    /// How far a grant made from this approval may reach.
    pub grant: GrantLimit,
}

/// A loaded, validated policy. Immutable and cheap to share: the gateway
/// keeps one behind an `ArcSwap` and replaces it on reload, keeping the old
/// one if the new file does not load.
#[derive(Debug)]
pub struct Policy {
    pub(crate) default: DefaultAction,
    pub(crate) agent_groups: GlobSet,
    pub(crate) rules: Vec<Rule>,
    pub(crate) index: RuleIndex,
    pub(crate) vars: crate::cel::Vars,
}

/// Which rules can match a resource request, by its exact resource and
/// subresource, so a policy of a thousand rules about different resources
/// does not test every one of them. Rules without `resources`, or with a
/// glob among them, are candidates for every request.
#[derive(Debug, Default)]
pub(crate) struct RuleIndex {
    /// Rule positions, ascending.
    pub always: Vec<usize>,
    /// resource -> subresource ("" for none) -> rule positions, ascending.
    pub by_resource:
        std::collections::HashMap<String, std::collections::HashMap<String, Vec<usize>>>,
}

impl RuleIndex {
    fn new(rules: &[Rule]) -> Self {
        let mut index = RuleIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            let exact: Option<Vec<(&str, &str)>> = if rule.matcher.resources.is_empty() {
                None
            } else {
                rule.matcher
                    .resources
                    .iter()
                    .map(ResourcePattern::exact)
                    .collect()
            };
            match exact {
                None => index.always.push(i),
                Some(keys) => {
                    for (resource, sub) in keys {
                        let ids = index
                            .by_resource
                            .entry(resource.to_string())
                            .or_default()
                            .entry(sub.to_string())
                            .or_default();
                        if ids.last() != Some(&i) {
                            ids.push(i);
                        }
                    }
                }
            }
        }
        index
    }

    /// The candidate rules for a request, in policy order.
    pub fn candidates<'a>(
        &'a self,
        resource: Option<(&str, &str)>,
    ) -> impl Iterator<Item = usize> + 'a {
        let indexed: &'a [usize] = resource
            .and_then(|(r, s)| self.by_resource.get(r)?.get(s))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        Merge {
            a: &self.always,
            b: indexed,
        }
    }
}

/// Merges two ascending lists.
struct Merge<'a> {
    a: &'a [usize],
    b: &'a [usize],
}

impl Iterator for Merge<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(a), Some(b)) => a <= b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let (head, rest) = if take_a {
            self.a.split_first()?
        } else {
            self.b.split_first()?
        };
        if take_a {
            self.a = rest;
        } else {
            self.b = rest;
        }
        Some(*head)
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub name: Arc<str>,
    pub description: Option<String>,
    pub matcher: Matcher,
    pub condition: Option<Condition>,
    pub kind: RuleKind,
}

pub(crate) struct Condition {
    pub source: String,
    pub program: ::cel::Program,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

#[derive(Debug)]
pub(crate) enum RuleKind {
    Allow,
    Deny(String),
    Approve(ApprovalRequirement),
    Mask(String),
}

impl RuleKind {
    pub fn action(&self) -> Action {
        match self {
            RuleKind::Allow => Action::Allow,
            RuleKind::Deny(_) => Action::Deny,
            RuleKind::Approve(_) => Action::Approve,
            RuleKind::Mask(_) => Action::Mask,
        }
    }
}

/// The attribute constraints of a rule; every given field must match.
#[derive(Debug, Default)]
pub(crate) struct Matcher {
    pub users: GlobSet,
    pub groups: GlobSet,
    pub client_ids: GlobSet,
    pub clusters: GlobSet,
    pub verbs: GlobSet,
    pub api_groups: GlobSet,
    /// Empty: any request. Otherwise resource requests only.
    pub resources: Vec<ResourcePattern>,
    pub namespaces: GlobSet,
    pub names: GlobSet,
    /// Empty: any request. Otherwise non-resource requests only.
    pub paths: GlobSet,
    /// Empty: any request. Otherwise requests carrying a header whose
    /// (lowercase) name matches.
    pub headers: GlobSet,
}

/// `pods`, `pods/exec`, `*/proxy`, `pods/*` or `*`.
#[derive(Debug)]
pub(crate) struct ResourcePattern {
    resource: Glob,
    /// `None`: the resource itself, no subresource (unless the whole pattern
    /// is `*`, which matches everything).
    subresource: Option<Glob>,
    pub(crate) everything: bool,
}

impl ResourcePattern {
    /// The exact resource and subresource this pattern names, if it has no
    /// glob.
    fn exact(&self) -> Option<(&str, &str)> {
        let plain = |g: &Glob| !g.as_str().contains(['*', '?']);
        if self.everything || !plain(&self.resource) {
            return None;
        }
        match &self.subresource {
            None => Some((self.resource.as_str(), "")),
            Some(sub) if plain(sub) => Some((self.resource.as_str(), sub.as_str())),
            Some(_) => None,
        }
    }

    pub fn matches(&self, resource: &str, subresource: &str) -> bool {
        if self.everything {
            return true;
        }
        if !self.resource.matches(resource) {
            return false;
        }
        match &self.subresource {
            None => subresource.is_empty(),
            Some(sub) => !subresource.is_empty() && sub.matches(subresource),
        }
    }
}

// === impl Policy ===

impl Policy {
    /// Parses and validates a policy document. Errors name the rule (index
    /// and name) and the field.
    pub fn from_yaml(yaml: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = if yaml.trim().is_empty() {
            RawPolicy::default()
        } else {
            serde_yaml::from_str(yaml).map_err(|source| PolicyError::Yaml {
                context: "policy".to_string(),
                source,
            })?
        };
        build(raw)
    }

    /// Reads and loads a policy file: [`Policy::from_yaml`] on its contents.
    /// The only I/O in this crate.
    pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// What applies when no rule decides (for identities outside the agent groups).
    pub fn default_action(&self) -> DefaultAction {
        self.default
    }

    /// The agent group patterns.
    pub fn agent_groups(&self) -> impl Iterator<Item = &str> {
        self.agent_groups.patterns()
    }

    /// The rules in evaluation order (presets first): name, action and
    /// description.
    pub fn rules(&self) -> impl Iterator<Item = (&str, Action, Option<&str>)> {
        self.rules
            .iter()
            .map(|r| (&*r.name, r.kind.action(), r.description.as_deref()))
    }
}

fn invalid(location: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        location: location.to_string(),
        message: message.into(),
    }
}

fn build(raw: RawPolicy) -> Result<Policy, PolicyError> {
    let default = match raw.default.as_deref() {
        None | Some("deny") => DefaultAction::Deny,
        Some("allow") => DefaultAction::Allow,
        Some(other) => {
            return Err(invalid(
                "default",
                format!("must be allow or deny, not {other:?}"),
            ))
        }
    };
    let mut rules = Vec::new();
    let mut seen_presets = BTreeSet::new();
    for (i, preset) in raw.presets.into_iter().enumerate() {
        let (name, params, exclude) = match preset {
            RawPresetRef::Name(name) => (name, BTreeMap::new(), Vec::new()),
            RawPresetRef::Full(p) => (p.name, p.params, p.exclude),
        };
        let location = format!("presets[{i}] {name:?}");
        if !seen_presets.insert(name.clone()) {
            return Err(invalid(&location, "preset listed twice"));
        }
        for raw_rule in expand_preset(&location, &name, params, &exclude)? {
            let (rule_location, raw_rule) = raw_rule;
            rules.push(build_rule(&rule_location, raw_rule)?);
        }
    }
    for (i, raw_rule) in raw.rules.into_iter().enumerate() {
        let location = format!("rules[{i}] {:?}", raw_rule.name);
        rules.push(build_rule(&location, raw_rule)?);
    }
    let mut names = BTreeSet::new();
    for rule in &rules {
        if !names.insert(rule.name.clone()) {
            return Err(invalid(
                &format!("rule {:?}", &*rule.name),
                "rule name used twice (names must be unique across presets and rules)",
            ));
        }
    }
    let vars = rules
        .iter()
        .filter_map(|r| r.condition.as_ref())
        .fold(crate::cel::Vars::default(), |v, c| v.with(&c.program));
    Ok(Policy {
        default,
        agent_groups: GlobSet::new(&raw.agent_groups),
        index: RuleIndex::new(&rules),
        vars,
        rules,
    })
}

/// Expands a preset: its defaults overridden by `params`, `${param}`
/// placeholders substituted, `exclude`d rules dropped.
fn expand_preset(
    location: &str,
    name: &str,
    params: BTreeMap<String, Yaml>,
    exclude: &[String],
) -> Result<Vec<(String, RawRule)>, PolicyError> {
    let source = presets::source(name).ok_or_else(|| {
        invalid(
            location,
            format!("unknown preset (known: {})", presets::NAMES.join(", ")),
        )
    })?;
    let preset: RawPreset = serde_yaml::from_str(source).map_err(|source| PolicyError::Yaml {
        context: location.to_string(),
        source,
    })?;
    let mut values = preset.params;
    for (key, value) in params {
        let Some(default) = values.get(&key) else {
            let known: Vec<&str> = values.keys().map(String::as_str).collect();
            return Err(invalid(
                &format!("{location}: params.{key}"),
                format!("unknown parameter (known: {})", known.join(", ")),
            ));
        };
        if default.is_sequence() != value.is_sequence() {
            let want = if default.is_sequence() {
                "a list"
            } else {
                "a single value"
            };
            return Err(invalid(
                &format!("{location}: params.{key}"),
                format!("must be {want}"),
            ));
        }
        values.insert(key, value);
    }
    let mut out = Vec::new();
    let mut excluded: BTreeSet<&str> = exclude.iter().map(String::as_str).collect();
    for (i, mut rule) in preset.rules.into_iter().enumerate() {
        substitute(&mut rule, &values);
        let rule_name = rule
            .get("name")
            .and_then(Yaml::as_str)
            .unwrap_or("")
            .to_string();
        let rule_location = format!("{location}: rules[{i}] {rule_name:?}");
        if excluded.remove(rule_name.as_str()) {
            continue;
        }
        let raw: RawRule = serde_yaml::from_value(rule).map_err(|source| PolicyError::Yaml {
            context: rule_location.clone(),
            source,
        })?;
        out.push((rule_location, raw));
    }
    if let Some(missing) = excluded.into_iter().next() {
        return Err(invalid(
            &format!("{location}: exclude"),
            format!("the preset has no rule {missing:?}"),
        ));
    }
    Ok(out)
}

/// Replaces `"${name}"` strings: spliced into the list when both the place
/// and the parameter are lists, replaced whole otherwise.
fn substitute(node: &mut Yaml, params: &BTreeMap<String, Yaml>) {
    let param = |s: &str| {
        s.strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .and_then(|name| params.get(name))
    };
    match node {
        Yaml::String(s) => {
            if let Some(value) = param(s) {
                *node = value.clone();
            }
        }
        Yaml::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                match item.as_str().and_then(param) {
                    Some(Yaml::Sequence(values)) => out.extend(values.iter().cloned()),
                    _ => {
                        substitute(&mut item, params);
                        out.push(item);
                    }
                }
            }
            *items = out;
        }
        Yaml::Mapping(map) => {
            for (_, value) in map.iter_mut() {
                substitute(value, params);
            }
        }
        _ => {}
    }
}

fn build_rule(location: &str, raw: RawRule) -> Result<Rule, PolicyError> {
    if raw.name.trim().is_empty() {
        return Err(invalid(&format!("{location}: name"), "must not be empty"));
    }
    let name: Arc<str> = Arc::from(raw.name.as_str());
    let m = raw.matches;
    for (field, values) in [("verbs", &m.verbs)] {
        for v in values.iter() {
            if v != "*" && (v.is_empty() || !v.chars().all(|c| c.is_ascii_lowercase())) {
                return Err(invalid(
                    &format!("{location}: match.{field}"),
                    format!("{v:?} is not a verb (lowercase letters, or *)"),
                ));
            }
        }
    }
    let mut resources = Vec::new();
    for r in &m.resources {
        let mut parts = r.splitn(3, '/');
        let resource = parts.next().unwrap_or_default();
        let sub = parts.next();
        if parts.next().is_some() || resource.is_empty() || sub == Some("") {
            return Err(invalid(
                &format!("{location}: match.resources"),
                format!("{r:?} is not resource, resource/subresource, or a glob of them"),
            ));
        }
        resources.push(ResourcePattern {
            resource: Glob::new(resource),
            subresource: sub.map(Glob::new),
            everything: r == "*",
        });
    }
    if !resources.is_empty() && !m.paths.is_empty() {
        return Err(invalid(
            &format!("{location}: match"),
            "resources and paths exclude each other (a request is either a resource request or not)",
        ));
    }
    let matcher = Matcher {
        users: GlobSet::new(&m.users),
        groups: GlobSet::new(&m.groups),
        client_ids: GlobSet::new(&m.client_ids),
        clusters: GlobSet::new(&m.clusters),
        verbs: GlobSet::new(&m.verbs),
        api_groups: GlobSet::new(&m.api_groups),
        resources,
        namespaces: GlobSet::new(&m.namespaces),
        names: GlobSet::new(&m.names),
        paths: GlobSet::new(&m.paths),
        headers: GlobSet::new(
            &m.headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect::<Vec<_>>(),
        ),
    };
    let condition = match raw.condition {
        None => None,
        Some(source) => {
            let program = cel::compile(&source).map_err(|message| PolicyError::Cel {
                location: location.to_string(),
                message,
            })?;
            Some(Condition { source, program })
        }
    };
    let field = |f: &str| format!("{location}: {f}");
    let action = raw.action.as_str();
    if raw.approval.is_some() && action != "approve" {
        return Err(invalid(&field("approval"), "only for action: approve"));
    }
    if raw.mask.is_some() && action != "mask" {
        return Err(invalid(&field("mask"), "only for action: mask"));
    }
    let message = raw.message.filter(|m| !m.trim().is_empty());
    let kind =
        match action {
            "allow" => RuleKind::Allow,
            "deny" => RuleKind::Deny(message.ok_or_else(|| {
                invalid(&field("message"), "a deny rule needs a message saying why")
            })?),
            "approve" => {
                let approval = raw.approval.ok_or_else(|| {
                    invalid(
                        &field("approval"),
                        "an approve rule needs approval.approvers",
                    )
                })?;
                RuleKind::Approve(build_approval(location, &name, message, approval)?)
            }
            "mask" => {
                let profile = raw
                    .mask
                    .filter(|p| !p.trim().is_empty())
                    .ok_or_else(|| invalid(&field("mask"), "a mask rule needs a profile name"))?;
                RuleKind::Mask(profile)
            }
            other => {
                return Err(invalid(
                    &field("action"),
                    format!("must be allow, deny, approve or mask, not {other:?}"),
                ))
            }
        };
    Ok(Rule {
        name,
        description: raw.description,
        matcher,
        condition,
        kind,
    })
}

fn build_approval(
    location: &str,
    rule: &Arc<str>,
    reason: Option<String>,
    raw: RawApproval,
) -> Result<ApprovalRequirement, PolicyError> {
    let field = |f: &str| format!("{location}: approval.{f}");
    if raw.approvers.is_empty() || raw.approvers.iter().any(|a| a.trim().is_empty()) {
        return Err(invalid(
            &field("approvers"),
            "needs at least one group, none empty",
        ));
    }
    let quorum = raw.quorum.unwrap_or(1);
    if quorum == 0 {
        return Err(invalid(&field("quorum"), "must be at least 1"));
    }
    let hold = match raw.hold.as_deref() {
        None => DEFAULT_HOLD,
        Some(h) => duration::parse(h).filter(|d| !d.is_zero()).ok_or_else(|| {
            invalid(
                &field("hold"),
                format!("{h:?} is not a duration like 50s, 5m, 1h30m"),
            )
        })?,
    };
    let mut grant = GrantLimit::default();
    if let Some(g) = raw.grant {
        if let Some(d) = g.max_duration.as_deref() {
            grant.max_duration = duration::parse(d).filter(|d| !d.is_zero()).ok_or_else(|| {
                invalid(
                    &field("grant.max_duration"),
                    format!("{d:?} is not a duration like 15m, 1h"),
                )
            })?;
        }
        if let Some(scopes) = g.scopes {
            let mut parsed = Vec::new();
            for s in &scopes {
                let scope = GrantScope::parse(s).ok_or_else(|| {
                    invalid(
                        &field("grant.scopes"),
                        format!("{s:?} is not one of request, resource, namespace, session"),
                    )
                })?;
                if !parsed.contains(&scope) {
                    parsed.push(scope);
                }
            }
            if parsed.is_empty() {
                return Err(invalid(&field("grant.scopes"), "must not be empty"));
            }
            parsed.sort();
            grant.scopes = parsed;
        }
    }
    Ok(ApprovalRequirement {
        rule: rule.clone(),
        reason,
        approvers: raw.approvers,
        quorum,
        hold,
        grant,
    })
}
