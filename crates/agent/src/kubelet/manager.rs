//! Carrying out a pod's actions on its runtime (upstream's
//! `kubeGenericRuntimeManager`): [`RuntimeManager::sync_pod`] makes one step towards
//! the spec (sandbox, init containers, sidecars, containers, restarts with
//! back-off), and [`RuntimeManager::kill_pod`] stops a pod with its grace period
//! (preStop hooks, main containers before sidecars, then the sandbox).
//!
//! Failures to start a container are not errors of the sync: they are remembered per
//! container (the reason a waiting container shows: `CrashLoopBackOff`,
//! `ErrImagePull`, `CreateContainerConfigError`, …) and the next sync tries again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_client::EventType;
use tokio::sync::watch;

use super::actions::{compute_pod_actions, container_hash, containers, init_containers, is_sidecar, KillReason, ProbeState};
use super::backoff::{Backoff, Clock};
use super::container::{container_config, restart_count_from_logs, termination_message_path, ContainerInputs};
use super::env::EnvContext;
use super::host::RuntimeHelper;
use super::images::{pull_policy, should_pull, with_default_tag, Keyring};
use super::podstate::{annotations, ObservedContainer, PodRuntimeState};
use super::sandbox::{hosts_file, log_directory, sandbox_config, NodeDns};
use super::status::{format_pod, Waiting};
use crate::runtime::{Runtime, RuntimeError, SandboxState};

/// Containers always get at least this long to stop (upstream's
/// `minimumGracePeriodInSeconds`).
pub const MIN_GRACE: Duration = Duration::from_secs(2);
/// The grace period when a pod says nothing (the API defaults it to 30 s).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How long a postStart hook may run. Upstream waits as long as it runs; a bound
/// keeps a hung hook from holding the pod's worker for ever (a deletion cancels
/// it sooner).
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(240);

/// The waiting reasons of containers that could not start, as upstream names them.
pub mod reasons {
    pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
    pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
    pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
    pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
    pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";
    pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";
}

/// Which runtime a pod runs on, and how.
#[derive(Clone)]
pub struct PodRuntime {
    pub runtime: Arc<dyn Runtime>,
    /// The RuntimeClass handler passed on to the runtime ("" for its default).
    pub handler: String,
    /// The prefix of container IDs in the status ("containerd", "process").
    pub name: String,
    /// The pod gets addresses of its own (not host network, not host processes).
    pub own_network: bool,
}

/// The node facts container configs need.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub node_ip: IpAddr,
    pub allocatable: BTreeMap<String, String>,
    pub dns: NodeDns,
}

impl NodeFacts {
    fn memory_capacity(&self) -> i128 {
        self.allocatable.get("memory").and_then(|m| skiff_api::validation::quantity::Quantity::parse(m).ok()).map_or(0, |q| q.value())
    }
}

/// What one sync leaves for the caller.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Sync again after this long at the latest (a back-off running out).
    pub retry_after: Option<Duration>,
    /// The sync failed before it could do its work (no sandbox, a kill failed).
    pub error: Option<String>,
}

/// A failed start: the waiting reason and its message.
type StartError = (String, String);

pub struct RuntimeManager {
    host: Arc<dyn RuntimeHelper>,
    clock: Clock,
    data_dir: PathBuf,
    node: NodeFacts,
    // std Mutex: only map operations under them, never an await.
    backoff: Mutex<Backoff>,
    image_backoff: Mutex<Backoff>,
}

fn lock(m: &Mutex<Backoff>) -> MutexGuard<'_, Backoff> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Go's formatting of a duration (`10s`, `5m0s`, `1.234s`, `523ms`).
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let frac = |value: u128, unit: u128| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let digits = unit.ilog10() as usize;
            let s = format!("{whole}.{rest:0digits$}");
            s.trim_end_matches('0').to_string()
        }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", frac(nanos, 1_000_000));
    }
    let secs = nanos / 1_000_000_000;
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let s = frac(nanos % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// The spec of a container of the pod (regular or init).
pub fn spec_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    containers(pod).iter().chain(init_containers(pod)).find(|c| c.name == name)
}

/// The grace period of one container kill (upstream's `setTerminationGracePeriod`):
/// the deletion's, else the pod's, or the probe's own after a failed probe.
pub fn termination_grace(pod: &Pod, spec: Option<&Container>, reason: KillReason) -> Duration {
    if let Some(d) = pod.metadata.deletion_grace_period_seconds {
        return Duration::from_secs(d.max(0) as u64);
    }
    let Some(pod_grace) = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds) else { return MIN_GRACE };
    let probe = match reason {
        KillReason::LivenessProbe => spec.and_then(|c| c.liveness_probe.as_ref()),
        KillReason::StartupProbe => spec.and_then(|c| c.startup_probe.as_ref()),
        _ => None,
    };
    let seconds = probe.and_then(|p| p.termination_grace_period_seconds).unwrap_or(pod_grace);
    Duration::from_secs(seconds.max(0) as u64)
}

/// The grace period of a whole pod's termination (upstream's
/// `calculateEffectiveGracePeriod`): the deletion's, else the pod's, at least 1 s.
pub fn pod_grace(pod: &Pod) -> Duration {
    let seconds = pod.metadata.deletion_grace_period_seconds.or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds)).unwrap_or(DEFAULT_GRACE.as_secs() as i64);
    Duration::from_secs(seconds.max(1) as u64)
}

