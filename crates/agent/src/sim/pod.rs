//! A simulated pod, as pure functions of the Pod and the time:
//!
//! - [`PodView`]: what the agent keeps of a Pod bound to one of its nodes (the spec
//!   parts it acts on, the observed status as compact JSON), small enough to hold
//!   50,000 of them.
//! - [`PodRuntime`]: the "containers" — a state machine over wall-clock timestamps
//!   (running → exited → back-off → running …) driven by the `sim.skiff.io/*`
//!   annotations. It is rebuilt from the pod's status after an agent restart, so
//!   nothing is stored on disk.
//! - [`PodRuntime::status`]: the status a kubelet would report for it, with upstream's
//!   condition reasons and messages.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition,
    PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use skiff_api::pod_resources;

use super::node::stable_hex;

/// How long containers stay unready after they start (a Go duration, e.g. `2s`).
pub const ANNOTATION_READY_AFTER: &str = "sim.skiff.io/ready-after";
/// How long containers run before they exit (default 1s for Never/OnFailure pods;
/// Always pods run until stopped unless this or the exit code is set).
pub const ANNOTATION_RUN_FOR: &str = "sim.skiff.io/run-for";
/// The code containers exit with (default 0).
pub const ANNOTATION_EXIT_CODE: &str = "sim.skiff.io/exit-code";

/// How long a Never/OnFailure container runs when `run-for` is not given.
pub const DEFAULT_RUN_FOR: Duration = Duration::from_secs(1);
/// The first restart back-off; it doubles per restart up to [`MAX_BACKOFF`].
/// (Upstream starts at 10 s and caps at 5 min; a simulation wants quicker loops.)
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Conditions the kubelet owns; it leaves every other condition type alone.
const KUBELET_CONDITIONS: [&str; 5] = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    fn parse(s: Option<&str>) -> RestartPolicy {
        match s {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        self != Phase::Running
    }
}

// === behaviour ===

/// What the `sim.skiff.io/*` annotations ask of a pod's containers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behaviour {
    pub ready_after: Duration,
    pub run_for: Option<Duration>,
    pub exit_code: Option<i32>,
}

impl Behaviour {
    /// Reads the annotations; values that do not parse are left out and described.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> (Behaviour, Vec<String>) {
        let mut b = Behaviour::default();
        let mut problems = Vec::new();
        let Some(a) = annotations else { return (b, problems) };
        if let Some(v) = a.get(ANNOTATION_READY_AFTER) {
            match parse_duration(v) {
                Ok(d) => b.ready_after = d,
                Err(e) => problems.push(format!("{ANNOTATION_READY_AFTER}: {e}")),
            }
        }
        if let Some(v) = a.get(ANNOTATION_RUN_FOR) {
            match parse_duration(v) {
                Ok(d) => b.run_for = Some(d),
                Err(e) => problems.push(format!("{ANNOTATION_RUN_FOR}: {e}")),
            }
        }
        if let Some(v) = a.get(ANNOTATION_EXIT_CODE) {
            match v.trim().parse::<i32>() {
                Ok(c) => b.exit_code = Some(c),
                Err(_) => problems.push(format!("{ANNOTATION_EXIT_CODE}: {v:?} is not an integer")),
            }
        }
        (b, problems)
    }

    /// How long a container runs before it exits; `None`: until it is stopped.
    pub fn lifetime(&self, policy: RestartPolicy) -> Option<Duration> {
        match policy {
            RestartPolicy::Never | RestartPolicy::OnFailure => Some(self.run_for.unwrap_or(DEFAULT_RUN_FOR)),
            RestartPolicy::Always if self.run_for.is_some() || self.exit_code.is_some() => Some(self.run_for.unwrap_or(DEFAULT_RUN_FOR)),
            RestartPolicy::Always => None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        self.exit_code.unwrap_or(0)
    }
}

/// A Go duration: `1.5s`, `500ms`, `1m30s`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("{s:?} is not a duration (e.g. 2s, 500ms, 1m30s)");
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

// === view ===

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    /// An init container with `restartPolicy: Always`: it keeps running.
    pub sidecar: bool,
}

/// What the agent keeps of a Pod bound to one of its nodes.
#[derive(Debug, Clone)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub node_name: String,
    /// `deletionTimestamp` is set: stop the containers and finish the deletion.
    pub deleting: bool,
    pub restart_policy: RestartPolicy,
    pub host_network: bool,
    pub behaviour: Behaviour,
    /// Annotations that did not parse (reported once the pod starts).
    pub behaviour_problems: Vec<String>,
    pub containers: Vec<ContainerView>,
    pub init_containers: Vec<ContainerView>,
    pub readiness_gates: Vec<String>,
    /// What the pod asks of the node, in thousandths (cpu millicores, memory
    /// millibytes …), as the kubelet's admission sums it.
    pub requests: BTreeMap<String, i128>,
    pub qos: &'static str,
    /// The status the server has: its phase and start, and all of it as JSON.
    pub phase: String,
    pub started: bool,
    pub pod_ip: Option<String>,
    status_json: Box<str>,
}

