//! Behaviour tables: upstream's `requestinfo_test.go`, ported case for case,
//! then Airlock's own cases for non-resource URLs, subresources, streaming
//! classification, rejected paths and kubectl lines.

use crate::{kubectl_command, parse, Error, RequestInfo, RequestParts, StreamKind};

fn parts<'a>(method: &'a str, url: &'a str, content_type: Option<&'a str>) -> RequestParts<'a> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    RequestParts {
        method,
        path,
        query,
        content_type,
    }
}

fn info(method: &str, url: &str) -> RequestInfo {
    match parse(&parts(method, url, None)) {
        Ok(info) => info,
        Err(e) => panic!("{method} {url}: unexpected error: {e}"),
    }
}

/// method, url, verb, api prefix, api group, api version, namespace,
/// resource, subresource, name, parts.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

fn check_rows(rows: &[Row]) {
    for &(method, url, verb, prefix, group, version, ns, resource, sub, name, want_parts) in rows {
        let got = info(method, url);
        let want_parts: Vec<String> = want_parts.iter().map(|s| s.to_string()).collect();
        let ctx = format!("{method} {url}");
        assert!(got.is_resource_request, "{ctx}: not a resource request");
        assert_eq!(got.verb, verb, "{ctx}: verb");
        assert_eq!(got.api_prefix, prefix, "{ctx}: api prefix");
        assert_eq!(got.api_group, group, "{ctx}: api group");
        assert_eq!(got.api_version, version, "{ctx}: api version");
        assert_eq!(got.namespace, ns, "{ctx}: namespace");
        assert_eq!(got.resource, resource, "{ctx}: resource");
        assert_eq!(got.subresource, sub, "{ctx}: subresource");
        assert_eq!(got.name, name, "{ctx}: name");
        assert_eq!(got.parts, want_parts, "{ctx}: parts");
    }
}

/// `TestGetAPIRequestInfo` success cases. Upstream's table says "api" as the
/// prefix of `/apis/...` rows but never checks it; the real prefix is used here.
#[rustfmt::skip]
const UPSTREAM_RESOURCE_ROWS: &[Row] = &[
    // resource paths
    ("GET", "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("GET", "/api/v1/namespaces/other", "get", "api", "", "v1", "other", "namespaces", "", "other", &["namespaces", "other"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("HEAD", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    // special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo", "subpath", "not", "a", "subresource"]),
    ("GET", "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=true", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=false", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    // subresource identification
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "api", "", "v1", "other", "pods", "status", "foo", &["pods", "foo", "status"]),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "api", "", "v1", "other", "pods", "proxy", "foo", &["pods", "foo", "proxy", "subpath"]),
    ("PUT", "/api/v1/namespaces/other/finalize", "update", "api", "", "v1", "other", "namespaces", "finalize", "other", &["namespaces", "other", "finalize"]),
    ("PUT", "/api/v1/namespaces/other/status", "update", "api", "", "v1", "other", "namespaces", "status", "other", &["namespaces", "other", "status"]),
    // verb identification
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("POST", "/api/v1/namespaces/other/pods", "create", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    // deletecollection verb identification
    ("DELETE", "/api/v1/nodes", "deletecollection", "api", "", "v1", "", "nodes", "", "", &["nodes"]),
    ("DELETE", "/api/v1/namespaces", "deletecollection", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
    // api group identification
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
    // api version identification
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "apis", "extensions", "v1beta3", "other", "pods", "", "", &["pods"]),
];

