//! HTTP-level behaviour that kubectl does not show directly: watch framing and semantics,
//! content negotiation, discovery variants, error Status objects, pagination, Audit-ID.

mod common;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// One HTTP/1.1 response: status, lowercase headers, and a reader positioned at the body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Next chunk of a chunked body (None at the end).
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        self.reader.read_line(&mut size).await.ok()?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).await.ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// The whole body (chunked or with content-length).
    async fn body(mut self) -> Vec<u8> {
        if self.header("transfer-encoding") == Some("chunked") {
            let mut out = Vec::new();
            while let Some(c) = self.chunk().await {
                out.extend(c);
            }
            out
        } else {
            let n: usize = self
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut buf = vec![0; n];
            self.reader.read_exact(&mut buf).await.unwrap();
            buf
        }
    }

    async fn json(self) -> Value {
        let b = self.body().await;
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)))
    }

    /// Reads watch lines until `n` events were seen or `wait` passed.
    async fn events(&mut self, n: usize, wait: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while out.len() < n {
            let Ok(Some(c)) = tokio::time::timeout_at(deadline, self.chunk()).await else {
                break;
            };
            pending.extend(c);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                out.push(serde_json::from_slice(&line).unwrap());
            }
        }
        out
    }
}

struct Client {
    addr: std::net::SocketAddr,
    token: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    fn new(sim: &sim::SimHandle) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(sim.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Client {
            addr: sim.addr,
            token: sim.admin_token.clone(),
            tls: Arc::new(cfg),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let conn = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut tls = conn
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            req.push_str(&format!("Authorization: Bearer {}\r\n", self.token));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(tls);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await.unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        Resp {
            status,
            headers,
            reader,
        }
    }

    async fn get(&self, path: &str, accept: &str) -> Resp {
        self.send("GET", path, &[("Accept", accept)], None).await
    }
}

async fn bench() -> (sim::SimHandle, Client) {
    let sim = sim::start(sim::SimConfig::default()).await.unwrap();
    let c = Client::new(&sim);
    (sim, c)
}

#[tokio::test]
async fn watch_replays_streams_and_expires() {
    let (sim, c) = bench().await;
    // No resourceVersion: synthetic ADDED for what exists, then live events, one per chunk.
    let mut w = c
        .get(
            "/api/v1/namespaces/shop/configmaps?watch=1",
            "application/json",
        )
        .await;
    assert_eq!(w.status, 200);
    let initial = w.events(3, Duration::from_secs(2)).await;
    assert!(initial.iter().all(|e| e["type"] == "ADDED"), "{initial:?}");
    let names: Vec<&str> = initial
        .iter()
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"web-config"), "{names:?}");
    let created = c
        .send(
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            &[("Content-Type", "application/json")],
            Some(r#"{"metadata":{"name":"w1"},"data":{"a":"b"}}"#),
        )
        .await;
    assert_eq!(created.status, 201);
    let created = created.json().await;
    let live = w.events(1, Duration::from_secs(2)).await;
    assert_eq!(live[0]["type"], "ADDED");
    assert_eq!(live[0]["object"]["metadata"]["name"], "w1");
    assert_eq!(live[0]["object"]["kind"], "ConfigMap");

    // From a resourceVersion: replay what happened after it.
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    c.send("DELETE", "/api/v1/namespaces/shop/configmaps/w1", &[], None)
        .await
        .body()
        .await;
    let mut replay = c.get(&format!("/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"), "application/json").await;
    let ev = replay.events(5, Duration::from_secs(3)).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["type"], "DELETED");

    // Label selectors apply to watches.
    let mut sel = c
        .get(
            "/api/v1/pods?watch=1&labelSelector=app%3Dweb&timeoutSeconds=1",
            "application/json",
        )
        .await;
    assert_eq!(sel.events(10, Duration::from_secs(3)).await.len(), 2);

    // Selector transitions: starting to match is ADDED, stopping is DELETED.
    let mut tr = c
        .get(
            "/api/v1/namespaces/shop/configmaps?watch=1&labelSelector=tier%3Dx",
            "application/json",
        )
        .await;
    for patch in [
        r#"{"metadata":{"labels":{"tier":"x"}}}"#,
        r#"{"metadata":{"labels":{"tier":null}}}"#,
    ] {
        let r = c
            .send(
                "PATCH",
                "/api/v1/namespaces/shop/configmaps/web-config",
                &[("Content-Type", "application/merge-patch+json")],
                Some(patch),
            )
            .await;
        assert_eq!(r.status, 200);
        r.body().await;
    }
    let ev = tr.events(2, Duration::from_secs(3)).await;
    let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "DELETED"]);

    // A resourceVersion older than the retained history: ERROR event with 410 Expired.
    for i in 0..2100 {
        let body = format!(r#"{{"metadata":{{"name":"churn"}},"data":{{"i":"{i}"}}}}"#);
        let path = if i == 0 {
            "/api/v1/namespaces/default/configmaps"
        } else {
            "/api/v1/namespaces/default/configmaps/churn"
        };
        let method = if i == 0 { "POST" } else { "PUT" };
        let r = c
            .send(
                method,
                path,
                &[("Content-Type", "application/json")],
                Some(&body),
            )
            .await;
        assert!(r.status < 300, "{}", r.status);
        r.body().await;
    }
    let mut old = c
        .get(
            &format!("/api/v1/namespaces/shop/configmaps?watch=1&resourceVersion={rv}"),
            "application/json",
        )
        .await;
    let ev = old.events(1, Duration::from_secs(2)).await;
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");
    assert!(ev[0]["object"]["message"]
        .as_str()
        .unwrap()
        .starts_with("too old resource version"));
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_bookmarks_initial_events_and_tables() {
    let (sim, c) = bench().await;
    let mut w = c
        .get("/api/v1/namespaces/payments/pods?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", "application/json")
        .await;
    let ev = w.events(3, Duration::from_secs(3)).await;
    assert_eq!(
        ev.iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ADDED", "ADDED", "BOOKMARK"]
    );
    assert_eq!(
        ev[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let periodic = w.events(1, sim_bookmark_wait()).await;
    assert_eq!(periodic[0]["type"], "BOOKMARK", "{periodic:?}");
    assert!(periodic[0]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .is_some());

    // kubectl get -w: Table-shaped watch events.
    let mut t = c
        .get(
            "/api/v1/namespaces/shop/pods?watch=1&timeoutSeconds=1",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .await;
    let ev = t.events(2, Duration::from_secs(3)).await;
    assert_eq!(ev[0]["object"]["kind"], "Table");
    assert_eq!(
        ev[0]["object"]["rows"][0]["cells"]
            .as_array()
            .unwrap()
            .len(),
        9
    );
    sim.shutdown().await;
}

fn sim_bookmark_wait() -> Duration {
    Duration::from_secs(8)
}

#[tokio::test]
async fn negotiation_discovery_and_errors() {
    let (sim, c) = bench().await;
    // Aggregated discovery in both variants kubectl asks for, content type matching.
    for (accept, v) in [
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2"),
        ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", "v2beta1"),
    ] {
        let r = c.get("/apis", accept).await;
        assert_eq!(r.header("content-type").unwrap(), format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"));
        let doc = r.json().await;
        assert_eq!(doc["apiVersion"], format!("apidiscovery.k8s.io/{v}"));
        // Every advertised group/version answers.
        for g in doc["items"].as_array().unwrap() {
            for ver in g["versions"].as_array().unwrap() {
                let path = format!("/apis/{}/{}", g["metadata"]["name"].as_str().unwrap(), ver["version"].as_str().unwrap());
                assert_eq!(c.get(&path, "application/json").await.status, 200, "{path}");
            }
        }
    }
    let legacy = c.get("/apis", "application/json").await.json().await;
    assert_eq!(legacy["kind"], "APIGroupList");
    // Only stable versions, plus the synthesised beta authentication.k8s.io/v1beta1 and the
    // metrics-server group.
    let betas: Vec<String> = legacy["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["versions"].as_array().unwrap().iter())
        .map(|v| v["groupVersion"].as_str().unwrap().to_string())
        .filter(|gv| gv.contains("alpha") || gv.contains("beta"))
        .collect();
    assert_eq!(
        betas,
        ["authentication.k8s.io/v1beta1", "metrics.k8s.io/v1beta1"]
    );
    assert_eq!(
        c.get("/apis/apps/v1beta1", "application/json").await.status,
        404
    );
    assert_eq!(
        c.get("/api", "application/json").await.json().await["versions"],
        json!(["v1"])
    );
    for p in ["/healthz", "/readyz", "/livez"] {
        assert_eq!(c.get(p, "*/*").await.status, 200);
    }

    // Content negotiation: protobuf-or-JSON gets JSON; protobuf only is 406.
    let r = c
        .get(
            "/api/v1/namespaces/shop/pods",
            "application/vnd.kubernetes.protobuf,application/json",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().await["kind"], "PodList");
    assert_eq!(
        c.get(
            "/api/v1/namespaces/shop/pods",
            "application/vnd.kubernetes.protobuf"
        )
        .await
        .status,
        406
    );
    let meta = c
        .get(
            "/api/v1/namespaces/shop/pods",
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
        )
        .await
        .json()
        .await;
    assert_eq!(meta["kind"], "PartialObjectMetadataList");
    assert!(meta["items"][0].get("spec").is_none());
    let table = c
        .get(
            "/api/v1/namespaces/shop/secrets?includeObject=Object",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .await
        .json()
        .await;
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Type", "Data", "Age"]);
    assert_eq!(table["rows"][0]["object"]["kind"], "Secret");

    // Status errors.
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        u16,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            "GET",
            "/api/v1/namespaces/shop/pods/nope",
            &[],
            None,
            404,
            "NotFound",
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            &[("Content-Type", "application/json")],
            Some(r#"{"metadata":{"name":"web-config"}}"#),
            409,
            "AlreadyExists",
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            &[("Content-Type", "application/json")],
            Some(r#"{"metadata":{"name":"Bad_Name"}}"#),
            422,
            "Invalid",
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            &[("Content-Type", "application/json")],
            Some(r#"{"metadata":{}}"#),
            422,
            "Invalid",
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/configmaps",
            &[("Content-Type", "application/json")],
            Some("{not json"),
            400,
            "BadRequest",
        ),
        (
            "PATCH",
            "/api/v1/namespaces/shop/configmaps/web-config",
            &[("Content-Type", "text/plain")],
            Some("{}"),
            415,
            "UnsupportedMediaType",
        ),
        (
            "PUT",
            "/api/v1/namespaces/shop/configmaps/web-config",
            &[("Content-Type", "application/json")],
            Some(r#"{"metadata":{"name":"web-config","resourceVersion":"1"}}"#),
            409,
            "Conflict",
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p",
            &[("Content-Type", "application/json")],
            Some("{}"),
            405,
            "MethodNotAllowed",
        ),
        (
            "GET",
            "/api/v1/pods?labelSelector=a%20in%20b",
            &[],
            None,
            400,
            "BadRequest",
        ),
        (
            "GET",
            "/api/v1/pods",
            &[("Authorization", "Bearer wrong")],
            None,
            401,
            "Unauthorized",
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/nope/log",
            &[],
            None,
            404,
            "NotFound",
        ),
    ];
    for (method, path, headers, body, code, reason) in cases {
        let r = c.send(method, path, headers, *body).await;
        assert_eq!(r.status, *code, "{method} {path}");
        let s = r.json().await;
        assert_eq!(s["kind"], "Status", "{method} {path}");
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], *reason, "{method} {path}: {s}");
        assert_eq!(s["code"], *code);
    }
    let s = c
        .get("/api/v1/namespaces/shop/pods/nope", "application/json")
        .await
        .json()
        .await;
    assert_eq!(s["message"], "pods \"nope\" not found");
    assert_eq!(
        s["details"],
        json!({"name": "nope", "group": "", "kind": "pods"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn pagination_dry_run_audit_id_and_recording() {
    let (sim, c) = bench().await;
    let first = c
        .get("/api/v1/pods?limit=4", "application/json")
        .await
        .json()
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    assert_eq!(first["metadata"]["remainingItemCount"], 2);
    let cont = first["metadata"]["continue"].as_str().unwrap();
    let rest = c
        .get(
            &format!("/api/v1/pods?limit=4&continue={cont}"),
            "application/json",
        )
        .await
        .json()
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest["metadata"].get("continue").is_none());

    let r = c
        .send(
            "POST",
            "/api/v1/namespaces/shop/configmaps?dryRun=All",
            &[("Content-Type", "application/json")],
            Some(r#"{"metadata":{"name":"dry"}}"#),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        c.get("/api/v1/namespaces/shop/configmaps/dry", "application/json")
            .await
            .status,
        404
    );

    let r = c
        .send(
            "GET",
            "/api/v1/namespaces/shop/pods",
            &[("Audit-ID", "test-audit-1")],
            None,
        )
        .await;
    assert_eq!(r.header("audit-id"), Some("test-audit-1"));
    let r = c.send("GET", "/version", &[], None).await;
    assert!(r.header("audit-id").is_some_and(|v| !v.is_empty()));

    let r = c
        .send(
            "DELETE",
            "/api/v1/namespaces/shop/configmaps?labelSelector=missing",
            &[],
            None,
        )
        .await
        .json()
        .await;
    assert_eq!(r["kind"], "ConfigMapList");

    // Blocking client: off the runtime thread that also serves the simulator.
    let addr = sim.introspect_addr.unwrap();
    let log = tokio::task::spawn_blocking(move || common::http_get_plain(addr, "/requests"))
        .await
        .unwrap();
    let log: Vec<Value> = serde_json::from_str(&log).unwrap();
    let rec = log
        .iter()
        .find(|r| r["audit_id"] == "test-audit-1")
        .unwrap();
    assert_eq!(rec["protocol"], "HTTP/1.1");
    assert_eq!(rec["method"], "GET");
    assert_eq!(rec["user"], "sim-admin");
    assert_eq!(rec["headers"]["audit-id"], json!(["test-audit-1"]));
    assert!(log
        .windows(2)
        .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    sim.shutdown().await;
}

#[tokio::test]
async fn unseeded_cluster_has_only_system_namespaces() {
    let cfg = sim::SimConfig {
        seed: false,
        introspect_listen: None,
        ..Default::default()
    };
    let sim = sim::start(cfg).await.unwrap();
    assert!(sim.introspect_addr.is_none());
    assert!(sim.server_url().starts_with("https://127.0.0.1:"));
    assert!(sim.admin_kubeconfig().contains("current-context: sim"));
    assert!(sim.client_cert_kubeconfig().contains("client-key-data:"));
    let c = Client::new(&sim);
    let ns = c
        .get("/api/v1/namespaces", "application/json")
        .await
        .json()
        .await;
    let names: Vec<&str> = ns["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let pods = c.get("/api/v1/pods", "application/json").await.json().await;
    assert_eq!(pods["items"], json!([]));
    sim.shutdown().await;
}

/// Methods kube-apiserver does not serve are 405, and change nothing: deleting through a
/// subresource, and anything but POST to the create-only `token` and `eviction`.
#[tokio::test]
async fn subresources_refuse_methods_kube_apiserver_refuses() {
    let (_sim, c) = bench().await;
    let cases = [
        ("DELETE", "/api/v1/namespaces/shop/status"),
        (
            "DELETE",
            "/apis/apps/v1/namespaces/shop/deployments/web/scale",
        ),
        ("GET", "/api/v1/namespaces/shop/serviceaccounts/web/token"),
        ("PUT", "/api/v1/namespaces/shop/serviceaccounts/web/token"),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p/eviction",
        ),
    ];
    for (method, path) in cases {
        let r = c.send(method, path, &[], None).await;
        assert_eq!(r.status, 405, "{method} {path}");
    }
    assert_eq!(
        c.get("/api/v1/namespaces/shop", "application/json")
            .await
            .status,
        200
    );
    assert_eq!(
        c.get(
            "/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p",
            "application/json"
        )
        .await
        .status,
        200
    );
}

/// An eviction in dry run (query or `deleteOptions`) changes nothing; a real one deletes the pod
/// and its ReplicaSet replaces it, as for a delete.
#[tokio::test]
async fn evictions_honour_dry_run_and_are_replaced() {
    let (_sim, c) = bench().await;
    let pod = "/api/v1/namespaces/shop/pods/web-6b7f9c5d4-x2k9p";
    let eviction = |dry: bool| {
        let opts = if dry {
            json!({"dryRun": ["All"]})
        } else {
            json!({})
        };
        json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-6b7f9c5d4-x2k9p", "namespace": "shop"}, "deleteOptions": opts})
        .to_string()
    };
    let ct = [("content-type", "application/json")];
    let web_pods = || async {
        let list = c
            .get(
                "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb",
                "application/json",
            )
            .await
            .json()
            .await;
        list["items"].as_array().map_or(0, Vec::len)
    };
    let before = web_pods().await;
    let body = eviction(true);
    let r = c
        .send("POST", &format!("{pod}/eviction"), &ct, Some(&body))
        .await;
    assert_eq!(r.status, 201);
    let body = eviction(false);
    let r = c
        .send(
            "POST",
            &format!("{pod}/eviction?dryRun=All"),
            &ct,
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(c.get(pod, "application/json").await.status, 200);
    let r = c
        .send("POST", &format!("{pod}/eviction"), &ct, Some(&body))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(c.get(pod, "application/json").await.status, 404);
    let after = web_pods().await;
    assert_eq!(after, before, "the ReplicaSet replaces the evicted pod");
}

/// Server-side apply YAML resolves `<<` merge keys, as kube-apiserver's go-yaml decoder does.
#[tokio::test]
async fn apply_yaml_resolves_merge_keys() {
    let (_sim, c) = bench().await;
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: merged\n  namespace: shop\nx: &base {a: \"1\"}\ndata:\n  <<: *base\n  b: \"2\"\n";
    let r = c
        .send(
            "PATCH",
            "/api/v1/namespaces/shop/configmaps/merged?fieldManager=t",
            &[("Content-Type", "application/apply-patch+yaml")],
            Some(body),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.status);
    let cm = c
        .get(
            "/api/v1/namespaces/shop/configmaps/merged",
            "application/json",
        )
        .await
        .json()
        .await;
    assert_eq!(cm["data"]["a"], "1", "{cm}");
    assert_eq!(cm["data"]["b"], "2", "{cm}");
}
