//! The disruption controller (upstream `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status current, which the `pods/eviction` subresource
//! consumes.
//!
//! For every budget: the pods its selector picks (`expectedPods`), how many of
//! them are ready (`currentHealthy`), how many must stay so (`desiredHealthy`,
//! from `minAvailable` or `maxUnavailable`; percentages, and `maxUnavailable`
//! always, are taken of the scale of the pods' controllers), how many may go
//! (`disruptionsAllowed`), and the `DisruptionAllowed` condition. Pods the
//! eviction subresource recorded in `disruptedPods` do not count as healthy for
//! two minutes; after that they are dropped from the map. When the status cannot
//! be computed, `disruptionsAllowed` falls to zero (fail safe).
//!
//! Pods with a `DisruptionTarget` condition that were not deleted within two
//! minutes get the condition reset, as upstream's stale-disruption handling does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;
use skiff_client::{Api, EventRecorder, EventType, InformerEvent, PatchType, WorkQueue};

use crate::podutil::{controller_ref, is_pod_ready, key_of, label_selector_matches, selector_is_empty, split_key};
use crate::Context;

/// How long a pod the eviction subresource approved may take to be deleted
/// before the budget counts it again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// How long a `DisruptionTarget` condition may stand on a pod that is not
/// being deleted.
pub const STALE_POD_DISRUPTION_TIMEOUT: Duration = Duration::from_secs(2 * 60);

const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
const WORKERS: usize = 2;

// === budget arithmetic ===

/// `intstr.GetScaledValueFromIntOrPercent`: an integer as is, a percentage of
/// `total` rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
            };
            let pct: i64 = number.parse().map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}: strconv.Atoi: parsing {number:?}: invalid syntax"))?;
            let scaled = pct * i64::from(total);
            let value = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            Ok(value as i32)
        }
    }
}

/// A controller of selected pods and its desired scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerScale {
    pub uid: String,
    pub scale: i32,
}

/// What the budget's pods expect: `expectedPods`, `desiredHealthy`, and the pods
/// without a controller, which percentages cannot account for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    pub expected: i32,
    pub desired_healthy: i32,
    pub unmanaged: Vec<String>,
}

/// Upstream `getExpectedPodCount`. `find_scale` resolves a pod's controller to
/// its scale: `Ok(None)` when that controller does not exist, `Err` when it
/// has no scale.
pub fn expected_pod_count(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    find_scale: impl Fn(&Pod, &OwnerReference) -> Result<Option<ControllerScale>, String>,
) -> Result<Expected, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let expected_scale = || -> Result<(i32, Vec<String>), String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(r) = controller_ref(&pod.metadata) else {
                unmanaged.push(name);
                continue;
            };
            if scales.contains_key(&r.uid) {
                continue;
            }
            match find_scale(pod, r)? {
                Some(c) => {
                    scales.insert(c.uid, c.scale);
                }
                None => return Err(format!("found no controllers for pod {name:?}")),
            }
        }
        Ok((scales.values().sum(), unmanaged))
    };
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale()?;
        let max = scaled_value(max_unavailable, expected, true)?;
        return Ok(Expected { expected, desired_healthy: (expected - max).max(0), unmanaged });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Expected { expected: pods.len() as i32, desired_healthy: *n, unmanaged: Vec::new() }),
        Some(min @ IntOrString::String(_)) => {
            let (expected, unmanaged) = expected_scale()?;
            Ok(Expected { expected, desired_healthy: scaled_value(min, expected, true)?, unmanaged })
        }
        None => Ok(Expected::default()),
    }
}

/// Upstream `buildDisruptedPodMap`: the recorded disruptions still pending
/// (pod present, not yet deleting, within [`DELETION_TIMEOUT`]), when to look
/// again, and the pods whose deletion never came.
pub fn disrupted_pods(pdb: &PodDisruptionBudget, pods: &[Arc<Pod>], now: Timestamp) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<Arc<Pod>>) {
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.clone()).unwrap_or_default();
    let mut result = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut not_deleted = Vec::new();
    if recorded.is_empty() {
        return (result, recheck, not_deleted);
    }
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = recorded.get(pod.metadata.name.as_deref().unwrap_or("")) else { continue };
        let expected = deadline(at.0, DELETION_TIMEOUT);
        if expected < now {
            not_deleted.push(pod.clone());
        } else {
            recheck = Some(recheck.map_or(expected, |r| r.min(expected)));
            result.insert(pod.metadata.name.clone().unwrap_or_default(), at.clone());
        }
    }
    (result, recheck, not_deleted)
}

