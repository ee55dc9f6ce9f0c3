//! The embedded datastore: a kine-style revision table in SQLite.
//!
//! Every write appends one row to `kine`; the row's `id` is the write's revision. The
//! latest state of a key is its highest row, unless that row is a delete tombstone.
//! Reading "as of" revision R takes, per key, the highest row with `id <= R`. Nothing
//! is updated in place, so history (for watches and old reads) is just older rows,
//! until compaction removes the rows that no read at or after the compacted revision
//! can reach.
//!
//! Writes go through one dedicated writer thread. It takes every request queued at
//! the moment and commits them in one transaction (group commit), so the cost of the
//! `fsync` that `synchronous=FULL` demands is shared by all of them; each request is
//! answered only after its transaction is durable. Conditional checks (create if
//! absent, compare-and-swap on the mod revision) run inside that transaction, in
//! queue order, so they see the effect of earlier requests of the same batch.
//!
//! Reads use a small pool of separate connections on blocking threads; WAL lets them
//! run beside the writer. Each read is one read transaction, so the compacted
//! revision it checks and the rows it returns come from the same snapshot.
//!
//! Watches are fed in-process: after each commit the writer broadcasts the batch's
//! events. A watch subscribes first, then reads the rows it missed from the table,
//! then follows the broadcast, dropping anything it already sent. A watch that falls
//! behind the broadcast re-reads the table, so it never skips an event.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchResponse, WatchStream};

/// The largest value accepted, as etcd's default request limit (1.5 MiB).
pub const MAX_VALUE_SIZE: usize = 1536 * 1024;

/// At most this many queued requests share one transaction. Bounds the latency a
/// single commit adds to the first request of the batch.
const MAX_BATCH: usize = 1024;

/// Requests waiting for the writer. Senders wait when it is full (back-pressure).
const WRITE_QUEUE: usize = 8192;

/// Committed batches kept for watches that are a little behind. A watch further
/// behind than this re-reads the table.
const BROADCAST_CAPACITY: usize = 4096;

/// Rows per history read of a catching-up watch, so a watch from far back neither
/// holds a read transaction for long nor loads all of history at once.
const HISTORY_PAGE: i64 = 1000;

/// Revisions covered by one compaction sweep, so that a sweep (which shares a
/// transaction with queued writes) never stalls writers for long.
const COMPACT_CHUNK: i64 = 10_000;

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kine (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            BLOB    NOT NULL,
    created         INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    value           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The latest row of one key (tombstone or not).
const LATEST_ROW: &str = "SELECT id, deleted, create_revision, value FROM kine WHERE name = ?1 ORDER BY id DESC LIMIT 1";

/// Per key under [?1, ?2), the row visible at revision ?3 if it is not a tombstone,
/// in key order. The index on (name, id) gives both the key order and the per-key
/// maximum without a sort.
const LIST_AT: &str = "
SELECT k.id, k.name, k.create_revision, k.value FROM kine AS k
WHERE k.name >= ?1 AND k.name < ?2 AND k.id <= ?3 AND k.deleted = 0
  AND k.id = (SELECT MAX(m.id) FROM kine AS m WHERE m.name = k.name AND m.id <= ?3)
ORDER BY k.name
LIMIT ?4";

/// Rows under [?3, ?4) with ?1 < id <= ?2, in revision order, each with the value of
/// the row it replaced. That row always survives compaction while this one does:
/// it is the newest row of its key at or below any compacted revision below this
/// row's id.
const HISTORY: &str = "
SELECT k.id, k.name, k.created, k.deleted, k.create_revision, k.prev_revision, k.value, p.value
FROM kine AS k LEFT JOIN kine AS p ON p.id = k.prev_revision
WHERE k.id > ?1 AND k.id <= ?2 AND k.name >= ?3 AND k.name < ?4
ORDER BY k.id
LIMIT ?5";

const INSERT: &str = "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Removes, in the id range [?1, ?2), every row at or below ?3 that no read at ?3 or
/// later can see: tombstones, and rows replaced by a newer row at or below ?3.
const SWEEP: &str = "
DELETE FROM kine
WHERE id >= ?1 AND id < ?2 AND id <= ?3
  AND (deleted = 1 OR id < (SELECT MAX(m.id) FROM kine AS m WHERE m.name = kine.name AND m.id <= ?3))";

const CURRENT_REVISION: &str = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'kine'), 0)";
const COMPACTED_REVISION: &str = "SELECT COALESCE((SELECT value FROM meta WHERE name = 'compacted'), 0)";

