//! The etcd implementation of [`Store`]: the datastore for a highly available
//! control plane.
//!
//! - Revisions are etcd's own revisions, so every Skiff server on one etcd cluster
//!   agrees on resourceVersions.
//! - Every key lives under the store's prefix (default `/skiff`), so Skiff can share
//!   an etcd cluster with other users; the prefix is added on the way in and
//!   stripped on the way out. Keys start with `/`, so the prefix `/skiff` never
//!   reaches into a neighbour's `/skiff2`.
//! - Conditional writes are etcd transactions comparing `create_revision` (create)
//!   or `mod_revision` (update, delete).
//! - Watches are etcd watches (with `prev_kv`, and the require-leader flag so that a
//!   member cut off from quorum ends them). The store asks for progress
//!   notifications periodically, so quiet prefixes still learn the current revision.
//! - Every call has a deadline; a lost quorum or unreachable cluster becomes
//!   [`StoreError::Unavailable`].
//!
//! The store talks to one member at a time (one gRPC connection per endpoint) and
//! moves on to the next when a member fails, rather than spreading calls over all
//! of them: a stopped member then costs one failed attempt, not a share of every
//! call. Reads are retried on the next member within the call's deadline; writes
//! only when the request certainly never reached etcd (connection refused, or
//! refused by etcd before being proposed), since retrying a conditional write
//! whose first attempt committed would report a false conflict.

use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity, KvClient, MaintenanceClient, PutOptions, TlsOptions,
    Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchResponse, WatchStream};

/// The value limit: etcd's default request limit is 1.5 MiB (`--max-request-bytes`),
/// and a request carries the key and some framing besides the value.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1536 * 1024 - 16 * 1024;

/// Keys per Range request when a list has no limit (or a large one). Every page of
/// one list is read at the same revision.
const LIST_PAGE: usize = 1000;

/// Largest message the store accepts from etcd on a Range. tonic's default is
/// 4 MiB; pages are also halved when a page of large values exceeds this.
const MAX_RANGE_MESSAGE: usize = 64 * 1024 * 1024;

/// Largest watch message: etcd sends a catching-up watcher its backlog (up to 1,000
/// revisions, each with its previous value) in one message.
const MAX_WATCH_MESSAGE: usize = 512 * 1024 * 1024;

/// HTTP/2 keep-alive ping interval. etcd refuses pings more often than every 5 s
/// (`--grpc-keepalive-min-time`) and pings on idle connections, so pings are sent
/// only while a call or watch is open.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Watch responses buffered between the etcd stream and the consumer.
const WATCH_BUFFER: usize = 64;

/// How long a requested progress notification from an older etcd is held back
/// at least (see [`ProgressMode::Guarded`]).
const PROGRESS_HOLD: Duration = Duration::from_millis(250);

/// Back-off between rounds of attempts over every member.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

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

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/skiff";

/// The default etcd client port.
pub const DEFAULT_PORT: u16 = 2379;

impl EtcdConfig {
    /// Parses the `--datastore` form `etcd://host1:2379,host2:2379[/prefix]`. Hosts
    /// without a port get 2379. Defaults elsewhere.
    pub fn from_url(url: &str) -> std::result::Result<EtcdConfig, String> {
        const FORM: &str = "etcd://host:port[,host:port…][/prefix]";
        let Some(rest) = url.strip_prefix("etcd://") else {
            return match url.split_once("://") {
                Some((scheme, _)) => Err(format!("unsupported scheme {scheme:?} in {url:?}: expected {FORM}")),
                None => Err(format!("{url:?} is not an etcd URL: expected {FORM}")),
            };
        };
        if let Some(c) = rest.chars().find(|c| c.is_whitespace() || matches!(c, '?' | '#' | '@')) {
            return Err(format!("unexpected {c:?} in {url:?}: expected {FORM}"));
        }
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hosts.is_empty() {
            return Err(format!("no etcd hosts in {url:?}: expected {FORM}"));
        }
        let endpoints = hosts.split(',').map(|h| parse_endpoint(h).map_err(|e| format!("{e} in {url:?}"))).collect::<std::result::Result<Vec<_>, _>>()?;
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let prefix = if segments.is_empty() { DEFAULT_PREFIX.to_string() } else { format!("/{}", segments.join("/")) };
        Ok(EtcdConfig { endpoints, prefix, ..EtcdConfig::default() })
    }

