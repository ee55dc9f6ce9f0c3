use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::components::{definitions, ref_name, REF_PREFIX};
use super::*;
use crate::resources::RESOURCES;

/// Patch metadata for the structure tests, so they do not depend on the real table.
fn fake_meta(definition: &str, field: &str) -> Option<ListMeta> {
    match (definition, field) {
        ("io.k8s.api.core.v1.PodSpec", "containers") => Some(ListMeta {
            patch_strategy: Some("merge"),
            patch_merge_key: Some("name"),
            list_type: Some("map"),
            list_map_keys: &["name"],
        }),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers") => Some(ListMeta {
            patch_strategy: Some("merge"),
            patch_merge_key: None,
            list_type: Some("set"),
            list_map_keys: &[],
        }),
        _ => None,
    }
}

fn doc(group: &str, version: &str) -> Value {
    build_document(group, version, &fake_meta).expect("served group version")
}

fn all_docs() -> Vec<(String, Value)> {
    group_versions().into_iter().map(|(g, v)| (document_path(g, v), doc(g, v))).collect()
}

fn operations(doc: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    doc["paths"].as_object().unwrap().iter().flat_map(|(path, item)| {
        item.as_object()
            .unwrap()
            .iter()
            .filter(|(method, _)| *method != "parameters")
            .map(move |(method, op)| (path.as_str(), method.as_str(), op))
    })
}

fn param_names(op: &Value) -> Vec<&str> {
    op["parameters"].as_array().map(|ps| ps.iter().map(|p| p["name"].as_str().unwrap()).collect()).unwrap_or_default()
}

fn op<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} missing");
    op
}

/// What `kubectl explain` does: the GVK of the collection's first operation, then
/// the schema tagged with it.
fn explained_schema<'a>(doc: &'a Value, collection: &str) -> &'a Value {
    let item = &doc["paths"][collection];
    let gvk = ["get", "post", "put", "patch", "delete"]
        .iter()
        .find_map(|m| item.get(*m)?.get("x-kubernetes-group-version-kind"))
        .expect("collection has a GVK");
    let mut found = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["x-kubernetes-group-version-kind"].as_array().is_some_and(|l| l.contains(gvk)));
    let schema = found.next().expect("a schema carries the GVK");
    assert!(found.next().is_none(), "two schemas carry {gvk}");
    schema
}

/// Follows one field the way `kubectl explain` and strategic merge patch do:
/// the property, then its single `allOf`, then its `$ref`.
fn field<'a>(doc: &'a Value, schema: &'a Value, name: &str) -> &'a Value {
    let mut s = &schema["properties"][name];
    assert!(s.is_object(), "no field {name}");
    if let Some(items) = s.get("items") {
        s = items;
    }
    if let Some([one]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        s = one;
    }
    match ref_name(s) {
        Some(r) => &doc["components"]["schemas"][r],
        None => s,
    }
}

// === documents ===

#[test]
fn every_patch_operation_offers_field_validation_and_every_patch_type() {
    for (name, doc) in all_docs() {
        for (path, method, op) in operations(&doc).filter(|(_, m, _)| *m == "patch") {
            let params = param_names(op);
            for p in ["dryRun", "fieldManager", "fieldValidation", "force"] {
                assert!(params.contains(&p), "{name}: patch {path} lacks {p}");
            }
            let content = op["requestBody"]["content"].as_object().unwrap();
            for t in [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ] {
                assert!(content.contains_key(t), "{name}: {method} {path} lacks {t}");
            }
        }
    }
}

#[test]
fn every_resource_has_a_patch_operation_tagged_with_its_kind() {
    for res in RESOURCES {
        let doc = doc(res.group, res.version);
        let gvk = json!({ "group": res.group, "kind": res.kind, "version": res.version });
        let patches: Vec<_> = operations(&doc)
            .filter(|(_, m, op)| *m == "patch" && op["x-kubernetes-group-version-kind"] == gvk)
            .collect();
        assert!(!patches.is_empty(), "{} has no PATCH operation", res.kind);
        for (path, _, op) in patches {
            assert!(param_names(op).contains(&"fieldValidation"), "{path}");
        }
    }
}

