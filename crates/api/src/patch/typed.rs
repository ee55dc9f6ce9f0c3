//! The schema walk shared by strategic merge patch and server-side apply.
//!
//! A [`Ty`] is a position in the schema registry: the resolved schema of a value, the
//! name of its definition (to look up [`meta::field_meta`] of its fields), and the
//! patch metadata that the parent field gave it. Positions the schema does not
//! describe (free-form objects, unknown fields) are "untyped": maps merge key by key,
//! lists are atomic, as upstream does for deduced types.
//!
//! Every write walks its object along these positions (server-side apply keeps
//! `managedFields` on every create, update and patch), so the registry's JSON schemas
//! are compiled once into a [`Tree`] of nodes: `$ref`s resolved, properties sorted for
//! binary search, patch metadata and zero-value fields looked up ahead of time. A
//! step down the walk is then a binary search and two pointer copies.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::meta::{self, ListMeta, ListType};
use crate::schema::{schemas, Schemas};

/// A position in the schema.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ty {
    /// The resolved schema; `None` for untyped positions.
    node: Option<&'static Node>,
    /// Metadata of the field this value sits in.
    field: Option<&'static FieldMeta>,
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

// === schema tree ===

/// The registry's schemas, compiled for walking.
struct Tree {
    nodes: Vec<Node>,
    roots: HashMap<&'static str, u32>,
    /// `{}`, the zero value of a struct field, lent to walks that read zero values.
    empty_object: Value,
}

/// What a schema declares its values to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Struct,
    Map,
    List,
    Scalar,
}

