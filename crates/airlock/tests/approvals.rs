//! Issue 4, approval of single calls, end to end: the real `airlock demo`, real kubectl holding
//! on a call, and a second process deciding with `airlock approvals`.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{ok, stderr, wait_with_timeout, Demo, DemoOptions};

const EXEC: &[&str] = &["exec", "-n", "payments", "payments-worker-0", "--", "env"];

fn held(hold: &str) -> DemoOptions {
    DemoOptions {
        hold: hold.into(),
        ..Default::default()
    }
}

/// Runs `airlock approvals ARGS` against the demo with a token file.
fn cli(demo: &Demo, token_file: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("approvals")
        .args(args)
        .arg("--server")
        .arg(&demo.admin_url)
        .arg("--token-file")
        .arg(token_file)
        .env_remove("AIRLOCK_SERVER")
        .env_remove("AIRLOCK_TOKEN_FILE")
        .env_remove("AIRLOCK_CA_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn airlock approvals");
    wait_with_timeout(child, Duration::from_secs(30))
}

fn approver(demo: &Demo) -> PathBuf {
    demo.dir.join("approver.token")
}

/// kubectl in the background, as the agent (or with another kubeconfig).
fn spawn_kubectl(demo: &Demo, version: &str, kubeconfig: &Path, args: &[&str]) -> Child {
    Command::new(common::kubectl_bin(version))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", &demo.dir)
        .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl")
}

