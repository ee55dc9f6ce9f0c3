//! Lease-based leader election (coordination.k8s.io/v1), with upstream client-go's
//! semantics and default timing.
//!
//! A candidate that sees a Lease held by someone else may take it once
//! `renewTime + leaseDurationSeconds` has passed. The leader renews every
//! `retry_period`; if it cannot renew for `renew_deadline`, it stops its work and
//! becomes a candidate again, so two leaders never overlap as long as
//! `renew_deadline < lease_duration`. Updates use resourceVersion preconditions, so
//! a race between candidates has one winner.
//!
//! Expiry is judged from the Lease's own `renewTime`, so the candidates' clocks
//! must agree to well within `lease_duration - renew_deadline` (as they must for
//! node leases). Upstream instead times the lease from the moment a candidate
//! first saw the record change, which tolerates skew but makes a candidate that
//! starts after the leader died wait a whole lease duration more; Skiff's
//! servers run on hosts with synchronised clocks and want the faster takeover.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Client, Error, Result};

/// Upstream's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming { lease_duration: Duration::from_secs(15), renew_deadline: Duration::from_secs(10), retry_period: Duration::from_secs(2) }
    }
}

/// How long after a Lease's expiry a waiting candidate tries to take it, so
/// that it does not arrive a hair early and have to wait another round.
const EXPIRY_MARGIN: Duration = Duration::from_millis(5);

/// How many write conflicts one attempt re-reads through before it gives up
/// until the next round.
const MAX_CONFLICTS: usize = 3;

/// One candidate for one Lease.
pub struct LeaderElector {
    client: Client,
    namespace: String,
    name: String,
    identity: String,
    timing: LeaseTiming,
    leading: watch::Sender<bool>,
    /// The Lease as this candidate last read or wrote it. While leading, its
    /// resourceVersion preconditions the next renew, which then needs no read.
    observed: Option<Value>,
}

/// What one try to acquire or renew found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// The Lease is ours now (created, taken over, or renewed).
    Held,
    /// Someone else holds a live Lease, for `remaining` more.
    HeldBy { holder: String, remaining: Duration },
}

/// Why a leader stepped down.
#[derive(Debug)]
enum Lost {
    /// No renew succeeded within `renew_deadline`.
    RenewDeadline,
    /// A renew found the Lease held by someone else.
    TakenBy(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::RenewDeadline => f.write_str("no renew succeeded within the renew deadline"),
            Lost::TakenBy(holder) => write!(f, "the lease is held by {holder:?}"),
        }
    }
}

// === impl LeaderElector ===