/// One resolved schema.
struct Node {
    /// The definition the schema came from, when it is a named one.
    name: Option<&'static str>,
    kind: Kind,
    /// Declared fields sorted by name; `None` when the schema has no `properties` object.
    properties: Option<Box<[Prop]>>,
    /// The schema of map values (`additionalProperties`), when it is an object.
    additional: Option<u32>,
    /// The schema of list elements.
    items: Option<u32>,
    /// Whether the definition is owned as a whole (`+structType=atomic`).
    atomic_struct: bool,
    /// Fields present in the Go zero value of the struct.
    zero: &'static [(&'static str, &'static str, Zero)],
    /// Defaults of fields that serve as list-map keys, as JSON values.
    key_defaults: Box<[(&'static str, Value)]>,
}

/// One declared field of a struct.
struct Prop {
    name: &'static str,
    node: u32,
    meta: Option<FieldMeta>,
}

/// Patch metadata of a field, with what server-side apply derives from it.
#[derive(Debug)]
struct FieldMeta {
    meta: ListMeta,
    list_type: ListType,
    atomic: bool,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(Tree::build)
}

impl Tree {
    fn build() -> Tree {
        let all = schemas().all();
        let mut builder = Builder { nodes: Vec::new(), ids: HashMap::new() };
        let mut roots = HashMap::new();
        for (name, schema) in all {
            let id = builder.intern(Some(name.as_str()), schema);
            roots.insert(name.as_str(), id);
        }
        let nodes = builder.nodes.into_iter().map(|n| n.expect("every interned schema is built")).collect();
        Tree { nodes, roots, empty_object: Value::Object(Map::new()) }
    }

    fn node(&'static self, id: u32) -> &'static Node {
        &self.nodes[id as usize]
    }
}

/// Compiles schemas into nodes, one per (resolved schema, definition name), so that
/// recursive definitions become cycles of node ids.
struct Builder {
    nodes: Vec<Option<Node>>,
    ids: HashMap<(*const Value, Option<&'static str>), u32>,
}

impl Builder {
    /// Follows `$ref` and single-element `allOf`, remembering the last definition name.
    fn resolve(mut name: Option<&'static str>, mut schema: &'static Value) -> (Option<&'static str>, &'static Value) {
        let all = schemas().all();
        for _ in 0..8 {
            if let Some(r) = Schemas::ref_name(schema) {
                match all.get_key_value(r) {
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
        (name, schema)
    }

    fn intern(&mut self, name: Option<&'static str>, schema: &'static Value) -> u32 {
        let (name, schema) = Self::resolve(name, schema);
        let key = (schema as *const Value, name);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = u32::try_from(self.nodes.len()).expect("fewer than 2^32 schemas");
        self.ids.insert(key, id);
        self.nodes.push(None);

        let properties = schema.get("properties").and_then(Value::as_object).map(|props| {
            let mut out: Vec<Prop> = props
                .iter()
                .map(|(k, s)| Prop {
                    name: k.as_str(),
                    node: self.intern(None, s),
                    meta: name.and_then(|n| meta::field_meta(n, k)).map(|m| FieldMeta { meta: m, list_type: m.list_type(), atomic: m.is_atomic() }),
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(b.name));
            out.into_boxed_slice()
        });
        let additional = match schema.get("additionalProperties") {
            Some(s) if s.is_object() => Some(self.intern(None, s)),
            _ => None,
        };
        let items = schema.get("items").map(|s| self.intern(None, s));
        let kind = if schema.get("properties").is_some() {
            Kind::Struct
        } else {
            match schema.get("type").and_then(Value::as_str) {
                Some("array") => Kind::List,
                Some("object") => Kind::Map,
                Some(_) => Kind::Scalar,
                None if schema.get("items").is_some() => Kind::List,
                None if schema.get("additionalProperties").is_some() => Kind::Map,
                // IntOrString and friends carry no type: leaves.
                None => Kind::Scalar,
            }
        };
        let zero = match name {
            Some(n) => {
                let start = ZERO_FIELDS.partition_point(|(d, _, _)| *d < n);
                let len = ZERO_FIELDS[start..].iter().take_while(|(d, _, _)| *d == n).count();
                &ZERO_FIELDS[start..start + len]
            }
            None => &[],
        };
        let key_defaults = match (name, &properties) {
            (Some(n), Some(props)) => {
                props.iter().filter_map(|p| meta::key_default(n, p.name).map(|d| (p.name, Value::String(d.into())))).collect()
            }
            _ => Box::default(),
        };
        self.nodes[id as usize] = Some(Node {
            name,
            kind,
            properties,
            additional,
            items,
            atomic_struct: name.is_some_and(meta::is_atomic_struct),
            zero,
            key_defaults,
        });
        id
    }
}

// === impl Ty ===

impl fmt::Debug for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ty").field("name", &self.name()).field("kind", &self.node.map(|n| n.kind)).field("meta", &self.meta()).finish()
    }
}

impl Ty {
    /// The top of the definition `definition`, or an untyped position if unknown.
    pub(crate) fn root(definition: &str) -> Ty {
        let tree = tree();
        match tree.roots.get(definition) {
            Some(&id) => Ty { node: Some(tree.node(id)), field: None },
            None => Ty::default(),
        }
    }

    /// The definition name, if this position is a named definition.
    pub(crate) fn name(&self) -> Option<&'static str> {
        self.node?.name
    }

    /// Patch metadata of the field this value sits in.
    pub(crate) fn meta(&self) -> Option<ListMeta> {
        self.field.map(|f| f.meta)
    }

    /// Whether `key` is a declared field of this struct.
    pub(crate) fn has_field(&self, key: &str) -> bool {
        self.prop(key).is_some()
    }

    fn prop(&self, key: &str) -> Option<&'static Prop> {
        let props = self.node?.properties.as_deref()?;
        props.binary_search_by(|p| p.name.cmp(key)).ok().map(|i| &props[i])
    }

    /// The position of `key` in this object: a declared field, or the element of a map.
    pub(crate) fn field(&self, key: &str) -> Ty {
        let Some(node) = self.node else { return Ty::default() };
        if let Some(props) = node.properties.as_deref() {
            return match props.binary_search_by(|p| p.name.cmp(key)) {
                Ok(i) => Ty { node: Some(tree().node(props[i].node)), field: props[i].meta.as_ref() },
                Err(_) => Ty::default(),
            };
        }
        match node.additional {
            Some(id) => Ty { node: Some(tree().node(id)), field: None },
            None => Ty::default(),
        }
    }

    /// [`Ty::field`], and whether `key` is a declared field ([`Ty::has_field`]).
    pub(crate) fn field_and_declared(&self, key: &str) -> (Ty, bool) {
        match self.node.and_then(|n| n.properties.as_deref()) {
            Some(props) => match props.binary_search_by(|p| p.name.cmp(key)) {
                Ok(i) => (Ty { node: Some(tree().node(props[i].node)), field: props[i].meta.as_ref() }, true),
                Err(_) => (Ty::default(), false),
            },
            None => (self.field(key), false),
        }
    }

    /// The position of the elements of this list.
    pub(crate) fn item(&self) -> Ty {
        match self.node.and_then(|n| n.items) {
            Some(id) => Ty { node: Some(tree().node(id)), field: None },
            None => Ty::default(),
        }
    }

    /// The shape of `value` at this position. `null` takes the declared shape (it is an
    /// empty value of that type); a value of the wrong type is a leaf; untyped objects
    /// are maps and untyped lists are atomic.
    pub(crate) fn shape(&self, value: &Value) -> Shape {
        let Some(node) = self.node else {
            return match value {
                Value::Object(_) => Shape::Map,
                Value::Array(_) => Shape::List(ListType::Atomic),
                _ => Shape::Scalar,
            };
        };
        match (node.kind, value) {
            (Kind::Struct, Value::Null | Value::Object(_)) => Shape::Struct,
            (Kind::Map, Value::Null | Value::Object(_)) => Shape::Map,
            (Kind::List, Value::Null | Value::Array(_)) => Shape::List(self.list_type()),
            _ => Shape::Scalar,
        }
    }

    /// How server-side apply treats this list.
    pub(crate) fn list_type(&self) -> ListType {
        self.field.map_or(ListType::Atomic, |f| f.list_type)
    }

    /// Whether this map or struct is owned as a whole.
    pub(crate) fn is_atomic(&self) -> bool {
        self.field.is_some_and(|f| f.atomic) || self.node.is_some_and(|n| n.atomic_struct)
    }

    /// The default of a key field of the elements at this position.
    pub(crate) fn key_default(&self, field: &str) -> Option<&'static str> {
        meta::key_default(self.name()?, field)
    }

    /// [`Ty::key_default`] as a JSON value, lent for as long as the program runs.
    pub(crate) fn key_default_value(&self, field: &str) -> Option<&'static Value> {
        self.node?.key_defaults.iter().find(|(f, _)| *f == field).map(|(_, v)| v)
    }

    /// The fields that the Go zero value of this struct holds, with their values. They
    /// only apply to objects of [`Shape::Struct`].
    pub(crate) fn zero_fields(&self) -> impl Iterator<Item = (&'static str, &'static Value)> + Clone {
        static NULL: Value = Value::Null;
        let zero = self.node.map_or(&[][..], |n| n.zero);
        zero.iter().map(|(_, field, z)| {
            let v = match z {
                Zero::Struct => &tree().empty_object,
                Zero::Null => &NULL,
            };
            (*field, v)
        })
    }

    /// Whether [`Ty::zero_fields`] is empty.
    pub(crate) fn has_zero_fields(&self) -> bool {
        self.node.is_some_and(|n| !n.zero.is_empty())
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
    ("io.k8s.api.core.v1.TopologySelectorLabelRequirement", "values", Zero::Null),
    ("io.k8s.api.core.v1.WeightedPodAffinityTerm", "podAffinityTerm", Zero::Struct),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", Zero::Null),
    ("io.k8s.api.discovery.v1.Endpoint", "conditions", Zero::Struct),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", Zero::Null),
    ("io.k8s.api.discovery.v1.EndpointSlice", "metadata", Zero::Struct),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", Zero::Null),
    ("io.k8s.api.events.v1.Event", "deprecatedSource", Zero::Struct),
    ("io.k8s.api.events.v1.Event", "metadata", Zero::Struct),
    ("io.k8s.api.events.v1.Event", "regarding", Zero::Struct),
    ("io.k8s.api.networking.v1.HTTPIngressPath", "backend", Zero::Struct),
    ("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", Zero::Null),
    ("io.k8s.api.networking.v1.Ingress", "metadata", Zero::Struct),
    ("io.k8s.api.networking.v1.Ingress", "spec", Zero::Struct),
    ("io.k8s.api.networking.v1.Ingress", "status", Zero::Struct),
    ("io.k8s.api.networking.v1.IngressClass", "metadata", Zero::Struct),
    ("io.k8s.api.networking.v1.IngressClass", "spec", Zero::Struct),
    ("io.k8s.api.networking.v1.IngressServiceBackend", "port", Zero::Struct),
    ("io.k8s.api.networking.v1.IngressStatus", "loadBalancer", Zero::Struct),
    ("io.k8s.api.networking.v1.NetworkPolicy", "metadata", Zero::Struct),
    ("io.k8s.api.networking.v1.NetworkPolicy", "spec", Zero::Struct),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector", Zero::Struct),
    ("io.k8s.api.node.v1.RuntimeClass", "metadata", Zero::Struct),
    ("io.k8s.api.policy.v1.Eviction", "metadata", Zero::Struct),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "metadata", Zero::Struct),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "spec", Zero::Struct),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "status", Zero::Struct),
    ("io.k8s.api.scheduling.v1.PriorityClass", "metadata", Zero::Struct),
    ("io.k8s.api.storage.v1.StorageClass", "metadata", Zero::Struct),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "preferredVersion", Zero::Struct),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", Zero::Null),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "metadata", Zero::Struct),
];

