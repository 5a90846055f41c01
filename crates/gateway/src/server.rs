//! The listeners: the agent-facing HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN) and the admin
//! listener (metrics, health and, when `web` is configured, the web UI in `crate::web`). The
//! approvals API shares the agent listener (`approvals.rs`).

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response, StatusCode};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::{
    audit::Audit,
    authorize::PolicyHolder,
    body::{self, Body},
    config::{ClusterSource, Config},
    kubeconfig,
    metrics::Metrics,
    proxy::Gateway,
    tls,
    upstream::Upstream,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cluster {name}: {reason}")]
    Cluster { name: String, reason: String },
    #[error("authentication: {0}")]
    Authn(String),
    #[error("policy: {0}")]
    Policy(String),
    #[error("masking: {0}")]
    Mask(String),
    #[error("audit log: {0}")]
    Audit(String),
    #[error("approvals: {0}")]
    Approvals(String),
    #[error("web UI: {0}")]
    Web(String),
    #[error("certificate: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running gateway: its bound addresses and the CA its clients should trust.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub ca_pem: String,
    /// The audit log, when it is on.
    pub audit: Option<Arc<Audit>>,
    /// Pending approvals and grants (`state_dir/approvals.db`). Connect the audit log with
    /// `approvals.set_hook(..)`.
    pub approvals: Arc<approvals::Approvals>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to a grace period) and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(audit) = &self.audit {
            audit.checkpoint().await;
        }
    }
}

/// Builds every part from a validated config and starts both listeners.
async fn open_approvals(cfg: &Config) -> Result<approvals::Approvals, String> {
    if let Some(url) = &cfg.approvals.store {
        let pool = store::postgres_pool(url, &store::OpenOptions::default())
            .map_err(|e| format!("approvals.store: {e}"))?;
        return approvals::Approvals::open_postgres(pool)
            .await
            .map_err(|e| e.to_string());
    }
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| format!("{}: {e}", cfg.state_dir.display()))?;
    approvals::Approvals::open(&cfg.state_dir.join("approvals.db")).map_err(|e| e.to_string())
}

pub async fn start(cfg: &Config) -> Result<Running, StartError> {
    start_with_recorder(cfg, None).await
}

