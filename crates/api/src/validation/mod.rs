//! What the API server checks on writes.
//!
//! [`validate`] returns every problem with an object as a [`Cause`] carrying the
//! upstream field path, reason and message, for create (`old = None`) and update.
//! The rules follow kube-apiserver 1.33 (`pkg/apis/*/validation` and
//! `k8s.io/apimachinery/pkg/api/validation`): name formats per kind, required fields,
//! enumerations, cross-field rules, and what an update may not change.
//!
//! Objects arrive already defaulted ([`crate::defaults`]) and in the v1 wire format.
//! Unknown fields and wrong types are the strict schema check's concern; here a
//! wrongly typed field reads as absent.
//!
//! A tour of the private modules: `field` (paths, cause helpers, Go-style value
//! rendering), `names` (string formats), `meta` (metadata and label selectors), `pod`
//! (pods and pod templates), `core`, `apps`, `batch`, `networking` and `other` per API
//! group, and `cron` (CronJob schedules). [`quantity`] (resource quantities) is public,
//! for the scheduler and kubelet-side code that compares requests.
//!
//! Upstream behaviour kept on purpose, because users meet it in messages: some paths
//! are upstream's quirks (`spec.template.labels` for template labels, node taints
//! under `metadata.taints`, `spec.LoadBalancerSourceRanges`), StatefulSet pod specs are
//! not validated (only the pods they produce are), and legacy core/v1 Events only get
//! the generic metadata checks.

use serde_json::Value;

use crate::{Cause, ResourceInfo};

mod apps;
mod batch;
mod core;
mod cron;
mod field;
#[cfg(test)]
mod fixtures;
mod meta;
mod names;
mod networking;
mod other;
mod pod;
pub mod quantity;

pub use networking::INGRESS_CLASS_ANNOTATION;
pub use other::{HIGHEST_USER_DEFINABLE_PRIORITY, SYSTEM_PRIORITY_CLASSES};

#[cfg(test)]
pub(crate) use fixtures::fixture;

