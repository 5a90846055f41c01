//! Pure checks on verified JWT claims: time window, issuer, audience, and the mapping from
//! claims to an [`Identity`]. No I/O; `now` is passed in so tests are exact.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::config::ClaimMapping;
use crate::error::AuthError;
use crate::Identity;

type Claims = Map<String, Value>;

/// A NumericDate claim (RFC 7519 §2): seconds, possibly fractional. Absent -> `Ok(None)`.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    // Fractional seconds: truncation errs towards "expired earlier".
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
                    _ => Err(AuthError::InvalidClaim(name.to_owned())),
                }
            }
        }
        Some(_) => Err(AuthError::InvalidClaim(name.to_owned())),
    }
}

fn string_claim<'a>(claims: &'a Claims, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// Checks `exp` (required), `nbf` and `iat` (optional) against `now` with `skew` seconds of
/// tolerance. Returns `exp`.
pub(crate) fn check_time(claims: &Claims, now: u64, skew: u64) -> Result<u64, AuthError> {
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| AuthError::MissingClaim("exp".into()))?;
    // RFC 7519 §4.1.4: the current time must be before exp.
    if now >= exp.saturating_add(skew) {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if nbf > now.saturating_add(skew) {
            return Err(AuthError::NotYetValid);
        }
    }
    if let Some(iat) = numeric_date(claims, "iat")? {
        if iat > now.saturating_add(skew) {
            return Err(AuthError::IssuedInFuture);
        }
    }
    Ok(exp)
}

/// `iss` must be a string identical to the issuer (no normalisation, per OIDC Core §3.1.3.7).
pub(crate) fn check_issuer(claims: &Claims, issuer: &str) -> Result<(), AuthError> {
    match claims.get("iss") {
        None => Err(AuthError::MissingClaim("iss".into())),
        Some(Value::String(s)) if s == issuer => Ok(()),
        Some(Value::String(_)) => Err(AuthError::WrongIssuer),
        Some(_) => Err(AuthError::InvalidClaim("iss".into())),
    }
}

/// `aud` (string or array of strings) must contain at least one accepted audience.
pub(crate) fn check_audience(claims: &Claims, accepted: &HashSet<String>) -> Result<(), AuthError> {
    let ok = match claims.get("aud") {
        None | Some(Value::Null) => return Err(AuthError::MissingClaim("aud".into())),
        Some(Value::String(s)) => accepted.contains(s),
        Some(Value::Array(items)) => {
            let mut any = false;
            for item in items {
                match item {
                    Value::String(s) => any |= accepted.contains(s),
                    _ => return Err(AuthError::InvalidClaim("aud".into())),
                }
            }
            any
        }
        Some(_) => return Err(AuthError::InvalidClaim("aud".into())),
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::WrongAudience)
    }
}

