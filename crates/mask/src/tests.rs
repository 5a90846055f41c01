//! Behaviour tests written as tables: (context, body kind, input) -> expected output.
//!
//! Expected outputs name markers by the value they hide, and `expand` computes them:
//! `<S:b64>` is the masked form of a Secret `data` value, `<P:text>` of a `stringData` value,
//! `<T:detector:secret>` of a detector hit.

use base64::Engine as _;

use super::*;

const KEY: &[u8] = b"test-fingerprint-key";

fn masker() -> Masker {
    let mut config = MaskConfig::new(KEY.to_vec());
    config.profiles = vec![MaskProfile {
        name: "strict".to_string(),
        rules: vec![
            MaskRule {
                resource: "configmaps".to_string(),
                namespace: Some("team-*".to_string()),
                fields: vec!["data.*".to_string()],
                detectors: vec![],
            },
            MaskRule {
                resource: "widgets".to_string(),
                namespace: None,
                fields: vec!["spec.config".to_string()],
                detectors: vec!["generic-assignment".to_string()],
            },
        ],
    }];
    Masker::new(config).unwrap()
}

fn fp() -> Fingerprinter {
    Fingerprinter::new(KEY).unwrap()
}

fn expand(expected: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    let mut rest = expected;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let token = &rest[start + 1..start + len];
        let replaced = if let Some(v) = token.strip_prefix("S:") {
            // The fingerprint covers the base64 text; the length is the decoded one.
            let real = b64.decode(v).unwrap();
            let mut m = Vec::new();
            fp().value_marker(v.as_bytes(), real.len(), &mut m);
            Some(b64.encode(m))
        } else if let Some(v) = token.strip_prefix("P:") {
            let mut m = Vec::new();
            fp().value_marker(v.as_bytes(), v.len(), &mut m);
            Some(String::from_utf8(m).unwrap())
        } else if let Some(v) = token.strip_prefix("T:") {
            let (id, secret) = v.split_once(':').unwrap();
            let mut m = Vec::new();
            fp().text_marker(id, secret.as_bytes(), &mut m);
            Some(String::from_utf8(m).unwrap())
        } else {
            None
        };
        match replaced {
            Some(r) => {
                out.push_str(&rest[..start]);
                out.push_str(&r);
            }
            None => out.push_str(&rest[..start + len + 1]),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// `text` with every fingerprint replaced by `<fp>`: in text markers, value markers and the
/// base64 of value markers. Fingerprints are bound to the object and field a value sits in
/// (tested on their own below); the tables check what is masked and how.
fn norm(text: impl AsRef<[u8]>) -> String {
    let text = String::from_utf8_lossy(text.as_ref()).into_owned();
    let raw = regex::Regex::new(r"airlock:masked:((?:[a-z0-9-]+:)?)[0-9a-f]{12}").unwrap();
    let b64 = regex::Regex::new(r"YWlybG9jazptYXNrZWQ6[A-Za-z0-9+/]{16}").unwrap();
    let text = raw.replace_all(&text, "airlock:masked:${1}<fp>");
    b64.replace_all(&text, "YWlybG9jazptYXNrZWQ6<fp>")
        .into_owned()
}

fn ctx(resource: &str, ns: Option<&str>) -> MaskContext {
    MaskContext::for_resource(resource, ns)
}

struct Case {
    name: &'static str,
    ctx: MaskContext,
    kind: BodyKind,
    input: &'static str,
    expected: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "single secret: data, stringData, keys kept",
            ctx: ctx("secrets", Some("default")),
            kind: BodyKind::Json,
            input: r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg==","big":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OQ=="},"stringData":{"user":"admin"},"type":"Opaque"}"#,
            expected: r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"<S:aHVudGVyMg==>","big":"<S:MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OQ==>"},"stringData":{"user":"<P:admin>"},"type":"Opaque"}"#,
        },
        Case {
            name: "kind after data still masks (unstructured key order)",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"apiVersion":"v1","data":{"a":"aHVudGVyMg=="},"kind":"Secret"}"#,
            expected: r#"{"apiVersion":"v1","data":{"a":"<S:aHVudGVyMg==>"},"kind":"Secret"}"#,
        },
        Case {
            name: "empty values stay empty; formatting kept",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: "{\n  \"kind\": \"Secret\",\n  \"data\": {\n    \"a\": \"\",\n    \"b\": \"aHVudGVyMg==\"\n  }\n}\n",
            expected: "{\n  \"kind\": \"Secret\",\n  \"data\": {\n    \"a\": \"\",\n    \"b\": \"<S:aHVudGVyMg==>\"\n  }\n}\n",
        },
        Case {
            name: "last-applied-configuration of a secret is parsed, masked, re-serialized",
            ctx: ctx("secrets", Some("default")),
            kind: BodyKind::Json,
            input: r#"{"kind":"Secret","metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"k\":\"aHVudGVyMg==\"},\"kind\":\"Secret\",\"stringData\":{\"p\":\"clear\"}}\n","team":"a"}},"data":{"k":"aHVudGVyMg=="}}"#,
            expected: r#"{"kind":"Secret","metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"k\":\"<S:aHVudGVyMg==>\"},\"kind\":\"Secret\",\"stringData\":{\"p\":\"<P:clear>\"}}\n","team":"a"}},"data":{"k":"<S:aHVudGVyMg==>"}}"#,
        },
        Case {
            name: "SecretList items carry no kind: the list kind decides",
            ctx: ctx("secrets", None),
            kind: BodyKind::Json,
            input: r#"{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"data":{"x":"aHVudGVyMg=="}},{"metadata":{"name":"b"},"data":{"y":"c2VjcmV0"}}]}"#,
            expected: r#"{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"data":{"x":"<S:aHVudGVyMg==>"}},{"metadata":{"name":"b"},"data":{"y":"<S:c2VjcmV0>"}}]}"#,
        },
        Case {
            name: "a second kind member decides (Go's decoder keeps the last)",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"ConfigMap","data":{"a":"aHVudGVyMg=="},"kind":"Secret"}"#,
            expected: r#"{"kind":"ConfigMap","data":{"a":"<S:aHVudGVyMg==>"},"kind":"Secret"}"#,
        },
        Case {
            name: "an escaped kind key counts as kind",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"ConfigMap","data":{"a":"aHVudGVyMg=="},"\u006bind":"Secret"}"#,
            expected: r#"{"kind":"ConfigMap","data":{"a":"<S:aHVudGVyMg==>"},"\u006bind":"Secret"}"#,
        },
        Case {
            name: "an item of a typed list with a kind of its own, after its data",
            ctx: ctx("configmaps", None),
            kind: BodyKind::Json,
            input: r#"{"kind":"ConfigMapList","items":[{"metadata":{"name":"c"},"data":{"note":"plain"}},{"data":{"a":"aHVudGVyMg=="},"kind":"Secret"},{"data":{"b":"c2VjcmV0"}}]}"#,
            expected: r#"{"kind":"ConfigMapList","items":[{"metadata":{"name":"c"},"data":{"note":"plain"}},{"data":{"a":"<S:aHVudGVyMg==>"},"kind":"Secret"},{"data":{"b":"c2VjcmV0"}}]}"#,
        },
        Case {
            name: "mixed List, watch event and Table row objects whose kind follows their data",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"List","items":[{"data":{"a":"aHVudGVyMg=="},"kind":"Secret"},{"type":"ADDED","object":{"data":{"b":"c2VjcmV0"},"kind":"Secret"}},{"kind":"Table","rows":[{"cells":["x"],"object":{"stringData":{"c":"pw"},"kind":"Secret"}}]}]}"#,
            expected: r#"{"kind":"List","items":[{"data":{"a":"<S:aHVudGVyMg==>"},"kind":"Secret"},{"type":"ADDED","object":{"data":{"b":"<S:c2VjcmV0>"},"kind":"Secret"}},{"kind":"Table","rows":[{"cells":["x"],"object":{"stringData":{"c":"<P:pw>"},"kind":"Secret"}}]}]}"#,
        },
        Case {
            name: "escapes that spell a keyword are decoded before detection; clean escaped values are kept as they are",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"ConfigMap","data":{"a":"pass\u0077ord=hunter22","b":"postgres:\/\/u:dbpass99@h\/db","c":"line1\nline2 token=abc12345","d":"plain\ttext \"quoted\" \\ \u00e9"}}"#,
            expected: r#"{"kind":"ConfigMap","data":{"a":"password=<T:generic-assignment:hunter22>","b":"postgres://u:<T:database-url-password:dbpass99>@h/db","c":"line1\nline2 token=<T:generic-assignment:abc12345>","d":"plain\ttext \"quoted\" \\ \u00e9"}}"#,
        },
        Case {
            name: "kind: List with mixed kinds",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"ConfigMap","metadata":{"name":"c"},"data":{"plain":"x","DB_PASSWORD":"hunter2"}},{"kind":"Secret","data":{"a":"aHVudGVyMg=="}},{"kind":"Service","spec":{"ports":[]}}],"metadata":{"resourceVersion":""}}"#,
            expected: r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"ConfigMap","metadata":{"name":"c"},"data":{"plain":"x","DB_PASSWORD":"<T:sensitive-name:hunter2>"}},{"kind":"Secret","data":{"a":"<S:aHVudGVyMg==>"}},{"kind":"Service","spec":{"ports":[]}}],"metadata":{"resourceVersion":""}}"#,
        },
        Case {
            name: "watch events, one per line",
            ctx: ctx("secrets", None),
            kind: BodyKind::JsonWatch,
            input: "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"a\":\"aHVudGVyMg==\"}}}\n{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Secret\",\"metadata\":{\"resourceVersion\":\"9\"}}}\n",
            expected: "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"a\":\"<S:aHVudGVyMg==>\"}}}\n{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Secret\",\"metadata\":{\"resourceVersion\":\"9\"}}}\n",
        },
        Case {
            name: "watch event recognised by shape in a plain json body",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"type":"MODIFIED","object":{"kind":"Secret","data":{"a":"aHVudGVyMg=="}}}"#,
            expected: r#"{"type":"MODIFIED","object":{"kind":"Secret","data":{"a":"<S:aHVudGVyMg==>"}}}"#,
        },
        Case {
            name: "watch event in a plain json body whose context is secrets",
            ctx: ctx("secrets", None),
            kind: BodyKind::Json,
            input: r#"{"type":"ADDED","object":{"data":{"a":"aHVudGVyMg=="},"metadata":{"name":"s"}}}"#,
            expected: r#"{"type":"ADDED","object":{"data":{"a":"<S:aHVudGVyMg==>"},"metadata":{"name":"s"}}}"#,
        },
        Case {
            name: "every string of a container: probes' headers and commands, lifecycle hooks",
            ctx: ctx("pods", None),
            kind: BodyKind::Json,
            input: r#"{"kind":"Pod","spec":{"containers":[{"name":"app","image":"busybox","livenessProbe":{"httpGet":{"path":"/","httpHeaders":[{"name":"Authorization","value":"password=hunter22"}]}},"readinessProbe":{"exec":{"command":["check","--password=hunter23"]}},"lifecycle":{"postStart":{"exec":{"command":["sh","-c","token=abc12345"]}}}}]}}"#,
            expected: r#"{"kind":"Pod","spec":{"containers":[{"name":"app","image":"busybox","livenessProbe":{"httpGet":{"path":"/","httpHeaders":[{"name":"Authorization","value":"password=<T:generic-assignment:hunter22>"}]}},"readinessProbe":{"exec":{"command":["check","--password=<T:generic-assignment:hunter23>"]}},"lifecycle":{"postStart":{"exec":{"command":["sh","-c","token=<T:generic-assignment:abc12345>"]}}}}]}}"#,
        },
        Case {
            name: "a pod's status messages: a container's termination message",
            ctx: ctx("pods", None),
            kind: BodyKind::Json,
            input: r#"{"kind":"Pod","spec":{"containers":[]},"status":{"phase":"Failed","containerStatuses":[{"name":"app","state":{"terminated":{"exitCode":1,"message":"login failed password=hunter22"}}}]}}"#,
            expected: r#"{"kind":"Pod","spec":{"containers":[]},"status":{"phase":"Failed","containerStatuses":[{"name":"app","state":{"terminated":{"exitCode":1,"message":"login failed password=<T:generic-assignment:hunter22>"}}}]}}"#,
        },
        Case {
            name: "ControllerRevision: the pod template it keeps",
            ctx: ctx("controllerrevisions", None),
            kind: BodyKind::Json,
            input: r#"{"kind":"ControllerRevision","data":{"spec":{"template":{"spec":{"containers":[{"name":"w","env":[{"name":"DB_PASSWORD","value":"hunter2"}],"args":["--token=abc12345"]}]}}}}}"#,
            expected: r#"{"kind":"ControllerRevision","data":{"spec":{"template":{"spec":{"containers":[{"name":"w","env":[{"name":"DB_PASSWORD","value":"<T:sensitive-name:hunter2>"}],"args":["--token=<T:generic-assignment:abc12345>"]}]}}}}}"#,
        },
        Case {
            name: "Table rows with includeObject=Object",
            ctx: ctx("secrets", None),
            kind: BodyKind::Json,
            input: r#"{"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[{"name":"Name"}],"rows":[{"cells":["a","Opaque",1],"object":{"kind":"Secret","apiVersion":"v1","data":{"a":"aHVudGVyMg=="}}}]}"#,
            expected: r#"{"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[{"name":"Name"}],"rows":[{"cells":["a","Opaque",1],"object":{"kind":"Secret","apiVersion":"v1","data":{"a":"<S:aHVudGVyMg==>"}}}]}"#,
        },
        Case {
            name: "PartialObjectMetadataList keeps last-applied masked",
            ctx: ctx("secrets", None),
            kind: BodyKind::Json,
            input: r#"{"kind":"PartialObjectMetadataList","items":[{"kind":"PartialObjectMetadata","metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"k\":\"aHVudGVyMg==\"},\"kind\":\"Secret\"}"}}}]}"#,
            expected: r#"{"kind":"PartialObjectMetadataList","items":[{"kind":"PartialObjectMetadata","metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"k\":\"<S:aHVudGVyMg==>\"},\"kind\":\"Secret\"}"}}}]}"#,
        },
        Case {
            name: "TokenRequest status.token",
            ctx: MaskContext {
                resource: Some("serviceaccounts".into()),
                subresource: Some("token".into()),
                ..MaskContext::default()
            },
            kind: BodyKind::Json,
            input: r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["x"]},"status":{"token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#,
            expected: r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["x"]},"status":{"token":"<T:token-request:eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig>","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#,
        },
        Case {
            name: "ConfigMap data: detectors and sensitive keys; binaryData untouched",
            ctx: ctx("configmaps", Some("default")),
            kind: BodyKind::Json,
            input: r#"{"kind":"ConfigMap","data":{"app.properties":"db.url=postgres://app:s3cretpw@db/app\nmode=fast","api_token":"abc123","note":"hello"},"binaryData":{"x":"AAEC"}}"#,
            expected: r#"{"kind":"ConfigMap","data":{"app.properties":"db.url=postgres://app:<T:database-url-password:s3cretpw>@db/app\nmode=fast","api_token":"<T:sensitive-name:abc123>","note":"hello"},"binaryData":{"x":"AAEC"}}"#,
        },
        Case {
            name: "Deployment env literals, args; valueFrom untouched",
            ctx: ctx("deployments", Some("default")),
            kind: BodyKind::Json,
            input: r#"{"kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"app","args":["--token=ghp_abcdefghijklmnopqrstuvwxyz0123456789"],"env":[{"name":"MODE","value":"prod"},{"value":"hunter2","name":"DB_PASSWORD"},{"name":"REF","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}},{"name":"URL","value":"https://u:pw12345@h/"}]}],"initContainers":[{"env":[{"name":"X","value":"AKIAIOSFODNN7EXAMPLE"}]}]}}}}"#,
            expected: r#"{"kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"app","args":["--token=<T:github-token:ghp_abcdefghijklmnopqrstuvwxyz0123456789>"],"env":[{"name":"MODE","value":"prod"},{"value":"<T:sensitive-name:hunter2>","name":"DB_PASSWORD"},{"name":"REF","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}},{"name":"URL","value":"https://u:<T:database-url-password:pw12345>@h/"}]}],"initContainers":[{"env":[{"name":"X","value":"<T:aws-access-key-id:AKIAIOSFODNN7EXAMPLE>"}]}]}}}}"#,
        },
        Case {
            name: "CronJob env under jobTemplate",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"env":[{"name":"API_KEY","value":"k-123"}]}]}}}}}}"#,
            expected: r#"{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"env":[{"name":"API_KEY","value":"<T:sensitive-name:k-123>"}]}]}}}}}}"#,
        },
        Case {
            name: "Pod: annotations of any object run detectors",
            ctx: ctx("pods", Some("default")),
            kind: BodyKind::Json,
            input: r#"{"kind":"Pod","metadata":{"annotations":{"note":"Authorization: Bearer abcdefgh12345678","x.io/api-token":"zzz999"}},"spec":{"containers":[{"env":[{"name":"A","value":"b"}]}]},"status":{"phase":"Running"}}"#,
            expected: r#"{"kind":"Pod","metadata":{"annotations":{"note":"Authorization: Bearer <T:bearer-token:abcdefgh12345678>","x.io/api-token":"<T:sensitive-name:zzz999>"}},"spec":{"containers":[{"env":[{"name":"A","value":"b"}]}]},"status":{"phase":"Running"}}"#,
        },
        Case {
            name: "escaped strings are unescaped before detection and re-escaped",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"ConfigMap","data":{"key.pem":"-----BEGIN PRIVATE KEY-----\nMIIEv\u0051\n-----END PRIVATE KEY-----\n","q":"say \"hi\""}}"#,
            expected: r#"{"kind":"ConfigMap","data":{"key.pem":"<T:pem-private-key:-----BEGIN PRIVATE KEY-----
