// Local benchmark of managed-fields bookkeeping; not part of the project.
use std::time::Instant;

use serde_json::{json, Value};
use skiff_api::patch::{record_update, server_side_apply};

const POD: &str = "io.k8s.api.core.v1.Pod";
const DEPLOY: &str = "io.k8s.api.apps.v1.Deployment";
const T0: &str = "2024-01-01T00:00:00Z";
const T1: &str = "2024-01-01T00:01:00Z";

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "uid": "0b7c1c5e-0000-4000-8000-000000000001",
            "creationTimestamp": T0, "resourceVersion": "12",
            "labels": {"app": "web", "tier": "frontend", "version": "v1"},
            "annotations": {"owner": "team-a"}},
        "spec": {
            "containers": [
                {"name": "nginx", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443, "protocol": "TCP"}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true}],
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"},
                {"name": "sidecar", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 3600"], "imagePullPolicy": "IfNotPresent",
                 "env": [{"name": "MODE", "value": "side"}],
                 "resources": {"requests": {"cpu": "10m"}},
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
            ],
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "web-cfg", "defaultMode": 420}}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
            "schedulerName": "default-scheduler", "securityContext": {}, "enableServiceLinks": true,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "preemptionPolicy": "PreemptLowerPriority", "serviceAccountName": "default"
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"}
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "0b7c1c5e-0000-4000-8000-000000000002", "generation": 1,
            "creationTimestamp": T0, "labels": {"app": "web"}},
        "spec": {
            "replicas": 3, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": pod()["spec"].clone()
            }
        },
        "status": {}
    })
}

fn time<F: FnMut() -> Value>(name: &str, iters: u32, mut f: F) -> Value {
    let mut out = f();
    if let Ok(only) = std::env::var("ONLY") {
        if only != name {
            return out;
        }
    }
    let mut best = f64::MAX;
    for _ in 0..7 {
        let start = Instant::now();
        for _ in 0..iters / 7 + 1 {
            out = std::hint::black_box(f());
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / (iters / 7 + 1) as f64);
    }
    println!("{name:<28} {best:>9.1} us/call (best of 7)");
    out
}

fn main() {
    let iters: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let mut results = serde_json::Map::new();

    let created_pod = time("create pod", iters, || {
        let mut p = pod();
        record_update(POD, None, &mut p, "kubectl-create", "", T0);
        p
    });
    results.insert("create_pod".into(), created_pod.clone());

    let created_deploy = time("create deployment", iters, || {
        let mut d = deployment();
        record_update(DEPLOY, None, &mut d, "kubectl-create", "", T0);
        d
    });
    results.insert("create_deploy".into(), created_deploy.clone());

    time("clone pod", iters, || created_pod.clone());
    time("build pod", iters, pod);

    let mut labelled = created_pod.clone();
    labelled["metadata"]["labels"]["version"] = json!("v2");
    let r = time("update pod one label", iters, || {
        let mut n = labelled.clone();
        record_update(POD, Some(&created_pod), &mut n, "kubectl-label", "", T1);
        n
    });
    results.insert("label_pod".into(), r);

    let r = time("no-op update pod", iters, || {
        let mut n = created_pod.clone();
        record_update(POD, Some(&created_pod), &mut n, "kubectl-edit", "", T1);
        n
    });
    results.insert("noop_pod".into(), r);

    let mut scaled = created_deploy.clone();
    scaled["spec"]["replicas"] = json!(5);
    let r = time("update deployment replicas", iters, || {
        let mut n = scaled.clone();
        record_update(DEPLOY, Some(&created_deploy), &mut n, "kubectl-scale", "", T1);
        n
    });
    results.insert("scale_deploy".into(), r);

    let mut status = created_pod.clone();
    status["status"] = json!({"phase": "Running", "qosClass": "Burstable", "podIP": "10.0.0.5",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]});
    let r = time("status update pod", iters, || {
        let mut n = status.clone();
        record_update(POD, Some(&created_pod), &mut n, "skiff-agent", "status", T1);
        n
    });
    results.insert("status_pod".into(), r);

    let mut applied = pod();
    applied["metadata"].as_object_mut().unwrap().retain(|k, _| k == "name" || k == "labels");
    applied.as_object_mut().unwrap().remove("status");
    let ssa_created = time("ssa create pod", iters, || server_side_apply(POD, None, &applied, "kubectl", false, T0).unwrap());
    results.insert("ssa_create".into(), ssa_created.clone());
    let r = time("ssa re-apply pod", iters, || server_side_apply(POD, Some(&ssa_created), &applied, "kubectl", false, T1).unwrap());
    results.insert("ssa_reapply".into(), r);
    let mut applied2 = applied.clone();
    applied2["metadata"]["labels"]["version"] = json!("v2");
    applied2["spec"]["containers"][1]["image"] = json!("busybox:1.37");
    let r = time("ssa change pod", iters, || server_side_apply(POD, Some(&ssa_created), &applied2, "kubectl", false, T1).unwrap());
    results.insert("ssa_change".into(), r);
    let r = server_side_apply(POD, Some(&ssa_created), &applied2, "other", false, T1);
    results.insert("ssa_conflict".into(), json!(format!("{r:?}")));

    if let Some(path) = std::env::args().nth(2) {
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(results)).unwrap()).unwrap();
    }
}
