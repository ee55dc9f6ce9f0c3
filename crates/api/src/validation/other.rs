//! The small groups: discovery.k8s.io EndpointSlice, coordination.k8s.io Lease,
//! node.k8s.io RuntimeClass, policy/v1 PodDisruptionBudget, scheduling.k8s.io
//! PriorityClass and storage.k8s.io StorageClass.

use std::collections::HashSet;

use serde_json::Value;

use super::field::{immutable, invalid_go, nonnegative, too_many, Errs, Obj, Path, NULL};
use super::meta;
use super::names::{self, NameRule};
use super::pod::{dns_label, qualified};
use crate::Cause;

const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;

/// `ValidateEndpointSlice` and its update rule (the address type is fixed).
pub(crate) fn validate_endpoint_slice(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let addr_type = obj.str_or_empty("addressType");
    let tp = Path::new("addressType");
    match addr_type {
        "" => errs.push(Cause::required(&tp)),
        "FQDN" | "IPv4" | "IPv6" => {}
        other => errs.push(Cause::not_supported(&tp, &Value::from(other), &["FQDN", "IPv4", "IPv6"])),
    }
    let endpoints = obj.get_arr("endpoints");
    let ep = Path::new("endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(too_many(&ep, endpoints.len(), MAX_ENDPOINTS));
    } else {
        for (i, e) in endpoints.iter().enumerate() {
            let p = ep.index(i);
            let ap = p.child("addresses");
            let addrs = e.get_arr("addresses");
            if addrs.is_empty() {
                errs.push(super::field::required_detail(&ap, "must contain at least 1 address"));
            } else if addrs.len() > MAX_ADDRESSES {
                errs.push(too_many(&ap, addrs.len(), MAX_ADDRESSES));
            }
            for (j, a) in addrs.iter().enumerate() {
                let a = a.as_str().unwrap_or("");
                let aip = ap.index(j);
                match addr_type {
                    "IPv4" => match names::parse_ip(a) {
                        Some(ip) if ip.is_ipv4() => super::core::non_special_ip(a, &aip, false, errs),
                        _ => errs.push(Cause::invalid(&aip, &Value::from(a), "must be a valid IPv4 address")),
                    },
                    "IPv6" => match names::parse_ip(a) {
                        Some(ip) if ip.is_ipv6() => super::core::non_special_ip(a, &aip, false, errs),
                        _ => errs.push(Cause::invalid(&aip, &Value::from(a), "must be a valid IPv6 address")),
                    },
                    "FQDN" => fqdn(a, &aip, errs),
                    _ => {}
                }
            }
            if let Some(node) = e.get_str("nodeName") {
                for msg in NameRule::Subdomain.check(node, false) {
                    errs.push(Cause::invalid(&p.child("nodeName"), &Value::from(node), msg));
                }
            }
            let topo = p.child("deprecatedTopology");
            if let Some(t) = e.get_obj("deprecatedTopology") {
                if t.len() > 16 {
                    errs.push(too_many(&topo, t.len(), 16));
                }
            }
            meta::labels(e.get("deprecatedTopology"), &topo, errs);
            if let Some(h) = e.get_str("hostname") {
                dns_label(h, &p.child("hostname"), errs);
            }
        }
    }
    let ports = obj.get_arr("ports");
    let pp = Path::new("ports");
    if ports.len() > MAX_PORTS {
        errs.push(too_many(&pp, ports.len(), MAX_PORTS));
    } else {
        let mut names = HashSet::new();
        for (i, port) in ports.iter().enumerate() {
            let p = pp.index(i);
            let name = port.str_or_empty("name");
            if !name.is_empty() {
                dns_label(name, &p.child("name"), errs);
            }
            if !names.insert(name) {
                errs.push(Cause::duplicate(&p.child("name"), &Value::from(name)));
            }
            match port.get_str("protocol") {
                None => errs.push(Cause::required(&p.child("protocol"))),
                Some("TCP" | "UDP" | "SCTP") => {}
                Some(other) => errs.push(Cause::not_supported(&p.child("protocol"), &Value::from(other), &["SCTP", "TCP", "UDP"])),
            }
            if let Some(ap) = port.get_str("appProtocol") {
                qualified(ap, &p.child("appProtocol"), errs);
            }
        }
    }
    if let Some(old) = old {
        let (n, o) = (obj.get("addressType").unwrap_or(&NULL), old.get("addressType").unwrap_or(&NULL));
        if n != o {
            errs.push(immutable(&tp, n));
        }
    }
}

