//! A synchronous stand-in for the workload controllers: after a Deployment, ReplicaSet or
//! StatefulSet is written, bring its ReplicaSets and Pods in line with its spec (pods start
//! Running and Ready at once). Scaling therefore creates and deletes pods, and a template
//! change (`kubectl set image`, `kubectl rollout restart`) rolls out a new ReplicaSet.

use serde_json::{json, Value};

use crate::defaults::{name_suffix, on_create, reconcile_status};
use crate::server::State;
use crate::store::ResourceKey;
use crate::{endpoints, events};

pub(crate) fn key(group: &str, plural: &str) -> ResourceKey {
    (group.to_string(), plural.to_string())
}

fn owned_by<'a>(items: &'a [Value], uid: &Value) -> impl Iterator<Item = &'a Value> {
    let uid = uid.clone();
    items.iter().filter(move |o| {
        o["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["uid"] == uid && r["controller"] == true)
            })
    })
}

/// The template without the pod-template-hash label, to compare ReplicaSets with.
fn bare_template(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
    }
    t
}

/// A pod-template-hash-looking string derived from the template (FNV-1a, upstream's alphabet).
fn template_hash(t: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in serde_json::to_vec(t).unwrap_or_default() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHA[((h >> (i * 6)) % ALPHA.len() as u64) as usize] as char)
        .collect()
}

fn owner_ref(kind: &str, obj: &Value) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
}

/// Runs the controllers for a written object.
pub fn after_write(state: &State, kind: &str, ns: &str, name: &str) {
    match kind {
        "Deployment" => sync_deployment(state, ns, name),
        "ReplicaSet" => sync_pods(state, "ReplicaSet", &key("apps", "replicasets"), ns, name),
        "StatefulSet" => sync_pods(state, "StatefulSet", &key("apps", "statefulsets"), ns, name),
        "Pod" | "Service" => {}
        _ => return,
    }
    // Once per write, after the workload controllers changed the pods.
    endpoints::sync(state, ns);
}

/// Runs the owner's controller after an object it controls was deleted.
pub fn after_delete(state: &State, obj: &Value) {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
    for r in obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["controller"] == true)
    {
        let name = r["name"].as_str().unwrap_or_default();
        let owner_kind = r["kind"].as_str().unwrap_or_default();
        let owner = match owner_kind {
            "ReplicaSet" => state.store.get(&key("apps", "replicasets"), ns, name),
            "StatefulSet" => state.store.get(&key("apps", "statefulsets"), ns, name),
            _ => None,
        };
        // Only if the owner still exists (cascading deletes remove it first).
        if owner.is_some_and(|o| o["metadata"]["uid"] == r["uid"]) {
            after_write(state, owner_kind, ns, name);
        }
    }
}

