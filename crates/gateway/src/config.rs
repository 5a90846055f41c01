//! Airlock's configuration: one YAML file, parsed into raw serde structs (`RawConfig`), then
//! validated into the types the code uses (`Config`). `airlock check-config` prints the errors
//! collected here, each naming the key that is wrong and why.
//!
//! Every field of `RawConfig` is documented; `docs/config.md` is the reference for users.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

/// The top-level configuration file, as written by users.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address of the agent-facing HTTPS listener. Default `127.0.0.1:8443`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Address of the admin listener (metrics and health; the approvals API is on `listen`).
    /// Plain HTTP: bind it to loopback or a private interface. Default `127.0.0.1:9443`.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// Directory for generated state: the CA and serving certificate when `tls` is absent, and
    /// `approvals.db` (pending approvals and grants). Default `/var/lib/airlock`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Serving certificate. When absent, a CA and a serving certificate are generated into
    /// `state_dir` on first start and reused afterwards.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Hostnames and IP addresses the generated serving certificate is valid for, in addition to
    /// `localhost`, `127.0.0.1` and `::1`.
    #[serde(default)]
    pub tls_sans: Vec<String>,
    /// The Kubernetes clusters Airlock fronts. At least one.
    #[serde(default)]
    pub clusters: Vec<RawCluster>,
    /// The cluster served at the root path. Defaults to the first cluster.
    #[serde(default)]
    pub default_cluster: Option<String>,
    /// How agents authenticate (OIDC issuers and static tokens).
    #[serde(default)]
    pub authn: authn::AuthnConfig,
    /// The policy file (`docs/policy.md`). Reloaded when it changes and on SIGHUP; a broken new
    /// version keeps the old one in force. Without it every authenticated call is forwarded and
    /// Kubernetes RBAC alone decides.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Request limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Timeouts towards the clusters.
    #[serde(default)]
    pub upstream: RawUpstream,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
    /// The audit log (`docs/audit.md`).
    #[serde(default)]
    pub audit: RawAudit,
    /// Approval notifications (`docs/approvals.md`).
    #[serde(default)]
    pub approvals: RawApprovals,
    /// The web UI on the admin listener, with OpenID Connect login (`docs/web.md`). Off when
    /// absent.
    #[serde(default)]
    pub web: Option<RawWeb>,
}

/// Approvals: where new approval requests are announced.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawApprovals {
    /// Where pending approvals and grants live: a `postgres://` URL (same syntax and TLS
    /// settings as `audit.store`) that gateway replicas share, so a call held on one replica
    /// can be approved through another and a single-use grant is used once across them.
    /// Default: `audit.store` when that is PostgreSQL, else `approvals.db` (SQLite) in the
    /// state directory.
    pub store: Option<String>,
    /// Base URL of the approval pages, for the link in notifications
    /// (`{link_base}/approvals/{id}`). Default: no link.
    pub link_base: Option<String>,
    /// Webhooks told about every new approval request. Delivery is retried with backoff.
    pub notify: Vec<RawNotify>,
}

/// One notification webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// For logs and metrics.
    pub name: String,
    /// `json` (the approval request as JSON) or `slack` (a Slack-compatible message: `text`
    /// plus `blocks`, for incoming webhooks).
    #[serde(default = "default_notify_format")]
    pub format: String,
    /// `https://`, or `http://` to a loopback address.
    pub url: String,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

fn default_notify_format() -> String {
    "json".into()
}

/// A validated notification webhook.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub name: String,
    pub slack: bool,
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
}

/// Validated approval settings.
#[derive(Debug, Clone, Default)]
pub struct ApprovalSettings {
    /// PostgreSQL URL; `None`: SQLite in the state directory.
    pub store: Option<String>,
    pub link_base: Option<String>,
    pub notify: Vec<NotifySettings>,
}

/// `https://`, or `http://` to a loopback address (tests, sidecars).
fn webhook_url_ok(u: &str) -> bool {
    u.starts_with("https://")
        || ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| u.starts_with(p))
}

