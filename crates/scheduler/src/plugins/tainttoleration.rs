//! TaintToleration: a node's NoSchedule and NoExecute taints keep out pods that do
//! not tolerate them; PreferNoSchedule taints only lower the node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{default_normalize, CycleState, FilterPlugin, ScorePlugin, MAX_NODE_SCORE};
use crate::status::Status;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "TaintToleration";

/// Whether one toleration tolerates a taint (`Toleration.ToleratesTaint`): an empty
/// effect or key matches all, `Exists` ignores the value, `Equal` (the default)
/// compares it.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint with a scheduling effect (NoSchedule, NoExecute) that the pod
/// does not tolerate (`FindMatchingUntoleratedTaint` with `DoNotScheduleTaintsFilterFunc`).
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").find(|t| !tolerations_tolerate(tolerations, t))
}

/// The rejection text: `node(s) had untolerated taint {key: value}`.
pub fn reason(taint: &Taint) -> String {
    format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value.as_deref().unwrap_or(""))
}

/// PreferNoSchedule taints the pod does not tolerate, counting only tolerations
/// that apply to that effect.
pub fn intolerable_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    let relevant: Vec<Toleration> =
        tolerations.iter().filter(|t| matches!(t.effect.as_deref().unwrap_or(""), "" | "PreferNoSchedule")).cloned().collect();
    taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerations_tolerate(&relevant, t)).count() as i64
}

pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match untolerated_taint(node.taints(), pod.tolerations()) {
            None => Status::success(),
            Some(taint) => Status::unresolvable(NAME, reason(taint)),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn weight(&self) -> i64 {
        3
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if node.taints().is_empty() {
            return 0;
        }
        intolerable_prefer_no_schedule(node.taints(), pod.tolerations())
    }

    fn normalize(&self, _: &CycleState, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::{info, Harness};
    use crate::testing::{MakeNode, MakePod};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: (!value.is_empty()).then(|| value.into()), effect: effect.into(), time_added: None }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let p = info(MakePod::new("p").toleration(key, op, value, effect).obj());
        p.tolerations()[0].clone()
    }

    #[test]
    fn tolerations_match_key_value_and_effect() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(&toleration("dedicated", "Equal", "gpu", "NoSchedule"), &t));
        assert!(tolerates(&toleration("dedicated", "", "gpu", ""), &t), "empty operator is Equal, empty effect all");
        assert!(!tolerates(&toleration("dedicated", "Equal", "cpu", "NoSchedule"), &t));
        assert!(tolerates(&toleration("dedicated", "Exists", "", "NoSchedule"), &t));
        assert!(!tolerates(&toleration("dedicated", "Exists", "", "NoExecute"), &t));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t), "an empty key with Exists tolerates everything");
        assert!(!tolerates(&toleration("dedicated", "Bogus", "gpu", ""), &t));
    }

    #[test]
    fn untolerated_scheduling_taints_reject_the_node() {
        let taints = [taint("soft", "", "PreferNoSchedule"), taint("dedicated", "x", "NoSchedule"), taint("gone", "", "NoExecute")];
        let found = untolerated_taint(&taints, &[]).unwrap();
        assert_eq!(reason(found), "node(s) had untolerated taint {dedicated: x}");
        let tol = [toleration("dedicated", "Exists", "", "")];
        assert_eq!(reason(untolerated_taint(&taints, &tol).unwrap()), "node(s) had untolerated taint {gone: }");
        let all = [toleration("", "Exists", "", "")];
        assert!(untolerated_taint(&taints, &all).is_none());
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let h = Harness::new(vec![
            MakeNode::new("clean").capacity("4", "8Gi").obj(),
            MakeNode::new("soft").capacity("4", "8Gi").taint("a", "", "PreferNoSchedule").obj(),
            MakeNode::new("softer").capacity("4", "8Gi").taint("a", "", "PreferNoSchedule").taint("b", "", "PreferNoSchedule").obj(),
        ]);
        let pod = info(MakePod::new("p").obj());
        let nodes: Vec<&NodeInfo> = h.nodes.iter().collect();
        let mut scores: Vec<i64> = nodes.iter().map(|n| TaintToleration.score(&CycleState::default(), &pod, n)).collect();
        assert_eq!(scores, vec![0, 1, 2]);
        TaintToleration.normalize(&CycleState::default(), &nodes, &mut scores);
        assert_eq!(scores, vec![100, 50, 0]);
        // A NoSchedule toleration does not count against PreferNoSchedule taints.
        let tolerant = info(MakePod::new("p").toleration("a", "Exists", "", "NoSchedule").obj());
        assert_eq!(TaintToleration.score(&CycleState::default(), &tolerant, nodes[1]), 1);
        let tolerant = info(MakePod::new("p").toleration("a", "Exists", "", "").obj());
        assert_eq!(TaintToleration.score(&CycleState::default(), &tolerant, nodes[1]), 0);
        assert_eq!(h.schedule(MakePod::new("p").obj()).unwrap().node, "clean");
    }
}
