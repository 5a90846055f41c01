//! The approval request, its decisions and its grant. Pure: every function here takes the time
//! as an argument, so the rules are tested as tables without a clock or a database.

use std::time::Duration;

use policy::GrantScope;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Pending approvals are kept at least this long before they expire (longer when the rule's
/// grant limit is longer), so a human who answers later still unblocks the retry.
pub const MIN_PENDING_LIFETIME: Duration = Duration::from_secs(3600);

/// Who asked (or who decided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The Kubernetes call that waits for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Target {
    pub cluster: String,
    pub method: String,
    /// Path as the cluster sees it (without `/clusters/{name}`).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub verb: String,
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// The body's media type (`application/merge-patch+json`…), lower case without
    /// parameters: the same bytes mean another change as another patch type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl Target {
    /// exec, attach and port-forward: kubectl sends them as a WebSocket `GET` first and falls
    /// back to a SPDY `POST`, so their binding ignores the method.
    pub fn is_stream(&self) -> bool {
        self.api_group.is_empty()
            && self.resource == "pods"
            && matches!(self.subresource.as_str(), "exec" | "attach" | "portforward")
    }

    /// The verb as a grant compares it: one word for both transports of a stream.
    fn grant_verb(&self) -> &str {
        if self.is_stream() {
            "stream"
        } else {
            &self.verb
        }
    }
}

/// One `approve` rule's requirement, as the policy decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Group globs whose members may decide.
    pub approvers: Vec<String>,
    pub quorum: u32,
}

/// How far approvers may widen a grant (the rules' combined limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantLimit {
    pub max_seconds: u64,
    pub scopes: Vec<GrantScope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for approvers.
    Pending,
    /// Approved: the grant may be used.
    Approved,
    /// An approver said no.
    Denied,
    /// Nobody decided in time, or the grant ran out of time.
    Expired,
    /// The single-use grant was used.
    Used,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Used => "used",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "approved" => State::Approved,
            "denied" => State::Denied,
            "expired" => State::Expired,
            "used" => State::Used,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
}

/// One approver's decision, kept in the approval for ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionEntry {
    pub approver: String,
    pub groups: Vec<String>,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: i64,
    /// `approve` only: the time box asked for (`None`: single use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<GrantScope>,
}

/// What an approval lets through once approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub scope: GrantScope,
    /// Unix seconds.
    pub expires: i64,
    /// `Some(1)` for a single-use grant; `None`: any number of uses until `expires`.
    pub uses_left: Option<u32>,
    pub used: u32,
}

/// What a requester sees in place of its own request's body (see [`Approval::view_for`]).
pub const REDACTED_FOR_REQUESTER: &str =
    "(not shown to the requester: approvers see the masked body and the dry-run preview)";

/// An approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub state: State,
    /// SHA-256 binding this approval to one request and one identity (see [`binding_hash`]).
    pub hash: String,
    /// Unix seconds.
    pub created: i64,
    /// When a pending approval expires (unix seconds).
    pub expires: i64,
    pub requester: Person,
    pub target: Target,
    /// The kubectl-equivalent command.
    pub command: String,
    /// `X-Airlock-Intent`, as the agent stated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// The `Kubectl-Command` and `Kubectl-Session` headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl_session: Option<String>,
    /// The request body with secrets masked; `None` for body-less calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// SHA-256 of the body as sent (not masked).
    pub body_sha256: String,
    /// The policy's message (rule and reason).
    pub message: String,
    pub requirements: Vec<Requirement>,
    pub grant_limit: GrantLimit,
    #[serde(default)]
    pub decisions: Vec<DecisionEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    /// Dry-run preview, when one was made (not yet: see docs/approvals.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<serde_json::Value>,
}

/// What an approver asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Approve {
        for_: Option<Duration>,
        scope: Option<GrantScope>,
        reason: Option<String>,
    },
    Deny {
        reason: String,
    },
}

/// Why a decision was refused. Messages are shown to the approver as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("approval {0} does not exist")]
    NotFound(String),
    #[error("self-approval is refused: {0} asked for this call")]
    SelfApproval(String),
    #[error("{user} may not decide approval {id}: approvers are members of {groups}")]
    NotApprover {
        user: String,
        id: String,
        groups: String,
    },
    #[error("approval {id} is {state}, not pending")]
    NotPending { id: String, state: &'static str },
    #[error("{0} has already decided approval {1}")]
    AlreadyDecided(String, String),
    #[error("{0}")]
    Invalid(String),
}

