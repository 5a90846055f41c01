//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) as JSON.
//!
//! kubectl 1.32+ sends typed-client writes (`kubectl create configmap|secret|deployment|job|
//! role|rolebinding|...`, `kubectl auth can-i|whoami`, `kubectl create token`) as protobuf. A
//! body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` bytes are the
//! object message. Protobuf carries field numbers, not names, so this is a hand-written table
//! of the messages those commands send (field numbers are part of the stable Kubernetes wire
//! API, `k8s.io/api/*/generated.proto`).
//!
//! Two readings ([`Mode`]):
//!
//! - [`Mode::Lenient`] (the simulated API server) skips fields it does not know.
//! - [`Mode::Strict`] (policy: the guardrails must see everything the API server will) refuses
//!   a body with any field the table does not know, unless its value is empty or zero (gogo
//!   protobuf writes every non-pointer field, zero or not); refuses a non-repeated field that
//!   appears twice (Go merges or overwrites, so two readings would disagree), a field of the
//!   wrong wire type, a string that is not UTF-8, and an envelope with a content encoding.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// How [`decode`] treats what its table does not describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Skip unknown fields and tolerate odd encodings (a simulator's reading).
    Lenient,
    /// Refuse anything the JSON would not show exactly (a policy's reading).
    Strict,
}

/// Why a protobuf body was not decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// Not a well-formed Kubernetes protobuf body.
    #[error("protobuf: {0}")]
    Invalid(String),
    /// Well-formed, but (strict) holds a field the table does not describe.
    #[error("protobuf: {0}")]
    Unsupported(String),
    /// A kind the table does not describe.
    #[error("protobuf: kind {0:?} is not one Airlock reads")]
    UnknownKind(String),
}

