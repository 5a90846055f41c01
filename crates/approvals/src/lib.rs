//! Just-in-time approval of single Kubernetes API calls (issue 4).
//!
//! The gateway hands a call that policy says must be approved to [`Approvals::admit`]: a grant
//! that covers it lets it through at once; otherwise the call joins the pending approval with
//! the same binding hash, or opens a new one, and the gateway waits on [`Approvals::wait`] for
//! up to the rule's hold time. Approvers decide with [`Approvals::decide`]. Every event is
//! written to SQLite before anyone is told about it, and passed to the [`DecisionHook`].
//!
//! # Invariants
//!
//! - A grant is bound to one identity (user and groups) and one body (SHA-256 of the bytes as
//!   sent); widened scopes (resource, namespace, session) never cross either.
//! - Self-approval is refused; a person counts once towards a quorum; one deny ends it.
//! - Pending approvals and grants live in the database, so they survive a restart. Only the
//!   waiting connections are lost, and the identical retry finds the grant.
//!
//! Storage is SQLite (`approvals.db` in the state directory) for one gateway, or PostgreSQL for
//! replicas that share pending approvals and grants: a call held on one replica is approved on
//! another, and a single-use grant is used once across all of them (see `db.rs`). rusqlite is
//! synchronous; its calls are short single-row reads and writes behind a mutex, so they run
//! inline on the async runtime.
//!
//! A waiting call is woken at once by a decision made on its own replica; a decision made on
//! another replica is seen by polling the shared database every [`SHARED_POLL`].

#![forbid(unsafe_code)]

mod db;
pub mod model;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::Notify;

pub use model::{
    binding_hash, format_duration, json_diff, new_id, parse_duration, parse_scope, rfc3339,
    scope_name, sha256_hex, Action, Approval, Candidate, DecideError, DecisionEntry, Grant,
    GrantLimit, Person, Requirement, State, Target, Verdict, REDACTED_FOR_REQUESTER,
};

/// Errors of the approval store.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalsError {
    #[error("approvals database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("approvals database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("approvals database: {what}: {source}")]
    Postgres {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("approvals database: no connection: {0}")]
    Pool(String),
    #[error("approvals database holds an unreadable approval: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Decide(#[from] DecideError),
}

/// What happened to an approval, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A held call opened it.
    Created,
    /// An approver approved (the quorum may or may not be met: see `approval.state`).
    Approved,
    /// An approver denied.
    Denied,
    /// A call went through on its grant.
    Used,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Approved => "approved",
            Event::Denied => "denied",
            Event::Used => "used",
        }
    }
}

/// One recorded event: what, who, and the approval as it stands after it.
#[derive(Debug, Clone)]
pub struct ApprovalRecord {
    pub event: Event,
    /// The approver (Approved, Denied) or the requester (Created, Used).
    pub actor: String,
    /// The gateway request id of the call, for Created and Used.
    pub request_id: Option<String>,
    pub approval: Approval,
}

/// Where approval events go besides the approvals database: the audit store connects here.
pub trait DecisionHook: Send + Sync {
    fn on_decision(&self, record: &ApprovalRecord);
}

/// What a call needing approval gets at once.
#[derive(Debug)]
pub enum Admission {
    /// A grant covers it (and has been used once): forward it.
    Granted(Approval),
    /// It waits on this approval; `created` is false when it joined an existing one.
    Held { approval: Approval, created: bool },
}

/// How a wait ended.
#[derive(Debug)]
pub enum WaitOutcome {
    /// Approved, and this call used the grant: forward it.
    Approved(Approval),
    Denied(Approval),
    /// Still pending when the hold time ran out.
    Pending(Approval),
    /// Expired, or approved but the grant was used by another call.
    Closed(Approval),
}

/// A new approval request, as the gateway builds it.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub requester: Person,
    pub target: Target,
    pub command: String,
    pub intent: Option<String>,
    pub kubectl_command: Option<String>,
    pub kubectl_session: Option<String>,
    pub masked_body: Option<String>,
    pub body_sha256: String,
    pub hash: String,
    pub message: String,
    pub requirements: Vec<Requirement>,
    pub grant_limit: GrantLimit,
}

/// How often a waiting call re-reads a shared (PostgreSQL) store for decisions made on
/// other replicas.
pub const SHARED_POLL: Duration = Duration::from_secs(1);

