//! The pod workers: one task per pod, so that everything done to a pod happens in
//! order, and pods never wait for each other (upstream's `podWorkers`).
//!
//! A worker wakes up when the pod changes (the watch), when its containers change
//! (the relist), when a probe result changes, or when its sync asked to be woken
//! (a back-off running out), and at least every sync period. Each wake-up is one
//! sync, level-triggered from the Pod and what the runtime has of it:
//!
//! - running: admission (once), the activeDeadlineSeconds check, volumes, then one
//!   step of [`RuntimeManager::sync_pod`], and the status written if it changed;
//! - terminating (the pod is being deleted, is gone, or ran past its deadline):
//!   containers stopped with the grace period, the final status written;
//! - terminated: a pod in a terminal phase keeps its stopped containers (their
//!   logs) and its status; a deleted one loses everything, and the kubelet confirms
//!   the deletion (grace period 0, UID precondition).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::{json, Value};
use skiff_client::{Api, Client, DeleteParams, EventType, Informer, InformerEvent, ListParams, PatchType};
use tokio::sync::{mpsc, watch, Notify};

use super::actions::{containers, init_containers, ProbeState};
use super::admission::{pod_requests, Admission};
use super::backoff::{plus, since, Clock};
use super::host::RuntimeHelper;
use super::manager::{pod_grace, remove_dir, NodeFacts, PodRuntime, RuntimeManager};
use super::podstate::PodRuntimeState;
use super::pods::{Change, PodRegistry};
use super::probe::{ProbeKind, ProbeTarget, ProbeUpdate};
use super::sandbox::NodeDns;
use super::status::{self, format_pod, is_terminal_phase, Readiness, StatusInput, Waiting};
use crate::runtime::Runtime;
use crate::sim::pod::merge_patch_is_noop;

/// How soon a sync that failed (runtime or API trouble) is tried again.
const ERROR_RETRY: Duration = Duration::from_secs(2);
/// How soon a pod whose volumes are not ready is tried again.
const VOLUME_RETRY: Duration = Duration::from_secs(2);
/// How soon a pod whose RuntimeClass is missing is tried again.
const RUNTIME_CLASS_RETRY: Duration = Duration::from_secs(10);
/// Status writes that meet a conflict are retried this often on a fresh copy.
const CONFLICT_RETRIES: usize = 3;

pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const MESSAGE_DEADLINE_EXCEEDED: &str = "Pod was active on the node longer than the specified deadline";
/// A RuntimeClass names a handler this node does not run.
pub const REASON_UNKNOWN_RUNTIME_HANDLER: &str = "UnknownRuntimeHandler";

/// Everything the kubelet core is made from.
pub struct KubeletParts {
    pub client: Client,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// The Node's allocatable ("cpu" → "4", …), for admission and resource fields.
    pub allocatable: BTreeMap<String, String>,
    pub runtime: Arc<dyn Runtime>,
    pub handlers: BTreeMap<String, Arc<dyn Runtime>>,
    pub host: Arc<dyn RuntimeHelper>,
    pub data_dir: PathBuf,
    pub dns: NodeDns,
    pub sync_period: Duration,
    pub clock: Clock,
}

/// The kubelet core: the pod registry, the workers, the relist. Cheap to clone.
#[derive(Clone)]
pub struct Kubelet {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) node_name: String,
    pub(super) node_ip: IpAddr,
    pub(super) default_runtime: Arc<dyn Runtime>,
    pub(super) handlers: BTreeMap<String, Arc<dyn Runtime>>,
    pub(super) manager: RuntimeManager,
    pub(super) host: Arc<dyn RuntimeHelper>,
    pub(super) registry: Arc<PodRegistry>,
    pub(super) data_dir: PathBuf,
    sync_period: Duration,
    // std Mutexes: map operations only, never held across an await.
    runtime_names: Mutex<HashMap<usize, String>>,
    workers: Mutex<Workers>,
    admission: Mutex<Admission>,
    /// Container instance → (pod UID, the probe that failed for good).
    probe_failures: Mutex<HashMap<String, (String, ProbeKind)>>,
    /// Orphaned pods (by UID) being cleaned up.
    pub(super) cleaning: Mutex<HashSet<String>>,
}

#[derive(Default)]
struct Workers {
    started: bool,
    next_id: u64,
    handles: HashMap<String, WorkerHandle>,
}

