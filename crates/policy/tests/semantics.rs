//! The language: matching, precedence, defaults, CEL at load and at run
//! time, validation errors, what-if.

mod support;

use policy::{Action, Basis, Policy, PolicyError, Verdict};
use serde_json::json;
use support::{decided_by, matched, req};

fn load(yaml: &str) -> Policy {
    Policy::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(yaml: &str) -> String {
    match Policy::from_yaml(yaml) {
        Ok(_) => panic!("loaded:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const APPROVAL: &str = "approval: { approvers: [approvers] }";

#[test]
fn policy_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
}

#[test]
fn precedence_deny_then_approve_then_allow_whatever_the_order() {
    // Rules listed allow, approve, deny: the order never changes the verdict.
    let policy = load(&format!(
        r#"
rules:
  - {{ name: a-allow, action: allow }}
  - {{ name: b-approve, match: {{ verbs: [delete, create] }}, action: approve, {APPROVAL} }}
  - {{ name: c-deny, match: {{ verbs: [delete] }}, action: deny, message: no deleting }}
"#
    ));
    let cases = [
        (
            "GET",
            "/api/v1/pods",
            Verdict::Allow,
            "a-allow",
            vec!["a-allow"],
        ),
        (
            "POST",
            "/api/v1/namespaces/d/pods",
            Verdict::Approve,
            "b-approve",
            vec!["a-allow", "b-approve"],
        ),
        (
            "DELETE",
            "/api/v1/namespaces/d/pods/x",
            Verdict::Deny,
            "c-deny",
            vec!["a-allow", "b-approve", "c-deny"],
        ),
    ];
    for (method, path, verdict, rule, all) in cases {
        let d = req(method, path).decide(&policy);
        assert_eq!(
            (d.verdict, decided_by(&d)),
            (verdict, rule.to_string()),
            "{method} {path}"
        );
        assert_eq!(matched(&d), all, "{method} {path}");
    }
    let d = req("DELETE", "/api/v1/namespaces/d/pods/x").decide(&policy);
    assert_eq!(
        d.message,
        "denied by airlock policy rule \"c-deny\": no deleting"
    );
    assert_eq!(d.matched[1].action, Action::Approve);
}

#[test]
fn defaults() {
    let agent = req("GET", "/api/v1/pods");
    let human = agent.clone().user("alice", &["sre"]);
    let no_groups = agent.clone().user("bob", &[]);
    // (policy, request, verdict, basis)
    let cases: Vec<(&str, &support::Req, Verdict, Basis)> = vec![
        ("{}", &human, Verdict::Deny, Basis::Default),
        ("default: deny", &human, Verdict::Deny, Basis::Default),
        ("default: allow", &human, Verdict::Allow, Basis::Default),
        ("default: allow", &no_groups, Verdict::Allow, Basis::Default),
        ("default: allow\nagent_groups: [ai-agents]", &human, Verdict::Allow, Basis::Default),
        ("default: allow\nagent_groups: [ai-agents]", &agent,
            Verdict::Deny, Basis::AgentDefault { group: "ai-agents".into() }),
        ("default: allow\nagent_groups: [\"ai-*\"]", &agent,
            Verdict::Deny, Basis::AgentDefault { group: "ai-agents".into() }),
        ("default: deny\nagent_groups: [ai-agents]", &agent,
            Verdict::Deny, Basis::AgentDefault { group: "ai-agents".into() }),
        // A matching allow rule wins over the agent default.
        ("agent_groups: [ai-agents]\nrules: [{name: r, action: allow}]", &agent,
            Verdict::Allow, Basis::Rule { rule: "r".into() }),
        // A mask rule alone decides nothing.
        ("default: allow\nagent_groups: [ai-agents]\nrules: [{name: m, action: mask, mask: secrets}]", &agent,
            Verdict::Deny, Basis::AgentDefault { group: "ai-agents".into() }),
    ];
    for (yaml, request, verdict, basis) in cases {
        let d = request.decide(&load(yaml));
        assert_eq!(
            (d.verdict, d.basis),
            (verdict, basis),
            "{yaml:?} for {}",
            request.identity.user
        );
    }
    let d = agent.decide(&load("agent_groups: [ai-agents]"));
    assert_eq!(
        d.message,
        "denied by airlock policy: no rule allows this request, and members of agent group \"ai-agents\" are denied by default"
    );
}

#[test]
fn attribute_matching_and_globs() {
    let rule = |m: &str| load(&format!("rules: [{{name: r, action: allow, match: {m}}}]"));
    let pods = req("GET", "/api/v1/namespaces/kube-system/pods/coredns-1");
    let exec = req(
        "POST",
        "/api/v1/namespaces/default/pods/web/exec?command=sh",
    );
    let node_proxy = req("GET", "/api/v1/nodes/n1/proxy/x");
    let deploy = req("GET", "/apis/apps/v1/namespaces/prod/deployments/web");
    let nodes = req("GET", "/api/v1/nodes/n1");
    let healthz = req("GET", "/healthz/ready");
    let impersonating = pods.clone().header("impersonate-user", "admin");
    let cases: Vec<(&str, &support::Req, bool)> = vec![
        ("{resources: [pods]}", &pods, true),
        ("{resources: [pods]}", &exec, false),
        ("{resources: [pods/exec]}", &exec, true),
        ("{resources: [\"pods/*\"]}", &exec, true),
        ("{resources: [\"pods/*\"]}", &pods, false),
        ("{resources: [\"*\"]}", &exec, true),
        ("{resources: [\"*\"]}", &healthz, false),
        ("{resources: [\"*/proxy\"]}", &node_proxy, true),
        ("{resources: [\"*/proxy\"]}", &nodes, false),
        ("{resources: [\"deploy*\"]}", &deploy, true),
        ("{namespaces: [\"kube-*\"]}", &pods, true),
        ("{namespaces: [\"kube-*\"]}", &deploy, false),
        ("{namespaces: [\"kube-*\"]}", &nodes, false),
        ("{namespaces: [\"\"]}", &nodes, true),
        ("{namespaces: [\"*\"]}", &nodes, true),
        ("{names: [\"coredns-*\"]}", &pods, true),
        ("{names: [\"web\"]}", &pods, false),
        ("{api_groups: [\"\"]}", &pods, true),
        ("{api_groups: [\"\"]}", &deploy, false),
        ("{api_groups: [apps]}", &deploy, true),
        ("{verbs: [get]}", &pods, true),
        ("{verbs: [create]}", &exec, true),
        ("{verbs: [\"*\"]}", &exec, true),
        ("{paths: [\"/healthz*\"]}", &healthz, true),
        ("{paths: [\"/healthz*\"]}", &pods, false),
        ("{paths: [\"*\"]}", &pods, false),
        ("{users: [\"agent-*\"]}", &pods, true),
        ("{users: [alice]}", &pods, false),
        ("{groups: [\"ai-*\"]}", &pods, true),
        ("{groups: [sre]}", &pods, false),
        ("{client_ids: [\"claude-*\"]}", &pods, true),
        ("{client_ids: [codex]}", &pods, false),
        ("{clusters: [\"prod*\"]}", &pods, true),
        ("{clusters: [staging]}", &pods, false),
        (
            "{verbs: [get], namespaces: [kube-system], groups: [ai-agents]}",
            &pods,
            true,
        ),
        (
            "{verbs: [get], namespaces: [kube-system], groups: [sre]}",
            &pods,
            false,
        ),
        ("{headers: [\"impersonate-*\"]}", &impersonating, true),
        ("{headers: [\"Impersonate-User\"]}", &impersonating, true),
        ("{headers: [\"impersonate-*\"]}", &pods, false),
    ];
    for (m, request, want) in cases {
        let d = request.decide(&rule(m));
        assert_eq!(
            d.verdict == Verdict::Allow,
            want,
            "match {m} for {} {}",
            request.method,
            request.info.path
        );
    }
    // No client id at all: only an unconstrained client_ids matches.
    let no_client = pods.clone().client_id(None);
    assert_eq!(
        no_client.decide(&rule("{client_ids: [\"*\"]}")).verdict,
        Verdict::Allow
    );
    assert_eq!(
        no_client
            .decide(&rule("{client_ids: [\"claude-*\"]}"))
            .verdict,
        Verdict::Deny
    );
    // Groups: an identity without groups matches `*` but no other pattern.
    let groupless = pods.clone().user("x", &[]);
    assert_eq!(
        groupless.decide(&rule("{groups: [\"*\"]}")).verdict,
        Verdict::Allow
    );
    assert_eq!(
        groupless.decide(&rule("{groups: [\"a*\"]}")).verdict,
        Verdict::Deny
    );
    let other_cluster = pods.clone().cluster("staging");
    assert_eq!(
        other_cluster.decide(&rule("{clusters: [staging]}")).verdict,
        Verdict::Allow
    );
}

#[test]
fn cel_variables() {
    let allow_if = |c: &str| {
        load(&format!(
            "rules: [{{name: r, action: allow, condition: \"{c}\"}}]"
        ))
    };
    let create = req("POST", "/api/v1/namespaces/team-a/configmaps")
        .header("user-agent", "kubectl/v1.31.0")
        .body(json!({"kind":"ConfigMap","metadata":{"name":"c","labels":{"owner":"agent-1"}},"data":{"k":"v"}}));
    let cases = [
        "request.verb == 'create'",
        "request.method == 'POST'",
        "request.resource == 'configmaps' && request.subresource == ''",
        "request.namespace.startsWith('team-')",
        "request.apiGroup == '' && request.apiVersion == 'v1'",
        "request.cluster == 'prod'",
        "request.isResourceRequest",
        "request.headers['user-agent'].startsWith('kubectl/')",
        "identity.user == 'agent-1' && 'ai-agents' in identity.groups",
        "identity.clientId == 'claude-code' && identity.sessionId == 's-1'",
        "object.metadata.labels.owner == identity.user",
        "has(object.data) && object.data.k == 'v'",
        "lookup(object, 'metadata.labels.owner') == 'agent-1'",
        "lookup(object, 'spec.replicas') == null",
        "size(pod_specs(object)) == 0 && !any_privileged(object) && !uses_host(object)",
    ];
    for c in cases {
        let d = create.decide(&allow_if(c));
        assert_eq!(d.verdict, Verdict::Allow, "{c}: {:?}", d.condition_errors);
    }
    let get = req("GET", "/api/v1/namespaces/a/pods");
    let d = get.decide(&allow_if("object == null"));
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.condition_errors);
    let d = get.decide(&allow_if("!has(request.headers.x)"));
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.condition_errors);
    let pod = req("POST", "/api/v1/namespaces/a/pods").body(json!({"spec":{"containers":[
        {"name":"a","securityContext":{"capabilities":{"add":["NET_ADMIN","SYS_ADMIN"]}}}]}}));
    for c in [
        "'SYS_ADMIN' in added_capabilities(object)",
        "containers(object).exists(c, c.name == 'a')",
        "pod_specs(object).all(s, !has(s.hostNetwork))",
        // Not the `object` variable itself: the helpers read the CEL value.
        "'SYS_ADMIN' in added_capabilities({'spec': object.spec})",
        "size(containers({'spec': object.spec})) == 1",
        "lookup({'a': {'b': 2}}, 'a.b') == 2",
        "!any_privileged(null) && !uses_host('text')",
    ] {
        let d = pod.decide(&allow_if(c));
        assert_eq!(d.verdict, Verdict::Allow, "{c}: {:?}", d.condition_errors);
    }
}

#[test]
fn cel_errors_at_load_name_the_rule() {
    let cases = [
        ("object.spec.(", "rules[1] \"bad\": condition: "),
        (
            "frobnicate(object)",
            "rules[1] \"bad\": condition: unknown function 'frobnicate'",
        ),
        ("object.spec.x ==", "rules[1] \"bad\": condition: "),
    ];
    for (condition, want) in cases {
        let yaml = format!(
            "rules:\n  - {{name: ok, action: allow}}\n  - name: bad\n    action: deny\n    message: m\n    condition: \"{condition}\"\n"
        );
        let err = Policy::from_yaml(&yaml)
            .err()
            .unwrap_or_else(|| panic!("{condition} loaded"));
        assert!(
            matches!(err, PolicyError::Cel { .. }),
            "{condition}: {err:?}"
        );
        assert!(err.to_string().starts_with(want), "{condition}: {err}");
    }
}

#[test]
fn cel_errors_at_run_time_fail_closed() {
    // `object` is null for a GET, so `object.spec` is an error.
    let policy = load(&format!(
        r#"
default: allow
rules:
  - {{ name: d, action: deny, message: risky, condition: "object.spec.x == 1" }}
  - {{ name: p, action: approve, {APPROVAL}, condition: "object.spec.x == 1" }}
  - {{ name: a, action: allow, condition: "object.spec.x == 1" }}
  - {{ name: m, action: mask, mask: secrets, condition: "object.spec.x == 1" }}
  - {{ name: n, action: deny, message: not a bool, condition: "'yes'" }}
"#
    ));
    let d = req("GET", "/api/v1/namespaces/a/pods").decide(&policy);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(
        matched(&d),
        ["d", "p", "n"],
        "deny and approve match on error; allow and mask do not"
    );
    assert_eq!(d.condition_errors.len(), 5);
    assert!(d.matched[0].condition_error.is_some());
    assert_eq!(
        d.message,
        "denied by airlock policy rule \"d\": risky (its condition could not be evaluated, so it applies)"
    );
    assert!(
        d.condition_errors[4].error.contains("not bool"),
        "{:?}",
        d.condition_errors[4]
    );
    assert!(d.mask_profiles.is_empty());
}

#[test]
fn cel_error_text_holds_no_request_values() {
    let policy = load(
        "rules: [{name: d, action: deny, message: m, condition: \"object.data.password > 1\"}]",
    );
    let d = req("POST", "/api/v1/namespaces/a/secrets")
        .body(json!({"data":{"password":"aHVudGVyMg=="}}))
        .decide(&policy);
    assert_eq!(d.verdict, Verdict::Deny);
    let text = format!("{:?}", d);
    assert!(!text.contains("aHVudGVyMg"), "{text}");
}

#[test]
fn validation_errors_name_the_place() {
    let cases = [
        ("default: maybe", "default: must be allow or deny"),
        ("rules: [{name: x, action: deny}]", "rules[0] \"x\": message: a deny rule needs a message"),
        ("rules: [{name: x, action: approve}]", "rules[0] \"x\": approval: an approve rule needs"),
        ("rules: [{name: x, action: approve, approval: {approvers: []}}]", "rules[0] \"x\": approval.approvers"),
        ("rules: [{name: x, action: approve, approval: {approvers: [a], quorum: 0}}]", "rules[0] \"x\": approval.quorum: must be at least 1"),
        ("rules: [{name: x, action: approve, approval: {approvers: [a], hold: soon}}]", "rules[0] \"x\": approval.hold: \"soon\" is not a duration"),
        ("rules: [{name: x, action: approve, approval: {approvers: [a], grant: {scopes: [forever]}}}]", "rules[0] \"x\": approval.grant.scopes"),
        ("rules: [{name: x, action: approve, approval: {approvers: [a], grant: {max_duration: 0s}}}]", "rules[0] \"x\": approval.grant.max_duration"),
        ("rules: [{name: x, action: mask}]", "rules[0] \"x\": mask: a mask rule needs a profile"),
        ("rules: [{name: x, action: allow, mask: p}]", "rules[0] \"x\": mask: only for action: mask"),
        ("rules: [{name: x, action: allow, approval: {approvers: [a]}}]", "rules[0] \"x\": approval: only for action: approve"),
        ("rules: [{name: x, action: permit}]", "rules[0] \"x\": action: must be allow, deny, approve or mask"),
        ("rules: [{name: x, action: allow, match: {verbs: [GET]}}]", "rules[0] \"x\": match.verbs: \"GET\" is not a verb"),
        ("rules: [{name: x, action: allow, match: {resources: [a/b/c]}}]", "rules[0] \"x\": match.resources"),
        ("rules: [{name: x, action: allow, match: {resources: [pods], paths: [/x]}}]", "rules[0] \"x\": match: resources and paths"),
        ("rules: [{name: x, action: allow}, {name: x, action: allow}]", "rule \"x\": rule name used twice"),
        ("rules: [{name: \" \", action: allow}]", "rules[0] \" \": name: must not be empty"),
        ("rules: [{name: x, action: allow, match: {verb: [get]}}]", "rules[0].match: unknown field `verb`"),
        ("rules: [{name: x, action: allow, when: true}]", "rules[0]: unknown field `when`"),
        ("presets: [nope]", "presets[0] \"nope\": unknown preset (known: ai-agent-baseline)"),
        ("presets: [ai-agent-baseline, ai-agent-baseline]", "presets[1] \"ai-agent-baseline\": preset listed twice"),
        ("presets: [{name: ai-agent-baseline, params: {approver: [x]}}]", "presets[0] \"ai-agent-baseline\": params.approver: unknown parameter"),
        ("presets: [{name: ai-agent-baseline, params: {approvers: x}}]", "presets[0] \"ai-agent-baseline\": params.approvers: must be a list"),
        ("presets: [{name: ai-agent-baseline, exclude: [nope]}]", "presets[0] \"ai-agent-baseline\": exclude: the preset has no rule \"nope\""),
        ("presets: [ai-agent-baseline]\nrules: [{name: allow-reads, action: allow}]", "rule \"allow-reads\": rule name used twice"),
        ("presets: [{name: ai-agent-baseline, params: {hold: never}}]", "approval.hold: \"never\" is not a duration"),
    ];
    for (yaml, want) in cases {
        let err = load_err(yaml);
        assert!(err.contains(want), "{yaml}\n  got:  {err}\n  want: {want}");
    }
}

#[test]
fn mask_profiles_are_carried_through() {
    let policy = load(
        "rules:\n  - {name: m1, action: mask, mask: secrets, match: {resources: [secrets]}}\n  - {name: m2, action: mask, mask: secrets}\n  - {name: m3, action: mask, mask: env}\n  - {name: r, action: allow}\n",
    );
    let d = req("GET", "/api/v1/namespaces/a/secrets/s").decide(&policy);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.mask_profiles, ["secrets", "env"]);
    assert_eq!(matched(&d), ["m1", "m2", "m3", "r"]);
}

