//! Reading the kubeconfig that holds Airlock's own credential for a cluster, and writing the
//! kubeconfigs Airlock hands to agents.
//!
//! Supported upstream auth kinds: CA (`certificate-authority[-data]`), client certificate and key
//! (`client-certificate[-data]`, `client-key[-data]`), bearer `token` and `tokenFile`.
//! Not supported, and refused with a clear error: `exec` credential plugins, `auth-provider`,
//! `username`/`password`, `proxy-url`, and `insecure-skip-tls-verify` (Airlock never talks to a
//! cluster it cannot verify).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid kubeconfig: {0}")]
    Parse(String),
    #[error("context {0:?} not found")]
    NoContext(String),
    #[error("no context given and no current-context set")]
    NoCurrentContext,
    #[error("cluster {0:?} not found")]
    NoCluster(String),
    #[error("user {0:?} not found")]
    NoUser(String),
    #[error("{field} is not valid base64")]
    Base64 { field: &'static str },
    #[error("{0} is not supported; give Airlock a client certificate or a token")]
    Unsupported(&'static str),
}

/// What Airlock needs to reach one cluster: its address and credential, all in memory.
#[derive(Clone)]
pub struct ClusterAccess {
    pub server: String,
    pub ca_pem: Option<String>,
    pub client_cert_pem: Option<String>,
    pub client_key_pem: Option<String>,
    pub token: Option<String>,
    /// Re-read on use, for rotated tokens (the in-cluster service account, `tokenFile`).
    pub token_file: Option<PathBuf>,
    pub tls_server_name: Option<String>,
}

impl std::fmt::Debug for ClusterAccess {
    // Never print credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("server", &self.server)
            .field("has_ca", &self.ca_pem.is_some())
            .field("has_client_cert", &self.client_cert_pem.is_some())
            .field("has_token", &self.token.is_some())
            .field("token_file", &self.token_file)
            .finish()
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default)]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(default)]
    tls_server_name: Option<String>,
    #[serde(default)]
    proxy_url: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    exec: Option<serde_yaml::Value>,
    #[serde(default)]
    auth_provider: Option<serde_yaml::Value>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct Context {
    cluster: String,
    user: String,
}

/// Reads a kubeconfig file and resolves one context to a `ClusterAccess`.
pub fn load(path: &Path, context: Option<&str>) -> Result<ClusterAccess, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, context, base)
}

/// Resolves one context of a kubeconfig held in memory. Relative file paths resolve against
/// `base`.
pub fn parse(
    text: &str,
    context: Option<&str>,
    base: &Path,
) -> Result<ClusterAccess, KubeconfigError> {
    let kc: Kubeconfig =
        serde_yaml::from_str(text).map_err(|e| KubeconfigError::Parse(e.to_string()))?;
    let ctx_name = match context {
        Some(c) => c.to_owned(),
        None => kc
            .current_context
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(KubeconfigError::NoCurrentContext)?,
    };
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .map(|c| &c.context)
        .ok_or_else(|| KubeconfigError::NoContext(ctx_name.clone()))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .map(|c| &c.cluster)
        .ok_or_else(|| KubeconfigError::NoCluster(ctx.cluster.clone()))?;
    let user = kc
        .users
        .iter()
        .find(|u| u.name == ctx.user)
        .map(|u| &u.user)
        .ok_or_else(|| KubeconfigError::NoUser(ctx.user.clone()))?;

    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(KubeconfigError::Unsupported("insecure-skip-tls-verify"));
    }
    if cluster.proxy_url.is_some() {
        return Err(KubeconfigError::Unsupported("proxy-url"));
    }
    if user.exec.is_some() {
        return Err(KubeconfigError::Unsupported("an exec credential plugin"));
    }
    if user.auth_provider.is_some() {
        return Err(KubeconfigError::Unsupported("auth-provider"));
    }
    if user.username.is_some() || user.password.is_some() {
        return Err(KubeconfigError::Unsupported("basic authentication"));
    }

    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };
    let file_or_data = |file: &Option<PathBuf>,
                        data: &Option<String>,
                        field: &'static str|
     -> Result<Option<String>, KubeconfigError> {
        if let Some(d) = data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|_| KubeconfigError::Base64 { field })?;
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
        if let Some(f) = file {
            let path = resolve(f);
            return std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|source| KubeconfigError::Read { path, source });
        }
        Ok(None)
    };

    Ok(ClusterAccess {
        server: cluster.server.trim_end_matches('/').to_owned(),
        ca_pem: file_or_data(
            &cluster.certificate_authority,
            &cluster.certificate_authority_data,
            "certificate-authority-data",
        )?,
        client_cert_pem: file_or_data(
            &user.client_certificate,
            &user.client_certificate_data,
            "client-certificate-data",
        )?,
        client_key_pem: file_or_data(&user.client_key, &user.client_key_data, "client-key-data")?,
        token: user.token.clone().filter(|t| !t.is_empty()),
        token_file: user.token_file.as_deref().map(resolve),
        tls_server_name: cluster.tls_server_name.clone(),
    })
}

