//! Two gateway replicas sharing one PostgreSQL database, in front of one cluster: a call held
//! on one replica is approved through the other and then goes through, and both replicas'
//! audit chains verify in the shared store.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{kubectl_bin, ok, psql, spawn_until, stderr, tempdir, wait_with_timeout, Killed};

const AGENT_TOKEN: &str = "replicas-agent-token";
const APPROVER_TOKEN: &str = "replicas-approver-token";

struct Schema(String);
impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE;", self.0));
    }
}

struct Replica {
    _process: Killed,
    server: String,
    state_dir: PathBuf,
    kubeconfig: PathBuf,
}

fn replica(dir: &Path, name: &str, sim_kubeconfig: &Path, store: &str) -> Replica {
    let state_dir = dir.join(name);
    std::fs::create_dir_all(&state_dir).unwrap();
    let policy = dir.join("policy.yaml");
    let config = state_dir.join("airlock.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nstate_dir: {d}\n\
             clusters: [{{name: sim, kubeconfig: {k}}}]\n\
             authn:\n  static_tokens:\n\
             \x20   - {{sha256: {a}, user: agent@replicas, groups: [ai-agents]}}\n\
             \x20   - {{sha256: {p}, user: approver@replicas, groups: [approvers]}}\n\
             policy: {policy}\n\
             audit: {{store: \"{store}\", replica_id: {name}}}\n\
             log: {{level: warn}}\n",
            d = state_dir.display(),
            k = sim_kubeconfig.display(),
            a = authn::hash_token(AGENT_TOKEN),
            p = authn::hash_token(APPROVER_TOKEN),
            policy = policy.display(),
        ),
    )
    .unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_airlock"));
    serve
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn,audit_checkpoint=off");
    let (process, line) = spawn_until(serve, |l| l.contains("ready"));
    let server = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap()
        .to_owned();
    let kubeconfig = state_dir.join("agent.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: airlock\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
             users:\n- name: agent\n  user:\n    token: {AGENT_TOKEN}\n\
             contexts:\n- name: airlock\n  context: {{cluster: airlock, user: agent}}\ncurrent-context: airlock\n",
            ca = state_dir.join("ca.crt").display(),
        ),
    )
    .unwrap();
    std::fs::write(state_dir.join("approver.token"), APPROVER_TOKEN).unwrap();
    Replica {
        _process: Killed(process),
        server,
        state_dir,
        kubeconfig,
    }
}

/// `airlock approvals ARGS` as the approver, against one replica.
fn approvals(r: &Replica, args: &[&str]) -> String {
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("approvals")
        .args(args)
        .arg("--server")
        .arg(&r.server)
        .arg("--token-file")
        .arg(r.state_dir.join("approver.token"))
        .env_remove("AIRLOCK_SERVER")
        .env_remove("AIRLOCK_TOKEN_FILE")
        .env_remove("AIRLOCK_CA_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airlock approvals");
    ok(&wait_with_timeout(child, Duration::from_secs(30)))
}

#[test]
fn a_call_held_on_one_replica_is_approved_through_another() {
    let dir = tempdir("replicas");
    let schema = Schema(format!(
        "airlock_replicas_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    psql(&format!("CREATE SCHEMA {};", schema.0));
    let store = format!(
        "postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{}",
        schema.0
    );
    std::fs::write(
        dir.join("policy.yaml"),
        "agent_groups: [ai-agents]\ndefault: allow\npresets:\n  - name: ai-agent-baseline\n    params:\n      approvers: [approvers]\n",
    )
    .unwrap();

    let sim_kubeconfig = dir.join("sim.kubeconfig");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_airlock"));
    sim.args(["sim", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&sim_kubeconfig)
        .env("RUST_LOG", "warn");
    let (sim, _) = spawn_until(sim, |l| l.contains("ready"));
    let _sim = Killed(sim);
    let a = replica(&dir, "replica-a", &sim_kubeconfig, &store);
    let b = replica(&dir, "replica-b", &sim_kubeconfig, &store);

    // The agent's call is held on replica a.
    let kubectl = Command::new(kubectl_bin("1.33"))
        .args(["delete", "namespace", "shop", "--wait=false"])
        .env("KUBECONFIG", &a.kubeconfig)
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");

    // The approver works through replica b, which sees the pending approval.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let listed: serde_json::Value =
            serde_json::from_str(&approvals(&b, &["list", "--state", "pending", "--json"]))
                .unwrap();
        if let Some(id) = listed["items"]
            .as_array()
            .and_then(|items| items.first())
            .and_then(|a| a["id"].as_str())
        {
            break id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no pending approval on replica b"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let shown = approvals(&b, &["show", &id]);
    assert!(shown.contains("kubectl delete namespace shop"), "{shown}");
    approvals(&b, &["approve", &id]);

    // Replica a sees the decision and forwards the held call.
    let out = wait_with_timeout(kubectl, Duration::from_secs(30));
    let printed = ok(&out);
    assert!(printed.contains("namespace \"shop\" deleted"), "{printed}");
    let direct = Command::new(kubectl_bin("1.33"))
        .args(["get", "namespace", "shop", "-o", "jsonpath={.status.phase}"])
        .env("KUBECONFIG", &sim_kubeconfig)
        .output()
        .unwrap();
    let gone = !direct.status.success() && stderr(&direct).contains("NotFound");
    let terminating = String::from_utf8_lossy(&direct.stdout) == "Terminating";
    assert!(gone || terminating, "the namespace is still there");

    // The grant was single-use on every replica: the same call through b is held again, on
    // a new approval that replica a lists.
    let again = Command::new(kubectl_bin("1.33"))
        .args([
            "delete",
            "namespace",
            "shop",
            "--wait=false",
            "--request-timeout=2s",
        ])
        .env("KUBECONFIG", &b.kubeconfig)
        .env("HOME", &dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let pending: serde_json::Value =
        serde_json::from_str(&approvals(&a, &["list", "--state", "pending", "--json"])).unwrap();
    let pending = pending["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_ne!(pending[0]["id"].as_str(), Some(id.as_str()));

    // Both replicas' chains are in the shared store, and they verify.
    let verify = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify", "--store", &store, "--key"])
        .arg(a.state_dir.join("audit.key.pub"))
        .arg("--key")
        .arg(b.state_dir.join("audit.key.pub"))
        .output()
        .unwrap();
    let report = ok(&verify);
    assert!(
        report.contains("replica-a") && report.contains("replica-b"),
        "{report}"
    );
}
