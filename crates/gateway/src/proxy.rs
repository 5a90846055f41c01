//! The request pipeline: every agent request passes these stages in this order.
//!
//! ```text
//! route -> limits -> attributes -> authenticate -> refuse client impersonation
//!       -> read body -> decide (policy) -> write-ahead audit record -> enforce the decision
//!       -> approval gate (hold) -> forward -> response filter (masking) -> outcome audit record
//! ```
//!
//! Each stage returns `Result<_, GatewayError>`; the first error ends the request and becomes a
//! Kubernetes `Status` in one place (`Gateway::handle`). Nothing is sent to the cluster before
//! authentication has succeeded and the identity headers have been rebuilt by Airlock.
//! Once the write-ahead record is durable, every later end of the request (a refusal, an
//! upstream error, the response's last byte) also writes an outcome record (`audit.rs`).
//! `docs/request-lifecycle.md` tells the same story for users.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use kube_request::{RequestInfo, RequestParts};
use tracing::{debug, info, warn};

use crate::{
    audit::{Audit, OutcomeRecord},
    authorize::PolicyHolder,
    body::{self, Body},
    config::Limits,
    error::GatewayError,
    filter,
    metrics::{Metrics, RequestLabels, SideLabels, TunnelLabels, UpstreamErrorLabels, VerbLabels},
    tunnel,
    upstream::{Route, Upstream},
};

/// `Impersonate-Extra-*` keys Airlock sends. Header names cannot hold `/`, so the key is
/// percent-encoded as kube-apiserver expects.
pub const EXTRA_SESSION: &str = "impersonate-extra-airlock.dev%2fsession-id";
pub const EXTRA_CLIENT: &str = "impersonate-extra-airlock.dev%2fclient-id";
pub const EXTRA_REQUEST: &str = "impersonate-extra-airlock.dev%2frequest-id";

/// Everything the pipeline needs, shared by every connection.
pub struct Gateway {
    clusters: HashMap<String, Arc<Upstream>>,
    default_cluster: String,
    authn: authn::Authenticator,
    policy: Arc<PolicyHolder>,
    masker: mask::Masker,
    limits: Limits,
    metrics: Arc<Metrics>,
    audit: Option<Arc<Audit>>,
    /// Where exec/attach/port-forward tunnels are also recorded (tests); the audit log records
    /// every tunnel on its own.
    recorder: Option<Arc<dyn tunnel::Recorder>>,
    approvals: Option<Arc<approvals::Approvals>>,
}

/// What is known about a request once it has passed authentication.
struct Call {
    id: String,
    cluster: Arc<Upstream>,
    /// Path and query as the cluster sees them (the `/clusters/{name}` prefix removed).
    path_and_query: String,
    info: RequestInfo,
    identity: authn::Identity,
}

/// Whether the API server runs a call as a dry run that persists nothing: `dryRun: [All]` on
/// a write of a built-in group (empty, dotless like `apps`, or `*.k8s.io`), never on exec,
/// attach, port-forward, proxy or log, whose options have no dry run (the parameter would be
/// ignored and the call made), nor on an aggregated API that might ignore it.
///
/// Where the option is read is kube-apiserver's: a delete with a body takes its
/// `DeleteOptions` from the body *only* (the query is then ignored, so `?dryRun=All` with a
/// body `{}` deletes for real); every other write takes it from the query. A body Airlock
/// cannot read as JSON is not a dry run.
fn harmless_dry_run(info: &RequestInfo, path_and_query: &str, body: &[u8]) -> bool {
    let built_in = !info.api_group.contains('.') || info.api_group.ends_with(".k8s.io");
    if !info.is_resource_request || info.stream_kind().is_some() || !built_in {
        return false;
    }
    let query = || kube_request::Query::parse(path_and_query.split_once('?').map(|(_, q)| q));
    match info.verb.as_str() {
        "delete" | "deletecollection" if !body.is_empty() => {
            serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|options| {
                options["dryRun"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty() && v.iter().all(|d| d == "All"))
            })
        }
        "create" | "update" | "patch" | "delete" | "deletecollection" => query().dry_run(),
        _ => false,
    }
}

/// What the completion stage reports.
struct Outcome {
    cluster: String,
    verb: String,
    resource: String,
    /// Set once the write-ahead record is durable: whoever ends the request owes an outcome
    /// record (the response body wrapper, or `handle` for an error).
    audit: Option<OutcomeRecord>,
}

impl Drop for Outcome {
    /// Every path that ends a request takes `audit` and writes the outcome record. One that
    /// is still here means the request was dropped mid-way: the client went away while its
    /// call was held for approval, or before the cluster answered. Record that too.
    fn drop(&mut self) {
        if let Some(o) = self.audit.take() {
            let record = o.record(
                CLIENT_CLOSED,
                None,
                0,
                None,
                Some("the client went away before the answer (held for approval, or waiting for the cluster)".into()),
            );
            if tokio::runtime::Handle::try_current().is_ok() {
                o.audit.append_detached(record);
            }
        }
    }
}

/// The status recorded for a request whose client left before it was answered (nginx's 499:
/// no HTTP status was sent).
const CLIENT_CLOSED: u16 = 499;

