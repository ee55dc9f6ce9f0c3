//! The scheduling framework: one interface per extension point, the default plugin
//! set with upstream's order and weights, and the algorithm that runs them for one
//! pod over a [`Snapshot`] (`schedulePod` upstream).
//!
//! The framework only decides: it reads a snapshot and returns a node or a
//! [`FitError`]; assuming, binding and reporting belong to [`crate::scheduler`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rand::Rng;

use crate::plugins::{self, interpodaffinity, podtopologyspread, volume_binding};
use crate::status::{Code, Diagnosis, FitError, Status};
use crate::types::{LabelColumn, NamespaceLabels, NodeInfo, PodInfo};

/// The highest score a plugin gives a node (`framework.MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Topology keys the cache keeps [`LabelColumn`]s for.
pub const COLUMN_KEYS: [&str; 2] = ["topology.kubernetes.io/zone", "topology.kubernetes.io/region"];

/// Below this many nodes every node is filtered (`minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// What one scheduling cycle reads: the nodes with their pods (assumed ones
/// included), the order to visit them in, namespace labels, and the pods nominated
/// to run on each node after a preemption.
pub struct Snapshot<'a> {
    pub nodes: &'a [NodeInfo],
    /// Node name to index into `nodes`.
    pub index: &'a HashMap<String, usize>,
    /// Indices into `nodes`, zones interleaved (upstream's node tree order), so that
    /// the nodes a sampled search looks at are spread over zones.
    pub order: &'a [usize],
    pub namespaces: &'a NamespaceLabels,
    /// Interned label columns of common topology keys (zone, region), aligned with
    /// `nodes`; keys without a column are read from each node's labels.
    pub columns: &'a HashMap<String, LabelColumn>,
    pub nominated: &'a HashMap<String, Vec<Arc<PodInfo>>>,
    /// Whether any pod in the cluster has pod (anti-)affinity of any kind, and any
    /// required anti-affinity: when none has, the InterPodAffinity work is skipped.
    pub any_pod_with_affinity: bool,
    pub any_pod_with_required_anti_affinity: bool,
}

impl<'a> Snapshot<'a> {
    pub fn node(&self, name: &str) -> Option<&'a NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }
}

/// What PreFilter and PreScore plugins computed for one pod, read by their Filter
/// and Score calls (upstream's `CycleState`, with one typed slot per plugin).
#[derive(Debug, Clone, Default)]
pub struct CycleState {
    pub inter_pod_affinity: Option<interpodaffinity::PreFilterState>,
    pub inter_pod_affinity_score: Option<interpodaffinity::PreScoreState>,
    pub topology_spread: Option<podtopologyspread::PreFilterState>,
    pub topology_spread_score: Option<podtopologyspread::PreScoreState>,
    pub volume_binding: Option<volume_binding::PreFilterState>,
    /// Filter plugins whose PreFilter said Skip, as bits by position in
    /// [`Framework::filters`] (a set of names would cost string compares per node).
    pub skip_filter_mask: u64,
}

/// What a PreFilter returned besides its status: the only nodes worth filtering, if
/// it knows (NodeAffinity on `metadata.name`).
pub type PreFilterResult = Option<HashSet<String>>;

pub trait PreFilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Computes per-pod state. `Skip` means the plugin's Filter has nothing to check;
    /// a rejection makes the pod unschedulable on every node.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot<'_>) -> (Status, PreFilterResult);
    /// Updates the state as if `other` ran on `node` (nominated pods, preemption
    /// reprieves).
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _other: &PodInfo, _node: &NodeInfo, _snapshot: &Snapshot<'_>) {}
    /// Updates the state as if `other` left `node` (preemption victims).
    fn remove_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _other: &PodInfo, _node: &NodeInfo, _snapshot: &Snapshot<'_>) {}
}

pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Upstream's default weight in the default profile.
    fn weight(&self) -> i64;
    /// Computes per-pod state over the feasible nodes; `Skip` leaves the plugin out.
    fn pre_score(&self, _state: &mut CycleState, _pod: &PodInfo, _feasible: &[&NodeInfo], _snapshot: &Snapshot<'_>) -> Status {
        Status::success()
    }
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Brings the raw scores (one per feasible node, same order) to 0..=100.
    fn normalize(&self, _state: &CycleState, _feasible: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// Upstream's `DefaultNormalizeScore`: scales to `0..=max` by the largest score,
/// optionally reversed (fewer is better).
pub fn default_normalize(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = max * *s / highest;
        *s = if reverse { max - v } else { v };
    }
}

