//! The watch cache: every object of one resource in memory, fed by a store watch.
//!
//! The API server answers LIST and WATCH from here instead of from the database
//! (upstream's `Cacher`). A [`WatchCache`] lists its prefix from the [`Store`] once,
//! then follows a store watch in a background task, decoding each object once. It
//! keeps:
//! - the current objects in key order (so a LIST is a range walk, and a page of a
//!   100k-object list costs only the page);
//! - a bounded ring of recent events, so a client that reconnects with a recent
//!   resourceVersion resumes without a relist (and gets `TooOld` → 410 Gone when it
//!   is older than the ring);
//! - one bounded channel per watcher. Fan-out is a non-blocking send; a watcher
//!   whose buffer is full is dropped with [`CacheError::TooSlow`] instead of
//!   holding up everyone else (its client re-watches from its last revision).
//!
//! If the store watch fails, the cache re-watches from its revision; if that
//! revision is compacted, it relists, replaces its contents and ends every watcher
//! (they can no longer be resumed without a gap).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::{Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError, WatchResponse, WatchStream};

/// Turns a stored value into the cached form. `None` means the value cannot be
/// decoded; the cache then treats the key as absent (and logs it).
pub type Decoder<T> = Arc<dyn Fn(&KeyValue) -> Option<T> + Send + Sync>;

/// Items each watcher may have queued before it is considered too slow.
pub const WATCHER_BUFFER: usize = 1024;

/// How often watchers that saw no event are told the cache's revision.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Progress is re-sent after this many quiet ticks even if the revision did not
/// move, so long-idle watches still get bookmarks.
const KEEPALIVE_TICKS: u32 = 10;

/// Page size of the initial list and of relists.
const LOAD_PAGE: usize = 10_000;

/// Back-off bounds while the store watch cannot be re-established.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One cached object with its revisions.
#[derive(Debug, Clone)]
pub struct CacheEntry<T> {
    pub key: String,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub object: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheEventKind {
    Added,
    Modified,
    Deleted,
}

/// One change to the cache, as watchers see it.
#[derive(Debug)]
pub struct CacheEvent<T> {
    pub kind: CacheEventKind,
    pub revision: Revision,
    /// The new state. For `Deleted`, the last state, with `mod_revision` set to the
    /// revision of the delete.
    pub entry: Arc<CacheEntry<T>>,
    /// The state before this change (`None` for `Added`).
    pub prev: Option<Arc<CacheEntry<T>>>,
}

impl<T> Clone for CacheEvent<T> {
    fn clone(&self) -> Self {
        CacheEvent { kind: self.kind, revision: self.revision, entry: self.entry.clone(), prev: self.prev.clone() }
    }
}

/// What a [`CacheWatcher`] yields.
#[derive(Debug)]
pub enum CacheWatchItem<T> {
    Event(CacheEvent<T>),
    /// Nothing under the watched prefix changed up to this revision (a bookmark).
    Progress(Revision),
}

impl<T> Clone for CacheWatchItem<T> {
    fn clone(&self) -> Self {
        match self {
            CacheWatchItem::Event(e) => CacheWatchItem::Event(e.clone()),
            CacheWatchItem::Progress(r) => CacheWatchItem::Progress(*r),
        }
    }
}

/// The answer of [`WatchCache::list`].
#[derive(Debug)]
pub struct CacheList<T> {
    /// Matching entries in key order.
    pub items: Vec<Arc<CacheEntry<T>>>,
    /// The cache revision the list was taken at.
    pub revision: Revision,
    /// Whether more matching entries follow the last one returned.
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The requested revision is older than the events the cache keeps.
    #[error("too old resource version: {requested} (oldest available {oldest})")]
    TooOld { requested: Revision, oldest: Revision },
    #[error("timed out waiting for the watch cache to reach revision {wanted} (it is at {current})")]
    Timeout { wanted: Revision, current: Revision },
    /// The cache stopped, or replaced its contents after losing the store watch.
    #[error("the watch cache stopped serving this watch")]
    Stopped,
    /// The watcher did not keep up with its buffer of events.
    #[error("the watcher fell too far behind the watch cache")]
    TooSlow,
}

/// Every object under one key prefix, kept current by a store watch.
///
/// Dropping it stops the background task and ends its watchers with
/// [`CacheError::Stopped`].
pub struct WatchCache<T> {
    shared: Arc<Shared<T>>,
    task: tokio::task::JoinHandle<()>,
}

/// State shared by the handle, the background task and nobody else (watchers only
/// hold their channel, so a stopped cache is freed at once).
struct Shared<T> {
    prefix: String,
    /// std RwLock: nothing async happens while it is held (apply, list and register
    /// are plain loops), and readers (lists) vastly outnumber the one writer.
    state: RwLock<State<T>>,
    /// std Mutex, taken after `state` when both are needed, never across an await.
    watchers: Mutex<Vec<Slot<T>>>,
    /// The applied revision, for `wait_for`.
    revision: watch::Sender<Revision>,
}

struct State<T> {
    items: BTreeMap<String, Arc<CacheEntry<T>>>,
    revision: Revision,
    /// Recent events, oldest first, at most `capacity`.
    history: VecDeque<CacheEvent<T>>,
    capacity: usize,
    /// The ring holds every event after this revision.
    oldest: Revision,
}

/// The sending side of one watcher.
struct Slot<T> {
    prefix: String,
    /// Only events after this revision are sent (the watcher's start).
    after: Revision,
    /// The highest revision the watcher has been sent, as an event or a progress.
    announced: Revision,
    quiet_ticks: u32,
    tx: mpsc::Sender<CacheWatchItem<T>>,
    flags: Arc<WatcherFlags>,
}

#[derive(Debug, Default)]
struct WatcherFlags {
    too_slow: AtomicBool,
}

/// One watch on a [`WatchCache`].
pub struct CacheWatcher<T> {
    rx: mpsc::Receiver<CacheWatchItem<T>>,
    flags: Arc<WatcherFlags>,
}

// === impl WatchCache ===

impl<T: Send + Sync + 'static> WatchCache<T> {
    /// Lists `prefix` from the store, then follows a store watch in a background
    /// task. `history` = how many recent events to keep for watch resumption.
    pub async fn start(store: Arc<dyn Store>, prefix: String, decode: Decoder<T>, history: usize) -> Result<WatchCache<T>, StoreError> {
        let (items, revision) = load(store.as_ref(), &prefix, &decode).await?;
        let stream = store.watch(&prefix, revision).await?;
        let shared = Arc::new(Shared {
            prefix: prefix.clone(),
            state: RwLock::new(State { items, revision, history: VecDeque::new(), capacity: history, oldest: revision }),
            watchers: Mutex::new(Vec::new()),
            revision: watch::Sender::new(revision),
        });
        let task = tokio::spawn(follow(shared.clone(), store, decode, stream));
        Ok(WatchCache { shared, task })
    }

