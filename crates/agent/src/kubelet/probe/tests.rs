//! The probe manager against a fake runtime (exec probes on paused time), one
//! HTTP probe end to end on real time, and lifecycle hooks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerPort, ExecAction, HTTPGetAction, LifecycleHandler, Probe, SleepAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, ExecOutput, ImageInfo, RegistryAuth, Result as RuntimeResult, SandboxConfig, SandboxStatus, Stream, StreamRequest,
};

// === a fake runtime ===

/// Answers exec_sync by the command's first word: a scripted exit code if one is
/// queued, else 0 or 1 by the word's health (healthy unless set otherwise).
/// "sleep" times out and "broken" finds the runtime unavailable.
#[derive(Default)]
struct FakeRuntime {
    script: Mutex<HashMap<String, VecDeque<i32>>>,
    unhealthy: Mutex<HashMap<String, bool>>,
    calls: Mutex<HashMap<String, usize>>,
}

impl FakeRuntime {
    fn new() -> Arc<FakeRuntime> {
        Arc::new(FakeRuntime::default())
    }

    fn set_healthy(&self, word: &str, healthy: bool) {
        self.unhealthy.lock().unwrap().insert(word.into(), !healthy);
    }

    fn script(&self, word: &str, codes: &[i32]) {
        self.script.lock().unwrap().entry(word.into()).or_default().extend(codes);
    }

    fn calls(&self, word: &str) -> usize {
        self.calls.lock().unwrap().get(word).copied().unwrap_or(0)
    }
}