#[test]
fn create_and_replace_offer_the_write_parameters() {
    for (name, doc) in all_docs() {
        // Streaming (connect) operations take their own options, not write options.
        for (path, method, op) in operations(&doc).filter(|(_, m, op)| (*m == "post" || *m == "put") && op["x-kubernetes-action"] != "connect") {
            let params = param_names(op);
            for p in ["dryRun", "fieldManager", "fieldValidation"] {
                assert!(params.contains(&p), "{name}: {method} {path} lacks {p}");
            }
            assert!(!params.contains(&"force"), "{name}: {method} {path} offers force");
        }
    }
}

#[test]
fn list_operations_offer_the_list_parameters() {
    let doc = doc("apps", "v1");
    for path in ["/apis/apps/v1/namespaces/{namespace}/deployments", "/apis/apps/v1/deployments"] {
        let params = param_names(op(&doc, path, "get"));
        for p in [
            "labelSelector",
            "fieldSelector",
            "limit",
            "continue",
            "resourceVersion",
            "resourceVersionMatch",
            "watch",
            "allowWatchBookmarks",
            "sendInitialEvents",
            "timeoutSeconds",
        ] {
            assert!(params.contains(&p), "{path} lacks {p}");
        }
    }
    let shared = param_names(&doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]);
    assert_eq!(shared, ["name", "namespace", "pretty"]);
}

#[test]
fn operations_are_named_and_tagged_like_upstream() {
    let cases = [
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments", "get", "listAppsV1NamespacedDeployment", "list"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments", "post", "createAppsV1NamespacedDeployment", "post"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments", "delete", "deleteAppsV1CollectionNamespacedDeployment", "deletecollection"),
        ("apps", "/apis/apps/v1/deployments", "get", "listAppsV1DeploymentForAllNamespaces", "list"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "get", "readAppsV1NamespacedDeployment", "get"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "put", "replaceAppsV1NamespacedDeployment", "put"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "patch", "patchAppsV1NamespacedDeployment", "patch"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "delete", "deleteAppsV1NamespacedDeployment", "delete"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", "patch", "patchAppsV1NamespacedDeploymentScale", "patch"),
        ("apps", "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status", "put", "replaceAppsV1NamespacedDeploymentStatus", "put"),
        ("apps", "/apis/apps/v1/watch/namespaces/{namespace}/deployments", "get", "watchAppsV1NamespacedDeploymentList", "watchlist"),
        ("apps", "/apis/apps/v1/watch/namespaces/{namespace}/deployments/{name}", "get", "watchAppsV1NamespacedDeployment", "watch"),
        ("apps", "/apis/apps/v1/watch/deployments", "get", "watchAppsV1DeploymentListForAllNamespaces", "watchlist"),
        ("", "/api/v1/namespaces/{namespace}/pods/{name}/binding", "post", "createCoreV1NamespacedPodBinding", "post"),
        ("", "/api/v1/namespaces/{namespace}/pods/{name}/eviction", "post", "createCoreV1NamespacedPodEviction", "post"),
        ("", "/api/v1/namespaces/{name}/finalize", "put", "replaceCoreV1NamespaceFinalize", "put"),
        ("", "/api/v1/namespaces/{name}/status", "get", "readCoreV1NamespaceStatus", "get"),
        ("", "/api/v1/nodes", "delete", "deleteCoreV1CollectionNode", "deletecollection"),
        ("discovery.k8s.io", "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", "get", "listDiscoveryV1NamespacedEndpointSlice", "list"),
        ("node.k8s.io", "/apis/node.k8s.io/v1/runtimeclasses/{name}", "patch", "patchNodeV1RuntimeClass", "patch"),
    ];
    for (group, path, method, id, action) in cases {
        let doc = doc(group, "v1");
        let op = op(&doc, path, method);
        assert_eq!(op["operationId"], id, "{method} {path}");
        assert_eq!(op["x-kubernetes-action"], action, "{method} {path}");
    }
    let doc = doc("coordination.k8s.io", "v1");
    assert_eq!(op(&doc, "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", "get")["tags"], json!(["coordination_v1"]));
}

#[test]
fn operation_ids_are_unique_within_a_document() {
    for (name, doc) in all_docs() {
        let mut seen = BTreeSet::new();
        for (path, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap();
            assert!(seen.insert(id.to_string()), "{name}: {method} {path} reuses {id}");
        }
    }
}

#[test]
fn subresources_use_their_own_kinds() {
    let apps = doc("apps", "v1");
    let scale = op(&apps, "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}/scale", "put");
    assert_eq!(scale["x-kubernetes-group-version-kind"], json!({ "group": "autoscaling", "kind": "Scale", "version": "v1" }));
    assert_eq!(scale["requestBody"]["content"]["*/*"]["schema"]["$ref"], format!("{REF_PREFIX}io.k8s.api.autoscaling.v1.Scale"));
    let status = op(&apps, "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status", "patch");
    assert_eq!(status["x-kubernetes-group-version-kind"]["kind"], "Deployment");

    let core = doc("", "v1");
    let eviction = op(&core, "/api/v1/namespaces/{namespace}/pods/{name}/eviction", "post");
    assert_eq!(eviction["x-kubernetes-group-version-kind"], json!({ "group": "policy", "kind": "Eviction", "version": "v1" }));
    let binding = op(&core, "/api/v1/namespaces/{namespace}/pods/{name}/binding", "post");
    assert_eq!(binding["requestBody"]["content"]["*/*"]["schema"]["$ref"], format!("{REF_PREFIX}io.k8s.api.core.v1.Binding"));
    assert!(core["paths"].get("/api/v1/namespaces/{namespace}/services/{name}/scale").is_none());
}

#[test]
fn every_ref_resolves_within_its_document() {
    for (name, doc) in all_docs() {
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        components::collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            assert!(schemas.contains_key(r), "{name}: {r} is referenced but missing");
        }
    }
}

