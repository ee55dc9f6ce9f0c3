//! HTTP-level API semantics that kubectl does not show directly: watch resumption,
//! 410 Gone, bookmarks, pagination, Status errors for bad input, and body limits.

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::TestServer;

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(s: &TestServer) -> Api {
        Api { http: s.https().build().unwrap(), base: s.url(), token: s.token() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, v: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, "application/json", serde_json::to_vec(v).unwrap()).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, "application/json", vec![]).await
    }

    /// Reads watch events until `n` arrive or the timeout passes.
    async fn watch(&self, path: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let r = self.http.get(format!("{}{}", self.base, path)).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let mut stream = r.bytes_stream();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(timeout, async {
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk.unwrap());
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    out.push(serde_json::from_slice::<Value>(&line).unwrap());
                    if out.len() >= n {
                        return;
                    }
                }
            }
        })
        .await;
        out
    }
}

fn cm(name: &str, v: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": v}})
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_resumes_from_a_resource_version_without_loss_or_duplicates() {
    let s = TestServer::start();
    let api = Api::new(&s);
    // The server publishes kube-root-ca.crt in every namespace: wait for it, so
    // the watch sees only this test's ConfigMaps.
    root_ca_published(&api).await;
    let (_, first) = api.post("/api/v1/namespaces/default/configmaps", &cm("w0", "0")).await;
    let rv0 = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    for i in 1..=5 {
        let (code, _) = api.post("/api/v1/namespaces/default/configmaps", &cm(&format!("w{i}"), "x")).await;
        assert_eq!(code, 201);
    }
    let events = api.watch(&format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv0}"), 5, Duration::from_secs(5)).await;
    let names: Vec<&str> = events.iter().map(|e| e["object"]["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["w1", "w2", "w3", "w4", "w5"]);
    assert!(events.iter().all(|e| e["type"] == "ADDED"));
    // Resource versions strictly increase.
    let rvs: Vec<i64> = events.iter().map(|e| e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");
    // Resuming from the third event's version yields exactly the rest.
    let from = rvs[2];
    let rest = api.watch(&format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={from}"), 2, Duration::from_secs(5)).await;
    let names: Vec<&str> = rest.iter().map(|e| e["object"]["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["w4", "w5"]);
}

/// Waits until the server has published `kube-root-ca.crt` in `default` (every
/// namespace gets it), so that lists and watches of ConfigMaps there are stable.
async fn root_ca_published(api: &Api) {
    for _ in 0..100 {
        if api.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kube-root-ca.crt was not published in default");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_without_resource_version_starts_with_the_current_state_then_follows_changes() {
    let s = TestServer::start();
    let api = Api::new(&s);
    root_ca_published(&api).await;
    api.post("/api/v1/namespaces/default/configmaps", &cm("a", "1")).await;
    let watcher = {
        let http = api.http.clone();
        let url = format!("{}/api/v1/namespaces/default/configmaps?watch=true&labelSelector=", api.base);
        let token = api.token.clone();
        tokio::spawn(async move {
            let a = Api { http, base: String::new(), token };
            a.watch(&url, 4, Duration::from_secs(6)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _) = api
        .send(reqwest::Method::PATCH, "/api/v1/namespaces/default/configmaps/a", "application/merge-patch+json", br#"{"data":{"v":"2"}}"#.to_vec())
        .await;
    assert_eq!(code, 200);
    let (code, _) = api.send(reqwest::Method::DELETE, "/api/v1/namespaces/default/configmaps/a", "application/json", vec![]).await;
    assert_eq!(code, 200);
    let events = watcher.await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(events[2]["object"]["data"]["v"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn label_selector_watches_see_objects_enter_and_leave() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let (_, c) = api.post("/api/v1/namespaces/default/configmaps", &cm("sel", "1")).await;
    let rv = c["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    for patch in [r#"{"metadata":{"labels":{"team":"a"}}}"#, r#"{"metadata":{"labels":{"team":"b"}}}"#] {
        api.send(reqwest::Method::PATCH, "/api/v1/namespaces/default/configmaps/sel", "application/merge-patch+json", patch.as_bytes().to_vec()).await;
    }
    let events = api.watch(&format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&labelSelector=team%3Da"), 2, Duration::from_secs(5)).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "DELETED"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_a_version_older_than_the_cache_history_gets_410_gone() {
    let s = TestServer::start_with(tempfile::tempdir().unwrap(), &["--watch-cache-size", "5"]);
    let api = Api::new(&s);
    let (_, first) = api.post("/api/v1/namespaces/default/configmaps", &cm("old", "0")).await;
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    for i in 0..10 {
        api.post("/api/v1/namespaces/default/configmaps", &cm(&format!("n{i}"), "x")).await;
    }
    let events = api.watch(&format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"), 1, Duration::from_secs(5)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_token_get_401() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let r = api.http.get(format!("{}/api/v1/namespaces", api.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = api.http.get(format!("{}/api/v1/namespaces", api.base)).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["reason"], "Unauthorized");
    let r = api.http.get(format!("{}/readyz", api.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "health endpoints stay open");
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_paginate_with_limit_and_continue() {
    let s = TestServer::start();
    let api = Api::new(&s);
    root_ca_published(&api).await;
    for i in 0..7 {
        api.post("/api/v1/namespaces/default/configmaps", &cm(&format!("p{i}"), "x")).await;
    }
    let mut names = Vec::new();
    let mut path = "/api/v1/namespaces/default/configmaps?limit=3".to_string();
    let mut pages = 0;
    let mut first_rv = None;
    loop {
        let (code, list) = api.get(&path).await;
        assert_eq!(code, 200, "{list}");
        pages += 1;
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        assert_eq!(first_rv.get_or_insert(rv.clone()), &rv, "every page is read at the first page's version");
        // Writes between pages do not show up in a continued list.
        api.post("/api/v1/namespaces/default/configmaps", &cm(&format!("zz-late-{pages}"), "x")).await;
        for i in list["items"].as_array().unwrap() {
            names.push(i["metadata"]["name"].as_str().unwrap().to_string());
        }
        match list["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => path = format!("/api/v1/namespaces/default/configmaps?limit=3&continue={c}"),
            _ => break,
        }
    }
    let expected: Vec<String> = std::iter::once("kube-root-ca.crt".to_string()).chain((0..7).map(|i| format!("p{i}"))).collect();
    assert_eq!(names, expected);
    assert_eq!(pages, 3);
    let (code, e) = api.get("/api/v1/namespaces/default/configmaps?limit=3&continue=garbage").await;
    assert_eq!(code, 400, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_status_errors_and_persists_nothing() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let (code, st) = api.send(reqwest::Method::POST, "/api/v1/namespaces/default/configmaps", "application/json", b"{not json".to_vec()).await;
    assert_eq!((code, st["kind"].as_str(), st["reason"].as_str()), (400, Some("Status"), Some("BadRequest")));
    let (code, st) = api.post("/api/v1/namespaces/default/configmaps", &json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}})).await;
    assert_eq!(code, 400, "{st}");
    let (code, st) = api.post("/api/v1/namespaces/default/configmaps", &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})).await;
    assert_eq!(code, 400, "{st}");
    let (code, st) = api.post("/api/v1/namespaces/default/configmaps", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}})).await;
    assert_eq!(code, 400, "{st}");
    let (code, st) = api.get("/api/v1/widgets").await;
    assert_eq!((code, st["kind"].as_str()), (404, Some("Status")));
    let (code, st) = api.get("/apis/apps/v1/namespaces/default/deployments/missing").await;
    assert_eq!((code, st["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(st["message"], "deployments.apps \"missing\" not found");
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "a".repeat(4 * 1024 * 1024)}});
    let (code, _) = api.post("/api/v1/namespaces/default/configmaps", &big).await;
    assert_eq!(code, 413);
    let (code, st) = api.post("/api/v1/namespaces/default/configmaps", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"bad key!": "v"}})).await;
    assert_eq!((code, st["reason"].as_str()), (422, Some("Invalid")), "{st}");
    assert!(st["details"]["causes"][0]["field"].as_str().unwrap().starts_with("data"), "{st}");
    let (code, list) = api.get("/api/v1/namespaces/default/configmaps").await;
    assert_eq!(code, 200);
    assert!(list["items"].as_array().unwrap().iter().all(|i| i["metadata"]["name"] != "x" && i["metadata"]["name"] != "big"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn optimistic_concurrency_returns_409_conflict_status() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let (_, created) = api.post("/api/v1/namespaces/default/configmaps", &cm("occ", "1")).await;
    let mut stale = created.clone();
    let (code, _) = api
        .send(reqwest::Method::PATCH, "/api/v1/namespaces/default/configmaps/occ", "application/merge-patch+json", br#"{"data":{"v":"2"}}"#.to_vec())
        .await;
    assert_eq!(code, 200);
    stale["data"]["v"] = json!("3");
    let (code, st) = api.send(reqwest::Method::PUT, "/api/v1/namespaces/default/configmaps/occ", "application/json", serde_json::to_vec(&stale).unwrap()).await;
    assert_eq!((code, st["reason"].as_str()), (409, Some("Conflict")), "{st}");
    assert!(st["message"].as_str().unwrap().contains("the object has been modified"));
}

#[tokio::test(flavor = "multi_thread")]
async fn generation_moves_only_on_spec_changes() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "g"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (code, created) = api.post("/apis/apps/v1/namespaces/default/deployments", &d).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["creationTimestamp"].is_string());
    let (_, labelled) = api
        .send(reqwest::Method::PATCH, "/apis/apps/v1/namespaces/default/deployments/g", "application/merge-patch+json", br#"{"metadata":{"labels":{"x":"y"}}}"#.to_vec())
        .await;
    assert_eq!(labelled["metadata"]["generation"], 1);
    let (_, scaled) = api
        .send(reqwest::Method::PATCH, "/apis/apps/v1/namespaces/default/deployments/g", "application/merge-patch+json", br#"{"spec":{"replicas":4}}"#.to_vec())
        .await;
    assert_eq!(scaled["metadata"]["generation"], 2);
    // Status writes through the main resource are ignored; through /status they land.
    let (_, st) = api
        .send(reqwest::Method::PATCH, "/apis/apps/v1/namespaces/default/deployments/g", "application/merge-patch+json", br#"{"status":{"replicas":9}}"#.to_vec())
        .await;
    assert!(st["status"].get("replicas").is_none(), "{st}");
    let (code, st) = api
        .send(reqwest::Method::PATCH, "/apis/apps/v1/namespaces/default/deployments/g/status", "application/merge-patch+json", br#"{"status":{"replicas":9}}"#.to_vec())
        .await;
    assert_eq!(code, 200);
    assert_eq!(st["status"]["replicas"], 9);
    assert_eq!(st["metadata"]["generation"], 2);
    let (code, scale) = api.get("/apis/apps/v1/namespaces/default/deployments/g/scale").await;
    assert_eq!((code, scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (200, Some("Scale"), Some(4)));
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_name_and_table_output() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let (code, c) = api.post("/api/v1/namespaces/default/configmaps", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}})).await;
    assert_eq!(code, 201);
    let name = c["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let r = api
        .http
        .get(format!("{}/api/v1/namespaces/default/configmaps", api.base))
        .bearer_auth(&api.token)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    assert!(t["rows"].as_array().unwrap().iter().any(|r| r["cells"][0] == name));
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_are_deleted_gracefully_once_bound_to_a_node() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    api.post("/api/v1/namespaces/default/pods", &pod).await;
    let (code, st) = api.post("/api/v1/namespaces/default/pods/p/binding", &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}})).await;
    assert_eq!(code, 201, "{st}");
    let (_, p) = api.get("/api/v1/namespaces/default/pods/p").await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    let (code, p) = api.send(reqwest::Method::DELETE, "/api/v1/namespaces/default/pods/p", "application/json", vec![]).await;
    assert_eq!(code, 200);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, _) = api.get("/api/v1/namespaces/default/pods/p").await;
    assert_eq!(code, 200, "a bound pod waits for its node");
    let (code, _) = api.send(reqwest::Method::DELETE, "/api/v1/namespaces/default/pods/p", "application/json", br#"{"gracePeriodSeconds":0}"#.to_vec()).await;
    assert_eq!(code, 200);
    let (code, _) = api.get("/api/v1/namespaces/default/pods/p").await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_written_through_events_k8s_io_are_visible_as_core_events() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "ev1"},
        "regarding": {"kind": "Pod", "namespace": "default", "name": "web-1"}, "note": "Pulled image", "reason": "Pulled",
        "type": "Normal", "action": "Pull", "reportingController": "skiff/agent", "reportingInstance": "node-1",
        "eventTime": "2026-01-01T00:00:00.000000Z"});
    let (code, created) = api.post("/apis/events.k8s.io/v1/namespaces/default/events", &e).await;
    assert_eq!(code, 201, "{created}");
    let (code, core) = api.get("/api/v1/namespaces/default/events/ev1").await;
    assert_eq!(code, 200);
    assert_eq!(core["involvedObject"]["name"], "web-1");
    assert_eq!(core["message"], "Pulled image");
    let (_, list) = api.get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb-1").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (_, again) = api.get("/apis/events.k8s.io/v1/namespaces/default/events/ev1").await;
    assert_eq!(again["note"], "Pulled image");
    assert_eq!(again["apiVersion"], "events.k8s.io/v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_over_the_datastore_limit_get_a_clear_413() {
    let s = TestServer::start();
    let api = Api::new(&s);
    // Under the 3 MiB body limit, over the 1.5 MiB value limit of the datastore.
    // ControllerRevision data has no size rule of its own, so the datastore decides.
    let big = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "big"}, "revision": 1, "data": {"x": "a".repeat(2 * 1024 * 1024)}});
    let (code, st) = api.post("/apis/apps/v1/namespaces/default/controllerrevisions", &big).await;
    assert_eq!(code, 413, "{st}");
    assert!(st["message"].as_str().unwrap().contains("datastore"), "{st}");
    let (code, _) = api.get("/apis/apps/v1/namespaces/default/controllerrevisions/big").await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_list_sends_initial_events_then_a_bookmark() {
    let s = TestServer::start();
    let api = Api::new(&s);
    root_ca_published(&api).await;
    api.post("/api/v1/namespaces/default/configmaps", &cm("one", "1")).await;
    api.post("/api/v1/namespaces/default/configmaps", &cm("two", "2")).await;
    let events = api
        .watch(
            "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            4,
            Duration::from_secs(5),
        )
        .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "ADDED", "ADDED", "BOOKMARK"]);
    assert_eq!(events[3]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(events[3]["object"]["kind"], "ConfigMap");
}

#[tokio::test(flavor = "multi_thread")]
async fn services_get_cluster_ips_and_node_ports_that_survive_replace() {
    let s = TestServer::start();
    let api = Api::new(&s);
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let (code, created) = api.post("/api/v1/namespaces/default/services", &svc).await;
    assert_eq!(code, 201, "{created}");
    let ip = created["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10."), "{ip}");
    assert_eq!(created["spec"]["clusterIPs"], json!([ip]));
    let node_port = created["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port));
    // A second service never gets the same address.
    let mut other = svc.clone();
    other["metadata"]["name"] = json!("web2");
    let (_, second) = api.post("/api/v1/namespaces/default/services", &other).await;
    assert_ne!(second["spec"]["clusterIP"], created["spec"]["clusterIP"]);
    assert_ne!(second["spec"]["ports"][0]["nodePort"], created["spec"]["ports"][0]["nodePort"]);
    // Replacing with the original manifest (no IP, no node port) keeps both.
    let mut replaced = svc.clone();
    replaced["spec"]["selector"] = json!({"app": "web", "v": "2"});
    let (code, after) = api.send(reqwest::Method::PUT, "/api/v1/namespaces/default/services/web", "application/json", serde_json::to_vec(&replaced).unwrap()).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["spec"]["clusterIP"], json!(ip));
    assert_eq!(after["spec"]["ports"][0]["nodePort"], json!(node_port));
    // A cluster IP already in use is refused.
    let mut clash = svc.clone();
    clash["metadata"]["name"] = json!("clash");
    clash["spec"]["clusterIP"] = json!(ip);
    let (code, st) = api.post("/api/v1/namespaces/default/services", &clash).await;
    assert_eq!(code, 422, "{st}");
}