/// The approvals service: the database for the state, in-memory notifications for waiting
/// calls.
pub struct Approvals {
    db: db::Store,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    hook: RwLock<Option<Arc<dyn DecisionHook>>>,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// === impl Approvals ===

impl Approvals {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Approvals, ApprovalsError> {
        Ok(Approvals::with_store(db::Store::open_sqlite(path)?))
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Approvals, ApprovalsError> {
        Ok(Approvals::with_store(db::Store::memory()?))
    }

    /// The `airlock_approvals` table in PostgreSQL, created if needed: shared by replicas.
    pub async fn open_postgres(pool: deadpool_postgres::Pool) -> Result<Approvals, ApprovalsError> {
        Ok(Approvals::with_store(db::Store::open_postgres(pool).await?))
    }

    fn with_store(db: db::Store) -> Approvals {
        Approvals {
            db,
            waiters: Mutex::new(HashMap::new()),
            hook: RwLock::new(None),
        }
    }

    /// Sends every event to `hook` as well (the audit store).
    pub fn set_hook(&self, hook: Arc<dyn DecisionHook>) {
        if let Ok(mut g) = self.hook.write() {
            *g = Some(hook);
        }
    }

    fn record(&self, event: Event, actor: &str, request_id: Option<&str>, approval: &Approval) {
        let hook = self.hook.read().ok().and_then(|g| g.clone());
        if let Some(h) = hook {
            h.on_decision(&ApprovalRecord {
                event,
                actor: actor.to_owned(),
                request_id: request_id.map(str::to_owned),
                approval: approval.clone(),
            });
        }
    }

    fn notify(&self, id: &str) {
        let n = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// A covering grant lets the call through (using it once); otherwise the call joins the
    /// pending approval with its hash, or opens a new one.
    pub async fn admit(
        &self,
        new: NewApproval,
        request_id: &str,
    ) -> Result<Admission, ApprovalsError> {
        let now = now();
        let rules: Vec<String> = new.requirements.iter().map(|r| r.rule.clone()).collect();
        let cand = Candidate {
            hash: &new.hash,
            requester: &new.requester,
            target: &new.target,
            body_sha256: &new.body_sha256,
            rules: &rules,
        };
        // One requester's admissions run one at a time on every replica: a grant is used
        // once, and an identical call joins the pending approval instead of opening another.
        let mut db = self.db.begin(Some(&new.requester.user)).await?;
        for mut a in db.grants_for(&new.requester.user).await? {
            // Grants past their time are marked expired, so this lookup stays short.
            if a.refresh(now) {
                db.save(&a).await?;
                continue;
            }
            if a.grant_covers(&cand, now) && a.consume(now) {
                db.save(&a).await?;
                db.commit().await?;
                self.record(Event::Used, &new.requester.user, Some(request_id), &a);
                return Ok(Admission::Granted(a));
            }
        }
        if let Some(a) = db
            .by_hash(&new.hash, State::Pending)
            .await?
            .into_iter()
            .find(|a| a.effective_state(now) == State::Pending)
        {
            db.commit().await?;
            return Ok(Admission::Held {
                approval: a,
                created: false,
            });
        }
        let lifetime = model::MIN_PENDING_LIFETIME
            .as_secs()
            .max(new.grant_limit.max_seconds) as i64;
        let mut approval = Approval {
            id: String::new(),
            state: State::Pending,
            hash: new.hash,
            created: now,
            expires: now + lifetime,
            requester: new.requester,
            target: new.target,
            command: new.command,
            intent: new.intent,
            kubectl_command: new.kubectl_command,
            kubectl_session: new.kubectl_session,
            body: new.masked_body,
            body_sha256: new.body_sha256,
            message: new.message,
            requirements: new.requirements,
            grant_limit: new.grant_limit,
            decisions: Vec::new(),
            grant: None,
            preview: None,
        };
        // 40 random bits: a clash is rare, and the primary key catches it.
        let mut tries = 0;
        loop {
            approval.id = new_id();
            if db.insert(&approval).await? {
                break;
            }
            tries += 1;
            if tries > 5 {
                return Err(ApprovalsError::Pool(
                    "no free approval id after 6 tries".into(),
                ));
            }
        }
        db.commit().await?;
        self.record(
            Event::Created,
            &approval.requester.user,
            Some(request_id),
            &approval,
        );
        Ok(Admission::Held {
            approval,
            created: true,
        })
    }

    /// Waits up to `hold` for a decision on `id`. An approval uses the grant for this call.
    pub async fn wait(
        &self,
        id: &str,
        hold: Duration,
        request_id: &str,
    ) -> Result<WaitOutcome, ApprovalsError> {
        let notify = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone();
        let deadline = tokio::time::Instant::now() + hold;
        let result = loop {
            // Register for the wake-up before reading the state, so a decision made between
            // the read and the wait is not missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.try_finish(id, request_id).await? {
                break outcome;
            }
            // Decisions made on other replicas are only seen in the shared database.
            let poll = if self.db.is_shared() {
                SHARED_POLL
            } else {
                hold
            };
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(poll), if tokio::time::Instant::now() + poll < deadline => {}
                _ = tokio::time::sleep_until(deadline) => {
                    let a = self.get(id).await?.ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
                    break match self.try_finish(id, request_id).await? {
                        Some(o) => o,
                        None => WaitOutcome::Pending(a),
                    };
                }
            }
        };
        // Forget the notifier when nobody else waits on it.
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if w.get(id).is_some_and(|n| Arc::strong_count(n) <= 2) {
            w.remove(id);
        }
        Ok(result)
    }

