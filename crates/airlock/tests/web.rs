//! The web UI in a real browser: the test IdP (tests/oidc/provider.mjs), `airlock demo` with
//! web login at that IdP, kubectl calls as the agent, then Debian's Chromium driven by
//! playwright-core (tests/web/sessions.mjs) logs in as alice (authorization code + PKCE),
//! finds the agent's session, its timeline and the gateway's recording of a real `kubectl exec`,
//! and checks CSRF, sign-out and that bob (in no allowed group) is refused. Then the approvals
//! pages (tests/web/approvals.mjs): alice approves one held `kubectl delete namespace` and denies
//! another through the forms, a viewer sees no buttons.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{
    ok, repo_root, spawn_until, stderr, tempdir, wait_with_timeout, Demo, DemoOptions, Killed,
};

const WEB_POD: &str = "web-6b7f9c5d4-x2k9p";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Starts the test IdP and returns it with its ready line (JSON).
fn start_idp(root: &Path) -> (Killed, serde_json::Value) {
    let mut node = Command::new("node");
    node.arg(root.join("tests/oidc/provider.mjs"));
    let (child, line) = spawn_until(node, |l| l.starts_with('{'));
    (Killed(child), serde_json::from_str(&line).unwrap())
}

/// GET over plain HTTP/1.0: (status, head, body).
fn raw_get(url: &str, cookie: Option<&str>) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host).unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n{cookie}\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn web_ui_login_sessions_and_player_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        // .ci/run installs Debian's chromium; only a machine without it skips.
        eprintln!("SKIPPED: {CHROMIUM} is missing (apt-get install -y chromium; .ci/run does)");
        return;
    }
    let root = repo_root();
    for (dir, pkg) in [
        ("tests/oidc", "oidc-provider"),
        ("tests/web", "playwright-core"),
    ] {
        assert!(
            root.join(dir).join("node_modules").join(pkg).exists(),
            "run `npm ci --prefix {dir}` first (scripts/test does)"
        );
    }
    let (_idp, info) = start_idp(&root);
    let issuer = info["issuer"].as_str().unwrap().to_owned();
    assert_eq!(info["web_client"], "airlock-web");
    let dir = tempdir("web");
    let out_dir = dir.join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let demo = Demo::start_in(dir.join("demo"), &["--web-issuer", &issuer]);

    // The agent's calls: the session the browser must find.
    ok(&demo.kubectl("1.32", &["get", "pods", "-n", "shop"]));
    ok(&demo.kubectl("1.32", &["get", "configmaps", "-n", "shop"]));
    let out = ok(&demo.kubectl(
        "1.32",
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
            "echo hello from exec",
        ],
    ));
    assert_eq!(out, "hello from exec\n");

    // Without a session: pages redirect to the login, assets and metrics stay as they were.
    let (status, head, _) = raw_get(&format!("{}/sessions?user=x", demo.metrics_url), None);
    assert_eq!(status, 303, "{head}");
    assert_eq!(
        header(&head, "location"),
        Some("/auth/login?next=%2Fsessions%3Fuser%3Dx")
    );
    let (status, head, _) = raw_get(&format!("{}/auth/login", demo.metrics_url), None);
    assert_eq!(status, 302, "{head}");
    let idp = header(&head, "location").unwrap();
    assert!(idp.starts_with(&issuer), "{idp}");
    for part in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "client_id=airlock-web",
    ] {
        assert!(idp.contains(part), "{part} missing in {idp}");
    }
    let set_cookie = header(&head, "set-cookie").unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    // A callback that this browser did not start is refused.
    let (status, _, _) = raw_get(
        &format!("{}/auth/callback?code=x&state=y", demo.metrics_url),
        Some("airlock_login=z"),
    );
    assert_eq!(status, 400);
    // A forged session cookie is no session.
    let (status, _, _) = raw_get(
        &format!("{}/sessions", demo.metrics_url),
        Some("airlock_session=forged"),
    );
    assert_eq!(status, 303);
    assert!(demo.metrics().contains("airlock_"), "metrics still served");

    let node = Command::new("node")
        .arg(root.join("tests/web/sessions.mjs"))
        .env("ADMIN_URL", &demo.metrics_url)
        .env("OUT_DIR", &out_dir)
        .env("EXPECT_USER", "agent@demo")
        .env(
            "EXPECT_COMMANDS",
            serde_json::json!([
                "kubectl get pods -n shop",
                "kubectl get configmaps -n shop",
                "kubectl exec",
            ])
            .to_string(),
        )
        .env(
            "EXPECT_SCREEN",
            serde_json::json!(["hello from exec"]).to_string(),
        )
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = wait_with_timeout(node, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        out_dir.display()
    );
    for shot in ["sessions.png", "session.png", "refused.png"] {
        let p = out_dir.join(shot);
        assert!(
            std::fs::metadata(&p)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{} missing",
            p.display()
        );
    }
    // AIRLOCK_TEST_SCREENSHOTS=DIR keeps a copy of the screenshots to look at.
    if let Ok(keep) = std::env::var("AIRLOCK_TEST_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        for shot in ["sessions.png", "session.png", "refused.png"] {
            std::fs::copy(out_dir.join(shot), Path::new(&keep).join(shot)).unwrap();
        }
    }
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}