/// The in-cluster service account, as client-go's `rest.InClusterConfig` finds it.
pub fn in_cluster() -> Result<ClusterAccess, KubeconfigError> {
    const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .map_err(|_| KubeconfigError::Parse("KUBERNETES_SERVICE_HOST is not set".into()))?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let ca_path = Path::new(DIR).join("ca.crt");
    let ca = std::fs::read_to_string(&ca_path).map_err(|source| KubeconfigError::Read {
        path: ca_path,
        source,
    })?;
    Ok(ClusterAccess {
        server: format!("https://{host}:{port}"),
        ca_pem: Some(ca),
        client_cert_pem: None,
        client_key_pem: None,
        token: None,
        token_file: Some(Path::new(DIR).join("token")),
        tls_server_name: None,
    })
}

/// Writes a kubeconfig for a client of Airlock. It always embeds the CA: Airlock never writes
/// `insecure-skip-tls-verify`.
pub fn render(server: &str, ca_pem: &str, context: &str, auth: &ClientAuth) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user = match auth {
        ClientAuth::Token(t) => serde_json::json!({ "token": t }),
        ClientAuth::Exec { command, args, env } => serde_json::json!({
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": command,
                "args": args,
                "env": env.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": false,
            }
        }),
        ClientAuth::ClientCert { cert_pem, key_pem } => serde_json::json!({
            "client-certificate-data": base64::engine::general_purpose::STANDARD.encode(cert_pem),
            "client-key-data": base64::engine::general_purpose::STANDARD.encode(key_pem),
        }),
    };
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// How the client of a written kubeconfig authenticates.
pub enum ClientAuth {
    Token(String),
    Exec {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
    ClientCert {
        cert_pem: String,
        key_pem: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = r#"
apiVersion: v1
kind: Config
current-context: admin
clusters:
- name: c1
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTg==
users:
- name: u1
  user:
    token: abc
- name: u2
  user:
    exec: {command: gke-gcloud-auth-plugin}
contexts:
- name: admin
  context: {cluster: c1, user: u1}
- name: plugin
  context: {cluster: c1, user: u2}
"#;

    #[test]
    fn resolves_current_context() {
        let a = parse(KC, None, Path::new("/")).unwrap();
        assert_eq!(a.server, "https://10.0.0.1:6443");
        assert_eq!(a.token.as_deref(), Some("abc"));
        assert_eq!(a.ca_pem.as_deref(), Some("-----BEGIN"));
        assert!(
            !format!("{a:?}").contains("abc"),
            "Debug must not print the token"
        );
    }

    #[test]
    fn unsupported_kinds_are_named() {
        let cases = [
            (Some("plugin"), "an exec credential plugin is not supported"),
            (Some("nope"), "context \"nope\" not found"),
        ];
        for (ctx, want) in cases {
            let err = parse(KC, ctx, Path::new("/")).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
        let insecure = KC.replace(
            "certificate-authority-data: LS0tLS1CRUdJTg==",
            "insecure-skip-tls-verify: true",
        );
        assert!(parse(&insecure, None, Path::new("/")).is_err());
    }

    #[test]
    fn rendered_kubeconfig_verifies_tls_and_round_trips() {
        let text = render(
            "https://127.0.0.1:8443",
            "-----BEGIN CERTIFICATE-----\n",
            "airlock",
            &ClientAuth::Token("t0k".into()),
        );
        assert!(!text.contains("insecure"));
        let a = parse(&text, None, Path::new("/")).unwrap();
        assert_eq!(a.server, "https://127.0.0.1:8443");
        assert_eq!(a.token.as_deref(), Some("t0k"));
        assert_eq!(a.ca_pem.as_deref(), Some("-----BEGIN CERTIFICATE-----\n"));
    }
}
