//! Airlock's masking engine: no raw credential leaves the gateway.
//!
//! Pure: no I/O, no async. The gateway's response-filter stage creates one [`StreamMasker`]
//! per response with [`Masker::stream`], pushes body chunks through it and forwards what comes
//! out; any error means *fail closed* (stop forwarding, abort the response).
//!
//! ```
//! use mask::{BodyKind, MaskConfig, MaskContext, Masker};
//!
//! let masker = Masker::new(MaskConfig::new(b"fingerprint-key".to_vec())).unwrap();
//! let ctx = MaskContext::for_resource("secrets", Some("default"));
//! let mut stream = masker.stream(BodyKind::Json, &ctx).unwrap();
//! let mut out = Vec::new();
//! stream.push(br#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s"},"#, &mut out).unwrap();
//! stream.push(br#""data":{"password":"aHVudGVyMg=="}}"#, &mut out).unwrap();
//! stream.finish(&mut out).unwrap();
//! let text = String::from_utf8(out).unwrap();
//! assert!(!text.contains("aHVudGVyMg=="));
//! assert!(mask::contains_marker(text.as_bytes()));
//! ```
//!
//! What is masked and why is documented in `docs/masking.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod detect;
mod error;
mod json;
mod marker;
mod stream;
mod text;
mod yaml;

use std::collections::HashMap;
use std::sync::Arc;

pub use config::{FieldPath, MaskConfig, MaskProfile, MaskRule, DEFAULT_MAX_YAML_BYTES};
pub use detect::{PEM_DETECTOR, SENSITIVE_NAME};
pub use error::MaskError;
pub use marker::{contains_marker, FINGERPRINT_LEN, MARKER_PREFIX, MARKER_PREFIX_BASE64};
pub use text::{MAX_HOLD, MAX_PEM_BODY, WINDOW};

use config::CompiledRule;
use detect::{DetectorSet, Selection};
use json::Hint;
use marker::Fingerprinter;

/// The shape of a body, chosen from its content type (see [`BodyKind::from_content_type`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (also `;as=Table`, `;as=PartialObjectMetadata[List]`, `*+json`):
    /// one or more JSON documents.
    Json,
    /// A watch stream: one JSON watch event after another (one per line).
    JsonWatch,
    /// `application/yaml`: buffered whole, bounded by [`MaskConfig::max_yaml_bytes`].
    Yaml,
    /// `text/plain` and other byte streams: logs, exec/attach output.
    Text,
}

impl BodyKind {
    /// Chooses the masker for a response or request `Content-Type`. `watch` is true for watch
    /// requests. Content types that cannot be masked (protobuf, CBOR, unknown) are an error:
    /// the gateway must refuse them or ask for JSON (`Accept: application/json`).
    pub fn from_content_type(content_type: &str, watch: bool) -> Result<Self, MaskError> {
        let lower = content_type.to_ascii_lowercase();
        let mut parts = lower.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("");
        let watch = watch || parts.any(|p| p == "stream=watch");
        let json = essence == "application/json" || essence.ends_with("+json");
        let yaml = matches!(
            essence,
            "application/yaml" | "application/x-yaml" | "text/yaml"
        ) || essence.ends_with("+yaml");
        match () {
            _ if json && watch => Ok(BodyKind::JsonWatch),
            _ if json => Ok(BodyKind::Json),
            _ if yaml && !watch => Ok(BodyKind::Yaml),
            _ if essence.starts_with("text/") && !yaml => Ok(BodyKind::Text),
            _ if essence == "application/octet-stream" => Ok(BodyKind::Text),
            _ => Err(MaskError::Unsupported(content_type.to_string())),
        }
    }
}

/// Request attributes that decide which rules apply.
#[derive(Clone, Debug, Default)]
pub struct MaskContext {
    /// Plural resource (`secrets`, `configmaps`), if the request names one.
    pub resource: Option<String>,
    /// Subresource (`log`, `exec`, `token`, `status`), if any.
    pub subresource: Option<String>,
    /// Namespace of the request, if any.
    pub namespace: Option<String>,
    /// Masking profiles chosen for this request (by policy), on top of the defaults.
    pub profiles: Vec<String>,
    /// The cluster (its name in Airlock's config): fingerprints are bound to it.
    pub cluster: Option<String>,
    /// The object the request names (a pod for its logs): text fingerprints are bound to it.
    pub name: Option<String>,
    /// API group of the request (`""` core; `None`: unknown, taken as core). A Secret's
    /// values keep one fingerprint across versions only in answers to core `secrets`
    /// requests (anything else could call itself a Secret).
    pub api_group: Option<String>,
    /// How this body's fingerprints are keyed.
    pub fingerprints: Fingerprints,
}

