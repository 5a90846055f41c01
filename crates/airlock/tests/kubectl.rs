//! Real kubectl (1.27, 1.30, 1.32, 1.33) through Airlock against the simulated cluster.
//! Each test starts its own `airlock demo` and runs one area across every version.

mod common;

use common::{ok, stderr, Demo, KUBECTL_VERSIONS};

const WEB_POD: &str = "web-6b7f9c5d4-x2k9p";

#[test]
fn get_in_every_output_format() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        let table = ok(&demo.kubectl(v, &["get", "pods", "-n", "shop"]));
        assert!(
            table.contains("NAME") && table.contains("STATUS"),
            "{v}: {table}"
        );
        assert!(
            table.contains(WEB_POD) && table.contains("Running"),
            "{v}: {table}"
        );

        let all = ok(&demo.kubectl(v, &["get", "pods", "-A"]));
        assert!(
            all.contains("NAMESPACE") && all.contains("kube-system") && all.contains("payments"),
            "{v}: {all}"
        );

        let yaml = ok(&demo.kubectl(v, &["get", "deployment", "web", "-n", "shop", "-o", "yaml"]));
        assert!(
            yaml.contains("kind: Deployment") && yaml.contains("name: web"),
            "{v}: {yaml}"
        );

        let json = ok(&demo.kubectl(v, &["get", "svc", "web", "-n", "shop", "-o", "json"]));
        let svc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(svc["kind"], "Service", "{v}");

        let jp = ok(&demo.kubectl(
            v,
            &[
                "get",
                "pod",
                WEB_POD,
                "-n",
                "shop",
                "-o",
                "jsonpath={.spec.containers[*].name}",
            ],
        ));
        assert_eq!(jp.trim(), "app log-shipper", "{v}");

        let nodes = ok(&demo.kubectl(v, &["get", "nodes"]));
        assert!(
            nodes.contains("node-1") && nodes.contains("Ready"),
            "{v}: {nodes}"
        );

        let ns = ok(&demo.kubectl(v, &["get", "ns"]));
        assert!(ns.contains("shop") && ns.contains("Active"), "{v}: {ns}");
    }
}

#[test]
fn describe_explain_and_discovery_commands() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        let d = ok(&demo.kubectl(v, &["describe", "pod", WEB_POD, "-n", "shop"]));
        assert!(
            d.contains("Containers:") && d.contains("log-shipper"),
            "{v}: {d}"
        );
        let d = ok(&demo.kubectl(v, &["describe", "deployment", "web", "-n", "shop"]));
        assert!(d.contains("Replicas:"), "{v}: {d}");

        let r = ok(&demo.kubectl(v, &["api-resources"]));
        assert!(
            r.contains("deployments") && r.contains("apps/v1") && r.contains("po "),
            "{v}: {r}"
        );

        // `kubectl explain` reads the OpenAPI v3 schemas (through Airlock, unmasked: they are
        // not resources).
        let e = ok(&demo.kubectl(v, &["explain", "pods.spec.containers.env"]));
        assert!(
            e.contains("FIELD: env <[]EnvVar>") && e.contains("Name of the environment variable"),
            "{v}: {e}"
        );
        let e = ok(&demo.kubectl(v, &["explain", "deployment.spec", "--recursive"]));
        assert!(
            e.contains("GROUP:      apps") && e.contains("revisionHistoryLimit"),
            "{v}: {e}"
        );

        let can = demo.kubectl(v, &["auth", "can-i", "list", "pods", "-n", "shop"]);
        assert_eq!(
            String::from_utf8_lossy(&can.stdout).trim(),
            "yes",
            "{v}: {}",
            stderr(&can)
        );

        // `kubectl top` reads metrics.k8s.io, which the simulator serves as metrics-server
        // does, and kubectl top node also reads the nodes for the percentages.
        let t = ok(&demo.kubectl(v, &["top", "pod", "-n", "shop", "--containers"]));
        assert!(
            t.contains(WEB_POD) && t.contains("log-shipper") && t.contains("CPU(cores)"),
            "{v}: {t}"
        );
        let n = ok(&demo.kubectl(v, &["top", "node"]));
        assert!(n.contains("node-1") && n.contains("MEMORY"), "{v}: {n}");
        let missing = demo.kubectl(v, &["top", "pod", "nope", "-n", "shop"]);
        assert!(
            !missing.status.success()
                && stderr(&missing).contains("podmetrics.metrics.k8s.io \"shop/nope\" not found"),
            "{v}: {}",
            stderr(&missing)
        );
    }
}

