//! Resource arithmetic: what a pod requests and what a node offers, as plain
//! integers (milli-CPU, bytes, counts), the way upstream's `framework.Resource` keeps
//! them so that filtering never parses a quantity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_api::validation::quantity::Quantity as Parsed;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// CPU the scoring plugins assume for a container that requests none (upstream's
/// `DefaultMilliCPURequest`), so that many request-less pods do not pile onto one
/// node.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed likewise (`DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A vector of resources. Extended resources (`nvidia.com/gpu`, hugepages) live in
/// `scalar`, sorted by name; there are rarely more than a few.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for a node's allocatable (`pods`).
    pub allowed_pods: i64,
    pub scalar: Vec<(String, i64)>,
}

impl Resource {
    /// The resources of a `ResourceList` (a node's allocatable, a container's requests).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resource {
        let mut r = Resource::default();
        r.add_list(list);
        r
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0 && self.memory == 0 && self.ephemeral_storage == 0 && self.scalar.iter().all(|(_, v)| *v == 0)
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    fn scalar_mut(&mut self, name: &str) -> &mut i64 {
        let i = match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.scalar.insert(i, (name.to_string(), 0));
                i
            }
        };
        &mut self.scalar[i].1
    }

    pub fn add_list(&mut self, list: &BTreeMap<String, Quantity>) {
        for (name, q) in list {
            match name.as_str() {
                CPU => self.milli_cpu += milli_value(q),
                MEMORY => self.memory += value(q),
                EPHEMERAL_STORAGE => self.ephemeral_storage += value(q),
                PODS => self.allowed_pods += value(q),
                other if is_scalar_resource_name(other) => *self.scalar_mut(other) += value(q),
                _ => {}
            }
        }
    }

    /// Adds another vector (a pod joining a node).
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pods += other.allowed_pods;
        for (name, v) in &other.scalar {
            *self.scalar_mut(name) += v;
        }
    }

    /// Subtracts another vector (a pod leaving a node).
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pods -= other.allowed_pods;
        for (name, v) in &other.scalar {
            *self.scalar_mut(name) -= v;
        }
    }

    /// Raises each dimension to at least `other`'s.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let mine = self.scalar_mut(name);
            *mine = (*mine).max(*v);
        }
    }
}

/// `MilliValue()` of a quantity, 0 if it does not parse (the API validated it).
pub fn milli_value(q: &Quantity) -> i64 {
    Parsed::parse(&q.0).map(|p| clamp(p.milli_value())).unwrap_or(0)
}

/// `Value()` of a quantity (rounded up), 0 if it does not parse.
pub fn value(q: &Quantity) -> i64 {
    Parsed::parse(&q.0).map(|p| clamp(p.value())).unwrap_or(0)
}

fn clamp(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Whether the scheduler accounts for a resource besides cpu, memory,
/// ephemeral-storage and pods: extended resources (`example.com/foo`), prefixed
/// native ones (`kubernetes.io/…`), hugepages and attachable volumes
/// (`schedutil.IsScalarResourceName`).
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.contains('/') && !name.starts_with("requests.") || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

/// What a pod asks of a node, as `computePodResourceRequest` /
/// `resourcehelper.PodRequests` compute it: the sum of the regular containers (and of
/// restartable init containers, the sidecars, which keep running), at least the
/// largest need of any init container while it runs (itself plus the sidecars
/// started before it), plus the pod overhead.
///
/// With `non_missing` set, a container that names no cpu or memory request counts
/// as requesting [`DEFAULT_MILLI_CPU_REQUEST`] / [`DEFAULT_MEMORY_REQUEST`]: that is
/// the variant the scoring plugins use (`NonZeroRequested`).
pub fn pod_requests(pod: &Pod, non_missing: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else { return Resource::default() };
    let container = |c: &Container| -> Resource {
        let empty = BTreeMap::new();
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
        let mut r = Resource::from_list(requests);
        if non_missing {
            if !requests.contains_key(CPU) {
                r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
            }
            if !requests.contains_key(MEMORY) {
                r.memory = DEFAULT_MEMORY_REQUEST;
            }
        }
        r
    };
    let mut total = Resource::default();
    for c in &spec.containers {
        total.add(&container(c));
    }
    let mut sidecars = Resource::default();
    let mut init_peak = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let mut need = container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&need);
            sidecars.add(&need);
            need = sidecars.clone();
        } else {
            need.add(&sidecars);
        }
        init_peak.set_max(&need);
    }
    total.set_max(&init_peak);
    if let Some(overhead) = &spec.overhead {
        total.add_list(overhead);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MakePod;

    #[test]
    fn quantities_become_milli_cpu_and_bytes() {
        assert_eq!(milli_value(&Quantity("500m".into())), 500);
        assert_eq!(milli_value(&Quantity("2".into())), 2000);
        assert_eq!(value(&Quantity("1Gi".into())), 1 << 30);
        assert_eq!(value(&Quantity("1.5k".into())), 1500);
        assert_eq!(value(&Quantity("junk".into())), 0);
    }

    #[test]
    fn init_containers_count_at_their_peak_not_their_sum() {
        // Upstream's example: containers 2+1 cpu, 1G+1G; init containers (2, 1G) and
        // (2, 3G) → cpu 3, memory 3G.
        let pod = MakePod::new("p")
            .init_container(&[("cpu", "2"), ("memory", "1G")])
            .init_container(&[("cpu", "2"), ("memory", "3G")])
            .container(&[("cpu", "2"), ("memory", "1G")])
            .container(&[("cpu", "1"), ("memory", "1G")])
            .obj();
        let r = pod_requests(&pod, false);
        assert_eq!((r.milli_cpu, r.memory), (3000, 3_000_000_000));
    }

    #[test]
    fn sidecars_add_to_the_pod_and_to_later_init_containers() {
        let pod = MakePod::new("p")
            .sidecar(&[("cpu", "1")])
            .init_container(&[("cpu", "3")])
            .container(&[("cpu", "1")])
            .obj();
        // Running: container 1 + sidecar 1 = 2; while the init container runs: 3 + 1 = 4.
        assert_eq!(pod_requests(&pod, false).milli_cpu, 4000);
        let pod = MakePod::new("p").sidecar(&[("cpu", "2")]).init_container(&[("cpu", "1")]).container(&[("cpu", "2")]).obj();
        assert_eq!(pod_requests(&pod, false).milli_cpu, 4000);
    }

    #[test]
    fn overhead_and_extended_resources_are_added() {
        let pod = MakePod::new("p").container(&[("cpu", "1"), ("nvidia.com/gpu", "2")]).overhead(&[("cpu", "250m")]).obj();
        let r = pod_requests(&pod, false);
        assert_eq!(r.milli_cpu, 1250);
        assert_eq!(r.scalar("nvidia.com/gpu"), 2);
    }

    #[test]
    fn containers_without_requests_count_defaults_only_for_scoring() {
        let pod = MakePod::new("p").container(&[]).container(&[("cpu", "0")]).obj();
        assert!(pod_requests(&pod, false).is_zero());
        let r = pod_requests(&pod, true);
        // The second container set cpu explicitly to zero: only its memory is defaulted.
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn only_prefixed_names_are_scalar_resources() {
        assert!(is_scalar_resource_name("nvidia.com/gpu"));
        assert!(is_scalar_resource_name("hugepages-2Mi"));
        assert!(is_scalar_resource_name("kubernetes.io/something"));
        assert!(!is_scalar_resource_name("cpu"));
        assert!(!is_scalar_resource_name("requests.nvidia.com/gpu"));
    }
}
