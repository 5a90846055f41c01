//! The end-to-end bench: a real `airlock demo` process (simulated cluster + gateway) on
//! loopback port 0, driven by the real kubectl binaries.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

/// The kubectl versions the suite runs against (the Google Cloud SDK's versioned binaries).
pub const KUBECTL_VERSIONS: &[&str] = &["1.27", "1.30", "1.32", "1.33"];

pub fn kubectl_bin(version: &str) -> PathBuf {
    let dir =
        std::env::var("KUBECTL_DIR").unwrap_or_else(|_| "/usr/lib/google-cloud-sdk/bin".into());
    let p = Path::new(&dir).join(format!("kubectl.{version}"));
    assert!(
        p.exists(),
        "{} is missing: install the Google Cloud SDK kubectl components",
        p.display()
    );
    p
}

pub struct Demo {
    child: Child,
    pub dir: PathBuf,
    pub agent_kubeconfig: PathBuf,
    pub sim_kubeconfig: PathBuf,
    /// Where the approvals API lives (the HTTPS listener).
    pub admin_url: String,
    /// The plain-HTTP metrics and health listener.
    pub metrics_url: String,
    pub introspect_url: String,
    pub server: String,
    pub agent_token: String,
    pub approver_token: String,
    /// Remove `dir` when dropped (not after `kill`).
    remove_dir: bool,
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("airlock-e2e-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// How to start the demo. The default holds calls that need approval for one second, so
/// suites that only check refusals stay fast.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// `--approval-hold` (used when the demo writes its policy).
    pub hold: String,
    /// A policy file to use instead of the demo's (written before the demo starts).
    pub policy: Option<String>,
    /// approver2@demo .. approver{N+1}@demo, with tokens in DIR/approverN.token.
    pub extra_approvers: u32,
    /// Write the demo's log (stderr) to this file instead of the test's stderr.
    pub log_file: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            hold: "1s".into(),
            policy: None,
            extra_approvers: 0,
            log_file: None,
        }
    }
}

impl Demo {
    /// Starts `airlock demo` and waits for its `ready` line.
    pub fn start() -> Demo {
        Demo::start_with(DemoOptions::default())
    }

    pub fn start_with(opts: DemoOptions) -> Demo {
        let dir = tempdir("demo");
        if let Some(p) = &opts.policy {
            std::fs::write(dir.join("policy.yaml"), p).unwrap();
        }
        Demo::start_in_with(dir, &opts, &[])
    }

    /// Stops the demo and starts it again on the same state directory (a restart: the
    /// simulated cluster comes back with its seed data, Airlock with its state).
    pub fn restart(&mut self, opts: &DemoOptions) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::take(&mut self.dir);
        // The old value's directory is now empty, so dropping it removes nothing.
        *self = Demo::start_in_with(dir, opts, &[]);
    }

    /// Starts `airlock demo` on a given state directory (a restart reuses it), with extra
    /// arguments.
    pub fn start_in(dir: PathBuf, extra: &[&str]) -> Demo {
        Demo::start_in_with(dir, &DemoOptions::default(), extra)
    }

    /// Both: options and extra arguments, on a given state directory.
    pub fn start_in_with(dir: PathBuf, opts: &DemoOptions, extra: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--approval-hold",
                &opts.hold,
                "--extra-approvers",
                &opts.extra_approvers.to_string(),
            ])
            .args(extra)
            .arg("--state-dir")
            .arg(&dir)
            .env(
                "RUST_LOG",
                // Checkpoint lines are logged at any level unless named; a test that does not
                // keep the log has no use for them on its stderr.
                std::env::var("AIRLOCK_TEST_LOG").unwrap_or_else(|_| {
                    if opts.log_file.is_some() {
                        "warn".into()
                    } else {
                        "warn,audit_checkpoint=off".into()
                    }
                }),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match &opts.log_file {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("create the log")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("spawn airlock demo");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !ready && line.contains("ready") {
                    ready = true;
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("airlock demo did not print ready within 60s");
        }
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap()
                .trim()
                .to_owned()
        };
        let agent_kubeconfig = dir.join("agent.kubeconfig");
        let kc = std::fs::read_to_string(&agent_kubeconfig).unwrap();
        let server = kc
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap()
            .trim()
            .to_owned();
        Demo {
            admin_url: read("admin.url"),
            metrics_url: read("metrics.url"),
            introspect_url: read("sim-introspect.url"),
            agent_token: read("agent.token"),
            approver_token: read("approver.token"),
            sim_kubeconfig: dir.join("sim-admin.kubeconfig"),
            agent_kubeconfig,
            server,
            dir,
            child,
            remove_dir: true,
        }
    }

    /// The `airlock demo` process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no shutdown, no final checkpoint. The state directory is kept.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.remove_dir = false;
        self.dir.clone()
    }

    /// SIGTERM and wait: a clean shutdown, which seals the audit chain with a final
    /// checkpoint. The state directory is kept.
    pub fn terminate(mut self) -> PathBuf {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.remove_dir = false;
        self.dir.clone()
    }

    /// Runs the `airlock` binary with `args` and `--state-dir` pointing at this demo's state.
    pub fn airlock(&self, args: &[&str]) -> Output {
        airlock_in(&self.dir, args)
    }

    /// Runs a kubectl binary as the agent, through Airlock.
    pub fn kubectl(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_with(version, &self.agent_kubeconfig, args, &[], None)
    }

    /// Runs kubectl against the simulated cluster directly, without Airlock.
    pub fn kubectl_direct(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_with(version, &self.sim_kubeconfig, args, &[], None)
    }

    pub fn kubectl_with(
        &self,
        version: &str,
        kubeconfig: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Output {
        let mut cmd = Command::new(kubectl_bin(version));
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &self.dir)
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            let mut s = child.stdin.take().unwrap();
            s.write_all(input).unwrap();
            drop(s);
        }
        wait_with_timeout(child, Duration::from_secs(60))
    }

    /// What the simulated cluster received, from its introspection listener.
    pub fn received(&self) -> Vec<serde_json::Value> {
        let body = http_get(&format!("{}/requests", self.introspect_url));
        serde_json::from_str(&body).unwrap()
    }

    pub fn clear_received(&self) {
        http_request("DELETE", &format!("{}/requests", self.introspect_url));
    }

    pub fn metrics(&self) -> String {
        http_get(&format!("{}/metrics", self.metrics_url))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_dir && !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs the `airlock` binary with `args --state-dir DIR`.
pub fn airlock_in(dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airlock");
    wait_with_timeout(child, Duration::from_secs(60))
}

pub fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let start = std::time::Instant::now();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut v);
        }
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "command failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn http_get(url: &str) -> String {
    http_request("GET", url)
}

