//! The daemonset controller (upstream `pkg/controller/daemon`): one pod per
//! eligible node.
//!
//! A node is eligible when the pod template's node name, node selector and
//! required node affinity admit it and it has no `NoSchedule`/`NoExecute` taint
//! the pod does not tolerate; daemon pods get upstream's default tolerations
//! (not-ready, unreachable, disk/memory/pid pressure, unschedulable, and
//! network-unavailable for host-network pods). A pod already on a node keeps
//! running there unless the node grows an untolerated `NoExecute` taint or stops
//! matching the selectors.
//!
//! Pods are not bound by the controller: each gets a required node affinity
//! `metadata.name In [node]` and the scheduler binds it, as upstream does since
//! 1.12. Creates go out in slow-start batches, guarded by expectations so a sync
//! never creates twice for the same gap. Rolling updates delete old pods within
//! `maxUnavailable`, or surge new ones within `maxSurge`; `OnDelete` waits for
//! users. Template revisions are ControllerRevisions labelled with the template
//! hash, which every pod carries in `controller-revision-hash`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, PodTemplateSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, PatchType, WorkQueue};

use crate::history;
use crate::podutil::{
    adopt, claim_action, compute_hash, controller_ref, enqueue_object_key, is_namespace_terminating, is_pod_available, is_pod_ready, key_of, label_selector_matches, name, namespace,
    new_controller_ref, pod_from_template, pod_phase, release, run_workers, selector_is_empty, slow_start_batch, split_key, uid, ClaimAction, Expectations,
};
use crate::deployment::scaled_value;
use crate::Context;

/// Label with the hash of the template a pod (and a revision) was made from.
pub const UNIQUE_LABEL: &str = "controller-revision-hash";
/// Label with the template generation a pod was made from (older clients use it).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Annotation where the API server records a daemon set's template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// `matchFields` key of a node's name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

const COMPONENT: &str = "daemonset-controller";
const KIND: &str = "DaemonSet";
const API_VERSION: &str = "apps/v1";
/// Concurrent syncs (upstream `--concurrent-daemonset-syncs` is 2).
const WORKERS: usize = 2;
/// At most this many creates or deletes per sync (upstream `BurstReplicas`).
const BURST_REPLICAS: usize = 250;
/// Back-off between deletions of failed daemon pods on one node.
const FAILED_POD_BACKOFF: Duration = Duration::from_secs(1);
const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// What a sync can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    #[error(transparent)]
    History(#[from] history::Error),
    /// The daemon set was deleted or replaced while it was adopting.
    #[error("original DaemonSet {0} is gone or being deleted")]
    Gone(String),
    /// A revision of another template holds the name this template hashes to; the
    /// collision count was bumped and the next sync uses a new hash.
    #[error("hash collision for DaemonSet {0}: {1}")]
    HashCollision(String, String),
    #[error(transparent)]
    Invalid(#[from] InvalidBudget),
}

/// A `maxSurge` or `maxUnavailable` that is neither a number nor a percentage.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {field} of DaemonSet {name}: {value}")]
pub struct InvalidBudget {
    pub name: String,
    pub field: &'static str,
    pub value: String,
}

fn template(ds: &DaemonSet) -> PodTemplateSpec {
    ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

// === tolerations and taints ===

/// Whether `toleration` tolerates `taint` (upstream `ToleratesTaint`): same effect
/// (or none), same key (or none with `Exists`), and `Exists` or an equal value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        _ => false,
    }
}

/// The first taint with an effect `filter` accepts that no toleration tolerates.
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration], filter: impl Fn(&Taint) -> bool) -> Option<&'a Taint> {
    taints.iter().filter(|t| filter(t)).find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration { key: Some(key.into()), operator: Some("Exists".into()), effect: Some(effect.into()), ..Toleration::default() }
}

/// Adds `toleration` unless an equal one is there; one matching on key, operator,
/// value and effect but different otherwise (a `tolerationSeconds`) is replaced.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |t: &Toleration| t.key == toleration.key && t.operator == toleration.operator && t.value == toleration.value && t.effect == toleration.effect;
    match tolerations.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => tolerations.push(toleration),
    }
}

/// Upstream's daemon pod tolerations: node problems never evict daemon pods,
/// and node conditions never keep them from being placed.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    add_or_update_toleration(spec, toleration("node.kubernetes.io/not-ready", "NoExecute"));
    add_or_update_toleration(spec, toleration("node.kubernetes.io/unreachable", "NoExecute"));
    add_or_update_toleration(spec, toleration("node.kubernetes.io/disk-pressure", "NoSchedule"));
    add_or_update_toleration(spec, toleration("node.kubernetes.io/memory-pressure", "NoSchedule"));
    add_or_update_toleration(spec, toleration("node.kubernetes.io/pid-pressure", "NoSchedule"));
    add_or_update_toleration(spec, toleration("node.kubernetes.io/unschedulable", "NoSchedule"));
    if spec.host_network == Some(true) {
        add_or_update_toleration(spec, toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
}

// === node selection ===

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value.and_then(number), values) else { return false };
            let Some(bound) = number(bound) else { return false };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether one node selector term admits `node`: every expression on its labels
/// and every field (only `metadata.name`) holds; an empty term admits nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == NODE_NAME_FIELD && requirement_matches(r, Some(name(&node.metadata))))
}

/// Whether the pod's node selector and required node affinity admit `node`
/// (upstream `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn required_node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    match spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref()) {
        None => true,
        Some(selector) => selector.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

/// Whether a daemon pod should run on `node`, and whether one already there may
/// keep running (upstream `NodeShouldRunDaemonPod`).
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let mut spec = template(ds).spec.unwrap_or_default();
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != name(&node.metadata)) {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    if !required_node_affinity_matches(&spec, node) {
        return (false, false);
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    if untolerated_taint(taints, tolerations, |t| t.effect == "NoSchedule" || t.effect == "NoExecute").is_some() {
        // Pods already there stay unless a NoExecute taint evicts them.
        let evicted = untolerated_taint(taints, tolerations, |t| t.effect == "NoExecute").is_some();
        return (false, !evicted);
    }
    (true, true)
}

/// Replaces the required node affinity with `metadata.name In [node]`, which the
/// scheduler honours (upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn node_affinity_for(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement { key: NODE_NAME_FIELD.into(), operator: "In".into(), values: Some(vec![node.to_string()]) }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The node a daemon pod is for: its node name, or before it is bound the node of
/// its `metadata.name` affinity (upstream `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find(|r| r.key == NODE_NAME_FIELD && r.operator == "In").and_then(|r| match r.values.as_deref() {
        Some([one]) => Some(one.clone()),
        _ => None,
    })
}

// === templates and revisions ===

/// The template generation the API server recorded, if any.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata.annotations.as_ref()?.get(TEMPLATE_GENERATION_ANNOTATION)?.parse().ok()
}

/// The template daemon pods are made from: default tolerations, the generation
/// and hash labels.
pub fn pod_template(ds: &DaemonSet, generation: Option<i64>, hash: &str) -> PodTemplateSpec {
    let mut template = template(ds);
    add_daemon_tolerations(template.spec.get_or_insert_with(PodSpec::default));
    let labels = template.metadata.get_or_insert_with(ObjectMeta::default).labels.get_or_insert_with(BTreeMap::new);
    if let Some(g) = generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(UNIQUE_LABEL.into(), hash.to_string());
    }
    template
}

/// Whether a pod was made from the current template: its hash label or its
/// generation label says so.
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let by_generation = generation.is_some_and(|g| labels.get(TEMPLATE_GENERATION_LABEL) == Some(&g.to_string()));
    let by_hash = !hash.is_empty() && labels.get(UNIQUE_LABEL).map(String::as_str) == Some(hash);
    by_hash || by_generation
}

