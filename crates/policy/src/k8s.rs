//! Facts about Kubernetes objects that policy conditions need: where the pod
//! specs are in a Pod, a workload, a CronJob or an ephemeral-containers
//! update, and whether they are privileged or reach into the host.
//!
//! Written once over [`Node`], so the same code answers for `serde_json`
//! (Rust callers, tests) and for CEL values (the functions registered into
//! every condition's context, see `cel.rs`). Missing or mistyped fields are
//! simply absent here: a helper never fails, where the same test written in
//! plain CEL needs a `has()` guard on every step.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// A JSON-like tree.
pub(crate) trait Node: Sized {
    /// The member `key` of an object.
    fn get(&self, key: &str) -> Option<&Self>;
    /// The value, if it is a boolean.
    fn as_bool(&self) -> Option<bool>;
    /// The value, if it is a string.
    fn as_str(&self) -> Option<&str>;
    /// The elements, if it is a list; empty otherwise.
    fn items(&self) -> &[Self];
    /// Whether it is null.
    fn is_null(&self) -> bool;
    /// The same value as CEL sees it.
    fn to_cel(&self) -> ::cel::Value;
}

impl Node for Json {
    fn get(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }
    fn as_bool(&self) -> Option<bool> {
        Json::as_bool(self)
    }
    fn as_str(&self) -> Option<&str> {
        Json::as_str(self)
    }
    fn items(&self) -> &[Self] {
        self.as_array().map(Vec::as_slice).unwrap_or(&[])
    }
    fn is_null(&self) -> bool {
        Json::is_null(self)
    }
    fn to_cel(&self) -> ::cel::Value {
        crate::cel::json_to_cel(self)
    }
}

/// Keys that only a pod spec (or a patch of one) has at its top level.
const POD_SPEC_KEYS: &[&str] = &[
    "containers",
    "initContainers",
    "ephemeralContainers",
    "volumes",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "hostUsers",
    "securityContext",
    "nodeName",
    "serviceAccountName",
];

fn path<'a, N: Node>(node: &'a N, keys: &[&str]) -> Option<&'a N> {
    keys.iter().try_fold(node, |n, k| n.get(k))
}

fn is_true<N: Node>(node: Option<&N>) -> bool {
    node.and_then(Node::as_bool) == Some(true)
}

/// The pod specs in `object`, which may be a full object or a patch of one:
///
/// - a Pod (`spec`), including the Pod sent to `pods/ephemeralcontainers`
///   and the strategic-merge patch `kubectl debug` sends there
///   (`{"spec":{"ephemeralContainers":[...]}}`);
/// - a workload template: Deployment, ReplicaSet, StatefulSet, DaemonSet,
///   Job, ReplicationController (`spec.template.spec`);
/// - a CronJob (`spec.jobTemplate.spec.template.spec`);
/// - a PodTemplate (`template.spec`);
/// - the pre-1.22 `EphemeralContainers` kind, whose `ephemeralContainers`
///   list sits at the top level (the object itself is returned).
pub(crate) fn pod_specs<N: Node>(object: &N) -> Vec<&N> {
    let mut out = Vec::new();
    if let Some(spec) = object.get("spec") {
        if POD_SPEC_KEYS.iter().any(|k| spec.get(k).is_some()) {
            out.push(spec);
        }
        if let Some(t) = path(spec, &["template", "spec"]) {
            out.push(t);
        }
        if let Some(t) = path(spec, &["jobTemplate", "spec", "template", "spec"]) {
            out.push(t);
        }
    }
    if let Some(t) = path(object, &["template", "spec"]) {
        out.push(t);
    }
    if object.get("ephemeralContainers").is_some() {
        out.push(object);
    }
    out
}

/// Every container, init container and ephemeral container of every pod
/// spec in `object`.
pub(crate) fn containers<N: Node>(object: &N) -> Vec<&N> {
    let mut out = Vec::new();
    for spec in pod_specs(object) {
        for key in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(list) = spec.get(key) {
                out.extend(list.items());
            }
        }
    }
    out
}