fn sync_deployment(state: &State, ns: &str, name: &str) {
    let Some(dep) = state.store.get(&key("apps", "deployments"), ns, name) else {
        return;
    };
    let rs_key = key("apps", "replicasets");
    let (all_rs, _) = state.store.list(&rs_key, Some(ns));
    let owned: Vec<Value> = owned_by(&all_rs, &dep["metadata"]["uid"])
        .cloned()
        .collect();
    let template = bare_template(&dep["spec"]["template"]);
    let replicas = dep["spec"]["replicas"].as_i64().unwrap_or(1);
    let max_rev = owned
        .iter()
        .filter_map(|r| {
            r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
        })
        .max()
        .unwrap_or(0);
    let current = owned
        .iter()
        .find(|r| bare_template(&r["spec"]["template"]) == template)
        .cloned();
    let created_rs = current.is_none();
    let current_name = match current {
        Some(rs) => rs["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        None => {
            let hash = template_hash(&template);
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let mut selector = dep["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut tpl = template.clone();
            tpl["metadata"]["labels"] = labels.clone();
            let rs_name = format!("{name}-{hash}");
            let mut rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs_name, "namespace": ns, "labels": labels, "ownerReferences": owner_ref("Deployment", &dep),
                    "annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string(), "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(), "deployment.kubernetes.io/revision": (max_rev + 1).to_string()}},
                "spec": {"replicas": replicas, "selector": selector, "template": tpl},
            });
            on_create("ReplicaSet", &mut rs);
            rs["metadata"]["generation"] = json!(1);
            reconcile_status("ReplicaSet", &mut rs);
            if state.store.create(&rs_key, rs).is_err() {
                return;
            }
            let rev = (max_rev + 1).to_string();
            let _ = state
                .store
                .modify(&key("apps", "deployments"), ns, name, |cur| {
                    let mut d = cur.clone();
                    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(rev);
                    d["metadata"]["resourceVersion"] = json!("");
                    Ok(d)
                });
            rs_name
        }
    };
    // Rolling update completed at once: the current ReplicaSet gets every replica.
    for rs in owned
        .iter()
        .map(|r| {
            r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .chain([current_name.clone()])
    {
        let want = if rs == current_name { replicas } else { 0 };
        let before = state
            .store
            .get(&rs_key, ns, &rs)
            .and_then(|r| r["spec"]["replicas"].as_i64());
        let _ = state.store.modify(&rs_key, ns, &rs, |cur| {
            let mut r = cur.clone();
            r["spec"]["replicas"] = json!(want);
            r["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                json!(replicas.to_string());
            let g = cur["metadata"]["generation"].as_i64().unwrap_or(1)
                + i64::from(cur["spec"]["replicas"] != json!(want));
            r["metadata"]["generation"] = json!(g);
            reconcile_status("ReplicaSet", &mut r);
            r["metadata"]["resourceVersion"] = json!("");
            Ok(r)
        });
        // A new ReplicaSet is created at the size the Deployment wants: it scaled up from 0.
        let from = if rs == current_name && created_rs {
            0
        } else {
            before.unwrap_or(0)
        };
        if from != want {
            let dir = if want > from { "up" } else { "down" };
            events::normal(
                state,
                &dep,
                "ScalingReplicaSet",
                &format!("Scaled {dir} replica set {rs} from {from} to {want}"),
                "deployment-controller",
            );
        }
        sync_pods(state, "ReplicaSet", &rs_key, ns, &rs);
    }
}

fn sync_pods(state: &State, kind: &str, owner_key: &ResourceKey, ns: &str, name: &str) {
    let Some(owner) = state.store.get(owner_key, ns, name) else {
        return;
    };
    let pods_key = key("", "pods");
    let (pods, _) = state.store.list(&pods_key, Some(ns));
    let mut mine: Vec<Value> = owned_by(&pods, &owner["metadata"]["uid"])
        .cloned()
        .collect();
    let want = usize::try_from(owner["spec"]["replicas"].as_i64().unwrap_or(1).max(0)).unwrap_or(0);
    // Newest first, so scale-down removes the newest pods like upstream prefers.
    mine.sort_by(|a, b| {
        b["metadata"]["creationTimestamp"]
            .as_str()
            .cmp(&a["metadata"]["creationTimestamp"].as_str())
    });
    if kind == "StatefulSet" {
        mine.sort_by_key(|p| {
            std::cmp::Reverse(
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('-')
                    .next()
                    .and_then(|i| i.parse::<usize>().ok())
                    .unwrap_or(0),
            )
        });
    }
    let controller = match kind {
        "StatefulSet" => "statefulset-controller",
        _ => "replicaset-controller",
    };
    while mine.len() > want {
        let p = mine.remove(0);
        let pod_name = p["metadata"]["name"].as_str().unwrap_or_default();
        if state.store.delete(&pods_key, ns, pod_name, true).is_ok() {
            let message = match kind {
                "StatefulSet" => format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                _ => format!("Deleted pod: {pod_name}"),
            };
            events::normal(state, &owner, "SuccessfulDelete", &message, controller);
        }
    }
    let mut have = mine.len();
    let mut ordinal = 0;
    while have < want {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": owner["spec"]["template"]["metadata"].clone(), "spec": owner["spec"]["template"]["spec"].clone()});
        let pod_name = if kind == "StatefulSet" {
            loop {
                let n = format!("{name}-{ordinal}");
                ordinal += 1;
                if state.store.get(&pods_key, ns, &n).is_none() {
                    break n;
                }
            }
        } else {
            format!("{name}-{}", name_suffix())
        };
        if !pod["metadata"].is_object() {
            pod["metadata"] = json!({});
        }
        pod["metadata"]["name"] = json!(pod_name);
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["ownerReferences"] = owner_ref(kind, &owner);
        if let Some(m) = pod["metadata"].as_object_mut() {
            m.remove("creationTimestamp");
        }
        on_create("Pod", &mut pod);
        let Ok(created) = state.store.create(&pods_key, pod) else {
            return;
        };
        let message = match kind {
            "StatefulSet" => format!("create Pod {pod_name} in StatefulSet {name} successful"),
            _ => format!("Created pod: {pod_name}"),
        };
        events::normal(state, &owner, "SuccessfulCreate", &message, controller);
        events::pod_started(state, &created);
        have += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_is_stable_and_label_free() {
        let a = json!({"metadata": {"labels": {"app": "x"}}, "spec": {}});
        let mut b = a.clone();
        b["metadata"]["labels"]["pod-template-hash"] = json!("zzz");
        assert_eq!(bare_template(&a), bare_template(&b));
        assert_eq!(template_hash(&a), template_hash(&a));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
