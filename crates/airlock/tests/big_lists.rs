//! A list of 20,000 Secrets through Airlock, on the whole path (TLS, masking, audit capture):
//! every value is masked and the gateway's peak memory does not grow with the response.

mod common;

use std::{path::Path, process::Command};

use base64::Engine as _;
use common::{raw_https, spawn_until, tempdir, Killed};
use futures_util::StreamExt;
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    ByteString,
};
use kube::{
    api::{Api, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};

const SECRETS: usize = 20_000;
const TOKEN: &str = "big-lists-token";

/// Peak resident set size of a process, in KiB.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

async fn fill(kubeconfig: &Path) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(cfg).unwrap();
    let ns: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some("bulk".into());
    ns.create(&PostParams::default(), &n).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client, "bulk");
    futures_util::stream::iter(0..SECRETS)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let mut s = Secret::default();
                s.metadata.name = Some(format!("s-{i:05}"));
                // ~1.5 KiB per Secret: the list is about 40 MB.
                let value = format!("RAWSECRET-{i:05}-{}", "x".repeat(1000));
                s.data = Some(
                    [("password".to_owned(), ByteString(value.into_bytes()))]
                        .into_iter()
                        .collect(),
                );
                secrets.create(&PostParams::default(), &s).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

#[test]
fn twenty_thousand_secrets_are_masked_in_bounded_memory() {
    let dir = tempdir("big");
    let airlock = env!("CARGO_BIN_EXE_airlock");
    let sim_kc = dir.join("sim.kubeconfig");
    let mut sim = Command::new(airlock);
    sim.args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&sim_kc)
        .env("RUST_LOG", "warn");
    let (sim, _) = spawn_until(sim, |l| l.contains("ready"));
    let _sim = Killed(sim);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fill(&sim_kc));

    let config = dir.join("airlock.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\nclusters: [{{name: sim, kubeconfig: {k}}}]\nauthn: {{static_tokens: [{{sha256: {h}, user: bulk-reader, groups: [g]}}]}}\nlog: {{level: warn}}\n",
            d = dir.display(),
            k = sim_kc.display(),
            h = authn::hash_token(TOKEN)
        ),
    )
    .unwrap();
    let mut serve = Command::new(airlock);
    serve.args(["serve", "--config"]).arg(&config);
    let (gw, line) = spawn_until(serve, |l| l.contains("ready"));
    let pid = gw.id();
    let _gw = Killed(gw);
    let server = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap()
        .to_owned();
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let get = |path: &str| {
        raw_https(
            &server,
            &ca,
            format!("GET {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {TOKEN}\r\nAccept: application/json\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    // Warm up: connections, TLS, masker, audit writer.
    assert_eq!(get("/api/v1/namespaces/bulk/secrets/s-00000").status, 200);
    let before = vm_hwm(pid);

    let res = get("/api/v1/namespaces/bulk/secrets");
    assert_eq!(res.status, 200);
    assert!(res.complete);
    let after = vm_hwm(pid);
    let size = res.body.len();
    assert!(size > 30_000_000, "the list is only {size} bytes");
    let list: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), SECRETS);
    let b64 = base64::engine::general_purpose::STANDARD;
    for item in items {
        let v = b64
            .decode(item["data"]["password"].as_str().unwrap())
            .unwrap();
        assert!(
            v.starts_with(b"airlock:masked:"),
            "{} unmasked",
            item["metadata"]["name"]
        );
    }
    let raw = b64.encode("RAWSECRET-");
    let needle = &raw.as_bytes()[..12];
    assert!(!res.body.windows(needle.len()).any(|w| w == needle));

    let growth_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "20,000 Secrets: {:.1} MB through Airlock, peak RSS {before} KiB -> {after} KiB (+{growth_mib:.1} MiB)",
        size as f64 / 1e6
    );
    assert!(
        growth_mib < 32.0,
        "peak memory grew by {growth_mib:.1} MiB for a {:.1} MB response",
        size as f64 / 1e6
    );
}
