//! The scheduler's plumbing: informers feed the [`Cache`] and the
//! [`SchedulingQueue`]; one loop pops pods and asks the [`Framework`] (and, when
//! nothing fits, preemption) for a decision; bindings, status updates, evictions and
//! events go to the API in background tasks, so the loop never waits on the network.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Binding, Namespace, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use skiff_client::{Api, Client, DeleteParams, EventRecorder, EventType, Informer, InformerEvent, ListParams, PatchType};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::cache::Cache;
use crate::framework::{Framework, ScheduleError};
use crate::plugins::volume_binding::{self, VolumeBinding, VolumeInformers};
use crate::preemption::{self, Candidate, Outcome, REASON_PREEMPTION_BY_SCHEDULER};
use crate::queue::{event, QueuedPod, SchedulingQueue};
use crate::types::PodInfo;
use crate::SchedulerConfig;

/// The scheduler's pod informer leaves out finished pods, as upstream's: they
/// hold no resources, and leaving the selector reads as a deletion.
pub const POD_FIELD_SELECTOR: &str = "status.phase!=Succeeded,status.phase!=Failed";
/// Events carry at most this much of a message (`validation.NoteLengthLimit`).
const MAX_EVENT_MESSAGE: usize = 1024;
/// Status updates and evictions in flight at once.
const PATCH_PARALLELISM: usize = 16;
/// How often backed-off and long-parked pods are moved back into activeQ.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What to do with a pod's `status.nominatedNodeName` after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Nomination {
    Keep,
    Set(String),
    Clear,
}

/// The decision state: the cache and what rotates across cycles.
struct State {
    cache: Cache,
    next_start: usize,
    rng: StdRng,
}

struct Shared {
    config: SchedulerConfig,
    client: Client,
    framework: Framework,
    /// VolumeBinding, whose PreBind runs before a pod with claims is bound, and
    /// the informers it reads.
    volumes: Arc<VolumeBinding>,
    volume_informers: VolumeInformers,
    state: Mutex<State>,
    queue: Mutex<SchedulingQueue>,
    /// Signalled whenever the queue may have a pod to pop.
    wake: Notify,
    recorder: EventRecorder,
    binds: Semaphore,
    patches: Semaphore,
}

/// A running scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent before it can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_assigned(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
}

fn is_finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn truncate(msg: &str, max: usize) -> String {
    if msg.len() <= max {
        return msg.to_string();
    }
    let mut end = max - 3;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &msg[..end])
}

/// Which scheduling-relevant parts of a node changed.
fn node_change(old: &Node, new: &Node) -> u32 {
    let mut ev = 0;
    if old.status.as_ref().and_then(|s| s.allocatable.as_ref()) != new.status.as_ref().and_then(|s| s.allocatable.as_ref()) {
        ev |= event::NODE_ALLOCATABLE;
    }
    if old.metadata.labels != new.metadata.labels {
        ev |= event::NODE_LABEL;
    }
    let taints = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable.unwrap_or(false)));
    if taints(old) != taints(new) {
        ev |= event::NODE_TAINT;
    }
    ev
}

impl Scheduler {
    pub fn new(client: Client, config: SchedulerConfig) -> Scheduler {
        let recorder = EventRecorder::new(client.clone(), &config.name, None);
        let binds = Semaphore::new(config.bind_parallelism.max(1));
        let volume_informers = VolumeInformers::new(&client);
        let volumes = Arc::new(VolumeBinding::new(volume_informers.listers()));
        Scheduler {
            shared: Arc::new(Shared {
                framework: Framework::with_volume_binding(None, volumes.clone()),
                volumes,
                volume_informers,
                state: Mutex::new(State { cache: Cache::new(), next_start: 0, rng: StdRng::from_os_rng() }),
                queue: Mutex::new(SchedulingQueue::new()),
                wake: Notify::new(),
                recorder,
                binds,
                patches: Semaphore::new(PATCH_PARALLELISM),
                client,
                config,
            }),
        }
    }

    fn responsible(&self, pod: &Pod) -> bool {
        pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler") == self.shared.config.name
    }

    // === informer handlers ===

