//! A work queue with client-go's semantics: an item is handed to at most one worker
//! at a time; adding it again while it is processed queues it once more after
//! `done`; duplicates waiting in the queue collapse; rate-limited re-adds back off
//! exponentially per item (5 ms doubling up to 1000 s, reset by `forget`).
//!
//! Delayed items wait in a heap ordered by due time; workers blocked in
//! [`WorkQueue::next`] sleep until the earliest of them is due (or until an add
//! wakes them), so nothing polls and nothing needs a timer task of its own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The first back-off of a rate-limited item (client-go's default item limiter).
const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest back-off of a rate-limited item.
const MAX_DELAY: Duration = Duration::from_secs(1000);

/// A queue of keys shared by the event handlers that add them and the workers
/// that process them. Cheap to clone; every clone is the same queue.
pub struct WorkQueue<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    // std Mutex: nothing async happens while it is held.
    state: Mutex<State<T>>,
    /// Wakes workers blocked in `next`: one per ready item, all of them when the
    /// earliest due time moved closer or the queue shuts down.
    wake: Notify,
}

struct State<T> {
    /// Items ready to be handed out, in order; each is also in `dirty`.
    queue: VecDeque<T>,
    /// Items that need processing: queued, or re-added while being processed.
    dirty: HashSet<T>,
    /// Items handed to a worker and not yet `done`.
    processing: HashSet<T>,
    /// Delayed items: the due time and sequence number of each item's earliest add.
    waiting: HashMap<T, (Instant, u64)>,
    /// Due times of `waiting`; an entry whose sequence number no longer matches
    /// `waiting` is stale and skipped.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    heap_items: HashMap<u64, T>,
    next_seq: u64,
    /// Consecutive rate-limited adds of each item.
    failures: HashMap<T, u32>,
    shutting_down: bool,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue { shared: self.shared.clone() }
    }
}

impl<T> Default for WorkQueue<T>
where
    T: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("WorkQueue")
            .field("queued", &state.queue.len())
            .field("processing", &state.processing.len())
            .field("waiting", &state.waiting.len())
            .field("shutting_down", &state.shutting_down)
            .finish()
    }
}

/// What a worker in `next` does after looking at the queue.
enum Step<T> {
    Take(T),
    Closed,
    Wait(Option<Instant>),
}

impl<T> WorkQueue<T>
where
    T: Hash + Eq + Clone + Send + Sync + 'static,
{
    pub fn new() -> WorkQueue<T> {
        let state = State {
            queue: VecDeque::new(),
            dirty: HashSet::new(),
            processing: HashSet::new(),
            waiting: HashMap::new(),
            heap: BinaryHeap::new(),
            heap_items: HashMap::new(),
            next_seq: 0,
            failures: HashMap::new(),
            shutting_down: false,
        };
        WorkQueue { shared: Arc::new(Shared { state: Mutex::new(state), wake: Notify::new() }) }
    }

    pub fn add(&self, item: T) {
        let mut state = self.lock();
        if state.add(item) {
            self.shared.wake.notify_one();
        }
    }

    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let mut state = self.lock();
        if state.shutting_down {
            return;
        }
        let due = Instant::now() + delay;
        let earliest = state.earliest_due();
        if let Some((current, _)) = state.waiting.get(&item) {
            if *current <= due {
                return;
            }
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.waiting.insert(item.clone(), (due, seq));
        state.heap.push(Reverse((due, seq)));
        state.heap_items.insert(seq, item);
        if earliest.is_none_or(|e| due < e) {
            // Sleeping workers wait for the old earliest time: have them look again.
            self.shared.wake.notify_waiters();
        }
    }

    /// Re-adds after the item's current back-off, then doubles it.
    pub fn add_rate_limited(&self, item: T) {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(item.clone()).or_insert(0);
            let delay = backoff(*failures);
            *failures = failures.saturating_add(1);
            delay
        };
        self.add_after(item, delay);
    }

    /// Resets the item's back-off.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// How many rate-limited adds the item has had since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// The next item to process; `None` once shut down and drained.
    pub async fn next(&self) -> Option<T> {
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            // Registered before the state is read, so an add that comes after the
            // read still wakes this worker.
            notified.as_mut().enable();
            let step = {
                let mut state = self.lock();
                state.promote_due(Instant::now());
                if let Some(item) = state.queue.pop_front() {
                    state.dirty.remove(&item);
                    state.processing.insert(item.clone());
                    Step::Take(item)
                } else if state.shutting_down {
                    Step::Closed
                } else {
                    Step::Wait(state.earliest_due())
                }
            };
            match step {
                Step::Take(item) => return Some(item),
                Step::Closed => return None,
                Step::Wait(None) => notified.await,
                Step::Wait(Some(due)) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
            }
        }
    }

    /// Marks the item processed (it may be handed out again).
    pub fn done(&self, item: &T) {
        let mut state = self.lock();
        state.processing.remove(item);
        if state.dirty.contains(item) {
            state.queue.push_back(item.clone());
            self.shared.wake.notify_one();
        }
    }

    /// Items ready to be handed out (neither those being processed nor delayed ones).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting items and drops delayed ones; `next` hands out what is
    /// already queued, then returns `None`.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        state.waiting.clear();
        state.heap.clear();
        state.heap_items.clear();
        self.shared.wake.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere while holding the lock leaves the sets consistent:
        // every update is a few infallible collection operations.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl State ===