struct WorkerHandle {
    id: u64,
    notify: Arc<Notify>,
    terminate: watch::Sender<bool>,
    task: tokio::task::AbortHandle,
}

/// What a worker remembers of its pod between syncs.
#[derive(Default)]
struct WorkerState {
    runtime: Option<PodRuntime>,
    admitted: bool,
    /// Refused (reason, message): nothing runs, only a deletion is handled.
    rejected: Option<(String, String)>,
    /// The refusal is in the pod's status.
    rejection_written: bool,
    /// Stopped for good; the pod stays (a terminal phase).
    terminated: bool,
    /// Cleaned up after its deletion; waiting for the pod to leave the watch.
    finished: bool,
    /// The last failed start of each container.
    waiting: HashMap<String, Waiting>,
    /// The status written last (upstream's status manager cache).
    last_status: Option<PodStatus>,
    /// Containers with probers: name → the instance they probe.
    probed: HashMap<String, String>,
    /// Whether the first copy of the pod this worker saw was already terminal.
    seen_terminal: Option<bool>,
}

/// What a sync leaves for the worker loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Sync again after this long at the latest.
    Again(Duration),
    /// Nothing to do until something changes (or the sync period).
    Idle,
    /// The pod is gone and cleaned up: the worker ends.
    Done,
}

/// Why a pod has no runtime.
enum NoRuntime {
    /// The RuntimeClass's handler is not one this node runs: the pod fails.
    Unknown(String),
    /// The RuntimeClass does not exist (yet), or cannot be read: try again later.
    MissingClass(String),
    /// A runtime does not answer: try again soon.
    Unavailable(String),
}

struct HostReadiness<'a> {
    host: &'a dyn RuntimeHelper,
    uid: &'a str,
}

impl Readiness for HostReadiness<'_> {
    fn is_ready(&self, container: &str) -> bool {
        self.host.is_ready(self.uid, container)
    }
    fn is_started(&self, container: &str) -> bool {
        self.host.is_started(self.uid, container)
    }
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops every worker when the kubelet's future is dropped.
struct AbortWorkers(Kubelet);

impl Drop for AbortWorkers {
    fn drop(&mut self) {
        let mut w = lock(&self.0.shared.workers);
        for (_, h) in w.handles.drain() {
            h.task.abort();
        }
    }
}

impl Kubelet {
    pub fn new(parts: KubeletParts) -> Kubelet {
        let facts = NodeFacts { node_ip: parts.node_ip, allocatable: parts.allocatable.clone(), dns: parts.dns };
        let manager = RuntimeManager::new(parts.host.clone(), parts.clock, parts.data_dir.clone(), facts);
        Kubelet {
            shared: Arc::new(Shared {
                client: parts.client,
                node_name: parts.node_name,
                node_ip: parts.node_ip,
                default_runtime: parts.runtime,
                handlers: parts.handlers,
                manager,
                host: parts.host,
                registry: Arc::new(PodRegistry::new(parts.data_dir.clone())),
                data_dir: parts.data_dir,
                sync_period: parts.sync_period.max(Duration::from_secs(1)),
                runtime_names: Mutex::default(),
                workers: Mutex::default(),
                admission: Mutex::new(Admission::new(&parts.allocatable)),
                probe_failures: Mutex::default(),
                cleaning: Mutex::default(),
            }),
        }
    }

    /// The pods of this node, for the agent's endpoint.
    pub fn registry(&self) -> Arc<PodRegistry> {
        self.shared.registry.clone()
    }

    /// Watches this node's pods and runs them until the future is dropped.
    pub async fn run(self, probe_updates: mpsc::UnboundedReceiver<ProbeUpdate>) {
        let _guard = AbortWorkers(self.clone());
        let params = ListParams { field_selector: Some(format!("spec.nodeName={}", self.shared.node_name)), ..Default::default() };
        let informer: Informer<Pod> = Informer::new(Api::all(&self.shared.client), params);
        let this = self.clone();
        informer.on_event(Arc::new(move |event: &InformerEvent<Pod>| this.on_pod_event(event)));
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(informer.clone().run());
        informer.wait_synced().await;
        tracing::info!(node = %self.shared.node_name, pods = self.shared.registry.len(), "pods listed; starting pod workers");
        self.start_workers();
        tasks.spawn(self.clone().relist());
        tasks.spawn(self.clone().probe_results(probe_updates));
        while tasks.join_next().await.is_some() {
            tracing::error!("a kubelet task ended");
        }
    }