/// Message schemas: `number name type` entries separated by `;`. Types: `s` string, `b` bytes
/// (base64 in JSON), `i`/`l` int32/int64 (zero dropped: a non-pointer Go field), `I`/`L`
/// int32/int64 (pointer field: zero kept), `t` bool (false dropped), `T` a pointer bool (false
/// kept: it is set), `skip` a field the API server ignores
/// from clients (`status` on create and update), `ms`/`mb`/`mq` maps of string/bytes/Quantity,
/// `time`, `ios` IntOrString, `q` Quantity, `raw` RawExtension, or a message name.
/// A leading `*` marks a repeated field; a leading `-` on the name a message embedded inline
/// (its fields are the parent's in JSON).
const SCHEMAS: &[(&str, &str)] = &[
    ("Unknown", "1 typeMeta TypeMeta; 2 raw b; 3 contentEncoding s; 4 contentType s"),
    ("TypeMeta", "1 apiVersion s; 2 kind s"),
    ("ObjectMeta", "1 name s; 2 generateName s; 3 namespace s; 5 uid s; 6 resourceVersion s; 7 generation l; 8 creationTimestamp time; 10 deletionGracePeriodSeconds L; 11 labels ms; 12 annotations ms; 13 ownerReferences *OwnerReference; 14 finalizers *s"),
    ("OwnerReference", "1 kind s; 3 name s; 4 uid s; 5 apiVersion s; 6 controller T; 7 blockOwnerDeletion T"),
    ("LabelSelector", "1 matchLabels ms; 2 matchExpressions *LabelSelectorRequirement"),
    ("LabelSelectorRequirement", "1 key s; 2 operator s; 3 values *s"),
    // core/v1
    ("ConfigMap", "1 metadata ObjectMeta; 2 data ms; 3 binaryData mb; 4 immutable T"),
    ("Secret", "1 metadata ObjectMeta; 2 data mb; 3 type s; 4 stringData ms; 5 immutable T"),
    ("Namespace", "1 metadata ObjectMeta; 2 spec NamespaceSpec; 3 status skip"),
    ("NamespaceSpec", "1 finalizers *s"),
    ("ServiceAccount", "1 metadata ObjectMeta; 2 secrets *ObjectReference; 3 imagePullSecrets *LocalObjectReference; 4 automountServiceAccountToken T"),
    ("ObjectReference", "1 kind s; 2 namespace s; 3 name s; 4 uid s; 5 apiVersion s; 6 resourceVersion s; 7 fieldPath s"),
    ("LocalObjectReference", "1 name s"),
    ("Service", "1 metadata ObjectMeta; 2 spec ServiceSpec; 3 status skip"),
    ("ServiceSpec", "1 ports *ServicePort; 2 selector ms; 3 clusterIP s; 4 type s; 5 externalIPs *s; 7 sessionAffinity s; 8 loadBalancerIP s; 9 loadBalancerSourceRanges *s; 10 externalName s; 11 externalTrafficPolicy s; 12 healthCheckNodePort i; 13 publishNotReadyAddresses t; 17 ipFamilyPolicy s; 18 clusterIPs *s; 19 ipFamilies *s; 20 allocateLoadBalancerNodePorts T; 21 loadBalancerClass s; 22 internalTrafficPolicy s"),
    ("ServicePort", "1 name s; 2 protocol s; 3 port i; 4 targetPort ios; 5 nodePort i; 6 appProtocol s"),
    ("Pod", "1 metadata ObjectMeta; 2 spec PodSpec; 3 status skip"),
    ("PodTemplateSpec", "1 metadata ObjectMeta; 2 spec PodSpec"),
    ("PodSpec", "1 volumes *Volume; 2 containers *Container; 3 restartPolicy s; 4 terminationGracePeriodSeconds L; 5 activeDeadlineSeconds L; 6 dnsPolicy s; 7 nodeSelector ms; 8 serviceAccountName s; 9 serviceAccount s; 10 nodeName s; 11 hostNetwork t; 12 hostPID t; 13 hostIPC t; 15 imagePullSecrets *LocalObjectReference; 16 hostname s; 17 subdomain s; 19 schedulerName s; 20 initContainers *Container; 21 automountServiceAccountToken T; 22 tolerations *Toleration; 24 priorityClassName s; 25 priority I"),
    ("Container", "1 name s; 2 image s; 3 command *s; 4 args *s; 5 workingDir s; 6 ports *ContainerPort; 7 env *EnvVar; 8 resources ResourceRequirements; 9 volumeMounts *VolumeMount; 13 terminationMessagePath s; 14 imagePullPolicy s; 15 securityContext SecurityContext; 16 stdin t; 17 stdinOnce t; 18 tty t; 20 terminationMessagePolicy s"),
    // `kubectl debug node/...`: host namespaces, the node's root filesystem as a hostPath
    // volume, a toleration of every taint, and with `--profile=sysadmin|netadmin` a container
    // security context. Of the volume sources only hostPath is known: any other is refused.
    ("Volume", "1 name s; 2 -volumeSource VolumeSource"),
    ("VolumeSource", "1 hostPath HostPathVolumeSource"),
    ("HostPathVolumeSource", "1 path s; 2 type s"),
    ("VolumeMount", "1 name s; 2 readOnly t; 3 mountPath s; 4 subPath s; 5 mountPropagation s; 6 subPathExpr s; 7 recursiveReadOnly s"),
    ("Toleration", "1 key s; 2 operator s; 3 value s; 4 effect s; 5 tolerationSeconds L"),
    ("SecurityContext", "1 capabilities Capabilities; 2 privileged T; 4 runAsUser L; 5 runAsNonRoot T; 6 readOnlyRootFilesystem T; 7 allowPrivilegeEscalation T; 8 runAsGroup L; 9 procMount s; 11 seccompProfile SeccompProfile"),
    ("Capabilities", "1 add *s; 2 drop *s"),
    ("SeccompProfile", "1 type s; 2 localhostProfile s"),
    ("ContainerPort", "1 name s; 2 hostPort i; 3 containerPort i; 4 protocol s; 5 hostIP s"),
    ("EnvVar", "1 name s; 2 value s"),
    ("ResourceRequirements", "1 limits mq; 2 requests mq"),
    ("ResourceQuota", "1 metadata ObjectMeta; 2 spec ResourceQuotaSpec; 3 status skip"),
    ("ResourceQuotaSpec", "1 hard mq; 2 scopes *s"),
    // apps/v1
    ("Deployment", "1 metadata ObjectMeta; 2 spec DeploymentSpec; 3 status skip"),
    ("DeploymentSpec", "1 replicas I; 2 selector LabelSelector; 3 template PodTemplateSpec; 4 strategy DeploymentStrategy; 5 minReadySeconds i; 6 revisionHistoryLimit I; 7 paused t; 9 progressDeadlineSeconds I"),
    ("DeploymentStrategy", "1 type s"),
    // batch/v1
    ("Job", "1 metadata ObjectMeta; 2 spec JobSpec; 3 status skip"),
    ("JobSpec", "1 parallelism I; 2 completions I; 3 activeDeadlineSeconds L; 4 selector LabelSelector; 5 manualSelector T; 6 template PodTemplateSpec; 7 backoffLimit I; 8 ttlSecondsAfterFinished I; 9 completionMode s; 10 suspend T"),
    ("CronJob", "1 metadata ObjectMeta; 2 spec CronJobSpec; 3 status skip"),
    ("CronJobSpec", "1 schedule s; 2 startingDeadlineSeconds L; 3 concurrencyPolicy s; 4 suspend T; 5 jobTemplate JobTemplateSpec; 6 successfulJobsHistoryLimit I; 7 failedJobsHistoryLimit I; 8 timeZone s"),
    ("JobTemplateSpec", "1 metadata ObjectMeta; 2 spec JobSpec"),
    // rbac/v1
    ("Role", "1 metadata ObjectMeta; 2 rules *PolicyRule"),
    ("ClusterRole", "1 metadata ObjectMeta; 2 rules *PolicyRule; 3 aggregationRule AggregationRule"),
    ("AggregationRule", "1 clusterRoleSelectors *LabelSelector"),
    ("PolicyRule", "1 verbs *s; 2 apiGroups *s; 3 resources *s; 4 resourceNames *s; 5 nonResourceURLs *s"),
    ("RoleBinding", "1 metadata ObjectMeta; 2 subjects *Subject; 3 roleRef RoleRef"),
    ("ClusterRoleBinding", "1 metadata ObjectMeta; 2 subjects *Subject; 3 roleRef RoleRef"),
    ("Subject", "1 kind s; 2 apiGroup s; 3 name s; 4 namespace s"),
    ("RoleRef", "1 apiGroup s; 2 kind s; 3 name s"),
    // networking.k8s.io/v1 (`kubectl create ingress`)
    ("Ingress", "1 metadata ObjectMeta; 2 spec IngressSpec; 3 status skip"),
    ("IngressSpec", "1 defaultBackend IngressBackend; 2 tls *IngressTLS; 3 rules *IngressRule; 4 ingressClassName s"),
    ("IngressBackend", "3 resource TypedLocalObjectReference; 4 service IngressServiceBackend"),
    ("IngressServiceBackend", "1 name s; 2 port ServiceBackendPort"),
    ("ServiceBackendPort", "1 name s; 2 number i"),
    ("TypedLocalObjectReference", "1 apiGroup s; 2 kind s; 3 name s"),
    ("IngressTLS", "1 hosts *s; 2 secretName s"),
    // `ingressRuleValue` is embedded inline in Go, so its fields (`http`) sit in the rule in JSON.
    ("IngressRule", "1 host s; 2 -ingressRuleValue IngressRuleValue"),
    ("IngressRuleValue", "1 http HTTPIngressRuleValue"),
    ("HTTPIngressRuleValue", "1 paths *HTTPIngressPath"),
    ("HTTPIngressPath", "1 path s; 2 backend IngressBackend; 3 pathType s"),
    // autoscaling/v2 (`kubectl autoscale`)
    ("HorizontalPodAutoscaler", "1 metadata ObjectMeta; 2 spec HorizontalPodAutoscalerSpec; 3 status skip"),
    ("HorizontalPodAutoscalerSpec", "1 scaleTargetRef CrossVersionObjectReference; 2 minReplicas I; 3 maxReplicas i; 4 metrics *MetricSpec; 5 behavior HorizontalPodAutoscalerBehavior"),
    ("CrossVersionObjectReference", "1 kind s; 2 name s; 3 apiVersion s"),
    ("MetricSpec", "1 type s; 2 object ObjectMetricSource; 3 pods PodsMetricSource; 4 resource ResourceMetricSource; 5 external ExternalMetricSource; 7 containerResource ContainerResourceMetricSource"),
    ("ResourceMetricSource", "1 name s; 2 target MetricTarget"),
    ("ContainerResourceMetricSource", "1 name s; 2 target MetricTarget; 3 container s"),
    ("PodsMetricSource", "1 metric MetricIdentifier; 2 target MetricTarget"),
    ("ExternalMetricSource", "1 metric MetricIdentifier; 2 target MetricTarget"),
    ("ObjectMetricSource", "1 describedObject CrossVersionObjectReference; 2 target MetricTarget; 3 metric MetricIdentifier"),
    ("MetricIdentifier", "1 name s; 2 selector LabelSelector"),
    ("MetricTarget", "1 type s; 2 value q; 3 averageValue q; 4 averageUtilization I"),
    // autoscaling/v1 (`kubectl autoscale` before autoscaling/v2): the same kind, other fields.
    ("HorizontalPodAutoscalerV1", "1 metadata ObjectMeta; 2 spec HorizontalPodAutoscalerSpecV1; 3 status skip"),
    ("HorizontalPodAutoscalerSpecV1", "1 scaleTargetRef CrossVersionObjectReference; 2 minReplicas I; 3 maxReplicas i; 4 targetCPUUtilizationPercentage I"),
    ("HorizontalPodAutoscalerBehavior", "1 scaleUp HPAScalingRules; 2 scaleDown HPAScalingRules"),
    ("HPAScalingRules", "1 selectPolicy s; 2 policies *HPAScalingPolicy; 3 stabilizationWindowSeconds I; 4 tolerance q"),
    ("HPAScalingPolicy", "1 type s; 2 value i; 3 periodSeconds i"),
    // scheduling, policy
    ("PriorityClass", "1 metadata ObjectMeta; 2 value I; 3 globalDefault t; 4 description s; 5 preemptionPolicy s"),
    ("PodDisruptionBudget", "1 metadata ObjectMeta; 2 spec PodDisruptionBudgetSpec; 3 status skip"),
    ("PodDisruptionBudgetSpec", "1 minAvailable ios; 2 selector LabelSelector; 3 maxUnavailable ios"),
    ("Eviction", "1 metadata ObjectMeta; 2 deleteOptions DeleteOptions"),
    ("DeleteOptions", "1 gracePeriodSeconds L; 2 preconditions Preconditions; 3 orphanDependents T; 4 propagationPolicy s; 5 dryRun *s"),
    ("Preconditions", "1 uid s; 2 resourceVersion s"),
    // authorization/v1
    ("SelfSubjectAccessReview", "1 metadata ObjectMeta; 2 spec SelfSubjectAccessReviewSpec; 3 status skip"),
    ("SelfSubjectAccessReviewSpec", "1 resourceAttributes ResourceAttributes; 2 nonResourceAttributes NonResourceAttributes"),
    ("SubjectAccessReview", "1 metadata ObjectMeta; 2 spec SubjectAccessReviewSpec; 3 status skip"),
    ("LocalSubjectAccessReview", "1 metadata ObjectMeta; 2 spec SubjectAccessReviewSpec; 3 status skip"),
    ("SubjectAccessReviewSpec", "1 resourceAttributes ResourceAttributes; 2 nonResourceAttributes NonResourceAttributes; 3 user s; 4 groups *s; 6 uid s"),
    ("ResourceAttributes", "1 namespace s; 2 verb s; 3 group s; 4 version s; 5 resource s; 6 subresource s; 7 name s"),
    ("NonResourceAttributes", "1 path s; 2 verb s"),
    ("SelfSubjectRulesReview", "1 metadata ObjectMeta; 2 spec SelfSubjectRulesReviewSpec; 3 status skip"),
    ("SelfSubjectRulesReviewSpec", "1 namespace s"),
    // authentication/v1
    ("SelfSubjectReview", "1 metadata ObjectMeta; 2 status skip"),
    ("TokenReview", "1 metadata ObjectMeta; 2 spec TokenReviewSpec; 3 status skip"),
    ("TokenReviewSpec", "1 token s; 2 audiences *s"),
    ("TokenRequest", "1 metadata ObjectMeta; 2 spec TokenRequestSpec; 3 status skip"),
    ("TokenRequestSpec", "1 audiences *s; 3 boundObjectRef BoundObjectReference; 4 expirationSeconds L"),
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

/// The kinds a body may be (the rest of the table are the messages inside them).
const KINDS: &[&str] = &[
    "ConfigMap",
    "Secret",
    "Namespace",
    "ServiceAccount",
    "Service",
    "Pod",
    "ResourceQuota",
    "Deployment",
    "Job",
    "CronJob",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "PriorityClass",
    "PodDisruptionBudget",
    "Ingress",
    "HorizontalPodAutoscaler",
    "Eviction",
    "SelfSubjectAccessReview",
    "SubjectAccessReview",
    "LocalSubjectAccessReview",
    "SelfSubjectRulesReview",
    "SelfSubjectReview",
    "TokenReview",
    "TokenRequest",
];

/// The largest field number protobuf allows.
const MAX_FIELD: u64 = (1 << 29) - 1;

/// The protobuf magic prefix.
const MAGIC: &[u8] = b"k8s\0";

fn bad(msg: impl Into<String>) -> ProtobufError {
    ProtobufError::Invalid(msg.into())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

// === impl Reader ===

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
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

    fn take(&mut self, len: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length overflow"))?;
        self.take(len)
    }
}

/// One decoded scalar or submessage, before assembly.
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed32 or fixed64 (doubles, floats): no field in the table has this wire type.
    Fixed(&'a [u8]),
}

impl Raw<'_> {
    /// Zero or empty: what gogo writes for a scalar nobody set. A message is zero only when
    /// it has no bytes at all: an empty message inside one can mean something (an empty
    /// label selector selects everything), and bytes that parse as one may be a string.
    fn is_zero(&self) -> bool {
        match self {
            Raw::Varint(v) => *v == 0,
            Raw::Fixed(b) => b.iter().all(|&x| x == 0),
            Raw::Bytes(b) => b.is_empty(),
        }
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Raw<'_>)>, ProtobufError> {
    let mut r = Reader { buf, pos: 0 };
    let mut out = Vec::new();
    while r.pos < buf.len() {
        let tag = r.varint()?;
        // gogo's generated code reads the number as `int32(tag >> 3)`: a larger number is
        // another field to Go (2^32 + 2 is field 2), so it must not be an unknown one here.
        let (num, wire) = (tag >> 3, tag & 7);
        if num == 0 || num > MAX_FIELD {
            return Err(bad("a field number out of range"));
        }
        match wire {
            0 => out.push((num, Raw::Varint(r.varint()?))),
            1 => out.push((num, Raw::Fixed(r.take(8)?))),
            2 => out.push((num, Raw::Bytes(r.bytes()?))),
            5 => out.push((num, Raw::Fixed(r.take(4)?))),
            _ => return Err(bad("unsupported wire type")),
        }
    }
    Ok(out)
}

fn text(b: &[u8], mode: Mode) -> Result<String, ProtobufError> {
    match (std::str::from_utf8(b), mode) {
        (Ok(s), _) => Ok(s.to_owned()),
        (Err(_), Mode::Lenient) => Ok(String::from_utf8_lossy(b).into_owned()),
        (Err(_), Mode::Strict) => Err(bad("a string is not UTF-8")),
    }
}

fn string(b: &[u8], mode: Mode) -> Result<Value, ProtobufError> {
    text(b, mode).map(Value::String)
}

fn decode_value(ty: &str, raw: &Raw<'_>, mode: Mode) -> Result<Option<Value>, ProtobufError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(match (ty, raw) {
        ("skip", _) => None,
        ("i" | "l", Raw::Varint(0)) => None,
        ("l" | "L", Raw::Varint(v)) => Some(json!(*v as i64)),
        // Go keeps the low 32 bits of an int32's varint; a value that does not survive that is
        // two different numbers to the two readers.
        ("i" | "I", Raw::Varint(v)) => {
            let go = i64::from(*v as u32 as i32);
            if mode == Mode::Strict && go != *v as i64 {
                return Err(bad("an int32 field out of range"));
            }
            Some(json!(go))
        }
        ("t" | "T", Raw::Varint(v)) => Some(json!(*v != 0)),
        ("s", Raw::Bytes(b)) => Some(string(b, mode)?),
        ("b", Raw::Bytes(b)) => Some(json!(b64.encode(b))),
        ("q", Raw::Bytes(b)) => {
            let mut q = None;
            for (n, r) in fields(b)? {
                match (n, r) {
                    (1, Raw::Bytes(s)) => q = Some(string(s, mode)?),
                    (_, r) if mode == Mode::Strict && !r.is_zero() => {
                        return Err(ProtobufError::Unsupported(
                            "an unknown Quantity field".into(),
                        ))
                    }
                    _ => {}
                }
            }
            q
        }
        ("ios", Raw::Bytes(b)) => {
            let (mut kind, mut int, mut s) = (0, 0i64, String::new());
            for (n, r) in fields(b)? {
                match (n, r) {
                    (1, Raw::Varint(v)) => kind = v,
                    (2, Raw::Varint(v)) => {
                        int = i64::from(v as u32 as i32);
                        if mode == Mode::Strict && int != v as i64 {
                            return Err(bad("an int32 field out of range"));
                        }
                    }
                    (3, Raw::Bytes(x)) => s = text(x, mode)?,
                    (_, r) if mode == Mode::Strict && !r.is_zero() => {
                        return Err(ProtobufError::Unsupported(
                            "an unknown IntOrString field".into(),
                        ))
                    }
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
            // metav1.Time reads seconds 0 as the zero time, which JSON writes as null.
            Some(
                secs.filter(|&s| s != 0)
                    .and_then(rfc3339)
                    .map_or(Value::Null, Value::String),
            )
        }
        ("raw", Raw::Bytes(b)) => match (serde_json::from_slice(b), mode) {
            (Ok(v), _) => Some(v),
            (Err(_), Mode::Lenient) => None,
            (Err(_), Mode::Strict) => {
                return Err(ProtobufError::Unsupported(
                    "an embedded object that is not JSON".into(),
                ))
            }
        },
        (msg, Raw::Bytes(b)) if schemas().contains_key(msg) => Some(decode_message(msg, b, mode)?),
        _ if mode == Mode::Strict => {
            return Err(bad(format!("a {ty} field has the wrong wire type")))
        }
        _ => None,
    })
}

fn map_entry(ty: &str, b: &[u8], mode: Mode) -> Result<Option<(String, Value)>, ProtobufError> {
    let vty = match ty {
        "ms" => "s",
        "mb" => "b",
        _ => "q",
    };
    let (mut k, mut v) = (String::new(), Value::Null);
    for (n, r) in fields(b)? {
        match (n, &r) {
            (1, Raw::Bytes(x)) => k = text(x, mode)?,
            (2, _) => v = decode_value(vty, &r, mode)?.unwrap_or(Value::Null),
            _ if mode == Mode::Strict => return Err(bad("a map entry with an unknown field")),
            _ => {}
        }
    }
    Ok(Some((k, v)))
}

/// Decodes one message into JSON. Empty strings and false booleans are dropped (they are
/// the zero values gogo-protobuf always writes; JSON omits them).
fn decode_message(msg: &str, buf: &[u8], mode: Mode) -> Result<Value, ProtobufError> {
    let schema = schemas()
        .get(msg)
        .ok_or_else(|| ProtobufError::Unsupported(format!("message {msg}")))?;
    let mut out = Map::new();
    let mut seen = Vec::new();
    for (num, raw) in fields(buf)? {
        let Some(f) = schema.get(&num) else {
            if mode == Mode::Strict && !raw.is_zero() {
                return Err(ProtobufError::Unsupported(format!(
                    "field {num} of {msg}, which Airlock does not know"
                )));
            }
            continue;
        };
        if matches!(f.ty.as_str(), "ms" | "mb" | "mq") {
            match raw {
                Raw::Bytes(b) => {
                    if let Some((k, v)) = map_entry(&f.ty, b, mode)? {
                        let m = out.entry(f.name.clone()).or_insert_with(|| json!({}));
                        m[k] = v;
                    }
                }
                _ if mode == Mode::Strict => {
                    return Err(bad(format!("{msg}.{} is not a map", f.name)))
                }
                _ => {}
            }
            continue;
        }
        if !f.repeated && mode == Mode::Strict {
            if seen.contains(&num) {
                return Err(bad(format!(
                    "{msg}.{} appears twice",
                    f.name.trim_start_matches('-')
                )));
            }
            seen.push(num);
        }
        let Some(v) = decode_value(&f.ty, &raw, mode)? else {
            continue;
        };
        if f.name.starts_with('-') {
            // A Go struct embedded inline: its fields are the parent's in JSON.
            if let Value::Object(m) = v {
                for (k, v) in m {
                    if out.contains_key(&k) && mode == Mode::Strict {
                        return Err(bad(format!("{msg}.{k} appears twice")));
                    }
                    out.insert(k, v);
                }
            }
            continue;
        }
        if f.repeated {
            if let Value::Array(a) = out.entry(f.name.clone()).or_insert_with(|| json!([])) {
                a.push(v);
            }
        } else {
            if v == json!("") || (v == json!(false) && f.ty != "T") {
                continue;
            }
            out.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// `2006-01-02T15:04:05Z` for seconds since the epoch (days to civil date: H. Hinnant's
/// algorithm).
fn rfc3339(secs: i64) -> Option<String> {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (0..=9999).contains(&year).then(|| {
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    })
}

/// Whether a body is a Kubernetes protobuf envelope.
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// Decodes a `k8s\0`-prefixed body into the equivalent JSON object.
pub fn decode(body: &[u8], mode: Mode) -> Result<Value, ProtobufError> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing magic"))?;
    let env = decode_message("Unknown", rest, mode)?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let kind = text(&env["typeMeta"]["kind"]);
    let api_version = text(&env["typeMeta"]["apiVersion"]);
    if mode == Mode::Strict
        && (!text(&env["contentEncoding"]).is_empty()
            || !matches!(
                text(&env["contentType"]).as_str(),
                "" | "application/vnd.kubernetes.protobuf"
            ))
    {
        return Err(ProtobufError::Unsupported(
            "an envelope with a content encoding or another content type".into(),
        ));
    }
    let raw = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text(&env["raw"]))
            .map_err(|_| bad("raw"))?
    };
    // kube-apiserver fills a blank kind or version in from the URL, so a blank one could be
    // any kind to it: for the policy, such a body is unreadable everywhere, not unknown.
    if mode == Mode::Strict && (kind.is_empty() || api_version.is_empty()) {
        return Err(ProtobufError::Unsupported(
            "an envelope without its apiVersion or kind".into(),
        ));
    }
    if !KINDS.contains(&kind.as_str()) {
        return Err(ProtobufError::UnknownKind(kind));
    }
    // A kind whose fields differ between the versions kubectl sends.
    let schema = match (kind.as_str(), api_version.as_str()) {
        ("HorizontalPodAutoscaler", "autoscaling/v2") => kind.as_str(),
        ("HorizontalPodAutoscaler", "autoscaling/v1") => "HorizontalPodAutoscalerV1",
        // A known kind in a version whose fields are not in the table.
        ("HorizontalPodAutoscaler", _) if mode == Mode::Strict => {
            return Err(ProtobufError::Unsupported(format!("{api_version} {kind}")))
        }
        ("HorizontalPodAutoscaler", _) => {
            return Err(ProtobufError::UnknownKind(format!("{api_version} {kind}")))
        }
        _ => kind.as_str(),
    };
    let mut obj = decode_message(schema, &raw, mode)?;
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
    fn type_meta(api_version: &str, kind: &str) -> Vec<u8> {
        let mut tm = Vec::new();
        ld(1, api_version.as_bytes(), &mut tm);
        ld(2, kind.as_bytes(), &mut tm);
        tm
    }
    /// A `k8s\0` body: the envelope with `tm` and `raw`, and the empty strings gogo writes.
    fn envelope(tm: &[u8], raw: &[u8]) -> Vec<u8> {
        let mut env = b"k8s\0".to_vec();
        ld(1, tm, &mut env);
        ld(2, raw, &mut env);
        ld(3, b"", &mut env);
        ld(4, b"", &mut env);
        env
    }

    /// A Pod body whose spec holds one volume (`vol`, an encoded Volume message).
    fn pod_with_volume(vol: &[u8]) -> Vec<u8> {
        let mut spec = Vec::new();
        ld(1, vol, &mut spec);
        let mut pod = Vec::new();
        ld(2, &spec, &mut pod);
        envelope(&type_meta("v1", "Pod"), &pod)
    }

    #[test]
    fn a_node_debugger_pod_shows_its_host_path_and_privilege() {
        // What `kubectl debug node/n1 --profile=sysadmin` sends, less the zero fields.
        let mut caps = Vec::new();
        ld(1, b"SYS_ADMIN", &mut caps);
        let mut sc = Vec::new();
        ld(1, &caps, &mut sc);
        vi(2, 1, &mut sc);
        let mut mount = Vec::new();
        ld(1, b"host-root", &mut mount);
        ld(3, b"/host", &mut mount);
        let mut c = Vec::new();
        ld(1, b"debugger", &mut c);
        ld(2, b"busybox", &mut c);
        ld(9, &mount, &mut c);
        ld(15, &sc, &mut c);
        let mut host_path = Vec::new();
        ld(1, b"/", &mut host_path);
        let mut source = Vec::new();
        ld(1, &host_path, &mut source);
        let mut vol = Vec::new();
        ld(1, b"host-root", &mut vol);
        ld(2, &source, &mut vol);
        let mut tol = Vec::new();
        ld(2, b"Exists", &mut tol);
        let mut spec = Vec::new();
        ld(1, &vol, &mut spec);
        ld(2, &c, &mut spec);
        ld(10, b"n1", &mut spec);
        vi(11, 1, &mut spec);
        vi(12, 1, &mut spec);
        ld(22, &tol, &mut spec);
        let mut pod = Vec::new();
        ld(2, &spec, &mut pod);
        let body = envelope(&type_meta("v1", "Pod"), &pod);
        let v = decode(&body, Mode::Strict).unwrap();
        assert_eq!(
            v["spec"],
            json!({"volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
                "containers": [{"name": "debugger", "image": "busybox",
                    "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                    "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}, "privileged": true}}],
                "nodeName": "n1", "hostNetwork": true, "hostPID": true,
                "tolerations": [{"operator": "Exists"}]})
        );
        // Any other volume source is unknown, so refused rather than read as no hostPath.
        let mut empty_dir = Vec::new();
        ld(2, &[0x0a, 0x01, b'M'], &mut empty_dir);
        let mut vol = Vec::new();
        ld(1, b"scratch", &mut vol);
        ld(2, &empty_dir, &mut vol);
        assert!(decode(&pod_with_volume(&vol), Mode::Strict).is_err());
        // The inline source twice (Go merges both into one) is refused.
        let mut vol = Vec::new();
        ld(1, b"twice", &mut vol);
        ld(2, &source, &mut vol);
        ld(2, &source, &mut vol);
        assert!(decode(&pod_with_volume(&vol), Mode::Strict).is_err());
    }

    #[test]
    fn an_ingress_rule_holds_its_inline_value() {
        // rules[0] = {host, ingressRuleValue: {http: {paths: [{path, backend, pathType}]}}}
        let mut port = Vec::new();
        vi(2, 80, &mut port);
        let mut svc = Vec::new();
        ld(1, b"web", &mut svc);
        ld(2, &port, &mut svc);
        let mut backend = Vec::new();
        ld(4, &svc, &mut backend);
        let mut path = Vec::new();
        ld(1, b"/api", &mut path);
        ld(2, &backend, &mut path);
        ld(3, b"Prefix", &mut path);
        let mut http = Vec::new();
        ld(1, &path, &mut http);
        let mut value = Vec::new();
        ld(1, &http, &mut value);
        let mut rule = Vec::new();
        ld(1, b"shop.example.com", &mut rule);
        ld(2, &value, &mut rule);
        let mut spec = Vec::new();
        ld(3, &rule, &mut spec);
        ld(4, b"nginx", &mut spec);
        let mut ing = Vec::new();
        ld(2, &spec, &mut ing);
        let env = envelope(&type_meta("networking.k8s.io/v1", "Ingress"), &ing);
        let v = decode(&env, Mode::Strict).unwrap();
        assert_eq!(
            v["spec"],
            json!({"rules": [{"host": "shop.example.com", "http": {"paths": [
                {"path": "/api", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}],
                "ingressClassName": "nginx"})
        );
    }

    #[test]
    fn a_horizontal_pod_autoscaler_is_read_by_its_version() {
        let mut target = Vec::new();
        ld(1, b"Deployment", &mut target);
        ld(2, b"web", &mut target);
        let spec = |field4: &[u8]| {
            let mut spec = Vec::new();
            ld(1, &target, &mut spec);
            vi(2, 2, &mut spec);
            vi(3, 5, &mut spec);
            spec.extend_from_slice(field4);
            let mut hpa = Vec::new();
            ld(2, &spec, &mut hpa);
            hpa
        };
        // v1: field 4 is targetCPUUtilizationPercentage, an int32.
        let mut cpu = Vec::new();
        vi(4, 50, &mut cpu);
        let v1 = envelope(
            &type_meta("autoscaling/v1", "HorizontalPodAutoscaler"),
            &spec(&cpu),
        );
        let v = decode(&v1, Mode::Strict).unwrap();
        assert_eq!(v["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v["spec"]["minReplicas"], 2);
        // v2: field 4 is metrics, a repeated message.
        let mut mt = Vec::new();
        ld(1, b"Utilization", &mut mt);
        vi(4, 50, &mut mt);
        let mut res = Vec::new();
        ld(1, b"cpu", &mut res);
        ld(2, &mt, &mut res);
        let mut metric = Vec::new();
        ld(1, b"Resource", &mut metric);
        ld(4, &res, &mut metric);
        let mut metrics = Vec::new();
        ld(4, &metric, &mut metrics);
        let v2 = envelope(
            &type_meta("autoscaling/v2", "HorizontalPodAutoscaler"),
            &spec(&metrics),
        );
        let v = decode(&v2, Mode::Strict).unwrap();
        assert_eq!(
            v["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        // Read with the other version's fields, each body is wrong: refused, not misread.
        let swapped = envelope(
            &type_meta("autoscaling/v2", "HorizontalPodAutoscaler"),
            &spec(&cpu),
        );
        assert!(decode(&swapped, Mode::Strict).is_err());
        let other = envelope(
            &type_meta("autoscaling/v2beta2", "HorizontalPodAutoscaler"),
            &spec(&cpu),
        );
        assert!(matches!(
            decode(&other, Mode::Lenient),
            Err(ProtobufError::UnknownKind(_))
        ));
        // For the policy a known kind in another version is unreadable, not unknown.
        assert!(matches!(
            decode(&other, Mode::Strict),
            Err(ProtobufError::Unsupported(_))
        ));
        // So is an envelope with a blank kind or version: the API server takes them from the
        // URL.
        for (v, k) in [("", "HorizontalPodAutoscaler"), ("autoscaling/v2", "")] {
            let blank = envelope(&type_meta(v, k), &spec(&cpu));
            assert!(
                matches!(
                    decode(&blank, Mode::Strict),
                    Err(ProtobufError::Unsupported(_))
                ),
                "{v:?} {k:?}"
            );
        }
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
        // `immutable` is a *bool: gogo writes it only when set, so a false one is kept.
        vi(4, 0, &mut cm);
        let env = envelope(&type_meta("v1", "ConfigMap"), &cm);
        let v = decode(&env, Mode::Lenient).unwrap();
        assert_eq!(
            v,
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm", "labels": {"app": "web"}, "creationTimestamp": null}, "data": {"k": "v"}, "immutable": false})
        );
    }

    #[test]
    fn decodes_deployment_replicas_and_int_or_string() {
        let mut spec = Vec::new();
        vi(1, 3, &mut spec);
        let mut dep = Vec::new();
        ld(2, &spec, &mut dep);
        assert_eq!(
            decode_message("Deployment", &dep, Mode::Lenient).unwrap(),
            json!({"spec": {"replicas": 3}})
        );
        let mut ios = Vec::new();
        vi(1, 1, &mut ios);
        ld(3, b"http", &mut ios);
        let mut port = Vec::new();
        vi(3, 80, &mut port);
        ld(4, &ios, &mut port);
        assert_eq!(
            decode_message("ServicePort", &port, Mode::Lenient).unwrap(),
            json!({"port": 80, "targetPort": "http"})
        );
        assert!(decode(b"k8s\0\xff", Mode::Lenient).is_err());
    }

    /// A Deployment as `kubectl create deployment` (1.32+) sends it: every non-pointer field
    /// written, zero or not, `selfLink` and an empty status included.
    fn deployment(container_extra: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        ld(1, b"app", &mut c);
        ld(2, b"nginx", &mut c);
        ld(5, b"", &mut c);
        ld(8, b"", &mut c);
        ld(13, b"", &mut c);
        vi(16, 0, &mut c);
        c.extend_from_slice(container_extra);
        let mut pod = Vec::new();
        ld(2, &c, &mut pod);
        vi(11, 0, &mut pod);
        let mut tmpl = Vec::new();
        ld(2, &pod, &mut tmpl);
        let mut spec = Vec::new();
        vi(1, 1, &mut spec);
        ld(3, &tmpl, &mut spec);
        let mut meta = Vec::new();
        ld(1, b"d2", &mut meta);
        ld(4, b"", &mut meta); // selfLink: unknown here, and empty
        let mut status = Vec::new();
        vi(1, 0, &mut status);
        vi(2, 0, &mut status);
        let mut dep = Vec::new();
        ld(1, &meta, &mut dep);
        ld(2, &spec, &mut dep);
        ld(3, &status, &mut dep);
        envelope(&type_meta("apps/v1", "Deployment"), &dep)
    }

    #[test]
    fn strict_reads_what_kubectl_create_sends() {
        let v = decode(&deployment(&[]), Mode::Strict).unwrap();
        assert_eq!(
            v,
            json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d2"},
                "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app", "image": "nginx", "resources": {}}]}}}})
        );
    }

    #[test]
    fn strict_refuses_what_it_cannot_show() {
        // A container livenessProbe (field 10) with initialDelaySeconds (field 2).
        let mut probe = Vec::new();
        vi(2, 5, &mut probe);
        let mut extra = Vec::new();
        ld(10, &probe, &mut extra);
        let body = deployment(&extra);
        assert!(matches!(
            decode(&body, Mode::Strict),
            Err(ProtobufError::Unsupported(m)) if m.contains("field 10 of Container")
        ));
        // The simulator's lenient reading skips it.
        assert!(decode(&body, Mode::Lenient).is_ok());
        // A field twice: Go would keep the last image, or merge a message.
        let mut twice = Vec::new();
        ld(2, b"evil", &mut twice);
        assert!(matches!(
            decode(&deployment(&twice), Mode::Strict),
            Err(ProtobufError::Invalid(m)) if m.contains("appears twice")
        ));
        // The wrong wire type for a known field, and a string that is not UTF-8.
        let mut wire = Vec::new();
        vi(2, 7, &mut wire);
        assert!(decode(&deployment(&wire), Mode::Strict).is_err());
        let mut utf = Vec::new();
        ld(5, b"\xff", &mut utf);
        assert!(decode(&deployment(&utf), Mode::Strict).is_err());
    }

    /// Found in review: bodies shaped so that Go and a naive reader see different objects.
    #[test]
    fn strict_refuses_what_go_reads_differently() {
        // Field 2^32 + 2 is field 2 (kind) to Go: `kind: ""` after `kind: ConfigMap` makes the
        // server fill in the endpoint's kind (Pod) while a reader of u64 numbers sees a
        // ConfigMap with an unknown empty field.
        let mut tm = type_meta("v1", "ConfigMap");
        ld((1 << 32) + 2, b"", &mut tm);
        for mode in [Mode::Strict, Mode::Lenient] {
            assert!(matches!(
                decode(&envelope(&tm, b""), mode),
                Err(ProtobufError::Invalid(_))
            ));
        }
        // An int32 whose varint does not fit: Go keeps the low 32 bits (replicas 2^32 is 0).
        let mut spec = Vec::new();
        vi(1, 1 << 32, &mut spec);
        let mut dep = Vec::new();
        ld(2, &spec, &mut dep);
        let tm = type_meta("apps/v1", "Deployment");
        assert!(decode(&envelope(&tm, &dep), Mode::Strict).is_err());
        assert_eq!(
            decode(&envelope(&tm, &dep), Mode::Lenient).unwrap()["spec"]["replicas"],
            json!(0)
        );
        // A negative int32 is sign-extended to ten bytes, and reads the same in both.
        let mut spec = Vec::new();
        vi(1, -5i64 as u64, &mut spec);
        let mut dep = Vec::new();
        ld(2, &spec, &mut dep);
        assert_eq!(
            decode(&envelope(&tm, &dep), Mode::Strict).unwrap()["spec"]["replicas"],
            json!(-5)
        );
        // An empty message inside a message is not nothing: an aggregation rule with an empty
        // selector (every ClusterRole) is shown, not dropped.
        let mut sel = Vec::new();
        ld(1, b"", &mut sel);
        let mut role = Vec::new();
        ld(3, &sel, &mut role);
        let tm = type_meta("rbac.authorization.k8s.io/v1", "ClusterRole");
        assert_eq!(
            decode(&envelope(&tm, &role), Mode::Strict).unwrap()["aggregationRule"],
            json!({"clusterRoleSelectors": [{}]})
        );
        // Only kinds are kinds: not the envelope, not a message inside one.
        for kind in ["Unknown", "PodSpec", "EnvVar"] {
            assert!(matches!(
                decode(&envelope(&type_meta("v1", kind), b""), Mode::Strict),
                Err(ProtobufError::UnknownKind(_))
            ));
        }
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
    }
}
