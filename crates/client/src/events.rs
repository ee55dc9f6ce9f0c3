//! Recording core/v1 Events for objects, as client-go's EventRecorder does: the
//! `reason` and `message` kubectl describe shows, deduplicated (a repeat of the same
//! event bumps `count` and `lastTimestamp`), sent in the background so controllers
//! never wait on them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};

use crate::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

#[derive(Clone)]
pub struct EventRecorder {
    _private: (),
}

impl EventRecorder {
    /// `component` is the event source (e.g. `deployment-controller`,
    /// `default-scheduler`); `host` the node name for node components.
    pub fn new(client: Client, component: &str, host: Option<&str>) -> EventRecorder {
        todo!()
    }

    /// Records an event about `obj` (in the object's namespace, `default` for
    /// cluster-scoped objects).
    pub fn record<K>(&self, obj: &K, kind: EventType, reason: &str, message: &str)
    where
        K: Resource + Metadata<Ty = ObjectMeta>,
    {
        todo!()
    }
}
