//! Plugin results and the "why not" of a failed attempt.
//!
//! A [`Status`] tells apart a node that does not fit now (`Unschedulable`: removing
//! pods might help, so preemption may try it) from one that never will
//! (`UnschedulableAndUnresolvable`), and carries the reasons users read. A
//! [`FitError`] aggregates the statuses of every node into upstream's message:
//!
//! `0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.`

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// The outcome of one plugin call (`framework.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    /// Something went wrong; the attempt is retried after a back-off.
    Error,
    /// Does not fit now; preemption may help.
    Unschedulable,
    /// Does not fit, and evicting pods would not change that.
    UnschedulableAndUnresolvable,
    /// The plugin has nothing to do for this pod (PreFilter/PreScore only).
    Skip,
}

/// A plugin's verdict with its reasons and the plugin that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: Vec<Cow<'static, str>>,
    plugin: &'static str,
}

impl Status {
    pub const fn success() -> Status {
        Status { code: Code::Success, reasons: Vec::new(), plugin: "" }
    }

    pub const fn skip() -> Status {
        Status { code: Code::Skip, reasons: Vec::new(), plugin: "" }
    }

    pub fn new(code: Code, plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status { code, reasons: vec![reason.into()], plugin }
    }

    pub fn unschedulable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, plugin, reason)
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, plugin, reason)
    }

    pub fn error(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Error, plugin, reason)
    }

    /// A status with several reasons (NodeResourcesFit reports every short resource).
    pub fn with_reasons(code: Code, plugin: &'static str, reasons: Vec<Cow<'static, str>>) -> Status {
        Status { code, reasons, plugin }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Unschedulable or UnschedulableAndUnresolvable.
    pub fn is_rejected(&self) -> bool {
        matches!(self.code, Code::Unschedulable | Code::UnschedulableAndUnresolvable)
    }

    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        self.reasons.iter().map(|r| r.as_ref())
    }

    pub fn plugin(&self) -> &'static str {
        self.plugin
    }

    /// The reasons joined with `, ` (`Status.Message()`).
    pub fn message(&self) -> String {
        self.reasons.iter().map(|r| r.as_ref()).collect::<Vec<_>>().join(", ")
    }
}

// === impl NodeToStatus ===

/// Why each node was rejected; nodes not listed share `absent` (upstream's
/// `NodeToStatus` with its absent-nodes status).
#[derive(Debug, Clone)]
pub struct NodeToStatus {
    explicit: HashMap<String, Status>,
    absent: Status,
}

impl Default for NodeToStatus {
    fn default() -> Self {
        // Upstream's default: a node nobody looked at cannot be helped by preemption.
        NodeToStatus { explicit: HashMap::new(), absent: Status { code: Code::UnschedulableAndUnresolvable, reasons: Vec::new(), plugin: "" } }
    }
}

impl NodeToStatus {
    pub fn set(&mut self, node: &str, status: Status) {
        self.explicit.insert(node.to_string(), status);
    }

    pub fn set_absent(&mut self, status: Status) {
        self.absent = status;
    }

    pub fn get(&self, node: &str) -> &Status {
        self.explicit.get(node).unwrap_or(&self.absent)
    }

    pub fn len(&self) -> usize {
        self.explicit.len()
    }

    pub fn is_empty(&self) -> bool {
        self.explicit.is_empty()
    }

    pub fn explicit(&self) -> impl Iterator<Item = (&str, &Status)> {
        self.explicit.iter().map(|(n, s)| (n.as_str(), s))
    }
}

/// Everything a failed attempt learnt.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub node_to_status: NodeToStatus,
    /// Plugins that rejected the pod somewhere: the cluster events that wake the pod
    /// up again are the ones these plugins care about.
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// A PreFilter plugin's rejection (then no node was filtered).
    pub pre_filter_msg: String,
    /// What preemption said, `preemption: …`.
    pub post_filter_msg: String,
}

impl Diagnosis {
    pub fn add_plugin_status(&mut self, status: &Status) {
        if status.is_rejected() && !status.plugin.is_empty() {
            self.unschedulable_plugins.insert(status.plugin);
        }
    }
}

// === impl FitError ===

