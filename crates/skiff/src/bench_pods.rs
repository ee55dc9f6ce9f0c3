//! `skiff bench pods`: pod start-up latency and memory on a real node, next to a
//! baseline measured in the same run.
//!
//! Everything runs on this host, in one process as `skiff up` runs it: a private
//! containerd under a temporary directory (the pause and busybox images imported,
//! never pulled), the API server on SQLite with the scheduler and controllers, and
//! the kubelet for a node at 127.0.0.1 whose pods get a bridge and pod CIDR of
//! their own, so that nothing collides with a `skiff up` on the same host.
//!
//! - **baseline**: `ctr run -d` of the same image and command, offered at the same
//!   rate. `ctr run -d` returns once the task has been started (container created
//!   from the unpacked image, shim and runc create, start), which is the moment
//!   a kubelet's `StartContainer` returns: the fairest "container started" that
//!   needs no polling. It pays for starting the `ctr` process itself (measured
//!   apart, `ctr version`) and no pod sandbox, network or API at all.
//! - **pods**: `--pods` pods created through the API at `--rate` per second (open
//!   loop), each timed from its create request to the watch event that shows it
//!   bound, `Running` and `Ready` (no readiness probe, so Ready follows start).
//!   One warm-up pod and one warm-up container go first and are not counted.
//! - **where the time goes**: the kubelet's runtime is containerd's wrapped in a
//!   [`TimedRuntime`], so each pod's start-up can be cut at its `RunPodSandbox`,
//!   `CreateContainer` and `StartContainer` calls, and every CRI method's count and
//!   latency is printed (for the start-up and for the deletion).
//! - **memory**: VmRSS and VmHWM of this process (server, controllers, scheduler and
//!   kubelet, plus the benchmark's small client) with an idle node and with the pods
//!   running; containerd's own RSS, and its shims', for context.
//!
//! Timing figures are printed against the product's aims and never fail the run.
//! Everything is torn down at the end (pods through the API, leftovers through CRI
//! and `ctr`, containerd stopped, the bridge deleted), also after a `--timeout`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_agent::runtime::containerd::{self, Containerd, ContainerdConfig, CRI_NAMESPACE};
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::{
    ContainerConfig, ContainerStatus, ExecOutput, ImageInfo, RegistryAuth, Result as RuntimeResult, Runtime, SandboxConfig, SandboxStatus,
    Stream as RuntimeStream, StreamRequest,
};
use skiff_apiserver::{Config, Server, Settings};
use skiff_client::{Client, ClientConfig};
use skiff_store::SqliteStore;
use tokio::process::Command;

use crate::agent::{self, NodeOptions, Runtimes};
use crate::images::{self, BUSYBOX_ARCHIVE, BUSYBOX_IMAGE, PAUSE_ARCHIVE, PAUSE_IMAGE};

#[derive(Args, Debug, Clone)]
pub struct PodsArgs {
    /// Pods created (and, for the baseline, containers run with ctr).
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
    /// Pods (and baseline containers) started per second, open loop.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// The whole measurement gives up after this long (tear-down comes on top).
    #[arg(long, default_value = "5m", value_parser = crate::server::parse_duration)]
    pub timeout: Duration,
    /// Where pause.tar and busybox.tar are. Default: target/images when both are
    /// there (scripts/build-images.sh), else they are built into the data directory.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Skip the ctr baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Keep everything here instead of a temporary directory (short path: the
    /// containerd socket lives under it).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The product brief's aims.
const AIM_P99_RUNNING: Duration = Duration::from_millis(300);
const AIM_IDLE_RSS_KIB: u64 = 64 * 1024;
/// How long the node may take to register and turn Ready.
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The idle figure is read this long after the node turned Ready.
const SETTLE: Duration = Duration::from_secs(3);
/// How long deleted pods may take to disappear, beyond their grace period.
const DELETE_TIMEOUT: Duration = Duration::from_secs(90);
/// Pod CIDRs are taken from 10.251.0.0/16, one /24 not routed on this host.
const POD_CIDR_SECOND_OCTET: u8 = 251;
const NAMESPACE: &str = "default";
const LABEL: &str = "bench-pods";

// === summaries ===

/// Percentiles of a set of durations, by the nearest rank on the sorted samples
/// (the rule the other benchmarks use: index round((n-1)·p)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Summary {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        Summary { n: samples.len(), p50: percentile(&samples, 0.5), p99: percentile(&samples, 0.99), max: samples.last().copied().unwrap_or_default() }
    }

    fn line(&self) -> String {
        format!("p50 {:>8}  p99 {:>8}  max {:>8}  (n={})", ms(self.p50), ms(self.p99), ms(self.max), self.n)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

// === memory ===

/// A `Vm*:` field of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// VmRSS and VmHWM of a process, and the RSS split into anonymous memory (heap,
/// stacks) and file pages (mostly the binary's own code), in KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
}

impl Memory {
    fn of(pid: &str) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name| status_kib(&status, name).unwrap_or(0);
        Memory { rss: field("VmRSS"), hwm: field("VmHWM"), anon: field("RssAnon"), file: field("RssFile") }
    }

    fn line(&self) -> String {
        format!("VmRSS {}  VmHWM {}  (anonymous {}, file-backed {})", mib(self.rss), mib(self.hwm), mib(self.anon), mib(self.file))
    }
}

/// The shims serving a containerd: `containerd-shim-runc-v2 … -address SOCKET`.
/// Returns how many there are and their RSS together, in KiB.
fn shims_of(socket: &Path) -> (usize, u64) {
    let socket = socket.to_string_lossy();
    let mut count = 0;
    let mut rss = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args.first().is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
        let ours = args.windows(2).any(|w| w[0] == b"-address" && w[1] == socket.as_bytes());
        if is_shim && ours {
            count += 1;
            rss += Memory::of(&pid).rss;
        }
    }
    (count, rss)
}

