//! Bearer token -> [`Identity`].
//!
//! Two kinds of tokens are accepted:
//!
//! - **Static tokens**, configured as SHA-256 hashes and compared in constant time.
//! - **OIDC JWTs** from any number of trusted issuers. The issuer is picked by the token's
//!   (unverified) `iss`; then its discovery document and JWKS are fetched and cached, the
//!   signature is verified with a key matching `kid` and `alg`, and `iss`, `aud`, `exp`,
//!   `nbf` and `iat` are checked. Only asymmetric algorithms are ever accepted (never `none`,
//!   never HS*), so a public key can not be abused as an HMAC secret.
//!
//! The [`client`] module is the other side: getting tokens from an IdP for the
//! `airlock credential` exec plugin (client credentials, device code, a file cache).
//!
//! Invariants:
//! - [`Authenticator::new`] does no network I/O: the gateway starts even if the IdP is down.
//! - Once an issuer's keys are cached, an IdP outage does not reject valid tokens.
//! - No error message contains the token or a claim value.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod claims;
pub mod client;
mod config;
mod error;
mod http;
mod jwks;
mod oidc;
mod static_tokens;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

pub use config::{AuthnConfig, OidcIssuerConfig, StaticTokenConfig};
pub use error::{AuthError, ConfigError, FetchError};
pub use static_tokens::hash_token;

use config::IssuerSettings;
use oidc::{IssuerState, RawHeader};
use static_tokens::StaticTokens;

/// Who made a request, as established from its bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name, with the issuer's username prefix applied (see [`OidcIssuerConfig`]).
    pub user: String,
    /// Stable subject id (the `sub` claim); `None` for static tokens.
    pub uid: Option<String>,
    /// Groups, with the issuer's groups prefix applied.
    pub groups: Vec<String>,
    /// The OAuth client the token was issued to (`azp`, else `client_id`).
    pub client_id: Option<String>,
    /// The IdP session (`sid`), when the token carries one.
    pub session_id: Option<String>,
    /// The issuer that vouched for the token; `None` for static tokens.
    pub issuer: Option<String>,
    /// When the token stops being valid (`exp`); `None` for static tokens.
    pub expires_at: Option<SystemTime>,
}

/// Largest token we look at. Real JWTs are a few KiB; this bounds parsing work on garbage.
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Validates bearer tokens. Cheap to clone (shared state behind an `Arc`); `Send + Sync`.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    static_tokens: StaticTokens,
    /// Keyed by the exact issuer string, as tokens carry it in `iss`.
    issuers: HashMap<String, Arc<IssuerState>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut issuers: Vec<_> = self.inner.issuers.keys().collect();
        issuers.sort();
        f.debug_struct("Authenticator")
            .field("issuers", &issuers)
            .field("static_tokens", &!self.inner.static_tokens.is_empty())
            .finish()
    }
}

/// The claim used to route a token to its issuer before verification.
#[derive(Deserialize)]
struct UnverifiedIss {
    #[serde(default)]
    iss: Option<Value>,
}

// === impl Authenticator ===

impl Authenticator {
    /// Validates the configuration and builds the authenticator. Reads `ca_file`s but does no
    /// network I/O; keys are fetched on first use. Callable outside a Tokio runtime.
    pub fn new(cfg: &AuthnConfig) -> Result<Self, ConfigError> {
        let static_tokens = StaticTokens::new(&cfg.static_tokens)?;
        let mut issuers = HashMap::new();
        for oc in &cfg.oidc {
            let settings = IssuerSettings::from_config(oc)?;
            let http = http::HttpClient::new(settings.ca_file.as_deref(), settings.insecure_http)?;
            let issuer = settings.issuer.clone();
            let state = Arc::new(IssuerState::new(settings, http));
            if issuers.insert(issuer.clone(), state).is_some() {
                return Err(ConfigError::DuplicateIssuer { issuer });
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                static_tokens,
                issuers,
            }),
        })
    }

    /// Authenticates a bearer token (without the `Bearer ` prefix).
    ///
    /// Static tokens are checked first; anything shaped like a JWT then goes to the issuer
    /// named by its `iss`. Errors are safe to log; map every one of them to 401.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        if let Some(id) = self.inner.static_tokens.lookup(token) {
            return Ok(id);
        }
        let (header, iss) = peek_jwt(token)?;
        let issuer = self
            .inner
            .issuers
            .get(&iss)
            .ok_or(AuthError::UnknownIssuer)?;
        if header.crit.is_some() {
            return Err(AuthError::UnsupportedCritical);
        }
        issuer.verify(token, &header).await
    }

    /// Starts a background task per issuer that refreshes its JWKS every
    /// `jwks_refresh_seconds` (the first fetch right away, warming the cache), so rotations
    /// are picked up before the first token with a new `kid` arrives. The tasks end when the last clone of this authenticator is dropped.
    /// Needs a Tokio runtime; without one it logs a warning and does nothing (keys are then
    /// still fetched on demand).
    pub fn spawn_refresh(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "spawn_refresh called outside a tokio runtime; jwks refresh is on demand only"
            );
            return;
        };
        for state in self.inner.issuers.values() {
            let weak: Weak<IssuerState> = Arc::downgrade(state);
            let period = state.settings.jwks_refresh;
            handle.spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // Holding only a Weak between ticks lets the authenticator be dropped.
                    let Some(state) = weak.upgrade() else { return };
                    state.refresh_now().await;
                }
            });
        }
    }
}