/// How many feasible nodes are enough (`numFeasibleNodesToFind`): all of a small
/// cluster; of a large one, a percentage that shrinks as the cluster grows
/// (50% − nodes/125, at least 5%), and never fewer than 100 nodes.
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let pct = match percentage {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => 50usize.saturating_sub(num_all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
    };
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why a cycle did not produce a node.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// The cluster has no nodes (upstream's `ErrNoNodesAvailable`).
    NoNodes,
    /// No node fits; the diagnosis says why per node.
    Unfit(Box<FitError>),
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str("no nodes available to schedule pods"),
            ScheduleError::Unfit(e) => e.fmt(f),
        }
    }
}

/// A successful cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// The plugins of the default profile, in upstream's order.
pub struct Framework {
    pub pre_filters: Vec<Arc<dyn PreFilterPlugin>>,
    pub filters: Vec<Arc<dyn FilterPlugin>>,
    pub scores: Vec<Arc<dyn ScorePlugin>>,
    /// `percentageOfNodesToScore`; `None` is adaptive.
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl Default for Framework {
    fn default() -> Self {
        Framework::new(None)
    }
}

impl Framework {
    /// The default profile: Filter in the order NodeUnschedulable, NodeName,
    /// TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, VolumeBinding,
    /// PodTopologySpread, InterPodAffinity; Score with weights TaintToleration 3,
    /// NodeAffinity 2, NodeResourcesFit 1, PodTopologySpread 2, InterPodAffinity 2,
    /// NodeResourcesBalancedAllocation 1. VolumeBinding reads no claims here (see
    /// [`Framework::with_volume_binding`]).
    pub fn new(percentage_of_nodes_to_score: Option<u32>) -> Framework {
        Framework::with_volume_binding(percentage_of_nodes_to_score, Arc::new(volume_binding::VolumeBinding::default()))
    }

    /// The default profile with a VolumeBinding plugin that reads the scheduler's
    /// claims, volumes and classes.
    pub fn with_volume_binding(percentage_of_nodes_to_score: Option<u32>, volumes: Arc<volume_binding::VolumeBinding>) -> Framework {
        use plugins::*;
        let node_affinity = Arc::new(nodeaffinity::NodeAffinity);
        let ports = Arc::new(nodeports::NodePorts);
        let spread = Arc::new(podtopologyspread::PodTopologySpread);
        let ipa = Arc::new(interpodaffinity::InterPodAffinity);
        let taints = Arc::new(tainttoleration::TaintToleration);
        let fit = Arc::new(noderesources::Fit);
        Framework {
            pre_filters: vec![node_affinity.clone(), ports.clone(), volumes.clone(), spread.clone(), ipa.clone()],
            filters: vec![
                Arc::new(nodeunschedulable::NodeUnschedulable),
                Arc::new(nodename::NodeName),
                taints.clone(),
                node_affinity.clone(),
                ports,
                fit.clone(),
                volumes,
                spread.clone(),
                ipa.clone(),
            ],
            scores: vec![taints, node_affinity, fit, spread, ipa, Arc::new(noderesources::BalancedAllocation)],
            percentage_of_nodes_to_score,
        }
    }