fn unsupported<T>() -> RuntimeResult<T> {
    Err(RuntimeError::Failed("not supported by the fake".into()))
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn handler(&self) -> &str {
        "fake"
    }
    async fn version(&self) -> RuntimeResult<String> {
        Ok("fake://1".into())
    }
    async fn image_status(&self, _image: &str) -> RuntimeResult<Option<ImageInfo>> {
        unsupported()
    }
    async fn pull_image(&self, _image: &str, _auth: Option<&RegistryAuth>) -> RuntimeResult<String> {
        unsupported()
    }
    async fn run_sandbox(&self, _config: &SandboxConfig) -> RuntimeResult<String> {
        unsupported()
    }
    async fn stop_sandbox(&self, _id: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn remove_sandbox(&self, _id: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn sandbox_status(&self, _id: &str) -> RuntimeResult<SandboxStatus> {
        unsupported()
    }
    async fn list_sandboxes(&self) -> RuntimeResult<Vec<SandboxStatus>> {
        unsupported()
    }
    async fn create_container(&self, _sandbox_id: &str, _config: &ContainerConfig, _sandbox: &SandboxConfig) -> RuntimeResult<String> {
        unsupported()
    }
    async fn start_container(&self, _id: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn stop_container(&self, _id: &str, _grace: Duration) -> RuntimeResult<()> {
        unsupported()
    }
    async fn remove_container(&self, _id: &str) -> RuntimeResult<()> {
        unsupported()
    }
    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        let labels = BTreeMap::from([
            (labels::POD_NAME.to_string(), "web".to_string()),
            (labels::POD_NAMESPACE.to_string(), "default".to_string()),
            (labels::POD_UID.to_string(), "uid-1".to_string()),
            (labels::CONTAINER_NAME.to_string(), "app".to_string()),
        ]);
        Ok(ContainerStatus {
            id: id.into(),
            sandbox_id: "sandbox".into(),
            name: "app".into(),
            attempt: 0,
            state: ContainerState::Running,
            created_at: None,
            started_at: None,
            finished_at: None,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: String::new(),
            image_ref: String::new(),
            log_path: Default::default(),
            labels,
            annotations: BTreeMap::new(),
        })
    }
    async fn list_containers(&self, _sandbox_id: Option<&str>) -> RuntimeResult<Vec<ContainerStatus>> {
        unsupported()
    }
    async fn exec_sync(&self, _id: &str, command: &[String], _timeout: Duration) -> RuntimeResult<ExecOutput> {
        let word = command.first().cloned().unwrap_or_default();
        *self.calls.lock().unwrap().entry(word.clone()).or_default() += 1;
        match word.as_str() {
            "sleep" => return Err(RuntimeError::Timeout("exec".into())),
            "broken" => return Err(RuntimeError::Unavailable("containerd is down".into())),
            _ => {}
        }
        let scripted = self.script.lock().unwrap().get_mut(&word).and_then(VecDeque::pop_front);
        let unhealthy = self.unhealthy.lock().unwrap().get(&word).copied().unwrap_or(false);
        let exit_code = scripted.unwrap_or(if unhealthy { 1 } else { 0 });
        if exit_code == 0 {
            Ok(ExecOutput { exit_code, stdout: b"ok\n".to_vec(), stderr: Vec::new() })
        } else {
            Ok(ExecOutput { exit_code, stdout: Vec::new(), stderr: format!("{word}: unhealthy\n").into_bytes() })
        }
    }
    async fn exec(&self, _id: &str, _request: &StreamRequest) -> RuntimeResult<Stream> {
        unsupported()
    }
    async fn attach(&self, _id: &str, _request: &StreamRequest) -> RuntimeResult<Stream> {
        unsupported()
    }
    async fn port_forward(&self, _sandbox_id: &str) -> RuntimeResult<Stream> {
        unsupported()
    }
}

// === builders ===

fn exec_probe(word: &str) -> Probe {
    Probe { exec: Some(ExecAction { command: Some(vec![word.to_string()]) }), period_seconds: Some(10), ..Default::default() }
}

fn target(runtime: &Arc<FakeRuntime>, container_id: &str) -> ProbeTarget {
    ProbeTarget {
        pod_uid: "uid-1".into(),
        pod_namespace: "default".into(),
        pod_name: "web".into(),
        container_name: "app".into(),
        container_id: container_id.into(),
        pod_ip: None,
        runtime: runtime.clone(),
    }
}

fn container() -> Container {
    Container { name: "app".into(), ..Default::default() }
}

/// The next update, failing the test if none comes within ten virtual minutes.
async fn next_update(rx: &mut UnboundedReceiver<ProbeUpdate>) -> ProbeUpdate {
    tokio::time::timeout(Duration::from_secs(600), rx.recv()).await.expect("a probe update").expect("the manager is alive")
}

/// Lets `seconds` of (paused) time pass and asserts no update came.
async fn no_update_for(rx: &mut UnboundedReceiver<ProbeUpdate>, seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    if let Ok(update) = rx.try_recv() {
        panic!("unexpected update {update:?}");
    }
}

// === the manager ===

#[tokio::test(start_paused = true)]
async fn a_container_without_probes_is_started_and_ready_once_added() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    assert!(!manager.is_ready("uid-1", "app"));
    assert!(!manager.is_started("uid-1", "app"));
    manager.add_container(target(&runtime, "c1"), &container());
    assert!(manager.is_ready("uid-1", "app"));
    assert!(manager.is_started("uid-1", "app"));
    no_update_for(&mut rx, 60).await;
    manager.remove_container("uid-1", "app");
    assert!(!manager.is_ready("uid-1", "app"));
}

#[tokio::test(start_paused = true)]
async fn readiness_is_false_until_the_probe_first_succeeds() {
    let runtime = FakeRuntime::new();
    runtime.set_healthy("ready", false);
    let (manager, mut rx) = ProbeManager::new();
    let c = Container { readiness_probe: Some(exec_probe("ready")), ..container() };
    manager.add_container(target(&runtime, "c1"), &c);
    assert!(manager.is_started("uid-1", "app"));
    assert!(!manager.is_ready("uid-1", "app"));

    // Failing from the start changes nothing: readiness was false already.
    no_update_for(&mut rx, 60).await;
    assert!(runtime.calls("ready") >= 5);
    assert!(!manager.is_ready("uid-1", "app"));

    runtime.set_healthy("ready", true);
    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success, update.container_id.as_str()), (ProbeKind::Readiness, true, "c1"));
    assert!(update.message.is_empty());
    assert!(manager.is_ready("uid-1", "app"));
}