/// Airlock's own resource rows: the shapes agents actually send.
#[rustfmt::skip]
const AIRLOCK_RESOURCE_ROWS: &[Row] = &[
    // Upstream once cleared the namespace here (server-side apply creating a
    // namespace) and reverted it; current upstream keeps it.
    ("PATCH", "/api/v1/namespaces/new-namespace", "patch", "api", "", "v1", "new-namespace", "namespaces", "", "new-namespace", &["namespaces", "new-namespace"]),
    ("DELETE", "/api/v1/namespaces/prod", "delete", "api", "", "v1", "prod", "namespaces", "", "prod", &["namespaces", "prod"]),
    ("POST", "/api/v1/namespaces", "create", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("GET", "/api/v1/namespaces/prod/status", "get", "api", "", "v1", "prod", "namespaces", "status", "prod", &["namespaces", "prod", "status"]),
    // A trailing slash is ignored, as upstream's splitPath trims it.
    ("GET", "/api/v1/namespaces/", "list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("GET", "/api/v1/namespaces/shop/pods/", "list", "api", "", "v1", "shop", "pods", "", "", &["pods"]),
    // Streaming subresources, whatever the method.
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec?command=sh", "create", "api", "", "v1", "shop", "pods", "exec", "web-0", &["pods", "web-0", "exec"]),
    ("GET", "/api/v1/namespaces/shop/pods/web-0/exec?command=sh", "get", "api", "", "v1", "shop", "pods", "exec", "web-0", &["pods", "web-0", "exec"]),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/attach", "create", "api", "", "v1", "shop", "pods", "attach", "web-0", &["pods", "web-0", "attach"]),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/portforward", "create", "api", "", "v1", "shop", "pods", "portforward", "web-0", &["pods", "web-0", "portforward"]),
    ("GET", "/api/v1/namespaces/shop/pods/web-0/log?follow=true", "get", "api", "", "v1", "shop", "pods", "log", "web-0", &["pods", "web-0", "log"]),
    ("GET", "/api/v1/nodes/n1/proxy/metrics/cadvisor", "get", "api", "", "v1", "", "nodes", "proxy", "n1", &["nodes", "n1", "proxy", "metrics", "cadvisor"]),
    ("GET", "/api/v1/namespaces/shop/services/https:web:443/proxy/healthz", "get", "api", "", "v1", "shop", "services", "proxy", "https:web:443", &["services", "https:web:443", "proxy", "healthz"]),
    // Group resources and their subresources.
    ("GET", "/apis/apps/v1/namespaces/shop/deployments/web", "get", "apis", "apps", "v1", "shop", "deployments", "", "web", &["deployments", "web"]),
    ("PUT", "/apis/apps/v1/namespaces/shop/deployments/web/scale", "update", "apis", "apps", "v1", "shop", "deployments", "scale", "web", &["deployments", "web", "scale"]),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/status", "patch", "apis", "apps", "v1", "shop", "deployments", "status", "web", &["deployments", "web", "status"]),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Anode", "get", "apis", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "system:node", &["clusterroles", "system:node"]),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "create", "apis", "authorization.k8s.io", "v1", "", "selfsubjectaccessreviews", "", "", &["selfsubjectaccessreviews"]),
    // Deprecated watch prefix on a single object.
    ("GET", "/api/v1/watch/namespaces/shop/pods/web-0", "watch", "api", "", "v1", "shop", "pods", "", "web-0", &["pods", "web-0"]),
    // The proxy prefix takes no subresource: everything after the name is path.
    ("GET", "/api/v1/proxy/nodes/n1/stats", "proxy", "api", "", "v1", "", "nodes", "", "n1", &["nodes", "n1", "stats"]),
    // A watch with a name in the path stays a get; watch=true only turns lists into watches.
    ("GET", "/api/v1/namespaces/shop/pods/web-0?watch=true", "get", "api", "", "v1", "shop", "pods", "", "web-0", &["pods", "web-0"]),
    // Delete with a name from a field selector is still a deletecollection:
    // upstream only reads the selector for gets.
    ("DELETE", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-0", "deletecollection", "api", "", "v1", "shop", "pods", "", "", &["pods"]),
    // Methods with no Kubernetes verb.
    ("OPTIONS", "/api/v1/namespaces/shop/pods", "", "api", "", "v1", "shop", "pods", "", "", &["pods"]),
    ("get", "/api/v1/namespaces/shop/pods", "", "api", "", "v1", "shop", "pods", "", "", &["pods"]),
    // Segments are decoded once.
    ("GET", "/api/v1/namespaces/shop/configmaps/a%2525b", "get", "api", "", "v1", "shop", "configmaps", "", "a%25b", &["configmaps", "a%25b"]),
    // Odd but upstream-faithful: `watch` after a namespace is a resource.
    ("GET", "/api/v1/namespaces/shop/watch", "list", "api", "", "v1", "shop", "watch", "", "", &["watch"]),
];

#[test]
fn upstream_resource_rows() {
    check_rows(UPSTREAM_RESOURCE_ROWS);
}

#[test]
fn airlock_resource_rows() {
    check_rows(AIRLOCK_RESOURCE_ROWS);
}