/// A minimal plain-HTTP client for the loopback introspection and admin listeners.
pub fn http_request(method: &str, url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    match resp.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_owned(),
        None => String::new(),
    }
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    /// A chunked body ended with its last (empty) chunk.
    pub complete: bool,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends bytes exactly as given over TLS to `server` (https://host:port) and reads the whole
/// response. Used for requests that well-behaved clients would refuse to send.
pub fn raw_https(server: &str, ca_pem: &str, request: &[u8]) -> RawResponse {
    use std::sync::Arc;
    let addr = server
        .strip_prefix("https://")
        .unwrap()
        .trim_end_matches('/');
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The server may answer and close before it has read everything (an early 400): a write
    // error is not a test failure, the response is what counts.
    let _ = tls.write_all(request).and_then(|_| tls.flush());
    let mut buf = Vec::new();
    // The server closes after `Connection: close`; a TLS close_notify may be missing.
    let _ = tls.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut body = buf[split + 4..].to_vec();
    let mut complete = true;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        complete = body.ends_with(b"0\r\n\r\n");
        body = dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    RawResponse {
        status,
        head,
        body,
        complete,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

impl Demo {
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.crt")).unwrap()
    }

    /// A GET through Airlock with the agent's token plus `extra` header lines.
    pub fn raw_get(&self, path: &str, extra: &str) -> RawResponse {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nConnection: close\r\n{extra}\r\n",
            self.agent_token
        );
        raw_https(&self.server, &self.ca_pem(), req.as_bytes())
    }
}

/// Waits until every series of a gauge reads `want` (streams close asynchronously).
pub fn wait_for_metric(demo: &Demo, name: &str, want: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = demo.metrics();
        let values: Vec<i64> = text
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if values.iter().all(|v| *v == want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed at {values:?}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Spawns `cmd` and waits (60 s at most) for the first stdout line `pick` accepts. stdin stays
/// open while the child lives (the test IdP exits when its stdin closes).
pub fn spawn_until(
    mut cmd: Command,
    pick: impl Fn(&str) -> bool + Send + 'static,
) -> (Child, String) {
    // stdin stays open while the child lives: the test IdP exits when its stdin closes, so a
    // crashed test leaves no orphan behind.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if !sent && pick(&line) {
                sent = true;
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => (child, line),
        Err(_) => {
            let _ = child.kill();
            panic!("{cmd:?} did not become ready");
        }
    }
}

pub struct Killed(pub Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The repository root (for tests/oidc, tests/web, tests/python).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Non-GET requests the simulated cluster received, not counting the approval preview's dry
/// runs (they change nothing): what must stay empty after refused writes.
pub fn writes_received(demo: &Demo) -> Vec<serde_json::Value> {
    demo.received()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .filter(|r| !r["query"].as_str().unwrap_or("").contains("dryRun=All"))
        .collect()
}

/// Starts `kubectl port-forward` to the web pod's port 8080 (the simulator echoes), sends
/// `data` over one connection and returns what came back.
pub fn port_forward_round_trip(demo: &Demo, v: &str, env: &[(&str, &str)], data: &[u8]) -> Vec<u8> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut cmd = std::process::Command::new(kubectl_bin(v));
    cmd.args([
        "port-forward",
        "-n",
        "shop",
        "pod/web-6b7f9c5d4-x2k9p",
        ":8080",
    ])
    .env("KUBECONFIG", &demo.agent_kubeconfig)
    .env("HOME", &demo.dir)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    for (k, val) in env {
        cmd.env(k, val);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{v}: unexpected port-forward output {line:?}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    s.read_exact(&mut back).unwrap();
    drop(s);
    let _ = child.kill();
    let _ = child.wait();
    back
}

/// Runs SQL as the machine's PostgreSQL superuser in database `test`; fails the test on error.
pub fn psql(sql: &str) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
