//! The statefulset controller (upstream `pkg/controller/statefulset`): pods with
//! stable names (`{set}-{ordinal}`), stable storage (one claim per template and
//! ordinal, created before the pod) and a stable network identity (hostname and
//! the governing service as subdomain).
//!
//! Each sync reads the set, its pods, claims and revisions from the informers and
//! makes a [`Plan`] — a pure function of that state — then carries it out:
//!
//! - `OrderedReady`: one step at a time. A missing pod is created only when every
//!   pod below it is Running and Ready; scale-down deletes the highest ordinal first
//!   and only while the others are healthy; nothing moves while a pod terminates.
//! - `Parallel`: missing pods are created and surplus pods deleted all at once (in
//!   slow-start batches).
//! - `RollingUpdate`: pods at or above the partition that are not at the update
//!   revision are deleted highest first, one at a time (or `maxUnavailable` at a
//!   time), waiting for each replacement to be available. `OnDelete` leaves updates
//!   to whoever deletes the pods.
//!
//! Revisions of the pod template are ControllerRevisions ([`crate::history`]); every
//! pod carries the name of its revision in `controller-revision-hash`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, PatchType, WorkQueue};

use crate::deployment::scaled_value;
use crate::history;
use crate::podutil::{
    adopt, claim_action, controller_ref, enqueue_object_key, is_pod_available, is_pod_ready, key_of, label_selector_matches, name, namespace, new_controller_ref, pod_from_template, pod_phase,
    release, run_workers, slow_start_batch, split_key, uid, ClaimAction,
};
use crate::Context;

/// Label with the pod's own name, so a service can select one member.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label with the name of the ControllerRevision a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

const COMPONENT: &str = "statefulset-controller";
const KIND: &str = "StatefulSet";
const API_VERSION: &str = "apps/v1";
/// Concurrent syncs (upstream's default `--concurrent-statefulset-syncs` is 5).
const WORKERS: usize = 5;
/// Attempts at writing status before the sync is retried with back-off.
const STATUS_RETRIES: usize = 10;

/// What a sync can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    #[error(transparent)]
    History(#[from] history::Error),
    /// A claim the pod needs is being deleted; the pod waits for it to go.
    #[error("pvc {0} is being deleted")]
    ClaimDeleting(String),
    /// The set was deleted or replaced while it was adopting.
    #[error("original StatefulSet {0} is gone or being deleted")]
    Gone(String),
    /// Several steps of one batch failed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Many(Vec<Error>),
}

// === identity ===

/// The parent name and ordinal of a pod name (`web-3` → `("web", 3)`), as
/// upstream's `(.*)-([0-9]+)$`; `None` when the name has no ordinal.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

/// The pod's ordinal, -1 when its name has none.
pub fn ordinal_of(pod: &Pod) -> i32 {
    parent_and_ordinal(name(&pod.metadata)).map_or(-1, |(_, o)| o)
}

fn spec_replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// The first ordinal (`spec.ordinals.start`, else 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0)
}

/// The last ordinal (inclusive).
pub fn end_ordinal(set: &StatefulSet) -> i32 {
    start_ordinal(set) + spec_replicas(set) - 1
}

fn in_ordinal_range(ordinal: i32, set: &StatefulSet) -> bool {
    ordinal >= start_ordinal(set) && ordinal <= end_ordinal(set)
}

/// `{set}-{ordinal}`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", name(&set.metadata))
}

/// `{claim template}-{set}-{ordinal}`.
pub fn claim_name(template: &str, set: &StatefulSet, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", name(&set.metadata))
}

fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(name(&pod.metadata)).is_some_and(|(p, _)| p == name(&set.metadata))
}

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some((parent, ordinal)) = parent_and_ordinal(name(&pod.metadata)) else { return false };
    ordinal >= 0
        && parent == name(&set.metadata)
        && namespace(&pod.metadata) == namespace(&set.metadata)
        && pod.metadata.labels.as_ref().and_then(|l| l.get(POD_NAME_LABEL)).map(String::as_str) == Some(name(&pod.metadata))
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or_default()
}

fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ordinal = ordinal_of(pod);
    if ordinal < 0 {
        return false;
    }
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    claim_templates(set).iter().all(|t| {
        let want = claim_name(name(&t.metadata), set, ordinal);
        volumes.iter().any(|v| v.name == name(&t.metadata) && v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == want))
    })
}

/// The claims a member with `ordinal` uses: one per template, labelled with the
/// template's labels and the set's matchLabels.
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let match_labels = set.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let mut labels = labels(&t.metadata);
            labels.extend(match_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(name(&t.metadata), set, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    finalizers: t.metadata.finalizers.clone(),
                    ..ObjectMeta::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Points the pod's claim volumes at the member's claims, keeping other volumes.
fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let ordinal = ordinal_of(pod);
    let spec = pod.spec.get_or_insert_with(Default::default);
    let current = spec.volumes.take().unwrap_or_default();
    let templates: Vec<&str> = claim_templates(set).iter().map(|t| name(&t.metadata)).collect();
    let mut volumes: Vec<Volume> = templates
        .iter()
        .map(|t| Volume {
            name: t.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim_name(t, set, ordinal), read_only: Some(false) }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(current.into_iter().filter(|v| !templates.contains(&v.name.as_str())));
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// The identity labels of a member.
fn identity_labels(pod_name: &str, ordinal: i32) -> [(String, String); 2] {
    [(POD_NAME_LABEL.to_string(), pod_name.to_string()), (POD_INDEX_LABEL.to_string(), ordinal.to_string())]
}

/// A new member of `set` with `ordinal`, made from `template` (the template of
/// the revision it belongs to) and labelled with that revision.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let owner = new_controller_ref(KIND, API_VERSION, name(&set.metadata), uid(&set.metadata));
    let mut pod = pod_from_template(template, namespace(&set.metadata), "", Some(owner));
    let pod_name = pod_name(set, ordinal);
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(pod_name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(identity_labels(&pod_name, ordinal));
    labels.insert(REVISION_LABEL.to_string(), revision.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(pod_name);
    spec.subdomain = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    update_storage(set, &mut pod);
    pod
}

/// The revision a pod was made from (`""` when unlabelled).
pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map_or("", String::as_str)
}

// === pod state ===

fn is_created(pod: &Pod) -> bool {
    !pod_phase(pod).is_empty()
}

fn is_failed_or_succeeded(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Failed" | "Succeeded")
}

fn is_pending(pod: &Pod) -> bool {
    pod_phase(pod) == "Pending"
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    pod_phase(pod) == "Running" && is_pod_ready(pod)
}

fn is_running_and_available(pod: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    is_running_and_ready(pod) && is_pod_available(pod, min_ready, now)
}

fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

fn is_unavailable(pod: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    !is_healthy(pod) || !is_pod_available(pod, min_ready, now)
}

// === claim retention ===

/// `persistentVolumeClaimRetentionPolicy` as (whenDeleted deletes, whenScaled deletes).
fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let deletes = |p: Option<&String>| p.map(String::as_str) == Some("Delete");
    (deletes(policy.and_then(|p| p.when_deleted.as_ref())), deletes(policy.and_then(|p| p.when_scaled.as_ref())))
}

fn refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim.metadata.owner_references.as_deref().unwrap_or_default()
}

fn matches_ref(r: &OwnerReference, api_version: &str, kind: &str, name: &str) -> bool {
    r.api_version == api_version && r.kind == kind && r.name == name
}

fn has_owner_ref(claim: &PersistentVolumeClaim, owner_uid: &str) -> bool {
    !owner_uid.is_empty() && refs(claim).iter().any(|r| r.uid == owner_uid)
}

/// A reference to an object of this name and kind with another uid: the claim is
/// managed by a previous incarnation and must not be touched.
fn has_stale_owner_ref(claim: &PersistentVolumeClaim, api_version: &str, kind: &str, name: &str, uid: &str) -> bool {
    refs(claim).iter().find(|r| matches_ref(r, api_version, kind, name)).is_some_and(|r| r.uid != uid)
}

fn has_unexpected_controller(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    let (when_deleted, when_scaled) = retention(set);
    if !when_deleted && !when_scaled {
        return false;
    }
    for r in refs(claim) {
        if matches_ref(r, API_VERSION, KIND, name(&set.metadata)) {
            if r.uid != uid(&set.metadata) {
                return true;
            }
            continue;
        }
        if matches_ref(r, "v1", "Pod", name(&pod.metadata)) {
            if r.uid != uid(&pod.metadata) {
                return true;
            }
            continue;
        }
        if r.controller == Some(true) {
            return true;
        }
    }
    false
}

fn has_non_controller_owner(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    refs(claim).iter().any(|r| (r.uid == uid(&set.metadata) || (!uid(&pod.metadata).is_empty() && r.uid == uid(&pod.metadata))) && r.controller != Some(true))
}

/// Whether the claim's owner references follow the retention policy: a set
/// reference when `whenDeleted: Delete` (for members in range), a pod reference
/// when `whenScaled: Delete` and the member is scaled away. Claims in a state the
/// controller did not make (stale references, another controller) are left alone.
pub fn claim_owner_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if has_stale_owner_ref(claim, API_VERSION, KIND, name(&set.metadata), uid(&set.metadata))
        || has_stale_owner_ref(claim, "v1", "Pod", name(&pod.metadata), uid(&pod.metadata))
    {
        return true;
    }
    let set_ref = has_owner_ref(claim, uid(&set.metadata));
    let pod_ref = has_owner_ref(claim, uid(&pod.metadata));
    if has_unexpected_controller(claim, set, pod) {
        return !(set_ref || pod_ref);
    }
    if has_non_controller_owner(claim, set, pod) {
        return false;
    }
    let scaled_down = !in_ordinal_range(ordinal_of(pod), set);
    match retention(set) {
        (false, false) => !set_ref && !pod_ref,
        (true, false) => set_ref && !pod_ref,
        (false, true) => !set_ref && scaled_down == pod_ref,
        (true, true) => scaled_down != set_ref && scaled_down == pod_ref,
    }
}

