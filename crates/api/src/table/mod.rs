//! Server-side `Table` columns, as `kubectl get` prints them.
//!
//! kubectl asks for `application/json;as=Table;g=meta.k8s.io;v=v1` and prints the
//! columns and cells the server sends, so the server decides what `kubectl get`
//! shows. The columns, their order, the `-o wide` ones (priority 1) and the way each
//! cell is computed follow kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`). Like the apiserver, rows always
//! carry the wide cells; kubectl hides priority-1 columns unless asked for them.
//!
//! One module per API area:
//! - [`core`]: the core/v1 kinds, plus `events.k8s.io` Events (upstream prints
//!   them with the core Event printer, as they share storage).
//! - [`workloads`]: `apps/v1` and `batch/v1`.
//! - [`cluster`]: EndpointSlices, Leases, RuntimeClasses, PodDisruptionBudgets,
//!   PriorityClasses and StorageClasses.
//! - [`networking`]: Ingresses, IngressClasses and NetworkPolicies.
//!
//! Cells are computed from the JSON as stored and never panic: a missing field
//! prints as upstream prints the zero value of the Go type.

mod cluster;
mod core;
mod networking;
mod workloads;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::selector::LabelSelector;
use crate::ResourceInfo;

/// One column definition (`meta.k8s.io/v1` `TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for `-o wide` only.
    pub priority: u8,
}

/// The columns of a resource. Every kind has a `Name` column (format `name`, which
/// kubectl uses for `--show-kind`); it comes first except for core Events, whose
/// upstream order starts with `Last Seen`.
pub fn columns(res: &ResourceInfo) -> Vec<Column> {
    (printer(res).columns)()
}

/// The cells of one object's row, one per column; `now` is used for ages.
pub fn cells(res: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    (printer(res).cells)(obj, now)
}

/// Upstream's `duration.HumanDuration`: about two significant figures, so that ages
/// stay short (`45s`, `3m20s`, `2d3h`, `45d`, `3y`).
pub fn human_duration(d: Duration) -> String {
    human_nanos(d.as_nanos().min(i128::MAX as u128) as i128)
}

// === dispatch ===

/// The column set and cell function of one kind.
struct Printer {
    columns: fn() -> Vec<Column>,
    cells: fn(&Value, jiff::Timestamp) -> Vec<Value>,
}

fn printer(res: &ResourceInfo) -> Printer {
    let p = |columns, cells| Printer { columns, cells };
    match (res.group, res.kind) {
        ("", "Pod") => p(core::pod_columns, core::pod_cells),
        ("", "Node") => p(core::node_columns, core::node_cells),
        ("", "Service") => p(core::service_columns, core::service_cells),
        ("", "Endpoints") => p(core::endpoints_columns, core::endpoints_cells),
        ("", "Namespace") => p(core::namespace_columns, core::namespace_cells),
        ("", "ConfigMap") => p(core::config_map_columns, core::config_map_cells),
        ("", "Secret") => p(core::secret_columns, core::secret_cells),
        ("", "ServiceAccount") => p(core::service_account_columns, core::service_account_cells),
        ("", "Event") => p(core::event_columns, core::event_cells),
        ("events.k8s.io", "Event") => p(core::event_columns, core::events_event_cells),
        ("", "PersistentVolume") => p(core::persistent_volume_columns, core::persistent_volume_cells),
        ("", "PersistentVolumeClaim") => p(core::persistent_volume_claim_columns, core::persistent_volume_claim_cells),
        ("", "ResourceQuota") => p(core::resource_quota_columns, core::resource_quota_cells),
        ("apps", "Deployment") => p(workloads::deployment_columns, workloads::deployment_cells),
        ("apps", "ReplicaSet") => p(workloads::replica_set_columns, workloads::replica_set_cells),
        ("apps", "StatefulSet") => p(workloads::stateful_set_columns, workloads::stateful_set_cells),
        ("apps", "DaemonSet") => p(workloads::daemon_set_columns, workloads::daemon_set_cells),
        ("apps", "ControllerRevision") => p(workloads::controller_revision_columns, workloads::controller_revision_cells),
        ("batch", "Job") => p(workloads::job_columns, workloads::job_cells),
        ("batch", "CronJob") => p(workloads::cron_job_columns, workloads::cron_job_cells),
        ("discovery.k8s.io", "EndpointSlice") => p(cluster::endpoint_slice_columns, cluster::endpoint_slice_cells),
        ("coordination.k8s.io", "Lease") => p(cluster::lease_columns, cluster::lease_cells),
        ("networking.k8s.io", "Ingress") => p(networking::ingress_columns, networking::ingress_cells),
        ("networking.k8s.io", "IngressClass") => p(networking::ingress_class_columns, networking::ingress_class_cells),
        ("networking.k8s.io", "NetworkPolicy") => p(networking::network_policy_columns, networking::network_policy_cells),
        ("node.k8s.io", "RuntimeClass") => p(cluster::runtime_class_columns, cluster::runtime_class_cells),
        ("policy", "PodDisruptionBudget") => p(cluster::pod_disruption_budget_columns, cluster::pod_disruption_budget_cells),
        ("scheduling.k8s.io", "PriorityClass") => p(cluster::priority_class_columns, cluster::priority_class_cells),
        ("storage.k8s.io", "StorageClass") => p(cluster::storage_class_columns, cluster::storage_class_cells),
        // Kinds without a printer upstream (LimitRange among the served ones) get
        // the apiserver's default table.
        _ => p(default_columns, default_cells),
    }
}

