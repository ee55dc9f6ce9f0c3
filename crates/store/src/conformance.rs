//! The conformance suite: the [`Store`] contract as executable checks.
//!
//! Every backend runs the same checks, so the API server can rely on the contract
//! rather than on one implementation. Each check is a `pub async fn` taking a fresh,
//! empty store and panicking on a violation. A backend's test file runs them with
//! one line, which expands to one `#[tokio::test]` per check so each shows up by
//! name:
//!
//! ```text
//! async fn make() -> std::sync::Arc<dyn skiff_store::Store> {
//!     std::sync::Arc::new(skiff_store::SqliteStore::open_temporary().unwrap())
//! }
//! skiff_store::conformance_tests!(make);
//! ```
//!
//! The test crate needs `tokio` with the `macros` and `rt-multi-thread` features.
//! [`run_all`] runs every check in sequence instead.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError, WatchResponse, WatchStream};

/// How long a check waits for an expected event or progress notification.
const WAIT: Duration = Duration::from_secs(10);

/// Expands to one `#[tokio::test]` per conformance check, each calling `$make()`
/// (an `async fn() -> Arc<dyn Store>` returning a fresh, empty store).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            revisions_increase_across_keys,
            create_fails_when_the_key_exists,
            update_with_a_stale_revision_conflicts_and_returns_the_current_value,
            delete_honours_the_expected_revision,
            get_and_list_read_the_latest_and_older_revisions,
            list_paginates_with_start_after_and_limit,
            prefixes_are_isolated,
            watch_from_a_past_revision_replays_missed_events_then_follows,
            watch_from_the_current_revision_sees_only_new_events,
            compaction_keeps_latest_values_and_rejects_older_revisions,
            values_over_the_limit_are_rejected,
            concurrent_writers_get_unique_revisions_seen_once_by_watch,
            a_quiet_prefix_gets_progress_notifications,
        );
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::conformance::$check($make().await).await;
            }
        )*
    };
}

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    revisions_increase_across_keys(make().await).await;
    create_fails_when_the_key_exists(make().await).await;
    update_with_a_stale_revision_conflicts_and_returns_the_current_value(make().await).await;
    delete_honours_the_expected_revision(make().await).await;
    get_and_list_read_the_latest_and_older_revisions(make().await).await;
    list_paginates_with_start_after_and_limit(make().await).await;
    prefixes_are_isolated(make().await).await;
    watch_from_a_past_revision_replays_missed_events_then_follows(make().await).await;
    watch_from_the_current_revision_sees_only_new_events(make().await).await;
    compaction_keeps_latest_values_and_rejects_older_revisions(make().await).await;
    values_over_the_limit_are_rejected(make().await).await;
    concurrent_writers_get_unique_revisions_seen_once_by_watch(make().await).await;
    a_quiet_prefix_gets_progress_notifications(make().await).await;
}

// === helpers ===

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn create(store: &dyn Store, key: &str, value: &str) -> KeyValue {
    store.create(key, b(value)).await.unwrap_or_else(|e| panic!("create {key}: {e}"))
}

async fn list_all(store: &dyn Store, prefix: &str, revision: Option<Revision>) -> Vec<(String, String)> {
    let list = store.list(prefix, ListOptions { revision, ..Default::default() }).await.unwrap_or_else(|e| panic!("list {prefix}: {e}"));
    assert!(!list.more, "a list without limit returned more = true");
    list.items.into_iter().map(|kv| (kv.key, String::from_utf8_lossy(&kv.value).into_owned())).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Collects the next `n` events (skipping progress), failing after [`WAIT`].
async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while events.len() < n {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(WatchResponse::Events(batch)))) => {
                assert!(!batch.is_empty(), "a watch sent an empty batch of events");
                events.extend(batch);
            }
            Ok(Some(Ok(WatchResponse::Progress(_)))) => {}
            Ok(Some(Err(e))) => panic!("watch failed after {} of {n} events: {e}", events.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", events.len()),
            Err(_) => panic!("timed out after {} of {n} events", events.len()),
        }
    }
    assert_eq!(events.len(), n, "the watch sent more events than written: {events:?}");
    events
}

/// Asserts that no event arrives for a short while (progress is fine).
async fn assert_no_events(stream: &mut WatchStream) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return,
            Ok(Some(Ok(WatchResponse::Progress(_)))) => {}
            Ok(other) => panic!("expected no events, got {other:?}"),
        }
    }
}

fn summary(events: &[Event]) -> Vec<(EventKind, String, String, Revision)> {
    events.iter().map(|e| (e.kind, e.kv.key.clone(), String::from_utf8_lossy(&e.kv.value).into_owned(), e.revision())).collect()
}

