//! StatefulSets and DaemonSets end to end: a real `skiff server` (scheduler and
//! controllers), simulated nodes from `skiff agent --runtime sim`, and real kubectl.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{PodEvent, PodWatch, SimAgent, TestServer};

const WAIT: Duration = Duration::from_secs(90);

// === helpers ===

/// A `skiff agent --runtime sim` with `nodes` nodes named after `node_name`.
fn agent(s: &TestServer, node_name: &str, nodes: usize) -> SimAgent {
    SimAgent::start(s, node_name, &["--nodes", &nodes.to_string(), "--heartbeat", "2s"])
}

/// Position of the first event from `from` on that satisfies `f`.
fn position(events: &[PodEvent], from: usize, f: impl Fn(&PodEvent) -> bool) -> Option<usize> {
    events.iter().enumerate().skip(from).find(|(_, e)| f(e)).map(|(i, _)| i)
}

fn names(items: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = items.iter().map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_string()).collect();
    names.sort();
    names
}

/// Pods of a selector that are not being deleted, by node.
fn pods_by_node(s: &TestServer, selector: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = s.items(&["get", "pods", "-l", selector])
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| (p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(), p["metadata"]["name"].as_str().unwrap_or_default().to_string()))
        .collect();
    out.sort();
    out
}

// === StatefulSet ===

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
      annotations:
        sim.skiff.io/ready-after: 500ms
    spec:
      containers:
      - name: nginx
        image: nginx:1
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
"#;

