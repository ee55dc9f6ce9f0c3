//! DefaultPreemption (PostFilter): when no node fits a pod, find a node where
//! evicting pods of lower priority makes room, evicting as few and as unimportant
//! pods as possible.
//!
//! Like the framework, this only decides: [`preempt`] returns the node and the
//! victims, or why preemption cannot help (the `preemption: …` part of the failure
//! message). The scheduler nominates the pod, deletes the victims and retries once
//! they are gone. PodDisruptionBudgets are not consulted (every victim counts as
//! not violating one).

use std::sync::Arc;

use rand::Rng;

use crate::framework::{CycleState, Framework, Snapshot};
use crate::status::{Code, Diagnosis, FitError, NodeToStatus, Status};
use crate::types::{more_important, NodeInfo, PodInfo};

pub const NAME: &str = "DefaultPreemption";
pub const MSG_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const MSG_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const MSG_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const MSG_TERMINATING_ON_NOMINATED: &str = "not eligible due to a terminating pod on the nominated node.";
/// Dry runs stop after this share of the potential nodes produced candidates…
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// …but not before this many (`minCandidateNodesAbsolute`).
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;
/// The condition reason the scheduler sets on a victim before deleting it.
pub const REASON_PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// A node and the pods to evict there.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
}

/// What preemption concluded.
#[derive(Debug, Clone)]
pub enum Outcome {
    Preempt(Candidate),
    /// Preemption cannot help; the message goes after the filter reasons
    /// (`preemption: …`). `clear_nomination` when no candidate was found, so an
    /// earlier nomination is void; not when the pod was not eligible to try.
    NotHelpful { message: String, clear_nomination: bool },
}

/// Whether a pod is on its way out because the scheduler preempted it.
pub fn terminating_by_preemption(pod: &PodInfo) -> bool {
    pod.terminating
        && pod.pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
            cs.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True" && c.reason.as_deref() == Some(REASON_PREEMPTION_BY_SCHEDULER))
        })
}

/// `PodEligibleToPreemptOthers`: not with `preemptionPolicy: Never`, and not while
/// victims of an earlier preemption still terminate on the nominated node.
pub fn eligible(pod: &PodInfo, snapshot: &Snapshot<'_>, statuses: &NodeToStatus) -> Result<(), &'static str> {
    if pod.never_preempts() {
        return Err(MSG_POLICY_NEVER);
    }
    if let Some(nominated) = pod.nominated_node_name() {
        // A nominated node that can never fit is no reason to wait.
        if statuses.get(nominated).code() == Code::UnschedulableAndUnresolvable {
            return Ok(());
        }
        if let Some(node) = snapshot.node(nominated) {
            if node.pods.iter().any(|p| p.priority < pod.priority && terminating_by_preemption(p)) {
                return Err(MSG_TERMINATING_ON_NOMINATED);
            }
        }
    }
    Ok(())
}

/// How many candidates are enough: 10% of the potential nodes, at least 100.
pub fn num_candidates(potential: usize) -> usize {
    (potential * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE).min(potential)
}

/// The fewest, least important pods of lower priority whose eviction lets `pod`
/// pass every filter on `node` (`SelectVictimsOnNode`): remove them all, check the
/// pod fits, then put back as many as possible, most important first.
pub fn select_victims(fw: &Framework, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot<'_>) -> Result<Vec<Arc<PodInfo>>, Status> {
    let mut node = node.clone();
    let mut state = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(NAME, MSG_NO_VICTIMS));
    }
    for p in &potential {
        node.remove_pod(&p.uid);
        for pf in &fw.pre_filters {
            pf.remove_pod(&mut state, pod, p, &node, snapshot);
        }
    }
    let s = fw.run_filters_with_nominated(&state, pod, &node, snapshot);
    if !s.is_success() {
        return Err(s);
    }
    potential.sort_by(|a, b| {
        if more_important(a, b) {
            std::cmp::Ordering::Less
        } else if more_important(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let mut victims = Vec::new();
    for p in potential {
        node.add_pod(p.clone());
        for pf in &fw.pre_filters {
            pf.add_pod(&mut state, pod, &p, &node, snapshot);
        }
        if !fw.run_filters_with_nominated(&state, pod, &node, snapshot).is_success() {
            node.remove_pod(&p.uid);
            for pf in &fw.pre_filters {
                pf.remove_pod(&mut state, pod, &p, &node, snapshot);
            }
            victims.push(p);
        }
    }
    Ok(victims)
}

/// Picks among candidates (`pickOneNodeForPreemption`): the lowest highest-priority
/// victim, then the lowest sum of priorities, then the fewest victims, then the
/// node whose highest-priority victims started last, then the first.
pub fn pick_one(candidates: &[Candidate]) -> Option<&Candidate> {
    if let Some(c) = candidates.iter().find(|c| c.victims.is_empty()) {
        return Some(c);
    }
    let highest = |c: &Candidate| c.victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
    let sum = |c: &Candidate| c.victims.iter().map(|v| v.priority as i64 + i32::MAX as i64 + 1).sum::<i64>();
    // The earliest start among the highest-priority victims; later is better.
    let earliest_start = |c: &Candidate| {
        let top = highest(c);
        c.victims.iter().filter(|v| v.priority == top).filter_map(|v| v.start_time()).min()
    };
    fn min_by<'c>(best: Vec<&'c Candidate>, key: &dyn Fn(&Candidate) -> i64) -> Vec<&'c Candidate> {
        let m = best.iter().map(|c| key(c)).min();
        best.into_iter().filter(|c| Some(key(c)) == m).collect()
    }
    let mut best: Vec<&Candidate> = candidates.iter().collect();
    best = min_by(best, &|c| highest(c) as i64);
    best = min_by(best, &sum);
    best = min_by(best, &|c| c.victims.len() as i64);
    if best.len() > 1 {
        let latest = best.iter().map(|c| earliest_start(c)).max().flatten();
        if let Some(latest) = latest {
            best.retain(|c| earliest_start(c) == Some(latest));
        }
    }
    best.first().copied()
}

