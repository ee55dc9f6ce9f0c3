//! The pod workers against a real in-process API server, with the in-memory
//! runtime and helpers.

use std::time::Instant;

use serde_json::json;

use super::*;
use crate::kubelet::stream::PodLookup;
use crate::kubelet::fake_runtime::{Behaviour, FakeHost, FakeRuntime};
use crate::runtime::ContainerState;

struct TestServer {
    server: skiff_apiserver::Server,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let config = skiff_apiserver::Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap(), skiff_apiserver::Settings::default());
        let server = skiff_apiserver::Server::start(config, store).await.unwrap();
        TestServer { server, _dir: dir }
    }

    fn client(&self) -> Client {
        let mut config = skiff_client::ClientConfig::from_kubeconfig(&self.server.kubeconfig).unwrap();
        config.timeout = Duration::from_secs(10);
        Client::new(config).unwrap()
    }
}

/// A kubelet core on the fake runtime; dropping it stops it.
struct Agent {
    task: tokio::task::JoinHandle<()>,
    probes: mpsc::UnboundedSender<ProbeUpdate>,
    kubelet: Kubelet,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start_agent(client: &Client, rt: &Arc<FakeRuntime>, host: &Arc<FakeHost>, data_dir: &std::path::Path, cpu: &str) -> Agent {
    start_agent_with(client, rt, BTreeMap::new(), host, data_dir, cpu)
}

fn start_agent_with(client: &Client, rt: &Arc<FakeRuntime>, handlers: BTreeMap<String, Arc<dyn Runtime>>, host: &Arc<FakeHost>, data_dir: &std::path::Path, cpu: &str) -> Agent {
    let runtime: Arc<dyn Runtime> = rt.clone();
    let kubelet = Kubelet::new(KubeletParts {
        client: client.clone(),
        node_name: "n1".into(),
        node_ip: "192.168.1.10".parse().unwrap(),
        allocatable: [("cpu", cpu), ("memory", "8Gi"), ("pods", "110")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        runtime,
        handlers,
        host: host.clone(),
        data_dir: data_dir.to_path_buf(),
        dns: NodeDns { cluster_dns: vec!["10.96.0.10".into()], cluster_domain: "cluster.local".into(), host: Default::default() },
        sync_period: Duration::from_secs(2),
        clock: Clock::system(),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(kubelet.clone().run(rx));
    Agent { task, probes: tx, kubelet }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn create(client: &Client, pod: Value) -> Pod {
    let v = client.create("/api/v1/namespaces/default/pods", &pod).await.unwrap();
    serde_json::from_value(v).unwrap()
}

async fn get(client: &Client, name: &str) -> Option<Pod> {
    match client.get(&format!("/api/v1/namespaces/default/pods/{name}")).await {
        Ok(v) => Some(serde_json::from_value(v).unwrap()),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("{e}"),
    }
}

fn phase(pod: &Option<Pod>) -> Option<String> {
    pod.as_ref()?.status.as_ref()?.phase.clone()
}

fn ready(pod: &Option<Pod>) -> bool {
    pod.as_ref().and_then(|p| p.status.as_ref()).and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_json(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!("n1");
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn fake_runtime() -> Arc<FakeRuntime> {
    let rt = Arc::new(FakeRuntime::new());
    rt.add_image("busybox:1.35");
    rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_reports_its_status_and_a_deletion_removes_it_from_the_node() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = (fake_runtime(), Arc::new(FakeHost::default()));
    let agent = start_agent(&client, &rt, &host, dir.path(), "4");

    create(&client, pod_json("web", json!({"terminationGracePeriodSeconds": 5, "containers": [{"name": "app", "image": "busybox:1.35"}]}))).await;
    eventually("the pod to run and be ready", || async { ready(&get(&client, "web").await) }).await;
    let pod = get(&client, "web").await.unwrap();
    let status = pod.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.host_ip.as_deref(), Some("192.168.1.10"));
    assert!(status.pod_ip.as_deref().is_some_and(|ip| ip.starts_with("10.244.0.")), "{status:?}");
    let c = &status.container_statuses.as_ref().unwrap()[0];
    assert!(c.container_id.as_deref().is_some_and(|id| id.starts_with("fake://app-")), "{c:?}");
    assert_eq!((c.ready, c.started, c.restart_count), (true, Some(true), 0));
    assert!(host.reasons().contains(&"Started".to_string()));
    let target = agent.kubelet.registry().lookup("default", "web").expect("the endpoint finds the pod");
    assert!(target.containers.contains_key("app"));

    client.delete("/api/v1/namespaces/default/pods/web").await.unwrap();
    eventually("the pod to be gone", || async { get(&client, "web").await.is_none() }).await;
    assert!(rt.all_containers().is_empty() && rt.all_sandboxes().is_empty(), "everything of the pod is removed");
    assert!(host.torn_down().contains(&pod.metadata.uid.clone().unwrap()));
    assert!(host.events().contains(&"Normal Killing: Stopping container app".to_string()));
    eventually("the worker to forget the pod", || async { agent.kubelet.registry().is_empty() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_pods_succeed_or_fail_and_keep_their_containers() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = (fake_runtime(), Arc::new(FakeHost::default()));
    rt.behave("ok", Behaviour::Exit { after: Duration::from_millis(200), code: 0 });
    rt.behave("bad", Behaviour::Exit { after: Duration::from_millis(200), code: 3 });
    let _agent = start_agent(&client, &rt, &host, dir.path(), "4");

    create(&client, pod_json("done", json!({"restartPolicy": "Never", "containers": [{"name": "ok", "image": "busybox:1.35"}]}))).await;
    create(&client, pod_json("failed", json!({"restartPolicy": "Never", "containers": [{"name": "bad", "image": "busybox:1.35"}]}))).await;
    eventually("both pods to finish", || async { phase(&get(&client, "done").await).as_deref() == Some("Succeeded") && phase(&get(&client, "failed").await).as_deref() == Some("Failed") }).await;
    let failed = get(&client, "failed").await.unwrap().status.unwrap();
    let t = failed.container_statuses.unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    let ready = failed.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("PodFailed"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rt.all_containers().len(), 2, "finished containers stay for their logs");
    assert!(rt.all_sandboxes().iter().all(|s| s.state == crate::runtime::SandboxState::NotReady), "their sandboxes are stopped");
    assert_eq!(rt.call_names().iter().filter(|c| c.starts_with("start ")).count(), 2, "nothing restarts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_does_not_fit_is_rejected() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = (fake_runtime(), Arc::new(FakeHost::default()));
    let _agent = start_agent(&client, &rt, &host, dir.path(), "1");
    create(&client, pod_json("big", json!({"containers": [{"name": "a", "image": "busybox:1.35", "resources": {"requests": {"cpu": "2"}}}]}))).await;
    eventually("the pod to fail", || async { phase(&get(&client, "big").await).as_deref() == Some("Failed") }).await;
    let status = get(&client, "big").await.unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    assert_eq!(status.message.as_deref(), Some("Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 0, capacity: 1000"));
    assert!(rt.all_sandboxes().is_empty());
    client.delete("/api/v1/namespaces/default/pods/big").await.unwrap();
    eventually("the rejected pod to be deleted", || async { get(&client, "big").await.is_none() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_agent_restart_running_containers_are_adopted_and_orphans_removed() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = (fake_runtime(), Arc::new(FakeHost::default()));
    let agent = start_agent(&client, &rt, &host, dir.path(), "4");
    create(&client, pod_json("keep", json!({"containers": [{"name": "app", "image": "busybox:1.35"}]}))).await;
    create(&client, pod_json("gone", json!({"containers": [{"name": "other", "image": "busybox:1.35"}]}))).await;
    eventually("both pods to run", || async { ready(&get(&client, "keep").await) && ready(&get(&client, "gone").await) }).await;
    let before = get(&client, "keep").await.unwrap().status.unwrap();
    drop(agent);

    // While the agent is away, one pod is force-deleted.
    client.request(http::Method::DELETE, "/api/v1/namespaces/default/pods/gone", Some((bytes::Bytes::from(r#"{"gracePeriodSeconds":0}"#), "application/json"))).await.unwrap();
    rt.clear_calls();

    let _agent = start_agent(&client, &rt, &host, dir.path(), "4");
    eventually("the orphan to be removed", || async { rt.all_containers().iter().all(|c| c.name != "other") }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = rt.call_names();
    assert!(!calls.iter().any(|c| c.starts_with("start app") || c.starts_with("stop app") || c.starts_with("create app")), "{calls:?}");
    let app = rt.all_containers().into_iter().find(|c| c.name == "app").unwrap();
    assert_eq!(app.state, ContainerState::Running);
    let after = get(&client, "keep").await.unwrap().status.unwrap();
    assert_eq!(after.container_statuses, before.container_statuses, "the status does not regress");
    assert_eq!(after.start_time, before.start_time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_liveness_probe_restarts_the_container() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = (fake_runtime(), Arc::new(FakeHost::default()));
    let agent = start_agent(&client, &rt, &host, dir.path(), "4");
    create(&client, pod_json("live", json!({"containers": [{"name": "app", "image": "busybox:1.35", "livenessProbe": {"exec": {"command": ["true"]}}}]}))).await;
    eventually("the pod to run", || async { ready(&get(&client, "live").await) }).await;
    assert_eq!(host.probed().len(), 1, "the prober follows the container");
    let pod = get(&client, "live").await.unwrap();
    let id = pod.status.unwrap().container_statuses.unwrap()[0].container_id.clone().unwrap().trim_start_matches("fake://").to_string();

    agent
        .probes
        .send(ProbeUpdate {
            pod_uid: pod.metadata.uid.clone().unwrap(),
            container_name: "app".into(),
            container_id: id,
            kind: ProbeKind::Liveness,
            success: false,
            message: "command \"true\" exited with 1".into(),
        })
        .unwrap();
    eventually("the container to restart", || async {
        get(&client, "live").await.and_then(|p| p.status?.container_statuses).is_some_and(|cs| cs[0].restart_count == 1 && cs[0].state.as_ref().is_some_and(|s| s.running.is_some()))
    })
    .await;
    let events = host.events();
    assert!(events.contains(&"Warning Unhealthy: Liveness probe failed: command \"true\" exited with 1".to_string()), "{events:?}");
    assert!(events.contains(&"Normal Killing: Container app failed liveness probe, will be restarted".to_string()), "{events:?}");
    assert_eq!(host.probed().len(), 2, "the new instance is probed");
    let last = get(&client, "live").await.unwrap().status.unwrap().container_statuses.unwrap()[0].last_state.clone().unwrap();
    assert!(last.terminated.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_past_its_active_deadline_fails() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = (fake_runtime(), Arc::new(FakeHost::default()));
    let _agent = start_agent(&client, &rt, &host, dir.path(), "4");
    create(&client, pod_json("short", json!({"activeDeadlineSeconds": 2, "containers": [{"name": "app", "image": "busybox:1.35"}]}))).await;
    eventually("the pod to fail", || async { phase(&get(&client, "short").await).as_deref() == Some("Failed") }).await;
    let status = get(&client, "short").await.unwrap().status.unwrap();
    assert_eq!((status.reason.as_deref(), status.message.as_deref()), (Some("DeadlineExceeded"), Some("Pod was active on the node longer than the specified deadline")));
    assert!(rt.all_containers().iter().all(|c| c.state == ContainerState::Exited));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_classes_choose_the_runtime_and_unknown_handlers_fail_the_pod() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let dir = tempfile::tempdir().unwrap();
    let (rt, host) = (fake_runtime(), Arc::new(FakeHost::default()));
    let process = Arc::new(FakeRuntime::with_handler("process"));
    process.add_image("busybox:1.35");
    let handlers: BTreeMap<String, Arc<dyn Runtime>> = [("process".to_string(), process.clone() as Arc<dyn Runtime>)].into();
    let _agent = start_agent_with(&client, &rt, handlers, &host, dir.path(), "4");
    for (name, handler) in [("host", "process"), ("bogus", "gvisor")] {
        let class = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": handler});
        client.create("/apis/node.k8s.io/v1/runtimeclasses", &class).await.unwrap();
    }
    create(&client, pod_json("proc", json!({"runtimeClassName": "host", "containers": [{"name": "app", "image": "busybox:1.35"}]}))).await;
    create(&client, pod_json("odd", json!({"runtimeClassName": "bogus", "containers": [{"name": "app", "image": "busybox:1.35"}]}))).await;
    create(&client, pod_json("later", json!({"runtimeClassName": "missing", "containers": [{"name": "app", "image": "busybox:1.35"}]}))).await;

    eventually("the process pod to run", || async { ready(&get(&client, "proc").await) }).await;
    let status = get(&client, "proc").await.unwrap().status.unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("192.168.1.10"), "host processes use the node's address");
    assert_eq!(process.all_containers().len(), 1);
    assert!(rt.all_containers().is_empty());

    eventually("the pod with an unknown handler to fail", || async { phase(&get(&client, "odd").await).as_deref() == Some("Failed") }).await;
    let status = get(&client, "odd").await.unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("UnknownRuntimeHandler"));
    assert!(status.message.unwrap().contains("\"gvisor\""));

    eventually("a missing RuntimeClass to be reported", || async { host.events().iter().any(|e| e == "Warning FailedCreatePodSandBox: Failed to create pod sandbox: RuntimeClass \"missing\" not found") }).await;
    assert_eq!(phase(&get(&client, "later").await).as_deref(), Some("Pending"), "the pod waits for its RuntimeClass");
}