#[tokio::test(start_paused = true)]
async fn readiness_turns_false_after_failure_threshold_consecutive_failures() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let c = Container { readiness_probe: Some(exec_probe("ready")), ..container() };
    manager.add_container(target(&runtime, "c1"), &c);
    assert!(next_update(&mut rx).await.success);

    runtime.set_healthy("ready", false);
    let calls_before = runtime.calls("ready");
    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success), (ProbeKind::Readiness, false));
    assert_eq!(update.message, "ready: unhealthy\n");
    assert_eq!(runtime.calls("ready") - calls_before, 3);
    assert!(!manager.is_ready("uid-1", "app"));

    runtime.set_healthy("ready", true);
    assert!(next_update(&mut rx).await.success);
    assert!(manager.is_ready("uid-1", "app"));
}

#[tokio::test(start_paused = true)]
async fn readiness_needs_success_threshold_consecutive_successes() {
    let runtime = FakeRuntime::new();
    // ok, fail, ok, ok: ready after the fourth probe.
    runtime.script("ready", &[0, 1, 0, 0]);
    let (manager, mut rx) = ProbeManager::new();
    let probe = Probe { success_threshold: Some(2), ..exec_probe("ready") };
    manager.add_container(target(&runtime, "c1"), &Container { readiness_probe: Some(probe), ..container() });
    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success), (ProbeKind::Readiness, true));
    assert_eq!(runtime.calls("ready"), 4);
}

#[tokio::test(start_paused = true)]
async fn liveness_fails_only_after_failure_threshold_consecutive_failures_and_then_stops() {
    let runtime = FakeRuntime::new();
    // Two failures at a time never reach the threshold of three.
    runtime.script("live", &[1, 1, 0, 1, 1, 0, 1, 1, 0]);
    runtime.set_healthy("live", false);
    let (manager, mut rx) = ProbeManager::new();
    manager.add_container(target(&runtime, "c1"), &Container { liveness_probe: Some(exec_probe("live")), ..container() });

    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success, update.container_id.as_str()), (ProbeKind::Liveness, false, "c1"));
    assert_eq!(update.message, "live: unhealthy\n");
    assert_eq!(runtime.calls("live"), 12);

    // The container is to be restarted: no more probing of this instance.
    no_update_for(&mut rx, 120).await;
    assert_eq!(runtime.calls("live"), 12);
    // Liveness is not readiness: the container stays ready until restarted.
    assert!(manager.is_ready("uid-1", "app"));
}

#[tokio::test(start_paused = true)]
async fn a_successful_liveness_probe_sends_no_updates() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    manager.add_container(target(&runtime, "c1"), &Container { liveness_probe: Some(exec_probe("live")), ..container() });
    no_update_for(&mut rx, 100).await;
    assert!(runtime.calls("live") >= 9);
}

#[tokio::test(start_paused = true)]
async fn the_startup_probe_gates_liveness_and_readiness() {
    let runtime = FakeRuntime::new();
    runtime.set_healthy("start", false);
    let (manager, mut rx) = ProbeManager::new();
    let c = Container {
        startup_probe: Some(Probe { failure_threshold: Some(30), ..exec_probe("start") }),
        liveness_probe: Some(exec_probe("live")),
        readiness_probe: Some(exec_probe("ready")),
        ..container()
    };
    manager.add_container(target(&runtime, "c1"), &c);
    no_update_for(&mut rx, 60).await;
    assert!(runtime.calls("start") >= 5);
    assert_eq!((runtime.calls("live"), runtime.calls("ready")), (0, 0));
    assert!(!manager.is_started("uid-1", "app"));
    assert!(!manager.is_ready("uid-1", "app"));

    runtime.set_healthy("start", true);
    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success), (ProbeKind::Startup, true));
    assert!(manager.is_started("uid-1", "app"));
    // Readiness is probed right away, not a period later.
    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success), (ProbeKind::Readiness, true));
    assert!(manager.is_ready("uid-1", "app"));

    // The startup probe is done; liveness has taken over.
    let start_calls = runtime.calls("start");
    no_update_for(&mut rx, 60).await;
    assert_eq!(runtime.calls("start"), start_calls);
    assert!(runtime.calls("live") >= 5);
}

