//! Restart and image-pull back-off, with the semantics of client-go's
//! `flowcontrol.Backoff` as the kubelet uses it: an entry per key whose delay starts
//! at `initial` and doubles up to `max` each time a new attempt is allowed, and that
//! starts over once nothing happened for twice `max`.
//!
//! Times are explicit arguments: the restart back-off is measured from the moment a
//! container finished, which is the runtime's wall-clock timestamp, so the logic is
//! pure and the [`Clock`] decides what "now" is (tests run it on Tokio's paused time).

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The first restart back-off of a crashing container (upstream's `backOffPeriod`).
pub const CONTAINER_INITIAL: Duration = Duration::from_secs(10);
/// The longest restart back-off (upstream's `MaxContainerBackOff`).
pub const CONTAINER_MAX: Duration = Duration::from_secs(300);
/// Image pulls back off the same way.
pub const IMAGE_INITIAL: Duration = Duration::from_secs(10);
pub const IMAGE_MAX: Duration = Duration::from_secs(300);

/// Wall-clock time as the kubelet sees it.
///
/// The system clock in production. Tests use [`Clock::tokio`]: wall-clock time that
/// advances with Tokio's (possibly paused) clock, so that back-offs measured against
/// runtime timestamps can be driven with `tokio::time::advance`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Option<(Timestamp, tokio::time::Instant)>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { base: None }
    }

    /// Starts at the current system time and follows Tokio's clock from there.
    pub fn tokio() -> Clock {
        Clock { base: Some((Timestamp::now(), tokio::time::Instant::now())) }
    }

    pub fn now(&self) -> Timestamp {
        match self.base {
            None => Timestamp::now(),
            Some((wall, at)) => plus(wall, at.elapsed()),
        }
    }
}

/// `t + d`, saturating.
pub fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// `a - b`, zero when `b` is later.
pub fn since(a: Timestamp, b: Timestamp) -> Duration {
    Duration::try_from(a.duration_since(b)).unwrap_or(Duration::ZERO)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    backoff: Duration,
    last_update: Timestamp,
}