/// Runs DefaultPreemption for a pod that fit nowhere; `statuses` is why each node
/// rejected it.
pub fn preempt(fw: &Framework, pod: &PodInfo, snapshot: &Snapshot<'_>, statuses: &NodeToStatus, rng: &mut impl Rng) -> Outcome {
    if let Err(msg) = eligible(pod, snapshot, statuses) {
        return Outcome::NotHelpful { message: format!("preemption: {msg}"), clear_nomination: false };
    }
    let mut diagnosis = Diagnosis::default();
    diagnosis.node_to_status.set_absent(Status::unresolvable(NAME, MSG_NOT_HELPFUL));
    let mut potential = Vec::new();
    for &i in snapshot.order {
        let node = &snapshot.nodes[i];
        if statuses.get(&node.name).code() == Code::UnschedulableAndUnresolvable {
            diagnosis.node_to_status.set(&node.name, Status::unresolvable(NAME, MSG_NOT_HELPFUL));
        } else {
            potential.push(node);
        }
    }
    let mut candidates = Vec::new();
    if !potential.is_empty() {
        let mut state = CycleState::default();
        if fw.run_pre_filters(&mut state, pod, snapshot).is_ok() {
            let want = num_candidates(potential.len());
            let offset = rng.random_range(0..potential.len());
            for i in 0..potential.len() {
                let node = potential[(offset + i) % potential.len()];
                match select_victims(fw, &state, pod, node, snapshot) {
                    Ok(victims) => {
                        candidates.push(Candidate { node: node.name.clone(), victims });
                        if candidates.len() >= want {
                            break;
                        }
                    }
                    Err(s) => diagnosis.node_to_status.set(&node.name, s),
                }
            }
        } else {
            for node in &potential {
                diagnosis.node_to_status.set(&node.name, Status::unresolvable(NAME, MSG_NOT_HELPFUL));
            }
        }
    }
    match pick_one(&candidates) {
        Some(c) => Outcome::Preempt(c.clone()),
        None => {
            let e = FitError { num_all_nodes: snapshot.nodes.len(), diagnosis };
            Outcome::NotHelpful { message: format!("preemption: {e}"), clear_nomination: true }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::{info, Harness};
    use crate::framework::ScheduleError;
    use crate::testing::{selector, MakeNode, MakePod};
    use rand::SeedableRng;

    fn run(h: &Harness, pod: k8s_openapi::api::core::v1::Pod) -> (String, Outcome) {
        let err = h.schedule(pod.clone()).unwrap_err();
        let ScheduleError::Unfit(fit) = &err else { panic!("{err}") };
        let pod = info(pod);
        let out = preempt(&Framework::default(), &pod, &h.snapshot(), &fit.diagnosis.node_to_status, &mut rand::rngs::StdRng::seed_from_u64(3));
        (err.to_string(), out)
    }

    fn message(out: &Outcome) -> &str {
        match out {
            Outcome::NotHelpful { message, .. } => message,
            Outcome::Preempt(c) => panic!("unexpected candidate {c:?}"),
        }
    }

    fn full_cluster() -> Harness {
        Harness::new(vec![MakeNode::new("a").capacity("2", "8Gi").obj(), MakeNode::new("b").capacity("2", "8Gi").obj()])
            .with_pod(MakePod::new("a-low").node("a").priority(1).start_time(10).container(&[("cpu", "1")]).obj())
            .with_pod(MakePod::new("a-mid").node("a").priority(5).start_time(10).container(&[("cpu", "1")]).obj())
            .with_pod(MakePod::new("b-low1").node("b").priority(1).start_time(20).container(&[("cpu", "1")]).obj())
            .with_pod(MakePod::new("b-low2").node("b").priority(1).start_time(30).container(&[("cpu", "1")]).obj())
    }

    #[test]
    fn equal_priorities_give_no_victims() {
        let h = Harness::new(vec![MakeNode::new("a").capacity("2", "8Gi").obj(), MakeNode::new("b").capacity("2", "8Gi").obj(), MakeNode::new("c").capacity("2", "8Gi").obj()]);
        let (fit, out) = run(&h, MakePod::new("p").container(&[("cpu", "3")]).obj());
        let full = format!("{fit} {}", message(&out));
        assert_eq!(full, "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.");
    }

    #[test]
    fn unresolvable_nodes_are_not_helped() {
        let h = Harness::new(vec![
            MakeNode::new("a").capacity("2", "8Gi").taint("dedicated", "x", "NoSchedule").obj(),
            MakeNode::new("b").capacity("2", "8Gi").obj(),
            MakeNode::new("c").capacity("2", "8Gi").obj(),
        ]);
        let (fit, out) = run(&h, MakePod::new("p").container(&[("cpu", "3")]).obj());
        assert_eq!(
            format!("{fit} {}", message(&out)),
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn a_pod_that_never_preempts_says_so() {
        let (_, out) = run(&full_cluster(), MakePod::new("p").priority(100).preemption_never().container(&[("cpu", "1")]).obj());
        assert_eq!(message(&out), "preemption: not eligible due to preemptionPolicy=Never.");
    }

    #[test]
    fn the_cheapest_node_is_chosen_and_only_needed_victims_go() {
        // On a, evicting a-low (priority 1) suffices; on b, one of the two priority-1
        // pods. Both have highest victim priority 1 and one victim; b's victim started
        // later (30 > 10), so b wins, and the later-started b-low2 goes.
        let (_, out) = run(&full_cluster(), MakePod::new("p").priority(10).container(&[("cpu", "1")]).obj());
        let Outcome::Preempt(c) = out else { panic!("{out:?}") };
        assert_eq!(c.node, "b");
        let names: Vec<&str> = c.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["b-low2"]);
    }

    #[test]
    fn higher_priority_pods_are_spared() {
        // Needing 2 cpu on one node: a would lose a priority-5 pod, b only priority-1 pods.
        let (_, out) = run(&full_cluster(), MakePod::new("p").priority(10).container(&[("cpu", "2")]).obj());
        let Outcome::Preempt(c) = out else { panic!("{out:?}") };
        assert_eq!(c.node, "b");
        assert_eq!(c.victims.len(), 2);
        // A pod of priority 3 may only take b's pods.
        let (_, out) = run(&full_cluster(), MakePod::new("p").priority(3).container(&[("cpu", "2")]).obj());
        let Outcome::Preempt(c) = out else { panic!("{out:?}") };
        assert_eq!(c.node, "b");
    }

    #[test]
    fn victims_that_would_not_make_enough_room_are_not_evicted() {
        let (_, out) = run(&full_cluster(), MakePod::new("p").priority(10).container(&[("cpu", "3")]).obj());
        assert_eq!(message(&out), "preemption: 0/2 nodes are available: 2 Insufficient cpu.");
    }

    #[test]
    fn anti_affinity_to_a_lower_priority_pod_is_resolved_by_evicting_it() {
        let h = Harness::new(vec![MakeNode::new("a").capacity("4", "8Gi").obj()])
            .with_pod(MakePod::new("db").node("a").label("app", "db").priority(0).obj())
            .with_pod(MakePod::new("other").node("a").priority(0).obj());
        let pod = MakePod::new("p").priority(10).pod_anti_affinity("kubernetes.io/hostname", selector(&[("app", "db")])).obj();
        let (fit, out) = run(&h, pod);
        assert_eq!(fit, "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules.");
        let Outcome::Preempt(c) = out else { panic!("{out:?}") };
        assert_eq!(c.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), vec!["db"]);
    }

    #[test]
    fn terminating_victims_on_the_nominated_node_hold_off_more_preemption() {
        let mut victim = MakePod::new("v").node("a").priority(1).container(&[("cpu", "2")]).terminating().obj();
        victim.status.as_mut().unwrap().conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some(REASON_PREEMPTION_BY_SCHEDULER.into()),
            ..Default::default()
        }]);
        let h = Harness::new(vec![MakeNode::new("a").capacity("2", "8Gi").obj()]).with_pod(victim);
        let (_, out) = run(&h, MakePod::new("p").priority(10).nominated("a").container(&[("cpu", "2")]).obj());
        assert_eq!(message(&out), "preemption: not eligible due to a terminating pod on the nominated node.");
    }

    #[test]
    fn candidate_counts_follow_upstream() {
        assert_eq!(num_candidates(5), 5);
        assert_eq!(num_candidates(500), 100);
        assert_eq!(num_candidates(5000), 500);
    }
}