MIIEvQ
-----END PRIVATE KEY----->\n","q":"say \"hi\""}}"#,
        },
        Case {
            name: "Status message with a token",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"Status","status":"Failure","message":"bad password=hunter22","code":422}"#,
            expected: r#"{"kind":"Status","status":"Failure","message":"bad password=<T:generic-assignment:hunter22>","code":422}"#,
        },
        Case {
            name: "no kind anywhere but data: treated as a Secret (fail closed)",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"metadata":{"name":"x"},"data":{"a":"aHVudGVyMg=="}}"#,
            expected: r#"{"metadata":{"name":"x"},"data":{"a":"<S:aHVudGVyMg==>"}}"#,
        },
        Case {
            name: "user profile: configmaps in team-* masked whole",
            ctx: MaskContext {
                profiles: vec!["strict".into()],
                ..ctx("configmaps", Some("team-a"))
            },
            kind: BodyKind::Json,
            input: r#"{"kind":"ConfigMapList","items":[{"metadata":{"namespace":"team-a"},"data":{"a":"plain"}},{"metadata":{"namespace":"prod"},"data":{"a":"plain"}}]}"#,
            expected: r#"{"kind":"ConfigMapList","items":[{"metadata":{"namespace":"team-a"},"data":{"a":"<T:rule:plain>"}},{"metadata":{"namespace":"prod"},"data":{"a":"plain"}}]}"#,
        },
        Case {
            name: "user profile: custom resource field with chosen detectors",
            ctx: MaskContext {
                profiles: vec!["strict".into()],
                ..MaskContext::default()
            },
            kind: BodyKind::Json,
            input: r#"{"kind":"Widget","spec":{"config":{"a":"password=abcdef","b":"AKIAIOSFODNN7EXAMPLE"},"other":"password=abcdef"}}"#,
            expected: r#"{"kind":"Widget","spec":{"config":{"a":"password=<T:generic-assignment:abcdef>","b":"AKIAIOSFODNN7EXAMPLE"},"other":"password=abcdef"}}"#,
        },
        Case {
            name: "top-level array and scalars pass through",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"[1, "two", {"kind":"Secret","data":{"a":"aHVudGVyMg=="}}, null]"#,
            expected: r#"[1, "two", {"kind":"Secret","data":{"a":"<S:aHVudGVyMg==>"}}, null]"#,
        },
        Case {
            name: "members after items are masked too",
            ctx: MaskContext::default(),
            kind: BodyKind::Json,
            input: r#"{"kind":"SecretList","items":[{"data":{"a":"aHVudGVyMg=="}}] , "metadata":{"annotations":{"t":"token=abcdef"}}}"#,
            expected: r#"{"kind":"SecretList","items":[{"data":{"a":"<S:aHVudGVyMg==>"}}] , "metadata":{"annotations":{"t":"token=<T:generic-assignment:abcdef>"}}}"#,
        },
        Case {
            name: "log text",
            ctx: ctx("pods", Some("default")),
            kind: BodyKind::Text,
            input: "starting\nusing key AKIAIOSFODNN7EXAMPLE now\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY-----\ndone\n",
            expected: "starting\nusing key <T:aws-access-key-id:AKIAIOSFODNN7EXAMPLE> now\n<T:pem-private-key:-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nAAAA\n-----END RSA PRIVATE KEY----->\ndone\n",
        },
    ]
}

