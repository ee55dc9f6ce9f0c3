//! The deployment controller (upstream pkg/controller/deployment): rolls a
//! Deployment's pod template out through ReplicaSets, one per template revision
//! (named `{deployment}-{pod-template-hash}`).
//!
//! - RollingUpdate scales the new ReplicaSet up and old ones down within
//!   `maxSurge` / `maxUnavailable`; Recreate scales old ones to zero and waits for
//!   their pods to be gone first.
//! - A change of `spec.replicas` while several ReplicaSets are active is spread
//!   over them in proportion to their sizes (proportional scaling).
//! - Revisions live in the `deployment.kubernetes.io/revision` annotation; an old
//!   ReplicaSet whose template comes back (`kubectl rollout undo`) gets the next
//!   revision and remembers its earlier ones in `revision-history`.
//! - Status carries replica counts, `observedGeneration`, and the `Progressing`
//!   and `Available` conditions that `kubectl rollout status` reads.
//!
//! The pure arithmetic (fenceposts, proportions, plans, status) is separate from
//! the controller so it can be tested without a server.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, PatchType, WorkQueue};

use crate::podutil::{
    adopt, claim_action, compute_hash, controller_ref, is_namespace_terminating, key_of, label_selector_matches, name, new_controller_ref,
    non_zero, release, run_workers, selector_is_empty, split_key, ClaimAction,
};
use crate::Context;

pub const COMPONENT: &str = "deployment-controller";
const WORKERS: usize = 5;

/// The label (and selector term) that ties a ReplicaSet and its pods to one template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// How long the revision-history annotation may grow (upstream's limit).
const MAX_REV_HISTORY_CHARS: usize = 2000;

// Condition types and reasons, as upstream spells them (kubectl matches on them).
pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const PAUSED_REASON: &str = "DeploymentPaused";
pub const RESUMED_REASON: &str = "DeploymentResumed";
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

/// Why a sync failed; the key is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    #[error(transparent)]
    IntOrPercent(#[from] IntOrPercentError),
    #[error("cannot adopt replica sets: {0}")]
    CannotAdopt(String),
    /// A ReplicaSet named after the template hash exists but belongs to someone
    /// else or holds another template; `collisionCount` was bumped.
    #[error("replica set {0} already exists with another template (hash collision)")]
    HashCollision(String),
}

/// Runs the controller until the future is dropped.
pub async fn run(ctx: Context) {
    let controller = DeploymentController { ctx: ctx.clone(), queue: WorkQueue::new(), recorder: ctx.recorder(COMPONENT) };
    controller.register_handlers();
    ctx.deployments.wait_synced().await;
    ctx.replica_sets.wait_synced().await;
    ctx.pods.wait_synced().await;
    let c = controller.clone();
    run_workers(COMPONENT, controller.queue.clone(), WORKERS, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    })
    .await;
}

// === accessors with upstream defaults ===

fn spec(d: &Deployment) -> &k8s_openapi::api::apps::v1::DeploymentSpec {
    static EMPTY: std::sync::OnceLock<k8s_openapi::api::apps::v1::DeploymentSpec> = std::sync::OnceLock::new();
    d.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default))
}

/// `spec.replicas` (defaulted to 1 by the API).
pub fn replicas(d: &Deployment) -> i32 {
    spec(d).replicas.unwrap_or(1)
}

fn is_rolling_update(d: &Deployment) -> bool {
    spec(d).strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

fn is_paused(d: &Deployment) -> bool {
    spec(d).paused.unwrap_or(false)
}

fn min_ready_seconds(d: &Deployment) -> i32 {
    spec(d).min_ready_seconds.unwrap_or(0)
}

fn has_progress_deadline(d: &Deployment) -> bool {
    spec(d).progress_deadline_seconds.is_some_and(|s| s != i32::MAX)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    crate::replicaset::desired_replicas(rs)
}

fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

// === fenceposts ===

/// `maxSurge` or `maxUnavailable` is neither an int nor a percentage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for IntOrString: {0}")]
pub struct IntOrPercentError(pub String);

/// An int-or-percent scaled against `total` (upstream
/// `GetScaledValueFromIntOrPercent`): percentages round up or down as asked.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, IntOrPercentError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%').and_then(|n| n.parse().ok()).ok_or_else(|| IntOrPercentError(s.clone()))?;
            let scaled = pct * i64::from(total);
            let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            Ok(v as i32)
        }
    }
}

/// `(maxSurge, maxUnavailable)` as numbers of pods for `desired` replicas
/// (upstream `ResolveFenceposts`): surge rounds up, unavailability down, and when
/// both come to zero one pod may be unavailable, or nothing could ever move.
pub fn resolve_fenceposts(max_surge: Option<&IntOrString>, max_unavailable: Option<&IntOrString>, desired: i32) -> Result<(i32, i32), IntOrPercentError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = spec(d).strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
    // Validation rejects malformed values, so a failure here means none were given.
    resolve_fenceposts(ru.and_then(|r| r.max_surge.as_ref()), ru.and_then(|r| r.max_unavailable.as_ref()), replicas(d)).unwrap_or((0, 1))
}

/// Extra pods a rolling update may run (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

/// Pods a rolling update may have unavailable (0 for Recreate), never more than
/// the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

// === replica set lists ===

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match t(a).cmp(&t(b)) {
        Ordering::Equal => name(&a.metadata).cmp(name(&b.metadata)),
        o => o,
    }
}

/// Larger first; among equals, newer first (upstream `ReplicaSetsBySizeNewer`).
fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(b, a))
}

/// Larger first; among equals, older first (upstream `ReplicaSetsBySizeOlder`).
fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(a, b))
}

/// The revision a ReplicaSet (or Deployment) records; 0 if none or unparsable.
pub fn revision(meta: &ObjectMeta) -> i64 {
    annotation(meta, REVISION_ANNOTATION).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().map(|rs| revision(&rs.metadata)).max().unwrap_or(0)
}

fn active(rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    rss.iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect()
}

/// A template as JSON with the hash label removed and empty values dropped, so
/// a ReplicaSet's template compares equal to the Deployment's it came from (upstream
/// `EqualIgnoreHash` with semantic equality, where nil and empty are the same).
fn normalized_template(t: &PodTemplateSpec) -> Value {
    fn prune(v: &mut Value) -> bool {
        match v {
            Value::Null => true,
            Value::Object(m) => {
                m.retain(|_, v| !prune(v));
                m.is_empty()
            }
            Value::Array(a) => {
                for x in a.iter_mut() {
                    prune(x);
                }
                a.is_empty()
            }
            _ => false,
        }
    }
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    prune(&mut v);
    v
}

/// Whether two templates are equal apart from the `pod-template-hash` label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized_template(a) == normalized_template(b)
}

/// The oldest ReplicaSet whose template is the Deployment's (upstream `FindNewReplicaSet`).
pub fn find_new_replica_set<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted.into_iter().find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &spec(d).template)))
}