#[test]
fn documents_carry_only_what_their_kinds_reach() {
    let apps = doc("apps", "v1");
    let schemas = apps["components"]["schemas"].as_object().unwrap();
    for def in [
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.api.apps.v1.DeploymentList",
        "io.k8s.api.core.v1.PodSpec",
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    ] {
        assert!(schemas.contains_key(def), "apps/v1 lacks {def}");
    }
    assert!(!schemas.contains_key("io.k8s.api.batch.v1.Job"));
    assert!(!schemas.contains_key("io.k8s.api.core.v1.Pod"));
    assert_eq!(apps["openapi"], "3.0.0");
    assert_eq!(apps["info"], json!({ "title": "Kubernetes", "version": "v1.33.0" }));
}

#[test]
fn kinds_and_lists_carry_their_group_version_kind_once() {
    for res in RESOURCES {
        let doc = doc(res.group, res.version);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for (def, kind) in [(res.definition.to_string(), res.kind.to_string()), (format!("{}List", res.definition), res.list_kind())] {
            let want = json!([{ "group": res.group, "kind": kind, "version": res.version }]);
            assert_eq!(schemas[&def]["x-kubernetes-group-version-kind"], want, "{def}");
        }
    }
    for (name, doc) in all_docs() {
        let mut seen = BTreeSet::new();
        for (def, schema) in doc["components"]["schemas"].as_object().unwrap() {
            for gvk in schema["x-kubernetes-group-version-kind"].as_array().into_iter().flatten() {
                assert!(seen.insert(gvk.to_string()), "{name}: {def} repeats {gvk}");
            }
        }
        let delete_options = &doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"];
        let gvks = delete_options["x-kubernetes-group-version-kind"].as_array().unwrap();
        assert!(gvks.contains(&json!({ "group": "", "kind": "DeleteOptions", "version": "v1" })), "{name}");
    }
}