#[test]
fn masking_table() {
    let m = masker();
    for case in cases() {
        let out = m.mask_body(case.kind, &case.ctx, case.input.as_bytes());
        let out = match out {
            Ok(o) => String::from_utf8(o).unwrap(),
            Err(e) => panic!("{}: {e}", case.name),
        };
        assert_eq!(norm(&out), norm(expand(case.expected)), "{}", case.name);
        if matches!(case.kind, BodyKind::Json) {
            serde_json::from_str::<serde_json::Value>(&out)
                .unwrap_or_else(|e| panic!("{}: invalid json: {e}", case.name));
        }
    }
}

/// Every case gives the same output when the body is split at any byte offset.
#[test]
fn masking_table_chunk_boundaries() {
    let m = masker();
    for case in cases() {
        let whole = m
            .mask_body(case.kind, &case.ctx, case.input.as_bytes())
            .unwrap();
        let input = case.input.as_bytes();
        for split in 0..=input.len() {
            let mut s = m.stream(case.kind, &case.ctx).unwrap();
            let mut out = Vec::new();
            s.push(&input[..split], &mut out).unwrap();
            s.push(&input[split..], &mut out).unwrap();
            s.finish(&mut out).unwrap();
            if case.kind == BodyKind::Text {
                // Text may cut differently but must hide the same secrets.
                assert_eq!(
                    String::from_utf8_lossy(&out)
                        .matches("airlock:masked")
                        .count(),
                    String::from_utf8_lossy(&whole)
                        .matches("airlock:masked")
                        .count(),
                    "{} split at {split}: {}",
                    case.name,
                    String::from_utf8_lossy(&out)
                );
            } else {
                assert_eq!(norm(&out), norm(&whole), "{} split at {split}", case.name);
            }
        }
        // And byte by byte.
        let mut s = m.stream(case.kind, &case.ctx).unwrap();
        let mut out = Vec::new();
        for b in input.chunks(1) {
            s.push(b, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        if case.kind != BodyKind::Text {
            assert_eq!(norm(&out), norm(&whole), "{} byte by byte", case.name);
        }
    }
}

#[test]
fn refused_bodies() {
    let m = masker();
    let c = MaskContext::default();
    let cases: &[(&str, BodyKind, &str)] = &[
        (
            "truncated",
            BodyKind::Json,
            r#"{"kind":"Secret","data":{"a":"aHVu"#,
        ),
        (
            "truncated list",
            BodyKind::Json,
            r#"{"kind":"SecretList","items":[{"data":{}}"#,
        ),
        (
            "bad value in data",
            BodyKind::Json,
            r#"{"kind":"Secret","data":{"a":nope}}"#,
        ),
        (
            "missing comma",
            BodyKind::Json,
            r#"{"kind":"Secret" "data":{}}"#,
        ),
        ("garbage after", BodyKind::Json, r#"{"kind":"Secret"} x"#),
        (
            "list elements without comma",
            BodyKind::Json,
            r#"{"kind":"SecretList","items":[{} {}]}"#,
        ),
        (
            "bad escape",
            BodyKind::Json,
            r#"{"kind":"Secret","data":{"a":"\q"}}"#,
        ),
        ("unbalanced", BodyKind::Json, r#"{"kind":"Secret"}}"#),
        ("yaml tags", BodyKind::Yaml, "a: !!binary 12\n  b: [\n"),
        // A watch stream whose document is not an event (a server that ignored `watch`).
        (
            "list in a watch stream",
            BodyKind::JsonWatch,
            r#"{"kind":"SecretList","items":[{"data":{"a":"aHVudGVyMg=="}}]}"#,
        ),
        (
            "event whose type is not a string",
            BodyKind::JsonWatch,
            r#"{"type":{"kind":"Secret","data":{"a":"aHVudGVyMg=="}},"object":{}}"#,
        ),
        (
            "event with more members",
            BodyKind::Json,
            r#"{"type":"ADDED","object":{},"items":[{"kind":"Secret","data":{"a":"aHVudGVyMg=="}}]}"#,
        ),
    ];
    for (name, kind, body) in cases {
        assert!(m.mask_body(*kind, &c, body.as_bytes()).is_err(), "{name}");
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(m.mask_body(BodyKind::Json, &c, deep.as_bytes()).is_err());
    assert!(BodyKind::from_content_type("application/vnd.kubernetes.protobuf", false).is_err());
    assert!(BodyKind::from_content_type("application/cbor", false).is_err());
}

#[test]
fn content_types() {
    let cases: &[(&str, bool, BodyKind)] = &[
        ("application/json", false, BodyKind::Json),
        (
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            false,
            BodyKind::Json,
        ),
        ("application/json;stream=watch", false, BodyKind::JsonWatch),
        ("application/json", true, BodyKind::JsonWatch),
        ("application/merge-patch+json", false, BodyKind::Json),
        ("application/apply-patch+yaml", false, BodyKind::Yaml),
        ("application/yaml", false, BodyKind::Yaml),
        ("text/plain; charset=utf-8", false, BodyKind::Text),
    ];
    for (ct, watch, kind) in cases {
        assert_eq!(
            BodyKind::from_content_type(ct, *watch).unwrap(),
            *kind,
            "{ct}"
        );
    }
}

#[test]
fn yaml_single_and_multi_document() {
    let m = masker();
    let body = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: aHVudGVyMg==\n---\nkind: ConfigMap\ndata:\n  PASSWORD: hunter2\n";
    let out = m
        .mask_body(BodyKind::Yaml, &MaskContext::default(), body.as_bytes())
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("aHVudGVyMg=="), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(
        norm(&out).contains(&norm(expand("a: <S:aHVudGVyMg==>"))),
        "{out}"
    );
    assert!(out.contains("---\n"));
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
}

#[test]
fn request_bodies() {
    let m = masker();
    let secrets = ctx("secrets", Some("default"));
    let cases: &[(&str, BodyKind, &MaskContext, &str, &str)] = &[
        (
            "create secret",
            BodyKind::Json,
            &secrets,
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"},"data":{"a":"aHVudGVyMg=="}}"#,
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"},"data":{"a":"<S:aHVudGVyMg==>"}}"#,
        ),
        (
            "merge patch on a secret has no kind",
            BodyKind::Json,
            &secrets,
            r#"{"data":{"a":"aHVudGVyMg=="},"stringData":{"b":"clear"}}"#,
            r#"{"data":{"a":"<S:aHVudGVyMg==>"},"stringData":{"b":"<P:clear>"}}"#,
        ),
        (
            "json patch on a secret",
            BodyKind::Json,
            &secrets,
            r#"[{"op":"replace","path":"/data/a","value":"aHVudGVyMg=="},{"op":"add","path":"/stringData","value":{"b":"clear"}}]"#,
            r#"[{"op":"replace","path":"/data/a","value":"<S:aHVudGVyMg==>"},{"op":"add","path":"/stringData","value":{"b":"<P:clear>"}}]"#,
        ),
        (
            "apply-patch+yaml that is json",
            BodyKind::Yaml,
            &secrets,
            r#"{"kind":"Secret","data":{"a":"aHVudGVyMg=="}}"#,
            r#"{"kind":"Secret","data":{"a":"<S:aHVudGVyMg==>"}}"#,
        ),
    ];
    for (name, kind, c, body, expected) in cases {
        let out = m.mask_request_body(*kind, c, body.as_bytes()).unwrap();
        assert_eq!(norm(out), norm(expand(expected)), "{name}");
    }
    let yaml = "kind: Secret\nstringData:\n  password: hunter2\n";
    let out = m
        .mask_request_body(BodyKind::Yaml, &secrets, yaml.as_bytes())
        .unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("hunter2"));
}

/// Masked output fed back as a write is caught by `contains_marker`.
#[test]
fn masked_output_is_detected_on_write_back() {
    let m = masker();
    for case in cases() {
        let out = m
            .mask_body(case.kind, &case.ctx, case.input.as_bytes())
            .unwrap();
        if out != case.input.as_bytes() {
            assert!(contains_marker(&out), "{}", case.name);
        }
    }
    assert!(!contains_marker(
        br#"{"kind":"Secret","data":{"a":"aHVudGVyMg=="}}"#
    ));
}

#[test]
fn masking_is_idempotent() {
    let m = masker();
    for case in cases() {
        let once = m
            .mask_body(case.kind, &case.ctx, case.input.as_bytes())
            .unwrap();
        let twice = m.mask_body(case.kind, &case.ctx, &once).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&twice),
            String::from_utf8_lossy(&once),
            "{}",
            case.name
        );
    }
}

#[test]
fn describe_byte_counts_survive() {
    let m = masker();
    let b64 = base64::engine::general_purpose::STANDARD;
    let long = "x".repeat(100);
    let body = format!(
        r#"{{"kind":"Secret","data":{{"short":"{}","long":"{}"}}}}"#,
        b64.encode("pw"),
        b64.encode(&long)
    );
    let out = m
        .mask_body(BodyKind::Json, &MaskContext::default(), body.as_bytes())
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let decoded = |k: &str| b64.decode(v["data"][k].as_str().unwrap()).unwrap();
    assert_eq!(decoded("long").len(), 100);
    assert_eq!(
        decoded("short").len(),
        MARKER_PREFIX.len() + FINGERPRINT_LEN
    );
    assert!(decoded("long").starts_with(MARKER_PREFIX.as_bytes()));
}

#[test]
fn text_holds_back_only_what_may_be_a_secret() {
    let m = masker();
    let mut s = m.stream(BodyKind::Text, &MaskContext::default()).unwrap();
    let mut out = Vec::new();
    // Keyword-free text flows immediately, without a newline.
    s.push(b"$ ls -l", &mut out).unwrap();
    assert_eq!(out, b"$ ls -l");
    // A keyword holds the rest of the line.
    out.clear();
    s.push(b" && export DB_PASSWORD=hun", &mut out).unwrap();
    assert_eq!(out, b" && export DB_");
    out.clear();
    s.push(b"ter2\nnext", &mut out).unwrap();
    assert_eq!(
        norm(&out),
        norm(expand("PASSWORD=<T:generic-assignment:hunter2>\nnex"))
    );
    // A secret split across pushes is still masked.
    out.clear();
    s.push(b" AKIAIOSF", &mut out).unwrap();
    s.flush(&mut out).unwrap();
    s.push(b"ODNN7EXAMPLE done", &mut out).unwrap();
    s.finish(&mut out).unwrap();
    assert_eq!(
        norm(&out),
        norm(expand("t <T:aws-access-key-id:AKIAIOSFODNN7EXAMPLE> done"))
    );
}

#[test]
fn text_drops_pem_bodies_without_buffering() {
    let m = masker();
    let mut s = m.stream(BodyKind::Text, &MaskContext::default()).unwrap();
    let mut out = Vec::new();
    s.push(b"before\n-----BEGIN EC PRIVATE KEY-----\n", &mut out)
        .unwrap();
    // 55 KB of key body: larger than any real key, below MAX_PEM_BODY.
    for _ in 0..1_500 {
        s.push(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n", &mut out)
            .unwrap();
    }
    s.push(b"-----END EC PRIVATE KEY-----\nafter\n", &mut out)
        .unwrap();
    s.finish(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("before\n[airlock:masked:pem-private-key:"),
        "{text}"
    );
    assert!(text.ends_with("]\nafter\n"), "{text}");
    assert!(!text.contains("QUJD"));
    assert!(s.peak_buffered() < 1024, "{}", s.peak_buffered());
}

/// `kubectl cp`'s tar stream: masked spans keep their length (markers cut or padded), a PEM
/// body becomes `*`, and however the stream is split the output is as long as the input.
#[test]
fn same_length_text_keeps_every_offset() {
    let m = masker();
    let mut input = b"before\nkey AKIAIOSFODNN7EXAMPLE and password=hunter2hunter2\n".to_vec();
    input.extend_from_slice(b"-----BEGIN EC PRIVATE KEY-----\n");
    for _ in 0..200 {
        input.extend_from_slice(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n");
    }
    input.extend_from_slice(b"-----END EC PRIVATE KEY-----\nafter pw=x token=abc12345\0\0\0");
    // The next file of the archive: a key without an END line ends with its file.
    input.extend_from_slice(
        b"next-file\0\0-----BEGIN PRIVATE KEY-----\nMIIEv\0\0header of the file after\0",
    );
    for chunk in [1usize, 7, 512, 4096, input.len()] {
        let mut s = m.stream_same_length(&MaskContext::default()).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            s.push(piece, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        assert_eq!(out.len(), input.len(), "chunks of {chunk}");
        let text = String::from_utf8_lossy(&out);
        for secret in ["AKIAIOSFODNN7EXAMPLE", "hunter2", "QUJD", "abc12345"] {
            assert!(
                !text.contains(secret),
                "chunks of {chunk}: {secret} in {text}"
            );
        }
        assert!(
            text.starts_with("before\nkey [airlock:masked:aws-")
                && text.contains(" and password=[airlock:"),
            "{text}"
        );
        assert!(text.contains("\nafter pw=x token="), "{text}");
        assert!(
            text.contains("\0\0\0next-file\0\0[airlock:masked:pem"),
            "{text}"
        );
        assert!(text.ends_with("\0\0header of the file after\0"), "{text}");
    }
}

/// A BEGIN line without an END (a log quoting the header) drops a bounded amount, then the
/// stream resumes.
#[test]
fn text_unterminated_pem_drops_a_bounded_amount() {
    let m = masker();
    let mut s = m.stream(BodyKind::Text, &MaskContext::default()).unwrap();
    let mut out = Vec::new();
    s.push(b"expected -----BEGIN PRIVATE KEY----- header\n", &mut out)
        .unwrap();
    let line = b"ordinary log line number xxxxxxxx\n";
    let lines = MAX_PEM_BODY / line.len() + 100;
    for _ in 0..lines {
        s.push(line, &mut out).unwrap();
    }
    s.finish(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("expected [airlock:masked:pem-private-key:"),
        "{}",
        &text[..80]
    );
    assert!(text.ends_with("ordinary log line number xxxxxxxx\n"));
    assert!(text.matches("ordinary").count() < lines);
}

#[test]
fn unknown_profiles_and_bad_rules_are_errors() {
    let m = masker();
    let c = MaskContext {
        profiles: vec!["nope".into()],
        ..MaskContext::default()
    };
    assert!(matches!(
        m.stream(BodyKind::Json, &c),
        Err(MaskError::UnknownProfile(_))
    ));
    let mut config = MaskConfig::new(KEY.to_vec());
    config.profiles = vec![MaskProfile {
        name: "p".into(),
        rules: vec![MaskRule {
            resource: "configmaps".into(),
            namespace: None,
            fields: vec!["data.*".into()],
            detectors: vec!["no-such-detector".into()],
        }],
    }];
    assert!(matches!(Masker::new(config), Err(MaskError::Rule { .. })));
    assert!(matches!(
        Masker::new(MaskConfig::new(Vec::new())),
        Err(MaskError::EmptyKey)
    ));
}

#[test]
fn profiles_deserialize_from_yaml() {
    let yaml = r#"
name: strict
rules:
  - resource: configmaps
    namespace: "team-*"
    fields: ["data.*", "metadata.annotations[\"x.io/creds\"]"]
  - resource: widgets
    fields: [spec.config]
    detectors: [all]
"#;
    let profile: MaskProfile = serde_yaml::from_str(yaml).unwrap();
    let mut config = MaskConfig::new(KEY.to_vec());
    config.profiles = vec![profile];
    config.default_profiles = vec!["strict".into()];
    Masker::new(config).unwrap();
}

use serde::Deserialize as _;

/// Fingerprints of Secret `data` values cover the base64 text: equal values show equal
/// fingerprints and different values different ones, in one body and across bodies.
/// The fingerprint in the first marker of `text` (raw, or the base64 of a value marker).
fn first_fp(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let raw = regex::Regex::new(r"airlock:masked:(?:[a-z0-9-]+:)?([0-9a-f]{12})").unwrap();
    if let Some(c) = raw.captures(&text) {
        return c[1].to_string();
    }
    let b64 = regex::Regex::new(r"YWlybG9jazptYXNrZWQ6[A-Za-z0-9+/]{16}").unwrap();
    let m = b64
        .find(&text)
        .unwrap_or_else(|| panic!("no marker in {text}"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(m.as_str())
        .unwrap();
    String::from_utf8(decoded[MARKER_PREFIX.len()..].to_vec()).unwrap()
}

/// Fingerprints of a Secret's `data.password`, read as `body` says.
fn secret_fp(m: &Masker, c: &MaskContext, kind: BodyKind, body: &str) -> String {
    first_fp(&m.mask_body(kind, c, body.as_bytes()).unwrap())
}

fn secret(ns: &str, name: &str, field: &str, value: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(value);
    format!(
        r#"{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"{name}","namespace":"{ns}","resourceVersion":"7"}},"data":{{"{field}":"{b64}"}}}}"#
    )
}

/// A fingerprint is bound to where the value sits: the same field of the same object shows the
/// same fingerprint however it is read, so a change shows; the same value anywhere else shows
/// another, so an agent cannot have the gateway fingerprint its guesses and compare them with a
/// Secret's (the oracle docs/masking.md used to list as a limit).
#[test]
fn fingerprints_are_bound_to_object_and_field() {
    let m = masker();
    let mut c = ctx("secrets", Some("shop"));
    c.cluster = Some("prod".into());
    let get = secret("shop", "db", "password", "hunter2");
    let read = secret_fp(&m, &c, BodyKind::Json, &get);

    // The same field, read again, listed, watched, as a table row, in YAML, and after the
    // Secret changed elsewhere (a new resourceVersion).
    assert_eq!(secret_fp(&m, &c, BodyKind::Json, &get), read);
    let item = get.replace(r#""kind":"Secret","apiVersion":"v1","#, "");
    let list = format!(r#"{{"kind":"SecretList","apiVersion":"v1","items":[{item}]}}"#);
    assert_eq!(secret_fp(&m, &c, BodyKind::Json, &list), read, "list");
    let event = format!("{{\"type\":\"ADDED\",\"object\":{get}}}\n");
    assert_eq!(
        secret_fp(&m, &c, BodyKind::JsonWatch, &event),
        read,
        "watch"
    );
    let table = format!(
        r#"{{"kind":"Table","apiVersion":"meta.k8s.io/v1","rows":[{{"cells":["db"],"object":{get}}}]}}"#
    );
    assert_eq!(secret_fp(&m, &c, BodyKind::Json, &table), read, "table row");
    let yaml = "kind: Secret\napiVersion: v1\nmetadata:\n  name: db\n  namespace: shop\ndata:\n  password: aHVudGVyMg==\n";
    assert_eq!(secret_fp(&m, &c, BodyKind::Yaml, yaml), read, "yaml");
    let applied = secret("", "db", "password", "hunter2").replace(r#""namespace":"""#, r#""x":"""#);
    let annotated = format!(
        r#"{{"kind":"PartialObjectMetadata","metadata":{{"name":"db","namespace":"shop","annotations":{{"kubectl.kubernetes.io/last-applied-configuration":{}}}}}}}"#,
        serde_json::to_string(&applied).unwrap()
    );
    let pom = m
        .mask_body(BodyKind::Json, &c, annotated.as_bytes())
        .unwrap();
    assert!(!String::from_utf8_lossy(&pom).contains("aHVudGVyMg=="));
    let object =
        |annotated: &str| -> String { annotated.replace("PartialObjectMetadata", "Secret") };
    // The copy in the last-applied annotation is bound to the object's version (a client
    // can rewrite an annotation without touching the Secret): not the field's fingerprint,
    // and another one once the object changed.
    let in_annotation = secret_fp(&m, &c, BodyKind::Json, &object(&annotated));
    assert_ne!(in_annotation, read, "last-applied");
    let next = annotated.replace(
        r#""namespace":"shop","#,
        r#""namespace":"shop","resourceVersion":"8","#,
    );
    assert_ne!(
        secret_fp(&m, &c, BodyKind::Json, &object(&next)),
        in_annotation,
        "last-applied, next version"
    );
    let newer = get.replace(r#""resourceVersion":"7""#, r#""resourceVersion":"9""#);
    assert_eq!(
        secret_fp(&m, &c, BodyKind::Json, &newer),
        read,
        "a Secret value outlives versions"
    );

    // A new value in the same field: another fingerprint (rotation shows).
    let rotated = secret("shop", "db", "password", "hunter3");
    assert_ne!(secret_fp(&m, &c, BodyKind::Json, &rotated), read);

    // The same value anywhere else: another field, another Secret, another namespace or
    // kind, another cluster.
    let elsewhere = [
        secret("shop", "db", "password2", "hunter2"),
        secret("shop", "db2", "password", "hunter2"),
        secret("agent", "db", "password", "hunter2"),
    ];
    for body in &elsewhere {
        assert_ne!(secret_fp(&m, &c, BodyKind::Json, body), read, "{body}");
    }
    let mut other_cluster = c.clone();
    other_cluster.cluster = Some("staging".into());
    assert_ne!(secret_fp(&m, &other_cluster, BodyKind::Json, &get), read);
    let guess = r#"{"kind":"ConfigMap","metadata":{"name":"db","namespace":"shop"},"data":{"password":"hunter2"}}"#;
    let cm = ctx("configmaps", Some("shop"));
    assert_ne!(secret_fp(&m, &cm, BodyKind::Json, guess), read, "configmap");

    // A body keyed on its own (the echo of a write, a dry-run update of this very Secret
    // included): unrelated to the bound fingerprint and to every other body's; within it,
    // fields are bound as everywhere (a patch echo holds the real value beside the guess).
    let mut own = c.clone();
    own.fingerprints = Fingerprints::Own;
    let echo = secret_fp(&m, &own, BodyKind::Json, &get);
    assert_ne!(echo, read);
    assert_ne!(secret_fp(&m, &own, BodyKind::Json, &get), echo);
    let pair = r#"{"kind":"Secret","metadata":{"name":"db"},"data":{"a":"aHVudGVyMg==","b":"aHVudGVyMg=="}}"#;
    let out = m.mask_body(BodyKind::Json, &own, pair.as_bytes()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let fp = |k: &str| first_fp(v["data"][k].as_str().unwrap().as_bytes());
    assert_ne!(
        fp("a"),
        fp("b"),
        "the real value and a guess beside it in an echo"
    );

    // An object without a name (the cluster never returns a stored one) gets a key used
    // nowhere else: unrelated to any named object's, and to the next read's.
    let nameless = get.replace(r#""name":"db","#, "");
    let a = secret_fp(&m, &c, BodyKind::Json, &nameless);
    assert_ne!(a, read);
    assert_ne!(secret_fp(&m, &c, BodyKind::Json, &nameless), a);

    // Something that calls itself a Secret in an answer to another request (an
    // application behind pods/proxy, a custom resource of kind Secret) is bound to its
    // version like any other object.
    let mut crd = c.clone();
    crd.api_group = Some("evil.example.com".into());
    assert_ne!(
        secret_fp(&m, &crd, BodyKind::Json, &get),
        read,
        "another group"
    );
    let cm = ctx("configmaps", Some("shop"));
    let mut cm = cm;
    cm.cluster = c.cluster.clone();
    assert_ne!(
        secret_fp(&m, &cm, BodyKind::Json, &get),
        read,
        "another resource"
    );

    // A last-applied copy holding a list of Secrets: each bound to the owner's version.
    let guesses = format!(r#"{{"kind":"List","items":[{{}},{get}]}}"#);
    let owner = format!(
        r#"{{"kind":"ConfigMap","metadata":{{"name":"mine","namespace":"agent","resourceVersion":"3","annotations":{{"kubectl.kubernetes.io/last-applied-configuration":{}}}}}}}"#,
        serde_json::to_string(&guesses).unwrap()
    );
    let cm_ctx = {
        let mut x = ctx("configmaps", Some("agent"));
        x.cluster = c.cluster.clone();
        x
    };
    assert_ne!(
        secret_fp(&m, &cm_ctx, BodyKind::Json, &owner),
        read,
        "list in last-applied"
    );
}

/// A Table's cells are bound to nothing shared: two rows' cells holding the same value (an
/// agent's event message beside a victim's) show different fingerprints.
#[test]
fn table_cells_share_no_binding() {
    let m = masker();
    let c = ctx("events", None);
    let row = |name: &str| {
        format!(
            r#"{{"cells":["{name}","password=hunter2hunter2"],"object":{{"kind":"PartialObjectMetadata","metadata":{{"name":"{name}"}}}}}}"#
        )
    };
    let table = format!(
        r#"{{"kind":"Table","apiVersion":"meta.k8s.io/v1","rows":[{},{}]}}"#,
        row("a"),
        row("b")
    );
    let out = m.mask_body(BodyKind::Json, &c, table.as_bytes()).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let cell = |i: usize| first_fp(v["rows"][i]["cells"][1].as_str().unwrap().as_bytes());
    assert_ne!(cell(0), cell(1));
}

/// Values other than a Secret's `data` are bound to the object's version too: a client that can
/// write the object can place a guess at the secret's own path (inserting into a list shifts
/// the secret to the next index; a ConfigMap value can be overwritten again and again), but
/// every write is a new version, so the guess is never compared with a fingerprint read before.
#[test]
fn other_values_are_bound_to_the_version() {
    let m = masker();
    let c = ctx("deployments", Some("shop"));
    let deployment = |version: &str, env: &str| {
        format!(
            r#"{{"kind":"Deployment","apiVersion":"apps/v1","metadata":{{"name":"web","namespace":"shop","resourceVersion":"{version}"}},"spec":{{"template":{{"spec":{{"containers":[{{"name":"app","env":[{env}]}}]}}}}}}}}"#
        )
    };
    let real = deployment("10", r#"{"name":"DB_PASSWORD","value":"hunter2"}"#);
    let fp = secret_fp(&m, &c, BodyKind::Json, &real);
    assert_eq!(
        secret_fp(&m, &c, BodyKind::Json, &real),
        fp,
        "stable while unchanged"
    );
    // The guess inserted at index 0, the secret shifted to index 1: a new version.
    let guess = deployment(
        "11",
        r#"{"name":"DB_PASSWORD","value":"hunter2"},{"name":"DB_PASSWORD","value":"x"}"#,
    );
    assert_ne!(secret_fp(&m, &c, BodyKind::Json, &guess), fp);
}

/// Text: a pod's logs are bound to the pod, so reading them twice shows the same fingerprint
/// and another pod's logs another; exec output is keyed on its own.
#[test]
fn text_fingerprints_are_bound_to_the_request_object() {
    let m = masker();
    let line = b"DB_PASSWORD=hunter2\n";
    let logs = |pod: &str, fingerprints: Fingerprints| {
        let c = MaskContext {
            resource: Some("pods".into()),
            subresource: Some("log".into()),
            namespace: Some("shop".into()),
            name: Some(pod.into()),
            cluster: Some("prod".into()),
            fingerprints,
            ..MaskContext::default()
        };
        first_fp(&m.mask_body(BodyKind::Text, &c, line).unwrap())
    };
    let web = logs("web", Fingerprints::Bound);
    assert_eq!(logs("web", Fingerprints::Bound), web);
    assert_ne!(logs("api", Fingerprints::Bound), web);
    let exec = logs("web", Fingerprints::Own);
    assert_ne!(exec, web);
    assert_ne!(logs("web", Fingerprints::Own), exec);
}

/// A duplicate `kind` at every level of nested lists costs one more pass over the unit, not
/// one per level (2^60 passes would never finish).
#[test]
fn nested_duplicate_kinds_cost_one_more_pass() {
    let mut body =
        r#"{"kind":"ConfigMap","data":{"a":"aHVudGVyMg=="},"kind":"Secret"}"#.to_string();
    for _ in 0..60 {
        body = format!(r#"{{"kind":"List","items":[{body}],"kind":"List"}}"#);
    }
    let out = masker()
        .mask_body(BodyKind::Json, &MaskContext::default(), body.as_bytes())
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("aHVudGVyMg=="), "{out}");
    assert!(out.contains(MARKER_PREFIX_BASE64));
}
