//! A kubectl-equivalent command line for a request, for humans reading
//! audit logs and approval prompts.
//!
//! Best effort by design: the line says what the request does in the words
//! an operator knows, it is not guaranteed to replay it. It never contains
//! the request body or credentials: it is built only from the attributes and
//! the query string, and `--raw` lines redact credential-looking query
//! parameters (`access_token=REDACTED`). Every argument goes through [`shell_quote`], so a
//! hostile name or query value cannot break out of its word or hide itself
//! on the terminal.
//!
//! Shapes (`TYPE` is `resource` for the core group, `resource.group`
//! otherwise; `namespace` when naming one namespace object):
//!
//! | request | line |
//! | --- | --- |
//! | get, list, watch | `kubectl get TYPE [NAME] [-n NS\|-A] [-l SEL] [--field-selector SEL] [--subresource status\|scale] [--watch]` |
//! | create | `kubectl create TYPE [-n NS]` |
//! | serviceaccounts/token create | `kubectl create token NAME -n NS` |
//! | update | `kubectl replace TYPE NAME [-n NS] [--subresource status]` |
//! | patch, apply-patch+yaml | `kubectl apply --server-side TYPE NAME [-n NS] [--field-manager M] [--force-conflicts]` |
//! | other patch | `kubectl patch TYPE NAME [-n NS] [--subresource S] [--type merge\|json\|strategic]` |
//! | scale subresource update, patch | `kubectl scale TYPE NAME [-n NS]` |
//! | delete | `kubectl delete TYPE NAME [-n NS]` |
//! | deletecollection | `kubectl delete TYPE --all [-n NS\|-A]`, or with `-l`/`--field-selector` instead of `--all` |
//! | pods/exec | `kubectl exec [-n NS] POD [-c C] [-i] [-t] [-- CMD...]` |
//! | pods/attach | `kubectl attach [-n NS] POD [-c C] [-i] [-t]` |
//! | pods/log | `kubectl logs [-n NS] POD [-c C] [-f] [-p] [--tail N] [--since Ns] [--timestamps]` |
//! | pods/portforward | `kubectl port-forward [-n NS] pod/POD [PORT...]` |
//! | proxy, non-resource, other subresources | `kubectl get\|create\|replace\|delete --raw PATH[?QUERY]` |
//!
//! Mutating lines get `--dry-run=server` when the query asks for a server
//! dry run. `apply` is shown as `TYPE NAME` rather than `-f FILE` because the
//! manifest is the body, which is never shown. `-A` is added to collection
//! requests without a namespace unless the resource is a well-known
//! cluster-scoped one; for an unknown cluster-scoped custom resource the line
//! carries a harmless `-A`.

use std::fmt::Write as _;

use crate::{Query, RequestInfo, RequestParts, StreamKind};

/// Returns a kubectl command line equivalent to the request, shell-quoted.
/// `info` must be the result of [`crate::parse`] on `parts`.
pub fn kubectl_command(info: &RequestInfo, parts: &RequestParts) -> String {
    let query = Query::parse(parts.query);
    let line = if info.is_resource_request {
        resource_command(info, parts, &query)
    } else {
        raw(parts)
    };
    let mut out = String::from("kubectl");
    for word in &line.words {
        out.push(' ');
        out.push_str(&shell_quote(word));
    }
    if let Some(comment) = line.comment {
        out.push_str(" # ");
        out.push_str(&comment);
    }
    out
}

/// Words after `kubectl`, unquoted, and an optional trailing shell comment
/// built only from trusted text.
struct Line {
    words: Vec<String>,
    comment: Option<String>,
}

impl Line {
    fn new<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            words: words.into_iter().map(Into::into).collect(),
            comment: None,
        }
    }

    fn push(&mut self, word: impl Into<String>) {
        self.words.push(word.into());
    }

    fn flag(&mut self, flag: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.push(flag);
            self.push(value);
        }
    }

    fn switch(&mut self, flag: &str, on: bool) {
        if on {
            self.push(flag);
        }
    }
}

