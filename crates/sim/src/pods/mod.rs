//! Pod subresources that stream: exec, attach, port-forward and logs.
//!
//! The router checks the pod exists and hands the request over with the stored pod object;
//! everything else (protocol negotiation, upgrades, the container's behaviour) lives here.
//!
//! | subresource | transports |
//! | --- | --- |
//! | exec, attach | WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io` (kubectl 1.30+), SPDY/3.1 with `X-Stream-Protocol-Version` (kubectl 1.27-1.29, or `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`) |
//! | portforward | WebSocket `SPDY/3.1+portforward.k8s.io` (kubectl 1.30+), WebSocket `portforward.k8s.io` channels, SPDY/3.1 `portforward.k8s.io` |
//! | log | plain HTTP, chunked when following |
//!
//! Upgrades need the HTTP/1 connection served with upgrades enabled
//! (`serve_connection_with_upgrades`).

mod fs;
mod io;
mod logs;
mod portforward;
mod remotecommand;
mod shell;
mod tar;
mod upgrade;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{body::Incoming, Request, Response, StatusCode};
use serde_json::{json, Value};

/// Which streaming pod subresource a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSubresource {
    Exec,
    Attach,
    PortForward,
    Log,
}

/// What the router knows about the target pod when it hands a request over.
#[derive(Debug, Clone)]
pub struct PodContext {
    pub namespace: String,
    pub name: String,
    /// The pod object as stored (JSON), for containers, env and mounts.
    pub pod: serde_json::Value,
    /// Where a bare pod's status goes when its main process, run by attach, exits.
    pub(crate) lifecycle: Option<Lifecycle>,
}

/// The store, for marking a container terminated (see [`main_process`]).
#[derive(Clone)]
pub(crate) struct Lifecycle(pub(crate) std::sync::Arc<crate::store::Store>);

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lifecycle")
    }
}