/// No node fits the pod.
#[derive(Debug, Clone)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl fmt::Display for FitError {
    /// `0/X nodes are available: <PreFilterMsg>. <FilterMsg>. <PostFilterMsg>`, with
    /// the filter reasons counted per node and sorted as strings (so `10 …` sorts
    /// before `2 …`, as upstream's `sort.Strings` does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if !d.pre_filter_msg.is_empty() {
            write!(f, " {}.", d.pre_filter_msg)?;
        } else {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, status) in d.node_to_status.explicit() {
                for r in status.reasons() {
                    *counts.entry(r).or_default() += 1;
                }
            }
            let listed = d.node_to_status.len();
            if listed < self.num_all_nodes {
                for r in d.node_to_status.absent.reasons() {
                    *counts.entry(r).or_default() += self.num_all_nodes - listed;
                }
            }
            let mut histogram: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
            histogram.sort();
            if !histogram.is_empty() {
                write!(f, " {}.", histogram.join(", "))?;
            }
        }
        if !d.post_filter_msg.is_empty() {
            write!(f, " {}", d.post_filter_msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit_error(n: usize, statuses: &[(&str, Status)]) -> FitError {
        let mut d = Diagnosis::default();
        for (node, s) in statuses {
            d.node_to_status.set(node, s.clone());
        }
        FitError { num_all_nodes: n, diagnosis: d }
    }

    #[test]
    fn reasons_are_counted_per_node_and_sorted_as_strings() {
        let taint = Status::unresolvable("TaintToleration", "node(s) had untolerated taint {dedicated: x}");
        let cpu = Status::unschedulable("NodeResourcesFit", "Insufficient cpu");
        let e = fit_error(3, &[("a", taint), ("b", cpu.clone()), ("c", cpu)]);
        assert_eq!(e.to_string(), "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu.");
    }

    #[test]
    fn a_node_with_several_short_resources_counts_each() {
        let both = Status::with_reasons(Code::Unschedulable, "NodeResourcesFit", vec!["Insufficient cpu".into(), "Insufficient memory".into()]);
        let cpu = Status::unschedulable("NodeResourcesFit", "Insufficient cpu");
        let e = fit_error(2, &[("a", both), ("b", cpu)]);
        assert_eq!(e.to_string(), "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.");
    }

    #[test]
    fn string_sorting_puts_ten_before_two() {
        let mut statuses = Vec::new();
        for i in 0..10 {
            statuses.push((format!("a{i}"), Status::unschedulable("NodeResourcesFit", "Insufficient cpu")));
        }
        statuses.push(("b0".into(), Status::unresolvable("NodeAffinity", "node(s) didn't match Pod's node affinity/selector")));
        statuses.push(("b1".into(), Status::unresolvable("NodeAffinity", "node(s) didn't match Pod's node affinity/selector")));
        let refs: Vec<(&str, Status)> = statuses.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
        let e = fit_error(12, &refs);
        assert_eq!(e.to_string(), "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.");
    }

    #[test]
    fn the_preemption_message_follows_without_an_extra_period() {
        let cpu = Status::unschedulable("NodeResourcesFit", "Insufficient cpu");
        let mut e = fit_error(3, &[("a", cpu.clone()), ("b", cpu.clone()), ("c", cpu)]);
        let mut p = Diagnosis::default();
        for n in ["a", "b", "c"] {
            p.node_to_status.set(n, Status::unresolvable("DefaultPreemption", "No preemption victims found for incoming pod"));
        }
        let inner = FitError { num_all_nodes: 3, diagnosis: p };
        e.diagnosis.post_filter_msg = format!("preemption: {inner}");
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn absent_nodes_share_the_absent_status() {
        let mut e = fit_error(5, &[("a", Status::unschedulable("NodeResourcesFit", "Insufficient cpu"))]);
        e.diagnosis.node_to_status.set_absent(Status::unresolvable("", "Preemption is not helpful for scheduling"));
        assert_eq!(e.to_string(), "0/5 nodes are available: 1 Insufficient cpu, 4 Preemption is not helpful for scheduling.");
    }

    #[test]
    fn a_prefilter_rejection_replaces_the_node_reasons() {
        let mut e = fit_error(2, &[("a", Status::unschedulable("X", "ignored"))]);
        e.diagnosis.pre_filter_msg = "pod affinity terms conflict".into();
        assert_eq!(e.to_string(), "0/2 nodes are available: pod affinity terms conflict.");
    }
}
