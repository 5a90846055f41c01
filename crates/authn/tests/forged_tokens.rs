//! The bad-token suite: tokens forged in Rust against an issuer whose keys the test owns, so
//! each rejection is for the stated reason and not an incidental one (the valid twin of every
//! bad token passes).

mod common;

use std::time::Duration;

use authn::{AuthError, Authenticator, AuthnConfig};
use common::{b64, issuer_config, keys, now, sign, MockIssuer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const AUD: &str = "airlock";

fn jwks_all() -> Value {
    let k = keys();
    json!({"keys": [k.rsa.jwk, k.ec.jwk, k.ed.jwk]})
}

fn good_claims(iss: &str) -> Value {
    let t = now();
    json!({"iss": iss, "aud": AUD, "sub": "agent-7", "exp": t + 300, "iat": t,
           "groups": ["team-a", "team-b"], "azp": "agent-cli", "sid": "sess-1"})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

fn hs256(secret: &[u8], kid: &str, claims: &Value) -> String {
    hmac(Algorithm::HS256, secret, kid, claims)
}

fn hmac(alg: Algorithm, secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn unsigned(header: Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64(header.to_string()),
        b64(claims.to_string())
    )
}

async fn setup(cfg_edit: impl FnOnce(&mut authn::OidcIssuerConfig)) -> (MockIssuer, Authenticator) {
    let mock = MockIssuer::start(jwks_all()).await;
    let mut oc = issuer_config(&mock.issuer, AUD);
    cfg_edit(&mut oc);
    let auth = Authenticator::new(&AuthnConfig {
        oidc: vec![oc],
        static_tokens: vec![],
    })
    .unwrap();
    (mock, auth)
}

/// Short name of an error variant, for table comparison.
fn kind(e: &AuthError) -> String {
    match e {
        AuthError::Missing => "Missing".into(),
        AuthError::Malformed => "Malformed".into(),
        AuthError::UnknownIssuer => "UnknownIssuer".into(),
        AuthError::AlgorithmNotAllowed => "AlgorithmNotAllowed".into(),
        AuthError::UnsupportedCritical => "UnsupportedCritical".into(),
        AuthError::UnknownKey => "UnknownKey".into(),
        AuthError::KeyAlgorithmMismatch => "KeyAlgorithmMismatch".into(),
        AuthError::BadSignature => "BadSignature".into(),
        AuthError::Expired => "Expired".into(),
        AuthError::NotYetValid => "NotYetValid".into(),
        AuthError::IssuedInFuture => "IssuedInFuture".into(),
        AuthError::WrongIssuer => "WrongIssuer".into(),
        AuthError::WrongAudience => "WrongAudience".into(),
        AuthError::MissingClaim(c) => format!("MissingClaim({c})"),
        AuthError::InvalidClaim(c) => format!("InvalidClaim({c})"),
        AuthError::KeysUnavailable(_) => "KeysUnavailable".into(),
        _ => "other".into(),
    }
}

#[tokio::test]
async fn forged_token_table() {
    let (mock, auth) = setup(|_| {}).await;
    let k = keys();
    let iss = mock.issuer.clone();
    let good = good_claims(&iss);
    let t = now();

    let valid_rs = sign(&k.rsa, &good);
    let tampered = {
        let parts: Vec<&str> = valid_rs.split('.').collect();
        let evil = with(good.clone(), "sub", json!("cluster-admin"));
        format!("{}.{}.{}", parts[0], b64(evil.to_string()), parts[2])
    };
    let bad_sig = {
        let (head, sig) = valid_rs.rsplit_once('.').unwrap();
        let mut sig: Vec<char> = sig.chars().collect();
        sig[10] = if sig[10] == 'A' { 'B' } else { 'A' };
        format!("{head}.{}", sig.into_iter().collect::<String>())
    };
    let truncated_sig = valid_rs[..valid_rs.len() - 8].to_owned();
    let other_sig = {
        let other = sign(&k.rsa, &with(good.clone(), "sub", json!("someone-else")));
        format!(
            "{}.{}",
            valid_rs.rsplit_once('.').unwrap().0,
            other.rsplit_once('.').unwrap().1
        )
    };
    let unknown_kid = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("nope".into());
        jsonwebtoken::encode(&h, &good, &k.rogue_rsa.encoding).unwrap()
    };
    let es_with_rsa_kid = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(k.rsa.kid.clone());
        jsonwebtoken::encode(&h, &good, &k.ec.encoding).unwrap()
    };
    let rs_with_ed_kid = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(k.ed.kid.clone());
        jsonwebtoken::encode(&h, &good, &k.rsa.encoding).unwrap()
    };
    let ps256 = {
        let mut h = Header::new(Algorithm::PS256);
        h.kid = Some(k.rsa.kid.clone());
        jsonwebtoken::encode(&h, &good, &k.rsa.encoding).unwrap()
    };
    let no_kid_ec =
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &good, &k.ec.encoding).unwrap();

    // (name, token, expected: Ok or error kind)
    let cases: Vec<(&str, String, Result<(), &str>)> = vec![
        ("valid RS256", valid_rs.clone(), Ok(())),
        ("valid ES256", sign(&k.ec, &good), Ok(())),
        ("valid EdDSA", sign(&k.ed, &good), Ok(())),
        ("valid without kid", no_kid_ec, Ok(())),
        (
            "aud array containing ours",
            sign(&k.rsa, &with(good.clone(), "aud", json!(["x", AUD]))),
            Ok(()),
        ),
        (
            "expired within skew",
            sign(&k.rsa, &with(good.clone(), "exp", json!(t - 10))),
            Ok(()),
        ),
        (
            "expired",
            sign(&k.rsa, &with(good.clone(), "exp", json!(t - 3600))),
            Err("Expired"),
        ),
        (
            "no exp",
            sign(&k.rsa, &with(good.clone(), "exp", Value::Null)),
            Err("MissingClaim(exp)"),
        ),
        (
            "not yet valid (nbf)",
            sign(&k.ed, &with(good.clone(), "nbf", json!(t + 3600))),
            Err("NotYetValid"),
        ),
        (
            "issued in the future (iat)",
            sign(&k.ec, &with(good.clone(), "iat", json!(t + 3600))),
            Err("IssuedInFuture"),
        ),
        (
            "wrong issuer",
            sign(
                &k.rsa,
                &with(good.clone(), "iss", json!("https://evil.example")),
            ),
            Err("UnknownIssuer"),
        ),
        (
            "issuer with trailing slash",
            sign(&k.rsa, &with(good.clone(), "iss", json!(format!("{iss}/")))),
            Err("UnknownIssuer"),
        ),
        (
            "no issuer",
            sign(&k.rsa, &with(good.clone(), "iss", Value::Null)),
            Err("MissingClaim(iss)"),
        ),
        (
            "wrong audience",
            sign(&k.rsa, &with(good.clone(), "aud", json!("kubernetes"))),
            Err("WrongAudience"),
        ),
        (
            "wrong audience array",
            sign(&k.rsa, &with(good.clone(), "aud", json!(["a", "b"]))),
            Err("WrongAudience"),
        ),
        (
            "no audience",
            sign(&k.rsa, &with(good.clone(), "aud", Value::Null)),
            Err("MissingClaim(aud)"),
        ),
        (
            "no sub",
            sign(&k.rsa, &with(good.clone(), "sub", Value::Null)),
            Err("MissingClaim(sub)"),
        ),
        (
            "alg none, empty signature",
            unsigned(json!({"alg": "none", "kid": k.rsa.kid}), &good, ""),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "alg none with a signature",
            unsigned(json!({"alg": "none", "kid": k.rsa.kid}), &good, "c2ln"),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "alg NONE",
            unsigned(json!({"alg": "NONE"}), &good, ""),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "HS256 keyed with the RSA public key PEM",
            hs256(k.rsa.public_pem.as_bytes(), &k.rsa.kid, &good),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "HS256 keyed with the RSA modulus bytes",
            hs256(&k.rsa.public_raw, &k.rsa.kid, &good),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "HS256 keyed with the JWK JSON",
            hs256(k.rsa.jwk.to_string().as_bytes(), &k.rsa.kid, &good),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "HS256 keyed with the EC public key PEM",
            hs256(k.ec.public_pem.as_bytes(), &k.ec.kid, &good),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "HS512 keyed with the Ed25519 public key",
            hmac(Algorithm::HS512, &k.ed.public_raw, &k.ed.kid, &good),
            Err("AlgorithmNotAllowed"),
        ),
        (
            "PS256 not on the allow-list",
            ps256,
            Err("AlgorithmNotAllowed"),
        ),
        ("unknown kid", unknown_kid, Err("UnknownKey")),
        (
            "right kid, wrong key",
            sign(&k.rogue_rsa, &good),
            Err("BadSignature"),
        ),
        ("tampered payload", tampered, Err("BadSignature")),
        ("flipped signature byte", bad_sig, Err("BadSignature")),
        ("signature of another token", other_sig, Err("BadSignature")),
        (
            "truncated signature (not valid base64 any more)",
            truncated_sig,
            Err("Malformed"),
        ),
        (
            "ES256 header with the RSA key's kid",
            es_with_rsa_kid,
            Err("KeyAlgorithmMismatch"),
        ),
        (
            "RS256 header with the Ed25519 key's kid",
            rs_with_ed_kid,
            Err("KeyAlgorithmMismatch"),
        ),
        ("garbage", "garbage".into(), Err("Malformed")),
        ("three empty parts", "..".into(), Err("Malformed")),
        ("base64 of nonsense", "eyJ.eyJ.eyJ".into(), Err("Malformed")),
        (
            "two parts",
            valid_rs.rsplit_once('.').unwrap().0.to_owned(),
            Err("Malformed"),
        ),
        (
            "JWE-shaped (5 parts)",
            format!("{valid_rs}.a.b"),
            Err("Malformed"),
        ),
        ("empty", "   ".into(), Err("Missing")),
    ];
    let mut failures = Vec::new();
    for (name, token, want) in &cases {
        let got = auth.authenticate(token).await;
        let got_kind = got.as_ref().map(|_| ()).map_err(kind);
        if got_kind.as_ref().map_err(String::as_str) != want.as_ref().map_err(|s| *s) {
            failures.push(format!("{name}: got {got_kind:?}, want {want:?}"));
        }
        if let Err(e) = &got {
            // Errors are logged: they must not echo the token or claim values.
            let msg = format!("{e} {e:?}");
            assert!(
                !msg.contains("agent-7") && !msg.contains("cluster-admin"),
                "{name}: {msg}"
            );
            if token.len() > 20 {
                assert!(!msg.contains(token.as_str()), "{name}: {msg}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn valid_token_maps_to_identity() {
    let (mock, auth) = setup(|c| {
        c.groups_prefix = Some("oidc:".into());
    })
    .await;
    let claims = good_claims(&mock.issuer);
    let id = auth.authenticate(&sign(&keys().ed, &claims)).await.unwrap();
    assert_eq!(id.user, format!("{}#agent-7", mock.issuer));
    assert_eq!(id.uid.as_deref(), Some("agent-7"));
    assert_eq!(id.groups, ["oidc:team-a", "oidc:team-b"]);
    assert_eq!(id.client_id.as_deref(), Some("agent-cli"));
    assert_eq!(id.session_id.as_deref(), Some("sess-1"));
    assert_eq!(id.issuer.as_deref(), Some(mock.issuer.as_str()));
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(
        id.expires_at,
        Some(std::time::UNIX_EPOCH + Duration::from_secs(exp))
    );
}

#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited() {
    let (mock, auth) = setup(|c| c.jwks_min_refresh_seconds = 3600).await;
    let k = keys();
    let good = good_claims(&mock.issuer);
    auth.authenticate(&sign(&k.rsa, &good)).await.unwrap();
    assert_eq!(mock.fetches(), 1);
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("forged-kid".into());
    let forged = jsonwebtoken::encode(&h, &good, &k.rogue_rsa.encoding).unwrap();
    for _ in 0..20 {
        assert!(matches!(
            auth.authenticate(&forged).await,
            Err(AuthError::UnknownKey)
        ));
    }
    assert_eq!(
        mock.fetches(),
        1,
        "forged kids must not make us refetch within the interval"
    );
    // Known keys keep working meanwhile.
    auth.authenticate(&sign(&k.ec, &good)).await.unwrap();
}

#[tokio::test]
async fn concurrent_misses_fetch_once() {
    let (mock, auth) = setup(|_| {}).await;
    let token = sign(&keys().rsa, &good_claims(&mock.issuer));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (auth, token) = (auth.clone(), token.clone());
            tokio::spawn(async move { auth.authenticate(&token).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        mock.fetches(),
        1,
        "single flight: one fetch for many cold requests"
    );
}

#[tokio::test]
async fn rotation_drops_removed_keys_and_fetches_new_ones() {
    let (mock, auth) = setup(|_| {}).await;
    let k = keys();
    let good = good_claims(&mock.issuer);
    let old = sign(&k.rsa, &good);
    auth.authenticate(&old).await.unwrap();

    // The IdP rotates: publishes only the Ed25519 key plus a new RSA key under a new kid.
    let mut new_rsa = k.rogue_rsa.jwk.clone();
    new_rsa["kid"] = json!("rsa-2");
    mock.set_jwks(json!({"keys": [k.ed.jwk, new_rsa]}));
    // Still cached: the old token verifies without a fetch.
    auth.authenticate(&old).await.unwrap();
    assert_eq!(mock.fetches(), 1);

    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-2".into());
    let new = jsonwebtoken::encode(&h, &good, &k.rogue_rsa.encoding).unwrap();
    auth.authenticate(&new).await.unwrap();
    assert_eq!(mock.fetches(), 2, "new kid fetched on demand");
    // The refresh replaced the set: the removed key no longer verifies.
    assert!(matches!(
        auth.authenticate(&old).await,
        Err(AuthError::UnknownKey)
    ));
}

#[tokio::test]
async fn periodic_refresh_picks_up_rotation() {
    let (mock, auth) = setup(|c| {
        c.jwks_refresh_seconds = 1;
        c.jwks_min_refresh_seconds = 3600;
    })
    .await;
    let k = keys();
    let good = good_claims(&mock.issuer);
    auth.spawn_refresh();
    auth.authenticate(&sign(&k.rsa, &good)).await.unwrap();
    let mut new_ec = k.ec.jwk.clone();
    new_ec["kid"] = json!("ec-2");
    mock.set_jwks(json!({"keys": [k.rsa.jwk, new_ec]}));
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-2".into());
    let token = jsonwebtoken::encode(&h, &good, &k.ec.encoding).unwrap();
    // Bounded wait for the 1 s timer; on-demand refresh is rate-limited to an hour here.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match auth.authenticate(&token).await {
            Ok(_) => break,
            Err(AuthError::UnknownKey) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("periodic refresh did not pick up the new key: {e}"),
        }
    }
}

#[tokio::test]
async fn discovery_issuer_mismatch_is_refused() {
    let (mock, auth) = setup(|_| {}).await;
    *mock.discovery_issuer.lock().unwrap() = Some("http://127.0.0.1:1/evil".into());
    let err = auth
        .authenticate(&sign(&keys().rsa, &good_claims(&mock.issuer)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(mock.fetches(), 0);
}

#[tokio::test]
async fn unreachable_issuer_fails_closed_and_construction_needs_no_idp() {
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let auth = Authenticator::new(&AuthnConfig {
        oidc: vec![issuer_config(&issuer, AUD)],
        static_tokens: vec![],
    })
    .unwrap();
    let err = auth
        .authenticate(&sign(&keys().rsa, &good_claims(&issuer)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
}

#[tokio::test]
async fn allow_list_restricts_algorithms() {
    let (mock, auth) = setup(|c| c.allowed_algorithms = vec!["ES256".into()]).await;
    let k = keys();
    let good = good_claims(&mock.issuer);
    auth.authenticate(&sign(&k.ec, &good)).await.unwrap();
    for key in [&k.rsa, &k.ed] {
        assert!(matches!(
            auth.authenticate(&sign(key, &good)).await,
            Err(AuthError::AlgorithmNotAllowed)
        ));
    }
}

#[tokio::test]
async fn hs_algorithms_rejected_in_config() {
    for alg in ["HS256", "HS384", "HS512", "none"] {
        let mut c = issuer_config("http://127.0.0.1:1", AUD);
        c.allowed_algorithms = vec!["RS256".into(), alg.into()];
        let err = Authenticator::new(&AuthnConfig {
            oidc: vec![c],
            static_tokens: vec![],
        })
        .unwrap_err();
        assert!(
            matches!(err, authn::ConfigError::BadAlgorithm { .. }),
            "{alg}: {err:?}"
        );
    }
}