fn resource_command(info: &RequestInfo, parts: &RequestParts, query: &Query) -> Line {
    match info.stream_kind() {
        Some(StreamKind::Exec) => return exec(info, query),
        Some(StreamKind::Attach) => return attach(info, query),
        Some(StreamKind::Log) => return logs(info, query),
        Some(StreamKind::PortForward) => return port_forward(info, query),
        Some(StreamKind::Proxy) => return raw(parts),
        None => {}
    }

    let sub = info.subresource.as_str();
    let mut line = match info.verb.as_str() {
        "get" | "list" | "watch" if matches!(sub, "" | "status" | "scale") => {
            let mut line = Line::new(["get"]);
            target(&mut line, info);
            namespace(&mut line, info);
            selectors(&mut line, info, query);
            line.flag("--subresource", nonempty(sub));
            line.switch("--watch", info.verb == "watch");
            return line;
        }
        "create" if sub.is_empty() => {
            let mut line = Line::new(["create"]);
            target(&mut line, info);
            namespace(&mut line, info);
            line
        }
        "create" if sub == "token" && info.resource == "serviceaccounts" => {
            let mut line = Line::new(["create", "token", info.name.as_str()]);
            namespace(&mut line, info);
            line
        }
        "update" | "patch" if sub == "scale" => {
            let mut line = Line::new(["scale"]);
            target(&mut line, info);
            namespace(&mut line, info);
            line
        }
        "update" if matches!(sub, "" | "status") => {
            let mut line = Line::new(["replace"]);
            target(&mut line, info);
            namespace(&mut line, info);
            line.flag("--subresource", nonempty(sub));
            line
        }
        "patch" if is_apply(parts.content_type) => {
            let mut line = Line::new(["apply", "--server-side"]);
            target(&mut line, info);
            namespace(&mut line, info);
            line.flag("--subresource", nonempty(sub));
            line.flag("--field-manager", query.get("fieldManager"));
            line.switch("--force-conflicts", query.bool_param("force") == Some(true));
            line
        }
        // kubectl has no raw patch, so every patch is shown as one, with
        // whatever subresource it targets.
        "patch" => {
            let mut line = Line::new(["patch"]);
            target(&mut line, info);
            namespace(&mut line, info);
            line.flag("--subresource", nonempty(sub));
            line.flag("--type", patch_type(parts.content_type));
            line
        }
        "delete" if sub.is_empty() => {
            let mut line = Line::new(["delete"]);
            target(&mut line, info);
            namespace(&mut line, info);
            line
        }
        "deletecollection" => {
            let mut line = Line::new(["delete"]);
            target(&mut line, info);
            let selected = query.label_selector().is_some() || query.field_selector().is_some();
            line.switch("--all", !selected);
            namespace(&mut line, info);
            selectors(&mut line, info, query);
            line
        }
        _ => return raw(parts),
    };
    line.switch("--dry-run=server", query.dry_run());
    line
}

fn exec(info: &RequestInfo, query: &Query) -> Line {
    let mut line = Line::new(["exec"]);
    pod(&mut line, info, query);
    let command = query.command();
    if !command.is_empty() {
        line.push("--");
        line.words.extend(command.into_iter().map(str::to_owned));
    }
    line
}

fn attach(info: &RequestInfo, query: &Query) -> Line {
    let mut line = Line::new(["attach"]);
    pod(&mut line, info, query);
    line
}

/// `-n NS POD -c C -i -t`, shared by exec and attach.
fn pod(line: &mut Line, info: &RequestInfo, query: &Query) {
    line.flag("-n", nonempty(&info.namespace));
    line.push(info.name.as_str());
    line.flag("-c", query.container());
    line.switch("-i", query.stdin());
    line.switch("-t", query.tty());
}

fn logs(info: &RequestInfo, query: &Query) -> Line {
    let mut line = Line::new(["logs"]);
    line.flag("-n", nonempty(&info.namespace));
    line.push(info.name.as_str());
    line.flag("-c", query.container());
    line.switch("-f", query.follow());
    line.switch("-p", query.bool_param("previous") == Some(true));
    line.flag("--tail", query.get("tailLines"));
    line.flag(
        "--since",
        query
            .get("sinceSeconds")
            .map(|s| format!("{s}s"))
            .as_deref(),
    );
    line.switch("--timestamps", query.bool_param("timestamps") == Some(true));
    line.flag("--limit-bytes", query.get("limitBytes"));
    line
}

fn port_forward(info: &RequestInfo, query: &Query) -> Line {
    let mut line = Line::new(["port-forward"]);
    line.flag("-n", nonempty(&info.namespace));
    line.push(format!("pod/{}", info.name));
    // Raw values, not `Query::ports`: an invalid port is still worth showing.
    line.words.extend(query.get_all("ports").map(str::to_owned));
    line
}

/// `--raw`, for what kubectl has no verb for: the raw path and query as
/// sent, so the human sees exactly what reached the server.
fn raw(parts: &RequestParts) -> Line {
    let mut path = parts.path.to_owned();
    if let Some(q) = parts.query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(&redact_query(q));
    }
    match parts.method {
        "GET" | "HEAD" => Line::new(["get", "--raw", path.as_str()]),
        "POST" => Line::new(["create", "--raw", path.as_str(), "-f", "-"]),
        "PUT" => Line::new(["replace", "--raw", path.as_str(), "-f", "-"]),
        "DELETE" => Line::new(["delete", "--raw", path.as_str()]),
        method => {
            let mut line = Line::new(["get", "--raw", path.as_str()]);
            // The method is client-supplied; only a plain token goes into
            // the comment.
            let method = if !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()) {
                method
            } else {
                "this"
            };
            let mut comment = String::new();
            let _ = write!(comment, "{method} request: kubectl has no equivalent");
            line.comment = Some(comment);
            line
        }
    }
}

