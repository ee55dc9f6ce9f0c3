//! The pod status the kubelet reports, as a pure function of the pod, what the
//! runtime has of it and what the probers say (upstream's `generateAPIPodStatus`,
//! `getPhase`, the condition generators and the status manager's bookkeeping).
//!
//! - Container statuses keep the newest instance as `state` and the one before it
//!   as `lastState`; a container that failed to start shows why in a waiting state
//!   (`CrashLoopBackOff`, `ErrImagePull`, `CreateContainerConfigError`, …).
//! - The phase follows upstream's rules per restartPolicy; a terminal phase never
//!   changes again.
//! - Conditions the kubelet does not own are kept, and a condition keeps its
//!   lastTransitionTime while its status does not change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus as ApiStatus, HostIP, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::actions::{containers, init_containers, is_sidecar, should_container_be_restarted};
use super::podstate::{ObservedContainer, PodRuntimeState};
use crate::runtime::ContainerState;

pub const PENDING: &str = "Pending";
pub const RUNNING: &str = "Running";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";

/// Conditions the kubelet owns; it leaves every other condition type alone.
const KUBELET_CONDITIONS: [&str; 5] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];

/// Why a container that should run does not: the last failed start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the probers say about the pod's containers (by name).
pub trait Readiness {
    /// The readiness probe succeeded (always, without one, once started).
    fn is_ready(&self, container: &str) -> bool;
    /// The startup probe succeeded (always, without one).
    fn is_started(&self, container: &str) -> bool;
}

/// Everything a status is made from.
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub state: &'a PodRuntimeState,
    /// The status the kubelet wrote last, or the API's.
    pub old: &'a PodStatus,
    /// The last failed start of each container that should run.
    pub waiting: &'a HashMap<String, Waiting>,
    pub readiness: &'a dyn Readiness,
    pub host_ip: IpAddr,
    /// The pod has addresses of its own (not host network, not host processes).
    pub own_network: bool,
    /// The pod is terminating or terminated: containers will not restart, whatever
    /// the policy, so the phase is final.
    pub terminal: bool,
    /// Set when the kubelet fails the pod itself (activeDeadlineSeconds): phase
    /// Failed with this reason and message.
    pub evicted: Option<(String, String)>,
    /// The prefix of container IDs: "containerd", "process".
    pub runtime_name: &'a str,
    pub now: Timestamp,
}

fn time(t: Option<Timestamp>) -> Option<Time> {
    t.map(Time)
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn waiting(reason: &str, message: &str) -> ApiState {
    ApiState { waiting: Some(ContainerStateWaiting { reason: some(reason), message: some(message) }), ..Default::default() }
}

fn unknown_termination(message: &str) -> ContainerStateTerminated {
    ContainerStateTerminated { exit_code: 137, reason: Some("ContainerStatusUnknown".into()), message: Some(message.into()), ..Default::default() }
}

/// One runtime instance as an API container status.
fn convert(c: &ObservedContainer, old: Option<&ApiStatus>, spec_image: &str, runtime_name: &str) -> ApiStatus {
    let cid = format!("{runtime_name}://{}", c.id());
    let mut status = ApiStatus {
        name: c.name().to_string(),
        restart_count: c.restart_count,
        image: if c.status.image.is_empty() { spec_image.to_string() } else { c.status.image.clone() },
        image_id: c.status.image_ref.clone(),
        container_id: Some(cid.clone()),
        volume_mounts: old.and_then(|o| o.volume_mounts.clone()),
        ..Default::default()
    };
    status.state = Some(match c.state() {
        ContainerState::Running => ApiState { running: Some(ContainerStateRunning { started_at: time(c.status.started_at) }), ..Default::default() },
        ContainerState::Created => ApiState { waiting: Some(ContainerStateWaiting::default()), ..Default::default() },
        ContainerState::Exited => ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.status.exit_code,
                reason: some(&c.status.reason),
                message: some(&c.message),
                started_at: time(c.status.started_at),
                finished_at: time(c.status.finished_at),
                container_id: Some(cid),
                signal: None,
            }),
            ..Default::default()
        },
        ContainerState::Unknown if old.is_some_and(|o| o.state.as_ref().is_some_and(|s| s.running.is_some())) => {
            status.restart_count = old.map_or(0, |o| o.restart_count) + 1;
            ApiState { terminated: Some(unknown_termination("The container could not be located when the pod was terminated")), ..Default::default() }
        }
        ContainerState::Unknown => ApiState { waiting: Some(ContainerStateWaiting::default()), ..Default::default() },
    });
    status
}

