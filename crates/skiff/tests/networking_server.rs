//! The server side of networking through a real `skiff server` and real kubectl:
//! pod CIDRs from `--cluster-cidr`, LoadBalancer addresses from `--lb-pool` or
//! the nodes (simulated ones, `skiff agent --runtime sim`), and the kube-dns
//! Service.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{SimAgent, TestServer};

const WAIT: Duration = Duration::from_secs(30);

fn server(extra: &[&str]) -> TestServer {
    let mut flags = vec!["--disable", "scheduler"];
    flags.extend_from_slice(extra);
    TestServer::start_with(tempfile::tempdir().unwrap(), &flags)
}

fn pod_cidr(s: &TestServer, node: &str) -> Option<String> {
    let n = s.get(&["node", node])?;
    let cidr = n["spec"]["podCIDR"].as_str()?.to_string();
    assert_eq!(n["spec"]["podCIDRs"], serde_json::json!([cidr]), "podCIDRs agrees with podCIDR");
    Some(cidr)
}

fn bare_node(name: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n")
}

/// The EXTERNAL-IP column of `kubectl get svc NAME`.
fn external_ip(s: &TestServer, name: &str) -> String {
    let table = s.ok(&["get", "svc", name]);
    let header = table.lines().next().unwrap_or_default();
    let col = header.split_whitespace().position(|h| h == "EXTERNAL-IP").expect("an EXTERNAL-IP column");
    let row = table.lines().nth(1).unwrap_or_default();
    row.split_whitespace().nth(col).unwrap_or_default().to_string()
}

fn wait_external_ip(s: &TestServer, name: &str, want: &str) {
    let mut seen = String::new();
    s.eventually(&format!("EXTERNAL-IP {want} for {name}"), WAIT, || {
        seen = external_ip(s, name);
        seen == want
    });
}

#[test]
fn nodes_get_distinct_pod_cidrs_from_the_cluster_cidr_and_a_deleted_nodes_is_reused() {
    let s = server(&[]);
    // Simulated nodes bring their own pod CIDRs (10.244.0.0/24 and 10.244.1.0/24).
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "2"]);
    s.wait_for_ready_nodes(2, WAIT);
    let sims: Vec<String> = ["sim-0", "sim-1"].iter().map(|n| pod_cidr(&s, n).unwrap()).collect();

    for name in ["bare-a", "bare-b", "bare-c"] {
        s.ok_stdin(&["apply", "-f", "-"], &bare_node(name));
    }
    let mut got = Vec::new();
    for name in ["bare-a", "bare-b", "bare-c"] {
        let mut cidr = None;
        s.eventually(&format!("a pod CIDR for {name}"), WAIT, || {
            cidr = pod_cidr(&s, name);
            cidr.is_some()
        });
        got.push(cidr.unwrap());
    }
    let mut all: Vec<&String> = sims.iter().chain(&got).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 5, "distinct: {sims:?} {got:?}");
    let mut allocated = got.clone();
    allocated.sort();
    assert_eq!(allocated, ["10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24"], "the lowest free /24s of 10.244.0.0/16");
    let described = s.ok(&["describe", "node", "bare-a"]);
    let line = described.lines().find(|l| l.starts_with("PodCIDR:")).unwrap_or_else(|| panic!("no PodCIDR line in:\n{described}"));
    assert!(line.ends_with(got[0].as_str()), "{line}");

    // A deleted node's block goes to the next node.
    let freed = pod_cidr(&s, "bare-b").unwrap();
    s.ok(&["delete", "node", "bare-b"]);
    s.ok_stdin(&["apply", "-f", "-"], &bare_node("bare-d"));
    let mut next = None;
    s.eventually("a pod CIDR for bare-d", WAIT, || {
        next = pod_cidr(&s, "bare-d");
        next.is_some()
    });
    assert_eq!(next.unwrap(), freed);
}

#[test]
fn a_custom_cluster_cidr_and_mask_size_shape_the_blocks() {
    let s = server(&["--cluster-cidr", "10.200.0.0/20", "--node-cidr-mask-size", "26"]);
    s.ok_stdin(&["apply", "-f", "-"], &bare_node("small"));
    let mut cidr = None;
    s.eventually("a pod CIDR", WAIT, || {
        cidr = pod_cidr(&s, "small");
        cidr.is_some()
    });
    assert_eq!(cidr.unwrap(), "10.200.0.0/26");
}

#[test]
fn bad_networking_flags_stop_the_server_with_a_reason() {
    for (flags, want) in [
        (vec!["--lb-pool", "10.0.0.9-10.0.0.1"], "--lb-pool"),
        (vec!["--cluster-cidr", "10.244.0.0"], "--cluster-cidr"),
        (vec!["--node-cidr-mask-size", "12"], "--node-cidr-mask-size"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} must fail");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
    }
}

