//! The ResourceQuota admission plugin (`plugin/pkg/admission/resourcequota` with the
//! evaluators of `pkg/quota/v1/evaluator/core`), for creates.
//!
//! Every object counts something against the quotas of its namespace ([`usage`]):
//! a pod its compute requests and limits and `pods`, a Service `services` and its
//! node ports, a claim its storage, and every object `count/<resource>`. A create is
//! refused when a quota that [`matches`] it would go over `spec.hard` for any of the
//! resources the object adds to ([`check`]), or, for cpu and memory quotas, when a
//! container leaves the quota's resource unspecified.
//!
//! Upstream charges the request against `status.used`, which the quota controller
//! keeps and admission increments. Skiff's server counts the namespace's current
//! objects instead (see the API server's write path), so a quota is enforced even
//! when no controller has filled its status yet.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Denied;
use crate::pod_resources::{self, Kind, ResourceList};
use crate::validation::quantity::Amount;
use crate::ResourceInfo;

/// The quota resources a quota on cpu or memory makes every container specify.
const VALIDATION_SET: &[&str] = &["cpu", "limits.cpu", "limits.memory", "memory", "requests.cpu", "requests.memory"];

/// The pod resources quota tracks by name (`podResources`).
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// `count/<resource>` or `count/<resource>.<group>` (`ObjectCountQuotaResourceNameFor`).
pub fn object_count_name(res: &ResourceInfo) -> String {
    if res.group.is_empty() {
        format!("count/{}", res.plural)
    } else {
        format!("count/{}.{}", res.plural, res.group)
    }
}

/// The older names some core kinds are counted under as well.
fn legacy_count_name(res: &ResourceInfo) -> Option<&'static str> {
    match (res.group, res.plural) {
        ("", "configmaps") => Some("configmaps"),
        ("", "secrets") => Some("secrets"),
        ("", "services") => Some("services"),
        ("", "persistentvolumeclaims") => Some("persistentvolumeclaims"),
        ("", "resourcequotas") => Some("resourcequotas"),
        _ => None,
    }
}

/// `IsNativeResource`: unprefixed names and `kubernetes.io/` ones.
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `IsExtendedResourceName` (as a container resource).
fn is_extended(name: &str) -> bool {
    !is_native(name) && !name.starts_with("requests.")
}

/// `podComputeUsageHelper`: the quota names of a set of requests and limits.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Amount::count(1));
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(r) = requests.get(name) {
            out.insert(name.into(), *r);
            out.insert(format!("requests.{name}"), *r);
        }
        if let Some(l) = limits.get(name) {
            out.insert(format!("limits.{name}"), *l);
        }
    }
    for (name, r) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *r);
            out.insert(format!("requests.{name}"), *r);
        }
        if is_extended(name) {
            out.insert(format!("requests.{name}"), *r);
        }
    }
    out
}

/// `QuotaV1Pod`: terminal pods, and pods whose deletion grace period ran out, use no
/// compute resources.
fn pod_counts(pod: &Value, now: jiff::Timestamp) -> bool {
    if matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")) {
        return false;
    }
    let deleted = pod.pointer("/metadata/deletionTimestamp").and_then(Value::as_str).and_then(crate::meta::parse_time);
    let grace = pod.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
    if let (Some(at), Some(grace)) = (deleted, grace) {
        if now > at.checked_add(jiff::SignedDuration::from_secs(grace)).unwrap_or(at) {
            return false;
        }
    }
    true
}

