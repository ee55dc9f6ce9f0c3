//! networking.k8s.io/v1: Ingress, IngressClass and NetworkPolicy
//! (`pkg/apis/networking/validation`).
//!
//! Two upstream leniencies on update are kept, because objects stored by older
//! servers must stay editable: an Ingress whose stored TLS secret names or wildcard
//! rules were already invalid keeps being accepted, and a NetworkPolicy may keep any
//! CIDR it already had.

use serde_json::Value;

use super::field::{immutable, invalid_go, required_detail, Errs, Obj, Path, NULL};
use super::meta;
use super::names::{self, NameRule};
use super::pod::subdomain;
use crate::Cause;

/// The legacy annotation that named an Ingress's class before `ingressClassName`.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// IngressClass controllers are at most this long.
const MAX_CONTROLLER_LEN: usize = 250;

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

// === Ingress ===

/// What an update may keep from the stored object although it would not pass today.
#[derive(Debug, Clone, Copy, Default)]
struct IngressOptions {
    allow_invalid_secret_name: bool,
    allow_invalid_wildcard_host_rule: bool,
}

/// `ValidateIngressCreate`, or on update `ValidateIngressUpdate` and, for the status
/// that an update carries, `ValidateIngressLoadBalancerStatus`.
pub(crate) fn validate_ingress(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let mut opts = IngressOptions::default();
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
        opts = IngressOptions {
            allow_invalid_secret_name: old.pointer("/spec/tls").and_then(Value::as_array).into_iter().flatten().any(|t| !tls_secret_name(t.str_or_empty("secretName")).is_empty()),
            allow_invalid_wildcard_host_rule: old.pointer("/spec/rules").and_then(Value::as_array).into_iter().flatten().any(|r| {
                let mut e = Vec::new();
                rule_value(r, &Path::new(""), &mut e);
                r.str_or_empty("host").contains('*') && !e.is_empty()
            }),
        };
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let spec = obj.get("spec").unwrap_or(&NULL);
    ingress_spec(spec, &Path::new("spec"), opts, errs);
    match old {
        None => {
            let annotation = obj.pointer("/metadata/annotations").and_then(|a| a.get(INGRESS_CLASS_ANNOTATION)).and_then(Value::as_str);
            if let (Some(annotation), Some(class)) = (annotation, spec.get_str("ingressClassName")) {
                if annotation != class {
                    let path = Path::new("annotations").child(INGRESS_CLASS_ANNOTATION);
                    errs.push(Cause::invalid(&path, &Value::from(annotation), "must match `ingressClassName` when both are specified"));
                }
            }
        }
        Some(old) => load_balancer_status(obj, old, errs),
    }
}

/// `ValidateIngressSpec`.
fn ingress_spec(spec: &Value, path: &Path, opts: IngressOptions, errs: &mut Errs) {
    let rules = spec.get_arr("rules");
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default_backend.is_none() {
        let rendered = if spec.get("rules").is_some_and(Value::is_array) { "[]networking.IngressRule{}" } else { "[]networking.IngressRule(nil)" };
        errs.push(invalid_go(path, rendered, "either `defaultBackend` or `rules` must be specified"));
    }
    if let Some(b) = default_backend {
        backend(b, &path.child("defaultBackend"), errs);
    }
    let rp = path.child("rules");
    for (i, rule) in rules.iter().enumerate() {
        let p = rp.index(i);
        let host = rule.str_or_empty("host");
        let mut wildcard = false;
        if !host.is_empty() {
            let hp = p.child("host");
            if names::parse_ip(host).is_some() {
                errs.push(Cause::invalid(&hp, &Value::from(host), "must be a DNS name, not an IP address"));
            }
            let msgs = if host.contains('*') {
                wildcard = true;
                names::wildcard_dns1123_subdomain(host)
            } else {
                names::dns1123_subdomain(host)
            };
            for msg in msgs {
                errs.push(Cause::invalid(&hp, &Value::from(host), msg));
            }
        }
        if !wildcard || !opts.allow_invalid_wildcard_host_rule {
            rule_value(rule, &p, errs);
        }
    }
    let tp = path.child("tls");
    for (i, tls) in spec.get_arr("tls").iter().enumerate() {
        for (j, host) in tls.get_arr("hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or("");
            let msgs = if host.contains('*') { names::wildcard_dns1123_subdomain(host) } else { names::dns1123_subdomain(host) };
            for msg in msgs {
                errs.push(Cause::invalid(&tp.index(i).child("hosts").index(j), &Value::from(host), msg));
            }
        }
        if !opts.allow_invalid_secret_name {
            let secret = tls.str_or_empty("secretName");
            for msg in tls_secret_name(secret) {
                errs.push(Cause::invalid(&tp.index(i).child("secretName"), &Value::from(secret), msg));
            }
        }
    }
    if let Some(class) = spec.get_str("ingressClassName") {
        subdomain(class, &path.child("ingressClassName"), errs);
    }
}

