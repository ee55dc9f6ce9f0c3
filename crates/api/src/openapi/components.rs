//! `components.schemas`: the registry's definitions in the shape kube-apiserver
//! publishes, plus the few it cannot generate (the `List` kinds and `WatchEvent`).
//!
//! The shared set ([`definitions`]) carries no per-document decoration, so the strict
//! field check can use it without touching the patch metadata table. Each document
//! then takes the definitions reachable from its kinds and adds
//! `x-kubernetes-group-version-kind` and the patch extensions ([`document_schemas`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::patch::meta::ListMeta;
use crate::resources::{self, ResourceInfo, Subresource};
use crate::schema::schemas;

pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
pub(crate) const BINDING: &str = "io.k8s.api.core.v1.Binding";
pub(crate) const EVICTION: &str = "io.k8s.api.policy.v1.Eviction";
pub(crate) const TOKEN_REQUEST: &str = "io.k8s.api.authentication.v1.TokenRequest";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";

/// Definitions whose `metadata` upstream really marks required. k8s-openapi marks
/// `metadata` required on every kind because the Rust field is not an `Option`;
/// upstream does so only here, and `kubectl explain` prints `-required-` from it.
const METADATA_REQUIRED: &[&str] = &["io.k8s.api.core.v1.Event"];

/// A `$ref` to a definition.
pub(crate) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// The definition a `$ref` points at, if `schema` is one.
pub(crate) fn ref_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix(REF_PREFIX)
}

/// The name of the `List` definition of a kind (`io.k8s.api.apps.v1.DeploymentList`).
pub(crate) fn list_definition(res: &ResourceInfo) -> String {
    format!("{}List", res.definition)
}

/// Every definition, in the upstream v3 shape, without per-document extensions.
pub(crate) fn definitions() -> &'static BTreeMap<String, Value> {
    static DEFS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DEFS.get_or_init(build_definitions)
}

fn build_definitions() -> BTreeMap<String, Value> {
    let mut defs = schemas().all().clone();

    // Upstream's v3 documents spell the two scalar unions as `oneOf`; `kubectl explain`
    // then names them (`<IntOrString>`) instead of guessing a primitive type.
    if let Some(Value::Object(s)) = defs.get_mut(INT_OR_STRING) {
        s.insert("format".into(), json!("int-or-string"));
        s.insert("oneOf".into(), json!([{ "type": "integer" }, { "type": "string" }]));
    }
    if let Some(Value::Object(s)) = defs.get_mut(QUANTITY) {
        s.remove("x-kubernetes-int-or-string");
        s.insert("oneOf".into(), json!([{ "type": "string" }, { "type": "number" }]));
    }

    for (name, def) in defs.iter_mut() {
        if METADATA_REQUIRED.contains(&name.as_str()) {
            continue;
        }
        let Some(obj) = def.as_object_mut() else { continue };
        let empty = match obj.get_mut("required").and_then(Value::as_array_mut) {
            Some(required) => {
                required.retain(|f| f != "metadata");
                required.is_empty()
            }
            None => false,
        };
        if empty {
            obj.remove("required");
        }
    }

    for res in resources::RESOURCES {
        let name = list_definition(res);
        if !defs.contains_key(&name) {
            let list = list_schema(res, defs.get(res.definition));
            defs.insert(name, list);
        }
    }
    defs.entry(WATCH_EVENT.to_string()).or_insert_with(watch_event_schema);
    defs
}

/// The `List` kind of a resource, as the generated upstream ones read.
fn list_schema(res: &ResourceInfo, item: Option<&Value>) -> Value {
    let type_meta = |field: &str| {
        item.and_then(|i| i.get("properties")?.get(field).cloned())
            .unwrap_or_else(|| json!({ "type": "string" }))
    };
    json!({
        "description": format!("{}List is a list of {} objects.", res.kind, res.kind),
        "type": "object",
        "properties": {
            "apiVersion": type_meta("apiVersion"),
            "items": {
                "description": format!("Items is the list of {} objects.", res.kind),
                "type": "array",
                "items": {
                    "allOf": [reference(res.definition)],
                    "default": {},
                },
            },
            "kind": type_meta("kind"),
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                "allOf": [reference(LIST_META)],
                "default": {},
            },
        },
        "required": ["items"],
    })
}

