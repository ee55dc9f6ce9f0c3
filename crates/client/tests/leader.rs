//! Leader election between candidates on a real in-process server, with short
//! timings (2 s lease, 1.5 s renew deadline, 0.25 s retry period).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_client::leader::{LeaderElector, LeaseTiming};
use skiff_client::Client;
use support::{wait_for, Relay, TestServer};

const NAMESPACE: &str = "kube-system";

fn timing() -> LeaseTiming {
    LeaseTiming { lease_duration: Duration::from_secs(2), renew_deadline: Duration::from_millis(1500), retry_period: Duration::from_millis(250) }
}

fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{name}")
}

/// Work that counts up every 10 ms for as long as it runs.
fn counting(counter: &Arc<AtomicUsize>) -> impl Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static {
    let counter = counter.clone();
    move || {
        let counter = counter.clone();
        Box::pin(async move {
            loop {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }
}

/// Whether `counter` stands still for a while.
async fn stopped(counter: &AtomicUsize) -> bool {
    // Let an abort that is under way land first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = counter.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    counter.load(Ordering::SeqCst) == before
}

async fn lease(client: &Client, name: &str) -> Value {
    client.get(&lease_path(name)).await.unwrap()
}

struct Candidate {
    identity: &'static str,
    leading: tokio::sync::watch::Receiver<bool>,
    counter: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

fn candidate(client: Client, lease: &str, identity: &'static str, timing: LeaseTiming) -> Candidate {
    let elector = LeaderElector::new(client, NAMESPACE, lease, identity, timing);
    let leading = elector.leading();
    let counter = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(elector.run(counting(&counter)));
    Candidate { identity, leading, counter, task }
}

#[tokio::test]
async fn two_candidates_elect_one_leader_and_a_crash_hands_over_within_the_lease_duration() {
    let ts = TestServer::start().await;
    let a = candidate(ts.client(), "crash", "a", timing());
    let b = candidate(ts.client(), "crash", "b", timing());

    let mut any = [a.leading.clone(), b.leading.clone()];
    let [ra, rb] = &mut any;
    tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            _ = ra.wait_for(|v| *v) => {},
            _ = rb.wait_for(|v| *v) => {},
        }
    })
    .await
    .expect("someone leads within 5 s");
    // Several renew rounds later there is still exactly one leader.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let states = (*a.leading.borrow(), *b.leading.borrow());
    let (leader, follower) = match states {
        (true, false) => (a, b),
        (false, true) => (b, a),
        other => panic!("exactly one should lead, got {other:?}"),
    };
    let observer = ts.client();
    let held = lease(&observer, "crash").await;
    assert_eq!(held["spec"]["holderIdentity"], leader.identity);
    assert_eq!(held["spec"]["leaseDurationSeconds"], 2);
    let transitions = held["spec"]["leaseTransitions"].as_i64().unwrap();
    assert!(leader.counter.load(Ordering::SeqCst) > 0, "the leader works");
    assert_eq!(follower.counter.load(Ordering::SeqCst), 0, "the follower does not");

    // The leader crashes: its run task is gone, and its work with it.
    let crashed_at = Instant::now();
    leader.task.abort();
    let _ = leader.task.await;
    assert!(stopped(&leader.counter).await, "a crashed leader's work stops");
    assert!(!*leader.leading.borrow());

    let mut follower_leading = follower.leading.clone();
    assert!(wait_for(&mut follower_leading, true, Duration::from_secs(5)).await, "the follower takes over");
    let took = crashed_at.elapsed();
    assert!(took <= timing().lease_duration + Duration::from_millis(600), "takeover took {took:?}");
    let taken = lease(&observer, "crash").await;
    assert_eq!(taken["spec"]["holderIdentity"], follower.identity);
    assert_eq!(taken["spec"]["leaseTransitions"].as_i64().unwrap(), transitions + 1);
    assert_ne!(taken["spec"]["acquireTime"], held["spec"]["acquireTime"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!stopped(&follower.counter).await, "the new leader works");
    follower.task.abort();
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_after_the_renew_deadline_and_stops_its_work() {
    let ts = TestServer::start().await;
    let relay = Relay::start(ts.server.addr).await;
    let cut_off = Client::new(ts.config(vec![relay.url()])).unwrap();
    let mut a = candidate(cut_off, "deadline", "a", timing());
    assert!(wait_for(&mut a.leading, true, Duration::from_secs(5)).await, "a leads");
    assert!(!stopped(&a.counter).await);

    let cut_at = Instant::now();
    drop(relay);
    assert!(wait_for(&mut a.leading, false, Duration::from_secs(5)).await, "a steps down");
    let took = cut_at.elapsed();
    // It keeps trying until the deadline (counted from its last renew, at most one
    // retry period before the cut) and no longer.
    assert!(took >= timing().renew_deadline - timing().retry_period - Duration::from_millis(100), "stepped down after only {took:?}");
    assert!(took <= timing().renew_deadline + Duration::from_millis(400), "stepped down after {took:?}");
    assert!(stopped(&a.counter).await, "the work of a leader that stepped down stops");

    // Someone who can reach the server takes over once the lease runs out, and a
    // keeps campaigning without leading.
    let mut b = candidate(ts.client(), "deadline", "b", timing());
    assert!(wait_for(&mut b.leading, true, Duration::from_secs(5)).await, "b takes over");
    assert!(!*a.leading.borrow());
    assert_eq!(lease(&ts.client(), "deadline").await["spec"]["holderIdentity"], "b");
    a.task.abort();
    b.task.abort();
}

#[tokio::test]
async fn a_leader_that_finds_another_holder_steps_down_at_once() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let mut a = candidate(ts.client(), "intruder", "a", timing());
    assert!(wait_for(&mut a.leading, true, Duration::from_secs(5)).await);

    // Someone else writes the Lease as theirs, fresh.
    let mut held = lease(&client, "intruder").await;
    held["spec"]["holderIdentity"] = json!("intruder");
    held["spec"]["renewTime"] = json!(skiff_client::leader::format_micro_time(jiff::Timestamp::now()));
    held["spec"]["leaseDurationSeconds"] = json!(60);
    let written_at = Instant::now();
    client.update(&lease_path("intruder"), &held).await.unwrap();

    assert!(wait_for(&mut a.leading, false, Duration::from_secs(5)).await, "a steps down");
    let took = written_at.elapsed();
    assert!(took < timing().retry_period + Duration::from_millis(400), "stepped down after {took:?}, not at the first renew");
    assert!(stopped(&a.counter).await);
    // The intruder's lease is left alone.
    tokio::time::sleep(timing().retry_period * 2).await;
    assert_eq!(lease(&client, "intruder").await["spec"]["holderIdentity"], "intruder");
    assert!(!*a.leading.borrow());
    a.task.abort();
}

#[tokio::test]
async fn work_that_ends_by_itself_is_not_restarted_while_leading() {
    let ts = TestServer::start().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let counted = starts.clone();
    let elector = LeaderElector::new(ts.client(), NAMESPACE, "short-work", "a", timing());
    let mut leading = elector.leading();
    let task = tokio::spawn(elector.run(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    }));
    assert!(wait_for(&mut leading, true, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    assert!(*leading.borrow(), "still leading");
    let renewed = lease(&ts.client(), "short-work").await;
    assert_eq!(renewed["spec"]["holderIdentity"], "a");
    task.abort();
}

#[tokio::test]
async fn a_leader_that_shuts_down_releases_the_lease_for_an_immediate_takeover() {
    let ts = TestServer::start().await;
    // A long lease: without the release, b would wait ten seconds.
    let long = LeaseTiming { lease_duration: Duration::from_secs(10), renew_deadline: Duration::from_secs(7), retry_period: Duration::from_millis(250) };
    let a_counter = Arc::new(AtomicUsize::new(0));
    let elector = LeaderElector::new(ts.client(), NAMESPACE, "release", "a", long);
    let mut a_leading = elector.leading();
    let (stop, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let a_task = tokio::spawn(elector.run_until(counting(&a_counter), async move {
        let _ = stopped_rx.await;
    }));
    assert!(wait_for(&mut a_leading, true, Duration::from_secs(5)).await);
    let mut b = candidate(ts.client(), "release", "b", long);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!*b.leading.borrow());

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), a_task).await.expect("run_until returns after shutdown").unwrap();
    let released_at = Instant::now();
    assert!(!*a_leading.borrow());
    assert!(stopped(&a_counter).await);

    assert!(wait_for(&mut b.leading, true, Duration::from_secs(3)).await, "b takes over");
    let took = released_at.elapsed();
    assert!(took < Duration::from_secs(1), "takeover after a release took {took:?}");
    let lease = lease(&ts.client(), "release").await;
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 10);
    b.task.abort();
}

#[tokio::test]
async fn a_shutdown_before_winning_returns_without_touching_the_lease() {
    let ts = TestServer::start().await;
    let mut a = candidate(ts.client(), "untouched", "a", timing());
    assert!(wait_for(&mut a.leading, true, Duration::from_secs(5)).await);
    let elector = LeaderElector::new(ts.client(), NAMESPACE, "untouched", "b", timing());
    let b_leading = elector.leading();
    let ran = tokio::time::timeout(Duration::from_secs(5), elector.run_until(|| async {}, tokio::time::sleep(Duration::from_millis(600)))).await;
    assert!(ran.is_ok(), "run_until returns on shutdown");
    assert!(!*b_leading.borrow());
    assert_eq!(lease(&ts.client(), "untouched").await["spec"]["holderIdentity"], "a");
    a.task.abort();
}