/// Maps verified claims to an identity.
///
/// - user: `username_prefix` + the `username_claim` string (must be non-empty). When the claim
///   is `email` and `email_verified` is present, it must be `true` (kube-apiserver does the same).
/// - groups: `groups_claim` as an array of strings or a single string; absent means none;
///   each gets `groups_prefix`.
/// - uid: `sub`; client_id: `azp`, else `client_id`; session_id: `sid`.
pub(crate) fn map_identity(
    mapping: &ClaimMapping,
    issuer: &str,
    exp: u64,
    claims: &Claims,
) -> Result<Identity, AuthError> {
    let name = &mapping.username_claim;
    let user = match claims.get(name) {
        None | Some(Value::Null) => return Err(AuthError::MissingClaim(name.clone())),
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => return Err(AuthError::InvalidClaim(name.clone())),
    };
    if name == "email" {
        match claims.get("email_verified") {
            None | Some(Value::Bool(true)) => {}
            Some(_) => return Err(AuthError::InvalidClaim("email_verified".into())),
        }
    }
    let groups_claim = &mapping.groups_claim;
    let raw_groups: Vec<&str> = match claims.get(groups_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| AuthError::InvalidClaim(groups_claim.clone()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(AuthError::InvalidClaim(groups_claim.clone())),
    };
    let groups = raw_groups
        .into_iter()
        .map(|g| format!("{}{g}", mapping.groups_prefix))
        .collect();
    Ok(Identity {
        user: format!("{}{user}", mapping.username_prefix),
        uid: string_claim(claims, "sub").map(str::to_owned),
        groups,
        client_id: string_claim(claims, "azp")
            .or_else(|| string_claim(claims, "client_id"))
            .map(str::to_owned),
        session_id: string_claim(claims, "sid").map(str::to_owned),
        issuer: Some(issuer.to_owned()),
        expires_at: UNIX_EPOCH.checked_add(Duration::from_secs(exp)),
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn time_window_table() {
        // (claims, expected) with skew 60
        let cases: Vec<(Value, Result<u64, &str>)> = vec![
            (json!({"exp": NOW + 10}), Ok(NOW + 10)),
            (json!({"exp": NOW - 30}), Ok(NOW - 30)), // within skew
            (json!({"exp": NOW - 60}), Err("expired")),
            (json!({"exp": NOW - 3600}), Err("expired")),
            (json!({}), Err("missing")),
            (json!({"exp": "soon"}), Err("invalid")),
            (json!({"exp": -5}), Err("invalid")),
            (json!({"exp": (NOW + 10) as f64 + 0.5}), Ok(NOW + 10)),
            (json!({"exp": NOW + 600, "nbf": NOW + 30}), Ok(NOW + 600)),
            (json!({"exp": NOW + 600, "nbf": NOW + 61}), Err("nbf")),
            (json!({"exp": NOW + 600, "iat": NOW + 30}), Ok(NOW + 600)),
            (json!({"exp": NOW + 600, "iat": NOW + 3600}), Err("iat")),
            (json!({"exp": NOW + 600, "nbf": "x"}), Err("invalid")),
        ];
        for (c, want) in cases {
            let got = check_time(&claims(c.clone()), NOW, 60);
            let got = got.map_err(|e| match e {
                AuthError::Expired => "expired",
                AuthError::NotYetValid => "nbf",
                AuthError::IssuedInFuture => "iat",
                AuthError::MissingClaim(_) => "missing",
                AuthError::InvalidClaim(_) => "invalid",
                _ => "other",
            });
            assert_eq!(got, want, "{c}");
        }
    }

    #[test]
    fn issuer_and_audience_table() {
        let accepted: HashSet<String> = ["airlock".to_owned(), "kube".to_owned()].into();
        let cases: Vec<(Value, bool, bool)> = vec![
            // (claims, iss ok, aud ok)
            (json!({"iss": "https://i", "aud": "airlock"}), true, true),
            (
                json!({"iss": "https://i", "aud": ["x", "kube"]}),
                true,
                true,
            ),
            (
                json!({"iss": "https://i/", "aud": ["x", "y"]}),
                false,
                false,
            ),
            (json!({"iss": "https://other", "aud": "x"}), false, false),
            (json!({"aud": []}), false, false),
            (json!({"iss": 5, "aud": 5}), false, false),
            (
                json!({"iss": "https://i", "aud": ["airlock", 5]}),
                true,
                false,
            ),
        ];
        for (c, iss_ok, aud_ok) in cases {
            let c2 = claims(c.clone());
            assert_eq!(check_issuer(&c2, "https://i").is_ok(), iss_ok, "{c}");
            assert_eq!(check_audience(&c2, &accepted).is_ok(), aud_ok, "{c}");
        }
    }

    fn mapping(claim: &str, uprefix: &str, gclaim: &str, gprefix: &str) -> ClaimMapping {
        ClaimMapping {
            username_claim: claim.into(),
            username_prefix: uprefix.into(),
            groups_claim: gclaim.into(),
            groups_prefix: gprefix.into(),
        }
    }

    #[test]
    fn identity_mapping_table() {
        struct Case {
            name: &'static str,
            mapping: ClaimMapping,
            claims: Value,
            want: Result<(&'static str, Vec<&'static str>), &'static str>,
        }
        let cases = vec![
            Case {
                name: "sub with issuer prefix, groups array",
                mapping: mapping("sub", "https://i#", "groups", ""),
                claims: json!({"sub": "agent-1", "groups": ["a", "b"]}),
                want: Ok(("https://i#agent-1", vec!["a", "b"])),
            },
            Case {
                name: "email unprefixed, verified",
                mapping: mapping("email", "", "groups", ""),
                claims: json!({"sub": "1", "email": "a@x.io", "email_verified": true}),
                want: Ok(("a@x.io", vec![])),
            },
            Case {
                name: "email not verified",
                mapping: mapping("email", "", "groups", ""),
                claims: json!({"sub": "1", "email": "a@x.io", "email_verified": false}),
                want: Err("invalid:email_verified"),
            },
            Case {
                name: "email_verified as string is rejected",
                mapping: mapping("email", "", "groups", ""),
                claims: json!({"sub": "1", "email": "a@x.io", "email_verified": "true"}),
                want: Err("invalid:email_verified"),
            },
            Case {
                name: "custom claims and prefixes, single-string group",
                mapping: mapping("preferred_username", "oidc:", "roles", "oidc:"),
                claims: json!({"sub": "1", "preferred_username": "bob", "roles": "admin"}),
                want: Ok(("oidc:bob", vec!["oidc:admin"])),
            },
            Case {
                name: "missing username claim",
                mapping: mapping("preferred_username", "", "groups", ""),
                claims: json!({"sub": "1"}),
                want: Err("missing:preferred_username"),
            },
            Case {
                name: "empty username",
                mapping: mapping("sub", "", "groups", ""),
                claims: json!({"sub": ""}),
                want: Err("invalid:sub"),
            },
            Case {
                name: "numeric username",
                mapping: mapping("sub", "", "groups", ""),
                claims: json!({"sub": 42}),
                want: Err("invalid:sub"),
            },
            Case {
                name: "groups with a non-string",
                mapping: mapping("sub", "", "groups", ""),
                claims: json!({"sub": "x", "groups": ["a", 1]}),
                want: Err("invalid:groups"),
            },
            Case {
                name: "groups as object",
                mapping: mapping("sub", "", "groups", ""),
                claims: json!({"sub": "x", "groups": {"a": 1}}),
                want: Err("invalid:groups"),
            },
            Case {
                name: "groups null",
                mapping: mapping("sub", "", "groups", ""),
                claims: json!({"sub": "x", "groups": null}),
                want: Ok(("x", vec![])),
            },
        ];
        for case in cases {
            let got = map_identity(&case.mapping, "https://i", NOW, &claims(case.claims))
                .map(|id| (id.user, id.groups))
                .map_err(|e| match e {
                    AuthError::MissingClaim(c) => format!("missing:{c}"),
                    AuthError::InvalidClaim(c) => format!("invalid:{c}"),
                    other => other.to_string(),
                });
            let want = case
                .want
                .map(|(u, g)| (u.to_owned(), g.into_iter().map(str::to_owned).collect()))
                .map_err(str::to_owned);
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn identity_carries_client_session_and_expiry() {
        let m = mapping("sub", "", "groups", "");
        let id = map_identity(
            &m,
            "https://i",
            NOW,
            &claims(json!({"sub": "s", "client_id": "cid", "sid": "sess"})),
        )
        .unwrap();
        assert_eq!(id.uid.as_deref(), Some("s"));
        assert_eq!(id.client_id.as_deref(), Some("cid"));
        assert_eq!(id.session_id.as_deref(), Some("sess"));
        assert_eq!(id.issuer.as_deref(), Some("https://i"));
        assert_eq!(
            id.expires_at,
            UNIX_EPOCH.checked_add(Duration::from_secs(NOW))
        );
        // azp wins over client_id
        let id = map_identity(
            &m,
            "https://i",
            NOW,
            &claims(json!({"sub": "s", "client_id": "cid", "azp": "azp"})),
        )
        .unwrap();
        assert_eq!(id.client_id.as_deref(), Some("azp"));
    }
}
