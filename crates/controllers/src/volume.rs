//! The persistent volume controller (upstream pkg/controller/volume/persistentvolume)
//! and Skiff's built-in local-path provisioner (what rancher's local-path-provisioner
//! does as an external provisioner upstream).
//!
//! The binder keeps claims and volumes paired: an unbound claim gets the smallest
//! Available volume that satisfies it, both halves of the binding are written
//! (`pv.spec.claimRef`, then `pvc.spec.volumeName` with the `bind-completed` and
//! `bound-by-controller` annotations), and the phases follow: volumes are
//! Available, Bound, Released or Failed, claims Pending, Bound or Lost. A claim of a
//! WaitForFirstConsumer class waits until the scheduler names a node in
//! `volume.kubernetes.io/selected-node`; the controller then binds it to a volume
//! that fits that node or provisions one there. (Upstream the scheduler writes the
//! binding of pre-made volumes itself; here the scheduler only chooses the node, so
//! bindings have one writer.)
//!
//! The local-path provisioner serves classes whose provisioner is
//! [`LOCAL_PATH_PROVISIONER`]: the volume is a `hostPath` directory
//! `<storage dir>/pvc-<claim uid>_<namespace>_<claim>` on the node (the storage dir
//! comes from the Node's `storage.skiff.io/local-path` annotation), with a node
//! affinity to that node, so every later pod of the claim lands there too.
//!
//! Reclaiming: when the claim goes, its volume is Released. Under `Retain` it stays
//! so. Under `Delete` a volume this provisioner made is deleted; its directory on
//! the node is not removed from here (the controller cannot reach into nodes): the
//! node's agent owns its storage directory, and a directory there whose volume no
//! longer exists is garbage for it to collect. Other volumes under `Delete` or
//! `Recycle` turn Failed, as upstream's do when no plugin can delete them.
//!
//! Protection (upstream's pvc-protection and pv-protection controllers): a claim
//! being deleted keeps its `kubernetes.io/pvc-protection` finalizer while a
//! scheduled pod uses it, a volume its `kubernetes.io/pv-protection` finalizer while
//! it is Bound; the API server adds both on create.
//!
//! Decisions are pure ([`plan_claim`], [`plan_volume`]) over the informers' objects;
//! the sync functions carry them out, checking with the API before anything
//! destructive, because the informers of claims and volumes may lag each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, Pod, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use skiff_api::admission::default_storage_class;
use skiff_api::admission::storage_protection::{PVC_PROTECTION_FINALIZER, PV_PROTECTION_FINALIZER};
use skiff_api::storage::{
    claim_class, find_matching_volume, is_volume_bound_to_claim, local_path_dir, volume_capacity, volume_class, volume_has_access_modes,
    volume_mode_mismatch, BETA_STORAGE_CLASS_ANNOTATION, BETA_STORAGE_PROVISIONER_ANNOTATION, BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION,
    DEFAULT_NODE_STORAGE_DIR, LOCAL_PATH_PROVISIONER, NODE_STORAGE_ANNOTATION, NO_PROVISIONER, PROVISIONED_BY_ANNOTATION, SELECTED_NODE_ANNOTATION,
    STORAGE_PROVISIONER_ANNOTATION,
};
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, Informer, InformerEvent, ListParams, PatchType, WorkQueue};

use crate::daemonset::term_matches;
use crate::podutil::{key_of, run_workers, split_key};
use crate::Context;

/// The binder's event source, as upstream names it.
pub const COMPONENT: &str = "persistentvolume-controller";
/// Pending claims are looked at again this often (upstream's `--pvclaimbinder-sync-period`).
pub const RESYNC: Duration = Duration::from_secs(15);
/// The label that pins a local-path volume to its node.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Why a sync failed; the key is retried after a back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
}

// === decisions ===

/// What a sync decides from: the informers' objects.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub volumes: &'a [Arc<PersistentVolume>],
    pub classes: &'a [Arc<StorageClass>],
    pub nodes: &'a [Arc<Node>],
}

impl<'a> View<'a> {
    fn class(&self, name: &str) -> Option<&'a Arc<StorageClass>> {
        self.classes.iter().find(|c| c.metadata.name.as_deref() == Some(name))
    }

    fn node(&self, name: &str) -> Option<&'a Arc<Node>> {
        self.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name))
    }

    fn volume(&self, name: &str) -> Option<&'a Arc<PersistentVolume>> {
        self.volumes.iter().find(|v| v.metadata.name.as_deref() == Some(name))
    }
}

/// An event to record about the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: impl Into<String>) -> Option<Note> {
        Some(Note { type_: EventType::Normal, reason, message: message.into() })
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Option<Note> {
        Some(Note { type_: EventType::Warning, reason, message: message.into() })
    }
}

/// The one step a claim sync takes.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimStep {
    /// Name today's default class on a claim created while there was none
    /// (upstream's retroactive default StorageClass assignment).
    AssignDefaultClass(String),
    /// Complete the binding with this volume; every write is skipped when already done.
    Bind(Arc<PersistentVolume>),
    /// Create a local-path volume for the claim on this node, then bind it.
    Provision { class: Arc<StorageClass>, node: Arc<Node> },
    /// The node the scheduler chose is gone: drop the annotation so that it
    /// chooses again.
    Reschedule { node: String },
    /// Another provisioner makes the volume: say which on the claim and wait.
    ExternalProvisioning { provisioner: String },
    /// The claim is in `phase` (Pending, Bound or Lost), with an event saying why.
    Wait { phase: &'static str, note: Option<Note> },
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

fn claim_volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("")
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn is_wait_for_first_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

fn phase_of(pv: &PersistentVolume) -> &str {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Whether a volume's node affinity admits `node` (no affinity admits every node).
pub fn volume_fits_node(pv: &PersistentVolume, node: &Node) -> bool {
    match pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref()) {
        None => true,
        Some(selector) => selector.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

/// `checkVolumeSatisfyClaim`: why a volume the user named cannot serve the claim.
pub fn volume_mismatch(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<String> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Some(format!("the volume is marked for deletion {:?}", name_of(&pv.metadata)));
    }
    let why = if volume_capacity(pv) < skiff_api::storage::claim_request(claim) {
        "requested PV is too small"
    } else if volume_class(pv) != claim_class(claim) {
        "storageClassName does not match"
    } else if volume_mode_mismatch(pv, claim) {
        "incompatible volumeMode"
    } else if !volume_has_access_modes(pv, claim) {
        "incompatible accessMode"
    } else {
        return None;
    };
    Some(why.to_string())
}

/// Why the local-path provisioner cannot make a volume for the claim, if it cannot.
pub fn local_path_unsupported(claim: &PersistentVolumeClaim) -> Option<&'static str> {
    let spec = claim.spec.as_ref();
    if spec.and_then(|s| s.selector.as_ref()).is_some() {
        return Some("claim Selector is not supported");
    }
    let modes = spec.and_then(|s| s.access_modes.as_deref()).unwrap_or_default();
    if modes.iter().any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod") {
        return Some("only ReadWriteOnce and ReadWriteOncePod access modes are supported");
    }
    None
}

