//! Pod admission on this node, as the kubelet's resource admission does it: the pod
//! count, then every requested resource, against allocatable minus what the pods
//! admitted before use. A pod that does not fit fails at once (`OutOfcpu`, …).
//!
//! Pods that already ran here (found after an agent restart) are counted without a
//! check: the kubelet never evicts what it admitted before.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use skiff_api::pod_resources;
use skiff_api::validation::quantity::Quantity;

/// Why a pod was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// The node's allocatable resources and what admitted pods use, in thousandths.
#[derive(Debug, Default)]
pub struct Admission {
    allocatable: BTreeMap<String, i128>,
    used: BTreeMap<String, i128>,
    admitted: HashMap<String, BTreeMap<String, i128>>,
}

/// The pod's requests as admission sums them (init containers, sidecars and
/// overhead included), in thousandths.
pub fn pod_requests(pod: &Value) -> BTreeMap<String, i128> {
    pod_resources::pod(pod, pod_resources::Kind::Requests, true)
        .into_iter()
        .map(|(k, a)| (k, a.value.milli_value()))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// `IsExtendedResourceName`: a domain-qualified name outside `kubernetes.io/`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

impl Admission {
    /// `allocatable` as the Node reports it ("4", "8038232Ki", "110").
    pub fn new(allocatable: &BTreeMap<String, String>) -> Admission {
        let allocatable = allocatable.iter().filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v).ok()?.milli_value()))).collect();
        Admission { allocatable, ..Default::default() }
    }

    pub fn is_admitted(&self, uid: &str) -> bool {
        self.admitted.contains_key(uid)
    }

    /// Admits the pod if it fits (admitting twice changes nothing).
    pub fn admit(&mut self, uid: &str, requests: &BTreeMap<String, i128>) -> Result<(), Rejection> {
        if self.admitted.contains_key(uid) {
            return Ok(());
        }
        let pods = self.admitted.len() as i128;
        let max_pods = self.allocatable.get("pods").map_or(i128::MAX, |m| m / 1000);
        if pods + 1 > max_pods {
            return Err(out_of("pods", 1, pods, max_pods));
        }
        let order = ["cpu", "memory", "ephemeral-storage"];
        let names = order.iter().map(|s| s.to_string()).filter(|n| requests.contains_key(n)).chain(requests.keys().filter(|k| !order.contains(&k.as_str())).cloned());
        for name in names {
            // Extended resources the node does not know may be cluster-level ones.
            if is_extended(&name) && !self.allocatable.contains_key(&name) {
                continue;
            }
            let want = requests[&name];
            let used = self.used.get(&name).copied().unwrap_or(0);
            let capacity = self.allocatable.get(&name).copied().unwrap_or(0);
            if want > capacity - used {
                // cpu in millicores, everything else in units, as the kubelet prints them.
                let unit = |v: i128| if name == "cpu" { v } else { (v + 999).div_euclid(1000) };
                return Err(out_of(&name, unit(want), unit(used), unit(capacity)));
            }
        }
        self.record(uid, requests);
        Ok(())
    }

    /// Counts a pod without checking it (one that already runs here).
    pub fn record(&mut self, uid: &str, requests: &BTreeMap<String, i128>) {
        if self.admitted.contains_key(uid) {
            return;
        }
        for (name, v) in requests {
            *self.used.entry(name.clone()).or_default() += v;
        }
        self.admitted.insert(uid.to_string(), requests.clone());
    }

    /// Gives back what a pod used (it finished, or is gone).
    pub fn release(&mut self, uid: &str) {
        let Some(requests) = self.admitted.remove(uid) else { return };
        for (name, v) in requests {
            if let Some(u) = self.used.get_mut(&name) {
                *u -= v;
            }
        }
    }
}

fn out_of(resource: &str, requested: i128, used: i128, capacity: i128) -> Rejection {
    Rejection {
        reason: format!("OutOf{resource}"),
        message: format!("Pod was rejected: Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(pods: &str, cpu: &str) -> Admission {
        Admission::new(&[("pods", pods), ("cpu", cpu), ("memory", "1Gi")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn requests(cpu: &str) -> BTreeMap<String, i128> {
        pod_requests(&json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    #[test]
    fn pods_are_admitted_until_cpu_runs_out() {
        let mut a = node("110", "2");
        a.admit("a", &requests("1500m")).unwrap();
        let r = a.admit("b", &requests("1")).unwrap_err();
        assert_eq!(r.reason, "OutOfcpu");
        assert_eq!(r.message, "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000");
        a.release("a");
        a.admit("b", &requests("1")).unwrap();
        assert!(a.is_admitted("b"));
    }

    #[test]
    fn the_pod_count_is_checked_first_and_memory_is_reported_in_bytes() {
        let mut a = node("1", "8");
        a.admit("a", &BTreeMap::new()).unwrap();
        let r = a.admit("b", &requests("100")).unwrap_err();
        assert_eq!((r.reason.as_str(), r.message.as_str()), ("OutOfpods", "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1"));

        let mut a = node("10", "8");
        let mem = pod_requests(&json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"memory": "2Gi"}}}]}}));
        let r = a.admit("m", &mem).unwrap_err();
        assert_eq!(r.reason, "OutOfmemory");
        assert!(r.message.ends_with("memory, requested: 2147483648, used: 0, capacity: 1073741824"), "{}", r.message);
    }

    #[test]
    fn pods_that_already_run_are_counted_without_a_check() {
        let mut a = node("110", "1");
        a.record("old", &requests("2"));
        assert_eq!(a.admit("new", &requests("1m")).unwrap_err().reason, "OutOfcpu");
    }
}