/// What one object of `res` counts against quotas (`Evaluator.Usage`).
pub fn usage(res: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(object_count_name(res), Amount::count(1));
    if let Some(legacy) = legacy_count_name(res) {
        out.insert(legacy.into(), Amount::count(1));
    }
    match (res.group, res.kind) {
        ("", "Pod") if pod_counts(obj, now) => {
            let requests = pod_resources::pod(obj, Kind::Requests, true);
            let limits = pod_resources::pod(obj, Kind::Limits, true);
            out.extend(compute_usage(&requests, &limits));
        }
        ("", "Service") => {
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            match obj.pointer("/spec/type").and_then(Value::as_str) {
                Some("NodePort") => {
                    out.insert("services.nodeports".into(), Amount::count(ports.len() as i64));
                }
                Some("LoadBalancer") => {
                    let allocate = obj.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false);
                    let node_ports = if allocate { ports.len() } else { ports.iter().filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0).count() };
                    out.insert("services.nodeports".into(), Amount::count(node_ports as i64));
                    out.insert("services.loadbalancers".into(), Amount::count(1));
                }
                _ => {}
            }
        }
        ("", "PersistentVolumeClaim") => {
            let storage = obj.pointer("/spec/resources/requests/storage").and_then(|v| Amount::from_json(v).ok());
            let class = obj.pointer("/spec/storageClassName").and_then(Value::as_str).unwrap_or("");
            if !class.is_empty() {
                out.insert(format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"), Amount::count(1));
            }
            if let Some(storage) = storage {
                out.insert("requests.storage".into(), storage);
                if !class.is_empty() {
                    out.insert(format!("{class}.storageclass.storage.k8s.io/requests.storage"), storage);
                }
            }
        }
        _ => {}
    }
    out
}

/// `MatchingResources`: the names in a quota's `hard` that objects of `res` count.
pub fn matching_resources(res: &ResourceInfo, hard: &[String]) -> Vec<String> {
    let count = object_count_name(res);
    let legacy = legacy_count_name(res);
    hard.iter()
        .filter(|name| {
            let name = name.as_str();
            if name == count || Some(name) == legacy {
                return true;
            }
            match (res.group, res.kind) {
                ("", "Pod") => {
                    POD_RESOURCES.contains(&name)
                        || name.starts_with("hugepages-")
                        || name.starts_with("requests.hugepages-")
                        || (name.starts_with("requests.") && !is_native(name))
                }
                ("", "Service") => matches!(name, "services.nodeports" | "services.loadbalancers"),
                ("", "PersistentVolumeClaim") => {
                    name == "requests.storage"
                        || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                        || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
                }
                _ => false,
            }
        })
        .cloned()
        .collect()
}

/// The names in `spec.hard`, sorted.
pub fn hard_names(quota: &Value) -> Vec<String> {
    quota.pointer("/spec/hard").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn hard(quota: &Value) -> ResourceList {
    quota
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Amount::from_json(v).ok().map(|a| (k.clone(), a))).collect())
        .unwrap_or_default()
}

/// Upstream's `IsTerminating`: a pod with an active deadline.
fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|d| d >= 0)
}

fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let Some(affinity) = pod.pointer("/spec/affinity") else { return false };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let required = affinity.pointer(&format!("/{kind}/requiredDuringSchedulingIgnoredDuringExecution")).and_then(Value::as_array);
        let preferred = affinity.pointer(&format!("/{kind}/preferredDuringSchedulingIgnoredDuringExecution")).and_then(Value::as_array);
        let terms = required.into_iter().flatten().chain(preferred.into_iter().flatten().filter_map(|w| w.get("podAffinityTerm")));
        terms
            .into_iter()
            .any(|t| t.get("namespaces").and_then(Value::as_array).is_some_and(|n| !n.is_empty()) || t.get("namespaceSelector").is_some_and(|s| !s.is_null()))
    })
}

