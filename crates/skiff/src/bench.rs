//! `skiff bench api`: API server throughput and latency, each figure next to a
//! baseline measured in the same run (machines here are noisy, so only ratios travel).
//!
//! Each backend (`--backends sqlite,etcd`) gets its own server and datastore, and a
//! block of figures; a last block gives the etcd/SQLite ratios of the headline ones.
//!
//! - creates/s and patches/s under concurrent writers, against the backend's cheapest
//!   write by as many writers: raw `Store::create` on a separate SQLite file, or a
//!   plain etcd put under a separate prefix (the datastore's own limit);
//! - mutating-call p50/p99 at a steady offered rate (open loop), against the same
//!   cheapest write offered at the same rate;
//! - LIST latency at 10k and 100k pods from the watch cache, against a raw store range
//!   read of the same keys;
//! - write-to-watch-event delay with 1,000 watchers, against one watcher.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::json;
use skiff_apiserver::{Config, Server, Settings};
use skiff_store::{EtcdStore, ListOptions, LocalEtcd, SqliteStore, Store};

#[path = "bench_scheduler.rs"]
mod bench_scheduler;
#[path = "bench_pods.rs"]
mod bench_pods;
#[path = "bench_net.rs"]
mod bench_net;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// API server: creates/s, mutation latency, LIST at 10k/100k pods, watch fan-out delay.
    Api(ApiArgs),
    /// Scheduler: pods bound per second and create-to-bound latency on many nodes,
    /// against bindings to round-robin nodes with no decisions.
    Scheduler(bench_scheduler::SchedulerArgs),
    /// Pods on a real node: create-to-Running/Ready latency against `ctr run`, and
    /// memory (a private containerd, server and kubelet in this process).
    Pods(bench_pods::PodsArgs),
    /// Service networking: ClusterIP against pod IP, the Ingress gateway against
    /// haproxy and nginx, proxy rule sync and endpoint-change latency (in network
    /// namespaces of its own; needs root).
    Net(bench_net::NetArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Pods created through the API for the write figures.
    #[arg(long, default_value_t = 5000)]
    pub writes: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 32)]
    pub writers: usize,
    /// LIST sizes to measure (pods in one namespace).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub list_sizes: Vec<usize>,
    /// Offered rate (requests/s) of the steady mixed-mutation load whose p99 is the
    /// headline latency figure (open loop: latency counts from the scheduled send time).
    #[arg(long, default_value_t = 500)]
    pub steady_rate: u64,
    /// Seconds the steady load runs.
    #[arg(long, default_value_t = 6)]
    pub steady_seconds: u64,
    /// Concurrent watchers for the fan-out figure.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Datastores to measure, one after the other, each under its own server.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,etcd")]
    pub backends: Vec<Backend>,
    /// The etcd cluster for the etcd run (`etcd://host:2379,…[/prefix]`; the run
    /// writes under a fresh sub-prefix). Without it, a one-member etcd is started on
    /// loopback in the data directory (needs the etcd binary).
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
    #[command(flatten)]
    pub etcd_tls: crate::server::EtcdTlsArgs,
    /// Keep the data directories here (one per backend) instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Api(args) => api(args).await,
        BenchCommand::Scheduler(args) => bench_scheduler::run(args).await,
        BenchCommand::Pods(args) => bench_pods::run(args).await,
        BenchCommand::Net(args) => bench_net::run(args).await,
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn pod(ns: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/bench:1.0", "ports": [{"containerPort": 8080}],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    fn new(server: &Server, data_dir: &Path) -> Result<Client> {
        let ca = std::fs::read(data_dir.join("pki/ca.crt"))?;
        let token = std::fs::read_to_string(data_dir.join("pki/admin.token"))?.trim().to_string();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
            .tls_built_in_root_certs(false)
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Client { http, base: format!("https://{}", server.addr), token })
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::StatusCode> {
        let r = self.http.post(format!("{}{}", self.base, path)).bearer_auth(&self.token).json(body).send().await?;
        let s = r.status();
        let _ = r.bytes().await?;
        Ok(s)
    }

    async fn patch(&self, path: &str, body: &serde_json::Value) -> Result<reqwest::StatusCode> {
        let r = self
            .http
            .patch(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/merge-patch+json")
            .body(serde_json::to_vec(body)?)
            .send()
            .await?;
        let s = r.status();
        let _ = r.bytes().await?;
        Ok(s)
    }

    async fn delete(&self, path: &str) -> Result<reqwest::StatusCode> {
        let r = self.http.delete(format!("{}{}", self.base, path)).bearer_auth(&self.token).send().await?;
        let s = r.status();
        let _ = r.bytes().await?;
        Ok(s)
    }

    async fn get_bytes(&self, path: &str) -> Result<Bytes> {
        let r = self.http.get(format!("{}{}", self.base, path)).bearer_auth(&self.token).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.bytes().await?)
    }
}

