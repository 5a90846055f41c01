//! A real OIDC provider (npm `oidc-provider`), `airlock serve` with that issuer, the simulated
//! cluster, and kubectl authenticating with `airlock credential` as its exec plugin.

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::{http_get, kubectl_bin, ok, repo_root, spawn_until, stderr, tempdir, Killed};

fn http_post(url: &str) -> String {
    common::http_request("POST", url)
}

#[test]
fn kubectl_through_airlock_with_oidc_tokens_rotation_and_idp_outage() {
    let root = repo_root();
    assert!(
        root.join("tests/oidc/node_modules/oidc-provider").exists(),
        "run `npm ci --prefix tests/oidc` first (scripts/test does)"
    );
    let dir = tempdir("oidc");
    let mut node = Command::new("node");
    node.arg(root.join("tests/oidc/provider.mjs"));
    let (idp, line) = spawn_until(node, |l| l.starts_with('{'));
    let mut idp = Some(Killed(idp));
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let issuer = info["issuer"].as_str().unwrap().to_owned();
    let admin = info["admin"].as_str().unwrap().to_owned();
    let audience = info["audience"].as_str().unwrap().to_owned();

    let airlock = env!("CARGO_BIN_EXE_airlock");
    let sim_kc = dir.join("sim.kubeconfig");
    let mut sim = Command::new(airlock);
    sim.args([
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--introspect-listen",
        "127.0.0.1:0",
        "--kubeconfig-out",
    ])
    .arg(&sim_kc);
    let (sim, line) = spawn_until(sim, |l| l.contains("ready"));
    let _sim = Killed(sim);
    let introspect = line
        .split("introspection ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_owned();

    let config = dir.join("airlock.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {}\nclusters: [{{name: sim, kubeconfig: {}}}]\nauthn:\n  oidc:\n  - issuer: {issuer}\n    audiences: [{audience}]\n    username_prefix: 'oidc:'\n    groups_prefix: 'oidc:'\n    allow_insecure_http: true\n    jwks_min_refresh_seconds: 0\n",
            dir.display(),
            sim_kc.display()
        ),
    )
    .unwrap();
    let check = Command::new(airlock)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut serve = Command::new(airlock);
    serve
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn");
    let (gw, line) = spawn_until(serve, |l| l.contains("ready"));
    let _gw = Killed(gw);
    let addr = line
        .split("https://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let kubectl = |kubeconfig: &Path, args: &[&str]| {
        let child = Command::new(kubectl_bin("1.33"))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::wait_with_timeout(child, Duration::from_secs(60))
    };

    for alg in ["RS256", "ES256", "EdDSA"] {
        let client = &info["clients"][alg];
        let client_id = client["client_id"].as_str().unwrap();
        let secret = dir.join(format!("{alg}.secret"));
        std::fs::write(&secret, client["client_secret"].as_str().unwrap()).unwrap();
        let kc = dir.join(format!("{alg}.kubeconfig"));
        let out = Command::new(airlock)
            .args([
                "kubeconfig",
                "--server",
                &format!("https://{addr}"),
                "--ca-file",
            ])
            .arg(dir.join("ca.crt"))
            .args([
                "--issuer",
                &issuer,
                "--client-id",
                client_id,
                "--audience",
                &audience,
                "--client-secret-file",
            ])
            .arg(&secret)
            .arg("-o")
            .arg(&kc)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&kc).unwrap();
        assert!(
            !text.contains("insecure-skip-tls-verify") && !text.contains("token:"),
            "{text}"
        );

        http_request_delete(&introspect);
        let pods = ok(&kubectl(&kc, &["get", "pods", "-n", "shop", "-o", "name"]));
        assert!(pods.contains("pod/web-6b7f9c5d4-x2k9p"), "{alg}: {pods}");
        let got: Vec<serde_json::Value> =
            serde_json::from_str(&http_get(&format!("{introspect}/requests"))).unwrap();
        let last = got.last().unwrap();
        assert_eq!(
            last["headers"]["impersonate-user"][0],
            format!("oidc:{client_id}"),
            "{alg}"
        );
        let groups: Vec<&str> = last["headers"]["impersonate-group"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap())
            .collect();
        assert!(groups.contains(&"oidc:airlock:agents"), "{alg}: {groups:?}");
        assert_eq!(
            last["headers"]["impersonate-extra-airlock.dev%2fclient-id"][0], client_id,
            "{alg}"
        );
    }

    // Bad tokens, at the gateway: each gets 401 and nothing reaches the cluster. (The full
    // forged-token table, expiry and audience included, is in crates/authn/tests.)
    let good = {
        let out = Command::new(airlock)
            .args([
                "credential",
                "--issuer",
                &issuer,
                "--client-id",
                "airlock-rs256",
                "--audience",
                &audience,
                "--client-secret-file",
            ])
            .arg(dir.join("RS256.secret"))
            .arg("--cache-dir")
            .arg(dir.join("bad-token-cache"))
            .output()
            .unwrap();
        let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        cred["status"]["token"].as_str().unwrap().to_owned()
    };
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload: serde_json::Value = {
        use base64::Engine;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap()
    };
    let mut tampered = payload.clone();
    tampered["sub"] = "admin".into();
    let mut flipped_sig = parts[2].to_owned().into_bytes();
    flipped_sig[5] = if flipped_sig[5] == b'A' { b'B' } else { b'A' };
    let bad_tokens = [
        ("garbage", "garbage".to_owned()),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
                parts[1]
            ),
        ),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], b64(&tampered), parts[2]),
        ),
        (
            "bad signature",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                String::from_utf8(flipped_sig).unwrap()
            ),
        ),
        (
            "unknown kid",
            format!(
                "{}.{}.{}",
                b64(&serde_json::json!({"alg": "RS256", "kid": "nope"})),
                parts[1],
                parts[2]
            ),
        ),
        (
            "HS256",
            format!(
                "{}.{}.{}",
                b64(&serde_json::json!({"alg": "HS256", "typ": "JWT"})),
                parts[1],
                parts[2]
            ),
        ),
    ];
    http_request_delete(&introspect);
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    for (what, token) in &bad_tokens {
        let req = format!("GET /api/v1/namespaces HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        let resp = common::raw_https(&format!("https://{addr}"), &ca, req.as_bytes());
        assert_eq!(resp.status, 401, "{what}");
        assert_eq!(resp.json()["reason"], "Unauthorized", "{what}");
    }
    let got: Vec<serde_json::Value> =
        serde_json::from_str(&http_get(&format!("{introspect}/requests"))).unwrap();
    assert!(
        got.is_empty(),
        "a request with a bad token reached the cluster: {got:#?}"
    );

    // Key rotation: the new kid is unknown to the gateway until it refetches the JWKS.
    let rs_kc = dir.join("RS256.kubeconfig");
    let rotated = http_post(&format!("{admin}/rotate"));
    assert!(rotated.contains("kids"), "{rotated}");
    let _ = std::fs::remove_dir_all(dir.join(".cache"));
    ok(&kubectl(&rs_kc, &["get", "ns", "shop"]));

    // IdP outage: the cached token and the cached keys keep working.
    idp.take();
    let out = kubectl(&rs_kc, &["get", "ns", "shop"]);
    assert!(
        out.status.success(),
        "cached keys must survive an IdP outage: {}",
        stderr(&out)
    );

    let _ = std::fs::remove_dir_all(&dir);
}

fn http_request_delete(base: &str) {
    common::http_request("DELETE", &format!("{base}/requests"));
}
