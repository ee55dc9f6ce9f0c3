//! InterPodAffinity: required pod affinity and anti-affinity (the pod's own, and the
//! anti-affinity of pods already running) filter nodes by topology domain;
//! preferred terms, on both sides, score them.
//!
//! PreFilter counts, per topology pair (`zone=a`), the existing pods that match the
//! incoming pod's terms and those whose anti-affinity the incoming pod would break;
//! Filter then only looks the node's labels up in those counts.

use std::collections::HashMap;

use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreFilterResult, ScorePlugin, Snapshot, MAX_NODE_SCORE};
use crate::status::Status;
use crate::types::{AffinityTerm, NamespaceLabels, NodeInfo, PodInfo};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// What an existing pod's required affinity term is worth when the incoming pod
/// matches it (`hardPodAffinityWeight`).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Counts per topology pair `(key, value)`.
pub type TopologyCounts = HashMap<(String, String), i64>;

fn update(counts: &mut TopologyCounts, node: &NodeInfo, key: &str, delta: i64) {
    if let Some(v) = node.labels().get(key) {
        let pair = (key.to_string(), v.clone());
        let c = counts.entry(pair.clone()).or_default();
        *c += delta;
        if *c == 0 {
            counts.remove(&pair);
        }
    }
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, ns: &NamespaceLabels) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, ns))
}

#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    /// Pairs where a running pod's required anti-affinity matches the incoming pod.
    pub existing_anti_affinity_counts: TopologyCounts,
    /// Pairs holding pods that match all the incoming pod's affinity terms.
    pub affinity_counts: TopologyCounts,
    /// Pairs holding pods that match one of the incoming pod's anti-affinity terms.
    pub anti_affinity_counts: TopologyCounts,
    /// The incoming pod matches all its own affinity terms.
    pub matches_own_affinity: bool,
}

impl PreFilterState {
    /// Accounts for `other` on `node` (`delta` +1 added, -1 removed).
    fn update_with_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, ns: &NamespaceLabels, delta: i64) {
        for t in &other.required_anti_affinity_terms {
            if t.matches(pod, ns) {
                update(&mut self.existing_anti_affinity_counts, node, &t.topology_key, delta);
            }
        }
        if matches_all(&pod.required_affinity_terms, other, ns) {
            for t in &pod.required_affinity_terms {
                update(&mut self.affinity_counts, node, &t.topology_key, delta);
            }
        }
        for t in &pod.required_anti_affinity_terms {
            if t.matches(other, ns) {
                update(&mut self.anti_affinity_counts, node, &t.topology_key, delta);
            }
        }
    }
}

/// The node is in a domain with pods matching all the pod's affinity terms — or
/// nothing in the cluster matches yet and the pod matches its own terms (the first
/// of a group with affinity to itself).
pub fn satisfies_pod_affinity(state: &PreFilterState, pod: &PodInfo, node: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for t in &pod.required_affinity_terms {
        match node.labels().get(&t.topology_key) {
            Some(v) => {
                if state.affinity_counts.get(&(t.topology_key.clone(), v.clone())).copied().unwrap_or(0) <= 0 {
                    pods_exist = false;
                }
            }
            None => return false,
        }
    }
    pods_exist || (state.affinity_counts.is_empty() && state.matches_own_affinity)
}

pub fn satisfies_pod_anti_affinity(state: &PreFilterState, pod: &PodInfo, node: &NodeInfo) -> bool {
    if state.anti_affinity_counts.is_empty() {
        return true;
    }
    !pod.required_anti_affinity_terms.iter().any(|t| {
        node.labels().get(&t.topology_key).is_some_and(|v| state.anti_affinity_counts.get(&(t.topology_key.clone(), v.clone())).copied().unwrap_or(0) > 0)
    })
}

pub fn satisfies_existing_pods_anti_affinity(state: &PreFilterState, node: &NodeInfo) -> bool {
    if state.existing_anti_affinity_counts.is_empty() {
        return true;
    }
    !node.labels().iter().any(|(k, v)| state.existing_anti_affinity_counts.get(&(k.clone(), v.clone())).copied().unwrap_or(0) > 0)
}

pub struct InterPodAffinity;