    /// The latest revision the cache has applied (advanced by events and by the
    /// store's progress notifications).
    pub fn revision(&self) -> Revision {
        *self.shared.revision.borrow()
    }

    /// Waits until [`revision`](Self::revision) is at least `rev`.
    pub async fn wait_for(&self, rev: Revision, timeout: Duration) -> Result<(), CacheError> {
        let mut rx = self.shared.revision.subscribe();
        let reached = tokio::time::timeout(timeout, async { rx.wait_for(|r| *r >= rev).await.map(|_| ()) }).await;
        match reached {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(CacheError::Stopped),
            Err(_) => Err(CacheError::Timeout { wanted: rev, current: self.revision() }),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<CacheEntry<T>>> {
        self.shared.read().items.get(key).cloned()
    }

    /// The number of cached objects.
    pub fn len(&self) -> usize {
        self.shared.read().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prefix this cache holds.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// Entries whose key starts with `prefix` (and is > start_after), in key order,
    /// that pass `filter`; at most `limit` (0 = all); `more` says whether more
    /// matching entries follow.
    pub fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize, filter: &dyn Fn(&CacheEntry<T>) -> bool) -> CacheList<T> {
        list_locked(&self.shared.read(), prefix, start_after, limit, filter)
    }

    /// Events under `prefix` with revision > after. Err(TooOld) if `after` is older
    /// than the kept history (the API server answers 410 Gone).
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<CacheWatcher<T>, CacheError> {
        let state = self.shared.read();
        if after < state.oldest {
            return Err(CacheError::TooOld { requested: after, oldest: state.oldest });
        }
        let start = state.history.partition_point(|e| e.revision <= after);
        let backlog: Vec<&CacheEvent<T>> = state.history.range(start..).filter(|e| e.entry.key.starts_with(prefix)).collect();
        // Room for the whole backlog on top of the usual buffer, so resuming never
        // starts out "too slow".
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER + backlog.len());
        let mut announced = after;
        for e in backlog {
            announced = e.revision;
            let _ = tx.try_send(CacheWatchItem::Event(e.clone()));
        }
        Ok(self.shared.register(prefix, after, announced, (tx, rx)))
    }

    /// Atomically: the current entries under `prefix` (passing filter) plus a
    /// watcher of everything after that snapshot's revision. (Used for watch
    /// without resourceVersion, which starts with synthetic ADDED events.)
    pub fn list_and_watch(&self, prefix: &str, filter: &dyn Fn(&CacheEntry<T>) -> bool) -> (CacheList<T>, CacheWatcher<T>) {
        // Registering while the read lock is held means no event can be applied
        // between the snapshot and the watcher's start: no gap, no duplicate.
        let state = self.shared.read();
        let list = list_locked(&state, prefix, None, 0, filter);
        let watcher = self.shared.register(prefix, state.revision, state.revision, mpsc::channel(WATCHER_BUFFER));
        (list, watcher)
    }
}

impl<T> Drop for WatchCache<T> {
    fn drop(&mut self) {
        self.task.abort();
        // Dropping the senders ends every watcher with `Stopped`.
        self.shared.watchers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl<T> std::fmt::Debug for WatchCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchCache").field("prefix", &self.shared.prefix).field("revision", &*self.shared.revision.borrow()).finish()
    }
}

fn list_locked<T>(state: &State<T>, prefix: &str, start_after: Option<&str>, limit: usize, filter: &dyn Fn(&CacheEntry<T>) -> bool) -> CacheList<T> {
    let lower = match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut items = Vec::new();
    let mut more = false;
    for (key, entry) in state.items.range::<str, _>((lower, Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            break;
        }
        if !filter(entry) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            more = true;
            break;
        }
        items.push(entry.clone());
    }
    CacheList { items, revision: state.revision, more }
}

