//! TLS to the real PostgreSQL on 127.0.0.1:5432, whose certificate (Debian's snakeoil, for
//! `localhost`) is read from the server's own `ssl_cert_file`: libpq's `sslmode` and
//! `sslrootcert` are honoured, and a certificate that does not check out stops the store from
//! opening.

mod common;

use anyhow::Context as _;
use common::{config, psql, request, Backend, Harness};
use store::{OpenOptions, Store};

/// The certificate file the server presents (self-signed, so it is also its root).
fn server_certificate() -> anyhow::Result<String> {
    let ssl = psql("SHOW ssl;")?;
    anyhow::ensure!(
        ssl.trim() == "on",
        "the test PostgreSQL must have ssl = on (Debian's default), it says {ssl:?}"
    );
    Ok(psql("SHOW ssl_cert_file;")?.trim().to_owned())
}

/// Whether each of the server's connections with `application_name = app` uses TLS.
fn tls_of(app: &str) -> anyhow::Result<Vec<bool>> {
    let out = psql(&format!(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = '{app}';"
    ))?;
    Ok(out.lines().map(|l| l.trim() == "t").collect())
}

fn url(host: &str, schema: &str, app: &str, tls: &str) -> String {
    format!(
        "postgres://postgres@{host}:5432/test?options=-c%20search_path%3D{schema}\
         &application_name={app}&{tls}"
    )
}

async fn open(url: &str) -> store::Result<Store> {
    let options = OpenOptions {
        pool_size: 2,
        connect_timeout: std::time::Duration::from_secs(5),
        ..OpenOptions::default()
    };
    Store::open_with(url, options).await
}

#[tokio::test]
async fn postgres_store_speaks_tls_as_sslmode_says() -> anyhow::Result<()> {
    let cert = server_certificate()?;
    let h = Harness::postgres().await?;
    let Backend::Postgres { schema } = &h.backend else {
        unreachable!()
    };
    let app = |mode: &str| format!("airlock_tls_{}_{mode}", std::process::id());

    // verify-full: chain and name check out (the certificate is for localhost).
    let full = app("full");
    let store = open(&url(
        "localhost",
        schema,
        &full,
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    ))
    .await
    .context("verify-full against the server's own certificate")?;
    let appender = store.appender(config("tls")).await?;
    appender.append(request(0)).await?;
    let report = store.verify(&[]).await?;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.replicas.iter().map(|r| r.records).sum::<u64>(), 1);
    let conns = tls_of(&full)?;
    assert!(!conns.is_empty(), "no connections named {full}");
    assert!(
        conns.iter().all(|tls| *tls),
        "a verify-full connection without TLS: {conns:?}"
    );
    appender.close().await?;

    // disable: plain connections.
    let plain = app("plain");
    let store2 = open(&url("127.0.0.1", schema, &plain, "sslmode=disable")).await?;
    let conns = tls_of(&plain)?;
    assert!(
        !conns.is_empty() && conns.iter().all(|tls| !*tls),
        "{conns:?}"
    );
    drop(store2);

    // The default (prefer) encrypts when the server offers TLS.
    let prefer = app("prefer");
    let store3 = open(&url("127.0.0.1", schema, &prefer, "connect_timeout=5")).await?;
    let conns = tls_of(&prefer)?;
    assert!(
        !conns.is_empty() && conns.iter().all(|tls| *tls),
        "{conns:?}"
    );
    drop(store3);

    // verify-ca checks the chain but not the name: 127.0.0.1 is not in the certificate.
    open(&url(
        "127.0.0.1",
        schema,
        &app("ca"),
        &format!("sslmode=verify-ca&sslrootcert={cert}"),
    ))
    .await
    .context("verify-ca by address")?;

    // verify-full by address: the name does not match, so nothing is opened.
    let e = open(&url(
        "127.0.0.1",
        schema,
        &app("badname"),
        &format!("sslmode=verify-full&sslrootcert={cert}"),
    ))
    .await
    .err()
    .context("verify-full must refuse a certificate for another name")?;
    // What an operator reads says why.
    let msg = e.to_string();
    assert!(
        msg.contains("certificate not valid for name \"127.0.0.1\""),
        "{msg}"
    );

    // verify-full against the public roots: the self-signed certificate is not trusted.
    let e = open(&url(
        "localhost",
        schema,
        &app("badroot"),
        "sslmode=verify-full&sslrootcert=system",
    ))
    .await
    .err()
    .context("verify-full must refuse an untrusted certificate")?;
    let msg = e.to_string();
    assert!(
        msg.contains("invalid peer certificate: UnknownIssuer"),
        "{msg}"
    );
    Ok(())
}