/// An empty secret name is allowed (the controller's default certificate).
fn tls_secret_name(name: &str) -> Vec<String> {
    if name.is_empty() {
        Vec::new()
    } else {
        names::dns1123_subdomain(name)
    }
}

/// `validateIngressRuleValue`: a rule's `http` paths, when it has them.
fn rule_value(rule: &Value, path: &Path, errs: &mut Errs) {
    let Some(http) = rule.get("http").filter(|h| !h.is_null()) else { return };
    let hp = path.child("http");
    let paths = http.get_arr("paths");
    if paths.is_empty() {
        errs.push(Cause::required(&hp.child("paths")));
    }
    for (i, p) in paths.iter().enumerate() {
        http_path(p, &hp.child("paths").index(i), errs);
    }
}

/// `validateHTTPIngressPath`: the path type decides what the path may look like.
fn http_path(p: &Value, path: &Path, errs: &mut Errs) {
    let Some(path_type) = p.get("pathType").filter(|t| !t.is_null()) else {
        errs.push(required_detail(&path.child("pathType"), "pathType must be specified"));
        return;
    };
    let path_type = path_type.as_str().unwrap_or("");
    let value = p.str_or_empty("path");
    let pp = path.child("path");
    match path_type {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(Cause::invalid(&pp, &Value::from(value), "must be an absolute path"));
            }
            if !value.is_empty() {
                for seq in INVALID_PATH_SEQUENCES.iter().filter(|s| value.contains(**s)) {
                    errs.push(Cause::invalid(&pp, &Value::from(value), format!("must not contain '{seq}'")));
                }
                for suffix in INVALID_PATH_SUFFIXES.iter().filter(|s| value.ends_with(**s)) {
                    errs.push(Cause::invalid(&pp, &Value::from(value), format!("cannot end with '{suffix}'")));
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(Cause::invalid(&pp, &Value::from(value), "must be an absolute path"));
            }
        }
        other => errs.push(Cause::not_supported(&path.child("pathType"), &Value::from(other), PATH_TYPES)),
    }
    backend(p.get("backend").unwrap_or(&NULL), &path.child("backend"), errs);
}

/// `validateIngressBackend`: exactly one of a Service (by name, and port by name or
/// number) or a typed resource reference.
fn backend(b: &Value, path: &Path, errs: &mut Errs) {
    let resource = b.get("resource").filter(|r| !r.is_null());
    let service = b.get("service").filter(|s| !s.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => errs.push(Cause::invalid(path, &Value::from(""), "cannot set both resource and service backends")),
        (Some(r), None) => typed_local_object_reference(r, &path.child("resource"), errs),
        (None, Some(s)) => {
            let np = path.child("service").child("name");
            let name = s.str_or_empty("name");
            if name.is_empty() {
                errs.push(Cause::required(&np));
            } else {
                for msg in NameRule::Dns1035.check(name, false) {
                    errs.push(Cause::invalid(&np, &Value::from(name), msg));
                }
            }
            let port = s.get("port").unwrap_or(&NULL);
            let port_name = port.str_or_empty("name");
            let number = port.get_i64("number").unwrap_or(0);
            let pp = path.child("service").child("port");
            match (port_name.is_empty(), number == 0) {
                (false, false) => errs.push(Cause::invalid(path, &Value::from(""), "cannot set both port name & port number")),
                (false, true) => {
                    for msg in names::port_name(port_name) {
                        errs.push(Cause::invalid(&pp.child("name"), &Value::from(port_name), msg));
                    }
                }
                (true, false) => {
                    for msg in names::port_num(number) {
                        errs.push(Cause::invalid(&pp.child("number"), &Value::from(number), msg));
                    }
                }
                (true, true) => errs.push(required_detail(path, "port name or number is required")),
            }
        }
        (None, None) => errs.push(Cause::invalid(path, &Value::from(""), "resource or service backend is required")),
    }
}

