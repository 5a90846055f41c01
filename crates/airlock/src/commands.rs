//! `demo`, `sim`, `kubeconfig` and `credential`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use gateway::kubeconfig::{render, ClientAuth};

/// The demo's policy: the `ai-agent-baseline` preset for the `ai-agents` group. `{hold}` is
/// how long a call waits for approval.
fn demo_policy(hold: &str) -> String {
    format!(
        "\
# Airlock demo policy (docs/policy.md). Edit and save: Airlock reloads it.
# Agents (group ai-agents) get the ai-agent-baseline guardrails; calls no rule allows are denied.
# Calls that need approval wait up to `hold` for `airlock approvals approve ID` (docs/approvals.md).
agent_groups: [ai-agents]
default: allow
presets:
  - name: ai-agent-baseline
    params:
      approvers: [approvers]
      hold: {hold}
"
    )
}

/// Default state directory of the demo, relative to the working directory.
pub const DEMO_DIR: &str = ".airlock-demo";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its CA, tokens and kubeconfigs. Reused across runs.
    #[arg(long, default_value = DEMO_DIR)]
    state_dir: PathBuf,
    /// Agent-facing listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Metrics and health listener (plain HTTP). Port 0 picks a free port; see DIR/metrics.url.
    #[arg(long, default_value = "127.0.0.1:0")]
    admin_listen: SocketAddr,
    /// Keep the audit log here instead of DIR/audit.db, e.g. postgres://127.0.0.1/test.
    #[arg(long)]
    audit_store: Option<String>,
    /// Record what flows through `kubectl port-forward` (masked), not only connections and
    /// byte counts (`audit.port_forward_contents`).
    #[arg(long)]
    record_port_forward: bool,
    /// How long a call that needs approval is held, written into a new DIR/policy.yaml.
    #[arg(long, default_value = "50s")]
    approval_hold: String,
    /// Also make approver2.token .. approver{N+1}.token (group approvers), for quorum tests.
    #[arg(long, default_value_t = 0, hide = true)]
    extra_approvers: u32,
    /// Turn on the web UI (docs/web.md) with browser login at this OpenID Provider; an
    /// `http://` issuer must be on loopback.
    #[arg(long)]
    web_issuer: Option<String>,
    /// The web UI's OAuth client (public, authorization code with PKCE).
    #[arg(long, default_value = "airlock-web", requires = "web_issuer")]
    web_client_id: String,
    /// Groups whose members may sign in to the web UI and see sessions (repeatable).
    #[arg(long = "web-viewer-group", requires = "web_issuer")]
    web_viewer_groups: Vec<String>,
    /// Groups whose members may sign in and approve (repeatable). Default: approvers.
    #[arg(long = "web-approver-group", requires = "web_issuer")]
    web_approver_groups: Vec<String>,
}

#[derive(clap::Args)]
pub struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Test introspection listener (plain HTTP): GET /requests lists what the server received.
    #[arg(long)]
    introspect_listen: Option<SocketAddr>,
    /// Write an admin kubeconfig for the simulated server here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Start empty instead of with the seed data.
    #[arg(long)]
    no_seed: bool,
}

#[derive(clap::Args)]
pub struct KubeconfigArgs {
    /// Airlock's URL, e.g. https://airlock.example:8443 (add /clusters/NAME for a named cluster).
    #[arg(long)]
    server: String,
    /// CA certificate of Airlock's listener (the state directory's ca.crt when generated).
    #[arg(long)]
    ca_file: PathBuf,
    /// Context name in the written file.
    #[arg(long, default_value = "airlock")]
    context: String,
    /// Embed a static token read from this file.
    #[arg(long, conflicts_with = "issuer")]
    token_file: Option<PathBuf>,
    /// Get tokens from this OIDC issuer with `airlock credential` (no long-lived token on disk).
    #[arg(long, requires = "client_id")]
    issuer: Option<String>,
    #[arg(long)]
    client_id: Option<String>,
    /// Client secret file, for the client-credentials grant (agents). Without it the device-code
    /// grant is used (people).
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// Audience (resource indicator) to request, when the issuer needs one.
    #[arg(long)]
    audience: Option<String>,
    /// Output file; `-` for stdout.
    #[arg(long, short, default_value = "-")]
    output: String,
}

