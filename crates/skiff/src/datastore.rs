//! `skiff datastore …`: moving a cluster between datastores.
//!
//! `migrate` copies a stopped single-node cluster from its SQLite file into etcd:
//!
//! 1. Refuse unless the target prefix is empty.
//! 2. Read the source's current revision R and count its keys at R (refusing values
//!    etcd would not accept before anything is written).
//! 3. Copy every key as read at R (every prefix: `/registry/…`, the shared
//!    credentials, anything else) with transactions of creates.
//! 4. If the source's revision moved meanwhile, a server is still writing to it:
//!    fail, because the copy may have missed those writes.
//! 5. Make every old resourceVersion unusable. Stored values carry no
//!    resourceVersion (the server derives it from the key's mod revision), so every
//!    object gets a new, unrelated revision in etcd. A client that resumed a watch or
//!    sent a precondition with an old resourceVersion could silently skip or
//!    misapply changes. So etcd's revision is moved past R (plain puts to one marker
//!    key, then its delete) and etcd is compacted at its current revision: every old
//!    resourceVersion is then at most R, below the compacted revision, and gets
//!    410 Gone, which makes clients relist.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures::StreamExt;
use skiff_store::{EtcdStore, ListOptions, Revision, SqliteStore, Store};

#[derive(Subcommand)]
pub enum DatastoreCommand {
    /// Copy every object of a stopped single-node cluster into etcd.
    ///
    /// Stop the server first. The target prefix must be empty. Afterwards every
    /// resourceVersion a client remembers from the old datastore is older than the
    /// new datastore's compacted revision, so watches get 410 Gone and clients relist.
    ///
    /// Example:
    ///   skiff datastore migrate --from sqlite:/var/lib/skiff --to etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379
    #[command(verbatim_doc_comment)]
    Migrate(MigrateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Source: `sqlite:DATA_DIR` (the server's data directory, holding state.db).
    #[arg(long)]
    pub from: String,
    /// Target: `etcd://host:port,host:port[/prefix]`.
    #[arg(long)]
    pub to: String,
    #[command(flatten)]
    pub etcd_tls: crate::server::EtcdTlsArgs,
}

pub async fn run(cmd: DatastoreCommand) -> Result<()> {
    match cmd {
        DatastoreCommand::Migrate(args) => migrate(args).await,
    }
}

/// Keys read from the source per page.
const PAGE: usize = 1000;

/// Operations per etcd transaction: etcd's default `--max-txn-ops`.
const TXN_OPS: usize = 128;

/// Key and value bytes per transaction. etcd refuses requests over
/// `--max-request-bytes` (1.5 MiB by default), whatever the number of operations.
const TXN_BYTES: usize = 1024 * 1024;

/// Transactions in flight while copying, and plain puts in flight while moving the
/// revision forward. Enough to hide the round trip, few enough to leave etcd responsive.
const COPY_CONCURRENCY: usize = 4;
const PUT_CONCURRENCY: usize = 64;

/// The key written repeatedly to move etcd's revision past the source's (then deleted).
const MARKER_KEY: &str = "/skiff-migrate/revision-marker";

async fn migrate(args: MigrateArgs) -> Result<()> {
    let source_path = sqlite_source(&args.from)?;
    if !args.to.starts_with("etcd://") {
        bail!("--to {:?}: the target must be an etcd cluster, `etcd://host:2379,host:2379[/prefix]`", args.to);
    }
    let config = args.etcd_tls.etcd_config(&args.to)?;
    let url = config.url();
    let endpoints = config.endpoints.join(",");

    let source = SqliteStore::open(&source_path).with_context(|| format!("opening the SQLite datastore at {}", source_path.display()))?;
    let target = EtcdStore::connect(config)
        .await
        .with_context(|| format!("connecting to etcd at {endpoints} (is it running? check with `etcdctl --endpoints={endpoints} endpoint health`)"))?;
    eprintln!("migrating {} to {url}", source_path.display());

    let report = copy(&source, &target, &mut |line| eprintln!("{line}")).await?;

    let data_dir = source_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tls = String::new();
    if let Some(ca) = &args.etcd_tls.etcd_cafile {
        tls += &format!(" --etcd-cafile {}", ca.display());
    }
    if let (Some(cert), Some(key)) = (&args.etcd_tls.etcd_certfile, &args.etcd_tls.etcd_keyfile) {
        tls += &format!(" --etcd-certfile {} --etcd-keyfile {}", cert.display(), key.display());
    }
    println!("migrated {} keys from {} to {url}", grouped(report.keys as u64), source_path.display());
    println!("  old revision (SQLite):         {}", report.source_revision);
    let moved = if report.advanced_by > 0 { format!(" (moved forward with {} writes)", grouped(report.advanced_by)) } else { String::new() };
    println!("  new revision (etcd, compacted): {}{moved}", report.compacted_at);
    println!("  resourceVersions from before the migration now get 410 Gone; clients relist.");
    println!("  {} is unchanged; keep it as a backup until the new server is running well.", source_path.display());
    println!("next: skiff server --datastore {url}{tls} --data-dir {}", data_dir.display());
    Ok(())
}

/// The SQLite file named by `--from`: `sqlite:DATA_DIR` (holding `state.db`) or
/// `sqlite:PATH/TO/FILE.db`. Refuses a path that does not exist, rather than letting
/// SQLite create an empty database and "migrate" nothing.
fn sqlite_source(from: &str) -> Result<PathBuf> {
    let Some(rest) = from.strip_prefix("sqlite:") else {
        bail!("--from {from:?}: the source must be `sqlite:DATA_DIR` (the data directory of the stopped server)");
    };
    // Accept the URL-looking `sqlite:///var/lib/skiff` too.
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.is_empty() {
        bail!("--from {from:?}: name the server's data directory, e.g. `sqlite:/var/lib/skiff`");
    }
    let path = PathBuf::from(rest);
    if path.is_dir() {
        let db = path.join("state.db");
        if !db.is_file() {
            bail!("--from {from}: {} has no state.db; is it the data directory of a server that ran on SQLite?", path.display());
        }
        return Ok(db);
    }
    if path.is_file() {
        return Ok(path);
    }
    bail!("--from {from}: {} does not exist", path.display())
}

/// What the migration does to its target. [`EtcdStore`] is the real one; the unit
/// tests use a fake over SQLite. (Not [`Store`] plus extras, so that the fake needs
/// nothing but plain async functions.)
trait Target {
    /// Keys under the prefix, as [`Store::list`] with the empty prefix.
    fn list(&self, opts: ListOptions) -> impl Future<Output = skiff_store::Result<skiff_store::ListResult>>;
    fn current_revision(&self) -> impl Future<Output = skiff_store::Result<Revision>>;
    /// Writes keys that must not exist yet, in transactions of up to `batch` creates.
    fn create_many(&self, items: Vec<(String, Bytes)>, batch: usize) -> impl Future<Output = skiff_store::Result<Revision>>;
    /// An unconditional put; returns its revision.
    fn raw_put(&self, key: &str, value: Bytes) -> impl Future<Output = skiff_store::Result<Revision>>;
    fn delete(&self, key: &str) -> impl Future<Output = skiff_store::Result<()>>;
    fn compact(&self, revision: Revision) -> impl Future<Output = skiff_store::Result<()>>;
    fn max_value_size(&self) -> usize;
    /// Where the keys go, for messages.
    fn endpoints(&self) -> String;
    fn prefix(&self) -> String;
}

impl Target for EtcdStore {
    fn list(&self, opts: ListOptions) -> impl Future<Output = skiff_store::Result<skiff_store::ListResult>> {
        Store::list(self, "", opts)
    }
    fn current_revision(&self) -> impl Future<Output = skiff_store::Result<Revision>> {
        Store::current_revision(self)
    }
    fn create_many(&self, items: Vec<(String, Bytes)>, batch: usize) -> impl Future<Output = skiff_store::Result<Revision>> {
        EtcdStore::create_many(self, items, batch)
    }
    fn raw_put(&self, key: &str, value: Bytes) -> impl Future<Output = skiff_store::Result<Revision>> {
        EtcdStore::raw_put(self, key, value)
    }
    async fn delete(&self, key: &str) -> skiff_store::Result<()> {
        Store::delete(self, key, None).await.map(drop)
    }
    fn compact(&self, revision: Revision) -> impl Future<Output = skiff_store::Result<()>> {
        Store::compact(self, revision)
    }
    fn max_value_size(&self) -> usize {
        Store::max_value_size(self)
    }
    fn endpoints(&self) -> String {
        self.config().endpoints.join(",")
    }
    fn prefix(&self) -> String {
        self.config().prefix.clone()
    }
}

/// Why a migration refused to start or stopped. Everything else is a datastore or
/// I/O failure, reported with context.
#[derive(Debug)]
enum MigrateError {
    /// The target already holds keys under its prefix (`keys` counted up to a cap;
    /// `more` when there are more than that).
    TargetNotEmpty { endpoints: String, prefix: String, keys: usize, more: bool },
    /// The source's revision moved during the copy: a server is still writing.
    SourceChanged { endpoints: String, prefix: String, before: Revision, after: Revision },
    /// A source value is larger than the target accepts.
    TooLarge { key: String, size: usize, limit: usize },
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::TargetNotEmpty { endpoints, prefix, keys, more } => write!(
                f,
                "the target already holds {}{} key{} under the prefix {prefix}; migrate only into an empty prefix. \
                 Choose another prefix in the URL (etcd://…/other-prefix), or, if those keys are expendable, \
                 remove them with `etcdctl --endpoints={endpoints} del --prefix {prefix}/`",
                if *more { "more than " } else { "" },
                grouped(*keys as u64),
                if *keys == 1 && !more { "" } else { "s" },
            ),
            MigrateError::SourceChanged { endpoints, prefix, before, after } => write!(
                f,
                "the server is still running; stop it and run migrate again (the SQLite revision moved from {before} to {after} \
                 during the copy). The target now holds a partial copy under {prefix}: clear it first with \
                 `etcdctl --endpoints={endpoints} del --prefix {prefix}/`"
            ),
            MigrateError::TooLarge { key, size, limit } => write!(
                f,
                "{key} holds {} bytes, more than etcd accepts ({} bytes, from its --max-request-bytes); nothing was copied",
                grouped(*size as u64),
                grouped(*limit as u64)
            ),
        }
    }
}