/// `rest.NewDefaultTableConvertor`: the name and the creation time as a date.
fn default_columns() -> Vec<Column> {
    vec![NAME, Column { name: "Created At", type_: "date", format: "", description: CREATION_TIMESTAMP_DOC, priority: 0 }]
}

fn default_cells(obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    // Upstream formats the zero time when the timestamp is missing.
    let created = time_at(obj, "/metadata/creationTimestamp")
        .map(crate::meta::format_time)
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![name(obj).into(), created.into()]
}

// === column helpers ===

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_TIMESTAMP_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The `Name` column every printer starts with.
const NAME: Column = Column { name: "Name", type_: "string", format: "name", description: NAME_DOC, priority: 0 };

/// The `Age` column.
const AGE: Column = col("Age", "string", CREATION_TIMESTAMP_DOC);

/// A default (priority 0) column.
const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

/// An `-o wide` (priority 1) column.
const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 1 }
}

const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.");

// === cell helpers ===

/// A string at a JSON pointer, or `""`.
fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// An optional string at a JSON pointer (a `*string` upstream).
fn opt_str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// An integer at a JSON pointer, or 0.
fn int_at(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// A boolean at a JSON pointer, or false.
fn bool_at(v: &Value, ptr: &str) -> bool {
    v.pointer(ptr).and_then(Value::as_bool).unwrap_or(false)
}

/// An array at a JSON pointer, or an empty slice.
fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// An object at a JSON pointer.
fn map_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a Map<String, Value>> {
    v.pointer(ptr).and_then(Value::as_object)
}

/// The number of entries of a map (or items of a list) at a JSON pointer.
fn len_at(v: &Value, ptr: &str) -> i64 {
    match v.pointer(ptr) {
        Some(Value::Object(m)) => m.len() as i64,
        Some(Value::Array(a)) => a.len() as i64,
        _ => 0,
    }
}

/// A quantity as stored (`10Gi`); upstream prints the zero quantity as `0`.
fn quantity_at(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// `metadata.name`.
fn name(obj: &Value) -> &str {
    crate::meta::name(obj)
}

/// A timestamp at a JSON pointer; `None` for missing, unparsable and Go's zero time,
/// which upstream all treats as unset.
fn time_at(v: &Value, ptr: &str) -> Option<jiff::Timestamp> {
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    opt_str_at(v, ptr).and_then(crate::meta::parse_time).filter(|t| t.as_second() != GO_ZERO_TIME)
}

/// `translateTimestampSince`: the time since `t`, or `<unknown>` when unset.
fn since(t: Option<jiff::Timestamp>, now: jiff::Timestamp) -> String {
    match t {
        Some(t) => human_nanos(now.as_nanosecond() - t.as_nanosecond()),
        None => "<unknown>".to_string(),
    }
}

/// The age of an object from `metadata.creationTimestamp`.
fn age(obj: &Value, now: jiff::Timestamp) -> String {
    since(time_at(obj, "/metadata/creationTimestamp"), now)
}

/// `HumanDuration` of a signed duration: a little clock skew (under two seconds
/// into the future) reads as `0s`, more as `<invalid>`.
fn human_nanos(nanos: i128) -> String {
    const SECOND: i128 = 1_000_000_000;
    const MINUTE: i128 = 60 * SECOND;
    const HOUR: i128 = 60 * MINUTE;
    let seconds = nanos / SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, or `<none>`.
fn format_labels(map: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<(&str, &str)> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    let s = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// `metav1.FormatLabelSelector`: the selector as a string, `<none>` when it selects
/// everything or nothing, `<error>` when it does not convert.
fn format_label_selector(sel: Option<&Value>) -> String {
    match LabelSelector::from_json(sel.unwrap_or(&Value::Null)) {
        Ok(s) => {
            let s = s.to_string();
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s
            }
        }
        Err(_) => "<error>".to_string(),
    }
}

/// `layoutContainerCells`: container names and images, comma-separated.
fn container_cells(spec: &Value, ptr: &str) -> (String, String) {
    let containers = arr_at(spec, ptr);
    let names = containers.iter().map(|c| str_at(c, "/name")).collect::<Vec<_>>().join(",");
    let images = containers.iter().map(|c| str_at(c, "/image")).collect::<Vec<_>>().join(",");
    (names, images)
}

/// Upstream's `a + N more...` abbreviation of lists longer than `max`.
fn list_with_more(list: &[String], count: usize, max: usize) -> String {
    let joined = list.join(",");
    if count > max {
        return format!("{joined} + {} more...", count - max);
    }
    if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests;