// === impl CacheWatcher ===

impl<T> CacheWatcher<T> {
    /// The next event or progress. `Err(TooSlow)` once the watcher has fallen
    /// behind its buffer (after the items it did get), `Err(Stopped)` if the cache
    /// stopped or had to relist.
    pub async fn next(&mut self) -> Result<CacheWatchItem<T>, CacheError> {
        match self.rx.recv().await {
            Some(item) => Ok(item),
            None if self.flags.too_slow.load(Ordering::Acquire) => Err(CacheError::TooSlow),
            None => Err(CacheError::Stopped),
        }
    }
}

impl<T> std::fmt::Debug for CacheWatcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheWatcher").field("queued", &self.rx.len()).finish()
    }
}

// === impl Shared ===

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, State<T>> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State<T>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watcher. Callers hold the state lock, so no event is applied between
    /// their snapshot and the watcher's start.
    fn register(&self, prefix: &str, after: Revision, announced: Revision, channel: (mpsc::Sender<CacheWatchItem<T>>, mpsc::Receiver<CacheWatchItem<T>>)) -> CacheWatcher<T> {
        let (tx, rx) = channel;
        let flags = Arc::new(WatcherFlags::default());
        let slot = Slot { prefix: prefix.to_string(), after, announced, quiet_ticks: 0, tx, flags: flags.clone() };
        self.watchers.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
        CacheWatcher { rx, flags }
    }

    /// Applies decoded store events and sends them to the watchers. Events at or
    /// below the cache's revision (already applied) are skipped.
    fn apply(&self, decoded: Vec<(Event, Option<T>)>) {
        let mut state = self.write();
        let mut changes = Vec::with_capacity(decoded.len());
        for (event, object) in decoded {
            let revision = event.revision();
            if revision <= state.revision {
                continue;
            }
            state.revision = revision;
            let key = event.kv.key;
            let prev = state.items.get(&key).cloned();
            let change = match (event.kind, object) {
                (EventKind::Put, Some(object)) => {
                    let entry = Arc::new(CacheEntry { key: key.clone(), create_revision: event.kv.create_revision, mod_revision: revision, object });
                    state.items.insert(key, entry.clone());
                    let kind = if prev.is_some() { CacheEventKind::Modified } else { CacheEventKind::Added };
                    Some(CacheEvent { kind, revision, entry, prev })
                }
                (EventKind::Put, None) => {
                    tracing::warn!(key = %key, revision, "watch cache cannot decode the stored value; treating the key as absent");
                    state.items.remove(&key);
                    prev.map(|p| CacheEvent { kind: CacheEventKind::Deleted, revision, entry: p.clone(), prev: Some(p) })
                }
                (EventKind::Delete, object) => {
                    state.items.remove(&key);
                    // Watchers never saw a key the cache did not hold: nothing to tell.
                    prev.map(|p| {
                        let entry = match object {
                            Some(object) => Arc::new(CacheEntry { key, create_revision: event.kv.create_revision, mod_revision: revision, object }),
                            None => p.clone(),
                        };
                        CacheEvent { kind: CacheEventKind::Deleted, revision, entry, prev: Some(p) }
                    })
                }
            };
            let Some(change) = change else { continue };
            state.history.push_back(change.clone());
            while state.history.len() > state.capacity {
                if let Some(dropped) = state.history.pop_front() {
                    state.oldest = dropped.revision;
                }
            }
            changes.push(change);
        }
        // Publish the revision before any watcher sees the events, so `revision()`
        // is never behind what a watcher has been sent.
        self.publish(state.revision);
        // Still under the state lock: a watcher registering now either sees these
        // changes in its snapshot or receives them here, never both or neither.
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for change in &changes {
            fan_out(&mut watchers, change);
        }
    }

    fn publish(&self, revision: Revision) {
        self.revision.send_if_modified(|r| {
            let moved = *r < revision;
            *r = (*r).max(revision);
            moved
        });
    }

    /// Records that nothing under the prefix changed up to `revision`.
    fn advance(&self, revision: Revision) {
        let mut state = self.write();
        if revision <= state.revision {
            return;
        }
        state.revision = revision;
        self.publish(revision);
    }

    /// Tells watchers that saw nothing lately the cache's revision.
    fn send_progress(&self) {
        let revision = self.read().revision;
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        watchers.retain_mut(|w| {
            if w.tx.is_closed() {
                return false;
            }
            w.quiet_ticks += 1;
            let due = w.announced < revision || w.quiet_ticks >= KEEPALIVE_TICKS;
            // Never announce a revision before the watcher's own start.
            if due && revision >= w.after {
                // A full buffer already holds news for this watcher; skipping is fine.
                if w.tx.try_send(CacheWatchItem::Progress(revision)).is_ok() {
                    w.announced = revision;
                    w.quiet_ticks = 0;
                }
            }
            true
        });
    }

    /// Replaces the contents after a relist. Watchers cannot be resumed across the
    /// gap, so they end (with `Stopped`) and their clients re-watch.
    fn replace(&self, items: BTreeMap<String, Arc<CacheEntry<T>>>, revision: Revision) {
        let mut state = self.write();
        self.watchers.lock().unwrap_or_else(|e| e.into_inner()).clear();
        state.items = items;
        state.history.clear();
        state.revision = state.revision.max(revision);
        state.oldest = state.revision;
        self.publish(state.revision);
    }
}