/// The web UI: browser login with the authorization code flow and PKCE, then the sessions
/// pages (`docs/web.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// The OpenID Provider, exactly as its ID tokens' `iss` (discovery is fetched from
    /// `ISSUER/.well-known/openid-configuration`). `https://`, or `http://` to a loopback
    /// address when `allow_insecure_http` is set.
    pub issuer: String,
    /// The OAuth client registered for Airlock's web UI; ID tokens must carry it in `aud`.
    pub client_id: String,
    /// File holding the client secret, for a confidential client. Without it the client is
    /// public (PKCE alone protects the code).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The admin listener's URL as browsers reach it, e.g. `https://airlock-admin.example`;
    /// the redirect URI is `BASE_URL/auth/callback`. Default `http://ADMIN_ADDRESS` (the
    /// bound address, so port 0 works). `https://` makes the cookies `Secure`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Members of any of these groups may sign in and see sessions.
    #[serde(default)]
    pub viewer_groups: Vec<String>,
    /// Members of any of these groups may sign in, see sessions and (once the approvals page
    /// exists) approve or deny held requests.
    #[serde(default)]
    pub approver_groups: Vec<String>,
    /// Scopes to request. Default `[openid, groups]`; `openid` is always sent.
    #[serde(default = "default_web_scopes")]
    pub scopes: Vec<String>,
    /// ID-token claim naming the user. Default `sub`; `email` or `preferred_username` read
    /// better where the IdP sets them.
    #[serde(default = "default_web_username_claim")]
    pub username_claim: String,
    /// ID-token claim holding the groups. Default `groups`.
    #[serde(default = "default_web_groups_claim")]
    pub groups_claim: String,
    /// How long a browser session lasts after login, seconds. Default 28800 (8 hours).
    #[serde(default = "default_web_session_ttl")]
    pub session_ttl_seconds: u64,
    /// Extra PEM CA bundle for the issuer's TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allow an `http://` issuer on a loopback address (tests and demos). Default false.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_web_scopes() -> Vec<String> {
    vec!["openid".to_owned(), "groups".to_owned()]
}
fn default_web_username_claim() -> String {
    "sub".to_owned()
}
fn default_web_groups_claim() -> String {
    "groups".to_owned()
}
fn default_web_session_ttl() -> u64 {
    8 * 3600
}

/// Validated web UI settings (see [`RawWeb`]).
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    /// Without a trailing slash; `None`: derived from the bound admin address.
    pub base_url: Option<String>,
    pub viewer_groups: Vec<String>,
    pub approver_groups: Vec<String>,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
    pub session_ttl: Duration,
    pub ca_file: Option<PathBuf>,
    pub allow_insecure_http: bool,
}

/// The audit log: where it is kept and how much of each body it keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// `false` turns the audit log off: nothing is recorded. Meant for benchmarks that compare
    /// audit on and off; `check-config` warns about it. Default `true`.
    pub enabled: bool,
    /// `sqlite:///path/audit.db` or `postgres://...`. Default: `sqlite://` in `state_dir`
    /// (`audit.db`, WAL mode).
    pub store: Option<String>,
    /// Ed25519 key (PKCS#8 PEM) that signs checkpoints. Default `state_dir/audit.key`,
    /// generated on first start.
    pub signing_key: Option<PathBuf>,
    /// This replica's chain name; unique among replicas sharing one database and stable across
    /// restarts. Default: the `HOSTNAME` environment variable, else `airlock`.
    pub replica_id: Option<String>,
    /// Bodies up to this many bytes are kept whole. Default 65536.
    pub max_body_bytes: usize,
    /// Larger bodies keep this many leading bytes, plus the size and SHA-256 of the whole.
    /// Default 16384.
    pub body_prefix_bytes: usize,
    /// Streaming copies of this replica's records for SIEMs (`docs/audit.md`).
    pub sinks: Vec<RawSink>,
    /// Which records wait for an fsync. `write-ahead` (default): the record written before a
    /// request is forwarded (and approvals) is on disk before the request goes on; outcome
    /// and exec-stream records are committed (they survive Airlock crashing) and reach the
    /// disk with the next fsync, within about a second. `all`: every record is fsynced
    /// before Airlock goes on. See docs/audit.md, "Durability".
    pub fsync: RawFsync,
    /// Record what flows through `kubectl port-forward` tunnels, not only connections and
    /// byte counts. Default `false`: port-forward carries the application's own traffic.
    /// When on, the recorded copy (never the forwarded bytes) goes through the text masker
    /// first, like exec output. See docs/audit.md, "Port-forward".
    pub port_forward_contents: bool,
}

/// `audit.fsync`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawFsync {
    #[default]
    WriteAhead,
    All,
}

