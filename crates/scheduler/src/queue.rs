//! The scheduling queue (`PriorityQueue` upstream): which pod to schedule next.
//!
//! - **activeQ**: pods ready to be tried, highest priority first, then the one that
//!   entered the queue first.
//! - **backoffQ**: pods that failed recently, each waiting out its back-off (1 s,
//!   doubling per attempt, at most 10 s). When activeQ is empty, pods that were
//!   woken by a cluster event are taken from backoffQ early (as 1.33's
//!   `SchedulerPopFromBackoffQ`); pods that failed with an error are not.
//! - **unschedulable pods**: pods no node fits. A cluster event that may change that
//!   for them (a node added, a pod deleted, …, chosen by the plugins that rejected
//!   the pod, as upstream's queueing hints) moves them back; so does staying there
//!   longer than 60 s (upstream: 5 minutes).
//!
//! Time is passed in (`now`), so the queue is a pure data structure; the scheduler
//! drives it with the clock.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::plugins::{interpodaffinity, nodeaffinity, nodename, nodeports, noderesources, nodeunschedulable, podtopologyspread, tainttoleration, volume_binding};
use crate::types::PodInfo;

/// Back-off of the first retry (`podInitialBackoffDuration`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Back-off never exceeds this (`podMaxBackoffDuration`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often, whatever happens. Upstream
/// waits 5 minutes (`podMaxInUnschedulablePodsDuration`); Skiff retries sooner
/// because it wakes pods on fewer kinds of events than upstream's queueing hints.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(60);

/// Cluster changes that may make unschedulable pods schedulable, as bits so that a
/// pod can wait for several at once.
pub mod event {
    pub const NODE_ADD: u32 = 1 << 0;
    pub const NODE_DELETE: u32 = 1 << 1;
    pub const NODE_ALLOCATABLE: u32 = 1 << 2;
    pub const NODE_LABEL: u32 = 1 << 3;
    /// Taints or `spec.unschedulable` changed.
    pub const NODE_TAINT: u32 = 1 << 4;
    /// A pod was assigned to a node.
    pub const POD_ADD: u32 = 1 << 5;
    /// An assigned pod's labels changed.
    pub const POD_LABEL: u32 = 1 << 6;
    /// An assigned pod was deleted or finished.
    pub const POD_DELETE: u32 = 1 << 7;
    /// A PersistentVolumeClaim, PersistentVolume or StorageClass changed.
    pub const STORAGE: u32 = 1 << 8;
    pub const ALL: u32 = u32::MAX;
}

/// The events after which a pod rejected by `plugin` is worth another try
/// (each plugin's `EventsToRegister`).
pub fn interest(plugin: &str) -> u32 {
    use event::*;
    match plugin {
        nodeunschedulable::NAME => NODE_ADD | NODE_TAINT,
        nodename::NAME => NODE_ADD,
        tainttoleration::NAME => NODE_ADD | NODE_TAINT,
        nodeaffinity::NAME => NODE_ADD | NODE_LABEL,
        nodeports::NAME => NODE_ADD | POD_DELETE,
        noderesources::FIT_NAME => NODE_ADD | NODE_ALLOCATABLE | NODE_TAINT | NODE_LABEL | POD_DELETE,
        podtopologyspread::NAME => POD_ADD | POD_LABEL | POD_DELETE | NODE_ADD | NODE_DELETE | NODE_LABEL | NODE_TAINT,
        interpodaffinity::NAME => POD_ADD | POD_LABEL | POD_DELETE | NODE_ADD | NODE_LABEL,
        volume_binding::NAME => STORAGE | NODE_ADD | NODE_LABEL,
        _ => ALL,
    }
}

/// The events a pod rejected by these plugins waits for; any event if none is known.
pub fn interest_of(plugins: &BTreeSet<&'static str>) -> u32 {
    if plugins.is_empty() {
        return event::ALL;
    }
    plugins.iter().fold(0, |m, p| m | interest(p))
}

