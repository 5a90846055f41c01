//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! kubectl 1.32+ sends typed-client writes (`kubectl create configmap|secret|deployment|
//! namespace|...`, `kubectl auth can-i|whoami`, `kubectl create token`) as protobuf. A body is
//! the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` bytes are the object
//! message. Protobuf carries field numbers, not names, so we keep a hand-written table of the
//! messages those commands send (field numbers are part of the stable Kubernetes wire API) and
//! skip unknown fields. We never answer in protobuf: kubectl always accepts JSON as well.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// Message schemas: `number name type` entries separated by `;`. Types: `s` string, `b` bytes
/// (base64 in JSON), `i` integer (zero dropped: a non-pointer Go field), `I` integer (pointer
/// field: zero kept), `t` bool, `ms`/`mb`/`mq` maps of string/bytes/Quantity,
/// `time`, `ios` IntOrString, `q` Quantity, `raw` RawExtension, or a message name.
/// A leading `*` marks a repeated field.
const SCHEMAS: &[(&str, &str)] = &[
    ("Unknown", "1 typeMeta TypeMeta; 2 raw b; 3 contentEncoding s; 4 contentType s"),
    ("TypeMeta", "1 apiVersion s; 2 kind s"),
    ("ObjectMeta", "1 name s; 2 generateName s; 3 namespace s; 5 uid s; 6 resourceVersion s; 7 generation i; 8 creationTimestamp time; 10 deletionGracePeriodSeconds I; 11 labels ms; 12 annotations ms; 13 ownerReferences *OwnerReference; 14 finalizers *s"),
    ("OwnerReference", "1 kind s; 3 name s; 4 uid s; 5 apiVersion s; 6 controller t; 7 blockOwnerDeletion t"),
    ("LabelSelector", "1 matchLabels ms; 2 matchExpressions *LabelSelectorRequirement"),
    ("LabelSelectorRequirement", "1 key s; 2 operator s; 3 values *s"),
    // core/v1
    ("ConfigMap", "1 metadata ObjectMeta; 2 data ms; 3 binaryData mb; 4 immutable t"),
    ("Secret", "1 metadata ObjectMeta; 2 data mb; 3 type s; 4 stringData ms; 5 immutable t"),
    ("Namespace", "1 metadata ObjectMeta; 2 spec NamespaceSpec"),
    ("NamespaceSpec", "1 finalizers *s"),
    ("ServiceAccount", "1 metadata ObjectMeta; 2 secrets *ObjectReference; 3 imagePullSecrets *LocalObjectReference; 4 automountServiceAccountToken t"),
    ("ObjectReference", "1 kind s; 2 namespace s; 3 name s; 4 uid s; 5 apiVersion s; 6 resourceVersion s; 7 fieldPath s"),
    ("LocalObjectReference", "1 name s"),
    ("Service", "1 metadata ObjectMeta; 2 spec ServiceSpec"),
    ("ServiceSpec", "1 ports *ServicePort; 2 selector ms; 3 clusterIP s; 4 type s; 5 externalIPs *s; 7 sessionAffinity s; 8 loadBalancerIP s; 9 loadBalancerSourceRanges *s; 10 externalName s; 11 externalTrafficPolicy s; 12 healthCheckNodePort i; 13 publishNotReadyAddresses t; 17 ipFamilyPolicy s; 18 clusterIPs *s; 19 ipFamilies *s; 20 allocateLoadBalancerNodePorts t; 21 loadBalancerClass s; 22 internalTrafficPolicy s"),
    ("ServicePort", "1 name s; 2 protocol s; 3 port i; 4 targetPort ios; 5 nodePort i; 6 appProtocol s"),
    ("Pod", "1 metadata ObjectMeta; 2 spec PodSpec"),
    ("PodTemplateSpec", "1 metadata ObjectMeta; 2 spec PodSpec"),
    ("PodSpec", "2 containers *Container; 3 restartPolicy s; 4 terminationGracePeriodSeconds I; 5 activeDeadlineSeconds I; 6 dnsPolicy s; 7 nodeSelector ms; 8 serviceAccountName s; 9 serviceAccount s; 10 nodeName s; 11 hostNetwork t; 12 hostPID t; 13 hostIPC t; 15 imagePullSecrets *LocalObjectReference; 16 hostname s; 17 subdomain s; 19 schedulerName s; 20 initContainers *Container; 21 automountServiceAccountToken t; 24 priorityClassName s; 25 priority I"),
    ("Container", "1 name s; 2 image s; 3 command *s; 4 args *s; 5 workingDir s; 6 ports *ContainerPort; 7 env *EnvVar; 8 resources ResourceRequirements; 13 terminationMessagePath s; 14 imagePullPolicy s; 16 stdin t; 17 stdinOnce t; 18 tty t; 20 terminationMessagePolicy s"),
    ("ContainerPort", "1 name s; 2 hostPort i; 3 containerPort i; 4 protocol s; 5 hostIP s"),
    ("EnvVar", "1 name s; 2 value s"),
    ("ResourceRequirements", "1 limits mq; 2 requests mq"),
    ("ResourceQuota", "1 metadata ObjectMeta; 2 spec ResourceQuotaSpec"),
    ("ResourceQuotaSpec", "1 hard mq; 2 scopes *s"),
    // apps/v1
    ("Deployment", "1 metadata ObjectMeta; 2 spec DeploymentSpec"),
    ("DeploymentSpec", "1 replicas I; 2 selector LabelSelector; 3 template PodTemplateSpec; 4 strategy DeploymentStrategy; 5 minReadySeconds i; 6 revisionHistoryLimit I; 7 paused t; 9 progressDeadlineSeconds I"),
    ("DeploymentStrategy", "1 type s"),
    // batch/v1
    ("Job", "1 metadata ObjectMeta; 2 spec JobSpec"),
    ("JobSpec", "1 parallelism I; 2 completions I; 3 activeDeadlineSeconds I; 4 selector LabelSelector; 5 manualSelector t; 6 template PodTemplateSpec; 7 backoffLimit I; 8 ttlSecondsAfterFinished I; 9 completionMode s; 10 suspend t"),
    ("CronJob", "1 metadata ObjectMeta; 2 spec CronJobSpec"),
    ("CronJobSpec", "1 schedule s; 2 startingDeadlineSeconds I; 3 concurrencyPolicy s; 4 suspend t; 5 jobTemplate JobTemplateSpec; 6 successfulJobsHistoryLimit I; 7 failedJobsHistoryLimit I; 8 timeZone s"),
    ("JobTemplateSpec", "1 metadata ObjectMeta; 2 spec JobSpec"),
    // rbac/v1
    ("Role", "1 metadata ObjectMeta; 2 rules *PolicyRule"),
    ("ClusterRole", "1 metadata ObjectMeta; 2 rules *PolicyRule"),
    ("PolicyRule", "1 verbs *s; 2 apiGroups *s; 3 resources *s; 4 resourceNames *s; 5 nonResourceURLs *s"),
    ("RoleBinding", "1 metadata ObjectMeta; 2 subjects *Subject; 3 roleRef RoleRef"),
    ("ClusterRoleBinding", "1 metadata ObjectMeta; 2 subjects *Subject; 3 roleRef RoleRef"),
    ("Subject", "1 kind s; 2 apiGroup s; 3 name s; 4 namespace s"),
    ("RoleRef", "1 apiGroup s; 2 kind s; 3 name s"),
    // scheduling, policy
    ("PriorityClass", "1 metadata ObjectMeta; 2 value I; 3 globalDefault t; 4 description s; 5 preemptionPolicy s"),
    ("PodDisruptionBudget", "1 metadata ObjectMeta; 2 spec PodDisruptionBudgetSpec"),
    ("PodDisruptionBudgetSpec", "1 minAvailable ios; 2 selector LabelSelector; 3 maxUnavailable ios"),
    ("Eviction", "1 metadata ObjectMeta"),
    // authorization/v1
    ("SelfSubjectAccessReview", "1 metadata ObjectMeta; 2 spec SelfSubjectAccessReviewSpec"),
    ("SelfSubjectAccessReviewSpec", "1 resourceAttributes ResourceAttributes; 2 nonResourceAttributes NonResourceAttributes"),
    ("SubjectAccessReview", "1 metadata ObjectMeta; 2 spec SubjectAccessReviewSpec"),
    ("LocalSubjectAccessReview", "1 metadata ObjectMeta; 2 spec SubjectAccessReviewSpec"),
    ("SubjectAccessReviewSpec", "1 resourceAttributes ResourceAttributes; 2 nonResourceAttributes NonResourceAttributes; 3 user s; 4 groups *s; 6 uid s"),
    ("ResourceAttributes", "1 namespace s; 2 verb s; 3 group s; 4 version s; 5 resource s; 6 subresource s; 7 name s"),
    ("NonResourceAttributes", "1 path s; 2 verb s"),
    ("SelfSubjectRulesReview", "1 metadata ObjectMeta; 2 spec SelfSubjectRulesReviewSpec"),
    ("SelfSubjectRulesReviewSpec", "1 namespace s"),
    // authentication/v1
    ("SelfSubjectReview", "1 metadata ObjectMeta"),
    ("TokenReview", "1 metadata ObjectMeta; 2 spec TokenReviewSpec"),
    ("TokenReviewSpec", "1 token s; 2 audiences *s"),
    ("TokenRequest", "1 metadata ObjectMeta; 2 spec TokenRequestSpec"),
    ("TokenRequestSpec", "1 audiences *s; 3 boundObjectRef BoundObjectReference; 4 expirationSeconds I"),
    ("BoundObjectReference", "1 kind s; 2 apiVersion s; 3 name s; 4 uid s"),
];