/// One reading of everything's memory.
#[derive(Debug, Clone, Copy, Default)]
struct MemoryReading {
    process: Memory,
    containerd: Memory,
    shims: usize,
    shims_rss: u64,
}

fn read_memory(containerd_pid: Option<u32>, socket: &Path) -> MemoryReading {
    let (shims, shims_rss) = shims_of(socket);
    MemoryReading {
        process: Memory::of("self"),
        containerd: containerd_pid.map(|p| Memory::of(&p.to_string())).unwrap_or_default(),
        shims,
        shims_rss,
    }
}

// === the private network ===

/// The first 10.251.X.0/24 that no route of this host overlaps (`ip -4 route`
/// output), so the pods' bridge cannot shadow anything.
fn free_pod_cidr(routes: &str) -> Option<String> {
    let routed: Vec<(u32, u32)> = routes
        .lines()
        // The destination is the first field, after a route type when one is
        // given (`local 10.0.0.1 dev eth0 table local`).
        .filter_map(|line| line.split_whitespace().find(|w| *w == "default" || w.starts_with(|c: char| c.is_ascii_digit())))
        .filter(|dst| *dst != "default")
        .filter_map(|dst| {
            let (addr, bits) = dst.split_once('/').unwrap_or((dst, "32"));
            let addr: Ipv4Addr = addr.parse().ok()?;
            let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
            Some((u32::from(addr), bits))
        })
        .collect();
    let overlaps = |net: u32, bits: u32, other: (u32, u32)| {
        let common = bits.min(other.1);
        let mask = if common == 0 { 0 } else { u32::MAX << (32 - common) };
        net & mask == other.0 & mask
    };
    (1..=254u8)
        .map(|third| u32::from(Ipv4Addr::new(10, POD_CIDR_SECOND_OCTET, third, 0)))
        .find(|net| routed.iter().all(|r| !overlaps(*net, 24, *r)))
        .map(|net| format!("{}/24", Ipv4Addr::from(net)))
}

/// A bridge name of this run: short enough for a Linux interface (15 bytes).
fn bridge_name() -> String {
    format!("skb{}", std::process::id() % 1_000_000)
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

async fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().await.context("running ip(8)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// === ctr ===

async fn ctr(socket: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running ctr")?;
    Ok(out)
}

/// Runs one detached container; returns the time from spawning `ctr` to its exit.
async fn ctr_run(socket: PathBuf, id: String) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = ctr(&socket, &["run", "-d", "--null-io", BUSYBOX_IMAGE, &id, "sleep", "3600"]).await?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("ctr run {id}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(took)
}

/// Kills and deletes the tasks and containers `ids` (missing ones are fine).
async fn ctr_remove(socket: &Path, ids: &[String]) {
    for chunk in ids.chunks(50) {
        let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let _ = ctr(socket, &[&["tasks", "delete", "--force"][..], &ids].concat()).await;
        let _ = ctr(socket, &[&["containers", "delete"][..], &ids].concat()).await;
    }
}

/// The baseline: `pods` detached containers at `rate`/s, then removed.
async fn baseline(env: &mut Env, pods: usize, rate: f64) -> anyhow::Result<(Summary, Duration)> {
    let mut overhead = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = ctr(&env.socket, &["version"]).await?;
        anyhow::ensure!(out.status.success(), "ctr version: {}", String::from_utf8_lossy(&out.stderr).trim());
        overhead.push(t.elapsed());
    }
    let overhead = Summary::of(overhead).p50;

    let warm = "bench-ctr-warmup".to_string();
    env.ctr_ids.push(warm.clone());
    ctr_run(env.socket.clone(), warm).await?;

    let started = Instant::now();
    // A JoinSet, so that a run cut short by --timeout starts no more containers
    // (dropping it aborts the tasks, and their ctr processes are killed).
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pods {
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + Duration::from_secs_f64(i as f64 / rate))).await;
        let id = format!("bench-ctr-{i:04}");
        env.ctr_ids.push(id.clone());
        tasks.spawn(ctr_run(env.socket.clone(), id));
    }
    let mut times = Vec::with_capacity(pods);
    while let Some(t) = tasks.join_next().await {
        times.push(t??);
    }
    let ids = std::mem::take(&mut env.ctr_ids);
    ctr_remove(&env.socket, &ids).await;
    Ok((Summary::of(times), overhead))
}

// === the timed runtime ===

/// When the kubelet's calls for one pod began and ended.
#[derive(Debug, Clone, Copy, Default)]
struct PodCalls {
    sandbox_begin: Option<Instant>,
    sandbox_end: Option<Instant>,
    create_begin: Option<Instant>,
    create_end: Option<Instant>,
    start_begin: Option<Instant>,
    start_end: Option<Instant>,
}

#[derive(Default)]
struct CallLog {
    /// Durations by CRI method.
    by_method: BTreeMap<&'static str, Vec<Duration>>,
    /// By pod name: the first sandbox, container create and start of each pod.
    pods: HashMap<String, PodCalls>,
    /// Container id → pod name, to place `start_container` calls.
    containers: HashMap<String, String>,
}

/// containerd's runtime as the kubelet is given it, with every call timed, so the
/// report can say where a pod's start-up goes. The cost is a clock read and a
/// short lock per call.
struct TimedRuntime {
    inner: Arc<dyn Runtime>,
    log: Mutex<CallLog>,
}

impl TimedRuntime {
    fn new(inner: Arc<dyn Runtime>) -> TimedRuntime {
        TimedRuntime { inner, log: Mutex::new(CallLog::default()) }
    }

    fn record(&self, method: &'static str, began: Instant) {
        self.log.lock().unwrap().by_method.entry(method).or_default().push(began.elapsed());
    }

