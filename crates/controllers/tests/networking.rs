//! Node IPAM and ServiceLB against a real in-process API server on a temporary
//! SQLite store: Nodes and Services are written through the API, the controllers
//! run as `skiff server` runs them, and the tests read the outcome back.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Service};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{json, Value};
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Api, Client, ClientConfig, DeleteParams, ListParams, PatchType};
use skiff_controllers::servicelb::{AddressPool, FINALIZER};
use skiff_controllers::ControllersConfig;

struct Cluster {
    _server: Server,
    _dir: tempfile::TempDir,
    client: Client,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controllers.abort();
    }
}

async fn cluster(config: ControllersConfig) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let server = Server::start(Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap(), Settings::default()), store).await.unwrap();
    let mut client_config = ClientConfig::from_kubeconfig(&server.kubeconfig).unwrap();
    client_config.timeout = Duration::from_secs(10);
    let client = Client::new(client_config).unwrap();
    let controllers = tokio::spawn(skiff_controllers::run(client.clone(), config));
    Cluster { _server: server, _dir: dir, client, controllers }
}

fn ipam(cluster_cidr: &str) -> ControllersConfig {
    let (ip, bits) = cluster_cidr.split_once('/').unwrap();
    ControllersConfig { cluster_cidr: Some((ip.parse().unwrap(), bits.parse().unwrap())), ..Default::default() }
}

fn pool(pool: &str) -> ControllersConfig {
    ControllersConfig { lb_pool: Some(pool.parse::<AddressPool>().unwrap()), ..Default::default() }
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

/// Creates a Node (with `pod_cidr` if given), Ready with `internal_ip`.
async fn node(c: &Cluster, name: &str, pod_cidr: Option<&str>, internal_ip: &str) {
    labelled_node(c, name, pod_cidr, internal_ip, json!({})).await
}

async fn labelled_node(c: &Cluster, name: &str, pod_cidr: Option<&str>, internal_ip: &str, labels: Value) {
    let mut spec = json!({});
    if let Some(cidr) = pod_cidr {
        spec = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": spec});
    c.client.create("/api/v1/nodes", &body).await.unwrap();
    let status = json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}],
    });
    set_node_status(c, name, status).await;
}

/// Writes a Node's status, again on conflicts (node IPAM writes the spec meanwhile).
async fn set_node_status(c: &Cluster, name: &str, status: Value) {
    loop {
        let mut current = c.client.get(&format!("/api/v1/nodes/{name}")).await.unwrap();
        current["status"] = status.clone();
        match c.client.update(&format!("/api/v1/nodes/{name}/status"), &current).await {
            Ok(_) => return,
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("writing {name}'s status: {e}"),
        }
    }
}

async fn pod_cidr(c: &Cluster, name: &str) -> Option<String> {
    let node = Api::<Node>::all(&c.client).get(name).await.ok()?;
    let spec = node.spec?;
    let cidrs = spec.pod_cidrs.unwrap_or_default();
    assert_eq!(spec.pod_cidr.as_ref(), cidrs.first(), "podCIDR and podCIDRs agree");
    spec.pod_cidr
}

async fn events_about(c: &Cluster, namespace: &str, name: &str) -> Vec<(String, String, String)> {
    let all = Api::<Event>::namespaced(&c.client, namespace).list(&ListParams::default()).await.unwrap().items;
    all.into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn until_event(c: &Cluster, namespace: &str, name: &str, reason: &str) -> (String, String, String) {
    until(&format!("a {reason} event about {name}"), async || events_about(c, namespace, name).await.into_iter().find(|e| e.1 == reason)).await
}

async fn service(c: &Cluster, name: &str, spec: Value) -> Service {
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec});
    serde_json::from_value(c.client.create("/api/v1/namespaces/default/services", &body).await.unwrap()).unwrap()
}

fn lb_spec(ports: &[i32]) -> Value {
    let ports: Vec<Value> = ports.iter().map(|p| json!({"name": format!("p{p}"), "port": p, "protocol": "TCP"})).collect();
    json!({"type": "LoadBalancer", "selector": {"app": "web"}, "ports": ports})
}

async fn get_service(c: &Cluster, name: &str) -> Option<Service> {
    Api::<Service>::namespaced(&c.client, "default").get_opt(name).await.unwrap()
}

/// The addresses in a Service's status, and their `ipMode`s.
fn ingress(svc: &Service) -> Vec<(String, String)> {
    let lb = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.clone()).unwrap_or_default();
    lb.into_iter().map(|i| (i.ip.unwrap_or_default(), i.ip_mode.unwrap_or_default())).collect()
}

async fn until_ingress(c: &Cluster, name: &str, want: &[&str]) -> Service {
    let want: Vec<(String, String)> = want.iter().map(|ip| (ip.to_string(), "VIP".to_string())).collect();
    until(&format!("{name} to have the addresses {want:?}"), async || get_service(c, name).await.filter(|s| ingress(s) == want)).await
}