/// Upstream's error cases (which are not errors, just non-resource),
/// `TestGetNonAPIRequestInfo`, and Airlock's discovery and health URLs:
/// (method, url, is resource request, verb).
#[rustfmt::skip]
const RESOURCE_OR_NOT: &[(&str, &str, bool, &str)] = &[
    // TestGetAPIRequestInfo errorCases
    ("GET", "/", false, "get"),
    ("GET", "/api/version/", false, "get"),
    ("GET", "/apis/group/version/", false, "get"),
    ("GET", "/badprefix/version/resource", false, "get"),
    ("GET", "/apis/version/resource", false, "get"),
    // TestGetNonAPIRequestInfo
    ("GET", "/api/version/resource", true, "list"),
    ("GET", "/apis/group/version/resource/name/subresource", true, "get"),
    ("GET", "/api/version/resource/name/subresource", true, "get"),
    ("GET", "/apis/batch/v1/job", true, "list"),
    ("GET", "/apis/batch/v1/job/foo", true, "get"),
    ("GET", "/apis/batch/v1/job/foo/scale", true, "get"),
    ("GET", "/not-api/version/resource", false, "get"),
    ("GET", "/apis/extensions/v1beta1", false, "get"),
    ("GET", "/apis/extensions/v1beta1/", false, "get"),
    ("GET", "/api/version", false, "get"),
    ("GET", "/api", false, "get"),
    ("GET", "", false, "get"),
    // Non-resource URLs: the verb is the lowercase method.
    ("GET", "/version", false, "get"),
    ("GET", "/healthz", false, "get"),
    ("GET", "/readyz/etcd", false, "get"),
    ("GET", "/openapi/v2", false, "get"),
    ("GET", "/openapi/v3/apis/apps/v1", false, "get"),
    ("GET", "/api/v1", false, "get"),
    ("GET", "/apis", false, "get"),
    ("GET", "/apis/apps", false, "get"),
    ("GET", "/apis/apps/v1", false, "get"),
    ("HEAD", "/healthz", false, "head"),
    ("POST", "/logs/x", false, "post"),
    ("PUT", "/metrics", false, "put"),
    ("DELETE", "/metrics", false, "delete"),
    ("PATCH", "/metrics", false, "patch"),
    ("OPTIONS", "/", false, "options"),
];

#[test]
fn resource_or_non_resource() {
    for &(method, url, resource, verb) in RESOURCE_OR_NOT {
        let got = info(method, url);
        assert_eq!(got.is_resource_request, resource, "{method} {url}");
        assert_eq!(got.verb, verb, "{method} {url}");
        if !resource {
            assert_eq!(got.api_prefix, "", "{method} {url}");
            assert!(got.parts.is_empty(), "{method} {url}");
        }
    }
}

#[test]
fn non_resource_path_is_decoded_path() {
    assert_eq!(
        info("GET", "/openapi/v3/apis/apps/v1").path,
        "/openapi/v3/apis/apps/v1"
    );
    assert_eq!(info("GET", "").path, "/");
    assert_eq!(info("GET", "/logs/a%20b").path, "/logs/a b");
}

/// `TestSelectorParsing` (AuthorizeWithSelectors enabled), then Airlock's
/// cases for the decode failures the port mirrors:
/// (method, url, name, verb, field selector, label selector).
#[rustfmt::skip]
const SELECTOR_ROWS: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("GET", "/apis/group/version/resource", "", "list", "", ""),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list", "metadata.name=name1", ""),
    ("GET", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch", "metadata.name=name1", ""),
    ("GET", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "list", "foo=bar", "baz=qux"),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list", "metadata.name=name1,foo", ""),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch", "metadata.name=name1,foo", ""),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list", "metadata.name=name1,foo", ""),
    ("DELETE", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "deletecollection", "foo=bar", "baz=qux"),
    ("GET", "/apis/group/version/resource?fieldSelector=metadata.name=foo&fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz", "foo", "list", "metadata.name=foo", "foo=bar"),
    ("GET", "/apis/group/version/resource/name?fieldSelector=foo=bar&labelSelector=foo=bar", "name", "get", "", ""),
    ("GET", "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "", "watch", "", ""),
    ("GET", "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "name", "watch", "", ""),
    // Airlock: percent-encoded selectors, as kubectl sends them.
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-0&watch=true", "web-0", "watch", "metadata.name=web-0", ""),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3D%3Dweb-0", "web-0", "list", "metadata.name==web-0", ""),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%21%3Dweb-0", "", "list", "metadata.name!=web-0", ""),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=spec.nodeName%3Dn1%2Cmetadata.name%3Dweb-0", "web-0", "list", "spec.nodeName=n1,metadata.name=web-0", ""),
    // A name that is not a valid path segment is not taken.
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3D..", "", "list", "metadata.name=..", ""),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Da%2Fb", "", "list", "metadata.name=a/b", ""),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Da%25b", "", "list", "metadata.name=a%b", ""),
    // Any ListOptions decode failure drops the name but keeps watch.
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-0&limit=abc", "", "list", "metadata.name=web-0", ""),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-0&timeoutSeconds=&watch=1", "", "watch", "metadata.name=web-0", ""),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-0&limit=500", "web-0", "list", "metadata.name=web-0", ""),
];