// === checks ===

/// Every write gets a new revision, larger than all before it, across keys; the
/// store's current revision follows.
pub async fn revisions_increase_across_keys(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let a = create(&*store, "/r/a", "1").await;
    let b1 = create(&*store, "/r/b", "1").await;
    let a2 = store.update("/r/a", b("2"), a.mod_revision).await.unwrap();
    let gone = store.delete("/r/b", None).await.unwrap();
    let revs = [a.mod_revision, b1.mod_revision, a2.mod_revision, gone.mod_revision];
    assert!(revs[0] > start, "first write {} not after the start revision {start}", revs[0]);
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "revisions do not strictly increase: {revs:?}");
    assert_eq!(store.current_revision().await.unwrap(), gone.mod_revision);
    assert_eq!(a.create_revision, a.mod_revision, "a created key's create and mod revisions differ");
    assert_eq!(a2.create_revision, a.create_revision, "an update changed the create revision");
    let got = store.get("/r/a").await.unwrap().expect("/r/a exists");
    assert_eq!(got, a2);
    assert_eq!(store.get("/r/b").await.unwrap(), None);
    assert_eq!(store.get("/r/never").await.unwrap(), None);
}

/// `create` is create-if-absent; a deleted key can be created again, as a new key.
pub async fn create_fails_when_the_key_exists(store: Arc<dyn Store>) {
    let first = create(&*store, "/c/x", "one").await;
    match store.create("/c/x", b("two")).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/c/x"),
        other => panic!("second create: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get("/c/x").await.unwrap().unwrap().value, b("one"), "a failed create changed the value");
    store.delete("/c/x", None).await.unwrap();
    let again = create(&*store, "/c/x", "three").await;
    assert!(again.create_revision > first.create_revision, "a re-created key kept its old create revision");
    assert_eq!(again.create_revision, again.mod_revision);
}

/// `update` is compare-and-swap on the mod revision; a conflict reports the value
/// now stored, and a missing key is `NotFound`.
pub async fn update_with_a_stale_revision_conflicts_and_returns_the_current_value(store: Arc<dyn Store>) {
    let v1 = create(&*store, "/u/x", "1").await;
    let v2 = store.update("/u/x", b("2"), v1.mod_revision).await.unwrap();
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.value, b("2"));
    let before = store.current_revision().await.unwrap();
    match store.update("/u/x", b("stale"), v1.mod_revision).await {
        Err(StoreError::Conflict { key, expected, current }) => {
            assert_eq!(key, "/u/x");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current, Some(v2.clone()), "a conflict must return the current value");
        }
        other => panic!("stale update: expected Conflict, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.unwrap(), before, "a failed update consumed a revision");
    assert_eq!(store.get("/u/x").await.unwrap(), Some(v2));
    match store.update("/u/missing", b("x"), 1).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/u/missing"),
        other => panic!("update of a missing key: expected NotFound, got {other:?}"),
    }
}

/// `delete` with an expected revision is conditional; without, it is not. It
/// returns the last value with the delete's revision.
pub async fn delete_honours_the_expected_revision(store: Arc<dyn Store>) {
    let v1 = create(&*store, "/d/x", "1").await;
    let v2 = store.update("/d/x", b("2"), v1.mod_revision).await.unwrap();
    match store.delete("/d/x", Some(v1.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, Some(v2.clone())),
        other => panic!("stale delete: expected Conflict, got {other:?}"),
    }
    let deleted = store.delete("/d/x", Some(v2.mod_revision)).await.unwrap();
    assert_eq!(deleted.value, b("2"), "delete must return the last value");
    assert_eq!(deleted.create_revision, v1.create_revision);
    assert!(deleted.mod_revision > v2.mod_revision, "a delete must get its own revision");
    assert_eq!(store.current_revision().await.unwrap(), deleted.mod_revision);
    assert_eq!(store.get("/d/x").await.unwrap(), None);
    assert!(matches!(store.delete("/d/x", None).await, Err(StoreError::NotFound { .. })), "deleting a deleted key must be NotFound");
    assert!(matches!(store.delete("/d/x", Some(deleted.mod_revision)).await, Err(StoreError::NotFound { .. })));

    create(&*store, "/d/y", "y").await;
    let y = store.delete("/d/y", None).await.unwrap();
    assert_eq!(y.value, b("y"));
    assert_eq!(store.get("/d/y").await.unwrap(), None);
}

