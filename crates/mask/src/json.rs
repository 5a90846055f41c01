//! Masking of one complete JSON value (a "unit": one object, one list item, one watch event).
//!
//! The walker copies the input through untouched and only rewrites string values at masked
//! paths, so output formatting equals input formatting. Before walking an object it pre-scans
//! the object's own members up to its `kind` (which may come after `data`), so decisions never
//! depend on member order; while walking, it checks that no second `kind` member follows (a
//! duplicate, or an escaped `"\u006bind"`): if one does, the whole unit is masked again with
//! pre-scans that read every member and take the last `kind`, as Go's decoder does. Subtrees
//! under which nothing can be masked are skipped at memchr speed.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::{glob_match, plural, PathSeg};
use crate::detect::{sensitive_name, Selection, SENSITIVE_NAME};
use crate::marker::{push_part, Fingerprinter, MARKER_PREFIX, MARKER_PREFIX_BASE64};
use crate::{Engine, Fingerprints, MaskError, Scope};

/// Deepest nesting followed (Kubernetes objects stay far below this).
pub(crate) const MAX_DEPTH: usize = 128;

const LAST_APPLIED: &[u8] = b"kubectl.kubernetes.io/last-applied-configuration";

/// How an object met during the walk should be interpreted.
#[derive(Clone, Debug)]
pub(crate) enum Hint {
    /// A Kubernetes object (top-level body, list item, watch object, table row object): its own
    /// `kind`, else the given kind (from the enclosing list), else the request's resource.
    Primary(Option<Arc<str>>),
    /// `{"type": "...", "object": {...}}`.
    WatchEvent,
    /// A `Table` row: `cells` and `object`.
    TableRow,
    /// A container's `env[]` element.
    EnvVar,
    /// A JSON Patch operation in a request body; `secret` when the target is a Secret.
    JsonPatch { secret: bool },
}

/// What the walker knows about an object before walking it.
#[derive(Debug, Default)]
pub(crate) struct ObjInfo<'s> {
    pub(crate) kind: Option<Cow<'s, str>>,
    /// Position of the key of the `kind` member read (its opening quote).
    kind_at: Option<usize>,
    name: Option<String>,
    namespace: Option<String>,
    op_path: Option<String>,
    has_api_version: bool,
    has_type: bool,
    has_object: bool,
    has_data: bool,
}

#[derive(Clone, Debug)]
enum Kind {
    Secret,
    ConfigMap,
    TokenRequest,
    /// Objects carrying a pod spec at this path.
    PodSpecAt(&'static [&'static [u8]]),
    List(Option<Arc<str>>),
    Table,
    TableRow,
    WatchEvent,
    Status,
    Event,
    EnvVar,
    JsonPatchOp {
        secret: bool,
        data: bool,
    },
    /// A top-level array: its elements are objects with this hint.
    TopArray(Hint),
    Other,
}

const POD: &[&[u8]] = &[b"spec"];
const POD_TEMPLATE: &[&[u8]] = &[b"template", b"spec"];
const WORKLOAD: &[&[u8]] = &[b"spec", b"template", b"spec"];
const CRONJOB: &[&[u8]] = &[b"spec", b"jobTemplate", b"spec", b"template", b"spec"];
/// A StatefulSet's or DaemonSet's revision holds its pod template as a patch.
const CONTROLLER_REVISION: &[&[u8]] = &[b"data", b"spec", b"template", b"spec"];
const CONTAINER_LISTS: &[&[u8]] = &[b"containers", b"initContainers", b"ephemeralContainers"];

fn kind_of(name: &str) -> Kind {
    match name {
        "Secret" => Kind::Secret,
        "ConfigMap" => Kind::ConfigMap,
        "TokenRequest" => Kind::TokenRequest,
        "Pod" => Kind::PodSpecAt(POD),
        "PodTemplate" => Kind::PodSpecAt(POD_TEMPLATE),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Kind::PodSpecAt(WORKLOAD),
        "CronJob" => Kind::PodSpecAt(CRONJOB),
        "ControllerRevision" => Kind::PodSpecAt(CONTROLLER_REVISION),
        "Table" => Kind::Table,
        "Status" => Kind::Status,
        "Event" => Kind::Event,
        "WatchEvent" => Kind::WatchEvent,
        _ => match name.strip_suffix("List") {
            Some("") => Kind::List(None),
            Some(item) => Kind::List(Some(Arc::from(item))),
            None => Kind::Other,
        },
    }
}

/// The kind a request's resource returns, for objects that carry no `kind` of their own.
pub(crate) fn kind_for_resource(resource: &str, subresource: Option<&str>) -> Option<&'static str> {
    match (resource, subresource) {
        ("serviceaccounts", Some("token")) => Some("TokenRequest"),
        (_, Some(s)) if s != "status" => None,
        ("secrets", _) => Some("Secret"),
        ("configmaps", _) => Some("ConfigMap"),
        ("pods", _) => Some("Pod"),
        ("podtemplates", _) => Some("PodTemplate"),
        ("deployments", _) => Some("Deployment"),
        ("statefulsets", _) => Some("StatefulSet"),
        ("daemonsets", _) => Some("DaemonSet"),
        ("replicasets", _) => Some("ReplicaSet"),
        ("replicationcontrollers", _) => Some("ReplicationController"),
        ("jobs", _) => Some("Job"),
        ("cronjobs", _) => Some("CronJob"),
        ("controllerrevisions", _) => Some("ControllerRevision"),
        _ => None,
    }
}

#[derive(Debug)]
enum Seg<'s> {
    Key(Cow<'s, [u8]>),
    Index(usize),
}

impl Seg<'_> {
    fn is(&self, key: &[u8]) -> bool {
        matches!(self, Seg::Key(k) if k.as_ref() == key)
    }
    fn is_any_of(&self, keys: &[&[u8]]) -> bool {
        matches!(self, Seg::Key(k) if keys.contains(&k.as_ref()))
    }
    fn is_index(&self) -> bool {
        matches!(self, Seg::Index(_))
    }
    fn matches(&self, pattern: &PathSeg) -> bool {
        match (pattern, self) {
            (PathSeg::Any, _) => true,
            (PathSeg::Key(k), Seg::Key(x)) => k.as_slice() == x.as_ref(),
            (PathSeg::AnyIndex, Seg::Index(_)) => true,
            (PathSeg::Index(n), Seg::Index(i)) => n == i,
            _ => false,
        }
    }
}