/// Every ReplicaSet but the new one.
pub fn find_old_replica_sets(d: &Deployment, rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    let new_uid = find_new_replica_set(d, rss).and_then(|rs| rs.metadata.uid.clone());
    rss.iter().filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid).cloned().collect()
}

// === annotations ===

fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_ANNOTATION | REVISION_ANNOTATION | REVISION_HISTORY_ANNOTATION | DESIRED_REPLICAS_ANNOTATION | MAX_REPLICAS_ANNOTATION | DEPRECATED_ROLLBACK_TO
    )
}

/// Sets the desired- and max-replicas annotations; whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS_ANNOTATION, desired), (MAX_REPLICAS_ANNOTATION, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Upstream `SetNewReplicaSetAnnotations`: copies the Deployment's own annotations,
/// raises the revision to `new_revision` (keeping earlier revisions of a
/// ReplicaSet that comes back in `revision-history`), and on a ReplicaSet about to
/// be created (`exists == false`) sets the replica annotations. Returns whether
/// anything changed.
pub fn set_new_replica_set_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION_ANNOTATION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        annotations.insert(REVISION_ANNOTATION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations.get(REVISION_HISTORY_ANNOTATION).cloned().unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), old);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    revisions = revisions.split_off(start);
                    revisions.push(&old);
                    let joined = revisions.join(",");
                    annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

// === scaling arithmetic ===

/// Pods the ReplicaSets run or are about to run: `spec.replicas`, or more while a
/// scale-down has not been carried out yet (`status.replicas` still higher).
/// Counting those keeps a rollout within `maxSurge` even while the replicaset
/// controller is still deleting pods of an old revision.
fn pods_in_flight(rss: &[ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs).max(rs_status_replicas(rs))).sum()
}

/// Available pods a ReplicaSet will still have once its scale-down is carried out:
/// its `status.availableReplicas` may lag behind a lowered `spec.replicas`.
fn settled_available(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs))
}

/// The size the new ReplicaSet may grow to now (upstream `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling_update(d) {
        return replicas(d);
    }
    let desired = replicas(d);
    let current = pods_in_flight(all);
    let max_total = desired + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let scale_up = (max_total - current).min(desired - rs_replicas(new_rs));
    rs_replicas(new_rs) + scale_up
}

/// Upstream `getReplicaSetFraction`: how much of a scale step a ReplicaSet takes,
/// in proportion to its size against the size it was scaled for.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    size.round() as i32 - rs_replicas(rs)
}

/// Upstream `GetProportion`.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// New sizes for the active ReplicaSets when `spec.replicas` changes in the middle
/// of a rollout (upstream `scale`, rolling-update branch): the difference is spread
/// in proportion to sizes, and what rounding leaves over goes to the largest.
/// Returns `(name, new size)` in the order to apply, and `"up"`/`"down"`/`""`.
pub fn proportional_sizes(d: &Deployment, active_rss: &[ReplicaSet]) -> (Vec<(String, i32)>, &'static str) {
    let mut rss: Vec<&ReplicaSet> = active_rss.iter().collect();
    let current: i32 = rss.iter().map(|rs| rs_replicas(rs)).sum();
    let allowed = if replicas(d) > 0 { replicas(d) + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    let op = match to_add.cmp(&0) {
        Ordering::Greater => {
            rss.sort_by(|a, b| by_size_newer(a, b));
            "up"
        }
        Ordering::Less => {
            rss.sort_by(|a, b| by_size_older(a, b));
            "down"
        }
        Ordering::Equal => "",
    };
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &rss {
        let p = if to_add != 0 { proportion(rs, d, to_add, added) } else { 0 };
        added += p;
        sizes.push((name(&rs.metadata).to_string(), rs_replicas(rs) + p));
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    (sizes, op)
}

/// Whether the ReplicaSet is the whole Deployment: at the desired size, scaled for
/// it, and all of it available (upstream `IsSaturated`).
fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let desired = annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION).and_then(|v| v.parse::<i32>().ok());
    rs_replicas(rs) == replicas(d) && desired == Some(replicas(d)) && rs_available(rs) == replicas(d)
}

/// Upstream `FindActiveOrLatest`: the one active ReplicaSet, or the newest when
/// none is active; `None` when several are active.
fn find_active_or_latest(new_rs: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Option<ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old: Vec<ReplicaSet> = old.to_vec();
    old.sort_by(|a, b| by_creation(b, a));
    let mut all = old.clone();
    all.extend(new_rs.cloned());
    let act = active(&all);
    match act.len() {
        0 => new_rs.cloned().or_else(|| old.first().cloned()),
        1 => act.into_iter().next(),
        _ => None,
    }
}

/// The scale-down steps of a rolling update for the old ReplicaSets (upstream
/// `reconcileOldReplicaSets`): first unhealthy replicas (which free no capacity when
/// kept), then available ones, never going below `replicas - maxUnavailable`
/// available. Returns `(name, new size)` steps in order.
pub fn plan_old_scale_down(d: &Deployment, all: &[ReplicaSet], old_active: &[ReplicaSet], new_rs: &ReplicaSet) -> Vec<(String, i32)> {
    let old_pods: i32 = old_active.iter().map(rs_replicas).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods: i32 = all.iter().map(rs_replicas).sum();
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut old: Vec<ReplicaSet> = old_active.to_vec();
    old.sort_by(by_creation);
    let mut steps = Vec::new();

    // Unhealthy replicas first, or they block the rollout until the deadline.
    let mut total = 0;
    for rs in old.iter_mut() {
        if total >= max_scaled_down {
            break;
        }
        let size = rs_replicas(rs);
        let unhealthy = size - settled_available(rs);
        if size == 0 || unhealthy <= 0 {
            continue;
        }
        let n = (max_scaled_down - total).min(unhealthy);
        set_rs_replicas(rs, size - n);
        steps.push((name(&rs.metadata).to_string(), size - n));
        total += n;
    }

    // Then available replicas, down to the minimum availability.
    let available: i32 = old.iter().map(settled_available).sum::<i32>() + settled_available(new_rs);
    if available > min_available {
        let to_scale_down = available - min_available;
        let mut scaled = 0;
        for rs in old.iter_mut() {
            if scaled >= to_scale_down {
                break;
            }
            let size = rs_replicas(rs);
            if size == 0 {
                continue;
            }
            let n = size.min(to_scale_down - scaled);
            set_rs_replicas(rs, size - n);
            steps.push((name(&rs.metadata).to_string(), size - n));
            scaled += n;
        }
    }
    steps
}

fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

// === status and conditions ===

fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `SetDeploymentCondition`: nothing changes when status and reason are
/// the same; the transition time survives when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(cur) = condition(status, &cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
        if c.is_empty() {
            status.conditions = None;
        }
    }
}