#[derive(clap::Args)]
pub struct CredentialArgs {
    #[arg(long)]
    issuer: String,
    #[arg(long)]
    client_id: String,
    /// Client secret file: use the client-credentials grant. Without it, the device-code grant.
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    #[arg(long)]
    audience: Option<String>,
    #[arg(long)]
    scope: Option<String>,
    /// Extra CA for the issuer's TLS.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Token cache directory.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn write_file(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a token kept in the state directory, or makes and keeps a new one.
fn demo_token(dir: &Path, file: &str, prefix: &str) -> anyhow::Result<String> {
    let path = dir.join(file);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = format!("{prefix}-{}", random_hex(24));
    write_file(&path, &format!("{token}\n"), true)?;
    Ok(token)
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let dir = &args.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let sim = sim::start(sim::SimConfig {
        listen: "127.0.0.1:0".parse()?,
        introspect_listen: Some("127.0.0.1:0".parse()?),
        admin_token: random_hex(24),
        seed: true,
    })
    .await
    .context("cannot start the simulated cluster")?;
    let sim_kubeconfig = dir.join("sim-admin.kubeconfig");
    write_file(&sim_kubeconfig, &sim.admin_kubeconfig(), true)?;

    // The demo enforces the baseline guardrails. The file is written once, so edits survive
    // restarts, and Airlock reloads it when it changes.
    let policy_path = dir.join("policy.yaml");
    if !policy_path.exists() {
        write_file(&policy_path, &demo_policy(&args.approval_hold), false)?;
    }
    let agent_token = demo_token(dir, "agent.token", "agent")?;
    let approver_token = demo_token(dir, "approver.token", "approver")?;
    let mut static_tokens = vec![
        serde_json::json!({"sha256": authn::hash_token(&agent_token), "user": "agent@demo", "groups": ["ai-agents"]}),
        serde_json::json!({"sha256": authn::hash_token(&approver_token), "user": "approver@demo", "groups": ["approvers"]}),
    ];
    for n in 2..args.extra_approvers + 2 {
        let t = demo_token(dir, &format!("approver{n}.token"), "approver")?;
        static_tokens.push(serde_json::json!({"sha256": authn::hash_token(&t), "user": format!("approver{n}@demo"), "groups": ["approvers"]}));
    }
    let yaml = serde_json::json!({
        "listen": args.listen.to_string(),
        "admin_listen": args.admin_listen.to_string(),
        "state_dir": dir.canonicalize()?,
        "clusters": [{"name": "demo", "kubeconfig": sim_kubeconfig.canonicalize()?}],
        "policy": policy_path.canonicalize()?,
        "audit": {
            "replica_id": "demo",
            "store": args.audit_store,
            "port_forward_contents": args.record_port_forward,
        },
        "authn": {"static_tokens": static_tokens},
    });
    let mut raw: gateway::RawConfig = serde_json::from_value(yaml)?;
    if let Some(issuer) = &args.web_issuer {
        let approvers = if args.web_approver_groups.is_empty() {
            vec!["approvers".to_owned()]
        } else {
            args.web_approver_groups.clone()
        };
        raw.web = Some(serde_json::from_value(serde_json::json!({
            "issuer": issuer,
            "client_id": args.web_client_id,
            "viewer_groups": args.web_viewer_groups,
            "approver_groups": approvers,
            "allow_insecure_http": true,
        }))?);
    }
    let cfg = gateway::Config::from_raw(raw, dir)?;
    let running = gateway::start(&cfg).await.map_err(|e| {
        anyhow::anyhow!("{e} (is another `airlock demo` running? try --listen 127.0.0.1:0)")
    })?;

    let host = if running.addr.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), running.addr.port())
    } else {
        running.addr
    };
    let server = format!("https://{host}");
    let agent_kubeconfig = dir.join("agent.kubeconfig");
    write_file(
        &agent_kubeconfig,
        &render(
            &server,
            &running.ca_pem,
            "airlock-demo",
            &ClientAuth::Token(agent_token),
        ),
        true,
    )?;
    // The approvals API is served on the TLS listener; the CLI trusts DIR/ca.crt, next to
    // the approver's token.
    write_file(&dir.join("admin.url"), &format!("{server}\n"), false)?;
    let metrics_url = format!("http://{}", running.admin_addr);
    write_file(&dir.join("metrics.url"), &format!("{metrics_url}\n"), false)?;
    if let Some(addr) = sim.introspect_addr {
        write_file(
            &dir.join("sim-introspect.url"),
            &format!("http://{addr}\n"),
            false,
        )?;
    }

    let d = dir.display();
    println!(
        "Airlock demo\n\
         \n  gateway           {server}  (the agent's only path to the cluster)\
         \n  admin listener    {metrics_url}  (metrics at /metrics{web})\
         \n  simulated cluster {}  (seeded: namespaces shop, payments; pods, secrets, configmaps)\
         \n\nUse it as the agent (identity agent@demo, group ai-agents):\
         \n  export KUBECONFIG={d}/agent.kubeconfig\
         \n  kubectl get pods -A\
         \n  kubectl exec -n shop web-6b7f9c5d4-x2k9p -c app -- env\
         \n  kubectl get --raw /api/v1/nodes/node-1/proxy/metrics   # denied by the baseline policy\
         \n  kubectl delete namespace shop          # held for approval (see below)\
         \n\nCompare with direct access to the simulated cluster (no Airlock):\
         \n  kubectl --kubeconfig {d}/sim-admin.kubeconfig get pods -A\
         \n\nEvery call is in the audit log ({d}/audit.db):\
         \n  airlock sessions list --state-dir {d}\
         \n  airlock replay SESSION --state-dir {d}\
         \n  airlock audit verify --state-dir {d}\
         \n\nApprove held calls as approver@demo (group approvers):\
         \n  airlock approvals list --server $(cat {d}/admin.url) --token-file {d}/approver.token\
         \n  airlock approvals approve ID --server $(cat {d}/admin.url) --token-file {d}/approver.token\
         \n\nairlock demo ready",
        sim.server_url(),
        web = if args.web_issuer.is_some() {
            "; web UI: /sessions"
        } else {
            ""
        },
    );
    wait_for_signal().await;
    running.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