fn deadline(at: Timestamp, after: Duration) -> Timestamp {
    at.checked_add((after.as_millis() as i64).milliseconds()).unwrap_or(at)
}

/// Upstream `countHealthyPods`: ready pods that are neither being deleted nor
/// recently approved for eviction.
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| disrupted.get(p.metadata.name.as_deref().unwrap_or("")).is_none_or(|t| deadline(t.0, DELETION_TIMEOUT) <= now))
        .filter(|p| is_pod_ready(p))
        .count() as i32
}

/// `apimeta.SetStatusCondition`: replaces the condition of the same type, moving
/// its transition time only when the status changes.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: Timestamp) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(c) => {
            if c.status != new.status {
                c.status = new.status;
                c.last_transition_time = Time(now);
            }
            c.reason = new.reason;
            c.message = new.message;
            c.observed_generation = new.observed_generation;
        }
        None => {
            new.last_transition_time = Time(now);
            conditions.push(new);
        }
    }
}

fn allowed_condition(allowed: bool, observed_generation: Option<i64>) -> Condition {
    Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: if allowed { "True" } else { "False" }.into(),
        reason: if allowed { "SufficientPods" } else { "InsufficientPods" }.into(),
        message: String::new(),
        observed_generation,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// Whether the `DisruptionAllowed` condition matches the status already
/// (upstream `ConditionsAreUpToDate`).
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = pdb.status.as_ref() else { return false };
    let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == DISRUPTION_ALLOWED) else { return false };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == "SufficientPods"
    } else {
        c.status == "False" && c.reason == "InsufficientPods"
    }
}

/// The status a budget should have (upstream `updatePdbStatus`), or `None` when
/// it has it already.
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    expected: &Expected,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = current_healthy - expected.desired_healthy;
    if expected.expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let disrupted_opt = (!disrupted.is_empty()).then_some(disrupted);
    if old.current_healthy == current_healthy
        && old.desired_healthy == expected.desired_healthy
        && old.expected_pods == expected.expected
        && old.disruptions_allowed == allowed
        && old.disrupted_pods.clone().filter(|m| !m.is_empty()) == disrupted_opt
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut conditions = old.conditions.unwrap_or_default();
    set_condition(&mut conditions, allowed_condition(allowed > 0, pdb.metadata.generation), now);
    Some(PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: expected.desired_healthy,
        expected_pods: expected.expected,
        disruptions_allowed: allowed,
        disrupted_pods: disrupted_opt,
        observed_generation: pdb.metadata.generation,
        conditions: Some(conditions),
    })
}

/// The pods a budget's selector picks; a missing or empty selector picks none.
pub fn pods_for_budget(pdb: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !selector_is_empty(s)) else { return Vec::new() };
    pods.iter().filter(|p| label_selector_matches(sel, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))).cloned().collect()
}

// === the controller ===

/// What a sync can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] skiff_client::Error),
    /// The budget's numbers could not be computed (the reason is upstream's).
    #[error("{0}")]
    Compute(String),
}

struct DisruptionController {
    ctx: Context,
    queue: WorkQueue<String>,
    /// Pods (`namespace/name`) whose `DisruptionTarget` condition may be stale.
    stale: WorkQueue<String>,
    recorder: EventRecorder,
}

