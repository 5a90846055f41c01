//! What the real control plane would add to objects: API defaulting on create, and the status
//! the controllers would converge to (there are no controllers here, so status is computed
//! synchronously on every write). Pods are not created or deleted when workloads scale.

use rand::Rng;
use serde_json::{json, Value};

use crate::store::now_rfc3339;

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj[key] = v;
    }
}

fn default_container(c: &mut Value) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c["image"].as_str().unwrap_or_default();
    let always = !image.contains(':') || image.ends_with(":latest");
    set_default(
        c,
        "imagePullPolicy",
        json!(if always { "Always" } else { "IfNotPresent" }),
    );
    set_default(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// Pod spec defaults (also used for templates).
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for field in ["containers", "initContainers"] {
        // `get_mut`, not indexing: IndexMut would insert nulls for absent lists.
        if let Some(cs) = spec.get_mut(field).and_then(Value::as_array_mut) {
            for c in cs {
                default_container(c);
            }
        }
    }
}

/// What the ServiceAccount admission plugin adds to every pod that does not opt out: a
/// projected `kube-api-access-*` volume mounted at the well-known path in each container.
pub fn mount_service_account_token(spec: &mut Value, pod_name: &str) {
    if spec["automountServiceAccountToken"] == false {
        return;
    }
    let already = spec["volumes"].as_array().is_some_and(|vs| {
        vs.iter().any(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        })
    });
    if already {
        return;
    }
    let vol = format!(
        "kube-api-access-{}",
        pod_name.chars().rev().take(5).collect::<String>()
    );
    let mut volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    volumes.push(json!({"name": vol, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}));
    spec["volumes"] = json!(volumes);
    if let Some(cs) = spec["containers"].as_array_mut() {
        for c in cs {
            let mut mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
            mounts.push(json!({"name": vol, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}));
            c["volumeMounts"] = json!(mounts);
        }
    }
}

/// `spec.template.spec`, if present.
fn template_spec(obj: &mut Value) -> Option<&mut Value> {
    obj.get_mut("spec")?
        .get_mut("template")?
        .get_mut("spec")
        .filter(|s| s.is_object())
}

/// A random-looking pod IP in the pod CIDR.
fn pod_ip() -> String {
    let mut rng = rand::thread_rng();
    format!("10.244.{}.{}", rng.gen_range(0..2), rng.gen_range(2..250))
}

/// Running, Ready status for a pod, as the kubelet would report once started.
pub fn running_pod_status(pod: &Value, ip: &str, node_ip: &str, started: &str) -> Value {
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let image = c["image"].as_str().unwrap_or_default();
            let full = if image.contains('/') { image.to_string() } else { format!("docker.io/library/{image}") };
            json!({
                "name": c["name"], "image": full, "imageID": format!("{}@sha256:{}", full.split(':').next().unwrap_or_default(), "4f1e7b1a2ec9d1b3f0f3c4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f"),
                "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple()),
                "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": started}}, "lastState": {},
            })
        })
        .collect();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": started});
    json!({
        "phase": "Running",
        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": started,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    })
}

/// Defaulting on create (and for objects created by server-side apply).
pub fn on_create(kind: &str, obj: &mut Value) {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match kind {
        "Pod" => {
            default_pod_spec(&mut obj["spec"]);
            set_default(&mut obj["spec"], "serviceAccountName", json!("default"));
            let sa = obj["spec"]["serviceAccountName"].clone();
            set_default(&mut obj["spec"], "serviceAccount", sa);
            set_default(&mut obj["spec"], "nodeName", json!("node-1"));
            set_default(&mut obj["spec"], "enableServiceLinks", json!(true));
            set_default(&mut obj["spec"], "priority", json!(0));
            set_default(
                &mut obj["spec"],
                "preemptionPolicy",
                json!("PreemptLowerPriority"),
            );
            mount_service_account_token(&mut obj["spec"], &name);
            if obj["status"]["phase"].as_str().is_none() {
                let node_ip = if obj["spec"]["nodeName"] == "node-2" {
                    "172.18.0.3"
                } else {
                    "172.18.0.2"
                };
                obj["status"] = running_pod_status(obj, &pod_ip(), node_ip, &now_rfc3339());
            }
        }
        "Deployment" => {
            let spec = &mut obj["spec"];
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            if let Some(t) = template_spec(obj) {
                default_pod_spec(t);
            }
            obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
        }
        "ReplicaSet" | "StatefulSet" => {
            set_default(&mut obj["spec"], "replicas", json!(1));
            if let Some(t) = template_spec(obj) {
                default_pod_spec(t);
            }
        }
        "DaemonSet" | "Job" => {
            if let Some(t) = template_spec(obj) {
                default_pod_spec(t);
            }
        }
        "Service" => {
            let spec = &mut obj["spec"];
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec["clusterIP"].as_str() != Some("None") {
                let mut rng = rand::thread_rng();
                set_default(
                    spec,
                    "clusterIP",
                    json!(format!(
                        "10.96.{}.{}",
                        rng.gen_range(0..255),
                        rng.gen_range(1..255)
                    )),
                );
            }
            let ip = spec["clusterIP"].clone();
            set_default(spec, "clusterIPs", json!([ip]));
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, "protocol", json!("TCP"));
                    let port = p["port"].clone();
                    set_default(p, "targetPort", port);
                }
            }
            set_default(obj, "status", json!({"loadBalancer": {}}));
        }
        "Namespace" => {
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            set_default(obj, "spec", json!({"finalizers": ["kubernetes"]}));
            obj["status"] = json!({"phase": "Active"});
        }
        "Secret" => {
            set_default(obj, "type", json!("Opaque"));
        }
        // SetDefaults_HorizontalPodAutoscaler (both versions): one replica at least.
        "HorizontalPodAutoscaler" => set_default(&mut obj["spec"], "minReplicas", json!(1)),
        _ => {}
    }
    normalize(kind, obj);
}

