//! The listeners: HTTPS API (HTTP/1.1 and HTTP/2 by ALPN, upgrades allowed), authentication
//! and impersonation, request recording, and the top-level router (health, version,
//! discovery, OpenAPI, then resources).
//!
//! A request's phases, in order: TLS (client certificate optional) -> Audit-ID -> authenticate
//! (bearer admin token or the admin client certificate, else 401) -> impersonation -> record
//! for introspection -> route -> echo Audit-Id on the response.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use hyper::{body::Incoming, Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::discovery::Registry;
use crate::error::ApiError;
use crate::http::{self, parse_accept};
use crate::introspect::{header_map, Record, Recorder};
use crate::store::{now_rfc3339, Store};
use crate::{api, openapi, Body};

/// Shared server state.
pub struct State {
    /// API surface.
    pub registry: Registry,
    /// Objects.
    pub store: Arc<Store>,
    /// The admin bearer token.
    pub admin_token: String,
    /// DER of the admin client certificate.
    pub admin_cert_der: Vec<u8>,
    /// Request log.
    pub recorder: Arc<Recorder>,
    /// CA PEM (for `kube-root-ca.crt` and token secrets).
    pub ca_pem: String,
    /// `host:port` we listen on.
    pub server_address: String,
}

/// An authenticated (possibly impersonated) user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// Groups.
    pub groups: Vec<String>,
    /// UID, if given.
    pub uid: String,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

fn admin() -> Identity {
    Identity {
        user: "sim-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..Default::default()
    }
}

/// Applies `Impersonate-*` headers on behalf of an authenticated admin (who may impersonate
/// anyone). Returns `None` when no impersonation was requested.
pub fn impersonate(headers: &hyper::HeaderMap) -> Result<Option<Identity>, ApiError> {
    let get_all = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let user = get_all("impersonate-user").into_iter().next();
    let groups = get_all("impersonate-group");
    let uid = get_all("impersonate-uid").into_iter().next();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix("impersonate-extra-") {
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .to_string();
            extra
                .entry(key)
                .or_default()
                .push(v.to_str().unwrap_or_default().to_string());
        }
    }
    let Some(user) = user else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(ApiError::new(
                500,
                "InternalError",
                "Internal error occurred: requested impersonation of groups, uid or extra without impersonating a user",
            ));
        }
        return Ok(None);
    };
    let mut all_groups = groups;
    if let Some(rest) = user.strip_prefix("system:serviceaccount:") {
        let ns = rest.split(':').next().unwrap_or_default();
        for g in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ] {
            if !all_groups.contains(&g) {
                all_groups.push(g);
            }
        }
    }
    if user != "system:anonymous" && !all_groups.iter().any(|g| g == "system:authenticated") {
        all_groups.push("system:authenticated".into());
    }
    Ok(Some(Identity {
        user,
        groups: all_groups,
        uid: uid.unwrap_or_default(),
        extra,
    }))
}

/// Serves the API listener until `shutdown` flips.
pub async fn serve_api(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(error = %e, "tls handshake failed");
                    return;
                }
            };
            let cert_admin = crate::tls::is_admin_cert(
                tls.get_ref().1.peer_certificates(),
                &state.admin_cert_der,
            );
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, cert_admin, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "connection ended with error") },
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}

