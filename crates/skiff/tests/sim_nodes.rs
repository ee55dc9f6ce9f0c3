//! Simulated nodes (`skiff agent --runtime sim`) next to a real `skiff server`,
//! driven with real kubectl. The scheduler is off: pods are bound by `spec.nodeName`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{SimAgent, TestServer};

const WAIT: Duration = Duration::from_secs(30);

fn server() -> TestServer {
    TestServer::start_with(tempfile::tempdir().unwrap(), &["--disable", "scheduler"])
}

/// A pod bound to `node`, with extra annotations and a restart policy.
fn pod(name: &str, node: &str, restart: &str, annotations: &[(&str, &str)]) -> String {
    let mut ann = String::new();
    for (k, v) in annotations {
        ann.push_str(&format!("\n    {k}: \"{v}\""));
    }
    let ann = if ann.is_empty() { String::new() } else { format!("\n  annotations:{ann}") };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}{ann}\nspec:\n  nodeName: {node}\n  restartPolicy: {restart}\n  \
         terminationGracePeriodSeconds: 30\n  containers:\n  - name: app\n    image: nginx:1.27\n"
    )
}

fn condition(pod: &Value, t: &str) -> Option<String> {
    pod.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == t).map(|c| c["status"].as_str().unwrap_or("").to_string())
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

