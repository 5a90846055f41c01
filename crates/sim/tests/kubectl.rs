//! End-to-end: the real kubectl binaries (oldest and newest supported) against the simulator.

mod common;

use common::{have_kubectl, Bench, VERSIONS};

#[test]
fn get_prints_tables_and_formats() {
    if !have_kubectl() {
        return;
    }
    let b = Bench::start();
    for v in VERSIONS {
        let out = b.ok(v, &["get", "pods", "-A"]);
        let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            "{v}"
        );
        for pod in [
            "coredns-5d78c9869d-8xk2p",
            "coredns-5d78c9869d-q4w7n",
            "web-6b7f9c5d4-x2k9p",
            "web-6b7f9c5d4-q8m3z",
            "api-7c9d8b6f5-m2n4p",
            "payments-worker-0",
        ] {
            let line = out
                .lines()
                .find(|l| l.contains(pod))
                .unwrap_or_else(|| panic!("{v}: {pod} missing in\n{out}"));
            assert!(line.contains("Running"), "{line}");
        }
        assert!(out.contains("2/2"), "web pods have two ready containers");

        let wide = b.ok(v, &["get", "pods", "-n", "shop", "-o", "wide"]);
        assert!(
            wide.lines().next().unwrap().contains("NOMINATED NODE"),
            "{wide}"
        );
        assert!(
            wide.contains("node-1") && wide.contains("10.244."),
            "{wide}"
        );

        let yaml = b.ok(
            v,
            &[
                "get",
                "pod",
                "web-6b7f9c5d4-x2k9p",
                "-n",
                "shop",
                "-o",
                "yaml",
            ],
        );
        assert!(
            yaml.contains("postgres://shop:S3cr3t-Pa55w0rd@db.shop.svc:5432/shop"),
            "{yaml}"
        );
        assert!(yaml.contains("/var/run/secrets/kubernetes.io/serviceaccount"));
        assert!(yaml.contains("kind: ReplicaSet"), "ownerReferences");

        let json: serde_json::Value =
            serde_json::from_str(&b.ok(v, &["get", "deploy", "web", "-n", "shop", "-o", "json"]))
                .unwrap();
        assert_eq!(json["spec"]["replicas"], 2);
        assert_eq!(json["status"]["readyReplicas"], 2);

        let jp = b.ok(
            v,
            &[
                "get",
                "cm",
                "web-config",
                "-n",
                "shop",
                "-o",
                "jsonpath={.data.LOG_FORMAT}",
            ],
        );
        assert_eq!(jp, "json");

        let all = b.ok(v, &["get", "all", "-n", "shop"]);
        for want in [
            "pod/web-6b7f9c5d4-x2k9p",
            "service/web",
            "deployment.apps/web",
            "replicaset.apps/web-6b7f9c5d4",
        ] {
            assert!(all.contains(want), "{v}: {want} in\n{all}");
        }
        let nodes = b.ok(v, &["get", "nodes"]);
        assert!(
            nodes.contains("node-1") && nodes.contains("Ready") && nodes.contains("control-plane"),
            "{nodes}"
        );
        let secrets = b.ok(v, &["get", "secrets", "-n", "shop"]);
        assert!(
            secrets.contains("kubernetes.io/service-account-token")
                && secrets.lines().next().unwrap().contains("TYPE"),
            "{secrets}"
        );
        let ns = b.ok(v, &["get", "ns"]);
        for n in [
            "default",
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "shop",
            "payments",
        ] {
            assert!(ns.contains(n), "{ns}");
        }
        let sel = b.ok(
            v,
            &["get", "pods", "-A", "-l", "app in (web,api)", "-o", "name"],
        );
        assert_eq!(sel.lines().count(), 3, "{sel}");
        let fsel = b.ok(
            v,
            &[
                "get",
                "pods",
                "-A",
                "--field-selector",
                "spec.nodeName=node-2,metadata.namespace!=kube-system",
                "-o",
                "name",
            ],
        );
        assert_eq!(fsel.lines().count(), 2, "{fsel}");
        let none = b.ok(v, &["get", "pods", "-n", "default"]);
        assert!(none.is_empty(), "{none}");

        let res = b.ok(v, &["api-resources"]);
        assert!(
            res.contains("deployments") && res.contains("deploy") && res.contains("apps/v1"),
            "{res}"
        );
        let ver = b.ok(v, &["get", "--raw", "/version"]);
        assert!(ver.contains("v1.31.0"));
        let err = b.fails(v, &["get", "pod", "nope", "-n", "shop"]);
        assert!(err.contains("pods \"nope\" not found"), "{err}");
        let err = b.fails(v, &["get", "deploy", "nope", "-n", "shop"]);
        assert!(err.contains("deployments.apps \"nope\" not found"), "{err}");
    }
}