#[tokio::test(start_paused = true)]
async fn a_container_with_a_startup_probe_and_no_readiness_probe_is_ready_once_started() {
    let runtime = FakeRuntime::new();
    runtime.set_healthy("start", false);
    let (manager, mut rx) = ProbeManager::new();
    manager.add_container(target(&runtime, "c1"), &Container { startup_probe: Some(Probe { failure_threshold: Some(100), ..exec_probe("start") }), ..container() });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!manager.is_ready("uid-1", "app"));
    runtime.set_healthy("start", true);
    assert_eq!(next_update(&mut rx).await.kind, ProbeKind::Startup);
    assert!(manager.is_ready("uid-1", "app"));
}

#[tokio::test(start_paused = true)]
async fn a_startup_probe_failing_failure_threshold_times_asks_for_a_restart() {
    let runtime = FakeRuntime::new();
    runtime.set_healthy("start", false);
    let (manager, mut rx) = ProbeManager::new();
    let c = Container { startup_probe: Some(Probe { failure_threshold: Some(5), ..exec_probe("start") }), liveness_probe: Some(exec_probe("live")), ..container() };
    manager.add_container(target(&runtime, "c1"), &c);
    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success), (ProbeKind::Startup, false));
    assert_eq!(update.message, "start: unhealthy\n");
    assert_eq!(runtime.calls("start"), 5);
    assert!(!manager.is_started("uid-1", "app"));
    no_update_for(&mut rx, 60).await;
    assert_eq!((runtime.calls("start"), runtime.calls("live")), (5, 0));
}

#[tokio::test(start_paused = true)]
async fn probes_wait_for_the_initial_delay() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let probe = Probe { initial_delay_seconds: Some(30), period_seconds: Some(5), ..exec_probe("ready") };
    manager.add_container(target(&runtime, "c1"), &Container { readiness_probe: Some(probe), ..container() });
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(runtime.calls("ready"), 0);
    assert!(!manager.is_ready("uid-1", "app"));
    assert!(next_update(&mut rx).await.success);
    assert!(runtime.calls("ready") >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_container_replaces_the_previous_instance_and_removal_stops_probing() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let c = Container { readiness_probe: Some(exec_probe("ready")), ..container() };
    manager.add_container(target(&runtime, "c1"), &c);
    assert_eq!(next_update(&mut rx).await.container_id, "c1");
    // The same instance again is a no-op.
    manager.add_container(target(&runtime, "c1"), &c);
    assert!(manager.is_ready("uid-1", "app"));

    manager.add_container(target(&runtime, "c2"), &c);
    assert!(!manager.is_ready("uid-1", "app"));
    let update = next_update(&mut rx).await;
    assert_eq!((update.container_id.as_str(), update.success), ("c2", true));

    manager.remove_pod("uid-1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = runtime.calls("ready");
    no_update_for(&mut rx, 60).await;
    assert_eq!(runtime.calls("ready"), calls);
    assert!(!manager.is_ready("uid-1", "app"));
}

#[tokio::test(start_paused = true)]
async fn a_terminating_pod_stops_liveness_but_keeps_readiness() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let c = Container { liveness_probe: Some(exec_probe("live")), readiness_probe: Some(exec_probe("ready")), ..container() };
    manager.add_container(target(&runtime, "c1"), &c);
    assert!(next_update(&mut rx).await.success);
    manager.pod_terminating("uid-1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (live, ready) = (runtime.calls("live"), runtime.calls("ready"));
    runtime.set_healthy("live", false);
    no_update_for(&mut rx, 60).await;
    assert_eq!(runtime.calls("live"), live);
    assert!(runtime.calls("ready") > ready);
}

#[tokio::test(start_paused = true)]
async fn every_failed_attempt_is_an_unhealthy_event() {
    let runtime = FakeRuntime::new();
    runtime.set_healthy("ready", false);
    let (manager, _rx) = ProbeManager::new();
    let mut events = manager.events();
    manager.add_container(target(&runtime, "c1"), &Container { readiness_probe: Some(exec_probe("ready")), ..container() });
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv()).await.unwrap().unwrap();
        assert_eq!((event.reason, event.kind, event.pod_name.as_str()), (REASON_UNHEALTHY, ProbeKind::Readiness, "web"));
        assert_eq!(event.message, "Readiness probe failed: ready: unhealthy\n");
    }
}