/// Upstream `calculateStatus`: counts summed over the ReplicaSets, and the
/// `Available` condition against `replicas - maxUnavailable`.
pub fn calculate_status(all: &[ReplicaSet], new_rs: Option<&ReplicaSet>, d: &Deployment, now: Timestamp) -> DeploymentStatus {
    let available: i32 = all.iter().map(rs_available).sum();
    let total: i32 = all.iter().map(rs_replicas).sum();
    let unavailable = (total - available).max(0);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: non_zero(all.iter().map(rs_status_replicas).sum()),
        updated_replicas: non_zero(new_rs.map(rs_status_replicas).unwrap_or(0)),
        ready_replicas: non_zero(all.iter().map(rs_ready).sum()),
        available_replicas: non_zero(available),
        unavailable_replicas: non_zero(unavailable),
        collision_count: old.collision_count,
        conditions: old.conditions,
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(&mut status, new_condition(AVAILABLE, "True", MIN_AVAILABLE_REASON, "Deployment has minimum availability.", now));
    } else {
        set_condition(&mut status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE_REASON, "Deployment does not have minimum availability.", now));
    }
    status
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Every replica updated and available, and the current generation observed.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let r = replicas(d);
    n(status.updated_replicas) == r
        && n(status.replicas) == r
        && n(status.available_replicas) == r
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether the new status shows progress over the Deployment's current one.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// Whether `progressDeadlineSeconds` passed since the last progress.
pub fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = condition(status, PROGRESSING) else { return false };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => return false,
        Some(TIMED_OUT_REASON) => return true,
        _ => {}
    }
    let from = cond.last_update_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
    let deadline = i64::from(spec(d).progress_deadline_seconds.unwrap_or(0));
    from.as_second() + deadline < now.as_second()
}

