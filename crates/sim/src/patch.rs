//! Patch application: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
//! patch for the built-in types, and a simplified server-side apply; plus `managedFields`.
//!
//! Strategic merge patch needs each list's patch strategy. Upstream reads it from Go struct
//! tags; we hard-code the merge keys of the built-in fields agents touch (see `merge_key`).
//! Lists not in that table are replaced wholesale, which is also upstream's behaviour for
//! atomic lists.

use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// Patch flavours, by request Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

// === impl PatchType ===

impl PatchType {
    /// From a Content-Type header value (parameters ignored).
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// The merge key of list `field` whose parent list field (the nearest enclosing list) is
/// `parent`, or `None` when the list is atomic. Primitive merge lists return `Some("")`.
pub fn merge_key(parent: Option<&str>, field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "readinessGates" => Some("conditionType"),
        "ports" => match parent {
            Some("containers" | "initContainers" | "ephemeralContainers") => Some("containerPort"),
            _ => Some("port"),
        },
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "finalizers" => Some(""),
        _ => None,
    }
}

/// Applies a JSON merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Applies a JSON patch (list of operations).
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "the server rejected our request due to an error in our request: {e}"
        ))
    })?;
    let mut out = target.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })?;
    Ok(out)
}

/// Applies a strategic merge patch.
pub fn strategic_merge(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    }
    Ok(smp_value(target, patch, None, None))
}

fn smp_value(
    target: &Value,
    patch: &Value,
    list_parent: Option<&str>,
    field: Option<&str>,
) -> Value {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => Value::Object(smp_map(t, p, list_parent)),
        (Value::Array(t), Value::Array(p)) => match field.and_then(|f| merge_key(list_parent, f)) {
            Some("") => {
                let mut out = t.clone();
                for v in p {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::Array(out)
            }
            Some(k) => Value::Array(smp_list(t, p, k, field)),
            None => Value::Array(strip_directives_list(p)),
        },
        (_, p) => strip_directives(p),
    }
}

fn smp_map(
    t: &Map<String, Value>,
    p: &Map<String, Value>,
    list_parent: Option<&str>,
) -> Map<String, Value> {
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        return match strip_directives(&Value::Object(p.clone())) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
    }
    let mut out = t.clone();
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (out.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        if v.get("$patch").and_then(Value::as_str) == Some("delete") {
            out.remove(k);
            continue;
        }
        let merged = match out.get(k) {
            Some(existing) => smp_value(existing, v, list_parent, Some(k)),
            None => match v {
                // A new list may still carry directives; merge it into nothing.
                Value::Array(_) => smp_value(&Value::Array(vec![]), v, list_parent, Some(k)),
                _ => strip_directives(v),
            },
        };
        out.insert(k.clone(), merged);
    }
    out
}

fn smp_list(t: &[Value], p: &[Value], key: &str, field: Option<&str>) -> Vec<Value> {
    let mut out: Vec<Value> = t.to_vec();
    for item in p {
        let Some(kv) = item.get(key) else {
            continue;
        };
        let pos = out.iter().position(|x| x.get(key) == Some(kv));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                out.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => out[i] = smp_value(&out[i], item, field, None),
            None => out.push(strip_directives(item)),
        }
    }
    out
}

fn strip_directives_list(p: &[Value]) -> Vec<Value> {
    p.iter()
        .filter(|v| v.get("$patch").is_none() || v.as_object().is_some_and(|m| m.len() > 1))
        .map(strip_directives)
        .collect()
}

/// Removes `$patch`-style directives from a value inserted as new.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Server-side apply, simplified: the applied configuration is merged into the live object
/// with strategic-merge semantics (maps merged, keyed lists merged by key, other lists
/// replaced). Fields a manager stops applying are not removed and conflicts between managers
/// are not detected: `force` is accepted and ignored.
pub fn server_side_apply(live: &Value, applied: &Value) -> Value {
    smp_value(live, applied, None, None)
}

/// A `fieldsV1` set describing every field present in `v` (the shape upstream uses:
/// `f:name` for fields, `k:{"name":"x"}` for keyed list items, `.` for the item itself).
pub fn fields_v1(v: &Value) -> Value {
    fields_of(v, At::Root)
}

/// Where `fields_of` is, for skipping identity and server-owned fields.
#[derive(Clone, Copy, PartialEq)]
enum At<'a> {
    Root,
    Metadata,
    /// Inside a map; the nearest enclosing list field, for merge keys.
    Inside(Option<&'a str>),
}

fn fields_of(v: &Value, at: At<'_>) -> Value {
    let Value::Object(m) = v else {
        return json!({});
    };
    let list_parent = match at {
        At::Inside(p) => p,
        _ => None,
    };
    let mut out = Map::new();
    for (k, val) in m {
        let skip = k.starts_with('$')
            || (at == At::Root && matches!(k.as_str(), "apiVersion" | "kind"))
            || (at == At::Metadata
                && matches!(
                    k.as_str(),
                    "name"
                        | "namespace"
                        | "uid"
                        | "resourceVersion"
                        | "creationTimestamp"
                        | "generation"
                        | "managedFields"
                ));
        if skip {
            continue;
        }
        let entry = match val {
            Value::Object(_) if at == At::Root && k == "metadata" => fields_of(val, At::Metadata),
            Value::Object(_) => fields_of(val, At::Inside(list_parent)),
            Value::Array(items) => match merge_key(list_parent, k) {
                Some(key) if !key.is_empty() => {
                    let mut lm = Map::new();
                    for it in items {
                        if let Some(kv) = it.get(key) {
                            let mut item = match fields_of(it, At::Inside(Some(k))) {
                                Value::Object(m) => m,
                                _ => Map::new(),
                            };
                            item.insert(".".into(), json!({}));
                            lm.insert(format!("k:{}", json!({ key: kv })), Value::Object(item));
                        }
                    }
                    Value::Object(lm)
                }
                _ => json!({}),
            },
            _ => json!({}),
        };
        if at == At::Root && k == "metadata" && entry.as_object().is_some_and(Map::is_empty) {
            continue;
        }
        out.insert(format!("f:{k}"), entry);
    }
    Value::Object(out)
}

