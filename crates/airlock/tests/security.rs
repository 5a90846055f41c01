//! What reaches the cluster, asserted on the simulated server's introspection: header injection,
//! path tricks, bad tokens and limits are refused before anything is forwarded.

mod common;

use common::{raw_https, Demo};

const POD_PATH: &str = "/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p";

#[test]
fn identity_is_rebuilt_and_client_headers_never_reach_the_cluster() {
    let demo = Demo::start();
    demo.clear_received();
    let resp = demo.raw_get(
        POD_PATH,
        "X-Remote-User: root\r\nX-Remote-Group: system:masters\r\nX-Forwarded-For: 10.0.0.1\r\nX-Real-Ip: 10.0.0.2\r\nForwarded: for=10.0.0.3\r\nAudit-ID: forged\r\nKubectl-Command: kubectl get pod\r\n",
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let audit_id = resp.header("audit-id").expect("audit-id on the response");
    assert_ne!(audit_id, "forged");

    let got = demo.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    let headers = &r["headers"];
    for forbidden in [
        "x-remote-user",
        "x-remote-group",
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
    ] {
        assert!(
            headers.get(forbidden).is_none(),
            "{forbidden} reached the cluster: {headers}"
        );
    }
    assert_eq!(r["audit_id"], audit_id.as_str());
    assert_eq!(r["user"], "agent@demo");
    assert_eq!(headers["impersonate-user"][0], "agent@demo");
    assert_eq!(headers["impersonate-group"][0], "ai-agents");
    assert_eq!(
        headers["impersonate-extra-airlock.dev%2frequest-id"][0],
        audit_id.as_str()
    );
    // Airlock's own credential, not the agent's token.
    let auth = headers["authorization"][0].as_str().unwrap();
    assert!(!auth.contains(&demo.agent_token));
    // kubectl's invocation headers pass through for the cluster's own audit.
    assert_eq!(headers["kubectl-command"][0], "kubectl get pod");
}

/// An `Upgrade` header must not turn an ordinary read into a tunnel that skips masking: only
/// exec, attach, port-forward and proxy may upgrade. Found by a black-box probe: a Secret read
/// with `Upgrade: websocket` came back unmasked.
#[test]
fn upgrades_of_ordinary_reads_are_refused_and_not_forwarded() {
    let demo = Demo::start();
    demo.clear_received();
    for path in [
        "/api/v1/namespaces/shop/secrets/db-credentials",
        "/api/v1/namespaces/shop/secrets?watch=true",
        "/api/v1/namespaces/payments/pods/payments-worker-0/log",
        "/api/v1/namespaces/shop/configmaps",
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {}\r\n\
             Connection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            demo.agent_token
        );
        let resp = raw_https(&demo.server, &demo.ca_pem(), req.as_bytes());
        assert_eq!(resp.status, 400, "{path}");
        let s = resp.json();
        assert_eq!(s["kind"], "Status", "{path}");
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .contains("upgrades only for exec"),
            "{s}"
        );
    }
    assert!(
        demo.received().is_empty(),
        "a refused upgrade reached the cluster"
    );
    // exec still upgrades (kubectl 1.33 over WebSocket, 1.27 over SPDY).
    for v in ["1.33", "1.27"] {
        let out = demo.kubectl(
            v,
            &[
                "exec",
                "-n",
                "shop",
                "web-6b7f9c5d4-x2k9p",
                "--",
                "echo",
                "hi",
            ],
        );
        assert_eq!(common::ok(&out).trim(), "hi", "kubectl {v}");
    }
}

/// A JSON patch that moves a value into place hides it from the guardrails: `add` a harmless
/// label, then `move` it to `securityContext.privileged`. Refused for the objects whose content
/// the guardrails judge. Found by a black-box probe.
#[test]
fn json_patch_move_and_copy_into_pod_templates_are_refused() {
    let demo = Demo::start();
    demo.clear_received();
    let c = "/spec/template/spec/containers/0";
    let patches = [
        format!(
            r#"[{{"op":"add","path":"{c}/securityContext","value":{{"x":true}}}},{{"op":"move","from":"{c}/securityContext/x","path":"{c}/securityContext/privileged"}}]"#
        ),
        r#"[{"op":"copy","from":"/spec/template/spec/automountServiceAccountToken","path":"/spec/template/spec/hostNetwork"}]"#
            .to_string(),
    ];
    for patch in &patches {
        let out = demo.kubectl(
            "1.33",
            &[
                "-n",
                "shop",
                "patch",
                "deployment",
                "web",
                "--type=json",
                "-p",
                patch,
            ],
        );
        assert!(!out.status.success(), "{patch}");
        let err = common::stderr(&out);
        assert!(err.contains("move or copy"), "{err}");
    }
    assert!(
        common::writes_received(&demo).is_empty(),
        "a refused patch reached the cluster"
    );
}

