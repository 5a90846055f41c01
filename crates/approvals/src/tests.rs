use std::sync::Arc;
use std::time::Duration;

use policy::GrantScope;

use super::*;

fn person(user: &str, groups: &[&str]) -> Person {
    Person {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        session_id: None,
        client_id: None,
    }
}

fn agent() -> Person {
    person("agent@demo", &["ai-agents"])
}

fn target(method: &str, path: &str, query: Option<&str>) -> Target {
    Target {
        cluster: "demo".into(),
        method: method.into(),
        path: path.into(),
        query: query.map(Into::into),
        verb: "delete".into(),
        resource: "namespaces".into(),
        name: "shop".into(),
        ..Default::default()
    }
}

fn new_approval(who: &Person, t: Target, body: &[u8], quorum: u32) -> NewApproval {
    NewApproval {
        requester: who.clone(),
        hash: binding_hash(&t, body, who),
        target: t,
        command: "kubectl delete namespace shop".into(),
        intent: None,
        kubectl_command: None,
        kubectl_session: None,
        masked_body: None,
        body_sha256: sha256_hex(body),
        message: "approval required".into(),
        requirements: vec![Requirement {
            rule: "approve-namespace-delete".into(),
            reason: None,
            approvers: vec!["approvers".into()],
            quorum,
        }],
        grant_limit: GrantLimit {
            max_seconds: 3600,
            scopes: vec![GrantScope::Request, GrantScope::Namespace],
        },
    }
}

fn ns_delete() -> Target {
    target("DELETE", "/api/v1/namespaces/shop", None)
}

/// Every test that runs on a store runs on both: SQLite (in memory) and PostgreSQL (a schema
/// of its own in the machine's server, dropped afterwards).
async fn backends() -> Vec<TestStore> {
    vec![
        TestStore {
            approvals: Approvals::in_memory().unwrap(),
            schema: None,
        },
        TestStore::postgres().await,
    ]
}

pub(crate) struct TestStore {
    approvals: Approvals,
    schema: Option<String>,
}

impl TestStore {
    pub(crate) async fn postgres() -> TestStore {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let schema = format!(
            "approvals_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        psql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ));
        let approvals = Approvals::open_postgres(pg_pool(&schema)).await.unwrap();
        TestStore {
            approvals,
            schema: Some(schema),
        }
    }

    /// Another replica on the same database.
    pub(crate) async fn replica(&self) -> Approvals {
        let schema = self.schema.as_deref().expect("a PostgreSQL store");
        Approvals::open_postgres(pg_pool(schema)).await.unwrap()
    }
}

pub(crate) fn pg_pool(schema: &str) -> deadpool_postgres::Pool {
    let url = format!(
        "postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D{schema}&sslmode=disable"
    );
    let options = store::OpenOptions {
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
        ..store::OpenOptions::default()
    };
    store::postgres_pool(&url, &options).unwrap()
}

fn psql(sql: &str) {
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
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE;"));
        }
    }
}

impl std::ops::Deref for TestStore {
    type Target = Approvals;
    fn deref(&self) -> &Approvals {
        &self.approvals
    }
}

fn held(a: Admission) -> (Approval, bool) {
    match a {
        Admission::Held { approval, created } => (approval, created),
        Admission::Granted(a) => panic!("granted {}", a.id),
    }
}

fn approve() -> Action {
    Action::Approve {
        for_: None,
        scope: None,
        reason: None,
    }
}

#[test]
fn binding_hash_covers_request_and_identity() {
    let base = binding_hash(&ns_delete(), b"{}", &agent());
    let mut other_query = ns_delete();
    other_query.query = Some("dryRun=All".into());
    let cases: &[(&str, String, bool)] = &[
        ("same", binding_hash(&ns_delete(), b"{}", &agent()), true),
        (
            "groups order",
            binding_hash(
                &ns_delete(),
                b"{}",
                &person("agent@demo", &["ai-agents", "b"]),
            ),
            false,
        ),
        (
            "other user",
            binding_hash(&ns_delete(), b"{}", &person("x", &["ai-agents"])),
            false,
        ),
        (
            "other body",
            binding_hash(&ns_delete(), b"{ }", &agent()),
            false,
        ),
        (
            "other query",
            binding_hash(&other_query, b"{}", &agent()),
            false,
        ),
        (
            "other method",
            binding_hash(
                &target("POST", "/api/v1/namespaces/shop", None),
                b"{}",
                &agent(),
            ),
            false,
        ),
    ];
    for (name, h, same) in cases {
        assert_eq!(*h == base, *same, "{name}");
    }
}