/// Sends one event to every watcher it concerns; drops watchers that are gone or
/// whose buffer is full.
fn fan_out<T>(watchers: &mut Vec<Slot<T>>, change: &CacheEvent<T>) {
    watchers.retain_mut(|w| {
        if change.revision <= w.after || !change.entry.key.starts_with(&w.prefix) {
            return true;
        }
        match w.tx.try_send(CacheWatchItem::Event(change.clone())) {
            Ok(()) => {
                w.announced = change.revision;
                w.quiet_ticks = 0;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                w.flags.too_slow.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

// === background task ===

/// Follows the store watch until the cache is dropped (the task is aborted).
async fn follow<T: Send + Sync + 'static>(shared: Arc<Shared<T>>, store: Arc<dyn Store>, decode: Decoder<T>, mut stream: WatchStream) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(WatchResponse::Events(events))) => {
                    let decoded = events.into_iter().map(|e| {
                        let object = decode(&e.kv);
                        (e, object)
                    }).collect();
                    shared.apply(decoded);
                }
                Some(Ok(WatchResponse::Progress(revision))) => shared.advance(revision),
                Some(Err(error)) => {
                    tracing::warn!(prefix = %shared.prefix, %error, "watch cache lost the store watch");
                    stream = recover(&shared, store.as_ref(), &decode, error).await;
                }
                None => {
                    tracing::warn!(prefix = %shared.prefix, "store watch ended; re-watching");
                    stream = recover(&shared, store.as_ref(), &decode, StoreError::Unavailable("watch ended".into())).await;
                }
            },
            _ = tick.tick() => shared.send_progress(),
        }
    }
}

/// Gets a new store watch: from the cache's revision if the store still has that
/// history, else by relisting. Retries with back-off until it succeeds.
async fn recover<T: Send + Sync + 'static>(shared: &Shared<T>, store: &dyn Store, decode: &Decoder<T>, mut error: StoreError) -> WatchStream {
    let mut delay = RETRY_MIN;
    loop {
        if !matches!(error, StoreError::Compacted { .. }) {
            let revision = shared.read().revision;
            match store.watch(&shared.prefix, revision).await {
                Ok(stream) => return stream,
                Err(e) => error = e,
            }
        }
        if matches!(error, StoreError::Compacted { .. }) {
            match relist(shared, store, decode).await {
                Ok(stream) => return stream,
                Err(e) => error = e,
            }
        }
        tracing::warn!(prefix = %shared.prefix, %error, retry_in = ?delay, "watch cache cannot follow the store yet");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

async fn relist<T: Send + Sync + 'static>(shared: &Shared<T>, store: &dyn Store, decode: &Decoder<T>) -> Result<WatchStream, StoreError> {
    let (items, revision) = load(store, &shared.prefix, decode).await?;
    let stream = store.watch(&shared.prefix, revision).await?;
    tracing::info!(prefix = %shared.prefix, revision, objects = items.len(), "watch cache relisted");
    shared.replace(items, revision);
    Ok(stream)
}

