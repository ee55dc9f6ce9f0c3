//! `paths`: one path item per URL the API server serves for a group version, with
//! operations named and tagged the way kube-apiserver names them.
//!
//! Clients read more from these than one might expect: `kubectl` decides whether it
//! may send `fieldValidation` by finding a PATCH operation tagged with the kind's
//! `x-kubernetes-group-version-kind` and looking for the parameter among that
//! operation's own `parameters` (not the path item's), and client-side apply decides
//! whether to compute a strategic merge patch from the same operation's request
//! content types. `kubectl explain` finds the kind from the GVK of the collection's
//! operations. So every mutating operation carries its query parameters inline.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::components::{gvk, list_definition, reference, BINDING, DELETE_OPTIONS, EVICTION, PATCH, SCALE, STATUS, TOKEN_REQUEST, WATCH_EVENT};
use crate::resources::{self, ResourceInfo, Subresource};

/// The media types a response is offered in.
const RESPONSE_TYPES: &[&str] = &["application/json", "application/yaml"];
/// Extra media types of list and watch responses.
const WATCH_TYPES: &[&str] = &["application/json;stream=watch"];
/// The patch types the server accepts, in upstream's order.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// The `paths` of one group version's document, sorted by path.
pub(crate) fn document_paths(group: &str, version: &str) -> Map<String, Value> {
    let mut paths: BTreeMap<String, Value> = BTreeMap::new();
    for res in resources::in_group_version(group, version) {
        Resource::new(res).add_paths(&mut paths);
    }
    paths.into_iter().collect()
}