#[test]
fn load_balancers_get_pool_addresses_and_lose_them_when_the_type_changes() {
    let s = server(&["--lb-pool", "192.0.2.10-192.0.2.11"]);
    s.ok(&["create", "service", "loadbalancer", "web", "--tcp=80:8080"]);
    wait_external_ip(&s, "web", "192.0.2.10");
    let web = s.get(&["svc", "web"]).unwrap();
    assert_eq!(web["status"]["loadBalancer"]["ingress"], serde_json::json!([{"ip": "192.0.2.10", "ipMode": "VIP"}]));
    assert_eq!(web["metadata"]["finalizers"], serde_json::json!(["service.kubernetes.io/load-balancer-cleanup"]));
    let events = s.event_messages("web");
    assert!(events.iter().any(|e| e == "EnsuringLoadBalancer Ensuring load balancer"), "{events:?}");
    s.eventually("the EnsuredLoadBalancer event", WAIT, || s.event_messages("web").iter().any(|e| e == "EnsuredLoadBalancer Ensured load balancer"));

    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: asks\nspec:\n  type: LoadBalancer\n  loadBalancerIP: 192.0.2.11\n  ports:\n  - port: 443\n",
    );
    wait_external_ip(&s, "asks", "192.0.2.11");
    // The pool is used up: the next one stays pending.
    s.ok(&["create", "service", "loadbalancer", "late", "--tcp=80:8080"]);
    s.eventually("a warning for the pending Service", WAIT, || s.event_messages("late").iter().any(|e| e.starts_with("AllocationFailed ")));
    assert_eq!(external_ip(&s, "late"), "<pending>");

    // web stops being a LoadBalancer: its address goes, and late gets it.
    // (The fields only LoadBalancers may carry are cleared along with the type.)
    s.ok(&["patch", "svc", "web", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP","externalTrafficPolicy":null,"allocateLoadBalancerNodePorts":null}}"#]);
    wait_external_ip(&s, "web", "<none>");
    let web = s.get(&["svc", "web"]).unwrap();
    assert!(web["status"]["loadBalancer"]["ingress"].is_null(), "{}", web["status"]);
    assert!(web["metadata"]["finalizers"].is_null(), "{}", web["metadata"]);
    wait_external_ip(&s, "late", "192.0.2.10");

    // A LoadBalancer Service can be deleted: the finalizer comes off.
    s.ok(&["delete", "svc", "late", "--timeout=30s"]);
    assert!(s.get(&["svc", "late"]).is_none());
}

#[test]
fn without_a_pool_load_balancers_get_the_node_addresses_and_share_no_port() {
    let s = server(&[]);
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "2"]);
    let nodes = s.wait_for_ready_nodes(2, WAIT);
    let mut ips: Vec<std::net::Ipv4Addr> = nodes
        .iter()
        .map(|n| n["status"]["addresses"].as_array().unwrap().iter().find(|a| a["type"] == "InternalIP").unwrap()["address"].as_str().unwrap().parse().unwrap())
        .collect();
    ips.sort();
    let want: Vec<String> = ips.iter().map(ToString::to_string).collect();
    s.ok(&["create", "service", "loadbalancer", "web", "--tcp=80:8080"]);
    wait_external_ip(&s, "web", &want.join(","));

    // Port 80 on the node addresses is web's: another Service wanting it waits.
    std::thread::sleep(Duration::from_millis(1100));
    s.ok(&["create", "service", "loadbalancer", "again", "--tcp=80:9090"]);
    s.eventually("a warning about the taken port", WAIT, || {
        s.event_messages("again").iter().any(|e| e.starts_with("UnAvailableLoadBalancer ") && e.contains("80/TCP") && e.contains("default/web"))
    });
    assert_eq!(external_ip(&s, "again"), "<pending>");
    s.ok(&["create", "service", "loadbalancer", "other", "--tcp=8443:8443"]);
    wait_external_ip(&s, "other", &want.join(","));

    s.ok(&["delete", "svc", "web", "--timeout=30s"]);
    wait_external_ip(&s, "again", &want.join(","));
}

#[test]
fn the_kube_dns_service_sits_on_the_tenth_service_address() {
    let s = server(&[]);
    let table = s.ok(&["get", "svc", "-n", "kube-system"]);
    let row = table.lines().find(|l| l.starts_with("kube-dns ")).unwrap_or_else(|| panic!("no kube-dns in:\n{table}"));
    assert!(row.contains("ClusterIP") && row.contains("10.96.0.10") && row.contains("53/UDP,53/TCP"), "{row}");
    let svc: Value = s.json(&["get", "svc", "kube-dns", "-n", "kube-system"]);
    assert_eq!(svc["metadata"]["labels"]["k8s-app"], "kube-dns");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local");
    assert!(svc["spec"]["selector"].is_null());

    let custom = server(&["--service-cidr", "10.100.0.0/16"]);
    let svc: Value = custom.json(&["get", "svc", "kube-dns", "-n", "kube-system"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.100.0.10");
}