/// Whether any container sets `securityContext.privileged: true`.
pub(crate) fn any_privileged<N: Node>(object: &N) -> bool {
    containers(object)
        .into_iter()
        .any(|c| is_true(path(c, &["securityContext", "privileged"])))
}

/// Whether any pod spec shares a host namespace (`hostNetwork`, `hostPID`,
/// `hostIPC`).
pub(crate) fn uses_host_namespaces<N: Node>(object: &N) -> bool {
    pod_specs(object).into_iter().any(|s| {
        ["hostNetwork", "hostPID", "hostIPC"]
            .iter()
            .any(|k| is_true(s.get(k)))
    })
}

/// Whether any pod spec mounts a `hostPath` volume.
pub(crate) fn uses_host_path<N: Node>(object: &N) -> bool {
    pod_specs(object).into_iter().any(|s| {
        s.get("volumes").is_some_and(|v| {
            v.items()
                .iter()
                .any(|vol| vol.get("hostPath").is_some_and(|h| !h.is_null()))
        })
    })
}

/// The capabilities any container adds (`securityContext.capabilities.add`).
pub(crate) fn added_capabilities<N: Node>(object: &N) -> Vec<&str> {
    let mut out: Vec<&str> = containers(object)
        .into_iter()
        .filter_map(|c| path(c, &["securityContext", "capabilities", "add"]))
        .flat_map(|add| add.items().iter().filter_map(Node::as_str))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The verbs a Role or ClusterRole grants (`rules[].verbs`).
pub(crate) fn rbac_verbs<N: Node>(object: &N) -> Vec<&str> {
    // An aggregated ClusterRole gathers the rules of every ClusterRole its selectors match
    // (an empty selector: all of them, cluster-admin's `*` included), whatever its own say.
    if object.get("aggregationRule").is_some() {
        return vec!["*"];
    }
    let mut out: Vec<&str> = object
        .get("rules")
        .map(Node::items)
        .unwrap_or(&[])
        .iter()
        .filter_map(|r| r.get("verbs"))
        .flat_map(|v| v.items().iter().filter_map(Node::as_str))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The value at a dotted path (`spec.template.spec.hostNetwork`), if every
/// step exists.
pub(crate) fn lookup<'a, N: Node>(object: &'a N, dotted: &str) -> Option<&'a N> {
    if dotted.is_empty() {
        return Some(object);
    }
    dotted.split('.').try_fold(object, |n, k| n.get(k))
}

/// Whether a JSON patch has a `move` or `copy` operation.
pub(crate) fn patch_moves_values(body: &Json) -> bool {
    body.as_array().is_some_and(|ops| {
        ops.iter()
            .any(|op| matches!(op.get("op").and_then(Json::as_str), Some("move" | "copy")))
    })
}

/// Presents an RFC 6902 JSON patch as the partial object its `add` and
/// `replace` operations write, so conditions read every patch type the same
/// way: `[{"op":"add","path":"/spec/template/spec/hostNetwork","value":true}]`
/// becomes `{"spec":{"template":{"spec":{"hostNetwork":true}}}}`. List
/// indexes (and `-`) become list elements, in index order. `remove` and
/// `test` write nothing and are left out; so are `move` and `copy`
/// (`parse_object` refuses patches with `move`/`copy`, whose values the
/// patch does not show: see [`patch_moves_values`]). Anything that is not a
/// JSON patch is returned as it is.
pub(crate) fn normalize_body(body: &Json) -> Option<Json> {
    let ops = body.as_array()?;
    if ops.is_empty()
        || !ops
            .iter()
            .all(|op| op.get("op").is_some_and(Json::is_string) && op.get("path").is_some())
    {
        return None;
    }
    let mut root = Tree::Obj(BTreeMap::new());
    let mut appended = 0usize;
    for op in ops {
        let kind = op.get("op").and_then(Json::as_str).unwrap_or_default();
        if kind != "add" && kind != "replace" {
            continue;
        }
        let Some(pointer) = op.get("path").and_then(Json::as_str) else {
            continue;
        };
        let value = op.get("value").cloned().unwrap_or(Json::Null);
        let segments: Vec<String> = if pointer.is_empty() {
            Vec::new()
        } else {
            pointer
                .trim_start_matches('/')
                .split('/')
                // Bounded: the tree is built and dropped recursively, and a
                // real object is nowhere near this deep.
                .take(MAX_POINTER_DEPTH)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect()
        };
        root.insert(&segments, value, &mut appended);
    }
    Some(root.into_json())
}

