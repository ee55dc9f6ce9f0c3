//! VolumeBinding: a pod that uses PersistentVolumeClaims goes where its volumes
//! are, or where they can be made.
//!
//! - PreFilter: every claim must exist (and not be going away). A bound claim
//!   brings its volume's node affinity; an unbound claim of a WaitForFirstConsumer
//!   class waits for this pod's node; an unbound claim of any other class (or of a
//!   class that does not exist) is the volume controller's to bind first, so the
//!   pod is unschedulable until then.
//! - Filter: the node must satisfy the node affinity of every bound volume
//!   (`node(s) had volume node affinity conflict`), and each waiting claim needs a
//!   pre-made volume that fits the node or a class that can provision there.
//! - PreBind ([`VolumeBinding::pre_bind`], run by the scheduler before it binds the
//!   pod): the chosen node is written on each waiting claim as
//!   `volume.kubernetes.io/selected-node`, then the scheduler waits, up to
//!   [`BIND_TIMEOUT`] as upstream, until the volume controller has bound every claim
//!   to a volume on that node. Only then is the pod bound, so a pod never lands on
//!   a node where its volume cannot be. Upstream's scheduler also writes the binding
//!   of pre-made volumes; here the volume controller does, once the node is named.
//!
//! Once bound, a local volume pins every later pod of its claim to the same node:
//! a StatefulSet's pod re-created after a deletion goes back to its data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;
use skiff_api::storage::{claim_class, find_matching_volume, NO_PROVISIONER, SELECTED_NODE_ANNOTATION};
use skiff_client::{Api, Client, Informer, InformerEvent, ListParams, PatchType, Store};

use crate::framework::{CycleState, FilterPlugin, PreFilterPlugin, PreFilterResult, Snapshot};
use crate::selectors::NodeTerm;
use crate::status::Status;
use crate::types::{NodeInfo, PodInfo};

pub const NAME: &str = "VolumeBinding";
pub const ERR_REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_REASON_PV_NOT_EXIST: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const ERR_REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// How long PreBind waits for the claims to be bound (upstream's `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often PreBind looks at the claims while it waits.
const POLL: Duration = Duration::from_millis(100);

// === what the plugin reads ===

/// Read handles on the scheduler's claims, volumes and classes. Empty stores (the
/// default) know no claim, so pods with claims are unschedulable against them.
#[derive(Debug, Clone, Default)]
pub struct VolumeListers {
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
}

/// The scheduler's informers of claims, volumes and classes. Cheap to clone.
#[derive(Clone)]
pub struct VolumeInformers {
    pub claims: Informer<PersistentVolumeClaim>,
    pub volumes: Informer<PersistentVolume>,
    pub classes: Informer<StorageClass>,
}

impl VolumeInformers {
    pub fn new(client: &Client) -> VolumeInformers {
        VolumeInformers {
            claims: Informer::new(Api::all(client), ListParams::default()),
            volumes: Informer::new(Api::all(client), ListParams::default()),
            classes: Informer::new(Api::all(client), ListParams::default()),
        }
    }

    pub fn listers(&self) -> VolumeListers {
        VolumeListers { claims: self.claims.store(), volumes: self.volumes.store(), classes: self.classes.store() }
    }

    /// Calls `f` after any claim, volume or class changes: pods waiting on storage
    /// may fit now.
    pub fn on_change(&self, f: Arc<dyn Fn() + Send + Sync>) {
        let g = f.clone();
        self.claims.on_event(Arc::new(move |_: &InformerEvent<PersistentVolumeClaim>| g()));
        let g = f.clone();
        self.volumes.on_event(Arc::new(move |_: &InformerEvent<PersistentVolume>| g()));
        self.classes.on_event(Arc::new(move |_: &InformerEvent<StorageClass>| f()));
    }

    /// Runs the informers until dropped.
    pub async fn run(self) {
        tokio::join!(self.claims.run(), self.volumes.run(), self.classes.run());
    }

    pub async fn wait_synced(&self) {
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.classes.wait_synced().await;
    }
}

// === pure parts ===

/// The claims a pod's volumes name: `persistentVolumeClaim.claimName`, and the
/// `<pod>-<volume>` claim of each generic ephemeral volume (with whether it is one).
pub fn pod_claims(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(pvc), _) => Some((pvc.claim_name.clone(), false)),
            (None, Some(_)) => Some((format!("{pod_name}-{}", v.name), true)),
            _ => None,
        })
        .collect()
}