/// `IsFullyQualifiedDomainName`.
fn fqdn(name: &str, path: &Path, errs: &mut Errs) {
    if name.is_empty() {
        errs.push(Cause::required(path));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = names::dns1123_subdomain(name);
    if !msgs.is_empty() {
        errs.push(Cause::invalid(path, &Value::from(name), msgs.join(",")));
    } else if name.split('.').count() < 2 {
        errs.push(Cause::invalid(path, &Value::from(name), "should be a domain with at least two segments separated by dots"));
    }
}

/// `ValidateLease`.
pub(crate) fn validate_lease(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    if let Some(d) = spec.get_i64("leaseDurationSeconds") {
        if d <= 0 {
            errs.push(Cause::invalid(&sp.child("leaseDurationSeconds"), &Value::from(d), "must be greater than 0"));
        }
    }
    if let Some(t) = spec.get_i64("leaseTransitions") {
        if t < 0 {
            errs.push(Cause::invalid(&sp.child("leaseTransitions"), &Value::from(t), "must be greater than or equal to 0"));
        }
    }
    if let Some(s) = spec.get_str("strategy") {
        if s != "OldestEmulationVersion" {
            errs.push(Cause::not_supported(&sp.child("strategy"), &Value::from(s), &["OldestEmulationVersion"]));
        }
    }
    if spec.has("preferredHolder") && !spec.has("strategy") {
        errs.push(Cause::forbidden(&sp.child("preferredHolder"), "may only be specified if `strategy` is defined"));
    }
}

/// `ValidateRuntimeClass` and its update rule (the handler is fixed).
pub(crate) fn validate_runtime_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
        let (n, o) = (obj.get("handler").unwrap_or(&NULL), old.get("handler").unwrap_or(&NULL));
        if n != o {
            errs.push(immutable(&Path::new("handler"), n));
        }
    }
    meta::object_meta(obj, false, NameRule::Subdomain, errs);
    let handler = obj.str_or_empty("handler");
    for msg in NameRule::Label.check(handler, false) {
        errs.push(Cause::invalid(&Path::new("handler"), &Value::from(handler), msg));
    }
    if let Some(pod_fixed) = obj.pointer("/overhead/podFixed").and_then(Value::as_object) {
        for (k, q) in pod_fixed {
            super::pod::resource_quantity(k, q, &Path::new("overhead").child("podFixed").key(k), errs);
        }
    }
    if let Some(sched) = obj.get("scheduling").filter(|v| !v.is_null()) {
        let p = Path::new("scheduling");
        meta::labels(sched.get("nodeSelector"), &p.child("nodeSelector"), errs);
        super::pod::tolerations(sched.get_arr("tolerations"), &p.child("tolerations"), errs);
    }
}

/// `ValidatePodDisruptionBudget` (with `ValidatePodDisruptionBudgetSpec`) and, on
/// updates, `ValidatePodDisruptionBudgetStatusUpdate`'s counters. The spec may change
/// in policy/v1; the generation tracks it.
pub(crate) fn validate_pod_disruption_budget(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        errs.push(invalid_go(&sp, &go_pdb_spec(spec), "minAvailable and maxUnavailable cannot be both set"));
    }
    for (value, field) in [(min, "minAvailable"), (max, "maxUnavailable")] {
        if value.is_some() {
            super::apps::int_or_percent(value, &sp.child(field), errs);
            super::apps::not_more_than_100(value, &sp.child(field), errs);
        }
    }
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        meta::label_selector(sel, &sp.child("selector"), errs);
    }
    if let Some(policy) = spec.get_str("unhealthyPodEvictionPolicy") {
        if !matches!(policy, "AlwaysAllow" | "IfHealthyBudget") {
            errs.push(Cause::not_supported(&sp.child("unhealthyPodEvictionPolicy"), &Value::from(policy), &["AlwaysAllow", "IfHealthyBudget"]));
        }
    }
    if old.is_some() {
        let status = obj.get("status").unwrap_or(&NULL);
        let st = Path::new("status");
        for field in ["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"] {
            nonnegative(status.get(field), &st.child(field), errs);
        }
    }
}

