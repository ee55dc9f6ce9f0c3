//! `skiff bench scheduler`: pods scheduled per second and the scheduling latency,
//! next to a baseline measured in the same run.
//!
//! Each phase gets its own in-process server on a fresh SQLite file, the same
//! simulated-looking nodes (created through the API, with allocatable in their
//! status; nothing runs their pods), and the same load: `--pods` pods created by
//! `--creators` concurrent clients. A watch on the pods times, per pod, the create
//! request to the binding it observes.
//!
//! - **baseline**: no scheduler; each created pod is bound to a node picked round
//!   robin, by `--bind-parallelism` concurrent binding calls. Creates plus bindings
//!   with no decision at all: the API server's own limit for this load.
//! - **scheduler**: Skiff's scheduler (informers, the default plugins over all the
//!   nodes, assume, bind, a `Scheduled` event per pod) places the same pods.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use rand::SeedableRng;
use serde_json::{json, Value};
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Client, ClientConfig};
use skiff_store::SqliteStore;

#[derive(Args, Debug, Clone)]
pub struct SchedulerArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods created and scheduled.
    #[arg(long, default_value_t = 50000)]
    pub pods: usize,
    /// Concurrent pod creators.
    #[arg(long, default_value_t = 200)]
    pub creators: usize,
    /// Pods created per second (open loop: each pod has its send time, whatever
    /// earlier ones are doing). 0 creates as fast as the creators can, which
    /// measures saturation throughput; latency there is mostly queueing.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Concurrent binding calls (the scheduler's `bind_parallelism`, and the
    /// baseline's).
    #[arg(long, default_value_t = 64)]
    pub bind_parallelism: usize,
    /// Zones the nodes are spread over (topology.kubernetes.io/zone).
    #[arg(long, default_value_t = 10)]
    pub zones: usize,
    /// Give every pod a zone spread constraint (maxSkew 1, ScheduleAnyway), so that
    /// the topology plugins count pods across all nodes for each decision.
    #[arg(long)]
    pub spread: bool,
    /// Skip the baseline phase.
    #[arg(long)]
    pub no_baseline: bool,
    /// Keep the data directories here instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// What one phase measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    per_sec: f64,
    wall: Duration,
    creates_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A server of its own for one phase, and an admin client.
struct Phase {
    server: Server,
    client: Client,
}

async fn start(dir: &std::path::Path) -> Result<Phase> {
    std::fs::create_dir_all(dir)?;
    let store = Arc::new(SqliteStore::open(&dir.join("state.db"))?);
    let server = Server::start(Config::new(dir.join("data"), "127.0.0.1:0".parse()?, Settings::default()), store).await?;
    let mut config = ClientConfig::from_kubeconfig(&server.kubeconfig)?;
    config.timeout = Duration::from_secs(60);
    let client = Client::new(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Phase { server, client })
}

fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

/// A node of the benchmark: 32 cpu, 128 GiB, 110 pods, in zone `i % zones`.
fn node(i: usize, zones: usize) -> Value {
    let name = node_name(i);
    let resources = json!({"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "500Gi"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/region": "bench", "topology.kubernetes.io/zone": format!("zone-{}", i % zones.max(1)),
        }},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated"}],
        },
    })
}

/// The scheduler's decisions alone: the framework over the same nodes in memory,
/// each pod decided and assumed in turn, no API at all. Returns decisions per second.
fn decisions(args: &SchedulerArgs) -> Result<f64> {
    use skiff_scheduler::{cache::Cache, framework::Framework, types::PodInfo};
    let mut cache = Cache::new();
    for i in 0..args.nodes {
        cache.add_or_update_node(Arc::new(serde_json::from_value(node(i, args.zones))?));
    }
    let pods: Vec<Arc<PodInfo>> = (0..args.pods)
        .map(|i| {
            let mut p = pod(&format!("pod-{i:06}"), "default-scheduler", args.spread);
            p["metadata"]["uid"] = json!(format!("uid-{i}"));
            Ok(Arc::new(PodInfo::new(Arc::new(serde_json::from_value(p)?))))
        })
        .collect::<Result<_>>()?;
    let framework = Framework::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut start = 0;
    let t = Instant::now();
    for p in pods {
        let node = {
            let snapshot = cache.snapshot();
            framework.schedule(&p, &snapshot, &mut start, &mut rng).map_err(|e| anyhow::anyhow!("{e}"))?.node
        };
        cache.assume(p, &node);
    }
    Ok(args.pods as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

/// Creates the nodes through the API, 64 at a time.
async fn create_nodes(client: &Client, n: usize, zones: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64.min(n.max(1)) {
        let client = client.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let name = node_name(i);
                let body = node(i, zones);
                let created = client.create("/api/v1/nodes", &body).await.with_context(|| format!("creating node {name}"))?;
                if created.pointer("/status/allocatable").is_none() {
                    // A server that drops status on create gets it through the subresource.
                    let mut with_status = created;
                    with_status["status"] = body["status"].clone();
                    client.update(&format!("/api/v1/nodes/{name}/status"), &with_status).await?;
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn pod(name: &str, scheduler: &str, spread: bool) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "app", "image": "registry.local/bench:1.0",
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
        },
    });
    if spread {
        pod["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "bench"}},
        }]);
    }
    pod
}

