//! The `airlock` binary: thin glue over the library crates.
#![forbid(unsafe_code)]

mod approvals;
mod audit;
mod commands;
mod logging;
mod policy_cmd;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc: the gateway allocates and frees many small buffers per request across worker
/// threads, where glibc's malloc spent about a tenth of the CPU (`perf`, docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "A Kubernetes API gateway for AI agents"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "AIRLOCK_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulated cluster and the gateway on embedded defaults.
    Demo(commands::DemoArgs),
    /// Run the gateway from a configuration file.
    Serve {
        #[arg(long, short, default_value = "airlock.yaml")]
        config: PathBuf,
    },
    /// Check a configuration file: which key is wrong, and why.
    CheckConfig {
        #[arg(long, short, default_value = "airlock.yaml")]
        config: PathBuf,
    },
    /// Run the simulated Kubernetes API server alone (tests and side-by-side comparisons).
    Sim(commands::SimArgs),
    /// Write a kubeconfig that points an agent at Airlock.
    Kubeconfig(commands::KubeconfigArgs),
    /// client-go exec credential plugin: print an ExecCredential with a fresh OIDC token.
    Credential(commands::CredentialArgs),
    /// The audit log: verify, export, list, show.
    Audit(audit::AuditArgs),
    /// Agent sessions recorded in the audit log.
    Sessions(audit::SessionsArgs),
    /// A session's timeline, with its exec recordings played or exported (asciicast v2).
    Replay(audit::ReplayArgs),
    /// Policy tools: `policy test --policy FILE --from-audit` (what would change).
    Policy(policy_cmd::PolicyArgs),
    /// List, show, approve and deny calls held for approval (docs/approvals.md).
    Approvals(approvals::ApprovalsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => {
            logging::init(cli.log_json, None);
            commands::demo(args).await?;
        }
        Command::Serve { config } => {
            let cfg = gateway::Config::load(&config)?;
            logging::init(cli.log_json || cfg.log_json, cfg.log_level.as_deref());
            let running = gateway::start(&cfg).await?;
            println!(
                "airlock ready on https://{} (admin http://{})",
                running.addr, running.admin_addr
            );
            commands::wait_for_signal().await;
            running.shutdown().await;
        }
        Command::CheckConfig { config } => return Ok(check_config(&config)),
        Command::Sim(args) => {
            logging::init(cli.log_json, None);
            commands::sim(args).await?;
        }
        Command::Kubeconfig(args) => commands::kubeconfig(args)?,
        Command::Audit(args) => {
            logging::init(cli.log_json, Some("warn"));
            return audit::audit(args).await;
        }
        Command::Sessions(args) => {
            logging::init(cli.log_json, Some("warn"));
            return audit::sessions_cmd(args).await;
        }
        Command::Policy(args) => {
            logging::init(cli.log_json, Some("warn"));
            return policy_cmd::policy(args).await;
        }
        Command::Replay(args) => {
            logging::init(cli.log_json, Some("warn"));
            return audit::replay(args).await;
        }
        Command::Approvals(args) => return approvals::run(args).await,
        Command::Credential(args) => {
            logging::init(cli.log_json, Some("warn"));
            commands::credential(args)
                .await
                .context("airlock credential")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let cfg = match gateway::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{} is not valid:\n{e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    // Also resolve each cluster's kubeconfig, as `serve` will.
    let mut bad = false;
    for (i, c) in cfg.clusters.iter().enumerate() {
        if let gateway::config::ClusterSource::Kubeconfig {
            path: kc, context, ..
        } = c
        {
            if let Err(e) = gateway::kubeconfig::load(kc, context.as_deref()) {
                eprintln!("clusters[{i}].kubeconfig: {e}");
                bad = true;
            }
        }
    }
    if bad {
        return ExitCode::FAILURE;
    }
    println!(
        "{}: ok ({} cluster(s), default {:?})",
        path.display(),
        cfg.clusters.len(),
        cfg.default_cluster
    );
    ExitCode::SUCCESS
}