    /// The outcome if the approval is decided; `None` while pending.
    async fn try_finish(
        &self,
        id: &str,
        request_id: &str,
    ) -> Result<Option<WaitOutcome>, ApprovalsError> {
        let now = now();
        let mut db = self.db.begin(None).await?;
        let Some(mut a) = db.get(id).await? else {
            db.commit().await?;
            return Err(DecideError::NotFound(id.to_owned()).into());
        };
        let outcome = match a.effective_state(now) {
            State::Pending => None,
            State::Denied => Some(WaitOutcome::Denied(a)),
            State::Approved if a.consume(now) => {
                db.save(&a).await?;
                Some(WaitOutcome::Approved(a))
            }
            State::Approved => Some(WaitOutcome::Closed(a)),
            State::Expired | State::Used => {
                a.refresh(now);
                Some(WaitOutcome::Closed(a))
            }
        };
        db.commit().await?;
        if let Some(WaitOutcome::Approved(a)) = &outcome {
            self.record(Event::Used, &a.requester.user, Some(request_id), a);
        }
        Ok(outcome)
    }

    /// One approver's decision. Wakes the calls waiting on the approval.
    pub async fn decide(
        &self,
        id: &str,
        approver: &Person,
        action: Action,
    ) -> Result<Approval, ApprovalsError> {
        let now = now();
        let event = match &action {
            Action::Approve { .. } => Event::Approved,
            Action::Deny { .. } => Event::Denied,
        };
        let mut db = self.db.begin(None).await?;
        let found = db.get(id).await?;
        // A refused decision ends the transaction too (a dropped one costs a connection).
        let decided = match found {
            None => Err(DecideError::NotFound(id.to_owned())),
            Some(mut a) => a.decide(approver, action, now).map(|()| a),
        };
        if let Ok(a) = &decided {
            db.save(a).await?;
        }
        db.commit().await?;
        let a = decided?;
        self.record(event, &approver.user, None, &a);
        self.notify(id);
        Ok(a)
    }

    /// Attaches the dry-run preview to an approval.
    pub async fn set_preview(
        &self,
        id: &str,
        preview: serde_json::Value,
    ) -> Result<(), ApprovalsError> {
        let mut db = self.db.begin(None).await?;
        if let Some(mut a) = db.get(id).await? {
            a.preview = Some(preview);
            db.save(&a).await?;
        }
        db.commit().await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Approval>, ApprovalsError> {
        let now = now();
        let mut db = self.db.begin(None).await?;
        let a = db.get(id).await?;
        db.commit().await?;
        Ok(a.map(|mut a| {
            a.refresh(now);
            a
        }))
    }

    /// Newest first, at most `limit`, optionally only those in `state` (as of now).
    pub async fn list(
        &self,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Approval>, ApprovalsError> {
        let now = now();
        // Stored states lag behind time (pending and approved ones expire): ask for every
        // stored state that can be `state` now, then filter.
        let stored: &[&str] = match state {
            None => &[],
            Some(State::Expired) => &["expired", "pending", "approved"],
            Some(s) => &[s.as_str()][..],
        };
        let mut db = self.db.begin(None).await?;
        let mut v = db.list(stored, limit).await?;
        db.commit().await?;
        for a in &mut v {
            a.refresh(now);
        }
        v.retain(|a| state.is_none_or(|s| a.state == s));
        v.truncate(limit);
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
