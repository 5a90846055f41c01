//! The approval gate and the approvals admin API (issue 4; `docs/approvals.md`).
//!
//! The gate runs after the authorize stage for calls whose verdict is `approve`: it builds the
//! approval request (identity, attributes, kubectl command, masked body, binding hash), then
//! either forwards at once on a covering grant or holds the call for the rule's hold time.
//! Approved: the original call goes on (and the client gets the real response). Denied, or
//! still pending: a 403 `Status` whose message says what happened and what to do.
//!
//! The admin API lives under `/airlock/v1/approvals` on the agent listener: `/airlock/` is no
//! Kubernetes path, so it cannot shadow one, and it gets the same TLS and authentication.

use std::{sync::Arc, time::Duration};

use approvals::{
    Action, Admission, Approval, Approvals, ApprovalsError, NewApproval, Person, State, Target,
    WaitOutcome,
};
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use kube_request::{RequestInfo, RequestParts};
use mask::{BodyKind, MaskContext, Masker};
use policy::Decision;
use serde::Deserialize;
use tracing::info;

use crate::{
    body::{self, Body},
    error::{status_response, GatewayError},
    upstream::{Route, Upstream},
};

/// Every path under this prefix is Airlock's own API, never forwarded.
pub const API_PREFIX: &str = "/airlock/";
const APPROVALS_PATH: &str = "/airlock/v1/approvals";
const MAX_API_BODY: usize = 64 * 1024;

/// A call the policy wants approved, as the pipeline knows it.
pub(crate) struct HeldCall<'a> {
    pub request_id: &'a str,
    pub cluster: &'a str,
    pub info: &'a RequestInfo,
    pub identity: &'a authn::Identity,
    pub method: &'a str,
    /// Path and query as the cluster sees them.
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Option<&'a Bytes>,
    pub content_type: Option<&'a str>,
}

/// How to reach the cluster as the agent, for the dry-run preview: the upstream and the
/// headers Airlock would forward the call with (impersonating the agent).
pub(crate) struct PreviewUpstream {
    pub upstream: Arc<Upstream>,
    pub headers: HeaderMap,
}

/// How much sooner than the client's own timeout a held call is answered.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// The gate: `Ok` means forward the call now (approved, or covered by a grant).
pub(crate) async fn hold(
    store: &Approvals,
    masker: &Masker,
    call: HeldCall<'_>,
    decision: &Decision,
    preview: Option<PreviewUpstream>,
) -> Result<(), GatewayError> {
    let new = approval_request(masker, &call, decision);
    // Answer before the client gives up, so that it learns the approval's id: kubectl sends
    // `--request-timeout` as `?timeout=`.
    let answer_by = kube_request::Query::parse(call.path_and_query.split_once('?').map(|(_, q)| q))
        .timeout()
        .map(|t| tokio::time::Instant::now() + t.saturating_sub(ANSWER_MARGIN));
    let mut hold = decision.hold().unwrap_or(policy::DEFAULT_HOLD);
    let reason = decision_reason(decision);
    let approval = match store.admit(new, call.request_id).await.map_err(internal)? {
        Admission::Granted(a) => {
            info!(request_id = %call.request_id, approval = %a.id, "call covered by an approval grant");
            return Ok(());
        }
        Admission::Held { approval, created } => {
            info!(request_id = %call.request_id, approval = %approval.id, created, hold_ms = hold.as_millis() as u64, "holding the call for approval");
            if created {
                if let Some(p) = preview {
                    // Best effort and bounded: a preview that fails or is slow is left out,
                    // it never decides anything.
                    let budget = answer_by.map_or(PREVIEW_TIMEOUT, |t| {
                        PREVIEW_TIMEOUT.min(t - tokio::time::Instant::now())
                    });
                    let made = tokio::time::timeout(budget, make_preview(masker, &call, &p)).await;
                    if let Ok(Some(v)) = made {
                        store.set_preview(&approval.id, v).await.map_err(internal)?;
                    }
                }
            }
            approval
        }
    };
    if let Some(t) = answer_by {
        hold = hold.min(t - tokio::time::Instant::now());
    }
    if kubectl_falls_back(call.headers) {
        // kubectl tries exec, attach and port-forward over WebSocket first and retries over
        // SPDY when the upgrade is refused. The SPDY attempt joins this approval and is held
        // instead; holding both would make kubectl wait twice the hold.
        hold = Duration::ZERO;
    }
    match store
        .wait(&approval.id, hold, call.request_id)
        .await
        .map_err(internal)?
    {
        WaitOutcome::Approved(a) => {
            info!(request_id = %call.request_id, approval = %a.id, "approved: forwarding the held call");
            Ok(())
        }
        WaitOutcome::Denied(a) => {
            let (who, why) = a
                .denial()
                .map(|d| (d.approver.as_str(), d.reason.as_deref().unwrap_or("")))
                .unwrap_or(("an approver", ""));
            Err(GatewayError::Forbidden(format!(
                "{reason}; approval {} was denied by {who}: {why}",
                a.id
            )))
        }
        WaitOutcome::Pending(a) => Err(GatewayError::Forbidden(pending_message(&reason, &a))),
        WaitOutcome::Closed(a) => Err(GatewayError::Forbidden(format!(
            "{reason}; approval {} is {}{}; retry to ask for a new approval",
            a.id,
            a.state.as_str(),
            if a.state == State::Used {
                " (its single-use grant was taken by another identical call)"
            } else {
                ""
            }
        ))),
    }
}