/// How the fingerprints in one body are keyed (see `marker`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fingerprints {
    /// Bound to where each value sits: cluster, object (kind, namespace, name) and field path;
    /// for text, the request's resource and object. Stable across reads of the same field.
    #[default]
    Bound,
    /// A key of this body's own, used once: for bodies that echo what the client sent (the
    /// response to a create, update or patch, dry run included) and for interactive streams
    /// (exec, attach), where a client could otherwise have the gateway fingerprint values of
    /// its choosing under a binding it shares with a real secret. Within the body, values are
    /// bound to their object and field as in [`Fingerprints::Bound`].
    Own,
}

impl MaskContext {
    /// Context for a request on `resource` in `namespace`.
    pub fn for_resource(resource: &str, namespace: Option<&str>) -> Self {
        MaskContext {
            resource: Some(resource.to_string()),
            namespace: namespace.map(str::to_string),
            ..MaskContext::default()
        }
    }
}

/// Masks one body incrementally.
///
/// Contract: call [`push`](StreamMasker::push) for each chunk and forward what it appends to
/// `out`; call [`finish`](StreamMasker::finish) at the end of the body. Any error means the
/// body cannot be masked: stop forwarding (fail closed). After an error every call fails.
pub trait StreamMasker: Send {
    /// Masks the next chunk, appending whatever is ready to `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError>;
    /// Emits whatever can safely be emitted now. JSON emits each unit as soon as it completes
    /// and text emits as soon as bytes cannot be part of a secret, so this adds nothing today;
    /// call it on an idle timer anyway (the contract allows holding more in future).
    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError>;
    /// Ends the body: emits the rest, or fails if the body ended inside a JSON document.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError>;
    /// Emits everything held back, masking the matches it holds, and keeps the stream open
    /// (a PEM key in progress stays in progress). For interactive streams (exec/attach) whose
    /// output paused: a prompt ending in a keyword must not wait for a newline. The price is
    /// that a secret the process writes in two parts with a pause between them is masked only
    /// if its first part already matches a detector. Defaults to [`flush`](Self::flush).
    fn release(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        self.flush(out)
    }
    /// Largest number of body bytes buffered at once so far (for tests and metrics).
    fn peak_buffered(&self) -> usize;
}

/// Compiled masking configuration; cheap to clone and share between tasks.
#[derive(Clone, Debug)]
pub struct Masker {
    eng: Arc<Engine>,
}

/// Everything compiled from a [`MaskConfig`].
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) detectors: DetectorSet,
    pub(crate) fp: Fingerprinter,
    /// Random per process: with `owned`, makes every [`Fingerprints::Own`] key unique.
    nonce: [u8; 16],
    owned: std::sync::atomic::AtomicU64,
    pub(crate) rules: Vec<CompiledRule>,
    profiles: HashMap<String, Vec<usize>>,
    default_rules: Vec<usize>,
    pub(crate) max_yaml_bytes: usize,
    notes: Vec<String>,
    pem_end: regex::bytes::Regex,
}

/// What one request's masking needs besides the engine.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    pub(crate) ctx: MaskContext,
    /// Indices into `Engine::rules` of the rules active for the request.
    pub(crate) rules: Vec<usize>,
    /// Kind of the objects the request's resource returns, for objects without `kind`.
    pub(crate) resource_kind: Option<&'static str>,
    /// The engine's fingerprinter bound to the cluster; objects and fields bind it further.
    pub(crate) fp: Fingerprinter,
    /// This body's own key ([`Fingerprints::Own`], and objects whose name cannot be read),
    /// made when first needed.
    own: std::sync::OnceLock<Fingerprinter>,
}

impl Engine {
    /// A fingerprinter under a key used nowhere else: derived from the engine's key, a random
    /// per-process nonce and a counter.
    pub(crate) fn fresh(&self) -> Fingerprinter {
        let n = self
            .owned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut b = Vec::with_capacity(48);
        marker::push_part(&mut b, b"fresh");
        marker::push_part(&mut b, &self.nonce);
        marker::push_part(&mut b, &n.to_be_bytes());
        self.fp.bound_shared(&b)
    }
}

