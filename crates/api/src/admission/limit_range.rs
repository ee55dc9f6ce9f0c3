//! The LimitRanger admission plugin (`plugin/pkg/admission/limitranger`), for pods
//! and PersistentVolumeClaims on create.
//!
//! Mutating: each container without a request or limit for a resource that a
//! `Container` item defaults gets the item's `defaultRequest` / `default`, and the pod
//! is annotated with what was set. Validating: every container (and, for `Pod`
//! items, the whole pod) must stay within `min`, `max` and `maxLimitRequestRatio`;
//! claims within the `PersistentVolumeClaim` item's storage bounds.
//!
//! Limit ranges are applied one after another, in the order given; the first one
//! that a pod violates refuses it with all of its violations.

use serde_json::{json, Map, Value};

use super::{aggregate, Denied};
use crate::pod_resources::{self, Kind, ResourceList};
use crate::validation::quantity::{Amount, Quantity};

/// The annotation that records what the plugin filled in.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn items<'a>(lr: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    lr.pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |i| i.get("type").and_then(Value::as_str) == Some(kind))
}

fn resource_list(item: &Value, key: &str) -> ResourceList {
    item.get(key)
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Amount::from_json(v).ok().map(|a| (k.clone(), a))).collect())
        .unwrap_or_default()
}