/// The same bytes as another patch type are another change: a grant for a merge patch does
/// not cover a strategic-merge or JSON patch with the same body.
#[test]
fn binding_hash_covers_the_patch_type() {
    let patch = |ct: &str| Target {
        content_type: Some(ct.into()),
        ..target(
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            None,
        )
    };
    let body = br#"{"spec":{"replicas":0}}"#;
    let merge = binding_hash(&patch("application/merge-patch+json"), body, &agent());
    let strategic = binding_hash(
        &patch("application/strategic-merge-patch+json"),
        body,
        &agent(),
    );
    assert_ne!(merge, strategic);
    assert_eq!(
        merge,
        binding_hash(&patch("application/merge-patch+json"), body, &agent())
    );
}

/// Issue 4, exec fallback: kubectl's WebSocket GET and SPDY POST are one approval.
#[test]
fn exec_over_websocket_and_spdy_binds_the_same() {
    let exec = |method: &str, q: &str| Target {
        cluster: "demo".into(),
        method: method.into(),
        path: "/api/v1/namespaces/payments/pods/p/exec".into(),
        query: Some(q.into()),
        verb: if method == "GET" { "get" } else { "create" }.into(),
        resource: "pods".into(),
        subresource: "exec".into(),
        namespace: "payments".into(),
        name: "p".into(),
        ..Default::default()
    };
    let ws = binding_hash(&exec("GET", "command=env&stdout=true"), b"", &agent());
    let spdy = binding_hash(&exec("POST", "stdout=true&command=env"), b"", &agent());
    assert_eq!(ws, spdy);
    let other = binding_hash(&exec("POST", "command=sh&stdout=true"), b"", &agent());
    assert_ne!(ws, other);
}

#[test]
fn glob_matching() {
    let cases = [
        ("approvers", "approvers", true),
        ("sre-*", "sre-oncall", true),
        ("sre-*", "sre", false),
        ("*", "", true),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
    ];
    for (p, s, want) in cases {
        assert_eq!(
            model::glob_match(p.as_bytes(), s.as_bytes()),
            want,
            "{p} {s}"
        );
    }
}

#[test]
fn ids_are_short_and_typable() {
    for _ in 0..100 {
        let id = new_id();
        assert_eq!(id.len(), 8);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
}

#[tokio::test]
async fn identical_retry_joins_then_uses_the_single_use_grant_once() {
    for s in backends().await {
        let (a, created) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r1")
                .await
                .unwrap(),
        );
        assert!(created);
        let (b, created) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r2")
                .await
                .unwrap(),
        );
        assert!(!created);
        assert_eq!(a.id, b.id);

        let approver = person("approver@demo", &["approvers"]);
        let after = s.decide(&a.id, &approver, approve()).await.unwrap();
        assert_eq!(after.state, State::Approved);

        // A different body is not covered; the identical request is, exactly once.
        let (_, created) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"{}", 1), "r3")
                .await
                .unwrap(),
        );
        assert!(created);
        assert!(matches!(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r4")
                .await
                .unwrap(),
            Admission::Granted(_)
        ));
        let (c, created) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r5")
                .await
                .unwrap(),
        );
        assert!(created);
        assert_ne!(c.id, a.id);
        assert_eq!(s.get(&a.id).await.unwrap().unwrap().state, State::Used);
    }
}

#[tokio::test]
async fn another_identity_never_uses_a_grant() {
    for s in backends().await {
        let (a, _) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
                .await
                .unwrap(),
        );
        let approver = person("approver@demo", &["approvers"]);
        s.decide(
            &a.id,
            &approver,
            Action::Approve {
                for_: Some(Duration::from_secs(600)),
                scope: Some(GrantScope::Namespace),
                reason: None,
            },
        )
        .await
        .unwrap();
        let twin = person("agent@demo", &["ai-agents", "extra"]);
        let other = person("other@demo", &["ai-agents"]);
        for who in [&twin, &other] {
            let (_, created) = held(
                s.admit(new_approval(who, ns_delete(), b"", 1), "r")
                    .await
                    .unwrap(),
            );
            assert!(created, "{}", who.user);
        }
        // The namespace scope covers the same verb on another object, for a while.
        let mut t = ns_delete();
        t.path = "/api/v1/namespaces/shop2".into();
        t.name = "shop2".into();
        assert!(matches!(
            s.admit(new_approval(&agent(), t.clone(), b"", 1), "r")
                .await
                .unwrap(),
            Admission::Granted(_)
        ));
        assert!(matches!(
            s.admit(new_approval(&agent(), t, b"", 1), "r")
                .await
                .unwrap(),
            Admission::Granted(_)
        ));
    }
}

