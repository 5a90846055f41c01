//! Every rule of the `ai-agent-baseline` preset, hit by a real kubectl command through the
//! demo (1 s approval hold), and nothing refused reaches the cluster.

mod common;

use common::{ok, stderr, Demo};

const POD: &str = "web-6b7f9c5d4-x2k9p";

#[test]
fn every_baseline_rule_is_hit_by_real_kubectl() {
    let demo = Demo::start();
    let dir = demo.dir.clone();
    let manifest = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let host_path = manifest(
        "hostpath.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hp, namespace: shop}\nspec:\n  selector: {matchLabels: {app: hp}}\n  template:\n    metadata: {labels: {app: hp}}\n    spec:\n      containers: [{name: app, image: busybox}]\n      volumes: [{name: root, hostPath: {path: /}}]\n",
    );
    let daemonset = manifest(
        "hostpid.yaml",
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: hpid, namespace: shop}\nspec:\n  selector: {matchLabels: {app: hpid}}\n  template:\n    metadata: {labels: {app: hpid}}\n    spec:\n      hostPID: true\n      containers: [{name: app, image: busybox}]\n",
    );
    let pod_proxy = format!("/api/v1/namespaces/shop/pods/{POD}:8080/proxy/");
    let old_proxy = format!("/api/v1/proxy/namespaces/shop/pods/{POD}/");
    // kubectl 1.30 sends JSON bodies; 1.32+ sends protobuf for `create` (checked below).
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics"],
            "deny-node-proxy",
        ),
        (vec!["get", "--raw", &pod_proxy], "deny-pod-proxy"),
        (
            vec![
                "get",
                "--raw",
                "/api/v1/namespaces/shop/services/web:80/proxy/",
            ],
            "deny-service-proxy",
        ),
        (vec!["get", "--raw", &old_proxy], "deny-proxy-verb"),
        (
            vec![
                "create",
                "clusterrole",
                "esc",
                "--verb=escalate",
                "--resource=clusterroles",
            ],
            "deny-rbac-escalation-grants",
        ),
        (
            vec!["create", "token", "default", "-n", "shop"],
            "deny-token-request",
        ),
        (
            vec!["delete", "namespace", "payments"],
            "approve-namespace-delete",
        ),
        (
            vec!["delete", "--raw", "/api/v1/namespaces/shop/configmaps"],
            "approve-deletecollection",
        ),
        (
            vec![
                "create",
                "clusterrolebinding",
                "root",
                "--clusterrole=cluster-admin",
                "--user=agent@demo",
            ],
            "approve-cluster-admin-binding",
        ),
        (
            vec![
                "create",
                "role",
                "reader",
                "--verb=get",
                "--resource=pods",
                "-n",
                "shop",
            ],
            "approve-rbac-writes",
        ),
        (
            vec![
                "create",
                "secret",
                "generic",
                "s",
                "--from-literal=a=b",
                "-n",
                "shop",
            ],
            "approve-secret-writes",
        ),
        (
            vec!["exec", "-n", "payments", "payments-worker-0", "--", "env"],
            "approve-exec-protected-namespaces",
        ),
        (
            vec![
                "port-forward",
                "-n",
                "payments",
                "pod/payments-worker-0",
                "18089:8080",
            ],
            "approve-exec-protected-namespaces",
        ),
        (
            vec![
                "debug",
                "-n",
                "payments",
                "payments-worker-0",
                "--image=busybox",
                "--",
                "true",
            ],
            "approve-debug-protected-namespaces",
        ),
        (
            vec![
                "debug",
                "-n",
                "shop",
                POD,
                "--image=busybox",
                "--profile=sysadmin",
                "--",
                "true",
            ],
            "approve-privileged-pods",
        ),
        (
            vec![
                "run",
                "hostnet",
                "-n",
                "shop",
                "--image=busybox",
                "--overrides={\"spec\":{\"hostNetwork\":true}}",
            ],
            "approve-host-namespaces",
        ),
        (vec!["apply", "-f", &daemonset], "approve-host-namespaces"),
        (vec!["apply", "-f", &host_path], "approve-host-path"),
        (
            vec!["scale", "deploy/web", "-n", "shop", "--replicas=0"],
            "approve-scale-to-zero",
        ),
    ];
    demo.clear_received();
    for (args, rule) in &cases {
        let out = demo.kubectl("1.30", args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} was not refused");
        assert!(err.contains(rule), "{args:?}: expected {rule}: {err}");
    }
    // kubectl 1.32+ sends these creates as protobuf: the policy reads them too (strictly).
    let protobuf_cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "create",
                "clusterrole",
                "esc33",
                "--verb=escalate",
                "--resource=clusterroles",
            ],
            "deny-rbac-escalation-grants",
        ),
        (
            vec![
                "create",
                "clusterrolebinding",
                "root33",
                "--clusterrole=cluster-admin",
                "--user=agent@demo",
            ],
            "approve-cluster-admin-binding",
        ),
        (
            vec![
                "create",
                "role",
                "r33",
                "-n",
                "shop",
                "--verb=get",
                "--resource=pods",
            ],
            "approve-rbac-writes",
        ),
        // The node debugger: host namespaces, a hostPath volume for `/`, tolerations; with
        // `--profile=sysadmin` a privileged container.
        (
            vec!["debug", "node/node-1", "--image=busybox", "--", "true"],
            "approve-host-namespaces",
        ),
        (
            vec![
                "debug",
                "node/node-1",
                "--image=busybox",
                "--profile=sysadmin",
                "--",
                "true",
            ],
            "approve-privileged-pods",
        ),
    ];
    for (args, rule) in &protobuf_cases {
        let out = demo.kubectl("1.33", args);
        let err = stderr(&out);
        assert!(!out.status.success(), "1.33 {args:?} was not refused");
        assert!(err.contains(rule), "1.33 {args:?}: expected {rule}: {err}");
    }
    // Impersonation (`--as`) never reaches the policy: the gateway refuses it first.
    let out = demo.kubectl("1.30", &["get", "pods", "-n", "shop", "--as=someone"]);
    assert!(
        stderr(&out).contains("impersonation is not allowed"),
        "{}",
        stderr(&out)
    );

    let writes = common::writes_received(&demo);
    assert!(
        writes.is_empty(),
        "refused calls reached the cluster: {writes:#?}"
    );
    // A dry run changes nothing: calls that need approval are answered at once, and the
    // cluster is unchanged (deny rules still apply: `harmless_dry_run` only lifts holds).
    for args in [
        &[
            "delete",
            "secret",
            "db-credentials",
            "-n",
            "shop",
            "--dry-run=server",
        ][..],
        &[
            "scale",
            "deploy/web",
            "-n",
            "shop",
            "--replicas=0",
            "--dry-run=server",
        ],
        &["delete", "namespace", "payments", "--dry-run=server"],
    ] {
        let out = demo.kubectl("1.33", args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    ok(&demo.kubectl_direct("1.33", &["get", "secret", "db-credentials", "-n", "shop"]));
    ok(&demo.kubectl_direct("1.33", &["get", "namespace", "payments"]));
    let replicas = ok(&demo.kubectl_direct(
        "1.33",
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    ));
    assert_ne!(replicas.trim(), "0");
    let proxied: Vec<_> = demo
        .received()
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap_or("").contains("proxy"))
        .collect();
    assert!(
        proxied.is_empty(),
        "a proxy call reached the cluster: {proxied:#?}"
    );
}

