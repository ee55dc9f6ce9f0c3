//! What one sync of a pod must do, as a pure function of its spec and what the
//! runtime has (upstream's `computePodActions`): create the sandbox, kill the pod or
//! some containers, start the next init containers (sidecars included) and the
//! containers that should run.
//!
//! Init containers run one at a time, in order, each to a successful exit before the
//! next; a sidecar (an init container with `restartPolicy: Always`) lets the next
//! one start as soon as it has started (its startup probe passed) and keeps running.
//! Regular containers start once initialization is done, and restart per the pod's
//! restartPolicy. Back-off is not decided here: the executor checks it per start.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::podstate::{ObservedContainer, PodRuntimeState};
use super::probe::ProbeKind;
use crate::runtime::ContainerState;

/// Why a container is killed; it decides which grace period applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Unknown,
    LivenessProbe,
    StartupProbe,
    FailedPostStartHook,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerToKill {
    pub id: String,
    pub name: String,
    /// The Killing event's message ("" for "Stopping container <name>").
    pub message: String,
    pub reason: KillReason,
}

/// The steps of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and the sandbox.
    pub kill_pod: bool,
    /// Make a new sandbox (after killing the pod, if anything of it runs).
    pub create_sandbox: bool,
    /// The current sandbox (the one to reuse, or the dead one being replaced).
    pub sandbox_id: Option<String>,
    /// The attempt of the sandbox to create.
    pub attempt: u32,
    /// Indices into `spec.initContainers`, in the order to start them.
    pub init_containers_to_start: Vec<usize>,
    /// Indices into `spec.containers`.
    pub containers_to_start: Vec<usize>,
    pub containers_to_kill: Vec<ContainerToKill>,
}

/// What the probers found, as far as the actions need it.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    /// Container instances (by id) whose liveness or startup probe failed for good.
    pub failed: HashMap<String, ProbeKind>,
    /// Containers (by name) whose startup probe has succeeded, or that have none.
    pub started: HashSet<String>,
}

pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// Whether failed containers restart (`shouldRestartOnFailure`).
pub fn restarts_on_failure(pod: &Pod) -> bool {
    restart_policy(pod) != "Never"
}

pub fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default()
}

pub fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or_default()
}

pub fn has_sidecars(pod: &Pod) -> bool {
    init_containers(pod).iter().any(is_sidecar)
}

/// The hash the kubelet records on a container instance, to tell when the spec it
/// was made from changed. Only what a pod update may change (the image) goes in, so
/// that nothing else (a field added to the API, a serialization change) restarts
/// running containers.
pub fn container_hash(c: &Container) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in c.name.bytes().chain([0u8]).chain(c.image.as_deref().unwrap_or("").bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn changed(c: &Container, status: &ObservedContainer) -> bool {
    !status.hash.is_empty() && status.hash != container_hash(c)
}

/// Upstream's `ShouldContainerBeRestarted`: a container that is not running starts
/// again unless the pod is being deleted or the restart policy says it is done.
pub fn should_container_be_restarted(c: &Container, pod: &Pod, state: &PodRuntimeState) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(status) = state.latest(&c.name) else { return true };
    match status.state() {
        ContainerState::Running => false,
        ContainerState::Unknown | ContainerState::Created => true,
        ContainerState::Exited => match restart_policy(pod) {
            "Never" => false,
            "OnFailure" => status.status.exit_code != 0,
            _ => true,
        },
    }
}

fn succeeded(c: &Container, state: &PodRuntimeState) -> bool {
    state.latest(&c.name).is_some_and(|s| s.is_exited() && s.status.exit_code == 0)
}

fn init_failed(status: &ObservedContainer) -> bool {
    match status.state() {
        ContainerState::Exited => status.status.exit_code != 0,
        ContainerState::Unknown => true,
        _ => false,
    }
}

