//! The replicaset controller (upstream pkg/controller/replicaset): keeps
//! `spec.replicas` pods matching a ReplicaSet's selector, adopting orphans and
//! releasing pods that no longer match, creating in slow-start batches, deleting
//! the pods that matter least first, and reporting replicas, readiness and
//! availability in status.
//!
//! Expectations make it wait for its own creates and deletes to show up in the pod
//! informer before it counts again, so a slow watch never makes it over-create.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use skiff_client::{Api, DeleteParams, EventRecorder, EventType, InformerEvent, WorkQueue};

use crate::podutil::{
    adopt, claim_action, controller_ref, is_namespace_terminating, is_pod_active, is_pod_available, is_pod_ready, key_of,
    label_selector_matches, new_controller_ref, pod_from_template, release, run_workers, selector_is_empty, slow_start_batch,
    split_key, ClaimAction, Expectations,
};
use crate::Context;

/// The event source upstream uses.
pub const COMPONENT: &str = "replicaset-controller";
/// At most this many pods are created or deleted in one sync (upstream `BurstReplicas`).
const BURST_REPLICAS: usize = 500;
const WORKERS: usize = 5;
/// Annotation whose integer value makes a pod cheaper (lower) or dearer to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Why a sync failed; the key is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    /// The ReplicaSet changed identity or started deleting while pods were adopted.
    #[error("cannot adopt pods: {0}")]
    CannotAdopt(String),
}

/// Runs the controller until the future is dropped.
pub async fn run(ctx: Context) {
    let controller = ReplicaSetController { ctx: ctx.clone(), queue: WorkQueue::new(), expectations: Expectations::new(), recorder: ctx.recorder(COMPONENT) };
    controller.register_handlers();
    ctx.pods.wait_synced().await;
    ctx.replica_sets.wait_synced().await;
    let c = controller.clone();
    run_workers(COMPONENT, controller.queue.clone(), WORKERS, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    })
    .await;
}

// === impl ReplicaSetController ===

#[derive(Clone)]
struct ReplicaSetController {
    ctx: Context,
    queue: WorkQueue<String>,
    expectations: Expectations,
    recorder: EventRecorder,
}