/// `get` and `list` read the latest state, and `list` reads any retained revision.
pub async fn get_and_list_read_the_latest_and_older_revisions(store: Arc<dyn Store>) {
    let a1 = create(&*store, "/l/a", "a1").await;
    let b1 = create(&*store, "/l/b", "b1").await;
    let a2 = store.update("/l/a", b("a2"), a1.mod_revision).await.unwrap();
    let b_gone = store.delete("/l/b", None).await.unwrap();
    let c1 = create(&*store, "/l/c", "c1").await;

    let latest = store.list("/l/", ListOptions::default()).await.unwrap();
    assert_eq!(latest.revision, c1.mod_revision, "a latest list reports the current revision");
    assert_eq!(latest.items, vec![a2.clone(), c1.clone()]);
    assert_eq!(list_all(&*store, "/l/", Some(a1.mod_revision)).await, pairs(&[("/l/a", "a1")]));
    assert_eq!(list_all(&*store, "/l/", Some(b1.mod_revision)).await, pairs(&[("/l/a", "a1"), ("/l/b", "b1")]));
    assert_eq!(list_all(&*store, "/l/", Some(a2.mod_revision)).await, pairs(&[("/l/a", "a2"), ("/l/b", "b1")]));
    assert_eq!(list_all(&*store, "/l/", Some(b_gone.mod_revision)).await, pairs(&[("/l/a", "a2")]));

    let old = store.list("/l/", ListOptions { revision: Some(b1.mod_revision), ..Default::default() }).await.unwrap();
    assert_eq!(old.revision, b1.mod_revision, "a list at a revision reports that revision");
    assert_eq!(old.items[0], a1, "an old read returns the revisions the key had then");

    let future = c1.mod_revision + 100;
    match store.list("/l/", ListOptions { revision: Some(future), ..Default::default() }).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, future),
        other => panic!("list at a future revision: expected FutureRevision, got {other:?}"),
    }
}