/// A [`Store`] in one SQLite file (plus its `-wal` and `-shm` files).
///
/// Cheap operations (`current_revision`, `compacted_revision`) are answered from
/// memory; everything else goes to the database. Dropping the store lets the
/// writer finish the requests already queued, then closes the database.
pub struct SqliteStore {
    writes: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    commits: broadcast::Sender<Arc<Commit>>,
    readers: Arc<ReadPool>,
    revisions: Arc<Revisions>,
    /// Keeps the directory of [`SqliteStore::open_temporary`] alive.
    #[cfg(any(test, feature = "conformance"))]
    _temp: Option<tempfile::TempDir>,
}

/// Revisions the writer publishes after each commit.
#[derive(Debug, Default)]
struct Revisions {
    current: AtomicI64,
    compacted: AtomicI64,
}

/// What one commit changed, as broadcast to watches.
#[derive(Debug)]
struct Commit {
    /// The highest revision of the batch.
    revision: Revision,
    events: Vec<Event>,
}

/// One queued write and where to send its outcome.
struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Option<KeyValue>>>,
}

#[derive(Debug)]
enum Op {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: Revision },
    Delete { key: String, expected: Option<Revision> },
    /// Records the new compacted revision (rows are swept afterwards).
    MarkCompacted { revision: Revision },
    /// Removes unreachable rows with ids in [from, to), at or below `revision`.
    Sweep { revision: Revision, from: Revision, to: Revision },
}

/// Key bounds of a prefix as byte strings: [lower, upper).
#[derive(Debug, Clone)]
struct KeyRange {
    lower: Vec<u8>,
    upper: Vec<u8>,
}

impl KeyRange {
    fn prefix(prefix: &str) -> KeyRange {
        KeyRange { lower: prefix.as_bytes().to_vec(), upper: prefix_end(prefix.as_bytes()) }
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
/// Keys are UTF-8, which never contains 0xFF, so `[0xFF]` bounds the empty prefix.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF]
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(e))
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

fn key_string(name: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(name).map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e)))
}

