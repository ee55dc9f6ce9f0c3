//! The other core/v1 kinds: Service, Endpoints, ConfigMap, Secret, ServiceAccount,
//! Namespace, Node, PersistentVolume(Claim), ResourceQuota, LimitRange and Event.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use serde_json::Value;

use super::field::{
    diff, duplicate_go, go_int_or_string, go_string_slice, immutable, invalid_go, not_supported_go, required_detail, semantic_eq, Errs,
    Obj, Path, IMMUTABLE, NULL,
};
use super::meta::{self, label_key};
use super::names::{self, NameRule};
use super::pod::{self, dns_label, ip, port_num_or_name, protocol, qualified, resource_name, resource_quantity, subdomain};
use super::quantity::Quantity;
use crate::Cause;

/// Upstream's `MaxSecretSize`, which also bounds ConfigMaps.
pub(crate) const MAX_SECRET_SIZE: usize = 1024 * 1024;

fn metadata(obj: &Value, old: Option<&Value>, namespaced: bool, rule: NameRule, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
    }
    meta::object_meta(obj, namespaced, rule, errs);
}

// === Service ===

fn is_headless(spec: &Value) -> bool {
    let ips = spec.get_arr("clusterIPs");
    ips.len() == 1 && ips[0].as_str() == Some("None")
}

fn externally_accessible(spec: &Value) -> bool {
    match spec.str_or_empty("type") {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !spec.get_arr("externalIPs").is_empty(),
        _ => false,
    }
}

fn needs_health_check(spec: &Value) -> bool {
    spec.str_or_empty("type") == "LoadBalancer" && spec.str_or_empty("externalTrafficPolicy") == "Local"
}