    /// Runs the Filter plugins in order; the first rejection is the node's status.
    pub fn run_filters(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for (i, f) in self.filters.iter().enumerate() {
            if state.skip_filter_mask & (1 << i) != 0 {
                continue;
            }
            let s = f.filter(state, pod, node);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    /// Runs the filters twice when pods of at least the pod's priority are nominated
    /// to the node: once as if they ran there (so a preemptor's room is not taken),
    /// once without them (so that affinity to them is not assumed). Upstream's
    /// `RunFilterPluginsWithNominatedPods`.
    pub fn run_filters_with_nominated(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot<'_>) -> Status {
        if snapshot.nominated.is_empty() {
            return self.run_filters(state, pod, node);
        }
        let nominated: Vec<&Arc<PodInfo>> = snapshot
            .nominated
            .get(&node.name)
            .into_iter()
            .flatten()
            .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
            .collect();
        if nominated.is_empty() {
            return self.run_filters(state, pod, node);
        }
        let mut with_state = state.clone();
        let mut with_node = node.clone();
        for p in nominated {
            with_node.add_pod(p.clone());
            for pf in &self.pre_filters {
                pf.add_pod(&mut with_state, pod, p, &with_node, snapshot);
            }
        }
        let s = self.run_filters(&with_state, pod, &with_node);
        if !s.is_success() {
            return s;
        }
        self.run_filters(state, pod, node)
    }

    /// Runs the PreFilter plugins. `Err` carries the rejection.
    pub fn run_pre_filters(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot<'_>) -> Result<PreFilterResult, Status> {
        let mut result: PreFilterResult = None;
        for pf in &self.pre_filters {
            let (s, names) = pf.pre_filter(state, pod, snapshot);
            match s.code() {
                Code::Skip => {
                    for (i, f) in self.filters.iter().enumerate() {
                        if f.name() == pf.name() {
                            state.skip_filter_mask |= 1 << i;
                        }
                    }
                }
                Code::Success => {}
                _ => return Err(s),
            }
            if let Some(names) = names {
                result = Some(match result {
                    None => names,
                    Some(prev) => prev.intersection(&names).cloned().collect(),
                });
            }
        }
        Ok(result)
    }

    /// One scheduling cycle's decision for `pod`. `next_start` rotates the node the
    /// search starts at across cycles, as upstream's `nextStartNodeIndex`.
    pub fn schedule(&self, pod: &PodInfo, snapshot: &Snapshot<'_>, next_start: &mut usize, rng: &mut impl Rng) -> Result<ScheduleResult, ScheduleError> {
        if snapshot.nodes.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        let mut state = CycleState::default();
        let (feasible, diagnosis, evaluated) = self.find_nodes_that_fit(&mut state, pod, snapshot, next_start);
        if feasible.is_empty() {
            return Err(ScheduleError::Unfit(Box::new(FitError { num_all_nodes: snapshot.nodes.len(), diagnosis })));
        }
        let feasible_nodes = feasible.len();
        if feasible.len() == 1 {
            return Ok(ScheduleResult { node: feasible[0].name.clone(), evaluated_nodes: evaluated, feasible_nodes });
        }
        let totals = self.prioritize(&mut state, pod, &feasible, snapshot);
        // Highest total wins; ties are broken uniformly at random (reservoir sampling).
        let mut best = 0;
        let mut ties = 0u32;
        for (i, t) in totals.iter().enumerate() {
            if *t > totals[best] {
                best = i;
                ties = 1;
            } else if *t == totals[best] {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = i;
                }
            }
        }
        Ok(ScheduleResult { node: feasible[best].name.clone(), evaluated_nodes: evaluated, feasible_nodes })
    }

    /// PreFilter and Filter: the feasible nodes (up to the sampling limit), why the
    /// others were rejected, and how many nodes were looked at.
    fn find_nodes_that_fit<'s>(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot<'s>,
        next_start: &mut usize,
    ) -> (Vec<&'s NodeInfo>, Diagnosis, usize) {
        let mut diagnosis = Diagnosis::default();
        let names = match self.run_pre_filters(state, pod, snapshot) {
            Ok(names) => names,
            Err(s) => {
                diagnosis.pre_filter_msg = s.message();
                diagnosis.add_plugin_status(&s);
                diagnosis.node_to_status.set_absent(s);
                return (Vec::new(), diagnosis, 0);
            }
        };
        // A pod nominated by an earlier preemption tries its node first.
        if let Some(nominated) = pod.nominated_node_name() {
            if names.as_ref().is_none_or(|n| n.contains(nominated)) {
                if let Some(node) = snapshot.node(nominated) {
                    if self.run_filters_with_nominated(state, pod, node, snapshot).is_success() {
                        return (vec![node], diagnosis, 1);
                    }
                }
            }
        }
        let order: Vec<usize>;
        let order: &[usize] = match &names {
            None => snapshot.order,
            Some(names) => {
                let mut nodes_left = BTreeSet::new();
                nodes_left.insert(plugins::nodeaffinity::NAME);
                diagnosis
                    .node_to_status
                    .set_absent(Status::unresolvable("", format!("node(s) didn't satisfy plugin(s) [{}]", nodes_left.into_iter().collect::<Vec<_>>().join(" "))));
                order = snapshot.order.iter().copied().filter(|i| names.contains(&snapshot.nodes[*i].name)).collect();
                &order
            }
        };
        let n = order.len();
        let want = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, n);
        let mut feasible = Vec::with_capacity(want.min(n));
        let start = if n == 0 { 0 } else { *next_start % n };
        let mut processed = 0;
        for i in 0..n {
            let node = &snapshot.nodes[order[(start + i) % n]];
            processed += 1;
            let s = self.run_filters_with_nominated(state, pod, node, snapshot);
            if s.is_success() {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            } else {
                diagnosis.add_plugin_status(&s);
                diagnosis.node_to_status.set(&node.name, s);
            }
        }
        if n > 0 {
            *next_start = (start + processed) % n;
        }
        (feasible, diagnosis, processed)
    }