#[test]
fn writes_create_apply_edit_patch_label_scale_restart_delete() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        let ns = format!("e2e-{}", v.replace('.', "-"));
        ok(&demo.kubectl(v, &["create", "namespace", &ns]));
        // A Deployment by apply.
        let deploy = demo.dir.join(format!("deploy-{v}.yaml"));
        std::fs::write(
            &deploy,
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hello\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: hello}}\n  template:\n    metadata:\n      labels: {{app: hello}}\n    spec:\n      containers:\n      - name: app\n        image: nginx:1.27\n"),
        )
        .unwrap();
        ok(&demo.kubectl(v, &["apply", "-f", deploy.to_str().unwrap()]));
        // kubectl's create generators (protobuf bodies from 1.32 on, read by the policy).
        ok(&demo.kubectl(
            v,
            &["create", "deployment", "gen", "--image=nginx", "-n", &ns],
        ));
        ok(&demo.kubectl(v, &["create", "job", "gen", "--image=busybox", "-n", &ns]));
        ok(&demo.kubectl(
            v,
            &[
                "create",
                "cronjob",
                "gen",
                "--image=busybox",
                "--schedule=*/5 * * * *",
                "-n",
                &ns,
            ],
        ));
        ok(&demo.kubectl(
            v,
            &[
                "create",
                "configmap",
                "cfg",
                "--from-literal=a=1",
                "-n",
                &ns,
            ],
        ));
        ok(&demo.kubectl(
            v,
            &[
                "create",
                "ingress",
                "gen",
                "--class=nginx",
                "--rule=shop.example.com/api*=gen:80,tls=gen-tls",
                "-n",
                &ns,
            ],
        ));
        let got = ok(&demo.kubectl(
            v,
            &[
                "get",
                "ingress",
                "gen",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.rules[0].http.paths[0].backend.service.port.number} {.spec.tls[0].secretName}",
            ],
        ));
        assert_eq!(got, "80 gen-tls", "{v}");
        ok(&demo.kubectl(
            v,
            &[
                "autoscale",
                "deployment",
                "gen",
                "--min=2",
                "--max=4",
                "--cpu-percent=60",
                "-n",
                &ns,
            ],
        ));
        let got = ok(&demo.kubectl(
            v,
            &[
                "get",
                "hpa",
                "gen",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.minReplicas} {.spec.maxReplicas} {.spec.scaleTargetRef.name}",
            ],
        ));
        assert_eq!(got, "2 4 gen", "{v}");
        let table = ok(&demo.kubectl(v, &["get", "hpa", "gen", "-n", &ns]));
        assert!(
            table.contains("Deployment/gen") && table.contains("cpu: <unknown>/60%"),
            "{v}: {table}"
        );

        // Client-side apply: create, then change.
        let manifest = |value: &str| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: {ns}\ndata:\n  key: {value}\n")
        };
        let file = demo.dir.join(format!("cm-{v}.yaml"));
        std::fs::write(&file, manifest("one")).unwrap();
        let out = ok(&demo.kubectl(v, &["apply", "-f", file.to_str().unwrap()]));
        assert!(out.contains("created"), "{v}: {out}");
        std::fs::write(&file, manifest("two")).unwrap();
        let out = ok(&demo.kubectl(v, &["apply", "-f", file.to_str().unwrap()]));
        assert!(out.contains("configured"), "{v}: {out}");
        let got = ok(&demo.kubectl(
            v,
            &[
                "get",
                "cm",
                "applied",
                "-n",
                &ns,
                "-o",
                "jsonpath={.data.key}",
            ],
        ));
        assert_eq!(got, "two", "{v}");

        // Server-side apply.
        std::fs::write(&file, manifest("three")).unwrap();
        let out = ok(&demo.kubectl(v, &["apply", "--server-side", "-f", file.to_str().unwrap()]));
        assert!(out.contains("serverside-applied"), "{v}: {out}");
        let got = ok(&demo.kubectl(
            v,
            &[
                "get",
                "cm",
                "applied",
                "-n",
                &ns,
                "-o",
                "jsonpath={.data.key}",
            ],
        ));
        assert_eq!(got, "three", "{v}");

        // edit with a scripted editor.
        let editor = demo.dir.join("editor.sh");
        std::fs::write(
            &editor,
            "#!/bin/sh\nsed -i 's/a: \"1\"/a: \"edited\"/' \"$1\"\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = demo.kubectl_with(
            v,
            &demo.agent_kubeconfig,
            &["edit", "cm", "cfg", "-n", &ns],
            &[("KUBE_EDITOR", editor.to_str().unwrap())],
            None,
        );
        let out = ok(&out);
        assert!(out.contains("edited"), "{v}: {out}");
        let got = ok(&demo.kubectl(
            v,
            &["get", "cm", "cfg", "-n", &ns, "-o", "jsonpath={.data.a}"],
        ));
        assert_eq!(got, "edited", "{v}");

        ok(&demo.kubectl(
            v,
            &[
                "patch",
                "cm",
                "cfg",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"data":{"b":"2"}}"#,
            ],
        ));
        ok(&demo.kubectl(
            v,
            &[
                "patch",
                "cm",
                "cfg",
                "-n",
                &ns,
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
            ],
        ));
        let got = ok(&demo.kubectl(
            v,
            &[
                "get",
                "cm",
                "cfg",
                "-n",
                &ns,
                "-o",
                "jsonpath={.data.b}{.data.c}",
            ],
        ));
        assert_eq!(got, "23", "{v}");

        ok(&demo.kubectl(
            v,
            &["label", "deployment", "hello", "-n", &ns, "tier=backend"],
        ));
        let got = ok(&demo.kubectl(
            v,
            &[
                "get",
                "deploy",
                "-n",
                &ns,
                "-l",
                "tier=backend",
                "-o",
                "name",
            ],
        ));
        assert_eq!(got.trim(), "deployment.apps/hello", "{v}");

        ok(&demo.kubectl(
            v,
            &["scale", "deployment", "hello", "-n", &ns, "--replicas=3"],
        ));
        let got = ok(&demo.kubectl(
            v,
            &[
                "get",
                "deploy",
                "hello",
                "-n",
                &ns,
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        ));
        assert_eq!(got, "3", "{v}");

        let out = ok(&demo.kubectl(v, &["rollout", "restart", "deployment", "hello", "-n", &ns]));
        assert!(out.contains("restarted"), "{v}: {out}");

        ok(&demo.kubectl(v, &["delete", "configmap", "cfg", "-n", &ns]));
        let gone = demo.kubectl(v, &["get", "cm", "cfg", "-n", &ns]);
        assert!(
            !gone.status.success() && stderr(&gone).contains("NotFound"),
            "{v}: {}",
            stderr(&gone)
        );
        // Deleting a namespace needs approval under the demo's baseline policy.
        let out = demo.kubectl(v, &["delete", "namespace", &ns]);
        assert!(
            stderr(&out).contains("approve-namespace-delete"),
            "{v}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn logs_and_follow() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        let logs = ok(&demo.kubectl(v, &["logs", "-n", "shop", WEB_POD, "-c", "app"]));
        assert!(logs.lines().count() >= 2, "{v}: {logs}");
        // -f keeps streaming: stop it after a few seconds and check it received more than the
        // initial lines (the simulated container writes one line a second).
        let mut cmd = std::process::Command::new(common::kubectl_bin(v));
        cmd.args(["logs", "-f", "-n", "shop", WEB_POD, "-c", "app", "--tail=1"])
            .env("KUBECONFIG", &demo.agent_kubeconfig)
            .env("HOME", &demo.dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        let out = common::wait_with_timeout(child, std::time::Duration::from_millis(3500));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.lines().count() >= 2,
            "{v}: follow streamed only {text:?}"
        );
    }
}

