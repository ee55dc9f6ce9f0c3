//! Probes (liveness, readiness, startup) and lifecycle hooks (postStart, preStop),
//! with the kubelet's semantics: a worker per probe and container, results that
//! change only after successThreshold/failureThreshold consecutive outcomes,
//! readiness false until the first success, startup gating the other two.
//!
//! - [`ProbeManager`]: the workers and their results; the kubelet reads
//!   [`ProbeManager::is_ready`]/[`ProbeManager::is_started`] when it writes pod
//!   status and reacts to [`ProbeUpdate`]s (restart on liveness/startup failure,
//!   re-sync on readiness changes).
//! - [`run_hook`]: postStart/preStop handlers.
//! - `handlers`, `http`, `grpc`: one attempt of each handler, judged and worded
//!   like upstream's `pkg/probe`.

mod grpc;
mod handlers;
mod http;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};

use crate::runtime::{labels, Runtime, RuntimeError};
use handlers::{AbortOnDrop, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl fmt::Display for ProbeKind {
    /// As events write it: "Liveness probe failed: …".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}

/// The container a prober works on.
#[derive(Clone)]
pub struct ProbeTarget {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub container_name: String,
    /// The runtime's id of this container instance; a restart is a new target.
    pub container_id: String,
    pub pod_ip: Option<IpAddr>,
    pub runtime: Arc<dyn Runtime>,
}

/// A probe's result changed (after its thresholds), or a liveness/startup probe
/// failed for good and the container must be restarted.
#[derive(Debug, Clone)]
pub struct ProbeUpdate {
    pub pod_uid: String,
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    pub success: bool,
    /// Why it failed ("HTTP probe failed with statuscode: 500"), for the Unhealthy
    /// event; empty on success.
    pub message: String,
}

/// The event reason of a probe that failed or could not run.
pub const REASON_UNHEALTHY: &str = "Unhealthy";
/// The event reason of a probe that passed with a warning (a redirect to another host).
pub const REASON_PROBE_WARNING: &str = "ProbeWarning";

/// One probe attempt worth a Warning event on the pod, whatever the thresholds
/// made of it: upstream records an `Unhealthy` event for every failed attempt
/// ("Readiness probe failed: HTTP probe failed with statuscode: 500", counted
/// up by the event recorder), so `kubectl describe` shows failures before they
/// add up to a restart.
#[derive(Debug, Clone)]
pub struct ProbeEvent {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub container_name: String,
    pub container_id: String,
    pub kind: ProbeKind,
    /// [`REASON_UNHEALTHY`] or [`REASON_PROBE_WARNING`].
    pub reason: &'static str,
    /// The whole event message ("Liveness probe failed: …").
    pub message: String,
}

/// Runs the probes of every container that has them.
///
/// Dropping the manager stops every worker.
pub struct ProbeManager {
    shared: Arc<Shared>,
}

/// What the manager and its workers share.
struct Shared {
    updates: mpsc::UnboundedSender<ProbeUpdate>,
    events: Mutex<Option<mpsc::UnboundedSender<ProbeEvent>>>,
    /// When the manager was made: workers starting within one period of it spread
    /// their first probe over the period (after an agent restart every container
    /// is added at once).
    created: Instant,
    /// Pod uid → container name → probe state. A std Mutex: it is never held
    /// across an await.
    pods: Mutex<HashMap<String, HashMap<String, ContainerProbes>>>,
}

/// The probe state of one container instance.
struct ContainerProbes {
    container_id: String,
    /// The startup probe succeeded (true from the start without one).
    started: bool,
    has_readiness: bool,
    /// The readiness probe's result once a threshold was reached (false before).
    ready: Option<bool>,
    /// Dropping these stops the workers.
    workers: Vec<WorkerHandle>,
}

struct WorkerHandle {
    kind: ProbeKind,
    /// Asks the worker to probe now instead of at its next tick.
    trigger: Arc<Notify>,
    _task: AbortOnDrop,
}

impl ContainerProbes {
    fn trigger(&self, kind: ProbeKind) {
        if let Some(worker) = self.workers.iter().find(|w| w.kind == kind) {
            worker.trigger.notify_one();
        }
    }
}

// === impl ProbeManager ===

impl ProbeManager {
    /// The manager and the stream of result changes.
    pub fn new() -> (ProbeManager, tokio::sync::mpsc::UnboundedReceiver<ProbeUpdate>) {
        let (updates, rx) = mpsc::unbounded_channel();
        let shared = Shared { updates, events: Mutex::new(None), created: Instant::now(), pods: Mutex::new(HashMap::new()) };
        (ProbeManager { shared: Arc::new(shared) }, rx)
    }

    /// Every probe attempt that failed, errored or passed with a warning, from
    /// now on, for the pod's Warning events. A later call replaces the stream.
    pub fn events(&self) -> mpsc::UnboundedReceiver<ProbeEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.shared.events.lock().unwrap() = Some(tx);
        rx
    }

    /// Starts the container's probe workers (none for a container without probes).
    ///
    /// Adding the instance that is already there does nothing; adding another
    /// instance (a restart) replaces the previous one's workers and results.
    /// Must be called within a Tokio runtime.
    pub fn add_container(&self, target: ProbeTarget, container: &Container) {
        let mut pods = self.shared.pods.lock().unwrap();
        let containers = pods.entry(target.pod_uid.clone()).or_default();
        if containers.get(&target.container_name).is_some_and(|c| c.container_id == target.container_id) {
            return;
        }
        let added = Instant::now();
        let mut workers = Vec::new();
        let probes = [(ProbeKind::Startup, &container.startup_probe), (ProbeKind::Liveness, &container.liveness_probe), (ProbeKind::Readiness, &container.readiness_probe)];
        for (kind, probe) in probes {
            let Some(probe) = probe else { continue };
            let trigger = Arc::new(Notify::new());
            let worker = Worker {
                shared: self.shared.clone(),
                kind,
                spec: Spec::new(kind, probe),
                probe: probe.clone(),
                container: container.clone(),
                target: target.clone(),
                trigger: trigger.clone(),
                added,
                last: None,
                run: 0,
            };
            // The lock is held until the entry is in place, so a worker never
            // looks for its container before it exists.
            let task = tokio::spawn(worker.run());
            workers.push(WorkerHandle { kind, trigger, _task: AbortOnDrop(task.abort_handle()) });
        }
        let probes = ContainerProbes {
            container_id: target.container_id.clone(),
            started: container.startup_probe.is_none(),
            has_readiness: container.readiness_probe.is_some(),
            ready: None,
            workers,
        };
        containers.insert(target.container_name.clone(), probes);
    }

    /// Stops the workers of one container (it exited or is being restarted).
    pub fn remove_container(&self, pod_uid: &str, container_name: &str) {
        let mut pods = self.shared.pods.lock().unwrap();
        if let Some(containers) = pods.get_mut(pod_uid) {
            containers.remove(container_name);
            if containers.is_empty() {
                pods.remove(pod_uid);
            }
        }
    }

    /// Stops every worker of the pod.
    pub fn remove_pod(&self, pod_uid: &str) {
        self.shared.pods.lock().unwrap().remove(pod_uid);
    }

    /// The pod is shutting down: its liveness and startup probes stop, so that a
    /// container is not restarted while it terminates, and a container still
    /// starting counts as started (upstream's quiet shutdown); readiness probes
    /// go on, so the pod leaves its Services' endpoints as its containers stop
    /// answering.
    pub fn pod_terminating(&self, pod_uid: &str) {
        let mut pods = self.shared.pods.lock().unwrap();
        for probes in pods.get_mut(pod_uid).into_iter().flat_map(|c| c.values_mut()) {
            probes.workers.retain(|w| w.kind == ProbeKind::Readiness);
            probes.started = true;
        }
    }

    /// Readiness as the kubelet reports it: true once the readiness probe has
    /// succeeded (immediately for a container without one, once started).
    pub fn is_ready(&self, pod_uid: &str, container_name: &str) -> bool {
        let pods = self.shared.pods.lock().unwrap();
        let Some(probes) = pods.get(pod_uid).and_then(|c| c.get(container_name)) else {
            return false;
        };
        if !probes.started {
            return false;
        }
        if !probes.has_readiness {
            return true;
        }
        match probes.ready {
            Some(ready) => ready,
            None => {
                // No result yet: probe now rather than at the next tick (upstream
                // does the same when it writes status).
                probes.trigger(ProbeKind::Readiness);
                false
            }
        }
    }

    /// `started` of the container status: true once the startup probe succeeded (at
    /// once without one).
    pub fn is_started(&self, pod_uid: &str, container_name: &str) -> bool {
        let pods = self.shared.pods.lock().unwrap();
        pods.get(pod_uid).and_then(|c| c.get(container_name)).is_some_and(|p| p.started)
    }
}

impl Drop for ProbeManager {
    fn drop(&mut self) {
        if let Ok(mut pods) = self.shared.pods.lock() {
            pods.clear();
        }
    }
}

// === impl Shared ===

impl Shared {
    /// Whether this worker's container has started; None once the instance was
    /// removed or replaced (the worker then ends).
    fn started(&self, target: &ProbeTarget) -> Option<bool> {
        let pods = self.pods.lock().unwrap();
        let probes = pods.get(&target.pod_uid)?.get(&target.container_name)?;
        (probes.container_id == target.container_id).then_some(probes.started)
    }

    /// Stores a result that reached its threshold and tells the kubelet what
    /// changed. Returns whether the worker should keep probing.
    fn record(&self, target: &ProbeTarget, kind: ProbeKind, success: bool, message: String) -> bool {
        let mut pods = self.pods.lock().unwrap();
        let Some(probes) = pods.get_mut(&target.pod_uid).and_then(|c| c.get_mut(&target.container_name)) else {
            return false;
        };
        if probes.container_id != target.container_id {
            return false;
        }
        let update = |success: bool, message: String| {
            let _ = self.updates.send(ProbeUpdate {
                pod_uid: target.pod_uid.clone(),
                container_name: target.container_name.clone(),
                container_id: target.container_id.clone(),
                kind,
                success,
                message,
            });
        };
        match kind {
            ProbeKind::Readiness => {
                let before = probes.ready.unwrap_or(false);
                probes.ready = Some(success);
                if before != success {
                    update(success, message);
                }
                true
            }
            ProbeKind::Liveness if success => true,
            // The container will be restarted; a new instance gets new workers.
            ProbeKind::Liveness => {
                update(false, message);
                false
            }
            ProbeKind::Startup => {
                if success {
                    probes.started = true;
                    probes.trigger(ProbeKind::Readiness);
                    update(true, String::new());
                } else {
                    update(false, message);
                }
                false
            }
        }
    }

    fn event(&self, target: &ProbeTarget, kind: ProbeKind, reason: &'static str, message: String) {
        let mut events = self.events.lock().unwrap();
        let Some(tx) = events.as_ref() else { return };
        let event = ProbeEvent {
            pod_uid: target.pod_uid.clone(),
            pod_namespace: target.pod_namespace.clone(),
            pod_name: target.pod_name.clone(),
            container_name: target.container_name.clone(),
            container_id: target.container_id.clone(),
            kind,
            reason,
            message,
        };
        if tx.send(event).is_err() {
            *events = None;
        }
    }
}

// === impl Worker ===

/// A probe's timing and thresholds with the API's defaults filled in (the API
/// server defaults them too, but an adopted or hand-made spec may lack them).
#[derive(Debug, Clone, Copy)]
struct Spec {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Spec {
    fn new(kind: ProbeKind, probe: &Probe) -> Spec {
        let positive = |value: Option<i32>, default: u32| value.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0).unwrap_or(default);
        Spec {
            initial_delay: Duration::from_secs(probe.initial_delay_seconds.and_then(|v| u64::try_from(v).ok()).unwrap_or(0)),
            period: Duration::from_secs(u64::from(positive(probe.period_seconds, 10))),
            timeout: Duration::from_secs(u64::from(positive(probe.timeout_seconds, 1))),
            // Validation requires 1 for liveness and startup probes.
            success_threshold: if kind == ProbeKind::Readiness { positive(probe.success_threshold, 1) } else { 1 },
            failure_threshold: positive(probe.failure_threshold, 3),
        }
    }
}

/// Upstream retries a probe that could not run at all (not one that failed).
const MAX_PROBE_RETRIES: usize = 3;

/// Probes one container with one probe until the container goes away, its
/// liveness/startup probe fails for good, or its startup probe succeeds.
struct Worker {
    shared: Arc<Shared>,
    kind: ProbeKind,
    spec: Spec,
    probe: Probe,
    container: Container,
    target: ProbeTarget,
    trigger: Arc<Notify>,
    /// When the manager was given the container: the start for initialDelaySeconds
    /// when the runtime does not say when it started.
    added: Instant,
    /// The last outcome and how many times in a row it came.
    last: Option<bool>,
    run: u32,
}

impl Worker {
    async fn run(mut self) {
        if self.shared.created.elapsed() < self.spec.period {
            tokio::time::sleep(self.spec.period.mul_f64(rand::random::<f64>())).await;
        }
        let started_at = self.started_at().await;
        let mut ticker = tokio::time::interval_at(Instant::now() + self.spec.period, self.spec.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while self.probe_once(started_at).await {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.trigger.notified() => {}
            }
        }
        tracing::debug!(pod = %self.target.pod_name, container = %self.target.container_name, kind = %self.kind, "probe worker done");
    }

    /// When the container started, from the runtime (a container adopted after an
    /// agent restart may be long past its initial delay).
    async fn started_at(&self) -> Instant {
        let status = tokio::time::timeout(Duration::from_secs(2), self.target.runtime.container_status(&self.target.container_id)).await;
        let Ok(Ok(status)) = status else { return self.added };
        let Some(started) = status.started_at else { return self.added };
        let running_for = jiff::Timestamp::now().duration_since(started);
        match Duration::try_from(running_for) {
            Ok(running_for) => Instant::now().checked_sub(running_for).unwrap_or(self.added).min(self.added),
            Err(_) => self.added,
        }
    }

    /// One tick; false when the worker is done.
    async fn probe_once(&mut self, started_at: Instant) -> bool {
        let Some(started) = self.shared.started(&self.target) else {
            return false;
        };
        if started_at.elapsed() < self.spec.initial_delay {
            return true;
        }
        match self.kind {
            ProbeKind::Startup if started => return false,
            ProbeKind::Liveness | ProbeKind::Readiness if !started => return true,
            _ => {}
        }
        let (success, message) = match self.attempt().await {
            Outcome::Success(_) => (true, String::new()),
            Outcome::Warning(warning) => {
                self.event(REASON_PROBE_WARNING, format!("{} probe warning: {warning}", self.kind));
                (true, String::new())
            }
            Outcome::Failure(output) => {
                self.event(REASON_UNHEALTHY, format!("{} probe failed: {output}", self.kind));
                (false, output)
            }
            Outcome::Error(err) => {
                // Neither a success nor a failure: the result stays as it was.
                tracing::warn!(pod = %self.target.pod_name, container = %self.target.container_name, kind = %self.kind, error = %err, "probe errored");
                self.event(REASON_UNHEALTHY, format!("{} probe errored and resulted in unknown state: {err}", self.kind));
                return true;
            }
        };
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success { self.spec.success_threshold } else { self.spec.failure_threshold };
        if self.run < threshold {
            return true;
        }
        self.shared.record(&self.target, self.kind, success, message)
    }

    async fn attempt(&self) -> Outcome {
        let ctx = handlers::Context {
            runtime: self.target.runtime.as_ref(),
            container_id: &self.target.container_id,
            container: &self.container,
            pod_ip: self.target.pod_ip,
            timeout: self.spec.timeout,
        };
        let mut outcome = Outcome::Error(String::new());
        for _ in 0..MAX_PROBE_RETRIES {
            outcome = handlers::run(&self.probe, &ctx).await;
            if !matches!(outcome, Outcome::Error(_)) {
                break;
            }
        }
        tracing::trace!(pod = %self.target.pod_name, container = %self.target.container_name, kind = %self.kind, ?outcome, "probed");
        outcome
    }

    fn event(&self, reason: &'static str, message: String) {
        self.shared.event(&self.target, self.kind, reason, message);
    }
}

// === lifecycle hooks ===

/// Runs a lifecycle hook (exec, httpGet, sleep) to completion; the error is what
/// the FailedPostStartHook/FailedPreStopHook event says.
///
/// `timeout` bounds the hook (the preStop grace period); zero means no bound. As
/// upstream, an httpGet hook fails only when no response comes (any status
/// passes), and a tcpSocket hook, deprecated and never supported, is an invalid
/// handler.
pub async fn run_hook(runtime: &dyn Runtime, container_id: &str, pod_ip: Option<IpAddr>, container: &Container, handler: &LifecycleHandler, timeout: Duration) -> Result<(), String> {
    let failure = if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        match exec_hook(runtime, container_id, &command, timeout).await {
            Ok(()) => return Ok(()),
            Err((error, output)) => format!("Exec lifecycle hook ([{}]) for Container {:?}{} failed - error: {error}, message: {output:?}", command.join(" "), container.name, in_pod(runtime, container_id).await),
        }
    } else if let Some(get) = &handler.http_get {
        let path = get.path.clone().unwrap_or_default();
        let error = match http::Request::for_action(get, container, pod_ip, "lifecycle") {
            Err(err) => err,
            Ok(request) => {
                let result = if timeout.is_zero() { Some(http::hook(&request).await) } else { tokio::time::timeout(timeout, http::hook(&request)).await.ok() };
                match result {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(err)) => err,
                    None => format!("Get \"{}\": context deadline exceeded", request.url()),
                }
            }
        };
        format!("HTTP lifecycle hook ({path}) for Container {:?}{} failed - error: {error}", container.name, in_pod(runtime, container_id).await)
    } else if let Some(sleep) = &handler.sleep {
        let seconds = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
        if timeout.is_zero() || seconds <= timeout {
            tokio::time::sleep(seconds).await;
            return Ok(());
        }
        tokio::time::sleep(timeout).await;
        format!(
            "Sleep lifecycle hook ({}) for Container {:?}{} failed - error: container terminated before sleep hook finished",
            sleep.seconds,
            container.name,
            in_pod(runtime, container_id).await
        )
    } else {
        let kind = if handler.tcp_socket.is_some() { "tcpSocket is not supported" } else { "no action" };
        format!("Cannot run handler: invalid handler: {kind}")
    };
    tracing::info!(container = %container.name, message = %failure, "lifecycle hook failed");
    Err(failure)
}

