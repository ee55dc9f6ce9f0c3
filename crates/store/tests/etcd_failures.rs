//! [`EtcdStore`] against real etcd clusters in trouble: members stopped and
//! killed, quorum lost and regained, lists beyond gRPC's default message size,
//! neighbours sharing the cluster, and TLS with client certificates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_store::cache::Decoder;
use skiff_store::etcd::EtcdTls;
use skiff_store::local_etcd::LocalEtcdTls;
use skiff_store::{EtcdConfig, EtcdStore, ListOptions, LocalEtcd, Store, StoreError, WatchCache, WatchResponse};

use futures::StreamExt;

async fn start(members: usize) -> LocalEtcd {
    tokio::task::spawn_blocking(move || LocalEtcd::start(members)).await.unwrap().expect("starting etcd (apt-get install etcd-server)")
}

fn config(etcd: &LocalEtcd, prefix: &str) -> EtcdConfig {
    EtcdConfig { endpoints: etcd.endpoints(), prefix: prefix.into(), request_timeout: Duration::from_secs(2), ..EtcdConfig::default() }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Retries `f` until it succeeds or `within` has passed (for the moments after a
/// member restarts, while the cluster elects a leader).
async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = skiff_store::Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("still failing after {within:?}: {e}"),
        }
    }
}

