//! The client side, for `airlock credential` (a client-go exec credential plugin): obtain an
//! access token from the IdP and print it as an `ExecCredential`.
//!
//! - [`client_credentials`]: OAuth 2.0 client credentials grant (agents, CI).
//! - [`device_code`]: RFC 8628 device authorization grant (humans): prints the verification
//!   URI and user code to stderr, then polls.
//! - [`TokenCache`]: a per-user file cache so kubectl does not hit the IdP on every call.
//! - [`exec_credential_json`]: the JSON client-go expects on stdout.
//!
//! Endpoints come from the issuer's discovery document. Plain http is only used for loopback
//! issuers (local test IdPs); everything else must be https.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, FetchError};
use crate::http::HttpClient;
use crate::oidc::discover;

/// Why getting a token failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Building the HTTP client failed (bad CA file).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Talking to the IdP failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The discovery document lacks an endpoint this flow needs.
    #[error("issuer {issuer} does not advertise a {endpoint}")]
    NoEndpoint {
        /// The issuer.
        issuer: String,
        /// Which endpoint (`token_endpoint`, `device_authorization_endpoint`).
        endpoint: &'static str,
    },
    /// The IdP answered with an OAuth error (RFC 6749 §5.2).
    #[error("identity provider refused: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    OAuth {
        /// The `error` code.
        error: String,
        /// The `error_description`, if any.
        description: Option<String>,
    },
    /// The user denied the device authorization request.
    #[error("the device authorization request was denied")]
    AccessDenied,
    /// The device code expired before the user approved it.
    #[error("the device code expired before it was approved")]
    DeviceCodeExpired,
    /// A response could not be understood.
    #[error("unexpected response from {url} (HTTP {status})")]
    BadResponse {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// Reading or writing the token cache failed.
    #[error("token cache {path}: {source}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A successful token endpoint response (RFC 6749 §5.1).
#[derive(Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    /// The access token (what the gateway validates).
    pub access_token: String,
    /// Usually `Bearer`.
    #[serde(default)]
    pub token_type: String,
    /// Lifetime in seconds, if the IdP says.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Refresh token, if issued (not used by the plugin yet).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// ID token, if issued.
    #[serde(default)]
    pub id_token: Option<String>,
    /// Granted scope.
    #[serde(default)]
    pub scope: Option<String>,
    /// Absolute expiry, computed on receipt from `expires_in` (or the JWT's `exp`).
    #[serde(skip)]
    pub expires_at: Option<SystemTime>,
}

// Hand-written so the tokens never end up in logs via `{:?}`.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenResponse {
    fn stamp(mut self, received: SystemTime) -> Self {
        self.expires_at = match self.expires_in {
            Some(s) => received.checked_add(Duration::from_secs(s)),
            None => jwt_exp(&self.access_token),
        };
        self
    }
}

/// `exp` of a JWT access token, read without verification (only to schedule a refresh).
fn jwt_exp(token: &str) -> Option<SystemTime> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(v.get("exp")?.as_u64()?))
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The device authorization response (RFC 8628 §3.2), as shown to the user.
#[derive(Clone, Deserialize)]
pub struct DeviceAuthorization {
    /// Secret code the client polls with; not shown to the user.
    pub device_code: String,
    /// The code the user types in.
    pub user_code: String,
    /// Where the user goes.
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    /// The URI with the code filled in, if offered.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Minimum seconds between polls (default 5).
    #[serde(default)]
    pub interval: Option<u64>,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// An OAuth client of one issuer. Discovery is fetched per flow (the plugin runs once).
#[derive(Debug, Clone)]
pub struct OidcClient {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    http: HttpClient,
}

impl OidcClient {
    /// A client for `issuer`. `client_secret` is sent with HTTP Basic auth when present
    /// (confidential client); public clients send `client_id` in the form. `ca_file` adds a
    /// trusted CA for the IdP's TLS.
    pub fn new(
        issuer: &str,
        client_id: &str,
        client_secret: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.map(str::to_owned),
            // Loopback http only: a local test IdP, never a remote one.
            http: HttpClient::new(ca_file, true)?,
        })
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn endpoint(
        &self,
        value: Option<String>,
        endpoint: &'static str,
    ) -> Result<String, ClientError> {
        let url = value.ok_or_else(|| ClientError::NoEndpoint {
            issuer: self.issuer.clone(),
            endpoint,
        })?;
        self.http.check_url(&url)?;
        Ok(url)
    }

