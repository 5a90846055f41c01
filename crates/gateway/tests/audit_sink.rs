//! The webhook sink: every record of this replica arrives, in order, at least once, through
//! webhook failures and a gateway restart.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{send, start_sim, webhook, Hook};

const TOKEN: &str = "sink-test-token";

/// Every record's seq, each time it arrived, checking each delivery's type and replica.
fn seqs(got: &Arc<Mutex<Hook>>) -> Vec<u64> {
    let mut out = Vec::new();
    for (ct, body) in &got.lock().unwrap().accepted {
        assert_eq!(ct, "application/x-ndjson");
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert_eq!(v["replica_id"], "sink-test");
            out.push(v["seq"].as_u64().unwrap());
        }
    }
    out
}

async fn start_gateway(dir: &Path, sim: &sim::SimHandle, hook: &str) -> gateway::Running {
    std::fs::write(dir.join("sim.kubeconfig"), sim.admin_kubeconfig()).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\nclusters: [{{name: sim, kubeconfig: {d}/sim.kubeconfig}}]\nauthn: {{static_tokens: [{{sha256: {h}, user: tester, groups: [g]}}]}}\naudit: {{replica_id: sink-test, sinks: [{{name: siem, type: webhook, url: \"{hook}\", batch_size: 5}}]}}\n",
        d = dir.display(),
        h = authn::hash_token(TOKEN)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, Path::new("/")).unwrap();
    gateway::start(&cfg).await.unwrap()
}

/// Waits until the webhook has seen every seq from 1 to `upto`.
async fn wait_for(got: &Arc<Mutex<Hook>>, upto: u64) -> BTreeSet<u64> {
    for _ in 0..200 {
        let seen: BTreeSet<u64> = seqs(got).into_iter().collect();
        if (1..=upto).all(|s| seen.contains(&s)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: BTreeSet<u64> = seqs(got).into_iter().collect();
    panic!("the webhook did not get records 1..={upto}: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gets_every_record_through_failures_and_a_restart() {
    let sim = start_sim().await;
    let dir: PathBuf = std::env::temp_dir().join(format!("airlock-sink-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    // The first two deliveries are refused, then retried.
    let (hook, got) = webhook(2).await;

    let gw = start_gateway(&dir, &sim, &hook).await;
    for _ in 0..6 {
        assert_eq!(
            send(&gw, TOKEN, "GET", "/api/v1/namespaces/shop/pods").await,
            200
        );
    }
    // Six requests, two records each; the first two deliveries were refused and retried.
    wait_for(&got, 12).await;
    assert!(got.lock().unwrap().attempts >= 3);
    gw.shutdown().await;

    // A restart resumes from the cursor: the new records arrive, and nothing is missing.
    let gw = start_gateway(&dir, &sim, &hook).await;
    for _ in 0..3 {
        assert_eq!(
            send(&gw, TOKEN, "GET", "/api/v1/namespaces/shop/configmaps").await,
            200
        );
    }
    let seen = wait_for(&got, 18).await;
    assert_eq!(seen.iter().next_back().copied(), Some(18));
    let seqs = seqs(&got);
    // In order within each delivery, and the cursor means a restart does not start over.
    let repeats = seqs.len() - seen.len();
    assert!(
        repeats <= 5,
        "more than one batch was delivered twice: {seqs:?}"
    );
    gw.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