/// A streaming sink: this replica's records as JSON lines, at least once, resumed after a
/// restart from a cursor file in the state directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    /// Names the cursor file (`audit-sink-NAME.cursor`) and the metrics. Lowercase letters,
    /// digits and `-`.
    pub name: String,
    /// `stdout` (JSON lines on standard output) or `webhook` (POSTed as `application/x-ndjson`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Webhook URL: `https://`, or `http://` to a loopback address.
    #[serde(default)]
    pub url: Option<String>,
    /// CA bundle for the webhook's certificate. Default: the public web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Sent as `Authorization: Bearer <contents>`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Records per delivery. Default 100.
    #[serde(default = "default_sink_batch")]
    pub batch_size: usize,
}

fn default_sink_batch() -> usize {
    100
}

/// A validated sink; `url` is `None` for stdout.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub name: String,
    pub url: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub batch_size: usize,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            enabled: true,
            store: None,
            signing_key: None,
            replica_id: None,
            max_body_bytes: 64 * 1024,
            body_prefix_bytes: 16 * 1024,
            sinks: Vec::new(),
            fsync: RawFsync::default(),
            port_forward_contents: false,
        }
    }
}

/// Validated audit settings.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub enabled: bool,
    pub store: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub replica_id: String,
    pub max_body_bytes: usize,
    pub body_prefix_bytes: usize,
    pub sinks: Vec<SinkSettings>,
    pub durability: store::Durability,
    pub port_forward_contents: bool,
}

impl AuditSettings {
    /// The store URL, the embedded SQLite default resolved against the state directory.
    pub fn store_url(&self, state_dir: &Path) -> String {
        match &self.store {
            Some(url) => url.clone(),
            None => default_store_url(state_dir),
        }
    }
}

/// `sqlite://` URL of the embedded audit database in a state directory.
pub fn default_store_url(state_dir: &Path) -> String {
    format!("sqlite://{}", state_dir.join("audit.db").display())
}

/// A serving certificate and key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificate written into generated kubeconfigs. Defaults to the last certificate of
    /// `cert_file`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// One upstream cluster: either a kubeconfig file and context, or the in-cluster service account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Name used in `/clusters/{name}/...` URLs. Lowercase letters, digits and `-`.
    pub name: String,
    /// Path to a kubeconfig holding Airlock's own credential for this cluster.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in that kubeconfig. Defaults to its `current-context`.
    #[serde(default)]
    pub context: Option<String>,
    /// Use the pod's service account (`KUBERNETES_SERVICE_HOST` and the mounted token and CA).
    #[serde(default)]
    pub in_cluster: bool,
}

/// Request limits; requests over them get a 400 `Status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Maximum total size of request headers, in bytes. Default 32768.
    pub max_header_bytes: usize,
    /// Maximum request body size, in bytes. Default 3145728 (3 MiB, as kube-apiserver).
    pub max_body_bytes: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_header_bytes: 32 * 1024,
            max_body_bytes: 3 * 1024 * 1024,
        }
    }
}

/// Timeouts towards the clusters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// TCP and TLS connect timeout, in seconds. Default 10.
    pub connect_timeout_seconds: u64,
    /// Time to wait for response headers, in seconds. Default 60. Watches, `logs -f` and exec
    /// streams are not limited once their headers arrive.
    pub response_timeout_seconds: u64,
    /// Idle pooled connections are closed after this many seconds. Default 90.
    pub pool_idle_timeout_seconds: u64,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            connect_timeout_seconds: 10,
            response_timeout_seconds: 60,
            pool_idle_timeout_seconds: 90,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter such as `info` or `airlock=debug`. `RUST_LOG` overrides it.
    pub level: Option<String>,
}

/// A configuration problem: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigIssue {
    pub key: String,
    pub reason: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub tls: Option<RawTls>,
    pub tls_sans: Vec<String>,
    pub clusters: Vec<ClusterSource>,
    pub default_cluster: String,
    pub authn: authn::AuthnConfig,
    pub policy: Option<PathBuf>,
    pub limits: Limits,
    pub upstream: UpstreamTimeouts,
    pub log_json: bool,
    pub log_level: Option<String>,
    pub audit: AuditSettings,
    pub approvals: ApprovalSettings,
    pub web: Option<WebSettings>,
}

/// Where a cluster's address and credential come from.
#[derive(Debug, Clone)]
pub enum ClusterSource {
    Kubeconfig {
        name: String,
        path: PathBuf,
        context: Option<String>,
    },
    InCluster {
        name: String,
    },
}

