//! The schema walk shared by strategic merge patch and server-side apply.
//!
//! A [`Ty`] is a position in the schema registry: the resolved schema of a value, the
//! name of its definition (to look up [`meta::field_meta`] of its fields), and the
//! patch metadata that the parent field gave it. Positions the schema does not
//! describe (free-form objects, unknown fields) are "untyped": maps merge key by key,
//! lists are atomic, as upstream does for deduced types.

use serde_json::{Map, Value};

use super::meta::{self, ListMeta, ListType};
use crate::schema::{schemas, Schemas};

/// A position in the schema.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ty {
    /// The definition the schema came from, when it is a named one.
    name: Option<&'static str>,
    schema: Option<&'static Value>,
    /// Metadata of the field this value sits in.
    meta: Option<ListMeta>,
}

/// What a value is, as far as merging and field ownership go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A leaf: strings, numbers, booleans, `null`, and values of the wrong type.
    Scalar,
    /// An object with named fields (a Go struct), merged field by field.
    Struct,
    /// An object with arbitrary keys (labels, data, untyped objects).
    Map,
    /// A list of the given type.
    List(ListType),
}

impl Ty {
    /// The top of the definition `definition`, or an untyped position if unknown.
    pub(crate) fn root(definition: &str) -> Ty {
        match schemas().all().get_key_value(definition) {
            Some((name, schema)) => Ty::resolved(Some(name.as_str()), schema, None),
            None => Ty::default(),
        }
    }

    /// Follows `$ref` and single-element `allOf`, remembering the last definition name.
    fn resolved(mut name: Option<&'static str>, mut schema: &'static Value, meta: Option<ListMeta>) -> Ty {
        let all = schemas();
        for _ in 0..8 {
            if let Some(r) = Schemas::ref_name(schema) {
                match all.all().get_key_value(r) {
                    Some((n, s)) => {
                        name = Some(n.as_str());
                        schema = s;
                    }
                    None => break,
                }
            } else if let Some([one]) = schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                schema = one;
            } else {
                break;
            }
        }
        Ty { name, schema: Some(schema), meta }
    }

    /// The definition name, if this position is a named definition.
    pub(crate) fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Patch metadata of the field this value sits in.
    pub(crate) fn meta(&self) -> Option<ListMeta> {
        self.meta
    }

    /// Whether `key` is a declared field of this struct.
    pub(crate) fn has_field(&self, key: &str) -> bool {
        self.properties().is_some_and(|p| p.contains_key(key))
    }

    fn properties(&self) -> Option<&'static Map<String, Value>> {
        self.schema?.get("properties")?.as_object()
    }

    /// The position of `key` in this object: a declared field, or the element of a map.
    pub(crate) fn field(&self, key: &str) -> Ty {
        let Some(schema) = self.schema else { return Ty::default() };
        if let Some(props) = self.properties() {
            return match props.get(key) {
                Some(s) => Ty::resolved(None, s, self.name.and_then(|n| meta::field_meta(n, key))),
                None => Ty::default(),
            };
        }
        match schema.get("additionalProperties") {
            Some(s) if s.is_object() => Ty::resolved(None, s, None),
            _ => Ty::default(),
        }
    }

    /// The position of the elements of this list.
    pub(crate) fn item(&self) -> Ty {
        match self.schema.and_then(|s| s.get("items")) {
            Some(s) => Ty::resolved(None, s, None),
            None => Ty::default(),
        }
    }

    /// What the schema says this position holds, if it says anything.
    fn declared(&self) -> Option<Shape> {
        let schema = self.schema?;
        if schema.get("properties").is_some() {
            return Some(Shape::Struct);
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("array") => Some(Shape::List(self.list_type())),
            Some("object") => Some(Shape::Map),
            Some(_) => Some(Shape::Scalar),
            None if schema.get("items").is_some() => Some(Shape::List(self.list_type())),
            None if schema.get("additionalProperties").is_some() => Some(Shape::Map),
            // IntOrString and friends carry no type: leaves.
            None => Some(Shape::Scalar),
        }
    }

    /// The shape of `value` at this position. `null` takes the declared shape (it is an
    /// empty value of that type); a value of the wrong type is a leaf; untyped objects
    /// are maps and untyped lists are atomic.
    pub(crate) fn shape(&self, value: &Value) -> Shape {
        let declared = self.declared();
        match (declared, value) {
            (Some(d), Value::Null) => d,
            (None, Value::Null) => Shape::Scalar,
            (Some(Shape::Struct), Value::Object(_)) => Shape::Struct,
            (Some(Shape::Map), Value::Object(_)) | (None, Value::Object(_)) => Shape::Map,
            (Some(Shape::List(t)), Value::Array(_)) => Shape::List(t),
            (None, Value::Array(_)) => Shape::List(ListType::Atomic),
            _ => Shape::Scalar,
        }
    }

    /// How server-side apply treats this list.
    pub(crate) fn list_type(&self) -> ListType {
        self.meta.map_or(ListType::Atomic, |m| m.list_type())
    }

    /// Whether this map or struct is owned as a whole.
    pub(crate) fn is_atomic(&self) -> bool {
        self.meta.is_some_and(|m| m.is_atomic()) || self.name.is_some_and(meta::is_atomic_struct)
    }

    /// The default of a key field of the elements at this position.
    pub(crate) fn key_default(&self, field: &str) -> Option<&'static str> {
        meta::key_default(self.name?, field)
    }
}

