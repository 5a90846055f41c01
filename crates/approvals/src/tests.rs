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
    let s = Approvals::in_memory().unwrap();
    let (a, created) = held(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r1")
            .unwrap(),
    );
    assert!(created);
    let (b, created) = held(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r2")
            .unwrap(),
    );
    assert!(!created);
    assert_eq!(a.id, b.id);

    let approver = person("approver@demo", &["approvers"]);
    let after = s.decide(&a.id, &approver, approve()).unwrap();
    assert_eq!(after.state, State::Approved);

    // A different body is not covered; the identical request is, exactly once.
    let (_, created) = held(
        s.admit(new_approval(&agent(), ns_delete(), b"{}", 1), "r3")
            .unwrap(),
    );
    assert!(created);
    assert!(matches!(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r4")
            .unwrap(),
        Admission::Granted(_)
    ));
    let (c, created) = held(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r5")
            .unwrap(),
    );
    assert!(created);
    assert_ne!(c.id, a.id);
    assert_eq!(s.get(&a.id).unwrap().unwrap().state, State::Used);
}

#[test]
fn another_identity_never_uses_a_grant() {
    let s = Approvals::in_memory().unwrap();
    let (a, _) = held(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
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
    .unwrap();
    let twin = person("agent@demo", &["ai-agents", "extra"]);
    let other = person("other@demo", &["ai-agents"]);
    for who in [&twin, &other] {
        let (_, created) = held(
            s.admit(new_approval(who, ns_delete(), b"", 1), "r")
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
            .unwrap(),
        Admission::Granted(_)
    ));
    assert!(matches!(
        s.admit(new_approval(&agent(), t, b"", 1), "r").unwrap(),
        Admission::Granted(_)
    ));
}

#[test]
fn decisions_are_checked() {
    let s = Approvals::in_memory().unwrap();
    let (a, _) = held(
        s.admit(new_approval(&agent(), ns_delete(), b"", 2), "r")
            .unwrap(),
    );
    let err = |r: Result<Approval, ApprovalsError>| match r {
        Err(ApprovalsError::Decide(e)) => e.http_status(),
        other => panic!("{other:?}"),
    };
    // Self-approval, even from an approver group.
    let selfish = person("agent@demo", &["approvers"]);
    assert_eq!(err(s.decide(&a.id, &selfish, approve())), 403);
    assert_eq!(
        err(s.decide(&a.id, &person("x", &["devs"]), approve())),
        403
    );
    assert_eq!(
        err(s.decide("nope1234", &person("a1", &["approvers"]), approve())),
        404
    );
    let too_long = Action::Approve {
        for_: Some(Duration::from_secs(7200)),
        scope: None,
        reason: None,
    };
    assert_eq!(
        err(s.decide(&a.id, &person("a1", &["approvers"]), too_long)),
        400
    );
    // Quorum 2: one approval leaves it pending; the same person twice does not count.
    let one = s
        .decide(&a.id, &person("a1", &["approvers"]), approve())
        .unwrap();
    assert_eq!(one.state, State::Pending);
    assert_eq!(
        err(s.decide(&a.id, &person("a1", &["approvers"]), approve())),
        409
    );
    let two = s
        .decide(&a.id, &person("a2", &["approvers"]), approve())
        .unwrap();
    assert_eq!(two.state, State::Approved);
    assert_eq!(two.decisions.len(), 2);
    assert_eq!(
        err(s.decide(
            &a.id,
            &person("a3", &["approvers"]),
            Action::Deny {
                reason: "no".into()
            }
        )),
        409
    );
}

#[tokio::test]
async fn a_waiting_call_is_woken_by_the_decision() {
    let s = Arc::new(Approvals::in_memory().unwrap());
    let (a, _) = held(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
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
        .unwrap(),
    );
    assert!(matches!(
        s.wait(&b.id, Duration::from_millis(100), "r")
            .await
            .unwrap(),
        WaitOutcome::Pending(_)
    ));
}

#[test]
fn approvals_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("approvals.db");
    let id = {
        let s = Approvals::open(&path).unwrap();
        let (a, _) = held(
            s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
                .unwrap(),
        );
        a.id
    };
    let s = Approvals::open(&path).unwrap();
    assert_eq!(s.list(Some(State::Pending), 10).unwrap()[0].id, id);
    s.decide(&id, &person("approver@demo", &["approvers"]), approve())
        .unwrap();
    assert!(matches!(
        s.admit(new_approval(&agent(), ns_delete(), b"", 1), "r")
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
