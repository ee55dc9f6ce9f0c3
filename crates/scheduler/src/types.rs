//! What the plugins read: [`PodInfo`], a pod with everything the plugins need
//! parsed once (requests, selectors, affinity terms, host ports), and [`NodeInfo`], a
//! node with the aggregates of the pods on it (`framework.NodeInfo` upstream).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint, Toleration};

use crate::resources::{pod_requests, Resource};
use crate::selectors::{pod_labels, NodeTerm, RequiredNodeAffinity, Selector, NO_LABELS};

/// Labels of each namespace, for affinity terms with a `namespaceSelector`.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// FNV-1a: the per-node maps of the topology plugins hash short label values
/// thousands of times per pod, where SipHash's DoS resistance buys nothing (the
/// keys are node labels, written by administrators).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A map keyed by label values, hashed with [`Fnv`].
pub type LabelMap<V> = HashMap<String, V, std::hash::BuildHasherDefault<Fnv>>;

// === impl AffinityTerm ===

/// A compiled `PodAffinityTerm`: which pods (namespaces and labels) it is about, and
/// the topology key that defines "together".
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub namespaces: Vec<String>,
    /// `None` selects no namespace (the term lists namespaces, or means its own).
    pub namespace_selector: Option<Selector>,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn compile(owner: &Pod, term: &PodAffinityTerm) -> AffinityTerm {
        let own_ns = owner.metadata.namespace.clone().unwrap_or_default();
        let listed = term.namespaces.clone().unwrap_or_default();
        // No namespaces and no namespace selector: the owner's own namespace.
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() { vec![own_ns] } else { listed };
        AffinityTerm {
            namespaces,
            namespace_selector: term.namespace_selector.as_ref().map(|s| Selector::compile(Some(s))),
            selector: Selector::compile_with_label_keys(
                term.label_selector.as_ref(),
                pod_labels(owner),
                term.match_label_keys.as_deref().unwrap_or_default(),
                term.mismatch_label_keys.as_deref().unwrap_or_default(),
            ),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` is one of the pods the term is about (`AffinityTerm.Matches`).
    pub fn matches(&self, pod: &PodInfo, namespaces: &NamespaceLabels) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| s.matches(namespaces.get(&pod.namespace).unwrap_or(&NO_LABELS)));
        ns_ok && self.selector.matches(pod.labels())
    }
}

#[derive(Debug, Clone)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

/// A host port a pod takes on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// `0.0.0.0` when the container names no host IP.
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two pods clash on the same protocol and port when either binds all addresses
    /// or both bind the same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port && self.protocol == other.protocol && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

// === impl PodInfo ===

/// A pod and what the plugins derive from it, computed once when the pod is seen.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.priority` (set by admission from the PriorityClass), 0 when absent.
    pub priority: i32,
    /// What NodeResourcesFit checks.
    pub requests: Resource,
    /// What the scoring plugins count (cpu and memory with defaults for containers
    /// that request none).
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub required_node_affinity: RequiredNodeAffinity,
    pub preferred_node_affinity: Vec<(i32, NodeTerm)>,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let requests = pod_requests(&pod, false);
        let non_zero = pod_requests(&pod, true);
        let spec = pod.spec.as_ref();
        let host_ports = spec
            .into_iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                let ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
                let protocol = p.protocol.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "TCP".into());
                Some(HostPort { ip, protocol, port })
            })
            .collect();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let preferred_node_affinity = affinity
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref())
            .map(|terms| terms.iter().filter(|t| t.weight != 0).map(|t| (t.weight, NodeTerm::compile(&t.preference))).collect())
            .unwrap_or_default();
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| terms.into_iter().flatten().map(|t| AffinityTerm::compile(&pod, t)).collect::<Vec<_>>();
        let preferred = |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .filter(|t| t.weight != 0)
                .map(|t| WeightedAffinityTerm { term: AffinityTerm::compile(&pod, &t.pod_affinity_term), weight: t.weight })
                .collect::<Vec<_>>()
        };
        PodInfo {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests,
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports,
            required_node_affinity: RequiredNodeAffinity::of(&pod),
            preferred_node_affinity,
            required_affinity_terms: required(pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            required_anti_affinity_terms: required(paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            preferred_affinity_terms: preferred(pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            preferred_anti_affinity_terms: preferred(paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        pod_labels(&self.pod)
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
    }

    pub fn node_name(&self) -> Option<&str> {
        self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
    }

    pub fn nominated_node_name(&self) -> Option<&str> {
        self.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).filter(|n| !n.is_empty())
    }

    /// `spec.preemptionPolicy: Never`.
    pub fn never_preempts(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) == Some("Never")
    }

    pub fn start_time(&self) -> Option<jiff::Timestamp> {
        self.pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0)
    }

    /// Whether the pod has pod affinity or anti-affinity of any kind.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity_terms.is_empty()
            && self.required_anti_affinity_terms.is_empty()
            && self.preferred_affinity_terms.is_empty()
            && self.preferred_anti_affinity_terms.is_empty())
    }
}