// === impl SqliteStore ===

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer
    /// thread. Must not be called from a context that forbids blocking for the few
    /// milliseconds opening takes.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with(path, BROADCAST_CAPACITY)
    }

    fn open_with(path: &Path, broadcast_capacity: usize) -> Result<SqliteStore> {
        let conn = Connection::open(path).map_err(internal)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(internal)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!("SQLite refused WAL mode for {} (got {mode})", path.display())));
        }
        // FULL: the WAL is synced on every commit, so an acknowledged write survives
        // a crash of the process or the machine.
        conn.pragma_update(None, "synchronous", "FULL").map_err(internal)?;
        conn.pragma_update(None, "busy_timeout", 5000).map_err(internal)?;
        conn.pragma_update(None, "cache_size", -32_000).map_err(internal)?;
        conn.execute_batch(SCHEMA).map_err(internal)?;
        let current: Revision = conn.query_row(CURRENT_REVISION, [], |r| r.get(0)).map_err(internal)?;
        let compacted: Revision = conn.query_row(COMPACTED_REVISION, [], |r| r.get(0)).map_err(internal)?;
        conn.set_prepared_statement_cache_capacity(32);

        let revisions = Arc::new(Revisions { current: AtomicI64::new(current), compacted: AtomicI64::new(compacted) });
        let (commits, _) = broadcast::channel(broadcast_capacity);
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer { conn, queue, revisions: revisions.clone(), commits: commits.clone() };
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(internal)?;
        Ok(SqliteStore {
            writes: Some(writes),
            writer: Some(writer),
            commits,
            readers: Arc::new(ReadPool { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) }),
            revisions,
            #[cfg(any(test, feature = "conformance"))]
            _temp: None,
        })
    }

    /// A store in a fresh temporary directory, removed when the store is dropped.
    /// For tests (the conformance suite makes one per check).
    #[cfg(any(test, feature = "conformance"))]
    pub fn open_temporary() -> Result<SqliteStore> {
        let dir = tempfile::tempdir().map_err(internal)?;
        let mut store = SqliteStore::open(&dir.path().join("state.db"))?;
        store._temp = Some(dir);
        Ok(store)
    }

    /// Queues one write and waits for its commit.
    async fn write(&self, op: Op) -> Result<Option<KeyValue>> {
        let (reply, answer) = oneshot::channel();
        let writes = self.writes.as_ref().ok_or_else(unavailable)?;
        writes.send(Request { op, reply }).await.map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())?
    }

    async fn write_kv(&self, op: Op) -> Result<KeyValue> {
        self.write(op).await?.ok_or_else(|| StoreError::Unavailable("the SQLite writer answered without a value".into()))
    }

    fn check_size(&self, key: &str, value: &Bytes) -> Result<()> {
        if value.len() > MAX_VALUE_SIZE {
            return Err(StoreError::TooLarge { key: key.to_string(), size: value.len(), limit: MAX_VALUE_SIZE });
        }
        Ok(())
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what is queued;
        // joining makes the file safe to reopen as soon as the store is gone.
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.readers.path)
            .field("revision", &self.revisions.current.load(Ordering::Acquire))
            .finish()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.readers.read(move |conn| Ok(latest(conn, &key)?.and_then(|row| row.live(key)))).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let range = KeyRange::prefix(prefix);
        let lower = match &opts.start_after {
            // The successor of `after` in byte order is `after` followed by a NUL.
            Some(after) if after.as_bytes() >= range.lower.as_slice() => {
                let mut lower = after.as_bytes().to_vec();
                lower.push(0);
                lower
            }
            _ => range.lower.clone(),
        };
        let limit = opts.limit.filter(|l| *l > 0);
        let wanted = opts.revision;
        self.readers
            .read(move |conn| {
                let tx = conn.transaction()?;
                let current: Revision = tx.query_row(CURRENT_REVISION, [], |r| r.get(0))?;
                let compacted: Revision = tx.query_row(COMPACTED_REVISION, [], |r| r.get(0))?;
                let revision = match wanted {
                    None => current,
                    Some(rev) if rev > current => return Ok(Err(StoreError::FutureRevision { requested: rev, current })),
                    Some(rev) if rev < compacted => return Ok(Err(StoreError::Compacted { requested: rev, compacted })),
                    Some(rev) => rev,
                };
                // One extra row tells whether more follow.
                let sql_limit = limit.map(|l| l as i64 + 1).unwrap_or(-1);
                let mut items = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(LIST_AT)?;
                    let mut rows = stmt.query(params![lower, range.upper, revision, sql_limit])?;
                    while let Some(r) = rows.next()? {
                        items.push(KeyValue {
                            key: key_string(r.get(1)?)?,
                            value: Bytes::from(r.get::<_, Vec<u8>>(3)?),
                            create_revision: r.get(2)?,
                            mod_revision: r.get(0)?,
                        });
                    }
                }
                let more = limit.is_some_and(|l| items.len() > l);
                if let Some(l) = limit {
                    items.truncate(l);
                }
                Ok(Ok(ListResult { items, revision, more }))
            })
            .await?
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.revisions.current.load(Ordering::Acquire))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.check_size(key, &value)?;
        self.write_kv(Op::Create { key: key.to_string(), value }).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.check_size(key, &value)?;
        self.write_kv(Op::Update { key: key.to_string(), value, expected }).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write_kv(Op::Delete { key: key.to_string(), expected }).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before reading history: whatever commits after the history
        // snapshot is then certain to arrive on the broadcast.
        let commits = self.commits.subscribe();
        let mut watch = Watch {
            readers: self.readers.clone(),
            commits,
            prefix: prefix.to_string(),
            range: KeyRange::prefix(prefix),
            last: after.max(0),
            announced: after.max(0),
            catch_up: Some(None),
            pending: VecDeque::new(),
            done: false,
        };
        // The first page is read here so that a compacted `after` fails the call
        // itself rather than the first item of the stream.
        watch.catch_up_page().await?;
        let stream = futures::stream::unfold(watch, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        });
        Ok(Box::pin(stream))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(Op::MarkCompacted { revision }).await?;
        let first: Option<Revision> = self.readers.read(|conn| conn.query_row("SELECT MIN(id) FROM kine", [], |r| r.get(0))).await?;
        let mut from = first.unwrap_or(revision + 1);
        while from <= revision {
            let to = from.saturating_add(COMPACT_CHUNK);
            self.write(Op::Sweep { revision, from, to }).await?;
            from = to;
        }
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.revisions.compacted.load(Ordering::Acquire))
    }

    fn max_value_size(&self) -> usize {
        MAX_VALUE_SIZE
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

// === impl ReadPool ===

/// Read connections, reused between reads. Each read runs on a blocking thread.
struct ReadPool {
    path: PathBuf,
    /// std Mutex: held only to push or pop a connection, never across a query.
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -16_000)?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>) -> Result<R> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open_reader().map_err(internal)?,
        };
        let out = f(&mut conn).map_err(internal);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    async fn read<R, F>(self: &Arc<Self>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.with(f)).await.map_err(internal)?
    }
}

