//! The crate's one error type.

use std::{path::PathBuf, sync::Arc, time::Duration};

/// Everything that can go wrong in the audit store.
///
/// The gateway treats every variant the same way on the write path: the request is refused
/// with 503 and nothing is forwarded. The variants exist so that logs and metrics can tell a
/// full disk from a dead database from a misconfiguration.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL names no backend this crate knows.
    #[error("unsupported audit store url {url:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl {
        /// The URL as given (PostgreSQL URLs are never echoed: they may hold a password).
        url: String,
    },
    /// The store URL has the right scheme but cannot be used.
    #[error("invalid audit store url: {0}")]
    InvalidUrl(String),
    /// SQLite refused an operation (includes `SQLITE_FULL`: disk or quota full).
    #[error("sqlite audit store: {context}")]
    Sqlite {
        /// What the store was doing.
        context: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL refused an operation or could not be reached.
    ///
    /// The driver's message is part of this one (it already names its own cause, such as a
    /// refused certificate), so it is not repeated as a `source`.
    #[error("postgres audit store: {context}: {}", chain(error))]
    Postgres {
        /// What the store was doing.
        context: &'static str,
        /// The driver error.
        error: tokio_postgres::Error,
    },
    /// No PostgreSQL connection could be had from the pool in time.
    #[error("postgres audit store: no connection available: {}", chain(.0))]
    Pool(Box<deadpool_postgres::PoolError>),
    /// A file (database directory, signing key) could not be read or written.
    #[error("audit store file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A signing or verifying key file holds no usable Ed25519 key.
    #[error("key file {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A record could not be encoded (for example it holds a floating-point number, which
    /// the canonical encoding does not allow).
    #[error("audit record cannot be encoded: {0}")]
    Encode(String),
    /// A row read back from the store cannot be decoded.
    #[error("corrupt row in audit store: {0}")]
    Corrupt(String),
    /// [`crate::Store::prune_through`] was given a position that holds no checkpoint.
    #[error("replica {replica_id:?} has no checkpoint at seq {seq}")]
    NoSuchCheckpoint {
        /// Replica.
        replica_id: String,
        /// The position asked for.
        seq: u64,
    },
    /// Another writer holds this replica's chain; two writers would fork it.
    #[error("audit chain of replica {0:?} is already being written by another process")]
    ReplicaLocked(String),
    /// The writer task has stopped (the appender was closed).
    #[error("audit writer is stopped")]
    WriterStopped,
    /// The record was not confirmed durable in time.
    ///
    /// The record may still be committed later; it is then a write-ahead record without an
    /// outcome, which is what an aborted request looks like in the log.
    #[error("audit write not durable after {0:?}")]
    Timeout(Duration),
    /// The batch holding this record failed to commit. Shared by every record of the batch.
    #[error("audit write failed")]
    WriteFailed(#[source] Arc<StoreError>),
    /// A blocking task panicked or was cancelled.
    #[error("audit store background task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// An error and its causes on one line, each cause once (drivers sometimes repeat their cause
/// in their own message).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { context, source }
}

pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |error| StoreError::Postgres { context, error }
}
