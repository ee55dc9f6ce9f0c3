//! PodTopologySpread: `topologySpreadConstraints` keep the number of matching pods
//! per topology domain within `maxSkew` of the least loaded domain
//! (`DoNotSchedule`, a filter) or prefer nodes in less loaded domains
//! (`ScheduleAnyway`, a score).
//!
//! Domains are counted over the nodes that pass the constraint's node inclusion
//! policies: `nodeAffinityPolicy` (default `Honor`: only nodes matching the pod's
//! nodeSelector and required node affinity) and `nodeTaintsPolicy` (default
//! `Ignore`). When fewer domains than `minDomains` exist, the global minimum is 0.

use std::collections::{HashMap, HashSet};

use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreFilterResult, ScorePlugin, Snapshot, MAX_NODE_SCORE};
use crate::plugins::tainttoleration::untolerated_taint;
use crate::selectors::Selector;
use crate::status::Status;
use crate::types::{LabelMap, NodeInfo, PodInfo};

pub const NAME: &str = "PodTopologySpread";
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints (missing required label)";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// One compiled constraint.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub max_skew: i32,
    pub topology_key: String,
    pub selector: Selector,
    /// Identifies (namespace, selector) for per-node memoized counts.
    pub count_key: u64,
    pub min_domains: i32,
    pub honor_node_affinity: bool,
    pub honor_node_taints: bool,
}

impl Constraint {
    /// Whether `node` counts as a domain member for `pod` under the inclusion policies.
    fn includes(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        if self.honor_node_affinity && !pod.required_node_affinity.matches(&node.name, node.labels()) {
            return false;
        }
        !(self.honor_node_taints && untolerated_taint(node.taints(), pod.tolerations()).is_some())
    }
}

/// The pod's constraints with `whenUnsatisfiable == when`, selectors merged with
/// `matchLabelKeys`.
pub fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let Some(spec) = pod.pod.spec.as_ref() else { return Vec::new() };
    spec.topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let selector = Selector::compile_with_label_keys(c.label_selector.as_ref(), pod.labels(), c.match_label_keys.as_deref().unwrap_or_default(), &[]);
            let count_key = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&pod.namespace, selector.fingerprint()).hash(&mut h);
                h.finish()
            };
            (c, selector, count_key)
        })
        .map(|(c, selector, count_key)| Constraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            selector,
            count_key,
            min_domains: c.min_domains.unwrap_or(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        })
        .collect()
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| node.labels().contains_key(&c.topology_key))
}

/// Pods on the node in `namespace`, not terminating, that the selector matches.
pub fn count_matching(pods: &[std::sync::Arc<PodInfo>], selector: &Selector, namespace: &str) -> i64 {
    pods.iter().filter(|p| !p.terminating && p.namespace == namespace && selector.matches(p.labels())).count() as i64
}

/// [`count_matching`] on a node, memoized on the node until it changes.
fn count_on(node: &NodeInfo, c: &Constraint, namespace: &str) -> i64 {
    node.memoized_count(c.count_key, |pods| count_matching(pods, &c.selector, namespace))
}

/// Adds `n` to `map[key]` without allocating when the key exists.
fn bump(map: &mut HashMap<String, i64>, key: &str, n: i64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_string(), n);
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    pub constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain value.
    pub counts: Vec<HashMap<String, i64>>,
}

impl PreFilterState {
    /// The global minimum for constraint `i`, 0 when there are fewer domains than
    /// `minDomains`.
    pub fn min_match(&self, i: usize) -> i64 {
        let counts = &self.counts[i];
        if (counts.len() as i64) < self.constraints[i].min_domains as i64 {
            return 0;
        }
        counts.values().copied().min().unwrap_or(0)
    }

    fn update_with_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace != pod.namespace || node.node.is_none() || !has_all_keys(node, &self.constraints) {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selector.matches(other.labels()) || !c.includes(pod, node) {
                continue;
            }
            bump(&mut self.counts[i], &node.labels()[&c.topology_key], delta);
        }
    }
}

