//! NodePorts: a pod's host ports must be free on the node.

use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreFilterResult, Snapshot};
use crate::status::Status;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    !pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| used.conflicts(want)))
}

pub struct NodePorts;

impl PreFilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot<'_>) -> (Status, PreFilterResult) {
        if pod.host_ports.is_empty() {
            (Status::skip(), None)
        } else {
            (Status::success(), None)
        }
    }
}

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if fits(pod, node) {
            Status::success()
        } else {
            Status::unschedulable(NAME, ERR_REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::{info, Harness};
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn a_taken_host_port_rejects_the_node() {
        let h = Harness::new(vec![MakeNode::new("a").capacity("4", "8Gi").obj()]).with_pod(MakePod::new("web").node("a").host_port(80, "TCP", "").obj());
        let node = &h.nodes[0];
        assert!(!fits(&info(MakePod::new("p").host_port(80, "TCP", "").obj()), node));
        assert!(fits(&info(MakePod::new("p").host_port(80, "UDP", "").obj()), node));
        assert!(fits(&info(MakePod::new("p").host_port(8080, "TCP", "").obj()), node));
        assert!(!fits(&info(MakePod::new("p").host_port(80, "TCP", "10.0.0.1").obj()), node));
        let err = h.schedule(MakePod::new("p").host_port(80, "TCP", "").obj()).unwrap_err();
        assert_eq!(err.to_string(), "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.");
    }
}
