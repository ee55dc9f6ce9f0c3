//! A highly available control plane on real etcd: three etcd members on loopback
//! and two `skiff server` processes sharing them.
//!
//! One test walks through the failures an operator meets, in order, with a client
//! writing through both servers the whole time:
//! 1. both servers serve, with one CA and one set of tokens; exactly one leads;
//! 2. `kill -9` of the leading server: the other takes the controllers' Lease within
//!    the lease duration, its controllers work, and every acknowledged write is kept;
//! 3. one etcd member stopped: the API keeps working;
//! 4. two members stopped: writes fail with a 5xx `Status`, `/readyz` says not ready;
//! 5. the members return: writes resume, nothing acknowledged is lost, and the killed
//!    server rejoins with the same data.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_client::Client;
use skiff_store::LocalEtcd;
use support::TestServer;

const LEASE: Duration = Duration::from_secs(4);

fn server_flags(etcd_url: &str) -> Vec<String> {
    [
        "--datastore",
        etcd_url,
        "--leader-elect-lease-duration",
        "4s",
        "--leader-elect-renew-deadline",
        "3s",
        "--leader-elect-retry-period",
        "500ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_server(dir: tempfile::TempDir, flags: &[String]) -> TestServer {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestServer::start_with(dir, &flags)
}

fn identity(server: &TestServer) -> String {
    let id = std::fs::read_to_string(server.data_dir().join("identity")).expect("identity file");
    id.trim().to_string()
}

/// The holder of the controllers' Lease, if it can be read.
async fn holder(client: &Client) -> Option<String> {
    let lease = client.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/skiff-controllers").await.ok()?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": name}})
}