impl PodView {
    /// Reads a Pod from its JSON; `None` if it is not a pod.
    pub fn from_value(mut v: Value) -> Option<PodView> {
        let status = v.get_mut("status").map(Value::take).unwrap_or(Value::Null);
        let requests = pod_requests(&v);
        let qos = pod_resources::qos_class(&v);
        let pod: Pod = serde_json::from_value(v).ok()?;
        let meta = pod.metadata;
        let spec = pod.spec.unwrap_or_default();
        let (behaviour, behaviour_problems) = Behaviour::from_annotations(meta.annotations.as_ref());
        let view_of = |c: &Container| ContainerView {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            sidecar: c.restart_policy.as_deref() == Some("Always"),
        };
        Some(PodView {
            namespace: meta.namespace.unwrap_or_default(),
            name: meta.name?,
            uid: meta.uid.unwrap_or_default(),
            resource_version: meta.resource_version.unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            restart_policy: RestartPolicy::parse(spec.restart_policy.as_deref()),
            host_network: spec.host_network.unwrap_or(false),
            behaviour,
            behaviour_problems,
            containers: spec.containers.iter().map(view_of).collect(),
            init_containers: spec.init_containers.iter().flatten().map(view_of).collect(),
            readiness_gates: spec.readiness_gates.iter().flatten().map(|g| g.condition_type.clone()).collect(),
            requests,
            qos,
            phase: status.get("phase").and_then(Value::as_str).unwrap_or("").to_string(),
            started: status.get("startTime").is_some_and(|t| !t.is_null()),
            pod_ip: status.get("podIP").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from),
            status_json: serde_json::to_string(&status).unwrap_or_default().into_boxed_str(),
        })
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The observed status as JSON (`null` if there is none).
    pub fn status_value(&self) -> Value {
        serde_json::from_str(&self.status_json).unwrap_or(Value::Null)
    }

    /// The observed status, typed.
    pub fn status(&self) -> PodStatus {
        serde_json::from_str::<Option<PodStatus>>(&self.status_json).ok().flatten().unwrap_or_default()
    }

    /// Whether the server already has a terminal phase for it.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }

    /// The resourceVersion as a number, to tell which of two copies is newer.
    pub fn revision(&self) -> Option<u64> {
        self.resource_version.parse().ok()
    }
}

// === resources ===

/// The pod's effective requests in thousandths (cpu millicores, memory
/// millibytes …), summed as the kubelet's admission sums them (overhead included).
pub fn pod_requests(pod: &Value) -> BTreeMap<String, i128> {
    pod_resources::pod(pod, pod_resources::Kind::Requests, true)
        .into_iter()
        .map(|(k, a)| (k, a.value.milli_value()))
        .filter(|(_, v)| *v > 0)
        .collect()
}

// === runtime ===

/// A container that exited.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    pub code: i32,
    pub reason: String,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub container_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Running since `since`, ready from `ready_at` on.
    Running { since: Timestamp, ready_at: Timestamp },
    /// Crashed; restarts at `until` (CrashLoopBackOff).
    Waiting { until: Timestamp },
    Terminated(Exit),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRuntime {
    pub name: String,
    pub image: String,
    pub sidecar: bool,
    pub restart_count: i32,
    /// The current (or last) container's ID, `sim://<hex>`.
    pub container_id: String,
    pub state: State,
    pub last: Option<Exit>,
}

/// The containers of one pod, as a runtime would know them.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRuntime {
    pub uid: String,
    pub started: Timestamp,
    /// `None` for host-network pods, which use the node's address.
    pub pod_ip: Option<String>,
    pub init: Vec<ContainerRuntime>,
    pub containers: Vec<ContainerRuntime>,
}

