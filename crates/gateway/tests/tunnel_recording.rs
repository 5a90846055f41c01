//! Tunnel recording against real kubectl: a gateway in this process (with an in-memory
//! `Recorder`) in front of the simulated cluster. The recording must hold exactly the bytes
//! kubectl printed (masked) and the bytes it sent, for WebSocket and SPDY, with and without a
//! TTY.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use gateway::tunnel::{to_asciicast, Recorder, TunnelEvent, TunnelEventKind};

const TOKEN: &str = "recording-test-token";
const WEB_POD: &str = "web-6b7f9c5d4-x2k9p";
const SA_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[derive(Default)]
struct Rec(Mutex<Vec<TunnelEvent>>);

impl Recorder for Rec {
    fn event(&self, ev: TunnelEvent) {
        self.0.lock().unwrap().push(ev);
    }
}

impl Rec {
    fn take(&self) -> Vec<TunnelEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// Waits for the tunnel's `Close` (kubectl may exit before the relay has finished).
    async fn session(&self) -> Vec<TunnelEvent> {
        for _ in 0..100 {
            let closed = self
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e.kind, TunnelEventKind::Close { .. }));
            if closed {
                return self.take();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no Close event: {:?}", self.take());
    }
}

fn bytes(events: &[TunnelEvent], pick: fn(&TunnelEventKind) -> Option<&[u8]>) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| pick(&e.kind))
        .flat_map(|b| b.to_vec())
        .collect()
}

fn stdout(k: &TunnelEventKind) -> Option<&[u8]> {
    match k {
        TunnelEventKind::Stdout(b) => Some(b),
        _ => None,
    }
}

fn stdin(k: &TunnelEventKind) -> Option<&[u8]> {
    match k {
        TunnelEventKind::Stdin(b) => Some(b),
        _ => None,
    }
}

fn exit_code(events: &[TunnelEvent]) -> Option<i32> {
    events.iter().find_map(|e| match &e.kind {
        TunnelEventKind::Exit { code, .. } => *code,
        _ => None,
    })
}

fn kubectl_bin(version: &str) -> PathBuf {
    let dir =
        std::env::var("KUBECTL_DIR").unwrap_or_else(|_| "/usr/lib/google-cloud-sdk/bin".into());
    Path::new(&dir).join(format!("kubectl.{version}"))
}

struct Bench {
    sim: sim::SimHandle,
    running: gateway::Running,
    dir: PathBuf,
    kubeconfig: PathBuf,
    rec: Arc<Rec>,
}

async fn bench() -> Bench {
    let sim = sim::start(sim::SimConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("airlock-rec-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sim.kubeconfig"), sim.admin_kubeconfig()).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\nclusters: [{{name: sim, kubeconfig: {d}/sim.kubeconfig}}]\nauthn: {{static_tokens: [{{sha256: {h}, user: tester, groups: [g]}}]}}\n",
        d = dir.display(),
        h = authn::hash_token(TOKEN)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, Path::new("/")).unwrap();
    let rec = Arc::new(Rec::default());
    let running =
        gateway::server::start_with_recorder(&cfg, Some(rec.clone() as Arc<dyn Recorder>))
            .await
            .unwrap();
    let kc = gateway::kubeconfig::render(
        &format!("https://{}", running.addr),
        &running.ca_pem,
        "airlock",
        &gateway::kubeconfig::ClientAuth::Token(TOKEN.into()),
    );
    let kubeconfig = dir.join("agent.kubeconfig");
    std::fs::write(&kubeconfig, kc).unwrap();
    Bench {
        sim,
        running,
        dir,
        kubeconfig,
        rec,
    }
}

