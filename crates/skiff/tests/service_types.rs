//! Changing a Service's type through kubectl, as kube-apiserver does it: node ports
//! (and the health check node port) are allocated when the new type needs them, the
//! fields that only made sense for the old type are cleared when the client left them
//! as they were, and addresses the Service stops using are released once the update
//! is stored.

mod support;

use serde_json::{json, Value};
use support::TestServer;

/// The default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn svc(s: &TestServer, name: &str) -> Value {
    s.json(&["get", "service", name])
}

fn patch(s: &TestServer, name: &str, patch: &Value) -> String {
    s.ok(&["patch", "service", name, "-p", &patch.to_string()])
}

fn node_ports(v: &Value) -> Vec<i64> {
    v["spec"]["ports"].as_array().unwrap().iter().filter_map(|p| p["nodePort"].as_i64()).collect()
}

/// The PORT(S) column `kubectl get service` prints.
fn ports_column(s: &TestServer, name: &str) -> String {
    let out = s.ok(&["get", "service", name, "--no-headers"]);
    out.split_whitespace().nth(4).unwrap_or_default().to_string()
}

/// A LoadBalancer Service with every field that depends on its type set.
const LOCAL_LB: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/lb
  externalTrafficPolicy: Local
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
";

#[test]
fn patching_a_cluster_ip_service_to_node_port_allocates_its_node_ports() {
    let s = TestServer::start();
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    assert_eq!(ports_column(&s, "web"), "80/TCP");
    let ip = svc(&s, "web")["spec"]["clusterIP"].clone();

    patch(&s, "web", &json!({"spec": {"type": "NodePort"}}));
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "NodePort");
    let ports = node_ports(&v);
    assert_eq!(ports.len(), 1, "{v}");
    assert!(NODE_PORTS.contains(&ports[0]), "{ports:?}");
    assert_eq!(ports_column(&s, "web"), format!("80:{}/TCP", ports[0]));
    // The cluster IP stays; the type's defaults are filled in.
    assert_eq!(v["spec"]["clusterIP"], ip);
    assert_eq!(v["spec"]["externalTrafficPolicy"], "Cluster");

    // Back to ClusterIP: the node port goes, and is free for another Service at once.
    patch(&s, "web", &json!({"spec": {"type": "ClusterIP"}}));
    let v = svc(&s, "web");
    assert_eq!(ports_column(&s, "web"), "80/TCP");
    assert!(node_ports(&v).is_empty(), "{v}");
    assert!(v["spec"].get("externalTrafficPolicy").is_none(), "{v}");
    s.ok(&["create", "service", "nodeport", "other", "--tcp=80:8080", &format!("--node-port={}", ports[0])]);
    assert_eq!(node_ports(&svc(&s, "other")), ports);
}

#[test]
fn patching_a_cluster_ip_service_to_load_balancer_allocates_node_ports_and_a_health_check_port() {
    let s = TestServer::start();
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443:8443"]);
    patch(&s, "web", &json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}}));
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "LoadBalancer");
    assert_eq!(v["spec"]["allocateLoadBalancerNodePorts"], true);
    let mut ports = node_ports(&v);
    assert_eq!(ports.len(), 2, "{v}");
    let hc = v["spec"]["healthCheckNodePort"].as_i64().expect("a health check node port");
    ports.push(hc);
    assert!(ports.iter().all(|p| NODE_PORTS.contains(p)), "{ports:?}");
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "every node port is distinct: {ports:?}");
    let column = ports_column(&s, "web");
    assert!(column.starts_with("80:3") && column.contains(",443:3"), "{column}");

    // A Cluster policy needs no health check port: it is released.
    patch(&s, "web", &json!({"spec": {"externalTrafficPolicy": "Cluster"}}));
    let v = svc(&s, "web");
    assert!(v["spec"].get("healthCheckNodePort").is_none(), "{v}");
    s.ok(&["create", "service", "nodeport", "other", "--tcp=80:8080", &format!("--node-port={hc}")]);
}