impl<T: Hash + Eq + Clone> State<T> {
    /// Queues `item` unless it is already waiting; returns whether a worker
    /// could take it now.
    fn add(&mut self, item: T) -> bool {
        if self.shutting_down || self.dirty.contains(&item) {
            return false;
        }
        self.dirty.insert(item.clone());
        if self.processing.contains(&item) {
            // Queued again by `done`.
            return false;
        }
        self.queue.push_back(item);
        true
    }

    /// Moves delayed items due at `now` into the queue.
    fn promote_due(&mut self, now: Instant) {
        while let Some(Reverse((due, seq))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(item) = self.heap_items.remove(&seq) else { continue };
            if self.waiting.get(&item).is_some_and(|(_, s)| *s == seq) {
                self.waiting.remove(&item);
                self.add(item);
            }
        }
    }

    /// When the earliest delayed item is due (skipping stale heap entries).
    fn earliest_due(&mut self) -> Option<Instant> {
        while let Some(Reverse((due, seq))) = self.heap.peek().copied() {
            let live = self.heap_items.get(&seq).is_some_and(|item| self.waiting.get(item).is_some_and(|(_, s)| *s == seq));
            if live {
                return Some(due);
            }
            self.heap.pop();
            self.heap_items.remove(&seq);
        }
        None
    }
}