#[test]
fn selector_rows() {
    for &(method, url, name, verb, field, label) in SELECTOR_ROWS {
        let got = info(method, url);
        assert_eq!(got.name, name, "{method} {url}: name");
        assert_eq!(got.verb, verb, "{method} {url}: verb");
        assert_eq!(got.field_selector, field, "{method} {url}: field selector");
        assert_eq!(got.label_selector, label, "{method} {url}: label selector");
    }
}

#[test]
fn parse_errors() {
    let cases: &[(&str, &str, Error)] = &[
        // Upstream: "unable to determine kind and namespace from url".
        (
            "GET",
            "/api/v1/watch",
            Error::MissingResource {
                path: "/api/v1/watch".into(),
            },
        ),
        (
            "GET",
            "/api/v1/proxy/",
            Error::MissingResource {
                path: "/api/v1/proxy/".into(),
            },
        ),
        (
            "GET",
            "/apis/apps/v1/watch",
            Error::MissingResource {
                path: "/apis/apps/v1/watch".into(),
            },
        ),
        // parse runs check_path first, on resource and non-resource paths alike.
        (
            "GET",
            "/api/v1/namespaces/shop/pods/../secrets",
            Error::DotSegment { offset: 29 },
        ),
        (
            "GET",
            "/api/v1/namespaces/shop%2Fkube-system/secrets",
            Error::EncodedSlash { offset: 23 },
        ),
        (
            "GET",
            "/api/v1/namespaces/shop//secrets",
            Error::EmptySegment { offset: 24 },
        ),
        (
            "GET",
            "/healthz/%2e%2e/metrics",
            Error::EncodedDot { offset: 9 },
        ),
        (
            "GET",
            "/api/v1/pods/%G0",
            Error::MalformedEscape { offset: 13 },
        ),
        ("GET", "/api/v1/pods/%FE", Error::InvalidUtf8 { offset: 13 }),
        (
            "GET",
            "/api/v1/pods/\u{2603}",
            Error::NonAscii { offset: 13 },
        ),
        (
            "GET",
            "/api/v1/pods/a%0d%0a",
            Error::ControlCharacter { offset: 14 },
        ),
        ("GET", "api/v1/pods", Error::NotAbsolute),
    ];
    for (method, url, want) in cases {
        assert_eq!(
            parse(&parts(method, url, None)).as_ref(),
            Err(want),
            "{method} {url}"
        );
    }
    assert_eq!(
        Error::MissingResource {
            path: "/api/v1/watch".into()
        }
        .to_string(),
        "unable to determine kind and namespace from url /api/v1/watch"
    );
}

#[test]
fn stream_kinds() {
    let cases: &[(&str, &str, Option<StreamKind>, bool)] = &[
        (
            "POST",
            "/api/v1/namespaces/shop/pods/web-0/exec",
            Some(StreamKind::Exec),
            true,
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/web-0/exec",
            Some(StreamKind::Exec),
            true,
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/pods/web-0/attach",
            Some(StreamKind::Attach),
            true,
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/web-0/attach",
            Some(StreamKind::Attach),
            true,
        ),
        (
            "POST",
            "/api/v1/namespaces/shop/pods/web-0/portforward",
            Some(StreamKind::PortForward),
            true,
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/web-0/portforward",
            Some(StreamKind::PortForward),
            true,
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/web-0/log",
            Some(StreamKind::Log),
            false,
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/web-0/proxy/metrics",
            Some(StreamKind::Proxy),
            false,
        ),
        (
            "PUT",
            "/api/v1/namespaces/shop/services/web/proxy",
            Some(StreamKind::Proxy),
            false,
        ),
        (
            "GET",
            "/api/v1/nodes/n1/proxy/stats/summary",
            Some(StreamKind::Proxy),
            false,
        ),
        (
            "GET",
            "/api/v1/proxy/namespaces/shop/pods/web-0/x",
            Some(StreamKind::Proxy),
            false,
        ),
        ("GET", "/api/v1/namespaces/shop/pods/web-0", None, false),
        (
            "GET",
            "/api/v1/namespaces/shop/pods/web-0/status",
            None,
            false,
        ),
        (
            "GET",
            "/api/v1/namespaces/shop/services/web/exec",
            None,
            false,
        ),
        // Only the core group: a custom resource's `exec` means nothing.
        (
            "POST",
            "/apis/example.com/v1/namespaces/shop/pods/web-0/exec",
            None,
            false,
        ),
        // Non-resource paths never stream.
        ("GET", "/pods/exec", None, false),
    ];
    for &(method, url, kind, upgrade) in cases {
        let got = info(method, url);
        assert_eq!(got.stream_kind(), kind, "{method} {url}");
        assert_eq!(got.is_streaming_upgrade(), upgrade, "{method} {url}");
    }
}