/// The `Progressing` condition after a rollout step (upstream `syncRolloutStatus`,
/// without replica failures).
pub fn rollout_status(d: &Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>, now: Timestamp) -> DeploymentStatus {
    let mut status = calculate_status(all, new_rs, d, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = d.status.as_ref().and_then(|s| condition(s, PROGRESSING)).cloned();
    let complete_before = n(status.replicas) == n(status.updated_replicas)
        && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
    if has_progress_deadline(d) && !complete_before {
        let subject = |what: &str| match new_rs {
            Some(rs) => format!("ReplicaSet \"{}\" {what}", name(&rs.metadata)),
            None => format!("Deployment \"{}\" {what}", name(&d.metadata)),
        };
        if deployment_complete(d, &status) {
            set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE_REASON, &subject("has successfully progressed."), now));
        } else if deployment_progressing(d, &status) {
            let mut cond = new_condition(PROGRESSING, "True", RS_UPDATED_REASON, &subject("is progressing."), now);
            if let Some(cur) = &current {
                if cur.status == "True" {
                    cond.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, cond);
        } else if deployment_timed_out(d, &status, now) {
            set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT_REASON, &subject("has timed out progressing."), now));
        }
    }
    // One ReplicaSet's failure to create pods surfaces on the Deployment.
    let failure = new_rs
        .into_iter()
        .chain(all.iter())
        .find_map(|rs| rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == REPLICA_FAILURE && c.status == "True").cloned());
    match failure {
        Some(c) => set_condition(
            &mut status,
            DeploymentCondition {
                type_: REPLICA_FAILURE.into(),
                status: c.status,
                reason: c.reason,
                message: c.message,
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time,
            },
        ),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// When to look again at a rollout that made no progress, so it times out on
/// time (upstream `requeueStuckDeployment`).
pub fn requeue_stuck_after(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> Option<Duration> {
    let cur = d.status.as_ref().and_then(|s| condition(s, PROGRESSING))?;
    if !has_progress_deadline(d) || deployment_complete(d, new) || cur.reason.as_deref() == Some(TIMED_OUT_REASON) {
        return None;
    }
    let from = cur.last_update_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
    let at = from.as_second() + i64::from(spec(d).progress_deadline_seconds.unwrap_or(0));
    let after = at - now.as_second();
    Some(Duration::from_secs(after.max(1) as u64))
}

/// Two statuses equal for the purpose of writing one (condition timestamps included).
fn same_status(a: Option<&DeploymentStatus>, b: &DeploymentStatus) -> bool {
    a.cloned().unwrap_or_default() == *b
}

// === impl DeploymentController ===

#[derive(Clone)]
struct DeploymentController {
    ctx: Context,
    queue: WorkQueue<String>,
    recorder: EventRecorder,
}

impl DeploymentController {
    fn register_handlers(&self) {
        let c = self.clone();
        self.ctx.deployments.on_event(Arc::new(move |ev: &InformerEvent<Deployment>| match ev {
            InformerEvent::Applied { new, .. } => c.queue.add(key_of(&new.metadata)),
            InformerEvent::Deleted(d) => c.queue.add(key_of(&d.metadata)),
        }));
        let c = self.clone();
        self.ctx.replica_sets.on_event(Arc::new(move |ev: &InformerEvent<ReplicaSet>| match ev {
            InformerEvent::Applied { old, new } => c.replica_set_changed(old.as_deref(), new),
            InformerEvent::Deleted(rs) => c.replica_set_changed(None, rs),
        }));
        let c = self.clone();
        self.ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| {
            let pod = match ev {
                InformerEvent::Applied { new, .. } => new,
                InformerEvent::Deleted(pod) => pod,
            };
            // Recreate waits for old pods to be gone; nothing else needs pod events.
            if let Some(d) = c.deployment_for_pod(pod) {
                if !is_rolling_update(&d) {
                    c.queue.add(key_of(&d.metadata));
                }
            }
        }));
    }

    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<Deployment>> {
        if r.kind != "Deployment" || !r.api_version.starts_with("apps/") {
            return None;
        }
        self.ctx.deployments.store().get(namespace, &r.name).filter(|d| d.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    fn deployment_for_pod(&self, pod: &Pod) -> Option<Arc<Deployment>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let r = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
        let rs = self.ctx.replica_sets.store().get(ns, &r.name).filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))?;
        self.resolve(ns, controller_ref(&rs.metadata)?)
    }

    fn replica_set_changed(&self, old: Option<&ReplicaSet>, cur: &ReplicaSet) {
        let ns = cur.metadata.namespace.as_deref().unwrap_or("");
        if let Some(old) = old {
            if old.metadata.resource_version == cur.metadata.resource_version {
                return;
            }
            let old_ref = controller_ref(&old.metadata);
            if old_ref != controller_ref(&cur.metadata) {
                if let Some(d) = old_ref.and_then(|r| self.resolve(ns, r)) {
                    self.queue.add(key_of(&d.metadata));
                }
            }
        }
        if let Some(r) = controller_ref(&cur.metadata) {
            if let Some(d) = self.resolve(ns, r) {
                self.queue.add(key_of(&d.metadata));
            }
            return;
        }
        // An orphan: deployments that select it may adopt it.
        let labels = cur.metadata.labels.clone().unwrap_or_default();
        for d in self.ctx.deployments.store().list_namespace(ns) {
            let sel = &spec(&d).selector;
            if !selector_is_empty(sel) && label_selector_matches(sel, &labels) {
                self.queue.add(key_of(&d.metadata));
            }
        }
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(&self.ctx.client, ns)
    }

    fn api(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(&self.ctx.client, ns)
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, dname) = split_key(key);
        let Some(stored) = self.ctx.deployments.store().get(ns, dname) else { return Ok(None) };
        let mut d: Deployment = (*stored).clone();

        if selector_is_empty(&spec(&d).selector) {
            self.recorder.record(&d, EventType::Warning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.");
            let observed = d.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if observed < d.metadata.generation.unwrap_or(0) {
                d.status.get_or_insert_with(Default::default).observed_generation = d.metadata.generation;
                self.update_status(&mut d).await?;
            }
            return Ok(None);
        }

        let rs_list = self.claim_replica_sets(&d).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let (new_rs, old) = self.all_replica_sets_and_sync_revision(&mut d, &rs_list, false).await?;
            let all = with_new(old, new_rs.as_ref());
            return self.sync_deployment_status(&mut d, &all, new_rs.as_ref()).await;
        }

        self.check_paused_conditions(&mut d).await?;
        if is_paused(&d) {
            return self.sync_scale(&mut d, &rs_list).await;
        }
        if self.is_scaling_event(&mut d, &rs_list).await? {
            return self.sync_scale(&mut d, &rs_list).await;
        }
        if is_rolling_update(&d) {
            self.rollout_rolling(&mut d, &rs_list).await
        } else {
            self.rollout_recreate(&mut d, &rs_list).await
        }
    }

    /// Adopts orphaned ReplicaSets that the selector selects and releases owned ones
    /// it no longer selects.
    async fn claim_replica_sets(&self, d: &Deployment) -> Result<Vec<ReplicaSet>, Error> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let selector = &spec(d).selector;
        let api = self.rs_api(&ns);
        let mut claimed = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        let mut first_err: Option<Error> = None;
        for rs in self.ctx.replica_sets.store().list_namespace(&ns) {
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let selected = label_selector_matches(selector, &labels);
            match claim_action(&rs.metadata, &uid, deleting, selected) {
                ClaimAction::Keep => claimed.push((*rs).clone()),
                ClaimAction::Ignore => {}
                ClaimAction::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck(d).await);
                    }
                    if let Some(Err(why)) = &can_adopt {
                        first_err.get_or_insert(Error::CannotAdopt(why.clone()));
                        continue;
                    }
                    let owner = new_controller_ref("Deployment", "apps/v1", name(&d.metadata), &uid);
                    match adopt(&api, &rs.metadata, &owner).await {
                        Ok(adopted) => claimed.extend(adopted),
                        Err(e) => {
                            first_err.get_or_insert(e.into());
                        }
                    }
                }
                ClaimAction::Release => {
                    if let Err(e) = release(&api, &rs.metadata, &uid).await {
                        first_err.get_or_insert(e.into());
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }

    async fn recheck(&self, d: &Deployment) -> Result<(), String> {
        let ns = d.metadata.namespace.as_deref().unwrap_or("");
        let fresh = self.api(ns).get(name(&d.metadata)).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != d.metadata.uid {
            return Err(format!("original Deployment {ns}/{} is gone", name(&d.metadata)));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!("{ns}/{} has just been deleted", name(&d.metadata)));
        }
        Ok(())
    }

    /// Pods of the Deployment by the uid of the ReplicaSet that controls them.
    fn pod_map(&self, d: &Deployment, rss: &[ReplicaSet]) -> HashMap<String, Vec<Arc<Pod>>> {
        let ns = d.metadata.namespace.as_deref().unwrap_or("");
        let mut map: HashMap<String, Vec<Arc<Pod>>> = rss.iter().filter_map(|rs| rs.metadata.uid.clone()).map(|u| (u, Vec::new())).collect();
        for pod in self.ctx.pods.store().list_namespace(ns) {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            if !label_selector_matches(&spec(d).selector, &labels) {
                continue;
            }
            if let Some(r) = controller_ref(&pod.metadata) {
                if let Some(list) = map.get_mut(&r.uid) {
                    list.push(pod);
                }
            }
        }
        map
    }

    /// Writes the Deployment's status (its resourceVersion is the precondition).
    async fn update_status(&self, d: &mut Deployment) -> Result<(), Error> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let updated = self.api(&ns).replace_status(name(&d.metadata), d).await?;
        *d = updated;
        Ok(())
    }

    /// Records the revision on the Deployment itself. The status subresource keeps
    /// metadata, so this is a separate metadata patch (it does not bump generation).
    async fn set_deployment_revision(&self, d: &mut Deployment, rev: &str) -> Result<(), Error> {
        if annotation(&d.metadata, REVISION_ANNOTATION) == Some(rev) {
            return Ok(());
        }
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: rev}}});
        let updated = self.api(&ns).patch(name(&d.metadata), PatchType::Merge, &patch).await?;
        d.metadata.annotations = updated.metadata.annotations;
        d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), Error> {
        if !has_progress_deadline(d) {
            return Ok(());
        }
        let cur = d.status.as_ref().and_then(|s| condition(s, PROGRESSING)).and_then(|c| c.reason.clone());
        if cur.as_deref() == Some(TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_exists = cur.as_deref() == Some(PAUSED_REASON);
        let now = Timestamp::now();
        let cond = if is_paused(d) && !paused_exists {
            new_condition(PROGRESSING, "Unknown", PAUSED_REASON, "Deployment is paused", now)
        } else if !is_paused(d) && paused_exists {
            new_condition(PROGRESSING, "Unknown", RESUMED_REASON, "Deployment is resumed", now)
        } else {
            return Ok(());
        };
        set_condition(d.status.get_or_insert_with(Default::default), cond);
        self.update_status(d).await
    }

    /// Upstream `isScalingEvent`: an active ReplicaSet was scaled for another size.
    async fn is_scaling_event(&self, d: &mut Deployment, rs_list: &[ReplicaSet]) -> Result<bool, Error> {
        let (new_rs, old) = self.all_replica_sets_and_sync_revision(d, rs_list, false).await?;
        let all = with_new(old, new_rs.as_ref());
        Ok(active(&all).iter().any(|rs| {
            annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION).and_then(|v| v.parse::<i32>().ok()).is_some_and(|desired| desired != replicas(d))
        }))
    }

    /// The new ReplicaSet (created if asked and missing) and all old ones, with
    /// the revisions brought up to date.
    async fn all_replica_sets_and_sync_revision(
        &self,
        d: &mut Deployment,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let old = find_old_replica_sets(d, rs_list);
        let new_rs = self.new_replica_set(d, rs_list, &old, create).await?;
        Ok((new_rs, old))
    }

    /// Upstream `getNewReplicaSet`.
    async fn new_replica_set(&self, d: &mut Deployment, rs_list: &[ReplicaSet], old: &[ReplicaSet], create: bool) -> Result<Option<ReplicaSet>, Error> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let new_revision = max_revision(old) + 1;
        let now = Timestamp::now();
        if let Some(existing) = find_new_replica_set(d, rs_list) {
            let mut rs = existing.clone();
            let annotations_changed = set_new_replica_set_annotations(d, &mut rs, new_revision, true);
            let rs_spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_changed = rs_spec.min_ready_seconds.unwrap_or(0) != min_ready_seconds(d);
            if annotations_changed || min_ready_changed {
                rs_spec.min_ready_seconds = Some(min_ready_seconds(d));
                let updated = self.rs_api(&ns).replace(name(&rs.metadata), &rs).await?;
                return Ok(Some(updated));
            }
            let rev = annotation(&rs.metadata, REVISION_ANNOTATION).unwrap_or("").to_string();
            self.set_deployment_revision(d, &rev).await?;
            let deadline = has_progress_deadline(d);
            let status = d.status.get_or_insert_with(Default::default);
            if deadline && condition(status, PROGRESSING).is_none() {
                let msg = format!("Found new replica set \"{}\"", name(&rs.metadata));
                set_condition(status, new_condition(PROGRESSING, "True", FOUND_NEW_RS_REASON, &msg, now));
                self.update_status(d).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }

        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = spec(d).template.clone();
        let hash = compute_hash(&template, collision_count);
        template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector: LabelSelector = spec(d).selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let rs_name = format!("{}-{hash}", name(&d.metadata));
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![new_controller_ref("Deployment", "apps/v1", name(&d.metadata), d.metadata.uid.as_deref().unwrap_or(""))]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(0), min_ready_seconds: Some(min_ready_seconds(d)), selector, template: Some(template) }),
            status: None,
        };
        let mut all: Vec<ReplicaSet> = old.to_vec();
        all.push(new_rs.clone());
        let new_replicas = new_rs_new_replicas(d, &all, &new_rs);
        set_rs_replicas(&mut new_rs, new_replicas);
        set_new_replica_set_annotations(d, &mut new_rs, new_revision, false);

        let created = match self.rs_api(&ns).create(&new_rs).await {
            Ok(rs) => {
                if new_replicas > 0 {
                    let msg = format!("Scaled up replica set {rs_name} from 0 to {new_replicas}");
                    self.recorder.record(&*d, EventType::Normal, "ScalingReplicaSet", &msg);
                }
                Some(rs)
            }
            Err(e) if e.reason() == Some("AlreadyExists") => {
                let existing = self.rs_api(&ns).get(&rs_name).await?;
                let ours = controller_ref(&existing.metadata).is_some_and(|r| Some(r.uid.as_str()) == d.metadata.uid.as_deref());
                let same = existing.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &spec(d).template));
                if !(ours && same) {
                    // Another template hashed to this name: try the next hash.
                    let status = d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.update_status(d).await?;
                    return Err(Error::HashCollision(rs_name));
                }
                // Our own ReplicaSet from an earlier sync the cache has not shown yet.
                let rev = annotation(&existing.metadata, REVISION_ANNOTATION).unwrap_or("").to_string();
                self.set_deployment_revision(d, &rev).await?;
                return Ok(Some(existing));
            }
            Err(e) if is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!("Failed to create new replica set \"{rs_name}\": {e}");
                if has_progress_deadline(d) {
                    set_condition(d.status.get_or_insert_with(Default::default), new_condition(PROGRESSING, "False", FAILED_RS_CREATE_REASON, &msg, now));
                    let _ = self.update_status(d).await;
                }
                self.recorder.record(&*d, EventType::Warning, FAILED_RS_CREATE_REASON, &msg);
                return Err(e.into());
            }
        };
        self.set_deployment_revision(d, &new_revision.to_string()).await?;
        if has_progress_deadline(d) {
            let msg = format!("Created new replica set \"{rs_name}\"");
            set_condition(d.status.get_or_insert_with(Default::default), new_condition(PROGRESSING, "True", NEW_RS_REASON, &msg, now));
            self.update_status(d).await?;
        }
        Ok(created)
    }

    /// Scales a ReplicaSet, keeping its replica annotations current; records
    /// `ScalingReplicaSet` when the size changed. Returns the updated object.
    async fn scale_replica_set(&self, rs: &ReplicaSet, new_scale: i32, d: &Deployment, op: &str) -> Result<(bool, ReplicaSet), Error> {
        let old_scale = rs_replicas(rs);
        let size_changes = old_scale != new_scale;
        let mut copy = rs.clone();
        let annotations_change = set_replicas_annotations(&mut copy, replicas(d), replicas(d) + max_surge(d));
        if !size_changes && !annotations_change {
            return Ok((false, rs.clone()));
        }
        set_rs_replicas(&mut copy, new_scale);
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let updated = self.rs_api(&ns).replace(name(&rs.metadata), &copy).await?;
        if size_changes {
            let msg = format!("Scaled {op} replica set {} from {old_scale} to {new_scale}", name(&rs.metadata));
            self.recorder.record(d, EventType::Normal, "ScalingReplicaSet", &msg);
        }
        Ok((size_changes, updated))
    }

    async fn scale_and_record(&self, rs: &ReplicaSet, new_scale: i32, d: &Deployment) -> Result<(bool, ReplicaSet), Error> {
        if rs_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        let op = if rs_replicas(rs) < new_scale { "up" } else { "down" };
        self.scale_replica_set(rs, new_scale, d, op).await
    }

    /// Upstream `scale`: a scaling event (or a paused Deployment).
    async fn scale(&self, d: &Deployment, new_rs: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        if let Some(rs) = find_active_or_latest(new_rs, old) {
            if rs_replicas(&rs) != replicas(d) {
                self.scale_and_record(&rs, replicas(d), d).await?;
            }
            return Ok(());
        }
        if let Some(new_rs) = new_rs {
            if is_saturated(d, new_rs) {
                for rs in active(old) {
                    self.scale_and_record(&rs, 0, d).await?;
                }
                return Ok(());
            }
        }
        if is_rolling_update(d) {
            let all = active(&with_new(old.to_vec(), new_rs));
            let (sizes, op) = proportional_sizes(d, &all);
            for (rs_name, size) in sizes {
                if let Some(rs) = all.iter().find(|rs| name(&rs.metadata) == rs_name) {
                    self.scale_replica_set(rs, size, d, op).await?;
                }
            }
        }
        Ok(())
    }

    /// Upstream `sync`: scaling and paused Deployments.
    async fn sync_scale(&self, d: &mut Deployment, rs_list: &[ReplicaSet]) -> Result<Option<Duration>, Error> {
        let (new_rs, old) = self.all_replica_sets_and_sync_revision(d, rs_list, false).await?;
        self.scale(d, new_rs.as_ref(), &old).await?;
        if is_paused(d) {
            self.cleanup(d, &old).await?;
        }
        let all = with_new(old, new_rs.as_ref());
        self.sync_deployment_status(d, &all, new_rs.as_ref()).await
    }

    async fn sync_deployment_status(&self, d: &mut Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Result<Option<Duration>, Error> {
        let status = calculate_status(all, new_rs, d, Timestamp::now());
        if !same_status(d.status.as_ref(), &status) {
            d.status = Some(status);
            self.update_status(d).await?;
        }
        Ok(None)
    }

    async fn sync_rollout_status(&self, d: &mut Deployment, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Result<Option<Duration>, Error> {
        let now = Timestamp::now();
        let status = rollout_status(d, all, new_rs, now);
        if same_status(d.status.as_ref(), &status) {
            return Ok(requeue_stuck_after(d, &status, now));
        }
        d.status = Some(status);
        self.update_status(d).await?;
        Ok(None)
    }

    async fn rollout_rolling(&self, d: &mut Deployment, rs_list: &[ReplicaSet]) -> Result<Option<Duration>, Error> {
        let (new_rs, old) = self.all_replica_sets_and_sync_revision(d, rs_list, true).await?;
        let Some(new_rs) = new_rs else { return Ok(None) };
        let all = with_new(old.clone(), Some(&new_rs));

        // Scale up, if we can.
        let (scaled_up, new_rs) = self.reconcile_new_replica_set(&all, &new_rs, d).await?;
        if scaled_up {
            let all = with_new(old.clone(), Some(&new_rs));
            return self.sync_rollout_status(d, &all, Some(&new_rs)).await;
        }
        // Scale down, if we can.
        let steps = plan_old_scale_down(d, &all, &active(&old), &new_rs);
        if !steps.is_empty() {
            let mut current: HashMap<String, ReplicaSet> = old.iter().map(|rs| (name(&rs.metadata).to_string(), rs.clone())).collect();
            let mut scaled = false;
            for (rs_name, size) in steps {
                let Some(rs) = current.get(&rs_name).cloned() else { continue };
                let (changed, updated) = self.scale_and_record(&rs, size, d).await?;
                scaled |= changed;
                current.insert(rs_name, updated);
            }
            if scaled {
                return self.sync_rollout_status(d, &all, Some(&new_rs)).await;
            }
        }
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, &all, Some(&new_rs)).await
    }

    async fn reconcile_new_replica_set(&self, all: &[ReplicaSet], new_rs: &ReplicaSet, d: &Deployment) -> Result<(bool, ReplicaSet), Error> {
        let desired = replicas(d);
        if rs_replicas(new_rs) == desired {
            return Ok((false, new_rs.clone()));
        }
        if rs_replicas(new_rs) > desired {
            return self.scale_and_record(new_rs, desired, d).await;
        }
        let count = new_rs_new_replicas(d, all, new_rs);
        self.scale_and_record(new_rs, count, d).await
    }

    async fn rollout_recreate(&self, d: &mut Deployment, rs_list: &[ReplicaSet]) -> Result<Option<Duration>, Error> {
        // No new ReplicaSet yet: never scale up before the old pods are gone.
        let (mut new_rs, mut old) = self.all_replica_sets_and_sync_revision(d, rs_list, false).await?;
        let all = with_new(old.clone(), new_rs.as_ref());

        let mut scaled_down = false;
        for rs in active(&old) {
            let (changed, _) = self.scale_and_record(&rs, 0, d).await?;
            scaled_down |= changed;
        }
        if scaled_down {
            return self.sync_rollout_status(d, &all, new_rs.as_ref()).await;
        }
        if self.old_pods_running(d, new_rs.as_ref(), &old, rs_list) {
            return self.sync_rollout_status(d, &all, new_rs.as_ref()).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self.all_replica_sets_and_sync_revision(d, rs_list, true).await?;
        }
        let Some(rs) = new_rs.clone() else { return Ok(None) };
        let (_, rs) = self.scale_and_record(&rs, replicas(d), d).await?;
        if deployment_complete(d, &d.status.clone().unwrap_or_default()) {
            self.cleanup(d, &old).await?;
        }
        let all = with_new(old, Some(&rs));
        self.sync_rollout_status(d, &all, Some(&rs)).await
    }

    /// Whether pods of old ReplicaSets still run (upstream `oldPodsRunning`).
    fn old_pods_running(&self, d: &Deployment, new_rs: Option<&ReplicaSet>, old: &[ReplicaSet], rs_list: &[ReplicaSet]) -> bool {
        if old.iter().map(rs_status_replicas).sum::<i32>() > 0 {
            return true;
        }
        let new_uid = new_rs.and_then(|rs| rs.metadata.uid.clone());
        self.pod_map(d, rs_list).into_iter().filter(|(uid, _)| Some(uid) != new_uid.as_ref()).any(|(_, pods)| {
            pods.iter().any(|p| !matches!(crate::podutil::pod_phase(p), "Succeeded" | "Failed"))
        })
    }

    /// Deletes the oldest ReplicaSets beyond `revisionHistoryLimit`, if scaled to
    /// zero and settled.
    async fn cleanup(&self, d: &Deployment, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = spec(d).revision_history_limit.filter(|l| *l != i32::MAX) else { return Ok(()) };
        let mut cleanable: Vec<&ReplicaSet> = old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| revision(&a.metadata).cmp(&revision(&b.metadata)).then_with(|| by_creation(a, b)));
        for rs in cleanable.into_iter().take(diff as usize) {
            let settled = rs_status_replicas(rs) == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if !settled {
                continue;
            }
            let ns = rs.metadata.namespace.clone().unwrap_or_default();
            let params = DeleteParams { precondition_uid: rs.metadata.uid.clone(), ..Default::default() };
            match self.rs_api(&ns).delete(name(&rs.metadata), &params).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn with_new(mut old: Vec<ReplicaSet>, new_rs: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
    old.extend(new_rs.cloned());
    old
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment};
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    /// A Deployment builder.
    struct MakeDeployment(Deployment);

    impl MakeDeployment {
        fn new(replicas: i32) -> MakeDeployment {
            MakeDeployment(Deployment {
                metadata: ObjectMeta { name: Some("web".into()), namespace: Some("ns".into()), uid: Some("d-uid".into()), generation: Some(1), ..Default::default() },
                spec: Some(DeploymentSpec {
                    replicas: Some(replicas),
                    progress_deadline_seconds: Some(600),
                    revision_history_limit: Some(10),
                    strategy: Some(DeploymentStrategy {
                        type_: Some("RollingUpdate".into()),
                        rolling_update: Some(RollingUpdateDeployment { max_surge: Some(pct("25%")), max_unavailable: Some(pct("25%")) }),
                    }),
                    template: template("nginx:1"),
                    ..Default::default()
                }),
                status: None,
            })
        }
        fn surge(mut self, surge: IntOrString, unavailable: IntOrString) -> Self {
            let s = self.0.spec.as_mut().unwrap().strategy.as_mut().unwrap();
            s.rolling_update = Some(RollingUpdateDeployment { max_surge: Some(surge), max_unavailable: Some(unavailable) });
            self
        }
        fn status_replicas(mut self, n: i32) -> Self {
            self.0.status = Some(DeploymentStatus { replicas: Some(n), ..Default::default() });
            self
        }
        fn obj(self) -> Deployment {
            self.0
        }
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() }),
            spec: Some(PodSpec { containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }], ..Default::default() }),
        }
    }

    /// A ReplicaSet with `spec` replicas, `available` of them available, created at `created`.
    fn rs(name: &str, spec: i32, available: i32, created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { name: Some(name.into()), uid: Some(format!("uid-{name}")), creation_timestamp: Some(Time(ts(created))), ..Default::default() },
            spec: Some(ReplicaSetSpec { replicas: Some(spec), template: Some(template("nginx:1")), ..Default::default() }),
            status: Some(ReplicaSetStatus { replicas: spec, available_replicas: Some(available), ready_replicas: Some(available), ..Default::default() }),
        }
    }

    fn with_max_replicas(mut rs: ReplicaSet, max: i32) -> ReplicaSet {
        rs.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(MAX_REPLICAS_ANNOTATION.into(), max.to_string());
        rs
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        assert_eq!(resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10).unwrap(), (3, 2));
        assert_eq!(resolve_fenceposts(Some(&pct("10%")), Some(&pct("10%")), 5).unwrap(), (1, 0));
        assert_eq!(resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 10).unwrap(), (2, 1));
        assert_eq!(resolve_fenceposts(Some(&pct("0%")), Some(&pct("0%")), 10).unwrap(), (0, 1), "both zero: one may be unavailable");
        assert_eq!(resolve_fenceposts(Some(&pct("1%")), Some(&pct("1%")), 1).unwrap(), (1, 0));
        assert_eq!(resolve_fenceposts(None, None, 3).unwrap(), (0, 1));
        assert_eq!(resolve_fenceposts(Some(&pct("x%")), None, 3), Err(IntOrPercentError("x%".into())));
    }

    #[test]
    fn max_unavailable_is_capped_by_replicas_and_zero_for_recreate() {
        let d = MakeDeployment::new(2).surge(IntOrString::Int(0), IntOrString::Int(5)).obj();
        assert_eq!(max_unavailable(&d), 2);
        let mut d = MakeDeployment::new(4).obj();
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }

    #[test]
    fn the_new_replica_set_grows_within_max_surge() {
        let d = MakeDeployment::new(10).surge(IntOrString::Int(2), IntOrString::Int(1)).obj();
        let old = rs("old", 10, 10, 1);
        let new = rs("new", 0, 0, 2);
        assert_eq!(new_rs_new_replicas(&d, &[old.clone(), new.clone()], &new), 2);
        // Old scaled down to 9 but its pods not deleted yet: no room until they are.
        let mut old9 = old.clone();
        set_rs_replicas(&mut old9, 9);
        let new2 = rs("new", 2, 0, 2);
        assert_eq!(new_rs_new_replicas(&d, &[old9.clone(), new2.clone()], &new2), 2);
        old9.status.as_mut().unwrap().replicas = 9;
        assert_eq!(new_rs_new_replicas(&d, &[old9, new2.clone()], &new2), 3);
    }

    #[test]
    fn old_replica_sets_scale_down_only_to_the_minimum_availability() {
        let d = MakeDeployment::new(10).surge(IntOrString::Int(2), IntOrString::Int(1)).obj();
        let old = rs("old", 10, 10, 1);
        let new = rs("new", 2, 0, 2);
        let all = vec![old.clone(), new.clone()];
        // 12 pods, 10 available, 9 needed, 2 new ones unavailable: one may go.
        assert_eq!(plan_old_scale_down(&d, &all, std::slice::from_ref(&old), &new), vec![("old".to_string(), 9)]);
        // Two new pods became available: scale down by two more (11 pods, 11 available).
        let old9 = rs("old", 9, 9, 1);
        let new_ready = rs("new", 2, 2, 2);
        assert_eq!(plan_old_scale_down(&d, &[old9.clone(), new_ready.clone()], std::slice::from_ref(&old9), &new_ready), vec![("old".to_string(), 7)]);
        // A stale availability above the lowered size does not count.
        let mut stale = rs("old", 9, 10, 1);
        stale.status.as_mut().unwrap().replicas = 10;
        assert_eq!(plan_old_scale_down(&d, &[stale.clone(), new_ready.clone()], &[stale], &new_ready), vec![("old".to_string(), 7)]);
    }

    #[test]
    fn unhealthy_old_replicas_are_removed_first() {
        let d = MakeDeployment::new(10).surge(IntOrString::Int(2), IntOrString::Int(1)).obj();
        let broken = rs("broken", 4, 0, 1);
        let good = rs("good", 6, 6, 2);
        let new = rs("new", 2, 2, 3);
        let all = vec![broken.clone(), good.clone(), new.clone()];
        let steps = plan_old_scale_down(&d, &all, &[broken, good], &new);
        // max scaled down = 12 - 9 - 0 = 3 unhealthy first; then available 8 < 9 so nothing more.
        assert_eq!(steps, vec![("broken".to_string(), 1)]);
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // Upstream's example: 10 replicas, maxSurge 3, old 8 + new 5 = 13; scaled to 15.
        let d = MakeDeployment::new(15).surge(IntOrString::Int(3), IntOrString::Int(2)).status_replicas(13).obj();
        let old = with_max_replicas(rs("old", 8, 8, 1), 13);
        let new = with_max_replicas(rs("new", 5, 0, 2), 13);
        let (sizes, op) = proportional_sizes(&d, &[old, new]);
        assert_eq!(op, "up");
        // allowed 18, add 5: old 8*18/13 = 11.08 -> +3, new 5*18/13 = 6.9 -> +2.
        assert_eq!(sizes, vec![("old".to_string(), 11), ("new".to_string(), 7)]);

        let d = MakeDeployment::new(5).surge(IntOrString::Int(3), IntOrString::Int(2)).status_replicas(13).obj();
        let old = with_max_replicas(rs("old", 8, 8, 1), 13);
        let new = with_max_replicas(rs("new", 5, 0, 2), 13);
        let (sizes, op) = proportional_sizes(&d, &[old, new]);
        assert_eq!(op, "down");
        // allowed 8, remove 5: old 8*8/13 = 4.9 -> -3, new 5*8/13 = 3.08 -> -2.
        assert_eq!(sizes, vec![("old".to_string(), 5), ("new".to_string(), 3)]);
        assert_eq!(sizes.iter().map(|s| s.1).sum::<i32>(), 8);
    }

    #[test]
    fn rounding_leftovers_go_to_the_largest_replica_set() {
        let d = MakeDeployment::new(12).surge(IntOrString::Int(0), IntOrString::Int(1)).status_replicas(9).obj();
        let rss = [with_max_replicas(rs("a", 3, 3, 1), 9), with_max_replicas(rs("b", 3, 3, 2), 9), with_max_replicas(rs("c", 3, 3, 3), 9)];
        let (sizes, _) = proportional_sizes(&d, &rss);
        assert_eq!(sizes.iter().map(|s| s.1).sum::<i32>(), 12);
        // Equal sizes: newest first when scaling up.
        assert_eq!(sizes[0].0, "c");
    }

    #[test]
    fn revisions_increase_and_returning_replica_sets_keep_their_history() {
        let d = MakeDeployment::new(3).obj();
        let mut fresh = rs("new", 0, 0, 1);
        assert!(set_new_replica_set_annotations(&d, &mut fresh, 1, false));
        assert_eq!(revision(&fresh.metadata), 1);
        assert_eq!(annotation(&fresh.metadata, DESIRED_REPLICAS_ANNOTATION), Some("3"));
        assert_eq!(annotation(&fresh.metadata, MAX_REPLICAS_ANNOTATION), Some("4"));
        assert_eq!(annotation(&fresh.metadata, REVISION_HISTORY_ANNOTATION), None);

        // Rolled back to: revision 1 becomes 3, with 1 in its history; then 5 keeps "1,3".
        assert!(set_new_replica_set_annotations(&d, &mut fresh, 3, true));
        assert_eq!(revision(&fresh.metadata), 3);
        assert_eq!(annotation(&fresh.metadata, REVISION_HISTORY_ANNOTATION), Some("1"));
        assert!(set_new_replica_set_annotations(&d, &mut fresh, 5, true));
        assert_eq!(annotation(&fresh.metadata, REVISION_HISTORY_ANNOTATION), Some("1,3"));
        // Nothing new: no change.
        assert!(!set_new_replica_set_annotations(&d, &mut fresh, 5, true));
        assert!(!set_new_replica_set_annotations(&d, &mut fresh, 2, true));
        assert_eq!(revision(&fresh.metadata), 5);
        assert_eq!(max_revision(&[rs("x", 0, 0, 0), fresh]), 5);
    }

    #[test]
    fn deployment_annotations_are_copied_except_bookkeeping_ones() {
        let mut d = MakeDeployment::new(1).obj();
        d.metadata.annotations = Some(
            [("kubernetes.io/change-cause", "kubectl set image"), (REVISION_ANNOTATION, "7"), (LAST_APPLIED_ANNOTATION, "{}")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut r = rs("new", 0, 0, 1);
        set_new_replica_set_annotations(&d, &mut r, 2, false);
        let a = r.metadata.annotations.unwrap();
        assert_eq!(a.get("kubernetes.io/change-cause").map(String::as_str), Some("kubectl set image"));
        assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("2"));
        assert!(!a.contains_key(LAST_APPLIED_ANNOTATION));
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let d = MakeDeployment::new(1).obj();
        let mut t = template("nginx:1");
        t.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH_LABEL.into(), "abc".into());
        t.spec.as_mut().unwrap().volumes = Some(vec![]);
        assert!(equal_ignore_hash(&t, &spec(&d).template));
        assert!(!equal_ignore_hash(&template("nginx:2"), &spec(&d).template));
        let mut old = rs("old", 0, 0, 1);
        old.spec.as_mut().unwrap().template = Some(template("nginx:2"));
        let mut cur = rs("cur", 0, 0, 2);
        cur.spec.as_mut().unwrap().template = Some(t);
        let list = [old, cur];
        assert_eq!(find_new_replica_set(&d, &list).map(|rs| name(&rs.metadata)), Some("cur"));
        assert_eq!(find_old_replica_sets(&d, &list).len(), 1);
    }

    #[test]
    fn status_sums_replica_sets_and_sets_availability() {
        let d = MakeDeployment::new(10).surge(IntOrString::Int(2), IntOrString::Int(1)).obj();
        let old = rs("old", 8, 8, 1);
        let new = rs("new", 4, 2, 2);
        let st = calculate_status(&[old.clone(), new.clone()], Some(&new), &d, ts(100));
        assert_eq!(st.replicas, Some(12));
        assert_eq!(st.updated_replicas, Some(4));
        assert_eq!(st.available_replicas, Some(10));
        assert_eq!(st.unavailable_replicas, Some(2));
        assert_eq!(st.observed_generation, Some(1));
        let avail = condition(&st, AVAILABLE).unwrap();
        assert_eq!((avail.status.as_str(), avail.reason.as_deref()), ("True", Some(MIN_AVAILABLE_REASON)));

        let few = rs("old", 8, 6, 1);
        let st = calculate_status(&[few, new.clone()], Some(&new), &d, ts(100));
        assert_eq!(condition(&st, AVAILABLE).unwrap().reason.as_deref(), Some(MIN_UNAVAILABLE_REASON));
    }

    #[test]
    fn progressing_becomes_complete_then_stays_put() {
        let mut d = MakeDeployment::new(2).obj();
        d.status = Some(DeploymentStatus { replicas: Some(2), updated_replicas: Some(1), ..Default::default() });
        let new = rs("web-abc", 2, 1, 2);
        let old = rs("web-old", 0, 0, 1);
        let st = rollout_status(&d, &[old.clone(), new.clone()], Some(&new), ts(100));
        let p = condition(&st, PROGRESSING).unwrap();
        assert_eq!((p.status.as_str(), p.reason.as_deref()), ("True", Some(RS_UPDATED_REASON)));
        assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-abc\" is progressing."));

        d.status = Some(st);
        let done = rs("web-abc", 2, 2, 2);
        let st = rollout_status(&d, &[old.clone(), done.clone()], Some(&done), ts(200));
        let p = condition(&st, PROGRESSING).unwrap();
        assert_eq!(p.reason.as_deref(), Some(NEW_RS_AVAILABLE_REASON));
        assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-abc\" has successfully progressed."));
        assert_eq!(p.last_transition_time, Some(Time(ts(100))), "status stayed True");
        assert_eq!(requeue_stuck_after(&d, &st, ts(200)), None);
    }

    #[test]
    fn a_stuck_rollout_times_out_after_the_progress_deadline() {
        let mut d = MakeDeployment::new(2).obj();
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
        let mut status = DeploymentStatus { replicas: Some(2), updated_replicas: Some(2), observed_generation: Some(1), ..Default::default() };
        set_condition(&mut status, new_condition(PROGRESSING, "True", RS_UPDATED_REASON, "x", ts(1_000)));
        d.status = Some(status);
        let stuck = rs("web-abc", 2, 0, 2);
        let st = rollout_status(&d, std::slice::from_ref(&stuck), Some(&stuck), ts(1_030));
        assert_eq!(condition(&st, PROGRESSING).unwrap().reason.as_deref(), Some(RS_UPDATED_REASON));
        assert_eq!(requeue_stuck_after(&d, &st, ts(1_030)), Some(Duration::from_secs(30)));
        let st = rollout_status(&d, std::slice::from_ref(&stuck), Some(&stuck), ts(1_061));
        let p = condition(&st, PROGRESSING).unwrap();
        assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some(TIMED_OUT_REASON)));
        assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-abc\" has timed out progressing."));
    }

    #[test]
    fn one_active_replica_set_takes_the_whole_scale() {
        let old = rs("old", 0, 0, 1);
        let new = rs("new", 3, 3, 2);
        assert_eq!(find_active_or_latest(Some(&new), std::slice::from_ref(&old)).map(|r| name(&r.metadata).to_string()), Some("new".into()));
        assert!(find_active_or_latest(Some(&new), &[rs("old", 1, 1, 1)]).is_none());
        assert_eq!(find_active_or_latest(None, &[old, rs("older", 0, 0, 0)]).map(|r| name(&r.metadata).to_string()), Some("old".into()));
    }
}