/// Per-key exponential back-off.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, entries: HashMap::new() }
    }

    /// The restart back-off of containers: 10 s doubling up to 5 min.
    pub fn containers() -> Backoff {
        Backoff::new(CONTAINER_INITIAL, CONTAINER_MAX)
    }

    /// The back-off of image pulls: 10 s doubling up to 5 min.
    pub fn images() -> Backoff {
        Backoff::new(IMAGE_INITIAL, IMAGE_MAX)
    }

    /// The key's current delay (zero if it has none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }

    /// An attempt is made for `key` now, because of something that happened at
    /// `event_time` (a container exit, a failed pull): the next one waits longer,
    /// unless the entry had expired by `event_time`, which starts over.
    pub fn next(&mut self, key: &str, event_time: Timestamp, now: Timestamp) {
        let (initial, max) = (self.initial, self.max);
        let entry = self.entries.entry(key.to_string()).or_insert(Entry { backoff: Duration::ZERO, last_update: now });
        if entry.backoff.is_zero() || expired(event_time, entry.last_update, max) {
            entry.backoff = initial;
        } else {
            entry.backoff = (entry.backoff * 2).min(max);
        }
        entry.last_update = now;
    }

    /// Whether `key` must still wait after something that happened at `event_time`
    /// (upstream's `IsInBackOffSince`).
    pub fn is_in_backoff_since(&self, key: &str, event_time: Timestamp, now: Timestamp) -> bool {
        self.remaining_since(key, event_time, now).is_some()
    }

    /// How much longer `key` must wait after `event_time`, if it must.
    pub fn remaining_since(&self, key: &str, event_time: Timestamp, now: Timestamp) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if expired(now, entry.last_update, self.max) {
            return None;
        }
        let waited = since(now, event_time);
        (waited < entry.backoff).then(|| entry.backoff - waited)
    }

    /// Whether `key` must still wait since its last attempt (upstream's
    /// `IsInBackOffSinceUpdate`, used for image pulls).
    pub fn is_in_backoff_since_update(&self, key: &str, now: Timestamp) -> bool {
        self.entries.get(key).is_some_and(|e| !expired(now, e.last_update, self.max) && since(now, e.last_update) < e.backoff)
    }

    /// How much longer `key` must wait since its last attempt, if it must.
    pub fn remaining_since_update(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if expired(now, e.last_update, self.max) {
            return None;
        }
        let waited = since(now, e.last_update);
        (waited < e.backoff).then(|| e.backoff - waited)
    }

    /// Forgets `key` (its container started fine, its pod is gone).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops every key that starts with `prefix` (all containers of a pod).
    pub fn reset_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }

    /// Drops entries that expired: they would start over anyway.
    pub fn gc(&mut self, now: Timestamp) {
        let max = self.max;
        self.entries.retain(|_, e| !expired(now, e.last_update, max));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An entry expires when nothing happened for twice the maximum delay: a container
/// that ran that long since its last restart starts over at the initial delay.
fn expired(event_time: Timestamp, last_update: Timestamp, max: Duration) -> bool {
    since(event_time, last_update) > max * 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Timestamp {
        plus("2025-01-01T00:00:00Z".parse().unwrap(), Duration::from_secs(secs))
    }

    #[test]
    fn the_first_restart_is_immediate_and_later_ones_double_up_to_five_minutes() {
        let mut b = Backoff::containers();
        // First exit at 0: no entry yet, so no waiting; the restart records 10 s.
        assert!(!b.is_in_backoff_since("c", t(0), t(0)));
        b.next("c", t(0), t(0));
        assert_eq!(b.get("c"), Duration::from_secs(10));

        // It crashes again at 1 s: it waits 10 s from that exit.
        assert_eq!(b.remaining_since("c", t(1), t(1)), Some(Duration::from_secs(10)));
        assert_eq!(b.remaining_since("c", t(1), t(6)), Some(Duration::from_secs(5)));
        assert!(!b.is_in_backoff_since("c", t(1), t(11)));
        b.next("c", t(1), t(11));
        assert_eq!(b.get("c"), Duration::from_secs(20));

        let mut now = 11;
        let mut delays = Vec::new();
        for _ in 0..8 {
            now += 1; // runs for a second, then exits
            let exit = now;
            let wait = b.remaining_since("c", t(exit), t(exit)).unwrap();
            delays.push(wait.as_secs());
            now += wait.as_secs();
            b.next("c", t(exit), t(now));
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300, 300, 300]);
    }

    #[test]
    fn a_container_that_ran_ten_minutes_starts_over_at_ten_seconds() {
        let mut b = Backoff::containers();
        b.next("c", t(0), t(0));
        b.next("c", t(10), t(20));
        b.next("c", t(30), t(50));
        assert_eq!(b.get("c"), Duration::from_secs(40));
        // Restarted at 50, ran until 50 + 601 s: more than twice the maximum.
        let exit = t(50 + 601);
        assert!(!b.is_in_backoff_since("c", exit, exit), "an expired entry does not hold a restart back");
        b.next("c", exit, exit);
        assert_eq!(b.get("c"), Duration::from_secs(10));
    }

    #[test]
    fn image_pulls_wait_since_the_last_attempt() {
        let mut b = Backoff::images();
        assert!(!b.is_in_backoff_since_update("img", t(0)));
        b.next("img", t(0), t(0));
        assert!(b.is_in_backoff_since_update("img", t(9)));
        assert!(!b.is_in_backoff_since_update("img", t(10)));
        b.next("img", t(10), t(10));
        assert!(b.is_in_backoff_since_update("img", t(29)));
        assert!(!b.is_in_backoff_since_update("img", t(30)));
    }

    #[test]
    fn reset_and_gc_forget_keys() {
        let mut b = Backoff::containers();
        b.next("pod_a_c1", t(0), t(0));
        b.next("pod_a_c2", t(0), t(0));
        b.next("pod_b_c1", t(0), t(0));
        b.reset_prefix("pod_a_");
        assert_eq!(b.len(), 1);
        b.gc(t(601));
        assert!(b.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let clock = Clock::tokio();
        let a = clock.now();
        tokio::time::advance(Duration::from_secs(42)).await;
        assert_eq!(since(clock.now(), a), Duration::from_secs(42));
    }
}