/// Sidecars stop after the main containers, and each after the sidecars that
/// started after it (upstream's `terminationOrdering`).
struct TerminationOrdering {
    prereqs: HashMap<String, Vec<String>>,
    terminated: watch::Sender<HashSet<String>>,
}

impl TerminationOrdering {
    fn new(pod: &Pod, running: &[String]) -> TerminationOrdering {
        let all = containers(pod).iter().chain(init_containers(pod)).map(|c| c.name.clone());
        let done: HashSet<String> = all.filter(|n| !running.contains(n)).collect();
        let main: Vec<String> = containers(pod).iter().map(|c| c.name.clone()).collect();
        let mut prereqs = HashMap::new();
        let mut later_sidecar: Option<String> = None;
        for c in init_containers(pod).iter().rev().filter(|c| is_sidecar(c)) {
            let mut waits = main.clone();
            waits.extend(later_sidecar.clone());
            prereqs.insert(c.name.clone(), waits);
            later_sidecar = Some(c.name.clone());
        }
        TerminationOrdering { prereqs, terminated: watch::Sender::new(done) }
    }

    /// Waits (at most `budget`) until the containers `name` must outlive are gone;
    /// returns how long it waited.
    async fn wait_for_turn(&self, name: &str, budget: Duration) -> Duration {
        let Some(waits) = self.prereqs.get(name) else { return Duration::ZERO };
        let start = tokio::time::Instant::now();
        let mut rx = self.terminated.subscribe();
        let _ = tokio::time::timeout(budget, rx.wait_for(|done| waits.iter().all(|w| done.contains(w)))).await;
        start.elapsed()
    }

    fn container_terminated(&self, name: &str) {
        self.terminated.send_modify(|done| {
            done.insert(name.to_string());
        });
    }
}

impl RuntimeManager {
    pub fn new(host: Arc<dyn RuntimeHelper>, clock: Clock, data_dir: PathBuf, node: NodeFacts) -> RuntimeManager {
        RuntimeManager { host, clock, data_dir, node, backoff: Mutex::new(Backoff::containers()), image_backoff: Mutex::new(Backoff::images()) }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    pub fn host(&self) -> &Arc<dyn RuntimeHelper> {
        &self.host
    }

    pub fn node(&self) -> &NodeFacts {
        &self.node
    }

    /// `<data_dir>/pods/<uid>`: the pod's volumes, hosts file and termination
    /// message files.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    pub fn log_dir(&self, pod: &Pod) -> PathBuf {
        log_directory(&self.data_dir, pod)
    }

    fn backoff_key(pod: &Pod, c: &Container) -> String {
        let m = &pod.metadata;
        format!("{}_{}_{}_{}_{}", m.name.as_deref().unwrap_or(""), m.namespace.as_deref().unwrap_or(""), m.uid.as_deref().unwrap_or(""), c.name, container_hash(c))
    }

