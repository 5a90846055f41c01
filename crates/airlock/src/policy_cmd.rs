//! `airlock policy test`: a what-if before tightening a rule. Recorded requests from the audit
//! log are run through a candidate policy, and every request whose outcome would change is
//! shown next to what was decided at the time.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use store::{AuditRecord, Filter, RecordKind};

use crate::audit::{FilterArgs, StoreArgs};

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Replay recorded requests through a candidate policy and show what would change.
    Test {
        /// The candidate policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Take the requests from the audit log (`--store` / `--state-dir`, and the filters).
        #[arg(long, required = true)]
        from_audit: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Exit with status 1 when any decision would change (for CI on policy repositories).
        #[arg(long)]
        fail_on_change: bool,
    },
}

/// One recorded request rebuilt for evaluation.
struct Replayed {
    record: AuditRecord,
    info: kube_request::RequestInfo,
    identity: authn::Identity,
    headers: BTreeMap<String, String>,
    object: Option<serde_json::Value>,
}

pub async fn policy(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let PolicyCommand::Test {
        policy: path,
        from_audit: _,
        store,
        filter,
        fail_on_change,
    } = args.command;
    let candidate = policy::Policy::load_file(&path)
        .with_context(|| format!("{} is not a valid policy", path.display()))?;
    let store = store.open().await?;
    let mut f: Filter = filter.filter()?;
    f.kind = Some(RecordKind::Request);
    let mut export = store.export(f);
    let mut replayed = Vec::new();
    let mut skipped = 0;
    while let Some(r) = export.next().await? {
        match rebuild(r) {
            Some(x) => replayed.push(x),
            None => skipped += 1,
        }
    }
    if replayed.is_empty() {
        bail!("no recorded requests match the filters");
    }
    replayed.sort_by_key(|x| x.record.received_at);

    let mut changes = 0;
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    println!(
        "{:<25} {:<20} {:<9} {:<9} {:<28} COMMAND",
        "RECEIVED", "USER", "RECORDED", "CANDIDATE", "RULE"
    );
    for x in &replayed {
        let ctx = policy::RequestContext {
            cluster: x.record.cluster.as_deref().unwrap_or(""),
            info: &x.info,
            identity: &x.identity,
            method: x.record.method.as_deref().unwrap_or("GET"),
            headers: x.headers.clone(),
            object: x.object.as_ref(),
        };
        let d = candidate.evaluate(&ctx);
        let after = match d.verdict {
            policy::Verdict::Allow => "allow",
            policy::Verdict::Deny => "deny",
            policy::Verdict::Approve => "approve",
        };
        let before = x
            .record
            .decision
            .as_ref()
            .map_or("allow", |d| d.action.as_str());
        if before == after {
            continue;
        }
        changes += 1;
        *counts
            .entry((before.to_owned(), after.to_owned()))
            .or_default() += 1;
        let rule = d
            .matched
            .iter()
            .find(|m| m.action.to_string() == after)
            .map_or("(default)".to_owned(), |m| m.name.to_string());
        println!(
            "{:<25} {:<20} {:<9} {:<9} {:<28} {}",
            x.record.received_at.to_rfc3339(),
            x.identity.user,
            before,
            after,
            rule,
            x.record.command.as_deref().unwrap_or("-")
        );
    }
    println!();
    println!(
        "{} recorded request(s) replayed, {changes} would change{}",
        replayed.len(),
        if skipped > 0 {
            format!(" ({skipped} could not be rebuilt and were skipped)")
        } else {
            String::new()
        }
    );
    for ((b, a), n) in counts {
        println!("  {b} -> {a}: {n}");
    }
    Ok(if fail_on_change && changes > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Rebuilds what the gateway evaluated from a request record. The object is the recorded
/// (masked) request body: rules that look at object structure (privileged, hostPath, roleRef)
/// see the same thing; rules that look at secret values would not, which no sane rule does.
fn rebuild(record: AuditRecord) -> Option<Replayed> {
    let method = record.method.clone()?;
    let full = record.path.clone()?;
    let (path, query) = match full.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (full.clone(), None),
    };
    let info = kube_request::parse(&kube_request::RequestParts {
        method: &method,
        path: &path,
        query: query.as_deref(),
        content_type: None,
    })
    .ok()?;
    let id = &record.identity;
    let identity = authn::Identity {
        user: id.user.clone(),
        uid: id.uid.clone(),
        groups: id.groups.clone(),
        client_id: id.client_id.clone(),
        session_id: id.session_id.clone(),
        issuer: None,
        expires_at: None,
    };
    let mut headers = BTreeMap::new();
    for (k, v) in [
        ("user-agent", &id.user_agent),
        ("x-airlock-intent", &record.intent),
        ("kubectl-command", &record.kubectl_command),
        ("kubectl-session", &record.kubectl_session),
    ] {
        if let Some(v) = v {
            headers.insert(k.to_owned(), v.clone());
        }
    }
    let object = record
        .request_body
        .as_ref()
        .filter(|b| !b.truncated)
        .and_then(|b| b.bytes())
        .and_then(|raw| {
            policy::parse_object(None, &raw)
                .or_else(|_| policy::parse_object(Some("application/yaml"), &raw))
                .ok()
                .flatten()
        });
    Some(Replayed {
        record,
        info,
        identity,
        headers,
        object,
    })
}
