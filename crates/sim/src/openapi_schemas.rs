//! Component schemas for the OpenAPI v3 documents, so that `kubectl explain` works.
//!
//! The schemas (with upstream's field descriptions) come from `k8s-openapi`'s `schemars`
//! implementations for Kubernetes 1.31; each served kind's schema carries
//! `x-kubernetes-group-version-kind`, which is how kubectl finds it. Upstream's patch
//! extensions (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`) are not in
//! them, so client-side apply keeps using kubectl's compiled-in types for strategic merge
//! patches, as before (`/openapi/v2` stays empty).

use k8s_openapi::{
    api::{
        admissionregistration::v1 as admissionregistration, apps::v1 as apps,
        authentication::v1 as authentication, authorization::v1 as authorization,
        autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2, batch::v1 as batch,
        certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
        networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
        scheduling::v1 as scheduling, storage::v1 as storage,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions,
    kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration,
};
use schemars::{generate::SchemaSettings, SchemaGenerator};
use serde_json::{json, Map, Value};

/// Adds the schema of `group/version/kind` (and everything it refers to) to `gen`; returns its
/// name in `components.schemas`, or `None` for a kind without a known schema.
fn add(gen: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
    macro_rules! kinds {
        ($( ($g:literal, $v:literal, $k:literal) => $t:ty ),* $(,)?) => {
            match (group, version, kind) {
                $( ($g, $v, $k) => gen.subschema_for::<$t>(), )*
                _ => return None,
            }
        };
    }
    let reference = kinds! {
        ("", "v1", "Binding") => core::Binding,
        ("", "v1", "ComponentStatus") => core::ComponentStatus,
        ("", "v1", "ConfigMap") => core::ConfigMap,
        ("", "v1", "Endpoints") => core::Endpoints,
        ("", "v1", "Event") => core::Event,
        ("", "v1", "LimitRange") => core::LimitRange,
        ("", "v1", "Namespace") => core::Namespace,
        ("", "v1", "Node") => core::Node,
        ("", "v1", "PersistentVolume") => core::PersistentVolume,
        ("", "v1", "PersistentVolumeClaim") => core::PersistentVolumeClaim,
        ("", "v1", "Pod") => core::Pod,
        ("", "v1", "PodTemplate") => core::PodTemplate,
        ("", "v1", "ReplicationController") => core::ReplicationController,
        ("", "v1", "ResourceQuota") => core::ResourceQuota,
        ("", "v1", "Secret") => core::Secret,
        ("", "v1", "Service") => core::Service,
        ("", "v1", "ServiceAccount") => core::ServiceAccount,
        ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration") => admissionregistration::MutatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration") => admissionregistration::ValidatingWebhookConfiguration,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => admissionregistration::ValidatingAdmissionPolicy,
        ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding") => admissionregistration::ValidatingAdmissionPolicyBinding,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => apiextensions::CustomResourceDefinition,
        ("apiregistration.k8s.io", "v1", "APIService") => apiregistration::APIService,
        ("apps", "v1", "ControllerRevision") => apps::ControllerRevision,
        ("apps", "v1", "DaemonSet") => apps::DaemonSet,
        ("apps", "v1", "Deployment") => apps::Deployment,
        ("apps", "v1", "ReplicaSet") => apps::ReplicaSet,
        ("apps", "v1", "StatefulSet") => apps::StatefulSet,
        ("authentication.k8s.io", "v1", "SelfSubjectReview") => authentication::SelfSubjectReview,
        ("authentication.k8s.io", "v1", "TokenReview") => authentication::TokenReview,
        ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => authorization::LocalSubjectAccessReview,
        ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => authorization::SelfSubjectAccessReview,
        ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => authorization::SelfSubjectRulesReview,
        ("authorization.k8s.io", "v1", "SubjectAccessReview") => authorization::SubjectAccessReview,
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => autoscaling_v1::HorizontalPodAutoscaler,
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => autoscaling_v2::HorizontalPodAutoscaler,
        ("batch", "v1", "CronJob") => batch::CronJob,
        ("batch", "v1", "Job") => batch::Job,
        ("certificates.k8s.io", "v1", "CertificateSigningRequest") => certificates::CertificateSigningRequest,
        ("coordination.k8s.io", "v1", "Lease") => coordination::Lease,
        ("discovery.k8s.io", "v1", "EndpointSlice") => discovery::EndpointSlice,
        ("events.k8s.io", "v1", "Event") => events::Event,
        ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema") => flowcontrol::FlowSchema,
        ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration") => flowcontrol::PriorityLevelConfiguration,
        ("networking.k8s.io", "v1", "Ingress") => networking::Ingress,
        ("networking.k8s.io", "v1", "IngressClass") => networking::IngressClass,
        ("networking.k8s.io", "v1", "NetworkPolicy") => networking::NetworkPolicy,
        ("node.k8s.io", "v1", "RuntimeClass") => node::RuntimeClass,
        ("policy", "v1", "Eviction") => policy::Eviction,
        ("policy", "v1", "PodDisruptionBudget") => policy::PodDisruptionBudget,
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => rbac::ClusterRole,
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => rbac::ClusterRoleBinding,
        ("rbac.authorization.k8s.io", "v1", "Role") => rbac::Role,
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => rbac::RoleBinding,
        ("scheduling.k8s.io", "v1", "PriorityClass") => scheduling::PriorityClass,
        ("storage.k8s.io", "v1", "CSIDriver") => storage::CSIDriver,
        ("storage.k8s.io", "v1", "CSINode") => storage::CSINode,
        ("storage.k8s.io", "v1", "CSIStorageCapacity") => storage::CSIStorageCapacity,
        ("storage.k8s.io", "v1", "StorageClass") => storage::StorageClass,
        ("storage.k8s.io", "v1", "VolumeAttachment") => storage::VolumeAttachment,
    };
    let r = reference.as_value().get("$ref")?.as_str()?;
    Some(r.rsplit('/').next()?.to_owned())
}

/// `components.schemas` for a group/version serving `kinds`: every kind with a known schema,
/// tagged with its `x-kubernetes-group-version-kind`, plus everything they refer to.
pub fn components(group: &str, version: &str, kinds: &[&str]) -> Map<String, Value> {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let mut named = Vec::new();
    for kind in kinds {
        if let Some(name) = add(&mut gen, group, version, kind) {
            named.push((name, *kind));
        }
    }
    let mut defs = gen.take_definitions(true);
    for (name, kind) in named {
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "kind": kind, "version": version}]),
            );
        }
    }
    defs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_kinds_are_tagged_and_their_references_resolve() {
        let defs = components("", "v1", &["Pod", "Secret", "NoSuchKind"]);
        let pod = &defs["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        assert!(pod["description"].as_str().unwrap().contains("containers"));
        assert!(defs.contains_key("io.k8s.api.core.v1.Secret"));
        // Only the served kinds are tagged, and every $ref points into the document.
        let tagged = defs
            .values()
            .filter(|d| d.get("x-kubernetes-group-version-kind").is_some())
            .count();
        assert_eq!(tagged, 2);
        let text = serde_json::to_string(&defs).unwrap();
        for r in text.split("\"$ref\":\"").skip(1) {
            let name = r.split('"').next().unwrap();
            let name = name.strip_prefix("#/components/schemas/").expect(name);
            assert!(defs.contains_key(name), "dangling {name}");
        }
        assert!(
            components("apps", "v1", &["Deployment"]).contains_key("io.k8s.api.apps.v1.Deployment")
        );
    }
}
