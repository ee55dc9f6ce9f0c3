//! `Api<K>` and `Informer<K>` against a real in-process server.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use futures::StreamExt;
use serde_json::json;
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Api, Client, DeleteParams, Informer, InformerEvent, ListParams, PatchType};
use support::TestServer;
use tokio::sync::mpsc;

async fn start_with(settings: Settings) -> TestServer {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
    let config = Config::new(dir.path().join("data"), "127.0.0.1:0".parse().unwrap(), settings);
    let server = Server::start(config, store).await.expect("server starts");
    TestServer { server, dir }
}

async fn namespace(client: &Client, name: &str) {
    let ns = Namespace { metadata: meta(name), ..Default::default() };
    Api::<Namespace>::all(client).create(&ns).await.expect("namespace is created");
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

fn configmap(name: &str, v: &str) -> ConfigMap {
    ConfigMap { metadata: meta(name), data: Some(BTreeMap::from([("v".to_string(), v.to_string())])), ..Default::default() }
}

fn labelled(name: &str, v: &str, app: &str) -> ConfigMap {
    let mut cm = configmap(name, v);
    cm.metadata.labels = Some(BTreeMap::from([("app".to_string(), app.to_string())]));
    cm
}

fn value(cm: &ConfigMap) -> String {
    cm.data.as_ref().and_then(|d| d.get("v")).cloned().unwrap_or_default()
}

fn pod(name: &str) -> Pod {
    let container = Container { name: "c".into(), image: Some("busybox".into()), ..Default::default() };
    Pod { metadata: meta(name), spec: Some(PodSpec { containers: vec![container], ..Default::default() }), ..Default::default() }
}

// === Api ===

#[tokio::test]
async fn api_creates_gets_replaces_patches_and_deletes() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    assert_eq!(api.collection_path(), "/api/v1/namespaces/x/configmaps");

    let created = api.create(&configmap("a", "1")).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("x"));
    assert!(created.metadata.uid.is_some());
    let got = api.get("a").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert!(api.get_opt("missing").await.unwrap().is_none());
    assert!(api.get("missing").await.unwrap_err().is_not_found());
    assert_eq!(api.create(&configmap("a", "1")).await.unwrap_err().reason(), Some("AlreadyExists"));

    let mut changed = got.clone();
    changed.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
    let replaced = api.replace("a", &changed).await.unwrap();
    assert_eq!(value(&replaced), "2");
    // The stale copy's resourceVersion is a precondition that no longer holds.
    assert!(api.replace("a", &got).await.unwrap_err().is_conflict());

    let patched = api.patch("a", PatchType::Merge, &json!({"data": {"w": "merged"}})).await.unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["w"], "merged");
    assert_eq!(value(&patched), "2");

    let wrong_uid = DeleteParams { precondition_uid: Some("not-the-uid".into()), ..Default::default() };
    assert!(api.delete("a", &wrong_uid).await.unwrap_err().is_conflict());
    let stale_rv = DeleteParams { precondition_resource_version: created.metadata.resource_version.clone(), ..Default::default() };
    assert!(api.delete("a", &stale_rv).await.unwrap_err().is_conflict());
    let right_uid = DeleteParams { precondition_uid: created.metadata.uid.clone(), ..Default::default() };
    api.delete("a", &right_uid).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert!(api.delete("a", &DeleteParams::default()).await.unwrap_err().is_not_found());
}