/// Whether a revision holds the daemon set's current template.
pub fn revision_matches(ds: &DaemonSet, revision: &ControllerRevision) -> bool {
    let data = revision.data.as_ref().map(|d| history::canonical(&d.0));
    data == Some(history::canonical(&history::template_patch(&template(ds))))
}

// === rollout budgets ===

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let strategy = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    strategy.rolling_update.as_ref()
}

fn scaled(ds: &DaemonSet, field: &'static str, value: Option<&IntOrString>, total: i32) -> Result<i32, InvalidBudget> {
    match value {
        None => Ok(0),
        Some(v) => scaled_value(v, total, true).map_err(|_| InvalidBudget { name: name(&ds.metadata).into(), field, value: format!("{v:?}") }),
    }
}

/// `maxSurge` against the desired count, rounded up (0 unless rolling).
pub fn surge_count(ds: &DaemonSet, desired: i32) -> Result<i32, InvalidBudget> {
    scaled(ds, "maxSurge", rolling(ds).and_then(|r| r.max_surge.as_ref()), desired)
}

/// `maxUnavailable` against the desired count, rounded up (0 unless rolling).
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> Result<i32, InvalidBudget> {
    scaled(ds, "maxUnavailable", rolling(ds).and_then(|r| r.max_unavailable.as_ref()), desired)
}

fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1).is_ok_and(|n| n != 0)
}

// === the plan ===

/// Daemon pods by the node they are for.
pub type NodePods = BTreeMap<String, Vec<Arc<Pod>>>;

/// Groups pods by target node; finished pods already being deleted are left out
/// unless `include_deleted_finished`.
pub fn pods_by_node(pods: &[Arc<Pod>], include_deleted_finished: bool) -> NodePods {
    let mut out = NodePods::new();
    for pod in pods {
        let finished = matches!(pod_phase(pod), "Succeeded" | "Failed");
        if !include_deleted_finished && finished && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = target_node(pod) {
            out.entry(node).or_default().push(Arc::clone(pod));
        }
    }
    out
}

/// Oldest first, bound pods before unbound ones (upstream
/// `podByCreationTimestampAndPhase`).
fn sort_oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let unbound = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty);
        unbound(a)
            .cmp(&unbound(b))
            .then_with(|| a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// What one sync changes: nodes that get a pod, pods that go, and events about
/// finished pods found on the way.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub create_on: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    /// Pods of nodes that no longer exist: no kubelet will finish a graceful
    /// deletion there, so they go at once (what upstream's pod GC does).
    pub force_delete: Vec<Arc<Pod>>,
    pub events: Vec<(EventType, &'static str, String)>,
    /// Look again after this long (failed pods in back-off).
    pub retry_after: Option<Duration>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty() && self.force_delete.is_empty()
    }
}

/// Which pods each node should gain or lose (upstream `manage` and
/// `podsShouldBeOnNode`). `backoff(node)` says how long a failed pod on the node
/// must wait before it is deleted again, and records the deletion otherwise.
pub fn manage(ds: &DaemonSet, nodes: &[Arc<Node>], node_pods: &NodePods, hash: &str, now: jiff::Timestamp, backoff: &dyn Fn(&str) -> Option<Duration>) -> Changes {
    let mut changes = Changes::default();
    let ns = namespace(&ds.metadata);
    for node in nodes {
        let node_name = name(&node.metadata);
        let (should_run, should_continue) = node_should_run(node, ds);
        let pods = node_pods.get(node_name);
        match pods {
            None if should_run => changes.create_on.push(node_name.to_string()),
            Some(pods) if should_continue => {
                let mut running = Vec::new();
                for pod in pods {
                    if pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    match pod_phase(pod) {
                        "Failed" => {
                            if let Some(delay) = backoff(node_name) {
                                changes.retry_after = Some(changes.retry_after.map_or(delay, |d| d.min(delay)));
                                continue;
                            }
                            let msg = format!("Found failed daemon pod {ns}/{} on node {node_name}, will try to kill it", name(&pod.metadata));
                            changes.events.push((EventType::Warning, "FailedDaemonPod", msg));
                            changes.delete.push(Arc::clone(pod));
                        }
                        "Succeeded" => {
                            let msg = format!("Found succeeded daemon pod {ns}/{} on node {node_name}, will try to delete it", name(&pod.metadata));
                            changes.events.push((EventType::Normal, "SucceededDaemonPod", msg));
                            changes.delete.push(Arc::clone(pod));
                        }
                        _ => running.push(Arc::clone(pod)),
                    }
                }
                sort_oldest_first(&mut running);
                if !allows_surge(ds) {
                    // One pod per node: the oldest stays.
                    changes.delete.extend(running.into_iter().skip(1));
                    continue;
                }
                if running.len() <= 1 {
                    if running.is_empty() && should_run {
                        changes.create_on.push(node_name.to_string());
                    }
                    continue;
                }
                // Surging: keep the oldest new and the oldest old pod, and the old one
                // only while the new one is not yet available.
                let (mut oldest_new, mut oldest_old) = (None, None);
                for pod in running {
                    let slot = if pod.metadata.labels.as_ref().and_then(|l| l.get(UNIQUE_LABEL)).map(String::as_str) == Some(hash) { &mut oldest_new } else { &mut oldest_old };
                    if slot.is_none() {
                        *slot = Some(pod);
                    } else {
                        changes.delete.push(pod);
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                    if !is_pod_ready(&old) || is_pod_available(&new, min_ready_seconds(ds), now) {
                        changes.delete.push(old);
                    }
                }
            }
            Some(pods) => changes.delete.extend(pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).cloned()),
            None => {}
        }
    }
    // Pods for nodes that no longer exist: nothing else would remove the unbound
    // ones, and the bound ones have nowhere to run.
    let existing: HashSet<&str> = nodes.iter().map(|n| name(&n.metadata)).collect();
    for (node, pods) in node_pods {
        if !existing.contains(node.as_str()) {
            changes.force_delete.extend(pods.iter().cloned());
        }
    }
    changes
}

/// Desired count and the rollout budgets (upstream `updatedDesiredNodeCounts`):
/// with neither surge nor unavailability allowed, one pod may be unavailable.
fn rollout_budgets(ds: &DaemonSet, nodes: &[Arc<Node>]) -> Result<(i32, i32, i32), InvalidBudget> {
    let desired = nodes.iter().filter(|n| node_should_run(n, ds).0).count() as i32;
    let mut max_unavailable = unavailable_count(ds, desired)?;
    let max_surge = surge_count(ds, desired)?;
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        max_unavailable = 1;
    }
    Ok((max_surge, max_unavailable, desired))
}

/// A node's pod of the current template and its pod of an older one.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// The non-deleted new and old pod of a node; `None` when there are several of
/// either (the manage step prunes those first).
fn updated_pods_on_node(pods: &[Arc<Pod>], hash: &str, generation: Option<i64>) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_pod_updated(pod, hash, generation) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(Arc::clone(pod));
    }
    Some((new, old))
}

