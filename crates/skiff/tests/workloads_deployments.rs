//! Deployments, ReplicaSets, Services' endpoints, default ServiceAccounts and quota
//! status end to end: a real `skiff server` (scheduler and controllers), simulated
//! nodes from `skiff agent --runtime sim --nodes 3`, and real kubectl.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use support::{PodEvent, PodWatch, SimAgent, TestServer};

const WAIT: Duration = Duration::from_secs(90);

// === helpers ===

/// A server with three simulated nodes, ready for pods.
fn cluster() -> (TestServer, SimAgent) {
    let s = TestServer::start();
    let agent = SimAgent::start(&s, "sim", &["--nodes", "3", "--zones", "a,b,c", "--heartbeat", "2s"]);
    s.wait_for_ready_nodes(3, WAIT);
    (s, agent)
}

fn deployment(name: &str, replicas: u32, image: &str, ready_after: &str, surge: &str, unavailable: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {surge}
      maxUnavailable: {unavailable}
  template:
    metadata:
      labels:
        app: {name}
      annotations:
        sim.skiff.io/ready-after: "{ready_after}"
    spec:
      containers:
      - name: c
        image: {image}
        ports:
        - name: http
          containerPort: 8080
"#
    )
}

/// Pods of a selector that are not being deleted.
fn live_pods(s: &TestServer, selector: &str) -> Vec<Value> {
    s.items(&["get", "pods", "-l", selector]).into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
}

fn rollout_status(s: &TestServer, name: &str) -> String {
    s.ok(&["rollout", "status", &format!("deployment/{name}"), "--timeout=90s"])
}

