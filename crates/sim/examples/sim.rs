//! Runs the simulator and writes its admin kubeconfig to the path given (default
//! `./sim.kubeconfig`), then serves until interrupted. Handy with real kubectl:
//! `cargo run -p sim --example sim -- /tmp/kc && KUBECONFIG=/tmp/kc kubectl get pods -A`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sim.kubeconfig".into());
    let sim = sim::start(sim::SimConfig::default()).await?;
    std::fs::write(&path, sim.admin_kubeconfig())?;
    std::fs::write(format!("{path}.cert"), sim.client_cert_kubeconfig())?;
    println!(
        "api {} introspect {:?} kubeconfig {path}",
        sim.server_url(),
        sim.introspect_addr
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
