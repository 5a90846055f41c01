//! The policy file as written: serde structs that mirror the YAML one to
//! one. `load.rs` validates them into the types evaluation uses. The field
//! documentation lives in `docs/policy.md`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    /// `allow` or `deny`; applied when no rule decides.
    #[serde(default)]
    pub default: Option<String>,
    /// Groups whose members are denied when no rule decides, whatever `default` says.
    #[serde(default)]
    pub agent_groups: Vec<String>,
    /// Built-in rule sets, expanded before `rules`.
    #[serde(default)]
    pub presets: Vec<RawPresetRef>,
    /// The policy's own rules, after the presets'. Deserialized directly so
    /// errors carry the path and line (`rules[3].match: unknown field ...`).
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPresetRef {
    Name(String),
    Full(RawPresetUse),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPresetUse {
    pub name: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
    /// Preset rules to leave out, by name.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A preset file: default parameters and rules with `${param}` placeholders.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPreset {
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
    pub rules: Vec<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "match")]
    pub matches: RawMatch,
    #[serde(default)]
    pub condition: Option<String>,
    pub action: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub approval: Option<RawApproval>,
    #[serde(default)]
    pub mask: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub client_ids: Vec<String>,
    #[serde(default)]
    pub clusters: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApproval {
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub quorum: Option<u32>,
    #[serde(default)]
    pub hold: Option<String>,
    #[serde(default)]
    pub grant: Option<RawGrant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrant {
    #[serde(default)]
    pub max_duration: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}