impl Bench {
    async fn kubectl(
        &self,
        version: &str,
        env: &[(&str, &str)],
        args: &[&str],
        input: &[u8],
    ) -> Output {
        let mut cmd = Command::new(kubectl_bin(version));
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let input = input.to_vec();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd.spawn().expect("spawn kubectl");
            let mut s = child.stdin.take().unwrap();
            s.write_all(&input).unwrap();
            drop(s);
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap()
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Env = &'static [(&'static str, &'static str)];

/// (kubectl version, environment, what it speaks)
const CLIENTS: &[(&str, Env, &str)] = &[
    ("1.33", &[], "websocket"),
    (
        "1.33",
        &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")],
        "SPDY",
    ),
    ("1.27", &[], "SPDY"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_exec_equals_what_kubectl_printed_and_sent() {
    let b = bench().await;
    let input = b"hello from stdin\n\x00\x01binary\xff tail\n";
    for (v, env, speaks) in CLIENTS {
        let script =
            format!("cat; cat {SA_TOKEN}; echo; printenv DATABASE_URL; cat /no/such/file; exit 3");
        let out = b
            .kubectl(
                v,
                env,
                &[
                    "exec", "-i", "-n", "shop", WEB_POD, "-c", "app", "--", "sh", "-c", &script,
                ],
                input,
            )
            .await;
        let events = b.rec.session().await;
        let printed = &out.stdout;
        let text = String::from_utf8_lossy(printed);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{v} {env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            printed.starts_with(input),
            "{v} {env:?}: stdin did not round-trip: {text}"
        );
        assert!(text.contains("[airlock:masked:jwt:"), "{v} {env:?}: {text}");
        assert!(
            !text.contains("eyJhbGciOiJSUzI1NiIs"),
            "{v} {env:?}: raw token: {text}"
        );
        assert!(!text.contains(sim::DATABASE_URL), "{v} {env:?}: {text}");
        match &events[0].kind {
            TunnelEventKind::Open { protocol, tty, .. } => {
                assert!(protocol.contains(speaks), "{v} {env:?}: {protocol}");
                assert!(!tty);
            }
            other => panic!("first event {other:?}"),
        }
        assert_eq!(
            bytes(&events, stdout),
            *printed,
            "{v} {env:?}: recorded stdout differs"
        );
        assert_eq!(
            bytes(&events, stdin),
            input,
            "{v} {env:?}: recorded stdin differs"
        );
        assert_eq!(exit_code(&events), Some(3), "{v} {env:?}");
        let stderr: Vec<u8> = events
            .iter()
            .filter_map(|e| match &e.kind {
                TunnelEventKind::Stderr(b) => Some(b.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        // kubectl adds "command terminated with exit code 3" after the process's stderr.
        let printed_err = String::from_utf8_lossy(&out.stderr);
        let stderr = String::from_utf8(stderr).unwrap();
        assert!(stderr.contains("/no/such/file"), "{v} {env:?}: {events:?}");
        assert!(
            printed_err.starts_with(&stderr),
            "{v} {env:?}: {printed_err:?} vs {stderr:?}"
        );
    }
    b.stop().await;
}

/// A TTY session (kubectl needs a terminal for `-t`: `script` gives it one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_exec_is_recorded_and_replays_as_asciicast() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` binary for a pseudo-terminal");
        return;
    }
    let b = bench().await;
    for (v, env, _) in CLIENTS {
        let kubectl = kubectl_bin(v);
        let cmdline = format!(
            "{} exec -it -n shop {WEB_POD} -c app -- sh -c 'cat {SA_TOKEN}; echo; echo tty-ok'",
            kubectl.display()
        );
        let mut envs: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        envs.push(("KUBECONFIG".into(), b.kubeconfig.display().to_string()));
        envs.push(("HOME".into(), b.dir.display().to_string()));
        let out = tokio::task::spawn_blocking(move || {
            Command::new("script")
                .args(["-qec", &cmdline, "/dev/null"])
                .envs(envs)
                .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let events = b.rec.session().await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("tty-ok"), "{v} {env:?}: {text}");
        assert!(
            !text.contains("eyJhbGciOiJSUzI1NiIs"),
            "{v} {env:?}: raw token: {text}"
        );
        assert!(
            matches!(&events[0].kind, TunnelEventKind::Open { tty: true, .. }),
            "{v} {env:?}: {:?}",
            events[0]
        );
        let recorded = String::from_utf8(bytes(&events, stdout)).unwrap();
        assert!(
            recorded.contains("tty-ok") && recorded.contains("[airlock:masked:jwt:"),
            "{recorded}"
        );
        // What the terminal showed is what was recorded (script adds nothing but the pty's
        // own newline translation, which the TTY stream already has).
        assert!(
            text.contains(recorded.trim_end()),
            "{v} {env:?}: terminal {text:?} vs recorded {recorded:?}"
        );
        assert_eq!(exit_code(&events), Some(0));
        let cast = to_asciicast(&events, 80, 24);
        assert!(cast.lines().next().unwrap().contains(r#""version":2"#));
        assert!(
            cast.contains(r#""o","#) && cast.contains("tty-ok"),
            "{cast}"
        );
    }
    b.stop().await;
}