#[test]
fn describe_shows_objects_and_events() {
    if !have_kubectl() {
        return;
    }
    let b = Bench::start();
    for v in VERSIONS {
        let pod = b.ok(
            v,
            &["describe", "pod", "payments-worker-0", "-n", "payments"],
        );
        assert!(
            pod.contains("Successfully assigned payments/payments-worker-0 to node-1"),
            "{pod}"
        );
        assert!(
            pod.contains("Controlled By:  StatefulSet/payments-worker"),
            "{pod}"
        );
        let dep = b.ok(v, &["describe", "deployment", "web", "-n", "shop"]);
        assert!(dep.contains("NewReplicaSet:   web-6b7f9c5d4"), "{dep}");
        let sec = b.ok(v, &["describe", "secret", "db-credentials", "-n", "shop"]);
        assert!(
            sec.contains("password:  15 bytes") && !sec.contains("S3cr3t"),
            "{sec}"
        );
        let node = b.ok(v, &["describe", "node", "node-2"]);
        assert!(
            node.contains("KubeletReady") && node.contains("HolderIdentity:  node-2"),
            "{node}"
        );
    }
}

#[test]
fn create_apply_edit_patch_label() {
    if !have_kubectl() {
        return;
    }
    let b = Bench::start();
    for v in VERSIONS {
        let ns = format!("t{}", v.replace('.', ""));
        // Typed-client creates (protobuf bodies from kubectl 1.32+).
        b.ok(v, &["create", "namespace", &ns]);
        assert!(
            b.ok(v, &["get", "sa", "default", "-n", &ns])
                .contains("default"),
            "namespace controller adds the default SA"
        );
        b.ok(
            v,
            &["create", "configmap", "c1", "-n", &ns, "--from-literal=a=b"],
        );
        b.ok(
            v,
            &[
                "create",
                "secret",
                "generic",
                "s1",
                "-n",
                &ns,
                "--from-literal=password=hunter2",
            ],
        );
        b.ok(
            v,
            &[
                "create",
                "deployment",
                "d1",
                "-n",
                &ns,
                "--image=nginx:1.25",
                "--replicas=2",
            ],
        );
        assert_eq!(
            b.ok(
                v,
                &["get", "cm", "c1", "-n", &ns, "-o", "jsonpath={.data.a}"]
            ),
            "b"
        );
        assert_eq!(
            b.ok(
                v,
                &[
                    "get",
                    "secret",
                    "s1",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.data.password}"
                ]
            ),
            "aHVudGVyMg=="
        );
        assert_eq!(
            b.ok(
                v,
                &[
                    "get",
                    "deploy",
                    "d1",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}"
                ]
            ),
            "2 nginx:1.25"
        );
        assert_eq!(
            b.ok(v, &["get", "pods", "-n", &ns, "-l", "app=d1", "-o", "name"])
                .lines()
                .count(),
            2,
            "deployment created pods"
        );
        let err = b.fails(
            v,
            &["create", "configmap", "c1", "-n", &ns, "--from-literal=a=b"],
        );
        assert!(
            err.contains("AlreadyExists") || err.contains("already exists"),
            "{err}"
        );
        let err = b.fails(v, &["create", "configmap", "c2", "-n", "missing-ns"]);
        assert!(err.contains("namespaces \"missing-ns\" not found"), "{err}");
        // Server-side dry run stores nothing.
        b.ok(
            v,
            &["create", "configmap", "dry", "-n", &ns, "--dry-run=server"],
        );
        b.fails(v, &["get", "cm", "dry", "-n", &ns]);

        // Client-side apply: create, then change.
        let manifest = b.dir.join(format!("app-{v}.yaml"));
        let write = |image: &str| {
            std::fs::write(&manifest, format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: app}}\n  template:\n    metadata:\n      labels: {{app: app}}\n    spec:\n      containers:\n      - name: c\n        image: {image}\n        env: [{{name: A, value: \"1\"}}]\n")).unwrap();
        };
        write("nginx:1.26");
        assert!(b
            .ok(v, &["apply", "-f", manifest.to_str().unwrap()])
            .contains("created"));
        write("nginx:1.27");
        assert!(b
            .ok(v, &["apply", "-f", manifest.to_str().unwrap()])
            .contains("configured"));
        let got = b.ok(v, &["get", "deploy", "app", "-n", &ns, "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation} {.status.observedGeneration}"]);
        assert_eq!(got, "nginx:1.27 2 2");
        let last = b.ok(v, &["get", "deploy", "app", "-n", &ns, "-o", "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}"]);
        assert!(last.contains("nginx:1.27"), "{last}");
        // Server-side apply.
        write("nginx:1.28");
        assert!(b
            .ok(
                v,
                &["apply", "--server-side", "-f", manifest.to_str().unwrap()]
            )
            .contains("serverside-applied"));
        let mf = b.ok(
            v,
            &[
                "get",
                "deploy",
                "app",
                "-n",
                &ns,
                "--show-managed-fields",
                "-o",
                "jsonpath={.metadata.managedFields[*].manager}",
            ],
        );
        // kubectl migrates client-side-apply ownership to its server-side manager.
        assert!(mf.split_whitespace().any(|m| m == "kubectl"), "{mf}");
        assert_eq!(
            b.ok(
                v,
                &[
                    "get",
                    "deploy",
                    "app",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}"
                ]
            ),
            "nginx:1.28"
        );
        let (ok, _, err) = b.run(v, &["diff", "-f", manifest.to_str().unwrap()]);
        assert!(ok, "no diff after apply: {err}");

        // Edit through $KUBE_EDITOR (GET then strategic merge PATCH).
        let edited = b
            .kubectl(v)
            .env("KUBE_EDITOR", "sed -i s/a:\\ b/a:\\ edited/")
            .args(["edit", "cm", "c1", "-n", &ns])
            .output()
            .unwrap();
        assert!(
            edited.status.success(),
            "{}",
            String::from_utf8_lossy(&edited.stderr)
        );
        assert_eq!(
            b.ok(
                v,
                &["get", "cm", "c1", "-n", &ns, "-o", "jsonpath={.data.a}"]
            ),
            "edited"
        );

        // Patches of every type.
        b.ok(
            v,
            &[
                "patch",
                "cm",
                "c1",
                "-n",
                &ns,
                "-p",
                "{\"data\":{\"m\":\"merge\"}}",
            ],
        );
        b.ok(
            v,
            &[
                "patch",
                "cm",
                "c1",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                "{\"data\":{\"n\":\"1\"}}",
            ],
        );
        b.ok(
            v,
            &[
                "patch",
                "cm",
                "c1",
                "-n",
                &ns,
                "--type=json",
                "-p",
                "[{\"op\":\"remove\",\"path\":\"/data/n\"}]",
            ],
        );
        assert_eq!(
            b.ok(v, &["get", "cm", "c1", "-n", &ns, "-o", "jsonpath={.data}"]),
            "{\"a\":\"edited\",\"m\":\"merge\"}"
        );
        b.ok(v, &["patch", "deploy", "app", "-n", &ns, "-p", "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"c\",\"env\":[{\"name\":\"B\",\"value\":\"2\"}]}]}}}}"]);
        assert_eq!(
            b.ok(
                v,
                &[
                    "get",
                    "deploy",
                    "app",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].env[*].name}"
                ]
            ),
            "A B"
        );
        let err = b.fails(
            v,
            &[
                "patch",
                "cm",
                "c1",
                "-n",
                &ns,
                "--type=json",
                "-p",
                "[{\"op\":\"remove\",\"path\":\"/data/zzz\"}]",
            ],
        );
        assert!(!err.is_empty());

        // Labels and annotations.
        b.ok(
            v,
            &[
                "label",
                "pod",
                "web-6b7f9c5d4-x2k9p",
                "-n",
                "shop",
                &format!("tested-{ns}=yes"),
            ],
        );
        assert!(b
            .ok(
                v,
                &[
                    "get",
                    "pods",
                    "-n",
                    "shop",
                    "-l",
                    &format!("tested-{ns}=yes"),
                    "-o",
                    "name"
                ]
            )
            .contains("web-6b7f9c5d4-x2k9p"));
        let err = b.fails(v, &["label", "cm", "c1", "-n", &ns, "bad=not valid"]);
        assert!(!err.is_empty());
        b.ok(v, &["annotate", "cm", "c1", "-n", &ns, "note=hi"]);
    }
}