#[test]
fn watch_streams_changes() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        let name = format!("watched-{}", v.replace('.', "-"));
        let mut cmd = std::process::Command::new(common::kubectl_bin(v));
        cmd.args(["get", "configmaps", "-n", "shop", "-w", "-o", "name"])
            .env("KUBECONFIG", &demo.agent_kubeconfig)
            .env("HOME", &demo.dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        ok(&demo.kubectl(v, &["create", "configmap", &name, "-n", "shop"]));
        let out = common::wait_with_timeout(child, std::time::Duration::from_millis(1500));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("configmap/web-config"), "{v}: {text}");
        assert!(
            text.contains(&format!("configmap/{name}")),
            "{v}: watch missed the new object: {text}"
        );
    }
    common::wait_for_metric(&demo, "airlock_open_watches", 0);
}

#[test]
fn exec_over_websocket_and_spdy() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        // kubectl 1.27 speaks only SPDY; from 1.30 WebSocket is the default and
        // KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false forces SPDY.
        let transports: &[&str] = if *v == "1.27" {
            &["true"]
        } else {
            &["true", "false"]
        };
        for ws in transports {
            let env = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", *ws)];
            let run = |args: &[&str], stdin: Option<&[u8]>| {
                demo.kubectl_with(v, &demo.agent_kubeconfig, args, &env, stdin)
            };
            let out = ok(&run(
                &[
                    "exec", "-n", "shop", WEB_POD, "-c", "app", "--", "echo", "hello",
                ],
                None,
            ));
            assert_eq!(out, "hello\n", "{v} ws={ws}");
            let out = ok(&run(
                &["exec", "-n", "shop", WEB_POD, "-c", "app", "--", "env"],
                None,
            ));
            assert!(out.contains("LOG_LEVEL=info"), "{v} ws={ws}: {out}");
            let out = ok(&run(
                &[
                    "exec", "-i", "-n", "shop", WEB_POD, "-c", "app", "--", "cat",
                ],
                Some(b"from stdin\n"),
            ));
            assert_eq!(out, "from stdin\n", "{v} ws={ws}");
            let out = run(
                &[
                    "exec",
                    "-n",
                    "shop",
                    WEB_POD,
                    "-c",
                    "app",
                    "--",
                    "sh",
                    "-c",
                    "echo oops >&2; exit 3",
                ],
                None,
            );
            assert_eq!(out.status.code(), Some(3), "{v} ws={ws}: {}", stderr(&out));
        }
    }
    // Every tunnel closed in both directions: no task is left behind.
    common::wait_for_metric(&demo, "airlock_open_tunnels", 0);
}

