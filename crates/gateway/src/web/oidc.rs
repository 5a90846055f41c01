//! The OpenID Connect authorization code flow with PKCE (S256) for browser login.
//!
//! 1. `/auth/login`: a fresh `state`, `nonce` and `code_verifier` (kept server-side, see
//!    `auth`), then a redirect to the issuer's `authorization_endpoint` with
//!    `code_challenge = BASE64URL(SHA-256(code_verifier))`.
//! 2. `/auth/callback`: the code is exchanged at the token endpoint with the verifier, and the
//!    ID token is verified by the same code that verifies agents' tokens (`authn`: discovery,
//!    JWKS cache, asymmetric algorithms only, `iss`, `aud` = our client id, `exp`/`nbf`/`iat`),
//!    then its `nonce` must be the one we sent.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::config::WebSettings;

/// Why a login failed. Shown to the user: no token or claim value inside.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the identity provider could not be reached or refused: {0}")]
    Provider(String),
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("the ID token's nonce does not match this login")]
    Nonce,
}

/// The web UI as an OAuth client of one issuer.
pub struct Login {
    client: authn::client::OidcClient,
    /// Verifies ID tokens: `aud` must be our client id.
    verifier: authn::Authenticator,
    client_id: String,
    redirect_uri: String,
    scope: String,
}

/// `BASE64URL(SHA-256(verifier))`, RFC 7636 §4.2.
pub fn code_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Login {
    /// Reads the client secret file; does no network I/O.
    pub fn new(settings: &WebSettings, base_url: &str) -> Result<Login, String> {
        let secret = match &settings.client_secret_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("{}: {e}", p.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let client = authn::client::OidcClient::new(
            &settings.issuer,
            &settings.client_id,
            secret.as_deref(),
            settings.ca_file.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        let mut issuer =
            authn::OidcIssuerConfig::new(settings.issuer.clone(), vec![settings.client_id.clone()]);
        issuer.username_claim = settings.username_claim.clone();
        // The user name is shown and recorded as the IdP gives it.
        issuer.username_prefix = Some(String::new());
        issuer.groups_claim = settings.groups_claim.clone();
        issuer.ca_file = settings.ca_file.clone();
        issuer.allow_insecure_http = settings.allow_insecure_http;
        let verifier = authn::Authenticator::new(&authn::AuthnConfig {
            oidc: vec![issuer],
            static_tokens: vec![],
        })
        .map_err(|e| e.to_string())?;
        Ok(Login {
            client,
            verifier,
            client_id: settings.client_id.clone(),
            redirect_uri: format!("{base_url}/auth/callback"),
            scope: settings.scopes.join(" "),
        })
    }

    /// The URL to send the browser to.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, LoginError> {
        let endpoint = self
            .client
            .authorization_endpoint()
            .await
            .map_err(|e| LoginError::Provider(e.to_string()))?;
        let mut url =
            url::Url::parse(&endpoint).map_err(|e| LoginError::Provider(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scope)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &code_challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Exchanges the code and verifies the ID token; returns who logged in.
    pub async fn finish(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<authn::Identity, LoginError> {
        let tokens = self
            .client
            .authorization_code(code, &self.redirect_uri, verifier)
            .await
            .map_err(|e| LoginError::Provider(e.to_string()))?;
        let id_token = tokens.id_token.ok_or(LoginError::NoIdToken)?;
        let identity = self
            .verifier
            .authenticate(&id_token)
            .await
            .map_err(|e| LoginError::IdToken(e.to_string()))?;
        // The signature is verified above, so the payload can be read as it is.
        if token_nonce(&id_token).as_deref() != Some(nonce) {
            return Err(LoginError::Nonce);
        }
        Ok(identity)
    }
}

/// The `nonce` claim of a (verified) compact JWS.
fn token_nonce(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("nonce")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn nonce_from_payload() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let t = format!("{}.{}.sig", b64("{}"), b64(r#"{"nonce":"n-1"}"#));
        assert_eq!(token_nonce(&t).as_deref(), Some("n-1"));
        assert_eq!(token_nonce("garbage"), None);
    }
}
