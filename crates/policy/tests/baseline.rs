//! The `ai-agent-baseline` preset, rule by rule, against requests as kubectl
//! sends them.

mod support;

use policy::{Policy, Verdict};
use serde_json::json;
use support::{decided_by, matched, req, Req};

fn baseline() -> Policy {
    Policy::from_yaml("agent_groups: [ai-agents]\npresets: [ai-agent-baseline]\n")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn privileged_pod() -> serde_json::Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
        "spec":{"containers":[{"name":"c","image":"busybox","securityContext":{"privileged":true}}]}})
}

fn deployment(pod_spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
        "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
            "template":{"metadata":{"labels":{"app":"web"}},"spec":pod_spec}}})
}

/// `kubectl debug mypod -it --image=busybox --profile=sysadmin`: a strategic
/// merge patch to the ephemeralcontainers subresource (kubectl 1.27-1.33).
const DEBUG_SYSADMIN_PATCH: &str = r#"{"spec":{"ephemeralContainers":[{"name":"debugger-x7k2p","image":"busybox","resources":{},"terminationMessagePolicy":"File","imagePullPolicy":"Always","securityContext":{"privileged":true},"stdin":true,"tty":true}]}}"#;

/// The same with the default (`legacy`/`general`) profile.
const DEBUG_GENERAL_PATCH: &str = r#"{"spec":{"ephemeralContainers":[{"name":"debugger-x7k2p","image":"busybox","resources":{},"terminationMessagePolicy":"File","imagePullPolicy":"Always","stdin":true,"tty":true}]}}"#;

/// `kubectl debug node/n1 -it --image=busybox`: a pod in the node's host
/// namespaces with the node's root filesystem mounted.
fn node_debug_pod() -> serde_json::Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"node-debugger-n1-abcde","namespace":"default"},
        "spec":{"nodeName":"n1","hostIPC":true,"hostNetwork":true,"hostPID":true,"restartPolicy":"Never",
            "containers":[{"name":"debugger","image":"busybox","stdin":true,"tty":true,
                "volumeMounts":[{"name":"host-root","mountPath":"/host"}]}],
            "volumes":[{"name":"host-root","hostPath":{"path":"/"}}],
            "tolerations":[{"operator":"Exists"}]}})
}

const SSA_PRIVILEGED_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
    - name: c
      image: busybox
      securityContext:
        privileged: true
";