/// A pod in the queue and its history.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<PodInfo>,
    /// When it (last) entered the queue: the tie-breaker of equal priorities, and
    /// the start of its back-off.
    pub timestamp: Instant,
    /// When it was first popped, for the scheduling latency.
    pub initial_attempt: Option<Instant>,
    pub attempts: u32,
    /// Events that may help it (from the plugins that rejected it last).
    pub waits_for: u32,
    /// The last failure was an error, not a verdict of the plugins.
    pub failed_with_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Has scheduling gates; waits for an update that removes them.
    Gated,
    InFlight,
}

struct Entry {
    info: QueuedPod,
    place: Place,
    /// Bumped whenever the pod moves, so heap entries left behind are skipped.
    generation: u64,
    /// Updated while in flight: retry soon rather than park as unschedulable.
    updated_in_flight: bool,
}

/// activeQ order: higher priority, then earlier timestamp, then arrival.
struct ActiveKey {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    uid: String,
    generation: u64,
}

impl PartialEq for ActiveKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ActiveKey {}
impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ActiveKey {
    /// `BinaryHeap` pops the greatest: the highest priority, then the oldest.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.timestamp.cmp(&self.timestamp)).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// backoffQ order: earliest expiry first.
struct BackoffKey {
    expiry: Instant,
    priority: i32,
    uid: String,
    generation: u64,
}

impl PartialEq for BackoffKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for BackoffKey {}
impl PartialOrd for BackoffKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BackoffKey {
    fn cmp(&self, other: &Self) -> Ordering {
        other.expiry.cmp(&self.expiry).then_with(|| self.priority.cmp(&other.priority))
    }
}

/// The queue. Not thread-safe by itself: the scheduler keeps it behind a mutex.
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<BackoffKey>,
    /// How many unschedulable pods wait for each event mask, to skip scanning them
    /// for events nobody waits for.
    waiting: HashMap<u32, usize>,
    seq: u64,
    /// Events seen while a pod was in flight: a pod that fails for a reason one of
    /// them may have changed is retried rather than parked.
    in_flight_events: u32,
    in_flight: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_in_unschedulable: Duration,
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        SchedulingQueue::new()
    }
}

/// Whether a pod must wait for its scheduling gates to be removed.
pub fn is_gated(pod: &PodInfo) -> bool {
    pod.pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty())
}

