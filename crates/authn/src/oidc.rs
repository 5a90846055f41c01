//! One trusted issuer: discovery, the JWKS cache and token verification.
//!
//! Key cache rules:
//! - Keys are fetched lazily (first token) and then kept; a failed fetch never drops keys we
//!   already have, so an IdP outage does not log anyone out while their keys are cached.
//! - A token whose `kid` is not cached triggers a refresh, at most once per
//!   `jwks_min_refresh` per issuer, so a flood of forged `kid`s cannot hammer the IdP.
//! - Concurrent refreshes are collapsed into one (single flight behind a mutex).
//! - A successful fetch replaces the set: keys the IdP dropped stop verifying.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::claims;
use crate::config::IssuerSettings;
use crate::error::{AuthError, FetchError};
use crate::http::HttpClient;
use crate::jwks::{parse_jwks, VerifyKey};
use crate::Identity;

/// The parts of the JOSE header we act on.
#[derive(Deserialize)]
pub(crate) struct RawHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub crit: Option<Value>,
}

/// The subset of the discovery document we use.
#[derive(Deserialize)]
pub(crate) struct Discovery {
    pub issuer: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// Fetches `<issuer>/.well-known/openid-configuration` and checks its `issuer`.
pub(crate) async fn discover(http: &HttpClient, issuer: &str) -> Result<Discovery, FetchError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = http.get_json(&url).await?;
    // OpenID Connect Discovery §4.3: must be identical, else a compromised or confused
    // discovery endpoint could point us at someone else's keys.
    if doc.issuer != issuer {
        return Err(FetchError::IssuerMismatch {
            expected: issuer.to_owned(),
            found: doc.issuer,
        });
    }
    Ok(doc)
}

#[derive(Default)]
struct RefreshState {
    /// When the last fetch was attempted (success or not).
    last_attempt: Option<Instant>,
    /// The JWKS URL from discovery, once known.
    jwks_uri: Option<String>,
}