#[test]
fn attach_port_forward_and_cp() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        let out = demo.kubectl_with(
            v,
            &demo.agent_kubeconfig,
            &["attach", "-i", "-n", "shop", WEB_POD, "-c", "app"],
            &[],
            Some(b"ping\n"),
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("ping"),
            "{v}: {}",
            stderr(&out)
        );

        // `kubectl run --rm -i`: the pod's command is its main process; attach streams it
        // with stdin, the pod ends with the command's exit code, and kubectl deletes it.
        let name = format!("run-{}", v.replace('.', "-"));
        let args = [
            "run",
            &name,
            "-n",
            "shop",
            "--image=busybox",
            "--restart=Never",
            "--rm",
            "-i",
            "--",
            "sh",
            "-c",
            "cat; exit 3",
        ];
        let out = demo.kubectl_with(v, &demo.agent_kubeconfig, &args, &[], Some(b"from stdin\n"));
        assert_eq!(out.status.code(), Some(3), "{v}: {}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("from stdin")
                && stderr(&out).contains(&format!("pod shop/{name} terminated (Error)")),
            "{v}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        let gone = demo.kubectl(v, &["get", "pod", &name, "-n", "shop"]);
        assert!(stderr(&gone).contains("NotFound"), "{v}: {}", stderr(&gone));

        // `kubectl debug`: an ephemeral container added through pods/ephemeralcontainers,
        // attached to, and terminated when its command ends; the pod runs on.
        let dbg = format!("dbg-{}", v.replace('.', "-"));
        let args = [
            "debug",
            "-n",
            "shop",
            WEB_POD,
            "--image=busybox",
            "-c",
            &dbg,
            "-i",
            "--",
            "sh",
            "-c",
            "cat; echo done",
        ];
        let out = demo.kubectl_with(v, &demo.agent_kubeconfig, &args, &[], Some(b"from debug\n"));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("from debug") && said.contains("done"),
            "{v}: {said}{}",
            stderr(&out)
        );
        let jsonpath = format!(
            "jsonpath={{.status.ephemeralContainerStatuses[?(@.name==\"{dbg}\")].state.terminated.reason}}"
        );
        let state = ok(&demo.kubectl(v, &["get", "pod", WEB_POD, "-n", "shop", "-o", &jsonpath]));
        assert_eq!(state.trim(), "Completed", "{v}");

        port_forward_echo(&demo, v, &[]);
        if *v != "1.27" {
            port_forward_echo(&demo, v, &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]);
        }

        let local = demo.dir.join(format!("cp-{v}.txt"));
        std::fs::write(&local, "copied through airlock\n").unwrap();
        let dest = format!("shop/{WEB_POD}:/tmp/cp-{v}.txt");
        ok(&demo.kubectl(v, &["cp", "-c", "app", local.to_str().unwrap(), &dest]));
        let back = demo.dir.join(format!("cp-{v}-back.txt"));
        ok(&demo.kubectl(v, &["cp", "-c", "app", &dest, back.to_str().unwrap()]));
        assert_eq!(
            std::fs::read_to_string(&back).unwrap(),
            "copied through airlock\n",
            "{v}"
        );
    }
}

