//! Masking configuration: the fingerprint key, gitleaks rule files, and users' own rules
//! grouped as named profiles. [`crate::Masker::new`] compiles all of it once.

use serde::Deserialize;

use crate::detect::{DetectorSet, Selection};
use crate::MaskError;

/// Default bound on a buffered YAML body.
pub const DEFAULT_MAX_YAML_BYTES: usize = 64 << 20;

/// Everything the masker needs, before compilation.
#[derive(Clone, Debug)]
pub struct MaskConfig {
    /// Key for the HMAC-SHA256 fingerprints in markers. Must not be empty; keep it secret
    /// and stable (fingerprints change when it changes).
    pub fingerprint_key: Vec<u8>,
    /// Contents of gitleaks-format TOML files whose `[[rules]]` become extra detectors.
    /// The caller reads the files; this crate does no I/O.
    pub gitleaks_rules: Vec<String>,
    /// Named groups of user rules.
    pub profiles: Vec<MaskProfile>,
    /// Profiles applied to every request in addition to the request's own.
    pub default_profiles: Vec<String>,
    /// Largest YAML body masked (YAML is buffered whole); larger bodies are refused.
    pub max_yaml_bytes: usize,
}

impl MaskConfig {
    /// A configuration with built-in masking only.
    pub fn new(fingerprint_key: impl Into<Vec<u8>>) -> Self {
        MaskConfig {
            fingerprint_key: fingerprint_key.into(),
            gitleaks_rules: Vec::new(),
            profiles: Vec::new(),
            default_profiles: Vec::new(),
            max_yaml_bytes: DEFAULT_MAX_YAML_BYTES,
        }
    }
}

/// A named group of rules, selected per request (by policy) or for every request
/// (`default_profiles`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskProfile {
    /// Profile name, referenced by requests and `default_profiles`.
    pub name: String,
    /// Rules of the profile.
    pub rules: Vec<MaskRule>,
}

/// One user rule: which objects, which fields, and how to mask them.
///
/// ```yaml
/// resource: configmaps            # plural resource name, or "*"
/// namespace: "team-*"             # optional glob on the object's namespace
/// fields: ["data.*"]              # field paths, see FieldPath
/// detectors: []                   # empty: mask the whole value; else detector ids or "all"
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Plural resource name (`configmaps`, `deployments`, `widgets`), or `*` for any. Matches
    /// the request's resource or the object's kind (lowercased and pluralized).
    pub resource: String,
    /// Glob (`*`, `?`) on the object's namespace; `None` matches every object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Field paths whose string values (and every string below them) are masked.
    pub fields: Vec<String>,
    /// Detector ids to run on the fields (`all` for every detector). Empty masks the whole
    /// value.
    #[serde(default)]
    pub detectors: Vec<String>,
}

/// One segment of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathSeg {
    /// An object key.
    Key(Vec<u8>),
    /// `*`: any object key or array index.
    Any,
    /// `[*]`: any array index.
    AnyIndex,
    /// `[N]`: one array index.
    Index(usize),
}

/// A field path, relative to the object root.
///
/// Syntax: segments separated by `.`; `name` is an object key, `*` any key (or index),
/// `[*]` any array element, `[3]` one element, `["a.b/c"]` a key with dots or brackets.
/// Examples: `data.*`, `spec.template.spec.containers[*].env[*].value`,
/// `metadata.annotations["example.com/token"]`. A path that ends at an object or array
/// masks every string below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath {
    pub(crate) segs: Vec<PathSeg>,
}

