//! The simulated Kubernetes API server: the bench for every test and the demo's cluster.
//! Production never needs it.
//!
//! [`start`] brings up an HTTPS API server (HTTP/1.1 and HTTP/2) that real kubectl cannot
//! tell from a small cluster for what agents do: discovery from embedded upstream documents,
//! an in-memory object store with CRUD, patches, server-side apply, selectors, pagination,
//! watches and Table output, plus seed data. A plain-HTTP introspection listener exposes
//! every request received, for tests.
#![forbid(unsafe_code)]

mod api;
mod controller;
mod defaults;
mod discovery;
mod endpoints;
mod error;
mod events;
mod http;
mod introspect;
mod metrics;
mod openapi;
mod openapi_schemas;
mod patch;
pub mod pods;
mod protobuf;
mod seed;
mod selector;
mod server;
mod store;
mod table;
mod tls;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use error::{ApiError, SimError};
pub use seed::DATABASE_URL;

/// Response body type used by every handler in the simulator.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// API listener address (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Introspection listener (plain HTTP; keep it on loopback), or none.
    pub introspect_listen: Option<SocketAddr>,
    /// The bearer token that authenticates as the admin.
    pub admin_token: String,
    /// Load the seed cluster.
    pub seed: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            introspect_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            admin_token: format!("sim-admin-{}", uuid::Uuid::new_v4().simple()),
            seed: true,
        }
    }
}

/// A running simulator.
pub struct SimHandle {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// Where introspection listens, if enabled.
    pub introspect_addr: Option<SocketAddr>,
    /// PEM of the CA that signed the serving and client certificates.
    pub ca_pem: String,
    /// The admin bearer token.
    pub admin_token: String,
    /// PEM of the admin client certificate (CN=sim-admin, O=system:masters).
    pub client_cert_pem: String,
    /// PEM of the admin client key.
    pub client_key_pem: String,
    shutdown: signal::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the simulator; returns once both listeners are bound.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let pki = tls::generate()?;
    let registry = discovery::Registry::load()?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let state = Arc::new(server::State {
        registry,
        store: Arc::new(store::Store::new()),
        admin_token: cfg.admin_token.clone(),
        admin_cert_der: pki.client_cert_der.clone(),
        recorder: Arc::new(introspect::Recorder::default()),
        ca_pem: pki.ca_pem.clone(),
        server_address: addr.to_string(),
    });
    if cfg.seed {
        seed::seed(&state);
    } else {
        // Even an empty cluster has its system namespaces.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = state.store.create(&(String::new(), "namespaces".into()), serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}));
            seed::namespace_extras(&state, ns);
        }
    }
    let (tx, rx) = signal::channel(false);
    let mut tasks = vec![tokio::spawn(server::serve_api(
        listener,
        pki.server_config.clone(),
        state.clone(),
        rx.clone(),
    ))];
    let mut introspect_addr = None;
    if let Some(ia) = cfg.introspect_listen {
        let l = TcpListener::bind(ia)
            .await
            .map_err(|source| SimError::Bind { addr: ia, source })?;
        introspect_addr = Some(
            l.local_addr()
                .map_err(|source| SimError::Bind { addr: ia, source })?,
        );
        tasks.push(tokio::spawn(server::serve_introspect(l, state.clone(), rx)));
    }
    Ok(SimHandle {
        addr,
        introspect_addr,
        ca_pem: pki.ca_pem,
        admin_token: cfg.admin_token,
        client_cert_pem: pki.client_cert_pem,
        client_key_pem: pki.client_key_pem,
        shutdown: tx,
        tasks,
    })
}

// === impl SimHandle ===

impl SimHandle {
    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn kubeconfig(&self, user: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: sim-admin\n  user:\n{}contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim-admin\ncurrent-context: sim\npreferences: {{}}\n",
            self.server_url(),
            b64.encode(&self.ca_pem),
            user
        )
    }

    /// A kubeconfig (context `sim`) trusting the CA and authenticating with the admin token.
    pub fn admin_kubeconfig(&self) -> String {
        self.kubeconfig(&format!("    token: {}\n", self.admin_token))
    }

    /// The same, authenticating with the admin client certificate.
    pub fn client_cert_kubeconfig(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.kubeconfig(&format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64.encode(&self.client_cert_pem),
            b64.encode(&self.client_key_pem)
        ))
    }

    /// Stops the listeners and open connections.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
