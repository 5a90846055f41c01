//! Approval notifications: a new approval request reaches a JSON webhook and a Slack-style
//! webhook, and a failed delivery is retried.

mod common;

use std::{path::Path, time::Duration};

use common::{send, start_sim, webhook};

const TOKEN: &str = "notify-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_approval_requests_are_announced() {
    let sim = start_sim().await;
    let dir = std::env::temp_dir().join(format!("airlock-notify-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sim.kubeconfig"), sim.admin_kubeconfig()).unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "agent_groups: [ai-agents]\ndefault: allow\npresets:\n  - name: ai-agent-baseline\n    params:\n      approvers: [approvers]\n      hold: 1s\n",
    )
    .unwrap();
    // Each webhook refuses its first delivery, then accepts.
    let (json_url, json_got) = webhook(1).await;
    let (slack_url, slack_got) = webhook(1).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\npolicy: {d}/policy.yaml\nclusters: [{{name: sim, kubeconfig: {d}/sim.kubeconfig}}]\nauthn: {{static_tokens: [{{sha256: {h}, user: agent@test, groups: [ai-agents]}}]}}\napprovals:\n  link_base: https://airlock.example.com/\n  notify:\n    - {{name: siem, url: \"{json_url}\"}}\n    - {{name: chat, format: slack, url: \"{slack_url}\"}}\n",
        d = dir.display(),
        h = authn::hash_token(TOKEN)
    );
    let raw: gateway::RawConfig = serde_yaml::from_str(&yaml).unwrap();
    let cfg = gateway::Config::from_raw(raw, Path::new("/")).unwrap();
    let gw = gateway::start(&cfg).await.unwrap();

    // Deleting a namespace needs approval: held for a second, then 403 with the id.
    assert_eq!(
        send(&gw, TOKEN, "DELETE", "/api/v1/namespaces/shop").await,
        403
    );

    let mut waited = 0;
    loop {
        let (j, s) = (
            json_got.lock().unwrap().accepted.len(),
            slack_got.lock().unwrap().accepted.len(),
        );
        if j == 1 && s == 1 {
            break;
        }
        waited += 1;
        assert!(
            waited < 100,
            "notifications did not arrive ({j} json, {s} slack)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let json = |body: &bytes::Bytes| -> serde_json::Value { serde_json::from_slice(body).unwrap() };
    let (attempts, m) = {
        let j = json_got.lock().unwrap();
        (j.attempts, json(&j.accepted[0].1))
    };
    assert!(attempts >= 2, "the first failed delivery was retried");
    assert_eq!(m["type"], "approval_requested");
    assert_eq!(m["command"], "kubectl delete namespace shop");
    assert_eq!(m["user"], "agent@test");
    let id = m["id"].as_str().unwrap().to_owned();
    assert_eq!(
        m["link"],
        format!("https://airlock.example.com/approvals/{id}").as_str()
    );
    let s = json(&slack_got.lock().unwrap().accepted[0].1);
    let text = s["blocks"][0]["text"]["text"].as_str().unwrap();
    for want in [
        id.as_str(),
        "kubectl delete namespace shop",
        "agent@test",
        "<https://airlock.example.com/approvals/",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(s["text"].as_str().unwrap().contains("Approval needed"));
    gw.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