impl DecideError {
    /// The HTTP status the admin API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            DecideError::NotFound(_) => 404,
            DecideError::SelfApproval(_) | DecideError::NotApprover { .. } => 403,
            DecideError::NotPending { .. } | DecideError::AlreadyDecided(..) => 409,
            DecideError::Invalid(_) => 400,
        }
    }
}

// === impl Approval ===

impl Approval {
    /// The state as of `now`: pending approvals and grants run out of time.
    pub fn effective_state(&self, now: i64) -> State {
        match self.state {
            State::Pending if now >= self.expires => State::Expired,
            State::Approved if self.grant.as_ref().is_some_and(|g| now >= g.expires) => {
                State::Expired
            }
            s => s,
        }
    }

    /// Brings `state` up to date; true when it changed.
    pub fn refresh(&mut self, now: i64) -> bool {
        let s = self.effective_state(now);
        let changed = s != self.state;
        self.state = s;
        changed
    }

    /// Whether `person` may decide at all (is in some requirement's approver groups).
    /// The approval as `viewer` may see it. Its requester does not get the request body or
    /// the dry-run preview: both are masked for approvers, whose fingerprints are bound to the
    /// real objects, so a requester could send a held write of guessed values and read back
    /// their fingerprints under a Secret's binding; and the preview's diff says outright
    /// whether a guessed value equals the stored one. Approvers see everything.
    pub fn view_for(mut self, viewer: &Person) -> Approval {
        if self.requester.user == viewer.user {
            if self.body.is_some() {
                self.body = Some(REDACTED_FOR_REQUESTER.to_owned());
            }
            self.preview = None;
        }
        self
    }

    pub fn may_decide(&self, person: &Person) -> bool {
        self.requirements
            .iter()
            .any(|r| in_groups(&person.groups, &r.approvers))
    }