async fn names_in(client: &Client, namespace: &str) -> BTreeSet<String> {
    let list = client.get(&format!("/api/v1/namespaces/{namespace}/configmaps")).await.expect("listing configmaps");
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Writes ConfigMaps through both servers in turn until stopped; remembers every
/// name a server acknowledged with 201.
struct Writer {
    acked: Arc<Mutex<Vec<String>>>,
    failed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(clients: Vec<Client>, prefix: &'static str) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (acked, failed, stop) = (acked.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                // Bounded: at most 2,000 writes, one every 20 ms.
                for i in 0..2000usize {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let name = format!("{prefix}-{i}");
                    let client = &clients[i % clients.len()];
                    match client.create("/api/v1/namespaces/ha/configmaps", &configmap(&name)).await {
                        Ok(_) => acked.lock().unwrap().push(name),
                        Err(e) => failed.lock().unwrap().push(format!("{name}: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Writer { acked, failed, stop, task }
    }

    async fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        let failed = self.failed.lock().unwrap().clone();
        (acked, failed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_three_etcd_members_survive_server_and_member_failures() {
    let mut etcd = LocalEtcd::start(3).expect("starting a 3-member etcd cluster (apt-get install etcd-server)");
    let flags = server_flags(&etcd.url());

    // --- 1. Two servers, one set of credentials, one leader. ---
    let a = start_server(tempfile::tempdir().unwrap(), &flags);
    let b = start_server(tempfile::tempdir().unwrap(), &flags);
    assert_eq!(a.token(), b.token(), "both servers accept the same admin token");
    assert_eq!(a.ca(), b.ca(), "both servers are signed by the same CA");
    let ca = a.client(Duration::from_secs(10));
    let cb = b.client(Duration::from_secs(10));
    ca.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ha"}}))
        .await
        .expect("creating the test namespace");
    // A write through one server is visible through the other.
    ca.create("/api/v1/namespaces/ha/configmaps", &configmap("through-a")).await.unwrap();
    eventually("b to see a's write", Duration::from_secs(10), || async { cb.get("/api/v1/namespaces/ha/configmaps/through-a").await.is_ok() }).await;

    let (ida, idb) = (identity(&a), identity(&b));
    let started = Instant::now();
    let leader = loop {
        if let Some(h) = holder(&ca).await.filter(|h| h.ends_with(&ida) || h.ends_with(&idb)) {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no server took the controllers' Lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let a_leads = leader.ends_with(&ida);
    eprintln!("leader: {leader} ({})", if a_leads { "server a" } else { "server b" });

    // --- 2. kill -9 the leader while a client writes through both servers. ---
    let writer = Writer::start(vec![a.client(Duration::from_secs(10)), b.client(Duration::from_secs(10))], "w");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (survivor, killed_dir, survivor_id) = if a_leads {
        let dir = a.kill();
        (b, dir, idb)
    } else {
        let dir = b.kill();
        (a, dir, ida)
    };
    let killed_at = Instant::now();
    let cs = survivor.client(Duration::from_secs(10));
    let takeover = loop {
        if holder(&cs).await.is_some_and(|h| h.ends_with(&survivor_id)) {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < LEASE * 4, "the survivor did not take the controllers' Lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("takeover after kill -9 of the leader: {takeover:?} (lease duration {LEASE:?})");
    // The lease is renewed every retry period, so it expires at most one lease
    // duration after the kill; the bound adds one second for a loaded machine.
    assert!(takeover <= LEASE + Duration::from_secs(1), "takeover took {takeover:?}, lease duration is {LEASE:?}");

    // The new leader's controllers work: a deleted namespace goes away.
    cs.create("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})).await.unwrap();
    cs.create("/api/v1/namespaces/doomed/configmaps", &configmap("inside")).await.unwrap();
    cs.delete("/api/v1/namespaces/doomed").await.unwrap();
    eventually("namespace termination on the new leader", Duration::from_secs(30), || async {
        cs.get("/api/v1/namespaces/doomed").await.err().is_some_and(|e| e.is_not_found())
    })
    .await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acked, _) = writer.finish().await;
    assert!(acked.len() > 20, "the writer got only {} writes acknowledged", acked.len());
    let stored = names_in(&cs, "ha").await;
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost after the failover: {lost:?}");

    // --- 3. One etcd member stopped: the API keeps working. ---
    etcd.stop_member(0);
    let mut failures = Vec::new();
    for i in 0..20 {
        let name = format!("one-down-{i}");
        let mut done = false;
        for _attempt in 0..5 {
            match cs.create("/api/v1/namespaces/ha/configmaps", &configmap(&name)).await {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        assert!(done, "with one etcd member down, {name} could not be written: {failures:?}");
    }
    // At most the requests in flight to the stopped member may fail once.
    assert!(failures.len() <= 2, "too many failed writes with one member down: {failures:?}");
    assert!(cs.get("/api/v1/namespaces/ha/configmaps/one-down-19").await.is_ok());

    // --- 4. Two members stopped: clear 5xx errors, not ready, nothing half-written. ---
    etcd.stop_member(1);
    let started = Instant::now();
    let err = loop {
        match cs.create("/api/v1/namespaces/ha/configmaps", &configmap("no-quorum")).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(started.elapsed() < Duration::from_secs(20), "writes still succeed 20 s after losing quorum");
                let _ = cs.delete("/api/v1/namespaces/ha/configmaps/no-quorum").await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    eprintln!("write without quorum failed after {:?}: {err}", started.elapsed());
    match &err {
        skiff_client::Error::Api { code, status, .. } => {
            assert!((500..=504).contains(code), "expected a 5xx, got {code}: {status}");
            assert_eq!(status["kind"], "Status", "the error is a Status object: {status}");
            assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()), "the Status says what failed: {status}");
        }
        other => panic!("expected a 5xx Status, got {other}"),
    }
    let readyz = format!("https://{}/readyz", survivor.addr);
    let http = survivor.https().timeout(Duration::from_secs(5)).build().unwrap();
    eventually("/readyz to report not ready without quorum", Duration::from_secs(20), || async {
        http.get(&readyz).send().await.is_ok_and(|r| r.status().as_u16() == 503)
    })
    .await;

    // --- 5. Members back: writes resume, nothing acknowledged is lost. ---
    etcd.start_member(0).expect("restarting member 0");
    etcd.start_member(1).expect("restarting member 1");
    etcd.wait_healthy(Duration::from_secs(30)).expect("etcd healthy again");
    eventually("writes to resume", Duration::from_secs(30), || async {
        cs.create("/api/v1/namespaces/ha/configmaps", &configmap("after-quorum")).await.is_ok()
            || cs.get("/api/v1/namespaces/ha/configmaps/after-quorum").await.is_ok()
    })
    .await;
    eventually("/readyz to report ready again", Duration::from_secs(20), || async {
        http.get(&readyz).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let stored = names_in(&cs, "ha").await;
    for name in acked.iter().chain(["through-a".to_string(), "one-down-0".to_string(), "after-quorum".to_string()].iter()) {
        assert!(stored.contains(name), "{name} is missing after the members returned");
    }
    // The write refused without quorum did not half-happen: it is either absent or whole.
    if let Ok(cm) = cs.get("/api/v1/namespaces/ha/configmaps/no-quorum").await {
        assert_eq!(cm["data"]["n"], "no-quorum");
    }

    // The killed server restarts on its old data directory and serves the same objects.
    let back = start_server(killed_dir, &flags);
    let cback = back.client(Duration::from_secs(10));
    let seen = names_in(&cback, "ha").await;
    assert_eq!(seen, names_in(&cs, "ha").await, "both servers list the same objects");
    cback.create("/api/v1/namespaces/ha/configmaps", &configmap("through-restarted")).await.expect("writing through the restarted server");
    eventually("the survivor to see the restarted server's write", Duration::from_secs(10), || async {
        cs.get("/api/v1/namespaces/ha/configmaps/through-restarted").await.is_ok()
    })
    .await;
}