/// The claim's owner references made to follow the retention policy.
pub fn claim_owner_refs(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> Vec<OwnerReference> {
    let unexpected = has_unexpected_controller(claim, set, pod);
    let mut out: Vec<OwnerReference> = refs(claim)
        .iter()
        .filter(|r| !matches_ref(r, API_VERSION, KIND, name(&set.metadata)) && !matches_ref(r, "v1", "Pod", name(&pod.metadata)))
        .cloned()
        .collect();
    if unexpected {
        return out;
    }
    let scaled_down = !in_ordinal_range(ordinal_of(pod), set);
    let (when_deleted, when_scaled) = retention(set);
    let set_ref = new_controller_ref(KIND, API_VERSION, name(&set.metadata), uid(&set.metadata));
    let pod_ref = || new_controller_ref("Pod", "v1", name(&pod.metadata), uid(&pod.metadata));
    match (when_deleted, when_scaled) {
        (false, false) => {}
        (true, false) => out.push(set_ref),
        (false, true) => {
            if scaled_down {
                out.push(pod_ref());
            }
        }
        (true, true) => out.push(if scaled_down { pod_ref() } else { set_ref }),
    }
    out
}

// === revisions ===

/// The revision of the set's current template (not yet created): its patch, the
/// template's labels, the set's annotations.
pub fn new_revision(set: &StatefulSet, number: i64, collision_count: i32) -> ControllerRevision {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let owner = new_controller_ref(KIND, API_VERSION, name(&set.metadata), uid(&set.metadata));
    let tlabels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let mut rev = history::new_revision(&set.metadata, owner, tlabels, history::template_patch(&template), number, Some(collision_count));
    if let Some(a) = &set.metadata.annotations {
        rev.metadata.annotations.get_or_insert_with(BTreeMap::new).extend(a.clone());
    }
    rev
}

// === the plan ===

/// One thing a sync does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Delete a member that failed or succeeded; a later sync recreates it.
    DeleteFinished(Arc<Pod>),
    /// Create the member's claims, then the member.
    Create(Box<Pod>),
    /// Bring an existing member in line: create its missing claims, and (with
    /// `update`) restore its identity labels and its claims' owner references.
    Fix { pod: Arc<Pod>, missing_claims: bool, update: bool },
    /// Make a condemned member's claims follow the retention policy.
    FixClaims(Arc<Pod>),
    /// Delete a member above the replica count.
    ScaleDown(Arc<Pod>),
    /// Delete a member that is not at the update revision.
    Update(Arc<Pod>),
}

impl Step {
    /// The pod the step acts on.
    pub fn pod_name(&self) -> &str {
        match self {
            Step::Create(p) => name(&p.metadata),
            Step::DeleteFinished(p) | Step::Fix { pod: p, .. } | Step::FixClaims(p) | Step::ScaleDown(p) | Step::Update(p) => name(&p.metadata),
        }
    }
}

/// What one sync will do, in phases: members in range, claims of condemned
/// members, condemned members, then the rolling update. In `monotonic` mode
/// (`OrderedReady`) the steps run one after another and the plan already stops
/// where upstream blocks; otherwise each phase runs concurrently.
#[derive(Debug, Clone)]
pub struct Plan {
    pub monotonic: bool,
    pub replicas: Vec<Step>,
    pub condemned_claims: Vec<Step>,
    pub condemned: Vec<Step>,
    pub updates: Vec<Step>,
    /// The status to record once the steps ran.
    pub status: StatefulSetStatus,
}

impl Plan {
    /// Every step, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.replicas.iter().chain(&self.condemned_claims).chain(&self.condemned).chain(&self.updates)
    }
}

/// What a plan is made from.
pub struct PlanInput<'a> {
    pub set: &'a StatefulSet,
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    pub current_template: &'a PodTemplateSpec,
    pub update_template: &'a PodTemplateSpec,
    pub collision_count: i32,
    /// The set's members (claimed pods).
    pub pods: &'a [Arc<Pod>],
    /// Claims of the namespace by name.
    pub claims: &'a (dyn Fn(&str) -> Option<Arc<PersistentVolumeClaim>> + Send + Sync),
    pub now: jiff::Timestamp,
}

enum Slot {
    Existing(Arc<Pod>),
    New(Box<Pod>),
}

impl Slot {
    fn pod(&self) -> &Pod {
        match self {
            Slot::Existing(p) => p,
            Slot::New(p) => p,
        }
    }
}

