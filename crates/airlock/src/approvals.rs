//! `airlock approvals list | show | approve | deny`: a client of the approvals admin API
//! (`docs/approvals.md`). TLS is always verified: against `--ca-file`, else the `ca.crt` kept
//! next to the token file (the demo's state directory), else the Mozilla roots.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{anyhow, bail, Context};
use approvals::{Approval, State};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rustls::pki_types::{pem::PemObject, CertificateDer};

#[derive(clap::Args)]
pub struct ApprovalsArgs {
    /// Airlock's URL (https://host:port). With the demo: the contents of DIR/admin.url.
    #[arg(long, env = "AIRLOCK_SERVER", global = true)]
    server: Option<String>,
    /// File holding the bearer token (an approver's, to decide). Demo: DIR/approver.token.
    #[arg(long, env = "AIRLOCK_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate of Airlock's listener. Default: ca.crt next to the token file, if there.
    #[arg(long, env = "AIRLOCK_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(clap::Subcommand)]
enum ApprovalsCommand {
    /// List approvals you asked for or may decide.
    List {
        /// pending, approved, denied, expired, used or all.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// Everything about one approval: command, identity, masked body, rules, decisions.
    Show { id: String },
    /// Approve a held call. Single use unless --for gives a time box.
    Approve {
        id: String,
        /// Let the grant be used until this long from now (e.g. 30m), within the rule's limit.
        #[arg(long = "for")]
        for_: Option<String>,
        /// How far the grant reaches: request (default), resource, namespace or session.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a held call; the agent sees the reason.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

struct ApiClient {
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    server: String,
    token: String,
}

pub async fn run(args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(&args)?;
    match args.command {
        ApprovalsCommand::List { state } => {
            let v = api.call("GET", &format!("?state={state}"), None).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let items: Vec<Approval> = serde_json::from_value(v["items"].clone())
                .context("unexpected answer from the approvals API")?;
            if items.is_empty() {
                println!("no {state} approvals");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<10} {:<9} {:<20} {:<20} COMMAND",
                "ID", "STATE", "CREATED", "REQUESTER"
            );
            for a in items {
                println!(
                    "{:<10} {:<9} {:<20} {:<20} {}",
                    a.id,
                    a.state.as_str(),
                    approvals::rfc3339(a.created),
                    a.requester.user,
                    a.command
                );
            }
        }
        ApprovalsCommand::Show { id } => {
            let v = api.call("GET", &format!("/{id}"), None).await?;
            print_approval(v, args.json)?;
        }
        ApprovalsCommand::Approve {
            id,
            for_,
            scope,
            reason,
        } => {
            let body = serde_json::json!({"for": for_, "scope": scope, "reason": reason});
            let v = api
                .call("POST", &format!("/{id}/approve"), Some(body))
                .await?;
            print_decided(v, args.json)?;
        }
        ApprovalsCommand::Deny { id, reason } => {
            let body = serde_json::json!({ "reason": reason });
            let v = api.call("POST", &format!("/{id}/deny"), Some(body)).await?;
            print_decided(v, args.json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_decided(v: serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let a: Approval =
        serde_json::from_value(v).context("unexpected answer from the approvals API")?;
    match a.state {
        State::Approved | State::Used => {
            let grant = match &a.grant {
                Some(g) if g.uses_left.is_some() => {
                    format!("single use, until {}", approvals::rfc3339(g.expires))
                }
                Some(g) => format!(
                    "{} scope, until {}",
                    approvals::scope_name(g.scope),
                    approvals::rfc3339(g.expires)
                ),
                None => String::new(),
            };
            println!("approval {} approved ({grant}): {}", a.id, a.command)
        }
        State::Pending => {
            let quorum = a.requirements.iter().map(|r| r.quorum).max().unwrap_or(1);
            println!(
                "approval {} recorded; {} of {quorum} approvals so far, still pending",
                a.id,
                a.decisions.len()
            )
        }
        s => println!("approval {} {}: {}", a.id, s.as_str(), a.command),
    }
    Ok(())
}

fn print_approval(v: serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let a: Approval =
        serde_json::from_value(v).context("unexpected answer from the approvals API")?;
    let t = &a.target;
    println!("id:        {}", a.id);
    println!("state:     {}", a.state.as_str());
    println!("command:   {}", a.command);
    println!(
        "requester: {} (groups: {})",
        a.requester.user,
        a.requester.groups.join(", ")
    );
    println!("cluster:   {}", t.cluster);
    println!(
        "request:   {} {}{}",
        t.method,
        t.path,
        t.query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    if let Some(i) = &a.intent {
        println!("intent:    {i}");
    }
    if let Some(k) = &a.kubectl_command {
        println!(
            "kubectl:   {k}{}",
            a.kubectl_session
                .as_deref()
                .map(|s| format!(" (session {s})"))
                .unwrap_or_default()
        );
    }
    println!("created:   {}", approvals::rfc3339(a.created));
    println!("expires:   {}", approvals::rfc3339(a.expires));
    println!("why:       {}", a.message);
    for r in &a.requirements {
        println!(
            "rule:      {} (approvers: {}; quorum {})",
            r.rule,
            r.approvers.join(", "),
            r.quorum
        );
    }
    println!(
        "grants:    up to {}, scopes {}",
        approvals::format_duration(a.grant_limit.max_seconds),
        a.grant_limit
            .scopes
            .iter()
            .map(|s| approvals::scope_name(*s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for d in &a.decisions {
        println!(
            "decision:  {} {:?} at {}{}",
            d.approver,
            d.verdict,
            approvals::rfc3339(d.at),
            d.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    if let Some(g) = &a.grant {
        println!(
            "grant:     {} scope, until {}, used {}{}",
            approvals::scope_name(g.scope),
            approvals::rfc3339(g.expires),
            g.used,
            if g.uses_left.is_some() {
                " (single use)"
            } else {
                ""
            }
        );
    }
    if let Some(b) = &a.body {
        println!("body (masked):\n{b}");
    }
    if let Some(p) = &a.preview {
        print_preview(p);
    }
    Ok(())
}

/// The dry-run preview: what the cluster would do, masked.
fn print_preview(p: &serde_json::Value) {
    if let Some(e) = p.get("dry_run_error") {
        println!(
            "preview:   the dry run failed: {}",
            e.as_str().unwrap_or(&e.to_string())
        );
    }
    if let Some(c) = p.get("contains").and_then(|c| c.as_object()) {
        let parts: Vec<String> = c
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| {
                format!(
                    "{} {k}",
                    n.as_u64()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| n.as_str().unwrap_or("?").to_owned())
                )
            })
            .collect();
        println!(
            "contains:  {}",
            if parts.is_empty() {
                "nothing of the common kinds".to_owned()
            } else {
                parts.join(", ")
            }
        );
    }
    if let Some(d) = p.get("diff").and_then(|d| d.as_array()) {
        println!("diff (dry run against the current object):");
        if d.is_empty() {
            println!("  (no change)");
        }
        for c in d {
            let path = c["path"].as_str().unwrap_or("");
            match c["op"].as_str() {
                Some("add") => println!("  + {path}: {}", c["to"]),
                Some("remove") => println!("  - {path}: {}", c["from"]),
                Some("replace") => println!("  ~ {path}: {} -> {}", c["from"], c["to"]),
                _ => println!("  … {} more", c["count"]),
            }
        }
    }
    if let Some(o) = p.get("object") {
        println!(
            "result (dry run, masked):\n{}",
            serde_json::to_string_pretty(o).unwrap_or_default()
        );
    }
}

impl ApiClient {
    fn new(args: &ApprovalsArgs) -> anyhow::Result<ApiClient> {
        let server = args
            .server
            .clone()
            .ok_or_else(|| anyhow!("give --server URL (or AIRLOCK_SERVER); with the demo: $(cat .airlock-demo/admin.url)"))?;
        let server = server.trim().trim_end_matches('/').to_owned();
        if !server.starts_with("https://") {
            bail!("--server must be an https:// URL: tokens are never sent in the clear");
        }
        let token_file = args
            .token_file
            .clone()
            .ok_or_else(|| anyhow!("give --token-file FILE (or AIRLOCK_TOKEN_FILE)"))?;
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read {}", token_file.display()))?
            .trim()
            .to_owned();
        let ca_file = args.ca_file.clone().or_else(|| {
            let beside = token_file.parent()?.join("ca.crt");
            beside.is_file().then_some(beside)
        });
        let mut roots = rustls::RootCertStore::empty();
        match &ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
                for c in certs {
                    roots.add(c)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        Ok(ApiClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            server,
            token,
        })
    }

    /// Calls `/airlock/v1/approvals{rest}`; a non-2xx answer becomes an error with the
    /// server's message.
    async fn call(
        &self,
        method: &str,
        rest: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/airlock/v1/approvals{rest}", self.server);
        let bytes = match &body {
            Some(b) => Bytes::from(serde_json::to_vec(b)?),
            None => Bytes::new(),
        };
        let req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(Full::new(bytes))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| anyhow!("{url}: no answer within 30s"))?
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::json!({"message": String::from_utf8_lossy(&body)}));
        if !status.is_success() {
            let msg = v["message"].as_str().unwrap_or("no message");
            bail!(
                "{} ({}): {msg}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
        }
        Ok(v)
    }
}