#[test]
fn statefulset_creates_in_order_updates_above_the_partition_and_scales_down_in_reverse() {
    let s = TestServer::start();
    let _agent = agent(&s, "sim", 2);
    s.wait_for_ready_nodes(2, WAIT);
    let watch = PodWatch::start(&s, "app=web");
    std::thread::sleep(Duration::from_millis(500));

    s.ok_stdin(&["apply", "-f", "-"], WEB);
    s.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);

    // Each member was created only once the one below it was Ready.
    let events = watch.events();
    for i in 1..3 {
        let added = position(&events, 0, |e| e.kind == "ADDED" && e.name == format!("web-{i}")).expect("member added");
        let prev_ready = position(&events, 0, |e| e.name == format!("web-{}", i - 1) && e.ready).expect("previous member ready");
        assert!(added > prev_ready, "web-{i} was created (event {added}) before web-{} was ready (event {prev_ready}): {events:#?}", i - 1);
    }

    // Stable identity and storage.
    let revision = s.json(&["get", "sts", "web"])["status"]["updateRevision"].as_str().unwrap().to_string();
    for i in 0..3 {
        let pod = s.json(&["get", "pod", &format!("web-{i}")]);
        assert_eq!(pod["spec"]["hostname"], format!("web-{i}"));
        assert_eq!(pod["spec"]["subdomain"], "web");
        assert_eq!(pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], format!("web-{i}"));
        assert_eq!(pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"], i.to_string());
        assert_eq!(pod["metadata"]["labels"]["controller-revision-hash"], revision.as_str());
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let volume = pod["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "data").expect("claim volume").clone();
        assert_eq!(volume["persistentVolumeClaim"]["claimName"], format!("data-web-{i}"));
    }
    let claims = s.items(&["get", "pvc", "-l", "app=web"]);
    assert_eq!(names(&claims), vec!["data-web-0", "data-web-1", "data-web-2"]);
    let revisions = s.items(&["get", "controllerrevisions", "-l", "app=web"]);
    assert_eq!(names(&revisions), vec![revision.clone()]);
    assert_eq!(revisions[0]["revision"], 1);
    let status = s.json(&["get", "sts", "web"])["status"].clone();
    assert_eq!((status["replicas"].as_i64(), status["readyReplicas"].as_i64(), status["availableReplicas"].as_i64()), (Some(3), Some(3), Some(3)));
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    assert_eq!(status["observedGeneration"], s.json(&["get", "sts", "web"])["metadata"]["generation"]);
    let messages = s.event_messages("web");
    assert!(messages.iter().any(|m| m == "SuccessfulCreate create Pod web-0 in StatefulSet web successful"), "{messages:#?}");
    assert!(messages.iter().any(|m| m == "SuccessfulCreate create Claim data-web-0 Pod web-0 in StatefulSet web success"), "{messages:#?}");

    // A failed member is deleted and recreated under the same name.
    let failed_uid = s.json(&["get", "pod", "web-1"])["metadata"]["uid"].as_str().unwrap().to_string();
    s.ok(&["patch", "pod", "web-1", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Failed"}}"#]);
    s.eventually("web-1 recreated", WAIT, || {
        let pod = s.json(&["get", "pods", "-l", "statefulset.kubernetes.io/pod-name=web-1"])["items"][0].clone();
        !pod.is_null() && pod["metadata"]["uid"] != failed_uid.as_str() && pod["status"]["phase"] == "Running"
    });
    s.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    assert!(s.event_messages("web").iter().any(|m| m == "SuccessfulDelete delete Pod web-1 in StatefulSet web successful"));

    // A rolling update with partition 1 replaces web-2, then web-1, and keeps web-0.
    let before_update = watch.len();
    s.ok(&["patch", "sts", "web", "-p", r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}"#]);
    s.ok(&["set", "image", "sts/web", "nginx=nginx:2"]);
    s.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    let status = s.json(&["get", "sts", "web"])["status"].clone();
    let (current, update) = (status["currentRevision"].as_str().unwrap().to_string(), status["updateRevision"].as_str().unwrap().to_string());
    assert_ne!(current, update, "a partitioned update leaves the current revision in place");
    assert_eq!(status["updatedReplicas"], 2);
    for (i, image, rev) in [(0, "nginx:1", &current), (1, "nginx:2", &update), (2, "nginx:2", &update)] {
        let pod = s.json(&["get", "pod", &format!("web-{i}")]);
        assert_eq!(pod["spec"]["containers"][0]["image"], image, "web-{i}");
        assert_eq!(pod["metadata"]["labels"]["controller-revision-hash"], rev.as_str(), "web-{i}");
    }
    let events = watch.events();
    let web2_new_ready = position(&events, before_update, |e| e.name == "web-2" && e.image == "nginx:2" && e.ready).expect("new web-2 ready");
    let web1_going = position(&events, before_update, |e| e.name == "web-1" && (e.deleting || e.kind == "DELETED")).expect("web-1 replaced");
    assert!(web1_going > web2_new_ready, "web-1 went (event {web1_going}) before the new web-2 was ready (event {web2_new_ready})");
    assert!(position(&events, before_update, |e| e.name == "web-0" && (e.deleting || e.kind == "DELETED")).is_none(), "web-0 is below the partition");
    assert_eq!(names(&s.items(&["get", "controllerrevisions", "-l", "app=web"])).len(), 2);

    // Scaling to zero removes web-2, web-1, web-0 in that order, each after the one above is gone.
    let before_scale = watch.len();
    s.ok(&["scale", "sts", "web", "--replicas=0"]);
    s.eventually("all members gone", WAIT, || s.items(&["get", "pods", "-l", "app=web"]).is_empty());
    s.eventually("the watch saw every deletion", WAIT, || watch.events().iter().skip(before_scale).filter(|e| e.kind == "DELETED").count() == 3);
    let events = watch.events();
    let gone = |n: &str| position(&events, before_scale, |e| e.name == n && e.kind == "DELETED").unwrap();
    let going = |n: &str| position(&events, before_scale, |e| e.name == n && (e.deleting || e.kind == "DELETED")).unwrap();
    assert!(going("web-1") > gone("web-2"), "web-1 went before web-2 was gone: {:#?}", &events[before_scale..]);
    assert!(going("web-0") > gone("web-1"), "web-0 went before web-1 was gone: {:#?}", &events[before_scale..]);
    let messages = s.event_messages("web");
    assert!(messages.iter().any(|m| m == "SuccessfulDelete delete Pod web-2 in StatefulSet web successful"), "{messages:#?}");
    // The claims are retained (whenScaled defaults to Retain).
    assert_eq!(names(&s.items(&["get", "pvc", "-l", "app=web"])).len(), 3);
    let status = s.json(&["get", "sts", "web"])["status"].clone();
    assert_eq!(status["replicas"], 0);
}

#[test]
fn parallel_statefulset_with_claims_deleted_on_scale_down() {
    let s = TestServer::start();
    let _agent = agent(&s, "sim", 1);
    s.wait_for_ready_nodes(1, WAIT);
    let manifest = WEB
        .replace("  serviceName: web\n", "  serviceName: web\n  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy:\n    whenScaled: Delete\n    whenDeleted: Retain\n")
        .replace("replicas: 3", "replicas: 4");
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    s.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    assert_eq!(names(&s.items(&["get", "pvc", "-l", "app=web"])).len(), 4);

    s.ok(&["scale", "sts", "web", "--replicas=2"]);
    s.eventually("two members", WAIT, || names(&s.items(&["get", "pods", "-l", "app=web"])) == vec!["web-0", "web-1"]);
    // The claims of the removed members were handed to their pods and collected.
    s.eventually("claims of removed members deleted", WAIT, || names(&s.items(&["get", "pvc", "-l", "app=web"])) == vec!["data-web-0", "data-web-1"]);
    let claim = s.json(&["get", "pvc", "data-web-0"]);
    assert!(claim["metadata"]["ownerReferences"].is_null(), "members in range keep unowned claims: {claim}");
}

// === DaemonSet ===

const AGENT_DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
      annotations:
        sim.skiff.io/ready-after: 200ms
    spec:
      containers:
      - name: agent
        image: agent:1
"#;

#[test]
fn daemonset_follows_nodes_taints_labels_and_deletions() {
    let s = TestServer::start();
    let _first = agent(&s, "sim", 2);
    s.wait_for_ready_nodes(2, WAIT);
    s.ok_stdin(&["apply", "-f", "-"], AGENT_DS);
    s.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    let placed = pods_by_node(&s, "app=agent");
    assert_eq!(placed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["sim-0", "sim-1"]);

    // Daemon pods name their node in a required affinity and tolerate node problems.
    let pod = s.json(&["get", "pod", &placed[0].1]);
    let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
    assert_eq!(term["matchFields"][0]["key"], "metadata.name");
    assert_eq!(term["matchFields"][0]["values"][0], "sim-0");
    let tolerations: Vec<String> = pod["spec"]["tolerations"].as_array().unwrap().iter().map(|t| format!("{}:{}", t["key"].as_str().unwrap(), t["effect"].as_str().unwrap())).collect();
    for t in ["node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unschedulable:NoSchedule"] {
        assert!(tolerations.contains(&t.to_string()), "{t} in {tolerations:?}");
    }
    let hash = pod["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap().to_string();
    let revisions = s.items(&["get", "controllerrevisions", "-l", "app=agent"]);
    assert_eq!(names(&revisions), vec![format!("agent-{hash}")]);
    assert!(s.event_messages("agent").iter().any(|m| m == &format!("SuccessfulCreate Created pod: {}", placed[0].1)));

    // A node joins (a second agent process): it gets a pod.
    let mut second = agent(&s, "extra", 1);
    s.wait_for_ready_nodes(3, WAIT);
    s.eventually("a pod on the new node", WAIT, || pods_by_node(&s, "app=agent").iter().any(|(n, _)| n == "extra"));
    s.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    let status = s.json(&["get", "ds", "agent"])["status"].clone();
    assert_eq!((status["desiredNumberScheduled"].as_i64(), status["numberReady"].as_i64(), status["numberAvailable"].as_i64()), (Some(3), Some(3), Some(3)));

    // NoSchedule keeps the running pod (upstream: only NoExecute evicts daemon pods)
    // but the node no longer counts as desired.
    s.ok(&["taint", "nodes", "sim-1", "dedicated=db:NoSchedule"]);
    s.eventually("sim-1 counted as misscheduled", WAIT, || {
        let st = s.json(&["get", "ds", "agent"])["status"].clone();
        st["desiredNumberScheduled"] == 2 && st["numberMisscheduled"] == 1
    });
    assert!(pods_by_node(&s, "app=agent").iter().any(|(n, _)| n == "sim-1"), "NoSchedule does not evict");
    s.ok(&["taint", "nodes", "sim-1", "dedicated=db:NoSchedule-"]);

    // NoExecute evicts it; removing the taint brings it back.
    s.ok(&["taint", "nodes", "sim-1", "dedicated=db:NoExecute"]);
    s.eventually("the pod on sim-1 goes", WAIT, || !pods_by_node(&s, "app=agent").iter().any(|(n, _)| n == "sim-1"));
    s.ok(&["taint", "nodes", "sim-1", "dedicated=db:NoExecute-"]);
    s.eventually("the pod on sim-1 comes back", WAIT, || pods_by_node(&s, "app=agent").iter().any(|(n, _)| n == "sim-1"));

    // A deleted node loses its pod.
    second.kill();
    s.ok(&["delete", "node", "extra"]);
    s.eventually("the pod of the deleted node goes", WAIT, || !s.items(&["get", "pods", "-l", "app=agent"]).iter().any(|p| p["spec"]["nodeName"] == "extra"));
    s.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);

    // A node selector restricts placement; the template change rolls out.
    s.ok(&["label", "node", "sim-0", "role=edge"]);
    s.ok(&["patch", "ds", "agent", "-p", r#"{"spec":{"template":{"spec":{"nodeSelector":{"role":"edge"}}}}}"#]);
    s.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    s.eventually("only sim-0 runs the daemon", WAIT, || pods_by_node(&s, "app=agent").iter().map(|(n, _)| n.clone()).collect::<Vec<_>>() == vec!["sim-0"]);
    let pod = s.json(&["get", "pod", &pods_by_node(&s, "app=agent")[0].1]);
    assert_ne!(pod["metadata"]["labels"]["controller-revision-hash"].as_str().unwrap(), hash, "the pod is of the new template");
    assert_eq!(s.items(&["get", "controllerrevisions", "-l", "app=agent"]).len(), 2);
    let status = s.json(&["get", "ds", "agent"])["status"].clone();
    assert_eq!((status["desiredNumberScheduled"].as_i64(), status["currentNumberScheduled"].as_i64(), status["numberMisscheduled"].as_i64()), (Some(1), Some(1), Some(0)));
}

#[test]
fn daemonset_rolling_update_replaces_pods_within_max_unavailable() {
    let s = TestServer::start();
    let _agent = agent(&s, "sim", 3);
    s.wait_for_ready_nodes(3, WAIT);
    s.ok_stdin(&["apply", "-f", "-"], AGENT_DS);
    s.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    let watch = PodWatch::start(&s, "app=agent");
    std::thread::sleep(Duration::from_millis(500));
    let start = watch.len();

    s.ok(&["set", "image", "ds/agent", "agent=agent:2"]);
    s.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    let pods = s.items(&["get", "pods", "-l", "app=agent"]);
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "agent:2"));

    // maxUnavailable 1: at no point were two old pods going at once.
    let events = watch.events();
    let mut going: Vec<String> = Vec::new();
    let mut ready_new: Vec<String> = Vec::new();
    for e in &events[start..] {
        if e.image == "agent:1" && (e.deleting || e.kind == "DELETED") && !going.contains(&e.uid) {
            going.push(e.uid.clone());
            let replaced = going.len() - 1;
            assert!(ready_new.len() >= replaced, "old pod {} went while only {} of {replaced} replacements were ready", e.name, ready_new.len());
        }
        if e.image == "agent:2" && e.ready && !ready_new.contains(&e.uid) {
            ready_new.push(e.uid.clone());
        }
    }
    assert_eq!(going.len(), 3);
    let history = s.ok(&["rollout", "history", "ds/agent"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
}