/// Adds the fields that the Go zero value of each struct would have, recursively.
/// Comparisons read objects this way in place (see `apply::View`); this is the
/// definition they are tested against.
#[cfg(test)]
pub(crate) fn zero_fill(ty: Ty, value: &mut Value) {
    match (ty.shape(value), value) {
        (Shape::Struct, Value::Object(map)) => {
            for (field, zero) in ty.zero_fields() {
                if !map.contains_key(field) {
                    map.insert(field.to_string(), zero.clone());
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
#[cfg(test)]
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
    fn every_key_default_is_there_as_a_json_value() {
        let tree = tree();
        for node in &tree.nodes {
            for prop in node.properties.iter().flat_map(|p| p.iter()) {
                let Some(ListType::Map(keys)) = prop.meta.as_ref().map(|m| m.list_type) else { continue };
                let item = Ty { node: Some(tree.node(prop.node)), field: prop.meta.as_ref() }.item();
                for k in keys {
                    assert_eq!(item.key_default(k).map(Value::from), item.key_default_value(k).cloned(), "{:?}.{k}", item.name());
                }
            }
        }
        let port = Ty::root("io.k8s.api.core.v1.ContainerPort");
        assert_eq!(port.key_default_value("protocol"), Some(&Value::from("TCP")));
    }

    #[test]
    fn zero_values_have_their_non_pointer_structs() {
        let d = zero_object(Ty::root("io.k8s.api.apps.v1.Deployment"));
        assert_eq!(d["spec"]["strategy"], json!({}));
        assert_eq!(d["spec"]["template"]["spec"]["containers"], Value::Null);
        assert!(d["spec"].get("selector").is_none());
    }
}