    /// Records one approver's decision and moves the state on. Self-approval, outsiders, and
    /// second votes by the same person are refused; a single deny ends the approval.
    pub fn decide(
        &mut self,
        approver: &Person,
        action: Action,
        now: i64,
    ) -> Result<(), DecideError> {
        self.refresh(now);
        if self.state != State::Pending {
            return Err(DecideError::NotPending {
                id: self.id.clone(),
                state: self.state.as_str(),
            });
        }
        if approver.user == self.requester.user {
            return Err(DecideError::SelfApproval(approver.user.clone()));
        }
        if !self.may_decide(approver) {
            let mut groups: Vec<&str> = self
                .requirements
                .iter()
                .flat_map(|r| r.approvers.iter().map(String::as_str))
                .collect();
            groups.dedup();
            return Err(DecideError::NotApprover {
                user: approver.user.clone(),
                id: self.id.clone(),
                groups: groups.join(", "),
            });
        }
        if self.decisions.iter().any(|d| d.approver == approver.user) {
            return Err(DecideError::AlreadyDecided(
                approver.user.clone(),
                self.id.clone(),
            ));
        }
        let entry = match action {
            Action::Deny { reason } => {
                if reason.trim().is_empty() {
                    return Err(DecideError::Invalid(
                        "a denial needs a reason: the agent is shown it".into(),
                    ));
                }
                self.state = State::Denied;
                DecisionEntry {
                    approver: approver.user.clone(),
                    groups: approver.groups.clone(),
                    verdict: Verdict::Deny,
                    reason: Some(reason),
                    at: now,
                    for_seconds: None,
                    scope: None,
                }
            }
            Action::Approve {
                for_,
                scope,
                reason,
            } => {
                let max = self.grant_limit.max_seconds;
                if let Some(d) = for_ {
                    if d.as_secs() == 0 || d.as_secs() > max {
                        return Err(DecideError::Invalid(format!(
                            "--for {}s is outside what the rule allows (1s to {max}s)",
                            d.as_secs()
                        )));
                    }
                }
                if let Some(s) = scope {
                    if !self.grant_limit.scopes.contains(&s) {
                        return Err(DecideError::Invalid(format!(
                            "scope {} is not allowed by the rule (allowed: {})",
                            scope_name(s),
                            self.grant_limit
                                .scopes
                                .iter()
                                .map(|s| scope_name(*s))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    if s != GrantScope::Request && for_.is_none() {
                        return Err(DecideError::Invalid(format!(
                            "scope {} needs a time box (--for)",
                            scope_name(s)
                        )));
                    }
                }
                DecisionEntry {
                    approver: approver.user.clone(),
                    groups: approver.groups.clone(),
                    verdict: Verdict::Approve,
                    reason,
                    at: now,
                    for_seconds: for_.map(|d| d.as_secs()),
                    scope,
                }
            }
        };
        self.decisions.push(entry);
        if self.state == State::Pending && self.quorum_met() {
            self.state = State::Approved;
            self.grant = Some(self.make_grant(now));
        }
        Ok(())
    }

    /// Every requirement has `quorum` distinct approvers from its groups.
    pub fn quorum_met(&self) -> bool {
        self.requirements.iter().all(|r| {
            let n = self
                .decisions
                .iter()
                .filter(|d| d.verdict == Verdict::Approve && in_groups(&d.groups, &r.approvers))
                .count();
            n >= r.quorum.max(1) as usize
        })
    }

    /// The grant the approvers agreed on: the narrowest scope and the shortest time box any of
    /// them chose; single use unless every approver gave a time box.
    fn make_grant(&self, now: i64) -> Grant {
        let approvals: Vec<&DecisionEntry> = self
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
            .collect();
        let scope = approvals
            .iter()
            .map(|d| d.scope.unwrap_or(GrantScope::Request))
            .min()
            .unwrap_or(GrantScope::Request);
        let boxed: Option<Vec<u64>> = approvals.iter().map(|d| d.for_seconds).collect();
        match boxed.and_then(|v| v.into_iter().min()) {
            Some(secs) => Grant {
                scope,
                expires: now + secs as i64,
                uses_left: None,
                used: 0,
            },
            None => Grant {
                scope: GrantScope::Request,
                expires: now + self.grant_limit.max_seconds as i64,
                uses_left: Some(1),
                used: 0,
            },
        }
    }

    /// Whether this approval's grant covers a request. The identity must be the same (user and
    /// groups), the body must be byte-for-byte the same, and every rule that now asks for
    /// approval must have been approved here.
    pub fn grant_covers(&self, req: &Candidate<'_>, now: i64) -> bool {
        let Some(grant) = &self.grant else {
            return false;
        };
        if self.effective_state(now) != State::Approved
            || grant.uses_left == Some(0)
            || !same_identity(&self.requester, req.requester)
            || self.body_sha256 != req.body_sha256
            // The same bytes as another patch type are another change.
            || self.target.content_type != req.target.content_type
            || self.target.cluster != req.target.cluster
            || !req
                .rules
                .iter()
                .all(|r| self.requirements.iter().any(|q| &q.rule == r))
        {
            return false;
        }
        let (a, b) = (&self.target, req.target);
        let same_kind = a.grant_verb() == b.grant_verb()
            && a.api_group == b.api_group
            && a.resource == b.resource
            && a.subresource == b.subresource;
        match grant.scope {
            GrantScope::Request => self.hash == req.hash,
            GrantScope::Resource => same_kind && a.namespace == b.namespace && a.name == b.name,
            GrantScope::Namespace => same_kind && a.namespace == b.namespace,
            GrantScope::Session => self
                .requester
                .session_id
                .as_ref()
                .is_some_and(|s| Some(s) == req.requester.session_id.as_ref()),
        }
    }

    /// Uses the grant once; false when it is used up or expired.
    pub fn consume(&mut self, now: i64) -> bool {
        if self.effective_state(now) != State::Approved {
            return false;
        }
        let Some(grant) = self.grant.as_mut() else {
            return false;
        };
        match grant.uses_left {
            Some(0) => return false,
            Some(n) => {
                grant.uses_left = Some(n - 1);
                if n == 1 {
                    self.state = State::Used;
                }
            }
            None => {}
        }
        grant.used += 1;
        true
    }

    /// The deny decision's reason and approver, if denied.
    pub fn denial(&self) -> Option<&DecisionEntry> {
        self.decisions.iter().find(|d| d.verdict == Verdict::Deny)
    }

    /// Approver groups of every requirement, for messages.
    pub fn approver_groups(&self) -> String {
        let mut v: Vec<&str> = self
            .requirements
            .iter()
            .flat_map(|r| r.approvers.iter().map(String::as_str))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.join(", ")
    }
}

/// A request looking for a grant.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub hash: &'a str,
    pub requester: &'a Person,
    pub target: &'a Target,
    pub body_sha256: &'a str,
    /// The rules that ask for approval of it now.
    pub rules: &'a [String],
}

pub fn scope_name(s: GrantScope) -> &'static str {
    match s {
        GrantScope::Request => "request",
        GrantScope::Resource => "resource",
        GrantScope::Namespace => "namespace",
        GrantScope::Session => "session",
    }
}

pub fn parse_scope(s: &str) -> Option<GrantScope> {
    Some(match s {
        "request" => GrantScope::Request,
        "resource" => GrantScope::Resource,
        "namespace" => GrantScope::Namespace,
        "session" => GrantScope::Session,
        _ => return None,
    })
}

fn same_identity(a: &Person, b: &Person) -> bool {
    let mut ga = a.groups.clone();
    let mut gb = b.groups.clone();
    ga.sort_unstable();
    gb.sort_unstable();
    a.user == b.user && ga == gb
}

fn in_groups(groups: &[String], globs: &[String]) -> bool {
    globs.iter().any(|pat| {
        groups
            .iter()
            .any(|g| glob_match(pat.as_bytes(), g.as_bytes()))
    })
}

/// `*` any run, `?` one character; the whole string must match (as the policy's globs).
pub fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// SHA-256 over the request (cluster, method, path, query, body) and the identity (user and
/// sorted groups), each field length-prefixed so no two requests share an input. For exec,
/// attach and port-forward the method is left out and the query parameters are sorted: kubectl's
/// WebSocket `GET` and its SPDY `POST` fallback are one user action and must bind to one
/// approval.
pub fn binding_hash(target: &Target, body: &[u8], requester: &Person) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(b"airlock-approval-binding-v2");
    field(target.cluster.as_bytes());
    let query = target.query.clone().unwrap_or_default();
    if target.is_stream() {
        field(b"STREAM");
        field(target.path.as_bytes());
        let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        pairs.sort_unstable();
        field(pairs.join("&").as_bytes());
    } else {
        field(target.method.as_bytes());
        field(target.path.as_bytes());
        field(query.as_bytes());
        field(
            target
                .content_type
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    field(body);
    field(requester.user.as_bytes());
    let mut groups: Vec<&str> = requester.groups.iter().map(String::as_str).collect();
    groups.sort_unstable();
    field(&(groups.len() as u64).to_be_bytes());
    for g in groups {
        field(g.as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A short id that people can type: 8 characters of lowercase base32 (40 random bits).
pub fn new_id() -> String {
    use rand::RngCore;
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut b = [0u8; 5];
    rand::thread_rng().fill_bytes(&mut b);
    let mut v = u64::from_be_bytes([0, 0, 0, b[0], b[1], b[2], b[3], b[4]]);
    let mut out = [0u8; 8];
    for c in out.iter_mut().rev() {
        *c = ALPHABET[(v & 31) as usize];
        v >>= 5;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Formats unix seconds as RFC 3339 for people.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Parses `30m`, `1h30m`, `45s`, `2d` (a bare number is seconds), as in policy files.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..unit] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        rest = &rest[unit..];
    }
    Some(Duration::from_secs(total))
}

/// Renders seconds as `1h30m`, `45s`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (d, h, m, s) = (
        secs / 86_400,
        (secs % 86_400) / 3600,
        (secs % 3600) / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, u) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{u}"));
        }
    }
    out
}

/// Fields that change on every write and tell an approver nothing.
const DIFF_IGNORED: &[&str] = &[
    "/metadata/resourceVersion",
    "/metadata/managedFields",
    "/metadata/generation",
    "/metadata/uid",
    "/metadata/creationTimestamp",
    "/status",
];

/// At most this many changes are listed; the rest are counted.
const DIFF_MAX: usize = 200;

/// A small structural diff for the approval preview: one entry per changed leaf, as JSON
/// pointers (`{"op": "replace", "path": "/spec/replicas", "from": 1, "to": 3}`; `add` has only
/// `to`, `remove` only `from`). Arrays are compared element by element.
pub fn json_diff(from: &serde_json::Value, to: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    diff_at(String::new(), from, to, &mut out);
    if out.len() > DIFF_MAX {
        let more = out.len() - DIFF_MAX;
        out.truncate(DIFF_MAX);
        out.push(serde_json::json!({"op": "more", "count": more}));
    }
    out
}

fn diff_at(
    path: String,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<serde_json::Value>,
) {
    use serde_json::{json, Value};
    if DIFF_IGNORED.contains(&path.as_str()) || a == b {
        return;
    }
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}/{}", esc(k));
                match y.get(k) {
                    Some(vb) => diff_at(p, va, vb, out),
                    None if !DIFF_IGNORED.contains(&p.as_str()) => {
                        out.push(json!({"op": "remove", "path": p, "from": va}))
                    }
                    None => {}
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    let p = format!("{path}/{}", esc(k));
                    if !DIFF_IGNORED.contains(&p.as_str()) {
                        out.push(json!({"op": "add", "path": p, "to": vb}));
                    }
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => diff_at(p, va, vb, out),
                    (Some(va), None) => out.push(json!({"op": "remove", "path": p, "from": va})),
                    (None, Some(vb)) => out.push(json!({"op": "add", "path": p, "to": vb})),
                    (None, None) => {}
                }
            }
        }
        _ => out.push(json!({"op": "replace", "path": path, "from": a, "to": b})),
    }
}
