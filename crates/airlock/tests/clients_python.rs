//! The Python `kubernetes` client through Airlock against the simulated cluster: list, watch
//! and exec, run by `tests/python/test_clients.py` (the package version is pinned in
//! `tests/python/requirements.txt`; `scripts/test` installs it on a fresh machine).

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::Demo;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/test_clients.py")
}

#[test]
fn list_watch_and_exec() {
    let demo = Demo::start();
    demo.clear_received();
    let child = Command::new("python3")
        .arg(script())
        .arg("--kubeconfig")
        .arg(&demo.agent_kubeconfig)
        .env("HOME", &demo.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn python3 (is it installed?)");
    let out = common::wait_with_timeout(child, Duration::from_secs(120));
    common::ok(&out);

    // Every request the script made reached the cluster as the agent, and each kind arrived.
    let got = demo.received();
    let shop = "/api/v1/namespaces/shop";
    let seen = |method: &str, path: &str, query: &str| {
        got.iter().any(|r| {
            r["method"] == method
                && r["path"] == path
                && r["query"].as_str().is_some_and(|q| q.contains(query))
        })
    };
    assert!(seen("GET", &format!("{shop}/pods"), ""), "list: {got:#?}");
    assert!(
        seen("GET", &format!("{shop}/configmaps"), "watch="),
        "watch: {got:#?}"
    );
    assert!(
        seen("POST", &format!("{shop}/configmaps"), ""),
        "create: {got:#?}"
    );
    assert!(
        seen(
            "GET",
            &format!("{shop}/pods/web-6b7f9c5d4-x2k9p/exec"),
            "command=echo"
        ),
        "exec: {got:#?}"
    );
    for r in &got {
        assert_eq!(r["headers"]["impersonate-user"][0], "agent@demo", "{r:#}");
    }
}
