//! Policy evaluation cost per request: `cargo bench -p policy`.
//!
//! Plain `std::time` (no harness): each scenario runs for about a second
//! after a warm-up and prints the mean nanoseconds per `Policy::evaluate`.
//! Numbers go to docs/policy.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use authn::Identity;
use kube_request::{RequestInfo, RequestParts};
use policy::{Policy, RequestContext};
use serde_json::{json, Value};

struct Scenario {
    name: &'static str,
    info: RequestInfo,
    method: &'static str,
    object: Option<Value>,
}

fn scenario(
    name: &'static str,
    method: &'static str,
    path: &str,
    object: Option<Value>,
) -> Scenario {
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let info = kube_request::parse(&RequestParts {
        method,
        path,
        query,
        content_type: Some("application/json"),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    Scenario {
        name,
        info,
        method,
        object,
    }
}

fn generated(n: usize) -> String {
    let mut yaml =
        String::from("agent_groups: [ai-agents]\npresets: [ai-agent-baseline]\nrules:\n");
    for i in 0..n {
        let action = match i % 3 {
            0 => "allow".to_string(),
            1 => format!("deny\n    message: team {i} is frozen"),
            _ => "approve\n    approval: { approvers: [approvers] }".to_string(),
        };
        yaml.push_str(&format!(
            "  - name: gen-{i}\n    match:\n      groups: [\"team-{i}-*\", ai-agents]\n      namespaces: [\"team-{i}\", \"team-{i}-*\"]\n      resources: [configmaps, \"deployments\", \"pods/exec\"]\n      verbs: [get, create, patch]\n    action: {action}\n"
        ));
        if i % 10 == 0 {
            yaml.push_str(&format!(
                "    condition: lookup(object, 'metadata.labels.team') == 'team-{i}'\n"
            ));
        }
    }
    yaml
}

fn measure(policy: &Policy, s: &Scenario, identity: &Identity) -> f64 {
    let ctx = RequestContext {
        cluster: "prod",
        info: &s.info,
        identity,
        method: s.method,
        headers: BTreeMap::from([("user-agent".to_string(), "kubectl/v1.31.0".to_string())]),
        object: s.object.as_ref(),
    };
    let run = |iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(policy.evaluate(black_box(&ctx)));
        }
        start.elapsed()
    };
    // Warm up, then size the run to about a second.
    let mut iters = 16u64;
    loop {
        let t = run(iters);
        if t > Duration::from_millis(100) {
            break;
        }
        iters *= 2;
    }
    let per = run(iters).as_nanos() as f64 / iters as f64;
    let target = (1e9 / per).max(16.0) as u64;
    run(target).as_nanos() as f64 / target as f64
}

fn main() {
    let identity = Identity {
        user: "agent-1".into(),
        uid: Some("u-1".into()),
        groups: vec!["ai-agents".into(), "team-500-devs".into()],
        client_id: Some("claude-code".into()),
        session_id: Some("s-1".into()),
        issuer: Some("https://idp.example.com".into()),
        expires_at: None,
    };
    let deployment = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"team-500","labels":{"team":"team-500"}},
        "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}],
                "resources":{"requests":{"cpu":"100m","memory":"128Mi"}},"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}]}}}});
    let privileged = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"team-500"},
        "spec":{"containers":[{"name":"c","image":"busybox","securityContext":{"privileged":true}}]}});
    let scenarios = [
        scenario(
            "get pod (no condition reached)",
            "GET",
            "/api/v1/namespaces/team-500/pods/web-1",
            None,
        ),
        scenario(
            "exec in kube-system",
            "POST",
            "/api/v1/namespaces/kube-system/pods/c/exec?command=sh",
            None,
        ),
        scenario(
            "create deployment (CEL: 3 pod rules)",
            "POST",
            "/apis/apps/v1/namespaces/team-500/deployments",
            Some(deployment),
        ),
        scenario(
            "create privileged pod (CEL)",
            "POST",
            "/api/v1/namespaces/team-500/pods",
            Some(privileged),
        ),
    ];
    let baseline = Policy::from_yaml("agent_groups: [ai-agents]\npresets: [ai-agent-baseline]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let big_yaml = generated(1000);
    let load_start = Instant::now();
    let big = Policy::from_yaml(&big_yaml).unwrap_or_else(|e| panic!("{e}"));
    let load = load_start.elapsed();
    println!("policy evaluation, ns/request (mean over ~1s each)");
    println!(
        "{:<40} {:>14} {:>22}",
        "request", "baseline", "baseline + 1,000 rules"
    );
    for s in &scenarios {
        let a = measure(&baseline, s, &identity);
        let b = measure(&big, s, &identity);
        println!("{:<40} {:>14.0} {:>22.0}", s.name, a, b);
    }
    println!(
        "loading the 1,000-rule policy ({} rules, {} KiB of YAML): {:.1} ms",
        big.rules().count(),
        big_yaml.len() / 1024,
        load.as_secs_f64() * 1e3
    );
}
