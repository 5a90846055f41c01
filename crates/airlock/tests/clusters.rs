//! Several clusters behind one Airlock, addressed as /clusters/{name}/..., with the two
//! upstream credential kinds a kubeconfig can hold: a bearer token and a client certificate.

mod common;

use std::path::Path;

use common::{ok, raw_https};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_clusters_with_token_and_client_certificate_credentials() {
    let dir = common::tempdir("clusters");
    let start = |seed| {
        sim::start(sim::SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            introspect_listen: Some("127.0.0.1:0".parse().unwrap()),
            admin_token: "sim-admin-token".into(),
            seed,
        })
    };
    let a = start(true).await.unwrap();
    let b = start(false).await.unwrap();
    std::fs::write(dir.join("a.kubeconfig"), a.admin_kubeconfig()).unwrap();
    std::fs::write(dir.join("b.kubeconfig"), b.client_cert_kubeconfig()).unwrap();

    let token = "cluster-test-token";
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\ndefault_cluster: b\nclusters:\n- {{name: a, kubeconfig: a.kubeconfig}}\n- {{name: b, kubeconfig: b.kubeconfig}}\nauthn: {{static_tokens: [{{sha256: {h}, user: alice, groups: [ai-agents]}}]}}\n",
        d = dir.display(),
        h = authn::hash_token(token)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, &dir).unwrap();
    let gw = gateway::start(&cfg).await.unwrap();
    let server = format!("https://{}", gw.addr);
    let ca = gw.ca_pem.clone();

    let get = |path: &str| {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        let (server, ca) = (server.clone(), ca.clone());
        tokio::task::spawn_blocking(move || raw_https(&server, &ca, req.as_bytes()))
    };

    // Cluster a (bearer token) is seeded: shop exists there.
    let r = get("/clusters/a/api/v1/namespaces/shop").await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Cluster b (client certificate) is empty, and it is the default served at the root.
    let r = get("/clusters/b/api/v1/namespaces/shop").await.unwrap();
    assert_eq!(r.status, 404);
    let r = get("/api/v1/namespaces/shop").await.unwrap();
    assert_eq!(r.status, 404, "the root serves the default cluster b");

    // The client-certificate cluster saw the impersonated identity.
    let url = format!("http://{}/requests", b.introspect_addr.unwrap());
    let got: Vec<serde_json::Value> = serde_json::from_str(
        &tokio::task::spawn_blocking(move || common::http_get(&url))
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(got.iter().all(|r| r["user"] == "alice"), "{got:#?}");
    assert!(
        got.iter()
            .all(|r| r["headers"].get("authorization").is_none()),
        "client cert, no token: {got:#?}"
    );

    // A kubeconfig for a named cluster: kubectl accepts a server URL with a path.
    let kc = gateway::kubeconfig::render(
        &format!("{server}/clusters/a"),
        &ca,
        "a",
        &gateway::kubeconfig::ClientAuth::Token(token.into()),
    );
    let kc_path = dir.join("agent-a.kubeconfig");
    std::fs::write(&kc_path, kc).unwrap();
    let dir2 = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        let child = std::process::Command::new(common::kubectl_bin("1.33"))
            .args(["get", "pods", "-n", "shop", "-o", "name"])
            .env("KUBECONFIG", &kc_path)
            .env("HOME", &dir2)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        common::wait_with_timeout(child, std::time::Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(ok(&out).contains("pod/web-6b7f9c5d4-x2k9p"));

    gw.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