#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: String,
    repeated: bool,
}

type Schema = HashMap<String, HashMap<u64, Field>>;

fn schemas() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        SCHEMAS
            .iter()
            .map(|(msg, spec)| {
                let fields = spec
                    .split(';')
                    .filter_map(|f| {
                        let mut it = f.split_whitespace();
                        let num = it.next()?.parse().ok()?;
                        let name = it.next()?.to_string();
                        let ty = it.next()?;
                        let repeated = ty.starts_with('*');
                        Some((
                            num,
                            Field {
                                name,
                                ty: ty.trim_start_matches('*').to_string(),
                                repeated,
                            },
                        ))
                    })
                    .collect();
                (msg.to_string(), fields)
            })
            .collect()
    })
}

/// The protobuf magic prefix.
const MAGIC: &[u8] = b"k8s\0";

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the server rejected our request due to an error in our request: protobuf: {msg}"
    ))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

// === impl Reader ===

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length overflow"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => {
                self.pos += 8;
                Ok(())
            }
            2 => self.bytes().map(|_| ()),
            5 => {
                self.pos += 4;
                Ok(())
            }
            _ => Err(bad("unsupported wire type")),
        }
    }
}

/// One decoded scalar or submessage, before assembly.
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Raw<'_>)>, ApiError> {
    let mut r = Reader { buf, pos: 0 };
    let mut out = Vec::new();
    while r.pos < buf.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((num, Raw::Varint(r.varint()?))),
            2 => out.push((num, Raw::Bytes(r.bytes()?))),
            w => r.skip(w)?,
        }
        if r.pos > buf.len() {
            return Err(bad("truncated message"));
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

fn decode_value(ty: &str, raw: &Raw<'_>) -> Result<Option<Value>, ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(match (ty, raw) {
        ("i", Raw::Varint(0)) => None,
        ("i" | "I", Raw::Varint(v)) => Some(json!(*v as i64)),
        ("t", Raw::Varint(v)) => Some(json!(*v != 0)),
        ("s", Raw::Bytes(b)) => Some(string(b)),
        ("b", Raw::Bytes(b)) => Some(json!(b64.encode(b))),
        ("q", Raw::Bytes(b)) => fields(b)?.into_iter().find_map(|(n, r)| match (n, r) {
            (1, Raw::Bytes(s)) => Some(string(s)),
            _ => None,
        }),
        ("ios", Raw::Bytes(b)) => {
            let (mut kind, mut int, mut s) = (0, 0i64, String::new());
            for (n, r) in fields(b)? {
                match (n, r) {
                    (1, Raw::Varint(v)) => kind = v,
                    (2, Raw::Varint(v)) => int = v as i64,
                    (3, Raw::Bytes(x)) => s = String::from_utf8_lossy(x).into_owned(),
                    _ => {}
                }
            }
            Some(if kind == 1 { json!(s) } else { json!(int) })
        }
        ("time", Raw::Bytes(b)) => {
            let secs = fields(b)?.into_iter().find_map(|(n, r)| match (n, r) {
                (1, Raw::Varint(v)) => Some(v as i64),
                _ => None,
            });
            match secs.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok()) {
                Some(t) => {
                    let fmt = time::macros::format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
                    );
                    Some(json!(t.format(&fmt).unwrap_or_default()))
                }
                None => Some(Value::Null),
            }
        }
        ("raw", Raw::Bytes(b)) => serde_json::from_slice(b).ok(),
        (msg, Raw::Bytes(b)) if schemas().contains_key(msg) => Some(decode_message(msg, b)?),
        _ => None,
    })
}