/// [`start`], recording tunnels (exec, attach, port-forward) to `recorder`.
pub async fn start_with_recorder(
    cfg: &Config,
    recorder: Option<Arc<dyn crate::tunnel::Recorder>>,
) -> Result<Running, StartError> {
    let mut clusters = Vec::new();
    for source in &cfg.clusters {
        let name = source.name().to_owned();
        let err = |reason: String| StartError::Cluster {
            name: name.clone(),
            reason,
        };
        let access = match source {
            ClusterSource::Kubeconfig { path, context, .. } => {
                kubeconfig::load(path, context.as_deref())
            }
            ClusterSource::InCluster { .. } => kubeconfig::in_cluster(),
        }
        .map_err(|e| err(e.to_string()))?;
        let upstream =
            Upstream::new(&name, &access, cfg.upstream).map_err(|e| err(e.to_string()))?;
        clusters.push(Arc::new(upstream));
    }
    let authn =
        authn::Authenticator::new(&cfg.authn).map_err(|e| StartError::Authn(e.to_string()))?;
    authn.spawn_refresh();
    let policy = Arc::new(
        PolicyHolder::load(cfg.policy.clone()).map_err(|e| StartError::Policy(e.to_string()))?,
    );
    policy.spawn_watch();
    let mut metrics = Metrics::new();
    metrics.registry_mut().register(
        "policy_reloads",
        "Policy file reloads, by result (ok, error)",
        policy.reloads.clone(),
    );
    let audit = if cfg.audit.enabled {
        let audit = Audit::open(&cfg.audit, &cfg.state_dir)
            .await
            .map_err(StartError::Audit)?;
        metrics.registry_mut().register(
            "audit_failures",
            "Audit records that could not be written (each refused its request or lost an outcome)",
            audit.failures.clone(),
        );
        metrics.registry_mut().register(
            "audit_append_seconds",
            "Time an audit append waited for the store, by record kind (request: the wait before forwarding)",
            audit.append_seconds.clone(),
        );
        metrics
            .registry_mut()
            .register_collector(Box::new(audit.collector()));
        Some(Arc::new(audit))
    } else {
        warn!("the audit log is turned off (audit.enabled: false): nothing is recorded");
        None
    };
    let sink_metrics = crate::audit_sink::SinkMetrics::default();
    metrics.registry_mut().register(
        "audit_sink_delivered",
        "Audit records delivered by each streaming sink (at least once)",
        sink_metrics.delivered.clone(),
    );
    metrics.registry_mut().register(
        "audit_sink_failures",
        "Failed delivery attempts of each streaming sink",
        sink_metrics.failures.clone(),
    );
    let notifier = crate::notify::Notifier::new(&cfg.approvals).map_err(StartError::Approvals)?;
    metrics.registry_mut().register(
        "approval_notifications",
        "Approval notification deliveries, by webhook and result",
        notifier.sent.clone(),
    );
    let metrics = Arc::new(metrics);
    // Approvals persist, so that pending ones and grants survive a restart: in PostgreSQL when
    // replicas share them, else in the state directory (docs/approvals.md).
    let approvals = open_approvals(cfg).await.map_err(StartError::Approvals)?;
    let approvals = Arc::new(approvals);
    let mut hooks: Vec<Arc<dyn approvals::DecisionHook>> = Vec::new();
    if let Some(audit) = &audit {
        hooks.push(Arc::new(crate::audit::ApprovalAudit::new(audit.clone())));
    }
    if !notifier.is_empty() {
        hooks.push(Arc::new(notifier));
    }
    approvals.set_hook(Arc::new(crate::notify::Fanout(hooks)));
    let gateway = Arc::new(
        Gateway::new(
            clusters,
            cfg.default_cluster.clone(),
            authn,
            policy,
            crate::filter::masker(&cfg.state_dir).map_err(StartError::Mask)?,
            cfg.limits,
            metrics.clone(),
            audit.clone(),
        )
        .with_recorder(recorder)
        .with_approvals(approvals.clone()),
    );

    let cert = tls::load_or_generate(cfg.tls.as_ref(), &cfg.state_dir, &cfg.tls_sans)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config()?);

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let admin = TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: cfg.admin_listen,
            source,
        })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Listen {
        addr: cfg.admin_listen,
        source,
    })?;

    let (shutdown, rx) = watch::channel(false);
    let header_limit = cfg.limits.max_header_bytes;
    let main = tokio::spawn(serve_agents(
        listener,
        acceptor,
        gateway,
        header_limit,
        rx.clone(),
    ));
    let mut tasks = Vec::new();
    if let Some(audit) = &audit {
        tasks.extend(
            crate::audit_sink::spawn_all(
                audit,
                &cfg.audit.sinks,
                &cfg.state_dir,
                &cfg.audit.replica_id,
                sink_metrics,
                rx.clone(),
            )
            .map_err(StartError::Audit)?,
        );
    }
    let web = match (&cfg.web, &audit) {
        (Some(settings), Some(audit)) => Some(Arc::new(
            crate::web::Web::new(settings, admin_addr, audit.store().clone())
                .map_err(StartError::Web)?
                .with_approvals(approvals.clone()),
        )),
        (Some(_), None) => {
            return Err(StartError::Web(
                "the web UI needs the audit log (audit.enabled)".into(),
            ))
        }
        (None, _) => None,
    };
    let admin_task = tokio::spawn(serve_admin(admin, metrics, web, rx));
    info!(%addr, %admin_addr, "airlock is serving");
    Ok(Running {
        addr,
        admin_addr,
        ca_pem: cert.ca_pem,
        audit,
        approvals,
        shutdown,
        tasks: {
            tasks.push(main);
            tasks.push(admin_task);
            tasks
        },
    })
}

fn builder(header_limit: usize) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits sit above the configured one so that our check answers with a Status.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size((header_limit * 2).max(16 * 1024));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size((header_limit * 2).min(u32::MAX as usize) as u32)
        .max_concurrent_streams(1000);
    b
}

async fn serve_agents(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    gateway: Arc<Gateway>,
    header_limit: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder(header_limit));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let gateway = gateway.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let svc = service_fn(move |req: Request<Incoming>| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(gateway.handle(req, peer).await) }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drain(graceful).await;
}

async fn drain(graceful: GracefulShutdown) {
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            warn!("connections still open after the grace period");
        }
    }
}

async fn serve_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    web: Option<Arc<crate::web::Web>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = shutdown.changed() => break,
        };
        let metrics = metrics.clone();
        let web = web.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                let web = web.clone();
                async move {
                    // The web UI owns its paths (pages, /auth/, /static/) when configured.
                    let resp = match web {
                        Some(web) if crate::web::Web::owns(req.uri().path()) => {
                            web.handle(req).await
                        }
                        _ => admin(req, &metrics),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = builder.serve_connection(TokioIo::new(tcp), svc);
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drain(graceful).await;
}

fn admin(req: Request<Incoming>, metrics: &Metrics) -> Response<Body> {
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(body::full(metrics.encode()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        "/healthz" | "/readyz" | "/livez" => Response::new(body::full("ok")),
        _ => {
            let mut r = Response::new(body::full("not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}
