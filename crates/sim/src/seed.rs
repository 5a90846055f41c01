//! Seed data: a small cluster as an agent would find it (two nodes, system namespaces,
//! CoreDNS, and the `shop` and `payments` applications). Other suites and the pods module
//! depend on these exact names.

use base64::Engine;
use serde_json::{json, Value};

use crate::defaults::{default_pod_spec, reconcile_status, running_pod_status};
use crate::patch::{fields_v1, record_managed_fields};
use crate::server::State;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The database URL with credentials that the shop app carries in env and config.
pub const DATABASE_URL: &str = "postgres://shop:S3cr3t-Pa55w0rd@db.shop.svc:5432/shop";

fn ago(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    (time::OffsetDateTime::now_utc() - time::Duration::seconds(secs))
        .format(&fmt)
        .unwrap_or_default()
}

const DAY: i64 = 86400;

/// A JWT-shaped service account token (unsigned filler; only its shape matters here).
pub fn fake_jwt(ns: &str, sa: &str) -> String {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header =
        b.encode(br#"{"alg":"RS256","kid":"Xq7sQhV3cM2kPz9wR1tYbN4eLd8fGj6uAoIv0HsT5yE"}"#);
    let payload = b.encode(
        json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": ns,
            "kubernetes.io/serviceaccount/secret.name": format!("{sa}-token"),
            "kubernetes.io/serviceaccount/service-account.name": sa,
            "kubernetes.io/serviceaccount/service-account.uid": "8d3f5c2a-6b1e-4f7a-9c0d-2e4b6a8c1f3d",
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
        })
        .to_string(),
    );
    let sig: String = b.encode(
        (0..256u32)
            .map(|i| {
                (i.wrapping_mul(151)
                    .wrapping_add(ns.len() as u32 * 7 + sa.len() as u32)
                    % 251) as u8
            })
            .collect::<Vec<u8>>(),
    );
    format!("{header}.{payload}.{sig}")
}

/// Stores an object as the given manager created it, with defaults and converged status.
fn put(state: &State, group: &str, plural: &str, mut obj: Value, manager: &str) -> Value {
    let Some(info) = state
        .registry
        .lookup(
            group,
            state.registry.preferred_version(group).unwrap_or("v1"),
            plural,
        )
        .cloned()
    else {
        tracing::error!(group, plural, "seed: unknown resource");
        return obj;
    };
    obj = crate::api::render_for_version(&info, &obj);
    if info.kind != "Pod" || obj["status"].is_object() {
        crate::defaults::on_create(&info.kind, &mut obj);
    }
    let fields = fields_v1(&obj);
    if obj["metadata"]["managedFields"].is_null() {
        record_managed_fields(
            &mut obj,
            manager,
            "Update",
            &info.api_version(),
            fields,
            None,
        );
        if let Some(ts) = obj["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_string)
        {
            obj["metadata"]["managedFields"][0]["time"] = json!(ts);
        }
    }
    reconcile_status(&info.kind, &mut obj);
    match state
        .store
        .create(&(group.to_string(), plural.to_string()), obj.clone())
    {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(?e, "seed: create failed");
            obj
        }
    }
}