    /// `etcd://h1:p1,h2:p2/prefix`, the inverse of [`EtcdConfig::from_url`].
    pub fn url(&self) -> String {
        format!("etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

/// `host[:port]` → `host:port`; IPv6 addresses in brackets.
fn parse_endpoint(text: &str) -> std::result::Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty host".into());
    }
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else { return Err(format!("unclosed '[' in host {text:?}")) };
        if addr.is_empty() {
            return Err(format!("empty host in {text:?}"));
        }
        match after {
            "" => (format!("[{addr}]"), None),
            _ => match after.strip_prefix(':') {
                Some(port) => (format!("[{addr}]"), Some(port)),
                None => return Err(format!("unexpected {after:?} after the address in {text:?}")),
            },
        }
    } else {
        match text.split_once(':') {
            Some(("", _)) => return Err(format!("empty host in {text:?}")),
            Some((_, port)) if port.contains(':') => return Err(format!("IPv6 address {text:?} must be in brackets, like [::1]:2379")),
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (text.to_string(), None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("bad port {p:?} for host {host}")),
        },
    };
    Ok(format!("{host}:{port}"))
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["127.0.0.1:2379".into()],
            prefix: DEFAULT_PREFIX.into(),
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
    shared: Arc<Shared>,
    /// Whatever must live as long as the store (see [`EtcdStore::with_guard`]).
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

/// State shared by the store and its watch tasks.
struct Shared {
    members: Vec<Member>,
    /// The member calls go to first; moves on when it fails.
    pinned: AtomicUsize,
    /// The highest compacted revision this store knows of (its own compactions and
    /// those etcd reported). Other servers may have compacted further.
    compacted: AtomicI64,
    /// Whether every member sends requested progress notifications in order with
    /// events (see [`ProgressMode`]).
    progress: ProgressMode,
    prefix: String,
    request_timeout: Duration,
    progress_interval: Duration,
    endpoints: String,
}

/// One etcd member's clients (all on one connection).
#[derive(Clone)]
struct Member {
    kv: KvClient,
    watch: WatchClient,
    maintenance: MaintenanceClient,
}

/// How far a requested progress notification (`WatchProgressRequest`) can be
/// trusted.
///
/// Before etcd 3.4.31 and 3.5.13, etcd answered a progress request at once with the
/// store's current revision, racing events still queued for the watcher (and the
/// whole backlog of a watcher still catching up; etcd-io/etcd#15220). A watch cache
/// that believed such a notification would skip those events for good. With older
/// members the store therefore:
/// - announces nothing until the watcher has caught up with history (an event
///   batch at or past etcd's revision when the watch was created, one of etcd's
///   own per-watcher notifications, or, for a watcher whose backlog had nothing
///   under its prefix and so never says so, a few seconds);
/// - holds each notification back for at least [`PROGRESS_HOLD`] and until a
///   later one arrives, by which time etcd has sent whatever it had queued before
///   it, and drops it if an event at or below it shows up meanwhile.
///
/// Progress then lags by about one interval, and a watcher that stays behind for
/// seconds (an etcd too busy to send its backlog) could still be told too much;
/// etcd versions with the fix have neither limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProgressMode {
    /// Notifications are ordered with events: forward them as they come.
    Ordered,
    /// Notifications may overtake events: hold them back as described above.
    Guarded,
}

impl ProgressMode {
    /// The mode for a member reporting `version` (`3.4.23`, `3.5.17`, …).
    fn for_version(version: &str) -> ProgressMode {
        let mut parts = version.trim().trim_start_matches('v').split(['.', '-', '+']).map(|p| p.parse::<u64>().ok());
        let (Some(Some(major)), Some(Some(minor)), Some(Some(patch))) = (parts.next(), parts.next(), parts.next()) else {
            return ProgressMode::Guarded;
        };
        let ordered = match (major, minor) {
            (3, 4) => patch >= 31,
            (3, 5) => patch >= 13,
            (3, m) => m >= 6,
            (m, _) => m > 3,
        };
        if ordered {
            ProgressMode::Ordered
        } else {
            ProgressMode::Guarded
        }
    }
}

// === impl EtcdStore ===