    fn pod(&self, name: &str, update: impl FnOnce(&mut PodCalls)) {
        update(self.log.lock().unwrap().pods.entry(name.to_string()).or_default());
    }

    /// Forgets everything recorded so far (the warm-up).
    fn reset(&self) {
        *self.log.lock().unwrap() = CallLog::default();
    }

    fn snapshot(&self) -> (BTreeMap<&'static str, Vec<Duration>>, HashMap<String, PodCalls>) {
        let log = self.log.lock().unwrap();
        (log.by_method.clone(), log.pods.clone())
    }
}

#[async_trait::async_trait]
impl Runtime for TimedRuntime {
    fn handler(&self) -> &str {
        self.inner.handler()
    }

    async fn version(&self) -> RuntimeResult<String> {
        let t = Instant::now();
        let r = self.inner.version().await;
        self.record("Version", t);
        r
    }

    async fn image_status(&self, image: &str) -> RuntimeResult<Option<ImageInfo>> {
        let t = Instant::now();
        let r = self.inner.image_status(image).await;
        self.record("ImageStatus", t);
        r
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> RuntimeResult<String> {
        let t = Instant::now();
        let r = self.inner.pull_image(image, auth).await;
        self.record("PullImage", t);
        r
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> RuntimeResult<String> {
        let t = Instant::now();
        self.pod(&config.pod_name, |p| {
            p.sandbox_begin.get_or_insert(t);
        });
        let r = self.inner.run_sandbox(config).await;
        self.record("RunPodSandbox", t);
        let end = Instant::now();
        self.pod(&config.pod_name, |p| {
            p.sandbox_end.get_or_insert(end);
        });
        r
    }

    async fn stop_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let t = Instant::now();
        let r = self.inner.stop_sandbox(id).await;
        self.record("StopPodSandbox", t);
        r
    }

    async fn remove_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let t = Instant::now();
        let r = self.inner.remove_sandbox(id).await;
        self.record("RemovePodSandbox", t);
        r
    }

    async fn sandbox_status(&self, id: &str) -> RuntimeResult<SandboxStatus> {
        let t = Instant::now();
        let r = self.inner.sandbox_status(id).await;
        self.record("PodSandboxStatus", t);
        r
    }

    async fn list_sandboxes(&self) -> RuntimeResult<Vec<SandboxStatus>> {
        let t = Instant::now();
        let r = self.inner.list_sandboxes().await;
        self.record("ListPodSandbox", t);
        r
    }

    async fn list_pod_sandboxes(&self, pod_uid: &str) -> RuntimeResult<Vec<SandboxStatus>> {
        let t = Instant::now();
        let r = self.inner.list_pod_sandboxes(pod_uid).await;
        self.record("ListPodSandbox (one pod)", t);
        r
    }

    async fn list_sandboxes_brief(&self) -> RuntimeResult<Vec<SandboxStatus>> {
        let t = Instant::now();
        let r = self.inner.list_sandboxes_brief().await;
        self.record("ListPodSandbox (relist)", t);
        r
    }

    async fn list_containers_brief(&self) -> RuntimeResult<Vec<ContainerStatus>> {
        let t = Instant::now();
        let r = self.inner.list_containers_brief().await;
        self.record("ListContainers (relist)", t);
        r
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, sandbox: &SandboxConfig) -> RuntimeResult<String> {
        let t = Instant::now();
        self.pod(&sandbox.pod_name, |p| {
            p.create_begin.get_or_insert(t);
        });
        let r = self.inner.create_container(sandbox_id, config, sandbox).await;
        self.record("CreateContainer", t);
        let end = Instant::now();
        self.pod(&sandbox.pod_name, |p| {
            p.create_end.get_or_insert(end);
        });
        if let Ok(id) = &r {
            self.log.lock().unwrap().containers.insert(id.clone(), sandbox.pod_name.clone());
        }
        r
    }

    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        let t = Instant::now();
        let pod = self.log.lock().unwrap().containers.get(id).cloned();
        if let Some(pod) = &pod {
            self.pod(pod, |p| {
                p.start_begin.get_or_insert(t);
            });
        }
        let r = self.inner.start_container(id).await;
        self.record("StartContainer", t);
        let end = Instant::now();
        if let Some(pod) = &pod {
            self.pod(pod, |p| {
                p.start_end.get_or_insert(end);
            });
        }
        r
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        let t = Instant::now();
        let r = self.inner.stop_container(id, grace).await;
        self.record("StopContainer", t);
        r
    }

    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        let t = Instant::now();
        let r = self.inner.remove_container(id).await;
        self.record("RemoveContainer", t);
        r
    }

    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        let t = Instant::now();
        let r = self.inner.container_status(id).await;
        self.record("ContainerStatus", t);
        r
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> RuntimeResult<Vec<ContainerStatus>> {
        let t = Instant::now();
        let r = self.inner.list_containers(sandbox_id).await;
        self.record("ListContainers", t);
        r
    }

    async fn exec_sync(&self, id: &str, command: &[String], timeout: Duration) -> RuntimeResult<ExecOutput> {
        let t = Instant::now();
        let r = self.inner.exec_sync(id, command, timeout).await;
        self.record("ExecSync", t);
        r
    }

    async fn exec(&self, id: &str, request: &StreamRequest) -> RuntimeResult<RuntimeStream> {
        self.inner.exec(id, request).await
    }

    async fn attach(&self, id: &str, request: &StreamRequest) -> RuntimeResult<RuntimeStream> {
        self.inner.attach(id, request).await
    }

    async fn port_forward(&self, sandbox_id: &str) -> RuntimeResult<RuntimeStream> {
        self.inner.port_forward(sandbox_id).await
    }
}

// === pods ===

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": LABEL}},
        "spec": {
            // `sleep` as PID 1 ignores SIGTERM: keep the kill short (the kubelet
            // still gives every container its 2 s minimum).
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep", "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
            }],
        },
    })
}

