//! Service cluster IP and node port allocation.
//!
//! The set of used addresses is read from the Service watch cache, which the creating
//! call waits on after each allocation; `App::alloc_lock` serializes allocations, so
//! two creates never pick the same address.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{json, Value};
use skiff_api::{resources, Cause, StatusError};

use crate::app::App;

fn in_cidr(ip: Ipv4Addr, (base, bits): (Ipv4Addr, u8)) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    (u32::from(ip) & mask) == (u32::from(base) & mask)
}

fn used(app: &App) -> (HashSet<Ipv4Addr>, HashSet<i64>) {
    let res = resources::lookup("", "v1", "services").expect("services registered");
    let list = app.cache(res).list(&res.key_prefix(), None, 0, &|_| true);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for e in list.items {
        let v = e.object.value();
        if let Some(ip) = v.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok()) {
            ips.insert(ip);
        }
        for p in v.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                ports.insert(n);
            }
        }
    }
    (ips, ports)
}

/// Fills in `spec.clusterIP(s)` and node ports of a new Service.
pub fn allocate_service(app: &App, mut svc: Value) -> Result<Value, StatusError> {
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let typ = svc.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let (used_ips, used_ports) = used(app);
    let cidr = app.settings.service_cidr;
    if typ != "ExternalName" {
        match svc.pointer("/spec/clusterIP").and_then(Value::as_str).map(String::from) {
            Some(ip) if ip == "None" => {}
            Some(ip) if !ip.is_empty() => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    StatusError::invalid("", "Service", &name, vec![Cause::invalid("spec.clusterIPs[0]", &json!(ip), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")])
                })?;
                if !in_cidr(parsed, cidr) {
                    return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid("spec.clusterIPs", &json!([ip]), &format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}", cidr.0, cidr.1))]));
                }
                if used_ips.contains(&parsed) {
                    return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid("spec.clusterIPs", &json!([ip]), &format!("failed to allocate IP {ip}: provided IP is already allocated"))]));
                }
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            _ => {
                let base = u32::from(cidr.0);
                let size = 1u64 << (32 - cidr.1 as u32);
                // Start from a random offset so that allocations spread (upstream does too);
                // skip the network address.
                use rand::Rng;
                let start = rand::rng().random_range(1..size.saturating_sub(1).max(2));
                let mut found = None;
                for i in 0..size {
                    let off = (start + i) % size;
                    if off == 0 || off == size - 1 {
                        continue;
                    }
                    let ip = Ipv4Addr::from(base.wrapping_add(off as u32));
                    if !used_ips.contains(&ip) {
                        found = Some(ip);
                        break;
                    }
                }
                let ip = found.ok_or_else(|| StatusError::internal("failed to allocate a serviceIP: range is full"))?;
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        }
    }
    if matches!(typ.as_str(), "NodePort" | "LoadBalancer") {
        let (lo, hi) = app.settings.node_port_range;
        let mut taken = used_ports;
        if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                match p.get("nodePort").and_then(Value::as_i64) {
                    Some(n) => {
                        if n < lo as i64 || n > hi as i64 {
                            return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(n), &format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"))]));
                        }
                        if !taken.insert(n) {
                            return Err(StatusError::invalid("", "Service", &name, vec![Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(n), "provided port is already allocated")]));
                        }
                    }
                    None => {
                        use rand::Rng;
                        let span = (hi - lo + 1) as i64;
                        let start = rand::rng().random_range(0..span);
                        let n = (0..span).map(|k| lo as i64 + (start + k) % span).find(|n| !taken.contains(n));
                        let n = n.ok_or_else(|| StatusError::internal("failed to allocate a nodePort: range is full"))?;
                        taken.insert(n);
                        p["nodePort"] = json!(n);
                    }
                }
            }
        }
    }
    Ok(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() {
        let c = ("10.96.0.0".parse().unwrap(), 12);
        assert!(in_cidr("10.96.0.1".parse().unwrap(), c));
        assert!(in_cidr("10.111.255.254".parse().unwrap(), c));
        assert!(!in_cidr("10.112.0.1".parse().unwrap(), c));
    }
}