/// `limit`, `start_after` and `more` page through a prefix; pages read at the
/// first page's revision are not disturbed by later writes.
pub async fn list_paginates_with_start_after_and_limit(store: Arc<dyn Store>) {
    for i in 0..10 {
        create(&*store, &format!("/p/k{i:02}"), &i.to_string()).await;
    }
    create(&*store, "/q/outside", "x").await;

    let first = store.list("/p/", ListOptions { limit: Some(4), ..Default::default() }).await.unwrap();
    assert_eq!(first.items.len(), 4);
    assert!(first.more);
    let rev = first.revision;
    // A write between pages must not show up in pages read at the first revision.
    create(&*store, "/p/k05a", "late").await;

    let mut keys: Vec<String> = first.items.iter().map(|kv| kv.key.clone()).collect();
    let mut after = keys.last().cloned();
    loop {
        let page = store.list("/p/", ListOptions { revision: Some(rev), start_after: after.clone(), limit: Some(4) }).await.unwrap();
        assert_eq!(page.revision, rev);
        assert!(page.items.len() <= 4);
        keys.extend(page.items.iter().map(|kv| kv.key.clone()));
        after = page.items.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
        assert_eq!(page.items.len(), 4, "a page with more = true must be full");
    }
    let expected: Vec<String> = (0..10).map(|i| format!("/p/k{i:02}")).collect();
    assert_eq!(keys, expected);

    let exact = store.list("/p/", ListOptions { limit: Some(11), ..Default::default() }).await.unwrap();
    assert_eq!(exact.items.len(), 11);
    assert!(!exact.more, "more must be false when the limit equals the remaining count");

    let tail = store.list("/p/", ListOptions { start_after: Some("/p/k08".into()), ..Default::default() }).await.unwrap();
    assert_eq!(tail.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["/p/k09"]);
    let zero = store.list("/p/", ListOptions { limit: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!(zero.items.len(), 11, "limit 0 means no limit");
    assert!(!zero.more);
}

/// A prefix ending in `/` does not reach keys that merely share its characters.
pub async fn prefixes_are_isolated(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/a/", start).await.unwrap();
    create(&*store, "/a", "bare").await;
    create(&*store, "/ab/y", "ab").await;
    let ax = create(&*store, "/a/x", "a").await;
    create(&*store, "/a0", "after").await;
    assert_eq!(list_all(&*store, "/a/", None).await, pairs(&[("/a/x", "a")]));
    assert_eq!(list_all(&*store, "/ab/", None).await, pairs(&[("/ab/y", "ab")]));
    let events = next_events(&mut watch, 1).await;
    assert_eq!(events[0].kv, ax);
    assert_no_events(&mut watch).await;
}

/// A watch from a past revision replays exactly the events after it, in order,
/// then follows live writes.
pub async fn watch_from_a_past_revision_replays_missed_events_then_follows(store: Arc<dyn Store>) {
    create(&*store, "/w/before", "x").await;
    let from = store.current_revision().await.unwrap();
    let a1 = create(&*store, "/w/a", "a1").await;
    create(&*store, "/other/z", "z").await;
    let a2 = store.update("/w/a", b("a2"), a1.mod_revision).await.unwrap();
    let b1 = create(&*store, "/w/b", "b1").await;
    let a_gone = store.delete("/w/a", None).await.unwrap();

    let mut watch = store.watch("/w/", from).await.unwrap();
    let replayed = next_events(&mut watch, 4).await;
    assert_eq!(
        summary(&replayed),
        vec![
            (EventKind::Put, "/w/a".into(), "a1".into(), a1.mod_revision),
            (EventKind::Put, "/w/a".into(), "a2".into(), a2.mod_revision),
            (EventKind::Put, "/w/b".into(), "b1".into(), b1.mod_revision),
            (EventKind::Delete, "/w/a".into(), "a2".into(), a_gone.mod_revision),
        ]
    );
    assert_eq!(replayed[0].kv, a1);
    assert_eq!(replayed[1].kv, a2);
    assert_eq!(replayed[3].kv, a_gone, "a delete event carries the last value and the delete's revision");
    if let Some(prev) = &replayed[1].prev {
        assert_eq!(prev, &a1, "an update's prev is the value it replaced");
    }
    if let Some(prev) = &replayed[3].prev {
        assert_eq!(prev, &a2, "a delete's prev is the value it removed");
    }

    let b2 = store.update("/w/b", b("b2"), b1.mod_revision).await.unwrap();
    let live = next_events(&mut watch, 1).await;
    assert_eq!(live[0].kv, b2);
    assert_eq!(live[0].kind, EventKind::Put);
    assert_no_events(&mut watch).await;
}

/// A watch from the current revision sees nothing old, and every new write once.
pub async fn watch_from_the_current_revision_sees_only_new_events(store: Arc<dyn Store>) {
    let old = create(&*store, "/n/old", "x").await;
    let now = store.current_revision().await.unwrap();
    let mut watch = store.watch("/n/", now).await.unwrap();
    assert_no_events(&mut watch).await;
    let fresh = create(&*store, "/n/new", "y").await;
    let gone = store.delete("/n/old", Some(old.mod_revision)).await.unwrap();
    let events = next_events(&mut watch, 2).await;
    assert_eq!(events[0].kv, fresh);
    assert_eq!(events[1].kind, EventKind::Delete);
    assert_eq!(events[1].kv, gone);
    assert_no_events(&mut watch).await;
}

/// After `compact(rev)`, reads and watches before `rev` fail with `Compacted`;
/// reads at `rev` and later, and every key's latest value, are intact.
pub async fn compaction_keeps_latest_values_and_rejects_older_revisions(store: Arc<dyn Store>) {
    let mut kv = create(&*store, "/k/busy", "0").await;
    for i in 1..20 {
        kv = store.update("/k/busy", b(&i.to_string()), kv.mod_revision).await.unwrap();
    }
    let quiet = create(&*store, "/k/quiet", "q").await;
    create(&*store, "/k/gone", "g").await;
    let gone = store.delete("/k/gone", None).await.unwrap();
    let early = quiet.mod_revision - 1;
    let at = store.current_revision().await.unwrap();
    let after_compaction = store.update("/k/quiet", b("q2"), quiet.mod_revision).await.unwrap();

    store.compact(at).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), at);

    match store.list("/k/", ListOptions { revision: Some(early), ..Default::default() }).await {
        Err(StoreError::Compacted { requested, compacted }) => {
            assert_eq!(requested, early);
            assert_eq!(compacted, at);
        }
        other => panic!("list at a compacted revision: expected Compacted, got {other:?}"),
    }
    match store.watch("/k/", at - 1).await {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, at),
        Err(e) => panic!("watch from a compacted revision: expected Compacted, got {e}"),
        Ok(mut stream) => match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Err(StoreError::Compacted { compacted, .. }))) => assert_eq!(compacted, at),
            other => panic!("watch from a compacted revision: expected Compacted, got {other:?}"),
        },
    }

    assert_eq!(list_all(&*store, "/k/", Some(at)).await, pairs(&[("/k/busy", "19"), ("/k/quiet", "q")]));
    assert_eq!(list_all(&*store, "/k/", None).await, pairs(&[("/k/busy", "19"), ("/k/quiet", "q2")]));
    assert_eq!(store.get("/k/busy").await.unwrap(), Some(kv.clone()), "compaction lost a live key's latest value");
    assert_eq!(store.get("/k/gone").await.unwrap(), None, "compaction revived a deleted key");
    assert!(gone.mod_revision <= at);

    let mut watch = store.watch("/k/", at).await.unwrap();
    let events = next_events(&mut watch, 1).await;
    assert_eq!(events[0].kv, after_compaction, "a watch from the compacted revision replays what followed it");
    let busy = store.update("/k/busy", b("20"), kv.mod_revision).await.unwrap();
    assert_eq!(next_events(&mut watch, 1).await[0].kv, busy);

    assert!(store.compact(store.current_revision().await.unwrap() + 10).await.is_err(), "compacting a future revision must fail");
    assert_eq!(store.compacted_revision().await.unwrap(), at);
}