/// Runs `total` operations over `writers` tasks, returning each latency and the wall time.
async fn concurrent<F, Fut>(total: usize, writers: usize, op: F) -> Result<(Vec<Duration>, Duration)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while i < total {
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
                i += writers;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed();
    all.sort();
    Ok((all, wall))
}

/// Starts `rate * seconds` operations at fixed intervals, whatever earlier ones are
/// doing (open loop), and returns each one's latency counted from its scheduled
/// start, so that a slow system cannot hide behind sending fewer requests.
async fn open_loop<F, Fut>(rate: u64, seconds: u64, op: F) -> Result<Vec<Duration>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = started + interval * i as u32;
        tokio::time::sleep_until(tokio::time::Instant::from_std(scheduled)).await;
        let op = op(i);
        tasks.push(tokio::spawn(async move {
            op.await?;
            anyhow::Ok(scheduled.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(total);
    for t in tasks {
        lat.push(t.await??);
    }
    lat.sort();
    Ok(lat)
}

/// A datastore the benchmark runs on.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Etcd,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Etcd => "etcd",
        }
    }
}

/// The server's datastore, kept concrete so that fixtures can be seeded the way
/// each backend takes best.
enum ServerStore {
    Sqlite(Arc<SqliteStore>),
    Etcd(Arc<EtcdStore>),
}

impl ServerStore {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            ServerStore::Sqlite(s) => s.clone(),
            ServerStore::Etcd(s) => s.clone(),
        }
    }

    /// Writes fixture objects straight into the store (no API), one create each.
    /// Not etcd transactions of many creates: those give many keys one revision,
    /// and a watch cache applies one event per revision.
    async fn seed(&self, items: Vec<(String, Bytes)>) -> Result<()> {
        let store = self.store();
        let writers = match self {
            // Group commit batches concurrent creates; more writers add nothing.
            ServerStore::Sqlite(_) => 16,
            // Each etcd create is a round trip through raft: overlap more of them.
            ServerStore::Etcd(_) => 64,
        };
        let items = Arc::new(items);
        concurrent(items.len(), writers, move |i| {
            let store = store.clone();
            let items = items.clone();
            async move {
                let (key, value) = &items[i];
                store.create(key, value.clone()).await?;
                Ok(())
            }
        })
        .await?;
        Ok(())
    }
}

/// The write the baseline repeats: the cheapest one the backend offers.
enum RawWriter {
    /// `Store::create` on a separate SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// A plain etcd put under a separate prefix (no transaction, no comparison).
    Etcd(Arc<EtcdStore>),
}

impl RawWriter {
    fn describe(&self) -> &'static str {
        match self {
            RawWriter::Sqlite(_) => "raw SQLite creates",
            RawWriter::Etcd(_) => "raw etcd puts",
        }
    }

    async fn write(&self, key: &str, value: Bytes) -> Result<()> {
        match self {
            RawWriter::Sqlite(s) => drop(s.create(key, value).await?),
            RawWriter::Etcd(s) => drop(s.raw_put(key, value).await?),
        }
        Ok(())
    }
}

/// One backend, ready to measure: the server's store, the baseline's, and where they live.
struct Datastores {
    server: ServerStore,
    raw: RawWriter,
    /// Printed in the block's title.
    location: String,
}

/// Latency summary of many calls and their rate.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

impl Rate {
    fn of(sorted: &[Duration], wall: Duration) -> Rate {
        Rate { per_sec: sorted.len() as f64 / wall.as_secs_f64().max(1e-9), p50: pct(sorted, 0.5), p99: pct(sorted, 0.99) }
    }
}