/// `CoreV1`, `AppsV1`, `DiscoveryV1`: the group version as operation ids spell it.
pub(crate) fn operation_group_version(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group.trim_end_matches(".k8s.io") };
    let mut out: String = group.split('.').map(capitalize).collect();
    out.push_str(&capitalize(version));
    out
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1`: the tag of a group version's operations.
fn operation_tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group.trim_end_matches(".k8s.io") };
    let mut parts = group.split('.');
    let mut out = parts.next().unwrap_or_default().to_string();
    out.extend(parts.map(capitalize));
    format!("{out}_{version}")
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

// === impl Resource ===

/// Everything needed to write the operations of one resource.
struct Resource {
    res: &'static ResourceInfo,
    /// `/api/v1` or `/apis/apps/v1`.
    prefix: String,
    /// `AppsV1`.
    gv: String,
    tag: String,
    gvk: Value,
}

impl Resource {
    fn new(res: &'static ResourceInfo) -> Self {
        let prefix = if res.group.is_empty() {
            format!("/api/{}", res.version)
        } else {
            format!("/apis/{}/{}", res.group, res.version)
        };
        Resource {
            res,
            prefix,
            gv: operation_group_version(res.group, res.version),
            tag: operation_tag(res.group, res.version),
            gvk: gvk(res.group, res.version, res.kind),
        }
    }

    /// `NamespacedDeployment` or `Node`.
    fn scoped_kind(&self) -> String {
        if self.res.namespaced {
            format!("Namespaced{}", self.res.kind)
        } else {
            self.res.kind.to_string()
        }
    }

    /// The collection path relative to the group version, with its path parameters.
    fn collection(&self) -> (String, Vec<Value>) {
        if self.res.namespaced {
            (format!("namespaces/{{namespace}}/{}", self.res.plural), vec![namespace_param()])
        } else {
            (self.res.plural.to_string(), vec![])
        }
    }

    fn operation(&self, action: &str, id: String, description: String, gvk: &Value) -> Map<String, Value> {
        let mut op = Map::new();
        op.insert("description".into(), json!(description));
        op.insert("operationId".into(), json!(id));
        op.insert("tags".into(), json!([self.tag]));
        op.insert("x-kubernetes-action".into(), json!(action));
        op.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
        op
    }

    fn add_paths(&self, paths: &mut BTreeMap<String, Value>) {
        let res = self.res;
        let kind = res.kind;
        let gv = &self.gv;
        let sk = self.scoped_kind();
        let (collection, collection_params) = self.collection();
        let item = format!("{collection}/{{name}}");
        let mut item_params = vec![name_param(kind)];
        item_params.extend(collection_params.iter().cloned());

        // The collection: list, create, deletecollection.
        let mut ops = Map::new();
        let mut list = self.operation("list", format!("list{gv}{sk}"), format!("list or watch objects of kind {kind}"), &self.gvk);
        list.insert("parameters".into(), Value::Array(list_params()));
        list.insert("responses".into(), responses(&[("200", "OK")], &list_definition(res), true));
        ops.insert("get".into(), Value::Object(list));
        let mut create = self.operation("post", format!("create{gv}{sk}"), format!("create a {kind}"), &self.gvk);
        create.insert("parameters".into(), Value::Array(write_params(false)));
        create.insert("requestBody".into(), body(res.definition));
        create.insert(
            "responses".into(),
            responses(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")], res.definition, false),
        );
        ops.insert("post".into(), Value::Object(create));
        if res.deletecollection {
            let mut dc = self.operation(
                "deletecollection",
                format!("delete{gv}Collection{sk}"),
                format!("delete collection of {kind}"),
                &self.gvk,
            );
            dc.insert("parameters".into(), Value::Array(delete_collection_params()));
            dc.insert("requestBody".into(), delete_body());
            dc.insert("responses".into(), responses(&[("200", "OK")], STATUS, false));
            ops.insert("delete".into(), Value::Object(dc));
        }
        self.insert(paths, &collection, ops, &collection_params);

        // One object: read, replace, patch, delete.
        let mut ops = Map::new();
        let mut read = self.operation("get", format!("read{gv}{sk}"), format!("read the specified {kind}"), &self.gvk);
        read.insert("responses".into(), responses(&[("200", "OK")], res.definition, false));
        ops.insert("get".into(), Value::Object(read));
        ops.insert("put".into(), self.replace(format!("replace{gv}{sk}"), format!("replace the specified {kind}"), res.definition, &self.gvk));
        ops.insert(
            "patch".into(),
            self.patch(format!("patch{gv}{sk}"), format!("partially update the specified {kind}"), res.definition, &self.gvk),
        );
        let mut delete = self.operation("delete", format!("delete{gv}{sk}"), format!("delete a {kind}"), &self.gvk);
        delete.insert("parameters".into(), Value::Array(delete_params()));
        delete.insert("requestBody".into(), delete_body());
        delete.insert("responses".into(), responses(&[("200", "OK"), ("202", "Accepted")], STATUS, false));
        ops.insert("delete".into(), Value::Object(delete));
        self.insert(paths, &item, ops, &item_params);

        // Namespaced kinds are also listed across all namespaces.
        if res.namespaced {
            let mut ops = Map::new();
            let mut list = self.operation(
                "list",
                format!("list{gv}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                &self.gvk,
            );
            list.insert("parameters".into(), Value::Array(list_params()));
            list.insert("responses".into(), responses(&[("200", "OK")], &list_definition(res), true));
            ops.insert("get".into(), Value::Object(list));
            self.insert(paths, res.plural, ops, &[]);
        }

        // The legacy `/watch/` paths, which the server still serves.
        let watch_list = |id: String| {
            let mut op = self.operation(
                "watchlist",
                id,
                format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                &self.gvk,
            );
            op.insert("parameters".into(), Value::Array(list_params()));
            op.insert("responses".into(), responses(&[("200", "OK")], WATCH_EVENT, true));
            Value::Object(op)
        };
        self.insert(paths, &format!("watch/{collection}"), single("get", watch_list(format!("watch{gv}{sk}List"))), &collection_params);
        if res.namespaced {
            self.insert(
                paths,
                &format!("watch/{}", res.plural),
                single("get", watch_list(format!("watch{gv}{kind}ListForAllNamespaces"))),
                &[],
            );
        }
        let mut watch = self.operation(
            "watch",
            format!("watch{gv}{sk}"),
            format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
            &self.gvk,
        );
        watch.insert("parameters".into(), Value::Array(list_params()));
        watch.insert("responses".into(), responses(&[("200", "OK")], WATCH_EVENT, true));
        self.insert(paths, &format!("watch/{item}"), single("get", Value::Object(watch)), &item_params);

        for sub in res.subresources {
            let path = format!("{item}/{}", sub.name());
            let ops = match sub {
                Subresource::Status => self.get_put_patch("Status", "status", res.definition, &self.gvk.clone()),
                Subresource::Scale => self.get_put_patch("Scale", "scale", SCALE, &gvk("autoscaling", "v1", "Scale")),
                Subresource::Binding => {
                    single("post", self.create_sub(format!("create{gv}{sk}Binding"), format!("create binding of a {kind}"), BINDING, &gvk("", "v1", "Binding")))
                }
                Subresource::Eviction => single(
                    "post",
                    self.create_sub(format!("create{gv}{sk}Eviction"), format!("create eviction of a {kind}"), EVICTION, &gvk("policy", "v1", "Eviction")),
                ),
                Subresource::Finalize => single(
                    "put",
                    self.replace(format!("replace{gv}{sk}Finalize"), format!("replace finalize of the specified {kind}"), res.definition, &self.gvk),
                ),
                Subresource::Token => single(
                    "post",
                    self.create_sub(
                        format!("create{gv}{sk}Token"),
                        format!("create token of a {kind}"),
                        TOKEN_REQUEST,
                        &gvk("authentication.k8s.io", "v1", "TokenRequest"),
                    ),
                ),
                Subresource::Log => single("get", self.connect("get", format!("read{gv}{sk}Log"), format!("read log of the specified {kind}"), "Pod")),
                Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                    let (suffix, options) = match sub {
                        Subresource::Exec => ("Exec", "PodExecOptions"),
                        Subresource::Attach => ("Attach", "PodAttachOptions"),
                        _ => ("Portforward", "PodPortForwardOptions"),
                    };
                    let mut ops = Map::new();
                    for (method, verb) in [("get", "Get"), ("post", "Post")] {
                        let id = format!("connect{verb}{gv}{sk}{suffix}");
                        ops.insert(method.into(), self.connect("connect", id, format!("connect {method} requests to {} of {kind}", sub.name()), options));
                    }
                    ops
                }
            };
            self.insert(paths, &path, ops, &item_params);
        }
    }

    /// Adds a path item, with its path parameters and `pretty` shared by its operations.
    fn insert(&self, paths: &mut BTreeMap<String, Value>, relative: &str, mut ops: Map<String, Value>, params: &[Value]) {
        let mut shared = params.to_vec();
        shared.push(query("pretty", "string", PRETTY));
        ops.insert("parameters".into(), Value::Array(shared));
        paths.insert(format!("{}/{relative}", self.prefix), Value::Object(ops));
    }

    /// `read`, `replace` and `patch` of the `status` or `scale` subresource.
    fn get_put_patch(&self, suffix: &str, sub: &str, schema: &str, gvk: &Value) -> Map<String, Value> {
        let (gv, sk, kind) = (&self.gv, self.scoped_kind(), self.res.kind);
        let mut ops = Map::new();
        let mut read = self.operation("get", format!("read{gv}{sk}{suffix}"), format!("read {sub} of the specified {kind}"), gvk);
        read.insert("responses".into(), responses(&[("200", "OK")], schema, false));
        ops.insert("get".into(), Value::Object(read));
        ops.insert("put".into(), self.replace(format!("replace{gv}{sk}{suffix}"), format!("replace {sub} of the specified {kind}"), schema, gvk));
        ops.insert(
            "patch".into(),
            self.patch(format!("patch{gv}{sk}{suffix}"), format!("partially update {sub} of the specified {kind}"), schema, gvk),
        );
        ops
    }

    fn replace(&self, id: String, description: String, schema: &str, gvk: &Value) -> Value {
        let mut op = self.operation("put", id, description, gvk);
        op.insert("parameters".into(), Value::Array(write_params(false)));
        op.insert("requestBody".into(), body(schema));
        op.insert("responses".into(), responses(&[("200", "OK"), ("201", "Created")], schema, false));
        Value::Object(op)
    }

    fn patch(&self, id: String, description: String, schema: &str, gvk: &Value) -> Value {
        let mut op = self.operation("patch", id, description, gvk);
        op.insert("parameters".into(), Value::Array(write_params(true)));
        let content: Map<String, Value> = PATCH_TYPES.iter().map(|t| (t.to_string(), json!({ "schema": reference(PATCH) }))).collect();
        op.insert("requestBody".into(), json!({ "content": content, "required": true }));
        op.insert("responses".into(), responses(&[("200", "OK"), ("201", "Created")], schema, false));
        Value::Object(op)
    }

    /// POST of a subresource that takes its own kind (`pods/binding`, `pods/eviction`).
    fn create_sub(&self, id: String, description: String, schema: &str, gvk: &Value) -> Value {
        let mut op = self.operation("post", id, description, gvk);
        op.insert("parameters".into(), Value::Array(write_params(false)));
        op.insert("requestBody".into(), body(schema));
        op.insert(
            "responses".into(),
            responses(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")], schema, false),
        );
        Value::Object(op)
    }
}

impl Resource {
    /// A streaming operation (`pods/log`, `pods/exec`…): the body is text or an
    /// upgraded connection, so the response is a plain string.
    fn connect(&self, action: &str, id: String, description: String, kind: &str) -> Value {
        let mut op = self.operation(action, id, description, &gvk("", "v1", kind));
        op.insert(
            "responses".into(),
            json!({ "200": { "description": "OK", "content": { "*/*": { "schema": { "type": "string" } } } }, "401": { "description": "Unauthorized" } }),
        );
        Value::Object(op)
    }
}

fn single(method: &str, op: Value) -> Map<String, Value> {
    let mut ops = Map::new();
    ops.insert(method.into(), op);
    ops
}

fn responses(codes: &[(&str, &str)], schema: &str, watch: bool) -> Value {
    let types = RESPONSE_TYPES.iter().chain(if watch { WATCH_TYPES } else { &[] });
    let content: Map<String, Value> = types.map(|t| (t.to_string(), json!({ "schema": reference(schema) }))).collect();
    let mut out = Map::new();
    for (code, description) in codes {
        out.insert(code.to_string(), json!({ "description": description, "content": content }));
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

fn body(schema: &str) -> Value {
    json!({ "content": { "*/*": { "schema": reference(schema) } }, "required": true })
}

fn delete_body() -> Value {
    json!({ "content": { "*/*": { "schema": reference(DELETE_OPTIONS) } } })
}

// === parameters ===

const PRETTY: &str = "If 'true', then the output is pretty printed.";

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "query",
        "name": name,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "path",
        "name": name,
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn name_param(kind: &str) -> Value {
    path_param("name", &format!("name of the {kind}"))
}

fn namespace_param() -> Value {
    path_param("namespace", "object name and auth scope, such as for teams and projects")
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes. It is required for apply requests (application/apply-patch) and optional otherwise.",
    )
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: unknown fields are dropped and the last of duplicate fields wins. - Warn: as Ignore, but a warning is sent for each unknown and duplicate field (the default). - Strict: the request fails with a BadRequest error listing every unknown and duplicate field.",
    )
}

/// dryRun, fieldManager, fieldValidation, and force on PATCH.
fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![dry_run(), field_manager(), field_validation()];
    if patch {
        params.push(query(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests: the applier re-acquires fields owned by other managers. It must be unset for non-apply patch requests.",
        ));
    }
    params
}

fn continue_param() -> Value {
    query(
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server. Its value is the continue token of the previous page of the same list; an expired token yields 410 ResourceExpired.",
    )
}

fn field_selector() -> Value {
    query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything.")
}

fn label_selector() -> Value {
    query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything.")
}

fn limit() -> Value {
    query(
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call. If more items exist, the server sets the `continue` field on the list metadata. Not supported if watch is true.",
    )
}

fn resource_version() -> Value {
    query(
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    )
}

fn resource_version_match() -> Value {
    query(
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    )
}

fn send_initial_events() -> Value {
    query(
        "sendInitialEvents",
        "boolean",
        "`sendInitialEvents=true` may be set together with `watch=true`: the watch stream then begins with synthetic ADDED events for the current objects, followed by a BOOKMARK annotated with `\"k8s.io/initial-events-end\": \"true\"`.",
    )
}