#[test]
fn every_baseline_rule() {
    let policy = baseline();
    let ns = "/api/v1/namespaces";
    let cases: Vec<(&str, Req, Verdict, &str)> = vec![
        // --- deny ---
        ("node proxy", req("GET", "/api/v1/nodes/n1/proxy/configz"), Verdict::Deny, "deny-node-proxy"),
        ("pod proxy", req("GET", &format!("{ns}/default/pods/web-1:8080/proxy/metrics")), Verdict::Deny, "deny-pod-proxy"),
        ("service proxy", req("GET", &format!("{ns}/default/services/web:http/proxy/")), Verdict::Deny, "deny-service-proxy"),
        ("deprecated proxy verb", req("GET", "/api/v1/proxy/nodes/n1/stats"), Verdict::Deny, "deny-proxy-verb"),
        ("escalate verb", req("PUT", "/apis/rbac.authorization.k8s.io/v1/clusterroles/x").verb("escalate"), Verdict::Deny, "deny-escalate-bind-impersonate"),
        ("bind verb", req("PUT", "/apis/rbac.authorization.k8s.io/v1/clusterroles/x").verb("bind"), Verdict::Deny, "deny-escalate-bind-impersonate"),
        ("impersonate verb", req("GET", "/api/v1/users/admin").verb("impersonate"), Verdict::Deny, "deny-escalate-bind-impersonate"),
        ("impersonation header", req("GET", &format!("{ns}/default/pods")).header("impersonate-user", "admin"), Verdict::Deny, "deny-impersonation-headers"),
        ("role granting impersonate",
            req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles").body(json!({"kind":"ClusterRole","metadata":{"name":"x"},
                "rules":[{"apiGroups":[""],"resources":["users","groups"],"verbs":["impersonate"]}]})),
            Verdict::Deny, "deny-rbac-escalation-grants"),
        ("role granting every verb",
            req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles").body(json!({"kind":"ClusterRole","metadata":{"name":"x"},
                "rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]})),
            Verdict::Deny, "deny-rbac-escalation-grants"),
        ("JSON patch hiding escalate behind an insert at the same index",
            req("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterroles/x").raw_body("application/json-patch+json",
                r#"[{"op":"add","path":"/rules/0/verbs/0","value":"escalate"},{"op":"add","path":"/rules/0/verbs/0","value":"get"}]"#),
            Verdict::Deny, "deny-rbac-escalation-grants"),
        ("JSON patch hiding a privileged container behind an insert at the same index",
            req("PATCH", "/apis/apps/v1/namespaces/default/deployments/web").raw_body("application/json-patch+json",
                r#"[{"op":"add","path":"/spec/template/spec/containers/0/securityContext","value":{"privileged":true}},{"op":"add","path":"/spec/template/spec/containers/0","value":{"name":"pad","image":"busybox"}}]"#),
            Verdict::Approve, "approve-privileged-pods"),
        ("token request", req("POST", &format!("{ns}/default/serviceaccounts/default/token")).body(json!({"kind":"TokenRequest","spec":{"audiences":["api"]}})),
            Verdict::Deny, "deny-token-request"),
        ("certificate signing request",
            req("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests").body(json!({"kind":"CertificateSigningRequest",
                "metadata":{"name":"agent"},"spec":{"signerName":"kubernetes.io/kube-apiserver-client","request":"LS0t","usages":["client auth"]}})),
            Verdict::Deny, "deny-certificate-requests"),
        ("certificate approval (kubectl certificate approve)",
            req("PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/agent/approval").body(json!({"kind":"CertificateSigningRequest",
                "metadata":{"name":"agent"},"status":{"conditions":[{"type":"Approved","status":"True"}]}})),
            Verdict::Deny, "deny-certificate-requests"),
        // --- approve ---
        ("delete namespace", req("DELETE", &format!("{ns}/staging")), Verdict::Approve, "approve-namespace-delete"),
        ("delete through a namespace subresource", req("DELETE", &format!("{ns}/staging/status")), Verdict::Approve, "approve-namespace-delete"),
        ("deletecollection", req("DELETE", &format!("{ns}/default/pods?labelSelector=app%3Dweb")), Verdict::Approve, "approve-deletecollection"),
        ("clusterrolebinding to cluster-admin",
            req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").body(json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
                "metadata":{"name":"agent-admin"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
                "subjects":[{"kind":"ServiceAccount","name":"agent","namespace":"default"}]})),
            Verdict::Approve, "approve-cluster-admin-binding"),
        ("rolebinding to view",
            req("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings").body(json!({"kind":"RoleBinding",
                "metadata":{"name":"v"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[]})),
            Verdict::Approve, "approve-rbac-writes"),
        ("delete role", req("DELETE", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/r"), Verdict::Approve, "approve-rbac-writes"),
        ("patch secret", req("PATCH", &format!("{ns}/default/secrets/db")).raw_body("application/merge-patch+json", r#"{"data":{"password":"aHVudGVyMg=="}}"#),
            Verdict::Approve, "approve-secret-writes"),
        ("create secret", req("POST", &format!("{ns}/default/secrets")).body(json!({"kind":"Secret","metadata":{"name":"s"}})), Verdict::Approve, "approve-secret-writes"),
        ("exec in kube-system (SPDY POST)", req("POST", &format!("{ns}/kube-system/pods/coredns-1/exec?command=sh&stdin=true&tty=true")),
            Verdict::Approve, "approve-exec-protected-namespaces"),
        ("exec in prod-web (WebSocket GET)", req("GET", &format!("{ns}/prod-web/pods/web-1/exec?command=sh")),
            Verdict::Approve, "approve-exec-protected-namespaces"),
        ("attach in payments", req("POST", &format!("{ns}/payments/pods/api-1/attach?stdin=true")), Verdict::Approve, "approve-exec-protected-namespaces"),
        ("port-forward in payments", req("POST", &format!("{ns}/payments/pods/api-1/portforward")), Verdict::Approve, "approve-exec-protected-namespaces"),
        ("kubectl debug (not privileged) in payments",
            req("PATCH", &format!("{ns}/payments/pods/api-1/ephemeralcontainers")).raw_body("application/strategic-merge-patch+json", DEBUG_GENERAL_PATCH),
            Verdict::Approve, "approve-debug-protected-namespaces"),
        ("ephemeralcontainers PUT in kube-system",
            req("PUT", &format!("{ns}/kube-system/pods/coredns-1/ephemeralcontainers")).body(json!({"kind":"Pod","metadata":{"name":"coredns-1"},
                "spec":{"containers":[{"name":"c"}],"ephemeralContainers":[{"name":"d","image":"busybox"}]}})),
            Verdict::Approve, "approve-debug-protected-namespaces"),
        ("privileged pod", req("POST", &format!("{ns}/default/pods")).body(privileged_pod()), Verdict::Approve, "approve-privileged-pods"),
        ("server-side apply of a privileged pod (YAML body)",
            req("PATCH", &format!("{ns}/default/pods/p?fieldManager=kubectl")).raw_body("application/apply-patch+yaml", SSA_PRIVILEGED_POD),
            Verdict::Approve, "approve-privileged-pods"),
        ("deployment with hostNetwork",
            req("POST", "/apis/apps/v1/namespaces/default/deployments").body(deployment(json!({"hostNetwork":true,"containers":[{"name":"c","image":"nginx"}]}))),
            Verdict::Approve, "approve-host-namespaces"),
        ("daemonset with hostPID",
            req("POST", "/apis/apps/v1/namespaces/default/daemonsets").body(json!({"kind":"DaemonSet","spec":{"template":{"spec":{"hostPID":true,"containers":[]}}}})),
            Verdict::Approve, "approve-host-namespaces"),
        ("statefulset with hostIPC (update)",
            req("PUT", "/apis/apps/v1/namespaces/default/statefulsets/db").body(json!({"kind":"StatefulSet","spec":{"template":{"spec":{"hostIPC":true,"containers":[]}}}})),
            Verdict::Approve, "approve-host-namespaces"),
        ("job with hostPath",
            req("POST", "/apis/batch/v1/namespaces/default/jobs").body(json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},
                "spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox","volumeMounts":[{"name":"h","mountPath":"/h"}]}],
                    "volumes":[{"name":"h","hostPath":{"path":"/var/run/docker.sock","type":"Socket"}}]}}}})),
            Verdict::Approve, "approve-host-path"),
        ("cronjob with a privileged container",
            req("POST", "/apis/batch/v1/namespaces/default/cronjobs").body(json!({"kind":"CronJob","spec":{"schedule":"*/5 * * * *",
                "jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}}}}}})),
            Verdict::Approve, "approve-privileged-pods"),
        ("replicaset privileged init container",
            req("POST", "/apis/apps/v1/namespaces/default/replicasets").body(json!({"kind":"ReplicaSet","spec":{"template":{"spec":{
                "initContainers":[{"name":"i","securityContext":{"privileged":true}}],"containers":[]}}}})),
            Verdict::Approve, "approve-privileged-pods"),
        ("kubectl debug --profile=sysadmin (ephemeralcontainers SMP)",
            req("PATCH", &format!("{ns}/default/pods/web-1/ephemeralcontainers")).raw_body("application/strategic-merge-patch+json", DEBUG_SYSADMIN_PATCH),
            Verdict::Approve, "approve-privileged-pods"),
        ("ephemeralcontainers PUT of a whole Pod",
            req("PUT", &format!("{ns}/default/pods/web-1/ephemeralcontainers")).body(json!({"kind":"Pod","metadata":{"name":"web-1"},
                "spec":{"containers":[{"name":"web"}],"ephemeralContainers":[{"name":"d","securityContext":{"privileged":true}}]}})),
            Verdict::Approve, "approve-privileged-pods"),
        ("legacy EphemeralContainers kind (pre-1.22 servers)",
            req("PATCH", &format!("{ns}/default/pods/web-1/ephemeralcontainers")).raw_body("application/strategic-merge-patch+json",
                r#"{"kind":"EphemeralContainers","apiVersion":"v1","metadata":{"name":"web-1"},"ephemeralContainers":[{"name":"d","securityContext":{"privileged":true}}]}"#),
            Verdict::Approve, "approve-privileged-pods"),
        ("kubectl debug node/n1",
            req("POST", &format!("{ns}/default/pods")).body(node_debug_pod()),
            Verdict::Approve, "approve-host-namespaces"),
        ("JSON patch adding hostNetwork to a deployment",
            req("PATCH", "/apis/apps/v1/namespaces/default/deployments/web").raw_body("application/json-patch+json",
                r#"[{"op":"add","path":"/spec/template/spec/hostNetwork","value":true}]"#),
            Verdict::Approve, "approve-host-namespaces"),
        ("JSON patch appending a hostPath volume",
            req("PATCH", "/apis/apps/v1/namespaces/default/deployments/web").raw_body("application/json-patch+json",
                r#"[{"op":"add","path":"/spec/template/spec/volumes/-","value":{"name":"h","hostPath":{"path":"/"}}}]"#),
            Verdict::Approve, "approve-host-path"),
        ("kubectl scale --replicas=0",
            req("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale").raw_body("application/merge-patch+json", r#"{"spec":{"replicas":0}}"#),
            Verdict::Approve, "approve-scale-to-zero"),
        ("PUT scale to 0",
            req("PUT", "/apis/apps/v1/namespaces/default/statefulsets/db/scale").body(json!({"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"db"},"spec":{"replicas":0}})),
            Verdict::Approve, "approve-scale-to-zero"),
        ("patch deployment replicas 0",
            req("PATCH", "/apis/apps/v1/namespaces/default/deployments/web").raw_body("application/strategic-merge-patch+json", r#"{"spec":{"replicas":0}}"#),
            Verdict::Approve, "approve-scale-to-zero"),
        // --- allow ---
        ("get pods", req("GET", &format!("{ns}/default/pods")), Verdict::Allow, "allow-reads"),
        ("watch all pods", req("GET", "/api/v1/pods?watch=true"), Verdict::Allow, "allow-reads"),
        ("get secret (reads are masked, not held)", req("GET", &format!("{ns}/default/secrets/db")), Verdict::Allow, "allow-reads"),
        ("discovery", req("GET", "/apis"), Verdict::Allow, "allow-reads"),
        ("version", req("GET", "/version"), Verdict::Allow, "allow-reads"),
        ("logs", req("GET", &format!("{ns}/kube-system/pods/coredns-1/log?follow=true")), Verdict::Allow, "allow-reads"),
        ("exec in default", req("POST", &format!("{ns}/default/pods/web-1/exec?command=ls")), Verdict::Allow, "allow-writes"),
        ("ordinary deployment",
            req("POST", "/apis/apps/v1/namespaces/default/deployments").body(deployment(json!({"containers":[{"name":"c","image":"nginx","securityContext":{"privileged":false}}]}))),
            Verdict::Allow, "allow-writes"),
        ("kubectl debug with the general profile",
            req("PATCH", &format!("{ns}/default/pods/web-1/ephemeralcontainers")).raw_body("application/strategic-merge-patch+json", DEBUG_GENERAL_PATCH),
            Verdict::Allow, "allow-writes"),
        ("kubectl scale --replicas=3",
            req("PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale").raw_body("application/merge-patch+json", r#"{"spec":{"replicas":3}}"#),
            Verdict::Allow, "allow-writes"),
        ("patch deployment image (no replicas)",
            req("PATCH", "/apis/apps/v1/namespaces/default/deployments/web").raw_body("application/strategic-merge-patch+json",
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:1.27"}]}}}}"#),
            Verdict::Allow, "allow-writes"),
        ("delete pod", req("DELETE", &format!("{ns}/default/pods/web-1")), Verdict::Allow, "allow-writes"),
        ("create clusterrole without escalation verbs is still an RBAC write",
            req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles").body(json!({"kind":"ClusterRole","rules":[{"verbs":["get"],"resources":["pods"],"apiGroups":[""]}]})),
            Verdict::Approve, "approve-rbac-writes"),
        // --- nothing allows it: agent default ---
        ("non-resource POST", req("POST", "/logs"), Verdict::Deny, "-"),
    ];
    let mut failures = Vec::new();
    for (name, request, verdict, rule) in &cases {
        let d = request.decide(&policy);
        if d.verdict != *verdict || decided_by(&d) != *rule {
            failures.push(format!(
                "{name}: got {:?} by {} (matched {:?}, errors {:?}), want {verdict:?} by {rule}",
                d.verdict,
                decided_by(&d),
                matched(&d),
                d.condition_errors
            ));
        }
        assert!(
            d.condition_errors.is_empty(),
            "{name}: {:?}",
            d.condition_errors
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn denial_message_names_rule_and_reason() {
    let d = req("GET", "/api/v1/nodes/n1/proxy/configz").decide(&baseline());
    assert_eq!(
        d.message,
        "denied by airlock policy rule \"deny-node-proxy\": proxying to nodes bypasses the API server's authorization (it reaches the kubelet API, including exec into every pod on the node)"
    );
}

#[test]
fn node_debug_matches_every_host_rule_and_lists_them() {
    let d = req("POST", "/api/v1/namespaces/default/pods")
        .body(node_debug_pod())
        .decide(&baseline());
    assert_eq!(d.verdict, Verdict::Approve);
    assert_eq!(
        matched(&d),
        [
            "approve-host-namespaces",
            "approve-host-path",
            "allow-writes"
        ]
    );
    assert_eq!(d.approvals.len(), 2);
    let req0 = &d.approvals[0];
    assert_eq!(req0.approvers, ["approvers"]);
    assert_eq!(req0.quorum, 1);
    assert_eq!(req0.hold, policy::DEFAULT_HOLD);
    assert_eq!(req0.grant.scopes, [policy::GrantScope::Request]);
    assert_eq!(d.hold(), Some(policy::DEFAULT_HOLD));
    assert!(d.message.starts_with(
        "approval required by airlock policy rule \"approve-host-namespaces\": sharing the node's network"
    ));
}

#[test]
fn deny_beats_approve_within_the_baseline() {
    let d = req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles")
        .body(json!({"kind":"ClusterRole","rules":[{"verbs":["escalate"],"resources":["clusterroles"],"apiGroups":["rbac.authorization.k8s.io"]}]}))
        .decide(&baseline());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(
        matched(&d),
        [
            "deny-rbac-escalation-grants",
            "approve-rbac-writes",
            "allow-writes"
        ]
    );
    assert!(d.approvals.is_empty(), "a denial carries no approvals");
}

#[test]
fn preset_params_and_exclude() {
    let policy = Policy::from_yaml(
        r#"
agent_groups: [ai-agents]
presets:
  - name: ai-agent-baseline
    params:
      approvers: [sre-oncall, security]
      protected_namespaces: ["team-*"]
      quorum: 2
      hold: 2m
      max_grant: 15m
    exclude: [approve-scale-to-zero]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = req("POST", "/api/v1/namespaces/team-a/pods/x/exec?command=sh").decide(&policy);
    assert_eq!(d.verdict, Verdict::Approve);
    let a = &d.approvals[0];
    assert_eq!(a.approvers, ["sre-oncall", "security"]);
    assert_eq!(a.quorum, 2);
    assert_eq!(a.hold, std::time::Duration::from_secs(120));
    assert_eq!(a.grant.max_duration, std::time::Duration::from_secs(900));
    // kube-system is no longer protected by the parameter's new value.
    let d = req(
        "POST",
        "/api/v1/namespaces/kube-system/pods/x/exec?command=sh",
    )
    .decide(&policy);
    assert_eq!(d.verdict, Verdict::Allow);
    // The excluded rule is gone.
    let d = req(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    )
    .raw_body("application/merge-patch+json", r#"{"spec":{"replicas":0}}"#)
    .decide(&policy);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(policy
        .rules()
        .all(|(name, _, _)| name != "approve-scale-to-zero"));
}

#[test]
fn preset_groups_param_scopes_rules() {
    let policy = Policy::from_yaml(
        "presets:\n  - name: ai-agent-baseline\n    params: { groups: [ai-agents] }\ndefault: allow\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let agent = req("GET", "/api/v1/nodes/n1/proxy/configz");
    assert_eq!(agent.decide(&policy).verdict, Verdict::Deny);
    let human = agent.clone().user("alice", &["sre"]);
    assert_eq!(human.decide(&policy).verdict, Verdict::Allow);
    assert_eq!(human.decide(&policy).basis, policy::Basis::Default);
}
