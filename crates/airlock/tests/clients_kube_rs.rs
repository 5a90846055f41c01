//! kube-rs through Airlock against the simulated cluster: list, watch and exec, with the
//! agent kubeconfig exactly as `airlock demo` writes it. Covers the "two more clients"
//! (kube-rs and the Python `kubernetes` package; the latter is in `clients_python.rs`).

mod common;

use std::time::Duration;

use common::Demo;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{
    api::{Api, AttachParams, ListParams, PostParams, WatchEvent, WatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};
use tokio::io::AsyncReadExt;

const WEB_PODS: [&str; 2] = ["web-6b7f9c5d4-x2k9p", "web-6b7f9c5d4-q8m3z"];

/// A kube-rs client built from `agent.kubeconfig`: Airlock's server URL, CA and bearer token.
async fn agent_client(demo: &Demo) -> Client {
    // kube builds its rustls config from the process-wide provider; pin ring so the test does not
    // depend on which providers other crates in the build happen to enable.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(&demo.agent_kubeconfig).expect("read agent.kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config from agent.kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// The requests the simulated cluster received at `path` (with any query), asserting each one
/// arrived impersonating the agent.
#[track_caller]
fn assert_impersonated(demo: &Demo, method: &str, path: &str) -> usize {
    let got = demo.received();
    let matching: Vec<_> = got
        .iter()
        .filter(|r| r["method"] == method && r["path"] == path)
        .collect();
    assert!(
        !matching.is_empty(),
        "the cluster never saw {method} {path}: {got:#?}"
    );
    for r in &matching {
        assert_eq!(r["headers"]["impersonate-user"][0], "agent@demo", "{r:#}");
        assert_eq!(r["user"], "agent@demo", "{r:#}");
    }
    matching.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pods() {
    let demo = Demo::start();
    let client = agent_client(&demo).await;
    demo.clear_received();

    let pods: Api<Pod> = Api::namespaced(client, "shop");
    let list = pods.list(&ListParams::default()).await.expect("list pods");
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for web in WEB_PODS {
        assert!(names.iter().any(|n| n == web), "{web} missing: {names:?}");
    }
    assert_impersonated(&demo, "GET", "/api/v1/namespaces/shop/pods");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_configmap_created_during_the_watch() {
    let demo = Demo::start();
    let client = agent_client(&demo).await;
    demo.clear_received();

    let configmaps: Api<ConfigMap> = Api::namespaced(client, "shop");
    // Watch from the list's resourceVersion so the stream carries only changes after it.
    let rv = configmaps
        .list_metadata(&ListParams::default())
        .await
        .expect("list configmaps")
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let mut events = configmaps
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .expect("start watch")
        .boxed();

    let name = "watched-kube-rs";
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("from".to_owned(), "kube-rs".to_owned())].into()),
        ..Default::default()
    };
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");

    let added = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = events.try_next().await.expect("watch stream") {
            match ev {
                WatchEvent::Added(cm) if cm.metadata.name.as_deref() == Some(name) => {
                    return cm;
                }
                WatchEvent::Error(e) => panic!("watch error event: {e:?}"),
                _ => {}
            }
        }
        panic!("watch ended without an ADDED event for {name}");
    })
    .await
    .expect("no ADDED event within 5s");
    assert_eq!(
        added
            .data
            .as_ref()
            .and_then(|d| d.get("from"))
            .map(String::as_str),
        Some("kube-rs")
    );

    assert_impersonated(&demo, "GET", "/api/v1/namespaces/shop/configmaps");
    let got = demo.received();
    assert!(
        got.iter()
            .any(|r| r["path"] == "/api/v1/namespaces/shop/configmaps"
                && r["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("watch=true"))),
        "the watch did not reach the cluster as a watch: {got:#?}"
    );
    assert_impersonated(&demo, "POST", "/api/v1/namespaces/shop/configmaps");
}

/// Runs `command` in the web pod's `app` container and returns (stdout, status).
async fn exec(
    pods: &Api<Pod>,
    command: &[&str],
) -> (
    String,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
) {
    let params = AttachParams::default()
        .container("app")
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut proc = pods
        .exec(WEB_PODS[0], command.to_vec(), &params)
        .await
        .unwrap_or_else(|e| panic!("exec {command:?}: {e}"));
    let mut stdout = proc.stdout().expect("stdout stream");
    let status = proc.take_status().expect("status future");
    let mut out = String::new();
    let read = async {
        stdout.read_to_string(&mut out).await.expect("read stdout");
        status.await
    };
    let status = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("exec {command:?} did not finish within 10s"))
        .unwrap_or_else(|| panic!("exec {command:?} ended without a status"));
    proc.join().await.expect("exec stream closes cleanly");
    (out, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdout_and_exit_status() {
    let demo = Demo::start();
    let client = agent_client(&demo).await;
    demo.clear_received();
    let pods: Api<Pod> = Api::namespaced(client, "shop");

    let (out, status) = exec(&pods, &["echo", "hello"]).await;
    assert_eq!(out, "hello\n");
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");

    let (out, status) = exec(&pods, &["sh", "-c", "exit 3"]).await;
    assert_eq!(out, "");
    assert_eq!(status.status.as_deref(), Some("Failure"), "{status:?}");
    assert_eq!(
        status.reason.as_deref(),
        Some("NonZeroExitCode"),
        "{status:?}"
    );
    let exit_code = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message.as_deref());
    assert_eq!(exit_code, Some("3"), "{status:?}");

    let path = format!("/api/v1/namespaces/shop/pods/{}/exec", WEB_PODS[0]);
    let n = assert_impersonated(&demo, "GET", &path);
    assert_eq!(n, 2, "one upgrade per exec");
}