/// `ValidateService` and `ValidateServiceUpdate`.
pub(crate) fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let sp = Path::new("spec");
    let normalized = old.map(|o| normalize_cluster_ips(obj.get("spec").unwrap_or(&NULL), o.get("spec").unwrap_or(&NULL)));
    let spec = normalized.as_ref().unwrap_or_else(|| obj.get("spec").unwrap_or(&NULL));
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
        service_update(spec, old.get("spec").unwrap_or(&NULL), errs);
    }
    meta::object_meta(obj, true, NameRule::Dns1035, errs);
    let typ = spec.str_or_empty("type");
    let ports = spec.get_arr("ports");
    if ports.is_empty() && !is_headless(spec) && typ != "ExternalName" {
        errs.push(Cause::required(&sp.child("ports")));
    }
    match typ {
        "LoadBalancer" | "NodePort" if is_headless(spec) => {
            errs.push(Cause::invalid(
                &sp.child("clusterIPs").index(0),
                &Value::from("None"),
                format!("may not be set to 'None' for {typ} services"),
            ));
        }
        "ExternalName" => {
            for key in ["clusterIPs", "ipFamilies"] {
                if !spec.get_arr(key).is_empty() {
                    errs.push(Cause::forbidden(&sp.child(key), "may not be set for ExternalName services"));
                }
            }
            if spec.has("ipFamilyPolicy") {
                errs.push(Cause::forbidden(&sp.child("ipFamilyPolicy"), "may not be set for ExternalName services"));
            }
            let cname = spec.str_or_empty("externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(Cause::required(&sp.child("externalName")));
            } else {
                subdomain(cname, &sp.child("externalName"), errs);
            }
        }
        _ => {}
    }
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = sp.child("ports").index(i);
        let name = port.str_or_empty("name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(Cause::required(&p.child("name")));
        } else if !name.is_empty() {
            dns_label(name, &p.child("name"), errs);
            if !port_names.insert(name) {
                errs.push(Cause::duplicate(&p.child("name"), &Value::from(name)));
            }
        }
        let n = port.get_i64("port").unwrap_or(0);
        for msg in names::port_num(n) {
            errs.push(Cause::invalid(&p.child("port"), &Value::from(n), msg));
        }
        protocol(port, &p, errs);
        port_num_or_name(port.get("targetPort"), &p.child("targetPort"), errs);
        if let Some(ap) = port.get_str("appProtocol") {
            qualified(ap, &p.child("appProtocol"), errs);
        }
    }
    meta::labels(spec.get("selector"), &sp.child("selector"), errs);
    match spec.str_or_empty("sessionAffinity") {
        "" => errs.push(Cause::required(&sp.child("sessionAffinity"))),
        "ClientIP" => {
            let cp = sp.child("sessionAffinityConfig");
            let when = "when session affinity type is ClientIP";
            match spec.get("sessionAffinityConfig").filter(|v| !v.is_null()) {
                None => errs.push(required_detail(&cp, when)),
                Some(c) => match c.get("clientIP").filter(|v| !v.is_null()) {
                    None => errs.push(required_detail(&cp.child("clientIP"), when)),
                    Some(ci) => match ci.get_i64("timeoutSeconds") {
                        None => errs.push(required_detail(&cp.child("clientIP").child("timeoutSeconds"), when)),
                        Some(t) if !(1..=86400).contains(&t) => errs.push(Cause::invalid(
                            &cp.child("clientIP").child("timeoutSeconds"),
                            &Value::from(t),
                            "must be greater than 0 and less than 86400",
                        )),
                        Some(_) => {}
                    },
                },
            }
        }
        "None" => {
            if spec.has("sessionAffinityConfig") {
                errs.push(Cause::forbidden(&sp.child("sessionAffinityConfig"), "must not be set when session affinity is None"));
            }
        }
        other => errs.push(Cause::not_supported(&sp.child("sessionAffinity"), &Value::from(other), &["ClientIP", "None"])),
    }
    cluster_ips(spec, &sp, errs);
    for (i, eip) in spec.get_arr("externalIPs").iter().enumerate() {
        let eip = eip.as_str().unwrap_or("");
        let p = sp.child("externalIPs").index(i);
        if names::parse_ip(eip).is_none() {
            errs.push(Cause::invalid(&p, &Value::from(eip), names::IP_MSG));
        } else {
            non_special_ip(eip, &p, true, errs);
        }
    }
    match typ {
        "" => errs.push(Cause::required(&sp.child("type"))),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errs.push(Cause::not_supported(
            &sp.child("type"),
            &Value::from(other),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if typ == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if port.get_i64("nodePort").unwrap_or(0) != 0 {
                errs.push(Cause::forbidden(&sp.child("ports").index(i).child("nodePort"), "may not be used when `type` is 'ClusterIP'"));
            }
        }
    }
    let mut node_ports = HashSet::new();
    let mut port_keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let proto = port.str_or_empty("protocol");
        let np = port.get_i64("nodePort").unwrap_or(0);
        if np != 0 && !node_ports.insert((proto, np)) {
            errs.push(Cause::duplicate(&sp.child("ports").index(i).child("nodePort"), &Value::from(np)));
        }
        let n = port.get_i64("port").unwrap_or(0);
        if !port_keys.insert((proto, n)) {
            let rendered = format!(
                "core.ServicePort{{Name:\"\", Protocol:{proto:?}, AppProtocol:(*string)(nil), Port:{n}, TargetPort:{}, NodePort:0}}",
                go_int_or_string(None)
            );
            errs.push(duplicate_go(&sp.child("ports").index(i), &rendered));
        }
    }
    let ranges = spec.get_arr("loadBalancerSourceRanges");
    if !ranges.is_empty() {
        let p = sp.child("LoadBalancerSourceRanges");
        if typ != "LoadBalancer" {
            errs.push(Cause::forbidden(&p, "may only be used when `type` is 'LoadBalancer'"));
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.as_str().unwrap_or("").trim();
            if !names::is_cidr(r) {
                errs.push(Cause::invalid(&p.index(i), &Value::from(r), names::CIDR_MSG));
            }
        }
    }
    if spec.has("allocateLoadBalancerNodePorts") && typ != "LoadBalancer" {
        errs.push(Cause::forbidden(&sp.child("allocateLoadBalancerNodePorts"), "may only be used when `type` is 'LoadBalancer'"));
    }
    if typ == "LoadBalancer" && !spec.has("allocateLoadBalancerNodePorts") {
        errs.push(Cause::required(&Path::new("allocateLoadBalancerNodePorts")));
    }
    if let Some(class) = spec.get_str("loadBalancerClass") {
        if typ == "LoadBalancer" {
            qualified(class, &sp.child("loadBalancerClass"), errs);
        } else {
            errs.push(Cause::forbidden(&sp.child("loadBalancerClass"), "may only be used when `type` is 'LoadBalancer'"));
        }
    }
    let etp = spec.str_or_empty("externalTrafficPolicy");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(Cause::invalid(
                &sp.child("externalTrafficPolicy"),
                &Value::from(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(Cause::required(&sp.child("externalTrafficPolicy")));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(Cause::not_supported(&sp.child("externalTrafficPolicy"), &Value::from(etp), &["Cluster", "Local"]));
    }
    // The health check port is allocated by the server after validation, so only a
    // port that should not be there is an error here.
    let hc = spec.get_i64("healthCheckNodePort").unwrap_or(0);
    if !needs_health_check(spec) {
        if hc != 0 {
            errs.push(Cause::invalid(
                &sp.child("healthCheckNodePort"),
                &Value::from(hc),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        for msg in names::port_num(hc) {
            errs.push(Cause::invalid(&sp.child("healthCheckNodePort"), &Value::from(hc), msg));
        }
    }
    match spec.get_str("internalTrafficPolicy") {
        None => {
            if matches!(typ, "NodePort" | "LoadBalancer" | "ClusterIP") {
                errs.push(Cause::required(&sp.child("internalTrafficPolicy")));
            }
        }
        Some("Cluster" | "Local") => {}
        Some(other) => errs.push(Cause::not_supported(&sp.child("internalTrafficPolicy"), &Value::from(other), &["Cluster", "Local"])),
    }
    if let Some(td) = spec.get_str("trafficDistribution") {
        if td != "PreferClose" {
            errs.push(Cause::not_supported(&sp.child("trafficDistribution"), &Value::from(td), &["PreferClose"]));
        }
    }
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn cluster_ips(spec: &Value, sp: &Path, errs: &mut Errs) {
    if spec.str_or_empty("type") == "ExternalName" {
        return;
    }
    let cp = sp.child("clusterIPs");
    let ips = spec.get_arr("clusterIPs");
    let shown = go_string_slice(spec.get("clusterIPs"));
    let cluster_ip = spec.str_or_empty("clusterIP");
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(Cause::required(&cp));
        } else if ips[0].as_str() != Some(cluster_ip) {
            errs.push(invalid_go(&cp, &shown, "first value must match `clusterIP`"));
        }
    } else if !ips.is_empty() {
        errs.push(invalid_go(&cp, &shown, "must be empty when `clusterIP` is not specified"));
    }
    let mut seen = HashSet::new();
    for (i, fam) in spec.get_arr("ipFamilies").iter().enumerate() {
        let fam = fam.as_str().unwrap_or("");
        let p = sp.child("ipFamilies").index(i);
        if !matches!(fam, "IPv4" | "IPv6") {
            errs.push(Cause::not_supported(&p, &Value::from(fam), &["IPv4", "IPv6"]));
        }
        if !seen.insert(fam) {
            errs.push(Cause::duplicate(&p, &Value::from(fam)));
        }
    }
    if let Some(policy) = spec.get_str("ipFamilyPolicy") {
        if !matches!(policy, "PreferDualStack" | "RequireDualStack" | "SingleStack") {
            errs.push(Cause::not_supported(
                &sp.child("ipFamilyPolicy"),
                &Value::from(policy),
                &["PreferDualStack", "RequireDualStack", "SingleStack"],
            ));
        }
    }
    let mut bad = false;
    for (i, v) in ips.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        if i == 0 && v == "None" {
            if ips.len() > 1 {
                bad = true;
                errs.push(invalid_go(&cp, &shown, "'None' must be the first and only value"));
            }
            continue;
        }
        if names::parse_ip(v).is_none() {
            bad = true;
            errs.push(Cause::invalid(&cp.index(i), &Value::from(v), names::IP_MSG));
        }
    }
    if ips.len() > 2 {
        errs.push(invalid_go(&cp, &shown, "may only hold up to 2 values"));
    }
    if bad {
        return;
    }
    let parsed: Vec<std::net::IpAddr> = ips.iter().filter_map(|v| v.as_str()).filter_map(names::parse_ip).collect();
    if ips.len() > 1 && (parsed.len() != 2 || parsed[0].is_ipv4() == parsed[1].is_ipv4()) {
        errs.push(invalid_go(&cp, &shown, "may specify no more than one IP for each IP family"));
    }
    if !is_headless(spec) {
        let fams = spec.get_arr("ipFamilies");
        for (i, ip) in parsed.iter().enumerate() {
            match fams.get(i).and_then(Value::as_str) {
                Some("IPv4") if ip.is_ipv6() => errs.push(Cause::invalid(
                    &cp.index(i),
                    &Value::from(ip.to_string()),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                )),
                Some("IPv6") if ip.is_ipv4() => errs.push(Cause::invalid(
                    &cp.index(i),
                    &Value::from(ip.to_string()),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                )),
                _ => {}
            }
        }
    }
}

/// `normalizeClusterIPs` for updates: a changed `clusterIP` with unchanged
/// `clusterIPs` means the user meant to change the primary IP, so the rules judge it
/// as such ("may not change once set") instead of as a mismatch of the two fields.
fn normalize_cluster_ips(new: &Value, old: &Value) -> Value {
    let mut spec = new.clone();
    let (ip, old_ip) = (new.str_or_empty("clusterIP"), old.str_or_empty("clusterIP"));
    let same_ips = new.get_arr("clusterIPs") == old.get_arr("clusterIPs");
    if ip != old_ip && !ip.is_empty() && same_ips {
        spec["clusterIPs"] = serde_json::json!([ip]);
    }
    spec
}

/// The update rules: allocated cluster IPs stay, the health check port stays, and the
/// load balancer class may not change.
fn service_update(new: &Value, old: &Value, errs: &mut Errs) {
    let sp = Path::new("spec");
    let external_name = |s: &Value| s.str_or_empty("type") == "ExternalName";
    // A spec without any cluster IP left them out (as `kubectl replace` does); the
    // server carries the allocated ones over, so there is nothing to judge.
    let omitted = new.str_or_empty("clusterIP").is_empty() && new.get_arr("clusterIPs").is_empty();
    let skip = external_name(new) || external_name(old) || omitted || (is_headless(new) && is_headless(old));
    if !skip {
        let (n, o) = (new.get_arr("clusterIPs"), old.get_arr("clusterIPs"));
        let shown = go_string_slice(new.get("clusterIPs"));
        let cp = sp.child("clusterIPs");
        if n.len() == o.len() {
            for (i, ip) in o.iter().enumerate() {
                if n[i] != *ip {
                    errs.push(invalid_go(&cp.index(i), &shown, "may not change once set"));
                }
            }
        } else if o.len() > n.len() {
            if n.is_empty() {
                errs.push(invalid_go(&cp.index(0), &shown, "primary clusterIP can not be unset"));
            } else if n[0] != o[0] {
                errs.push(invalid_go(&cp.index(0), &shown, "may not change once set"));
            }
            if n.len() == 1 && new.str_or_empty("ipFamilyPolicy") != "SingleStack" {
                errs.push(Cause::invalid(
                    &sp.child("ipFamilyPolicy"),
                    new.get("ipFamilyPolicy").unwrap_or(&NULL),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !o.is_empty() && n[0] != o[0] {
            errs.push(invalid_go(&cp.index(0), &shown, "may not change once set"));
        }
    }
    if needs_health_check(new) && needs_health_check(old) && new.get("healthCheckNodePort") != old.get("healthCheckNodePort") {
        errs.push(Cause::forbidden(&sp.child("healthCheckNodePort"), IMMUTABLE));
    }
    let lb = |s: &Value| s.str_or_empty("type") == "LoadBalancer";
    if lb(new) && lb(old) && new.get("loadBalancerClass") != old.get("loadBalancerClass") {
        errs.push(Cause::invalid(&sp.child("loadBalancerClass"), new.get("loadBalancerClass").unwrap_or(&NULL), "may not change once set"));
    }
}

/// `ValidateNonSpecialIP`. Endpoints pass `reject_loopback = false`: a single-node
/// cluster advertises 127.0.0.1 in the `kubernetes` Endpoints.
pub(crate) fn non_special_ip(addr: &str, path: &Path, reject_loopback: bool, errs: &mut Errs) {
    let Some(ip) = names::parse_ip(addr) else {
        errs.push(Cause::invalid(path, &Value::from(addr), "must be a valid IP address"));
        return;
    };
    if ip.is_unspecified() {
        errs.push(Cause::invalid(path, &Value::from(addr), format!("may not be unspecified ({addr})")));
    }
    if reject_loopback && ip.is_loopback() {
        errs.push(Cause::invalid(path, &Value::from(addr), "may not be in the loopback range (127.0.0.0/8, ::1/128)"));
    }
    let (link_local_unicast, link_local_multicast) = match ip {
        std::net::IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        std::net::IpAddr::V6(v6) => ((v6.segments()[0] & 0xffc0) == 0xfe80, (v6.segments()[0] & 0xff0f) == 0xff02),
    };
    if link_local_unicast {
        errs.push(Cause::invalid(path, &Value::from(addr), "may not be in the link-local range (169.254.0.0/16, fe80::/10)"));
    }
    if link_local_multicast {
        errs.push(Cause::invalid(path, &Value::from(addr), "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"));
    }
}

// === Endpoints ===

pub(crate) fn validate_endpoints(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, true, NameRule::Subdomain, errs);
    let path = Path::new("subsets");
    for (i, ss) in obj.get_arr("subsets").iter().enumerate() {
        let p = path.index(i);
        if ss.get_arr("addresses").is_empty() && ss.get_arr("notReadyAddresses").is_empty() {
            errs.push(required_detail(&p, "must specify `addresses` or `notReadyAddresses`"));
        }
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in ss.get_arr(key).iter().enumerate() {
                let ap = p.child(key).index(j);
                let addr = a.str_or_empty("ip");
                ip(addr, &ap.child("ip"), errs);
                let hostname = a.str_or_empty("hostname");
                if !hostname.is_empty() {
                    dns_label(hostname, &ap.child("hostname"), errs);
                }
                if let Some(node) = a.get_str("nodeName") {
                    subdomain(node, &ap.child("nodeName"), errs);
                }
                non_special_ip(addr, &ap.child("ip"), false, errs);
            }
        }
        let ports = ss.get_arr("ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = p.child("ports").index(j);
            let name = port.str_or_empty("name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(Cause::required(&pp.child("name")));
            } else if !name.is_empty() {
                dns_label(name, &pp.child("name"), errs);
            }
            let n = port.get_i64("port").unwrap_or(0);
            for msg in names::port_num(n) {
                errs.push(Cause::invalid(&pp.child("port"), &Value::from(n), msg));
            }
            protocol(port, &pp, errs);
            if let Some(ap) = port.get_str("appProtocol") {
                qualified(ap, &pp.child("appProtocol"), errs);
            }
        }
    }
}

// === ConfigMap and Secret ===

fn decoded_len(key: &str, v: &Value, path: &Path, errs: &mut Errs) -> usize {
    let s = v.as_str().unwrap_or("");
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(b) => b.len(),
        Err(e) => {
            let at = match e {
                base64::DecodeError::InvalidByte(i, _) | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                _ => s.len(),
            };
            errs.push(Cause::invalid(
                &path.key(key),
                &Value::from("<secret contents redacted>"),
                format!("illegal base64 data at input byte {at}"),
            ));
            0
        }
    }
}

fn decode(v: Option<&Value>) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(v?.as_str()?).ok()
}

fn immutable_data(obj: &Value, old: &Value, keys: &[&str], errs: &mut Errs) {
    if old.get_bool("immutable") != Some(true) {
        return;
    }
    if obj.get_bool("immutable") != Some(true) {
        errs.push(Cause::forbidden(&Path::new("immutable"), "field is immutable when `immutable` is set"));
    }
    for key in keys {
        if !semantic_eq(obj.get(*key).unwrap_or(&NULL), old.get(*key).unwrap_or(&NULL)) {
            errs.push(Cause::forbidden(&Path::new(key), "field is immutable when `immutable` is set"));
        }
    }
}

pub(crate) fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
        immutable_data(obj, old, &["data", "binaryData"], errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let data_path = Path::new("data");
    let binary_path = Path::new("binaryData");
    let binary = obj.get_obj("binaryData");
    let mut total = 0;
    for (k, v) in obj.get_obj("data").into_iter().flatten() {
        for msg in names::config_map_key(k) {
            errs.push(Cause::invalid(&data_path.key(k), &Value::from(k.as_str()), msg));
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(Cause::invalid(&data_path.key(k), &Value::from(k.as_str()), "duplicate of key present in binaryData"));
        }
        total += v.as_str().map(str::len).unwrap_or(0);
    }
    for (k, v) in binary.into_iter().flatten() {
        for msg in names::config_map_key(k) {
            errs.push(Cause::invalid(&binary_path.key(k), &Value::from(k.as_str()), msg));
        }
        total += decoded_len(k, v, &binary_path, errs);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(Cause::too_long(&Path::new(""), MAX_SECRET_SIZE));
    }
}

pub(crate) fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(old) = old {
        meta::object_meta_update(obj, old, errs);
        let (t, ot) = (obj.get("type").unwrap_or(&NULL), old.get("type").unwrap_or(&NULL));
        if t != ot {
            errs.push(immutable(&Path::new("type"), t));
        }
        immutable_data(obj, old, &["data"], errs);
    }
    meta::object_meta(obj, true, NameRule::Subdomain, errs);
    let dp = Path::new("data");
    let data = obj.get_obj("data");
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        for msg in names::config_map_key(k) {
            errs.push(Cause::invalid(&dp.key(k), &Value::from(k.as_str()), msg));
        }
        total += decoded_len(k, v, &dp, errs);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(Cause::too_long(&dp, MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    match obj.str_or_empty("type") {
        "kubernetes.io/service-account-token" => {
            let name = obj.pointer("/metadata/annotations/kubernetes.io~1service-account.name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errs.push(Cause::required(&Path::new("metadata").child("annotations").key("kubernetes.io/service-account.name")));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" { ".dockercfg" } else { ".dockerconfigjson" };
            if !has(key) {
                errs.push(Cause::required(&dp.key(key)));
            } else if let Some(bytes) = decode(data.and_then(|d| d.get(key))) {
                if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
                    let msg = if bytes.is_empty() { "unexpected end of JSON input".to_string() } else { e.to_string() };
                    errs.push(Cause::invalid(&dp.key(key), &Value::from("<secret contents redacted>"), msg));
                }
            }
        }
        // Username or password may be empty, but one of them must be there.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(Cause::required(&dp.key("username")));
            errs.push(Cause::required(&dp.key("password")));
        }
        "kubernetes.io/ssh-auth" if decode(data.and_then(|d| d.get("ssh-privatekey"))).is_none_or(|b| b.is_empty()) => {
            errs.push(Cause::required(&dp.key("ssh-privatekey")));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(Cause::required(&dp.key(key)));
                }
            }
        }
        _ => {}
    }
}