/// Watches pods from `rv` on and records when each one's binding is observed;
/// resolves when `total` bindings have been seen. A watch that falls out of the
/// server's window (410 Gone) catches up with a LIST, as an informer would; pods
/// found bound there count as observed at that moment.
fn watch_bindings(client: Client, rv: String, total: usize, bound: Arc<Mutex<HashMap<String, Instant>>>) -> tokio::task::JoinHandle<Result<()>> {
    let saw = move |bound: &Mutex<HashMap<String, Instant>>, pod: &Value| -> bool {
        if pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            let mut b = bound.lock().unwrap();
            b.entry(name).or_insert_with(Instant::now);
            return b.len() >= total;
        }
        false
    };
    tokio::spawn(async move {
        let mut rv = rv;
        loop {
            let path = format!("/api/v1/namespaces/default/pods?resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3600");
            let mut events = client.watch(&path).await.map_err(|e| anyhow::anyhow!("watching pods: {e}"))?;
            let mut gone = false;
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(|e| anyhow::anyhow!("pod watch: {e}"))?;
                if ev.kind == "ERROR" {
                    gone = ev.object.get("code").and_then(Value::as_u64) == Some(410);
                    break;
                }
                if let Some(v) = ev.object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                    rv = v.to_string();
                }
                if (ev.kind == "MODIFIED" || ev.kind == "ADDED") && saw(&bound, &ev.object) {
                    return Ok(());
                }
            }
            if gone {
                let list = client.get("/api/v1/namespaces/default/pods").await.map_err(|e| anyhow::anyhow!("listing pods: {e}"))?;
                for pod in list["items"].as_array().into_iter().flatten() {
                    if saw(&bound, pod) {
                        return Ok(());
                    }
                }
                rv = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0").to_string();
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// Creates `total` pods with `creators` concurrent clients, recording when each
/// create was sent; `after_create` sees each created pod's name.
#[allow(clippy::too_many_arguments)]
async fn create_pods(
    client: &Client,
    total: usize,
    creators: usize,
    rate: f64,
    scheduler: &str,
    spread: bool,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    after_create: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<Duration> {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..creators.max(1) {
        let client = client.clone();
        let next = next.clone();
        let sent = sent.clone();
        let after = after_create.clone();
        let scheduler = scheduler.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                if rate > 0.0 {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(started + Duration::from_secs_f64(i as f64 / rate))).await;
                }
                let name = format!("pod-{i:06}");
                sent.lock().unwrap().insert(name.clone(), Instant::now());
                client.create("/api/v1/namespaces/default/pods", &pod(&name, &scheduler, spread)).await.with_context(|| format!("creating {name}"))?;
                if let Some(tx) = &after {
                    let _ = tx.send(name);
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

async fn current_rv(client: &Client) -> Result<String> {
    let list = client.get("/api/v1/namespaces/default/pods?limit=1").await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0").to_string())
}

fn figures(sent: &HashMap<String, Instant>, bound: &HashMap<String, Instant>, create_wall: Duration) -> Figures {
    let first = sent.values().min().copied().unwrap_or_else(Instant::now);
    let last = bound.values().max().copied().unwrap_or(first);
    let mut lat: Vec<Duration> = bound.iter().filter_map(|(name, at)| sent.get(name).map(|s| at.saturating_duration_since(*s))).collect();
    lat.sort();
    let wall = last.saturating_duration_since(first);
    Figures {
        per_sec: bound.len() as f64 / wall.as_secs_f64().max(1e-9),
        wall,
        creates_per_sec: sent.len() as f64 / create_wall.as_secs_f64().max(1e-9),
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
    }
}

/// No scheduler: bind each created pod to the next node round robin.
async fn baseline(args: &SchedulerArgs, dir: &std::path::Path) -> Result<Figures> {
    let phase = start(dir).await?;
    create_nodes(&phase.client, args.nodes, args.zones).await?;
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let bound = Arc::new(Mutex::new(HashMap::new()));
    let watcher = watch_bindings(phase.client.clone(), current_rv(&phase.client).await?, args.pods, bound.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let client = phase.client.clone();
    let nodes = args.nodes.max(1);
    let parallelism = args.bind_parallelism.max(1);
    let binder = tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(parallelism));
        let mut next = 0usize;
        let mut inflight = Vec::new();
        while let Some(name) = rx.recv().await {
            let permit = permits.clone().acquire_owned().await?;
            let node = node_name(next % nodes);
            next += 1;
            let client = client.clone();
            inflight.push(tokio::spawn(async move {
                let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                let r = client.create(&format!("/api/v1/namespaces/default/pods/{name}/binding"), &body).await;
                drop(permit);
                r.map(drop).map_err(|e| anyhow::anyhow!("binding {name}: {e}"))
            }));
        }
        for t in inflight {
            t.await??;
        }
        anyhow::Ok(())
    });
    let create_wall = create_pods(&phase.client, args.pods, args.creators, args.rate, "bench-baseline", args.spread, sent.clone(), Some(tx)).await?;
    binder.await??;
    tokio::time::timeout(Duration::from_secs(600), watcher).await.context("bindings were not all observed within 10 minutes")???;
    let f = figures(&sent.lock().unwrap(), &bound.lock().unwrap(), create_wall);
    drop(phase.server);
    Ok(f)
}

/// Skiff's scheduler places the pods.
async fn scheduled(args: &SchedulerArgs, dir: &std::path::Path) -> Result<Figures> {
    let phase = start(dir).await?;
    create_nodes(&phase.client, args.nodes, args.zones).await?;
    let config = skiff_scheduler::SchedulerConfig { bind_parallelism: args.bind_parallelism, ..Default::default() };
    let scheduler = tokio::spawn(skiff_scheduler::run(phase.client.clone(), config));
    // A probe pod shows that the scheduler has synced its caches and runs.
    let probe = Arc::new(Mutex::new(HashMap::new()));
    let probe_watch = watch_bindings(phase.client.clone(), current_rv(&phase.client).await?, 1, probe.clone());
    phase.client.create("/api/v1/namespaces/default/pods", &pod("probe", "default-scheduler", false)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    tokio::time::timeout(Duration::from_secs(120), probe_watch).await.context("the scheduler did not bind a probe pod within 2 minutes")???;

    let sent = Arc::new(Mutex::new(HashMap::new()));
    let bound = Arc::new(Mutex::new(HashMap::new()));
    let watcher = watch_bindings(phase.client.clone(), current_rv(&phase.client).await?, args.pods, bound.clone());
    let create_wall = create_pods(&phase.client, args.pods, args.creators, args.rate, "default-scheduler", args.spread, sent.clone(), None).await?;
    tokio::time::timeout(Duration::from_secs(600), watcher).await.context("bindings were not all observed within 10 minutes")???;
    let f = figures(&sent.lock().unwrap(), &bound.lock().unwrap(), create_wall);
    scheduler.abort();
    drop(phase.server);
    Ok(f)
}

pub async fn run(args: SchedulerArgs) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = args.data_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "skiff bench scheduler: {} nodes in {} zones, {} pods by {} creators{}, bind parallelism {}{}; {} cores",
        args.nodes,
        args.zones,
        args.pods,
        args.creators,
        if args.rate > 0.0 { format!(" at {:.0}/s offered", args.rate) } else { " as fast as they go".to_string() },
        args.bind_parallelism,
        if args.spread { ", zone spread (ScheduleAnyway) on every pod" } else { "" },
        cores
    );
    let per_sec = decisions(&args)?;
    println!("decisions alone (framework in memory, no API):  {per_sec:>8.0} pods/s");
    let base = if args.no_baseline {
        None
    } else {
        let f = baseline(&args, &root.join("baseline")).await?;
        println!(
            "baseline (round-robin bindings, no decisions): {:>8.0} pods/s over {:.1} s (creates alone {:.0}/s); create→bound p50 {}, p99 {}",
            f.per_sec,
            f.wall.as_secs_f64(),
            f.creates_per_sec,
            ms(f.p50),
            ms(f.p99)
        );
        Some(f)
    };
    let s = scheduled(&args, &root.join("scheduler")).await?;
    println!(
        "scheduler:                                      {:>8.0} pods/s over {:.1} s (creates alone {:.0}/s); create→bound p50 {}, p99 {}",
        s.per_sec,
        s.wall.as_secs_f64(),
        s.creates_per_sec,
        ms(s.p50),
        ms(s.p99)
    );
    if let Some(b) = base {
        println!("scheduler / baseline: {:.2}x the rate, p99 {:.1}x", s.per_sec / b.per_sec.max(1e-9), s.p99.as_secs_f64() / b.p99.as_secs_f64().max(1e-9));
    }
    Ok(())
}
