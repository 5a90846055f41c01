//! The appender: group commit of records into one replica's chain.
//!
//! [`Appender::append`] queues a record and waits. One writer per appender (a thread of its
//! own for SQLite, whose calls block; a task for PostgreSQL) takes the
//! first queued record, then whatever else is queued at that moment (up to
//! [`AppenderConfig::max_batch`]), chains them, and commits them in one transaction. While
//! that commit's fsync runs, new records queue up and become the next batch. Under load one
//! fsync therefore covers many records; with a single writer the cost is one fsync per
//! record, as durability demands.
//!
//! The writer is the only place that assigns sequence numbers and hashes, so the chain needs
//! no lock beyond "one writer per replica" (enforced by an advisory lock on PostgreSQL).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use ed25519_dalek::SigningKey;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use uuid::Uuid;

use crate::{
    chain::{record_hash, record_payload, Checkpoint},
    error::Result,
    postgres::PgWriter,
    sql::RecordRow,
    sqlite::SqliteWriter,
    AuditRecord, Head, Store, StoreError, Timestamp,
};

/// How an [`Appender`] batches, checkpoints and bounds what it stores.
#[derive(Clone, Debug)]
pub struct AppenderConfig {
    /// This gateway replica's id: names its chain. Must be unique among the replicas that
    /// share a database and stable across restarts (the chain resumes where it stopped).
    pub replica_id: String,
    /// The checkpoint signing key.
    pub signing_key: SigningKey,
    /// Most records committed in one transaction.
    pub max_batch: usize,
    /// Records waiting for the writer before `append` waits for room.
    pub queue_capacity: usize,
    /// Sign a checkpoint at least every this many records...
    pub checkpoint_every: u64,
    /// ...and at least this often while records keep arriving.
    pub checkpoint_interval: Duration,
    /// How long `append` waits for durability before failing with
    /// [`StoreError::Timeout`].
    pub append_timeout: Duration,
    /// Bodies up to this many bytes are stored whole...
    pub max_inline_body: usize,
    /// ...larger ones keep this many leading bytes, plus size and SHA-256.
    pub body_prefix: usize,
    /// Which commits wait for the disk (see [`Durability`]).
    pub durability: Durability,
}

/// Which records an [`Appender`] waits for the disk (fsync) to hold before answering.
///
/// Every commit is visible to other processes and survives the gateway process crashing
/// (`kill -9`) as soon as `append` returns: it is in the database's write-ahead log, in the
/// operating system. What the variants differ in is a crash of the *host* (power loss,
/// kernel panic) in the moments after the commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Batches holding a record that something waits for before acting on the cluster
    /// (write-ahead [`crate::RecordKind::Request`] records, approvals) are fsynced before
    /// `append` returns. Batches of only outcome and stream-event records are not: the next
    /// fsynced batch, or the store's background checkpoint within about a second, makes them
    /// durable on disk, in chain order (a fsync covers every earlier commit). One fsync per
    /// request instead of two at low concurrency.
    #[default]
    WriteAhead,
    /// Every batch is fsynced before `append` returns.
    All,
}

impl Durability {
    fn needs_fsync(self, kind: crate::RecordKind) -> bool {
        use crate::RecordKind;
        match self {
            Durability::All => true,
            Durability::WriteAhead => {
                !matches!(kind, RecordKind::Outcome | RecordKind::StreamEvent)
            }
        }
    }
}

impl AppenderConfig {
    /// Defaults for a replica and key: batches of 512, a checkpoint every 1000 records or
    /// 60 s, 5 s append timeout, bodies inline up to 64 KiB then a 4 KiB prefix.
    pub fn new(replica_id: impl Into<String>, signing_key: SigningKey) -> Self {
        Self {
            replica_id: replica_id.into(),
            signing_key,
            max_batch: 512,
            queue_capacity: 8192,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            append_timeout: Duration::from_secs(5),
            max_inline_body: 64 * 1024,
            body_prefix: 4 * 1024,
            durability: Durability::default(),
        }
    }
}

/// Proof that a record is durable: where it sits in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The request id.
    pub id: Uuid,
    /// Replica.
    pub replica_id: String,
    /// Chain position.
    pub seq: u64,
    /// Hex record hash.
    pub hash: String,
}