impl LeaderElector {
    /// `identity` must be unique per candidate (e.g. `hostname_uuid`).
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: LeaseTiming) -> LeaderElector {
        if timing.renew_deadline >= timing.lease_duration {
            tracing::warn!(?timing, "renew deadline is not below the lease duration: two leaders may overlap");
        }
        let (leading, _) = watch::channel(false);
        LeaderElector {
            client,
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            leading,
            observed: None,
        }
    }

    /// Whether this candidate leads now; changes as leadership is won and lost.
    pub fn leading(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Runs forever: campaigns, and while leading runs `work()` as a task; when
    /// leadership is lost, that task is aborted and the campaign starts again.
    ///
    /// If the work task ends by itself, this candidate stays leader (so no other
    /// starts the work) and runs it again only after losing and winning again.
    /// Dropping the future aborts the work too; the Lease then runs out.
    pub async fn run<F, Fut>(self, work: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.run_until(work, std::future::pending()).await
    }

    /// Like [`run`](Self::run), until `shutdown` completes: then the work task is
    /// aborted and, if this candidate leads, the Lease is released (holder cleared,
    /// duration 1 s, as upstream's `ReleaseOnCancel`), so another candidate takes
    /// over at once instead of after the lease duration.
    pub async fn run_until<F, Fut, S>(mut self, work: F, shutdown: S)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        S: Future<Output = ()>,
    {
        enum Ended {
            Lost(Lost),
            Shutdown,
        }
        tokio::pin!(shutdown);
        loop {
            let acquired_at = tokio::select! {
                at = self.acquire() => at,
                _ = &mut shutdown => return,
            };
            self.leading.send_replace(true);
            tracing::info!(identity = %self.identity, lease = %self.lease_name(), "became leader");
            let mut task = WorkTask(Some(tokio::spawn(work())));
            let ended = tokio::select! {
                lost = self.lead(acquired_at, &mut task) => Ended::Lost(lost),
                _ = &mut shutdown => Ended::Shutdown,
            };
            task.stop().await;
            match ended {
                Ended::Lost(why) => {
                    self.leading.send_replace(false);
                    tracing::warn!(identity = %self.identity, lease = %self.lease_name(), reason = %why, "lost leadership");
                }
                Ended::Shutdown => {
                    self.release().await;
                    self.leading.send_replace(false);
                    tracing::info!(identity = %self.identity, lease = %self.lease_name(), "released leadership");
                    return;
                }
            }
        }
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn collection_path(&self) -> String {
        format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", self.namespace)
    }

    fn lease_path(&self) -> String {
        format!("{}/{}", self.collection_path(), self.name)
    }

    /// Campaigns until the Lease is ours; returns when the winning try started
    /// (the leader's own view of its lease runs from then, never later than the
    /// `renewTime` the others see).
    async fn acquire(&mut self) -> Instant {
        loop {
            let started = Instant::now();
            let wait = match tokio::time::timeout(self.timing.renew_deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => return started,
                Ok(Ok(Attempt::HeldBy { holder, remaining })) => {
                    tracing::debug!(identity = %self.identity, lease = %self.lease_name(), %holder, ?remaining, "lease is held");
                    // Come back right after it expires, so a dead leader is
                    // replaced within the lease duration; but look again at least
                    // every retry period.
                    (remaining + EXPIRY_MARGIN).min(self.timing.retry_period)
                }
                Ok(Err(e)) => {
                    tracing::warn!(identity = %self.identity, lease = %self.lease_name(), error = %e, "could not acquire the lease");
                    self.timing.retry_period
                }
                Err(_) => {
                    tracing::warn!(identity = %self.identity, lease = %self.lease_name(), "acquiring the lease timed out");
                    self.timing.retry_period
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Renews every retry period until leadership is lost. Watches the work task
    /// meanwhile, to log it if it ends by itself.
    async fn lead(&mut self, acquired_at: Instant, task: &mut WorkTask) -> Lost {
        let mut last_renew = acquired_at;
        loop {
            let deadline = last_renew + self.timing.renew_deadline;
            task.watch_until((Instant::now() + self.timing.retry_period).min(deadline), &self.identity).await;
            let started = Instant::now();
            if started >= deadline {
                return Lost::RenewDeadline;
            }
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => last_renew = started,
                Ok(Ok(Attempt::HeldBy { holder, .. })) => return Lost::TakenBy(holder),
                Ok(Err(e)) => tracing::warn!(identity = %self.identity, lease = %self.lease_name(), error = %e, "could not renew the lease"),
                Err(_) => return Lost::RenewDeadline,
            }
        }
    }

    /// One round of upstream's `tryAcquireOrRenew`: read the Lease (or create it),
    /// and write it back as ours if it is ours or free or expired. A conflict means
    /// someone else wrote in between: read again and decide again.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt> {
        // While leading, the Lease last written is what the server holds (unless
        // someone else wrote, which the precondition catches), so skip the read.
        let mut cached = self.observed.clone().filter(|l| LeaseRecord::of(l).holder() == Some(self.identity.as_str()));
        let mut last_conflict = None;
        for _ in 0..=MAX_CONFLICTS {
            let lease = match cached.take() {
                Some(lease) => lease,
                None => match self.client.get(&self.lease_path()).await {
                    Ok(lease) => lease,
                    Err(e) if e.is_not_found() => match self.client.create(&self.collection_path(), &self.new_lease(Timestamp::now())).await {
                        Ok(created) => {
                            self.observed = Some(created);
                            return Ok(Attempt::Held);
                        }
                        // Another candidate created it first.
                        Err(e) if e.is_conflict() => {
                            last_conflict = Some(e);
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                    Err(e) => return Err(e),
                },
            };
            let now = Timestamp::now();
            let record = LeaseRecord::of(&lease);
            let next = match decide(&record, &self.identity, now) {
                Decision::Wait { holder, remaining } => {
                    self.observed = Some(lease);
                    return Ok(Attempt::HeldBy { holder, remaining });
                }
                Decision::Renew => record.renewed(now, self.lease_seconds()),
                Decision::Take => record.taken(&self.identity, now, self.lease_seconds()),
            };
            match self.client.update(&self.lease_path(), &next.apply_to(lease)).await {
                Ok(updated) => {
                    self.observed = Some(updated);
                    return Ok(Attempt::Held);
                }
                Err(e) if e.is_conflict() => last_conflict = Some(e),
                // Deleted under us: the next pass reads 404 and creates it.
                Err(e) if e.is_not_found() => last_conflict = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_conflict.unwrap_or_else(|| Error::Decode("lease: too many conflicts".into())))
    }

    /// Gives the Lease up if this candidate holds it, so others need not wait for
    /// it to expire.
    async fn release(&mut self) {
        let Some(mut lease) = self.observed.clone() else { return };
        for _ in 0..=MAX_CONFLICTS {
            let record = LeaseRecord::of(&lease);
            if record.holder() != Some(self.identity.as_str()) {
                return;
            }
            let released = record.released(Timestamp::now());
            let write = tokio::time::timeout(self.timing.renew_deadline, self.client.update(&self.lease_path(), &released.apply_to(lease))).await;
            match write {
                Ok(Ok(updated)) => {
                    self.observed = Some(updated);
                    return;
                }
                Ok(Err(e)) if e.is_conflict() => match self.client.get(&self.lease_path()).await {
                    Ok(fresh) => lease = fresh,
                    Err(e) => {
                        tracing::warn!(identity = %self.identity, lease = %self.lease_name(), error = %e, "could not release the lease");
                        return;
                    }
                },
                Ok(Err(e)) => {
                    tracing::warn!(identity = %self.identity, lease = %self.lease_name(), error = %e, "could not release the lease");
                    return;
                }
                Err(_) => {
                    tracing::warn!(identity = %self.identity, lease = %self.lease_name(), "releasing the lease timed out");
                    return;
                }
            }
        }
    }

    /// `leaseDurationSeconds` for `lease_duration`: whole seconds, rounded up.
    fn lease_seconds(&self) -> i64 {
        let d = self.timing.lease_duration;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1) as i64
    }

    fn new_lease(&self, now: Timestamp) -> Value {
        let stamp = format_micro_time(now);
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds(),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        })
    }
}

impl Drop for LeaderElector {
    /// A dropped candidate leads no more (its work task is aborted by its guard).
    fn drop(&mut self) {
        self.leading.send_replace(false);
    }
}

// === impl WorkTask ===

/// The work of one term; aborted when dropped, so a `run` future that is itself
/// dropped (its task aborted) takes the work down with it.
struct WorkTask(Option<JoinHandle<()>>);

impl WorkTask {
    /// Sleeps until `until`, noting if the work ends meanwhile.
    async fn watch_until(&mut self, until: Instant, identity: &str) {
        loop {
            let Some(handle) = self.0.as_mut() else {
                tokio::time::sleep_until(until).await;
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return,
                ended = handle => {
                    self.0 = None;
                    match ended {
                        Ok(()) => tracing::info!(%identity, "leader work ended by itself; keeping leadership"),
                        Err(e) => tracing::error!(%identity, error = %e, "leader work failed; keeping leadership"),
                    }
                }
            }
        }
    }

    /// Aborts the work and waits until it has stopped.
    async fn stop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for WorkTask {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

// === lease records ===

/// The election fields of a Lease's spec. Absent fields stay absent, and fields
/// this client does not know (`strategy`, `preferredHolder`) are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LeaseRecord {
    holder_identity: Option<String>,
    lease_duration_seconds: Option<i64>,
    acquire_time: Option<String>,
    renew_time: Option<String>,
    lease_transitions: Option<i64>,
}

impl LeaseRecord {
    fn of(lease: &Value) -> LeaseRecord {
        let spec = &lease["spec"];
        let text = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_string);
        LeaseRecord {
            holder_identity: text("holderIdentity"),
            lease_duration_seconds: spec.get("leaseDurationSeconds").and_then(Value::as_i64),
            acquire_time: text("acquireTime"),
            renew_time: text("renewTime"),
            lease_transitions: spec.get("leaseTransitions").and_then(Value::as_i64),
        }
    }

    /// The holder, if there is one (an empty identity means none).
    fn holder(&self) -> Option<&str> {
        self.holder_identity.as_deref().filter(|h| !h.is_empty())
    }

    /// When the lease runs out: `renewTime + leaseDurationSeconds`. `None` when
    /// either is missing or unreadable: such a lease is free for the taking, as
    /// upstream counts a missing duration as zero.
    fn expires_at(&self) -> Option<Timestamp> {
        let renewed = parse_micro_time(self.renew_time.as_deref()?)?;
        let seconds = self.lease_duration_seconds?;
        renewed.checked_add(jiff::SignedDuration::from_secs(seconds)).ok()
    }

    fn renewed(&self, now: Timestamp, lease_seconds: i64) -> LeaseRecord {
        let stamp = format_micro_time(now);
        LeaseRecord {
            holder_identity: self.holder_identity.clone(),
            lease_duration_seconds: Some(lease_seconds),
            acquire_time: self.acquire_time.clone().or_else(|| Some(stamp.clone())),
            renew_time: Some(stamp),
            lease_transitions: Some(self.lease_transitions.unwrap_or(0)),
        }
    }

    fn taken(&self, identity: &str, now: Timestamp, lease_seconds: i64) -> LeaseRecord {
        let stamp = format_micro_time(now);
        LeaseRecord {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(lease_seconds),
            acquire_time: Some(stamp.clone()),
            renew_time: Some(stamp),
            lease_transitions: Some(self.lease_transitions.unwrap_or(0) + 1),
        }
    }

    /// Upstream's release: no holder, a one-second lease, transitions kept.
    fn released(&self, now: Timestamp) -> LeaseRecord {
        let stamp = format_micro_time(now);
        LeaseRecord {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(stamp.clone()),
            renew_time: Some(stamp),
            lease_transitions: self.lease_transitions,
        }
    }

    /// `lease` with this record as its election fields; metadata (and with it the
    /// resourceVersion that was read) stays, so the write is conditional.
    fn apply_to(&self, mut lease: Value) -> Value {
        if !lease.get("spec").is_some_and(Value::is_object) {
            lease["spec"] = json!({});
        }
        let spec = lease["spec"].as_object_mut().expect("spec is an object");
        let mut set = |key: &str, value: Option<Value>| match value {
            Some(v) => {
                spec.insert(key.to_string(), v);
            }
            None => {
                spec.remove(key);
            }
        };
        set("holderIdentity", self.holder_identity.clone().map(Value::from));
        set("leaseDurationSeconds", self.lease_duration_seconds.map(Value::from));
        set("acquireTime", self.acquire_time.clone().map(Value::from));
        set("renewTime", self.renew_time.clone().map(Value::from));
        set("leaseTransitions", self.lease_transitions.map(Value::from));
        lease
    }
}

/// What a candidate does with a Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// It is ours: renew it.
    Renew,
    /// It is free or expired: take it.
    Take,
    /// Someone else holds it for `remaining` more.
    Wait { holder: String, remaining: Duration },
}

fn decide(record: &LeaseRecord, identity: &str, now: Timestamp) -> Decision {
    match record.holder() {
        Some(h) if h == identity => Decision::Renew,
        None => Decision::Take,
        Some(holder) => match record.expires_at() {
            Some(expiry) if expiry > now => {
                let remaining = Duration::try_from(expiry.duration_since(now)).unwrap_or_default();
                Decision::Wait { holder: holder.to_string(), remaining }
            }
            _ => Decision::Take,
        },
    }
}

// === MicroTime ===

/// A `metav1.MicroTime`: RFC 3339 in UTC with exactly six fractional digits
/// (truncated, as Go's formatting truncates), e.g. `2026-01-02T03:04:05.123456Z`.
pub fn format_micro_time(t: Timestamp) -> String {
    format!("{t:.6}")
}

/// Reads a `metav1.MicroTime` (or any RFC 3339 timestamp: Lease writers differ in
/// how many fractional digits they send, and some send an offset).
pub fn parse_micro_time(s: &str) -> Option<Timestamp> {
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record(holder: &str, renew: &str, seconds: i64) -> LeaseRecord {
        LeaseRecord {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some("2026-01-02T03:00:00.000000Z".into()),
            renew_time: Some(renew.into()),
            lease_transitions: Some(4),
        }
    }

    #[test]
    fn micro_time_has_six_fractional_digits_in_utc() {
        assert_eq!(format_micro_time(ts("2026-01-02T03:04:05.123456789Z")), "2026-01-02T03:04:05.123456Z");
        assert_eq!(format_micro_time(ts("2026-01-02T03:04:05Z")), "2026-01-02T03:04:05.000000Z");
        assert_eq!(format_micro_time(ts("2026-01-02T05:04:05.5+02:00")), "2026-01-02T03:04:05.500000Z");
    }

    #[test]
    fn micro_time_reads_back_what_it_writes_and_what_others_write() {
        let t = ts("2026-01-02T03:04:05.123456Z");
        assert_eq!(parse_micro_time(&format_micro_time(t)), Some(t));
        assert_eq!(parse_micro_time("2026-01-02T03:04:05Z"), Some(ts("2026-01-02T03:04:05Z")));
        assert_eq!(parse_micro_time("2026-01-02T04:04:05.1+01:00"), Some(ts("2026-01-02T03:04:05.1Z")));
        assert_eq!(parse_micro_time("yesterday"), None);
    }

    #[test]
    fn a_lease_expires_lease_duration_after_its_renew_time() {
        let r = record("a", "2026-01-02T03:04:05.250000Z", 15);
        assert_eq!(r.expires_at(), Some(ts("2026-01-02T03:04:20.25Z")));
        assert_eq!(
            decide(&r, "b", ts("2026-01-02T03:04:19.75Z")),
            Decision::Wait { holder: "a".into(), remaining: Duration::from_millis(500) }
        );
        assert_eq!(decide(&r, "b", ts("2026-01-02T03:04:20.25Z")), Decision::Take);
        assert_eq!(decide(&r, "b", ts("2026-01-02T03:05:00Z")), Decision::Take);
    }

    #[test]
    fn the_holder_renews_even_an_expired_lease() {
        let r = record("a", "2026-01-02T03:04:05Z", 15);
        assert_eq!(decide(&r, "a", ts("2026-01-02T03:04:06Z")), Decision::Renew);
        assert_eq!(decide(&r, "a", ts("2026-01-02T04:00:00Z")), Decision::Renew);
    }

    #[test]
    fn a_lease_without_holder_or_times_is_free() {
        let now = ts("2026-01-02T03:04:06Z");
        assert_eq!(decide(&record("", "2026-01-02T03:04:05Z", 15), "b", now), Decision::Take);
        assert_eq!(decide(&LeaseRecord::default(), "b", now), Decision::Take);
        let mut no_duration = record("a", "2026-01-02T03:04:05Z", 15);
        no_duration.lease_duration_seconds = None;
        assert_eq!(decide(&no_duration, "b", now), Decision::Take);
        let mut bad_time = record("a", "soon", 15);
        assert_eq!(decide(&bad_time, "b", now), Decision::Take);
        bad_time.renew_time = None;
        assert_eq!(decide(&bad_time, "b", now), Decision::Take);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let now = ts("2026-01-02T03:10:00.000001Z");
        let r = record("a", "2026-01-02T03:04:05Z", 15);
        let taken = r.taken("b", now, 2);
        assert_eq!(taken.holder(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(5));
        assert_eq!(taken.acquire_time.as_deref(), Some("2026-01-02T03:10:00.000001Z"));
        assert_eq!(taken.renew_time.as_deref(), Some("2026-01-02T03:10:00.000001Z"));
        assert_eq!(taken.lease_duration_seconds, Some(2));
        let renewed = r.renewed(now, 15);
        assert_eq!(renewed.holder(), Some("a"));
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, r.acquire_time);
        assert_eq!(renewed.renew_time.as_deref(), Some("2026-01-02T03:10:00.000001Z"));
        let released = renewed.released(now);
        assert_eq!(released.holder(), None);
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(4));
    }

    #[test]
    fn writing_a_record_keeps_metadata_and_unknown_spec_fields() {
        let lease = json!({
            "metadata": {"name": "l", "resourceVersion": "42"},
            "spec": {"holderIdentity": "a", "strategy": "OldestEmulationVersion", "leaseTransitions": 3},
        });
        let out = record("b", "2026-01-02T03:04:05.000000Z", 2).apply_to(lease);
        assert_eq!(out["metadata"]["resourceVersion"], "42");
        assert_eq!(out["spec"]["strategy"], "OldestEmulationVersion");
        assert_eq!(out["spec"]["holderIdentity"], "b");
        assert_eq!(out["spec"]["leaseTransitions"], 4);
        assert_eq!(out["spec"]["leaseDurationSeconds"], 2);
        assert_eq!(LeaseRecord::of(&out), record("b", "2026-01-02T03:04:05.000000Z", 2));
    }
}
