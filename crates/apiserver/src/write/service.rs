//! The Service update strategy: what an update of a Service keeps from the stored
//! version and what it drops, before the result is defaulted and validated.
//!
//! A Service is a union whose discriminator is `spec.type`, and several fields only
//! make sense for some types; some of them the server filled in itself (node ports,
//! the health check node port, cluster IPs, defaults such as
//! `allocateLoadBalancerNodePorts`). A client that only changes the type, as
//! `kubectl patch -p '{"spec":{"type":"ClusterIP"}}'` does, still sends them back.
//! As upstream's `dropTypeDependentFields`, such a field is cleared when the new type
//! has no use for it *and* the client left it as it was; a value the client changed
//! together with the type is kept, so that validation can say what is wrong with it.
//!
//! The reverse also happens: a client that replaces a Service with a manifest that
//! never had the allocated values (`kubectl replace` of the original file) keeps them
//! (upstream's `patchAllocatedValues`).
//!
//! Addresses this drops are released, and those the new type needs are allocated,
//! when the update is written (see [`crate::alloc`]).

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

/// Applies the strategy to `new`, an update of the stored Service `old`. Runs before
/// defaulting, so `new` holds what the client sent (merged onto `old` for patches).
pub(super) fn prepare_update(old: &Value, new: &mut Value) {
    drop_type_dependent_fields(old, new);
    patch_allocated_values(old, new);
}

fn spec_of(svc: &Value) -> &Value {
    svc.get("spec").unwrap_or(&Value::Null)
}

/// The type, as defaulting will have it (no type is `ClusterIP`).
fn type_of(svc: &Value) -> &str {
    spec_of(svc).get("type").and_then(Value::as_str).filter(|t| !t.is_empty()).unwrap_or("ClusterIP")
}

/// A spec field, where null, `""`, `0` and `[]` count as unset (Go's zero values).
fn field<'a>(svc: &'a Value, name: &str) -> Option<&'a Value> {
    spec_of(svc).get(name).filter(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Number(n) => n.as_i64() != Some(0),
        _ => true,
    })
}

fn same(old: &Value, new: &Value, name: &str) -> bool {
    field(old, name) == field(new, name)
}

fn remove(svc: &mut Value, name: &str) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove(name);
    }
}

fn needs_cluster_ip(svc: &Value) -> bool {
    type_of(svc) != "ExternalName"
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(type_of(svc), "NodePort" | "LoadBalancer")
}

/// Upstream's `NeedsHealthCheck`: only a LoadBalancer that keeps traffic on the node
/// it arrived at has load balancers probe the nodes.
pub(crate) fn needs_health_check(svc: &Value) -> bool {
    type_of(svc) == "LoadBalancer" && field(svc, "externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
}

fn externally_accessible(svc: &Value) -> bool {
    match type_of(svc) {
        "NodePort" | "LoadBalancer" => true,
        "ClusterIP" => field(svc, "externalIPs").is_some(),
        _ => false,
    }
}

fn ports(svc: &Value) -> &[Value] {
    spec_of(svc).get("ports").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn node_port(port: &Value) -> Option<i64> {
    port.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0)
}

/// Upstream's `dropTypeDependentFields`.
fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if same(old, new, "clusterIP") && same(old, new, "clusterIPs") {
            remove(new, "clusterIP");
            remove(new, "clusterIPs");
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if same(old, new, f) {
                remove(new, f);
            }
        }
    }
    // Node ports go only if the client asked for none that the Service did not have.
    let old_node_ports: HashSet<i64> = ports(old).iter().filter_map(node_port).collect();
    if needs_node_ports(old) && !needs_node_ports(new) && ports(new).iter().filter_map(node_port).all(|n| old_node_ports.contains(&n)) {
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
    if needs_health_check(old) && !needs_health_check(new) && same(old, new, "healthCheckNodePort") {
        remove(new, "healthCheckNodePort");
    }
    let was_lb = type_of(old) == "LoadBalancer";
    let is_lb = type_of(new) == "LoadBalancer";
    if was_lb && !is_lb {
        let allocate = |v: &Value| spec_of(v).get("allocateLoadBalancerNodePorts").and_then(Value::as_bool);
        if allocate(new).is_some() && allocate(new) == allocate(old) {
            remove(new, "allocateLoadBalancerNodePorts");
        }
        if same(old, new, "loadBalancerClass") {
            remove(new, "loadBalancerClass");
        }
    }
    if externally_accessible(old) && !externally_accessible(new) && same(old, new, "externalTrafficPolicy") {
        remove(new, "externalTrafficPolicy");
    }
    // Load balancers are torn down asynchronously, but clients need not see that.
    if !is_lb {
        if let Some(status) = new.as_object_mut().map(|o| o.entry("status").or_insert_with(|| json!({}))) {
            if let Some(status) = status.as_object_mut() {
                status.insert("loadBalancer".into(), json!({}));
            }
        }
    }
}