fn count_status(status: &mut StatefulSetStatus, pods: &[&Pod], min_ready: i32, now: jiff::Timestamp, current: &str, update: &str) {
    let (mut replicas, mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_running_and_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            if revision_of(pod) == current {
                cur += 1;
            }
            if revision_of(pod) == update {
                upd += 1;
            }
        }
    }
    // Upstream omits the zero counts, except availableReplicas.
    let non_zero = |v: i32| Some(v).filter(|v| *v != 0);
    status.replicas = replicas;
    status.ready_replicas = non_zero(ready);
    status.available_replicas = Some(available);
    status.current_replicas = non_zero(cur);
    status.updated_replicas = non_zero(upd);
}

/// The claims of a member that exist (by the member's ordinal).
fn existing_claims(input: &PlanInput<'_>, pod: &Pod) -> Vec<Arc<PersistentVolumeClaim>> {
    claims_for(input.set, ordinal_of(pod)).iter().filter_map(|c| (input.claims)(name(&c.metadata))).collect()
}

fn claims_match_retention(input: &PlanInput<'_>, pod: &Pod) -> bool {
    existing_claims(input, pod).iter().all(|c| claim_owner_up_to_date(c, input.set, pod))
}

/// A claim of the member still references a previous pod of the same name (which
/// `whenScaled: Delete` made its owner): it is about to be collected, so the member
/// must wait rather than reuse it.
fn claim_is_stale(input: &PlanInput<'_>, pod: &Pod) -> bool {
    if !retention(input.set).1 {
        return false;
    }
    existing_claims(input, pod).iter().any(|c| has_stale_owner_ref(c, "v1", "Pod", name(&pod.metadata), uid(&pod.metadata)))
}

/// `maxUnavailable` of a rolling update against `replicas`, rounded down and at
/// least 1 (upstream `getStatefulSetMaxUnavailable`).
fn max_unavailable(value: Option<&IntOrString>, replicas: i32) -> i32 {
    let n = value.map_or(Ok(1), |v| scaled_value(v, replicas, false)).unwrap_or(1);
    n.max(1)
}

/// Decides what one sync does (upstream `updateStatefulSet`), without touching
/// the API.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let set = input.set;
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = min_ready_seconds(set);
    let now = input.now;
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(input.current_revision.to_string()),
        update_revision: Some(input.update_revision.to_string()),
        collision_count: Some(input.collision_count),
        ..StatefulSetStatus::default()
    };
    let mut plan = Plan { monotonic, replicas: Vec::new(), condemned_claims: Vec::new(), condemned: Vec::new(), updates: Vec::new(), status: status.clone() };

    let start = start_ordinal(set);
    let count = spec_replicas(set).max(0) as usize;
    let mut slots: Vec<Option<Slot>> = (0..count).map(|_| None).collect();
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for pod in input.pods {
        let ordinal = ordinal_of(pod);
        if in_ordinal_range(ordinal, set) {
            slots[(ordinal - start) as usize] = Some(Slot::Existing(Arc::clone(pod)));
        } else if ordinal >= 0 {
            condemned.push(Arc::clone(pod));
        }
    }
    // Empty slots get a new pod: below the partition at the current revision,
    // from it on at the update revision.
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = strategy.rolling_update.as_ref().and_then(|r| r.partition).unwrap_or(0);
    let current_replicas = set.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0);
    let slots: Vec<Slot> = slots
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            slot.unwrap_or_else(|| {
                let ordinal = start + i as i32;
                let at_current = if rolling && strategy.rolling_update.is_none() {
                    ordinal < start + current_replicas
                } else {
                    strategy.rolling_update.is_some() && ordinal < start + partition
                };
                if at_current {
                    Slot::New(Box::new(new_pod(set, input.current_template, input.current_revision, ordinal)))
                } else {
                    Slot::New(Box::new(new_pod(set, input.update_template, input.update_revision, ordinal)))
                }
            })
        })
        .collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));

    let mut first_unavailable: Option<String> = None;
    for slot in &slots {
        if is_unavailable(slot.pod(), min_ready, now) {
            first_unavailable.get_or_insert_with(|| name(&slot.pod().metadata).to_string());
        }
    }
    for pod in condemned.iter().rev() {
        if is_unavailable(pod, min_ready, now) {
            first_unavailable.get_or_insert_with(|| name(&pod.metadata).to_string());
        }
    }

    let all: Vec<&Pod> = slots.iter().map(Slot::pod).chain(condemned.iter().map(|p| p.as_ref())).collect();
    count_status(&mut status, &all, min_ready, now, input.current_revision, input.update_revision);
    plan.status = status;
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }

    // Members in range.
    for slot in &slots {
        match slot {
            Slot::New(pod) => {
                if claim_is_stale(input, pod) {
                    if monotonic {
                        return plan;
                    }
                    continue;
                }
                plan.replicas.push(Step::Create(pod.clone()));
                if monotonic {
                    return plan;
                }
            }
            Slot::Existing(pod) => {
                if is_failed_or_succeeded(pod) {
                    if !is_terminating(pod) {
                        plan.replicas.push(Step::DeleteFinished(Arc::clone(pod)));
                    }
                    if monotonic {
                        return plan;
                    }
                    continue;
                }
                let missing_claims = is_pending(pod);
                let blocked = monotonic && (is_terminating(pod) || !is_running_and_ready(pod) || !is_running_and_available(pod, min_ready, now));
                let update = !blocked && (!identity_matches(set, pod) || !storage_matches(set, pod) || !claims_match_retention(input, pod));
                if missing_claims || update {
                    plan.replicas.push(Step::Fix { pod: Arc::clone(pod), missing_claims, update });
                }
                if blocked {
                    return plan;
                }
            }
        }
    }

    // Claims of condemned members follow the retention policy.
    for pod in &condemned {
        if !claims_match_retention(input, pod) {
            plan.condemned_claims.push(Step::FixClaims(Arc::clone(pod)));
        }
    }

    // Condemned members go, highest ordinal first; in order, only while the rest is
    // healthy, one at a time.
    for pod in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        let first = first_unavailable.as_deref() == Some(name(&pod.metadata));
        if monotonic && !first && (!is_running_and_ready(pod) || !is_running_and_available(pod, min_ready, now)) {
            return plan;
        }
        plan.condemned.push(Step::ScaleDown(Arc::clone(pod)));
        if monotonic {
            return plan;
        }
    }

    if !rolling {
        return plan;
    }
    let update_min = partition.max(0) as usize;
    let mut current = plan.status.current_replicas.unwrap_or(0);
    if let Some(max) = strategy.rolling_update.as_ref().and_then(|r| r.max_unavailable.as_ref()) {
        // With maxUnavailable, up to that many members are replaced at once.
        let max = max_unavailable(Some(max), count as i32);
        let unavailable = slots.iter().filter(|s| is_unavailable(s.pod(), min_ready, now)).count() as i32;
        if unavailable <= max {
            let mut budget = max - unavailable;
            for slot in slots.iter().skip(update_min).rev() {
                if budget <= 0 {
                    break;
                }
                if let Slot::Existing(pod) = slot {
                    if revision_of(pod) != input.update_revision && !is_terminating(pod) {
                        plan.updates.push(Step::Update(Arc::clone(pod)));
                        current -= 1;
                        budget -= 1;
                    }
                }
            }
        }
    } else {
        // One at a time, highest ordinal first, each replacement available before
        // the next goes.
        for slot in slots.iter().skip(update_min).rev() {
            let pod = slot.pod();
            if let Slot::Existing(existing) = slot {
                if revision_of(pod) != input.update_revision && !is_terminating(pod) {
                    plan.updates.push(Step::Update(Arc::clone(existing)));
                    current -= 1;
                    break;
                }
            }
            if is_unavailable(pod, min_ready, now) {
                break;
            }
        }
    }
    plan.status.current_replicas = Some(current).filter(|v| *v != 0);
    plan
}

