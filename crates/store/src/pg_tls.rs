//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert`, over rustls.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, and leaves certificate checks
//! to the TLS connector. This module reads the two settings out of the store URL itself and
//! gives them libpq's meaning:
//!
//! | `sslmode` | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | only if `sslrootcert` is given (chain, not name) |
//! | `require` | always | only if `sslrootcert` is given (chain, not name) |
//! | `verify-ca` | always | chain against `sslrootcert` |
//! | `verify-full` | always | chain and host name against `sslrootcert` |
//!
//! `sslrootcert` is a PEM file of trusted certificates, or `system` for the Mozilla roots
//! compiled into Airlock. As in libpq, `system` is refused with anything but `verify-full`
//! (any public certificate chains to those roots, so only the name check authenticates the
//! server), and `verify-ca` needs a root file. `verify-full` without `sslrootcert` uses the
//! system roots. `prefer` can be stripped by an active attacker (the server's refusal of TLS
//! is not authenticated), so opening a store with it is always logged as a warning.
//!
//! Not supported, and refused in the URL rather than ignored: client certificates
//! (`sslcert`, `sslkey`), `sslcrl`, and `channel_binding=require` (no channel binding is
//! offered, so SCRAM authenticates without `-PLUS`).

use std::{
    future::Future,
    io,
    path::PathBuf,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        WebPkiServerVerifier,
    },
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{CertificateDer, ServerName, UnixTime},
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::{
    config::SslMode,
    tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream},
    Config,
};

use crate::{error::Result, StoreError};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What a store URL asks of TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub mode: Mode,
    /// `None`: no `sslrootcert`. `Some(None)`: `system`.
    pub root_cert: Option<Option<PathBuf>>,
}

/// Splits a `postgres://` URL into tokio-postgres's [`Config`] and the TLS settings it cannot
/// hold, and builds the connector for them.
pub(crate) fn config(url: &str) -> Result<(Config, MakeRustls)> {
    let (rest, settings) = split_url(url)?;
    let mut config: Config = rest
        .parse()
        .map_err(|e| StoreError::InvalidUrl(format!("postgres url: {e}")))?;
    config.ssl_mode(match settings.mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    let tls = MakeRustls::new(&settings)?;
    match settings.mode {
        Mode::Prefer => tracing::warn!(
            "the audit store's connection may fall back to plain text (sslmode=prefer); \
             use sslmode=verify-full"
        ),
        Mode::Require if settings.root_cert.is_none() => tracing::warn!(
            "the audit store's TLS does not check the server's certificate \
             (sslmode=require without sslrootcert); use sslmode=verify-full"
        ),
        _ => {}
    }
    Ok((config, tls))
}

/// Takes `sslmode` and `sslrootcert` out of the URL's query; refuses the TLS settings that
/// are not supported.
pub(crate) fn split_url(url: &str) -> Result<(String, Settings)> {
    let mut settings = Settings {
        mode: Mode::Prefer,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), settings));
    };
    // A `?` before the host (in a password) would put the TLS settings out of our sight
    // while the driver still reads them: refuse it rather than guess.
    if query.split('/').next().is_some_and(|q| q.contains('@')) {
        return Err(StoreError::InvalidUrl(
            "postgres url: a raw '?' before the host; percent-encode it (%3F) in the user \
             or password"
                .into(),
        ));
    }
    let mut kept = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (key, value) = url::form_urlencoded::parse(segment.as_bytes())
            .next()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .unwrap_or_default();
        match key.as_str() {
            "sslmode" => {
                settings.mode = match value.as_str() {
                    "disable" => Mode::Disable,
                    "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(StoreError::InvalidUrl(format!(
                            "postgres url: sslmode={other:?} is not one of disable, prefer, \
                             require, verify-ca, verify-full"
                        )))
                    }
                }
            }
            "sslrootcert" => {
                settings.root_cert = Some(match value.as_str() {
                    "system" => None,
                    "" => {
                        return Err(StoreError::InvalidUrl(
                            "postgres url: sslrootcert is empty".into(),
                        ))
                    }
                    path => Some(PathBuf::from(path)),
                })
            }
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" | "sslsni" => {
                return Err(StoreError::InvalidUrl(format!(
                    "postgres url: {key} is not supported (no client certificates or CRLs \
                     for the audit store)"
                )))
            }
            "channel_binding" if value == "require" => {
                return Err(StoreError::InvalidUrl(
                    "postgres url: channel_binding=require is not supported".into(),
                ))
            }
            _ => kept.push(segment),
        }
    }
    if settings.root_cert == Some(None) && settings.mode != Mode::VerifyFull {
        return Err(StoreError::InvalidUrl(
            "postgres url: sslrootcert=system needs sslmode=verify-full (any public \
             certificate chains to the system roots; only the host name check tells the \
             server apart)"
                .into(),
        ));
    }
    if settings.mode == Mode::VerifyCa && settings.root_cert.is_none() {
        return Err(StoreError::InvalidUrl(
            "postgres url: sslmode=verify-ca needs sslrootcert=FILE (the CA that issued the \
             server's certificate)"
                .into(),
        ));
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, settings))
}