fn is_path(rel: &[Seg<'_>], keys: &[&[u8]]) -> bool {
    rel.len() == keys.len() && rel.iter().zip(keys).all(|(s, k)| s.is(k))
}

struct ObjCtx<'s> {
    kind: Kind,
    base: usize,
    rules: Vec<usize>,
    name: Option<String>,
    kind_name: Option<KindName<'s>>,
    /// Whether `metadata.annotations` of this object are masked.
    annotations: bool,
    /// The pre-scan stopped at the first `kind` (or was skipped): a `kind` member other than
    /// the one at `kind_at` means the unit must be masked again with full pre-scans.
    check_kind: bool,
    kind_at: Option<usize>,
}

impl ObjCtx<'_> {
    fn plain(kind: Kind, base: usize) -> Self {
        ObjCtx {
            kind,
            base,
            rules: Vec::new(),
            name: None,
            kind_name: None,
            annotations: false,
            check_kind: false,
            kind_at: None,
        }
    }
}

/// The kind an object is masked as: read from the body, or given by the enclosing list.
#[derive(Clone, Debug)]
enum KindName<'s> {
    Body(Cow<'s, str>),
    Given(Arc<str>),
    Resource(&'static str),
}

impl KindName<'_> {
    fn as_str(&self) -> &str {
        match self {
            KindName::Body(k) => k,
            KindName::Given(k) => k,
            KindName::Resource(k) => k,
        }
    }
}

/// What to do with one string value.
enum Act {
    Keep,
    SecretValue {
        base64: bool,
    },
    Whole(&'static str),
    Detect {
        name: NameFrom,
        selection: Option<usize>,
    },
    LastApplied,
    UserWhole,
}

#[derive(Clone, Copy)]
enum NameFrom {
    None,
    LastKey,
    ObjName,
}

/// What to do with an object or array value.
enum Container {
    Embedded(Hint),
    Descend,
    Skip,
}

/// Masks the complete JSON value `src` and appends the result to `out`.
pub(crate) fn mask_unit(
    eng: &Engine,
    scope: &Scope,
    src: &[u8],
    base_offset: u64,
    hint: &Hint,
    out: &mut Vec<u8>,
) -> Result<(), MaskError> {
    let at = At {
        src,
        base_offset,
        depth: 0,
    };
    walk(eng, scope, at, &mut PathBuf::default(), out, |w, out| {
        w.run(hint, out)
    })
}

/// Masks the JSON value that starts at `src[0]` and returns where it ends; bytes after it are
/// not looked at. `Err(Truncated)` means `src` ends inside the value: the caller discards what
/// was appended to `out` and buffers instead. `path` is scratch space kept between calls.
pub(crate) fn mask_prefix(
    eng: &Engine,
    scope: &Scope,
    src: &[u8],
    base_offset: u64,
    hint: &Hint,
    path: &mut PathBuf,
    out: &mut Vec<u8>,
) -> Result<usize, MaskError> {
    let at = At {
        src,
        base_offset,
        depth: 0,
    };
    walk(eng, scope, at, path, out, |w, out| w.prefix(hint, out))
}

/// The text a walk reads, where it sits in the body, and how deep it already is.
struct At<'s> {
    src: &'s [u8],
    base_offset: u64,
    depth: usize,
}

/// Runs `f` on a walker that pre-scans objects only up to their `kind`; if the walk meets a
/// `kind` member that pre-scan did not read, discards the output and runs `f` once more on a
/// walker that pre-scans every member (which never asks again).
fn walk<'s, T>(
    eng: &Engine,
    scope: &Scope,
    at: At<'s>,
    path: &mut PathBuf,
    out: &mut Vec<u8>,
    f: impl Fn(&mut Walker<'s, '_>, &mut Vec<u8>) -> Result<T, MaskError>,
) -> Result<T, MaskError> {
    let before = out.len();
    let mut full = false;
    loop {
        let mut w = Walker::new(eng, scope, at.src, at.base_offset, full, path);
        w.depth = at.depth;
        let result = f(&mut w, out);
        let again = w.restart && !full && result.is_err();
        w.finish(path);
        if !again {
            return result;
        }
        out.truncate(before);
        full = true;
    }
}

/// A Kubernetes object being walked: fingerprints of the values inside it are bound to it.
struct Frame<'s> {
    /// Where the object starts (its `{`) in the walked text.
    start: usize,
    /// The walker's path length at its members.
    base: usize,
    kind: Option<KindName<'s>>,
    /// `metadata.namespace`, `.name` and `.resourceVersion`, read when the walk passes
    /// `metadata` (the cluster writes it before the object's data).
    identity: Option<Option<Identity<'s>>>,
    /// Where its `metadata` object starts, once the walk has passed it.
    metadata: Option<usize>,
    /// Bound to the object's identity; made when first needed.
    fp: Option<Fingerprinter>,
    /// Bound to the object's identity and version; made when first needed.
    versioned: Option<Fingerprinter>,
    /// Every value binds to the version (a last-applied annotation's copy of the object).
    versioned_only: bool,
}

/// What a fingerprint binds an object to: namespace, name and resourceVersion.
struct Identity<'s> {
    namespace: Option<Cow<'s, [u8]>>,
    name: Cow<'s, [u8]>,
    version: Option<Cow<'s, [u8]>>,
}

