//! `skiff datastore migrate`: a cluster built on SQLite with kubectl, moved into a
//! real etcd, served again from there.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use skiff_store::LocalEtcd;
use support::TestServer;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: web}
---
apiVersion: v1
kind: Namespace
metadata:
  name: billing
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: shop}
  annotations: {note: "kept across the move"}
data:
  mode: fast
  limits.yaml: |
    cpu: 2
    memory: 1Gi
---
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: billing
type: Opaque
stringData:
  password: s3cr3t
  user: billing
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        ports:
        - {containerPort: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: ledger
  namespace: billing
spec:
  type: NodePort
  selector: {app: ledger}
  ports:
  - {port: 8443, targetPort: 8443}
"#;

/// Resources whose objects are compared before and after the move.
const KINDS: &str = "namespaces,configmaps,secrets,deployments,services,serviceaccounts";

/// What must survive a move, per `kind/namespace/name`: identity, content and
/// allocated addresses (not the resourceVersion, which the move renews, nor what
/// controllers may still be changing: status, and annotations of workloads).
fn fingerprint(items: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for item in items["items"].as_array().expect("a list") {
        let meta = &item["metadata"];
        let kind = item["kind"].as_str().unwrap();
        let key = format!("{kind}/{}/{}", meta["namespace"].as_str().unwrap_or(""), meta["name"].as_str().unwrap());
        let annotations = if kind == "Deployment" { Value::Null } else { meta["annotations"].clone() };
        let kept = serde_json::json!({
            "uid": meta["uid"],
            "creationTimestamp": meta["creationTimestamp"],
            "labels": meta["labels"],
            "annotations": annotations,
            "data": item["data"],
            "spec": item["spec"],
        });
        out.insert(key, kept);
    }
    out
}

fn skiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .env("SKIFF_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running skiff")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// kubectl with the given kubeconfig, pointed at `server` (the kubeconfig's own
/// address is the old server's).
fn kubectl_as(kubeconfig: &Path, home: &Path, server: &str, args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .arg(format!("--server=https://{server}"))
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl")
}

#[test]
fn a_sqlite_cluster_moves_to_etcd_with_its_objects_and_credentials() {
    let etcd = LocalEtcd::start(1).expect("starting etcd");
    let target = format!("{}/migrated", etcd.url());

    // --- A cluster on SQLite, with a varied set of objects. ---
    let old = TestServer::start();
    old.ok_stdin(&["apply", "-f", "-"], OBJECTS);
    old.ok(&["create", "configmap", "tuning", "-n", "shop", "--from-literal=workers=8"]);
    old.ok(&["label", "configmap", "tuning", "-n", "shop", "tier=backend"]);
    old.ok(&["create", "configmap", "doomed", "-n", "billing", "--from-literal=x=1"]);
    old.ok(&["delete", "configmap", "doomed", "-n", "billing"]);
    let before = fingerprint(&old.json(&["get", KINDS, "-A"]));
    for key in ["Namespace//shop", "ConfigMap/shop/settings", "ConfigMap/shop/tuning", "Secret/billing/db", "Deployment/shop/web", "Service/shop/web", "Service/billing/ledger", "Service/default/kubernetes"] {
        assert!(before.contains_key(key), "{key} missing before the move: {:?}", before.keys().collect::<Vec<_>>());
    }
    assert!(!before.contains_key("ConfigMap/billing/doomed"));
    let web_ip = before["Service/shop/web"]["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(web_ip.starts_with("10."), "{web_ip}");
    // The newest resourceVersion a client could remember from the old cluster.
    let old_rv = old.json(&["get", "configmap", "tuning", "-n", "shop"])["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let old_ca = old.ca();
    let old_kubeconfig = old.kubeconfig();
    let old_dir = old.kill();

    // --- The move. ---
    let from = format!("sqlite:{}", old_dir.path().display());
    let out = skiff(&["datastore", "migrate", "--from", &from, "--to", &target]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "migrate failed:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("copied ") && stderr.contains(" keys"), "progress lines on stderr: {stderr}");
    assert!(stdout.contains("migrated ") && stdout.contains("old revision") && stdout.contains("new revision"), "{stdout}");
    assert!(stdout.contains(&format!("next: skiff server --datastore {target}")), "{stdout}");

    // --- A server on etcd, in a fresh data directory. ---
    let new = TestServer::start_with(tempfile::tempdir().unwrap(), &["--datastore", &target]);
    let after = fingerprint(&new.json(&["get", KINDS, "-A"]));
    for (key, was) in &before {
        assert_eq!(after.get(key), Some(was), "{key} changed in the move");
    }
    assert_eq!(after["Service/shop/web"]["spec"]["clusterIP"], web_ip.as_str());
    let secret = new.json(&["get", "secret", "db", "-n", "billing"]);
    assert_eq!(secret["data"]["password"], "czNjcjN0", "base64 of s3cr3t");

    // New writes work, and the cluster IP allocator knows the copied Services.
    new.ok(&["create", "configmap", "fresh", "-n", "shop", "--from-literal=a=b"]);
    new.ok(&["label", "configmap", "settings", "-n", "shop", "moved=yes"]);
    new.ok(&["delete", "configmap", "tuning", "-n", "shop"]);
    new.ok(&["create", "service", "clusterip", "api", "-n", "shop", "--tcp=8080:8080"]);
    let ips: Vec<String> = new.json(&["get", "services", "-A"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ips.len(), "no cluster IP handed out twice: {ips:?}");
    assert_eq!(new.json(&["get", "configmap", "settings", "-n", "shop"])["metadata"]["labels"]["moved"], "yes");

    // --- Old resourceVersions are gone: a resumed watch must relist. ---
    let watch = new.kubectl(&["get", "--raw", &format!("/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion={old_rv}&timeoutSeconds=3")]);
    let (wout, werr) = text(&watch);
    let gone = if watch.status.success() {
        let first: Value = serde_json::from_str(wout.lines().next().unwrap_or("{}")).unwrap_or_default();
        first["type"] == "ERROR" && first["object"]["code"] == 410
    } else {
        werr.contains("Expired") || werr.contains("Gone") || werr.contains("410")
    };
    assert!(gone, "a watch from resourceVersion {old_rv} (before the move) must get 410:\nstdout: {wout}\nstderr: {werr}");

    // --- The old kubeconfig's CA and token are the cluster's: they work on the new server. ---
    let pem = |b: Vec<u8>| String::from_utf8(b).unwrap().trim().to_string();
    assert_eq!(pem(new.ca()), pem(old_ca), "the CA came along in the datastore");
    let out = kubectl_as(&old_kubeconfig, old_dir.path(), &new.addr, &["get", "configmap", "fresh", "-n", "shop", "-o", "name"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.trim() == "configmap/fresh", "old kubeconfig against the new server:\n{stdout}\n{stderr}");

    // --- A second move into the same, now non-empty prefix is refused. ---
    let out = skiff(&["datastore", "migrate", "--from", &from, "--to", &target]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "a second migrate into a non-empty prefix must fail:\n{stdout}");
    assert!(stderr.contains("already holds") && stderr.contains("under the prefix /migrated"), "{stderr}");
    assert!(stderr.contains("etcdctl"), "says how to clear it: {stderr}");
    // And it wrote nothing: the object deleted above stays deleted.
    assert!(new.fails(&["get", "configmap", "tuning", "-n", "shop"]).contains("NotFound"));
}

#[test]
fn migrate_refuses_a_directory_without_a_datastore() {
    let empty = tempfile::tempdir().unwrap();
    let out = skiff(&["datastore", "migrate", "--from", &format!("sqlite:{}", empty.path().display()), "--to", "etcd://127.0.0.1:1"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("has no state.db"), "{stderr}");
    assert!(!empty.path().join("state.db").exists(), "no empty database is created");
}
