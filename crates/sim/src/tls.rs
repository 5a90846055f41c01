//! Certificates generated at start: a CA, a serving certificate and an admin client
//! certificate, and the rustls server configuration that uses them.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::SimError;

/// Everything TLS-related the server and the kubeconfigs need.
pub struct Pki {
    /// PEM of the CA certificate (the kubeconfig's certificate-authority-data).
    pub ca_pem: String,
    /// PEM of the admin client certificate.
    pub client_cert_pem: String,
    /// PEM of the admin client key.
    pub client_key_pem: String,
    /// DER of the admin client certificate: a presented certificate equal to it is the admin.
    pub client_cert_der: Vec<u8>,
    /// Ready server configuration (ALPN h2 + http/1.1, optional client certificates).
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Generates the PKI and the rustls configuration.
pub fn generate() -> Result<Pki, SimError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sim-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut sp = CertificateParams::new(vec!["localhost".to_string()])?;
    sp.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    sp.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V6(
            std::net::Ipv6Addr::LOCALHOST,
        )));
    let mut sdn = DistinguishedName::new();
    sdn.push(DnType::CommonName, "kube-apiserver");
    sp.distinguished_name = sdn;
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = sp.signed_by(&server_key, &ca_cert, &ca_key)?;

    let client_key = KeyPair::generate()?;
    let mut cp = CertificateParams::default();
    let mut cdn = DistinguishedName::new();
    cdn.push(DnType::CommonName, "sim-admin");
    cdn.push(DnType::OrganizationName, "system:masters");
    cp.distinguished_name = cdn;
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = cp.signed_by(&client_key, &ca_cert, &ca_key)?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone())?;
    // Client certificates are optional: bearer tokens authenticate too, so unauthenticated
    // TLS clients are let through to the HTTP layer, which answers 401 like upstream.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der,
        )?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    Ok(Pki {
        ca_pem: ca_cert.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        client_cert_der: client_cert.der().to_vec(),
        server_config: Arc::new(cfg),
    })
}

/// True if the presented chain's leaf is the admin client certificate.
pub fn is_admin_cert(chain: Option<&[CertificateDer<'static>]>, admin_der: &[u8]) -> bool {
    chain
        .and_then(|c| c.first())
        .is_some_and(|leaf| leaf.as_ref() == admin_der)
}
