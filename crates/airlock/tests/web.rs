//! The web UI in a real browser: the test IdP (tests/oidc/provider.mjs), `airlock demo` with
//! web login at that IdP, kubectl calls as the agent, then Debian's Chromium driven by
//! playwright-core (tests/web/sessions.mjs) logs in as alice (authorization code + PKCE),
//! finds the agent's session, its timeline and its exec recording, and checks CSRF, sign-out
//! and that bob (in no allowed group) is refused.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{ok, tempdir, wait_with_timeout, Demo};

const WEB_POD: &str = "web-6b7f9c5d4-x2k9p";
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the test IdP and returns it with its ready line (JSON).
fn start_idp(root: &Path) -> (Killed, serde_json::Value) {
    // stdin stays open while the child lives: the IdP exits when it closes.
    let mut child = Command::new("node")
        .arg(root.join("tests/oidc/provider.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.starts_with('{') {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the test IdP did not become ready");
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

/// Gives the exec request a recording: `stream_event` records as the exec recorder writes them
/// (`extra`: `event`, `t_us`, base64 `data`), appended on a chain of their own. The gateway on
/// this branch does not record exec streams yet; the page must show whatever the log holds.
/// The output has ANSI escapes and `\r\n`, which the player must clean up.
fn add_recording(state_dir: &Path) {
    use base64::Engine as _;
    use store::{sessions, AppenderConfig, AuditRecord, Filter, RecordKind, Store, Timestamp};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}", state_dir.join("audit.db").display());
        let store = Store::open(&url).await.unwrap();
        let exec = sessions::requests(&store, Filter::default())
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.subresource.as_deref() == Some("exec"))
            .expect("the exec request is in the audit log");
        let key = store::load_or_generate_signing_key(&state_dir.join("web-test.key")).unwrap();
        let appender = store
            .appender(AppenderConfig::new("web-test", key))
            .await
            .unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let events = [
            serde_json::json!({"event": "resize", "t_us": 0, "width": 80, "height": 24}),
            serde_json::json!({"event": "stdout", "t_us": 150_000, "data": b64("\u{1b}[1mhello-from-exec\u{1b}[0m\r\n")}),
            serde_json::json!({"event": "stderr", "t_us": 400_000, "data": b64("progress 10%\rprogress 100%\r\n")}),
            serde_json::json!({"event": "exit", "t_us": 450_000, "code": 0}),
        ];
        for extra in events {
            let mut r = AuditRecord::new(exec.id, RecordKind::StreamEvent, Timestamp::now());
            r.identity = exec.identity.clone();
            r.extra = serde_json::from_value(extra).unwrap();
            appender.append(r).await.unwrap();
        }
        appender.close().await.unwrap();
    });
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
            "echo",
            "hello-from-exec",
        ],
    ));
    assert_eq!(out, "hello-from-exec\n");
    add_recording(&demo.dir);

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
            serde_json::json!(["hello-from-exec", "progress 100%"]).to_string(),
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
