//! The production path: an https issuer whose certificate is signed by a private CA given as
//! `ca_file`. Without the CA the issuer is not trusted and no key is ever fetched.

mod common;

use authn::{AuthError, Authenticator, AuthnConfig, ConfigError, OidcIssuerConfig};
use common::{keys, now, sign, test_pki, MockIssuer};
use serde_json::json;

fn config(issuer: &str, ca_file: Option<std::path::PathBuf>) -> AuthnConfig {
    let mut oc = OidcIssuerConfig::new(issuer, vec!["airlock".into()]);
    oc.ca_file = ca_file;
    AuthnConfig {
        oidc: vec![oc],
        static_tokens: vec![],
    }
}

#[tokio::test]
async fn https_issuer_with_ca_file() {
    let pki = test_pki();
    let k = keys();
    let mock = MockIssuer::start_tls(json!({"keys": [k.ec.jwk]}), pki.server).await;
    assert!(mock.issuer.starts_with("https://127.0.0.1:"));
    let ca = std::env::temp_dir().join(format!("authn-tls-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let t = now();
    let token = sign(
        &k.ec,
        &json!({"iss": mock.issuer, "aud": "airlock", "sub": "s", "exp": t + 60, "iat": t}),
    );

    let trusted = Authenticator::new(&config(&mock.issuer, Some(ca.clone()))).unwrap();
    let id = trusted.authenticate(&token).await.unwrap();
    assert_eq!(id.user, format!("{}#s", mock.issuer));

    let untrusted = Authenticator::new(&config(&mock.issuer, None)).unwrap();
    assert!(matches!(
        untrusted.authenticate(&token).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    assert_eq!(
        mock.fetches(),
        1,
        "only the trusting authenticator got the keys"
    );
    let _ = std::fs::remove_file(&ca);
}

#[test]
fn bad_ca_files_are_config_errors() {
    let missing = std::env::temp_dir().join("authn-no-such-ca.pem");
    let empty = std::env::temp_dir().join(format!("authn-empty-ca-{}.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for path in [missing, empty.clone()] {
        let err =
            Authenticator::new(&config("https://idp.example.com", Some(path.clone()))).unwrap_err();
        assert!(
            matches!(err, ConfigError::CaFile { .. }),
            "{path:?}: {err:?}"
        );
    }
    let _ = std::fs::remove_file(&empty);
}