impl ReplicaSetController {
    fn register_handlers(&self) {
        let c = self.clone();
        self.ctx.replica_sets.on_event(Arc::new(move |ev: &InformerEvent<ReplicaSet>| match ev {
            InformerEvent::Applied { new, .. } => c.queue.add(key_of(&new.metadata)),
            InformerEvent::Deleted(rs) => {
                let key = key_of(&rs.metadata);
                c.expectations.delete(&key);
                c.queue.add(key);
            }
        }));
        let c = self.clone();
        self.ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| match ev {
            InformerEvent::Applied { old: None, new } => c.pod_added(new),
            InformerEvent::Applied { old: Some(old), new } => c.pod_updated(old, new),
            InformerEvent::Deleted(pod) => c.pod_deleted(pod),
        }));
    }

    /// The ReplicaSet a controller reference points to, if it exists with that uid.
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<ReplicaSet>> {
        if r.kind != "ReplicaSet" || !r.api_version.starts_with("apps/") {
            return None;
        }
        self.ctx.replica_sets.store().get(namespace, &r.name).filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    /// ReplicaSets whose selector selects an orphan pod.
    fn selecting(&self, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.ctx
            .replica_sets
            .store()
            .list_namespace(ns)
            .into_iter()
            .filter(|rs| rs.spec.as_ref().is_some_and(|s| !selector_is_empty(&s.selector) && label_selector_matches(&s.selector, &labels)))
            .collect()
    }

    fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            // Seen for the first time while already deleting (a relist): a deletion.
            self.pod_deleted(pod);
            return;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        if let Some(r) = controller_ref(&pod.metadata) {
            if let Some(rs) = self.resolve(ns, r) {
                let key = key_of(&rs.metadata);
                self.expectations.creation_observed(&key);
                self.queue.add(key);
            }
            return;
        }
        for rs in self.selecting(pod) {
            self.queue.add(key_of(&rs.metadata));
        }
    }

    fn pod_updated(&self, old: &Pod, cur: &Pod) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let labels_changed = old.metadata.labels != cur.metadata.labels;
        if cur.metadata.deletion_timestamp.is_some() {
            self.pod_deleted(cur);
            if labels_changed {
                self.pod_deleted(old);
            }
            return;
        }
        let ns = cur.metadata.namespace.as_deref().unwrap_or("");
        let cur_ref = controller_ref(&cur.metadata);
        let old_ref = controller_ref(&old.metadata);
        let ref_changed = cur_ref != old_ref;
        if ref_changed {
            if let Some(rs) = old_ref.and_then(|r| self.resolve(ns, r)) {
                self.queue.add(key_of(&rs.metadata));
            }
        }
        if let Some(r) = cur_ref {
            if let Some(rs) = self.resolve(ns, r) {
                let key = key_of(&rs.metadata);
                self.queue.add(key.clone());
                let min_ready = min_ready_seconds(&rs);
                if min_ready > 0 && !is_pod_ready(old) && is_pod_ready(cur) {
                    self.queue.add_after(key, Duration::from_secs(min_ready as u64 + 1));
                }
            }
            return;
        }
        if labels_changed || ref_changed {
            for rs in self.selecting(cur) {
                self.queue.add(key_of(&rs.metadata));
            }
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let Some(rs) = controller_ref(&pod.metadata).and_then(|r| self.resolve(ns, r)) else { return };
        let key = key_of(&rs.metadata);
        self.expectations.pod_deletion_observed(&key, &key_of(&pod.metadata));
        self.queue.add(key);
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(rs) = self.ctx.replica_sets.store().get(ns, name) else {
            self.expectations.delete(key);
            return Ok(None);
        };
        let needs_sync = self.expectations.satisfied(key);
        let active: Vec<Arc<Pod>> = self.ctx.pods.store().list_namespace(ns).into_iter().filter(|p| is_pod_active(p)).collect();
        let pods = self.claim_pods(&rs, active).await?;

        let managed = if needs_sync && rs.metadata.deletion_timestamp.is_none() { self.manage_replicas(key, &rs, &pods).await } else { Ok(()) };
        let status = calculate_status(&rs, &pods, managed.as_ref().err().map(|e| e.to_string()).as_deref(), Timestamp::now());
        let updated = self.update_status(&rs, status).await?;
        managed?;

        let min_ready = min_ready_seconds(&rs);
        let st = updated.status.unwrap_or_default();
        if min_ready > 0 && st.ready_replicas.unwrap_or(0) == desired_replicas(&rs) && st.available_replicas.unwrap_or(0) != desired_replicas(&rs) {
            return Ok(Some(Duration::from_secs(min_ready as u64)));
        }
        Ok(None)
    }

    /// Adopts matching orphans and releases owned pods that no longer match;
    /// returns the pods that are ours.
    async fn claim_pods(&self, rs: &ReplicaSet, pods: Vec<Arc<Pod>>) -> Result<Vec<Arc<Pod>>, Error> {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(&self.ctx.client, &ns);
        let mut claimed = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        let mut first_err: Option<Error> = None;
        for pod in pods {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let selected = rs.spec.as_ref().is_some_and(|s| !selector_is_empty(&s.selector) && label_selector_matches(&s.selector, &labels));
            match claim_action(&pod.metadata, &uid, deleting, selected) {
                ClaimAction::Keep => claimed.push(pod),
                ClaimAction::Ignore => {}
                ClaimAction::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck(rs).await);
                    }
                    if let Some(Err(why)) = &can_adopt {
                        first_err.get_or_insert(Error::CannotAdopt(why.clone()));
                        continue;
                    }
                    let owner = new_controller_ref("ReplicaSet", "apps/v1", rs.metadata.name.as_deref().unwrap_or(""), &uid);
                    match adopt(&api, &pod.metadata, &owner).await {
                        Ok(adopted) => claimed.extend(adopted.map(Arc::new)),
                        Err(e) => {
                            first_err.get_or_insert(e.into());
                        }
                    }
                }
                ClaimAction::Release => {
                    if let Err(e) = release(&api, &pod.metadata, &uid).await {
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

    /// Adoption re-reads the ReplicaSet from the API (not the cache): a controller
    /// that is being deleted, or was replaced by a namesake, must not adopt.
    async fn recheck(&self, rs: &ReplicaSet) -> Result<(), String> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        let name = rs.metadata.name.as_deref().unwrap_or("");
        let api: Api<ReplicaSet> = Api::namespaced(&self.ctx.client, ns);
        let fresh = api.get(name).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != rs.metadata.uid {
            return Err(format!("original ReplicaSet {ns}/{name} is gone: got uid {:?}, wanted {:?}", fresh.metadata.uid, rs.metadata.uid));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!("{ns}/{name} has just been deleted"));
        }
        Ok(())
    }

    async fn manage_replicas(&self, key: &str, rs: &ReplicaSet, pods: &[Arc<Pod>]) -> Result<(), Error> {
        let desired = desired_replicas(rs) as i64;
        let diff = pods.len() as i64 - desired;
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let name = rs.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(&self.ctx.client, &ns);
        if diff < 0 {
            let count = ((-diff) as usize).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, count as i64);
            let owner = new_controller_ref("ReplicaSet", "apps/v1", &name, rs.metadata.uid.as_deref().unwrap_or(""));
            let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
            let pod = pod_from_template(&template, &ns, &format!("{name}-"), Some(owner));
            let (created, err) = slow_start_batch(count, 1, |_| {
                let (api, pod) = (api.clone(), &pod);
                async move {
                    match api.create(pod).await {
                        Ok(p) => {
                            let msg = format!("Created pod: {}", p.metadata.name.as_deref().unwrap_or(""));
                            self.recorder.record(rs, EventType::Normal, "SuccessfulCreate", &msg);
                            Ok(())
                        }
                        // Nothing can be created in a namespace on its way out; not a failure.
                        Err(e) if is_namespace_terminating(&e) => Ok(()),
                        Err(e) => {
                            self.recorder.record(rs, EventType::Warning, "FailedCreate", &format!("Error creating: {e}"));
                            Err(e)
                        }
                    }
                }
            })
            .await;
            // Creates that were never attempted (or failed) will never be observed.
            for _ in created..count {
                self.expectations.creation_observed(key);
            }
            if let Some(e) = err {
                return Err(e.into());
            }
        } else if diff > 0 {
            let count = (diff as usize).min(BURST_REPLICAS);
            let related = self.indirectly_related_pods(rs);
            let victims = pods_to_delete(pods, &related, count, Timestamp::now());
            let keys: Vec<String> = victims.iter().map(|p| key_of(&p.metadata)).collect();
            self.expectations.expect_pod_deletions(key, &keys);
            let results = futures::future::join_all(victims.iter().map(|pod| {
                let api = api.clone();
                async move {
                    let pod_name = pod.metadata.name.clone().unwrap_or_default();
                    match api.delete(&pod_name, &DeleteParams::default()).await {
                        Ok(()) => {
                            self.recorder.record(rs, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {pod_name}"));
                            Ok(())
                        }
                        Err(e) => {
                            // The informer will not see this deletion.
                            self.expectations.pod_deletion_observed(key, &key_of(&pod.metadata));
                            if e.is_not_found() {
                                Ok(())
                            } else {
                                self.recorder.record(rs, EventType::Warning, "FailedDelete", &format!("Error deleting: {e}"));
                                Err(e)
                            }
                        }
                    }
                }
            }))
            .await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Active pods of every ReplicaSet that shares this one's controller (the
    /// Deployment's other revisions): how crowded each node is for ranking.
    fn indirectly_related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        let mut uids: HashSet<String> = rs.metadata.uid.iter().cloned().collect();
        if let Some(owner) = controller_ref(&rs.metadata) {
            for other in self.ctx.replica_sets.store().list_namespace(ns) {
                if controller_ref(&other.metadata).is_some_and(|r| r.uid == owner.uid) {
                    uids.extend(other.metadata.uid.iter().cloned());
                }
            }
        }
        self.ctx
            .pods
            .store()
            .list_namespace(ns)
            .into_iter()
            .filter(|p| controller_ref(&p.metadata).is_some_and(|r| uids.contains(&r.uid)))
            .collect()
    }

    /// Writes status when it changed (with one re-read on conflict, as upstream).
    async fn update_status(&self, rs: &ReplicaSet, mut status: ReplicaSetStatus) -> Result<ReplicaSet, Error> {
        let current = rs.status.clone().unwrap_or_default();
        let generation = rs.metadata.generation.unwrap_or(0);
        if current.replicas == status.replicas
            && current.fully_labeled_replicas == status.fully_labeled_replicas
            && current.ready_replicas == status.ready_replicas
            && current.available_replicas == status.available_replicas
            && current.observed_generation == Some(generation)
            && current.conditions == status.conditions
        {
            return Ok(rs.clone());
        }
        status.observed_generation = Some(generation);
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        let name = rs.metadata.name.as_deref().unwrap_or("");
        let api: Api<ReplicaSet> = Api::namespaced(&self.ctx.client, ns);
        let mut obj = rs.clone();
        obj.status = Some(status.clone());
        match api.replace_status(name, &obj).await {
            Ok(updated) => Ok(updated),
            Err(e) if e.is_conflict() => {
                let mut fresh = api.get(name).await?;
                status.observed_generation = fresh.metadata.generation;
                fresh.status = Some(status);
                Ok(api.replace_status(name, &fresh).await?)
            }
            Err(e) => Err(e.into()),
        }
    }
}

