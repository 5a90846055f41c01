//! Against a real OpenID Provider (npm `oidc-provider`, tests/oidc/provider.mjs): tokens it
//! issues with RS256, ES256 and EdDSA validate and map to the right identity; key rotation is
//! picked up on demand; cached keys keep working when the IdP dies; and the client side
//! (client credentials, device code, token cache) works against it.
//!
//! Needs `node` (skipped with a message when absent) and `npm ci --prefix tests/oidc`.

mod common;

use std::time::{Duration, SystemTime};

use authn::client::{self, OidcClient, TokenCache};
use authn::{AuthError, Authenticator, AuthnConfig};
use common::{issuer_config, post_json, Provider};

fn authenticator(p: &Provider, edit: impl FnOnce(&mut authn::OidcIssuerConfig)) -> Authenticator {
    let mut oc = issuer_config(&p.issuer, &p.audience());
    edit(&mut oc);
    Authenticator::new(&AuthnConfig {
        oidc: vec![oc],
        static_tokens: vec![],
    })
    .unwrap()
}

async fn token(p: &Provider, alg: &str) -> String {
    let (id, secret) = p.client(alg);
    client::client_credentials(&p.issuer, &id, &secret, None, Some(&p.audience()), None)
        .await
        .unwrap_or_else(|e| panic!("{alg} token: {e}"))
        .access_token
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn provider_tokens_validate_for_each_algorithm() {
    let Some(p) = Provider::start() else { return };
    let auth = authenticator(&p, |_| {});
    for (alg, group) in [
        ("RS256", "alg:rs256"),
        ("ES256", "alg:es256"),
        ("EdDSA", "alg:eddsa"),
    ] {
        let t = token(&p, alg).await;
        assert_eq!(
            jsonwebtoken::decode_header(&t).unwrap().alg,
            alg.parse().unwrap()
        );
        let (client_id, _) = p.client(alg);
        let id = auth
            .authenticate(&t)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(id.user, format!("{}#{client_id}", p.issuer), "{alg}");
        assert_eq!(id.uid.as_deref(), Some(client_id.as_str()));
        assert_eq!(id.groups, ["airlock:agents", group], "{alg}");
        assert_eq!(id.client_id.as_deref(), Some(client_id.as_str()));
        assert_eq!(id.issuer.as_deref(), Some(p.issuer.as_str()));
        let exp = id.expires_at.unwrap();
        assert!(exp > SystemTime::now() && exp < SystemTime::now() + Duration::from_secs(400));
    }
}

#[tokio::test]
async fn claim_mapping_options_apply_to_provider_tokens() {
    let Some(p) = Provider::start() else { return };
    let auth = authenticator(&p, |c| {
        c.username_claim = "client_id".into();
        c.username_prefix = Some("-".into());
        c.groups_prefix = Some("oidc:".into());
    });
    let id = auth.authenticate(&token(&p, "ES256").await).await.unwrap();
    assert_eq!(id.user, "airlock-es256");
    assert_eq!(id.groups, ["oidc:airlock:agents", "oidc:alg:es256"]);
    // An authenticator for another audience refuses the same token.
    let other = authenticator(&p, |c| c.audiences = vec!["https://not-airlock".into()]);
    assert!(matches!(
        other.authenticate(&token(&p, "ES256").await).await,
        Err(AuthError::WrongAudience)
    ));
}

#[tokio::test]
async fn key_rotation_fetches_new_kid_on_demand() {
    let Some(p) = Provider::start() else { return };
    let auth = authenticator(&p, |_| {});
    let before = token(&p, "RS256").await;
    auth.authenticate(&before).await.unwrap();

    // Rotate, keeping the old keys published: both old and new tokens verify.
    let (status, body) =
        post_json(&format!("{}/rotate?keep=1", p.admin), serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let after = token(&p, "RS256").await;
    assert_ne!(
        kid_of(&before),
        kid_of(&after),
        "provider signs with the new key"
    );
    auth.authenticate(&after).await.unwrap();
    auth.authenticate(&before).await.unwrap();

    // Rotate again, dropping old keys: the next new kid triggers a refresh, after which the
    // dropped keys no longer verify.
    let (status, _) = post_json(&format!("{}/rotate", p.admin), serde_json::json!({})).await;
    assert_eq!(status, 200);
    let latest = token(&p, "EdDSA").await;
    auth.authenticate(&latest).await.unwrap();
    assert!(matches!(
        auth.authenticate(&before).await,
        Err(AuthError::UnknownKey)
    ));
    assert!(matches!(
        auth.authenticate(&after).await,
        Err(AuthError::UnknownKey)
    ));
}

#[tokio::test]
async fn cached_keys_survive_idp_outage() {
    let Some(mut p) = Provider::start() else {
        return;
    };
    let auth = authenticator(&p, |_| {});
    let tokens = [
        token(&p, "RS256").await,
        token(&p, "ES256").await,
        token(&p, "EdDSA").await,
    ];
    // One validation caches the whole key set.
    auth.authenticate(&tokens[0]).await.unwrap();
    p.kill();
    for t in &tokens {
        auth.authenticate(t)
            .await
            .expect("cached keys must still verify");
    }
    // A fresh authenticator has nothing cached and fails closed.
    let cold = authenticator(&p, |_| {});
    assert!(matches!(
        cold.authenticate(&tokens[0]).await,
        Err(AuthError::KeysUnavailable(_))
    ));
}

#[tokio::test]
async fn device_code_flow_yields_a_user_token() {
    let Some(p) = Provider::start() else { return };
    let device_client = p.info["device_client"].as_str().unwrap().to_owned();
    let c = OidcClient::new(&p.issuer, &device_client, None, None).unwrap();
    let admin = p.admin.clone();
    let issuer = p.issuer.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let resp = c
        .device_code(Some("openid"), None, move |auth| {
            assert!(auth.verification_uri.starts_with(&issuer));
            let body = serde_json::json!({"user_code": auth.user_code, "sub": "alice"});
            // What the user would do in a browser.
            tokio::spawn(async move {
                let _ = tx.send(post_json(&format!("{admin}/device/approve"), body).await);
            });
        })
        .await
        .unwrap();
    let (status, approved) = rx.await.unwrap();
    assert_eq!(status, 200, "{approved}");
    let id = authenticator(&p, |_| {})
        .authenticate(&resp.access_token)
        .await
        .unwrap();
    assert_eq!(id.user, format!("{}#alice", p.issuer));
    assert_eq!(id.groups, ["airlock:humans", "team-a"]);
    assert_eq!(id.client_id.as_deref(), Some(device_client.as_str()));
    assert_eq!(id.session_id.as_deref(), approved["sid"].as_str());
}

#[tokio::test]
async fn client_credentials_errors_and_token_cache() {
    let Some(p) = Provider::start() else { return };
    let (id, _) = p.client("RS256");
    let err = client::client_credentials(&p.issuer, &id, "wrong", None, Some(&p.audience()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, client::ClientError::OAuth { .. }), "{err:?}");

    let t = client::client_credentials(
        &p.issuer,
        &id,
        &p.client("RS256").1,
        None,
        Some(&p.audience()),
        None,
    )
    .await
    .unwrap();
    assert!(t.expires_at.is_some());
    let dir = std::env::temp_dir().join(format!("authn-provider-cache-{}", std::process::id()));
    let cache = TokenCache::new(&dir);
    assert!(cache.get(&p.issuer, &id, "").is_none());
    assert!(cache.put(&p.issuer, &id, "", &t).unwrap());
    let cached = cache.get(&p.issuer, &id, "").unwrap();
    assert_eq!(cached.access_token, t.access_token);
    // The provider's 300 s tokens stop being served once less than the margin remains.
    let strict = TokenCache::new(&dir).with_min_remaining(Duration::from_secs(400));
    assert!(strict.get(&p.issuer, &id, "").is_none());
    let json: serde_json::Value = serde_json::from_str(&client::exec_credential_json(
        &cached.access_token,
        cached.expires_at_time(),
    ))
    .unwrap();
    assert_eq!(json["status"]["token"], t.access_token.as_str());
    let _ = std::fs::remove_dir_all(&dir);
}