/// What the audit record needs from the request besides the `Call`.
struct Received<'a> {
    at: store::Timestamp,
    peer: SocketAddr,
    method: &'a str,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    path: &'a str,
    content_type: Option<&'a str>,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)] // one call site, in server::start
    pub fn new(
        clusters: Vec<Arc<Upstream>>,
        default_cluster: String,
        authn: authn::Authenticator,
        policy: Arc<PolicyHolder>,
        masker: mask::Masker,
        limits: Limits,
        metrics: Arc<Metrics>,
        audit: Option<Arc<Audit>>,
    ) -> Gateway {
        Gateway {
            clusters: clusters.into_iter().map(|c| (c.name.clone(), c)).collect(),
            default_cluster,
            authn,
            policy,
            masker,
            limits,
            metrics,
            audit,
            recorder: None,
            approvals: None,
        }
    }

    /// Holds calls that policy says need approval, instead of refusing them.
    pub fn with_approvals(mut self, approvals: Arc<approvals::Approvals>) -> Gateway {
        self.approvals = Some(approvals);
        self
    }

    /// Records every tunnel (exec, attach, port-forward) to `recorder`.
    pub fn with_recorder(mut self, recorder: Option<Arc<dyn tunnel::Recorder>>) -> Self {
        self.recorder = recorder;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves one request. Never fails: errors become `Status` responses here, and only here.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let id = crate::audit::new_id().to_string();
        let started = Instant::now();
        let head = req.method() == Method::HEAD;
        let mut outcome = Outcome {
            cluster: String::new(),
            verb: String::new(),
            resource: String::new(),
            audit: None,
        };
        let resp = match self.pipeline(req, &id, peer, &mut outcome).await {
            Ok(resp) => resp,
            Err(err) => {
                let (code, _) = err.status();
                self.metrics
                    .errors
                    .get_or_create(&SideLabels {
                        side: err.side().as_str().to_owned(),
                        code: code.as_u16(),
                    })
                    .inc();
                if code.as_u16() >= 502 {
                    self.metrics
                        .upstream_errors
                        .get_or_create(&UpstreamErrorLabels {
                            cluster: outcome.cluster.clone(),
                            code: code.as_u16(),
                        })
                        .inc();
                }
                info!(request_id = %id, side = err.side().as_str(), code = code.as_u16(), error = %err, "request refused");
                if let Some(o) = outcome.audit.take() {
                    let record = o.record(code.as_u16(), None, 0, None, Some(err.to_string()));
                    // The refusal is sent whether or not this lands: the client gets an error
                    // either way, and a call that was forwarded before the error (an upstream
                    // failure) already has its write-ahead record.
                    let _ = o.audit.append(record).await;
                }
                err.into_response(Some(&id))
            }
        };
        let code = resp.status().as_u16();
        // Unknown resources must not grow the label set without bound.
        let resource = if code == 404 {
            "other".to_owned()
        } else {
            std::mem::take(&mut outcome.resource)
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                cluster: std::mem::take(&mut outcome.cluster),
                verb: outcome.verb.clone(),
                resource,
                code,
            })
            .inc();
        self.metrics
            .duration
            .get_or_create(&VerbLabels {
                verb: std::mem::take(&mut outcome.verb),
            })
            .observe(started.elapsed().as_secs_f64());
        if head {
            // A HEAD response has no body. hyper drops it over HTTP/1.1, but over HTTP/2 it
            // would send the DATA frames and the client resets the stream (PROTOCOL_ERROR).
            // The body is run to its end rather than dropped, so that the audit wrapper sees
            // a complete response and its outcome record is written before the answer goes
            // out. It is short: the cluster sends no body to HEAD, and an error's `Status` is
            // in memory.
            let (parts, mut rest) = resp.into_parts();
            let drain = async { while let Some(Ok(_)) = rest.frame().await {} };
            let _ = tokio::time::timeout(HEAD_DRAIN, drain).await;
            return Response::from_parts(parts, body::empty());
        }
        resp
    }

    async fn pipeline(
        &self,
        mut req: Request<Incoming>,
        id: &str,
        peer: SocketAddr,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let started = Instant::now();
        let received_at = store::Timestamp::now();

        // Airlock's own API (approvals). `/airlock/` is no Kubernetes path, so this cannot
        // shadow one; it is authenticated like every agent call.
        if req.uri().path().starts_with(crate::approvals::API_PREFIX) {
            outcome.resource = "airlock-api".to_owned();
            let identity = self.authenticate(req.headers(), id, peer).await?;
            return Ok(crate::approvals::api(self.approvals.as_deref(), &identity, req, id).await);
        }

        // Stage: route. `/clusters/{name}/...` selects a cluster; anything else goes to the
        // default cluster.
        let (cluster, path) = self.route(req.uri().path())?;
        outcome.cluster = cluster.name.clone();

        // Stage: limits. Checked before anything is parsed or buffered.
        check_header_size(req.headers(), self.limits.max_header_bytes)?;
        if let Some(len) = content_length(req.headers()) {
            if len > self.limits.max_body_bytes as u64 {
                return Err(body_too_large(self.limits.max_body_bytes));
            }
        }

        // Stage: attributes. Rejects non-canonical paths before anything else looks at them.
        let query = req.uri().query().map(str::to_owned);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let parts = RequestParts {
            method: req.method().as_str(),
            path: &path,
            query: query.as_deref(),
            content_type: content_type.as_deref(),
        };
        let info =
            kube_request::parse(&parts).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        outcome.verb = info.verb.to_string();
        outcome.resource = resource_label(&info);

        // Stage: authenticate. The reason goes to the log; the token never does.
        let identity = self.authenticate(req.headers(), id, peer).await?;

        // Stage: refuse client impersonation. Stripping it silently would run the call as
        // someone the client did not ask for.
        if req
            .headers()
            .keys()
            .any(|k| k.as_str().starts_with("impersonate-"))
        {
            return Err(GatewayError::Forbidden(format!(
                "impersonation is not allowed through Airlock: requests run as {:?}; remove --as/--as-group",
                identity.user
            )));
        }

        let path_and_query = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let call = Call {
            id: id.to_owned(),
            cluster,
            path_and_query,
            info,
            identity,
        };

        // Stage: refuse upgrades of anything but a stream. A tunnel carries bytes Airlock does
        // not interpret as objects, so an `Upgrade` header must not turn a Secret read (or a
        // watch, or logs, which kube-apiserver also serves over WebSocket) into one.
        let upgrade = is_upgrade(&req);
        if upgrade && !upgradable(&call.info) {
            return Err(GatewayError::BadRequest(format!(
                "Airlock relays connection upgrades only for exec, attach, port-forward and proxy; \
                 remove the Upgrade header to {} {}",
                call.info.verb,
                resource_label(&call.info)
            )));
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let parts = RequestParts {
                method: req.method().as_str(),
                path: &path,
                query: query.as_deref(),
                content_type: content_type.as_deref(),
            };
            let command = kube_request::kubectl_command(&call.info, &parts);
            debug!(request_id = %id, user = %call.identity.user, command = %command, "forwarding");
        }

        let resp = if upgrade {
            // Stage: decide. exec, attach and port-forward carry no body.
            let decided = self.decide(&call, req.method().as_str(), req.headers(), None, None);
            // Stage: write-ahead audit record.
            let received = Received {
                at: received_at,
                peer,
                method: req.method().as_str(),
                headers: req.headers(),
                query: query.as_deref(),
                path: &path,
                content_type: content_type.as_deref(),
            };
            outcome.audit = self
                .write_ahead(&call, &received, decided.as_ref(), None, started)
                .await?;
            // Stage: enforce.
            if let Some(d) = decided.and_then(|d| self.enforce(&call, d))? {
                // Stage: approval gate.
                self.hold(&call, &d, req.method().as_str(), req.headers(), None, None)
                    .await?;
            }
            self.forward_upgrade(&mut req, &call, outcome).await?
        } else {
            // Stage: read body. Bounded by the configured limit; buffered because policy and
            // audit need the whole object, and kube-apiserver caps bodies at 3 MiB anyway.
            // It comes before the decision so that rules can see the object being written.
            let (parts, incoming) = req.into_parts();
            let body = read_body(incoming, self.limits.max_body_bytes).await?;
            // Stage: decide.
            let decided = self.decide(
                &call,
                parts.method.as_str(),
                &parts.headers,
                Some(&body),
                content_type.as_deref(),
            );
            // Stage: write-ahead audit record.
            let received = Received {
                at: received_at,
                peer,
                method: parts.method.as_str(),
                headers: &parts.headers,
                query: query.as_deref(),
                path: &path,
                content_type: content_type.as_deref(),
            };
            outcome.audit = self
                .write_ahead(&call, &received, decided.as_ref(), Some(&body), started)
                .await?;
            // Stage: enforce.
            filter::refuse_write_back(&body)?;
            self.refuse_forced_replace(&call, &parts.headers).await?;
            if let Some(d) = decided.and_then(|d| self.enforce(&call, d))? {
                // Stage: approval gate. Held here, after the body is read (it is part of what
                // is approved) and after the write-ahead record, before anything reaches the
                // cluster.
                self.hold(
                    &call,
                    &d,
                    parts.method.as_str(),
                    &parts.headers,
                    Some(&body),
                    content_type.as_deref(),
                )
                .await?;
            }
            self.forward(parts, body, &call, outcome).await?
        };
        info!(
            request_id = %id,
            cluster = %call.cluster.name,
            user = %call.identity.user,
            verb = %call.info.verb,
            resource = %outcome.resource,
            namespace = %call.info.namespace,
            name = %call.info.name,
            code = resp.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            "request"
        );
        Ok(resp)
    }

    /// Runs the policy. Without a policy file (`None`) every authenticated call is allowed and
    /// Kubernetes RBAC, seeing the impersonated identity, decides. An error is a refusal made
    /// before any rule could run (a body Airlock cannot read).
    fn decide(
        &self,
        call: &Call,
        method: &str,
        headers: &HeaderMap,
        body: Option<&Bytes>,
        content_type: Option<&str>,
    ) -> Result<Option<policy::Decision>, GatewayError> {
        if self.policy.current().is_none() {
            return Ok(None);
        }
        // Rules may look at the object written. kubectl 1.32+ sends protobuf bodies for
        // `create`; policy reads the kinds kubectl sends, strictly (`kube_request::protobuf`).
        // For objects whose content the guardrails judge (pods, workload templates, RBAC) a
        // body it cannot read is refused rather than judged as if it were empty. Elsewhere
        // rules see `object` as null.
        let object = match body.filter(|b| !b.is_empty()) {
            Some(b) => match policy::parse_object(content_type, b) {
                Ok(o) => o,
                Err(e)
                    if object_sensitive(&call.info)
                        || matches!(e, policy::PolicyError::Ambiguous(_)) =>
                {
                    return Err(GatewayError::UnsupportedMediaType(format!(
                        "Airlock cannot read this request body to apply its policy: {e}; send JSON or YAML (kubectl: `kubectl create ... --dry-run=client -o json | kubectl apply -f -`)"
                    )))
                }
                Err(_) => None,
            },
            None => None,
        };
        let mut decision = self.policy.decide(
            &call.cluster.name,
            &call.info,
            &call.identity,
            method,
            headers,
            object.as_ref(),
        );
        // A dry run (`kubectl diff`, `--dry-run=server`) changes nothing, so nobody needs to
        // approve it; deny rules still apply.
        if let Some(d) = decision.as_mut() {
            if d.verdict == policy::Verdict::Approve
                && harmless_dry_run(
                    &call.info,
                    &call.path_and_query,
                    body.map_or(&[][..], |b| &b[..]),
                )
            {
                d.verdict = policy::Verdict::Allow;
                d.approvals.clear();
                d.message = format!("dry run, not held for approval ({})", d.message);
            }
        }
        Ok(decision)
    }

    /// Turns a decision into a verdict: forward, or refuse with the rule's message.
    ///
    /// `Some(decision)`: the call must be approved first (only when approvals are enabled;
    /// otherwise an `approve` verdict is refused).
    fn enforce(
        &self,
        call: &Call,
        decision: Option<policy::Decision>,
    ) -> Result<Option<policy::Decision>, GatewayError> {
        let Some(decision) = decision else {
            return Ok(None);
        };
        if decision.verdict != policy::Verdict::Allow {
            info!(
                request_id = %call.id,
                user = %call.identity.user,
                verdict = ?decision.verdict,
                rules = ?decision.matched.iter().map(|m| m.name.as_ref()).collect::<Vec<_>>(),
                "policy refused the call"
            );
        }
        if decision.verdict == policy::Verdict::Approve && self.approvals.is_some() {
            return Ok(Some(decision));
        }
        crate::authorize::enforce(&decision).map(|()| None)
    }

    /// Refuses the delete that starts `kubectl replace --force` when the object holds anything
    /// Airlock masks. kubectl then creates the object from the file, and a file read through
    /// Airlock holds the markers, so that create is refused ([`filter::refuse_write_back`])
    /// after the delete went through: the object would be lost. The object is read first, as
    /// the agent; when it cannot be read or masked the delete goes on and answers for itself.
    async fn refuse_forced_replace(
        &self,
        call: &Call,
        headers: &HeaderMap,
    ) -> Result<(), GatewayError> {
        if !filter::is_forced_replace(&call.info, headers) {
            return Ok(());
        }
        let mut h = self.upstream_headers(headers, call)?;
        filter::readable_request(&mut h);
        let p = crate::approvals::PreviewUpstream {
            upstream: call.cluster.clone(),
            headers: h,
        };
        let path = call.path_and_query.split('?').next().unwrap_or_default();
        let (code, object) = crate::approvals::send(&p, "GET", path, Bytes::new())
            .await
            .map_err(GatewayError::BadGateway)?;
        if !code.is_success() {
            return Ok(());
        }
        let ctx = filter::mask_context(&call.cluster.name, &call.info);
        let masked = self
            .masker
            .mask_body(mask::BodyKind::Json, &ctx, &object)
            .unwrap_or_default();
        if mask::contains_marker(&masked) && !mask::contains_marker(&object) {
            return Err(GatewayError::BadRequest(format!(
                "Airlock refused this delete: it starts `kubectl replace --force`, and {} {:?} holds values Airlock masks, so the create that follows would carry the masked values, be refused, and leave the object deleted; change it with `kubectl apply`, `kubectl edit`, `kubectl patch` or `kubectl replace` without --force",
                call.info.resource, call.info.name
            )));
        }
        Ok(())
    }

    /// The approval gate: returns when the call may go on.
    async fn hold(
        &self,
        call: &Call,
        decision: &policy::Decision,
        method: &str,
        headers: &HeaderMap,
        body: Option<&Bytes>,
        content_type: Option<&str>,
    ) -> Result<(), GatewayError> {
        let Some(store) = &self.approvals else {
            return crate::authorize::enforce(decision);
        };
        let held = crate::approvals::HeldCall {
            request_id: &call.id,
            cluster: &call.cluster.name,
            info: &call.info,
            identity: &call.identity,
            method,
            path_and_query: &call.path_and_query,
            headers,
            body,
            content_type,
        };
        // The dry-run preview goes upstream as the agent, so only for calls with a body stage
        // (not upgrades), and only with the headers the call itself would be forwarded with.
        let preview = match body {
            Some(_) => self.upstream_headers(headers, call).ok().map(|mut h| {
                filter::readable_request(&mut h);
                crate::approvals::PreviewUpstream {
                    upstream: call.cluster.clone(),
                    headers: h,
                }
            }),
            None => None,
        };
        crate::approvals::hold(store, &self.masker, held, decision, preview).await
    }

    /// Commits the write-ahead record: nothing is forwarded unless this succeeds (503
    /// otherwise). Returns what the outcome record will be built from; `None` when the audit
    /// log is turned off.
    async fn write_ahead(
        &self,
        call: &Call,
        received: &Received<'_>,
        decided: Result<&Option<policy::Decision>, &GatewayError>,
        body: Option<&Bytes>,
        started: Instant,
    ) -> Result<Option<OutcomeRecord>, GatewayError> {
        let Some(audit) = &self.audit else {
            return Ok(None);
        };
        let mut record = self.request_record(call, received, decided);
        let bytes_in = body.map_or(0, |b| b.len() as u64);
        let template = record.clone();
        record.request_body = body
            .filter(|b| !b.is_empty())
            .map(|b| self.masked_request_body(audit, call, received.content_type, b));
        audit.append(record).await?;
        Ok(Some(OutcomeRecord {
            audit: audit.clone(),
            template,
            started,
            bytes_in,
        }))
    }

    /// The request record, without its body. Every free-text field passes the detectors: an
    /// exec command line or an intent may quote a credential.
    fn request_record(
        &self,
        call: &Call,
        received: &Received<'_>,
        decided: Result<&Option<policy::Decision>, &GatewayError>,
    ) -> store::AuditRecord {
        let text =
            |s: &str| String::from_utf8_lossy(&self.masker.mask_text(s.as_bytes())).into_owned();
        let header = |name: &str| {
            received
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        let id = uuid::Uuid::parse_str(&call.id).unwrap_or_default();
        let mut r = store::AuditRecord::new(id, store::RecordKind::Request, received.at);
        r.decided_at = Some(store::Timestamp::now());
        let who = &call.identity;
        r.identity = store::Identity {
            user: who.user.clone(),
            groups: who.groups.clone(),
            uid: who.uid.clone(),
            client_id: who.client_id.clone(),
            session_id: who
                .session_id
                .clone()
                .or_else(|| header("x-airlock-session").map(text)),
            source_addr: Some(received.peer.to_string()),
            user_agent: header("user-agent").map(text),
        };
        let info = &call.info;
        let opt = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        r.cluster = Some(call.cluster.name.clone());
        r.method = Some(received.method.to_owned());
        r.path = Some(text(&call.path_and_query));
        r.verb = opt(&info.verb);
        r.api_group = opt(&info.api_group);
        r.resource = opt(&info.resource);
        r.subresource = opt(&info.subresource);
        r.namespace = opt(&info.namespace);
        r.name = opt(&info.name);
        let parts = RequestParts {
            method: received.method,
            path: received.path,
            query: received.query,
            content_type: received.content_type,
        };
        r.command = Some(text(&kube_request::kubectl_command(info, &parts)));
        r.intent = header("x-airlock-intent").map(text);
        r.kubectl_command = header("kubectl-command").map(text);
        r.kubectl_session = header("kubectl-session").map(text);
        r.decision = Some(match decided {
            Ok(Some(d)) => store::Decision {
                action: match d.verdict {
                    policy::Verdict::Allow => "allow",
                    policy::Verdict::Deny => "deny",
                    policy::Verdict::Approve => "approve",
                }
                .to_owned(),
                rules: d
                    .matched
                    .iter()
                    .map(|m| store::RuleMatch {
                        name: m.name.to_string(),
                        action: m.action.to_string(),
                    })
                    .collect(),
                reason: Some(d.message.clone()).filter(|m| !m.is_empty()),
            },
            Ok(None) => store::Decision {
                action: "allow".to_owned(),
                rules: Vec::new(),
                reason: Some("no policy is configured".to_owned()),
            },
            Err(e) => store::Decision {
                action: "refuse".to_owned(),
                rules: Vec::new(),
                reason: Some(e.to_string()),
            },
        });
        r
    }

    /// The request body as the audit log keeps it: masked, or only its size and digest when
    /// Airlock cannot read it (protobuf) — never in clear.
    fn masked_request_body(
        &self,
        audit: &Audit,
        call: &Call,
        content_type: Option<&str>,
        body: &[u8],
    ) -> store::Body {
        match filter::masked_request_body(
            &self.masker,
            &call.cluster.name,
            &call.info,
            content_type,
            body,
        ) {
            Some(m) => audit.capture(&m),
            None => {
                let mut b = audit.capture(body);
                b.data.clear();
                b.encoding = store::BodyEncoding::Utf8;
                b.truncated = true;
                b
            }
        }
    }

    fn route(&self, path: &str) -> Result<(Arc<Upstream>, String), GatewayError> {
        if let Some(rest) = path.strip_prefix("/clusters/") {
            let (name, tail) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let cluster = self.clusters.get(name).ok_or_else(|| {
                GatewayError::NotFound(format!("cluster {name:?} is not configured in Airlock"))
            })?;
            return Ok((cluster.clone(), tail.to_owned()));
        }
        let cluster = self
            .clusters
            .get(&self.default_cluster)
            .ok_or_else(|| GatewayError::NotFound("no default cluster is configured".into()))?;
        Ok((cluster.clone(), path.to_owned()))
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        id: &str,
        peer: SocketAddr,
    ) -> Result<authn::Identity, GatewayError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            self.metrics.auth_failures.inc();
            info!(request_id = %id, %peer, reason = "no bearer token", "authentication failed");
            return Err(GatewayError::Unauthorized);
        };
        match self.authn.authenticate(token).await {
            Ok(identity) => Ok(identity),
            Err(e) => {
                self.metrics.auth_failures.inc();
                info!(request_id = %id, %peer, reason = %e, "authentication failed");
                Err(GatewayError::Unauthorized)
            }
        }
    }

    /// Builds the upstream request headers: the client's, minus identity and hop-by-hop headers,
    /// plus Airlock's credential, the impersonated identity and the Audit-ID.
    fn upstream_headers(&self, client: &HeaderMap, call: &Call) -> Result<HeaderMap, GatewayError> {
        let mut out = HeaderMap::with_capacity(client.len() + 6);
        let connection_tokens = connection_tokens(client);
        for (name, value) in client {
            if is_stripped(name) || connection_tokens.iter().any(|t| t == name.as_str()) {
                continue;
            }
            out.append(name.clone(), value.clone());
        }
        if let Some(auth) = call.cluster.authorization()? {
            out.insert(header::AUTHORIZATION, auth);
        }
        let id = &call.identity;
        out.insert("impersonate-user", header_value(&id.user)?);
        for g in &id.groups {
            out.append("impersonate-group", header_value(g)?);
        }
        // The token's `sid` claim names the agent session; without one, the agent may name it
        // with `X-Airlock-Session` (it is an annotation, not an identity claim).
        let session = id.session_id.as_deref().or_else(|| {
            client
                .get("x-airlock-session")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        });
        if let Some(sid) = session {
            out.insert(EXTRA_SESSION, header_value(sid)?);
        }
        if let Some(cid) = &id.client_id {
            out.insert(EXTRA_CLIENT, header_value(cid)?);
        }
        out.insert(EXTRA_REQUEST, header_value(&call.id)?);
        // kube-apiserver adopts a client-sent Audit-ID, so its audit events join ours.
        out.insert("audit-id", header_value(&call.id)?);
        Ok(out)
    }

    async fn forward(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        call: &Call,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let masked = call.info.is_resource_request;
        let mut req = Request::new(body::full(body));
        *req.method_mut() = parts.method;
        *req.uri_mut() = call.cluster.uri(&call.path_and_query)?;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = self.upstream_headers(&parts.headers, call)?;
        if masked {
            filter::readable_request(req.headers_mut());
        }

        let route = if long_running(&call.info, &call.path_and_query) {
            Route::LongRunning
        } else {
            Route::Pooled
        };
        let (resp, lease) = call.cluster.send(req, route).await?;
        let (mut parts, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        ensure_audit_id(&mut parts.headers, &call.id);

        // Stage: response filter. Every response to a resource request is masked as it
        // streams, each chunk flushed to the client as it arrives (watch, logs -f, big lists);
        // a response Airlock cannot read is refused.
        let watch = call.info.verb == "watch";
        let mut body: Body = incoming.map_err(Into::into).boxed();
        // `kubectl auth can-i`: the cluster answers from RBAC; the policy has its say too.
        let review_policy = match crate::authorize::is_access_review(&call.info) {
            true if parts.status.is_success() => self.policy.current(),
            _ => None,
        };
        if let Some(policy) = review_policy {
            let answer = crate::authorize::read_access_review(body).await?;
            let answer = crate::authorize::answer_access_review(
                &policy,
                &call.cluster.name,
                &call.identity,
                answer,
            );
            parts
                .headers
                .insert(header::CONTENT_LENGTH, answer.len().into());
            body = body::full(answer);
        }
        if masked {
            let mut ctx = filter::mask_context(&call.cluster.name, &call.info);
            ctx.fingerprints = filter::response_fingerprints(&call.info);
            body = filter::mask_response(&self.masker, &mut parts.headers, body, &ctx, watch)?;
        }
        if watch && parts.status.is_success() {
            let gauge = self.metrics.open_watches.clone();
            gauge.inc();
            body = body::guarded(body, move || {
                gauge.dec();
            });
        }
        if let Some(lease) = lease {
            // The stream's place on its connection is freed when the client is done with it.
            body = body::guarded(body, move || drop(lease));
        }
        if let Some(o) = outcome.audit.take() {
            // The last byte waits for the outcome record, so the length cannot be announced.
            parts.headers.remove(header::CONTENT_LENGTH);
            let aid = parts
                .headers
                .get("audit-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            body = crate::audit::recorded(body, o, parts.status.as_u16(), aid);
        }
        Ok(Response::from_parts(parts, body))
    }

    /// exec, attach, port-forward and other upgrades. Only a real `101 Switching Protocols` from
    /// the cluster opens a tunnel (CVE-2018-1002105): any other answer is relayed as a normal
    /// response and the client connection is not upgraded.
    async fn forward_upgrade(
        &self,
        req: &mut Request<Incoming>,
        call: &Call,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let client_upgrade = hyper::upgrade::on(&mut *req);
        let mut up = Request::new(body::empty());
        *up.method_mut() = req.method().clone();
        *up.uri_mut() = call.cluster.uri(&call.path_and_query)?;
        *up.version_mut() = Version::HTTP_11;
        let mut headers = self.upstream_headers(req.headers(), call)?;
        // A refusal comes back as an ordinary response, which is masked: ask for one Airlock
        // can read.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if let Some(u) = req.headers().get(header::UPGRADE) {
            headers.insert(header::UPGRADE, u.clone());
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        }
        *up.headers_mut() = headers;

        let (mut resp, _) = call.cluster.send(up, Route::Upgrade).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (mut parts, incoming) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            ensure_audit_id(&mut parts.headers, &call.id);
            let mut body: Body = incoming.map_err(Into::into).boxed();
            // Stage: response filter, as for every response to a resource request.
            let mut ctx = filter::mask_context(&call.cluster.name, &call.info);
            ctx.fingerprints = filter::response_fingerprints(&call.info);
            body = filter::mask_response(&self.masker, &mut parts.headers, body, &ctx, false)?;
            if let Some(o) = outcome.audit.take() {
                parts.headers.remove(header::CONTENT_LENGTH);
                body = crate::audit::recorded(body, o, parts.status.as_u16(), None);
            }
            return Ok(Response::from_parts(parts, body));
        }

        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let mut client_resp = Response::new(body::empty());
        *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        // A 101 must carry Connection and Upgrade; everything else (Sec-WebSocket-Accept and
        // -Protocol, X-Stream-Protocol-Version) is the cluster's answer, relayed as is.
        *client_resp.headers_mut() = resp.headers().clone();
        ensure_audit_id(client_resp.headers_mut(), &call.id);

        let kind = match call.info.stream_kind() {
            Some(k) => format!("{k:?}").to_lowercase(),
            None => "other".to_owned(),
        };
        let gauge = self
            .metrics
            .open_tunnels
            .get_or_create(&TunnelLabels { kind: kind.clone() })
            .clone();
        // Stage: tunnel. exec/attach output is masked and every tunnel recorded (tunnel.rs).
        let spec = tunnel::TunnelSpec {
            kind: call.info.stream_kind().into(),
            protocol: tunnel::Protocol::from_response(resp.headers()),
            tty: tunnel::query_flag(&call.path_and_query, "tty"),
            same_length: call.info.stream_kind() == Some(kube_request::StreamKind::Exec)
                && tunnel::writes_archive(&call.path_and_query),
            masker: self.masker.clone(),
            mask_ctx: mask::MaskContext {
                fingerprints: filter::response_fingerprints(&call.info),
                ..filter::mask_context(&call.cluster.name, &call.info)
            },
            recorder: crate::audit::tunnel_recorder(
                outcome.audit.as_ref(),
                &self.masker,
                self.recorder.clone(),
            ),
        };
        let id = call.id.clone();
        let audit = outcome.audit.take();
        tokio::spawn(async move {
            let (client, upstream) = tokio::join!(client_upgrade, upstream_upgrade);
            let (client, upstream) = match (client, upstream) {
                (Ok(c), Ok(u)) => (c, u),
                (c, u) => {
                    warn!(request_id = %id, client_ok = c.is_ok(), upstream_ok = u.is_ok(), "upgrade failed");
                    return;
                }
            };
            gauge.inc();
            // A half-close (EOF) in one direction is passed on as a write shutdown; the tunnel
            // ends when both directions are done, or at once when a stream cannot be read.
            let out = tunnel::relay(TokioIo::new(client), TokioIo::new(upstream), spec).await;
            let (bytes_up, bytes_down) = (out.bytes_to_upstream, out.bytes_to_client);
            let error = match out.error {
                None => {
                    debug!(request_id = %id, %kind, bytes_up, bytes_down, "tunnel closed");
                    None
                }
                Some(e @ tunnel::TunnelError::Io { .. }) => {
                    debug!(request_id = %id, %kind, error = %e, "tunnel ended");
                    Some(format!("the stream ended with an error: {e}"))
                }
                Some(e) => {
                    warn!(request_id = %id, %kind, error = %e, "tunnel closed by airlock (fail closed)");
                    Some(format!("Airlock closed the stream: {e}"))
                }
            };
            gauge.dec();
            if let Some(mut o) = audit {
                o.bytes_in = bytes_up;
                let record = o.record(101, None, bytes_down, None, error);
                let _ = o.audit.append(record).await;
            }
        });
        Ok(client_resp)
    }
}