#[test]
fn client_impersonation_is_refused_and_not_forwarded() {
    let demo = Demo::start();
    demo.clear_received();
    let cases = [
        "Impersonate-User: admin\r\n",
        "Impersonate-Group: system:masters\r\n",
        "Impersonate-Uid: 0\r\n",
        "Impersonate-Extra-Scopes: all\r\n",
    ];
    for header in cases {
        let resp = demo.raw_get(POD_PATH, header);
        assert_eq!(resp.status, 403, "{header}");
        let s = resp.json();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["reason"], "Forbidden");
    }
    assert!(
        demo.received().is_empty(),
        "a refused request reached the cluster"
    );
}

#[test]
fn path_tricks_are_refused_with_400_and_not_forwarded() {
    let demo = Demo::start();
    demo.clear_received();
    let cases = [
        "/api/v1/namespaces/shop/pods/../secrets",
        "/api/v1/namespaces/shop/./secrets",
        "//api/v1/namespaces/shop/secrets",
        "/api/v1/namespaces/shop//secrets",
        "/api/v1/namespaces/shop%2Fsecrets",
        "/api/v1/namespaces/shop/pods/%2e%2e/secrets",
        "/api/v1/namespaces/shop/pods/%2E",
        "/api/v1/namespaces/%ff%fe/pods",
        "/clusters/demo/api/v1/namespaces/shop/../kube-system/secrets",
    ];
    for path in cases {
        let resp = demo.raw_get(path, "");
        assert_eq!(
            resp.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(resp.json()["kind"], "Status", "{path}");
    }
    assert!(demo.received().is_empty(), "{:#?}", demo.received());
}

#[test]
fn bad_tokens_get_401_and_nothing_is_forwarded() {
    let demo = Demo::start();
    demo.clear_received();
    let ca = demo.ca_pem();
    let cases = [
        String::new(),
        "Authorization: Bearer \r\n".to_owned(),
        "Authorization: Bearer not-a-token\r\n".to_owned(),
        format!("Authorization: Bearer {}x\r\n", demo.agent_token),
        format!("Authorization: Basic {}\r\n", demo.agent_token),
        "Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.\r\n".to_owned(),
    ];
    for auth in &cases {
        let req =
            format!("GET {POD_PATH} HTTP/1.1\r\nHost: airlock\r\n{auth}Connection: close\r\n\r\n");
        let resp = raw_https(&demo.server, &ca, req.as_bytes());
        assert_eq!(resp.status, 401, "{auth:?}");
        let s = resp.json();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["reason"], "Unauthorized");
        // The token is never echoed back.
        assert!(!String::from_utf8_lossy(&resp.body).contains(&demo.agent_token));
    }
    assert!(demo.received().is_empty());
    assert!(demo
        .metrics()
        .contains("airlock_authentication_failures_total"));
}

#[test]
fn oversized_headers_and_bodies_are_refused() {
    let demo = Demo::start();
    demo.clear_received();
    let big = "a".repeat(40 * 1024);
    let resp = demo.raw_get(POD_PATH, &format!("X-Big: {big}\r\n"));
    assert_eq!(resp.status, 400);
    assert!(resp.json()["message"].as_str().unwrap().contains("limit"));

    // Only the head is sent: Airlock answers from the declared length without reading a body
    // (reading 4 MiB to refuse it would be the cost an attacker wants us to pay).
    let req = format!(
        "POST /api/v1/namespaces/shop/configmaps HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        demo.agent_token,
        4 * 1024 * 1024
    );
    let resp = raw_https(&demo.server, &demo.ca_pem(), req.as_bytes());
    assert_eq!(resp.status, 400);
    assert!(resp.json()["message"].as_str().unwrap().contains("body"));
    assert!(demo.received().is_empty());
}

#[test]
fn clusters_are_addressed_by_path_and_unknown_ones_are_404() {
    let demo = Demo::start();
    demo.clear_received();
    let resp = demo.raw_get(&format!("/clusters/demo{POD_PATH}"), "");
    assert_eq!(resp.status, 200);
    let got = demo.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["path"], POD_PATH,
        "the /clusters/NAME prefix is removed"
    );
    // Upstream HTTP/2 where the server offers it.
    assert_eq!(got[0]["protocol"], "HTTP/2");

    let resp = demo.raw_get(&format!("/clusters/nope{POD_PATH}"), "");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["kind"], "Status");
}