/// What controllers add to every new namespace: the `default` ServiceAccount and the
/// `kube-root-ca.crt` ConfigMap.
pub fn namespace_extras(state: &State, ns: &str) {
    let created = state
        .store
        .get(&(String::new(), "namespaces".into()), "", ns)
        .map(|n| n["metadata"]["creationTimestamp"].clone())
        .unwrap_or(Value::Null);
    put(
        state,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "default", "namespace": ns, "creationTimestamp": created}}),
        "kube-controller-manager",
    );
    put(
        state,
        "",
        "configmaps",
        json!({"metadata": {"name": "kube-root-ca.crt", "namespace": ns, "creationTimestamp": created, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": state.ca_pem}}),
        "kube-controller-manager",
    );
}

fn node(name: &str, ip: &str, control_plane: bool) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
    });
    if control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    let t = ago(12 * DAY);
    let cond = |ty: &str, st: &str, reason: &str, msg: &str| json!({"type": ty, "status": st, "lastHeartbeatTime": ago(30), "lastTransitionTime": t, "reason": reason, "message": msg});
    json!({
        "metadata": {"name": name, "labels": labels, "creationTimestamp": t,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": if control_plane { "10.244.0.0/24" } else { "10.244.1.0/24" }, "providerID": format!("kind://docker/sim/{name}")},
        "status": {
            "capacity": {"cpu": "4", "ephemeral-storage": "102626232Ki", "hugepages-2Mi": "0", "memory": "16365184Ki", "pods": "110"},
            "allocatable": {"cpu": "4", "ephemeral-storage": "102626232Ki", "hugepages-2Mi": "0", "memory": "16365184Ki", "pods": "110"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:x}", uuid::Uuid::new_v4().simple()), "systemUUID": uuid::Uuid::new_v4().to_string(), "bootID": uuid::Uuid::new_v4().to_string(),
                "kernelVersion": "6.1.0-18-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "containerd://1.7.18",
                "kubeletVersion": "v1.31.0", "kubeProxyVersion": "v1.31.0", "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    })
}

/// A Deployment with its ReplicaSet and pods. `pods` are (name suffix, node, pod IP).
struct App<'a> {
    ns: &'a str,
    name: &'a str,
    hash: &'a str,
    labels: Value,
    replicas: i64,
    pod_spec: Value,
    pods: &'a [(&'a str, &'a str, &'a str)],
    age: i64,
}

fn node_ip(node: &str) -> &'static str {
    if node == "node-2" {
        "172.18.0.3"
    } else {
        "172.18.0.2"
    }
}