/// `validateIngressTypedLocalObjectReference`.
fn typed_local_object_reference(r: &Value, path: &Path, errs: &mut Errs) {
    if let Some(group) = r.get_str("apiGroup") {
        subdomain(group, &path.child("apiGroup"), errs);
    }
    kind_and_name(r, path, errs);
}

/// A reference's `kind` and `name`: required, and usable as URL path segments.
fn kind_and_name(r: &Value, path: &Path, errs: &mut Errs) {
    for key in ["kind", "name"] {
        let v = r.str_or_empty(key);
        if v.is_empty() {
            errs.push(Cause::required(&path.child(key)));
        } else {
            for msg in names::path_segment(v) {
                errs.push(Cause::invalid(&path.child(key), &Value::from(v), msg));
            }
        }
    }
}

/// `ValidateIngressLoadBalancerStatus`: addresses are IPs (any the old status had
/// stay allowed) and hostnames are DNS names.
fn load_balancer_status(obj: &Value, old: &Value, errs: &mut Errs) {
    let old_ips: Vec<&str> = old
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get_str("ip"))
        .filter(|ip| !ip.is_empty())
        .collect();
    let path = Path::new("status").child("loadBalancer").child("ingress");
    for (i, ingress) in obj.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let p = path.index(i);
        let ip = ingress.str_or_empty("ip");
        if !ip.is_empty() && !old_ips.contains(&ip) && names::parse_ip(ip).is_none() {
            errs.push(Cause::invalid(&p.child("ip"), &Value::from(ip), names::IP_MSG));
        }
        let hostname = ingress.str_or_empty("hostname");
        if !hostname.is_empty() {
            subdomain(hostname, &p.child("hostname"), errs);
            if names::parse_ip(hostname).is_some() {
                errs.push(Cause::invalid(&p.child("hostname"), &Value::from(hostname), "must be a DNS name, not an IP address"));
            }
        }
    }
}

// === IngressClass ===

/// `ValidateIngressClass`, and on update `ValidateIngressClassUpdate`: the
/// controller is fixed once the class exists, since Ingresses were handed to it.
pub(crate) fn validate_ingress_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&NULL);
    let sp = Path::new("spec");
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
        let (new_c, old_c) = (spec.str_or_empty("controller"), old.pointer("/spec/controller").and_then(Value::as_str).unwrap_or(""));
        if new_c != old_c {
            errs.push(immutable(&sp.child("controller"), &Value::from(new_c)));
        }
    }
    meta::object_meta(obj, false, NameRule::Subdomain, errs);
    let cp = sp.child("controller");
    let controller = spec.str_or_empty("controller");
    if controller.is_empty() {
        errs.push(Cause::required(&cp));
    } else {
        if controller.len() > MAX_CONTROLLER_LEN {
            errs.push(Cause::too_long(&cp, MAX_CONTROLLER_LEN));
        }
        for (value, msg) in names::domain_prefixed_path(controller) {
            errs.push(Cause::invalid(&cp, &Value::from(value), msg));
        }
    }
    if let Some(params) = spec.get("parameters").filter(|p| !p.is_null()) {
        class_parameters(params, &sp.child("parameters"), errs);
    }
}