/// Matching pods per domain value, for each constraint: over every node that has
/// all the constraints' keys and passes the constraint's inclusion policies. A
/// domain is listed (possibly with 0) as soon as one such node is in it.
pub fn count_domains(pod: &PodInfo, constraints: &[Constraint], snapshot: &Snapshot<'_>) -> Vec<HashMap<String, i64>> {
    let columns: Option<Vec<&crate::types::LabelColumn>> = constraints.iter().map(|c| snapshot.columns.get(&c.topology_key)).collect();
    // Inclusion that holds for every node: no node constraints to honour, taints ignored.
    let trivial = constraints.iter().all(|c| !c.honor_node_taints && (!c.honor_node_affinity || pod.required_node_affinity.is_empty()));
    match columns {
        Some(columns) if trivial && columns.iter().all(|col| col.ids.len() == snapshot.nodes.len()) => {
            // Walk interned ids instead of label maps.
            let mut by_id: Vec<Vec<Option<i64>>> = columns.iter().map(|col| vec![None; col.values.len()]).collect();
            'nodes: for (idx, node) in snapshot.nodes.iter().enumerate() {
                for col in &columns {
                    if col.ids[idx] == crate::types::LabelColumn::MISSING {
                        continue 'nodes;
                    }
                }
                for (i, c) in constraints.iter().enumerate() {
                    let n = count_on(node, c, &pod.namespace);
                    *by_id[i][columns[i].ids[idx] as usize].get_or_insert(0) += n;
                }
            }
            by_id
                .into_iter()
                .zip(&columns)
                .map(|(counts, col)| counts.into_iter().enumerate().filter_map(|(id, n)| n.map(|n| (col.values[id].clone(), n))).collect())
                .collect()
        }
        _ => {
            let mut counts = vec![HashMap::new(); constraints.len()];
            for node in snapshot.nodes {
                if !has_all_keys(node, constraints) {
                    continue;
                }
                for (i, c) in constraints.iter().enumerate() {
                    if !c.includes(pod, node) {
                        continue;
                    }
                    let n = count_on(node, c, &pod.namespace);
                    bump(&mut counts[i], &node.labels()[&c.topology_key], n);
                }
            }
            counts
        }
    }
}

pub struct PodTopologySpread;

