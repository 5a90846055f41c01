//! A small HTTP client for talking to identity providers: GET JSON (discovery, JWKS) and POST
//! forms (token endpoints). hyper-util's legacy client over hyper-rustls with the `ring`
//! provider; trusted roots are the Mozilla set plus an optional extra CA file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;

use crate::config::is_loopback;
use crate::error::{ConfigError, FetchError};

/// Largest response body we read. Discovery documents and JWKS are a few KiB.
const MAX_BODY: usize = 1024 * 1024;
/// Deadline for one request, including reading the body.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap-to-clone client bound to one trust configuration.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Plain http is acceptable for loopback URLs.
    allow_loopback_http: bool,
}

/// A response: status and (size-limited) body.
pub(crate) struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl HttpClient {
    /// Builds a client. `allow_loopback_http` permits `http://` URLs whose host is loopback;
    /// everything else must be https.
    pub(crate) fn new(
        ca_file: Option<&Path>,
        allow_loopback_http: bool,
    ) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let ca_err = |reason: String| ConfigError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_err(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_err("no certificate found".to_owned()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(ConfigError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        // https_or_http: the scheme check happens per request in `check_url`, so that http is
        // only ever used for loopback hosts.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self {
            client,
            allow_loopback_http,
        })
    }

    /// Rejects URLs we must not fetch.
    pub(crate) fn check_url(&self, url: &str) -> Result<(), FetchError> {
        let bad = |reason| FetchError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|_| bad("not a valid url"))?;
        match parsed.scheme() {
            "https" => Ok(()),
            "http" if self.allow_loopback_http && is_loopback(&parsed) => Ok(()),
            "http" => Err(bad("plain http is only allowed for loopback test issuers")),
            _ => Err(bad("scheme must be https")),
        }
    }

    /// GET `url` expecting 200; returns the body.
    pub(crate) async fn get_raw(&self, url: &str) -> Result<Bytes, FetchError> {
        let resp = self.send(Method::GET, url, None).await?;
        if resp.status != 200 {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: resp.status,
            });
        }
        Ok(resp.body)
    }

    /// GET `url` expecting 200 and a JSON body of type `T`.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let body = self.get_raw(url).await?;
        serde_json::from_slice(&body).map_err(|source| FetchError::Json {
            url: url.to_owned(),
            source,
        })
    }

    /// POST an `application/x-www-form-urlencoded` body, with optional HTTP Basic credentials.
    /// Returns whatever status came back; token endpoints put errors in 400 bodies.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Response, FetchError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(Method::POST, url, Some((body, basic))).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        form: Option<(String, Option<(&str, &str)>)>,
    ) -> Result<Response, FetchError> {
        self.check_url(url)?;
        let mut builder = Request::builder()
            .method(method)
            .uri(url)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "airlock-authn");
        let body = match form {
            Some((body, basic)) => {
                builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                if let Some((user, pass)) = basic {
                    builder = builder.header(header::AUTHORIZATION, basic_auth(user, pass));
                }
                Full::new(Bytes::from(body))
            }
            None => Full::new(Bytes::new()),
        };
        let req = builder.body(body).map_err(|_| FetchError::Request {
            url: url.to_owned(),
        })?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|source| FetchError::Transport {
                    url: url.to_owned(),
                    source,
                })?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|_| FetchError::Body {
                    url: url.to_owned(),
                })?
                .to_bytes();
            Ok(Response { status, body })
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_owned(),
            })?
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-urlencoded before the Basic encoding.
fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(user), enc(pass));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        let strict = HttpClient::new(None, false).unwrap();
        let loose = HttpClient::new(None, true).unwrap();
        // (url, strict ok, loopback-http ok)
        let cases = [
            ("https://idp.example.com/jwks", true, true),
            ("http://idp.example.com/jwks", false, false),
            ("http://127.0.0.1:1234/jwks", false, true),
            ("http://localhost/jwks", false, true),
            ("ftp://idp.example.com/jwks", false, false),
            ("not a url", false, false),
        ];
        for (url, s, l) in cases {
            assert_eq!(strict.check_url(url).is_ok(), s, "{url}");
            assert_eq!(loose.check_url(url).is_ok(), l, "{url}");
        }
    }

    #[test]
    fn basic_auth_encodes_form_first() {
        assert_eq!(basic_auth("a b", "c:d"), "Basic YStiOmMlM0Fk");
    }
}
