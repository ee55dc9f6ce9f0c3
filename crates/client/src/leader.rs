//! Lease-based leader election (coordination.k8s.io/v1), with upstream client-go's
//! semantics and default timing.
//!
//! A candidate that sees a Lease held by someone else may take it once
//! `renewTime + leaseDurationSeconds` has passed. The leader renews every
//! `retry_period`; if it cannot renew for `renew_deadline`, it stops its work and
//! becomes a candidate again, so two leaders never overlap as long as
//! `renew_deadline < lease_duration`. Updates use resourceVersion preconditions, so
//! a race between candidates has one winner.

use std::time::Duration;

use crate::Client;

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

/// One candidate for one Lease.
pub struct LeaderElector {
    _private: (),
}

impl LeaderElector {
    /// `identity` must be unique per candidate (e.g. `hostname_uuid`).
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: LeaseTiming) -> LeaderElector {
        let _ = (client, namespace, name, identity, timing);
        todo!()
    }

    /// Whether this candidate leads now; changes as leadership is won and lost.
    pub fn leading(&self) -> tokio::sync::watch::Receiver<bool> {
        todo!()
    }

    /// Runs forever: campaigns, and while leading runs `work()` as a task; when
    /// leadership is lost, that task is aborted and the campaign starts again.
    pub async fn run<F, Fut>(self, work: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let _ = work;
        todo!()
    }
}