impl PreFilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot<'_>) -> (Status, PreFilterResult) {
        let constraints = constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return (Status::skip(), None);
        }
        let counts = count_domains(pod, &constraints, snapshot);
        state.topology_spread = Some(PreFilterState { constraints, counts });
        (Status::success(), None)
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, _: &Snapshot<'_>) {
        if let Some(s) = state.topology_spread.as_mut() {
            s.update_with_pod(pod, other, node, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, _: &Snapshot<'_>) {
        if let Some(s) = state.topology_spread.as_mut() {
            s.update_with_pod(pod, other, node, -1);
        }
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `matching pods in the node's domain + 1 if the pod matches itself − global
    /// minimum ≤ maxSkew`, for every constraint.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.topology_spread.as_ref() else { return Status::success() };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Status::unresolvable(NAME, ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.selector.matches(pod.labels()));
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - s.min_match(i) > c.max_skew as i64 {
                return Status::unschedulable(NAME, ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

#[derive(Debug, Clone, Default)]
pub struct PreScoreState {
    pub constraints: Vec<Constraint>,
    /// Feasible nodes lacking a topology key: they score 0.
    pub ignored: HashSet<String>,
    /// Matching pods per topology value, one map per distinct topology key
    /// (constraints on the same key share their counts, as upstream's topology
    /// pairs do); `slot[i]` is constraint `i`'s map.
    pub pair_counts: Vec<LabelMap<i64>>,
    pub slot: Vec<usize>,
    /// `ln(domains + 2)` per constraint, so that keys with many domains weigh more.
    pub weights: Vec<f64>,
}

impl ScorePlugin for PodTopologySpread {
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
        let constraints = constraints(pod, "ScheduleAnyway");
        if constraints.is_empty() {
            return Status::skip();
        }
        let mut s = PreScoreState { constraints, ..Default::default() };
        let mut keys: Vec<&str> = Vec::new();
        for c in &s.constraints {
            let slot = keys.iter().position(|k| *k == c.topology_key).unwrap_or_else(|| {
                keys.push(&c.topology_key);
                keys.len() - 1
            });
            s.slot.push(slot);
        }
        s.pair_counts = vec![LabelMap::default(); keys.len()];
        let hostname: Vec<bool> = s.constraints.iter().map(|c| c.topology_key == HOSTNAME).collect();
        let mut domains = vec![0usize; s.constraints.len()];
        for node in feasible {
            if !has_all_keys(node, &s.constraints) {
                s.ignored.insert(node.name.clone());
                continue;
            }
            for (i, c) in s.constraints.iter().enumerate() {
                if hostname[i] {
                    continue;
                }
                let values = &mut s.pair_counts[s.slot[i]];
                let value = &node.labels()[&c.topology_key];
                if !values.contains_key(value) {
                    values.insert(value.clone(), 0);
                    domains[i] += 1;
                }
            }
        }
        s.weights = (0..s.constraints.len())
            .map(|i| {
                let size = if hostname[i] { feasible.len() - s.ignored.len() } else { domains[i] };
                ((size + 2) as f64).ln()
            })
            .collect();
        // Counts over all nodes for the domains the feasible nodes are in; per-node
        // (hostname) counts are taken in Score.
        let zonal: Vec<Constraint> = s.constraints.iter().zip(&hostname).filter(|(_, h)| !**h).map(|(c, _)| c.clone()).collect();
        if !zonal.is_empty() {
            // Nodes must carry every key, hostname ones included (upstream's
            // requireAllTopologies), so pass the hostname constraints' keys along.
            let counts = if zonal.len() == s.constraints.len() {
                count_domains(pod, &zonal, snapshot)
            } else {
                let all = count_domains(pod, &s.constraints, snapshot);
                all.into_iter().zip(&hostname).filter(|(_, h)| !**h).map(|(c, _)| c).collect()
            };
            let mut k = 0;
            for (i, _) in s.constraints.iter().enumerate() {
                if hostname[i] {
                    continue;
                }
                let slot = s.slot[i];
                for (value, count) in s.pair_counts[slot].iter_mut() {
                    *count += counts[k].get(value).copied().unwrap_or(0);
                }
                k += 1;
            }
        }
        state.topology_spread_score = Some(s);
        Status::success()
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.topology_spread_score.as_ref() else { return 0 };
        if s.ignored.contains(&node.name) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.labels().get(&c.topology_key) else { continue };
            let count = if c.topology_key == HOSTNAME {
                count_on(node, c, &pod.namespace)
            } else {
                s.pair_counts[s.slot[i]].get(v.as_str()).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Fewer matching pods is better: `100 * (max + min - score) / max`; ignored
    /// nodes get 0.
    fn normalize(&self, state: &CycleState, feasible: &[&NodeInfo], scores: &mut [i64]) {
        let Some(s) = state.topology_spread_score.as_ref() else { return };
        let counted = |i: usize| !s.ignored.contains(&feasible[i].name);
        let mut min = i64::MAX;
        let mut max = 0;
        for (i, sc) in scores.iter().enumerate() {
            if counted(i) {
                min = min.min(*sc);
                max = max.max(*sc);
            }
        }
        for (i, sc) in scores.iter_mut().enumerate() {
            *sc = if !counted(i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *sc) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::{info, Harness};
    use crate::testing::{selector, term, MakeNode, MakePod};
    use std::collections::HashMap;

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn three_zones() -> Harness {
        Harness::new(vec![
            MakeNode::new("a").capacity("4", "8Gi").zone("a").obj(),
            MakeNode::new("b").capacity("4", "8Gi").zone("b").obj(),
            MakeNode::new("c").capacity("4", "8Gi").zone("c").obj(),
        ])
    }

    fn web(name: &str) -> MakePod {
        MakePod::new(name).label("app", "web").spread(1, ZONE, "DoNotSchedule", selector(&[("app", "web")]))
    }

    #[test]
    fn max_skew_one_fills_zones_evenly() {
        let h = three_zones().with_pod(web("w0").node("a").obj()).with_pod(web("w1").node("b").obj());
        assert_eq!(h.schedule(web("w2").obj()).unwrap().node, "c");
        let h = h.with_pod(web("w2").node("c").obj()).with_pod(web("w3").node("a").obj());
        let r = h.schedule(web("w4").obj()).unwrap();
        assert!(r.node == "b" || r.node == "c");
        assert_eq!(r.feasible_nodes, 2);
    }

    #[test]
    fn a_skewed_cluster_reports_the_constraint() {
        let h = Harness::new(vec![MakeNode::new("a").capacity("4", "8Gi").zone("a").obj(), MakeNode::new("b").capacity("1", "8Gi").zone("b").obj()])
            .with_pod(web("w0").node("a").obj())
            .with_pod(MakePod::new("big").node("b").container(&[("cpu", "1")]).obj());
        let err = h.schedule(web("w1").container(&[("cpu", "100m")]).obj()).unwrap_err();
        assert_eq!(err.to_string(), "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match pod topology spread constraints.");
        let h = Harness::new(vec![MakeNode::new("bare").capacity("4", "8Gi").obj()]);
        let err = h.schedule(web("w").obj()).unwrap_err();
        assert_eq!(err.to_string(), "0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label).");
    }

    #[test]
    fn min_domains_makes_the_minimum_zero_until_enough_domains_exist() {
        let h = Harness::new(vec![MakeNode::new("a").capacity("4", "8Gi").zone("a").obj(), MakeNode::new("b").capacity("4", "8Gi").zone("b").obj()])
            .with_pod(web("w0").node("a").obj())
            .with_pod(web("w1").node("b").obj());
        assert!(h.schedule(web("w2").obj()).is_ok(), "1 + 1 - 1 <= 1");
        let err = h.schedule(web("w2").spread_with(|c| c.min_domains = Some(3)).obj()).unwrap_err();
        assert_eq!(err.to_string(), "0/2 nodes are available: 2 node(s) didn't match pod topology spread constraints.");
    }

    #[test]
    fn node_affinity_policy_decides_which_domains_count() {
        // Zone c is excluded by the pod's node selector; with Honor it is no domain, so
        // a and b (one pod each) are balanced. With Ignore, empty zone c is the minimum.
        let h = Harness::new(vec![
            MakeNode::new("a").capacity("4", "8Gi").zone("a").label("pool", "x").obj(),
            MakeNode::new("b").capacity("4", "8Gi").zone("b").label("pool", "x").obj(),
            MakeNode::new("c").capacity("4", "8Gi").zone("c").obj(),
        ])
        .with_pod(web("w0").node("a").obj())
        .with_pod(web("w1").node("b").obj());
        assert!(h.schedule(web("w2").node_selector("pool", "x").obj()).is_ok());
        let ignore = web("w2").node_selector("pool", "x").spread_with(|c| c.node_affinity_policy = Some("Ignore".into())).obj();
        assert!(h.schedule(ignore).is_err());
        let _ = term(&[]);
    }

    #[test]
    fn node_taints_policy_honor_leaves_out_tainted_nodes() {
        let h = Harness::new(vec![
            MakeNode::new("a").capacity("4", "8Gi").zone("a").obj(),
            MakeNode::new("b").capacity("4", "8Gi").zone("b").taint("k", "v", "NoSchedule").obj(),
        ])
        .with_pod(web("w0").node("a").obj());
        // By default tainted zone b counts (minimum 0), so zone a is full at skew 1.
        assert!(h.schedule(web("w1").obj()).is_err());
        let honor = web("w1").spread_with(|c| c.node_taints_policy = Some("Honor".into())).obj();
        assert_eq!(h.schedule(honor).unwrap().node, "a");
    }

    #[test]
    fn preemption_state_updates_move_the_minimum() {
        let h = three_zones().with_pod(web("w0").node("a").obj()).with_pod(web("w1").node("b").obj()).with_pod(web("w2").node("c").obj());
        let pod = info(web("w3").obj());
        let snap = h.snapshot();
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&mut state, &pod, &snap);
        assert_eq!(state.topology_spread.as_ref().unwrap().min_match(0), 1);
        let victim = h.nodes[2].pods[0].clone();
        PodTopologySpread.remove_pod(&mut state, &pod, &victim, &h.nodes[2], &snap);
        assert_eq!(state.topology_spread.as_ref().unwrap().min_match(0), 0);
        assert!(!PodTopologySpread.filter(&state, &pod, &h.nodes[0]).is_success());
        assert!(PodTopologySpread.filter(&state, &pod, &h.nodes[2]).is_success());
    }

    #[test]
    fn interned_columns_count_the_same_as_label_lookups() {
        let mut h = three_zones()
            .with_pod(web("w0").node("a").obj())
            .with_pod(web("w1").node("a").obj())
            .with_pod(MakePod::new("other").label("app", "db").node("b").obj());
        h.nodes.push(NodeInfo::new(std::sync::Arc::new(MakeNode::new("zoneless").capacity("4", "8Gi").obj())));
        h.index.insert("zoneless".into(), 3);
        let fast = {
            // Columns must match the node list.
            let columns: HashMap<String, crate::types::LabelColumn> =
                crate::framework::COLUMN_KEYS.iter().map(|k| (k.to_string(), crate::types::LabelColumn::build(&h.nodes, k))).collect();
            h.columns = columns;
            let pod = info(web("p").obj());
            count_domains(&pod, &constraints(&pod, "DoNotSchedule"), &h.snapshot())
        };
        h.columns.clear();
        let pod = info(web("p").obj());
        let slow = count_domains(&pod, &constraints(&pod, "DoNotSchedule"), &h.snapshot());
        assert_eq!(fast, slow);
        let want: HashMap<String, i64> = [("a".to_string(), 2), ("b".to_string(), 0), ("c".to_string(), 0)].into_iter().collect();
        assert_eq!(fast, vec![want]);
    }

    #[test]
    fn schedule_anyway_prefers_the_emptier_domain() {
        let h = three_zones().with_pod(web("w0").node("a").obj()).with_pod(web("w1").node("b").obj());
        let soft = MakePod::new("w2").label("app", "web").spread(1, ZONE, "ScheduleAnyway", selector(&[("app", "web")])).obj();
        assert_eq!(h.schedule(soft).unwrap().node, "c");
        let pod = info(MakePod::new("w").label("app", "web").spread(1, ZONE, "ScheduleAnyway", selector(&[("app", "web")])).obj());
        let feasible: Vec<&NodeInfo> = h.nodes.iter().collect();
        let mut state = CycleState::default();
        assert!(PodTopologySpread.pre_score(&mut state, &pod, &feasible, &h.snapshot()).is_success());
        let mut scores: Vec<i64> = feasible.iter().map(|n| PodTopologySpread.score(&state, &pod, n)).collect();
        // One matching pod in a and b, weight ln(3 + 2) ≈ 1.61 → 2; none in c.
        assert_eq!(scores, vec![2, 2, 0]);
        PodTopologySpread.normalize(&state, &feasible, &mut scores);
        assert_eq!(scores, vec![0, 0, 100]);
    }
}