#[derive(Debug, Clone, Copy)]
struct ListFigure {
    size: usize,
    api: Duration,
    raw: Duration,
    bytes: usize,
}

/// Everything one backend's run measured.
#[derive(Debug, Clone)]
struct Figures {
    backend: Backend,
    baseline: Rate,
    creates: Rate,
    patches: Rate,
    /// Raw datastore writes at the steady rate: (p50, p99).
    raw_steady: (Duration, Duration),
    steady_p50: Duration,
    steady_p99: Duration,
    lists: Vec<ListFigure>,
    watch_one: (Duration, Duration),
    watch_many: (Duration, Duration),
}

async fn api(args: ApiArgs) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = args.data_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let backends: Vec<Backend> = args.backends.iter().fold(Vec::new(), |mut v, b| {
        if !v.contains(b) {
            v.push(*b);
        }
        v
    });
    anyhow::ensure!(!backends.is_empty(), "--backends names no backend");
    println!(
        "skiff bench api: {} writes by {} writers, LIST at {:?} pods, {} watchers; backends {}",
        args.writes,
        args.writers,
        args.list_sizes,
        args.watchers,
        backends.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
    );

    let mut all = Vec::new();
    for backend in backends {
        let dir = root.join(backend.name());
        std::fs::create_dir_all(&dir)?;
        // The local etcd (when one is started) lives as long as its run.
        let mut local_etcd = None;
        let stores = match backend {
            Backend::Sqlite => Datastores {
                server: ServerStore::Sqlite(Arc::new(SqliteStore::open(&dir.join("state.db"))?)),
                raw: RawWriter::Sqlite(Arc::new(SqliteStore::open(&dir.join("baseline.db"))?)),
                location: format!("state.db in {}", dir.display()),
            },
            Backend::Etcd => {
                let (url, location) = match &args.etcd {
                    Some(url) => {
                        // A fresh prefix per run, so a shared etcd's data is never touched.
                        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
                        let base = args.etcd_tls.etcd_config(url)?;
                        let prefix = format!("{}/bench-{stamp}", base.prefix);
                        let mut base = base;
                        base.prefix = prefix.clone();
                        (base.url(), format!("{url}, under {prefix} (remove afterwards: etcdctl del --prefix {prefix}/)"))
                    }
                    None => {
                        let etcd = LocalEtcd::start_in(&dir.join("members"), 1).map_err(|e| anyhow::anyhow!("starting a local etcd: {e}"))?;
                        let url = format!("{}/bench", etcd.url());
                        let location = format!("no --etcd given: started a one-member etcd on loopback, data in {}", dir.join("members").display());
                        local_etcd = Some(etcd);
                        (url, location)
                    }
                };
                // The server and the baseline each under their own sub-prefix.
                let mut server_config = args.etcd_tls.etcd_config(&url)?;
                let mut raw_config = server_config.clone();
                raw_config.prefix = format!("{}/baseline", server_config.prefix);
                server_config.prefix = format!("{}/server", server_config.prefix);
                Datastores {
                    server: ServerStore::Etcd(Arc::new(EtcdStore::connect(server_config).await?)),
                    raw: RawWriter::Etcd(Arc::new(EtcdStore::connect(raw_config).await?)),
                    location,
                }
            }
        };
        println!();
        println!("=== {} ({}) ===", backend.name(), stores.location);
        let figures = run_backend(&args, backend, &dir, stores).await?;
        drop(local_etcd);
        all.push(figures);
    }
    if let (Some(sqlite), Some(etcd)) = (all.iter().find(|f| f.backend == Backend::Sqlite), all.iter().find(|f| f.backend == Backend::Etcd)) {
        compare(sqlite, etcd, args.watchers);
    }
    Ok(())
}