/// kubectl in the background, as the agent.
fn spawn_kubectl(demo: &Demo, args: &[&str]) -> Child {
    Command::new(common::kubectl_bin("1.33"))
        .args(args)
        .env("KUBECONFIG", &demo.agent_kubeconfig)
        .env("HOME", &demo.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl")
}

#[test]
fn web_approvals_approve_and_deny_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIPPED: {CHROMIUM} is missing (apt-get install -y chromium; .ci/run does)");
        return;
    }
    let root = repo_root();
    for (dir, pkg) in [
        ("tests/oidc", "oidc-provider"),
        ("tests/web", "playwright-core"),
    ] {
        assert!(
            root.join(dir).join("node_modules").join(pkg).exists(),
            "run `npm ci --prefix {dir}` first (scripts/test does)"
        );
    }
    let (_idp, info) = start_idp(&root);
    let issuer = info["issuer"].as_str().unwrap().to_owned();
    let dir = tempdir("web-approvals");
    let out_dir = dir.join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let opts = DemoOptions {
        hold: "45s".into(),
        ..DemoOptions::default()
    };
    let demo = Demo::start_in_with(
        dir.join("demo"),
        &opts,
        &["--web-issuer", &issuer, "--web-viewer-group", "sre"],
    );
    // A namespace with something in it, for the preview's contents (the cluster adds the
    // kube-root-ca.crt ConfigMap and the default ServiceAccount).
    ok(&demo.kubectl_direct("1.33", &["create", "namespace", "scratch"]));
    ok(&demo.kubectl_direct(
        "1.33",
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "scratch",
            "--from-literal=a=b",
        ],
    ));
    let reason = "shop is in use by the checkout team";
    let approve = spawn_kubectl(&demo, &["delete", "namespace", "scratch"]);
    let deny = spawn_kubectl(&demo, &["delete", "namespace", "shop"]);

    let node = Command::new("node")
        .arg(root.join("tests/web/approvals.mjs"))
        .env("ADMIN_URL", &demo.metrics_url)
        .env("OUT_DIR", &out_dir)
        .env("APPROVE_COMMAND", "kubectl delete namespace scratch")
        .env(
            "APPROVE_CONTAINS",
            serde_json::json!([["configmaps", 2], ["serviceaccounts", 1], ["pods", 0]]).to_string(),
        )
        .env("DENY_COMMAND", "kubectl delete namespace shop")
        .env("DENY_REASON", reason)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let out = wait_with_timeout(node, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr_ = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{stdout}\n{stderr_}",
        out_dir.display()
    );

    // The approved call went through: kubectl got the real answer, the namespace is gone.
    let approved = wait_with_timeout(approve, Duration::from_secs(60));
    assert!(ok(&approved).contains("deleted"), "{}", ok(&approved));
    let gone = demo.kubectl_direct("1.33", &["get", "namespace", "scratch"]);
    assert!(!gone.status.success(), "the namespace is still there");
    assert!(stderr(&gone).contains("NotFound"), "{}", stderr(&gone));
    // The denied one printed alice's reason.
    let denied = wait_with_timeout(deny, Duration::from_secs(60));
    assert!(!denied.status.success());
    let err = stderr(&denied);
    assert!(err.contains(reason) && err.contains("alice"), "{err}");
    ok(&demo.kubectl_direct("1.33", &["get", "namespace", "shop"]));

    for shot in ["approvals.png", "approved.png", "viewer.png"] {
        let p = out_dir.join(shot);
        assert!(
            std::fs::metadata(&p)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "{} missing",
            p.display()
        );
    }
    if let Ok(keep) = std::env::var("AIRLOCK_TEST_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        for shot in ["approvals.png", "approved.png", "viewer.png"] {
            std::fs::copy(out_dir.join(shot), Path::new(&keep).join(shot)).unwrap();
        }
    }
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}