/// The back-off before restart number `restarts` (1 s doubling, at most 10 s).
pub fn backoff(restarts: i32) -> Duration {
    let doublings = restarts.saturating_sub(1).clamp(0, 16) as u32;
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

fn container_id(uid: &str, name: &str, restart_count: i32) -> String {
    format!("sim://{}", stable_hex(&format!("{uid}/{name}"), restart_count as u64, 64))
}

impl ContainerRuntime {
    fn start(uid: &str, c: &ContainerView, now: Timestamp, ready_after: Duration) -> ContainerRuntime {
        ContainerRuntime {
            name: c.name.clone(),
            image: c.image.clone(),
            sidecar: c.sidecar,
            restart_count: 0,
            container_id: container_id(uid, &c.name, 0),
            state: Self::running(now, ready_after),
            last: None,
        }
    }

    fn running(since: Timestamp, ready_after: Duration) -> State {
        State::Running { since, ready_at: plus(since, ready_after) }
    }

    /// A regular init container: it ran to completion as the pod started.
    fn completed_init(uid: &str, c: &ContainerView, at: Timestamp) -> ContainerRuntime {
        let container_id = container_id(uid, &c.name, 0);
        let exit = Exit { code: 0, reason: "Completed".into(), started: at, finished: at, container_id: container_id.clone() };
        ContainerRuntime { name: c.name.clone(), image: c.image.clone(), sidecar: false, restart_count: 0, container_id, state: State::Terminated(exit), last: None }
    }

    /// Rebuilds a container from the status it reported before an agent restart.
    fn adopt(c: &ContainerView, s: &ContainerStatus, ready_after: Duration, now: Timestamp) -> ContainerRuntime {
        let exit_of = |t: &ContainerStateTerminated| Exit {
            code: t.exit_code,
            reason: t.reason.clone().unwrap_or_else(|| if t.exit_code == 0 { "Completed".into() } else { "Error".into() }),
            started: t.started_at.as_ref().map_or(now, |t| t.0),
            finished: t.finished_at.as_ref().map_or(now, |t| t.0),
            container_id: t.container_id.clone().or_else(|| s.container_id.clone()).unwrap_or_default(),
        };
        let last = s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).map(exit_of);
        let state = match s.state.as_ref() {
            Some(ContainerState { running: Some(r), .. }) => {
                let since = r.started_at.as_ref().map_or(now, |t| t.0);
                // A container that reported ready stays ready: no flapping on restart.
                let ready_at = if s.ready { since } else { plus(since, ready_after) };
                State::Running { since, ready_at }
            }
            Some(ContainerState { terminated: Some(t), .. }) => State::Terminated(exit_of(t)),
            Some(ContainerState { waiting: Some(_), .. }) => {
                let until = last.as_ref().map_or(now, |l| plus(l.finished, backoff(s.restart_count)));
                State::Waiting { until }
            }
            _ => Self::running(now, ready_after),
        };
        ContainerRuntime {
            name: c.name.clone(),
            image: c.image.clone(),
            sidecar: c.sidecar,
            restart_count: s.restart_count,
            container_id: s.container_id.clone().unwrap_or_default(),
            state,
            last,
        }
    }

    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated(_))
    }

    fn stop(&mut self, now: Timestamp) {
        self.state = match &self.state {
            State::Running { since, .. } => {
                State::Terminated(Exit { code: 0, reason: "Completed".into(), started: *since, finished: now, container_id: self.container_id.clone() })
            }
            State::Waiting { .. } => State::Terminated(self.last.clone().unwrap_or(Exit {
                code: 0,
                reason: "Completed".into(),
                started: now,
                finished: now,
                container_id: self.container_id.clone(),
            })),
            State::Terminated(e) => State::Terminated(e.clone()),
        };
    }

    fn is_ready(&self, now: Timestamp, init: bool) -> bool {
        match &self.state {
            State::Running { ready_at, .. } => now >= *ready_at,
            // A regular init container that completed counts as ready (upstream).
            State::Terminated(e) => init && !self.sidecar && e.code == 0,
            State::Waiting { .. } => false,
        }
    }

    /// `pod` names the pod in messages, as `name_namespace(uid)`.
    fn status(&self, now: Timestamp, init: bool, pod: &str) -> ContainerStatus {
        let terminated = |e: &Exit| ContainerStateTerminated {
            exit_code: e.code,
            reason: Some(e.reason.clone()),
            started_at: Some(Time(e.started)),
            finished_at: Some(Time(e.finished)),
            container_id: Some(e.container_id.clone()),
            ..Default::default()
        };
        let (state, started) = match &self.state {
            State::Running { since, .. } => (ContainerState { running: Some(ContainerStateRunning { started_at: Some(Time(*since)) }), ..Default::default() }, true),
            State::Waiting { until: _ } => {
                let message = format!("back-off {}s restarting failed container={} pod={pod}", backoff(self.restart_count).as_secs(), self.name);
                let waiting = ContainerStateWaiting { reason: Some("CrashLoopBackOff".into()), message: Some(message) };
                (ContainerState { waiting: Some(waiting), ..Default::default() }, false)
            }
            State::Terminated(e) => (ContainerState { terminated: Some(terminated(e)), ..Default::default() }, false),
        };
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: format!("sim://{}", self.image),
            container_id: Some(self.container_id.clone()),
            ready: self.is_ready(now, init),
            started: Some(started),
            restart_count: self.restart_count,
            state: Some(state),
            last_state: Some(self.last.as_ref().map_or_else(ContainerState::default, |e| ContainerState { terminated: Some(terminated(e)), ..Default::default() })),
            ..Default::default()
        }
    }
}

impl PodRuntime {
    /// Starts the pod at `now`: init containers complete at once (sidecars keep
    /// running), then the containers run.
    pub fn start(view: &PodView, pod_ip: Option<String>, now: Timestamp) -> PodRuntime {
        let ready_after = view.behaviour.ready_after;
        let init = view
            .init_containers
            .iter()
            .map(|c| if c.sidecar { ContainerRuntime::start(&view.uid, c, now, Duration::ZERO) } else { ContainerRuntime::completed_init(&view.uid, c, now) })
            .collect();
        let containers = view.containers.iter().map(|c| ContainerRuntime::start(&view.uid, c, now, ready_after)).collect();
        PodRuntime { uid: view.uid.clone(), started: now, pod_ip, init, containers }
    }