/// Which old pods go and which nodes get a new pod in a rolling update (upstream
/// `rollingUpdate`).
pub fn rolling_update(ds: &DaemonSet, nodes: &[Arc<Node>], node_pods: &NodePods, hash: &str, now: jiff::Timestamp) -> Result<Changes, InvalidBudget> {
    let (max_surge, max_unavailable, desired) = rollout_budgets(ds, nodes)?;
    let generation = template_generation(ds);
    let min_ready = min_ready_seconds(ds);
    let available = |p: &Pod| is_pod_available(p, min_ready, now);
    // Every node that should run a pod takes part, with or without pods.
    let mut all: NodePods = node_pods.clone();
    for node in nodes.iter().filter(|n| node_should_run(n, ds).0) {
        all.entry(name(&node.metadata).to_string()).or_default();
    }
    let by_name: HashMap<&str, &Arc<Node>> = nodes.iter().map(|n| (name(&n.metadata), n)).collect();
    let should_run = |node: &str| by_name.get(node).is_some_and(|n| node_should_run(n, ds).0);
    let mut changes = Changes::default();

    if max_surge == 0 {
        // Delete just enough old pods to stay within maxUnavailable; the manage
        // step then creates their replacements.
        let mut unavailable = 0;
        let mut replacements = Vec::new();
        let mut candidates = Vec::new();
        for pods in all.values() {
            let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(&old) {
                        replacements.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).max(0) as usize;
        changes.delete = replacements;
        changes.delete.extend(candidates.into_iter().take(remaining));
        return Ok(changes);
    }

    // Surging: a new pod goes up next to an old one, and the old one goes once the
    // new one is available.
    let mut surge = 0;
    let mut available_count = 0;
    let mut allowed_new = Vec::new();
    let mut candidate_new = Vec::new();
    let mut should_not_run_old = Vec::new();
    for (node, pods) in &all {
        let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
            surge += 1;
            continue;
        };
        if let Some(p) = old.as_ref().or(new.as_ref()) {
            if available(p) {
                available_count += 1;
            }
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(&old) {
                    if should_run(node) {
                        allowed_new.push(node.clone());
                    } else {
                        changes.delete.push(old);
                    }
                } else if !should_run(node) {
                    should_not_run_old.push(old);
                } else if surge < max_surge {
                    candidate_new.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(&new) {
                    changes.delete.push(old);
                } else {
                    surge += 1;
                }
            }
        }
    }
    // Old pods on nodes that no longer qualify go only once enough pods elsewhere
    // are available.
    let deletable = (available_count - desired).max(0) as usize;
    changes.delete.extend(should_not_run_old.into_iter().take(deletable));
    let remaining = (max_surge - surge).max(0) as usize;
    changes.create_on = allowed_new;
    changes.create_on.extend(candidate_new.into_iter().take(remaining));
    Ok(changes)
}

/// The counts of a daemon set's status (upstream `updateDaemonSetStatus`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    pub unavailable: i32,
}

pub fn count(ds: &DaemonSet, nodes: &[Arc<Node>], node_pods: &NodePods, hash: &str, now: jiff::Timestamp) -> Counts {
    let mut c = Counts::default();
    let generation = template_generation(ds);
    for node in nodes {
        let should_run = node_should_run(node, ds).0;
        let pods = node_pods.get(name(&node.metadata)).filter(|p| !p.is_empty());
        match (should_run, pods) {
            (true, None) => c.desired += 1,
            (true, Some(pods)) => {
                c.desired += 1;
                c.current += 1;
                let mut pods = pods.clone();
                sort_oldest_first(&mut pods);
                let pod = &pods[0];
                if is_pod_ready(pod) {
                    c.ready += 1;
                    if is_pod_available(pod, min_ready_seconds(ds), now) {
                        c.available += 1;
                    }
                }
                if is_pod_updated(pod, hash, generation) {
                    c.updated += 1;
                }
            }
            (false, Some(_)) => c.misscheduled += 1,
            (false, None) => {}
        }
    }
    c.unavailable = c.desired - c.available;
    c
}

/// Whether a node update changes nothing the controller looks at: the same
/// conditions are true and nothing else differs but the resourceVersion and the
/// conditions (heartbeats).
fn node_update_is_irrelevant(old: &Node, new: &Node) -> bool {
    let true_conditions = |n: &Node| -> HashSet<String> {
        n.status.iter().flat_map(|s| s.conditions.iter().flatten()).filter(|c| c.status == "True").map(|c| c.type_.clone()).collect()
    };
    if true_conditions(old) != true_conditions(new) {
        return false;
    }
    let strip = |n: &Node| {
        let mut n = n.clone();
        n.metadata.resource_version = None;
        n.metadata.managed_fields = None;
        if let Some(s) = n.status.as_mut() {
            s.conditions = None;
        }
        n
    };
    strip(old) == strip(new)
}

// === failed pod back-off ===

/// Per node and generation, how long until a failed daemon pod may be deleted
/// again: the controller would otherwise fight a kubelet that keeps rejecting
/// the pod (upstream `failedPodsBackoff`, 1 s doubling to 15 min).
#[derive(Default)]
struct Backoff {
    entries: Mutex<HashMap<String, (tokio::time::Instant, Duration)>>,
}

impl Backoff {
    /// The remaining wait for `key`, or `None` after recording a deletion now.
    fn check(&self, key: &str) -> Option<Duration> {
        let now = tokio::time::Instant::now();
        // std Mutex: nothing async happens while it is held.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get_mut(key) {
            Some((last, delay)) if now.duration_since(*last) < *delay => Some(*delay - now.duration_since(*last)),
            Some((last, delay)) => {
                *delay = if now.duration_since(*last) > 2 * FAILED_POD_BACKOFF_MAX { FAILED_POD_BACKOFF } else { (*delay * 2).min(FAILED_POD_BACKOFF_MAX) };
                *last = now;
                None
            }
            None => {
                entries.insert(key.to_string(), (now, FAILED_POD_BACKOFF));
                None
            }
        }
    }
}

// === the controller ===

struct Controller {
    ctx: Context,
    queue: WorkQueue<String>,
    recorder: EventRecorder,
    expectations: Expectations,
    backoff: Backoff,
}

/// What one sync reads: the nodes, the daemon set's pods (also by node) and the
/// hash of its current template.
struct Snapshot {
    nodes: Vec<Arc<Node>>,
    pods: Vec<Arc<Pod>>,
    node_pods: NodePods,
    hash: String,
}

/// Runs the daemonset controller until the future is dropped.
pub async fn run(ctx: Context) {
    let controller = Arc::new(Controller { recorder: ctx.recorder(COMPONENT), queue: WorkQueue::new(), expectations: Expectations::new(), backoff: Backoff::default(), ctx });
    controller.register();
    tokio::join!(
        controller.ctx.daemon_sets.wait_synced(),
        controller.ctx.pods.wait_synced(),
        controller.ctx.nodes.wait_synced(),
        controller.ctx.controller_revisions.wait_synced(),
    );
    let c = Arc::clone(&controller);
    run_workers("daemonset", controller.queue.clone(), WORKERS, move |key| {
        let c = Arc::clone(&c);
        async move { c.sync(&key).await }
    })
    .await;
}