fn timeout_seconds() -> Value {
    query(
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
    )
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers send bookmarks at their discretion. If this is not a watch, this field is ignored.",
        ),
        continue_param(),
        field_selector(),
        label_selector(),
        limit(),
        resource_version(),
        resource_version_match(),
        send_initial_events(),
        timeout_seconds(),
        query(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
        ),
    ]
}

fn grace_period_seconds() -> Value {
    query(
        "gracePeriodSeconds",
        "integer",
        "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If unset, the default grace period for the type is used.",
    )
}

fn orphan_dependents() -> Value {
    query(
        "orphanDependents",
        "boolean",
        "Deprecated: please use the PropagationPolicy. Should the dependent objects be orphaned. Either this field or PropagationPolicy may be set, but not both.",
    )
}

fn propagation_policy() -> Value {
    query(
        "propagationPolicy",
        "string",
        "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - the garbage collector deletes the dependents in the background; 'Foreground' - dependents are deleted before the owner.",
    )
}

fn delete_params() -> Vec<Value> {
    vec![dry_run(), grace_period_seconds(), orphan_dependents(), propagation_policy()]
}

fn delete_collection_params() -> Vec<Value> {
    vec![
        continue_param(),
        dry_run(),
        field_selector(),
        grace_period_seconds(),
        label_selector(),
        limit(),
        orphan_dependents(),
        propagation_policy(),
        resource_version(),
        resource_version_match(),
        send_initial_events(),
        timeout_seconds(),
    ]
}