/// `validateIngressClassParametersReference`: a cluster-scoped reference names no
/// namespace, a namespaced one must.
fn class_parameters(params: &Value, path: &Path, errs: &mut Errs) {
    if let Some(group) = params.get_str("apiGroup") {
        subdomain(group, &path.child("apiGroup"), errs);
    }
    kind_and_name(params, path, errs);
    let Some(scope) = params.get("scope").filter(|s| !s.is_null()) else {
        errs.push(Cause::required(&path.child("scope")));
        return;
    };
    let scope = scope.as_str().unwrap_or("");
    let namespace = params.get("namespace").filter(|n| !n.is_null());
    let np = path.child("namespace");
    match scope {
        "Namespace" => match namespace {
            None => errs.push(required_detail(&np, "`parameters.scope` is set to 'Namespace'")),
            Some(ns) => {
                let ns = ns.as_str().unwrap_or("");
                for msg in names::dns1123_label(ns) {
                    errs.push(Cause::invalid(&np, &Value::from(ns), msg));
                }
            }
        },
        "Cluster" => {
            if namespace.is_some() {
                errs.push(Cause::forbidden(&np, "`parameters.scope` is set to 'Cluster'"));
            }
        }
        other => errs.push(Cause::not_supported(&path.child("scope"), &Value::from(other), &["Cluster", "Namespace"])),
    }
}

// === NetworkPolicy ===

/// `ValidateNetworkPolicy`, and on update `ValidateNetworkPolicyUpdate`.
pub(crate) fn validate_network_policy(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let mut existing_cidrs = Vec::new();
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
        for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
            for rule in old.pointer(&format!("/spec/{rules}")).and_then(Value::as_array).into_iter().flatten() {
                for block in rule.get_arr(peers).iter().filter_map(|p| p.get("ipBlock")) {
                    existing_cidrs.extend(block.get_str("cidr").map(String::from));
                    existing_cidrs.extend(block.get_arr("except").iter().filter_map(Value::as_str).map(String::from));
                }
            }
        }
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let spec = obj.get("spec").unwrap_or(&NULL);
    let sp = Path::new("spec");
    meta::label_selector(spec.get("podSelector").unwrap_or(&NULL), &sp.child("podSelector"), errs);
    for (rules, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in spec.get_arr(rules).iter().enumerate() {
            let rp = sp.child(rules).index(i);
            for (j, port) in rule.get_arr("ports").iter().enumerate() {
                policy_port(port, &rp.child("ports").index(j), errs);
            }
            for (j, peer) in rule.get_arr(peers).iter().enumerate() {
                policy_peer(peer, &rp.child(peers).index(j), &existing_cidrs, errs);
            }
        }
    }
    let types = spec.get_arr("policyTypes");
    let tp = sp.child("policyTypes");
    if types.len() > 2 {
        let list: Vec<String> = types.iter().map(|t| format!("{:?}", t.as_str().unwrap_or(""))).collect();
        errs.push(invalid_go(&tp, &format!("[]networking.PolicyType{{{}}}", list.join(", ")), "may not specify more than two policyTypes"));
        return;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if !matches!(t, "Ingress" | "Egress") {
            errs.push(Cause::not_supported(&tp.index(i), &Value::from(t), &["Ingress", "Egress"]));
        }
    }
}

/// `ValidateNetworkPolicyPort`: a protocol, and a port by number (optionally a range
/// up to `endPort`) or by name.
fn policy_port(port: &Value, path: &Path, errs: &mut Errs) {
    if let Some(protocol) = port.get("protocol").filter(|p| !p.is_null()) {
        let protocol = protocol.as_str().unwrap_or("");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            errs.push(Cause::not_supported(&path.child("protocol"), &Value::from(protocol), &["TCP", "UDP", "SCTP"]));
        }
    }
    let end = port.get("endPort").and_then(Value::as_i64);
    let ep = path.child("endPort");
    match port.get("port").filter(|p| !p.is_null()) {
        Some(Value::String(name)) => {
            if let Some(end) = end {
                errs.push(Cause::invalid(&ep, &Value::from(end), "may not be specified when `port` is non-numeric"));
            }
            for msg in names::port_name(name) {
                errs.push(Cause::invalid(&path.child("port"), &Value::from(name.as_str()), msg));
            }
        }
        Some(number) => {
            let number = number.as_i64().unwrap_or(0);
            for msg in names::port_num(number) {
                errs.push(Cause::invalid(&path.child("port"), &Value::from(number), msg));
            }
            if let Some(end) = end {
                if end < number {
                    errs.push(Cause::invalid(&ep, &Value::from(end), "must be greater than or equal to `port`"));
                }
                for msg in names::port_num(end) {
                    errs.push(Cause::invalid(&ep, &Value::from(end), msg));
                }
            }
        }
        None => {
            if let Some(end) = end {
                errs.push(Cause::invalid(&ep, &Value::from(end), "may not be specified when `port` is not specified"));
            }
        }
    }
}