    /// Rebuilds the runtime of a pod the agent had started before it restarted;
    /// `None` if the status shows it never started (or it already finished).
    pub fn adopt(view: &PodView, status: &PodStatus, now: Timestamp) -> Option<PodRuntime> {
        if !matches!(status.phase.as_deref(), Some("Running") | Some("Pending")) {
            return None;
        }
        let started = status.start_time.as_ref()?.0;
        let statuses = status.container_statuses.as_ref().filter(|s| !s.is_empty())?;
        let ready_after = view.behaviour.ready_after;
        let containers = view
            .containers
            .iter()
            .map(|c| match statuses.iter().find(|s| s.name == c.name) {
                Some(s) => ContainerRuntime::adopt(c, s, ready_after, now),
                None => ContainerRuntime::start(&view.uid, c, now, ready_after),
            })
            .collect();
        let init_statuses = status.init_container_statuses.as_deref().unwrap_or_default();
        let init = view
            .init_containers
            .iter()
            .map(|c| match init_statuses.iter().find(|s| s.name == c.name) {
                Some(s) => ContainerRuntime::adopt(c, s, Duration::ZERO, now),
                None if c.sidecar => ContainerRuntime::start(&view.uid, c, started, Duration::ZERO),
                None => ContainerRuntime::completed_init(&view.uid, c, started),
            })
            .collect();
        let pod_ip = if view.host_network { None } else { status.pod_ip.clone().filter(|ip| !ip.is_empty()) };
        Some(PodRuntime { uid: view.uid.clone(), started, pod_ip, init, containers })
    }

    /// The pod phase the containers make (upstream's getPhase, without Pending: a
    /// simulated pod starts at once).
    pub fn phase(&self) -> Phase {
        if self.containers.iter().any(|c| !c.is_terminated()) {
            return Phase::Running;
        }
        let failed = self.containers.iter().any(|c| matches!(&c.state, State::Terminated(e) if e.code != 0));
        if failed {
            Phase::Failed
        } else {
            Phase::Succeeded
        }
    }

    /// Moves the containers along to `now`: exits, back-offs, restarts. Returns
    /// when something will change next (an exit, a restart, a container turning
    /// ready), if anything will.
    pub fn advance(&mut self, view: &PodView, now: Timestamp) -> Option<Timestamp> {
        let policy = view.restart_policy;
        let lifetime = view.behaviour.lifetime(policy);
        let exit_code = view.behaviour.exit_code();
        let ready_after = view.behaviour.ready_after;
        let mut next: Option<Timestamp> = None;
        let mut soonest = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        for c in &mut self.containers {
            // Each turn is one transition, and each moves the container's clock
            // forward by at least the back-off: bounded even after a long absence.
            for _ in 0..10_000 {
                match c.state.clone() {
                    State::Running { since, ready_at } => {
                        if ready_at > now {
                            soonest(ready_at);
                        }
                        let Some(lifetime) = lifetime else { break };
                        let end = plus(since, lifetime);
                        if end > now {
                            soonest(end);
                            break;
                        }
                        let exit = Exit {
                            code: exit_code,
                            reason: if exit_code == 0 { "Completed".into() } else { "Error".into() },
                            started: since,
                            finished: end,
                            container_id: c.container_id.clone(),
                        };
                        let restart = match policy {
                            RestartPolicy::Always => true,
                            RestartPolicy::OnFailure => exit_code != 0,
                            RestartPolicy::Never => false,
                        };
                        if restart {
                            c.restart_count += 1;
                            c.last = Some(exit);
                            c.state = State::Waiting { until: plus(end, backoff(c.restart_count)) };
                        } else {
                            c.state = State::Terminated(exit);
                            break;
                        }
                    }
                    State::Waiting { until } => {
                        if until > now {
                            soonest(until);
                            break;
                        }
                        c.container_id = container_id(&self.uid, &c.name, c.restart_count);
                        c.state = ContainerRuntime::running(until, ready_after);
                    }
                    State::Terminated(_) => break,
                }
            }
        }
        if self.phase().is_terminal() {
            // Sidecars stop once the main containers are done.
            let end = self.finished().unwrap_or(now);
            for c in self.init.iter_mut().filter(|c| c.sidecar) {
                c.stop(end);
            }
            return None;
        }
        next
    }

    /// When the last container exited, if all have.
    fn finished(&self) -> Option<Timestamp> {
        self.containers.iter().map(|c| match &c.state {
            State::Terminated(e) => Some(e.finished),
            _ => None,
        }).collect::<Option<Vec<_>>>()?.into_iter().max()
    }

    /// Stops every container (the pod is being deleted): running ones exit 0.
    pub fn stop(&mut self, now: Timestamp) {
        for c in self.init.iter_mut().chain(self.containers.iter_mut()) {
            c.stop(now);
        }
    }