/// Normalisation on every write: `stringData` folds into `data` like upstream.
pub fn normalize(kind: &str, obj: &mut Value) {
    if kind == "Secret" {
        if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
            use base64::Engine;
            for (k, v) in sd {
                let enc = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or_default());
                obj["data"][k] = json!(enc);
            }
            if let Some(m) = obj.as_object_mut() {
                m.remove("stringData");
            }
        }
    }
}

/// The status the workload controllers would converge to, given the spec.
pub fn reconcile_status(kind: &str, obj: &mut Value) {
    let gen = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let now = now_rfc3339();
    let with_replicas = |mut v: Value| {
        if replicas > 0 {
            for k in ["readyReplicas", "availableReplicas"] {
                v[k] = json!(replicas);
            }
        }
        v
    };
    match kind {
        "Deployment" => {
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let keep = |t: &str| {
                obj["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == t))
                    .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
                    .unwrap_or_else(|| now.clone())
            };
            let (avail_t, prog_t) = (keep("Available"), keep("Progressing"));
            let mut st = json!({"observedGeneration": gen, "replicas": replicas, "updatedReplicas": replicas});
            st = with_replicas(st);
            st["conditions"] = json!([
                {"type": "Available", "status": "True", "lastUpdateTime": avail_t, "lastTransitionTime": avail_t, "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "lastUpdateTime": now, "lastTransitionTime": prog_t, "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}\" has successfully progressed.")},
            ]);
            obj["status"] = st;
        }
        "ReplicaSet" => {
            let st = json!({"replicas": replicas, "fullyLabeledReplicas": replicas, "observedGeneration": gen});
            obj["status"] = with_replicas(st);
        }
        "StatefulSet" => {
            let rev = format!(
                "{}-{}",
                obj["metadata"]["name"].as_str().unwrap_or_default(),
                "7b9c6d5f8"
            );
            let st = json!({"replicas": replicas, "currentReplicas": replicas, "updatedReplicas": replicas, "observedGeneration": gen, "currentRevision": rev, "updateRevision": rev, "collisionCount": 0});
            obj["status"] = with_replicas(st);
        }
        "DaemonSet" => {
            obj["status"] = json!({"currentNumberScheduled": 2, "desiredNumberScheduled": 2, "numberAvailable": 2, "numberMisscheduled": 0, "numberReady": 2, "observedGeneration": gen, "updatedNumberScheduled": 2});
        }
        _ => {}
    }
}

/// `generateName` suffix: five characters from upstream's alphabet.
pub fn name_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHA[rng.gen_range(0..ALPHA.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_status_matches_spec() {
        let mut d = json!({"metadata": {"name": "web", "generation": 3}, "spec": {"replicas": 4}});
        reconcile_status("Deployment", &mut d);
        assert_eq!(d["status"]["observedGeneration"], 3);
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
        ] {
            assert_eq!(d["status"][k], 4, "{k}");
        }
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}});
        on_create("Secret", &mut s);
        assert_eq!(s["data"]["a"], "Yg==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn pods_start_running() {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        on_create("Pod", &mut p);
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    }
}