/// The original JSON values of a default list, so defaults are copied as written.
fn raw_list(item: &Value, key: &str) -> Map<String, Value> {
    item.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// `PodMutateLimitFunc` for every limit range in turn.
pub fn default_pod(pod: &mut Value, limit_ranges: &[Value]) {
    for lr in limit_ranges {
        // `defaultContainerResourceRequirements`: later Container items override earlier ones.
        let mut requests = Map::new();
        let mut limits = Map::new();
        for item in items(lr, "Container") {
            requests.extend(raw_list(item, "defaultRequest"));
            limits.extend(raw_list(item, "default"));
        }
        merge_pod(pod, &requests, &limits);
    }
}

/// `mergePodResourceRequirements`: fills what each container leaves unset and
/// annotates the pod with what was filled.
fn merge_pod(pod: &mut Value, requests: &Map<String, Value>, limits: &Map<String, Value>) {
    let mut notes = Vec::new();
    for (list, prefix) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(cs) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else { continue };
        for c in cs.iter_mut().filter(|c| c.is_object()) {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            let set_limits = fill(c, "limits", limits);
            let set_requests = fill(c, "requests", requests);
            if !set_requests.is_empty() {
                notes.push(format!("{} request for {prefix} {name}", set_requests.join(", ")));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {prefix} {name}", set_limits.join(", ")));
            }
        }
    }
    if !notes.is_empty() {
        let annotations = crate::meta::metadata_mut(pod).entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

/// Sets the missing keys of `resources.<field>`; returns them, sorted.
fn fill(c: &mut Value, field: &str, defaults: &Map<String, Value>) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let resources = c.as_object_mut().expect("containers are objects").entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let list = resources.as_object_mut().expect("just made an object").entry(field).or_insert_with(|| json!({}));
    if !list.is_object() {
        *list = json!({});
    }
    let list = list.as_object_mut().expect("just made an object");
    let mut set = Vec::new();
    for (k, v) in defaults {
        if !list.contains_key(k) {
            list.insert(k.clone(), v.clone());
            set.push(k.clone());
        }
    }
    set.sort();
    set
}

/// `requestLimitEnforcedValues`: milli-units when they fit, whole units otherwise.
fn comparable(values: [Option<Quantity>; 3]) -> [i128; 3] {
    const MAX_MILLI_VALUE: i128 = (i64::MAX / 1000) as i128;
    let q = |v: Option<Quantity>| v.unwrap_or_else(Quantity::zero);
    if values.iter().all(|v| q(*v).value() <= MAX_MILLI_VALUE) {
        values.map(|v| q(v).milli_value())
    } else {
        values.map(|v| q(v).value())
    }
}

fn min_constraint(kind: &str, name: &str, enforced: &Amount, requests: &ResourceList, limits: &ResourceList, errs: &mut Vec<String>) {
    let (req, lim) = (requests.get(name), limits.get(name));
    let [r, l, e] = comparable([req.map(|a| a.value), lim.map(|a| a.value), Some(enforced.value)]);
    match (req, lim) {
        (None, _) => errs.push(format!("minimum {name} usage per {kind} is {enforced}.  No request is specified")),
        (Some(req), _) if r < e => errs.push(format!("minimum {name} usage per {kind} is {enforced}, but request is {req}")),
        (_, Some(lim)) if l < e => errs.push(format!("minimum {name} usage per {kind} is {enforced}, but limit is {lim}")),
        _ => {}
    }
}

fn max_constraint(kind: &str, name: &str, enforced: &Amount, requests: &ResourceList, limits: &ResourceList, errs: &mut Vec<String>) {
    let (req, lim) = (requests.get(name), limits.get(name));
    let [r, l, e] = comparable([req.map(|a| a.value), lim.map(|a| a.value), Some(enforced.value)]);
    match (req, lim) {
        (_, None) => errs.push(format!("maximum {name} usage per {kind} is {enforced}.  No limit is specified")),
        (_, Some(lim)) if l > e => errs.push(format!("maximum {name} usage per {kind} is {enforced}, but limit is {lim}")),
        (Some(req), _) if r > e => errs.push(format!("maximum {name} usage per {kind} is {enforced}, but request is {req}")),
        _ => {}
    }
}

/// `maxRequestConstraint`: for claims, whose limits mean nothing.
fn max_request_constraint(kind: &str, name: &str, enforced: &Amount, requests: &ResourceList, errs: &mut Vec<String>) {
    let req = requests.get(name);
    let [r, _, e] = comparable([req.map(|a| a.value), None, Some(enforced.value)]);
    match req {
        None => errs.push(format!("maximum {name} usage per {kind} is {enforced}.  No request is specified")),
        Some(req) if r > e => errs.push(format!("maximum {name} usage per {kind} is {enforced}, but request is {req}")),
        _ => {}
    }
}

fn ratio_constraint(kind: &str, name: &str, enforced: &Amount, requests: &ResourceList, limits: &ResourceList, errs: &mut Vec<String>) {
    let [r, l, _] = comparable([requests.get(name).map(|a| a.value), limits.get(name).map(|a| a.value), None]);
    if requests.get(name).is_none() || r == 0 {
        errs.push(format!("{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
        return;
    }
    if limits.get(name).is_none() || l == 0 {
        errs.push(format!("{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
        return;
    }
    let observed = l as f64 / r as f64;
    let (compared, max) = if enforced.value.value() <= (i64::MAX / 1000) as i128 {
        (observed * 1000.0, enforced.value.milli_value() as f64)
    } else {
        (observed, enforced.value.value() as f64)
    };
    if compared > max {
        errs.push(format!("{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"));
    }
}

fn bounds(kind: &str, item: &Value, requests: &ResourceList, limits: &ResourceList, errs: &mut Vec<String>) {
    for (name, q) in resource_list(item, "min") {
        min_constraint(kind, &name, &q, requests, limits, errs);
    }
    for (name, q) in resource_list(item, "max") {
        max_constraint(kind, &name, &q, requests, limits, errs);
    }
    for (name, q) in resource_list(item, "maxLimitRequestRatio") {
        ratio_constraint(kind, &name, &q, requests, limits, errs);
    }
}

/// `PodValidateLimitFunc` for every limit range in turn.
pub fn validate_pod(pod: &Value, limit_ranges: &[Value]) -> Result<(), Denied> {
    for lr in limit_ranges {
        let mut errs = Vec::new();
        for item in lr.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten() {
            match item.get("type").and_then(Value::as_str) {
                Some("Container") => {
                    for list in ["containers", "initContainers"] {
                        for c in pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten() {
                            let (requests, limits) = (pod_resources::container(c, Kind::Requests), pod_resources::container(c, Kind::Limits));
                            bounds("Container", item, &requests, &limits, &mut errs);
                        }
                    }
                }
                Some("Pod") => {
                    let requests = pod_resources::pod(pod, Kind::Requests, false);
                    let limits = pod_resources::pod(pod, Kind::Limits, false);
                    bounds("Pod", item, &requests, &limits, &mut errs);
                }
                _ => {}
            }
        }
        if let Some(message) = aggregate(errs) {
            return Err(Denied(message));
        }
    }
    Ok(())
}

/// `PersistentVolumeClaimValidateLimitFunc`: storage requests within the claim bounds.
pub fn validate_claim(pvc: &Value, limit_ranges: &[Value]) -> Result<(), Denied> {
    let requests: ResourceList = pvc
        .pointer("/spec/resources/requests")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Amount::from_json(v).ok().map(|a| (k.clone(), a))).collect())
        .unwrap_or_default();
    for lr in limit_ranges {
        let mut errs = Vec::new();
        for item in items(lr, "PersistentVolumeClaim") {
            for (name, q) in resource_list(item, "min") {
                min_constraint("PersistentVolumeClaim", &name, &q, &requests, &ResourceList::new(), &mut errs);
            }
            for (name, q) in resource_list(item, "max") {
                max_request_constraint("PersistentVolumeClaim", &name, &q, &requests, &mut errs);
            }
        }
        if let Some(message) = aggregate(errs) {
            return Err(Denied(message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_range(items: Value) -> Value {
        let mut lr = json!({"metadata": {"name": "limits"}, "spec": {"limits": items}});
        crate::defaults::apply_defaults(crate::resources::lookup("", "v1", "limitranges").unwrap(), &mut lr);
        lr
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx", "resources": resources}]}})
    }

    #[test]
    fn containers_get_the_default_requests_and_limits() {
        let lr = limit_range(json!([{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}}]));
        let mut p = pod(json!({}));
        default_pod(&mut p, &[lr]);
        let r = &p["spec"]["containers"][0]["resources"];
        assert_eq!(r["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        // The default request follows the default limit where none is given.
        assert_eq!(r["requests"], json!({"cpu": "100m", "memory": "256Mi"}));
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for container web"
        );
    }

    #[test]
    fn what_a_container_sets_is_kept() {
        let lr = limit_range(json!([{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}]));
        let mut p = pod(json!({"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}));
        default_pod(&mut p, &[lr]);
        assert_eq!(p["spec"]["containers"][0]["resources"], json!({"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}));
        assert!(p["metadata"].get("annotations").is_none());
    }

    #[test]
    fn a_container_above_the_maximum_is_refused() {
        let lr = limit_range(json!([{"type": "Container", "max": {"cpu": "2"}}]));
        let p = pod(json!({"requests": {"cpu": "1"}, "limits": {"cpu": "4"}}));
        assert_eq!(validate_pod(&p, std::slice::from_ref(&lr)).unwrap_err().0, "maximum cpu usage per Container is 2, but limit is 4");
        let p = pod(json!({"requests": {"cpu": "1"}}));
        assert_eq!(validate_pod(&p, &[lr]).unwrap_err().0, "maximum cpu usage per Container is 2.  No limit is specified");
    }

    #[test]
    fn every_violation_of_one_range_is_reported() {
        let lr = json!({"spec": {"limits": [{"type": "Container", "min": {"cpu": "200m", "memory": "64Mi"}}]}});
        let p = pod(json!({"requests": {"cpu": "0.1"}}));
        assert_eq!(
            validate_pod(&p, &[lr]).unwrap_err().0,
            "[minimum cpu usage per Container is 200m, but request is 100m, minimum memory usage per Container is 64Mi.  No request is specified]"
        );
    }

    #[test]
    fn pod_items_bound_the_sum_and_ratios_are_checked() {
        let lr = json!({"spec": {"limits": [{"type": "Pod", "max": {"memory": "1Gi"}}, {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]}});
        let p = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "768Mi"}, "limits": {"cpu": "3", "memory": "768Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}}
        ]}});
        assert_eq!(
            validate_pod(&p, &[lr]).unwrap_err().0,
            "[maximum memory usage per Pod is 1Gi, but limit is 1280Mi, cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000]"
        );
    }

    #[test]
    fn claims_stay_within_their_storage_bounds() {
        let lr = json!({"spec": {"limits": [{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]}});
        let small = json!({"spec": {"resources": {"requests": {"storage": "500Mi"}}}});
        assert_eq!(validate_claim(&small, std::slice::from_ref(&lr)).unwrap_err().0, "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi");
        let ok = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        assert!(validate_claim(&ok, &[lr]).is_ok());
    }
}
