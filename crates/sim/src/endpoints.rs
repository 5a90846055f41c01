//! The endpoints and EndpointSlice controllers: every Service with a selector gets an
//! `Endpoints` object and one `EndpointSlice` (`discovery.k8s.io/v1`) listing the running pods
//! it selects, kept in line as pods and services are written and deleted. `kubectl describe
//! service` (1.33 reads the slices) and `kubectl get endpoints` show them.

use serde_json::{json, Map, Value};

use crate::controller::key;
use crate::server::State;
use crate::store::ResourceKey;

/// Marks what this controller manages, as upstream's controllers label their objects.
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// Brings the endpoints of every Service in `ns` in line with its pods.
pub fn sync(state: &State, ns: &str) {
    let (services, _) = state.store.list(&key("", "services"), Some(ns));
    let (pods, _) = state.store.list(&key("", "pods"), Some(ns));
    for svc in &services {
        let Some(selector) = svc["spec"]["selector"]
            .as_object()
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let selected: Vec<&Value> = pods
            .iter()
            .filter(|p| selects(selector, &p["metadata"]["labels"]))
            .filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string())
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        write_endpoints(state, ns, svc, &selected);
        write_slice(state, ns, svc, &selected);
    }
    // A deleted Service's Endpoints go with it (the endpoints controller deletes them), and so
    // does its slice (its owner reference, when the delete did not already collect it).
    let has_service = |name: &str| services.iter().any(|s| s["metadata"]["name"] == name);
    let (endpoints, _) = state.store.list(&key("", "endpoints"), Some(ns));
    for e in &endpoints {
        let name = e["metadata"]["name"].as_str().unwrap_or_default();
        if !has_service(name) {
            let _ = state.store.delete(&key("", "endpoints"), ns, name, true);
        }
    }
    let slices_key = key("discovery.k8s.io", "endpointslices");
    let (slices, _) = state.store.list(&slices_key, Some(ns));
    for slice in &slices {
        let labels = &slice["metadata"]["labels"];
        let svc = labels["kubernetes.io/service-name"]
            .as_str()
            .unwrap_or_default();
        if labels["endpointslice.kubernetes.io/managed-by"] == MANAGED_BY && !has_service(svc) {
            let name = slice["metadata"]["name"].as_str().unwrap_or_default();
            let _ = state.store.delete(&slices_key, ns, name, true);
        }
    }
}

fn selects(selector: &Map<String, Value>, labels: &Value) -> bool {
    selector.iter().all(|(k, v)| &labels[k] == v)
}

/// The ports of a Service's endpoints: each `targetPort` resolved against the pod (a name
/// is looked up in the containers' ports; none means the service port).
fn ports(svc: &Value, pod: Option<&Value>) -> Vec<Value> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = match &p["targetPort"] {
                Value::Number(n) => n.as_i64(),
                Value::String(name) => pod.and_then(|pod| named_port(pod, name)),
                _ => p["port"].as_i64(),
            }?;
            let mut out =
                json!({"port": port, "protocol": p["protocol"].as_str().unwrap_or("TCP")});
            if let Some(name) = p["name"].as_str() {
                out["name"] = json!(name);
            }
            Some(out)
        })
        .collect()
}

fn named_port(pod: &Value, name: &str) -> Option<i64> {
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": pod["metadata"]["namespace"], "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]})
}

/// Creates `want` or changes the stored object's `fields` to `want`'s, when they differ.
fn upsert(state: &State, key: &ResourceKey, ns: &str, want: Value, fields: &[&str]) {
    let name = want["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match state.store.get(key, ns, &name) {
        None => {
            let _ = state.store.create(key, want);
        }
        Some(cur) if fields.iter().any(|f| cur[*f] != want[*f]) => {
            let _ = state.store.modify(key, ns, &name, |cur| {
                let mut next = cur.clone();
                for f in fields {
                    match &want[*f] {
                        Value::Null => {
                            if let Some(m) = next.as_object_mut() {
                                m.remove(*f);
                            }
                        }
                        v => next[*f] = v.clone(),
                    }
                }
                next["metadata"]["resourceVersion"] = json!("");
                Ok(next)
            });
        }
        Some(_) => {}
    }
}

fn write_endpoints(state: &State, ns: &str, svc: &Value, pods: &[&Value]) {
    let name = &svc["metadata"]["name"];
    let subsets = if pods.is_empty() {
        Value::Null
    } else {
        let addresses: Vec<Value> = pods
            .iter()
            .map(|p| json!({"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p)}))
            .collect();
        json!([{"addresses": addresses, "ports": ports(svc, pods.first().copied())}])
    };
    let want = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "labels": svc["metadata"]["labels"],
            "creationTimestamp": svc["metadata"]["creationTimestamp"]},
        "subsets": subsets,
    });
    upsert(state, &key("", "endpoints"), ns, want, &["subsets"]);
}

fn write_slice(state: &State, ns: &str, svc: &Value, pods: &[&Value]) {
    let name = svc["metadata"]["name"].as_str().unwrap_or_default();
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            json!({
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p),
            })
        })
        .collect();
    let want = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        // Upstream appends five random characters; a stable suffix keeps one slice per service.
        "metadata": {"name": format!("{name}-{}", suffix(name)), "namespace": ns,
            "creationTimestamp": svc["metadata"]["creationTimestamp"],
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": MANAGED_BY},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports(svc, pods.first().copied()),
    });
    upsert(
        state,
        &key("discovery.k8s.io", "endpointslices"),
        ns,
        want,
        &["endpoints", "ports"],
    );
}

/// Five characters from the service's name, like upstream's generated suffix.
fn suffix(name: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 1469598103934665603;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    (0..5)
        .map(|i| ALPHABET[((h >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}