fn deploy_app(state: &State, app: App<'_>) {
    let created = ago(app.age);
    let mut tpl_labels = app.labels.clone();
    let mut spec = app.pod_spec.clone();
    default_pod_spec(&mut spec);
    let dep = put(
        state,
        "apps",
        "deployments",
        json!({
            "metadata": {"name": app.name, "namespace": app.ns, "labels": app.labels, "creationTimestamp": created},
            "spec": {"replicas": app.replicas, "selector": {"matchLabels": app.labels}, "template": {"metadata": {"labels": app.labels}, "spec": spec}},
        }),
        "kubectl-client-side-apply",
    );
    tpl_labels["pod-template-hash"] = json!(app.hash);
    let rs_name = format!("{}-{}", app.name, app.hash);
    let owner = |kind: &str, name: &str, uid: &Value| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    let rs = put(
        state,
        "apps",
        "replicasets",
        json!({
            "metadata": {"name": rs_name, "namespace": app.ns, "labels": tpl_labels, "creationTimestamp": created,
                "annotations": {"deployment.kubernetes.io/desired-replicas": app.replicas.to_string(), "deployment.kubernetes.io/max-replicas": (app.replicas + 1).to_string(), "deployment.kubernetes.io/revision": "1"},
                "ownerReferences": owner("Deployment", app.name, &dep["metadata"]["uid"])},
            "spec": {"replicas": app.replicas, "selector": {"matchLabels": tpl_labels}, "template": {"metadata": {"labels": tpl_labels}, "spec": spec}},
        }),
        "kube-controller-manager",
    );
    for (suffix, node, ip) in app.pods {
        let name = format!("{rs_name}-{suffix}");
        pod(
            state,
            app.ns,
            &name,
            &tpl_labels,
            &spec,
            node,
            ip,
            Some(owner("ReplicaSet", &rs_name, &rs["metadata"]["uid"])),
            app.age,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn pod(
    state: &State,
    ns: &str,
    name: &str,
    labels: &Value,
    spec: &Value,
    node: &str,
    ip: &str,
    owners: Option<Value>,
    age: i64,
) {
    let created = ago(age);
    let mut spec = spec.clone();
    spec["nodeName"] = json!(node);
    let sa = spec["serviceAccountName"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(sa);
    spec["serviceAccount"] = json!(sa);
    crate::defaults::mount_service_account_token(&mut spec, name);
    spec["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]);
    spec["enableServiceLinks"] = json!(true);
    spec["priority"] = json!(0);
    spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    let mut p = json!({"metadata": {"name": name, "namespace": ns, "labels": labels, "creationTimestamp": created}, "spec": spec});
    if let Some(o) = owners {
        p["metadata"]["ownerReferences"] = o;
    }
    p["status"] = running_pod_status(&p, ip, node_ip(node), &ago(age - 5));
    let stored = put(state, "", "pods", p, "kubelet");
    // The events `kubectl describe pod` shows for a pod that started normally.
    let evs = [
        (
            "Scheduled",
            "default-scheduler",
            format!("Successfully assigned {ns}/{name} to {node}"),
        ),
        (
            "Pulled",
            "kubelet",
            "Container image already present on machine".to_string(),
        ),
        ("Created", "kubelet", "Created container".to_string()),
        ("Started", "kubelet", "Started container".to_string()),
    ];
    for (i, (reason, component, msg)) in evs.iter().enumerate() {
        let t = ago(age - i as i64);
        put(
            state,
            "",
            "events",
            json!({
                "metadata": {"name": format!("{name}.17a{:x}c3d{i}", name.len()), "namespace": ns, "creationTimestamp": t},
                "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": stored["metadata"]["uid"], "apiVersion": "v1", "resourceVersion": stored["metadata"]["resourceVersion"]},
                "reason": reason, "message": msg, "source": {"component": component, "host": if *component == "kubelet" { json!(node) } else { Value::Null }},
                "firstTimestamp": t, "lastTimestamp": t, "count": 1, "type": "Normal", "eventTime": null,
                "reportingComponent": component, "reportingInstance": if *component == "kubelet" { node } else { "" },
            }),
            "kube-controller-manager",
        );
    }
}

fn service(
    state: &State,
    ns: &str,
    name: &str,
    labels: Value,
    selector: Value,
    ip: &str,
    ports: Value,
) {
    put(
        state,
        "",
        "services",
        json!({"metadata": {"name": name, "namespace": ns, "labels": labels, "creationTimestamp": ago(3 * DAY)},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": ports, "selector": selector, "type": "ClusterIP"}}),
        "kubectl-client-side-apply",
    );
}

/// Loads the seed data into an empty store.
pub fn seed(state: &State) {
    put(
        state,
        "",
        "nodes",
        node("node-1", "172.18.0.2", true),
        "kubelet",
    );
    put(
        state,
        "",
        "nodes",
        node("node-2", "172.18.0.3", false),
        "kubelet",
    );
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "shop",
        "payments",
    ] {
        let age = if matches!(ns, "shop" | "payments") {
            3 * DAY
        } else {
            12 * DAY
        };
        put(
            state,
            "",
            "namespaces",
            json!({"metadata": {"name": ns, "creationTimestamp": ago(age)}}),
            "kube-apiserver",
        );
        namespace_extras(state, ns);
    }
    for n in ["node-1", "node-2"] {
        // Node heartbeats, which `kubectl describe node` shows.
        put(
            state,
            "coordination.k8s.io",
            "leases",
            json!({"metadata": {"name": n, "namespace": "kube-node-lease", "creationTimestamp": ago(12 * DAY)},
            "spec": {"holderIdentity": n, "leaseDurationSeconds": 40, "renewTime": format!("{}.000000Z", ago(5).trim_end_matches('Z'))}}),
            "kubelet",
        );
    }
    put(
        state,
        "",
        "services",
        json!({"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}, "creationTimestamp": ago(12 * DAY)},
            "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}], "type": "ClusterIP"}}),
        "kube-apiserver",
    );
    put(
        state,
        "",
        "endpoints",
        json!({"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}, "creationTimestamp": ago(12 * DAY)}, "subsets": [{"addresses": [{"ip": "172.18.0.2"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}),
        "kube-apiserver",
    );

    // kube-system: CoreDNS.
    deploy_app(
        state,
        App {
            ns: "kube-system",
            name: "coredns",
            hash: "5d78c9869d",
            labels: json!({"k8s-app": "kube-dns"}),
            replicas: 2,
            pod_spec: json!({"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.1", "args": ["-conf", "/etc/coredns/Corefile"],
                "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"}, {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}, {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
                "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true}]}],
                "serviceAccountName": "coredns", "priorityClassName": "system-cluster-critical",
                "volumes": [{"name": "config-volume", "configMap": {"name": "coredns", "defaultMode": 420, "items": [{"key": "Corefile", "path": "Corefile"}]}}]}),
            pods: &[
                ("8xk2p", "node-1", "10.244.0.2"),
                ("q4w7n", "node-2", "10.244.1.2"),
            ],
            age: 12 * DAY,
        },
    );
    put(
        state,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "coredns", "namespace": "kube-system", "creationTimestamp": ago(12 * DAY)}}),
        "kubeadm",
    );
    put(
        state,
        "",
        "configmaps",
        json!({"metadata": {"name": "coredns", "namespace": "kube-system", "creationTimestamp": ago(12 * DAY)},
            "data": {"Corefile": ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n"}}),
        "kubeadm",
    );
    service(
        state,
        "kube-system",
        "kube-dns",
        json!({"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}),
        json!({"k8s-app": "kube-dns"}),
        "10.96.0.10",
        json!([{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}, {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}, {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]),
    );

    // shop: the web app.
    put(
        state,
        "",
        "serviceaccounts",
        json!({"metadata": {"name": "web", "namespace": "shop", "creationTimestamp": ago(3 * DAY)}, "secrets": [{"name": "web-token"}]}),
        "kubectl-client-side-apply",
    );
    put(
        state,
        "",
        "secrets",
        json!({"metadata": {"name": "web-token", "namespace": "shop", "creationTimestamp": ago(3 * DAY), "annotations": {"kubernetes.io/service-account.name": "web", "kubernetes.io/service-account.uid": "8d3f5c2a-6b1e-4f7a-9c0d-2e4b6a8c1f3d"}},
            "type": "kubernetes.io/service-account-token",
            "data": {"ca.crt": B64.encode(&state.ca_pem), "namespace": B64.encode("shop"), "token": B64.encode(fake_jwt("shop", "web"))}}),
        "kube-controller-manager",
    );
    let applied = json!({"apiVersion": "v1", "data": {"password": B64.encode("S3cr3t-Pa55w0rd"), "username": B64.encode("shop")}, "kind": "Secret", "metadata": {"annotations": {}, "name": "db-credentials", "namespace": "shop"}, "type": "Opaque"});
    put(
        state,
        "",
        "secrets",
        json!({"metadata": {"name": "db-credentials", "namespace": "shop", "creationTimestamp": ago(3 * DAY),
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{}\n", serde_json::to_string(&applied).unwrap_or_default())}},
            "type": "Opaque", "data": {"password": B64.encode("S3cr3t-Pa55w0rd"), "username": B64.encode("shop")}}),
        "kubectl-client-side-apply",
    );
    put(
        state,
        "",
        "configmaps",
        json!({"metadata": {"name": "web-config", "namespace": "shop", "creationTimestamp": ago(3 * DAY)}, "data": {"DATABASE_URL": DATABASE_URL, "LOG_FORMAT": "json"}}),
        "kubectl-client-side-apply",
    );
    let env = json!([{"name": "LOG_LEVEL", "value": "info"}, {"name": "DATABASE_URL", "value": DATABASE_URL}]);
    deploy_app(
        state,
        App {
            ns: "shop",
            name: "web",
            hash: "6b7f9c5d4",
            labels: json!({"app": "web"}),
            replicas: 2,
            pod_spec: json!({"serviceAccountName": "web", "containers": [
                {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}], "env": env,
                 "volumeMounts": [{"name": "logs", "mountPath": "/var/log/nginx"}]},
                {"name": "log-shipper", "image": "fluent/fluent-bit:3.0", "volumeMounts": [{"name": "logs", "mountPath": "/var/log/nginx", "readOnly": true}]},
            ], "volumes": [{"name": "logs", "emptyDir": {}}]}),
            pods: &[
                ("x2k9p", "node-1", "10.244.0.15"),
                ("q8m3z", "node-2", "10.244.1.17"),
            ],
            age: 3 * DAY,
        },
    );
    service(
        state,
        "shop",
        "web",
        json!({"app": "web"}),
        json!({"app": "web"}),
        "10.96.142.27",
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}]),
    );
    put(
        state,
        "",
        "endpoints",
        json!({"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}, "creationTimestamp": ago(3 * DAY)},
        "subsets": [{"addresses": [{"ip": "10.244.0.15", "nodeName": "node-1", "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-6b7f9c5d4-x2k9p"}}, {"ip": "10.244.1.17", "nodeName": "node-2", "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-6b7f9c5d4-q8m3z"}}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]}),
        "kube-controller-manager",
    );

    // payments.
    deploy_app(
        state,
        App {
            ns: "payments",
            name: "api",
            hash: "7c9d8b6f5",
            labels: json!({"app": "api"}),
            replicas: 1,
            pod_spec: json!({"containers": [{"name": "api", "image": "ghcr.io/example/payments-api:2.4.1", "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "envFrom": [{"configMapRef": {"name": "payments-config"}}]}]}),
            pods: &[("m2n4p", "node-2", "10.244.1.23")],
            age: 3 * DAY,
        },
    );
    let worker_labels = json!({"app": "payments-worker"});
    let worker_spec = json!({"containers": [{"name": "worker", "image": "ghcr.io/example/payments-worker:2.4.1",
        "env": [{"name": "STRIPE_API_KEY", "valueFrom": {"secretKeyRef": {"name": "stripe-key", "key": "api-key"}}}]}]});
    let mut tpl = worker_spec.clone();
    default_pod_spec(&mut tpl);
    let sts = put(
        state,
        "apps",
        "statefulsets",
        json!({"metadata": {"name": "payments-worker", "namespace": "payments", "labels": worker_labels, "creationTimestamp": ago(3 * DAY)},
            "spec": {"replicas": 1, "serviceName": "payments-worker", "selector": {"matchLabels": worker_labels}, "template": {"metadata": {"labels": worker_labels}, "spec": tpl}, "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}}),
        "kubectl-client-side-apply",
    );
    let mut pod_labels = worker_labels.clone();
    pod_labels["statefulset.kubernetes.io/pod-name"] = json!("payments-worker-0");
    pod_labels["apps.kubernetes.io/pod-index"] = json!("0");
    pod(
        state,
        "payments",
        "payments-worker-0",
        &pod_labels,
        &tpl,
        "node-1",
        "10.244.0.31",
        Some(
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "payments-worker", "uid": sts["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]),
        ),
        3 * DAY,
    );
    put(
        state,
        "",
        "secrets",
        json!({"metadata": {"name": "stripe-key", "namespace": "payments", "creationTimestamp": ago(3 * DAY)}, "type": "Opaque", "data": {"api-key": B64.encode("sk_live_51HxAirlockTestKey0000000000")}}),
        "kubectl-create",
    );
    put(
        state,
        "",
        "configmaps",
        json!({"metadata": {"name": "payments-config", "namespace": "payments", "creationTimestamp": ago(3 * DAY)}, "data": {"STRIPE_API_BASE": "https://api.stripe.com", "CURRENCY": "usd", "WEBHOOK_PATH": "/hooks/stripe"}}),
        "kubectl-client-side-apply",
    );
    // What the endpoints controllers made of the services and pods above.
    let (namespaces, _) = state
        .store
        .list(&(String::new(), "namespaces".into()), None);
    for ns in namespaces {
        crate::endpoints::sync(state, ns["metadata"]["name"].as_str().unwrap_or_default());
    }
}