/// When the watch first showed each milestone of one pod.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    bound: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
    gone: Option<Instant>,
}

fn condition_true(pod: &Value, kind: &str) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// Records what one watch event says about its pod.
fn observe(seen: &mut HashMap<String, Seen>, kind: &str, pod: &Value, at: Instant) {
    let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) else { return };
    let entry = seen.entry(name.to_string()).or_default();
    if kind == "DELETED" {
        entry.gone.get_or_insert(at);
        return;
    }
    if pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
        entry.bound.get_or_insert(at);
    }
    if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running") {
        entry.running.get_or_insert(at);
    }
    if condition_true(pod, "Ready") {
        entry.ready.get_or_insert(at);
    }
}

/// Watches the benchmark's pods from `rv` on, recording milestones until aborted.
fn watch_pods(client: Client, rv: String, seen: Arc<Mutex<HashMap<String, Seen>>>) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut rv = rv;
        loop {
            let path = format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{LABEL}&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3600");
            let mut events = client.watch(&path).await.map_err(|e| anyhow::anyhow!("watching pods: {e}"))?;
            let mut gone = false;
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| anyhow::anyhow!("pod watch: {e}"))?;
                let at = Instant::now();
                if event.kind == "ERROR" {
                    gone = event.object.get("code").and_then(Value::as_u64) == Some(410);
                    break;
                }
                if let Some(v) = event.object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                    rv = v.to_string();
                }
                if event.kind != "BOOKMARK" {
                    observe(&mut seen.lock().unwrap(), &event.kind, &event.object, at);
                }
            }
            if gone {
                // Fell out of the window: catch up from a list, as an informer would.
                let list = client.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{LABEL}")).await.map_err(|e| anyhow::anyhow!("listing pods: {e}"))?;
                let at = Instant::now();
                for pod in list["items"].as_array().into_iter().flatten() {
                    observe(&mut seen.lock().unwrap(), "ADDED", pod, at);
                }
                rv = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0").to_string();
            }
        }
    })
}

async fn list_rv(client: &Client) -> anyhow::Result<String> {
    let list = client.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods?limit=1")).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0").to_string())
}

