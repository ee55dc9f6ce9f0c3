//! Persistent volumes end to end: the built-in `local-path` StorageClass, the
//! volume controller with its local-path provisioner, and the scheduler's
//! VolumeBinding, on a real `skiff server` with simulated nodes and real kubectl.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{SimAgent, TestServer};

const WAIT: Duration = Duration::from_secs(60);

fn claim(name: &str, class: Option<&str>) -> String {
    let class = class.map(|c| format!("  storageClassName: {c}\n")).unwrap_or_default();
    format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n{class}  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n")
}

fn pod(name: &str, claim: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    image: nginx:1.27\n    volumeMounts:\n    - name: data\n      mountPath: /data\n  \
         volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: {claim}\n"
    )
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The node a pod was bound to, once it is.
fn wait_for_node(s: &TestServer, pod: &str) -> String {
    let mut node = String::new();
    s.eventually(&format!("{pod} scheduled"), WAIT, || {
        node = s.get(&["pod", pod]).map(|p| str_at(&p, "/spec/nodeName").to_string()).unwrap_or_default();
        !node.is_empty()
    });
    node
}

fn wait_for_phase(s: &TestServer, what: &[&str], phase: &str) -> Value {
    let mut obj = Value::Null;
    s.eventually(&format!("{what:?} {phase}"), WAIT, || {
        obj = s.get(what).unwrap_or(Value::Null);
        str_at(&obj, "/status/phase") == phase
    });
    obj
}

