//! Test bench: a simulator on port 0 with its admin kubeconfig in a temp dir, and helpers
//! to run the real versioned kubectl binaries against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where the versioned kubectl binaries live on the dev machines and CI.
pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The oldest and newest kubectl we support; every behaviour test runs against both.
pub const VERSIONS: &[&str] = &["1.27", "1.33"];

/// A running simulator plus its kubeconfigs.
pub struct Bench {
    pub rt: tokio::runtime::Runtime,
    pub sim: Option<sim::SimHandle>,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub cert_kubeconfig: PathBuf,
}

/// The path of `kubectl.<version>`, or None when it is not installed (the test is skipped).
pub fn kubectl_path(version: &str) -> Option<PathBuf> {
    let p = Path::new(KUBECTL_DIR).join(format!("kubectl.{version}"));
    p.exists().then_some(p)
}

/// True when all the kubectl versions we test are present; tests print why they skip.
pub fn have_kubectl() -> bool {
    let ok = VERSIONS.iter().all(|v| kubectl_path(v).is_some());
    if !ok {
        eprintln!("skipping: kubectl binaries not found in {KUBECTL_DIR}");
    }
    ok
}

impl Bench {
    /// Starts a seeded simulator.
    pub fn start() -> Bench {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(sim::start(sim::SimConfig::default())).unwrap();
        let dir = std::env::temp_dir().join(format!("sim-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, sim.admin_kubeconfig()).unwrap();
        let cert_kubeconfig = dir.join("cert-kubeconfig");
        std::fs::write(&cert_kubeconfig, sim.client_cert_kubeconfig()).unwrap();
        Bench {
            rt,
            sim: Some(sim),
            dir,
            kubeconfig,
            cert_kubeconfig,
        }
    }

    pub fn sim(&self) -> &sim::SimHandle {
        self.sim.as_ref().unwrap()
    }

    /// A kubectl command for `version` using the admin kubeconfig and a private cache dir.
    pub fn kubectl(&self, version: &str) -> Command {
        let mut c = Command::new(kubectl_path(version).unwrap());
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.dir)
            .arg("--cache-dir")
            .arg(self.dir.join(format!("cache-{version}")));
        c.stdin(Stdio::null());
        c
    }

    /// Runs kubectl and returns (success, stdout, stderr).
    pub fn run(&self, version: &str, args: &[&str]) -> (bool, String, String) {
        let out = self.kubectl(version).args(args).output().unwrap();
        decode(out)
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub fn ok(&self, version: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.run(version, args);
        assert!(
            ok,
            "kubectl.{version} {args:?} failed\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// Runs kubectl, asserts failure, returns stderr.
    pub fn fails(&self, version: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.run(version, args);
        assert!(
            !ok,
            "kubectl.{version} {args:?} unexpectedly succeeded\nstdout: {out}"
        );
        err
    }

    /// The introspection request log.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let addr = self.sim().introspect_addr.unwrap();
        let body = http_get_plain(addr, "/requests");
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.shutdown());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn decode(out: Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A tiny HTTP/1.0 GET against the plain introspection listener.
pub fn http_get_plain(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