/// Runtime state of one issuer.
pub(crate) struct IssuerState {
    pub settings: IssuerSettings,
    http: HttpClient,
    /// Current keys. A std lock: held only to clone the `Arc`, never across an await.
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl IssuerState {
    pub(crate) fn new(settings: IssuerSettings, http: HttpClient) -> Self {
        Self {
            settings,
            http,
            keys: RwLock::new(Arc::new(Vec::new())),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    fn snapshot(&self) -> Arc<Vec<VerifyKey>> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the value is
        // still a complete key set.
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, keys: Vec<VerifyKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// Fetches discovery (once) and the JWKS; replaces the cached keys on success.
    async fn fetch(&self, state: &mut RefreshState) -> Result<(), FetchError> {
        state.last_attempt = Some(Instant::now());
        let jwks_uri = match &state.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let doc = discover(&self.http, &self.settings.issuer).await?;
                let uri = doc.jwks_uri.ok_or_else(|| FetchError::BadUrl {
                    url: self.settings.issuer.clone(),
                    reason: "discovery document has no jwks_uri",
                })?;
                self.http.check_url(&uri)?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let fetched = match self.http.get_raw(&jwks_uri).await {
            Ok(body) => parse_jwks(&body).map_err(|source| FetchError::Json {
                url: jwks_uri.clone(),
                source,
            }),
            Err(e) => Err(e),
        };
        let keys = match fetched {
            Ok(keys) => keys,
            Err(e) => {
                // The IdP may have moved its JWKS; rediscover on the next attempt.
                state.jwks_uri = None;
                return Err(e);
            }
        };
        tracing::debug!(issuer = %self.settings.issuer, keys = keys.len(), "jwks refreshed");
        self.install(keys);
        Ok(())
    }

    /// Periodic refresh: always fetches (the timer is the rate limit). Errors are logged.
    pub(crate) async fn refresh_now(&self) {
        let mut state = self.refresh.lock().await;
        if let Err(e) = self.fetch(&mut state).await {
            tracing::warn!(issuer = %self.settings.issuer, error = %chain(&e), "jwks refresh failed");
        }
    }

    /// On-demand refresh for a missing key. Returns the key set to use afterwards.
    /// `seen` is the set the caller looked at, to detect a refresh done meanwhile.
    async fn refresh_for_miss(
        &self,
        seen: &Arc<Vec<VerifyKey>>,
    ) -> Result<Arc<Vec<VerifyKey>>, AuthError> {
        let mut state = self.refresh.lock().await;
        let current = self.snapshot();
        if !Arc::ptr_eq(&current, seen) {
            // Someone else refreshed while we waited for the lock.
            return Ok(current);
        }
        let recent = state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.settings.jwks_min_refresh);
        if !recent {
            if let Err(e) = self.fetch(&mut state).await {
                tracing::warn!(issuer = %self.settings.issuer, error = %chain(&e), "jwks fetch failed");
                if current.is_empty() {
                    return Err(AuthError::KeysUnavailable(e));
                }
                return Ok(current);
            }
            return Ok(self.snapshot());
        }
        if current.is_empty() {
            // Rate-limited and never had keys: the IdP was unreachable a moment ago.
            return Err(AuthError::KeysUnavailable(FetchError::RecentlyFailed {
                issuer: self.settings.issuer.clone(),
            }));
        }
        Ok(current)
    }

    /// Verifies a compact JWS whose unverified `iss` named this issuer.
    pub(crate) async fn verify(
        &self,
        token: &str,
        header: &RawHeader,
    ) -> Result<Identity, AuthError> {
        let alg = crate::config::parse_algorithm(&header.alg)
            .filter(|a| self.settings.algorithms.contains(a))
            .ok_or(AuthError::AlgorithmNotAllowed)?;

        let mut keys = self.snapshot();
        let mut candidates = select(&keys, header.kid.as_deref(), alg)?;
        if candidates.is_empty() {
            keys = self.refresh_for_miss(&keys).await?;
            candidates = select(&keys, header.kid.as_deref(), alg)?;
        }
        if candidates.is_empty() {
            return Err(AuthError::UnknownKey);
        }

        // Signature only; claims are checked below with our own rules and error mapping.
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;

        let mut result = Err(AuthError::BadSignature);
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    result = Ok(data.claims);
                    break;
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    result = Err(match e.kind() {
                        K::InvalidSignature
                        | K::InvalidEcdsaKey
                        | K::InvalidEddsaKey
                        | K::InvalidRsaKey(_) => AuthError::BadSignature,
                        K::InvalidAlgorithm => AuthError::KeyAlgorithmMismatch,
                        _ => AuthError::Malformed,
                    });
                }
            }
        }
        let claims = result?;
        let now = claims::unix_now();
        let exp = claims::check_time(&claims, now, self.settings.clock_skew)?;
        claims::check_issuer(&claims, &self.settings.issuer)?;
        claims::check_audience(&claims, &self.settings.audiences)?;
        claims::map_identity(&self.settings.mapping, &self.settings.issuer, exp, &claims)
    }
}

/// An error with its causes, `a: b: c`: operators need the TLS or connect reason, which
/// lives in the sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Keys that may verify a token with this `kid` and `alg`.
///
/// With a `kid`, only keys with that id are considered; if they exist but do not fit `alg`
/// the token is rejected outright (never "try the other keys"). Without a `kid`, every key
/// that fits `alg` is a candidate, as go-oidc does.
fn select(
    keys: &[VerifyKey],
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Vec<VerifyKey>, AuthError> {
    match kid {
        Some(kid) => {
            let named: Vec<_> = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if !named.is_empty() && named.iter().all(|k| !k.fits(alg)) {
                return Err(AuthError::KeyAlgorithmMismatch);
            }
            Ok(named.into_iter().filter(|k| k.fits(alg)).cloned().collect())
        }
        None => Ok(keys.iter().filter(|k| k.fits(alg)).cloned().collect()),
    }
}