/// Values above `max_value_size` are refused with `TooLarge`; the limit itself is fine.
pub async fn values_over_the_limit_are_rejected(store: Arc<dyn Store>) {
    let limit = store.max_value_size();
    assert!(limit >= 1024 * 1024, "the value limit {limit} is below 1 MiB");
    let at_limit = Bytes::from(vec![b'x'; limit]);
    let kv = store.create("/big/ok", at_limit.clone()).await.unwrap();
    assert_eq!(store.get("/big/ok").await.unwrap().unwrap().value.len(), limit);

    let over = Bytes::from(vec![b'x'; limit + 1]);
    let before = store.current_revision().await.unwrap();
    match store.create("/big/no", over.clone()).await {
        Err(StoreError::TooLarge { key, size, limit: l }) => {
            assert_eq!(key, "/big/no");
            assert_eq!(size, limit + 1);
            assert_eq!(l, limit);
        }
        other => panic!("oversized create: expected TooLarge, got {other:?}"),
    }
    assert!(matches!(store.update("/big/ok", over, kv.mod_revision).await, Err(StoreError::TooLarge { .. })));
    assert_eq!(store.current_revision().await.unwrap(), before, "a refused write consumed a revision");
    assert_eq!(store.get("/big/no").await.unwrap(), None);
}

/// Concurrent writers all succeed with distinct revisions, and a watch sees every
/// write exactly once, in revision order.
pub async fn concurrent_writers_get_unique_revisions_seen_once_by_watch(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const WRITES: usize = 200;
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/cw/", start).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::with_capacity(WRITES);
            // Half creates of own keys, half compare-and-swap updates of one shared key
            // per task, so both paths run concurrently.
            let mut own = store.create(&format!("/cw/t{t}/counter"), b("0")).await.unwrap();
            revs.push(own.mod_revision);
            for i in 1..WRITES {
                let kv = if i % 2 == 0 {
                    store.create(&format!("/cw/t{t}/k{i:04}"), b(&i.to_string())).await.unwrap()
                } else {
                    own = store.update(&format!("/cw/t{t}/counter"), b(&i.to_string()), own.mod_revision).await.unwrap();
                    own.clone()
                };
                revs.push(kv.mod_revision);
            }
            revs
        }));
    }
    let mut written = BTreeSet::new();
    for task in tasks {
        for rev in task.await.unwrap() {
            assert!(written.insert(rev), "revision {rev} was given to two writes");
        }
    }
    assert_eq!(written.len(), TASKS * WRITES);
    assert!(*written.first().unwrap() > start);

    let events = next_events(&mut watch, TASKS * WRITES).await;
    let seen: Vec<Revision> = events.iter().map(Event::revision).collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "watch events are not in strictly increasing revision order");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), written, "the watch did not see exactly the acknowledged writes");
    assert_no_events(&mut watch).await;
}

/// A watch on a prefix nobody writes to still learns that the store moved on.
pub async fn a_quiet_prefix_gets_progress_notifications(store: Arc<dyn Store>) {
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/quiet/", start).await.unwrap();
    let mut last = 0;
    for i in 0..5 {
        last = create(&*store, &format!("/busy/{i}"), "x").await.mod_revision;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, watch.next()).await {
            Ok(Some(Ok(WatchResponse::Progress(rev)))) if rev >= last => break,
            Ok(Some(Ok(WatchResponse::Progress(rev)))) => assert!(rev <= last, "progress {rev} beyond the current revision {last}"),
            Ok(other) => panic!("a quiet prefix got {other:?}"),
            Err(_) => panic!("no progress notification reached revision {last} within {WAIT:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_passes_on_sqlite() {
        run_all(|| async { Arc::new(SqliteStore::open_temporary().unwrap()) as Arc<dyn Store> }).await;
    }
}