    /// Form fields shared by the token and device endpoints: `scope`, plus the audience both as
    /// `resource` (RFC 8707) and `audience` (the spelling several IdPs use instead).
    fn extras<'a>(
        form: &mut Vec<(&'a str, &'a str)>,
        scope: Option<&'a str>,
        audience: Option<&'a str>,
    ) {
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        if let Some(a) = audience {
            form.push(("resource", a));
            form.push(("audience", a));
        }
    }

    /// Adds client authentication to a request: public clients send `client_id` in the form;
    /// confidential clients use HTTP Basic (`client_secret_basic`, the default per RFC 8414
    /// §2), or the form (`client_secret_post`) when discovery offers only that.
    fn client_auth<'a>(
        &'a self,
        form: &mut Vec<(&'a str, &'a str)>,
        methods: Option<&[String]>,
    ) -> Option<(&'a str, &'a str)> {
        let Some(secret) = self.client_secret.as_deref() else {
            form.push(("client_id", self.client_id.as_str()));
            return None;
        };
        let offers = |m: &str| methods.is_some_and(|ms| ms.iter().any(|x| x == m));
        if methods.is_some() && !offers("client_secret_basic") && offers("client_secret_post") {
            form.push(("client_id", self.client_id.as_str()));
            form.push(("client_secret", secret));
            return None;
        }
        Some((self.client_id.as_str(), secret))
    }

    async fn token_request(
        &self,
        url: &str,
        mut form: Vec<(&str, &str)>,
        methods: Option<&[String]>,
    ) -> Result<Result<TokenResponse, OAuthErrorBody>, ClientError> {
        let basic = self.client_auth(&mut form, methods);
        let received = SystemTime::now();
        let resp = self.http.post_form(url, &form, basic).await?;
        let bad = || ClientError::BadResponse {
            url: url.to_owned(),
            status: resp.status,
        };
        if resp.status == 200 {
            let t: TokenResponse = serde_json::from_slice(&resp.body).map_err(|_| bad())?;
            return Ok(Ok(t.stamp(received)));
        }
        match serde_json::from_slice::<OAuthErrorBody>(&resp.body) {
            Ok(e) => Ok(Err(e)),
            Err(_) => Err(bad()),
        }
    }

    /// The issuer's `authorization_endpoint`, from discovery: where a browser is sent for the
    /// authorization code grant.
    pub async fn authorization_endpoint(&self) -> Result<String, ClientError> {
        let doc = discover(&self.http, &self.issuer).await?;
        self.endpoint(doc.authorization_endpoint, "authorization_endpoint")
    }

    /// Authorization code grant (RFC 6749 §4.1.3) with the PKCE `code_verifier` (RFC 7636
    /// §4.5). `redirect_uri` must be the one the authorization request carried.
    pub async fn authorization_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<TokenResponse, ClientError> {
        let doc = discover(&self.http, &self.issuer).await?;
        let url = self.endpoint(doc.token_endpoint, "token_endpoint")?;
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let methods = doc.token_endpoint_auth_methods_supported.as_deref();
        self.token_request(&url, form, methods)
            .await?
            .map_err(|e| ClientError::OAuth {
                error: e.error,
                description: e.error_description,
            })
    }

    /// Client credentials grant (RFC 6749 §4.4).
    pub async fn client_credentials(
        &self,
        scope: Option<&str>,
        audience: Option<&str>,
    ) -> Result<TokenResponse, ClientError> {
        let doc = discover(&self.http, &self.issuer).await?;
        let url = self.endpoint(doc.token_endpoint, "token_endpoint")?;
        let mut form = vec![("grant_type", "client_credentials")];
        Self::extras(&mut form, scope, audience);
        let methods = doc.token_endpoint_auth_methods_supported.as_deref();
        self.token_request(&url, form, methods)
            .await?
            .map_err(|e| ClientError::OAuth {
                error: e.error,
                description: e.error_description,
            })
    }

    /// Device authorization grant (RFC 8628). `prompt` is called once with the codes to show
    /// the user; then the token endpoint is polled at the advertised interval until the user
    /// approves, denies, or the code expires.
    pub async fn device_code(
        &self,
        scope: Option<&str>,
        audience: Option<&str>,
        prompt: impl FnOnce(&DeviceAuthorization),
    ) -> Result<TokenResponse, ClientError> {
        let doc = discover(&self.http, &self.issuer).await?;
        let device_url = self.endpoint(
            doc.device_authorization_endpoint,
            "device_authorization_endpoint",
        )?;
        let token_url = self.endpoint(doc.token_endpoint, "token_endpoint")?;

        let mut form = Vec::new();
        Self::extras(&mut form, scope, audience);
        let methods = doc.token_endpoint_auth_methods_supported.as_deref();
        let basic = self.client_auth(&mut form, methods);
        let resp = self.http.post_form(&device_url, &form, basic).await?;
        if resp.status != 200 {
            return Err(match serde_json::from_slice::<OAuthErrorBody>(&resp.body) {
                Ok(e) => ClientError::OAuth {
                    error: e.error,
                    description: e.error_description,
                },
                Err(_) => ClientError::BadResponse {
                    url: device_url,
                    status: resp.status,
                },
            });
        }
        let auth: DeviceAuthorization =
            serde_json::from_slice(&resp.body).map_err(|_| ClientError::BadResponse {
                url: device_url.clone(),
                status: resp.status,
            })?;
        prompt(&auth);

        let deadline = tokio::time::Instant::now() + Duration::from_secs(auth.expires_in);
        let mut interval = Duration::from_secs(auth.interval.unwrap_or(5).max(1));
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::DeviceCodeExpired);
            }
            let form = vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", auth.device_code.as_str()),
            ];
            match self.token_request(&token_url, form, methods).await? {
                Ok(t) => return Ok(t),
                Err(e) => match e.error.as_str() {
                    "authorization_pending" => {}
                    // RFC 8628 §3.5: add 5 seconds to the interval for this and later polls.
                    "slow_down" => interval += Duration::from_secs(5),
                    "access_denied" => return Err(ClientError::AccessDenied),
                    "expired_token" => return Err(ClientError::DeviceCodeExpired),
                    _ => {
                        return Err(ClientError::OAuth {
                            error: e.error,
                            description: e.error_description,
                        })
                    }
                },
            }
        }
    }
}