/// A WebSocket upgrade from kubectl, which falls back to SPDY when it is refused (client-go's
/// `FallbackExecutor` and port-forward dialer, kubectl 1.30+). kubectl names itself by the
/// `Kubectl-Command` header, or by a user agent that starts with its binary's name: `kubectl/`,
/// or the Cloud SDK's `kubectl.1.33/` (not `kubectl-foo/`: a plugin may not fall back).
fn kubectl_falls_back(headers: &HeaderMap) -> bool {
    let text = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let websocket = text(header::UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let kubectl = headers.contains_key("kubectl-command")
        || text(header::USER_AGENT)
            .is_some_and(|v| v.starts_with("kubectl/") || v.starts_with("kubectl."));
    websocket && kubectl
}

/// What kubectl prints when the hold time runs out: the id, how to approve, and that the
/// identical request passes once approved.
fn pending_message(reason: &str, a: &Approval) -> String {
    let quorum: u32 = a.requirements.iter().map(|r| r.quorum).max().unwrap_or(1);
    let votes = a.decisions.len();
    let progress = if quorum > 1 {
        format!(", {votes} of {quorum} approvals so far")
    } else {
        String::new()
    };
    format!(
        "{reason}; approval id {id} is pending (approvers: {groups}{progress}); run `airlock approvals approve {id}`; retry the identical command once approved (valid until {until})",
        id = a.id,
        groups = a.approver_groups(),
        until = approvals::rfc3339(a.expires),
    )
}

/// The policy's message without its "held up to …" tail, which is the gateway's to tell.
fn decision_reason(decision: &Decision) -> String {
    decision
        .message
        .split("; held up to")
        .next()
        .unwrap_or(&decision.message)
        .to_owned()
}

fn internal(e: ApprovalsError) -> GatewayError {
    GatewayError::Internal(format!("approvals: {e}"))
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn person(identity: &authn::Identity) -> Person {
    Person {
        user: identity.user.clone(),
        groups: identity.groups.clone(),
        session_id: identity.session_id.clone(),
        client_id: identity.client_id.clone(),
    }
}

fn approval_request(masker: &Masker, call: &HeldCall<'_>, decision: &Decision) -> NewApproval {
    let (path, query) = match call.path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (call.path_and_query, None),
    };
    let info = call.info;
    let target = Target {
        cluster: call.cluster.to_owned(),
        method: call.method.to_owned(),
        path: path.to_owned(),
        query: query.map(str::to_owned),
        verb: info.verb.clone(),
        api_group: info.api_group.clone(),
        api_version: info.api_version.clone(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        content_type: call
            .content_type
            .filter(|_| call.body.is_some_and(|b| !b.is_empty()))
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            }),
    };
    let requester = person(call.identity);
    let raw: &[u8] = call.body.map(|b| b.as_ref()).unwrap_or_default();
    let command = kube_request::kubectl_command(
        info,
        &RequestParts {
            method: call.method,
            path,
            query,
            content_type: call.content_type,
        },
    );
    let limit = decision.grant_limit().unwrap_or_default();
    let mut scopes = limit.scopes;
    if scopes.is_empty() {
        scopes.push(policy::GrantScope::Request);
    }
    NewApproval {
        hash: approvals::binding_hash(&target, raw, &requester),
        body_sha256: approvals::sha256_hex(raw),
        masked_body: masked_body(masker, call.cluster, info, call.content_type, raw),
        requester,
        target,
        command,
        intent: header_str(call.headers, "x-airlock-intent"),
        kubectl_command: header_str(call.headers, "kubectl-command"),
        kubectl_session: header_str(call.headers, "kubectl-session"),
        message: decision_reason(decision),
        requirements: decision
            .approvals
            .iter()
            .map(|r| approvals::Requirement {
                rule: r.rule.to_string(),
                reason: r.reason.clone(),
                approvers: r.approvers.clone(),
                quorum: r.quorum,
            })
            .collect(),
        grant_limit: approvals::GrantLimit {
            max_seconds: limit.max_duration.as_secs().max(1),
            scopes,
        },
    }
}