#[test]
fn approval_requirements_combine() {
    let policy = load(
        r#"
rules:
  - name: a
    action: approve
    approval: { approvers: [sre], hold: 30s, grant: { max_duration: 1h, scopes: [request, resource, session] } }
  - name: b
    action: approve
    message: second opinion
    approval: { approvers: [security], quorum: 2, hold: 2m, grant: { max_duration: 10m, scopes: [resource, request] } }
"#,
    );
    let d = req("DELETE", "/api/v1/namespaces/a/pods/p").decide(&policy);
    assert_eq!(d.verdict, Verdict::Approve);
    assert_eq!(d.approvals.len(), 2);
    assert_eq!(d.hold(), Some(std::time::Duration::from_secs(120)));
    let limit = d.grant_limit().unwrap_or_default();
    assert_eq!(limit.max_duration, std::time::Duration::from_secs(600));
    assert_eq!(
        limit.scopes,
        [policy::GrantScope::Request, policy::GrantScope::Resource]
    );
    assert_eq!(
        d.message,
        "approval required by airlock policy rule \"a\" (and 1 more rules); held up to 2m for approval"
    );
    assert_eq!(d.approvals[1].reason.as_deref(), Some("second opinion"));
}

#[test]
fn what_if_reports_changes() {
    let current = load("agent_groups: [ai-agents]\npresets: [ai-agent-baseline]");
    let candidate = load(
        "agent_groups: [ai-agents]\npresets: [ai-agent-baseline]\nrules:\n  - {name: no-kube-system-writes, action: deny, message: hands off, match: {namespaces: [kube-system], verbs: [create, update, patch, delete]}}\n",
    );
    let recorded = [
        req("GET", "/api/v1/namespaces/kube-system/pods"),
        req("DELETE", "/api/v1/namespaces/kube-system/pods/coredns-1"),
        req(
            "POST",
            "/api/v1/namespaces/kube-system/pods/coredns-1/exec?command=sh",
        ),
        req("DELETE", "/api/v1/namespaces/default/pods/web-1"),
    ];
    let contexts: Vec<_> = recorded.iter().map(|r| r.ctx()).collect();
    let report = policy::what_if(&current, &candidate, &contexts);
    assert_eq!(report.total, 4);
    let changed: Vec<usize> = report.changes.iter().map(|c| c.index).collect();
    assert_eq!(changed, [1, 2]);
    assert_eq!(report.count(Verdict::Allow, Verdict::Deny), 1);
    assert_eq!(report.count(Verdict::Approve, Verdict::Deny), 1);
    assert_eq!(
        decided_by(&report.changes[0].after),
        "no-kube-system-writes"
    );
    // The same policy never differs from itself.
    assert!(policy::what_if(&current, &current, &contexts)
        .changes
        .is_empty());
}