/// Allocation for a walker's path, kept between units (a unit's keys borrow from the unit, so
/// the buffer is handed over empty).
#[derive(Default)]
pub(crate) struct PathBuf(Vec<Seg<'static>>);

struct Walker<'s, 'e> {
    s: &'s [u8],
    pos: usize,
    mark: usize,
    base_offset: u64,
    eng: &'e Engine,
    scope: &'e Scope,
    path: Vec<Seg<'s>>,
    depth: usize,
    /// Pre-scan every object's members in full (after a restart).
    full: bool,
    /// Set with the error that asks for the unit to be masked again with `full`.
    restart: bool,
    /// The Kubernetes objects the walk is inside, innermost last.
    frames: Vec<Frame<'s>>,
    /// Set when walking a copy of an object held in its last-applied annotation: the owning
    /// object's versioned fingerprinter, under which everything in the copy is bound (every
    /// object in it, lists included, binds to its version too).
    inherit: Option<Fingerprinter>,
    /// Values outside any object in this unit (a Table row's cells, a JSON Patch): a key used
    /// nowhere else, made when first needed.
    unit_fp: Option<Fingerprinter>,
    /// Scratch space for fingerprint bindings.
    binding: Vec<u8>,
}

impl<'s, 'e> Walker<'s, 'e> {
    fn new(
        eng: &'e Engine,
        scope: &'e Scope,
        s: &'s [u8],
        base_offset: u64,
        full: bool,
        path: &mut PathBuf,
    ) -> Self {
        // Reuses the allocation: an empty Vec of a type that differs only in lifetime.
        let path = std::mem::take(&mut path.0)
            .into_iter()
            .map(|_| Seg::Index(0))
            .collect();
        Walker {
            s,
            pos: 0,
            mark: 0,
            base_offset,
            eng,
            scope,
            path,
            depth: 0,
            full,
            restart: false,
            frames: Vec::new(),
            inherit: None,
            unit_fp: None,
            binding: Vec::new(),
        }
    }

    /// Gives the path's allocation back.
    fn finish(mut self, path: &mut PathBuf) {
        self.path.clear();
        path.0 = self.path.into_iter().map(|_| Seg::Index(0)).collect();
    }

    fn prefix(&mut self, hint: &Hint, out: &mut Vec<u8>) -> Result<usize, MaskError> {
        match self.peek() {
            Some(b'{') => self.object(hint, out)?,
            Some(b'[') => {
                let ctx = ObjCtx::plain(Kind::TopArray(hint.clone()), 0);
                self.elements(&ctx, out)?;
            }
            _ => return Err(self.err("expected an object or array")),
        }
        out.extend_from_slice(&self.s[self.mark..self.pos]);
        Ok(self.pos)
    }

    fn run(&mut self, hint: &Hint, out: &mut Vec<u8>) -> Result<(), MaskError> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(hint, out)?,
            Some(b'[') => {
                let ctx = ObjCtx::plain(Kind::TopArray(hint.clone()), 0);
                self.elements(&ctx, out)?;
            }
            Some(b'"') => {
                self.string_span()?;
            }
            Some(_) => {
                self.pos = skip_scalar(self.s, self.pos, self.base_offset)?;
            }
            None => return Err(MaskError::Truncated),
        }
        self.ws();
        if self.pos != self.s.len() {
            return Err(self.err("unexpected data after the value"));
        }
        out.extend_from_slice(&self.s[self.mark..]);
        Ok(())
    }

    fn err(&self, reason: &'static str) -> MaskError {
        MaskError::json(self.base_offset + self.pos as u64, reason)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        self.pos = skip_ws(self.s, self.pos);
    }

    fn enter(&mut self) -> Result<(), MaskError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(MaskError::TooDeep(MAX_DEPTH));
        }
        Ok(())
    }

    /// Parses a string at `pos`; returns the content bounds and whether it has escapes.
    fn string_span(&mut self) -> Result<(usize, usize, bool), MaskError> {
        let start = self.pos + 1;
        let (end, esc) = scan_string(self.s, self.pos)?;
        self.pos = end;
        Ok((start, end - 1, esc))
    }

    fn object(&mut self, hint: &Hint, out: &mut Vec<u8>) -> Result<(), MaskError> {
        // Names and namespaces cost allocations: read them only when something uses them.
        let full = match hint {
            Hint::EnvVar | Hint::JsonPatch { .. } => true,
            Hint::Primary(_) => !self.scope.rules.is_empty(),
            Hint::WatchEvent | Hint::TableRow => false,
        };
        let info = match hint {
            // Their members are interpreted the same whatever else the object holds.
            Hint::WatchEvent | Hint::TableRow => ObjInfo::default(),
            _ if full || self.full => prescan(self.s, self.pos, self.base_offset, Prescan::Full)?,
            // An item of a typed list takes the list's kind unless it has its own, which the
            // walk notices (and then masks the unit again with full pre-scans).
            Hint::Primary(Some(_)) => ObjInfo::default(),
            _ => prescan(self.s, self.pos, self.base_offset, Prescan::UntilKind)?,
        };
        let mut ctx = self.obj_ctx(&info, hint);
        ctx.check_kind = matches!(hint, Hint::Primary(_)) && !full && !self.full;
        ctx.kind_at = info.kind_at;
        let primary = matches!(hint, Hint::Primary(_)) && !matches!(ctx.kind, Kind::WatchEvent);
        if primary {
            self.frames.push(Frame {
                start: self.pos,
                base: self.path.len(),
                kind: ctx.kind_name.clone(),
                identity: None,
                metadata: None,
                fp: None,
                versioned: None,
                versioned_only: self.inherit.is_some(),
            });
        }
        self.members(&ctx, out)?;
        if primary {
            self.frames.pop();
        }
        Ok(())
    }

    /// The fingerprinter for the string value at the current path: the body's key (the
    /// cluster's, or the body's own for [`Fingerprints::Own`]) bound to the innermost object
    /// and to the path inside it.
    ///
    /// * A Secret's `data` and `stringData` values bind to the Secret (kind, namespace, name)
    ///   and key: the same key shows the same fingerprint on every read until its value
    ///   changes. Placing a guess there means overwriting the Secret (which the baseline
    ///   policy holds for approval).
    /// * Every other value binds to the object's `resourceVersion` as well: anything a
    ///   client could rewrite in place without touching the secret (a list it can reorder so
    ///   that its guess takes the secret's index, an annotation, a ConfigMap value it can
    ///   overwrite again and again) gets a new binding with every write, so a guess can
    ///   never be compared with a fingerprint read before.
    /// * An object without a readable name (a list's own metadata, a `Status`; the cluster
    ///   returns every stored object with its name), and the values of a unit outside any
    ///   object (a Table row's cells, a JSON Patch operation), get a key used nowhere else.
    /// * Only answers to core `secrets` requests keep a Secret's values across versions; in a
    ///   last-applied copy everything binds to the owning object's version.
    fn value_fp(&mut self) -> Fingerprinter {
        let scope = self.scope;
        let eng = self.eng;
        let root = match (&self.inherit, scope.ctx.fingerprints) {
            (Some(owner), _) => owner,
            (None, Fingerprints::Own) => scope.own(eng),
            (None, Fingerprints::Bound) => &scope.fp,
        };
        let Some(frame) = self.frames.last_mut() else {
            let unit = self.unit_fp.get_or_insert_with(|| eng.fresh());
            let b = &mut self.binding;
            b.clear();
            push_field(b, &self.path);
            return unit.bound(b);
        };
        let rel = &self.path[frame.base..];
        let secret_value = !frame.versioned_only
            && scope.core_secrets()
            && frame.kind.as_ref().map(KindName::as_str) == Some("Secret")
            && rel.len() == 2
            && rel[0].is_any_of(&[b"data", b"stringData"]);
        let b = &mut self.binding;
        if frame.identity.is_none() {
            frame.identity = Some(match frame.metadata {
                Some(at) => metadata_fields(self.s, at, self.base_offset),
                // A value before `metadata` (not the cluster's order): look ahead for it.
                None => metadata_identity(self.s, frame.start, self.base_offset),
            });
        }
        let identity = frame.identity.as_ref().and_then(Option::as_ref);
        let kind = frame.kind.as_ref().map_or("", KindName::as_str);
        let object = frame.fp.get_or_insert_with(|| {
            b.clear();
            match identity {
                Some(id) => {
                    push_part(b, b"object");
                    push_part(b, kind.as_bytes());
                    push_part(b, id.namespace.as_deref().unwrap_or(b""));
                    push_part(b, &id.name);
                }
                // Not a stored object (a `Status`, a list's own metadata): a key used
                // nowhere else, so nothing links it to anything.
                None => return eng.fresh(),
            }
            root.bound_shared(b)
        });
        let object = if secret_value {
            object
        } else {
            frame.versioned.get_or_insert_with(|| {
                b.clear();
                push_part(b, b"version");
                let version = identity.and_then(|id| id.version.as_deref());
                push_part(b, version.unwrap_or(b""));
                object.bound_shared(b)
            })
        };
        b.clear();
        push_field(b, rel);
        object.bound(b)
    }

    /// The fingerprinter for a copy of the innermost object held in one of its annotations:
    /// bound to the object's identity and version (see [`value_fp`](Self::value_fp)); the
    /// body's own key outside any object (annotations are only read inside one).
    fn annotation_fp(&mut self) -> Fingerprinter {
        if self.frames.is_empty() {
            return self.scope.own(self.eng).clone();
        }
        // Made by asking for the fingerprinter of a value that is not a Secret's.
        self.path.push(Seg::Index(0));
        let any = self.value_fp();
        self.path.pop();
        self.frames
            .last()
            .and_then(|f| f.versioned.clone())
            .unwrap_or(any)
    }
}