    /// PreScore, Score and NormalizeScore: each feasible node's weighted total.
    pub fn prioritize(&self, state: &mut CycleState, pod: &PodInfo, feasible: &[&NodeInfo], snapshot: &Snapshot<'_>) -> Vec<i64> {
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = vec![0i64; feasible.len()];
        for sp in &self.scores {
            if sp.pre_score(state, pod, feasible, snapshot).code() == Code::Skip {
                continue;
            }
            for (i, node) in feasible.iter().enumerate() {
                scores[i] = sp.score(state, pod, node);
            }
            sp.normalize(state, feasible, &mut scores);
            let w = sp.weight();
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * w;
            }
        }
        totals
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{MakeNode, MakePod};
    use k8s_openapi::api::core::v1::{Node, Pod};
    use rand::SeedableRng;

    /// A cluster for framework tests: nodes with pods already on them.
    pub(crate) struct Harness {
        pub nodes: Vec<NodeInfo>,
        pub index: HashMap<String, usize>,
        pub order: Vec<usize>,
        pub namespaces: NamespaceLabels,
        pub columns: HashMap<String, LabelColumn>,
        pub nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    }

    impl Harness {
        pub(crate) fn new(nodes: Vec<Node>) -> Harness {
            let nodes: Vec<NodeInfo> = nodes.into_iter().map(|n| NodeInfo::new(Arc::new(n))).collect();
            let order = (0..nodes.len()).collect();
            let index = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
            let mut h = Harness { nodes, index, order, namespaces: NamespaceLabels::new(), columns: HashMap::new(), nominated: HashMap::new() };
            h.rebuild_columns();
            h
        }

        fn rebuild_columns(&mut self) {
            self.columns = COLUMN_KEYS.iter().map(|k| (k.to_string(), LabelColumn::build(&self.nodes, k))).collect();
        }

        /// Places a pod on its `spec.nodeName`.
        pub(crate) fn with_pod(mut self, pod: Pod) -> Harness {
            let info = Arc::new(PodInfo::new(Arc::new(pod)));
            let node = info.node_name().expect("pod has a node").to_string();
            self.nodes.iter_mut().find(|n| n.name == node).expect("node exists").add_pod(info);
            self
        }

        pub(crate) fn snapshot(&self) -> Snapshot<'_> {
            Snapshot {
                nodes: &self.nodes,
                index: &self.index,
                order: &self.order,
                namespaces: &self.namespaces,
                columns: &self.columns,
                nominated: &self.nominated,
                any_pod_with_affinity: self.nodes.iter().any(|n| !n.pods_with_affinity.is_empty()),
                any_pod_with_required_anti_affinity: self.nodes.iter().any(|n| !n.pods_with_required_anti_affinity.is_empty()),
            }
        }