/// Marks a finished rolling update: every member at the update revision and ready
/// makes the update revision current.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let rolling = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let replicas = spec_replicas(set);
    if rolling && status.updated_replicas.unwrap_or(0) == replicas && status.ready_replicas.unwrap_or(0) == replicas && status.replicas == replicas {
        status.current_replicas = status.updated_replicas.filter(|v| *v != 0);
        status.current_revision = status.update_revision.clone();
    }
}

/// Whether `status` says something the set's recorded status does not.
pub fn inconsistent_status(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let Some(old) = set.status.as_ref() else { return true };
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || status.current_replicas.unwrap_or(0) != old.current_replicas.unwrap_or(0)
        || status.ready_replicas.unwrap_or(0) != old.ready_replicas.unwrap_or(0)
        || status.updated_replicas.unwrap_or(0) != old.updated_replicas.unwrap_or(0)
        || status.current_revision != old.current_revision
        || status.available_replicas.unwrap_or(0) != old.available_replicas.unwrap_or(0)
        || status.update_revision != old.update_revision
        || status.collision_count.unwrap_or(0) != old.collision_count.unwrap_or(0)
}

// === the controller ===

struct Controller {
    ctx: Context,
    queue: WorkQueue<String>,
    recorder: EventRecorder,
}

/// Runs the statefulset controller until the future is dropped.
pub async fn run(ctx: Context) {
    let controller = Arc::new(Controller { recorder: ctx.recorder(COMPONENT), queue: WorkQueue::new(), ctx });
    controller.register();
    tokio::join!(
        controller.ctx.stateful_sets.wait_synced(),
        controller.ctx.pods.wait_synced(),
        controller.ctx.controller_revisions.wait_synced(),
        controller.ctx.pvcs.wait_synced(),
    );
    let c = Arc::clone(&controller);
    run_workers("statefulset", controller.queue.clone(), WORKERS, move |key| {
        let c = Arc::clone(&c);
        async move { c.sync(&key).await }
    })
    .await;
}

impl Controller {
    fn register(self: &Arc<Self>) {
        self.ctx.stateful_sets.on_event(enqueue_object_key(self.queue.clone()));
        let this = Arc::clone(self);
        self.ctx.pods.on_event(Arc::new(move |event| match event {
            InformerEvent::Applied { old, new } => {
                if let Some(old) = old {
                    if old.metadata.resource_version == new.metadata.resource_version {
                        return;
                    }
                    if controller_ref(&old.metadata) != controller_ref(&new.metadata) {
                        this.enqueue_controller_of(old);
                    }
                    if controller_ref(&new.metadata).is_none() && old.metadata.labels == new.metadata.labels && controller_ref(&old.metadata).is_none() {
                        return;
                    }
                }
                if controller_ref(&new.metadata).is_some() {
                    this.enqueue_controller_of(new);
                } else {
                    this.enqueue_selecting(new);
                }
            }
            InformerEvent::Deleted(pod) => this.enqueue_controller_of(pod),
        }));
    }

    /// Enqueues the set a pod's controller reference points at, if it exists.
    fn enqueue_controller_of(&self, pod: &Pod) {
        let Some(r) = controller_ref(&pod.metadata) else { return };
        if r.kind != KIND {
            return;
        }
        if let Some(set) = self.ctx.stateful_sets.store().get(namespace(&pod.metadata), &r.name) {
            if uid(&set.metadata) == r.uid {
                self.queue.add(key_of(&set.metadata));
            }
        }
    }