/// Prints the etcd/SQLite ratios of the headline figures.
fn compare(sqlite: &Figures, etcd: &Figures, watchers: usize) {
    println!();
    println!("=== etcd / sqlite ===");
    println!("{:<40} {:>12} {:>12} {:>12}", "figure", "sqlite", "etcd", "etcd/sqlite");
    let row = |name: &str, s: String, e: String, ratio: f64| println!("{name:<40} {s:>12} {e:>12} {ratio:>11.2}x");
    row("baseline writes/s", format!("{:.0}/s", sqlite.baseline.per_sec), format!("{:.0}/s", etcd.baseline.per_sec), etcd.baseline.per_sec / sqlite.baseline.per_sec);
    row("api creates/s", format!("{:.0}/s", sqlite.creates.per_sec), format!("{:.0}/s", etcd.creates.per_sec), etcd.creates.per_sec / sqlite.creates.per_sec);
    row(
        "api creates / own baseline",
        format!("{:.2}x", sqlite.creates.per_sec / sqlite.baseline.per_sec),
        format!("{:.2}x", etcd.creates.per_sec / etcd.baseline.per_sec),
        (etcd.creates.per_sec / etcd.baseline.per_sec) / (sqlite.creates.per_sec / sqlite.baseline.per_sec),
    );
    row("api merge patches/s", format!("{:.0}/s", sqlite.patches.per_sec), format!("{:.0}/s", etcd.patches.per_sec), etcd.patches.per_sec / sqlite.patches.per_sec);
    let lat = |name: &str, s: Duration, e: Duration| row(name, ms(s), ms(e), e.as_secs_f64() / s.as_secs_f64().max(1e-9));
    lat("raw writes p99 at the steady rate", sqlite.raw_steady.1, etcd.raw_steady.1);
    lat("steady mutations p50", sqlite.steady_p50, etcd.steady_p50);
    lat("steady mutations p99", sqlite.steady_p99, etcd.steady_p99);
    for s in &sqlite.lists {
        if let Some(e) = etcd.lists.iter().find(|e| e.size == s.size) {
            lat(&format!("LIST {} pods ({:.1} MB, median)", s.size, s.bytes as f64 / 1e6), s.api, e.api);
            lat(&format!("  raw range read of {} pods", s.size), s.raw, e.raw);
        }
    }
    lat("watch delay p99, 1 watcher", sqlite.watch_one.1, etcd.watch_one.1);
    lat(&format!("watch delay p99, {watchers} watchers"), sqlite.watch_many.1, etcd.watch_many.1);
}