    fn on_pod_event(&self, event: &InformerEvent<Pod>) {
        let change = match event {
            InformerEvent::Applied { new, .. } => self.shared.registry.upsert(new.clone()),
            InformerEvent::Deleted(pod) => self.shared.registry.mark_removed(pod),
        };
        if let Some(change) = change {
            self.update(change);
        }
    }

    /// Wakes the pod's worker (starting it if needed).
    pub(super) fn update(&self, change: Change) {
        let mut w = lock(&self.shared.workers);
        if !w.started {
            return;
        }
        if let Some(h) = w.handles.get(&change.uid) {
            if change.terminating {
                h.terminate.send_replace(true);
            }
            h.notify.notify_one();
            return;
        }
        self.spawn_worker(&mut w, change);
    }

    fn spawn_worker(&self, w: &mut Workers, change: Change) {
        w.next_id += 1;
        let id = w.next_id;
        let notify = Arc::new(Notify::new());
        let (terminate, rx) = watch::channel(change.terminating);
        let task = tokio::spawn(self.clone().worker(change.uid.clone(), id, notify.clone(), rx));
        w.handles.insert(change.uid, WorkerHandle { id, notify, terminate, task: task.abort_handle() });
    }

    /// After the first list: count what already runs here, then start a worker
    /// for every pod (pods that ran before are counted before any new pod is
    /// admitted).
    fn start_workers(&self) {
        let registry = &self.shared.registry;
        {
            let mut admission = lock(&self.shared.admission);
            for uid in registry.uids() {
                let Some((pod, _)) = registry.get(&uid) else { continue };
                let status = pod.status.as_ref();
                let started = status.is_some_and(|s| s.start_time.is_some());
                if started && !is_terminal_phase(status.and_then(|s| s.phase.as_deref())) {
                    admission.record(&uid, &pod_requests(&serde_json::to_value(&*pod).unwrap_or_default()));
                }
            }
        }
        registry.set_synced();
        let mut w = lock(&self.shared.workers);
        w.started = true;
        for uid in registry.uids() {
            let terminating = registry.get(&uid).is_some_and(|(p, removed)| removed || p.metadata.deletion_timestamp.is_some());
            if !w.handles.contains_key(&uid) {
                self.spawn_worker(&mut w, Change { uid, terminating });
            }
        }
    }