#[test]
fn list_kinds_are_synthesized_with_list_meta_and_items() {
    let apps = doc("apps", "v1");
    let list = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(list["required"], json!(["items"]));
    assert_eq!(field(&apps, list, "items")["description"], apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["description"]);
    assert_eq!(
        list["properties"]["metadata"]["allOf"][0]["$ref"],
        format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")
    );
    assert_eq!(list["properties"]["apiVersion"]["type"], "string");
    assert_eq!(list["properties"]["kind"]["type"], "string");
    let list_op = op(&apps, "/apis/apps/v1/namespaces/{namespace}/deployments", "get");
    assert_eq!(
        list_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        format!("{REF_PREFIX}io.k8s.api.apps.v1.DeploymentList")
    );
    assert!(list_op["responses"]["200"]["content"]["application/json;stream=watch"].is_object());
}

#[test]
fn explain_walks_from_a_resource_to_a_nested_field() {
    // kubectl explain deployment.spec.strategy
    let apps = doc("apps", "v1");
    let deployment = explained_schema(&apps, "/apis/apps/v1/namespaces/{namespace}/deployments");
    assert!(deployment["description"].as_str().unwrap().starts_with("Deployment enables"));
    let spec = field(&apps, deployment, "spec");
    let strategy = field(&apps, spec, "strategy");
    let fields: Vec<_> = strategy["properties"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["rollingUpdate", "type"]);
    let metadata = field(&apps, deployment, "metadata");
    assert!(metadata["properties"]["labels"]["additionalProperties"].is_object());

    // kubectl explain pods --recursive reaches the containers.
    let core = doc("", "v1");
    let pod = explained_schema(&core, "/api/v1/namespaces/{namespace}/pods");
    let container = field(&core, field(&core, pod, "spec"), "containers");
    assert!(container["properties"]["imagePullPolicy"].is_object());
    let node = explained_schema(&core, "/api/v1/nodes");
    assert_eq!(node["x-kubernetes-group-version-kind"][0]["kind"], "Node");
}

#[test]
fn int_or_string_and_quantity_read_as_upstream_publishes_them() {
    let defs = definitions();
    let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["format"], "int-or-string");
    assert_eq!(ios["oneOf"], json!([{ "type": "integer" }, { "type": "string" }]));
    let quantity = &defs["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(quantity["oneOf"], json!([{ "type": "string" }, { "type": "number" }]));
    assert!(quantity.get("type").is_none(), "explain would print the primitive instead of Quantity");
}

#[test]
fn metadata_is_required_only_where_upstream_requires_it() {
    let defs = definitions();
    assert!(defs["io.k8s.api.apps.v1.Deployment"].get("required").is_none());
    assert_eq!(defs["io.k8s.api.node.v1.RuntimeClass"]["required"], json!(["handler"]));
    let event = defs["io.k8s.api.core.v1.Event"]["required"].as_array().unwrap();
    assert!(event.contains(&json!("metadata")) && event.contains(&json!("involvedObject")));
}