/// `ValidateNetworkPolicyPeer`: pods and namespaces by selector, or an IP block on
/// its own.
fn policy_peer(peer: &Value, path: &Path, existing_cidrs: &[String], errs: &mut Errs) {
    let mut count = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = peer.get(key).filter(|s| !s.is_null()) {
            count += 1;
            meta::label_selector(sel, &path.child(key), errs);
        }
    }
    let block = peer.get("ipBlock").filter(|b| !b.is_null());
    if let Some(block) = block {
        count += 1;
        ip_block(block, &path.child("ipBlock"), existing_cidrs, errs);
    }
    if count == 0 {
        errs.push(required_detail(path, "must specify a peer"));
    } else if count > 1 && block.is_some() {
        errs.push(Cause::forbidden(path, "may not specify both ipBlock and another peer"));
    }
}

/// `ValidateIPBlock`: `cidr` is a CIDR and every `except` a CIDR strictly inside it.
fn ip_block(block: &Value, path: &Path, existing_cidrs: &[String], errs: &mut Errs) {
    let cidr = block.str_or_empty("cidr");
    let cp = path.child("cidr");
    if cidr.is_empty() {
        errs.push(Cause::required(&cp));
        return;
    }
    let known = |c: &str| existing_cidrs.iter().any(|e| e == c);
    let Some((network, bits)) = names::parse_cidr(cidr) else {
        if !known(cidr) {
            errs.push(Cause::invalid(&cp, &Value::from(cidr), names::CIDR_MSG));
        }
        return;
    };
    for (i, except) in block.get_arr("except").iter().enumerate() {
        let except = except.as_str().unwrap_or("");
        let xp = path.child("except").index(i);
        let Some((inner, inner_bits)) = names::parse_cidr(except) else {
            if !known(except) {
                errs.push(Cause::invalid(&xp, &Value::from(except), names::CIDR_MSG));
            }
            continue;
        };
        if !(contains(network, bits, inner) && bits < inner_bits) {
            errs.push(Cause::invalid(&xp, &Value::from(except), "must be a strict subset of `cidr`"));
        }
    }
}