#[test]
fn the_default_class_provisions_on_the_first_pods_node_and_later_pods_follow_the_volume() {
    let s = TestServer::start();
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "3", "--heartbeat", "2s"]);
    let nodes = s.wait_for_ready_nodes(3, WAIT);

    // The built-in class is listed as the default.
    let table = s.ok(&["get", "sc"]);
    let line = table.lines().find(|l| l.starts_with("local-path (default)")).unwrap_or_else(|| panic!("no default class:\n{table}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[2..6], ["skiff.io/local-path", "Delete", "WaitForFirstConsumer", "false"], "{table}");

    // A claim without a class gets the default one and waits for its first consumer.
    s.ok_stdin(&["apply", "-f", "-"], &claim("data", None));
    let pvc = s.json(&["get", "pvc", "data"]);
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    s.eventually("WaitForFirstConsumer event", WAIT, || {
        s.event_messages("data").iter().any(|m| m == "WaitForFirstConsumer waiting for first consumer to be created before binding")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(str_at(&s.json(&["get", "pvc", "data"]), "/status/phase"), "Pending");
    assert!(s.items(&["get", "pv"]).is_empty(), "nothing is provisioned before a pod needs it");

    // The first pod is scheduled; the volume is made on its node and bound.
    s.ok_stdin(&["apply", "-f", "-"], &pod("app", "data"));
    let node = wait_for_node(&s, "app");
    let pvc = wait_for_phase(&s, &["pvc", "data"], "Bound");
    let uid = str_at(&pvc, "/metadata/uid").to_string();
    let volume = format!("pvc-{uid}");
    assert_eq!(str_at(&pvc, "/spec/volumeName"), volume);
    assert_eq!(pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"], node.as_str());
    assert_eq!(pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!((pvc["status"]["capacity"]["storage"].as_str(), pvc["status"]["accessModes"].clone()), (Some("1Gi"), serde_json::json!(["ReadWriteOnce"])));

    let node_obj = nodes.iter().find(|n| n["metadata"]["name"] == node.as_str()).unwrap();
    let base = node_obj["metadata"]["annotations"]["storage.skiff.io/local-path"].as_str().unwrap_or("/var/lib/skiff/storage");
    let hostname = node_obj["metadata"]["labels"]["kubernetes.io/hostname"].as_str().unwrap_or(&node);
    let pv = wait_for_phase(&s, &["pv", &volume], "Bound");
    assert_eq!(pv["spec"]["hostPath"], serde_json::json!({"path": format!("{base}/{volume}_default_data"), "type": "DirectoryOrCreate"}));
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"],
        serde_json::json!([{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [hostname]}]}])
    );
    assert_eq!((str_at(&pv, "/spec/claimRef/name"), str_at(&pv, "/spec/claimRef/uid")), ("data", uid.as_str()));
    assert_eq!((str_at(&pv, "/spec/persistentVolumeReclaimPolicy"), str_at(&pv, "/spec/storageClassName")), ("Delete", "local-path"));
    assert_eq!(pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"], "skiff.io/local-path");
    assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
    let pv_line = s.ok(&["get", "pv", &volume]);
    assert!(pv_line.contains("Bound") && pv_line.contains("default/data") && pv_line.contains("RWO"), "{pv_line}");
    let events = s.event_messages("data");
    for want in [
        "ExternalProvisioning Waiting for a volume to be created either by the external provisioner 'skiff.io/local-path'",
        "Provisioning External provisioner is provisioning volume for claim \"default/data\"",
        &format!("ProvisioningSucceeded Successfully provisioned volume {volume}"),
    ] {
        assert!(events.iter().any(|m| m.starts_with(want)), "no {want:?} in {events:#?}");
    }

    // Pods re-created for the claim go back to the volume's node, whichever that is.
    for round in 0..3 {
        s.ok(&["delete", "pod", "app", "--wait=true", "--timeout=60s"]);
        s.ok_stdin(&["apply", "-f", "-"], &pod("app", "data"));
        assert_eq!(wait_for_node(&s, "app"), node, "round {round}");
    }

    // A claim deleted under a running pod stays (Terminating) while the pod uses it...
    assert_eq!(pvc["metadata"]["finalizers"], serde_json::json!(["kubernetes.io/pvc-protection"]));
    assert_eq!(pv["metadata"]["finalizers"], serde_json::json!(["kubernetes.io/pv-protection"]));
    s.ok(&["delete", "pvc", "data", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(s.ok(&["get", "pvc", "data"]).contains("Terminating"));
    assert_eq!(str_at(&s.json(&["get", "pv", &volume]), "/status/phase"), "Bound");
    // ...and once the pod is gone, takes its provisioned volume along (reclaim policy Delete).
    s.ok(&["delete", "pod", "app", "--wait=true", "--timeout=60s"]);
    s.eventually("the claim deleted", WAIT, || s.get(&["pvc", "data"]).is_none());
    s.eventually("the provisioned volume deleted", WAIT, || s.get(&["pv", &volume]).is_none());
}

#[test]
fn statefulset_members_return_to_the_nodes_of_their_volumes() {
    let s = TestServer::start();
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "3", "--heartbeat", "2s"]);
    s.wait_for_ready_nodes(3, WAIT);
    let manifest = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  replicas: 2\n  podManagementPolicy: Parallel\n  \
        selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: db\n        image: postgres:16\n        \
        volumeMounts:\n        - {name: data, mountPath: /var/lib/postgresql}\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      \
        accessModes: [ReadWriteOnce]\n      resources:\n        requests: {storage: 1Gi}\n";
    s.ok_stdin(&["apply", "-f", "-"], manifest);
    s.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    let placed: Vec<(String, String)> = (0..2).map(|i| (format!("db-{i}"), wait_for_node(&s, &format!("db-{i}")))).collect();
    for (pod, node) in &placed {
        let pvc = wait_for_phase(&s, &["pvc", &format!("data-{pod}")], "Bound");
        let pv = s.json(&["get", "pv", str_at(&pvc, "/spec/volumeName")]);
        assert_eq!(pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0], node.as_str());
    }
    for round in 0..2 {
        let uids: Vec<String> = placed.iter().map(|(p, _)| str_at(&s.json(&["get", "pod", p]), "/metadata/uid").to_string()).collect();
        // Not `--wait`: kubectl's wait sometimes misses the deletion of a pod that is
        // re-created under the same name at once; the uids tell instead.
        s.ok(&["delete", "pod", "db-0", "db-1", "--wait=false"]);
        for ((pod, node), old_uid) in placed.iter().zip(&uids) {
            s.eventually(&format!("{pod} re-created"), WAIT, || s.get(&["pod", pod]).is_some_and(|p| str_at(&p, "/metadata/uid") != old_uid));
            assert_eq!(&wait_for_node(&s, pod), node, "{pod}, round {round}");
        }
    }
}

#[test]
fn claims_of_missing_classes_wait_and_their_pods_stay_unscheduled_until_the_class_exists() {
    let s = TestServer::start();
    let _agent = SimAgent::start(&s, "sim", &["--nodes", "2", "--heartbeat", "2s"]);
    s.wait_for_ready_nodes(2, WAIT);

    // A pod whose claim does not exist is not scheduled.
    s.ok_stdin(&["apply", "-f", "-"], &pod("orphan", "nope"));
    s.eventually("FailedScheduling for the missing claim", WAIT, || {
        s.event_messages("orphan").iter().any(|m| m.starts_with("FailedScheduling 0/2 nodes are available: persistentvolumeclaim \"nope\" not found."))
    });

    // A claim of a class that does not exist stays Pending, and so does its pod.
    s.ok_stdin(&["apply", "-f", "-"], &claim("gold-data", Some("gold")));
    s.eventually("ProvisioningFailed event", WAIT, || {
        s.event_messages("gold-data").iter().any(|m| m == "ProvisioningFailed storageclass.storage.k8s.io \"gold\" not found")
    });
    s.ok_stdin(&["apply", "-f", "-"], &pod("waiter", "gold-data"));
    s.eventually("FailedScheduling for the unbound claim", WAIT, || {
        s.event_messages("waiter").iter().any(|m| m.contains("pod has unbound immediate PersistentVolumeClaims"))
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(str_at(&s.json(&["get", "pvc", "gold-data"]), "/status/phase"), "Pending");
    assert_eq!(str_at(&s.json(&["get", "pod", "waiter"]), "/spec/nodeName"), "");

    // Once the class exists (binding at once), the claim is provisioned on a ready
    // node and the pod follows it there.
    let gold = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: gold\nprovisioner: skiff.io/local-path\nreclaimPolicy: Retain\nvolumeBindingMode: Immediate\n";
    s.ok_stdin(&["apply", "-f", "-"], gold);
    let pvc = wait_for_phase(&s, &["pvc", "gold-data"], "Bound");
    let volume = str_at(&pvc, "/spec/volumeName").to_string();
    let pv = s.json(&["get", "pv", &volume]);
    let pinned = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0].as_str().unwrap().to_string();
    assert_eq!(wait_for_node(&s, "waiter"), pinned);
    assert_eq!(str_at(&pv, "/spec/persistentVolumeReclaimPolicy"), "Retain");

    // Under Retain the volume outlives its claim, Released.
    s.ok(&["delete", "pod", "waiter", "--wait=true", "--timeout=60s"]);
    s.ok(&["delete", "pvc", "gold-data", "--wait=true", "--timeout=60s"]);
    let released = wait_for_phase(&s, &["pv", &volume], "Released");
    assert_eq!(str_at(&released, "/spec/claimRef/name"), "gold-data");
    std::thread::sleep(Duration::from_secs(1));
    assert!(s.get(&["pv", &volume]).is_some(), "a retained volume is kept");

    // StorageClasses are validated and keep their provisioner.
    let err = s.fails_stdin(&["apply", "-f", "-"], &gold.replace("skiff.io/local-path", "example.com/other"));
    assert!(err.contains("provisioner: Forbidden: updates to provisioner are forbidden."), "{err}");
}