fn finalizers(svc: &Service) -> Vec<String> {
    svc.metadata.finalizers.clone().unwrap_or_default()
}

// === node IPAM ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs_and_a_deleted_nodes_cidr_is_reused() {
    let c = cluster(ipam("10.244.0.0/16")).await;
    // One node brings its own CIDR, one lies outside the range: both keep theirs.
    node(&c, "own", Some("10.244.1.0/24"), "10.0.0.1").await;
    node(&c, "outside", Some("192.168.7.0/24"), "10.0.0.2").await;
    for n in ["a", "b", "d"] {
        node(&c, n, None, "10.0.0.3").await;
    }
    let mut got = Vec::new();
    for n in ["a", "b", "d"] {
        got.push(until("a pod CIDR", async || pod_cidr(&c, n).await).await);
    }
    got.sort();
    assert_eq!(got, ["10.244.0.0/24", "10.244.2.0/24", "10.244.3.0/24"]);
    assert_eq!(pod_cidr(&c, "own").await.as_deref(), Some("10.244.1.0/24"));
    assert_eq!(pod_cidr(&c, "outside").await.as_deref(), Some("192.168.7.0/24"));

    let freed = pod_cidr(&c, "b").await.unwrap();
    Api::<Node>::all(&c.client).delete("b", &DeleteParams::default()).await.unwrap();
    until("the node to go", async || get_node_gone(&c, "b").await.then_some(())).await;
    node(&c, "e", None, "10.0.0.4").await;
    let e = until("a pod CIDR for the new node", async || pod_cidr(&c, "e").await).await;
    assert_eq!(e, freed, "the lowest free block, which the deleted node freed");
}

async fn get_node_gone(c: &Cluster, name: &str) -> bool {
    Api::<Node>::all(&c.client).get_opt(name).await.unwrap().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_range_leaves_the_node_without_a_cidr_and_says_so_until_one_is_freed() {
    let c = cluster(ipam("10.250.0.0/23")).await;
    node(&c, "first", None, "10.0.0.1").await;
    node(&c, "second", None, "10.0.0.2").await;
    until("both blocks handed out", async || Some((pod_cidr(&c, "first").await?, pod_cidr(&c, "second").await?))).await;
    node(&c, "third", None, "10.0.0.3").await;
    let event = until_event(&c, "default", "third", "CIDRNotAvailable").await;
    assert_eq!(event, ("Normal".into(), "CIDRNotAvailable".into(), "Node third status is now: CIDRNotAvailable".into()));
    assert_eq!(pod_cidr(&c, "third").await, None);

    let freed = pod_cidr(&c, "first").await.unwrap();
    Api::<Node>::all(&c.client).delete("first", &DeleteParams::default()).await.unwrap();
    let got = until("the freed block for the waiting node", async || pod_cidr(&c, "third").await).await;
    assert_eq!(got, freed);
}

// === ServiceLB ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_addresses_go_lowest_first_honour_requests_and_come_back_when_the_type_changes() {
    let c = cluster(pool("192.0.2.10-192.0.2.12")).await;
    service(&c, "a", lb_spec(&[80])).await;
    let a = until_ingress(&c, "a", &["192.0.2.10"]).await;
    assert_eq!(finalizers(&a), [FINALIZER]);
    let mut asks = lb_spec(&[80]);
    asks["loadBalancerIP"] = json!("192.0.2.12");
    service(&c, "asks", asks).await;
    until_ingress(&c, "asks", &["192.0.2.12"]).await;
    service(&c, "b", lb_spec(&[80])).await;
    until_ingress(&c, "b", &["192.0.2.11"]).await;
    let events: Vec<String> = events_about(&c, "default", "a").await.into_iter().map(|e| e.1).collect();
    assert!(events.contains(&"EnsuringLoadBalancer".to_string()) && events.contains(&"EnsuredLoadBalancer".to_string()), "{events:?}");

    // The pool is used up: the next one waits, with a Warning.
    service(&c, "waits", lb_spec(&[80])).await;
    let warning = until_event(&c, "default", "waits", "AllocationFailed").await;
    assert_eq!(warning.0, "Warning");
    assert!(warning.2.contains("no address left"), "{warning:?}");
    assert!(ingress(&get_service(&c, "waits").await.unwrap()).is_empty());

    // a stops being a LoadBalancer: its status and finalizer go, and its address
    // goes to the Service that waited.
    let api: Api<Service> = Api::namespaced(&c.client, "default");
    let to_cluster_ip = json!({"spec": {"type": "ClusterIP", "externalTrafficPolicy": null, "allocateLoadBalancerNodePorts": null}});
    api.patch("a", PatchType::Merge, &to_cluster_ip).await.unwrap();
    let a = until("a's load balancer cleaned up", async || get_service(&c, "a").await.filter(|s| ingress(s).is_empty() && finalizers(s).is_empty())).await;
    assert_eq!(a.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    until_ingress(&c, "waits", &["192.0.2.10"]).await;
    until_event(&c, "default", "a", "DeletedLoadBalancer").await;

    // Deleting a Service with the finalizer completes.
    api.delete("b", &DeleteParams::default()).await.unwrap();
    until("b deleted", async || get_service(&c, "b").await.is_none().then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_of_other_classes_are_left_alone() {
    let c = cluster(pool("192.0.2.10-192.0.2.12")).await;
    let mut other = lb_spec(&[80]);
    other["loadBalancerClass"] = json!("example.com/other");
    service(&c, "other", other).await;
    let mut ours = lb_spec(&[80]);
    ours["loadBalancerClass"] = json!("skiff.io/servicelb");
    service(&c, "ours", ours).await;
    until_ingress(&c, "ours", &["192.0.2.10"]).await;
    let other = get_service(&c, "other").await.unwrap();
    assert!(ingress(&other).is_empty() && finalizers(&other).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pool_services_get_the_ready_nodes_and_a_taken_port_waits() {
    let c = cluster(ControllersConfig::default()).await;
    node(&c, "n2", Some("10.244.2.0/24"), "10.0.0.12").await;
    node(&c, "n1", Some("10.244.1.0/24"), "10.0.0.9").await;
    service(&c, "web", lb_spec(&[80, 443])).await;
    until_ingress(&c, "web", &["10.0.0.9", "10.0.0.12"]).await;

    // Port 443 is web's on the node addresses: the newer Service waits.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    service(&c, "late", lb_spec(&[443])).await;
    let warning = until_event(&c, "default", "late", "UnAvailableLoadBalancer").await;
    assert_eq!(warning.0, "Warning");
    assert!(warning.2.contains("443/TCP") && warning.2.contains("default/web"), "{warning:?}");
    assert!(ingress(&get_service(&c, "late").await.unwrap()).is_empty());

    // A node that stops being Ready drops out.
    let not_ready = json!({
        "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.12"}],
    });
    set_node_status(&c, "n2", not_ready).await;
    until_ingress(&c, "web", &["10.0.0.9"]).await;

    // web goes: late gets the port.
    Api::<Service>::namespaced(&c.client, "default").delete("web", &DeleteParams::default()).await.unwrap();
    until_ingress(&c, "late", &["10.0.0.9"]).await;
    let addresses: Vec<Ipv4Addr> = ingress(&get_service(&c, "late").await.unwrap()).iter().map(|(ip, _)| ip.parse().unwrap()).collect();
    assert_eq!(addresses, [Ipv4Addr::new(10, 0, 0, 9)]);
}

// === Ingress status ===

async fn ingress_ips(c: &Cluster, name: &str) -> Vec<String> {
    let ing = Api::<Ingress>::namespaced(&c.client, "default").get(name).await.unwrap();
    let points = ing.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
    points.into_iter().filter_map(|p| p.ip).collect()
}

async fn until_ingress_ips(c: &Cluster, name: &str, want: &[&str]) {
    until(&format!("{name}'s status to list {want:?}"), async || (ingress_ips(c, name).await == want).then_some(())).await
}

async fn create_ingress(c: &Cluster, name: &str, class: &str) {
    let body = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ingressClassName": class, "rules": [{"host": format!("{name}.example"), "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]},
    });
    c.client.create("/apis/networking.k8s.io/v1/namespaces/default/ingresses", &body).await.unwrap();
}