/// The spec as Go's `%#v` prints it: pointers print as addresses, which differ on
/// every call upstream; a fixed one keeps the shape of the message.
fn go_pdb_spec(spec: &Value) -> String {
    let ptr = |key: &str, ty: &str| {
        let addr = if spec.get(key).is_some_and(|v| !v.is_null()) { "0xc000010000" } else { "nil" };
        format!("(*{ty})({addr})")
    };
    format!(
        "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:{}, MaxUnavailable:{}, UnhealthyPodEvictionPolicy:{}}}",
        ptr("minAvailable", "intstr.IntOrString"),
        ptr("selector", "v1.LabelSelector"),
        ptr("maxUnavailable", "intstr.IntOrString"),
        ptr("unhealthyPodEvictionPolicy", "policy.UnhealthyPodEvictionPolicyType"),
    )
}

/// Names with this prefix belong to the built-in classes.
pub(crate) const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";

/// The largest value a class created by users may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// The built-in classes, as upstream creates them: (name, value).
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

/// `IsKnownSystemPriorityClass`.
fn known_system_priority_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
        None => Err(format!("{name} is not a known system priority class")),
        Some((_, v)) if *v != value => Err(format!("value of {name} PriorityClass must be {v}")),
        Some(_) if global_default => Err(format!("globalDefault of {name} PriorityClass must be false")),
        Some(_) => Ok(()),
    }
}

/// `ValidatePriorityClass` and `ValidatePriorityClassUpdate` (value and preemption
/// policy are fixed once created).
pub(crate) fn validate_priority_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, false, NameRule::Subdomain, errs);
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let value = obj.get_i64("value").unwrap_or(0);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Err(e) = known_system_priority_class(name, value, obj.get_bool("globalDefault").unwrap_or(false)) {
            errs.push(Cause::forbidden(
                "metadata.name",
                format!("priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {e}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(Cause::forbidden("value", format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}")));
    }
    if let Some(policy) = obj.get("preemptionPolicy").filter(|v| !v.is_null()) {
        match policy.as_str().unwrap_or("") {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(Cause::required("preemptionPolicy")),
            other => errs.push(Cause::not_supported("preemptionPolicy", &Value::from(other), &["PreemptLowerPriority", "Never"])),
        }
    }
    if let Some(old) = old {
        if old.get_i64("value").unwrap_or(0) != value {
            errs.push(Cause::forbidden("value", "may not be changed in an update."));
        }
        let (n, o) = (obj.get("preemptionPolicy").unwrap_or(&NULL), old.get("preemptionPolicy").unwrap_or(&NULL));
        if n != o {
            errs.push(immutable(&Path::new("preemptionPolicy"), n));
        }
    }
}

// === StorageClass ===

/// Parameters may hold at most this many keys...
const MAX_PROVISIONER_PARAMETERS: usize = 512;
/// ...and this many bytes of keys and values together.
const MAX_PROVISIONER_PARAMETER_BYTES: usize = 256 * 1024;