pub(crate) fn validate_service_account(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, true, NameRule::Subdomain, errs);
}

// === Namespace ===

pub(crate) fn validate_namespace(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, false, NameRule::Label, errs);
    let path = Path::new("spec").child("finalizers");
    for f in obj.pointer("/spec/finalizers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let f = f.as_str().unwrap_or("");
        meta::finalizer_name(f, &path, errs);
        if !f.contains('/') && f != "kubernetes" {
            errs.push(Cause::invalid(&path, &Value::from(f), "name is neither a standard finalizer name nor is it fully qualified"));
        }
    }
}

// === Node ===

pub(crate) fn validate_node(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, false, NameRule::Subdomain, errs);
    let spec = obj.get("spec").unwrap_or(&NULL);
    // Upstream reports taints under `metadata`, a quirk kept for fidelity.
    taints(spec.get_arr("taints"), &Path::new("metadata").child("taints"), errs);
    for key in ["capacity", "allocatable"] {
        for (k, q) in obj.pointer(&format!("/status/{key}")).and_then(Value::as_object).into_iter().flatten() {
            resource_quantity(k, q, &Path::new("status").child(key).child(k), errs);
        }
    }
    let cidrs = spec.get_arr("podCIDRs");
    let cp = Path::new("spec").child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        let c = c.as_str().unwrap_or("");
        if !names::is_cidr(c) {
            errs.push(Cause::invalid(&cp.index(i), &Value::from(c), names::CIDR_MSG));
        }
    }
    if cidrs.len() > 1 {
        let v4 = cidrs.iter().filter(|c| c.as_str().is_some_and(|c| !c.contains(':'))).count();
        if cidrs.len() > 2 || v4 != 1 {
            errs.push(invalid_go(&cp, &go_string_slice(spec.get("podCIDRs")), "may specify no more than one CIDR for each IP family"));
        }
        let mut seen = HashSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c.as_str().unwrap_or("")) {
                errs.push(Cause::duplicate(&cp.index(i), c));
            }
        }
    }
    let Some(old) = old else { return };
    let old_spec = old.get("spec").unwrap_or(&NULL);
    let mut seen = HashSet::new();
    for (i, a) in obj.pointer("/status/addresses").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let key = (a.str_or_empty("type"), a.str_or_empty("address"));
        if !seen.insert(key) {
            errs.push(duplicate_go(
                &Path::new("status").child("addresses").index(i),
                &format!("core.NodeAddress{{Type:{:?}, Address:{:?}}}", key.0, key.1),
            ));
        }
    }
    let old_cidrs = old_spec.get_arr("podCIDRs");
    if !old_cidrs.is_empty() && old_cidrs != cidrs {
        errs.push(Cause::forbidden(&cp, "node updates may not change podCIDR except from \"\" to valid"));
    }
    let old_provider = old_spec.str_or_empty("providerID");
    if !old_provider.is_empty() && old_provider != spec.str_or_empty("providerID") {
        errs.push(Cause::forbidden(
            &Path::new("spec").child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    if spec.get("externalID") != old_spec.get("externalID") {
        errs.push(Cause::forbidden(&Path::new("spec").child("externalID"), "may not be updated"));
    }
}

/// `validateNodeTaints`.
fn taints(list: &[Value], path: &Path, errs: &mut Errs) {
    let mut unique: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (i, t) in list.iter().enumerate() {
        let p = path.index(i);
        let key = t.str_or_empty("key");
        let value = t.str_or_empty("value");
        let effect = t.str_or_empty("effect");
        label_key(key, &p.child("key"), errs);
        let msgs = names::label_value(value);
        if !msgs.is_empty() {
            errs.push(Cause::invalid(&p.child("value"), &Value::from(value), msgs.join(";")));
        }
        if effect.is_empty() {
            errs.push(Cause::required(&p.child("effect")));
        } else if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            errs.push(Cause::not_supported(&p.child("effect"), &Value::from(effect), &["NoSchedule", "PreferNoSchedule", "NoExecute"]));
        }
        if !unique.entry(effect).or_default().insert(key) {
            let mut c = duplicate_go(&p, &format!("core.Taint{{Key:{key:?}, Value:{value:?}, Effect:{effect:?}, TimeAdded:<nil>}}"));
            c.message.push_str(": taints must be unique by key and effect pair");
            errs.push(c);
        }
    }
}

// === PersistentVolume and PersistentVolumeClaim ===

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn access_modes(modes: &[Value], path: &Path, errs: &mut Errs) {
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(Cause::not_supported(path, &Value::from(m), ACCESS_MODES));
        } else if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(Cause::forbidden(path, "may not use ReadWriteOncePod with other access modes"));
    }
}

