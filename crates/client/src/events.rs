//! Recording core/v1 Events for objects, as client-go's EventRecorder does: the
//! `reason` and `message` kubectl describe shows, deduplicated (a repeat of the same
//! event bumps `count` and `lastTimestamp`), sent in the background so controllers
//! never wait on them.
//!
//! [`EventRecorder::record`] only puts the event on a bounded queue; one task per
//! recorder (shared by its clones) sends them. That task owns the [`Correlator`],
//! which remembers recent events so that a repeat within ten minutes becomes a
//! PATCH of the first one, as upstream's event correlator does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{Client, PatchType};

/// How many events may wait to be sent; more are dropped (and logged).
const QUEUE: usize = 1024;
/// A repeat within this long bumps the earlier event instead of making a new one.
const DEDUP_WINDOW: Duration = Duration::from_secs(600);
/// How many distinct events the correlator remembers (upstream's LRU size).
const MAX_REMEMBERED: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records events about objects. Cheap to clone; clones share one sender task
/// and one deduplication memory.
#[derive(Clone)]
pub struct EventRecorder {
    shared: Arc<Shared>,
}

struct Shared {
    component: String,
    host: Option<String>,
    /// `None` when made outside a Tokio runtime: events are then dropped.
    tx: Option<mpsc::Sender<Pending>>,
    /// The last name suffix handed out, so that names stay unique even when two
    /// events about one object are recorded within the same nanosecond.
    last_suffix: AtomicU64,
    /// Events dropped because the queue was full; logged on the first drop and then
    /// once per thousand, so a burst does not flood the log.
    dropped: AtomicU64,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").field("component", &self.shared.component).field("host", &self.shared.host).finish_non_exhaustive()
    }
}

/// One recorded event on its way to the sender task.
#[derive(Debug, Clone)]
struct Pending {
    key: EventKey,
    /// The name for a new event (a repeat reuses the earlier event's name).
    name: String,
    namespace: String,
    involved: Value,
    timestamp: String,
    at: Instant,
}

/// What makes two events the same event (upstream's `getEventKey`, less the
/// source, which is fixed per recorder).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    type_: EventType,
    reason: String,
    message: String,
}