fn is_default_waiting(s: &ApiStatus, default_reason: &str) -> bool {
    s.state.as_ref().and_then(|s| s.waiting.as_ref()).is_some_and(|w| w.reason.as_deref() == Some(default_reason))
}

/// Upstream's `convertToAPIContainerStatuses`.
fn container_statuses(input: &StatusInput<'_>, specs: &[Container], previous: Option<&Vec<ApiStatus>>, is_init: bool) -> Vec<ApiStatus> {
    let pod = input.pod;
    let default_reason = if init_containers(pod).is_empty() { "ContainerCreating" } else { "PodInitializing" };
    let old: HashMap<&str, &ApiStatus> = previous.into_iter().flatten().map(|s| (s.name.as_str(), s)).collect();

    let mut statuses: BTreeMap<&str, ApiStatus> = BTreeMap::new();
    for c in specs {
        let image = c.image.clone().unwrap_or_default();
        let mut status = ApiStatus { name: c.name.clone(), image, state: Some(waiting(default_reason, "")), ..Default::default() };
        if let Some(o) = old.get(c.name.as_str()) {
            if o.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                status = (*o).clone();
            } else {
                status.restart_count = o.restart_count;
                status.last_state = o.last_state.clone();
            }
        }
        statuses.insert(c.name.as_str(), status);
    }

    // A container that ran and is gone from the runtime ended somehow: say so
    // rather than letting it look like it never started.
    for c in specs {
        if input.state.latest(&c.name).is_some() {
            continue;
        }
        let Some(o) = old.get(c.name.as_str()) else { continue };
        // Only a container last seen running (and not ended since) qualifies.
        let was_running = o.state.as_ref().is_some_and(|s| s.terminated.is_none() && s.running.is_some());
        if !was_running {
            continue;
        }
        let status = statuses.get_mut(c.name.as_str()).expect("every spec container has a status");
        if !is_default_waiting(status, default_reason) || status.last_state.as_ref().is_some_and(|s| s.terminated.is_some()) {
            continue;
        }
        status.last_state = Some(ApiState {
            terminated: Some(unknown_termination("The container could not be located when the pod was deleted.  The container used to be Running")),
            ..Default::default()
        });
        if pod.metadata.deletion_timestamp.is_none() {
            status.restart_count += 1;
        }
    }

    // The newest instance is the state, the one before it the last state.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in &input.state.containers {
        let Some(spec) = specs.iter().find(|s| s.name == c.name()) else { continue };
        let count = seen.entry(spec.name.as_str()).or_default();
        if *count >= 2 {
            continue;
        }
        let converted = convert(c, old.get(spec.name.as_str()).copied(), spec.image.as_deref().unwrap_or(""), input.runtime_name);
        let status = statuses.get_mut(spec.name.as_str()).expect("every spec container has a status");
        if *count == 0 {
            *status = converted;
        } else {
            status.last_state = converted.state;
        }
        *count += 1;
    }

    // Containers that should run but failed to start say why.
    for c in specs {
        if is_init && input.state.latest(&c.name).is_some_and(|s| s.is_exited() && s.status.exit_code == 0) {
            continue;
        }
        if !should_container_be_restarted(c, pod, input.state) {
            continue;
        }
        let Some(w) = input.waiting.get(&c.name) else { continue };
        let status = statuses.get_mut(c.name.as_str()).expect("every spec container has a status");
        if status.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
            status.last_state = status.state.clone();
        }
        status.state = Some(waiting(&w.reason, &w.message));
    }

    // Probe results: started, and ready.
    for c in specs {
        let status = statuses.get_mut(c.name.as_str()).expect("every spec container has a status");
        let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
        let started = running && input.readiness.is_started(&c.name);
        status.started = Some(started);
        if is_init && !is_sidecar(c) {
            status.ready = status.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0);
            continue;
        }
        status.ready = started && input.readiness.is_ready(&c.name);
    }

    if is_init {
        specs.iter().filter_map(|c| statuses.remove(c.name.as_str())).collect()
    } else {
        // Regular container statuses are ordered by name, as upstream sorts them.
        statuses.into_values().collect()
    }
}

fn state_of<'a>(statuses: &'a [ApiStatus], name: &str) -> Option<&'a ApiStatus> {
    statuses.iter().find(|s| s.name == name)
}