/// Client credentials grant in one call. `audience` is sent as `resource` and `audience`.
pub async fn client_credentials(
    issuer: &str,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
    audience: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<TokenResponse, ClientError> {
    OidcClient::new(issuer, client_id, Some(client_secret), ca_file)?
        .client_credentials(scope, audience)
        .await
}

/// Device code grant in one call for a public client; prints the verification URI and user
/// code to stderr (stdout belongs to the ExecCredential).
pub async fn device_code(
    issuer: &str,
    client_id: &str,
    scope: Option<&str>,
    audience: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<TokenResponse, ClientError> {
    OidcClient::new(issuer, client_id, None, ca_file)?
        .device_code(scope, audience, |a| match &a.verification_uri_complete {
            Some(uri) => eprintln!(
                "To sign in, open {uri}\n(or open {} and enter the code {})",
                a.verification_uri, a.user_code
            ),
            None => eprintln!(
                "To sign in, open {} and enter the code {}",
                a.verification_uri, a.user_code
            ),
        })
        .await
}

// === ExecCredential ===

/// The `client.authentication.k8s.io/v1` ExecCredential client-go reads from the plugin's
/// stdout. `expires_at` lets client-go call the plugin again only when needed.
pub fn exec_credential_json(token: &str, expires_at: Option<SystemTime>) -> String {
    let mut status = serde_json::Map::new();
    status.insert("token".into(), token.into());
    if let Some(ts) = expires_at.and_then(rfc3339) {
        status.insert("expirationTimestamp".into(), ts.into());
    }
    serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    })
    .to_string()
}

fn rfc3339(t: SystemTime) -> Option<String> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let dt = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    dt.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

// === TokenCache ===

/// A token as cached on disk.
#[derive(Clone, Deserialize, Serialize)]
pub struct CachedToken {
    /// The access token.
    pub access_token: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl CachedToken {
    /// Expiry as a `SystemTime`.
    pub fn expires_at_time(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.expires_at))
    }
}

/// A directory of cached access tokens, one file per (issuer, client, audience/scope),
/// readable only by the user. A token is served until `min_remaining` before it expires.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
    min_remaining: Duration,
}

impl TokenCache {
    /// A cache in `dir` that stops serving tokens 60 s before they expire.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            min_remaining: Duration::from_secs(60),
        }
    }

    /// Changes how long before expiry a token stops being served.
    pub fn with_min_remaining(mut self, d: Duration) -> Self {
        self.min_remaining = d;
        self
    }

    /// `$XDG_CACHE_HOME/airlock/tokens`, else `$HOME/.cache/airlock/tokens`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("airlock").join("tokens"))
    }

    /// The file for a key. Hashed, so issuer URLs need no escaping and names stay short.
    fn path(&self, issuer: &str, client_id: &str, extra: &str) -> PathBuf {
        let key = format!("{issuer}\n{client_id}\n{extra}");
        self.dir
            .join(format!("{}.json", &crate::hash_token(&key)[..32]))
    }

    /// A cached token with more than `min_remaining` left, if any. `extra` distinguishes
    /// tokens of the same client for different audiences or scopes (use "" if not needed).
    /// Unreadable or corrupt entries count as absent.
    pub fn get(&self, issuer: &str, client_id: &str, extra: &str) -> Option<CachedToken> {
        let bytes = std::fs::read(self.path(issuer, client_id, extra)).ok()?;
        let token: CachedToken = serde_json::from_slice(&bytes).ok()?;
        let now = SystemTime::now()
            .checked_add(self.min_remaining)?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs();
        (token.expires_at > now).then_some(token)
    }

    /// Stores a token. Tokens without a known expiry are not cached (returns `Ok(false)`).
    pub fn put(
        &self,
        issuer: &str,
        client_id: &str,
        extra: &str,
        token: &TokenResponse,
    ) -> Result<bool, ClientError> {
        let Some(expires_at) = token
            .expires_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        else {
            return Ok(false);
        };
        let entry = CachedToken {
            access_token: token.access_token.clone(),
            expires_at: expires_at.as_secs(),
        };
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ClientError::Cache { path, source }
        };
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let path = self.path(issuer, client_id, extra);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let body = serde_json::to_vec(&entry).map_err(|e| ClientError::Cache {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_private(&tmp, &body).map_err(io(&tmp))?;
        // Rename is atomic: a concurrent kubectl never reads a half-written file.
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(true)
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body)
}

