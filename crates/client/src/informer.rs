//! Informers: a LIST then a WATCH of one kind, kept in a local store, with event
//! handlers. Relists on 410 Gone and after errors (with back-off); uses bookmarks to
//! keep its resourceVersion fresh.
//!
//! The informer's task is the store's only writer; [`Store`] handles are cheap,
//! read-only views that any number of tasks may hold. Applying an event to the store
//! and calling the handlers happen under one lock, the same one [`Informer::on_event`]
//! takes to replay the store to a new handler, so every handler sees each change
//! exactly once and in order.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::api::{decode, Api, ListParams};
use crate::Error;

/// Page size of the informer's LIST, as client-go's reflector.
const PAGE_SIZE: u32 = 500;
/// Watches ask the server to end them after a random time in this range (seconds),
/// so that many informers do not all re-watch at once.
const WATCH_TIMEOUT_SECS: std::ops::Range<u64> = 300..600;
/// Back-off between failed attempts: doubles from the first to the last value.
const BACKOFF_INITIAL: Duration = Duration::from_millis(800);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A watch that ends sooner than this without delivering anything counts as a
/// failure, so a server that closes watches at once is not hammered.
const SHORT_WATCH: Duration = Duration::from_secs(1);
/// How long past its `timeoutSeconds` a watch may stay open before the informer
/// gives up on it: the server should have ended it, so the connection is dead.
const WATCH_GRACE: Duration = Duration::from_secs(60);

/// What an informer tells its handlers.
#[derive(Debug)]
pub enum InformerEvent<K> {
    /// Added (`old` is None) or updated.
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> InformerEvent<K> {
    /// The object the event is about: the new state, or the last state of a
    /// deleted object.
    pub fn object(&self) -> &Arc<K> {
        match self {
            InformerEvent::Applied { new, .. } => new,
            InformerEvent::Deleted(obj) => obj,
        }
    }
}

// === impl Store ===

/// The informer's local copy, keyed by `namespace/name` (or `name`).
pub struct Store<K> {
    // std RwLock: nothing async happens while it is held, and readers only clone
    // `Arc`s out of it.
    objects: Arc<RwLock<BTreeMap<String, Arc<K>>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store { objects: self.objects.clone() }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store { objects: Arc::default() }
    }
}

impl<K> std::fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("len", &self.len()).finish()
    }
}