/// Lists `prefix` page by page at one revision and decodes it.
async fn load<T>(store: &dyn Store, prefix: &str, decode: &Decoder<T>) -> Result<(BTreeMap<String, Arc<CacheEntry<T>>>, Revision), StoreError> {
    let mut items = BTreeMap::new();
    let mut revision = None;
    let mut start_after = None;
    loop {
        let page = store.list(prefix, ListOptions { revision, start_after: start_after.take(), limit: Some(LOAD_PAGE) }).await?;
        revision = Some(page.revision);
        start_after = page.items.last().map(|kv| kv.key.clone());
        for kv in page.items {
            match decode(&kv) {
                Some(object) => {
                    let entry = CacheEntry { key: kv.key.clone(), create_revision: kv.create_revision, mod_revision: kv.mod_revision, object };
                    items.insert(kv.key, Arc::new(entry));
                }
                None => tracing::warn!(key = %kv.key, "watch cache cannot decode the stored value; skipping it"),
            }
        }
        if !page.more {
            return Ok((items, page.revision));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex as StdMutex;

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::{ListResult, SqliteStore};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Cached objects are the stored strings; the value "undecodable" is not.
    fn decoder() -> Decoder<String> {
        Arc::new(|kv: &KeyValue| String::from_utf8(kv.value.to_vec()).ok().filter(|s| s != "undecodable"))
    }

    fn store() -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_temporary().unwrap())
    }

    async fn cache(store: &Arc<dyn Store>, history: usize) -> WatchCache<String> {
        WatchCache::start(store.clone(), "/c/".into(), decoder(), history).await.unwrap()
    }

    async fn synced(cache: &WatchCache<String>, store: &Arc<dyn Store>) {
        let rev = store.current_revision().await.unwrap();
        cache.wait_for(rev, Duration::from_secs(10)).await.unwrap();
    }

    fn all(_: &CacheEntry<String>) -> bool {
        true
    }

    fn keys(list: &CacheList<String>) -> Vec<&str> {
        list.items.iter().map(|e| e.key.as_str()).collect()
    }

    /// The next event, skipping progress.
    async fn next_event(w: &mut CacheWatcher<String>) -> CacheEvent<String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("no event within 10s") {
                Ok(CacheWatchItem::Event(e)) => return e,
                Ok(CacheWatchItem::Progress(_)) => {}
                Err(e) => panic!("watcher failed: {e}"),
            }
        }
    }

    fn summary(e: &CacheEvent<String>) -> (CacheEventKind, &str, &str, Revision) {
        (e.kind, e.entry.key.as_str(), e.entry.object.as_str(), e.revision)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_lists_what_the_store_holds_under_the_prefix() {
        let store = store();
        for k in ["a", "b", "c", "d"] {
            store.create(&format!("/c/ns1/{k}"), b(k)).await.unwrap();
        }
        store.create("/c/ns2/a", b("other")).await.unwrap();
        store.create("/c/ns1/bad", b("undecodable")).await.unwrap();
        store.create("/elsewhere/x", b("x")).await.unwrap();
        let cache = cache(&store, 100).await;

        assert_eq!(cache.revision(), store.current_revision().await.unwrap());
        assert_eq!(cache.len(), 5, "undecodable values and other prefixes are not cached");
        let a = cache.get("/c/ns1/a").unwrap();
        assert_eq!((a.object.as_str(), a.create_revision, a.mod_revision), ("a", 1, 1));
        assert!(cache.get("/elsewhere/x").is_none());

        let ns1 = cache.list("/c/ns1/", None, 0, &all);
        assert_eq!(keys(&ns1), ["/c/ns1/a", "/c/ns1/b", "/c/ns1/c", "/c/ns1/d"]);
        assert!(!ns1.more);
        assert_eq!(ns1.revision, cache.revision());

        let page = cache.list("/c/ns1/", None, 2, &all);
        assert_eq!(keys(&page), ["/c/ns1/a", "/c/ns1/b"]);
        assert!(page.more);
        let rest = cache.list("/c/ns1/", Some("/c/ns1/b"), 2, &all);
        assert_eq!(keys(&rest), ["/c/ns1/c", "/c/ns1/d"]);
        assert!(!rest.more, "no entries follow the last page");

        let filtered = cache.list("/c/", None, 1, &|e| e.object != "a");
        assert_eq!(keys(&filtered), ["/c/ns1/b"]);
        assert!(filtered.more);
        let none_after = cache.list("/c/", None, 2, &|e| e.object == "d" || e.object == "b");
        assert_eq!(keys(&none_after), ["/c/ns1/b", "/c/ns1/d"]);
        assert!(!none_after.more, "more counts only entries that pass the filter");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_update_entries_and_advance_the_revision() {
        let store = store();
        let cache = cache(&store, 100).await;
        let x = store.create("/c/x", b("1")).await.unwrap();
        let x2 = store.update("/c/x", b("2"), x.mod_revision).await.unwrap();
        store.create("/c/y", b("y")).await.unwrap();
        let y_gone = store.delete("/c/y", None).await.unwrap();
        cache.wait_for(y_gone.mod_revision, Duration::from_secs(10)).await.unwrap();

        let e = cache.get("/c/x").unwrap();
        assert_eq!((e.object.as_str(), e.create_revision, e.mod_revision), ("2", x.mod_revision, x2.mod_revision));
        assert!(cache.get("/c/y").is_none());
        assert_eq!(cache.len(), 1);

        // Writes elsewhere advance the cache through progress notifications alone.
        let outside = store.create("/other/z", b("z")).await.unwrap();
        cache.wait_for(outside.mod_revision, Duration::from_secs(10)).await.unwrap();
        assert_eq!(cache.revision(), outside.mod_revision);

        match cache.wait_for(outside.mod_revision + 5, Duration::from_millis(50)).await {
            Err(CacheError::Timeout { wanted, current }) => assert_eq!((wanted, current), (outside.mod_revision + 5, outside.mod_revision)),
            other => panic!("expected Timeout, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_events_carry_the_last_state() {
        let store = store();
        let cache = cache(&store, 100).await;
        let mut w = cache.watch("/c/", cache.revision()).unwrap();
        let v1 = store.create("/c/x", b("first")).await.unwrap();
        let v2 = store.update("/c/x", b("last"), v1.mod_revision).await.unwrap();
        let gone = store.delete("/c/x", None).await.unwrap();

        let added = next_event(&mut w).await;
        assert_eq!(summary(&added), (CacheEventKind::Added, "/c/x", "first", v1.mod_revision));
        assert!(added.prev.is_none());
        let modified = next_event(&mut w).await;
        assert_eq!(summary(&modified), (CacheEventKind::Modified, "/c/x", "last", v2.mod_revision));
        assert_eq!(modified.prev.as_ref().unwrap().object, "first");
        let deleted = next_event(&mut w).await;
        assert_eq!(summary(&deleted), (CacheEventKind::Deleted, "/c/x", "last", gone.mod_revision));
        assert_eq!(deleted.entry.mod_revision, gone.mod_revision, "a deleted entry carries the delete's revision");
        assert_eq!(deleted.entry.create_revision, v1.mod_revision);
        let prev = deleted.prev.as_ref().unwrap();
        assert_eq!((prev.object.as_str(), prev.mod_revision), ("last", v2.mod_revision));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_resumes_from_a_revision_in_history() {
        let store = store();
        let cache = cache(&store, 100).await;
        let a = store.create("/c/ns1/a", b("a")).await.unwrap();
        store.create("/c/ns2/b", b("b")).await.unwrap();
        let a2 = store.update("/c/ns1/a", b("a2"), a.mod_revision).await.unwrap();
        let c = store.create("/c/ns1/c", b("c")).await.unwrap();
        synced(&cache, &store).await;

        let mut w = cache.watch("/c/ns1/", a.mod_revision).unwrap();
        assert_eq!(summary(&next_event(&mut w).await), (CacheEventKind::Modified, "/c/ns1/a", "a2", a2.mod_revision));
        assert_eq!(summary(&next_event(&mut w).await), (CacheEventKind::Added, "/c/ns1/c", "c", c.mod_revision));
        // Then live events, and only those under the prefix.
        store.create("/c/ns2/d", b("d")).await.unwrap();
        let e = store.create("/c/ns1/e", b("e")).await.unwrap();
        assert_eq!(summary(&next_event(&mut w).await), (CacheEventKind::Added, "/c/ns1/e", "e", e.mod_revision));

        // A watch from a revision ahead of the cache starts there.
        let ahead = cache.revision() + 1;
        let mut w = cache.watch("/c/", ahead).unwrap();
        store.create("/c/skipped", b("s")).await.unwrap();
        let f = store.create("/c/f", b("f")).await.unwrap();
        assert_eq!(next_event(&mut w).await.revision, f.mod_revision);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_from_before_the_kept_history_is_too_old() {
        let store = store();
        let start_rev = store.create("/c/first", b("0")).await.unwrap().mod_revision;
        let cache = cache(&store, 3).await;
        match cache.watch("/c/", start_rev - 1) {
            Err(CacheError::TooOld { requested, oldest }) => assert_eq!((requested, oldest), (start_rev - 1, start_rev)),
            other => panic!("expected TooOld, got {:?}", other.map(|_| ())),
        }
        let mut revs = Vec::new();
        for i in 0..5 {
            revs.push(store.create(&format!("/c/k{i}"), b("v")).await.unwrap().mod_revision);
        }
        synced(&cache, &store).await;
        // Three events kept: those after revs[1].
        assert!(matches!(cache.watch("/c/", revs[0]), Err(CacheError::TooOld { oldest, .. }) if oldest == revs[1]));
        let mut w = cache.watch("/c/", revs[1]).unwrap();
        for rev in &revs[2..] {
            assert_eq!(next_event(&mut w).await.revision, *rev);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_and_watch_has_no_gap_and_no_duplicate() {
        let store = store();
        let cache = Arc::new(cache(&store, 10_000).await);
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut last = 0;
                for i in 0..300 {
                    let key = format!("/c/k{:03}", i % 50);
                    last = match store.get(&key).await.unwrap() {
                        Some(kv) if i % 7 == 0 => store.delete(&key, Some(kv.mod_revision)).await.unwrap().mod_revision,
                        Some(kv) => store.update(&key, b(&i.to_string()), kv.mod_revision).await.unwrap().mod_revision,
                        None => store.create(&key, b(&i.to_string())).await.unwrap().mod_revision,
                    };
                }
                last
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let (list, mut w) = cache.list_and_watch("/c/", &all);
        let last = writer.await.unwrap();

        // Replaying the watch onto the list must give exactly the store's final state.
        let mut state: BTreeMap<String, (String, Revision)> =
            list.items.iter().map(|e| (e.key.clone(), (e.object.clone(), e.mod_revision))).collect();
        assert!(list.items.iter().all(|e| e.mod_revision <= list.revision));
        let mut seen = list.revision;
        while seen < last {
            let e = next_event(&mut w).await;
            assert!(e.revision > seen, "event {} repeats or goes back from {seen}", e.revision);
            seen = e.revision;
            match e.kind {
                CacheEventKind::Added => assert!(state.insert(e.entry.key.clone(), (e.entry.object.clone(), e.revision)).is_none(), "ADDED for a listed key"),
                CacheEventKind::Modified => assert!(state.insert(e.entry.key.clone(), (e.entry.object.clone(), e.revision)).is_some(), "MODIFIED for an unknown key"),
                CacheEventKind::Deleted => assert!(state.remove(&e.entry.key).is_some(), "DELETED for an unknown key"),
            }
        }
        let fresh = store.list("/c/", ListOptions::default()).await.unwrap();
        let expected: BTreeMap<String, (String, Revision)> = fresh
            .items
            .into_iter()
            .map(|kv| (kv.key, (String::from_utf8(kv.value.to_vec()).unwrap(), kv.mod_revision)))
            .collect();
        assert_eq!(state, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_that_does_not_keep_up_gets_too_slow() {
        let store = store();
        let cache = cache(&store, 10).await;
        let mut slow = cache.watch("/c/", cache.revision()).unwrap();
        let mut other_prefix = cache.watch("/c/quiet/", cache.revision()).unwrap();
        let n = WATCHER_BUFFER + 10;
        let writes = (0..n).map(|i| {
            let store = store.clone();
            async move { store.create(&format!("/c/k{i:05}"), b("v")).await.unwrap() }
        });
        futures::future::join_all(writes).await;
        synced(&cache, &store).await;
        // The revision is published just before the fan-out, which runs under the
        // state lock: taking the lock once more waits for it to finish, so the
        // watcher cannot make room by reading while the last events are sent.
        assert_eq!(cache.len(), n);

        let mut events = 0;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), slow.next()).await.expect("the slow watcher was never ended") {
                Ok(CacheWatchItem::Event(_)) => events += 1,
                Ok(CacheWatchItem::Progress(_)) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(end, CacheError::TooSlow), "expected TooSlow, got {end:?}");
        assert!(events <= WATCHER_BUFFER, "a too-slow watcher got {events} events, more than its buffer");
        // A watcher whose prefix saw nothing is unaffected.
        store.create("/c/quiet/x", b("q")).await.unwrap();
        assert_eq!(next_event(&mut other_prefix).await.entry.key, "/c/quiet/x");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quiet_watchers_get_progress_at_the_cache_revision() {
        let store = store();
        let cache = cache(&store, 10).await;
        let mut w = cache.watch("/c/quiet/", cache.revision()).unwrap();
        let rev = store.create("/c/busy", b("x")).await.unwrap().mod_revision;
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
            Ok(Ok(CacheWatchItem::Progress(r))) => assert_eq!(r, rev),
            other => panic!("expected a progress item, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_cache_stops_its_watchers() {
        let store = store();
        let cache = cache(&store, 10).await;
        let mut w = cache.watch("/c/", cache.revision()).unwrap();
        drop(cache);
        assert!(matches!(w.next().await, Err(CacheError::Stopped)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_thousand_entries_list_in_key_order() {
        const N: usize = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rev = crate::sqlite::seed(&path, (0..N).map(|i| (format!("/c/ns{}/pod-{i:06}", i % 10), Bytes::from(format!("pod {i}"))))).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let cache = cache(&store, 1000).await;
        assert_eq!(cache.revision(), rev);
        assert_eq!(cache.len(), N);

        let list = cache.list("/c/", None, 0, &all);
        assert_eq!(list.items.len(), N);
        assert!(list.items.windows(2).all(|w| w[0].key < w[1].key), "a list must be in key order");
        let ns3 = cache.list("/c/ns3/", None, 0, &all);
        assert_eq!(ns3.items.len(), N / 10);
        assert!(ns3.items.iter().all(|e| e.key.starts_with("/c/ns3/") && e.object == format!("pod {}", &e.key[11..].trim_start_matches('0').parse::<usize>().unwrap_or(0))));

        // Paging through everything returns every entry once.
        let mut count = 0;
        let mut after: Option<String> = None;
        loop {
            let page = cache.list("/c/", after.as_deref(), 5000, &all);
            count += page.items.len();
            after = page.items.last().map(|e| e.key.clone());
            if !page.more {
                break;
            }
        }
        assert_eq!(count, N);
    }

    /// Wraps a store so a test can make its watches fail.
    struct Flaky {
        inner: SqliteStore,
        fail: StdMutex<Vec<mpsc::UnboundedSender<Result<WatchResponse, StoreError>>>>,
    }

    impl Flaky {
        fn break_watches(&self, error: impl Fn() -> StoreError) {
            for tx in self.fail.lock().unwrap().drain(..) {
                let _ = tx.send(Err(error()));
            }
        }
    }

    #[async_trait]
    impl Store for Flaky {
        async fn get(&self, key: &str) -> crate::Result<Option<KeyValue>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str, opts: ListOptions) -> crate::Result<ListResult> {
            self.inner.list(prefix, opts).await
        }
        async fn current_revision(&self) -> crate::Result<Revision> {
            self.inner.current_revision().await
        }
        async fn create(&self, key: &str, value: Bytes) -> crate::Result<KeyValue> {
            self.inner.create(key, value).await
        }
        async fn update(&self, key: &str, value: Bytes, expected: Revision) -> crate::Result<KeyValue> {
            self.inner.update(key, value, expected).await
        }
        async fn delete(&self, key: &str, expected: Option<Revision>) -> crate::Result<KeyValue> {
            self.inner.delete(key, expected).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> crate::Result<WatchStream> {
            let inner = self.inner.watch(prefix, after).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            self.fail.lock().unwrap().push(tx);
            // The injected error comes first once sent; the stream ends after it.
            let injected = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
            let merged = futures::stream::select(injected, inner).scan(false, |failed, item| {
                let out = if *failed { None } else { Some(item) };
                *failed |= matches!(out, Some(Err(_)));
                futures::future::ready(out)
            });
            Ok(Box::pin(merged))
        }
        async fn compact(&self, revision: Revision) -> crate::Result<()> {
            self.inner.compact(revision).await
        }
        async fn compacted_revision(&self) -> crate::Result<Revision> {
            self.inner.compacted_revision().await
        }
        fn max_value_size(&self) -> usize {
            self.inner.max_value_size()
        }
        fn backend(&self) -> &'static str {
            "flaky"
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_store_watch_is_resumed_without_losing_watchers() {
        let flaky = Arc::new(Flaky { inner: SqliteStore::open_temporary().unwrap(), fail: StdMutex::new(Vec::new()) });
        let store: Arc<dyn Store> = flaky.clone();
        let cache = cache(&store, 100).await;
        let mut w = cache.watch("/c/", cache.revision()).unwrap();
        flaky.break_watches(|| StoreError::Unavailable("connection reset".into()));
        let kv = store.create("/c/after-error", b("v")).await.unwrap();
        let e = next_event(&mut w).await;
        assert_eq!((e.entry.key.as_str(), e.revision), ("/c/after-error", kv.mod_revision));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compacted_store_watch_makes_the_cache_relist_and_end_its_watchers() {
        let flaky = Arc::new(Flaky { inner: SqliteStore::open_temporary().unwrap(), fail: StdMutex::new(Vec::new()) });
        let store: Arc<dyn Store> = flaky.clone();
        store.create("/c/kept", b("1")).await.unwrap();
        let doomed = store.create("/c/doomed", b("1")).await.unwrap();
        let cache = cache(&store, 100).await;
        let old = cache.revision();
        let mut w = cache.watch("/c/", old).unwrap();

        // Pretend the cache missed these: its store watch fails as compacted.
        store.delete("/c/doomed", Some(doomed.mod_revision)).await.unwrap();
        let new = store.create("/c/new", b("2")).await.unwrap();
        store.compact(new.mod_revision).await.unwrap();
        flaky.break_watches(|| StoreError::Compacted { requested: old, compacted: new.mod_revision });

        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap() {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(end, CacheError::Stopped), "expected Stopped, got {end:?}");
        cache.wait_for(new.mod_revision, Duration::from_secs(10)).await.unwrap();
        assert_eq!(keys(&cache.list("/c/", None, 0, &all)), ["/c/kept", "/c/new"]);
        assert!(matches!(cache.watch("/c/", old), Err(CacheError::TooOld { .. })));
        // And it follows the store again.
        let mut w = cache.watch("/c/", cache.revision()).unwrap();
        store.create("/c/later", b("3")).await.unwrap();
        assert_eq!(next_event(&mut w).await.entry.key, "/c/later");
    }
}