/// The whole API benchmark on one backend; prints its block and returns the figures.
async fn run_backend(args: &ApiArgs, backend: Backend, dir: &Path, stores: Datastores) -> Result<Figures> {
    // --- Baseline: the backend's cheapest write (no HTTP, no API machinery). ---
    let raw = Arc::new(stores.raw);
    let value = Bytes::from(serde_json::to_vec(&pod("bench", "x"))?);
    let (raw_lat, raw_wall) = {
        let raw = raw.clone();
        concurrent(args.writes, args.writers, move |i| {
            let raw = raw.clone();
            let value = value.clone();
            async move { raw.write(&format!("/registry/core/pods/bench/raw-{i}"), value).await }
        })
        .await?
    };
    let baseline = Rate::of(&raw_lat, raw_wall);
    println!(
        "baseline  {:<26}{:>9.0}/s   p50 {}  p99 {}",
        format!("{}:", raw.describe()),
        baseline.per_sec,
        ms(baseline.p50),
        ms(baseline.p99)
    );
    // The same writes at the steady figure's offered rate: the datastore's own tail
    // latency when it is not saturated, the floor under the API's steady p99.
    let raw_steady = {
        let raw = raw.clone();
        let value = Bytes::from(serde_json::to_vec(&pod("bench", "x"))?);
        let lat = open_loop(args.steady_rate, args.steady_seconds, move |i| {
            let raw = raw.clone();
            let value = value.clone();
            async move { raw.write(&format!("/registry/core/pods/bench/raw-steady-{i}"), value).await }
        })
        .await?;
        (pct(&lat, 0.5), pct(&lat, 0.99))
    };
    println!(
        "baseline  {} at {}/s (open loop): p50 {}  p99 {}",
        raw.describe(),
        args.steady_rate,
        ms(raw_steady.0),
        ms(raw_steady.1)
    );
    drop(raw);

    // --- The server, on its own datastore. ---
    let store = stores.server.store();
    let server = Server::start(Config::new(dir.to_path_buf(), "127.0.0.1:0".parse()?, Settings::default()), store.clone()).await?;
    let client = Arc::new(Client::new(&server, dir)?);
    client.post("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})).await?;

    let (lat, wall) = {
        let c = client.clone();
        concurrent(args.writes, args.writers, move |i| {
            let c = c.clone();
            async move {
                let s = c.post("/api/v1/namespaces/bench/pods", &pod("bench", &format!("p-{i}"))).await?;
                anyhow::ensure!(s.as_u16() == 201, "create returned {s}");
                Ok(())
            }
        })
        .await?
    };
    let creates = Rate::of(&lat, wall);
    println!(
        "api       creates:                  {:>9.0}/s   p50 {}  p99 {}   ratio to baseline {:.2}x",
        creates.per_sec,
        ms(creates.p50),
        ms(creates.p99),
        creates.per_sec / baseline.per_sec
    );

    let (plat, pwall) = {
        let c = client.clone();
        concurrent(args.writes, args.writers, move |i| {
            let c = c.clone();
            async move {
                let s = c.patch(&format!("/api/v1/namespaces/bench/pods/p-{i}"), &json!({"metadata": {"labels": {"patched": "yes"}}})).await?;
                anyhow::ensure!(s.as_u16() == 200, "patch returned {s}");
                Ok(())
            }
        })
        .await?
    };
    let patches = Rate::of(&plat, pwall);
    println!("api       patches (merge):          {:>9.0}/s   p50 {}  p99 {}", patches.per_sec, ms(patches.p50), ms(patches.p99));

    // --- Steady load: creates, patches and deletes at a fixed offered rate. ---
    let steady = {
        let c = client.clone();
        open_loop(args.steady_rate, args.steady_seconds, move |i| {
            let c = c.clone();
            async move {
                let name = format!("steady-{}", i / 3);
                let s = match i % 3 {
                    0 => c.post("/api/v1/namespaces/bench/pods", &pod("bench", &name)).await?,
                    1 => c.patch(&format!("/api/v1/namespaces/bench/pods/{name}"), &json!({"metadata": {"labels": {"step": "patched"}}})).await?,
                    _ => c.delete(&format!("/api/v1/namespaces/bench/pods/{name}")).await?,
                };
                anyhow::ensure!(s.is_success() || s.as_u16() == 404, "steady op {i} returned {s}");
                Ok(())
            }
        })
        .await?
    };
    let (steady_p50, steady_p99) = (pct(&steady, 0.5), pct(&steady, 0.99));
    println!(
        "api       steady mutations at {}/s: p50 {}  p99 {}   (aim: p99 < 20 ms)   ratio to raw writes at that rate (p99) {:.2}x",
        args.steady_rate,
        ms(steady_p50),
        ms(steady_p99),
        steady_p99.as_secs_f64() / raw_steady.1.as_secs_f64().max(1e-9)
    );

    // --- LIST at each size: pods are seeded straight into the server's store. ---
    let mut have = args.writes;
    let mut lists = Vec::new();
    for &size in &args.list_sizes {
        if size > have {
            let template: serde_json::Value = pod("bench", "seed");
            let items = (have..size)
                .map(|i| {
                    let mut v = template.clone();
                    let name = format!("s-{i:07}");
                    v["metadata"]["name"] = json!(name);
                    v["metadata"]["uid"] = json!(format!("uid-{name}"));
                    v["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                    Ok((format!("/registry/core/pods/bench/{name}"), Bytes::from(serde_json::to_vec(&v)?)))
                })
                .collect::<Result<Vec<_>>>()?;
            let started = Instant::now();
            stores.server.seed(items).await?;
            have = size;
            // Let the cache catch up, then measure.
            wait_for_pod(&client, &format!("s-{:07}", size - 1)).await?;
            eprintln!("  seeded {} pods in {:.1}s", size, started.elapsed().as_secs_f64());
        }
        let mut api_times = Vec::new();
        let mut bytes = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let b = client.get_bytes("/api/v1/namespaces/bench/pods").await?;
            api_times.push(t.elapsed());
            bytes = b.len();
        }
        api_times.sort();
        let mut raw_times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let n = raw_range_read(store.as_ref(), "/registry/core/pods/bench/").await?;
            raw_times.push(t.elapsed());
            anyhow::ensure!(n >= size, "store has {n} pods, expected {size}");
        }
        raw_times.sort();
        let figure = ListFigure { size, api: pct(&api_times, 0.5), raw: pct(&raw_times, 0.5), bytes };
        println!(
            "api       LIST {:>6} pods:          median {}  ({:.1} MB)   raw store range read median {}   ratio {:.2}x",
            size,
            ms(figure.api),
            bytes as f64 / 1e6,
            ms(figure.raw),
            figure.api.as_secs_f64() / figure.raw.as_secs_f64().max(1e-9)
        );
        lists.push(figure);
    }

    // --- Watch fan-out. ---
    client.post("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watch-bench"}})).await?;
    let one = watch_delay(&client, 1, 20, "w1").await?;
    let many = watch_delay(&client, args.watchers, 20, "wn").await?;
    let watch_one = (pct(&one, 0.5), pct(&one, 0.99));
    let watch_many = (pct(&many, 0.5), pct(&many, 0.99));
    println!("api       watch delay, 1 watcher:       p50 {}  p99 {}", ms(watch_one.0), ms(watch_one.1));
    println!(
        "api       watch delay, {} watchers:  p50 {}  p99 {}   ratio to 1 watcher (p99) {:.2}x",
        args.watchers,
        ms(watch_many.0),
        ms(watch_many.1),
        watch_many.1.as_secs_f64() / watch_one.1.as_secs_f64().max(1e-9)
    );
    drop(server);
    Ok(Figures { backend, baseline, creates, patches, raw_steady, steady_p50, steady_p99, lists, watch_one, watch_many })
}