/// Records (replacing any previous entry of the same manager and operation) a managedFields
/// entry on `obj`.
pub fn record_managed_fields(
    obj: &mut Value,
    manager: &str,
    operation: &str,
    api_version: &str,
    fields: Value,
    subresource: Option<&str>,
) {
    let mut entries: Vec<Value> = obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries.retain(|e| {
        !(e["manager"] == manager
            && e["operation"] == operation
            && e.get("subresource").and_then(Value::as_str) == subresource)
    });
    let mut e = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": crate::store::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if let Some(s) = subresource {
        e["subresource"] = json!(s);
    }
    entries.push(e);
    obj["metadata"]["managedFields"] = Value::Array(entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {
                "containers": [
                    {"name": "app", "image": "nginx:1.26", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "ports": [{"containerPort": 80}]},
                    {"name": "side", "image": "busybox"}
                ],
                "tolerations": [{"key": "x"}]
            }
        })
    }

    #[test]
    fn strategic_merge_table() {
        type Check = Box<dyn Fn(&Value) -> bool>;
        let cases: Vec<(&str, Value, Check)> = vec![
            (
                "change image by name",
                json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}),
                Box::new(|v| {
                    v["spec"]["containers"][0]["image"] == "nginx:1.27"
                        && v["spec"]["containers"][1]["name"] == "side"
                        && v["spec"]["containers"][0]["env"].as_array().unwrap().len() == 2
                }),
            ),
            (
                "add container",
                json!({"spec": {"containers": [{"name": "new", "image": "x"}]}}),
                Box::new(|v| v["spec"]["containers"].as_array().unwrap().len() == 3),
            ),
            (
                "delete container",
                json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}),
                Box::new(|v| v["spec"]["containers"].as_array().unwrap().len() == 1),
            ),
            (
                "env merge by name",
                json!({"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}),
                Box::new(|v| {
                    v["spec"]["containers"][0]["env"]
                        == json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
                }),
            ),
            (
                "null deletes label",
                json!({"metadata": {"labels": {"app": null, "x": "y"}}}),
                Box::new(|v| v["metadata"]["labels"] == json!({"x": "y"})),
            ),
            (
                "atomic list replaced",
                json!({"spec": {"tolerations": [{"key": "y"}]}}),
                Box::new(|v| v["spec"]["tolerations"] == json!([{"key": "y"}])),
            ),
            (
                "primitive merge list",
                json!({"metadata": {"finalizers": ["b"]}}),
                Box::new(|v| v["metadata"]["finalizers"] == json!(["a", "b"])),
            ),
            (
                "delete from primitive list",
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
                Box::new(|v| v["metadata"]["finalizers"] == json!([])),
            ),
            (
                "set element order ignored",
                json!({"spec": {"$setElementOrder/containers": [{"name": "app"}], "containers": [{"name": "app", "image": "z"}]}}),
                Box::new(|v| {
                    v["spec"]["containers"][0]["image"] == "z"
                        && v["spec"].get("$setElementOrder/containers").is_none()
                }),
            ),
            (
                "replace directive",
                json!({"spec": {"$patch": "replace", "containers": []}}),
                Box::new(|v| v["spec"] == json!({"containers": []})),
            ),
            (
                "container ports by containerPort",
                json!({"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443}]}]}}),
                Box::new(|v| {
                    v["spec"]["containers"][0]["ports"]
                        .as_array()
                        .unwrap()
                        .len()
                        == 2
                }),
            ),
        ];
        for (name, patch, check) in cases {
            let out = strategic_merge(&pod(), &patch).unwrap();
            assert!(check(&out), "{name}: {out}");
        }
    }

    #[test]
    fn merge_and_json_patch() {
        let out = merge_patch(&pod(), &json!({"spec": {"containers": [{"name": "only"}]}}));
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
        let out = json_patch(
            &pod(),
            &json!([{"op": "replace", "path": "/metadata/labels/app", "value": "api"}]),
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"]["app"], "api");
        assert_eq!(
            json_patch(&pod(), &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(json_patch(&pod(), &json!({"op": 1})).unwrap_err().code, 400);
    }

    #[test]
    fn patch_types() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            (
                "application/strategic-merge-patch+json",
                Some(PatchType::Strategic),
            ),
            ("application/apply-patch+yaml", Some(PatchType::Apply)),
            ("application/json", None),
        ];
        for (ct, want) in cases {
            assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
        }
    }

    #[test]
    fn fields_v1_shape() {
        let f = fields_v1(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "app", "image": "x"}]}}),
        );
        assert_eq!(
            f,
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:name": {}, "f:image": {}, ".": {}}}}})
        );
    }
}