/// Runs the disruption controller until dropped.
pub async fn run(ctx: Context) {
    let c = Arc::new(DisruptionController { queue: WorkQueue::new(), stale: WorkQueue::new(), recorder: ctx.recorder("controllermanager"), ctx });
    let queue = c.queue.clone();
    c.ctx.pdbs.on_event(Arc::new(move |ev: &InformerEvent<PodDisruptionBudget>| {
        let pdb = match ev {
            InformerEvent::Applied { new, .. } => new,
            InformerEvent::Deleted(old) => old,
        };
        queue.add(key_of(&pdb.metadata));
    }));
    let handler = c.clone();
    c.ctx.pods.on_event(Arc::new(move |ev: &InformerEvent<Pod>| match ev {
        InformerEvent::Applied { old, new } => {
            if let Some(old) = old {
                if old.metadata.labels != new.metadata.labels {
                    handler.enqueue_budgets_of(old);
                }
            }
            handler.enqueue_budgets_of(new);
            handler.check_stale_disruption(new);
        }
        InformerEvent::Deleted(old) => handler.enqueue_budgets_of(old),
    }));
    // A changed scale changes what percentages mean.
    let handler = c.clone();
    c.ctx.replica_sets.on_event(Arc::new(move |ev: &InformerEvent<ReplicaSet>| {
        if let InformerEvent::Applied { old: Some(old), new } = ev {
            if old.spec.as_ref().and_then(|s| s.replicas) != new.spec.as_ref().and_then(|s| s.replicas) {
                handler.enqueue_namespace(new.metadata.namespace.as_deref().unwrap_or(""));
            }
        }
    }));
    let handler = c.clone();
    c.ctx.deployments.on_event(Arc::new(move |ev: &InformerEvent<Deployment>| {
        if let InformerEvent::Applied { old: Some(old), new } = ev {
            if old.spec.as_ref().and_then(|s| s.replicas) != new.spec.as_ref().and_then(|s| s.replicas) {
                handler.enqueue_namespace(new.metadata.namespace.as_deref().unwrap_or(""));
            }
        }
    }));
    let handler = c.clone();
    c.ctx.stateful_sets.on_event(Arc::new(move |ev: &InformerEvent<StatefulSet>| {
        if let InformerEvent::Applied { old: Some(old), new } = ev {
            if old.spec.as_ref().and_then(|s| s.replicas) != new.spec.as_ref().and_then(|s| s.replicas) {
                handler.enqueue_namespace(new.metadata.namespace.as_deref().unwrap_or(""));
            }
        }
    }));
    c.ctx.pdbs.wait_synced().await;
    c.ctx.pods.wait_synced().await;
    c.ctx.replica_sets.wait_synced().await;
    c.ctx.deployments.wait_synced().await;
    c.ctx.stateful_sets.wait_synced().await;
    let mut tasks: Vec<_> = (0..WORKERS).map(|_| tokio::spawn(c.clone().worker())).collect();
    tasks.push(tokio::spawn(c.clone().stale_worker()));
    futures::future::join_all(tasks).await;
}

