//! The scheduler's view of the cluster: every node with the pods on it, including
//! pods the scheduler has assumed onto a node before its binding is observed, and
//! the pods nominated to nodes by preemption.
//!
//! Assume, then confirm or forget: a pod chosen for a node is added at once, so the
//! next cycle already sees the node's resources taken; when the informer shows the
//! binding the entry is confirmed, and if binding fails it is forgotten.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::framework::{Snapshot, COLUMN_KEYS};
use crate::types::{LabelColumn, NamespaceLabels, NodeInfo, PodInfo};

/// The zone a node is in, for interleaving (`GetZoneKey`: region and zone).
fn zone_key(node: &NodeInfo) -> String {
    let l = node.labels();
    let region = l.get("topology.kubernetes.io/region").or_else(|| l.get("failure-domain.beta.kubernetes.io/region"));
    let zone = l.get("topology.kubernetes.io/zone").or_else(|| l.get("failure-domain.beta.kubernetes.io/zone"));
    match (region, zone) {
        (None, None) => String::new(),
        (r, z) => format!("{}:\u{0}:{}", r.map_or("", |s| s.as_str()), z.map_or("", |s| s.as_str())),
    }
}

#[derive(Debug, Clone)]
struct PodState {
    node: String,
    /// Placed by this scheduler; its binding has not been observed yet.
    assumed: bool,
}

