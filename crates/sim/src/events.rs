//! Events (`core/v1`), as the scheduler, the kubelet and the workload controllers write them:
//! what `kubectl describe` lists under "Events" and `kubectl get events` shows.

use serde_json::{json, Value};

use crate::{server::State, store::ResourceKey};

/// A `Normal` event about `involved` (a stored object), reported by `component` (on `host`
/// for the kubelet).
pub fn normal(state: &State, involved: &Value, reason: &str, message: &str, component: &str) {
    let ns = involved["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let name = involved["metadata"]["name"].as_str().unwrap_or_default();
    let host = match component {
        "kubelet" => involved["spec"]["nodeName"].as_str().unwrap_or("node-1"),
        _ => "",
    };
    let now = crate::store::now_rfc3339();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{:x}", unique_nanos()), "namespace": ns},
        "involvedObject": {
            "kind": involved["kind"], "namespace": ns, "name": name,
            "uid": involved["metadata"]["uid"], "apiVersion": involved["apiVersion"],
            "resourceVersion": involved["metadata"]["resourceVersion"],
        },
        "reason": reason, "message": message,
        "source": if host.is_empty() { json!({"component": component}) } else { json!({"component": component, "host": host}) },
        "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": "Normal",
        "eventTime": null, "reportingComponent": component, "reportingInstance": host,
    });
    let key: ResourceKey = (String::new(), "events".to_string());
    // Best effort, like the real recorders: an event that cannot be stored is dropped.
    let _ = state.store.create(&key, event);
}

/// The events of a pod that was scheduled and started.
pub fn pod_started(state: &State, pod: &Value) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("node-1");
    normal(
        state,
        pod,
        "Scheduled",
        &format!("Successfully assigned {ns}/{name} to {node}"),
        "default-scheduler",
    );
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let (cname, image) = (
            c["name"].as_str().unwrap_or_default(),
            c["image"].as_str().unwrap_or_default(),
        );
        normal(
            state,
            pod,
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
            "kubelet",
        );
        normal(
            state,
            pod,
            "Created",
            &format!("Created container: {cname}"),
            "kubelet",
        );
        normal(
            state,
            pod,
            "Started",
            &format!("Started container {cname}"),
            "kubelet",
        );
    }
}

/// Nanoseconds since the epoch, strictly increasing across calls: the recorder names events
/// `{object}.{hex nanos}`, so a list (sorted by name) keeps them in the order they happened.
fn unique_nanos() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}