/// Waits until the API's LIST (served by the watch cache) shows the pod `name`, the
/// last one seeded, so that the seeded objects are measured, not the cache catching up.
async fn wait_for_pod(client: &Client, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let page = client.get_bytes(&format!("/api/v1/namespaces/bench/pods?fieldSelector=metadata.name%3D{name}")).await?;
        let v: serde_json::Value = serde_json::from_slice(&page)?;
        if v["items"].as_array().is_some_and(|items| !items.is_empty()) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the watch cache has not shown pod {name} after 2 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every key under `prefix` straight from the store; returns how many.
async fn raw_range_read(store: &dyn Store, prefix: &str) -> Result<usize> {
    Ok(store.list(prefix, ListOptions::default()).await?.items.len())
}

/// Opens `watchers` watches on a namespace, writes `events` ConfigMaps one at a time,
/// and returns, for every (watcher, event), the delay from the write's acknowledgement
/// (minus nothing: the clock starts before the write is sent) to the event's arrival.
async fn watch_delay(client: &Arc<Client>, watchers: usize, events: usize, prefix: &str) -> Result<Vec<Duration>> {
    let list = client.get_bytes("/api/v1/namespaces/watch-bench/configmaps").await?;
    let rv = serde_json::from_slice::<serde_json::Value>(&list)?["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let c = client.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        let prefix = prefix.to_string();
        handles.push(tokio::spawn(async move {
            let url = format!("{}/api/v1/namespaces/watch-bench/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=120", c.base);
            let resp = c.http.get(url).bearer_auth(&c.token).send().await?;
            let mut stream = resp.bytes_stream();
            let mut buf = Vec::new();
            let mut seen = 0;
            while let Some(chunk) = stream.next().await {
                buf.extend_from_slice(&chunk?);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let v: serde_json::Value = serde_json::from_slice(&line)?;
                    if let Some(name) = v["object"]["metadata"]["name"].as_str() {
                        if name.starts_with(&prefix) {
                            let _ = tx.send((name.to_string(), Instant::now()));
                            seen += 1;
                            if seen == events {
                                return anyhow::Ok(());
                            }
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    drop(tx);
    // Give every watch time to be established.
    tokio::time::sleep(Duration::from_millis(500 + watchers as u64)).await;
    let mut sent = std::collections::HashMap::new();
    for i in 0..events {
        let name = format!("{prefix}-{i}");
        let t = Instant::now();
        let s = client
            .post("/api/v1/namespaces/watch-bench/configmaps", &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}))
            .await?;
        anyhow::ensure!(s.as_u16() == 201, "configmap create returned {s}");
        sent.insert(name, t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delays = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while delays.len() < watchers * events && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((name, at))) => {
                if let Some(t) = sent.get(&name) {
                    delays.push(at.saturating_duration_since(*t));
                }
            }
            _ => break,
        }
    }
    for h in handles {
        h.abort();
    }
    anyhow::ensure!(delays.len() == watchers * events, "only {} of {} watch events arrived", delays.len(), watchers * events);
    delays.sort();
    Ok(delays)
}