fn is_ready(node: &Node) -> bool {
    let ready = node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    ready.is_some_and(|c| c.status == "True") && !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

/// The hostname label value a local-path volume on `node` is pinned to.
fn hostname_of(node: &Node) -> &str {
    node.metadata.labels.as_ref().and_then(|l| l.get(HOSTNAME_LABEL)).map(String::as_str).unwrap_or_else(|| name_of(&node.metadata))
}

/// For classes that bind at once: a Ready, schedulable node, the one holding the
/// fewest local-path volumes (then by name), so volumes spread.
pub fn pick_node<'a>(view: &View<'a>) -> Option<&'a Arc<Node>> {
    let load = |node: &Node| {
        view.volumes.iter().filter(|pv| annotation(&pv.metadata, PROVISIONED_BY_ANNOTATION) == Some(LOCAL_PATH_PROVISIONER) && volume_fits_node(pv, node)).count()
    };
    view.nodes.iter().filter(|n| is_ready(n)).min_by(|a, b| load(a).cmp(&load(b)).then_with(|| name_of(&a.metadata).cmp(name_of(&b.metadata))))
}

/// The default class for a claim that names none, if one is the default now.
fn retroactive_default(claim: &PersistentVolumeClaim, view: &View<'_>) -> Option<String> {
    let unset = claim.spec.as_ref().is_none_or(|s| s.storage_class_name.is_none()) && annotation(&claim.metadata, BETA_STORAGE_CLASS_ANNOTATION).is_none();
    if !unset {
        return None;
    }
    let values: Vec<serde_json::Value> = view.classes.iter().filter_map(|c| serde_json::to_value(&**c).ok()).collect();
    default_storage_class::default_class(&values).and_then(|c| c.pointer("/metadata/name")).and_then(|n| n.as_str()).map(String::from)
}

/// `syncClaim`: what to do next for one claim.
pub fn plan_claim(claim: &PersistentVolumeClaim, view: &View<'_>) -> ClaimStep {
    if annotation(&claim.metadata, BIND_COMPLETED_ANNOTATION).is_some() {
        return plan_bound_claim(claim, view);
    }
    let volume_name = claim_volume_name(claim);
    if !volume_name.is_empty() {
        // Pre-bound by the user to a volume of their choice.
        let Some(pv) = view.volume(volume_name) else { return ClaimStep::Wait { phase: "Pending", note: None } };
        return match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            None => match volume_mismatch(pv, claim) {
                Some(why) => ClaimStep::Wait { phase: "Pending", note: Note::warning("VolumeMismatch", format!("Cannot bind to requested volume {volume_name:?}: {why}")) },
                None => ClaimStep::Bind(pv.clone()),
            },
            Some(_) if is_volume_bound_to_claim(pv, claim) => ClaimStep::Bind(pv.clone()),
            Some(_) => ClaimStep::Wait { phase: "Pending", note: Note::warning("FailedBinding", format!("volume {volume_name:?} already bound to a different claim.")) },
        };
    }
    if let Some(class) = retroactive_default(claim, view) {
        return ClaimStep::AssignDefaultClass(class);
    }
    let class_name = claim_class(claim);
    let class = view.class(class_name);
    let delay = class.is_some_and(|c| is_wait_for_first_consumer(c));
    let selected = annotation(&claim.metadata, SELECTED_NODE_ANNOTATION).filter(|n| !n.is_empty());
    let target = selected.filter(|_| delay).and_then(|n| view.node(n));
    let volumes = view.volumes.iter().map(|v| &**v);
    let matched = match target {
        Some(node) => find_matching_volume(claim, volumes, Some(&|pv: &PersistentVolume| volume_fits_node(pv, node)), true),
        None => find_matching_volume(claim, volumes, None, delay),
    };
    if let Some(pv) = matched {
        let pv = view.volume(name_of(&pv.metadata)).cloned().expect("matched from the view");
        return ClaimStep::Bind(pv);
    }
    if delay && selected.is_none() {
        return ClaimStep::Wait { phase: "Pending", note: Note::normal("WaitForFirstConsumer", "waiting for first consumer to be created before binding") };
    }
    if class_name.is_empty() {
        return ClaimStep::Wait { phase: "Pending", note: Note::normal("FailedBinding", "no persistent volumes available for this claim and no storage class is set") };
    }
    let Some(class) = class else {
        return ClaimStep::Wait { phase: "Pending", note: Note::warning("ProvisioningFailed", format!("storageclass.storage.k8s.io {class_name:?} not found")) };
    };
    if class.provisioner == NO_PROVISIONER {
        return ClaimStep::Wait { phase: "Pending", note: Note::warning("ProvisioningFailed", format!("no volume plugin matched name: {NO_PROVISIONER}")) };
    }
    if class.provisioner != LOCAL_PATH_PROVISIONER {
        if annotation(&claim.metadata, STORAGE_PROVISIONER_ANNOTATION) != Some(class.provisioner.as_str()) {
            return ClaimStep::ExternalProvisioning { provisioner: class.provisioner.clone() };
        }
        return ClaimStep::Wait { phase: "Pending", note: None };
    }
    if let Some(why) = local_path_unsupported(claim) {
        return ClaimStep::Wait { phase: "Pending", note: Note::warning("ProvisioningFailed", format!("failed to provision volume with StorageClass {class_name:?}: {why}")) };
    }
    let node = match selected.filter(|_| delay) {
        Some(name) => match view.node(name) {
            Some(node) => node,
            None => return ClaimStep::Reschedule { node: name.to_string() },
        },
        None => match pick_node(view) {
            Some(node) => node,
            None => {
                return ClaimStep::Wait {
                    phase: "Pending",
                    note: Note::warning("ProvisioningFailed", format!("failed to provision volume with StorageClass {class_name:?}: no ready node to put it on")),
                }
            }
        },
    };
    ClaimStep::Provision { class: class.clone(), node: node.clone() }
}