// === status ===

/// `spec.minReadySeconds`, 0 when unset.
pub fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// `spec.replicas`, defaulted to 1 as the API does.
pub fn desired_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The status a ReplicaSet should have with these (claimed, active) pods
/// (upstream `calculateStatus`): counts, and a `ReplicaFailure` condition while
/// creating or deleting fails. `observedGeneration` is set when written.
pub fn calculate_status(rs: &ReplicaSet, pods: &[Arc<Pod>], manage_error: Option<&str>, now: Timestamp) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels: BTreeMap<String, String> =
        rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let min_ready = min_ready_seconds(rs);
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for pod in pods {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if template_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            fully_labeled += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(message) if !has_failure => {
            let diff = pods.len() as i64 - desired_replicas(rs) as i64;
            let reason = match diff.cmp(&0) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
    status.replicas = pods.len() as i32;
    // Zeroes are left out, as upstream's `omitempty` leaves them out on the wire.
    status.fully_labeled_replicas = crate::podutil::non_zero(fully_labeled);
    status.ready_replicas = crate::podutil::non_zero(ready);
    status.available_replicas = crate::podutil::non_zero(available);
    status
}

// === deletion ranking ===

fn phase_ordinal(pod: &Pod) -> u8 {
    match crate::podutil::pod_phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(POD_DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn ready_time(pod: &Pod) -> Option<Timestamp> {
    crate::podutil::pod_ready_since(pod).filter(|t| *t != Timestamp::UNIX_EPOCH)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0)).unwrap_or(0)
}

/// `t1` sorts first when it is later, or missing (upstream `afterOrZero`).
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (None, _) | (_, None) => t1.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

/// Compares ages on a log2 scale of nanoseconds, so pods of about the same age tie
/// (upstream `LogarithmicScaleDown`): negative when `t1` is younger.
fn logarithmic_rank_diff(t1: Timestamp, t2: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| {
        let d = now.as_nanosecond() - t.as_nanosecond();
        if d > 0 {
            (d as f64).log2() as i64
        } else {
            -1
        }
    };
    rank(t1) - rank(t2)
}

fn by_time(a: &Pod, b: &Pod, t1: Option<Timestamp>, t2: Option<Timestamp>, now: Timestamp) -> Option<Ordering> {
    if t1 == t2 {
        return None;
    }
    let (Some(x), Some(y)) = (t1, t2) else {
        return Some(if after_or_zero(t1, t2) { Ordering::Less } else { Ordering::Greater });
    };
    let diff = logarithmic_rank_diff(x, y, now);
    if diff == 0 {
        return Some(a.metadata.uid.cmp(&b.metadata.uid));
    }
    Some(if diff < 0 { Ordering::Less } else { Ordering::Greater })
}

/// Upstream `ActivePodsWithRanks.Less`: `Less` means delete first. `rank_*` is the
/// number of related pods on the pod's node.
pub fn deletion_order(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> Ordering {
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let (na, nb) = (node(a), node(b));
    // 1. Unassigned < assigned.
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() { Ordering::Less } else { Ordering::Greater };
    }
    // 2. Pending < Unknown < Running.
    let o = phase_ordinal(a).cmp(&phase_ordinal(b));
    if o != Ordering::Equal {
        return o;
    }
    // 3. Not ready < ready.
    let (ra, rb) = (is_pod_ready(a), is_pod_ready(b));
    if ra != rb {
        return if !ra { Ordering::Less } else { Ordering::Greater };
    }
    // 4. Lower deletion cost < higher.
    let o = deletion_cost(a).cmp(&deletion_cost(b));
    if o != Ordering::Equal {
        return o;
    }
    // 5. Doubled up (more related pods on the node) < not.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    // 6. Ready for less time < more time.
    if ra && rb {
        if let Some(o) = by_time(a, b, ready_time(a), ready_time(b), now) {
            return o;
        }
    }
    // 7. More restarts < fewer.
    let o = max_restarts(b).cmp(&max_restarts(a));
    if o != Ordering::Equal {
        return o;
    }
    // 8. Newer < older.
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    by_time(a, b, created(a), created(b), now).unwrap_or(Ordering::Equal)
}

/// The `count` pods to delete first (upstream `getPodsToDelete`): ranked when only
/// some go, by [`deletion_order`] with each pod's rank being how many active
/// `related` pods share its node.
pub fn pods_to_delete(pods: &[Arc<Pod>], related: &[Arc<Pod>], count: usize, now: Timestamp) -> Vec<Arc<Pod>> {
    let mut pods: Vec<Arc<Pod>> = pods.to_vec();
    if count < pods.len() {
        let mut on_node: HashMap<String, usize> = HashMap::new();
        for p in related.iter().filter(|p| is_pod_active(p)) {
            *on_node.entry(p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()).or_default() += 1;
        }
        let rank = |p: &Pod| on_node.get(p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")).copied().unwrap_or(0);
        pods.sort_by(|a, b| deletion_order(a, rank(a), b, rank(b), now));
    }
    pods.truncate(count);
    pods
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    /// A pod builder in the spirit of upstream's MakePod().
    struct MakePod(Pod);

    impl MakePod {
        fn new(name: &str) -> MakePod {
            MakePod(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some("ns".into()),
                    uid: Some(format!("uid-{name}")),
                    creation_timestamp: Some(Time(ts(1_000))),
                    labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                spec: Some(PodSpec::default()),
                status: Some(PodStatus { phase: Some("Pending".into()), ..Default::default() }),
            })
        }
        fn node(mut self, n: &str) -> Self {
            self.0.spec.as_mut().unwrap().node_name = Some(n.into());
            self
        }
        fn phase(mut self, p: &str) -> Self {
            self.0.status.as_mut().unwrap().phase = Some(p.into());
            self
        }
        fn ready_since(mut self, t: i64) -> Self {
            self.0.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(ts(t))),
                ..Default::default()
            }]);
            self
        }
        fn created(mut self, t: i64) -> Self {
            self.0.metadata.creation_timestamp = Some(Time(ts(t)));
            self
        }
        fn restarts(mut self, n: i32) -> Self {
            self.0.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus { restart_count: n, ..Default::default() }]);
            self
        }
        fn cost(mut self, c: i32) -> Self {
            self.0.metadata.annotations = Some([(POD_DELETION_COST.to_string(), c.to_string())].into());
            self
        }
        fn obj(self) -> Arc<Pod> {
            Arc::new(self.0)
        }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
    }

    fn order(pods: Vec<Arc<Pod>>, related: &[Arc<Pod>]) -> Vec<String> {
        let n = pods.len() - 1;
        let mut chosen = pods_to_delete(&pods, related, n, ts(100_000));
        // The survivor is the one not chosen; list the full order by asking for all but one.
        let survivor: Vec<_> = pods.iter().filter(|p| !chosen.iter().any(|c| Arc::ptr_eq(c, p))).cloned().collect();
        chosen.extend(survivor);
        names(&chosen).into_iter().map(String::from).collect()
    }

    #[test]
    fn unassigned_pending_and_unready_pods_are_deleted_first() {
        let pods = vec![
            MakePod::new("running-ready").node("n1").phase("Running").ready_since(50_000).obj(),
            MakePod::new("running").node("n1").phase("Running").obj(),
            MakePod::new("unknown").node("n1").phase("Unknown").obj(),
            MakePod::new("pending").node("n1").obj(),
            MakePod::new("unassigned").phase("Running").obj(),
        ];
        assert_eq!(order(pods, &[]), ["unassigned", "pending", "unknown", "running", "running-ready"]);
    }

    #[test]
    fn deletion_cost_then_crowded_nodes_then_readiness_age_decide_among_ready_pods() {
        let cheap = MakePod::new("cheap").node("n2").phase("Running").ready_since(10_000).cost(-5).obj();
        let crowded = MakePod::new("crowded").node("n1").phase("Running").ready_since(10_000).obj();
        let young = MakePod::new("young").node("n2").phase("Running").ready_since(99_990).obj();
        let old = MakePod::new("old").node("n3").phase("Running").ready_since(10_000).obj();
        let related = vec![crowded.clone(), MakePod::new("other").node("n1").phase("Running").obj()];
        let got = order(vec![old, young, crowded, cheap], &related);
        assert_eq!(got, ["cheap", "crowded", "young", "old"]);
    }

    #[test]
    fn restarts_then_newer_pods_break_ties() {
        let a = MakePod::new("a").node("n1").phase("Running").created(1_000).obj();
        let b = MakePod::new("b").node("n1").phase("Running").created(90_000).obj();
        let c = MakePod::new("c").node("n1").phase("Running").created(1_000).restarts(3).obj();
        assert_eq!(order(vec![a, b, c], &[]), ["c", "b", "a"]);
    }

    #[test]
    fn ages_within_the_same_power_of_two_tie() {
        // 100_000 - 99_000 = 1000 s and 100_000 - 99_100 = 900 s share log2 bucket 39 (ns).
        assert_eq!(logarithmic_rank_diff(ts(99_000), ts(99_100), ts(100_000)), 0);
        assert!(logarithmic_rank_diff(ts(99_900), ts(10_000), ts(100_000)) < 0);
    }

    #[test]
    fn all_pods_go_without_ranking_when_all_must_go() {
        let pods = vec![MakePod::new("a").obj(), MakePod::new("b").obj()];
        assert_eq!(names(&pods_to_delete(&pods, &[], 2, ts(0))), ["a", "b"]);
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("ns".into()), generation: Some(3), ..Default::default() },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "web".to_string()), ("tier".to_string(), "fe".to_string())].into()), ..Default::default() }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn status_counts_labelled_ready_and_available_pods() {
        let mut full = MakePod::new("full").phase("Running").ready_since(1_000).0;
        full.metadata.labels.as_mut().unwrap().insert("tier".into(), "fe".into());
        let pods = vec![Arc::new(full), MakePod::new("ready-late").phase("Running").ready_since(1_995).obj(), MakePod::new("pending").obj()];
        let st = calculate_status(&rs(3, 10), &pods, None, ts(2_000));
        assert_eq!((st.replicas, st.fully_labeled_replicas, st.ready_replicas, st.available_replicas), (3, Some(1), Some(2), Some(1)));
        assert_eq!(st.conditions, None);
        let st = calculate_status(&rs(3, 10), &[], None, ts(2_000));
        assert_eq!((st.replicas, st.fully_labeled_replicas, st.ready_replicas, st.available_replicas), (0, None, None, None));
    }

    #[test]
    fn create_failures_set_and_success_clears_the_replica_failure_condition() {
        let mut set = rs(3, 0);
        let st = calculate_status(&set, &[], Some("pods \"x\" is forbidden: exceeded quota"), ts(0));
        let c = &st.conditions.as_ref().unwrap()[0];
        assert_eq!((c.type_.as_str(), c.status.as_str(), c.reason.as_deref()), ("ReplicaFailure", "True", Some("FailedCreate")));
        set.status = Some(st);
        assert_eq!(calculate_status(&set, &[], None, ts(0)).conditions, None);
    }
}