// === impl Writer ===

/// The single writer: owns the write connection and the queue.
struct Writer {
    conn: Connection,
    queue: mpsc::Receiver<Request>,
    revisions: Arc<Revisions>,
    commits: broadcast::Sender<Arc<Commit>>,
}

/// What applying one batch produced, before it is known to be committed.
struct Applied {
    replies: Vec<Result<Option<KeyValue>>>,
    events: Vec<Event>,
    revision: Revision,
    compacted: Revision,
    /// Whether any statement changed the database (otherwise nothing to commit).
    dirty: bool,
}

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.queue.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            match self.commit(&batch) {
                Ok(applied) => self.finish(batch.drain(..), applied),
                Err(error) => {
                    // One request's SQL failure must not fail its neighbours: retry
                    // each on its own, so only the faulty one reports the error.
                    tracing::warn!(%error, requests = batch.len(), "SQLite batch failed, retrying requests one by one");
                    for request in batch.drain(..) {
                        match self.commit(std::slice::from_ref(&request)) {
                            Ok(applied) => self.finish(std::iter::once(request), applied),
                            Err(e) => {
                                let _ = request.reply.send(Err(internal(e)));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Applies `batch` in one transaction and commits it.
    fn commit(&mut self, batch: &[Request]) -> rusqlite::Result<Applied> {
        let base = self.revisions.current.load(Ordering::Acquire);
        let mut applied = Applied {
            replies: Vec::with_capacity(batch.len()),
            events: Vec::new(),
            revision: base,
            compacted: self.revisions.compacted.load(Ordering::Acquire),
            dirty: false,
        };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for request in batch {
            let reply = apply(&tx, &request.op, &mut applied)?;
            applied.replies.push(reply);
        }
        if applied.dirty {
            tx.commit()?;
        } else {
            // Every request failed its condition: nothing to make durable.
            tx.rollback()?;
        }
        Ok(applied)
    }

    /// Publishes a committed batch, then answers its requests.
    fn finish(&self, batch: impl Iterator<Item = Request>, applied: Applied) {
        self.revisions.current.store(applied.revision, Ordering::Release);
        self.revisions.compacted.fetch_max(applied.compacted, Ordering::AcqRel);
        if !applied.events.is_empty() {
            // No subscribers is fine: nobody is watching.
            let _ = self.commits.send(Arc::new(Commit { revision: applied.revision, events: applied.events }));
        }
        for (request, reply) in batch.zip(applied.replies) {
            let _ = request.reply.send(reply);
        }
    }
}

/// The newest row of a key, tombstone or not.
struct LatestRow {
    id: Revision,
    deleted: bool,
    create_revision: Revision,
    value: Vec<u8>,
}

impl LatestRow {
    /// The key's value, unless the row is a tombstone.
    fn live(self, key: String) -> Option<KeyValue> {
        (!self.deleted).then(|| KeyValue { key, value: Bytes::from(self.value), create_revision: self.create_revision, mod_revision: self.id })
    }
}

fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<LatestRow>> {
    conn.prepare_cached(LATEST_ROW)?
        .query_row(params![key.as_bytes()], |r| Ok(LatestRow { id: r.get(0)?, deleted: r.get(1)?, create_revision: r.get(2)?, value: r.get(3)? }))
        .optional()
}

/// Applies one request inside the batch transaction. The outer error is an SQL
/// failure (the batch is rolled back); the inner one is the request's own outcome.
fn apply(tx: &rusqlite::Transaction<'_>, op: &Op, applied: &mut Applied) -> rusqlite::Result<Result<Option<KeyValue>>> {
    match op {
        Op::Create { key, value } => {
            if latest(tx, key)?.is_some_and(|row| !row.deleted) {
                return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
            }
            let rev = applied.revision + 1;
            tx.prepare_cached(INSERT)?.execute(params![rev, key.as_bytes(), true, false, rev, 0i64, value.as_ref()])?;
            applied.revision = rev;
            applied.dirty = true;
            let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision: rev, mod_revision: rev };
            applied.events.push(Event { kind: EventKind::Put, kv: kv.clone(), prev: None });
            Ok(Ok(Some(kv)))
        }
        Op::Update { key, value, expected } => {
            let Some(current) = latest(tx, key)?.and_then(|row| row.live(key.clone())) else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if current.mod_revision != *expected {
                return Ok(Err(StoreError::Conflict { key: key.clone(), expected: *expected, current: Some(current) }));
            }
            let rev = applied.revision + 1;
            tx.prepare_cached(INSERT)?.execute(params![
                rev,
                key.as_bytes(),
                false,
                false,
                current.create_revision,
                current.mod_revision,
                value.as_ref()
            ])?;
            applied.revision = rev;
            applied.dirty = true;
            let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision: current.create_revision, mod_revision: rev };
            applied.events.push(Event { kind: EventKind::Put, kv: kv.clone(), prev: Some(current) });
            Ok(Ok(Some(kv)))
        }
        Op::Delete { key, expected } => {
            let Some(current) = latest(tx, key)?.and_then(|row| row.live(key.clone())) else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if let Some(expected) = expected {
                if current.mod_revision != *expected {
                    return Ok(Err(StoreError::Conflict { key: key.clone(), expected: *expected, current: Some(current) }));
                }
            }
            let rev = applied.revision + 1;
            // The tombstone's value stays empty: the last value is the row it
            // replaces, which readers join through prev_revision.
            tx.prepare_cached(INSERT)?.execute(params![
                rev,
                key.as_bytes(),
                false,
                true,
                current.create_revision,
                current.mod_revision,
                &[] as &[u8]
            ])?;
            applied.revision = rev;
            applied.dirty = true;
            let kv = KeyValue { key: key.clone(), value: current.value.clone(), create_revision: current.create_revision, mod_revision: rev };
            applied.events.push(Event { kind: EventKind::Delete, kv: kv.clone(), prev: Some(current) });
            Ok(Ok(Some(kv)))
        }
        Op::MarkCompacted { revision } => {
            if *revision > applied.revision {
                return Ok(Err(StoreError::FutureRevision { requested: *revision, current: applied.revision }));
            }
            if *revision > applied.compacted {
                tx.prepare_cached("INSERT INTO meta (name, value) VALUES ('compacted', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value")?
                    .execute(params![revision])?;
                applied.compacted = *revision;
                applied.dirty = true;
            }
            Ok(Ok(None))
        }
        Op::Sweep { revision, from, to } => {
            let removed = tx.prepare_cached(SWEEP)?.execute(params![from, to, revision])?;
            tracing::debug!(removed, from, to, revision, "compaction sweep");
            applied.dirty |= removed > 0;
            Ok(Ok(None))
        }
    }
}

// === impl Watch ===

/// The state of one watch stream.
struct Watch {
    readers: Arc<ReadPool>,
    commits: broadcast::Receiver<Arc<Commit>>,
    prefix: String,
    range: KeyRange,
    /// Every revision at or below this one has been sent or skipped.
    last: Revision,
    /// The highest revision the consumer has been told about (event or progress).
    announced: Revision,
    /// Reading history from the table: `Some(None)` before the first page (the
    /// target is that page's snapshot revision), `Some(Some(target))` after it.
    catch_up: Option<Option<Revision>>,
    /// Responses ready to be yielded.
    pending: VecDeque<WatchResponse>,
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<Result<WatchResponse>> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            if self.catch_up.is_some() {
                if let Err(e) = self.catch_up_page().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            // Take everything already broadcast, so one response covers it.
            let mut events = Vec::new();
            let mut closed = false;
            loop {
                match self.commits.try_recv() {
                    Ok(commit) => self.absorb(&commit, &mut events),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        self.catch_up = Some(None);
                        break;
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        closed = true;
                        break;
                    }
                }
            }
            if let Some(last_event) = events.last() {
                self.announced = last_event.revision();
                return Some(Ok(WatchResponse::Events(events)));
            }
            if self.catch_up.is_some() {
                continue;
            }
            if self.last > self.announced {
                // The prefix was quiet up to `last`: tell the consumer it is current.
                self.announced = self.last;
                return Some(Ok(WatchResponse::Progress(self.last)));
            }
            if closed {
                self.done = true;
                return Some(Err(unavailable()));
            }
            match self.commits.recv().await {
                Ok(commit) => {
                    self.absorb(&commit, &mut events);
                    if !events.is_empty() {
                        self.announced = events.last().map(Event::revision).unwrap_or(self.announced);
                        return Some(Ok(WatchResponse::Events(events)));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(prefix = %self.prefix, skipped, "watch fell behind the broadcast, re-reading history");
                    self.catch_up = Some(None);
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return Some(Err(unavailable()));
                }
            }
        }
    }

    /// Takes the events of one commit this watch has not seen yet.
    fn absorb(&mut self, commit: &Commit, out: &mut Vec<Event>) {
        if commit.revision <= self.last {
            return;
        }
        out.extend(commit.events.iter().filter(|e| e.revision() > self.last && e.kv.key.starts_with(&self.prefix)).cloned());
        self.last = commit.revision;
    }

    /// Reads one page of history after `last`, queueing its events.
    async fn catch_up_page(&mut self) -> Result<()> {
        let Some(target) = self.catch_up else { return Ok(()) };
        let after = self.last;
        let range = self.range.clone();
        let (target, rows) = self
            .readers
            .read(move |conn| {
                let tx = conn.transaction()?;
                let compacted: Revision = tx.query_row(COMPACTED_REVISION, [], |r| r.get(0))?;
                if after < compacted {
                    return Ok(Err(StoreError::Compacted { requested: after, compacted }));
                }
                let target = match target {
                    Some(t) => t,
                    None => tx.query_row(CURRENT_REVISION, [], |r| r.get(0))?,
                };
                let mut rows = Vec::new();
                let mut stmt = tx.prepare_cached(HISTORY)?;
                let mut cursor = stmt.query(params![after, target, range.lower, range.upper, HISTORY_PAGE])?;
                while let Some(r) = cursor.next()? {
                    rows.push(history_event(r)?);
                }
                Ok(Ok((target, rows)))
            })
            .await??;
        let full = rows.len() as i64 >= HISTORY_PAGE;
        if full {
            self.last = rows.last().map(Event::revision).unwrap_or(target);
            self.catch_up = Some(Some(target));
        } else {
            self.last = self.last.max(target);
            self.catch_up = None;
        }
        if let Some(last_event) = rows.last() {
            self.announced = last_event.revision();
            self.pending.push_back(WatchResponse::Events(rows));
        }
        Ok(())
    }
}

/// Decodes one row of [`HISTORY`] into an event.
fn history_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let id: Revision = r.get(0)?;
    let key = key_string(r.get(1)?)?;
    let deleted: bool = r.get(3)?;
    let create_revision: Revision = r.get(4)?;
    let prev_revision: Revision = r.get(5)?;
    let value: Vec<u8> = r.get(6)?;
    let prev_value: Option<Vec<u8>> = r.get(7)?;
    let prev = match (prev_revision, prev_value) {
        (p, Some(v)) if p > 0 => Some(KeyValue { key: key.clone(), value: Bytes::from(v), create_revision, mod_revision: p }),
        _ => None,
    };
    Ok(if deleted {
        let last = prev.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        Event { kind: EventKind::Delete, kv: KeyValue { key, value: last, create_revision, mod_revision: id }, prev }
    } else {
        Event { kind: EventKind::Put, kv: KeyValue { key, value: Bytes::from(value), create_revision, mod_revision: id }, prev }
    })
}

