//! The etcd implementation of [`Store`]: the datastore for a highly available
//! control plane.
//!
//! - Revisions are etcd's own revisions, so every Skiff server on one etcd cluster
//!   agrees on resourceVersions.
//! - Every key lives under the store's prefix (default `/skiff`), so Skiff can share
//!   an etcd cluster with other users; the prefix is added on the way in and
//!   stripped on the way out.
//! - Conditional writes are etcd transactions comparing `create_revision` (create)
//!   or `mod_revision` (update, delete).
//! - Watches are etcd watches (with `prev_kv`, and the require-leader flag so that a
//!   member cut off from quorum ends them). The store asks for progress
//!   notifications periodically, so quiet prefixes still learn the current revision.
//! - Every call has a deadline; a lost quorum or unreachable cluster becomes
//!   [`StoreError::Unavailable`].

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchStream};

/// The value limit: etcd's default request limit is 1.5 MiB (`--max-request-bytes`),
/// and a request carries the key and some framing besides the value.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1536 * 1024 - 16 * 1024;

/// TLS material for talking to etcd (client certificates are optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle that signed the etcd members' serving certificates.
    pub ca_file: PathBuf,
    /// Client certificate and key, when etcd requires client authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Member addresses as `host:port` (the scheme comes from `tls`).
    pub endpoints: Vec<String>,
    /// Prefix of every key Skiff writes; no trailing slash (default `/skiff`).
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// Deadline of each unary call; past it the call fails with `Unavailable`.
    pub request_timeout: Duration,
    /// How often an open watch asks etcd for a progress notification.
    pub progress_interval: Duration,
    /// Largest value accepted ([`Store::max_value_size`]).
    pub max_value_size: usize,
}

impl EtcdConfig {
    /// Parses the `--datastore` form `etcd://host1:2379,host2:2379[/prefix]`. Hosts
    /// without a port get 2379. Defaults elsewhere.
    pub fn from_url(url: &str) -> std::result::Result<EtcdConfig, String> {
        let _ = url;
        todo!("etcd: parse the datastore URL")
    }

    /// `etcd://h1:p1,h2:p2/prefix`, the inverse of [`EtcdConfig::from_url`].
    pub fn url(&self) -> String {
        todo!("etcd: format the datastore URL")
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["127.0.0.1:2379".into()],
            prefix: "/skiff".into(),
            tls: None,
            request_timeout: Duration::from_secs(5),
            progress_interval: Duration::from_secs(1),
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
        }
    }
}

/// A [`Store`] on an etcd v3 cluster.
pub struct EtcdStore {
    config: EtcdConfig,
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers (within
    /// `request_timeout`); fails with `Unavailable` otherwise.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore> {
        let _ = config;
        todo!("etcd: connect")
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// A plain, unconditional put of `value` under `key` (prefixed like every key),
    /// returning its revision. The benchmark's baseline: the cheapest write etcd does.
    pub async fn raw_put(&self, key: &str, value: Bytes) -> Result<Revision> {
        let _ = (key, value);
        todo!("etcd: raw put")
    }

    /// Writes many keys that must not exist yet, in transactions of up to
    /// `batch` puts each (etcd's default `--max-txn-ops` is 128). Used by
    /// `skiff datastore migrate`. Returns the revision after the last batch.
    pub async fn create_many(&self, items: Vec<(String, Bytes)>, batch: usize) -> Result<Revision> {
        let _ = (items, batch);
        todo!("etcd: batched creates")
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let _ = key;
        todo!()
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let _ = (prefix, opts);
        todo!()
    }
    async fn current_revision(&self) -> Result<Revision> {
        todo!()
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let _ = (key, value);
        todo!()
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let _ = (key, value, expected);
        todo!()
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let _ = (key, expected);
        todo!()
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let _ = (prefix, after);
        todo!()
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        let _ = revision;
        todo!()
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        todo!()
    }
    fn max_value_size(&self) -> usize {
        self.config.max_value_size
    }
    fn backend(&self) -> &'static str {
        "etcd"
    }
}

#[allow(dead_code)]
fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}