#[test]
fn scale_rollout_and_delete() {
    if !have_kubectl() {
        return;
    }
    let b = Bench::start();
    for v in VERSIONS {
        b.ok(v, &["scale", "deploy/web", "-n", "shop", "--replicas=3"]);
        assert_eq!(
            b.ok(
                v,
                &["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"]
            )
            .lines()
            .count(),
            3
        );
        assert!(b
            .ok(v, &["get", "deploy", "web", "-n", "shop"])
            .contains("3/3"));
        b.ok(v, &["scale", "deploy/web", "-n", "shop", "--replicas=2"]);
        assert_eq!(
            b.ok(
                v,
                &["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"]
            )
            .lines()
            .count(),
            2
        );
        // kubectl refuses a second restart within the same second (the annotation is a
        // second-resolution timestamp), and the previous version restarted this deployment.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        b.ok(v, &["rollout", "restart", "deploy/web", "-n", "shop"]);
        let status = b.ok(
            v,
            &[
                "rollout",
                "status",
                "deploy/web",
                "-n",
                "shop",
                "--timeout=20s",
            ],
        );
        assert!(status.contains("successfully rolled out"), "{status}");
        let anno = b.ok(
            v,
            &[
                "get",
                "deploy",
                "web",
                "-n",
                "shop",
                "-o",
                "jsonpath={.spec.template.metadata.annotations}",
            ],
        );
        assert!(anno.contains("kubectl.kubernetes.io/restartedAt"), "{anno}");
    }
    let v = "1.33";
    // The controllers and the kubelet record what they did, as `kubectl describe` shows.
    let d = b.ok(v, &["describe", "deploy", "web", "-n", "shop"]);
    assert!(
        d.contains("ScalingReplicaSet") && d.contains("from 3 to 2"),
        "{d}"
    );
    let rs = b.ok(v, &["describe", "rs", "-n", "shop", "-l", "app=web"]);
    assert!(
        rs.contains("SuccessfulCreate") && rs.contains("SuccessfulDelete"),
        "{rs}"
    );
    // The endpoints controllers follow the pods: two web pods after the scale above.
    let ips = b.ok(
        v,
        &[
            "get",
            "endpointslices",
            "-n",
            "shop",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].endpoints[*].addresses[0]}",
        ],
    );
    assert_eq!(ips.split_whitespace().count(), 2, "{ips}");
    let svc = b.ok(v, &["describe", "svc", "web", "-n", "shop"]);
    let first = ips.split_whitespace().next().unwrap_or("none");
    assert!(svc.contains(&format!("{first}:80")), "{svc}");
    let ep = b.ok(v, &["get", "endpoints", "web", "-n", "shop"]);
    assert!(ep.contains(&format!("{first}:80")), "{ep}");
    b.ok(
        v,
        &["run", "events-probe", "-n", "shop", "--image=busybox:1.36"],
    );
    let pod = b.ok(v, &["describe", "pod", "events-probe", "-n", "shop"]);
    for line in [
        "Successfully assigned shop/events-probe to node-1",
        "Container image \"busybox:1.36\" already present on machine",
        "Started container events-probe",
    ] {
        assert!(pod.contains(line), "{line}: {pod}");
    }
    // Deleting a controlled pod gets it replaced; deleting the owner removes everything.
    b.ok(v, &["delete", "pod", "payments-worker-0", "-n", "payments"]);
    assert!(b
        .ok(v, &["get", "pods", "-n", "payments"])
        .contains("payments-worker-0"));
    b.ok(v, &["delete", "deploy", "api", "-n", "payments"]);
    b.ok(v, &["delete", "svc", "web", "-n", "shop"]);
    let gone = b.fails(v, &["get", "endpoints", "web", "-n", "shop"]);
    assert!(gone.contains("not found"), "{gone}");
    assert!(!b
        .ok(v, &["get", "rs,pods", "-n", "payments", "-o", "name"])
        .contains("api-"));
    b.ok(
        v,
        &[
            "delete",
            "cm",
            "payments-config",
            "-n",
            "payments",
            "--grace-period=0",
            "--force",
        ],
    );
    b.ok("1.27", &["delete", "ns", "payments", "--timeout=20s"]);
    let err = b.fails(v, &["get", "secret", "stripe-key", "-n", "payments"]);
    assert!(err.contains("not found"), "{err}");
    b.ok(v, &["delete", "pods", "--all", "-n", "kube-system"]);
}