impl std::error::Error for MigrateError {}

/// The outcome of [`copy`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    keys: usize,
    /// The source revision every key was read at.
    source_revision: Revision,
    /// Plain puts made to move the target's revision past `source_revision`.
    advanced_by: u64,
    /// The target's revision after the copy, at which it was compacted.
    compacted_at: Revision,
}

/// Copies every key of `source` into the empty `target` and invalidates the old
/// revisions (see the module documentation). `progress` receives one line at a time.
async fn copy<S, T>(source: &S, target: &T, progress: &mut dyn FnMut(String)) -> Result<Report>
where
    S: Store + ?Sized,
    T: Target + ?Sized,
{
    // 1. The target must be empty under its prefix.
    let existing = target.list(ListOptions { limit: Some(1), ..Default::default() }).await.context("listing the target prefix")?;
    if !existing.items.is_empty() {
        let (keys, more) = count_keys(target, 100_000).await?;
        return Err(MigrateError::TargetNotEmpty { endpoints: target.endpoints(), prefix: target.prefix(), keys, more }.into());
    }

    // 2. The source revision and what is to be copied.
    let revision = source.list("", ListOptions { limit: Some(1), ..Default::default() }).await.context("reading the SQLite datastore")?.revision;
    let limit = target.max_value_size();
    let mut total = 0usize;
    let mut after = None;
    loop {
        let page = source_page(source, revision, after.take()).await?;
        for kv in &page.items {
            if kv.value.len() > limit {
                return Err(MigrateError::TooLarge { key: kv.key.clone(), size: kv.value.len(), limit }.into());
            }
        }
        total += page.items.len();
        after = page.items.last().map(|kv| kv.key.clone());
        if !page.more || after.is_none() {
            break;
        }
    }
    progress(format!("{} keys to copy at SQLite revision {revision}", grouped(total as u64)));

    // 3. The copy, page by page, transactions in parallel within a page.
    let mut copied = 0usize;
    let mut after = None;
    loop {
        let page = source_page(source, revision, after.take()).await?;
        after = page.items.last().map(|kv| kv.key.clone());
        let n = page.items.len();
        let txns = transactions(page.items.into_iter().map(|kv| (kv.key, kv.value)));
        let mut writes = futures::stream::iter(txns.into_iter().map(|txn| {
            let len = txn.len();
            target.create_many(txn, len.max(1))
        }))
        .buffer_unordered(COPY_CONCURRENCY);
        while let Some(written) = writes.next().await {
            written.with_context(|| {
                format!(
                    "writing to etcd after {} of {} keys; the target now holds a partial copy under {p}: \
                     clear it with `etcdctl --endpoints={} del --prefix {p}/` before running migrate again",
                    grouped(copied as u64),
                    grouped(total as u64),
                    target.endpoints(),
                    p = target.prefix(),
                )
            })?;
        }
        copied += n;
        if n > 0 {
            progress(format!("copied {}/{} keys", grouped(copied as u64), grouped(total as u64)));
        }
        if !page.more || after.is_none() {
            break;
        }
    }

    // 4. A server still writing to the source makes the copy stale.
    let now = source.list("", ListOptions { limit: Some(1), ..Default::default() }).await.context("reading the SQLite datastore")?.revision;
    if now != revision {
        return Err(MigrateError::SourceChanged { endpoints: target.endpoints(), prefix: target.prefix(), before: revision, after: now }.into());
    }

    // 5. Every old resourceVersion below the target's compacted revision.
    let mut advanced_by = 0u64;
    let mut current = target.current_revision().await.context("reading etcd's revision")?;
    if current <= revision {
        progress(format!(
            "moving etcd's revision from {current} past {revision} ({} writes to one key), so that old resourceVersions get 410 Gone",
            grouped((revision - current + 1) as u64)
        ));
        while current <= revision {
            let needed = (revision - current + 1) as u64;
            advanced_by += advance(target, needed, &mut *progress).await?;
            current = target.current_revision().await.context("reading etcd's revision")?;
        }
        target.delete(MARKER_KEY).await.context("deleting the revision marker")?;
    }
    let compacted_at = target.current_revision().await.context("reading etcd's revision")?;
    target.compact(compacted_at).await.with_context(|| format!("compacting etcd at revision {compacted_at}"))?;
    progress(format!("compacted etcd at revision {compacted_at}"));
    Ok(Report { keys: copied, source_revision: revision, advanced_by, compacted_at })
}