fn volume_mode(spec: &Value, path: &Path, errs: &mut Errs) {
    if let Some(m) = spec.get_str("volumeMode") {
        if !matches!(m, "Block" | "Filesystem") {
            errs.push(Cause::not_supported(&path.child("volumeMode"), &Value::from(m), &["Block", "Filesystem"]));
        }
    }
}

fn storage_class(spec: &Value, path: &Path, errs: &mut Errs) {
    if let Some(c) = spec.get_str("storageClassName").filter(|c| !c.is_empty()) {
        subdomain(c, &path.child("storageClassName"), errs);
    }
}

pub(crate) fn validate_pv(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, false, NameRule::Subdomain, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    let modes = spec.get_arr("accessModes");
    if modes.is_empty() {
        errs.push(Cause::required(&sp.child("accessModes")));
    }
    access_modes(modes, &sp.child("accessModes"), errs);
    let cap = spec.get_obj("capacity");
    if cap.is_none_or(|c| c.is_empty()) {
        errs.push(Cause::required(&sp.child("capacity")));
    }
    if cap.is_none_or(|c| !c.contains_key("storage") || c.len() > 1) {
        let shown = spec.get("capacity").map(|c| format!("core.ResourceList{c}")).unwrap_or_else(|| "core.ResourceList(nil)".into());
        errs.push(not_supported_go(&sp.child("capacity"), &shown, &["storage"]));
    }
    for (k, q) in cap.into_iter().flatten() {
        let p = sp.child("capacity").key(k);
        if let Ok(parsed) = Quantity::from_json(q) {
            if parsed.is_negative() {
                errs.push(Cause::invalid(&p, &Value::from(parsed.value() as i64), "must be a valid resource quantity"));
            }
            if parsed <= Quantity::zero() {
                errs.push(Cause::invalid(&p, &Value::from(q.as_str().unwrap_or("0")), "must be greater than zero"));
            }
        } else {
            resource_quantity(k, q, &p, errs);
        }
    }
    if let Some(policy) = spec.get_str("persistentVolumeReclaimPolicy").filter(|p| !p.is_empty()) {
        if !matches!(policy, "Delete" | "Recycle" | "Retain") {
            errs.push(Cause::not_supported(
                &sp.child("persistentVolumeReclaimPolicy"),
                &Value::from(policy),
                &["Delete", "Recycle", "Retain"],
            ));
        }
    }
    let mut has_affinity = false;
    if let Some(na) = spec.get("nodeAffinity").filter(|v| !v.is_null()) {
        has_affinity = true;
        match na.get("required").filter(|v| !v.is_null()) {
            Some(req) => pod::node_selector(req, &sp.child("nodeAffinity").child("required"), errs),
            None => errs.push(required_detail(&sp.child("nodeAffinity").child("required"), "must specify required node constraints")),
        }
    }
    let mut found = 0;
    for key in PV_SOURCES {
        let Some(src) = spec.get(*key).filter(|v| !v.is_null()) else { continue };
        let p = sp.child(key);
        if found > 0 {
            errs.push(Cause::forbidden(&p, "may not specify more than 1 volume type"));
            continue;
        }
        found += 1;
        match *key {
            "hostPath" => pod::host_path(src, &p, errs),
            "nfs" => pod::nfs(src, &p, errs),
            "local" => {
                let lp = src.str_or_empty("path");
                if lp.is_empty() {
                    errs.push(Cause::required(&p.child("path")));
                } else if lp.split('/').any(|s| s == "..") {
                    errs.push(Cause::invalid(&p.child("path"), &Value::from(lp), "must not contain '..'"));
                }
                if !has_affinity {
                    errs.push(required_detail(&sp.child("nodeAffinity"), "Local volume requires node affinity"));
                }
            }
            "csi" => {
                pod::csi_driver(src.str_or_empty("driver"), &p.child("driver"), errs);
                if src.str_or_empty("volumeHandle").is_empty() {
                    errs.push(Cause::required(&p.child("volumeHandle")));
                }
            }
            _ => {}
        }
    }
    if found == 0 {
        errs.push(required_detail(&sp, "must specify a volume type"));
    }
    volume_mode(spec, &sp, errs);
    storage_class(spec, &sp, errs);
    let Some(old) = old else { return };
    let old_spec = old.get("spec").unwrap_or(&NULL);
    let source = |s: &Value| -> Value {
        let mut m = serde_json::Map::new();
        for key in PV_SOURCES {
            if let Some(v) = s.get(*key) {
                m.insert(key.to_string(), v.clone());
            }
        }
        Value::Object(m)
    };
    let (ns, os) = (source(spec), source(old_spec));
    if !semantic_eq(&ns, &os) {
        errs.push(Cause::forbidden(
            &sp.child("persistentvolumesource"),
            format!("spec.persistentvolumesource is immutable after creation\n{}", diff(&os, &ns)),
        ));
    }
    if spec.get("volumeMode") != old_spec.get("volumeMode") {
        errs.push(immutable(&Path::new("volumeMode"), spec.get("volumeMode").unwrap_or(&NULL)));
    }
    if old_spec.has("nodeAffinity") && !semantic_eq(spec.get("nodeAffinity").unwrap_or(&NULL), &old_spec["nodeAffinity"]) {
        errs.push(Cause::invalid(
            &Path::new("nodeAffinity"),
            spec.get("nodeAffinity").unwrap_or(&NULL),
            format!("{IMMUTABLE}, except for updating from beta label to GA"),
        ));
    }
}