/// The frame of a watch stream (`{"type": "ADDED", "object": {...}}`).
fn watch_event_schema() -> Value {
    json!({
        "description": "Event represents a single event to a watched resource.",
        "type": "object",
        "properties": {
            "object": {
                "description": "Object is the new state of the object for ADDED and MODIFIED events, the state just before deletion for DELETED, the latest resourceVersion for BOOKMARK, and a Status for ERROR.",
                "allOf": [reference(RAW_EXTENSION)],
            },
            "type": {
                "description": "Type of the event: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.",
                "type": "string",
                "default": "",
            },
        },
        "required": ["type", "object"],
    })
}

/// One entry of `x-kubernetes-group-version-kind`.
pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// Every definition name that `$ref`s anywhere in `value` point at.
pub(crate) fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(REF_PREFIX)) {
                out.push(name);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The `components.schemas` of one group version: every definition reachable from
/// its kinds, their lists, their subresources' kinds and the meta kinds that the
/// operations use, each kind tagged with its GVK and every list field carrying the
/// patch metadata that `field_meta` knows.
pub(crate) fn document_schemas(
    group: &str,
    version: &str,
    field_meta: &dyn Fn(&str, &str) -> Option<ListMeta>,
) -> Map<String, Value> {
    let defs = definitions();
    let mut tags: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut tag = |name: String, entry: Value| {
        let list = tags.entry(name).or_default();
        if !list.contains(&entry) {
            list.push(entry);
        }
    };

    for res in resources::in_group_version(group, version) {
        tag(res.definition.to_string(), gvk(res.group, res.version, res.kind));
        tag(list_definition(res), gvk(res.group, res.version, &res.list_kind()));
        for sub in res.subresources {
            match sub {
                Subresource::Scale => tag(SCALE.into(), gvk("autoscaling", "v1", "Scale")),
                Subresource::Binding => tag(BINDING.into(), gvk("", "v1", "Binding")),
                Subresource::Eviction => tag(EVICTION.into(), gvk("policy", "v1", "Eviction")),
                Subresource::Status | Subresource::Finalize => {}
                // Streaming subresources have no body schema.
                Subresource::Token => tag(TOKEN_REQUEST.into(), gvk("authentication.k8s.io", "v1", "TokenRequest")),
                Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward => {}
            }
        }
    }
    // Upstream tags the option and event kinds with every group version that uses
    // them; Status only with core/v1.
    tag(STATUS.into(), gvk("", "v1", "Status"));
    let mut versions = vec![("", "v1")];
    for (g, vs) in resources::groups() {
        versions.extend(vs.into_iter().map(|v| (g, v)));
    }
    for (g, v) in versions {
        tag(DELETE_OPTIONS.into(), gvk(g, v, "DeleteOptions"));
        tag(WATCH_EVENT.into(), gvk(g, v, "WatchEvent"));
    }

    // Names borrowed from the static registry, so that `tags` stays free to consume.
    let mut roots: Vec<&'static str> = tags
        .keys()
        .map(String::as_str)
        .chain([OBJECT_META, LIST_META, PATCH])
        .filter_map(|name| defs.get_key_value(name).map(|(k, _)| k.as_str()))
        .collect();
    let mut seen: BTreeSet<&'static str> = BTreeSet::new();
    while let Some(name) = roots.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(def) = defs.get(name) {
            collect_refs(def, &mut roots);
        }
    }

    let mut out = Map::new();
    for name in seen {
        let Some(def) = defs.get(name) else { continue };
        let mut def = def.clone();
        if let Value::Object(obj) = &mut def {
            if let Some(Value::Object(props)) = obj.get_mut("properties") {
                for (field, prop) in props.iter_mut() {
                    if let (Some(meta), Value::Object(prop)) = (field_meta(name, field), prop) {
                        add_patch_extensions(prop, &meta);
                    }
                }
            }
            if let Some(list) = tags.remove(name) {
                obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
            }
        }
        out.insert(name.to_string(), def);
    }
    out
}

fn add_patch_extensions(prop: &mut Map<String, Value>, meta: &ListMeta) {
    if let Some(strategy) = meta.patch_strategy {
        prop.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
    }
    if let Some(key) = meta.patch_merge_key {
        prop.insert("x-kubernetes-patch-merge-key".into(), json!(key));
    }
    if let Some(list_type) = meta.list_type {
        prop.insert("x-kubernetes-list-type".into(), json!(list_type));
    }
    if !meta.list_map_keys.is_empty() {
        prop.insert("x-kubernetes-list-map-keys".into(), json!(meta.list_map_keys));
    }
}