async fn create_class(c: &Cluster, name: &str, controller: &str) {
    let body = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": name}, "spec": {"controller": controller}});
    c.client.create("/apis/networking.k8s.io/v1/ingressclasses", &body).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_ingresses_list_the_ready_gateway_nodes_as_they_come_and_go() {
    let c = cluster(ControllersConfig::default()).await;
    let gateway = json!({"ingress.skiff.io/gateway": "true"});
    create_class(&c, "edge", "skiff.io/ingress").await;
    create_class(&c, "nginx", "k8s.io/ingress-nginx").await;
    labelled_node(&c, "g2", Some("10.244.2.0/24"), "10.0.0.12", gateway.clone()).await;
    node(&c, "plain", Some("10.244.3.0/24"), "10.0.0.3").await;
    create_ingress(&c, "front", "edge").await;
    create_ingress(&c, "theirs", "nginx").await;
    until_ingress_ips(&c, "front", &["10.0.0.12"]).await;

    labelled_node(&c, "g1", Some("10.244.1.0/24"), "10.0.0.9", gateway).await;
    until_ingress_ips(&c, "front", &["10.0.0.9", "10.0.0.12"]).await;

    let not_ready = json!({"conditions": [{"type": "Ready", "status": "Unknown"}], "addresses": [{"type": "InternalIP", "address": "10.0.0.12"}]});
    set_node_status(&c, "g2", not_ready).await;
    until_ingress_ips(&c, "front", &["10.0.0.9"]).await;

    Api::<Node>::all(&c.client).delete("g1", &DeleteParams::default()).await.unwrap();
    until_ingress_ips(&c, "front", &[]).await;
    assert!(ingress_ips(&c, "theirs").await.is_empty(), "another controller's Ingress is left alone");
}