impl SchedulingQueue {
    pub fn new() -> SchedulingQueue {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            waiting: HashMap::new(),
            seq: 0,
            in_flight_events: 0,
            in_flight: 0,
            initial_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
            max_in_unschedulable: MAX_IN_UNSCHEDULABLE,
        }
    }

    /// `initial * 2^(attempts-1)`, at most `max`.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    fn backoff_expiry(&self, q: &QueuedPod) -> Instant {
        q.timestamp + self.backoff_duration(q.attempts.max(1))
    }

    fn push_active(&mut self, uid: &str) {
        self.seq += 1;
        let seq = self.seq;
        let e = self.entries.get_mut(uid).expect("entry");
        e.place = Place::Active;
        e.generation += 1;
        self.active.push(ActiveKey { priority: e.info.pod.priority, timestamp: e.info.timestamp, seq, uid: uid.to_string(), generation: e.generation });
    }

    fn push_backoff(&mut self, uid: &str) {
        let expiry = self.backoff_expiry(&self.entries[uid].info);
        let e = self.entries.get_mut(uid).expect("entry");
        e.place = Place::Backoff;
        e.generation += 1;
        self.backoff.push(BackoffKey { expiry, priority: e.info.pod.priority, uid: uid.to_string(), generation: e.generation });
    }

    fn set_unschedulable(&mut self, uid: &str) {
        let e = self.entries.get_mut(uid).expect("entry");
        e.place = Place::Unschedulable;
        e.generation += 1;
        *self.waiting.entry(e.info.waits_for).or_default() += 1;
    }

    /// Takes a pod out of whatever place it is in (heap entries go stale).
    fn leave(&mut self, uid: &str) {
        if let Some(e) = self.entries.get_mut(uid) {
            if e.place == Place::Unschedulable {
                if let Some(n) = self.waiting.get_mut(&e.info.waits_for) {
                    *n -= 1;
                    if *n == 0 {
                        self.waiting.remove(&e.info.waits_for);
                    }
                }
            }
            if e.place == Place::InFlight {
                self.in_flight -= 1;
            }
            e.generation += 1;
        }
    }

    /// Moves a parked pod to backoffQ if it is still backing off, else to activeQ.
    fn reactivate(&mut self, uid: &str, now: Instant) {
        self.leave(uid);
        let backing_off = self.entries.get(uid).is_some_and(|e| e.info.attempts > 0 && self.backoff_expiry(&e.info) > now);
        if backing_off {
            self.push_backoff(uid);
        } else {
            self.push_active(uid);
        }
    }

    /// A new pending pod (or one seen again): queued in activeQ, or held while it
    /// has scheduling gates. A pod already queued is updated instead.
    pub fn add(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if self.entries.contains_key(&pod.uid) {
            self.update(pod, now);
            return;
        }
        let uid = pod.uid.clone();
        let gated = is_gated(&pod);
        let info = QueuedPod { pod, timestamp: now, initial_attempt: None, attempts: 0, waits_for: event::ALL, failed_with_error: false };
        self.entries.insert(uid.clone(), Entry { info, place: Place::Gated, generation: 0, updated_in_flight: false });
        if !gated {
            self.push_active(&uid);
        }
    }

    /// A queued pod changed. Parked pods whose spec changed get another try, as do
    /// gated pods whose gates are gone; status-only changes (such as the scheduler's
    /// own condition) change nothing.
    pub fn update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        let Some(e) = self.entries.get_mut(&uid) else {
            self.add(pod, now);
            return;
        };
        let old = std::mem::replace(&mut e.info.pod, pod);
        let new = &e.info.pod;
        let changed = old.pod.spec != new.pod.spec || old.pod.metadata.labels != new.pod.metadata.labels || old.pod.metadata.annotations != new.pod.metadata.annotations;
        let priority_changed = old.priority != new.priority;
        let still_gated = is_gated(new);
        match e.place {
            Place::InFlight => e.updated_in_flight |= changed,
            Place::Active if priority_changed => self.push_active(&uid),
            Place::Active | Place::Backoff => {}
            Place::Gated => {
                if !still_gated {
                    e.info.timestamp = now;
                    self.push_active(&uid);
                }
            }
            Place::Unschedulable => {
                if changed {
                    self.reactivate(&uid, now);
                }
            }
        }
    }

    /// The pod is gone, bound elsewhere or no longer ours.
    pub fn delete(&mut self, uid: &str) {
        self.leave(uid);
        self.entries.remove(uid);
        if self.in_flight == 0 {
            self.in_flight_events = 0;
        }
    }

    /// The latest version of a queued pod.
    pub fn pod(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.entries.get(uid).map(|e| e.info.pod.clone())
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// The next pod to try, if any: activeQ first; when it is empty, the first pod of
    /// backoffQ that did not fail with an error.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush_backoff(now);
        let uid = loop {
            match self.active.pop() {
                Some(k) => {
                    if self.entries.get(&k.uid).is_some_and(|e| e.generation == k.generation && e.place == Place::Active) {
                        break k.uid;
                    }
                }
                None => {
                    let mut early = None;
                    let mut skipped = Vec::new();
                    while let Some(k) = self.backoff.pop() {
                        match self.entries.get(&k.uid) {
                            Some(e) if e.generation == k.generation && e.place == Place::Backoff => {
                                if e.info.failed_with_error {
                                    skipped.push(k);
                                } else {
                                    early = Some(k.uid);
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    self.backoff.extend(skipped);
                    break early?;
                }
            }
        };
        self.leave(&uid);
        let e = self.entries.get_mut(&uid).expect("entry");
        e.place = Place::InFlight;
        e.updated_in_flight = false;
        e.info.attempts += 1;
        e.info.initial_attempt.get_or_insert(now);
        self.in_flight += 1;
        Some(e.info.clone())
    }

    /// The popped pod was assumed onto a node: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.delete(uid);
    }

    /// The popped pod did not get a node. `rejected_by` are the plugins that turned
    /// it down (empty after an error). It is parked as unschedulable, unless
    /// something it may care about happened meanwhile, or it failed with an error:
    /// then it backs off.
    pub fn add_unschedulable(&mut self, uid: &str, rejected_by: &BTreeSet<&'static str>, error: bool, now: Instant) {
        let Some(e) = self.entries.get_mut(uid) else { return };
        if e.place != Place::InFlight {
            return;
        }
        e.info.timestamp = now;
        e.info.waits_for = interest_of(rejected_by);
        e.info.failed_with_error = error;
        let retry = error || rejected_by.is_empty() || e.updated_in_flight || self.in_flight_events & e.info.waits_for != 0;
        self.leave(uid);
        if retry {
            self.push_backoff(uid);
        } else {
            self.set_unschedulable(uid);
        }
        if self.in_flight == 0 {
            self.in_flight_events = 0;
        }
    }

    /// A cluster event: unschedulable pods waiting for it go back to backoffQ or
    /// activeQ (`MoveAllToActiveOrBackoffQueue`). Returns how many moved.
    pub fn move_on_event(&mut self, ev: u32, now: Instant) -> usize {
        if self.in_flight > 0 {
            self.in_flight_events |= ev;
        }
        if !self.waiting.keys().any(|m| m & ev != 0) {
            return 0;
        }
        let uids: Vec<String> = self.entries.iter().filter(|(_, e)| e.place == Place::Unschedulable && e.info.waits_for & ev != 0).map(|(u, _)| u.clone()).collect();
        for uid in &uids {
            self.reactivate(uid, now);
        }
        uids.len()
    }

    /// Moves pods whose back-off is over to activeQ, and pods parked too long back
    /// into play. Called before each pop and periodically.
    pub fn flush(&mut self, now: Instant) {
        self.flush_backoff(now);
        if self.waiting.is_empty() {
            return;
        }
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable && now.saturating_duration_since(e.info.timestamp) >= self.max_in_unschedulable)
            .map(|(u, _)| u.clone())
            .collect();
        for uid in &stale {
            self.reactivate(uid, now);
        }
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(k) = self.backoff.peek() {
            let current = self.entries.get(&k.uid).is_some_and(|e| e.generation == k.generation && e.place == Place::Backoff);
            if current && k.expiry > now {
                break;
            }
            let k = self.backoff.pop().unwrap();
            if current {
                self.leave(&k.uid);
                self.push_active(&k.uid);
            }
        }
    }

    /// When the next backed-off pod becomes active, if any.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.iter().filter(|k| self.entries.get(&k.uid).is_some_and(|e| e.generation == k.generation && e.place == Place::Backoff)).map(|k| k.expiry).min()
    }

    /// Whether a pod is ready to pop now (without early backoff pops).
    pub fn has_active(&self) -> bool {
        self.entries.values().any(|e| e.place == Place::Active)
    }

    /// Pods per place: (active, backoff, unschedulable, gated, in flight).
    pub fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0, 0);
        for e in self.entries.values() {
            match e.place {
                Place::Active => c.0 += 1,
                Place::Backoff => c.1 += 1,
                Place::Unschedulable => c.2 += 1,
                Place::Gated => c.3 += 1,
                Place::InFlight => c.4 += 1,
            }
        }
        c
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MakePod;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(MakePod::new(name).priority(priority).obj())))
    }

    fn names(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(p) = q.pop(now) {
            out.push(p.pod.name.clone());
            q.done(&p.pod.uid);
        }
        out
    }

    fn plugins(p: &[&'static str]) -> BTreeSet<&'static str> {
        p.iter().copied().collect()
    }

    #[test]
    fn higher_priority_pops_first_then_the_earliest_queued() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("low-early", 0), t0);
        q.add(pod("high", 100), t0 + Duration::from_millis(2));
        q.add(pod("low-late", 0), t0 + Duration::from_millis(3));
        q.add(pod("mid", 10), t0 + Duration::from_millis(4));
        assert_eq!(names(&mut q, t0 + Duration::from_millis(5)), vec!["high", "mid", "low-early", "low-late"]);
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let q = SchedulingQueue::new();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_their_plugins_care_about() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.pod.uid, &plugins(&[noderesources::FIT_NAME]), false, t0);
        assert_eq!(q.counts(), (0, 0, 1, 0, 0));
        assert!(q.pop(t0 + Duration::from_secs(5)).is_none());
        // Another pod being assigned does not free resources.
        assert_eq!(q.move_on_event(event::POD_ADD, t0 + Duration::from_secs(5)), 0);
        // A deleted pod does; the back-off (1 s after the first attempt) is over.
        assert_eq!(q.move_on_event(event::POD_DELETE, t0 + Duration::from_secs(5)), 1);
        assert_eq!(q.counts(), (1, 0, 0, 0, 0));
        assert_eq!(q.pop(t0 + Duration::from_secs(5)).unwrap().attempts, 2);
    }

    #[test]
    fn a_woken_pod_still_backing_off_goes_to_backoff_and_is_popped_early_only_when_idle() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.pod.uid, &plugins(&[nodeaffinity::NAME]), false, t0);
        q.move_on_event(event::NODE_LABEL, t0 + Duration::from_millis(100));
        assert_eq!(q.counts(), (0, 1, 0, 0, 0));
        q.add(pod("other", 0), t0 + Duration::from_millis(200));
        let next = q.pop(t0 + Duration::from_millis(300)).unwrap();
        assert_eq!(next.pod.name, "other", "activeQ goes first");
        q.done(&next.pod.uid);
        assert_eq!(q.pop(t0 + Duration::from_millis(300)).unwrap().pod.name, "p", "then backoffQ, early");
    }

    #[test]
    fn pods_that_failed_with_an_error_wait_out_their_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.pod.uid, &BTreeSet::new(), true, t0);
        assert!(q.pop(t0 + Duration::from_millis(500)).is_none());
        assert_eq!(q.next_backoff_expiry(), Some(t0 + Duration::from_secs(1)));
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn an_event_during_the_attempt_is_not_lost() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.move_on_event(event::NODE_ADD, t0);
        q.add_unschedulable(&p.pod.uid, &plugins(&[noderesources::FIT_NAME]), false, t0);
        assert_eq!(q.counts(), (0, 1, 0, 0, 0), "retried, not parked");
        // An event the pod does not care about does not count.
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.move_on_event(event::POD_ADD, t0);
        q.add_unschedulable(&p.pod.uid, &plugins(&[noderesources::FIT_NAME]), false, t0);
        assert_eq!(q.counts(), (0, 0, 1, 0, 0));
    }

    #[test]
    fn parked_pods_are_retried_after_a_minute() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.pod.uid, &plugins(&[noderesources::FIT_NAME]), false, t0);
        q.flush(t0 + Duration::from_secs(59));
        assert_eq!(q.counts().2, 1);
        q.flush(t0 + Duration::from_secs(60));
        assert_eq!(q.counts().0, 1);
    }

    #[test]
    fn a_spec_change_wakes_a_parked_pod_but_a_status_change_does_not() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.add_unschedulable(&p.pod.uid, &plugins(&[noderesources::FIT_NAME]), false, t0);
        let status_only = Arc::new(PodInfo::new(Arc::new(MakePod::new("p").priority(0).nominated("n").obj())));
        q.update(status_only, t0 + Duration::from_secs(2));
        assert_eq!(q.counts().2, 1);
        let relabelled = Arc::new(PodInfo::new(Arc::new(MakePod::new("p").priority(0).label("a", "b").obj())));
        q.update(relabelled, t0 + Duration::from_secs(2));
        assert_eq!(q.counts().0, 1);
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_removed() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(Arc::new(PodInfo::new(Arc::new(MakePod::new("p").scheduling_gate("wait").obj()))), t0);
        assert!(q.pop(t0).is_none());
        assert_eq!(q.counts().3, 1);
        q.update(Arc::new(PodInfo::new(Arc::new(MakePod::new("p").obj()))), t0);
        assert_eq!(q.pop(t0).unwrap().pod.name, "p");
    }

    #[test]
    fn deleted_pods_are_dropped_wherever_they_are() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add(pod("a", 0), t0);
        q.add(pod("b", 0), t0);
        q.delete("a-uid");
        let p = q.pop(t0).unwrap();
        assert_eq!(p.pod.name, "b");
        q.delete("b-uid");
        // A pod deleted while in flight is not re-added when its attempt fails.
        q.add_unschedulable("b-uid", &BTreeSet::new(), false, t0);
        assert!(q.is_empty());
        assert!(q.pop(t0).is_none());
    }
}