fn last_terminated(s: &ApiStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn any_regular_container_started(pod: &Pod, statuses: &[ApiStatus]) -> bool {
    containers(pod).iter().any(|c| state_of(statuses, &c.name).and_then(|s| s.state.as_ref()).is_some_and(|s| s.running.is_some() || s.terminated.is_some()))
}

/// Upstream's `getPhase`: the pod phase the container statuses make.
/// `statuses` holds the init and the regular container statuses.
pub fn phase(pod: &Pod, statuses: &[ApiStatus], terminal: bool) -> &'static str {
    let policy = super::actions::restart_policy(pod);
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in init_containers(pod).iter().filter(|c| !is_sidecar(c)) {
        let Some(s) = state_of(statuses, &c.name) else {
            pending_init += 1;
            continue;
        };
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match last_terminated(s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }

    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in init_containers(pod).iter().filter(|c| is_sidecar(c)) {
        let Some(s) = state_of(statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            if s.started != Some(true) {
                pending_init += 1;
            }
            running += 1;
        } else if state.terminated.is_some() {
            // Stopped sidecars do not count.
        } else if state.waiting.is_some() {
            if last_terminated(s).is_none() {
                pending_init += 1;
                waiting += 1;
            }
        } else {
            pending_init += 1;
            unknown += 1;
        }
    }
    for c in containers(pod) {
        let Some(s) = state_of(statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if last_terminated(s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }

    if failed_init > 0 && policy == "Never" {
        return FAILED;
    }
    if (pending_init > 0 && !any_regular_container_started(pod, statuses)) || waiting > 0 {
        return PENDING;
    }
    if running > 0 && unknown == 0 {
        return RUNNING;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded { SUCCEEDED } else { FAILED };
        }
        if policy == "Always" {
            return RUNNING;
        }
        if stopped == succeeded {
            return SUCCEEDED;
        }
        if policy == "Never" {
            return FAILED;
        }
        return RUNNING;
    }
    PENDING
}

pub fn is_terminal_phase(phase: Option<&str>) -> bool {
    matches!(phase, Some(SUCCEEDED) | Some(FAILED))
}

fn cond(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.map(String::from),
        message,
        ..Default::default()
    }
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn containers_ready(pod: &Pod, statuses: &[ApiStatus], phase: &str) -> PodCondition {
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = init_containers(pod).iter().filter(|c| is_sidecar(c));
    for c in sidecars.chain(containers(pod)) {
        match state_of(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
            None => unknown.push(c.name.as_str()),
        }
    }
    if (phase == SUCCEEDED && unknown.is_empty()) || phase == FAILED {
        let reason = if phase == FAILED { "PodFailed" } else { "PodCompleted" };
        return cond("ContainersReady", false, Some(reason), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", go_list(&unknown)));
    }
    if !unready.is_empty() {
        messages.push(format!("containers with unready status: {}", go_list(&unready)));
    }
    if messages.is_empty() {
        cond("ContainersReady", true, None, None)
    } else {
        cond("ContainersReady", false, Some("ContainersNotReady"), Some(messages.join(", ")))
    }
}

fn pod_ready(pod: &Pod, conditions: &[PodCondition], containers_ready: &PodCondition) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition { type_: "Ready".into(), ..containers_ready.clone() };
    }
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_deref()).unwrap_or_default();
    let unready: Vec<String> = gates
        .iter()
        .filter_map(|g| match conditions.iter().find(|c| c.type_ == g.condition_type) {
            None => Some(format!("corresponding condition of pod readiness gate {:?} does not exist.", g.condition_type)),
            Some(c) if c.status != "True" => Some(format!("the status of pod readiness gate {:?} is not \"True\", but {}", g.condition_type, c.status)),
            Some(_) => None,
        })
        .collect();
    if unready.is_empty() {
        cond("Ready", true, None, None)
    } else {
        cond("Ready", false, Some("ReadinessGatesNotReady"), Some(unready.join(", ")))
    }
}

