//! `EventRecorder` against a real in-process server.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_client::{Api, Client, EventRecorder, EventType, ListParams};
use support::TestServer;

/// Polls the events of `namespace` until `check` accepts them.
async fn events_until(client: &Client, namespace: &str, check: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client, namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = api.list(&ListParams::default()).await.unwrap().items;
        if check(&events) {
            return events;
        }
        assert!(tokio::time::Instant::now() < deadline, "events never matched: {events:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn about<'a>(events: &'a [Event], name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.involved_object.name.as_deref() == Some(name)).collect()
}

#[tokio::test]
async fn an_event_is_created_with_upstream_fields_and_a_repeat_bumps_its_count() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let cm = ConfigMap { metadata: ObjectMeta { name: Some("web".into()), ..Default::default() }, ..Default::default() };
    let cm = Api::<ConfigMap>::namespaced(&client, "default").create(&cm).await.unwrap();
    let recorder = EventRecorder::new(client.clone(), "test-controller", Some("node-a"));

    recorder.record(&cm, EventType::Normal, "SuccessfulCreate", "Created pod: web-abc12");
    let events = events_until(&client, "default", |e| about(e, "web").len() == 1).await;
    let event = about(&events, "web")[0].clone();
    let name = event.metadata.name.clone().unwrap();
    let (prefix, suffix) = name.split_once('.').unwrap();
    assert_eq!(prefix, "web");
    assert_eq!(suffix.len(), 16);
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(event.reason.as_deref(), Some("SuccessfulCreate"));
    assert_eq!(event.message.as_deref(), Some("Created pod: web-abc12"));
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(event.count, Some(1));
    let involved = &event.involved_object;
    assert_eq!(involved.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(involved.api_version.as_deref(), Some("v1"));
    assert_eq!(involved.namespace.as_deref(), Some("default"));
    assert_eq!(involved.uid, cm.metadata.uid);
    assert_eq!(involved.resource_version, cm.metadata.resource_version);
    let source = event.source.clone().unwrap();
    assert_eq!((source.component.as_deref(), source.host.as_deref()), (Some("test-controller"), Some("node-a")));
    assert_eq!(event.reporting_component.as_deref(), Some("test-controller"));
    assert!(event.first_timestamp.is_some() && event.last_timestamp.is_some());
    assert!(event.event_time.is_none());

    // The same event again: the first one counts it, no second Event appears.
    recorder.clone().record(&cm, EventType::Normal, "SuccessfulCreate", "Created pod: web-abc12");
    let events = events_until(&client, "default", |e| about(e, "web").iter().any(|e| e.count == Some(2))).await;
    let web = about(&events, "web");
    assert_eq!(web.len(), 1);
    assert_eq!(web[0].metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(web[0].first_timestamp, event.first_timestamp);

    // Another message is another event.
    recorder.record(&cm, EventType::Warning, "FailedCreate", "Error creating: quota exceeded");
    let events = events_until(&client, "default", |e| about(e, "web").len() == 2).await;
    let warning = about(&events, "web").into_iter().find(|e| e.reason.as_deref() == Some("FailedCreate")).unwrap();
    assert_eq!((warning.type_.as_deref(), warning.count), (Some("Warning"), Some(1)));
}

#[tokio::test]
async fn events_about_cluster_scoped_objects_go_to_the_default_namespace() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let ns = Namespace { metadata: ObjectMeta { name: Some("team-a".into()), ..Default::default() }, ..Default::default() };
    let ns = Api::<Namespace>::all(&client).create(&ns).await.unwrap();
    let recorder = EventRecorder::new(client.clone(), "namespace-controller", None);
    recorder.record(&ns, EventType::Normal, "Created", "namespace made");

    let events = events_until(&client, "default", |e| !about(e, "team-a").is_empty()).await;
    let event = about(&events, "team-a")[0];
    assert_eq!(event.involved_object.kind.as_deref(), Some("Namespace"));
    assert_eq!(event.involved_object.namespace, None);
    assert_eq!(event.source.as_ref().unwrap().host, None);
}

#[tokio::test]
async fn recording_never_waits_even_when_the_server_is_gone() {
    let ts = TestServer::start().await;
    let client = Client::new(ts.config(vec![support::closed_url()])).unwrap();
    let recorder = EventRecorder::new(client, "test-controller", None);
    let cm = ConfigMap { metadata: ObjectMeta { name: Some("x".into()), namespace: Some("default".into()), ..Default::default() }, ..Default::default() };
    let started = std::time::Instant::now();
    for i in 0..5000 {
        recorder.record(&cm, EventType::Normal, "Spam", &format!("message {i}"));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "record took {:?}", started.elapsed());
}