/// `syncBoundClaim`: a claim the controller bound keeps its volume, or is Lost.
fn plan_bound_claim(claim: &PersistentVolumeClaim, view: &View<'_>) -> ClaimStep {
    let volume_name = claim_volume_name(claim);
    if volume_name.is_empty() {
        return ClaimStep::Wait { phase: "Lost", note: Note::warning("ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!") };
    }
    let Some(pv) = view.volume(volume_name) else {
        return ClaimStep::Wait { phase: "Lost", note: Note::warning("ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!") };
    };
    match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        None => ClaimStep::Bind(pv.clone()),
        Some(r) if r.uid.as_deref() == claim.metadata.uid.as_deref() => ClaimStep::Bind(pv.clone()),
        Some(_) => ClaimStep::Wait { phase: "Lost", note: Note::warning("ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly") },
    }
}

/// The one step a volume sync takes.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeStep {
    Nothing,
    /// Move the volume to this phase (with a message for Failed).
    Phase { phase: &'static str, message: Option<String> },
    /// The claim's sync completes a binding in progress.
    SyncClaim(String),
    /// Delete the volume object (reclaim policy Delete, made by this provisioner).
    Delete,
    /// Clear a claimRef the controller wrote for a claim that is bound elsewhere.
    Unbind,
}

/// `syncVolume`: what to do next for one volume, given the claim its claimRef
/// names (if that claim exists, with any uid).
pub fn plan_volume(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeStep {
    if pv.metadata.deletion_timestamp.is_some() {
        return VolumeStep::Nothing;
    }
    let phase = phase_of(pv);
    let set = |p: &'static str| if phase == p { VolumeStep::Nothing } else { VolumeStep::Phase { phase: p, message: None } };
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return set("Available") };
    if claim_ref.uid.as_deref().unwrap_or("").is_empty() {
        // Pre-bound by the user to a claim name; the claim's sync binds it.
        return set("Available");
    }
    let claim = claim.filter(|c| c.metadata.uid == claim_ref.uid);
    let Some(claim) = claim else { return released(pv) };
    let volume_name = claim_volume_name(claim);
    if volume_name.is_empty() {
        return VolumeStep::SyncClaim(key_of(&claim.metadata));
    }
    if volume_name == name_of(&pv.metadata) {
        return set("Bound");
    }
    // The claim was bound to another volume.
    if provisioned_here(pv) && reclaim_policy(pv) == "Delete" {
        return released(pv);
    }
    if annotation(&pv.metadata, BOUND_BY_CONTROLLER_ANNOTATION).is_some() {
        return VolumeStep::Unbind;
    }
    VolumeStep::Nothing
}

fn provisioned_here(pv: &PersistentVolume) -> bool {
    annotation(&pv.metadata, PROVISIONED_BY_ANNOTATION) == Some(LOCAL_PATH_PROVISIONER)
}

fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain")
}

/// A volume whose claim is gone: Released first, then reclaimed by its policy.
fn released(pv: &PersistentVolume) -> VolumeStep {
    let phase = phase_of(pv);
    if phase != "Released" && phase != "Failed" {
        return VolumeStep::Phase { phase: "Released", message: None };
    }
    let failed = |message: String| if phase == "Failed" { VolumeStep::Nothing } else { VolumeStep::Phase { phase: "Failed", message: Some(message) } };
    match reclaim_policy(pv) {
        "Retain" => VolumeStep::Nothing,
        "Delete" if provisioned_here(pv) => VolumeStep::Delete,
        "Delete" => failed(format!("error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched", name_of(&pv.metadata))),
        _ => failed("No recycler plugin found for the volume!".to_string()),
    }
}

// === protection ===

/// `podUsesPVC`: a pod bound to a node whose volumes name the claim (a generic
/// ephemeral volume's claim only while the pod has not finished).
pub fn pod_uses_claim(pod: &Pod, claim: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    if spec.node_name.as_deref().unwrap_or("").is_empty() {
        return false;
    }
    let shut_down = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"));
    let pod_name = name_of(&pod.metadata);
    spec.volumes.iter().flatten().any(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
        (Some(pvc), _) => pvc.claim_name == claim,
        (None, Some(_)) => !shut_down && format!("{pod_name}-{}", v.name) == claim,
        _ => false,
    })
}

/// The claims a pod's volumes name.
fn claims_of(pod: &Pod) -> Vec<String> {
    let pod_name = name_of(&pod.metadata);
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(pvc), _) => Some(pvc.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            _ => None,
        })
        .collect()
}

fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

fn without_finalizer(meta: &mut ObjectMeta, finalizer: &str) {
    if let Some(list) = meta.finalizers.as_mut() {
        list.retain(|f| f != finalizer);
    }
}

// === the local-path provisioner ===

/// The volume the local-path provisioner makes for `claim` on `node`: named after
/// the claim's uid (so a retry finds it), as big as asked, pinned to the node, and
/// already naming its claim.
pub fn local_path_volume(claim: &PersistentVolumeClaim, class: &StorageClass, node: &Node) -> PersistentVolume {
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let namespace = claim.metadata.namespace.clone().unwrap_or_default();
    let base = annotation(&node.metadata, NODE_STORAGE_ANNOTATION).filter(|p| !p.is_empty()).unwrap_or(DEFAULT_NODE_STORAGE_DIR);
    let path = local_path_dir(base, &name, &namespace, name_of(&claim.metadata));
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned().unwrap_or(Quantity("0".into()));
    let affinity = NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement { key: HOSTNAME_LABEL.into(), operator: "In".into(), values: Some(vec![hostname_of(node).to_string()]) }]),
        match_fields: None,
    };
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([(PROVISIONED_BY_ANNOTATION.to_string(), LOCAL_PATH_PROVISIONER.to_string())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into())),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into())),
            mount_options: class.mount_options.clone(),
            host_path: Some(HostPathVolumeSource { path, type_: Some("DirectoryOrCreate".into()) }),
            node_affinity: Some(VolumeNodeAffinity { required: Some(NodeSelector { node_selector_terms: vec![affinity] }) }),
            claim_ref: Some(claim_ref(claim)),
            ..Default::default()
        }),
        status: None,
    }
}

fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

// === the controller ===

/// The controller's state: its own informers of volumes and classes next to the
/// shared ones, one queue of claims and one of volumes.
#[derive(Clone)]
struct Controller {
    ctx: Context,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    claim_queue: WorkQueue<String>,
    volume_queue: WorkQueue<String>,
    binder: EventRecorder,
    provisioner: EventRecorder,
}

fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string()
}

fn unbound_claim_keys(ctx: &Context) -> Vec<String> {
    ctx.pvcs.store().list().iter().filter(|c| claim_volume_name(c).is_empty()).map(|c| key_of(&c.metadata)).collect()
}

/// Runs the controller until the future is dropped.
pub async fn run(ctx: Context) {
    let volumes: Informer<PersistentVolume> = Informer::new(Api::all(&ctx.client), ListParams::default());
    let classes: Informer<StorageClass> = Informer::new(Api::all(&ctx.client), ListParams::default());
    let c = Controller {
        binder: ctx.recorder(COMPONENT),
        provisioner: ctx.recorder(LOCAL_PATH_PROVISIONER),
        ctx,
        volumes,
        classes,
        claim_queue: WorkQueue::new(),
        volume_queue: WorkQueue::new(),
    };
    c.register_handlers();
    let informers = {
        let (v, s) = (c.volumes.clone(), c.classes.clone());
        async move { tokio::join!(v.run(), s.run()) }
    };
    let workers = {
        let c = c.clone();
        async move {
            c.ctx.pvcs.wait_synced().await;
            c.ctx.nodes.wait_synced().await;
            c.volumes.wait_synced().await;
            c.classes.wait_synced().await;
            let (cc, vc) = (c.clone(), c.clone());
            let claims = run_workers(COMPONENT, c.claim_queue.clone(), 1, move |key| {
                let c = cc.clone();
                async move { c.sync_claim(&key).await }
            });
            let volumes = run_workers(COMPONENT, c.volume_queue.clone(), 1, move |key| {
                let c = vc.clone();
                async move { c.sync_volume(&key).await }
            });
            tokio::join!(claims, volumes);
        }
    };
    tokio::join!(informers, workers);
}