#[tokio::test(start_paused = true)]
async fn an_exec_probe_past_its_timeout_fails() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    manager.add_container(target(&runtime, "c1"), &Container { liveness_probe: Some(exec_probe("sleep")), ..container() });
    let update = next_update(&mut rx).await;
    assert_eq!((update.kind, update.success), (ProbeKind::Liveness, false));
    assert_eq!(update.message, "command \"sleep\" timed out");
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_cannot_run_changes_nothing() {
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let mut events = manager.events();
    manager.add_container(target(&runtime, "c1"), &Container { liveness_probe: Some(exec_probe("broken")), ..container() });
    no_update_for(&mut rx, 100).await;
    let event = events.recv().await.unwrap();
    assert_eq!(event.message, "Liveness probe errored and resulted in unknown state: container runtime unavailable: containerd is down");
    // Each attempt is retried (three calls per tick).
    assert_eq!(runtime.calls("broken") % 3, 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_stops_its_workers() {
    let runtime = FakeRuntime::new();
    let (manager, _rx) = ProbeManager::new();
    manager.add_container(target(&runtime, "c1"), &Container { liveness_probe: Some(exec_probe("live")), ..container() });
    tokio::time::sleep(Duration::from_secs(25)).await;
    drop(manager);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = runtime.calls("live");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(runtime.calls("live"), calls);
}

#[test]
fn probe_specs_take_the_api_defaults_and_force_one_success_for_liveness() {
    let spec = Spec::new(ProbeKind::Liveness, &Probe { success_threshold: Some(3), ..Default::default() });
    assert_eq!((spec.initial_delay, spec.period, spec.timeout), (Duration::ZERO, Duration::from_secs(10), Duration::from_secs(1)));
    assert_eq!((spec.success_threshold, spec.failure_threshold), (1, 3));
    let spec = Spec::new(ProbeKind::Readiness, &Probe { success_threshold: Some(3), period_seconds: Some(0), ..Default::default() });
    assert_eq!((spec.success_threshold, spec.period), (3, Duration::from_secs(10)));
}

// === real sockets ===

/// Serves `status` to every request on a fresh port; returns the port.
async fn http_server(status: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn an_http_readiness_probe_against_a_real_server_makes_the_container_ready() {
    let port = http_server(200).await;
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let c = Container {
        ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: i32::from(port), ..Default::default() }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction { path: Some("/healthz".into()), port: IntOrString::String("http".into()), ..Default::default() }),
            period_seconds: Some(1),
            ..Default::default()
        }),
        ..container()
    };
    manager.add_container(target(&runtime, "c1"), &c);
    let update = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!((update.kind, update.success), (ProbeKind::Readiness, true));
    assert!(manager.is_ready("uid-1", "app"));
}