impl Scope {
    /// This body's own fingerprinter: a key derived from the engine's for this body alone.
    pub(crate) fn own(&self, eng: &Engine) -> &Fingerprinter {
        self.own.get_or_init(|| eng.fresh())
    }

    /// Whether a Secret's `data` values may keep one fingerprint across versions: only in
    /// answers to core `secrets` requests.
    pub(crate) fn core_secrets(&self) -> bool {
        self.ctx.resource.as_deref() == Some("secrets")
            && self.ctx.api_group.as_deref().unwrap_or("").is_empty()
    }

    /// The fingerprinter for a text body (logs, exec output): bound to the request's resource
    /// and object, or this body's own.
    pub(crate) fn text_fp(&self, eng: &Engine) -> Fingerprinter {
        if self.ctx.fingerprints == Fingerprints::Own {
            return self.own(eng).clone();
        }
        let mut b = Vec::with_capacity(64);
        marker::push_part(&mut b, b"text");
        for part in [
            &self.ctx.resource,
            &self.ctx.subresource,
            &self.ctx.namespace,
            &self.ctx.name,
        ] {
            marker::push_part(&mut b, part.as_deref().unwrap_or("").as_bytes());
        }
        self.fp.bound_shared(&b)
    }
}

impl Masker {
    /// Compiles the configuration: detectors (built-in and gitleaks), rules, profiles.
    pub fn new(config: MaskConfig) -> Result<Self, MaskError> {
        let fp = Fingerprinter::new(&config.fingerprint_key)?;
        let nonce: [u8; 16] = rand::random();
        let (detectors, notes) = DetectorSet::new(&config.gitleaks_rules)?;
        let mut rules = Vec::new();
        let mut profiles: HashMap<String, Vec<usize>> = HashMap::new();
        for profile in &config.profiles {
            if profiles.contains_key(&profile.name) {
                return Err(MaskError::Rule {
                    rule: format!("profile {}", profile.name),
                    reason: "defined twice".to_string(),
                });
            }
            let mut ids = Vec::new();
            for (i, rule) in profile.rules.iter().enumerate() {
                let label = format!("{}[{i}]", profile.name);
                ids.push(rules.len());
                rules.push(CompiledRule::compile(rule, label, &detectors)?);
            }
            profiles.insert(profile.name.clone(), ids);
        }
        let mut default_rules = Vec::new();
        for name in &config.default_profiles {
            let ids = profiles
                .get(name)
                .ok_or_else(|| MaskError::UnknownProfile(name.clone()))?;
            default_rules.extend(ids.iter().copied());
        }
        let pem_end =
            regex::bytes::Regex::new(r"(?-u)-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
                .map_err(|source| MaskError::Regex {
                    id: detect::PEM_DETECTOR.to_string(),
                    source,
                })?;
        Ok(Masker {
            eng: Arc::new(Engine {
                detectors,
                fp,
                nonce,
                owned: std::sync::atomic::AtomicU64::new(0),
                rules,
                profiles,
                default_rules,
                max_yaml_bytes: config.max_yaml_bytes,
                notes,
                pem_end,
            }),
        })
    }

    /// Notes from compilation: unsupported gitleaks features that were ignored.
    pub fn notes(&self) -> &[String] {
        &self.eng.notes
    }

    /// Ids of all detectors, built-in first (usable in [`MaskRule::detectors`]).
    pub fn detector_ids(&self) -> Vec<String> {
        self.eng.detectors.ids().map(str::to_string).collect()
    }

    fn scope(&self, ctx: &MaskContext) -> Result<Scope, MaskError> {
        let mut rules = self.eng.default_rules.clone();
        for name in &ctx.profiles {
            let ids = self
                .eng
                .profiles
                .get(name)
                .ok_or_else(|| MaskError::UnknownProfile(name.clone()))?;
            for &i in ids {
                if !rules.contains(&i) {
                    rules.push(i);
                }
            }
        }
        let resource_kind = ctx
            .resource
            .as_deref()
            .and_then(|r| json::kind_for_resource(r, ctx.subresource.as_deref()));
        let mut cluster = Vec::with_capacity(32);
        marker::push_part(&mut cluster, b"cluster");
        marker::push_part(
            &mut cluster,
            ctx.cluster.as_deref().unwrap_or("").as_bytes(),
        );
        Ok(Scope {
            ctx: ctx.clone(),
            rules,
            resource_kind,
            fp: self.eng.fp.bound_shared(&cluster),
            own: std::sync::OnceLock::new(),
        })
    }

    /// A masker for one response body. Fails only for an unknown profile name.
    pub fn stream(
        &self,
        kind: BodyKind,
        ctx: &MaskContext,
    ) -> Result<Box<dyn StreamMasker>, MaskError> {
        let scope = self.scope(ctx)?;
        let eng = Arc::clone(&self.eng);
        Ok(match kind {
            BodyKind::Json => Box::new(stream::JsonStream::new(eng, scope, Hint::Primary(None))),
            BodyKind::JsonWatch => Box::new(stream::JsonStream::new(eng, scope, Hint::WatchEvent)),
            BodyKind::Yaml => Box::new(yaml::YamlStream::new(eng, scope)),
            BodyKind::Text => {
                let pem_end = self.eng.pem_end.clone();
                let fp = scope.text_fp(&self.eng);
                Box::new(text::TextStream::new(eng, fp, pem_end, false))
            }
        })
    }

    /// A text masker (like [`BodyKind::Text`]) for a byte stream whose offsets matter, such as
    /// the tar archive `kubectl cp` reads from `tar cf -` in the pod: every masked span is
    /// replaced by exactly as many bytes (the marker, cut or padded with `*`; a PEM key body
    /// becomes `*` instead of being dropped), so the archive's headers still give the right
    /// sizes and a resumed copy (`tail -c+N`) starts at the right byte.
    pub fn stream_same_length(
        &self,
        ctx: &MaskContext,
    ) -> Result<Box<dyn StreamMasker>, MaskError> {
        let scope = self.scope(ctx)?;
        let fp = scope.text_fp(&self.eng);
        Ok(Box::new(text::TextStream::new(
            Arc::clone(&self.eng),
            fp,
            self.eng.pem_end.clone(),
            true,
        )))
    }

    /// Masks a whole body at once (same result as streaming it).
    pub fn mask_body(
        &self,
        kind: BodyKind,
        ctx: &MaskContext,
        body: &[u8],
    ) -> Result<Vec<u8>, MaskError> {
        let mut stream = self.stream(kind, ctx)?;
        let mut out = Vec::with_capacity(body.len());
        stream.push(body, &mut out)?;
        stream.finish(&mut out)?;
        Ok(out)
    }

    /// Masks a request body for the audit log and approval views: a `kubectl create secret`
    /// is recorded with its shape (keys, lengths) but not its values.
    ///
    /// Patches carry no `kind`, so the request's resource decides: a merge or strategic patch
    /// on `secrets` has its `data`/`stringData` masked; a JSON Patch (`[{"op":..}]`) on
    /// `secrets` has every `value` masked, elsewhere detectors run on the values. YAML bodies
    /// (`apply-patch+yaml`) that are JSON are treated as JSON. On error, record only the
    /// body's length and digest, never the body.
    pub fn mask_request_body(
        &self,
        kind: BodyKind,
        ctx: &MaskContext,
        body: &[u8],
    ) -> Result<Vec<u8>, MaskError> {
        let first = body
            .iter()
            .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .copied();
        let looks_json = matches!(first, Some(b'{' | b'['));
        match kind {
            BodyKind::Json | BodyKind::JsonWatch | BodyKind::Yaml if first == Some(b'[') => {
                let scope = self.scope(ctx)?;
                let secret = scope.resource_kind == Some("Secret");
                let mut out = Vec::with_capacity(body.len());
                json::mask_unit(
                    &self.eng,
                    &scope,
                    body,
                    0,
                    &Hint::JsonPatch { secret },
                    &mut out,
                )?;
                Ok(out)
            }
            BodyKind::Yaml if looks_json => self.mask_body(BodyKind::Json, ctx, body),
            BodyKind::Yaml => {
                let scope = self.scope(ctx)?;
                if body.len() > self.eng.max_yaml_bytes {
                    return Err(MaskError::YamlTooLarge(self.eng.max_yaml_bytes));
                }
                yaml::mask_yaml(&self.eng, &scope, body, &Hint::Primary(None))
            }
            _ => self.mask_body(kind, ctx, body),
        }
    }

    /// Runs every detector over a text (e.g. a command line for the audit log). Its
    /// fingerprints are bound to "a command line", not to any object.
    pub fn mask_text(&self, text: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(24);
        marker::push_part(&mut b, b"command-line");
        self.eng
            .detectors
            .mask(text, &Selection::All, &self.eng.fp.bound(&b))
            .unwrap_or_else(|| text.to_vec())
    }
}

#[cfg(test)]
mod tests;