/// The ReplicaSets of a deployment as (revision, image, spec.replicas).
fn replica_sets(s: &TestServer, app: &str) -> Vec<(u64, String, u64)> {
    let mut out: Vec<(u64, String, u64)> = s.items(&["get", "rs", "-l", &format!("app={app}")])
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0),
                rs["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string(),
                rs["spec"]["replicas"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

// === Deployment ===

#[test]
fn rolling_update_never_exceeds_max_surge_nor_drops_below_max_unavailable() {
    let (s, _agent) = cluster();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("web", 10, "nginx:1", "300ms", "2", "1"));
    let out = rollout_status(&s, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = s.json(&["get", "deploy", "web"]);
    assert_eq!(d["status"]["availableReplicas"], 10, "{d}");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");

    let watch = PodWatch::start(&s, "app=web");
    s.eventually("the watch lists the 10 pods", WAIT, || watch.events().len() >= 10);
    s.ok(&["set", "image", "deployment/web", "c=nginx:2"]);
    let out = rollout_status(&s, "web");
    assert!(out.contains("successfully rolled out"), "{out}");
    std::thread::sleep(Duration::from_millis(500));

    // Replay the watch: at every event, pods that are not terminating number at most
    // replicas + maxSurge, and ready ones at least replicas - maxUnavailable.
    let events = watch.events();
    let mut pods: HashMap<String, PodEvent> = HashMap::new();
    let (mut max_total, mut min_available) = (0, usize::MAX);
    let mut updated_seen = false;
    for (i, e) in events.iter().enumerate() {
        if e.kind == "DELETED" {
            pods.remove(&e.uid);
        } else {
            pods.insert(e.uid.clone(), e.clone());
        }
        if i + 1 < 10 {
            continue; // the initial listing
        }
        let live: Vec<&PodEvent> = pods.values().filter(|p| !p.deleting && p.owner.starts_with("web-")).collect();
        let total = live.len();
        let available = live.iter().filter(|p| p.ready).count();
        max_total = max_total.max(total);
        min_available = min_available.min(available);
        updated_seen |= e.image == "nginx:2";
        assert!(total <= 12, "event {i}: {total} pods run, more than 10 + maxSurge 2: {e:?}");
        assert!(available >= 9, "event {i}: only {available} pods available, fewer than 10 - maxUnavailable 1: {e:?}");
    }
    assert!(updated_seen, "the watch saw no updated pod");
    assert!(max_total > 10, "the rollout never surged (max {max_total} pods)");
    let pods = live_pods(&s, "app=web");
    assert_eq!(pods.len(), 10);
    assert!(pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "nginx:2"));

    // Status and conditions as kubectl rollout status and wait read them.
    let d = s.json(&["get", "deploy", "web"]);
    let st = &d["status"];
    assert_eq!((st["replicas"].as_u64(), st["updatedReplicas"].as_u64(), st["readyReplicas"].as_u64()), (Some(10), Some(10), Some(10)), "{st}");
    assert_eq!(st["observedGeneration"], d["metadata"]["generation"]);
    assert!(st["unavailableReplicas"].is_null(), "{st}");
    let cond = |t: &str| st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap();
    assert_eq!(cond("Available")["reason"], "MinimumReplicasAvailable");
    assert_eq!(cond("Progressing")["reason"], "NewReplicaSetAvailable");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
    s.ok(&["wait", "--for=condition=Available", "deployment/web", "--timeout=10s"]);

    // The old ReplicaSet stays, scaled to zero; the new one has the hash label.
    let rss = replica_sets(&s, "web");
    assert_eq!(rss, vec![(1, "nginx:1".to_string(), 0), (2, "nginx:2".to_string(), 10)]);
    let new_rs = s.items(&["get", "rs", "-l", "app=web"]).into_iter().find(|rs| rs["spec"]["replicas"] == 10).unwrap();
    let hash = new_rs["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_string();
    assert_eq!(new_rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(new_rs["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash.as_str());
    assert_eq!(new_rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"], "10");
    assert_eq!(new_rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"], "12");
    assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{hash}");

    // Events kubectl describe shows.
    let describe = s.ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
    assert!(describe.contains(&format!("Scaled up replica set web-{hash} from 0 to 2")), "{describe}");
    assert!(describe.contains("Scaled down replica set web-"), "{describe}");
    let rs_events = s.event_messages(&format!("web-{hash}"));
    assert!(rs_events.iter().any(|m| m.starts_with(&format!("SuccessfulCreate Created pod: web-{hash}-"))), "{rs_events:?}");

    // History, then undo to the previous template: revision 1 comes back as 3.
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.chars().all(|c| c.is_ascii_digit())).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    s.ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&s, "web");
    s.eventually("pods run nginx:1 again", WAIT, || {
        let pods = live_pods(&s, "app=web");
        pods.len() == 10 && pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "nginx:1")
    });
    let rss = replica_sets(&s, "web");
    assert_eq!(rss, vec![(2, "nginx:2".to_string(), 0), (3, "nginx:1".to_string(), 10)], "the old ReplicaSet is reused");
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history.lines().filter_map(|l| l.split_whitespace().next()).filter(|w| w.chars().all(|c| c.is_ascii_digit())).collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    let back = s.items(&["get", "rs", "-l", "app=web"]).into_iter().find(|rs| rs["spec"]["replicas"] == 10).unwrap();
    assert_eq!(back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
    let detail = s.ok(&["rollout", "history", "deployment/web", "--revision=3"]);
    assert!(detail.contains("nginx:1"), "{detail}");
}

#[test]
fn paused_deployments_wait_and_scaling_mid_rollout_is_proportional() {
    let (s, _agent) = cluster();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("api", 4, "nginx:1", "100ms", "25%", "25%"));
    rollout_status(&s, "api");

    // Paused: a template change makes no new ReplicaSet.
    s.ok(&["rollout", "pause", "deployment/api"]);
    s.ok(&["set", "image", "deployment/api", "c=nginx:2"]);
    s.eventually("the Progressing condition says paused", WAIT, || {
        let d = s.json(&["get", "deploy", "api"]);
        d["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused" && c["status"] == "Unknown"))
            && d["status"]["observedGeneration"] == d["metadata"]["generation"]
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(replica_sets(&s, "api").len(), 1, "no new ReplicaSet while paused");
    // Scaling while paused still works.
    s.ok(&["scale", "deployment/api", "--replicas=6"]);
    s.eventually("6 pods while paused", WAIT, || live_pods(&s, "app=api").len() == 6);
    assert!(live_pods(&s, "app=api").iter().all(|p| p["spec"]["containers"][0]["image"] == "nginx:1"));

    s.ok(&["rollout", "resume", "deployment/api"]);
    rollout_status(&s, "api");
    let pods = live_pods(&s, "app=api");
    assert_eq!(pods.len(), 6);
    assert!(pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "nginx:2"));

    // Scale in the middle of a slow rollout: both ReplicaSets grow in proportion,
    // and the rollout still ends with every replica updated.
    s.ok(&["patch", "deployment/api", "-p", r#"{"spec":{"template":{"metadata":{"annotations":{"sim.skiff.io/ready-after":"3s"}}}}}"#]);
    s.eventually("two ReplicaSets with replicas", WAIT, || replica_sets(&s, "api").iter().filter(|r| r.2 > 0).count() == 2);
    s.ok(&["scale", "deployment/api", "--replicas=12"]);
    s.eventually("the active ReplicaSets are scaled for 12 replicas", WAIT, || {
        s.items(&["get", "rs", "-l", "app=api"])
            .iter()
            .filter(|rs| rs["spec"]["replicas"].as_u64().unwrap_or(0) > 0)
            .all(|rs| rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "12")
    });
    let total: u64 = replica_sets(&s, "api").iter().map(|r| r.2).sum();
    assert!(total <= 12 + 3, "at most replicas + maxSurge: {total}");
    rollout_status(&s, "api");
    s.eventually("12 updated pods", WAIT, || {
        let pods = live_pods(&s, "app=api");
        pods.len() == 12 && pods.iter().all(|p| p["metadata"]["annotations"]["sim.skiff.io/ready-after"] == "3s")
    });

    // kubectl rollout restart rolls the pods again.
    let before: Vec<String> = live_pods(&s, "app=api").iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    s.ok(&["rollout", "restart", "deployment/api"]);
    rollout_status(&s, "api");
    s.eventually("every pod replaced", WAIT, || {
        let pods = live_pods(&s, "app=api");
        pods.len() == 12 && pods.iter().all(|p| !before.contains(&p["metadata"]["name"].as_str().unwrap().to_string()))
    });
    let d = s.json(&["get", "deploy", "api"]);
    assert!(d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string());

    // Old revisions beyond revisionHistoryLimit are deleted, the newest kept.
    assert!(replica_sets(&s, "api").len() >= 4);
    s.ok(&["patch", "deployment/api", "-p", r#"{"spec":{"revisionHistoryLimit":1}}"#]);
    s.eventually("one old ReplicaSet left", WAIT, || replica_sets(&s, "api").len() == 2);
    let revisions: Vec<u64> = replica_sets(&s, "api").iter().map(|r| r.0).collect();
    assert_eq!(revisions, [3, 4]);
}

#[test]
fn a_stuck_rollout_times_out_and_pod_creation_failures_surface() {
    let (s, _agent) = cluster();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("slow", 2, "nginx:1", "100ms", "1", "0"));
    rollout_status(&s, "slow");
    s.ok(&["patch", "deployment/slow", "-p", r#"{"spec":{"progressDeadlineSeconds":2,"template":{"metadata":{"annotations":{"sim.skiff.io/ready-after":"1h"}}}}}"#]);
    let out = s.kubectl(&["rollout", "status", "deployment/slow", "--timeout=60s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d = s.json(&["get", "deploy", "slow"]);
    let progressing = d["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Progressing").cloned().unwrap();
    assert_eq!((progressing["status"].as_str(), progressing["reason"].as_str()), (Some("False"), Some("ProgressDeadlineExceeded")), "{progressing}");
    assert_eq!(d["status"]["availableReplicas"], 2, "maxUnavailable 0 keeps the old pods: {d}");

    // Pods a quota refuses: the ReplicaSet and the Deployment say so.
    s.ok(&["create", "namespace", "tight"]);
    s.ok_stdin(
        &["apply", "-n", "tight", "-f", "-"],
        r#"
apiVersion: v1
kind: ResourceQuota
metadata:
  name: small
spec:
  hard:
    pods: "1"
"#,
    );
    s.eventually("the quota has status", WAIT, || s.json(&["get", "quota", "small", "-n", "tight"])["status"]["used"]["pods"] == "0");
    s.ok_stdin(&["apply", "-n", "tight", "-f", "-"], &deployment("big", 3, "nginx:1", "100ms", "1", "0"));
    s.eventually("a ReplicaFailure condition", WAIT, || {
        let rs = s.items(&["get", "rs", "-n", "tight", "-l", "app=big"]);
        rs.first().is_some_and(|rs| {
            rs["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "ReplicaFailure" && c["status"] == "True" && c["reason"] == "FailedCreate"))
        })
    });
    s.eventually("the Deployment carries it too", WAIT, || {
        let d = s.json(&["get", "deploy", "big", "-n", "tight"]);
        d["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "ReplicaFailure" && c["reason"] == "FailedCreate"))
    });
    assert_eq!(s.items(&["get", "pods", "-n", "tight"]).len(), 1);
    let rs_name = s.items(&["get", "rs", "-n", "tight", "-l", "app=big"])[0]["metadata"]["name"].as_str().unwrap().to_string();
    let events: Vec<String> = s.items(&["get", "events", "-n", "tight", "--field-selector", &format!("involvedObject.name={rs_name}")])
        .iter()
        .map(|e| format!("{} {}", e["reason"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default()))
        .collect();
    assert!(events.iter().any(|m| m.starts_with("FailedCreate Error creating: ") && m.contains("exceeded quota")), "{events:?}");
}

#[test]
fn recreate_removes_old_pods_before_new_ones_start() {
    let (s, _agent) = cluster();
    let yaml = deployment("batch", 3, "nginx:1", "100ms", "1", "0").replace(
        "    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n",
        "    type: Recreate\n",
    );
    s.ok_stdin(&["apply", "-f", "-"], &yaml);
    rollout_status(&s, "batch");
    let watch = PodWatch::start(&s, "app=batch");
    s.eventually("the watch lists the 3 pods", WAIT, || watch.events().len() >= 3);
    s.ok(&["set", "image", "deployment/batch", "c=nginx:2"]);
    rollout_status(&s, "batch");
    s.eventually("3 new pods", WAIT, || {
        let pods = live_pods(&s, "app=batch");
        pods.len() == 3 && pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "nginx:2")
    });
    // No new pod appeared while an old one was still running. As upstream's
    // Recreate, an old pod that has reached a terminal phase no longer counts,
    // even before it is deleted.
    let events = watch.events();
    let mut old_alive: HashMap<String, bool> = HashMap::new();
    for e in &events {
        if e.image == "nginx:1" {
            if e.kind == "DELETED" || e.phase == "Succeeded" || e.phase == "Failed" {
                old_alive.remove(&e.uid);
            } else {
                old_alive.insert(e.uid.clone(), true);
            }
        } else if e.image == "nginx:2" && e.kind == "ADDED" {
            assert!(old_alive.is_empty(), "a new pod was created while old pods existed: {:?}", old_alive.keys());
        }
    }
}

// === ReplicaSet ===

#[test]
fn replica_sets_adopt_orphans_and_delete_extra_pods() {
    let (s, _agent) = cluster();
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: orphan
  labels:
    app: cache
spec:
  containers:
  - name: c
    image: redis:7
"#,
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: cache
spec:
  replicas: 3
  selector:
    matchLabels:
      app: cache
  template:
    metadata:
      labels:
        app: cache
    spec:
      containers:
      - name: c
        image: redis:7
"#,
    );
    s.eventually("3 ready replicas", WAIT, || {
        let st = s.json(&["get", "rs", "cache"])["status"].clone();
        st["readyReplicas"] == 3 && st["availableReplicas"] == 3 && st["fullyLabeledReplicas"] == 3
    });
    let rs = s.json(&["get", "rs", "cache"]);
    assert_eq!(rs["status"]["observedGeneration"], rs["metadata"]["generation"]);
    let orphan = s.json(&["get", "pod", "orphan"]);
    let owner = &orphan["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["name"].as_str(), owner["controller"].as_bool()), (Some("ReplicaSet"), Some("cache"), Some(true)));
    assert_eq!(owner["uid"], rs["metadata"]["uid"]);
    assert_eq!(live_pods(&s, "app=cache").len(), 3, "the orphan counts as one of three");
    let created = s.event_messages("cache").into_iter().filter(|m| m.starts_with("SuccessfulCreate Created pod: cache-")).count();
    assert_eq!(created, 2);

    s.ok(&["scale", "rs/cache", "--replicas=1"]);
    s.eventually("one pod left", WAIT, || live_pods(&s, "app=cache").len() == 1);
    let deleted: Vec<String> = s.event_messages("cache").into_iter().filter(|m| m.starts_with("SuccessfulDelete Deleted pod: ")).collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");

    // A pod relabelled out of the selector is released and replaced.
    let name = live_pods(&s, "app=cache")[0]["metadata"]["name"].as_str().unwrap().to_string();
    s.ok(&["label", "pod", &name, "app=detached", "--overwrite"]);
    s.eventually("the pod is released and replaced", WAIT, || {
        let pod = s.json(&["get", "pod", &name]);
        pod["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()) && live_pods(&s, "app=cache").len() == 1
    });
}

// === Services, accounts, quotas ===

#[test]
fn services_get_endpoints_and_slices_of_their_pods() {
    let (s, _agent) = cluster();
    s.ok_stdin(&["apply", "-f", "-"], &deployment("shop", 3, "nginx:1", "200ms", "1", "0"));
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata:
  name: shop
spec:
  selector:
    app: shop
  ports:
  - name: web
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: manual
spec:
  ports:
  - port: 80
"#,
    );
    rollout_status(&s, "shop");
    let pod_ips = || -> Vec<String> {
        let mut ips: Vec<String> = live_pods(&s, "app=shop").iter().filter_map(|p| p["status"]["podIP"].as_str().map(String::from)).collect();
        ips.sort();
        ips
    };
    s.eventually("endpoints with the 3 pod IPs", WAIT, || {
        let ep = s.json(&["get", "endpoints", "shop"]);
        let mut ips: Vec<String> = ep["subsets"][0]["addresses"].as_array().map(|a| a.iter().map(|a| a["ip"].as_str().unwrap().to_string()).collect()).unwrap_or_default();
        ips.sort();
        ips.len() == 3 && ips == pod_ips()
    });
    let ep = s.json(&["get", "endpoints", "shop"]);
    let subset = &ep["subsets"][0];
    assert_eq!(subset["ports"][0]["port"], 8080, "the named targetPort resolves to the container port");
    assert_eq!(subset["ports"][0]["name"], "web");
    let addr = &subset["addresses"][0];
    assert_eq!(addr["targetRef"]["kind"], "Pod");
    assert!(addr["nodeName"].as_str().is_some_and(|n| n.starts_with("sim-")), "{addr}");

    s.eventually("an EndpointSlice with the 3 pods", WAIT, || {
        let slices = s.items(&["get", "endpointslices", "-l", "kubernetes.io/service-name=shop"]);
        slices.len() == 1 && slices[0]["endpoints"].as_array().map(Vec::len) == Some(3)
    });
    let slice = s.items(&["get", "endpointslices", "-l", "kubernetes.io/service-name=shop"]).remove(0);
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert!(slice["metadata"]["name"].as_str().unwrap().starts_with("shop-"));
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["ports"][0]["port"], 8080);
    let mut ips: Vec<String> = slice["endpoints"].as_array().unwrap().iter().map(|e| e["addresses"][0].as_str().unwrap().to_string()).collect();
    ips.sort();
    assert_eq!(ips, pod_ips());
    for e in slice["endpoints"].as_array().unwrap() {
        assert_eq!(e["conditions"]["ready"], true, "{e}");
        assert_eq!(e["conditions"]["serving"], true, "{e}");
        assert!(["a", "b", "c"].contains(&e["zone"].as_str().unwrap_or_default()), "{e}");
        assert_eq!(e["targetRef"]["kind"], "Pod");
    }
    let slice_name = slice["metadata"]["name"].as_str().unwrap().to_string();

    // Scaling down shrinks the same slice in place.
    s.ok(&["scale", "deployment/shop", "--replicas=1"]);
    s.eventually("endpoints with one address", WAIT, || {
        let ep = s.json(&["get", "endpoints", "shop"]);
        ep["subsets"][0]["addresses"].as_array().map(Vec::len) == Some(1)
            && ep["subsets"][0]["notReadyAddresses"].is_null()
    });
    s.eventually("the slice keeps its name with one ready endpoint", WAIT, || {
        let slices = s.items(&["get", "endpointslices", "-l", "kubernetes.io/service-name=shop"]);
        slices.len() == 1
            && slices[0]["metadata"]["name"] == slice_name.as_str()
            && slices[0]["endpoints"].as_array().is_some_and(|e| e.iter().filter(|e| e["conditions"]["ready"] == true).count() == 1)
    });
    // kubectl describe shows the endpoints.
    let describe = s.ok(&["describe", "service", "shop"]);
    assert!(describe.contains(&format!("{}:8080", pod_ips()[0])), "{describe}");

    // A Service without a selector is left alone; the API server's own is untouched.
    assert!(!s.kubectl(&["get", "endpoints", "manual"]).status.success());
    assert!(s.items(&["get", "endpointslices", "-l", "kubernetes.io/service-name=manual"]).is_empty());
    let kubernetes = s.json(&["get", "endpoints", "kubernetes", "-n", "default"]);
    assert!(kubernetes["subsets"][0]["addresses"][0]["ip"].is_string(), "{kubernetes}");

    // Deleting the Service removes its endpoints.
    s.ok(&["delete", "service", "shop"]);
    s.eventually("the endpoints are gone", WAIT, || !s.kubectl(&["get", "endpoints", "shop"]).status.success());
}

#[test]
fn every_namespace_has_a_default_service_account_and_quotas_report_usage() {
    let (s, _agent) = cluster();
    for ns in ["default", "kube-system", "kube-public"] {
        s.eventually(&format!("a default ServiceAccount in {ns}"), WAIT, || s.kubectl(&["get", "serviceaccount", "default", "-n", ns]).status.success());
    }
    s.ok(&["create", "namespace", "team-a"]);
    s.eventually("a default ServiceAccount in team-a", WAIT, || s.kubectl(&["get", "serviceaccount", "default", "-n", "team-a"]).status.success());
    let uid = s.json(&["get", "serviceaccount", "default", "-n", "team-a"])["metadata"]["uid"].clone();
    s.ok(&["delete", "serviceaccount", "default", "-n", "team-a"]);
    s.eventually("the default ServiceAccount is back", WAIT, || {
        let out = s.kubectl(&["get", "serviceaccount", "default", "-n", "team-a", "-o", "json"]);
        out.status.success() && serde_json::from_slice::<Value>(&out.stdout).unwrap()["metadata"]["uid"] != uid
    });

    s.ok_stdin(
        &["apply", "-n", "team-a", "-f", "-"],
        r#"
apiVersion: v1
kind: ResourceQuota
metadata:
  name: compute
spec:
  hard:
    pods: "10"
    requests.cpu: "2"
    requests.memory: 1Gi
    limits.memory: 2Gi
    count/configmaps: "5"
    services: "3"
"#,
    );
    s.eventually("status.hard mirrors spec.hard", WAIT, || {
        let q = s.json(&["get", "quota", "compute", "-n", "team-a"]);
        q["status"]["hard"]["requests.memory"] == "1Gi" && q["status"]["used"]["pods"] == "0"
    });
    s.ok_stdin(
        &["apply", "-n", "team-a", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: worker
spec:
  containers:
  - name: c
    image: busybox
    resources:
      requests:
        cpu: 250m
        memory: 64Mi
      limits:
        memory: 128Mi
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
"#,
    );
    s.eventually("used counts the pod and the config map", WAIT, || {
        let used = s.json(&["get", "quota", "compute", "-n", "team-a"])["status"]["used"].clone();
        used["pods"] == "1" && used["requests.cpu"] == "250m" && used["requests.memory"] == "64Mi" && used["limits.memory"] == "128Mi" && used["services"] == "0"
            // The namespace's root CA config map counts too, when the server publishes one.
            && used["count/configmaps"].as_str().is_some_and(|n| n != "0")
    });
    let describe = s.ok(&["describe", "quota", "compute", "-n", "team-a"]);
    let line = describe.lines().find(|l| l.trim_start().starts_with("requests.cpu")).unwrap_or_default().to_string();
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["requests.cpu", "250m", "2"], "{describe}");

    s.ok(&["delete", "pod", "worker", "-n", "team-a", "--grace-period=0", "--force"]);
    s.eventually("usage goes back down", WAIT, || {
        let used = s.json(&["get", "quota", "compute", "-n", "team-a"])["status"]["used"].clone();
        used["pods"] == "0" && used["requests.cpu"] == "0"
    });
}