        pub(crate) fn schedule(&self, pod: Pod) -> Result<ScheduleResult, ScheduleError> {
            let info = PodInfo::new(Arc::new(pod));
            let mut start = 0;
            Framework::default().schedule(&info, &self.snapshot(), &mut start, &mut rand::rngs::StdRng::seed_from_u64(7))
        }
    }

    pub(crate) fn info(pod: Pod) -> PodInfo {
        PodInfo::new(Arc::new(pod))
    }

    #[test]
    fn the_sample_size_adapts_to_the_cluster() {
        assert_eq!(num_feasible_nodes_to_find(None, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(None, 100), 100, "50% of 100 is raised to the minimum of 100");
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420, "50 - 1000/125 = 42%");
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500, "50 - 40 = 10%");
        assert_eq!(num_feasible_nodes_to_find(None, 10000), 500, "floored at 5%");
        assert_eq!(num_feasible_nodes_to_find(Some(100), 5000), 5000);
    }

    #[test]
    fn default_normalization_scales_by_the_highest_score() {
        let mut s = vec![0, 5, 10];
        default_normalize(100, false, &mut s);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 1, 2];
        default_normalize(100, true, &mut s);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(100, true, &mut s);
        assert_eq!(s, vec![100, 100]);
    }

    #[test]
    fn an_empty_cluster_has_no_nodes_available() {
        let h = Harness::new(vec![]);
        let err = h.schedule(MakePod::new("p").obj()).unwrap_err();
        assert_eq!(err.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn a_pod_lands_on_the_least_allocated_node() {
        let h = Harness::new(vec![MakeNode::new("busy").capacity("4", "8Gi").obj(), MakeNode::new("idle").capacity("4", "8Gi").obj()])
            .with_pod(MakePod::new("x").node("busy").container(&[("cpu", "3"), ("memory", "6Gi")]).obj());
        let r = h.schedule(MakePod::new("p").container(&[("cpu", "100m"), ("memory", "100Mi")]).obj()).unwrap();
        assert_eq!(r.node, "idle");
        assert_eq!(r.feasible_nodes, 2);
    }

    #[test]
    fn the_failure_message_counts_every_rejected_node() {
        let h = Harness::new(vec![
            MakeNode::new("a").capacity("2", "8Gi").taint("dedicated", "x", "NoSchedule").obj(),
            MakeNode::new("b").capacity("2", "8Gi").obj(),
            MakeNode::new("c").capacity("2", "8Gi").obj(),
        ]);
        let err = h.schedule(MakePod::new("p").container(&[("cpu", "3")]).obj()).unwrap_err();
        assert_eq!(err.to_string(), "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu.");
        let ScheduleError::Unfit(e) = err else { panic!() };
        assert_eq!(e.diagnosis.unschedulable_plugins.iter().copied().collect::<Vec<_>>(), vec!["NodeResourcesFit", "TaintToleration"]);
    }

    #[test]
    fn large_clusters_stop_filtering_after_enough_feasible_nodes_and_rotate_the_start() {
        let nodes: Vec<Node> = (0..1000).map(|i| MakeNode::new(&format!("n{i}")).capacity("4", "8Gi").obj()).collect();
        let h = Harness::new(nodes);
        let info = info(MakePod::new("p").obj());
        let mut start = 0;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let r = Framework::default().schedule(&info, &h.snapshot(), &mut start, &mut rng).unwrap();
        assert_eq!(r.evaluated_nodes, 420);
        assert_eq!(r.feasible_nodes, 420);
        assert_eq!(start, 420);
        Framework::default().schedule(&info, &h.snapshot(), &mut start, &mut rng).unwrap();
        assert_eq!(start, 840);
    }

    #[test]
    fn a_nominated_node_is_tried_first() {
        let h = Harness::new(vec![MakeNode::new("a").capacity("4", "8Gi").obj(), MakeNode::new("b").capacity("4", "8Gi").obj()])
            .with_pod(MakePod::new("x").node("b").container(&[("cpu", "2")]).obj());
        let r = h.schedule(MakePod::new("p").nominated("b").obj()).unwrap();
        assert_eq!((r.node.as_str(), r.evaluated_nodes), ("b", 1));
    }

    #[test]
    fn room_made_for_a_nominated_pod_is_not_taken_by_a_lower_priority_one() {
        let mut h = Harness::new(vec![MakeNode::new("a").capacity("2", "8Gi").obj()]);
        let preemptor = Arc::new(info(MakePod::new("high").priority(100).container(&[("cpu", "2")]).nominated("a").obj()));
        h.nominated.insert("a".into(), vec![preemptor]);
        let err = h.schedule(MakePod::new("low").priority(1).container(&[("cpu", "1")]).obj()).unwrap_err();
        assert_eq!(err.to_string(), "0/1 nodes are available: 1 Insufficient cpu.");
        // A pod of higher priority than the nominated one is not held back.
        assert!(h.schedule(MakePod::new("higher").priority(1000).container(&[("cpu", "1")]).obj()).is_ok());
    }

    #[test]
    fn affinity_to_a_node_name_filters_only_that_node() {
        let h = Harness::new(vec![MakeNode::new("a").capacity("2", "8Gi").obj(), MakeNode::new("b").capacity("2", "8Gi").obj()]);
        let pod = MakePod::new("ds")
            .container(&[("cpu", "3")])
            .required_node_affinity(vec![crate::testing::field_term(&[("metadata.name", "In", &["b"])])])
            .obj();
        let err = h.schedule(pod).unwrap_err();
        assert_eq!(err.to_string(), "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't satisfy plugin(s) [NodeAffinity].");
    }
}