/// The main process attach runs: for a container of a pod that `kubectl run` would create
/// (one without an owner), or an ephemeral container that `kubectl debug` added, that names a
/// command (`command` then `args`, as the kubelet joins them with the image's entrypoint; the
/// simulator's images have none). Containers of controllers' pods keep the generic attach
/// behaviour (echo stdin), since their images' entrypoints are not simulated.
pub(crate) fn main_process(ctx: &PodContext, container: &Container<'_>) -> Option<Vec<String>> {
    let owned = ctx.pod["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|o| !o.is_empty());
    let argv: Vec<String> = ["command", "args"]
        .iter()
        .filter_map(|k| container.spec[*k].as_array())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    ((container.ephemeral || !owned) && !argv.is_empty()).then_some(argv)
}

impl Lifecycle {
    /// The main process of `container` exited with `code`: with `restartPolicy` Never (or
    /// OnFailure and success) the container is terminated and the pod Succeeded or Failed,
    /// which `kubectl run --rm` waits for. With Always the kubelet would restart it: the pod
    /// stays Running.
    /// An ephemeral container is never restarted: it is terminated, the pod carries on.
    pub(crate) fn exited(&self, ns: &str, pod: &str, container: &str, ephemeral: bool, code: i32) {
        let key = (String::new(), "pods".to_owned());
        let _ = self.0.modify(&key, ns, pod, |cur| {
            let mut p = cur.clone();
            let policy = p["spec"]["restartPolicy"].as_str().unwrap_or("Always");
            let ends = ephemeral || policy == "Never" || (policy == "OnFailure" && code == 0);
            if !ends {
                return Ok(p);
            }
            let now = crate::store::now_rfc3339();
            let status = &mut p["status"];
            let statuses = if ephemeral {
                "ephemeralContainerStatuses"
            } else {
                status["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
                "containerStatuses"
            };
            for c in status[statuses].as_array_mut().into_iter().flatten() {
                if c["name"] != container {
                    continue;
                }
                let started = c["state"]["running"]["startedAt"].clone();
                c["ready"] = json!(false);
                c["started"] = json!(false);
                c["state"] = json!({"terminated": {
                    "exitCode": code,
                    "reason": if code == 0 { "Completed" } else { "Error" },
                    "startedAt": started,
                    "finishedAt": now,
                    "containerID": c["containerID"].clone(),
                }});
            }
            if ephemeral {
                return Ok(p);
            }
            for cond in status["conditions"].as_array_mut().into_iter().flatten() {
                if cond["type"] == "Ready" || cond["type"] == "ContainersReady" {
                    cond["status"] = json!("False");
                    cond["reason"] = json!("PodCompleted");
                    cond["lastTransitionTime"] = json!(now);
                }
            }
            Ok(p)
        });
    }
}

/// Serves one streaming pod subresource request. Handles upgrades itself.
pub async fn handle(
    sub: PodSubresource,
    ctx: PodContext,
    req: Request<Incoming>,
) -> Response<crate::Body> {
    match sub {
        PodSubresource::Exec => remotecommand::serve(false, ctx, req),
        PodSubresource::Attach => remotecommand::serve(true, ctx, req),
        PodSubresource::PortForward => portforward::serve(ctx, req),
        PodSubresource::Log => logs::serve(ctx, req),
    }
}

// === helpers shared by the subresources ===

/// Query parameters in order; repeated keys (`command`) stay repeated.
pub(crate) fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Kubernetes booleans in query strings: `true`, `1`, `True`.
pub(crate) fn flag(q: &[(String, String)], key: &str) -> bool {
    param(q, key).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

pub(crate) fn full_body(data: impl Into<Bytes>) -> crate::Body {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A `Status` error response as the API server sends it; kubectl prints `message`.
pub(crate) fn status_error(code: StatusCode, reason: &str, message: &str) -> Response<crate::Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut resp = Response::new(full_body(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn bad_request(message: &str) -> Response<crate::Body> {
    status_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// An error response produced before any upgrade; boxed because responses are large.
pub(crate) type Rejection = Box<Response<crate::Body>>;

/// The chosen container of a pod: its spec entry.
pub(crate) struct Container<'a> {
    pub(crate) name: String,
    pub(crate) spec: &'a Value,
    /// One of `spec.ephemeralContainers` (added by `kubectl debug`).
    pub(crate) ephemeral: bool,
}

/// Resolves `?container=`: empty picks the first container (kubectl always sends one when the
/// pod has several); an unknown name is a 400 like the API server's.
pub(crate) fn pick_container<'a>(
    ctx: &'a PodContext,
    requested: Option<&str>,
) -> Result<Container<'a>, Rejection> {
    let containers: Vec<&Value> = ctx
        .pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let name_of = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match requested.filter(|r| !r.is_empty()) {
        None => containers
            .first()
            .map(|c| Container {
                name: name_of(c),
                spec: c,
                ephemeral: false,
            })
            .ok_or_else(|| Box::new(bad_request(&format!("pod {} has no containers", ctx.name)))),
        Some(want) => containers
            .iter()
            .find(|c| name_of(c) == want)
            .map(|c| Container {
                name: want.to_owned(),
                spec: c,
                ephemeral: false,
            })
            .or_else(|| {
                ctx.pod
                    .pointer("/spec/ephemeralContainers")
                    .and_then(Value::as_array)?
                    .iter()
                    .find(|c| name_of(c) == want)
                    .map(|c| Container {
                        name: want.to_owned(),
                        spec: c,
                        ephemeral: true,
                    })
            })
            .ok_or_else(|| {
                Box::new(bad_request(&format!(
                    "container {want} is not valid for pod {}",
                    ctx.name
                )))
            }),
    }
}

/// The process environment of a container: what `env` prints inside it.
pub(crate) fn container_env(
    ctx: &PodContext,
    c: &Container<'_>,
    tty: bool,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("HOSTNAME".to_owned(), ctx.name.clone()),
    ];
    if tty {
        env.push(("TERM".to_owned(), "xterm".to_owned()));
    }
    for e in c
        .spec
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = e.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
            v.to_owned()
        } else if let Some(path) = e
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            match path {
                "metadata.name" => ctx.name.clone(),
                "metadata.namespace" => ctx.namespace.clone(),
                "status.podIP" => ctx
                    .pod
                    .pointer("/status/podIP")
                    .and_then(Value::as_str)
                    .unwrap_or("10.244.0.10")
                    .to_owned(),
                _ => String::new(),
            }
        } else {
            // secretKeyRef/configMapKeyRef would need the store; the variable still exists.
            String::new()
        };
        env.push((name.to_owned(), value));
    }
    env.extend(
        [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("HOME", "/root"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// A JWT-shaped (unsigned, fake) service account token, stable per pod.
pub(crate) fn service_account_token(namespace: &str, pod: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"alg": "RS256", "kid": "airlock-sim"});
    let claims = json!({
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": 1_893_456_000u64,
        "iat": 1_767_225_600u64,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": pod},
            "serviceaccount": {"name": "default"},
        },
        "sub": format!("system:serviceaccount:{namespace}:default"),
    });
    // The "signature" is deterministic filler: this token authenticates nothing.
    let sig: Vec<u8> = format!("{namespace}/{pod}")
        .bytes()
        .cycle()
        .take(256)
        .enumerate()
        .map(|(i, b)| b.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    format!(
        "{}.{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string()),
        b64.encode(sig)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PodContext {
        PodContext {
            namespace: "shop".into(),
            name: "web-6b7f9c5d4-x2k9p".into(),
            pod: json!({"spec": {"containers": [
                {"name": "app", "env": [{"name": "LOG_LEVEL", "value": "info"}]},
                {"name": "log-shipper"},
            ]}}),
            lifecycle: None,
        }
    }

    #[test]
    fn only_bare_pods_with_a_command_have_a_main_process() {
        let mut c = ctx();
        let spec = json!({"name": "app", "command": ["sh", "-c"], "args": ["echo hi"]});
        let bare = json!({"name": "app"});
        let container = |spec, ephemeral| Container {
            name: "app".into(),
            spec,
            ephemeral,
        };
        assert_eq!(
            main_process(&c, &container(&spec, false)),
            Some(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(main_process(&c, &container(&bare, false)), None);
        c.pod["metadata"]["ownerReferences"] = json!([{"kind": "ReplicaSet", "name": "web"}]);
        assert_eq!(main_process(&c, &container(&spec, false)), None);
        // kubectl debug's ephemeral container runs its command in any pod.
        assert!(main_process(&c, &container(&spec, true)).is_some());
    }

    #[test]
    fn container_selection() {
        let c = ctx();
        assert_eq!(
            pick_container(&c, None).ok().map(|c| c.name),
            Some("app".into())
        );
        assert_eq!(
            pick_container(&c, Some("log-shipper")).ok().map(|c| c.name),
            Some("log-shipper".into())
        );
        let err = pick_container(&c, Some("nope")).err().map(|r| r.status());
        assert_eq!(err, Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn env_has_spec_and_kubernetes_variables() {
        let c = ctx();
        let container = pick_container(&c, None).ok().unwrap();
        let env = container_env(&c, &container, false);
        for want in ["LOG_LEVEL", "HOSTNAME", "PATH", "KUBERNETES_SERVICE_HOST"] {
            assert!(env.iter().any(|(k, _)| k == want), "{want}");
        }
    }

    #[test]
    fn token_looks_like_a_jwt() {
        let t = service_account_token("shop", "web");
        assert_eq!(t.split('.').count(), 3);
        assert!(t.starts_with("eyJ"));
    }
}
