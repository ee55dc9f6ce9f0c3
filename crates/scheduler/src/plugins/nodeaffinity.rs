//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes;
//! preferred node affinity terms add their weights to a node's score.

use std::collections::HashSet;

use crate::framework::{default_normalize, CycleState, FilterPlugin, PreFilterPlugin, PreFilterResult, ScorePlugin, Snapshot, MAX_NODE_SCORE};
use crate::status::{Code, Status};
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// Every term pins the pod to node names, and no name is in all of them.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.required_node_affinity.matches(&node.name, node.labels())
}

/// The node names a pod's required terms allow, when every term names nodes with
/// `metadata.name In (…)` (DaemonSet pods do): then only those need filtering.
pub fn node_names(pod: &PodInfo) -> Option<HashSet<String>> {
    let terms = pod
        .pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    if terms.node_selector_terms.is_empty() {
        return None;
    }
    let mut all: HashSet<String> = HashSet::new();
    for term in &terms.node_selector_terms {
        let mut names: Option<HashSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let s: HashSet<String> = r.values.iter().flatten().cloned().collect();
                names = Some(match names {
                    None => s,
                    Some(prev) => prev.intersection(&s).cloned().collect(),
                });
            }
        }
        // A term without a name requirement allows every node.
        all.extend(names?);
    }
    Some(all)
}

pub struct NodeAffinity;

impl PreFilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot<'_>) -> (Status, PreFilterResult) {
        if pod.required_node_affinity.is_empty() {
            return (Status::skip(), None);
        }
        match node_names(pod) {
            Some(names) if names.is_empty() => (Status::unresolvable(NAME, ERR_REASON_CONFLICT), None),
            names => (Status::success(), names),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(NAME, ERR_REASON_POD)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], _: &Snapshot<'_>) -> Status {
        if pod.preferred_node_affinity.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.preferred_node_affinity.iter().filter(|(_, t)| t.matches(&node.name, node.labels())).map(|(w, _)| *w as i64).sum()
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, false, scores);
    }
}

/// Whether a status is this plugin's "does not match" (for tests and callers that
/// want to tell it apart).
pub fn is_mismatch(s: &Status) -> bool {
    s.code() == Code::UnschedulableAndUnresolvable && s.plugin() == NAME
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::{info, Harness};
    use crate::testing::{field_term, term, MakeNode, MakePod};

    #[test]
    fn node_selector_and_required_terms_filter_nodes() {
        let h = Harness::new(vec![
            MakeNode::new("ssd").capacity("4", "8Gi").label("disk", "ssd").obj(),
            MakeNode::new("hdd").capacity("4", "8Gi").label("disk", "hdd").obj(),
        ]);
        assert_eq!(h.schedule(MakePod::new("p").node_selector("disk", "ssd").obj()).unwrap().node, "ssd");
        let pod = MakePod::new("p").required_node_affinity(vec![term(&[("disk", "NotIn", &["ssd"])])]).obj();
        assert_eq!(h.schedule(pod).unwrap().node, "hdd");
        let s = NodeAffinity.filter(&CycleState::default(), &info(MakePod::new("p").node_selector("disk", "nvme").obj()), &h.nodes[0]);
        assert!(is_mismatch(&s));
        let err = h.schedule(MakePod::new("p").node_selector("disk", "nvme").obj()).unwrap_err();
        assert_eq!(err.to_string(), "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.");
    }

    #[test]
    fn name_terms_narrow_the_nodes_to_filter() {
        let pod = info(MakePod::new("p").required_node_affinity(vec![field_term(&[("metadata.name", "In", &["a"])]), field_term(&[("metadata.name", "In", &["b"])])]).obj());
        assert_eq!(node_names(&pod).unwrap(), ["a".to_string(), "b".to_string()].into_iter().collect());
        let mixed = info(MakePod::new("p").required_node_affinity(vec![field_term(&[("metadata.name", "In", &["a"])]), term(&[("zone", "Exists", &[])])]).obj());
        assert!(node_names(&mixed).is_none(), "a term without names allows every node");
        let h = Harness::new(vec![MakeNode::new("a").obj()]);
        let conflict = MakePod::new("p")
            .required_node_affinity(vec![field_term(&[("metadata.name", "In", &["a"]), ("metadata.name", "In", &["b"])])])
            .obj();
        assert_eq!(h.schedule(conflict).unwrap_err().to_string(), "0/1 nodes are available: pod affinity terms conflict.");
    }

    #[test]
    fn preferred_terms_add_their_weights() {
        let h = Harness::new(vec![
            MakeNode::new("a").capacity("4", "8Gi").label("zone", "a").obj(),
            MakeNode::new("b").capacity("4", "8Gi").label("zone", "b").label("disk", "ssd").obj(),
        ]);
        let pod = info(MakePod::new("p").preferred_node_affinity(10, term(&[("zone", "In", &["a"])])).preferred_node_affinity(30, term(&[("disk", "Exists", &[])])).obj());
        let nodes: Vec<&NodeInfo> = h.nodes.iter().collect();
        let mut scores: Vec<i64> = nodes.iter().map(|n| NodeAffinity.score(&CycleState::default(), &pod, n)).collect();
        assert_eq!(scores, vec![10, 30]);
        NodeAffinity.normalize(&CycleState::default(), &nodes, &mut scores);
        assert_eq!(scores, vec![33, 100]);
        let pod = MakePod::new("p").preferred_node_affinity(10, term(&[("zone", "In", &["a"])])).obj();
        assert_eq!(h.schedule(pod).unwrap().node, "a");
    }
}