/// The body approvers see: masked like the audit log; when it cannot be masked, only its size
/// and digest, never the body.
fn masked_body(
    masker: &Masker,
    cluster: &str,
    info: &RequestInfo,
    content_type: Option<&str>,
    raw: &[u8],
) -> Option<String> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(
        match crate::filter::masked_request_body(masker, cluster, info, content_type, raw) {
            Some(b) => String::from_utf8_lossy(&b).into_owned(),
            None => format!(
                "({} bytes, sha256 {}: not shown, Airlock cannot mask this body)",
                raw.len(),
                approvals::sha256_hex(raw)
            ),
        },
    )
}

// === the dry-run preview ===

const PREVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Objects larger than this are left out of the preview (the diff stays).
const PREVIEW_MAX_OBJECT: usize = 64 * 1024;
const PREVIEW_MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// What the approver sees besides the request: for create, update, patch and delete, the
/// object as the cluster would leave it (`dryRun=All`, as the agent), masked; for update and
/// patch a diff against the current object; for a namespace deletion, how many objects of
/// common kinds it holds. Returns `None` for calls without a preview.
async fn make_preview(
    masker: &Masker,
    call: &HeldCall<'_>,
    p: &PreviewUpstream,
) -> Option<serde_json::Value> {
    let info = call.info;
    // Connect subresources (exec, attach, port-forward, proxy) have no dry run: sent
    // upstream, the "preview" would be a real call, made before anyone approved it.
    if !info.is_resource_request
        || !matches!(info.verb.as_str(), "create" | "update" | "patch" | "delete")
        || info.stream_kind().is_some()
    {
        return None;
    }
    let ctx = crate::filter::mask_context(call.cluster, info);
    let mut out = serde_json::Map::new();
    let sep = if call.path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let dry = format!("{}{sep}dryRun=All", call.path_and_query);
    let body = call.body.cloned().unwrap_or_default();
    let result = match fetch(p, call.method, &dry, body, masker, &ctx).await {
        Ok((code, v)) if code.is_success() => Some(v),
        Ok((code, v)) => {
            out.insert(
                "dry_run_error".into(),
                v.get("message")
                    .cloned()
                    .unwrap_or_else(|| format!("the cluster answered {code}").into()),
            );
            None
        }
        Err(e) => {
            out.insert("dry_run_error".into(), e.into());
            None
        }
    };
    if let Some(obj) = &result {
        if matches!(info.verb.as_str(), "update" | "patch") && !info.name.is_empty() {
            let path = call.path_and_query.split('?').next().unwrap_or_default();
            if let Ok((code, current)) = fetch(p, "GET", path, Bytes::new(), masker, &ctx).await {
                if code.is_success() {
                    out.insert(
                        "diff".into(),
                        serde_json::Value::Array(approvals::json_diff(&current, obj)),
                    );
                }
            }
        }
        let size = serde_json::to_string(obj).map(|s| s.len()).unwrap_or(0);
        out.insert(
            "object".into(),
            if size <= PREVIEW_MAX_OBJECT {
                obj.clone()
            } else {
                serde_json::json!({"omitted": format!("{size} bytes")})
            },
        );
    }
    if info.resource == "namespaces"
        && info.api_group.is_empty()
        && info.verb == "delete"
        && !info.name.is_empty()
    {
        out.insert("contains".into(), namespace_contents(p, &info.name).await);
    }
    Some(serde_json::Value::Object(out))
}

