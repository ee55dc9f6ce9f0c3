//! Acknowledged writes survive `kill -9`.
//!
//! The test re-runs its own binary as a child, selecting [`crash_writer`], which
//! acts as a writer only when [`CHILD_DIR`] is set: it writes to a store in that
//! directory from several tasks and prints every acknowledged write. The parent
//! reads some of those lines, kills the child with SIGKILL mid-stream, reopens the
//! store and checks that every write the child saw acknowledged is there.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use skiff_store::{SqliteStore, Store};

/// Set in the child's environment: the directory of its store.
const CHILD_DIR: &str = "SKIFF_STORE_CRASH_CHILD_DIR";

/// Acknowledged writes the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 600;

const WRITERS: usize = 6;

/// The child's side: writes until it is killed. A no-op in a normal test run.
#[test]
fn crash_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(&Path::new(&dir).join("state.db")).unwrap());
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let counter = format!("/crash/w{w}/counter");
                let mut own = store.create(&counter, Bytes::from("0")).await.unwrap();
                println!("ACK {} {} {}", own.key, own.mod_revision, 0);
                for i in 1u64.. {
                    let kv = if i % 3 == 0 {
                        own = store.update(&counter, Bytes::from(i.to_string()), own.mod_revision).await.unwrap();
                        own.clone()
                    } else {
                        store.create(&format!("/crash/w{w}/k{i:08}"), Bytes::from(i.to_string())).await.unwrap()
                    };
                    // Printed only after the store acknowledged the write.
                    println!("ACK {} {} {}", kv.key, kv.mod_revision, i);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());

    // key -> (revision, value) of the last acknowledged write.
    let mut acked: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut count = 0;
    let mut lines = stdout.lines();
    while count < ACKS_BEFORE_KILL {
        let line = match lines.next() {
            Some(Ok(line)) => line,
            other => panic!("the writer stopped after {count} acknowledged writes: {other:?}"),
        };
        let Some(rest) = line.strip_prefix("ACK ") else { continue };
        let mut parts = rest.split(' ');
        let (key, rev, value) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let rev: i64 = rev.parse().unwrap();
        let entry = acked.entry(key.to_string()).or_insert((rev, value.to_string()));
        if rev >= entry.0 {
            *entry = (rev, value.to_string());
        }
        count += 1;
    }
    // std's `Child::kill` is SIGKILL on Unix: no destructors, no flushes.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer exited on its own: {status}");
    drop(lines);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("reopening after the crash");
        let max_acked = acked.values().map(|(rev, _)| *rev).max().unwrap();
        assert!(store.current_revision().await.unwrap() >= max_acked, "the store lost acknowledged revisions");
        for (key, (rev, value)) in &acked {
            let kv = store.get(key).await.unwrap().unwrap_or_else(|| panic!("acknowledged key {key} (revision {rev}) is missing"));
            if key.ends_with("/counter") {
                // A later update may have committed before the kill without its
                // acknowledgement being printed; it can only be newer.
                assert!(kv.mod_revision >= *rev, "{key}: revision {} is older than the acknowledged {rev}", kv.mod_revision);
                if kv.mod_revision == *rev {
                    assert_eq!(kv.value, Bytes::from(value.clone()));
                }
            } else {
                assert_eq!(kv.mod_revision, *rev, "{key} has the wrong revision");
                assert_eq!(kv.create_revision, *rev);
                assert_eq!(kv.value, Bytes::from(value.clone()), "{key} has the wrong value");
            }
        }
        let list = store.list("/crash/", Default::default()).await.unwrap();
        assert!(list.items.len() >= acked.len());

        // The reopened store still takes writes, after everything that was there.
        let after = store.create("/crash/after-restart", Bytes::from("ok")).await.unwrap();
        assert!(after.mod_revision > max_acked);
        let counter = store.get("/crash/w0/counter").await.unwrap().unwrap();
        let updated = store.update("/crash/w0/counter", Bytes::from("again"), counter.mod_revision).await.unwrap();
        assert!(updated.mod_revision > after.mod_revision);
    });
}