/// A volume's node affinity, compiled; `None` admits every node.
fn affinity_of(pv: &PersistentVolume) -> Option<Vec<NodeTerm>> {
    let required = pv.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    Some(required.node_selector_terms.iter().map(NodeTerm::compile).collect())
}

fn admits(terms: &Option<Vec<NodeTerm>>, node: &str, labels: &BTreeMap<String, String>) -> bool {
    terms.as_ref().is_none_or(|ts| ts.iter().any(|t| t.matches(node, labels)))
}

/// `CheckNodeAffinity`: the volume's node affinity admits the node.
pub fn volume_fits(pv: &PersistentVolume, node: &str, labels: &BTreeMap<String, String>) -> bool {
    admits(&affinity_of(pv), node, labels)
}

/// A bound claim's volume, as Filter needs it.
#[derive(Debug, Clone)]
struct BoundVolume {
    /// `None` when the volume the claim names does not exist.
    affinity: Option<Option<Vec<NodeTerm>>>,
}

/// A claim that waits for this pod's node.
#[derive(Debug, Clone)]
struct DelayedClaim {
    claim: Arc<PersistentVolumeClaim>,
    /// Volumes it could be bound to (its class, or its own), with their affinity.
    candidates: Vec<Arc<PersistentVolume>>,
    /// Whether its class can make a volume, and where.
    provisioning: Provisioning,
}

#[derive(Debug, Clone)]
enum Provisioning {
    No,
    /// On nodes matching one of the class's allowed topologies (any node if none).
    Where(Vec<Vec<(String, Vec<String>)>>),
}

impl Provisioning {
    fn allows(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Provisioning::No => false,
            Provisioning::Where(terms) => {
                terms.is_empty() || terms.iter().any(|term| term.iter().all(|(k, values)| labels.get(k).is_some_and(|v| values.contains(v))))
            }
        }
    }
}

/// What PreFilter found out about the pod's claims, for Filter.
#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    bound: Vec<BoundVolume>,
    delayed: Vec<DelayedClaim>,
}

/// PreFilter's reading of the pod's claims: the state, or the rejection of the
/// pod everywhere. `None` when the pod uses no claims.
pub fn pre_filter_state(pod: &Pod, listers: &VolumeListers) -> Option<Result<PreFilterState, Status>> {
    let claims = pod_claims(pod);
    if claims.is_empty() {
        return None;
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let reject = |msg: String| Some(Err(Status::unresolvable(NAME, msg)));
    let mut found = Vec::with_capacity(claims.len());
    for (name, ephemeral) in &claims {
        let Some(claim) = listers.claims.get(ns, name) else {
            return reject(if *ephemeral {
                format!("waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}")
            } else {
                format!("persistentvolumeclaim {name:?} not found")
            });
        };
        let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
        if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
            return reject(format!("persistentvolumeclaim {name:?} bound to non-existent persistentvolume {volume:?}"));
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return reject(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        found.push(claim);
    }
    let mut state = PreFilterState::default();
    let mut volumes: Option<Vec<Arc<PersistentVolume>>> = None;
    for claim in found {
        let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
        if !volume.is_empty() {
            let pv = listers.volumes.get("", volume);
            state.bound.push(BoundVolume { affinity: pv.map(|pv| affinity_of(&pv)) });
            continue;
        }
        let class_name = claim_class(&claim);
        let class = (!class_name.is_empty()).then(|| listers.classes.get("", class_name)).flatten();
        let Some(class) = class.filter(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")) else {
            return Some(Err(Status::unresolvable(NAME, ERR_REASON_UNBOUND_IMMEDIATE)));
        };
        let all = volumes.get_or_insert_with(|| listers.volumes.list());
        let candidates = all.iter().filter(|pv| find_matching_volume(&claim, [&***pv], Some(&|_: &PersistentVolume| true), true).is_some()).cloned().collect();
        let provisioning = if class.provisioner == NO_PROVISIONER {
            Provisioning::No
        } else {
            let terms = class.allowed_topologies.iter().flatten();
            Provisioning::Where(
                terms
                    .map(|t| t.match_label_expressions.iter().flatten().map(|r| (r.key.clone(), r.values.clone())).collect())
                    .collect(),
            )
        };
        state.delayed.push(DelayedClaim { claim, candidates, provisioning });
    }
    Some(Ok(state))
}

/// Filter's verdict for one node: the reasons it does not fit, if any.
pub fn fits(state: &PreFilterState, node: &str, labels: &BTreeMap<String, String>) -> Result<(), Vec<&'static str>> {
    let mut reasons = Vec::new();
    for b in &state.bound {
        match &b.affinity {
            None => reasons.push(ERR_REASON_PV_NOT_EXIST),
            Some(terms) if !admits(terms, node, labels) => reasons.push(ERR_REASON_NODE_CONFLICT),
            Some(_) => {}
        }
    }
    for d in &state.delayed {
        let fits_node = |pv: &PersistentVolume| volume_fits(pv, node, labels);
        let matched = find_matching_volume(&d.claim, d.candidates.iter().map(|pv| &**pv), Some(&fits_node), true).is_some();
        if !matched && !d.provisioning.allows(labels) {
            reasons.push(ERR_REASON_BIND_CONFLICT);
        }
    }
    reasons.dedup();
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Where PreBind stands with one claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimProgress {
    /// Bound to a volume on the node.
    Ready,
    /// Not bound yet; the node is named on it.
    Waiting,
    /// Needs the node named on it (it waits for its first consumer).
    NeedsNode,
    /// Will not work out on this node; the pod goes back to the queue.
    Failed(String),
}

/// `checkBindings` for one claim of a pod bound for `node`.
pub fn claim_progress(name: &str, claim: Option<&PersistentVolumeClaim>, listers: &VolumeListers, node: &str, labels: &BTreeMap<String, String>) -> ClaimProgress {
    let Some(claim) = claim else { return ClaimProgress::Failed(format!("persistentvolumeclaim {name:?} not found")) };
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimProgress::Failed(format!("persistentvolumeclaim {name:?} is being deleted"));
    }
    let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
    if volume.is_empty() {
        let selected = claim.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE_ANNOTATION)).map(String::as_str);
        return match selected {
            Some(n) if n == node => ClaimProgress::Waiting,
            Some(n) => ClaimProgress::Failed(format!("selectedNode annotation value {n:?} not set to scheduled node {node:?}")),
            None => ClaimProgress::NeedsNode,
        };
    }
    let Some(pv) = listers.volumes.get("", volume) else { return ClaimProgress::Waiting };
    let uid_matches = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| r.uid.is_some() && r.uid == claim.metadata.uid);
    if !uid_matches {
        return ClaimProgress::Waiting;
    }
    if !volume_fits(&pv, node, labels) {
        return ClaimProgress::Failed(format!("pv {volume:?} node affinity doesn't match node {node:?}"));
    }
    ClaimProgress::Ready
}