#[tokio::test]
async fn lists_come_in_pages_and_honour_encoded_selectors() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    for (i, app) in ["a", "b", "c", "a", "b"].iter().enumerate() {
        api.create(&labelled(&format!("cm-{i}"), &i.to_string(), app)).await.unwrap();
    }

    let mut names = Vec::new();
    let mut params = ListParams { limit: Some(2), ..Default::default() };
    let mut pages = 0;
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(!page.resource_version.is_empty());
        assert!(page.items.len() <= 2);
        pages += 1;
        names.extend(page.items.into_iter().map(|cm| cm.metadata.name.unwrap()));
        match page.continue_token {
            Some(token) => params.continue_token = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, vec!["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);

    let selected = api.list(&ListParams { label_selector: Some("app in (a,b),app!=b".into()), ..Default::default() }).await.unwrap();
    let names: Vec<_> = selected.items.iter().map(|cm| cm.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, vec!["cm-0", "cm-3"]);
    let by_field = api.list(&ListParams { field_selector: Some("metadata.name=cm-2".into()), ..Default::default() }).await.unwrap();
    assert_eq!(by_field.items.len(), 1);
    assert_eq!(value(&by_field.items[0]), "2");

    // Across namespaces, and a cluster-scoped kind.
    let all = Api::<ConfigMap>::all(&client).list(&ListParams::default()).await.unwrap();
    assert!(all.items.iter().filter(|cm| cm.metadata.namespace.as_deref() == Some("x")).count() == 5);
    let namespaces = Api::<Namespace>::all(&client).list(&ListParams::default()).await.unwrap();
    assert!(namespaces.items.iter().any(|ns| ns.metadata.name.as_deref() == Some("x")));
}

#[tokio::test]
async fn the_status_subresource_changes_status_only() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<Pod> = Api::namespaced(&client, "x");
    api.create(&pod("p")).await.unwrap();

    let patched = api.patch_status("p", PatchType::Merge, &json!({"status": {"phase": "Running", "message": "patched"}})).await.unwrap();
    assert_eq!(patched.status.as_ref().unwrap().phase.as_deref(), Some("Running"));

    let mut next = patched.clone();
    next.status.as_mut().unwrap().message = Some("replaced".into());
    next.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    let replaced = api.replace_status("p", &next).await.unwrap();
    assert_eq!(replaced.status.as_ref().unwrap().message.as_deref(), Some("replaced"));
    assert_eq!(replaced.spec.as_ref().unwrap().active_deadline_seconds, None, "spec changes are ignored on status");
    assert_eq!(api.get("p").await.unwrap().status.unwrap().message.as_deref(), Some("replaced"));
}

#[tokio::test]
async fn binding_a_pod_sets_its_node_name() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<Pod> = Api::namespaced(&client, "x");
    api.create(&pod("p")).await.unwrap();
    assert_eq!(api.subresource_path("p", "binding"), "/api/v1/namespaces/x/pods/p/binding");

    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    let answer = api.create_subresource("p", "binding", &binding).await.unwrap();
    assert_eq!(answer["status"], "Success");
    let bound = api.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-1"));
    let scheduled = bound.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "PodScheduled").unwrap();
    assert_eq!(scheduled.status, "True");

    let again = api.create_subresource("p", "binding", &binding).await.unwrap_err();
    assert!(again.is_conflict(), "{again}");
}

// === Informer ===

/// What a handler saw, in a form tests can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Applied { name: String, old: Option<String>, new: String },
    Deleted { name: String, last: String },
}

/// The ConfigMap the server publishes in every namespace by itself.
const ROOT_CA: &str = "kube-root-ca.crt";

/// Records what the informer reports of the test's own ConfigMaps.
fn recorder(tx: mpsc::UnboundedSender<Seen>) -> skiff_client::informer::Handler<ConfigMap> {
    Arc::new(move |event: &InformerEvent<ConfigMap>| {
        let name = match event {
            InformerEvent::Applied { new, .. } => new.metadata.name.as_deref(),
            InformerEvent::Deleted(obj) => obj.metadata.name.as_deref(),
        };
        if name == Some(ROOT_CA) {
            return;
        }
        let seen = match event {
            InformerEvent::Applied { old, new } => {
                Seen::Applied { name: new.metadata.name.clone().unwrap(), old: old.as_deref().map(value), new: value(new) }
            }
            InformerEvent::Deleted(obj) => Seen::Deleted { name: obj.metadata.name.clone().unwrap(), last: value(obj) },
        };
        let _ = tx.send(seen);
    })
}

fn applied(name: &str, old: Option<&str>, new: &str) -> Seen {
    Seen::Applied { name: name.into(), old: old.map(String::from), new: new.into() }
}

fn deleted(name: &str, last: &str) -> Seen {
    Seen::Deleted { name: name.into(), last: last.into() }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("an informer event in time").expect("handler alive")
}

/// The next `n` events, in any order.
async fn next_set(rx: &mut mpsc::UnboundedReceiver<Seen>, n: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(next(rx).await);
    }
    seen.sort_by_key(|s| format!("{s:?}"));
    seen
}

async fn quiet(rx: &mut mpsc::UnboundedReceiver<Seen>) {
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("unexpected informer event {extra:?}");
    }
}

