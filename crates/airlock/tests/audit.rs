//! The audit log on the whole path: real kubectl through `airlock demo`, then the `airlock
//! audit`, `sessions` and `replay` commands on what was recorded.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use common::{airlock_in, ok, psql, raw_https, stderr, tempdir, Demo};

fn export(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let out = airlock_in(dir, &["audit", "export", "--format", "jsonl"]);
    ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn records_of(all: &[serde_json::Value], id: &str) -> Vec<serde_json::Value> {
    all.iter().filter(|r| r["id"] == id).cloned().collect()
}

/// Everything the audit log keeps, as bytes, including SQLite's write-ahead file.
fn raw_database(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["audit.db", "audit.db-wal"] {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            all.extend(b);
        }
    }
    all
}

#[test]
fn kubectl_calls_are_recorded_masked_and_verify() {
    let demo = Demo::start();
    let v = "1.33";
    ok(&demo.kubectl(v, &["get", "pods", "-n", "shop"]));
    // A credential written through Airlock: upstream gets the value, the log only its shape.
    // (Secret writes need approval under the demo's policy; a ConfigMap holding a database
    // URL goes through the same request-body masking.)
    let secret_value = "Sup3r-S3cret-Value-4-Audit";
    // kubectl 1.30 sends JSON; 1.32+ sends protobuf, which the log keeps as size and digest only.
    ok(&demo.kubectl(
        "1.30",
        &[
            "create",
            "configmap",
            "audit-probe",
            "-n",
            "shop",
            &format!("--from-literal=DATABASE_URL=postgres://app:{secret_value}@db:5432/app"),
        ],
    ));
    let direct =
        ok(&demo.kubectl_direct(v, &["get", "cm", "audit-probe", "-n", "shop", "-o", "yaml"]));
    assert!(
        direct.contains(secret_value),
        "upstream must get the real value"
    );
    ok(&demo.kubectl(
        v,
        &["get", "secret", "web-token", "-n", "shop", "-o", "yaml"],
    ));
    // Denied by the baseline policy.
    let denied = demo.kubectl(v, &["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics"]);
    assert!(!denied.status.success());

    let all = export(&demo.dir);
    let requests: Vec<_> = all.iter().filter(|r| r["kind"] == "request").collect();
    let outcomes: Vec<_> = all.iter().filter(|r| r["kind"] == "outcome").collect();
    assert!(requests.len() >= 4, "{}", requests.len());
    // Every request that was answered has its outcome.
    for r in &requests {
        let id = r["id"].as_str().unwrap();
        assert!(outcomes.iter().any(|o| o["id"] == id), "no outcome for {r}");
        assert_eq!(r["identity"]["user"], "agent@demo");
        assert!(r["identity"]["source_addr"].as_str().is_some());
        assert!(r["command"].as_str().is_some());
        assert!(r["kubectl_session"].as_str().is_some(), "{r}");
    }

    // The create: masked request body, status 201, kubectl's own command header.
    let create = requests
        .iter()
        .find(|r| r["verb"] == "create" && r["resource"] == "configmaps")
        .expect("create configmap recorded");
    let body = create["request_body"]["data"].as_str().unwrap();
    assert!(body.contains("DATABASE_URL"), "{body}");
    assert!(!body.contains(secret_value), "{body}");
    assert!(create["kubectl_command"]
        .as_str()
        .unwrap()
        .contains("kubectl create configmap"));
    let create_out = records_of(&all, create["id"].as_str().unwrap());
    assert!(create_out
        .iter()
        .any(|r| r["kind"] == "outcome" && r["outcome"]["status"] == 201));

    // The denial names the rule; its outcome is the 403.
    let deny = requests
        .iter()
        .find(|r| r["decision"]["action"] == "deny")
        .expect("denial recorded");
    assert!(!deny["decision"]["rules"].as_array().unwrap().is_empty());
    assert!(records_of(&all, deny["id"].as_str().unwrap())
        .iter()
        .any(|r| r["outcome"]["status"] == 403));

    // The response body of `get secret` is kept, masked.
    let get_secret = requests
        .iter()
        .find(|r| r["verb"] == "get" && r["resource"] == "secrets")
        .unwrap();
    let got = records_of(&all, get_secret["id"].as_str().unwrap());
    let resp = got
        .iter()
        .find_map(|r| r["response_body"]["data"].as_str())
        .expect("response body kept");
    assert!(
        resp.contains("airlock:masked") || resp.contains("YWlybG9jazptYXNrZWQ"),
        "{resp}"
    );

    // No raw secret anywhere in the database files.
    let raw = raw_database(&demo.dir);
    for needle in [
        secret_value.as_bytes(),
        // The seeded Secret's value, as stored by the simulated cluster (base64).
        b"sk_live_51HxAirlockTestKey".as_slice(),
    ] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "{} found in the audit database",
            String::from_utf8_lossy(needle)
        );
    }

    // The chain verifies, live.
    let out = demo.airlock(&["audit", "verify"]);
    assert!(out.status.success(), "{}{}", ok_or(&out), stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: the audit log verifies"));

    // k8s format: audit.k8s.io/v1 Events with Airlock's fields as annotations.
    let k8s = ok(&demo.airlock(&["audit", "export", "--format", "k8s"]));
    let events: Vec<serde_json::Value> = k8s
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ev = events
        .iter()
        .find(|e| e["auditID"] == create["id"])
        .expect("event for the create");
    assert_eq!(ev["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(ev["kind"], "Event");
    assert_eq!(ev["stage"], "ResponseComplete");
    assert_eq!(ev["verb"], "create");
    assert_eq!(ev["user"]["username"], "agent@demo");
    assert_eq!(ev["objectRef"]["resource"], "configmaps");
    assert_eq!(ev["responseStatus"]["code"], 201);
    assert_eq!(ev["annotations"]["airlock.dev/decision"], "allow");

    // Sessions and the replay timeline.
    let sessions = ok(&demo.airlock(&["sessions", "list"]));
    assert!(sessions.contains("agent@demo"), "{sessions}");
    let session_id = sessions
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let timeline = ok(&demo.airlock(&["replay", &session_id, "--no-play"]));
    assert!(timeline.contains("kubectl create configmap"), "{timeline}");
    assert!(timeline.contains("deny"), "{timeline}");
    // A kubectl invocation (Kubectl-Session) is a session too.
    let ks = create["kubectl_session"].as_str().unwrap();
    let one = ok(&demo.airlock(&["replay", ks, "--no-play"]));
    assert_eq!(one.lines().count(), 2, "{one}");

    // The writer's counters and the append latency are on /metrics.
    let metrics = demo.metrics();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    let records = value("airlock_audit_records_total ");
    let transactions = value("airlock_audit_transactions_total ");
    assert!(
        records >= 6.0 && transactions >= 1.0 && transactions <= records,
        "{metrics}"
    );
    assert_eq!(value("airlock_audit_failed_batches_total "), 0.0);
    assert!(value("airlock_audit_append_seconds_count{kind=\"request\"} ") >= 3.0);
    assert!(value("airlock_audit_append_seconds_count{kind=\"outcome\"} ") >= 3.0);
}

fn ok_or(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tampered copy of the demo's database is caught and the bad record is named.
#[test]
fn tampering_with_the_demo_database_is_located() {
    let demo = Demo::start();
    for _ in 0..3 {
        ok(&demo.kubectl("1.33", &["get", "ns"]));
    }
    let dir = demo.kill();
    let copy = tempdir("tamper");
    for f in [
        "audit.db",
        "audit.db-wal",
        "audit.db-shm",
        "audit.key",
        "audit.key.pub",
    ] {
        let _ = std::fs::copy(dir.join(f), copy.join(f));
    }
    let verify = airlock_in(&copy, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", ok_or(&verify));
    let sql = "UPDATE audit_records SET payload = replace(payload, 'agent@demo', 'someone@else') WHERE seq = 2;";
    let st = std::process::Command::new("sqlite3")
        .arg(copy.join("audit.db"))
        .arg(sql)
        .status()
        .expect("sqlite3");
    assert!(st.success());
    let verify = airlock_in(&copy, &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(2), "{}", ok_or(&verify));
    let text = ok_or(&verify);
    assert!(
        text.contains("FAILED: first problem at replica \"demo\" seq 2"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(copy);
}

/// Deleting the log's tail together with its checkpoints leaves a log that verifies on its
/// own; the checkpoints the gateway logged (its real log, at the tests' quiet `warn` level)
/// expose it.
#[test]
fn a_deleted_tail_is_caught_by_checkpoints_kept_elsewhere() {
    let logs = tempdir("gateway-log");
    let log = logs.join("demo.log");
    let demo = Demo::start_with(common::DemoOptions {
        log_file: Some(log.clone()),
        ..Default::default()
    });
    for _ in 0..4 {
        ok(&demo.kubectl("1.33", &["get", "ns"]));
    }
    // A clean shutdown seals the chain: the last record is under a checkpoint.
    let dir = demo.terminate();
    let sqlite = |sql: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(dir.join("audit.db"))
            .arg(sql)
            .output()
            .expect("sqlite3");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let kept = log.to_str().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("audit checkpoint"), "{logged}");
    let verify = airlock_in(&dir, &["audit", "verify", "--checkpoints", kept]);
    assert!(verify.status.success(), "{}", ok_or(&verify));
    assert!(ok_or(&verify).contains("external checkpoint(s) matched"));

    // A copy outside the database (an export, or what a sink delivered) verifies offline
    // against the same checkpoints; an edited line is located.
    let export = dir.join("export.jsonl");
    let out = airlock_in(&dir, &["audit", "export", "-o", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let copy = export.to_str().unwrap();
    let key = dir.join("audit.key.pub");
    let key = key.to_str().unwrap();
    let offline = |file: &str| {
        airlock_in(
            std::path::Path::new("/nonexistent"),
            &[
                "audit",
                "verify-export",
                file,
                "--key",
                key,
                "--checkpoints",
                kept,
            ],
        )
    };
    let v = offline(copy);
    assert!(v.status.success(), "{}{}", ok_or(&v), stderr(&v));
    let text = std::fs::read_to_string(&export).unwrap();
    let second = text.lines().nth(1).unwrap();
    let edited = text.replacen(
        second,
        &second.replacen("\"cluster\":\"demo\"", "\"cluster\":\"prod\"", 1),
        1,
    );
    assert_ne!(edited, text);
    let tampered = dir.join("tampered.jsonl");
    std::fs::write(&tampered, edited).unwrap();
    let v = offline(tampered.to_str().unwrap());
    assert_eq!(v.status.code(), Some(2), "{}", ok_or(&v));
    assert!(
        ok_or(&v).contains("seq 2") && ok_or(&v).contains("hash mismatch"),
        "{}",
        ok_or(&v)
    );

    sqlite("DELETE FROM audit_records WHERE seq > 2; DELETE FROM audit_checkpoints WHERE seq > 2;");
    // On its own, the shortened log is consistent: this is the gap the copy closes.
    let alone = airlock_in(&dir, &["audit", "verify"]);
    assert!(alone.status.success(), "{}", ok_or(&alone));
    let verify = airlock_in(&dir, &["audit", "verify", "--checkpoints", kept]);
    assert_eq!(verify.status.code(), Some(2), "{}", ok_or(&verify));
    let text = ok_or(&verify);
    assert!(
        text.contains("but the log ends at 2: records 3..=") && text.contains("were deleted"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(logs);
}

/// kill -9 during a stream of requests: every response a client received completely has a
/// request and an outcome record, and the chain verifies after a restart.
#[test]
fn crash_under_load_loses_no_answered_request() {
    let demo = Demo::start();
    let server = demo.server.clone();
    let ca = demo.ca_pem();
    let token = demo.agent_token.clone();
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..4 {
        let (server, ca, token, answered, stop) = (
            server.clone(),
            ca.clone(),
            token.clone(),
            answered.clone(),
            stop.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let path = if (t + i) % 2 == 0 {
                    "/api/v1/namespaces/shop/pods"
                } else {
                    "/api/v1/namespaces/shop/configmaps/web-config"
                };
                let req = format!(
                    "GET {path} HTTP/1.1\r\nHost: airlock\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
                );
                let res = std::panic::catch_unwind(|| raw_https(&server, &ca, req.as_bytes()));
                let Ok(res) = res else { break };
                // Complete only: a 200 with a whole chunked body (the last chunk arrived).
                if res.status == 200 && res.complete {
                    if let Some(id) = res.header("audit-id") {
                        answered.lock().unwrap().push(id);
                    }
                }
            }
        }));
    }
    // kubectl adds its own load.
    let kube = {
        let stop = stop.clone();
        let kc = demo.agent_kubeconfig.clone();
        let home = demo.dir.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::process::Command::new(common::kubectl_bin("1.33"))
                    .args(["get", "pods", "-A"])
                    .env("KUBECONFIG", &kc)
                    .env("HOME", &home)
                    .output();
            }
        })
    };
    std::thread::sleep(Duration::from_secs(4));
    let dir = demo.kill();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = kube.join();
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() > 10, "only {} answered", answered.len());

    // Restart on the same state: the chain resumes.
    let demo = Demo::start_in(dir, &[]);
    ok(&demo.kubectl("1.33", &["get", "ns"]));
    let all = export(&demo.dir);
    for id in &answered {
        let kinds: Vec<_> = records_of(&all, id)
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            kinds.contains(&"request".to_owned()) && kinds.contains(&"outcome".to_owned()),
            "request {id} was answered but its records are {kinds:?}"
        );
    }
    let verify = demo.airlock(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", ok_or(&verify));
}

/// With the audit log on PostgreSQL made read-only, calls get a 503 and nothing reaches the
/// cluster; once it is writable again, calls pass.
#[test]
fn store_failure_refuses_and_forwards_nothing() {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let role = format!("airlock_e2e_{tag}");
    let schema = role.clone();
    psql(&format!(
        "CREATE ROLE {role} LOGIN; CREATE SCHEMA {schema} AUTHORIZATION {role};"
    ));
    let url = format!("postgres://{role}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}");
    let demo = Demo::start_in(tempdir("pgfail"), &["--audit-store", &url]);
    ok(&demo.kubectl("1.33", &["get", "pods", "-n", "shop"]));

    // The store goes read-only: new sessions are read-only, and the open ones are cut.
    psql(&format!(
        "ALTER ROLE {role} SET default_transaction_read_only = on; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';"
    ));
    demo.clear_received();
    let out = demo.kubectl("1.33", &["get", "configmap", "web-config", "-n", "shop"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("audit log"), "{err}");
    let res = demo.raw_get("/api/v1/namespaces/shop/pods", "");
    assert_eq!(res.status, 503, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["kind"], "Status");
    let seen = demo.received();
    assert!(
        seen.iter().all(|r| !r["path"]
            .as_str()
            .unwrap_or("")
            .contains("/namespaces/shop")),
        "forwarded while the audit log was down: {seen:?}"
    );

    // Writable again: calls pass (the writer reconnects).
    psql(&format!(
        "ALTER ROLE {role} RESET default_transaction_read_only; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}';"
    ));
    let mut passed = false;
    for _ in 0..20 {
        if demo
            .kubectl("1.33", &["get", "pods", "-n", "shop"])
            .status
            .success()
        {
            passed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(demo);
    psql(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP OWNED BY {role}; DROP ROLE {role};"
    ));
    assert!(
        passed,
        "calls did not pass once the store was writable again"
    );
}

/// `airlock policy test --from-audit`: recorded calls replayed through a stricter candidate
/// policy show exactly the calls it would change.
#[test]
fn policy_test_replays_the_audit_log() {
    let demo = Demo::start();
    ok(&demo.kubectl("1.33", &["get", "configmaps", "-n", "shop"]));
    ok(&demo.kubectl("1.33", &["get", "pods", "-n", "shop"]));
    let candidate = demo.dir.join("candidate.yaml");
    let current = std::fs::read_to_string(demo.dir.join("policy.yaml")).unwrap();
    std::fs::write(
        &candidate,
        format!(
            "{current}rules:\n  - name: no-configmap-reads\n    match:\n      resources: [configmaps]\n      verbs: [get, list, watch]\n    action: deny\n    message: configmaps are off limits\n"
        ),
    )
    .unwrap();
    let out = demo.airlock(&[
        "policy",
        "test",
        "--policy",
        candidate.to_str().unwrap(),
        "--from-audit",
        "--user",
        "agent@demo",
    ]);
    let text = ok(&out);
    let changed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("no-configmap-reads"))
        .collect();
    assert_eq!(changed.len(), 1, "{text}");
    assert!(
        changed[0].contains("allow") && changed[0].contains("deny"),
        "{text}"
    );
    assert!(
        changed[0].contains("kubectl get configmaps -n shop"),
        "{text}"
    );
    assert!(text.contains("allow -> deny: 1"), "{text}");
    // --fail-on-change makes it a CI gate.
    let gate = demo.airlock(&[
        "policy",
        "test",
        "--policy",
        candidate.to_str().unwrap(),
        "--from-audit",
        "--fail-on-change",
    ]);
    assert_eq!(gate.status.code(), Some(1));
}

/// exec sessions over WebSocket (kubectl 1.33) and SPDY (kubectl 1.27) are recorded in the
/// audit log: stdin and stdout replay byte for byte, and the exported asciicast plays with
/// Debian's asciinema.
#[test]
fn exec_sessions_are_recorded_and_replay_byte_exact() {
    let demo = Demo::start();
    let input = "first line\nsecond line with ünïcode\n".repeat(200);
    for v in ["1.33", "1.27"] {
        let out = demo.kubectl_with(
            v,
            &demo.agent_kubeconfig,
            &[
                "exec",
                "-i",
                "-n",
                "shop",
                "web-6b7f9c5d4-x2k9p",
                "-c",
                "app",
                "--",
                "cat",
            ],
            &[],
            Some(input.as_bytes()),
        );
        assert!(out.status.success(), "{v}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), input, "{v}");
    }
    let all = export(&demo.dir);
    let execs: Vec<_> = all
        .iter()
        .filter(|r| r["kind"] == "request" && r["subresource"] == "exec")
        .collect();
    assert_eq!(execs.len(), 2, "one record per exec (no fallback here)");
    for r in execs {
        let id = r["id"].as_str().unwrap();
        let events = records_of(&all, id)
            .iter()
            .filter(|x| x["kind"] == "stream_event")
            .count();
        assert!(events >= 1, "no stream events for {id}");
        let cast = demo.dir.join(format!("{id}.cast"));
        let out = demo.airlock(&[
            "replay",
            id,
            "--export",
            "cast",
            "-o",
            cast.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = std::fs::read_to_string(&cast).unwrap();
        let mut lines = text.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        let (mut o, mut i) = (String::new(), String::new());
        for l in lines {
            let ev: serde_json::Value = serde_json::from_str(l).unwrap();
            match ev[1].as_str().unwrap() {
                "o" => o.push_str(ev[2].as_str().unwrap()),
                "i" => i.push_str(ev[2].as_str().unwrap()),
                _ => {}
            }
        }
        assert_eq!(o, input, "{id}: recorded output differs");
        assert_eq!(i, input, "{id}: recorded input differs");
        // Debian's asciinema plays the file (it wants a terminal: `script` provides one, which
        // turns "\n" into "\r\n").
        let played = std::process::Command::new("script")
            .args([
                "-qec",
                &format!("asciinema play -s 1000 {}", cast.display()),
                "/dev/null",
            ])
            .output()
            .expect("script and asciinema (apt-get install asciinema)");
        assert!(
            played.status.success(),
            "{}",
            String::from_utf8_lossy(&played.stderr)
        );
        let shown = String::from_utf8_lossy(&played.stdout).replace("\r\n", "\n");
        assert!(shown.contains(&input), "asciinema played: {shown:?}");
        // The timeline names the exec command.
        let timeline = ok(&demo.airlock(&["replay", id, "--no-play"]));
        assert!(timeline.contains("kubectl exec"), "{timeline}");
        assert!(timeline.contains("stream event"), "{timeline}");
    }
}

/// `--record-port-forward` (`audit.port_forward_contents`): what flows through kubectl
/// port-forward is recorded, masked, while the forwarded bytes stay untouched. Over SPDY
/// tunnelled in WebSocket (1.33), plain SPDY (1.33 forced, and 1.27). Without the switch only
/// connections and byte counts are kept.
#[test]
fn port_forward_contents_are_recorded_masked_when_asked() {
    let token = format!("ghp_{}", "Zq7".repeat(12));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: web\r\nAuthorization: Bearer {token}\r\n\r\n");
    let clients: &[(&str, &[(&str, &str)])] = &[
        ("1.33", &[]),
        ("1.33", &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]),
        ("1.27", &[]),
    ];
    let demo = Demo::start_in(tempdir("pf-record"), &["--record-port-forward"]);
    for (v, env) in clients {
        let echoed = common::port_forward_round_trip(&demo, v, env, request.as_bytes());
        assert_eq!(
            echoed,
            request.as_bytes(),
            "{v} {env:?}: forwarded bytes changed"
        );
    }
    let pf_ids = wait_for_port_forward_records(&demo.dir, clients.len());
    for id in &pf_ids {
        let shown = ok(&demo.airlock(&["replay", id]));
        assert!(shown.contains("open (data)"), "{id}: {shown}");
        assert!(
            shown.contains("-> pod") && shown.contains("<- pod"),
            "{id}: {shown}"
        );
        assert!(shown.contains("GET /health HTTP/1.1"), "{id}: {shown}");
        assert!(shown.contains("airlock:masked:"), "{id}: {shown}");
        assert!(!shown.contains(&token), "{id}: raw token in the recording");
        assert!(shown.contains("closed ("), "{id}: {shown}");
    }
    let raw = raw_database(&demo.dir);
    assert!(
        !raw.windows(token.len()).any(|w| w == token.as_bytes()),
        "raw token in the database files"
    );
    ok(&demo.airlock(&["audit", "verify"]));

    // Off by default: connections and byte counts only.
    let plain = Demo::start_in(tempdir("pf-plain"), &[]);
    let echoed = common::port_forward_round_trip(&plain, "1.33", &[], request.as_bytes());
    assert_eq!(echoed, request.as_bytes());
    let ids = wait_for_port_forward_records(&plain.dir, 1);
    let all = export(&plain.dir);
    let events: Vec<String> = records_of(&all, &ids[0])
        .iter()
        .flat_map(|r| r["extra"]["events"].as_array().cloned().unwrap_or_default())
        .map(|e| e["event"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        events.iter().any(|e| e == "portforward_close"),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| e == "portforward_data"),
        "{events:?}"
    );
}

/// Waits until `n` port-forward requests have their `portforward_close` recorded; returns
/// their ids.
fn wait_for_port_forward_records(dir: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = export(dir);
        let ids: Vec<String> = all
            .iter()
            .filter(|r| r["kind"] == "request" && r["subresource"] == "portforward")
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        let closed = ids
            .iter()
            .filter(|id| {
                records_of(&all, id).iter().any(|r| {
                    r["extra"]["events"]
                        .as_array()
                        .is_some_and(|evs| evs.iter().any(|e| e["event"] == "portforward_close"))
                })
            })
            .count();
        if ids.len() >= n && closed >= n {
            return ids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{closed} of {n} port-forward recordings complete ({} requests)",
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
