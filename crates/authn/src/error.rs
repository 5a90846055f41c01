//! Errors of the authn crate.
//!
//! `AuthError`'s `Display` is what the gateway logs for a rejected request, so every message is
//! a short, fixed reason: never the token, never a claim value (a claim may carry personal or
//! secret data), at most the *name* of a claim from configuration.

use std::path::PathBuf;

/// Why a bearer token was rejected. The gateway answers every variant with
/// `401 Unauthorized`; the variants exist for logs and metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented (empty string after trimming).
    #[error("no bearer token")]
    Missing,
    /// Not a static token and not a well-formed JWS compact JWT.
    #[error("token is not a recognised static token or well-formed jwt")]
    Malformed,
    /// The JWT's `iss` is not one of the configured issuers.
    #[error("token issuer is not trusted")]
    UnknownIssuer,
    /// The JWT's `alg` is not on the issuer's allow-list (this covers `none` and HS*).
    #[error("token signing algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The JWT header carries a `crit` extension we do not implement (RFC 7515 §4.1.11).
    #[error("token has unsupported critical header parameters")]
    UnsupportedCritical,
    /// No key of the issuer's JWKS has the token's `kid` (even after a refresh).
    #[error("token signing key is unknown")]
    UnknownKey,
    /// The key named by `kid` cannot be used with the token's `alg` (kty/crv/alg/use mismatch).
    #[error("token algorithm does not match its signing key")]
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the allowed clock skew).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the allowed clock skew).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// `iss` does not equal the issuer whose key verified the token.
    #[error("token issuer does not match")]
    WrongIssuer,
    /// `aud` does not contain any configured audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A required claim is absent. Carries the claim *name* only.
    #[error("token lacks required claim {0:?}")]
    MissingClaim(String),
    /// A claim has the wrong type or a rejected value. Carries the claim *name* only.
    #[error("token claim {0:?} is invalid")]
    InvalidClaim(String),
    /// The issuer's keys could not be fetched and none are cached.
    #[error("signing keys of the token issuer are unavailable")]
    KeysUnavailable(#[source] FetchError),
}

/// A failure talking to an identity provider (discovery, JWKS, token endpoints).
///
/// Messages name the URL (configuration, not secret) but never a response body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection, TLS or protocol failure.
    #[error("request to {url} failed")]
    Transport {
        /// The URL requested.
        url: String,
        /// The underlying client error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// Reading the response body failed or it exceeded the size limit.
    #[error("reading the response from {url} failed")]
    Body {
        /// The URL requested.
        url: String,
    },
    /// No response within the deadline.
    #[error("request to {url} timed out")]
    Timeout {
        /// The URL requested.
        url: String,
    },
    /// A non-success HTTP status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The body is not the JSON document expected.
    #[error("{url} returned an invalid document")]
    Json {
        /// The URL requested.
        url: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Discovery returned an `issuer` different from the configured one (OpenID Connect
    /// Discovery §4.3: the values must be identical).
    #[error("discovery document of {expected} names issuer {found}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The issuer in the discovery document.
        found: String,
    },
    /// A URL is unusable (bad syntax, or plain http where https is required).
    #[error("url {url} is not allowed: {reason}")]
    BadUrl {
        /// The offending URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// A fetch failed moments ago and the retry is rate-limited.
    #[error("fetching the keys of {issuer} failed recently; retry later")]
    RecentlyFailed {
        /// The configured issuer.
        issuer: String,
    },
    /// The request could not be built.
    #[error("building the request to {url} failed")]
    Request {
        /// The URL requested.
        url: String,
    },
}

/// Configuration that cannot be used. Messages say which issuer or entry and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The issuer is not an absolute URL without query or fragment.
    #[error("oidc issuer {issuer:?}: {reason}")]
    InvalidIssuer {
        /// The configured issuer.
        issuer: String,
        /// Why.
        reason: &'static str,
    },
    /// The same issuer is configured twice.
    #[error("oidc issuer {issuer:?} is configured more than once")]
    DuplicateIssuer {
        /// The configured issuer.
        issuer: String,
    },
    /// `audiences` is empty.
    #[error("oidc issuer {issuer:?}: audiences must not be empty")]
    NoAudiences {
        /// The configured issuer.
        issuer: String,
    },
    /// `allowed_algorithms` is empty.
    #[error("oidc issuer {issuer:?}: allowed_algorithms must not be empty")]
    NoAlgorithms {
        /// The configured issuer.
        issuer: String,
    },
    /// An algorithm that must never be accepted (`none`, HS*) or that is not supported.
    #[error("oidc issuer {issuer:?}: algorithm {alg:?} is not allowed (use RS256/384/512, PS256/384/512, ES256/384 or EdDSA)")]
    BadAlgorithm {
        /// The configured issuer.
        issuer: String,
        /// The algorithm as written.
        alg: String,
    },
    /// A field that must not be empty is empty.
    #[error("oidc issuer {issuer:?}: {field} must not be empty")]
    EmptyField {
        /// The configured issuer.
        issuer: String,
        /// The field name.
        field: &'static str,
    },
    /// `ca_file` cannot be read or holds no usable certificate.
    #[error("ca file {path}: {reason}")]
    CaFile {
        /// The configured path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Building the TLS client configuration failed.
    #[error("tls client configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// A static token entry's `sha256` is not 64 hex digits.
    #[error("static token for user {user:?}: sha256 must be 64 hex digits")]
    StaticTokenHash {
        /// The entry's user.
        user: String,
    },
    /// A static token entry has an empty `user`.
    #[error("static token entry has an empty user")]
    StaticTokenUser,
}