impl ClusterSource {
    pub fn name(&self) -> &str {
        match self {
            ClusterSource::Kubeconfig { name, .. } | ClusterSource::InCluster { name } => name,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    pub connect: Duration,
    pub response: Duration,
    pub pool_idle: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        let raw = RawUpstream::default();
        UpstreamTimeouts {
            connect: Duration::from_secs(raw.connect_timeout_seconds),
            response: Duration::from_secs(raw.response_timeout_seconds),
            pool_idle: Duration::from_secs(raw.pool_idle_timeout_seconds),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file. Relative paths inside it are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_raw(raw, base)
    }

    /// Validates a raw configuration, collecting every problem rather than stopping at the first.
    pub fn from_raw(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, reason: String| {
            issues.push(ConfigIssue {
                key: key.to_owned(),
                reason,
            })
        };
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let listen = parse_addr(
            raw.listen.as_deref(),
            "127.0.0.1:8443",
            "listen",
            &mut issue,
        );
        let admin_listen = parse_addr(
            raw.admin_listen.as_deref(),
            "127.0.0.1:9443",
            "admin_listen",
            &mut issue,
        );

        let tls = raw.tls.map(|t| RawTls {
            cert_file: resolve(&t.cert_file),
            key_file: resolve(&t.key_file),
            ca_file: t.ca_file.as_deref().map(resolve),
        });
        if let Some(t) = &tls {
            for (key, p) in [
                ("tls.cert_file", &t.cert_file),
                ("tls.key_file", &t.key_file),
            ] {
                if !p.is_file() {
                    issue(key, format!("{} does not exist", p.display()));
                }
            }
        }

        let mut clusters = Vec::new();
        if raw.clusters.is_empty() {
            issue("clusters", "at least one cluster is required".into());
        }
        for (i, c) in raw.clusters.into_iter().enumerate() {
            let key = format!("clusters[{i}]");
            if !valid_cluster_name(&c.name) {
                issue(
                    &format!("{key}.name"),
                    format!(
                        "{:?} is not a valid name: use lowercase letters, digits and '-'",
                        c.name
                    ),
                );
            }
            if clusters.iter().any(|s: &ClusterSource| s.name() == c.name) {
                issue(
                    &format!("{key}.name"),
                    format!("cluster {:?} is defined twice", c.name),
                );
            }
            match (c.kubeconfig, c.in_cluster) {
                (Some(_), true) => {
                    issue(&key, "set either kubeconfig or in_cluster, not both".into())
                }
                (None, false) => issue(&key, "set kubeconfig or in_cluster: true".into()),
                (Some(p), false) => {
                    let path = resolve(&p);
                    if !path.is_file() {
                        issue(
                            &format!("{key}.kubeconfig"),
                            format!("{} does not exist", path.display()),
                        );
                    }
                    clusters.push(ClusterSource::Kubeconfig {
                        name: c.name,
                        path,
                        context: c.context,
                    })
                }
                (None, true) => clusters.push(ClusterSource::InCluster { name: c.name }),
            }
        }
        let default_cluster = match raw.default_cluster {
            Some(d) => {
                if !clusters.iter().any(|c| c.name() == d) {
                    issue(
                        "default_cluster",
                        format!("{d:?} is not one of the configured clusters"),
                    );
                }
                d
            }
            None => clusters
                .first()
                .map(|c| c.name().to_owned())
                .unwrap_or_default(),
        };

        if let Err(e) = authn::Authenticator::new(&raw.authn) {
            issue("authn", e.to_string());
        }
        if raw.authn.oidc.is_empty() && raw.authn.static_tokens.is_empty() {
            issue(
                "authn",
                "no OIDC issuer and no static token: nobody could authenticate".into(),
            );
        }
        let policy = raw.policy.as_deref().map(resolve);
        if let Some(p) = &policy {
            if let Err(e) = policy::Policy::load_file(p) {
                issue("policy", e.to_string());
            }
        }
        if raw.limits.max_header_bytes < 1024 {
            issue("limits.max_header_bytes", "must be at least 1024".into());
        }
        if raw.limits.max_body_bytes < 1024 {
            issue("limits.max_body_bytes", "must be at least 1024".into());
        }
        let log_json = match raw.log.format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                issue("log.format", format!("{other:?} is not one of text, json"));
                false
            }
        };

        if let Some(url) = &raw.audit.store {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|k| url.starts_with(k)) {
                issue(
                    "audit.store",
                    "must be sqlite:///PATH or postgres://... (the value is not echoed: it may hold a password)".into(),
                );
            }
        }
        let is_postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
        if raw
            .approvals
            .store
            .as_deref()
            .is_some_and(|u| !is_postgres(u))
        {
            issue(
                "approvals.store",
                "must be postgres://... (SQLite is the default: approvals.db in the state directory; the value is not echoed: it may hold a password)".into(),
            );
        }
        if raw.audit.body_prefix_bytes > raw.audit.max_body_bytes {
            issue(
                "audit.body_prefix_bytes",
                "must not be larger than audit.max_body_bytes".into(),
            );
        }
        let replica_id = raw
            .audit
            .replica_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "airlock".to_owned());
        let mut sinks = Vec::new();
        for (i, sink) in raw.audit.sinks.iter().enumerate() {
            let key = format!("audit.sinks[{i}]");
            if !valid_cluster_name(&sink.name) {
                issue(
                    &format!("{key}.name"),
                    "must be lowercase letters, digits and '-'".into(),
                );
            }
            let url = match (sink.kind.as_str(), &sink.url) {
                ("stdout", None) => None,
                ("stdout", Some(_)) => {
                    issue(&format!("{key}.url"), "a stdout sink has no url".into());
                    None
                }
                ("webhook", Some(u)) => {
                    if !webhook_url_ok(u) {
                        issue(
                            &format!("{key}.url"),
                            "must be https:// (http:// only to a loopback address)".into(),
                        );
                    }
                    Some(u.clone())
                }
                ("webhook", None) => {
                    issue(&format!("{key}.url"), "a webhook sink needs a url".into());
                    None
                }
                (other, _) => {
                    issue(
                        &format!("{key}.type"),
                        format!("{other:?} is not one of stdout, webhook"),
                    );
                    None
                }
            };
            sinks.push(SinkSettings {
                name: sink.name.clone(),
                url,
                ca_file: sink.ca_file.as_deref().map(resolve),
                bearer_token_file: sink.bearer_token_file.as_deref().map(resolve),
                batch_size: sink.batch_size,
            });
        }
        let audit = AuditSettings {
            sinks,
            enabled: raw.audit.enabled,
            store: raw.audit.store.clone(),
            signing_key: raw.audit.signing_key.as_deref().map(resolve),
            replica_id,
            max_body_bytes: raw.audit.max_body_bytes,
            body_prefix_bytes: raw.audit.body_prefix_bytes,
            durability: match raw.audit.fsync {
                RawFsync::WriteAhead => store::Durability::WriteAhead,
                RawFsync::All => store::Durability::All,
            },
            port_forward_contents: raw.audit.port_forward_contents,
        };

        let mut notify = Vec::new();
        for (i, n) in raw.approvals.notify.iter().enumerate() {
            let key = format!("approvals.notify[{i}]");
            if !webhook_url_ok(&n.url) {
                issue(
                    &format!("{key}.url"),
                    "must be https:// (http:// only to a loopback address)".into(),
                );
            }
            let slack = match n.format.as_str() {
                "json" => false,
                "slack" => true,
                other => {
                    issue(
                        &format!("{key}.format"),
                        format!("{other:?} is not one of json, slack"),
                    );
                    false
                }
            };
            notify.push(NotifySettings {
                name: n.name.clone(),
                slack,
                url: n.url.clone(),
                ca_file: n.ca_file.as_deref().map(resolve),
                bearer_token_file: n.bearer_token_file.as_deref().map(resolve),
            });
        }
        let approvals = ApprovalSettings {
            store: raw
                .approvals
                .store
                .clone()
                .or_else(|| raw.audit.store.clone().filter(|u| is_postgres(u))),
            link_base: raw
                .approvals
                .link_base
                .clone()
                .map(|l| l.trim_end_matches('/').to_owned()),
            notify,
        };
        let web = raw
            .web
            .map(|w| validate_web(w, audit.enabled, &resolve, &mut issue));

        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues));
        }
        Ok(Config {
            listen,
            admin_listen,
            state_dir: raw
                .state_dir
                .as_deref()
                .map(resolve)
                .unwrap_or_else(|| PathBuf::from("/var/lib/airlock")),
            tls,
            tls_sans: raw.tls_sans,
            clusters,
            default_cluster,
            authn: raw.authn,
            policy,
            limits: Limits {
                max_header_bytes: raw.limits.max_header_bytes,
                max_body_bytes: raw.limits.max_body_bytes,
            },
            upstream: UpstreamTimeouts {
                connect: Duration::from_secs(raw.upstream.connect_timeout_seconds),
                response: Duration::from_secs(raw.upstream.response_timeout_seconds),
                pool_idle: Duration::from_secs(raw.upstream.pool_idle_timeout_seconds),
            },
            log_json,
            log_level: raw.log.level,
            audit,
            approvals,
            web,
        })
    }
}