#[tokio::test]
async fn decisions_are_checked() {
    for s in backends().await {
        let (a, _) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 2), "r")
                .await
                .unwrap(),
        );
        let err = |r: Result<Approval, ApprovalsError>| match r {
            Err(ApprovalsError::Decide(e)) => e.http_status(),
            other => panic!("{other:?}"),
        };
        // Self-approval, even from an approver group.
        let selfish = person("agent@demo", &["approvers"]);
        assert_eq!(err(s.decide(&a.id, &selfish, approve()).await), 403);
        assert_eq!(
            err(s.decide(&a.id, &person("x", &["devs"]), approve()).await),
            403
        );
        assert_eq!(
            err(s
                .decide("nope1234", &person("a1", &["approvers"]), approve())
                .await),
            404
        );
        let too_long = Action::Approve {
            for_: Some(Duration::from_secs(7200)),
            scope: None,
            reason: None,
        };
        assert_eq!(
            err(s
                .decide(&a.id, &person("a1", &["approvers"]), too_long)
                .await),
            400
        );
        // Quorum 2: one approval leaves it pending; the same person twice does not count.
        let one = s
            .decide(&a.id, &person("a1", &["approvers"]), approve())
            .await
            .unwrap();
        assert_eq!(one.state, State::Pending);
        assert_eq!(
            err(s
                .decide(&a.id, &person("a1", &["approvers"]), approve())
                .await),
            409
        );
        let two = s
            .decide(&a.id, &person("a2", &["approvers"]), approve())
            .await
            .unwrap();
        assert_eq!(two.state, State::Approved);
        assert_eq!(two.decisions.len(), 2);
        assert_eq!(
            err(s
                .decide(
                    &a.id,
                    &person("a3", &["approvers"]),
                    Action::Deny {
                        reason: "no".into()
                    }
                )
                .await),
            409
        );
    }
}

#[tokio::test]
async fn a_waiting_call_is_woken_by_the_decision() {
    for s in backends().await {
        let s = Arc::new(s);
        let (a, _) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
                .await
                .unwrap(),
        );
        let (s2, id) = (s.clone(), a.id.clone());
        let waiter =
            tokio::spawn(async move { s2.wait(&id, Duration::from_secs(30), "r").await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.decide(
            &a.id,
            &person("approver@demo", &["approvers"]),
            Action::Deny {
                reason: "not today".into(),
            },
        )
        .await
        .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
        {
            WaitOutcome::Denied(a) => {
                assert_eq!(a.denial().unwrap().reason.as_deref(), Some("not today"))
            }
            other => panic!("{other:?}"),
        }
        // Pending at the end of the hold.
        let (b, _) = held(
            s.admit(
                new_approval(
                    &agent(),
                    target("DELETE", "/api/v1/namespaces/x", None),
                    b"",
                    1,
                ),
                "r",
            )
            .await
            .unwrap(),
        );
        assert!(matches!(
            s.wait(&b.id, Duration::from_millis(100), "r")
                .await
                .unwrap(),
            WaitOutcome::Pending(_)
        ));
    }
}

#[tokio::test]
async fn approvals_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let id = {
        let s = Approvals::open(&path).unwrap();
        let (a, _) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
                .await
                .unwrap(),
        );
        a.id
    };
    let s = Approvals::open(&path).unwrap();
    assert_eq!(s.list(Some(State::Pending), 10).await.unwrap()[0].id, id);
    s.decide(&id, &person("approver@demo", &["approvers"]), approve())
        .await
        .unwrap();
    assert!(matches!(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
            .await
            .unwrap(),
        Admission::Granted(_)
    ));
}

