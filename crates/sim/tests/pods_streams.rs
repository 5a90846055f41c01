//! exec, attach, port-forward, logs and cp against the simulator with real kubectl binaries:
//! 1.33 (WebSocket for exec/attach, SPDY tunnelled in WebSocket for port-forward), 1.33 with
//! `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` (SPDY exec/attach) and 1.27 (SPDY only).
//! Tests skip with a message when a binary is missing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const BIN_DIR: &str = "/usr/lib/google-cloud-sdk/bin";
const WEB: &str = "web-6b7f9c5d4-x2k9p";

/// One way kubectl can talk to the pod subresources.
#[derive(Clone, Copy, Debug)]
struct Client {
    version: &'static str,
    /// `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`.
    force_spdy: bool,
}

const WS_133: Client = Client {
    version: "1.33",
    force_spdy: false,
};
const SPDY_133: Client = Client {
    version: "1.33",
    force_spdy: true,
};
const SPDY_127: Client = Client {
    version: "1.27",
    force_spdy: false,
};
const ALL: [Client; 3] = [WS_133, SPDY_133, SPDY_127];

struct Env {
    sim: sim::SimHandle,
    dir: PathBuf,
}

impl Env {
    async fn start() -> Env {
        let sim = sim::start(sim::SimConfig::default())
            .await
            .expect("sim starts");
        let dir =
            std::env::temp_dir().join(format!("airlock-pods-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("kubeconfig"), sim.admin_kubeconfig()).unwrap();
        Env { sim, dir }
    }

    fn command(&self, c: Client, args: &[&str]) -> Command {
        let mut cmd = Command::new(Path::new(BIN_DIR).join(format!("kubectl.{}", c.version)));
        cmd.args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if c.force_spdy {
            cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
        }
        cmd
    }

    /// Runs kubectl to completion: (stdout, stderr, exit code).
    async fn run(&self, c: Client, args: &[&str], stdin: Option<&[u8]>) -> (String, String, i32) {
        let mut cmd = self.command(c, args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(data) = stdin {
            let mut si = child.stdin.take().unwrap();
            si.write_all(data).await.unwrap();
            drop(si);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} ({c:?}) timed out"))
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    /// The `Upgrade` and `Sec-WebSocket-Protocol` headers of the last recorded request whose
    /// path ends with `suffix`, from the introspection listener: proves which transport ran.
    async fn last_upgrade(&self, suffix: &str) -> (String, String) {
        let addr = self.sim.introspect_addr.expect("introspection enabled");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /requests HTTP/1.0\r\nHost: sim\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8_lossy(&raw);
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let records: serde_json::Value = serde_json::from_str(body).expect("requests json");
        let header = |r: &serde_json::Value, name: &str| -> String {
            match r.pointer(&format!("/headers/{name}")) {
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(v) => v.as_str().unwrap_or_default().to_owned(),
                None => String::new(),
            }
        };
        records
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
            .map(|r| (header(r, "upgrade"), header(r, "sec-websocket-protocol")))
            .unwrap_or_default()
    }

    async fn stop(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.sim.shutdown().await;
    }
}

fn have(c: Client) -> bool {
    let ok = Path::new(BIN_DIR)
        .join(format!("kubectl.{}", c.version))
        .exists();
    if !ok {
        eprintln!("skipping: kubectl.{} not installed", c.version);
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdout_exit_codes_and_stdin_on_every_transport() {
    let env = Env::start().await;
    for c in ALL {
        if !have(c) {
            continue;
        }
        let exec = |cmd: &'static [&'static str]| {
            let mut a = vec!["-n", "shop", "exec", WEB, "-c", "app", "--"];
            a.extend_from_slice(cmd);
            a
        };
        let got = env.run(c, &exec(&["echo", "hello", "world"]), None).await;
        assert_eq!(
            (got.0.as_str(), got.2),
            ("hello world\n", 0),
            "{c:?}: {got:?}"
        );
        let (upgrade, protocols) = env.last_upgrade("/exec").await;
        if c.version == "1.33" && !c.force_spdy {
            assert_eq!(upgrade.to_ascii_lowercase(), "websocket", "{c:?}");
            assert!(
                protocols.contains("v5.channel.k8s.io"),
                "{c:?}: {protocols}"
            );
        } else {
            assert_eq!(upgrade, "SPDY/3.1", "{c:?}");
        }

        let got = env.run(c, &exec(&["sh", "-c", "exit 3"]), None).await;
        assert_eq!(got.2, 3, "{c:?}: {got:?}");

        let got = env
            .run(
                c,
                &exec(&["sh", "-c", "echo out; echo err >&2; false"]),
                None,
            )
            .await;
        assert_eq!(got.2, 1, "{c:?}: {got:?}");
        assert!(got.0.contains("out\n"), "{c:?}: {got:?}");

        let got = env.run(c, &exec(&["nosuchcmd"]), None).await;
        assert_eq!(got.2, 127, "{c:?}: {got:?}");
        assert!(got.1.contains("sh: nosuchcmd: not found"), "{c:?}: {got:?}");

        let got = env.run(c, &exec(&["env"]), None).await;
        assert!(
            got.0
                .contains("DATABASE_URL=postgres://shop:S3cr3t-Pa55w0rd@db.shop.svc:5432/shop"),
            "{c:?}: {got:?}"
        );

        let mut a = vec!["-n", "shop", "exec", "-i", WEB, "-c", "app", "--", "cat"];
        let got = env.run(c, &a, Some(b"piped line 1\npiped line 2\n")).await;
        assert_eq!(
            (got.0.as_str(), got.2),
            ("piped line 1\npiped line 2\n", 0),
            "{c:?}: {got:?}"
        );

        a.truncate(a.len() - 1);
        a.push("sh");
        let got = env.run(c, &a, Some(b"echo from script\nexit 7\n")).await;
        assert_eq!(
            (got.0.as_str(), got.2),
            ("from script\n", 7),
            "{c:?}: {got:?}"
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_rejects_unknown_containers() {
    let env = Env::start().await;
    if have(WS_133) {
        let got = env
            .run(
                WS_133,
                &["-n", "shop", "exec", WEB, "-c", "nope", "--", "true"],
                None,
            )
            .await;
        assert_ne!(got.2, 0, "{got:?}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_echoes_stdin_lines() {
    let env = Env::start().await;
    for c in ALL {
        if !have(c) {
            continue;
        }
        let got = env
            .run(
                c,
                &["-n", "shop", "attach", "-i", WEB, "-c", "app"],
                Some(b"hello attach\n"),
            )
            .await;
        assert!(got.0.contains("hello attach\n"), "{c:?}: {got:?}");
        assert_eq!(got.2, 0, "{c:?}: {got:?}");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_with_options() {
    let env = Env::start().await;
    let c = if have(WS_133) { WS_133 } else { SPDY_127 };
    if !have(c) {
        return env.stop().await;
    }
    let got = env
        .run(c, &["-n", "payments", "logs", "payments-worker-0"], None)
        .await;
    assert_eq!(got.2, 0, "{got:?}");
    for needle in [
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "DATABASE_URL=postgres://payments:Pa55-w0rd-Payments@db:5432/payments",
        "Authorization: Bearer eyJ",
        "-----BEGIN RSA PRIVATE KEY-----",
    ] {
        assert!(got.0.contains(needle), "{needle}: {got:?}");
    }

    let got = env
        .run(
            c,
            &["-n", "shop", "logs", WEB, "-c", "app", "--tail=3"],
            None,
        )
        .await;
    assert_eq!(got.0.lines().count(), 3, "{got:?}");
    assert!(got.0.contains("HTTP/1.1\""), "{got:?}");

    let got = env
        .run(
            c,
            &[
                "-n",
                "shop",
                "logs",
                WEB,
                "-c",
                "app",
                "--tail=1",
                "--timestamps",
            ],
            None,
        )
        .await;
    assert!(
        got.0.starts_with("20") && got.0.contains("Z 10.244."),
        "{got:?}"
    );

    let got = env
        .run(
            c,
            &[
                "-n",
                "shop",
                "logs",
                WEB,
                "-c",
                "log-shipper",
                "--limit-bytes=10",
            ],
            None,
        )
        .await;
    assert_eq!(got.0.len(), 10, "{got:?}");

    let got = env
        .run(
            c,
            &["-n", "shop", "logs", WEB, "-c", "app", "--previous"],
            None,
        )
        .await;
    assert_ne!(got.2, 0, "{got:?}");
    assert!(got.1.contains("previous terminated container"), "{got:?}");

    let got = env
        .run(c, &["-n", "shop", "logs", WEB, "-c", "nope"], None)
        .await;
    assert_ne!(got.2, 0, "{got:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_new_lines() {
    let env = Env::start().await;
    let c = if have(WS_133) { WS_133 } else { SPDY_127 };
    if !have(c) {
        return env.stop().await;
    }
    let mut child = env
        .command(
            c,
            &["-n", "shop", "logs", "-f", "--tail=1", WEB, "-c", "app"],
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        while got.len() < 3 {
            match lines.next_line().await.unwrap() {
                Some(l) => got.push(l),
                None => break,
            }
        }
    })
    .await;
    assert!(read.is_ok(), "follow produced {got:?}");
    assert_eq!(got.len(), 3, "{got:?}");
    child.kill().await.unwrap();
    env.stop().await;
}

async fn port_forward_echo(env: &Env, c: Client) {
    let mut child = env
        .command(
            c,
            &["-n", "shop", "port-forward", &format!("pod/{WEB}"), ":8080"],
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let l = lines
                .next_line()
                .await
                .unwrap()
                .expect("port-forward printed its port");
            if let Some(rest) = l.strip_prefix("Forwarding from 127.0.0.1:") {
                return rest.split(' ').next().unwrap().parse().unwrap();
            }
        }
    })
    .await
    .expect("port-forward ready");
    let (upgrade, protocols) = env.last_upgrade("/portforward").await;
    if c.version == "1.33" || c.version == "1.31" || c.version == "1.32" {
        assert_eq!(upgrade.to_ascii_lowercase(), "websocket", "{c:?}");
        assert!(
            protocols.contains("SPDY/3.1+portforward.k8s.io"),
            "{c:?}: {protocols}"
        );
    } else {
        assert_eq!(upgrade, "SPDY/3.1", "{c:?}");
    }
    for round in 0..2 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let msg = format!("hello through the tunnel {round}\n");
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(15), s.read_exact(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{c:?}: echo timed out"))
            .unwrap();
        assert_eq!(buf, msg.as_bytes(), "{c:?}");
    }
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_echoes_over_websocket_tunnel_and_spdy() {
    let env = Env::start().await;
    for c in [WS_133, SPDY_127] {
        if have(c) {
            port_forward_echo(&env, c).await;
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_to_and_from_the_pod() {
    let env = Env::start().await;
    for (i, c) in [WS_133, SPDY_127].into_iter().enumerate() {
        if !have(c) {
            continue;
        }
        let local = env.dir.join(format!("up-{i}.txt"));
        let content = format!("copied up {i}\n");
        std::fs::write(&local, &content).unwrap();
        let dest = format!("shop/{WEB}:/tmp/up-{i}.txt");
        let got = env
            .run(
                c,
                &["cp", local.to_str().unwrap(), &dest, "-c", "app"],
                None,
            )
            .await;
        assert_eq!(got.2, 0, "{c:?}: {got:?}");
        let remote = format!("/tmp/up-{i}.txt");
        let got = env
            .run(
                c,
                &["-n", "shop", "exec", WEB, "-c", "app", "--", "cat", &remote],
                None,
            )
            .await;
        assert_eq!(got.0, content, "{c:?}: {got:?}");

        let back = env.dir.join(format!("config-{i}.yaml"));
        let src = format!("shop/{WEB}:/app/config.yaml");
        let got = env
            .run(c, &["cp", &src, back.to_str().unwrap(), "-c", "app"], None)
            .await;
        assert_eq!(got.2, 0, "{c:?}: {got:?}");
        let text = std::fs::read_to_string(&back).unwrap_or_default();
        assert!(text.contains("server:\n  port: 8080"), "{c:?}: {text:?}");

        // Directories both ways.
        let local_dir = env.dir.join(format!("tree-{i}"));
        std::fs::create_dir_all(local_dir.join("sub")).unwrap();
        std::fs::write(local_dir.join("sub/leaf.txt"), "leaf\n").unwrap();
        let dest = format!("shop/{WEB}:/tmp/tree-{i}");
        let got = env
            .run(
                c,
                &["cp", local_dir.to_str().unwrap(), &dest, "-c", "app"],
                None,
            )
            .await;
        assert_eq!(got.2, 0, "{c:?}: {got:?}");
        let leaf = format!("/tmp/tree-{i}/sub/leaf.txt");
        let got = env
            .run(
                c,
                &["-n", "shop", "exec", WEB, "-c", "app", "--", "cat", &leaf],
                None,
            )
            .await;
        assert_eq!(got.0, "leaf\n", "{c:?}: {got:?}");

        let sa = format!("shop/{WEB}:/var/run/secrets/kubernetes.io/serviceaccount");
        let sa_local = env.dir.join(format!("sa-{i}"));
        let got = env
            .run(
                c,
                &["cp", &sa, sa_local.to_str().unwrap(), "-c", "app"],
                None,
            )
            .await;
        assert_eq!(got.2, 0, "{c:?}: {got:?}");
        let ns = std::fs::read_to_string(sa_local.join("namespace")).unwrap_or_default();
        assert_eq!(ns, "shop", "{c:?}");
        let token = std::fs::read_to_string(sa_local.join("token")).unwrap_or_default();
        assert!(token.starts_with("eyJ"), "{c:?}: {token}");
    }
    env.stop().await;
}

/// `kubectl exec -it ... -- sh` under a pseudo-terminal (util-linux `script`): prompt, echo
/// and exit code through the TTY path. Skips where `script` is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_tty_shell() {
    let env = Env::start().await;
    let script_bin = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    for c in [WS_133, SPDY_127] {
        let (Some(script_bin), true) = (script_bin, have(c)) else {
            eprintln!("skipping: script(1) or kubectl missing");
            continue;
        };
        let kubectl = Path::new(BIN_DIR).join(format!("kubectl.{}", c.version));
        let inner = format!("{} -n shop exec -it {WEB} -c app -- sh", kubectl.display());
        let mut cmd = Command::new(script_bin);
        cmd.args(["-qec", &inner, "/dev/null"])
            .env("KUBECONFIG", env.dir.join("kubeconfig"))
            .env("HOME", &env.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        wait_for(&mut stdout, &mut seen, "# ").await;
        stdin.write_all(b"echo tty-$HOSTNAME\r").await.unwrap();
        wait_for(&mut stdout, &mut seen, "tty-web-6b7f9c5d4-x2k9p\r\n").await;
        stdin.write_all(b"exit 4\r").await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("kubectl exits")
            .unwrap();
        assert_eq!(
            status.code(),
            Some(4),
            "{c:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
    env.stop().await;
}

/// Reads `stdout` into `seen` until `needle` appears (20 s at most).
async fn wait_for(stdout: &mut tokio::process::ChildStdout, seen: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while !String::from_utf8_lossy(seen).contains(needle) {
            let n = stdout.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        true
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no {needle:?} in {:?}",
        String::from_utf8_lossy(seen)
    );
}

/// Every other kubectl minor installed: exec with stdin and exit code, and port-forward
/// (1.28/1.29 speak SPDY; 1.30+ WebSocket for exec, and the tunnel once it is on by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_kubectl_versions() {
    let env = Env::start().await;
    for version in ["1.28", "1.29", "1.30", "1.31", "1.32"] {
        let c = Client {
            version,
            force_spdy: false,
        };
        if !have(c) {
            continue;
        }
        let got = env
            .run(
                c,
                &[
                    "-n",
                    "shop",
                    "exec",
                    "-i",
                    WEB,
                    "-c",
                    "app",
                    "--",
                    "sh",
                    "-c",
                    "cat; exit 9",
                ],
                Some(b"v\n"),
            )
            .await;
        assert_eq!((got.0.as_str(), got.2), ("v\n", 9), "{c:?}: {got:?}");
        port_forward_echo(&env, c).await;
    }
    env.stop().await;
}