/// `ValidatePersistentVolumeClaimSpec`, shared with claim templates.
pub(crate) fn pvc_spec(spec: &Value, path: &Path, errs: &mut Errs) {
    let modes = spec.get_arr("accessModes");
    if modes.is_empty() {
        errs.push(required_detail(&path.child("accessModes"), "at least 1 access mode is required"));
    }
    if let Some(sel) = spec.get("selector").filter(|v| !v.is_null()) {
        meta::label_selector(sel, &path.child("selector"), errs);
    }
    access_modes(modes, &path.child("accessModes"), errs);
    let storage_path = path.child("resources").key("storage");
    match spec.pointer("/resources/requests/storage") {
        None => errs.push(Cause::required(&storage_path)),
        Some(q) => match Quantity::from_json(q) {
            Ok(parsed) if parsed <= Quantity::zero() => {
                errs.push(Cause::invalid(&storage_path, &Value::from(q.as_str().unwrap_or("0")), "must be greater than zero"))
            }
            Ok(_) => {}
            Err(_) => {
                resource_quantity("storage", q, &storage_path, errs);
            }
        },
    }
    storage_class(spec, path, errs);
    volume_mode(spec, path, errs);
    for key in ["dataSource", "dataSourceRef"] {
        let Some(ds) = spec.get(key).filter(|v| !v.is_null()) else { continue };
        let p = path.child(key);
        if ds.str_or_empty("name").is_empty() {
            errs.push(Cause::required(&p.child("name")));
        }
        let kind = ds.str_or_empty("kind");
        if kind.is_empty() {
            errs.push(Cause::required(&p.child("kind")));
        }
        let group = ds.str_or_empty("apiGroup");
        if group.is_empty() && kind != "PersistentVolumeClaim" {
            errs.push(Cause::invalid(&p, &Value::from(kind), "must be 'PersistentVolumeClaim' when referencing the default apiGroup"));
        }
        if !group.is_empty() {
            subdomain(group, &p.child("apiGroup"), errs);
        }
    }
}

pub(crate) fn validate_pvc(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, true, NameRule::Subdomain, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    pvc_spec(spec, &sp, errs);
    let Some(old) = old else { return };
    let old_spec = old.get("spec").unwrap_or(&NULL);
    let mut new_clone = spec.clone();
    let mut old_clone = old_spec.clone();
    // The volume name is set once, by the binder.
    if old_spec.str_or_empty("volumeName").is_empty() {
        old_clone["volumeName"] = spec.get("volumeName").cloned().unwrap_or(Value::Null);
    }
    // A class may be set where none was.
    if !old_spec.has("storageClassName") && spec.has("storageClassName") {
        old_clone["storageClassName"] = spec["storageClassName"].clone();
    }
    let bound = obj.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if bound {
        if let Some(storage) = old_spec.pointer("/resources/requests/storage") {
            if let Some(req) = new_clone.pointer_mut("/resources/requests").and_then(Value::as_object_mut) {
                req.insert("storage".into(), storage.clone());
            }
        }
        old_clone["volumeAttributesClassName"] = spec.get("volumeAttributesClassName").cloned().unwrap_or(Value::Null);
    }
    if !semantic_eq(&new_clone, &old_clone) {
        errs.push(Cause::forbidden(
            &sp,
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                diff(&old_clone, &new_clone)
            ),
        ));
    }
    let size = |s: &Value| s.pointer("/resources/requests/storage").and_then(|q| Quantity::from_json(q).ok()).unwrap_or(Quantity::zero());
    let (new_size, old_size) = (size(spec), size(old_spec));
    let status_size = old.pointer("/status/capacity/storage").and_then(|q| Quantity::from_json(q).ok()).unwrap_or(Quantity::zero());
    if new_size < old_size && new_size <= status_size {
        errs.push(Cause::forbidden(
            &sp.child("resources").child("requests").child("storage"),
            "field can not be less than status.capacity",
        ));
    }
    if spec.get("volumeMode") != old_spec.get("volumeMode") {
        errs.push(immutable(&Path::new("volumeMode"), spec.get("volumeMode").unwrap_or(&NULL)));
    }
}

// === ResourceQuota ===

const STANDARD_QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];
const QUOTA_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];
const POD_COMPUTE: &[&str] = &["cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"];

