//! What a pod asks for, summed over its containers as upstream sums it
//! (`k8s.io/component-helpers/resource`), and the QoS class that follows.
//!
//! Quota, limit ranges, the scheduler and the node all need the same arithmetic:
//! regular containers run together, so their requests add up; init containers run
//! one at a time before them, so the pod needs the largest of them; sidecars (init
//! containers with `restartPolicy: Always`) keep running, so they add to everything
//! that starts after them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validation::quantity::{Amount, Quantity};

/// Resource name → amount (`corev1.ResourceList`), in name order.
pub type ResourceList = BTreeMap<String, Amount>;

/// Which sum to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Limits,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Limits => "limits",
        }
    }
}

/// The `resources.requests` or `resources.limits` of one container; quantities that
/// do not parse are left out (validation refuses them before anything sums them).
pub fn container(c: &Value, kind: Kind) -> ResourceList {
    c.pointer(&format!("/resources/{}", kind.field()))
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Amount::from_json(v).ok().map(|a| (k.clone(), a))).collect())
        .unwrap_or_default()
}

/// Adds `b` into `a`, key by key.
pub fn add(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let sum = a.get(k).copied().unwrap_or_else(Amount::zero) + *v;
        a.insert(k.clone(), sum);
    }
}

/// The larger of `a` and `b` for every key of `b`.
fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        match a.get(k) {
            Some(cur) if cur.value >= v.value => {}
            _ => {
                a.insert(k.clone(), *v);
            }
        }
    }
}

fn containers<'a>(pod: &'a Value, list: &str) -> &'a [Value] {
    pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn is_sidecar(c: &Value) -> bool {
    c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
}

/// `PodRequests` / `PodLimits` over the spec: containers and sidecars add up, then
/// the largest init-container phase wins where it is larger. With `overhead`, the
/// pod's `spec.overhead` is added (to every request; to limits only where a limit is
/// set, as upstream).
pub fn pod(pod: &Value, kind: Kind, overhead: bool) -> ResourceList {
    let mut total = ResourceList::new();
    for c in containers(pod, "containers") {
        add(&mut total, &container(c, kind));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in containers(pod, "initContainers") {
        let own = container(c, kind);
        let phase = if is_sidecar(c) {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut phase = own;
            add(&mut phase, &sidecars);
            phase
        };
        max_into(&mut init_peak, &phase);
    }
    max_into(&mut total, &init_peak);
    if overhead {
        let extra: ResourceList = pod
            .pointer("/spec/overhead")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Amount::from_json(v).ok().map(|a| (k.clone(), a))).collect())
            .unwrap_or_default();
        for (k, v) in extra {
            if kind == Kind::Limits && !total.contains_key(&k) {
                continue;
            }
            let sum = total.get(&k).copied().unwrap_or_else(Amount::zero) + v;
            total.insert(k, sum);
        }
    }
    total
}

/// `ComputePodQOS`: `BestEffort` without any cpu or memory request or limit,
/// `Guaranteed` when every container limits both and the summed requests equal the
/// summed limits, `Burstable` otherwise.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let all = containers(pod, "containers").iter().chain(containers(pod, "initContainers"));
    for c in all {
        for (kind, sums) in [(Kind::Requests, &mut requests), (Kind::Limits, &mut limits)] {
            let mut found = Vec::new();
            for name in ["cpu", "memory"] {
                let Some(q) = container(c, kind).get(name).map(|a| a.value).filter(|q| *q > Quantity::zero()) else { continue };
                found.push(name);
                let sum = sums.get(name).copied().unwrap_or_else(Quantity::zero).saturating_add(q);
                sums.insert(name, sum);
            }
            if kind == Kind::Limits && found.len() < 2 {
                guaranteed = false;
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.iter().all(|(k, r)| limits.get(k) == Some(r)) && requests.len() == limits.len() {
        return "Guaranteed";
    }
    "Burstable"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(list: &ResourceList) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
    }

    fn c(name: &str, requests: Value) -> Value {
        json!({"name": name, "resources": {"requests": requests}})
    }

    #[test]
    fn containers_add_up_and_init_containers_peak() {
        let p = json!({"spec": {
            "initContainers": [c("i", json!({"cpu": "2", "memory": "64Mi"}))],
            "containers": [c("a", json!({"cpu": "500m", "memory": "128Mi"})), c("b", json!({"cpu": "500m"}))]
        }});
        assert_eq!(texts(&pod(&p, Kind::Requests, false)), [("cpu".to_string(), "2".to_string()), ("memory".to_string(), "128Mi".to_string())]);
    }

    #[test]
    fn sidecars_run_beside_everything_after_them() {
        let mut sidecar = c("s", json!({"cpu": "1"}));
        sidecar["restartPolicy"] = json!("Always");
        let p = json!({"spec": {
            "initContainers": [sidecar, c("i", json!({"cpu": "1500m"}))],
            "containers": [c("a", json!({"cpu": "500m"}))]
        }});
        // The init container runs beside the sidecar (2.5); afterwards 1 + 0.5.
        assert_eq!(texts(&pod(&p, Kind::Requests, false)), [("cpu".to_string(), "2500m".to_string())]);
    }

    #[test]
    fn overhead_adds_to_requests_and_only_to_set_limits() {
        let p = json!({"spec": {"overhead": {"cpu": "100m", "memory": "10Mi"},
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}}]}});
        assert_eq!(texts(&pod(&p, Kind::Requests, true)), [("cpu".to_string(), "1100m".to_string()), ("memory".to_string(), "10Mi".to_string())]);
        assert_eq!(texts(&pod(&p, Kind::Limits, true)), [("cpu".to_string(), "1100m".to_string())]);
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"name": "a"}]}})), "BestEffort");
        let both = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"resources": both}]}})), "Guaranteed");
        let cpu_only = json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}});
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"resources": cpu_only}]}})), "Burstable");
        let zero = json!({"requests": {"cpu": "0"}});
        assert_eq!(qos_class(&json!({"spec": {"containers": [{"resources": zero}]}})), "BestEffort");
    }
}