impl<K> Store<K> {
    /// `namespace` is `""` for cluster-scoped kinds.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read().get(&key(namespace, name)).cloned()
    }

    /// By store key: `namespace/name`, or `name` for cluster-scoped objects (the
    /// keys controllers put in their work queues).
    pub fn get_by_key(&self, key: &str) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every object, ordered by key.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Objects of one namespace; `""` means every namespace, as upstream listers.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        if namespace.is_empty() {
            return self.list();
        }
        // Names hold no `/`, so the keys of one namespace are exactly those
        // between `ns/` and `ns0` (`0` follows `/`).
        let start = format!("{namespace}/");
        let end = format!("{namespace}0");
        self.read().range::<str, _>((Bound::Included(start.as_str()), Bound::Excluded(end.as_str()))).map(|(_, v)| v.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<K>>> {
        // Writes are single map operations; a poisoned lock still holds a whole map.
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<K>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Metadata<Ty = ObjectMeta>> Store<K> {
    /// A store holding `objects`, not fed by any informer: for tests of code that
    /// reads stores.
    pub fn from_objects(objects: impl IntoIterator<Item = K>) -> Store<K> {
        let map = objects.into_iter().map(|o| (object_key(&o), Arc::new(o))).collect();
        Store { objects: Arc::new(RwLock::new(map)) }
    }
}

/// The store key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn object_key<K: Metadata<Ty = ObjectMeta>>(obj: &K) -> String {
    let meta = obj.metadata();
    key(meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

fn key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

// === impl Informer ===

pub type Handler<K> = Arc<dyn Fn(&InformerEvent<K>) + Send + Sync>;

/// A shared informer. Cheap to clone; every clone sees the same store and handlers.
pub struct Informer<K> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    api: Api<K>,
    params: ListParams,
    store: Store<K>,
    /// The handlers, and the lock under which the store changes and handlers run.
    handlers: Mutex<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
    running: AtomicBool,
    /// Fixed server-side watch timeout instead of a random one.
    watch_timeout: Mutex<Option<Duration>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer { shared: self.shared.clone() }
    }
}

/// How a watch ended, and so what comes next.
enum WatchEnd {
    /// The server ended it (its timeout): watch again from the last resourceVersion.
    Closed { events: usize, lasted: Duration },
    /// The resourceVersion is too old: relist now.
    Gone,
    /// The connection broke or no server answered: watch again after a back-off.
    Broken(Error),
    /// Anything else: relist after a back-off.
    Failed(Error),
}

impl<K> Informer<K>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Serialize + Clone + Send + Sync + 'static,
{
    /// An informer on every object of the kind, cluster-wide.
    pub fn all(client: &crate::Client) -> Informer<K> {
        Informer::new(Api::all(client), ListParams::default())
    }

    pub fn new(api: Api<K>, params: ListParams) -> Informer<K> {
        let shared = Shared {
            api,
            params,
            store: Store::default(),
            handlers: Mutex::new(Vec::new()),
            synced: watch::Sender::new(false),
            running: AtomicBool::new(false),
            watch_timeout: Mutex::new(None),
        };
        Informer { shared: Arc::new(shared) }
    }

    pub fn store(&self) -> Store<K> {
        self.shared.store.clone()
    }

    /// Registers a handler. If the informer has already synced, the handler is first
    /// called with `Applied { old: None }` for every object in the store, so handlers
    /// can be added at any time without missing objects.
    ///
    /// Handlers run one after the other on the informer's task, in registration
    /// order, and hold up every other handler while they run: they should only
    /// enqueue keys. A handler must not register handlers itself.
    pub fn on_event(&self, handler: Handler<K>) {
        let mut handlers = self.lock_handlers();
        if *self.shared.synced.borrow() {
            for obj in self.shared.store.list() {
                call(&handler, &InformerEvent::Applied { old: None, new: obj });
            }
        }
        handlers.push(handler);
    }

    /// Makes every watch ask the server to end it after `timeout` instead of a
    /// random 5 to 10 minutes (tests use it to see watches end and resume).
    pub fn set_watch_timeout(&self, timeout: Duration) {
        *self.shared.watch_timeout.lock().unwrap_or_else(|e| e.into_inner()) = Some(timeout);
    }

    /// Runs forever: list, watch, relist when needed. Spawn it.
    ///
    /// Only the first call does anything; the store has a single writer.
    pub async fn run(self) {
        if self.shared.running.swap(true, Ordering::SeqCst) {
            tracing::warn!(kind = K::KIND, "informer already running");
            return;
        }
        let mut backoff = Backoff::default();
        // The resourceVersion to watch from; `None` means a relist is due.
        let mut rv: Option<String> = None;
        loop {
            let Some(from) = rv.clone() else {
                match self.relist().await {
                    Ok(list_rv) => rv = Some(list_rv),
                    Err(e) => {
                        let delay = backoff.next();
                        tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "informer list failed");
                        tokio::time::sleep(delay).await;
                    }
                }
                continue;
            };
            match self.watch(from, &mut rv).await {
                WatchEnd::Closed { events, lasted } => {
                    if events > 0 || lasted >= SHORT_WATCH {
                        backoff.reset();
                    } else {
                        tokio::time::sleep(backoff.next()).await;
                    }
                }
                WatchEnd::Gone => {
                    tracing::debug!(kind = K::KIND, "resourceVersion too old, relisting");
                    rv = None;
                }
                WatchEnd::Broken(e) => {
                    let delay = backoff.next();
                    tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "informer watch broke");
                    tokio::time::sleep(delay).await;
                }
                WatchEnd::Failed(e) => {
                    let delay = backoff.next();
                    tracing::warn!(kind = K::KIND, error = %e, retry_in = ?delay, "informer watch failed, relisting");
                    rv = None;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Resolves once the first list has been loaded into the store.
    pub async fn wait_synced(&self) {
        let mut rx = self.shared.synced.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    pub fn has_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    /// Lists every page, replaces the store with the result and tells the handlers
    /// what changed; returns the list's resourceVersion.
    async fn relist(&self) -> Result<String, Error> {
        let (items, rv) = match self.list_all(Some(PAGE_SIZE)).await {
            Err(e) if e.code() == Some(410) => {
                // The continue token expired between pages: one unpaginated list.
                self.list_all(None).await?
            }
            other => other?,
        };
        let fresh: BTreeMap<String, Arc<K>> = items.into_iter().map(|o| (object_key(&o), Arc::new(o))).collect();
        let handlers = self.lock_handlers();
        let previous = std::mem::replace(&mut *self.shared.store.write(), fresh.clone());
        for (k, new) in &fresh {
            let old = previous.get(k);
            if old.is_some_and(|old| resource_version(old.as_ref()) == resource_version(new.as_ref())) {
                continue;
            }
            dispatch(&handlers, &InformerEvent::Applied { old: old.cloned(), new: new.clone() });
        }
        for (k, old) in previous {
            if !fresh.contains_key(&k) {
                dispatch(&handlers, &InformerEvent::Deleted(old));
            }
        }
        self.shared.synced.send_replace(true);
        drop(handlers);
        Ok(rv)
    }

    async fn list_all(&self, limit: Option<u32>) -> Result<(Vec<K>, String), Error> {
        let mut params = ListParams { limit, resource_version: None, continue_token: None, ..self.shared.params.clone() };
        let mut items = Vec::new();
        loop {
            let page = self.shared.api.list(&params).await?;
            items.extend(page.items);
            match page.continue_token {
                Some(token) if limit.is_some() => params.continue_token = Some(token),
                _ => return Ok((items, page.resource_version)),
            }
        }
    }

    /// One watch from `from`; `rv` follows the events (and bookmarks) applied.
    async fn watch(&self, from: String, rv: &mut Option<String>) -> WatchEnd {
        let timeout = self.watch_timeout_secs();
        let params = ListParams {
            label_selector: self.shared.params.label_selector.clone(),
            field_selector: self.shared.params.field_selector.clone(),
            resource_version: Some(from),
            ..ListParams::default()
        };
        let path = format!("{}{}&allowWatchBookmarks=true&timeoutSeconds={timeout}", self.shared.api.collection_path(), params.query());
        let started = tokio::time::Instant::now();
        let mut stream = match self.shared.api.client().watch(&path).await {
            Ok(stream) => stream,
            Err(e) if e.code() == Some(410) => return WatchEnd::Gone,
            Err(e @ Error::Unreachable(_)) => return WatchEnd::Broken(e),
            Err(e) => return WatchEnd::Failed(e),
        };
        let mut events = 0;
        let deadline = started + Duration::from_secs(timeout) + WATCH_GRACE;
        loop {
            let item = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => return WatchEnd::Broken(Error::Unreachable(format!("{path}: the watch outlived its timeout of {timeout}s"))),
            };
            let event = match item {
                Ok(event) => event,
                Err(e @ Error::Unreachable(_)) => return WatchEnd::Broken(e),
                Err(e) => return WatchEnd::Failed(e),
            };
            events += 1;
            match event.kind.as_str() {
                "ADDED" | "MODIFIED" | "DELETED" => {
                    let obj: K = match decode(event.object) {
                        Ok(obj) => obj,
                        Err(e) => return WatchEnd::Failed(e),
                    };
                    if let Some(v) = obj.metadata().resource_version.clone() {
                        *rv = Some(v);
                    }
                    self.apply(event.kind == "DELETED", obj);
                }
                "BOOKMARK" => {
                    if let Some(v) = event.object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                        *rv = Some(v.to_string());
                    }
                }
                "ERROR" => {
                    let code = event.object.get("code").and_then(Value::as_u64);
                    if code == Some(410) {
                        return WatchEnd::Gone;
                    }
                    let message = event.object.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
                    let reason = event.object.get("reason").and_then(Value::as_str).unwrap_or("Unknown").to_string();
                    let code = code.and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
                    return WatchEnd::Failed(Error::Api { code, reason, message, status: event.object });
                }
                other => return WatchEnd::Failed(Error::Decode(format!("watch event of unknown type {other:?}"))),
            }
        }
        WatchEnd::Closed { events, lasted: started.elapsed() }
    }

    /// Applies one watch event to the store and tells the handlers.
    fn apply(&self, deleted: bool, obj: K) {
        let k = object_key(&obj);
        let new = Arc::new(obj);
        let handlers = self.lock_handlers();
        let event = if deleted {
            self.shared.store.write().remove(&k);
            InformerEvent::Deleted(new)
        } else {
            let old = self.shared.store.write().insert(k, new.clone());
            InformerEvent::Applied { old, new }
        };
        dispatch(&handlers, &event);
    }

    fn watch_timeout_secs(&self) -> u64 {
        match *self.shared.watch_timeout.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) => t.as_secs().max(1),
            None => rand::rng().random_range(WATCH_TIMEOUT_SECS),
        }
    }

    fn lock_handlers(&self) -> MutexGuard<'_, Vec<Handler<K>>> {
        // A handler that panicked was caught in `call`; the list itself is intact.
        self.shared.handlers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn resource_version<K: Metadata<Ty = ObjectMeta>>(obj: &K) -> Option<&str> {
    obj.metadata().resource_version.as_deref()
}

fn dispatch<K>(handlers: &[Handler<K>], event: &InformerEvent<K>) {
    for handler in handlers {
        call(handler, event);
    }
}

/// Calls one handler; a panicking handler is logged, and neither stops the
/// informer nor the handlers after it.
fn call<K>(handler: &Handler<K>, event: &InformerEvent<K>) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| handler(event))).is_err() {
        tracing::error!("an informer event handler panicked");
    }
}