/// Counters of one appender's writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppenderStats {
    /// Records committed.
    pub records: u64,
    /// Transactions committed (batches, including checkpoint-only ones).
    pub transactions: u64,
    /// Checkpoints signed and committed.
    pub checkpoints: u64,
    /// Batches that failed.
    pub failed_batches: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    transactions: AtomicU64,
    checkpoints: AtomicU64,
    failed_batches: AtomicU64,
}

enum Job {
    Append(Box<AuditRecord>, oneshot::Sender<Result<Receipt>>),
    Checkpoint(oneshot::Sender<Result<Option<Checkpoint>>>),
    Close(oneshot::Sender<Result<Option<Checkpoint>>>),
}

/// Appends records to one replica's chain. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    timeout: Duration,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("stats", &self.stats())
            .finish()
    }
}

pub(crate) enum WriterBackend {
    Sqlite(SqliteWriter),
    Postgres(Box<PgWriter>),
}

impl WriterBackend {
    async fn head(&mut self, replica: &str) -> Result<Head> {
        match self {
            Self::Sqlite(w) => w.head(replica).await,
            Self::Postgres(w) => w.head(replica).await,
        }
    }

    async fn commit(
        &mut self,
        rows: Vec<RecordRow>,
        cp: Option<Checkpoint>,
        fsync: bool,
    ) -> Result<()> {
        match self {
            Self::Sqlite(w) => w.commit(rows, cp, fsync).await,
            Self::Postgres(w) => w.commit(rows, cp, fsync).await,
        }
    }
}

// === impl Appender ===

impl Appender {
    pub(crate) async fn start(store: &Store, config: AppenderConfig) -> Result<Self> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let timeout = config.append_timeout;
        match store {
            // SQLite is blocking: the writer gets a thread of its own and commits on it, so an
            // append costs two thread hand-offs (to the writer and back), not four (via a
            // writer task and the blocking pool).
            Store::Sqlite(s) => {
                let backend = WriterBackend::Sqlite(s.writer().await?);
                let (ready, started) = oneshot::channel();
                let counters = counters.clone();
                let thread = std::thread::Builder::new()
                    .name("audit-writer".into())
                    .spawn(move || {
                        let rt = match tokio::runtime::Builder::new_current_thread()
                            .enable_time()
                            .build()
                        {
                            Ok(rt) => rt,
                            Err(e) => {
                                let _ = ready.send(Err(StoreError::Encode(format!(
                                    "cannot start the audit writer's runtime: {e}"
                                ))));
                                return;
                            }
                        };
                        rt.block_on(async move {
                            match Writer::new(backend, config, counters).await {
                                Ok(writer) => {
                                    let _ = ready.send(Ok(()));
                                    writer.run(rx).await;
                                }
                                Err(e) => {
                                    let _ = ready.send(Err(e));
                                }
                            }
                        });
                    });
                if let Err(e) = thread {
                    return Err(StoreError::Encode(format!(
                        "cannot start the audit writer thread: {e}"
                    )));
                }
                started.await.map_err(|_| StoreError::WriterStopped)??;
            }
            Store::Postgres(s) => {
                let backend = WriterBackend::Postgres(Box::new(
                    s.writer(&config.replica_id, config.append_timeout).await?,
                ));
                let writer = Writer::new(backend, config, counters.clone()).await?;
                tokio::spawn(writer.run(rx));
            }
        }
        Ok(Self {
            tx,
            counters,
            timeout,
        })
    }

    /// Appends `record` and returns once it is durable.
    ///
    /// The chain fields (`replica_id`, `seq`, `prev_hash`, `hash`) are overwritten, and bodies
    /// longer than [`AppenderConfig::max_inline_body`] are cut to a prefix. Fails promptly
    /// (within [`AppenderConfig::append_timeout`]) when the store cannot take the record;
    /// the caller must then not act on the request.
    pub async fn append(&self, record: AuditRecord) -> Result<Receipt> {
        let (reply, rx) = oneshot::channel();
        self.call(Job::Append(Box::new(record), reply), rx).await
    }

    /// Signs and stores a checkpoint of the chain head now, if records were added since the
    /// last one. Returns it, or `None` when there was nothing new to seal.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let (reply, rx) = oneshot::channel();
        self.call(Job::Checkpoint(reply), rx).await
    }

    /// Seals the chain with a final checkpoint and stops the writer. Appends still queued
    /// are committed first; later appends from other clones fail with
    /// [`StoreError::WriterStopped`].
    pub async fn close(self) -> Result<Option<Checkpoint>> {
        let (reply, rx) = oneshot::channel();
        self.call(Job::Close(reply), rx).await
    }

    /// Counters since start.
    pub fn stats(&self) -> AppenderStats {
        let c = &self.counters;
        AppenderStats {
            records: c.records.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
        }
    }

    async fn call<T>(&self, job: Job, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        let wait = async {
            self.tx
                .send(job)
                .await
                .map_err(|_| StoreError::WriterStopped)?;
            rx.await.map_err(|_| StoreError::WriterStopped)?
        };
        tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
    }
}