#[test]
fn nodes_register_ready_with_zones_taints_and_renewed_leases() {
    let s = server();
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "3", "--zones", "a,b,c", "--node-taints", "dedicated=x:NoSchedule", "--heartbeat", "1s"]);
    let nodes = s.wait_for_ready_nodes(3, WAIT);

    let table = s.ok(&["get", "nodes"]);
    for name in ["sim-0", "sim-1", "sim-2"] {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} missing:\n{table}"));
        assert!(line.contains("Ready") && line.contains("v1.33.0-skiff"), "{line}");
    }
    let mut zones: Vec<&str> = nodes.iter().map(|n| n["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str().unwrap()).collect();
    zones.sort();
    assert_eq!(zones, ["a", "b", "c"]);
    for n in &nodes {
        let labels = &n["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], n["metadata"]["name"]);
        assert_eq!((labels["kubernetes.io/os"].as_str(), labels["kubernetes.io/arch"].as_str()), (Some("linux"), Some("amd64")));
        assert_eq!(labels["topology.kubernetes.io/region"], "sim");
        assert_eq!(n["spec"]["taints"], serde_json::json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]));
        assert_eq!(n["status"]["allocatable"]["cpu"], "8");
        assert_eq!(n["status"]["nodeInfo"]["containerRuntimeVersion"], "sim://1.0");
        let internal = n["status"]["addresses"].as_array().unwrap().iter().find(|a| a["type"] == "InternalIP").unwrap();
        assert!(internal["address"].as_str().unwrap().starts_with("127."), "{internal}");
    }
    let taints = s.ok(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.taints[0].key}:{.spec.taints[0].effect} {end}"]);
    assert_eq!(taints.trim(), "sim-0=dedicated:NoSchedule sim-1=dedicated:NoSchedule sim-2=dedicated:NoSchedule");

    let described = s.ok(&["describe", "node", "sim-0"]);
    for want in ["KubeletReady", "kubelet is posting ready status", "dedicated=x:NoSchedule", "Container Runtime Version:  sim://1.0", "PodCIDR:"] {
        assert!(described.contains(want), "{want:?} missing from:\n{described}");
    }

    let lease = |name: &str| s.get(&["lease", "-n", "kube-node-lease", name]);
    s.eventually("a Lease per node", WAIT, || ["sim-0", "sim-1", "sim-2"].iter().all(|n| lease(n).is_some()));
    let first = lease("sim-1").unwrap();
    assert_eq!(first["spec"]["holderIdentity"], "sim-1");
    assert_eq!(first["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "Node");
    let renewed = first["spec"]["renewTime"].as_str().unwrap().to_string();
    s.eventually("the lease to be renewed", WAIT, || lease("sim-1").is_some_and(|l| l["spec"]["renewTime"].as_str() != Some(&renewed)));
}

#[test]
fn bound_pods_run_get_ready_finish_and_are_deleted() {
    let s = server();
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "2"]);
    s.wait_for_ready_nodes(2, WAIT);

    // A plain pod: Running and Ready with an address from the node's pod CIDR.
    s.ok_stdin(&["apply", "-f", "-"], &pod("web", "sim-0", "Always", &[]));
    s.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    let web = s.get(&["pod", "web"]).unwrap();
    assert_eq!(phase(&web), "Running");
    let cidr = s.get(&["node", "sim-0"]).unwrap()["spec"]["podCIDR"].as_str().unwrap().to_string();
    let ip = web["status"]["podIP"].as_str().expect("a pod IP");
    assert!(ip.starts_with(cidr.trim_end_matches("0/24")), "{ip} in {cidr}");
    assert_eq!(web["status"]["podIPs"][0]["ip"], ip);
    assert!(web["status"]["hostIP"].as_str().unwrap().starts_with("127."));
    assert!(web["status"]["startTime"].is_string());
    let c = &web["status"]["containerStatuses"][0];
    assert_eq!((c["ready"].as_bool(), c["started"].as_bool(), c["restartCount"].as_i64()), (Some(true), Some(true), Some(0)));
    assert_eq!(c["imageID"], "sim://nginx:1.27");
    assert!(c["containerID"].as_str().unwrap().starts_with("sim://"));
    assert!(c["state"]["running"]["startedAt"].is_string());
    for t in ["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"] {
        assert_eq!(condition(&web, t).as_deref(), Some("True"), "{t}");
    }
    assert_eq!(web["status"]["qosClass"], "BestEffort");

    // Every pod gets its own address.
    s.ok_stdin(&["apply", "-f", "-"], &pod("web2", "sim-0", "Always", &[]));
    s.ok(&["wait", "--for=condition=Ready", "pod/web2", "--timeout=30s"]);
    assert_ne!(s.get(&["pod", "web2"]).unwrap()["status"]["podIP"], ip);

    // Readiness held back by the annotation: Running but not Ready at first.
    s.ok_stdin(&["apply", "-f", "-"], &pod("slow", "sim-1", "Always", &[("sim.skiff.io/ready-after", "4s")]));
    let mut seen_unready = false;
    s.eventually("the slow pod to run", WAIT, || {
        let p = s.get(&["pod", "slow"]).unwrap();
        seen_unready = phase(&p) == "Running" && condition(&p, "Ready").as_deref() == Some("False");
        phase(&p) == "Running"
    });
    assert!(seen_unready, "Running but not Ready first");
    let slow = s.get(&["pod", "slow"]).unwrap();
    assert_eq!(slow["status"]["containerStatuses"][0]["ready"], false);
    s.ok(&["wait", "--for=condition=Ready", "pod/slow", "--timeout=30s"]);

    // Job-like pods finish: exit 0 succeeds, exit 1 under Never fails.
    s.ok_stdin(&["apply", "-f", "-"], &pod("done", "sim-1", "Never", &[("sim.skiff.io/run-for", "1s")]));
    s.ok_stdin(&["apply", "-f", "-"], &pod("broken", "sim-1", "Never", &[("sim.skiff.io/exit-code", "1")]));
    s.ok(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/done", "--timeout=30s"]);
    s.ok(&["wait", "--for=jsonpath={.status.phase}=Failed", "pod/broken", "--timeout=30s"]);
    let done = s.get(&["pod", "done"]).unwrap();
    let term = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!((term["exitCode"].as_i64(), term["reason"].as_str()), (Some(0), Some("Completed")));
    let broken = s.get(&["pod", "broken"]).unwrap();
    let term = &broken["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!((term["exitCode"].as_i64(), term["reason"].as_str()), (Some(1), Some("Error")));
    assert_eq!(broken["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(condition(&broken, "Ready").as_deref(), Some("False"));

    // A pod bound after it was created (as the scheduler binds) is picked up too.
    let late = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: late\nspec:\n  containers:\n  - name: app\n    image: nginx\n";
    s.ok_stdin(&["apply", "-f", "-"], late);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(phase(&s.get(&["pod", "late"]).unwrap()), "Pending", "no node, no agent");
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"late"},"target":{"apiVersion":"v1","kind":"Node","name":"sim-1"}}"#;
    s.ok_stdin(&["create", "--raw", "/api/v1/namespaces/default/pods/late/binding", "-f", "-"], binding);
    s.ok(&["wait", "--for=condition=Ready", "pod/late", "--timeout=30s"]);

    // Deletion: the agent confirms it, so the pod goes away without its 30 s grace.
    let started = std::time::Instant::now();
    s.ok(&["delete", "pod", "web", "--wait=true", "--timeout=20s"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(s.get(&["pod", "web"]).is_none());
}

#[test]
fn failing_containers_restart_with_back_off() {
    let s = server();
    let _agent = SimAgent::start(&s, "sim", &[]);
    s.wait_for_ready_nodes(1, WAIT);
    s.ok_stdin(&["apply", "-f", "-"], &pod("crashy", "sim", "Always", &[("sim.skiff.io/exit-code", "2"), ("sim.skiff.io/run-for", "500ms")]));
    s.ok_stdin(&["apply", "-f", "-"], &pod("retry", "sim", "OnFailure", &[("sim.skiff.io/exit-code", "1"), ("sim.skiff.io/run-for", "500ms")]));
    for name in ["crashy", "retry"] {
        s.eventually(&format!("{name} to restart twice"), WAIT, || {
            let p = s.get(&["pod", name]).unwrap();
            p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0) >= 2
        });
        let p = s.get(&["pod", name]).unwrap();
        assert_eq!(phase(&p), "Running", "{name} keeps restarting");
        let c = &p["status"]["containerStatuses"][0];
        assert!(c["lastState"]["terminated"]["exitCode"].as_i64().unwrap() > 0, "{c}");
    }
    s.eventually("a CrashLoopBackOff wait", WAIT, || {
        let p = s.get(&["pod", "crashy"]).unwrap();
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
}

#[test]
fn pods_that_do_not_fit_the_node_are_rejected() {
    let s = server();
    let _agent = SimAgent::start(&s, "sim", &["--node-cpu", "1"]);
    s.wait_for_ready_nodes(1, WAIT);
    let big = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\nspec:\n  nodeName: sim\n  containers:\n  - name: app\n    image: nginx\n    \
               resources:\n      requests:\n        cpu: \"2\"\n";
    s.ok_stdin(&["apply", "-f", "-"], big);
    s.ok(&["wait", "--for=jsonpath={.status.phase}=Failed", "pod/big", "--timeout=30s"]);
    let p = s.get(&["pod", "big"]).unwrap();
    assert_eq!(p["status"]["reason"], "OutOfcpu");
    assert_eq!(p["status"]["message"], "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 0, capacity: 1000");
}

#[test]
fn an_agent_restart_keeps_running_pods_running_and_re_registers_deleted_nodes() {
    let s = server();
    let mut agent = SimAgent::start(&s, "sim", &["--nodes", "2", "--heartbeat", "1s"]);
    s.wait_for_ready_nodes(2, WAIT);
    s.ok_stdin(&["apply", "-f", "-"], &pod("keep", "sim-0", "Always", &[("sim.skiff.io/ready-after", "1s")]));
    s.ok(&["wait", "--for=condition=Ready", "pod/keep", "--timeout=30s"]);
    let before = s.get(&["pod", "keep"]).unwrap();

    agent.kill();
    let agent = SimAgent::start(&s, "sim", &["--nodes", "2", "--heartbeat", "1s"]);
    // Proof the new agent is at work: it runs a new pod.
    s.ok_stdin(&["apply", "-f", "-"], &pod("fresh", "sim-0", "Always", &[]));
    s.ok(&["wait", "--for=condition=Ready", "pod/fresh", "--timeout=30s"]);
    let after = s.get(&["pod", "keep"]).unwrap();
    assert_eq!(phase(&after), "Running");
    assert_eq!(condition(&after, "Ready").as_deref(), Some("True"));
    for field in ["podIP", "startTime", "containerStatuses"] {
        assert_eq!(after["status"][field], before["status"][field], "{field} survives the restart");
    }
    assert_ne!(s.get(&["pod", "fresh"]).unwrap()["status"]["podIP"], before["status"]["podIP"], "the adopted address stays taken");

    // A Node deleted under a running agent comes back, as a kubelet registers again.
    let uid = s.get(&["node", "sim-1"]).unwrap()["metadata"]["uid"].clone();
    s.ok(&["delete", "node", "sim-1"]);
    s.eventually("sim-1 to be registered again", WAIT, || s.get(&["node", "sim-1"]).is_some_and(|n| n["metadata"]["uid"] != uid));
    s.wait_for_ready_nodes(2, WAIT);
    drop(agent);
}
