//! Test harness: a fresh SQLite file or a fresh PostgreSQL schema per test, and raw SQL
//! access for tampering.

#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{bail, Context as _};
use store::{
    AppenderConfig, AuditRecord, Body, Decision, Identity, OpenOptions, RecordKind, RuleMatch,
    SigningKey, Store, Timestamp,
};
use uuid::Uuid;

/// PostgreSQL for tests: trust auth on loopback, database `test`.
pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432/test";

pub enum Backend {
    Sqlite {
        dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        schema: String,
    },
}

pub struct Harness {
    pub url: String,
    pub backend: Backend,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn psql(sql: &str) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-X",
            "-q",
            "-t",
            "-A",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run psql")?;
    child
        .stdin
        .take()
        .context("psql stdin")?
        .write_all(sql.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn sqlite_cli(path: &std::path::Path, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("sqlite3")
        .arg(path)
        .arg(sql)
        .output()
        .context("run sqlite3 (apt-get install -y sqlite3)")?;
    if !out.status.success() {
        bail!("sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Harness {
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.db");
        Ok(Self {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite { dir, path },
        })
    }

    pub async fn postgres() -> anyhow::Result<Self> {
        let schema = format!(
            "airlock_store_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            Uuid::new_v4().simple().to_string().get(..8).unwrap_or("x")
        );
        let s = schema.clone();
        tokio::task::spawn_blocking(move || psql(&format!("CREATE SCHEMA {s};"))).await??;
        Ok(Self {
            url: Self::pg_url(&schema),
            backend: Backend::Postgres { schema },
        })
    }

    pub fn pg_url(schema: &str) -> String {
        format!("{PG_BASE}?options=-c%20search_path%3D{schema}")
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    pub async fn open(&self) -> anyhow::Result<Store> {
        let options = OpenOptions {
            pool_size: 2,
            ..OpenOptions::default()
        };
        Ok(Store::open_with(&self.url, options).await?)
    }

    /// Runs raw SQL as an attacker with database access would: rusqlite for SQLite, psql
    /// for PostgreSQL.
    pub async fn raw(&self, sql: &str) -> anyhow::Result<String> {
        let sql = sql.to_owned();
        match &self.backend {
            Backend::Sqlite { path, .. } => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(path)?;
                    conn.execute_batch(&sql)?;
                    Ok(String::new())
                })
                .await?
            }
            Backend::Postgres { schema, .. } => {
                let sql = format!("SET search_path TO {schema};\n{sql}");
                tokio::task::spawn_blocking(move || psql(&sql)).await?
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Backend::Postgres { schema } = &self.backend {
            if let Err(e) = psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE;")) {
                eprintln!("dropping test schema {schema}: {e}");
            }
        }
    }
}

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

pub fn config(replica: &str) -> AppenderConfig {
    let mut c = AppenderConfig::new(replica, key());
    c.checkpoint_every = 5;
    c.checkpoint_interval = Duration::from_secs(3600);
    c
}

/// A realistic write-ahead record; `i` varies user, namespace and session.
pub fn request(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new(Uuid::new_v4(), RecordKind::Request, Timestamp::now());
    let ns = if i % 2 == 1 { "kube-system" } else { "default" };
    r.identity = Identity {
        user: format!("agent-{}", i % 3),
        groups: vec!["agents".into(), "system:authenticated".into()],
        uid: None,
        client_id: Some("claude-code".into()),
        session_id: Some(format!("sess-{}", i % 2)),
        source_addr: Some("127.0.0.1:50000".into()),
        user_agent: Some("kubectl/v1.33.0".into()),
    };
    r.cluster = Some("prod".into());
    r.method = Some("DELETE".into());
    r.path = Some(format!("/api/v1/namespaces/{ns}/pods/pod-{i}"));
    r.verb = Some("delete".into());
    r.resource = Some("pods".into());
    r.namespace = Some(ns.into());
    r.name = Some(format!("pod-{i}"));
    r.command = Some(format!("kubectl delete pod pod-{i} -n {ns}"));
    r.intent = Some("clean up the 'crashlooping' pod \"now\"".into());
    r.kubectl_command = Some("kubectl delete".into());
    r.kubectl_session = Some(format!("kubectl-{}", i % 4));
    r.request_body = Some(Body::capture(
        br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#,
        64 * 1024,
        4096,
    ));
    r.decision = Some(Decision {
        action: if i % 5 == 4 { "deny" } else { "allow" }.into(),
        rules: vec![RuleMatch {
            name: "agents-may-delete-pods".into(),
            action: "allow".into(),
        }],
        reason: None,
    });
    r
}

/// SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