    /// The worker of one pod.
    async fn worker(self, uid: String, id: u64, notify: Arc<Notify>, mut terminate: watch::Receiver<bool>) {
        let mut st = WorkerState::default();
        loop {
            let step = self.sync(&uid, &mut st, &mut terminate).await;
            let wait = match step {
                Step::Done => break,
                Step::Again(d) => d.min(self.shared.sync_period),
                Step::Idle => self.shared.sync_period,
            };
            if wait.is_zero() {
                continue;
            }
            // A little jitter keeps pods' periodic syncs apart.
            let wait = wait + Duration::from_millis(rand::random_range(0..=(wait.as_millis() as u64 / 10).max(1)));
            tokio::select! {
                _ = notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let mut w = lock(&self.shared.workers);
        if w.handles.get(&uid).is_some_and(|h| h.id == id) {
            w.handles.remove(&uid);
        }
    }

    // === one sync ===

    async fn sync(&self, uid: &str, st: &mut WorkerState, terminate: &mut watch::Receiver<bool>) -> Step {
        let s = &self.shared;
        let Some((pod, removed)) = s.registry.get(uid) else { return Step::Done };
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let seen_terminal = *st.seen_terminal.get_or_insert(is_terminal_phase(api_phase));

        if st.finished {
            if removed {
                s.registry.remove(uid);
                return Step::Done;
            }
            return Step::Idle;
        }
        if let Some((reason, message)) = st.rejected.clone() {
            if removed || deleting {
                // Nothing ever ran: confirm the deletion.
                return self.finish_deletion(&pod, st, removed).await;
            }
            if !st.rejection_written {
                return self.reject(&pod, st, &reason, &message).await;
            }
            return Step::Idle;
        }
        if st.terminated && !(removed || deleting) {
            return Step::Idle;
        }

        let rt = match &st.runtime {
            Some(rt) => rt.clone(),
            None => match self.pod_runtime(&pod).await {
                Ok(rt) => {
                    st.runtime = Some(rt.clone());
                    rt
                }
                Err(NoRuntime::Unknown(message)) => {
                    if removed || deleting {
                        return self.finish_deletion(&pod, st, removed).await;
                    }
                    return self.reject(&pod, st, REASON_UNKNOWN_RUNTIME_HANDLER, &message).await;
                }
                Err(NoRuntime::MissingClass(message)) => {
                    if removed || deleting {
                        return self.finish_deletion(&pod, st, removed).await;
                    }
                    s.host.event(&pod, EventType::Warning, "FailedCreatePodSandBox", &format!("Failed to create pod sandbox: {message}"));
                    return Step::Again(RUNTIME_CLASS_RETRY);
                }
                Err(NoRuntime::Unavailable(message)) => {
                    // Nothing can be known of the pod's containers: try again.
                    tracing::warn!(pod = %format_pod(&pod), error = %message, "no runtime for the pod yet");
                    return Step::Again(ERROR_RETRY);
                }
            },
        };

        let state = match PodRuntimeState::gather(rt.runtime.as_ref(), uid).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(pod = %format_pod(&pod), error = %e, "cannot read the pod's containers from the runtime");
                return Step::Again(ERROR_RETRY);
            }
        };
        s.registry.set_runtime_view(uid, &rt.runtime, &state);

        if removed || deleting {
            return self.terminate(&pod, &rt, st, state, None).await;
        }
        if seen_terminal {
            // Finished before this worker started (or someone else said so):
            // stop what is left, leave the status alone.
            return self.finish_terminal(&pod, &rt, st, state, false).await;
        }

        if !st.admitted {
            let requests = pod_requests(&serde_json::to_value(&*pod).unwrap_or_default());
            let ran_before = !state.is_empty() || pod.status.as_ref().is_some_and(|s| s.start_time.is_some());
            let admitted = {
                let mut admission = lock(&s.admission);
                if ran_before {
                    admission.record(uid, &requests);
                    Ok(())
                } else {
                    admission.admit(uid, &requests)
                }
            };
            if let Err(r) = admitted {
                return self.reject(&pod, st, &r.reason, &r.message).await;
            }
            st.admitted = true;
        }

        let now = s.manager.clock().now();
        let deadline = self.deadline(&pod, st);
        if deadline.is_some_and(|d| now >= d) {
            s.host.event(&pod, EventType::Normal, REASON_DEADLINE_EXCEEDED, MESSAGE_DEADLINE_EXCEEDED);
            let evicted = Some((REASON_DEADLINE_EXCEEDED.to_string(), MESSAGE_DEADLINE_EXCEEDED.to_string()));
            return self.terminate(&pod, &rt, st, state, evicted).await;
        }

        if let Err(message) = s.host.setup_volumes(&pod).await {
            s.host.event(&pod, EventType::Warning, "FailedMount", &message);
            self.write(&pod, &rt, &state, st, false, None).await;
            return Step::Again(VOLUME_RETRY);
        }

        self.reconcile_probes(&pod, &rt, &state, st);
        // Report where the pod is before acting on it: an image pull may take a
        // while, and the pod shows ContainerCreating meanwhile.
        let status = self.write(&pod, &rt, &state, st, false, None).await;
        if is_terminal_phase(status.as_ref().and_then(|s| s.phase.as_deref())) {
            return self.finish_terminal(&pod, &rt, st, state, true).await;
        }
        let probes = self.probe_state(&pod, &state);
        let outcome = tokio::select! {
            biased;
            _ = async {
                // A closed channel means no deletion can be signalled: sync on.
                if terminate.wait_for(|t| *t).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => {
                // The pod is being deleted: stop syncing, terminate at once.
                return Step::Again(Duration::ZERO);
            }
            outcome = s.manager.sync_pod(&pod, &rt, &state, &probes, &mut st.waiting) => outcome,
        };
        if let Some(e) = &outcome.error {
            tracing::info!(pod = %format_pod(&pod), error = %e, "pod sync failed");
        }

        // Report what the runtime has now, on the newest copy of the pod.
        let pod = s.registry.get(uid).map_or(pod, |(p, _)| p);
        let state = PodRuntimeState::gather(rt.runtime.as_ref(), uid).await.unwrap_or(state);
        s.registry.set_runtime_view(uid, &rt.runtime, &state);
        self.reconcile_probes(&pod, &rt, &state, st);
        let status = self.write(&pod, &rt, &state, st, false, None).await;
        if is_terminal_phase(status.as_ref().and_then(|s| s.phase.as_deref())) {
            return self.finish_terminal(&pod, &rt, st, state, true).await;
        }

        let mut next = outcome.retry_after.unwrap_or(s.sync_period);
        if outcome.error.is_some() {
            next = next.min(ERROR_RETRY);
        }
        if let Some(d) = deadline {
            next = next.min(since(d, s.manager.clock().now()));
        }
        Step::Again(next)
    }

    /// Stops a pod that is being deleted, is gone, or ran past its deadline, and
    /// writes its final status; a deleted pod is then removed from the node.
    async fn terminate(&self, pod: &Arc<Pod>, rt: &PodRuntime, st: &mut WorkerState, state: PodRuntimeState, evicted: Option<(String, String)>) -> Step {
        let s = &self.shared;
        let uid = uid_of(pod).to_string();
        let removed = s.registry.get(&uid).is_some_and(|(_, r)| r);
        s.host.pod_terminating(&uid);
        if let Err(e) = s.manager.kill_pod(pod, rt, &state, Some(pod_grace(pod))).await {
            tracing::warn!(pod = %format_pod(pod), error = %e, "stopping the pod failed; retrying");
            return Step::Again(ERROR_RETRY);
        }
        s.host.stop_probing_pod(&uid);
        st.probed.clear();
        let state = PodRuntimeState::gather(rt.runtime.as_ref(), &uid).await.unwrap_or(state);
        s.registry.set_runtime_view(&uid, &rt.runtime, &state);
        if !removed {
            let written = {
                let st_ref: &WorkerState = st;
                self.write_status(pod, &|p: &Pod| self.final_status(p, rt, &state, st_ref, evicted.clone())).await
            };
            match written {
                Some(written) => st.last_status = Some(written),
                // The final status must reach the API before anything else.
                None => return Step::Again(ERROR_RETRY),
            }
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if !(removed || deleting) {
            // Past its deadline: stopped for good, the pod stays.
            return self.release_terminal(pod, st).await;
        }
        if let Err(e) = s.manager.remove_pod(pod, rt, &state).await {
            tracing::warn!(pod = %format_pod(pod), error = %e, "removing the pod's containers failed; retrying");
            return Step::Again(ERROR_RETRY);
        }
        self.finish_deletion(pod, st, removed).await
    }

    /// The final status: containers stopped, the phase terminal.
    fn final_status(&self, pod: &Pod, rt: &PodRuntime, state: &PodRuntimeState, st: &WorkerState, evicted: Option<(String, String)>) -> PodStatus {
        status::terminate(pod, self.generate(pod, rt, state, st, true, evicted))
    }

    /// A pod in a terminal phase: whatever still runs (sidecars) is stopped, its
    /// volumes and resources are released; its containers and status stay.
    async fn finish_terminal(&self, pod: &Arc<Pod>, rt: &PodRuntime, st: &mut WorkerState, state: PodRuntimeState, write_status: bool) -> Step {
        let s = &self.shared;
        let uid = uid_of(pod).to_string();
        if let Err(e) = s.manager.kill_pod(pod, rt, &state, Some(pod_grace(pod))).await {
            tracing::warn!(pod = %format_pod(pod), error = %e, "stopping a finished pod failed; retrying");
            return Step::Again(ERROR_RETRY);
        }
        s.host.stop_probing_pod(&uid);
        st.probed.clear();
        let state = PodRuntimeState::gather(rt.runtime.as_ref(), &uid).await.unwrap_or(state);
        s.registry.set_runtime_view(&uid, &rt.runtime, &state);
        if write_status {
            let written = {
                let st_ref: &WorkerState = st;
                self.write_status(pod, &|p: &Pod| self.final_status(p, rt, &state, st_ref, None)).await
            };
            if let Some(written) = written {
                st.last_status = Some(written);
            }
        }
        self.release_terminal(pod, st).await
    }

    async fn release_terminal(&self, pod: &Arc<Pod>, st: &mut WorkerState) -> Step {
        let s = &self.shared;
        let uid = uid_of(pod);
        if let Err(e) = s.host.teardown_volumes(uid).await {
            tracing::warn!(pod = %format_pod(pod), error = %e, "tearing down the volumes of a finished pod failed; retrying");
            return Step::Again(ERROR_RETRY);
        }
        lock(&s.admission).release(uid);
        st.terminated = true;
        Step::Idle
    }

    /// Everything of a deleted pod is gone from the node: volumes, directories,
    /// accounting; the API object is deleted for good (grace period 0, UID
    /// precondition), which is how a kubelet confirms a graceful deletion.
    async fn finish_deletion(&self, pod: &Arc<Pod>, st: &mut WorkerState, removed: bool) -> Step {
        let s = &self.shared;
        let uid = uid_of(pod).to_string();
        if let Err(e) = s.host.teardown_volumes(&uid).await {
            tracing::warn!(pod = %format_pod(pod), error = %e, "tearing down the pod's volumes failed; retrying");
            return Step::Again(ERROR_RETRY);
        }
        remove_dir(&s.manager.pod_dir(&uid));
        s.host.stop_probing_pod(&uid);
        lock(&s.admission).release(&uid);
        lock(&s.probe_failures).retain(|_, (u, _)| *u != uid);
        s.manager.forget_pod(pod);
        if !removed {
            let pods: Api<Pod> = Api::namespaced(&s.client, pod.metadata.namespace.as_deref().unwrap_or("default"));
            let params = DeleteParams { grace_period_seconds: Some(0), precondition_uid: Some(uid.clone()), ..Default::default() };
            match pods.delete(pod.metadata.name.as_deref().unwrap_or(""), &params).await {
                Ok(()) => {}
                // Gone already, or a new pod of the same name: nothing of ours to delete.
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => {
                    tracing::warn!(pod = %format_pod(pod), error = %e, "confirming the pod's deletion failed; retrying");
                    return Step::Again(ERROR_RETRY);
                }
            }
        }
        st.finished = true;
        if removed {
            s.registry.remove(&uid);
            return Step::Done;
        }
        Step::Idle
    }

    /// Fails a pod this node will not run (the decision is final; the status
    /// write is retried until it is made).
    async fn reject(&self, pod: &Arc<Pod>, st: &mut WorkerState, reason: &str, message: &str) -> Step {
        let s = &self.shared;
        if st.rejected.is_none() {
            tracing::info!(pod = %format_pod(pod), reason, message, "pod rejected");
            s.host.event(pod, EventType::Warning, reason, message);
            st.rejected = Some((reason.to_string(), message.to_string()));
        }
        let now = s.manager.clock().now();
        let written = self.write_status(pod, &|p: &Pod| status::rejected(p, reason, message, now)).await;
        st.rejection_written = written.is_some();
        st.last_status = written;
        if st.rejection_written {
            Step::Idle
        } else {
            Step::Again(ERROR_RETRY)
        }
    }

    // === status ===

    fn generate(&self, pod: &Pod, rt: &PodRuntime, state: &PodRuntimeState, st: &WorkerState, terminal: bool, evicted: Option<(String, String)>) -> PodStatus {
        let s = &self.shared;
        let uid = uid_of(pod);
        let old = st.last_status.clone().or_else(|| pod.status.clone()).unwrap_or_default();
        let readiness = HostReadiness { host: s.host.as_ref(), uid };
        status::generate(&StatusInput {
            pod,
            state,
            old: &old,
            waiting: &st.waiting,
            readiness: &readiness,
            host_ip: s.node_ip,
            own_network: rt.own_network,
            terminal,
            evicted,
            runtime_name: &rt.name,
            now: s.manager.clock().now(),
        })
    }

    /// Generates and writes the status; returns it.
    async fn write(&self, pod: &Arc<Pod>, rt: &PodRuntime, state: &PodRuntimeState, st: &mut WorkerState, terminal: bool, evicted: Option<(String, String)>) -> Option<PodStatus> {
        let written = {
            let st_ref: &WorkerState = st;
            self.write_status(pod, &|p: &Pod| self.generate(p, rt, state, st_ref, terminal, evicted.clone())).await
        };
        if written.is_some() {
            st.last_status = written.clone();
        }
        written
    }

    /// Writes the status `make` gives for the pod, unless the API has it already
    /// (a merge patch of `pods/status`, the resourceVersion as precondition). On a
    /// conflict the pod is read again and the status made again from it.
    async fn write_status(&self, pod: &Arc<Pod>, make: &(dyn Fn(&Pod) -> PodStatus + Sync)) -> Option<PodStatus> {
        let s = &self.shared;
        let mut current = pod.clone();
        for _ in 0..CONFLICT_RETRIES {
            let status = make(&current);
            let desired = serde_json::to_value(&status).unwrap_or(Value::Null);
            let observed = serde_json::to_value(&current.status).unwrap_or(Value::Null);
            if merge_patch_is_noop(&desired, &observed) {
                return Some(status);
            }
            let namespace = current.metadata.namespace.as_deref().unwrap_or("default");
            let name = current.metadata.name.as_deref().unwrap_or("");
            let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
            let body = json!({"metadata": {"resourceVersion": current.metadata.resource_version}, "status": desired});
            match s.client.patch(&path, PatchType::Merge, &body).await {
                Ok(v) => {
                    if let Ok(newer) = serde_json::from_value::<Pod>(v) {
                        s.registry.upsert(Arc::new(newer));
                    }
                    return Some(status);
                }
                Err(e) if e.is_not_found() => return None,
                Err(e) if e.is_conflict() => match s.client.get(&format!("/api/v1/namespaces/{namespace}/pods/{name}")).await {
                    Ok(v) => {
                        let Ok(fresh) = serde_json::from_value::<Pod>(v) else { return None };
                        if fresh.metadata.uid != pod.metadata.uid {
                            return None;
                        }
                        let fresh = Arc::new(fresh);
                        s.registry.upsert(fresh.clone());
                        current = fresh;
                    }
                    Err(e) => {
                        tracing::debug!(pod = %format_pod(pod), error = %e, "re-reading the pod after a conflict failed");
                        return None;
                    }
                },
                Err(e) => {
                    tracing::warn!(pod = %format_pod(pod), error = %e, "writing the pod status failed");
                    return None;
                }
            }
        }
        None
    }

    // === runtime choice ===

    async fn runtime_name(&self, runtime: &Arc<dyn Runtime>) -> Result<String, String> {
        let key = Arc::as_ptr(runtime) as *const () as usize;
        if let Some(name) = lock(&self.shared.runtime_names).get(&key) {
            return Ok(name.clone());
        }
        let version = runtime.version().await.map_err(|e| e.to_string())?;
        let name = version.split("://").next().unwrap_or(&version).to_string();
        lock(&self.shared.runtime_names).insert(key, name.clone());
        Ok(name)
    }

    /// Every runtime of the node once, with the handler name it serves pods under.
    pub(super) fn runtimes(&self) -> Vec<(String, Arc<dyn Runtime>)> {
        let s = &self.shared;
        let mut out: Vec<(String, Arc<dyn Runtime>)> = vec![(String::new(), s.default_runtime.clone())];
        for (handler, rt) in &s.handlers {
            if !out.iter().any(|(_, known)| Arc::ptr_eq(known, rt)) {
                out.push((handler.clone(), rt.clone()));
            }
        }
        out
    }

    /// The runtime a pod runs on: the one that has it already (after an agent
    /// restart), else its RuntimeClass's handler, else the default.
    async fn pod_runtime(&self, pod: &Pod) -> Result<PodRuntime, NoRuntime> {
        let uid = uid_of(pod);
        let mut chosen = None;
        for (handler, rt) in self.runtimes() {
            let has = rt.list_pod_sandboxes(uid).await.map_err(|e| NoRuntime::Unavailable(e.to_string()))?.iter().any(|sb| sb.labels.get(crate::runtime::labels::POD_UID).map(String::as_str) == Some(uid));
            if has {
                let handler = if handler == rt.handler() { String::new() } else { handler };
                chosen = Some((handler, rt));
                break;
            }
        }
        let (handler, runtime) = match chosen {
            Some(c) => c,
            None => self.runtime_for_class(pod).await?,
        };
        let name = self.runtime_name(&runtime).await.map_err(NoRuntime::Unavailable)?;
        let own_network = !host_network(pod) && runtime.handler() != "process";
        Ok(PodRuntime { runtime, handler, name, own_network })
    }

    async fn runtime_for_class(&self, pod: &Pod) -> Result<(String, Arc<dyn Runtime>), NoRuntime> {
        let s = &self.shared;
        let Some(class) = pod.spec.as_ref().and_then(|s| s.runtime_class_name.as_deref()).filter(|c| !c.is_empty()) else {
            return Ok((String::new(), s.default_runtime.clone()));
        };
        let handler = match s.client.get(&format!("/apis/node.k8s.io/v1/runtimeclasses/{class}")).await {
            Ok(v) => v.get("handler").and_then(Value::as_str).unwrap_or("").to_string(),
            Err(e) if e.is_not_found() => return Err(NoRuntime::MissingClass(format!("RuntimeClass {class:?} not found"))),
            Err(e) => return Err(NoRuntime::MissingClass(format!("reading RuntimeClass {class:?}: {e}"))),
        };
        if handler == s.default_runtime.handler() {
            return Ok((String::new(), s.default_runtime.clone()));
        }
        if let Some(rt) = s.handlers.get(&handler) {
            let passed = if rt.handler() == handler { String::new() } else { handler };
            return Ok((passed, rt.clone()));
        }
        let known: Vec<String> = std::iter::once(s.default_runtime.handler().to_string()).chain(s.handlers.keys().cloned()).collect();
        Err(NoRuntime::Unknown(format!(
            "Pod was rejected: RuntimeClass {class:?} names handler {handler:?}, which node {} does not run (it runs: {})",
            s.node_name,
            known.join(", ")
        )))
    }

    // === probes ===

    fn deadline(&self, pod: &Pod, st: &WorkerState) -> Option<Timestamp> {
        let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
        let start = st.last_status.as_ref().and_then(|s| s.start_time.clone()).or_else(|| pod.status.as_ref().and_then(|s| s.start_time.clone()))?;
        Some(plus(start.0, Duration::from_secs(seconds.max(0) as u64)))
    }

    fn probe_state(&self, pod: &Pod, state: &PodRuntimeState) -> ProbeState {
        let s = &self.shared;
        let uid = uid_of(pod);
        let failures = lock(&s.probe_failures);
        let failed = state.containers.iter().filter_map(|c| failures.get(c.id()).map(|(_, kind)| (c.id().to_string(), *kind))).collect();
        let started = containers(pod).iter().chain(init_containers(pod)).map(|c| c.name.clone()).filter(|n| s.host.is_started(uid, n)).collect();
        ProbeState { failed, started }
    }

    /// Probers follow the running instance of each container.
    fn reconcile_probes(&self, pod: &Pod, rt: &PodRuntime, state: &PodRuntimeState, st: &mut WorkerState) {
        let s = &self.shared;
        let uid = uid_of(pod);
        let pod_ip = if rt.own_network { state.pod_ips().first().copied() } else { Some(s.node_ip) };
        // Every running container is known to the probers, with probes or not: they
        // say when it started and whether it is ready.
        for c in containers(pod).iter().chain(init_containers(pod)) {
            match state.latest(&c.name).filter(|i| i.is_running()) {
                Some(instance) => {
                    if st.probed.get(&c.name).map(String::as_str) == Some(instance.id()) {
                        continue;
                    }
                    if st.probed.contains_key(&c.name) {
                        s.host.stop_probing(uid, &c.name);
                    }
                    let target = ProbeTarget {
                        pod_uid: uid.to_string(),
                        pod_namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                        pod_name: pod.metadata.name.clone().unwrap_or_default(),
                        container_name: c.name.clone(),
                        container_id: instance.id().to_string(),
                        pod_ip,
                        runtime: rt.runtime.clone(),
                    };
                    s.host.probe_container(target, c);
                    st.probed.insert(c.name.clone(), instance.id().to_string());
                }
                None => {
                    if st.probed.remove(&c.name).is_some() {
                        s.host.stop_probing(uid, &c.name);
                    }
                }
            }
        }
        let running: HashSet<&str> = state.running().map(|c| c.id()).collect();
        lock(&s.probe_failures).retain(|id, (u, _)| u != uid || running.contains(id.as_str()));
    }

    /// Probe results: Unhealthy events, failures remembered for the next sync, and
    /// the pod's worker woken to act on them and report readiness.
    async fn probe_results(self, mut updates: mpsc::UnboundedReceiver<ProbeUpdate>) {
        while let Some(u) = updates.recv().await {
            let s = &self.shared;
            let Some((pod, _)) = s.registry.get(&u.pod_uid) else { continue };
            if !u.success {
                let kind = match u.kind {
                    ProbeKind::Liveness => "Liveness",
                    ProbeKind::Readiness => "Readiness",
                    ProbeKind::Startup => "Startup",
                };
                s.host.event(&pod, EventType::Warning, "Unhealthy", &format!("{kind} probe failed: {}", u.message));
                if u.kind != ProbeKind::Readiness {
                    lock(&s.probe_failures).insert(u.container_id.clone(), (u.pod_uid.clone(), u.kind));
                }
            }
            self.update(Change { uid: u.pod_uid, terminating: false });
        }
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
