//! Raw configuration (serde) and its validation into the settings the code uses.

use std::collections::HashSet;
use std::path::PathBuf;

use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How agents authenticate: any number of OIDC issuers and static tokens.
///
/// ```yaml
/// oidc:
///   - issuer: https://idp.example.com/realms/agents
///     audiences: [airlock]
///     username_claim: sub          # default
///     groups_claim: groups         # default
/// static_tokens:
///   - sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
///     user: ci-bot
///     groups: [airlock:ci]
/// ```
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnConfig {
    /// Trusted OpenID Connect issuers whose JWT access or ID tokens are accepted.
    #[serde(default)]
    pub oidc: Vec<OidcIssuerConfig>,
    /// Long-lived tokens, stored as SHA-256 hashes (see [`crate::hash_token`]).
    #[serde(default)]
    pub static_tokens: Vec<StaticTokenConfig>,
}

/// One trusted OIDC issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// Issuer URL, exactly as it appears in the tokens' `iss` claim and in the discovery
    /// document (`<issuer>/.well-known/openid-configuration`). Must be `https://`, unless
    /// `allow_insecure_http` is set and the host is loopback.
    pub issuer: String,
    /// Accepted audiences: a token's `aud` (string or array) must contain at least one.
    pub audiences: Vec<String>,
    /// Claim that names the user. Default `sub`.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Prefix for the user name. When absent, like kube-apiserver: claims other than `email`
    /// are prefixed with `<issuer>#` (so `sub` values of two issuers cannot collide), `email`
    /// is not prefixed. `"-"` or `""` disables prefixing.
    #[serde(default)]
    pub username_prefix: Option<String>,
    /// Claim holding the groups (array of strings, or one string). Default `groups`.
    /// A missing claim means no groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Prefix added to every group, e.g. `oidc:`. Default none.
    #[serde(default)]
    pub groups_prefix: Option<String>,
    /// Extra PEM CA bundle trusted for the issuer's TLS, in addition to the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accepted JWS algorithms. Default `[RS256, ES256, EdDSA]`. Allowed values: RS256, RS384,
    /// RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. `none` and HS* are rejected: a
    /// symmetric algorithm would let anyone holding the public key forge tokens.
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<String>,
    /// Tolerated clock difference for `exp`, `nbf` and `iat`, seconds. Default 60.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Period of the background JWKS refresh ([`crate::Authenticator::spawn_refresh`]),
    /// seconds. Default 300.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// Minimum time between two JWKS fetches triggered by tokens with an unknown `kid`,
    /// seconds. Default 10. Bounds the load that forged tokens can put on the IdP.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_seconds: u64,
    /// Allow plain `http://` for the issuer and its JWKS. Only honoured when the issuer's host
    /// is loopback (`127.0.0.0/8`, `::1`, `localhost`); meant for tests. Default false.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// One static token. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenConfig {
    /// Lower- or upper-case hex of SHA-256 of the token (`printf %s TOKEN | sha256sum`).
    pub sha256: String,
    /// User name the token authenticates as.
    pub user: String,
    /// Groups of that user.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_username_claim() -> String {
    "sub".to_owned()
}
fn default_groups_claim() -> String {
    "groups".to_owned()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()]
}
fn default_clock_skew() -> u64 {
    60
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refresh() -> u64 {
    10
}

impl OidcIssuerConfig {
    /// A config with every optional field at its default.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            username_claim: default_username_claim(),
            username_prefix: None,
            groups_claim: default_groups_claim(),
            groups_prefix: None,
            ca_file: None,
            allowed_algorithms: default_algorithms(),
            clock_skew_seconds: default_clock_skew(),
            jwks_refresh_seconds: default_jwks_refresh(),
            jwks_min_refresh_seconds: default_jwks_min_refresh(),
            allow_insecure_http: false,
        }
    }
}

// === validated settings ===

