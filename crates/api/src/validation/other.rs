//! The small groups: discovery.k8s.io EndpointSlice, coordination.k8s.io Lease and
//! node.k8s.io RuntimeClass.

use std::collections::HashSet;

use serde_json::Value;

use super::field::{immutable, too_many, Errs, Obj, Path, NULL};
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
}