#[tokio::test]
async fn an_informer_lists_then_sees_adds_updates_and_deletes() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    api.create(&configmap("before", "0")).await.unwrap();

    let informer = Informer::new(api.clone(), ListParams::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    informer.on_event(recorder(tx));
    assert!(!informer.has_synced());
    let task = tokio::spawn(informer.clone().run());
    tokio::time::timeout(Duration::from_secs(10), informer.wait_synced()).await.expect("synced");
    assert!(informer.has_synced());
    assert_eq!(next(&mut rx).await, applied("before", None, "0"));
    let store = informer.store();
    assert_eq!(store.len(), 1);

    api.create(&configmap("a", "1")).await.unwrap();
    assert_eq!(next(&mut rx).await, applied("a", None, "1"));
    assert_eq!(value(&store.get("x", "a").unwrap()), "1");
    api.patch("a", PatchType::Merge, &json!({"data": {"v": "2"}})).await.unwrap();
    assert_eq!(next(&mut rx).await, applied("a", Some("1"), "2"));
    assert_eq!(value(&store.get_by_key("x/a").unwrap()), "2");
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut rx).await, deleted("a", "2"));
    assert!(store.get("x", "a").is_none());
    assert_eq!(store.list_namespace("x").len(), 1);
    quiet(&mut rx).await;
    task.abort();
}

#[tokio::test]
async fn a_handler_added_after_sync_first_sees_every_object_once() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    for i in 0..3 {
        api.create(&configmap(&format!("cm-{i}"), &i.to_string())).await.unwrap();
    }
    let informer = Informer::new(api.clone(), ListParams::default());
    let task = tokio::spawn(informer.clone().run());
    informer.wait_synced().await;

    let (tx, mut late) = mpsc::unbounded_channel();
    informer.on_event(recorder(tx));
    // Replayed at once, before `on_event` returns.
    let replay: Vec<Seen> = std::iter::from_fn(|| late.try_recv().ok()).collect();
    assert_eq!(replay, vec![applied("cm-0", None, "0"), applied("cm-1", None, "1"), applied("cm-2", None, "2")]);

    api.patch("cm-1", PatchType::Merge, &json!({"data": {"v": "one"}})).await.unwrap();
    assert_eq!(next(&mut late).await, applied("cm-1", Some("1"), "one"));
    quiet(&mut late).await;
    task.abort();
}

#[tokio::test]
async fn handlers_registered_while_events_flow_miss_nothing_and_see_nothing_twice() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    let informer = Informer::new(api.clone(), ListParams::default());
    let task = tokio::spawn(informer.clone().run());
    informer.wait_synced().await;

    let writer = tokio::spawn({
        let api = api.clone();
        async move {
            for i in 0..20 {
                api.create(&configmap(&format!("cm-{i}"), "v")).await.unwrap();
            }
        }
    });
    // Handlers join at different points of the stream of creations.
    let mut receivers = Vec::new();
    for _ in 0..4 {
        let (tx, rx) = mpsc::unbounded_channel();
        informer.on_event(recorder(tx));
        receivers.push(rx);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    writer.await.unwrap();
    for mut rx in receivers {
        let mut names = Vec::new();
        while names.len() < 20 {
            match next(&mut rx).await {
                Seen::Applied { name, old: None, .. } => names.push(name),
                other => panic!("unexpected {other:?}"),
            }
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 20, "every object exactly once");
        quiet(&mut rx).await;
    }
    task.abort();
}

#[tokio::test]
async fn an_informer_keeps_working_across_server_side_watch_timeouts() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    let informer = Informer::new(api.clone(), ListParams::default());
    informer.set_watch_timeout(Duration::from_secs(1));
    let (tx, mut rx) = mpsc::unbounded_channel();
    informer.on_event(recorder(tx));
    let task = tokio::spawn(informer.clone().run());
    informer.wait_synced().await;

    api.create(&configmap("a", "1")).await.unwrap();
    assert_eq!(next(&mut rx).await, applied("a", None, "1"));
    for v in ["2", "3"] {
        // Each change comes after the server ended the previous watch.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        api.patch("a", PatchType::Merge, &json!({"data": {"v": v}})).await.unwrap();
        let Seen::Applied { new, .. } = next(&mut rx).await else { panic!() };
        assert_eq!(new, v);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut rx).await, deleted("a", "3"));
    quiet(&mut rx).await;
    task.abort();
}