/// `ValidateStorageClass` and, on updates, `ValidateStorageClassUpdate`: the
/// provisioner, its parameters, the reclaim policy and the binding mode are fixed
/// once the class exists, because volumes were already made by them.
pub(crate) fn validate_storage_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    meta::object_meta(obj, false, NameRule::Subdomain, errs);
    let provisioner = obj.str_or_empty("provisioner");
    if provisioner.is_empty() {
        errs.push(Cause::required("provisioner"));
    } else {
        qualified(&provisioner.to_lowercase(), &Path::new("provisioner"), errs);
    }
    storage_class_parameters(obj.get_obj("parameters"), errs);
    if let Some(policy) = obj.get_str("reclaimPolicy").filter(|p| !p.is_empty()) {
        if !matches!(policy, "Delete" | "Retain") {
            errs.push(Cause::not_supported("reclaimPolicy", &Value::from(policy), &["Delete", "Retain"]));
        }
    }
    match obj.get("volumeBindingMode").filter(|v| !v.is_null()) {
        None => errs.push(Cause::required("volumeBindingMode")),
        Some(mode) => {
            let mode = mode.as_str().unwrap_or("");
            if !matches!(mode, "Immediate" | "WaitForFirstConsumer") {
                errs.push(Cause::not_supported("volumeBindingMode", &Value::from(mode), &["Immediate", "WaitForFirstConsumer"]));
            }
        }
    }
    allowed_topologies(obj.get_arr("allowedTopologies"), &Path::new("allowedTopologies"), errs);
    let Some(old) = old else { return };
    meta::object_meta_update(obj, old, errs);
    if obj.get("parameters") != old.get("parameters") {
        errs.push(Cause::forbidden("parameters", "updates to parameters are forbidden."));
    }
    if provisioner != old.str_or_empty("provisioner") {
        errs.push(Cause::forbidden("provisioner", "updates to provisioner are forbidden."));
    }
    if obj.str_or_empty("reclaimPolicy") != old.str_or_empty("reclaimPolicy") {
        errs.push(Cause::forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."));
    }
    let (n, o) = (obj.get("volumeBindingMode").unwrap_or(&NULL), old.get("volumeBindingMode").unwrap_or(&NULL));
    if n != o {
        errs.push(immutable(&Path::new("volumeBindingMode"), n));
    }
}