impl DisruptionController {
    fn enqueue_budgets_of(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if labels.is_empty() {
            return;
        }
        for pdb in self.ctx.pdbs.store().list_namespace(ns) {
            if pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !selector_is_empty(s) && label_selector_matches(s, &labels)) {
                self.queue.add(key_of(&pdb.metadata));
            }
        }
    }

    fn enqueue_namespace(&self, ns: &str) {
        for pdb in self.ctx.pdbs.store().list_namespace(ns) {
            self.queue.add(key_of(&pdb.metadata));
        }
    }

    fn check_stale_disruption(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        if let Some(since) = disruption_target_since(pod) {
            let due = deadline(since, STALE_POD_DISRUPTION_TIMEOUT);
            let wait = due.as_millisecond() - Timestamp::now().as_millisecond();
            self.stale.add_after(key_of(&pod.metadata), Duration::from_millis(wait.max(0) as u64));
        }
    }

    async fn worker(self: Arc<Self>) {
        while let Some(key) = self.queue.next().await {
            match self.sync(&key).await {
                Ok(recheck) => {
                    self.queue.forget(&key);
                    if let Some(after) = recheck {
                        self.queue.add_after(key.clone(), after);
                    }
                }
                Err(e) => {
                    tracing::debug!(pdb = %key, error = %e, "disruption budget sync failed; retrying");
                    self.queue.add_rate_limited(key.clone());
                }
            }
            self.queue.done(&key);
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(pdb) = self.ctx.pdbs.store().get(ns, name) else { return Ok(None) };
        match self.try_sync(&pdb).await {
            Ok(recheck) => Ok(recheck),
            Err(Error::Api(e)) if e.is_conflict() => Err(Error::Api(e)),
            Err(e) => {
                self.fail_safe(&pdb, &e.to_string()).await?;
                Err(e)
            }
        }
    }

    async fn try_sync(&self, pdb: &PodDisruptionBudget) -> Result<Option<Duration>, Error> {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        let pods = pods_for_budget(pdb, &self.ctx.pods.store().list_namespace(ns));
        if pods.is_empty() {
            self.recorder.record(pdb, EventType::Normal, "NoPods", "No matching pods found");
        }
        let expected = match expected_pod_count(pdb, &pods, |pod, r| self.find_scale(pod, r)) {
            Ok(e) => e,
            Err(e) => {
                let msg = format!("Failed to calculate the number of expected pods: {e}");
                self.recorder.record(pdb, EventType::Warning, "CalculateExpectedPodCountFailed", &msg);
                return Err(Error::Compute(e));
            }
        };
        if !expected.unmanaged.is_empty() {
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).map(crate::podutil::selector_string).unwrap_or_default();
            let msg = format!(
                "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
            );
            self.recorder.record(pdb, EventType::Warning, "UnmanagedPods", &msg);
        }
        let now = Timestamp::now();
        let (disrupted, recheck, not_deleted) = disrupted_pods(pdb, &pods, now);
        for pod in not_deleted {
            let msg = format!("Pod was expected by PDB {}/{} to be deleted but it wasn't", ns, pdb.metadata.name.as_deref().unwrap_or(""));
            self.recorder.record(&*pod, EventType::Warning, "NotDeleted", &msg);
        }
        let healthy = count_healthy(&pods, &disrupted, now);
        if let Some(status) = desired_status(pdb, healthy, &expected, disrupted, now) {
            let mut updated = pdb.clone();
            updated.status = Some(status);
            Api::<PodDisruptionBudget>::namespaced(&self.ctx.client, ns).replace_status(pdb.metadata.name.as_deref().unwrap_or(""), &updated).await?;
        }
        Ok(recheck.map(|at| Duration::from_millis((at.as_millisecond() - now.as_millisecond()).max(0) as u64)))
    }

    /// When the numbers cannot be computed, allow no disruption at all.
    async fn fail_safe(&self, pdb: &PodDisruptionBudget, reason: &str) -> Result<(), Error> {
        let mut updated = pdb.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        status.disruptions_allowed = 0;
        let observed = status.observed_generation;
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let failed = Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: "False".into(),
            reason: "SyncFailed".into(),
            message: reason.to_string(),
            observed_generation: observed,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        };
        set_condition(conditions, failed, Timestamp::now());
        if updated.status == pdb.status {
            return Ok(());
        }
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        Api::<PodDisruptionBudget>::namespaced(&self.ctx.client, ns).replace_status(pdb.metadata.name.as_deref().unwrap_or(""), &updated).await?;
        Ok(())
    }

    /// The finders of upstream: ReplicaSets (or their Deployment), Deployments
    /// and StatefulSets scale; other controllers do not.
    fn find_scale(&self, pod: &Pod, r: &OwnerReference) -> Result<Option<ControllerScale>, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let group = r.api_version.split_once('/').map_or("", |(g, _)| g);
        let scale = |replicas: Option<i32>| replicas.unwrap_or(1);
        match (group, r.kind.as_str()) {
            ("apps", "ReplicaSet") => {
                let Some(rs) = self.ctx.replica_sets.store().get(ns, &r.name).filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str())) else {
                    return Ok(None);
                };
                if let Some(d) = controller_ref(&rs.metadata).filter(|d| d.kind == "Deployment") {
                    if let Some(dep) = self.ctx.deployments.store().get(ns, &d.name).filter(|dep| dep.metadata.uid.as_deref() == Some(d.uid.as_str())) {
                        return Ok(Some(ControllerScale { uid: d.uid.clone(), scale: scale(dep.spec.as_ref().and_then(|s| s.replicas)) }));
                    }
                }
                Ok(Some(ControllerScale { uid: r.uid.clone(), scale: scale(rs.spec.as_ref().and_then(|s| s.replicas)) }))
            }
            ("apps", "Deployment") => Ok(self
                .ctx
                .deployments
                .store()
                .get(ns, &r.name)
                .filter(|d| d.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|d| ControllerScale { uid: r.uid.clone(), scale: scale(d.spec.as_ref().and_then(|s| s.replicas)) })),
            ("apps", "StatefulSet") => Ok(self
                .ctx
                .stateful_sets
                .store()
                .get(ns, &r.name)
                .filter(|s| s.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|s| ControllerScale { uid: r.uid.clone(), scale: scale(s.spec.as_ref().and_then(|s| s.replicas)) })),
            ("apps", "DaemonSet") => Err("daemonsets.apps does not implement the scale subresource".into()),
            ("batch", "Job") => Err("jobs.batch does not implement the scale subresource".into()),
            _ => Ok(None),
        }
    }

    async fn stale_worker(self: Arc<Self>) {
        while let Some(key) = self.stale.next().await {
            match self.sync_stale(&key).await {
                Ok(()) => self.stale.forget(&key),
                Err(e) => {
                    tracing::debug!(pod = %key, error = %e, "resetting a stale DisruptionTarget failed; retrying");
                    self.stale.add_rate_limited(key.clone());
                }
            }
            self.stale.done(&key);
        }
    }

    /// Resets a `DisruptionTarget` condition that has stood for two minutes on a
    /// pod nobody deleted.
    async fn sync_stale(&self, key: &str) -> Result<(), skiff_client::Error> {
        let (ns, name) = split_key(key);
        let Some(pod) = self.ctx.pods.store().get(ns, name) else { return Ok(()) };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(since) = disruption_target_since(&pod) else { return Ok(()) };
        let now = Timestamp::now();
        let due = deadline(since, STALE_POD_DISRUPTION_TIMEOUT);
        if due > now {
            self.stale.add_after(key.to_string(), Duration::from_millis((due.as_millisecond() - now.as_millisecond()) as u64));
            return Ok(());
        }
        let patch = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "False", "lastTransitionTime": Time(now)}]}});
        match Api::<Pod>::namespaced(&self.ctx.client, ns).patch_status(name, PatchType::StrategicMerge, &patch).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}

