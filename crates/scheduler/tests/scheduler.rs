//! The scheduler against a real in-process API server on a temporary SQLite store:
//! nodes and pods are created through the API, the scheduler binds, and the tests
//! read the result back, as a user would.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use serde_json::{json, Value};
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Api, Client, ClientConfig, ListParams};
use skiff_scheduler::SchedulerConfig;

struct Cluster {
    _server: Server,
    _dir: tempfile::TempDir,
    client: Client,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.scheduler.abort();
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let server = Server::start(Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap(), Settings::default()), store).await.unwrap();
    let mut config = ClientConfig::from_kubeconfig(&server.kubeconfig).unwrap();
    config.timeout = Duration::from_secs(10);
    let client = Client::new(config).unwrap();
    let scheduler = tokio::spawn(skiff_scheduler::run(client.clone(), SchedulerConfig::default()));
    Cluster { _server: server, _dir: dir, client, scheduler }
}

async fn node(c: &Cluster, name: &str, cpu: &str, labels: Value, taints: Value) {
    let mut l = json!({"kubernetes.io/hostname": name});
    for (k, v) in labels.as_object().unwrap() {
        l[k] = v.clone();
    }
    let body = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": l},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}, "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
    });
    let created = c.client.create("/api/v1/nodes", &body).await.unwrap();
    if created.pointer("/status/allocatable").is_none() {
        // The server may ignore status on create: set it through the status subresource.
        c.client.update(&format!("/api/v1/nodes/{name}/status"), &{
            let mut b = created.clone();
            b["status"] = body["status"].clone();
            b
        })
        .await
        .unwrap();
    }
}

async fn pod(c: &Cluster, name: &str, cpu: &str, extra: Value) -> Pod {
    let mut body = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1", "resources": {"requests": {"cpu": cpu}}}]},
    });
    merge(&mut body, &extra);
    serde_json::from_value(c.client.create("/api/v1/namespaces/default/pods", &body).await.unwrap()).unwrap()
}

fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(c: &Cluster, name: &str) -> Pod {
    Api::<Pod>::namespaced(&c.client, "default").get(name).await.unwrap()
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

async fn events_for(c: &Cluster, name: &str) -> Vec<Event> {
    let all = Api::<Event>::namespaced(&c.client, "default").list(&ListParams::default()).await.unwrap().items;
    all.into_iter().filter(|e| e.involved_object.name.as_deref() == Some(name)).collect()
}

fn condition(p: &Pod) -> Option<(String, String, String)> {
    let c = p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_spread_and_announced() {
    let c = cluster().await;
    for n in ["n0", "n1", "n2"] {
        node(&c, n, "2", json!({}), json!([])).await;
    }
    for i in 0..6 {
        pod(&c, &format!("web-{i}"), "500m", json!({})).await;
    }
    let mut placed = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        let name = format!("web-{i}");
        let p = until("the pod to be bound", async || node_of(&get(&c, &name).await)).await;
        *placed.entry(p).or_default() += 1;
    }
    assert_eq!(placed.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "LeastAllocated spreads equal pods: {placed:?}");
    let p = get(&c, "web-0").await;
    let node = node_of(&p).unwrap();
    assert_eq!(condition(&p).unwrap().0, "True");
    let events = until("the Scheduled event", async || {
        let e = events_for(&c, "web-0").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events[0].reason.as_deref(), Some("Scheduled"));
    assert_eq!(events[0].message.as_deref(), Some(format!("Successfully assigned default/web-0 to {node}").as_str()));
    assert_eq!(events[0].source.as_ref().and_then(|s| s.component.as_deref()), Some("default-scheduler"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_too_big_for_every_node_waits_with_upstreams_message_until_a_bigger_node_joins() {
    let c = cluster().await;
    node(&c, "tainted", "2", json!({}), json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])).await;
    node(&c, "small-a", "2", json!({}), json!([])).await;
    node(&c, "small-b", "2", json!({}), json!([])).await;
    pod(&c, "big", "3", json!({})).await;
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu. \
                preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.";
    let cond = until("the Unschedulable condition", async || condition(&get(&c, "big").await)).await;
    assert_eq!(cond, ("False".to_string(), "Unschedulable".to_string(), want.to_string()));
    let events = until("FailedScheduling", async || {
        let e = events_for(&c, "big").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events[0].reason.as_deref(), Some("FailedScheduling"));
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(events[0].message.as_deref(), Some(want));
    // A node that fits wakes the pod up at once (no waiting for the periodic retry).
    node(&c, "big-node", "8", json!({}), json!([])).await;
    let placed = until("the pod to be bound", async || node_of(&get(&c, "big").await)).await;
    assert_eq!(placed, "big-node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_low_priority_one() {
    let c = cluster().await;
    node(&c, "only", "2", json!({}), json!([])).await;
    for (name, value) in [("low", 10), ("high", 1000)] {
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value});
        c.client.create("/apis/scheduling.k8s.io/v1/priorityclasses", &pc).await.unwrap();
    }
    pod(&c, "victim", "2", json!({"spec": {"priorityClassName": "low", "priority": 10}})).await;
    until("the victim to be bound", async || node_of(&get(&c, "victim").await)).await;
    let preemptor = pod(&c, "preemptor", "2", json!({"spec": {"priorityClassName": "high", "priority": 1000}})).await;
    let uid = preemptor.metadata.uid.clone().unwrap();
    // The preemptor is nominated to the node and the victim is being deleted.
    let nominated = until("the nomination", async || get(&c, "preemptor").await.status.and_then(|s| s.nominated_node_name)).await;
    assert_eq!(nominated, "only");
    let cond = condition(&get(&c, "preemptor").await).unwrap();
    assert_eq!(cond, ("False".into(), "Unschedulable".into(), "0/1 nodes are available: 1 Insufficient cpu.".into()));
    until("the victim to terminate", async || get(&c, "victim").await.metadata.deletion_timestamp.map(|_| ())).await;
    let disrupted = get(&c, "victim").await.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "DisruptionTarget").unwrap();
    assert_eq!((disrupted.status.as_str(), disrupted.reason.as_deref()), ("True", Some("PreemptionByScheduler")));
    assert_eq!(disrupted.message.as_deref(), Some("default-scheduler: preempting to accommodate a higher priority pod"));
    // Nothing runs the victim here: finish it as its kubelet would. The preemptor
    // then takes its place.
    let api = Api::<Pod>::namespaced(&c.client, "default");
    api.delete("victim", &skiff_client::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    let placed = until("the preemptor to be bound", async || node_of(&get(&c, "preemptor").await)).await;
    assert_eq!(placed, "only");
    let events = until("the Preempted event", async || {
        let e: Vec<Event> = events_for(&c, "victim").await.into_iter().filter(|e| e.reason.as_deref() == Some("Preempted")).collect();
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events[0].message.as_deref(), Some(format!("Preempted by pod {uid} on node only").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_other_schedulers_and_gated_pods_are_left_alone() {
    let c = cluster().await;
    node(&c, "n", "2", json!({}), json!([])).await;
    pod(&c, "other", "100m", json!({"spec": {"schedulerName": "my-scheduler"}})).await;
    pod(&c, "gated", "100m", json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}]}})).await;
    pod(&c, "mine", "100m", json!({})).await;
    until("our pod to be bound", async || node_of(&get(&c, "mine").await)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node_of(&get(&c, "other").await), None);
    assert_eq!(node_of(&get(&c, "gated").await), None);
    // Removing the gate releases the pod.
    let api = Api::<Pod>::namespaced(&c.client, "default");
    api.patch("gated", skiff_client::PatchType::Merge, &json!({"spec": {"schedulingGates": null}})).await.unwrap();
    until("the released pod to be bound", async || node_of(&get(&c, "gated").await)).await;
}
