//! Parsing an issuer's JWKS into verification keys, and matching a token's header to them.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

/// RSA keys shorter than this are ignored (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// The curve or family a key belongs to; decides which `alg`s it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One usable verification key.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, if it declares one (RFC 7517 §4.4); then only that alg is allowed.
    pub alg: Option<String>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish()
    }
}

/// The JWS name of an algorithm, as it appears in headers and JWKs.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`: the key type and curve must fit
    /// the algorithm, and a JWK-declared `alg` must be the same. This is what stops an
    /// RSA key being used for an ES256 token and the like.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        let kind_ok = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.kind == KeyKind::Rsa,
            Algorithm::ES256 => self.kind == KeyKind::P256,
            Algorithm::ES384 => self.kind == KeyKind::P384,
            Algorithm::EdDSA => self.kind == KeyKind::Ed25519,
            // Never: symmetric algorithms have no place in a public key set.
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => false,
        };
        kind_ok && self.alg.as_deref().is_none_or(|a| a == alg_name(alg))
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

/// Parses a JWKS document. Keys we cannot or must not use (encryption keys, symmetric keys,
/// unknown types or curves, short RSA moduli) are skipped rather than failing the set, so one
/// exotic key at the IdP does not lock everyone out.
pub(crate) fn parse_jwks(doc: &[u8]) -> Result<Vec<VerifyKey>, serde_json::Error> {
    let raw: RawSet = serde_json::from_slice(doc)?;
    Ok(raw.keys.into_iter().filter_map(parse_key).collect())
}

fn parse_key(value: Value) -> Option<VerifyKey> {
    let obj = value.as_object()?;
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return None;
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return None;
        }
    }
    let kid = obj.get("kid").and_then(Value::as_str).map(str::to_owned);
    let alg = obj.get("alg").and_then(Value::as_str).map(str::to_owned);
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.n.trim_end_matches('='))
                .ok()?;
            let leading_zeros = n.iter().take_while(|b| **b == 0).count();
            if (n.len() - leading_zeros) * 8 < MIN_RSA_BITS {
                return None;
            }
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return None,
        },
        // A symmetric key in a public JWKS is a misconfiguration; never use it.
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey {
        kid,
        kind,
        alg,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_unusable_keys() {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xc5u8; 256]);
        let short_n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": n, "e": "AQAB", "use": "sig", "alg": "RS256"},
            {"kty": "RSA", "kid": "short", "n": short_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "n": n, "e": "AQAB", "use": "enc"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": "AAAA"},
            {"kty": "weird", "kid": "weird"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, ["rsa", "ed"]);
        let rsa = &keys[0];
        assert!(rsa.fits(Algorithm::RS256));
        assert!(!rsa.fits(Algorithm::RS512), "jwk alg pins RS256");
        assert!(!rsa.fits(Algorithm::ES256));
        assert!(!rsa.fits(Algorithm::HS256));
        assert!(keys[1].fits(Algorithm::EdDSA));
        assert!(!keys[1].fits(Algorithm::ES256));
    }
}