impl Controller {
    fn register_handlers(&self) {
        let (cq, vq) = (self.claim_queue.clone(), self.volume_queue.clone());
        self.ctx.pvcs.on_event(Arc::new(move |ev: &InformerEvent<PersistentVolumeClaim>| match ev {
            InformerEvent::Applied { new, .. } => {
                cq.add(key_of(&new.metadata));
                let volume = claim_volume_name(new);
                if !volume.is_empty() {
                    vq.add(volume.to_string());
                }
            }
            InformerEvent::Deleted(claim) => {
                let volume = claim_volume_name(claim);
                if !volume.is_empty() {
                    vq.add(volume.to_string());
                }
                // A volume provisioned for it whose binding was not finished.
                if let Some(uid) = &claim.metadata.uid {
                    vq.add(format!("pvc-{uid}"));
                }
            }
        }));
        let (cq, vq) = (self.claim_queue.clone(), self.volume_queue.clone());
        self.volumes.on_event(Arc::new(move |ev: &InformerEvent<PersistentVolume>| {
            let pv = ev.object();
            if let InformerEvent::Applied { .. } = ev {
                vq.add(name_of(&pv.metadata).to_string());
            }
            if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                cq.add(format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or("")));
            }
        }));
        let (cq, ctx) = (self.claim_queue.clone(), self.ctx.clone());
        self.classes.on_event(Arc::new(move |ev: &InformerEvent<StorageClass>| {
            if let InformerEvent::Applied { .. } = ev {
                unbound_claim_keys(&ctx).into_iter().for_each(|k| cq.add(k));
            }
        }));
        let cq = self.claim_queue.clone();
        self.ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| {
            // A claim being deleted may have lost its last user.
            if let InformerEvent::Deleted(pod) = ev {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("");
                claims_of(pod).into_iter().for_each(|c| cq.add(format!("{ns}/{c}")));
            }
        }));
        let (cq, ctx) = (self.claim_queue.clone(), self.ctx.clone());
        self.ctx.nodes.on_event(Arc::new(move |ev: &InformerEvent<Node>| {
            // A new node may be where a waiting claim gets its volume.
            if let InformerEvent::Applied { old: None, .. } = ev {
                unbound_claim_keys(&ctx).into_iter().for_each(|k| cq.add(k));
            }
        }));
    }

    fn claims(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(&self.ctx.client, namespace)
    }

    fn volume_api(&self) -> Api<PersistentVolume> {
        Api::all(&self.ctx.client)
    }

    async fn sync_claim(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(claim) = self.ctx.pvcs.store().get(ns, name) else { return Ok(None) };
        if claim.metadata.deletion_timestamp.is_some() {
            return self.release_claim(&claim).await;
        }
        let (volumes, classes, nodes) = (self.volumes.store().list(), self.classes.store().list(), self.ctx.nodes.store().list());
        let view = View { volumes: &volumes, classes: &classes, nodes: &nodes };
        let step = plan_claim(&claim, &view);
        tracing::debug!(claim = %key, step = ?step, "claim sync");
        match step {
            ClaimStep::AssignDefaultClass(class) => {
                let mut updated = (*claim).clone();
                updated.spec.get_or_insert_with(Default::default).storage_class_name = Some(class);
                self.claims(ns).replace(name, &updated).await?;
                Ok(None)
            }
            ClaimStep::Bind(pv) => {
                self.bind(&pv, &claim).await?;
                Ok(None)
            }
            ClaimStep::Provision { class, node } => {
                self.provision(&claim, &class, &node).await?;
                Ok(None)
            }
            ClaimStep::Reschedule { node } => self.reschedule(&claim, &node).await,
            ClaimStep::ExternalProvisioning { provisioner } => {
                self.annotate_provisioner(&claim, &provisioner).await?;
                Ok(Some(RESYNC))
            }
            ClaimStep::Wait { phase, note } => {
                if phase == "Lost" && !self.volume_gone(&claim).await? {
                    // The volume informer lags behind the claim's; look again soon.
                    return Ok(Some(Duration::from_secs(1)));
                }
                self.set_claim_phase(&claim, phase).await?;
                if let Some(n) = note {
                    self.binder.record(&*claim, n.type_, n.reason, &n.message);
                }
                Ok((phase == "Pending").then_some(RESYNC))
            }
        }
    }

    /// pvc-protection: a claim being deleted goes once no scheduled pod uses it.
    async fn release_claim(&self, claim: &PersistentVolumeClaim) -> Result<Option<Duration>, Error> {
        if !has_finalizer(&claim.metadata, PVC_PROTECTION_FINALIZER) {
            return Ok(None);
        }
        let (ns, name) = (claim.metadata.namespace.as_deref().unwrap_or(""), name_of(&claim.metadata));
        // The deletion of the last user requeues the claim.
        if self.ctx.pods.store().list_namespace(ns).iter().any(|p| pod_uses_claim(p, name)) {
            return Ok(None);
        }
        // The pod informer may not have seen a new user yet.
        let live = Api::<Pod>::namespaced(&self.ctx.client, ns).list(&ListParams::default()).await?;
        if live.items.iter().any(|p| pod_uses_claim(p, name)) {
            return Ok(Some(RESYNC));
        }
        let mut updated = claim.clone();
        without_finalizer(&mut updated.metadata, PVC_PROTECTION_FINALIZER);
        match self.claims(ns).replace(name, &updated).await {
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the claim's volume is really gone (asked of the API, not the informer).
    async fn volume_gone(&self, claim: &PersistentVolumeClaim) -> Result<bool, Error> {
        let name = claim_volume_name(claim);
        if name.is_empty() {
            return Ok(true);
        }
        Ok(self.volume_api().get_opt(name).await?.is_none())
    }

    async fn set_claim_phase(&self, claim: &PersistentVolumeClaim, phase: &str) -> Result<(), Error> {
        if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
            return Ok(());
        }
        let patch = json!({"status": {"phase": phase}});
        self.claims(claim.metadata.namespace.as_deref().unwrap_or("")).patch_status(name_of(&claim.metadata), PatchType::Merge, &patch).await?;
        Ok(())
    }

    /// Names the provisioner on the claim (both spellings), as the controller does
    /// before an external provisioner takes over, and says so in an event.
    async fn annotate_provisioner(&self, claim: &PersistentVolumeClaim, provisioner: &str) -> Result<PersistentVolumeClaim, Error> {
        if annotation(&claim.metadata, STORAGE_PROVISIONER_ANNOTATION) == Some(provisioner) {
            return Ok(claim.clone());
        }
        let mut updated = claim.clone();
        let annotations = updated.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(STORAGE_PROVISIONER_ANNOTATION.into(), provisioner.into());
        annotations.insert(BETA_STORAGE_PROVISIONER_ANNOTATION.into(), provisioner.into());
        let updated = self.claims(claim.metadata.namespace.as_deref().unwrap_or("")).replace(name_of(&claim.metadata), &updated).await?;
        self.binder.record(
            claim,
            EventType::Normal,
            "ExternalProvisioning",
            &format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."),
        );
        Ok(updated)
    }

    /// Makes the claim's local-path volume on `node` and binds it.
    async fn provision(&self, claim: &PersistentVolumeClaim, class: &StorageClass, node: &Node) -> Result<(), Error> {
        let claim = self.annotate_provisioner(claim, LOCAL_PATH_PROVISIONER).await?;
        let api = self.volume_api();
        let desired = local_path_volume(&claim, class, node);
        let name = name_of(&desired.metadata).to_string();
        // Made by an earlier sync whose binding did not finish.
        if let Some(existing) = api.get_opt(&name).await? {
            return self.bind(&existing, &claim).await;
        }
        let who = format!("{}/{}", claim.metadata.namespace.as_deref().unwrap_or(""), name_of(&claim.metadata));
        self.provisioner.record(&claim, EventType::Normal, "Provisioning", &format!("External provisioner is provisioning volume for claim {who:?}"));
        let pv = match api.create(&desired).await {
            Ok(pv) => pv,
            Err(e) if e.reason() == Some("AlreadyExists") => api.get(&name).await?,
            Err(e) => {
                let class_name = class.metadata.name.as_deref().unwrap_or("");
                self.provisioner.record(&claim, EventType::Warning, "ProvisioningFailed", &format!("failed to provision volume with StorageClass {class_name:?}: {e}"));
                return Err(e.into());
            }
        };
        tracing::info!(claim = %who, volume = %name, node = %name_of(&node.metadata), "provisioned a local-path volume");
        self.provisioner.record(&claim, EventType::Normal, "ProvisioningSucceeded", &format!("Successfully provisioned volume {name}"));
        self.bind(&pv, &claim).await
    }

    /// The chosen node is gone: without the annotation the scheduler picks again
    /// (external-provisioner's `rescheduleProvisioning`).
    async fn reschedule(&self, claim: &PersistentVolumeClaim, node: &str) -> Result<Option<Duration>, Error> {
        // The node informer may not have seen a node the scheduler already has.
        if Api::<Node>::all(&self.ctx.client).get_opt(node).await?.is_some() {
            return Ok(Some(Duration::from_secs(1)));
        }
        let mut updated = claim.clone();
        if let Some(a) = updated.metadata.annotations.as_mut() {
            a.remove(SELECTED_NODE_ANNOTATION);
        }
        self.claims(claim.metadata.namespace.as_deref().unwrap_or("")).replace(name_of(&claim.metadata), &updated).await?;
        self.provisioner.record(claim, EventType::Warning, "ProvisioningFailed", &format!("failed to get target node: node {node:?} not found"));
        Ok(None)
    }

    /// Writes whatever part of the binding is missing: the volume's claimRef, its
    /// phase, the claim's volumeName and annotations, the claim's status.
    async fn bind(&self, pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), Error> {
        let api = self.volume_api();
        let pv_name = name_of(&pv.metadata).to_string();
        let exact = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|r| {
            r.uid.is_some() && r.uid == claim.metadata.uid && r.name == claim.metadata.name && r.namespace == claim.metadata.namespace
        });
        let mut pv = pv.clone();
        if !exact {
            let by_controller = !is_volume_bound_to_claim(&pv, claim);
            pv.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_ref(claim));
            if by_controller {
                pv.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(BOUND_BY_CONTROLLER_ANNOTATION.into(), "yes".into());
            }
            pv = api.replace(&pv_name, &pv).await?;
        }
        if phase_of(&pv) != "Bound" {
            let patch = json!({"status": {"phase": "Bound", "message": null, "reason": null, "lastPhaseTransitionTime": now()}});
            pv = api.patch_status(&pv_name, PatchType::Merge, &patch).await?;
        }
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let mut updated = claim.clone();
        let mut changed = false;
        if claim_volume_name(claim) != pv_name {
            updated.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
            updated.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(BOUND_BY_CONTROLLER_ANNOTATION.into(), "yes".into());
            changed = true;
        }
        if annotation(&claim.metadata, BIND_COMPLETED_ANNOTATION).is_none() {
            updated.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(BIND_COMPLETED_ANNOTATION.into(), "yes".into());
            changed = true;
        }
        if changed {
            updated = self.claims(&ns).replace(name_of(&claim.metadata), &updated).await?;
            tracing::debug!(claim = %key_of(&claim.metadata), volume = %pv_name, "bound");
        }
        let capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
        let modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
        let status = updated.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound") || status.capacity != capacity || status.access_modes != modes {
            let patch = json!({"status": {"phase": "Bound", "capacity": capacity, "accessModes": modes}});
            self.claims(&ns).patch_status(name_of(&claim.metadata), PatchType::Merge, &patch).await?;
        }
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(pv) = self.volumes.store().get("", name) else { return Ok(None) };
        // pv-protection: a volume being deleted goes once it is not Bound.
        if pv.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&pv.metadata, PV_PROTECTION_FINALIZER) && phase_of(&pv) != "Bound" {
                let mut updated = (*pv).clone();
                without_finalizer(&mut updated.metadata, PV_PROTECTION_FINALIZER);
                match self.volume_api().replace(name, &updated).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(None);
        }
        let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|r| self.ctx.pvcs.store().get(r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or("")));
        let step = plan_volume(&pv, claim.as_deref());
        tracing::debug!(volume = %name, step = ?step, "volume sync");
        let api = self.volume_api();
        match step {
            VolumeStep::Nothing => {}
            VolumeStep::SyncClaim(key) => self.claim_queue.add(key),
            VolumeStep::Phase { phase, message } => {
                if (phase == "Released" || phase == "Failed") && self.claim_still_there(&pv).await? {
                    return Ok(Some(Duration::from_secs(1)));
                }
                let patch = json!({"status": {"phase": phase, "message": message, "lastPhaseTransitionTime": now()}});
                api.patch_status(name, PatchType::Merge, &patch).await?;
                if phase == "Failed" {
                    let reason = if reclaim_policy(&pv) == "Delete" { "VolumeFailedDelete" } else { "VolumeFailedRecycle" };
                    self.binder.record(&*pv, EventType::Warning, reason, message.as_deref().unwrap_or(""));
                }
            }
            VolumeStep::Delete => {
                if self.claim_still_there(&pv).await? {
                    return Ok(Some(Duration::from_secs(1)));
                }
                let params = DeleteParams { precondition_uid: pv.metadata.uid.clone(), ..Default::default() };
                match api.delete(name, &params).await {
                    Ok(()) => tracing::info!(volume = %name, "deleted a released local-path volume"),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            VolumeStep::Unbind => {
                let mut updated = (*pv).clone();
                if let Some(spec) = updated.spec.as_mut() {
                    spec.claim_ref = None;
                }
                if let Some(a) = updated.metadata.annotations.as_mut() {
                    a.remove(BOUND_BY_CONTROLLER_ANNOTATION);
                }
                api.replace(name, &updated).await?;
            }
        }
        Ok(None)
    }

    /// Whether the claim a volume names still exists with the uid it names and is
    /// bound to it (or not bound yet), asked of the API: the claim informer may lag.
    async fn claim_still_there(&self, pv: &PersistentVolume) -> Result<bool, Error> {
        let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return Ok(false) };
        let claim = self.claims(r.namespace.as_deref().unwrap_or("")).get_opt(r.name.as_deref().unwrap_or("")).await?;
        Ok(claim.is_some_and(|c| {
            let volume = claim_volume_name(&c);
            c.metadata.uid == r.uid && (volume.is_empty() || volume == name_of(&pv.metadata))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use serde_json::Value;

    fn claim(extra: Value) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "c1", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "local-path", "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"}
        });
        merge(&mut c, extra);
        serde_json::from_value(c).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        a.remove(&k);
                    } else {
                        merge(a.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn class(name: &str, provisioner: &str, mode: &str, policy: &str) -> Arc<StorageClass> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": "2024-01-01T00:00:00Z"}, "provisioner": provisioner, "volumeBindingMode": mode, "reclaimPolicy": policy})).unwrap())
    }

    fn default_class(name: &str) -> Arc<StorageClass> {
        let mut c = (*class(name, LOCAL_PATH_PROVISIONER, "WaitForFirstConsumer", "Delete")).clone();
        c.metadata.annotations = Some(BTreeMap::from([(skiff_api::storage::IS_DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())]));
        Arc::new(c)
    }

    fn node(name: &str, ready: bool) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([(HOSTNAME_LABEL.to_string(), name.to_string())])),
                annotations: Some(BTreeMap::from([(NODE_STORAGE_ANNOTATION.to_string(), format!("/data/{name}/storage"))])),
                ..Default::default()
            },
            spec: None,
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition { type_: "Ready".into(), status: if ready { "True" } else { "False" }.into(), ..Default::default() }]),
                ..Default::default()
            }),
        })
    }

    fn volume(name: &str, extra: Value) -> Arc<PersistentVolume> {
        let mut v = json!({
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path", "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": "/d"}},
            "status": {"phase": "Available"}
        });
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn provisioned(name: &str, claim_uid: &str, node: &str) -> Arc<PersistentVolume> {
        volume(
            name,
            json!({
                "metadata": {"annotations": {PROVISIONED_BY_ANNOTATION: LOCAL_PATH_PROVISIONER}},
                "spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": claim_uid},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}},
                "status": {"phase": "Bound"}
            }),
        )
    }

    struct Cluster {
        volumes: Vec<Arc<PersistentVolume>>,
        classes: Vec<Arc<StorageClass>>,
        nodes: Vec<Arc<Node>>,
    }

    impl Cluster {
        fn new() -> Cluster {
            Cluster { volumes: vec![], classes: vec![default_class("local-path")], nodes: vec![node("n1", true), node("n2", true)] }
        }

        fn plan(&self, c: &PersistentVolumeClaim) -> ClaimStep {
            plan_claim(c, &View { volumes: &self.volumes, classes: &self.classes, nodes: &self.nodes })
        }
    }

    fn reason(step: &ClaimStep) -> (&'static str, &'static str) {
        match step {
            ClaimStep::Wait { phase, note: Some(n) } => (phase, n.reason),
            other => panic!("not a wait with a note: {other:?}"),
        }
    }

    #[test]
    fn a_claim_of_a_wait_for_first_consumer_class_waits_for_a_node() {
        let cluster = Cluster::new();
        assert_eq!(reason(&cluster.plan(&claim(json!({})))), ("Pending", "WaitForFirstConsumer"));
    }

    #[test]
    fn the_selected_node_gets_the_local_path_volume() {
        let cluster = Cluster::new();
        let c = claim(json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n2"}}}));
        let ClaimStep::Provision { class, node } = cluster.plan(&c) else { panic!("no provisioning") };
        assert_eq!((class.metadata.name.as_deref(), node.metadata.name.as_deref()), (Some("local-path"), Some("n2")));
    }

    #[test]
    fn a_selected_node_that_is_gone_sends_the_claim_back_to_the_scheduler() {
        let cluster = Cluster::new();
        let c = claim(json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "gone"}}}));
        assert_eq!(cluster.plan(&c), ClaimStep::Reschedule { node: "gone".into() });
    }

    #[test]
    fn immediate_classes_provision_at_once_on_the_least_loaded_ready_node() {
        let mut cluster = Cluster::new();
        cluster.classes.push(class("now", LOCAL_PATH_PROVISIONER, "Immediate", "Delete"));
        cluster.nodes.insert(0, node("n0", false));
        cluster.volumes.push(provisioned("pvc-other", "other", "n1"));
        let c = claim(json!({"spec": {"storageClassName": "now"}}));
        let ClaimStep::Provision { node: chosen, .. } = cluster.plan(&c) else { panic!("no provisioning") };
        assert_eq!(chosen.metadata.name.as_deref(), Some("n2"), "n0 is not ready and n1 holds a volume already");
        cluster.nodes = vec![node("n0", false)];
        assert_eq!(reason(&cluster.plan(&c)), ("Pending", "ProvisioningFailed"));
    }

    #[test]
    fn a_claim_of_a_missing_class_stays_pending() {
        let cluster = Cluster::new();
        let step = cluster.plan(&claim(json!({"spec": {"storageClassName": "gold"}})));
        let ClaimStep::Wait { phase: "Pending", note: Some(n) } = step else { panic!("{step:?}") };
        assert_eq!((n.reason, n.message.as_str()), ("ProvisioningFailed", "storageclass.storage.k8s.io \"gold\" not found"));
    }

    #[test]
    fn claims_without_a_class_get_todays_default_then_bind_to_classless_volumes_only_without_one() {
        let cluster = Cluster::new();
        let unset = claim(json!({"spec": {"storageClassName": null}}));
        assert_eq!(cluster.plan(&unset), ClaimStep::AssignDefaultClass("local-path".into()));
        let empty = claim(json!({"spec": {"storageClassName": ""}}));
        assert_eq!(reason(&cluster.plan(&empty)), ("Pending", "FailedBinding"));
        let mut with_volume = Cluster::new();
        with_volume.volumes.push(volume("manual", json!({"spec": {"storageClassName": ""}})));
        assert!(matches!(with_volume.plan(&empty), ClaimStep::Bind(pv) if pv.metadata.name.as_deref() == Some("manual")));
    }

    #[test]
    fn a_pre_made_volume_that_fits_the_selected_node_is_bound_instead_of_provisioning() {
        let mut cluster = Cluster::new();
        let on = |n: &str| json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [n]}]}]}}}});
        cluster.volumes.push(volume("local-n1", on("n1")));
        cluster.volumes.push(volume("local-n2", on("n2")));
        let c = claim(json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n2"}}}));
        assert!(matches!(cluster.plan(&c), ClaimStep::Bind(pv) if pv.metadata.name.as_deref() == Some("local-n2")));
        // Before the scheduler chose, pre-made volumes are not bound.
        assert_eq!(reason(&cluster.plan(&claim(json!({})))), ("Pending", "WaitForFirstConsumer"));
    }

    #[test]
    fn the_volume_provisioned_for_a_claim_is_bound_to_it() {
        let mut cluster = Cluster::new();
        cluster.volumes.push(provisioned("pvc-c1", "c1", "n1"));
        let c = claim(json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n1"}}}));
        assert!(matches!(cluster.plan(&c), ClaimStep::Bind(pv) if pv.metadata.name.as_deref() == Some("pvc-c1")));
    }

    #[test]
    fn other_provisioners_are_named_on_the_claim_and_waited_for() {
        let mut cluster = Cluster::new();
        cluster.classes.push(class("nfs", "example.com/nfs", "Immediate", "Delete"));
        let c = claim(json!({"spec": {"storageClassName": "nfs"}}));
        assert_eq!(cluster.plan(&c), ClaimStep::ExternalProvisioning { provisioner: "example.com/nfs".into() });
        let annotated = claim(json!({"metadata": {"annotations": {STORAGE_PROVISIONER_ANNOTATION: "example.com/nfs"}}, "spec": {"storageClassName": "nfs"}}));
        assert_eq!(cluster.plan(&annotated), ClaimStep::Wait { phase: "Pending", note: None });
    }

    #[test]
    fn local_path_refuses_shared_access_and_selectors() {
        let cluster = Cluster::new();
        let rwx = claim(json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n1"}}, "spec": {"accessModes": ["ReadWriteMany"]}}));
        let ClaimStep::Wait { note: Some(n), .. } = cluster.plan(&rwx) else { panic!() };
        assert!(n.message.ends_with("only ReadWriteOnce and ReadWriteOncePod access modes are supported"), "{}", n.message);
        let selective = claim(json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: "n1"}}, "spec": {"selector": {"matchLabels": {"tier": "gold"}}}}));
        let ClaimStep::Wait { note: Some(n), .. } = cluster.plan(&selective) else { panic!() };
        assert!(n.message.ends_with("claim Selector is not supported"), "{}", n.message);
    }

    #[test]
    fn a_bound_claim_whose_volume_is_gone_is_lost() {
        let cluster = Cluster::new();
        let bound = claim(json!({"metadata": {"annotations": {BIND_COMPLETED_ANNOTATION: "yes"}}, "spec": {"volumeName": "pvc-c1"}}));
        assert_eq!(reason(&cluster.plan(&bound)), ("Lost", "ClaimLost"));
        let mut misbound = Cluster::new();
        misbound.volumes.push(provisioned("pvc-c1", "someone-else", "n1"));
        assert_eq!(reason(&misbound.plan(&bound)), ("Lost", "ClaimMisbound"));
    }

    #[test]
    fn a_volume_named_by_the_user_must_satisfy_the_claim() {
        let mut cluster = Cluster::new();
        cluster.volumes.push(volume("small", json!({"spec": {"capacity": {"storage": "100Mi"}}})));
        let c = claim(json!({"spec": {"volumeName": "small"}}));
        let ClaimStep::Wait { note: Some(n), .. } = cluster.plan(&c) else { panic!() };
        assert_eq!((n.reason, n.message.as_str()), ("VolumeMismatch", "Cannot bind to requested volume \"small\": requested PV is too small"));
    }

    #[test]
    fn volumes_follow_their_claims_through_the_phases() {
        let free = volume("free", json!({"status": {"phase": "Pending"}}));
        assert_eq!(plan_volume(&free, None), VolumeStep::Phase { phase: "Available", message: None });
        let pv = provisioned("pvc-c1", "c1", "n1");
        let bound = claim(json!({"spec": {"volumeName": "pvc-c1"}}));
        assert_eq!(plan_volume(&pv, Some(&bound)), VolumeStep::Nothing);
        let binding = claim(json!({}));
        assert_eq!(plan_volume(&pv, Some(&binding)), VolumeStep::SyncClaim("ns/data".into()));
        // A claim of the same name but another uid is another claim.
        let successor = claim(json!({"metadata": {"uid": "c2"}}));
        assert_eq!(plan_volume(&pv, Some(&successor)), VolumeStep::Phase { phase: "Released", message: None });
    }

    #[test]
    fn released_volumes_are_reclaimed_by_their_policy() {
        let delete = provisioned("pvc-c1", "c1", "n1");
        assert_eq!(plan_volume(&delete, None), VolumeStep::Phase { phase: "Released", message: None });
        let released = volume("pvc-c1", json!({"metadata": {"annotations": {PROVISIONED_BY_ANNOTATION: LOCAL_PATH_PROVISIONER}}, "spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "c1"}}, "status": {"phase": "Released"}}));
        assert_eq!(plan_volume(&released, None), VolumeStep::Delete);
        let retained = volume("keep", json!({"spec": {"persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "data", "uid": "c1"}}, "status": {"phase": "Released"}}));
        assert_eq!(plan_volume(&retained, None), VolumeStep::Nothing);
        let static_delete = volume("static", json!({"spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "c1"}}, "status": {"phase": "Released"}}));
        let VolumeStep::Phase { phase: "Failed", message: Some(m) } = plan_volume(&static_delete, None) else { panic!() };
        assert!(m.contains("no deletable volume plugin matched"));
    }

    #[test]
    fn a_volume_the_controller_bound_to_a_claim_bound_elsewhere_is_freed() {
        let pv = volume("x", json!({"metadata": {"annotations": {BOUND_BY_CONTROLLER_ANNOTATION: "yes"}}, "spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "c1"}}, "status": {"phase": "Bound"}}));
        let elsewhere = claim(json!({"spec": {"volumeName": "y"}}));
        assert_eq!(plan_volume(&pv, Some(&elsewhere)), VolumeStep::Unbind);
    }

    #[test]
    fn only_scheduled_pods_keep_a_claim_in_use() {
        let pod = |node: Option<&str>, phase: &str, volumes: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "web-0"}, "spec": {"nodeName": node, "containers": [], "volumes": volumes}, "status": {"phase": phase}})).unwrap()
        };
        let claim_volume = json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]);
        assert!(pod_uses_claim(&pod(Some("n1"), "Running", claim_volume.clone()), "data"));
        assert!(pod_uses_claim(&pod(Some("n1"), "Succeeded", claim_volume.clone()), "data"), "a finished pod still holds its claim until deleted");
        assert!(!pod_uses_claim(&pod(None, "Pending", claim_volume.clone()), "data"), "the kubelet never starts an unscheduled pod on a deleted claim");
        assert!(!pod_uses_claim(&pod(Some("n1"), "Running", claim_volume), "other"));
        let ephemeral = json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]);
        assert!(pod_uses_claim(&pod(Some("n1"), "Running", ephemeral.clone()), "web-0-scratch"));
        assert!(!pod_uses_claim(&pod(Some("n1"), "Failed", ephemeral.clone()), "web-0-scratch"));
        assert_eq!(claims_of(&pod(None, "", ephemeral)), vec!["web-0-scratch".to_string()]);
    }

    #[test]
    fn the_local_path_volume_lives_under_the_nodes_storage_dir_and_is_pinned_there() {
        let c = claim(json!({"spec": {"accessModes": ["ReadWriteOncePod"], "resources": {"requests": {"storage": "2Gi"}}}}));
        let pv = local_path_volume(&c, &class("local-path", LOCAL_PATH_PROVISIONER, "WaitForFirstConsumer", "Retain"), &node("n1", true));
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-c1");
        assert_eq!(v["metadata"]["annotations"][PROVISIONED_BY_ANNOTATION], LOCAL_PATH_PROVISIONER);
        assert_eq!(v["spec"]["hostPath"], json!({"path": "/data/n1/storage/pvc-c1_ns_data", "type": "DirectoryOrCreate"}));
        assert_eq!(v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0], json!({"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}));
        assert_eq!((v["spec"]["capacity"]["storage"].clone(), v["spec"]["accessModes"].clone()), (json!("2Gi"), json!(["ReadWriteOncePod"])));
        assert_eq!((v["spec"]["persistentVolumeReclaimPolicy"].clone(), v["spec"]["storageClassName"].clone()), (json!("Retain"), json!("local-path")));
        assert_eq!(v["spec"]["claimRef"], json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "ns", "name": "data", "uid": "c1", "resourceVersion": "7"}));
        // A node that publishes no storage dir gets the default one.
        let mut bare = (*node("n2", true)).clone();
        bare.metadata.annotations = None;
        let pv = local_path_volume(&c, &class("local-path", LOCAL_PATH_PROVISIONER, "WaitForFirstConsumer", "Delete"), &bare);
        assert_eq!(pv.spec.unwrap().host_path.unwrap().path, "/var/lib/skiff/storage/pvc-c1_ns_data");
    }
}