fn is_standard_quota_resource(name: &str) -> bool {
    STANDARD_QUOTA_RESOURCES.contains(&name) || name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

fn scope_valid_for(scope: &str, resource: &str) -> bool {
    match scope {
        "Terminating" | "NotTerminating" | "NotBestEffort" | "PriorityClass" | "CrossNamespacePodAffinity" => {
            resource == "pods" || POD_COMPUTE.contains(&resource)
        }
        "BestEffort" => resource == "pods",
        "VolumeAttributesClass" => matches!(resource, "persistentvolumeclaims" | "requests.storage"),
        _ => true,
    }
}

fn quota_list(list: Option<&Value>, path: &Path, errs: &mut Errs) {
    for (k, q) in list.and_then(Value::as_object).into_iter().flatten() {
        let p = path.key(k);
        resource_name(k, &p, errs);
        if !k.contains('/') && !is_standard_quota_resource(k) {
            errs.push(Cause::invalid(&p, &Value::from(k.as_str()), "must be a standard resource for quota"));
        }
        resource_quantity(k, q, &p, errs);
    }
}

pub(crate) fn validate_resource_quota(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, true, NameRule::Subdomain, errs);
    let sp = Path::new("spec");
    let spec = obj.get("spec").unwrap_or(&NULL);
    quota_list(spec.get("hard"), &sp.child("hard"), errs);
    let hard: Vec<&String> = spec.get_obj("hard").map(|m| m.keys().collect()).unwrap_or_default();
    let scopes_shown = format!(
        "[]core.ResourceQuotaScope{{{}}}",
        spec.get_arr("scopes").iter().map(|s| format!("{:?}", s.as_str().unwrap_or(""))).collect::<Vec<_>>().join(", ")
    );
    let scope_path = sp.child("scopes");
    let mut scopes = HashSet::new();
    for s in spec.get_arr("scopes") {
        let s = s.as_str().unwrap_or("");
        if !QUOTA_SCOPES.contains(&s) {
            errs.push(invalid_go(&scope_path, &scopes_shown, "unsupported scope"));
        }
        for k in &hard {
            if is_standard_quota_resource(k) && !scope_valid_for(s, k) {
                errs.push(invalid_go(&scope_path, &scopes_shown, "unsupported scope applied to resource"));
            }
        }
        scopes.insert(s);
    }
    let conflicting = |set: &HashSet<&str>| {
        (set.contains("BestEffort") && set.contains("NotBestEffort")) || (set.contains("Terminating") && set.contains("NotTerminating"))
    };
    if conflicting(&scopes) {
        errs.push(invalid_go(&scope_path, &scopes_shown, "conflicting scopes"));
    }
    if let Some(sel) = spec.get("scopeSelector").filter(|v| !v.is_null()) {
        let p = sp.child("scopeSelector").child("matchExpressions");
        let mut names = HashSet::new();
        for req in sel.get_arr("matchExpressions") {
            let scope = req.str_or_empty("scopeName");
            let op = req.str_or_empty("operator");
            if !QUOTA_SCOPES.contains(&scope) {
                errs.push(Cause::invalid(&p.child("scopeName"), &Value::from(scope), "unsupported scope"));
            }
            if matches!(scope, "BestEffort" | "NotBestEffort" | "Terminating" | "NotTerminating" | "CrossNamespacePodAffinity")
                && op != "Exists"
            {
                errs.push(Cause::invalid(&p.child("operator"), &Value::from(op), "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"));
            }
            let values = req.get_arr("values");
            match op {
                "In" | "NotIn" if values.is_empty() => errs.push(required_detail(
                    &p.child("values"),
                    "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                )),
                "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(invalid_go(
                    &p.child("values"),
                    &go_string_slice(req.get("values")),
                    "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                _ => errs.push(Cause::invalid(&p.child("operator"), &Value::from(op), "not a valid selector operator")),
            }
            names.insert(scope);
        }
        if conflicting(&names) {
            errs.push(invalid_go(&p, &scopes_shown, "conflicting scopes"));
        }
    }
    let status = obj.get("status").unwrap_or(&NULL);
    quota_list(status.get("hard"), &Path::new("status").child("hard"), errs);
    quota_list(status.get("used"), &Path::new("status").child("used"), errs);
    if let Some(old) = old {
        let set = |v: &Value| -> HashSet<String> {
            v.pointer("/spec/scopes").and_then(Value::as_array).into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
        };
        if set(obj) != set(old) {
            errs.push(invalid_go(&scope_path, &scopes_shown, IMMUTABLE));
        }
    }
}

// === LimitRange ===

pub(crate) fn validate_limit_range(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    metadata(obj, old, true, NameRule::Subdomain, errs);
    let path = Path::new("spec").child("limits");
    let mut types = HashSet::new();
    for (i, limit) in obj.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let p = path.index(i);
        let typ = limit.str_or_empty("type");
        let before = errs.len();
        qualified(typ, &p.child("type"), errs);
        if errs.len() == before && !typ.contains('/') && !matches!(typ, "Pod" | "Container" | "PersistentVolumeClaim") {
            errs.push(Cause::invalid(&p.child("type"), &Value::from(typ), "must be a standard limit type or fully qualified"));
        }
        if !types.insert(typ) {
            errs.push(Cause::duplicate(&p.child("type"), &Value::from(typ)));
        }
        let mut lists: HashMap<&str, HashMap<&str, (Quantity, String)>> = HashMap::new();
        let mut keys: Vec<&str> = Vec::new();
        for field in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
            let Some(list) = limit.get_obj(field) else { continue };
            if typ == "Pod" && matches!(field, "default" | "defaultRequest") {
                if !list.is_empty() {
                    errs.push(Cause::forbidden(&p.child(field), "may not be specified when `type` is 'Pod'"));
                }
                continue;
            }
            for (k, q) in list {
                let kp = p.child(field).key(k);
                if matches!(typ, "Pod" | "Container") {
                    let before = errs.len();
                    resource_name(k, &kp, errs);
                    if errs.len() == before
                        && !k.contains('/')
                        && !(matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") || pod::is_hugepages(k))
                    {
                        errs.push(Cause::invalid(&kp, &Value::from(k.as_str()), "must be a standard resource for containers"));
                    }
                } else {
                    resource_name(k, &kp, errs);
                }
                if let Ok(parsed) = Quantity::from_json(q) {
                    lists.entry(field).or_default().insert(k, (parsed, q.as_str().map(String::from).unwrap_or_else(|| q.to_string())));
                } else {
                    resource_quantity(k, q, &kp, errs);
                }
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
        if typ == "PersistentVolumeClaim" {
            let has = |f: &str| limit.get_obj(f).is_some_and(|m| m.contains_key("storage"));
            if !has("min") && !has("max") {
                errs.push(required_detail(
                    &p.child("limits"),
                    "either minimum or maximum storage value is required, but neither was provided",
                ));
            }
        }
        for k in keys {
            let get = |f: &str| lists.get(f).and_then(|m| m.get(k));
            let (min, max, def, req, ratio) = (get("min"), get("max"), get("default"), get("defaultRequest"), get("maxLimitRequestRatio"));
            let s = |q: &(Quantity, String)| Value::from(q.1.as_str());
            if let (Some(min), Some(max)) = (min, max) {
                if min.0 > max.0 {
                    errs.push(Cause::invalid(
                        &p.child("min").key(k),
                        &s(min),
                        format!("min value {} is greater than max value {}", min.1, max.1),
                    ));
                }
            }
            if let (Some(req), Some(min)) = (req, min) {
                if min.0 > req.0 {
                    errs.push(Cause::invalid(
                        &p.child("defaultRequest").key(k),
                        &s(req),
                        format!("min value {} is greater than default request value {}", min.1, req.1),
                    ));
                }
            }
            if let (Some(req), Some(max)) = (req, max) {
                if req.0 > max.0 {
                    errs.push(Cause::invalid(
                        &p.child("defaultRequest").key(k),
                        &s(req),
                        format!("default request value {} is greater than max value {}", req.1, max.1),
                    ));
                }
            }
            if let (Some(req), Some(def)) = (req, def) {
                if req.0 > def.0 {
                    errs.push(Cause::invalid(
                        &p.child("defaultRequest").key(k),
                        &s(req),
                        format!("default request value {} is greater than default limit value {}", req.1, def.1),
                    ));
                }
            }
            if let (Some(def), Some(min)) = (def, min) {
                if min.0 > def.0 {
                    errs.push(Cause::invalid(
                        &p.child("default").key(k),
                        &s(min),
                        format!("min value {} is greater than default value {}", min.1, def.1),
                    ));
                }
            }
            if let (Some(def), Some(max)) = (def, max) {
                if def.0 > max.0 {
                    errs.push(Cause::invalid(
                        &p.child("default").key(k),
                        &s(max),
                        format!("default value {} is greater than max value {}", def.1, max.1),
                    ));
                }
            }
            if let Some(ratio) = ratio {
                if ratio.0 < Quantity::parse("1").expect("literal") {
                    errs.push(Cause::invalid(
                        &p.child("maxLimitRequestRatio").key(k),
                        &s(ratio),
                        format!("ratio {} is less than 1", ratio.1),
                    ));
                }
                if let (Some(min), Some(max)) = (min, max) {
                    let limit = max.0.as_f64() / min.0.as_f64();
                    if ratio.0.as_f64() > limit {
                        errs.push(Cause::invalid(
                            &p.child("maxLimitRequestRatio").key(k),
                            &s(ratio),
                            format!("ratio {} is greater than max/min = {limit:.6}", ratio.1),
                        ));
                    }
                }
            }
            if !pod::overcommit_allowed(k) {
                if let (Some(def), Some(req)) = (def, req) {
                    if def.0 != req.0 {
                        errs.push(Cause::invalid(
                            &p.child("defaultRequest").key(k),
                            &s(req),
                            format!("default value {} must equal to defaultRequest value {} in {k}", def.1, req.1),
                        ));
                    }
                }
            }
        }
    }
}

// === Event ===

const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// The fields of an Event under their core/v1 and events.k8s.io/v1 names.
struct EventFields<'a> {
    involved: &'a Value,
    event_time: bool,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    action: &'a str,
    reason: &'a str,
    message: &'a str,
    typ: &'a str,
}

fn event_fields(obj: &Value, events_group: bool) -> EventFields<'_> {
    let (involved, controller, message) =
        if events_group { ("regarding", "reportingController", "note") } else { ("involvedObject", "reportingComponent", "message") };
    EventFields {
        involved: obj.get(involved).unwrap_or(&NULL),
        event_time: obj.has("eventTime"),
        reporting_controller: obj.str_or_empty(controller),
        reporting_instance: obj.str_or_empty("reportingInstance"),
        action: obj.str_or_empty("action"),
        reason: obj.str_or_empty("reason"),
        message: obj.str_or_empty(message),
        typ: obj.str_or_empty("type"),
    }
}

/// `legacyValidateEvent` (every request version) and, for `events.k8s.io`, the strict
/// rules of `ValidateEventCreate`/`ValidateEventUpdate`. Paths use the core field
/// names, as upstream validates the internal type.
pub(crate) fn validate_event(obj: &Value, old: Option<&Value>, events_group: bool, errs: &mut Errs) {
    let ev = event_fields(obj, events_group);
    let namespace = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    if !events_group {
        // Legacy Events only get the generic registry's metadata checks.
        if let Some(old) = old {
            meta::object_meta_update(obj, old, errs);
        }
        meta::object_meta(obj, true, NameRule::PathSegment, errs);
    }
    let ns_path = Path::new("involvedObject").child("namespace");
    let involved_ns = ev.involved.str_or_empty("namespace");
    let controller_field = if events_group { "reportingController" } else { "reportingComponent" };
    if !ev.event_time {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errs.push(Cause::invalid(&ns_path, &Value::from(involved_ns), "does not match event.namespace"));
            }
        } else if namespace != involved_ns {
            errs.push(Cause::invalid(&ns_path, &Value::from(involved_ns), "does not match event.namespace"));
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(Cause::invalid(&ns_path, &Value::from(involved_ns), "does not match event.namespace"));
        }
        if ev.reporting_controller.is_empty() {
            errs.push(Cause::required(&Path::new(controller_field)));
        }
        qualified(ev.reporting_controller, &Path::new(controller_field), errs);
        let limited = [
            ("reportingInstance", ev.reporting_instance, REASON_LIMIT),
            ("action", ev.action, REASON_LIMIT),
            ("reason", ev.reason, REASON_LIMIT),
        ];
        for (field, value, limit) in limited {
            if value.is_empty() {
                errs.push(Cause::required(&Path::new(field)));
            }
            if value.len() > limit {
                errs.push(Cause::invalid(&Path::new(field), &Value::from(""), format!("can have at most {limit} characters")));
            }
        }
        if ev.message.len() > NOTE_LIMIT {
            errs.push(Cause::invalid(&Path::new("message"), &Value::from(""), format!("can have at most {NOTE_LIMIT} characters")));
        }
    }
    for msg in names::dns1123_subdomain(namespace) {
        errs.push(Cause::invalid(&Path::new("namespace"), &Value::from(namespace), msg));
    }
    if !events_group {
        return;
    }
    match old {
        None => {
            meta::object_meta(obj, true, NameRule::Subdomain, errs);
            series(obj, errs);
            if !ev.event_time {
                errs.push(Cause::required(&Path::new("eventTime")));
            }
            if ev.typ != "Normal" && ev.typ != "Warning" {
                errs.push(Cause::invalid(&Path::new("type"), &Value::from(""), format!("has invalid value: {}", ev.typ)));
            }
            for (wire, field) in [
                ("deprecatedFirstTimestamp", "firstTimestamp"),
                ("deprecatedLastTimestamp", "lastTimestamp"),
                ("deprecatedCount", "count"),
                ("deprecatedSource", "source"),
            ] {
                let set = match obj.get(wire) {
                    Some(Value::Number(n)) => n.as_i64() != Some(0),
                    Some(Value::Object(m)) => m.values().any(|v| v.as_str().is_some_and(|s| !s.is_empty())),
                    Some(v) => !v.is_null(),
                    None => false,
                };
                if set {
                    errs.push(Cause::invalid(&Path::new(field), &Value::from(""), "needs to be unset"));
                }
            }
        }
        Some(old) => {
            meta::object_meta_update(obj, old, errs);
            for (wire, field) in [
                ("regarding", "involvedObject"),
                ("reason", "reason"),
                ("note", "message"),
                ("deprecatedSource", "source"),
                ("deprecatedFirstTimestamp", "firstTimestamp"),
                ("deprecatedLastTimestamp", "lastTimestamp"),
                ("deprecatedCount", "count"),
                ("type", "type"),
                ("eventTime", "eventTime"),
                ("action", "action"),
                ("related", "related"),
                ("reportingController", "reportingController"),
                ("reportingInstance", "reportingInstance"),
            ] {
                let (n, o) = (obj.get(wire).unwrap_or(&NULL), old.get(wire).unwrap_or(&NULL));
                if !semantic_eq(n, o) {
                    errs.push(immutable(&Path::new(field), n));
                }
            }
            series(obj, errs);
        }
    }
}

