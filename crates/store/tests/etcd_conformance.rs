//! The store conformance suite, run against [`EtcdStore`] on a real etcd.
//!
//! Compaction is cluster-wide in etcd, so each check gets its own single-member
//! cluster (which starts in well under a second); the store owns it and stops it
//! when the check drops the store.

use std::sync::Arc;

use skiff_store::{EtcdConfig, EtcdStore, LocalEtcd, Store};

async fn make() -> Arc<dyn Store> {
    let etcd = tokio::task::spawn_blocking(|| LocalEtcd::start(1)).await.unwrap().expect("starting etcd (apt-get install etcd-server)");
    let config = EtcdConfig { endpoints: etcd.endpoints(), prefix: "/conformance".into(), ..EtcdConfig::default() };
    let store = EtcdStore::connect(config).await.expect("connecting to the local etcd");
    Arc::new(store.with_guard(etcd))
}

skiff_store::conformance_tests!(make);
