//! `RequestInfo`: a port of kube-apiserver's `RequestInfoFactory`
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`), configured as
//! kube-apiserver configures it: API prefixes `api` and `apis`, of which
//! `api` is groupless.

use serde::{Deserialize, Serialize};

use crate::{path, selector, Error, Query};

/// The parts of an HTTP request that decide its Kubernetes attributes.
/// Headers other than `Content-Type` and the body never matter here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// The HTTP method, case-sensitive as on the wire (`GET`, not `get`).
    pub method: &'a str,
    /// The raw path, still percent-encoded, without the query.
    pub path: &'a str,
    /// The raw query string without the leading `?`, if there was one.
    pub query: Option<&'a str>,
    /// The `Content-Type` header, if any; only patch requests look at it.
    pub content_type: Option<&'a str>,
}

/// Kubernetes request attributes, field for field as upstream's
/// `RequestInfo`, so authorization policy can be written in the same terms as
/// RBAC.
///
/// Empty strings mean "not present", as upstream: an empty `namespace` is a
/// cluster-scoped request or one across all namespaces, an empty `name` a
/// collection, an empty `verb` an HTTP method with no Kubernetes verb.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    /// Whether this is a request for an API resource or subresource (under
    /// `/api/{version}/...` or `/apis/{group}/{version}/...` with at least a
    /// resource); otherwise it is a non-resource URL such as `/healthz`,
    /// `/version`, `/api` or `/apis/apps`.
    pub is_resource_request: bool,
    /// The percent-decoded URL path.
    pub path: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`,
    /// `patch`, `delete`, `deletecollection`, `proxy`) for resource requests;
    /// the lowercase HTTP method for non-resource requests.
    pub verb: String,
    /// `api` or `apis` for resource requests, empty otherwise.
    pub api_prefix: String,
    /// The API group; empty for the legacy core group under `/api`.
    pub api_group: String,
    /// The API version, e.g. `v1`.
    pub api_version: String,
    /// The namespace; empty for cluster-scoped and all-namespace requests.
    /// For the `namespaces` resource itself, the namespace is also its name.
    pub namespace: String,
    /// The resource, e.g. `pods` (not the kind).
    pub resource: String,
    /// The subresource, e.g. `exec`, `status`, `scale`.
    pub subresource: String,
    /// The object name, from the path or, for list and watch, from a
    /// `fieldSelector` that requires an exact `metadata.name`.
    pub name: String,
    /// The path segments from the resource on:
    /// `{resource}/{name}/{subresource}/{anything else}`.
    pub parts: Vec<String>,
    /// The raw `fieldSelector` for `list`, `watch` and `deletecollection`
    /// (upstream's `AuthorizeWithSelectors`), not for verbs from a
    /// `/watch/` path prefix. Empty when absent.
    pub field_selector: String,
    /// The raw `labelSelector`, under the same rules as `field_selector`.
    pub label_selector: String,
}

/// The streaming kinds of request, which the gateway records or relays
/// differently from plain request/response calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    /// `pods/exec`.
    Exec,
    /// `pods/attach`.
    Attach,
    /// `pods/portforward`.
    PortForward,
    /// `pods/proxy`, `services/proxy`, `nodes/proxy`, or the deprecated
    /// `proxy` verb prefix.
    Proxy,
    /// `pods/log`; it streams only with `follow=true`, but is classified
    /// either way so callers handle log bodies in one place.
    Log,
}

// === impl StreamKind ===

impl StreamKind {
    /// Whether requests of this kind switch protocols (SPDY or WebSocket
    /// upgrade) rather than stream a plain HTTP body.
    pub fn is_upgrade(self) -> bool {
        matches!(self, Self::Exec | Self::Attach | Self::PortForward)
    }
}

// === impl RequestInfo ===

impl RequestInfo {
    /// The streaming kind, from the resource and subresource alone. The
    /// method is deliberately ignored: WebSocket exec is a `GET`, SPDY exec a
    /// `POST`, and both must be treated as exec.
    ///
    /// Only the core group counts: a custom resource may well have an `exec`
    /// subresource, and it means nothing to us.
    pub fn stream_kind(&self) -> Option<StreamKind> {
        if !self.is_resource_request || !self.api_group.is_empty() {
            return None;
        }
        if self.verb == "proxy" {
            return Some(StreamKind::Proxy);
        }
        match (self.resource.as_str(), self.subresource.as_str()) {
            ("pods", "exec") => Some(StreamKind::Exec),
            ("pods", "attach") => Some(StreamKind::Attach),
            ("pods", "portforward") => Some(StreamKind::PortForward),
            ("pods", "log") => Some(StreamKind::Log),
            ("pods" | "services" | "nodes", "proxy") => Some(StreamKind::Proxy),
            _ => None,
        }
    }

    /// Whether this is exec, attach or port-forward: a request that upgrades
    /// the connection to a bidirectional stream.
    pub fn is_streaming_upgrade(&self) -> bool {
        self.stream_kind().is_some_and(StreamKind::is_upgrade)
    }
}