#[test]
fn patch_metadata_lands_on_the_list_properties() {
    let core = doc("", "v1");
    let containers = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let finalizers = &core["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
    assert_eq!(finalizers["x-kubernetes-list-type"], "set");
    assert!(finalizers.get("x-kubernetes-patch-merge-key").is_none());
    assert!(finalizers.get("x-kubernetes-list-map-keys").is_none());
    let volumes = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert!(volumes.get("x-kubernetes-patch-strategy").is_none());
}

#[test]
fn documents_of_unknown_group_versions_are_absent() {
    assert!(v3_document("apps", "v2").is_none());
    assert!(v3_document("", "v2").is_none());
    assert!(v3_document("example.com", "v1").is_none());
    assert!(build_document("apps", "v1beta1", &fake_meta).is_none());
}

#[test]
fn operation_group_versions_are_spelled_like_upstream() {
    assert_eq!(paths::operation_group_version("", "v1"), "CoreV1");
    assert_eq!(paths::operation_group_version("rbac.authorization.k8s.io", "v1"), "RbacAuthorizationV1");
    assert_eq!(paths::operation_group_version("events.k8s.io", "v1beta1"), "EventsV1beta1");
}

#[test]
fn content_hash_is_stable_and_sensitive() {
    assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
    assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
    assert_eq!(content_hash(b"").len(), 32);
}

// === served documents (these use the real patch metadata table) ===

#[test]
fn index_lists_every_group_version_with_a_hashed_url() {
    let index = v3_index();
    let paths = index["paths"].as_object().unwrap();
    let mut want: Vec<String> = vec!["api/v1".into()];
    for (group, versions) in resources::groups() {
        want.extend(versions.iter().map(|v| format!("apis/{group}/{v}")));
    }
    let got: Vec<&String> = paths.keys().collect();
    assert_eq!(got, want.iter().collect::<Vec<_>>());
    let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let hash = url.strip_prefix("/openapi/v3/apis/apps/v1?hash=").unwrap();
    assert_eq!(hash, content_hash(v3_document("apps", "v1").unwrap()));
}

#[test]
fn served_documents_are_built_once_and_parse() {
    let first = v3_document("", "v1").unwrap();
    let again = v3_document("", "v1").unwrap();
    assert!(std::ptr::eq(first, again));
    let doc: Value = serde_json::from_slice(first).unwrap();
    assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"].is_object());
}

#[test]
fn served_documents_publish_the_container_merge_key() {
    let core: Value = serde_json::from_slice(v3_document("", "v1").unwrap()).unwrap();
    let containers = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    let apps: Value = serde_json::from_slice(v3_document("apps", "v1").unwrap()).unwrap();
    let conditions = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-patch-merge-key"], "type");
}

// === unknown fields ===

#[test]
fn a_misspelled_container_field_is_reported_with_its_index() {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "p", "labelz": { "a": "b" } },
        "spec": {
            "containers": [
                { "name": "a", "image": "nginx" },
                { "name": "b", "image": "nginx", "imagePullPolicyy": "Always" },
            ],
        },
    });
    assert_eq!(
        unknown_fields("io.k8s.api.core.v1.Pod", &pod),
        ["metadata.labelz", "spec.containers[1].imagePullPolicyy"]
    );
}

#[test]
fn unknown_fields_are_reported_in_document_order_at_every_depth() {
    let deployment = json!({
        "foo": 1,
        "spec": {
            "bar": true,
            "template": { "spec": { "containers": [{ "name": "c", "ports": [{ "containerPort": 80, "hostnames": [] }] }] } },
            "strategy": { "rollingUpdate": { "maxSurge": "25%", "maxSurgee": 1 } },
        },
    });
    assert_eq!(
        unknown_fields("io.k8s.api.apps.v1.Deployment", &deployment),
        [
            "foo",
            "spec.bar",
            "spec.template.spec.containers[0].ports[0].hostnames",
            "spec.strategy.rollingUpdate.maxSurgee",
        ]
    );
}

#[test]
fn maps_accept_any_key_and_check_their_values() {
    let pod = json!({
        "metadata": { "labels": { "anything.example.com/goes": "x" }, "annotations": { "a": "b" } },
        "spec": {
            "nodeSelector": { "disk": "ssd" },
            "containers": [{ "name": "c", "resources": { "limits": { "cpu": "1", "example.com/gpu": 2 } } }],
            "overhead": { "cpu": "100m" },
        },
    });
    assert!(unknown_fields("io.k8s.api.core.v1.Pod", &pod).is_empty());
    let cm = json!({ "data": { "k": "v" }, "binaryData": { "b": "AA==" }, "dataa": {} });
    assert_eq!(unknown_fields("io.k8s.api.core.v1.ConfigMap", &cm), ["dataa"]);
}

