//! The scheduler end to end: `skiff server` (controllers off, so that only the
//! scheduler places pods) with simulated nodes from `skiff agent --runtime sim`,
//! driven with real kubectl.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::{SimAgent, TestServer};

const WAIT: Duration = Duration::from_secs(60);

fn server() -> TestServer {
    TestServer::start_with(tempfile::tempdir().unwrap(), &["--disable", "controllers"])
}

/// A pod requesting `cpu`, with extra spec YAML (indented for `spec:`).
fn pod(name: &str, cpu: &str, labels: &[(&str, &str)], spec_extra: &str) -> String {
    let mut l = String::new();
    for (k, v) in labels {
        l.push_str(&format!("\n    {k}: {v}"));
    }
    let labels = if l.is_empty() { String::new() } else { format!("\n  labels:{l}") };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}{labels}\nspec:\n  terminationGracePeriodSeconds: 1\n{spec_extra}  containers:\n  - name: app\n    image: nginx:1.27\n    resources:\n      requests:\n        cpu: {cpu}\n"
    )
}

fn node_of(s: &TestServer, name: &str) -> Option<String> {
    s.get(&["pod", name])?.pointer("/spec/nodeName").and_then(Value::as_str).map(String::from)
}

fn wait_running(s: &TestServer, name: &str) -> String {
    s.ok(&["wait", "--for=jsonpath={.status.phase}=Running", &format!("pod/{name}"), "--timeout=60s"]);
    node_of(s, name).expect("a running pod has a node")
}

fn scheduled_condition(s: &TestServer, name: &str) -> Option<(String, String, String)> {
    let p = s.get(&["pod", name])?;
    let c = p.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "PodScheduled")?.clone();
    let text = |k: &str| c[k].as_str().unwrap_or("").to_string();
    Some((text("status"), text("reason"), text("message")))
}

/// Waits until the pod's PodScheduled condition says Unschedulable with `message`.
fn wait_unschedulable(s: &TestServer, name: &str, message: &str) {
    let mut last = None;
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        last = scheduled_condition(s, name);
        if last.as_ref().is_some_and(|(st, r, m)| st == "False" && r == "Unschedulable" && m == message) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("pod {name} never became Unschedulable with\n  {message}\nlast condition: {last:?}");
}

#[test]
fn pods_are_placed_on_simulated_nodes_and_run() {
    let s = server();
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "3", "--node-cpu", "2"]);
    s.wait_for_ready_nodes(3, WAIT);
    let mut docs = Vec::new();
    for i in 0..6 {
        docs.push(pod(&format!("web-{i}"), "500m", &[("app", "web")], ""));
    }
    s.ok_stdin(&["apply", "-f", "-"], &docs.join("---\n"));
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        *per_node.entry(wait_running(&s, &format!("web-{i}"))).or_default() += 1;
    }
    // Equal pods on equal nodes: LeastAllocated and BalancedAllocation spread them.
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "{per_node:?}");
    let events = s.ok(&["get", "events", "--field-selector", "involvedObject.name=web-0,reason=Scheduled", "-o", "jsonpath={.items[*].message}"]);
    let node = node_of(&s, "web-0").unwrap();
    assert_eq!(events.trim(), format!("Successfully assigned default/web-0 to {node}"));
    let describe = s.ok(&["describe", "pod", "web-0"]);
    assert!(describe.contains("default-scheduler") && describe.contains("Successfully assigned default/web-0"), "{describe}");
}

#[test]
fn a_pod_too_big_for_every_node_stays_pending_until_a_bigger_node_joins() {
    let s = server();
    let _small = SimAgent::start(&s, "sim", &["--nodes", "3", "--node-cpu", "2"]);
    s.wait_for_ready_nodes(3, WAIT);
    s.ok_stdin(&["apply", "-f", "-"], &pod("big", "3", &[], ""));
    let message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    wait_unschedulable(&s, "big", message);
    let p = s.get(&["pod", "big"]).unwrap();
    assert_eq!(p["status"]["phase"], "Pending");
    assert!(p.pointer("/spec/nodeName").is_none());
    let describe = s.ok(&["describe", "pod", "big"]);
    let line = describe.lines().find(|l| l.contains("FailedScheduling")).unwrap_or_else(|| panic!("no FailedScheduling event:\n{describe}"));
    assert!(line.contains("Warning") && line.contains("default-scheduler") && line.contains(message), "{line}");

    // A node with room joins: the pod is scheduled there without waiting for the
    // periodic retry, and runs.
    let _big = SimAgent::start(&s, "big", &["--nodes", "1", "--node-cpu", "8"]);
    assert_eq!(wait_running(&s, "big"), "big");
}

