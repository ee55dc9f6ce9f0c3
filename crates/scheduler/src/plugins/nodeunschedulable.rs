//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods,
//! unless the pod tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint
//! that cordoning implies.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{CycleState, FilterPlugin};
use crate::plugins::tainttoleration::tolerations_tolerate;
use crate::status::Status;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The taint a cordoned node is treated as having.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    if !node.unschedulable() {
        return true;
    }
    let taint = Taint { key: TAINT_NODE_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), value: None, time_added: None };
    tolerations_tolerate(pod.tolerations(), &taint)
}

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(NAME, ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::info;
    use crate::testing::{MakeNode, MakePod};
    use std::sync::Arc;

    #[test]
    fn cordoned_nodes_reject_pods_that_do_not_tolerate_it() {
        let cordoned = NodeInfo::new(Arc::new(MakeNode::new("n").unschedulable().obj()));
        let open = NodeInfo::new(Arc::new(MakeNode::new("n").obj()));
        let plain = info(MakePod::new("p").obj());
        assert!(fits(&plain, &open));
        assert!(!fits(&plain, &cordoned));
        let s = NodeUnschedulable.filter(&CycleState::default(), &plain, &cordoned);
        assert_eq!((s.code(), s.message()), (crate::status::Code::UnschedulableAndUnresolvable, ERR_REASON_UNSCHEDULABLE.to_string()));
        let tolerant = info(MakePod::new("p").toleration(TAINT_NODE_UNSCHEDULABLE, "Exists", "", "NoSchedule").obj());
        assert!(fits(&tolerant, &cordoned));
        let wrong_effect = info(MakePod::new("p").toleration(TAINT_NODE_UNSCHEDULABLE, "Exists", "", "NoExecute").obj());
        assert!(!fits(&wrong_effect, &cordoned));
    }
}