/// The deepest JSON pointer followed; deeper paths are cut here (the value
/// still lands in the object, higher up). serde_json bounds the depth of
/// parsed values the same way (128).
const MAX_POINTER_DEPTH: usize = 64;

/// The partial object a JSON patch builds up. Lists are keyed by index so
/// several operations on `/containers/0/...` land in one element.
enum Tree {
    Leaf(Json),
    Obj(BTreeMap<String, Tree>),
    List(BTreeMap<(u64, usize), Tree>),
}

impl Tree {
    fn from_json(value: Json) -> Self {
        match value {
            Json::Object(map) => Tree::Obj(
                map.into_iter()
                    .map(|(k, v)| (k, Tree::from_json(v)))
                    .collect(),
            ),
            Json::Array(items) => Tree::List(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| ((i as u64, 0), Tree::from_json(v)))
                    .collect(),
            ),
            other => Tree::Leaf(other),
        }
    }

    fn insert(&mut self, segments: &[String], value: Json, appended: &mut usize) {
        let Some((first, rest)) = segments.split_first() else {
            *self = Tree::from_json(value);
            return;
        };
        let index = if first == "-" {
            *appended += 1;
            Some((u64::MAX, *appended))
        } else {
            first.parse::<u64>().ok().map(|i| (i, 0))
        };
        // A step into something that is not a container yet makes it one:
        // the patch says what kind it must be.
        match (&mut *self, index) {
            (Tree::List(_), Some(_)) | (Tree::Obj(_), None) => {}
            (_, Some(_)) => *self = Tree::List(BTreeMap::new()),
            (_, None) => *self = Tree::Obj(BTreeMap::new()),
        }
        let child = match (self, index) {
            // `add` at a list index *inserts* and shifts what was there: an element this
            // patch wrote at the same index moves on, it is not overwritten. Keep both
            // (conditions see a superset of what the patch writes), or a later
            // `add /containers/0` would hide a privileged container written before it.
            (Tree::List(items), Some((i, _))) if rest.is_empty() && items.contains_key(&(i, 0)) => {
                *appended += 1;
                items
                    .entry((i, *appended))
                    .or_insert(Tree::Leaf(Json::Null))
            }
            (Tree::List(items), Some(i)) => items.entry(i).or_insert(Tree::Leaf(Json::Null)),
            (Tree::Obj(map), None) => map.entry(first.clone()).or_insert(Tree::Leaf(Json::Null)),
            // Unreachable after the conversion above; dropping the operation
            // is the safe way not to panic.
            _ => return,
        };
        child.insert(rest, value, appended);
    }

    fn into_json(self) -> Json {
        match self {
            Tree::Leaf(v) => v,
            Tree::Obj(map) => {
                Json::Object(map.into_iter().map(|(k, v)| (k, v.into_json())).collect())
            }
            Tree::List(items) => Json::Array(items.into_values().map(Tree::into_json).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_specs_table() {
        let cases: Vec<(&str, Json, usize)> = vec![
            (
                "pod",
                json!({"kind":"Pod","spec":{"containers":[{"name":"a"}]}}),
                1,
            ),
            (
                "deployment",
                json!({"spec":{"replicas":1,"template":{"spec":{"containers":[]}}}}),
                1,
            ),
            (
                "cronjob",
                json!({"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":[]}}}}}}),
                1,
            ),
            (
                "podtemplate",
                json!({"kind":"PodTemplate","template":{"spec":{"containers":[]}}}),
                1,
            ),
            (
                "debug patch",
                json!({"spec":{"ephemeralContainers":[{"name":"d"}]}}),
                1,
            ),
            (
                "legacy ephemeral",
                json!({"kind":"EphemeralContainers","ephemeralContainers":[{"name":"d"}]}),
                1,
            ),
            ("scale", json!({"spec":{"replicas":0}}), 0),
            ("configmap", json!({"data":{"hostNetwork":"true"}}), 0),
            ("null", Json::Null, 0),
        ];
        for (name, object, want) in cases {
            assert_eq!(pod_specs(&object).len(), want, "{name}");
        }
    }

    #[test]
    fn facts() {
        let debug = json!({"spec":{"ephemeralContainers":[{"name":"debugger","image":"busybox",
            "securityContext":{"privileged":true,"capabilities":{"add":["SYS_ADMIN"]}}}]}});
        assert!(any_privileged(&debug));
        assert_eq!(added_capabilities(&debug), vec!["SYS_ADMIN"]);
        let job = json!({"spec":{"template":{"spec":{"containers":[{"name":"a"}],
            "volumes":[{"name":"root","hostPath":{"path":"/"}}]}}}});
        assert!(uses_host_path(&job));
        assert!(!uses_host_namespaces(&job));
        assert!(!any_privileged(&job));
        let not_privileged =
            json!({"spec":{"containers":[{"securityContext":{"privileged":"true"}}]}});
        assert!(
            !any_privileged(&not_privileged),
            "only a real boolean counts, as the API server decodes it"
        );
        let role = json!({"rules":[{"verbs":["get","bind"]},{"verbs":["escalate"]}]});
        assert_eq!(rbac_verbs(&role), vec!["bind", "escalate", "get"]);
        let aggregated = json!({"kind": "ClusterRole", "aggregationRule": {"clusterRoleSelectors": [{}]}, "rules": []});
        assert_eq!(rbac_verbs(&aggregated), vec!["*"]);
        assert_eq!(
            lookup(&job, "spec.template.spec.volumes").map(|v| v.items().len()),
            Some(1)
        );
        assert!(lookup(&job, "spec.nope").is_none());
    }

    #[test]
    fn json_patch_becomes_partial_object() {
        let cases: Vec<(Json, Option<Json>)> = vec![
            (
                json!([{"op":"add","path":"/spec/template/spec/hostNetwork","value":true}]),
                Some(json!({"spec":{"template":{"spec":{"hostNetwork":true}}}})),
            ),
            (
                json!([
                    {"op":"add","path":"/spec/containers/0/securityContext","value":{}},
                    {"op":"replace","path":"/spec/containers/0/securityContext/privileged","value":true},
                    {"op":"add","path":"/spec/volumes/-","value":{"name":"h","hostPath":{"path":"/"}}},
                    {"op":"remove","path":"/metadata/labels"},
                    {"op":"test","path":"/spec","value":1}
                ]),
                Some(
                    json!({"spec":{"containers":[{"securityContext":{"privileged":true}}],
                    "volumes":[{"name":"h","hostPath":{"path":"/"}}]}}),
                ),
            ),
            (
                json!([{"op":"replace","path":"/spec/replicas","value":0}]),
                Some(json!({"spec":{"replicas":0}})),
            ),
            (
                json!([{"op":"add","path":"/metadata/annotations/a~1b","value":"x"}]),
                Some(json!({"metadata":{"annotations":{"a/b":"x"}}})),
            ),
            // `add` at an index inserts: what an earlier op wrote there is shifted, not lost.
            (
                json!([
                    {"op":"add","path":"/spec/containers/0/securityContext","value":{"privileged":true}},
                    {"op":"add","path":"/spec/containers/0","value":{"name":"pad"}}
                ]),
                Some(json!({"spec":{"containers":[
                    {"securityContext":{"privileged":true}},{"name":"pad"}]}})),
            ),
            (
                json!([
                    {"op":"add","path":"/rules/0/verbs/0","value":"escalate"},
                    {"op":"add","path":"/rules/0/verbs/0","value":"get"}
                ]),
                Some(json!({"rules":[{"verbs":["escalate","get"]}]})),
            ),
            (json!({"spec":{}}), None),
            (json!([1, 2]), None),
        ];
        // A hostile pointer depth cannot overflow the stack.
        let deep = format!("/spec{}", "/a".repeat(200_000));
        let patch = json!([{"op":"add","path":deep,"value":true}]);
        assert!(normalize_body(&patch).is_some());
        for (patch, want) in cases {
            assert_eq!(normalize_body(&patch), want, "{patch}");
        }
    }
}