impl EtcdStore {
    /// Connects to the cluster and checks that it answers (within
    /// `request_timeout`); fails with `Unavailable` otherwise.
    pub async fn connect(mut config: EtcdConfig) -> Result<EtcdStore> {
        // `/skiff/` or `skiff` mean `/skiff`: keys are the prefix followed by `/…`.
        let trimmed = config.prefix.trim_end_matches('/');
        config.prefix = if trimmed.is_empty() || trimmed.starts_with('/') { trimmed.to_string() } else { format!("/{trimmed}") };
        if config.endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoints configured".into()));
        }
        let mut options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(config.request_timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, config.request_timeout)
            .with_keep_alive_while_idle(false);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls, config.request_timeout)?);
        }
        let scheme = if config.tls.is_some() { "https://" } else { "http://" };
        let mut members = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let url = if endpoint.contains("://") { endpoint.clone() } else { format!("{scheme}{endpoint}") };
            // Connections are made lazily, on the first call.
            let client = Client::connect([url.as_str()], Some(options.clone()))
                .await
                .map_err(|e| StoreError::Unavailable(format!("etcd endpoint {endpoint}: {e}")))?;
            members.push(Member {
                kv: client.kv_client().max_decoding_message_size(MAX_RANGE_MESSAGE),
                watch: client.watch_client().max_decoding_message_size(MAX_WATCH_MESSAGE),
                maintenance: client.maintenance_client(),
            });
        }
        let endpoints = config.endpoints.join(",");
        let mut shared = Shared {
            members,
            pinned: AtomicUsize::new(0),
            compacted: AtomicI64::new(0),
            progress: ProgressMode::Guarded,
            prefix: config.prefix.clone(),
            request_timeout: config.request_timeout,
            progress_interval: config.progress_interval,
            endpoints: endpoints.clone(),
        };
        // Reads are retried until the deadline, so an unreachable cluster ends
        // here with a message naming the endpoints and what went wrong.
        shared.current_revision().await.map_err(|f| f.into_store_error(None))?;
        shared.progress = shared.progress_mode().await;
        tracing::debug!(endpoints = %endpoints, prefix = %config.prefix, progress = ?shared.progress, "connected to etcd");
        Ok(EtcdStore { config, shared: Arc::new(shared), _guard: None })
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// Keeps `guard` alive as long as the store: for a test's [`crate::LocalEtcd`],
    /// so the cluster lives exactly as long as the store that uses it.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> EtcdStore {
        self._guard = Some(Box::new(guard));
        self
    }

    /// A plain, unconditional put of `value` under `key` (prefixed like every key),
    /// returning its revision. The benchmark's baseline: the cheapest write etcd does.
    pub async fn raw_put(&self, key: &str, value: Bytes) -> Result<Revision> {
        self.check_write(key, &value)?;
        let full = self.shared.full_key(key);
        let value = value.to_vec();
        let response = self
            .shared
            .call(Retry::IfNotSent, |mut m| {
                let (full, value) = (full.clone(), value.clone());
                async move { m.kv.put(full, value, None).await }
            })
            .await
            .map_err(|f| self.write_error(f, key, value.len()))?;
        Ok(header_revision(response.header()))
    }

    /// Writes many keys that must not exist yet, in transactions of up to
    /// `batch` puts each (etcd's default `--max-txn-ops` is 128). Used by
    /// `skiff datastore migrate`. Returns the revision after the last batch.
    ///
    /// A transaction also stays within [`Store::max_value_size`] bytes of keys and
    /// values (one oversized item goes alone), so it fits etcd's request limit.
    /// If any key of a batch exists, that batch writes nothing and the call fails
    /// with `AlreadyExists`; earlier batches stay written.
    ///
    /// All keys of one transaction share one revision, which the `Store` contract
    /// (one revision per write) does not allow: a [`crate::WatchCache`] following
    /// these keys would apply only the first event of each revision. Use it only
    /// while no server runs on the prefix (migration); servers list at start.
    pub async fn create_many(&self, items: Vec<(String, Bytes)>, batch: usize) -> Result<Revision> {
        for (key, value) in &items {
            self.check_write(key, value)?;
        }
        let batch = batch.max(1);
        let budget = self.config.max_value_size;
        let mut revision = None;
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < items.len() && end - start < batch {
                let size = self.shared.prefix.len() + items[end].0.len() + items[end].1.len();
                if end > start && bytes + size > budget {
                    break;
                }
                bytes += size;
                end += 1;
            }
            revision = Some(self.create_batch(&items[start..end]).await?);
            start = end;
        }
        match revision {
            Some(revision) => Ok(revision),
            None => self.current_revision().await,
        }
    }

    async fn create_batch(&self, items: &[(String, Bytes)]) -> Result<Revision> {
        let keys: Vec<String> = items.iter().map(|(k, _)| self.shared.full_key(k)).collect();
        let compares: Vec<Compare> = keys.iter().map(|k| Compare::create_revision(k.as_str(), CompareOp::Equal, 0)).collect();
        let puts: Vec<TxnOp> = keys.iter().zip(items).map(|(k, (_, v))| TxnOp::put(k.as_str(), v.to_vec(), None)).collect();
        // On failure, the keys that exist, to name one.
        let probes: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.as_str(), Some(GetOptions::new().with_keys_only()))).collect();
        let txn = Txn::new().when(compares).and_then(puts).or_else(probes);
        let first = &items[0];
        let response = self.txn(txn).await.map_err(|f| self.write_error(f, &first.0, first.1.len()))?;
        if response.succeeded() {
            return Ok(header_revision(response.header()));
        }
        let existing = response.op_responses().into_iter().zip(items).find_map(|(op, (key, _))| match op {
            TxnOpResponse::Get(get) if !get.kvs().is_empty() => Some(key.clone()),
            _ => None,
        });
        Err(StoreError::AlreadyExists { key: existing.unwrap_or_else(|| first.0.clone()) })
    }

    /// Refuses values over the limit and keys outside the store's key space.
    fn check_write(&self, key: &str, value: &Bytes) -> Result<()> {
        if !key.starts_with('/') {
            return Err(StoreError::Internal(Box::new(EtcdError::InvalidKey(key.to_string()))));
        }
        if value.len() > self.config.max_value_size {
            return Err(StoreError::TooLarge { key: key.to_string(), size: value.len(), limit: self.config.max_value_size });
        }
        Ok(())
    }

    /// One transaction, retried only when etcd certainly never received it (a
    /// retried conditional write could otherwise report a false conflict).
    async fn txn(&self, txn: Txn) -> std::result::Result<etcd_client::TxnResponse, Failure> {
        self.shared
            .call(Retry::IfNotSent, |mut m| {
                let txn = txn.clone();
                async move { m.kv.txn(txn).await }
            })
            .await
    }

    fn write_error(&self, failure: Failure, key: &str, size: usize) -> StoreError {
        failure.into_store_error(Some((key, size, self.config.max_value_size)))
    }

    /// `Compacted` for a read at `requested`, with the compacted revision found.
    async fn compacted_error(&self, requested: Revision) -> StoreError {
        match self.shared.compacted_revision_at_least(requested + 1).await {
            Ok(compacted) => StoreError::Compacted { requested, compacted },
            Err(f) => f.into_store_error(None),
        }
    }

    /// `FutureRevision` for a read at `requested`.
    async fn future_error(&self, requested: Revision) -> StoreError {
        match self.shared.current_revision().await {
            Ok(current) => StoreError::FutureRevision { requested, current },
            Err(f) => f.into_store_error(None),
        }
    }

    /// One page of a list: up to `limit` keys in `[start, end)` at `revision` (0 =
    /// latest). Halves the page when etcd's answer is too big to decode.
    async fn range_page(&self, start: &[u8], end: &[u8], revision: Revision, limit: usize) -> std::result::Result<(Vec<etcd_client::KeyValue>, Revision, bool, usize), Failure> {
        let mut limit = limit.max(1);
        loop {
            let options = GetOptions::new().with_range(end.to_vec()).with_revision(revision).with_limit(limit as i64);
            let result = self
                .shared
                .call(Retry::Always, |mut m| {
                    let (start, options) = (start.to_vec(), options.clone());
                    async move { m.kv.get(start, Some(options)).await }
                })
                .await;
            match result {
                Ok(mut response) => {
                    let rev = header_revision(response.header());
                    let more = response.more();
                    return Ok((response.take_kvs(), rev, more, limit));
                }
                Err(Failure::ResponseTooLarge(_)) if limit > 1 => {
                    // Fewer keys than asked for may have made the page: halve
                    // what was really there, not the limit.
                    let options = GetOptions::new().with_range(end.to_vec()).with_revision(revision).with_count_only();
                    let count = self
                        .shared
                        .call(Retry::Always, |mut m| {
                            let (start, options) = (start.to_vec(), options.clone());
                            async move { m.kv.get(start, Some(options)).await }
                        })
                        .await?
                        .count();
                    limit = (limit.min(count.max(0) as usize) / 2).max(1);
                }
                Err(f) => return Err(f),
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let full = self.shared.full_key(key);
        let mut response = self
            .shared
            .call(Retry::Always, |mut m| {
                let full = full.clone();
                async move { m.kv.get(full, None).await }
            })
            .await
            .map_err(|f| f.into_store_error(None))?;
        Ok(response.take_kvs().into_iter().next().and_then(|kv| self.shared.key_value(kv)))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let (lower, end) = self.shared.range(prefix);
        let mut start = match &opts.start_after {
            // The successor of `after` in byte order is `after` followed by a NUL.
            Some(after) if self.shared.full_key(after).as_bytes() >= lower.as_slice() => {
                let mut start = self.shared.full_key(after).into_bytes();
                start.push(0);
                start
            }
            _ => lower,
        };
        let wanted = opts.limit.filter(|l| *l > 0);
        let mut revision = opts.revision.unwrap_or(0);
        let mut items = Vec::new();
        let mut page = LIST_PAGE;
        let mut first = true;
        loop {
            let ask = match wanted {
                Some(limit) => (limit - items.len()).min(page),
                None => page,
            };
            let (kvs, rev, more, used) = match self.range_page(&start, &end, revision, ask).await {
                Ok(answer) => answer,
                Err(Failure::Compacted) => return Err(self.compacted_error(revision).await),
                Err(Failure::FutureRevision) => return Err(self.future_error(revision).await),
                Err(f) => return Err(f.into_store_error(None)),
            };
            page = used;
            if first {
                // Later pages read at the first page's revision: one snapshot.
                revision = if revision == 0 { rev } else { revision };
                first = false;
            }
            let Some(last) = kvs.last() else {
                return Ok(ListResult { items, revision, more: false });
            };
            start = last.key().to_vec();
            start.push(0);
            items.extend(kvs.into_iter().filter_map(|kv| self.shared.key_value(kv)));
            let full = wanted.is_some_and(|limit| items.len() >= limit);
            if !more || full {
                return Ok(ListResult { items, revision, more });
            }
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.shared.current_revision().await.map_err(|f| f.into_store_error(None))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.check_write(key, &value)?;
        let full = self.shared.full_key(key);
        let txn = Txn::new().when([Compare::create_revision(full.as_str(), CompareOp::Equal, 0)]).and_then([TxnOp::put(full.as_str(), value.to_vec(), None)]);
        let response = self.txn(txn).await.map_err(|f| self.write_error(f, key, value.len()))?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.to_string() });
        }
        let revision = header_revision(response.header());
        Ok(KeyValue { key: key.to_string(), value, create_revision: revision, mod_revision: revision })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.check_write(key, &value)?;
        let full = self.shared.full_key(key);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(full.as_str(), CompareOp::Equal, expected),
                // A missing key has mod revision 0: never let `expected = 0` create it.
                Compare::create_revision(full.as_str(), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(full.as_str(), value.to_vec(), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full.as_str(), None)]);
        let response = self.txn(txn).await.map_err(|f| self.write_error(f, key, value.len()))?;
        let revision = header_revision(response.header());
        let ops = response.op_responses();
        if response.succeeded() {
            let create_revision = match ops.into_iter().next() {
                Some(TxnOpResponse::Put(mut put)) => put.take_prev_key().map(|kv| kv.create_revision()),
                _ => None,
            };
            return Ok(KeyValue { key: key.to_string(), value, create_revision: create_revision.unwrap_or(revision), mod_revision: revision });
        }
        match self.shared.txn_current(ops) {
            Some(current) => Err(StoreError::Conflict { key: key.to_string(), expected, current: Some(current) }),
            None => Err(StoreError::NotFound { key: key.to_string() }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let full = self.shared.full_key(key);
        let mut compares = vec![Compare::create_revision(full.as_str(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(full.as_str(), CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(full.as_str(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full.as_str(), None)]);
        let response = self.txn(txn).await.map_err(|f| f.into_store_error(None))?;
        let revision = header_revision(response.header());
        let ops = response.op_responses();
        if response.succeeded() {
            let deleted = match ops.into_iter().next() {
                Some(TxnOpResponse::Delete(mut delete)) => delete.take_prev_kvs().into_iter().next().and_then(|kv| self.shared.key_value(kv)),
                _ => None,
            };
            return match deleted {
                Some(kv) => Ok(KeyValue { mod_revision: revision, ..kv }),
                None => Err(StoreError::Internal(Box::new(EtcdError::Protocol("a delete did not return the deleted value".into())))),
            };
        }
        match (self.shared.txn_current(ops), expected) {
            (Some(current), Some(expected)) => Err(StoreError::Conflict { key: key.to_string(), expected, current: Some(current) }),
            // Without an expected revision only a missing key fails the compare.
            _ => Err(StoreError::NotFound { key: key.to_string() }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let after = after.max(0);
        // etcd itself serves a watch from the compacted revision; the contract is
        // stricter (`after` itself must still be readable), and a read at `after`
        // tells exactly that.
        if after > 0 {
            match self.shared.readable(after).await {
                Ok(true) => {}
                Ok(false) => return Err(self.compacted_error(after).await),
                Err(f) => return Err(f.into_store_error(None)),
            }
        }
        let (key, end) = self.shared.range(prefix);
        let options = WatchOptions::new().with_range(end).with_start_revision(after + 1).with_prev_key();
        let opened = self
            .shared
            .call(Retry::Always, |mut m| {
                let (key, options) = (key.clone(), options.clone());
                async move {
                    let mut stream = m.watch.watch(key, Some(options)).await?;
                    let created = stream.message().await?;
                    Ok((stream, created))
                }
            })
            .await;
        let (stream, created) = match opened {
            Ok(opened) => opened,
            Err(Failure::Compacted) => return Err(self.compacted_error(after).await),
            Err(f) => return Err(f.into_store_error(None)),
        };
        let Some(created) = created else {
            return Err(StoreError::Unavailable("etcd closed the watch before creating it".into()));
        };
        if created.canceled() {
            if created.compact_revision() > 0 {
                self.shared.compacted.fetch_max(created.compact_revision(), Ordering::AcqRel);
                return Err(StoreError::Compacted { requested: after, compacted: created.compact_revision() });
            }
            return Err(StoreError::Unavailable(format!("etcd refused the watch: {}", created.cancel_reason())));
        }
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let follower = Follower {
            shared: self.shared.clone(),
            after,
            watch_id: created.watch_id(),
            created_revision: header_revision(created.header()),
            created_at: Instant::now(),
            tx,
        };
        tokio::spawn(follower.run(stream));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        // Compacting twice is harmless, so retrying is safe.
        let result = self
            .shared
            .call(Retry::Always, |mut m| async move { m.kv.compact(revision, None).await })
            .await;
        match result {
            Ok(_) => {
                self.shared.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            // At or below the compacted revision: nothing to do.
            Err(Failure::Compacted) => Ok(()),
            Err(Failure::FutureRevision) => Err(self.future_error(revision).await),
            Err(f) => Err(f.into_store_error(None)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.shared.compacted_revision_at_least(0).await.map_err(|f| f.into_store_error(None))
    }

    fn max_value_size(&self) -> usize {
        self.config.max_value_size
    }

    fn backend(&self) -> &'static str {
        "etcd"
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("endpoints", &self.config.endpoints).field("prefix", &self.config.prefix).finish()
    }
}

fn tls_options(tls: &EtcdTls, timeout: Duration) -> Result<TlsOptions> {
    let read = |path: &PathBuf, what: &str| std::fs::read(path).map_err(|e| StoreError::Unavailable(format!("reading the etcd {what} {}: {e}", path.display())));
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file, "CA file")?)).timeout(timeout);
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => options = options.identity(Identity::from_pem(read(cert, "client certificate")?, read(key, "client key")?)),
        (None, None) => {}
        _ => return Err(StoreError::Unavailable("an etcd client certificate needs both a certificate file and a key file".into())),
    }
    Ok(options)
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or(0)
}

// === impl Shared ===

/// Which failed attempts may be repeated (on the next member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, and writes that are harmless to repeat.
    Always,
    /// Writes: only when the request certainly did not reach etcd.
    IfNotSent,
}

impl Shared {
    /// Runs `op` against the pinned member, moving on to the next member and
    /// retrying as `retry` allows, until `request_timeout` has passed.
    async fn call<T, F, Fut>(&self, retry: Retry, mut op: F) -> std::result::Result<T, Failure>
    where
        F: FnMut(Member) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        let mut backoff = RETRY_MIN;
        let mut attempts = 0;
        // The distinct errors seen, for the message when time runs out.
        let mut errors: Vec<String> = Vec::new();
        loop {
            let index = self.pinned.load(Ordering::Acquire) % self.members.len();
            let attempt = tokio::time::timeout_at(deadline, op(self.members[index].clone())).await;
            let error = match attempt {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error,
                Err(_) => return Err(self.timed_out(&errors)),
            };
            let classified = classify(error);
            if !classified.transient {
                return Err(classified.failure);
            }
            // Later calls start at the next member.
            let _ = self.pinned.compare_exchange(index, (index + 1) % self.members.len(), Ordering::AcqRel, Ordering::Acquire);
            if retry == Retry::IfNotSent && !classified.not_sent {
                return Err(classified.failure);
            }
            let error = classified.failure.to_string();
            if !errors.contains(&error) && errors.len() < 3 {
                errors.push(error);
            }
            attempts += 1;
            if attempts % self.members.len() == 0 {
                if Instant::now() + backoff >= deadline {
                    tokio::time::sleep_until(deadline).await;
                    return Err(self.timed_out(&errors));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }

    fn timed_out(&self, errors: &[String]) -> Failure {
        let seen = if errors.is_empty() { "no answer".to_string() } else { errors.join("; ") };
        Failure::Unavailable(format!("etcd ({}) did not answer within {:?} ({seen})", self.endpoints, self.request_timeout))
    }

    /// The key as stored in etcd.
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `[start, end)` of the keys under `prefix`. Store keys start with `/`, so the
    /// empty prefix is the store's `/`.
    fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = if prefix.is_empty() { self.full_key("/") } else { self.full_key(prefix) }.into_bytes();
        let end = prefix_end(&start);
        (start, end)
    }

    /// An etcd key-value with the prefix stripped; `None` for keys outside the
    /// store (which ranges never return, but a prefix like `/skiff` could in
    /// principle reach `/skiff2…` if asked for keys not starting with `/`).
    fn key_value(&self, kv: etcd_client::KeyValue) -> Option<KeyValue> {
        let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
        let (key, value) = kv.into_key_value();
        let key = self.strip(&key)?;
        Some(KeyValue { key, value: Bytes::from(value), create_revision, mod_revision })
    }

    fn key_value_ref(&self, kv: &etcd_client::KeyValue) -> Option<KeyValue> {
        let key = self.strip(kv.key())?;
        Some(KeyValue { key, value: Bytes::copy_from_slice(kv.value()), create_revision: kv.create_revision(), mod_revision: kv.mod_revision() })
    }

    fn strip(&self, key: &[u8]) -> Option<String> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        if !rest.starts_with(b"/") {
            return None;
        }
        Some(String::from_utf8_lossy(rest).into_owned())
    }

    /// The value a failed conditional write found (its `or_else` get).
    fn txn_current(&self, ops: Vec<TxnOpResponse>) -> Option<KeyValue> {
        match ops.into_iter().next() {
            Some(TxnOpResponse::Get(mut get)) => get.take_kvs().into_iter().next().and_then(|kv| self.key_value(kv)),
            _ => None,
        }
    }

    /// A cheap linearizable read (a count of one key) at `revision` (0 = latest),
    /// returning etcd's current revision.
    async fn probe(&self, revision: Revision) -> std::result::Result<Revision, Failure> {
        let key = self.full_key("/");
        let options = GetOptions::new().with_count_only().with_revision(revision);
        let response = self
            .call(Retry::Always, |mut m| {
                let (key, options) = (key.clone(), options.clone());
                async move { m.kv.get(key, Some(options)).await }
            })
            .await?;
        Ok(header_revision(response.header()))
    }

    async fn current_revision(&self) -> std::result::Result<Revision, Failure> {
        self.probe(0).await
    }

    /// Whether a read at `revision` works, i.e. `revision` is not compacted.
    async fn readable(&self, revision: Revision) -> std::result::Result<bool, Failure> {
        match self.probe(revision).await {
            Ok(_) | Err(Failure::FutureRevision) => Ok(true),
            Err(Failure::Compacted) => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// The compacted revision, known to be at least `floor`. etcd has no call for
    /// it, but a read at a revision works exactly when that revision is not older
    /// than the compacted one: check the last known value with two reads, and
    /// binary-search when another server compacted further.
    async fn compacted_revision_at_least(&self, floor: Revision) -> std::result::Result<Revision, Failure> {
        let known = self.compacted.load(Ordering::Acquire).max(floor);
        // Revision 0 means "latest" to etcd, so the search starts at 1.
        let start = known.max(1);
        if !self.readable(start).await? {
            // Compacted beyond what we knew; the current revision is always readable.
            let high = self.current_revision().await?.max(start + 1);
            let found = self.first_readable(start + 1, high).await?;
            self.compacted.fetch_max(found, Ordering::AcqRel);
            return Ok(found);
        }
        if start > 1 && self.readable(start - 1).await? {
            // Not compacted as far as believed (the cluster was restored from an
            // older snapshot): search below.
            let found = self.first_readable(1, start - 1).await?;
            // Revision 1 readable: nothing is compacted as far as reads can tell.
            let found = if found <= 1 { 0 } else { found };
            self.compacted.store(found, Ordering::Release);
            return Ok(found);
        }
        // `start` is readable and the one before it is not (or it is revision 1).
        let found = if start == 1 { known } else { start };
        self.compacted.fetch_max(found, Ordering::AcqRel);
        Ok(found)
    }

    /// The lowest readable revision in `[low, high]`, given that `high` is readable.
    async fn first_readable(&self, mut low: Revision, mut high: Revision) -> std::result::Result<Revision, Failure> {
        while low < high {
            let mid = low + (high - low) / 2;
            if self.readable(mid).await? {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        Ok(low)
    }

    /// Asks every member its version; progress notifications are trusted only if
    /// every member that answers is recent enough.
    async fn progress_mode(&self) -> ProgressMode {
        let asks = self.members.iter().map(|member| {
            let mut maintenance = member.maintenance.clone();
            async move {
                match tokio::time::timeout(self.request_timeout, maintenance.status()).await {
                    Ok(Ok(status)) => ProgressMode::for_version(status.version()),
                    _ => ProgressMode::Guarded,
                }
            }
        });
        let modes = futures::future::join_all(asks).await;
        if modes.iter().all(|m| *m == ProgressMode::Ordered) {
            ProgressMode::Ordered
        } else {
            ProgressMode::Guarded
        }
    }
}

/// `key` with its last byte incremented: the end of the range of keys starting
/// with `key` (etcd's "prefix end").
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: no end, i.e. to the end of the keyspace.
    vec![0]
}

// === watch ===

/// Forwards one etcd watch stream into a [`WatchStream`], asking for progress
/// notifications every `progress_interval`.
struct Follower {
    shared: Arc<Shared>,
    after: Revision,
    watch_id: i64,
    /// etcd's revision when it created the watch: a watcher starting at or before
    /// it first catches up on history.
    created_revision: Revision,
    created_at: Instant,
    tx: mpsc::Sender<std::result::Result<WatchResponse, StoreError>>,
}

/// The state of announced revisions, for [`ProgressMode::Guarded`].
struct Progress {
    mode: ProgressMode,
    /// The highest revision sent on (event or progress).
    announced: Revision,
    /// Whether the etcd watcher has caught up with history.
    synced: bool,
    /// A requested notification held back until a later one confirms it, with
    /// when it arrived.
    pending: Option<(Revision, Instant)>,
}

impl Follower {
    async fn run(self, stream: etcd_client::WatchStream) {
        let (mut requests, mut responses) = stream.split();
        let interval = self.shared.progress_interval.max(Duration::from_millis(10));
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress = Progress {
            mode: self.shared.progress,
            announced: self.after,
            synced: self.after >= self.created_revision,
            pending: None,
        };
        // After this long a watcher is taken to have caught up even if it never
        // said so: etcd syncs lagging watchers every 100 ms, and one whose backlog
        // held nothing under its prefix sends nothing when done.
        let grace = (interval * 5).max(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = tick.tick() => {
                    if let Err(e) = requests.request_progress().await {
                        let _ = self.tx.send(Err(StoreError::Unavailable(format!("etcd watch stream closed: {e}")))).await;
                        return;
                    }
                }
                message = responses.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) => {
                            let _ = self.tx.send(Err(StoreError::Unavailable("etcd ended the watch stream".into()))).await;
                            return;
                        }
                        Err(e) => {
                            // Whatever broke the stream, the consumer re-watches.
                            self.rotate();
                            let _ = self.tx.send(Err(StoreError::Unavailable(format!("etcd watch failed: {}", classify(e).failure)))).await;
                            return;
                        }
                    };
                    if !progress.synced && self.created_at.elapsed() >= grace {
                        progress.synced = true;
                    }
                    for item in self.handle(response, &mut progress) {
                        let end = item.is_err();
                        if self.tx.send(item).await.is_err() || end {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// What one etcd watch response means for the consumer.
    fn handle(&self, response: etcd_client::WatchResponse, progress: &mut Progress) -> Vec<std::result::Result<WatchResponse, StoreError>> {
        let revision = header_revision(response.header());
        if response.canceled() {
            if response.compact_revision() > 0 {
                self.shared.compacted.fetch_max(response.compact_revision(), Ordering::AcqRel);
                return vec![Err(StoreError::Compacted { requested: self.after, compacted: response.compact_revision() })];
            }
            self.rotate();
            return vec![Err(StoreError::Unavailable(format!("etcd canceled the watch: {}", response.cancel_reason())))];
        }
        if response.created() {
            return Vec::new();
        }
        if !response.events().is_empty() {
            let revisions = || response.events().iter().filter_map(|e| e.kv()).map(|kv| kv.mod_revision());
            let (first, last) = (revisions().min().unwrap_or(revision), revisions().max().unwrap_or(revision));
            if revision >= self.created_revision {
                progress.synced = true;
            }
            // A held-back notification that these events overtook was premature.
            if progress.pending.is_some_and(|(p, _)| p >= first) {
                progress.pending = None;
            }
            progress.announced = progress.announced.max(last);
            let events: Vec<Event> = response.events().iter().filter_map(|e| self.event(e)).collect();
            return if events.is_empty() { Vec::new() } else { vec![Ok(WatchResponse::Events(events))] };
        }
        // No events: a progress notification. Requested ones carry watch id -1;
        // etcd's own periodic ones carry the watcher's id and are always ordered.
        let own = response.watch_id() == self.watch_id;
        if own {
            progress.synced = true;
        }
        let announce = if progress.mode == ProgressMode::Ordered || own {
            Some(revision)
        } else if !progress.synced {
            progress.pending = None;
            None
        } else {
            match progress.pending {
                // Held long enough, and a later answer came after it: whatever
                // etcd had queued before it has been delivered by now.
                Some((held, since)) if since.elapsed() >= PROGRESS_HOLD => {
                    progress.pending = Some((revision, Instant::now()));
                    Some(held)
                }
                Some(_) => None,
                None => {
                    progress.pending = Some((revision, Instant::now()));
                    None
                }
            }
        };
        match announce {
            Some(rev) if rev > progress.announced => {
                progress.announced = rev;
                vec![Ok(WatchResponse::Progress(rev))]
            }
            _ => Vec::new(),
        }
    }

    fn event(&self, event: &etcd_client::Event) -> Option<Event> {
        let kv = event.kv()?;
        let prev = event.prev_kv().and_then(|p| self.shared.key_value_ref(p));
        match event.event_type() {
            EventType::Put => Some(Event { kind: EventKind::Put, kv: self.shared.key_value_ref(kv)?, prev }),
            EventType::Delete => {
                // etcd's delete event has only the key and the delete's revision; the
                // contract wants the last value, which prev_kv holds.
                let key = self.shared.strip(kv.key())?;
                let last = match &prev {
                    Some(p) => KeyValue { mod_revision: kv.mod_revision(), ..p.clone() },
                    None => KeyValue { key, value: Bytes::new(), create_revision: kv.create_revision(), mod_revision: kv.mod_revision() },
                };
                Some(Event { kind: EventKind::Delete, kv: last, prev })
            }
        }
    }

    /// After this member failed, new calls start at the next one.
    fn rotate(&self) {
        let n = self.shared.members.len();
        let index = self.shared.pinned.load(Ordering::Acquire) % n;
        let _ = self.shared.pinned.compare_exchange(index, (index + 1) % n, Ordering::AcqRel, Ordering::Acquire);
    }
}

// === errors ===

/// Errors of this module that become [`StoreError::Internal`].
#[derive(Debug, thiserror::Error)]
enum EtcdError {
    #[error("key {0:?} does not start with '/'")]
    InvalidKey(String),
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
    #[error(transparent)]
    Client(etcd_client::Error),
}

/// An etcd failure, sorted by what callers do about it.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("required revision has been compacted")]
    Compacted,
    #[error("required revision is a future revision")]
    FutureRevision,
    /// etcd refused the request as too large.
    #[error("{0}")]
    TooLarge(String),
    /// etcd's answer was larger than the client decodes.
    #[error("{0}")]
    ResponseTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(etcd_client::Error),
}

impl Failure {
    /// The [`StoreError`]; `write` = (key, value size, limit) for `TooLarge`.
    fn into_store_error(self, write: Option<(&str, usize, usize)>) -> StoreError {
        match self {
            Failure::Unavailable(why) => StoreError::Unavailable(why),
            Failure::TooLarge(why) => match write {
                Some((key, size, limit)) => StoreError::TooLarge { key: key.to_string(), size, limit },
                None => StoreError::Internal(Box::new(EtcdError::Protocol(why))),
            },
            Failure::Other(e) => StoreError::Internal(Box::new(EtcdError::Client(e))),
            other => StoreError::Internal(Box::new(EtcdError::Protocol(other.to_string()))),
        }
    }
}

struct Classified {
    failure: Failure,
    /// Worth trying again (elsewhere or later).
    transient: bool,
    /// The request certainly did not take effect.
    not_sent: bool,
}

/// Sorts an etcd client error. etcd identifies its errors by their gRPC status
/// description (its Go client compares them the same way), so this is the one
/// place that reads error text.
fn classify(error: etcd_client::Error) -> Classified {
    use etcd_client::Error as E;
    let status = match error {
        E::GRpcStatus(status) => status,
        // The connection could not be set up: nothing was sent.
        E::TransportError(e) => return Classified { failure: Failure::Unavailable(format!("etcd connection failed: {e}")), transient: true, not_sent: true },
        E::IoError(e) => return Classified { failure: Failure::Unavailable(format!("etcd connection failed: {e}")), transient: true, not_sent: false },
        E::WatchError(e) => return Classified { failure: Failure::Unavailable(format!("etcd watch stream closed: {e}")), transient: true, not_sent: false },
        other => return Classified { failure: Failure::Other(other), transient: false, not_sent: false },
    };
    let message = status.message();
    let has = |text: &str| message.contains(text);
    let (failure, transient, not_sent) = if has("required revision has been compacted") {
        (Failure::Compacted, false, false)
    } else if has("required revision is a future revision") {
        (Failure::FutureRevision, false, false)
    } else if has("decoded message length too large") || has("message length too large") {
        (Failure::ResponseTooLarge(message.to_string()), false, false)
    } else if has("no leader") || has("too many requests") || has("not capable") {
        // Refused before being proposed to raft.
        (Failure::Unavailable(format!("etcd: {message}")), true, true)
    } else if has("request is too large") {
        (Failure::TooLarge(message.to_string()), false, false)
    } else if has("request timed out") || has("leader changed") || has("server stopped") || has("unhealthy cluster") || has("raft proposal dropped") {
        (Failure::Unavailable(format!("etcd: {message}")), true, false)
    } else {
        use tonic_code::*;
        match status.code() as i32 {
            UNAVAILABLE | DEADLINE_EXCEEDED | CANCELLED | ABORTED => (Failure::Unavailable(format!("etcd: {}", describe(status.message(), &status))), true, connect_failed(&status)),
            RESOURCE_EXHAUSTED => (Failure::TooLarge(message.to_string()), false, false),
            // Raised on this side (the status has a cause): a connection that broke,
            // or a TLS handshake that failed (a refused client certificate shows up
            // only on the first read). etcd's own errors carry no cause.
            UNKNOWN if std::error::Error::source(&status).is_some() => (Failure::Unavailable(format!("etcd: {}", describe(status.message(), &status))), true, connect_failed(&status)),
            _ => (Failure::Other(etcd_client::Error::GRpcStatus(status)), false, false),
        }
    };
    Classified { failure, transient, not_sent }
}

/// gRPC status codes, compared without depending on tonic's enum directly.
mod tonic_code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const UNAVAILABLE: i32 = 14;
}

/// The status message followed by its chain of causes ("transport error: … :
/// received fatal alert: BadCertificate"), for messages that say what went wrong.
fn describe(message: &str, error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = message.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a failed call failed while connecting, before anything was sent: the
/// error chain holds an I/O error that only a connect attempt produces.
fn connect_failed(status: &impl std::error::Error) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable) {
                return true;
            }
        }
        source = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_hosts_ports_and_a_prefix_parses() {
        let config = EtcdConfig::from_url("etcd://h1:2379,h2,h3:2380/myprefix").unwrap();
        assert_eq!(config.endpoints, ["h1:2379", "h2:2379", "h3:2380"]);
        assert_eq!(config.prefix, "/myprefix");
        assert_eq!(config.tls, None);
        assert_eq!(config.request_timeout, EtcdConfig::default().request_timeout);
    }

    #[test]
    fn a_url_without_a_path_uses_the_default_prefix() {
        assert_eq!(EtcdConfig::from_url("etcd://127.0.0.1:2379").unwrap().prefix, "/skiff");
        assert_eq!(EtcdConfig::from_url("etcd://127.0.0.1:2379/").unwrap().prefix, "/skiff");
    }

    #[test]
    fn prefixes_are_normalized_to_a_leading_slash_without_a_trailing_one() {
        assert_eq!(EtcdConfig::from_url("etcd://h/a/b/").unwrap().prefix, "/a/b");
        assert_eq!(EtcdConfig::from_url("etcd://h//a//b").unwrap().prefix, "/a/b");
    }

    #[test]
    fn ipv6_hosts_need_brackets() {
        assert_eq!(EtcdConfig::from_url("etcd://[::1]:2381,[fe80::1]").unwrap().endpoints, ["[::1]:2381", "[fe80::1]:2379"]);
        let err = EtcdConfig::from_url("etcd://::1:2379").unwrap_err();
        assert!(err.contains("empty host") || err.contains("brackets"), "{err}");
        assert!(EtcdConfig::from_url("etcd://fe80::1").unwrap_err().contains("brackets"));
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, reason) in [
            ("http://h:2379", "unsupported scheme \"http\""),
            ("h1:2379", "not an etcd URL"),
            ("etcd://", "no etcd hosts"),
            ("etcd:///prefix", "no etcd hosts"),
            ("etcd://h1,,h2", "empty host"),
            ("etcd://h1,", "empty host"),
            ("etcd://:2379", "empty host"),
            ("etcd://h1:port", "bad port \"port\""),
            ("etcd://h1:0", "bad port \"0\""),
            ("etcd://h1:65536", "bad port \"65536\""),
            ("etcd://h1:", "bad port \"\""),
            ("etcd://user@h1", "unexpected '@'"),
            ("etcd://h1/p?x=1", "unexpected '?'"),
            ("etcd://[::1", "unclosed"),
        ] {
            let err = EtcdConfig::from_url(url).expect_err(url);
            assert!(err.contains(reason), "{url}: {err:?} does not mention {reason:?}");
        }
    }

    #[test]
    fn url_is_the_inverse_of_from_url() {
        for url in ["etcd://h1:2379,h2:2379,h3:2380/myprefix", "etcd://127.0.0.1:2379/skiff", "etcd://[::1]:2379/a/b"] {
            let config = EtcdConfig::from_url(url).unwrap();
            assert_eq!(config.url(), url);
            assert_eq!(EtcdConfig::from_url(&config.url()).unwrap(), config);
        }
        let config = EtcdConfig { endpoints: vec!["a:1".into(), "b:2".into()], prefix: "/p".into(), ..Default::default() };
        assert_eq!(EtcdConfig::from_url(&config.url()).unwrap(), config);
        assert_eq!(EtcdConfig::from_url("etcd://h").unwrap().url(), "etcd://h:2379/skiff");
    }

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"/skiff/a/"), b"/skiff/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn progress_notifications_are_trusted_only_from_fixed_etcd_versions() {
        for (version, mode) in [
            ("3.4.23", ProgressMode::Guarded),
            ("3.4.30", ProgressMode::Guarded),
            ("3.4.31", ProgressMode::Ordered),
            ("3.5.12", ProgressMode::Guarded),
            ("3.5.13", ProgressMode::Ordered),
            ("3.5.21", ProgressMode::Ordered),
            ("3.6.0", ProgressMode::Ordered),
            ("3.6.0-rc.1", ProgressMode::Ordered),
            ("3.3.27", ProgressMode::Guarded),
            ("4.0.0", ProgressMode::Ordered),
            ("", ProgressMode::Guarded),
            ("garbage", ProgressMode::Guarded),
        ] {
            assert_eq!(ProgressMode::for_version(version), mode, "{version}");
        }
    }
}
