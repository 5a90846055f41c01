//! `airlock audit`, `airlock sessions` and `airlock replay`: read-only views over the audit
//! store. They work offline, on the live database or on a copy of it.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write,
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};
use store::{
    sessions::{self, Recording},
    AuditRecord, Filter, RecordKind, Store, Timestamp,
};

/// Where the audit store is: `--store URL`, or the embedded database in `--state-dir`.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// `sqlite:///path/audit.db` or `postgres://...`.
    #[arg(long, env = "AIRLOCK_STORE", global = true)]
    store: Option<String>,
    /// The state directory whose `audit.db` to read (what `airlock demo` and `serve` use).
    #[arg(long, env = "AIRLOCK_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::commands::DEMO_DIR))
    }

    pub(crate) async fn open(&self) -> anyhow::Result<Store> {
        let url = match &self.store {
            Some(url) => url.clone(),
            None => {
                let dir = self.state_dir();
                let db = dir.join("audit.db");
                if !db.is_file() {
                    bail!(
                        "no audit database at {} (give --store URL or --state-dir DIR)",
                        db.display()
                    );
                }
                gateway::config::default_store_url(&dir)
            }
        };
        Store::open(&url)
            .await
            .context("cannot open the audit store")
    }
}

/// Filters shared by `audit list`, `audit export` and `sessions list`.
#[derive(Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Received at or after (RFC 3339, or a duration ago such as `30m`, `2h`).
    #[arg(long)]
    since: Option<String>,
    /// Received before (RFC 3339, or a duration ago).
    #[arg(long)]
    until: Option<String>,
    /// Only this cluster.
    #[arg(long)]
    cluster: Option<String>,
    /// Only this namespace.
    #[arg(long, short)]
    namespace: Option<String>,
    /// Only this policy action: allow, deny, approve, refuse.
    #[arg(long)]
    decision: Option<String>,
}