#[tokio::test]
async fn an_http_liveness_probe_answered_with_500_asks_for_a_restart() {
    let port = http_server(500).await;
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let c = Container {
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction { port: IntOrString::Int(i32::from(port)), ..Default::default() }),
            period_seconds: Some(1),
            failure_threshold: Some(2),
            ..Default::default()
        }),
        ..container()
    };
    manager.add_container(target(&runtime, "c1"), &c);
    let update = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!((update.kind, update.success), (ProbeKind::Liveness, false));
    assert_eq!(update.message, "HTTP probe failed with statuscode: 500");
}

#[tokio::test]
async fn a_tcp_probe_on_a_closed_port_fails_with_the_dial_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let runtime = FakeRuntime::new();
    let (manager, mut rx) = ProbeManager::new();
    let c = Container {
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(i32::from(port)), ..Default::default() }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Default::default()
        }),
        ..container()
    };
    manager.add_container(target(&runtime, "c1"), &c);
    let update = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(update.message, format!("dial tcp 127.0.0.1:{port}: connect: connection refused"));
}

// === lifecycle hooks ===

fn exec_hook(command: &[&str]) -> LifecycleHandler {
    LifecycleHandler { exec: Some(ExecAction { command: Some(command.iter().map(|s| s.to_string()).collect()) }), ..Default::default() }
}

#[tokio::test]
async fn an_exec_hook_passes_on_exit_zero_and_fails_with_the_kubelet_message() {
    let runtime = FakeRuntime::new();
    let c = container();
    assert_eq!(run_hook(runtime.as_ref(), "c1", None, &c, &exec_hook(&["hook"]), Duration::from_secs(5)).await, Ok(()));
    runtime.set_healthy("hook", false);
    let err = run_hook(runtime.as_ref(), "c1", None, &c, &exec_hook(&["hook", "now"]), Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(
        err,
        "Exec lifecycle hook ([hook now]) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: command 'hook now' exited with 1: hook: unhealthy\n, message: \"hook: unhealthy\\n\""
    );
}

#[tokio::test]
async fn an_http_hook_passes_on_any_status_and_fails_when_nothing_answers() {
    let runtime = FakeRuntime::new();
    let port = http_server(500).await;
    let hook = |port: u16| LifecycleHandler {
        http_get: Some(HTTPGetAction { path: Some("/stop".into()), port: IntOrString::Int(i32::from(port)), ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(run_hook(runtime.as_ref(), "c1", None, &container(), &hook(port), Duration::from_secs(5)).await, Ok(()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap().port();
    drop(listener);
    let err = run_hook(runtime.as_ref(), "c1", None, &container(), &hook(closed), Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(
        err,
        format!("HTTP lifecycle hook (/stop) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: Get \"http://127.0.0.1:{closed}/stop\": dial tcp 127.0.0.1:{closed}: connect: connection refused")
    );
}

#[tokio::test(start_paused = true)]
async fn a_sleep_hook_sleeps_and_is_cut_short_by_the_timeout() {
    let runtime = FakeRuntime::new();
    let hook = LifecycleHandler { sleep: Some(SleepAction { seconds: 5 }), ..Default::default() };
    let started = tokio::time::Instant::now();
    assert_eq!(run_hook(runtime.as_ref(), "c1", None, &container(), &hook, Duration::from_secs(30)).await, Ok(()));
    assert_eq!(started.elapsed().as_secs(), 5);

    let started = tokio::time::Instant::now();
    let err = run_hook(runtime.as_ref(), "c1", None, &container(), &hook, Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(started.elapsed().as_secs(), 2);
    assert!(err.ends_with("failed - error: container terminated before sleep hook finished"), "{err}");
}

#[tokio::test]
async fn a_tcp_socket_hook_is_an_invalid_handler() {
    let runtime = FakeRuntime::new();
    let hook = LifecycleHandler { tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(80), ..Default::default() }), ..Default::default() };
    let err = run_hook(runtime.as_ref(), "c1", None, &container(), &hook, Duration::from_secs(1)).await.unwrap_err();
    assert!(err.starts_with("Cannot run handler: invalid handler"), "{err}");
}