/// Counts of what a namespace holds, by kind (`"500+"` past the first page).
async fn namespace_contents(p: &PreviewUpstream, ns: &str) -> serde_json::Value {
    const KINDS: &[(&str, &str)] = &[
        ("/api/v1", "pods"),
        ("/api/v1", "services"),
        ("/api/v1", "configmaps"),
        ("/api/v1", "secrets"),
        ("/api/v1", "serviceaccounts"),
        ("/api/v1", "persistentvolumeclaims"),
        ("/apis/apps/v1", "deployments"),
        ("/apis/apps/v1", "statefulsets"),
        ("/apis/apps/v1", "daemonsets"),
        ("/apis/batch/v1", "jobs"),
        ("/apis/batch/v1", "cronjobs"),
    ];
    let ns =
        percent_encoding::utf8_percent_encode(ns, percent_encoding::NON_ALPHANUMERIC).to_string();
    let lists = KINDS.iter().map(|(prefix, res)| {
        let path = format!("{prefix}/namespaces/{ns}/{res}?limit=500");
        async move { (*res, count_items(p, &path).await) }
    });
    let mut out = serde_json::Map::new();
    for (res, n) in futures_util::future::join_all(lists).await {
        if let Some(n) = n {
            out.insert(res.to_owned(), n);
        }
    }
    serde_json::Value::Object(out)
}

/// Lists are counted, never kept, so they are not masked.
async fn count_items(p: &PreviewUpstream, path: &str) -> Option<serde_json::Value> {
    let (code, bytes) = send(p, "GET", path, Bytes::new()).await.ok()?;
    if !code.is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let n = v.get("items")?.as_array()?.len();
    let more = v
        .pointer("/metadata/continue")
        .and_then(|c| c.as_str())
        .is_some_and(|c| !c.is_empty());
    Some(if more {
        format!("{n}+").into()
    } else {
        n.into()
    })
}

pub(crate) async fn send(
    p: &PreviewUpstream,
    method: &str,
    path_and_query: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let mut req = Request::new(body::full(body));
    *req.method_mut() = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    *req.uri_mut() = p.upstream.uri(path_and_query).map_err(|e| e.to_string())?;
    *req.version_mut() = http::Version::HTTP_11;
    let mut headers = p.headers.clone();
    if method == "GET" {
        headers.remove(header::CONTENT_TYPE);
    }
    *req.headers_mut() = headers;
    let (resp, _) = p
        .upstream
        .send(req, Route::Pooled)
        .await
        .map_err(|e| e.to_string())?;
    let code = resp.status();
    let bytes = http_body_util::Limited::new(resp.into_body(), PREVIEW_MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, bytes))
}

/// Sends one preview request and returns the answer parsed and masked.
async fn fetch(
    p: &PreviewUpstream,
    method: &str,
    path_and_query: &str,
    body: Bytes,
    masker: &Masker,
    ctx: &MaskContext,
) -> Result<(StatusCode, serde_json::Value), String> {
    let (code, bytes) = send(p, method, path_and_query, body).await?;
    let masked = masker
        .mask_body(BodyKind::Json, ctx, &bytes)
        .map_err(|e| format!("the answer could not be masked: {e}"))?;
    let v = serde_json::from_slice(&masked).map_err(|e| format!("the answer is not JSON: {e}"))?;
    Ok((code, v))
}

// === the admin API ===

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Serves `/airlock/...` for an authenticated caller. Readers see the approvals they asked for
/// or may decide; only approvers may decide (and never their own).
pub(crate) async fn api(
    store: Option<&Approvals>,
    caller: &authn::Identity,
    req: Request<Incoming>,
    request_id: &str,
) -> Response<Body> {
    match api_inner(store, caller, req).await {
        Ok(resp) => resp,
        Err((code, message)) => {
            let reason = match code {
                StatusCode::BAD_REQUEST => "BadRequest",
                StatusCode::FORBIDDEN => "Forbidden",
                StatusCode::NOT_FOUND => "NotFound",
                StatusCode::CONFLICT => "Conflict",
                StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
                _ => "InternalError",
            };
            status_response(code, reason, &message, Some(request_id))
        }
    }
}