#[test]
fn load_file_reads_and_reports_missing_files() {
    let dir = std::env::temp_dir().join(format!("airlock-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("policy.yaml");
    std::fs::write(&path, "presets: [ai-agent-baseline]\n").unwrap_or_else(|e| panic!("{e}"));
    let policy = Policy::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(policy.rules().count() > 10);
    let err = Policy::load_file(dir.join("missing.yaml")).err();
    assert!(matches!(err, Some(PolicyError::Read { .. })), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parse_object_by_content_type() {
    let ok = [
        (Some("application/json"), "{\"a\":1}"),
        (
            Some("application/merge-patch+json; charset=utf-8"),
            "{\"a\":1}",
        ),
        (Some("application/apply-patch+yaml"), "a: 1\n"),
        (None, "{\"a\":1}"),
    ];
    for (ct, body) in ok {
        let v = policy::parse_object(ct, body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v, Some(json!({"a": 1})), "{ct:?}");
    }
    assert_eq!(
        policy::parse_object(Some("application/json"), b"  ").ok(),
        Some(None)
    );
    assert!(policy::parse_object(Some("application/vnd.kubernetes.protobuf"), b"k8s\0").is_err());
    assert!(policy::parse_object(Some("application/json"), b"{").is_err());
    // YAML that go-yaml v2 (kube-apiserver) reads differently from serde_yaml is refused:
    // merge keys (nested ones too), tags, YAML 1.1 booleans.
    for yaml in [
        "x: &priv {privileged: true}\nspec:\n  securityContext:\n    <<: *priv\n",
        "spec:\n  securityContext: {<<: {<<: {privileged: true}}}\n",
        "spec:\n  securityContext: !x {privileged: true}\n",
    ] {
        let err = policy::parse_object(Some("application/apply-patch+yaml"), yaml.as_bytes())
            .expect_err(yaml);
        assert!(
            matches!(err, policy::PolicyError::Ambiguous(_)),
            "{yaml}: {err}"
        );
    }
    // `yes` may be a string: refused where the guardrails read the object (pods, workloads,
    // RBAC), like an unreadable body.
    for yaml in [
        "spec:\n  securityContext: {privileged: yes}\n",
        "spec:\n  hostNetwork: on\n",
        "spec:\n  replicas: 00\n",
        "spec:\n  replicas: 0_0\n",
    ] {
        let err = policy::parse_object(Some("application/apply-patch+yaml"), yaml.as_bytes())
            .expect_err(yaml);
        assert!(matches!(err, policy::PolicyError::Body(_)), "{yaml}: {err}");
    }
    // Ordinary numbers and numeric-looking strings YAML 1.1 reads the same way still parse.
    for yaml in [
        "spec: {replicas: 0, port: \"8080\", v: \"1.5\"}\n",
        "a: \"0\"\n",
    ] {
        policy::parse_object(Some("application/apply-patch+yaml"), yaml.as_bytes())
            .unwrap_or_else(|e| panic!("{yaml}: {e}"));
    }
    // JSON sent as apply-patch+yaml (what kubectl does) and plain YAML still parse.
    for body in [
        r#"{"spec":{"securityContext":{"privileged":true}},"data":{"a":"yes"}}"#,
        "spec:\n  securityContext: {privileged: true}\n",
    ] {
        let v = policy::parse_object(Some("application/apply-patch+yaml"), body.as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(v["spec"]["securityContext"]["privileged"], true, "{body}");
    }
    // A repeated key: serde_json keeps the last, kube-apiserver merges both.
    let err = policy::parse_object(
        Some("application/json"),
        br#"{"spec":{"securityContext":{"privileged":true},"securityContext":{"runAsUser":0}}}"#,
    )
    .expect_err("duplicate key");
    assert!(matches!(err, policy::PolicyError::Ambiguous(_)), "{err}");
    assert!(err.to_string().contains("securityContext"), "{err}");
    // move and copy write values the patch does not show: an `add` of a harmless value then a
    // `move` into securityContext.privileged, or a `copy` of any true in the stored object.
    for op in ["move", "copy"] {
        let patch = format!(
            r#"[{{"op":"add","path":"/metadata/labels/x","value":true}},{{"op":"{op}","from":"/metadata/labels/x","path":"/spec/template/spec/hostNetwork"}}]"#
        );
        let err = policy::parse_object(Some("application/json-patch+json"), patch.as_bytes())
            .expect_err(op);
        assert!(matches!(err, policy::PolicyError::Ambiguous(_)), "{err}");
        assert!(err.to_string().contains("move or copy"), "{err}");
    }
    assert!(policy::parse_object(
        Some("application/json-patch+json"),
        br#"[{"op":"remove","path":"/metadata/labels/x"},{"op":"test","path":"/a","value":1}]"#
    )
    .is_ok());
}