fn storage_class_parameters(params: Option<&serde_json::Map<String, Value>>, errs: &mut Errs) {
    let Some(params) = params else { return };
    if params.len() > MAX_PROVISIONER_PARAMETERS {
        errs.push(Cause::too_long("parameters", MAX_PROVISIONER_PARAMETERS));
        return;
    }
    let mut total = 0;
    for (k, v) in params {
        if k.is_empty() {
            errs.push(Cause::invalid("parameters", &Value::from(""), "field can not be empty."));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > MAX_PROVISIONER_PARAMETER_BYTES {
        errs.push(Cause::too_long("parameters", MAX_PROVISIONER_PARAMETER_BYTES));
    }
}

/// `validateAllowedTopologies`: each term's keys are label names with distinct,
/// non-empty value sets, and no two terms are the same. Upstream seeds its list of
/// seen terms with one empty entry per term, so an empty term counts as a repeat of
/// each of them; that is kept, as users see it.
fn allowed_topologies(terms: &[Value], path: &Path, errs: &mut Errs) {
    use std::collections::{BTreeMap, BTreeSet};
    if terms.is_empty() {
        return;
    }
    let mut seen: Vec<BTreeMap<String, BTreeSet<String>>> = vec![BTreeMap::new(); terms.len()];
    for (i, term) in terms.iter().enumerate() {
        let tp = path.index(i);
        let ep = tp.child("matchLabelExpressions");
        let mut exprs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (j, req) in term.get_arr("matchLabelExpressions").iter().enumerate() {
            let rp = ep.index(j);
            let key = req.str_or_empty("key");
            let vp = rp.child("values");
            let values = req.get_arr("values");
            if values.is_empty() {
                errs.push(Cause::required(&vp));
            }
            let mut set = BTreeSet::new();
            for (k, v) in values.iter().enumerate() {
                let v = v.as_str().unwrap_or("");
                if !set.insert(v.to_string()) {
                    errs.push(Cause::duplicate(&vp.index(k), &Value::from(v)));
                }
            }
            meta::label_key(key, &rp.child("key"), errs);
            if exprs.contains_key(key) {
                errs.push(Cause::duplicate(&rp.child("key"), &Value::from(key)));
            }
            exprs.insert(key.to_string(), set);
        }
        for earlier in &seen {
            if *earlier == exprs {
                errs.push(Cause::duplicate(&ep, &Value::from("")));
            }
        }
        seen.push(exprs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(f: fn(&Value, Option<&Value>, &mut Errs), obj: &Value, old: Option<&Value>) -> Errs {
        let mut e = Vec::new();
        f(obj, old, &mut e);
        e
    }

    #[test]
    fn endpoint_slices_need_a_known_address_type_and_addresses() {
        let s = json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv5", "endpoints": [{"addresses": []}], "ports": [{"name": "", "protocol": "TCP"}]});
        let e = check(validate_endpoint_slice, &s, None);
        let lines: Vec<String> = e.iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"".to_string(),
                "endpoints[0].addresses: Required value: must contain at least 1 address".to_string()
            ]
        );
    }

    #[test]
    fn endpoint_slice_addresses_match_their_type() {
        let addresses = json!(["::1", "10.0.0.1", "0.0.0.0", "127.0.0.1"]);
        let s = json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv4", "endpoints": [{"addresses": addresses}]});
        let e = check(validate_endpoint_slice, &s, None);
        let lines: Vec<String> = e.iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "endpoints[0].addresses[0]: Invalid value: \"::1\": must be a valid IPv4 address".to_string(),
                "endpoints[0].addresses[2]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)".to_string()
            ]
        );
    }

    #[test]
    fn leases_last_a_positive_time() {
        let l = json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}});
        let e = check(validate_lease, &l, None);
        assert_eq!(e[0].line(), "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0");
    }

    #[test]
    fn runtime_class_handlers_are_dns_labels_and_fixed() {
        let rc = json!({"metadata": {"name": "gvisor"}, "handler": ""});
        let e = check(validate_runtime_class, &rc, None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "handler");
        let old = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
        let new = json!({"metadata": {"name": "gvisor"}, "handler": "kata"});
        let e = check(validate_runtime_class, &new, Some(&old));
        assert_eq!(e[0].line(), "handler: Invalid value: \"kata\": field is immutable");
    }

    #[test]
    fn disruption_budgets_take_one_of_min_available_or_max_unavailable() {
        let both = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": {"minAvailable": 1, "maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}});
        let e = check(validate_pod_disruption_budget, &both, None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].field, "spec");
        assert!(e[0].message.starts_with("Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(0x"));
        assert!(e[0].message.ends_with("UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(nil)}: minAvailable and maxUnavailable cannot be both set"));
        let one = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}});
        assert!(check(validate_pod_disruption_budget, &one, None).is_empty());
    }

    #[test]
    fn disruption_budget_numbers_are_positive_counts_or_percentages() {
        let pdb = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": {"minAvailable": "150%", "selector": {"matchExpressions": [{"key": "app", "operator": "Is"}]}}});
        let lines: Vec<String> = check(validate_pod_disruption_budget, &pdb, None).iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%".to_string(),
                "spec.selector.matchExpressions[0].operator: Invalid value: \"Is\": not a valid selector operator".to_string(),
            ]
        );
        let neg = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": {"maxUnavailable": -1}});
        assert_eq!(check(validate_pod_disruption_budget, &neg, None)[0].line(), "spec.maxUnavailable: Invalid value: -1: must be greater than or equal to 0");
    }

    #[test]
    fn disruption_budget_status_counters_may_not_go_negative() {
        let old = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": {"minAvailable": 1}, "status": {"disruptionsAllowed": 0}});
        let mut new = old.clone();
        new["status"]["disruptionsAllowed"] = json!(-1);
        let e = check(validate_pod_disruption_budget, &new, Some(&old));
        assert_eq!(e[0].line(), "status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0");
    }

    #[test]
    fn user_priority_classes_stay_below_a_billion() {
        let pc = json!({"metadata": {"name": "huge"}, "value": 1_000_000_001});
        let e = check(validate_priority_class, &pc, None);
        assert_eq!(e[0].line(), "value: Forbidden: maximum allowed value of a user defined priority is 1000000000");
        let ok = json!({"metadata": {"name": "high"}, "value": 1_000_000_000, "preemptionPolicy": "Never"});
        assert!(check(validate_priority_class, &ok, None).is_empty());
    }

    #[test]
    fn system_prefixed_priority_class_names_are_reserved() {
        let fake = json!({"metadata": {"name": "system-mine"}, "value": 10});
        let e = check(validate_priority_class, &fake, None);
        assert_eq!(
            e[0].line(),
            "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
        );
        let wrong = json!({"metadata": {"name": "system-node-critical"}, "value": 10});
        assert!(check(validate_priority_class, &wrong, None)[0].message.ends_with("error: value of system-node-critical PriorityClass must be 2000001000"));
        let builtin = json!({"metadata": {"name": "system-cluster-critical"}, "value": 2_000_000_000, "preemptionPolicy": "PreemptLowerPriority"});
        assert!(check(validate_priority_class, &builtin, None).is_empty());
    }

    #[test]
    fn priority_class_values_and_policies_are_fixed() {
        let old = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority"});
        let new = json!({"metadata": {"name": "high"}, "value": 2000, "preemptionPolicy": "Never", "description": "changed"});
        let lines: Vec<String> = check(validate_priority_class, &new, Some(&old)).iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            ["value: Forbidden: may not be changed in an update.".to_string(), "preemptionPolicy: Invalid value: \"Never\": field is immutable".to_string()]
        );
        let described = json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority", "description": "x"});
        assert!(check(validate_priority_class, &described, Some(&old)).is_empty());
    }

    fn class(extra: Value) -> Value {
        let mut c = json!({"metadata": {"name": "fast"}, "provisioner": "skiff.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn storage_classes_need_a_qualified_provisioner_and_known_policies() {
        assert!(check(validate_storage_class, &class(json!({})), None).is_empty());
        let bad = class(json!({"provisioner": "", "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"}));
        let lines: Vec<String> = check(validate_storage_class, &bad, None).iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "provisioner: Required value".to_string(),
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"".to_string(),
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"".to_string(),
            ]
        );
        let spaced = class(json!({"provisioner": "my provisioner"}));
        assert!(check(validate_storage_class, &spaced, None)[0].line().starts_with("provisioner: Invalid value: \"my provisioner\": name part must consist of"));
        let unset = json!({"metadata": {"name": "fast"}, "provisioner": "a.io/b"});
        assert_eq!(check(validate_storage_class, &unset, None)[0].line(), "volumeBindingMode: Required value");
    }

    #[test]
    fn allowed_topologies_may_not_repeat_keys_values_or_terms() {
        let term = json!({"matchLabelExpressions": [{"key": "zone", "values": ["a", "a"]}, {"key": "zone", "values": []}]});
        let c = class(json!({"allowedTopologies": [term, {"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]}, {"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]}]}));
        let lines: Vec<String> = check(validate_storage_class, &c, None).iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "allowedTopologies[0].matchLabelExpressions[0].values[1]: Duplicate value: \"a\"".to_string(),
                "allowedTopologies[0].matchLabelExpressions[1].values: Required value".to_string(),
                "allowedTopologies[0].matchLabelExpressions[1].key: Duplicate value: \"zone\"".to_string(),
                "allowedTopologies[2].matchLabelExpressions: Duplicate value: \"\"".to_string(),
            ]
        );
    }

    #[test]
    fn a_storage_class_keeps_its_provisioner_parameters_policy_and_mode() {
        let old = class(json!({"parameters": {"a": "1"}}));
        let new = class(json!({"parameters": {"a": "2"}, "provisioner": "example.com/other", "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}));
        let lines: Vec<String> = check(validate_storage_class, &new, Some(&old)).iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "parameters: Forbidden: updates to parameters are forbidden.".to_string(),
                "provisioner: Forbidden: updates to provisioner are forbidden.".to_string(),
                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.".to_string(),
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable".to_string(),
            ]
        );
        let expandable = class(json!({"parameters": {"a": "1"}, "allowVolumeExpansion": true}));
        assert!(check(validate_storage_class, &expandable, Some(&old)).is_empty());
    }
}