impl Controller {
    fn register(self: &Arc<Self>) {
        self.ctx.daemon_sets.on_event(enqueue_object_key(self.queue.clone()));

        let this = Arc::clone(self);
        self.ctx.pods.on_event(Arc::new(move |event| match event {
            InformerEvent::Applied { old: None, new } => {
                if new.metadata.deletion_timestamp.is_some() {
                    this.pod_deleted(new);
                } else if let Some(key) = this.owner_key(&new.metadata) {
                    this.expectations.creation_observed(&key);
                    this.queue.add(key);
                } else {
                    this.enqueue_selecting(new);
                }
            }
            InformerEvent::Applied { old: Some(old), new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if new.metadata.deletion_timestamp.is_some() {
                    this.pod_deleted(new);
                    return;
                }
                let ref_changed = controller_ref(&old.metadata) != controller_ref(&new.metadata);
                if ref_changed {
                    if let Some(key) = this.owner_key(&old.metadata) {
                        this.queue.add(key);
                    }
                }
                if let Some(key) = this.owner_key(&new.metadata) {
                    this.queue.add(key);
                } else if controller_ref(&new.metadata).is_none() && (ref_changed || old.metadata.labels != new.metadata.labels) {
                    this.enqueue_selecting(new);
                }
            }
            InformerEvent::Deleted(pod) => this.pod_deleted(pod),
        }));

        let this = Arc::clone(self);
        self.ctx.nodes.on_event(Arc::new(move |event| {
            for ds in this.ctx.daemon_sets.store().list() {
                let wake = match event {
                    InformerEvent::Applied { old: None, new } => node_should_run(new, &ds).0,
                    InformerEvent::Applied { old: Some(old), new } => !node_update_is_irrelevant(old, new) && node_should_run(old, &ds) != node_should_run(new, &ds),
                    // Its pods must go.
                    InformerEvent::Deleted(_) => true,
                };
                if wake {
                    this.queue.add(key_of(&ds.metadata));
                }
            }
        }));

        let this = Arc::clone(self);
        self.ctx.controller_revisions.on_event(Arc::new(move |event| {
            let rev = match event {
                InformerEvent::Applied { new, .. } => new,
                InformerEvent::Deleted(old) => old,
            };
            if let Some(key) = this.owner_key(&rev.metadata) {
                this.queue.add(key);
            }
        }));
    }

    /// The key of the daemon set a controller reference points at, if it exists.
    fn owner_key(&self, meta: &ObjectMeta) -> Option<String> {
        let r = controller_ref(meta)?;
        if r.kind != KIND {
            return None;
        }
        let ds = self.ctx.daemon_sets.store().get(namespace(meta), &r.name)?;
        (uid(&ds.metadata) == r.uid).then(|| key_of(&ds.metadata))
    }

    fn pod_deleted(&self, pod: &Pod) {
        if let Some(key) = self.owner_key(&pod.metadata) {
            self.expectations.deletion_observed(&key);
            self.queue.add(key);
        }
    }

    fn enqueue_selecting(&self, pod: &Pod) {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for ds in self.ctx.daemon_sets.store().list_namespace(namespace(&pod.metadata)) {
            if ds.spec.as_ref().is_some_and(|s| !selector_is_empty(&s.selector) && label_selector_matches(&s.selector, &labels)) {
                self.queue.add(key_of(&ds.metadata));
            }
        }
    }

    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize + Clone + Send + Sync + 'static,
    {
        Api::namespaced(&self.ctx.client, ns)
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, ds_name) = split_key(key);
        let Some(ds) = self.ctx.daemon_sets.store().get(ns, ds_name) else {
            self.expectations.delete(key);
            return Ok(None);
        };
        let Some(spec) = ds.spec.as_ref() else { return Ok(None) };
        let nodes = self.ctx.nodes.store().list();
        if selector_is_empty(&spec.selector) {
            self.recorder.record(&*ds, EventType::Warning, "SelectingAll", "This daemon set is selecting all pods. A non-empty selector is required.");
            return Ok(None);
        }
        // Its revisions may already be gone or orphaned: nothing can be counted
        // reliably for a daemon set being deleted.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let (current, old) = self.construct_history(&ds).await?;
        let hash = current.metadata.labels.as_ref().and_then(|l| l.get(UNIQUE_LABEL)).cloned().unwrap_or_default();
        let pods = self.claim_pods(&ds).await?;
        let snap = Snapshot { node_pods: pods_by_node(&pods, false), pods, nodes, hash };
        let now = jiff::Timestamp::now();