#[test]
fn free_form_objects_accept_anything() {
    let revision = json!({
        "revision": 1,
        "data": { "spec": { "template": { "whatever": [1, { "deep": true }] } } },
        "metadata": {
            "managedFields": [{ "manager": "m", "fieldsV1": { "f:spec": { "f:replicas": {} } }, "fieldsTypo": 1 }],
        },
    });
    assert_eq!(
        unknown_fields("io.k8s.api.apps.v1.ControllerRevision", &revision),
        ["metadata.managedFields[0].fieldsTypo"]
    );
}

#[test]
fn type_meta_is_known_at_the_top_and_nulls_and_wrong_types_are_left_to_decoding() {
    let node = json!({ "apiVersion": "v1", "kind": "Node", "spec": null, "status": "not an object" });
    assert!(unknown_fields("io.k8s.api.core.v1.Node", &node).is_empty());
    let scale = json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "spec": { "replicas": 3, "replica": 1 } });
    assert_eq!(unknown_fields("io.k8s.api.autoscaling.v1.Scale", &scale), ["spec.replica"]);
}

#[test]
fn list_kinds_are_checked_through_their_items() {
    let list = json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": { "resourceVersion": "1", "remainingItemCount": 0 },
        "items": [{ "metadata": { "name": "a" } }, { "spec": { "foo": 1 } }],
    });
    assert_eq!(unknown_fields("io.k8s.api.core.v1.PodList", &list), ["items[1].spec.foo"]);
}

#[test]
fn unknown_definitions_and_non_objects_yield_nothing() {
    assert!(unknown_fields("io.example.v1.Widget", &json!({ "a": 1 })).is_empty());
    assert!(unknown_fields("io.k8s.api.core.v1.Pod", &json!([1, 2])).is_empty());
    assert!(unknown_fields("io.k8s.api.core.v1.Pod", &json!("pod")).is_empty());
}

#[test]
fn preserve_unknown_fields_and_maps_of_objects_are_honoured() {
    let defs: std::collections::BTreeMap<String, Value> = [
        (
            "T".to_string(),
            json!({
                "type": "object",
                "properties": {
                    "open": { "type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": { "a": {} } },
                    "byName": { "type": "object", "additionalProperties": { "allOf": [{ "$ref": "#/components/schemas/U" }] } },
                },
            }),
        ),
        ("U".to_string(), json!({ "type": "object", "properties": { "x": { "type": "string" } } })),
    ]
    .into_iter()
    .collect();
    let obj = json!({ "open": { "b": 1 }, "byName": { "one": { "x": "1" }, "two": { "y": "2" } } });
    assert_eq!(strict::unknown_fields_in(&defs, "T", &obj), ["byName.two.y"]);
}

// === duplicate fields ===

#[test]
fn a_repeated_key_is_reported_with_its_path() {
    let raw = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b"},"kind":"Pod"}"#;
    assert_eq!(duplicate_fields(raw), ["metadata.name", "kind"]);
}

#[test]
fn repeated_keys_are_found_in_arrays_of_objects_and_nested_maps() {
    let raw = br#"{
        "metadata": {"labels": {"app": "a", "tier": "b", "app": "c"}},
        "spec": {"containers": [
            {"name": "a", "image": "x"},
            {"name": "b", "image": "x", "image": "y", "env": [{"name": "A"}, {"name": "B", "value": "1", "value": "2"}]}
        ]}
    }"#;
    assert_eq!(
        duplicate_fields(raw),
        ["metadata.labels.app", "spec.containers[1].image", "spec.containers[1].env[1].value"]
    );
}

#[test]
fn the_same_key_in_different_objects_is_not_a_duplicate() {
    let raw = br#"{"a":{"name":1},"b":{"name":2},"c":[{"name":1},{"name":2}],"name":"x","s":"{\"name\":1,\"name\":2}"}"#;
    assert!(duplicate_fields(raw).is_empty());
}

