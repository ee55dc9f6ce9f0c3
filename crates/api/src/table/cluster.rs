//! Printers of `discovery.k8s.io`, `coordination.k8s.io`, `node.k8s.io`, `policy`,
//! `scheduling.k8s.io` and `storage.k8s.io`.

use serde_json::Value;

use super::*;

// === EndpointSlice ===

pub(super) fn endpoint_slice_columns() -> Vec<Column> {
    vec![
        NAME,
        col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
        col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
        col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
        AGE,
    ]
}

/// `formatDiscoveryPorts`: port numbers, or names, or `*` for all ports.
fn format_ports(slice: &Value) -> String {
    const MAX: usize = 3;
    let ports = arr_at(slice, "/ports");
    let list: Vec<String> = ports
        .iter()
        .take(MAX)
        .map(|p| match (p.pointer("/port").and_then(Value::as_i64), opt_str_at(p, "/name")) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    list_with_more(&list, ports.len(), MAX)
}

/// `formatDiscoveryEndpoints`: the addresses of all endpoints.
fn format_endpoints(slice: &Value) -> String {
    const MAX: usize = 3;
    let addresses: Vec<String> = arr_at(slice, "/endpoints")
        .iter()
        .flat_map(|e| arr_at(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    list_with_more(&addresses[..addresses.len().min(MAX)], addresses.len(), MAX)
}

pub(super) fn endpoint_slice_cells(slice: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(slice).into(),
        str_at(slice, "/addressType").into(),
        format_ports(slice).into(),
        format_endpoints(slice).into(),
        age(slice, now).into(),
    ]
}

// === Lease ===

pub(super) fn lease_columns() -> Vec<Column> {
    vec![NAME, col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."), AGE]
}

pub(super) fn lease_cells(lease: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name(lease).into(), str_at(lease, "/spec/holderIdentity").into(), age(lease, now).into()]
}

// === RuntimeClass ===

pub(super) fn runtime_class_columns() -> Vec<Column> {
    vec![NAME, col("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."), AGE]
}

pub(super) fn runtime_class_cells(rc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name(rc).into(), str_at(rc, "/handler").into(), age(rc, now).into()]
}

// === PodDisruptionBudget ===

pub(super) fn pod_disruption_budget_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Min Available", "string", "The minimum number of pods that must be available."),
        col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
        col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
        AGE,
    ]
}

/// An `IntOrString` as `String()` prints it, or `N/A` when unset.
fn int_or_string_or_na(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

pub(super) fn pod_disruption_budget_cells(pdb: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(pdb).into(),
        int_or_string_or_na(pdb, "/spec/minAvailable").into(),
        int_or_string_or_na(pdb, "/spec/maxUnavailable").into(),
        int_at(pdb, "/status/disruptionsAllowed").into(),
        age(pdb, now).into(),
    ]
}

// === PriorityClass ===

pub(super) fn priority_class_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Value", "integer", "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
        col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
        AGE,
        col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
    ]
}

pub(super) fn priority_class_cells(pc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let policy = opt_str_at(pc, "/preemptionPolicy").unwrap_or("Unknown");
    vec![name(pc).into(), int_at(pc, "/value").into(), bool_at(pc, "/globalDefault").into(), age(pc, now).into(), policy.into()]
}

// === StorageClass ===

pub(super) fn storage_class_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
        col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
        col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
        col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
        AGE,
    ]
}

/// `printStorageClass`: the default class is marked after its name; unset policies
/// print as their defaults.
pub(super) fn storage_class_cells(sc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut shown = name(sc).to_string();
    if crate::storage::is_default_class(sc) {
        shown.push_str(" (default)");
    }
    vec![
        shown.into(),
        str_at(sc, "/provisioner").into(),
        opt_str_at(sc, "/reclaimPolicy").unwrap_or("Delete").into(),
        opt_str_at(sc, "/volumeBindingMode").unwrap_or("Immediate").into(),
        bool_at(sc, "/allowVolumeExpansion").into(),
        age(sc, now).into(),
    ]
}