/// Serves the plain-HTTP introspection listener until `shutdown` flips.
pub async fn serve_introspect(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (rec, store) = (state.recorder.clone(), state.store.clone());
                async move { Ok::<_, Infallible>(crate::introspect::serve(rec, store, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn handle(state: Arc<State>, cert_admin: bool, req: Request<Incoming>) -> Response<Body> {
    let audit_id = req
        .headers()
        .get("audit-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let bearer_ok = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == state.admin_token);
    let authenticated = bearer_ok || cert_admin;
    let ident: Result<Identity, ApiError> = if authenticated {
        impersonate(req.headers()).map(|i| i.unwrap_or_else(admin))
    } else {
        Err(ApiError::unauthorized())
    };
    let protocol = match req.version() {
        hyper::Version::HTTP_2 => "HTTP/2",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let shown = ident.clone().unwrap_or_default();
    state.recorder.push(Record {
        seq: 0,
        time: now_rfc3339(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or_default().to_string(),
        headers: header_map(req.headers()),
        user: shown.user,
        groups: shown.groups,
        audit_id: audit_id.clone(),
        protocol: protocol.to_string(),
    });
    let head = req.method() == hyper::Method::HEAD;
    let mut resp = match ident {
        Ok(ident) => route(state, ident, req).await,
        Err(e) => http::error(&e),
    };
    if let Ok(h) = audit_id.parse() {
        resp.headers_mut().insert("audit-id", h);
    }
    if head {
        // Go's HTTP servers send no body to HEAD; hyper's HTTP/2 server would, and the
        // client would reset the stream.
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, http::full(bytes::Bytes::new()));
    }
    resp
}

/// Aggregated discovery variants kubectl asks for, newest first.
fn aggregated_version(accept: Option<&str>) -> Option<String> {
    for r in parse_accept(accept.unwrap_or_default()) {
        let p = |k: &str| r.params.get(k).map(String::as_str);
        if r.mime == "application/json"
            && p("as") == Some("APIGroupDiscoveryList")
            && p("g") == Some("apidiscovery.k8s.io")
        {
            if let Some(v @ ("v2" | "v2beta1")) = p("v") {
                return Some(v.to_string());
            }
            continue;
        }
        if (r.mime == "application/json" || r.mime == "*/*") && p("as").is_none() {
            return None;
        }
    }
    None
}

fn discovery_response(v: serde_json::Value, agg: Option<&str>) -> Response<Body> {
    match agg {
        Some(ver) => http::json_with_type(
            200,
            &v,
            &format!("application/json;g=apidiscovery.k8s.io;v={ver};as=APIGroupDiscoveryList"),
        ),
        None => http::json(200, &v),
    }
}

async fn route(state: Arc<State>, ident: Identity, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let reg = &state.registry;
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (is_get, segs.as_slice()) {
        (true, ["healthz" | "livez" | "readyz", ..]) => return http::text(200, "ok"),
        (true, ["version"]) => {
            return http::json(
                200,
                &json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0", "gitCommit": "9edcffcde5595e8a5b1a35f88c421764e575afce", "gitTreeState": "clean", "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64"}),
            )
        }
        (true, ["openapi", "v2"]) => {
            let wants_pb = accept.as_deref().is_some_and(|a| a.contains("protobuf"));
            if wants_pb {
                let mut r = Response::new(http::full(openapi::v2_protobuf()));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    ),
                );
                return r;
            }
            return http::json(200, &openapi::v2_json());
        }
        (true, ["openapi", "v3"]) => return http::json(200, &openapi::index(reg)),
        (true, ["openapi", "v3", rest @ ..]) => {
            return match openapi::group_version(reg, &rest.join("/")) {
                Some(doc) => http::json(200, &doc),
                None => http::error(&ApiError::path_not_found()),
            }
        }
        (true, ["api"]) => {
            let agg = aggregated_version(accept.as_deref());
            let body = match &agg {
                Some(v) => reg.aggregated(true, v),
                None => reg.core_versions(&state.server_address),
            };
            return discovery_response(body, agg.as_deref());
        }
        (true, ["apis"]) => {
            let agg = aggregated_version(accept.as_deref());
            let body = match &agg {
                Some(v) => reg.aggregated(false, v),
                None => reg.group_list(),
            };
            return discovery_response(body, agg.as_deref());
        }
        (true, ["api", v]) => {
            return match reg.resource_list("", v) {
                Some(d) => http::json(200, &d),
                None => http::error(&ApiError::path_not_found()),
            }
        }
        (true, ["apis", g]) => {
            return match reg.group(g) {
                Some(d) => http::json(200, &d),
                None => http::error(&ApiError::path_not_found()),
            }
        }
        (true, ["apis", g, v]) => {
            return match reg.resource_list(g, v) {
                Some(d) => http::json(200, &d),
                None => http::error(&ApiError::path_not_found()),
            }
        }
        _ => {}
    }
    match api::parse_path(&path) {
        Some(t) => api::handle(state, ident, t, req).await,
        None => http::error(&ApiError::path_not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impersonation_table() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = hyper::HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert_eq!(impersonate(&h(&[])).unwrap(), None);
        let i = impersonate(&h(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "dev"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Extra-Scopes%2Fx", "a"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(i.user, "jane");
        assert_eq!(i.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(i.extra.get("scopes/x").unwrap(), &vec!["a".to_string()]);
        let sa = impersonate(&h(&[(
            "Impersonate-User",
            "system:serviceaccount:shop:web",
        )]))
        .unwrap()
        .unwrap();
        assert!(sa
            .groups
            .contains(&"system:serviceaccounts:shop".to_string()));
        assert!(impersonate(&h(&[("Impersonate-Group", "dev")])).is_err());
    }

    #[test]
    fn aggregated_negotiation() {
        let cases = [
            (Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"), Some("v2")),
            (Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"), Some("v2beta1")),
            (Some("application/json, */*"), None),
            (None, None),
        ];
        for (accept, want) in cases {
            assert_eq!(aggregated_version(accept).as_deref(), want, "{accept:?}");
        }
    }
}