/// `kubectl auth can-i` asks the cluster, which answers from RBAC alone; Airlock lays its
/// policy over that answer: `no` for a call the policy denies whatever its body, `yes` with a
/// reason for a call it holds.
#[test]
fn kubectl_auth_can_i_answers_from_the_policy_too() {
    let demo = Demo::start();
    for v in ["1.27", "1.33"] {
        let can_i = |args: &[&str]| {
            let mut all = vec!["auth", "can-i"];
            all.extend_from_slice(args);
            let out = demo.kubectl(v, &all);
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.code(), text)
        };
        for (args, rule) in [
            (
                &[
                    "create",
                    "serviceaccounts",
                    "--subresource=token",
                    "-n",
                    "shop",
                ][..],
                "minting service account tokens",
            ),
            (
                &["get", "pods", "--subresource=proxy", "-n", "shop"],
                "proxying to pods",
            ),
            (
                &["create", "certificatesigningrequests"],
                "certificate signing request",
            ),
            (&["bind", "clusterroles"], "escalate, bind and impersonate"),
        ] {
            let (code, text) = can_i(args);
            assert_eq!(code, Some(1), "{v} {args:?}: {text}");
            assert!(
                text.starts_with("no - Airlock's policy denies this: ") && text.contains(rule),
                "{v} {args:?}: {text}"
            );
            // The cluster's own answer, from RBAC, is yes.
            let direct = demo.kubectl_direct(v, &[&["auth", "can-i"][..], args].concat());
            assert_eq!(
                String::from_utf8_lossy(&direct.stdout).trim(),
                "yes",
                "{v} {args:?}"
            );
        }
        for args in [
            &["list", "pods", "-n", "shop"][..],
            &["delete", "namespaces"],
            &["create", "pods", "--subresource=exec", "-n", "payments"],
        ] {
            let (code, text) = can_i(args);
            assert_eq!((code, text.as_str()), (Some(0), "yes"), "{v} {args:?}");
        }
    }

    // API clients read the reason of a held call.
    let review = demo.dir.join("review.json");
    std::fs::write(
        &review,
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
            "spec":{"resourceAttributes":{"verb":"delete","resource":"namespaces","name":"payments"}}}"#,
    )
    .unwrap();
    let out = ok(&demo.kubectl(
        "1.33",
        &["create", "-f", review.to_str().unwrap(), "-o", "json"],
    ));
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["status"]["allowed"], true, "{out}");
    assert!(
        answer["status"]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Airlock holds this call for a human's approval: "),
        "{out}"
    );
}
