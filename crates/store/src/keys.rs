//! Checkpoint signing keys on disk.
//!
//! Accepted key file formats:
//!
//! - PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as written by `openssl genpkey -algorithm
//!   ed25519` and by [`load_or_generate_signing_key`];
//! - a raw 32-byte Ed25519 seed;
//! - the seed as 64 hex digits (surrounding whitespace ignored).
//!
//! Public keys (for [`crate::verify`]) may be SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the
//! raw 32-byte public key, its 64 hex digits, or a PKCS#8 PEM private key (its public half).

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use ed25519_dalek::{
    pkcs8::{
        spki::der::pem::LineEnding, DecodePrivateKey, DecodePublicKey, EncodePrivateKey,
        EncodePublicKey,
    },
    SigningKey, VerifyingKey,
};

use crate::{error::Result, StoreError};

fn key_err(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Key {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a signing key (see the module docs for formats).
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    parse_signing_key(&bytes).ok_or_else(|| {
        key_err(
            path,
            "not an Ed25519 private key (PKCS#8 PEM, 32-byte seed or 64 hex digits)",
        )
    })
}

fn parse_signing_key(bytes: &[u8]) -> Option<SigningKey> {
    if bytes.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(bytes).ok()?;
        return SigningKey::from_pkcs8_pem(text).ok();
    }
    if let Ok(seed) = <[u8; 32]>::try_from(bytes) {
        return Some(SigningKey::from_bytes(&seed));
    }
    let mut seed = [0u8; 32];
    let text = std::str::from_utf8(bytes).ok()?.trim();
    hex::decode_to_slice(text, &mut seed).ok()?;
    Some(SigningKey::from_bytes(&seed))
}

/// Reads a public key for verification (see the module docs for formats).
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    if bytes.starts_with(b"-----BEGIN PUBLIC KEY") {
        let text = std::str::from_utf8(&bytes).map_err(|_| key_err(path, "not UTF-8 PEM"))?;
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| key_err(path, format!("bad public key PEM: {e}")));
    }
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return VerifyingKey::from_bytes(&raw).map_err(|_| key_err(path, "not a valid point"));
    }
    let mut raw = [0u8; 32];
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if hex::decode_to_slice(text.trim(), &mut raw).is_ok() {
            return VerifyingKey::from_bytes(&raw).map_err(|_| key_err(path, "not a valid point"));
        }
    }
    parse_signing_key(&bytes)
        .map(|k| k.verifying_key())
        .ok_or_else(|| key_err(path, "not an Ed25519 public or private key"))
}

/// The SPKI PEM text of a public key (what `<key>.pub` files hold).
pub fn public_key_pem(key: &VerifyingKey) -> Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| StoreError::Encode(format!("public key PEM: {e}")))
}

/// Loads the signing key at `path`, or generates one there if the file does not exist.
///
/// A new key is written as PKCS#8 PEM with mode 0600, and its public key next to it as
/// `<path>.pub` (SPKI PEM) for whoever will run `verify`. The key is written to a temporary
/// file and hard-linked into place, so two replicas starting at once on the same state
/// directory never see a half-written key, and the loser of the race loads the winner's key.
pub fn load_or_generate_signing_key(path: &Path) -> Result<SigningKey> {
    match fs::metadata(path) {
        Ok(_) => return load_signing_key(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| StoreError::Encode(format!("private key PEM: {e}")))?;

    let tmp = sibling(path, &format!(".tmp.{}", std::process::id()));
    write_private(&tmp, pem.as_bytes())?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return load_signing_key(path),
        Err(e) => return Err(io_err(path)(e)),
    }
    let pub_path = sibling(path, ".pub");
    fs::write(&pub_path, public_key_pem(&key.verifying_key())?).map_err(io_err(&pub_path))?;
    Ok(key)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_load_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/checkpoint.key");
        let a = load_or_generate_signing_key(&path).unwrap();
        let b = load_or_generate_signing_key(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let public = load_verifying_key(&sibling(&path, ".pub")).unwrap();
        assert_eq!(public, a.verifying_key());
    }

    #[test]
    fn key_formats() {
        let dir = tempfile::tempdir().unwrap();
        let seed = [9u8; 32];
        let expect = SigningKey::from_bytes(&seed);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("raw", seed.to_vec()),
            ("hex", format!("{}\n", hex::encode(seed)).into_bytes()),
            (
                "pem",
                expect
                    .to_pkcs8_pem(LineEnding::LF)
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            ),
        ];
        for (name, bytes) in cases {
            let p = dir.path().join(name);
            fs::write(&p, bytes).unwrap();
            assert_eq!(load_signing_key(&p).unwrap().to_bytes(), seed, "{name}");
        }
        // For public key files, raw and hex bytes are the public key itself; a private PEM
        // yields its public half.
        let public = expect.verifying_key();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("pub.raw", public.as_bytes().to_vec()),
            ("pub.hex", hex::encode(public.as_bytes()).into_bytes()),
            ("pub.pem", public_key_pem(&public).unwrap().into_bytes()),
            ("pem", fs::read(dir.path().join("pem")).unwrap()),
        ];
        for (name, bytes) in cases {
            let p = dir.path().join(name);
            fs::write(&p, bytes).unwrap();
            assert_eq!(load_verifying_key(&p).unwrap(), public, "{name}");
        }
        let bad = dir.path().join("bad");
        fs::write(&bad, b"nope").unwrap();
        assert!(matches!(
            load_signing_key(&bad),
            Err(StoreError::Key { .. })
        ));
    }
}
