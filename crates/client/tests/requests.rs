//! Requests, failover, kubeconfigs and watches against a real in-process server.

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_client::{Client, ClientConfig, Error, PatchType, WatchEvent};
use support::{closed_url, Answer, FakeServer, Relay, Silent, TestServer};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[tokio::test]
async fn configmaps_make_the_round_trip_through_every_verb() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let path = format!("{CONFIGMAPS}/round-trip");

    let created = client.create(CONFIGMAPS, &configmap("round-trip", json!({"a": "1"}))).await.unwrap();
    assert_eq!(created["data"]["a"], "1");
    let stale = created.clone();

    let mut got = client.get(&path).await.unwrap();
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    got["data"]["a"] = json!("2");
    let updated = client.update(&path, &got).await.unwrap();
    assert_eq!(updated["data"]["a"], "2");
    assert_ne!(updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);

    let mut stale = stale;
    stale["data"]["a"] = json!("lost");
    let err = client.update(&path, &stale).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(err.reason(), Some("Conflict"));

    let merged = client.patch(&path, PatchType::Merge, &json!({"data": {"b": "merge"}})).await.unwrap();
    assert_eq!(merged["data"], json!({"a": "2", "b": "merge"}));
    let strategic = client.patch(&path, PatchType::StrategicMerge, &json!({"data": {"c": "strategic"}})).await.unwrap();
    assert_eq!(strategic["data"]["c"], "strategic");
    let patched = client.patch(&path, PatchType::Json, &json!([{"op": "replace", "path": "/data/a", "value": "json"}])).await.unwrap();
    assert_eq!(patched["data"]["a"], "json");
    let applied = client
        .patch(&format!("{path}?fieldManager=client-test&force=true"), PatchType::Apply, &configmap("round-trip", json!({"d": "apply"})))
        .await
        .unwrap();
    assert_eq!(applied["data"]["d"], "apply");
    assert_eq!(applied["data"]["b"], "merge");

    client.delete(&path).await.unwrap();
    let err = client.get(&path).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let Error::Api { code, reason, status, .. } = &err else { panic!("{err:?}") };
    assert_eq!((*code, reason.as_str()), (404, "NotFound"));
    assert_eq!(status["kind"], "Status");
}

#[tokio::test]
async fn creating_an_existing_object_is_a_conflict_with_its_reason() {
    let ts = TestServer::start().await;
    let client = ts.client();
    client.create(CONFIGMAPS, &configmap("twice", json!({}))).await.unwrap();
    let err = client.create(CONFIGMAPS, &configmap("twice", json!({}))).await.unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(err.reason(), Some("AlreadyExists"));
}

#[tokio::test]
async fn a_closed_port_is_skipped_and_the_server_that_answered_is_kept() {
    let ts = TestServer::start().await;
    let client = Client::new(ts.config(vec![closed_url(), ts.url()])).unwrap();
    assert_eq!(client.current_server(), client.servers()[0]);

    let ns = client.get("/api/v1/namespaces/default").await.unwrap();
    assert_eq!(ns["metadata"]["name"], "default");
    assert_eq!(client.current_server(), ts.url());

    // Writes fail over too when the connection could not be made.
    let fresh = Client::new(ts.config(vec![closed_url(), ts.url()])).unwrap();
    fresh.create(CONFIGMAPS, &configmap("via-second", json!({}))).await.unwrap();
    assert_eq!(fresh.current_server(), ts.url());

    // Clones share the choice.
    let clone = client.clone();
    assert_eq!(clone.current_server(), ts.url());
}