    /// The status a kubelet reports for this pod. Conditions the kubelet does not
    /// own are kept from `observed`, and every condition keeps its
    /// lastTransitionTime while its status does not change.
    pub fn status(&self, view: &PodView, host_ip: &str, observed: &PodStatus, now: Timestamp) -> PodStatus {
        let phase = self.phase();
        let pod = format!("{}_{}({})", view.name, view.namespace, view.uid);
        let container_statuses: Vec<ContainerStatus> = self.containers.iter().map(|c| c.status(now, false, &pod)).collect();
        let init_statuses: Vec<ContainerStatus> = self.init.iter().map(|c| c.status(now, true, &pod)).collect();
        let terminal_reason = match phase {
            Phase::Succeeded => Some("PodCompleted"),
            Phase::Failed => Some("PodFailed"),
            Phase::Running => None,
        };

        let foreign: Vec<PodCondition> =
            observed.conditions.iter().flatten().filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str())).cloned().collect();

        let ready_to_start = cond("PodReadyToStartContainers", !phase.is_terminal(), None, None);
        let initialized = cond("Initialized", true, (phase == Phase::Succeeded).then_some("PodCompleted"), None);
        let containers_ready = match terminal_reason {
            Some(reason) => cond("ContainersReady", false, Some(reason), None),
            None => {
                let sidecars = self.init.iter().filter(|c| c.sidecar).map(|c| (c, true));
                let unready: Vec<&str> =
                    sidecars.chain(self.containers.iter().map(|c| (c, false))).filter(|(c, init)| !c.is_ready(now, *init)).map(|(c, _)| c.name.as_str()).collect();
                if unready.is_empty() {
                    cond("ContainersReady", true, None, None)
                } else {
                    cond("ContainersReady", false, Some("ContainersNotReady"), Some(format!("containers with unready status: [{}]", unready.join(" "))))
                }
            }
        };
        let ready = if containers_ready.status != "True" {
            PodCondition { type_: "Ready".into(), ..containers_ready.clone() }
        } else {
            let unready: Vec<String> = view
                .readiness_gates
                .iter()
                .filter_map(|gate| match foreign.iter().find(|c| &c.type_ == gate) {
                    None => Some(format!("corresponding condition of pod readiness gate {gate:?} does not exist.")),
                    Some(c) if c.status != "True" => Some(format!("the status of pod readiness gate {gate:?} is not \"True\", but {}", c.status)),
                    Some(_) => None,
                })
                .collect();
            if unready.is_empty() {
                cond("Ready", true, None, None)
            } else {
                cond("Ready", false, Some("ReadinessGatesNotReady"), Some(unready.join(", ")))
            }
        };
        let scheduled = cond("PodScheduled", true, None, None);

        let mut conditions = foreign;
        for mut c in [ready_to_start, initialized, ready, containers_ready, scheduled] {
            let before = observed.conditions.iter().flatten().find(|o| o.type_ == c.type_);
            c.last_transition_time = match before {
                Some(o) if o.status == c.status && o.last_transition_time.is_some() => o.last_transition_time.clone(),
                _ => Some(Time(now)),
            };
            conditions.push(c);
        }

        let pod_ip = if view.host_network { Some(host_ip.to_string()) } else { self.pod_ip.clone() };
        PodStatus {
            phase: Some(phase.as_str().into()),
            conditions: Some(conditions),
            host_ip: Some(host_ip.to_string()),
            host_ips: Some(vec![HostIP { ip: host_ip.to_string() }]),
            pod_ips: pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
            pod_ip,
            start_time: Some(Time(self.started)),
            container_statuses: Some(container_statuses),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            qos_class: Some(observed.qos_class.clone().unwrap_or_else(|| view.qos.to_string())),
            ..Default::default()
        }
    }
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

/// Why the kubelet refused to run a pod (its admission), as upstream words it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// The status of a pod the node refused: Failed, with the reason; nothing else
/// of the observed status changes.
pub fn rejected_status(view: &PodView, observed: &PodStatus, rejection: &Rejection, now: Timestamp) -> PodStatus {
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(rejection.reason.clone()),
        message: Some(rejection.message.clone()),
        start_time: Some(observed.start_time.clone().unwrap_or(Time(now))),
        qos_class: Some(observed.qos_class.clone().unwrap_or_else(|| view.qos.to_string())),
        conditions: observed.conditions.clone(),
        ..Default::default()
    }
}

