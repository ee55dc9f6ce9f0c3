//! NodeResourcesFit and NodeResourcesBalancedAllocation.
//!
//! Fit filters nodes whose allocatable cannot hold the pod's requests next to what
//! is already requested there (assumed pods included), and scores the rest by
//! LeastAllocated: the more room left for cpu and memory, the better.
//! BalancedAllocation prefers nodes whose cpu and memory end up equally used.

use std::borrow::Cow;

use crate::framework::{CycleState, FilterPlugin, ScorePlugin, Snapshot, MAX_NODE_SCORE};
use crate::resources::Resource;
use crate::status::{Code, Status};
use crate::types::{NodeInfo, PodInfo};

pub const FIT_NAME: &str = "NodeResourcesFit";
pub const BALANCED_ALLOCATION_NAME: &str = "NodeResourcesBalancedAllocation";

/// One resource the node lacks for the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    pub resource: String,
    /// The user-facing reason, `Insufficient cpu`, `Too many pods`.
    pub reason: Cow<'static, str>,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

/// Every resource the node lacks for a pod requesting `req` (`fitsRequest`): the
/// pod count first, then cpu, memory, ephemeral storage and extended resources.
pub fn insufficient_resources(req: &Resource, node: &NodeInfo) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    let pods = node.pods.len() as i64;
    if pods + 1 > node.allocatable.allowed_pods {
        out.push(InsufficientResource { resource: "pods".into(), reason: "Too many pods".into(), requested: 1, used: pods, capacity: node.allocatable.allowed_pods });
    }
    if req.is_zero() {
        return out;
    }
    let alloc = &node.allocatable;
    let used = &node.requested;
    let mut check = |name: &str, reason: Cow<'static, str>, want: i64, used: i64, capacity: i64| {
        if want > 0 && want > capacity - used {
            out.push(InsufficientResource { resource: name.into(), reason, requested: want, used, capacity });
        }
    };
    check("cpu", "Insufficient cpu".into(), req.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check("memory", "Insufficient memory".into(), req.memory, used.memory, alloc.memory);
    check("ephemeral-storage", "Insufficient ephemeral-storage".into(), req.ephemeral_storage, used.ephemeral_storage, alloc.ephemeral_storage);
    for (name, want) in &req.scalar {
        check(name, format!("Insufficient {name}").into(), *want, used.scalar(name), alloc.scalar(name));
    }
    out
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// `(1 - std) * 100` of the cpu and memory fractions the node would have with the
/// pod, each capped at 1; resources the node has none of are left out.
pub fn balanced_score(fractions: &[(i64, i64)]) -> i64 {
    // Two passes over the input instead of a collected Vec: this runs for every
    // feasible node of every pod.
    let f = |(req, alloc): &(i64, i64)| (*req as f64 / *alloc as f64).min(1.0);
    let present = || fractions.iter().filter(|(_, alloc)| *alloc > 0);
    let n = present().count();
    let std = match n {
        0 | 1 => 0.0,
        2 => {
            let mut it = present().map(f);
            let (a, b) = (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0));
            ((a - b) / 2.0).abs()
        }
        n => {
            let mean = present().map(f).sum::<f64>() / n as f64;
            (present().map(|x| (f(x) - mean) * (f(x) - mean)).sum::<f64>() / n as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

pub struct Fit;

impl FilterPlugin for Fit {
    fn name(&self) -> &'static str {
        FIT_NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let missing = insufficient_resources(&pod.requests, node);
        if missing.is_empty() {
            return Status::success();
        }
        Status::with_reasons(Code::Unschedulable, FIT_NAME, missing.into_iter().map(|m| m.reason).collect())
    }
}

impl ScorePlugin for Fit {
    fn name(&self) -> &'static str {
        FIT_NAME
    }

    fn weight(&self) -> i64 {
        1
    }

    /// LeastAllocated over cpu and memory (weight 1 each), counting the defaults for
    /// containers without requests.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let mut total = 0;
        let mut weights = 0;
        for (req, alloc) in [(node.non_zero_cpu + pod.non_zero_cpu, node.allocatable.milli_cpu), (node.non_zero_memory + pod.non_zero_memory, node.allocatable.memory)] {
            if alloc == 0 {
                continue;
            }
            total += least_requested_score(req, alloc);
            weights += 1;
        }
        if weights == 0 {
            0
        } else {
            total / weights
        }
    }
}

pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        BALANCED_ALLOCATION_NAME
    }

    fn weight(&self) -> i64 {
        1
    }

    /// Best-effort pods (no cpu or memory requests) are skipped: they would
    /// otherwise all favour the same node.
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], _: &Snapshot<'_>) -> Status {
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            Status::skip()
        } else {
            Status::success()
        }
    }

    /// Uses the actual requests, not the defaulted ones.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        balanced_score(&[
            (node.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu),
            (node.requested.memory + pod.requests.memory, node.allocatable.memory),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::{info, Harness};
    use crate::testing::{MakeNode, MakePod};

    #[test]
    fn every_short_resource_is_reported() {
        let h = Harness::new(vec![MakeNode::new("n").allocatable(&[("cpu", "2"), ("memory", "1Gi"), ("pods", "1"), ("nvidia.com/gpu", "1")]).obj()])
            .with_pod(MakePod::new("x").node("n").container(&[("cpu", "1500m"), ("memory", "512Mi")]).obj());
        let pod = info(MakePod::new("p").container(&[("cpu", "1"), ("memory", "256Mi"), ("nvidia.com/gpu", "2"), ("example.com/foo", "1")]).obj());
        let reasons: Vec<String> = insufficient_resources(&pod.requests, &h.nodes[0]).into_iter().map(|m| m.reason.into_owned()).collect();
        assert_eq!(reasons, vec!["Too many pods", "Insufficient cpu", "Insufficient example.com/foo", "Insufficient nvidia.com/gpu"]);
        let s = Fit.filter(&CycleState::default(), &pod, &h.nodes[0]);
        assert_eq!(s.code(), Code::Unschedulable, "preemption could help: 1.33 never calls it unresolvable");
    }

    #[test]
    fn a_pod_that_requests_nothing_only_needs_a_pod_slot() {
        let h = Harness::new(vec![MakeNode::new("n").allocatable(&[("cpu", "1"), ("pods", "2")]).obj()])
            .with_pod(MakePod::new("x").node("n").container(&[("cpu", "2")]).obj());
        assert!(insufficient_resources(&info(MakePod::new("p").obj()).requests, &h.nodes[0]).is_empty());
        // A resource the pod does not request is not checked even if overcommitted.
        let mem_only = info(MakePod::new("p").container(&[("memory", "1")]).obj());
        assert_eq!(insufficient_resources(&mem_only.requests, &h.nodes[0]).len(), 1, "memory: the node has none");
        assert_eq!(insufficient_resources(&mem_only.requests, &h.nodes[0])[0].reason, "Insufficient memory");
    }

    #[test]
    fn least_allocated_prefers_room() {
        assert_eq!(least_requested_score(0, 4000), 100);
        assert_eq!(least_requested_score(3000, 4000), 25);
        assert_eq!(least_requested_score(5000, 4000), 0);
        let node = crate::types::NodeInfo::new(std::sync::Arc::new(MakeNode::new("n").capacity("4", "8Gi").obj()));
        // 1 cpu of 4 → 75; memory defaults to 200Mi of 8Gi → 97.
        let pod = info(MakePod::new("p").container(&[("cpu", "1")]).obj());
        assert_eq!(Fit.score(&CycleState::default(), &pod, &node), (75 + 97) / 2);
    }

    #[test]
    fn balanced_allocation_prefers_equal_fractions() {
        assert_eq!(balanced_score(&[(2000, 4000), (4 << 30, 8 << 30)]), 100);
        assert_eq!(balanced_score(&[(4000, 4000), (0, 8 << 30)]), 50);
        assert_eq!(balanced_score(&[(8000, 4000), (0, 8 << 30)]), 50, "fractions are capped at 1");
        assert_eq!(balanced_score(&[(1000, 4000), (1, 0)]), 100, "a resource the node lacks is left out");
        let pod = info(MakePod::new("p").obj());
        let h = Harness::new(vec![MakeNode::new("n").capacity("4", "8Gi").obj()]);
        let mut state = CycleState::default();
        assert_eq!(BalancedAllocation.pre_score(&mut state, &pod, &[], &h.snapshot()).code(), Code::Skip);
    }
}
