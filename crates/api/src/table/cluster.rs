//! Printers of `discovery.k8s.io`, `coordination.k8s.io` and `node.k8s.io`.

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
