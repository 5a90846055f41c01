//! The agent-facing listener's certificate.
//!
//! Either the operator gives a certificate, or Airlock generates a CA and a serving certificate
//! into the state directory on first start and reuses them afterwards, so that kubeconfigs
//! written once keep verifying TLS across restarts.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::RawTls;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What the listener serves, and the CA a client should trust.
pub struct ServingCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// PEM of the CA that kubeconfigs written by Airlock embed.
    pub ca_pem: String,
}

impl ServingCert {
    /// A rustls server config offering HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Loads the configured certificate, or the generated one from `state_dir`, generating it on
/// first start.
pub fn load_or_generate(
    tls: Option<&RawTls>,
    state_dir: &Path,
    extra_sans: &[String],
) -> Result<ServingCert, TlsError> {
    match tls {
        Some(t) => load(t),
        None => generated(state_dir, extra_sans),
    }
}

fn load(t: &RawTls) -> Result<ServingCert, TlsError> {
    let chain_pem = read(&t.cert_file)?;
    let chain = parse_certs(&t.cert_file, &chain_pem)?;
    let key = parse_key(&t.key_file, &read(&t.key_file)?)?;
    let ca_pem = match &t.ca_file {
        Some(p) => read(p)?,
        None => {
            // The last certificate of the chain is the closest we have to the issuing CA.
            let last = chain.last().ok_or_else(|| TlsError::Pem {
                path: t.cert_file.clone(),
                reason: "no certificate found".into(),
            })?;
            pem_encode("CERTIFICATE", last.as_ref())
        }
    };
    Ok(ServingCert { chain, key, ca_pem })
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

fn generated(dir: &Path, extra_sans: &[String]) -> Result<ServingCert, TlsError> {
    let paths = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY].map(|f| dir.join(f));
    if paths.iter().all(|p| p.is_file()) {
        let chain = parse_certs(&paths[2], &read(&paths[2])?)?;
        let key = parse_key(&paths[3], &read(&paths[3])?)?;
        return Ok(ServingCert {
            chain,
            key,
            ca_pem: read(&paths[0])?,
        });
    }
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn("Airlock CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn("airlock");
    params.subject_alt_names = sans(extra_sans)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.signed_by(&key, &ca, &ca_key)?;

    write_private(&paths[1], &ca_key.serialize_pem())?;
    write_private(&paths[3], &key.serialize_pem())?;
    write_private(&paths[2], &cert.pem())?;
    // The CA certificate is written last: its presence marks a complete set.
    write_private(&paths[0], &ca.pem())?;

    Ok(ServingCert {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        ca_pem: ca.pem(),
    })
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Airlock");
    dn
}

fn sans(extra: &[String]) -> Result<Vec<SanType>, TlsError> {
    let mut out = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    for s in extra {
        match s.parse::<std::net::IpAddr>() {
            Ok(ip) => out.push(SanType::IpAddress(ip)),
            Err(_) => out.push(SanType::DnsName(s.clone().try_into()?)),
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, TlsError> {
    fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_private_file(path, contents).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file only its owner can read: keys and other state-directory secrets.
pub(crate) fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents.as_bytes())
}

/// Parses every certificate in a PEM string.
pub fn parse_certs(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Parses the first private key in a PEM string.
pub fn parse_key(path: &Path, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: path.to_owned(),
            reason: "no private key found".into(),
        })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cert_is_reused_on_restart() {
        let dir = std::env::temp_dir().join(format!("airlock-tls-{}", uuid::Uuid::new_v4()));
        let first = load_or_generate(None, &dir, &["airlock.example".into()]).unwrap();
        let second = load_or_generate(None, &dir, &[]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.chain, second.chain);
        assert!(first.server_config().is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(CA_KEY)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