/// Whether a regular init container run is complete without sidecars in the pod
/// (upstream's `findNextInitContainerToRun`, the "done" part).
fn init_done_without_sidecars(pod: &Pod, state: &PodRuntimeState) -> bool {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return true;
    }
    if containers(pod).iter().any(|c| state.latest(&c.name).is_some_and(ObservedContainer::is_running)) {
        return true;
    }
    if inits.iter().rev().any(|c| state.latest(&c.name).is_some_and(init_failed)) {
        return false;
    }
    for (i, c) in inits.iter().enumerate().rev() {
        let Some(status) = state.latest(&c.name) else { continue };
        match status.state() {
            ContainerState::Running => return false,
            ContainerState::Exited => return i == inits.len() - 1,
            _ => {}
        }
    }
    false
}

fn any_regular_container_created(pod: &Pod, state: &PodRuntimeState) -> bool {
    containers(pod).iter().any(|c| state.latest(&c.name).is_some_and(|s| matches!(s.state(), ContainerState::Created | ContainerState::Running | ContainerState::Exited)))
}

/// Computes the steps of the next sync. `own_network`: the pod has a network
/// namespace of its own (a sandbox without an address is then broken).
pub fn compute_pod_actions(pod: &Pod, state: &PodRuntimeState, probes: &ProbeState, own_network: bool) -> PodActions {
    let (create_sandbox, attempt, sandbox_id) = state.sandbox_changed(own_network);
    let mut actions = PodActions { kill_pod: create_sandbox, create_sandbox, sandbox_id, attempt, ..Default::default() };

    if create_sandbox {
        if !restarts_on_failure(pod) && attempt != 0 && !state.containers.is_empty() {
            // A Never pod whose containers ran: nothing is started again, so no new
            // sandbox either; the pod is killed if anything of it is left.
            actions.create_sandbox = false;
            return actions;
        }
        let to_start: Vec<usize> = containers(pod)
            .iter()
            .enumerate()
            .filter(|(_, c)| !(restart_policy(pod) == "OnFailure" && succeeded(c, state)))
            .map(|(i, _)| i)
            .collect();
        if to_start.is_empty() {
            let initialized = if has_sidecars(pod) { any_regular_container_created(pod, state) } else { init_done_without_sidecars(pod, state) };
            if initialized {
                actions.create_sandbox = false;
                return actions;
            }
        }
        if !init_containers(pod).is_empty() {
            actions.init_containers_to_start = vec![0];
            return actions;
        }
        actions.containers_to_start = to_start;
        return actions;
    }

    let initialized = compute_init_container_actions(pod, state, probes, &mut actions);
    if actions.kill_pod || !initialized {
        return actions;
    }

    let mut keep = 0;
    for (idx, c) in containers(pod).iter().enumerate() {
        let status = state.latest(&c.name);
        let Some(status) = status.filter(|s| s.is_running()) else {
            if should_container_be_restarted(c, pod, state) {
                actions.containers_to_start.push(idx);
                if let Some(s) = status.filter(|s| s.state() == ContainerState::Unknown) {
                    actions.containers_to_kill.push(ContainerToKill {
                        id: s.id().to_string(),
                        name: c.name.clone(),
                        message: "Container is in \"unknown\" state, try killing it before restart".into(),
                        reason: KillReason::Unknown,
                    });
                }
            }
            continue;
        };
        let mut restart = restarts_on_failure(pod);
        let (message, reason) = if changed(c, status) {
            restart = true;
            (format!("Container {} definition changed", c.name), KillReason::Unknown)
        } else if probes.failed.get(status.id()) == Some(&ProbeKind::Liveness) {
            (format!("Container {} failed liveness probe", c.name), KillReason::LivenessProbe)
        } else if probes.failed.get(status.id()) == Some(&ProbeKind::Startup) {
            (format!("Container {} failed startup probe", c.name), KillReason::StartupProbe)
        } else {
            keep += 1;
            continue;
        };
        let message = if restart {
            actions.containers_to_start.push(idx);
            format!("{message}, will be restarted")
        } else {
            message
        };
        actions.containers_to_kill.push(ContainerToKill { id: status.id().to_string(), name: c.name.clone(), message, reason });
    }

    if keep == 0 && actions.containers_to_start.is_empty() {
        actions.kill_pod = true;
        // Sidecars do not keep a finished pod alive.
        actions.init_containers_to_start.clear();
    }
    actions
}