    fn on_pod(&self, ev: &InformerEvent<Pod>) {
        let now = Instant::now();
        match ev {
            InformerEvent::Applied { new, .. } if is_finished(new) => self.pod_gone(new),
            InformerEvent::Applied { old, new } => {
                let uid = uid(new).to_string();
                if is_assigned(new) {
                    let info = Arc::new(PodInfo::new(new.clone()));
                    let was_assigned = old.as_deref().is_some_and(is_assigned);
                    {
                        let mut st = lock(&self.shared.state);
                        st.cache.add_or_update_pod(info);
                        st.cache.delete_nominated(&uid);
                    }
                    let change = match old {
                        Some(old) if was_assigned => {
                            if old.metadata.labels != new.metadata.labels {
                                event::POD_LABEL
                            } else {
                                0
                            }
                        }
                        _ => event::POD_ADD,
                    };
                    let mut q = lock(&self.shared.queue);
                    q.delete(&uid);
                    if change != 0 && q.move_on_event(change, now) > 0 {
                        self.shared.wake.notify_one();
                    }
                    return;
                }
                let pending = self.responsible(new) && new.metadata.deletion_timestamp.is_none();
                let info = Arc::new(PodInfo::new(new.clone()));
                {
                    let mut st = lock(&self.shared.state);
                    // Our own binding is on its way; the pod is not pending any more.
                    if st.cache.is_assumed(&uid) {
                        return;
                    }
                    if pending {
                        let old_nominated = old.as_ref().and_then(|o| o.status.as_ref()).and_then(|s| s.nominated_node_name.as_deref()).is_some_and(|n| !n.is_empty());
                        st.cache.update_nominated(old_nominated, info.clone());
                    } else {
                        st.cache.delete_nominated(&uid);
                    }
                }
                let mut q = lock(&self.shared.queue);
                if pending {
                    q.add(info, now);
                    self.shared.wake.notify_one();
                } else {
                    q.delete(&uid);
                }
            }
            InformerEvent::Deleted(pod) => self.pod_gone(pod),
        }
    }

    /// A pod was deleted or finished: its resources are free.
    fn pod_gone(&self, pod: &Pod) {
        let uid = uid(pod);
        let freed = {
            let mut st = lock(&self.shared.state);
            st.cache.delete_nominated(uid);
            st.cache.remove_pod(uid)
        };
        let mut q = lock(&self.shared.queue);
        q.delete(uid);
        if freed && q.move_on_event(event::POD_DELETE, Instant::now()) > 0 {
            self.shared.wake.notify_one();
        }
    }

    fn on_node(&self, ev: &InformerEvent<Node>) {
        let change = match ev {
            InformerEvent::Applied { old, new } => {
                lock(&self.shared.state).cache.add_or_update_node(new.clone());
                match old {
                    None => event::NODE_ADD,
                    Some(old) => node_change(old, new),
                }
            }
            InformerEvent::Deleted(node) => {
                lock(&self.shared.state).cache.remove_node(node.metadata.name.as_deref().unwrap_or(""));
                event::NODE_DELETE
            }
        };
        if change != 0 && lock(&self.shared.queue).move_on_event(change, Instant::now()) > 0 {
            self.shared.wake.notify_one();
        }
    }

    fn on_namespace(&self, ev: &InformerEvent<Namespace>) {
        let mut st = lock(&self.shared.state);
        match ev {
            InformerEvent::Applied { new, .. } => {
                st.cache.set_namespace(new.metadata.name.as_deref().unwrap_or(""), new.metadata.labels.clone().unwrap_or_default());
            }
            InformerEvent::Deleted(ns) => st.cache.remove_namespace(ns.metadata.name.as_deref().unwrap_or("")),
        }
    }

    /// A claim, volume or class changed: pods waiting on storage may fit now.
    fn on_storage_change(&self) {
        if lock(&self.shared.queue).move_on_event(event::STORAGE, Instant::now()) > 0 {
            self.shared.wake.notify_one();
        }
    }

    // === the scheduling loop ===

