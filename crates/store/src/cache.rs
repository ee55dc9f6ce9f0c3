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
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
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
            fan_out(&mut watchers, &change);
            state.history.push_back(change);
            while state.history.len() > state.capacity {
                if let Some(dropped) = state.history.pop_front() {
                    state.oldest = dropped.revision;
                }
            }
        }
        let revision = state.revision;
        drop(watchers);
        drop(state);
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
        drop(state);
        self.revision.send_if_modified(|r| {
            let moved = *r < revision;
            *r = (*r).max(revision);
            moved
        });
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
        let revision = state.revision;
        drop(state);
        self.revision.send_if_modified(|r| {
            let moved = *r < revision;
            *r = (*r).max(revision);
            moved
        });
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