/// The rustls connector tokio-postgres and the reader pool connect through.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    fn new(settings: &Settings) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::InvalidUrl(format!("postgres tls: {e}")))?;
        let verify = match settings.mode {
            Mode::Disable => Verify::Nothing,
            Mode::Prefer | Mode::Require if settings.root_cert.is_none() => Verify::Nothing,
            Mode::Prefer | Mode::Require | Mode::VerifyCa => Verify::Chain,
            Mode::VerifyFull => Verify::ChainAndName,
        };
        let config = match verify {
            Verify::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            Verify::Chain | Verify::ChainAndName => {
                let roots = Arc::new(roots(settings.root_cert.as_ref().and_then(|r| r.as_ref()))?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| StoreError::InvalidUrl(format!("postgres tls: {e}")))?;
                if verify == Verify::Chain {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                } else {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                }
            }
        };
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

fn roots(path: Option<&PathBuf>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(path) = path else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let bad = |what: String| {
        StoreError::InvalidUrl(format!("postgres sslrootcert {}: {what}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut found = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        found += 1;
    }
    if found == 0 {
        return Err(bad("no PEM certificates in it".into()));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name last, after the chain: a name error means the chain held.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`, as in libpq: encrypted, but any certificate
/// is accepted. The handshake signature is still checked against it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(
        &mut self,
        domain: &str,
    ) -> std::result::Result<RustlsConnect, Self::Error> {
        // tokio-postgres asks for a connector before it looks at sslmode, also for a Unix
        // socket or a bare `hostaddr`, where it then never starts TLS: no name, no handshake.
        let name = if domain.is_empty() {
            None
        } else {
            Some(ServerName::try_from(domain.to_owned())?)
        };
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One connection's TLS handshake.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "TLS needs a host name")
            })?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await
                .map(RustlsStream)
        })
    }
}

/// A TLS connection to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // tls-server-end-point needs the hash named by the certificate's signature algorithm;
        // none is offered rather than a guess, so SCRAM runs without -PLUS.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_come_out_of_the_url_and_the_rest_stays() {
        let (rest, s) = split_url(
            "postgres://a@db:5432/audit?options=-csearch_path%3Dx&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://a@db:5432/audit?options=-csearch_path%3Dx");
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root_cert, Some(Some(PathBuf::from("/etc/ca.pem"))));

        let (rest, s) = split_url("postgresql://db/audit").unwrap();
        assert_eq!(
            (rest.as_str(), s.mode, s.root_cert),
            ("postgresql://db/audit", Mode::Prefer, None)
        );

        let (rest, s) = split_url("postgres://db/audit?sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), s.mode),
            ("postgres://db/audit", Mode::Disable)
        );
        let (_, s) = split_url("postgres://db/a?sslrootcert=system&sslmode=verify-full").unwrap();
        assert_eq!((s.mode, s.root_cert), (Mode::VerifyFull, Some(None)));
        let (_, s) = split_url("postgres://db/a?sslmode=verify-ca&sslrootcert=/ca.pem").unwrap();
        assert_eq!(s.mode, Mode::VerifyCa);
    }

    #[test]
    fn unsupported_tls_settings_are_refused_not_ignored() {
        for url in [
            "postgres://db/a?sslmode=allow",
            "postgres://db/a?sslmode=VERIFY-FULL",
            "postgres://db/a?sslcert=/c.pem",
            "postgres://db/a?sslkey=/k.pem",
            "postgres://db/a?channel_binding=require",
            "postgres://db/a?sslrootcert=",
            // System roots authenticate nobody without the name check; verify-ca needs a CA.
            "postgres://db/a?sslmode=verify-ca&sslrootcert=system",
            "postgres://db/a?sslmode=require&sslrootcert=system",
            "postgres://db/a?sslrootcert=system",
            "postgres://db/a?sslmode=verify-ca",
            // A raw '?' in the password.
            "postgres://u:se?cret@db/a?sslmode=require",
        ] {
            let e = split_url(url).unwrap_err().to_string();
            assert!(e.contains("postgres url"), "{url}: {e}");
        }
    }

    #[test]
    fn a_root_file_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let url = format!(
            "postgres://db/a?sslmode=verify-full&sslrootcert={}",
            path.display()
        );
        let e = config(&url).err().unwrap().to_string();
        assert!(e.contains("no PEM certificates"), "{e}");
        let e = config("postgres://db/a?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_unix_socket_gets_a_connector_without_a_name() {
        let (_, mut tls) = config("postgres://db/a?sslmode=disable").unwrap();
        let connect =
            <MakeRustls as MakeTlsConnect<tokio::net::TcpStream>>::make_tls_connect(&mut tls, "");
        assert!(connect.is_ok_and(|c| c.name.is_none()));
    }
}