/// Verbs that appear as a path prefix: `/api/v1/watch/...`, `/api/v1/proxy/...`.
const SPECIAL_VERBS: &[&str] = &["proxy", "watch"];
/// Special verbs whose third part is *not* a subresource.
const SPECIAL_VERBS_NO_SUBRESOURCES: &[&str] = &["proxy"];
/// Subresources of a namespace, which would otherwise read as a resource
/// inside the namespace (`/namespaces/x/status` vs `/namespaces/x/pods`).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];
/// Verbs for which upstream records the selectors.
const VERBS_WITH_SELECTORS: &[&str] = &["list", "watch", "deletecollection"];

/// Parses a request into its Kubernetes attributes, as kube-apiserver's
/// `RequestInfoFactory.NewRequestInfo` does.
///
/// The path is first checked with [`crate::check_path`]; a non-canonical
/// path is an error, never a best guess. The only other error is a `/watch`
/// or `/proxy` verb prefix with nothing after it, which upstream rejects too.
pub fn parse(req: &RequestParts) -> Result<RequestInfo, Error> {
    let decoded = path::decode(req.path)?;
    // Start with a non-resource request until proven otherwise.
    let mut info = RequestInfo {
        path: decoded.path,
        verb: req.method.to_ascii_lowercase(),
        ..RequestInfo::default()
    };

    let mut rest: &[String] = &decoded.segments;
    if rest.len() < 3 {
        return Ok(info);
    }
    let prefix = rest[0].as_str();
    if prefix != "api" && prefix != "apis" {
        return Ok(info);
    }
    rest = &rest[1..];
    if prefix == "apis" {
        // `/apis/{group}/{version}` is group-version discovery: a resource
        // request needs a fourth segment.
        if rest.len() < 3 {
            return Ok(info);
        }
        info.api_group = rest[0].clone();
        rest = &rest[1..];
    }
    info.api_prefix = prefix.to_owned();
    info.is_resource_request = true;
    info.api_version = rest[0].clone();
    rest = &rest[1..];

    // `rest` is non-empty here: three segments after the prefix handling.
    let verb_via_path_prefix = SPECIAL_VERBS.contains(&rest[0].as_str());
    if verb_via_path_prefix {
        if rest.len() < 2 {
            return Err(Error::MissingResource { path: info.path });
        }
        info.verb = rest[0].clone();
        rest = &rest[1..];
    } else {
        info.verb = match req.method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .to_owned();
    }

    // `/namespaces/{namespace}/{resource}/...`: re-root the parts at the
    // resource, unless the third segment is a namespace subresource, in which
    // case the namespace itself is the object.
    if rest[0] == "namespaces" && rest.len() > 1 {
        info.namespace = rest[1].clone();
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2].as_str()) {
            rest = &rest[2..];
        }
    }
    info.parts = rest.to_vec();

    // Parts look like resource/name/subresource/other/stuff/we/don't/interpret.
    if let Some(resource) = info.parts.first() {
        info.resource = resource.clone();
    }
    if let Some(name) = info.parts.get(1) {
        info.name = name.clone();
    }
    if !SPECIAL_VERBS_NO_SUBRESOURCES.contains(&info.verb.as_str()) {
        if let Some(subresource) = info.parts.get(2) {
            info.subresource = subresource.clone();
        }
    }

    let query = Query::parse(req.query);

    // A get without a name is a list, or a watch.
    if info.name.is_empty() && info.verb == "get" {
        info.verb = if query.watch() { "watch" } else { "list" }.to_owned();
        // Upstream decodes all of ListOptions and only trusts the field
        // selector when everything decoded.
        if list_options_decode(&query) {
            if let Some(Ok(Some(name))) = query.field_selector().map(selector::required_name) {
                if is_valid_path_segment_name(&name) {
                    info.name = name;
                }
            }
        }
    }

    // A delete without a name is a deletecollection.
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_owned();
    }

    // Selectors are recorded for authorization only on the verbs that honour
    // them, and not for the deprecated `/watch/` prefix, whose single-object
    // form ignores them.
    if !verb_via_path_prefix && VERBS_WITH_SELECTORS.contains(&info.verb.as_str()) {
        info.field_selector = query.field_selector().unwrap_or_default().to_owned();
        info.label_selector = query.label_selector().unwrap_or_default().to_owned();
    }

    Ok(info)
}

/// Whether upstream's `ParameterCodec.DecodeParameters` into `ListOptions`
/// would succeed, as far as it can fail: an unparsable field selector or a
/// non-integer `limit` or `timeoutSeconds`. Booleans never fail to decode.
/// Label-selector syntax is not checked (see the crate docs).
fn list_options_decode(query: &Query) -> bool {
    let ints_ok = ["limit", "timeoutSeconds"]
        .iter()
        .all(|key| query.get(key).is_none_or(|v| v.parse::<i64>().is_ok()));
    let fields_ok = query
        .field_selector()
        .is_none_or(|s| selector::required_name(s).is_ok());
    ints_ok && fields_ok
}

/// `path.IsValidPathSegmentName` from apimachinery: a name taken from a
/// selector must be usable as a path segment.
fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains(['/', '%'])
}