fn series(obj: &Value, errs: &mut Errs) {
    let Some(s) = obj.get("series").filter(|v| !v.is_null()) else { return };
    let count = s.get_i64("count").unwrap_or(0);
    if count < 2 {
        errs.push(Cause::invalid(&Path::new("series").child("count"), &Value::from(""), "should be at least 2"));
    }
    if !s.has("lastObservedTime") {
        errs.push(Cause::required(&Path::new("series").child("lastObservedTime")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resources::lookup;
    use serde_json::json;

    fn defaulted(plural: &str, mut v: Value) -> Value {
        apply_defaults(lookup("", "v1", plural).unwrap(), &mut v);
        v
    }

    fn fields(e: &Errs) -> Vec<&str> {
        e.iter().map(|c| c.field.as_str()).collect()
    }

    fn svc(spec: Value) -> Value {
        defaulted("services", json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}))
    }

    fn check(f: fn(&Value, Option<&Value>, &mut Errs), obj: &Value, old: Option<&Value>) -> Errs {
        let mut e = Vec::new();
        f(obj, old, &mut e);
        e
    }

    #[test]
    fn services_need_ports_unless_headless() {
        let e = check(validate_service, &svc(json!({"selector": {"app": "web"}})), None);
        assert_eq!(e[0].line(), "spec.ports: Required value");
        assert!(check(validate_service, &svc(json!({"clusterIP": "None"})), None).is_empty());
    }

    #[test]
    fn service_names_are_dns1035_labels() {
        let mut s = svc(json!({"ports": [{"port": 80}]}));
        s["metadata"]["name"] = json!("1web");
        let e = check(validate_service, &s, None);
        assert_eq!(fields(&e), ["metadata.name"]);
        assert!(e[0]
            .message
            .contains("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"));
    }

    #[test]
    fn service_ports_need_unique_names_when_many() {
        let e = check(
            validate_service,
            &svc(json!({"ports": [{"port": 80}, {"name": "a", "port": 0}, {"name": "a", "port": 81, "targetPort": "HTTP"}]})),
            None,
        );
        assert_eq!(
            fields(&e),
            [
                "spec.ports[0].name",
                "spec.ports[1].port",
                "spec.ports[1].targetPort",
                "spec.ports[2].name",
                "spec.ports[2].targetPort",
                "spec.ports[2].targetPort"
            ]
        );
        assert_eq!(e[3].reason, "FieldValueDuplicate");
        assert_eq!(e[4].message, "Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }

    #[test]
    fn service_types_are_enumerated_and_node_ports_need_the_type() {
        let e = check(validate_service, &svc(json!({"type": "Magic", "ports": [{"port": 80}]})), None);
        assert!(e.iter().any(|c| c.line() == "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""));
        let e = check(validate_service, &svc(json!({"ports": [{"port": 80, "nodePort": 30001}]})), None);
        assert_eq!(e[0].line(), "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'");
    }

    #[test]
    fn cluster_ips_may_not_change() {
        let mut old = svc(json!({"ports": [{"port": 80}], "clusterIP": "10.96.0.10"}));
        old["metadata"]["uid"] = json!("u");
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        new["spec"]["clusterIPs"] = json!(["10.96.0.11"]);
        let e = check(validate_service, &new, Some(&old));
        assert_eq!(e[0].line(), "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set");
        // Changing only `clusterIP` reads the same way.
        new["spec"]["clusterIPs"] = json!(["10.96.0.10"]);
        let e = check(validate_service, &new, Some(&old));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line(), "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set");
    }

    #[test]
    fn config_map_keys_and_size_are_limited() {
        let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x", "big": "x".repeat(MAX_SECRET_SIZE + 1)}});
        let e = check(validate_config_map, &cm, None);
        assert_eq!(fields(&e), ["data[a b]", ""]);
        assert!(e[0].message.ends_with("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
        assert_eq!(e[1].reason, "FieldValueTooLong");
    }

    #[test]
    fn immutable_config_maps_keep_their_data() {
        let old = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "1"}});
        let new = json!({"metadata": {"name": "c", "namespace": "d"}, "immutable": true, "data": {"a": "2"}});
        let e = check(validate_config_map, &new, Some(&old));
        assert_eq!(e[0].line(), "data: Forbidden: field is immutable when `immutable` is set");
    }

    #[test]
    fn tls_secrets_need_cert_and_key() {
        let s = defaulted(
            "secrets",
            json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
        );
        let e = check(validate_secret, &s, None);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line(), "data[tls.key]: Required value");
    }

    #[test]
    fn secret_type_and_immutable_data_are_fixed() {
        let old = defaulted("secrets", json!({"metadata": {"name": "s", "namespace": "d"}, "immutable": true, "data": {"a": "eA=="}}));
        let mut new = old.clone();
        new["type"] = json!("kubernetes.io/basic-auth");
        new["data"]["a"] = json!("eQ==");
        new["data"]["username"] = json!("eQ==");
        let e = check(validate_secret, &new, Some(&old));
        assert_eq!(fields(&e), ["type", "data"]);
        assert_eq!(e[0].message, "Invalid value: \"kubernetes.io/basic-auth\": field is immutable");
    }

    #[test]
    fn namespaces_are_dns_labels_without_namespace() {
        let e = check(validate_namespace, &defaulted("namespaces", json!({"metadata": {"name": "a.b"}})), None);
        assert_eq!(e[0].line(), "metadata.name: Invalid value: \"a.b\": must not contain dots");
    }

    #[test]
    fn claims_need_modes_and_storage() {
        let pvc = defaulted("persistentvolumeclaims", json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {}}));
        let e = check(validate_pvc, &pvc, None);
        assert_eq!(fields(&e), ["spec.accessModes", "spec.resources[storage]"]);
        assert_eq!(e[0].message, "Required value: at least 1 access mode is required");
    }

    #[test]
    fn bound_claims_may_only_grow() {
        let mut old = defaulted(
            "persistentvolumeclaims",
            json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv1"}}),
        );
        old["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
        let mut new = old.clone();
        new["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(check(validate_pvc, &new, Some(&old)).is_empty());
        new["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        let e = check(validate_pvc, &new, Some(&old));
        assert_eq!(fields(&e), ["spec"]);
        assert!(e[0].message.starts_with(
            "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"
        ));
    }

    #[test]
    fn volumes_need_capacity_and_one_source() {
        let pv = defaulted("persistentvolumes", json!({"metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"]}}));
        let e = check(validate_pv, &pv, None);
        assert_eq!(fields(&e), ["spec.capacity", "spec.capacity", "spec"]);
        assert_eq!(e[2].message, "Required value: must specify a volume type");
    }

    #[test]
    fn quota_names_and_scopes_are_checked() {
        let q = json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {"hard": {"pods": "1.5", "foo": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}});
        let e = check(validate_resource_quota, &q, None);
        let f = fields(&e);
        assert!(f.contains(&"spec.hard[pods]"));
        assert!(f.contains(&"spec.hard[foo]"));
        assert!(e.iter().any(|c| c.message.ends_with("conflicting scopes")));
    }

    #[test]
    fn limit_ranges_order_min_default_and_max() {
        let lr = defaulted(
            "limitranges",
            json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}),
        );
        let e = check(validate_limit_range, &lr, None);
        assert!(e.iter().any(|c| c.line() == "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"));
    }

    #[test]
    fn endpoints_need_addresses_and_named_ports() {
        let ep = defaulted(
            "endpoints",
            json!({"metadata": {"name": "e", "namespace": "d"}, "subsets": [{"ports": [{"port": 80}, {"port": 81}]}, {"addresses": [{"ip": "nope"}, {"ip": "127.0.0.1"}]}]}),
        );
        let e = check(validate_endpoints, &ep, None);
        assert_eq!(
            fields(&e),
            [
                "subsets[0]",
                "subsets[0].ports[0].name",
                "subsets[0].ports[1].name",
                "subsets[1].addresses[0].ip",
                "subsets[1].addresses[0].ip"
            ]
        );
    }

    #[test]
    fn node_taints_are_validated_under_metadata() {
        let n = json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "k", "effect": "Bad"}, {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}]}});
        let e = check(validate_node, &n, None);
        assert_eq!(fields(&e), ["metadata.taints[0].effect", "metadata.taints[2]"]);
        assert!(e[1].message.ends_with("taints must be unique by key and effect pair"));
    }

    #[test]
    fn new_style_events_need_reporting_fields() {
        let ev = json!({"metadata": {"name": "e", "namespace": "default"}, "eventTime": "2024-01-01T00:00:00.000000Z", "regarding": {"kind": "Pod"}, "type": "Odd"});
        let mut e = Vec::new();
        validate_event(&ev, None, true, &mut e);
        assert_eq!(
            fields(&e),
            ["reportingController", "reportingController", "reportingController", "reportingInstance", "action", "reason", "type"]
        );
        assert_eq!(e[6].message, "Invalid value: \"\": has invalid value: Odd");
    }
}