/// (method, url, content type, kubectl line)
#[rustfmt::skip]
const KUBECTL_ROWS: &[(&str, &str, Option<&str>, &str)] = &[
    ("DELETE", "/api/v1/namespaces/prod", None, "kubectl delete namespace prod"),
    ("GET", "/api/v1/namespaces/prod", None, "kubectl get namespace prod"),
    ("GET", "/api/v1/namespaces", None, "kubectl get namespaces"),
    ("POST", "/api/v1/namespaces", None, "kubectl create namespaces"),
    ("PUT", "/api/v1/namespaces/prod/status", None, "kubectl replace namespace prod --subresource status"),
    ("PUT", "/api/v1/namespaces/prod/finalize", None, "kubectl replace --raw /api/v1/namespaces/prod/finalize -f -"),
    // exec
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=env&container=app&stdin=true&stdout=true", None,
        "kubectl exec -n shop web-0 -c app -i -- sh -c env"),
    ("GET", "/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=env&container=app&stdin=true&stdout=true", None,
        "kubectl exec -n shop web-0 -c app -i -- sh -c env"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=echo+hi&stdin=true&tty=true&stdout=true", None,
        "kubectl exec -n shop web-0 -i -t -- sh -c 'echo hi'"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=echo%20%27hi%27%3B%20rm%20-rf%20%24HOME", None,
        r"kubectl exec -n shop web-0 -- sh -c 'echo '\''hi'\''; rm -rf $HOME'"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec?command=printf&command=a%0Ab", None,
        r"kubectl exec -n shop web-0 -- printf $'a\nb'"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec?command=cat&command=%E2%80%AEtxt.exe", None,
        r"kubectl exec -n shop web-0 -- cat $'\u202etxt.exe'"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec?command=echo&command=&command=%3Dx&command=%7E", None,
        "kubectl exec -n shop web-0 -- echo '' '=x' '~'"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/exec", None, "kubectl exec -n shop web-0"),
    // get, list, watch
    ("GET", "/api/v1/namespaces/shop/pods", None, "kubectl get pods -n shop"),
    ("GET", "/api/v1/pods", None, "kubectl get pods -A"),
    ("GET", "/api/v1/nodes", None, "kubectl get nodes"),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", None, "kubectl get clusterroles.rbac.authorization.k8s.io"),
    ("GET", "/api/v1/namespaces/shop/pods?watch=true", None, "kubectl get pods -n shop --watch"),
    ("GET", "/api/v1/watch/namespaces/shop/pods", None, "kubectl get pods -n shop --watch"),
    ("GET", "/api/v1/watch/namespaces/shop/pods/web-0", None, "kubectl get pods web-0 -n shop --watch"),
    ("GET", "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb", None, "kubectl get pods -n shop -l app=web"),
    ("GET", "/api/v1/namespaces/shop/pods?labelSelector=app+in+%28web%2Capi%29&watch=1", None,
        "kubectl get pods -n shop -l 'app in (web,api)' --watch"),
    ("GET", "/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-0&watch=true", None,
        "kubectl get pods -n shop --field-selector metadata.name=web-0 --watch"),
    ("GET", "/apis/apps/v1/namespaces/shop/deployments/web", None, "kubectl get deployments.apps web -n shop"),
    ("HEAD", "/api/v1/namespaces/shop/pods/web-0", None, "kubectl get pods web-0 -n shop"),
    ("GET", "/api/v1/namespaces/shop/pods/web-0/status", None, "kubectl get pods web-0 -n shop --subresource status"),
    ("GET", "/apis/apps/v1/namespaces/shop/deployments/web/scale", None, "kubectl get deployments.apps web -n shop --subresource scale"),
    // logs, port-forward, attach
    ("GET", "/api/v1/namespaces/shop/pods/web-0/log?follow=true&container=app", None, "kubectl logs -n shop web-0 -c app -f"),
    ("GET", "/api/v1/namespaces/shop/pods/web-0/log?previous=true&tailLines=100&sinceSeconds=60&timestamps=true", None,
        "kubectl logs -n shop web-0 -p --tail 100 --since 60s --timestamps"),
    ("GET", "/api/v1/namespaces/shop/pods/web-0/portforward?ports=8080", None, "kubectl port-forward -n shop pod/web-0 8080"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/portforward", None, "kubectl port-forward -n shop pod/web-0"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/attach?container=app&stdin=true&tty=true&stdout=true", None,
        "kubectl attach -n shop web-0 -c app -i -t"),
    // patch and apply
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=kubectl&force=true", Some("application/apply-patch+yaml"),
        "kubectl apply --server-side deployments.apps web -n shop --field-manager kubectl --force-conflicts"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", Some("application/apply-patch+yaml; charset=utf-8"),
        "kubectl apply --server-side deployments.apps web -n shop"),
    ("PATCH", "/api/v1/namespaces/new-ns", Some("application/apply-patch+yaml"), "kubectl apply --server-side namespace new-ns"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", Some("application/merge-patch+json"),
        "kubectl patch deployments.apps web -n shop --type merge"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", Some("application/json-patch+json"),
        "kubectl patch deployments.apps web -n shop --type json"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", Some("application/strategic-merge-patch+json"),
        "kubectl patch deployments.apps web -n shop --type strategic"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", None, "kubectl patch deployments.apps web -n shop"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/status", Some("application/merge-patch+json"),
        "kubectl patch deployments.apps web -n shop --subresource status --type merge"),
    ("PATCH", "/api/v1/nodes/n1?dryRun=All", Some("application/strategic-merge-patch+json"),
        "kubectl patch nodes n1 --type strategic --dry-run=server"),
    // replace, create, scale
    ("PUT", "/apis/apps/v1/namespaces/shop/deployments/web", None, "kubectl replace deployments.apps web -n shop"),
    ("PUT", "/api/v1/namespaces/shop/pods/web-0/status", None, "kubectl replace pods web-0 -n shop --subresource status"),
    ("POST", "/api/v1/namespaces/shop/configmaps", None, "kubectl create configmaps -n shop"),
    ("POST", "/api/v1/namespaces/shop/configmaps?dryRun=All", None, "kubectl create configmaps -n shop --dry-run=server"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", None, "kubectl create selfsubjectaccessreviews.authorization.k8s.io"),
    ("POST", "/api/v1/namespaces/shop/serviceaccounts/builder/token", None, "kubectl create token builder -n shop"),
    ("POST", "/api/v1/namespaces/shop/pods/web-0/eviction", None, "kubectl create --raw /api/v1/namespaces/shop/pods/web-0/eviction -f -"),
    ("PUT", "/apis/apps/v1/namespaces/shop/deployments/web/scale", None, "kubectl scale deployments.apps web -n shop"),
    ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/scale?dryRun=All", Some("application/merge-patch+json"),
        "kubectl scale deployments.apps web -n shop --dry-run=server"),
    // delete
    ("DELETE", "/api/v1/namespaces/shop/pods/web-0", None, "kubectl delete pods web-0 -n shop"),
    ("DELETE", "/api/v1/namespaces/shop/pods/web-0?dryRun=All", None, "kubectl delete pods web-0 -n shop --dry-run=server"),
    ("DELETE", "/api/v1/namespaces/shop/pods", None, "kubectl delete pods --all -n shop"),
    ("DELETE", "/api/v1/pods", None, "kubectl delete pods --all -A"),
    ("DELETE", "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb", None, "kubectl delete pods -n shop -l app=web"),
    ("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles", None, "kubectl delete clusterroles.rbac.authorization.k8s.io --all"),
    // proxy and raw
    ("GET", "/api/v1/namespaces/shop/pods/web-0/proxy/metrics", None, "kubectl get --raw /api/v1/namespaces/shop/pods/web-0/proxy/metrics"),
    ("GET", "/api/v1/namespaces/shop/services/web:80/proxy/?a=1&b=2", None, "kubectl get --raw '/api/v1/namespaces/shop/services/web:80/proxy/?a=1&b=2'"),
    ("POST", "/api/v1/nodes/n1/proxy/run", None, "kubectl create --raw /api/v1/nodes/n1/proxy/run -f -"),
    ("GET", "/api/v1/proxy/namespaces/shop/pods/web-0/x", None, "kubectl get --raw /api/v1/proxy/namespaces/shop/pods/web-0/x"),
    ("GET", "/version", None, "kubectl get --raw /version"),
    ("GET", "/healthz?verbose", None, "kubectl get --raw '/healthz?verbose'"),
    ("GET", "/openapi/v2", None, "kubectl get --raw /openapi/v2"),
    ("GET", "/apis/apps", None, "kubectl get --raw /apis/apps"),
    ("DELETE", "/apis/example.com/v1/widgets/w/custom", None, "kubectl delete --raw /apis/example.com/v1/widgets/w/custom"),
    ("PUT", "/metrics", None, "kubectl replace --raw /metrics -f -"),
    ("PATCH", "/metrics", None, "kubectl get --raw /metrics # PATCH request: kubectl has no equivalent"),
    ("OPTIONS", "/api/v1/namespaces/shop/pods", None, "kubectl get --raw /api/v1/namespaces/shop/pods # OPTIONS request: kubectl has no equivalent"),
    // A hostile query stays inside its quotes and visible.
    ("GET", "/version?x=%0A%1B[2J", None, "kubectl get --raw '/version?x=%0A%1B[2J'"),
    ("GET", "/api/v1/namespaces/shop/pods?labelSelector=a%0Arm%20-rf", None, r"kubectl get pods -n shop -l $'a\nrm -rf'"),
];

