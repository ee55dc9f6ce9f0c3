//! The JSON schemas of every built-in kind, generated once from the k8s-openapi types.
//!
//! One registry serves three needs: the OpenAPI v3 documents, the strict field check
//! (unknown fields), and the walk that patching does to find the type under a field.
//! Definition names are the upstream ones (`io.k8s.api.core.v1.Pod`), and references
//! point at `#/components/schemas/<name>`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events, networking, node, policy, scheduling};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

/// All definitions by name.
pub struct Schemas {
    defs: BTreeMap<String, Value>,
}

const REF_PREFIX: &str = "#/components/schemas/";

/// The registry, built on first use.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(build)
}

fn build() -> Schemas {
    let mut gen = schemars::generate::SchemaSettings::openapi3().into_generator();
    macro_rules! add {
        ($($t:ty),* $(,)?) => { $( let _ = gen.subschema_for::<$t>(); )* };
    }
    add!(
        core::v1::Namespace, core::v1::Pod, core::v1::Service, core::v1::Endpoints, core::v1::ConfigMap,
        core::v1::Secret, core::v1::ServiceAccount, core::v1::Node, core::v1::Event, core::v1::PersistentVolume,
        core::v1::PersistentVolumeClaim, core::v1::ResourceQuota, core::v1::LimitRange, core::v1::Binding,
        apps::v1::Deployment, apps::v1::ReplicaSet, apps::v1::StatefulSet, apps::v1::DaemonSet,
        apps::v1::ControllerRevision,
        batch::v1::Job, batch::v1::CronJob,
        discovery::v1::EndpointSlice,
        coordination::v1::Lease,
        events::v1::Event,
        node::v1::RuntimeClass,
        networking::v1::Ingress, networking::v1::IngressClass, networking::v1::NetworkPolicy,
        policy::v1::PodDisruptionBudget,
        scheduling::v1::PriorityClass,
        k8s_openapi::api::storage::v1::StorageClass,
        k8s_openapi::api::authentication::v1::TokenRequest,
        k8s_openapi::api::autoscaling::v1::Scale, policy::v1::Eviction,
        metav1::ListMeta,
        metav1::Status, metav1::DeleteOptions, metav1::APIResourceList,
        metav1::APIGroupList, metav1::APIGroup, metav1::APIVersions, metav1::Patch,
    );
    let defs = gen.take_definitions(true).into_iter().collect();
    Schemas { defs }
}

impl Schemas {
    /// One definition by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.defs.get(name)
    }

    /// All definitions by name.
    pub fn all(&self) -> &BTreeMap<String, Value> {
        &self.defs
    }

    /// The definition name a `$ref` schema points at, if it is one.
    pub fn ref_name(schema: &Value) -> Option<&str> {
        schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(REF_PREFIX))
    }

    /// Follows `$ref` (and a single-element `allOf`) to the schema it names.
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..8 {
            if let Some(name) = Self::ref_name(schema) {
                match self.defs.get(name) {
                    Some(s) => schema = s,
                    None => return schema,
                }
            } else if let Some([one]) = schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                schema = one;
            } else {
                return schema;
            }
        }
        schema
    }

    /// The resolved schema of `field` in an object schema.
    pub fn property<'a>(&'a self, object: &'a Value, field: &str) -> Option<&'a Value> {
        let object = self.resolve(object);
        object.get("properties")?.get(field).map(|s| self.resolve(s))
    }

    /// The definition name of `field` in an object schema (following arrays and maps
    /// to their element), if the field's element type is a named definition.
    pub fn field_definition<'a>(&'a self, object: &'a Value, field: &str) -> Option<&'a str> {
        let object = self.resolve(object);
        let mut s = object.get("properties")?.get(field)?;
        for _ in 0..4 {
            if let Some(n) = Self::ref_name(s) {
                return Some(n);
            }
            if let Some(items) = s.get("items") {
                s = items;
            } else if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
                s = ap;
            } else if let Some([one]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                s = one;
            } else {
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_has_its_definition() {
        for r in crate::RESOURCES {
            assert!(schemas().get(r.definition).is_some(), "{} missing", r.definition);
        }
    }

    #[test]
    fn fields_resolve_to_their_definitions() {
        let s = schemas();
        let pod_spec = s.get("io.k8s.api.core.v1.PodSpec").unwrap();
        assert_eq!(s.field_definition(pod_spec, "containers"), Some("io.k8s.api.core.v1.Container"));
        let pod = s.get("io.k8s.api.core.v1.Pod").unwrap();
        assert_eq!(s.field_definition(pod, "spec"), Some("io.k8s.api.core.v1.PodSpec"));
        assert!(s.property(pod_spec, "containers").unwrap().get("items").is_some());
    }
}