/// Waits until `done` holds for every pod in `names`, or `limit` passes; returns
/// whether it did.
async fn wait_for(seen: &Mutex<HashMap<String, Seen>>, names: &[String], limit: Duration, done: impl Fn(&Seen) -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        {
            let seen = seen.lock().unwrap();
            if names.iter().all(|n| seen.get(n).is_some_and(&done)) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A few words on why pods are not running: their waiting reasons, for the report.
async fn describe_stuck(client: &Client, names: &[String]) -> String {
    let mut lines = Vec::new();
    for name in names.iter().take(3) {
        let Ok(pod) = client.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}")).await else { continue };
        let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("-");
        let waiting = pod.pointer("/status/containerStatuses/0/state/waiting").map(|w| format!("{} {}", w["reason"].as_str().unwrap_or(""), w["message"].as_str().unwrap_or(""))).unwrap_or_default();
        let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("(unbound)");
        lines.push(format!("{name}: {phase} on {node} {waiting}"));
    }
    lines.join("; ")
}

/// What the pod phase measured.
struct PodFigures {
    bound: Summary,
    running: Summary,
    ready: Summary,
    deleted: Summary,
    not_running: usize,
    busy: MemoryReading,
    /// Each pod's start-up cut at the kubelet's runtime calls, in order.
    stages: Vec<(&'static str, Summary)>,
    /// The kubelet's runtime calls while the pods started, and while they were deleted.
    startup_calls: BTreeMap<&'static str, Vec<Duration>>,
    deletion_calls: BTreeMap<&'static str, Vec<Duration>>,
}

/// Cuts each pod's create → Running at the kubelet's runtime calls: what happens
/// before the sandbox is asked for (the watch, admission, volumes), the sandbox,
/// the container's create and start, and the status write until the watch shows it.
fn stages(names: &[String], sent: &HashMap<String, Instant>, seen: &HashMap<String, Seen>, calls: &HashMap<String, PodCalls>) -> Vec<(&'static str, Summary)> {
    type Cut = fn(Instant, &Seen, &PodCalls) -> Option<(Instant, Instant)>;
    let cuts: [(&'static str, Cut); 7] = [
        ("create → bound (scheduler)", |sent, s, _| Some((sent, s.bound?))),
        ("bound → RunPodSandbox called", |_, s, c| Some((s.bound?, c.sandbox_begin?))),
        ("RunPodSandbox", |_, _, c| Some((c.sandbox_begin?, c.sandbox_end?))),
        ("sandbox → CreateContainer called", |_, _, c| Some((c.sandbox_end?, c.create_begin?))),
        ("CreateContainer", |_, _, c| Some((c.create_begin?, c.create_end?))),
        ("StartContainer", |_, _, c| Some((c.start_begin?, c.start_end?))),
        ("started → Running seen (status write, watch)", |_, s, c| Some((c.start_end?, s.running?))),
    ];
    cuts.iter()
        .map(|(name, cut)| {
            let samples = names
                .iter()
                .filter_map(|n| {
                    let (from, to) = cut(*sent.get(n)?, seen.get(n)?, calls.get(n)?)?;
                    Some(to.saturating_duration_since(from))
                })
                .collect();
            (*name, Summary::of(samples))
        })
        .collect()
}

async fn pods_phase(env: &Env, admin: &Client, count: usize, rate: f64, pod_cidr: &str) -> anyhow::Result<PodFigures> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let _watch = AbortOnDrop(watch_pods(admin.clone(), list_rv(admin).await?, seen.clone()));
    async {
        // A warm-up pod: the first sandbox also creates the bridge.
        let warm = vec!["warmup".to_string()];
        admin.create(&format!("/api/v1/namespaces/{NAMESPACE}/pods"), &pod("warmup")).await.map_err(|e| anyhow::anyhow!("creating the warm-up pod: {e}"))?;
        if !wait_for(&seen, &warm, Duration::from_secs(60), |s| s.ready.is_some()).await {
            bail!("the warm-up pod did not become Ready within 60 s: {}", describe_stuck(admin, &warm).await);
        }
        delete_pods(admin, &warm).await;
        if !wait_for(&seen, &warm, DELETE_TIMEOUT, |s| s.gone.is_some()).await {
            bail!("the warm-up pod was not gone {} s after its deletion", DELETE_TIMEOUT.as_secs());
        }
        let timed = env.timed.clone().context("the kubelet's runtime is not set up")?;
        timed.reset();

        let names: Vec<String> = (0..count).map(|i| format!("pod-{i:04}")).collect();
        let sent = Arc::new(Mutex::new(HashMap::new()));
        let started = Instant::now();
        let mut creates = tokio::task::JoinSet::new();
        for (i, name) in names.iter().enumerate() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + Duration::from_secs_f64(i as f64 / rate))).await;
            let (client, sent, name) = (admin.clone(), sent.clone(), name.clone());
            creates.spawn(async move {
                sent.lock().unwrap().insert(name.clone(), Instant::now());
                client.create(&format!("/api/v1/namespaces/{NAMESPACE}/pods"), &pod(&name)).await.map_err(|e| anyhow::anyhow!("creating {name}: {e}"))
            });
        }
        while let Some(c) = creates.join_next().await {
            c??;
        }
        let all_ready = wait_for(&seen, &names, Duration::from_secs(120), |s| s.ready.is_some()).await;
        let not_running: Vec<String> = {
            let seen = seen.lock().unwrap();
            names.iter().filter(|n| seen.get(*n).is_none_or(|s| s.running.is_none())).cloned().collect()
        };
        if !all_ready {
            eprintln!("  {} of {count} pods are not Running after 2 minutes: {}", not_running.len(), describe_stuck(admin, &not_running).await);
        }
        // Let the last status writes land before reading memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = read_memory(env.containerd.as_ref().and_then(Containerd::pid), &env.socket);
        let outside = pods_outside(admin, pod_cidr).await?;
        if outside > 0 {
            eprintln!("  note: {outside} pods have no address in {pod_cidr}: they are not on this run's bridge");
        }

        let (startup_calls, pod_calls) = timed.snapshot();
        timed.reset();
        let deleting = Instant::now();
        let deleted_at: HashMap<String, Instant> = names.iter().map(|n| (n.clone(), deleting)).collect();
        delete_pods(admin, &names).await;
        if !wait_for(&seen, &names, DELETE_TIMEOUT, |s| s.gone.is_some()).await {
            eprintln!("  some pods were not gone {} s after their deletion", DELETE_TIMEOUT.as_secs());
        }

        let (deletion_calls, _) = timed.snapshot();
        let sent = sent.lock().unwrap();
        let seen = seen.lock().unwrap();
        let since = |pick: fn(&Seen) -> Option<Instant>, from: &HashMap<String, Instant>| {
            Summary::of(names.iter().filter_map(|n| Some(pick(seen.get(n)?)?.saturating_duration_since(*from.get(n)?))).collect())
        };
        Ok(PodFigures {
            bound: since(|s| s.bound, &sent),
            running: since(|s| s.running, &sent),
            ready: since(|s| s.ready, &sent),
            deleted: since(|s| s.gone, &deleted_at),
            not_running: not_running.len(),
            busy,
            stages: stages(&names, &sent, &seen, &pod_calls),
            startup_calls,
            deletion_calls,
        })
    }
    .await
}

/// Aborts a background task when dropped, also when `--timeout` cuts the run short.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many of the benchmark's pods have no address in `cidr` (a /24).
async fn pods_outside(admin: &Client, cidr: &str) -> anyhow::Result<usize> {
    let list = admin.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{LABEL}")).await.map_err(|e| anyhow::anyhow!("listing pods: {e}"))?;
    let prefix = cidr.trim_end_matches("0/24");
    Ok(list["items"].as_array().into_iter().flatten().filter(|p| !p.pointer("/status/podIP").and_then(Value::as_str).is_some_and(|ip| ip.starts_with(prefix))).count())
}

/// Deletes pods through the API, 16 at a time (already-gone ones are fine).
async fn delete_pods(client: &Client, names: &[String]) {
    futures::stream::iter(names.iter().cloned())
        .for_each_concurrent(16, |name| {
            let client = client.clone();
            async move {
                if let Err(e) = client.delete(&format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}")).await {
                    if !e.is_not_found() {
                        eprintln!("  deleting pod {name}: {e}");
                    }
                }
            }
        })
        .await;
}

// === the cluster ===

/// Everything the run started, so that tear-down can undo it whatever happened.
struct Env {
    root: PathBuf,
    socket: PathBuf,
    containerd: Option<Containerd>,
    cri: Option<Arc<CriRuntime>>,
    /// The kubelet's runtime: `cri` with its calls timed.
    timed: Option<Arc<TimedRuntime>>,
    server: Option<Server>,
    admin: Option<Client>,
    control_plane: tokio::task::JoinSet<()>,
    kubelet: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    ctr_ids: Vec<String>,
    bridge: String,
    bridge_existed: bool,
}

