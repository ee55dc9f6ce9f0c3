//! Skiff's datastore layer.
//!
//! - [`Store`]: the revisioned key-value contract every backend meets (written on the
//!   trait itself, with named errors in [`StoreError`]).
//! - [`sqlite`]: the embedded default, a kine-style revision table in SQLite (WAL,
//!   `synchronous=FULL`). One writer thread commits queued writes together (group
//!   commit); reads use a small connection pool; watches are fed in-process.
//! - [`etcd`]: etcd v3 (through the etcd-client crate), for a highly available
//!   control plane; revisions are etcd's revisions, keys live under a prefix.
//! - [`local_etcd`]: real etcd processes on loopback for tests and benchmarks.
//! - [`cache`]: the in-memory [`cache::WatchCache`] that serves LIST and WATCH
//!   without touching the database.
//! - `conformance` (feature `conformance`): one test suite that every implementation
//!   runs, as `pub async fn` checks and the `conformance_tests!` macro that turns
//!   them into one `#[tokio::test]` each.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod cache;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod etcd;
pub mod local_etcd;
pub mod sqlite;

pub use cache::WatchCache;
pub use etcd::{EtcdConfig, EtcdStore};
pub use local_etcd::LocalEtcd;
pub use sqlite::SqliteStore;

/// A cluster-wide write counter. Every successful write gets a new, larger one.
pub type Revision = i64;

/// One key with its current value and the revisions that created and last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created the key (as in etcd).
    pub create_revision: Revision,
    /// The revision of the last write to the key. For a delete event, the
    /// revision of the delete.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or updated (compare `kv.create_revision == kv.mod_revision` for "created").
    Put,
    /// Deleted. `kv.value` holds the last value before the delete.
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The value before this change, when there was one.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// What a watch stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchResponse {
    /// Changes under the watched prefix, in revision order.
    Events(Vec<Event>),
    /// Nothing under the prefix changed up to and including this revision. Lets
    /// caches know they are current (and lets the API server send bookmarks).
    Progress(Revision),
}

/// A watch: changes in revision order. It ends with `Err(Compacted)` if the
/// watcher falls behind compaction, or `Err(Unavailable)` if the backend is lost.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, StoreError>> + Send>>;

/// Options for [`Store::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read as of this revision; `None` reads the latest.
    pub revision: Option<Revision>,
    /// Start at keys strictly greater than this one (pagination).
    pub start_after: Option<String>,
    /// Return at most this many items; `None` or `Some(0)` means all.
    pub limit: Option<usize>,
}

/// The answer of [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// Whether more items follow the last one returned.
    pub more: bool,
}

/// Named failures of a [`Store`]. Callers match on variants, never on text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // --- outcomes of conditional writes ---
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// The key's mod revision did not match the expected one. `current` is the
    /// value now stored (None if the key is gone).
    #[error("key {key:?} was modified (expected revision {expected})")]
    Conflict { key: String, expected: Revision, current: Option<KeyValue> },

    // --- revisions ---
    /// The requested revision is older than the compacted revision.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    /// The requested revision has not happened yet.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: Revision, current: Revision },

    // --- limits and health ---
    #[error("value of {size} bytes for key {key:?} exceeds the datastore limit of {limit} bytes")]
    TooLarge { key: String, size: usize, limit: usize },
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    #[error("datastore error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value store with watch and compaction; the seam between the API
/// server and its datastore.
///
/// The contract (checked by the conformance suite for every implementation):
/// - Every successful write (create, update, delete) gets one new revision, larger
///   than every revision before it, cluster-wide (not per key).
/// - An acknowledged write is durable: it survives a crash of the process.
/// - `list` and `get` read a consistent snapshot: the latest one, or the one at
///   `ListOptions::revision` if that revision is not compacted.
/// - `watch(prefix, after)` yields every change under `prefix` with a revision
///   greater than `after`, in order, exactly once, then follows new writes. If
///   `after` is older than the compacted revision, it fails with `Compacted`.
///   When writes happen elsewhere, it yields `Progress` so a quiet prefix still
///   learns the current revision (not necessarily one per write).
/// - `compact(rev)` drops history up to `rev`; the latest value of each live key is
///   always kept. Reads at `rev` itself still work. Compacting at or below the
///   compacted revision changes nothing; a future revision is refused.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of one key, at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// The latest revision of the whole store.
    async fn current_revision(&self) -> Result<Revision>;

    /// Creates `key` only if it does not exist; fails with `AlreadyExists`.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces `key` only if its mod revision is `expected`; fails with
    /// `Conflict` (or `NotFound` if the key is gone).
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key`, only if its mod revision is `expected` when given. Returns the
    /// deleted value with `mod_revision` set to the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Changes under `prefix` with a revision greater than `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Drops history at and before `revision`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The oldest revision that can still be read or watched from.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// The largest value the store accepts, in bytes.
    fn max_value_size(&self) -> usize;

    /// A short name for logs and metrics (`sqlite`, `etcd`).
    fn backend(&self) -> &'static str;
}