// === zero values ===

/// What a field holds in the zero value of its Go struct. Upstream turns objects into
/// typed Go structs before comparing them, so a non-pointer struct field is always
/// present (as `{}`) and a list or map without `omitempty` is present as `null`. Which
/// fields "exist" decides whether a change is an addition (and whether the parent
/// is owned too), so comparisons fill these in first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zero {
    Struct,
    Null,
}

/// Fields present in the zero value of their struct, sorted by (definition, field).
static ZERO_FIELDS: &[(&str, &str, Zero)] = &[
    ("io.k8s.api.apps.v1.ControllerRevision", "metadata", Zero::Struct),
    ("io.k8s.api.apps.v1.DaemonSet", "metadata", Zero::Struct),
    ("io.k8s.api.apps.v1.DaemonSet", "spec", Zero::Struct),
    ("io.k8s.api.apps.v1.DaemonSet", "status", Zero::Struct),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "template", Zero::Struct),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy", Zero::Struct),
    ("io.k8s.api.apps.v1.Deployment", "metadata", Zero::Struct),
    ("io.k8s.api.apps.v1.Deployment", "spec", Zero::Struct),
    ("io.k8s.api.apps.v1.Deployment", "status", Zero::Struct),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", Zero::Struct),
    ("io.k8s.api.apps.v1.DeploymentSpec", "template", Zero::Struct),
    ("io.k8s.api.apps.v1.ReplicaSet", "metadata", Zero::Struct),
    ("io.k8s.api.apps.v1.ReplicaSet", "spec", Zero::Struct),
    ("io.k8s.api.apps.v1.ReplicaSet", "status", Zero::Struct),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "template", Zero::Struct),
    ("io.k8s.api.apps.v1.StatefulSet", "metadata", Zero::Struct),
    ("io.k8s.api.apps.v1.StatefulSet", "spec", Zero::Struct),
    ("io.k8s.api.apps.v1.StatefulSet", "status", Zero::Struct),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "template", Zero::Struct),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "updateStrategy", Zero::Struct),
    ("io.k8s.api.autoscaling.v1.Scale", "metadata", Zero::Struct),
    ("io.k8s.api.autoscaling.v1.Scale", "spec", Zero::Struct),
    ("io.k8s.api.autoscaling.v1.Scale", "status", Zero::Struct),
    ("io.k8s.api.batch.v1.CronJob", "metadata", Zero::Struct),
    ("io.k8s.api.batch.v1.CronJob", "spec", Zero::Struct),
    ("io.k8s.api.batch.v1.CronJob", "status", Zero::Struct),
    ("io.k8s.api.batch.v1.CronJobSpec", "jobTemplate", Zero::Struct),
    ("io.k8s.api.batch.v1.Job", "metadata", Zero::Struct),
    ("io.k8s.api.batch.v1.Job", "spec", Zero::Struct),
    ("io.k8s.api.batch.v1.Job", "status", Zero::Struct),
    ("io.k8s.api.batch.v1.JobSpec", "template", Zero::Struct),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "metadata", Zero::Struct),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "spec", Zero::Struct),
    ("io.k8s.api.batch.v1.PodFailurePolicy", "rules", Zero::Null),
    ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", Zero::Null),
    ("io.k8s.api.batch.v1.SuccessPolicy", "rules", Zero::Null),
    ("io.k8s.api.coordination.v1.Lease", "metadata", Zero::Struct),
    ("io.k8s.api.coordination.v1.Lease", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.Binding", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Binding", "target", Zero::Struct),
    ("io.k8s.api.core.v1.CephFSPersistentVolumeSource", "monitors", Zero::Null),
    ("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", Zero::Null),
    ("io.k8s.api.core.v1.ConfigMap", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Container", "resources", Zero::Struct),
    ("io.k8s.api.core.v1.ContainerImage", "names", Zero::Null),
    ("io.k8s.api.core.v1.ContainerStatus", "lastState", Zero::Struct),
    ("io.k8s.api.core.v1.ContainerStatus", "state", Zero::Struct),
    ("io.k8s.api.core.v1.Endpoints", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.EphemeralContainer", "resources", Zero::Struct),
    ("io.k8s.api.core.v1.Event", "involvedObject", Zero::Struct),
    ("io.k8s.api.core.v1.Event", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Event", "source", Zero::Struct),
    ("io.k8s.api.core.v1.LimitRange", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.LimitRange", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.LimitRangeSpec", "limits", Zero::Null),
    ("io.k8s.api.core.v1.Namespace", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Namespace", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.Namespace", "status", Zero::Struct),
    ("io.k8s.api.core.v1.Node", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Node", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.Node", "status", Zero::Struct),
    ("io.k8s.api.core.v1.NodeDaemonEndpoints", "kubeletEndpoint", Zero::Struct),
    ("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", Zero::Null),
    ("io.k8s.api.core.v1.NodeStatus", "daemonEndpoints", Zero::Struct),
    ("io.k8s.api.core.v1.NodeStatus", "nodeInfo", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolume", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolume", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolume", "status", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolumeClaim", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolumeClaim", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolumeClaim", "status", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "resources", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolumeClaimTemplate", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.PersistentVolumeClaimTemplate", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.Pod", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Pod", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.Pod", "status", Zero::Struct),
    ("io.k8s.api.core.v1.PodSpec", "containers", Zero::Null),
    ("io.k8s.api.core.v1.PodTemplateSpec", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.PodTemplateSpec", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.PreferredSchedulingTerm", "preference", Zero::Struct),
    ("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", Zero::Null),
    ("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors", Zero::Null),
    ("io.k8s.api.core.v1.RBDVolumeSource", "monitors", Zero::Null),
    ("io.k8s.api.core.v1.ResourceQuota", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.ResourceQuota", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.ResourceQuota", "status", Zero::Struct),
    ("io.k8s.api.core.v1.Secret", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Service", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.Service", "spec", Zero::Struct),
    ("io.k8s.api.core.v1.Service", "status", Zero::Struct),
    ("io.k8s.api.core.v1.ServiceAccount", "metadata", Zero::Struct),
    ("io.k8s.api.core.v1.ServiceStatus", "loadBalancer", Zero::Struct),
    ("io.k8s.api.core.v1.WeightedPodAffinityTerm", "podAffinityTerm", Zero::Struct),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", Zero::Null),
    ("io.k8s.api.discovery.v1.Endpoint", "conditions", Zero::Struct),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", Zero::Null),
    ("io.k8s.api.discovery.v1.EndpointSlice", "metadata", Zero::Struct),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", Zero::Null),
    ("io.k8s.api.events.v1.Event", "deprecatedSource", Zero::Struct),
    ("io.k8s.api.events.v1.Event", "metadata", Zero::Struct),
    ("io.k8s.api.events.v1.Event", "regarding", Zero::Struct),
    ("io.k8s.api.node.v1.RuntimeClass", "metadata", Zero::Struct),
    ("io.k8s.api.policy.v1.Eviction", "metadata", Zero::Struct),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "preferredVersion", Zero::Struct),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "metadata", Zero::Struct),
];

/// Adds the fields that the Go zero value of each struct would have, recursively.
pub(crate) fn zero_fill(ty: Ty, value: &mut Value) {
    match (ty.shape(value), value) {
        (Shape::Struct, Value::Object(map)) => {
            if let Some(name) = ty.name {
                let start = ZERO_FIELDS.partition_point(|(d, _, _)| *d < name);
                for (_, field, zero) in ZERO_FIELDS[start..].iter().take_while(|(d, _, _)| *d == name) {
                    if !map.contains_key(*field) {
                        let v = match zero {
                            Zero::Struct => Value::Object(Map::new()),
                            Zero::Null => Value::Null,
                        };
                        map.insert((*field).to_string(), v);
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                zero_fill(ty.field(k), v);
            }
        }
        (Shape::Map, Value::Object(map)) => {
            for (k, v) in map.iter_mut() {
                zero_fill(ty.field(k), v);
            }
        }
        (Shape::List(_), Value::Array(items)) => {
            let item = ty.item();
            for v in items {
                zero_fill(item, v);
            }
        }
        _ => {}
    }
}

/// The zero value of a whole object of the definition at `ty`.
pub(crate) fn zero_object(ty: Ty) -> Value {
    let mut v = Value::Object(Map::new());
    zero_fill(ty, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_table_is_sorted_and_names_real_fields() {
        assert!(ZERO_FIELDS.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        for (d, f, _) in ZERO_FIELDS {
            assert!(Ty::root(d).has_field(f), "{d}.{f}");
        }
    }

    #[test]
    fn fields_resolve_through_lists_and_maps() {
        let pod = Ty::root("io.k8s.api.core.v1.Pod");
        let containers = pod.field("spec").field("containers");
        assert_eq!(containers.shape(&json!([])), Shape::List(ListType::Map(&["name"])));
        let c = containers.item();
        assert_eq!(c.name(), Some("io.k8s.api.core.v1.Container"));
        assert_eq!(c.shape(&json!({})), Shape::Struct);
        let labels = pod.field("metadata").field("labels");
        assert_eq!(labels.shape(&json!({"a": "b"})), Shape::Map);
        assert_eq!(labels.field("a").shape(&json!("b")), Shape::Scalar);
        assert_eq!(pod.field("bogus").shape(&json!({})), Shape::Map);
        assert_eq!(pod.field("bogus").shape(&json!([1])), Shape::List(ListType::Atomic));
        let port = c.field("ports").item();
        assert_eq!(port.key_default("protocol"), Some("TCP"));
    }

    #[test]
    fn zero_values_have_their_non_pointer_structs() {
        let d = zero_object(Ty::root("io.k8s.api.apps.v1.Deployment"));
        assert_eq!(d["spec"]["strategy"], json!({}));
        assert_eq!(d["spec"]["template"]["spec"]["containers"], Value::Null);
        assert!(d["spec"].get("selector").is_none());
    }
}