/// Exponential back-off with jitter between failed list or watch attempts.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = BACKOFF_INITIAL.saturating_mul(1 << self.failures.min(10)).min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        // Up to 20% less, so informers that failed together do not retry together.
        base.mul_f64(rand::rng().random_range(0.8..=1.0))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};

    fn cm(ns: &str, name: &str) -> ConfigMap {
        ConfigMap { metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() }, ..Default::default() }
    }

    fn names(objs: Vec<Arc<ConfigMap>>) -> Vec<String> {
        objs.iter().map(|o| object_key(o.as_ref())).collect()
    }

    #[test]
    fn store_keys_are_namespace_slash_name_or_name() {
        let ns = Namespace { metadata: ObjectMeta { name: Some("kube-system".into()), ..Default::default() }, ..Default::default() };
        assert_eq!(object_key(&ns), "kube-system");
        assert_eq!(object_key(&cm("a", "x")), "a/x");
        let store = Store::from_objects([ns]);
        assert!(store.get("", "kube-system").is_some());
        assert!(store.get_by_key("kube-system").is_some());
    }

    #[test]
    fn a_namespace_lists_only_its_own_objects() {
        let store = Store::from_objects([cm("a", "x"), cm("a-b", "y"), cm("a", "z"), cm("b", "w"), cm("a0", "v")]);
        assert_eq!(names(store.list_namespace("a")), vec!["a/x", "a/z"]);
        assert_eq!(names(store.list_namespace("a-b")), vec!["a-b/y"]);
        assert_eq!(names(store.list_namespace("c")), Vec::<String>::new());
        assert_eq!(store.list_namespace("").len(), 5);
        assert_eq!(store.len(), 5);
        assert_eq!(store.get("b", "w").unwrap().metadata.name.as_deref(), Some("w"));
        assert!(store.get("a", "w").is_none());
    }

    #[test]
    fn back_off_grows_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next();
        assert!(first >= BACKOFF_INITIAL.mul_f64(0.8) && first <= BACKOFF_INITIAL);
        let second = b.next();
        assert!(second >= BACKOFF_INITIAL.mul_f64(1.6));
        for _ in 0..20 {
            assert!(b.next() <= BACKOFF_MAX);
        }
        assert!(b.next() >= BACKOFF_MAX.mul_f64(0.8));
        b.reset();
        assert!(b.next() <= BACKOFF_INITIAL);
    }
}
