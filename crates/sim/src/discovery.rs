//! API discovery, derived from the embedded upstream documents (see `discovery/README.md`).
//!
//! Invariant: every document we serve (`/api`, `/apis`, `/apis/GROUP`, `/apis/GROUP/VERSION`
//! and the aggregated lists) is computed from the same filtered set of `APIResourceList`s, so
//! kubectl's discovery cache never names a group/version that then answers 404. Only stable
//! versions (`v1`, `v2`) have documents, so only those are served.

use serde_json::{json, Map, Value};

use crate::error::SimError;

/// The per-group-version `APIResourceList` documents we have, as (file name, contents).
const GROUP_VERSION_DOCS: &[(&str, &str)] = &[
    ("api__v1.json", include_str!("../discovery/api__v1.json")),
    (
        "apis__admissionregistration.k8s.io__v1.json",
        include_str!("../discovery/apis__admissionregistration.k8s.io__v1.json"),
    ),
    (
        "apis__apiextensions.k8s.io__v1.json",
        include_str!("../discovery/apis__apiextensions.k8s.io__v1.json"),
    ),
    (
        "apis__apiregistration.k8s.io__v1.json",
        include_str!("../discovery/apis__apiregistration.k8s.io__v1.json"),
    ),
    (
        "apis__apps__v1.json",
        include_str!("../discovery/apis__apps__v1.json"),
    ),
    (
        "apis__authentication.k8s.io__v1.json",
        include_str!("../discovery/apis__authentication.k8s.io__v1.json"),
    ),
    (
        "apis__authorization.k8s.io__v1.json",
        include_str!("../discovery/apis__authorization.k8s.io__v1.json"),
    ),
    (
        "apis__autoscaling__v1.json",
        include_str!("../discovery/apis__autoscaling__v1.json"),
    ),
    (
        "apis__autoscaling__v2.json",
        include_str!("../discovery/apis__autoscaling__v2.json"),
    ),
    (
        "apis__batch__v1.json",
        include_str!("../discovery/apis__batch__v1.json"),
    ),
    (
        "apis__certificates.k8s.io__v1.json",
        include_str!("../discovery/apis__certificates.k8s.io__v1.json"),
    ),
    (
        "apis__coordination.k8s.io__v1.json",
        include_str!("../discovery/apis__coordination.k8s.io__v1.json"),
    ),
    (
        "apis__discovery.k8s.io__v1.json",
        include_str!("../discovery/apis__discovery.k8s.io__v1.json"),
    ),
    (
        "apis__events.k8s.io__v1.json",
        include_str!("../discovery/apis__events.k8s.io__v1.json"),
    ),
    (
        "apis__flowcontrol.apiserver.k8s.io__v1.json",
        include_str!("../discovery/apis__flowcontrol.apiserver.k8s.io__v1.json"),
    ),
    (
        "apis__networking.k8s.io__v1.json",
        include_str!("../discovery/apis__networking.k8s.io__v1.json"),
    ),
    (
        "apis__node.k8s.io__v1.json",
        include_str!("../discovery/apis__node.k8s.io__v1.json"),
    ),
    (
        "apis__policy__v1.json",
        include_str!("../discovery/apis__policy__v1.json"),
    ),
    (
        "apis__rbac.authorization.k8s.io__v1.json",
        include_str!("../discovery/apis__rbac.authorization.k8s.io__v1.json"),
    ),
    (
        "apis__scheduling.k8s.io__v1.json",
        include_str!("../discovery/apis__scheduling.k8s.io__v1.json"),
    ),
    (
        "apis__storage.k8s.io__v1.json",
        include_str!("../discovery/apis__storage.k8s.io__v1.json"),
    ),
];

/// Upstream `/apis`, used only for group order and preferred versions.
const APIS_DOC: &str = include_str!("../discovery/apis.json");