#[tokio::test]
async fn when_every_server_is_down_the_error_names_each_of_them() {
    let (a, b) = (closed_url(), closed_url());
    let ts = TestServer::start().await;
    let client = Client::new(ts.config(vec![a.clone(), b.clone()])).unwrap();
    let err = client.get("/api/v1/namespaces").await.unwrap_err();
    let Error::Unreachable(text) = &err else { panic!("{err:?}") };
    assert!(text.contains(&a) && text.contains(&b), "{text}");
    assert!(err.code().is_none());
    let err = client.create(CONFIGMAPS, &configmap("nowhere", json!({}))).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
    let err = client.watch(CONFIGMAPS).await.err().expect("watch fails");
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn a_server_answering_503_is_skipped_for_reads_but_not_for_writes() {
    let ts = TestServer::start().await;
    let down = FakeServer::start(&ts.dir.path().join("data"), Answer::Unavailable).await;
    let client = Client::new(ts.config(vec![down.url(), ts.url()])).unwrap();

    client.get("/api/v1/namespaces/default").await.unwrap();
    assert_eq!(client.current_server(), ts.url());
    assert_eq!(down.requests(), 1);

    // A write to a server that answered 503 may have been applied there: it is
    // not sent again elsewhere.
    let writer = Client::new(ts.config(vec![down.url(), ts.url()])).unwrap();
    let err = writer.create(CONFIGMAPS, &configmap("maybe", json!({}))).await.unwrap_err();
    assert_eq!(err.code(), Some(503));
    assert_eq!(err.reason(), Some("ServiceUnavailable"));
    assert!(client.get(&format!("{CONFIGMAPS}/maybe")).await.unwrap_err().is_not_found());

    // Watches are reads.
    let watcher = Client::new(ts.config(vec![down.url(), ts.url()])).unwrap();
    let _events = watcher.watch(CONFIGMAPS).await.unwrap();
    assert_eq!(watcher.current_server(), ts.url());

    // With nothing else to go to, the 503 is part of the unreachable error.
    let only_down = Client::new(ts.config(vec![down.url()])).unwrap();
    let err = only_down.get("/api/v1/namespaces").await.unwrap_err();
    let Error::Unreachable(text) = &err else { panic!("{err:?}") };
    assert!(text.contains("503") && text.contains("the datastore is unavailable"), "{text}");
}

#[tokio::test]
async fn servers_that_do_not_answer_in_time_are_skipped_for_every_verb() {
    let ts = TestServer::start().await;
    let hang = FakeServer::start(&ts.dir.path().join("data"), Answer::Hang).await;
    let silent = Silent::start().await;
    let timeout = Duration::from_millis(500);
    let client = |first: String| {
        let mut config = ts.config(vec![first, ts.url()]);
        config.timeout = timeout;
        Client::new(config).unwrap()
    };

    // Connected, but the TLS handshake never completes.
    let started = std::time::Instant::now();
    client(silent.url()).get("/api/v1/namespaces/default").await.unwrap();
    assert!(started.elapsed() >= timeout && started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // Connected and sent, but no answer.
    let reader = client(hang.url());
    let started = std::time::Instant::now();
    reader.get("/api/v1/namespaces/default").await.unwrap();
    assert!(started.elapsed() >= timeout && started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(reader.current_server(), ts.url());
    let writer = client(hang.url());
    writer.create(CONFIGMAPS, &configmap("after-timeout", json!({}))).await.unwrap();
    assert_eq!(writer.current_server(), ts.url());
    let watcher = client(hang.url());
    let _events = watcher.watch(CONFIGMAPS).await.unwrap();
    assert_eq!(watcher.current_server(), ts.url());
    assert_eq!(hang.requests(), 3);
}

#[tokio::test]
async fn the_kubeconfig_the_server_writes_gives_a_working_client() {
    let ts = TestServer::start().await;
    let config = ClientConfig::from_kubeconfig(&ts.server.kubeconfig).unwrap();
    assert_eq!(config.servers, vec![ts.url()]);
    assert!(config.ca_pem.contains("BEGIN CERTIFICATE"));
    assert!(!config.token.is_empty());
    let client = Client::new(config).unwrap();
    client.get("/api/v1/namespaces/default").await.unwrap();
}

#[tokio::test]
async fn a_kubeconfig_with_the_servers_extension_and_a_relative_ca_file_is_read() {
    let ts = TestServer::start().await;
    let own = ClientConfig::from_kubeconfig(&ts.server.kubeconfig).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/ca.crt"), &own.ca_pem).unwrap();
    let dead = closed_url();
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {dead}
    certificate-authority: certs/ca.crt
    extensions:
    - name: skiff.dev/servers
      extension:
        servers: [{dead}, {live}]
users:
- name: admin
  user:
    token: {token}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: admin
current-context: skiff
",
        live = ts.url(),
        token = own.token,
    );
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, yaml).unwrap();

    let config = ClientConfig::from_kubeconfig(&path).unwrap();
    assert_eq!(config.servers, vec![dead, ts.url()]);
    assert_eq!(config.ca_pem, own.ca_pem);
    let client = Client::new(config).unwrap();
    client.get("/api/v1/namespaces/default").await.unwrap();
    assert_eq!(client.current_server(), ts.url());
}

#[tokio::test]
async fn a_missing_kubeconfig_is_named_in_the_error() {
    let err = ClientConfig::from_kubeconfig(std::path::Path::new("/nonexistent/kubeconfig")).unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/kubeconfig"), "{err:#}");
}

async fn next_for(events: &mut skiff_client::WatchEvents, name: &str) -> WatchEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("an event within 5 s").expect("the stream is open").unwrap();
        if event.object["metadata"]["name"] == name {
            return event;
        }
    }
}