/// Whether applying `patch` as a JSON merge patch to `target` would change nothing,
/// so the write can be skipped.
pub fn merge_patch_is_noop(patch: &Value, target: &Value) -> bool {
    match (patch, target) {
        (Value::Object(p), Value::Object(t)) => p.iter().all(|(k, pv)| match (pv, t.get(k)) {
            (Value::Null, None) | (Value::Null, Some(Value::Null)) => true,
            (Value::Object(_), Some(tv)) => merge_patch_is_noop(pv, tv),
            (Value::Object(po), None) => po.is_empty(),
            (pv, Some(tv)) => pv == tv,
            (_, None) => false,
        }),
        (p, t) => p == t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        format!("2025-01-01T00:00:{s}Z").parse().unwrap()
    }

    fn secs(t0: Timestamp, s: f64) -> Timestamp {
        plus(t0, Duration::from_secs_f64(s))
    }

    fn pod(extra: Value) -> PodView {
        let mut base = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "7"},
            "spec": {"nodeName": "sim-0", "containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Pending", "qosClass": "BestEffort"}
        });
        merge(&mut base, extra);
        PodView::from_value(base).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn condition<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn views_carry_the_qos_class_and_summed_requests() {
        let v = pod(json!({"spec": {
            "containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "0.25", "memory": "64Mi"}}}
            ],
            "initContainers": [{"name": "init", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "16Mi"}, "limits": {"cpu": "2", "memory": "16Mi"}}}],
            "overhead": {"cpu": "10m"}
        }}));
        assert_eq!(v.qos, "Guaranteed", "250m and 0.25 are the same quantity");
        assert_eq!(v.requests["cpu"], 2010, "the init container's 2 cpu outweighs 500m, plus overhead");
        assert_eq!(v.requests["memory"], 128 * 1024 * 1024 * 1000, "the two containers together");
        assert_eq!(pod(json!({})).qos, "BestEffort");
        assert!(pod(json!({})).requests.is_empty());
    }

    #[test]
    fn durations_parse_as_go_writes_them() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn annotations_set_the_behaviour_and_bad_ones_are_reported() {
        let v = pod(json!({"metadata": {"annotations": {ANNOTATION_READY_AFTER: "2s", ANNOTATION_EXIT_CODE: "1", ANNOTATION_RUN_FOR: "nope"}}}));
        assert_eq!(v.behaviour, Behaviour { ready_after: Duration::from_secs(2), run_for: None, exit_code: Some(1) });
        assert_eq!(v.behaviour_problems.len(), 1);
        assert!(v.behaviour_problems[0].starts_with(ANNOTATION_RUN_FOR));
    }

    #[test]
    fn only_job_like_pods_and_crashing_pods_exit() {
        let b = Behaviour::default();
        assert_eq!(b.lifetime(RestartPolicy::Always), None);
        assert_eq!(b.lifetime(RestartPolicy::Never), Some(DEFAULT_RUN_FOR));
        assert_eq!(b.lifetime(RestartPolicy::OnFailure), Some(DEFAULT_RUN_FOR));
        let crash = Behaviour { exit_code: Some(2), ..Default::default() };
        assert_eq!(crash.lifetime(RestartPolicy::Always), Some(DEFAULT_RUN_FOR));
    }

    #[test]
    fn a_started_pod_is_running_and_ready_with_every_kubelet_condition() {
        let mut v = pod(json!({"spec": {"initContainers": [{"name": "setup", "image": "busybox"}]}}));
        v.readiness_gates.clear();
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, Some("10.244.0.2".into()), t0);
        assert_eq!(rt.advance(&v, t0), None, "nothing more will happen to a plain Always pod");
        let s = rt.status(&v, "127.244.0.1", &v.status(), t0);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.2"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.244.0.2");
        assert_eq!(s.host_ip.as_deref(), Some("127.244.0.1"));
        assert_eq!(s.host_ips.as_ref().unwrap()[0].ip, "127.244.0.1");
        assert_eq!(s.start_time, Some(Time(t0)));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let types: Vec<(&str, &str)> = s.conditions.as_ref().unwrap().iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(
            types,
            [("PodReadyToStartContainers", "True"), ("Initialized", "True"), ("Ready", "True"), ("ContainersReady", "True"), ("PodScheduled", "True")]
        );
        assert!(s.conditions.as_ref().unwrap().iter().all(|c| c.last_transition_time == Some(Time(t0))));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!((c.name.as_str(), c.image.as_str(), c.image_id.as_str()), ("app", "nginx", "sim://nginx"));
        assert!(c.container_id.as_ref().unwrap().starts_with("sim://") && c.container_id.as_ref().unwrap().len() == 6 + 64);
        assert!(c.ready && c.started == Some(true) && c.restart_count == 0);
        assert_eq!(c.state.as_ref().unwrap().running.as_ref().unwrap().started_at, Some(Time(t0)));
        let init = &s.init_container_statuses.as_ref().unwrap()[0];
        let term = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (0, Some("Completed")));
        assert!(init.ready && init.started == Some(false), "a completed init container is ready, not started");
    }

    #[test]
    fn ready_after_keeps_a_running_pod_unready_until_it_passes() {
        let v = pod(json!({"metadata": {"annotations": {ANNOTATION_READY_AFTER: "2s"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "fluent"}]}}));
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, Some("10.244.0.2".into()), t0);
        assert_eq!(rt.advance(&v, t0), Some(secs(t0, 2.0)), "wake up when the containers turn ready");
        let s = rt.status(&v, "127.0.0.2", &v.status(), t0);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let ready = condition(&s, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ContainersNotReady")));
        assert_eq!(ready.message.as_deref(), Some("containers with unready status: [app log]"));
        assert_eq!(condition(&s, "ContainersReady").message, ready.message);
        assert!(s.container_statuses.as_ref().unwrap().iter().all(|c| !c.ready && c.started == Some(true)));

        let t2 = secs(t0, 2.0);
        assert_eq!(rt.advance(&v, t2), None);
        let later = rt.status(&v, "127.0.0.2", &s, t2);
        let ready = condition(&later, "Ready");
        assert_eq!((ready.status.as_str(), ready.last_transition_time.clone()), ("True", Some(Time(t2))));
        assert_eq!(condition(&later, "PodScheduled").last_transition_time, Some(Time(t0)), "unchanged conditions keep their time");
    }

    #[test]
    fn job_pods_succeed_after_run_for() {
        let v = pod(json!({"spec": {"restartPolicy": "Never"}, "metadata": {"annotations": {ANNOTATION_RUN_FOR: "3s"}}}));
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, Some("10.244.0.2".into()), t0);
        assert_eq!(rt.advance(&v, t0), Some(secs(t0, 3.0)));
        assert_eq!(rt.phase(), Phase::Running);
        assert_eq!(rt.advance(&v, secs(t0, 3.5)), None);
        assert_eq!(rt.phase(), Phase::Succeeded);
        let s = rt.status(&v, "127.0.0.2", &v.status(), secs(t0, 3.5));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let term = s.container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().terminated.clone().unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (0, Some("Completed")));
        assert_eq!((term.started_at, term.finished_at), (Some(Time(t0)), Some(Time(secs(t0, 3.0)))));
        for (t, reason) in [("Ready", "PodCompleted"), ("ContainersReady", "PodCompleted")] {
            let c = condition(&s, t);
            assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some(reason)));
        }
        assert_eq!(condition(&s, "Initialized").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(condition(&s, "PodReadyToStartContainers").status, "False");
    }

    #[test]
    fn a_failing_never_pod_fails_with_the_exit_code() {
        let v = pod(json!({"spec": {"restartPolicy": "Never"}, "metadata": {"annotations": {ANNOTATION_EXIT_CODE: "1"}}}));
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, None, t0);
        rt.advance(&v, secs(t0, 1.0));
        assert_eq!(rt.phase(), Phase::Failed);
        let s = rt.status(&v, "127.0.0.2", &v.status(), secs(t0, 1.0));
        let term = s.container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().terminated.clone().unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (1, Some("Error")));
        assert_eq!(condition(&s, "Ready").reason.as_deref(), Some("PodFailed"));
        assert_eq!(s.container_statuses.as_ref().unwrap()[0].restart_count, 0);
    }

    #[test]
    fn a_failing_on_failure_pod_restarts_with_back_off() {
        let v = pod(json!({"spec": {"restartPolicy": "OnFailure"}, "metadata": {"annotations": {ANNOTATION_EXIT_CODE: "1", ANNOTATION_RUN_FOR: "1s"}}}));
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, None, t0);
        // Exits at 1 s, waits 1 s, runs from 2 s; exits at 3 s, waits 2 s, runs from 5 s.
        assert_eq!(rt.advance(&v, secs(t0, 1.5)), Some(secs(t0, 2.0)));
        let s = rt.status(&v, "h", &v.status(), secs(t0, 1.5));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 1);
        let waiting = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
        assert_eq!(s.phase.as_deref(), Some("Running"), "a restarting OnFailure pod is not done");

        assert_eq!(rt.advance(&v, secs(t0, 5.5)), Some(secs(t0, 6.0)));
        let c = &rt.containers[0];
        assert_eq!(c.restart_count, 2);
        assert_eq!(c.state, State::Running { since: secs(t0, 5.0), ready_at: secs(t0, 5.0) });
        assert_ne!(c.container_id, c.last.as_ref().unwrap().container_id, "a restart is a new container");
    }

    #[test]
    fn an_always_pod_with_an_exit_code_crash_loops_with_growing_back_off() {
        let v = pod(json!({"metadata": {"annotations": {ANNOTATION_EXIT_CODE: "3"}}}));
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, None, t0);
        rt.advance(&v, secs(t0, 60.0));
        assert_eq!(rt.phase(), Phase::Running);
        let restarts = rt.containers[0].restart_count;
        // Cycles of 1 s running plus 1, 2, 4, 8, 10, 10 … s of back-off.
        assert!((6..=9).contains(&restarts), "{restarts} restarts in a minute");
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(9), MAX_BACKOFF);
    }

    #[test]
    fn stopping_a_pod_terminates_its_containers() {
        let v = pod(json!({}));
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, Some("10.244.0.2".into()), t0);
        rt.stop(secs(t0, 5.0));
        assert_eq!(rt.phase(), Phase::Succeeded);
        let s = rt.status(&v, "h", &v.status(), secs(t0, 5.0));
        assert_eq!(s.container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 0);
        assert!(!s.container_statuses.as_ref().unwrap()[0].ready);
    }

    #[test]
    fn an_adopted_pod_reports_the_same_status_it_had() {
        let v = pod(json!({"metadata": {"annotations": {ANNOTATION_READY_AFTER: "1s"}}}));
        let t0 = ts("00");
        let mut rt = PodRuntime::start(&v, Some("10.244.0.9".into()), t0);
        rt.advance(&v, secs(t0, 1.0));
        let before = rt.status(&v, "127.0.0.2", &v.status(), secs(t0, 1.0));

        let later = secs(t0, 30.0);
        let mut adopted = PodRuntime::adopt(&v, &before, later).expect("running pods are adopted");
        assert_eq!(adopted.advance(&v, later), None);
        let after = adopted.status(&v, "127.0.0.2", &before, later);
        let (a, b) = (serde_json::to_value(&after).unwrap(), serde_json::to_value(&before).unwrap());
        assert!(merge_patch_is_noop(&a, &b), "no status regression:\n{a:#}\n{b:#}");
    }

    #[test]
    fn pods_that_never_started_or_finished_are_not_adopted() {
        let v = pod(json!({}));
        assert!(PodRuntime::adopt(&v, &v.status(), ts("00")).is_none());
        let done = PodStatus { phase: Some("Succeeded".into()), start_time: Some(Time(ts("00"))), ..Default::default() };
        assert!(PodRuntime::adopt(&v, &done, ts("01")).is_none());
    }

    #[test]
    fn foreign_conditions_stay_and_readiness_gates_hold_ready_back() {
        let v = pod(json!({
            "spec": {"readinessGates": [{"conditionType": "example.com/lb"}]},
            "status": {"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "Preempted"}]}
        }));
        let t0 = ts("00");
        let rt = PodRuntime::start(&v, None, t0);
        let s = rt.status(&v, "h", &v.status(), t0);
        assert_eq!(s.conditions.as_ref().unwrap()[0].type_, "DisruptionTarget", "conditions of others come first, untouched");
        let ready = condition(&s, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ReadinessGatesNotReady")));
        assert_eq!(ready.message.as_deref(), Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist."));
        assert_eq!(condition(&s, "ContainersReady").status, "True");

        let mut observed = s.clone();
        observed.conditions.as_mut().unwrap().push(PodCondition { type_: "example.com/lb".into(), status: "True".into(), ..Default::default() });
        assert_eq!(condition(&rt.status(&v, "h", &observed, t0), "Ready").status, "True");
    }

    #[test]
    fn host_network_pods_use_the_node_address() {
        let v = pod(json!({"spec": {"hostNetwork": true}}));
        let rt = PodRuntime::start(&v, None, ts("00"));
        let s = rt.status(&v, "127.244.0.1", &v.status(), ts("00"));
        assert_eq!(s.pod_ip.as_deref(), Some("127.244.0.1"));
    }

    #[test]
    fn the_observed_qos_class_is_kept() {
        let v = pod(json!({"status": {"qosClass": "Burstable"}}));
        let s = PodRuntime::start(&v, None, ts("00")).status(&v, "h", &v.status(), ts("00"));
        assert_eq!(s.qos_class.as_deref(), Some("Burstable"), "qosClass is immutable once set");
    }

    #[test]
    fn a_rejected_pod_fails_with_the_admission_reason() {
        let v = pod(json!({}));
        let r = Rejection { reason: "OutOfcpu".into(), message: "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 7000, capacity: 8000".into() };
        let s = rejected_status(&v, &v.status(), &r, ts("00"));
        assert_eq!((s.phase.as_deref(), s.reason.as_deref()), (Some("Failed"), Some("OutOfcpu")));
        assert!(s.message.unwrap().starts_with("Pod was rejected: "));
    }

    #[test]
    fn merge_patch_noop_detection_matches_merge_semantics() {
        let target = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": "keep"});
        assert!(merge_patch_is_noop(&json!({"a": 1, "b": {"c": [1, 2]}}), &target));
        assert!(!merge_patch_is_noop(&json!({"b": {"c": [1]}}), &target), "lists are replaced whole");
        assert!(merge_patch_is_noop(&json!({"z": null}), &target));
        assert!(!merge_patch_is_noop(&json!({"e": null}), &target));
        assert!(!merge_patch_is_noop(&json!({"f": 1}), &target));
    }

    #[test]
    fn views_keep_what_the_agent_needs() {
        let v = pod(json!({
            "metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"restartPolicy": "OnFailure", "initContainers": [{"name": "side", "image": "envoy", "restartPolicy": "Always"}]},
            "status": {"phase": "Running", "startTime": "2025-01-01T00:00:00Z", "podIP": "10.244.0.5"}
        }));
        assert_eq!(v.key(), "default/web");
        assert_eq!((v.node_name.as_str(), v.uid.as_str(), v.revision()), ("sim-0", "u-1", Some(7)));
        assert!(v.deleting && v.started);
        assert_eq!(v.restart_policy, RestartPolicy::OnFailure);
        assert!(v.init_containers[0].sidecar);
        assert_eq!(v.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(v.status_value()["phase"], "Running");
        assert_eq!(v.status().phase.as_deref(), Some("Running"));
    }
}
