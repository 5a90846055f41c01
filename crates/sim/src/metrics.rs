//! `metrics.k8s.io/v1beta1`, as metrics-server serves it, so that `kubectl top` works.
//!
//! The usage figures are made up but stable: derived from each pod's, container's or node's
//! name, so a test can run `kubectl top` twice and compare. Like metrics-server, only running
//! pods and ready nodes have metrics, the API is read-only (get and list, no watch), and
//! label selectors and `metadata.name`/`metadata.namespace` field selectors apply to the pods
//! and nodes the metrics belong to.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
};

use hyper::{Method, Response};
use serde_json::{json, Value};

use crate::{
    api::Target,
    discovery::ResourceInfo,
    error::ApiError,
    http,
    selector::{FieldSelector, LabelSelector},
    server::State,
    store::{now_rfc3339, ResourceKey},
    Body,
};

/// The group this module serves.
pub const GROUP: &str = "metrics.k8s.io";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// How long a sample is said to cover, as metrics-server reports it.
const WINDOW: &str = "15.012s";

/// The `APIResourceList` metrics-server registers (its `v1beta1` discovery document).
pub const DISCOVERY: &str = r#"{
  "kind": "APIResourceList",
  "apiVersion": "v1",
  "groupVersion": "metrics.k8s.io/v1beta1",
  "resources": [
    {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]}
  ]
}"#;

/// Answers a request for `pods` or `nodes` metrics.
pub fn serve(
    state: &State,
    info: &ResourceInfo,
    t: &Target,
    method: &Method,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    if method != Method::GET || q.get("watch").is_some_and(|w| crate::watch::query_true(w)) {
        return Err(ApiError::method_not_allowed());
    }
    if t.sub.is_some() {
        return Err(ApiError::path_not_found());
    }
    let pods = info.plural == "pods";
    let key: ResourceKey = (String::new(), info.plural.clone());
    let metrics = |obj: &Value| {
        if pods {
            pod_metrics(obj)
        } else {
            node_metrics(obj)
        }
    };
    if let Some(name) = &t.name {
        let ns = t.namespace.as_deref().unwrap_or_default();
        return state
            .store
            .get(&key, ns, name)
            .and_then(|o| metrics(&o))
            .map(|m| http::json(200, &m))
            // As metrics-server words it: `podmetrics.metrics.k8s.io "shop/web-0" not found`.
            .ok_or_else(|| {
                let (resource, name) = if pods {
                    ("podmetrics", format!("{ns}/{name}"))
                } else {
                    ("nodemetrics", name.clone())
                };
                ApiError::not_found(GROUP, resource, &name)
            });
    }
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))?;
    // metrics-server selects on the object's name and namespace only.
    if let Some((field, _, _)) = fields
        .0
        .iter()
        .find(|(f, _, _)| f != "metadata.name" && f != "metadata.namespace")
    {
        return Err(ApiError::bad_request(format!(
            "field label not supported: {field}"
        )));
    }
    let (objects, _) = state.store.list(&key, t.namespace.as_deref());
    let items: Vec<Value> = objects
        .iter()
        .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
        .filter_map(metrics)
        .collect();
    let kind = if pods {
        "PodMetricsList"
    } else {
        "NodeMetricsList"
    };
    Ok(http::json(
        200,
        &json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items}),
    ))
}

fn pod_metrics(pod: &Value) -> Option<Value> {
    if pod["status"]["phase"] != "Running" {
        return None;
    }
    let meta = &pod["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or_default();
    let name = meta["name"].as_str().unwrap_or_default();
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .map(|c| {
            let seed = stable(&[ns, name, c]);
            json!({"name": c, "usage": usage(seed, 1_000_000, 250_000_000, 8 * 1024, 256 * 1024)})
        })
        .collect();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": now_rfc3339(), "labels": meta["labels"]},
        "timestamp": now_rfc3339(),
        "window": WINDOW,
        "containers": containers,
    }))
}

fn node_metrics(node: &Value) -> Option<Value> {
    let ready = node["status"]["conditions"]
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    if !ready {
        return None;
    }
    let meta = &node["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": {"name": name, "creationTimestamp": now_rfc3339(), "labels": meta["labels"]},
        "timestamp": now_rfc3339(),
        "window": WINDOW,
        "usage": usage(stable(&[name]), 200_000_000, 1_500_000_000, 1024 * 1024, 4 * 1024 * 1024),
    }))
}

/// CPU in nanocores and memory in KiB, each within its range, from `seed`.
fn usage(seed: u64, cpu_min: u64, cpu_max: u64, mem_min_ki: u64, mem_max_ki: u64) -> Value {
    let cpu = cpu_min + seed % (cpu_max - cpu_min);
    let mem = mem_min_ki + (seed >> 32) % (mem_max_ki - mem_min_ki);
    json!({"cpu": format!("{cpu}n"), "memory": format!("{mem}Ki")})
}

/// The same number for the same names, in every run (SipHash with fixed keys).
fn stable(parts: &[&str]) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    parts.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_stable_and_in_range() {
        let a = usage(
            stable(&["shop", "web-0", "app"]),
            1_000_000,
            250_000_000,
            8192,
            262_144,
        );
        let b = usage(
            stable(&["shop", "web-0", "app"]),
            1_000_000,
            250_000_000,
            8192,
            262_144,
        );
        assert_eq!(a, b);
        let cpu: u64 = a["cpu"]
            .as_str()
            .unwrap()
            .trim_end_matches('n')
            .parse()
            .unwrap();
        assert!((1_000_000..250_000_000).contains(&cpu), "{a}");
        let mem: u64 = a["memory"]
            .as_str()
            .unwrap()
            .trim_end_matches("Ki")
            .parse()
            .unwrap();
        assert!((8192..262_144).contains(&mem), "{a}");
    }

    #[test]
    fn only_running_pods_and_ready_nodes_have_metrics() {
        let pod = |phase: &str| json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [{"name": "c"}, {"name": "d"}]}, "status": {"phase": phase}});
        let m = pod_metrics(&pod("Running")).unwrap();
        assert_eq!(m["containers"].as_array().unwrap().len(), 2);
        assert!(pod_metrics(&pod("Pending")).is_none());
        let node = |ready: &str| json!({"metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready", "status": ready}]}});
        assert!(node_metrics(&node("True")).is_some());
        assert!(node_metrics(&node("False")).is_none());
    }
}