        if !self.expectations.satisfied(key) {
            // Only the status; observedGeneration stays, as this generation was not
            // acted on.
            return self.write_status(&ds, count(&ds, &snap.nodes, &snap.node_pods, &snap.hash, now), false).await;
        }
        let updated = self.update_daemon_set(&ds, key, &snap, &old).await;
        let status = self.write_status(&ds, count(&ds, &snap.nodes, &snap.node_pods, &snap.hash, now), true).await;
        let retry = updated?;
        let requeue = status?;
        Ok(match (retry, requeue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Creates and deletes pods as the nodes require, or else takes the next
    /// rolling-update step, then trims the history.
    async fn update_daemon_set(&self, ds: &DaemonSet, key: &str, snap: &Snapshot, old: &[Arc<ControllerRevision>]) -> Result<Option<Duration>, Error> {
        let Snapshot { nodes, pods, node_pods, hash } = snap;
        let now = jiff::Timestamp::now();
        let backoff_key = |node: &str| format!("{}/{}/{node}", uid(&ds.metadata), ds.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0));
        let changes = manage(ds, nodes, node_pods, hash, now, &|node| self.backoff.check(&backoff_key(node)));
        for (kind, reason, message) in &changes.events {
            self.recorder.record(ds, *kind, reason, message);
        }
        let retry_after = changes.retry_after;
        if !changes.is_empty() {
            self.sync_nodes(ds, key, &changes, hash).await?;
        } else if rolling(ds).is_some() && self.expectations.satisfied(key) {
            let changes = rolling_update(ds, nodes, node_pods, hash, now)?;
            if !changes.is_empty() {
                self.sync_nodes(ds, key, &changes, hash).await?;
            }
        }
        self.cleanup_history(ds, pods, old).await?;
        Ok(retry_after)
    }

    /// Upstream's `RecheckDeletionTimestamp`: adopt only for a daemon set that still
    /// exists, is the same object and is not being deleted (read from the API).
    async fn can_adopt(&self, ds: &DaemonSet) -> Result<(), Error> {
        let fresh = self.api::<DaemonSet>(namespace(&ds.metadata)).get(name(&ds.metadata)).await?;
        if uid(&fresh.metadata) != uid(&ds.metadata) || fresh.metadata.deletion_timestamp.is_some() {
            return Err(Error::Gone(key_of(&ds.metadata)));
        }
        Ok(())
    }

    /// The daemon set's pods: controlled and selected, plus adopted orphans;
    /// controlled pods it no longer selects are released.
    async fn claim_pods(&self, ds: &DaemonSet) -> Result<Vec<Arc<Pod>>, Error> {
        let ns = namespace(&ds.metadata);
        let selector = &ds.spec.as_ref().expect("checked by sync").selector;
        let api: Api<Pod> = self.api(ns);
        let mut owned = Vec::new();
        let mut checked = false;
        for pod in self.ctx.pods.store().list_namespace(ns) {
            let selected = label_selector_matches(selector, &pod.metadata.labels.clone().unwrap_or_default());
            match claim_action(&pod.metadata, uid(&ds.metadata), false, selected) {
                ClaimAction::Keep => owned.push(pod),
                ClaimAction::Adopt => {
                    if !checked {
                        self.can_adopt(ds).await?;
                        checked = true;
                    }
                    let owner = new_controller_ref(KIND, API_VERSION, name(&ds.metadata), uid(&ds.metadata));
                    if let Some(adopted) = adopt(&api, &pod.metadata, &owner).await? {
                        owned.push(Arc::new(adopted));
                    }
                }
                ClaimAction::Release => release(&api, &pod.metadata, uid(&ds.metadata)).await?,
                ClaimAction::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Creates pods on `changes.create_on` and deletes `changes.delete`, at most
    /// [`BURST_REPLICAS`] of each, with expectations set first so the informer's
    /// echo of these writes is awaited before the next count.
    async fn sync_nodes(&self, ds: &DaemonSet, key: &str, changes: &Changes, hash: &str) -> Result<(), Error> {
        let creates = &changes.create_on[..changes.create_on.len().min(BURST_REPLICAS)];
        let mut seen = HashSet::new();
        let force: HashSet<&str> = changes.force_delete.iter().map(|p| name(&p.metadata)).collect();
        let deletes: Vec<&Arc<Pod>> =
            changes.force_delete.iter().chain(&changes.delete).filter(|p| seen.insert(name(&p.metadata).to_string())).take(BURST_REPLICAS).collect();
        self.expectations.set(key, creates.len() as i64, deletes.len() as i64);

        let ns = namespace(&ds.metadata);
        let template = pod_template(ds, template_generation(ds), hash);
        let owner = new_controller_ref(KIND, API_VERSION, name(&ds.metadata), uid(&ds.metadata));
        let api: Api<Pod> = self.api(ns);
        let attempted = std::sync::atomic::AtomicUsize::new(0);
        let (_, create_err) = slow_start_batch(creates.len(), 1, |i| {
            attempted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut pod = pod_from_template(&template, ns, &format!("{}-", name(&ds.metadata)), Some(owner.clone()));
            let spec = pod.spec.get_or_insert_with(PodSpec::default);
            spec.affinity = Some(node_affinity_for(spec.affinity.take(), &creates[i]));
            let api = api.clone();
            async move {
                match api.create(&pod).await {
                    Ok(p) => {
                        self.recorder.record(ds, EventType::Normal, "SuccessfulCreate", &format!("Created pod: {}", name(&p.metadata)));
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        if is_namespace_terminating(&e) {
                            return Ok(());
                        }
                        self.recorder.record(ds, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                        Err(Error::from(e))
                    }
                }
            }
        })
        .await;
        // Creates never attempted are not awaited; the next sync retries them.
        let skipped = creates.len() - attempted.into_inner();
        if skipped > 0 {
            self.expectations.lower(key, skipped as i64, 0);
        }

        let force = &force;
        let results = futures::future::join_all(deletes.iter().map(|pod| {
            let api = api.clone();
            async move {
                let grace = force.contains(name(&pod.metadata)).then_some(0);
                let params = DeleteParams { precondition_uid: pod.metadata.uid.clone(), grace_period_seconds: grace, ..DeleteParams::default() };
                match api.delete(name(&pod.metadata), &params).await {
                    Ok(()) => {
                        self.recorder.record(ds, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {}", name(&pod.metadata)));
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key);
                        if e.is_not_found() {
                            return Ok(());
                        }
                        self.recorder.record(ds, EventType::Warning, "FailedDelete", &format!("Error deleting: {e}"));
                        Err(Error::from(e))
                    }
                }
            }
        }))
        .await;
        if let Some(e) = create_err {
            return Err(e);
        }
        results.into_iter().collect::<Result<Vec<()>, Error>>().map(|_| ())
    }

    /// Records the counts if they changed (upstream `storeDaemonSetStatus`);
    /// returns when to look again for pods turning available.
    async fn write_status(&self, ds: &DaemonSet, c: Counts, observe: bool) -> Result<Option<Duration>, Error> {
        let min_ready = min_ready_seconds(ds);
        let requeue = (min_ready > 0 && c.ready != c.available).then(|| Duration::from_secs(min_ready as u64));
        let old = ds.status.clone().unwrap_or_default();
        let generation = ds.metadata.generation.unwrap_or(0);
        let same = old.desired_number_scheduled == c.desired
            && old.current_number_scheduled == c.current
            && old.number_misscheduled == c.misscheduled
            && old.number_ready == c.ready
            && old.updated_number_scheduled.unwrap_or(0) == c.updated
            && old.number_available.unwrap_or(0) == c.available
            && old.number_unavailable.unwrap_or(0) == c.unavailable
            && old.observed_generation.unwrap_or(0) >= generation;
        if same {
            return Ok(requeue);
        }
        let api: Api<DaemonSet> = self.api(namespace(&ds.metadata));
        let mut obj = ds.clone();
        for attempt in 0..2 {
            let status = obj.status.get_or_insert_with(DaemonSetStatus::default);
            if observe {
                status.observed_generation = Some(generation);
            }
            // Upstream omits the zero counts of these.
            let non_zero = |v: i32| Some(v).filter(|v| *v != 0);
            status.desired_number_scheduled = c.desired;
            status.current_number_scheduled = c.current;
            status.number_misscheduled = c.misscheduled;
            status.number_ready = c.ready;
            status.updated_number_scheduled = non_zero(c.updated);
            status.number_available = non_zero(c.available);
            status.number_unavailable = non_zero(c.unavailable);
            match api.replace_status(name(&ds.metadata), &obj).await {
                Ok(_) => return Ok(requeue),
                Err(e) if e.is_conflict() && attempt == 0 => obj = api.get(name(&ds.metadata)).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(requeue)
    }

    // === history ===

    /// The daemon set's revisions: controlled and selected, plus adopted orphans;
    /// controlled ones it no longer selects are released.
    async fn controlled_histories(&self, ds: &DaemonSet) -> Result<Vec<Arc<ControllerRevision>>, Error> {
        let ns = namespace(&ds.metadata);
        let selector = &ds.spec.as_ref().expect("checked by sync").selector;
        let api: Api<ControllerRevision> = self.api(ns);
        let mut owned = Vec::new();
        let mut checked = false;
        for rev in self.ctx.controller_revisions.store().list_namespace(ns) {
            let selected = label_selector_matches(selector, &rev.metadata.labels.clone().unwrap_or_default());
            match claim_action(&rev.metadata, uid(&ds.metadata), false, selected) {
                ClaimAction::Keep => owned.push(rev),
                ClaimAction::Adopt => {
                    if !checked {
                        self.can_adopt(ds).await?;
                        checked = true;
                    }
                    let owner = new_controller_ref(KIND, API_VERSION, name(&ds.metadata), uid(&ds.metadata));
                    owned.push(Arc::new(history::adopt_revision(&api, &owner, &rev).await?));
                }
                ClaimAction::Release => {
                    history::release_revision(&api, uid(&ds.metadata), &rev).await?;
                }
                ClaimAction::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// The revision of the current template (created or renumbered as needed) and
    /// the older ones (upstream `constructHistory`).
    async fn construct_history(&self, ds: &DaemonSet) -> Result<(Arc<ControllerRevision>, Vec<Arc<ControllerRevision>>), Error> {
        let api: Api<ControllerRevision> = self.api(namespace(&ds.metadata));
        let mut current = Vec::new();
        let mut old = Vec::new();
        for rev in self.controlled_histories(ds).await? {
            // Revisions of older controllers lack the hash label: their name serves.
            let rev = if rev.metadata.labels.as_ref().is_some_and(|l| l.contains_key(UNIQUE_LABEL)) {
                rev
            } else {
                let mut labelled = (*rev).clone();
                labelled.metadata.labels.get_or_insert_with(BTreeMap::new).insert(UNIQUE_LABEL.into(), name(&rev.metadata).to_string());
                Arc::new(api.replace(name(&rev.metadata), &labelled).await?)
            };
            if revision_matches(ds, &rev) {
                current.push(rev);
            } else {
                old.push(rev);
            }
        }
        let next = history::max_revision(&old) + 1;
        let cur = if current.is_empty() {
            self.snapshot(ds, next).await?
        } else {
            let keep = self.dedup(ds, current).await?;
            if keep.revision < next {
                Arc::new(history::update_revision_number(&api, &keep, next).await?)
            } else {
                keep
            }
        };
        Ok((cur, old))
    }

    /// Several revisions hold the current template: keep the newest, move pods
    /// labelled with the others onto its hash, delete the others.
    async fn dedup(&self, ds: &DaemonSet, mut current: Vec<Arc<ControllerRevision>>) -> Result<Arc<ControllerRevision>, Error> {
        current.sort_by_key(|r| r.revision);
        let keep = current.pop().expect("at least one revision");
        if current.is_empty() {
            return Ok(keep);
        }
        let hash_of = |r: &ControllerRevision| r.metadata.labels.as_ref().and_then(|l| l.get(UNIQUE_LABEL)).cloned().unwrap_or_default();
        let keep_hash = hash_of(&keep);
        let duplicate_hashes: HashSet<String> = current.iter().map(|r| hash_of(r)).collect();
        let ns = namespace(&ds.metadata);
        let pods: Api<Pod> = self.api(ns);
        for pod in self.claim_pods(ds).await? {
            let pod_hash = pod.metadata.labels.as_ref().and_then(|l| l.get(UNIQUE_LABEL)).cloned().unwrap_or_default();
            if pod_hash != keep_hash && duplicate_hashes.contains(&pod_hash) {
                pods.patch(name(&pod.metadata), PatchType::Merge, &json!({"metadata": {"labels": {UNIQUE_LABEL: keep_hash}}})).await?;
            }
        }
        let api: Api<ControllerRevision> = self.api(ns);
        for dup in current {
            history::delete_revision(&api, &dup).await?;
        }
        Ok(keep)
    }

    /// Creates the revision of the current template (upstream `snapshot`). A name
    /// taken by another template bumps the collision count and fails this sync.
    async fn snapshot(&self, ds: &DaemonSet, number: i64) -> Result<Arc<ControllerRevision>, Error> {
        let template = template(ds);
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template, collision_count);
        let rev_name = format!("{}-{hash}", name(&ds.metadata));
        let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(UNIQUE_LABEL.into(), hash.clone());
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(rev_name.clone()),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![new_controller_ref(KIND, API_VERSION, name(&ds.metadata), uid(&ds.metadata))]),
                ..ObjectMeta::default()
            },
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(history::template_patch(&template))),
            revision: number,
        };
        let api: Api<ControllerRevision> = self.api(namespace(&ds.metadata));
        match api.create(&rev).await {
            Ok(created) => Ok(Arc::new(created)),
            Err(e) if e.reason() == Some("AlreadyExists") => {
                let existing = api.get(&rev_name).await?;
                if revision_matches(ds, &existing) {
                    return Ok(Arc::new(existing));
                }
                let dss: Api<DaemonSet> = self.api(namespace(&ds.metadata));
                let mut fresh = dss.get(name(&ds.metadata)).await?;
                let fresh_count = fresh.status.as_ref().and_then(|s| s.collision_count);
                if fresh_count != collision_count {
                    return Err(Error::HashCollision(key_of(&ds.metadata), format!("stale collision count {collision_count:?}, now {fresh_count:?}")));
                }
                let status = fresh.status.get_or_insert_with(DaemonSetStatus::default);
                status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                dss.replace_status(name(&ds.metadata), &fresh).await?;
                Err(Error::HashCollision(key_of(&ds.metadata), format!("{rev_name} holds another template")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the oldest old revisions beyond `revisionHistoryLimit` whose hash no
    /// pod carries (upstream `cleanupHistory`).
    async fn cleanup_history(&self, ds: &DaemonSet, pods: &[Arc<Pod>], old: &[Arc<ControllerRevision>]) -> Result<(), Error> {
        let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(history::DEFAULT_REVISION_HISTORY_LIMIT).max(0) as usize;
        let mut to_kill = old.len().saturating_sub(limit);
        if to_kill == 0 {
            return Ok(());
        }
        let live: HashSet<&str> = pods.iter().filter_map(|p| p.metadata.labels.as_ref()?.get(UNIQUE_LABEL).map(String::as_str)).collect();
        let mut old = old.to_vec();
        old.sort_by_key(|r| r.revision);
        let api: Api<ControllerRevision> = self.api(namespace(&ds.metadata));
        for rev in old {
            if to_kill == 0 {
                break;
            }
            if rev.metadata.labels.as_ref().and_then(|l| l.get(UNIQUE_LABEL)).is_some_and(|h| live.contains(h.as_str())) {
                continue;
            }
            history::delete_revision(&api, &rev).await?;
            to_kill -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
    use k8s_openapi::api::core::v1::{Container, NodeSpec, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    const HASH: &str = "newhash";

    // === builders ===

    struct DsBuilder(DaemonSet);

    fn make_ds() -> DsBuilder {
        DsBuilder(DaemonSet {
            metadata: ObjectMeta { name: Some("agent".into()), namespace: Some("default".into()), uid: Some("ds-uid".into()), generation: Some(1), ..Default::default() },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector { match_labels: Some([("app".to_string(), "agent".to_string())].into()), ..Default::default() },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "agent".to_string())].into()), ..Default::default() }),
                    spec: Some(PodSpec { containers: vec![Container { name: "c".into(), image: Some("agent:1".into()), ..Default::default() }], ..Default::default() }),
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet { max_unavailable: Some(IntOrString::Int(1)), max_surge: Some(IntOrString::Int(0)) }),
                }),
                ..Default::default()
            }),
            status: None,
        })
    }

    impl DsBuilder {
        fn pod_spec(&mut self) -> &mut PodSpec {
            self.0.spec.as_mut().unwrap().template.spec.as_mut().unwrap()
        }
        fn node_selector(mut self, k: &str, v: &str) -> Self {
            self.pod_spec().node_selector = Some([(k.to_string(), v.to_string())].into());
            self
        }
        fn toleration(mut self, t: Toleration) -> Self {
            self.pod_spec().tolerations.get_or_insert_with(Vec::new).push(t);
            self
        }
        fn affinity_in(mut self, key: &str, values: &[&str]) -> Self {
            self.pod_spec().affinity = Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement { key: key.into(), operator: "In".into(), values: Some(values.iter().map(|v| v.to_string()).collect()) }]),
                            match_fields: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            self
        }
        fn budgets(mut self, unavailable: IntOrString, surge: IntOrString) -> Self {
            let ru = self.0.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap();
            ru.max_unavailable = Some(unavailable);
            ru.max_surge = Some(surge);
            self
        }
        fn obj(self) -> DaemonSet {
            self.0
        }
    }

    struct NodeBuilder(Node);

    fn make_node(name: &str) -> NodeBuilder {
        NodeBuilder(Node {
            metadata: ObjectMeta { name: Some(name.into()), labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()), ..Default::default() },
            spec: Some(NodeSpec::default()),
            status: None,
        })
    }

