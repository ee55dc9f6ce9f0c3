//! NodeName: a pod that names its node (`spec.nodeName`) fits only there. The
//! scheduler never picks up such pods; the plugin matters for preemption checks and
//! for completeness of the default profile.

use crate::framework::{CycleState, FilterPlugin};
use crate::status::Status;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.node_name().is_none_or(|n| n == node.name)
}

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(NAME, ERR_REASON)
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
    fn a_named_node_is_the_only_fit() {
        let a = NodeInfo::new(Arc::new(MakeNode::new("a").obj()));
        let b = NodeInfo::new(Arc::new(MakeNode::new("b").obj()));
        assert!(fits(&info(MakePod::new("p").obj()), &a));
        assert!(fits(&info(MakePod::new("p").node("a").obj()), &a));
        assert!(!fits(&info(MakePod::new("p").node("a").obj()), &b));
    }
}