/// Splits a compact JWS and decodes its header and `iss` without verifying anything. Only
/// used to choose the issuer and key; every value is checked again after verification.
fn peek_jwt(token: &str) -> Result<(RawHeader, String), AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    if h.is_empty() || p.is_empty() {
        return Err(AuthError::Malformed);
    }
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| AuthError::Malformed)
    };
    let header: RawHeader =
        serde_json::from_slice(&decode(h)?).map_err(|_| AuthError::Malformed)?;
    // Reject unsigned tokens here, before anything else, whatever the issuer says.
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    if s.is_empty() {
        return Err(AuthError::Malformed);
    }
    let claims: UnverifiedIss =
        serde_json::from_slice(&decode(p)?).map_err(|_| AuthError::Malformed)?;
    match claims.iss {
        Some(Value::String(iss)) => Ok((header, iss)),
        Some(_) => Err(AuthError::InvalidClaim("iss".into())),
        None => Err(AuthError::MissingClaim("iss".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn peek_table() {
        let h = b64(r#"{"alg":"RS256","kid":"k"}"#);
        let p = b64(r#"{"iss":"https://i","sub":"x"}"#);
        // (token, expected iss or error display)
        let cases: Vec<(String, Result<&str, &str>)> = vec![
            (format!("{h}.{p}.c2ln"), Ok("https://i")),
            (format!("{h}.{p}"), Err("malformed")),
            (format!("{h}.{p}.c2ln.x"), Err("malformed")),
            (format!("{}.{p}.", b64(r#"{"alg":"none"}"#)), Err("alg")),
            (format!("{}.{p}.c2ln", b64(r#"{"alg":"None"}"#)), Err("alg")),
            (format!("{h}.{p}."), Err("malformed")),
            (
                format!("{h}.{}.c2ln", b64(r#"{"sub":"x"}"#)),
                Err("missing"),
            ),
            (format!("{h}.{}.c2ln", b64(r#"{"iss":7}"#)), Err("invalid")),
            (format!("{h}.!!!.c2ln"), Err("malformed")),
            ("garbage".to_owned(), Err("malformed")),
            (format!("{}.{p}.c2ln", b64("not json")), Err("malformed")),
        ];
        for (token, want) in cases {
            let got = peek_jwt(&token).map(|(_, iss)| iss);
            let got = got.as_deref().map_err(|e| match e {
                AuthError::Malformed => "malformed",
                AuthError::AlgorithmNotAllowed => "alg",
                AuthError::MissingClaim(_) => "missing",
                AuthError::InvalidClaim(_) => "invalid",
                _ => "other",
            });
            assert_eq!(got, want, "{token}");
        }
    }

    #[tokio::test]
    async fn static_tokens_and_routing() {
        let cfg = AuthnConfig {
            oidc: vec![OidcIssuerConfig::new(
                "https://idp.invalid",
                vec!["airlock".into()],
            )],
            static_tokens: vec![StaticTokenConfig {
                sha256: hash_token("ci-token"),
                user: "ci".into(),
                groups: vec!["airlock:ci".into()],
            }],
        };
        let auth = Authenticator::new(&cfg).unwrap();
        let id = auth.authenticate(" ci-token ").await.unwrap();
        assert_eq!(id.user, "ci");
        assert_eq!(id.groups, ["airlock:ci"]);
        assert!(matches!(
            auth.authenticate("").await,
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            auth.authenticate("nope").await,
            Err(AuthError::Malformed)
        ));
        let other = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"iss":"https://other"}"#)
        );
        assert!(matches!(
            auth.authenticate(&other).await,
            Err(AuthError::UnknownIssuer)
        ));
        let hs = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"iss":"https://idp.invalid"}"#)
        );
        assert!(matches!(
            auth.authenticate(&hs).await,
            Err(AuthError::AlgorithmNotAllowed)
        ));
        let crit = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","crit":["b64"],"b64":false}"#),
            b64(r#"{"iss":"https://idp.invalid"}"#)
        );
        assert!(matches!(
            auth.authenticate(&crit).await,
            Err(AuthError::UnsupportedCritical)
        ));
    }

    #[test]
    fn new_needs_no_runtime_and_rejects_duplicates() {
        let one = OidcIssuerConfig::new("https://idp.invalid", vec!["a".into()]);
        let cfg = AuthnConfig {
            oidc: vec![one.clone(), one],
            static_tokens: vec![],
        };
        assert!(matches!(
            Authenticator::new(&cfg),
            Err(ConfigError::DuplicateIssuer { .. })
        ));
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Authenticator>();
    }
}