impl PreFilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot<'_>) -> (Status, PreFilterResult) {
        let own = !pod.required_affinity_terms.is_empty() || !pod.required_anti_affinity_terms.is_empty();
        if !own && !snapshot.any_pod_with_required_anti_affinity {
            return (Status::skip(), None);
        }
        let ns = snapshot.namespaces;
        let mut s = PreFilterState { matches_own_affinity: matches_all(&pod.required_affinity_terms, pod, ns), ..Default::default() };
        for node in snapshot.nodes {
            for existing in &node.pods_with_required_anti_affinity {
                for t in &existing.required_anti_affinity_terms {
                    if t.matches(pod, ns) {
                        update(&mut s.existing_anti_affinity_counts, node, &t.topology_key, 1);
                    }
                }
            }
            if own {
                for existing in &node.pods {
                    if matches_all(&pod.required_affinity_terms, existing, ns) {
                        for t in &pod.required_affinity_terms {
                            update(&mut s.affinity_counts, node, &t.topology_key, 1);
                        }
                    }
                    for t in &pod.required_anti_affinity_terms {
                        if t.matches(existing, ns) {
                            update(&mut s.anti_affinity_counts, node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
        state.inter_pod_affinity = Some(s);
        (Status::success(), None)
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, snapshot: &Snapshot<'_>) {
        if let Some(s) = state.inter_pod_affinity.as_mut() {
            s.update_with_pod(pod, other, node, snapshot.namespaces, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, snapshot: &Snapshot<'_>) {
        if let Some(s) = state.inter_pod_affinity.as_mut() {
            s.update_with_pod(pod, other, node, snapshot.namespaces, -1);
        }
    }
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.inter_pod_affinity.as_ref() else { return Status::success() };
        if !satisfies_pod_affinity(s, pod, node) {
            return Status::unresolvable(NAME, ERR_REASON_AFFINITY);
        }
        if !satisfies_pod_anti_affinity(s, pod, node) {
            return Status::unschedulable(NAME, ERR_REASON_ANTI_AFFINITY);
        }
        if !satisfies_existing_pods_anti_affinity(s, node) {
            return Status::unschedulable(NAME, ERR_REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

/// Scores per topology key and value.
#[derive(Debug, Clone, Default)]
pub struct PreScoreState {
    pub topology_score: HashMap<String, HashMap<String, i64>>,
}

impl PreScoreState {
    fn add(&mut self, term: &AffinityTerm, weight: i64, target: &PodInfo, ns: &NamespaceLabels, node: &NodeInfo) {
        if term.matches(target, ns) {
            if let Some(v) = node.labels().get(&term.topology_key) {
                *self.topology_score.entry(term.topology_key.clone()).or_default().entry(v.clone()).or_default() += weight;
            }
        }
    }

    /// `processExistingPod`: the incoming pod's preferred terms against `existing`,
    /// and `existing`'s terms (required ones at the hard weight) against the incoming pod.
    fn process_existing(&mut self, pod: &PodInfo, existing: &PodInfo, node: &NodeInfo, ns: &NamespaceLabels) {
        if node.labels().is_empty() {
            return;
        }
        for wt in &pod.preferred_affinity_terms {
            self.add(&wt.term, wt.weight as i64, existing, ns, node);
        }
        for wt in &pod.preferred_anti_affinity_terms {
            self.add(&wt.term, -(wt.weight as i64), existing, ns, node);
        }
        for t in &existing.required_affinity_terms {
            self.add(t, HARD_POD_AFFINITY_WEIGHT, pod, ns, node);
        }
        for wt in &existing.preferred_affinity_terms {
            self.add(&wt.term, wt.weight as i64, pod, ns, node);
        }
        for wt in &existing.preferred_anti_affinity_terms {
            self.add(&wt.term, -(wt.weight as i64), pod, ns, node);
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, feasible: &[&NodeInfo], snapshot: &Snapshot<'_>) -> Status {
        if feasible.is_empty() {
            return Status::skip();
        }
        let own = !pod.preferred_affinity_terms.is_empty() || !pod.preferred_anti_affinity_terms.is_empty();
        if !own && !snapshot.any_pod_with_affinity {
            return Status::skip();
        }
        let mut s = PreScoreState::default();
        for node in snapshot.nodes {
            // Without preferred terms of its own, only pods with affinity can matter.
            let pods = if own { &node.pods } else { &node.pods_with_affinity };
            for existing in pods {
                s.process_existing(pod, existing, node, snapshot.namespaces);
            }
        }
        if s.topology_score.is_empty() {
            return Status::skip();
        }
        state.inter_pod_affinity_score = Some(s);
        Status::success()
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.inter_pod_affinity_score.as_ref() else { return 0 };
        s.topology_score.iter().filter_map(|(k, vals)| node.labels().get(k).and_then(|v| vals.get(v))).sum()
    }

    /// Min-max scaling to 0..=100.
    fn normalize(&self, state: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        if state.inter_pod_affinity_score.is_none() {
            return;
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 { (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64 } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::Harness;
    use crate::testing::{selector, MakeNode, MakePod};

    fn zones() -> Harness {
        Harness::new(vec![
            MakeNode::new("a1").capacity("4", "8Gi").zone("a").obj(),
            MakeNode::new("a2").capacity("4", "8Gi").zone("a").obj(),
            MakeNode::new("b1").capacity("4", "8Gi").zone("b").obj(),
        ])
    }

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    #[test]
    fn affinity_follows_matching_pods_into_their_zone() {
        let h = zones().with_pod(MakePod::new("db").label("app", "db").node("b1").obj());
        let pod = MakePod::new("web").pod_affinity(ZONE, selector(&[("app", "db")])).obj();
        assert_eq!(h.schedule(pod).unwrap().node, "b1");
        let lonely = MakePod::new("web").pod_affinity(ZONE, selector(&[("app", "cache")])).obj();
        assert_eq!(h.schedule(lonely).unwrap_err().to_string(), "0/3 nodes are available: 3 node(s) didn't match pod affinity rules.");
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_may_go_anywhere() {
        let h = zones();
        let pod = MakePod::new("w0").label("app", "web").pod_affinity(ZONE, selector(&[("app", "web")])).obj();
        assert!(h.schedule(pod).is_ok());
        // But not to a node without the topology label.
        let h = Harness::new(vec![MakeNode::new("bare").capacity("4", "8Gi").obj()]);
        let pod = MakePod::new("w0").label("app", "web").pod_affinity(ZONE, selector(&[("app", "web")])).obj();
        assert!(h.schedule(pod).is_err());
    }

    #[test]
    fn anti_affinity_keeps_pods_apart_both_ways() {
        let h = zones().with_pod(MakePod::new("w0").label("app", "web").node("a1").obj());
        let pod = MakePod::new("w1").label("app", "web").pod_anti_affinity(ZONE, selector(&[("app", "web")])).obj();
        assert_eq!(h.schedule(pod).unwrap().node, "b1");
        // An existing pod's anti-affinity repels the newcomer from its host.
        let h = zones().with_pod(MakePod::new("loner").node("a1").pod_anti_affinity(HOST, selector(&[("app", "web")])).obj());
        let err = Harness::new(vec![MakeNode::new("a1").capacity("4", "8Gi").zone("a").obj()])
            .with_pod(MakePod::new("loner").node("a1").pod_anti_affinity(HOST, selector(&[("app", "web")])).obj())
            .schedule(MakePod::new("w").label("app", "web").obj())
            .unwrap_err();
        assert_eq!(err.to_string(), "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules.");
        let r = h.schedule(MakePod::new("w").label("app", "web").obj()).unwrap();
        assert_ne!(r.node, "a1");
    }

    #[test]
    fn removing_a_pod_from_the_state_frees_its_domain() {
        let h = zones().with_pod(MakePod::new("w0").label("app", "web").node("a1").obj());
        let snapshot = h.snapshot();
        let pod = crate::framework::tests::info(MakePod::new("w1").label("app", "web").pod_anti_affinity(ZONE, selector(&[("app", "web")])).obj());
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(&mut state, &pod, &snapshot);
        assert!(!InterPodAffinity.filter(&state, &pod, &h.nodes[1]).is_success());
        let existing = h.nodes[0].pods[0].clone();
        InterPodAffinity.remove_pod(&mut state, &pod, &existing, &h.nodes[0], &snapshot);
        assert!(InterPodAffinity.filter(&state, &pod, &h.nodes[1]).is_success());
    }

    #[test]
    fn preferred_terms_pull_and_push() {
        let h = zones().with_pod(MakePod::new("db").label("app", "db").node("a2").obj());
        let pod = MakePod::new("web").preferred_pod_affinity(50, ZONE, selector(&[("app", "db")])).obj();
        let r = h.schedule(pod).unwrap();
        assert!(r.node.starts_with('a'), "{r:?}");
        let pod = MakePod::new("web").preferred_pod_anti_affinity(50, ZONE, selector(&[("app", "db")])).obj();
        assert_eq!(h.schedule(pod).unwrap().node, "b1");
        // An existing pod's preferred affinity to the newcomer pulls it too.
        let h = zones().with_pod(MakePod::new("fan").node("b1").preferred_pod_affinity(100, HOST, selector(&[("app", "star")])).obj());
        assert_eq!(h.schedule(MakePod::new("star").label("app", "star").obj()).unwrap().node, "b1");
    }

    #[test]
    fn scores_are_scaled_between_min_and_max() {
        let state = CycleState { inter_pod_affinity_score: Some(PreScoreState::default()), ..Default::default() };
        let mut scores = vec![-10, 0, 30];
        InterPodAffinity.normalize(&state, &[], &mut scores);
        assert_eq!(scores, vec![0, 25, 100]);
    }
}