    /// Runs until dropped: informers, the periodic flush, and the loop.
    pub async fn run(self) {
        let client = &self.shared.client;
        let mut tasks = JoinSet::new();
        let pods = Informer::new(Api::<Pod>::all(client), ListParams { field_selector: Some(POD_FIELD_SELECTOR.into()), ..Default::default() });
        let nodes = Informer::new(Api::<Node>::all(client), ListParams::default());
        let namespaces = Informer::new(Api::<Namespace>::all(client), ListParams::default());
        let s = self.clone();
        namespaces.on_event(Arc::new(move |ev| s.on_namespace(ev)));
        let s = self.clone();
        nodes.on_event(Arc::new(move |ev| s.on_node(ev)));
        let s = self.clone();
        pods.on_event(Arc::new(move |ev| s.on_pod(ev)));
        let s = self.clone();
        self.shared.volume_informers.on_change(Arc::new(move || s.on_storage_change()));
        tasks.spawn(namespaces.clone().run());
        tasks.spawn(nodes.clone().run());
        tasks.spawn(pods.clone().run());
        tasks.spawn(self.shared.volume_informers.clone().run());
        self.shared.volume_informers.wait_synced().await;
        namespaces.wait_synced().await;
        nodes.wait_synced().await;
        pods.wait_synced().await;
        tracing::info!(scheduler = %self.shared.config.name, nodes = lock(&self.shared.state).cache.node_count(), "scheduler caches synced");
        let s = self.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                lock(&s.shared.queue).flush(Instant::now());
                s.shared.wake.notify_one();
            }
        });
        let mut cycles: u64 = 0;
        loop {
            let qp = self.next_pod().await;
            self.schedule_one(qp, &mut tasks);
            while tasks.try_join_next().is_some() {}
            cycles += 1;
            // Give the informers and the API server (often on the same runtime) a turn.
            if cycles.is_multiple_of(32) {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn next_pod(&self) -> QueuedPod {
        loop {
            let (popped, expiry) = {
                let mut q = lock(&self.shared.queue);
                let p = q.pop(Instant::now());
                let expiry = if p.is_none() { q.next_backoff_expiry() } else { None };
                (p, expiry)
            };
            if let Some(p) = popped {
                return p;
            }
            match expiry {
                Some(at) => {
                    tokio::select! {
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    }
                }
                None => self.shared.wake.notified().await,
            }
        }
    }

    /// One scheduling cycle: decide under the cache lock, then hand the API work to
    /// background tasks.
    fn schedule_one(&self, qp: QueuedPod, tasks: &mut JoinSet<()>) {
        let pod = qp.pod.clone();
        let mut st = lock(&self.shared.state);
        let State { cache, next_start, rng } = &mut *st;
        if cache.contains_pod(&pod.uid) {
            // Assigned meanwhile (by us or someone else).
            drop(st);
            lock(&self.shared.queue).done(&pod.uid);
            return;
        }
        let snapshot = cache.snapshot();
        let decision = self.shared.framework.schedule(&pod, &snapshot, next_start, rng);
        match decision {
            Ok(r) => {
                cache.delete_nominated(&pod.uid);
                cache.assume(pod.clone(), &r.node);
                drop(st);
                tracing::debug!(pod = %pod.key(), node = %r.node, evaluated = r.evaluated_nodes, feasible = r.feasible_nodes, "assumed");
                tasks.spawn(self.clone().bind(qp, r.node));
            }
            Err(ScheduleError::NoNodes) => {
                cache.nominate(pod.clone(), None);
                drop(st);
                let msg = ScheduleError::NoNodes.to_string();
                if let Some(f) = self.fail(&qp, &msg, &BTreeSet::new(), "Unschedulable", false, Nomination::Clear) {
                    tasks.spawn(f);
                }
            }
            Err(ScheduleError::Unfit(mut fit)) => {
                let outcome = preemption::preempt(&self.shared.framework, &pod, &snapshot, &fit.diagnosis.node_to_status, rng);
                let nomination = match outcome {
                    Outcome::Preempt(c) => {
                        // Lower-priority pods nominated to the node may not fit any more.
                        let displaced: Vec<Arc<PodInfo>> = cache.nominated_on(&c.node).iter().filter(|p| p.priority < pod.priority && p.uid != pod.uid).cloned().collect();
                        for p in &displaced {
                            cache.nominate(p.clone(), None);
                        }
                        cache.nominate(pod.clone(), Some(&c.node));
                        let node = c.node.clone();
                        tracing::info!(pod = %pod.key(), node = %node, victims = c.victims.len(), "preempting");
                        tasks.spawn(self.clone().evict(pod.clone(), c, displaced));
                        Nomination::Set(node)
                    }
                    Outcome::NotHelpful { message, clear_nomination } => {
                        fit.diagnosis.post_filter_msg = message;
                        if clear_nomination {
                            cache.nominate(pod.clone(), None);
                            Nomination::Clear
                        } else {
                            Nomination::Keep
                        }
                    }
                };
                drop(st);
                let msg = fit.to_string();
                tracing::debug!(pod = %pod.key(), message = %msg, "unschedulable");
                if let Some(f) = self.fail(&qp, &msg, &fit.diagnosis.unschedulable_plugins, "Unschedulable", false, nomination) {
                    tasks.spawn(f);
                }
            }
        }
    }

    /// Requeues a pod that got no node, records `FailedScheduling`, and returns the
    /// status update to send (`PodScheduled=False` with the message, and the
    /// nomination), unless the pod already says exactly that.
    fn fail(
        &self,
        qp: &QueuedPod,
        message: &str,
        rejected_by: &BTreeSet<&'static str>,
        reason: &'static str,
        error: bool,
        nomination: Nomination,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let uid = qp.pod.uid.clone();
        let latest = {
            let mut q = lock(&self.shared.queue);
            let latest = q.pod(&uid);
            q.add_unschedulable(&uid, rejected_by, error, Instant::now());
            latest
        };
        // Deleted while it was being scheduled: nothing to report.
        let pod = latest?;
        self.shared.wake.notify_one();
        self.shared.recorder.record(&*pod.pod, EventType::Warning, "FailedScheduling", &truncate(message, MAX_EVENT_MESSAGE));
        let status = pod.pod.status.as_ref();
        let current = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        let same_condition = current.is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message));
        let current_nnn = status.and_then(|s| s.nominated_node_name.clone()).filter(|n| !n.is_empty());
        let target_nnn = match &nomination {
            Nomination::Keep => current_nnn.clone(),
            Nomination::Set(n) => Some(n.clone()),
            Nomination::Clear => None,
        };
        if same_condition && target_nnn == current_nnn {
            return None;
        }
        // The transition time moves only when the status does.
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.as_ref().map(|t| t.0.to_string()),
            _ => None,
        }
        .unwrap_or_else(|| jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string());
        let mut patch = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
            "lastProbeTime": null, "lastTransitionTime": transition,
        }]}});
        if target_nnn != current_nnn {
            patch["status"]["nominatedNodeName"] = json!(target_nnn);
        }
        let this = self.clone();
        let (ns, name) = (pod.namespace.clone(), pod.name.clone());
        Some(async move {
            let _permit = this.shared.patches.acquire().await;
            let api: Api<Pod> = Api::namespaced(&this.shared.client, &ns);
            if let Err(e) = api.patch_status(&name, PatchType::StrategicMerge, &patch).await {
                if !e.is_not_found() {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not update the pod's scheduling condition");
                }
            }
        })
    }

    /// POSTs the binding; on success the pod leaves the queue, on failure it is
    /// forgotten and retried after a back-off.
    async fn bind(self, qp: QueuedPod, node: String) {
        let decided = Instant::now();
        // Waiting for volumes holds no binding slot.
        if VolumeBinding::uses_claims(&qp.pod.pod) && !self.pre_bind(&qp, &node).await {
            return;
        }
        let _permit = self.shared.binds.acquire().await;
        let pod = &qp.pod;
        let binding = Binding {
            metadata: ObjectMeta { name: Some(pod.name.clone()), namespace: Some(pod.namespace.clone()), uid: Some(pod.uid.clone()), ..Default::default() },
            target: ObjectReference { api_version: Some("v1".into()), kind: Some("Node".into()), name: Some(node.clone()), ..Default::default() },
        };
        let api: Api<Pod> = Api::namespaced(&self.shared.client, &pod.namespace);
        match api.create_subresource(&pod.name, "binding", &binding).await {
            Ok(_) => {
                lock(&self.shared.queue).done(&pod.uid);
                tracing::debug!(
                    pod = %pod.key(),
                    node = %node,
                    queued_ms = qp.initial_attempt.map_or(0.0, |t| t.saturating_duration_since(qp.timestamp).as_secs_f64() * 1e3),
                    decided_ms = qp.initial_attempt.map_or(0.0, |t| decided.saturating_duration_since(t).as_secs_f64() * 1e3),
                    bind_ms = decided.elapsed().as_secs_f64() * 1e3,
                    attempts = qp.attempts,
                    "bound"
                );
                let msg = format!("Successfully assigned {}/{} to {}", pod.namespace, pod.name, node);
                self.shared.recorder.record(&*pod.pod, EventType::Normal, "Scheduled", &msg);
            }
            Err(e) => {
                lock(&self.shared.state).cache.forget(&pod.uid);
                if e.is_not_found() {
                    lock(&self.shared.queue).delete(&pod.uid);
                    return;
                }
                tracing::warn!(pod = %pod.key(), node = %node, error = %e, "binding failed");
                let msg = format!("Binding rejected: {e}");
                if let Some(f) = self.fail(&qp, &msg, &BTreeSet::new(), "SchedulerError", true, Nomination::Keep) {
                    f.await;
                }
            }
        }
    }

    /// VolumeBinding's PreBind: the pod's claims get the node and are bound there.
    /// On failure the pod is forgotten and retried after a back-off, as after a
    /// failed binding.
    async fn pre_bind(&self, qp: &QueuedPod, node: &str) -> bool {
        let labels = lock(&self.shared.state).cache.node(node).map(|n| n.labels().clone()).unwrap_or_default();
        let uid = qp.pod.uid.clone();
        let gone = || !lock(&self.shared.queue).contains(&uid);
        match self.shared.volumes.pre_bind(&self.shared.client, &qp.pod, node, &labels, gone).await {
            Ok(()) => true,
            Err(e) => {
                lock(&self.shared.state).cache.forget(&qp.pod.uid);
                tracing::info!(pod = %qp.pod.key(), node = %node, error = %e, "volumes not bound");
                let msg = format!("running PreBind plugin {:?}: {e}", volume_binding::NAME);
                if let Some(f) = self.fail(qp, &msg, &BTreeSet::new(), "SchedulerError", true, Nomination::Keep) {
                    f.await;
                }
                false
            }
        }
    }

    /// Carries out a preemption: marks each victim as disrupted, deletes it and
    /// records `Preempted`; lower-priority pods nominated to the node lose their
    /// nomination.
    async fn evict(self, preemptor: Arc<PodInfo>, candidate: Candidate, displaced: Vec<Arc<PodInfo>>) {
        let client = &self.shared.client;
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": REASON_PREEMPTION_BY_SCHEDULER,
            "message": format!("{}: preempting to accommodate a higher priority pod", self.shared.config.name),
            "lastTransitionTime": jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string(),
        }]}});
        let mut work = JoinSet::new();
        for victim in candidate.victims {
            let api: Api<Pod> = Api::namespaced(client, &victim.namespace);
            let condition = condition.clone();
            let recorder = self.shared.recorder.clone();
            let msg = format!("Preempted by pod {} on node {}", preemptor.uid, candidate.node);
            work.spawn(async move {
                if let Err(e) = api.patch_status(&victim.name, PatchType::StrategicMerge, &condition).await {
                    if e.is_not_found() {
                        return;
                    }
                    tracing::warn!(pod = %victim.key(), error = %e, "could not mark the preemption victim");
                }
                match api.delete(&victim.name, &DeleteParams { precondition_uid: Some(victim.uid.clone()), ..Default::default() }).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => return,
                    Err(e) => {
                        tracing::warn!(pod = %victim.key(), error = %e, "could not delete the preemption victim");
                        return;
                    }
                }
                recorder.record(&*victim.pod, EventType::Normal, "Preempted", &msg);
            });
        }
        for p in displaced {
            let api: Api<Pod> = Api::namespaced(client, &p.namespace);
            work.spawn(async move {
                let patch = json!({"status": {"nominatedNodeName": null}});
                if let Err(e) = api.patch_status(&p.name, PatchType::StrategicMerge, &patch).await {
                    if !e.is_not_found() {
                        tracing::warn!(pod = %p.key(), error = %e, "could not clear the pod's nominated node");
                    }
                }
            });
        }
        while work.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MakeNode;

    #[test]
    fn only_scheduling_relevant_node_changes_count() {
        let a = MakeNode::new("n").capacity("4", "8Gi").obj();
        let mut heartbeat = a.clone();
        heartbeat.status.as_mut().unwrap().conditions = Some(vec![Default::default()]);
        assert_eq!(node_change(&a, &heartbeat), 0);
        let relabelled = MakeNode::new("n").capacity("4", "8Gi").label("disk", "ssd").obj();
        assert_eq!(node_change(&a, &relabelled), event::NODE_LABEL);
        let bigger = MakeNode::new("n").capacity("8", "8Gi").obj();
        assert_eq!(node_change(&a, &bigger), event::NODE_ALLOCATABLE);
        let cordoned = MakeNode::new("n").capacity("4", "8Gi").unschedulable().obj();
        assert_eq!(node_change(&a, &cordoned), event::NODE_TAINT);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("short", 10), "short");
        let long = "é".repeat(600);
        let t = truncate(&long, MAX_EVENT_MESSAGE);
        assert!(t.len() <= MAX_EVENT_MESSAGE && t.ends_with("..."));
    }
}