/// Creates `key`, retrying while the cluster elects a leader. A create whose
/// outcome was unknown may have committed: then the key is there with `value`.
async fn create_retrying(store: &dyn Store, key: &str, value: &str) -> skiff_store::KeyValue {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.create(key, b(value)).await {
            Ok(kv) => return kv,
            Err(StoreError::AlreadyExists { .. }) => {
                let kv = store.get(key).await.unwrap().expect("an existing key");
                assert_eq!(kv.value, b(value));
                return kv;
            }
            Err(StoreError::Unavailable(why)) if Instant::now() < deadline => eprintln!("create {key} not yet: {why}"),
            Err(e) => panic!("create {key}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_with_one_member_down_and_fails_fast_without_quorum() {
    let mut etcd = start(3).await;
    let store = EtcdStore::connect(config(&etcd, "/skiff")).await.unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let kv = store.create(&format!("/q/before/{i}"), b(&format!("v{i}"))).await.unwrap();
        acknowledged.push(kv);
    }

    // Calls start at the first endpoint: stopping member 0 makes the store move on.
    etcd.stop_member(0);
    for i in 0..10 {
        let kv = store.create(&format!("/q/one-down/{i}"), b(&format!("w{i}"))).await.expect("a write with one member of three down");
        acknowledged.push(kv);
    }
    let first = acknowledged[0].clone();
    assert_eq!(store.get(&first.key).await.unwrap().as_ref(), Some(&first));
    let updated = store.update(&first.key, b("updated"), first.mod_revision).await.expect("an update with one member down");
    acknowledged[0] = updated;
    assert_eq!(store.list("/q/", ListOptions::default()).await.unwrap().items.len(), 20);

    // The store moved on to member 1; the watch is there too. Stopping member 2
    // leaves member 1 running without a leader, and require-leader ends the watch.
    let mut watch = store.watch("/q/", store.current_revision().await.unwrap()).await.unwrap();

    etcd.stop_member(2);
    let started = Instant::now();
    match store.create("/q/no-quorum", b("x")).await {
        Err(StoreError::Unavailable(why)) => eprintln!("write without quorum: {why}"),
        other => panic!("a write without quorum: expected Unavailable, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "a write without quorum took {took:?} to fail (request timeout 2 s)");
    let started = Instant::now();
    assert!(matches!(store.current_revision().await, Err(StoreError::Unavailable(_))), "current_revision without quorum must be Unavailable");
    assert!(started.elapsed() < Duration::from_millis(3500), "current_revision without quorum took {:?}", started.elapsed());
    assert!(matches!(store.get(&first.key).await, Err(StoreError::Unavailable(_))), "a linearizable read without quorum must be Unavailable");

    // A watch on a member cut off from quorum ends.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match watch.next().await {
                Some(Ok(WatchResponse::Progress(_))) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("a watch on a cluster without quorum did not end");
    eprintln!("watch without quorum: {ended:?}");
    assert!(matches!(ended, Some(Err(StoreError::Unavailable(_)))), "a watch without quorum ended with {ended:?}");
    assert!(watch.next().await.is_none(), "a failed watch must end");

    etcd.start_member(0).unwrap();
    etcd.start_member(2).unwrap();
    tokio::task::block_in_place(|| etcd.wait_healthy(Duration::from_secs(30))).expect("etcd healthy again");
    let after = eventually(Duration::from_secs(15), || store.create("/q/after", b("back"))).await;
    acknowledged.push(after);
    for kv in &acknowledged {
        assert_eq!(store.get(&kv.key).await.unwrap().as_ref(), Some(kv), "an acknowledged write was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cache_keeps_following_after_its_member_is_killed() {
    let mut etcd = start(3).await;
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(config(&etcd, "/skiff")).await.unwrap());
    store.create("/c/a", b("1")).await.unwrap();
    let decode: Decoder<String> = Arc::new(|kv| Some(String::from_utf8_lossy(&kv.value).into_owned()));
    let cache = WatchCache::start(store.clone(), "/c/".into(), decode, 1000).await.unwrap();
    let mut watcher = cache.watch("/c/", cache.revision()).unwrap();
    let b1 = store.create("/c/b", b("2")).await.unwrap();
    cache.wait_for(b1.mod_revision, Duration::from_secs(10)).await.unwrap();

    // The store (and so the cache's watch) talks to member 0 first. If it led the
    // cluster, writes wait for a new leader for a moment.
    etcd.kill_member(0);
    let mut written = vec![b1.clone()];
    for i in 0..5 {
        written.push(create_retrying(&*store, &format!("/c/after-kill/{i}"), &i.to_string()).await);
    }
    let last = written.last().unwrap().mod_revision;
    cache.wait_for(last, Duration::from_secs(20)).await.expect("the cache follows writes after its member was killed");
    for kv in &written {
        assert_eq!(cache.get(&kv.key).map(|e| e.object.clone()), Some(String::from_utf8_lossy(&kv.value).into_owned()));
    }
    assert_eq!(cache.len(), 7);

    // Its watchers saw every write once, in order (re-watching left no gap).
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        match tokio::time::timeout(Duration::from_secs(10), watcher.next()).await.expect("watcher event").expect("watcher open") {
            skiff_store::cache::CacheWatchItem::Event(e) => seen.push(e.revision),
            skiff_store::cache::CacheWatchItem::Progress(_) => {}
        }
    }
    assert_eq!(seen, written.iter().map(|kv| kv.mod_revision).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_larger_than_four_mib_returns_everything() {
    const KEYS: usize = 6000;
    let etcd = start(1).await;
    let store = EtcdStore::connect(config(&etcd, "/skiff")).await.unwrap();
    let items: Vec<(String, Bytes)> = (0..KEYS).map(|i| (format!("/big/k{i:05}"), Bytes::from(vec![b'a' + (i % 26) as u8; 1024]))).collect();
    let written = store.create_many(items.clone(), 128).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), written);

    let all = store.list("/big/", ListOptions::default()).await.unwrap();
    assert!(!all.more);
    assert_eq!(all.revision, written);
    assert_eq!(all.items.len(), KEYS, "a 6 MiB list lost items");
    for (kv, (key, value)) in all.items.iter().zip(&items) {
        assert_eq!(&kv.key, key);
        assert_eq!(&kv.value, value);
    }

    let limited = store.list("/big/", ListOptions { limit: Some(5000), ..Default::default() }).await.unwrap();
    assert_eq!(limited.items.len(), 5000);
    assert!(limited.more);
    let rest = store.list("/big/", ListOptions { start_after: Some(limited.items[4999].key.clone()), revision: Some(limited.revision), limit: Some(5000) }).await.unwrap();
    assert_eq!(rest.items.len(), 1000);
    assert!(!rest.more);

    // create_many refuses a batch holding an existing key, and writes none of it.
    let before = store.current_revision().await.unwrap();
    let clash = vec![("/big/new".to_string(), b("n")), ("/big/k00007".to_string(), b("x"))];
    match store.create_many(clash, 128).await {
        Err(StoreError::AlreadyExists { key }) => assert_eq!(key, "/big/k00007"),
        other => panic!("create_many over an existing key: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.current_revision().await.unwrap(), before);
    assert_eq!(store.get("/big/new").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_values_too_big_for_one_message_is_read_in_smaller_pages() {
    // 48 values at the limit: about 72 MiB, over the 64 MiB the store decodes at once.
    const KEYS: usize = 48;
    let etcd = start(1).await;
    let store = EtcdStore::connect(config(&etcd, "/skiff")).await.unwrap();
    let limit = store.max_value_size();
    for i in 0..KEYS {
        store.create(&format!("/huge/{i:02}"), Bytes::from(vec![b'a' + i as u8; limit])).await.unwrap();
    }
    let all = store.list("/huge/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), KEYS);
    assert!(!all.more);
    for (i, kv) in all.items.iter().enumerate() {
        assert_eq!(kv.key, format!("/huge/{i:02}"));
        assert!(kv.value.len() == limit && kv.value.iter().all(|&c| c == b'a' + i as u8), "value {i} came back wrong");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_prefixes_do_not_see_each_others_keys() {
    let etcd = start(1).await;
    // `/skiff` is a string prefix of `/skiff2`: the classic way to leak.
    let a = EtcdStore::connect(config(&etcd, "/skiff")).await.unwrap();
    let b2 = EtcdStore::connect(config(&etcd, "/skiff2")).await.unwrap();
    let start = a.current_revision().await.unwrap();
    let mut watch_all = a.watch("", start).await.unwrap();
    let mut watch_x = a.watch("/x/", start).await.unwrap();

    b2.create("/x/1", b("from b")).await.unwrap();
    b2.create("/y", b("from b")).await.unwrap();
    let ax = a.create("/x/1", b("from a")).await.unwrap();
    b2.raw_put("/x/2", b("from b")).await.unwrap();

    let a_all = a.list("", ListOptions::default()).await.unwrap();
    assert_eq!(a_all.items, vec![ax.clone()]);
    let b_all: Vec<String> = b2.list("", ListOptions::default()).await.unwrap().items.into_iter().map(|kv| kv.key).collect();
    assert_eq!(b_all, ["/x/1", "/x/2", "/y"]);
    assert_eq!(a.get("/x/1").await.unwrap().unwrap().value, b("from a"));
    assert_eq!(b2.get("/x/1").await.unwrap().unwrap().value, b("from b"));
    assert_eq!(a.get("/y").await.unwrap(), None);

    for watch in [&mut watch_all, &mut watch_x] {
        let first = next_events(watch).await;
        assert_eq!(first.iter().map(|e| e.kv.clone()).collect::<Vec<_>>(), vec![ax.clone()]);
    }
    // Nothing else arrives: b's later write is not a's business.
    let quiet = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match watch_all.next().await {
                Some(Ok(WatchResponse::Progress(_))) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a's watch saw something of b's: {quiet:?}");
    assert!(matches!(a.create("relative", b("x")).await, Err(StoreError::Internal(_))), "keys must start with '/'");
}

async fn next_events(watch: &mut skiff_store::WatchStream) -> Vec<skiff_store::Event> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("a watch event") {
            Some(Ok(WatchResponse::Events(events))) => return events,
            Some(Ok(WatchResponse::Progress(_))) => {}
            other => panic!("watch: {other:?}"),
        }
    }
}

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, as files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn generate() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "skiff test etcd CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        write("ca.pem", ca.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        server.distinguished_name.push(DnType::CommonName, "etcd");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        write("server.pem", server.signed_by(&server_key, &issuer).unwrap().pem());
        write("server-key.pem", server_key.serialize_pem());

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name.push(DnType::CommonName, "skiff");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        write("client.pem", client.signed_by(&client_key, &issuer).unwrap().pem());
        write("client-key.pem", client_key.serialize_pem());

        // A CA nobody uses, for the wrong-CA case.
        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        other.distinguished_name.push(DnType::CommonName, "some other CA");
        write("other-ca.pem", other.self_signed(&other_key).unwrap().pem());
        Pki { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_connects_and_without_one_fails_clearly() {
    let pki = Pki::generate();
    let tls = LocalEtcdTls { cert_file: pki.path("server.pem"), key_file: pki.path("server-key.pem"), client_ca_file: Some(pki.path("ca.pem")) };
    let etcd = tokio::task::spawn_blocking(move || LocalEtcd::start_tls(1, tls)).await.unwrap().expect("starting etcd with TLS");

    let with_cert = EtcdConfig {
        tls: Some(EtcdTls { ca_file: pki.path("ca.pem"), cert_file: Some(pki.path("client.pem")), key_file: Some(pki.path("client-key.pem")) }),
        ..config(&etcd, "/skiff")
    };
    let store = EtcdStore::connect(with_cert.clone()).await.expect("connecting with a client certificate");
    let kv = store.create("/tls/x", b("secret")).await.unwrap();
    assert_eq!(store.get("/tls/x").await.unwrap(), Some(kv));

    let endpoint = etcd.endpoints()[0].clone();
    // Refusals are retried until the deadline: keep it short here.
    let with_cert = EtcdConfig { request_timeout: Duration::from_secs(1), ..with_cert };
    let without_cert = EtcdConfig { tls: Some(EtcdTls { ca_file: pki.path("ca.pem"), cert_file: None, key_file: None }), ..with_cert.clone() };
    let started = Instant::now();
    match EtcdStore::connect(without_cert).await {
        Err(StoreError::Unavailable(why)) => {
            eprintln!("without a client certificate: {why}");
            assert!(why.contains(&endpoint), "the error does not name the endpoint: {why}");
        }
        other => panic!("connecting without a client certificate: expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "refusal took {:?}", started.elapsed());

    let plain = EtcdConfig { tls: None, ..with_cert.clone() };
    assert!(matches!(EtcdStore::connect(plain).await, Err(StoreError::Unavailable(_))), "plain HTTP to a TLS port must fail");

    let wrong_ca = EtcdConfig { tls: Some(EtcdTls { ca_file: pki.path("other-ca.pem"), ..with_cert.tls.clone().unwrap() }), ..with_cert.clone() };
    assert!(matches!(EtcdStore::connect(wrong_ca).await, Err(StoreError::Unavailable(_))), "a server certificate from another CA must be refused");

    let missing = EtcdConfig { tls: Some(EtcdTls { ca_file: pki.path("nope.pem"), cert_file: None, key_file: None }), ..with_cert };
    match EtcdStore::connect(missing).await {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("nope.pem"), "{why}"),
        other => panic!("a missing CA file: expected an error naming it, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_never_overtake_events() {
    let etcd = start(1).await;
    // Progress asked for every 10 ms: the notification races the backlog of a
    // watcher catching up, and events queued for a live one.
    let config = EtcdConfig { progress_interval: Duration::from_millis(10), ..config(&etcd, "/skiff") };
    let store = Arc::new(EtcdStore::connect(config).await.unwrap());
    let start = store.current_revision().await.unwrap();
    write_concurrently(&store, "/p/backlog", 1000).await;

    let mut watch = store.watch("/p/", start).await.unwrap();
    let mut writer = Some({
        let store = store.clone();
        tokio::spawn(async move { write_concurrently(&store, "/p/live", 500).await })
    });
    let mut events = 0;
    let mut last_event = start;
    let mut last_progress = start;
    let mut final_revision = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let item = tokio::time::timeout_at(deadline.into(), watch.next())
            .await
            .unwrap_or_else(|_| panic!("the watch stalled: {events} events, last {last_event}, progress {last_progress}, final {final_revision:?}"))
            .expect("the watch ended")
            .unwrap();
        match item {
            WatchResponse::Events(batch) => {
                for event in batch {
                    assert!(event.revision() > last_event, "events out of order");
                    assert!(event.revision() > last_progress, "event at {} after progress {last_progress}", event.revision());
                    last_event = event.revision();
                    events += 1;
                }
            }
            WatchResponse::Progress(rev) => last_progress = last_progress.max(rev),
        }
        if events == 1500 && final_revision.is_none() {
            writer.take().unwrap().await.unwrap();
            // Writes elsewhere: only progress notifications can tell the watch.
            write_concurrently(&store, "/elsewhere", 8).await;
            final_revision = Some(store.current_revision().await.unwrap());
        }
        if let Some(rev) = final_revision {
            if last_progress >= rev {
                break;
            }
        }
    }
    assert_eq!(events, 1500);
}

async fn write_concurrently(store: &Arc<EtcdStore>, prefix: &str, n: usize) {
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (store, prefix) = (store.clone(), prefix.to_string());
            tokio::spawn(async move {
                for i in (t..n).step_by(4) {
                    store.create(&format!("{prefix}/{i:05}"), b("x")).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_by_another_server_is_found() {
    let etcd = start(1).await;
    let ours = EtcdStore::connect(config(&etcd, "/skiff")).await.unwrap();
    let theirs = EtcdStore::connect(config(&etcd, "/skiff")).await.unwrap();
    assert_eq!(ours.compacted_revision().await.unwrap(), 0);
    let mut revisions = Vec::new();
    for i in 0..40 {
        revisions.push(ours.create(&format!("/k/{i}"), b("x")).await.unwrap().mod_revision);
    }

    theirs.compact(revisions[10]).await.unwrap();
    assert_eq!(ours.compacted_revision().await.unwrap(), revisions[10], "a compaction by another server");
    theirs.compact(revisions[33]).await.unwrap();
    assert_eq!(ours.compacted_revision().await.unwrap(), revisions[33]);
    match ours.list("/k/", ListOptions { revision: Some(revisions[20]), ..Default::default() }).await {
        Err(StoreError::Compacted { requested, compacted }) => assert_eq!((requested, compacted), (revisions[20], revisions[33])),
        other => panic!("a list below another server's compaction: expected Compacted, got {other:?}"),
    }
    match ours.watch("/k/", revisions[33] - 1).await {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, revisions[33]),
        Err(e) => panic!("a watch below the compaction: {e}"),
        Ok(_) => panic!("a watch below the compaction was accepted"),
    }
    // Compacting at or below the compacted revision is a no-op; the future is refused.
    ours.compact(revisions[20]).await.unwrap();
    assert_eq!(ours.compacted_revision().await.unwrap(), revisions[33]);
    let current = ours.current_revision().await.unwrap();
    match ours.compact(current + 5).await {
        Err(StoreError::FutureRevision { requested, current: now }) => assert_eq!((requested, now), (current + 5, current)),
        other => panic!("compacting the future: expected FutureRevision, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_etcd_keeps_data_and_logs_in_the_given_directory_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let etcd = tokio::task::spawn_blocking(move || LocalEtcd::start_in(&root, 1)).await.unwrap().unwrap();
    assert!(etcd.member_dir(0).starts_with(dir.path()));
    assert!(etcd.url().starts_with("etcd://127.0.0.1:"));
    let config = EtcdConfig::from_url(&etcd.url()).unwrap();
    assert_eq!(config.endpoints, etcd.endpoints());
    let store = EtcdStore::connect(config.clone()).await.unwrap();
    store.create("/x", b("1")).await.unwrap();
    let log = std::fs::read_to_string(etcd.member_dir(0).join("member.log")).unwrap();
    assert!(!log.is_empty(), "member.log is empty");
    assert!(etcd.member_dir(0).join("data").is_dir());

    drop(etcd);
    let refused = EtcdStore::connect(EtcdConfig { request_timeout: Duration::from_millis(500), ..config }).await;
    assert!(matches!(refused, Err(StoreError::Unavailable(_))), "etcd still answers after LocalEtcd was dropped");
    // The data stays in a directory the caller owns.
    assert!(dir.path().join("m0/data").is_dir());
}