/// One page of the source at `revision`. A compacted revision means a running
/// server compacted the source under us, which is the same failure as a moved revision.
async fn source_page<S: Store + ?Sized>(source: &S, revision: Revision, start_after: Option<String>) -> Result<skiff_store::ListResult> {
    source
        .list("", ListOptions { revision: Some(revision), start_after, limit: Some(PAGE) })
        .await
        .with_context(|| format!("reading the SQLite datastore at revision {revision} (is the server still running? stop it first)"))
}

/// Counts the target's keys, stopping at `cap` (`true` when there are more).
async fn count_keys<T: Target + ?Sized>(target: &T, cap: usize) -> Result<(usize, bool)> {
    let mut keys = 0;
    let mut start_after = None;
    loop {
        let page = target.list(ListOptions { start_after: start_after.take(), limit: Some(PAGE), ..Default::default() }).await.context("listing the target prefix")?;
        keys += page.items.len();
        start_after = page.items.last().map(|kv| kv.key.clone());
        if !page.more || start_after.is_none() {
            return Ok((keys, false));
        }
        if keys >= cap {
            return Ok((keys, true));
        }
    }
}

/// Groups keys into transactions of at most [`TXN_OPS`] creates and about
/// [`TXN_BYTES`] of keys and values (a single larger value gets a transaction of its own).
fn transactions(items: impl IntoIterator<Item = (String, Bytes)>) -> Vec<Vec<(String, Bytes)>> {
    let mut txns = Vec::new();
    let mut txn: Vec<(String, Bytes)> = Vec::new();
    let mut bytes = 0;
    for (key, value) in items {
        let size = key.len() + value.len();
        if !txn.is_empty() && (txn.len() == TXN_OPS || bytes + size > TXN_BYTES) {
            txns.push(std::mem::take(&mut txn));
            bytes = 0;
        }
        bytes += size;
        txn.push((key, value));
    }
    if !txn.is_empty() {
        txns.push(txn);
    }
    txns
}