struct Writer {
    backend: WriterBackend,
    config: AppenderConfig,
    head: Head,
    /// Set after a failed commit: the commit may or may not have happened (a connection lost
    /// during COMMIT), so the head is re-read from the store before the next batch.
    needs_resync: bool,
    last_checkpoint_at: Instant,
    counters: Arc<Counters>,
}

// === impl Writer ===

impl Writer {
    async fn new(
        mut backend: WriterBackend,
        config: AppenderConfig,
        counters: Arc<Counters>,
    ) -> Result<Writer> {
        let head = backend.head(&config.replica_id).await?;
        Ok(Writer {
            backend,
            config,
            head,
            needs_resync: false,
            last_checkpoint_at: Instant::now(),
            counters,
        })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.config.max_batch);
        loop {
            let unsealed = self.head.seq > self.head.checkpoint_seq;
            let deadline = self.last_checkpoint_at + self.config.checkpoint_interval;
            let first = tokio::select! {
                job = rx.recv() => job,
                _ = tokio::time::sleep_until(deadline), if unsealed => {
                    // Records arrived, then the traffic stopped: seal them on time anyway.
                    if let Err(e) = self.commit_batch(Vec::new(), true).await {
                        tracing::warn!(error = %e, "audit checkpoint failed");
                        // Try again after another interval rather than spin.
                        self.last_checkpoint_at = Instant::now();
                    }
                    continue;
                }
            };
            let Some(first) = first else {
                // Every appender handle was dropped without close(): seal what we have.
                let _ = self.commit_batch(Vec::new(), true).await;
                return;
            };
            jobs.push(first);
            while jobs.len() < self.config.max_batch.max(1) {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::with_capacity(jobs.len());
            let mut sealers = Vec::new();
            let mut closer = None;
            for job in jobs.drain(..) {
                match job {
                    Job::Append(r, reply) => appends.push((r, reply)),
                    Job::Checkpoint(reply) => sealers.push(reply),
                    Job::Close(reply) => closer = Some(reply),
                }
            }
            let force = !sealers.is_empty() || closer.is_some();
            let result = self.commit_batch(appends, force).await;
            for reply in sealers {
                let _ = reply.send(share(&result));
            }
            if let Some(reply) = closer {
                if let WriterBackend::Postgres(w) = &mut self.backend {
                    w.release().await;
                }
                let _ = reply.send(share(&result));
                // Appends already queued behind the close are refused by dropping them.
                return;
            }
        }
    }