/// How claims become an [`crate::Identity`]; validated from [`OidcIssuerConfig`].
#[derive(Debug, Clone)]
pub(crate) struct ClaimMapping {
    pub username_claim: String,
    /// Already resolved: `None` config became `<issuer>#` or empty.
    pub username_prefix: String,
    pub groups_claim: String,
    pub groups_prefix: String,
}

/// Validated per-issuer settings.
#[derive(Debug, Clone)]
pub(crate) struct IssuerSettings {
    pub issuer: String,
    pub audiences: HashSet<String>,
    pub mapping: ClaimMapping,
    pub algorithms: Vec<Algorithm>,
    pub clock_skew: u64,
    pub jwks_refresh: std::time::Duration,
    pub jwks_min_refresh: std::time::Duration,
    /// True when plain http is acceptable (flag set and issuer host is loopback).
    pub insecure_http: bool,
    pub ca_file: Option<PathBuf>,
}

/// Parses an algorithm name from configuration; `None` for anything we refuse.
pub(crate) fn parse_algorithm(name: &str) -> Option<Algorithm> {
    // Only asymmetric algorithms: with HS* the verification key is a shared secret, and an
    // IdP's JWKS is public.
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl IssuerSettings {
    pub(crate) fn from_config(cfg: &OidcIssuerConfig) -> Result<Self, ConfigError> {
        let issuer = cfg.issuer.clone();
        let bad = |reason| ConfigError::InvalidIssuer {
            issuer: issuer.clone(),
            reason,
        };
        let url = url::Url::parse(&cfg.issuer).map_err(|_| bad("not a valid url"))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        if url.host().is_none() {
            return Err(bad("has no host"));
        }
        let insecure_http = match url.scheme() {
            "https" => false,
            "http" if cfg.allow_insecure_http && is_loopback(&url) => true,
            "http" if cfg.allow_insecure_http => {
                return Err(bad(
                    "allow_insecure_http is only honoured for loopback issuers",
                ))
            }
            "http" => {
                return Err(bad(
                    "must use https (allow_insecure_http is for loopback tests)",
                ))
            }
            _ => return Err(bad("scheme must be https")),
        };
        if cfg.audiences.iter().all(|a| a.is_empty()) {
            return Err(ConfigError::NoAudiences { issuer });
        }
        if cfg.allowed_algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms { issuer });
        }
        let mut algorithms = Vec::new();
        for name in &cfg.allowed_algorithms {
            let alg = parse_algorithm(name).ok_or_else(|| ConfigError::BadAlgorithm {
                issuer: issuer.clone(),
                alg: name.clone(),
            })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        for (field, value) in [
            ("username_claim", &cfg.username_claim),
            ("groups_claim", &cfg.groups_claim),
        ] {
            if value.is_empty() {
                return Err(ConfigError::EmptyField {
                    issuer: issuer.clone(),
                    field,
                });
            }
        }
        let username_prefix = match cfg.username_prefix.as_deref() {
            Some("-") | Some("") => String::new(),
            Some(p) => p.to_owned(),
            // kube-apiserver's rule: emails are globally meaningful, other claims are only
            // unique within their issuer.
            None if cfg.username_claim == "email" => String::new(),
            None => format!("{}#", cfg.issuer),
        };
        let groups_prefix = match cfg.groups_prefix.as_deref() {
            Some("-") | None => String::new(),
            Some(p) => p.to_owned(),
        };
        Ok(Self {
            issuer: cfg.issuer.clone(),
            audiences: cfg
                .audiences
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            mapping: ClaimMapping {
                username_claim: cfg.username_claim.clone(),
                username_prefix,
                groups_claim: cfg.groups_claim.clone(),
                groups_prefix,
            },
            algorithms,
            clock_skew: cfg.clock_skew_seconds,
            jwks_refresh: std::time::Duration::from_secs(cfg.jwks_refresh_seconds.max(1)),
            jwks_min_refresh: std::time::Duration::from_secs(cfg.jwks_min_refresh_seconds),
            insecure_http,
            ca_file: cfg.ca_file.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(issuer: &str) -> OidcIssuerConfig {
        OidcIssuerConfig::new(issuer, vec!["airlock".into()])
    }

    #[test]
    fn issuer_validation_table() {
        // (issuer, allow_insecure_http, algorithms, ok?)
        let cases: &[(&str, bool, &[&str], bool)] = &[
            ("https://idp.example.com", false, &["RS256"], true),
            (
                "https://idp.example.com/realms/x",
                false,
                &["ES256", "EdDSA"],
                true,
            ),
            ("http://idp.example.com", false, &["RS256"], false),
            ("http://idp.example.com", true, &["RS256"], false),
            ("http://127.0.0.1:8080", true, &["RS256"], true),
            ("http://localhost:8080", true, &["RS256"], true),
            ("http://[::1]:8080", true, &["RS256"], true),
            ("http://127.0.0.1:8080", false, &["RS256"], false),
            ("https://idp.example.com?x=1", false, &["RS256"], false),
            ("not a url", false, &["RS256"], false),
            ("https://idp.example.com", false, &[], false),
            ("https://idp.example.com", false, &["none"], false),
            ("https://idp.example.com", false, &["HS256"], false),
            ("https://idp.example.com", false, &["RS256", "HS512"], false),
            ("https://idp.example.com", false, &["rs256"], false),
        ];
        for (issuer, insecure, algs, ok) in cases {
            let mut c = cfg(issuer);
            c.allow_insecure_http = *insecure;
            c.allowed_algorithms = algs.iter().map(|s| s.to_string()).collect();
            let got = IssuerSettings::from_config(&c);
            assert_eq!(
                got.is_ok(),
                *ok,
                "{issuer} insecure={insecure} algs={algs:?}: {got:?}"
            );
        }
    }

    #[test]
    fn empty_audiences_rejected() {
        let mut c = cfg("https://idp.example.com");
        c.audiences = vec![];
        assert!(matches!(
            IssuerSettings::from_config(&c),
            Err(ConfigError::NoAudiences { .. })
        ));
    }

    #[test]
    fn username_prefix_defaults() {
        // (claim, configured prefix, expected resolved prefix)
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("sub", None, "https://idp.example.com#"),
            ("email", None, ""),
            ("sub", Some("-"), ""),
            ("sub", Some(""), ""),
            ("sub", Some("oidc:"), "oidc:"),
            ("email", Some("oidc:"), "oidc:"),
        ];
        for (claim, prefix, want) in cases {
            let mut c = cfg("https://idp.example.com");
            c.username_claim = claim.to_string();
            c.username_prefix = prefix.map(str::to_owned);
            let s = IssuerSettings::from_config(&c).unwrap();
            assert_eq!(s.mapping.username_prefix, *want, "{claim} {prefix:?}");
        }
    }

    #[test]
    fn yaml_defaults() {
        let c: AuthnConfig = serde_yaml_from(
            r#"{"oidc":[{"issuer":"https://i","audiences":["a"]}],"static_tokens":[{"sha256":"00","user":"u"}]}"#,
        );
        let o = &c.oidc[0];
        assert_eq!(o.username_claim, "sub");
        assert_eq!(o.groups_claim, "groups");
        assert_eq!(o.allowed_algorithms, ["RS256", "ES256", "EdDSA"]);
        assert_eq!(o.clock_skew_seconds, 60);
        assert_eq!(o.jwks_refresh_seconds, 300);
        assert_eq!(o.jwks_min_refresh_seconds, 10);
        assert!(!o.allow_insecure_http);
        assert!(c.static_tokens[0].groups.is_empty());
    }

    fn serde_yaml_from(s: &str) -> AuthnConfig {
        serde_json::from_str(s).unwrap()
    }
}