impl FilterArgs {
    pub(crate) fn filter(&self) -> anyhow::Result<Filter> {
        Ok(Filter {
            user: self.user.clone(),
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            cluster: self.cluster.clone(),
            namespace: self.namespace.clone(),
            decision: self.decision.clone(),
            ..Filter::default()
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chains and the checkpoint signatures; name the first bad record.
    Verify {
        /// Public (or private) Ed25519 key files to trust. Default: the state directory's
        /// `audit.key.pub` or `audit.key`.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// Also check against checkpoints kept outside the database: the gateway's log (text
        /// or JSON; each checkpoint is logged as `audit checkpoint`), or JSON lines of
        /// checkpoints. Catches a tail deleted or rewritten together with its checkpoints.
        #[arg(long = "checkpoints", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
    },
    /// Check a copy of the log outside the database, offline: the JSON lines of
    /// `audit export --format jsonl` or of a streaming sink, against the trusted keys and the
    /// checkpoints the gateway logged. Opens no store.
    VerifyExport(VerifyExportArgs),
    /// Write records out: JSON lines (hashes included) or audit.k8s.io/v1 Events.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// One line per request, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Every record of one request, as JSON.
    Show { id: String },
}

#[derive(Args, Debug)]
pub struct VerifyExportArgs {
    /// The JSON-lines files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// As for `verify`.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// As for `verify`. Without any, the lines only prove they are consistent: someone who
    /// rewrote them could have recomputed every hash.
    #[arg(long = "checkpoints", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    /// A filtered export: missing positions are counted, not reported.
    #[arg(long)]
    allow_gaps: bool,
    /// Pass a copy that no trusted checkpoint covers (consistency only).
    #[arg(long)]
    allow_unsealed: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    K8s,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// Agent sessions: by the token's `sid`, `X-Airlock-Session`, else identity and a time gap.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Requests further apart than this start a new session (identity-only grouping).
        #[arg(long, default_value = "30m")]
        gap: String,
    },
}

#[derive(Args, Debug)]
pub struct SessionsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: SessionsCommand,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A session id from `sessions list`, a `Kubectl-Session`, or a request id.
    session: String,
    /// Playback speed for exec recordings (2 = twice as fast; 0 = no waiting).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Print the timeline only; do not play recordings.
    #[arg(long)]
    no_play: bool,
    /// Write the session's exec recording(s) in this format instead of playing them.
    #[arg(long, value_enum)]
    export: Option<ReplayExport>,
    /// With `--export`: the file to write (default stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Session grouping gap, as in `sessions list`.
    #[arg(long, default_value = "30m")]
    gap: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReplayExport {
    /// asciicast v2, as `asciinema play` reads it.
    Cast,
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    // Needs no store: returned before one is opened.
    if let AuditCommand::VerifyExport(export) = args.command {
        return verify_export(&args.store, export);
    }
    let store = args.store.open().await?;
    match args.command {
        AuditCommand::Verify { keys, checkpoints } => {
            verify(&store, &args.store, keys, checkpoints).await
        }
        AuditCommand::VerifyExport(export) => verify_export(&args.store, export),
        AuditCommand::Export {
            format,
            output,
            filter,
        } => {
            let filter = filter.filter()?;
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("{}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = match format {
                ExportFormat::Jsonl => export_jsonl(&store, filter, &mut out).await?,
                ExportFormat::K8s => export_k8s(&store, filter, &mut out).await?,
            };
            out.flush()?;
            drop(out);
            eprintln!("exported {n} record(s)");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::List { filter, limit } => {
            let mut f = filter.filter()?;
            f.kind = Some(RecordKind::Request);
            f.limit = Some(limit);
            let rows = store.list(&f).await?;
            println!(
                "{:<25} {:<36} {:<20} {:<8} COMMAND",
                "RECEIVED", "ID", "USER", "DECISION"
            );
            for r in rows {
                println!(
                    "{:<25} {:<36} {:<20} {:<8} {}",
                    r.received_at.to_rfc3339(),
                    r.id,
                    r.user,
                    r.decision.as_deref().unwrap_or("-"),
                    r.command.as_deref().unwrap_or("-")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Show { id } => {
            let id = uuid::Uuid::parse_str(&id).context("not a request id")?;
            let records = store.get(id).await?;
            if records.is_empty() {
                bail!("no records for request {id}");
            }
            println!("{}", serde_json::to_string_pretty(&records)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn verify(
    store: &Store,
    args: &StoreArgs,
    keys: Vec<PathBuf>,
    checkpoint_files: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let external = read_checkpoints(&checkpoint_files)?;
    let trusted = trusted_keys(args, keys)?;
    let report = store::verify_with_external(store, &trusted, &external).await?;
    Ok(print_report(&report, !external.is_empty()))
}

fn verify_export(args: &StoreArgs, export: VerifyExportArgs) -> anyhow::Result<ExitCode> {
    let VerifyExportArgs {
        files,
        keys,
        checkpoints: checkpoint_files,
        allow_gaps,
        allow_unsealed,
    } = export;
    let external = read_checkpoints(&checkpoint_files)?;
    let trusted = trusted_keys(args, keys)?;
    let mut text = String::new();
    for path in &files {
        text += &std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        text.push('\n');
    }
    let gaps = if allow_gaps {
        store::Gaps::Allow
    } else {
        store::Gaps::Refuse
    };
    let unsealed = if allow_unsealed {
        store::Unsealed::Allow
    } else {
        store::Unsealed::Refuse
    };
    if external.is_empty() {
        eprintln!(
            "warning: no --checkpoints given: the lines can only be shown consistent, not authentic"
        );
    }
    let report = store::verify_lines(&text, &trusted, &external, gaps, unsealed);
    Ok(print_report(&report, !external.is_empty()))
}

/// Checkpoints kept outside the database, from each file; a file without any is an error.
fn read_checkpoints(files: &[PathBuf]) -> anyhow::Result<Vec<store::Checkpoint>> {
    let mut external = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let found = store::parse_checkpoint_log(&text);
        if found.is_empty() {
            bail!("{}: no audit checkpoints in it", path.display());
        }
        external.extend(found);
    }
    Ok(external)
}

/// The keys given, else the state directory's `audit.key.pub` (or `audit.key`).
fn trusted_keys(args: &StoreArgs, keys: Vec<PathBuf>) -> anyhow::Result<Vec<store::PublicKey>> {
    let paths = if keys.is_empty() {
        let dir = args.state_dir();
        let pubkey = dir.join("audit.key.pub");
        let key = if pubkey.is_file() {
            pubkey
        } else {
            dir.join("audit.key")
        };
        if !key.is_file() {
            bail!("no key to trust: give --key FILE (the gateway's audit.key.pub), or --state-dir");
        }
        vec![key]
    } else {
        keys
    };
    paths
        .iter()
        .map(|p| store::load_verifying_key(p).with_context(|| p.display().to_string()))
        .collect()
}

/// Prints a verification report; exit code 2 when it found a problem.
fn print_report(report: &store::VerifyReport, external: bool) -> ExitCode {
    for r in &report.replicas {
        println!(
            "replica {:?}: {} record(s), seq {}..{}, {} checkpoint(s), last signed checkpoint {}, {} unsealed{}{}",
            r.replica_id,
            r.records,
            r.first_seq.map_or("-".into(), |s| s.to_string()),
            r.last_seq.map_or("-".into(), |s| s.to_string()),
            r.checkpoints,
            r.last_checkpoint_seq.map_or("none".into(), |s| s.to_string()),
            r.unsealed,
            r.anchor_seq
                .map_or(String::new(), |s| format!(", pruned through {s} (anchor)")),
            if r.gaps > 0 {
                format!(", {} position(s) missing", r.gaps)
            } else {
                String::new()
            }
        );
        if external {
            println!(
                "  {} external checkpoint(s) matched{}",
                r.external_checkpoints,
                if r.external_pruned > 0 {
                    format!(
                        ", {} in the pruned range (not checkable: was that prune yours?)",
                        r.external_pruned
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    if report.is_ok() {
        println!("ok: the audit log verifies");
        return ExitCode::SUCCESS;
    }
    if let Some(first) = report.first_problem() {
        println!("FAILED: first problem at {first}");
    }
    for p in report.problems.iter().skip(1) {
        println!("  also: {p}");
    }
    ExitCode::from(2)
}

async fn export_jsonl(store: &Store, filter: Filter, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut export = store.export(filter);
    let mut n = 0;
    while let Some(record) = export.next().await? {
        let value = serde_json::to_value(&record)?;
        out.write_all(&store::chain::canonical_json(&value)?)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

/// audit.k8s.io/v1 Events, one per request (request and outcome merged), so that pipelines
/// built for kube-apiserver's audit log can ingest Airlock's. Airlock's own fields go into
/// `annotations` under `airlock.dev/`.
async fn export_k8s(store: &Store, filter: Filter, out: &mut dyn Write) -> anyhow::Result<u64> {
    let mut export = store.export(filter);
    let mut pending: HashMap<uuid::Uuid, AuditRecord> = HashMap::new();
    let mut n = 0;
    while let Some(record) = export.next().await? {
        match record.kind {
            RecordKind::Request => {
                pending.insert(record.id, record);
            }
            RecordKind::Outcome => {
                let request = pending.remove(&record.id);
                let event = k8s_event(request.as_ref(), Some(&record));
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            RecordKind::Approval | RecordKind::StreamEvent => {}
        }
    }
    // Requests whose outcome is not in the export (still running, or cut by the filter).
    let mut rest: Vec<_> = pending.into_values().collect();
    rest.sort_by_key(|r| (r.replica_id.clone(), r.seq));
    for r in rest {
        serde_json::to_writer(&mut *out, &k8s_event(Some(&r), None))?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

fn k8s_event(request: Option<&AuditRecord>, outcome: Option<&AuditRecord>) -> Value {
    let base = request.or(outcome).expect("one of the two");
    let mut annotations = BTreeMap::new();
    let mut note = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            annotations.insert(format!("airlock.dev/{k}"), v);
        }
    };
    note("replica", Some(base.replica_id.clone()));
    note("cluster", base.cluster.clone());
    note("command", base.command.clone());
    note("intent", base.intent.clone());
    note("kubectl-command", base.kubectl_command.clone());
    note("kubectl-session", base.kubectl_session.clone());
    if let Some(d) = &base.decision {
        note("decision", Some(d.action.clone()));
        note("decision-reason", d.reason.clone());
        if !d.rules.is_empty() {
            note(
                "rules",
                Some(
                    d.rules
                        .iter()
                        .map(|r| format!("{}={}", r.name, r.action))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
        }
    }
    if let Some(r) = request {
        note("request-seq", Some(r.seq.to_string()));
        note("request-hash", Some(r.hash.clone()));
    }
    if let Some(o) = outcome {
        note("outcome-seq", Some(o.seq.to_string()));
        note("outcome-hash", Some(o.hash.clone()));
        if let Some(e) = o.outcome.as_ref().and_then(|x| x.error.clone()) {
            note("error", Some(e));
        }
    }
    let id = &base.identity;
    let mut extra = serde_json::Map::new();
    if let Some(s) = &id.session_id {
        extra.insert("airlock.dev/session-id".into(), json!([s]));
    }
    if let Some(c) = &id.client_id {
        extra.insert("airlock.dev/client-id".into(), json!([c]));
    }
    let body_json = |b: Option<&store::Body>| -> Value {
        b.filter(|b| !b.truncated)
            .and_then(|b| b.bytes())
            .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
            .unwrap_or(Value::Null)
    };
    let mut ev = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": base.id.to_string(),
        "stage": if outcome.is_some() { "ResponseComplete" } else { "RequestReceived" },
        "requestURI": base.path.clone().unwrap_or_default(),
        "verb": base.verb.clone().unwrap_or_default(),
        "user": {"username": id.user, "groups": id.groups, "extra": extra},
        "sourceIPs": id.source_addr.as_deref().map(|a| vec![a.rsplit_once(':').map_or(a, |(h, _)| h).trim_matches(['[', ']'])]).unwrap_or_default(),
        "userAgent": id.user_agent.clone().unwrap_or_default(),
        "requestReceivedTimestamp": micro_rfc3339(base.received_at),
        "stageTimestamp": micro_rfc3339(outcome.and_then(|o| o.completed_at).unwrap_or(base.received_at)),
        "annotations": annotations,
    });
    if base.resource.is_some() {
        ev["objectRef"] = json!({
            "resource": base.resource,
            "subresource": base.subresource,
            "namespace": base.namespace,
            "name": base.name,
            "apiGroup": base.api_group,
        });
    }
    if let Some(o) = outcome.and_then(|o| o.outcome.as_ref()) {
        ev["responseStatus"] = json!({"metadata": {}, "code": o.status});
    }
    let req_obj = body_json(request.and_then(|r| r.request_body.as_ref()));
    if !req_obj.is_null() {
        ev["requestObject"] = req_obj;
    }
    let resp_obj = body_json(outcome.and_then(|o| o.response_body.as_ref()));
    if !resp_obj.is_null() {
        ev["responseObject"] = resp_obj;
    }
    ev
}

fn micro_rfc3339(t: Timestamp) -> String {
    // kube-apiserver writes RFC 3339 with microseconds.
    let s = t.to_rfc3339();
    match s.len() {
        30 => format!("{}Z", &s[..26]),
        _ => s,
    }
}

async fn requests(store: &Store, filter: Filter) -> anyhow::Result<Vec<AuditRecord>> {
    Ok(store::sessions::requests(store, filter).await?)
}

pub async fn sessions_cmd(args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open().await?;
    match args.command {
        SessionsCommand::List { filter, gap } => {
            let gap = parse_duration(&gap)?;
            let all = sessions::group(requests(&store, filter.filter()?).await?, gap);
            println!(
                "{:<48} {:<20} {:<25} {:>8} {:>6} {:>8}  FIRST COMMAND",
                "SESSION", "USER", "START", "REQUESTS", "DENIED", "STREAMS"
            );
            for s in all.iter().rev() {
                println!(
                    "{:<48} {:<20} {:<25} {:>8} {:>6} {:>8}  {}",
                    s.id,
                    s.user,
                    s.start.to_rfc3339(),
                    s.requests.len(),
                    s.denied(),
                    s.streams(),
                    s.requests
                        .first()
                        .and_then(|r| r.command.clone())
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open().await?;
    let gap = parse_duration(&args.gap)?;
    // A request id names one request (a stream session); otherwise the session (kubectl's
    // Kubectl-Session ids are UUIDs too).
    let chosen = sessions::find(&store, &args.session, gap).await?;
    if chosen.is_empty() {
        bail!(
            "no session or request {:?} in the audit log (see `airlock sessions list`)",
            args.session
        );
    }
    let mut recordings = Vec::new();
    if args.export.is_none() {
        println!(
            "{:<25} {:<20} {:<8} {:>6}  COMMAND",
            "TIME", "USER", "DECISION", "STATUS"
        );
    }
    for r in &chosen {
        let all = store.get(r.id).await?;
        let status = all
            .iter()
            .find_map(|x| x.outcome.as_ref().map(|o| o.status.to_string()))
            .unwrap_or_else(|| "-".into());
        let events: Vec<&AuditRecord> = all
            .iter()
            .filter(|x| x.kind == RecordKind::StreamEvent)
            .collect();
        let approvals: Vec<String> = all
            .iter()
            .flat_map(|x| x.approvals.iter())
            .map(|a| format!("{} by {}", a.decision, a.approver))
            .collect();
        if args.export.is_none() {
            println!(
                "{:<25} {:<20} {:<8} {:>6}  {}{}{}",
                r.received_at.to_rfc3339(),
                r.identity.user,
                r.decision.as_ref().map_or("-", |d| d.action.as_str()),
                status,
                r.command.as_deref().unwrap_or("-"),
                if approvals.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", approvals.join(", "))
                },
                if events.is_empty() {
                    String::new()
                } else {
                    format!("  ({} stream event(s))", events.len())
                }
            );
        }
        if !events.is_empty() {
            recordings.push((r.clone(), Recording::from_records(&events)));
        }
    }

    if let Some(ReplayExport::Cast) = args.export {
        // A port-forward is no terminal session.
        recordings.retain(|(_, rec)| rec.ports.is_empty());
        if recordings.is_empty() {
            bail!("this session has no exec or attach recording");
        }
        let mut out: Box<dyn Write> = match &args.output {
            Some(p) => Box::new(std::fs::File::create(p).with_context(|| p.display().to_string())?),
            None => Box::new(std::io::stdout().lock()),
        };
        for (r, rec) in &recordings {
            out.write_all(rec.to_asciicast(r).as_bytes())?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.no_play {
        for (r, rec) in &recordings {
            println!(
                "--- playing {} ({}) ---",
                r.id,
                r.command.as_deref().unwrap_or("")
            );
            if rec.ports.is_empty() {
                play(rec, args.speed).await?;
            } else {
                print_port_forward(rec);
            }
            println!("--- end of recording ---");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A port-forward recording as a transcript: connections opening and closing and, when
/// `audit.port_forward_contents` was on, what went each way (escaped, as recorded: masked).
fn print_port_forward(rec: &Recording) {
    use store::sessions::PortEventKind;
    for e in &rec.ports {
        let at = format!(
            "+{:.6}s port {} stream {}",
            e.t_us as f64 / 1e6,
            e.port,
            e.stream
        );
        match &e.what {
            PortEventKind::Open { channel } => println!("{at} open ({channel})"),
            PortEventKind::Data { to_pod, data } => {
                let dir = if *to_pod { "-> pod" } else { "<- pod" };
                match data {
                    Some(d) => println!("{at} {dir} {} bytes: {}", d.len(), escape_bytes(d)),
                    None => println!("{at} {dir} (not recorded: masking failed)"),
                }
            }
            PortEventKind::Close {
                bytes_in,
                bytes_out,
            } => println!("{at} closed ({bytes_in} bytes to the pod, {bytes_out} back)"),
        }
    }
}

/// Printable ASCII as is, everything else as `\xNN` (and `\n`, `\r`, `\t`).
fn escape_bytes(d: &[u8]) -> String {
    d.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// Plays an exec recording's output on stdout, with its timing divided by `speed`.
async fn play(rec: &Recording, speed: f64) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut last = 0u64;
    for (t, kind, data) in &rec.events {
        if !matches!(kind.as_str(), "stdout" | "stderr") {
            continue;
        }
        if speed > 0.0 && *t > last {
            let wait = Duration::from_micros(((*t - last) as f64 / speed) as u64);
            std::thread::sleep(wait.min(Duration::from_secs(5)));
        }
        last = *t;
        stdout.write_all(data)?;
        stdout.flush()?;
    }
    Ok(())
}
/// `30m`, `2h`, `45s`, `1d`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    sessions::parse_duration(s).map_err(anyhow::Error::msg)
}

/// RFC 3339, or a duration before now.
fn parse_time(s: &str) -> anyhow::Result<Timestamp> {
    sessions::parse_time(s).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_duration("3w").is_err());
    }
}
