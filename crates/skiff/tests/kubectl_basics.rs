//! Real kubectl against a real `skiff server`: the everyday object workflows.

mod support;

use std::time::Duration;

use support::TestServer;

const DEPLOYMENT: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        env:
        - {name: KEEP, value: "1"}
        - {name: DROP, value: "2"}
        ports:
        - {containerPort: 80}
        - {containerPort: 9090, name: metrics}
"#;

#[test]
fn version_and_discovery_work() {
    let s = TestServer::start();
    let v = s.ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
    let groups = s.ok(&["api-versions"]);
    for gv in ["v1", "apps/v1", "batch/v1", "discovery.k8s.io/v1", "coordination.k8s.io/v1", "events.k8s.io/v1", "node.k8s.io/v1"] {
        assert!(groups.lines().any(|l| l == gv), "{gv} missing from api-versions:\n{groups}");
    }
    let resources = s.ok(&["api-resources"]);
    let deploy = resources.lines().find(|l| l.starts_with("deployments")).expect("deployments listed");
    assert!(deploy.contains("deploy") && deploy.contains("apps/v1") && deploy.contains("true") && deploy.contains("Deployment"), "{deploy}");
    let nodes = resources.lines().find(|l| l.starts_with("nodes")).expect("nodes listed");
    assert!(nodes.contains("false"), "nodes are cluster-scoped: {nodes}");
}

#[test]
fn builtin_namespaces_exist_from_the_start() {
    let s = TestServer::start();
    let out = s.ok(&["get", "namespaces", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(&format!("namespace/{ns}")), "{out}");
    }
    let err = s.fails(&["delete", "namespace", "kube-system"]);
    assert!(err.contains("this namespace may not be deleted"), "{err}");
    let svc = s.json(&["get", "service", "kubernetes", "-n", "default"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
}

#[test]
fn anonymous_requests_are_refused() {
    let s = TestServer::start();
    let out = std::process::Command::new("kubectl")
        .args(["--server", &s.url(), "--insecure-skip-tls-verify", "--token", "not-a-valid-token", "get", "pods"])
        .env("HOME", s.data_dir())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("You must be logged in to the server"), "{err}");
}

#[test]
fn apply_then_reapply_removes_dropped_env_and_ports() {
    let s = TestServer::start();
    let out = s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let changed = DEPLOYMENT.replace("        - {name: DROP, value: \"2\"}\n", "").replace("        - {containerPort: 9090, name: metrics}\n", "");
    let out = s.ok_stdin(&["apply", "-f", "-"], &changed);
    assert!(out.contains("configmap/settings unchanged"), "{out}");
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d = s.json(&["get", "deployment", "web"]);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["env"], serde_json::json!([{"name": "KEEP", "value": "1"}]));
    assert_eq!(c["ports"].as_array().unwrap().len(), 1, "{}", c["ports"]);
    assert_eq!(c["ports"][0]["containerPort"], 80);
    assert_eq!(d["metadata"]["generation"], 2);
    // Defaults were filled in as upstream does.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
}

#[test]
fn server_side_apply_tracks_managers_and_reports_conflicts() {
    let s = TestServer::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    let out = s.ok_stdin(&["apply", "--server-side", "-f", "-"], cm);
    assert!(out.contains("configmap/ssa serverside-applied"), "{out}");
    let v = s.json(&["get", "configmap", "ssa", "--show-managed-fields"]);
    let mf = v["metadata"]["managedFields"].as_array().unwrap();
    assert!(mf.iter().any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"), "{mf:?}");
    // Another manager changing a field owned by kubectl conflicts.
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"changed\"\n";
    let err = s.fails_stdin(&["apply", "--server-side", "--field-manager", "other", "-f", "-"], other);
    assert!(err.contains("conflict"), "{err}");
    // Removing a field from the applied config removes it from the object.
    let fewer = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n";
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], fewer);
    let v = s.json(&["get", "configmap", "ssa"]);
    assert_eq!(v["data"], serde_json::json!({"a": "1"}));
}