/// Upstream's `patchAllocatedValues`: what the server allocated stays when the client
/// left it out and the type still uses it.
fn patch_allocated_values(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        for f in ["clusterIP", "clusterIPs"] {
            if let (None, Some(v)) = (field(new, f), field(old, f)) {
                let v = v.clone();
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert(f.into(), v);
                }
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        // By port name: the client may have changed anything else about the port.
        let by_name: HashMap<&str, i64> =
            ports(old).iter().filter_map(|p| Some((p.get("name").and_then(Value::as_str).unwrap_or(""), node_port(p)?))).collect();
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter(|p| p.is_object() && node_port(p).is_none()) {
                if let Some(n) = by_name.get(p.get("name").and_then(Value::as_str).unwrap_or("")) {
                    p["nodePort"] = json!(n);
                }
            }
        }
    }
    if needs_health_check(old) && needs_health_check(new) && field(new, "healthCheckNodePort").is_none() {
        if let Some(hc) = field(old, "healthCheckNodePort").cloned() {
            new["spec"]["healthCheckNodePort"] = hc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored LoadBalancer Service, defaulted and allocated, with every field that
    /// depends on its type.
    fn local_lb() -> Value {
        json!({"spec": {
            "type": "LoadBalancer", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}, {"name": "https", "port": 443, "protocol": "TCP", "nodePort": 30443}],
            "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster", "healthCheckNodePort": 31000,
            "allocateLoadBalancerNodePorts": true, "loadBalancerClass": "example.com/lb", "selector": {"app": "web"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}}})
    }

    fn with_type(mut svc: Value, typ: &str) -> Value {
        svc["spec"]["type"] = json!(typ);
        svc
    }

    fn prepared(old: &Value, mut new: Value) -> Value {
        prepare_update(old, &mut new);
        new
    }

    #[test]
    fn a_load_balancer_turned_cluster_ip_loses_everything_only_its_old_type_used() {
        let old = local_lb();
        let new = prepared(&old, with_type(old.clone(), "ClusterIP"));
        let spec = &new["spec"];
        for f in ["healthCheckNodePort", "allocateLoadBalancerNodePorts", "loadBalancerClass", "externalTrafficPolicy"] {
            assert!(spec.get(f).is_none(), "{f} is left: {spec}");
        }
        assert!(spec["ports"].as_array().unwrap().iter().all(|p| p.get("nodePort").is_none()), "{spec}");
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "selector"] {
            assert_eq!(spec[f], old["spec"][f], "{f}");
        }
        assert_eq!(new["status"]["loadBalancer"], json!({}));
    }

    #[test]
    fn a_field_the_client_changed_along_with_the_type_is_left_for_validation() {
        let old = local_lb();
        let mut new = with_type(old.clone(), "ClusterIP");
        new["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
        new["spec"]["externalTrafficPolicy"] = json!("Cluster");
        new["spec"]["loadBalancerClass"] = json!("other.example.com/lb");
        new["spec"]["ports"][0]["nodePort"] = json!(30999);
        let new = prepared(&old, new);
        assert_eq!(new["spec"]["allocateLoadBalancerNodePorts"], false);
        assert_eq!(new["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(new["spec"]["loadBalancerClass"], "other.example.com/lb");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30999);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30443);
    }

    #[test]
    fn a_load_balancer_turned_node_port_keeps_its_node_ports_and_traffic_policy() {
        let old = local_lb();
        let new = prepared(&old, with_type(old.clone(), "NodePort"));
        assert_eq!(new["spec"]["ports"], old["spec"]["ports"]);
        assert_eq!(new["spec"]["externalTrafficPolicy"], "Local");
        assert!(new["spec"].get("healthCheckNodePort").is_none());
        assert!(new["spec"].get("allocateLoadBalancerNodePorts").is_none());
        assert_eq!(new["status"]["loadBalancer"], json!({}));
    }

    #[test]
    fn a_service_turned_external_name_loses_its_cluster_ips_and_families() {
        let old = local_lb();
        let mut new = with_type(old.clone(), "ExternalName");
        new["spec"]["externalName"] = json!("example.com");
        let new = prepared(&old, new);
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            assert!(new["spec"].get(f).is_none(), "{f} is left");
        }
        // Upstream leaves internalTrafficPolicy alone, ExternalName or not.
        assert_eq!(new["spec"]["internalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn a_replaced_manifest_keeps_what_the_server_allocated() {
        let old = local_lb();
        let new = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 80}, {"name": "extra", "port": 9000}]}});
        let new = prepared(&old, new);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.20");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.20"]));
        assert_eq!(new["spec"]["healthCheckNodePort"], 31000);
        let node_ports: Vec<&Value> = new["spec"]["ports"].as_array().unwrap().iter().map(|p| &p["nodePort"]).collect();
        assert_eq!(node_ports, [&json!(30443), &json!(30080), &Value::Null]);
    }

    #[test]
    fn a_cluster_ip_service_turned_node_port_has_nothing_to_keep_or_drop() {
        let old = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30"],
            "ports": [{"port": 80}], "internalTrafficPolicy": "Cluster"}, "status": {"loadBalancer": {}}});
        let new = prepared(&old, with_type(old.clone(), "NodePort"));
        assert_eq!(new, with_type(old, "NodePort"));
    }
}