impl EventRecorder {
    /// `component` is the event source (e.g. `deployment-controller`,
    /// `default-scheduler`); `host` the node name for node components.
    ///
    /// Spawns the sender task, so it must be called within a Tokio runtime;
    /// elsewhere the recorder drops every event.
    pub fn new(client: Client, component: &str, host: Option<&str>) -> EventRecorder {
        let component = component.to_string();
        let host = host.map(String::from);
        let tx = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                runtime.spawn(send_events(client, component.clone(), host.clone(), rx));
                Some(tx)
            }
            Err(_) => {
                tracing::warn!(component, "event recorder made outside a runtime: its events are dropped");
                None
            }
        };
        EventRecorder { shared: Arc::new(Shared { component, host, tx, last_suffix: AtomicU64::new(0), dropped: AtomicU64::new(0) }) }
    }

    /// Records an event about `obj` (in the object's namespace, `default` for
    /// cluster-scoped objects).
    ///
    /// Never blocks and never fails: when the queue is full the event is dropped
    /// and logged.
    pub fn record<K>(&self, obj: &K, kind: EventType, reason: &str, message: &str)
    where
        K: Resource + Metadata<Ty = ObjectMeta>,
    {
        let Some(tx) = &self.shared.tx else { return };
        let meta = obj.metadata();
        let obj_name = meta.name.clone().unwrap_or_default();
        let obj_namespace = meta.namespace.clone().filter(|ns| !ns.is_empty());
        let mut involved = json!({"kind": K::KIND, "name": obj_name, "apiVersion": K::API_VERSION});
        if let Some(ns) = &obj_namespace {
            involved["namespace"] = json!(ns);
        }
        if let Some(uid) = &meta.uid {
            involved["uid"] = json!(uid);
        }
        if let Some(rv) = &meta.resource_version {
            involved["resourceVersion"] = json!(rv);
        }
        let key = EventKey {
            kind: K::KIND.to_string(),
            namespace: obj_namespace.clone().unwrap_or_default(),
            name: obj_name.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
            type_: kind,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let now = jiff::Timestamp::now();
        let pending = Pending {
            key,
            name: format!("{obj_name}.{:016x}", self.suffix(now)),
            namespace: obj_namespace.unwrap_or_else(|| "default".to_string()),
            involved,
            timestamp: rfc3339_seconds(now),
            at: Instant::now(),
        };
        match tx.try_send(pending) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(p)) => {
                let dropped = self.shared.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if dropped == 1 || dropped % 1000 == 0 {
                    tracing::warn!(component = %self.shared.component, object = %p.key.name, reason = %p.key.reason, dropped, "event queue full, dropping events");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Unix nanoseconds, made strictly increasing (upstream names events
    /// `{object}.{unix nanos in hex}`).
    fn suffix(&self, now: jiff::Timestamp) -> u64 {
        let nanos = u64::try_from(now.as_nanosecond()).unwrap_or(0);
        let mut last = self.shared.last_suffix.load(Ordering::Relaxed);
        loop {
            let next = nanos.max(last + 1);
            match self.shared.last_suffix.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// RFC 3339 in UTC with whole seconds, as `metav1.Time` is written.
fn rfc3339_seconds(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

// === the sender task ===

async fn send_events(client: Client, component: String, host: Option<String>, mut rx: mpsc::Receiver<Pending>) {
    let mut correlator = Correlator::default();
    while let Some(pending) = rx.recv().await {
        let seen = correlator.observe(&pending);
        let path = format!("/api/v1/namespaces/{}/events", pending.namespace);
        if seen.count > 1 {
            let patch = json!({"count": seen.count, "lastTimestamp": pending.timestamp, "message": pending.key.message});
            match client.patch(&format!("{path}/{}", seen.name), PatchType::StrategicMerge, &patch).await {
                Ok(_) => continue,
                // Gone (expired, or deleted): upstream makes it anew.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(component, event = %seen.name, error = %e, "could not update event");
                    continue;
                }
            }
        }
        let mut source = json!({"component": component});
        if let Some(host) = &host {
            source["host"] = json!(host);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": seen.name, "namespace": pending.namespace},
            "involvedObject": pending.involved,
            "reason": pending.key.reason,
            "message": pending.key.message,
            "type": pending.key.type_.as_str(),
            "source": source,
            "firstTimestamp": seen.first_timestamp,
            "lastTimestamp": pending.timestamp,
            "count": seen.count,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": host.clone().unwrap_or_default(),
        });
        if let Err(e) = client.create(&path, &event).await {
            tracing::warn!(component, event = %seen.name, error = %e, "could not create event");
        }
    }
}

// === impl Correlator ===

/// Remembers recent events to turn repeats into count bumps.
#[derive(Debug, Default)]
struct Correlator {
    seen: HashMap<EventKey, Seen>,
}

/// What the correlator knows of an event: the name it was created under, how
/// often it happened, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    name: String,
    count: i64,
    first_timestamp: String,
    last_at: Instant,
}

impl Correlator {
    /// Counts `pending`: a repeat within the window continues the earlier event,
    /// anything else starts a new one under `pending.name`.
    fn observe(&mut self, pending: &Pending) -> Seen {
        if let Some(seen) = self.seen.get_mut(&pending.key) {
            if pending.at.saturating_duration_since(seen.last_at) <= DEDUP_WINDOW {
                seen.count += 1;
                seen.last_at = pending.at;
                return seen.clone();
            }
        }
        let seen = Seen { name: pending.name.clone(), count: 1, first_timestamp: pending.timestamp.clone(), last_at: pending.at };
        self.seen.insert(pending.key.clone(), seen.clone());
        self.trim(pending.at);
        seen
    }

    /// Keeps memory bounded: forgets expired events, then the least recently seen.
    fn trim(&mut self, now: Instant) {
        if self.seen.len() <= MAX_REMEMBERED {
            return;
        }
        self.seen.retain(|_, s| now.saturating_duration_since(s.last_at) <= DEDUP_WINDOW);
        while self.seen.len() > MAX_REMEMBERED {
            let Some(oldest) = self.seen.iter().min_by_key(|(_, s)| s.last_at).map(|(k, _)| k.clone()) else { break };
            self.seen.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(object: &str, message: &str, name: &str, timestamp: &str) -> Pending {
        Pending {
            key: EventKey {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: object.into(),
                uid: format!("uid-{object}"),
                type_: EventType::Normal,
                reason: "Scheduled".into(),
                message: message.into(),
            },
            name: name.into(),
            namespace: "default".into(),
            involved: json!({}),
            timestamp: timestamp.into(),
            at: Instant::now(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_within_ten_minutes_continues_the_first_event() {
        let mut c = Correlator::default();
        let first = c.observe(&pending("p", "m", "p.1", "T1"));
        assert_eq!((first.name.as_str(), first.count, first.first_timestamp.as_str()), ("p.1", 1, "T1"));
        tokio::time::advance(Duration::from_secs(599)).await;
        let second = c.observe(&pending("p", "m", "p.2", "T2"));
        assert_eq!((second.name.as_str(), second.count, second.first_timestamp.as_str()), ("p.1", 2, "T1"));
        // The window runs from the last repeat.
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(c.observe(&pending("p", "m", "p.3", "T3")).count, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeat_after_ten_minutes_is_a_new_event() {
        let mut c = Correlator::default();
        c.observe(&pending("p", "m", "p.1", "T1"));
        tokio::time::advance(Duration::from_secs(601)).await;
        let later = c.observe(&pending("p", "m", "p.2", "T2"));
        assert_eq!((later.name.as_str(), later.count, later.first_timestamp.as_str()), ("p.2", 1, "T2"));
    }

    #[tokio::test(start_paused = true)]
    async fn different_messages_or_objects_are_different_events() {
        let mut c = Correlator::default();
        c.observe(&pending("p", "m", "p.1", "T"));
        assert_eq!(c.observe(&pending("p", "other", "p.2", "T")).name, "p.2");
        assert_eq!(c.observe(&pending("q", "m", "q.1", "T")).name, "q.1");
        let mut warning = pending("p", "m", "p.3", "T");
        warning.key.type_ = EventType::Warning;
        assert_eq!(c.observe(&warning).count, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_is_bounded_and_forgets_the_least_recent_first() {
        let mut c = Correlator::default();
        c.observe(&pending("first", "m", "first.1", "T"));
        for i in 0..MAX_REMEMBERED {
            tokio::time::advance(Duration::from_millis(1)).await;
            c.observe(&pending(&format!("o{i}"), "m", "x", "T"));
        }
        assert_eq!(c.seen.len(), MAX_REMEMBERED);
        assert_eq!(c.observe(&pending("first", "m", "first.2", "T")).count, 1, "forgotten");
        assert_eq!(c.observe(&pending(&format!("o{}", MAX_REMEMBERED - 1), "m", "y", "T")).count, 2, "remembered");
    }

    #[test]
    fn timestamps_have_whole_seconds_in_utc() {
        let t: jiff::Timestamp = "2024-05-06T07:08:09.123456789Z".parse().unwrap();
        assert_eq!(rfc3339_seconds(t), "2024-05-06T07:08:09Z");
    }
}