fn client(server: &Server, token: &str, ca_pem: &str) -> anyhow::Result<Client> {
    Client::new(ClientConfig { servers: vec![server.url()], token: token.trim().to_string(), ca_pem: ca_pem.to_string(), timeout: Duration::from_secs(30) })
        .map_err(|e| anyhow::anyhow!("building the in-process API client: {e}"))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The image archives: `--images`, else target/images when complete, else built
/// into the data directory.
async fn image_archives(args: &PodsArgs, root: &Path) -> anyhow::Result<PathBuf> {
    let complete = |dir: &Path| dir.join(PAUSE_ARCHIVE).exists() && dir.join(BUSYBOX_ARCHIVE).exists();
    if let Some(dir) = &args.images {
        anyhow::ensure!(complete(dir), "{} lacks {PAUSE_ARCHIVE} or {BUSYBOX_ARCHIVE} (scripts/build-images.sh {})", dir.display(), dir.display());
        return Ok(dir.clone());
    }
    let repo = PathBuf::from("target/images");
    if complete(&repo) {
        return Ok(repo);
    }
    let dir = images::images_dir(root);
    eprintln!("  building the images into {}", dir.display());
    images::build(&dir).await?;
    Ok(dir)
}

/// Starts the API server with the scheduler and controllers, as `skiff up` does.
async fn start_server(env: &mut Env) -> anyhow::Result<Client> {
    let dir = env.root.join("server");
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(SqliteStore::open(&dir.join("state.db"))?);
    let server = Server::start(Config::new(dir.clone(), "127.0.0.1:0".parse()?, Settings::default()), store).await?;
    let ca_pem = read(&dir.join("pki/ca.crt"))?;
    let admin = client(&server, &read(&dir.join("pki/admin.token"))?, &ca_pem)?;
    env.control_plane.spawn(skiff_scheduler::run(admin.clone(), skiff_scheduler::SchedulerConfig::default()));
    env.control_plane.spawn(skiff_controllers::run(admin.clone(), skiff_controllers::ControllersConfig::default()));
    env.server = Some(server);
    env.admin = Some(admin.clone());
    Ok(admin)
}

/// A free TCP port for the agent's endpoint (other agents may hold 10250).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?.local_addr()?.port())
}