/// One subresource of a resource (`pods/log`, `deployments/scale`).
#[derive(Debug, Clone)]
pub struct SubresourceInfo {
    /// Name after the slash.
    pub name: String,
    /// Kind returned; group/version set when it differs from the parent (`autoscaling/v1 Scale`).
    pub kind: String,
    /// Group of the response kind, if different.
    pub group: Option<String>,
    /// Version of the response kind, if different.
    pub version: Option<String>,
    /// Verbs.
    pub verbs: Vec<String>,
}

/// One top-level resource in one group/version.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name (`pods`).
    pub plural: String,
    /// Kind (`Pod`).
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Verbs.
    pub verbs: Vec<String>,
    /// Short names (`po`).
    pub short_names: Vec<String>,
    /// Singular name.
    pub singular: String,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Subresources.
    pub subresources: Vec<SubresourceInfo>,
}

// === impl ResourceInfo ===

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether the verb is listed.
    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Whether objects of this resource are stored (as opposed to create-only reviews).
    pub fn is_stored(&self) -> bool {
        self.has_verb("get") || self.has_verb("list")
    }

    /// The named subresource, if any.
    pub fn subresource(&self, name: &str) -> Option<&SubresourceInfo> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// One served group/version and its upstream `APIResourceList`.
#[derive(Debug, Clone)]
struct GroupVersion {
    group: String,
    version: String,
    doc: Value,
}

/// A served group: its versions in preference order.
#[derive(Debug, Clone)]
struct Group {
    name: String,
    versions: Vec<String>,
    preferred: String,
}

/// Everything the server knows about its API surface.
#[derive(Debug, Clone)]
pub struct Registry {
    gvs: Vec<GroupVersion>,
    groups: Vec<Group>,
    resources: Vec<ResourceInfo>,
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a version string is GA (`v1`, `v2`): the only ones we have documents for.
fn is_stable(version: &str) -> bool {
    version
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

// === impl Registry ===

impl Registry {
    /// Parses the embedded documents.
    pub fn load() -> Result<Registry, SimError> {
        let mut gvs = Vec::new();
        for (name, text) in GROUP_VERSION_DOCS {
            let doc: Value = serde_json::from_str(text)
                .map_err(|source| SimError::Discovery { name, source })?;
            let gv = doc["groupVersion"].as_str().unwrap_or_default().to_string();
            let (group, version) = match gv.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), gv.clone()),
            };
            if is_stable(&version) {
                gvs.push(GroupVersion {
                    group,
                    version,
                    doc,
                });
            }
        }
        // One non-stable version is synthesised: authentication.k8s.io/v1beta1, which a 1.31
        // server still serves with only SelfSubjectReview. kubectl 1.27 needs it for
        // `kubectl auth whoami` (v1 arrived in 1.28). It is the v1 entry, renamed.
        if let Some(v1) = gvs
            .iter()
            .find(|g| g.group == "authentication.k8s.io" && g.version == "v1")
        {
            let mut doc = v1.doc.clone();
            doc["groupVersion"] = Value::String("authentication.k8s.io/v1beta1".into());
            if let Some(rs) = doc["resources"].as_array_mut() {
                rs.retain(|r| r["name"] == "selfsubjectreviews");
            }
            gvs.push(GroupVersion {
                group: "authentication.k8s.io".into(),
                version: "v1beta1".into(),
                doc,
            });
        }
        // metrics.k8s.io/v1beta1, as a cluster with metrics-server serves it (an aggregated
        // API, so it is not among the kube-apiserver documents): `kubectl top` needs it.
        let doc: Value = serde_json::from_str(crate::metrics::DISCOVERY).map_err(|source| {
            SimError::Discovery {
                name: "metrics.k8s.io v1beta1",
                source,
            }
        })?;
        gvs.push(GroupVersion {
            group: crate::metrics::GROUP.into(),
            version: "v1beta1".into(),
            doc,
        });
        let apis: Value = serde_json::from_str(APIS_DOC).map_err(|source| SimError::Discovery {
            name: "apis.json",
            source,
        })?;
        let mut groups = Vec::new();
        let have = |g: &str, v: &str| gvs.iter().any(|x| x.group == g && x.version == v);
        for g in apis["groups"].as_array().into_iter().flatten() {
            let name = g["name"].as_str().unwrap_or_default().to_string();
            let versions: Vec<String> = g["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["version"].as_str())
                .filter(|v| have(&name, v))
                .map(str::to_string)
                .collect();
            if versions.is_empty() {
                continue;
            }
            let upstream_pref = g["preferredVersion"]["version"]
                .as_str()
                .unwrap_or_default();
            let preferred = if versions.iter().any(|v| v == upstream_pref) {
                upstream_pref.to_string()
            } else {
                versions[0].clone()
            };
            // Preferred first, like upstream orders versions.
            let mut ordered = vec![preferred.clone()];
            ordered.extend(versions.into_iter().filter(|v| *v != preferred));
            groups.push(Group {
                name,
                versions: ordered,
                preferred,
            });
        }
        // Any group/version document whose group apis.json did not name is still served.
        for gv in &gvs {
            if !gv.group.is_empty() && !groups.iter().any(|g| g.name == gv.group) {
                groups.push(Group {
                    name: gv.group.clone(),
                    versions: vec![gv.version.clone()],
                    preferred: gv.version.clone(),
                });
            }
        }
        let mut resources = Vec::new();
        for gv in &gvs {
            let list = gv.doc["resources"].as_array().cloned().unwrap_or_default();
            for r in &list {
                let name = r["name"].as_str().unwrap_or_default();
                if name.contains('/') {
                    continue;
                }
                let prefix = format!("{name}/");
                let subresources = list
                    .iter()
                    .filter_map(|s| {
                        let sname = s["name"].as_str()?.strip_prefix(&prefix)?;
                        Some(SubresourceInfo {
                            name: sname.to_string(),
                            kind: s["kind"].as_str().unwrap_or_default().to_string(),
                            group: s["group"].as_str().map(str::to_string),
                            version: s["version"].as_str().map(str::to_string),
                            verbs: strs(&s["verbs"]),
                        })
                    })
                    .collect();
                resources.push(ResourceInfo {
                    group: gv.group.clone(),
                    version: gv.version.clone(),
                    plural: name.to_string(),
                    kind: r["kind"].as_str().unwrap_or_default().to_string(),
                    namespaced: r["namespaced"].as_bool().unwrap_or(false),
                    verbs: strs(&r["verbs"]),
                    short_names: strs(&r["shortNames"]),
                    singular: r["singularName"].as_str().unwrap_or_default().to_string(),
                    categories: strs(&r["categories"]),
                    subresources,
                });
            }
        }
        Ok(Registry {
            gvs,
            groups,
            resources,
        })
    }

