//! The shared state of a running API server and the storage-level operations that
//! every verb builds on: reading, conditional writing with retries, and the
//! per-resource watch caches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::{meta, ResourceInfo, StatusError, RESOURCES};
use skiff_store::{KeyValue, Store, StoreError, WatchCache};

use crate::object::{decode_stored, CachedObject};

/// Options a server is started with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service CIDR (IPv4), from which Service cluster IPs are allocated.
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// NodePort range, inclusive.
    pub node_port_range: (u16, u16),
    /// How many recent events each watch cache keeps for resumption.
    pub watch_history: usize,
    /// How often the datastore's history is compacted (None: never). Each pass
    /// compacts to the revision the previous pass saw, so history spans one interval.
    pub compaction_interval: Option<std::time::Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            service_cidr: ("10.96.0.0".parse().unwrap(), 12),
            node_port_range: (30000, 32767),
            watch_history: 10_000,
            compaction_interval: Some(std::time::Duration::from_secs(300)),
        }
    }
}

/// Bearer tokens and who they belong to.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub admin: String,
    pub node: String,
}

/// A request's authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct App(pub Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub caches: HashMap<&'static str, WatchCache<CachedObject>>,
    pub tokens: Tokens,
    /// Issues and verifies service account tokens.
    pub sa_tokens: crate::satoken::Signer,
    /// The cluster CA certificate (PEM), published in every namespace as the
    /// `kube-root-ca.crt` ConfigMap; empty until the server sets it.
    pub ca_pem: std::sync::OnceLock<String>,
    pub settings: Settings,
    pub ready: AtomicBool,
    /// Serializes cluster-IP and node-port allocation so two creates never pick the same.
    pub alloc_lock: tokio::sync::Mutex<()>,
}

impl std::ops::Deref for App {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Maps store failures to API errors, once, at the edge.
pub fn store_error(res: &ResourceInfo, name: &str, e: StoreError) -> StatusError {
    match e {
        StoreError::AlreadyExists { .. } => StatusError::already_exists(res.group, res.plural, name),
        StoreError::NotFound { .. } => StatusError::not_found(res.group, res.plural, name),
        StoreError::Conflict { .. } => StatusError::conflict(
            res.group,
            res.plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        StoreError::Compacted { requested, compacted } => StatusError::gone(format!(
            "The resourceVersion for the provided request is too old (requested {requested}, oldest available {compacted})."
        )),
        StoreError::FutureRevision { requested, current } => {
            let mut e = StatusError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ));
            e.retry_after = Some(1);
            e
        }
        StoreError::TooLarge { size, limit, .. } => StatusError::too_large(format!(
            "Request entity too large: the object is {size} bytes, and the datastore accepts at most {limit} bytes"
        )),
        StoreError::Unavailable(m) => {
            let mut e = StatusError::unavailable(format!("the datastore is unavailable: {m}"));
            e.retry_after = Some(1);
            e
        }
        StoreError::Internal(e) => StatusError::internal(e.to_string()),
    }
}

/// What a read-modify-write step decided.
pub enum Decision {
    /// Write this object (create if there was none).
    Write(Value),
    /// Delete the object.
    Delete,
    /// Leave it as it is; answer with this object.
    Keep(Value),
}

/// The outcome of a read-modify-write.
pub enum Written {
    Created(Value),
    Updated(Value),
    Deleted(Value),
    Unchanged(Value),
}

impl App {
    pub async fn new(store: Arc<dyn Store>, tokens: Tokens, settings: Settings) -> Result<App, StoreError> {
        let mut caches = HashMap::new();
        for res in RESOURCES {
            let cache = WatchCache::start(store.clone(), res.key_prefix(), crate::object::decoder(res), settings.watch_history).await?;
            caches.insert(res.definition, cache);
        }
        Ok(App(Arc::new(Shared {
            store,
            caches,
            sa_tokens: crate::satoken::Signer::new(&tokens.admin),
            ca_pem: std::sync::OnceLock::new(),
            tokens,
            settings,
            ready: AtomicBool::new(false),
            alloc_lock: tokio::sync::Mutex::new(()),
        })))
    }

