//! Built-in presets, embedded at compile time. Documented rule by rule in
//! `docs/policy.md`.

/// The names of the built-in presets.
pub const NAMES: &[&str] = &["ai-agent-baseline"];

/// The YAML of a built-in preset.
pub(crate) fn source(name: &str) -> Option<&'static str> {
    match name {
        "ai-agent-baseline" => Some(include_str!("presets/ai-agent-baseline.yaml")),
        _ => None,
    }
}