#[test]
fn preview_diff_lists_changed_leaves() {
    use serde_json::json;
    let cases = [
        (
            json!({"spec": {"replicas": 1}, "metadata": {"resourceVersion": "1"}}),
            json!({"spec": {"replicas": 3}, "metadata": {"resourceVersion": "2"}}),
            json!([{"op": "replace", "path": "/spec/replicas", "from": 1, "to": 3}]),
        ),
        (
            json!({"data": {"a": "x"}}),
            json!({"data": {"b": "y"}}),
            json!([{"op": "remove", "path": "/data/a", "from": "x"}, {"op": "add", "path": "/data/b", "to": "y"}]),
        ),
        (
            json!({"l": [1, 2]}),
            json!({"l": [1], "status": {"phase": "x"}}),
            json!([{"op": "remove", "path": "/l/1", "from": 2}]),
        ),
        (
            json!({"a/b": 1}),
            json!({"a/b": 2}),
            json!([{"op": "replace", "path": "/a~1b", "from": 1, "to": 2}]),
        ),
    ];
    for (from, to, want) in cases {
        assert_eq!(
            serde_json::Value::Array(json_diff(&from, &to)),
            want,
            "{from} -> {to}"
        );
    }
}

// === Replicas sharing PostgreSQL ===

#[tokio::test]
async fn a_call_held_on_one_replica_is_approved_on_another() {
    let a = Arc::new(TestStore::postgres().await);
    let b = a.replica().await;
    let (held_on_a, _) = held(
        a.admit(new_approval(&agent(), ns_delete(), b"", 1), "r1")
            .await
            .unwrap(),
    );
    // The approver's page is served by replica b: it sees the pending approval.
    let pending = b.list(Some(State::Pending), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, held_on_a.id);

    let (a2, id) = (a.clone(), held_on_a.id.clone());
    let waiter =
        tokio::spawn(async move { a2.wait(&id, Duration::from_secs(30), "r1").await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    b.decide(
        &held_on_a.id,
        &person("approver@demo", &["approvers"]),
        approve(),
    )
    .await
    .unwrap();
    let outcome = waiter.await.unwrap();
    assert!(matches!(outcome, WaitOutcome::Approved(_)), "{outcome:?}");
    // Seen by polling, not at the end of the hold.
    assert!(
        started.elapsed() < SHARED_POLL * 3,
        "{:?}",
        started.elapsed()
    );
    // The grant was single-use: the identical call opens a new approval on one replica and
    // joins it on the other.
    let (again, created) = held(
        a.admit(new_approval(&agent(), ns_delete(), b"", 1), "r2")
            .await
            .unwrap(),
    );
    assert!(created);
    let (joined, created) = held(
        b.admit(new_approval(&agent(), ns_delete(), b"", 1), "r3")
            .await
            .unwrap(),
    );
    assert!(!created);
    assert_eq!(joined.id, again.id);
    assert_eq!(
        b.get(&held_on_a.id).await.unwrap().unwrap().state,
        State::Used
    );
}

#[tokio::test]
async fn replicas_racing_use_a_single_use_grant_once_and_open_one_approval() {
    let first = TestStore::postgres().await;
    let mut replicas = vec![Arc::new(first.replica().await)];
    replicas.push(Arc::new(first.replica().await));
    replicas.push(Arc::new(first.replica().await));

    // Eight identical calls at once, spread over three replicas: one approval between them.
    let race = |tag: &'static str| {
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let r = replicas[i % replicas.len()].clone();
                tokio::spawn(async move {
                    r.admit(
                        new_approval(&agent(), ns_delete(), b"", 1),
                        &format!("{tag}{i}"),
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for c in calls {
                out.push(c.await.unwrap());
            }
            out
        }
    };
    let opened = race("open").await;
    let ids: std::collections::BTreeSet<String> =
        opened.into_iter().map(|a| held(a).0.id).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().unwrap();

    first
        .decide(&id, &person("approver@demo", &["approvers"]), approve())
        .await
        .unwrap();
    // Eight identical calls race for the single-use grant: exactly one goes through.
    let admitted = race("use").await;
    let granted = admitted
        .iter()
        .filter(|a| matches!(a, Admission::Granted(_)))
        .count();
    assert_eq!(granted, 1);
    assert_eq!(first.get(&id).await.unwrap().unwrap().state, State::Used);
}