fn initialized(pod: &Pod, statuses: &[ApiStatus], phase: &str) -> PodCondition {
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in init_containers(pod) {
        let Some(s) = state_of(statuses, &c.name) else {
            unknown.push(c.name.as_str());
            continue;
        };
        let done = if is_sidecar(c) { s.started == Some(true) } else { s.ready };
        if !done {
            incomplete.push(c.name.as_str());
        }
    }
    if phase == SUCCEEDED && unknown.is_empty() {
        return cond("Initialized", true, Some("PodCompleted"), None);
    }
    if any_regular_container_started(pod, statuses) {
        return cond("Initialized", true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", go_list(&unknown)));
    }
    if !incomplete.is_empty() {
        messages.push(format!("containers with incomplete status: {}", go_list(&incomplete)));
    }
    if messages.is_empty() {
        cond("Initialized", true, None, None)
    } else {
        cond("Initialized", false, Some("ContainersNotInitialized"), Some(messages.join(", ")))
    }
}

/// The status to report.
pub fn generate(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let api = pod.status.clone().unwrap_or_default();
    let old = input.old;

    let mut s = PodStatus { qos_class: old.qos_class.clone().or_else(|| api.qos_class.clone()), ..Default::default() };
    if s.qos_class.is_none() {
        let value = serde_json::to_value(pod).unwrap_or_default();
        s.qos_class = Some(skiff_api::pod_resources::qos_class(&value).to_string());
    }

    // Addresses: the sandbox's, else what was reported before (a stopped pod keeps
    // its address in the status), the node's for pods in the host's network.
    let mut ips: Vec<String> = if input.own_network { input.state.pod_ips().iter().map(IpAddr::to_string).collect() } else { Vec::new() };
    if ips.is_empty() {
        ips = old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    }
    if ips.is_empty() && !input.own_network {
        ips = vec![input.host_ip.to_string()];
    }
    if !ips.is_empty() {
        s.pod_ip = Some(ips[0].clone());
        s.pod_ips = Some(ips.into_iter().map(|ip| PodIP { ip }).collect());
    }
    s.host_ip = Some(input.host_ip.to_string());
    s.host_ips = Some(vec![HostIP { ip: input.host_ip.to_string() }]);

    let specs = containers(pod);
    let inits = init_containers(pod);
    let regular = container_statuses(input, specs, old.container_statuses.as_ref(), false);
    let init = container_statuses(input, inits, old.init_container_statuses.as_ref(), true);
    let all: Vec<ApiStatus> = regular.iter().chain(init.iter()).cloned().collect();

    let mut phase = phase(pod, &all, input.terminal).to_string();
    if !is_terminal_phase(Some(&phase)) {
        if is_terminal_phase(old.phase.as_deref()) {
            phase = old.phase.clone().unwrap_or_default();
        } else if is_terminal_phase(api.phase.as_deref()) {
            phase = api.phase.clone().unwrap_or_default();
        }
    }
    if old.phase.as_deref() == Some(phase.as_str()) {
        s.reason = old.reason.clone().or_else(|| api.reason.clone());
        s.message = old.message.clone().or_else(|| api.message.clone());
    }
    if let Some((reason, message)) = &input.evicted {
        phase = FAILED.into();
        s.reason = Some(reason.clone());
        s.message = Some(message.clone());
    }
    if is_terminal_phase(api.phase.as_deref()) && api.phase.as_deref() != Some(phase.as_str()) {
        phase = api.phase.clone().unwrap_or_default();
    }
    s.phase = Some(phase.clone());

    let mut conditions: Vec<PodCondition> = api.conditions.iter().flatten().filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str())).cloned().collect();
    let own_network = input.own_network;
    let ready_to_start = cond("PodReadyToStartContainers", !input.state.sandbox_changed(own_network).0, None, None);
    let all_for_conditions: Vec<ApiStatus> = init.iter().chain(regular.iter()).cloned().collect();
    let initialized = initialized(pod, &all_for_conditions, &phase);
    let containers_ready = containers_ready(pod, &all_for_conditions, &phase);
    let ready = pod_ready(pod, &conditions, &containers_ready);
    for mut c in [ready_to_start, initialized, ready, containers_ready, cond("PodScheduled", true, None, None)] {
        let before = old.conditions.iter().flatten().chain(api.conditions.iter().flatten()).find(|o| o.type_ == c.type_);
        c.last_transition_time = match before {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => o.last_transition_time.clone(),
            _ => Some(Time(input.now)),
        };
        conditions.push(c);
    }
    s.conditions = Some(conditions);

    s.start_time = old.start_time.clone().or_else(|| api.start_time.clone()).or(Some(Time(input.now)));
    s.container_statuses = Some(regular);
    if !inits.is_empty() {
        s.init_container_statuses = Some(init);
    }
    s
}

/// Upstream's `TerminatePod`: the final status of a pod whose containers are all
/// stopped. A container that never reported an end is failed (exit 137), and a
/// pod that is not in a terminal phase yet becomes Failed.
pub fn terminate(pod: &Pod, mut s: PodStatus) -> PodStatus {
    let unknown = || ApiState { terminated: Some(unknown_termination("The container could not be located when the pod was terminated")), ..Default::default() };
    let is_waiting = |c: &ApiStatus| c.state.as_ref().is_none_or(|st| st.waiting.is_some());
    let ever_ended = |c: &ApiStatus| c.last_state.as_ref().is_some_and(|l| l.terminated.is_some());
    if has_initialized(pod, &s) {
        for c in s.container_statuses.iter_mut().flatten() {
            if c.state.as_ref().is_some_and(|st| st.terminated.is_some()) {
                continue;
            }
            c.state = Some(unknown());
            c.ready = false;
        }
    }
    // Init containers up to the last one that tried to start (at least the first).
    if let Some(inits) = s.init_container_statuses.as_mut() {
        let upto = inits.iter().rposition(|c| !is_waiting(c) || ever_ended(c)).map_or(1, |i| i + 1);
        for c in inits.iter_mut().take(upto) {
            if c.state.as_ref().is_some_and(|st| st.terminated.is_some()) {
                continue;
            }
            c.state = Some(unknown());
            c.ready = false;
        }
    }
    if !is_terminal_phase(s.phase.as_deref()) {
        s.phase = Some(FAILED.into());
    }
    s
}