#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    order: Vec<usize>,
    /// Node order and label columns need rebuilding (nodes came, went or moved zone).
    order_dirty: bool,
    columns: HashMap<String, LabelColumn>,
    /// Pods bound to nodes the cache does not know (yet, or any more).
    placeholders: HashMap<String, NodeInfo>,
    pods: HashMap<String, PodState>,
    namespaces: NamespaceLabels,
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node: HashMap<String, String>,
    pods_with_affinity: usize,
    pods_with_required_anti_affinity: usize,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    // --- nodes ---

    pub fn add_or_update_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            let before = self.nodes[i].labels().clone();
            self.nodes[i].set_node(node);
            if *self.nodes[i].labels() != before {
                self.order_dirty = true;
            }
            return;
        }
        let mut info = match self.placeholders.remove(&name) {
            Some(mut p) => {
                p.set_node(node);
                p
            }
            None => NodeInfo::new(node),
        };
        info.name = name.clone();
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        self.order_dirty = true;
    }

    /// A deleted node; pods still bound to it are kept on a placeholder until they go.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else { return };
        let mut info = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        if !info.pods.is_empty() {
            info.node = None;
            self.placeholders.insert(name.to_string(), info);
        }
        self.order_dirty = true;
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        match self.index.get(name) {
            Some(&i) => &mut self.nodes[i],
            None => self.placeholders.entry(name.to_string()).or_insert_with(|| NodeInfo::placeholder(name)),
        }
    }

    /// Zones interleaved: the first node of each zone, then the second, … (the
    /// node tree's order), so a search that stops early has looked at every zone.
    fn rebuild_order(&mut self) {
        let mut zones: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            zones.entry(zone_key(n)).or_default().push(i);
        }
        let longest = zones.values().map(Vec::len).max().unwrap_or(0);
        self.order.clear();
        for k in 0..longest {
            for z in zones.values() {
                if let Some(i) = z.get(k) {
                    self.order.push(*i);
                }
            }
        }
        self.columns = COLUMN_KEYS.iter().map(|k| (k.to_string(), LabelColumn::build(&self.nodes, k))).collect();
        self.order_dirty = false;
    }

    // --- pods ---

    fn count_affinity(&mut self, pod: &PodInfo, delta: isize) {
        if pod.has_affinity() {
            self.pods_with_affinity = self.pods_with_affinity.saturating_add_signed(delta);
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity = self.pods_with_required_anti_affinity.saturating_add_signed(delta);
        }
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        self.count_affinity(&pod, 1);
        self.pods.insert(pod.uid.clone(), PodState { node: node.to_string(), assumed });
        self.node_mut(node).add_pod(pod);
    }

    /// Takes a pod off its node; returns whether it was there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(state) = self.pods.remove(uid) else { return false };
        let removed = if let Some(&i) = self.index.get(&state.node) {
            self.nodes[i].remove_pod(uid)
        } else if let Some(p) = self.placeholders.get_mut(&state.node) {
            let r = p.remove_pod(uid);
            if p.pods.is_empty() {
                self.placeholders.remove(&state.node);
            }
            r
        } else {
            None
        };
        if let Some(p) = removed {
            self.count_affinity(&p, -1);
        }
        true
    }

    /// An assigned pod as the informer shows it: added, updated, or the binding of
    /// an assumed pod confirmed.
    pub fn add_or_update_pod(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name().map(str::to_string) else { return };
        self.remove_pod(&pod.uid);
        self.place(pod, &node, false);
    }

    /// Places a pod the scheduler chose a node for, before binding.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.uid);
        self.place(pod, node, true);
    }

    /// Undoes [`assume`](Self::assume) after a failed binding (not if the binding was
    /// observed meanwhile).
    pub fn forget(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|s| s.assumed)
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    // --- nominations ---

    /// Nominates `pod` to run on `node` once preemption's victims are gone; `None`
    /// clears the nomination.
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: Option<&str>) {
        self.delete_nominated(&pod.uid);
        if let Some(node) = node {
            self.nominated_node.insert(pod.uid.clone(), node.to_string());
            self.nominated.entry(node.to_string()).or_default().push(pod);
        }
    }

    pub fn delete_nominated(&mut self, uid: &str) {
        if let Some(node) = self.nominated_node.remove(uid) {
            if let Some(list) = self.nominated.get_mut(&node) {
                list.retain(|p| p.uid != uid);
                if list.is_empty() {
                    self.nominated.remove(&node);
                }
            }
        }
    }

    /// A pending pod as the informer shows it: its `status.nominatedNodeName`
    /// decides the nomination, except that a nomination made in memory is kept
    /// while neither the old nor the new object carries one yet
    /// (`UpdateNominatedPod`).
    pub fn update_nominated(&mut self, old_had_nomination: bool, pod: Arc<PodInfo>) {
        let node = match pod.nominated_node_name() {
            Some(n) => Some(n.to_string()),
            None if !old_had_nomination => self.nominated_node.get(&pod.uid).cloned(),
            None => None,
        };
        self.nominate(pod, node.as_deref());
    }

    pub fn nominated_node(&self, uid: &str) -> Option<&str> {
        self.nominated_node.get(uid).map(String::as_str)
    }

    /// Pods nominated to `node`.
    pub fn nominated_on(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map(Vec::as_slice).unwrap_or_default()
    }

    // --- namespaces ---

    pub fn set_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_string(), labels);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// What a scheduling cycle reads.
    pub fn snapshot(&mut self) -> Snapshot<'_> {
        if self.order_dirty {
            self.rebuild_order();
        }
        Snapshot {
            nodes: &self.nodes,
            index: &self.index,
            order: &self.order,
            namespaces: &self.namespaces,
            columns: &self.columns,
            nominated: &self.nominated,
            any_pod_with_affinity: self.pods_with_affinity > 0,
            any_pod_with_required_anti_affinity: self.pods_with_required_anti_affinity > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{selector, MakeNode, MakePod};

    fn info(pod: k8s_openapi::api::core::v1::Pod) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    #[test]
    fn assumed_pods_count_until_forgotten_or_confirmed() {
        let mut c = Cache::new();
        c.add_or_update_node(Arc::new(MakeNode::new("n").capacity("4", "8Gi").obj()));
        let p = info(MakePod::new("p").container(&[("cpu", "1")]).obj());
        c.assume(p.clone(), "n");
        assert!(c.is_assumed("p-uid"));
        assert_eq!(c.node("n").unwrap().requested.milli_cpu, 1000);
        c.forget("p-uid");
        assert_eq!(c.node("n").unwrap().requested.milli_cpu, 0);
        // Confirmed by the informer: no longer assumed, and forgetting is a no-op.
        c.assume(p, "n");
        c.add_or_update_pod(info(MakePod::new("p").node("n").container(&[("cpu", "1")]).obj()));
        assert!(!c.is_assumed("p-uid"));
        c.forget("p-uid");
        assert_eq!(c.node("n").unwrap().pods.len(), 1);
        assert_eq!(c.node("n").unwrap().requested.milli_cpu, 1000, "counted once");
    }

    #[test]
    fn pods_on_unknown_nodes_wait_on_placeholders() {
        let mut c = Cache::new();
        c.add_or_update_pod(info(MakePod::new("p").node("late").container(&[("cpu", "1")]).obj()));
        assert_eq!(c.node_count(), 0);
        c.add_or_update_node(Arc::new(MakeNode::new("late").capacity("4", "8Gi").obj()));
        assert_eq!(c.node("late").unwrap().requested.milli_cpu, 1000);
        c.remove_node("late");
        assert!(c.node("late").is_none());
        assert!(c.remove_pod("p-uid"));
        assert!(c.placeholders.is_empty());
    }

    #[test]
    fn nodes_are_visited_zone_by_zone() {
        let mut c = Cache::new();
        for (n, z) in [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("c1", "c"), ("c2", "c")] {
            c.add_or_update_node(Arc::new(MakeNode::new(n).zone(z).obj()));
        }
        let s = c.snapshot();
        let names: Vec<&str> = s.order.iter().map(|i| s.nodes[*i].name.as_str()).collect();
        assert_eq!(names, vec!["a1", "b1", "c1", "a2", "c2", "a3"]);
        c.remove_node("a1");
        let s = c.snapshot();
        assert_eq!(s.order.len(), 5);
        assert!(s.node("a2").is_some() && s.node("a1").is_none());
    }

    #[test]
    fn affinity_counters_follow_pods() {
        let mut c = Cache::new();
        c.add_or_update_node(Arc::new(MakeNode::new("n").obj()));
        c.add_or_update_pod(info(MakePod::new("p").node("n").pod_anti_affinity("zone", selector(&[("a", "b")])).obj()));
        assert!(c.snapshot().any_pod_with_required_anti_affinity);
        c.remove_pod("p-uid");
        assert!(!c.snapshot().any_pod_with_required_anti_affinity && !c.snapshot().any_pod_with_affinity);
    }

    #[test]
    fn a_fresh_nomination_survives_stale_updates() {
        let mut c = Cache::new();
        let p = info(MakePod::new("p").obj());
        c.nominate(p.clone(), Some("n"));
        c.update_nominated(false, p.clone());
        assert_eq!(c.nominated_node("p-uid"), Some("n"));
        assert_eq!(c.nominated_on("n").len(), 1);
        // The status carried a nomination and now has none: cleared.
        c.update_nominated(true, p);
        assert_eq!(c.nominated_node("p-uid"), None);
        assert!(c.nominated_on("n").is_empty());
    }
}
