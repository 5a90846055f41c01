//! Static tokens: the config stores SHA-256 hashes; a presented token is hashed and compared
//! against every entry in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::StaticTokenConfig;
use crate::error::ConfigError;
use crate::Identity;

/// Hex SHA-256 of a token: the value `static_tokens[].sha256` holds.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[derive(Debug, Clone)]
struct Entry {
    hash: [u8; 32],
    user: String,
    groups: Vec<String>,
}

/// The validated static token table.
#[derive(Debug, Clone, Default)]
pub(crate) struct StaticTokens {
    entries: Vec<Entry>,
}

impl StaticTokens {
    pub(crate) fn new(cfg: &[StaticTokenConfig]) -> Result<Self, ConfigError> {
        let mut entries = Vec::with_capacity(cfg.len());
        for c in cfg {
            if c.user.is_empty() {
                return Err(ConfigError::StaticTokenUser);
            }
            let mut hash = [0u8; 32];
            hex::decode_to_slice(c.sha256.trim(), &mut hash).map_err(|_| {
                ConfigError::StaticTokenHash {
                    user: c.user.clone(),
                }
            })?;
            entries.push(Entry {
                hash,
                user: c.user.clone(),
                groups: c.groups.clone(),
            });
        }
        Ok(Self { entries })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of `token`, if it is configured.
    pub(crate) fn lookup(&self, token: &str) -> Option<Identity> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every entry without short-circuiting, so timing does not reveal
        // which (or whether an) entry matched a prefix of the digest.
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&digest)) && found.is_none() {
                found = Some(e);
            }
        }
        found.map(|e| Identity {
            user: e.user.clone(),
            uid: None,
            groups: e.groups.clone(),
            client_id: None,
            session_id: None,
            issuer: None,
            expires_at: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str, user: &str, groups: &[&str]) -> StaticTokenConfig {
        StaticTokenConfig {
            sha256: hash_token(token),
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn hash_is_hex_sha256() {
        // printf %s test | sha256sum
        assert_eq!(
            hash_token("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn lookup_table() {
        let mut upper = entry("s3cr3t-upper", "upper", &[]);
        upper.sha256 = upper.sha256.to_uppercase();
        let table = StaticTokens::new(&[
            entry("alpha-token", "alpha", &["g1", "g2"]),
            entry("beta-token", "beta", &[]),
            upper,
        ])
        .unwrap();
        // (presented token, expected user and groups)
        type Expected<'a> = Option<(&'a str, &'a [&'a str])>;
        let cases: &[(&str, Expected)] = &[
            ("alpha-token", Some(("alpha", &["g1", "g2"]))),
            ("beta-token", Some(("beta", &[]))),
            ("s3cr3t-upper", Some(("upper", &[]))),
            ("alpha-token ", None),
            ("ALPHA-TOKEN", None),
            ("", None),
            ("gamma", None),
            (
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                None,
            ),
        ];
        for (token, want) in cases {
            let got = table.lookup(token);
            match (got, want) {
                (None, None) => {}
                (Some(id), Some((user, groups))) => {
                    assert_eq!(id.user, *user, "{token:?}");
                    assert_eq!(id.groups, *groups, "{token:?}");
                    assert_eq!(id.issuer, None);
                    assert_eq!(id.expires_at, None);
                }
                (got, want) => panic!("{token:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn config_errors() {
        let bad_hash = StaticTokenConfig {
            sha256: "abc".into(),
            user: "u".into(),
            groups: vec![],
        };
        assert!(matches!(
            StaticTokens::new(&[bad_hash]),
            Err(ConfigError::StaticTokenHash { .. })
        ));
        let no_user = entry("t", "", &[]);
        assert!(matches!(
            StaticTokens::new(&[no_user]),
            Err(ConfigError::StaticTokenUser)
        ));
    }
}