/// Upstream's `computeInitContainerActions`: walks the init containers backwards to
/// find how far initialization got; returns whether the pod is initialized.
fn compute_init_container_actions(pod: &Pod, state: &PodRuntimeState, probes: &ProbeState, actions: &mut PodActions) -> bool {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return true;
    }
    // A regular container that exists means initialization finished before, even
    // if the init containers are gone from the runtime since.
    let mut initialized = containers(pod).iter().any(|c| state.latest(&c.name).is_some_and(|s| matches!(s.state(), ContainerState::Created | ContainerState::Running)));
    let mut previously_initialized = initialized;
    let restart_on_failure = restarts_on_failure(pod);
    let mut to_start = Vec::new();

    for (i, c) in inits.iter().enumerate().rev() {
        let sidecar = is_sidecar(c);
        let Some(status) = state.latest(&c.name) else {
            if previously_initialized && sidecar {
                to_start.push(i);
            }
            continue;
        };
        if previously_initialized && !sidecar {
            continue;
        }
        match status.state() {
            ContainerState::Created => to_start.push(i),
            ContainerState::Running if sidecar => 'running: {
                if c.startup_probe.is_some() {
                    match probes.failed.get(status.id()) {
                        Some(ProbeKind::Startup) => {
                            actions.containers_to_kill.push(ContainerToKill {
                                id: status.id().to_string(),
                                name: c.name.clone(),
                                message: format!("Init container {} failed startup probe", c.name),
                                reason: KillReason::StartupProbe,
                            });
                            to_start.push(i);
                            break 'running;
                        }
                        _ if !probes.started.contains(&c.name) => break 'running,
                        _ => {}
                    }
                }
                if i == inits.len() - 1 {
                    initialized = true;
                } else if !previously_initialized {
                    to_start.push(i + 1);
                }
                if changed(c, status) {
                    actions.containers_to_kill.push(ContainerToKill {
                        id: status.id().to_string(),
                        name: c.name.clone(),
                        message: format!("Init container {} definition changed", c.name),
                        reason: KillReason::Unknown,
                    });
                    to_start.push(i);
                    break 'running;
                }
                if c.liveness_probe.is_some() && probes.failed.get(status.id()) == Some(&ProbeKind::Liveness) {
                    actions.containers_to_kill.push(ContainerToKill {
                        id: status.id().to_string(),
                        name: c.name.clone(),
                        message: format!("Init container {} failed liveness probe", c.name),
                        reason: KillReason::LivenessProbe,
                    });
                    to_start.push(i);
                }
            }
            // A regular init container still running: wait for it.
            ContainerState::Running => {}
            ContainerState::Exited if sidecar => to_start.push(i),
            ContainerState::Exited => {
                if init_failed(status) {
                    if !restart_on_failure {
                        actions.kill_pod = true;
                        actions.init_containers_to_start.clear();
                        return false;
                    }
                    to_start.push(i);
                } else if i == inits.len() - 1 {
                    initialized = true;
                } else {
                    to_start.push(i + 1);
                }
            }
            ContainerState::Unknown => {
                if !sidecar && !restart_on_failure {
                    actions.kill_pod = true;
                    actions.init_containers_to_start.clear();
                    return false;
                }
                actions.containers_to_kill.push(ContainerToKill {
                    id: status.id().to_string(),
                    name: c.name.clone(),
                    message: "Init container is in \"unknown\" state, try killing it before restart".into(),
                    reason: KillReason::Unknown,
                });
                to_start.push(i);
            }
        }
        previously_initialized = true;
    }

    if !previously_initialized {
        to_start.push(0);
    }
    to_start.reverse();
    actions.init_containers_to_start = to_start;
    initialized
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::podstate::annotations;
    use crate::runtime::{labels, ContainerStatus, SandboxState, SandboxStatus};
    use serde_json::json;
    use std::collections::BTreeMap;

    pub(crate) fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec})).unwrap()
    }

    struct Builder {
        sandboxes: Vec<SandboxStatus>,
        containers: Vec<ObservedContainer>,
        clock: i64,
    }

    impl Builder {
        fn new() -> Builder {
            Builder { sandboxes: Vec::new(), containers: Vec::new(), clock: 0 }
        }

        fn sandbox(mut self, state: SandboxState) -> Builder {
            self.clock += 1;
            self.sandboxes.push(SandboxStatus {
                id: format!("sb{}", self.clock),
                state,
                ips: vec!["10.0.0.5".parse().unwrap()],
                created_at: Some(jiff::Timestamp::from_second(self.clock).unwrap()),
                attempt: self.sandboxes.len() as u32,
                labels: [(labels::POD_UID.to_string(), "u1".to_string())].into(),
                annotations: BTreeMap::new(),
            });
            self
        }

        fn container(mut self, name: &str, state: ContainerState, exit_code: i32) -> Builder {
            self.clock += 1;
            let restarts = self.containers.iter().filter(|c| c.name() == name).count();
            self.containers.push(ObservedContainer::new(ContainerStatus {
                id: format!("{name}-{}", self.clock),
                sandbox_id: "sb1".into(),
                name: name.into(),
                attempt: restarts as u32,
                state,
                created_at: Some(jiff::Timestamp::from_second(self.clock).unwrap()),
                started_at: None,
                finished_at: None,
                exit_code,
                reason: String::new(),
                message: String::new(),
                image: "busybox".into(),
                image_ref: String::new(),
                log_path: Default::default(),
                labels: BTreeMap::new(),
                annotations: [(annotations::RESTART_COUNT.to_string(), restarts.to_string())].into(),
            }));
            self
        }

        fn build(self) -> PodRuntimeState {
            PodRuntimeState::new(self.sandboxes, self.containers)
        }
    }

    fn two_inits_and_app(policy: &str) -> Pod {
        pod(json!({
            "restartPolicy": policy,
            "initContainers": [{"name": "i1", "image": "busybox"}, {"name": "i2", "image": "busybox"}],
            "containers": [{"name": "app", "image": "busybox"}]
        }))
    }

    fn probes_started(names: &[&str]) -> ProbeState {
        ProbeState { failed: HashMap::new(), started: names.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_first_init_container() {
        let p = two_inits_and_app("Always");
        let a = compute_pod_actions(&p, &PodRuntimeState::default(), &ProbeState::default(), true);
        assert!(a.create_sandbox && a.kill_pod);
        assert_eq!((a.attempt, a.init_containers_to_start.clone(), a.containers_to_start.clone()), (0, vec![0], vec![]));

        let plain = pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}));
        let a = compute_pod_actions(&plain, &PodRuntimeState::default(), &ProbeState::default(), true);
        assert_eq!(a.containers_to_start, vec![0, 1], "regular containers start together");
    }

    #[test]
    fn init_containers_run_one_after_the_other_before_the_containers() {
        let p = two_inits_and_app("Always");
        let none = ProbeState::default();
        let running = Builder::new().sandbox(SandboxState::Ready).container("i1", ContainerState::Running, 0).build();
        let a = compute_pod_actions(&p, &running, &none, true);
        assert!(a.init_containers_to_start.is_empty() && a.containers_to_start.is_empty() && !a.kill_pod, "wait for i1: {a:?}");

        let first_done = Builder::new().sandbox(SandboxState::Ready).container("i1", ContainerState::Exited, 0).build();
        let a = compute_pod_actions(&p, &first_done, &none, true);
        assert_eq!((a.init_containers_to_start, a.containers_to_start), (vec![1], vec![]));

        let both_done = Builder::new().sandbox(SandboxState::Ready).container("i1", ContainerState::Exited, 0).container("i2", ContainerState::Exited, 0).build();
        let a = compute_pod_actions(&p, &both_done, &none, true);
        assert_eq!((a.init_containers_to_start, a.containers_to_start), (vec![], vec![0]));

        let app_running = Builder::new()
            .sandbox(SandboxState::Ready)
            .container("i1", ContainerState::Exited, 0)
            .container("i2", ContainerState::Exited, 0)
            .container("app", ContainerState::Running, 0)
            .build();
        let a = compute_pod_actions(&p, &app_running, &none, true);
        assert_eq!(a, PodActions { sandbox_id: Some("sb1".into()), ..Default::default() }, "nothing to do");
    }

    #[test]
    fn a_failed_init_container_restarts_or_fails_the_pod_per_policy() {
        let failed = Builder::new().sandbox(SandboxState::Ready).container("i1", ContainerState::Exited, 1).build();
        let a = compute_pod_actions(&two_inits_and_app("OnFailure"), &failed, &ProbeState::default(), true);
        assert_eq!(a.init_containers_to_start, vec![0], "retried (with back-off)");
        let a = compute_pod_actions(&two_inits_and_app("Never"), &failed, &ProbeState::default(), true);
        assert!(a.kill_pod && a.init_containers_to_start.is_empty());
    }

    #[test]
    fn init_containers_are_not_run_again_once_a_container_runs() {
        // The init containers were removed (pruned), the app runs: nothing reruns.
        let p = two_inits_and_app("Always");
        let s = Builder::new().sandbox(SandboxState::Ready).container("app", ContainerState::Running, 0).build();
        let a = compute_pod_actions(&p, &s, &ProbeState::default(), true);
        assert!(a.init_containers_to_start.is_empty() && a.containers_to_start.is_empty() && !a.kill_pod, "{a:?}");
    }

    #[test]
    fn sidecars_start_in_order_and_let_the_next_start_once_started() {
        let p = pod(json!({
            "initContainers": [
                {"name": "proxy", "image": "x", "restartPolicy": "Always", "startupProbe": {"exec": {"command": ["true"]}}},
                {"name": "setup", "image": "x"},
                {"name": "log", "image": "x", "restartPolicy": "Always"}
            ],
            "containers": [{"name": "app", "image": "x"}]
        }));
        let s = Builder::new().sandbox(SandboxState::Ready).container("proxy", ContainerState::Running, 0).build();
        let a = compute_pod_actions(&p, &s, &ProbeState::default(), true);
        assert!(a.init_containers_to_start.is_empty(), "the startup probe of the sidecar has not passed: {a:?}");
        let a = compute_pod_actions(&p, &s, &probes_started(&["proxy"]), true);
        assert_eq!(a.init_containers_to_start, vec![1], "setup starts once the sidecar started");

        let s = Builder::new().sandbox(SandboxState::Ready).container("proxy", ContainerState::Running, 0).container("setup", ContainerState::Exited, 0).build();
        let a = compute_pod_actions(&p, &s, &probes_started(&["proxy"]), true);
        assert_eq!((a.init_containers_to_start.clone(), a.containers_to_start.clone()), (vec![2], vec![]));

        let s = Builder::new()
            .sandbox(SandboxState::Ready)
            .container("proxy", ContainerState::Running, 0)
            .container("setup", ContainerState::Exited, 0)
            .container("log", ContainerState::Running, 0)
            .build();
        let a = compute_pod_actions(&p, &s, &probes_started(&["proxy", "log"]), true);
        assert_eq!((a.init_containers_to_start.clone(), a.containers_to_start.clone()), (vec![], vec![0]), "initialized: the app starts");

        // Later a sidecar exits: it is restarted (sidecars always are), the app keeps running.
        let s = Builder::new()
            .sandbox(SandboxState::Ready)
            .container("proxy", ContainerState::Exited, 1)
            .container("setup", ContainerState::Exited, 0)
            .container("log", ContainerState::Running, 0)
            .container("app", ContainerState::Running, 0)
            .build();
        let a = compute_pod_actions(&p, &s, &probes_started(&["log"]), true);
        assert_eq!((a.init_containers_to_start.clone(), a.containers_to_start.clone(), a.kill_pod), (vec![0], vec![], false));
    }

    #[test]
    fn sidecars_do_not_keep_a_finished_pod_alive() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "proxy", "image": "x", "restartPolicy": "Always"}],
            "containers": [{"name": "job", "image": "x"}]
        }));
        let s = Builder::new().sandbox(SandboxState::Ready).container("proxy", ContainerState::Running, 0).container("job", ContainerState::Exited, 0).build();
        let a = compute_pod_actions(&p, &s, &probes_started(&["proxy"]), true);
        assert!(a.kill_pod && a.init_containers_to_start.is_empty(), "{a:?}");
    }

    #[test]
    fn exited_containers_restart_per_policy() {
        let base = |policy: &str, code: i32| {
            let p = pod(json!({"restartPolicy": policy, "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}));
            let s = Builder::new().sandbox(SandboxState::Ready).container("a", ContainerState::Exited, code).container("b", ContainerState::Running, 0).build();
            compute_pod_actions(&p, &s, &ProbeState::default(), true).containers_to_start
        };
        assert_eq!(base("Always", 0), vec![0]);
        assert_eq!(base("OnFailure", 0), Vec::<usize>::new());
        assert_eq!(base("OnFailure", 2), vec![0]);
        assert_eq!(base("Never", 2), Vec::<usize>::new());
    }

    #[test]
    fn a_failed_liveness_probe_kills_and_restarts_the_container() {
        let p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let s = Builder::new().sandbox(SandboxState::Ready).container("a", ContainerState::Running, 0).build();
        let id = s.latest("a").unwrap().id().to_string();
        let probes = ProbeState { failed: [(id.clone(), ProbeKind::Liveness)].into(), started: HashSet::new() };
        let a = compute_pod_actions(&p, &s, &probes, true);
        assert_eq!(a.containers_to_start, vec![0]);
        assert_eq!(
            a.containers_to_kill,
            vec![ContainerToKill { id, name: "a".into(), message: "Container a failed liveness probe, will be restarted".into(), reason: KillReason::LivenessProbe }]
        );
        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}));
        let a = compute_pod_actions(&never, &s, &probes, true);
        assert!(a.containers_to_start.is_empty());
        assert_eq!(a.containers_to_kill[0].message, "Container a failed liveness probe");
    }

    #[test]
    fn a_changed_image_restarts_the_container() {
        let p = pod(json!({"containers": [{"name": "a", "image": "x:2"}]}));
        let mut s = Builder::new().sandbox(SandboxState::Ready).container("a", ContainerState::Running, 0).build();
        s.containers[0].hash = container_hash(&pod(json!({"containers": [{"name": "a", "image": "x:1"}]})).spec.unwrap().containers[0]);
        let a = compute_pod_actions(&p, &s, &ProbeState::default(), true);
        assert_eq!(a.containers_to_start, vec![0]);
        assert_eq!(a.containers_to_kill[0].message, "Container a definition changed, will be restarted");
    }

    #[test]
    fn a_dead_sandbox_is_replaced_unless_a_never_pod_already_ran() {
        let p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let s = Builder::new().sandbox(SandboxState::NotReady).container("a", ContainerState::Exited, 0).build();
        let a = compute_pod_actions(&p, &s, &ProbeState::default(), true);
        assert!(a.create_sandbox && a.kill_pod);
        assert_eq!((a.attempt, a.containers_to_start), (1, vec![0]));

        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "x"}]}));
        let a = compute_pod_actions(&never, &s, &ProbeState::default(), true);
        assert!(!a.create_sandbox && a.kill_pod);
    }

    #[test]
    fn deleted_pods_restart_nothing() {
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        let s = Builder::new().sandbox(SandboxState::Ready).container("a", ContainerState::Exited, 1).build();
        assert!(!should_container_be_restarted(&p.spec.as_ref().unwrap().containers[0], &p, &s));
    }
}