type ApiError = (StatusCode, String);

async fn api_inner(
    store: Option<&Approvals>,
    caller: &authn::Identity,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let store = store.ok_or((
        StatusCode::NOT_FOUND,
        "approvals are not enabled on this Airlock".to_owned(),
    ))?;
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix(APPROVALS_PATH).ok_or((
        StatusCode::NOT_FOUND,
        format!("no such Airlock API: {path}"),
    ))?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let who = person(caller);
    let fail = |e: ApprovalsError| match e {
        ApprovalsError::Decide(d) => (
            StatusCode::from_u16(d.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            d.to_string(),
        ),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    };
    let visible = |a: &Approval| a.requester.user == who.user || a.may_decide(&who);
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, []) => {
            let query = req.uri().query().unwrap_or("");
            let mut state = None;
            let mut limit = 100usize;
            for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                match k.as_ref() {
                    "state" if v != "all" => {
                        state = Some(State::parse(&v).ok_or((
                            StatusCode::BAD_REQUEST,
                            format!("state {v:?} is not one of pending, approved, denied, expired, used, all"),
                        ))?)
                    }
                    "limit" => {
                        limit = v.parse().map_err(|_| {
                            (StatusCode::BAD_REQUEST, format!("limit {v:?} is not a number"))
                        })?
                    }
                    _ => {}
                }
            }
            let items: Vec<Approval> = store
                .list(state, limit.min(1000))
                .await
                .map_err(fail)?
                .into_iter()
                .filter(|a| visible(a))
                .map(|a| a.view_for(&who))
                .collect();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"kind": "ApprovalList", "items": items}),
            ))
        }
        (Method::GET, [id]) => {
            let a = store
                .get(id)
                .await
                .map_err(fail)?
                .filter(|a| visible(a))
                .ok_or((
                    StatusCode::NOT_FOUND,
                    format!("approval {id} does not exist"),
                ))?;
            Ok(json(StatusCode::OK, &a.view_for(&who)))
        }
        (Method::POST, [id, verb @ ("approve" | "deny")]) => {
            let body = read_json_body(req).await?;
            let action = if *verb == "approve" {
                let b: ApproveBody = parse_body(&body)?;
                let for_ = match b.for_.as_deref().filter(|s| !s.is_empty()) {
                    Some(s) => Some(approvals::parse_duration(s).ok_or((
                        StatusCode::BAD_REQUEST,
                        format!("for: {s:?} is not a duration like 30m or 1h"),
                    ))?),
                    None => None,
                };
                let scope = match b.scope.as_deref().filter(|s| !s.is_empty()) {
                    Some(s) => Some(approvals::parse_scope(s).ok_or((
                        StatusCode::BAD_REQUEST,
                        format!("scope: {s:?} is not one of request, resource, namespace, session"),
                    ))?),
                    None => None,
                };
                Action::Approve {
                    for_: for_.map(|d: Duration| d),
                    scope,
                    reason: b.reason,
                }
            } else {
                let b: DenyBody = parse_body(&body)?;
                Action::Deny {
                    reason: b.reason.unwrap_or_default(),
                }
            };
            let a = store.decide(id, &who, action).await.map_err(fail)?;
            info!(approval = %a.id, approver = %who.user, decision = %verb, state = a.state.as_str(), "approval decision");
            Ok(json(StatusCode::OK, &a.view_for(&who)))
        }
        (_, [] | [_] | [_, "approve" | "deny"]) => Err((
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        )),
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no such Airlock API: {path}"),
        )),
    }
}

async fn read_json_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    http_body_util::Limited::new(req.into_body(), MAX_API_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        })
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(b: &[u8]) -> Result<T, ApiError> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON for this call: {e}"),
        )
    })
}

fn json<T: serde::Serialize>(code: StatusCode, v: &T) -> Response<Body> {
    let bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut r = Response::new(body::full(Bytes::from(bytes)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