impl FieldPath {
    /// Parses the syntax described on [`FieldPath`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let b = text.as_bytes();
        let mut segs = Vec::new();
        let mut i = 0;
        let mut expect_seg = true;
        while i < b.len() {
            match b[i] {
                b'.' if !expect_seg => {
                    expect_seg = true;
                    i += 1;
                }
                b'[' => {
                    let close = text[i..]
                        .find(']')
                        .map(|c| c + i)
                        .ok_or_else(|| format!("unclosed '[' at {i}"))?;
                    let inner = text[i + 1..close].trim();
                    let seg = if inner == "*" {
                        PathSeg::AnyIndex
                    } else if let Ok(n) = inner.parse::<usize>() {
                        PathSeg::Index(n)
                    } else if inner.len() >= 2
                        && ((inner.starts_with('"') && inner.ends_with('"'))
                            || (inner.starts_with('\'') && inner.ends_with('\'')))
                    {
                        // A quoted key may contain ']' only if we looked further; keep it simple.
                        PathSeg::Key(inner.as_bytes()[1..inner.len() - 1].to_vec())
                    } else {
                        return Err(format!("bad bracket segment [{inner}]"));
                    };
                    segs.push(seg);
                    expect_seg = false;
                    i = close + 1;
                }
                _ if expect_seg => {
                    let end = text[i..]
                        .find(['.', '['])
                        .map(|e| e + i)
                        .unwrap_or(text.len());
                    let name = &text[i..end];
                    if name.is_empty() {
                        return Err(format!("empty segment at {i}"));
                    }
                    segs.push(if name == "*" {
                        PathSeg::Any
                    } else {
                        PathSeg::Key(name.as_bytes().to_vec())
                    });
                    expect_seg = false;
                    i = end;
                }
                _ => return Err(format!("expected '.' or '[' at {i}")),
            }
        }
        if segs.is_empty() || expect_seg {
            return Err("empty path or trailing '.'".to_string());
        }
        Ok(FieldPath { segs })
    }
}

/// A rule after compilation.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) resource: String,
    pub(crate) namespace: Option<String>,
    pub(crate) paths: Vec<FieldPath>,
    /// `None`: mask the whole value.
    pub(crate) detectors: Option<Selection>,
}

impl CompiledRule {
    pub(crate) fn compile(
        rule: &MaskRule,
        label: String,
        set: &DetectorSet,
    ) -> Result<Self, MaskError> {
        let bad = |reason: String| MaskError::Rule {
            rule: label.clone(),
            reason,
        };
        if rule.resource.is_empty() {
            return Err(bad("resource is empty".to_string()));
        }
        if rule.fields.is_empty() {
            return Err(bad("no fields".to_string()));
        }
        let paths = rule
            .fields
            .iter()
            .map(|f| FieldPath::parse(f).map_err(|e| bad(format!("field {f:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let detectors = if rule.detectors.is_empty() {
            None
        } else if rule.detectors.iter().any(|d| d == "all") {
            Some(Selection::All)
        } else {
            let mut only = vec![false; set.len()];
            for d in &rule.detectors {
                let i = set
                    .index(d)
                    .ok_or_else(|| bad(format!("unknown detector {d:?}")))?;
                only[i] = true;
            }
            Some(Selection::Only(only))
        };
        Ok(CompiledRule {
            resource: rule.resource.to_ascii_lowercase(),
            namespace: rule.namespace.clone(),
            paths,
            detectors,
        })
    }
}

/// `*` matches any run of characters, `?` any one character.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Naive English plural of a kind, lowercased: `ConfigMap` -> `configmaps`,
/// `Ingress` -> `ingresses`, `NetworkPolicy` -> `networkpolicies`.
pub(crate) fn plural(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    if k.ends_with('s') || k.ends_with('x') || k.ends_with("ch") || k.ends_with("sh") {
        format!("{k}es")
    } else if k.ends_with('y') && !k.ends_with("ay") && !k.ends_with("ey") && !k.ends_with("oy") {
        format!("{}ies", &k[..k.len() - 1])
    } else {
        format!("{k}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_parse() {
        use PathSeg::*;
        let cases: &[(&str, Vec<PathSeg>)] = &[
            ("data.*", vec![Key(b"data".to_vec()), Any]),
            (
                "spec.containers[*].env[0].value",
                vec![
                    Key(b"spec".to_vec()),
                    Key(b"containers".to_vec()),
                    AnyIndex,
                    Key(b"env".to_vec()),
                    Index(0),
                    Key(b"value".to_vec()),
                ],
            ),
            (
                "metadata.annotations[\"x.io/token\"]",
                vec![
                    Key(b"metadata".to_vec()),
                    Key(b"annotations".to_vec()),
                    Key(b"x.io/token".to_vec()),
                ],
            ),
        ];
        for (text, segs) in cases {
            assert_eq!(&FieldPath::parse(text).unwrap().segs, segs, "{text}");
        }
        for bad in ["", "a.", ".a", "a[", "a[x]", "a..b"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_and_plurals() {
        assert!(glob_match(b"team-*", b"team-a"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"t?am", b"team"));
        assert!(!glob_match(b"team-*", b"prod"));
        assert_eq!(plural("ConfigMap"), "configmaps");
        assert_eq!(plural("Ingress"), "ingresses");
        assert_eq!(plural("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural("Gateway"), "gateways");
    }
}