/// A TCP relay to `target` that can be closed (cutting every connection and
/// refusing new ones) and opened again on the same address.
struct Gate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(target: SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = tokio::spawn({
            let (open, conns) = (open.clone(), conns.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue;
                    }
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(conn.abort_handle());
                }
            }
        });
        Gate { addr, open, conns, accept }
    }

    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
        self.accept.abort();
    }
}

#[tokio::test]
async fn an_informer_relists_when_its_resource_version_is_gone_and_reports_the_difference() {
    let ts = start_with(Settings { watch_history: 5, ..Settings::default() }).await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    for name in ["kept", "changed", "removed"] {
        api.create(&configmap(name, "0")).await.unwrap();
    }

    let listed_rv = api.list(&ListParams::default()).await.unwrap().resource_version;
    let gate = Gate::start(ts.server.addr).await;
    let watched = Client::new(ts.config(vec![format!("https://{}", gate.addr)])).unwrap();
    let informer = Informer::new(Api::<ConfigMap>::namespaced(&watched, "x"), ListParams::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    informer.on_event(recorder(tx));
    let task = tokio::spawn(informer.clone().run());
    informer.wait_synced().await;
    assert_eq!(next_set(&mut rx, 3).await, vec![applied("changed", None, "0"), applied("kept", None, "0"), applied("removed", None, "0")]);

    // While the informer cannot reach the server, more changes happen than the
    // server's watch history holds.
    gate.close();
    api.patch("changed", PatchType::Merge, &json!({"data": {"v": "1"}})).await.unwrap();
    api.delete("removed", &DeleteParams::default()).await.unwrap();
    api.create(&configmap("new", "1")).await.unwrap();
    for i in 0..10 {
        api.create(&configmap(&format!("filler-{i}"), "f")).await.unwrap();
        api.delete(&format!("filler-{i}"), &DeleteParams::default()).await.unwrap();
    }
    // The history no longer reaches back to the informer's resourceVersion.
    let mut stale = client.watch(&format!("{}?resourceVersion={listed_rv}", api.collection_path())).await.unwrap();
    let gone = stale.next().await.unwrap().unwrap();
    assert_eq!((gone.kind.as_str(), &gone.object["code"]), ("ERROR", &json!(410)));
    gate.open();

    let seen = next_set(&mut rx, 3).await;
    assert_eq!(seen, vec![applied("changed", Some("0"), "1"), applied("new", None, "1"), deleted("removed", "0")]);
    quiet(&mut rx).await;
    let store = informer.store();
    let mut names: Vec<_> = store.list().iter().map(|cm| cm.metadata.name.clone().unwrap()).filter(|n| n != ROOT_CA).collect();
    names.sort();
    assert_eq!(names, vec!["changed", "kept", "new"]);

    // And it watches again afterwards.
    api.patch("kept", PatchType::Merge, &json!({"data": {"v": "after"}})).await.unwrap();
    assert_eq!(next(&mut rx).await, applied("kept", Some("0"), "after"));
    task.abort();
}

#[tokio::test]
async fn a_selective_informer_sees_objects_enter_and_leave_its_selector() {
    let ts = TestServer::start().await;
    let client = ts.client();
    namespace(&client, "x").await;
    let api: Api<ConfigMap> = Api::namespaced(&client, "x");
    api.create(&labelled("in", "1", "web")).await.unwrap();
    api.create(&labelled("out", "1", "db")).await.unwrap();

    let informer = Informer::new(api.clone(), ListParams { label_selector: Some("app=web".into()), ..Default::default() });
    let (tx, mut rx) = mpsc::unbounded_channel();
    informer.on_event(recorder(tx));
    let task = tokio::spawn(informer.clone().run());
    assert_eq!(next(&mut rx).await, applied("in", None, "1"));

    api.patch("out", PatchType::Merge, &json!({"metadata": {"labels": {"app": "web"}}, "data": {"v": "2"}})).await.unwrap();
    assert_eq!(next(&mut rx).await, applied("out", None, "2"));
    api.patch("in", PatchType::Merge, &json!({"metadata": {"labels": {"app": "db"}}})).await.unwrap();
    assert_eq!(next(&mut rx).await, deleted("in", "1"));
    let keys: Vec<_> = informer.store().list().iter().map(|cm| skiff_client::informer::object_key(cm.as_ref())).collect();
    assert_eq!(keys, vec!["x/out"]);
    quiet(&mut rx).await;
    task.abort();
}