/// Since when a pod has had `DisruptionTarget: True`, if it has.
fn disruption_target_since(pod: &Pod) -> Option<Timestamp> {
    let c = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "DisruptionTarget" && c.status == "True")?;
    Some(c.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn pod(name: &str, owner: Option<(&str, &str)>, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                owner_references: owner.map(|(kind, uid)| {
                    vec![OwnerReference { api_version: "apps/v1".into(), kind: kind.into(), name: format!("{kind}-x"), uid: uid.into(), controller: Some(true), ..Default::default() }]
                }),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition { type_: "Ready".into(), status: if ready { "True" } else { "False" }.into(), ..Default::default() }]),
                ..Default::default()
            }),
        })
    }

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), generation: Some(3), ..Default::default() },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() }),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Every pod's controller scales to `scale`.
    fn scales(scale: i32) -> impl Fn(&Pod, &OwnerReference) -> Result<Option<ControllerScale>, String> {
        move |_, r| Ok(Some(ControllerScale { uid: r.uid.clone(), scale }))
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled_value(&IntOrString::String("50%".into()), 5, true), Ok(3));
        assert_eq!(scaled_value(&IntOrString::String("50%".into()), 5, false), Ok(2));
        assert_eq!(scaled_value(&IntOrString::String("0%".into()), 5, true), Ok(0));
        assert_eq!(scaled_value(&IntOrString::Int(4), 5, true), Ok(4));
        assert!(scaled_value(&IntOrString::String("half".into()), 5, true).is_err());
    }

    #[test]
    fn an_integer_min_available_counts_the_selected_pods() {
        let pods = [pod("a", None, true), pod("b", None, true), pod("c", None, false)];
        let e = expected_pod_count(&pdb(Some(IntOrString::Int(2)), None), &pods, |_, _| Err("not asked".into())).unwrap();
        assert_eq!(e, Expected { expected: 3, desired_healthy: 2, unmanaged: vec![] });
        let healthy = count_healthy(&pods, &BTreeMap::new(), at(0));
        assert_eq!(healthy, 2);
        let status = desired_status(&pdb(Some(IntOrString::Int(2)), None), healthy, &e, BTreeMap::new(), at(0)).unwrap();
        assert_eq!((status.current_healthy, status.desired_healthy, status.expected_pods, status.disruptions_allowed), (2, 2, 3, 0));
        assert_eq!(status.observed_generation, Some(3));
        let c = &status.conditions.unwrap()[0];
        assert_eq!((c.type_.as_str(), c.status.as_str(), c.reason.as_str()), ("DisruptionAllowed", "False", "InsufficientPods"));
    }

    #[test]
    fn percentages_are_of_the_controllers_scale() {
        // Two pods of a Deployment scaled to 4: 50% must stay, so 2.
        let pods = [pod("a", Some(("ReplicaSet", "rs-1")), true), pod("b", Some(("ReplicaSet", "rs-1")), true)];
        let e = expected_pod_count(&pdb(Some(IntOrString::String("50%".into())), None), &pods, scales(4)).unwrap();
        assert_eq!((e.expected, e.desired_healthy), (4, 2));
        let status = desired_status(&pdb(None, None), 2, &e, BTreeMap::new(), at(0)).unwrap();
        assert_eq!(status.disruptions_allowed, 0);

        let e = expected_pod_count(&pdb(None, Some(IntOrString::String("25%".into()))), &pods, scales(4)).unwrap();
        assert_eq!((e.expected, e.desired_healthy), (4, 3));
        let e = expected_pod_count(&pdb(None, Some(IntOrString::Int(1))), &pods, scales(2)).unwrap();
        assert_eq!((e.expected, e.desired_healthy), (2, 1));
        let status = desired_status(&pdb(None, Some(IntOrString::Int(1))), 2, &e, BTreeMap::new(), at(0)).unwrap();
        assert_eq!(status.disruptions_allowed, 1);
        let c = &status.conditions.unwrap()[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "SufficientPods"));
    }

    #[test]
    fn percentages_need_scalable_controllers() {
        let jobs = [pod("a", Some(("Job", "job-1")), true)];
        let err = expected_pod_count(&pdb(None, Some(IntOrString::String("10%".into()))), &jobs, |_, _| Err("jobs.batch does not implement the scale subresource".into()));
        assert_eq!(err, Err("jobs.batch does not implement the scale subresource".to_string()));
        let gone = expected_pod_count(&pdb(None, Some(IntOrString::Int(1))), &jobs, |_, _| Ok(None));
        assert_eq!(gone, Err("found no controllers for pod \"a\"".to_string()));
        // Pods without any controller are left out of the scale, and reported.
        let bare = [pod("lonely", None, true), pod("b", Some(("ReplicaSet", "rs-1")), true)];
        let e = expected_pod_count(&pdb(None, Some(IntOrString::Int(1))), &bare, scales(3)).unwrap();
        assert_eq!(e, Expected { expected: 3, desired_healthy: 2, unmanaged: vec!["lonely".into()] });
    }

    #[test]
    fn approved_evictions_do_not_count_as_healthy_for_two_minutes() {
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        let pods = [pod("a", None, true), pod("b", None, true)];
        budget.status = Some(PodDisruptionBudgetStatus { disrupted_pods: Some([("a".to_string(), Time(at(0)))].into()), ..Default::default() });
        let (disrupted, recheck, stale) = disrupted_pods(&budget, &pods, at(30));
        assert_eq!(disrupted.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(recheck, Some(at(120)));
        assert!(stale.is_empty());
        assert_eq!(count_healthy(&pods, &disrupted, at(30)), 1);

        // After two minutes the pod is dropped from the map and counts again.
        let (disrupted, recheck, stale) = disrupted_pods(&budget, &pods, at(121));
        assert!(disrupted.is_empty() && recheck.is_none());
        assert_eq!(stale.len(), 1);
        assert_eq!(count_healthy(&pods, &disrupted, at(121)), 2);
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        let e = Expected { expected: 2, desired_healthy: 1, unmanaged: vec![] };
        let status = desired_status(&budget, 2, &e, BTreeMap::new(), at(0)).unwrap();
        budget.status = Some(status);
        assert!(desired_status(&budget, 2, &e, BTreeMap::new(), at(5)).is_none());
        // A new generation must be observed.
        budget.metadata.generation = Some(4);
        let status = desired_status(&budget, 2, &e, BTreeMap::new(), at(5)).unwrap();
        assert_eq!(status.observed_generation, Some(4));
        // The condition's transition time moves only when its status does.
        assert_eq!(status.conditions.as_ref().unwrap()[0].last_transition_time, Time(at(0)));
        budget.status = Some(status);
        let status = desired_status(&budget, 1, &e, BTreeMap::new(), at(9)).unwrap();
        let c = &status.conditions.unwrap()[0];
        assert_eq!((c.status.as_str(), &c.last_transition_time), ("False", &Time(at(9))));
    }

    #[test]
    fn budgets_without_pods_allow_nothing() {
        let e = Expected { expected: 0, desired_healthy: 0, unmanaged: vec![] };
        let status = desired_status(&pdb(Some(IntOrString::Int(0)), None), 0, &e, BTreeMap::new(), at(0)).unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        let mut empty = pdb(Some(IntOrString::Int(0)), None);
        empty.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
        assert!(pods_for_budget(&empty, &[pod("a", None, true)]).is_empty());
        assert_eq!(pods_for_budget(&pdb(None, None), &[pod("a", None, true)]).len(), 1);
    }
}