fn validate_web(
    w: RawWeb,
    audit_enabled: bool,
    resolve: &impl Fn(&Path) -> PathBuf,
    issue: &mut impl FnMut(&str, String),
) -> WebSettings {
    let mut oidc = authn::OidcIssuerConfig::new(w.issuer.clone(), vec![w.client_id.clone()]);
    oidc.allow_insecure_http = w.allow_insecure_http;
    oidc.ca_file = w.ca_file.as_deref().map(resolve);
    if let Err(e) = authn::Authenticator::new(&authn::AuthnConfig {
        oidc: vec![oidc],
        static_tokens: vec![],
    }) {
        issue("web.issuer", e.to_string());
    }
    if w.client_id.trim().is_empty() {
        issue("web.client_id", "must not be empty".into());
    }
    let client_secret_file = w.client_secret_file.as_deref().map(resolve);
    if let Some(p) = &client_secret_file {
        if !p.is_file() {
            issue(
                "web.client_secret_file",
                format!("{} does not exist", p.display()),
            );
        }
    }
    let base_url = w.base_url.map(|b| b.trim_end_matches('/').to_owned());
    if let Some(b) = &base_url {
        match url::Url::parse(b) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.path() == "/" => {}
            _ => issue(
                "web.base_url",
                "must be an http:// or https:// URL with no path, like https://airlock-admin.example"
                    .into(),
            ),
        }
    }
    if w.viewer_groups.is_empty() && w.approver_groups.is_empty() {
        issue(
            "web.viewer_groups",
            "set viewer_groups or approver_groups: otherwise nobody may sign in".into(),
        );
    }
    if !audit_enabled {
        issue(
            "web",
            "the web UI shows the audit log, which is turned off (audit.enabled: false)".into(),
        );
    }
    if w.session_ttl_seconds < 60 {
        issue("web.session_ttl_seconds", "must be at least 60".into());
    }
    let mut scopes = w.scopes;
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".to_owned());
    }
    WebSettings {
        issuer: w.issuer,
        client_id: w.client_id,
        client_secret_file,
        base_url,
        viewer_groups: w.viewer_groups,
        approver_groups: w.approver_groups,
        scopes,
        username_claim: w.username_claim,
        groups_claim: w.groups_claim,
        session_ttl: Duration::from_secs(w.session_ttl_seconds),
        ca_file: w.ca_file.as_deref().map(resolve),
        allow_insecure_http: w.allow_insecure_http,
    }
}