#[test]
fn a_key_repeated_many_times_is_reported_once() {
    assert_eq!(duplicate_fields(br#"{"a":1,"a":2,"a":3}"#), ["a"]);
    assert_eq!(duplicate_fields(br#"[{"a":1,"a":2}]"#), ["[0].a"]);
    assert_eq!(duplicate_fields(br#"[{"a":1,"a":2},{"a":1,"a":2}]"#), ["[0].a", "[1].a"]);
}

#[test]
fn many_repetitions_under_a_long_path_are_reported_once() {
    // A 700 kB body once became one 100 kB path per repetition (10 GB); this one
    // would take 300 MB.
    let key = "x".repeat(10_000);
    let raw = format!("{{\"{key}\":{{{}\"a\":1}}}}", "\"a\":1,".repeat(30_000));
    assert_eq!(duplicate_fields(raw.as_bytes()), [format!("{key}.a")]);
    // YAML keeps implicit keys under 1024 characters.
    let key = "y".repeat(1000);
    let yaml = format!("{key}:\n{}", "  a: 1\n".repeat(30_000));
    assert_eq!(duplicate_fields_yaml(yaml.as_bytes()), [format!("{key}.a")]);
}

#[test]
fn at_most_one_hundred_fields_are_reported() {
    let dups: String = (0..300).map(|i| format!("\"k{i}\":1,\"k{i}\":2,")).collect();
    let found = duplicate_fields(format!("{{{dups}\"end\":0}}").as_bytes());
    assert_eq!(found.len(), 100);
    assert_eq!((found[0].as_str(), found[99].as_str()), ("k0", "k99"));
    let unknown: serde_json::Map<String, Value> = (0..300).map(|i| (format!("u{i}"), json!(1))).collect();
    let found = unknown_fields("io.k8s.api.core.v1.ConfigMap", &json!({ "metadata": unknown }));
    assert_eq!(found.len(), 100);
    assert_eq!(found[0], "metadata.u0");
}

#[test]
fn malformed_input_yields_nothing_and_never_panics() {
    for raw in [
        &b""[..],
        b"{",
        b"{\"a\":1,\"a\":2",
        b"{\"a\":1,\"a\":2} trailing",
        b"{\"a\":1,\"a\":2}{}",
        b"not json",
        b"{\"a\":\"\\ud800\",\"a\":1",
        b"\xff\xfe",
        b"{\"a\":1,,\"a\":2}",
    ] {
        assert!(duplicate_fields(raw).is_empty(), "{:?}", String::from_utf8_lossy(raw));
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(duplicate_fields(deep.as_bytes()).is_empty());
    let deep = "{\"a\":".repeat(50_000);
    assert!(duplicate_fields(deep.as_bytes()).is_empty());
}

#[test]
fn yaml_duplicates_are_found_although_decoding_keeps_the_last() {
    let raw = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\ndata:\n  k: v\n  1: x\n  '1': y\nitems:\n- {a: 1, a: 2}\n";
    // Decoding into a Value silently keeps the last one: the scan is what reports it.
    let decoded: Value = serde_yaml::from_slice(raw).unwrap();
    assert_eq!(decoded["metadata"]["name"], "b");
    assert_eq!(duplicate_fields_yaml(raw), ["metadata.name", "data.1", "items[0].a"]);
    assert!(duplicate_fields_yaml(b"a: [1, 2\n").is_empty());
    assert!(duplicate_fields_yaml(b"").is_empty());
    assert_eq!(duplicate_fields_yaml(b"a: !custom {b: 1, b: 2}\n"), ["a.b"]);
}

#[test]
fn problems_are_worded_like_upstream() {
    let unknown = vec!["spec.foo".to_string(), "spec.bar".to_string()];
    assert_eq!(
        strict_decoding_error(&[], &unknown).unwrap(),
        r#"strict decoding error: unknown field "spec.foo", unknown field "spec.bar""#
    );
    assert_eq!(
        strict_decoding_error(&["metadata.name".to_string()], &unknown[..1]).unwrap(),
        r#"strict decoding error: duplicate field "metadata.name", unknown field "spec.foo""#
    );
    assert_eq!(strict_decoding_error(&[], &[]), None);
    assert_eq!(field_warnings(&[], &unknown), [r#"unknown field "spec.foo""#, r#"unknown field "spec.bar""#]);
}