/// `podMatchesScopeFunc` for one scope selector requirement.
fn pod_matches_scope(pod: &Value, scope: &str, operator: &str, values: &[String]) -> bool {
    match scope {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => pod_resources::qos_class(pod) == "BestEffort",
        "NotBestEffort" => pod_resources::qos_class(pod) != "BestEffort",
        "PriorityClass" => {
            let class = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("");
            match operator {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => !class.is_empty() && values.iter().any(|v| v == class),
                "NotIn" => class.is_empty() || !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

/// `GetScopeSelectorsFromQuota`: `spec.scopes` as `Exists` requirements, then
/// `spec.scopeSelector.matchExpressions`.
fn scope_selectors(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota.pointer("/spec/scopeSelector/matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let values = e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect();
        out.push((text("scopeName"), text("operator"), values));
    }
    out
}

/// `Evaluator.Matches`: the quota limits something objects of `res` count, and its
/// scopes select `obj` (only pods have scopes; a scoped quota selects nothing else).
pub fn matches(quota: &Value, res: &ResourceInfo, obj: &Value) -> bool {
    if matching_resources(res, &hard_names(quota)).is_empty() {
        return false;
    }
    scope_selectors(quota).iter().all(|(scope, op, values)| res.group.is_empty() && res.kind == "Pod" && pod_matches_scope(obj, scope, op, values))
}

/// The usage of `objects` (the namespace's objects of `res` that the quota
/// [`matches`]), for each name in the quota's `hard` (zero when nothing counts).
pub fn used<'a>(quota: &Value, res: &ResourceInfo, objects: impl IntoIterator<Item = &'a Value>, now: jiff::Timestamp) -> ResourceList {
    let names = hard_names(quota);
    let mut total: ResourceList = names.iter().map(|n| (n.clone(), Amount::zero())).collect();
    for obj in objects {
        let u = usage(res, obj, now);
        for name in &names {
            if let Some(v) = u.get(name) {
                let sum = total[name] + *v;
                total.insert(name.clone(), sum);
            }
        }
    }
    total
}

/// `podEvaluator.Constraints`: with quota on cpu or memory, every container must say
/// how much of it it needs.
fn pod_constraints(pod: &Value, required: &[String]) -> Result<(), String> {
    let required: BTreeSet<&str> = required.iter().map(String::as_str).filter(|r| VALIDATION_SET.contains(r)).collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["containers", "initContainers"] {
        for c in pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten() {
            let have = compute_usage(&pod_resources::container(c, Kind::Requests), &pod_resources::container(c, Kind::Limits));
            for r in &required {
                if !have.contains_key(*r) {
                    missing.entry(r).or_default().insert(c.get("name").and_then(Value::as_str).unwrap_or("").to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing.iter().map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(","))).collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// `prettyPrint`: `cpu=500m,memory=1Gi`, by name.
fn pretty(list: &ResourceList, names: &[String]) -> String {
    names.iter().filter_map(|n| list.get(n).map(|v| format!("{n}={v}"))).collect::<Vec<_>>().join(",")
}

/// One quota that matches the new object, with the usage of the objects it covers.
#[derive(Debug, Clone)]
pub struct QuotaUse<'a> {
    pub quota: &'a Value,
    pub used: ResourceList,
}

/// `checkRequest` for a create: first every matching quota's constraints, then
/// whether the object's usage fits under each quota's `hard` beside what is used.
pub fn check(res: &ResourceInfo, obj: &Value, quotas: &[QuotaUse<'_>], now: jiff::Timestamp) -> Result<(), Denied> {
    let name_of = |q: &Value| q.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if res.group.is_empty() && res.kind == "Pod" {
        for q in quotas {
            let restricted = matching_resources(res, &hard_names(q.quota));
            pod_constraints(obj, &restricted).map_err(|e| Denied(format!("failed quota: {}: {e}", name_of(q.quota))))?;
        }
    }
    let delta = usage(res, obj, now);
    if delta.values().all(|a| a.value.is_zero()) {
        return Ok(());
    }
    for q in quotas {
        let hard = hard(q.quota);
        let requested: ResourceList = delta.iter().filter(|(k, _)| hard.contains_key(*k)).map(|(k, v)| (k.clone(), *v)).collect();
        let exceeded: Vec<String> = requested
            .iter()
            .filter(|(k, v)| {
                let used = q.used.get(*k).copied().unwrap_or_else(Amount::zero);
                (used + **v).value > hard[*k].value
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !exceeded.is_empty() {
            let used: ResourceList = exceeded.iter().map(|k| (k.clone(), q.used.get(k).copied().unwrap_or_else(Amount::zero))).collect();
            return Err(Denied(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                name_of(q.quota),
                pretty(&requested, &exceeded),
                pretty(&used, &exceeded),
                pretty(&hard, &exceeded)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn pods() -> &'static ResourceInfo {
        lookup("", "v1", "pods").unwrap()
    }

    fn pod(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c1", "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}]}, "status": {"phase": "Running"}})
    }

    fn quota(hard: Value) -> Value {
        json!({"metadata": {"name": "compute"}, "spec": {"hard": hard}})
    }

    fn texts(list: &ResourceList) -> Vec<String> {
        list.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn pods_count_their_compute_resources_and_themselves() {
        let p = json!({"spec": {"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "250m", "memory": "64Mi", "nvidia.com/gpu": "1"}, "limits": {"cpu": "500m", "memory": "128Mi", "nvidia.com/gpu": "1"}}}]}});
        assert_eq!(
            texts(&usage(pods(), &p, now())),
            [
                "count/pods=1", "cpu=250m", "limits.cpu=500m", "limits.memory=128Mi", "memory=64Mi", "pods=1", "requests.cpu=250m",
                "requests.memory=64Mi", "requests.nvidia.com/gpu=1"
            ]
        );
    }

    #[test]
    fn finished_pods_only_count_as_objects() {
        let mut done = pod("a", "1");
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(texts(&usage(pods(), &done, now())), ["count/pods=1"]);
        let mut gone = pod("b", "1");
        gone["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
        gone["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert_eq!(texts(&usage(pods(), &gone, now())), ["count/pods=1"]);
    }

    #[test]
    fn a_create_over_the_hard_limit_is_refused_with_the_numbers() {
        let q = quota(json!({"cpu": "2", "pods": "10"}));
        let existing = [pod("a", "1"), pod("b", "500m")];
        let used = used(&q, pods(), &existing, now());
        assert_eq!(texts(&used), ["cpu=1500m", "pods=2"]);
        let e = check(pods(), &pod("c", "500m"), &[QuotaUse { quota: &q, used: used.clone() }], now());
        assert!(e.is_ok());
        let e = check(pods(), &pod("c", "600m"), &[QuotaUse { quota: &q, used }], now()).unwrap_err();
        assert_eq!(e.0, "exceeded quota: compute, requested: cpu=600m, used: cpu=1500m, limited: cpu=2");
    }

    #[test]
    fn quotas_on_cpu_make_containers_specify_it() {
        let q = quota(json!({"requests.cpu": "2", "limits.cpu": "4", "pods": "10"}));
        let p = json!({"spec": {"containers": [{"name": "c2", "resources": {"requests": {"cpu": "1"}}}, {"name": "c1"}]}});
        let e = check(pods(), &p, &[QuotaUse { quota: &q, used: ResourceList::new() }], now()).unwrap_err();
        assert_eq!(e.0, "failed quota: compute: must specify limits.cpu for: c1,c2; requests.cpu for: c1");
        let only_pods = quota(json!({"pods": "1"}));
        assert!(check(pods(), &p, &[QuotaUse { quota: &only_pods, used: ResourceList::new() }], now()).is_ok());
    }

    #[test]
    fn object_counts_cover_every_kind() {
        let cms = lookup("", "v1", "configmaps").unwrap();
        let q = quota(json!({"count/configmaps": "1", "configmaps": "5"}));
        assert!(matches(&q, cms, &json!({})));
        let used = used(&q, cms, &[json!({"metadata": {"name": "a"}})], now());
        let e = check(cms, &json!({}), &[QuotaUse { quota: &q, used }], now()).unwrap_err();
        assert_eq!(e.0, "exceeded quota: compute, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1");
        let deploys = lookup("apps", "v1", "deployments").unwrap();
        assert!(matches(&quota(json!({"count/deployments.apps": "2"})), deploys, &json!({})));
        assert!(!matches(&q, deploys, &json!({})));
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let svcs = lookup("", "v1", "services").unwrap();
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(texts(&usage(svcs, &lb, now())), ["count/services=1", "services=1", "services.loadbalancers=1", "services.nodeports=2"]);
    }

    #[test]
    fn scoped_quotas_select_pods_by_scope() {
        let best_effort = json!({"metadata": {"name": "be"}, "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}});
        assert!(matches(&best_effort, pods(), &json!({"spec": {"containers": [{"name": "c"}]}})));
        assert!(!matches(&best_effort, pods(), &pod("a", "1")));
        let high = json!({"metadata": {"name": "hi"}, "spec": {"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(matches(&high, pods(), &json!({"spec": {"priorityClassName": "high"}})));
        assert!(!matches(&high, pods(), &json!({"spec": {}})));
        assert!(!matches(&best_effort, lookup("", "v1", "configmaps").unwrap(), &json!({})));
    }
}