/// Starts the kubelet with this run's bridge and pod CIDR, and waits until the node
/// is Ready with that CIDR.
async fn start_node(env: &mut Env, admin: &Client, node_name: &str, pod_cidr: &str, max_pods: u32) -> anyhow::Result<()> {
    let server = env.server.as_ref().context("the server is not running")?;
    let dir = env.root.join("server");
    let ca_pem = read(&dir.join("pki/ca.crt"))?;
    let node_client = client(server, &read(&dir.join("node-token"))?, &ca_pem)?;
    let agent_dir = env.root.join("agent");
    let cri = env.cri.clone().context("containerd is not running")?;
    let timed = Arc::new(TimedRuntime::new(cri));
    env.timed = Some(timed.clone());
    let runtimes = Runtimes::cri(timed, agent::process_runtime(&agent_dir)?);
    let node = NodeOptions {
        name: node_name.to_string(),
        node_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        labels: Default::default(),
        taints: Vec::new(),
        kubelet_port: free_port()?,
        heartbeat: Duration::from_secs(10),
        max_pods: agent::DEFAULT_MAX_PODS.max(max_pods),
        cluster_dns: Vec::new(),
        cluster_domain: agent::DEFAULT_CLUSTER_DOMAIN.to_string(),
        cni_bridge: env.bridge.clone(),
        pod_cidr: Some(pod_cidr.to_string()),
        network: None,
    };
    let config = agent::kubelet_config(&node, &agent_dir, &ca_pem, runtimes);
    let mut kubelet = tokio::spawn(skiff_agent::kubelet::run(node_client, config));
    let path = format!("/api/v1/nodes/{node_name}");
    let deadline = Instant::now() + NODE_READY_TIMEOUT;
    loop {
        if let Ok(node) = admin.get(&path).await {
            let cidr_kept = node.pointer("/spec/podCIDR").and_then(Value::as_str) == Some(pod_cidr);
            if condition_true(&node, "Ready") && cidr_kept && !has_not_ready_taint(&node) {
                break;
            }
        }
        if kubelet.is_finished() {
            let ended = (&mut kubelet).await;
            let error = match ended {
                Ok(Ok(())) => anyhow::anyhow!("the kubelet stopped"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("the kubelet panicked: {e}"),
            };
            return Err(error.context(format!("node {node_name} did not become Ready")));
        }
        if Instant::now() >= deadline {
            env.kubelet = Some(kubelet);
            bail!("node {node_name} is not Ready (with pod CIDR {pod_cidr}) after {} s", NODE_READY_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.kubelet = Some(kubelet);
    Ok(())
}

/// Whether the node controller's not-ready taint is still on (it is lifted once
/// the controller sees the node Ready; pods would wait for it otherwise).
fn has_not_ready_taint(node: &Value) -> bool {
    node.pointer("/spec/taints").and_then(Value::as_array).is_some_and(|ts| ts.iter().any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoSchedule"))
}

/// Waits for the namespace's default ServiceAccount (pods are refused without it).
async fn wait_for_service_account(admin: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin.get(&format!("/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")).await.is_err() {
        if Instant::now() >= deadline {
            bail!("the default ServiceAccount did not appear within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Undoes everything in `env`, whatever state the run stopped in.
async fn teardown(mut env: Env) {
    if let Some(admin) = &env.admin {
        if let Ok(list) = admin.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{LABEL}")).await {
            let names: Vec<String> = list["items"].as_array().into_iter().flatten().filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str)).map(str::to_string).collect();
            if !names.is_empty() {
                eprintln!("  tear-down: deleting {} pods left through the API", names.len());
                delete_pods(admin, &names).await;
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    match admin.get(&format!("/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=app%3D{LABEL}")).await {
                        Ok(l) if l["items"].as_array().is_some_and(|i| !i.is_empty()) => tokio::time::sleep(Duration::from_millis(200)).await,
                        _ => break,
                    }
                }
            }
        }
    }
    if let Some(kubelet) = env.kubelet.take() {
        kubelet.abort();
        let _ = kubelet.await;
    }
    env.control_plane.abort_all();
    while env.control_plane.join_next().await.is_some() {}
    if let Some(cri) = &env.cri {
        let sandboxes = cri.list_sandboxes().await.unwrap_or_else(|e| {
            eprintln!("  tear-down: listing containerd's sandboxes: {e}");
            Vec::new()
        });
        if !sandboxes.is_empty() {
            eprintln!("  tear-down: removing {} sandboxes left in containerd", sandboxes.len());
        }
        for sandbox in sandboxes {
            let _ = cri.stop_sandbox(&sandbox.id).await;
            if let Err(e) = cri.remove_sandbox(&sandbox.id).await {
                eprintln!("  tear-down: removing sandbox {}: {e}", sandbox.id);
            }
        }
    }
    if !env.ctr_ids.is_empty() {
        ctr_remove(&env.socket, &env.ctr_ids).await;
    }
    env.cri = None;
    if let Some(containerd) = env.containerd.take() {
        containerd.stop().await;
    }
    // Shims exit on their own once their containers are gone; say so if one stays.
    let deadline = Instant::now() + Duration::from_secs(10);
    while shims_of(&env.socket).0 > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (left, _) = shims_of(&env.socket);
    if left > 0 {
        eprintln!("  tear-down: {left} containerd shims of {} are still running", env.socket.display());
    }
    drop(env.server.take());
    if !env.bridge_existed && link_exists(&env.bridge) {
        if let Err(e) = ip(&["link", "del", &env.bridge]).await {
            eprintln!("  tear-down: {e:#}");
        }
    }
}

// === the run ===

pub async fn run(args: PodsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.pods > 0 && args.rate > 0.0, "--pods and --rate must be positive");
    // Short: containerd's socket path must fit a sockaddr_un.
    let (tmp, root) = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            (None, dir.canonicalize()?)
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("skb.").tempdir_in("/tmp")?;
            let root = tmp.path().to_path_buf();
            (Some(tmp), root)
        }
    };
    let images_dir = image_archives(&args, &root).await?;
    let routes = ip(&["-4", "route", "show", "table", "all"]).await.unwrap_or_default();
    let pod_cidr = free_pod_cidr(&routes).context("no free /24 in 10.251.0.0/16 for the pods")?;
    let bridge = bridge_name();
    let bridge_existed = link_exists(&bridge);
    anyhow::ensure!(!bridge_existed, "interface {bridge} already exists; is another `skiff bench pods` running?");

    let agent_dir = root.join("agent");
    let cni_conf_dir = agent_dir.join("cni/net.d");
    let started = Instant::now();
    let containerd = Containerd::start(ContainerdConfig {
        data_dir: root.clone(),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        cni_conf_dir,
        sandbox_image: PAUSE_IMAGE.to_string(),
    })
    .await
    .context("starting a private containerd")?;
    let socket = containerd.socket().to_path_buf();
    let mut env = Env {
        root: root.clone(),
        socket: socket.clone(),
        containerd: Some(containerd),
        cri: None,
        timed: None,
        server: None,
        admin: None,
        control_plane: tokio::task::JoinSet::new(),
        kubelet: None,
        ctr_ids: Vec::new(),
        bridge: bridge.clone(),
        bridge_existed,
    };
    let outcome = tokio::time::timeout(args.timeout, measure(&mut env, &args, &images_dir, &pod_cidr, started)).await;
    teardown(env).await;
    drop(tmp);
    match outcome {
        Ok(result) => result,
        Err(_) => bail!("the benchmark did not finish within {} s (--timeout); everything it started was torn down", args.timeout.as_secs()),
    }
}

async fn measure(env: &mut Env, args: &PodsArgs, images_dir: &Path, pod_cidr: &str, started: Instant) -> anyhow::Result<()> {
    let cri = Arc::new(CriRuntime::connect(&env.socket).await.context("connecting to the private containerd")?);
    let version = cri.version().await.unwrap_or_default();
    env.cri = Some(cri.clone());
    eprintln!("  containerd ({version}) answering on {} after {} ms", env.socket.display(), started.elapsed().as_millis());
    for archive in [PAUSE_ARCHIVE, BUSYBOX_ARCHIVE] {
        let t = Instant::now();
        let names = containerd::import_image(&env.socket, &images_dir.join(archive)).await?;
        eprintln!("  imported {} in {} ms", names.join(", "), t.elapsed().as_millis());
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "skiff bench pods: {} pods of {BUSYBOX_IMAGE} at {}/s (open loop); containerd {version} (private), bridge {} over {pod_cidr}; {cores} cores",
        args.pods, args.rate, env.bridge
    );

    let base = if args.no_baseline {
        None
    } else {
        let (summary, overhead) = baseline(env, args.pods, args.rate).await?;
        println!("baseline  ctr run -d (spawn → task started):  {}   (ctr's own start, `ctr version`: {})", summary.line(), ms(overhead));
        Some(summary)
    };

    let admin = start_server(env).await?;
    let node_name = format!("bench-{}", std::process::id());
    let t = Instant::now();
    // Room for every benchmark pod, and the warm-up one.
    let max_pods = u32::try_from(args.pods + 10).unwrap_or(u32::MAX);
    start_node(env, &admin, &node_name, pod_cidr, max_pods).await?;
    eprintln!("  node {node_name} Ready {} ms after the kubelet started", t.elapsed().as_millis());
    wait_for_service_account(&admin).await?;
    tokio::time::sleep(SETTLE).await;
    let idle = read_memory(env.containerd.as_ref().and_then(Containerd::pid), &env.socket);

    let figures = pods_phase(env, &admin, args.pods, args.rate, pod_cidr).await?;
    if !link_exists(&env.bridge) {
        eprintln!("  note: bridge {} was never created; the pods did not use this run's network", env.bridge);
    }

    println!("skiff     create → bound (scheduled):           {}", figures.bound.line());
    println!("skiff     create → Running:                     {}", figures.running.line());
    println!("skiff     create → Ready:                       {}", figures.ready.line());
    println!("skiff     delete → gone (2 s minimum grace):    {}", figures.deleted.line());
    if figures.not_running > 0 {
        println!("skiff     {} of {} pods never showed Running", figures.not_running, args.pods);
    }
    println!("where create → Running goes (per pod, cut at the kubelet's runtime calls):");
    for (stage, summary) in &figures.stages {
        println!("          {stage:<46} {}", summary.line());
    }
    print_calls("runtime calls while the pods started:", &figures.startup_calls);
    print_calls("runtime calls while the pods were deleted:", &figures.deletion_calls);
    if let Some(base) = base {
        println!(
            "ratio     create→Running / ctr run -d:  p50 {:.2}x  p99 {:.2}x",
            ratio(figures.running.p50, base.p50),
            ratio(figures.running.p99, base.p99)
        );
    }
    println!(
        "aim       p99 create→Running < {} ms: {} ({})",
        AIM_P99_RUNNING.as_millis(),
        met(figures.not_running == 0 && figures.running.p99 < AIM_P99_RUNNING),
        ms(figures.running.p99)
    );
    println!("memory    this process (server, controllers, scheduler, kubelet), idle node: {}", idle.process.line());
    println!("memory    this process with {} pods running: {}", args.pods - figures.not_running, figures.busy.process.line());
    println!(
        "memory    containerd: idle {}, with pods {};  shims: {} using {} ({} per pod)",
        mib(idle.containerd.rss),
        mib(figures.busy.containerd.rss),
        figures.busy.shims,
        mib(figures.busy.shims_rss),
        mib(figures.busy.shims_rss / figures.busy.shims.max(1) as u64)
    );
    println!("aim       idle RSS < {}: {} ({})", mib(AIM_IDLE_RSS_KIB), met(idle.process.rss < AIM_IDLE_RSS_KIB), mib(idle.process.rss));
    Ok(())
}

/// One line per runtime method: how often the kubelet called it and how long it took.
fn print_calls(title: &str, calls: &BTreeMap<&'static str, Vec<Duration>>) {
    println!("{title}");
    for (method, times) in calls {
        let total: Duration = times.iter().sum();
        println!("          {method:<20} {:>5} calls  {}  total {:.2} s", times.len(), Summary::of(times.clone()).line(), total.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn summaries_take_nearest_ranks_of_the_sorted_samples() {
        let s = Summary::of(millis(&[50, 10, 40, 30, 20]));
        assert_eq!(s, Summary { n: 5, p50: Duration::from_millis(30), p99: Duration::from_millis(50), max: Duration::from_millis(50) });

        // 100 samples: p99 is rank round(99 * 0.99) = 98, the second largest.
        let s = Summary::of((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!((s.p50, s.p99, s.max), (Duration::from_millis(51), Duration::from_millis(99), Duration::from_millis(100)));
    }

    #[test]
    fn an_empty_summary_is_zero_and_one_sample_is_every_percentile() {
        assert_eq!(Summary::of(Vec::new()), Summary::default());
        let s = Summary::of(millis(&[7]));
        assert_eq!((s.n, s.p50, s.p99, s.max), (1, Duration::from_millis(7), Duration::from_millis(7), Duration::from_millis(7)));
    }

    #[test]
    fn memory_fields_are_read_from_proc_status() {
        let status = "Name:\tskiff\nVmPeak:\t  200000 kB\nVmHWM:\t   61234 kB\nVmRSS:\t   51200 kB\nRssAnon:\t 40000 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(51200));
        assert_eq!(status_kib(status, "VmHWM"), Some(61234));
        assert_eq!(status_kib(status, "VmSwap"), None);
        // A field name that is a prefix of another is not confused with it.
        assert_eq!(status_kib("VmRSSX:\t1 kB\n", "VmRSS"), None);
        assert!(Memory::of("self").rss > 0);
    }

    #[test]
    fn the_pod_cidr_avoids_every_routed_network() {
        assert_eq!(free_pod_cidr("").as_deref(), Some("10.251.1.0/24"));
        let routes = "default via 10.0.2.2 dev eth0\n10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15\n\
                      10.251.1.0/24 dev skiff0 proto kernel scope link\n10.251.2.7 dev tun0\nlocal 127.0.0.1 dev lo table local\n";
        assert_eq!(free_pod_cidr(routes).as_deref(), Some("10.251.3.0/24"));
        // A wider route covering the whole range leaves nothing.
        assert_eq!(free_pod_cidr("10.0.0.0/8 dev wg0\n"), None);
        assert_eq!(free_pod_cidr("10.251.0.0/20 dev x\n").as_deref(), Some("10.251.16.0/24"));
        assert_eq!(free_pod_cidr("local 10.251.1.1 dev x table local\n").as_deref(), Some("10.251.2.0/24"));
    }

    #[test]
    fn watch_events_record_each_milestone_once() {
        let mut seen = HashMap::new();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let t2 = t0 + Duration::from_millis(9);
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"}, "status": {"phase": "Pending"}});
        let running = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n"},
                             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        observe(&mut seen, "ADDED", &json!({"metadata": {"name": "p"}, "spec": {}}), t0);
        assert!(seen["p"].bound.is_none());
        observe(&mut seen, "MODIFIED", &bound, t0);
        observe(&mut seen, "MODIFIED", &running, t1);
        observe(&mut seen, "MODIFIED", &running, t2);
        observe(&mut seen, "DELETED", &running, t2);
        let p = seen["p"];
        assert_eq!((p.bound, p.running, p.ready, p.gone), (Some(t0), Some(t1), Some(t1), Some(t2)));
    }
}