/// Whether `ip` is inside `network/bits` (never across address families).
fn contains(network: std::net::IpAddr, bits: u8, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (network, ip) {
        (V4(n), V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (V6(n), V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(f: fn(&Value, Option<&Value>, &mut Errs), obj: &Value, old: Option<&Value>) -> Vec<String> {
        let mut e = Vec::new();
        f(obj, old, &mut e);
        e.iter().map(Cause::line).collect()
    }

    fn ingress(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn service_path(path: &str, path_type: &str, port: Value) -> Value {
        json!({"path": path, "pathType": path_type, "backend": {"service": {"name": "web", "port": port}}})
    }

    #[test]
    fn an_ingress_needs_rules_or_a_default_backend() {
        assert_eq!(
            lines(validate_ingress, &ingress(json!({})), None),
            ["spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"]
        );
        let only_default = ingress(json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}));
        assert!(lines(validate_ingress, &only_default, None).is_empty());
    }

    #[test]
    fn backends_name_exactly_one_target_and_one_port() {
        let both = ingress(json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http", "number": 80}}, "resource": {"kind": "Bucket", "name": "b"}}}));
        assert_eq!(lines(validate_ingress, &both, None), ["spec.defaultBackend: Invalid value: \"\": cannot set both resource and service backends"]);
        let neither = ingress(json!({"defaultBackend": {}}));
        assert_eq!(lines(validate_ingress, &neither, None), ["spec.defaultBackend: Invalid value: \"\": resource or service backend is required"]);
        let two_ports = ingress(json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "http", "number": 80}}}}));
        assert_eq!(lines(validate_ingress, &two_ports, None), ["spec.defaultBackend: Invalid value: \"\": cannot set both port name & port number"]);
        let no_port = ingress(json!({"defaultBackend": {"service": {"name": "web"}}}));
        assert_eq!(lines(validate_ingress, &no_port, None), ["spec.defaultBackend: Required value: port name or number is required"]);
        let bad = ingress(json!({"rules": [{"http": {"paths": [service_path("/", "Prefix", json!({"number": 70000}))]}}]}));
        assert_eq!(
            lines(validate_ingress, &bad, None),
            ["spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"]
        );
        let resource = ingress(json!({"defaultBackend": {"resource": {"apiGroup": "example.com", "kind": "Bucket", "name": "a/b"}}}));
        assert_eq!(lines(validate_ingress, &resource, None), ["spec.defaultBackend.resource.name: Invalid value: \"a/b\": may not contain '/'"]);
    }

    #[test]
    fn service_backends_are_named_like_services() {
        let e = lines(validate_ingress, &ingress(json!({"defaultBackend": {"service": {"name": "1web", "port": {"name": "http"}}}})), None);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec.defaultBackend.service.name: Invalid value: \"1web\": a DNS-1035 label"), "{e:?}");
        let e = lines(validate_ingress, &ingress(json!({"defaultBackend": {"service": {"port": {"name": "http"}}}})), None);
        assert_eq!(e, ["spec.defaultBackend.service.name: Required value"]);
    }

    #[test]
    fn paths_need_a_supported_type_and_an_absolute_path() {
        let spec = json!({"rules": [{"host": "example.com", "http": {"paths": [
            {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            service_path("api", "Prefix", json!({"number": 80})),
            service_path("/a//b/..", "Exact", json!({"number": 80})),
            service_path("anything", "ImplementationSpecific", json!({"number": 80})),
            service_path("", "ImplementationSpecific", json!({"number": 80})),
            service_path("/", "Regex", json!({"number": 80})),
        ]}}]});
        let p = "spec.rules[0].http.paths";
        assert_eq!(
            lines(validate_ingress, &ingress(spec), None),
            [
                format!("{p}[0].pathType: Required value: pathType must be specified"),
                format!("{p}[1].path: Invalid value: \"api\": must be an absolute path"),
                format!("{p}[2].path: Invalid value: \"/a//b/..\": must not contain '//'"),
                format!("{p}[2].path: Invalid value: \"/a//b/..\": cannot end with '/..'"),
                format!("{p}[3].path: Invalid value: \"anything\": must be an absolute path"),
                format!("{p}[5].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
            ]
        );
        let empty = ingress(json!({"rules": [{"http": {"paths": []}}]}));
        assert_eq!(lines(validate_ingress, &empty, None), ["spec.rules[0].http.paths: Required value"]);
    }

    #[test]
    fn hosts_are_dns_names_with_an_optional_wildcard_but_never_ips() {
        let rule = |host: &str| json!({"host": host, "http": {"paths": [service_path("/", "Prefix", json!({"number": 80}))]}});
        let ok = ingress(json!({"rules": [rule("example.com"), rule("*.example.com"), {"host": "bare.example.com"}]}));
        assert!(lines(validate_ingress, &ok, None).is_empty());
        let e = lines(validate_ingress, &ingress(json!({"rules": [rule("10.0.0.1"), rule("*.*.example.com"), rule("Example.com")]})), None);
        assert_eq!(e[0], "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address");
        assert!(e[1].starts_with("spec.rules[1].host: Invalid value: \"*.*.example.com\": a wildcard DNS-1123 subdomain"), "{e:?}");
        assert!(e[2].starts_with("spec.rules[2].host: Invalid value: \"Example.com\": a lowercase RFC 1123 subdomain"), "{e:?}");
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn tls_hosts_and_secrets_are_checked() {
        let spec = json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}, "tls": [{"hosts": ["*.example.com", "Bad"], "secretName": "web_tls"}, {}]});
        let e = lines(validate_ingress, &ingress(spec), None);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("spec.tls[0].hosts[1]: Invalid value: \"Bad\""));
        assert!(e[1].starts_with("spec.tls[0].secretName: Invalid value: \"web_tls\""));
    }

    #[test]
    fn class_names_are_subdomains_and_agree_with_the_legacy_annotation_on_create() {
        let mut ing = ingress(json!({"ingressClassName": "nginx", "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}));
        ing["metadata"]["annotations"] = json!({INGRESS_CLASS_ANNOTATION: "traefik"});
        assert_eq!(
            lines(validate_ingress, &ing, None),
            ["annotations.kubernetes.io/ingress.class: Invalid value: \"traefik\": must match `ingressClassName` when both are specified"]
        );
        assert!(lines(validate_ingress, &ing, Some(&ing)).is_empty(), "only creates compare them");
        ing["spec"]["ingressClassName"] = json!("Nginx");
        ing["metadata"]["annotations"] = json!({});
        assert!(lines(validate_ingress, &ing, None)[0].starts_with("spec.ingressClassName: Invalid value: \"Nginx\""));
    }

    #[test]
    fn updates_keep_what_the_stored_ingress_already_had() {
        let old = ingress(json!({"rules": [{"host": "*.example.com", "http": {"paths": [service_path("/", "Regex", json!({"number": 80}))]}}], "tls": [{"secretName": "web_tls"}]}));
        assert_eq!(lines(validate_ingress, &old, None).len(), 2);
        assert!(lines(validate_ingress, &old, Some(&old)).is_empty());
    }

    #[test]
    fn load_balancer_status_holds_ips_and_dns_names() {
        let old = ingress(json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}));
        let mut new = old.clone();
        new["status"] = json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.300"}, {"hostname": "10.0.0.1"}, {"ip": "192.168.1.10", "hostname": "lb.example.com"}]}});
        assert_eq!(
            lines(validate_ingress, &new, Some(&old)),
            [
                "status.loadBalancer.ingress[0].ip: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "status.loadBalancer.ingress[1].hostname: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            ]
        );
    }

    fn class(spec: Value) -> Value {
        json!({"metadata": {"name": "skiff"}, "spec": spec})
    }

    #[test]
    fn ingress_classes_name_a_domain_prefixed_controller_that_never_changes() {
        assert_eq!(lines(validate_ingress_class, &class(json!({})), None), ["spec.controller: Required value"]);
        assert_eq!(
            lines(validate_ingress_class, &class(json!({"controller": "nginx"})), None),
            ["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
        );
        let long = format!("example.com/{}", "a".repeat(250));
        assert_eq!(lines(validate_ingress_class, &class(json!({"controller": long})), None), ["spec.controller: Too long: may not be more than 250 bytes"]);
        let old = class(json!({"controller": "skiff.io/gateway"}));
        assert!(lines(validate_ingress_class, &old, None).is_empty());
        assert_eq!(
            lines(validate_ingress_class, &class(json!({"controller": "k8s.io/ingress-nginx"})), Some(&old)),
            ["spec.controller: Invalid value: \"k8s.io/ingress-nginx\": field is immutable"]
        );
    }

    #[test]
    fn ingress_class_parameters_follow_their_scope() {
        let params = |p: Value| class(json!({"controller": "skiff.io/gateway", "parameters": p}));
        assert!(lines(validate_ingress_class, &params(json!({"kind": "Config", "name": "c", "scope": "Cluster"})), None).is_empty());
        assert_eq!(
            lines(validate_ingress_class, &params(json!({"kind": "Config", "name": "c", "scope": "Namespace"})), None),
            ["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
        );
        assert_eq!(
            lines(validate_ingress_class, &params(json!({"kind": "Config", "name": "c", "scope": "Cluster", "namespace": "x"})), None),
            ["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
        );
        assert_eq!(
            lines(validate_ingress_class, &params(json!({"scope": "Global"})), None),
            [
                "spec.parameters.kind: Required value",
                "spec.parameters.name: Required value",
                "spec.parameters.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespace\"",
            ]
        );
    }

    fn policy(spec: Value) -> Value {
        json!({"metadata": {"name": "deny", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn policy_types_are_ingress_or_egress_and_at_most_two() {
        let e = lines(validate_network_policy, &policy(json!({"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]})), None);
        assert_eq!(e, ["spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""]);
        let e = lines(validate_network_policy, &policy(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress", "Ingress"]})), None);
        assert_eq!(e, ["spec.policyTypes: Invalid value: []networking.PolicyType{\"Ingress\", \"Egress\", \"Ingress\"}: may not specify more than two policyTypes"]);
    }

    #[test]
    fn policy_ports_are_numbers_ranges_or_names() {
        let ports = json!([
            {"protocol": "TCP", "port": 80},
            {"protocol": "UDP", "port": 30000, "endPort": 32767},
            {"protocol": "SCTP", "port": "metrics"},
            {"protocol": "ICMP", "port": 0},
            {"port": 2000, "endPort": 1000},
            {"port": "http", "endPort": 90},
            {"endPort": 90},
        ]);
        let e = lines(validate_network_policy, &policy(json!({"podSelector": {}, "ingress": [{"ports": ports}]})), None);
        let p = "spec.ingress[0].ports";
        assert_eq!(
            e,
            [
                format!("{p}[3].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\""),
                format!("{p}[3].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
                format!("{p}[4].endPort: Invalid value: 1000: must be greater than or equal to `port`"),
                format!("{p}[5].endPort: Invalid value: 90: may not be specified when `port` is non-numeric"),
                format!("{p}[6].endPort: Invalid value: 90: may not be specified when `port` is not specified"),
            ]
        );
    }

    #[test]
    fn peers_are_selectors_or_an_ip_block_alone() {
        let peers = json!([
            {"podSelector": {"matchLabels": {"app": "web"}}, "namespaceSelector": {}},
            {},
            {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
        ]);
        let e = lines(validate_network_policy, &policy(json!({"podSelector": {}, "egress": [{"to": peers}]})), None);
        let p = "spec.egress[0].to";
        assert_eq!(
            e,
            [
                format!("{p}[1]: Required value: must specify a peer"),
                format!("{p}[2]: Forbidden: may not specify both ipBlock and another peer"),
                format!("{p}[3].podSelector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"),
            ]
        );
    }

    #[test]
    fn ip_blocks_hold_a_cidr_and_exceptions_strictly_inside_it() {
        let block = |b: Value| policy(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": b}]}]}));
        assert!(lines(validate_network_policy, &block(json!({"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.4/32"]})), None).is_empty());
        let p = "spec.ingress[0].from[0].ipBlock";
        assert_eq!(lines(validate_network_policy, &block(json!({})), None), [format!("{p}.cidr: Required value")]);
        assert_eq!(
            lines(validate_network_policy, &block(json!({"cidr": "10.0.0.0/33"})), None),
            [format!("{p}.cidr: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
        );
        assert_eq!(
            lines(validate_network_policy, &block(json!({"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8", "192.168.0.0/16", "fd00::/64", "nope"]})), None),
            [
                format!("{p}.except[0]: Invalid value: \"10.0.0.0/8\": must be a strict subset of `cidr`"),
                format!("{p}.except[1]: Invalid value: \"192.168.0.0/16\": must be a strict subset of `cidr`"),
                format!("{p}.except[2]: Invalid value: \"fd00::/64\": must be a strict subset of `cidr`"),
                format!("{p}.except[3]: Invalid value: \"nope\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
            ]
        );
    }

    #[test]
    fn a_policy_update_may_keep_cidrs_it_already_had() {
        let old = policy(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8x"}}]}]}));
        assert_eq!(lines(validate_network_policy, &old, None).len(), 1);
        let mut new = old.clone();
        new["spec"]["egress"] = json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8x"}}]}]);
        assert!(lines(validate_network_policy, &new, Some(&old)).is_empty());
    }

    #[test]
    fn the_pod_selector_is_a_valid_label_selector() {
        let e = lines(validate_network_policy, &policy(json!({"podSelector": {"matchLabels": {"app": "-web"}}})), None);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec.podSelector.matchLabels: Invalid value: \"-web\""), "{e:?}");
    }
}
