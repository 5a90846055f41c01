//! Minimal OpenAPI v3 documents, generated from discovery.
//!
//! kubectl (1.27+) reads `/openapi/v3` to learn whether the server supports the
//! `fieldValidation` (and `dryRun`) query parameters for a kind: it looks for the PATCH
//! operation tagged with the kind's `x-kubernetes-group-version-kind` and the parameter in it.
//! With that answered, `--validate=strict` is delegated to the server. The component schemas
//! (`openapi_schemas.rs`) are what `kubectl explain` reads; they carry no patch extensions, so
//! client-side apply computes strategic merge patches from kubectl's compiled-in types (its
//! documented fallback). `/openapi/v2` is an empty but valid document (see `v2_protobuf`).

use serde_json::{json, Map, Value};

use crate::discovery::Registry;

fn params() -> Value {
    let p = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    json!([
        p("dryRun"),
        p("fieldManager"),
        p("fieldValidation"),
        p("pretty")
    ])
}

/// The `/openapi/v3` index: one entry per served group/version.
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    let mut seen = Vec::new();
    for r in reg.all_resources() {
        let gv = if r.group.is_empty() {
            "api/v1".to_string()
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        if !seen.contains(&gv) {
            seen.push(gv.clone());
            paths.insert(
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash=SIM2-{}", gv.len())}),
            );
        }
    }
    json!({"paths": paths})
}

/// One group/version document (`gv` is `api/v1` or `apis/apps/v1`), if served.
pub fn group_version(reg: &Registry, gv: &str) -> Option<Value> {
    let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return None,
    };
    let resources: Vec<_> = reg
        .all_resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut kinds: Vec<&str> = Vec::new();
    for r in resources {
        if !kinds.contains(&r.kind.as_str()) {
            kinds.push(&r.kind);
        }
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |action: &str| {
            json!({
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params(),
                "responses": {"200": {"description": "OK"}},
            })
        };
        let base = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let mut c = Map::new();
        if r.has_verb("list") {
            c.insert("get".into(), op("list"));
        }
        if r.has_verb("create") {
            c.insert("post".into(), op("post"));
        }
        if r.has_verb("deletecollection") {
            c.insert("delete".into(), op("deletecollection"));
        }
        paths.insert(coll.clone(), Value::Object(c));
        if r.has_verb("get") {
            let mut o = Map::new();
            o.insert("get".into(), op("get"));
            if r.has_verb("update") {
                o.insert("put".into(), op("put"));
            }
            if r.has_verb("patch") {
                o.insert("patch".into(), op("patch"));
            }
            if r.has_verb("delete") {
                o.insert("delete".into(), op("delete"));
            }
            paths.insert(format!("{coll}/{{name}}"), Value::Object(o));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": paths,
        "components": {"schemas": crate::openapi_schemas::components(&group, &version, &kinds)},
    }))
}

/// `/openapi/v2` as the `openapi_v2.Document` protobuf kubectl asks for: only `swagger` (1)
/// and `info` (2: title 1, version 2). kubectl 1.27-1.29 need the document to parse before
/// `apply` goes on; with no definitions it falls back to compiled-in patch metadata and to
/// the v3 document for field-validation support.
pub fn v2_protobuf() -> Vec<u8> {
    fn ld(num: u8, data: &[u8], out: &mut Vec<u8>) {
        out.push(num << 3 | 2);
        out.push(data.len() as u8);
        out.extend_from_slice(data);
    }
    let mut info = Vec::new();
    ld(1, b"Kubernetes", &mut info);
    ld(2, b"v1.31.0", &mut info);
    let mut doc = Vec::new();
    ld(1, b"2.0", &mut doc);
    ld(2, &info, &mut doc);
    doc
}

/// `/openapi/v2` as JSON.
pub fn v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": {}, "definitions": {}})
}