/// Runs the hook's command; Err is (error, output) in the kubelet's words.
async fn exec_hook(runtime: &dyn Runtime, container_id: &str, command: &[String], timeout: Duration) -> Result<(), (String, String)> {
    match handlers::exec(runtime, container_id, command, timeout).await {
        Ok(output) if output.exit_code == 0 => Ok(()),
        Ok(output) => Err((
            format!("command '{}' exited with {}: {}", command.join(" "), output.exit_code, String::from_utf8_lossy(&output.stderr)),
            handlers::combined_output(&output.stdout, &output.stderr),
        )),
        Err(RuntimeError::Timeout(_)) => Err((handlers::exec_timeout_message(command), String::new())),
        Err(err) => Err((err.to_string(), String::new())),
    }
}

/// ` in Pod "name_namespace(uid)"` from the container's labels, as upstream's
/// hook messages name the pod; empty if the runtime cannot say.
async fn in_pod(runtime: &dyn Runtime, container_id: &str) -> String {
    let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), runtime.container_status(container_id)).await else {
        return String::new();
    };
    let label = |key: &str| status.labels.get(key).cloned().unwrap_or_default();
    let (name, namespace, uid) = (label(labels::POD_NAME), label(labels::POD_NAMESPACE), label(labels::POD_UID));
    if name.is_empty() {
        return String::new();
    }
    format!(" in Pod \"{name}_{namespace}({uid})\"")
}

#[cfg(test)]
mod tests;