#[cfg(not(unix))]
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: Option<u64>) -> TokenResponse {
        TokenResponse {
            access_token: "tok".into(),
            token_type: "Bearer".into(),
            expires_in,
            refresh_token: None,
            id_token: None,
            scope: None,
            expires_at: None,
        }
        .stamp(SystemTime::now())
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "authn-cache-{name}-{}-{}",
            std::process::id(),
            crate::claims::unix_now()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn cache_serves_until_shortly_before_expiry() {
        let dir = tmpdir("expiry");
        let cache = TokenCache::new(&dir);
        // (expires_in, served?)
        for (i, (expires_in, served)) in [
            (Some(3600), true),
            (Some(61 + 5), true),
            (Some(30), false),
            (None, false),
        ]
        .into_iter()
        .enumerate()
        {
            let client = format!("c{i}");
            let stored = cache
                .put("https://i", &client, "", &token(expires_in))
                .unwrap();
            assert_eq!(stored, expires_in.is_some());
            assert_eq!(
                cache.get("https://i", &client, "").is_some(),
                served,
                "{expires_in:?}"
            );
        }
        // keyed by issuer, client and extra
        assert!(cache.get("https://other", "c0", "").is_none());
        assert!(cache.get("https://i", "c0", "aud").is_none());
        assert_eq!(
            cache.get("https://i", "c0", "").unwrap().access_token,
            "tok"
        );
        // corrupt entry is ignored
        std::fs::write(cache.path("https://i", "c0", ""), b"{").unwrap();
        assert!(cache.get("https://i", "c0", "").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exec_credential_shape() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v: serde_json::Value =
            serde_json::from_str(&exec_credential_json("abc", Some(t))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "client.authentication.k8s.io/v1",
                "kind": "ExecCredential",
                "status": {"token": "abc", "expirationTimestamp": "2023-11-14T22:13:20Z"}
            })
        );
        let v: serde_json::Value =
            serde_json::from_str(&exec_credential_json("abc", None)).unwrap();
        assert!(v["status"].get("expirationTimestamp").is_none());
    }

    #[test]
    fn expiry_from_jwt_when_no_expires_in() {
        use base64::Engine as _;
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":1700000000}"#);
        let mut t = token(None);
        t.access_token = format!("e30.{p}.sig");
        let t = t.stamp(SystemTime::now());
        assert_eq!(
            t.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn client_auth_method_table() {
        let public = OidcClient::new("https://i", "pub", None, None).unwrap();
        let conf = OidcClient::new("https://i", "conf", Some("s3"), None).unwrap();
        let v = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (client, advertised methods, expect basic?, expected form fields)
        type Case<'a> = (
            &'a OidcClient,
            Option<Vec<String>>,
            bool,
            Vec<(&'a str, &'a str)>,
        );
        let cases: Vec<Case> = vec![
            (&public, None, false, vec![("client_id", "pub")]),
            (&conf, None, true, vec![]),
            (
                &conf,
                Some(v(&["client_secret_basic", "client_secret_post"])),
                true,
                vec![],
            ),
            (
                &conf,
                Some(v(&["private_key_jwt", "client_secret_post"])),
                false,
                vec![("client_id", "conf"), ("client_secret", "s3")],
            ),
            (&conf, Some(v(&["private_key_jwt"])), true, vec![]),
        ];
        for (client, methods, basic, fields) in cases {
            let mut form = Vec::new();
            let got = client.client_auth(&mut form, methods.as_deref());
            assert_eq!(got.is_some(), basic, "{methods:?}");
            assert_eq!(form, fields, "{methods:?}");
        }
    }

    #[test]
    fn debug_hides_tokens() {
        let t = token(Some(10));
        assert!(!format!("{t:?}").contains("tok\""));
    }
}