fn map_entry(ty: &str, b: &[u8]) -> Result<Option<(String, Value)>, ApiError> {
    let vty = match ty {
        "ms" => "s",
        "mb" => "b",
        _ => "q",
    };
    let (mut k, mut v) = (String::new(), json!(""));
    for (n, r) in fields(b)? {
        match (n, &r) {
            (1, Raw::Bytes(x)) => k = String::from_utf8_lossy(x).into_owned(),
            (2, _) => v = decode_value(vty, &r)?.unwrap_or(Value::Null),
            _ => {}
        }
    }
    Ok(Some((k, v)))
}

/// Decodes one message into JSON. Empty strings and false booleans are dropped (they are
/// the zero values gogo-protobuf always writes; JSON omits them).
fn decode_message(msg: &str, buf: &[u8]) -> Result<Value, ApiError> {
    let schema = schemas()
        .get(msg)
        .ok_or_else(|| bad(&format!("unsupported message {msg}")))?;
    let mut out = Map::new();
    for (num, raw) in fields(buf)? {
        let Some(f) = schema.get(&num) else {
            continue;
        };
        if matches!(f.ty.as_str(), "ms" | "mb" | "mq") {
            if let Raw::Bytes(b) = raw {
                if let Some((k, v)) = map_entry(&f.ty, b)? {
                    let m = out.entry(f.name.clone()).or_insert_with(|| json!({}));
                    m[k] = v;
                }
            }
            continue;
        }
        let Some(v) = decode_value(&f.ty, &raw)? else {
            continue;
        };
        if f.repeated {
            if let Value::Array(a) = out.entry(f.name.clone()).or_insert_with(|| json!([])) {
                a.push(v);
            }
        } else {
            if v == json!("") || v == json!(false) {
                continue;
            }
            out.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// Whether a body is a Kubernetes protobuf envelope.
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// Decodes a `k8s\0`-prefixed body into the equivalent JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing magic"))?;
    let env = decode_message("Unknown", rest)?;
    let kind = env["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api_version = env["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let raw = env["raw"].as_str().unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| bad("raw"))?;
    if !schemas().contains_key(kind.as_str()) {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (protobuf {kind} is not simulated)"),
        ));
    }
    let mut obj = decode_message(&kind, &raw)?;
    if let Value::Object(m) = &mut obj {
        let mut out = Map::new();
        out.insert("kind".into(), json!(kind));
        out.insert("apiVersion".into(), json!(api_version));
        out.append(m);
        return Ok(Value::Object(out));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn ld(num: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
    fn vi(num: u64, v: u64, out: &mut Vec<u8>) {
        varint(num << 3, out);
        varint(v, out);
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let mut meta = Vec::new();
        ld(1, b"cm", &mut meta);
        ld(3, b"", &mut meta);
        let mut label = Vec::new();
        ld(1, b"app", &mut label);
        ld(2, b"web", &mut label);
        ld(11, &label, &mut meta);
        ld(8, &[], &mut meta);
        let mut cm = Vec::new();
        ld(1, &meta, &mut cm);
        let mut entry = Vec::new();
        ld(1, b"k", &mut entry);
        ld(2, b"v", &mut entry);
        ld(2, &entry, &mut cm);
        vi(4, 0, &mut cm);
        let mut tm = Vec::new();
        ld(1, b"v1", &mut tm);
        ld(2, b"ConfigMap", &mut tm);
        let mut env = b"k8s\0".to_vec();
        ld(1, &tm, &mut env);
        ld(2, &cm, &mut env);
        ld(3, b"", &mut env);
        ld(4, b"", &mut env);
        let v = decode(&env).unwrap();
        assert_eq!(
            v,
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm", "labels": {"app": "web"}, "creationTimestamp": null}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn decodes_deployment_replicas_and_int_or_string() {
        let mut spec = Vec::new();
        vi(1, 3, &mut spec);
        let mut dep = Vec::new();
        ld(2, &spec, &mut dep);
        assert_eq!(
            decode_message("Deployment", &dep).unwrap(),
            json!({"spec": {"replicas": 3}})
        );
        let mut ios = Vec::new();
        vi(1, 1, &mut ios);
        ld(3, b"http", &mut ios);
        let mut port = Vec::new();
        vi(3, 80, &mut port);
        ld(4, &ios, &mut port);
        assert_eq!(
            decode_message("ServicePort", &port).unwrap(),
            json!({"port": 80, "targetPort": "http"})
        );
        assert!(decode(b"k8s\0\xff").is_err());
    }
}