/// Whether `a` should survive preemption before `b` (`util.MoreImportantPod`):
/// higher priority, then the one that started earlier.
pub fn more_important(a: &PodInfo, b: &PodInfo) -> bool {
    if a.priority != b.priority {
        return a.priority > b.priority;
    }
    match (a.start_time(), b.start_time()) {
        (Some(x), Some(y)) => x < y,
        // A pod that has not started is the less important one.
        (Some(_), None) => true,
        _ => false,
    }
}

// === impl NodeInfo ===

/// A node and the aggregate of the pods on it, assumed ones included.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// `None` for a placeholder: pods are bound to a node the cache has not seen
    /// (yet, or any more).
    pub node: Option<Arc<Node>>,
    pub allocatable: Resource,
    pub requested: Resource,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    /// Pods with pod (anti-)affinity terms of any kind, for InterPodAffinity scoring.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// Pods with required anti-affinity, which constrain every incoming pod.
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    /// Host ports in use (one entry per pod and port).
    pub used_ports: Vec<HostPort>,
    /// Bumped on every change.
    pub generation: u64,
    /// Copied out of the Node object: every filter reads them, and the Node itself
    /// is large and far away in memory.
    taints: Vec<Taint>,
    unschedulable: bool,
    /// The last count of pods matching a selector, with the generation and the
    /// selector it holds for: consecutive pods of one workload ask every node the
    /// same question, and most nodes have not changed since.
    match_memo: std::cell::Cell<Option<(u64, u64, i64)>>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo { name: node.metadata.name.clone().unwrap_or_default(), ..Default::default() };
        info.set_node(node);
        info
    }

    pub fn placeholder(name: &str) -> NodeInfo {
        NodeInfo { name: name.to_string(), ..Default::default() }
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref()).map(Resource::from_list).unwrap_or_default();
        self.taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        self.node = Some(node);
        self.generation += 1;
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref()).unwrap_or(&NO_LABELS)
    }

    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// `count(pods)` memoized under `key` until the node changes.
    pub fn memoized_count(&self, key: u64, count: impl FnOnce(&[Arc<PodInfo>]) -> i64) -> i64 {
        if let Some((generation, k, n)) = self.match_memo.get() {
            if generation == self.generation && k == key {
                return n;
            }
        }
        let n = count(&self.pods);
        self.match_memo.set(Some((self.generation, key, n)));
        n
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_cpu += pod.non_zero_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity.push(pod.clone());
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes the pod with this uid; returns it if it was there.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_cpu -= pod.non_zero_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        self.pods_with_affinity.retain(|p| p.uid != uid);
        self.pods_with_required_anti_affinity.retain(|p| p.uid != uid);
        self.generation += 1;
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{selector, MakeNode, MakePod};

    fn info(pod: Pod) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    #[test]
    fn adding_and_removing_pods_keeps_the_aggregates() {
        let mut n = NodeInfo::new(Arc::new(MakeNode::new("n").capacity("4", "8Gi").obj()));
        assert_eq!(n.allocatable.milli_cpu, 4000);
        assert_eq!(n.allocatable.allowed_pods, 110);
        let a = info(MakePod::new("a").container(&[("cpu", "1")]).host_port(80, "TCP", "").obj());
        let b = info(MakePod::new("b").container(&[("cpu", "500m"), ("memory", "1Gi")]).pod_anti_affinity("zone", selector(&[("x", "y")])).obj());
        n.add_pod(a.clone());
        n.add_pod(b.clone());
        assert_eq!(n.requested.milli_cpu, 1500);
        assert_eq!(n.non_zero_memory, crate::resources::DEFAULT_MEMORY_REQUEST + (1 << 30));
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(n.pods_with_required_anti_affinity.len(), 1);
        assert!(n.remove_pod("a-uid").is_some());
        assert!(n.remove_pod("a-uid").is_none());
        assert_eq!(n.requested.milli_cpu, 500);
        assert!(n.used_ports.is_empty());
        n.remove_pod("b-uid");
        assert!(n.pods_with_affinity.is_empty() && n.pods_with_required_anti_affinity.is_empty());
        assert_eq!(n.requested, Resource { scalar: vec![], ..Default::default() });
    }

    #[test]
    fn host_ports_clash_on_wildcard_or_equal_addresses() {
        let hp = |ip: &str, proto: &str, port| HostPort { ip: ip.into(), protocol: proto.into(), port };
        assert!(hp("0.0.0.0", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(!hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.2", "TCP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "UDP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "TCP", 81)));
    }

    #[test]
    fn affinity_terms_default_to_the_owners_namespace() {
        let owner = MakePod::new("o").namespace("team").pod_affinity("zone", selector(&[("app", "db")])).obj();
        let term = &PodInfo::new(Arc::new(owner)).required_affinity_terms[0];
        let ns = NamespaceLabels::new();
        assert!(term.matches(&info(MakePod::new("d").namespace("team").label("app", "db").obj()), &ns));
        assert!(!term.matches(&info(MakePod::new("d").namespace("other").label("app", "db").obj()), &ns));
    }

    #[test]
    fn affinity_terms_select_namespaces_by_label() {
        let owner = MakePod::new("o")
            .namespace("team")
            .pod_affinity_in_namespaces("zone", selector(&[("app", "db")]), selector(&[("env", "prod")]))
            .obj();
        let term = &PodInfo::new(Arc::new(owner)).required_affinity_terms[0];
        let mut ns = NamespaceLabels::new();
        ns.insert("prod-a".into(), [("env".to_string(), "prod".to_string())].into_iter().collect());
        assert!(term.matches(&info(MakePod::new("d").namespace("prod-a").label("app", "db").obj()), &ns));
        // With a selector, the owner's namespace is no longer implied.
        assert!(!term.matches(&info(MakePod::new("d").namespace("team").label("app", "db").obj()), &ns));
    }

    #[test]
    fn importance_is_priority_then_start_time() {
        let hi = info(MakePod::new("hi").priority(10).obj());
        let old = info(MakePod::new("old").start_time(100).obj());
        let new = info(MakePod::new("new").start_time(200).obj());
        assert!(more_important(&hi, &old));
        assert!(more_important(&old, &new));
        assert!(!more_important(&new, &old));
    }
}

// === impl LabelColumn ===

/// One label of every node, by node index, with the values interned: the topology
/// plugins walk all nodes per pod, and reading a small integer per node is far
/// cheaper than a label map lookup.
#[derive(Debug, Clone, Default)]
pub struct LabelColumn {
    pub values: Vec<String>,
    /// Per node index: the value's index in `values`, or [`LabelColumn::MISSING`].
    pub ids: Vec<u32>,
}

impl LabelColumn {
    pub const MISSING: u32 = u32::MAX;

    pub fn build(nodes: &[NodeInfo], key: &str) -> LabelColumn {
        let mut col = LabelColumn { values: Vec::new(), ids: Vec::with_capacity(nodes.len()) };
        let mut seen: LabelMap<u32> = LabelMap::default();
        for n in nodes {
            let id = match n.labels().get(key) {
                None => Self::MISSING,
                Some(v) => match seen.get(v.as_str()) {
                    Some(id) => *id,
                    None => {
                        let id = col.values.len() as u32;
                        seen.insert(v.clone(), id);
                        col.values.push(v.clone());
                        id
                    }
                },
            };
            col.ids.push(id);
        }
        col
    }
}