    /// The resource served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Preferred version of a group ("v1" for core).
    pub fn preferred_version(&self, group: &str) -> Option<&str> {
        if group.is_empty() {
            return Some("v1");
        }
        self.groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| g.preferred.as_str())
    }

    /// All resources of every served version.
    pub fn all_resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// `GET /api`.
    pub fn core_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
        })
    }

    fn group_json(g: &Group) -> Value {
        json!({
            "name": g.name,
            "versions": g.versions.iter().map(|v| json!({"groupVersion": format!("{}/{}", g.name, v), "version": v})).collect::<Vec<_>>(),
            "preferredVersion": {"groupVersion": format!("{}/{}", g.name, g.preferred), "version": g.preferred},
        })
    }

    /// `GET /apis` (legacy).
    pub fn group_list(&self) -> Value {
        json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": self.groups.iter().map(Self::group_json).collect::<Vec<_>>(),
        })
    }

    /// `GET /apis/GROUP`.
    pub fn group(&self, name: &str) -> Option<Value> {
        let g = self.groups.iter().find(|g| g.name == name)?;
        let mut v = Self::group_json(g);
        let mut out = Map::new();
        out.insert("kind".into(), json!("APIGroup"));
        out.insert("apiVersion".into(), json!("v1"));
        if let Some(m) = v.as_object_mut() {
            out.append(m);
        }
        Some(Value::Object(out))
    }

    /// `GET /api/v1` or `GET /apis/GROUP/VERSION`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        self.gvs
            .iter()
            .find(|g| g.group == group && g.version == version)
            .map(|g| g.doc.clone())
    }

    /// The aggregated discovery document for `/api` (`core`) or `/apis`, in the requested
    /// `apidiscovery.k8s.io` version (`v2` or `v2beta1`, same shape).
    pub fn aggregated(&self, core: bool, api_version: &str) -> Value {
        let mut items = Vec::new();
        if core {
            items.push(json!({
                "metadata": {"creationTimestamp": null},
                "versions": [self.aggregated_version("", "v1")],
            }));
        } else {
            for g in &self.groups {
                items.push(json!({
                    "metadata": {"name": g.name, "creationTimestamp": null},
                    "versions": g.versions.iter().map(|v| self.aggregated_version(&g.name, v)).collect::<Vec<_>>(),
                }));
            }
        }
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
            "metadata": {},
            "items": items,
        })
    }

    fn aggregated_version(&self, group: &str, version: &str) -> Value {
        let resources: Vec<Value> = self
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .map(|r| {
                let mut o = Map::new();
                o.insert("resource".into(), json!(r.plural));
                o.insert(
                    "responseKind".into(),
                    json!({"group": "", "version": "", "kind": r.kind}),
                );
                o.insert(
                    "scope".into(),
                    json!(if r.namespaced {
                        "Namespaced"
                    } else {
                        "Cluster"
                    }),
                );
                o.insert("singularResource".into(), json!(r.singular));
                o.insert("verbs".into(), json!(r.verbs));
                if !r.short_names.is_empty() {
                    o.insert("shortNames".into(), json!(r.short_names));
                }
                if !r.categories.is_empty() {
                    o.insert("categories".into(), json!(r.categories));
                }
                if !r.subresources.is_empty() {
                    let subs: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|s| {
                            json!({
                                "subresource": s.name,
                                "responseKind": {
                                    "group": s.group.clone().unwrap_or_default(),
                                    "version": s.version.clone().unwrap_or_default(),
                                    "kind": s.kind,
                                },
                                "verbs": s.verbs,
                            })
                        })
                        .collect();
                    o.insert("subresources".into(), json!(subs));
                }
                Value::Object(o)
            })
            .collect();
        json!({"version": version, "resources": resources, "freshness": "Current"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_in_every_document_is_served() {
        let reg = Registry::load().unwrap();
        for g in reg.group_list()["groups"].as_array().unwrap() {
            let name = g["name"].as_str().unwrap();
            assert!(reg.group(name).is_some(), "{name}");
            for v in g["versions"].as_array().unwrap() {
                let ver = v["version"].as_str().unwrap();
                assert!(reg.resource_list(name, ver).is_some(), "{name}/{ver}");
            }
        }
        let agg = reg.aggregated(false, "v2");
        for item in agg["items"].as_array().unwrap() {
            let name = item["metadata"]["name"].as_str().unwrap();
            for v in item["versions"].as_array().unwrap() {
                assert!(reg
                    .resource_list(name, v["version"].as_str().unwrap())
                    .is_some());
            }
        }
    }

    #[test]
    fn lookups() {
        let reg = Registry::load().unwrap();
        let cases = [
            ("", "v1", "pods", "Pod", true),
            ("apps", "v1", "deployments", "Deployment", true),
            ("", "v1", "nodes", "Node", false),
        ];
        for (g, v, p, kind, ns) in cases {
            let r = reg.lookup(g, v, p).unwrap();
            assert_eq!(r.kind, kind);
            assert_eq!(r.namespaced, ns);
        }
        assert!(reg.lookup("apps", "v1beta1", "deployments").is_none());
        assert_eq!(
            reg.lookup("apps", "v1", "deployments")
                .unwrap()
                .subresource("scale")
                .unwrap()
                .kind,
            "Scale"
        );
        assert_eq!(reg.preferred_version("autoscaling"), Some("v2"));
    }
}