/// Writes `items` as creates straight into the table of a closed store, in one
/// transaction: a fast way to build large fixtures.
#[cfg(test)]
pub(crate) fn seed(path: &Path, items: impl IntoIterator<Item = (String, Bytes)>) -> Result<Revision> {
    drop(SqliteStore::open(path)?);
    let mut conn = Connection::open(path).map_err(internal)?;
    let tx = conn.transaction().map_err(internal)?;
    let mut rev: Revision = tx.query_row(CURRENT_REVISION, [], |r| r.get(0)).map_err(internal)?;
    {
        let mut insert = tx.prepare(INSERT).map_err(internal)?;
        for (key, value) in items {
            rev += 1;
            insert.execute(params![rev, key.as_bytes(), true, false, rev, 0i64, value.as_ref()]).map_err(internal)?;
        }
    }
    tx.commit().map_err(internal)?;
    Ok(rev)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    async fn collect_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(Ok(WatchResponse::Events(batch)))) => events.extend(batch),
                Ok(Some(Ok(WatchResponse::Progress(_)))) => {}
                other => panic!("after {} events: {other:?}", events.len()),
            }
        }
        events
    }

    fn rows(path: &Path) -> i64 {
        Connection::open(path).unwrap().query_row("SELECT COUNT(*) FROM kine", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b""), vec![0xFF]);
        assert_eq!(prefix_end(&[b'a', 0xFF]), b"b".to_vec());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_that_falls_behind_the_broadcast_rereads_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(&dir.path().join("db"), 2).unwrap();
        let mut watch = store.watch("/lag/", 0).await.unwrap();
        let mut written = Vec::new();
        for i in 0..50 {
            written.push(store.create(&format!("/lag/{i:03}"), b("x")).await.unwrap().mod_revision);
        }
        let seen: Vec<Revision> = collect_events(&mut watch, 50).await.iter().map(Event::revision).collect();
        assert_eq!(seen, written);
        let more = store.create("/lag/live", b("y")).await.unwrap();
        assert_eq!(collect_events(&mut watch, 1).await[0].kv, more);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_from_far_back_reads_history_in_pages() {
        let store = Arc::new(SqliteStore::open_temporary().unwrap());
        let n = (HISTORY_PAGE as usize) * 2 + 500;
        let writes = (0..n).map(|i| {
            let store = store.clone();
            async move { store.create(&format!("/h/{i:05}"), b("v")).await.unwrap().mod_revision }
        });
        let mut written = futures::future::join_all(writes).await;
        written.sort();
        let mut watch = store.watch("/h/", 0).await.unwrap();
        let seen: Vec<Revision> = collect_events(&mut watch, n).await.iter().map(Event::revision).collect();
        assert_eq!(seen, written);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conditional_writes_in_one_batch_see_each_other() {
        let store = Arc::new(SqliteStore::open_temporary().unwrap());
        let attempts = (0..32).map(|i| {
            let store = store.clone();
            async move { store.create("/race/x", b(&i.to_string())).await }
        });
        let results = futures::future::join_all(attempts).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one create-if-absent must win");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, StoreError::AlreadyExists { .. })));
        assert_eq!(store.current_revision().await.unwrap(), 1, "failed creates must not consume revisions");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_keeps_revisions_and_the_compacted_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SqliteStore::open(&path).unwrap();
            let kv = store.create("/re/a", b("1")).await.unwrap();
            store.update("/re/a", b("2"), kv.mod_revision).await.unwrap();
            store.create("/re/b", b("1")).await.unwrap();
            // The newest row is a tombstone that compaction removes: its revision
            // must still never be handed out again.
            let gone = store.delete("/re/b", None).await.unwrap();
            store.compact(gone.mod_revision).await.unwrap();
            assert_eq!(store.current_revision().await.unwrap(), 4);
        }
        assert_eq!(rows(&path), 1, "compaction keeps only the live key's latest row");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.current_revision().await.unwrap(), 4);
        assert_eq!(store.compacted_revision().await.unwrap(), 4);
        assert_eq!(store.create("/re/c", b("1")).await.unwrap().mod_revision, 5);
        assert_eq!(store.get("/re/a").await.unwrap().unwrap().value, b("2"));
        assert!(matches!(store.watch("/re/", 3).await, Err(StoreError::Compacted { requested: 3, compacted: 4 })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_keeps_rows_still_visible_at_the_compacted_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = SqliteStore::open(&path).unwrap();
        let a1 = store.create("/cp/a", b("1")).await.unwrap(); // 1
        let a2 = store.update("/cp/a", b("2"), a1.mod_revision).await.unwrap(); // 2
        store.create("/cp/b", b("1")).await.unwrap(); // 3
        store.update("/cp/a", b("3"), a2.mod_revision).await.unwrap(); // 4
        store.delete("/cp/b", None).await.unwrap(); // 5
        store.compact(3).await.unwrap();
        // Gone: a@1 (replaced at 2). Kept: a@2 (visible at 3), b@3, a@4, the tombstone b@5.
        assert_eq!(rows(&path), 4);
        let at3 = store.list("/cp/", ListOptions { revision: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!(at3.items.iter().map(|kv| (kv.key.as_str(), kv.mod_revision)).collect::<Vec<_>>(), [("/cp/a", 2), ("/cp/b", 3)]);
        // The delete after the compacted revision still carries its last value.
        let mut watch = store.watch("/cp/", 3).await.unwrap();
        let events = collect_events(&mut watch, 2).await;
        assert_eq!(events[0].prev.as_ref().map(|p| p.mod_revision), Some(2));
        assert_eq!(events[1].kind, EventKind::Delete);
        assert_eq!(events[1].kv.value, b("1"));
        // Compacting again at the same or an older revision is a no-op.
        store.compact(2).await.unwrap();
        assert_eq!(store.compacted_revision().await.unwrap(), 3);
    }
}