/// Validates `obj` (already defaulted) for create (`old = None`) or update.
///
/// Every problem is reported, not just the first, in the order upstream finds them.
/// Kinds without rules of their own still get the metadata checks.
pub fn validate(res: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut errs = Vec::new();
    let e = &mut errs;
    match (res.group, res.kind) {
        ("", "Pod") => pod::validate_pod(obj, old, e),
        ("", "Service") => core::validate_service(obj, old, e),
        ("", "Endpoints") => core::validate_endpoints(obj, old, e),
        ("", "ConfigMap") => core::validate_config_map(obj, old, e),
        ("", "Secret") => core::validate_secret(obj, old, e),
        ("", "ServiceAccount") => core::validate_service_account(obj, old, e),
        ("", "Namespace") => core::validate_namespace(obj, old, e),
        ("", "Node") => core::validate_node(obj, old, e),
        ("", "PersistentVolume") => core::validate_pv(obj, old, e),
        ("", "PersistentVolumeClaim") => core::validate_pvc(obj, old, e),
        ("", "ResourceQuota") => core::validate_resource_quota(obj, old, e),
        ("", "LimitRange") => core::validate_limit_range(obj, old, e),
        ("", "Event") => core::validate_event(obj, old, false, e),
        ("events.k8s.io", "Event") => core::validate_event(obj, old, true, e),
        ("apps", "Deployment") => apps::validate_deployment(obj, old, e),
        ("apps", "ReplicaSet") => apps::validate_replica_set(obj, old, e),
        ("apps", "StatefulSet") => apps::validate_stateful_set(obj, old, e),
        ("apps", "DaemonSet") => apps::validate_daemon_set(obj, old, e),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(obj, old, e),
        ("batch", "Job") => batch::validate_job(obj, old, e),
        ("batch", "CronJob") => batch::validate_cron_job(obj, old, e),
        ("discovery.k8s.io", "EndpointSlice") => other::validate_endpoint_slice(obj, old, e),
        ("coordination.k8s.io", "Lease") => other::validate_lease(obj, old, e),
        ("networking.k8s.io", "Ingress") => networking::validate_ingress(obj, old, e),
        ("networking.k8s.io", "IngressClass") => networking::validate_ingress_class(obj, old, e),
        ("networking.k8s.io", "NetworkPolicy") => networking::validate_network_policy(obj, old, e),
        ("node.k8s.io", "RuntimeClass") => other::validate_runtime_class(obj, old, e),
        ("policy", "PodDisruptionBudget") => other::validate_pod_disruption_budget(obj, old, e),
        ("scheduling.k8s.io", "PriorityClass") => other::validate_priority_class(obj, old, e),
        ("storage.k8s.io", "StorageClass") => other::validate_storage_class(obj, old, e),
        _ => {
            if let Some(old) = old {
                meta::object_meta_update(obj, old, e);
            }
            meta::object_meta(obj, res.namespaced, names::NameRule::Subdomain, e);
        }
    }
    // Upstream runs overlapping checks (generic and per-kind metadata) and drops the
    // repeats when it builds the message; drop them from the causes too.
    let mut seen = std::collections::HashSet::new();
    errs.retain(|c| seen.insert((c.reason.clone(), c.field.clone(), c.message.clone())));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::RESOURCES;
    use serde_json::json;

    fn defaulted(res: &ResourceInfo) -> Value {
        let mut obj = fixture(res);
        apply_defaults(res, &mut obj);
        obj
    }

    #[test]
    fn a_valid_object_of_every_kind_passes() {
        for res in RESOURCES {
            let obj = defaulted(res);
            let causes = validate(res, &obj, None);
            assert!(causes.is_empty(), "{}/{} fixture rejected: {causes:#?}", res.group, res.kind);
        }
    }

    #[test]
    fn an_unchanged_update_of_every_kind_passes() {
        for res in RESOURCES {
            let obj = defaulted(res);
            let causes = validate(res, &obj, Some(&obj));
            assert!(causes.is_empty(), "{}/{} no-op update rejected: {causes:#?}", res.group, res.kind);
        }
    }

    #[test]
    fn a_status_write_passes_for_every_kind_with_status() {
        for res in RESOURCES.iter().filter(|r| r.has_subresource(crate::Subresource::Status)) {
            let old = defaulted(res);
            let mut new = old.clone();
            new["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
            let causes = validate(res, &new, Some(&old));
            assert!(causes.is_empty(), "{}/{} status write rejected: {causes:#?}", res.group, res.kind);
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let res = crate::resources::lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "Bad_Name", "namespace": "default"}, "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "c"}]}});
        apply_defaults(res, &mut pod);
        let fields: Vec<String> = validate(res, &pod, None).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["metadata.name", "spec.containers[0].image", "spec.restartPolicy"]);
    }

    #[test]
    fn names_follow_the_rule_of_each_kind() {
        for (group, plural, name, ok) in [
            ("", "configmaps", "a.b-c", true),
            ("", "namespaces", "a.b", false),
            ("", "services", "a-b", true),
            ("", "services", "1ab", false),
            ("apps", "deployments", "web.v2", true),
            ("", "pods", "Web", false),
        ] {
            let res = crate::resources::lookup(group, "v1", plural).unwrap();
            let mut obj = defaulted(res);
            obj["metadata"]["name"] = json!(name);
            if plural == "namespaces" {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            }
            let name_errors = validate(res, &obj, None).into_iter().filter(|c| c.field == "metadata.name").count();
            assert_eq!(name_errors == 0, ok, "{plural} named {name:?}");
        }
    }

    #[test]
    fn identity_is_immutable_on_update_for_every_kind() {
        for res in RESOURCES {
            let old = defaulted(res);
            let mut new = old.clone();
            new["metadata"]["uid"] = json!("another");
            let causes = validate(res, &new, Some(&old));
            assert!(causes.iter().any(|c| c.field == "metadata.uid" && c.message.ends_with("field is immutable")), "{}", res.kind);
        }
    }

    #[test]
    fn kinds_without_rules_still_check_metadata() {
        let res = ResourceInfo { kind: "Widget", group: "example.com", ..*crate::resources::lookup("", "v1", "configmaps").unwrap() };
        let causes = validate(&res, &json!({"metadata": {"namespace": "d"}}), None);
        assert_eq!(causes[0].field, "metadata.name");
    }
}