#[test]
fn auth_identity_and_impersonation() {
    if !have_kubectl() {
        return;
    }
    let b = Bench::start();
    for v in VERSIONS {
        assert_eq!(
            b.ok(v, &["auth", "can-i", "delete", "pods", "-n", "shop"])
                .trim(),
            "yes"
        );
        assert_eq!(
            b.ok(v, &["auth", "can-i", "get", "secrets", "--as", "jane"])
                .trim(),
            "yes"
        );
        // Client certificate authentication.
        let out = b
            .kubectl(v)
            .env("KUBECONFIG", &b.cert_kubeconfig)
            .args(["get", "ns", "shop", "-o", "name"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A wrong token is 401.
        let bad = b.dir.join("bad-kubeconfig");
        std::fs::write(
            &bad,
            std::fs::read_to_string(&b.kubeconfig)
                .unwrap()
                .replace(&b.sim().admin_token, "wrong"),
        )
        .unwrap();
        let out = b
            .kubectl(v)
            .env("KUBECONFIG", &bad)
            .args(["get", "pods"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // kubectl 1.27 asks authentication.k8s.io/v1beta1, later ones v1.
    for v in VERSIONS {
        let who = b.ok(
            v,
            &[
                "auth",
                "whoami",
                "--as",
                "jane",
                "--as-group",
                "dev",
                "--as-group",
                "ops",
                "-o",
                "json",
            ],
        );
        let who: serde_json::Value = serde_json::from_str(&who).unwrap();
        assert_eq!(who["status"]["userInfo"]["username"], "jane");
        assert_eq!(
            who["status"]["userInfo"]["groups"],
            serde_json::json!(["dev", "ops", "system:authenticated"])
        );
    }

    b.ok(
        "1.33",
        &[
            "get",
            "pods",
            "-n",
            "shop",
            "--as",
            "system:serviceaccount:shop:web",
        ],
    );
    let reqs = b.requests();
    let r = reqs
        .iter()
        .rev()
        .find(|r| r["path"] == "/api/v1/namespaces/shop/pods")
        .unwrap();
    assert_eq!(r["user"], "system:serviceaccount:shop:web");
    assert!(r["groups"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("system:serviceaccounts:shop")));
    assert_eq!(
        r["headers"]["impersonate-user"][0],
        "system:serviceaccount:shop:web"
    );
    assert_eq!(r["protocol"], "HTTP/2");
    assert!(!r["audit_id"].as_str().unwrap().is_empty());
    assert!(
        reqs.iter()
            .any(|r| r["user"] == "" && r["path"] == "/api/v1/namespaces/default/pods"),
        "401s are recorded too"
    );
}

#[test]
fn get_watch_streams_changes() {
    if !have_kubectl() {
        return;
    }
    let b = Bench::start();
    for v in VERSIONS {
        let child = b
            .kubectl(v)
            .args(["get", "pods", "-n", "shop", "-w", "--request-timeout=8s"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the initial list to be served before changing anything.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !b.requests().iter().any(|r| {
            r["query"]
                .as_str()
                .unwrap_or_default()
                .contains("watch=true")
                && r["headers"]["user-agent"][0]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&format!("v{v}"))
        }) {
            assert!(std::time::Instant::now() < deadline, "watch never started");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        b.ok(
            v,
            &[
                "label",
                "pod",
                "web-6b7f9c5d4-q8m3z",
                "-n",
                "shop",
                &format!("w{}=1", v.replace('.', "")),
            ],
        );
        b.ok(v, &["scale", "deploy/web", "-n", "shop", "--replicas=3"]);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines().next().unwrap_or_default().starts_with("NAME"),
            "{text}"
        );
        assert!(
            text.lines()
                .filter(|l| l.contains("web-6b7f9c5d4-q8m3z"))
                .count()
                >= 2,
            "initial row and the label change:\n{text}"
        );
        assert!(
            text.lines().count() >= 5,
            "a new pod from the scale-up:\n{text}"
        );
        b.ok(v, &["scale", "deploy/web", "-n", "shop", "--replicas=2"]);
    }
}
