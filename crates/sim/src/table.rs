//! Server-side printing: `meta.k8s.io/v1 Table` responses for `kubectl get`, with the columns
//! kube-apiserver's printers use for the common kinds and `NAME, AGE` for the rest.

use serde_json::{json, Value};

/// What each row carries in `object` (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

// === impl IncludeObject ===

impl IncludeObject {
    /// From the query parameter.
    pub fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// (name, type, priority, description) of one column.
type Col = (&'static str, &'static str, u8, &'static str);

const NAME: Col = ("Name", "string", 0, "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names");
const AGE: Col = ("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata");

fn columns(kind: &str) -> Vec<Col> {
    match kind {
        "Pod" => vec![
            NAME,
            ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            ("Status", "string", 0, "The aggregate status of the containers in this pod."),
            ("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            ("IP", "string", 1, "The IP address assigned to the pod"),
            ("Node", "string", 1, "The name of the node assigned to the pod"),
            ("Nominated Node", "string", 1, "The name of the node nominated by the scheduler"),
            ("Readiness Gates", "string", 1, "The readiness gates of the pod"),
        ],
        "Deployment" => vec![
            NAME,
            ("Ready", "string", 0, "Number of the pod with ready state"),
            ("Up-to-date", "integer", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            ("Available", "integer", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        "ReplicaSet" => vec![
            NAME,
            ("Desired", "integer", 0, "Replicas is the number of desired replicas."),
            ("Current", "integer", 0, "Replicas is the most recently observed number of replicas."),
            ("Ready", "integer", 0, "The number of ready replicas for this replica set."),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
            ("Selector", "string", 1, "Selector is a label query over pods that should match the replica count."),
        ],
        "StatefulSet" => vec![
            NAME,
            ("Ready", "string", 0, "Number of the pod with ready state"),
            AGE,
            ("Containers", "string", 1, "Names of each container in the template."),
            ("Images", "string", 1, "Images referenced by each container in the template."),
        ],
        "DaemonSet" => vec![
            NAME,
            ("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
            ("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod."),
            ("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            ("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
            ("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
            ("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
            AGE,
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", 0, "type determines how the Service is exposed."),
            ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
            ("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            ("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
            AGE,
            ("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        "Namespace" => vec![NAME, ("Status", "string", 0, "The status of the namespace"), AGE],
        "Node" => vec![
            NAME,
            ("Status", "string", 0, "The status of the node"),
            ("Roles", "string", 0, "The roles of the node"),
            AGE,
            ("Version", "string", 0, "Kubelet Version reported by the node."),
            ("Internal-IP", "string", 1, "List of addresses reachable to the node."),
            ("External-IP", "string", 1, "List of addresses reachable to the node."),
            ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "ConfigMap" => vec![NAME, ("Data", "integer", 0, "Data contains the configuration data."), AGE],
        "Secret" => vec![
            NAME,
            ("Type", "string", 0, "Used to facilitate programmatic handling of secret data."),
            ("Data", "integer", 0, "Data contains the secret data."),
            AGE,
        ],
        "ServiceAccount" => vec![NAME, ("Secrets", "string", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE],
        "Event" => vec![
            ("Last Seen", "string", 0, "Time when this Event was last seen"),
            ("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
            ("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for this event being generated."),
            ("Object", "string", 0, "The object that this event is about."),
            ("Message", "string", 0, "A human-readable description of the status of this operation."),
            ("Source", "string", 1, "The component reporting this event."),
            ("First Seen", "string", 1, "The time at which the event was first recorded."),
            ("Count", "string", 1, "The number of times this event has occurred."),
            ("Name", "string", 1, "Name must be unique within a namespace."),
        ],
        "Job" => vec![
            NAME,
            ("Status", "string", 0, "Status of the job."),
            ("Completions", "string", 0, "The desired number of successfully finished pods the job should be run with."),
            ("Duration", "string", 0, "Time required to complete the job."),
            AGE,
        ],
        "CronJob" => vec![
            NAME,
            ("Schedule", "string", 0, "The schedule in Cron format."),
            ("Timezone", "string", 0, "The time zone name for the given schedule."),
            ("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions."),
            ("Active", "integer", 0, "A list of pointers to currently running jobs."),
            ("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
            AGE,
        ],
        "Endpoints" => vec![NAME, ("Endpoints", "string", 0, "Endpoints of the service."), AGE],
        "Ingress" => vec![
            NAME,
            ("Class", "string", 0, "The name of the IngressClass resource."),
            ("Hosts", "string", 0, "Hosts that incoming requests are matched against."),
            ("Address", "string", 0, "Address is a list containing ingress points for the load-balancer."),
            ("Ports", "string", 0, "Ports of TLS configurations that open."),
            AGE,
        ],
        "EndpointSlice" => vec![
            NAME,
            ("AddressType", "string", 0, "The IP protocol for this slice"),
            ("Ports", "string", 0, "The ports allocated for this slice"),
            ("Endpoints", "string", 0, "The endpoints in this slice"),
            AGE,
        ],
        "HorizontalPodAutoscaler" => vec![
            NAME,
            ("Reference", "string", 0, "reference to the target resource"),
            ("Targets", "string", 0, "the target metrics and their current values"),
            ("MinPods", "string", 0, "lower limit for the number of pods that can be set by the autoscaler, default 1."),
            ("MaxPods", "integer", 0, "upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas."),
            ("Replicas", "integer", 0, "current number of replicas of pods managed by this autoscaler."),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

/// `duration.HumanDuration` from apimachinery, for AGE cells.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// AGE of a timestamp field ("<unknown>" when absent).
fn age(ts: &Value) -> String {
    let Some(s) = ts.as_str() else {
        return "<unknown>".into();
    };
    match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        Ok(t) => human_duration((time::OffsetDateTime::now_utc() - t).whole_seconds()),
        Err(_) => "<unknown>".into(),
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn join_containers(spec: &Value, field: &str) -> String {
    spec["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| s(&c[field]))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// `a=b,c=d` rendering of a label map or `matchLabels` selector.
pub fn selector_string(sel: &Value) -> String {
    let labels = if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
        &sel["matchLabels"]
    } else {
        sel
    };
    let mut parts: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(exprs) = sel["matchExpressions"].as_array() {
        for e in exprs {
            let vals: Vec<String> = e["values"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            let key = s(&e["key"]);
            parts.push(match s(&e["operator"]).as_str() {
                "In" => format!("{key} in ({})", vals.join(",")),
                "NotIn" => format!("{key} notin ({})", vals.join(",")),
                "Exists" => key,
                _ => format!("!{key}"),
            });
        }
    }
    parts.join(",")
}

/// The aggregate pod status string, as `kubectl get pods` prints it.
pub fn pod_status(pod: &Value) -> String {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating".into();
    }
    let mut reason = pod["status"]["reason"]
        .as_str()
        .or(pod["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    for cs in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = cs["state"]["waiting"]["reason"].as_str() {
            reason = r.to_string();
        } else if let Some(r) = cs["state"]["terminated"]["reason"].as_str() {
            reason = r.to_string();
        }
    }
    reason
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = json!(s(&o["metadata"]["name"]));
    let age_v = json!(age(&o["metadata"]["creationTimestamp"]));
    let spec = &o["spec"];
    let st = &o["status"];
    match kind {
        "Pod" => {
            let statuses = st["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = spec["containers"].as_array().map(Vec::len).unwrap_or(0);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|c| i(&c["restartCount"])).sum();
            let gates = spec["readinessGates"]
                .as_array()
                .map(|g| format!("0/{}", g.len()))
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                age_v,
                json!(or_none(s(&st["podIP"]))),
                json!(or_none(s(&spec["nodeName"]))),
                json!(or_none(s(&st["nominatedNodeName"]))),
                json!(gates),
            ]
        }
        "Deployment" => {
            let tspec = &spec["template"]["spec"];
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(&st["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                json!(i(&st["updatedReplicas"])),
                json!(i(&st["availableReplicas"])),
                age_v,
                json!(join_containers(tspec, "name")),
                json!(join_containers(tspec, "image")),
                json!(selector_string(&spec["selector"])),
            ]
        }
        "ReplicaSet" => {
            let tspec = &spec["template"]["spec"];
            vec![
                name,
                json!(spec["replicas"].as_i64().unwrap_or(1)),
                json!(i(&st["replicas"])),
                json!(i(&st["readyReplicas"])),
                age_v,
                json!(join_containers(tspec, "name")),
                json!(join_containers(tspec, "image")),
                json!(selector_string(&spec["selector"])),
            ]
        }
        "StatefulSet" => {
            let tspec = &spec["template"]["spec"];
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(&st["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                age_v,
                json!(join_containers(tspec, "name")),
                json!(join_containers(tspec, "image")),
            ]
        }
        "DaemonSet" => vec![
            name,
            json!(i(&st["desiredNumberScheduled"])),
            json!(i(&st["currentNumberScheduled"])),
            json!(i(&st["numberReady"])),
            json!(i(&st["updatedNumberScheduled"])),
            json!(i(&st["numberAvailable"])),
            json!(or_none(selector_string(
                &spec["template"]["spec"]["nodeSelector"]
            ))),
            age_v,
        ],
        "Service" => {
            let ports = spec["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_i64() {
                                Some(np) => format!("{}:{np}/{proto}", i(&p["port"])),
                                None => format!("{}/{proto}", i(&p["port"])),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let ext = spec["externalIPs"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                name,
                json!(spec["type"].as_str().unwrap_or("ClusterIP")),
                json!(or_none(s(&spec["clusterIP"]))),
                json!(or_none(ext)),
                json!(or_none(ports)),
                age_v,
                json!(or_none(selector_string(&spec["selector"]))),
            ]
        }
        "Namespace" => vec![name, json!(st["phase"].as_str().unwrap_or("Active")), age_v],
        "Node" => {
            let ready = st["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = ready.to_string();
            if spec["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let addr = |t: &str| {
                st["addresses"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["type"] == t))
                    .map(|x| s(&x["address"]))
                    .unwrap_or_default()
            };
            let ni = &st["nodeInfo"];
            vec![
                name,
                json!(status),
                json!(if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                }),
                age_v,
                json!(s(&ni["kubeletVersion"])),
                json!(or_none(addr("InternalIP"))),
                json!(or_none(addr("ExternalIP"))),
                json!(s(&ni["osImage"])),
                json!(s(&ni["kernelVersion"])),
                json!(s(&ni["containerRuntimeVersion"])),
            ]
        }
        "ConfigMap" => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, json!(n), age_v]
        }
        "Secret" => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![
                name,
                json!(o["type"].as_str().unwrap_or("Opaque")),
                json!(n),
                age_v,
            ]
        }
        "ServiceAccount" => vec![
            name,
            json!(o["secrets"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
                .to_string()),
            age_v,
        ],
        "Event" => {
            let last = if o["lastTimestamp"].is_string() {
                &o["lastTimestamp"]
            } else {
                &o["eventTime"]
            };
            let io = &o["involvedObject"];
            let object = format!("{}/{}", s(&io["kind"]).to_lowercase(), s(&io["name"]));
            let source = s(&o["source"]["component"]);
            vec![
                json!(age(last)),
                json!(s(&o["type"])),
                json!(s(&o["reason"])),
                json!(object),
                json!(s(&o["message"]).trim().to_string()),
                json!(or_none(source)),
                json!(age(&o["firstTimestamp"])),
                json!(o["count"].as_i64().unwrap_or(1).to_string()),
                name,
            ]
        }
        "Job" => {
            let succeeded = i(&st["succeeded"]);
            let completions = spec["completions"].as_i64().unwrap_or(1);
            let status = if succeeded >= completions {
                "Complete"
            } else {
                "Running"
            };
            vec![
                name,
                json!(status),
                json!(format!("{succeeded}/{completions}")),
                json!(""),
                age_v,
            ]
        }
        "CronJob" => vec![
            name,
            json!(s(&spec["schedule"])),
            json!(or_none(s(&spec["timeZone"]))),
            json!(spec["suspend"].as_bool().unwrap_or(false)),
            json!(st["active"].as_array().map(Vec::len).unwrap_or(0)),
            json!(if st["lastScheduleTime"].is_string() {
                age(&st["lastScheduleTime"])
            } else {
                "<none>".into()
            }),
            age_v,
        ],
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in o["subsets"].as_array().into_iter().flatten() {
                for a in sub["addresses"].as_array().into_iter().flatten() {
                    for p in sub["ports"].as_array().into_iter().flatten() {
                        eps.push(format!("{}:{}", s(&a["ip"]), i(&p["port"])));
                    }
                }
            }
            vec![name, json!(or_none(eps.join(","))), age_v]
        }
        "Ingress" => {
            let hosts: Vec<String> = spec["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["host"].as_str().map(str::to_string))
                .collect();
            vec![
                name,
                json!(or_none(s(&spec["ingressClassName"]))),
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                }),
                json!(""),
                json!(if spec["tls"].is_array() {
                    "80, 443"
                } else {
                    "80"
                }),
                age_v,
            ]
        }
        "EndpointSlice" => {
            // kube-apiserver's printer: ports joined by ",", `<unset>` without any; the first
            // three addresses, then "+ N more...".
            let ports: Vec<String> = o["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    p["port"]
                        .as_i64()
                        .map_or("<unset>".to_string(), |n| n.to_string())
                })
                .collect();
            let addrs: Vec<&str> = o["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            let mut shown = addrs.iter().take(3).copied().collect::<Vec<_>>().join(",");
            if addrs.len() > 3 {
                shown.push_str(&format!(" + {} more...", addrs.len() - 3));
            }
            vec![
                name,
                json!(o["addressType"]),
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(if shown.is_empty() {
                    "<unset>".to_string()
                } else {
                    shown
                }),
                age_v,
            ]
        }
        "HorizontalPodAutoscaler" => {
            let target = &spec["scaleTargetRef"];
            // kube-apiserver's printer: `<resource>: <current>/<target>` per metric; the
            // simulator has no current values. autoscaling/v1 keeps one CPU target.
            let mut targets: Vec<String> = spec["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    // `type: ContainerResource` names the field `containerResource`.
                    let ty = m["type"].as_str()?;
                    let field = ty.get(..1)?.to_ascii_lowercase() + ty.get(1..)?;
                    let src = &m[field];
                    let t = &src["target"];
                    let want = match (
                        t["averageUtilization"].as_i64(),
                        &t["averageValue"],
                        &t["value"],
                    ) {
                        (Some(u), _, _) => format!("{u}%"),
                        (None, Value::String(v), _) | (None, _, Value::String(v)) => v.clone(),
                        _ => return None,
                    };
                    let what = src["name"].as_str().or(src["metric"]["name"].as_str())?;
                    Some(format!("{what}: <unknown>/{want}"))
                })
                .collect();
            if let Some(u) = spec["targetCPUUtilizationPercentage"].as_i64() {
                targets.push(format!("cpu: <unknown>/{u}%"));
            }
            vec![
                name,
                json!(format!("{}/{}", s(&target["kind"]), s(&target["name"]))),
                json!(if targets.is_empty() {
                    "<none>".to_string()
                } else {
                    targets.join(", ")
                }),
                json!(spec["minReplicas"]
                    .as_i64()
                    .map_or("<unset>".to_string(), |m| m.to_string())),
                json!(spec["maxReplicas"].as_i64().unwrap_or(0)),
                json!(o["status"]["currentReplicas"].as_i64().unwrap_or(0)),
                age_v,
            ]
        }
        _ => vec![name, age_v],
    }
}

/// `PartialObjectMetadata` for an object.
pub fn partial_metadata(obj: &Value, version: &str) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": obj["metadata"].clone()})
}

/// Builds a Table for `objects` of `kind`. `rv` is the list's resourceVersion (empty for
/// single objects and watch events); `cont` the continue token.
pub fn to_table(
    kind: &str,
    objects: &[Value],
    include: IncludeObject,
    version: &str,
    rv: &str,
    cont: Option<&str>,
) -> Value {
    let defs: Vec<Value> = columns(kind)
        .into_iter()
        .map(|(n, t, p, d)| {
            let format = if n == "Name" { "name" } else { "" };
            json!({"name": n, "type": t, "format": format, "description": d, "priority": p})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(kind, o)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o, version),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if !rv.is_empty() {
        meta["resourceVersion"] = json!(rv);
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": format!("meta.k8s.io/{version}"), "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_table() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86400, "3d"),
            (3 * 86400 + 7200, "3d2h"),
            (20 * 86400, "20d"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn pod_row() {
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [{"ready": true, "restartCount": 1}, {"ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        let t = to_table("Pod", &[pod], IncludeObject::None, "v1", "5", None);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "p");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "1");
        assert_eq!(cells[5], "10.0.0.1");
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().len(),
            cells.as_array().unwrap().len()
        );
        assert!(t["rows"][0].get("object").is_none());
    }

    #[test]
    fn every_kind_has_matching_cells() {
        for kind in [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Service",
            "Namespace",
            "Node",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Event",
            "Job",
            "CronJob",
            "Endpoints",
            "Ingress",
            "Role",
        ] {
            let t = to_table(
                kind,
                &[json!({"metadata": {"name": "x"}})],
                IncludeObject::Metadata,
                "v1",
                "",
                None,
            );
            assert_eq!(
                t["columnDefinitions"].as_array().unwrap().len(),
                t["rows"][0]["cells"].as_array().unwrap().len(),
                "{kind}"
            );
        }
    }
}