/// Upstream's `hasPodInitialized`: no init containers, a container that left the
/// waiting state, or a last init container that completed (or started, a sidecar).
fn has_initialized(pod: &Pod, s: &PodStatus) -> bool {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return true;
    }
    let left_waiting = |c: &ApiStatus| c.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) || c.state.as_ref().is_some_and(|st| st.waiting.is_none());
    if s.container_statuses.iter().flatten().any(left_waiting) {
        return true;
    }
    let (Some(last_spec), Some(last)) = (inits.last(), s.init_container_statuses.as_ref().and_then(|v| v.last())) else { return false };
    if last.name != last_spec.name {
        return false;
    }
    let state = last.state.clone().unwrap_or_default();
    if is_sidecar(last_spec) {
        state.running.is_some() && last.started == Some(true)
    } else {
        state.terminated.is_some_and(|t| t.exit_code == 0)
    }
}

/// The status of a pod the node refused to run: Failed with the reason, nothing
/// else of the observed status changes.
pub fn rejected(pod: &Pod, reason: &str, message: &str, now: Timestamp) -> PodStatus {
    let api = pod.status.clone().unwrap_or_default();
    let value = serde_json::to_value(pod).unwrap_or_default();
    PodStatus {
        phase: Some(FAILED.into()),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        start_time: Some(api.start_time.unwrap_or(Time(now))),
        qos_class: Some(api.qos_class.unwrap_or_else(|| skiff_api::pod_resources::qos_class(&value).to_string())),
        conditions: api.conditions,
        ..Default::default()
    }
}