    pub fn cache(&self, res: &ResourceInfo) -> &WatchCache<CachedObject> {
        &self.caches[res.definition]
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Reads one object from the store (a consistent read).
    pub async fn read(&self, res: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<Option<(Value, KeyValue)>, StatusError> {
        let key = res.key(namespace, name);
        match self.store.get(&key).await.map_err(|e| store_error(res, name, e))? {
            None => Ok(None),
            Some(kv) => match decode_stored(res, &kv) {
                Some(v) => Ok(Some((v, kv))),
                None => Err(StatusError::internal(format!("stored object {key} is not valid JSON"))),
            },
        }
    }

    /// The watch cache's copy of `key`, in the shape `read` returns (the value of
    /// the returned `KeyValue` is left empty: callers use its revisions).
    fn cached(&self, res: &ResourceInfo, key: &str) -> Option<(Value, KeyValue)> {
        let entry = self.cache(res).get(key)?;
        let value = entry.object.value();
        if value.is_null() {
            return None;
        }
        let kv = KeyValue { key: key.to_string(), value: bytes::Bytes::new(), create_revision: entry.create_revision, mod_revision: entry.mod_revision };
        Some((value, kv))
    }

    /// Reads one object, or 404.
    pub async fn read_existing(&self, res: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<(Value, KeyValue), StatusError> {
        self.read(res, namespace, name).await?.ok_or_else(|| StatusError::not_found(res.group, res.plural, name))
    }

    /// Waits until the cache of `res` has caught up with the store, so a read from it is
    /// as fresh as a read from the store would be.
    pub async fn sync_cache(&self, res: &ResourceInfo) -> Result<i64, StatusError> {
        let rev = self.store.current_revision().await.map_err(|e| store_error(res, "", e))?;
        self.cache(res)
            .wait_for(rev, Duration::from_secs(10))
            .await
            .map_err(|e| StatusError::timeout(format!("the watch cache did not catch up: {e}")))?;
        Ok(rev)
    }

    /// Read-modify-write with optimistic concurrency, retried on conflicts (upstream's
    /// `GuaranteedUpdate`). `decide` sees the current object (None if absent) and may be
    /// called more than once.
    pub async fn guaranteed_update<F>(&self, res: &ResourceInfo, namespace: Option<&str>, name: &str, dry_run: bool, mut decide: F) -> Result<Written, StatusError>
    where
        F: FnMut(Option<&Value>) -> Result<Decision, StatusError>,
    {
        let key = res.key(namespace, name);
        // As kube-apiserver's cacher does, the first attempt starts from the watch
        // cache's copy, so the common case costs one datastore round trip (the
        // conditional write) instead of two. A cached copy may be stale: a conflict
        // on write, an error from `decide`, or "nothing to change" are confirmed
        // against a fresh read before they count. A key missing from the cache is
        // always read from the store (it may have just been created elsewhere).
        let mut try_cache = true;
        for _ in 0..16 {
            let cached = if try_cache { self.cached(res, &key) } else { None };
            try_cache = false;
            let is_current = cached.is_none();
            let current = match cached {
                Some(c) => Some(c),
                None => self.read(res, namespace, name).await?,
            };
            let decision = match decide(current.as_ref().map(|(v, _)| v)) {
                Ok(d) => d,
                Err(_) if !is_current => continue,
                Err(e) => return Err(e),
            };
            let result = match (decision, current) {
                (Decision::Keep(_), _) if !is_current => continue,
                (Decision::Keep(v), _) => return Ok(Written::Unchanged(v)),
                (Decision::Write(v), None) => {
                    if dry_run {
                        return Ok(Written::Created(v));
                    }
                    self.store.create(&key, encode_for_store(res, &v)).await.map(|kv| Written::Created(with_revision(v, &kv)))
                }
                (Decision::Write(v), Some((_, kv))) => {
                    if dry_run {
                        // A dry run reports the version the object has now, as upstream.
                        return Ok(Written::Updated(with_revision(v, &kv)));
                    }
                    self.store
                        .update(&key, encode_for_store(res, &v), kv.mod_revision)
                        .await
                        .map(|new| Written::Updated(with_revision(v, &new)))
                }
                (Decision::Delete, Some((old, kv))) => {
                    if dry_run {
                        return Ok(Written::Deleted(old));
                    }
                    self.store.delete(&key, Some(kv.mod_revision)).await.map(|d| Written::Deleted(with_revision(old, &d)))
                }
                (Decision::Delete, None) => return Err(StatusError::not_found(res.group, res.plural, name)),
            };
            match result {
                Ok(w) => return Ok(w),
                Err(StoreError::Conflict { .. }) | Err(StoreError::AlreadyExists { .. }) | Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(store_error(res, name, e)),
            }
        }
        Err(StatusError::conflict(res.group, res.plural, name, "too many concurrent writers; please try again"))
    }

    /// Whether a namespace exists and accepts new content.
    pub async fn check_namespace(&self, namespace: &str, res: &ResourceInfo, name: &str) -> Result<(), StatusError> {
        let ns_res = skiff_api::resources::lookup("", "v1", "namespaces").expect("namespaces registered");
        let ns = match self.cache(ns_res).get(&ns_res.key(None, namespace)) {
            Some(e) => Some(e.object.value()),
            None => self.read(ns_res, None, namespace).await?.map(|(v, _)| v),
        };
        match ns {
            None => Err(StatusError::not_found("", "namespaces", namespace)),
            Some(ns) if meta::is_deleting(&ns) || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") => {
                let mut e = StatusError::forbidden(format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
                    qualified(res), name, namespace
                ));
                e.name = Some(name.to_string());
                e.kind = Some(res.plural.to_string());
                e.reason = "Forbidden".into();
                e.causes = vec![skiff_api::Cause {
                    reason: "NamespaceTerminating".into(),
                    field: "metadata.namespace".into(),
                    message: format!("namespace {namespace} is being terminated"),
                }];
                Err(e)
            }
            Some(_) => Ok(()),
        }
    }
}

fn qualified(res: &ResourceInfo) -> String {
    if res.group.is_empty() {
        res.plural.to_string()
    } else {
        format!("{}.{}", res.plural, res.group)
    }
}

/// The stored form of an object: no resourceVersion (the store's revision is the truth).
pub fn encode_for_store(res: &ResourceInfo, v: &Value) -> Bytes {
    let mut v = skiff_api::convert::to_storage(res, v.clone());
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

fn with_revision(mut v: Value, kv: &KeyValue) -> Value {
    meta::set_resource_version(&mut v, kv.mod_revision);
    v
}