/// How long a HEAD response's (empty) body may take to end; then it is dropped.
const HEAD_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Requests that may upgrade the connection: exec, attach and port-forward (whose tunnels are
/// parsed, masked and recorded) and proxy to a pod, service or node (a raw tunnel to an
/// application, like port-forward; policy decides who may open one).
fn upgradable(info: &RequestInfo) -> bool {
    info.is_streaming_upgrade() || info.stream_kind() == Some(kube_request::StreamKind::Proxy)
}

/// Requests that stay open until the client leaves: watches and followed logs.
fn long_running(info: &RequestInfo, path_and_query: &str) -> bool {
    info.verb == "watch"
        || (info.subresource == "log"
            && kube_request::Query::parse(path_and_query.split_once('?').map(|(_, q)| q)).follow())
}

/// Resources whose written content the policy judges: a body Airlock cannot parse is refused.
fn object_sensitive(info: &RequestInfo) -> bool {
    matches!(
        info.resource.as_str(),
        "pods"
            | "podtemplates"
            | "replicationcontrollers"
            | "deployments"
            | "daemonsets"
            | "statefulsets"
            | "replicasets"
            | "jobs"
            | "cronjobs"
            | "roles"
            | "clusterroles"
            | "rolebindings"
            | "clusterrolebindings"
    )
}

fn resource_label(info: &RequestInfo) -> String {
    if !info.is_resource_request {
        return "nonresource".to_owned();
    }
    let mut s = String::new();
    if !info.api_group.is_empty() {
        s.push_str(&info.api_group);
        s.push('/');
    }
    s.push_str(&info.resource);
    if !info.subresource.is_empty() {
        s.push('/');
        s.push_str(&info.subresource);
    }
    s
}

/// Headers that never reach the cluster from the client: identity, hop-by-hop, and the Audit-ID
/// that Airlock sets itself.
fn is_stripped(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "authorization"
            | "proxy-authorization"
            | "audit-id"
            | "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            // kube-apiserver takes the client address for its audit log's `sourceIPs` from
            // these too (`utilnet.SourceIPs`): an agent must not choose it.
            | "x-real-ip"
            | "forwarded"
    ) || n.starts_with("impersonate-")
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-remote-")
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let tokens = connection_tokens(headers);
    for t in tokens {
        if let Ok(name) = HeaderName::from_bytes(t.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

fn ensure_audit_id(headers: &mut HeaderMap, id: &str) {
    if !headers.contains_key("audit-id") {
        if let Ok(v) = HeaderValue::from_str(id) {
            headers.insert("audit-id", v);
        }
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers())
            .iter()
            .any(|t| t == "upgrade")
}

fn header_value(s: &str) -> Result<HeaderValue, GatewayError> {
    HeaderValue::from_str(s)
        .map_err(|_| GatewayError::Internal("an identity value cannot be sent as a header".into()))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn check_header_size(headers: &HeaderMap, max: usize) -> Result<(), GatewayError> {
    let total: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if total > max {
        return Err(GatewayError::BadRequest(format!(
            "request headers are {total} bytes, over the {max}-byte limit"
        )));
    }
    Ok(())
}

fn body_too_large(max: usize) -> GatewayError {
    GatewayError::BadRequest(format!("request body is over the {max}-byte limit"))
}

async fn read_body(body: Incoming, max: usize) -> Result<Bytes, GatewayError> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(body_too_large(max)),
        Err(e) => Err(GatewayError::BadRequest(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_hop_by_hop_headers_are_stripped() {
        let cases = [
            ("authorization", true),
            ("Impersonate-User", true),
            ("impersonate-extra-scopes", true),
            ("audit-id", true),
            ("x-forwarded-for", true),
            ("X-Remote-User", true),
            ("x-remote-group", true),
            ("connection", true),
            ("accept", false),
            ("kubectl-command", false),
            ("x-airlock-intent", false),
            ("content-type", false),
        ];
        for (name, stripped) in cases {
            let h = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(is_stripped(&h), stripped, "{name}");
        }
    }

    #[test]
    fn only_real_dry_runs_skip_approval() {
        let cases = [
            (
                "DELETE",
                "/api/v1/namespaces/shop/secrets/db?dryRun=All",
                true,
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/shop/deployments/web/scale?dryRun=All",
                true,
            ),
            (
                "POST",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?dryRun=All",
                true,
            ),
            ("DELETE", "/api/v1/namespaces/shop/secrets/db", false),
            (
                "DELETE",
                "/api/v1/namespaces/shop/secrets/db?dryRun=All&dryRun=x",
                false,
            ),
            // Connect subresources have no dry run: the parameter would be ignored.
            (
                "POST",
                "/api/v1/namespaces/p/pods/w/exec?command=env&dryRun=All",
                false,
            ),
            (
                "GET",
                "/api/v1/namespaces/p/pods/w/attach?dryRun=All",
                false,
            ),
            (
                "POST",
                "/api/v1/namespaces/p/pods/w/portforward?dryRun=All",
                false,
            ),
            // An aggregated or custom API might ignore it.
            (
                "POST",
                "/apis/example.com/v1/namespaces/p/widgets?dryRun=All",
                false,
            ),
        ];
        for (method, url, want) in cases {
            let (path, query) = url
                .split_once('?')
                .map_or((url, None), |(p, q)| (p, Some(q)));
            let info = kube_request::parse(&kube_request::RequestParts {
                method,
                path,
                query,
                content_type: None,
            })
            .unwrap();
            assert_eq!(harmless_dry_run(&info, url, b""), want, "{method} {url}");
        }
        // A delete with a body takes its options from the body alone.
        let info = kube_request::parse(&kube_request::RequestParts {
            method: "DELETE",
            path: "/api/v1/namespaces/shop/secrets/db",
            query: Some("dryRun=All"),
            content_type: None,
        })
        .unwrap();
        let url = "/api/v1/namespaces/shop/secrets/db?dryRun=All";
        for (body, want) in [
            (&br#"{"kind":"DeleteOptions","dryRun":["All"]}"#[..], true),
            (br#"{}"#, false),
            (br#"{"dryRun":[]}"#, false),
            (b"k8s\0...", false),
        ] {
            assert_eq!(
                harmless_dry_run(&info, url, body),
                want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(harmless_dry_run(
            &info,
            "/api/v1/namespaces/shop/secrets/db",
            br#"{"dryRun":["All"]}"#
        ));
    }

    #[test]
    fn headers_named_by_connection_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-secret"));
        assert!(h.contains_key("accept"));
    }
}