#[test]
fn patching_a_load_balancer_service_to_cluster_ip_clears_the_fields_of_its_old_type() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], LOCAL_LB);
    let before = svc(&s, "web");
    let old_ports = node_ports(&before);
    let hc = before["spec"]["healthCheckNodePort"].as_i64().expect("a health check node port");
    assert_eq!(old_ports.len(), 2, "{before}");

    let out = patch(&s, "web", &json!({"spec": {"type": "ClusterIP"}}));
    assert!(out.contains("service/web patched"), "{out}");
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "ClusterIP");
    assert!(node_ports(&v).is_empty(), "{v}");
    for field in ["allocateLoadBalancerNodePorts", "externalTrafficPolicy", "healthCheckNodePort", "loadBalancerClass"] {
        assert!(v["spec"].get(field).is_none(), "{field} is still set: {v}");
    }
    // What does not depend on the type stays.
    assert_eq!(v["spec"]["clusterIP"], before["spec"]["clusterIP"]);
    assert_eq!(v["spec"]["internalTrafficPolicy"], "Cluster");
    assert_eq!(v["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(v["status"]["loadBalancer"], json!({}));
    assert_eq!(ports_column(&s, "web"), "80/TCP,443/TCP");

    // The released ports are free for others right away.
    for (i, p) in old_ports.iter().chain([&hc]).enumerate() {
        s.ok(&["create", "service", "nodeport", &format!("taker-{i}"), "--tcp=80:8080", &format!("--node-port={p}")]);
    }
}

#[test]
fn changing_a_type_and_a_field_of_the_old_type_together_is_refused() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], LOCAL_LB);
    // The client asked for a value that only a LoadBalancer may have: nothing is
    // cleared for it, and validation says why.
    let err = s.fails(&["patch", "service", "web", "-p", r#"{"spec":{"type":"ClusterIP","allocateLoadBalancerNodePorts":false}}"#]);
    assert!(err.contains("spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"), "{err}");
    let err = s.fails(&["patch", "service", "web", "-p", r#"{"spec":{"type":"ClusterIP","externalTrafficPolicy":"Cluster"}}"#]);
    assert!(err.contains("spec.externalTrafficPolicy: Invalid value: \"Cluster\": may only be set for externally-accessible services"), "{err}");
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "LoadBalancer");
    assert_eq!(node_ports(&v).len(), 2);
}

#[test]
fn node_port_to_load_balancer_and_back_keeps_the_node_ports() {
    let s = TestServer::start();
    s.ok(&["create", "service", "nodeport", "web", "--tcp=80:8080"]);
    let ports = node_ports(&svc(&s, "web"));
    assert_eq!(ports.len(), 1);

    patch(&s, "web", &json!({"spec": {"type": "LoadBalancer"}}));
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "LoadBalancer");
    assert_eq!(node_ports(&v), ports);
    assert_eq!(v["spec"]["allocateLoadBalancerNodePorts"], true);
    assert!(v["spec"].get("healthCheckNodePort").is_none(), "{v}");

    patch(&s, "web", &json!({"spec": {"type": "NodePort"}}));
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "NodePort");
    assert_eq!(node_ports(&v), ports);
    assert!(v["spec"].get("allocateLoadBalancerNodePorts").is_none(), "{v}");
    assert_eq!(v["spec"]["externalTrafficPolicy"], "Cluster");
}