fn port_forward_echo(demo: &Demo, v: &str, env: &[(&str, &str)]) {
    let back = common::port_forward_round_trip(demo, v, env, b"echo me");
    assert_eq!(&back, b"echo me", "{v} {env:?}");
}

#[test]
fn impersonation_is_refused() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        ok(&demo.kubectl(v, &["get", "ns", "shop"]));
        demo.clear_received();
        let out = demo.kubectl(v, &["get", "pods", "-n", "shop", "--as", "admin"]);
        assert!(!out.status.success(), "{v}");
        let err = stderr(&out);
        // On a cold discovery cache kubectl's discovery client reads error bodies raw and
        // prints "unknown" (client-go behaviour, the same against a real API server); the warm
        // cache above lets the call itself show the Status message.
        assert!(
            err.contains("Forbidden") && err.contains("impersonation is not allowed"),
            "{v}: {err}"
        );
        assert!(
            demo.received().is_empty(),
            "{v}: a request with --as reached the cluster"
        );
        // `auth whoami` needs authentication.k8s.io/v1 SelfSubjectReview: kubectl 1.28+.
        if *v != "1.27" {
            let who = ok(&demo.kubectl(
                v,
                &[
                    "auth",
                    "whoami",
                    "-o",
                    "jsonpath={.status.userInfo.username}",
                ],
            ));
            assert_eq!(who, "agent@demo", "{v}");
        }
    }
}

/// The demo's `ai-agent-baseline` policy, seen by real kubectl: denials name the rule, calls that
/// need approval are held (one second here) and refused naming the rule while pending
/// (`tests/approvals.rs` covers approving them), ordinary work passes, and nothing refused
/// reaches the cluster.
#[test]
fn policy_guardrails() {
    let demo = Demo::start();
    for v in KUBECTL_VERSIONS {
        ok(&demo.kubectl(v, &["get", "ns", "shop"]));
        demo.clear_received();
        let refused: &[(&[&str], &str)] = &[
            (
                &["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics"],
                "deny-node-proxy",
            ),
            (
                &[
                    "get",
                    "--raw",
                    "/api/v1/namespaces/shop/services/web:80/proxy/",
                ],
                "deny-service-proxy",
            ),
            (
                &["create", "token", "default", "-n", "shop"],
                "deny-token-request",
            ),
            (
                &["delete", "namespace", "payments"],
                "approve-namespace-delete",
            ),
            (
                &[
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
                &["exec", "-n", "payments", "payments-worker-0", "--", "env"],
                "approve-exec-protected-namespaces",
            ),
            (
                &["delete", "--raw", "/api/v1/namespaces/shop/configmaps"],
                "approve-deletecollection",
            ),
            (
                &[
                    "create",
                    "clusterrolebinding",
                    "x",
                    "--clusterrole=cluster-admin",
                    "--user=agent@demo",
                ],
                "approve-",
            ),
        ];
        for (args, rule) in refused {
            let out = demo.kubectl(v, args);
            let err = stderr(&out);
            assert!(!out.status.success(), "{v} {args:?}");
            assert!(
                err.contains(rule) || err.contains("Airlock cannot read this request body"),
                "{v} {args:?}: {err}"
            );
        }
        let privileged = demo.dir.join(format!("priv-{v}.yaml"));
        std::fs::write(
            &privileged,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: priv\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {app: priv}\n  template:\n    metadata:\n      labels: {app: priv}\n    spec:\n      containers:\n      - name: app\n        image: busybox\n        securityContext: {privileged: true}\n",
        )
        .unwrap();
        let out = demo.kubectl(v, &["apply", "-f", privileged.to_str().unwrap()]);
        assert!(
            stderr(&out).contains("approve-privileged-pods"),
            "{v}: {}",
            stderr(&out)
        );

        let writes = common::writes_received(&demo);
        assert!(
            writes.is_empty(),
            "{v}: refused calls reached the cluster: {writes:#?}"
        );

        // Ordinary work passes.
        ok(&demo.kubectl(
            v,
            &["exec", "-n", "shop", WEB_POD, "-c", "app", "--", "true"],
        ));
        ok(&demo.kubectl(
            v,
            &[
                "label",
                "ns",
                "shop",
                &format!("checked-{}=yes", v.replace('.', "-")),
            ],
        ));
    }
}