fn parse_addr(
    value: Option<&str>,
    default: &str,
    key: &str,
    issue: &mut impl FnMut(&str, String),
) -> SocketAddr {
    let text = value.unwrap_or(default);
    match text.parse() {
        Ok(a) => a,
        Err(_) => {
            issue(
                key,
                format!("{text:?} is not an address such as 127.0.0.1:8443"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    }
}

fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(yaml: &str) -> Vec<String> {
        let raw: RawConfig = serde_yaml::from_str(yaml).unwrap();
        match Config::from_raw(raw, Path::new("/nonexistent")) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(v)) => v.into_iter().map(|i| i.key).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_problem_names_its_key() {
        let cases: &[(&str, &[&str])] = &[
            ("{}", &["clusters", "authn"]),
            (
                "clusters: [{name: Prod, in_cluster: true}]\nauthn: {static_tokens: [{sha256: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', user: a}]}",
                &["clusters[0].name"],
            ),
            (
                "clusters: [{name: a}]\nauthn: {static_tokens: [{sha256: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', user: a}]}",
                &["clusters[0]"],
            ),
            (
                "listen: nope\nclusters: [{name: a, in_cluster: true}]\ndefault_cluster: b\nauthn: {static_tokens: [{sha256: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', user: a}]}",
                &["listen", "default_cluster"],
            ),
            (
                "clusters: [{name: a, in_cluster: true}]\nlog: {format: xml}\nauthn: {static_tokens: [{sha256: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', user: a}]}",
                &["log.format"],
            ),
            (
                "clusters: [{name: a, in_cluster: true}]\nweb: {issuer: 'ftp://x', client_id: '', base_url: 'http://h/p', session_ttl_seconds: 5}\nauthn: {static_tokens: [{sha256: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881', user: a}]}",
                &["web.issuer", "web.client_id", "web.base_url", "web.viewer_groups", "web.session_ttl_seconds"],
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(issues(yaml), *want, "{yaml}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_yaml::from_str::<RawConfig>("listn: 1").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