pub async fn sim(args: SimArgs) -> anyhow::Result<()> {
    let sim = sim::start(sim::SimConfig {
        listen: args.listen,
        introspect_listen: args.introspect_listen,
        admin_token: random_hex(24),
        seed: !args.no_seed,
    })
    .await
    .context("cannot start the simulated cluster")?;
    if let Some(path) = &args.kubeconfig_out {
        write_file(path, &sim.admin_kubeconfig(), true)?;
    }
    match sim.introspect_addr {
        Some(i) => println!(
            "sim ready on {} (introspection http://{i})",
            sim.server_url()
        ),
        None => println!("sim ready on {}", sim.server_url()),
    }
    wait_for_signal().await;
    sim.shutdown().await;
    Ok(())
}

pub fn kubeconfig(args: KubeconfigArgs) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(&args.ca_file)
        .with_context(|| format!("cannot read {}", args.ca_file.display()))?;
    let auth = match (&args.token_file, &args.issuer, &args.client_id) {
        (Some(f), None, _) => ClientAuth::Token(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, Some(issuer), Some(client_id)) => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "airlock".into());
            let mut a = vec![
                "credential".to_owned(),
                format!("--issuer={issuer}"),
                format!("--client-id={client_id}"),
            ];
            if let Some(s) = &args.client_secret_file {
                a.push(format!("--client-secret-file={}", s.display()));
            }
            if let Some(aud) = &args.audience {
                a.push(format!("--audience={aud}"));
            }
            ClientAuth::Exec {
                command: exe,
                args: a,
                env: vec![],
            }
        }
        _ => bail!("give either --token-file, or --issuer with --client-id"),
    };
    let text = render(&args.server, &ca, &args.context, &auth);
    if args.output == "-" {
        print!("{text}");
    } else {
        write_file(Path::new(&args.output), &text, true)?;
    }
    Ok(())
}

/// The exec credential plugin: print a cached token while it has more than a minute left,
/// otherwise get a new one (client credentials with a secret, device code without) and cache it.
pub async fn credential(args: CredentialArgs) -> anyhow::Result<()> {
    use authn::client::{exec_credential_json, OidcClient, TokenCache};
    let extra = format!(
        "{}|{}",
        args.audience.as_deref().unwrap_or(""),
        args.scope.as_deref().unwrap_or("")
    );
    let cache = args
        .cache_dir
        .clone()
        .or_else(TokenCache::default_dir)
        .map(TokenCache::new);
    if let Some(hit) = cache
        .as_ref()
        .and_then(|c| c.get(&args.issuer, &args.client_id, &extra))
    {
        println!(
            "{}",
            exec_credential_json(&hit.access_token, hit.expires_at_time())
        );
        return Ok(());
    }
    let secret = match &args.client_secret_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let client = OidcClient::new(
        &args.issuer,
        &args.client_id,
        secret.as_deref(),
        args.ca_file.as_deref(),
    )?;
    let token = match secret {
        Some(_) => {
            client
                .client_credentials(args.scope.as_deref(), args.audience.as_deref())
                .await?
        }
        None => {
            client
                .device_code(args.scope.as_deref(), args.audience.as_deref(), |a| {
                    let uri = a
                        .verification_uri_complete
                        .as_deref()
                        .unwrap_or(&a.verification_uri);
                    eprintln!("To sign in, open {uri} and enter the code {}", a.user_code);
                })
                .await?
        }
    };
    if let Some(c) = &cache {
        if let Err(e) = c.put(&args.issuer, &args.client_id, &extra, &token) {
            tracing::warn!(error = %e, "cannot cache the token");
        }
    }
    println!(
        "{}",
        exec_credential_json(&token.access_token, token.expires_at)
    );
    Ok(())
}