    impl NodeBuilder {
        fn label(mut self, k: &str, v: &str) -> Self {
            self.0.metadata.labels.as_mut().unwrap().insert(k.into(), v.into());
            self
        }
        fn taint(mut self, key: &str, effect: &str) -> Self {
            self.0.spec.as_mut().unwrap().taints.get_or_insert_with(Vec::new).push(Taint { key: key.into(), value: Some("v".into()), effect: effect.into(), time_added: None });
            self
        }
        fn obj(self) -> Arc<Node> {
            Arc::new(self.0)
        }
    }

    fn daemon_pod(name: &str, node: &str, hash: &str, ready: bool, age: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "agent".to_string()), (UNIQUE_LABEL.to_string(), hash.to_string())].into()),
                creation_timestamp: Some(Time(jiff::Timestamp::from_second(1_000_000 - age).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition { type_: "Ready".into(), status: if ready { "True" } else { "False" }.into(), ..Default::default() }]),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        n.sort();
        n
    }

    fn no_backoff(_: &str) -> Option<Duration> {
        None
    }

    // === eligibility ===

    #[test]
    fn tolerations_match_taints_by_key_value_and_effect() {
        let taint = Taint { key: "k".into(), value: Some("v".into()), effect: "NoSchedule".into(), time_added: None };
        let t = |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
            key: key.map(Into::into),
            operator: Some(op.into()),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        };
        assert!(tolerates(&t(Some("k"), "Equal", Some("v"), Some("NoSchedule")), &taint));
        assert!(tolerates(&t(Some("k"), "Exists", None, None), &taint));
        assert!(tolerates(&t(None, "Exists", None, None), &taint));
        assert!(!tolerates(&t(Some("k"), "Equal", Some("w"), None), &taint));
        assert!(!tolerates(&t(Some("k"), "Exists", None, Some("NoExecute")), &taint));
        assert!(!tolerates(&t(Some("other"), "Exists", None, None), &taint));
    }

    #[test]
    fn daemon_pods_tolerate_node_problems() {
        let mut spec = PodSpec { host_network: Some(true), ..Default::default() };
        add_daemon_tolerations(&mut spec);
        add_daemon_tolerations(&mut spec);
        let keys: Vec<(String, String)> = spec.tolerations.unwrap().into_iter().map(|t| (t.key.unwrap(), t.effect.unwrap())).collect();
        assert_eq!(keys.len(), 7, "adding twice does not duplicate: {keys:?}");
        assert!(keys.contains(&("node.kubernetes.io/not-ready".into(), "NoExecute".into())));
        assert!(keys.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into())));
        assert!(keys.contains(&("node.kubernetes.io/unschedulable".into(), "NoSchedule".into())));
        assert!(keys.contains(&("node.kubernetes.io/network-unavailable".into(), "NoSchedule".into())));
        let mut plain = PodSpec::default();
        add_daemon_tolerations(&mut plain);
        assert_eq!(plain.tolerations.unwrap().len(), 6);
    }

    #[test]
    fn taints_decide_where_daemon_pods_run_and_stay() {
        let ds = make_ds().obj();
        assert_eq!(node_should_run(&make_node("a").obj(), &ds), (true, true));
        // NoSchedule keeps new pods away but leaves running ones.
        assert_eq!(node_should_run(&make_node("a").taint("k", "NoSchedule").obj(), &ds), (false, true));
        // NoExecute evicts.
        assert_eq!(node_should_run(&make_node("a").taint("k", "NoExecute").obj(), &ds), (false, false));
        // Node problem taints are tolerated by default.
        assert_eq!(node_should_run(&make_node("a").taint("node.kubernetes.io/unschedulable", "NoSchedule").obj(), &ds), (true, true));
        assert_eq!(node_should_run(&make_node("a").taint("node.kubernetes.io/not-ready", "NoExecute").obj(), &ds), (true, true));
        // PreferNoSchedule never matters.
        assert_eq!(node_should_run(&make_node("a").taint("k", "PreferNoSchedule").obj(), &ds), (true, true));
        let tolerant = make_ds().toleration(Toleration { key: Some("k".into()), operator: Some("Exists".into()), ..Default::default() }).obj();
        assert_eq!(node_should_run(&make_node("a").taint("k", "NoExecute").obj(), &tolerant), (true, true));
    }

    #[test]
    fn selectors_and_affinity_restrict_eligible_nodes() {
        let ds = make_ds().node_selector("role", "edge").obj();
        assert_eq!(node_should_run(&make_node("a").label("role", "edge").obj(), &ds), (true, true));
        assert_eq!(node_should_run(&make_node("a").obj(), &ds), (false, false));
        let ds = make_ds().affinity_in("zone", &["a", "b"]).obj();
        assert!(node_should_run(&make_node("a").label("zone", "b").obj(), &ds).0);
        assert!(!node_should_run(&make_node("a").label("zone", "c").obj(), &ds).0);
        let mut ds = make_ds().obj();
        ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_name = Some("b".into());
        assert_eq!(node_should_run(&make_node("a").obj(), &ds), (false, false));
        assert!(node_should_run(&make_node("b").obj(), &ds).0);
    }

    #[test]
    fn node_selector_operators_follow_upstream() {
        let req = |op: &str, values: &[&str]| NodeSelectorRequirement { key: "n".into(), operator: op.into(), values: Some(values.iter().map(|v| v.to_string()).collect()) };
        assert!(requirement_matches(&req("Gt", &["3"]), Some("4")));
        assert!(!requirement_matches(&req("Gt", &["3"]), Some("3")));
        assert!(requirement_matches(&req("Lt", &["3"]), Some("2")));
        assert!(!requirement_matches(&req("Lt", &["x"]), Some("2")));
        assert!(requirement_matches(&req("NotIn", &["a"]), None));
        assert!(requirement_matches(&req("DoesNotExist", &[]), None));
        assert!(!term_matches(&NodeSelectorTerm::default(), &make_node("a").obj()), "an empty term admits nothing");
    }

    #[test]
    fn daemon_pods_target_their_node_through_affinity() {
        let affinity = node_affinity_for(None, "node-1");
        let pod = Pod { spec: Some(PodSpec { affinity: Some(affinity.clone()), ..Default::default() }), ..Default::default() };
        assert_eq!(target_node(&pod).as_deref(), Some("node-1"));
        let node = make_node("node-1").obj();
        let spec = PodSpec { affinity: Some(affinity), ..Default::default() };
        assert!(required_node_affinity_matches(&spec, &node));
        assert!(!required_node_affinity_matches(&spec, &make_node("node-2").obj()));
        // A template's own required affinity is replaced; its preferences stay.
        let ds = make_ds().affinity_in("zone", &["a"]).obj();
        let replaced = node_affinity_for(ds.spec.unwrap().template.spec.unwrap().affinity, "node-9");
        let terms = &replaced.node_affinity.unwrap().required_during_scheduling_ignored_during_execution.unwrap().node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].match_fields.as_ref().unwrap()[0].values.as_ref().unwrap(), &vec!["node-9".to_string()]);
        assert!(terms[0].match_expressions.is_none());
    }

    #[test]
    fn pod_templates_carry_the_hash_generation_and_tolerations() {
        let mut ds = make_ds().obj();
        ds.metadata.annotations = Some([(TEMPLATE_GENERATION_ANNOTATION.to_string(), "3".to_string())].into());
        let generation = template_generation(&ds);
        assert_eq!(generation, Some(3));
        let t = pod_template(&ds, generation, HASH);
        let labels = t.metadata.unwrap().labels.unwrap();
        assert_eq!(labels[UNIQUE_LABEL], HASH);
        assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "3");
        assert_eq!(t.spec.unwrap().tolerations.unwrap().len(), 6);
        let pod = daemon_pod("p", "a", "oldhash", true, 0);
        assert!(!is_pod_updated(&pod, HASH, None));
        assert!(is_pod_updated(&pod, "oldhash", None));
    }

    // === manage ===

    #[test]
    fn every_eligible_node_gets_one_pod() {
        let ds = make_ds().node_selector("role", "edge").obj();
        let nodes = vec![make_node("a").label("role", "edge").obj(), make_node("b").label("role", "edge").obj(), make_node("c").obj()];
        let pods = pods_by_node(&[daemon_pod("p-a", "a", HASH, true, 10)], false);
        let changes = manage(&ds, &nodes, &pods, HASH, jiff::Timestamp::now(), &no_backoff);
        assert_eq!(changes.create_on, vec!["b".to_string()]);
        assert!(changes.delete.is_empty());
    }

    #[test]
    fn pods_leave_nodes_that_no_longer_qualify_or_exist() {
        let ds = make_ds().node_selector("role", "edge").obj();
        let nodes = vec![make_node("a").label("role", "edge").taint("k", "NoExecute").obj(), make_node("b").obj(), make_node("c").label("role", "edge").taint("k", "NoSchedule").obj()];
        let pods = [daemon_pod("p-a", "a", HASH, true, 10), daemon_pod("p-b", "b", HASH, true, 10), daemon_pod("p-c", "c", HASH, true, 10), daemon_pod("p-gone", "gone", HASH, true, 10)];
        let changes = manage(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now(), &no_backoff);
        // a: evicted by NoExecute; b: label gone; c: NoSchedule keeps it; gone: node deleted.
        assert_eq!(names(&changes.delete), vec!["p-a", "p-b"]);
        assert_eq!(names(&changes.force_delete), vec!["p-gone"]);
        assert!(changes.create_on.is_empty());
    }

    #[test]
    fn extra_and_failed_pods_are_removed() {
        let ds = make_ds().obj();
        let nodes = vec![make_node("a").obj(), make_node("b").obj()];
        let mut failed = (*daemon_pod("p-b", "b", HASH, false, 5)).clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let pods = [daemon_pod("old", "a", HASH, true, 10), daemon_pod("young", "a", HASH, true, 1), Arc::new(failed)];
        let changes = manage(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now(), &no_backoff);
        assert_eq!(names(&changes.delete), vec!["p-b", "young"]);
        assert_eq!(changes.events[0].1, "FailedDaemonPod");
        assert_eq!(changes.events[0].2, "Found failed daemon pod default/p-b on node b, will try to kill it");
        // In back-off, the failed pod stays and the sync comes back later.
        let changes = manage(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now(), &|_| Some(Duration::from_secs(2)));
        assert_eq!(names(&changes.delete), vec!["young"]);
        assert_eq!(changes.retry_after, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_terminating_pod_is_awaited_before_its_replacement() {
        let ds = make_ds().obj();
        let mut going = (*daemon_pod("p", "a", HASH, true, 10)).clone();
        going.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let changes = manage(&ds, &[make_node("a").obj()], &pods_by_node(&[Arc::new(going)], false), HASH, jiff::Timestamp::now(), &no_backoff);
        assert!(changes.is_empty());
    }

    // === rolling updates ===

    #[test]
    fn rolling_update_deletes_old_pods_within_max_unavailable() {
        let ds = make_ds().obj();
        let nodes: Vec<_> = ["a", "b", "c"].iter().map(|n| make_node(n).obj()).collect();
        let pods: Vec<_> = ["a", "b", "c"].iter().map(|n| daemon_pod(&format!("p-{n}"), n, "old", true, 10)).collect();
        let changes = rolling_update(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now()).unwrap();
        assert_eq!(changes.delete.len(), 1);
        assert!(changes.create_on.is_empty());
        // A node without a pod counts as unavailable: nothing more goes.
        let changes = rolling_update(&ds, &nodes, &pods_by_node(&pods[..2], false), HASH, jiff::Timestamp::now()).unwrap();
        assert!(changes.delete.is_empty());
        // Old pods that are not available are replaced regardless.
        let pods = [daemon_pod("p-a", "a", "old", false, 10), daemon_pod("p-b", "b", "old", false, 10), daemon_pod("p-c", "c", HASH, true, 10)];
        let changes = rolling_update(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now()).unwrap();
        assert_eq!(names(&changes.delete), vec!["p-a", "p-b"]);
        let ds = make_ds().budgets(IntOrString::String("100%".into()), IntOrString::Int(0)).obj();
        let pods: Vec<_> = ["a", "b", "c"].iter().map(|n| daemon_pod(&format!("p-{n}"), n, "old", true, 10)).collect();
        assert_eq!(rolling_update(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now()).unwrap().delete.len(), 3);
    }

    #[test]
    fn surge_starts_new_pods_before_old_ones_go() {
        let ds = make_ds().budgets(IntOrString::Int(0), IntOrString::Int(1)).obj();
        let nodes: Vec<_> = ["a", "b"].iter().map(|n| make_node(n).obj()).collect();
        let pods: Vec<_> = ["a", "b"].iter().map(|n| daemon_pod(&format!("p-{n}"), n, "old", true, 10)).collect();
        let changes = rolling_update(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now()).unwrap();
        assert_eq!(changes.create_on, vec!["a".to_string()]);
        assert!(changes.delete.is_empty());
        // The new pod on a is available: the old one goes, and b may surge next.
        let mut pods = pods.clone();
        pods.push(daemon_pod("n-a", "a", HASH, true, 1));
        let changes = rolling_update(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now()).unwrap();
        assert_eq!(names(&changes.delete), vec!["p-a"]);
        assert_eq!(changes.create_on, vec!["b".to_string()]);
        // While the new pod on a is not ready, b waits.
        let mut pods = pods[..2].to_vec();
        pods.push(daemon_pod("n-a", "a", HASH, false, 1));
        let changes = rolling_update(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now()).unwrap();
        assert!(changes.is_empty());
        // With surge, manage keeps one old and one new pod per node.
        let manage_changes = manage(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now(), &no_backoff);
        assert!(manage_changes.is_empty());
    }

    // === status ===

    #[test]
    fn status_counts_desired_scheduled_ready_and_updated_pods() {
        let ds = make_ds().node_selector("role", "edge").obj();
        let nodes = vec![make_node("a").label("role", "edge").obj(), make_node("b").label("role", "edge").obj(), make_node("c").label("role", "edge").obj(), make_node("d").obj()];
        let pods = [daemon_pod("p-a", "a", HASH, true, 10), daemon_pod("p-b", "b", "old", false, 10), daemon_pod("p-d", "d", HASH, true, 10)];
        let c = count(&ds, &nodes, &pods_by_node(&pods, false), HASH, jiff::Timestamp::now());
        assert_eq!(c, Counts { desired: 3, current: 2, misscheduled: 1, ready: 1, updated: 1, available: 1, unavailable: 2 });
    }

    #[test]
    fn heartbeats_are_not_node_changes() {
        use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
        let mut old = (*make_node("a").obj()).clone();
        old.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition { type_: "Ready".into(), status: "True".into(), last_heartbeat_time: Some(Time(jiff::Timestamp::UNIX_EPOCH)), ..Default::default() }]),
            ..Default::default()
        });
        let mut new = old.clone();
        new.metadata.resource_version = Some("2".into());
        new.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_heartbeat_time = Some(Time(jiff::Timestamp::now()));
        assert!(node_update_is_irrelevant(&old, &new));
        new.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        assert!(!node_update_is_irrelevant(&old, &new));
        let mut labelled = old.clone();
        labelled.metadata.labels.as_mut().unwrap().insert("x".into(), "y".into());
        assert!(!node_update_is_irrelevant(&old, &labelled));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_pod_deletions_back_off() {
        let b = Backoff::default();
        assert_eq!(b.check("n"), None);
        assert_eq!(b.check("n"), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(b.check("n"), None);
        assert_eq!(b.check("n"), Some(Duration::from_secs(2)));
        assert_eq!(b.check("other"), None);
    }

    #[test]
    fn revisions_match_the_current_template_only() {
        let ds = make_ds().obj();
        let rev = ControllerRevision { data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(history::template_patch(&template(&ds)))), ..Default::default() };
        assert!(revision_matches(&ds, &rev));
        let mut changed = ds.clone();
        changed.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("agent:2".into());
        assert!(!revision_matches(&changed, &rev));
    }
}