    /// Forgets the back-off of a pod that is gone.
    pub fn forget_pod(&self, pod: &Pod) {
        let m = &pod.metadata;
        let uid = m.uid.as_deref().unwrap_or("");
        lock(&self.backoff).reset_prefix(&format!("{}_{}_{uid}_", m.name.as_deref().unwrap_or(""), m.namespace.as_deref().unwrap_or("")));
        lock(&self.image_backoff).reset_prefix(&format!("{uid}_"));
        let now = self.clock.now();
        lock(&self.backoff).gc(now);
        lock(&self.image_backoff).gc(now);
    }

    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        self.host.event(pod, kind, reason, message);
    }

    /// One step of the pod towards its spec (upstream's `SyncPod`). `waiting` holds
    /// the last failed start of each container and is updated.
    pub async fn sync_pod(&self, pod: &Pod, rt: &PodRuntime, state: &PodRuntimeState, probes: &ProbeState, waiting: &mut HashMap<String, Waiting>) -> SyncOutcome {
        let actions = compute_pod_actions(pod, state, probes, rt.own_network);
        tracing::debug!(pod = %format_pod(pod), ?actions, "syncing pod");
        let mut outcome = SyncOutcome::default();

        if actions.create_sandbox && actions.sandbox_id.is_some() {
            self.event(pod, EventType::Normal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.");
        }
        if actions.kill_pod {
            if let Err(e) = self.kill_pod(pod, rt, state, None).await {
                outcome.error = Some(e);
                return outcome;
            }
            if !actions.create_sandbox {
                return outcome;
            }
            // A new sandbox starts initialization over.
            for c in init_containers(pod) {
                for old in state.instances(&c.name) {
                    let _ = rt.runtime.remove_container(old.id()).await;
                }
            }
        } else {
            for kill in &actions.containers_to_kill {
                let spec = spec_of(pod, &kill.name);
                if let Err(e) = self.kill_container(pod, rt, kill.id.as_str(), &kill.name, spec, &kill.message, kill.reason, None, None).await {
                    outcome.error = Some(e);
                    return outcome;
                }
            }
        }

        let attempt = if actions.create_sandbox { actions.attempt } else { state.sandbox().map_or(0, |s| s.attempt) };
        let config = sandbox_config(pod, &self.data_dir, &self.node.dns, attempt, &rt.handler);
        let (sandbox_id, ips) = if actions.create_sandbox {
            if let Err(e) = std::fs::create_dir_all(&config.log_directory) {
                tracing::warn!(pod = %format_pod(pod), error = %e, "cannot create the pod log directory");
            }
            let id = match rt.runtime.run_sandbox(&config).await {
                Ok(id) => id,
                Err(e) => {
                    let message = format!("Failed to create pod sandbox: {e}");
                    self.event(pod, EventType::Warning, "FailedCreatePodSandBox", &message);
                    outcome.error = Some(message);
                    return outcome;
                }
            };
            let ips = match rt.runtime.sandbox_status(&id).await {
                Ok(s) => s.ips,
                Err(e) => {
                    outcome.error = Some(format!("Failed to get pod sandbox status: {e}"));
                    return outcome;
                }
            };
            (id, ips)
        } else {
            match actions.sandbox_id.clone() {
                Some(id) => (id, state.pod_ips()),
                None => return outcome,
            }
        };
        let ips: Vec<IpAddr> = if rt.own_network { ips } else { vec![self.node.node_ip] };

        let ctx = StartContext { pod, rt, state, sandbox_id: &sandbox_id, sandbox: &config, ips: &ips, keyring: tokio::sync::OnceCell::new() };
        for &idx in &actions.init_containers_to_start {
            let c = &init_containers(pod)[idx];
            match self.start(&ctx, c, true).await {
                Ok(()) => {
                    waiting.remove(&c.name);
                }
                Err((reason, message, retry)) => {
                    outcome.retry_after = min_retry(outcome.retry_after, retry);
                    waiting.insert(c.name.clone(), Waiting { reason, message });
                    if !is_sidecar(c) {
                        return outcome;
                    }
                }
            }
        }
        // The regular containers start together (their images pull at once).
        let starts = actions.containers_to_start.iter().map(|&idx| {
            let c = &containers(pod)[idx];
            let ctx = &ctx;
            async move { (c, self.start(ctx, c, false).await) }
        });
        for (c, result) in join_all(starts).await {
            match result {
                Ok(()) => {
                    waiting.remove(&c.name);
                }
                Err((reason, message, retry)) => {
                    outcome.retry_after = min_retry(outcome.retry_after, retry);
                    waiting.insert(c.name.clone(), Waiting { reason, message });
                }
            }
        }
        outcome
    }

    /// Starts one container: back-off, image, config, create, start, postStart.
    async fn start(&self, ctx: &StartContext<'_>, c: &Container, is_init: bool) -> Result<(), (String, String, Option<Duration>)> {
        let pod = ctx.pod;
        let now = self.clock.now();
        let key = Self::backoff_key(pod, c);
        // Back-off from the newest exit of this container.
        if let Some(exited) = ctx.state.instances(&c.name).find(|s| s.is_exited()) {
            let finished = exited.status.finished_at.unwrap_or(now);
            let remaining = lock(&self.backoff).remaining_since(&key, finished, now);
            if let Some(remaining) = remaining {
                let delay = lock(&self.backoff).get(&key);
                self.event(pod, EventType::Warning, "BackOff", &format!("Back-off restarting failed container {} in pod {}", c.name, format_pod(pod)));
                let message = format!("back-off {} restarting failed container={} pod={}", go_duration(delay), c.name, format_pod(pod));
                return Err((reasons::CRASH_LOOP_BACK_OFF.into(), message, Some(remaining)));
            }
            lock(&self.backoff).next(&key, finished, now);
        }

        let image = self.ensure_image(ctx, c).await.map_err(|(reason, message, retry)| {
            self.event(pod, EventType::Warning, "Failed", &format!("Error: {reason}"));
            (reason, message, retry)
        })?;
        self.start_container(ctx, c, is_init, image).await.map_err(|(reason, message)| (reason, message, None))
    }

    async fn start_container(&self, ctx: &StartContext<'_>, c: &Container, is_init: bool, image: String) -> Result<(), StartError> {
        let pod = ctx.pod;
        let runtime = &ctx.rt.runtime;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let log_dir = self.log_dir(pod);
        let attempt = match ctx.state.latest(&c.name) {
            Some(previous) => previous.restart_count as u32 + 1,
            None => restart_count_from_logs(&log_dir.join(&c.name)),
        };

        // Only the newest dead instance is kept (for `logs --previous`).
        for old in ctx.state.instances(&c.name).filter(|s| !s.is_running()).skip(1) {
            if let Err(e) = runtime.remove_container(old.id()).await {
                tracing::debug!(pod = %format_pod(pod), container = %c.name, error = %e, "removing an old container instance failed");
            }
        }

        let config_error = |message: String| {
            self.event(pod, EventType::Warning, "Failed", &format!("Error: {message}"));
            (reasons::CREATE_CONTAINER_CONFIG_ERROR.to_string(), message)
        };
        let env_ctx = EnvContext {
            host_ip: self.node.node_ip.to_string(),
            pod_ips: ctx.ips.iter().map(IpAddr::to_string).collect(),
            node_allocatable: self.node.allocatable.clone(),
        };
        let env = self.host.container_env(pod, c, &env_ctx).await.map_err(config_error)?;
        let mounts = self.host.mounts(pod, c, &env).map_err(config_error)?;
        std::fs::create_dir_all(log_dir.join(&c.name)).map_err(|e| config_error(format!("create container log directory for container {} failed: {e}", c.name)))?;
        let pod_dir = self.pod_dir(&uid);
        let hosts = if ctx.rt.own_network && !ctx.ips.is_empty() {
            let path = pod_dir.join("etc-hosts");
            write_if_changed(&path, &hosts_file(pod, ctx.ips, &self.node.dns.cluster_domain)).map_err(|e| config_error(format!("writing the hosts file failed: {e}")))?;
            Some(path)
        } else {
            None
        };
        let termination_file = if termination_message_path(c).is_empty() {
            None
        } else {
            let dir = pod_dir.join("containers").join(&c.name);
            let path = dir.join(format!("{:08x}", rand::random::<u32>()));
            match create_termination_file(&dir, &path) {
                Ok(()) => Some(path),
                Err(e) => {
                    tracing::warn!(pod = %format_pod(pod), container = %c.name, error = %e, "cannot create the termination message file");
                    None
                }
            }
        };
        let qos = pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_else(|| skiff_api::pod_resources::qos_class(&serde_json::to_value(pod).unwrap_or_default()).to_string());
        let config = container_config(ContainerInputs {
            pod,
            container: c,
            attempt,
            image,
            env,
            mounts,
            hosts_file: hosts,
            termination_file,
            qos: &qos,
            memory_capacity: self.node.memory_capacity(),
            is_init,
        });
        let id = runtime.create_container(ctx.sandbox_id, &config, ctx.sandbox).await.map_err(|e| {
            self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
            (reasons::CREATE_CONTAINER_ERROR.to_string(), e.to_string())
        })?;
        self.event(pod, EventType::Normal, "Created", &format!("Created container: {}", c.name));
        if let Err(e) = runtime.start_container(&id).await {
            self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
            return Err((reasons::RUN_CONTAINER_ERROR.into(), e.to_string()));
        }
        self.event(pod, EventType::Normal, "Started", &format!("Started container {}", c.name));

        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            if let Err(message) = self.host.run_hook(runtime.as_ref(), &id, ctx.ips.first().copied(), c, hook, POST_START_TIMEOUT).await {
                // The hook's output may hold secrets: the event does not repeat it.
                self.event(pod, EventType::Warning, "FailedPostStartHook", "PostStartHook failed");
                if let Err(e) = self.kill_container(pod, ctx.rt, &id, &c.name, Some(c), "FailedPostStartHook", KillReason::FailedPostStartHook, None, None).await {
                    tracing::warn!(pod = %format_pod(pod), container = %c.name, error = %e, "killing a container whose postStart hook failed");
                }
                return Err((reasons::POST_START_HOOK_ERROR.into(), message));
            }
        }
        Ok(())
    }

    /// Makes sure the image is there (upstream's `EnsureImageExists`); returns the
    /// image reference to create the container from.
    async fn ensure_image(&self, ctx: &StartContext<'_>, c: &Container) -> Result<String, (String, String, Option<Duration>)> {
        let pod = ctx.pod;
        let requested = c.image.clone().unwrap_or_default();
        let image = with_default_tag(&requested);
        let runtime = &ctx.rt.runtime;
        let present = match runtime.image_status(&image).await {
            Ok(info) => info.is_some(),
            Err(e) => return Err((reasons::ERR_IMAGE_PULL.into(), format!("Failed to inspect image {requested:?}: {e}"), None)),
        };
        if !should_pull(pull_policy(c), present) {
            if present {
                self.event(pod, EventType::Normal, "Pulled", &format!("Container image {requested:?} already present on machine"));
                return Ok(image);
            }
            let message = format!("Container image {requested:?} is not present with pull policy of Never");
            self.event(pod, EventType::Warning, "ErrImageNeverPull", &message);
            return Err((reasons::ERR_IMAGE_NEVER_PULL.into(), message, None));
        }
        let key = format!("{}_{requested}", pod.metadata.uid.as_deref().unwrap_or(""));
        let now = self.clock.now();
        if lock(&self.image_backoff).is_in_backoff_since_update(&key, now) {
            let message = format!("Back-off pulling image {requested:?}");
            self.event(pod, EventType::Normal, "BackOff", &message);
            let retry = lock(&self.image_backoff).remaining_since_update(&key, now);
            return Err((reasons::IMAGE_PULL_BACK_OFF.into(), message, retry));
        }
        self.event(pod, EventType::Normal, "Pulling", &format!("Pulling image {requested:?}"));
        let started = tokio::time::Instant::now();
        let keyring = ctx.keyring.get_or_init(|| self.host.pull_secrets(pod)).await;
        let credentials = keyring.lookup(&requested);
        let mut result = Err(RuntimeError::Failed("no pull attempted".into()));
        if credentials.is_empty() {
            result = runtime.pull_image(&image, None).await;
        } else {
            for auth in &credentials {
                result = runtime.pull_image(&image, Some(auth)).await;
                if result.is_ok() {
                    break;
                }
            }
        }
        match result {
            Ok(_) => {
                let took = go_duration(Duration::from_millis(started.elapsed().as_millis() as u64));
                let size = runtime.image_status(&image).await.ok().flatten().map_or(0, |i| i.size_bytes);
                self.event(pod, EventType::Normal, "Pulled", &format!("Successfully pulled image {requested:?} in {took} ({took} including waiting). Image size: {size} bytes."));
                lock(&self.image_backoff).reset(&key);
                Ok(image)
            }
            Err(e) => {
                // The runtime's own words, without repeating which image failed.
                let e = match e {
                    RuntimeError::ImagePull { message, .. } => message,
                    other => other.to_string(),
                };
                self.event(pod, EventType::Warning, "Failed", &format!("Failed to pull image {requested:?}: {e}"));
                let now = self.clock.now();
                lock(&self.image_backoff).next(&key, now, now);
                let retry = lock(&self.image_backoff).remaining_since_update(&key, now);
                Err((reasons::ERR_IMAGE_PULL.into(), e, retry))
            }
        }
    }

    /// Stops one container (upstream's `killContainer`): the Killing event, the
    /// preStop hook within the grace period, the container's turn (sidecars last),
    /// then a stop with what is left of the grace period (at least 2 s).
    #[allow(clippy::too_many_arguments)]
    async fn kill_container(
        &self,
        pod: &Pod,
        rt: &PodRuntime,
        id: &str,
        name: &str,
        spec: Option<&Container>,
        message: &str,
        reason: KillReason,
        grace_override: Option<Duration>,
        ordering: Option<&TerminationOrdering>,
    ) -> Result<(), String> {
        let mut grace = grace_override.unwrap_or_else(|| termination_grace(pod, spec, reason));
        let message = if message.is_empty() { format!("Stopping container {name}") } else { message.to_string() };
        self.event(pod, EventType::Normal, "Killing", &message);

        if let Some(hook) = spec.and_then(|c| c.lifecycle.as_ref()).and_then(|l| l.pre_stop.as_ref()) {
            if !grace.is_zero() {
                let started = tokio::time::Instant::now();
                let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
                let hook_run = self.host.run_hook(rt.runtime.as_ref(), id, ip, spec.expect("a hook comes with its spec"), hook, grace);
                match tokio::time::timeout(grace, hook_run).await {
                    Ok(Err(e)) => {
                        tracing::info!(pod = %format_pod(pod), container = name, error = %e, "preStop hook failed");
                        self.event(pod, EventType::Warning, "FailedPreStopHook", "PreStopHook failed");
                    }
                    Ok(Ok(())) => {}
                    Err(_) => tracing::info!(pod = %format_pod(pod), container = name, "preStop hook did not complete within the grace period"),
                }
                grace = grace.saturating_sub(started.elapsed());
            }
        }
        if let Some(ordering) = ordering {
            if !grace.is_zero() {
                grace = grace.saturating_sub(ordering.wait_for_turn(name, grace).await);
            }
        }
        let grace = grace.max(MIN_GRACE);
        let result = match rt.runtime.stop_container(id, grace).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(format!("failed to stop container {name:?}: {e}")),
        };
        if let Some(ordering) = ordering {
            ordering.container_terminated(name);
        }
        if let Some(uid) = pod.metadata.uid.as_deref() {
            self.host.stop_probing(uid, name);
        }
        result
    }

    /// Stops every running container of the pod, all at once, sidecars after the
    /// main containers, then its sandboxes (upstream's `KillPod`). `grace`
    /// overrides each container's grace period (a pod termination).
    pub async fn kill_pod(&self, pod: &Pod, rt: &PodRuntime, state: &PodRuntimeState, grace: Option<Duration>) -> Result<(), String> {
        let running: Vec<&ObservedContainer> = state.running().collect();
        let names: Vec<String> = running.iter().map(|c| c.name().to_string()).collect();
        let ordering = init_containers(pod).iter().any(is_sidecar).then(|| TerminationOrdering::new(pod, &names));
        let kills = running.iter().map(|c| {
            let spec = spec_of(pod, c.name());
            // A container the spec no longer names stops with the grace it was made with.
            let grace = grace.or_else(|| spec.is_none().then(|| annotated_grace(c)));
            self.kill_container(pod, rt, c.id(), c.name(), spec, "", KillReason::Unknown, grace, ordering.as_ref())
        });
        let errors: Vec<String> = join_all(kills).await.into_iter().filter_map(Result::err).collect();
        for sandbox in state.sandboxes.iter().filter(|s| s.state == SandboxState::Ready) {
            if let Err(e) = rt.runtime.stop_sandbox(&sandbox.id).await {
                if !matches!(e, RuntimeError::NotFound(_)) {
                    return Err(format!("failed to stop sandbox {}: {e}", sandbox.id));
                }
            }
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Removes every container and sandbox of the pod, its pod directory and logs
    /// (the pod is gone from the API, or about to be).
    pub async fn remove_pod(&self, pod: &Pod, rt: &PodRuntime, state: &PodRuntimeState) -> Result<(), String> {
        for c in &state.containers {
            match rt.runtime.remove_container(c.id()).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(format!("failed to remove container {}: {e}", c.name())),
            }
        }
        for s in &state.sandboxes {
            match rt.runtime.remove_sandbox(&s.id).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(format!("failed to remove sandbox {}: {e}", s.id)),
            }
        }
        remove_dir(&self.log_dir(pod));
        self.forget_pod(pod);
        Ok(())
    }
}

