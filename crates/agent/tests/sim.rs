//! Simulated nodes against a real in-process API server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_agent::sim::{self, SimConfig};
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Client, ClientConfig, PatchType};

struct TestServer {
    server: Server,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let config = Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap(), Settings::default());
        let server = Server::start(config, store).await.expect("server starts");
        TestServer { server, _dir: dir }
    }

    fn client(&self) -> Client {
        let mut config = ClientConfig::from_kubeconfig(&self.server.kubeconfig).expect("the kubeconfig reads");
        config.timeout = Duration::from_secs(30);
        Client::new(config).expect("client")
    }
}

/// Polls `f` every 100 ms until it holds, for at most `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn list(client: &Client, path: &str) -> Vec<Value> {
    client.get(path).await.expect("list")["items"].as_array().cloned().unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": "10m"}}}]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_nodes_run_thousands_of_pods_with_unique_addresses() {
    let ts = TestServer::start().await;
    let client = ts.client();
    const NODES: usize = 300;
    const PODS: usize = 1500;
    let config = SimConfig { nodes: NODES, zones: vec!["a".into(), "b".into()], heartbeat: Duration::from_secs(2), ..SimConfig::default() };
    let agent = tokio::spawn(sim::run(client.clone(), config));

    let started = Instant::now();
    eventually("every node to be Ready", Duration::from_secs(60), || async {
        let nodes = list(&client, "/api/v1/nodes").await;
        nodes.len() == NODES && nodes.iter().all(|n| n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
    })
    .await;
    eprintln!("{NODES} nodes Ready after {:?}", started.elapsed());
    eventually("a Lease per node", Duration::from_secs(30), || async {
        list(&client, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases").await.len() == NODES
    })
    .await;

    let started = Instant::now();
    let creates = (0..PODS).map(|i| {
        let client = client.clone();
        async move { client.create("/api/v1/namespaces/default/pods", &pod(&format!("p{i}"), &format!("sim-{}", i % NODES))).await.expect("pod is created") }
    });
    futures::stream::iter(creates).buffer_unordered(32).collect::<Vec<_>>().await;
    eventually("every pod to be Running and Ready", Duration::from_secs(120), || async {
        let pods = list(&client, "/api/v1/namespaces/default/pods").await;
        pods.len() == PODS && pods.iter().all(|p| p["status"]["phase"] == "Running" && ready(p))
    })
    .await;
    eprintln!("{PODS} pods Ready {:?} after the first create", started.elapsed());

    let cidrs: HashMap<String, String> = list(&client, "/api/v1/nodes")
        .await
        .iter()
        .map(|n| (n["metadata"]["name"].as_str().unwrap().to_string(), n["spec"]["podCIDR"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(cidrs.values().collect::<HashSet<_>>().len(), NODES, "every node has its own pod CIDR");
    let pods = list(&client, "/api/v1/namespaces/default/pods").await;
    let mut ips = HashSet::new();
    for p in &pods {
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(ips.insert(ip.to_string()), "{ip} handed out twice");
        let cidr = &cidrs[p["spec"]["nodeName"].as_str().unwrap()];
        assert!(ip.starts_with(cidr.trim_end_matches("0/24")), "{ip} outside {cidr}");
    }
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_and_conditions_of_others_are_respected() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let agent = tokio::spawn(sim::run(client.clone(), SimConfig::default()));
    let mut gated = pod("gated", "sim");
    gated["spec"]["readinessGates"] = json!([{"conditionType": "example.com/lb"}]);
    eventually("the node", Duration::from_secs(30), || async { client.get("/api/v1/nodes/sim").await.is_ok() }).await;
    client.create("/api/v1/namespaces/default/pods", &gated).await.unwrap();

    let path = "/api/v1/namespaces/default/pods/gated";
    eventually("the pod to run", Duration::from_secs(30), || async { client.get(path).await.unwrap()["status"]["phase"] == "Running" }).await;
    let p = client.get(path).await.unwrap();
    assert!(!ready(&p), "the gate holds Ready back");
    let condition = |p: &Value, t: &str| p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap();
    assert_eq!(condition(&p, "Ready")["reason"], "ReadinessGatesNotReady");
    assert_eq!(condition(&p, "ContainersReady")["status"], "True");

    // A load balancer controller reports the gate's condition: the agent keeps it
    // and turns the pod Ready.
    let gate = json!({"status": {"conditions": p["status"]["conditions"].as_array().unwrap().iter().cloned()
        .chain([json!({"type": "example.com/lb", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"})]).collect::<Vec<_>>()}});
    client.patch(&format!("{path}/status"), PatchType::Merge, &gate).await.unwrap();
    eventually("the pod to be Ready", Duration::from_secs(30), || async { ready(&client.get(path).await.unwrap()) }).await;
    let p = client.get(path).await.unwrap();
    assert_eq!(condition(&p, "example.com/lb")["status"], "True", "a condition the kubelet does not own stays");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_taint_stops_the_agent_with_a_clear_error() {
    let ts = TestServer::start().await;
    let config = SimConfig { taints: vec!["dedicated=x:Sometimes".into()], ..SimConfig::default() };
    let err = sim::run(ts.client(), config).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid taint \"dedicated=x:Sometimes\": effect \"Sometimes\" is not one of NoSchedule, PreferNoSchedule, NoExecute");
}
