//! The pods bound to this node, by UID (upstream's pod manager): the newest copy of
//! each Pod the watch or a status write brought, whether it is gone from the API,
//! and what the runtime has of it, which the agent's endpoint reads to find a pod's
//! containers and logs ([`PodLookup`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Pod;

use super::podstate::PodRuntimeState;
use super::sandbox::log_directory;
use super::stream::{PodLookup, PodTarget};
use crate::runtime::Runtime;

struct Entry {
    pod: Arc<Pod>,
    /// Deleted from the API (the watch said so): only its cleanup is left.
    removed: bool,
    runtime: Option<Arc<dyn Runtime>>,
    sandbox_id: Option<String>,
    /// Container name → id of its newest instance.
    containers: BTreeMap<String, String>,
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, Entry>,
    /// `namespace/name` → the UID of the newest pod of that name.
    by_name: HashMap<(String, String), String>,
}

/// What an update of the registry means for the pod's worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub uid: String,
    /// The pod is being deleted or is gone: a running sync should stop.
    pub terminating: bool,
}

/// The registry. Cheap to share (`Arc`); every method takes a short lock.
pub struct PodRegistry {
    // std RwLock: map operations only, never held across an await.
    inner: RwLock<Inner>,
    data_dir: PathBuf,
    synced: AtomicBool,
}

fn uid_of(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref().filter(|u| !u.is_empty())
}

fn revision(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}

fn key(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

impl PodRegistry {
    pub fn new(data_dir: PathBuf) -> PodRegistry {
        PodRegistry { inner: RwLock::default(), data_dir, synced: AtomicBool::new(false) }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a copy of a pod unless an newer one is known (a watch event may
    /// trail the copy a status write returned).
    pub fn upsert(&self, pod: Arc<Pod>) -> Option<Change> {
        let uid = uid_of(&pod)?.to_string();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let mut inner = self.write();
        inner.by_name.insert(key(&pod), uid.clone());
        match inner.pods.get_mut(&uid) {
            Some(e) => {
                if matches!((revision(&pod), revision(&e.pod)), (Some(new), Some(old)) if new < old) {
                    return None;
                }
                e.pod = pod;
                Some(Change { uid, terminating: terminating || e.removed })
            }
            None => {
                inner.pods.insert(uid.clone(), Entry { pod, removed: false, runtime: None, sandbox_id: None, containers: BTreeMap::new() });
                Some(Change { uid, terminating })
            }
        }
    }

    /// The pod is gone from the API; it stays until its worker cleaned up.
    pub fn mark_removed(&self, pod: &Pod) -> Option<Change> {
        let uid = uid_of(pod)?.to_string();
        let mut inner = self.write();
        let e = inner.pods.get_mut(&uid)?;
        e.removed = true;
        if revision(pod) >= revision(&e.pod) {
            e.pod = Arc::new(pod.clone());
        }
        Some(Change { uid, terminating: true })
    }

    /// The newest copy of the pod and whether it is gone from the API.
    pub fn get(&self, uid: &str) -> Option<(Arc<Pod>, bool)> {
        self.read().pods.get(uid).map(|e| (e.pod.clone(), e.removed))
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.read().pods.contains_key(uid)
    }

    pub fn uids(&self) -> Vec<String> {
        self.read().pods.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets a pod whose cleanup is done.
    pub fn remove(&self, uid: &str) {
        let mut inner = self.write();
        if let Some(e) = inner.pods.remove(uid) {
            let k = key(&e.pod);
            if inner.by_name.get(&k).map(String::as_str) == Some(uid) {
                inner.by_name.remove(&k);
            }
        }
    }

    /// Records where the pod runs and its current containers.
    pub fn set_runtime_view(&self, uid: &str, runtime: &Arc<dyn Runtime>, state: &PodRuntimeState) {
        let mut inner = self.write();
        let Some(e) = inner.pods.get_mut(uid) else { return };
        e.runtime = Some(runtime.clone());
        e.sandbox_id = state.sandbox().map(|s| s.id.clone());
        let mut containers = BTreeMap::new();
        // Newest first: the first instance seen of each name is its current one.
        for c in &state.containers {
            containers.entry(c.name().to_string()).or_insert_with(|| c.id().to_string());
        }
        e.containers = containers;
    }

    /// The first list of pods has been recorded: a pod the runtime has and the
    /// registry does not is an orphan from now on.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    pub fn has_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }
}

impl PodLookup for PodRegistry {
    fn lookup(&self, namespace: &str, name: &str) -> Option<PodTarget> {
        let inner = self.read();
        let uid = inner.by_name.get(&(namespace.to_string(), name.to_string()))?;
        let e = inner.pods.get(uid)?;
        Some(PodTarget {
            uid: uid.clone(),
            runtime: e.runtime.clone()?,
            sandbox_id: e.sandbox_id.clone(),
            log_dir: log_directory(&self.data_dir, &e.pod),
            containers: e.containers.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, uid: &str, rv: &str) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv}, "spec": {"containers": []}})).unwrap())
    }

    #[test]
    fn newer_copies_win_and_names_follow_the_newest_pod() {
        let r = PodRegistry::new("/data".into());
        assert_eq!(r.upsert(pod("a", "u1", "5")), Some(Change { uid: "u1".into(), terminating: false }));
        assert_eq!(r.upsert(pod("a", "u1", "4")), None, "an older copy is ignored");
        assert_eq!(r.get("u1").unwrap().0.metadata.resource_version.as_deref(), Some("5"));

        r.upsert(pod("a", "u2", "9"));
        assert!(r.lookup("ns", "a").is_none(), "no runtime yet");
        let rt: Arc<dyn Runtime> = Arc::new(crate::kubelet::fake_runtime::FakeRuntime::new());
        r.set_runtime_view("u2", &rt, &PodRuntimeState::default());
        let target = r.lookup("ns", "a").unwrap();
        assert_eq!(target.uid, "u2");
        assert_eq!(target.log_dir, PathBuf::from("/data/logs/ns_a_u2"));

        assert_eq!(r.mark_removed(&pod("a", "u1", "6")), Some(Change { uid: "u1".into(), terminating: true }));
        assert!(r.get("u1").unwrap().1);
        r.remove("u1");
        assert!(!r.contains("u1"));
        assert_eq!(r.lookup("ns", "a").unwrap().uid, "u2", "removing the old pod keeps the new one's name");
    }
}