/// The grace period recorded on a container instance (the pod's, when it was made).
pub fn annotated_grace(c: &ObservedContainer) -> Duration {
    c.status.annotations.get(annotations::POD_TERMINATION_GRACE_PERIOD).and_then(|g| g.parse::<u64>().ok()).map_or(DEFAULT_GRACE, Duration::from_secs)
}

pub fn remove_dir(path: &Path) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a pod directory"),
    }
}

fn min_retry(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the starts of one sync share.
struct StartContext<'a> {
    pod: &'a Pod,
    rt: &'a PodRuntime,
    state: &'a PodRuntimeState,
    sandbox_id: &'a str,
    /// The sandbox's config, as containers are created with it.
    sandbox: &'a crate::runtime::SandboxConfig,
    ips: &'a [IpAddr],
    /// Read once per sync, when the first pull needs it.
    keyring: tokio::sync::OnceCell<Keyring>,
}

/// Writes a file (atomically) unless it already holds `content`.
fn write_if_changed(path: &Path, content: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

/// The empty, world-writable file a container's termination message goes into.
fn create_termination_file(dir: &Path, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::write(path, b"")?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::fake_runtime::{Behaviour, FakeHost, FakeRuntime};
    use crate::runtime::ContainerState;
    use serde_json::json;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(523)), "523ms");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    pub(crate) fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec.as_object_mut().unwrap().entry("terminationGracePeriodSeconds").or_insert(json!(30));
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec})).unwrap()
    }

    struct Harness {
        rt: Arc<FakeRuntime>,
        host: Arc<FakeHost>,
        manager: RuntimeManager,
        prt: PodRuntime,
        waiting: HashMap<String, Waiting>,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn new() -> Harness {
            let clock = Clock::tokio();
            let rt = Arc::new(FakeRuntime::with_clock(clock));
            rt.add_image("busybox:1.35");
            let host = Arc::new(FakeHost::default());
            let dir = tempfile::tempdir().unwrap();
            let node = NodeFacts {
                node_ip: "192.168.1.10".parse().unwrap(),
                allocatable: [("memory".to_string(), "8Gi".to_string())].into(),
                dns: NodeDns { cluster_dns: vec!["10.96.0.10".into()], cluster_domain: "cluster.local".into(), host: Default::default() },
            };
            let manager = RuntimeManager::new(host.clone(), clock, dir.path().to_path_buf(), node);
            let prt = PodRuntime { runtime: rt.clone(), handler: String::new(), name: "containerd".into(), own_network: true };
            Harness { rt, host, manager, prt, waiting: HashMap::new(), _dir: dir }
        }

        async fn state(&self) -> PodRuntimeState {
            PodRuntimeState::gather(self.rt.as_ref(), "u1").await.unwrap()
        }

        fn probes(&self, pod: &Pod) -> ProbeState {
            let started = containers(pod).iter().chain(init_containers(pod)).map(|c| c.name.clone()).filter(|n| self.host.is_started("u1", n)).collect();
            ProbeState { failed: HashMap::new(), started }
        }

        async fn sync(&mut self, pod: &Pod) -> SyncOutcome {
            let state = self.state().await;
            let probes = self.probes(pod);
            self.manager.sync_pod(pod, &self.prt, &state, &probes, &mut self.waiting).await
        }

        /// Syncs every second for `secs` seconds.
        async fn run_for(&mut self, pod: &Pod, secs: u64) {
            for _ in 0..secs {
                self.sync(pod).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }

        fn starts(&self) -> Vec<String> {
            self.rt.call_names().into_iter().filter(|c| c.starts_with("start ")).collect()
        }

        fn running(&self) -> Vec<String> {
            let mut names: Vec<String> = self.rt.all_containers().into_iter().filter(|c| c.state == ContainerState::Running).map(|c| c.name).collect();
            names.sort();
            names
        }
    }

    fn app(name: &str) -> serde_json::Value {
        json!({"name": name, "image": "busybox:1.35"})
    }

    #[tokio::test(start_paused = true)]
    async fn init_containers_run_in_order_to_completion_before_the_containers_start() {
        let mut h = Harness::new();
        h.rt.behave("i1", Behaviour::Exit { after: Duration::from_secs(3), code: 0 });
        h.rt.behave("i2", Behaviour::Exit { after: Duration::from_secs(2), code: 0 });
        let p = pod(json!({"initContainers": [app("i1"), app("i2")], "containers": [app("a"), app("b")]}));

        h.sync(&p).await;
        assert_eq!(h.starts(), ["start i1#0"]);
        h.run_for(&p, 2).await;
        assert_eq!(h.starts(), ["start i1#0"], "i2 waits for i1 to exit");
        h.run_for(&p, 10).await;
        assert_eq!(h.starts(), ["start i1#0", "start i2#0", "start a#0", "start b#0"]);
        let calls = h.rt.calls();
        let at = |what: &str| calls.iter().find(|c| c.what == what).unwrap().at;
        assert!(at("start i2#0") - at("start i1#0") >= Duration::from_secs(3));
        assert!(at("start a#0") - at("start i2#0") >= Duration::from_secs(2));
        assert_eq!(h.running(), ["a", "b"]);
        assert!(h.host.reasons().iter().filter(|r| *r == "Started").count() == 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_init_container_is_retried_with_back_off_and_blocks_the_rest() {
        let mut h = Harness::new();
        h.rt.behave("i1", Behaviour::Exit { after: Duration::ZERO, code: 1 });
        let p = pod(json!({"initContainers": [app("i1")], "containers": [app("a")]}));
        h.run_for(&p, 15).await;
        assert_eq!(h.starts(), ["start i1#0", "start i1#1", "start i1#2"], "immediately, then after 10 s");
        assert_eq!(h.waiting["i1"].reason, "CrashLoopBackOff");
        assert_eq!(h.running(), Vec::<String>::new());
        let old_instances = h.rt.all_containers().into_iter().filter(|c| c.name == "i1").count();
        assert_eq!(old_instances, 2, "only the newest dead instance is kept besides the current one");
    }

    #[tokio::test(start_paused = true)]
    async fn sidecars_start_in_order_keep_running_and_wait_for_their_startup_probe() {
        let mut h = Harness::new();
        h.rt.behave("setup", Behaviour::Exit { after: Duration::from_secs(1), code: 0 });
        h.host.set_started("proxy", false);
        let p = pod(json!({
            "initContainers": [
                {"name": "proxy", "image": "busybox:1.35", "restartPolicy": "Always", "startupProbe": {"exec": {"command": ["true"]}}},
                app("setup"),
                {"name": "log", "image": "busybox:1.35", "restartPolicy": "Always"}
            ],
            "containers": [app("main")]
        }));
        h.run_for(&p, 3).await;
        assert_eq!(h.starts(), ["start proxy#0"], "setup waits for the sidecar's startup probe");
        h.host.set_started("proxy", true);
        h.run_for(&p, 5).await;
        assert_eq!(h.starts(), ["start proxy#0", "start setup#0", "start log#0", "start main#0"]);
        assert_eq!(h.running(), ["log", "main", "proxy"]);

        // A sidecar that exits is restarted; the main container keeps running.
        h.rt.exit("log", 2);
        h.run_for(&p, 2).await;
        assert_eq!(h.starts().last().unwrap(), "start log#1");
        assert_eq!(h.running(), ["log", "main", "proxy"]);
    }

    #[tokio::test(start_paused = true)]
    async fn crashing_containers_restart_after_10_20_40_seconds() {
        let mut h = Harness::new();
        h.rt.behave("app", Behaviour::Exit { after: Duration::from_secs(1), code: 1 });
        let p = pod(json!({"containers": [app("app")]}));
        h.run_for(&p, 120).await;
        let calls = h.rt.calls();
        let starts: Vec<tokio::time::Instant> = calls.iter().filter(|c| c.what.starts_with("start app")).map(|c| c.at).collect();
        let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        // Each instance runs 1 s; the restarts wait 0, 10, 20, 40 s after the exit (to the next 1 s sync).
        assert_eq!(gaps, [1, 11, 21, 41], "{gaps:?}");
        let w = &h.waiting["app"];
        assert_eq!(w.reason, "CrashLoopBackOff");
        assert_eq!(w.message, "back-off 1m20s restarting failed container=app pod=p_default(u1)");
        assert!(h.host.events().iter().any(|e| e == "Warning BackOff: Back-off restarting failed container app in pod p_default(u1)"));
        let outcome = h.sync(&p).await;
        assert!(outcome.retry_after.is_some_and(|d| d <= Duration::from_secs(80)), "the worker is told when to come back");
    }

    #[tokio::test(start_paused = true)]
    async fn restart_policies_decide_which_exits_restart() {
        for (policy, code, restarts) in [("Always", 0, true), ("OnFailure", 0, false), ("OnFailure", 1, true), ("Never", 1, false)] {
            let mut h = Harness::new();
            h.rt.behave("app", Behaviour::Exit { after: Duration::ZERO, code });
            let p = pod(json!({"restartPolicy": policy, "containers": [app("app")]}));
            h.run_for(&p, 3).await;
            assert_eq!(h.starts().len() > 1, restarts, "{policy} with exit code {code}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn running_containers_are_adopted_after_a_restart_not_restarted() {
        let mut h = Harness::new();
        h.rt.behave("i1", Behaviour::Exit { after: Duration::ZERO, code: 0 });
        let p = pod(json!({"initContainers": [app("i1")], "containers": [app("app")]}));
        h.run_for(&p, 3).await;
        assert_eq!(h.running(), ["app"]);
        h.rt.clear_calls();

        // A new kubelet: fresh back-off and reason caches, the same runtime.
        let fresh = RuntimeManager::new(h.host.clone(), Clock::tokio(), h._dir.path().to_path_buf(), h.manager.node.clone());
        let state = h.state().await;
        let probes = h.probes(&p);
        let mut waiting = HashMap::new();
        for _ in 0..3 {
            fresh.sync_pod(&p, &h.prt, &state, &probes, &mut waiting).await;
        }
        assert_eq!(h.rt.call_names(), Vec::<String>::new(), "nothing is created, started or stopped");
    }

    #[tokio::test(start_paused = true)]
    async fn termination_runs_pre_stop_hooks_and_stops_sidecars_after_the_main_containers() {
        let mut h = Harness::new();
        h.rt.behave("app", Behaviour::Serve { stop_delay: Duration::from_secs(2), code: 0 });
        h.rt.behave("proxy", Behaviour::Serve { stop_delay: Duration::from_secs(1), code: 0 });
        h.host.hook_takes("app", Duration::from_secs(3));
        let p = pod(json!({
            "terminationGracePeriodSeconds": 10,
            "initContainers": [{"name": "proxy", "image": "busybox:1.35", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "busybox:1.35", "lifecycle": {"preStop": {"exec": {"command": ["sleep", "3"]}}}}]
        }));
        h.run_for(&p, 3).await;
        assert_eq!(h.running(), ["app", "proxy"]);
        h.rt.clear_calls();

        let t0 = tokio::time::Instant::now();
        let state = h.state().await;
        h.manager.kill_pod(&p, &h.prt, &state, Some(pod_grace(&p))).await.unwrap();
        let calls = h.rt.calls();
        let when = |what: &str| calls.iter().find(|c| c.what == what).map(|c| (c.at - t0).as_secs()).unwrap_or_else(|| panic!("no {what} in {calls:?}"));
        assert_eq!(when("stop app#0 grace=7s"), 3, "the preStop hook ran first and took 3 of the 10 s");
        assert_eq!(when("stopped app#0"), 5);
        assert_eq!(when("stop proxy#0 grace=5s"), 5, "the sidecar stops once the main container is gone");
        assert_eq!(when("stopped proxy#0"), 6);
        assert!(calls.iter().position(|c| c.what.starts_with("stop_sandbox")).unwrap() > calls.iter().position(|c| c.what == "stopped proxy#0").unwrap());
        assert_eq!(h.host.hooks().iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>(), ["preStop app"]);
        assert_eq!(h.host.events().iter().filter(|e| e.starts_with("Normal Killing: Stopping container")).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_container_that_ignores_sigterm_is_killed_when_the_grace_period_ends() {
        let mut h = Harness::new();
        h.rt.behave("app", Behaviour::Serve { stop_delay: Duration::from_secs(60), code: 0 });
        let p = pod(json!({"terminationGracePeriodSeconds": 5, "containers": [app("app")]}));
        h.run_for(&p, 1).await;
        let t0 = tokio::time::Instant::now();
        let state = h.state().await;
        h.manager.kill_pod(&p, &h.prt, &state, Some(pod_grace(&p))).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
        let c = h.rt.all_containers().into_iter().find(|c| c.name == "app").unwrap();
        assert_eq!((c.state, c.exit_code), (ContainerState::Exited, 137));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_post_start_hook_kills_the_container() {
        let mut h = Harness::new();
        h.host.fail_hooks("app");
        let p = pod(json!({"containers": [{"name": "app", "image": "busybox:1.35", "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}]}));
        h.sync(&p).await;
        assert_eq!(h.waiting["app"].reason, "PostStartHookError");
        assert!(h.host.events().contains(&"Warning FailedPostStartHook: PostStartHook failed".to_string()));
        assert!(h.host.events().contains(&"Normal Killing: FailedPostStartHook".to_string()));
        assert_eq!(h.running(), Vec::<String>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn image_problems_show_as_waiting_reasons() {
        let mut h = Harness::new();
        h.rt.fail_pulls("nope:1", "not found");
        let p = pod(json!({"containers": [{"name": "a", "image": "nope:1"}, {"name": "b", "image": "missing:2", "imagePullPolicy": "Never"}]}));
        h.sync(&p).await;
        assert_eq!(h.waiting["a"].reason, "ErrImagePull");
        assert_eq!(h.waiting["a"].message, "not found");
        assert!(h.host.events().contains(&"Warning Failed: Failed to pull image \"nope:1\": not found".to_string()));
        assert_eq!((h.waiting["b"].reason.as_str(), h.waiting["b"].message.as_str()), ("ErrImageNeverPull", "Container image \"missing:2\" is not present with pull policy of Never"));
        h.sync(&p).await;
        assert_eq!((h.waiting["a"].reason.as_str(), h.waiting["a"].message.as_str()), ("ImagePullBackOff", "Back-off pulling image \"nope:1\""));
        let events = h.host.events();
        assert!(events.contains(&"Normal Pulling: Pulling image \"nope:1\"".to_string()), "{events:?}");
        assert!(events.contains(&"Warning Failed: Error: ErrImagePull".to_string()));
        assert!(events.contains(&"Normal BackOff: Back-off pulling image \"nope:1\"".to_string()));

        let mut ok = Harness::new();
        let p = pod(json!({"containers": [app("a"), {"name": "b", "image": "fresh:1"}]}));
        ok.sync(&p).await;
        let events = ok.host.events();
        assert!(events.contains(&"Normal Pulled: Container image \"busybox:1.35\" already present on machine".to_string()));
        assert!(events.iter().any(|e| e.starts_with("Normal Pulled: Successfully pulled image \"fresh:1\" in ")), "{events:?}");
        assert_eq!(ok.running(), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_environment_is_a_create_container_config_error() {
        let mut h = Harness::new();
        let p = pod(json!({"containers": [{"name": "a", "image": "busybox:1.35", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}));
        h.sync(&p).await;
        assert_eq!(h.waiting["a"].reason, "CreateContainerConfigError");
        assert_eq!(h.waiting["a"].message, "couldn't find key for X");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_sandbox_is_recreated_and_initialization_starts_over() {
        let mut h = Harness::new();
        h.rt.behave("i1", Behaviour::Exit { after: Duration::ZERO, code: 0 });
        let p = pod(json!({"initContainers": [app("i1")], "containers": [app("app")]}));
        h.run_for(&p, 3).await;
        let sandbox = h.rt.all_sandboxes()[0].id.clone();
        h.rt.stop_sandbox(&sandbox).await.unwrap();
        h.rt.clear_calls();
        h.run_for(&p, 3).await;
        let calls = h.rt.call_names();
        assert!(calls.contains(&"run_sandbox p attempt=1".to_string()), "{calls:?}");
        assert!(calls.contains(&"start i1#1".to_string()) && calls.contains(&"start app#1".to_string()), "{calls:?}");
        assert!(h.host.events().contains(&"Normal SandboxChanged: Pod sandbox changed, it will be killed and re-created.".to_string()));
    }
}