/// `kubectl`-style `name_namespace(uid)`, as the kubelet names pods in messages.
pub fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!("{}_{}({})", m.name.as_deref().unwrap_or(""), m.namespace.as_deref().unwrap_or(""), m.uid.as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::podstate::annotations;
    use crate::runtime::{labels, ContainerStatus, SandboxState, SandboxStatus};
    use serde_json::json;
    use std::collections::HashSet;

    pub(crate) fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec})).unwrap()
    }

    struct Probes {
        unready: HashSet<String>,
        unstarted: HashSet<String>,
    }

    impl Readiness for Probes {
        fn is_ready(&self, c: &str) -> bool {
            !self.unready.contains(c)
        }
        fn is_started(&self, c: &str) -> bool {
            !self.unstarted.contains(c)
        }
    }

    fn all_ready() -> Probes {
        Probes { unready: HashSet::new(), unstarted: HashSet::new() }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_735_689_600 + s).unwrap()
    }

    struct Rt {
        sandboxes: Vec<SandboxStatus>,
        containers: Vec<ObservedContainer>,
        clock: i64,
    }

    impl Rt {
        fn new() -> Rt {
            let sandbox = SandboxStatus {
                id: "sb".into(),
                state: SandboxState::Ready,
                ips: vec!["10.244.0.7".parse().unwrap()],
                created_at: Some(ts(0)),
                attempt: 0,
                labels: [(labels::POD_UID.to_string(), "u1".to_string())].into(),
                annotations: BTreeMap::new(),
            };
            Rt { sandboxes: vec![sandbox], containers: Vec::new(), clock: 0 }
        }

        fn add(mut self, name: &str, state: ContainerState, exit_code: i32) -> Rt {
            self.clock += 1;
            let restarts = self.containers.iter().filter(|c| c.name() == name).count();
            let exited = state == ContainerState::Exited;
            self.containers.push(ObservedContainer::new(ContainerStatus {
                id: format!("{name}{}", self.clock),
                sandbox_id: "sb".into(),
                name: name.into(),
                attempt: restarts as u32,
                state,
                created_at: Some(ts(self.clock)),
                started_at: Some(ts(self.clock)),
                finished_at: exited.then(|| ts(self.clock + 1)),
                exit_code,
                reason: if !exited { String::new() } else if exit_code == 0 { "Completed".into() } else { "Error".into() },
                message: String::new(),
                image: "docker.io/library/busybox:1.35".into(),
                image_ref: "sha256:abc".into(),
                log_path: Default::default(),
                labels: BTreeMap::new(),
                annotations: [(annotations::RESTART_COUNT.to_string(), restarts.to_string())].into(),
            }));
            self
        }

        fn state(&self) -> PodRuntimeState {
            PodRuntimeState::new(self.sandboxes.clone(), self.containers.clone())
        }
    }

    fn generate_with(p: &Pod, state: &PodRuntimeState, waiting: &HashMap<String, Waiting>, probes: &Probes, terminal: bool) -> PodStatus {
        let old = p.status.clone().unwrap_or_default();
        generate(&StatusInput {
            pod: p,
            state,
            old: &old,
            waiting,
            readiness: probes,
            host_ip: "192.168.1.10".parse().unwrap(),
            own_network: true,
            terminal,
            evicted: None,
            runtime_name: "containerd",
            now: ts(100),
        })
    }

    fn gen(p: &Pod, state: &PodRuntimeState) -> PodStatus {
        generate_with(p, state, &HashMap::new(), &all_ready(), false)
    }

    fn condition<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
    }

    fn phase_of(policy: &str, codes: &[Option<i32>], terminal: bool) -> String {
        let containers: Vec<_> = (0..codes.len()).map(|i| json!({"name": format!("c{i}"), "image": "x"})).collect();
        let p = pod(json!({"restartPolicy": policy, "containers": containers}));
        let mut rt = Rt::new();
        for (i, code) in codes.iter().enumerate() {
            rt = match code {
                None => rt.add(&format!("c{i}"), ContainerState::Running, 0),
                Some(c) => rt.add(&format!("c{i}"), ContainerState::Exited, *c),
            };
        }
        generate_with(&p, &rt.state(), &HashMap::new(), &all_ready(), terminal).phase.unwrap()
    }

    #[test]
    fn the_phase_follows_the_restart_policy() {
        assert_eq!(phase_of("Always", &[None, Some(0)], false), "Running");
        assert_eq!(phase_of("Always", &[Some(0), Some(1)], false), "Running", "an Always pod whose containers exited is restarting");
        assert_eq!(phase_of("Always", &[Some(0), Some(1)], true), "Failed", "unless it is terminating");
        assert_eq!(phase_of("Always", &[Some(0), Some(0)], true), "Succeeded");
        assert_eq!(phase_of("OnFailure", &[Some(0), Some(0)], false), "Succeeded");
        assert_eq!(phase_of("OnFailure", &[Some(0), Some(3)], false), "Running", "the failed one restarts");
        assert_eq!(phase_of("Never", &[Some(0), Some(3)], false), "Failed");
        assert_eq!(phase_of("Never", &[Some(0), None], false), "Running");
        assert_eq!(phase_of("Never", &[Some(0), Some(0)], false), "Succeeded");
    }

    #[test]
    fn a_new_pod_is_pending_with_creating_containers() {
        let p = pod(json!({"containers": [{"name": "b", "image": "busybox"}, {"name": "a", "image": "nginx"}]}));
        let s = gen(&p, &PodRuntimeState::default());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = s.container_statuses.unwrap();
        assert_eq!(cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"], "sorted by name");
        assert_eq!(cs[0].state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("ContainerCreating"));
        assert_eq!((cs[0].image.as_str(), cs[0].ready, cs[0].started), ("nginx", false, Some(false)));
        assert_eq!(s.start_time, Some(Time(ts(100))));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert!(s.pod_ip.is_none(), "no sandbox, no address");
    }

    #[test]
    fn a_running_pod_has_every_condition_and_its_address() {
        let p = pod(json!({"containers": [{"name": "app", "image": "busybox:1.35"}]}));
        let s = gen(&p, &Rt::new().add("app", ContainerState::Running, 0).state());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!((s.pod_ip.as_deref(), s.host_ip.as_deref()), (Some("10.244.0.7"), Some("192.168.1.10")));
        let types: Vec<(&str, &str)> = s.conditions.as_ref().unwrap().iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(types, [("PodReadyToStartContainers", "True"), ("Initialized", "True"), ("Ready", "True"), ("ContainersReady", "True"), ("PodScheduled", "True")]);
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.container_id.as_deref(), Some("containerd://app1"));
        assert_eq!((c.image.as_str(), c.image_id.as_str()), ("docker.io/library/busybox:1.35", "sha256:abc"));
        assert_eq!(c.state.as_ref().unwrap().running.as_ref().unwrap().started_at, Some(Time(ts(1))));
        assert!(c.ready && c.started == Some(true));
    }

    #[test]
    fn readiness_comes_from_the_probes_and_readiness_gates() {
        let p = pod(json!({"readinessGates": [{"conditionType": "example.com/lb"}], "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}));
        let state = Rt::new().add("a", ContainerState::Running, 0).add("b", ContainerState::Running, 0).state();
        let probes = Probes { unready: ["b".to_string()].into(), unstarted: HashSet::new() };
        let s = generate_with(&p, &state, &HashMap::new(), &probes, false);
        let ready = condition(&s, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ContainersNotReady")));
        assert_eq!(ready.message.as_deref(), Some("containers with unready status: [b]"));

        let s = gen(&p, &state);
        let ready = condition(&s, "Ready");
        assert_eq!((ready.reason.as_deref(), ready.message.as_deref()), (Some("ReadinessGatesNotReady"), Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.")));
        assert_eq!(condition(&s, "ContainersReady").status, "True");

        let mut gated = p.clone();
        gated.status = Some(PodStatus { conditions: Some(vec![cond("example.com/lb", true, None, None)]), ..Default::default() });
        let s = gen(&gated, &state);
        assert_eq!(condition(&s, "Ready").status, "True");
        assert_eq!(s.conditions.as_ref().unwrap()[0].type_, "example.com/lb", "conditions of others stay first");

        let probes = Probes { unready: HashSet::new(), unstarted: ["a".to_string()].into() };
        let s = generate_with(&p, &state, &HashMap::new(), &probes, false);
        let a = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!((a.started, a.ready), (Some(false), false), "not started: not ready either");
    }

    #[test]
    fn init_containers_show_progress_and_hold_initialization() {
        let p = pod(json!({
            "initContainers": [{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}],
            "containers": [{"name": "app", "image": "x"}]
        }));
        let s = gen(&p, &Rt::new().add("i1", ContainerState::Exited, 0).add("i2", ContainerState::Running, 0).state());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = s.init_container_statuses.as_ref().unwrap();
        assert_eq!(init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["i1", "i2"], "spec order");
        assert!(init[0].ready && init[0].started == Some(false), "a completed init container is ready, not started");
        assert!(!init[1].ready);
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(app.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("PodInitializing"));
        let c = condition(&s, "Initialized");
        assert_eq!((c.status.as_str(), c.reason.as_deref(), c.message.as_deref()), ("False", Some("ContainersNotInitialized"), Some("containers with incomplete status: [i2]")));
    }

    #[test]
    fn a_crash_looping_container_waits_with_its_last_termination() {
        let p = pod(json!({"containers": [{"name": "app", "image": "x"}]}));
        let state = Rt::new().add("app", ContainerState::Exited, 1).add("app", ContainerState::Exited, 2).state();
        let waiting: HashMap<String, Waiting> =
            [("app".to_string(), Waiting { reason: "CrashLoopBackOff".into(), message: "back-off 10s restarting failed container=app pod=p_default(u1)".into() })].into();
        let s = generate_with(&p, &state, &waiting, &all_ready(), false);
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 1);
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref(), last.container_id.as_deref()), (2, Some("Error"), Some("containerd://app2")));
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let p = pod(json!({"containers": [{"name": "app", "image": "x"}]}));
        let first = gen(&p, &Rt::new().add("app", ContainerState::Running, 0).state());
        let mut later_pod = p.clone();
        later_pod.status = Some(first.clone());
        let old = first.clone();
        let probes = Probes { unready: ["app".to_string()].into(), unstarted: HashSet::new() };
        let second = generate(&StatusInput {
            pod: &later_pod,
            state: &Rt::new().add("app", ContainerState::Running, 0).state(),
            old: &old,
            waiting: &HashMap::new(),
            readiness: &probes,
            host_ip: "192.168.1.10".parse().unwrap(),
            own_network: true,
            terminal: false,
            evicted: None,
            runtime_name: "containerd",
            now: ts(200),
        });
        assert_eq!(condition(&second, "PodScheduled").last_transition_time, Some(Time(ts(100))));
        assert_eq!(condition(&second, "Ready").last_transition_time, Some(Time(ts(200))));
        assert_eq!(second.start_time, Some(Time(ts(100))), "the start time never changes");
    }

    #[test]
    fn a_terminal_phase_never_changes_and_eviction_fails_the_pod() {
        let mut p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "app", "image": "x"}]}));
        p.status = Some(PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
        let s = gen(&p, &Rt::new().add("app", ContainerState::Exited, 1).state());
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));

        let p = pod(json!({"containers": [{"name": "app", "image": "x"}]}));
        let old = PodStatus::default();
        let s = generate(&StatusInput {
            pod: &p,
            state: &Rt::new().add("app", ContainerState::Running, 0).state(),
            old: &old,
            waiting: &HashMap::new(),
            readiness: &all_ready(),
            host_ip: "192.168.1.10".parse().unwrap(),
            own_network: true,
            terminal: true,
            evicted: Some(("DeadlineExceeded".into(), "Pod was active on the node longer than the specified deadline".into())),
            runtime_name: "containerd",
            now: ts(1),
        });
        assert_eq!((s.phase.as_deref(), s.reason.as_deref()), (Some("Failed"), Some("DeadlineExceeded")));
        assert_eq!(condition(&s, "Ready").reason.as_deref(), Some("PodFailed"));
    }

    #[test]
    fn a_terminated_pod_reports_every_container_ended() {
        let p = pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}));
        // a was killed (exit 143), b's container vanished.
        let s = gen(&p, &Rt::new().add("a", ContainerState::Exited, 143).add("b", ContainerState::Running, 0).state());
        let mut s2 = s.clone();
        s2.container_statuses.as_mut().unwrap()[1].state = Some(waiting("ContainerCreating", ""));
        let done = terminate(&p, s2);
        assert_eq!(done.phase.as_deref(), Some("Failed"));
        let b = &done.container_statuses.as_ref().unwrap()[1];
        let t = b.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("ContainerStatusUnknown")));

        let never_started = gen(&p, &PodRuntimeState::default());
        let done = terminate(&p, never_started);
        assert_eq!(done.phase.as_deref(), Some("Failed"), "a pod that never ran ends Failed");
        assert_eq!(done.container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 137);

        let with_init = pod(json!({"initContainers": [{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}], "containers": [{"name": "a", "image": "x"}]}));
        let done = terminate(&with_init, gen(&with_init, &PodRuntimeState::default()));
        let inits = done.init_container_statuses.as_ref().unwrap();
        assert!(inits[0].state.as_ref().unwrap().terminated.is_some(), "the first init container counts as failed");
        assert!(inits[1].state.as_ref().unwrap().waiting.is_some());
        assert!(done.container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().waiting.is_some(), "an uninitialized pod's containers stay waiting");
    }

    #[test]
    fn host_network_pods_use_the_node_address_and_stopped_pods_keep_theirs() {
        let p = pod(json!({"hostNetwork": true, "containers": [{"name": "a", "image": "x"}]}));
        let old = PodStatus::default();
        let s = generate(&StatusInput {
            pod: &p,
            state: &PodRuntimeState::default(),
            old: &old,
            waiting: &HashMap::new(),
            readiness: &all_ready(),
            host_ip: "192.168.1.10".parse().unwrap(),
            own_network: false,
            terminal: false,
            evicted: None,
            runtime_name: "containerd",
            now: ts(1),
        });
        assert_eq!(s.pod_ip.as_deref(), Some("192.168.1.10"));

        let p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let mut stopped = Rt::new().add("a", ContainerState::Exited, 0);
        stopped.sandboxes[0].state = SandboxState::NotReady;
        stopped.sandboxes[0].ips.clear();
        let mut with_ip = p.clone();
        with_ip.status = Some(PodStatus { pod_ip: Some("10.244.0.7".into()), pod_ips: Some(vec![PodIP { ip: "10.244.0.7".into() }]), ..Default::default() });
        let s = gen(&with_ip, &stopped.state());
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.7"));
        assert_eq!(condition(&s, "PodReadyToStartContainers").status, "False");
    }

    #[test]
    fn sidecars_count_for_readiness_and_start_before_initialization() {
        let p = pod(json!({
            "initContainers": [{"name": "proxy", "image": "x", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "x"}]
        }));
        let probes = Probes { unready: ["proxy".to_string()].into(), unstarted: HashSet::new() };
        let state = Rt::new().add("proxy", ContainerState::Running, 0).add("app", ContainerState::Running, 0).state();
        let s = generate_with(&p, &state, &HashMap::new(), &probes, false);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&s, "Initialized").status, "True");
        assert_eq!(condition(&s, "ContainersReady").message.as_deref(), Some("containers with unready status: [proxy]"));
        let proxy = &s.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!((proxy.started, proxy.ready), (Some(true), false));
    }

    #[test]
    fn rejected_pods_fail_with_the_reason() {
        let p = pod(json!({"containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}));
        let s = rejected(&p, "OutOfcpu", "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000, used: 0, capacity: 500", ts(0));
        assert_eq!((s.phase.as_deref(), s.reason.as_deref(), s.qos_class.as_deref()), (Some("Failed"), Some("OutOfcpu"), Some("Burstable")));
        assert_eq!(format_pod(&p), "p_default(u1)");
    }
}