/// 5 ms × 2^failures, at most 1000 s.
fn backoff(failures: u32) -> Duration {
    let factor = 2u64.checked_pow(failures).unwrap_or(u64::MAX);
    let millis = (BASE_DELAY.as_millis() as u64).saturating_mul(factor);
    Duration::from_millis(millis).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `next` if an item is ready within a millisecond of (paused) time.
    async fn try_next(q: &WorkQueue<&'static str>) -> Option<&'static str> {
        tokio::time::timeout(Duration::from_millis(1), q.next()).await.ok().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_waiting_in_the_queue_collapse() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(q.next().await, Some("b"));
        assert_eq!(try_next(&q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_being_processed_is_not_handed_to_a_second_worker() {
        let q = WorkQueue::new();
        q.add("a");
        assert_eq!(q.next().await, Some("a"));
        q.add("a");
        assert_eq!(q.len(), 0, "a re-add while processing waits for done");
        assert_eq!(try_next(&q).await, None);
        q.done(&"a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        assert_eq!(try_next(&q).await, None, "processed once more, not twice");
    }

    #[tokio::test(start_paused = true)]
    async fn re_adds_while_processing_collapse_into_one() {
        let q = WorkQueue::new();
        q.add("a");
        let item = q.next().await.unwrap();
        q.add("a");
        q.add("a");
        q.done(&item);
        assert_eq!(q.next().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
        assert_eq!(try_next(&q).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_worker_wakes_on_add() {
        let q: WorkQueue<&'static str> = WorkQueue::new();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!worker.is_finished());
        q.add("x");
        assert_eq!(worker.await.unwrap(), Some("x"));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_workers_each_get_a_different_item() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.next().await })
            })
            .collect();
        tokio::task::yield_now().await;
        for i in 0..3 {
            q.add(i);
        }
        let mut got = Vec::new();
        for w in workers {
            got.push(w.await.unwrap().unwrap());
        }
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_hands_the_item_out_when_it_is_due() {
        let q = WorkQueue::new();
        let start = Instant::now();
        q.add_after("late", Duration::from_secs(10));
        q.add_after("early", Duration::from_secs(2));
        assert!(q.is_empty());
        assert_eq!(q.next().await, Some("early"));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(q.next().await, Some("late"));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleeping_worker_sees_an_earlier_delayed_item() {
        let q = WorkQueue::new();
        let start = Instant::now();
        q.add_after("late", Duration::from_secs(60));
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add_after("soon", Duration::from_secs(1));
        assert_eq!(worker.await.unwrap(), Some("soon"));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_item_keeps_its_earliest_due_time_and_collapses_with_adds() {
        let q = WorkQueue::new();
        let start = Instant::now();
        q.add_after("a", Duration::from_secs(1));
        q.add_after("a", Duration::from_secs(30));
        assert_eq!(q.next().await, Some("a"));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        q.done(&"a");
        assert_eq!(tokio::time::timeout(Duration::from_secs(120), q.next()).await.ok(), None, "the later add merged into the earlier");

        q.add("b");
        q.add_after("b", Duration::from_secs(1));
        assert_eq!(q.next().await, Some("b"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        q.done(&"b");
        // The delayed add became due while "b" was processed: it is handed out again.
        assert_eq!(try_next(&q).await, Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_adds_back_off_exponentially_until_forgotten() {
        let q = WorkQueue::new();
        let mut delays = Vec::new();
        for _ in 0..4 {
            let start = Instant::now();
            q.add_rate_limited("k");
            let item = q.next().await.unwrap();
            delays.push(start.elapsed());
            q.done(&item);
        }
        let ms = Duration::from_millis;
        assert_eq!(delays, vec![ms(5), ms(10), ms(20), ms(40)]);
        assert_eq!(q.num_requeues(&"k"), 4);

        q.forget(&"k");
        assert_eq!(q.num_requeues(&"k"), 0);
        let start = Instant::now();
        q.add_rate_limited("k");
        q.next().await.unwrap();
        assert_eq!(start.elapsed(), ms(5));
    }

    #[test]
    fn back_off_is_capped_at_a_thousand_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(17), Duration::from_millis(5 << 17));
        assert_eq!(backoff(18), MAX_DELAY);
        assert_eq!(backoff(200), MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_queued_items_then_ends_every_worker() {
        let q = WorkQueue::new();
        let idle = tokio::spawn({
            let q = q.clone();
            async move {
                let first = q.next().await;
                (first, q.next().await)
            }
        });
        tokio::task::yield_now().await;
        q.add("a");
        q.add("b");
        q.add_after("delayed", Duration::from_secs(1));
        tokio::task::yield_now().await;
        q.shutdown();
        q.add("ignored");
        let (first, second) = idle.await.unwrap();
        assert_eq!((first, second), (Some("a"), Some("b")));
        assert_eq!(q.next().await, None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.next().await, None, "delayed items are dropped on shutdown");
        assert!(q.is_shutting_down());
    }
}