#[test]
fn kubectl_lines() {
    for &(method, url, ct, want) in KUBECTL_ROWS {
        let req = parts(method, url, ct);
        let info = match parse(&req) {
            Ok(info) => info,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        assert_eq!(kubectl_command(&info, &req), want, "{method} {url}");
    }
}

#[test]
fn kubectl_line_never_contains_credentials_or_body() {
    // RequestParts carries no headers (so no Authorization) and no body; the
    // only way a credential can reach the line is a proxied URL's query.
    let cases: &[(&str, &str)] = &[
        ("/api/v1/namespaces/shop/services/web:80/proxy/login?access_token=s3cr3t&x=1",
            "kubectl get --raw '/api/v1/namespaces/shop/services/web:80/proxy/login?access_token=REDACTED&x=1'"),
        ("/api/v1/namespaces/shop/pods/web-0/proxy/?Password=s3cr3t&id_token=s3cr3t&client%5Fsecret=s3cr3t",
            "kubectl get --raw '/api/v1/namespaces/shop/pods/web-0/proxy/?Password=REDACTED&id_token=REDACTED&client%5Fsecret=REDACTED'"),
        ("/healthz?token", "kubectl get --raw '/healthz?token'"),
    ];
    for (url, want) in cases {
        let req = parts("GET", url, Some("application/json"));
        let line = kubectl_command(&info("GET", url), &req);
        assert_eq!(&line, want);
        assert!(!line.contains("s3cr3t"), "{line}");
    }
}

#[test]
fn request_info_serializes_in_kubernetes_casing() {
    let got = info("GET", "/apis/apps/v1/namespaces/shop/deployments/web/scale");
    let json = match serde_json::to_value(&got) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    let want = serde_json::json!({
        "isResourceRequest": true,
        "path": "/apis/apps/v1/namespaces/shop/deployments/web/scale",
        "verb": "get",
        "apiPrefix": "apis",
        "apiGroup": "apps",
        "apiVersion": "v1",
        "namespace": "shop",
        "resource": "deployments",
        "subresource": "scale",
        "name": "web",
        "parts": ["deployments", "web", "scale"],
        "fieldSelector": "",
        "labelSelector": "",
    });
    assert_eq!(json, want);
    assert_eq!(serde_json::from_value::<RequestInfo>(json).ok(), Some(got));
    assert_eq!(
        serde_json::to_value(StreamKind::PortForward).ok(),
        Some(serde_json::json!("portforward"))
    );
}