// === the plugin ===

/// The plugin. Cheap to share; reads its listers on every call.
#[derive(Debug, Clone, Default)]
pub struct VolumeBinding {
    listers: VolumeListers,
}

impl VolumeBinding {
    pub fn new(listers: VolumeListers) -> VolumeBinding {
        VolumeBinding { listers }
    }

    /// Whether the pod needs [`VolumeBinding::pre_bind`] before it is bound.
    pub fn uses_claims(pod: &Pod) -> bool {
        pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).any(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some())
    }

    /// PreBind: names `node` on the pod's waiting claims and waits until every
    /// claim is bound to a volume that fits it, or `gone()` says the pod no longer
    /// needs scheduling. `Err` is the message the pod's failure reports.
    pub async fn pre_bind(&self, client: &Client, pod: &PodInfo, node: &str, labels: &BTreeMap<String, String>, gone: impl Fn() -> bool) -> Result<(), String> {
        let claims = pod_claims(&pod.pod);
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client, &pod.namespace);
        let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
        let mut named: Vec<String> = Vec::new();
        loop {
            let mut ready = true;
            for (name, _) in &claims {
                let claim = self.listers.claims.get(&pod.namespace, name);
                match claim_progress(name, claim.as_deref(), &self.listers, node, labels) {
                    ClaimProgress::Ready => {}
                    ClaimProgress::Waiting => ready = false,
                    ClaimProgress::NeedsNode if named.contains(name) => ready = false,
                    ClaimProgress::NeedsNode => {
                        let patch = json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: node}}});
                        api.patch(name, PatchType::Merge, &patch).await.map_err(|e| format!("binding volumes: {e}"))?;
                        named.push(name.clone());
                        ready = false;
                    }
                    ClaimProgress::Failed(msg) => return Err(format!("binding volumes: {msg}")),
                }
            }
            if ready {
                return Ok(());
            }
            if gone() {
                return Err("binding volumes: the pod is gone".into());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err("binding volumes: context deadline exceeded".into());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl PreFilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _: &Snapshot<'_>) -> (Status, PreFilterResult) {
        match pre_filter_state(&pod.pod, &self.listers) {
            None => (Status::skip(), None),
            Some(Err(rejection)) => (rejection, None),
            Some(Ok(s)) => {
                state.volume_binding = Some(s);
                (Status::success(), None)
            }
        }
    }
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.volume_binding else { return Status::success() };
        match fits(s, &node.name, node.labels()) {
            Ok(()) => Status::success(),
            Err(reasons) => Status::with_reasons(crate::status::Code::UnschedulableAndUnresolvable, NAME, reasons.into_iter().map(Into::into).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::tests::Harness;
    use crate::framework::{Framework, ScheduleError};
    use crate::testing::{MakeNode, MakePod};
    use rand::SeedableRng;
    use serde_json::Value;

    fn claim(name: &str, class: &str, volume: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": class, "volumeName": volume},
        }))
        .unwrap()
    }

    fn local_volume(name: &str, claim: Option<&str>, node: &str) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path", "hostPath": {"path": "/d"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}
        });
        if let Some(c) = claim {
            v["spec"]["claimRef"] = json!({"namespace": "default", "name": c, "uid": format!("uid-{c}")});
            v["status"]["phase"] = json!("Bound");
        }
        serde_json::from_value(v).unwrap()
    }

    fn class(name: &str, mode: &str, provisioner: &str, topologies: Value) -> StorageClass {
        serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode, "allowedTopologies": topologies})).unwrap()
    }

    fn listers(claims: Vec<PersistentVolumeClaim>, volumes: Vec<PersistentVolume>) -> VolumeListers {
        VolumeListers {
            claims: Store::from_objects(claims),
            volumes: Store::from_objects(volumes),
            classes: Store::from_objects([
                class("local-path", "WaitForFirstConsumer", "skiff.io/local-path", Value::Null),
                class("now", "Immediate", "skiff.io/local-path", Value::Null),
                class("manual", "WaitForFirstConsumer", NO_PROVISIONER, Value::Null),
                class("zonal", "WaitForFirstConsumer", "example.com/disk", json!([{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a"]}]}])),
            ]),
        }
    }

    fn pod_with(claims: &[&str]) -> Pod {
        let mut pod = MakePod::new("web-0").obj();
        pod.spec.as_mut().unwrap().volumes = Some(
            claims
                .iter()
                .map(|c| serde_json::from_value(json!({"name": format!("v-{c}"), "persistentVolumeClaim": {"claimName": c}})).unwrap())
                .collect(),
        );
        pod
    }

    fn schedule(listers: VolumeListers, nodes: &[(&str, &str)], pod: Pod) -> Result<String, String> {
        let h = Harness::new(nodes.iter().map(|(n, zone)| MakeNode::new(n).capacity("4", "8Gi").label("kubernetes.io/hostname", n).zone(zone).obj()).collect());
        let framework = Framework::with_volume_binding(None, Arc::new(VolumeBinding::new(listers)));
        let info = PodInfo::new(Arc::new(pod));
        let mut start = 0;
        match framework.schedule(&info, &h.snapshot(), &mut start, &mut rand::rngs::StdRng::seed_from_u64(3)) {
            Ok(r) => Ok(r.node),
            Err(e @ ScheduleError::Unfit(_)) | Err(e @ ScheduleError::NoNodes) => Err(e.to_string()),
        }
    }

    const NODES: &[(&str, &str)] = &[("n1", "a"), ("n2", "b"), ("n3", "b")];

    #[test]
    fn pods_without_claims_are_left_alone() {
        assert!(pre_filter_state(&MakePod::new("p").obj(), &VolumeListers::default()).is_none());
    }

    #[test]
    fn a_missing_claim_makes_the_pod_unschedulable() {
        let err = schedule(listers(vec![], vec![]), NODES, pod_with(&["data"])).unwrap_err();
        assert_eq!(err, "0/3 nodes are available: persistentvolumeclaim \"data\" not found.");
    }

    #[test]
    fn a_bound_local_volume_pins_the_pod_to_its_node() {
        let l = listers(vec![claim("data", "local-path", "pvc-1")], vec![local_volume("pvc-1", Some("data"), "n2")]);
        assert_eq!(schedule(l.clone(), NODES, pod_with(&["data"])), Ok("n2".into()));
        let err = schedule(l, &[("n1", "a"), ("n3", "b")], pod_with(&["data"])).unwrap_err();
        assert_eq!(err, "0/2 nodes are available: 2 node(s) had volume node affinity conflict.");
    }

    #[test]
    fn unbound_immediate_claims_wait_for_the_volume_controller() {
        let l = listers(vec![claim("data", "now", ""), claim("other", "gone-class", "")], vec![]);
        let err = schedule(l.clone(), NODES, pod_with(&["data"])).unwrap_err();
        assert_eq!(err, "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.");
        assert!(schedule(l, NODES, pod_with(&["other"])).unwrap_err().contains(ERR_REASON_UNBOUND_IMMEDIATE), "a class that does not exist binds at once");
    }

    #[test]
    fn claims_waiting_for_a_consumer_fit_wherever_a_volume_can_be_made() {
        let l = listers(vec![claim("data", "local-path", "")], vec![]);
        assert!(schedule(l, NODES, pod_with(&["data"])).is_ok());
        let zonal = listers(vec![claim("data", "zonal", "")], vec![]);
        assert_eq!(schedule(zonal, NODES, pod_with(&["data"])), Ok("n1".into()), "the class provisions in zone a only");
    }

    #[test]
    fn without_a_provisioner_only_nodes_with_a_free_volume_fit() {
        let mut pre_made = local_volume("local-n3", None, "n3");
        pre_made.spec.as_mut().unwrap().storage_class_name = Some("manual".into());
        let l = listers(vec![claim("data", "manual", "")], vec![pre_made]);
        assert_eq!(schedule(l, NODES, pod_with(&["data"])), Ok("n3".into()));
        let none = listers(vec![claim("data", "manual", "")], vec![]);
        let err = schedule(none, NODES, pod_with(&["data"])).unwrap_err();
        assert_eq!(err, "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind.");
    }

    #[test]
    fn a_claim_bound_to_a_missing_volume_fits_nowhere() {
        let l = listers(vec![claim("data", "local-path", "pvc-gone")], vec![]);
        let err = schedule(l, NODES, pod_with(&["data"])).unwrap_err();
        assert_eq!(err, format!("0/3 nodes are available: 3 {ERR_REASON_PV_NOT_EXIST}."));
    }

    #[test]
    fn pre_bind_waits_until_the_claim_is_bound_on_the_chosen_node() {
        let labels = |n: &str| BTreeMap::from([("kubernetes.io/hostname".to_string(), n.to_string())]);
        let l = listers(vec![], vec![local_volume("pvc-1", Some("data"), "n2")]);
        assert_eq!(claim_progress("data", None, &l, "n2", &labels("n2")), ClaimProgress::Failed("persistentvolumeclaim \"data\" not found".into()));
        let unbound = claim("data", "local-path", "");
        assert_eq!(claim_progress("data", Some(&unbound), &l, "n2", &labels("n2")), ClaimProgress::NeedsNode);
        let mut named = unbound.clone();
        named.metadata.annotations = Some(BTreeMap::from([(SELECTED_NODE_ANNOTATION.to_string(), "n2".to_string())]));
        assert_eq!(claim_progress("data", Some(&named), &l, "n2", &labels("n2")), ClaimProgress::Waiting);
        assert!(matches!(claim_progress("data", Some(&named), &l, "n1", &labels("n1")), ClaimProgress::Failed(m) if m.contains("selectedNode annotation value \"n2\"")));
        let bound = claim("data", "local-path", "pvc-1");
        assert_eq!(claim_progress("data", Some(&bound), &l, "n2", &labels("n2")), ClaimProgress::Ready);
        assert!(matches!(claim_progress("data", Some(&bound), &l, "n1", &labels("n1")), ClaimProgress::Failed(_)));
        let not_yet = listers(vec![], vec![]);
        assert_eq!(claim_progress("data", Some(&bound), &not_yet, "n2", &labels("n2")), ClaimProgress::Waiting, "the volume informer lags");
    }

    #[test]
    fn ephemeral_volumes_name_their_claim_after_the_pod() {
        let mut pod = MakePod::new("web-0").obj();
        pod.spec.as_mut().unwrap().volumes = Some(vec![serde_json::from_value(json!({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}})).unwrap()]);
        assert_eq!(pod_claims(&pod), vec![("web-0-scratch".to_string(), true)]);
        assert!(VolumeBinding::uses_claims(&pod));
        let err = schedule(listers(vec![], vec![]), NODES, pod).unwrap_err();
        assert!(err.contains("waiting for ephemeral volume controller to create the persistentvolumeclaim \"web-0-scratch\""), "{err}");
    }
}
