//! Printers of `networking.k8s.io`: Ingresses, IngressClasses and NetworkPolicies.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

// === Ingress ===

pub(super) fn ingress_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
        col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
        col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
        col("Ports", "string", "Ports of TLS configurations that open"),
        AGE,
    ]
}

/// `formatHosts`: the first three hosts that rules name, `*` when none names one.
/// The count of the rest is of rules, as upstream counts it, hosts or not.
fn format_hosts(ing: &Value) -> String {
    const MAX: usize = 3;
    let rules = arr_at(ing, "/spec/rules");
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

/// `ingressLoadBalancerStatusStringer` with wide output (the server never clips):
/// each ingress point's IP, or its hostname when it has no IP, sorted and unique.
fn ingress_address(ing: &Value) -> String {
    let points: BTreeSet<&str> = arr_at(ing, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| match str_at(i, "/ip") {
            "" => str_at(i, "/hostname"),
            ip => ip,
        })
        .filter(|s| !s.is_empty())
        .collect();
    points.into_iter().collect::<Vec<_>>().join(",")
}

pub(super) fn ingress_cells(ing: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let class = opt_str_at(ing, "/spec/ingressClassName").unwrap_or("<none>");
    let ports = if arr_at(ing, "/spec/tls").is_empty() { "80" } else { "80, 443" };
    vec![name(ing).into(), class.into(), format_hosts(ing).into(), ingress_address(ing).into(), ports.into(), age(ing, now).into()]
}

// === IngressClass ===

pub(super) fn ingress_class_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Controller", "string", "Controller that is responsible for handling this class"),
        col("Parameters", "string", "A reference to a resource with additional parameters"),
        AGE,
    ]
}

/// `printIngressClass`: parameters as `Kind[.apiGroup]/name`.
pub(super) fn ingress_class_cells(ic: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let parameters = match ic.pointer("/spec/parameters").filter(|p| p.is_object()) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut s = str_at(p, "/kind").to_string();
            if let Some(group) = opt_str_at(p, "/apiGroup") {
                s.push('.');
                s.push_str(group);
            }
            format!("{s}/{}", str_at(p, "/name"))
        }
    };
    vec![name(ic).into(), str_at(ic, "/spec/controller").into(), parameters.into(), age(ic, now).into()]
}

// === NetworkPolicy ===

pub(super) fn network_policy_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies.  The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods.  In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace."),
        AGE,
    ]
}

/// `printNetworkPolicy`. The selector is a struct upstream, never absent: a policy
/// without one selects every pod and prints `<none>`.
pub(super) fn network_policy_cells(np: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let empty = Value::Object(Default::default());
    let selector = np.pointer("/spec/podSelector").filter(|s| !s.is_null()).unwrap_or(&empty);
    vec![name(np).into(), format_label_selector(Some(selector)).into(), age(np, now).into()]
}