/// Makes `count` plain puts to [`MARKER_KEY`], [`PUT_CONCURRENCY`] at a time,
/// reporting progress about once a second. Returns the number made.
async fn advance<T: Target + ?Sized>(target: &T, count: u64, progress: &mut dyn FnMut(String)) -> Result<u64> {
    let mut puts = futures::stream::iter((0..count).map(|_| target.raw_put(MARKER_KEY, Bytes::from_static(b"1")))).buffer_unordered(PUT_CONCURRENCY);
    let mut done = 0u64;
    let started = Instant::now();
    let mut last = started;
    while let Some(put) = puts.next().await {
        put.context("writing the revision marker")?;
        done += 1;
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            let left = (count - done) as f64 / rate.max(1.0);
            progress(format!("  {}/{} revisions ({:.0}/s, about {:.0} s left)", grouped(done), grouped(count), rate, left.ceil()));
        }
    }
    Ok(done)
}

/// `5321` as `5,321`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    // The leading group holds 1 to 3 digits; every later one exactly 3.
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..head].to_string();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ASCII digits"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use skiff_store::StoreError;

    use super::*;

    /// A target over a second SQLite file. Its creates go one by one, so its revision
    /// grows like the source's; `writes_to_source` plays a server that keeps writing
    /// to the source during the copy.
    struct FakeTarget {
        store: SqliteStore,
        writes_to_source: Option<Arc<SqliteStore>>,
        wrote: AtomicBool,
        max_value_size: usize,
        txn_sizes: std::sync::Mutex<Vec<usize>>,
        puts: tokio::sync::Mutex<()>,
        /// Transactions that succeed before every later one fails as unavailable.
        failing_after: Option<usize>,
    }

    impl FakeTarget {
        fn new(dir: &Path) -> FakeTarget {
            FakeTarget {
                store: SqliteStore::open(&dir.join("target.db")).unwrap(),
                writes_to_source: None,
                wrote: AtomicBool::new(false),
                max_value_size: 1 << 20,
                txn_sizes: Default::default(),
                puts: Default::default(),
                failing_after: None,
            }
        }
    }

    impl Target for FakeTarget {
        async fn list(&self, opts: ListOptions) -> skiff_store::Result<skiff_store::ListResult> {
            self.store.list("", opts).await
        }
        async fn current_revision(&self) -> skiff_store::Result<Revision> {
            self.store.current_revision().await
        }
        async fn delete(&self, key: &str) -> skiff_store::Result<()> {
            self.store.delete(key, None).await.map(drop)
        }
        async fn compact(&self, revision: Revision) -> skiff_store::Result<()> {
            self.store.compact(revision).await
        }
        fn max_value_size(&self) -> usize {
            self.max_value_size
        }
        async fn create_many(&self, items: Vec<(String, Bytes)>, _batch: usize) -> skiff_store::Result<Revision> {
            if let Some(source) = &self.writes_to_source {
                if !self.wrote.swap(true, Ordering::SeqCst) {
                    source.create("/registry/configmaps/default/late", Bytes::from_static(b"{}")).await?;
                }
            }
            {
                let mut sizes = self.txn_sizes.lock().unwrap();
                if self.failing_after.is_some_and(|n| sizes.len() >= n) {
                    return Err(StoreError::Unavailable("etcd lost its quorum".into()));
                }
                sizes.push(items.len());
            }
            let mut rev = 0;
            for (key, value) in items {
                rev = self.store.create(&key, value).await?.mod_revision;
            }
            Ok(rev)
        }
        async fn raw_put(&self, key: &str, value: Bytes) -> skiff_store::Result<Revision> {
            // Read and write as one step, as etcd's put is.
            let _one_at_a_time = self.puts.lock().await;
            match self.store.get(key).await? {
                Some(kv) => Ok(self.store.update(key, value, kv.mod_revision).await?.mod_revision),
                None => Ok(self.store.create(key, value).await?.mod_revision),
            }
        }
        fn endpoints(&self) -> String {
            "127.0.0.1:2379".into()
        }
        fn prefix(&self) -> String {
            "/skiff".into()
        }
    }

    fn v(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// A source with some history: creates, updates and deletes over several prefixes.
    async fn source_with_history(dir: &Path, objects: usize) -> SqliteStore {
        let source = SqliteStore::open(&dir.join("state.db")).unwrap();
        for i in 0..objects {
            let kv = source.create(&format!("/registry/configmaps/default/cm-{i:04}"), v("{\"v\":1}")).await.unwrap();
            source.update(&kv.key, v(&format!("{{\"v\":{i}}}")), kv.mod_revision).await.unwrap();
        }
        source.create("/registry/configmaps/default/gone", v("{}")).await.unwrap();
        source.delete("/registry/configmaps/default/gone", None).await.unwrap();
        source.create("/bootstrap/credentials", v("{\"ca\":\"x\"}")).await.unwrap();
        source
    }

    async fn run_copy<T: Target>(source: &SqliteStore, target: &T) -> (Result<Report>, Vec<String>) {
        let mut lines = Vec::new();
        let result = copy(source, target, &mut |l| lines.push(l)).await;
        (result, lines)
    }

    fn migrate_error(e: &anyhow::Error) -> &MigrateError {
        e.downcast_ref::<MigrateError>().unwrap_or_else(|| panic!("not a MigrateError: {e:#}"))
    }

    #[test]
    fn the_source_is_a_data_directory_or_a_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        std::fs::write(&db, b"").unwrap();
        let d = dir.path().display();
        assert_eq!(sqlite_source(&format!("sqlite:{d}")).unwrap(), db);
        assert_eq!(sqlite_source(&format!("sqlite://{d}")).unwrap(), db);
        assert_eq!(sqlite_source(&format!("sqlite:{}", db.display())).unwrap(), db);
    }

    #[test]
    fn a_missing_source_is_refused_rather_than_created() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let e = sqlite_source(&format!("sqlite:{d}")).unwrap_err().to_string();
        assert!(e.contains("has no state.db"), "{e}");
        let e = sqlite_source(&format!("sqlite:{d}/nowhere")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!dir.path().join("state.db").exists());
        assert!(sqlite_source(&d.to_string()).is_err(), "a bare path without sqlite: is refused");
        assert!(sqlite_source("sqlite:").is_err());
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(5321), "5,321");
        assert_eq!(grouped(100_000), "100,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn transactions_respect_etcds_operation_and_byte_limits() {
        let small = (0..300).map(|i| (format!("/k/{i}"), Bytes::from(vec![b'x'; 10])));
        let sizes: Vec<usize> = transactions(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![128, 128, 44]);

        let big = (0..5).map(|i| (format!("/k/{i}"), Bytes::from(vec![b'x'; 400 * 1024])));
        let sizes: Vec<usize> = transactions(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 1], "about 1 MiB per transaction");

        let huge = vec![("/k/huge".to_string(), Bytes::from(vec![b'x'; 1400 * 1024])), ("/k/small".to_string(), Bytes::from_static(b"x"))];
        let sizes: Vec<usize> = transactions(huge).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1], "a value over the byte budget goes alone");
        assert!(transactions(Vec::new()).is_empty());
    }

    #[tokio::test]
    async fn every_live_key_is_copied_and_old_revisions_end_up_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let source = source_with_history(dir.path(), 300).await;
        let target = FakeTarget::new(dir.path());
        let (report, lines) = run_copy(&source, &target).await;
        let report = report.unwrap();

        let want = source.list("", ListOptions::default()).await.unwrap();
        let got = target.store.list("", ListOptions::default()).await.unwrap();
        assert_eq!(report.keys, 301);
        assert_eq!(got.items.len(), 301, "300 configmaps and the credentials; the deleted key and the marker are not there");
        for (w, g) in want.items.iter().zip(&got.items) {
            assert_eq!((&w.key, &w.value), (&g.key, &g.value));
        }
        assert_eq!(report.source_revision, want.revision);
        assert!(report.compacted_at > report.source_revision);
        assert!(report.advanced_by > 0, "the target's revision had to be moved forward");
        assert_eq!(target.store.compacted_revision().await.unwrap(), report.compacted_at);
        // The newest resourceVersion any client could hold is now compacted.
        let old = target.store.list("", ListOptions { revision: Some(report.source_revision), ..Default::default() }).await;
        assert!(matches!(old, Err(StoreError::Compacted { .. })), "{old:?}");
        assert!(lines.iter().any(|l| l == "copied 301/301 keys"), "{lines:?}");
        assert!(target.txn_sizes.lock().unwrap().iter().all(|n| *n <= TXN_OPS));
    }

    #[tokio::test]
    async fn a_target_already_past_the_source_revision_is_only_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let source = source_with_history(dir.path(), 3).await;
        let target = FakeTarget::new(dir.path());
        // History under another prefix: writes the target saw before, now deleted.
        for i in 0..20 {
            target.store.create(&format!("/other/{i}"), v("x")).await.unwrap();
            target.store.delete(&format!("/other/{i}"), None).await.unwrap();
        }
        let (report, _) = run_copy(&source, &target).await;
        let report = report.unwrap();
        assert_eq!(report.advanced_by, 0);
        assert_eq!(report.keys, 4);
        assert_eq!(report.compacted_at, target.store.current_revision().await.unwrap());
    }

    #[tokio::test]
    async fn a_non_empty_target_is_refused_with_its_key_count() {
        let dir = tempfile::tempdir().unwrap();
        let source = source_with_history(dir.path(), 3).await;
        let target = FakeTarget::new(dir.path());
        for i in 0..1500 {
            target.store.create(&format!("/registry/x/{i}"), v("x")).await.unwrap();
        }
        let before = target.store.current_revision().await.unwrap();
        let (report, _) = run_copy(&source, &target).await;
        let e = report.unwrap_err();
        match migrate_error(&e) {
            MigrateError::TargetNotEmpty { prefix, keys, more, .. } => assert_eq!((prefix.as_str(), *keys, *more), ("/skiff", 1500, false)),
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains("1,500 keys under the prefix /skiff") && text.contains("etcdctl"), "{text}");
        assert_eq!(target.store.current_revision().await.unwrap(), before, "nothing was written");
    }

    #[tokio::test]
    async fn a_source_that_moves_during_the_copy_means_the_server_is_still_running() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(source_with_history(dir.path(), 10).await);
        let mut target = FakeTarget::new(dir.path());
        target.writes_to_source = Some(source.clone());
        let (report, _) = run_copy(&source, &target).await;
        let e = report.unwrap_err();
        assert!(matches!(migrate_error(&e), MigrateError::SourceChanged { .. }), "{e:#}");
        let text = e.to_string();
        assert!(text.starts_with("the server is still running; stop it and run migrate again"), "{text}");
        assert!(text.contains("partial copy under /skiff"), "{text}");
        assert_eq!(target.store.compacted_revision().await.unwrap(), 0, "nothing compacted after a failed copy");
    }

    #[tokio::test]
    async fn a_value_larger_than_the_target_accepts_stops_the_migration_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let source = source_with_history(dir.path(), 3).await;
        source.create("/registry/configmaps/default/big", Bytes::from(vec![b'x'; 2000])).await.unwrap();
        let mut target = FakeTarget::new(dir.path());
        target.max_value_size = 1000;
        let (report, _) = run_copy(&source, &target).await;
        let e = report.unwrap_err();
        assert!(matches!(migrate_error(&e), MigrateError::TooLarge { key, size: 2000, limit: 1000 } if key == "/registry/configmaps/default/big"), "{e:#}");
        assert_eq!(target.store.current_revision().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_failed_write_says_a_partial_copy_is_left_and_how_to_clear_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = source_with_history(dir.path(), 2000).await;
        let mut target = FakeTarget::new(dir.path());
        target.failing_after = Some(10);
        let (report, _) = run_copy(&source, &target).await;
        let text = format!("{:#}", report.unwrap_err());
        assert!(text.contains("after 1,000 of 2,001 keys"), "{text}");
        assert!(text.contains("partial copy under /skiff") && text.contains("del --prefix /skiff/"), "{text}");
        assert!(text.contains("etcd lost its quorum"), "the cause is kept: {text}");
        assert_eq!(target.store.compacted_revision().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_empty_source_still_leaves_a_compacted_target() {
        let dir = tempfile::tempdir().unwrap();
        let source = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let target = FakeTarget::new(dir.path());
        let (report, _) = run_copy(&source, &target).await;
        let report = report.unwrap();
        assert_eq!(report.keys, 0);
        assert!(report.compacted_at >= 1);
        assert!(target.store.list("", ListOptions::default()).await.unwrap().items.is_empty());
    }
}
