//! `skiff bench api`: API server throughput and latency, each figure next to a
//! baseline measured in the same run (machines here are noisy, so only ratios travel).
//!
//! - creates/s and mutating-call p50/p99 under concurrent writers, against raw
//!   `Store::create` on a separate SQLite file (the datastore's own limit);
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
use skiff_store::{ListOptions, SqliteStore, Store};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// API server: creates/s, mutation latency, LIST at 10k/100k pods, watch fan-out delay.
    Api(ApiArgs),
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
    /// Keep the data directory here instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Api(args) => api(args).await,
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

async fn api(args: ApiArgs) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().join("server"));
    println!("skiff bench api: {} writes by {} writers, LIST at {:?} pods, {} watchers", args.writes, args.writers, args.list_sizes, args.watchers);

    // --- Baseline: raw datastore creates (no HTTP, no API machinery). ---
    let raw: Arc<dyn Store> = Arc::new(SqliteStore::open(&tmp.path().join("baseline.db"))?);
    let value = Bytes::from(serde_json::to_vec(&pod("bench", "x"))?);
    let (raw_lat, raw_wall) = {
        let raw = raw.clone();
        concurrent(args.writes, args.writers, move |i| {
            let raw = raw.clone();
            let value = value.clone();
            async move {
                raw.create(&format!("/registry/core/pods/bench/raw-{i}"), value).await?;
                Ok(())
            }
        })
        .await?
    };
    let raw_rate = args.writes as f64 / raw_wall.as_secs_f64();
    println!("baseline  raw store creates: {:>9.0}/s   p50 {}  p99 {}", raw_rate, ms(pct(&raw_lat, 0.5)), ms(pct(&raw_lat, 0.99)));

    // --- The server, on its own SQLite file. ---
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&{
        std::fs::create_dir_all(&dir)?;
        dir.join("state.db")
    })?);
    let server = Server::start(
        Config::new(dir.clone(), "127.0.0.1:0".parse()?, Settings::default()),
        store.clone(),
    )
    .await?;
    let client = Arc::new(Client::new(&server, &dir)?);
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
    let rate = args.writes as f64 / wall.as_secs_f64();
    println!(
        "api       creates:            {:>9.0}/s   p50 {}  p99 {}   ratio to raw store {:.2}x",
        rate,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        rate / raw_rate
    );

    let (plat, pwall) = {
        let c = client.clone();
        let n = args.writes;
        concurrent(n, args.writers, move |i| {
            let c = c.clone();
            async move {
                let s = c.patch(&format!("/api/v1/namespaces/bench/pods/p-{i}"), &json!({"metadata": {"labels": {"patched": "yes"}}})).await?;
                anyhow::ensure!(s.as_u16() == 200, "patch returned {s}");
                Ok(())
            }
        })
        .await?
    };
    println!(
        "api       patches (merge):    {:>9.0}/s   p50 {}  p99 {}",
        args.writes as f64 / pwall.as_secs_f64(),
        ms(pct(&plat, 0.5)),
        ms(pct(&plat, 0.99))
    );

    // --- Steady load: creates, patches and deletes at a fixed offered rate. ---
    let total = (args.steady_rate * args.steady_seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / args.steady_rate.max(1) as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = started + interval * i as u32;
        tokio::time::sleep_until(tokio::time::Instant::from_std(scheduled)).await;
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("steady-{}", i / 3);
            let s = match i % 3 {
                0 => c.post("/api/v1/namespaces/bench/pods", &pod("bench", &name)).await?,
                1 => c.patch(&format!("/api/v1/namespaces/bench/pods/{name}"), &json!({"metadata": {"labels": {"step": "patched"}}})).await?,
                _ => c.delete(&format!("/api/v1/namespaces/bench/pods/{name}")).await?,
            };
            anyhow::ensure!(s.is_success() || s.as_u16() == 404, "steady op {i} returned {s}");
            anyhow::Ok(scheduled.elapsed())
        }));
    }
    let mut steady = Vec::with_capacity(total);
    for t in tasks {
        steady.push(t.await??);
    }
    steady.sort();
    println!(
        "api       steady mutations at {}/s: p50 {}  p99 {}   (aim: p99 < 20 ms)   ratio to raw store p99 {:.2}x",
        args.steady_rate,
        ms(pct(&steady, 0.5)),
        ms(pct(&steady, 0.99)),
        pct(&steady, 0.99).as_secs_f64() / pct(&raw_lat, 0.99).as_secs_f64().max(1e-9)
    );

    // --- LIST at each size: pods are seeded straight into the server's store. ---
    let mut have = args.writes;
    for &size in &args.list_sizes {
        if size > have {
            let value = Bytes::from(serde_json::to_vec(&pod("bench", "seed"))?);
            let started = Instant::now();
            let seeded = {
                let store = store.clone();
                let from = have;
                concurrent(size - have, 16, move |i| {
                    let store = store.clone();
                    let mut v: serde_json::Value = serde_json::from_slice(&value).expect("json");
                    let name = format!("s-{:07}", from + i);
                    v["metadata"]["name"] = json!(name);
                    v["metadata"]["uid"] = json!(format!("uid-{name}"));
                    v["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                    async move {
                        store.create(&format!("/registry/core/pods/bench/{name}"), Bytes::from(serde_json::to_vec(&v)?)).await?;
                        Ok(())
                    }
                })
                .await?
            };
            drop(seeded);
            have = size;
            eprintln!("  seeded {} pods in {:.1}s", size, started.elapsed().as_secs_f64());
        }
        // Let the cache catch up, then measure.
        let _ = client.get_bytes("/api/v1/namespaces/bench/pods?limit=1").await?;
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
            let l = store.list("/registry/core/pods/bench/", ListOptions::default()).await?;
            raw_times.push(t.elapsed());
            anyhow::ensure!(l.items.len() >= size, "store has {} pods, expected {size}", l.items.len());
        }
        raw_times.sort();
        println!(
            "api       LIST {:>6} pods:    median {}  ({:.1} MB)   raw store range read median {}   ratio {:.2}x",
            size,
            ms(pct(&api_times, 0.5)),
            bytes as f64 / 1e6,
            ms(pct(&raw_times, 0.5)),
            pct(&api_times, 0.5).as_secs_f64() / pct(&raw_times, 0.5).as_secs_f64().max(1e-9)
        );
    }

    // --- Watch fan-out. ---
    client.post("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watch-bench"}})).await?;
    let one = watch_delay(&client, 1, 20, "w1").await?;
    let many = watch_delay(&client, args.watchers, 20, "wn").await?;
    println!(
        "api       watch delay, 1 watcher:       p50 {}  p99 {}",
        ms(pct(&one, 0.5)),
        ms(pct(&one, 0.99))
    );
    println!(
        "api       watch delay, {} watchers:  p50 {}  p99 {}   ratio to 1 watcher (p99) {:.2}x",
        args.watchers,
        ms(pct(&many, 0.5)),
        ms(pct(&many, 0.99)),
        pct(&many, 0.99).as_secs_f64() / pct(&one, 0.99).as_secs_f64().max(1e-9)
    );
    drop(server);
    Ok(())
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