#[test]
fn node_selectors_affinity_and_taints_steer_pods() {
    let s = server();
    let _ssd = SimAgent::start(&s, "ssd", &["--nodes", "2", "--node-labels", "disk=ssd"]);
    let _gpu = SimAgent::start(&s, "gpu", &["--nodes", "1", "--node-taints", "dedicated=gpu:NoSchedule", "--extended-resources", "nvidia.com/gpu=2"]);
    s.wait_for_ready_nodes(3, WAIT);

    let toleration = "  tolerations:\n  - key: dedicated\n    operator: Equal\n    value: gpu\n    effect: NoSchedule\n";
    let affinity = "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - key: kubernetes.io/hostname\n            operator: In\n            values: [gpu]\n";
    let docs = [
        pod("selected", "100m", &[], "  nodeSelector:\n    disk: ssd\n"),
        pod("trainer", "100m", &[], &format!("{toleration}{affinity}")),
        pod("plain-0", "100m", &[], ""),
        pod("plain-1", "100m", &[], ""),
        pod("plain-2", "100m", &[], ""),
        pod("nowhere", "100m", &[], "  nodeSelector:\n    disk: nvme\n"),
    ];
    s.ok_stdin(&["apply", "-f", "-"], &docs.join("---\n"));
    assert!(wait_running(&s, "selected").starts_with("ssd-"));
    assert_eq!(wait_running(&s, "trainer"), "gpu");
    for i in 0..3 {
        assert!(wait_running(&s, &format!("plain-{i}")).starts_with("ssd-"), "the tainted node takes no untolerating pod");
    }
    wait_unschedulable(
        &s,
        "nowhere",
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );

    // An extended resource: only the GPU node has it, and only two of them.
    let gpu_pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{toleration}  containers:\n  - name: app\n    image: cuda:12\n    resources:\n      limits:\n        nvidia.com/gpu: 1\n"
        )
    };
    s.ok_stdin(&["apply", "-f", "-"], &[gpu_pod("g0"), gpu_pod("g1"), gpu_pod("g2")].join("---\n"));
    let mut running = 0;
    s.eventually("two GPU pods to run", WAIT, || {
        running = (0..3).filter(|i| s.get(&["pod", &format!("g{i}")]).is_some_and(|p| p["status"]["phase"] == "Running")).count();
        running == 2
    });
    let pending = (0..3).map(|i| format!("g{i}")).find(|n| node_of(&s, n).is_none()).expect("one GPU pod waits");
    wait_unschedulable(
        &s,
        &pending,
        "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    );
}

#[test]
fn topology_spread_puts_two_pods_in_each_of_three_zones() {
    let s = server();
    let _agent = SimAgent::start(&s, "zoned", &["--nodes", "6", "--zones", "a,b,c"]);
    s.wait_for_ready_nodes(6, WAIT);
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector:\n      matchLabels:\n        app: spread\n";
    let docs: Vec<String> = (0..6).map(|i| pod(&format!("s-{i}"), "100m", &[("app", "spread")], spread)).collect();
    s.ok_stdin(&["apply", "-f", "-"], &docs.join("---\n"));
    let zone_of = |node: &str| s.get(&["node", node]).unwrap()["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str().unwrap().to_string();
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let node = wait_running(&s, &format!("s-{i}"));
        *per_zone.entry(zone_of(&node)).or_default() += 1;
    }
    assert_eq!(per_zone, [("a".to_string(), 2), ("b".to_string(), 2), ("c".to_string(), 2)].into_iter().collect());
}

#[test]
fn a_high_priority_pod_preempts_a_low_priority_one_when_the_cluster_is_full() {
    let s = server();
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "1", "--node-cpu", "2"]);
    s.wait_for_ready_nodes(1, WAIT);
    let classes = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: low\nvalue: 100\n---\n\
                   apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 100000\n";
    s.ok_stdin(&["apply", "-f", "-"], classes);
    s.ok_stdin(&["apply", "-f", "-"], &pod("low", "1500m", &[], "  priorityClassName: low\n  priority: 100\n"));
    assert_eq!(wait_running(&s, "low"), "sim");
    // An equal-priority pod cannot preempt.
    s.ok_stdin(&["apply", "-f", "-"], &pod("peer", "1", &[], "  priorityClassName: low\n  priority: 100\n"));
    wait_unschedulable(&s, "peer", "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.");

    s.ok_stdin(&["apply", "-f", "-"], &pod("high", "1500m", &[], "  priorityClassName: high\n  priority: 100000\n"));
    let uid = s.get(&["pod", "high"]).unwrap()["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(s.get(&["pod", "high"]).unwrap()["spec"]["priority"], 100000);
    assert_eq!(wait_running(&s, "high"), "sim");
    s.eventually("the victim to be gone", WAIT, || s.get(&["pod", "low"]).is_none());
    let preempted = s.ok(&["get", "events", "--field-selector", "involvedObject.name=low,reason=Preempted", "-o", "jsonpath={.items[*].message}"]);
    assert_eq!(preempted.trim(), format!("Preempted by pod {uid} on node sim"));
    // The lower-priority peer still waits: the room went to the preemptor.
    assert!(node_of(&s, "peer").is_none());
}