/// Appends a field path to a fingerprint binding.
fn push_field(b: &mut Vec<u8>, path: &[Seg<'_>]) {
    push_part(b, b"field");
    for seg in path {
        match seg {
            Seg::Key(k) => {
                b.push(b'k');
                push_part(b, k);
            }
            Seg::Index(i) => {
                b.push(b'i');
                crate::marker::push_len(b, *i);
            }
        }
    }
}

impl<'s> Walker<'s, '_> {
    fn obj_ctx(&self, info: &ObjInfo<'s>, hint: &Hint) -> ObjCtx<'s> {
        let base = self.path.len();
        let mut ctx = ObjCtx::plain(Kind::Other, base);
        match hint {
            Hint::WatchEvent => ctx.kind = Kind::WatchEvent,
            Hint::TableRow => ctx.kind = Kind::TableRow,
            Hint::EnvVar => {
                ctx.kind = Kind::EnvVar;
                ctx.name = info.name.clone();
            }
            Hint::JsonPatch { secret } => {
                let data = info
                    .op_path
                    .as_deref()
                    .is_some_and(|p| p.starts_with("/data"));
                ctx.kind = Kind::JsonPatchOp {
                    secret: *secret,
                    data,
                };
            }
            Hint::Primary(given) => {
                ctx.annotations = true;
                let name = match (&info.kind, given, self.scope.resource_kind) {
                    (Some(k), _, _) => Some(KindName::Body(k.clone())),
                    (None, Some(g), _) => Some(KindName::Given(g.clone())),
                    (None, None, Some(r)) => Some(KindName::Resource(r)),
                    (None, None, None) => None,
                };
                // A watch event has no `kind` of its own: recognise it by shape before the
                // kind the context gives (a `secrets` watch answered as plain JSON must still
                // mask each event's object), and treat anything else with `data`/`stringData`
                // and no kind as a Secret (over-masking is the safe error).
                let event = info.kind.is_none()
                    && info.has_object
                    && info.has_type
                    && !info.has_api_version;
                ctx.kind = match &name {
                    _ if event => Kind::WatchEvent,
                    Some(n) => kind_of(n.as_str()),
                    None if info.has_data => Kind::Secret,
                    None => Kind::Other,
                };
                if !self.scope.rules.is_empty() {
                    ctx.rules = self.matching_rules(
                        name.as_ref().map(KindName::as_str),
                        info.namespace.as_deref(),
                    );
                }
                ctx.kind_name = name;
            }
        }
        ctx
    }

    fn matching_rules(&self, kind: Option<&str>, namespace: Option<&str>) -> Vec<usize> {
        let kind_plural = kind.map(plural);
        let namespace = namespace.or(self.scope.ctx.namespace.as_deref());
        self.scope
            .rules
            .iter()
            .copied()
            .filter(|&i| {
                let Some(rule) = self.eng.rules.get(i) else {
                    return false;
                };
                let resource_ok = rule.resource == "*"
                    || kind_plural.as_deref() == Some(rule.resource.as_str())
                    || self.scope.ctx.resource.as_deref() == Some(rule.resource.as_str());
                let ns_ok = match (&rule.namespace, namespace) {
                    (None, _) => true,
                    (Some(glob), Some(ns)) => glob_match(glob.as_bytes(), ns.as_bytes()),
                    (Some(_), None) => false,
                };
                resource_ok && ns_ok
            })
            .collect()
    }

    fn members(&mut self, obj: &ObjCtx<'s>, out: &mut Vec<u8>) -> Result<(), MaskError> {
        self.enter()?;
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                if self.peek().is_none() {
                    return Err(MaskError::Truncated);
                }
                return Err(self.err("expected an object key"));
            }
            let quote = self.pos;
            let (a, b, esc) = self.string_span()?;
            let key = if esc {
                Cow::Owned(unescape(&self.s[a..b]).ok_or_else(|| self.err("bad escape in key"))?)
            } else {
                Cow::Borrowed(&self.s[a..b])
            };
            if obj.check_kind
                && self.path.len() == obj.base
                && key.as_ref() == b"kind"
                && obj.kind_at != Some(quote)
            {
                // A `kind` the pre-scan did not read: mask the unit again, reading them all.
                self.restart = true;
                return Err(self.err("unexpected kind member"));
            }
            let event_member = matches!(obj.kind, Kind::WatchEvent) && self.path.len() == obj.base;
            if event_member && !matches!(key.as_ref(), b"type" | b"object") {
                // Only `object` is interpreted in an event: a document with more is not one,
                // and its other members would pass unmasked.
                return Err(self.err("a watch event holds only type and object"));
            }
            let event_type = event_member && key.as_ref() == b"type";
            let metadata = key.as_ref() == b"metadata";
            self.path.push(Seg::Key(key));
            self.ws();
            if self.peek() != Some(b':') {
                if self.peek().is_none() {
                    return Err(MaskError::Truncated);
                }
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            self.ws();
            if event_type && self.peek().is_none() {
                return Err(MaskError::Truncated);
            }
            if event_type && self.peek() != Some(b'"') {
                // An event's `type` is a string (ADDED, ERROR...); anything else would be
                // copied unread.
                return Err(self.err("a watch event's type is a string"));
            }
            if metadata && self.peek() == Some(b'{') {
                // An object's own metadata: note where it is, for its fingerprints (read only
                // if a value needs one; the first `metadata` counts, as in
                // `metadata_identity`).
                let at = self.pos;
                if let Some(frame) = self
                    .frames
                    .last_mut()
                    .filter(|f| f.base == obj.base && f.metadata.is_none())
                {
                    frame.metadata = Some(at);
                }
            }
            self.value(obj, out)?;
            self.path.pop();
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => return Err(self.err("expected ',' or '}'")),
                None => return Err(MaskError::Truncated),
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn elements(&mut self, obj: &ObjCtx<'s>, out: &mut Vec<u8>) -> Result<(), MaskError> {
        self.enter()?;
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut i = 0;
        loop {
            self.ws();
            self.path.push(Seg::Index(i));
            self.value(obj, out)?;
            self.path.pop();
            i += 1;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => return Err(self.err("expected ',' or ']'")),
                None => return Err(MaskError::Truncated),
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn value(&mut self, obj: &ObjCtx<'s>, out: &mut Vec<u8>) -> Result<(), MaskError> {
        match self.peek() {
            Some(c @ (b'{' | b'[')) => match self.container_action(obj) {
                Container::Embedded(hint) if c == b'{' => {
                    self.object(&hint, out)?;
                }
                Container::Embedded(_) | Container::Descend => {
                    if c == b'{' {
                        self.members(obj, out)?;
                    } else {
                        self.elements(obj, out)?;
                    }
                }
                Container::Skip => {
                    self.pos = skip_value(self.s, self.pos, self.base_offset)?;
                }
            },
            Some(b'"') => self.string_value(obj, out)?,
            Some(_) => self.pos = skip_scalar(self.s, self.pos, self.base_offset)?,
            None => return Err(MaskError::Truncated),
        }
        Ok(())
    }

    fn container_action(&self, obj: &ObjCtx) -> Container {
        let rel = &self.path[obj.base..];
        if let Some(hint) = embedded(&obj.kind, rel) {
            return Container::Embedded(hint);
        }
        if (obj.annotations && annotations_prefix(rel)) || descend(&obj.kind, rel) {
            return Container::Descend;
        }
        for &r in &obj.rules {
            if let Some(rule) = self.eng.rules.get(r) {
                if rule.paths.iter().any(|p| compatible(&p.segs, rel)) {
                    return Container::Descend;
                }
            }
        }
        Container::Skip
    }

    fn string_action(&self, obj: &ObjCtx) -> Act {
        let rel = &self.path[obj.base..];
        let builtin = builtin_string_action(obj, rel);
        if matches!(
            builtin,
            Act::SecretValue { .. } | Act::Whole(_) | Act::LastApplied
        ) {
            return builtin;
        }
        for &r in &obj.rules {
            let Some(rule) = self.eng.rules.get(r) else {
                continue;
            };
            if rule
                .paths
                .iter()
                .any(|p| p.segs.len() <= rel.len() && compatible(&p.segs, rel))
            {
                return match (&rule.detectors, &builtin) {
                    (None, _) => Act::UserWhole,
                    (Some(_), Act::Detect { name, .. }) => Act::Detect {
                        name: *name,
                        selection: None,
                    },
                    (Some(_), _) => Act::Detect {
                        name: NameFrom::None,
                        selection: Some(r),
                    },
                };
            }
        }
        builtin
    }

    fn string_value(&mut self, obj: &ObjCtx<'s>, out: &mut Vec<u8>) -> Result<(), MaskError> {
        let quote = self.pos;
        let (a, b, esc) = self.string_span()?;
        let act = self.string_action(obj);
        if matches!(act, Act::Keep) {
            return Ok(());
        }
        let src = self.s;
        let eng = self.eng;
        let raw = &src[a..b];
        if raw.is_empty() {
            return Ok(());
        }
        let mut named = false;
        if let Act::Detect { name, .. } = act {
            named = match name {
                NameFrom::None => false,
                NameFrom::LastKey => {
                    matches!(self.path.last(), Some(Seg::Key(k)) if sensitive_name(k))
                }
                NameFrom::ObjName => obj
                    .name
                    .as_deref()
                    .is_some_and(|n| sensitive_name(n.as_bytes())),
            };
            // Clean values (most of them) need no unescaping: unless a `\u` or `\/` escape
            // hides one, a keyword in the decoded text is also in the raw text.
            let hidden = esc
                && (!eng.detectors.keywords_json_plain()
                    || memchr::memchr_iter(b'\\', raw)
                        .any(|i| matches!(raw.get(i + 1), Some(b'u' | b'/'))));
            if !named
                && !hidden
                && !eng.detectors.has_keywordless()
                && !eng.detectors.may_match(raw)
            {
                return Ok(());
            }
        }
        let content: Cow<'_, [u8]> = if esc {
            Cow::Owned(unescape(raw).ok_or_else(|| self.err("bad escape in string"))?)
        } else {
            Cow::Borrowed(raw)
        };
        if content.is_empty() {
            return Ok(());
        }
        let already_marker = content.starts_with(b"[airlock:masked:") && content.ends_with(b"]");
        if already_marker && !matches!(act, Act::SecretValue { .. } | Act::LastApplied) {
            return Ok(());
        }
        if let Act::SecretValue { base64 } = act {
            // The hot path (every Secret value): written straight into `out`.
            if content.starts_with(MARKER_PREFIX.as_bytes())
                || (base64 && content.starts_with(MARKER_PREFIX_BASE64.as_bytes()))
            {
                return Ok(());
            }
            let fp = &self.value_fp();
            out.extend_from_slice(&src[self.mark..quote]);
            out.push(b'"');
            if base64 {
                // The fingerprint covers the base64 text (the API server's encoding is
                // canonical: equal values, equal text), so the value is never decoded; the
                // marker keeps the decoded length.
                fp.value_marker_base64(&content, decoded_len(&content), out);
            } else {
                // Markers are ASCII without characters that need escaping.
                fp.value_marker(&content, content.len(), out);
            }
            out.push(b'"');
            self.mark = self.pos;
            return Ok(());
        }
        let mut new = Vec::new();
        match act {
            Act::Keep | Act::SecretValue { .. } => return Ok(()),
            Act::Whole(id) => {
                let mut marker = Vec::new();
                self.value_fp().text_marker(id, &content, &mut marker);
                write_json_string(&marker, &mut new);
            }
            Act::UserWhole => {
                let mut marker = Vec::new();
                self.value_fp().text_marker("rule", &content, &mut marker);
                write_json_string(&marker, &mut new);
            }
            Act::Detect { selection, .. } => {
                if named {
                    let mut marker = Vec::new();
                    self.value_fp()
                        .text_marker(SENSITIVE_NAME, &content, &mut marker);
                    write_json_string(&marker, &mut new);
                } else {
                    let selection = match selection {
                        None => &Selection::All,
                        Some(r) => match eng.rules.get(r).and_then(|r| r.detectors.as_ref()) {
                            Some(sel) => sel,
                            None => &Selection::All,
                        },
                    };
                    // The fingerprinter (a metadata scan and a key per object) only once
                    // something matched: most values with a keyword hold no secret.
                    let scan = eng.detectors.scan(&content, selection);
                    if scan.hits.is_empty() {
                        return Ok(());
                    }
                    let mut masked = Vec::with_capacity(content.len());
                    eng.detectors
                        .apply(&content, &scan.hits, &self.value_fp(), &mut masked);
                    write_json_string(&masked, &mut new);
                }
            }
            Act::LastApplied => {
                let mut inner = Vec::with_capacity(content.len());
                let given = obj.kind_name.as_ref().map(|k| Arc::from(k.as_str()));
                let hint = Hint::Primary(given);
                let at = At {
                    src: &content,
                    base_offset: 0,
                    depth: self.depth,
                };
                // The annotation's fields are bound to the object it belongs to, so a value shows
                // the same fingerprint in both (its own metadata may lack the namespace).
                let object = Some(self.annotation_fp());
                let run = walk(
                    eng,
                    self.scope,
                    at,
                    &mut PathBuf::default(),
                    &mut inner,
                    |w, out| {
                        w.inherit = object.clone();
                        w.run(&hint, out)
                    },
                );
                match run {
                    Ok(()) if inner == content.as_ref() => return Ok(()),
                    Ok(()) => write_json_string(&inner, &mut new),
                    Err(MaskError::TooDeep(d)) => return Err(MaskError::TooDeep(d)),
                    Err(_) => {
                        // Not JSON: it may hold anything, so hide all of it.
                        let mut marker = Vec::new();
                        self.value_fp().text_marker(
                            "last-applied-configuration",
                            &content,
                            &mut marker,
                        );
                        write_json_string(&marker, &mut new);
                    }
                }
            }
        }
        out.extend_from_slice(&src[self.mark..quote]);
        out.extend_from_slice(&new);
        self.mark = self.pos;
        Ok(())
    }
}

/// The length of the bytes a base64 text decodes to (padded or not; for text that is not
/// base64, about three quarters of its length).
fn decoded_len(text: &[u8]) -> usize {
    let pad = text
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b'=')
        .count();
    (text.len() - pad) * 3 / 4
}

fn annotations_prefix(rel: &[Seg<'_>]) -> bool {
    is_path(rel, &[b"metadata"]) || is_path(rel, &[b"metadata", b"annotations"])
}

/// Objects that start a new interpretation context.
fn embedded(kind: &Kind, rel: &[Seg<'_>]) -> Option<Hint> {
    match kind {
        Kind::List(item) if rel.len() == 2 && rel[0].is(b"items") && rel[1].is_index() => {
            Some(Hint::Primary(item.clone()))
        }
        Kind::Table if rel.len() == 2 && rel[0].is(b"rows") && rel[1].is_index() => {
            Some(Hint::TableRow)
        }
        Kind::TableRow | Kind::WatchEvent if is_path(rel, &[b"object"]) => {
            Some(Hint::Primary(None))
        }
        Kind::TopArray(h) if rel.len() == 1 => Some(h.clone()),
        Kind::PodSpecAt(prefix) => {
            let n = prefix.len();
            (rel.len() == n + 4
                && rel.iter().zip(prefix.iter()).all(|(s, k)| s.is(k))
                && rel[n].is_any_of(CONTAINER_LISTS)
                && rel[n + 1].is_index()
                && rel[n + 2].is(b"env")
                && rel[n + 3].is_index())
            .then_some(Hint::EnvVar)
        }
        _ => None,
    }
}

/// Containers under which a built-in rule may act.
fn descend(kind: &Kind, rel: &[Seg<'_>]) -> bool {
    let Some(first) = rel.first() else {
        return true;
    };
    match kind {
        Kind::Secret => first.is(b"data") || first.is(b"stringData"),
        Kind::ConfigMap => is_path(rel, &[b"data"]),
        Kind::TokenRequest => is_path(rel, &[b"status"]),
        Kind::PodSpecAt(prefix) if *prefix == POD && first.is(b"status") => true,
        Kind::PodSpecAt(prefix) => {
            let n = prefix.len();
            rel.iter().enumerate().all(|(i, s)| {
                if i < n {
                    s.is(prefix[i])
                } else if i == n {
                    s.is_any_of(CONTAINER_LISTS)
                } else if i == n + 1 {
                    s.is_index()
                } else {
                    true
                }
            })
        }
        Kind::List(_) => is_path(rel, &[b"items"]),
        Kind::Table => is_path(rel, &[b"rows"]),
        Kind::TableRow => is_path(rel, &[b"cells"]),
        Kind::Status => first.is(b"details"),
        Kind::JsonPatchOp { .. } => first.is(b"value"),
        Kind::TopArray(_) | Kind::WatchEvent | Kind::Event | Kind::EnvVar | Kind::Other => false,
    }
}

fn builtin_string_action(obj: &ObjCtx, rel: &[Seg<'_>]) -> Act {
    if obj.annotations && rel.len() == 3 && rel[0].is(b"metadata") && rel[1].is(b"annotations") {
        return if rel[2].is(LAST_APPLIED) {
            Act::LastApplied
        } else {
            Act::Detect {
                name: NameFrom::LastKey,
                selection: None,
            }
        };
    }
    let detect = Act::Detect {
        name: NameFrom::None,
        selection: None,
    };
    match &obj.kind {
        Kind::Secret if rel.len() >= 2 && rel[0].is(b"data") => Act::SecretValue { base64: true },
        Kind::Secret if rel.len() >= 2 && rel[0].is(b"stringData") => {
            Act::SecretValue { base64: false }
        }
        Kind::TokenRequest if is_path(rel, &[b"status", b"token"]) => Act::Whole("token-request"),
        Kind::ConfigMap if rel.len() == 2 && rel[0].is(b"data") => Act::Detect {
            name: NameFrom::LastKey,
            selection: None,
        },
        // A pod's status messages (a container's termination message is whatever it wrote
        // last) run the detectors.
        Kind::PodSpecAt(prefix)
            if *prefix == POD
                && rel.first().is_some_and(|s| s.is(b"status"))
                && rel.last().is_some_and(|s| s.is(b"message")) =>
        {
            detect
        }
        // Every string of a container (args, command, probes' commands and headers, lifecycle
        // hooks...) runs the detectors; env values are EnvVar objects of their own.
        Kind::PodSpecAt(prefix) => {
            let n = prefix.len();
            if rel.len() >= n + 3
                && rel.iter().zip(prefix.iter()).all(|(s, k)| s.is(k))
                && rel[n].is_any_of(CONTAINER_LISTS)
                && rel[n + 1].is_index()
            {
                detect
            } else {
                Act::Keep
            }
        }
        Kind::EnvVar if is_path(rel, &[b"value"]) => Act::Detect {
            name: NameFrom::ObjName,
            selection: None,
        },
        Kind::TableRow if rel.len() == 2 && rel[0].is(b"cells") => detect,
        Kind::Status
            if is_path(rel, &[b"message"]) || rel.first().is_some_and(|s| s.is(b"details")) =>
        {
            detect
        }
        Kind::Event if is_path(rel, &[b"message"]) || is_path(rel, &[b"note"]) => detect,
        Kind::JsonPatchOp { secret, data } if rel.first().is_some_and(|s| s.is(b"value")) => {
            if *secret {
                Act::SecretValue { base64: *data }
            } else {
                detect
            }
        }
        _ => Act::Keep,
    }
}

/// The first `min(len)` segments of a rule path and a concrete path agree.
fn compatible(pattern: &[PathSeg], rel: &[Seg<'_>]) -> bool {
    pattern.iter().zip(rel).all(|(p, s)| s.matches(p))
}

// === scanning helpers ===

pub(crate) fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

/// `i` is at an opening quote; returns the index after the closing quote.
pub(crate) fn skip_string(s: &[u8], i: usize, _off: u64) -> Result<usize, MaskError> {
    scan_string(s, i).map(|(end, _)| end)
}

/// `i` is at an opening quote; returns the index after the closing quote and whether the
/// string holds an escape.
fn scan_string(s: &[u8], i: usize) -> Result<(usize, bool), MaskError> {
    let mut j = i + 1;
    let mut esc = false;
    // Most strings (keys, names) are short: a plain loop beats setting up a SIMD search.
    let short_end = (j + 24).min(s.len());
    while j < short_end {
        match s[j] {
            b'"' => return Ok((j + 1, esc)),
            b'\\' => {
                esc = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
    loop {
        match memchr::memchr2(b'"', b'\\', s.get(j..).unwrap_or_default()) {
            Some(k) => {
                let at = j + k;
                if s[at] == b'"' {
                    return Ok((at + 1, esc));
                }
                esc = true;
                j = at + 2;
            }
            None => return Err(MaskError::Truncated),
        }
    }
}

fn skip_scalar(s: &[u8], i: usize, off: u64) -> Result<usize, MaskError> {
    let rest = &s[i..];
    for lit in [&b"true"[..], b"false", b"null"] {
        if rest.starts_with(lit) {
            return Ok(i + lit.len());
        }
        if rest.len() < lit.len() && lit.starts_with(rest) {
            // The input ends inside the literal.
            return Err(MaskError::Truncated);
        }
    }
    let n = rest
        .iter()
        .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .count();
    let first_ok = matches!(rest.first(), Some(b'0'..=b'9' | b'-'));
    if n == 0 || !first_ok {
        return Err(MaskError::json(off + i as u64, "expected a value"));
    }
    Ok(i + n)
}

/// `i` is at `{` or `[`; returns the index after the matching close.
pub(crate) fn skip_value(s: &[u8], mut i: usize, off: u64) -> Result<usize, MaskError> {
    // Bit stack of open containers: 1 = object, 0 = array.
    let mut stack: u128 = 0;
    let mut depth = 0usize;
    loop {
        i = skip_ws(s, i);
        let Some(&c) = s.get(i) else {
            return Err(MaskError::Truncated);
        };
        match c {
            b'"' => i = skip_string(s, i, off)?,
            b'{' | b'[' => {
                if depth >= MAX_DEPTH {
                    return Err(MaskError::TooDeep(MAX_DEPTH));
                }
                stack = (stack << 1) | u128::from(c == b'{');
                depth += 1;
                i += 1;
                continue;
            }
            b'}' | b']' => {
                if depth == 0 || (stack & 1 == 1) != (c == b'}') {
                    return Err(MaskError::json(off + i as u64, "mismatched bracket"));
                }
                stack >>= 1;
                depth -= 1;
                i += 1;
            }
            b',' | b':' if depth > 0 => {
                i += 1;
                continue;
            }
            _ => i = skip_scalar(s, i, off)?,
        }
        if depth == 0 {
            return Ok(i);
        }
    }
}

/// How much of an object [`prescan`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prescan {
    /// Every member; the last `kind` wins (as in Go's decoder), keys are unescaped, and
    /// `name`, `path` and `metadata.namespace` are read too.
    Full,
    /// Up to the first string `kind` (the walk checks that no other follows).
    UntilKind,
}

/// Reads an object's own members for the fields that decide how it is masked.
pub(crate) fn prescan(
    s: &[u8],
    start: usize,
    off: u64,
    mode: Prescan,
) -> Result<ObjInfo<'_>, MaskError> {
    let full = mode == Prescan::Full;
    let mut info = ObjInfo::default();
    let mut i = skip_ws(s, start + 1);
    if s.get(i) == Some(&b'}') {
        return Ok(info);
    }
    loop {
        i = skip_ws(s, i);
        if s.get(i) != Some(&b'"') {
            if i >= s.len() {
                return Err(MaskError::Truncated);
            }
            return Err(MaskError::json(off + i as u64, "expected an object key"));
        }
        let kstart = i;
        let kend = skip_string(s, i, off)?;
        let raw_key = &s[i + 1..kend - 1];
        let key: Cow<'_, [u8]> = if full && memchr::memchr(b'\\', raw_key).is_some() {
            match unescape(raw_key) {
                Some(k) => Cow::Owned(k),
                None => return Err(MaskError::json(off + i as u64, "bad escape in key")),
            }
        } else {
            Cow::Borrowed(raw_key)
        };
        i = skip_ws(s, kend);
        if s.get(i) != Some(&b':') {
            if i >= s.len() {
                return Err(MaskError::Truncated);
            }
            return Err(MaskError::json(off + i as u64, "expected ':'"));
        }
        i = skip_ws(s, i + 1);
        let vstart = i;
        let is_str = s.get(i) == Some(&b'"');
        i = match s.get(i) {
            Some(b'"') => skip_string(s, i, off)?,
            Some(b'{' | b'[') => skip_value(s, i, off)?,
            Some(_) => skip_scalar(s, i, off)?,
            None => return Err(MaskError::Truncated),
        };
        let text = || string_text(&s[vstart + 1..i - 1]);
        match key.as_ref() {
            b"kind" if is_str => {
                info.kind = string_cow(&s[vstart + 1..i - 1]);
                info.kind_at = Some(kstart);
                if !full {
                    return Ok(info);
                }
            }
            b"name" if is_str && full => info.name = text(),
            b"path" if is_str && full => info.op_path = text(),
            b"apiVersion" => info.has_api_version = true,
            b"type" => info.has_type = true,
            b"object" => info.has_object = true,
            b"data" | b"stringData" => info.has_data = true,
            b"metadata" if full && s.get(vstart) == Some(&b'{') => {
                info.namespace = metadata_namespace(s, vstart, off)?;
            }
            _ => {}
        }
        i = skip_ws(s, i);
        match s.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(info),
            Some(_) => return Err(MaskError::json(off + i as u64, "expected ',' or '}'")),
            None => return Err(MaskError::Truncated),
        }
    }
}

/// The `metadata.namespace` and `metadata.name` of the object at `start`, if it has a name;
/// `None` for an object without one, or one that cannot be read here (a unit's prefix).
/// The first `metadata` member counts (the cluster writes one, before the object's data, so
/// the scan stops early), and within it the first `name` and `namespace`; a cluster-scoped
/// object's metadata is read to its end for a namespace it does not have.
fn metadata_identity(s: &[u8], start: usize, off: u64) -> Option<Identity<'_>> {
    let mut metadata = None;
    each_member(s, start, off, |key, vstart, _| {
        if key == b"metadata" && s.get(vstart) == Some(&b'{') {
            metadata = Some(vstart);
            return false;
        }
        true
    })
    .ok()?;
    metadata_fields(s, metadata?, off)
}

/// The `namespace` and `name` of the metadata object at `start`: see [`metadata_identity`].
fn metadata_fields(s: &[u8], start: usize, off: u64) -> Option<Identity<'_>> {
    let (mut namespace, mut name, mut version) = (None, None, None);
    each_member(s, start, off, |key, vstart, vend| {
        if s.get(vstart) == Some(&b'"') {
            let text = || string_bytes(&s[vstart + 1..vend - 1]);
            match key {
                b"namespace" => namespace = text(),
                b"name" => name = text(),
                b"resourceVersion" => version = text(),
                _ => {}
            }
        }
        // The cluster writes these first: the rest (managedFields, annotations) is not read.
        namespace.is_none() || name.is_none() || version.is_none()
    })
    .ok()?;
    Some(Identity {
        namespace,
        name: name.filter(|n| !n.is_empty())?,
        version,
    })
}

/// Calls `f(key, value start, value end)` for each member of the object at `start` (keys
/// unescaped), until `f` returns `false`.
fn each_member(
    s: &[u8],
    start: usize,
    off: u64,
    mut f: impl FnMut(&[u8], usize, usize) -> bool,
) -> Result<(), MaskError> {
    let mut i = skip_ws(s, start + 1);
    if s.get(i) == Some(&b'}') {
        return Ok(());
    }
    loop {
        i = skip_ws(s, i);
        if s.get(i) != Some(&b'"') {
            if i >= s.len() {
                return Err(MaskError::Truncated);
            }
            return Err(MaskError::json(off + i as u64, "expected an object key"));
        }
        let kend = skip_string(s, i, off)?;
        let raw = &s[i + 1..kend - 1];
        let key = match memchr::memchr(b'\\', raw) {
            None => Cow::Borrowed(raw),
            Some(_) => Cow::Owned(
                unescape(raw).ok_or_else(|| MaskError::json(off + i as u64, "bad escape"))?,
            ),
        };
        i = skip_ws(s, kend);
        if s.get(i) != Some(&b':') {
            if i >= s.len() {
                return Err(MaskError::Truncated);
            }
            return Err(MaskError::json(off + i as u64, "expected ':'"));
        }
        i = skip_ws(s, i + 1);
        let vstart = i;
        i = match s.get(i) {
            Some(b'"') => skip_string(s, i, off)?,
            Some(b'{' | b'[') => skip_value(s, i, off)?,
            Some(_) => skip_scalar(s, i, off)?,
            None => return Err(MaskError::Truncated),
        };
        if !f(&key, vstart, i) {
            return Ok(());
        }
        i = skip_ws(s, i);
        match s.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(()),
            Some(_) => return Err(MaskError::json(off + i as u64, "expected ',' or '}'")),
            None => return Err(MaskError::Truncated),
        }
    }
}

fn metadata_namespace(s: &[u8], start: usize, off: u64) -> Result<Option<String>, MaskError> {
    let mut namespace = None;
    each_member(s, start, off, |key, vstart, vend| {
        if key == b"namespace" && s.get(vstart) == Some(&b'"') {
            namespace = string_text(&s[vstart + 1..vend - 1]);
            return false;
        }
        true
    })?;
    Ok(namespace)
}

/// The bytes of a JSON string's raw content, borrowed when it has no escapes.
fn string_bytes(raw: &[u8]) -> Option<Cow<'_, [u8]>> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Some(Cow::Borrowed(raw));
    }
    unescape(raw).map(Cow::Owned)
}

/// The text of a JSON string's raw content, borrowed when it has no escapes and is UTF-8.
fn string_cow(raw: &[u8]) -> Option<Cow<'_, str>> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Some(String::from_utf8_lossy(raw));
    }
    unescape(raw).map(|v| Cow::Owned(String::from_utf8_lossy(&v).into_owned()))
}

/// The text of a JSON string's raw content (one allocation when it has no escapes).
fn string_text(raw: &[u8]) -> Option<String> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Some(String::from_utf8_lossy(raw).into_owned());
    }
    unescape(raw).map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Decodes the content of a JSON string; `None` on a bad escape.
pub(crate) fn unescape(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let Some(k) = memchr::memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + k]);
        i += k + 1;
        let c = *raw.get(i)?;
        i += 1;
        match c {
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            b'/' => out.push(b'/'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let hi = hex4(raw.get(i..i + 4)?)?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&hi) && raw.get(i..i + 2) == Some(b"\\u") {
                    match hex4(raw.get(i + 2..i + 6)?) {
                        Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                            i += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        _ => 0xFFFD,
                    }
                } else {
                    hi
                };
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// Writes `bytes` as a JSON string literal (with quotes). Invalid UTF-8 is replaced.
pub(crate) fn write_json_string(bytes: &[u8], out: &mut Vec<u8>) {
    // `from_utf8` checks ASCII a word at a time; the lossy path only for invalid UTF-8.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    out.push(b'"');
    let mut start = 0;
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}