    /// Enqueues every set whose selector selects an orphan, to consider adopting it.
    fn enqueue_selecting(&self, pod: &Pod) {
        let labels = labels(&pod.metadata);
        for set in self.ctx.stateful_sets.store().list_namespace(namespace(&pod.metadata)) {
            if set.spec.as_ref().is_some_and(|s| label_selector_matches(&s.selector, &labels)) {
                self.queue.add(key_of(&set.metadata));
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
        let (ns, set_name) = split_key(key);
        let Some(set) = self.ctx.stateful_sets.store().get(ns, set_name) else { return Ok(None) };
        let Some(spec) = set.spec.as_ref() else { return Ok(None) };
        let selects = |l: Option<&BTreeMap<String, String>>| label_selector_matches(&spec.selector, l.unwrap_or(&BTreeMap::new()));

        let mut revisions = history::list_revisions(&self.ctx.controller_revisions.store(), ns, uid(&set.metadata), selects);
        let mut checked = false;
        for rev in revisions.iter_mut() {
            if controller_ref(&rev.metadata).is_none() {
                if !checked {
                    self.can_adopt(&set).await?;
                    checked = true;
                }
                let owner = new_controller_ref(KIND, API_VERSION, name(&set.metadata), uid(&set.metadata));
                *rev = Arc::new(history::adopt_revision(&self.api(ns), &owner, rev).await?);
            }
        }
        let pods = self.claim_pods(&set).await?;
        let status = self.update_stateful_set(&set, pods, revisions).await?;
        let min_ready = min_ready_seconds(&set);
        if min_ready > 0 && status.available_replicas.unwrap_or(0) != spec_replicas(&set) {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }

    /// Upstream's `RecheckDeletionTimestamp`: adopt only for a set that still
    /// exists, is the same object, and is not being deleted (read from the API, not
    /// the cache).
    async fn can_adopt(&self, set: &StatefulSet) -> Result<(), Error> {
        let fresh = self.api::<StatefulSet>(namespace(&set.metadata)).get(name(&set.metadata)).await?;
        if uid(&fresh.metadata) != uid(&set.metadata) || fresh.metadata.deletion_timestamp.is_some() {
            return Err(Error::Gone(key_of(&set.metadata)));
        }
        Ok(())
    }

    /// The set's members: pods it controls that it still selects, plus orphans it
    /// selects (adopted); controlled pods it no longer selects are released.
    async fn claim_pods(&self, set: &StatefulSet) -> Result<Vec<Arc<Pod>>, Error> {
        let ns = namespace(&set.metadata);
        let selector = &set.spec.as_ref().expect("checked by sync").selector;
        let deleting = set.metadata.deletion_timestamp.is_some();
        let api: Api<Pod> = self.api(ns);
        let mut owned = Vec::new();
        let mut checked = false;
        for pod in self.ctx.pods.store().list_namespace(ns) {
            let selected = label_selector_matches(selector, &labels(&pod.metadata)) && is_member(set, &pod);
            match claim_action(&pod.metadata, uid(&set.metadata), deleting, selected) {
                ClaimAction::Keep => owned.push(pod),
                ClaimAction::Adopt => {
                    if !checked {
                        self.can_adopt(set).await?;
                        checked = true;
                    }
                    let owner = new_controller_ref(KIND, API_VERSION, name(&set.metadata), uid(&set.metadata));
                    if let Some(adopted) = adopt(&api, &pod.metadata, &owner).await? {
                        owned.push(Arc::new(adopted));
                    }
                }
                ClaimAction::Release => release(&api, &pod.metadata, uid(&set.metadata)).await?,
                ClaimAction::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Upstream `UpdateStatefulSet`: settle the revisions, carry out the plan,
    /// record status, and trim the history (whatever happened before).
    async fn update_stateful_set(&self, set: &StatefulSet, pods: Vec<Arc<Pod>>, mut revisions: Vec<Arc<ControllerRevision>>) -> Result<StatefulSetStatus, Error> {
        history::sort_revisions(&mut revisions);
        let (current, update, collision_count) = self.revisions(set, &revisions).await?;
        let result = self.perform_update(set, &pods, &current, &update, collision_count).await;
        let trimmed = self.truncate_history(set, &pods, &revisions, &current, &update).await;
        let status = result?;
        trimmed?;
        Ok(status)
    }

    /// The current and update revisions (upstream `getStatefulSetRevisions`): the
    /// update revision is the newest revision if it equals the template, an older
    /// equal revision renumbered as newest (a rollback), or a new one.
    async fn revisions(&self, set: &StatefulSet, revisions: &[Arc<ControllerRevision>]) -> Result<(Arc<ControllerRevision>, Arc<ControllerRevision>, i32), Error> {
        let api: Api<ControllerRevision> = self.api(namespace(&set.metadata));
        let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let candidate = new_revision(set, history::next_revision(revisions), collision_count);
        let equal = history::find_equal_revisions(revisions, &candidate);
        let update = match (equal.last(), revisions.last()) {
            (Some(eq), Some(newest)) if history::equal_revision(newest, eq) => Arc::clone(newest),
            (Some(eq), _) => Arc::new(history::update_revision_number(&api, eq, candidate.revision).await?),
            (None, _) => Arc::new(history::create_revision(&api, name(&set.metadata), &candidate, &mut collision_count).await?),
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.as_deref()).unwrap_or_default();
        let current = revisions.iter().find(|r| name(&r.metadata) == current_name).cloned().unwrap_or_else(|| Arc::clone(&update));
        Ok((current, update, collision_count))
    }

    async fn perform_update(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        current: &ControllerRevision,
        update: &ControllerRevision,
        collision_count: i32,
    ) -> Result<StatefulSetStatus, Error> {
        let ns = namespace(&set.metadata);
        let set_template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let current_template = history::template_of(current).unwrap_or_else(|| set_template.clone());
        let update_template = history::template_of(update).unwrap_or(set_template);
        let store = self.ctx.pvcs.store();
        let claims = move |n: &str| store.get(ns, n);
        let plan = plan(&PlanInput {
            set,
            current_revision: name(&current.metadata),
            update_revision: name(&update.metadata),
            current_template: &current_template,
            update_template: &update_template,
            collision_count,
            pods,
            claims: &claims,
            now: jiff::Timestamp::now(),
        });
        let executed = self.execute(set, &plan).await;
        let status_written = self.write_status(set, plan.status.clone()).await;
        executed?;
        status_written?;
        Ok(plan.status)
    }

    /// Runs the plan's phases in order; a phase with a failure ends the sync.
    async fn execute(&self, set: &StatefulSet, plan: &Plan) -> Result<(), Error> {
        for phase in [&plan.replicas, &plan.condemned_claims, &plan.condemned] {
            if plan.monotonic {
                for step in phase {
                    self.run_step(set, step).await?;
                }
            } else if let (_, Some(e)) = slow_start_batch(phase.len(), 1, |i| self.run_step(set, &phase[i])).await {
                // Batches of 1, 2, 4, …: a quota or admission error is not repeated
                // for every member.
                return Err(e);
            }
        }
        for step in &plan.updates {
            self.run_step(set, step).await?;
        }
        Ok(())
    }

    async fn run_step(&self, set: &StatefulSet, step: &Step) -> Result<(), Error> {
        match step {
            Step::Create(pod) => self.create_pod(set, pod).await,
            Step::DeleteFinished(pod) | Step::ScaleDown(pod) => self.delete_pod(set, pod, false).await,
            Step::Update(pod) => self.delete_pod(set, pod, true).await,
            Step::Fix { pod, missing_claims, update } => {
                if *missing_claims {
                    self.create_claims(set, pod).await?;
                }
                if *update {
                    self.update_pod(set, pod).await?;
                }
                Ok(())
            }
            Step::FixClaims(pod) => self.fix_claim_owners(set, pod).await,
        }
    }

    fn record_pod_event(&self, set: &StatefulSet, verb: &str, pod: &str, err: Option<&Error>) {
        let title = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
        let set_name = name(&set.metadata);
        match err {
            None => self.recorder.record(set, EventType::Normal, &format!("Successful{title}"), &format!("{verb} Pod {pod} in StatefulSet {set_name} successful")),
            Some(e) => self.recorder.record(set, EventType::Warning, &format!("Failed{title}"), &format!("{verb} Pod {pod} in StatefulSet {set_name} failed error: {e}")),
        }
    }

    fn record_claim_event(&self, set: &StatefulSet, pod: &str, claim: &str, err: Option<&skiff_client::Error>) {
        let set_name = name(&set.metadata);
        match err {
            None => self.recorder.record(set, EventType::Normal, "SuccessfulCreate", &format!("create Claim {claim} Pod {pod} in StatefulSet {set_name} success")),
            Some(e) => {
                self.recorder.record(set, EventType::Warning, "FailedCreate", &format!("create Claim {claim} for Pod {pod} in StatefulSet {set_name} failed error: {e}"))
            }
        }
    }

    /// Creates the member's claims that do not exist yet, owned as the retention
    /// policy says. A claim being deleted is an error: the member waits.
    async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let ns = namespace(&set.metadata);
        let api: Api<PersistentVolumeClaim> = self.api(ns);
        let store = self.ctx.pvcs.store();
        let mut errors = Vec::new();
        for mut claim in claims_for(set, ordinal_of(pod)) {
            let claim_name = name(&claim.metadata).to_string();
            match store.get(ns, &claim_name) {
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => errors.push(Error::ClaimDeleting(claim_name)),
                Some(_) => {}
                None => {
                    let refs = claim_owner_refs(&claim, set, pod);
                    claim.metadata.owner_references = (!refs.is_empty()).then_some(refs);
                    match api.create(&claim).await {
                        Ok(_) => self.record_claim_event(set, name(&pod.metadata), &claim_name, None),
                        // Created by an earlier sync the informer has not shown yet.
                        Err(e) if e.reason() == Some("AlreadyExists") => {}
                        Err(e) => {
                            self.record_claim_event(set, name(&pod.metadata), &claim_name, Some(&e));
                            errors.push(e.into());
                        }
                    }
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.pop().expect("one error")),
            _ => Err(Error::Many(errors)),
        }
    }

    async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let pod_name = name(&pod.metadata).to_string();
        if let Err(e) = self.create_claims(set, pod).await {
            self.record_pod_event(set, "create", &pod_name, Some(&e));
            return Err(e);
        }
        match self.api::<Pod>(namespace(&set.metadata)).create(pod).await {
            Ok(created) => {
                self.record_pod_event(set, "create", &pod_name, None);
                // Claims that existed before (kept by Retain) now follow the policy
                // for this pod.
                self.fix_claim_owners(set, &created).await
            }
            // The informer has not shown it yet; the next sync sees it.
            Err(e) if e.reason() == Some("AlreadyExists") => Err(e.into()),
            Err(e) => {
                let e = Error::from(e);
                self.record_pod_event(set, "create", &pod_name, Some(&e));
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod, ignore_missing: bool) -> Result<(), Error> {
        let params = DeleteParams { precondition_uid: pod.metadata.uid.clone(), ..DeleteParams::default() };
        let pod_name = name(&pod.metadata);
        match self.api::<Pod>(namespace(&set.metadata)).delete(pod_name, &params).await {
            Ok(()) => {
                self.record_pod_event(set, "delete", pod_name, None);
                Ok(())
            }
            Err(e) if ignore_missing && e.is_not_found() => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                self.record_pod_event(set, "delete", pod_name, Some(&e));
                Err(e)
            }
        }
    }

    /// Restores a member's identity labels, creates claims its volumes miss (the
    /// volumes themselves are immutable), and fixes its claims' owners.
    async fn update_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let pod_name = name(&pod.metadata).to_string();
        if !storage_matches(set, pod) {
            if let Err(e) = self.create_claims(set, pod).await {
                self.record_pod_event(set, "update", &pod_name, Some(&e));
                return Err(e);
            }
        }
        if let Err(e) = self.fix_claim_owners(set, pod).await {
            self.record_pod_event(set, "update", &pod_name, Some(&e));
            return Err(e);
        }
        if identity_matches(set, pod) {
            return Ok(());
        }
        let labels: serde_json::Map<String, serde_json::Value> = identity_labels(&pod_name, ordinal_of(pod)).into_iter().map(|(k, v)| (k, json!(v))).collect();
        let patch = json!({"metadata": {"labels": labels}});
        let result = self.api::<Pod>(namespace(&set.metadata)).patch(&pod_name, PatchType::Merge, &patch).await.map(|_| ()).map_err(Error::from);
        self.record_pod_event(set, "update", &pod_name, result.as_ref().err());
        result
    }

    /// Makes the owner references of the member's existing claims follow the
    /// retention policy (upstream `UpdatePodClaimForRetentionPolicy`).
    async fn fix_claim_owners(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let ns = namespace(&set.metadata);
        let api: Api<PersistentVolumeClaim> = self.api(ns);
        let store = self.ctx.pvcs.store();
        for wanted in claims_for(set, ordinal_of(pod)) {
            let Some(claim) = store.get(ns, name(&wanted.metadata)) else { continue };
            if claim_owner_up_to_date(&claim, set, pod) {
                continue;
            }
            let mut updated = (*claim).clone();
            let refs = claim_owner_refs(&claim, set, pod);
            updated.metadata.owner_references = (!refs.is_empty()).then_some(refs);
            api.replace(name(&claim.metadata), &updated).await?;
        }
        Ok(())
    }

    /// Records the status when it says something new, retrying conflicts on a
    /// fresh copy (upstream `updateStatefulSetStatus`).
    async fn write_status(&self, set: &StatefulSet, mut status: StatefulSetStatus) -> Result<(), Error> {
        complete_rolling_update(set, &mut status);
        if !inconsistent_status(set, &status) {
            return Ok(());
        }
        let api: Api<StatefulSet> = self.api(namespace(&set.metadata));
        let mut obj = set.clone();
        for attempt in 0.. {
            obj.status = Some(status.clone());
            match api.replace_status(name(&set.metadata), &obj).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() && attempt < STATUS_RETRIES => obj = api.get(name(&set.metadata)).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that no member,
    /// nor the current or update revision, uses.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        revisions: &[Arc<ControllerRevision>],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<(), Error> {
        let mut live: HashSet<String> = pods.iter().map(|p| revision_of(p).to_string()).collect();
        live.insert(name(&current.metadata).to_string());
        live.insert(name(&update.metadata).to_string());
        let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(history::DEFAULT_REVISION_HISTORY_LIMIT);
        let api: Api<ControllerRevision> = self.api(namespace(&set.metadata));
        for rev in history::revisions_to_truncate(revisions, &live, limit) {
            history::delete_revision(&api, &rev).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{RollingUpdateStatefulSetStrategy, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy};
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
    use std::collections::HashMap;

    const CURRENT: &str = "web-aaa";
    const UPDATE: &str = "web-bbb";

    // === builders ===

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() }),
            spec: Some(PodSpec { containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }], ..Default::default() }),
        }
    }

    struct SetBuilder(StatefulSet);

    fn make_set(replicas: i32) -> SetBuilder {
        SetBuilder(StatefulSet {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), uid: Some("set-uid".into()), generation: Some(1), ..Default::default() },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() },
                service_name: Some("web".into()),
                template: template("nginx:1"),
                pod_management_policy: Some("OrderedReady".into()),
                update_strategy: Some(StatefulSetUpdateStrategy { type_: Some("RollingUpdate".into()), rolling_update: Some(RollingUpdateStatefulSetStrategy { partition: Some(0), max_unavailable: None }) }),
                ..Default::default()
            }),
            status: None,
        })
    }

    impl SetBuilder {
        fn parallel(mut self) -> Self {
            self.spec().pod_management_policy = Some("Parallel".into());
            self
        }
        fn partition(mut self, p: i32) -> Self {
            self.spec().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(p);
            self
        }
        fn max_unavailable(mut self, n: i32) -> Self {
            self.spec().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().max_unavailable = Some(IntOrString::Int(n));
            self
        }
        fn on_delete(mut self) -> Self {
            self.spec().update_strategy = Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
            self
        }
        fn start(mut self, start: i32) -> Self {
            self.spec().ordinals = Some(StatefulSetOrdinals { start: Some(start) });
            self
        }
        fn claims(mut self, when_deleted: &str, when_scaled: &str) -> Self {
            self.spec().volume_claim_templates = Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
                ..Default::default()
            }]);
            self.spec().persistent_volume_claim_retention_policy =
                Some(StatefulSetPersistentVolumeClaimRetentionPolicy { when_deleted: Some(when_deleted.into()), when_scaled: Some(when_scaled.into()) });
            self
        }
        fn spec(&mut self) -> &mut StatefulSetSpec {
            self.0.spec.as_mut().unwrap()
        }
        fn obj(self) -> StatefulSet {
            self.0
        }
    }

    #[derive(Clone, Copy)]
    enum State {
        Pending,
        Running,
        Ready,
        Failed,
        Terminating,
    }

    fn member(set: &StatefulSet, ordinal: i32, revision: &str, state: State) -> Arc<Pod> {
        let mut pod = new_pod(set, &template("nginx:1"), revision, ordinal);
        pod.metadata.uid = Some(format!("pod-uid-{ordinal}"));
        let (phase, ready) = match state {
            State::Pending => ("Pending", false),
            State::Running => ("Running", false),
            State::Ready | State::Terminating => ("Running", true),
            State::Failed => ("Failed", false),
        };
        if let State::Terminating = state {
            pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition { type_: "Ready".into(), status: if ready { "True" } else { "False" }.into(), ..Default::default() }]),
            ..Default::default()
        });
        Arc::new(pod)
    }

    fn plan_for(set: &StatefulSet, pods: &[Arc<Pod>]) -> Plan {
        plan_with_claims(set, pods, &HashMap::new())
    }

    fn plan_with_claims(set: &StatefulSet, pods: &[Arc<Pod>], claims: &HashMap<String, Arc<PersistentVolumeClaim>>) -> Plan {
        let lookup = |n: &str| claims.get(n).cloned();
        plan(&PlanInput {
            set,
            current_revision: CURRENT,
            update_revision: UPDATE,
            current_template: &template("nginx:1"),
            update_template: &template("nginx:2"),
            collision_count: 0,
            pods,
            claims: &lookup,
            now: jiff::Timestamp::now(),
        })
    }

    fn summary(plan: &Plan) -> Vec<String> {
        plan.steps()
            .map(|s| {
                let verb = match s {
                    Step::DeleteFinished(_) => "delete-finished",
                    Step::Create(_) => "create",
                    Step::Fix { .. } => "fix",
                    Step::FixClaims(_) => "fix-claims",
                    Step::ScaleDown(_) => "scale-down",
                    Step::Update(_) => "update",
                };
                format!("{verb} {}", s.pod_name())
            })
            .collect()
    }

    // === tests ===

    #[test]
    fn ordinals_are_parsed_from_the_end_of_pod_names() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(parent_and_ordinal("web-1a"), None);
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-99999999999"), None);
        assert_eq!(parent_and_ordinal("-3"), Some(("", 3)));
    }

    #[test]
    fn new_members_carry_their_identity_storage_and_revision() {
        let set = make_set(3).claims("Retain", "Retain").obj();
        let pod = new_pod(&set, &template("nginx:1"), CURRENT, 2);
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], CURRENT);
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let volume = &spec.volumes.as_ref().unwrap()[0];
        assert_eq!(volume.name, "data");
        assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-2");
        let owner = controller_ref(&pod.metadata).unwrap();
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("StatefulSet", "set-uid"));
        assert!(identity_matches(&set, &pod) && storage_matches(&set, &pod));
        let claims = claims_for(&set, 2);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claims[0].metadata.labels.as_ref().unwrap()["app"], "web");
    }

    #[test]
    fn ordered_scale_up_creates_one_pod_after_the_previous_is_ready() {
        let set = make_set(3).obj();
        assert_eq!(summary(&plan_for(&set, &[])), vec!["create web-0"]);
        // web-0 exists but is not ready yet: nothing else happens.
        let pods = [member(&set, 0, UPDATE, State::Running)];
        assert!(summary(&plan_for(&set, &pods)).is_empty());
        let pods = [member(&set, 0, UPDATE, State::Pending)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["fix web-0"], "a pending pod only gets its missing claims");
        let pods = [member(&set, 0, UPDATE, State::Ready)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["create web-1"]);
        let pods = [member(&set, 0, UPDATE, State::Ready), member(&set, 1, UPDATE, State::Ready)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["create web-2"]);
    }

    #[test]
    fn a_missing_low_ordinal_is_recreated_before_anything_above_it_moves() {
        let set = make_set(3).obj();
        let pods = [member(&set, 1, UPDATE, State::Ready), member(&set, 2, UPDATE, State::Ready)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["create web-0"]);
    }

    #[test]
    fn failed_members_are_deleted_to_be_recreated() {
        let set = make_set(2).obj();
        let pods = [member(&set, 0, UPDATE, State::Failed), member(&set, 1, UPDATE, State::Ready)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["delete-finished web-0"]);
    }

    #[test]
    fn ordered_scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let set = make_set(0).obj();
        let ready: Vec<_> = (0..3).map(|i| member(&set, i, UPDATE, State::Ready)).collect();
        assert_eq!(summary(&plan_for(&set, &ready)), vec!["scale-down web-2"]);
        // While web-2 terminates nothing else goes.
        let pods = [ready[0].clone(), ready[1].clone(), member(&set, 2, UPDATE, State::Terminating)];
        assert!(summary(&plan_for(&set, &pods)).is_empty());
        assert_eq!(summary(&plan_for(&set, &ready[..2])), vec!["scale-down web-1"]);
    }

    #[test]
    fn ordered_scale_down_waits_while_a_remaining_member_is_unhealthy() {
        let set = make_set(1).obj();
        // web-0 stays but is not ready: web-1 and web-2 wait.
        let pods = [member(&set, 0, UPDATE, State::Running), member(&set, 1, UPDATE, State::Ready), member(&set, 2, UPDATE, State::Ready)];
        assert!(summary(&plan_for(&set, &pods)).is_empty());
        // An unhealthy condemned member that is the first unhealthy one may go.
        let pods = [member(&set, 0, UPDATE, State::Ready), member(&set, 1, UPDATE, State::Ready), member(&set, 2, UPDATE, State::Running)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["scale-down web-2"]);
        // But not one above another unhealthy member.
        let pods = [member(&set, 0, UPDATE, State::Ready), member(&set, 1, UPDATE, State::Running), member(&set, 2, UPDATE, State::Running)];
        assert!(summary(&plan_for(&set, &pods)).is_empty());
    }

    #[test]
    fn parallel_management_creates_and_deletes_everything_at_once() {
        let set = make_set(3).parallel().obj();
        assert_eq!(summary(&plan_for(&set, &[])), vec!["create web-0", "create web-1", "create web-2"]);
        let pods = [member(&set, 0, UPDATE, State::Pending)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["fix web-0", "create web-1", "create web-2"]);
        let set = make_set(1).parallel().obj();
        let pods: Vec<_> = (0..4).map(|i| member(&set, i, UPDATE, State::Running)).collect();
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["scale-down web-3", "scale-down web-2", "scale-down web-1"]);
    }

    #[test]
    fn start_ordinal_shifts_the_member_range() {
        let set = make_set(2).start(5).obj();
        assert_eq!(summary(&plan_for(&set, &[])), vec!["create web-5"]);
        let pods = [member(&set, 0, UPDATE, State::Ready), member(&set, 5, UPDATE, State::Ready), member(&set, 6, UPDATE, State::Ready)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["scale-down web-0"]);
    }

    #[test]
    fn rolling_update_replaces_the_highest_ordinal_first_and_waits_for_it() {
        let set = make_set(3).obj();
        let old: Vec<_> = (0..3).map(|i| member(&set, i, CURRENT, State::Ready)).collect();
        let plan = plan_for(&set, &old);
        assert_eq!(summary(&plan), vec!["update web-2"]);
        assert_eq!(plan.status.current_replicas, Some(2));
        // The replacement of web-2 is not ready: web-1 waits.
        let pods = [old[0].clone(), old[1].clone(), member(&set, 2, UPDATE, State::Running)];
        assert!(summary(&plan_for(&set, &pods)).is_empty());
        let pods = [old[0].clone(), old[1].clone(), member(&set, 2, UPDATE, State::Ready)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["update web-1"]);
    }

    #[test]
    fn a_partition_keeps_lower_ordinals_at_the_current_revision() {
        let set = make_set(4).partition(2).obj();
        let pods = [
            member(&set, 0, CURRENT, State::Ready),
            member(&set, 1, CURRENT, State::Ready),
            member(&set, 2, UPDATE, State::Ready),
            member(&set, 3, UPDATE, State::Ready),
        ];
        assert!(summary(&plan_for(&set, &pods)).is_empty(), "ordinals below the partition are never updated");
        let pods = [member(&set, 0, CURRENT, State::Ready), member(&set, 1, CURRENT, State::Ready), member(&set, 2, CURRENT, State::Ready), member(&set, 3, UPDATE, State::Ready)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["update web-2"]);
        // A missing member below the partition comes back at the current revision.
        let pods = [member(&set, 1, CURRENT, State::Ready)];
        let plan = plan_for(&set, &pods);
        let Step::Create(pod) = &plan.replicas[0] else { panic!("{:?}", summary(&plan)) };
        assert_eq!((pod.metadata.name.as_deref(), revision_of(pod)), (Some("web-0"), CURRENT));
        assert_eq!(pod.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:1"));
        let set = make_set(4).partition(2).obj();
        let pods: Vec<_> = (0..2).map(|i| member(&set, i, CURRENT, State::Ready)).collect();
        let plan = plan_for(&set, &pods);
        let Step::Create(pod) = &plan.replicas[0] else { panic!() };
        assert_eq!((pod.metadata.name.as_deref(), revision_of(pod)), (Some("web-2"), UPDATE));
        assert_eq!(pod.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("nginx:2"));
    }

    #[test]
    fn max_unavailable_replaces_several_members_at_once() {
        let set = make_set(4).max_unavailable(2).obj();
        let old: Vec<_> = (0..4).map(|i| member(&set, i, CURRENT, State::Ready)).collect();
        assert_eq!(summary(&plan_for(&set, &old)), vec!["update web-3", "update web-2"]);
        // With OrderedReady a starting replacement blocks everything; with Parallel
        // it only counts against the budget, so one more may go.
        let pods = [old[0].clone(), old[1].clone(), old[2].clone(), member(&set, 3, UPDATE, State::Running)];
        assert!(summary(&plan_for(&set, &pods)).is_empty());
        let set = make_set(4).max_unavailable(2).parallel().obj();
        let pods = [old[0].clone(), old[1].clone(), old[2].clone(), member(&set, 3, UPDATE, State::Running)];
        assert_eq!(summary(&plan_for(&set, &pods)), vec!["update web-2"]);
    }

    #[test]
    fn on_delete_never_replaces_members() {
        let set = make_set(2).on_delete().obj();
        let old: Vec<_> = (0..2).map(|i| member(&set, i, CURRENT, State::Ready)).collect();
        assert!(summary(&plan_for(&set, &old)).is_empty());
    }

    #[test]
    fn status_counts_members_and_completes_a_rolling_update() {
        let set = make_set(2).obj();
        let pods = [member(&set, 0, UPDATE, State::Ready), member(&set, 1, UPDATE, State::Ready)];
        let mut status = plan_for(&set, &pods).status;
        assert_eq!(status.replicas, 2);
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(2));
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.current_replicas, None);
        assert_eq!(status.observed_generation, Some(1));
        complete_rolling_update(&set, &mut status);
        assert_eq!(status.current_revision.as_deref(), Some(UPDATE));
        assert_eq!(status.current_replicas, Some(2));
        assert!(inconsistent_status(&set, &status));
        let mut recorded = set.clone();
        recorded.status = Some(status.clone());
        assert!(!inconsistent_status(&recorded, &status));
    }

    #[test]
    fn identity_labels_are_restored() {
        let set = make_set(1).obj();
        let mut pod = (*member(&set, 0, UPDATE, State::Ready)).clone();
        pod.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
        let plan = plan_for(&set, &[Arc::new(pod)]);
        assert!(matches!(plan.replicas.as_slice(), [Step::Fix { update: true, missing_claims: false, .. }]));
    }

    fn claim_with(refs: Vec<OwnerReference>) -> Arc<PersistentVolumeClaim> {
        Arc::new(PersistentVolumeClaim { metadata: ObjectMeta { name: Some("data-web-0".into()), owner_references: Some(refs), ..Default::default() }, ..Default::default() })
    }

    #[test]
    fn claims_follow_the_retention_policy() {
        let set_ref = new_controller_ref(KIND, API_VERSION, "web", "set-uid");
        let retain = make_set(1).claims("Retain", "Retain").obj();
        let pod = member(&retain, 0, UPDATE, State::Ready);
        assert!(claim_owner_up_to_date(&claim_with(vec![]), &retain, &pod));
        assert!(!claim_owner_up_to_date(&claim_with(vec![set_ref.clone()]), &retain, &pod));

        let delete_with_set = make_set(1).claims("Delete", "Retain").obj();
        assert!(!claim_owner_up_to_date(&claim_with(vec![]), &delete_with_set, &pod));
        assert_eq!(claim_owner_refs(&claim_with(vec![]), &delete_with_set, &pod), vec![set_ref.clone()]);
        assert!(claim_owner_up_to_date(&claim_with(vec![set_ref.clone()]), &delete_with_set, &pod));

        // whenScaled: Delete gives a scaled-away member's claim to the pod.
        let scaled = make_set(0).claims("Retain", "Delete").obj();
        let gone = member(&scaled, 0, UPDATE, State::Ready);
        let refs = claim_owner_refs(&claim_with(vec![]), &scaled, &gone);
        assert_eq!((refs.len(), refs[0].kind.as_str(), refs[0].uid.as_str()), (1, "Pod", "pod-uid-0"));
        assert!(!claim_owner_up_to_date(&claim_with(vec![]), &scaled, &gone));
        let plan = plan_with_claims(&scaled, std::slice::from_ref(&gone), &[("data-web-0".to_string(), claim_with(vec![]))].into());
        assert_eq!(summary(&plan), vec!["fix-claims web-0", "scale-down web-0"]);

        // A claim still owned by an earlier pod of that name is stale: wait.
        let mut old_pod_ref = new_controller_ref("Pod", "v1", "web-0", "old-uid");
        old_pod_ref.block_owner_deletion = Some(true);
        let back = make_set(1).claims("Retain", "Delete").obj();
        let plan = plan_with_claims(&back, &[], &[("data-web-0".to_string(), claim_with(vec![old_pod_ref]))].into());
        assert!(summary(&plan).is_empty());
    }

    #[test]
    fn max_unavailable_rounds_down_to_at_least_one() {
        assert_eq!(max_unavailable(Some(&IntOrString::String("50%".into())), 5), 2);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(3)), 5), 3);
        assert_eq!(max_unavailable(Some(&IntOrString::String("10%".into())), 3), 1);
        assert_eq!(max_unavailable(None, 3), 1);
    }

    #[test]
    fn revisions_restore_the_template_and_copy_annotations() {
        let mut set = make_set(1).obj();
        set.metadata.annotations = Some([("team".to_string(), "a".to_string())].into());
        let rev = new_revision(&set, 2, 0);
        assert_eq!(rev.revision, 2);
        assert_eq!(rev.metadata.annotations.as_ref().unwrap()["team"], "a");
        assert_eq!(history::template_of(&rev), Some(set.spec.unwrap().template));
    }
}