/// The raw query with the values of credential-looking parameters replaced.
/// Kubernetes clients never send credentials in the query, but a proxied
/// backend's URL (`.../proxy/login?access_token=...`) may carry one, and this
/// line ends up in audit logs and approval prompts.
fn redact_query(raw: &str) -> String {
    raw.split('&')
        .map(|pair| {
            let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = crate::query_params(key)
                .into_iter()
                .next()
                .map(|(k, _)| k.to_ascii_lowercase())
                .unwrap_or_default();
            let secret = [
                "token",
                "password",
                "passwd",
                "secret",
                "authorization",
                "api_key",
                "apikey",
            ]
            .iter()
            .any(|word| decoded.contains(word));
            if secret && pair.contains('=') {
                format!("{key}=REDACTED")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `TYPE [NAME]`.
fn target(line: &mut Line, info: &RequestInfo) {
    let core = info.api_group.is_empty();
    if core && info.resource == "namespaces" && !info.name.is_empty() {
        // The idiom operators type, and the object is obvious from the name.
        line.push("namespace");
    } else if core {
        line.push(info.resource.as_str());
    } else {
        line.push(format!("{}.{}", info.resource, info.api_group));
    }
    if !info.name.is_empty() && !is_collection(info) {
        line.push(info.name.as_str());
    }
}

/// `-n NS`, or `-A` for a collection across namespaces.
fn namespace(line: &mut Line, info: &RequestInfo) {
    if info.api_group.is_empty() && info.resource == "namespaces" {
        // The namespace is the object's name, already shown.
        return;
    }
    if !info.namespace.is_empty() {
        line.flag("-n", Some(&info.namespace));
    } else if is_collection(info) && !is_cluster_scoped(&info.api_group, &info.resource) {
        line.push("-A");
    }
}

fn selectors(line: &mut Line, info: &RequestInfo, query: &Query) {
    if !is_collection(info) {
        return;
    }
    line.flag("-l", query.label_selector());
    line.flag("--field-selector", query.field_selector());
}

/// A request over a collection. A list's name may come from its field
/// selector; that name is shown as the selector, not as a positional name.
fn is_collection(info: &RequestInfo) -> bool {
    match info.verb.as_str() {
        "list" | "deletecollection" => true,
        "watch" => info.parts.len() < 2,
        _ => false,
    }
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn media_type(content_type: Option<&str>) -> &str {
    content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("")
}

fn is_apply(content_type: Option<&str>) -> bool {
    media_type(content_type).eq_ignore_ascii_case("application/apply-patch+yaml")
}

fn patch_type(content_type: Option<&str>) -> Option<&'static str> {
    let media = media_type(content_type).to_ascii_lowercase();
    match media.as_str() {
        "application/merge-patch+json" => Some("merge"),
        "application/json-patch+json" => Some("json"),
        "application/strategic-merge-patch+json" => Some("strategic"),
        _ => None,
    }
}

/// Well-known cluster-scoped resources (from kube-apiserver discovery), so
/// that listing them does not get a meaningless `-A`.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "componentstatuses"),
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
    (
        "admissionregistration.k8s.io",
        "mutatingadmissionpolicybindings",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("certificates.k8s.io", "clustertrustbundles"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    (
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    ),
    ("internal.apiserver.k8s.io", "storageversions"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ipaddresses"),
    ("networking.k8s.io", "servicecidrs"),
    ("node.k8s.io", "runtimeclasses"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("resource.k8s.io", "deviceclasses"),
    ("resource.k8s.io", "resourceslices"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
    ("storage.k8s.io", "volumeattributesclasses"),
];

fn is_cluster_scoped(group: &str, resource: &str) -> bool {
    CLUSTER_SCOPED.contains(&(group, resource))
}

/// Quotes one word for a POSIX shell (and bash/zsh), only when needed.
///
/// Plain words stay bare. Words with shell syntax are single-quoted. Words
/// with control characters, or invisible Unicode that can reorder or hide
/// text on a terminal (bidi overrides, zero-width characters), use bash's
/// `$'...'` with escapes, so what the human reads is what would run.
pub fn shell_quote(word: &str) -> String {
    let plain = |(i, c): (usize, char)| {
        c.is_ascii_alphanumeric() || "_-./:@%+,".contains(c) || (c == '=' && i > 0)
    };
    if !word.is_empty() && word.chars().enumerate().all(plain) {
        return word.to_owned();
    }
    if !word.chars().any(is_hidden) {
        return format!("'{}'", word.replace('\'', r"'\''"));
    }
    let mut out = String::from("$'");
    for c in word.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_hidden(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Control characters and the invisible format characters used in
/// "trojan source" tricks.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
        )
}