#[test]
fn get_prints_columns_wide_jsonpath_custom_columns_and_sorts() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    for (name, app) in [("b-pod", "x"), ("a-pod", "y")] {
        s.ok(&["run", name, "--image=busybox:1.36", "--labels", &format!("app={app}"), "--restart=Never"]);
    }
    let out = s.ok(&["get", "deployments"]);
    let header = out.lines().next().unwrap();
    for col in ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] {
        assert!(header.contains(col), "{header}");
    }
    let wide = s.ok(&["get", "deployments", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("IMAGES"), "{wide}");
    assert!(wide.contains("nginx:1.27"), "{wide}");
    let pods = s.ok(&["get", "pods"]);
    assert!(pods.lines().next().unwrap().contains("STATUS"), "{pods}");
    assert!(pods.contains("Pending"), "{pods}");
    let names = s.ok(&["get", "pods", "-l", "app in (x,y)", "--sort-by", ".metadata.name", "-o", "custom-columns=N:.metadata.name,APP:.metadata.labels.app", "--no-headers"]);
    let rows: Vec<&str> = names.lines().collect();
    assert!(rows[0].starts_with("a-pod") && rows[1].starts_with("b-pod"), "{names}");
    assert_eq!(s.ok(&["get", "pods", "-l", "app=x", "-o", "jsonpath={.items[*].metadata.name}"]), "b-pod");
    assert_eq!(s.ok(&["get", "pods", "-l", "app in (x,y),app!=x", "-o", "jsonpath={.items[*].metadata.name}"]), "a-pod");
    assert_eq!(s.ok(&["get", "pods", "--field-selector", "metadata.name=a-pod", "-o", "name"]).trim(), "pod/a-pod");
    // The Deployment's own pods (Pending too: no nodes) are left out by the label selector.
    assert_eq!(s.ok(&["get", "pods", "--field-selector", "status.phase=Pending", "-l", "app in (x,y)", "-o", "name"]).lines().count(), 2);
    let yaml = s.ok(&["get", "configmap", "settings", "-o", "yaml"]);
    assert!(yaml.contains("mode: fast"), "{yaml}");
    let err = s.fails(&["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(err.contains("field label not supported"), "{err}");
}

#[test]
fn label_annotate_patch_replace_and_scale() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    s.ok(&["label", "configmap", "settings", "tier=backend"]);
    s.ok(&["annotate", "configmap", "settings", "owner=team-a"]);
    let v = s.json(&["get", "configmap", "settings"]);
    assert_eq!(v["metadata"]["labels"]["tier"], "backend");
    assert_eq!(v["metadata"]["annotations"]["owner"], "team-a");
    s.ok(&["label", "configmap", "settings", "tier-"]);
    assert!(s.json(&["get", "configmap", "settings"])["metadata"]["labels"].get("tier").is_none());

    s.ok(&["patch", "configmap", "settings", "--type=merge", "-p", r#"{"data":{"extra":"1"}}"#]);
    s.ok(&["patch", "configmap", "settings", "--type=json", "-p", r#"[{"op":"replace","path":"/data/mode","value":"slow"}]"#]);
    s.ok(&["patch", "deployment", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.28"}]}}}}"#]);
    let v = s.json(&["get", "configmap", "settings"]);
    assert_eq!(v["data"], serde_json::json!({"mode": "slow", "extra": "1"}));
    let d = s.json(&["get", "deployment", "web"]);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2, "strategic patch kept the env list");

    let mut cm = v.clone();
    cm["data"]["mode"] = serde_json::json!("replaced");
    s.ok_stdin(&["replace", "-f", "-"], &cm.to_string());
    assert_eq!(s.json(&["get", "configmap", "settings"])["data"]["mode"], "replaced");
    // A stale resourceVersion conflicts.
    let err = s.fails_stdin(&["replace", "-f", "-"], &cm.to_string());
    assert!(err.contains("the object has been modified"), "{err}");

    s.ok(&["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(s.json(&["get", "deployment", "web"])["spec"]["replicas"], 5);
}

#[test]
fn describe_shows_the_object() {
    let s = TestServer::start();
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let out = s.ok(&["describe", "deployment", "web"]);
    assert!(out.contains("Name:") && out.contains("web"), "{out}");
    assert!(out.contains("nginx:1.27"), "{out}");
    let out = s.ok(&["describe", "configmap", "settings"]);
    assert!(out.contains("mode"), "{out}");
}

#[test]
fn bad_manifests_get_kubectl_errors_and_store_nothing() {
    let s = TestServer::start();
    // Unknown field: strict validation (kubectl's default).
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  a: b\nbogus: 1\n";
    let err = s.fails_stdin(&["apply", "-f", "-"], bad);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    // Invalid name.
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    let err = s.fails_stdin(&["create", "-f", "-"], bad);
    assert!(err.contains("is invalid") && err.contains("metadata.name"), "{err}");
    // Missing required field.
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nocontainers\nspec:\n  containers: []\n";
    let err = s.fails_stdin(&["create", "-f", "-"], bad);
    assert!(err.contains("spec.containers"), "{err}");
    // Namespace that does not exist.
    let err = s.fails(&["create", "configmap", "x", "-n", "nope"]);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
    let out = s.ok(&["get", "configmaps,pods", "-A", "-o", "name"]);
    assert!(!out.contains("bad") && !out.contains("nocontainers"), "{out}");
}

#[test]
fn delete_waits_for_finalizers_and_honours_cascade() {
    let s = TestServer::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n";
    s.ok_stdin(&["create", "-f", "-"], cm);
    s.ok(&["delete", "configmap", "held", "--wait=false"]);
    let v = s.json(&["get", "configmap", "held"]);
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "deletion is pending while the finalizer remains");
    s.ok(&["patch", "configmap", "held", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
    s.eventually("configmap to go", Duration::from_secs(10), || !s.kubectl(&["get", "configmap", "held"]).status.success());

    // Orphan: the dependent survives without its owner reference.
    s.ok_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owner\n");
    let uid = s.json(&["get", "configmap", "owner"])["metadata"]["uid"].as_str().unwrap().to_string();
    let dep = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner\n    uid: {uid}\n");
    s.ok_stdin(&["create", "-f", "-"], &dep);
    s.ok(&["delete", "configmap", "owner", "--cascade=orphan"]);
    s.eventually("orphaned dependent to lose its owner", Duration::from_secs(10), || {
        let v = s.json(&["get", "configmap", "dependent"]);
        v["metadata"].get("ownerReferences").is_none()
    });

    // Background: the dependent is collected after its owner goes.
    s.ok_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owner2\n");
    let uid = s.json(&["get", "configmap", "owner2"])["metadata"]["uid"].as_str().unwrap().to_string();
    let dep = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent2\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner2\n    uid: {uid}\n");
    s.ok_stdin(&["create", "-f", "-"], &dep);
    s.ok(&["delete", "configmap", "owner2"]);
    s.eventually("dependent to be collected", Duration::from_secs(10), || !s.kubectl(&["get", "configmap", "dependent2"]).status.success());
}

#[test]
fn deleting_a_namespace_deletes_its_contents_then_itself() {
    let s = TestServer::start();
    s.ok(&["create", "namespace", "team-a"]);
    s.ok(&["create", "configmap", "c1", "-n", "team-a"]);
    s.ok(&["delete", "namespace", "team-a", "--wait=true", "--timeout=20s"]);
    assert!(!s.kubectl(&["get", "namespace", "team-a"]).status.success());
    assert!(!s.kubectl(&["get", "configmap", "c1", "-n", "team-a"]).status.success());
}

#[test]
fn explain_reads_the_openapi_documents() {
    let s = TestServer::start();
    let out = s.ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("rollingUpdate"), "{out}");
    let out = s.ok(&["explain", "pods.spec.containers.image"]);
    assert!(out.contains("FIELD: image"), "{out}");
}

#[test]
fn get_watch_prints_changes() {
    let s = TestServer::start();
    s.ok(&["create", "configmap", "watched"]);
    let mut child = s
        .kubectl_command(&["get", "configmaps", "-w", "--request-timeout=8s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    s.ok(&["label", "configmap", "watched", "x=y"]);
    s.ok(&["create", "configmap", "second"]);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap_or("").contains("NAME"), "{text}");
    assert!(text.matches("watched").count() >= 2, "initial row and the change: {text}");
    assert!(text.contains("second"), "{text}");
}

#[test]
fn objects_survive_a_kill_9_and_restart() {
    let s = TestServer::start();
    for i in 0..20 {
        s.ok(&["create", "configmap", &format!("keep-{i}"), "--from-literal=i=1"]);
    }
    let before = s.json(&["get", "configmap", "keep-19"]);
    let dir = s.kill();
    let s = TestServer::start_in(dir);
    let names = s.ok(&["get", "configmaps", "-o", "name"]);
    for i in 0..20 {
        assert!(names.contains(&format!("configmap/keep-{i}\n")), "keep-{i} lost:\n{names}");
    }
    let after = s.json(&["get", "configmap", "keep-19"]);
    assert_eq!(before["metadata"]["uid"], after["metadata"]["uid"]);
    assert_eq!(before["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"]);
    // The same credentials still work, and new writes get newer versions.
    s.ok(&["create", "configmap", "later"]);
    let later = s.json(&["get", "configmap", "later"]);
    let rv = |v: &serde_json::Value| v["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap();
    assert!(rv(&later) > rv(&after));
}