#[tokio::test]
async fn a_watch_sees_a_configmap_added_modified_and_deleted() {
    let ts = TestServer::start().await;
    // Through a failover, as agents will watch.
    let client = Client::new(ts.config(vec![closed_url(), ts.url()])).unwrap();
    let list = client.get(CONFIGMAPS).await.unwrap();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut events = client.watch(&format!("{CONFIGMAPS}?resourceVersion={rv}")).await.unwrap();

    let path = format!("{CONFIGMAPS}/watched");
    client.create(CONFIGMAPS, &configmap("watched", json!({"v": "1"}))).await.unwrap();
    client.patch(&path, PatchType::Merge, &json!({"data": {"v": "2"}})).await.unwrap();
    client.delete(&path).await.unwrap();

    let added = next_for(&mut events, "watched").await;
    assert_eq!((added.kind.as_str(), &added.object["data"]["v"]), ("ADDED", &json!("1")));
    let modified = next_for(&mut events, "watched").await;
    assert_eq!((modified.kind.as_str(), &modified.object["data"]["v"]), ("MODIFIED", &json!("2")));
    let deleted = next_for(&mut events, "watched").await;
    assert_eq!(deleted.kind, "DELETED");
}

#[tokio::test]
async fn a_watch_ends_when_the_server_closes_it() {
    let ts = TestServer::start().await;
    let client = ts.client();
    client.create(CONFIGMAPS, &configmap("existing", json!({}))).await.unwrap();
    // Without a resourceVersion the watch starts with the existing objects.
    let mut events = client.watch(&format!("{CONFIGMAPS}?timeoutSeconds=1")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.kind, "ADDED");
    assert_eq!(first.object["metadata"]["name"], "existing");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(item) = events.next().await {
            item.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends after timeoutSeconds");
}

#[tokio::test]
async fn a_watch_that_the_server_refuses_is_an_api_error() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let err = client.watch("/api/v1/namespaces/default/nosuchthings").await.err().expect("refused");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn a_watch_whose_connection_breaks_yields_an_error_and_ends() {
    let ts = TestServer::start().await;
    let relay = Relay::start(ts.server.addr).await;
    let client = Client::new(ts.config(vec![relay.url()])).unwrap();
    let mut events = client.watch(CONFIGMAPS).await.unwrap();
    ts.client().create(CONFIGMAPS, &configmap("before-the-break", json!({}))).await.unwrap();
    assert_eq!(next_for(&mut events, "before-the-break").await.kind, "ADDED");

    drop(relay);
    let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(5), events.collect()).await.expect("the stream ends");
    assert_eq!(rest.len(), 1, "{rest:?}");
    let err = rest.into_iter().next().unwrap().unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err:?}");
}
