//! The resource API: path parsing and the verbs (get, list, watch, create, update, patch,
//! delete, deletecollection) plus the subresources we serve.

use std::collections::HashMap;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::{body::Incoming, Method, Request, Response};
use serde_json::{json, Value};

use crate::discovery::ResourceInfo;
use crate::error::ApiError;
use crate::http::{self, negotiate, parse_query, Output};
use crate::patch::{self, PatchType};
use crate::pods::{PodContext, PodSubresource};
use crate::selector::{valid_label_value, FieldSelector, LabelSelector};
use crate::server::{Identity, State};
use crate::store::ResourceKey;
use crate::table::{partial_metadata, to_table, IncludeObject};
use crate::{defaults, watch, Body};

/// Which namespaces a collection request covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Every namespace (or a cluster-scoped resource).
    All,
    /// One namespace.
    Namespace(String),
}

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Plural resource.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub sub: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/G/V/...` resource paths (not discovery paths).
pub fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.first() {
        Some(&"api") if segs.len() >= 3 => ("", segs[1], &segs[2..]),
        Some(&"apis") if segs.len() >= 4 => (segs[1], segs[2], &segs[3..]),
        _ => return None,
    };
    if rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let namespaced_path = rest[0] == "namespaces"
        && rest.len() >= 3
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, tail) = if namespaced_path {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource: tail[0].to_string(),
        name: tail.get(1).map(|s| s.to_string()),
        sub: tail.get(2).map(|s| s.to_string()),
    })
}

/// The object as served in the requested version: `apiVersion`/`kind` set.
pub fn render_for_version(info: &ResourceInfo, obj: &Value) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(info.api_version());
    o["kind"] = json!(info.kind);
    // Keep apiVersion and kind first, as upstream serialises them.
    if let Value::Object(m) = &mut o {
        let mut out = serde_json::Map::new();
        for k in ["kind", "apiVersion"] {
            if let Some(v) = m.remove(k) {
                out.insert(k.into(), v);
            }
        }
        out.append(m);
        return Value::Object(out);
    }
    o
}

fn respond(code: u16, v: &Value, output: &Output) -> Response<Body> {
    match output {
        Output::Yaml => {
            let text = serde_yaml::to_string(v).unwrap_or_default();
            let mut r = http::text(code, &text);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/yaml"),
            );
            r
        }
        other => http::json_with_type(code, v, &other.content_type()),
    }
}

/// Renders one object per the negotiated output.
fn respond_object(
    code: u16,
    info: &ResourceInfo,
    obj: &Value,
    output: &Output,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let obj = render_for_version(info, obj);
    match output {
        Output::Table(v) => {
            let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
            respond(
                code,
                &to_table(&info.kind, &[obj], include, v, "", None),
                output,
            )
        }
        Output::Metadata(v) => respond(code, &partial_metadata(&obj, v), output),
        _ => respond(code, &obj, output),
    }
}

async fn read_body(
    req: Request<Incoming>,
) -> Result<(hyper::http::request::Parts, Vec<u8>), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading body: {e}")))?
        .to_bytes();
    Ok((parts, bytes.to_vec()))
}

/// YAML as kube-apiserver decodes it (go-yaml): `<<` merge keys resolved.
fn yaml_to_json(body: &[u8]) -> Result<Value, ApiError> {
    let bad = |e: serde_yaml::Error| ApiError::bad_request(format!("error decoding YAML: {e}"));
    let mut v: serde_yaml::Value = serde_yaml::from_slice(body).map_err(bad)?;
    v.apply_merge().map_err(bad)?;
    serde_json::to_value(v).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

fn parse_object(ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    let ct = ct.to_ascii_lowercase();
    if crate::protobuf::is_protobuf(body) {
        return crate::protobuf::decode(body);
    }
    if ct.contains("protobuf") || ct.contains("cbor") {
        return Err(ApiError::new(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"));
    }
    let v: Value = if ct.contains("yaml") {
        yaml_to_json(body)?
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => yaml_to_json(body).map_err(|_| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?,
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is not a JSON object",
        ));
    }
    Ok(v)
}

fn valid_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            let b = p.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Validation upstream would do that agents are likely to trip: names and labels.
fn validate(info: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if !valid_dns_subdomain(name) {
        return Err(ApiError::invalid(&info.kind, name, "metadata.name", &format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")));
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            let vs = v.as_str().unwrap_or_default();
            if !valid_label_value(vs) || LabelSelector::parse(k).is_err() {
                return Err(ApiError::invalid(&info.kind, name, "metadata.labels", &format!("Invalid value: \"{vs}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")));
            }
        }
    }
    if info.kind == "Pod" || info.kind == "Deployment" {
        let spec = if info.kind == "Pod" {
            &obj["spec"]
        } else {
            &obj["spec"]["template"]["spec"]
        };
        let field = if info.kind == "Pod" {
            "spec.containers"
        } else {
            "spec.template.spec.containers"
        };
        if spec["containers"].as_array().is_none_or(Vec::is_empty) {
            return Err(ApiError::invalid(&info.kind, name, field, "Required value"));
        }
    }
    Ok(())
}

/// Field manager for a write: `?fieldManager=` or the User-Agent's program name, as upstream.
fn manager(q: &HashMap<String, String>, headers: &hyper::HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let ua = headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    ua.split('/').next().unwrap_or("unknown").to_string()
}

fn is_dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

/// Entry point for resource paths. `ident` is the effective user.
pub async fn handle(
    state: Arc<State>,
    ident: Identity,
    t: Target,
    req: Request<Incoming>,
) -> Response<Body> {
    match handle_inner(state, ident, t, req).await {
        Ok(r) => r,
        Err(e) => http::error(&e),
    }
}

async fn handle_inner(
    state: Arc<State>,
    ident: Identity,
    t: Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let info = state
        .registry
        .lookup(&t.group, &t.version, &t.resource)
        .cloned()
        .ok_or_else(ApiError::path_not_found)?;
    if t.namespace.is_some() && !info.namespaced {
        return Err(ApiError::path_not_found());
    }
    let q = parse_query(req.uri().query());
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key: ResourceKey = (info.group.clone(), info.plural.clone());

    // Streaming pod subresources go to the pods module with the raw request (upgrades).
    if let (Some(name), Some(sub), true) = (&t.name, &t.sub, info.kind == "Pod") {
        let which = match sub.as_str() {
            "exec" => Some(PodSubresource::Exec),
            "attach" => Some(PodSubresource::Attach),
            "portforward" => Some(PodSubresource::PortForward),
            "log" => Some(PodSubresource::Log),
            _ => None,
        };
        if let Some(which) = which {
            let ns = t.namespace.clone().unwrap_or_default();
            let pod = state
                .store
                .get(&key, &ns, name)
                .ok_or_else(|| ApiError::not_found("", "pods", name))?;
            let ctx = PodContext {
                namespace: ns,
                name: name.clone(),
                pod,
                lifecycle: Some(crate::pods::Lifecycle(state.store.clone())),
            };
            return Ok(crate::pods::handle(which, ctx, req).await);
        }
    }

    if info.group == crate::metrics::GROUP {
        return crate::metrics::serve(&state, &info, &t, req.method(), &q);
    }
    if !info.is_stored() {
        return virtual_create(&state, &ident, &info, &t, req).await;
    }
    if let Some(sub) = &t.sub {
        let Some(s) = info.subresource(sub) else {
            return Err(ApiError::path_not_found());
        };
        return match s.name.as_str() {
            "status" => object_verb(&state, &info, &key, &t, req, q, accept, Some("status")).await,
            "ephemeralcontainers" if info.kind == "Pod" => {
                object_verb(
                    &state,
                    &info,
                    &key,
                    &t,
                    req,
                    q,
                    accept,
                    Some("ephemeralcontainers"),
                )
                .await
            }
            "scale" => scale(&state, &info, &key, &t, req, q).await,
            // Create-only subresources: kube-apiserver serves them for POST alone.
            "eviction" | "token" if req.method() != hyper::Method::POST => {
                Err(ApiError::method_not_allowed())
            }
            "eviction" => {
                let ns = t.namespace.clone().unwrap_or_default();
                let name = t.name.clone().unwrap_or_default();
                // A dry run (query, or the Eviction's `deleteOptions`) checks and changes
                // nothing; a real eviction deletes the pod, and its owner replaces it.
                let (parts, body) = read_body(req).await?;
                let ct = parts
                    .headers
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/json");
                let eviction = parse_object(ct, &body).unwrap_or(Value::Null);
                let dry = is_dry_run(&q)
                    || eviction["deleteOptions"]["dryRun"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == "All"));
                if dry {
                    state
                        .store
                        .get(&key, &ns, &name)
                        .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, &name))?;
                } else {
                    let deleted = state.store.delete(&key, &ns, &name, true)?;
                    crate::controller::after_delete(&state, &deleted);
                    crate::endpoints::sync(&state, &ns);
                }
                Ok(http::json(
                    201,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ))
            }
            "token" => {
                let (_, body) = read_body(req).await?;
                let mut tr = parse_object("application/json", &body).unwrap_or_else(|_| json!({}));
                tr["status"] = json!({"token": crate::seed::fake_jwt(t.namespace.as_deref().unwrap_or_default(), t.name.as_deref().unwrap_or_default()), "expirationTimestamp": crate::store::rfc3339_in(tr["spec"]["expirationSeconds"].as_i64().unwrap_or(3600))});
                tr["apiVersion"] = json!("authentication.k8s.io/v1");
                tr["kind"] = json!("TokenRequest");
                Ok(http::json(201, &tr))
            }
            _ => Err(ApiError::new(
                503,
                "ServiceUnavailable",
                format!("the {sub} subresource is not simulated"),
            )),
        };
    }
    match &t.name {
        None => collection_verb(&state, &info, &key, &t, req, q, accept).await,
        Some(_) => object_verb(&state, &info, &key, &t, req, q, accept, None).await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn collection_verb(
    state: &Arc<State>,
    info: &ResourceInfo,
    key: &ResourceKey,
    t: &Target,
    req: Request<Incoming>,
    q: HashMap<String, String>,
    accept: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let scope = match &t.namespace {
        Some(ns) => Scope::Namespace(ns.clone()),
        None => Scope::All,
    };
    match *req.method() {
        Method::GET => {
            let output = negotiate(accept.as_deref())?;
            let labels = LabelSelector::parse(
                q.get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let fields = FieldSelector::parse(
                q.get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let include = IncludeObject::parse(q.get("includeObject").map(String::as_str));
            if q.get("watch").is_some_and(|w| crate::watch::query_true(w)) {
                let w = watch::WatchRequest {
                    info: info.clone(),
                    scope,
                    labels,
                    fields,
                    output,
                    include,
                    query: q,
                };
                return Ok(watch::serve(state.store.clone(), w));
            }
            list(
                state, info, key, &scope, &labels, &fields, &output, include, &q,
            )
        }
        Method::POST => {
            let ct = req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let headers = req.headers().clone();
            let (_, body) = read_body(req).await?;
            let obj = parse_object(&ct, &body)?;
            let output = negotiate(accept.as_deref())?;
            let created = create(
                state,
                info,
                key,
                t.namespace.as_deref(),
                obj,
                &q,
                &headers,
                "Update",
            )?;
            Ok(respond_object(201, info, &created, &output, &q))
        }
        Method::DELETE => {
            let labels = LabelSelector::parse(
                q.get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let fields = FieldSelector::parse(
                q.get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let ns = t.namespace.as_deref();
            let (items, _) = state.store.list(key, ns);
            let mut deleted = Vec::new();
            for o in items
                .iter()
                .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
            {
                let n = o["metadata"]["name"].as_str().unwrap_or_default();
                let ons = o["metadata"]["namespace"].as_str().unwrap_or_default();
                if is_dry_run(&q) {
                    deleted.push(render_for_version(info, o));
                } else if let Ok(d) = state.store.delete(key, ons, n, true) {
                    deleted.push(render_for_version(info, &d));
                }
            }
            if info.group.is_empty() && matches!(info.kind.as_str(), "Pod" | "Service") {
                let mut touched: Vec<&str> = deleted
                    .iter()
                    .filter_map(|d| d["metadata"]["namespace"].as_str())
                    .collect();
                touched.dedup();
                for ns in touched {
                    crate::endpoints::sync(state, ns);
                }
            }
            Ok(http::json(
                200,
                &json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": {"resourceVersion": state.store.current_rv().to_string()}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: u64,
    start: String,
}

#[allow(clippy::too_many_arguments)]
fn list(
    state: &Arc<State>,
    info: &ResourceInfo,
    key: &ResourceKey,
    scope: &Scope,
    labels: &LabelSelector,
    fields: &FieldSelector,
    output: &Output,
    include: IncludeObject,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let ns = match scope {
        Scope::Namespace(n) => Some(n.as_str()),
        Scope::All => None,
    };
    let (items, rv) = state.store.list(key, ns);
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
        .collect();
    // Continue tokens encode the last returned (namespace/name); the list is not a snapshot,
    // a documented simplification (upstream serves continuations from the original rv).
    let id = |o: &Value| {
        format!(
            "{}/{}",
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            o["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    if let Some(tok) = q.get("continue").filter(|c| !c.is_empty()) {
        let c: Continue = b64
            .decode(tok)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion",
                )
            })?;
        items.retain(|o| id(o) > c.start);
    }
    let mut cont = None;
    let mut remaining = None;
    if let Some(limit) = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
    {
        if items.len() > limit {
            remaining = Some(items.len() - limit);
            items.truncate(limit);
            if let Some(last) = items.last() {
                let c = Continue {
                    rv,
                    start: id(last),
                };
                cont = Some(b64.encode(serde_json::to_vec(&c).unwrap_or_default()));
            }
        }
    }
    let rendered: Vec<Value> = items.iter().map(|o| render_for_version(info, o)).collect();
    let rv_s = rv.to_string();
    let body = match output {
        Output::Table(v) => to_table(&info.kind, &rendered, include, v, &rv_s, cont.as_deref()),
        Output::Metadata(v) => {
            let mut meta = json!({"resourceVersion": rv_s});
            if let Some(c) = &cont {
                meta["continue"] = json!(c);
            }
            json!({"kind": "PartialObjectMetadataList", "apiVersion": format!("meta.k8s.io/{v}"), "metadata": meta, "items": rendered.iter().map(|o| partial_metadata(o, v)).collect::<Vec<_>>()})
        }
        _ => {
            let mut meta = json!({"resourceVersion": rv_s});
            if let Some(c) = &cont {
                meta["continue"] = json!(c);
            }
            if let Some(r) = remaining {
                meta["remainingItemCount"] = json!(r);
            }
            // Items of a typed list carry no kind/apiVersion upstream.
            let items: Vec<Value> = rendered
                .into_iter()
                .map(|mut o| {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    o
                })
                .collect();
            json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": meta, "items": items})
        }
    };
    Ok(respond(200, &body, output))
}

/// Creates an object (POST, or server-side apply of a missing object).
#[allow(clippy::too_many_arguments)]
pub fn create(
    state: &State,
    info: &ResourceInfo,
    key: &ResourceKey,
    path_ns: Option<&str>,
    mut obj: Value,
    q: &HashMap<String, String>,
    headers: &hyper::HeaderMap,
    operation: &str,
) -> Result<Value, ApiError> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let body_ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
    if let (Some(b), Some(p)) = (&body_ns, path_ns) {
        if b != p && !b.is_empty() {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
        }
    }
    if info.namespaced {
        match path_ns {
            Some(ns) => obj["metadata"]["namespace"] = json!(ns),
            None => return Err(ApiError::path_not_found()),
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let has_name = obj["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    if !has_name {
        match obj["metadata"]["generateName"].as_str() {
            Some(g) if !g.is_empty() => {
                obj["metadata"]["name"] = json!(format!("{g}{}", defaults::name_suffix()))
            }
            _ => {
                return Err(ApiError::invalid(
                    &info.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ))
            }
        }
    }
    for k in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
        "generation",
        "deletionTimestamp",
    ] {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove(k);
        }
    }
    obj = render_for_version(info, &obj);
    validate(info, &obj)?;
    defaults::on_create(&info.kind, &mut obj);
    let fields = patch::fields_v1(&obj);
    patch::record_managed_fields(
        &mut obj,
        &manager(q, headers),
        operation,
        &info.api_version(),
        fields,
        None,
    );
    if obj.get("spec").is_some() {
        obj["metadata"]["generation"] = json!(1);
    }
    defaults::reconcile_status(&info.kind, &mut obj);
    if is_dry_run(q) {
        if info.namespaced
            && !state
                .store
                .namespace_exists(obj["metadata"]["namespace"].as_str().unwrap_or_default())
        {
            return Err(ApiError::not_found(
                "",
                "namespaces",
                obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            ));
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if state
            .store
            .get(key, path_ns.unwrap_or_default(), &name)
            .is_some()
        {
            return Err(ApiError::already_exists(&info.group, &info.plural, &name));
        }
        obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        obj["metadata"]["creationTimestamp"] = json!(crate::store::now_rfc3339());
        return Ok(obj);
    }
    let created = state.store.create(key, obj)?;
    if info.kind == "Pod" && info.group.is_empty() {
        crate::events::pod_started(state, &created);
    }
    crate::controller::after_write(
        state,
        &info.kind,
        path_ns.unwrap_or_default(),
        created["metadata"]["name"].as_str().unwrap_or_default(),
    );
    if info.kind == "Namespace" && info.group.is_empty() {
        // What the serviceaccount and root-ca-cert-publisher controllers do for a new namespace.
        let ns = created["metadata"]["name"].as_str().unwrap_or_default();
        crate::seed::namespace_extras(state, ns);
    }
    Ok(created)
}

#[allow(clippy::too_many_arguments)]
async fn object_verb(
    state: &Arc<State>,
    info: &ResourceInfo,
    key: &ResourceKey,
    t: &Target,
    req: Request<Incoming>,
    q: HashMap<String, String>,
    accept: Option<String>,
    sub: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    if info.namespaced && t.namespace.is_none() {
        return Err(ApiError::path_not_found());
    }
    let output = negotiate(accept.as_deref())?;
    let method = req.method().clone();
    match method {
        Method::GET => {
            let obj = state
                .store
                .get(key, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, &name))?;
            Ok(respond_object(200, info, &obj, &output, &q))
        }
        Method::PUT => {
            let ct = req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let headers = req.headers().clone();
            let (_, body) = read_body(req).await?;
            let new = parse_object(&ct, &body)?;
            if let Some(n) = new["metadata"]["name"].as_str() {
                if n != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
            }
            let mgr = manager(&q, &headers);
            let out = write(state, info, key, &ns, &name, &q, sub, move |cur| {
                let mut next = new.clone();
                match sub {
                    // The status subresource changes only status.
                    Some("status") => {
                        let mut c = cur.clone();
                        c["status"] = next["status"].clone();
                        c["metadata"]["resourceVersion"] =
                            next["metadata"]["resourceVersion"].clone();
                        next = c;
                    }
                    Some("ephemeralcontainers") => {
                        let rv = next["metadata"]["resourceVersion"].clone();
                        next = add_ephemeral_containers(cur, &next)?;
                        next["metadata"]["resourceVersion"] = rv;
                    }
                    // The main resource ignores status changes when a status subresource exists.
                    _ if info.subresource("status").is_some() => {
                        next["status"] = cur["status"].clone()
                    }
                    _ => {}
                }
                if next["metadata"]["managedFields"].is_null() {
                    next["metadata"]["managedFields"] = cur["metadata"]["managedFields"].clone();
                }
                // A request that rewrites managedFields itself gets them as written.
                if next["metadata"]["managedFields"] == cur["metadata"]["managedFields"] {
                    let fields = patch::fields_v1(&new);
                    patch::record_managed_fields(
                        &mut next,
                        &mgr,
                        "Update",
                        &info.api_version(),
                        fields,
                        sub,
                    );
                }
                Ok(next)
            })?;
            Ok(respond_object(200, info, &out, &output, &q))
        }
        Method::PATCH => {
            let ct = req
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let headers = req.headers().clone();
            let pt = PatchType::from_content_type(&ct).ok_or_else(|| {
                ApiError::new(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json")
            })?;
            let (_, body) = read_body(req).await?;
            let p: Value = if pt == PatchType::Apply {
                yaml_to_json(&body)?
            } else {
                serde_json::from_slice(&body).map_err(|e| {
                    ApiError::bad_request(format!(
                        "the server rejected our request due to an error in our request: {e}"
                    ))
                })?
            };
            let mgr = manager(&q, &headers);
            if pt == PatchType::Apply {
                if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
                    return Err(ApiError::bad_request(
                        "PATCH requests for apply must specify fieldManager",
                    ));
                }
                if state.store.get(key, &ns, &name).is_none() && sub.is_none() {
                    let mut obj = p.clone();
                    obj["metadata"]["name"] = json!(name);
                    let created = create(
                        state,
                        info,
                        key,
                        t.namespace.as_deref(),
                        obj,
                        &q,
                        &headers,
                        "Apply",
                    )?;
                    return Ok(respond_object(201, info, &created, &output, &q));
                }
            }
            let out = write(state, info, key, &ns, &name, &q, sub, move |cur| {
                let base = cur.clone();
                let mut next = match pt {
                    PatchType::Json => patch::json_patch(&base, &p)?,
                    PatchType::Merge => patch::merge_patch(&base, &p),
                    PatchType::Strategic => patch::strategic_merge(&base, &p)?,
                    PatchType::Apply => patch::server_side_apply(&base, &p),
                };
                match sub {
                    Some("status") => {
                        let mut c = cur.clone();
                        c["status"] = next["status"].clone();
                        next = c;
                    }
                    Some("ephemeralcontainers") => next = add_ephemeral_containers(cur, &next)?,
                    _ if info.subresource("status").is_some() && pt != PatchType::Apply => {
                        next["status"] = cur["status"].clone()
                    }
                    _ => {}
                }
                let op = if pt == PatchType::Apply {
                    "Apply"
                } else {
                    "Update"
                };
                // A request that rewrites managedFields itself (kubectl's client-side to
                // server-side apply migration) gets them as written, as upstream.
                if next["metadata"]["managedFields"] == cur["metadata"]["managedFields"] {
                    patch::record_managed_fields(
                        &mut next,
                        &mgr,
                        op,
                        &info.api_version(),
                        patch::fields_v1(&p),
                        sub,
                    );
                }
                Ok(next)
            })?;
            Ok(respond_object(200, info, &out, &output, &q))
        }
        // Subresources (status, scale, ephemeralcontainers) have no delete: kube-apiserver
        // answers 405, and never deletes the object.
        Method::DELETE if sub.is_some() => Err(ApiError::method_not_allowed()),
        Method::DELETE => {
            let (_, body) = read_body(req).await?;
            let opts: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let policy = opts["propagationPolicy"]
                .as_str()
                .or(q.get("propagationPolicy").map(String::as_str))
                .unwrap_or("Background");
            let orphan = policy == "Orphan" || opts["orphanDependents"] == true;
            let dry = is_dry_run(&q)
                || opts["dryRun"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == "All"));
            let cur = state
                .store
                .get(key, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, &name))?;
            if let Some(pre) = opts["preconditions"]["resourceVersion"].as_str() {
                if Some(pre) != cur["metadata"]["resourceVersion"].as_str() {
                    return Err(ApiError::conflict(&info.group, &info.plural, &name));
                }
            }
            if let Some(pre) = opts["preconditions"]["uid"].as_str() {
                if Some(pre) != cur["metadata"]["uid"].as_str() {
                    return Err(ApiError::conflict(&info.group, &info.plural, &name));
                }
            }
            let mut deleted = if dry {
                cur
            } else {
                state.store.delete(key, &ns, &name, !orphan)?
            };
            if !dry {
                // The owning ReplicaSet or StatefulSet replaces a deleted pod, as upstream.
                crate::controller::after_delete(state, &deleted);
                if info.group.is_empty() && matches!(info.kind.as_str(), "Pod" | "Service") {
                    crate::endpoints::sync(state, &ns);
                }
            }
            match info.kind.as_str() {
                // Pods are deleted gracefully upstream, namespaces go Terminating: both answer
                // with the object rather than a Status.
                "Pod" => {
                    deleted["metadata"]["deletionTimestamp"] = json!(crate::store::now_rfc3339());
                    deleted["metadata"]["deletionGracePeriodSeconds"] = json!(opts
                        ["gracePeriodSeconds"]
                        .as_i64()
                        .or(q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()))
                        .unwrap_or(30));
                    Ok(respond_object(200, info, &deleted, &Output::Json, &q))
                }
                "Namespace" => {
                    deleted["metadata"]["deletionTimestamp"] = json!(crate::store::now_rfc3339());
                    deleted["status"]["phase"] = json!("Terminating");
                    Ok(respond_object(200, info, &deleted, &Output::Json, &q))
                }
                _ => Ok(http::json(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": info.group, "kind": info.plural, "uid": deleted["metadata"]["uid"]}}),
                )),
            }
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The `ephemeralcontainers` subresource (`kubectl debug`): only `spec.ephemeralContainers`
/// changes, and only by additions, as upstream validates; each new container starts running
/// at once (`status.ephemeralContainerStatuses`).
fn add_ephemeral_containers(cur: &Value, next: &Value) -> Result<Value, ApiError> {
    let name = cur["metadata"]["name"].as_str().unwrap_or_default();
    let invalid = |detail: String| {
        ApiError::new(
            422,
            "Invalid",
            format!("Pod \"{name}\" is invalid: spec.ephemeralContainers: {detail}"),
        )
    };
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let old = list(&cur["spec"]["ephemeralContainers"]);
    let new = list(&next["spec"]["ephemeralContainers"]);
    for o in &old {
        if !new.contains(o) {
            return Err(invalid(format!(
                "Forbidden: existing ephemeral containers {} may not be changed",
                o["name"]
            )));
        }
    }
    let taken: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| cur["spec"][*k].as_array())
        .flatten()
        .map(|c| &c["name"])
        .collect();
    let mut c = cur.clone();
    for e in new.iter().filter(|e| !old.contains(e)) {
        let Some(cname) = e["name"].as_str().filter(|n| !n.is_empty()) else {
            return Err(invalid("Required value: name".into()));
        };
        if taken.contains(&&e["name"]) || old.iter().any(|o| o["name"] == e["name"]) {
            return Err(invalid(format!("Duplicate value: \"{cname}\"")));
        }
        if e["image"].as_str().is_none_or(str::is_empty) {
            return Err(invalid(format!("Required value: image of {cname}")));
        }
        let statuses = &mut c["status"]["ephemeralContainerStatuses"];
        if !statuses.is_array() {
            *statuses = json!([]);
        }
        if let Some(a) = statuses.as_array_mut() {
            a.push(json!({
                "name": cname,
                "image": e["image"],
                "imageID": format!("{}@sha256:{}", e["image"].as_str().unwrap_or_default(), "0".repeat(64)),
                "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple()),
                "ready": false,
                "restartCount": 0,
                "state": {"running": {"startedAt": crate::store::now_rfc3339()}},
            }));
        }
    }
    c["spec"]["ephemeralContainers"] = Value::Array(new);
    Ok(c)
}

/// A read-modify-write with defaults and status reconciliation, honouring dryRun.
#[allow(clippy::too_many_arguments)]
fn write<F>(
    state: &State,
    info: &ResourceInfo,
    key: &ResourceKey,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
    sub: Option<&str>,
    f: F,
) -> Result<Value, ApiError>
where
    F: FnOnce(&Value) -> Result<Value, ApiError>,
{
    let kind = info.kind.clone();
    let wrapped = |cur: &Value| -> Result<Value, ApiError> {
        let mut next = f(cur)?;
        next = render_for_version(info, &next);
        if !next["metadata"].is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        defaults::normalize(&kind, &mut next);
        if sub.is_none() {
            let mut probe = next.clone();
            probe["metadata"]["name"] = json!(name);
            validate(info, &probe)?;
            // Controllers would converge the status to the new spec; do it in the same write
            // so watchers see one event. The store bumps generation the same way.
            if let Some(g) = cur["metadata"]["generation"].as_i64() {
                let bumped = if crate::store::spec_changed(cur, &next) {
                    g + 1
                } else {
                    g
                };
                next["metadata"]["generation"] = json!(bumped);
            }
            defaults::reconcile_status(&kind, &mut next);
        }
        Ok(next)
    };
    if is_dry_run(q) {
        let cur = state
            .store
            .get(key, ns, name)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        return wrapped(&cur);
    }
    let out = state.store.modify(key, ns, name, wrapped)?;
    crate::controller::after_write(state, &kind, ns, name);
    // The controllers may have written again (e.g. the revision annotation).
    Ok(state.store.get(key, ns, name).unwrap_or(out))
}

/// The `scale` subresource of deployments, replicasets, statefulsets, replicationcontrollers.
async fn scale(
    state: &Arc<State>,
    info: &ResourceInfo,
    key: &ResourceKey,
    t: &Target,
    req: Request<Incoming>,
    q: HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let to_scale = |o: &Value| {
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"], "uid": o["metadata"]["uid"], "resourceVersion": o["metadata"]["resourceVersion"], "creationTimestamp": o["metadata"]["creationTimestamp"]},
            "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
            "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0), "selector": crate::table::selector_string(&o["spec"]["selector"])},
        })
    };
    let method = req.method().clone();
    let ct = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (_, body) = read_body(req).await?;
    let out = match method {
        Method::GET => state
            .store
            .get(key, &ns, &name)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, &name))?,
        Method::PUT | Method::PATCH => {
            let input: Value =
                serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let pt = if method == Method::PUT {
                None
            } else {
                Some(PatchType::from_content_type(&ct).ok_or_else(|| {
                    ApiError::new(415, "UnsupportedMediaType", "unsupported patch type")
                })?)
            };
            let sname = name.clone();
            write(state, info, key, &ns, &name, &q, None, move |cur| {
                let sc = to_scale(cur);
                let new_sc = match pt {
                    None => input.clone(),
                    Some(PatchType::Json) => patch::json_patch(&sc, &input)?,
                    Some(PatchType::Merge) => patch::merge_patch(&sc, &input),
                    Some(_) => patch::strategic_merge(&sc, &input)?,
                };
                let replicas = new_sc["spec"]["replicas"].as_i64().ok_or_else(|| {
                    ApiError::invalid("Scale", &sname, "spec.replicas", "Required value")
                })?;
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        "Scale",
                        &sname,
                        "spec.replicas",
                        &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                    ));
                }
                let mut next = cur.clone();
                next["spec"]["replicas"] = json!(replicas);
                if let Some(rv) = new_sc["metadata"]["resourceVersion"].as_str() {
                    next["metadata"]["resourceVersion"] = json!(rv);
                }
                Ok(next)
            })?
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(http::json(200, &to_scale(&out)))
}

/// Create-only "review" resources: answered, never stored. Everything is allowed.
async fn virtual_create(
    state: &Arc<State>,
    ident: &Identity,
    info: &ResourceInfo,
    t: &Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST || t.name.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let (_, body) = read_body(req).await?;
    let mut obj = parse_object("application/json", &body)?;
    obj = render_for_version(info, &obj);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    match info.kind.as_str() {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            obj["status"] =
                json!({"allowed": true, "reason": "simulated cluster: every request is allowed"});
        }
        "SelfSubjectRulesReview" => {
            obj["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
        "SelfSubjectReview" => {
            let mut ui = json!({"username": ident.user, "groups": ident.groups});
            if !ident.uid.is_empty() {
                ui["uid"] = json!(ident.uid);
            }
            if !ident.extra.is_empty() {
                ui["extra"] = json!(ident.extra);
            }
            obj["status"] = json!({"userInfo": ui});
        }
        "TokenReview" => {
            let token = obj["spec"]["token"].as_str().unwrap_or_default();
            obj["status"] = if token == state.admin_token {
                json!({"authenticated": true, "user": {"username": "sim-admin", "groups": ["system:masters", "system:authenticated"]}, "audiences": ["https://kubernetes.default.svc.cluster.local"]})
            } else {
                json!({"authenticated": false, "error": "invalid bearer token"})
            };
        }
        "Binding" => {
            let ns = t.namespace.clone().unwrap_or_default();
            let pod = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let node = obj["target"]["name"].clone();
            state
                .store
                .modify(&(String::new(), "pods".into()), &ns, &pod, |cur| {
                    let mut n = cur.clone();
                    n["spec"]["nodeName"] = node;
                    Ok(n)
                })?;
            return Ok(http::json(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ));
        }
        _ => return Err(ApiError::method_not_allowed()),
    }
    Ok(http::json(201, &obj))
}

#[cfg(test)]
mod tests {

    #[test]
    fn ephemeral_containers_are_only_added() {
        let pod = json!({"metadata": {"name": "web"},
            "spec": {"containers": [{"name": "app"}], "ephemeralContainers": [{"name": "d1", "image": "busybox"}]},
            "status": {"ephemeralContainerStatuses": [{"name": "d1"}]}});
        let with = |list: Value| json!({"spec": {"ephemeralContainers": list}});
        let added = add_ephemeral_containers(
            &pod,
            &with(json!([{"name": "d1", "image": "busybox"}, {"name": "d2", "image": "busybox"}])),
        )
        .unwrap();
        let statuses = added["status"]["ephemeralContainerStatuses"]
            .as_array()
            .unwrap();
        assert_eq!(statuses.len(), 2);
        assert!(statuses[1]["state"]["running"].is_object());
        for (list, why) in [
            (
                json!([{"name": "d1", "image": "alpine"}]),
                "may not be changed",
            ),
            (json!([]), "may not be changed"),
            (
                json!([{"name": "d1", "image": "busybox"}, {"name": "app", "image": "x"}]),
                "Duplicate value",
            ),
            (
                json!([{"name": "d1", "image": "busybox"}, {"name": "d3"}]),
                "Required value: image",
            ),
        ] {
            let e = add_ephemeral_containers(&pod, &with(list)).unwrap_err();
            assert_eq!(e.code, 422);
            assert!(e.message.contains(why), "{}", e.message);
        }
    }

    use super::*;

    #[test]
    fn path_table() {
        let t = |g: &str, v: &str, ns: Option<&str>, r: &str, n: Option<&str>, s: Option<&str>| {
            Target {
                group: g.into(),
                version: v.into(),
                namespace: ns.map(Into::into),
                resource: r.into(),
                name: n.map(Into::into),
                sub: s.map(Into::into),
            }
        };
        let cases = [
            ("/api/v1/pods", Some(t("", "v1", None, "pods", None, None))),
            (
                "/api/v1/namespaces",
                Some(t("", "v1", None, "namespaces", None, None)),
            ),
            (
                "/api/v1/namespaces/shop",
                Some(t("", "v1", None, "namespaces", Some("shop"), None)),
            ),
            (
                "/api/v1/namespaces/shop/status",
                Some(t(
                    "",
                    "v1",
                    None,
                    "namespaces",
                    Some("shop"),
                    Some("status"),
                )),
            ),
            (
                "/api/v1/namespaces/shop/pods",
                Some(t("", "v1", Some("shop"), "pods", None, None)),
            ),
            (
                "/api/v1/namespaces/shop/pods/web/log",
                Some(t("", "v1", Some("shop"), "pods", Some("web"), Some("log"))),
            ),
            (
                "/apis/apps/v1/namespaces/shop/deployments/web/scale",
                Some(t(
                    "apps",
                    "v1",
                    Some("shop"),
                    "deployments",
                    Some("web"),
                    Some("scale"),
                )),
            ),
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
                Some(t(
                    "rbac.authorization.k8s.io",
                    "v1",
                    None,
                    "clusterroles",
                    Some("admin"),
                    None,
                )),
            ),
            ("/api/v1", None),
            ("/apis/apps/v1", None),
        ];
        for (p, want) in cases {
            assert_eq!(parse_path(p), want, "{p}");
        }
    }
}