#[test]
fn changing_a_node_port_moves_the_service_to_the_new_port_and_frees_the_old_one() {
    let s = TestServer::start();
    s.ok(&["create", "service", "nodeport", "web", "--tcp=80:8080", "--node-port=30080"]);
    s.ok(&["create", "service", "nodeport", "busy", "--tcp=80:8080", "--node-port=30081"]);

    // A port another Service holds is refused, and the Service keeps its own.
    let err = s.fails(&["patch", "service", "web", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/ports/0/nodePort","value":30081}]"#]);
    assert!(err.contains("spec.ports[0].nodePort: Invalid value: 30081: provided port is already allocated"), "{err}");
    assert_eq!(node_ports(&svc(&s, "web")), vec![30080]);

    s.ok(&["patch", "service", "web", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/ports/0/nodePort","value":30082}]"#]);
    assert_eq!(node_ports(&svc(&s, "web")), vec![30082]);
    assert_eq!(ports_column(&s, "web"), "80:30082/TCP");
    s.ok(&["create", "service", "nodeport", "next", "--tcp=80:8080", "--node-port=30080"]);
}

#[test]
fn a_failed_type_change_leaves_the_service_and_its_ports_as_they_were() {
    let s = TestServer::start();
    s.ok(&["create", "service", "nodeport", "busy", "--tcp=80:8080", "--node-port=30090"]);
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443:8443"]);
    // The first port gets a node port it asked for, the second asks for a taken one.
    let p = json!({"spec": {"type": "NodePort", "ports": [
        {"port": 80, "targetPort": 8080, "nodePort": 30091, "name": "80-8080"},
        {"port": 443, "targetPort": 8443, "nodePort": 30090, "name": "443-8443"}]}});
    let err = s.fails(&["patch", "service", "web", "-p", &p.to_string()]);
    assert!(err.contains("provided port is already allocated"), "{err}");
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "ClusterIP");
    assert!(node_ports(&v).is_empty(), "{v}");
    // What the failed update reserved was given back.
    s.ok(&["create", "service", "nodeport", "next", "--tcp=80:8080", "--node-port=30091"]);
}

#[test]
fn external_name_and_back_releases_and_reallocates_the_cluster_ip() {
    let s = TestServer::start();
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ip = svc(&s, "web")["spec"]["clusterIP"].as_str().unwrap().to_string();

    patch(&s, "web", &json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "ExternalName");
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        assert!(v["spec"].get(field).is_none(), "{field} is still set: {v}");
    }
    let out = s.ok(&["get", "service", "web", "--no-headers"]);
    assert!(out.contains("example.com"), "{out}");

    // The address is free for another Service.
    let taker = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: taker\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n"
    );
    s.ok_stdin(&["apply", "-f", "-"], &taker);

    patch(&s, "web", &json!({"spec": {"type": "ClusterIP", "externalName": null}}));
    let v = svc(&s, "web");
    let new_ip = v["spec"]["clusterIP"].as_str().expect("a cluster IP").to_string();
    assert_ne!(new_ip, ip);
    assert_eq!(v["spec"]["clusterIPs"], json!([new_ip]));
    assert_eq!(v["spec"]["ipFamilies"], json!(["IPv4"]));
}

#[test]
fn replacing_a_load_balancer_with_its_own_manifest_as_cluster_ip_works() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], LOCAL_LB);
    // `kubectl get -o yaml`, edit the type, `kubectl replace`: a PUT that still carries
    // everything the old type had.
    let mut v = svc(&s, "web");
    v["spec"]["type"] = json!("ClusterIP");
    s.ok_stdin(&["replace", "-f", "-"], &v.to_string());
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "ClusterIP");
    assert!(node_ports(&v).is_empty(), "{v}");
    assert!(v["spec"].get("healthCheckNodePort").is_none(), "{v}");
    assert!(v["spec"].get("loadBalancerClass").is_none(), "{v}");
}

#[test]
fn a_dry_run_type_change_shows_node_ports_without_keeping_them() {
    let s = TestServer::start();
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let out = s.ok(&["patch", "service", "web", "--dry-run=server", "-p", r#"{"spec":{"type":"NodePort"}}"#, "-o", "json"]);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(node_ports(&shown).len(), 1, "{shown}");
    let v = svc(&s, "web");
    assert_eq!(v["spec"]["type"], "ClusterIP");
    assert!(node_ports(&v).is_empty(), "{v}");
}