    /// Chains and commits `appends` (and a checkpoint when due or `force`d), then answers
    /// each append.
    async fn commit_batch(
        &mut self,
        appends: Vec<(Box<AuditRecord>, oneshot::Sender<Result<Receipt>>)>,
        force: bool,
    ) -> BatchResult {
        if self.needs_resync {
            match self.backend.head(&self.config.replica_id).await {
                Ok(head) => {
                    self.head = head;
                    self.needs_resync = false;
                }
                Err(e) => return self.fail(appends, e),
            }
        }
        let mut head = self.head.clone();
        // Checkpoints are always fsynced: they are what a verifier trusts.
        let mut fsync = force;
        let mut rows = Vec::with_capacity(appends.len());
        let mut waiting = Vec::with_capacity(appends.len());
        for (mut record, reply) in appends {
            fsync |= self.config.durability.needs_fsync(record.kind);
            match self.chain(&mut record, &head) {
                Ok((row, hash)) => {
                    head.seq += 1;
                    head.hash = hash;
                    waiting.push((
                        reply,
                        Receipt {
                            id: record.id,
                            replica_id: row.replica_id.clone(),
                            seq: head.seq,
                            hash: row.hash.clone(),
                        },
                    ));
                    rows.push(row);
                }
                // A record that cannot be encoded fails alone; the batch goes on.
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        let due = head.seq - head.checkpoint_seq >= self.config.checkpoint_every
            || self.last_checkpoint_at.elapsed() >= self.config.checkpoint_interval
            || force;
        let checkpoint = if due && head.seq > head.checkpoint_seq {
            match Checkpoint::sign(
                &self.config.signing_key,
                &self.config.replica_id,
                head.seq,
                &hex::encode(head.hash),
                Timestamp::now(),
            ) {
                Ok(cp) => Some(cp),
                Err(e) => return self.fail_waiting(waiting, e),
            }
        } else {
            None
        };
        if rows.is_empty() && checkpoint.is_none() {
            return Ok(None);
        }
        let n = rows.len() as u64;
        let fsync = fsync || checkpoint.is_some();
        match self.backend.commit(rows, checkpoint.clone(), fsync).await {
            Ok(()) => {
                if let Some(cp) = &checkpoint {
                    // Logged so that checkpoints also exist outside the database: a copy
                    // elsewhere is what exposes a rewrite of the tail together with its
                    // checkpoints (see docs/audit.md).
                    tracing::info!(
                        target: "audit_checkpoint",
                        replica_id = %cp.replica_id,
                        seq = cp.seq,
                        hash = %cp.hash,
                        time = %cp.time,
                        public_key = %cp.public_key,
                        signature = %cp.signature,
                        "audit checkpoint"
                    );
                    head.checkpoint_seq = head.seq;
                    self.last_checkpoint_at = Instant::now();
                    self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                }
                self.head = head;
                self.counters.records.fetch_add(n, Ordering::Relaxed);
                self.counters.transactions.fetch_add(1, Ordering::Relaxed);
                for (reply, receipt) in waiting {
                    let _ = reply.send(Ok(receipt));
                }
                Ok(checkpoint)
            }
            Err(e) => self.fail_waiting(waiting, e),
        }
    }

    /// Sets the chain fields of `record`; returns its row and raw hash.
    fn chain(&self, record: &mut AuditRecord, head: &Head) -> Result<(RecordRow, [u8; 32])> {
        record.replica_id.clone_from(&self.config.replica_id);
        record.seq = head.seq + 1;
        record.prev_hash = hex::encode(head.hash);
        record.hash.clear();
        for body in [&mut record.request_body, &mut record.response_body]
            .into_iter()
            .flatten()
        {
            body.limit(self.config.max_inline_body, self.config.body_prefix);
        }
        let payload = record_payload(record)?;
        let hash = record_hash(&head.hash, &payload);
        let payload = String::from_utf8(payload)
            .map_err(|e| StoreError::Encode(format!("payload is not UTF-8: {e}")))?;
        let row = RecordRow::new(record, payload, hex::encode(hash))?;
        Ok((row, hash))
    }

    fn fail(
        &mut self,
        appends: Vec<(Box<AuditRecord>, oneshot::Sender<Result<Receipt>>)>,
        e: StoreError,
    ) -> BatchResult {
        let waiting = appends
            .into_iter()
            .map(|(r, reply)| {
                let receipt = Receipt {
                    id: r.id,
                    replica_id: String::new(),
                    seq: 0,
                    hash: String::new(),
                };
                (reply, receipt)
            })
            .collect();
        self.fail_waiting(waiting, e)
    }

    fn fail_waiting(
        &mut self,
        waiting: Vec<(oneshot::Sender<Result<Receipt>>, Receipt)>,
        e: StoreError,
    ) -> BatchResult {
        tracing::warn!(error = %e, records = waiting.len(), "audit batch failed");
        self.needs_resync = true;
        self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
        let e = Arc::new(e);
        for (reply, _) in waiting {
            let _ = reply.send(Err(StoreError::WriteFailed(e.clone())));
        }
        Err(e)
    }
}

/// A batch's result, shared by everyone waiting on it.
type BatchResult = std::result::Result<Option<Checkpoint>, Arc<StoreError>>;

fn share(result: &BatchResult) -> Result<Option<Checkpoint>> {
    match result {
        Ok(cp) => Ok(cp.clone()),
        Err(e) => Err(StoreError::WriteFailed(e.clone())),
    }
}
