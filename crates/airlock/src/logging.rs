//! Structured logs: text for people, JSON lines for machines. `RUST_LOG` overrides the level.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool, level: Option<&str>) {
    let mut spec = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| level.unwrap_or("info").to_owned());
    // Signed audit checkpoints are logged so that a copy leaves the database (`audit verify
    // --checkpoints`); a quieter level must not silence them unless asked for by name.
    if !spec.contains("audit_checkpoint") {
        spec.push_str(",audit_checkpoint=info");
    }
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("warning: log filter {spec:?}: {e}; using info");
        EnvFilter::new("info,audit_checkpoint=info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