fn list(demo: &Demo, state: &str) -> Vec<serde_json::Value> {
    let out = cli(demo, &approver(demo), &["list", "--state", state, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Every audit record of the demo, as `airlock audit export` writes them.
fn audit_records(demo: &Demo) -> Vec<serde_json::Value> {
    ok(&demo.airlock(&["audit", "export"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until a pending approval whose command contains `needle` exists; returns its id.
fn wait_pending(demo: &Demo, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(a) = list(demo, "pending")
            .into_iter()
            .find(|a| a["command"].as_str().unwrap_or("").contains(needle))
        {
            return a["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no pending approval for {needle:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The approval id kubectl printed from the 403 `Status`.
fn printed_id(err: &str) -> String {
    let i = err
        .find("approval id ")
        .unwrap_or_else(|| panic!("no approval id in: {err}"));
    err[i + 12..i + 20].to_owned()
}

fn namespace_gone(demo: &Demo, ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = demo.kubectl_direct("1.33", &["get", "namespace", ns]);
        if !out.status.success() && stderr(&out).contains("NotFound") {
            return;
        }
        assert!(Instant::now() < deadline, "namespace {ns} still exists");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `approvals show` once the dry-run preview is attached (it is made right after the approval).
fn show_with_preview(demo: &Demo, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = ok(&cli(demo, &approver(demo), &["show", id]));
        if shown.contains("contains:")
            || shown.contains("diff")
            || shown.contains("result (dry run")
        {
            return shown;
        }
        assert!(Instant::now() < deadline, "no preview: {shown}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Approve: `kubectl delete namespace` blocks, a second process approves it, kubectl completes
/// and the namespace is gone. The approval shows the command and the requester.
#[test]
fn approve_while_held_forwards_the_original_call() {
    let demo = Demo::start_with(held("40s"));
    ok(&demo.kubectl_direct("1.33", &["create", "namespace", "doomed"]));
    let kubectl = spawn_kubectl(
        &demo,
        "1.33",
        &demo.agent_kubeconfig,
        &["delete", "namespace", "doomed"],
    );
    let id = wait_pending(&demo, "doomed");

    let show = ok(&cli(&demo, &approver(&demo), &["show", &id]));
    for want in [
        "kubectl delete namespace doomed",
        "agent@demo",
        "approve-namespace-delete",
        "pending",
    ] {
        assert!(show.contains(want), "{want}: {show}");
    }
    // The agent may look, but not decide.
    let refused = cli(&demo, &demo.dir.join("agent.token"), &["approve", &id]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("403"), "{}", stderr(&refused));

    let approved = ok(&cli(
        &demo,
        &approver(&demo),
        &["approve", &id, "--reason", "planned cleanup"],
    ));
    assert!(approved.contains("approved"), "{approved}");
    let out = wait_with_timeout(kubectl, Duration::from_secs(30));
    assert!(ok(&out).contains("deleted"), "{}", ok(&out));
    namespace_gone(&demo, "doomed");
    // The single-use grant is spent.
    assert_eq!(list(&demo, "used").len(), 1);

    // The audit log holds the call, who approved it and why, and the call's outcome.
    let records = audit_records(&demo);
    let call = records
        .iter()
        .find(|r| r["kind"] == "request" && r["verb"] == "delete" && r["name"] == "doomed")
        .expect("the held call is recorded");
    assert_eq!(call["decision"]["action"], "approve");
    let same: Vec<_> = records.iter().filter(|r| r["id"] == call["id"]).collect();
    let approved = same
        .iter()
        .find(|r| r["kind"] == "approval" && r["approvals"][0]["decision"] == "approved")
        .expect("the approval is recorded with the call");
    assert_eq!(approved["approvals"][0]["approver"], "approver@demo");
    assert_eq!(approved["approvals"][0]["comment"], "planned cleanup");
    assert_eq!(approved["extra"]["approval_id"], id.as_str());
    assert!(same
        .iter()
        .any(|r| r["kind"] == "outcome" && r["outcome"]["status"] == 200));
    let timeline = ok(&demo.airlock(&["replay", call["id"].as_str().unwrap(), "--no-play"]));
    assert!(timeline.contains("approved by approver@demo"), "{timeline}");
}

/// Deny: kubectl prints the approver's reason.
#[test]
fn deny_prints_the_reason() {
    let demo = Demo::start_with(held("40s"));
    let kubectl = spawn_kubectl(
        &demo,
        "1.30",
        &demo.agent_kubeconfig,
        &["delete", "namespace", "shop"],
    );
    let id = wait_pending(&demo, "shop");
    // The preview counts what the namespace holds.
    let shown = show_with_preview(&demo, &id);
    assert!(
        shown.contains("contains:") && shown.contains("pods"),
        "{shown}"
    );
    ok(&cli(
        &demo,
        &approver(&demo),
        &[
            "deny",
            &id,
            "--reason",
            "shop is in use by the checkout team",
        ],
    ));
    let out = wait_with_timeout(kubectl, Duration::from_secs(30));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("shop is in use by the checkout team") && err.contains("approver@demo"),
        "{err}"
    );
    ok(&demo.kubectl_direct("1.33", &["get", "namespace", "shop"]));
}

/// Timeout: kubectl prints the approval id; once approved the identical retry passes exactly
/// once, and a different body never does. The approval shows the body masked. Self-approval is
/// refused.
#[test]
fn timeout_then_identical_retry_passes_once() {
    let demo = Demo::start_with(held("1s"));
    let create = |value: &str| {
        demo.kubectl(
            "1.30",
            &[
                "create",
                "secret",
                "generic",
                "api-key",
                &format!("--from-literal=key={value}"),
                "-n",
                "shop",
            ],
        )
    };
    let first = create("s3cr3t-value-1");
    assert!(!first.status.success());
    let err = stderr(&first);
    assert!(
        err.contains("approve-secret-writes")
            && err.contains("airlock approvals approve")
            && err.contains("retry the identical command"),
        "{err}"
    );
    let id = printed_id(&err);
    let show = ok(&cli(&demo, &approver(&demo), &["show", &id]));
    assert!(show.contains("api-key"), "{show}");
    assert!(!show.contains("s3cr3t-value-1"), "body not masked: {show}");

    ok(&cli(&demo, &approver(&demo), &["approve", &id]));
    // A different body is not covered by the grant.
    let other = create("s3cr3t-value-2");
    assert!(!other.status.success());
    assert_ne!(printed_id(&stderr(&other)), id);
    // The identical request passes, once.
    ok(&create("s3cr3t-value-1"));
    let again = create("s3cr3t-value-1");
    assert!(!again.status.success());
    let again_err = stderr(&again);
    assert!(
        again_err.contains("approval id") && !again_err.contains("AlreadyExists"),
        "{again_err}"
    );
    assert_ne!(printed_id(&again_err), id);

    // Self-approval: the approver's own held call cannot be approved by the approver.
    let kc = demo.dir.join("approver.kubeconfig");
    ok(&Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["kubeconfig", "--server", &demo.server, "--ca-file"])
        .arg(demo.dir.join("ca.crt"))
        .arg("--token-file")
        .arg(approver(&demo))
        .arg("--output")
        .arg(&kc)
        .output()
        .unwrap());
    let own = demo.kubectl_with("1.30", &kc, &["delete", "namespace", "payments"], &[], None);
    let own_id = printed_id(&stderr(&own));
    let refused = cli(&demo, &approver(&demo), &["approve", &own_id]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("self-approval is refused"),
        "{}",
        stderr(&refused)
    );
    // Its requester sees the approval without the dry-run preview (it would answer guesses:
    // docs/approvals.md), while the agent's approval above still shows its masked body to
    // the approver. The preview is made within moments of the approval.
    std::thread::sleep(Duration::from_secs(2));
    let mine = ok(&cli(&demo, &approver(&demo), &["show", &own_id]));
    assert!(
        mine.contains("payments") && !mine.contains("contains:"),
        "{mine}"
    );
}

/// A 2-of-3 quorum: one approval is not enough, the same approver twice does not count, a
/// second approver completes it.
#[test]
fn two_of_three_quorum() {
    let demo = Demo::start_with(DemoOptions {
        hold: "40s".into(),
        extra_approvers: 2,
        policy: Some(
            "agent_groups: [ai-agents]\ndefault: allow\npresets:\n  - name: ai-agent-baseline\n    params:\n      approvers: [approvers]\n      quorum: 2\n      hold: 40s\n"
                .into(),
        ),
        ..Default::default()
    });
    let kubectl = spawn_kubectl(
        &demo,
        "1.33",
        &demo.agent_kubeconfig,
        &["delete", "namespace", "shop"],
    );
    let id = wait_pending(&demo, "shop");
    let one = ok(&cli(&demo, &approver(&demo), &["approve", &id]));
    assert!(one.contains("1 of 2"), "{one}");
    let twice = cli(&demo, &approver(&demo), &["approve", &id]);
    assert!(
        stderr(&twice).contains("already decided"),
        "{}",
        stderr(&twice)
    );
    let two = ok(&cli(
        &demo,
        &demo.dir.join("approver3.token"),
        &["approve", &id],
    ));
    assert!(two.contains("approved"), "{two}");
    ok(&wait_with_timeout(kubectl, Duration::from_secs(30)));
    namespace_gone(&demo, "shop");
    let shown = ok(&cli(&demo, &approver(&demo), &["show", &id, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["decisions"].as_array().unwrap().len(), 2);
}

/// Exec into a protected namespace waits, then works after approval, over WebSocket (kubectl
/// 1.33) and SPDY (1.27).
#[test]
fn exec_waits_then_works_over_websocket_and_spdy() {
    let demo = Demo::start_with(held("40s"));
    for v in ["1.33", "1.27"] {
        let kubectl = spawn_kubectl(&demo, v, &demo.agent_kubeconfig, EXEC);
        let id = wait_pending(&demo, "payments-worker-0");
        ok(&cli(&demo, &approver(&demo), &["approve", &id]));
        let out = ok(&wait_with_timeout(kubectl, Duration::from_secs(30)));
        assert!(out.contains("PATH="), "{v}: {out}");
    }
}

/// kubectl 1.33 tries WebSocket exec, which is refused at once (not held), and falls back to
/// SPDY, which is held: both attempts are one approval, kubectl waits one hold, not two, and
/// after approval the retry works.
#[test]
fn exec_fallback_is_one_approval() {
    let demo = Demo::start_with(held("4s"));
    let started = std::time::Instant::now();
    let out = demo.kubectl("1.33", EXEC);
    let waited = started.elapsed();
    assert!(!out.status.success());
    // Held once: about 4 s. Held twice (WebSocket, then SPDY) would be 8 s or more.
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
    let id = printed_id(&stderr(&out));
    let pending: Vec<_> = list(&demo, "all")
        .into_iter()
        .filter(|a| a["command"].as_str().unwrap_or("").contains("exec"))
        .collect();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    ok(&cli(&demo, &approver(&demo), &["approve", &id]));
    let out = ok(&demo.kubectl("1.33", EXEC));
    assert!(out.contains("PATH="), "{out}");

    // Preview: scaling to zero is dry-run as the agent and shown as a diff; nothing changes.
    let out = demo.kubectl(
        "1.33",
        &["scale", "deployment", "web", "-n", "shop", "--replicas=0"],
    );
    assert!(!out.status.success());
    let id = printed_id(&stderr(&out));
    let shown = show_with_preview(&demo, &id);
    assert!(
        shown.contains("/spec/replicas") && shown.contains("-> 0"),
        "{shown}"
    );
    let replicas = ok(&demo.kubectl_direct(
        "1.33",
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    ));
    assert_ne!(replicas, "0");
}

/// Restart: a held kubectl gets an error when Airlock goes away; the approval survives and the
/// identical retry passes once approved.
#[test]
fn pending_approval_survives_a_restart() {
    let opts = held("30s");
    let mut demo = Demo::start_with(opts.clone());
    let kubectl = spawn_kubectl(
        &demo,
        "1.33",
        &demo.agent_kubeconfig,
        &["delete", "namespace", "shop"],
    );
    let id = wait_pending(&demo, "shop");
    demo.restart(&opts);
    let out = wait_with_timeout(kubectl, Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "the held call cannot survive a restart"
    );

    let pending = list(&demo, "pending");
    assert!(
        pending.iter().any(|a| a["id"] == id.as_str()),
        "{pending:#?}"
    );
    ok(&cli(&demo, &approver(&demo), &["approve", &id]));
    ok(&demo.kubectl("1.33", &["delete", "namespace", "shop"]));
    namespace_gone(&demo, "shop");
}

/// A held call on a connect subresource gets no dry-run preview: exec has no dry run, so the
/// "preview" would be the call itself, sent before anyone approved it. (kubectl always
/// upgrades; a plain POST takes the path that makes previews.)
#[test]
fn held_exec_is_not_previewed_upstream() {
    let demo = Demo::start_with(held("2s"));
    demo.clear_received();
    let req = format!(
        "POST /api/v1/namespaces/payments/pods/payments-worker-0/exec?command=env&stdout=true HTTP/1.1\r\n\
         Host: airlock\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        demo.agent_token
    );
    let resp = common::raw_https(&demo.server, &demo.ca_pem(), req.as_bytes());
    assert_eq!(resp.status, 403, "{}", String::from_utf8_lossy(&resp.body));
    assert!(String::from_utf8_lossy(&resp.body).contains("approval id"));
    let reached: Vec<_> = demo
        .received()
        .into_iter()
        .filter(|r| r["path"].as_str().unwrap_or("").ends_with("/exec"))
        .collect();
    assert!(reached.is_empty(), "{reached:?}");
}

/// A client that gives up while its call is held still leaves a complete record: the outcome
/// says it went away (found by a black-box probe: only the request record was written).
#[test]
fn a_client_leaving_during_the_hold_gets_an_outcome_record() {
    let demo = Demo::start_with(held("40s"));
    // Killed, not timed out: kubectl's `--request-timeout` is sent along, and a held call is
    // answered before it (`a_held_call_answers_before_the_clients_timeout`).
    let mut client = Command::new(common::kubectl_bin("1.33"))
        .arg("--kubeconfig")
        .arg(&demo.agent_kubeconfig)
        .args(["delete", "namespace", "payments"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    client.kill().unwrap();
    let _ = client.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let records = audit_records(&demo);
        let call = records
            .iter()
            .find(|r| r["kind"] == "request" && r["verb"] == "delete" && r["name"] == "payments")
            .expect("the held call is recorded");
        let outcome = records
            .iter()
            .find(|r| r["id"] == call["id"] && r["kind"] == "outcome");
        if let Some(o) = outcome {
            assert_eq!(o["outcome"]["status"], 499, "{o}");
            assert!(
                o["outcome"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("went away"),
                "{o}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no outcome record for the abandoned call"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Nothing was forwarded: the namespace is still there.
    ok(&demo.kubectl_direct("1.33", &["get", "namespace", "payments"]));
}

/// kubectl gives up after `--request-timeout`; a held call is answered before that, so the
/// agent learns the approval's id instead of "context deadline exceeded".
#[test]
fn a_held_call_answers_before_the_clients_timeout() {
    let demo = Demo::start_with(held("40s"));
    for v in ["1.27", "1.33"] {
        let started = Instant::now();
        let out = demo.kubectl(
            v,
            &["delete", "namespace", "payments", "--request-timeout=3s"],
        );
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains("approval id") && err.contains("is pending"),
            "{v}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{v}: {:?}",
            started.elapsed()
        );
    }
}
